//! The search portal (ESP): one biographic and/or biometric query fanned out to every
//! system the caller may query; each answers with field-filtered records, a bare hit flag,
//! or not at all.

use std::collections::{BTreeMap, BTreeSet};

use connectors::{
    DocumentKind, IdentityRecord, Modality, NameForms, NameKind, PartialDate, Partition,
    PersonName, RecordRef, Sex, SourceSystem, TextKind, TravelDocument,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use std::sync::Arc;

use super::guard::{Gate, Operation};
use super::parts::{Indexes, Partitions};
use super::{LinkView, RecordView};
pub use crate::access::Purpose;
use crate::access::{Access, Answer, FieldGroup, Principal};
use crate::clock::Clock;
use crate::config::Settings;
use crate::error::HubError;
use crate::matching::{BlockingKeys, DocumentAgreement, IdentityAgreement, compare_identity};
use crate::store::LinkStore;
use crate::store::StoredRecord;

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

/// Records one system answers with at most.
const RECORDS_PER_SYSTEM: usize = 20;
/// Biometric probes one search takes at most (a face, ten fingers, two irises).
const MAX_PROBES: usize = 13;
/// Nearest neighbours fetched per probe template.
const NEIGHBOURS_PER_PROBE: usize = 20;
/// Police identity checks never concern children under this age (CIR Art. 20).
const IDENTITY_CHECK_MINIMUM_AGE: i32 = 12;
/// How far ahead of the hub's clock a capture's time may lie (the device's clock drifts).
const CAPTURE_CLOCK_SKEW: time::Duration = time::Duration::minutes(1);
/// The refusal rule of a capture too old (or too far ahead) to count as live.
pub(super) const STALE_CAPTURE: &str = "stale_capture";

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

/// When and where a probe was captured: an identity check searches only by live
/// captures.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// RFC 3339; for an identity check within the hub's `max_capture_age_seconds` of now.
    #[schema(example = "2026-12-07T09:30:00Z")]
    pub captured_at: String,
    /// The capturing device's id: 1-64 letters, digits and `.`, `_`, `-`, `:`.
    #[schema(example = "DE-BPOL-MOBILE-0042")]
    pub device: String,
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
    /// Required for an identity check.
    pub capture: Option<Capture>,
}

/// Why an identity check falls back to identity data (CIR Art. 20): recorded in the
/// audit log; only then may it search by name, date of birth or document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// No usable capture could be taken.
    BiometricsUnusable,
    /// The biometric query was made and failed.
    BiometricQueryFailed,
}

impl Fallback {
    fn as_str(self) -> &'static str {
        match self {
            Self::BiometricsUnusable => "biometrics_unusable",
            Self::BiometricQueryFailed => "biometric_query_failed",
        }
    }
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
    /// An identity check only: search by identity data instead of live biometrics, and why.
    pub fallback: Option<Fallback>,
    /// The national case reference: required for `serious_crime`, recorded in the audit
    /// log. 1-64 letters, digits and `.`, `_`, `-`, `/`, `:`.
    #[schema(example = "BKA-2026-0815")]
    pub case_reference: Option<String>,
}

/// A matching record, with the fields and links the caller may see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FoundRecord {
    pub record: RecordView,
    /// What matched: `identity`, `document`, `biometric:face`, …
    pub matched_on: Vec<String>,
    /// The record's links the caller may see, each as far as the caller may see it.
    pub links: Vec<LinkView>,
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
        let mut described = format!("by={} systems={systems}", by.join("+"));
        if let Some(fallback) = self.fallback {
            described.push_str(&format!(" fallback={}", fallback.as_str()));
        }
        // Checked before it is logged: a reference that is not one is refused unlogged.
        if let Some(case) = self.case_reference.as_deref().filter(|c| is_reference(c)) {
            described.push_str(&format!(" case={case}"));
        }
        described
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

/// A case reference or device id: short, and nothing but letters, digits and a few
/// separators (it is logged as it is).
fn is_reference(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':'))
}

/// One system to query, and how it answers the caller.
struct Queried {
    system: SourceSystem,
    answer: Answer,
}

/// Neighbours a 1:N search asks each partition's index for, per record wanted: several
/// templates of one record can hit (two fingers).
pub const NEIGHBOURS_PER_WANTED_RECORD: usize = 4;

