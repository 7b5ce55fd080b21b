//! The biometric indexes are derived data: saved on shutdown, checked against the store at
//! start-up, and mended or rebuilt when a file is corrupt or holds what the store does not.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connectors::{AlgorithmRegistry, RecordRef, SourceSystem};
use hub_tests::{Backend, TestHub, fixture, on_both_backends};
use serde_json::{Value, json};
use sqlx::Connection as _;

on_both_backends!(
    indexes_are_saved_and_rebuilt_from_the_store,
    the_search_method_follows_the_setting_and_either_finds_the_mate,
    a_graph_built_for_scanning_is_rebuilt_when_searches_come_to_walk_it
);

/// Each index's `field` in `GET /v1/biometrics/indexes`.
async fn index_field(hub: &TestHub, field: &str) -> Vec<u64> {
    let status: Value = hub.get_json("/v1/biometrics/indexes").await.1;
    status
        .as_array()
        .expect("indexes")
        .iter()
        .map(|i| i[field].as_u64().unwrap_or(u64::MAX))
        .collect()
}

/// The SIS example's face, searched through `POST /v1/biometrics/search` by a hub that
/// scans sketches (the default) and by one told to walk a graph built with a short
/// insertion list: both find its record. The insertion list follows the setting at the next
/// start, over the index loaded from its file.
async fn the_search_method_follows_the_setting_and_either_finds_the_mate(backend: Backend) {
    // Neither insertion list is the default: a setting that never reached the indexes
    // would show 128.
    for (shortlist, expansion_add) in [(64_usize, 40_usize), (0, 12)] {
        let hub = TestHub::spawn_with(backend, |config| {
            config.settings.search.sketch_shortlist = shortlist;
            config.settings.index.expansion_add = Some(expansion_add);
        })
        .await;
        hub.post_examples().await;
        assert_eq!(
            index_field(&hub, "sketch_shortlist").await,
            vec![shortlist as u64; 4]
        );
        assert_eq!(
            index_field(&hub, "expansion_add").await,
            vec![expansion_add as u64; 4]
        );
        let hub = hub
            .restart_with(|config| config.settings.index.expansion_add = Some(expansion_add + 1))
            .await;
        assert_eq!(
            index_field(&hub, "expansion_add").await,
            vec![expansion_add as u64 + 1; 4],
            "a loaded index takes the setting"
        );
        // A scanned index keeps the graph it loaded; a walked one whose graph was built with
        // a shorter list than the setting now asks for is rebuilt.
        let graph = if shortlist > 0 {
            expansion_add
        } else {
            expansion_add + 1
        };
        assert_eq!(
            index_field(&hub, "graph_expansion_add").await,
            vec![graph as u64; 4],
            "shortlist {shortlist}"
        );
        let sis = connectors::parse(
            SourceSystem::Sis,
            fixture("sis.json").as_bytes(),
            &AlgorithmRegistry::default(),
        )
        .expect("the SIS example parses")
        .record;
        let face = sis
            .templates
            .iter()
            .find(|t| t.indexable && t.algorithm == "acme-face-v3")
            .expect("the SIS example has a face");
        let bytes: Vec<u8> = face.vector.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (status, answer) = hub
            .post_json(
                "/v1/biometrics/search",
                &json!({"purpose": "border_check", "algorithm": "acme-face-v3", "data": STANDARD.encode(bytes), "limit": 3}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let top: RecordRef = serde_json::from_value(answer["hits"][0]["record"].clone())
            .unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert_eq!(
            top,
            RecordRef::new(SourceSystem::Sis, sis.source_id.clone()),
            "shortlist {shortlist}, expansion_add {expansion_add}: {answer}"
        );
        hub.stop().await;
    }
}

/// By default the indexes scan their sketches and build their graphs cheaply; a hub told to
/// walk the graphs instead rebuilds them at start with the walked graph's insertion list,
/// and every template is back in its index.
async fn a_graph_built_for_scanning_is_rebuilt_when_searches_come_to_walk_it(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    hub.post_examples().await;
    let scanned = vec![interop_hub::biometrics::SCANNED_EXPANSION_ADD as u64; 4];
    assert_eq!(index_field(&hub, "expansion_add").await, scanned);
    assert_eq!(index_field(&hub, "graph_expansion_add").await, scanned);
    let before = index_counts(&hub).await;

    let hub = hub
        .restart_with(|config| config.settings.search.sketch_shortlist = 0)
        .await;
    let walked = vec![interop_hub::biometrics::EXPANSION_ADD as u64; 4];
    assert_eq!(index_field(&hub, "expansion_add").await, walked);
    assert_eq!(
        index_field(&hub, "graph_expansion_add").await,
        walked,
        "rebuilt for walking"
    );
    assert_eq!(index_counts(&hub).await, before, "every template back");
    hub.stop().await;
}

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

/// Saved, loaded and rebuilt indexes; built with an insertion list that is not the default,
/// which every rebuilt index keeps.
async fn indexes_are_saved_and_rebuilt_from_the_store(backend: Backend) {
    let hub = TestHub::spawn_with(backend, |config| {
        config.settings.index.expansion_add = Some(40)
    })
    .await;
    hub.post_examples().await;
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
    assert_eq!(
        index_field(&hub, "expansion_add").await,
        vec![40; 4],
        "rebuilt indexes keep the setting"
    );
    hub.stop().await;
}
