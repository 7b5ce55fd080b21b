//! The hub's transport-free core: every operation the REST layer and the CLI expose, each
//! checked against the caller's access and recorded in the audit log.

mod administration;
mod guard;
mod limits;
mod portal;
mod statistics;
mod views;

pub use administration::{
    AccessRequestDecision, AccessRequestFiling, AccessRequestKind, AuditPage, PolicyChange,
    Simulation, SimulationAnswer, SystemDecision,
};
pub use guard::Operation;
pub use portal::{
    BiographicQuery, BiometricProbe, Capture, Fallback, FoundRecord, HitFlag, Purpose,
    SearchAnswer, SearchRequest, SystemAnswer, SystemRecords,
};
pub use statistics::Shown;
pub use statistics::{Dashboard, DataQuality, QualityIssue, StatRow, Statistics, SystemQuality};
pub use views::{
    AccessRequestView, AuditEntryView, IngestOutcome, LinkDetails, LinkEnd, LinkEvent, LinkFilter,
    LinkView, RecordDetails, RecordView,
};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use connectors::{IdentityRecord, NativeFormat, Partition, RecordRef, SourceSystem, UnknownSystem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use utoipa::ToSchema;

use crate::access::{Access, HubDuty, PolicyEngine, Principal};
use crate::batch::{BatchWriter, Batcher};
use crate::biometrics::{Biometrics, BiometricsError};
use crate::clock::Clock;
use crate::config::{HubConfig, Settings};
use crate::error::HubError;
use crate::matching::{BlockingKeys, LinkColour, LinkRule};
use crate::metrics::{HubMetrics, IngestStep, StepTotal};
use crate::store::{
    AuditAppender, AuditEvent, ControlStore, IdentityStore, IngestCountKey, LinkQuery, LinkStore,
    NewLink, StoreError, StoredLink, StoredRecord, UpsertOutcome, UpsertRefusal, VerifyRefusal,
};
use portal::{purpose_admits, purpose_admits_born, purpose_needs_records};

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

/// A link as the ingest response lists it: seen from the ingested record, with the other
/// end's id only where the caller may read that end's system.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LinkSummary {
    pub id: String,
    pub colour: LinkColour,
    pub rule: LinkRule,
    /// The record at the other end.
    pub other: LinkEnd,
    /// The authority responsible for verifying the link.
    pub authority: String,
}

impl LinkSummary {
    fn seen_from(view: &LinkView, record: &RecordRef) -> Self {
        Self {
            id: view.id.clone(),
            colour: view.colour,
            rule: view.rule,
            other: view.other_than(record).clone(),
            authority: view.authority.clone(),
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

/// The record at the other end of `link` from `record`.
fn other_end<'a>(link: &'a StoredLink, record: &RecordRef) -> &'a RecordRef {
    let [a, b] = &link.records;
    if a == record { b } else { a }
}

/// What an ingest did, with the record as now stored and its links.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestReport {
    pub outcome: IngestOutcome,
    /// The record's links to records of other systems after this ingest.
    pub links: Vec<LinkSummary>,
    /// How many of the record's templates are in the biometric index; the others are
    /// below their minimum quality (see `findings`).
    pub indexed_templates: usize,
    #[serde(flatten)]
    pub stored: RecordDetails,
}

/// A link's identity confirmation file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfirmationFile {
    #[serde(flatten)]
    pub link: LinkDetails,
    /// Yellow and past its deadline.
    pub overdue: bool,
    pub history: Vec<LinkEvent>,
}

/// One page of links.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkPage {
    pub links: Vec<LinkDetails>,
    /// Links matching the filters, over all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A verifier's decision on a link.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// white (same person, legitimate), green (different persons) or red (identity fraud).
    pub colour: LinkColour,
    /// Why: required, and kept in the link's history with the verifier's name.
    pub justification: String,
}

/// A 1:N search: one probe template against every index of its algorithm.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BiometricSearch {
    /// Why the caller searches; the purpose's rules apply to the answer.
    pub purpose: Purpose,
    /// When and by which device the probe was captured: required for an identity check,
    /// which searches by live biometrics only.
    pub capture: Option<Capture>,
    /// A registered algorithm id; the probe is compared with that algorithm's templates only.
    pub algorithm: String,
    /// The probe: base64 of little-endian float32 values, the algorithm's dimension.
    pub data: String,
    /// Records to return at most, 1–100 (default 10).
    pub limit: Option<usize>,
}

/// A record found by a 1:N search.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BiometricHit {
    pub record: RecordRef,
    /// The best similarity (1 − cosine distance) among the record's templates.
    pub similarity: f32,
    /// At or above the algorithm's match threshold.
    pub matched: bool,
}

/// The records a 1:N search found, best first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BiometricSearchAnswer {
    pub hits: Vec<BiometricHit>,
}

/// One index and how it compares with the store.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IndexStatus {
    pub partition: Partition,
    pub algorithm: String,
    /// Templates in the index.
    pub indexed: usize,
    /// Templates of the algorithm at or above minimum quality in the store.
    pub eligible: usize,
    /// Members a search re-ranks by cosine after scanning every member's sign sketch; 0:
    /// searches walk the HNSW graph (the setting `search.sketch_shortlist`).
    pub sketch_shortlist: usize,
    /// HNSW's candidate list while inserting (the setting `index.expansion_add`, by default
    /// 128 for a graph that searches walk and 16 for one they do not).
    pub expansion_add: usize,
    /// The shortest candidate list any template in the index was inserted with: how well
    /// its graph is built (0: unknown, saved by an earlier version). An index that walks its
    /// graph is rebuilt at start when this is below `expansion_add`.
    pub graph_expansion_add: usize,
}

/// Stripes of the per-record lock: enough that unrelated records rarely wait on each other's
/// stripe with many ingests in flight (fewer stripes made ingests wait: bench/README.md).
const RECORD_LOCK_STRIPES: usize = 1024;

