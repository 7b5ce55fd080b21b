//! The fault suite: a hub process under load while its PostgreSQL cluster restarts and
//! stops, while its disk fills up, and while it is told to stop — each asserting what the
//! clients saw (never a 500, a 503 always with `Retry-After` and within the timeouts,
//! `/readyz` at once) and what is stored afterwards (every acknowledged record).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connectors::RecordRef;
use hub_tests::{
    PostgresCluster, READ_PURPOSE, all_roles_token, all_roles_token_of, authorized_client, owner_of,
};
use interop_hub::access::TokenAuthority;
use interop_hub_cli::generate::{GenerateOptions, generate};
use serde_json::Value;

use crate::process::{
    HubProcess, assert_readable, postgres_database_flags, settings_file, tokens_of,
};

/// What the hubs under fault are set to: a request waits two seconds at most for a
/// connection, a statement runs two seconds at most.
const TIMEOUTS: &str = "[database]\nacquire_timeout_seconds = 2\nstatement_timeout_seconds = 2\n";

/// Longest any answer may take while a database is failing: both timeouts, and a margin
/// for a loaded two-core machine.
const ANSWER_BOUND: Duration = Duration::from_secs(9);

/// One push's answer as its client saw it.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    retry_after: bool,
    took: Duration,
}

/// A generated population's records, pushed by `WORKERS` clients until none is left: a
/// record answered 503 goes back in the queue, as a connector would retry it.
struct Load {
    queue: Arc<Mutex<VecDeque<(String, String, String)>>>,
    answers: Arc<Mutex<Vec<Answer>>>,
    acknowledged: Arc<Mutex<Vec<RecordRef>>>,
    /// The records whose push got no answer at all (a transport error).
    unanswered: Arc<Mutex<Vec<RecordRef>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

const WORKERS: usize = 4;

impl Load {
    fn start(dir: &Path, persons: u64, base: &str, tokens: &Arc<TokenAuthority>) -> Self {
        let population = generate(&GenerateOptions {
            persons,
            seed: 5,
            out: dir.join("population"),
        })
        .expect("generate");
        let queue: VecDeque<(String, String, String)> =
            std::fs::read_to_string(&population.records_file)
                .expect("records")
                .lines()
                .map(|line| {
                    let line: Value = serde_json::from_str(line).expect("line");
                    let body = match &line["body"] {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (
                        line["system"].as_str().unwrap_or_default().to_owned(),
                        line["content_type"].as_str().unwrap_or_default().to_owned(),
                        body,
                    )
                })
                .collect();
        let mut load = Self {
            queue: Arc::new(Mutex::new(queue)),
            answers: Arc::default(),
            acknowledged: Arc::default(),
            unanswered: Arc::default(),
            stop: Arc::default(),
            workers: Vec::new(),
        };
        for _ in 0..WORKERS {
            load.workers.push(tokio::spawn(
                load.worker(base.to_owned(), Arc::clone(tokens)),
            ));
        }
        load
    }

    fn worker(
        &self,
        base: String,
        tokens: Arc<TokenAuthority>,
    ) -> impl Future<Output = ()> + use<> {
        let (queue, answers, acknowledged, unanswered, stop) = (
            Arc::clone(&self.queue),
            Arc::clone(&self.answers),
            Arc::clone(&self.acknowledged),
            Arc::clone(&self.unanswered),
            Arc::clone(&self.stop),
        );
        // A connection per request: a refused connection is then told apart from a
        // request cut off mid-way.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        async move {
            while !stop.load(Ordering::Relaxed) {
                let next = queue.lock().expect("queue").pop_front();
                let Some((system, content_type, body)) = next else {
                    return;
                };
                let state = owner_of(&system, body.as_bytes()).expect("a valid record");
                let started = Instant::now();
                let sent = client
                    .post(format!("{base}/v1/systems/{system}/records"))
                    .bearer_auth(all_roles_token_of(&tokens, &state))
                    .header("content-type", content_type.as_str())
                    .body(body.clone())
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    Err(error) => {
                        report_unanswered(&error);
                        unanswered
                            .lock()
                            .expect("errors")
                            .push(reference_of(&system, body.as_bytes()));
                        queue
                            .lock()
                            .expect("queue")
                            .push_back((system, content_type, body));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let answer: Value = response.json().await.unwrap_or_default();
                answers.lock().expect("answers").push(Answer {
                    status,
                    retry_after,
                    took: started.elapsed(),
                });
                if status == 201 || status == 200 {
                    let system = system.parse().expect("system");
                    let source_id = answer["record"]["source_id"].as_str().unwrap_or_default();
                    acknowledged
                        .lock()
                        .expect("acknowledged")
                        .push(RecordRef::new(system, source_id));
                } else if status == 503 {
                    queue
                        .lock()
                        .expect("queue")
                        .push_back((system, content_type, body));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().expect("acknowledged").len()
    }

    async fn wait_acknowledged(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.acknowledged() < count {
            assert!(
                Instant::now() < deadline,
                "only {} records acknowledged in 2 min",
                self.acknowledged()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets the workers empty the queue, and waits for them.
    async fn finish(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        for worker in self.workers.drain(..) {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, worker)
                .await
                .expect("the load finishes within 5 min")
                .expect("worker");
        }
    }

    /// Stops the workers after their request in flight.
    async fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await;
    }

    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().expect("answers").clone()
    }

    /// Every answer was a success or a 503 with `Retry-After`, and none took longer than
    /// `bound`; answers how many were 503.
    fn assert_clean(&self, bound: Duration) -> usize {
        let answers = self.answers();
        let wrong: Vec<&Answer> = answers
            .iter()
            .filter(|a| !(a.status == 200 || a.status == 201 || (a.status == 503 && a.retry_after)))
            .collect();
        assert!(
            wrong.is_empty(),
            "answers other than success or 503 + Retry-After: {wrong:?}"
        );
        let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
        assert!(
            slowest <= bound,
            "an answer took {slowest:?}, more than {bound:?}"
        );
        answers.iter().filter(|a| a.status == 503).count()
    }

    /// Every acknowledged record reads back.
    async fn assert_all_stored(&self, base: &str, client: &reqwest::Client) {
        let acknowledged = self.acknowledged.lock().expect("acknowledged").clone();
        assert_readable(client, base, &acknowledged).await;
    }
}

/// Says why a push got no answer, for the test's log.
fn report_unanswered(error: &reqwest::Error) {
    eprintln!("a push got no answer: {error}");
}

/// `GET /readyz`: its status, and how long it took.
async fn readiness(client: &reqwest::Client, base: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

async fn on_blocking(work: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(work)
        .await
        .expect("cluster control");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_and_stopped_under_load() {
    let cluster = Arc::new(PostgresCluster::start());
    let database_urls = postgres_database_flags(&cluster.url("postgres")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = HubProcess::start(&data, &settings_file(dir.path(), TIMEOUTS), database_urls);
    let probe = reqwest::Client::new();
    server.wait_ready(&probe).await;
    let tokens = tokens_of(&data);
    let mut load = Load::start(dir.path(), 120, &server.base, &tokens);
    load.wait_acknowledged(20).await;

    // Fast restarts: every session of the hub is terminated mid-work.
    for _ in 0..3 {
        let restarting = Arc::clone(&cluster);
        on_blocking(move || restarting.restart()).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }

    // Stopped: quick 503s, and a readiness probe that says so at once.
    let stopping = Arc::clone(&cluster);
    on_blocking(move || stopping.stop()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let (status, took) = readiness(&probe, &server.base).await;
        assert_eq!(status, 503, "not ready while PostgreSQL is stopped");
        assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    }
    let reader = authorized_client(&all_roles_token(&tokens));
    let started = Instant::now();
    let refused = reader
        .get(format!(
            "{}/v1/systems/ees/records/none?purpose={READ_PURPOSE}",
            server.base
        ))
        .send()
        .await
        .expect("an answer");
    let took = started.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        took < Duration::from_secs(4),
        "a read answered 503 within the 2 s acquire timeout and a margin, not {took:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back: the same hub process resumes by itself.
    let starting = Arc::clone(&cluster);
    on_blocking(move || starting.start_again()).await;
    server
        .wait_ready_within(&probe, Duration::from_secs(30))
        .await;
    load.finish().await;

    let unavailable = load.assert_clean(ANSWER_BOUND);
    assert!(
        unavailable > 0,
        "the faults were met: some pushes were answered 503"
    );
    assert!(
        load.unanswered.lock().expect("errors").is_empty(),
        "every push was answered"
    );
    load.assert_all_stored(&server.base, &reader).await;
}

/// A tmpfs of `megabytes` mounted on `at` (the tests run as root in CI); unmounted when
/// dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, megabytes: u32) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|status| status.success());
        assert!(
            mounted,
            "the disk-full test mounts a small tmpfs, which needs root (CI and tests/run \
             run as root)"
        );
        Self(at.to_path_buf())
    }

    /// Fills the disk with a file of its own until `leave` bytes are free.
    fn fill(&self, leave: u64) -> std::path::PathBuf {
        let free = free_bytes(&self.0);
        let filler = self.0.join("filler");
        let size = free.saturating_sub(leave);
        let file = std::fs::File::create(&filler).expect("filler");
        use std::io::Write as _;
        let mut writer = std::io::BufWriter::new(file);
        let chunk = vec![0_u8; 1 << 20];
        let mut written = 0;
        while written < size {
            let part = usize::try_from((size - written).min(1 << 20)).unwrap_or(1 << 20);
            writer.write_all(&chunk[..part]).expect("filler written");
            written += part as u64;
        }
        writer.flush().expect("filler flushed");
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

/// Free bytes on the file system of `path`, as `df` reports them.
fn free_bytes(path: &Path) -> u64 {
    let output = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .expect("df prints the free bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_cleanly_and_recovered_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = SmallDisk::mount(&dir.path().join("disk"), 48);
    let data = dir.path().join("disk").join("data");
    let server = HubProcess::start(
        &data,
        &settings_file(dir.path(), &format!("{TIMEOUTS}min_free_disk_mib = 4\n")),
        Vec::new(),
    );
    let probe = reqwest::Client::new();
    server.wait_ready(&probe).await;
    let tokens = tokens_of(&data);
    let filler = disk.fill(512 * 1024);
    let mut load = Load::start(dir.path(), 150, &server.base, &tokens);

    // Full: writes are refused with 503 and the hub says it is not ready.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !load.answers().iter().any(|a| a.status == 503) {
        assert!(Instant::now() < deadline, "the disk never filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, took) = readiness(&probe, &server.base).await;
    assert_eq!(status, 503, "not ready on a full disk");
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Room again: the same process takes writes without a restart.
    std::fs::remove_file(&filler).expect("filler removed");
    server
        .wait_ready_within(&probe, Duration::from_secs(10))
        .await;
    load.finish().await;
    load.assert_clean(ANSWER_BOUND);
    assert!(load.unanswered.lock().expect("errors").is_empty());
    let reader = authorized_client(&all_roles_token(&tokens));
    load.assert_all_stored(&server.base, &reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_every_request_in_progress() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = HubProcess::start(&data, &settings_file(dir.path(), ""), Vec::new());
    let probe = reqwest::Client::new();
    server.wait_ready(&probe).await;
    let tokens = tokens_of(&data);
    let mut load = Load::start(dir.path(), 120, &server.base, &tokens);
    load.wait_acknowledged(30).await;
    assert!(
        server.terminate(Duration::from_secs(30)).await,
        "the hub exits cleanly on SIGTERM"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.halt().await;
    // Requests in progress were answered; later ones found no listener, or a connection
    // the hub closed before it read their request.
    load.assert_clean(Duration::from_secs(30));
    server.spawn();
    server.wait_ready(&probe).await;
    let reader = authorized_client(&all_roles_token(&tokens));
    load.assert_all_stored(&server.base, &reader).await;
    // A push that got no answer was never begun: had the hub stored its record, it would
    // have been in progress at the signal and cut off.
    let acknowledged = load.acknowledged.lock().expect("acknowledged").clone();
    let unanswered = load.unanswered.lock().expect("errors").clone();
    for record in unanswered.iter().filter(|r| !acknowledged.contains(r)) {
        let read = reader
            .get(format!(
                "{}/v1/systems/{}/records/{}?purpose={READ_PURPOSE}",
                server.base, record.system, record.source_id
            ))
            .send()
            .await
            .expect("answer");
        assert_eq!(
            read.status(),
            404,
            "{record:?} was stored, but its push got no answer: cut off mid-way"
        );
    }
}

/// SQLite is the single-node default: a second hub process on the same data directory
/// stops at once, saying why, and the first goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hub_on_the_same_data_directory_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = settings_file(dir.path(), "");
    let server = HubProcess::start(&data, &config, Vec::new());
    let probe = reqwest::Client::new();
    server.wait_ready(&probe).await;

    let mut second = HubProcess::start(&data, &config, Vec::new());
    let status = second
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("a second hub on the same data directory stops by itself");
    let log = second.log_text();
    assert!(!status.success(), "the second hub stops with a failure");
    assert!(
        log.contains("is in use by another interop-hub process"),
        "it says why: {log}"
    );
    let ready = probe
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("the first hub answers");
    assert_eq!(ready.status(), 200, "the first hub goes on serving");
}

/// The record a native body names.
fn reference_of(system: &str, body: &[u8]) -> RecordRef {
    let system: connectors::SourceSystem = system.parse().expect("a system");
    let accepted = connectors::parse(system, body, &connectors::AlgorithmRegistry::default())
        .expect("a valid record");
    RecordRef::new(system, accepted.record.source_id)
}
