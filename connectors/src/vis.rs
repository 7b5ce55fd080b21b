//! VIS (visa information system) connector: a visa application in XML, namespace
//! `urn:interop-hub:vis:1`, root `VisaApplication`.

use crate::Accepted;
use crate::bounds::{MAX_NATIONALITIES, MAX_TEMPLATES};
use crate::fields::{self, Checks, DocumentCodes, DocumentFields, Draft};
use crate::record::{Modality, NameKind, Sex, SourceSystem};
use crate::refusal::Refusal;
use crate::registry::AlgorithmRegistry;
use crate::xml::{self, Element};

const NAMESPACE: &str = "urn:interop-hub:vis:1";
const ROOT: &str = "VisaApplication";
const SEX: [(&str, Sex); 3] = [("F", Sex::F), ("M", Sex::M), ("X", Sex::X)];

pub(crate) fn parse(body: &[u8], registry: &AlgorithmRegistry) -> Result<Accepted, Refusal> {
    let document = xml::parse_document(body, NAMESPACE, ROOT)?;
    let root = Element::root(&document);
    let mut checks = Checks::new(registry);
    let c = &mut checks;
    let mut draft = Draft {
        source_id: root
            .attribute("number")
            .required(c)
            .identifier(c)
            .map(str::to_owned),
        version: root.attribute("version").required(c).version(c),
        member_state: root.attribute("state").member_state(c),
        ..Draft::default()
    };

    if let Some(applicant) = root.required_child("Applicant", c) {
        let surname = applicant.child_text("Surname", c).required(c).name(c);
        let at_birth = applicant.child_text("SurnameAtBirth", c).name(c);
        let given_names = applicant
            .child_text("FirstNames", c)
            .name(c)
            .unwrap_or_default();
        draft.primary_name =
            surname.map(|surname| fields::person_name(NameKind::Primary, surname, given_names));
        // The name at birth differs only in the surname: the given names are the same person's.
        draft.other_names.extend(
            at_birth.map(|surname| fields::person_name(NameKind::AtBirth, surname, given_names)),
        );
        draft.date_of_birth = applicant
            .child_text("DateOfBirth", c)
            .required(c)
            .partial_date(c);
        if let Some(place) = applicant.child("PlaceOfBirth", c) {
            let country = place.attribute("country").country(c);
            draft.place_of_birth = fields::place_of_birth(place.text().place(c), country);
        }
        draft.sex = applicant.child_text("Sex", c).required(c).one_of(c, &SEX);
        let nationalities = applicant
            .required_children("Nationality", MAX_NATIONALITIES, c)
            .iter()
            .map(Element::text)
            .collect();
        draft.nationalities = fields::nationalities(c, nationalities);
    }

    if let Some(document) = root.child("TravelDocument", c) {
        let fields = DocumentFields {
            codes: DocumentCodes::Icao,
            kind: document.attribute("type"),
            number: document.attribute("number"),
            country: document.attribute("issuer"),
            expiry: Some(document.attribute("expires")),
        };
        draft
            .travel_documents
            .extend(fields::travel_document(c, fields));
    }

    if let Some(biometrics) = root.child("Biometrics", c) {
        // Faces, fingers and irises share the record's one allowance of templates.
        let face = biometrics.child("Face", c);
        let mut allowance = MAX_TEMPLATES - usize::from(face.is_some());
        let fingers = biometrics.children("Finger", allowance, c);
        allowance -= fingers.len();
        let irises = biometrics.children("Iris", allowance, c);
        let face = face.map(|face| (face, Modality::Face));
        let fingers = fingers.into_iter().map(|finger| (finger, Modality::Finger));
        let irises = irises.into_iter().map(|iris| (iris, Modality::Iris));
        for (element, modality) in face.into_iter().chain(fingers).chain(irises) {
            draft.templates.extend(xml::template(c, &element, modality));
        }
    }

    draft.finish(SourceSystem::Vis, checks)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse;
    use crate::bounds::{MAX_NATIONALITIES, MAX_TEMPLATES};
    use crate::record::{DocumentKind, FingerPosition, Modality, NameKind, Sex};
    use crate::test_support::{
        VIS, accept, assert_malformed, assert_refused, messages, names_normalised_by, vector,
        vector_with, xml_edit, xml_element, xml_text,
    };

    const FACE: &str = r#"<Face algorithm="acme-face-v3" quality="49">"#;
    const FINGER_1: &str =
        r#"<Finger position="RightMiddle" algorithm="acme-finger-v2" quality="54">"#;
    const FINGER_2: &str =
        r#"<Finger position="LeftThumb" algorithm="acme-finger-v2" quality="94">"#;

    #[test]
    fn the_fixture_maps_to_the_common_record() {
        let accepted = accept(parse, VIS);
        let record = &accepted.record;
        assert_eq!(record.source_id, "VIS-FR-2026-000001");
        assert_eq!(record.version, 1);
        assert_eq!(record.member_state.as_deref(), Some("DE"));
        assert_eq!(record.names.len(), 1);
        assert_eq!(record.names[0].surname.original, "Müller");
        assert_eq!(record.names[0].surname.icao, "MUELLER");
        assert_eq!(record.names[0].given_names.icao, "ANNA MARIA");
        assert_eq!(record.date_of_birth.to_string(), "1990-04-17");
        assert_eq!(record.place_of_birth, None);
        assert_eq!(record.sex, Sex::F);
        assert_eq!(record.nationalities, ["TUR"]);
        let document = &record.travel_documents[0];
        assert_eq!(document.kind, DocumentKind::Passport);
        assert_eq!(document.number_normalised, "U12345678");
        assert_eq!(document.issuing_country.as_deref(), Some("TUR"));
        assert_eq!(document.expiry.as_deref(), Some("2031-05-01"));
        let templates: Vec<_> = record
            .templates
            .iter()
            .map(|t| (t.modality, t.position, t.quality, t.indexable))
            .collect();
        assert_eq!(
            templates,
            [
                (Modality::Face, None, 49, false),
                (
                    Modality::Finger,
                    Some(FingerPosition::RightMiddle),
                    54,
                    true
                ),
                (Modality::Finger, Some(FingerPosition::LeftThumb), 94, true),
            ]
        );
        // The face's quality of 49 is below the face minimum of 50: kept, not indexed, reported.
        assert_eq!(accepted.findings.len(), 1);
        assert_eq!(
            accepted.findings[0].field,
            "/VisaApplication/Biometrics/Face"
        );
        assert_eq!(accepted.findings[0].rule, "template_below_minimum_quality");
        assert!(record.attributes.is_empty());
    }

    #[test]
    fn name_at_birth_and_place_of_birth() {
        let body = xml_edit(
            VIS,
            &[(
                "<FirstNames>",
                "<SurnameAtBirth>Yılmaz</SurnameAtBirth><PlaceOfBirth country=\"TUR\">Izmir</PlaceOfBirth><FirstNames>",
            )],
        );
        let record = accept(parse, &body).record;
        assert_eq!(record.names[1].kind, NameKind::AtBirth);
        assert_eq!(record.names[1].surname.original, "Yılmaz");
        assert_eq!(record.names[1].surname.icao, "YILMAZ");
        assert_eq!(record.names[1].given_names.original, "Anna Maria");
        let place = record.place_of_birth.unwrap();
        assert_eq!(
            (place.place.as_deref(), place.country.as_deref()),
            (Some("Izmir"), Some("TUR"))
        );
    }

    #[test]
    fn every_missing_required_field_is_listed() {
        let body = xml_edit(
            VIS,
            &[
                (r#" number="VIS-FR-2026-000001""#, ""),
                (r#" version="1""#, r#" version="""#),
                ("<Surname>Müller</Surname>", "<Surname>  </Surname>"),
                ("<DateOfBirth>1990-04-17</DateOfBirth>", ""),
                ("<Sex>F</Sex>", "<Sex/>"),
                ("<Nationality>TUR</Nationality>", ""),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/VisaApplication/@number", "required"),
                ("/VisaApplication/@version", "required"),
                ("/VisaApplication/Applicant/Surname", "required"),
                ("/VisaApplication/Applicant/DateOfBirth", "required"),
                ("/VisaApplication/Applicant/Sex", "required"),
                ("/VisaApplication/Applicant/Nationality", "required"),
            ],
        );
        let body = xml_edit(
            VIS,
            &[
                ("<Applicant>", "<Applicant2>"),
                ("</Applicant>", "</Applicant2>"),
            ],
        );
        assert_refused(parse, &body, &[("/VisaApplication/Applicant", "required")]);
    }

    #[test]
    fn errors_of_every_kind_are_collected_in_one_refusal() {
        let body = xml_text(VIS, FINGER_1, &vector(191));
        let body = xml_text(&body, FINGER_2, &vector_with(192, 3, f32::NAN));
        let body = xml_edit(
            &body,
            &[
                (r#" version="1""#, r#" version="one""#),
                ("<Sex>F</Sex>", "<Sex>U</Sex>"),
                (
                    "<DateOfBirth>1990-04-17</DateOfBirth>",
                    "<DateOfBirth>1990-02-30</DateOfBirth>",
                ),
                (
                    "<Nationality>TUR</Nationality>",
                    "<Nationality>TUR</Nationality><Nationality>Turkey</Nationality>",
                ),
                (r#"algorithm="acme-face-v3""#, r#"algorithm="acme-face-v4""#),
                (r#"quality="94""#, r#"quality="150""#),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/VisaApplication/@version", "wrong_type"),
                ("/VisaApplication/Applicant/DateOfBirth", "invalid_date"),
                ("/VisaApplication/Applicant/Sex", "unknown_enum_value"),
                (
                    "/VisaApplication/Applicant/Nationality[2]",
                    "invalid_country_code",
                ),
                (
                    "/VisaApplication/Biometrics/Face/@algorithm",
                    "unregistered_algorithm",
                ),
                ("/VisaApplication/Biometrics/Finger[1]", "wrong_dimension"),
                (
                    "/VisaApplication/Biometrics/Finger[2]/@quality",
                    "out_of_range",
                ),
                ("/VisaApplication/Biometrics/Finger[2]", "not_finite"),
            ],
        );
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        let cases = [
            (
                "<Sex>F</Sex>",
                "<Sex>female</Sex>",
                "/VisaApplication/Applicant/Sex",
            ),
            (
                r#"position="RightMiddle""#,
                r#"position="right_middle""#,
                "/VisaApplication/Biometrics/Finger[1]/@position",
            ),
            (
                r#"type="P""#,
                r#"type="passport""#,
                "/VisaApplication/TravelDocument/@type",
            ),
        ];
        for (from, to, path) in cases {
            assert_refused(
                parse,
                &xml_edit(VIS, &[(from, to)]),
                &[(path, "unknown_enum_value")],
            );
        }
        let body = xml_edit(VIS, &[("<Sex>F</Sex>", "<Sex>X</Sex>")]);
        assert_eq!(accept(parse, &body).record.sex, Sex::X);
    }

    #[test]
    fn template_rules_are_enforced() {
        let cases = [
            (
                r#"position="LeftThumb" algorithm="acme-finger-v2""#,
                r#"position="LeftThumb" algorithm="acme-face-v3""#,
                "/VisaApplication/Biometrics/Finger[2]/@algorithm",
                "algorithm_modality_mismatch",
            ),
            (
                FACE,
                r#"<Face position="RightIndex" algorithm="acme-face-v3" quality="49">"#,
                "/VisaApplication/Biometrics/Face/@position",
                "unexpected",
            ),
            (
                r#" position="RightMiddle""#,
                "",
                "/VisaApplication/Biometrics/Finger[1]/@position",
                "required",
            ),
            (
                r#"quality="49""#,
                r#"quality="high""#,
                "/VisaApplication/Biometrics/Face/@quality",
                "wrong_type",
            ),
        ];
        for (from, to, path, rule) in cases {
            let refused = crate::test_support::refusal(parse, &xml_edit(VIS, &[(from, to)]));
            assert_eq!(refused[0], (path.to_owned(), rule), "{refused:?}");
        }
        let body = xml_text(VIS, FACE, "@@not base64@@");
        assert_refused(
            parse,
            &body,
            &[("/VisaApplication/Biometrics/Face", "invalid_base64")],
        );
        let body = xml_text(VIS, FINGER_1, "");
        assert_refused(
            parse,
            &body,
            &[("/VisaApplication/Biometrics/Finger[1]", "required")],
        );
    }

    #[test]
    fn line_wrapped_base64_is_accepted() {
        let wrapped: String = vector(192)
            .as_bytes()
            .chunks(76)
            .map(|line| format!("\n      {}", String::from_utf8_lossy(line)))
            .collect();
        let body = xml_text(VIS, FINGER_1, &wrapped);
        assert_eq!(accept(parse, &body).record.templates[1].vector.len(), 192);
    }

    #[test]
    fn whitespace_around_codes_and_numbers_is_insignificant() {
        let body = xml_edit(
            VIS,
            &[
                (
                    "<Nationality>TUR</Nationality>",
                    "<Nationality>\n      TUR\n    </Nationality>",
                ),
                ("<Sex>F</Sex>", "<Sex> F </Sex>"),
                (r#"version="1""#, r#"version=" 2 ""#),
            ],
        );
        let record = accept(parse, &body).record;
        assert_eq!(record.nationalities, ["TUR"]);
        assert_eq!(record.sex, Sex::F);
        assert_eq!(record.version, 2);
    }

    #[test]
    fn partial_dates_of_birth() {
        for date in ["1990", "1990-04"] {
            let body = xml_edit(VIS, &[("1990-04-17", date)]);
            assert_eq!(accept(parse, &body).record.date_of_birth.to_string(), date);
        }
    }

    #[test]
    fn a_repeated_single_element_is_refused_rather_than_guessed() {
        let body = xml_edit(
            VIS,
            &[(
                "<Surname>Müller</Surname>",
                "<Surname>Müller</Surname><Surname>Meyer</Surname>",
            )],
        );
        assert_refused(
            parse,
            &body,
            &[("/VisaApplication/Applicant/Surname[2]", "unexpected")],
        );
    }

    #[test]
    fn elements_of_other_namespaces_and_unknown_elements_are_ignored() {
        let body = xml_edit(
            VIS,
            &[(
                "<Sex>F</Sex>",
                r#"<Sex>F</Sex><x:Surname xmlns:x="urn:vendor">Other</x:Surname><Remarks>none</Remarks>"#,
            )],
        );
        assert_eq!(accept(parse, &body).record.names.len(), 1);
    }

    #[test]
    fn messages_never_echo_the_offending_values() {
        let secret = "Zq7Secret";
        let body = xml_edit(
            VIS,
            &[
                ("<Sex>F</Sex>", "<Sex>Zq7Secret</Sex>"),
                (
                    "<Nationality>TUR</Nationality>",
                    "<Nationality>Zq7Secret</Nationality>",
                ),
                (r#"issuer="TUR""#, r#"issuer="Zq7Secret""#),
                (r#"version="1""#, r#"version="Zq7Secret""#),
            ],
        );
        let messages = messages(parse, &body);
        assert_eq!(messages.len(), 4);
        assert!(messages.iter().all(|m| !m.contains(secret)), "{messages:?}");
    }

    #[test]
    fn a_long_surname_is_refused_before_any_name_is_normalised() {
        let surname = format!("<Surname>{}</Surname>", "Müller".repeat(20_000 / 6));
        let body = xml_edit(VIS, &[("<Surname>Müller</Surname>", &surname)]);
        let normalised = names_normalised_by(|| {
            assert_refused(
                parse,
                &body,
                &[("/VisaApplication/Applicant/Surname", "too_long")],
            );
        });
        assert_eq!(normalised, 0);
    }

    #[test]
    fn texts_and_repeated_elements_are_bounded() {
        let nationalities = "<Nationality>TUR</Nationality>".repeat(MAX_NATIONALITIES + 1);
        let place = format!("<PlaceOfBirth>{}</PlaceOfBirth>", "I".repeat(129));
        let body = xml_edit(
            VIS,
            &[
                (
                    r#"number="VIS-FR-2026-000001""#,
                    "number=\"VIS-FR\u{2066}-2026\"",
                ),
                (
                    "<FirstNames>Anna Maria</FirstNames>",
                    "<FirstNames>Anna\u{200B}Maria</FirstNames>",
                ),
                (
                    "<Nationality>TUR</Nationality>",
                    &format!("{place}{nationalities}"),
                ),
                (
                    r#"number="U12345678""#,
                    &format!(r#"number="{}""#, "U".repeat(33)),
                ),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/VisaApplication/@number", "forbidden_character"),
                (
                    "/VisaApplication/Applicant/FirstNames",
                    "forbidden_character",
                ),
                ("/VisaApplication/Applicant/PlaceOfBirth", "too_long"),
                ("/VisaApplication/Applicant/Nationality", "too_many"),
                ("/VisaApplication/TravelDocument/@number", "too_long"),
            ],
        );
    }

    #[test]
    fn faces_fingers_and_irises_share_the_templates_bound() {
        let finger = xml_element(VIS, FINGER_2, "Finger");
        // The face and the fixture's two fingers are three templates already.
        let filling = finger.repeat(MAX_TEMPLATES - 3);
        let body = xml_edit(VIS, &[(&finger, &format!("{finger}{filling}"))]);
        assert_eq!(accept(parse, &body).record.templates.len(), MAX_TEMPLATES);
        let body = xml_edit(VIS, &[(&finger, &format!("{finger}{filling}{finger}"))]);
        assert_refused(
            parse,
            &body,
            &[("/VisaApplication/Biometrics/Finger", "too_many")],
        );
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        let not_well_formed = xml_edit(VIS, &[("</Applicant>", "</Applicant2>")]);
        let detail = assert_malformed(parse, &not_well_formed);
        assert!(detail.contains("line"), "{detail}");
        assert!(!detail.contains("Applicant2"), "{detail}");
        let wrong_root = xml_edit(
            VIS,
            &[
                ("<VisaApplication ", "<VisaRequest "),
                ("</VisaApplication>", "</VisaRequest>"),
            ],
        );
        let wrong_namespace = xml_edit(VIS, &[("urn:interop-hub:vis:1", "urn:interop-hub:vis:2")]);
        let no_namespace = xml_edit(VIS, &[(r#" xmlns="urn:interop-hub:vis:1""#, "")]);
        let ecris_namespace = xml_edit(
            VIS,
            &[("urn:interop-hub:vis:1", "urn:interop-hub:ecris-tcn:1")],
        );
        let mut latin1 = VIS.to_vec();
        let umlaut = latin1
            .windows(2)
            .position(|pair| pair == "ü".as_bytes())
            .unwrap();
        latin1.splice(umlaut..umlaut + 2, [0xFC]);
        let with_dtd = b"<?xml version=\"1.0\"?><!DOCTYPE VisaApplication [<!ENTITY a \"aaaa\">]><VisaApplication xmlns=\"urn:interop-hub:vis:1\"/>";
        for body in [
            &not_well_formed[..],
            &wrong_root,
            &wrong_namespace,
            &no_namespace,
            &ecris_namespace,
            &latin1,
            with_dtd,
            b"",
            b"{\"number\": \"VIS-1\"}",
        ] {
            assert_malformed(parse, body);
        }
    }
}
