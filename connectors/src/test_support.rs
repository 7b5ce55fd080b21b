//! Fixtures and assertions the connector tests share: the example records of the shared
//! format description, edited one rule at a time.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;

use serde_json::Value;

use crate::refusal::{FieldError, Refusal};
use crate::registry::AlgorithmRegistry;
use crate::{Accepted, vector_base64};

pub(crate) const EES: &[u8] = include_bytes!("../../tests/fixtures/ees.json");
pub(crate) const ETIAS: &[u8] = include_bytes!("../../tests/fixtures/etias.json");
pub(crate) const SIS: &[u8] = include_bytes!("../../tests/fixtures/sis.json");
pub(crate) const VIS: &[u8] = include_bytes!("../../tests/fixtures/vis.xml");
pub(crate) const ECRIS_TCN: &[u8] = include_bytes!("../../tests/fixtures/ecris-tcn.xml");

pub(crate) type Parser = fn(&[u8], &AlgorithmRegistry) -> Result<Accepted, Refusal>;

pub(crate) fn accept(parse: Parser, body: &[u8]) -> Accepted {
    match parse(body, &AlgorithmRegistry::default()) {
        Ok(accepted) => accepted,
        Err(refusal) => panic!("expected the record to be accepted, got {refusal:?}"),
    }
}

/// The refused fields and rules, in the order reported.
pub(crate) fn refusal(parse: Parser, body: &[u8]) -> Vec<(String, &'static str)> {
    match parse(body, &AlgorithmRegistry::default()) {
        Err(Refusal::Invalid { errors }) => errors
            .into_iter()
            .map(|FieldError { field, rule, .. }| (field, rule))
            .collect(),
        other => panic!("expected Refusal::Invalid, got {other:?}"),
    }
}

pub(crate) fn assert_refused(parse: Parser, body: &[u8], expected: &[(&str, &str)]) {
    let actual = refusal(parse, body);
    let actual: Vec<(&str, &str)> = actual
        .iter()
        .map(|(field, rule)| (field.as_str(), *rule))
        .collect();
    assert_eq!(
        actual,
        expected,
        "body: {}",
        String::from_utf8_lossy(body)
            .chars()
            .take(400)
            .collect::<String>()
    );
}

/// Every error message of a refusal.
pub(crate) fn messages(parse: Parser, body: &[u8]) -> Vec<String> {
    match parse(body, &AlgorithmRegistry::default()) {
        Err(Refusal::Invalid { errors }) => errors.into_iter().map(|error| error.message).collect(),
        other => panic!("expected Refusal::Invalid, got {other:?}"),
    }
}

pub(crate) fn assert_malformed(parse: Parser, body: &[u8]) -> String {
    match parse(body, &AlgorithmRegistry::default()) {
        Err(Refusal::Malformed { detail }) => detail,
        other => panic!("expected Refusal::Malformed, got {other:?}"),
    }
}

/// The JSON fixture with the member at `pointer` replaced (`Some`) or removed (`None`).
pub(crate) fn json_edit(fixture: &[u8], edits: &[(&str, Option<Value>)]) -> Vec<u8> {
    let mut document: Value = serde_json::from_slice(fixture).unwrap();
    for (pointer, value) in edits {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match (document.pointer_mut(parent).unwrap(), value) {
            (Value::Object(map), Some(value)) => {
                map.insert(key.to_owned(), value.clone());
            }
            (Value::Object(map), None) => {
                map.remove(key);
            }
            (Value::Array(items), Some(value)) => {
                items[key.parse::<usize>().unwrap()] = value.clone()
            }
            (Value::Array(items), None) => {
                items.remove(key.parse::<usize>().unwrap());
            }
            _ => panic!("{pointer} has no object or array parent"),
        }
    }
    serde_json::to_vec(&document).unwrap()
}

/// The XML fixture with `from` (which must occur exactly once) replaced by `to`.
pub(crate) fn xml_edit(fixture: &[u8], edits: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from_utf8(fixture.to_vec()).unwrap();
    for (from, to) in edits {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{from} must occur once in the fixture"
        );
        text = text.replacen(from, to, 1);
    }
    text.into_bytes()
}

/// The XML fixture with the text of the element opened by `opening` replaced by `text`.
pub(crate) fn xml_text(fixture: &[u8], opening: &str, text: &str) -> Vec<u8> {
    let document = String::from_utf8(fixture.to_vec()).unwrap();
    assert_eq!(
        document.matches(opening).count(),
        1,
        "{opening} must occur once in the fixture"
    );
    let start = document.find(opening).unwrap() + opening.len();
    let end = start + document[start..].find('<').unwrap();
    format!("{}{text}{}", &document[..start], &document[end..]).into_bytes()
}

/// How many names `parse` normalised on this thread while it ran.
pub(crate) fn names_normalised_by(parse: impl FnOnce()) -> usize {
    let before = crate::names::NORMALISED.with(Cell::get);
    parse();
    crate::names::NORMALISED.with(Cell::get) - before
}

/// The whole element of the XML fixture opened by `opening` (which must occur once), up
/// to its closing `</name>` tag.
pub(crate) fn xml_element(fixture: &[u8], opening: &str, name: &str) -> String {
    let document = String::from_utf8(fixture.to_vec()).unwrap();
    assert_eq!(document.matches(opening).count(), 1, "{opening}");
    let start = document.find(opening).unwrap();
    let closing = format!("</{name}>");
    let end = start + document[start..].find(&closing).unwrap() + closing.len();
    document[start..end].to_owned()
}

/// Base64 of `dimension` small finite values.
pub(crate) fn vector(dimension: usize) -> String {
    vector_base64::encode(&vec![0.01; dimension])
}

/// Base64 of a vector of the right length whose `index`th value is `value`.
pub(crate) fn vector_with(dimension: usize, index: usize, value: f32) -> String {
    let mut values = vec![0.01; dimension];
    values[index] = value;
    vector_base64::encode(&values)
}
