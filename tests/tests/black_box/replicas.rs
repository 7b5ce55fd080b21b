//! Several hub processes on the same PostgreSQL databases: what one writes, every other one
//! searches, through the partitions' change feeds.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hub_tests::{all_roles_token_of, authorized_client, free_port, mint, postgres_admin_url};
use interop_hub::access::TokenAuthority;
use interop_hub_cli::generate::{
    Sex, Template, Trait, WrittenDocument, WrittenPerson, base_vector, ees_file, new_capture,
    sis_alert, with_biometrics,
};
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::process::{HubProcess, postgres_database_flags, settings_file};

const SEED: u64 = 2_029;
/// The state whose connectors write every record here.
const STATE: &str = "DE";
/// Connections of each hub's pools (deploy/README.md: each replica needs four pools and nine
/// more connections).
const POOL: u32 = 6;
/// Held by each test here while its hubs run: three hubs hold some 55 connections, and two
/// such tests at once, beside another test's hub, would pass the test server's 100.
static SERVER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How long a change may take to reach another hub before the test calls it lost.
const PATIENCE: Duration = Duration::from_secs(10);

/// `count` hubs started together on one set of fresh PostgreSQL databases, each with its own
/// data directory and the same signing key, and a client whose token every one of them
/// accepts.
async fn replicas(dir: &Path, count: usize) -> (Vec<HubProcess>, reqwest::Client, Vec<String>) {
    replicas_with(dir, count, "").await
}

/// [`replicas`] with more settings (TOML sections).
async fn replicas_with(
    dir: &Path,
    count: usize,
    extra: &str,
) -> (Vec<HubProcess>, reqwest::Client, Vec<String>) {
    let key = dir.join("token-keys");
    let config = settings_file(
        dir,
        &format!(
            "[database]\nmax_connections = {POOL}\n\
             [auth]\nkeys_dir = \"{}\"\n[administration]\nfour_eyes = false\n\
             [feed]\npoll_interval_ms = 100\n{extra}",
            key.display()
        ),
    );
    let flags = postgres_database_flags(&postgres_admin_url()).await;
    let probe = reqwest::Client::new();
    // All at once on new databases, as a deployment starts them: one seeds the baseline
    // policy, the others wait for it.
    let hubs: Vec<HubProcess> = (0..count)
        .map(|replica| {
            HubProcess::start(&dir.join(format!("hub-{replica}")), &config, flags.clone())
        })
        .collect();
    for hub in &hubs {
        hub.wait_ready(&probe).await;
    }
    let tokens = TokenAuthority::load_or_create(&key).expect("the shared signing key");
    (
        hubs,
        authorized_client(&all_roles_token_of(&tokens, STATE)),
        flags,
    )
}

/// Person `person`'s EES file (civil) or SIS alert (law enforcement), with a capture of
/// their face of its own; the face's vector comes back with the body. A SIS alert is written
/// under another identity (name, date of birth, document): only the face can find its mate.
fn record_of(person: u64, system: &str, capture: u64) -> (String, String, Vec<f32>) {
    record_at(person, system, capture, 1)
}

/// [`record_of`] at `version`: a later version is a new capture of the same face.
fn record_at(person: u64, system: &str, capture: u64, version: u64) -> (String, String, Vec<f32>) {
    let face = new_capture(&base_vector(SEED, person, Trait::Face), capture);
    let alias = if system == "sis" { 500 } else { 0 };
    let given = [format!("Given{}", person + alias)];
    let born = person + alias / 7;
    let date_of_birth = format!("19{:02}-0{}-1{}", 50 + born % 40, 1 + born % 9, born % 10);
    let document = format!("R{:08}", person + alias);
    let written = WrittenPerson {
        surname: &format!("Replica{}", person + alias),
        given: &given,
        date_of_birth: &date_of_birth,
        sex: Sex::Unspecified,
        nationality: "XXA",
        document: Some(WrittenDocument {
            number: &document,
            country: "XXA",
            expiry: None,
        }),
    };
    let id = format!("{}-{STATE}-{person:06}", system.to_uppercase());
    let mut record = match system {
        "sis" => sis_alert(&id, STATE, "discreet_check", &written, &[]),
        _ => ees_file(&id, STATE, &written),
    };
    record.insert("version".into(), json!(version));
    let body = with_biometrics(
        &Value::Object(record),
        &[Template::new(Trait::Face, 80, &face)],
    );
    (id, body, face)
}

