//! `interop-hub bench --replicas N`: N hub processes on one set of fresh PostgreSQL
//! databases behind haproxy (the deployment's own configuration), measured through the
//! balancer: ingest and 1:N search throughput, and the feed lag — how long a record pushed
//! through one hub takes to be found by a search through another.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connectors::SourceSystem;
use futures::StreamExt as _;
use interop_hub::access::TokenAuthority;
use serde::Serialize;
use sqlx::Connection as _;

use crate::bench::{
    FACE, Progress, bench_caller, capture, cpu_description, native_record, percentile,
    probe_captures, source_id,
};
use crate::generate::Trait;

/// The deployment's haproxy configuration, with its two placeholders.
const HAPROXY_TEMPLATE: &str = include_str!("../../deploy/haproxy.cfg.in");

/// How long a sample record may take to be found through another hub before it counts as
/// not found.
const LAG_PATIENCE: Duration = Duration::from_secs(10);
/// Pause between the searches that look for a sample record: the lag's resolution.
const LAG_POLL: Duration = Duration::from_millis(10);
/// How long the hubs and the balancer may take to report ready.
const START_PATIENCE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub replicas: usize,
    /// Records pushed through the balancer (each with a face and two fingers).
    pub templates: usize,
    /// 1:N searches through the balancer.
    pub queries: usize,
    pub seed: u64,
    /// A PostgreSQL URL of a role that may create databases; four fresh ones are made
    /// there, and dropped afterwards.
    pub postgres_url: String,
    /// Requests in flight at once through the balancer.
    pub http_concurrency: usize,
    pub ingest_in_flight: usize,
    /// Records pushed through one hub and looked for through the next, during the ingest.
    pub lag_samples: usize,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaReport {
    pub replicas: usize,
    pub templates: usize,
    /// Each hub's `database.max_connections` (per pool, four pools per hub).
    pub pool_size: u32,
    pub cpu: String,
    pub ingest_records_per_s: f64,
    pub ingest_p50_ms: f64,
    pub ingest_p99_ms: f64,
    pub ingest_errors: usize,
    pub search_requests_per_s: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
    pub search_errors: usize,
    /// Searches whose probe's person had a record first in some system's answer.
    pub search_recall_at_1: f64,
    pub lag_samples: usize,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// Samples not found through the other hub within [`LAG_PATIENCE`].
    pub lag_not_found: usize,
}

impl fmt::Display for ReplicaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "## {} replica(s) behind haproxy, {} records, pools of {} ({})\n",
            self.replicas, self.templates, self.pool_size, self.cpu
        )?;
        writeln!(f, "| measure | per second | p50 ms | p99 ms | errors |")?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        writeln!(
            f,
            "| ingest through the balancer | {:.0} | {:.1} | {:.1} | {} |",
            self.ingest_records_per_s, self.ingest_p50_ms, self.ingest_p99_ms, self.ingest_errors
        )?;
        writeln!(
            f,
            "| 1:N search through the balancer (recall@1 {:.3}) | {:.0} | {:.1} | {:.1} | {} |",
            self.search_recall_at_1,
            self.search_requests_per_s,
            self.search_p50_ms,
            self.search_p99_ms,
            self.search_errors
        )?;
        writeln!(
            f,
            "\nFeed lag during the ingest ({} samples, pushed through one hub and searched \
             through the next{}): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, not found within \
             {} s: {}",
            self.lag_samples,
            if self.replicas == 1 {
                ": with one replica, the same hub"
            } else {
                ""
            },
            self.lag_p50_ms,
            self.lag_p99_ms,
            self.lag_max_ms,
            LAG_PATIENCE.as_secs(),
            self.lag_not_found
        )
    }
}

