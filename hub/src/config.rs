//! Runtime configuration: where the hub listens, where its data lives, what it accepts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use connectors::AlgorithmRegistry;
use serde::Deserialize;

/// Everything `serve` needs, resolved from flags, environment and the optional config file.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to a SQLite file under `data_dir`.
    pub civil_database_url: Option<String>,
    /// Kept in its own database: the law-enforcement partition is physically separate.
    pub law_enforcement_database_url: Option<String>,
    /// The multiple-identity detector's links, in a database of their own.
    pub mid_database_url: Option<String>,
    /// Access rules, access requests and the audit log.
    pub control_database_url: Option<String>,
    pub settings: Settings,
    /// Now, for deadlines, grants and audit entries: the system clock outside tests.
    pub clock: crate::clock::Clock,
}

/// The parts of the configuration that live in the TOML file (`--config`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Largest request body accepted, in bytes.
    #[serde(default = "Settings::default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub biometrics: AlgorithmRegistry,
    #[serde(default)]
    pub detection: DetectionSettings,
    #[serde(default)]
    pub search: SearchSettings,
    #[serde(default)]
    pub index: IndexingSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub identity_check: IdentityCheckSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub feed: FeedSettings,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub administration: AdministrationSettings,
}

/// How administrators change access rights.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdministrationSettings {
    /// A change that widens access to personal data waits for a second administrator, and
    /// nobody changes rules about themselves. Read at start only.
    #[serde(default = "AdministrationSettings::default_four_eyes")]
    pub four_eyes: bool,
}

impl AdministrationSettings {
    fn default_four_eyes() -> bool {
        true
    }
}

impl Default for AdministrationSettings {
    fn default() -> Self {
        Self {
            four_eyes: Self::default_four_eyes(),
        }
    }
}

/// Signed checkpoints of the audit chain, kept outside the databases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Sign checkpoints at all.
    #[serde(default = "AuditSettings::default_checkpoints")]
    pub checkpoints: bool,
    /// The checkpoint log (one JSON line per checkpoint); default:
    /// `audit-checkpoints.jsonl` in the data directory. Best on another disk or host.
    pub checkpoint_file: Option<PathBuf>,
    /// The Ed25519 key checkpoints are signed with (PKCS#8 PEM, its public half beside it as
    /// `.pub.pem`); default: `audit-checkpoint.key.pem` in the data directory, made on first
    /// run. Whoever holds it can sign a rewritten chain: keep it out of the database hosts'
    /// reach where possible.
    pub checkpoint_key_file: Option<PathBuf>,
    /// A checkpoint once the chain grew by this many entries …
    #[serde(default = "AuditSettings::default_checkpoint_every_entries")]
    pub checkpoint_every_entries: u32,
    /// … or this many seconds after the last one, if the chain grew at all.
    #[serde(default = "AuditSettings::default_checkpoint_interval_seconds")]
    pub checkpoint_interval_seconds: u32,
}

impl AuditSettings {
    fn default_checkpoints() -> bool {
        true
    }

    fn default_checkpoint_every_entries() -> u32 {
        1_000
    }

    fn default_checkpoint_interval_seconds() -> u32 {
        60
    }

    pub fn checkpoint_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.checkpoint_interval_seconds))
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=10_000_000).contains(&self.checkpoint_every_entries),
            "audit checkpoint_every_entries must be 1-10000000"
        );
        anyhow::ensure!(
            (1..=86_400).contains(&self.checkpoint_interval_seconds),
            "audit checkpoint_interval_seconds must be 1-86400"
        );
        Ok(())
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoints: Self::default_checkpoints(),
            checkpoint_file: None,
            checkpoint_key_file: None,
            checkpoint_every_entries: Self::default_checkpoint_every_entries(),
            checkpoint_interval_seconds: Self::default_checkpoint_interval_seconds(),
        }
    }
}

