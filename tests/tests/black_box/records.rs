//! Ingest, read back, replay, update, conflict, delete and concurrency.

use hub_tests::{Backend, EXAMPLES, TestHub, fixture, on_both_backends};
use serde_json::{Value, json};

on_both_backends!(
    every_example_is_created_then_read_back_and_replayed,
    newer_version_replaces_and_older_version_conflicts,
    delete_removes_the_record_and_its_templates,
    concurrent_replays_leave_exactly_one_record,
    template_below_minimum_quality_is_stored_but_flagged,
    many_templates_keep_their_order_and_all_reach_the_index,
);

/// The primary name, date of birth, first document and template count as the hub returns them.
fn essentials(stored: &Value) -> Value {
    let record = &stored["record"];
    json!({
        "surname": record["names"][0]["surname"]["original"],
        "given_names": record["names"][0]["given_names"]["original"],
        "date_of_birth": record["date_of_birth"],
        "document": record["travel_documents"][0]["number"],
        "templates": record["templates"].as_array().map(Vec::len),
    })
}

async fn every_example_is_created_then_read_back_and_replayed(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    // What each fixture holds, read off the files in tests/fixtures.
    let expected = [
        ("EES-DE-2026-000123", "Müller", "Anna Maria", 3),
        ("ETIAS-2026-AB12CD34", "MUELLER", "ANNA MARIA", 0),
        ("VIS-FR-2026-000001", "Müller", "Anna Maria", 3),
        ("SIS-IT-2026-000077", "Müller", "Anna Maria", 3),
        ("ECRIS-NL-2026-000009", "Müller", "Anna Maria", 3),
    ];
    for ((system, file, content_type), (source_id, surname, given, templates)) in
        EXAMPLES.into_iter().zip(expected)
    {
        let created = hub.post_record(system, content_type, fixture(file)).await;
        assert_eq!(created.status(), 201, "{system}: first post creates");
        let created: Value = created.json().await.expect("json");
        assert_eq!(created["outcome"], "created");
        let want = json!({
            "surname": surname, "given_names": given, "date_of_birth": "1990-04-17",
            "document": "U12345678",
            "templates": templates,
        });
        assert_eq!(essentials(&created), want, "{system}: ingest response");

        let read = hub.get_record(system, source_id).await;
        assert_eq!(read.status(), 200, "{system}: read back");
        let read: Value = read.json().await.expect("json");
        assert_eq!(essentials(&read), want, "{system}: stored record");
        assert_eq!(read["record"]["system"], system);
        assert_eq!(read["record"]["source_id"], source_id);
        assert_eq!(
            read["record"]["names"][0]["surname"]["icao"], "MUELLER",
            "{system}: ICAO form"
        );

        assert_eq!(
            read["fields"],
            json!(["identity", "documents", "biometrics", "system_data"]),
            "{system}: every field group for a caller who may read them all"
        );

        let replay = hub.post_record(system, content_type, fixture(file)).await;
        assert_eq!(replay.status(), 200, "{system}: a replay is 200");
        let replay: Value = replay.json().await.expect("json");
        assert_eq!(replay["outcome"], "replayed");
        let mut replayed_record = replay.clone();
        for key in ["outcome", "links", "indexed_templates"] {
            replayed_record.as_object_mut().expect("object").remove(key);
        }
        let mut read = read.clone();
        read.as_object_mut().expect("object").remove("fields");
        assert_eq!(
            replayed_record, read,
            "{system}: a replay answers with the same stored record"
        );
    }
    assert_eq!(hub.count_rows("identity_records").await, 5);
    hub.stop().await;
}

fn ees_version(version: i64, surname: &str) -> String {
    let mut record: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture is JSON");
    record["version"] = json!(version);
    record["traveller"]["surname"] = json!(surname);
    record.to_string()
}

