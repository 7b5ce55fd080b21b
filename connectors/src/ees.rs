//! EES (entry/exit system) connector: a traveller's file in JSON, with the border events
//! kept as system-specific attributes.

use serde_json::{Value, json};

use crate::Accepted;
use crate::bounds::MAX_EVENTS;
use crate::fields::{self, Checks, DocumentCodes, DocumentFields, Draft};
use crate::json::{self, Obj};
use crate::record::{NameKind, Sex, SourceSystem};
use crate::refusal::Refusal;
use crate::registry::AlgorithmRegistry;

const SEX: [(&str, Sex); 3] = [("F", Sex::F), ("M", Sex::M), ("U", Sex::X)];
const EVENT_KINDS: [&str; 3] = ["entry", "exit", "refusal"];

pub(crate) fn parse(body: &[u8], registry: &AlgorithmRegistry) -> Result<Accepted, Refusal> {
    let map = json::parse_object(body)?;
    let root = Obj::root(&map);
    let mut checks = Checks::new(registry);
    let c = &mut checks;
    let mut draft = Draft {
        source_id: root
            .get("file_id")
            .string(c)
            .required(c)
            .identifier(c)
            .map(str::to_owned),
        version: root.get("version").integer(c).required(c).version(c),
        member_state: root.get("member_state").string(c).member_state(c),
        ..Draft::default()
    };

    if let Some(traveller) = root.get("traveller").required_object(c) {
        let surname = traveller.get("surname").string(c).required(c).name(c);
        let given_names = traveller
            .get("given_names")
            .string(c)
            .name(c)
            .unwrap_or_default();
        draft.primary_name =
            surname.map(|surname| fields::person_name(NameKind::Primary, surname, given_names));
        draft.date_of_birth = traveller
            .get("date_of_birth")
            .string(c)
            .required(c)
            .partial_date(c);
        draft.sex = traveller.get("sex").string(c).required(c).one_of(c, &SEX);
        let nationality = traveller.get("nationality").string(c);
        draft.nationalities = fields::nationalities(c, vec![nationality]);
        let place = traveller.get("place_of_birth").string(c).place(c);
        draft.place_of_birth = fields::place_of_birth(place, None);
    }

    if let Some(document) = root.get("travel_document").object(c) {
        let fields = DocumentFields {
            codes: DocumentCodes::Icao,
            kind: document.get("type").string(c),
            number: document.get("number").string(c),
            country: document.get("issuing_country").string(c),
            expiry: Some(document.get("expiry").string(c)),
        };
        draft
            .travel_documents
            .extend(fields::travel_document(c, fields));
    }

    draft.templates = json::biometrics(c, root.get("biometrics"));

    let events = root.get("events");
    if events.is_present() {
        let events: Vec<Value> = events
            .objects(c, MAX_EVENTS)
            .into_iter()
            .filter_map(|event| {
                let kind = event
                    .get("kind")
                    .string(c)
                    .required(c)
                    .word(c, &EVENT_KINDS);
                let bcp = event.get("bcp").string(c).required(c).identifier(c);
                let at = event.get("at").string(c).required(c).timestamp(c);
                Some(json!({ "kind": kind?, "bcp": bcp?, "at": at? }))
            })
            .collect();
        draft
            .attributes
            .insert("events".to_owned(), Value::Array(events));
    }

    draft.finish(SourceSystem::Ees, checks)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::parse;
    use crate::bounds::MAX_TEMPLATES;
    use crate::record::{DocumentKind, FingerPosition, Modality, NameKind, Sex};
    use crate::test_support::{
        EES, accept, assert_malformed, assert_refused, json_edit, messages, names_normalised_by,
        vector, vector_with,
    };

    #[test]
    fn the_fixture_maps_to_the_common_record() {
        let accepted = accept(parse, EES);
        let record = &accepted.record;
        assert_eq!(record.source_id, "EES-DE-2026-000123");
        assert_eq!(record.version, 1);
        assert_eq!(record.member_state.as_deref(), Some("ES"));
        assert_eq!(record.names.len(), 1);
        let name = &record.names[0];
        assert_eq!(name.kind, NameKind::Primary);
        assert_eq!(name.surname.original, "Müller");
        assert_eq!(name.surname.icao, "MUELLER");
        assert_eq!(name.surname.ascii, "MULLER");
        assert_eq!(name.given_names.original, "Anna Maria");
        assert_eq!(name.given_names.icao, "ANNA MARIA");
        assert_eq!(record.date_of_birth.to_string(), "1990-04-17");
        assert_eq!(record.place_of_birth, None);
        assert_eq!(record.sex, Sex::F);
        assert_eq!(record.nationalities, ["TUR"]);
        let document = &record.travel_documents[0];
        assert_eq!(document.kind, DocumentKind::Passport);
        assert_eq!(document.number, "U12345678");
        assert_eq!(document.number_normalised, "U12345678");
        assert_eq!(document.issuing_country.as_deref(), Some("TUR"));
        assert_eq!(document.expiry.as_deref(), Some("2031-05-01"));
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
        assert_eq!(record.templates[0].vector.len(), 512);
        assert_eq!(record.templates[2].quality, 51);
        assert!(accepted.findings.is_empty());
        assert_eq!(
            record.attributes["events"],
            json!([{ "kind": "entry", "bcp": "DE-FRA-T1", "at": "2026-11-20T10:15:00Z" }])
        );
    }

    #[test]
    fn every_missing_required_field_is_listed() {
        let body = json_edit(
            EES,
            &[
                ("/file_id", None),
                ("/version", None),
                ("/traveller/surname", Some(json!("   "))),
                ("/traveller/date_of_birth", None),
                ("/traveller/sex", Some(json!(""))),
                ("/traveller/nationality", None),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/file_id", "required"),
                ("/version", "required"),
                ("/traveller/surname", "required"),
                ("/traveller/date_of_birth", "required"),
                ("/traveller/sex", "required"),
                ("/traveller/nationality", "required"),
            ],
        );
        let body = json_edit(
            EES,
            &[("/traveller", None), ("/file_id", Some(json!(null)))],
        );
        assert_refused(
            parse,
            &body,
            &[("/file_id", "required"), ("/traveller", "required")],
        );
    }

    #[test]
    fn errors_of_every_kind_are_collected_in_one_refusal() {
        let body = json_edit(
            EES,
            &[
                ("/version", Some(json!(0))),
                ("/traveller/sex", Some(json!("X"))),
                ("/traveller/date_of_birth", Some(json!("1990-02-30"))),
                ("/biometrics/0/algorithm", Some(json!("acme-face-v9"))),
                ("/biometrics/1/data", Some(json!(vector(191)))),
                (
                    "/biometrics/2/data",
                    Some(json!(vector_with(192, 7, f32::NAN))),
                ),
                ("/events/0/kind", Some(json!("transit"))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/version", "out_of_range"),
                ("/traveller/date_of_birth", "invalid_date"),
                ("/traveller/sex", "unknown_enum_value"),
                ("/biometrics/0/algorithm", "unregistered_algorithm"),
                ("/biometrics/1/data", "wrong_dimension"),
                ("/biometrics/2/data", "not_finite"),
                ("/events/0/kind", "unknown_enum_value"),
            ],
        );
    }

    #[test]
    fn version_must_be_an_integer_of_at_least_one() {
        for (version, rule) in [
            (json!(0), "out_of_range"),
            (json!(-3), "out_of_range"),
            (json!("1"), "wrong_type"),
            (json!(1.5), "wrong_type"),
            (json!(u64::MAX), "out_of_range"),
        ] {
            assert_refused(
                parse,
                &json_edit(EES, &[("/version", Some(version))]),
                &[("/version", rule)],
            );
        }
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        let cases = [
            ("/traveller/sex", json!("female")),
            ("/biometrics/0/modality", json!("palm")),
            ("/biometrics/1/position", json!("right_toe")),
            ("/biometrics/1/position", json!("RightMiddle")),
            ("/events/0/kind", json!("ENTRY")),
            ("/travel_document/type", json!("passport")),
            ("/travel_document/type", json!("P1")),
        ];
        for (pointer, value) in cases {
            assert_refused(
                parse,
                &json_edit(EES, &[(pointer, Some(value))]),
                &[(pointer, "unknown_enum_value")],
            );
        }
    }

    #[test]
    fn sex_maps_u_to_unspecified() {
        let body = json_edit(EES, &[("/traveller/sex", Some(json!("U")))]);
        assert_eq!(accept(parse, &body).record.sex, Sex::X);
    }

    #[test]
    fn partial_dates_of_birth_are_accepted_and_impossible_dates_refused() {
        for date in ["1990", "1990-04"] {
            let body = json_edit(EES, &[("/traveller/date_of_birth", Some(json!(date)))]);
            assert_eq!(accept(parse, &body).record.date_of_birth.to_string(), date);
        }
        for date in ["1990-02-30", "1990-13", "90-04-17", "1990/04/17", "0000"] {
            let body = json_edit(EES, &[("/traveller/date_of_birth", Some(json!(date)))]);
            assert_refused(
                parse,
                &body,
                &[("/traveller/date_of_birth", "invalid_date")],
            );
        }
    }

    #[test]
    fn codes_dates_and_timestamps_are_checked() {
        let body = json_edit(
            EES,
            &[
                ("/member_state", Some(json!("ESP"))),
                ("/traveller/nationality", Some(json!("tur"))),
                ("/travel_document/issuing_country", Some(json!("TR"))),
                ("/travel_document/expiry", Some(json!("2031-05"))),
                ("/events/0/at", Some(json!("2026-11-20 10:15"))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/member_state", "invalid_country_code"),
                ("/traveller/nationality", "invalid_country_code"),
                ("/travel_document/issuing_country", "invalid_country_code"),
                ("/travel_document/expiry", "invalid_date"),
                ("/events/0/at", "invalid_timestamp"),
            ],
        );
    }

    #[test]
    fn template_rules_are_enforced() {
        let cases = [
            (
                "/biometrics/1/algorithm",
                json!("vendor-x"),
                "unregistered_algorithm",
            ),
            ("/biometrics/1/data", json!(vector(193)), "wrong_dimension"),
            (
                "/biometrics/0/data",
                json!(vector_with(512, 0, f32::INFINITY)),
                "not_finite",
            ),
            ("/biometrics/0/data", json!("not base64!"), "invalid_base64"),
            // Five bytes: valid base64, but not whole float32 values.
            ("/biometrics/0/data", json!("AAAAAAA="), "invalid_base64"),
            ("/biometrics/1/quality", json!(101), "out_of_range"),
            ("/biometrics/1/quality", json!(-1), "out_of_range"),
            ("/biometrics/1/quality", json!("90"), "wrong_type"),
            ("/biometrics/0/position", json!("right_index"), "unexpected"),
        ];
        for (pointer, value, rule) in cases {
            assert_refused(
                parse,
                &json_edit(EES, &[(pointer, Some(value))]),
                &[(pointer, rule)],
            );
        }
        for (pointer, rule) in [
            ("/biometrics/1/position", "required"),
            ("/biometrics/0/data", "required"),
        ] {
            assert_refused(
                parse,
                &json_edit(EES, &[(pointer, None)]),
                &[(pointer, rule)],
            );
        }
        // A face template vectorised by a finger algorithm: both the pairing and the length are wrong.
        let body = json_edit(
            EES,
            &[("/biometrics/0/algorithm", Some(json!("acme-finger-v2")))],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/biometrics/0/algorithm", "algorithm_modality_mismatch"),
                ("/biometrics/0/data", "wrong_dimension"),
            ],
        );
    }

    #[test]
    fn a_template_below_minimum_quality_is_kept_out_of_the_index_but_not_refused() {
        let body = json_edit(
            EES,
            &[
                ("/biometrics/0/quality", Some(json!(49))),
                ("/biometrics/2/quality", Some(json!(40))),
            ],
        );
        let accepted = accept(parse, &body);
        let indexable: Vec<bool> = accepted
            .record
            .templates
            .iter()
            .map(|t| t.indexable)
            .collect();
        assert_eq!(indexable, [false, true, true]);
        assert_eq!(accepted.findings.len(), 1);
        assert_eq!(accepted.findings[0].field, "/biometrics/0");
        assert_eq!(accepted.findings[0].rule, "template_below_minimum_quality");
    }

    #[test]
    fn travel_document_codes_and_numbers() {
        for (code, kind) in [
            ("P", DocumentKind::Passport),
            ("PD", DocumentKind::Passport),
            ("I", DocumentKind::IdentityCard),
            ("ID", DocumentKind::IdentityCard),
            ("AC", DocumentKind::IdentityCard),
            ("V", DocumentKind::Other),
        ] {
            let body = json_edit(EES, &[("/travel_document/type", Some(json!(code)))]);
            assert_eq!(
                accept(parse, &body).record.travel_documents[0].kind,
                kind,
                "{code}"
            );
        }
        let body = json_edit(
            EES,
            &[("/travel_document/number", Some(json!("u12 345-678")))],
        );
        let record = accept(parse, &body).record;
        assert_eq!(record.travel_documents[0].number, "u12 345-678");
        assert_eq!(record.travel_documents[0].number_normalised, "U12345678");
        let body = json_edit(EES, &[("/travel_document", None)]);
        assert!(accept(parse, &body).record.travel_documents.is_empty());
        let body = json_edit(
            EES,
            &[
                ("/travel_document/number", None),
                ("/travel_document/type", Some(json!(""))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/travel_document/type", "required"),
                ("/travel_document/number", "required"),
            ],
        );
        let body = json_edit(EES, &[("/travel_document/number", Some(json!("--")))]);
        assert_refused(parse, &body, &[("/travel_document/number", "required")]);
    }

    #[test]
    fn wrong_json_types_are_refused_by_pointer() {
        let body = json_edit(
            EES,
            &[
                ("/traveller/surname", Some(json!(["Müller"]))),
                ("/travel_document", Some(json!("P U12345678"))),
                ("/biometrics/1", Some(json!(null))),
                ("/events", Some(json!({ "kind": "entry" }))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/traveller/surname", "wrong_type"),
                ("/travel_document", "wrong_type"),
                ("/biometrics/1", "wrong_type"),
                ("/events", "wrong_type"),
            ],
        );
    }

    #[test]
    fn optional_parts_and_unknown_fields() {
        let body = json_edit(
            EES,
            &[
                ("/traveller/place_of_birth", Some(json!("Izmir"))),
                ("/traveller/given_names", None),
                ("/traveller/nickname", Some(json!("Ann"))),
                ("/vendor_extension", Some(json!({ "anything": [1, 2, 3] }))),
                ("/events", None),
                ("/biometrics", Some(json!(null))),
            ],
        );
        let record = accept(parse, &body).record;
        let place = record.place_of_birth.unwrap();
        assert_eq!(place.place.as_deref(), Some("Izmir"));
        assert_eq!(place.country, None);
        assert_eq!(record.names[0].given_names.original, "");
        assert!(record.templates.is_empty());
        assert!(!record.attributes.contains_key("events"));
    }

    #[test]
    fn messages_never_echo_the_offending_values() {
        let secret = "Zq7Secret";
        let body = json_edit(
            EES,
            &[
                ("/traveller/sex", Some(json!(secret))),
                ("/traveller/date_of_birth", Some(json!(secret))),
                ("/traveller/nationality", Some(json!(secret))),
                ("/travel_document/type", Some(json!(secret))),
                ("/biometrics/0/algorithm", Some(json!(secret))),
                ("/biometrics/1/data", Some(json!(secret))),
                ("/events/0/at", Some(json!(secret))),
            ],
        );
        let messages = messages(parse, &body);
        assert_eq!(messages.len(), 7);
        assert!(
            messages
                .iter()
                .all(|m| !m.contains(secret) && !m.is_empty()),
            "{messages:?}"
        );
    }

    #[test]
    fn a_long_surname_is_refused_before_any_name_is_normalised() {
        let body = json_edit(
            EES,
            &[(
                "/traveller/surname",
                Some(json!("Müller".repeat(20_000 / 6))),
            )],
        );
        let normalised = names_normalised_by(|| {
            assert_refused(parse, &body, &[("/traveller/surname", "too_long")]);
        });
        assert_eq!(normalised, 0);
    }

    #[test]
    fn texts_are_bounded_and_identifiers_hold_no_invisible_characters() {
        let body = json_edit(
            EES,
            &[
                ("/file_id", Some(json!("E".repeat(65)))),
                ("/traveller/given_names", Some(json!("Anna\u{202E}Maria"))),
                ("/traveller/place_of_birth", Some(json!("I".repeat(129)))),
                ("/travel_document/number", Some(json!("U1234\u{200B}5678"))),
                ("/events/0/bcp", Some(json!("DE-FRA\tT1"))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/file_id", "too_long"),
                ("/traveller/given_names", "forbidden_character"),
                ("/traveller/place_of_birth", "too_long"),
                ("/travel_document/number", "forbidden_character"),
                ("/events/0/bcp", "control_character"),
            ],
        );
        let body = json_edit(
            EES,
            &[
                ("/file_id", Some(json!("E".repeat(64)))),
                ("/traveller/place_of_birth", Some(json!("I".repeat(128)))),
            ],
        );
        accept(parse, &body);
    }

    #[test]
    fn templates_beyond_the_bound_are_refused_unread() {
        let mut record: serde_json::Value = serde_json::from_slice(EES).unwrap();
        let finger = record["biometrics"][1].clone();
        record["biometrics"] = json!(vec![finger; MAX_TEMPLATES]);
        let body = serde_json::to_vec(&record).unwrap();
        assert_eq!(accept(parse, &body).record.templates.len(), MAX_TEMPLATES);
        let mut templates = record["biometrics"].as_array().unwrap().clone();
        // One more, and broken: it is not read, so only the count is reported.
        templates.push(json!({ "modality": "palm" }));
        let body = json_edit(&body, &[("/biometrics", Some(json!(templates)))]);
        assert_refused(parse, &body, &[("/biometrics", "too_many")]);
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        for body in [
            &b"not json"[..],
            b"",
            b"[1, 2]",
            b"\"EES\"",
            b"{\"file_id\": \"EES-1\",",
            b"{\"a\": 1} trailing",
            b"{\"file_id\": \"\xff\xfe\"}",
        ] {
            assert_malformed(parse, body);
        }
        let detail = assert_malformed(
            parse,
            br#"{"traveller": {"surname": "Geheimname" "sex": "F"}}"#,
        );
        assert!(detail.contains("line 1"), "{detail}");
        assert!(!detail.contains("Geheimname"), "{detail}");
    }
}