/// How a hub follows the partitions' change feeds, which keep the biometric indexes of every
/// hub on the same databases in step with the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    /// Milliseconds between reads of a feed when nothing wakes the reader sooner (a change
    /// this hub made wakes it at once).
    #[serde(default = "FeedSettings::default_poll_interval_ms")]
    pub poll_interval_ms: u32,
    /// Seconds a hub may go without having read a feed to its end before it reports not
    /// ready.
    #[serde(default = "FeedSettings::default_max_lag_seconds")]
    pub max_lag_seconds: u32,
    /// Hours a feed row is kept; a hub further behind than that mends its indexes from the
    /// store.
    #[serde(default = "FeedSettings::default_retention_hours")]
    pub retention_hours: u32,
    /// Seconds between passes that check every index against the store and mend it.
    #[serde(default = "FeedSettings::default_mend_interval_seconds")]
    pub mend_interval_seconds: u32,
    /// Milliseconds between reads of the policy version: how long a rule that widens access
    /// takes to reach this hub when another changed it. One that narrows access applies on
    /// the next request regardless (each read's audit transaction checks the version).
    #[serde(default = "FeedSettings::default_policy_poll_interval_ms")]
    pub policy_poll_interval_ms: u32,
    /// Whether the hub listens for the announcements other hubs' rule changes make
    /// (PostgreSQL `LISTEN`, on one connection of its own), and reads the version as soon as
    /// one arrives rather than at its next poll. Off, a widening change waits for the poll
    /// and the hub holds one connection fewer.
    #[serde(default = "FeedSettings::default_policy_announcements")]
    pub policy_announcements: bool,
}

impl FeedSettings {
    fn default_poll_interval_ms() -> u32 {
        200
    }

    fn default_max_lag_seconds() -> u32 {
        5
    }

    fn default_retention_hours() -> u32 {
        24
    }

    fn default_mend_interval_seconds() -> u32 {
        600
    }

    fn default_policy_poll_interval_ms() -> u32 {
        200
    }

    fn default_policy_announcements() -> bool {
        true
    }

    pub fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.poll_interval_ms))
    }

    pub fn max_lag(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.max_lag_seconds))
    }

    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.retention_hours) * 3_600)
    }

    pub fn mend_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.mend_interval_seconds))
    }

    pub fn policy_poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.policy_poll_interval_ms))
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (10..=60_000).contains(&self.poll_interval_ms),
            "feed poll_interval_ms must be 10-60000"
        );
        anyhow::ensure!(
            (1..=3_600).contains(&self.max_lag_seconds),
            "feed max_lag_seconds must be 1-3600"
        );
        anyhow::ensure!(
            (1..=8_760).contains(&self.retention_hours),
            "feed retention_hours must be 1-8760"
        );
        anyhow::ensure!(
            (10..=86_400).contains(&self.mend_interval_seconds),
            "feed mend_interval_seconds must be 10-86400"
        );
        anyhow::ensure!(
            (10..=3_600_000).contains(&self.policy_poll_interval_ms),
            "feed policy_poll_interval_ms must be 10-3600000"
        );
        Ok(())
    }
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: Self::default_poll_interval_ms(),
            max_lag_seconds: Self::default_max_lag_seconds(),
            retention_hours: Self::default_retention_hours(),
            mend_interval_seconds: Self::default_mend_interval_seconds(),
            policy_poll_interval_ms: Self::default_policy_poll_interval_ms(),
            policy_announcements: Self::default_policy_announcements(),
        }
    }
}

/// How the hub holds its databases, and what it needs of the disk under its data directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connections each of the four pools holds at most (PostgreSQL's `max_connections`
    /// must cover four pools per hub process, and the operators' own sessions).
    #[serde(default = "DatabaseSettings::default_max_connections")]
    pub max_connections: u32,
    /// Seconds a request waits for a connection before it is answered 503.
    #[serde(default = "DatabaseSettings::default_acquire_timeout_seconds")]
    pub acquire_timeout_seconds: u32,
    /// Seconds one statement may run (on SQLite: may wait for another process's write
    /// lock) before it is cancelled and its request answered 503.
    #[serde(default = "DatabaseSettings::default_statement_timeout_seconds")]
    pub statement_timeout_seconds: u32,
    /// Free space the file system of the data directory (SQLite, the biometric indexes)
    /// must keep, in MiB, for the hub to report ready.
    #[serde(default = "DatabaseSettings::default_min_free_disk_mib")]
    pub min_free_disk_mib: u64,
}

