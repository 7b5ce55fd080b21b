//! Records and links as a caller may see them: only the field groups the policy grants,
//! and of a link only the side the caller reads.

use std::collections::BTreeSet;

use connectors::{RecordRef, SourceSystem};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::access::{FieldGroup, LinkSight};
use crate::matching::{LinkColour, LinkRule};
use crate::store::{StoredLink, StoredRecord};

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
