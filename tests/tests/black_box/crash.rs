//! `kill -9` in the middle of an import: after a restart every acknowledged record is
//! present, every index holds exactly the store's eligible templates, and a new capture of
//! any stored person finds that person first.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connectors::{RecordRef, SourceSystem};
use hub_tests::{
    Backend, READ_PURPOSE, all_roles_token, all_roles_token_of, authorized_client,
    fresh_postgres_database, on_both_backends, owner_of,
};
use interop_hub::access::TokenAuthority;
use interop_hub::generate::{GenerateOptions, Trait, Truth, base_vector, generate, new_capture};
use serde_json::{Value, json};

on_both_backends!(a_crash_mid_import_loses_no_acknowledged_record);

const SEED: u64 = 99;

struct Server {
    args: Vec<String>,
    base: String,
    child: Option<Child>,
}

impl Server {
    fn start(args: Vec<String>, base: String) -> Self {
        let mut server = Self {
            args,
            base,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hub process starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown hook runs, nothing is flushed.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        for _ in 0..1200 {
            let ready = client.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the hub did not become ready within 60 s");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A settings file whose request budgets the check of every acknowledged record, read
/// back one after another by one principal, does not meet.
fn settings_without_budgets(dir: &std::path::Path) -> String {
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        "[limits]\nper_second = 100000\nburst = 100000\n\
         agency_per_second = 100000\nagency_burst = 100000\n",
    )
    .expect("settings file");
    path.display().to_string()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

async fn a_crash_mid_import_loses_no_acknowledged_record(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let population = generate(&GenerateOptions {
        persons: 250,
        seed: SEED,
        out: dir.path().join("population"),
    })
    .expect("generate");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--config".into(),
        settings_without_budgets(dir.path()),
    ];
    if backend == Backend::Postgres {
        for (flag, role) in [
            ("--civil-database-url", "civil"),
            ("--law-enforcement-database-url", "le"),
            ("--mid-database-url", "mid"),
            ("--control-database-url", "control"),
        ] {
            args.push(flag.into());
            args.push(fresh_postgres_database(role).await);
        }
    }
    let mut server = Server::start(args, base.clone());
    server.wait_ready(&reqwest::Client::new()).await;
    // The hub made its signing key at start: sign with it as an operator would.
    let tokens = Arc::new(
        TokenAuthority::load_or_create(&dir.path().join("data").join("token-signing.key"))
            .expect("the hub's key"),
    );
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
    for record in &acknowledged {
        let read = client
            .get(format!(
                "{base}/v1/systems/{}/records/{}?purpose={READ_PURPOSE}",
                record.system, record.source_id
            ))
            .send()
            .await
            .expect("answer");
        assert_eq!(
            read.status(),
            200,
            "acknowledged {record:?} survived the crash"
        );
    }
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
