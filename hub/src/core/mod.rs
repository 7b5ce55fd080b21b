//! The hub's transport-free core: services whose dependencies point one way, each holding
//! only the parts it uses — `records` (the write path), `portal` (search), `links` (queue
//! and verification), `administration`, `statistics` and `operations` — every operation
//! passing one gate (`guard`) that checks the caller's access and writes the audit log.

mod administration;
mod audit_log;
mod detection;
mod feed;
mod guard;
mod limits;
mod links;
mod operations;
mod parts;
mod portal;
mod records;
mod statistics;
mod views;

#[cfg(test)]
mod tests;

pub use administration::{
    AccessRequestDecision, AccessRequestFiling, AccessRequestKind, Administration, AuditPage,
    PolicyChange, PolicyChangeDecision, PolicyChangeStatus, PolicyChangeView, RevocationOrder,
    RuleChange, Simulation, SimulationAnswer, SystemDecision,
};
pub use feed::FeedLag;
pub use guard::Operation;
pub use links::{ConfirmationFile, LinkPage, Links, Verification};
pub use operations::{IndexStatus, Operations};
pub use portal::{
    BiographicQuery, BiometricHit, BiometricProbe, BiometricSearch, BiometricSearchAnswer, Capture,
    Fallback, FoundRecord, HitFlag, NEIGHBOURS_PER_WANTED_RECORD, Portal, Purpose, SearchAnswer,
    SearchRequest, SystemAnswer, SystemRecords,
};
pub use records::{IngestReport, LinkSummary, Records};
pub use statistics::Shown;
pub use statistics::{
    Dashboard, DataQuality, QualityIssue, StatRow, Statistics, StatisticsService, SystemQuality,
};
pub use views::{
    AccessRequestView, AuditEntryView, IngestOutcome, LinkDetails, LinkEnd, LinkEvent, LinkFilter,
    LinkView, RecordDetails, RecordView,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors::{IdentityRecord, UnknownSystem};

use crate::access::{Access, PolicyEngine, Principal, VerifiedToken};
use crate::biometrics::BiometricsError;
use crate::clock::Clock;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::metrics::{HubMetrics, IngestStep};
use crate::store::{ControlStore, IdentityStore, LinkStore, StoreError};

impl From<UnknownSystem> for HubError {
    fn from(_: UnknownSystem) -> Self {
        Self::UnknownSystem
    }
}

impl From<BiometricsError> for HubError {
    fn from(error: BiometricsError) -> Self {
        match error {
            BiometricsError::Store(e) => Self::from(e),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The member state responsible for a record, whose connector alone creates, changes and
/// deletes it: EES the state that created the file, VIS the issuing state, SIS the issuing
/// state, ECRIS-TCN the convicting state (each connector reads it into `member_state`);
/// ETIAS records carry none and belong to the central ETIAS connector, `EU`.
pub fn responsible_state(record: &IdentityRecord) -> &str {
    state_responsible_for(record.member_state.as_deref())
}

/// The responsible state of a record whose `member_state` is this (see
/// [`responsible_state`]).
fn state_responsible_for(member_state: Option<&str>) -> &str {
    member_state.unwrap_or(CENTRAL_SYSTEM_STATE)
}

/// The member state of Union bodies and central systems in tokens.
pub const CENTRAL_SYSTEM_STATE: &str = "EU";

/// The running hub: its services, over the stores, the biometric indexes (once complete)
/// and the policy they share.
#[derive(Debug)]
pub struct Hub {
    pub records: Records,
    pub portal: Portal,
    pub links: Links,
    pub administration: Administration,
    pub statistics: StatisticsService,
    pub operations: Operations,
    gate: Arc<guard::Gate>,
    feeds: Arc<feed::Feeds>,
    indexes: Arc<parts::Indexes>,
    metrics: Arc<HubMetrics>,
    settings: Arc<crate::config::Settings>,
    clock: Clock,
}

impl Hub {
    /// Opens (and migrates) the stores. The biometric indexes come with
    /// [`Records::prepare`].
    pub async fn open(config: &HubConfig) -> anyhow::Result<Self> {
        // Settings built in code (embedded, tests, bench) get the checks a file gets.
        config.settings.validate()?;
        config
            .prepare_data_dir()
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let pool = config.settings.database.pool();
        let clock = config.clock.clone();
        let settings = Arc::new(config.settings.clone());
        let control = ControlStore::open(&config.control_url(), &pool).await?;
        let metrics = Arc::new(HubMetrics::default());
        let audit = audit_log::AuditLog::spawn(&control, clock.clone(), Arc::clone(&metrics));
        let policy = Arc::new(
            PolicyEngine::open(control.clone(), clock.clone(), Arc::clone(&metrics))
                .await
                .map_err(|e| anyhow::anyhow!("cannot load the access policy: {e}"))?,
        );
        let stores = Arc::new(parts::Partitions::new(
            IdentityStore::open(&config.civil_url(), &pool).await?,
            IdentityStore::open(&config.law_enforcement_url(), &pool).await?,
        ));
        let links = LinkStore::open(&config.mid_url(), &pool).await?;
        let indexes = Arc::new(parts::Indexes::default());
        let marks = Arc::new(parts::DetectionMarks::spawn(&stores));
        let feeds = Arc::new(feed::Feeds::new(Arc::clone(&stores)));
        // Several hubs share a PostgreSQL control database, and so its budgets; a SQLite one
        // has this process alone.
        let shared_limits = (control.database().backend() == crate::store::Backend::Postgres)
            .then(|| (control.clone(), clock.clone()));
        let gate = Arc::new(guard::Gate::new(
            Arc::clone(&policy),
            &settings,
            audit,
            Arc::clone(&metrics),
            shared_limits,
        ));
        Ok(Self {
            records: Records {
                gate: Arc::clone(&gate),
                stores: Arc::clone(&stores),
                links: links.clone(),
                indexes: Arc::clone(&indexes),
                locks: parts::RecordLocks::new(Arc::clone(&stores)),
                marks: Arc::clone(&marks),
                feeds: Arc::clone(&feeds),
                detector: detection::Detector {
                    stores: Arc::clone(&stores),
                    links: links.clone(),
                    settings: Arc::clone(&settings),
                    clock: clock.clone(),
                    metrics: Arc::clone(&metrics),
                },
                settings: Arc::clone(&settings),
                clock: clock.clone(),
                metrics: Arc::clone(&metrics),
            },
            portal: Portal {
                gate: Arc::clone(&gate),
                stores: Arc::clone(&stores),
                links: links.clone(),
                indexes: Arc::clone(&indexes),
                settings: Arc::clone(&settings),
                clock: clock.clone(),
            },
            links: Links {
                gate: Arc::clone(&gate),
                links: links.clone(),
                clock: clock.clone(),
            },
            administration: Administration {
                gate: Arc::clone(&gate),
                four_eyes: settings.administration.four_eyes,
                policy,
                control: control.clone(),
                clock: clock.clone(),
            },
            statistics: StatisticsService {
                gate: Arc::clone(&gate),
                stores: Arc::clone(&stores),
                links: links.clone(),
                control: control.clone(),
                clock: clock.clone(),
            },
            operations: Operations {
                gate: Arc::clone(&gate),
                stores,
                links,
                control,
                indexes: Arc::clone(&indexes),
                marks,
                feeds: Arc::clone(&feeds),
                settings: Arc::clone(&settings),
                metrics: Arc::clone(&metrics),
                data_dir: config.data_dir.clone(),
            },
            gate,
            feeds,
            indexes,
            metrics,
            settings,
            clock,
        })
    }

    /// Now, by the hub's clock.
    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// Follows `partition`'s change feed for as long as the hub runs (a background task):
    /// what other hubs on the same databases change reaches this hub's indexes.
    pub async fn follow_feed(&self, partition: connectors::Partition) {
        self.feeds
            .follow(
                partition,
                &self.indexes,
                self.settings.feed.poll_interval(),
                &self.metrics,
            )
            .await;
    }

    /// Follows the store's policy version for as long as the hub runs (a background task,
    /// on PostgreSQL): a rule changed through another hub on the same control database
    /// reaches this one as soon as its announcement arrives, and at the latest within
    /// `feed.policy_poll_interval_ms` (an announcement can be missed; the poll cannot).
    pub async fn follow_policy(&self) {
        // A SQLite control database has this process as its only writer (the data
        // directory's lock): every change is made here and swapped in as it is made.
        if self.administration.control.database().backend() == crate::store::Backend::Sqlite {
            return;
        }
        let interval = self.settings.feed.policy_poll_interval();
        let announced = tokio::sync::Notify::new();
        let polling = async {
            loop {
                if let Err(e) = self.administration.policy.follow().await {
                    tracing::warn!(error = %e, "reading the policy version failed");
                }
                tokio::select! {
                    () = announced.notified() => {}
                    () = tokio::time::sleep(interval) => {}
                }
            }
        };
        if self.settings.feed.policy_announcements {
            let listening = listen_for_policy_changes(&self.administration.control, &announced);
            tokio::join!(polling, listening);
        } else {
            polling.await;
        }
    }

    /// The principal of a verified token, if the hub admits the token: living no longer
    /// than `auth.max_token_lifetime_hours` — or, if its holder may do nothing but operate
    /// the hub (decided now, so a right granted later ends the exception),
    /// `auth.max_operate_token_lifetime_days`.
    /// A revoked token is refused whatever its lifetime.
    pub async fn admit(&self, token: VerifiedToken) -> Result<VerifiedToken, HubError> {
        self.administration.policy.admit(&token).await?;
        let lifetime = token.expires_at - token.issued_at;
        let auth = &self.settings.auth;
        if lifetime > auth.max_token_lifetime()
            && (lifetime > auth.max_operate_token_lifetime()
                || !self.gate.access(&token.principal).await?.only_operates())
        {
            return Err(HubError::Unauthenticated(
                "the token lives longer than this hub admits",
            ));
        }
        Ok(token)
    }

    /// Records a request refused for want of a valid credential on `route` (a route
    /// template) for `reason`, in the audit log: bounded, and never waits.
    pub fn refused_authentication(&self, route: &str, reason: &str) {
        self.gate.refused_authentication(route, reason);
    }

    /// What `principal` may do under the policy in force at this very moment.
    pub async fn access(&self, principal: &Principal) -> Result<Arc<Access>, HubError> {
        self.gate.access(principal).await
    }
}

/// How long the announcement listener waits before it opens its connection again after the
/// server refused it.
const POLICY_LISTENER_RETRY: Duration = Duration::from_secs(1);
/// How long the announcement listener keeps one connection: a connection whose peer
/// vanished without a word (a partition, a failover behind a moved address) is never seen
/// to break, so the listener opens a new one this often regardless.
const POLICY_LISTENER_REFRESH: Duration = Duration::from_secs(300);

/// Wakes `announced` whenever the rules may have changed through another hub, for as long
/// as the hub runs; a connection that cannot be opened is tried again after a pause (the
/// version's poll goes on meanwhile).
async fn listen_for_policy_changes(control: &ControlStore, announced: &tokio::sync::Notify) {
    loop {
        match control.policy_announcements().await {
            Ok(Some(mut announcements)) => {
                // Listening from now on: whatever was announced before went unheard.
                announced.notify_one();
                let stopped = tokio::time::timeout(POLICY_LISTENER_REFRESH, async {
                    loop {
                        if let Err(e) = announcements.changed().await {
                            break e;
                        }
                        announced.notify_one();
                    }
                })
                .await;
                match stopped {
                    Ok(e) => {
                        tracing::warn!(error = %e, "listening for policy announcements failed");
                    }
                    // Dropped with its connection, whatever it was reading: nothing reuses it.
                    Err(_) => continue,
                }
            }
            Ok(None) => return,
            Err(e) => tracing::warn!(error = %e, "listening for policy announcements failed"),
        }
        tokio::time::sleep(POLICY_LISTENER_RETRY).await;
    }
}

/// Runs `work`, adding the time it took to `step`'s total.
async fn timed<T>(metrics: &HubMetrics, step: IngestStep, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let output = work.await;
    metrics.ingest_step(step, started.elapsed());
    output
}

/// What the audit log records of a result: `describe`'s words, or the refusal's code.
fn outcome_of<T>(result: &Result<T, HubError>, describe: impl FnOnce(&T) -> String) -> String {
    match result {
        Ok(value) => describe(value),
        Err(error) => format!("refused:{}", error.code()),
    }
}