impl DatabaseSettings {
    fn default_max_connections() -> u32 {
        16
    }

    fn default_acquire_timeout_seconds() -> u32 {
        3
    }

    fn default_statement_timeout_seconds() -> u32 {
        5
    }

    fn default_min_free_disk_mib() -> u64 {
        64
    }

    /// What each pool is opened with.
    pub fn pool(&self) -> crate::store::PoolSettings {
        crate::store::PoolSettings {
            max_connections: self.max_connections,
            acquire_timeout: std::time::Duration::from_secs(u64::from(
                self.acquire_timeout_seconds,
            )),
            statement_timeout: std::time::Duration::from_secs(u64::from(
                self.statement_timeout_seconds,
            )),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: Self::default_max_connections(),
            acquire_timeout_seconds: Self::default_acquire_timeout_seconds(),
            statement_timeout_seconds: Self::default_statement_timeout_seconds(),
            min_free_disk_mib: Self::default_min_free_disk_mib(),
        }
    }
}

/// What one client can hold of the server: a connection slot and the time to send a
/// request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Seconds a client has to send a request's headers; then the connection is closed.
    #[serde(default = "ServerSettings::default_header_read_timeout_seconds")]
    pub header_read_timeout_seconds: u32,
    /// Seconds a client has to send a whole request body; then it is answered 408.
    #[serde(default = "ServerSettings::default_body_read_timeout_seconds")]
    pub body_read_timeout_seconds: u32,
    /// Connections open at once; one more is closed as soon as it is accepted.
    #[serde(default = "ServerSettings::default_max_connections")]
    pub max_connections: u32,
}

impl ServerSettings {
    fn default_header_read_timeout_seconds() -> u32 {
        10
    }

    fn default_body_read_timeout_seconds() -> u32 {
        30
    }

    fn default_max_connections() -> u32 {
        1_024
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: Self::default_header_read_timeout_seconds(),
            body_read_timeout_seconds: Self::default_body_read_timeout_seconds(),
            max_connections: Self::default_max_connections(),
        }
    }
}

/// Request budgets for the operations that hand out personal data (searches, biometric
/// searches, record reads), and the misuse alarm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Sustained requests per second one principal may make.
    #[serde(default = "LimitSettings::default_per_second")]
    pub per_second: u32,
    /// Requests one principal may make at once before the sustained rate applies.
    #[serde(default = "LimitSettings::default_burst")]
    pub burst: u32,
    /// Sustained requests per second all principals of one agency may make together.
    #[serde(default = "LimitSettings::default_agency_per_second")]
    pub agency_per_second: u32,
    #[serde(default = "LimitSettings::default_agency_burst")]
    pub agency_burst: u32,
    /// Searches answered with a hit flag one principal may make in a clock hour before an
    /// alarm is raised (one audit entry and one metric increment per principal and hour).
    #[serde(default = "LimitSettings::default_hit_flag_alarm_per_hour")]
    pub hit_flag_alarm_per_hour: u32,
}

impl LimitSettings {
    fn default_per_second() -> u32 {
        10
    }

    fn default_burst() -> u32 {
        20
    }

    fn default_agency_per_second() -> u32 {
        200
    }

    fn default_agency_burst() -> u32 {
        400
    }

    fn default_hit_flag_alarm_per_hour() -> u32 {
        100
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            per_second: Self::default_per_second(),
            burst: Self::default_burst(),
            agency_per_second: Self::default_agency_per_second(),
            agency_burst: Self::default_agency_burst(),
            hit_flag_alarm_per_hour: Self::default_hit_flag_alarm_per_hour(),
        }
    }
}