/// The search portal and the shared biometric matching service's 1:N search: one query
/// across every system the caller may query, each answered as the policy and the purpose
/// say.
#[derive(Debug)]
pub struct Portal {
    pub(super) gate: Arc<Gate>,
    pub(super) stores: Arc<Partitions>,
    pub(super) links: LinkStore,
    pub(super) indexes: Arc<Indexes>,
    pub(super) settings: Arc<Settings>,
    pub(super) clock: Clock,
}

impl Portal {
    /// Searches every system the caller may query for the declared purpose (or those asked
    /// for) and answers each as the policy and the purpose say: records with permitted
    /// fields, a hit flag, or nothing.
    #[tracing::instrument(name = "search", skip_all, fields(purpose = request.purpose.as_str()))]
    pub async fn search(
        &self,
        principal: &Principal,
        request: SearchRequest,
    ) -> Result<SearchAnswer, HubError> {
        let purpose = request.purpose;
        let answer = self
            .gate
            .guarded_read(
                principal,
                Operation::Search(purpose),
                request.describe(),
                |access| self.search_checked(access, request.clone()),
                SearchAnswer::summary,
            )
            .await?;
        if answer
            .results
            .iter()
            .any(|r| matches!(r, SystemAnswer::HitFlag(_)))
        {
            self.gate
                .count_hit_flag_search(principal, purpose, self.clock.now())
                .await;
        }
        Ok(answer)
    }

    async fn search_checked(
        &self,
        access: Arc<Access>,
        request: SearchRequest,
    ) -> Result<SearchAnswer, HubError> {
        let purpose = request.purpose;
        if SourceSystem::ALL
            .iter()
            .all(|s| access.answer_for(purpose, *s) == Answer::Nothing)
        {
            return Err(HubError::Forbidden);
        }
        let probe = self.probe(&request)?;
        let asked: BTreeSet<SourceSystem> = request.systems.clone().map_or_else(
            || SourceSystem::ALL.into_iter().collect(),
            |s| s.into_iter().collect(),
        );
        // Systems the caller may not query are never touched: not loaded, not compared.
        let queried: Vec<Queried> = SourceSystem::ALL
            .into_iter()
            .filter(|s| asked.contains(s))
            .map(|system| Queried {
                system,
                answer: access.answer_for(purpose, system),
            })
            .filter(|q| q.answer != Answer::Nothing)
            .collect();
        let found = self.matches(&probe, &queried, purpose).await?;
        let matched: BTreeSet<RecordRef> = found
            .full
            .values()
            .map(|(stored, _)| {
                RecordRef::new(stored.record.system, stored.record.source_id.clone())
            })
            .collect();
        let mut results = Vec::new();
        for Queried { system, answer } in queried {
            match answer {
                Answer::Full(fields) => {
                    let mut records: Vec<(&StoredRecord, &BTreeSet<String>)> = found
                        .full
                        .values()
                        .filter(|(stored, _)| stored.record.system == system)
                        .map(|(stored, matched)| (stored, matched))
                        .collect();
                    records.sort_by_key(|(_, matched)| std::cmp::Reverse(matched.len()));
                    let mut shown = Vec::new();
                    for (stored, on) in records.into_iter().take(RECORDS_PER_SYSTEM) {
                        shown.push(
                            self.found_record(&access, purpose, stored, on, &fields, &matched)
                                .await?,
                        );
                    }
                    results.push(SystemAnswer::Records(SystemRecords {
                        system,
                        fields,
                        records: shown,
                    }));
                }
                Answer::HitFlag => results.push(SystemAnswer::HitFlag(HitFlag {
                    system,
                    hit: found.flagged.contains(&system),
                })),
                Answer::Nothing => {}
            }
        }
        Ok(SearchAnswer { results })
    }

    async fn found_record(
        &self,
        access: &Access,
        purpose: Purpose,
        stored: &StoredRecord,
        on: &BTreeSet<String>,
        fields: &BTreeSet<FieldGroup>,
        matched: &BTreeSet<RecordRef>,
    ) -> Result<FoundRecord, HubError> {
        let reference = RecordRef::new(stored.record.system, stored.record.source_id.clone());
        // An identity check sees identity and document data only: a link is neither, and
        // its other end may be a child no identity check may learn of.
        let links = if purpose == Purpose::IdentityCheck {
            Vec::new()
        } else {
            self.links
                .links_of(&reference)
                .await?
                .iter()
                .filter_map(|link| {
                    let both_matched = link.records.iter().all(|r| matched.contains(r));
                    let sight = access.sight_of(link, both_matched)?;
                    Some(LinkView::new(link, sight))
                })
                .collect()
        };
        Ok(FoundRecord {
            record: RecordView::new(stored, fields),
            matched_on: on.iter().cloned().collect(),
            links,
        })
    }

