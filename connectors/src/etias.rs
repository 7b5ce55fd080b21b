//! ETIAS (travel authorisation) connector: an application in JSON, without biometrics; its
//! status and submission time are kept as system-specific attributes.

use serde_json::Value;

use crate::Accepted;
use crate::bounds::{MAX_NATIONALITIES, MAX_OTHER_NAMES};
use crate::fields::{self, Checks, DocumentCodes, DocumentFields, Draft};
use crate::json::{self, Obj};
use crate::record::{NameKind, Sex, SourceSystem};
use crate::refusal::Refusal;
use crate::registry::AlgorithmRegistry;

const SEX: [(&str, Sex); 3] = [("female", Sex::F), ("male", Sex::M), ("other", Sex::X)];
const STATUSES: [&str; 4] = ["issued", "refused", "revoked", "pending"];

pub(crate) fn parse(body: &[u8], registry: &AlgorithmRegistry) -> Result<Accepted, Refusal> {
    let map = json::parse_object(body)?;
    let root = Obj::root(&map);
    let mut checks = Checks::new(registry);
    let c = &mut checks;
    let mut draft = Draft {
        source_id: root
            .get("application_number")
            .string(c)
            .required(c)
            .identifier(c)
            .map(str::to_owned),
        version: root.get("revision").integer(c).required(c).version(c),
        ..Draft::default()
    };
    if let Some(status) = root.get("status").string(c).required(c).word(c, &STATUSES) {
        draft
            .attributes
            .insert("status".to_owned(), Value::from(status));
    }
    if let Some(submitted_at) = root.get("submitted_at").string(c).timestamp(c) {
        draft
            .attributes
            .insert("submitted_at".to_owned(), Value::from(submitted_at));
    }

    if let Some(applicant) = root.get("applicant").required_object(c) {
        let surname = applicant.get("family_name").string(c).required(c).name(c);
        let given_names = applicant.get("first_names").joined_strings(c);
        draft.primary_name = surname.zip(given_names).map(|(surname, given_names)| {
            fields::person_name(NameKind::Primary, surname, &given_names)
        });
        draft.date_of_birth = applicant
            .get("birth_date")
            .string(c)
            .required(c)
            .partial_date(c);
        let place = applicant.get("birth_place").string(c).place(c);
        let country = applicant.get("birth_country").string(c).country(c);
        draft.place_of_birth = fields::place_of_birth(place, country);
        draft.sex = applicant.get("sex").string(c).required(c).one_of(c, &SEX);
        let nationalities = applicant
            .get("nationalities")
            .required_strings(c, MAX_NATIONALITIES);
        draft.nationalities = fields::nationalities(c, nationalities);
        for alias in applicant.get("other_names").objects(c, MAX_OTHER_NAMES) {
            let surname = alias.get("family_name").string(c).required(c).name(c);
            let given_names = alias.get("first_names").joined_strings(c);
            if let (Some(surname), Some(given_names)) = (surname, given_names) {
                draft
                    .other_names
                    .push(fields::person_name(NameKind::Alias, surname, &given_names));
            }
        }
    }

    if let Some(document) = root.get("document").object(c) {
        let fields = DocumentFields {
            codes: DocumentCodes::Words,
            kind: document.get("type").string(c),
            number: document.get("number").string(c),
            country: document.get("country").string(c),
            expiry: Some(document.get("expiry_date").string(c)),
        };
        draft
            .travel_documents
            .extend(fields::travel_document(c, fields));
    }

    draft.finish(SourceSystem::Etias, checks)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::parse;
    use crate::bounds::{MAX_NAME_CHARS, MAX_NAME_PARTS, MAX_NATIONALITIES, MAX_OTHER_NAMES};
    use crate::record::{DocumentKind, NameKind, Sex};
    use crate::test_support::{
        ETIAS, accept, assert_malformed, assert_refused, json_edit, messages, names_normalised_by,
    };

    #[test]
    fn the_fixture_maps_to_the_common_record() {
        let accepted = accept(parse, ETIAS);
        let record = &accepted.record;
        assert_eq!(record.source_id, "ETIAS-2026-AB12CD34");
        assert_eq!(record.version, 1);
        assert_eq!(record.member_state, None);
        assert_eq!(record.names.len(), 1);
        assert_eq!(record.names[0].kind, NameKind::Primary);
        assert_eq!(record.names[0].surname.original, "MUELLER");
        assert_eq!(record.names[0].surname.icao, "MUELLER");
        assert_eq!(record.names[0].given_names.original, "ANNA MARIA");
        assert_eq!(record.names[0].given_names.folded, "anna maria");
        assert_eq!(record.date_of_birth.to_string(), "1990-04-17");
        let place = record.place_of_birth.as_ref().unwrap();
        assert_eq!(
            (place.place.as_deref(), place.country.as_deref()),
            (Some("UNKNOWN"), Some("TUR"))
        );
        assert_eq!(record.sex, Sex::F);
        assert_eq!(record.nationalities, ["TUR"]);
        assert_eq!(record.travel_documents[0].kind, DocumentKind::Passport);
        assert_eq!(record.travel_documents[0].number_normalised, "U12345678");
        assert_eq!(
            record.travel_documents[0].expiry.as_deref(),
            Some("2031-05-01")
        );
        assert!(record.templates.is_empty());
        assert_eq!(record.attributes["status"], "issued");
        assert_eq!(record.attributes["submitted_at"], "2026-10-02T08:00:00Z");
        assert!(accepted.findings.is_empty());
    }

    #[test]
    fn other_names_become_aliases() {
        let body = json_edit(
            ETIAS,
            &[(
                "/applicant/other_names",
                Some(json!([{ "family_name": "YILMAZ", "first_names": ["ANNA", "  "] }])),
            )],
        );
        let names = accept(parse, &body).record.names;
        assert_eq!(names.len(), 2);
        assert_eq!(names[1].kind, NameKind::Alias);
        assert_eq!(names[1].surname.original, "YILMAZ");
        assert_eq!(names[1].given_names.original, "ANNA");
        let body = json_edit(
            ETIAS,
            &[(
                "/applicant/other_names",
                Some(json!([{ "first_names": ["ANNA"] }])),
            )],
        );
        assert_refused(
            parse,
            &body,
            &[("/applicant/other_names/0/family_name", "required")],
        );
    }

    #[test]
    fn every_missing_required_field_is_listed() {
        let body = json_edit(
            ETIAS,
            &[
                ("/application_number", Some(json!(""))),
                ("/revision", None),
                ("/status", None),
                ("/applicant/family_name", None),
                ("/applicant/birth_date", None),
                ("/applicant/sex", None),
                ("/applicant/nationalities", None),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/application_number", "required"),
                ("/revision", "required"),
                ("/status", "required"),
                ("/applicant/family_name", "required"),
                ("/applicant/birth_date", "required"),
                ("/applicant/sex", "required"),
                ("/applicant/nationalities", "required"),
            ],
        );
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        for (pointer, value) in [
            ("/status", json!("approved")),
            ("/applicant/sex", json!("F")),
            ("/document/type", json!("P")),
        ] {
            assert_refused(
                parse,
                &json_edit(ETIAS, &[(pointer, Some(value))]),
                &[(pointer, "unknown_enum_value")],
            );
        }
        let body = json_edit(ETIAS, &[("/applicant/sex", Some(json!("other")))]);
        assert_eq!(accept(parse, &body).record.sex, Sex::X);
    }

    #[test]
    fn lists_codes_dates_and_types_are_checked() {
        let body = json_edit(
            ETIAS,
            &[
                ("/revision", Some(json!(0))),
                ("/applicant/first_names", Some(json!("ANNA MARIA"))),
                ("/applicant/birth_date", Some(json!("1990-02-30"))),
                ("/applicant/birth_country", Some(json!("Turkey"))),
                ("/applicant/nationalities", Some(json!(["TUR", "de", 7]))),
                ("/document/expiry_date", Some(json!("01.05.2031"))),
                ("/submitted_at", Some(json!("2026-10-02"))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/revision", "out_of_range"),
                ("/submitted_at", "invalid_timestamp"),
                ("/applicant/first_names", "wrong_type"),
                ("/applicant/birth_date", "invalid_date"),
                ("/applicant/birth_country", "invalid_country_code"),
                // Wrong types surface while the list is read, before its entries are checked.
                ("/applicant/nationalities/2", "wrong_type"),
                ("/applicant/nationalities/1", "invalid_country_code"),
                ("/document/expiry_date", "invalid_date"),
            ],
        );
        let body = json_edit(ETIAS, &[("/applicant/nationalities", Some(json!([])))]);
        assert_refused(parse, &body, &[("/applicant/nationalities", "empty")]);
    }

    #[test]
    fn partial_dates_of_birth() {
        for date in ["1990", "1990-04"] {
            let body = json_edit(ETIAS, &[("/applicant/birth_date", Some(json!(date)))]);
            assert_eq!(accept(parse, &body).record.date_of_birth.to_string(), date);
        }
    }

    #[test]
    fn place_of_birth_is_absent_when_no_part_is_sent() {
        let body = json_edit(
            ETIAS,
            &[
                ("/applicant/birth_place", None),
                ("/applicant/birth_country", Some(json!(null))),
            ],
        );
        assert_eq!(accept(parse, &body).record.place_of_birth, None);
    }

    #[test]
    fn a_mebibyte_of_names_is_refused_before_any_name_is_normalised() {
        // One very long name, a list of very many short ones, and aliases each too long.
        let other_names = vec![json!({ "family_name": "Ä".repeat(4096) }); MAX_OTHER_NAMES];
        let body = json_edit(
            ETIAS,
            &[
                (
                    "/applicant/family_name",
                    Some(json!("Ä".repeat(256 * 1024))),
                ),
                ("/applicant/first_names", Some(json!(vec!["ANNA"; 80_000]))),
                ("/applicant/other_names", Some(json!(other_names))),
            ],
        );
        assert!(body.len() > 1 << 20, "{}", body.len());
        let mut expected = vec![
            ("/applicant/family_name".to_owned(), "too_long"),
            ("/applicant/first_names".to_owned(), "too_many"),
        ];
        expected.extend((0..MAX_OTHER_NAMES).map(|i| {
            (
                format!("/applicant/other_names/{i}/family_name"),
                "too_long",
            )
        }));
        let normalised = names_normalised_by(|| {
            assert_eq!(crate::test_support::refusal(parse, &body), expected);
        });
        assert_eq!(normalised, 0);
    }

    #[test]
    fn lists_of_names_and_nationalities_are_bounded() {
        let alias = json!({ "family_name": "YILMAZ" });
        let part = "A".repeat(MAX_NAME_CHARS / 2 - 1);
        let body = json_edit(
            ETIAS,
            &[
                // Each part is short enough, the parts together are not.
                ("/applicant/first_names", Some(json!([part, part, "B"]))),
                (
                    "/applicant/nationalities",
                    Some(json!(vec!["TUR"; MAX_NATIONALITIES + 1])),
                ),
                (
                    "/applicant/other_names",
                    Some(json!(vec![alias.clone(); MAX_OTHER_NAMES + 1])),
                ),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/applicant/first_names", "too_long"),
                ("/applicant/nationalities", "too_many"),
                ("/applicant/other_names", "too_many"),
            ],
        );
        let body = json_edit(
            ETIAS,
            &[
                ("/applicant/first_names", Some(json!([part, part]))),
                (
                    "/applicant/nationalities",
                    Some(json!(vec!["TUR"; MAX_NATIONALITIES])),
                ),
                (
                    "/applicant/other_names",
                    Some(json!(vec![alias; MAX_OTHER_NAMES])),
                ),
            ],
        );
        assert_eq!(accept(parse, &body).record.names.len(), 1 + MAX_OTHER_NAMES);
        let body = json_edit(
            ETIAS,
            &[(
                "/applicant/first_names",
                Some(json!(vec!["A"; MAX_NAME_PARTS + 1])),
            )],
        );
        assert_refused(parse, &body, &[("/applicant/first_names", "too_many")]);
    }

    #[test]
    fn names_keep_joiners_between_letters_and_ids_refuse_them() {
        // Persian: the zero-width non-joiner keeps two letters of one name unjoined.
        let persian = "علی\u{200C}رضا";
        let body = json_edit(
            ETIAS,
            &[(
                "/applicant/other_names",
                Some(json!([{ "family_name": persian, "first_names": [persian] }])),
            )],
        );
        assert_eq!(
            accept(parse, &body).record.names[1].surname.original,
            persian
        );
        let body = json_edit(
            ETIAS,
            &[
                ("/application_number", Some(json!("ETIAS-2026\u{200C}AB12"))),
                ("/applicant/family_name", Some(json!("\u{200D}MUELLER"))),
                (
                    "/applicant/first_names",
                    Some(json!(["ANNA", "\u{2067}MARIA"])),
                ),
                ("/applicant/birth_place", Some(json!("IZMIR\u{0}"))),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/application_number", "forbidden_character"),
                ("/applicant/family_name", "forbidden_character"),
                ("/applicant/first_names/1", "forbidden_character"),
                ("/applicant/birth_place", "control_character"),
            ],
        );
    }

    #[test]
    fn bound_messages_never_echo_the_offending_values() {
        let secret = "Zq7Secret";
        let body = json_edit(
            ETIAS,
            &[
                ("/application_number", Some(json!(secret.repeat(10)))),
                ("/applicant/family_name", Some(json!(secret.repeat(20)))),
                (
                    "/applicant/first_names",
                    Some(json!([secret, format!("\u{202E}{secret}")])),
                ),
                ("/document/number", Some(json!(secret.repeat(4)))),
            ],
        );
        let messages = messages(parse, &body);
        assert_eq!(messages.len(), 4);
        assert!(
            messages
                .iter()
                .all(|m| !m.contains(secret) && !m.is_empty()),
            "{messages:?}"
        );
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        for body in [&b"{"[..], b"null", b"42", b"\xef\xbb\xbf{}"] {
            assert_malformed(parse, body);
        }
    }
}