/// The longest a live capture may have been taken before an identity check searches by it.
pub const MAX_CAPTURE_AGE_SECONDS: u32 = 3_600;

/// Police identity checks (CIR Art. 20): a member state may run them only where its own
/// law provides for them, and only by biometrics captured live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityCheckSettings {
    /// The member states (ISO 3166-1 alpha-2) whose law enables identity checks; empty:
    /// no state may run one.
    #[serde(default)]
    pub member_states: Vec<String>,
    /// How old a capture may be, in seconds, and still count as live.
    #[serde(default = "IdentityCheckSettings::default_max_capture_age_seconds")]
    pub max_capture_age_seconds: u32,
}

impl IdentityCheckSettings {
    fn default_max_capture_age_seconds() -> u32 {
        300
    }
}

impl Default for IdentityCheckSettings {
    fn default() -> Self {
        Self {
            member_states: Vec::new(),
            max_capture_age_seconds: Self::default_max_capture_age_seconds(),
        }
    }
}

/// The longest sketch shortlist a setting may ask for.
pub const MAX_SKETCH_SHORTLIST: usize = 4_096;

/// How 1:N searches (the portal's and the detector's) find their neighbours.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    /// Members re-ranked by cosine after every member's sign sketch is scanned; 0: walk
    /// the HNSW graph instead, for indexes too large to scan (the scan is linear in the
    /// members, the walk is not).
    #[serde(default = "SearchSettings::default_sketch_shortlist")]
    pub sketch_shortlist: usize,
    /// HNSW's ef for 1:N searches that walk the graph (`sketch_shortlist = 0`), every
    /// algorithm alike; unset: each modality's own (256 for faces and fingers).
    #[serde(default)]
    pub expansion_search: Option<usize>,
}

impl SearchSettings {
    fn default_sketch_shortlist() -> usize {
        crate::biometrics::SKETCH_SHORTLIST
    }
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            sketch_shortlist: Self::default_sketch_shortlist(),
            expansion_search: None,
        }
    }
}

/// The longest insertion candidate list a setting may ask for.
pub const MAX_EXPANSION_ADD: usize = 1_024;

/// How the biometric indexes are built.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexingSettings {
    /// HNSW's candidate list while inserting a template: lower inserts faster and builds a
    /// graph whose walks (`search.sketch_shortlist = 0`) find fewer mates. Unset: built for
    /// the search method (`biometrics::IndexTuning::new`). Applies to insertions from the
    /// next start on.
    #[serde(default)]
    pub expansion_add: Option<usize>,
}

/// How callers authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The directory of token signing keys (`interop-hub keys`); default: `token-keys` in
    /// the data directory, given a first key on first run. Hub replicas share its keys: the
    /// same directory, or copies of its public halves on hubs that only verify.
    pub keys_dir: Option<PathBuf>,
    /// The longest a token may live (from its issue to its expiry), in hours: a longer one
    /// is refused, unless its holder may do nothing but operate the hub.
    #[serde(default = "AuthSettings::default_max_token_lifetime_hours")]
    pub max_token_lifetime_hours: u32,
    /// The longest a token may live, in days, whose holder may do nothing but operate the
    /// hub (a metrics scraper's credential).
    #[serde(default = "AuthSettings::default_max_operate_token_lifetime_days")]
    pub max_operate_token_lifetime_days: u32,
}

impl AuthSettings {
    fn default_max_token_lifetime_hours() -> u32 {
        12
    }

    fn default_max_operate_token_lifetime_days() -> u32 {
        366
    }

    pub fn max_token_lifetime(&self) -> time::Duration {
        time::Duration::hours(i64::from(self.max_token_lifetime_hours))
    }

    pub fn max_operate_token_lifetime(&self) -> time::Duration {
        time::Duration::days(i64::from(self.max_operate_token_lifetime_days))
    }

