//! `interop-hub import`: an NDJSON file pushed to a running hub, summarised.

use hub_tests::{Backend, EXAMPLES, TestHub, fixture, on_both_backends};
use interop_hub_cli::import::{ImportOptions, import};
use serde_json::{Value, json};

on_both_backends!(import_pushes_every_line_and_summarises);

async fn import_pushes_every_line_and_summarises(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let mut lines: Vec<String> = EXAMPLES
        .iter()
        .map(|(system, file, content_type)| {
            let text = fixture(file);
            // JSON records go in as objects, XML as text: both forms are accepted.
            let body = if content_type.ends_with("json") {
                serde_json::from_str::<Value>(&text).expect("fixture JSON")
            } else {
                json!(text)
            };
            json!({"system": system, "content_type": content_type, "body": body}).to_string()
        })
        .collect();
    lines.push(lines[0].clone());
    let mut no_surname: Value = serde_json::from_str(&fixture("sis.json")).expect("fixture");
    no_surname["alert_id"] = json!("SIS-IT-2026-000078");
    no_surname["person"]
        .as_object_mut()
        .expect("person")
        .remove("surnames");
    lines.push(
        json!({"system": "sis", "content_type": "application/json", "body": no_surname})
            .to_string(),
    );
    lines.push("not json at all".to_owned());
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), lines.join("\n") + "\n").expect("write import file");

    let options = ImportOptions {
        server: hub.base.clone(),
        concurrency: 2,
        tokens: hub.connector_tokens(),
    };
    let summary = import(file.path(), &options).await.expect("import runs");
    assert_eq!(
        (summary.created, summary.updated, summary.replayed),
        (5, 0, 1)
    );
    assert_eq!(summary.refused, 2);
    assert_eq!(summary.failed, 0);
    let reasons: Vec<&String> = summary.refusal_reasons.keys().collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("required at /person/surnames")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("unreadable_line")),
        "{reasons:?}"
    );
    let printed = summary.to_string();
    assert!(printed.contains("accepted: 5"), "{printed}");
    assert_eq!(hub.count_rows("identity_records").await, 5);
    hub.stop().await;
}
