//! Records: what connectors push, read back and delete — parse, store, index and detect,
//! one record at a time under its lock — and the sweep that finishes what a stop left
//! half-way (a detection, a delete).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use connectors::{NativeFormat, Partition, RecordRef, SourceSystem};
use serde::Serialize;
use utoipa::ToSchema;

use super::detection::Detector;
use super::feed::Feeds;
use super::guard::{Gate, Operation};
use super::parts::{DetectionMarks, Indexes, Partitions, RecordLocks};
use super::portal::{Purpose, purpose_admits_born};
use super::{
    IngestOutcome, LinkEnd, LinkView, RecordDetails, RecordView, responsible_state,
    state_responsible_for, statistics, timed,
};
use crate::access::Access;
use crate::access::Principal;
use crate::biometrics::Biometrics;
use crate::clock::Clock;
use crate::config::Settings;
use crate::error::HubError;
use crate::matching::{LinkColour, LinkRule};
use crate::metrics::{HubMetrics, IngestStep};
use crate::store::{Backend, LinkStore, StoredRecord, UpsertOutcome, UpsertRefusal};

/// The advisory lock key the sweeping hub holds (PostgreSQL): any fixed number no other lock
/// of the hub uses.
const SWEEPER_LOCK: i64 = 0x7377_6565_7065_7231;

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

/// The records service: ingest, read-back and delete of source systems' records, and the
/// sweep of unfinished work.
#[derive(Debug)]
pub struct Records {
    pub(super) gate: Arc<Gate>,
    pub(super) stores: Arc<Partitions>,
    pub(super) links: LinkStore,
    pub(super) indexes: Arc<Indexes>,
    pub(super) locks: RecordLocks,
    pub(super) marks: Arc<DetectionMarks>,
    pub(super) feeds: Arc<Feeds>,
    pub(super) detector: Detector,
    pub(super) settings: Arc<Settings>,
    pub(super) clock: Clock,
    pub(super) metrics: Arc<HubMetrics>,
}