    /// How long a retired signing key verifies: until the longest-lived token it can have
    /// signed has expired (a minute more for a clock ahead).
    pub fn retired_keys_verify_for(&self) -> time::Duration {
        self.max_token_lifetime()
            .max(self.max_operate_token_lifetime())
            + time::Duration::minutes(1)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=8_784).contains(&self.max_token_lifetime_hours),
            "auth max_token_lifetime_hours must be 1-8784"
        );
        anyhow::ensure!(
            (1..=366).contains(&self.max_operate_token_lifetime_days),
            "auth max_operate_token_lifetime_days must be 1-366"
        );
        Ok(())
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            keys_dir: None,
            max_token_lifetime_hours: Self::default_max_token_lifetime_hours(),
            max_operate_token_lifetime_days: Self::default_max_operate_token_lifetime_days(),
        }
    }
}

/// The detector's default HNSW ef (see `DetectionSettings::expansion_search`).
pub const DETECTION_EXPANSION_SEARCH: u16 = 64;
/// The deepest detection search a setting may ask for.
pub const MAX_DETECTION_EXPANSION: u16 = 4_096;

/// How the multiple-identity detector works.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSettings {
    /// Hours a responsible authority has to verify a yellow link.
    #[serde(default = "DetectionSettings::default_deadline_hours")]
    pub verification_deadline_hours: u32,
    /// Nearest neighbours fetched from the index per template of a new record.
    #[serde(default = "DetectionSettings::default_neighbours")]
    pub neighbours_per_template: usize,
    /// HNSW's ef for the detector's 1:N searches of a record with two or more templates in
    /// an index that walks its graph (shortlist 0; an index with a shortlist scans its
    /// sketches, as for the portal): every template is searched, and a mate found by any of
    /// them is compared on all, so each walk can be shallower than a portal search of one
    /// probe.
    #[serde(default = "DetectionSettings::default_expansion_search")]
    pub expansion_search: usize,
    /// Seconds between sweeps that finish the detection of records whose ingest stopped
    /// after storing them (a database error, a lost connection): their links appear without
    /// waiting for a replay or a restart.
    #[serde(default = "DetectionSettings::default_sweep_interval_seconds")]
    pub sweep_interval_seconds: u32,
}

impl DetectionSettings {
    fn default_deadline_hours() -> u32 {
        12
    }

    fn default_neighbours() -> usize {
        10
    }

    fn default_expansion_search() -> usize {
        usize::from(DETECTION_EXPANSION_SEARCH)
    }

    fn default_sweep_interval_seconds() -> u32 {
        60
    }

    /// The ef the detector walks a graph at for a record with `templates` indexable
    /// templates: its own for two or more, each index's own (`None`) for a lone template,
    /// which has no other search to make up for a shallow one.
    pub fn expansion_for(&self, templates: usize) -> Option<usize> {
        (templates > 1).then_some(self.expansion_search)
    }
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            verification_deadline_hours: Self::default_deadline_hours(),
            neighbours_per_template: Self::default_neighbours(),
            expansion_search: Self::default_expansion_search(),
            sweep_interval_seconds: Self::default_sweep_interval_seconds(),
        }
    }
}

impl Settings {
    /// What the settings change in every biometric index.
    pub fn index_tuning(&self) -> crate::biometrics::IndexTuning {
        crate::biometrics::IndexTuning {
            expansion_search: self.search.expansion_search,
            ..crate::biometrics::IndexTuning::new(
                self.search.sketch_shortlist,
                self.index.expansion_add,
            )
        }
    }

    fn default_max_body_bytes() -> usize {
        1024 * 1024
    }