/// Runs the benchmark; the databases it made are dropped whatever the outcome.
pub async fn run(options: &ReplicaOptions) -> anyhow::Result<ReplicaReport> {
    anyhow::ensure!(
        (1..=16).contains(&options.replicas),
        "--replicas must be 1-16"
    );
    anyhow::ensure!(
        options.templates <= 1_000_000,
        "--templates must be at most 1000000 with --replicas"
    );
    anyhow::ensure!(
        Command::new("haproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success()),
        "haproxy is not on the PATH (Debian: apt-get install haproxy)"
    );
    let databases = Databases::create(&options.postgres_url, options.replicas).await?;
    let report = measure(options, &databases).await;
    databases.drop_all().await?;
    report
}

async fn measure(options: &ReplicaOptions, databases: &Databases) -> anyhow::Result<ReplicaReport> {
    let scratch = tempfile::tempdir()?;
    let key = scratch.path().join("token-keys");
    let tokens = TokenAuthority::load_or_create(&key)?;
    let settings = scratch.path().join("settings.toml");
    // One bench principal makes hundreds of requests a second: the budgets meant for
    // officers would measure the limiter.
    std::fs::write(
        &settings,
        format!(
            "[auth]\nkeys_dir = \"{}\"\n[limits]\nper_second = 1000000\n\
             burst = 1000000\nagency_per_second = 1000000\nagency_burst = 1000000\n\
             [database]\nmax_connections = {}\n",
            key.display(),
            databases.pool_size
        ),
    )?;
    let exe = std::env::current_exe()?;
    let database_flags = databases.flags()?;
    let hubs: Vec<Process> = (0..options.replicas)
        .map(|n| {
            let port = free_port()?;
            let data = scratch.path().join(format!("hub-{n}"));
            let mut args: Vec<String> = vec![
                "serve".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                data.display().to_string(),
                "--config".into(),
                settings.display().to_string(),
            ];
            args.extend(database_flags.iter().cloned());
            Process::spawn(
                Command::new(&exe).args(&args).env("RUST_LOG", "warn"),
                &scratch.path().join(format!("hub-{n}.log")),
                format!("http://127.0.0.1:{port}"),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let balancer = {
        let port = free_port()?;
        let servers: String = hubs
            .iter()
            .enumerate()
            .map(|(n, hub)| {
                format!(
                    "    server hub{n} {} check\n",
                    hub.base.trim_start_matches("http://")
                )
            })
            .collect();
        let config = scratch.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            HAPROXY_TEMPLATE
                .replace("{{LISTEN}}", &format!("127.0.0.1:{port}"))
                .replace("{{SERVERS}}", &servers),
        )?;
        Process::spawn(
            Command::new("haproxy").arg("-f").arg(&config).arg("-db"),
            &scratch.path().join("haproxy.log"),
            format!("http://127.0.0.1:{port}"),
        )?
    };
    let client = reqwest::Client::new();
    for process in hubs.iter().chain([&balancer]) {
        process.wait_ready(&client).await?;
    }
    let token = tokens.mint(
        &bench_caller()?,
        time::OffsetDateTime::now_utc(),
        time::Duration::hours(8),
    )?;
    let caller = Caller { client, token };

    // Bodies are made before the clock starts: the benchmark measures the hubs.
    let seed = options.seed;
    let total = options.templates;
    let records: Vec<(SourceSystem, usize, String)> =
        (0..total).map(|i| native_record(seed, i)).collect();

    let ingesting = Arc::new(AtomicBool::new(true));
    let sampler = {
        let caller = caller.clone();
        let bases: Vec<String> = hubs.iter().map(|hub| hub.base.clone()).collect();
        let ingesting = Arc::clone(&ingesting);
        let (samples, seed) = (options.lag_samples, seed);
        // Sample records come after the ingested ones: persons of their own, so the first
        // hit of a search of a sample's own face is that sample.
        tokio::spawn(async move { caller.lags(&bases, seed, total, samples, &ingesting).await })
    };
    let bar = Progress::new(total, "ingest");
    let started = Instant::now();
    let mut pushes = futures::stream::iter(records.iter().enumerate().map(|(i, record)| {
        let (caller, base) = (&caller, &balancer.base);
        async move {
            let id = source_id(record.0, i);
            let began = Instant::now();
            let pushed = caller.push(base, record.0, &id, &record.2).await;
            (pushed, began.elapsed())
        }
    }))
    .buffer_unordered(options.ingest_in_flight.max(1));
    let mut ingest_latencies = Vec::with_capacity(total);
    let mut ingest_errors = 0;
    while let Some((pushed, latency)) = pushes.next().await {
        ingest_errors += usize::from(pushed.is_err());
        ingest_latencies.push(latency);
        bar.inc(1);
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    drop(pushes);
    bar.finish();
    ingesting.store(false, Ordering::Relaxed);
    let mut lags = sampler
        .await
        .map_err(|e| anyhow::anyhow!("the lag sampler failed: {e}"))??;
    ingest_latencies.sort_unstable();

    let queries = options.queries.min(total).max(1);
    let step = (total / queries).max(1);
    let persons: Vec<usize> = (0..queries)
        .map(|q| records[(q * step) % total].1)
        .collect();
    let probes = probe_captures(seed, &persons, Trait::Face, 0x5E9C);
    let person_of: std::collections::HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, (system, person, _))| (source_id(*system, i), *person))
        .collect();
    let bar = Progress::new(probes.len(), "search");
    let started = Instant::now();
    let mut searches = futures::stream::iter(probes.iter().map(|(person, probe)| {
        let (caller, base) = (&caller, &balancer.base);
        async move {
            let began = Instant::now();
            let hits = caller.search(base, probe).await;
            (*person, hits, began.elapsed())
        }
    }))
    .buffer_unordered(options.http_concurrency.max(1));
    let mut search_latencies = Vec::with_capacity(probes.len());
    let (mut search_errors, mut first) = (0, 0);
    while let Some((person, hits, latency)) = searches.next().await {
        search_latencies.push(latency);
        bar.inc(1);
        match hits {
            // A stored record of the probe's person first: its id names the person.
            Ok(hits) => {
                first += usize::from(
                    hits.first()
                        .is_some_and(|id| person_of.get(id) == Some(&person)),
                );
            }
            Err(_) => search_errors += 1,
        }
    }
    let search_seconds = started.elapsed().as_secs_f64();
    drop(searches);
    bar.finish();
    search_latencies.sort_unstable();

    let lag_not_found = lags.iter().filter(|lag| lag.is_none()).count();
    let mut found: Vec<Duration> = lags.drain(..).flatten().collect();
    found.sort_unstable();
    Ok(ReplicaReport {
        replicas: options.replicas,
        templates: total,
        pool_size: databases.pool_size,
        cpu: cpu_description(),
        ingest_records_per_s: total as f64 / ingest_seconds.max(f64::EPSILON),
        ingest_p50_ms: percentile(&ingest_latencies, 0.50),
        ingest_p99_ms: percentile(&ingest_latencies, 0.99),
        ingest_errors,
        search_requests_per_s: probes.len() as f64 / search_seconds.max(f64::EPSILON),
        search_p50_ms: percentile(&search_latencies, 0.50),
        search_p99_ms: percentile(&search_latencies, 0.99),
        search_errors,
        search_recall_at_1: first as f64 / probes.len().max(1) as f64,
        lag_samples: found.len() + lag_not_found,
        lag_p50_ms: percentile(&found, 0.50),
        lag_p99_ms: percentile(&found, 0.99),
        lag_max_ms: found.last().map_or(0.0, |d| d.as_secs_f64() * 1_000.0),
        lag_not_found,
    })
}

/// The bench's HTTP client and token.
#[derive(Clone)]
struct Caller {
    client: reqwest::Client,
    token: String,
}

impl Caller {
    async fn push(
        &self,
        base: &str,
        system: SourceSystem,
        id: &str,
        body: &str,
    ) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{base}/v1/systems/{system}/records"))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "push of {id}: {}",
            response.status()
        );
        Ok(())
    }

    /// The source ids a 1:N search of `face` answers, best first.
    async fn search(&self, base: &str, face: &[f32]) -> anyhow::Result<Vec<String>> {
        let bytes: Vec<u8> = face.iter().flat_map(|v| v.to_le_bytes()).collect();
        let response = self
            .client
            .post(format!("{base}/v1/biometrics/search"))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({
                "purpose": "border_check", "algorithm": FACE,
                "data": STANDARD.encode(bytes), "limit": 3
            }))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "search: {}",
            response.status()
        );
        let answer: serde_json::Value = response.json().await?;
        Ok(answer["hits"]
            .as_array()
            .map(|hits| {
                hits.iter()
                    .filter_map(|hit| hit["record"]["source_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Until `samples` are taken and the ingest is over: pushes a record through one hub
    /// and searches its face through the next (round robin) until it comes first; how long
    /// that took after the push was acknowledged, or `None` past [`LAG_PATIENCE`].
    async fn lags(
        &self,
        bases: &[String],
        seed: u64,
        first_record: usize,
        samples: usize,
        ingesting: &AtomicBool,
    ) -> anyhow::Result<Vec<Option<Duration>>> {
        let mut lags = Vec::with_capacity(samples);
        // Every tenth record is a second record of the ninth's person: those are left out.
        let mut records = (first_record..).filter(|i| i % 10 != 9);
        let mut n = 0;
        while lags.len() < samples && ingesting.load(Ordering::Relaxed) {
            let Some(i) = records.next() else { break };
            n += 1;
            let (system, person, body) = native_record(seed, i);
            let id = source_id(system, i);
            let (writer, reader) = (&bases[n % bases.len()], &bases[(n + 1) % bases.len()]);
            self.push(writer, system, &id, &body).await?;
            let acknowledged = Instant::now();
            let face = capture(seed, i, person, Trait::Face);
            let lag = loop {
                let hits = self.search(reader, &face).await?;
                if hits.first() == Some(&id) {
                    break Some(acknowledged.elapsed());
                }
                if acknowledged.elapsed() > LAG_PATIENCE {
                    break None;
                }
                tokio::time::sleep(LAG_POLL).await;
            };
            lags.push(lag);
        }
        Ok(lags)
    }
}

/// A child process (a hub or haproxy) whose output goes to a log file; killed when dropped.
struct Process {
    base: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(command: &mut Command, log: &Path, base: String) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        Ok(Self {
            base,
            child,
            log: log.to_path_buf(),
        })
    }

    async fn wait_ready(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_PATIENCE;
        while Instant::now() < deadline {
            let ready = client.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "{} not ready within {} s; its log: {}",
            self.base,
            START_PATIENCE.as_secs(),
            self.log.display()
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free at the moment of asking.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// The four fresh databases of one run, on the server of the admin URL.
struct Databases {
    admin_url: String,
    /// (the hub's flag, the database's name).
    names: Vec<(&'static str, String)>,
    /// Connections each hub's four pools may hold (`database.max_connections`), so that
    /// every hub's pools fit the server's `max_connections`.
    pool_size: u32,
}

/// Connections of the server left to other clients (the bench's own, an operator's).
const SPARE_CONNECTIONS: i64 = 10;

impl Databases {
    async fn create(admin_url: &str, replicas: usize) -> anyhow::Result<Self> {
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        let (max, used): (i64, i64) = sqlx::query_as(
            "SELECT current_setting('max_connections')::bigint, \
             (SELECT count(*) FROM pg_stat_activity)",
        )
        .fetch_one(&mut admin)
        .await?;
        // Each hub holds four pools, a one-connection readiness probe per database, one
        // record-lock session per partition database, two connections for the budgets and
        // one listening for policy announcements.
        let hubs = i64::try_from(replicas)?;
        let pool_size = (max - used - SPARE_CONNECTIONS - 9 * hubs) / (4 * hubs);
        anyhow::ensure!(
            pool_size >= 2,
            "the server's max_connections ({max}, {used} in use) cannot hold {replicas} hubs' pools"
        );
        let pool_size = u32::try_from(pool_size.min(16))?;
        let run = format!("interop_hub_bench_{}", std::process::id());
        let mut names = Vec::new();
        for (flag, role) in [
            ("--civil-database-url", "civil"),
            ("--law-enforcement-database-url", "le"),
            ("--mid-database-url", "mid"),
            ("--control-database-url", "control"),
        ] {
            let name = format!("{run}_{role}");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await?;
            names.push((flag, name));
        }
        Ok(Self {
            admin_url: admin_url.to_owned(),
            names,
            pool_size,
        })
    }

    /// The hub's database flags, each with its URL: the admin URL with the database's name.
    fn flags(&self) -> anyhow::Result<Vec<String>> {
        let admin = reqwest::Url::parse(&self.admin_url)?;
        Ok(self
            .names
            .iter()
            .flat_map(|(flag, name)| {
                let mut url = admin.clone();
                url.set_path(&format!("/{name}"));
                [(*flag).to_owned(), url.to_string()]
            })
            .collect())
    }

    async fn drop_all(&self) -> anyhow::Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        for (_, name) in &self.names {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
        }
        Ok(())
    }
}
