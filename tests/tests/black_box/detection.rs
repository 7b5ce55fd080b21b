//! Detection accuracy on a generated population with known ground truth: recall of
//! same-person pairs, purity of white links, fraud and look-alikes left for verifiers, and
//! genuine-mate rank in 1:N search.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connectors::{RecordRef, SourceSystem};
use hub_tests::{Backend, TestHub, on_both_backends};
use interop_hub_cli::generate::{
    GenerateOptions, Trait, Truth, base_vector, generate, new_capture, normalised_pair,
};
use interop_hub_cli::import::{ImportOptions, import};
use serde_json::{Value, json};

on_both_backends!(a_generated_population_is_linked_with_known_accuracy);

/// Persons in the population: about 2.5 records each once fraud and look-alikes are added.
const PERSONS: u64 = 1_200;
const SEED: u64 = 20_261_127;

/// Every link, read through the API. A yellow link is shown only to its responsible
/// authority, so the links are listed as each authority of each member state in turn.
async fn all_links(hub: &TestHub) -> Vec<Value> {
    hub.all_links("").await
}

fn pair_of(link: &Value) -> (RecordRef, RecordRef) {
    let records: Vec<RecordRef> =
        serde_json::from_value(link["records"].clone()).expect("two record references");
    normalised_pair(&records[0], &records[1])
}

async fn a_generated_population_is_linked_with_known_accuracy(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = generate(&GenerateOptions {
        persons: PERSONS,
        seed: SEED,
        out: dir.path().to_path_buf(),
    })
    .expect("generate");
    assert!(
        summary.records >= 2_000,
        "a few thousand records: {summary}"
    );
    let imported = import(
        &summary.records_file,
        &ImportOptions {
            server: hub.base.clone(),
            concurrency: 4,
            tokens: hub.connector_tokens(),
        },
    )
    .await
    .expect("import");
    assert_eq!(
        imported.created, summary.records,
        "every generated record is accepted: {imported}"
    );

    let truth = Truth::load(&summary.truth_file).expect("truth");
    let links = all_links(&hub).await;
    let colour_of: HashMap<(RecordRef, RecordRef), String> = links
        .iter()
        .map(|l| (pair_of(l), l["colour"].as_str().unwrap_or("").to_owned()))
        .collect();
    let person_of = truth.person_of();

    let same_person = truth.same_person_pairs_across_systems();
    let found = same_person
        .iter()
        .filter(|pair| colour_of.contains_key(*pair))
        .count();
    let recall = found as f64 / same_person.len() as f64;
    assert!(
        recall >= 0.98,
        "recall of same-person pairs {recall:.4} ({found} of {})",
        same_person.len()
    );

    let wrong_white: Vec<&(RecordRef, RecordRef)> = colour_of
        .iter()
        .filter(|(pair, colour)| {
            colour.as_str() == "white" && person_of.get(&pair.0) != person_of.get(&pair.1)
        })
        .map(|(pair, _)| pair)
        .collect();
    assert!(
        wrong_white.is_empty(),
        "white links between different persons: {wrong_white:?}"
    );

    for (kind, pairs) in [
        ("fraud", &truth.fraud_pairs),
        ("look-alike", &truth.look_alike_pairs),
    ] {
        assert!(!pairs.is_empty(), "the population has {kind} pairs");
        let not_yellow: Vec<String> = pairs
            .iter()
            .filter_map(|(a, b)| {
                let colour = colour_of
                    .get(&normalised_pair(a, b))
                    .map_or("none", String::as_str);
                (colour != "yellow")
                    .then(|| format!("{}/{} {} → {colour}", a.system, a.source_id, b.source_id))
            })
            .collect();
        assert!(
            not_yellow.is_empty(),
            "{kind} pairs not yellow ({} of {}): {not_yellow:#?}",
            not_yellow.len(),
            pairs.len()
        );
    }

    // 1:N: a new capture of each person's face finds one of that person's records first,
    // for every person with a face of indexable quality.
    let registry = connectors::AlgorithmRegistry::default();
    let mut persons_with_faces: Vec<u64> = std::fs::read_to_string(&summary.records_file)
        .expect("records file")
        .lines()
        .filter_map(|line| {
            let line: Value = serde_json::from_str(line).ok()?;
            let system: SourceSystem = line["system"].as_str()?.parse().ok()?;
            let body = match &line["body"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let accepted = connectors::parse(system, body.as_bytes(), &registry).ok()?;
            let has_face = accepted
                .record
                .templates
                .iter()
                .any(|t| t.indexable && t.algorithm == "acme-face-v3");
            let reference = RecordRef::new(system, accepted.record.source_id);
            has_face
                .then(|| person_of.get(&reference).copied())
                .flatten()
        })
        .collect::<HashSet<u64>>()
        .into_iter()
        .collect();
    persons_with_faces.sort_unstable();
    let mut first = 0;
    let mut searched = 0;
    for person in persons_with_faces.iter().copied().step_by(3) {
        let probe = new_capture(&base_vector(SEED, person, Trait::Face), 0xC0FFEE ^ person);
        let bytes: Vec<u8> = probe.iter().flat_map(|v| v.to_le_bytes()).collect();
        let answer: Value = hub
            .post_json(
                "/v1/biometrics/search",
                &json!({"purpose": "border_check", "algorithm": "acme-face-v3", "data": STANDARD.encode(bytes), "limit": 3}),
            )
            .await
            .1;
        let top: Option<RecordRef> =
            serde_json::from_value(answer["hits"][0]["record"].clone()).ok();
        searched += 1;
        if top.and_then(|r| person_of.get(&r).copied()) == Some(person) {
            first += 1;
        }
    }
    let rank_one = f64::from(first) / f64::from(searched);
    println!(
        "{backend:?}: {} records, recall {recall:.4} ({found}/{}), {} links, genuine mate first {rank_one:.4} ({first}/{searched})",
        summary.records,
        same_person.len(),
        links.len()
    );
    assert!(
        rank_one >= 0.99,
        "genuine mate first for {rank_one:.4} of {searched} persons"
    );
    hub.stop().await;
}
