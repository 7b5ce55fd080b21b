//! Spans exported over OTLP carry no personal data: the hub runs as a separate process
//! with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a collector this test serves, and every
//! exported byte is searched for the fixtures' values.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use hub_tests::{
    EXAMPLES, READ_PURPOSE, all_roles_token, all_roles_token_of, authorized_client, fixture,
    free_port, owner_of,
};
use interop_hub::access::TokenAuthority;
use serde_json::{Value, json};

/// An OTLP/HTTP collector that keeps every body it is sent.
async fn collector() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let kept = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock().expect("lock").push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_spans_carry_no_personal_data() {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut hub = Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hub process starts");
    let probe = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..600 {
        if probe
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the hub became ready");
    let tokens =
        TokenAuthority::load_or_create(&dir.path().join("token-keys")).expect("the hub's key");
    let client = authorized_client(&all_roles_token(&tokens));

    let mut personal: Vec<String> = [
        "Müller",
        "MUELLER",
        "Mueller",
        "Anna",
        "U12345678",
        "1990-04-17",
    ]
    .map(str::to_owned)
    .to_vec();
    for (system, file, content_type) in EXAMPLES {
        let state = owner_of(system, fixture(file).as_bytes()).expect("a valid fixture");
        let answer: Value = client
            .post(format!("{base}/v1/systems/{system}/records"))
            .bearer_auth(all_roles_token_of(&tokens, &state))
            .header("content-type", content_type)
            .body(fixture(file))
            .send()
            .await
            .expect("hub answers")
            .json()
            .await
            .expect("json");
        let id = answer["record"]["source_id"]
            .as_str()
            .expect("id")
            .to_owned();
        let read = client
            .get(format!(
                "{base}/v1/systems/{system}/records/{id}?purpose={READ_PURPOSE}"
            ))
            .send()
            .await
            .expect("hub answers");
        assert_eq!(read.status(), 200);
        personal.push(id);
    }
    let search = client
        .post(format!("{base}/v1/search"))
        .json(&json!({"purpose": "border_check",
                      "biographic": {"surname": "Müller", "given_names": "Anna", "date_of_birth": "1990-04-17",
                                     "document_number": "U12345678"}}))
        .send()
        .await
        .expect("hub answers");
    assert_eq!(search.status(), 200);

    // SIGTERM: a graceful stop flushes the exporter.
    let stopped = Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(stopped.success());
    let mut exited = false;
    for _ in 0..200 {
        if hub.try_wait().expect("wait").is_some() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !exited {
        let _ = hub.kill();
    }
    assert!(exited, "the hub stopped on SIGTERM");

    let bodies = received.lock().expect("lock").clone();
    let exported: Vec<u8> = bodies.iter().flat_map(|b| b.to_vec()).collect();
    let text = String::from_utf8_lossy(&exported);
    assert!(!bodies.is_empty(), "spans were exported");
    for expected in [
        "ingest",
        "search",
        "/v1/systems/{system}/records",
        "interop-hub",
    ] {
        assert!(text.contains(expected), "an exported span names {expected}");
    }
    for value in &personal {
        assert!(
            !text.contains(value.as_str()),
            "{value} in an exported span"
        );
    }
}
