//! The multiple-identity detector: finds a record's candidates in both partitions (blocking
//! keys, 1:N biometric search, its existing links), weighs each pair with the domain's rules
//! and keeps the links in step — no link outliving either of its records.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use connectors::{IdentityRecord, Partition, RecordRef, SourceSystem};
use time::OffsetDateTime;

use super::parts::Partitions;
use super::timed;
use crate::biometrics::Biometrics;
use crate::clock::Clock;
use crate::config::Settings;
use crate::error::HubError;
use crate::matching::BlockingKeys;
use crate::metrics::{HubMetrics, IngestStep};
use crate::store::{LinkStore, NewLink, StoredLink, StoredRecord};

/// The detector and what it reads and writes.
#[derive(Debug)]
pub(crate) struct Detector {
    pub(super) stores: Arc<Partitions>,
    pub(super) links: LinkStore,
    pub(super) settings: Arc<Settings>,
    pub(super) clock: Clock,
    pub(super) metrics: Arc<HubMetrics>,
}

/// The record at the other end of `link` from `record`.
fn other_end<'a>(link: &'a StoredLink, record: &RecordRef) -> &'a RecordRef {
    let [a, b] = &link.records;
    if a == record { b } else { a }
}

impl Detector {
    /// The multiple-identity detector: compares `record` with the records of every other
    /// system, in both partitions, found by blocking keys, by 1:N biometric search and by
    /// its existing links; stores the resulting links and drops the detector's links whose
    /// pair no longer qualifies. A verifier's decision is never dropped.
    #[tracing::instrument(name = "detect", skip_all, fields(system = %record.system))]
    pub(crate) async fn detect(
        &self,
        biometrics: &Biometrics,
        record: &IdentityRecord,
    ) -> Result<Vec<StoredLink>, HubError> {
        let now = self.clock.now();
        let reference = RecordRef::new(record.system, record.source_id.clone());
        let mut candidates: BTreeMap<Partition, BTreeSet<i64>> = BTreeMap::new();

        let keys = BlockingKeys::of(record);
        timed(&self.metrics, IngestStep::BlockingCandidates, async {
            for partition in [Partition::Civil, Partition::LawEnforcement] {
                // Never the record's own system: its records are not compared with it.
                let others: Vec<SourceSystem> = SourceSystem::ALL
                    .into_iter()
                    .filter(|s| s.partition() == partition && *s != record.system)
                    .collect();
                let found = self.stores.of(partition).candidates(&keys, &others).await?;
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
        let found = timed(
            &self.metrics,
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
        timed(
            &self.metrics,
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
                .stores
                .holding(other.system)
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
            others.extend(self.stores.of(partition).get_many_by_id(&ids).await?);
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
                .stores
                .holding(other.system)
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
}

/// The storage row of a link the detector made; its evidence as the JSON the confirmation
/// file shows.
fn stored_link(detected: crate::mid::DetectedLink) -> Result<NewLink, HubError> {
    let evidence = serde_json::to_string(&detected.evidence)
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
