//! Faults as designed behaviour, inside one hub: a database that stops answering in the
//! middle of an ingest is a quick 503 with `Retry-After`, the unfinished detection is
//! finished by the client's replay or by the background sweep, and no link outlives either
//! of its records however deletes and re-ingests of the two interleave.

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt as _;
use hub_tests::{Backend, TestHub, fixture, on_both_backends};
use interop_hub_cli::generate::{Trait, base_vector};
use serde_json::{Value, json};
use sqlx::{Connection as _, Executor as _};

on_both_backends!(
    a_replay_finishes_the_detection_a_failed_push_left_unfinished,
    the_sweep_finishes_an_unfinished_detection_without_a_replay,
    no_link_outlives_its_records_when_deletes_race_re_ingests,
    the_sweep_finishes_a_delete_that_stopped_half_way,
);

/// What the scenarios set: a locked table gives up after a second, and the sweep runs every
/// second.
fn quick_faults(config: &mut interop_hub::config::HubConfig) {
    config.settings.database.statement_timeout_seconds = 1;
    config.settings.database.acquire_timeout_seconds = 1;
    config.settings.detection.sweep_interval_seconds = 1;
}

/// A session behind the hub's back that holds the links table against writers until
/// [`LinkWriteBlock::release`]: on SQLite the database's write lock, on PostgreSQL a table
/// lock that still lets readers through.
struct LinkWriteBlock(sqlx::AnyConnection);

impl LinkWriteBlock {
    async fn hold(hub: &TestHub, backend: Backend) -> Self {
        sqlx::any::install_default_drivers();
        let mut session = sqlx::AnyConnection::connect(&hub.mid_url)
            .await
            .expect("a session on the links database");
        let statement = match backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN; LOCK TABLE links IN EXCLUSIVE MODE",
        };
        session.execute(statement).await.expect("the lock is taken");
        Self(session)
    }

    async fn release(mut self) {
        self.0
            .execute("ROLLBACK")
            .await
            .expect("the lock is let go");
        self.0.close().await.expect("the session ends");
    }
}

/// Pushes a JSON record as its owner's connector: the ingest report.
async fn report_of(hub: &TestHub, system: &str, body: Vec<u8>) -> Value {
    hub.post_record(system, "application/json", body)
        .await
        .json()
        .await
        .expect("an ingest report")
}

/// The SIS example as a second record of the EES example's person: the detector links them.
fn sis_of_the_ees_person() -> Vec<u8> {
    fixture("sis.json").into_bytes()
}

/// Pushes the EES example, then the SIS example while link writes are blocked: the SIS push
/// is answered 503 with `Retry-After`, within the statement timeout and a margin, and its
/// record is stored nonetheless (it reads back).
async fn push_with_links_blocked(hub: &TestHub, backend: Backend) {
    assert_eq!(
        hub.post_record("ees", "application/json", fixture("ees.json"))
            .await
            .status(),
        201
    );
    let block = LinkWriteBlock::hold(hub, backend).await;
    let started = Instant::now();
    let refused = hub
        .post_record("sis", "application/json", sis_of_the_ees_person())
        .await;
    let waited = started.elapsed();
    block.release().await;
    assert_eq!(refused.status(), 503, "a blocked link write is a 503");
    assert!(
        refused.headers().contains_key("retry-after"),
        "{:?}",
        refused.headers()
    );
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(problem["code"], "unavailable", "{problem}");
    assert!(
        waited < Duration::from_secs(4),
        "answered within the 1 s statement timeout and a margin, not after {waited:?}"
    );
    assert_eq!(
        hub.get_record("sis", "SIS-IT-2026-000077").await.status(),
        200,
        "the record was stored before detection failed"
    );
}

async fn a_replay_finishes_the_detection_a_failed_push_left_unfinished(backend: Backend) {
    let hub = TestHub::spawn_with(backend, |config| {
        quick_faults(config);
        // Only the replay may finish it here.
        config.settings.detection.sweep_interval_seconds = 3_600;
    })
    .await;
    push_with_links_blocked(&hub, backend).await;
    assert!(hub.all_links("").await.is_empty(), "no link yet");
    let replay = hub
        .post_record("sis", "application/json", sis_of_the_ees_person())
        .await;
    assert_eq!(replay.status(), 200);
    let replay: Value = replay.json().await.expect("report");
    assert_eq!(replay["outcome"], "replayed", "{replay}");
    let links = replay["links"].as_array().cloned().unwrap_or_default();
    assert_eq!(links.len(), 1, "the replay linked the record: {replay:#}");
    assert_eq!(links[0]["other"]["system"], "ees", "{replay:#}");
    assert_eq!(hub.all_links("").await.len(), 1);
    // Finished means marked: neither a sweep nor a restart detects it again.
    assert_detected(&hub, "SIS-IT-2026-000077").await;
}