/// The URL the database flag `flag` of `flags` gives.
fn database_url(flags: &[String], flag: &str) -> String {
    flags
        .iter()
        .skip_while(|given| *given != flag)
        .nth(1)
        .unwrap_or_else(|| panic!("{flag} among the flags"))
        .clone()
}

/// Walks the audit chain in the control database `flags` name: how many entries it holds,
/// once it is found whole.
async fn verified_audit_entries(flags: &[String]) -> u64 {
    interop_hub::store::ControlStore::open(
        &database_url(flags, "--control-database-url"),
        &interop_hub::store::PoolSettings::default(),
    )
    .await
    .expect("the control database")
    .verify_audit_chain()
    .await
    .expect("the chain is read")
    .expect("the chain holds")
}

async fn push(client: &reqwest::Client, hub: &HubProcess, system: &str, body: String) -> Value {
    let response = client
        .post(format!("{}/v1/systems/{system}/records", hub.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the hub answers");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.expect("a JSON answer");
    assert!(status == 201 || status == 200, "{status}: {answer}");
    answer
}

/// The record ids a 1:N search of `face` through `hub` answers, best first, with their
/// similarities.
async fn search(client: &reqwest::Client, hub: &HubProcess, face: &[f32]) -> Vec<(String, f64)> {
    let bytes: Vec<u8> = face.iter().flat_map(|v| v.to_le_bytes()).collect();
    let response = client
        .post(format!("{}/v1/biometrics/search", hub.base))
        .json(&json!({
            "purpose": "border_check", "algorithm": "acme-face-v3",
            "data": STANDARD.encode(bytes), "limit": 3
        }))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("a JSON answer");
    answer["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| {
            (
                hit["record"]["source_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                hit["similarity"].as_f64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until `found` holds of what a search of `face` through `hub` answers.
async fn until_search(
    client: &reqwest::Client,
    hub: &HubProcess,
    face: &[f32],
    found: impl Fn(&[(String, f64)]) -> bool,
) -> Vec<(String, f64)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let hits = search(client, hub, face).await;
        if found(&hits) || Instant::now() > deadline {
            return hits;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A record pushed through one hub is found by 1:N search through the others (its own
/// template scores 1.0 there, not a stranger's 0.1), and once deleted through one hub it is
/// found by none; every hub stays ready and says how far behind each feed it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_through_one_hub_is_searched_through_every_other() {
    let _turn = SERVER_TURN.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (hubs, client, _) = replicas(dir.path(), 3).await;
    let (id, body, face) = record_of(1, "ees", 1);
    push(&client, &hubs[0], "ees", body).await;
    for other in &hubs[1..] {
        let hits = until_search(&client, other, &face, |hits| {
            hits.first().is_some_and(|(top, _)| *top == id)
        })
        .await;
        assert_eq!(
            hits.first().map(|(top, _)| top.as_str()),
            Some(id.as_str()),
            "{hits:?}"
        );
        assert!(
            hits[0].1 > 0.99,
            "its own template matches itself: {hits:?}"
        );
        let ready: Value = reqwest::get(format!("{}/readyz", other.base))
            .await
            .expect("readyz answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(ready["status"], "ready", "{ready}");
        assert_eq!(ready["feeds"].as_array().map(Vec::len), Some(2), "{ready}");
        assert!(ready["feeds"][0]["lag_ms"].as_u64().is_some(), "{ready}");
    }

    let deleted = client
        .delete(format!("{}/v1/systems/ees/records/{id}", hubs[1].base))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(deleted.status(), 204);
    for hub in &hubs {
        let hits = until_search(&client, hub, &face, |hits| {
            hits.iter().all(|(found, _)| *found != id)
        })
        .await;
        assert!(
            hits.iter().all(|(found, _)| *found != id),
            "a deleted record is found by no hub: {hits:?}"
        );
    }
}

/// Two records of one person under two identities, one civil and one law-enforcement,
/// pushed through two hubs with both requests in flight at once: only the face links them,
/// and the one detected second always has the other's in its index, so every pair is
/// linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_person_pushed_at_once_through_two_hubs_are_always_linked() {
    let _turn = SERVER_TURN.lock().await;
    const TRIALS: u64 = 50;
    let dir = tempfile::tempdir().expect("temp dir");
    let (hubs, client, flags) = replicas(dir.path(), 2).await;
    let mut links_db = sqlx::PgConnection::connect(&database_url(&flags, "--mid-database-url"))
        .await
        .expect("the links database");
    let mut linked = 0;
    let mut overlapping = 0;
    for person in 100..100 + TRIALS {
        let (ees_id, ees_body, _) = record_of(person, "ees", 1);
        let (sis_id, sis_body, _) = record_of(person, "sis", 2);
        let timed = |hub: &'static str, system: &'static str, body: String| {
            let client = &client;
            let hub = &hubs[usize::from(hub == "second")];
            async move {
                let sent = Instant::now();
                push(client, hub, system, body).await;
                (sent, Instant::now())
            }
        };
        let (ees, sis) = tokio::join!(
            timed("first", "ees", ees_body),
            timed("second", "sis", sis_body)
        );
        // Recorded: each request was sent before the other was answered.
        if ees.0.max(sis.0) < ees.1.min(sis.1) {
            overlapping += 1;
        }
        let pair: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM links WHERE (a_source_id = $1 AND b_source_id = $2) \
             OR (a_source_id = $2 AND b_source_id = $1)",
        )
        .bind(&ees_id)
        .bind(&sis_id)
        .fetch_one(&mut links_db)
        .await
        .expect("links read");
        linked += pair;
    }
    assert_eq!(
        linked,
        i64::try_from(TRIALS).unwrap_or_default(),
        "pairs linked out of {TRIALS}"
    );
    assert_eq!(overlapping, TRIALS, "every pair was in flight at once");

    // Both hubs appended to one audit chain at once, and it holds.
    let entries = verified_audit_entries(&flags).await;
    assert!(entries >= 2 * TRIALS, "every ingest audited: {entries}");
}

/// A role assigned through one hub lets its holder search through the others once they
/// have read the policy version (a widening change: within `policy_poll_interval_ms`, as
/// the hubs here do not listen for announcements); once the assignment is removed through
/// the first, none of the next 1,000 searches through any hub is answered, though the others
/// would not read the version for another two seconds: each search's audit transaction finds
/// the version moved and the search decided again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_removed_through_one_hub_refuses_the_very_next_request_on_every_other() {
    let _turn = SERVER_TURN.lock().await;
    const REQUESTS: usize = 1_000;
    const IN_FLIGHT: usize = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    // The test settings lift the request budgets: 1,000 searches of one officer.
    let (hubs, admin, _) = replicas_with(
        dir.path(),
        3,
        "policy_poll_interval_ms = 2000\npolicy_announcements = false\n",
    )
    .await;
    let tokens = TokenAuthority::load_or_create(&dir.path().join("token-keys"))
        .expect("the shared signing key");
    let officer = mint(&tokens, "m.rossi", "TEST", "IT", &[]);
    let officer_client = reqwest::Client::new();
    let search_status = |hub: usize| search_status(&officer_client, &hubs[hub], &officer);
    for hub in 0..hubs.len() {
        assert_eq!(search_status(hub).await, 403, "no role, no search");
    }

    let id = assign(&admin, &hubs[0], "user:TEST/m.rossi", "border_guard").await;
    for hub in &hubs {
        until_searching(&officer_client, hub, &officer).await;
    }

    unassign(&admin, &hubs[0], id).await;
    let started = Instant::now();
    let mut answered = Vec::with_capacity(REQUESTS);
    for wave in (0..REQUESTS).collect::<Vec<_>>().chunks(IN_FLIGHT) {
        let statuses =
            futures::future::join_all(wave.iter().map(|n| search_status(n % hubs.len()))).await;
        answered.extend(wave.iter().map(|n| n % hubs.len()).zip(statuses));
    }
    let elapsed = started.elapsed();
    let under_old_policy: Vec<&(usize, u16)> = answered
        .iter()
        .filter(|(_, status)| *status != 403)
        .collect();
    assert!(
        under_old_policy.is_empty(),
        "{} of {REQUESTS} searches after the removal (sent over {elapsed:?}) were not \
         refused, by hub and status: {:?}",
        under_old_policy.len(),
        &under_old_policy[..under_old_policy.len().min(10)]
    );
}

/// The status of a border-check search by the holder of `token` through `hub`.
async fn search_status(client: &reqwest::Client, hub: &HubProcess, token: &str) -> u16 {
    client
        .post(format!("{}/v1/search", hub.base))
        .bearer_auth(token)
        .json(&json!({
            "purpose": "border_check",
            "biographic": {"surname": "Replica1", "date_of_birth": "1951-02-11"},
        }))
        .send()
        .await
        .expect("the hub answers")
        .status()
        .as_u16()
}

/// Waits (at most [`PATIENCE`]) until the holder of `token` may search through `hub`:
/// how long that took.
async fn until_searching(client: &reqwest::Client, hub: &HubProcess, token: &str) -> Duration {
    until_search_status(client, hub, token, 200).await
}

/// Waits (at most [`PATIENCE`]) until a search by the holder of `token` through `hub` is
/// answered with `expected`: how long that took.
async fn until_search_status(
    client: &reqwest::Client,
    hub: &HubProcess,
    token: &str,
    expected: u16,
) -> Duration {
    let started = Instant::now();
    let mut status = search_status(client, hub, token).await;
    while status != expected && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = search_status(client, hub, token).await;
    }
    assert_eq!(status, expected, "the change reached {}", hub.base);
    started.elapsed()
}

/// Assigns `role` to `member` through `hub`: the new rule's id.
async fn assign(admin: &reqwest::Client, hub: &HubProcess, member: &str, role: &str) -> i64 {
    let added = admin
        .post(format!("{}/v1/admin/policies", hub.base))
        .json(&json!({
            "rule": {"kind": "assignment", "member": member, "role": role},
            "reason": "seconded to the border police",
        }))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(added.status(), 201);
    added.json::<Value>().await.expect("the rule")["id"]
        .as_i64()
        .expect("its id")
}

/// Removes rule `id` through `hub`.
async fn unassign(admin: &reqwest::Client, hub: &HubProcess, id: i64) {
    let removed = admin
        .delete(format!(
            "{}/v1/admin/policies/{id}?reason=secondment%20ended",
            hub.base
        ))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(removed.status(), 200);
}

/// The pids of the policy announcement listeners connected to the control database `flags`
/// name, after the server cut them.
async fn cut_policy_listeners(flags: &[String]) -> Vec<i32> {
    let mut control = sqlx::PgConnection::connect(&database_url(flags, "--control-database-url"))
        .await
        .expect("the control database");
    sqlx::query_scalar(
        "WITH listeners AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1) \
         SELECT pid FROM listeners WHERE pg_terminate_backend(pid)",
    )
    .bind(interop_hub::store::POLICY_LISTENER_NAME)
    .fetch_all(&mut control)
    .await
    .expect("the listeners are cut")
}

/// How many policy announcement listeners, none of `cut`, listen on the control database
/// `flags` name.
async fn policy_listeners_besides(flags: &[String], cut: &[i32]) -> i64 {
    let mut control = sqlx::PgConnection::connect(&database_url(flags, "--control-database-url"))
        .await
        .expect("the control database");
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1 \
         AND state = 'idle' AND query LIKE 'LISTEN%' AND pid <> ALL($2)",
    )
    .bind(interop_hub::store::POLICY_LISTENER_NAME)
    .bind(cut)
    .fetch_one(&mut control)
    .await
    .expect("the listeners are counted")
}

/// A role assigned through one hub lets its holder search through another as soon as the
/// change is announced, though that hub would not poll the policy version for another hour;
/// and again after the server cut every hub's listening connection (each opens another). A
/// revocation of the holder through the first is announced the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_added_through_one_hub_is_announced_to_the_others() {
    let _turn = SERVER_TURN.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (hubs, admin, flags) =
        replicas_with(dir.path(), 2, "policy_poll_interval_ms = 3600000\n").await;
    let tokens = TokenAuthority::load_or_create(&dir.path().join("token-keys"))
        .expect("the shared signing key");
    let officer = mint(&tokens, "m.rossi", "TEST", "IT", &[]);
    let client = reqwest::Client::new();
    assert_eq!(search_status(&client, &hubs[1], &officer).await, 403);

    let id = assign(&admin, &hubs[0], "user:TEST/m.rossi", "border_guard").await;
    let first = until_searching(&client, &hubs[1], &officer).await;

    let cut = cut_policy_listeners(&flags).await;
    assert_eq!(cut.len(), 2, "one listener per hub, cut");
    let started = Instant::now();
    while policy_listeners_besides(&flags, &cut).await < 2 {
        assert!(started.elapsed() < PATIENCE, "the hubs listen again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unassign(&admin, &hubs[0], id).await;
    assert_eq!(search_status(&client, &hubs[1], &officer).await, 403);
    assign(&admin, &hubs[0], "user:TEST/m.rossi", "border_guard").await;
    let again = until_searching(&client, &hubs[1], &officer).await;
    eprintln!("an announced assignment reached the other hub in {first:?}, then {again:?}");

    // A revocation is part of the policy: announced the same way.
    let revoked = admin
        .post(format!("{}/v1/admin/revocations", hubs[0].base))
        .json(&json!({
            "revoke": {"kind": "principal", "agency": "TEST", "subject": "m.rossi"},
            "reason": "left the service",
        }))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(revoked.status(), 201);
    assert_eq!(search_status(&client, &hubs[0], &officer).await, 401);
    let refused = until_search_status(&client, &hubs[1], &officer, 401).await;
    eprintln!("an announced revocation reached the other hub in {refused:?}");
}

/// A caller spreading its searches over two hubs gets the budget of one, not one per hub:
/// every hub takes from one budget row in the control database, and the hit-flag alarm counts
/// there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_spreading_requests_over_hubs_gets_one_budget() {
    let _turn = SERVER_TURN.lock().await;
    const BURST: usize = 5;
    let dir = tempfile::tempdir().expect("temp dir");
    let (hubs, _, _) = replicas_with(
        dir.path(),
        2,
        &format!(
            "[limits]\nper_second = 1\nburst = {BURST}\n\
             agency_per_second = 100000\nagency_burst = 100000\n"
        ),
    )
    .await;
    let tokens = TokenAuthority::load_or_create(&dir.path().join("token-keys"))
        .expect("the shared signing key");
    let officer = authorized_client(&mint(&tokens, "k.berg", "BPOL", STATE, &["border_guard"]));
    let started = Instant::now();
    let mut answered = 0;
    let mut refused = 0;
    for n in 0..4 * BURST {
        let response = officer
            .post(format!("{}/v1/search", hubs[n % hubs.len()].base))
            .json(&json!({
                "purpose": "border_check",
                "biographic": {"surname": "Budget", "date_of_birth": "1970-01-01"},
            }))
            .send()
            .await
            .expect("the hub answers");
        match response.status().as_u16() {
            200 => answered += 1,
            429 => {
                assert!(
                    response.headers().contains_key("retry-after"),
                    "a refusal says when to come back"
                );
                refused += 1;
            }
            other => panic!("search {n}: status {other}"),
        }
    }
    // One request a second comes back into the budget while the searches run.
    let regained = usize::try_from(started.elapsed().as_secs()).unwrap_or(usize::MAX);
    assert!(
        answered >= BURST && answered <= BURST + regained,
        "{answered} answered and {refused} refused over {:?}: one budget of {BURST} between \
         the hubs, not {BURST} each",
        started.elapsed()
    );
}

/// haproxy in front of `hubs`, configured from `deploy/haproxy.cfg.in` as `deploy/replicas`
/// configures it; stopped when dropped.
struct Balancer {
    base: String,
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Balancer {
    fn start(dir: &Path, hubs: &[HubProcess]) -> Self {
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/haproxy.cfg.in"
        ))
        .expect("the deployment's haproxy configuration");
        let port = free_port();
        let servers: String = hubs
            .iter()
            .enumerate()
            .map(|(at, hub)| {
                let address = hub.base.trim_start_matches("http://");
                format!("    server hub{at} {address} check\n")
            })
            .collect();
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            template
                .replace("{{LISTEN}}", &format!("127.0.0.1:{port}"))
                .replace("{{SERVERS}}", &servers),
        )
        .expect("haproxy's configuration");
        let log = dir.join("haproxy.log");
        let child = std::process::Command::new("haproxy")
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("haproxy's log"))
            .spawn()
            .expect("haproxy starts (tests/setup installs it)");
        Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
            log,
        }
    }

    /// Waits until haproxy answers `/readyz` from a replica.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let ready = reqwest::get(format!("{}/readyz", self.base)).await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "haproxy did not reach a ready replica within {PATIENCE:?}: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes `body` through the balancer as a client would: again on 502, 503 or no answer (a
