//! The search portal (ESP): one biographic and/or biometric query fanned out to every
//! system the caller may query; each answers with field-filtered records, a bare hit flag,
//! or not at all.

use std::collections::{BTreeMap, BTreeSet};

use connectors::{
    DocumentKind, IdentityRecord, Modality, NameForms, NameKind, PartialDate, Partition,
    PersonName, RecordRef, Sex, SourceSystem, TravelDocument,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Hub, RecordView};
pub use crate::access::Purpose;
use crate::access::{Access, Answer, FieldGroup, Principal};
use crate::error::HubError;
use crate::matching::{BlockingKeys, DocumentAgreement, IdentityAgreement, compare_identity};
use crate::store::{StoredLink, StoredRecord};

/// Records one system answers with at most.
const RECORDS_PER_SYSTEM: usize = 20;
/// Nearest neighbours fetched per probe template.
const NEIGHBOURS_PER_PROBE: usize = 20;
/// Police identity checks never concern children under this age (CIR Art. 20).
const IDENTITY_CHECK_MINIMUM_AGE: i32 = 12;

/// Identity data to search by; any subset, but a name needs a date of birth.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BiographicQuery {
    pub surname: Option<String>,
    pub given_names: Option<String>,
    /// `YYYY-MM-DD`, `YYYY-MM` or `YYYY`.
    pub date_of_birth: Option<String>,
    /// ICAO / ISO 3166-1 alpha-3.
    pub nationality: Option<String>,
    pub document_number: Option<String>,
}

/// A live capture to search by.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BiometricProbe {
    pub modality: Modality,
    /// A registered algorithm of that modality.
    pub algorithm: String,
    /// base64 of little-endian float32 values, the algorithm's dimension.
    pub data: String,
}

/// A search across systems.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub purpose: Purpose,
    pub biographic: Option<BiographicQuery>,
    #[serde(default)]
    pub biometric: Vec<BiometricProbe>,
    /// Systems to query; default: every system the caller may query.
    pub systems: Option<Vec<SourceSystem>>,
}

/// A matching record, with the fields and links the caller may see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FoundRecord {
    pub record: RecordView,
    /// What matched: `identity`, `document`, `biometric:face`, …
    pub matched_on: Vec<String>,
    /// The record's links the caller may see.
    pub links: Vec<StoredLink>,
}

/// A system's full answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SystemRecords {
    pub system: SourceSystem,
    /// The field groups shown.
    pub fields: BTreeSet<FieldGroup>,
    pub records: Vec<FoundRecord>,
}

/// Only whether the system holds data on the person: no ids, counts or scores, the same
/// body whether one, many or no records matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HitFlag {
    pub system: SourceSystem,
    pub hit: bool,
}

/// One system's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SystemAnswer {
    Records(SystemRecords),
    HitFlag(HitFlag),
}

/// One entry per system the caller may query and asked for; none for the others.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchAnswer {
    pub results: Vec<SystemAnswer>,
}

