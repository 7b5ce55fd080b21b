//! Every refusal rule of docs/SOURCE-FORMATS.md#refusal-rules: the status, the problem document naming the
//! field, and nothing of the refused record stored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hub_tests::{Backend, TestHub, fixture, on_both_backends};
use serde_json::{Value, json};

on_both_backends!(
    every_refusal_rule_names_its_field_and_stores_nothing,
    all_offending_fields_are_listed,
    malformed_bodies_are_400_problems,
);

struct Case {
    what: &'static str,
    system: &'static str,
    content_type: &'static str,
    body: String,
    field: &'static str,
    rule: &'static str,
}

fn json_case(
    what: &'static str,
    system: &'static str,
    file: &str,
    field: &'static str,
    rule: &'static str,
    edit: impl FnOnce(&mut Value),
) -> Case {
    let mut record: Value = serde_json::from_str(&fixture(file)).expect("fixture is JSON");
    edit(&mut record);
    Case {
        what,
        system,
        content_type: "application/json",
        body: record.to_string(),
        field,
        rule,
    }
}

fn xml_case(
    what: &'static str,
    system: &'static str,
    file: &str,
    field: &'static str,
    rule: &'static str,
    from: &str,
    to: &str,
) -> Case {
    let original = fixture(file);
    assert!(original.contains(from), "{what}: fixture holds {from:?}");
    Case {
        what,
        system,
        content_type: "application/xml",
        body: original.replacen(from, to, 1),
        field,
        rule,
    }
}

fn remove(value: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent object")
        .remove(key);
}

fn set(value: &mut Value, pointer: &str, new: Value) {
    *value.pointer_mut(pointer).expect("field exists") = new;
}

/// The template at `pointer` with its first value replaced by NaN.
fn with_nan(value: &mut Value, pointer: &str) {
    let data = value
        .pointer(pointer)
        .and_then(Value::as_str)
        .expect("template data");
    let mut bytes = STANDARD.decode(data).expect("base64");
    bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    set(value, pointer, json!(STANDARD.encode(bytes)));
}

/// The template at `pointer` one value short.
fn truncated(value: &mut Value, pointer: &str) {
    let data = value
        .pointer(pointer)
        .and_then(Value::as_str)
        .expect("template data");
    let bytes = STANDARD.decode(data).expect("base64");
    set(
        value,
        pointer,
        json!(STANDARD.encode(&bytes[..bytes.len() - 4])),
    );
}

fn xml_text_between<'a>(document: &'a str, open: &str) -> &'a str {
    let start = document.find(open).expect("element present") + open.len();
    let end = start + document[start..].find('<').expect("element closes");
    &document[start..end]
}

