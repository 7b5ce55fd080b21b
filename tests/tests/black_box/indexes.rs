//! The biometric indexes are derived data: saved on shutdown, checked against the store at
//! start-up, and mended or rebuilt when a file is corrupt or holds what the store does not.

use hub_tests::{Backend, EXAMPLES, TestHub, fixture, on_both_backends};
use serde_json::Value;
use sqlx::Connection as _;

on_both_backends!(indexes_are_saved_and_rebuilt_from_the_store);

async fn index_counts(hub: &TestHub) -> Vec<(String, u64, u64)> {
    let status: Value = hub.get_json("/v1/biometrics/indexes").await.1;
    status
        .as_array()
        .expect("indexes")
        .iter()
        .map(|i| {
            let name = format!(
                "{}-{}",
                i["partition"].as_str().unwrap_or(""),
                i["algorithm"].as_str().unwrap_or("")
            );
            (
                name,
                i["indexed"].as_u64().unwrap_or(u64::MAX),
                i["eligible"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

async fn indexes_are_saved_and_rebuilt_from_the_store(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for (system, file, content_type) in EXAMPLES {
        assert_eq!(
            hub.post_record(system, content_type, fixture(file))
                .await
                .status(),
            201
        );
    }
    let expected = vec![
        ("civil-acme-face-v3".to_owned(), 1, 1),
        ("civil-acme-finger-v2".to_owned(), 4, 4),
        ("law_enforcement-acme-face-v3".to_owned(), 2, 2),
        ("law_enforcement-acme-finger-v2".to_owned(), 4, 4),
    ];
    let mut counts = index_counts(&hub).await;
    counts.sort();
    assert_eq!(counts, expected);

    let hub = hub.restart().await;
    let finger_file = hub
        .data_dir
        .join("index")
        .join("civil-acme-finger-v2.usearch");
    assert!(finger_file.exists(), "a graceful stop saves the indexes");
    let mut counts = index_counts(&hub).await;
    counts.sort();
    assert_eq!(counts, expected, "loaded from the files");

    // Damage behind the hub's back: a truncated index file, and a record gone from the
    // store while its templates stay in the saved index.
    let bytes = std::fs::read(&finger_file).expect("index file");
    std::fs::write(&finger_file, &bytes[..bytes.len() / 2]).expect("truncate");
    sqlx::any::install_default_drivers();
    let mut store = sqlx::AnyConnection::connect(&hub.law_enforcement_url)
        .await
        .expect("connect");
    sqlx::query("DELETE FROM identity_records WHERE source_id = 'SIS-IT-2026-000077'")
        .execute(&mut store)
        .await
        .expect("delete behind the hub");
    store.close().await.expect("close");

    let hub = hub.restart().await;
    let mut counts = index_counts(&hub).await;
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("civil-acme-face-v3".to_owned(), 1, 1),
            ("civil-acme-finger-v2".to_owned(), 4, 4),
            ("law_enforcement-acme-face-v3".to_owned(), 1, 1),
            ("law_enforcement-acme-finger-v2".to_owned(), 2, 2),
        ],
        "rebuilt from the store"
    );
    hub.stop().await;
}
