//! SIS (alerts on persons) connector: an alert in JSON; its category and expiry are kept as
//! system-specific attributes.

use serde_json::Value;

use crate::bounds::{MAX_DOCUMENTS, MAX_NAME_PARTS, MAX_NATIONALITIES, MAX_OTHER_NAMES};
use crate::fields::{self, Checks, DocumentCodes, DocumentFields, Draft};
use crate::json::{self, Node, Obj};
use crate::record::{NameKind, Sex, SourceSystem};
use crate::refusal::Refusal;
use crate::registry::AlgorithmRegistry;
use crate::{Accepted, rule};

const SEX: [(&str, Sex); 3] = [("female", Sex::F), ("male", Sex::M), ("unknown", Sex::X)];
const CATEGORIES: [&str; 4] = ["arrest", "missing", "discreet_check", "refusal_of_entry"];

pub(crate) fn parse(body: &[u8], registry: &AlgorithmRegistry) -> Result<Accepted, Refusal> {
    let map = json::parse_object(body)?;
    let root = Obj::root(&map);
    let mut checks = Checks::new(registry);
    let c = &mut checks;
    let mut draft = Draft {
        source_id: root
            .get("alert_id")
            .string(c)
            .required(c)
            .identifier(c)
            .map(str::to_owned),
        version: root.get("version").integer(c).required(c).version(c),
        member_state: root.get("issuing_state").string(c).member_state(c),
        ..Draft::default()
    };
    if let Some(category) = root
        .get("category")
        .string(c)
        .required(c)
        .word(c, &CATEGORIES)
    {
        draft
            .attributes
            .insert("category".to_owned(), Value::from(category));
    }
    if let Some(expires_at) = root.get("expires_at").string(c).timestamp(c) {
        draft
            .attributes
            .insert("expires_at".to_owned(), Value::from(expires_at));
    }

    if let Some(person) = root.get("person").required_object(c) {
        let surname = surnames(c, person.get("surnames"));
        let given_names = person.get("forenames").joined_strings(c);
        draft.primary_name = surname.zip(given_names).map(|(surname, given_names)| {
            fields::person_name(NameKind::Primary, &surname, &given_names)
        });
        draft.date_of_birth = person.get("dob").string(c).required(c).partial_date(c);
        draft.sex = person.get("gender").string(c).required(c).one_of(c, &SEX);
        let nationalities = person
            .get("nationalities")
            .required_strings(c, MAX_NATIONALITIES);
        draft.nationalities = fields::nationalities(c, nationalities);
        for alias in person.get("aliases").objects(c, MAX_OTHER_NAMES) {
            let surname = surnames(c, alias.get("surnames"));
            let given_names = alias.get("forenames").joined_strings(c);
            if let (Some(surname), Some(given_names)) = (surname, given_names) {
                draft.other_names.push(fields::person_name(
                    NameKind::Alias,
                    &surname,
                    &given_names,
                ));
            }
        }
    }

    for document in root.get("documents").objects(c, MAX_DOCUMENTS) {
        let fields = DocumentFields {
            codes: DocumentCodes::Words,
            kind: document.get("type").string(c),
            number: document.get("number").string(c),
            country: document.get("country").string(c),
            expiry: None,
        };
        draft
            .travel_documents
            .extend(fields::travel_document(c, fields));
    }

    draft.templates = json::biometrics(c, root.get("biometrics"));

    draft.finish(SourceSystem::Sis, checks)
}