fn cases() -> Vec<Case> {
    let vis = fixture("vis.xml");
    let vis_face =
        xml_text_between(&vis, r#"<Face algorithm="acme-face-v3" quality="49">"#).to_owned();
    let short_face = {
        let bytes = STANDARD.decode(&vis_face).expect("base64");
        STANDARD.encode(&bytes[..bytes.len() - 4])
    };
    let ecris = fixture("ecris-tcn.xml");
    let ecris_finger = xml_text_between(
        &ecris,
        r#"<Finger position="RightMiddle" algorithm="acme-finger-v2" quality="67">"#,
    )
    .to_owned();
    let nan_finger = {
        let mut bytes = STANDARD.decode(&ecris_finger).expect("base64");
        bytes[..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        STANDARD.encode(bytes)
    };
    vec![
        json_case(
            "EES without source id",
            "ees",
            "ees.json",
            "/file_id",
            "required",
            |r| remove(r, "/file_id"),
        ),
        json_case(
            "EES without version",
            "ees",
            "ees.json",
            "/version",
            "required",
            |r| remove(r, "/version"),
        ),
        json_case(
            "EES version 0",
            "ees",
            "ees.json",
            "/version",
            "out_of_range",
            |r| set(r, "/version", json!(0)),
        ),
        json_case(
            "EES without surname",
            "ees",
            "ees.json",
            "/traveller/surname",
            "required",
            |r| remove(r, "/traveller/surname"),
        ),
        json_case(
            "EES blank surname",
            "ees",
            "ees.json",
            "/traveller/surname",
            "required",
            |r| set(r, "/traveller/surname", json!("  ")),
        ),
        json_case(
            "EES without date of birth",
            "ees",
            "ees.json",
            "/traveller/date_of_birth",
            "required",
            |r| remove(r, "/traveller/date_of_birth"),
        ),
        json_case(
            "EES impossible date",
            "ees",
            "ees.json",
            "/traveller/date_of_birth",
            "invalid_date",
            |r| set(r, "/traveller/date_of_birth", json!("1990-02-30")),
        ),
        json_case(
            "EES unknown sex",
            "ees",
            "ees.json",
            "/traveller/sex",
            "unknown_enum_value",
            |r| set(r, "/traveller/sex", json!("Q")),
        ),
        json_case(
            "EES unknown event kind",
            "ees",
            "ees.json",
            "/events/0/kind",
            "unknown_enum_value",
            |r| set(r, "/events/0/kind", json!("teleport")),
        ),
        json_case(
            "EES unknown finger position",
            "ees",
            "ees.json",
            "/biometrics/1/position",
            "unknown_enum_value",
            |r| set(r, "/biometrics/1/position", json!("right_toe")),
        ),
        json_case(
            "EES unregistered algorithm",
            "ees",
            "ees.json",
            "/biometrics/0/algorithm",
            "unregistered_algorithm",
            |r| set(r, "/biometrics/0/algorithm", json!("acme-face-v9")),
        ),
        json_case(
            "EES wrong dimension",
            "ees",
            "ees.json",
            "/biometrics/1/data",
            "wrong_dimension",
            |r| truncated(r, "/biometrics/1/data"),
        ),
        json_case(
            "EES zero vector",
            "ees",
            "ees.json",
            "/biometrics/0/data",
            "zero_vector",
            |r| {
                set(
                    r,
                    "/biometrics/0/data",
                    json!(STANDARD.encode([0_u8; 512 * 4])),
                )
            },
        ),
        json_case(
            "EES control character",
            "ees",
            "ees.json",
            "/traveller/surname",
            "control_character",
            |r| set(r, "/traveller/surname", json!("Mül\u{0}ler")),
        ),
        json_case(
            "EES value not finite",
            "ees",
            "ees.json",
            "/biometrics/0/data",
            "not_finite",
            |r| with_nan(r, "/biometrics/0/data"),
        ),
        json_case(
            "ETIAS without source id",
            "etias",
            "etias.json",
            "/application_number",
            "required",
            |r| remove(r, "/application_number"),
        ),
        json_case(
            "ETIAS without revision",
            "etias",
            "etias.json",
            "/revision",
            "required",
            |r| remove(r, "/revision"),
        ),
        json_case(
            "ETIAS without family name",
            "etias",
            "etias.json",
            "/applicant/family_name",
            "required",
            |r| remove(r, "/applicant/family_name"),
        ),
        json_case(
            "ETIAS without birth date",
            "etias",
            "etias.json",
            "/applicant/birth_date",
            "required",
            |r| remove(r, "/applicant/birth_date"),
        ),
        json_case(
            "ETIAS unknown status",
            "etias",
            "etias.json",
            "/status",
            "unknown_enum_value",
            |r| set(r, "/status", json!("maybe")),
        ),
        json_case(
            "ETIAS unknown sex",
            "etias",
            "etias.json",
            "/applicant/sex",
            "unknown_enum_value",
            |r| set(r, "/applicant/sex", json!("F")),
        ),
        json_case(
            "SIS without source id",
            "sis",
            "sis.json",
            "/alert_id",
            "required",
            |r| remove(r, "/alert_id"),
        ),
        json_case(
            "SIS without surnames",
            "sis",
            "sis.json",
            "/person/surnames",
            "required",
            |r| remove(r, "/person/surnames"),
        ),
        json_case(
            "SIS without dob",
            "sis",
            "sis.json",
            "/person/dob",
            "required",
            |r| remove(r, "/person/dob"),
        ),
        json_case(
            "SIS unknown category",
            "sis",
            "sis.json",
            "/category",
            "unknown_enum_value",
            |r| set(r, "/category", json!("wanted")),
        ),
        json_case(
            "SIS unknown modality",
            "sis",
            "sis.json",
            "/biometrics/0/modality",
            "unknown_enum_value",
            |r| set(r, "/biometrics/0/modality", json!("voice")),
        ),
        json_case(
            "SIS wrong dimension",
            "sis",
            "sis.json",
            "/biometrics/2/data",
            "wrong_dimension",
            |r| truncated(r, "/biometrics/2/data"),
        ),
        json_case(
            "SIS value not finite",
            "sis",
            "sis.json",
            "/biometrics/1/data",
            "not_finite",
            |r| with_nan(r, "/biometrics/1/data"),
        ),
        xml_case(
            "VIS without source id",
            "vis",
            "vis.xml",
            "/VisaApplication/@number",
            "required",
            r#" number="VIS-FR-2026-000001""#,
            "",
        ),
        xml_case(
            "VIS without version",
            "vis",
            "vis.xml",
            "/VisaApplication/@version",
            "required",
            r#" version="1""#,
            "",
        ),
        xml_case(
            "VIS version 0",
            "vis",
            "vis.xml",
            "/VisaApplication/@version",
            "out_of_range",
            r#"version="1""#,
            r#"version="0""#,
        ),
        xml_case(
            "VIS without surname",
            "vis",
            "vis.xml",
            "/VisaApplication/Applicant/Surname",
            "required",
            "<Surname>Müller</Surname>",
            "",
        ),
        xml_case(
            "VIS without date of birth",
            "vis",
            "vis.xml",
            "/VisaApplication/Applicant/DateOfBirth",
            "required",
            "<DateOfBirth>1990-04-17</DateOfBirth>",
            "",
        ),
        xml_case(
            "VIS unknown sex",
            "vis",
            "vis.xml",
            "/VisaApplication/Applicant/Sex",
            "unknown_enum_value",
            "<Sex>F</Sex>",
            "<Sex>female</Sex>",
        ),
        xml_case(
            "VIS unknown finger position",
            "vis",
            "vis.xml",
            "/VisaApplication/Biometrics/Finger[1]/@position",
            "unknown_enum_value",
            r#"position="RightMiddle""#,
            r#"position="RightToe""#,
        ),
        xml_case(
            "VIS unregistered algorithm",
            "vis",
            "vis.xml",
            "/VisaApplication/Biometrics/Face/@algorithm",
            "unregistered_algorithm",
            r#"<Face algorithm="acme-face-v3""#,
            r#"<Face algorithm="acme-face-v1""#,
        ),
        xml_case(
            "VIS wrong dimension",
            "vis",
            "vis.xml",
            "/VisaApplication/Biometrics/Face",
            "wrong_dimension",
            &vis_face,
            &short_face,
        ),
        xml_case(
            "ECRIS without source id",
            "ecris-tcn",
            "ecris-tcn.xml",
            "/ConvictedPerson/@recordId",
            "required",
            r#" recordId="ECRIS-NL-2026-000009""#,
            "",
        ),
        xml_case(
            "ECRIS without surname",
            "ecris-tcn",
            "ecris-tcn.xml",
            "/ConvictedPerson/Identity/Surname",
            "required",
            "<Surname>Müller</Surname>",
            "",
        ),
        xml_case(
            "ECRIS without birth date",
            "ecris-tcn",
            "ecris-tcn.xml",
            "/ConvictedPerson/Identity/BirthDate",
            "required",
            "<BirthDate>1990-04-17</BirthDate>",
            "",
        ),
        xml_case(
            "ECRIS partial date is fine, a bad one is not",
            "ecris-tcn",
            "ecris-tcn.xml",
            "/ConvictedPerson/Identity/BirthDate",
            "invalid_date",
            "<BirthDate>1990-04-17</BirthDate>",
            "<BirthDate>17/04/1990</BirthDate>",
        ),
        xml_case(
            "ECRIS unknown gender",
            "ecris-tcn",
            "ecris-tcn.xml",
            "/ConvictedPerson/Identity/Gender",
            "unknown_enum_value",
            "<Gender>F</Gender>",
            "<Gender>Z</Gender>",
        ),
        xml_case(
            "ECRIS value not finite",
            "ecris-tcn",
            "ecris-tcn.xml",
            "/ConvictedPerson/Fingerprints/Finger[1]",
            "not_finite",
            &ecris_finger,
            &nan_finger,
        ),
    ]
}

async fn assert_refused(hub: &TestHub, case: &Case) {
    let response = hub
        .post_record(case.system, case.content_type, case.body.clone())
        .await;
    assert_eq!(response.status(), 422, "{}", case.what);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{}",
        case.what
    );
    let problem: Value = response.json().await.expect("problem+json");
    assert_eq!(problem["status"], 422, "{}", case.what);
    assert_eq!(problem["code"], "validation_failed", "{}", case.what);
    let errors = problem["errors"].as_array().expect("errors list");
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == case.field && e["rule"] == case.rule),
        "{}: expected {} {} in {errors:#?}",
        case.what,
        case.rule,
        case.field
    );
}

