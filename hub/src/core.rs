//! The hub's transport-free core: every operation the REST layer and the CLI expose.

use std::collections::{BTreeMap, BTreeSet};

use connectors::{IdentityRecord, NativeFormat, Partition, RecordRef, SourceSystem, UnknownSystem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use utoipa::ToSchema;

use crate::biometrics::{Biometrics, BiometricsError};
use crate::config::{HubConfig, Settings};
use crate::error::HubError;
use crate::matching::{BlockingKeys, LinkColour, LinkRule};
use crate::store::{
    HistoryEntry, IdentityStore, LinkQuery, LinkStore, StoreError, StoredLink, StoredRecord,
    UpsertOutcome, UpsertRefusal, VerifyRefusal,
};

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

/// A link as the ingest response lists it: seen from the ingested record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LinkSummary {
    pub id: String,
    pub colour: LinkColour,
    pub rule: LinkRule,
    /// The record at the other end.
    pub other: RecordRef,
}

impl LinkSummary {
    fn seen_from(link: &StoredLink, record: &RecordRef) -> Self {
        let [a, b] = &link.records;
        let other = if a == record { b } else { a };
        Self {
            id: link.id.clone(),
            colour: link.colour,
            rule: link.rule,
            other: other.clone(),
        }
    }
}

/// What an ingest did, with the record as now stored and its links.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestReport {
    pub outcome: UpsertOutcome,
    /// The record's links to records of other systems after this ingest.
    pub links: Vec<LinkSummary>,
    /// How many of the record's templates are in the biometric index; the others are
    /// below their minimum quality (see `findings`).
    pub indexed_templates: usize,
    #[serde(flatten)]
    pub stored: StoredRecord,
}

/// A link's identity confirmation file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfirmationFile {
    #[serde(flatten)]
    pub link: StoredLink,
    /// Yellow and past its deadline.
    pub overdue: bool,
    pub history: Vec<HistoryEntry>,
}

/// One page of links.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkPage {
    pub links: Vec<StoredLink>,
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
    /// Why: required, and kept in the link's history.
    pub justification: String,
    /// Who decides; until authentication arrives, the verifier names themself.
    pub verifier: String,
}

/// A 1:N search: one probe template against every index of its algorithm.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BiometricSearch {
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
}

/// Stripes of the per-record lock: enough that unrelated records rarely wait on each other.
const RECORD_LOCK_STRIPES: usize = 64;

/// The running hub: one store per partition, the links, and the biometric indexes once
/// they are complete.
#[derive(Debug)]
pub struct Hub {
    civil: IdentityStore,
    law_enforcement: IdentityStore,
    links: LinkStore,
    settings: Settings,
    biometrics: OnceCell<Biometrics>,
    record_locks: Vec<tokio::sync::Mutex<()>>,
}

