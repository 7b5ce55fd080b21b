//! Statistics in the spirit of the EU's CRRS (anonymised counts, small ones suppressed) and
//! the data-quality report (completeness, validity, refusals and findings by rule).

use std::collections::BTreeMap;

use connectors::{Partition, SourceSystem};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::Hub;
use crate::access::{HubDuty, Principal};
use crate::error::HubError;

/// Counts below this are never published.
pub const SUPPRESSED_BELOW: i64 = 10;
const AGE_BANDS: [(i32, i32, &str); 7] = [
    (0, 11, "0-11"),
    (12, 17, "12-17"),
    (18, 29, "18-29"),
    (30, 49, "30-49"),
    (50, 69, "50-69"),
    (70, 89, "70-89"),
    (90, i32::MAX, "90+"),
];

/// One count of the statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatRow {
    /// `records`, `records_by_nationality`, `records_by_age_band`, `links`,
    /// `verification_backlog` or `verification_overdue`.
    pub category: &'static str,
    pub system: Option<SourceSystem>,
    /// The nationality, age band or link colour the count is of.
    pub key: Option<String>,
    /// Absent (null) when suppressed: below the threshold.
    pub count: Option<i64>,
}

/// Anonymised counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Statistics {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub generated_at: OffsetDateTime,
    /// Counts below this are published as null.
    pub suppressed_below: i64,
    pub rows: Vec<StatRow>,
}

impl Statistics {
    /// `category,system,key,count`, a suppressed count as `<10`.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("category,system,key,count\n");
        for row in &self.rows {
            let count = row
                .count
                .map_or_else(|| format!("<{}", self.suppressed_below), |c| c.to_string());
            csv.push_str(&format!(
                "{},{},{},{}\n",
                row.category,
                row.system.map_or("", SourceSystem::as_str),
                csv_field(row.key.as_deref().unwrap_or("")),
                count
            ));
        }
        csv
    }
}

/// Quotes a field when it holds a comma, quote or line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn row(
    category: &'static str,
    system: Option<SourceSystem>,
    key: Option<String>,
    count: i64,
) -> StatRow {
    StatRow {
        category,
        system,
        key,
        count: (count >= SUPPRESSED_BELOW).then_some(count),
    }
}

/// One system's data quality.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SystemQuality {
    pub system: SourceSystem,
    /// Records stored now.
    pub records: i64,
    /// Share of stored records that have each optional part (0–1).
    pub completeness: BTreeMap<String, f64>,
    /// Records accepted (created or updated) since the control database began.
    pub accepted: i64,
    /// Records refused, for any rule.
    pub refused: i64,
    /// accepted / (accepted + refused); absent before the first ingest.
    pub validity_rate: Option<f64>,
    pub refused_by_rule: BTreeMap<String, i64>,
    /// Non-blocking findings on accepted records.
    pub flagged_by_rule: BTreeMap<String, i64>,
}

/// An issue and how often it was seen.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QualityIssue {
    pub system: SourceSystem,
    /// `refused` or `flagged`.
    pub kind: String,
    pub rule: String,
    pub count: i64,
}

/// The data-quality report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DataQuality {
    pub systems: Vec<SystemQuality>,
    /// The ten most frequent refusal and finding rules, over all systems.
    pub top_issues: Vec<QualityIssue>,
}

/// What the console's dashboard plots: operational counts for holders of the statistics
/// duty (not published, so not suppressed), none of them about a person.
#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub generated_at: OffsetDateTime,
    pub records_per_system: Vec<(SourceSystem, i64)>,
    /// (colour, day since the epoch, links made that day), the last 14 days.
    pub links_per_day: Vec<(String, i64, i64)>,
    pub links_per_colour: Vec<(String, i64)>,
    /// (authority, yellow links open, of which overdue).
    pub backlog: Vec<(String, i64, i64)>,
    /// (hour since the epoch, records stored), the last 24 hours.
    pub stored_per_hour: Vec<(i64, i64)>,
    /// (system, accepted, refused, flagged).
    pub ingest_quality: Vec<(SourceSystem, i64, i64, i64)>,
}

/// Kinds of ingest counts in the control database.
pub(super) const ACCEPTED: &str = "accepted";
pub(super) const REFUSED: &str = "refused";
pub(super) const REFUSED_RULE: &str = "refused_rule";
pub(super) const FLAGGED: &str = "flagged";

