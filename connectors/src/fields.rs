//! Validation shared by the five connectors: the collector that gathers every error of a
//! record, single-field checks, the template builder and the all-or-nothing final assembly.
//!
//! Readers (`json`, `xml`) turn native values into [`Field`]s; connectors check each field
//! here and fill a [`Draft`]; [`Draft::finish`] either maps the record or refuses it with
//! every error found. Messages say what is expected and never echo a value.
//!
//! Every free text reaches a connector only through a method that names its kind
//! ([`Field::name`], [`Field::identifier`], [`Field::place`]), which holds it to its bound
//! ([`crate::bounds`]) before anything else reads it.

use std::num::IntErrorKind;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Accepted;
use crate::bounds::{self, MAX_NAME_CHARS, TextKind};
use crate::names::NameForms;
use crate::record::{
    BiometricTemplate, DocumentKind, FingerPosition, IdentityRecord, Modality, NameKind,
    PartialDate, PersonName, PlaceOfBirth, Sex, SourceSystem, TravelDocument,
};
use crate::refusal::{FieldError, QualityFinding, Refusal};
use crate::registry::AlgorithmRegistry;
use crate::rule;
use crate::vector_base64;

/// Everything learnt while checking one record: its errors and its non-blocking findings.
#[derive(Debug)]
pub(crate) struct Checks<'r> {
    registry: &'r AlgorithmRegistry,
    errors: Vec<FieldError>,
    findings: Vec<QualityFinding>,
}

impl<'r> Checks<'r> {
    pub(crate) fn new(registry: &'r AlgorithmRegistry) -> Self {
        Self {
            registry,
            errors: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, field: &str, rule: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, rule, message));
    }

    /// Reports a list at `path` longer than `max`, whose entries are then left unread.
    pub(crate) fn too_many(&mut self, path: &str, max: usize, entries: &str) {
        let message = format!("expected at most {max} {entries}");
        self.error(path, rule::TOO_MANY, message);
    }

    fn finding(&mut self, field: &str, rule: &str, message: String) {
        self.findings.push(QualityFinding {
            field: field.to_owned(),
            rule: rule.to_owned(),
            message,
        });
    }

    fn error_count(&self) -> usize {
        self.errors.len()
    }
}