    /// Reads and checks a TOML settings file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let settings: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
        settings
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
        Ok(settings)
    }

    /// Refuses settings the hub could not run with, at start rather than mid-ingest.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.auth.validate()?;
        self.audit.validate()?;
        let registry = &self.biometrics;
        anyhow::ensure!(
            self.max_body_bytes >= 1024,
            "max_body_bytes must be at least 1024"
        );
        let mut ids = std::collections::BTreeSet::new();
        for algorithm in &registry.algorithms {
            anyhow::ensure!(
                ids.insert(&algorithm.id),
                "algorithm {} is registered twice",
                algorithm.id
            );
            anyhow::ensure!(
                (1..=65_536).contains(&algorithm.dimension),
                "algorithm {}: dimension must be 1-65536",
                algorithm.id
            );
            anyhow::ensure!(
                (-1.0..=1.0).contains(&algorithm.match_threshold),
                "algorithm {}: match_threshold is a similarity, -1 to 1",
                algorithm.id
            );
            anyhow::ensure!(
                algorithm.minimum_quality.is_none_or(|q| q <= 100),
                "algorithm {}: minimum_quality is 0-100",
                algorithm.id
            );
        }
        let minimum = registry.minimum_quality;
        anyhow::ensure!(
            [minimum.face, minimum.finger, minimum.iris]
                .iter()
                .all(|q| *q <= 100),
            "minimum_quality values are 0-100"
        );
        let detection = &self.detection;
        anyhow::ensure!(
            detection.verification_deadline_hours <= 24 * 366,
            "verification_deadline_hours must be at most a year"
        );
        anyhow::ensure!(
            (1..=1_000).contains(&detection.neighbours_per_template),
            "neighbours_per_template must be 1-1000"
        );
        anyhow::ensure!(
            (1..=usize::from(MAX_DETECTION_EXPANSION)).contains(&detection.expansion_search),
            "detection expansion_search must be 1-{MAX_DETECTION_EXPANSION}"
        );
        anyhow::ensure!(
            (1..=86_400).contains(&detection.sweep_interval_seconds),
            "detection sweep_interval_seconds must be 1-86400"
        );
        self.feed.validate()?;
        anyhow::ensure!(
            self.search
                .expansion_search
                .is_none_or(|ef| (1..=usize::from(MAX_DETECTION_EXPANSION)).contains(&ef)),
            "search expansion_search must be 1-{MAX_DETECTION_EXPANSION}"
        );
        anyhow::ensure!(
            self.search.sketch_shortlist <= MAX_SKETCH_SHORTLIST,
            "search sketch_shortlist must be 0-{MAX_SKETCH_SHORTLIST}"
        );
        anyhow::ensure!(
            self.index
                .expansion_add
                .is_none_or(|expansion| (1..=MAX_EXPANSION_ADD).contains(&expansion)),
            "index expansion_add must be 1-{MAX_EXPANSION_ADD}"
        );
        let identity_check = &self.identity_check;
        anyhow::ensure!(
            identity_check
                .member_states
                .iter()
                .all(|state| state.len() == 2 && state.chars().all(|c| c.is_ascii_uppercase())),
            "identity_check member_states are ISO 3166-1 alpha-2 codes such as DE"
        );
        anyhow::ensure!(
            (1..=MAX_CAPTURE_AGE_SECONDS).contains(&identity_check.max_capture_age_seconds),
            "identity_check max_capture_age_seconds must be 1-{MAX_CAPTURE_AGE_SECONDS}"
        );
        let limits = &self.limits;
        anyhow::ensure!(
            [
                limits.per_second,
                limits.burst,
                limits.agency_per_second,
                limits.agency_burst,
                limits.hit_flag_alarm_per_hour,
            ]
            .iter()
            .all(|value| *value >= 1),
            "limits are at least 1"
        );
        let server = &self.server;
        anyhow::ensure!(
            (1..=3_600).contains(&server.header_read_timeout_seconds)
                && (1..=3_600).contains(&server.body_read_timeout_seconds),
            "server timeouts are 1-3600 seconds"
        );
        anyhow::ensure!(
            (1..=1_000_000).contains(&server.max_connections),
            "server max_connections must be 1-1000000"
        );
        let database = &self.database;
        anyhow::ensure!(
            (1..=1_000).contains(&database.max_connections),
            "database max_connections must be 1-1000"
        );
        anyhow::ensure!(
            (1..=600).contains(&database.acquire_timeout_seconds)
                && (1..=3_600).contains(&database.statement_timeout_seconds),
            "database acquire_timeout_seconds must be 1-600 and statement_timeout_seconds 1-3600"
        );
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_body_bytes: Self::default_max_body_bytes(),
            biometrics: AlgorithmRegistry::default(),
            detection: DetectionSettings::default(),
            search: SearchSettings::default(),
            index: IndexingSettings::default(),
            auth: AuthSettings::default(),
            identity_check: IdentityCheckSettings::default(),
            limits: LimitSettings::default(),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            feed: FeedSettings::default(),
            audit: AuditSettings::default(),
            administration: AdministrationSettings::default(),
        }
    }
}