impl Hub {
    /// Anonymised counts per system, nationality, age band, link colour and verification
    /// backlog; every count below [`SUPPRESSED_BELOW`] suppressed.
    pub async fn statistics(&self, principal: &Principal) -> Result<Statistics, HubError> {
        let result = async {
            self.access(principal)
                .await?
                .require_duty(HubDuty::Statistics)?;
            let now = self.clock.now();
            let mut rows = Vec::new();
            let mut per_system: BTreeMap<SourceSystem, i64> = BTreeMap::new();
            let mut by_band: BTreeMap<(SourceSystem, &str), i64> = BTreeMap::new();
            let mut by_nationality: BTreeMap<(SourceSystem, String), i64> = BTreeMap::new();
            for partition in [Partition::Civil, Partition::LawEnforcement] {
                let store = self.store_of(partition);
                for (system, year, count) in store.counts_by_birth_year().await? {
                    let Ok(system) = system.parse::<SourceSystem>() else {
                        continue;
                    };
                    *per_system.entry(system).or_default() += count;
                    let age = now.year() - i32::try_from(year).unwrap_or(now.year());
                    let band = AGE_BANDS
                        .iter()
                        .find(|(low, high, _)| (*low..=*high).contains(&age))
                        .map_or("unknown", |(_, _, name)| name);
                    *by_band.entry((system, band)).or_default() += count;
                }
                for (system, nationalities) in store.nationalities().await? {
                    let Ok(system) = system.parse::<SourceSystem>() else {
                        continue;
                    };
                    for nationality in nationalities {
                        *by_nationality.entry((system, nationality)).or_default() += 1;
                    }
                }
            }
            for system in SourceSystem::ALL {
                let count = per_system.get(&system).copied().unwrap_or(0);
                rows.push(row("records", Some(system), None, count));
            }
            for ((system, nationality), count) in by_nationality {
                rows.push(row(
                    "records_by_nationality",
                    Some(system),
                    Some(nationality),
                    count,
                ));
            }
            for ((system, band), count) in by_band {
                rows.push(row(
                    "records_by_age_band",
                    Some(system),
                    Some(band.to_owned()),
                    count,
                ));
            }
            let (colours, overdue) = self.links.colour_counts(now).await?;
            let mut backlog = 0;
            for (colour, count) in colours {
                if colour == "yellow" {
                    backlog = count;
                }
                rows.push(row("links", None, Some(colour), count));
            }
            rows.push(row("verification_backlog", None, None, backlog));
            rows.push(row("verification_overdue", None, None, overdue));
            Ok(Statistics {
                generated_at: now,
                suppressed_below: SUPPRESSED_BELOW,
                rows,
            })
        }
        .await;
        self.audited(
            principal,
            "statistics",
            "statistics",
            String::new(),
            result,
            |s| format!("rows={}", s.rows.len()),
        )
        .await
    }

    /// The console dashboard's figures.
    pub async fn dashboard(&self, principal: &Principal) -> Result<Dashboard, HubError> {
        let result = async {
            self.access(principal)
                .await?
                .require_duty(HubDuty::Statistics)?;
            let now = self.clock.now();
            let mut records: BTreeMap<SourceSystem, i64> =
                SourceSystem::ALL.into_iter().map(|s| (s, 0)).collect();
            let mut per_hour: BTreeMap<i64, i64> = BTreeMap::new();
            for partition in [Partition::Civil, Partition::LawEnforcement] {
                let store = self.store_of(partition);
                for (system, _, count) in store.counts_by_birth_year().await? {
                    if let Ok(system) = system.parse::<SourceSystem>() {
                        *records.entry(system).or_default() += count;
                    }
                }
                for (hour, count) in store
                    .stored_per_hour(now - time::Duration::hours(24))
                    .await?
                {
                    *per_hour.entry(hour).or_default() += count;
                }
            }
            let (links_per_colour, _) = self.links.colour_counts(now).await?;
            let mut quality: BTreeMap<SourceSystem, (i64, i64, i64)> = BTreeMap::new();
            for (system, kind, _, count) in self.control.ingest_counts().await? {
                let Ok(system) = system.parse::<SourceSystem>() else {
                    continue;
                };
                let entry = quality.entry(system).or_default();
                match kind.as_str() {
                    ACCEPTED => entry.0 += count,
                    REFUSED => entry.1 += count,
                    FLAGGED => entry.2 += count,
                    _ => {}
                }
            }
            Ok(Dashboard {
                generated_at: now,
                records_per_system: records.into_iter().collect(),
                links_per_day: self
                    .links
                    .created_per_day(now - time::Duration::days(14))
                    .await?,
                links_per_colour,
                backlog: self.links.backlog_by_authority(now).await?,
                stored_per_hour: per_hour.into_iter().collect(),
                ingest_quality: quality
                    .into_iter()
                    .map(|(s, (a, r, f))| (s, a, r, f))
                    .collect(),
            })
        }
        .await;
        self.audited(
            principal,
            "statistics",
            "dashboard",
            String::new(),
            result,
            |_| "shown".to_owned(),
        )
        .await
    }