/// The body as UTF-8 text; both wire formats require it.
pub(crate) fn utf8(body: &[u8]) -> Result<&str, Refusal> {
    std::str::from_utf8(body).map_err(|e| Refusal::Malformed {
        detail: format!(
            "the body is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ),
    })
}

/// One native value with its location (JSON pointer or XPath), before validation.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    path: String,
    raw: Raw<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Missing,
    Text(&'a str),
    Integer(i64),
    /// Present but already refused (wrong type, or required and blank): later checks stay
    /// silent so that one bad value yields one error.
    Reported,
}

impl<'a> Field<'a> {
    pub(crate) fn missing(path: String) -> Self {
        Self {
            path,
            raw: Raw::Missing,
        }
    }

    pub(crate) fn text_at(path: String, text: &'a str) -> Self {
        Self {
            path,
            raw: Raw::Text(text),
        }
    }

    pub(crate) fn integer_at(path: String, value: i64) -> Self {
        Self {
            path,
            raw: Raw::Integer(value),
        }
    }

    pub(crate) fn reported(path: String) -> Self {
        Self {
            path,
            raw: Raw::Reported,
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Absent, empty and whitespace-only values all count as missing.
    fn is_blank(&self) -> bool {
        match self.raw {
            Raw::Missing => true,
            Raw::Text(text) => text.trim().is_empty(),
            Raw::Integer(_) | Raw::Reported => false,
        }
    }

    /// Sent and not blank; a value already refused counts as present.
    pub(crate) fn is_present(&self) -> bool {
        !self.is_blank()
    }

    fn is_reported(&self) -> bool {
        matches!(self.raw, Raw::Reported)
    }

    /// Reports a missing value; the field then stays silent in later checks.
    pub(crate) fn required(self, checks: &mut Checks<'_>) -> Self {
        if self.is_blank() {
            checks.error(&self.path, rule::REQUIRED, "expected a non-empty value");
            Self {
                raw: Raw::Reported,
                ..self
            }
        } else {
            self
        }
    }

    /// The text as sent, or `None` when blank or already reported. Only for codes, dates,
    /// numbers and template data, which their own rules refuse when overlong; free text
    /// goes through [`Self::bounded_text`].
    fn text(&self, checks: &mut Checks<'_>) -> Option<&'a str> {
        match self.raw {
            Raw::Text(text) if text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
                checks.error(
                    &self.path,
                    rule::CONTROL_CHARACTER,
                    "expected text without control characters",
                );
                None
            }
            Raw::Text(text) if !text.trim().is_empty() => Some(text),
            Raw::Integer(_) => {
                checks.error(&self.path, rule::WRONG_TYPE, "expected a string");
                None
            }
            _ => None,
        }
    }

    /// The text as sent if it keeps to the bound and characters of its kind, or `None` when
    /// blank, already reported or refused.
    fn bounded_text(&self, checks: &mut Checks<'_>, kind: TextKind) -> Option<&'a str> {
        match self.raw {
            Raw::Text(text) if !text.trim().is_empty() => match bounds::text_problem(text, kind) {
                Some((rule, message)) => {
                    checks.error(&self.path, rule, message);
                    None
                }
                None => Some(text),
            },
            Raw::Integer(_) => {
                checks.error(&self.path, rule::WRONG_TYPE, "expected a string");
                None
            }
            _ => None,
        }
    }

    /// A surname, given names or another name of a person, or one part of such a name.
    pub(crate) fn name(&self, checks: &mut Checks<'_>) -> Option<&'a str> {
        self.bounded_text(checks, TextKind::Name)
    }

    /// A source id or another id a system assigns.
    pub(crate) fn identifier(&self, checks: &mut Checks<'_>) -> Option<&'a str> {
        self.bounded_text(checks, TextKind::Identifier)
    }

    /// A place of birth.
    pub(crate) fn place(&self, checks: &mut Checks<'_>) -> Option<&'a str> {
        self.bounded_text(checks, TextKind::PlaceOfBirth)
    }

    /// Checks the text with `parse`, reporting `rule` with `expected` when it fails.
    fn parsed<T>(
        &self,
        checks: &mut Checks<'_>,
        rule: &'static str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        // Codes, dates and enumerations carry no meaning in surrounding whitespace, which XML
        // pretty-printers add freely; names and ids are kept verbatim instead.
        let text = self.text(checks)?.trim();
        let value = parse(text);
        if value.is_none() {
            checks.error(&self.path, rule, expected);
        }
        value
    }

    /// An integer: a JSON number as read, or XML text in decimal.
    pub(crate) fn integer(&self, checks: &mut Checks<'_>) -> Option<i64> {
        match self.raw {
            Raw::Integer(value) => Some(value),
            Raw::Text(text) if !text.trim().is_empty() => match text.trim().parse::<i64>() {
                Ok(value) => Some(value),
                Err(e)
                    if matches!(
                        e.kind(),
                        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow
                    ) =>
                {
                    checks.error(&self.path, rule::OUT_OF_RANGE, "expected a 64-bit integer");
                    None
                }
                Err(_) => {
                    checks.error(&self.path, rule::WRONG_TYPE, "expected an integer");
                    None
                }
            },
            _ => None,
        }
    }

    fn integer_in(
        &self,
        checks: &mut Checks<'_>,
        min: i64,
        max: i64,
        expected: &str,
    ) -> Option<i64> {
        let value = self.integer(checks)?;
        if (min..=max).contains(&value) {
            Some(value)
        } else {
            checks.error(&self.path, rule::OUT_OF_RANGE, expected);
            None
        }
    }

    /// A record version: an integer of at least 1.
    pub(crate) fn version(&self, checks: &mut Checks<'_>) -> Option<i64> {
        self.integer_in(checks, 1, i64::MAX, "expected an integer of at least 1")
    }

    /// A template quality score, 0 to 100.
    pub(crate) fn quality(&self, checks: &mut Checks<'_>) -> Option<u8> {
        let value = self.integer_in(checks, 0, 100, "expected an integer from 0 to 100")?;
        u8::try_from(value).ok()
    }

    /// A date of birth: `YYYY-MM-DD`, `YYYY-MM` or `YYYY`.
    pub(crate) fn partial_date(&self, checks: &mut Checks<'_>) -> Option<PartialDate> {
        self.parsed(
            checks,
            rule::INVALID_DATE,
            "expected a date YYYY-MM-DD, YYYY-MM or YYYY",
            |text| text.parse().ok(),
        )
    }

    /// A full calendar date `YYYY-MM-DD`.
    pub(crate) fn date(&self, checks: &mut Checks<'_>) -> Option<String> {
        self.parsed(
            checks,
            rule::INVALID_DATE,
            "expected a date YYYY-MM-DD",
            |text| {
                let date: PartialDate = text.parse().ok()?;
                date.day.map(|_| text.to_owned())
            },
        )
    }

    /// An RFC 3339 timestamp, kept in its own offset and precision.
    pub(crate) fn timestamp(&self, checks: &mut Checks<'_>) -> Option<String> {
        self.parsed(
            checks,
            rule::INVALID_TIMESTAMP,
            "expected an RFC 3339 timestamp",
            |text| {
                OffsetDateTime::parse(text, &Rfc3339)
                    .ok()
                    .map(|_| text.to_owned())
            },
        )
    }

    /// An ICAO / ISO 3166-1 alpha-3 country code.
    pub(crate) fn country(&self, checks: &mut Checks<'_>) -> Option<String> {
        self.parsed(
            checks,
            rule::INVALID_COUNTRY_CODE,
            "expected an ISO 3166-1 alpha-3 country code (three upper-case letters)",
            |text| upper_letters(text, 3).then(|| text.to_owned()),
        )
    }

    /// An ISO 3166-1 alpha-2 member-state code.
    pub(crate) fn member_state(&self, checks: &mut Checks<'_>) -> Option<String> {
        self.parsed(
            checks,
            rule::INVALID_COUNTRY_CODE,
            "expected an ISO 3166-1 alpha-2 member-state code (two upper-case letters)",
            |text| upper_letters(text, 2).then(|| text.to_owned()),
        )
    }

    /// One of the spellings in `choices`, mapped to its value.
    pub(crate) fn one_of<T: Copy>(
        &self,
        checks: &mut Checks<'_>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let expected = format!(
            "expected one of {}",
            choices
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.parsed(checks, rule::UNKNOWN_ENUM_VALUE, &expected, |text| {
            choices
                .iter()
                .find(|(name, _)| *name == text)
                .map(|(_, value)| *value)
        })
    }

    /// One of `words`, as sent.
    pub(crate) fn word(
        &self,
        checks: &mut Checks<'_>,
        words: &[&'static str],
    ) -> Option<&'static str> {
        let choices: Vec<(&str, &'static str)> = words.iter().map(|&word| (word, word)).collect();
        self.one_of(checks, &choices)
    }

    /// A document type in the format's spelling.
    pub(crate) fn document_kind(
        &self,
        checks: &mut Checks<'_>,
        codes: DocumentCodes,
    ) -> Option<DocumentKind> {
        match codes {
            DocumentCodes::Words => self.one_of(checks, &DOCUMENT_KINDS),
            DocumentCodes::Icao => self.parsed(
                checks,
                rule::UNKNOWN_ENUM_VALUE,
                "expected an ICAO 9303 document code of one or two upper-case letters \
                 (P passport; I, A or C identity card)",
                icao_document_kind,
            ),
        }
    }

    pub(crate) fn finger_position(
        &self,
        checks: &mut Checks<'_>,
        spelling: Spelling,
    ) -> Option<FingerPosition> {
        let choices = FingerPosition::ALL.map(|position| match spelling {
            Spelling::SnakeCase => (position.as_str(), position),
            Spelling::PascalCase => (position.xml_name(), position),
        });
        self.one_of(checks, &choices)
    }
}

fn upper_letters(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_uppercase())
}

/// ICAO 9303 document codes: the first letter is the kind (P passport; I, A, C identity
/// cards), the optional second letter is at the issuer's discretion.
fn icao_document_kind(code: &str) -> Option<DocumentKind> {
    if !(1..=2).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some(match code.as_bytes().first()? {
        b'P' => DocumentKind::Passport,
        b'I' | b'A' | b'C' => DocumentKind::IdentityCard,
        _ => DocumentKind::Other,
    })
}

/// How a format spells finger positions: `right_index` (JSON) or `RightIndex` (XML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spelling {
    SnakeCase,
    PascalCase,
}

/// How a format names document types: `passport` | `identity_card` | `other` words, or
/// ICAO 9303 document codes (`P`, `I`, `ID`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocumentCodes {
    Words,
    Icao,
}

const DOCUMENT_KINDS: [(&str, DocumentKind); 3] = [
    ("passport", DocumentKind::Passport),
    ("identity_card", DocumentKind::IdentityCard),
    ("other", DocumentKind::Other),
];

pub(crate) const MODALITIES: [(&str, Modality); 3] = [
    ("face", Modality::Face),
    ("finger", Modality::Finger),
    ("iris", Modality::Iris),
];

/// The parts of one biometric template as found in the native record.
#[derive(Debug)]
pub(crate) struct TemplateFields<'a> {
    /// Where the template sits; quality findings point here.
    pub path: String,
    /// `None` when the record's modality was missing or unknown and already reported.
    pub modality: Option<Modality>,
    pub spelling: Spelling,
    pub position: Field<'a>,
    pub algorithm: Field<'a>,
    pub quality: Field<'a>,
    pub data: Field<'a>,
}

/// Validates one template against the registry. A template below its modality's minimum
/// quality is kept but not indexable, and raises a finding rather than an error.
pub(crate) fn template(
    checks: &mut Checks<'_>,
    fields: TemplateFields<'_>,
) -> Option<BiometricTemplate> {
    let TemplateFields {
        path,
        modality,
        spelling,
        position,
        algorithm,
        quality,
        data,
    } = fields;
    let errors_before = checks.error_count();

    let position = match modality {
        Some(Modality::Finger) => position.required(checks).finger_position(checks, spelling),
        Some(other) => {
            if position.is_present() && !position.is_reported() {
                let message = format!(
                    "expected no finger position on a {} template",
                    other.as_str()
                );
                checks.error(position.path(), rule::UNEXPECTED, message);
            }
            None
        }
        // The modality is already refused; still check a position that is there.
        None => position.finger_position(checks, spelling),
    };

    let registry = checks.registry;
    let algorithm = algorithm.required(checks);
    let algorithm_id = algorithm.text(checks);
    let registered = algorithm_id.and_then(|id| {
        let found = registry.get(id);
        match found {
            None => checks.error(
                algorithm.path(),
                rule::UNREGISTERED_ALGORITHM,
                "expected an algorithm id registered in the hub's configuration",
            ),
            Some(registered) => {
                if let Some(modality) = modality
                    && modality != registered.modality
                {
                    let message = format!(
                        "expected an algorithm registered for the {} modality",
                        modality.as_str()
                    );
                    checks.error(algorithm.path(), rule::ALGORITHM_MODALITY_MISMATCH, message);
                }
            }
        }
        found
    });

    let quality = quality.required(checks).quality(checks);

    let data = data.required(checks);
    let vector = data.text(checks).and_then(|text| {
        // XML encoders may wrap base64 lines; the whitespace carries no data.
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let vector = vector_base64::decode(&compact);
        if vector.is_none() {
            checks.error(
                data.path(),
                rule::INVALID_BASE64,
                "expected base64 of little-endian float32 values",
            );
        }
        vector
    });
    if let (Some(vector), Some(registered)) = (&vector, registered)
        && vector.len() != registered.dimension
    {
        let message = format!(
            "expected {} float32 values for this algorithm",
            registered.dimension
        );
        checks.error(data.path(), rule::WRONG_DIMENSION, message);
    }
    if let Some((rule, message)) = vector.as_deref().and_then(crate::vector_values_problem) {
        checks.error(data.path(), rule, message);
    }

    if checks.error_count() > errors_before {
        return None;
    }
    let (Some(modality), Some(algorithm_id), Some(quality), Some(vector)) =
        (modality, algorithm_id, quality, vector)
    else {
        return None;
    };
    let minimum = registered.map_or_else(
        || registry.minimum_quality.for_modality(modality),
        |algorithm| registry.minimum_quality_for(algorithm),
    );
    let indexable = quality >= minimum;
    if !indexable {
        let message = format!(
            "template quality is below the minimum of {minimum} for its algorithm: stored but kept out of the biometric index"
        );
        checks.finding(&path, rule::TEMPLATE_BELOW_MINIMUM_QUALITY, message);
    }
    Some(BiometricTemplate {
        modality,
        position,
        algorithm: algorithm_id.to_owned(),
        quality,
        indexable,
        vector,
    })
}

/// The parts of one travel document as found in the native record.
#[derive(Debug)]
pub(crate) struct DocumentFields<'a> {
    pub codes: DocumentCodes,
    pub kind: Field<'a>,
    pub number: Field<'a>,
    pub country: Field<'a>,
    /// `None` where the format has no expiry.
    pub expiry: Option<Field<'a>>,
}

pub(crate) fn travel_document(
    checks: &mut Checks<'_>,
    fields: DocumentFields<'_>,
) -> Option<TravelDocument> {
    let DocumentFields {
        codes,
        kind,
        number,
        country,
        expiry,
    } = fields;
    let errors_before = checks.error_count();
    let kind = kind.required(checks).document_kind(checks, codes);
    let number_field = number.required(checks);
    let number = number_field.bounded_text(checks, TextKind::DocumentNumber);
    let number_normalised = number.map(TravelDocument::normalise_number);
    if number_normalised.as_ref().is_some_and(String::is_empty) {
        checks.error(
            number_field.path(),
            rule::REQUIRED,
            "expected a document number with letters or digits",
        );
    }
    let issuing_country = country.country(checks);
    let expiry = expiry.and_then(|field| field.date(checks));
    if checks.error_count() > errors_before {
        return None;
    }
    Some(TravelDocument {
        kind: kind?,
        number: number?.to_owned(),
        number_normalised: number_normalised?,
        issuing_country,
        expiry,
    })
}

/// At least one alpha-3 nationality; the readers report an absent or empty list.
pub(crate) fn nationalities(checks: &mut Checks<'_>, items: Vec<Field<'_>>) -> Vec<String> {
    let mut codes: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if let Some(code) = item.required(checks).country(checks)
            && !codes.contains(&code)
        {
            codes.push(code);
        }
    }
    codes
}

/// Given names or surname parts sent as the list at `path`, joined with single spaces;
/// blank entries carry nothing and are skipped. `None` when a part is refused, or the parts
/// together are longer than one name may be.
pub(crate) fn joined(checks: &mut Checks<'_>, path: &str, parts: &[Field<'_>]) -> Option<String> {
    let errors_before = checks.error_count();
    let texts: Vec<&str> = parts.iter().filter_map(|part| part.name(checks)).collect();
    if checks.error_count() > errors_before {
        return None;
    }
    // Each part is bounded and holds no stray invisible character, and the joining spaces
    // add none: only the length of the whole is left to check.
    let joined = texts.join(" ");
    if joined.chars().nth(MAX_NAME_CHARS).is_some() {
        let message =
            format!("expected name parts of at most {MAX_NAME_CHARS} characters together");
        checks.error(path, rule::TOO_LONG, message);
        return None;
    }
    Some(joined)
}

pub(crate) fn person_name(kind: NameKind, surname: &str, given_names: &str) -> PersonName {
    PersonName {
        kind,
        surname: NameForms::new(surname),
        given_names: NameForms::new(given_names),
    }
}

/// `None` when the record has neither a place nor a country of birth.
pub(crate) fn place_of_birth(place: Option<&str>, country: Option<String>) -> Option<PlaceOfBirth> {
    (place.is_some() || country.is_some()).then(|| PlaceOfBirth {
        place: place.map(str::to_owned),
        country,
    })
}

/// What a connector read from one record, before the all-or-nothing decision.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub source_id: Option<String>,
    pub version: Option<i64>,
    pub member_state: Option<String>,
    pub primary_name: Option<PersonName>,
    /// Aliases, names at birth, previous names, pseudonyms, in the record's order.
    pub other_names: Vec<PersonName>,
    pub date_of_birth: Option<PartialDate>,
    pub place_of_birth: Option<PlaceOfBirth>,
    pub sex: Option<Sex>,
    pub nationalities: Vec<String>,
    pub travel_documents: Vec<TravelDocument>,
    pub templates: Vec<BiometricTemplate>,
    pub attributes: Map<String, Value>,
}