/// SIS sends surnames as a list; the surname is its non-blank parts joined by spaces.
fn surnames(checks: &mut Checks<'_>, node: Node<'_>) -> Option<String> {
    let path = node.path().to_owned();
    let parts = node.required_strings(checks, MAX_NAME_PARTS);
    let surname = fields::joined(checks, &path, &parts)?;
    if !surname.is_empty() {
        return Some(surname);
    }
    // An absent, empty or too long list, refused parts and wrongly typed entries are
    // reported already; blanks are not.
    if !parts.is_empty() && parts.iter().all(|part| !part.is_present()) {
        checks.error(
            &path,
            rule::REQUIRED,
            "expected at least one non-blank surname",
        );
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::parse;
    use crate::bounds::{MAX_DOCUMENTS, MAX_NAME_CHARS, MAX_OTHER_NAMES};
    use crate::record::{DocumentKind, FingerPosition, Modality, NameKind, Sex};
    use crate::test_support::{
        SIS, accept, assert_malformed, assert_refused, json_edit, names_normalised_by, vector,
        vector_with,
    };

    #[test]
    fn the_fixture_maps_to_the_common_record() {
        let accepted = accept(parse, SIS);
        let record = &accepted.record;
        assert_eq!(record.source_id, "SIS-IT-2026-000077");
        assert_eq!(record.version, 1);
        assert_eq!(record.member_state.as_deref(), Some("SE"));
        assert_eq!(record.names.len(), 1);
        assert_eq!(record.names[0].surname.original, "Müller");
        assert_eq!(record.names[0].surname.icao, "MUELLER");
        assert_eq!(record.names[0].given_names.original, "Anna Maria");
        assert_eq!(record.date_of_birth.to_string(), "1990-04-17");
        assert_eq!(record.place_of_birth, None);
        assert_eq!(record.sex, Sex::F);
        assert_eq!(record.nationalities, ["TUR"]);
        assert_eq!(record.travel_documents.len(), 1);
        assert_eq!(record.travel_documents[0].kind, DocumentKind::Passport);
        assert_eq!(record.travel_documents[0].number, "U12345678");
        assert_eq!(
            record.travel_documents[0].issuing_country.as_deref(),
            Some("TUR")
        );
        assert_eq!(record.travel_documents[0].expiry, None);
        let templates: Vec<_> = record
            .templates
            .iter()
            .map(|t| (t.modality, t.position, t.indexable))
            .collect();
        assert_eq!(
            templates,
            [
                (Modality::Face, None, true),
                (Modality::Finger, Some(FingerPosition::RightMiddle), true),
                (Modality::Finger, Some(FingerPosition::LeftThumb), true),
            ]
        );
        assert_eq!(record.attributes["category"], "refusal_of_entry");
        assert_eq!(record.attributes["expires_at"], "2028-02-03T00:00:00Z");
        assert!(accepted.findings.is_empty());
    }

    #[test]
    fn surname_lists_are_joined_and_aliases_kept() {
        let body = json_edit(
            SIS,
            &[
                ("/person/surnames", Some(json!(["Rossi", "Bianchi"]))),
                (
                    "/person/aliases",
                    Some(json!([{ "surnames": ["ROSI"], "forenames": ["MARKO", "A."] }])),
                ),
            ],
        );
        let names = accept(parse, &body).record.names;
        assert_eq!(names[0].surname.original, "Rossi Bianchi");
        assert_eq!(names[1].kind, NameKind::Alias);
        assert_eq!(names[1].surname.original, "ROSI");
        assert_eq!(names[1].given_names.original, "MARKO A.");
        assert_eq!(names[1].given_names.icao, "MARKO A");
    }

    #[test]
    fn every_missing_required_field_is_listed() {
        let body = json_edit(
            SIS,
            &[
                ("/alert_id", None),
                ("/version", Some(json!(null))),
                ("/category", None),
                ("/person/surnames", None),
                ("/person/dob", Some(json!(" "))),
                ("/person/gender", None),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/alert_id", "required"),
                ("/version", "required"),
                ("/category", "required"),
                ("/person/surnames", "required"),
                ("/person/dob", "required"),
                ("/person/gender", "required"),
            ],
        );
        assert_refused(
            parse,
            &json_edit(SIS, &[("/person/surnames", Some(json!([])))]),
            &[("/person/surnames", "empty")],
        );
        assert_refused(
            parse,
            &json_edit(SIS, &[("/person/surnames", Some(json!(["", " "])))]),
            &[("/person/surnames", "required")],
        );
        assert_refused(
            parse,
            &json_edit(SIS, &[("/person", None)]),
            &[("/person", "required")],
        );
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        for (pointer, value) in [
            ("/category", json!("wanted")),
            ("/person/gender", json!("M")),
            ("/documents/0/type", json!("P")),
            ("/biometrics/0/modality", json!("Face")),
            ("/biometrics/2/position", json!("left_toe")),
        ] {
            assert_refused(
                parse,
                &json_edit(SIS, &[(pointer, Some(value))]),
                &[(pointer, "unknown_enum_value")],
            );
        }
        let body = json_edit(SIS, &[("/person/gender", Some(json!("unknown")))]);
        assert_eq!(accept(parse, &body).record.sex, Sex::X);
    }

    #[test]
    fn template_rules_are_enforced_and_all_errors_listed() {
        let body = json_edit(
            SIS,
            &[
                ("/biometrics/0/algorithm", Some(json!("acme-iris-v1"))),
                ("/biometrics/1/data", Some(json!(vector(512)))),
                (
                    "/biometrics/2/data",
                    Some(json!(vector_with(192, 191, f32::NAN))),
                ),
                ("/biometrics/2/quality", Some(json!(100.5))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/biometrics/0/algorithm", "unregistered_algorithm"),
                ("/biometrics/1/data", "wrong_dimension"),
                ("/biometrics/2/quality", "wrong_type"),
                ("/biometrics/2/data", "not_finite"),
            ],
        );
        let body = json_edit(
            SIS,
            &[("/biometrics/1/algorithm", Some(json!("acme-face-v3")))],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/biometrics/1/algorithm", "algorithm_modality_mismatch"),
                ("/biometrics/1/data", "wrong_dimension"),
            ],
        );
    }

    #[test]
    fn an_unknown_modality_still_has_its_other_parts_checked() {
        let body = json_edit(
            SIS,
            &[
                ("/biometrics/0/modality", Some(json!("palm"))),
                ("/biometrics/0/data", Some(json!("%%%"))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/biometrics/0/modality", "unknown_enum_value"),
                ("/biometrics/0/data", "invalid_base64"),
            ],
        );
    }

    #[test]
    fn dates_codes_and_documents_are_checked() {
        for date in ["1985", "1985-02"] {
            let body = json_edit(SIS, &[("/person/dob", Some(json!(date)))]);
            assert_eq!(accept(parse, &body).record.date_of_birth.to_string(), date);
        }
        let body = json_edit(
            SIS,
            &[
                ("/issuing_state", Some(json!("it"))),
                ("/expires_at", Some(json!("2028-02-03T25:00:00Z"))),
                ("/person/dob", Some(json!("1990-02-30"))),
                ("/person/nationalities", Some(json!(["ALB", "XK"]))),
                ("/documents/0/number", None),
                ("/documents/0/country", Some(json!("ALBA"))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/issuing_state", "invalid_country_code"),
                ("/expires_at", "invalid_timestamp"),
                ("/person/dob", "invalid_date"),
                ("/person/nationalities/1", "invalid_country_code"),
                ("/documents/0/number", "required"),
                ("/documents/0/country", "invalid_country_code"),
            ],
        );
    }

    #[test]
    fn a_long_surname_part_is_refused_before_any_name_is_normalised() {
        let body = json_edit(
            SIS,
            &[(
                "/person/surnames",
                Some(json!(["Rossi", "R".repeat(20_000)])),
            )],
        );
        let normalised = names_normalised_by(|| {
            assert_refused(parse, &body, &[("/person/surnames/1", "too_long")]);
        });
        assert_eq!(normalised, 0);
    }

    #[test]
    fn ids_documents_and_aliases_are_bounded() {
        let document = json!({ "type": "passport", "number": "AB1234567", "country": "ALB" });
        let alias = json!({ "surnames": ["ROSI"], "forenames": ["MARKO"] });
        let half = "R".repeat(MAX_NAME_CHARS / 2 - 1);
        let body = json_edit(
            SIS,
            &[
                ("/alert_id", Some(json!("SIS-\u{FEFF}IT-2026-000077"))),
                ("/person/forenames", Some(json!([half, half, "A"]))),
                (
                    "/person/aliases",
                    Some(json!(vec![alias.clone(); MAX_OTHER_NAMES + 1])),
                ),
                (
                    "/documents",
                    Some(json!(vec![document.clone(); MAX_DOCUMENTS + 1])),
                ),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/alert_id", "forbidden_character"),
                ("/person/forenames", "too_long"),
                ("/person/aliases", "too_many"),
                ("/documents", "too_many"),
            ],
        );
        let body = json_edit(
            SIS,
            &[
                ("/person/aliases", Some(json!(vec![alias; MAX_OTHER_NAMES]))),
                ("/documents", Some(json!(vec![document; MAX_DOCUMENTS]))),
                ("/documents/0/number", Some(json!("1".repeat(33)))),
            ],
        );
        assert_refused(parse, &body, &[("/documents/0/number", "too_long")]);
        let body = json_edit(
            &body,
            &[("/documents/0/number", Some(json!("1".repeat(32))))],
        );
        let record = accept(parse, &body).record;
        assert_eq!(record.names.len(), 1 + MAX_OTHER_NAMES);
        assert_eq!(record.travel_documents.len(), MAX_DOCUMENTS);
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        for body in [&b"<alert/>"[..], b"[]", b"{\"alert_id\": }"] {
            assert_malformed(parse, body);
        }
    }
}
