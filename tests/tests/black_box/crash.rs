//! `kill -9` in the middle of an import: after a restart every acknowledged record is
//! present, every index holds exactly the store's eligible templates, and a new capture of
//! any stored person finds that person first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connectors::{RecordRef, SourceSystem};
use hub_tests::{
    Backend, READ_PURPOSE, all_roles_token, all_roles_token_of, authorized_client,
    on_both_backends, owner_of, postgres_admin_url,
};
use interop_hub_cli::generate::{
    GenerateOptions, Trait, Truth, base_vector, generate, new_capture,
};
use serde_json::{Value, json};

use crate::process::{
    HubProcess, assert_readable, postgres_database_flags, settings_file, tokens_of,
};

on_both_backends!(a_crash_mid_import_loses_no_acknowledged_record);

const SEED: u64 = 99;

async fn a_crash_mid_import_loses_no_acknowledged_record(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let population = generate(&GenerateOptions {
        persons: 250,
        seed: SEED,
        out: dir.path().join("population"),
    })
    .expect("generate");
    let database_urls = match backend {
        Backend::Postgres => postgres_database_flags(&postgres_admin_url()).await,
        Backend::Sqlite => Vec::new(),
    };
    let mut server = HubProcess::start(
        &dir.path().join("data"),
        &settings_file(dir.path(), ""),
        database_urls,
    );
    let base = server.base.clone();
    server.wait_ready(&reqwest::Client::new()).await;
    // The hub made its signing key at start: sign with it as an operator would.
    let tokens = tokens_of(&dir.path().join("data"));
    let client = authorized_client(&all_roles_token(&tokens));

    // Import until well past the middle, acknowledging records as the hub answers.
    let lines: Vec<Value> = std::fs::read_to_string(&population.records_file)
        .expect("records")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    let acknowledged: Arc<Mutex<Vec<RecordRef>>> = Arc::default();
    let importer = {
        let (client, base, acknowledged, lines, tokens) = (
            client.clone(),
            base.clone(),
            Arc::clone(&acknowledged),
            lines.clone(),
            Arc::clone(&tokens),
        );
        tokio::spawn(async move {
            for line in lines {
                let system: SourceSystem = line["system"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("system");
                let body = match &line["body"] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                // Each record goes with its own member state's connector token.
                let state = owner_of(system.as_str(), body.as_bytes()).expect("a valid record");
                let response = client
                    .post(format!("{base}/v1/systems/{system}/records"))
                    .bearer_auth(all_roles_token_of(&tokens, &state))
                    .header(
                        "content-type",
                        line["content_type"].as_str().unwrap_or_default(),
                    )
                    .body(body.clone())
                    .send()
                    .await;
                let Ok(response) = response else { return };
                if response.status() == 201 {
                    let answer: Value = response.json().await.unwrap_or_default();
                    let source_id = answer["record"]["source_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    acknowledged
                        .lock()
                        .expect("lock")
                        .push(RecordRef::new(system, source_id));
                }
            }
        })
    };
    let half = lines.len() / 2;
    while acknowledged.lock().expect("lock").len() < half {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill_9();
    importer.await.expect("importer stops when the hub is gone");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= half && acknowledged.len() < lines.len(),
        "killed mid-import"
    );

    server.spawn();
    server.wait_ready(&client).await;
    assert_readable(&client, &base, &acknowledged).await;
    let indexes: Value = client
        .get(format!("{base}/v1/biometrics/indexes"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    for index in indexes.as_array().expect("indexes") {
        assert_eq!(
            index["indexed"], index["eligible"],
            "index level with the store: {index}"
        );
    }
    assert!(
        indexes
            .as_array()
            .expect("indexes")
            .iter()
            .any(|i| i["indexed"].as_u64() > Some(0))
    );

    // Every stored person with a face of indexable quality is found first by a new capture.
    let truth = Truth::load(&population.truth_file).expect("truth");
    let person_of = truth.person_of();
    let mut persons: HashMap<u64, bool> = HashMap::new();
    for record in &acknowledged {
        let stored: Value = client
            .get(format!(
                "{base}/v1/systems/{}/records/{}?purpose={READ_PURPOSE}",
                record.system, record.source_id
            ))
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        let has_face = stored["record"]["templates"].as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t["modality"] == "face" && t["indexable"] == true)
        });
        if has_face && let Some(person) = person_of.get(record) {
            persons.insert(*person, true);
        }
    }
    assert!(!persons.is_empty());
    for person in persons.keys() {
        let probe = new_capture(&base_vector(SEED, *person, Trait::Face), 7 ^ person);
        let bytes: Vec<u8> = probe.iter().flat_map(|v| v.to_le_bytes()).collect();
        let answer: Value = client
            .post(format!("{base}/v1/biometrics/search"))
            .json(&json!({"purpose": "border_check", "algorithm": "acme-face-v3", "data": STANDARD.encode(bytes), "limit": 1}))
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        let top: RecordRef =
            serde_json::from_value(answer["hits"][0]["record"].clone()).expect("a hit");
        assert_eq!(
            person_of.get(&top),
            Some(person),
            "a new capture of person {person} finds them first"
        );
    }
}