impl HubConfig {
    /// The configuration tests and first runs use: SQLite under `data_dir`, an OS-chosen port.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            civil_database_url: None,
            law_enforcement_database_url: None,
            mid_database_url: None,
            control_database_url: None,
            settings: Settings::default(),
            clock: crate::clock::Clock::System,
        }
    }

    pub fn civil_url(&self) -> String {
        self.civil_database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir, CIVIL_FILE))
    }

    pub fn law_enforcement_url(&self) -> String {
        self.law_enforcement_database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir, LAW_ENFORCEMENT_FILE))
    }

    pub fn mid_url(&self) -> String {
        self.mid_database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir, MID_FILE))
    }

    pub fn control_url(&self) -> String {
        self.control_database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir, CONTROL_FILE))
    }

    /// Creates the data directory, or restricts what in it is open to others, and creates
    /// the embedded default's SQLite files owner-only before SQLite opens them
    /// ([`crate::data_dir`]).
    pub fn prepare_data_dir(&self) -> std::io::Result<()> {
        crate::data_dir::seal(&self.data_dir)?;
        self.embedded_database_files()
            .iter()
            .try_for_each(|file| crate::data_dir::create_owner_only(file))
    }

    /// The SQLite files of the databases on the embedded default (those no URL names).
    fn embedded_database_files(&self) -> Vec<PathBuf> {
        [
            (&self.civil_database_url, CIVIL_FILE),
            (&self.law_enforcement_database_url, LAW_ENFORCEMENT_FILE),
            (&self.mid_database_url, MID_FILE),
            (&self.control_database_url, CONTROL_FILE),
        ]
        .into_iter()
        .filter(|(url, _)| url.is_none())
        .map(|(_, file)| self.data_dir.join(file))
        .collect()
    }

    /// The signed audit checkpoints' log.
    pub fn checkpoint_file(&self) -> PathBuf {
        self.settings
            .audit
            .checkpoint_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-checkpoints.jsonl"))
    }

    /// The key audit checkpoints are signed with.
    pub fn checkpoint_key_file(&self) -> PathBuf {
        self.settings
            .audit
            .checkpoint_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-checkpoint.key.pem"))
    }

    /// The directory of the keys tokens are signed with.
    pub fn keys_dir(&self) -> PathBuf {
        self.settings
            .auth
            .keys_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("token-keys"))
    }

    /// Where the biometric index files live: derived data, rebuilt from the stores.
    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }
}

/// The SQLite files of the embedded default, in the data directory.
const CIVIL_FILE: &str = "civil.sqlite";
const LAW_ENFORCEMENT_FILE: &str = "law-enforcement.sqlite";
const MID_FILE: &str = "mid.sqlite";
const CONTROL_FILE: &str = "control.sqlite";