/// replica gone mid-request; a push is idempotent), up to a deadline. The version stored,
/// once acknowledged.
async fn push_until_acknowledged(
    client: &reqwest::Client,
    balancer: &str,
    system: &str,
    body: &str,
) -> Option<i64> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let sent = client
            .post(format!("{balancer}/v1/systems/{system}/records"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            if status == 200 || status == 201 {
                let answer: Value = response.json().await.ok()?;
                return answer["record"]["version"].as_i64();
            }
            assert!(
                [502, 503, 504].contains(&status),
                "only a replica gone or busy is retried: {status}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Three replicas behind haproxy take records (and later versions of some) from four
/// clients at once; one replica is killed with SIGKILL half-way. Every acknowledged write is
/// stored at its version or a later one and reads back so through each surviving replica,
/// whose indexes hold it; every record's detection finishes (the sweep, elected among the
/// survivors, takes over what the killed replica left); the one audit chain holds, and no
/// survivor withheld an answer for want of an audit entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_ingest_behind_the_balancer_loses_no_acknowledged_write() {
    let _turn = SERVER_TURN.lock().await;
    const RECORDS: u64 = 120;
    const CLIENTS: u64 = 4;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut hubs, client, flags) =
        replicas_with(dir.path(), 3, "[detection]\nsweep_interval_seconds = 1\n").await;
    let balancer = Balancer::start(dir.path(), &hubs);
    balancer.wait_ready().await;

    let pushed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let (client, base, pushed) = (
                client.clone(),
                balancer.base.clone(),
                std::sync::Arc::clone(&pushed),
            );
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for person in (2_000 + worker..2_000 + RECORDS).step_by(CLIENTS as usize) {
                    // Every fifth record gets a second version right after its first.
                    let versions = if person % 5 == 0 { 2 } else { 1 };
                    for version in 1..=versions {
                        let (id, body, face) = record_at(person, "ees", version, version);
                        if let Some(stored) =
                            push_until_acknowledged(&client, &base, "ees", &body).await
                        {
                            acknowledged.push((id, stored, face));
                        }
                    }
                    pushed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                acknowledged
            })
        })
        .collect();
    while pushed.load(std::sync::atomic::Ordering::Relaxed) < RECORDS / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hubs[2].kill_9();
    let mut acknowledged = Vec::new();
    for worker in workers {
        acknowledged.extend(worker.await.expect("a client"));
    }
    let expected = RECORDS + RECORDS / 5;
    assert_eq!(
        acknowledged.len() as u64,
        expected,
        "every write acknowledged in the end"
    );

    let survivors = &hubs[..2];
    for hub in survivors {
        for (id, version, face) in &acknowledged {
            let read: Value = client
                .get(format!(
                    "{}/v1/systems/ees/records/{id}?purpose=record_management",
                    hub.base
                ))
                .send()
                .await
                .expect("the hub answers")
                .json()
                .await
                .expect("JSON");
            let stored = read["record"]["version"].as_i64().unwrap_or_default();
            assert!(
                stored >= *version,
                "{id}: acknowledged {version}, read {stored}"
            );
            if stored == *version {
                let hits = until_search(&client, hub, face, |hits| {
                    hits.first().is_some_and(|(top, _)| top == id)
                })
                .await;
                assert_eq!(
                    hits.first().map(|(top, _)| top.as_str()),
                    Some(id.as_str()),
                    "its face finds it through every survivor"
                );
            }
        }
        assert!(
            !hub.log_text().contains("audit entries not written"),
            "no answer withheld for the audit log"
        );
    }

    let mut civil = sqlx::PgConnection::connect(&database_url(&flags, "--civil-database-url"))
        .await
        .expect("the civil database");
    let deadline = Instant::now() + PATIENCE;
    let mut undetected: i64 = -1;
    while Instant::now() < deadline && undetected != 0 {
        undetected = sqlx::query_scalar(
            "SELECT count(*) FROM identity_records WHERE detected_version < version",
        )
        .fetch_one(&mut civil)
        .await
        .expect("counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(undetected, 0, "every record's detection finished");
    let entries = verified_audit_entries(&flags).await;
    assert!(
        entries >= expected,
        "every acknowledged write audited: {entries}"
    );
}
