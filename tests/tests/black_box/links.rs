//! The multiple-identity detector seen through the API: links made at ingest, the identity
//! confirmation file, manual verification, and links leaving with their records.

use connectors::Partition;
use hub_tests::{Backend, EXAMPLES, TestHub, fixture, on_both_backends};
use serde_json::{Value, json};

on_both_backends!(
    the_five_examples_are_one_person_linked_white,
    same_biometrics_under_another_identity_is_yellow_and_verified_red,
    verification_refuses_what_it_must,
    deleting_a_record_removes_its_templates_and_links,
    low_quality_templates_stay_out_of_the_index,
);

async fn ingest_examples(hub: &TestHub) -> Vec<Value> {
    let mut answers = Vec::new();
    for (system, file, content_type) in EXAMPLES {
        let response = hub.post_record(system, content_type, fixture(file)).await;
        assert_eq!(response.status(), 201, "{system}");
        answers.push(response.json().await.expect("json"));
    }
    answers
}

/// Every link matching `query` (e.g. `colour=white`), from every authority's queue.
async fn links(hub: &TestHub, query: &str) -> Value {
    let links = hub.all_links(query).await;
    json!({"total": links.len(), "links": links})
}

async fn the_five_examples_are_one_person_linked_white(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let answers = ingest_examples(&hub).await;
    // Each record links to every record ingested before it, in other systems.
    let counts: Vec<usize> = answers
        .iter()
        .map(|a| a["links"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(counts, [0, 1, 2, 3, 4]);
    let last = &answers[4]["links"];
    let mut others: Vec<&str> = last
        .as_array()
        .expect("links")
        .iter()
        .map(|l| l["other"]["system"].as_str().unwrap_or(""))
        .collect();
    others.sort_unstable();
    assert_eq!(others, ["ees", "etias", "sis", "vis"]);
    assert!(
        last.as_array()
            .expect("links")
            .iter()
            .all(|l| l["colour"] == "white"),
        "{last:#}"
    );

    let all = links(&hub, "").await;
    assert_eq!(all["total"], 10);
    assert_eq!(links(&hub, "colour=white").await["total"], 10);
    assert_eq!(links(&hub, "colour=yellow").await["total"], 0);
    assert_eq!(links(&hub, "system=etias").await["total"], 4);
    // One queue, paged: the last page holds its last link.
    let (_, queue) = hub.get_json("/v1/links").await;
    let total = queue["total"].as_i64().expect("total");
    assert!(total >= 2, "{queue}");
    let (_, page) = hub
        .get_json(&format!("/v1/links?limit=3&offset={}", total - 1))
        .await;
    assert_eq!(
        page["links"].as_array().map(Vec::len),
        Some(1),
        "the last page holds the queue's last link"
    );

    // ETIAS has no biometrics: its links stand on identity and the shared passport.
    let etias_link = all["links"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| {
            l["records"]
                .as_array()
                .expect("pair")
                .iter()
                .any(|r| r["system"] == "etias")
        })
        .expect("an ETIAS link");
    assert_eq!(
        etias_link["rule"],
        "identity_and_document_match_without_biometrics"
    );
    let ees_sis = all["links"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| {
            let systems: Vec<&Value> = l["records"]
                .as_array()
                .expect("pair")
                .iter()
                .map(|r| &r["system"])
                .collect();
            systems.contains(&&json!("ees")) && systems.contains(&&json!("sis"))
        })
        .expect("an EES–SIS link");
    assert_eq!(ees_sis["rule"], "biometrics_and_identity_match");
    let scores = ees_sis["evidence"]["biometric_scores"]
        .as_array()
        .expect("scores");
    assert!(
        scores
            .iter()
            .any(|s| s["modality"] == "face" && s["matched"] == true),
        "{scores:#?}"
    );

    // A replay makes no second link.
    assert_eq!(
        hub.post_record("sis", "application/json", fixture("sis.json"))
            .await
            .status(),
        200
    );
    assert_eq!(links(&hub, "").await["total"], 10);
    assert_eq!(hub.count_rows("links").await, 10);
    hub.stop().await;
}

/// The SIS fixture's biometrics under another name, date of birth and document.
pub(crate) fn sis_fraud() -> String {
    let mut record: Value = serde_json::from_str(&fixture("sis.json")).expect("fixture");
    record["alert_id"] = json!("SIS-IT-2026-000999");
    record["person"]["surnames"] = json!(["Kowalczyk"]);
    record["person"]["forenames"] = json!(["Zofia"]);
    record["person"]["dob"] = json!("1977-11-02");
    record["documents"][0]["number"] = json!("ZZ9988776");
    record.to_string()
}

/// Ingests the EES fixture, then [`sis_fraud`]: the answer to the second.
pub(crate) async fn ees_then_fraud(hub: &TestHub) -> Value {
    let ees = hub
        .post_record("ees", "application/json", fixture("ees.json"))
        .await;
    assert_eq!(ees.status(), 201);
    let sis = hub
        .post_record("sis", "application/json", sis_fraud())
        .await;
    assert_eq!(sis.status(), 201);
    sis.json().await.expect("json")
}

async fn same_biometrics_under_another_identity_is_yellow_and_verified_red(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let answer = ees_then_fraud(&hub).await;
    let made = answer["links"].as_array().expect("links");
    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(made[0]["colour"], "yellow");
    assert_eq!(made[0]["rule"], "biometrics_match_identity_differs");
    assert_eq!(
        made[0]["other"],
        json!({"system": "ees", "source_id": "EES-DE-2026-000123"})
    );
    let id = made[0]["id"].as_str().expect("id").to_owned();

    let file: Value = hub.get_json(&format!("/v1/links/{id}")).await.1;
    assert_eq!(file["colour"], "yellow");
    assert_eq!(
        file["authority"], "sirene:SE",
        "a SIS alert's SIRENE bureau verifies"
    );
    assert!(file["deadline"].is_string());
    assert_eq!(file["overdue"], false);
    assert_eq!(file["evidence"]["identity"]["identity"], "different");
    assert_eq!(file["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        links(&hub, "authority=sirene:SE&colour=yellow").await["total"],
        1
    );
    assert_eq!(links(&hub, "overdue=true").await["total"], 0);

    let decided = hub.client.post(hub.url(&format!("/v1/links/{id}/verification")))
        .json(&json!({"colour": "red", "justification": "same face and fingers under a second identity"}))
        .send().await.expect("answer");
    assert_eq!(decided.status(), 200);
    let decided: Value = decided.json().await.expect("json");
    assert_eq!(decided["colour"], "red");
    assert!(
        decided["deadline"].is_null(),
        "a decided link has no deadline"
    );
    let history = decided["history"].as_array().expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["actor"], "user:TEST/test-operator");
    assert_eq!(history[1]["colour_before"], "yellow");
    assert_eq!(history[1]["colour_after"], "red");
    assert_eq!(
        history[1]["justification"],
        "same face and fingers under a second identity"
    );

    // The detector never overrides a verifier: a replay and an update (which re-runs
    // detection, here on data that would make the link yellow again) leave red as it is.
    let replay = hub
        .post_record("sis", "application/json", sis_fraud())
        .await;
    assert_eq!(replay.status(), 200);
    let mut update: Value = serde_json::from_str(&sis_fraud()).expect("json");
    update["version"] = json!(2);
    update["category"] = json!("arrest");
    let updated = hub
        .post_record("sis", "application/json", update.to_string())
        .await;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.expect("json");
    assert_eq!(updated["outcome"], "updated");
    assert_eq!(updated["links"][0]["colour"], "red", "{updated:#}");
    let read: Value = hub.get_json(&format!("/v1/links/{id}")).await.1;
    assert_eq!(read["colour"], "red");
    assert_eq!(
        read["history"].as_array().map(Vec::len),
        Some(2),
        "no redetection entry"
    );
    hub.stop().await;
}

async fn verification_refuses_what_it_must(backend: Backend) {
    let hub = TestHub::spawn_with(backend, |config| {
        config.settings.detection.verification_deadline_hours = 0
    })
    .await;
    let answer = ees_then_fraud(&hub).await;
    let id = answer["links"][0]["id"]
        .as_str()
        .expect("a link")
        .to_owned();
    assert_eq!(
        links(&hub, "overdue=true").await["total"],
        1,
        "a zero-hour deadline is overdue at once"
    );
    let url = hub.url(&format!("/v1/links/{id}/verification"));
    let post = |body: Value| hub.client.post(&url).json(&body).send();
    let cases = [
        (
            json!({"colour": "green", "justification": "  "}),
            422,
            "invalid_decision",
        ),
        (
            json!({"colour": "yellow", "justification": "why"}),
            422,
            "invalid_decision",
        ),
        (
            json!({"colour": "purple", "justification": "why"}),
            400,
            "invalid_body",
        ),
        (json!({"colour": "green"}), 400, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let response = post(body.clone()).await.expect("answer");
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["code"], code, "{body}");
    }
    let green = json!({"colour": "green", "justification": "different persons: checked passports"});
    assert_eq!(post(green.clone()).await.expect("answer").status(), 200);
    let again = post(green).await.expect("answer");
    assert_eq!(again.status(), 409);
    let problem: Value = again.json().await.expect("json");
    assert_eq!(problem["code"], "already_decided");
    let missing = hub
        .client
        .post(hub.url("/v1/links/no-such-link/verification"))
        .json(&json!({"colour": "green", "justification": "x"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(missing.status(), 404);
    let bad_filter = hub
        .client
        .get(hub.url("/v1/links?colour=purple"))
        .send()
        .await
        .expect("answer");
    assert_eq!(bad_filter.status(), 400);
    assert_eq!(
        bad_filter.headers()["content-type"],
        "application/problem+json"
    );
    hub.stop().await;
}

async fn deleting_a_record_removes_its_templates_and_links(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    ingest_examples(&hub).await;
    assert_eq!(
        hub.indexed(Partition::LawEnforcement, "acme-face-v3").await,
        2
    );
    let deleted = hub
        .client
        .delete(hub.url("/v1/systems/sis/records/SIS-IT-2026-000077"))
        .send()
        .await
        .expect("answer");
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        hub.indexed(Partition::LawEnforcement, "acme-face-v3").await,
        1,
        "the SIS face left the index"
    );
    assert_eq!(
        hub.indexed(Partition::LawEnforcement, "acme-finger-v2")
            .await,
        2,
        "so did its two fingers"
    );
    assert_eq!(
        links(&hub, "").await["total"],
        6,
        "its four links went with it"
    );
    assert_eq!(links(&hub, "system=sis").await["total"], 0);
    hub.stop().await;
}

async fn low_quality_templates_stay_out_of_the_index(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let answer: Value = hub
        .post_record("vis", "application/xml", fixture("vis.xml"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        answer["indexed_templates"], 2,
        "the face of quality 49 is stored but not indexed"
    );
    assert_eq!(hub.indexed(Partition::Civil, "acme-face-v3").await, 0);
    assert_eq!(hub.indexed(Partition::Civil, "acme-finger-v2").await, 2);
    assert_eq!(hub.count_rows("biometric_templates").await, 3);
    hub.stop().await;
}