    /// A probe's capture, checked for `purpose`: an identity check needs one, taken within
    /// the hub's live window (a minute's clock skew allowed ahead of now).
    pub(super) fn check_capture(
        &self,
        purpose: Purpose,
        capture: Option<&Capture>,
        at: &str,
    ) -> Result<(), HubError> {
        let Some(capture) = capture else {
            return if purpose == Purpose::IdentityCheck {
                Err(invalid(
                    at,
                    connectors::rule::REQUIRED,
                    "an identity check searches by live biometrics: give captured_at and device",
                ))
            } else {
                Ok(())
            };
        };
        if !is_reference(&capture.device) {
            return Err(invalid(
                &format!("{at}/device"),
                connectors::rule::WRONG_TYPE,
                "1-64 letters, digits and . _ - / :",
            ));
        }
        let captured_at = OffsetDateTime::parse(
            &capture.captured_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| {
            invalid(
                &format!("{at}/captured_at"),
                connectors::rule::INVALID_TIMESTAMP,
                "expected an RFC 3339 timestamp",
            )
        })?;
        if purpose == Purpose::IdentityCheck {
            let now = self.clock.now();
            let max_age = time::Duration::seconds(i64::from(
                self.settings.identity_check.max_capture_age_seconds,
            ));
            if captured_at < now - max_age || captured_at > now + CAPTURE_CLOCK_SKEW {
                return Err(invalid(
                    &format!("{at}/captured_at"),
                    STALE_CAPTURE,
                    "an identity check searches by a capture taken just now",
                ));
            }
        }
        Ok(())
    }