fn sqlite_url(dir: &Path, file: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.join(file).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_settings_are_refused() {
        assert!(Settings::default().validate().is_ok());
        let mut duplicate = Settings::default();
        let first = duplicate.biometrics.algorithms[0].clone();
        duplicate.biometrics.algorithms.push(first);
        assert!(duplicate.validate().is_err());
        let mut zero = Settings::default();
        zero.biometrics.algorithms[0].dimension = 0;
        assert!(zero.validate().is_err());
        let mut threshold = Settings::default();
        threshold.biometrics.algorithms[0].match_threshold = 1.5;
        assert!(threshold.validate().is_err());
        let mut deadline = Settings::default();
        deadline.detection.verification_deadline_hours = u32::MAX;
        assert!(deadline.validate().is_err());
        let mut shallow = Settings::default();
        shallow.detection.expansion_search = 0;
        assert!(shallow.validate().is_err());
        shallow.detection.expansion_search = 1;
        assert!(shallow.validate().is_ok());
        let mut long = Settings::default();
        long.search.sketch_shortlist = MAX_SKETCH_SHORTLIST + 1;
        assert!(long.validate().is_err());
        long.search.sketch_shortlist = 0;
        assert!(long.validate().is_ok(), "0 walks the graph");
        let mut careless = Settings::default();
        careless.index.expansion_add = Some(0);
        assert!(careless.validate().is_err());
        careless.index.expansion_add = Some(MAX_EXPANSION_ADD + 1);
        assert!(careless.validate().is_err());
        careless.index.expansion_add = Some(1);
        assert!(careless.validate().is_ok());
    }

    #[test]
    fn the_index_tuning_is_read_from_the_file_and_defaults_to_the_hubs() {
        use crate::biometrics::IndexTuning;
        let scratch = tempfile::tempdir().expect("scratch directory");
        let path = scratch.path().join("hub.toml");
        let tuning_in = |text: &str| {
            std::fs::write(&path, text).expect("config file written");
            Settings::load(&path).map(|settings| settings.index_tuning())
        };
        assert_eq!(
            tuning_in("[detection]\nexpansion_search = 32\n").expect("valid"),
            IndexTuning::default()
        );
        assert_eq!(
            IndexTuning::default(),
            IndexTuning {
                sketch_shortlist: crate::biometrics::SKETCH_SHORTLIST,
                expansion_add: crate::biometrics::SCANNED_EXPANSION_ADD,
                expansion_search: None,
            },
            "a graph nothing walks is built cheaply"
        );
        assert_eq!(
            tuning_in("[search]\nsketch_shortlist = 0\n").expect("valid"),
            IndexTuning {
                sketch_shortlist: 0,
                expansion_add: crate::biometrics::EXPANSION_ADD,
                expansion_search: None,
            },
            "a walked graph is built for walking"
        );
        assert_eq!(
            tuning_in("[search]\nsketch_shortlist = 0\n[index]\nexpansion_add = 40\n")
                .expect("valid"),
            IndexTuning {
                sketch_shortlist: 0,
                expansion_add: 40,
                expansion_search: None,
            }
        );
        assert_eq!(
            tuning_in("[search]\nsketch_shortlist = 0\nexpansion_search = 96\n")
                .expect("valid")
                .expansion_search,
            Some(96),
            "the ef of a walking search is a setting"
        );
        assert!(
            tuning_in("[search]\nexpansion_search = 0\n").is_err(),
            "an ef of 0 finds nothing"
        );
        for unknown in ["[search]\nshortlist = 0\n", "[index]\nconnectivity = 8\n"] {
            assert!(tuning_in(unknown).is_err(), "unknown keys are refused");
        }
        assert!(
            tuning_in("[index]\nexpansion_add = 0\n").is_err(),
            "the file is validated"
        );
    }

    #[test]
    fn a_lone_template_is_searched_at_the_index_depth() {
        let detection = DetectionSettings::default();
        assert_eq!(detection.expansion_for(1), None);
        assert_eq!(detection.expansion_for(0), None);
        assert_eq!(
            detection.expansion_for(3),
            Some(usize::from(DETECTION_EXPANSION_SEARCH))
        );
    }
}