/// The running hub: one store per partition, the links, and the biometric indexes once
/// they are complete.
#[derive(Debug)]
pub struct Hub {
    civil: IdentityStore,
    law_enforcement: IdentityStore,
    links: LinkStore,
    control: ControlStore,
    policy: PolicyEngine,
    settings: Settings,
    clock: Clock,
    biometrics: OnceCell<Biometrics>,
    record_locks: Vec<tokio::sync::Mutex<()>>,
    /// Audit entries are chained, so one task appends them: whatever queued up while it
    /// wrote goes into the next transaction together (group commit).
    audit_queue: Batcher<PendingAudit>,
    /// Per partition, like the audit log: marks of finished detections, written together.
    detected_marks: BTreeMap<Partition, Batcher<PendingMark>>,
    metrics: Arc<HubMetrics>,
    budgets: limits::Budgets,
    /// Where the SQLite files and the index files live: readiness needs room there.
    data_dir: std::path::PathBuf,
}

/// Says when an audit entry is written, or why it could not be.
type AuditWritten = tokio::sync::oneshot::Receiver<Result<(), HubError>>;

/// The longest `/readyz` waits for the databases' answers: a probe that hangs on a database
/// out of reach would tell a load balancer nothing.
const READINESS_DEADLINE: std::time::Duration = std::time::Duration::from_millis(800);

