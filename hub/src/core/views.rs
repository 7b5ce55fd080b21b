//! Records and links as a caller may see them: only the field groups the policy grants,
//! and of a link only the side the caller reads.

use std::collections::BTreeSet;

use connectors::{IdentityRecord, Partition, QualityFinding, RecordRef, SourceSystem};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::access::{FieldGroup, LinkSight};
use crate::matching::{LinkColour, LinkRule};
use crate::store::{
    AccessRequest, AuditEntry, AuditEvent, HistoryEntry, LinkQuery, StoredLink, StoredRecord,
    UpsertOutcome,
};

/// A stored record with only the permitted field groups. `system`, `source_id`,
/// `version`, `partition` and `stored_at` are always present; `fields` names the groups
/// shown; the fields of the other groups are absent (not empty).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(value_type = Object, example = json!({
    "fields": ["identity", "documents"],
    "partition": "civil",
    "stored_at": "2026-11-27T10:00:00Z",
    "record": {"system": "ees", "source_id": "EES-1", "version": 1, "names": [], "date_of_birth": "1990-04-17", "sex": "f", "nationalities": ["UKR"], "travel_documents": []}
}))]
pub struct RecordView(serde_json::Value);

/// The record's keys each group owns; keys not listed are shown to every reader.
fn group_of(key: &str) -> Option<FieldGroup> {
    match key {
        "names" | "date_of_birth" | "place_of_birth" | "sex" | "nationalities" => {
            Some(FieldGroup::Identity)
        }
        "travel_documents" => Some(FieldGroup::Documents),
        "templates" => Some(FieldGroup::Biometrics),
        "member_state" | "attributes" => Some(FieldGroup::SystemData),
        "system" | "source_id" | "version" => None,
        // A field added to the record later is hidden until it is given a group.
        _ => Some(FieldGroup::SystemData),
    }
}

impl RecordView {
    pub fn new(stored: &StoredRecord, fields: &BTreeSet<FieldGroup>) -> Self {
        let mut value = serde_json::to_value(stored).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            if let Some(record) = object.get_mut("record").and_then(|r| r.as_object_mut()) {
                record.retain(|key, _| group_of(key).is_none_or(|group| fields.contains(&group)));
            }
            if !fields.contains(&FieldGroup::SystemData) {
                object.remove("findings");
            }
            object.insert(
                "fields".to_owned(),
                serde_json::to_value(fields).unwrap_or_default(),
            );
        }
        Self(value)
    }

    /// The view as JSON, for renderers other than the JSON API (the console).
    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }

    /// `identity+documents`: the groups shown, for the audit log.
    pub fn fields_summary(&self) -> String {
        self.0
            .get("fields")
            .and_then(|f| f.as_array())
            .map(|groups| {
                groups
                    .iter()
                    .filter_map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .unwrap_or_default()
    }
}

/// One end of a link as its viewer sees it: the record's id only where the viewer may
/// read that record's system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LinkEnd {
    pub system: SourceSystem,
    /// Absent when the viewer may not read this side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
}

/// A link as a caller sees it. Whoever reads only one side learns of the other its
/// system and the authority responsible for verifying the link — never its record id,
/// the evidence, the verifier or the justification.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LinkView {
    pub id: String,
    pub colour: LinkColour,
    pub rule: LinkRule,
    pub records: [LinkEnd; 2],
    /// The authority responsible for verifying the link.
    pub authority: String,
    /// Every piece of evidence with its score; only to who sees both sides.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<serde_json::Value>,
    /// Yellow links only: when verification is due.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl LinkView {
    pub fn new(link: &StoredLink, sight: LinkSight) -> Self {
        let shown = |side: usize| match sight {
            LinkSight::Whole => true,
            LinkSight::OneSide(seen) => seen == side,
        };
        let end = |side: usize| {
            let record: &RecordRef = &link.records[side];
            LinkEnd {
                system: record.system,
                source_id: shown(side).then(|| record.source_id.clone()),
            }
        };
        Self {
            id: link.id.clone(),
            colour: link.colour,
            rule: link.rule,
            records: [end(0), end(1)],
            authority: link.authority.clone(),
            evidence: (sight == LinkSight::Whole).then(|| link.evidence.clone()),
            deadline: link.deadline,
            updated_at: link.updated_at,
        }
    }

    /// The end that is not `record`.
    pub fn other_than(&self, record: &RecordRef) -> &LinkEnd {
        let [a, b] = &self.records;
        if a.system == record.system && a.source_id.as_deref() == Some(&record.source_id) {
            b
        } else {
            a
        }
    }
}