async fn every_refusal_rule_names_its_field_and_stores_nothing(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for case in cases() {
        assert_refused(&hub, &case).await;
        assert_eq!(
            hub.count_all_rows().await,
            0,
            "{}: nothing of a refused record is stored",
            case.what
        );
    }
    hub.stop().await;
}

async fn all_offending_fields_are_listed(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let mut record: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    remove(&mut record, "/traveller/surname");
    set(&mut record, "/traveller/sex", json!("Q"));
    set(&mut record, "/biometrics/2/algorithm", json!("nobody-v1"));
    let response = hub
        .post_record("ees", "application/json", record.to_string())
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("json");
    let mut named: Vec<(String, String)> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").to_owned(),
                e["rule"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    named.sort();
    assert_eq!(
        named,
        [
            (
                "/biometrics/2/algorithm".to_owned(),
                "unregistered_algorithm".to_owned()
            ),
            ("/traveller/sex".to_owned(), "unknown_enum_value".to_owned()),
            ("/traveller/surname".to_owned(), "required".to_owned()),
        ]
    );
    // The offending values never echo back: they may be personal data.
    assert!(!problem.to_string().contains("nobody-v1"));
    assert_eq!(hub.count_all_rows().await, 0);
    hub.stop().await;
}

async fn malformed_bodies_are_400_problems(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let cases = [
        (
            "ees",
            "application/json",
            r#"{"file_id": "EES-1", "version": "#.to_owned(),
        ),
        ("sis", "application/json", "[1, 2, 3]".to_owned()),
        (
            "vis",
            "application/xml",
            "<VisaApplication xmlns=\"urn:interop-hub:vis:1\"><Applicant>".to_owned(),
        ),
        ("ecris-tcn", "application/xml", fixture("vis.xml")),
    ];
    for (system, content_type, body) in cases {
        let response = hub.post_record(system, content_type, body).await;
        assert_eq!(response.status(), 400, "{system}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["code"], "malformed_record", "{system}");
    }
    assert_eq!(hub.count_all_rows().await, 0);
    hub.stop().await;
}
