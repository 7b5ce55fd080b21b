//! Reading native XML records (VIS, ECRIS-TCN): a well-formed UTF-8 document whose root is
//! the system's element in the system's namespace, walked by element name with XPath
//! locations (1-based indexes on elements the format lets repeat).

use roxmltree::{Document, Node};

use crate::fields::{self, Checks, Field, Spelling, TemplateFields};
use crate::record::{BiometricTemplate, Modality};
use crate::refusal::Refusal;
use crate::rule;

/// The document, or why the body is not this system's XML record at all.
pub(crate) fn parse_document<'i>(
    body: &'i [u8],
    namespace: &str,
    root: &str,
) -> Result<Document<'i>, Refusal> {
    let text = fields::utf8(body)?;
    // roxmltree refuses DTDs by default, which also rules out entity-expansion bombs.
    let document = Document::parse(text).map_err(|error| {
        // Some parser messages quote names from the input; the position is enough.
        let position = error.pos();
        Refusal::Malformed {
            detail: format!(
                "not well-formed XML at line {}, column {}",
                position.row, position.col
            ),
        }
    })?;
    let tag = document.root_element().tag_name();
    if tag.name() != root || tag.namespace() != Some(namespace) {
        return Err(Refusal::Malformed {
            detail: format!("expected a {root} root element in namespace {namespace}"),
        });
    }
    Ok(document)
}

/// An element and its XPath. Children are looked up in the element's own namespace, so
/// elements of other namespaces (extensions) are ignored like unknown fields.
#[derive(Debug, Clone)]
pub(crate) struct Element<'a, 'i> {
    node: Node<'a, 'i>,
    path: String,
}

impl<'a, 'i> Element<'a, 'i> {
    pub(crate) fn root(document: &'a Document<'i>) -> Self {
        let node = document.root_element();
        Self {
            path: format!("/{}", node.tag_name().name()),
            node,
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn attribute(&self, name: &str) -> Field<'a> {
        let path = format!("{}/@{name}", self.path);
        match self.node.attribute(name) {
            Some(value) => Field::text_at(path, value),
            None => Field::missing(path),
        }
    }

    /// The element's text content.
    pub(crate) fn text(&self) -> Field<'a> {
        match self.node.text() {
            Some(text) => Field::text_at(self.path.clone(), text),
            None => Field::missing(self.path.clone()),
        }
    }

    fn named(&self, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> + use<'a, 'i> {
        let namespace = self.node.tag_name().namespace();
        self.node.children().filter(move |child| {
            child.is_element()
                && child.tag_name().name() == name
                && child.tag_name().namespace() == namespace
        })
    }

    /// A child the format allows at most once; a repeat is reported rather than guessed at.
    pub(crate) fn child(&self, name: &'static str, checks: &mut Checks<'_>) -> Option<Self> {
        let mut found = self.named(name);
        let first = found.next()?;
        if found.next().is_some() {
            let message = format!("expected at most one {name} element");
            checks.error(
                &format!("{}/{name}[2]", self.path),
                rule::UNEXPECTED,
                message,
            );
        }
        Some(Self {
            node: first,
            path: format!("{}/{name}", self.path),
        })
    }

    pub(crate) fn required_child(
        &self,
        name: &'static str,
        checks: &mut Checks<'_>,
    ) -> Option<Self> {
        let child = self.child(name, checks);
        if child.is_none() {
            checks.error(
                &format!("{}/{name}", self.path),
                rule::REQUIRED,
                format!("expected a {name} element"),
            );
        }
        child
    }

    /// The text of a child the format allows at most once.
    pub(crate) fn child_text(&self, name: &'static str, checks: &mut Checks<'_>) -> Field<'a> {
        match self.child(name, checks) {
            Some(child) => child.text(),
            None => Field::missing(format!("{}/{name}", self.path)),
        }
    }

    /// Every child of a repeatable element, indexed from 1; none when there are more than
    /// `max`, which is reported.
    pub(crate) fn children(
        &self,
        name: &'static str,
        max: usize,
        checks: &mut Checks<'_>,
    ) -> Vec<Self> {
        let nodes: Vec<Node<'a, 'i>> = self.named(name).take(max.saturating_add(1)).collect();
        if nodes.len() > max {
            let entries = format!("{name} elements");
            checks.too_many(&format!("{}/{name}", self.path), max, &entries);
            return Vec::new();
        }
        nodes
            .into_iter()
            .enumerate()
            .map(|(index, node)| Self {
                node,
                path: format!("{}/{name}[{}]", self.path, index + 1),
            })
            .collect()
    }

    /// Every child of an element the format requires at least once and allows at most `max`
    /// times.
    pub(crate) fn required_children(
        &self,
        name: &'static str,
        max: usize,
        checks: &mut Checks<'_>,
    ) -> Vec<Self> {
        if self.named(name).next().is_none() {
            let message = format!("expected at least one {name} element");
            checks.error(&format!("{}/{name}", self.path), rule::REQUIRED, message);
        }
        self.children(name, max, checks)
    }
}

/// A template element VIS and ECRIS-TCN share: `algorithm`, `quality` and, for fingers,
/// `position` attributes around base64 text.
pub(crate) fn template(
    checks: &mut Checks<'_>,
    element: &Element<'_, '_>,
    modality: Modality,
) -> Option<BiometricTemplate> {
    let fields = TemplateFields {
        path: element.path().to_owned(),
        modality: Some(modality),
        spelling: Spelling::PascalCase,
        position: element.attribute("position"),
        algorithm: element.attribute("algorithm"),
        quality: element.attribute("quality"),
        data: element.text(),
    };
    fields::template(checks, fields)
}
