//! The command line: `serve` (the default), `migrate`, `import`, `generate`, `bench`,
//! `openapi`, `token`, `keys` and `audit verify`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::bench::BenchOptions;
use crate::generate::{GenerateOptions, generate_with_progress};
use crate::import::{ImportOptions, import};
use indicatif::{ProgressBar, ProgressStyle};
use interop_hub::config::{HubConfig, Settings};
use interop_hub::startup::{Application, shutdown_signal};
use interop_hub::store::{ControlStore, IdentityStore, LinkStore};

#[derive(Debug, Parser)]
#[command(
    name = "interop-hub",
    version,
    about = "Links the identities held by separate border and law-enforcement systems",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve`'s options, for when no command is given.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the REST API (the default when no command is given).
    Serve(ServeArgs),
    /// Create or upgrade the databases' schemas (both partitions, the links and the control
    /// database), then exit.
    Migrate(StoreArgs),
    /// Push an NDJSON file of native records (`{system, content_type, body}` per line) to a
    /// running hub, with progress and a closing summary.
    Import(ImportArgs),
    /// Write a synthetic population with known ground truth: `records.ndjson` (native
    /// records of all five systems, for `import`) and `truth.json`.
    Generate(GenerateArgs),
    /// Measure ingest with detection and 1:N search against a bare usearch index and an
    /// exact scan of the same data, then the search portal over HTTP, in one run; prints a
    /// markdown table.
    Bench(BenchArgs),
    /// Print the OpenAPI document generated from the code.
    Openapi,
    /// Sign a bearer token with the hub's key; the token is the last line printed.
    Token(TokenArgs),
    /// The token signing keys: list, rotate, remove. A running hub notices the change at
    /// its next request.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Every key: its id, whether it signs, and until when a retired one verifies.
    List(StoreArgs),
    /// Make a new key, which signs from now on. The one it replaces verifies the tokens it
    /// signed until they have all expired; keys past that are deleted.
    Rotate(StoreArgs),
    /// Delete a key: every token it signed is refused from the next request on.
    Remove(KeyRemoveArgs),
}

#[derive(Debug, Args)]
struct KeyRemoveArgs {
    /// The key's id, as `keys list` shows it.
    #[arg(value_parser = parse_key_id)]
    id: interop_hub::access::KeyId,
    #[command(flatten)]
    store: StoreArgs,
}

fn parse_key_id(text: &str) -> Result<interop_hub::access::KeyId, String> {
    interop_hub::access::KeyId::parse(text)
        .ok_or_else(|| format!("{text:?} is not a key id such as 20261208T015500Z-3fa2"))
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The agency, e.g. BPOL, BKA, SIRENE-IT.
    #[arg(long)]
    agency: String,
    /// ISO 3166-1 alpha-2 (or EU).
    #[arg(long)]
    member_state: String,
    /// A role (repeat for several): connector:<system>, border_guard, visa_authority,
    /// etias_unit, sirene, ecris_central_authority, police, le_designated, europol,
    /// supervisor, admin — or one an administrator made.
    #[arg(long = "role", required = true)]
    roles: Vec<interop_hub::access::Role>,
    /// Who within the agency; default: the operating-system user.
    #[arg(long)]
    subject: Option<String>,
    /// How long the token lives: 30m, 8h, 7d.
    #[arg(long, default_value = "8h", value_parser = interop_hub::access::parse_ttl)]
    ttl: time::Duration,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; exits non-zero and names the first broken entry.
    /// With `--checkpoints`, also against the signed checkpoints, which reveal a chain
    /// rewritten from some entry on: it names the first checkpoint interval that no longer
    /// matches.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
struct AuditVerifyArgs {
    /// A checkpoint log (`audit.checkpoint_file`; a copy kept elsewhere is best).
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// The public key the checkpoints are checked with; default: the public half beside
    /// `audit.checkpoint_key_file`.
    #[arg(long, requires = "checkpoints")]
    checkpoint_public_key: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Directory for the embedded SQLite databases (and, later, index files).
    #[arg(long, env = "INTEROP_HUB_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Civil partition (EES, ETIAS, VIS): `sqlite://…` or `postgres://…`; default: a SQLite file in the data directory.
    #[arg(long, env = "INTEROP_HUB_CIVIL_DATABASE_URL")]
    civil_database_url: Option<String>,
    /// Law-enforcement partition (SIS, ECRIS-TCN), a separate database; default: a SQLite file in the data directory.
    #[arg(long, env = "INTEROP_HUB_LAW_ENFORCEMENT_DATABASE_URL")]
    law_enforcement_database_url: Option<String>,
    /// The multiple-identity detector's links, a database of their own; default: a SQLite file in the data directory.
    #[arg(long, env = "INTEROP_HUB_MID_DATABASE_URL")]
    mid_database_url: Option<String>,
    /// Access rules, access requests and the audit log; default: a SQLite file in the data directory.
    #[arg(long, env = "INTEROP_HUB_CONTROL_DATABASE_URL")]
    control_database_url: Option<String>,
    /// TOML settings file: every section and its defaults are in the README (Configuration).
    #[arg(long, env = "INTEROP_HUB_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "INTEROP_HUB_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// NDJSON file, one `{system, content_type, body}` object per line.
    file: PathBuf,
    /// Base URL of the running hub.
    #[arg(
        long,
        env = "INTEROP_HUB_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Requests in flight at once. Lines are sent in file order; above 1, two versions of
    /// one record in the same file may arrive out of order and the older be refused.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// Bearer token with a `connector:<system>` role for each system in the file (see
    /// `token`). A connector writes only its own member state's records: for a file of
    /// several states give one token per state (repeat the flag, or separate with commas),
    /// and each record goes with its state's.
    #[arg(
        long,
        env = "INTEROP_HUB_TOKEN",
        hide_env_values = true,
        required = true,
        value_delimiter = ','
    )]
    token: Vec<String>,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Biological persons; each appears in one to four systems, some with a fraudulent
    /// second identity or a look-alike.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    persons: u64,
    /// Directory to write `records.ndjson` and `truth.json` into.
    #[arg(long)]
    out: PathBuf,
    /// The same seed gives the same population.
    #[arg(long, default_value_t = crate::generate::DEFAULT_SEED)]
    seed: u64,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Records to ingest, each with a 512-d face (the searched templates) and two fingers.
    #[arg(long, required_unless_present = "timing", value_parser = clap::value_parser!(u64).range(crate::bench::MIN_TEMPLATES as u64..))]
    templates: Option<u64>,
    /// Instead of the search benchmark, the timing benchmark: whether what a caller may
    /// not see shows in how long its answers take (pairs of requests answered alike,
    /// interleaved; median differences with 99% intervals and KS tests).
    #[arg(long)]
    timing: bool,
    /// Instead of the search benchmark, this many hub processes on four fresh PostgreSQL
    /// databases behind haproxy (`deploy/haproxy.cfg.in`), measured through the balancer:
    /// ingest and 1:N search throughput, and the feed lag (a record pushed through one hub,
    /// searched through the next). Needs haproxy on the PATH.
    #[arg(long, requires = "templates", conflicts_with = "timing", value_parser = clap::value_parser!(u16).range(1..=16))]
    replicas: Option<u16>,
    /// With `--replicas`: a PostgreSQL URL of a role that may create databases; the run's
    /// four are made there and dropped afterwards.
    #[arg(
        long,
        env = "INTEROP_HUB_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// With `--replicas`: feed-lag samples, taken while the ingest runs.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    lag_samples: u64,
    /// Requests per class of each timing pair (at least 5,000).
    #[arg(long, default_value_t = crate::timing::MIN_REQUESTS as u64, value_parser = clap::value_parser!(u64).range(crate::timing::MIN_REQUESTS as u64..))]
    requests: u64,
    /// 1:N probes (new captures of stored persons' faces).
    #[arg(long, default_value_t = 1_000)]
    queries: usize,
    /// Threads of the bare and exact baselines, and hub searches in flight in the first
    /// search pass; default: the number of cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Also write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value_t = crate::generate::DEFAULT_SEED)]
    seed: u64,
    /// Keep the benchmark hub's data here instead of a temporary directory (missing or empty).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Clients in flight at once in the HTTP load test of the search portal.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    http_concurrency: u16,
    /// Records in flight at once while ingesting (connectors push concurrently; each
    /// ingest also waits on its commits).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    ingest_in_flight: u16,
    /// HNSW's ef for the bare ingest's searches, and the hub's setting
    /// `detection.expansion_search` (used where an index walks its graph; the hub's scan
    /// their sketches unless `--sketch-shortlist` is 0).
    #[arg(long, default_value_t = interop_hub::config::DETECTION_EXPANSION_SEARCH, value_parser = clap::value_parser!(u16).range(1..=i64::from(interop_hub::config::MAX_DETECTION_EXPANSION)))]
    detection_expansion: u16,
    /// HNSW's candidate list while inserting, in the hub's indexes (the setting
    /// `index.expansion_add`) and the bare ones; default: each index's for how it is
    /// searched (the hub's scan sketches: 16, or with `--sketch-shortlist 0` walk their
    /// graphs: 128; the bare ones walk their graphs: 128).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=interop_hub::config::MAX_EXPANSION_ADD as i64))]
    expansion_add: Option<u16>,
    /// Also write the face vectors and probes, with their persons, into this directory (raw
    /// little-endian files, see `bench/README.md`) for other libraries' baselines.
    #[arg(long)]
    export_vectors: Option<PathBuf>,
    /// Leave out the quantisation table (the bare index rebuilt at every other storage);
    /// at 100k it is the longest phase of the run.
    #[arg(long)]
    skip_quantisation: bool,
    /// Also build the connectivity table (the bare index rebuilt at HNSW connectivities 8,
    /// 24 and 32): about 20 minutes more at 100k.
    #[arg(long)]
    connectivity_table: bool,
    /// The hub's setting `search.sketch_shortlist`: members a sketch search re-ranks; 0
    /// makes every hub search and the detector walk the graphs instead (which are then
    /// built at ef_add 128 unless `--expansion-add` says otherwise).
    #[arg(long, default_value_t = interop_hub::biometrics::SKETCH_SHORTLIST as u16, value_parser = clap::value_parser!(u16).range(0..=interop_hub::config::MAX_SKETCH_SHORTLIST as i64))]
    sketch_shortlist: u16,
}

