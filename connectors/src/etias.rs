//! ETIAS (travel authorisation) connector: an application in JSON, without biometrics; its
//! status and submission time are kept as system-specific attributes.

use serde_json::Value;

use crate::Accepted;
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
            .text(c)
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
        let surname = applicant.get("family_name").string(c).required(c).text(c);
        let given_names = applicant.get("first_names").joined_strings(c);
        draft.primary_name =
            surname.map(|surname| fields::person_name(NameKind::Primary, surname, &given_names));
        draft.date_of_birth = applicant
            .get("birth_date")
            .string(c)
            .required(c)
            .partial_date(c);
        let place = applicant.get("birth_place").string(c).text(c);
        let country = applicant.get("birth_country").string(c).country(c);
        draft.place_of_birth = fields::place_of_birth(place, country);
        draft.sex = applicant.get("sex").string(c).required(c).one_of(c, &SEX);
        let nationalities = applicant.get("nationalities").required_strings(c);
        draft.nationalities = fields::nationalities(c, nationalities);
        for alias in applicant.get("other_names").objects(c) {
            let surname = alias.get("family_name").string(c).required(c).text(c);
            let given_names = alias.get("first_names").joined_strings(c);
            if let Some(surname) = surname {
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
    use crate::record::{DocumentKind, NameKind, Sex};
    use crate::test_support::{ETIAS, accept, assert_malformed, assert_refused, json_edit};

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
    fn malformed_bodies_are_refused_whole() {
        for body in [&b"{"[..], b"null", b"42", b"\xef\xbb\xbf{}"] {
            assert_malformed(parse, body);
        }
    }
}