impl Hub {
    /// Opens (and migrates) the stores. The biometric indexes come with [`Hub::prepare`].
    pub async fn open(config: &HubConfig) -> anyhow::Result<Self> {
        // Settings built in code (embedded, tests, bench) get the checks a file gets.
        config.settings.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let pool = config.settings.database.pool();
        let control = ControlStore::open(&config.control_url(), &pool).await?;
        let metrics = Arc::new(HubMetrics::default());
        let audit_queue = Batcher::spawn(AuditWriter {
            appender: control.audit_appender(),
            metrics: Arc::clone(&metrics),
        });
        let policy =
            PolicyEngine::open(control.clone(), config.clock.clone(), Arc::clone(&metrics))
                .await
                .map_err(|e| anyhow::anyhow!("cannot load the access policy: {e}"))?;
        let civil = IdentityStore::open(&config.civil_url(), &pool).await?;
        let law_enforcement = IdentityStore::open(&config.law_enforcement_url(), &pool).await?;
        let detected_marks = [
            (
                Partition::Civil,
                Batcher::spawn(MarkWriter {
                    store: civil.clone(),
                }),
            ),
            (
                Partition::LawEnforcement,
                Batcher::spawn(MarkWriter {
                    store: law_enforcement.clone(),
                }),
            ),
        ]
        .into_iter()
        .collect();
        Ok(Self {
            civil,
            law_enforcement,
            links: LinkStore::open(&config.mid_url(), &pool).await?,
            control,
            policy,
            settings: config.settings.clone(),
            clock: config.clock.clone(),
            biometrics: OnceCell::new(),
            record_locks: (0..RECORD_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            audit_queue,
            detected_marks,
            metrics,
            budgets: limits::Budgets::new(&config.settings.limits),
            data_dir: config.data_dir.clone(),
        })
    }

    /// Now, by the hub's clock.
    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// The hub's metrics, for the HTTP layer to add its own.
    pub fn metrics(&self) -> &HubMetrics {
        &self.metrics
    }

    /// The Prometheus exposition, for operators; index sizes are read at the scrape.
    pub async fn metrics_text(&self, principal: &Principal) -> Result<String, HubError> {
        self.access(principal)
            .await?
            .require_duty(HubDuty::Operate)?;
        if let Some(biometrics) = self.biometrics.get() {
            for partition in [Partition::Civil, Partition::LawEnforcement] {
                for algorithm in &self.settings.biometrics.algorithms {
                    self.metrics.index_size(
                        partition.as_str(),
                        &algorithm.id,
                        biometrics.len(partition, &algorithm.id),
                    );
                }
            }
        }
        Ok(self.metrics.encode())
    }

    /// What `principal` may do under the policy in force at this very moment.
    pub async fn access(&self, principal: &Principal) -> Result<Arc<Access>, HubError> {
        self.policy.access(principal).await
    }

    /// Hands an audit entry (from [`Hub::audit_entry`]) to the writer and waits until it is
    /// written. Callers withhold their answer until then, and when it fails: nothing is
    /// shared that was not logged.
    async fn log_audit(
        &self,
        (entry, written): (PendingAudit, AuditWritten),
    ) -> Result<(), HubError> {
        self.audit_queue
            .send(entry)
            .await
            .map_err(|_| HubError::Unavailable)?;
        written.await.map_err(|_| HubError::Unavailable)?
    }

    /// An audit entry for the writer, and the receiver that says when it is written.
    fn audit_entry(
        &self,
        principal: &Principal,
        purpose: &str,
        action: &str,
        query: String,
        outcome: String,
        counts: Vec<IngestCountKey>,
    ) -> (PendingAudit, AuditWritten) {
        let event = AuditEvent {
            subject: principal.subject.clone(),
            agency: principal.agency.clone(),
            member_state: principal.member_state.clone(),
            purpose: purpose.to_owned(),
            action: action.to_owned(),
            query,
            outcome,
        };
        let (done, written) = tokio::sync::oneshot::channel();
        let entry = PendingAudit {
            event,
            at: self.clock.now(),
            counts,
            done,
        };
        (entry, written)
    }

    /// Brings every biometric index level with the store, then finishes detection for
    /// records a crash left undetected. The hub is ready afterwards.
    pub async fn prepare(&self, index_dir: &std::path::Path) -> Result<(), HubError> {
        let biometrics = Biometrics::open(
            &self.settings.biometrics,
            self.settings.index_tuning(),
            index_dir,
            |partition| self.store_of(partition).clone(),
        )
        .await?;
        self.finish_detections_with(&biometrics).await?;
        // Only now is the hub ready: every index complete, every record's links detected.
        let _ = self.biometrics.set(biometrics);
        Ok(())
    }

    /// Finishes the detection of every record whose ingest stopped after storing it (the
    /// client was answered 503 and may never retry); answers how many it finished. Run
    /// periodically once the hub is ready.
    pub async fn finish_detections(&self) -> Result<usize, HubError> {
        self.finish_detections_with(self.biometrics()?).await
    }

    /// Finishes the deletes that stopped half-way, then the detections; a record that fails
    /// is logged and left for the next sweep, not allowed to hold up the others.
    async fn finish_detections_with(&self, biometrics: &Biometrics) -> Result<usize, HubError> {
        for record in self.links.deletions().await? {
            if let Err(e) = self.finish_deletion(&record).await {
                tracing::warn!(system = %record.system, error = %e, "finishing a delete failed");
            }
        }
        let mut finished = 0;
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            // Marks still queued would make finished records look unfinished.
            self.marks_written(partition).await?;
            for record_id in self.store_of(partition).undetected().await? {
                match self
                    .finish_detection(biometrics, partition, record_id)
                    .await
                {
                    Ok(true) => finished += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(partition = %partition.as_str(), error = %e, "finishing a detection failed");
                    }
                }
            }
        }
        Ok(finished)
    }

    /// Finishes a delete of `record` that stopped half-way: its links go if the record is
    /// gone; if it is still there (the delete failed before removing it), the delete is
    /// forgotten and the record's links are the detection's business (it is undetected).
    async fn finish_deletion(&self, record: &RecordRef) -> Result<(), HubError> {
        let _guard = self.lock(record).await;
        // Under the lock: the delete may have been running, and finished meanwhile.
        if !self.links.deletion_pending(record).await? {
            return Ok(());
        }
        let exists = self
            .store(record.system)
            .gate_facts(record.system, &record.source_id)
            .await?
            .is_some();
        if exists {
            self.links.cancel_deletion(record).await?;
        } else {
            self.links.finish_deletion(record).await?;
        }
        Ok(())
    }

    /// Indexes and detects one undetected record; whether there was anything to do.
    async fn finish_detection(
        &self,
        biometrics: &Biometrics,
        partition: Partition,
        record_id: i64,
    ) -> Result<bool, HubError> {
        let store = self.store_of(partition);
        let Some(found) = store.get_by_id(record_id).await? else {
            return Ok(false);
        };
        let reference = RecordRef::new(found.record.system, found.record.source_id);
        let _guard = self.lock(&reference).await;
        // Again under the lock: an ingest or a delete may have run meanwhile.
        let Some(stored) = store.get_by_id(record_id).await? else {
            return Ok(false);
        };
        let template_ids = store.template_ids(record_id).await?;
        biometrics
            .replace_record(
                partition,
                record_id,
                &reference,
                &stored.record.templates,
                &template_ids,
            )
            .await?;
        self.detect(biometrics, &stored.record).await?;
        self.mark_detected(partition, record_id, stored.record.version)
            .await?;
        Ok(true)
    }

    /// Queues the record that detection finished for `record_id` at `version`; the
    /// partition's mark writer writes it with whatever other marks queued up meanwhile (one
    /// statement, one commit). Nobody waits for it: the record and its links are already
    /// stored, and a mark a crash loses only has start-up detect the record again.
    async fn mark_detected(
        &self,
        partition: Partition,
        record_id: i64,
        version: i64,
    ) -> Result<(), HubError> {
        self.mark_queue(partition)?
            .send(PendingMark::Detected { record_id, version })
            .await
            .map_err(|_| HubError::Unavailable)
    }

    /// Waits until every mark queued for `partition` so far is written (or failed to be).
    async fn marks_written(&self, partition: Partition) -> Result<(), HubError> {
        let (done, written) = tokio::sync::oneshot::channel();
        self.mark_queue(partition)?
            .send(PendingMark::Barrier(done))
            .await
            .map_err(|_| HubError::Unavailable)?;
        written.await.map_err(|_| HubError::Unavailable)
    }

    fn mark_queue(&self, partition: Partition) -> Result<&Batcher<PendingMark>, HubError> {
        self.detected_marks
            .get(&partition)
            .ok_or(HubError::Unavailable)
    }

    /// Serialises work on one record (ingest, delete), so that two versions in flight
    /// cannot interleave their index updates and detections.
    async fn lock(&self, record: &RecordRef) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        record.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % RECORD_LOCK_STRIPES as u64).unwrap_or(0);
        self.record_locks[stripe].lock().await
    }

    fn store_of(&self, partition: Partition) -> &IdentityStore {
        match partition {
            Partition::Civil => &self.civil,
            Partition::LawEnforcement => &self.law_enforcement,
        }
    }

    fn store(&self, system: SourceSystem) -> &IdentityStore {
        self.store_of(system.partition())
    }

    fn biometrics(&self) -> Result<&Biometrics, HubError> {
        self.biometrics.get().ok_or(HubError::NotReady)
    }

    /// Parses a native record and applies it: created, replayed or updated, with its
    /// templates indexed and its links detected; refused whole when invalid or older than
    /// what is stored.
    #[tracing::instrument(name = "ingest", skip_all, fields(system = %system))]
    pub async fn ingest(
        &self,
        principal: &Principal,
        system: SourceSystem,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<IngestReport, HubError> {
        self.guarded_counting(
            principal,
            Operation::Ingest(system),
            format!("system={system}"),
            |access| self.ingest_checked(access, system, content_type, body),
            |report| format!("{}:links={}", report.outcome.as_str(), report.links.len()),
            |result| {
                let outcome = match result {
                    Ok(report) => report.outcome.as_str().to_owned(),
                    Err(error) => error.to_problem().code,
                };
                self.metrics.ingest(system.as_str(), &outcome);
                // The quality counts are written with the audit entry, in its transaction.
                ingest_counts(result)
                    .into_iter()
                    .map(|(kind, rule)| (system.as_str().to_owned(), kind.to_owned(), rule))
                    .collect()
            },
        )
        .await
    }

    /// Runs `work`, adding the time it took to `step`'s total.
    async fn timed<T>(&self, step: IngestStep, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let output = work.await;
        self.metrics.ingest_step(step, started.elapsed());
        output
    }

    /// Each ingest step's runs and seconds since the hub started.
    pub fn ingest_step_totals(&self) -> Vec<StepTotal> {
        self.metrics.ingest_step_totals()
    }

    async fn ingest_checked(
        &self,
        access: Arc<Access>,
        system: SourceSystem,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<IngestReport, HubError> {
        let expected = system.native_format();
        if !media_type_matches(content_type, expected) {
            return Err(HubError::UnsupportedMediaType {
                expected: expected.media_type(),
            });
        }
        let accepted = self
            .timed(IngestStep::Parse, async {
                connectors::parse(system, body, &self.settings.biometrics)
            })
            .await?;
        if responsible_state(&accepted.record) != access.principal().member_state {
            return Err(HubError::NotOwner);
        }
        let biometrics = self.biometrics()?;
        let reference = RecordRef::new(system, accepted.record.source_id.clone());
        let _guard = self
            .timed(IngestStep::RecordLock, self.lock(&reference))
            .await;
        let now = self.clock.now();
        let offered = accepted.record.version;
        let store = self.store(system);
        let upserted = self
            .timed(IngestStep::Store, store.upsert(&accepted, now))
            .await?
            .map_err(|refusal| match refusal {
                UpsertRefusal::Stale { stored } => HubError::VersionConflict { stored, offered },
                UpsertRefusal::VersionReused { version } => HubError::VersionReused { version },
                UpsertRefusal::OtherOwner => HubError::NotOwner,
            })?;
        // A replay of a version whose ingest stopped after storing it (the client was told
        // to retry) finishes what that ingest began: the index, the links, the mark.
        let links = if upserted.detection_pending {
            self.timed(IngestStep::Index, async {
                if upserted.outcome == UpsertOutcome::Replayed {
                    // What the stopped ingest replaced may still be indexed; which templates
                    // that were is known only to the index.
                    return biometrics
                        .replace_record(
                            system.partition(),
                            upserted.record_id,
                            &reference,
                            &accepted.record.templates,
                            &upserted.template_ids,
                        )
                        .await;
                }
                biometrics
                    .remove(system.partition(), &upserted.removed_template_ids)
                    .await?;
                biometrics
                    .add(
                        system.partition(),
                        upserted.record_id,
                        &reference,
                        &accepted.record.templates,
                        &upserted.template_ids,
                    )
                    .await
            })
            .await?;
            let links = self.detect(biometrics, &accepted.record).await?;
            self.timed(
                IngestStep::DetectionMark,
                self.mark_detected(
                    system.partition(),
                    upserted.record_id,
                    accepted.record.version,
                ),
            )
            .await?;
            links
        } else {
            self.links.links_of(&reference).await?
        };
        let stored = match upserted.outcome {
            // The stored version's own time and findings, not this push's.
            UpsertOutcome::Replayed => {
                self.stored_record(system, &accepted.record.source_id)
                    .await?
            }
            UpsertOutcome::Created | UpsertOutcome::Updated => StoredRecord {
                partition: system.partition(),
                stored_at: now,
                record: accepted.record,
                findings: accepted.findings,
            },
        };
        tracing::info!(system = %system, outcome = ?upserted.outcome, links = links.len(), "record ingested");
        // The connector learns only of the links its access lets it see, and of those
        // only the side it reads.
        let links = links
            .iter()
            .filter_map(|link| {
                let sight = access.sight_of(link, false)?;
                Some(LinkSummary::seen_from(
                    &LinkView::new(link, sight),
                    &reference,
                ))
            })
            .collect();
        let indexed_templates = stored
            .record
            .templates
            .iter()
            .filter(|t| t.indexable)
            .count();
        Ok(IngestReport {
            outcome: upserted.outcome.into(),
            links,
            indexed_templates,
            stored: stored.into(),
        })
    }

    /// The multiple-identity detector: compares `record` with the records of every other
    /// system, in both partitions, found by blocking keys, by 1:N biometric search and by
    /// its existing links; stores the resulting links and drops the detector's links whose
    /// pair no longer qualifies. A verifier's decision is never dropped.
    #[tracing::instrument(name = "detect", skip_all, fields(system = %record.system))]
    async fn detect(
        &self,
        biometrics: &Biometrics,
        record: &IdentityRecord,
    ) -> Result<Vec<StoredLink>, HubError> {
        let now = self.clock.now();
        let reference = RecordRef::new(record.system, record.source_id.clone());
        let mut candidates: BTreeMap<Partition, BTreeSet<i64>> = BTreeMap::new();

        let keys = BlockingKeys::of(record);
        self.timed(IngestStep::BlockingCandidates, async {
            for partition in [Partition::Civil, Partition::LawEnforcement] {
                // Never the record's own system: its records are not compared with it.
                let others: Vec<SourceSystem> = SourceSystem::ALL
                    .into_iter()
                    .filter(|s| s.partition() == partition && *s != record.system)
                    .collect();
                let found = self.store_of(partition).candidates(&keys, &others).await?;
                candidates
                    .entry(partition)
                    .or_default()
                    .extend(found.into_iter().map(|(id, _)| id));
            }
            Ok::<_, HubError>(())
        })
        .await?;

        let probes: Vec<(&connectors::BiometricTemplate, f32)> = record
            .templates
            .iter()
            .filter(|t| t.indexable)
            .filter_map(|t| {
                let algorithm = self.settings.biometrics.get(&t.algorithm)?;
                Some((t, algorithm.match_threshold))
            })
            .collect();
        let found = self
            .timed(
                IngestStep::BiometricSearch,
                biometrics.search_each(
                    probes
                        .iter()
                        .map(|(t, _)| (t.algorithm.clone(), t.vector.clone()))
                        .collect(),
                    self.settings.detection.neighbours_per_template,
                    self.settings.detection.expansion_for(probes.len()),
                    &[Partition::Civil, Partition::LawEnforcement],
                ),
            )
            .await?;
        for ((_, threshold), hits) in probes.iter().zip(found) {
            // The record's own system (the record itself included) is never compared with
            // it: not worth loading.
            for hit in hits
                .into_iter()
                .filter(|h| h.similarity >= *threshold && h.owner.record.system != record.system)
            {
                candidates
                    .entry(hit.partition)
                    .or_default()
                    .insert(hit.owner.record_id);
            }
        }
        self.timed(
            IngestStep::CompareAndLink,
            self.compare_and_link(record, &reference, candidates, now),
        )
        .await
    }

    /// The detector's second half: loads `record`'s candidates and the records it is
    /// already linked with, compares each with it, stores the links that qualify and drops
    /// the detector's links that no longer do; answers the record's links.
    async fn compare_and_link(
        &self,
        record: &IdentityRecord,
        reference: &RecordRef,
        candidates: BTreeMap<Partition, BTreeSet<i64>>,
        now: OffsetDateTime,
    ) -> Result<Vec<StoredLink>, HubError> {
        // Existing links are re-evaluated, never dropped for merely not being found again;
        // a link whose other record is gone (a delete that raced an earlier detection) goes.
        let mut existing = self.links.links_of(reference).await?;
        let mut others: Vec<StoredRecord> = Vec::new();
        let mut orphaned: Vec<String> = Vec::new();
        for link in &existing {
            let other = other_end(link, reference);
            match self
                .store(other.system)
                .get(other.system, &other.source_id)
                .await?
            {
                Some(stored) => others.push(stored),
                None => orphaned.push(link.id.clone()),
            }
        }
        if !orphaned.is_empty() {
            self.links.delete(&orphaned).await?;
            existing.retain(|link| !orphaned.contains(&link.id));
        }
        for (partition, ids) in candidates {
            let ids: Vec<i64> = ids.into_iter().collect();
            others.extend(self.store_of(partition).get_many_by_id(&ids).await?);
        }

        let mut evaluated: BTreeSet<RecordRef> = BTreeSet::new();
        let mut no_longer_linked: BTreeSet<RecordRef> = BTreeSet::new();
        let mut written: Vec<(String, RecordRef)> = Vec::new();
        for other in others {
            let other_ref = RecordRef::new(other.record.system, other.record.source_id.clone());
            if other.record.system == record.system || !evaluated.insert(other_ref.clone()) {
                continue;
            }
            match crate::mid::evaluate(
                record,
                &other.record,
                &self.settings.biometrics,
                self.settings.detection.verification_deadline_hours,
                now,
            ) {
                Some(detected) => {
                    let link = stored_link(detected)?;
                    let (id, change) = self.links.upsert_automatic(&link, now).await?;
                    written.push((id, other_ref));
                    self.metrics
                        .link_change(link.colour.as_str(), change.as_str());
                }
                None => {
                    no_longer_linked.insert(other_ref);
                }
            }
        }
        let stale: Vec<String> = existing
            .iter()
            .filter(|link| no_longer_linked.contains(other_end(link, reference)))
            .map(|link| link.id.clone())
            .collect();
        if written.is_empty() && stale.is_empty() {
            // Most records have no candidate at all: what was read above is still the answer,
            // as of a moment earlier.
            return Ok(existing);
        }
        self.links.delete_unverified(&stale).await?;
        self.drop_links_to_deleted(&written).await?;
        Ok(self.links.links_of(reference).await?)
    }

    /// Deletes each just-written link whose other record no longer exists. A delete of
    /// that record removes its links after the record itself; a link written after that
    /// removal was written after the record was gone, and is found gone here. Between the
    /// two, no link outlives either of its records, whichever runs first.
    async fn drop_links_to_deleted(&self, written: &[(String, RecordRef)]) -> Result<(), HubError> {
        let mut gone = Vec::new();
        for (id, other) in written {
            let exists = self
                .store(other.system)
                .gate_facts(other.system, &other.source_id)
                .await?
                .is_some();
            if !exists {
                gone.push(id.clone());
            }
        }
        if !gone.is_empty() {
            self.links.delete(&gone).await?;
        }
        Ok(())
    }

    async fn stored_record(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<StoredRecord, HubError> {
        self.store(system)
            .get(system, source_id)
            .await?
            .ok_or(HubError::RecordNotFound)
    }

    /// A record with the field groups the caller may read for `purpose`. A record the
    /// caller may not read — its system, or under an identity check a person who may be
    /// under 12 — is answered exactly as one that does not exist.
    #[tracing::instrument(name = "read_record", skip_all, fields(system = %system))]
    pub async fn record(
        &self,
        principal: &Principal,
        purpose: Purpose,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<RecordView, HubError> {
        self.guarded(
            principal,
            Operation::ReadRecord(purpose),
            format!("system={system}"),
            |access| async move {
                let fields = access
                    .readable_fields_for(purpose, system)
                    .ok_or(HubError::RecordNotFound)?;
                // Decided on one row before anything else is read: a record refused costs
                // what a missing one does.
                let facts = self
                    .store(system)
                    .gate_facts(system, source_id)
                    .await?
                    .ok_or(HubError::RecordNotFound)?;
                let managed_elsewhere = purpose == Purpose::RecordManagement
                    && state_responsible_for(facts.member_state.as_deref())
                        != access.principal().member_state;
                if managed_elsewhere
                    || !purpose_admits_born(purpose, facts.date_of_birth, self.clock.now())
                {
                    return Err(HubError::RecordNotFound);
                }
                let stored = self.stored_record(system, source_id).await?;
                Ok(RecordView::new(&stored, &fields))
            },
            |view| format!("full:{}", view.fields_summary()),
        )
        .await
    }

    /// Deletes a record as its source system did: its templates leave the index and its
    /// links go, since they no longer join two records.
    pub async fn delete(
        &self,
        principal: &Principal,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<(), HubError> {
        self.guarded(
            principal,
            Operation::Delete(system),
            format!("system={system}"),
            |access| self.delete_checked(access, system, source_id),
            |()| "deleted".to_owned(),
        )
        .await
    }

    async fn delete_checked(
        &self,
        access: Arc<Access>,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<(), HubError> {
        let biometrics = self.biometrics()?;
        let reference = RecordRef::new(system, source_id);
        let _guard = self.lock(&reference).await;
        let store = self.store(system);
        // Another state's record is not the caller's to manage: answered as missing.
        let owned = store
            .gate_facts(system, source_id)
            .await?
            .is_some_and(|facts| {
                state_responsible_for(facts.member_state.as_deref())
                    == access.principal().member_state
            });
        if !owned {
            return Err(HubError::RecordNotFound);
        }
        // Crash-safe order: the record is marked for detection first, so a crash after its
        // links are gone but before it is gone has start-up detect its links again. A mark of
        // an earlier ingest still queued must not land after that and undo it.
        self.marks_written(system.partition()).await?;
        if !store.mark_undetected(system, source_id).await? {
            return Err(HubError::RecordNotFound);
        }
        // The delete is noted before anything goes, so that a stop half-way has start-up
        // (or the sweep) finish removing the record's links.
        let mut links = self
            .links
            .begin_deletion(&reference, self.clock.now())
            .await?;
        let removed = store
            .delete(system, source_id)
            .await?
            .ok_or(HubError::RecordNotFound)?;
        biometrics.remove(system.partition(), &removed).await?;
        // Again, now that the record is gone: a detection of another record that read it
        // before it went may have linked it meanwhile (and one that links it from now on
        // finds it gone and drops its link itself).
        links += self.links.finish_deletion(&reference).await?;
        tracing::info!(system = %system, links, "record deleted");
        Ok(())
    }

    /// The caller's verification queue: the links its authority verifies, filtered and
    /// paged. Links outside it reach a caller only inside a record it may read.
    pub async fn links(
        &self,
        principal: &Principal,
        filter: LinkFilter,
    ) -> Result<LinkPage, HubError> {
        let query = LinkQuery::from(filter);
        let described = format!(
            "colour={} system={} overdue={}",
            query.colour.map_or("any", LinkColour::as_str),
            query.system.map_or("any", SourceSystem::as_str),
            query
                .overdue
                .map_or("any", |o| if o { "true" } else { "false" }),
        );
        self.guarded(
            principal,
            Operation::ListLinks,
            described,
            |access| async move {
                let (links, total) = self
                    .links
                    .list(&query, &access.verifier_queue(), self.clock.now())
                    .await?;
                Ok(LinkPage {
                    links: links.into_iter().map(LinkDetails::from).collect(),
                    total,
                    limit: query.limit,
                    offset: query.offset,
                })
            },
            |page| format!("links={}", page.links.len()),
        )
        .await
    }

    /// A link's identity confirmation file, for its responsible authority; any other
    /// caller is answered as if the link did not exist.
    pub async fn link(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ConfirmationFile, HubError> {
        self.guarded(
            principal,
            Operation::ReadLink,
            String::new(),
            |access| async move { self.visible_link(&access, id).await },
            |file| format!("colour={}", file.link.colour.as_str()),
        )
        .await
    }

    async fn visible_link(&self, access: &Access, id: &str) -> Result<ConfirmationFile, HubError> {
        let (link, history) = self.links.get(id).await?.ok_or(HubError::LinkNotFound)?;
        if !access.may_verify(&link) {
            return Err(HubError::LinkNotFound);
        }
        let overdue = link.colour == LinkColour::Yellow
            && link.deadline.is_some_and(|d| d < self.clock.now());
        Ok(ConfirmationFile {
            link: link.into(),
            overdue,
            history: history.into_iter().map(LinkEvent::from).collect(),
        })
    }

    /// Records a verifier's decision with its justification. Only the link's responsible
    /// authority decides.
    #[tracing::instrument(name = "verify", skip_all)]
    pub async fn verify(
        &self,
        principal: &Principal,
        id: &str,
        decision: Verification,
    ) -> Result<ConfirmationFile, HubError> {
        self.guarded(
            principal,
            Operation::Verify,
            format!("colour={}", decision.colour.as_str()),
            |access| self.verify_checked(access, id, decision),
            |file| format!("colour={}", file.link.colour.as_str()),
        )
        .await
    }

    async fn verify_checked(
        &self,
        access: Arc<Access>,
        id: &str,
        decision: Verification,
    ) -> Result<ConfirmationFile, HubError> {
        // Only the link's verifier finds it; anyone else is answered as if it did not exist.
        self.visible_link(&access, id).await?;
        if decision.colour == LinkColour::Yellow {
            return Err(HubError::InvalidDecision(
                "a decision is white, green or red; yellow is the detector's",
            ));
        }
        let justification = decision.justification.trim();
        if justification.is_empty() {
            return Err(HubError::InvalidDecision(
                "a decision needs a justification",
            ));
        }
        let verifier = access.principal().rule_subject();
        match self
            .links
            .verify(
                id,
                decision.colour,
                justification,
                &verifier,
                self.clock.now(),
            )
            .await?
        {
            Ok(()) => {}
            Err(VerifyRefusal::NotFound) => return Err(HubError::LinkNotFound),
            Err(VerifyRefusal::AlreadyThatColour) => return Err(HubError::AlreadyDecided),
        }
        tracing::info!(colour = decision.colour.as_str(), "link verified");
        self.visible_link(&access, id).await
    }

    /// 1:N search of both partitions' indexes of one algorithm, by record, best first;
    /// only records the caller may read for the declared purpose are answered.
    #[tracing::instrument(name = "search_biometric", skip_all)]
    pub async fn search_biometric(
        &self,
        principal: &Principal,
        search: BiometricSearch,
    ) -> Result<BiometricSearchAnswer, HubError> {
        self.guarded(
            principal,
            Operation::BiometricSearch(search.purpose),
            format!("biometric={}", search.algorithm),
            |access| self.search_biometric_checked(access, search),
            |answer| format!("hits={}", answer.hits.len()),
        )
        .await
    }

    async fn search_biometric_checked(
        &self,
        access: Arc<Access>,
        search: BiometricSearch,
    ) -> Result<BiometricSearchAnswer, HubError> {
        let purpose = search.purpose;
        let readable = |system: SourceSystem| access.readable_fields_for(purpose, system).is_some();
        if !SourceSystem::ALL.into_iter().any(readable) {
            return Err(HubError::Forbidden);
        }
        let biometrics = self.biometrics()?;
        let (algorithm, probe) = self.decode_probe(&search.algorithm, &search.data, "")?;
        self.check_capture(purpose, search.capture.as_ref(), "/capture")?;
        let limit = search.limit.unwrap_or(10).clamp(1, 100);
        // A partition none of whose systems the caller reads is not searched at all.
        let partitions: Vec<Partition> = [Partition::Civil, Partition::LawEnforcement]
            .into_iter()
            .filter(|partition| {
                SourceSystem::ALL
                    .into_iter()
                    .any(|system| system.partition() == *partition && readable(system))
            })
            .collect();
        let hits = biometrics
            .search(
                &algorithm.id,
                &probe,
                limit * NEIGHBOURS_PER_WANTED_RECORD,
                &partitions,
            )
            .await?;
        let mut best: BTreeMap<RecordRef, (f32, Partition, i64)> = BTreeMap::new();
        for hit in hits.into_iter().filter(|h| readable(h.owner.record.system)) {
            let entry = best.entry(hit.owner.record).or_insert((
                f32::MIN,
                hit.partition,
                hit.owner.record_id,
            ));
            entry.0 = entry.0.max(hit.similarity);
        }
        if purpose_needs_records(purpose) {
            let mut admitted = BTreeSet::new();
            for partition in &partitions {
                let ids: Vec<i64> = best
                    .values()
                    .filter(|(_, p, _)| p == partition)
                    .map(|(_, _, id)| *id)
                    .collect();
                let now = self.clock.now();
                for stored in self.store_of(*partition).get_many_by_id(&ids).await? {
                    if purpose_admits(purpose, &stored, now) {
                        admitted.insert(RecordRef::new(
                            stored.record.system,
                            stored.record.source_id.clone(),
                        ));
                    }
                }
            }
            best.retain(|record, _| admitted.contains(record));
        }
        let mut hits: Vec<BiometricHit> = best
            .into_iter()
            .map(|(record, (similarity, _, _))| BiometricHit {
                record,
                similarity,
                matched: similarity >= algorithm.match_threshold,
            })
            .collect();
        hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        hits.truncate(limit);
        Ok(BiometricSearchAnswer { hits })
    }

    /// A probe checked against its algorithm: registered, the right dimension, finite and
    /// non-zero. Faults are named by JSON pointers under `at`.
    fn decode_probe(
        &self,
        algorithm: &str,
        data: &str,
        at: &str,
    ) -> Result<(&connectors::Algorithm, Vec<f32>), HubError> {
        let invalid = |field: &str, rule: &'static str, message: String| HubError::Invalid {
            errors: vec![connectors::FieldError::new(
                format!("{at}/{field}"),
                rule,
                message,
            )],
        };
        let algorithm = self.settings.biometrics.get(algorithm).ok_or_else(|| {
            invalid(
                "algorithm",
                connectors::rule::UNREGISTERED_ALGORITHM,
                "expected an algorithm id registered in the hub's configuration".into(),
            )
        })?;
        let probe = connectors::vector_base64::decode(data).ok_or_else(|| {
            invalid(
                "data",
                connectors::rule::INVALID_BASE64,
                "expected base64 of little-endian float32 values".into(),
            )
        })?;
        if probe.len() != algorithm.dimension {
            return Err(invalid(
                "data",
                connectors::rule::WRONG_DIMENSION,
                format!(
                    "expected {} float32 values for this algorithm",
                    algorithm.dimension
                ),
            ));
        }
        if let Some((rule, message)) = connectors::vector_values_problem(&probe) {
            return Err(invalid("data", rule, message.into()));
        }
        Ok((algorithm, probe))
    }

    /// Every index with its template count beside the store's.
    pub async fn index_status(&self, principal: &Principal) -> Result<Vec<IndexStatus>, HubError> {
        self.access(principal)
            .await?
            .require_duty(HubDuty::Operate)?;
        let biometrics = self.biometrics()?;
        let mut status = Vec::new();
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            for algorithm in &self.settings.biometrics.algorithms {
                let eligible = self
                    .store_of(partition)
                    .indexable_template_ids(&algorithm.id)
                    .await?
                    .len();
                // Every registered algorithm has an index in each partition once prepared:
                // a missing one is the hub's fault, not a reason for the caller to retry.
                let index = biometrics.index(partition, &algorithm.id).ok_or_else(|| {
                    HubError::Internal(format!(
                        "no {} index for algorithm {}",
                        partition.as_str(),
                        algorithm.id
                    ))
                })?;
                status.push(IndexStatus {
                    partition,
                    algorithm: algorithm.id.clone(),
                    indexed: index.len(),
                    eligible,
                    sketch_shortlist: index.shortlist(),
                    expansion_add: index.expansion_add(),
                    graph_expansion_add: index.graph_expansion_add(),
                });
            }
        }
        Ok(status)
    }

    /// Ready when the biometric indexes are complete, every database answers within
    /// [`READINESS_DEADLINE`] and the data directory's file system has room; says which
    /// of them is not.
    pub async fn ready(&self) -> Result<(), HubError> {
        self.biometrics()?;
        self.disk_has_room()?;
        let databases = [
            ("civil", self.civil.database()),
            ("law-enforcement", self.law_enforcement.database()),
            ("links", self.links.database()),
            ("control", self.control.database()),
        ];
        let answers = tokio::time::timeout(
            READINESS_DEADLINE,
            futures::future::join_all(databases.iter().map(|(_, database)| database.ping())),
        )
        .await
        .map_err(|_| {
            tracing::warn!("a database did not answer the readiness probe in time");
            HubError::OutOfService("a database does not answer in time".to_owned())
        })?;
        for ((name, _), answer) in databases.iter().zip(answers) {
            answer.map_err(|e| {
                tracing::warn!(database = name, error = %e, "database not answering");
                HubError::OutOfService(format!("the {name} database does not answer"))
            })?;
        }
        Ok(())
    }

    /// The data directory's file system keeps the free space the settings ask for: a full
    /// disk fails every write while reads still answer, and a load balancer should stop
    /// sending traffic until an operator makes room.
    fn disk_has_room(&self) -> Result<(), HubError> {
        let minimum = self.settings.database.min_free_disk_mib;
        let stats = rustix::fs::statvfs(&self.data_dir).map_err(|e| {
            tracing::warn!(error = %e, "cannot read the data directory's free space");
            HubError::OutOfService("the data directory cannot be read".to_owned())
        })?;
        let free_mib = stats.f_bavail.saturating_mul(stats.f_frsize) / (1024 * 1024);
        if free_mib < minimum {
            tracing::warn!(
                free_mib,
                minimum,
                "the data directory's disk is nearly full"
            );
            return Err(HubError::OutOfService(format!(
                "the data directory's file system has less than {minimum} MiB free"
            )));
        }
        Ok(())
    }

    /// Saves the indexes that changed since their last save.
    pub async fn save_indexes(&self) -> Result<(), HubError> {
        if let Some(biometrics) = self.biometrics.get() {
            biometrics.save_dirty().await?;
        }
        Ok(())
    }

    /// The biometric indexes, once complete.
    pub fn biometric_indexes(&self) -> Option<&Biometrics> {
        self.biometrics.get()
    }

    pub async fn close(&self) {
        // Marks still gathering would meet closed pools; written now, start-up need not
        // detect those records again.
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            let _ = self.marks_written(partition).await;
        }
        for database in [
            self.civil.database(),
            self.law_enforcement.database(),
            self.links.database(),
            self.control.database(),
        ] {
            database.close().await;
        }
    }
}

/// The storage row of a link the detector made; its evidence as the JSON the confirmation
/// file shows.
fn stored_link(detected: crate::mid::DetectedLink) -> Result<NewLink, HubError> {
    let evidence = serde_json::to_value(&detected.evidence)
        .map_err(|e| HubError::Internal(format!("link evidence does not serialise: {e}")))?;
    Ok(NewLink {
        a: detected.a,
        b: detected.b,
        colour: detected.colour,
        rule: detected.rule,
        evidence,
        authority: detected.authority,
        deadline: detected.deadline,
    })
}

/// What the audit log records of a result: `describe`'s words, or the refusal's code.
fn outcome_of<T>(result: &Result<T, HubError>, describe: impl FnOnce(&T) -> String) -> String {
    match result {
        Ok(value) => describe(value),
        Err(error) => format!("refused:{}", error.to_problem().code),
    }
}

/// An audit entry waiting for its transaction, the ingest quality counts that go with it,
/// and who to tell when it is written.
#[derive(Debug)]
struct PendingAudit {
    event: AuditEvent,
    at: OffsetDateTime,
    counts: Vec<IngestCountKey>,
    done: tokio::sync::oneshot::Sender<Result<(), HubError>>,
}

/// What a partition's mark writer is asked to do, in queue order.
#[derive(Debug)]
enum PendingMark {
    /// A finished detection to mark in the store.
    Detected { record_id: i64, version: i64 },
    /// Answered once every mark queued before it is written (or failed to be).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// One partition's writer of detection marks: a mark is a write of its own, and each
/// write holds SQLite's single write lock through a commit, so the writer gathers marks for
/// a while (less when a barrier waits) and writes them in one statement. The linger bounds
/// what a crash can make start-up detect again.
#[derive(Debug)]
struct MarkWriter {
    store: IdentityStore,
}

impl BatchWriter for MarkWriter {
    type Job = PendingMark;
    const MAX_BATCH: usize = 128;
    const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

    fn urgent(&self, job: &PendingMark) -> bool {
        matches!(job, PendingMark::Barrier(_))
    }

    async fn write(&mut self, batch: Vec<PendingMark>) {
        let mut marks = Vec::with_capacity(batch.len());
        let mut barriers = Vec::new();
        for pending in batch {
            match pending {
                PendingMark::Detected { record_id, version } => marks.push((record_id, version)),
                PendingMark::Barrier(done) => barriers.push(done),
            }
        }
        if let Err(e) = self.store.mark_detected_many(&marks).await {
            // Unmarked records are detected again at the next start: nothing is lost.
            tracing::error!(error = %e, marks = marks.len(), "detection marks not written");
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}

/// Neighbours a 1:N search asks each partition's index for, per record wanted: several
/// templates of one record can hit (two fingers).
pub const NEIGHBOURS_PER_WANTED_RECORD: usize = 4;

/// The single appender of the audit chain: takes what is queued, appends it all or none
/// (`AuditAppender`), then answers every waiter.
#[derive(Debug)]
struct AuditWriter {
    appender: AuditAppender,
    metrics: Arc<HubMetrics>,
}

impl BatchWriter for AuditWriter {
    type Job = PendingAudit;
    const MAX_BATCH: usize = 256;

    async fn write(&mut self, batch: Vec<PendingAudit>) {
        let mut entries = Vec::with_capacity(batch.len());
        let mut counts: BTreeMap<IngestCountKey, i64> = BTreeMap::new();
        let mut waiters = Vec::with_capacity(batch.len());
        for pending in batch {
            entries.push((pending.event, pending.at));
            for key in pending.counts {
                *counts.entry(key).or_default() += 1;
            }
            waiters.push(pending.done);
        }
        let written = match self.appender.append(&entries, &counts).await {
            Ok(()) => {
                for _ in &entries {
                    self.metrics.audit_entry();
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, entries = entries.len(), "audit entries not written");
                false
            }
        };
        for done in waiters {
            // Not written: the answer is withheld and the caller may retry.
            let _ = done.send(if written {
                Ok(())
            } else {
                Err(HubError::Unavailable)
            });
        }
    }
}

/// What an ingest adds to the data-quality counts: (kind, rule) pairs. Refusals that say
/// nothing of the data (access, availability) are not counted.
fn ingest_counts(result: &Result<IngestReport, HubError>) -> Vec<(&'static str, String)> {
    let refused = |rules: Vec<String>| {
        let mut counts = vec![(statistics::REFUSED, String::new())];
        let distinct: BTreeSet<String> = rules.into_iter().collect();
        counts.extend(
            distinct
                .into_iter()
                .map(|rule| (statistics::REFUSED_RULE, rule)),
        );
        counts
    };
    match result {
        Ok(report) if report.outcome == IngestOutcome::Replayed => Vec::new(),
        Ok(report) => {
            let mut counts = vec![(statistics::ACCEPTED, String::new())];
            counts.extend(
                report
                    .stored
                    .findings
                    .iter()
                    .map(|finding| (statistics::FLAGGED, finding.rule.clone())),
            );
            counts
        }
        Err(HubError::Invalid { errors }) => {
            refused(errors.iter().map(|e| e.rule.to_owned()).collect())
        }
        Err(
            error @ (HubError::Malformed { .. }
            | HubError::UnsupportedMediaType { .. }
            | HubError::VersionConflict { .. }
            | HubError::VersionReused { .. }),
        ) => refused(vec![error.to_problem().code]),
        Err(_) => Vec::new(),
    }
}

/// Compares the media type's essence, ignoring parameters such as `charset`.
fn media_type_matches(content_type: Option<&str>, expected: NativeFormat) -> bool {
    let Some(essence) = content_type.and_then(|ct| ct.split(';').next()) else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    match expected {
        NativeFormat::Json => essence == "application/json" || essence.ends_with("+json"),
        NativeFormat::Xml => {
            essence == "application/xml" || essence == "text/xml" || essence.ends_with("+xml")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_compare_by_essence() {
        assert!(media_type_matches(
            Some("application/json; charset=utf-8"),
            NativeFormat::Json
        ));
        assert!(media_type_matches(
            Some("Application/XML"),
            NativeFormat::Xml
        ));
        assert!(media_type_matches(Some("text/xml"), NativeFormat::Xml));
        assert!(!media_type_matches(
            Some("application/xml"),
            NativeFormat::Json
        ));
        assert!(!media_type_matches(Some("text/plain"), NativeFormat::Json));
        assert!(!media_type_matches(None, NativeFormat::Json));
    }
}