impl Records {
    /// Brings every biometric index level with the store, then finishes detection for
    /// records a crash left undetected. The hub is ready afterwards.
    pub async fn prepare(&self, index_dir: &Path) -> Result<(), HubError> {
        // Before the store is read: what commits while it is being read comes from the feeds.
        let starts = self.feeds.starts().await?;
        let biometrics = Biometrics::open(
            &self.settings.biometrics,
            self.settings.index_tuning(),
            index_dir,
            |partition| self.stores.of(partition).clone(),
        )
        .await?;
        self.feeds.start_at(&starts)?;
        // What other hubs committed while the store was read, then what they left undetected.
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            self.feeds
                .read(partition, &biometrics, &self.metrics)
                .await?;
        }
        self.finish_detections_with(&biometrics).await?;
        // Only now is the hub ready: every index complete and level with the feeds, every
        // record's links detected.
        self.indexes.complete(biometrics);
        Ok(())
    }

    /// Finishes the detection of every record whose ingest stopped after storing it (the
    /// client was answered 503 and may never retry); answers how many it finished. Run
    /// periodically once the hub is ready.
    pub async fn finish_detections(&self) -> Result<usize, HubError> {
        self.finish_detections_with(self.indexes.ready()?).await
    }

    /// Finishes the deletes that stopped half-way, then the detections; a record that fails
    /// is logged and left for the next sweep, not allowed to hold up the others.
    async fn finish_detections_with(&self, biometrics: &Biometrics) -> Result<usize, HubError> {
        // One sweeper at a time among the hubs on these databases: another hub sweeping now
        // finishes the same records.
        let Some(_sweeper) = self
            .links
            .database()
            .try_advisory_lock(SWEEPER_LOCK)
            .await?
        else {
            return Ok(0);
        };
        for record in self.links.deletions().await? {
            if let Err(e) = self.finish_deletion(&record).await {
                tracing::warn!(system = %record.system, error = %e, "finishing a delete failed");
            }
        }
        let mut finished = 0;
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            // Marks still queued would make finished records look unfinished.
            self.marks.written(partition).await?;
            for record_id in self.stores.of(partition).undetected().await? {
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
        let _guard = self.locks.lock(record).await?;
        // Under the lock: the delete may have been running, and finished meanwhile.
        if !self.links.deletion_pending(record).await? {
            return Ok(());
        }
        let exists = self
            .stores
            .holding(record.system)
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
        let store = self.stores.of(partition);
        let Some(found) = store.get_by_id(record_id).await? else {
            return Ok(false);
        };
        let reference = RecordRef::new(found.record.system, found.record.source_id);
        let _guard = self.locks.lock(&reference).await?;
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
        self.detector.detect(biometrics, &stored.record).await?;
        self.marks
            .mark(partition, record_id, stored.record.version)
            .await?;
        Ok(true)
    }

    /// Waits until this hub's indexes hold every template that any hub committed before now,
    /// in both partitions: of two records of one person stored at the same moment through
    /// two hubs, the one detected second then always finds the other. Nothing to wait for
    /// where this process is the only writer (SQLite: the data directory's lock), whose own
    /// changes reach its indexes as they are made.
    async fn await_other_writers(&self) -> Result<(), HubError> {
        timed(&self.metrics, IngestStep::FeedWait, async {
            for partition in [Partition::Civil, Partition::LawEnforcement] {
                if self.stores.of(partition).database().backend() == Backend::Postgres {
                    self.feeds
                        .caught_up(partition, self.settings.feed.max_lag())
                        .await?;
                }
            }
            Ok(())
        })
        .await
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
        self.gate
            .guarded_counting(
                principal,
                Operation::Ingest(system),
                format!("system={system}"),
                |access| self.ingest_checked(access, system, content_type, body),
                |report| format!("{}:links={}", report.outcome.as_str(), report.links.len()),
                |result| {
                    let outcome = match result {
                        Ok(report) => report.outcome.as_str(),
                        Err(error) => error.code(),
                    };
                    self.metrics.ingest(system.as_str(), outcome);
                    // The quality counts are written with the audit entry, in its transaction.
                    ingest_counts(result)
                        .into_iter()
                        .map(|(kind, rule)| (system.as_str().to_owned(), kind.to_owned(), rule))
                        .collect()
                },
            )
            .await
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
        let accepted = timed(&self.metrics, IngestStep::Parse, async {
            connectors::parse(system, body, &self.settings.biometrics)
        })
        .await?;
        if responsible_state(&accepted.record) != access.principal().member_state {
            return Err(HubError::NotOwner);
        }
        let biometrics = self.indexes.ready()?;
        let reference = RecordRef::new(system, accepted.record.source_id.clone());
        let _guard = timed(
            &self.metrics,
            IngestStep::RecordLock,
            self.locks.lock(&reference),
        )
        .await?;
        let now = self.clock.now();
        let offered = accepted.record.version;
        let store = self.stores.holding(system);
        let upserted = timed(
            &self.metrics,
            IngestStep::Store,
            store.upsert(&accepted, now),
        )
        .await?
        .map_err(|refusal| match refusal {
            UpsertRefusal::Stale { stored } => HubError::VersionConflict { stored, offered },
            UpsertRefusal::VersionReused { version } => HubError::VersionReused { version },
            UpsertRefusal::OtherOwner => HubError::NotOwner,
        })?;
        // A replay of a version whose ingest stopped after storing it (the client was told
        // to retry) finishes what that ingest began: the index, the links, the mark.
        let links = if upserted.detection_pending {
            timed(&self.metrics, IngestStep::Index, async {
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
            self.await_other_writers().await?;
            let links = self.detector.detect(biometrics, &accepted.record).await?;
            timed(
                &self.metrics,
                IngestStep::DetectionMark,
                self.marks.mark(
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
                self.stores
                    .stored(system, &accepted.record.source_id)
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
        self.gate
            .guarded_read(
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
                        .stores
                        .holding(system)
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
                    let stored = self.stores.stored(system, source_id).await?;
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
        self.gate
            .guarded(
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
        let biometrics = self.indexes.ready()?;
        let reference = RecordRef::new(system, source_id);
        let _guard = self.locks.lock(&reference).await?;
        let store = self.stores.holding(system);
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
        self.marks.written(system.partition()).await?;
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
        ) => refused(vec![error.code().to_owned()]),
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