/// Waits until the law-enforcement record `source_id` is marked detected at its version
/// (marks are written together, shortly after the answer).
async fn assert_detected(hub: &TestHub, source_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let marked = hub
            .query_strings(
                &hub.law_enforcement_url,
                &format!(
                    "SELECT CAST(version - detected_version AS TEXT) FROM identity_records \
                     WHERE source_id = '{source_id}'"
                ),
            )
            .await;
        if marked == ["0"] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{source_id} not marked detected: {marked:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn the_sweep_finishes_an_unfinished_detection_without_a_replay(backend: Backend) {
    let hub = TestHub::spawn_with(backend, quick_faults).await;
    push_with_links_blocked(&hub, backend).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let links = hub.all_links("").await;
        if links.len() == 1 {
            let ends: Vec<&str> = links[0]["records"]
                .as_array()
                .expect("records")
                .iter()
                .filter_map(|end| end["system"].as_str())
                .collect();
            assert_eq!(ends, ["ees", "sis"], "{links:#?}");
            assert_detected(&hub, "SIS-IT-2026-000077").await;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep did not link the record within 20 s: {links:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pairs raced: each pair is one person's EES file and SIS alert.
const PAIRS: usize = 150;

/// A surname of letters only, one syllable per decimal digit of `i`.
fn surname(i: usize) -> String {
    const SYLLABLES: [&str; 10] = ["ba", "ke", "mi", "lo", "su", "ra", "te", "no", "vi", "go"];
    let digits = format!("{i:03}");
    let mut name: String = digits
        .bytes()
        .map(|digit| SYLLABLES[usize::from(digit - b'0')])
        .collect();
    name.replace_range(..1, &name[..1].to_uppercase());
    name
}

/// A date of birth of pair `i`'s own: no two pairs share one, and pairs born in the same
/// year are born months apart.
fn date_of_birth(i: usize) -> String {
    format!(
        "{}-{:02}-{:02}",
        1930 + i % 60,
        1 + (i / 60) * 4,
        1 + i % 28
    )
}

/// Pair `i`'s EES file at `version` and SIS alert: the same name, date of birth, passport
/// and face (a face of this pair's own, far from every other pair's).
fn pair(i: usize, version: u32) -> (Vec<u8>, Vec<u8>) {
    let face = base_vector(7, u64::try_from(i).unwrap_or(0), Trait::Face);
    let data = base64::engine::general_purpose::STANDARD.encode(
        face.iter()
            .flat_map(|value| value.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    let template =
        json!([{"modality": "face", "algorithm": "acme-face-v3", "quality": 90, "data": data}]);
    let document = format!("R{i:08}");
    let mut ees: Value = serde_json::from_str(&fixture("ees.json")).expect("EES example");
    ees["file_id"] = json!(format!("EES-ES-2026-{i:06}"));
    ees["version"] = json!(version);
    ees["traveller"]["surname"] = json!(surname(i));
    ees["traveller"]["date_of_birth"] = json!(date_of_birth(i));
    ees["travel_document"]["number"] = json!(document);
    ees["biometrics"] = template.clone();
    let mut sis: Value = serde_json::from_str(&fixture("sis.json")).expect("SIS example");
    sis["alert_id"] = json!(format!("SIS-SE-2026-{i:06}"));
    sis["person"]["surnames"] = json!([surname(i)]);
    sis["person"]["dob"] = json!(date_of_birth(i));
    sis["documents"][0]["number"] = json!(document);
    sis["biometrics"] = template;
    (
        serde_json::to_vec(&ees).expect("EES"),
        serde_json::to_vec(&sis).expect("SIS"),
    )
}

async fn no_link_outlives_its_records_when_deletes_race_re_ingests(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for i in 0..PAIRS {
        let (ees, sis) = pair(i, 1);
        assert_eq!(
            hub.post_record("ees", "application/json", ees)
                .await
                .status(),
            201
        );
        let linked = report_of(&hub, "sis", sis).await;
        assert_eq!(
            linked["links"].as_array().map(Vec::len),
            Some(1),
            "pair {i} is linked: {linked:#}"
        );
    }
    // Every pair at once, sixteen in flight: the SIS alert deleted while the EES file is
    // re-ingested at version 2, whose detection reads the alert as a candidate. The deletes
    // set off from 0 to 90 ms after their update, so that both orders happen whatever an
    // ingest's steps cost before its detection reads the candidates.
    let sis_owner = hub.token("connector", "SE", &["connector:sis"]);
    let outcomes: Vec<(u16, u16, bool)> = futures::stream::iter(0..PAIRS)
        .map(|i| {
            let hub = &hub;
            let sis_owner = &sis_owner;
            async move {
                let (ees, _) = pair(i, 2);
                let path = format!("/v1/systems/sis/records/SIS-SE-2026-{i:06}");
                let delete = async {
                    tokio::time::sleep(Duration::from_millis(
                        u64::try_from(i % 10).unwrap_or(0) * 10,
                    ))
                    .await;
                    hub.call(reqwest::Method::DELETE, &path, Some(sis_owner), None)
                        .await
                };
                let reingest = hub.post_record("ees", "application/json", ees);
                let ((deleted, _), updated) = tokio::join!(delete, reingest);
                let status = updated.status().as_u16();
                let report: Value = updated.json().await.unwrap_or_default();
                let linked = report["links"].as_array().is_some_and(|l| !l.is_empty());
                (deleted, status, linked)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        outcomes
            .iter()
            .all(|(deleted, updated, _)| (*deleted, *updated) == (204, 200)),
        "every delete and every update acknowledged: {outcomes:?}"
    );
    // Both orders happened: some updates still found the alert and linked it.
    let linked = outcomes.iter().filter(|(_, _, linked)| *linked).count();
    assert!(
        (1..PAIRS).contains(&linked),
        "{linked} of {PAIRS} updates linked the alert: the race did not run both ways"
    );
    let links = hub.all_links("").await;
    let orphans: Vec<&Value> = links
        .iter()
        .filter(|link| {
            link["records"]
                .as_array()
                .is_some_and(|ends| ends.iter().any(|end| end["system"] == "sis"))
        })
        .collect();
    assert!(
        orphans.is_empty(),
        "{} links outlived their deleted SIS alert: {orphans:#?}",
        orphans.len()
    );
    assert!(links.is_empty(), "only the pairs were linked: {links:#?}");
    for i in 0..PAIRS {
        let ees = hub.get_record("ees", &format!("EES-ES-2026-{i:06}")).await;
        assert_eq!(ees.status(), 200);
        let ees: Value = ees.json().await.expect("record");
        assert_eq!(ees["record"]["version"], 2, "pair {i}: the update is kept");
        assert_eq!(
            hub.get_record("sis", &format!("SIS-SE-2026-{i:06}"))
                .await
                .status(),
            404,
            "pair {i}: the delete is kept"
        );
    }

    // A link left behind by other means (its record removed behind the hub's back) goes at
    // the next detection of the record at its other end.
    let (ees, sis) = pair(PAIRS, 1);
    hub.post_record("ees", "application/json", ees).await;
    hub.post_record("sis", "application/json", sis).await;
    assert_eq!(hub.all_links("").await.len(), 1);
    let removed = hub
        .execute(
            &hub.law_enforcement_url,
            &format!("DELETE FROM identity_records WHERE source_id = 'SIS-SE-2026-{PAIRS:06}'"),
        )
        .await;
    assert_eq!(removed, 1);
    let (ees, _) = pair(PAIRS, 2);
    let updated = report_of(&hub, "ees", ees).await;
    assert_eq!(updated["links"], json!([]), "{updated:#}");
    assert!(hub.all_links("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_file_is_named_at_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = interop_hub::config::HubConfig::embedded(dir.path());
    let app = interop_hub::startup::Application::build(config.clone())
        .await
        .expect("a fresh hub starts");
    // Stopped: the hub closes its databases, and SQLite folds its log into the file,
    // which is all there is to damage.
    app.run_until(async {}).await.expect("a clean stop");
    let civil = config.civil_url();
    let file = civil
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .expect("a path")
        .to_owned();
    let mut bytes = std::fs::read(&file).expect("the civil database file");
    assert!(bytes.len() > 8_192, "the schema spans pages");
    // Every page but the first (the header and the schema's root) overwritten.
    for (i, byte) in bytes.iter_mut().enumerate().skip(4_096) {
        *byte = u8::try_from(i % 251).unwrap_or(0);
    }
    std::fs::write(&file, bytes).expect("damaged");

    let refused = interop_hub::startup::Application::build(config)
        .await
        .expect_err("a damaged database stops start-up");
    let message = format!("{refused:#}");
    assert!(
        message.contains("is damaged") && message.contains(&file),
        "the error names the damaged file and what to do: {message}"
    );
    assert!(message.contains("backup"), "{message}");
}

async fn the_sweep_finishes_a_delete_that_stopped_half_way(backend: Backend) {
    let hub = TestHub::spawn_with(backend, quick_faults).await;
    hub.post_examples().await;
    assert_eq!(hub.all_links("").await.len(), 10);
    // As a process that died mid-delete leaves things: the SIS alert noted as being
    // deleted and gone, its links still there; and the EES file noted, but still there
    // (its delete died before removing it).
    let noted = |system: &str, source_id: &str| {
        format!(
            "INSERT INTO record_deletions (system, source_id, started_at) \
             VALUES ('{system}', '{source_id}', 0)"
        )
    };
    hub.execute(&hub.mid_url, &noted("sis", "SIS-IT-2026-000077"))
        .await;
    hub.execute(&hub.mid_url, &noted("ees", "EES-DE-2026-000123"))
        .await;
    assert_eq!(
        hub.execute(
            &hub.law_enforcement_url,
            "DELETE FROM identity_records WHERE source_id = 'SIS-IT-2026-000077'",
        )
        .await,
        1
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = hub
            .query_strings(&hub.mid_url, "SELECT source_id FROM record_deletions")
            .await;
        let links = hub.all_links("").await;
        let to_sis = links
            .iter()
            .filter(|link| {
                link["records"]
                    .as_array()
                    .is_some_and(|ends| ends.iter().any(|end| end["system"] == "sis"))
            })
            .count();
        if pending.is_empty() && to_sis == 0 {
            // The EES file is still there, and so are its links to the other three.
            assert_eq!(links.len(), 6, "{links:#?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep did not finish the deletes: {pending:?}, {to_sis} links to SIS"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