impl Draft {
    /// The mapped record, or a refusal listing every error: nothing of a record with any
    /// error may be stored.
    pub(crate) fn finish(
        self,
        system: SourceSystem,
        checks: Checks<'_>,
    ) -> Result<Accepted, Refusal> {
        let Checks {
            errors, findings, ..
        } = checks;
        match (
            self.source_id,
            self.version,
            self.primary_name,
            self.date_of_birth,
            self.sex,
        ) {
            (Some(source_id), Some(version), Some(primary), Some(date_of_birth), Some(sex))
                if errors.is_empty() && !self.nationalities.is_empty() =>
            {
                let mut names = Vec::with_capacity(1 + self.other_names.len());
                names.push(primary);
                names.extend(self.other_names);
                let record = IdentityRecord {
                    system,
                    source_id,
                    version,
                    member_state: self.member_state,
                    names,
                    date_of_birth,
                    place_of_birth: self.place_of_birth,
                    sex,
                    nationalities: self.nationalities,
                    travel_documents: self.travel_documents,
                    templates: self.templates,
                    attributes: self.attributes,
                };
                Ok(Accepted { record, findings })
            }
            _ => {
                // Every check that leaves a required part empty reports why.
                debug_assert!(
                    !errors.is_empty(),
                    "a required part is missing without an error"
                );
                Err(Refusal::Invalid { errors })
            }
        }
    }
}