impl Hub {
    /// Opens (and migrates) the stores. The biometric indexes come with [`Hub::prepare`].
    pub async fn open(config: &HubConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(Self {
            civil: IdentityStore::open(&config.civil_url()).await?,
            law_enforcement: IdentityStore::open(&config.law_enforcement_url()).await?,
            links: LinkStore::open(&config.mid_url()).await?,
            settings: config.settings.clone(),
            biometrics: OnceCell::new(),
            record_locks: (0..RECORD_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// Brings every biometric index level with the store, then finishes detection for
    /// records a crash left undetected. The hub is ready afterwards.
    pub async fn prepare(&self, index_dir: &std::path::Path) -> Result<(), HubError> {
        let biometrics = Biometrics::open(&self.settings.biometrics, index_dir, |partition| {
            self.store_of(partition).clone()
        })
        .await?;
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            let store = self.store_of(partition);
            for record_id in store.undetected().await? {
                if let Some(stored) = store.get_by_id(record_id).await? {
                    let reference =
                        RecordRef::new(stored.record.system, stored.record.source_id.clone());
                    let _guard = self.lock(&reference).await;
                    self.detect(&biometrics, &stored.record).await?;
                    store
                        .mark_detected(record_id, stored.record.version)
                        .await?;
                }
            }
        }
        // Only now is the hub ready: every index complete, every record's links detected.
        let _ = self.biometrics.set(biometrics);
        Ok(())
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
    pub async fn ingest(
        &self,
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
        let accepted = connectors::parse(system, body, &self.settings.biometrics)?;
        let biometrics = self.biometrics()?;
        let reference = RecordRef::new(system, accepted.record.source_id.clone());
        let _guard = self.lock(&reference).await;
        let now = OffsetDateTime::now_utc();
        let offered = accepted.record.version;
        let store = self.store(system);
        let upserted = store
            .upsert(&accepted, now)
            .await?
            .map_err(|refusal| match refusal {
                UpsertRefusal::Stale { stored } => HubError::VersionConflict { stored, offered },
                UpsertRefusal::VersionReused { version } => HubError::VersionReused { version },
            })?;
        let (stored, links) = match upserted.outcome {
            UpsertOutcome::Replayed => {
                let stored = self.record(system, &accepted.record.source_id).await?;
                let links = self.links.links_of(&reference).await?;
                (
                    stored,
                    links
                        .iter()
                        .map(|l| LinkSummary::seen_from(l, &reference))
                        .collect(),
                )
            }
            UpsertOutcome::Created | UpsertOutcome::Updated => {
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
                    .await?;
                let links = self.detect(biometrics, &accepted.record).await?;
                store
                    .mark_detected(upserted.record_id, accepted.record.version)
                    .await?;
                let stored = StoredRecord {
                    partition: system.partition(),
                    stored_at: now,
                    record: accepted.record,
                    findings: accepted.findings,
                };
                (stored, links)
            }
        };
        tracing::info!(system = %system, outcome = ?upserted.outcome, links = links.len(), "record ingested");
        let indexed_templates = stored
            .record
            .templates
            .iter()
            .filter(|t| t.indexable)
            .count();
        Ok(IngestReport {
            outcome: upserted.outcome,
            links,
            indexed_templates,
            stored,
        })
    }

    /// The multiple-identity detector: compares `record` with the records of every other
    /// system, in both partitions, found by blocking keys, by 1:N biometric search and by
    /// its existing links; stores the resulting links and drops the detector's links whose
    /// pair no longer qualifies. A verifier's decision is never dropped.
    async fn detect(
        &self,
        biometrics: &Biometrics,
        record: &IdentityRecord,
    ) -> Result<Vec<LinkSummary>, HubError> {
        let now = OffsetDateTime::now_utc();
        let reference = RecordRef::new(record.system, record.source_id.clone());
        let mut candidates: BTreeMap<Partition, BTreeSet<i64>> = BTreeMap::new();

        let keys = BlockingKeys::of(record);
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            let ids = self
                .store_of(partition)
                .candidates(&keys, record.system)
                .await?;
            candidates.entry(partition).or_default().extend(ids);
        }

        for template in record.templates.iter().filter(|t| t.indexable) {
            let Some(algorithm) = self.settings.biometrics.get(&template.algorithm) else {
                continue;
            };
            let hits = biometrics
                .search(
                    &template.algorithm,
                    &template.vector,
                    self.settings.detection.neighbours_per_template,
                )
                .await?;
            for hit in hits
                .into_iter()
                .filter(|h| h.similarity >= algorithm.match_threshold)
            {
                candidates
                    .entry(hit.partition)
                    .or_default()
                    .insert(hit.owner.record_id);
            }
        }
        // Existing links are re-evaluated, never dropped for merely not being found again.
        let existing = self.links.links_of(&reference).await?;
        let mut others: Vec<StoredRecord> = Vec::new();
        for link in &existing {
            let other = &LinkSummary::seen_from(link, &reference).other;
            if let Some(stored) = self
                .store(other.system)
                .get(other.system, &other.source_id)
                .await?
            {
                others.push(stored);
            }
        }
        for (partition, ids) in candidates {
            for id in ids {
                if let Some(stored) = self.store_of(partition).get_by_id(id).await? {
                    others.push(stored);
                }
            }
        }

        let mut evaluated: BTreeSet<RecordRef> = BTreeSet::new();
        let mut no_longer_linked: BTreeSet<RecordRef> = BTreeSet::new();
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
                Some(link) => {
                    self.links.upsert_automatic(&link, now).await?;
                }
                None => {
                    no_longer_linked.insert(other_ref);
                }
            }
        }
        let stale: Vec<String> = existing
            .iter()
            .filter(|link| {
                no_longer_linked.contains(&LinkSummary::seen_from(link, &reference).other)
            })
            .map(|link| link.id.clone())
            .collect();
        self.links.delete_unverified(&stale).await?;
        Ok(self
            .links
            .links_of(&reference)
            .await?
            .iter()
            .map(|link| LinkSummary::seen_from(link, &reference))
            .collect())
    }

    pub async fn record(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<StoredRecord, HubError> {
        self.store(system)
            .get(system, source_id)
            .await?
            .ok_or(HubError::RecordNotFound)
    }

    /// Deletes a record as its source system did: its templates leave the index and its
    /// links go, since they no longer join two records.
    pub async fn delete(&self, system: SourceSystem, source_id: &str) -> Result<(), HubError> {
        let biometrics = self.biometrics()?;
        let reference = RecordRef::new(system, source_id);
        let _guard = self.lock(&reference).await;
        let store = self.store(system);
        // Crash-safe order: the record is marked for detection first, so a crash after its
        // links are gone but before it is gone has start-up detect its links again.
        if !store.mark_undetected(system, source_id).await? {
            return Err(HubError::RecordNotFound);
        }
        let links: Vec<String> = self
            .links
            .links_of(&reference)
            .await?
            .into_iter()
            .map(|l| l.id)
            .collect();
        self.links.delete(&links).await?;
        let removed = store
            .delete(system, source_id)
            .await?
            .ok_or(HubError::RecordNotFound)?;
        biometrics.remove(system.partition(), &removed).await?;
        tracing::info!(system = %system, links = links.len(), "record deleted");
        Ok(())
    }

    pub async fn links(&self, mut query: LinkQuery) -> Result<LinkPage, HubError> {
        query.limit = query.limit.clamp(1, 500);
        query.offset = query.offset.max(0);
        let (links, total) = self.links.list(&query, OffsetDateTime::now_utc()).await?;
        Ok(LinkPage {
            links,
            total,
            limit: query.limit,
            offset: query.offset,
        })
    }

    pub async fn link(&self, id: &str) -> Result<ConfirmationFile, HubError> {
        let (link, history) = self.links.get(id).await?.ok_or(HubError::LinkNotFound)?;
        let overdue = link.colour == LinkColour::Yellow
            && link.deadline.is_some_and(|d| d < OffsetDateTime::now_utc());
        Ok(ConfirmationFile {
            link,
            overdue,
            history,
        })
    }

    /// Records a verifier's decision with its justification.
    pub async fn verify(
        &self,
        id: &str,
        decision: Verification,
    ) -> Result<ConfirmationFile, HubError> {
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
        let verifier = decision.verifier.trim();
        if verifier.is_empty() {
            return Err(HubError::InvalidDecision("a decision names its verifier"));
        }
        match self
            .links
            .verify(
                id,
                decision.colour,
                justification,
                verifier,
                OffsetDateTime::now_utc(),
            )
            .await?
        {
            Ok(()) => {}
            Err(VerifyRefusal::NotFound) => return Err(HubError::LinkNotFound),
            Err(VerifyRefusal::AlreadyThatColour) => return Err(HubError::AlreadyDecided),
        }
        tracing::info!(colour = decision.colour.as_str(), "link verified");
        self.link(id).await
    }

    /// 1:N search of both partitions' indexes of one algorithm, by record, best first.
    pub async fn search_biometric(
        &self,
        search: BiometricSearch,
    ) -> Result<BiometricSearchAnswer, HubError> {
        let biometrics = self.biometrics()?;
        let algorithm = self
            .settings
            .biometrics
            .get(&search.algorithm)
            .ok_or_else(|| HubError::Invalid {
                errors: vec![connectors::FieldError::new(
                    "/algorithm",
                    connectors::rule::UNREGISTERED_ALGORITHM,
                    "expected an algorithm id registered in the hub's configuration",
                )],
            })?;
        let probe_problem = |rule: &'static str, message: String| HubError::Invalid {
            errors: vec![connectors::FieldError::new("/data", rule, message)],
        };
        let probe = connectors::vector_base64::decode(&search.data).ok_or_else(|| {
            probe_problem(
                connectors::rule::INVALID_BASE64,
                "expected base64 of little-endian float32 values".into(),
            )
        })?;
        if probe.len() != algorithm.dimension {
            return Err(probe_problem(
                connectors::rule::WRONG_DIMENSION,
                format!(
                    "expected {} float32 values for this algorithm",
                    algorithm.dimension
                ),
            ));
        }
        if let Some((rule, message)) = connectors::vector_values_problem(&probe) {
            return Err(probe_problem(rule, message.into()));
        }
        let limit = search.limit.unwrap_or(10).clamp(1, 100);
        // Several templates of one record can hit (two fingers): fetch more than asked.
        let hits = biometrics.search(&algorithm.id, &probe, limit * 4).await?;
        let mut best: BTreeMap<RecordRef, f32> = BTreeMap::new();
        for hit in hits {
            let entry = best.entry(hit.owner.record).or_insert(f32::MIN);
            *entry = entry.max(hit.similarity);
        }
        let mut hits: Vec<BiometricHit> = best
            .into_iter()
            .map(|(record, similarity)| BiometricHit {
                record,
                similarity,
                matched: similarity >= algorithm.match_threshold,
            })
            .collect();
        hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        hits.truncate(limit);
        Ok(BiometricSearchAnswer { hits })
    }

    /// Every index with its template count beside the store's.
    pub async fn index_status(&self) -> Result<Vec<IndexStatus>, HubError> {
        let biometrics = self.biometrics()?;
        let mut status = Vec::new();
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            for algorithm in &self.settings.biometrics.algorithms {
                let eligible = self
                    .store_of(partition)
                    .indexable_template_ids(&algorithm.id)
                    .await?
                    .len();
                status.push(IndexStatus {
                    partition,
                    algorithm: algorithm.id.clone(),
                    indexed: biometrics.len(partition, &algorithm.id),
                    eligible,
                });
            }
        }
        Ok(status)
    }

    /// Ready when the biometric indexes are complete and every database answers.
    pub async fn ready(&self) -> Result<(), HubError> {
        self.biometrics()?;
        for database in [
            self.civil.database(),
            self.law_enforcement.database(),
            self.links.database(),
        ] {
            database.ping().await.map_err(|e| {
                tracing::warn!(error = %e, "database not answering");
                HubError::Unavailable
            })?;
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
        for database in [
            self.civil.database(),
            self.law_enforcement.database(),
            self.links.database(),
        ] {
            database.close().await;
        }
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
