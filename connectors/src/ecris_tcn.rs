//! ECRIS-TCN (convicted third-country nationals) connector: a convicted person in XML,
//! namespace `urn:interop-hub:ecris-tcn:1`, root `ConvictedPerson`.

use crate::Accepted;
use crate::bounds::{MAX_NATIONALITIES, MAX_OTHER_NAMES, MAX_TEMPLATES};
use crate::fields::{self, Checks, DocumentCodes, DocumentFields, Draft};
use crate::record::{Modality, NameKind, Sex, SourceSystem};
use crate::refusal::Refusal;
use crate::registry::AlgorithmRegistry;
use crate::xml::{self, Element};

const NAMESPACE: &str = "urn:interop-hub:ecris-tcn:1";
const ROOT: &str = "ConvictedPerson";
const SEX: [(&str, Sex); 3] = [("M", Sex::M), ("F", Sex::F), ("U", Sex::X)];

pub(crate) fn parse(body: &[u8], registry: &AlgorithmRegistry) -> Result<Accepted, Refusal> {
    let document = xml::parse_document(body, NAMESPACE, ROOT)?;
    let root = Element::root(&document);
    let mut checks = Checks::new(registry);
    let c = &mut checks;
    let mut draft = Draft {
        source_id: root
            .attribute("recordId")
            .required(c)
            .identifier(c)
            .map(str::to_owned),
        version: root.attribute("version").required(c).version(c),
        member_state: root.attribute("convictingState").member_state(c),
        ..Draft::default()
    };

    if let Some(identity) = root.required_child("Identity", c) {
        let surname = identity.child_text("Surname", c).required(c).name(c);
        let given_names = identity
            .child_text("Forename", c)
            .name(c)
            .unwrap_or_default();
        draft.primary_name =
            surname.map(|surname| fields::person_name(NameKind::Primary, surname, given_names));
        draft.date_of_birth = identity
            .child_text("BirthDate", c)
            .required(c)
            .partial_date(c);
        if let Some(place) = identity.child("BirthPlace", c) {
            let country = place.attribute("country").country(c);
            draft.place_of_birth = fields::place_of_birth(place.text().place(c), country);
        }
        draft.sex = identity.child_text("Gender", c).required(c).one_of(c, &SEX);
        let nationalities = identity
            .required_children("Nationality", MAX_NATIONALITIES, c)
            .iter()
            .map(Element::text)
            .collect();
        draft.nationalities = fields::nationalities(c, nationalities);
        // The format gives previous names and pseudonyms as one text each, with no split into
        // surname and given names: the whole text is kept as the surname so nothing is lost.
        // Previous names and pseudonyms share the record's one allowance of other names.
        let mut allowance = MAX_OTHER_NAMES;
        for (element, kind) in [
            ("PreviousName", NameKind::Previous),
            ("Pseudonym", NameKind::Pseudonym),
        ] {
            let names = identity.children(element, allowance, c);
            allowance -= names.len();
            for name in names {
                if let Some(text) = name.text().required(c).name(c) {
                    draft.other_names.push(fields::person_name(kind, text, ""));
                }
            }
        }
    }

    if let Some(document) = root.child("IdentityDocument", c) {
        let fields = DocumentFields {
            codes: DocumentCodes::Icao,
            kind: document.attribute("type"),
            number: document.attribute("number"),
            country: document.attribute("country"),
            expiry: None,
        };
        draft
            .travel_documents
            .extend(fields::travel_document(c, fields));
    }

    // The facial image and the fingers share the record's one allowance of templates.
    let face = root.child("FacialImage", c);
    if let Some(fingerprints) = root.child("Fingerprints", c) {
        let allowance = MAX_TEMPLATES - usize::from(face.is_some());
        for finger in fingerprints.children("Finger", allowance, c) {
            draft
                .templates
                .extend(xml::template(c, &finger, Modality::Finger));
        }
    }
    if let Some(face) = face {
        draft
            .templates
            .extend(xml::template(c, &face, Modality::Face));
    }

    draft.finish(SourceSystem::EcrisTcn, checks)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse;
    use crate::bounds::MAX_OTHER_NAMES;
    use crate::record::{DocumentKind, FingerPosition, Modality, NameKind, Sex};
    use crate::test_support::{
        ECRIS_TCN, accept, assert_malformed, assert_refused, names_normalised_by, vector,
        vector_with, xml_edit, xml_text,
    };

    const FINGER_1: &str =
        r#"<Finger position="RightMiddle" algorithm="acme-finger-v2" quality="67">"#;
    const FACE: &str = r#"<FacialImage algorithm="acme-face-v3" quality="93">"#;

    #[test]
    fn the_fixture_maps_to_the_common_record() {
        let accepted = accept(parse, ECRIS_TCN);
        let record = &accepted.record;
        assert_eq!(record.source_id, "ECRIS-NL-2026-000009");
        assert_eq!(record.version, 1);
        assert_eq!(record.member_state.as_deref(), Some("PL"));
        assert_eq!(record.names.len(), 1);
        assert_eq!(record.names[0].surname.original, "Müller");
        assert_eq!(record.names[0].surname.icao, "MUELLER");
        assert_eq!(record.names[0].given_names.original, "Anna Maria");
        assert_eq!(record.date_of_birth.to_string(), "1990-04-17");
        assert_eq!(record.place_of_birth, None);
        assert_eq!(record.sex, Sex::F);
        assert_eq!(record.nationalities, ["TUR"]);
        let document = &record.travel_documents[0];
        assert_eq!(document.kind, DocumentKind::Passport);
        assert_eq!(document.number, "U12345678");
        assert_eq!(document.issuing_country.as_deref(), Some("TUR"));
        assert_eq!(document.expiry, None);
        let templates: Vec<_> = record
            .templates
            .iter()
            .map(|t| (t.modality, t.position, t.quality, t.indexable))
            .collect();
        assert_eq!(
            templates,
            [
                (
                    Modality::Finger,
                    Some(FingerPosition::RightMiddle),
                    67,
                    true
                ),
                (Modality::Finger, Some(FingerPosition::LeftThumb), 89, true),
                (Modality::Face, None, 93, true),
            ]
        );
        assert!(accepted.findings.is_empty());
    }

    #[test]
    fn previous_names_pseudonyms_and_place_of_birth() {
        let body = xml_edit(
            ECRIS_TCN,
            &[(
                "<Nationality>TUR</Nationality>",
                "<BirthPlace country=\"TUR\">Izmir</BirthPlace><Nationality>TUR</Nationality>\
                 <Nationality>DEU</Nationality><PreviousName>Yılmaz</PreviousName>\
                 <Pseudonym>Anna K.</Pseudonym><PreviousName>Schmidt</PreviousName>",
            )],
        );
        let record = accept(parse, &body).record;
        let names: Vec<_> = record
            .names
            .iter()
            .map(|n| {
                (
                    n.kind,
                    n.surname.original.as_str(),
                    n.given_names.original.as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                (NameKind::Primary, "Müller", "Anna Maria"),
                (NameKind::Previous, "Yılmaz", ""),
                (NameKind::Previous, "Schmidt", ""),
                (NameKind::Pseudonym, "Anna K.", ""),
            ]
        );
        assert_eq!(record.nationalities, ["TUR", "DEU"]);
        let place = record.place_of_birth.unwrap();
        assert_eq!(
            (place.place.as_deref(), place.country.as_deref()),
            (Some("Izmir"), Some("TUR"))
        );
    }

    #[test]
    fn every_missing_required_field_is_listed() {
        let body = xml_edit(
            ECRIS_TCN,
            &[
                (r#" recordId="ECRIS-NL-2026-000009""#, r#" recordId="""#),
                (r#" version="1""#, ""),
                ("<Surname>Müller</Surname>", ""),
                (
                    "<BirthDate>1990-04-17</BirthDate>",
                    "<BirthDate></BirthDate>",
                ),
                ("<Gender>F</Gender>", ""),
                (
                    "<Nationality>TUR</Nationality>",
                    "<Nationality> </Nationality><PreviousName/>",
                ),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/ConvictedPerson/@recordId", "required"),
                ("/ConvictedPerson/@version", "required"),
                ("/ConvictedPerson/Identity/Surname", "required"),
                ("/ConvictedPerson/Identity/BirthDate", "required"),
                ("/ConvictedPerson/Identity/Gender", "required"),
                ("/ConvictedPerson/Identity/Nationality[1]", "required"),
                ("/ConvictedPerson/Identity/PreviousName[1]", "required"),
            ],
        );
    }

    #[test]
    fn errors_of_every_kind_are_collected_in_one_refusal() {
        let body = xml_text(ECRIS_TCN, FINGER_1, &vector(512));
        let body = xml_text(&body, FACE, &vector_with(512, 0, f32::NEG_INFINITY));
        let body = xml_edit(
            &body,
            &[
                (r#" version="1""#, r#" version="0""#),
                (r#"convictingState="PL""#, r#"convictingState="POL""#),
                ("<Gender>F</Gender>", "<Gender>X</Gender>"),
                (
                    "<BirthDate>1990-04-17</BirthDate>",
                    "<BirthDate>1990-02-30</BirthDate>",
                ),
                (
                    "<Nationality>TUR</Nationality>",
                    "<Nationality>tr</Nationality>",
                ),
                (r#"position="LeftThumb""#, r#"position="LeftToe""#),
                (r#"algorithm="acme-face-v3""#, r#"algorithm="vendor-face""#),
                (r#"type="P""#, r#"type="""#),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/ConvictedPerson/@version", "out_of_range"),
                ("/ConvictedPerson/@convictingState", "invalid_country_code"),
                ("/ConvictedPerson/Identity/BirthDate", "invalid_date"),
                ("/ConvictedPerson/Identity/Gender", "unknown_enum_value"),
                (
                    "/ConvictedPerson/Identity/Nationality[1]",
                    "invalid_country_code",
                ),
                ("/ConvictedPerson/IdentityDocument/@type", "required"),
                ("/ConvictedPerson/Fingerprints/Finger[1]", "wrong_dimension"),
                (
                    "/ConvictedPerson/Fingerprints/Finger[2]/@position",
                    "unknown_enum_value",
                ),
                (
                    "/ConvictedPerson/FacialImage/@algorithm",
                    "unregistered_algorithm",
                ),
                ("/ConvictedPerson/FacialImage", "not_finite"),
            ],
        );
    }

    #[test]
    fn gender_u_is_unspecified_and_partial_dates_are_accepted() {
        let body = xml_edit(
            ECRIS_TCN,
            &[
                ("<Gender>F</Gender>", "<Gender>U</Gender>"),
                ("1990-04-17", "1990-04"),
            ],
        );
        let record = accept(parse, &body).record;
        assert_eq!(record.sex, Sex::X);
        assert_eq!(record.date_of_birth.to_string(), "1990-04");
        let body = xml_edit(ECRIS_TCN, &[("1990-04-17", "1990")]);
        assert_eq!(
            accept(parse, &body).record.date_of_birth.to_string(),
            "1990"
        );
    }

    #[test]
    fn a_face_below_minimum_quality_is_a_finding() {
        let body = xml_edit(ECRIS_TCN, &[(r#"quality="93""#, r#"quality="12""#)]);
        let accepted = accept(parse, &body);
        assert!(!accepted.record.templates[2].indexable);
        assert_eq!(accepted.findings.len(), 1);
        assert_eq!(accepted.findings[0].field, "/ConvictedPerson/FacialImage");
    }

    #[test]
    fn a_long_surname_is_refused_before_any_name_is_normalised() {
        let surname = format!("<Surname>{}</Surname>", "R".repeat(20_000));
        let body = xml_edit(ECRIS_TCN, &[("<Surname>Müller</Surname>", &surname)]);
        let normalised = names_normalised_by(|| {
            assert_refused(
                parse,
                &body,
                &[("/ConvictedPerson/Identity/Surname", "too_long")],
            );
        });
        assert_eq!(normalised, 0);
    }

    #[test]
    fn previous_names_and_pseudonyms_share_the_other_names_bound() {
        let previous = "<PreviousName>Rossi Marco</PreviousName>".repeat(10);
        let pseudonyms = "<Pseudonym>Il Rosso</Pseudonym>".repeat(MAX_OTHER_NAMES - 10);
        let names = format!("<Nationality>TUR</Nationality>{previous}{pseudonyms}");
        let body = xml_edit(ECRIS_TCN, &[("<Nationality>TUR</Nationality>", &names)]);
        assert_eq!(accept(parse, &body).record.names.len(), 1 + MAX_OTHER_NAMES);
        let names = format!("{names}<Pseudonym>Il Rosso</Pseudonym>");
        let body = xml_edit(
            ECRIS_TCN,
            &[
                ("<Nationality>TUR</Nationality>", &names),
                (
                    r#"recordId="ECRIS-NL-2026-000009""#,
                    "recordId=\"ECRIS\u{200F}-NL\"",
                ),
                (r#"number="U12345678""#, "number=\"U1234\u{061C}5678\""),
            ],
        );
        assert_refused(
            parse,
            &body,
            &[
                ("/ConvictedPerson/@recordId", "forbidden_character"),
                ("/ConvictedPerson/Identity/Pseudonym", "too_many"),
                (
                    "/ConvictedPerson/IdentityDocument/@number",
                    "forbidden_character",
                ),
            ],
        );
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        let vis_root = xml_edit(
            ECRIS_TCN,
            &[
                ("<ConvictedPerson ", "<VisaApplication "),
                ("</ConvictedPerson>", "</VisaApplication>"),
            ],
        );
        let vis_namespace = xml_edit(
            ECRIS_TCN,
            &[("urn:interop-hub:ecris-tcn:1", "urn:interop-hub:vis:1")],
        );
        let truncated = &ECRIS_TCN[..ECRIS_TCN.len() / 2];
        for body in [
            &vis_root[..],
            &vis_namespace,
            truncated,
            b"<ConvictedPerson xmlns=\"urn:interop-hub:ecris-tcn:1\">",
            b"plain text",
        ] {
            assert_malformed(parse, body);
        }
    }
}
