//! Reading native JSON records (EES, ETIAS, SIS): the body becomes a top-level object that
//! connectors walk by key, with wrong types reported under JSON pointers.

use serde_json::error::Category;
use serde_json::{Map, Value};

use crate::bounds::{MAX_NAME_PARTS, MAX_TEMPLATES};
use crate::fields::{self, Checks, Field, MODALITIES, Spelling, TemplateFields};
use crate::record::BiometricTemplate;
use crate::refusal::Refusal;
use crate::rule;

/// The body's top-level object, or why the body is not a JSON record at all.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    let text = fields::utf8(body)?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Refusal::Malformed {
            detail: "expected a JSON object at the top level".to_owned(),
        }),
        Err(e) => Err(Refusal::Malformed {
            detail: describe(&e),
        }),
    }
}

fn describe(error: &serde_json::Error) -> String {
    match error.classify() {
        // serde_json's syntax messages are fixed texts plus the position: no input in them.
        Category::Syntax | Category::Eof => format!("not well-formed JSON: {error}"),
        // Data errors may carry free text; keep only the position.
        Category::Data | Category::Io => {
            format!(
                "not well-formed JSON at line {} column {}",
                error.line(),
                error.column()
            )
        }
    }
}

/// A JSON object and its pointer.
#[derive(Debug, Clone)]
pub(crate) struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    pub(crate) fn root(map: &'a Map<String, Value>) -> Self {
        Self {
            path: String::new(),
            map,
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The member `key`; `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Node<'a> {
        Node {
            path: format!("{}/{}", self.path, escape(key)),
            value: self.map.get(key).filter(|value| !value.is_null()),
        }
    }
}

/// A value that may be absent, with its pointer.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    path: String,
    value: Option<&'a Value>,
}

impl<'a> Node<'a> {
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn is_present(&self) -> bool {
        self.value.is_some()
    }

    pub(crate) fn string(self, checks: &mut Checks<'_>) -> Field<'a> {
        match self.value {
            None => Field::missing(self.path),
            Some(Value::String(text)) => Field::text_at(self.path, text),
            Some(_) => wrong_type(checks, self.path, "expected a string"),
        }
    }

    pub(crate) fn integer(self, checks: &mut Checks<'_>) -> Field<'a> {
        match self.value {
            None => Field::missing(self.path),
            Some(Value::Number(number)) => match number.as_i64() {
                Some(value) => Field::integer_at(self.path, value),
                None if number.is_u64() => {
                    checks.error(&self.path, rule::OUT_OF_RANGE, "expected a 64-bit integer");
                    Field::reported(self.path)
                }
                None => wrong_type(checks, self.path, "expected an integer"),
            },
            Some(_) => wrong_type(checks, self.path, "expected an integer"),
        }
    }

    /// An optional object.
    pub(crate) fn object(self, checks: &mut Checks<'_>) -> Option<Obj<'a>> {
        match self.value? {
            Value::Object(map) => Some(Obj {
                path: self.path,
                map,
            }),
            _ => {
                checks.error(&self.path, rule::WRONG_TYPE, "expected an object");
                None
            }
        }
    }

    pub(crate) fn required_object(self, checks: &mut Checks<'_>) -> Option<Obj<'a>> {
        if self.value.is_none() {
            checks.error(&self.path, rule::REQUIRED, "expected an object");
        }
        self.object(checks)
    }

    /// The entries of an optional array of at most `max`; none when absent or longer.
    pub(crate) fn items(self, checks: &mut Checks<'_>, max: usize) -> Vec<Node<'a>> {
        match self.value {
            None => Vec::new(),
            Some(Value::Array(values)) if values.len() > max => {
                checks.too_many(&self.path, max, "entries");
                Vec::new()
            }
            Some(Value::Array(values)) => values
                .iter()
                .enumerate()
                .map(|(index, value)| Node {
                    path: format!("{}/{index}", self.path),
                    value: Some(value),
                })
                .collect(),
            Some(_) => {
                checks.error(&self.path, rule::WRONG_TYPE, "expected an array");
                Vec::new()
            }
        }
    }

    /// The entries of an array that must hold at least one and at most `max`.
    pub(crate) fn required_items(self, checks: &mut Checks<'_>, max: usize) -> Vec<Node<'a>> {
        match self.value {
            None => checks.error(
                &self.path,
                rule::REQUIRED,
                "expected an array with at least one entry",
            ),
            Some(Value::Array(values)) if values.is_empty() => {
                checks.error(&self.path, rule::EMPTY, "expected at least one entry")
            }
            Some(_) => {}
        }
        self.items(checks, max)
    }

    /// The entries of an optional array of at most `max` strings.
    pub(crate) fn strings(self, checks: &mut Checks<'_>, max: usize) -> Vec<Field<'a>> {
        self.items(checks, max)
            .into_iter()
            .map(|item| item.string(checks))
            .collect()
    }

    /// An optional array of name parts, joined by single spaces; `None` when refused.
    pub(crate) fn joined_strings(self, checks: &mut Checks<'_>) -> Option<String> {
        let path = self.path.clone();
        let parts = self.strings(checks, MAX_NAME_PARTS);
        fields::joined(checks, &path, &parts)
    }

    /// The entries of an array of strings that must hold at least one and at most `max`.
    pub(crate) fn required_strings(self, checks: &mut Checks<'_>, max: usize) -> Vec<Field<'a>> {
        self.required_items(checks, max)
            .into_iter()
            .map(|item| item.string(checks))
            .collect()
    }

    /// The entries of an optional array of at most `max` objects; entries of another type
    /// are reported.
    pub(crate) fn objects(self, checks: &mut Checks<'_>, max: usize) -> Vec<Obj<'a>> {
        self.items(checks, max)
            .into_iter()
            .filter_map(|item| item.object_entry(checks))
            .collect()
    }

    /// An array entry must be an object; unlike a member, `null` is not "absent" here.
    fn object_entry(self, checks: &mut Checks<'_>) -> Option<Obj<'a>> {
        if matches!(self.value, Some(Value::Null)) {
            checks.error(&self.path, rule::WRONG_TYPE, "expected an object");
            return None;
        }
        self.object(checks)
    }
}

fn wrong_type<'a>(checks: &mut Checks<'_>, path: String, expected: &str) -> Field<'a> {
    checks.error(&path, rule::WRONG_TYPE, expected);
    Field::reported(path)
}

/// RFC 6901 escaping of one pointer segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The `biometrics` array EES and SIS share: `modality`, `position` (fingers), `algorithm`,
/// `quality`, `data`.
pub(crate) fn biometrics(checks: &mut Checks<'_>, node: Node<'_>) -> Vec<BiometricTemplate> {
    node.objects(checks, MAX_TEMPLATES)
        .into_iter()
        .filter_map(|entry| {
            let modality = entry
                .get("modality")
                .string(checks)
                .required(checks)
                .one_of(checks, &MODALITIES);
            let fields = TemplateFields {
                path: entry.path().to_owned(),
                modality,
                spelling: Spelling::SnakeCase,
                position: entry.get("position").string(checks),
                algorithm: entry.get("algorithm").string(checks),
                quality: entry.get("quality").integer(checks),
                data: entry.get("data").string(checks),
            };
            fields::template(checks, fields)
        })
        .collect()
}
