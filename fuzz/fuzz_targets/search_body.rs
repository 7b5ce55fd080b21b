#![no_main]
//! Any body sent to `POST /v1/search`, through the checks the hub makes of it with the
//! connectors' functions before it searches (`Hub::probe` in hub/src/core/portal.rs), in the
//! same order: the bounds and characters of the identity data, then the date of birth, the
//! name forms, the document number, and each probe's capture time and template.
//!
//! The hub's own `SearchRequest` type and its checks are not reached: the checks are private
//! methods of `Hub`, which a search cannot have without its databases, and depending on the
//! `interop-hub` crate would build all of it (sqlx, axum, usearch…) for fuzzing. The body is
//! therefore read as JSON and each field the hub reads is taken where it takes it.

use std::sync::LazyLock;

use connectors::{AlgorithmRegistry, NameForms, PartialDate, TextKind, TravelDocument};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// The hub's default registry, the one the seeds' templates are made for.
static REGISTRY: LazyLock<AlgorithmRegistry> = LazyLock::new(AlgorithmRegistry::default);
/// Biometric probes one search takes at most (`MAX_PROBES` in portal.rs).
const MAX_PROBES: usize = 13;

fn text<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

/// A text given and not blank, trimmed (`present` in portal.rs).
fn present(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

fn identity_data(biographic: &Map<String, Value>) {
    for (field, kind) in [
        ("surname", TextKind::Name),
        ("given_names", TextKind::Name),
        ("document_number", TextKind::DocumentNumber),
        ("nationality", TextKind::Identifier),
    ] {
        if let Some(text) = text(biographic, field)
            && let Some((rule, message)) = connectors::text_problem(text, kind)
        {
            assert!(!rule.is_empty() && !message.is_empty());
            // The hub refuses the search here.
            return;
        }
    }
    if let Some(date) = present(text(biographic, "date_of_birth"))
        && let Ok(parsed) = date.parse::<PartialDate>()
    {
        // A date is kept as precise as it was sent: its text is the text it was read from.
        assert_eq!(parsed.to_string(), date);
    }
    if let Some(surname) = present(text(biographic, "surname")) {
        NameForms::new(surname);
        NameForms::new(present(text(biographic, "given_names")).unwrap_or(""));
    }
    if let Some(number) = present(text(biographic, "document_number")) {
        TravelDocument::normalise_number(number);
    }
    if let Some(nationality) = present(text(biographic, "nationality")) {
        let _ = nationality.to_uppercase();
    }
}

fn probe(probe: &Map<String, Value>) {
    if let Some(Value::Object(capture)) = probe.get("capture")
        && let Some(captured_at) = text(capture, "captured_at")
    {
        let _ = time::OffsetDateTime::parse(
            captured_at,
            &time::format_description::well_known::Rfc3339,
        );
    }
    let Some(algorithm) = text(probe, "algorithm").and_then(|id| REGISTRY.get(id)) else {
        return;
    };
    let Some(vector) = text(probe, "data").and_then(connectors::vector_base64::decode) else {
        return;
    };
    if vector.len() == algorithm.dimension {
        connectors::vector_values_problem(&vector);
    }
}

fuzz_target!(|body: &[u8]| {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Some(Value::Object(biographic)) = request.get("biographic") {
        identity_data(biographic);
    }
    if let Some(Value::Array(probes)) = request.get("biometric")
        && probes.len() <= MAX_PROBES
    {
        for p in probes {
            if let Value::Object(p) = p {
                probe(p);
            }
        }
    }
});