/// An audit entry as supervisors read it: its place in the chain, what was recorded and the
/// hashes that hold it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub struct AuditEntryView {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub subject: String,
    pub agency: String,
    pub member_state: String,
    /// The purpose the caller declared, or the kind of duty (`ingest`, `administration`).
    pub purpose: String,
    /// What was done: `search`, `read`, `ingest`, `delete`, `verify`, `policy_add`, …
    pub action: String,
    /// The kind of query: systems, kinds of data searched by — never the values.
    pub query: String,
    /// The kind of result: per system full / hit flag / refused, counts, status.
    pub outcome: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        let AuditEvent {
            subject,
            agency,
            member_state,
            purpose,
            action,
            query,
            outcome,
        } = entry.event;
        Self {
            seq: entry.seq,
            at: entry.at,
            subject,
            agency,
            member_state,
            purpose,
            action,
            query,
            outcome,
            prev_hash: entry.prev_hash,
            hash: entry.hash,
        }
    }
}

/// What an ingest did to the stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = UpsertOutcome)]
pub enum IngestOutcome {
    /// First version of this record.
    Created,
    /// The same version was already stored; nothing changed.
    Replayed,
    /// A newer version replaced the stored one.
    Updated,
}

impl IngestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replayed => "replayed",
            Self::Updated => "updated",
        }
    }
}

impl From<UpsertOutcome> for IngestOutcome {
    fn from(outcome: UpsertOutcome) -> Self {
        match outcome {
            UpsertOutcome::Created => Self::Created,
            UpsertOutcome::Replayed => Self::Replayed,
            UpsertOutcome::Updated => Self::Updated,
        }
    }
}

/// A record as the repository holds it, whole: what its own connector reads back.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = StoredRecord)]
pub struct RecordDetails {
    pub partition: Partition,
    /// When this version was stored (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub stored_at: OffsetDateTime,
    pub record: IdentityRecord,
    /// Non-blocking data-quality findings raised when this version was ingested.
    pub findings: Vec<QualityFinding>,
}

impl From<StoredRecord> for RecordDetails {
    fn from(stored: StoredRecord) -> Self {
        Self {
            partition: stored.partition,
            stored_at: stored.stored_at,
            record: stored.record,
            findings: stored.findings,
        }
    }
}

/// A link whole, as its responsible authority reads it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = StoredLink)]
pub struct LinkDetails {
    pub id: String,
    /// The two records, in a fixed order.
    pub records: [RecordRef; 2],
    pub colour: LinkColour,
    pub rule: LinkRule,
    /// Every piece of evidence with its score: identity comparison and biometric scores.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// The authority responsible for verifying the link.
    pub authority: String,
    /// Yellow links only: when verification is due.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<StoredLink> for LinkDetails {
    fn from(link: StoredLink) -> Self {
        Self {
            id: link.id,
            records: link.records,
            colour: link.colour,
            rule: link.rule,
            evidence: link.evidence,
            authority: link.authority,
            deadline: link.deadline,
            created_at: link.created_at,
            updated_at: link.updated_at,
        }
    }
}

/// One event in a link's life.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = HistoryEntry)]
pub struct LinkEvent {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// `mid` for the detector, otherwise the verifier.
    pub actor: String,
    /// `detected`, `redetected` or `verified`.
    pub event: String,
    pub colour_before: Option<LinkColour>,
    pub colour_after: LinkColour,
    pub justification: Option<String>,
}

impl From<HistoryEntry> for LinkEvent {
    fn from(entry: HistoryEntry) -> Self {
        Self {
            at: entry.at,
            actor: entry.actor,
            event: entry.event,
            colour_before: entry.colour_before,
            colour_after: entry.colour_after,
            justification: entry.justification,
        }
    }
}

/// An access request (or a recorded decision not to file one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = AccessRequest)]
pub struct AccessRequestView {
    pub id: String,
    /// `request` or `no_request`.
    pub kind: String,
    /// pending, granted, refused, or recorded (`no_request`).
    pub status: String,
    pub subject: String,
    pub agency: String,
    pub member_state: String,
    pub system: String,
    pub case_reference: String,
    pub justification: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    /// A grant's full access lapses by itself at this instant.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub grant_expires_at: Option<OffsetDateTime>,
}

impl From<AccessRequest> for AccessRequestView {
    fn from(request: AccessRequest) -> Self {
        Self {
            id: request.id,
            kind: request.kind,
            status: request.status,
            subject: request.subject,
            agency: request.agency,
            member_state: request.member_state,
            system: request.system,
            case_reference: request.case_reference,
            justification: request.justification,
            created_at: request.created_at,
            decided_at: request.decided_at,
            decided_by: request.decided_by,
            decision_reason: request.decision_reason,
            grant_expires_at: request.grant_expires_at,
        }
    }
}

/// Which of the caller's queue to list: filters and page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFilter {
    pub colour: Option<LinkColour>,
    pub system: Option<SourceSystem>,
    pub authority: Option<String>,
    /// Only yellow links past their deadline (true) or not past it (false).
    pub overdue: Option<bool>,
    /// Page size, clamped to 1–500.
    pub limit: i64,
    /// Links to skip.
    pub offset: i64,
}

impl From<LinkFilter> for LinkQuery {
    fn from(filter: LinkFilter) -> Self {
        Self {
            colour: filter.colour,
            system: filter.system,
            authority: filter.authority,
            overdue: filter.overdue,
            limit: filter.limit.clamp(1, 500),
            offset: filter.offset.max(0),
        }
    }
}