impl StoreArgs {
    fn into_config(self, listen: SocketAddr) -> anyhow::Result<HubConfig> {
        let settings = match &self.config {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        Ok(HubConfig {
            listen,
            data_dir: self.data_dir,
            civil_database_url: self.civil_database_url,
            law_enforcement_database_url: self.law_enforcement_database_url,
            mid_database_url: self.mid_database_url,
            control_database_url: self.control_database_url,
            settings,
            clock: interop_hub::clock::Clock::System,
        })
    }
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        let telemetry = interop_hub::telemetry::init();
        let command = self.command.unwrap_or(Command::Serve(self.serve));
        let code = match command.run().await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        };
        telemetry.shutdown().await;
        code
    }
}

impl Command {
    async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Serve(args) => {
                let config = args.store.into_config(args.listen)?;
                let app = Application::build(config).await?;
                tracing::info!(address = %app.local_addr()?, "interop-hub serving");
                app.run_until(shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Self::Migrate(args) => {
                let config = args.into_config(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                config.prepare_data_dir()?;
                let pool = config.settings.database.pool();
                for url in [config.civil_url(), config.law_enforcement_url()] {
                    IdentityStore::open(&url, &pool)
                        .await?
                        .database()
                        .close()
                        .await;
                }
                LinkStore::open(&config.mid_url(), &pool)
                    .await?
                    .database()
                    .close()
                    .await;
                ControlStore::open(&config.control_url(), &pool)
                    .await?
                    .database()
                    .close()
                    .await;
                println!("both partitions, the links and the control database are migrated");
                Ok(ExitCode::SUCCESS)
            }
            Self::Import(args) => {
                let options = ImportOptions {
                    server: args.server,
                    concurrency: usize::from(args.concurrency),
                    tokens: args.token,
                };
                let summary = import(&args.file, &options).await?;
                print!("{summary}");
                Ok(if summary.failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Self::Generate(args) => {
                let options = GenerateOptions {
                    persons: args.persons,
                    seed: args.seed,
                    out: args.out,
                };
                let progress = ProgressBar::new(0).with_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} records  eta {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                let summary = generate_with_progress(&options, &mut |written, total| {
                    progress.set_length(total);
                    progress.set_position(written);
                })?;
                progress.finish_and_clear();
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
            Self::Bench(args) if args.timing => {
                let report = crate::timing::run(&crate::timing::TimingOptions {
                    requests: usize::try_from(args.requests)?,
                    seed: args.seed,
                })
                .await?;
                print!("{report}");
                if let Some(path) = args.json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Self::Bench(args) if args.replicas.is_some() => {
                let options = crate::replicas::ReplicaOptions {
                    replicas: usize::from(args.replicas.unwrap_or(1)),
                    templates: usize::try_from(args.templates.unwrap_or_default())?,
                    queries: args.queries,
                    seed: args.seed,
                    postgres_url: args.postgres_url,
                    http_concurrency: usize::from(args.http_concurrency),
                    ingest_in_flight: usize::from(args.ingest_in_flight),
                    lag_samples: usize::try_from(args.lag_samples)?,
                };
                let report = crate::replicas::run(&options).await?;
                print!("{report}");
                if let Some(path) = args.json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Self::Bench(args) => {
                let threads = args.threads.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                });
                let options = BenchOptions {
                    templates: usize::try_from(args.templates.unwrap_or_default())?,
                    queries: args.queries,
                    threads,
                    seed: args.seed,
                    data_dir: args.data_dir,
                    http_concurrency: usize::from(args.http_concurrency),
                    export_vectors: args.export_vectors,
                    ingest_in_flight: usize::from(args.ingest_in_flight),
                    detection_expansion: usize::from(args.detection_expansion),
                    expansion_add: args.expansion_add.map(usize::from),
                    sketch_shortlist: usize::from(args.sketch_shortlist),
                    quantisation_table: !args.skip_quantisation,
                    connectivity_table: args.connectivity_table,
                };
                let report = crate::bench::run(&options).await?;
                print!("{report}");
                if let Some(path) = args.json {
                    std::fs::write(&path, serde_json::to_string_pretty(&[&report])? + "\n")?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Self::Openapi => {
                print!("{}", interop_hub::http::openapi_json());
                Ok(ExitCode::SUCCESS)
            }
            Self::Token(args) => {
                let config = args
                    .store
                    .into_config(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                let subject = args
                    .subject
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "operator".to_owned());
                let principal = interop_hub::access::Principal::new(
                    subject,
                    args.agency,
                    args.member_state,
                    args.roles,
                )
                .map_err(|e| anyhow::anyhow!(e))?;
                let authority =
                    interop_hub::access::TokenAuthority::load_or_create(&config.keys_dir())?;
                let now = time::OffsetDateTime::now_utc();
                let token = authority.mint(&principal, now, args.ttl)?;
                let id = interop_hub::access::unverified_token_id(&token)
                    .map(|id| id.to_string())
                    .unwrap_or_default();
                eprintln!(
                    "token {id} for {} of {} ({}), expires {}",
                    principal.subject,
                    principal.agency,
                    principal.member_state,
                    now + args.ttl
                );
                println!("{token}");
                Ok(ExitCode::SUCCESS)
            }
            Self::Keys(command) => keys(command),
            Self::Audit(AuditCommand::Verify(args)) => {
                let config = args
                    .store
                    .into_config(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                let checkpoints = match &args.checkpoints {
                    Some(log) => {
                        let public_key = args.checkpoint_public_key.clone().unwrap_or_else(|| {
                            interop_hub::audit_checkpoints::public_key_path(
                                &config.checkpoint_key_file(),
                            )
                        });
                        interop_hub::audit_checkpoints::read_verified(log, &public_key)?
                            .iter()
                            .map(interop_hub::audit_checkpoints::Checkpoint::end)
                            .collect()
                    }
                    None => Vec::new(),
                };
                let store =
                    ControlStore::open(&config.control_url(), &config.settings.database.pool())
                        .await?;
                let verdict = store.verify_audit_chain_against(checkpoints).await;
                store.database().close().await;
                match verdict? {
                    Ok(verified) if args.checkpoints.is_none() => {
                        println!("audit log intact: {} entries", verified.entries);
                        Ok(ExitCode::SUCCESS)
                    }
                    Ok(verified) => {
                        // The hub signs a checkpoint within its interval of an entry (and
                        // looks once a second): a longer unvouched tail lost its checkpoints.
                        let interval = i64::from(config.settings.audit.checkpoint_interval_seconds);
                        let allowed = time::Duration::seconds(interval + 60);
                        match verified.unvouched {
                            Some((first, last, span)) if span > allowed => {
                                println!(
                                    "audit log not vouched for: entries {first}-{last} span \
                                     {span}, longer than the hub goes without a checkpoint \
                                     ({interval} s), yet no signed checkpoint covers them: the \
                                     checkpoint log was cut short, or the hub stopped before \
                                     signing them; the {} checkpoint(s) before them match",
                                    verified.checkpoints
                                );
                                Ok(ExitCode::FAILURE)
                            }
                            unvouched => {
                                let tail =
                                    unvouched.map_or_else(String::new, |(first, last, _)| {
                                        format!(
                                            "; entries {first}-{last} await the next checkpoint"
                                        )
                                    });
                                println!(
                                    "audit log intact: {} entries, {} signed checkpoint(s) \
                                     match{tail}",
                                    verified.entries, verified.checkpoints
                                );
                                Ok(ExitCode::SUCCESS)
                            }
                        }
                    }
                    Err(broken) => {
                        println!("audit log broken: {broken}");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
        }
    }
}

/// `interop-hub keys …`.
fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = match &command {
        KeysCommand::List(store) | KeysCommand::Rotate(store) => {
            store.clone().into_config(local)?
        }
        KeysCommand::Remove(args) => args.store.clone().into_config(local)?,
    };
    let keys = interop_hub::access::KeyDirectory::new(&config.keys_dir());
    let verify_for = config.settings.auth.retired_keys_verify_for();
    let now = time::OffsetDateTime::now_utc();
    match command {
        KeysCommand::List(_) => {
            for key in keys.states(verify_for)? {
                let role = match (key.signing, key.verifies_until) {
                    _ if key.removed => "removed: verifies nothing".to_owned(),
                    (true, _) => "signs".to_owned(),
                    (false, Some(until)) if until <= now => "expired".to_owned(),
                    (false, Some(until)) => format!("verifies until {until}"),
                    (false, None) => {
                        "verifies (newest, public half only: nothing signs here)".to_owned()
                    }
                };
                let half = if key.private {
                    "private+public"
                } else {
                    "public"
                };
                println!("{}\t{half}\t{role}", key.id);
            }
        }
        KeysCommand::Rotate(_) => {
            let id = keys.rotate(now, verify_for)?;
            eprintln!(
                "new signing key {id} in {}; the previous one verifies for {verify_for} more",
                keys.path().display()
            );
            println!("{id}");
        }
        KeysCommand::Remove(args) => {
            keys.remove(&args.id)?;
            eprintln!("removed key {}: the tokens it signed are refused", args.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