    /// Checks the query and decodes its probes; every fault is named by its JSON pointer.
    fn probe(&self, request: &SearchRequest) -> Result<Probe, HubError> {
        let biographic = request.biographic.clone().unwrap_or_default();
        // The bounds of the records searched: nothing longer is ever compared.
        for (field, text, kind) in [
            ("surname", &biographic.surname, TextKind::Name),
            ("given_names", &biographic.given_names, TextKind::Name),
            (
                "document_number",
                &biographic.document_number,
                TextKind::DocumentNumber,
            ),
            ("nationality", &biographic.nationality, TextKind::Identifier),
        ] {
            if let Some((rule, message)) = text
                .as_deref()
                .and_then(|text| connectors::text_problem(text, kind))
            {
                return Err(invalid(&format!("/biographic/{field}"), rule, message));
            }
        }
        if request.biometric.len() > MAX_PROBES {
            return Err(invalid(
                "/biometric",
                connectors::rule::TOO_MANY,
                format!("expected at most {MAX_PROBES} probes"),
            ));
        }
        if request
            .systems
            .as_ref()
            .is_some_and(|s| s.len() > SourceSystem::ALL.len())
        {
            return Err(invalid(
                "/systems",
                connectors::rule::TOO_MANY,
                "expected each system at most once",
            ));
        }
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
        self.check_purpose_rules(request, surname.is_some() || document.is_some())?;
        let mut templates = Vec::new();
        for (i, probe) in request.biometric.iter().enumerate() {
            self.check_capture(
                request.purpose,
                probe.capture.as_ref(),
                &format!("/biometric/{i}/capture"),
            )?;
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

    /// What each purpose asks of a query: an identity check searches by live biometrics,
    /// by identity data only as a declared fallback; serious crime names its case.
    fn check_purpose_rules(
        &self,
        request: &SearchRequest,
        by_identity: bool,
    ) -> Result<(), HubError> {
        let identity_check = request.purpose == Purpose::IdentityCheck;
        match (identity_check, request.fallback) {
            (false, Some(_)) => {
                return Err(invalid(
                    "/fallback",
                    connectors::rule::UNEXPECTED,
                    "only an identity check falls back to identity data",
                ));
            }
            (true, None) if by_identity => {
                return Err(invalid(
                    "/biographic",
                    connectors::rule::UNEXPECTED,
                    "an identity check searches by live biometrics; identity data only with a declared fallback",
                ));
            }
            (true, None) if request.biometric.is_empty() => {
                return Err(invalid(
                    "/biometric",
                    connectors::rule::REQUIRED,
                    "an identity check searches by live biometrics",
                ));
            }
            (true, Some(_)) if !request.biometric.is_empty() => {
                return Err(invalid(
                    "/biometric",
                    connectors::rule::UNEXPECTED,
                    "a fallback searches by identity data instead of biometrics",
                ));
            }
            _ => {}
        }
        match request.case_reference.as_deref() {
            None if request.purpose == Purpose::SeriousCrime => Err(invalid(
                "/case_reference",
                connectors::rule::REQUIRED,
                "a serious-crime search names its national case reference",
            )),
            Some(case) if !is_reference(case) => Err(invalid(
                "/case_reference",
                connectors::rule::WRONG_TYPE,
                "1-64 letters, digits and . _ - / :",
            )),
            _ => Ok(()),
        }
    }

    /// Records matching the probe in the queried systems: every match of a system that
    /// answers in full, each with what matched, and the hit-flag systems that hold one.
    async fn matches(
        &self,
        probe: &Probe,
        queried: &[Queried],
        purpose: Purpose,
    ) -> Result<Found, HubError> {
        let now = self.clock.now();
        let mut found = Found::default();
        let full: BTreeSet<SourceSystem> = queried
            .iter()
            .filter(|q| matches!(q.answer, Answer::Full(_)))
            .map(|q| q.system)
            .collect();
        let flagged: BTreeSet<SourceSystem> = queried
            .iter()
            .filter(|q| q.answer == Answer::HitFlag)
            .map(|q| q.system)
            .collect();
        let partitions: BTreeSet<Partition> =
            queried.iter().map(|q| q.system.partition()).collect();
        if let Some(identity) = &probe.identity {
            let keys = BlockingKeys::of(identity);
            let matched_on = |stored: &StoredRecord| {
                let comparison = compare_identity(identity, &stored.record);
                let mut matched = BTreeSet::new();
                if comparison.document == DocumentAgreement::Same {
                    matched.insert("document".to_owned());
                }
                if probe.by_name && comparison.identity != IdentityAgreement::Different {
                    matched.insert("identity".to_owned());
                }
                if !purpose_admits(purpose, stored, now) {
                    matched.clear();
                }
                matched
            };
            for partition in &partitions {
                let store = self.stores.of(*partition);
                let systems: Vec<SourceSystem> = full
                    .iter()
                    .copied()
                    .filter(|s| s.partition() == *partition)
                    .collect();
                let ids: Vec<i64> = store
                    .candidates(&keys, &systems)
                    .await?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                for stored in store.get_many_by_id(&ids).await? {
                    let matched = matched_on(&stored);
                    if !matched.is_empty() {
                        found.add(stored, matched);
                    }
                }
                // A hit flag stops at its system's first match, taking candidates one at a
                // time: one match or thirty cost the same, and nothing after the first
                // depends on the data.
                for system in flagged.iter().filter(|s| s.partition() == *partition) {
                    let mut skip = 0;
                    while let Some(id) = store.nth_candidate(&keys, *system, skip).await? {
                        skip += 1;
                        let Some(stored) = store.get_by_id(id).await? else {
                            continue;
                        };
                        if !matched_on(&stored).is_empty() {
                            found.flagged.insert(*system);
                            break;
                        }
                    }
                }
            }
        }
        if !probe.templates.is_empty() {
            self.biometric_matches(probe, &full, &flagged, purpose, &mut found)
                .await?;
        }
        Ok(found)
    }

    async fn biometric_matches(
        &self,
        probe: &Probe,
        full: &BTreeSet<SourceSystem>,
        flagged: &BTreeSet<SourceSystem>,
        purpose: Purpose,
        found: &mut Found,
    ) -> Result<(), HubError> {
        let biometrics = self.indexes.ready()?;
        let partitions: Vec<Partition> = full
            .iter()
            .chain(flagged)
            .map(|s| s.partition())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Records hit that the biographic search did not find: loaded together below.
        let mut pending: BTreeMap<RecordRef, (Partition, i64, BTreeSet<String>)> = BTreeMap::new();
        // All templates at once: one blocking task per partition, and two fingers of one
        // algorithm share a scan.
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
            for hit in hits.into_iter().filter(|h| h.similarity >= threshold) {
                let system = hit.owner.record.system;
                if flagged.contains(&system) && !purpose_needs_records(purpose) {
                    found.flagged.insert(system);
                    continue;
                }
                if !full.contains(&system) && !flagged.contains(&system) {
                    continue;
                }
                let matched = format!("biometric:{}", modality.as_str());
                if let Some(entry) = found.full.get_mut(&hit.owner.record) {
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
        let now = self.clock.now();
        for partition in &partitions {
            let ids: Vec<i64> = pending
                .values()
                .filter(|(p, _, _)| p == partition)
                .map(|(_, id, _)| *id)
                .collect();
            for stored in self.stores.of(*partition).get_many_by_id(&ids).await? {
                let reference =
                    RecordRef::new(stored.record.system, stored.record.source_id.clone());
                let Some((_, _, matched)) = pending.remove(&reference) else {
                    continue;
                };
                if !purpose_admits(purpose, &stored, now) {
                    continue;
                }
                if flagged.contains(&stored.record.system) {
                    found.flagged.insert(stored.record.system);
                } else {
                    found.add(stored, matched);
                }
            }
        }
        Ok(())
    }

    /// 1:N search of both partitions' indexes of one algorithm, by record, best first;
    /// only records the caller may read for the declared purpose are answered.
    #[tracing::instrument(name = "search_biometric", skip_all)]
    pub async fn search_biometric(
        &self,
        principal: &Principal,
        search: BiometricSearch,
    ) -> Result<BiometricSearchAnswer, HubError> {
        self.gate
            .guarded_read(
                principal,
                Operation::BiometricSearch(search.purpose),
                format!("biometric={}", search.algorithm),
                |access| self.search_biometric_checked(access, search.clone()),
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
        let biometrics = self.indexes.ready()?;
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
                for stored in self.stores.of(*partition).get_many_by_id(&ids).await? {
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
}

/// What a search found: every match of the systems answering in full, and the hit-flag
/// systems holding at least one.
#[derive(Default)]
struct Found {
    full: BTreeMap<RecordRef, (StoredRecord, BTreeSet<String>)>,
    flagged: BTreeSet<SourceSystem>,
}

impl Found {
    fn add(&mut self, stored: StoredRecord, matched: BTreeSet<String>) {
        let reference = RecordRef::new(stored.record.system, stored.record.source_id.clone());
        self.full
            .entry(reference)
            .or_insert_with(|| (stored, BTreeSet::new()))
            .1
            .extend(matched);
    }
}

/// Whether `purpose`'s rules let the record be answered: never anyone who may be under 12
/// to an identity check.
pub(super) fn purpose_admits(purpose: Purpose, stored: &StoredRecord, now: OffsetDateTime) -> bool {
    purpose_admits_born(purpose, stored.record.date_of_birth, now)
}

/// As [`purpose_admits`], from the date of birth alone.
pub(super) fn purpose_admits_born(
    purpose: Purpose,
    born: PartialDate,
    now: OffsetDateTime,
) -> bool {
    purpose != Purpose::IdentityCheck
        || !possibly_younger_than(born, IDENTITY_CHECK_MINIMUM_AGE, now)
}

/// Whether `purpose` must see a record before answering even a hit on it.
pub(super) fn purpose_needs_records(purpose: Purpose) -> bool {
    purpose == Purpose::IdentityCheck
}

/// Whether the person may be younger than `years` at `now`, given the precision of the
/// date of birth (a year-only date counts the youngest the person could be).
fn possibly_younger_than(born: PartialDate, years: i32, now: OffsetDateTime) -> bool {
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

    fn born(date: &str) -> PartialDate {
        date.parse().unwrap_or_else(|_| panic!("a date: {date}"))
    }

    #[test]
    fn identity_checks_count_the_youngest_a_partial_date_allows() {
        let now = time::macros::datetime!(2026-11-27 12:00 UTC);
        assert!(
            !possibly_younger_than(born("2014-11-27"), 12, now),
            "12 today"
        );
        assert!(
            possibly_younger_than(born("2014-11-28"), 12, now),
            "12 tomorrow"
        );
        assert!(
            possibly_younger_than(born("2014"), 12, now),
            "maybe born in December"
        );
        assert!(!possibly_younger_than(born("2013"), 12, now));
        assert!(possibly_younger_than(born("2014-12"), 12, now));
    }
}