async fn newer_version_replaces_and_older_version_conflicts(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let id = "EES-DE-2026-000123";
    assert_eq!(
        hub.post_record("ees", "application/json", ees_version(2, "Müller"))
            .await
            .status(),
        201
    );

    let updated = hub
        .post_record("ees", "application/json", ees_version(3, "Schmidt"))
        .await;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.expect("json");
    assert_eq!(updated["outcome"], "updated");
    let read: Value = hub.get_record("ees", id).await.json().await.expect("json");
    assert_eq!(read["record"]["version"], 3);
    assert_eq!(read["record"]["names"][0]["surname"]["original"], "Schmidt");
    assert_eq!(
        read["record"]["templates"].as_array().map(Vec::len),
        Some(3),
        "children replaced, not doubled"
    );

    assert_eq!(
        hub.indexed(connectors::Partition::Civil, "acme-face-v3")
            .await,
        1,
        "the old face left the index"
    );
    assert_eq!(
        hub.indexed(connectors::Partition::Civil, "acme-finger-v2")
            .await,
        2
    );

    let reused = hub
        .post_record("ees", "application/json", ees_version(3, "Other"))
        .await;
    assert_eq!(reused.status(), 409, "version 3 again with other content");
    let problem: Value = reused.json().await.expect("json");
    assert_eq!(problem["code"], "version_reused");

    let stale = hub
        .post_record("ees", "application/json", ees_version(2, "Old"))
        .await;
    assert_eq!(stale.status(), 409);
    assert_eq!(stale.headers()["content-type"], "application/problem+json");
    let problem: Value = stale.json().await.expect("json");
    assert_eq!(problem["code"], "version_conflict");
    assert_eq!(problem["stored_version"], 3);
    let read: Value = hub.get_record("ees", id).await.json().await.expect("json");
    assert_eq!(
        read["record"]["names"][0]["surname"]["original"], "Schmidt",
        "the stale version was not applied"
    );
    assert_eq!(hub.count_rows("identity_records").await, 1);
    assert_eq!(hub.count_rows("biometric_templates").await, 3);
    hub.stop().await;
}

async fn delete_removes_the_record_and_its_templates(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    hub.post_examples().await;
    assert_eq!(hub.count_rows("biometric_templates").await, 12);
    let url = hub.url("/v1/systems/sis/records/SIS-IT-2026-000077");
    let deleted = hub.client.delete(&url).send().await.expect("answer");
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        hub.get_record("sis", "SIS-IT-2026-000077").await.status(),
        404
    );
    assert_eq!(hub.count_rows("identity_records").await, 4);
    assert_eq!(
        hub.count_rows("biometric_templates").await,
        9,
        "the SIS record's three templates went with it"
    );
    assert_eq!(hub.count_rows("identity_names").await, 4);
    let again = hub.client.delete(&url).send().await.expect("answer");
    assert_eq!(again.status(), 404);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
    hub.stop().await;
}

async fn concurrent_replays_leave_exactly_one_record(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let body = fixture("sis.json");
    let responses = futures::future::join_all(
        (0..100).map(|_| hub.post_record("sis", "application/json", body.clone())),
    )
    .await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "exactly one creation: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        99,
        "the rest are replays: {statuses:?}"
    );
    assert_eq!(hub.count_rows("identity_records").await, 1);
    assert_eq!(hub.count_rows("biometric_templates").await, 3);
    assert_eq!(hub.count_rows("travel_documents").await, 1);
    hub.stop().await;
}

async fn template_below_minimum_quality_is_stored_but_flagged(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    // The VIS fixture's face has quality 49; the face minimum is 50.
    let created = hub
        .post_record("vis", "application/xml", fixture("vis.xml"))
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let findings = created["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["rule"], "template_below_minimum_quality");
    assert_eq!(findings[0]["field"], "/VisaApplication/Biometrics/Face");
    let read: Value = hub
        .get_record("vis", "VIS-FR-2026-000001")
        .await
        .json()
        .await
        .expect("json");
    let templates = read["record"]["templates"].as_array().expect("templates");
    assert_eq!(templates.len(), 3, "the low-quality template is kept");
    let indexable: Vec<(&str, bool)> = templates
        .iter()
        .map(|t| {
            (
                t["modality"].as_str().unwrap_or(""),
                t["indexable"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(
        indexable,
        [("face", false), ("finger", true), ("finger", true)]
    );
    assert_eq!(
        read["findings"], created["findings"],
        "findings are stored with the record"
    );
    hub.stop().await;
}

/// More templates than one insert statement takes (256): every one stored, in the order
/// sent, and indexed.
async fn many_templates_keep_their_order_and_all_reach_the_index(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let mut record: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    let finger = record["biometrics"][1].clone();
    let qualities: Vec<u64> = (0..300).map(|i| 40 + (i * 7) % 61).collect();
    record["biometrics"] = qualities
        .iter()
        .map(|quality| {
            let mut template = finger.clone();
            template["quality"] = json!(quality);
            template
        })
        .collect();
    let created = hub
        .post_record("ees", "application/json", record.to_string())
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["indexed_templates"], 300);
    let read: Value = hub
        .get_record("ees", "EES-DE-2026-000123")
        .await
        .json()
        .await
        .expect("json");
    let stored: Vec<u64> = read["record"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| t["quality"].as_u64())
        .collect();
    assert_eq!(stored, qualities, "templates come back in the order sent");
    let (status, indexes) = hub.get_json("/v1/biometrics/indexes").await;
    assert_eq!(status, 200);
    let civil_fingers = indexes
        .as_array()
        .expect("index list")
        .iter()
        .find(|i| i["partition"] == "civil" && i["algorithm"] == "acme-finger-v2")
        .cloned()
        .unwrap_or_default();
    assert_eq!(civil_fingers["indexed"], 300, "{indexes}");
    hub.stop().await;
}
