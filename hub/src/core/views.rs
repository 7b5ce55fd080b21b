//! Records as a caller may see them: only the field groups the policy grants.

use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::ToSchema;

use crate::access::FieldGroup;
use crate::store::StoredRecord;

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