    /// Completeness of stored records, validity of ingests, refusals and findings by rule.
    pub async fn data_quality(&self, principal: &Principal) -> Result<DataQuality, HubError> {
        let result = async {
            self.access(principal)
                .await?
                .require_duty(HubDuty::Statistics)?;
            let mut systems: BTreeMap<SourceSystem, SystemQuality> = SourceSystem::ALL
                .into_iter()
                .map(|system| {
                    (
                        system,
                        SystemQuality {
                            system,
                            records: 0,
                            completeness: BTreeMap::new(),
                            accepted: 0,
                            refused: 0,
                            validity_rate: None,
                            refused_by_rule: BTreeMap::new(),
                            flagged_by_rule: BTreeMap::new(),
                        },
                    )
                })
                .collect();
            for partition in [Partition::Civil, Partition::LawEnforcement] {
                for completeness in self.store_of(partition).completeness().await? {
                    let Some(quality) = completeness
                        .system
                        .parse()
                        .ok()
                        .and_then(|s: SourceSystem| systems.get_mut(&s))
                    else {
                        continue;
                    };
                    quality.records = completeness.records;
                    for (part, present) in completeness.present {
                        let share = present as f64 / completeness.records.max(1) as f64;
                        quality.completeness.insert(part, share);
                    }
                }
            }
            let mut issues = Vec::new();
            for (system, kind, rule, count) in self.control.ingest_counts().await? {
                let Some(quality) = system
                    .parse()
                    .ok()
                    .and_then(|s: SourceSystem| systems.get_mut(&s))
                else {
                    continue;
                };
                match kind.as_str() {
                    ACCEPTED => quality.accepted += count,
                    REFUSED => quality.refused += count,
                    REFUSED_RULE => {
                        quality.refused_by_rule.insert(rule.clone(), count);
                        issues.push(QualityIssue {
                            system: quality.system,
                            kind: "refused".to_owned(),
                            rule,
                            count,
                        });
                    }
                    FLAGGED => {
                        quality.flagged_by_rule.insert(rule.clone(), count);
                        issues.push(QualityIssue {
                            system: quality.system,
                            kind: "flagged".to_owned(),
                            rule,
                            count,
                        });
                    }
                    _ => {}
                }
            }
            for quality in systems.values_mut() {
                let seen = quality.accepted + quality.refused;
                quality.validity_rate = (seen > 0).then(|| quality.accepted as f64 / seen as f64);
            }
            issues.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
            issues.truncate(10);
            Ok(DataQuality {
                systems: systems.into_values().collect(),
                top_issues: issues,
            })
        }
        .await;
        self.audited(
            principal,
            "statistics",
            "data_quality",
            String::new(),
            result,
            |q| format!("systems={}", q.systems.len()),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_are_suppressed_and_csv_marks_them() {
        let statistics = Statistics {
            generated_at: OffsetDateTime::UNIX_EPOCH,
            suppressed_below: SUPPRESSED_BELOW,
            rows: vec![
                row("records", Some(SourceSystem::Ees), None, 9),
                row("records", Some(SourceSystem::Vis), None, 10),
                row("links", None, Some("a,\"b".to_owned()), 0),
            ],
        };
        assert_eq!(statistics.rows[0].count, None);
        assert_eq!(statistics.rows[1].count, Some(10));
        assert_eq!(
            statistics.to_csv(),
            "category,system,key,count\nrecords,ees,,<10\nrecords,vis,,10\nlinks,,\"a,\"\"b\",<10\n"
        );
    }
}