impl SearchAnswer {
    /// `ees:full=2 vis:hit=true`: the kind of result, for the audit log.
    fn summary(&self) -> String {
        self.results
            .iter()
            .map(|answer| match answer {
                SystemAnswer::Records(r) => format!("{}:full={}", r.system, r.records.len()),
                SystemAnswer::HitFlag(h) => format!("{}:hit={}", h.system, h.hit),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A checked query: the identity to compare with, and decoded probes.
struct Probe {
    identity: Option<IdentityRecord>,
    /// A name was given (with a date of birth): identity agreement counts as a match.
    by_name: bool,
    templates: Vec<(Modality, String, Vec<f32>)>,
}

impl SearchRequest {
    /// `purpose=… by=surname+date_of_birth+face systems=ees,vis`: never the values.
    fn describe(&self) -> String {
        let mut by: Vec<&str> = Vec::new();
        if let Some(b) = &self.biographic {
            for (present, name) in [
                (b.surname.is_some(), "surname"),
                (b.given_names.is_some(), "given_names"),
                (b.date_of_birth.is_some(), "date_of_birth"),
                (b.nationality.is_some(), "nationality"),
                (b.document_number.is_some(), "document_number"),
            ] {
                if present {
                    by.push(name);
                }
            }
        }
        by.extend(self.biometric.iter().map(|p| p.modality.as_str()));
        let systems = self.systems.as_ref().map_or_else(
            || "all".to_owned(),
            |s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        );
        format!("by={} systems={systems}", by.join("+"))
    }
}

fn invalid(pointer: &str, rule: &'static str, message: impl Into<String>) -> HubError {
    HubError::Invalid {
        errors: vec![connectors::FieldError::new(pointer, rule, message)],
    }
}

fn present(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

impl Hub {
    /// Searches every system the caller may query (or those asked for) and answers each
    /// as the policy says: records with permitted fields, a hit flag, or nothing.
    #[tracing::instrument(name = "search", skip_all, fields(purpose = request.purpose.as_str()))]
    pub async fn search(
        &self,
        principal: &Principal,
        request: SearchRequest,
    ) -> Result<SearchAnswer, HubError> {
        let described = request.describe();
        let purpose = request.purpose.as_str();
        let result = self.search_checked(principal, request).await;
        self.audited(
            principal,
            purpose,
            "search",
            described,
            result,
            SearchAnswer::summary,
        )
        .await
    }

    async fn search_checked(
        &self,
        principal: &Principal,
        request: SearchRequest,
    ) -> Result<SearchAnswer, HubError> {
        let access = self.access(principal).await?;
        // Purpose limitation: a principal searches only for the purposes its roles serve.
        if !access.may_declare(request.purpose)
            || SourceSystem::ALL
                .iter()
                .all(|s| access.answer(*s) == Answer::Nothing)
        {
            return Err(HubError::Forbidden);
        }
        let probe = self.probe(&request)?;
        let asked: BTreeSet<SourceSystem> = request.systems.clone().map_or_else(
            || SourceSystem::ALL.into_iter().collect(),
            |s| s.into_iter().collect(),
        );
        let queried: Vec<(SourceSystem, Answer)> = SourceSystem::ALL
            .into_iter()
            .filter(|s| asked.contains(s))
            .map(|s| (s, access.answer(s)))
            .filter(|(_, answer)| *answer != Answer::Nothing)
            .collect();
        let systems: BTreeSet<SourceSystem> = queried.iter().map(|(s, _)| *s).collect();
        let now = self.clock.now();
        let mut found = self.matches(&probe, &systems).await?;
        if request.purpose == Purpose::IdentityCheck {
            found.retain(|_, (stored, _)| {
                !possibly_younger_than(stored, IDENTITY_CHECK_MINIMUM_AGE, now)
            });
        }
        // Every system takes the same path whatever its answer: the records are found and
        // ranked first, and only then reduced to what the caller may see.
        let mut results = Vec::new();
        for (system, answer) in queried {
            let mut records: Vec<(&StoredRecord, &BTreeSet<String>)> = found
                .values()
                .filter(|(stored, _)| stored.record.system == system)
                .map(|(stored, matched)| (stored, matched))
                .collect();
            records.sort_by_key(|(_, matched)| std::cmp::Reverse(matched.len()));
            match answer {
                Answer::Full(fields) => {
                    let mut shown = Vec::new();
                    for (stored, matched) in records.into_iter().take(RECORDS_PER_SYSTEM) {
                        shown.push(self.found_record(&access, stored, matched, &fields).await?);
                    }
                    results.push(SystemAnswer::Records(SystemRecords {
                        system,
                        fields,
                        records: shown,
                    }));
                }
                Answer::HitFlag => results.push(SystemAnswer::HitFlag(HitFlag {
                    system,
                    hit: !records.is_empty(),
                })),
                Answer::Nothing => {}
            }
        }
        Ok(SearchAnswer { results })
    }

    async fn found_record(
        &self,
        access: &Access,
        stored: &StoredRecord,
        matched: &BTreeSet<String>,
        fields: &BTreeSet<FieldGroup>,
    ) -> Result<FoundRecord, HubError> {
        let reference = RecordRef::new(stored.record.system, stored.record.source_id.clone());
        let links = self
            .links
            .links_of(&reference)
            .await?
            .into_iter()
            .filter(|link| access.can_see_link(link))
            .collect();
        Ok(FoundRecord {
            record: RecordView::new(stored, fields),
            matched_on: matched.iter().cloned().collect(),
            links,
        })
    }

    /// Checks the query and decodes its probes; every fault is named by its JSON pointer.
    fn probe(&self, request: &SearchRequest) -> Result<Probe, HubError> {
        let biographic = request.biographic.clone().unwrap_or_default();
        let surname = present(&biographic.surname);
        let document = present(&biographic.document_number);
        let date_of_birth = present(&biographic.date_of_birth)
            .map(|d| {
                d.parse::<PartialDate>().map_err(|_| {
                    invalid(
                        "/biographic/date_of_birth",
                        connectors::rule::INVALID_DATE,
                        "expected YYYY-MM-DD, YYYY-MM or YYYY",
                    )
                })
            })
            .transpose()?;
        if surname.is_some() && date_of_birth.is_none() {
            return Err(invalid(
                "/biographic/date_of_birth",
                connectors::rule::REQUIRED,
                "a search by name needs a date of birth",
            ));
        }
        if request.purpose == Purpose::IdentityCheck && request.biometric.is_empty() {
            return Err(invalid(
                "/biometric",
                connectors::rule::REQUIRED,
                "an identity check queries by live biometrics",
            ));
        }
        let mut templates = Vec::new();
        for (i, probe) in request.biometric.iter().enumerate() {
            let (algorithm, vector) =
                self.decode_probe(&probe.algorithm, &probe.data, &format!("/biometric/{i}"))?;
            if algorithm.modality != probe.modality {
                return Err(invalid(
                    &format!("/biometric/{i}/modality"),
                    connectors::rule::ALGORITHM_MODALITY_MISMATCH,
                    "the algorithm is registered for another modality",
                ));
            }
            templates.push((probe.modality, algorithm.id.clone(), vector));
        }
        let by_name = surname.is_some();
        if !by_name && document.is_none() && templates.is_empty() {
            return Err(invalid(
                "",
                connectors::rule::REQUIRED,
                "search by a surname with a date of birth, a document number or a biometric probe",
            ));
        }
        let identity = (by_name || document.is_some()).then(|| IdentityRecord {
            system: SourceSystem::Ees,
            source_id: String::new(),
            version: 1,
            member_state: None,
            names: surname
                .map(|surname| PersonName {
                    kind: NameKind::Primary,
                    surname: NameForms::new(surname),
                    given_names: NameForms::new(present(&biographic.given_names).unwrap_or("")),
                })
                .into_iter()
                .collect(),
            // Year 0 is in no block: without a date only the document block applies.
            date_of_birth: date_of_birth.unwrap_or(PartialDate {
                year: 0,
                month: None,
                day: None,
            }),
            place_of_birth: None,
            sex: Sex::X,
            nationalities: present(&biographic.nationality)
                .map(|n| n.to_uppercase())
                .into_iter()
                .collect(),
            travel_documents: document
                .map(|number| TravelDocument {
                    kind: DocumentKind::Other,
                    number: number.to_owned(),
                    number_normalised: TravelDocument::normalise_number(number),
                    issuing_country: None,
                    expiry: None,
                })
                .into_iter()
                .collect(),
            templates: Vec::new(),
            attributes: serde_json::Map::new(),
        });
        Ok(Probe {
            identity,
            by_name,
            templates,
        })
    }

    /// Records of `systems` matching the probe, each with what matched.
    async fn matches(
        &self,
        probe: &Probe,
        systems: &BTreeSet<SourceSystem>,
    ) -> Result<BTreeMap<RecordRef, (StoredRecord, BTreeSet<String>)>, HubError> {
        let mut found: BTreeMap<RecordRef, (StoredRecord, BTreeSet<String>)> = BTreeMap::new();
        let partitions: Vec<Partition> = systems
            .iter()
            .map(|s| s.partition())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Some(identity) = &probe.identity {
            let keys = BlockingKeys::of(identity);
            for partition in &partitions {
                let store = self.store_of(*partition);
                let candidates = store.candidates(&keys, None).await?;
                for stored in store.get_many_by_id(&candidates).await? {
                    if !systems.contains(&stored.record.system) {
                        continue;
                    }
                    let comparison = compare_identity(identity, &stored.record);
                    let mut matched = BTreeSet::new();
                    if comparison.document == DocumentAgreement::Same {
                        matched.insert("document".to_owned());
                    }
                    if probe.by_name && comparison.identity != IdentityAgreement::Different {
                        matched.insert("identity".to_owned());
                    }
                    if !matched.is_empty() {
                        let reference =
                            RecordRef::new(stored.record.system, stored.record.source_id.clone());
                        found
                            .entry(reference)
                            .or_insert_with(|| (stored, BTreeSet::new()))
                            .1
                            .extend(matched);
                    }
                }
            }
        }
        if !probe.templates.is_empty() {
            let biometrics = self.biometrics()?;
            // Records hit that the biographic search did not find: loaded together below.
            let mut pending: BTreeMap<RecordRef, (Partition, i64, BTreeSet<String>)> =
                BTreeMap::new();
            // All templates at once: one blocking task per partition, and two fingers of
            // one algorithm share a scan.
            let found_each = biometrics
                .search_each(
                    probe
                        .templates
                        .iter()
                        .map(|(_, algorithm, vector)| (algorithm.clone(), vector.clone()))
                        .collect(),
                    NEIGHBOURS_PER_PROBE,
                    None,
                    &partitions,
                )
                .await?;
            for ((modality, algorithm, _), hits) in probe.templates.iter().zip(found_each) {
                let threshold = self
                    .settings
                    .biometrics
                    .get(algorithm)
                    .map_or(f32::INFINITY, |a| a.match_threshold);
                for hit in hits.into_iter().filter(|h| {
                    h.similarity >= threshold && systems.contains(&h.owner.record.system)
                }) {
                    let matched = format!("biometric:{}", modality.as_str());
                    if let Some(entry) = found.get_mut(&hit.owner.record) {
                        entry.1.insert(matched);
                        continue;
                    }
                    pending
                        .entry(hit.owner.record)
                        .or_insert_with(|| (hit.partition, hit.owner.record_id, BTreeSet::new()))
                        .2
                        .insert(matched);
                }
            }
            for partition in &partitions {
                let ids: Vec<i64> = pending
                    .values()
                    .filter(|(p, _, _)| p == partition)
                    .map(|(_, id, _)| *id)
                    .collect();
                for stored in self.store_of(*partition).get_many_by_id(&ids).await? {
                    let reference =
                        RecordRef::new(stored.record.system, stored.record.source_id.clone());
                    if let Some((_, _, matched)) = pending.remove(&reference) {
                        found.insert(reference, (stored, matched));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// Whether the person may be younger than `years` at `now`, given the precision of the
/// date of birth (a year-only date counts the youngest the person could be).
fn possibly_younger_than(stored: &StoredRecord, years: i32, now: OffsetDateTime) -> bool {
    let born = stored.record.date_of_birth;
    let month = born.month.unwrap_or(12);
    let day = born.day.unwrap_or(31);
    let today = (now.year(), u8::from(now.month()), now.day());
    let birthday_reached = (today.1, today.2) >= (month, day);
    let age = today.0 - i32::from(born.year) - i32::from(!birthday_reached);
    age < years
}

#[cfg(test)]
mod tests {
    use super::*;

    fn born(date: &str) -> StoredRecord {
        let body = include_str!("../../../tests/fixtures/ees.json").replace("1990-04-17", date);
        let accepted = connectors::parse(
            SourceSystem::Ees,
            body.as_bytes(),
            &connectors::AlgorithmRegistry::default(),
        )
        .unwrap_or_else(|e| panic!("fixture: {e:?}"));
        StoredRecord {
            partition: connectors::Partition::Civil,
            stored_at: OffsetDateTime::UNIX_EPOCH,
            record: accepted.record,
            findings: Vec::new(),
        }
    }

    #[test]
    fn identity_checks_count_the_youngest_a_partial_date_allows() {
        let now = time::macros::datetime!(2026-11-27 12:00 UTC);
        assert!(
            !possibly_younger_than(&born("2014-11-27"), 12, now),
            "12 today"
        );
        assert!(
            possibly_younger_than(&born("2014-11-28"), 12, now),
            "12 tomorrow"
        );
        assert!(
            possibly_younger_than(&born("2014"), 12, now),
            "maybe born in December"
        );
        assert!(!possibly_younger_than(&born("2013"), 12, now));
        assert!(possibly_younger_than(&born("2014-12"), 12, now));
    }
}
