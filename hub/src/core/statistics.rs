//! Statistics in the spirit of the EU's CRRS — anonymised counts, published as one snapshot
//! a day with small counts withheld and with them whatever would give one away — and the
//! data-quality report (completeness, validity, refusals and findings by rule).

mod suppression;

use std::collections::BTreeMap;

use connectors::{Partition, SourceSystem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use std::sync::Arc;

use super::guard::{Gate, Operation};
use super::parts::Partitions;
use crate::access::Principal;
use crate::clock::Clock;
use crate::error::HubError;
use crate::matching::LinkColour;
use crate::store::{ControlStore, IngestCount, LinkStore};
use suppression::{CountId, Table};

/// Counts from 1 to this minus one are never published, nor counts that would give one away.
pub(super) const SUPPRESSED_BELOW: i64 = 10;
const AGE_BANDS: [(i32, i32, &str); 7] = [
    (0, 11, "0-11"),
    (12, 17, "12-17"),
    (18, 29, "18-29"),
    (30, 49, "30-49"),
    (50, 69, "50-69"),
    (70, 89, "70-89"),
    (90, i32::MAX, "90+"),
];
/// In this order: [`tally`] names them by position.
const LINK_COLOURS: [LinkColour; 4] = [
    LinkColour::White,
    LinkColour::Yellow,
    LinkColour::Green,
    LinkColour::Red,
];
/// The days of links made, and the hours of records stored, broken down up to `as_of`.
const LINK_DAYS: i64 = 14;
const STORED_HOURS: i64 = 24;
/// The period of a windowed count that holds everything before the window: with it the
/// window adds up to its total, and the sum is protected like any other.
pub(super) const EARLIER: &str = "earlier";
const SECONDS_PER_HOUR: i64 = 3_600;
const SECONDS_PER_DAY: i64 = 86_400;

/// What a published count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatCategory {
    /// Records stored: per system, and in all (no system).
    Records,
    /// A system's records per nationality (`key`); a record of several counts under each.
    RecordsByNationality,
    /// A system's records per age band (`key`), ages as of `as_of`'s year.
    RecordsByAgeBand,
    /// Records (latest versions) stored per UTC hour (`period`) over the 24 hours up to
    /// `as_of`, and `earlier`.
    RecordsStoredByHour,
    /// Links per colour (`key`).
    Links,
    /// Links per colour (`key`) per UTC day made (`period`) over the 14 days up to `as_of`,
    /// and `earlier`.
    LinksByDay,
    /// Yellow links awaiting verification: in all, and per responsible authority (`key`).
    VerificationBacklog,
    /// Yellow links past their deadline.
    VerificationOverdue,
    /// Yellow links within their deadline.
    VerificationWithinDeadline,
    /// Records refused at ingest, per system, since the control database began.
    IngestRefused,
    /// Non-blocking findings on accepted records, per system, since the control database
    /// began.
    IngestFlagged,
}

impl StatCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::RecordsByNationality => "records_by_nationality",
            Self::RecordsByAgeBand => "records_by_age_band",
            Self::RecordsStoredByHour => "records_stored_by_hour",
            Self::Links => "links",
            Self::LinksByDay => "links_by_day",
            Self::VerificationBacklog => "verification_backlog",
            Self::VerificationOverdue => "verification_overdue",
            Self::VerificationWithinDeadline => "verification_within_deadline",
            Self::IngestRefused => "ingest_refused",
            Self::IngestFlagged => "ingest_flagged",
        }
    }
}

/// One count of the statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatRow {
    pub category: StatCategory,
    pub system: Option<SourceSystem>,
    /// The nationality, age band, link colour or authority the count is of.
    pub key: Option<String>,
    /// A windowed count's UTC day (`2026-05-01`) or hour (`2026-05-01T13:00:00Z`), or
    /// `earlier`: everything before the window.
    pub period: Option<String>,
    /// Absent (null) when withheld: from 1 to `suppressed_below` − 1, or needed to keep such
    /// a count from being computed from the others.
    pub count: Option<i64>,
}

impl StatRow {
    fn of(
        category: StatCategory,
        system: Option<SourceSystem>,
        key: Option<&str>,
        period: Option<String>,
    ) -> Self {
        Self {
            category,
            system,
            key: key.map(str::to_owned),
            period,
            count: None,
        }
    }

    /// `category/system/key/period`, empty where absent: the row wherever it is shown.
    pub fn name(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.category.as_str(),
            self.system.map_or("", SourceSystem::as_str),
            self.key.as_deref().unwrap_or(""),
            self.period.as_deref().unwrap_or("")
        )
    }
}

/// Anonymised counts: the day's snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Statistics {
    /// When the counts were taken: at the first request of this UTC day. Every request of
    /// the day is answered with the same snapshot.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub as_of: OffsetDateTime,
    /// Counts from 1 to this minus one are withheld (null), and so is any count that would
    /// let one be computed from the others.
    pub suppressed_below: i64,
    pub rows: Vec<StatRow>,
}

impl Statistics {
    /// `category,system,key,period,count`, a withheld count as `<10`.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("category,system,key,period,count\n");
        for row in &self.rows {
            let count = row
                .count
                .map_or_else(|| format!("<{}", self.suppressed_below), |c| c.to_string());
            csv.push_str(&format!(
                "{},{},{},{},{}\n",
                row.category.as_str(),
                row.system.map_or("", SourceSystem::as_str),
                csv_field(row.key.as_deref().unwrap_or("")),
                row.period.as_deref().unwrap_or(""),
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

/// What the stores hold at the snapshot's instant, before anything is withheld.
#[derive(Debug, Default)]
struct Counted {
    records_by_band: BTreeMap<(SourceSystem, &'static str), i64>,
    records_by_nationality: BTreeMap<(SourceSystem, String), i64>,
    /// Hour since the epoch → records stored in it, over the window.
    stored_by_hour: BTreeMap<i64, i64>,
    links_by_colour: BTreeMap<String, i64>,
    /// (colour, day since the epoch) → links made that day, over the window.
    links_by_day: BTreeMap<(String, i64), i64>,
    backlog_by_authority: BTreeMap<String, i64>,
    overdue: i64,
    refused: BTreeMap<SourceSystem, i64>,
    flagged: BTreeMap<SourceSystem, i64>,
}

/// The rows to publish, each naming a count, and the tables those counts form.
#[derive(Debug, Default)]
struct Tally {
    rows: Vec<(StatRow, CountId)>,
    counts: Vec<i64>,
    tables: Vec<Table>,
}

impl Tally {
    fn count(&mut self, row: StatRow, value: i64) -> CountId {
        self.counts.push(value);
        let id = self.counts.len() - 1;
        self.rows.push((row, id));
        id
    }

    /// A second row showing a count already tallied.
    fn again(&mut self, row: StatRow, id: CountId) {
        self.rows.push((row, id));
    }

    fn table(&mut self, total: CountId, parts: Vec<CountId>) {
        if !parts.is_empty() {
            self.tables.push(Table { total, parts });
        }
    }

    /// A windowed breakdown of `total`: the window's counts and, to complete the sum, the
    /// rest as `earlier`.
    fn window(
        &mut self,
        total: CountId,
        category: StatCategory,
        key: Option<&str>,
        window: impl IntoIterator<Item = (String, i64)>,
    ) {
        let mut parts = Vec::new();
        let mut within = 0;
        for (period, value) in window {
            within += value;
            parts.push(self.count(StatRow::of(category, None, key, Some(period)), value));
        }
        let earlier = (self.counts[total] - within).max(0);
        parts.push(self.count(
            StatRow::of(category, None, key, Some(EARLIER.to_owned())),
            earlier,
        ));
        self.table(total, parts);
    }

    fn publish(self, as_of: OffsetDateTime) -> Result<Statistics, HubError> {
        let withheld = suppression::withheld(&self.counts, &self.tables, SUPPRESSED_BELOW)
            .map_err(|e| HubError::Internal(e.to_string()))?;
        Ok(Statistics {
            as_of,
            suppressed_below: SUPPRESSED_BELOW,
            rows: self
                .rows
                .into_iter()
                .map(|(row, id)| StatRow {
                    count: (!withheld[id]).then_some(self.counts[id]),
                    ..row
                })
                .collect(),
        })
    }
}

/// The rows and tables of a snapshot taken at `as_of`.
fn tally(counted: &Counted, as_of: OffsetDateTime) -> Tally {
    use StatCategory::*;
    let mut tally = Tally::default();
    let mut per_system: BTreeMap<SourceSystem, i64> = BTreeMap::new();
    for ((system, _), count) in &counted.records_by_band {
        *per_system.entry(*system).or_default() += count;
    }
    let all_records = tally.count(
        StatRow::of(Records, None, None, None),
        per_system.values().sum(),
    );
    let systems = SourceSystem::ALL.map(|system| {
        let count = per_system.get(&system).copied().unwrap_or(0);
        tally.count(StatRow::of(Records, Some(system), None, None), count)
    });
    tally.table(all_records, systems.to_vec());
    for (system, total) in SourceSystem::ALL.into_iter().zip(systems) {
        let parts = counted
            .records_by_nationality
            .iter()
            .filter(|((s, _), _)| *s == system)
            .map(|((_, nationality), &count)| {
                let row = StatRow::of(RecordsByNationality, Some(system), Some(nationality), None);
                tally.count(row, count)
            })
            .collect();
        // Not an exact sum (a record may have no nationality, or several), but a reader
        // may take it for one: protected as if it were.
        tally.table(total, parts);
    }
    for (system, total) in SourceSystem::ALL.into_iter().zip(systems) {
        let parts = counted
            .records_by_band
            .iter()
            .filter(|((s, _), _)| *s == system)
            .map(|(&(_, band), &count)| {
                tally.count(
                    StatRow::of(RecordsByAgeBand, Some(system), Some(band), None),
                    count,
                )
            })
            .collect();
        tally.table(total, parts);
    }
    let this_hour = as_of.unix_timestamp().div_euclid(SECONDS_PER_HOUR);
    let hours: Vec<(String, i64)> = (this_hour - STORED_HOURS + 1..=this_hour)
        .map(|hour| {
            let count = counted.stored_by_hour.get(&hour).copied().unwrap_or(0);
            (hour_period(hour), count)
        })
        .collect();
    tally.window(all_records, RecordsStoredByHour, None, hours);

    let today = as_of.unix_timestamp().div_euclid(SECONDS_PER_DAY);
    let [_white, yellow, _green, _red] = LINK_COLOURS.map(|colour| {
        let colour = colour.as_str();
        let count = counted.links_by_colour.get(colour).copied().unwrap_or(0);
        let total = tally.count(StatRow::of(Links, None, Some(colour), None), count);
        let days: Vec<(String, i64)> = (today - LINK_DAYS + 1..=today)
            .map(|day| {
                let key = (colour.to_owned(), day);
                let count = counted.links_by_day.get(&key).copied().unwrap_or(0);
                (day_period(day), count)
            })
            .collect();
        tally.window(total, LinksByDay, Some(colour), days);
        total
    });
    // The backlog is the yellow links' count under another name: one count, two rows.
    let backlog = yellow;
    tally.again(StatRow::of(VerificationBacklog, None, None, None), backlog);
    let authorities = counted
        .backlog_by_authority
        .iter()
        .map(|(authority, &open)| {
            let row = StatRow::of(VerificationBacklog, None, Some(authority), None);
            tally.count(row, open)
        })
        .collect();
    tally.table(backlog, authorities);
    let overdue = tally.count(
        StatRow::of(VerificationOverdue, None, None, None),
        counted.overdue,
    );
    let within_deadline = (tally.counts[backlog] - counted.overdue).max(0);
    let within = tally.count(
        StatRow::of(VerificationWithinDeadline, None, None, None),
        within_deadline,
    );
    tally.table(backlog, vec![overdue, within]);
    for (category, counts) in [
        (IngestRefused, &counted.refused),
        (IngestFlagged, &counted.flagged),
    ] {
        for system in SourceSystem::ALL {
            let count = counts.get(&system).copied().unwrap_or(0);
            tally.count(StatRow::of(category, Some(system), None, None), count);
        }
    }
    tally
}

/// The UTC hour `hour` hours after the epoch, as `2026-05-01T13:00:00Z`.
fn hour_period(hour: i64) -> String {
    OffsetDateTime::from_unix_timestamp(hour * SECONDS_PER_HOUR).map_or_else(
        |_| String::new(),
        |start| format!("{}T{:02}:00:00Z", start.date(), start.hour()),
    )
}

/// The UTC day `day` days after the epoch, as `2026-05-01`.
fn day_period(day: i64) -> String {
    OffsetDateTime::from_unix_timestamp(day * SECONDS_PER_DAY)
        .map_or_else(|_| String::new(), |start| start.date().to_string())
}

/// The instant `seconds` after the epoch.
fn instant(seconds: i64) -> Result<OffsetDateTime, HubError> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|_| HubError::Internal("statistics window out of range".to_owned()))
}

/// A published count as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// What the dashboard calls it: a system, colour, day, hour or authority.
    pub label: String,
    /// The published row it is ([`StatRow::name`]).
    pub row: String,
    /// `None` when withheld.
    pub count: Option<i64>,
}

impl Shown {
    fn of(row: &StatRow, label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            row: row.name(),
            count: row.count,
        }
    }
}

/// What the console's dashboard plots: the day's published statistics and nothing else,
/// so the console shows exactly what `GET /v1/stats` publishes, withheld counts withheld.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub as_of: OffsetDateTime,
    pub suppressed_below: i64,
    pub records_per_system: Vec<Shown>,
    /// Per day of the window (labelled `MM-DD`), the links made per colour.
    pub links_per_day: Vec<(String, Vec<Shown>)>,
    pub links_per_colour: Vec<Shown>,
    pub backlog: Shown,
    pub overdue: Shown,
    pub backlog_by_authority: Vec<Shown>,
    /// Per hour of the window (labelled `HHh`), the records stored.
    pub stored_per_hour: Vec<Shown>,
    /// Per system, refused and flagged.
    pub ingest_quality: Vec<Shown>,
}

impl Dashboard {
    pub fn of(statistics: &Statistics) -> Self {
        use StatCategory::*;
        let rows = |category: StatCategory| {
            statistics
                .rows
                .iter()
                .filter(move |row| row.category == category)
        };
        let in_window = |row: &&StatRow| row.period.as_deref() != Some(EARLIER);
        let period = |row: &StatRow| row.period.clone().unwrap_or_default();
        let total = |category: StatCategory, label: &str| {
            rows(category).find(|row| row.key.is_none()).map_or_else(
                || Shown {
                    label: label.to_owned(),
                    row: String::new(),
                    count: None,
                },
                |row| Shown::of(row, label),
            )
        };
        let mut links_per_day: Vec<(String, Vec<Shown>)> = Vec::new();
        for row in rows(LinksByDay).filter(in_window) {
            let day = period(row);
            let label = day.get(5..).unwrap_or(&day).to_owned();
            let shown = Shown::of(row, row.key.clone().unwrap_or_default());
            match links_per_day.iter_mut().find(|(d, _)| *d == label) {
                Some((_, parts)) => parts.push(shown),
                None => links_per_day.push((label, vec![shown])),
            }
        }
        Self {
            as_of: statistics.as_of,
            suppressed_below: statistics.suppressed_below,
            records_per_system: rows(Records)
                .filter_map(|row| Some(Shown::of(row, row.system?.as_str())))
                .collect(),
            links_per_day,
            links_per_colour: rows(Links)
                .map(|row| Shown::of(row, row.key.clone().unwrap_or_default()))
                .collect(),
            backlog: total(VerificationBacklog, "backlog"),
            overdue: total(VerificationOverdue, "overdue"),
            backlog_by_authority: rows(VerificationBacklog)
                .filter_map(|row| Some(Shown::of(row, row.key.clone()?)))
                .collect(),
            stored_per_hour: rows(RecordsStoredByHour)
                .filter(in_window)
                .map(|row| {
                    let hour = period(row);
                    Shown::of(row, format!("{}h", hour.get(11..13).unwrap_or(&hour)))
                })
                .collect(),
            ingest_quality: statistics
                .rows
                .iter()
                .filter_map(|row| {
                    let what = match row.category {
                        IngestRefused => "refused",
                        IngestFlagged => "flagged",
                        _ => return None,
                    };
                    Some(Shown::of(row, format!("{} {what}", row.system?.as_str())))
                })
                .collect(),
        }
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

/// Kinds of ingest counts in the control database.
pub(super) const ACCEPTED: &str = "accepted";
pub(super) const REFUSED: &str = "refused";
pub(super) const REFUSED_RULE: &str = "refused_rule";
pub(super) const FLAGGED: &str = "flagged";

/// The statistics service: anonymised counts, the dashboard drawn from them, and the
/// data-quality report.
#[derive(Debug)]
pub struct StatisticsService {
    pub(super) gate: Arc<Gate>,
    pub(super) stores: Arc<Partitions>,
    pub(super) links: LinkStore,
    pub(super) control: ControlStore,
    pub(super) clock: Clock,
}

impl StatisticsService {
    /// The day's anonymised counts per system, nationality, age band, hour stored, link
    /// colour and day made, and verification backlog; withheld as [`suppression`] rules.
    pub async fn statistics(&self, principal: &Principal) -> Result<Statistics, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::Statistics,
                String::new(),
                |_| async move { self.published_statistics().await },
                |s| format!("rows={}", s.rows.len()),
            )
            .await
    }

    /// The console dashboard's figures: the published statistics.
    pub async fn dashboard(&self, principal: &Principal) -> Result<Dashboard, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::Dashboard,
                String::new(),
                |_| async move { Ok(Dashboard::of(&self.published_statistics().await?)) },
                |_| "shown".to_owned(),
            )
            .await
    }

    /// The statistics of the current UTC day: the snapshot kept for it, or one taken now
    /// and kept. Counts that changed within a day cannot be told apart by asking twice.
    async fn published_statistics(&self) -> Result<Statistics, HubError> {
        let now = self.clock.now();
        let day = now.unix_timestamp().div_euclid(SECONDS_PER_DAY);
        let not_json = |e: serde_json::Error| HubError::Internal(format!("statistics: {e}"));
        let kept = match self.control.statistics_snapshot(day).await? {
            Some(kept) => kept,
            None => {
                let taken = tally(&self.counted(now).await?, now).publish(now)?;
                let taken = serde_json::to_string(&taken).map_err(not_json)?;
                self.control.keep_statistics_snapshot(day, &taken).await?
            }
        };
        serde_json::from_str(&kept).map_err(not_json)
    }

    /// The stores' counts at `now`, windows ending there.
    async fn counted(&self, now: OffsetDateTime) -> Result<Counted, HubError> {
        let mut counted = Counted::default();
        let this_hour = now.unix_timestamp().div_euclid(SECONDS_PER_HOUR);
        let first_hour = this_hour - STORED_HOURS + 1;
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            let store = self.stores.of(partition);
            for (system, year, count) in store.counts_by_birth_year().await? {
                let Ok(system) = system.parse::<SourceSystem>() else {
                    continue;
                };
                let age = now.year() - i32::try_from(year).unwrap_or(now.year());
                let band = AGE_BANDS
                    .iter()
                    .find(|(low, high, _)| (*low..=*high).contains(&age))
                    .map_or("unknown", |(_, _, name)| name);
                *counted.records_by_band.entry((system, band)).or_default() += count;
            }
            for (system, nationalities) in store.nationalities().await? {
                let Ok(system) = system.parse::<SourceSystem>() else {
                    continue;
                };
                for nationality in nationalities {
                    *counted
                        .records_by_nationality
                        .entry((system, nationality))
                        .or_default() += 1;
                }
            }
            let since = instant(first_hour * SECONDS_PER_HOUR)?;
            for (hour, count) in store.stored_per_hour(since).await? {
                // A record stamped later than now (another hub's clock) counts in this hour.
                *counted
                    .stored_by_hour
                    .entry(hour.min(this_hour))
                    .or_default() += count;
            }
        }
        let (colours, overdue) = self.links.colour_counts(now).await?;
        counted.links_by_colour = colours.into_iter().collect();
        counted.overdue = overdue;
        let today = now.unix_timestamp().div_euclid(SECONDS_PER_DAY);
        let since = instant((today - LINK_DAYS + 1) * SECONDS_PER_DAY)?;
        for (colour, day, count) in self.links.created_per_day(since).await? {
            *counted
                .links_by_day
                .entry((colour, day.min(today)))
                .or_default() += count;
        }
        for (authority, open) in self.links.backlog_by_authority().await? {
            counted.backlog_by_authority.insert(authority, open);
        }
        for counted_ingests in self.control.ingest_counts().await? {
            let Ok(system) = counted_ingests.system.parse::<SourceSystem>() else {
                continue;
            };
            let count = counted_ingests.count;
            match counted_ingests.kind.as_str() {
                REFUSED => *counted.refused.entry(system).or_default() += count,
                FLAGGED => *counted.flagged.entry(system).or_default() += count,
                _ => {}
            }
        }
        Ok(counted)
    }

    /// Completeness of stored records, validity of ingests, refusals and findings by rule.
    pub async fn data_quality(&self, principal: &Principal) -> Result<DataQuality, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::DataQuality,
                String::new(),
                |_| async move {
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
                        for completeness in self.stores.of(partition).completeness().await? {
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
                    for IngestCount {
                        system,
                        kind,
                        rule,
                        count,
                    } in self.control.ingest_counts().await?
                    {
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
                        quality.validity_rate =
                            (seen > 0).then(|| quality.accepted as f64 / seen as f64);
                    }
                    issues.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
                    issues.truncate(10);
                    Ok(DataQuality {
                        systems: systems.into_values().collect(),
                        top_issues: issues,
                    })
                },
                |q| format!("systems={}", q.systems.len()),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::suppression::audit::determined;
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .expect("instant")
    }

    /// EES: 12 travellers aged 30–49 and one child; VIS: one applicant; 12 white links
    /// made today, 3 yellow ones (two overdue) for one authority.
    fn population() -> Counted {
        let mut counted = Counted::default();
        counted
            .records_by_band
            .insert((SourceSystem::Ees, "30-49"), 12);
        counted
            .records_by_band
            .insert((SourceSystem::Ees, "0-11"), 1);
        counted
            .records_by_band
            .insert((SourceSystem::Vis, "30-49"), 1);
        counted
            .records_by_nationality
            .insert((SourceSystem::Ees, "TUR".to_owned()), 13);
        counted
            .records_by_nationality
            .insert((SourceSystem::Vis, "TUR".to_owned()), 1);
        let hour = at("2026-05-01T09:00:00Z").unix_timestamp() / SECONDS_PER_HOUR;
        counted.stored_by_hour.insert(hour, 14);
        let day = at("2026-05-01T00:00:00Z").unix_timestamp() / SECONDS_PER_DAY;
        counted.links_by_colour.insert("white".to_owned(), 12);
        counted.links_by_colour.insert("yellow".to_owned(), 3);
        counted.links_by_day.insert(("white".to_owned(), day), 12);
        counted.links_by_day.insert(("yellow".to_owned(), day), 3);
        counted.backlog_by_authority.insert("DE-BPOL".to_owned(), 3);
        counted.overdue = 2;
        counted.refused.insert(SourceSystem::Ees, 1);
        counted.flagged.insert(SourceSystem::Ees, 11);
        counted
    }

    fn published(counted: &Counted) -> (Tally, Statistics) {
        let as_of = at("2026-05-01T09:30:00Z");
        let statistics = tally(counted, as_of).publish(as_of).expect("tables nest");
        (tally(counted, as_of), statistics)
    }

    fn count(statistics: &Statistics, name: &str) -> Option<i64> {
        statistics
            .rows
            .iter()
            .find(|row| row.name() == name)
            .unwrap_or_else(|| panic!("{name} is published"))
            .count
    }

    #[test]
    fn no_published_sum_gives_a_small_count_away() {
        let (tally, statistics) = published(&population());
        let withheld: Vec<bool> = {
            let mut withheld = vec![false; tally.counts.len()];
            for ((_, id), row) in tally.rows.iter().zip(&statistics.rows) {
                withheld[*id] = row.count.is_none();
            }
            withheld
        };
        for ((_, id), row) in tally.rows.iter().zip(&statistics.rows) {
            let raw = tally.counts[*id];
            assert!(
                raw == 0 || raw >= SUPPRESSED_BELOW || row.count.is_none(),
                "{} shows {raw}",
                row.name()
            );
        }
        assert_eq!(determined(&withheld, &tally.tables), Vec::<usize>::new());
        // The child's band, and with it the adults' band (the smallest complement).
        assert_eq!(count(&statistics, "records_by_age_band/ees/0-11/"), None);
        assert_eq!(count(&statistics, "records_by_age_band/ees/30-49/"), None);
        // VIS's single record: withheld, and so is EES beside it under the shown total;
        // EES withheld then needs its nationality withheld too.
        assert_eq!(count(&statistics, "records///"), Some(14));
        assert_eq!(count(&statistics, "records/vis//"), None);
        assert_eq!(count(&statistics, "records/ees//"), None);
        assert_eq!(count(&statistics, "records_by_nationality/ees/TUR/"), None);
        assert_eq!(count(&statistics, "records/sis//"), Some(0));
        // Yellow: 3, so its breakdowns are withheld; white's 12 of today are shown.
        assert_eq!(count(&statistics, "links//yellow/"), None);
        assert_eq!(count(&statistics, "verification_backlog///"), None);
        assert_eq!(
            count(&statistics, "links_by_day//white/2026-05-01"),
            Some(12)
        );
        assert_eq!(count(&statistics, "links_by_day//white/earlier"), Some(0));
        assert_eq!(
            count(&statistics, "records_stored_by_hour///2026-05-01T09:00:00Z"),
            Some(14)
        );
        assert_eq!(count(&statistics, "ingest_refused/ees//"), None);
        assert_eq!(count(&statistics, "ingest_flagged/ees//"), Some(11));
    }

    #[test]
    fn the_windows_cover_the_last_days_and_hours() {
        let (_, statistics) = published(&population());
        let periods = |category: StatCategory| -> Vec<String> {
            statistics
                .rows
                .iter()
                .filter(|row| row.category == category && row.key.as_deref() != Some("red"))
                .filter_map(|row| row.period.clone())
                .filter(|period| !period.is_empty())
                .collect()
        };
        let hours = periods(StatCategory::RecordsStoredByHour);
        assert_eq!(hours.len(), 25);
        assert_eq!(hours[0], "2026-04-30T10:00:00Z");
        assert_eq!(hours[23], "2026-05-01T09:00:00Z");
        assert_eq!(hours[24], EARLIER);
        let days: Vec<String> = periods(StatCategory::LinksByDay)
            .into_iter()
            .take(15)
            .collect();
        assert_eq!(days[0], "2026-04-18");
        assert_eq!(days[13], "2026-05-01");
        assert_eq!(days[14], EARLIER);
    }

    #[test]
    fn the_dashboard_shows_the_published_rows_and_nothing_else() {
        let (_, statistics) = published(&population());
        let dashboard = Dashboard::of(&statistics);
        let shown = dashboard
            .records_per_system
            .iter()
            .chain(dashboard.links_per_day.iter().flat_map(|(_, parts)| parts))
            .chain(&dashboard.links_per_colour)
            .chain([&dashboard.backlog, &dashboard.overdue])
            .chain(&dashboard.backlog_by_authority)
            .chain(&dashboard.stored_per_hour)
            .chain(&dashboard.ingest_quality);
        let mut figures = 0;
        for figure in shown {
            figures += 1;
            let row = statistics
                .rows
                .iter()
                .find(|row| row.name() == figure.row)
                .unwrap_or_else(|| panic!("{} is published", figure.row));
            assert_eq!(figure.count, row.count, "{}", figure.row);
        }
        assert_eq!(figures, 5 + 14 * 4 + 4 + 2 + 1 + 24 + 10);
        assert_eq!(dashboard.links_per_day[13].0, "05-01");
        assert_eq!(dashboard.stored_per_hour[23].label, "09h");
        assert_eq!(dashboard.backlog.count, None, "3 yellow links");
    }

    #[test]
    fn csv_marks_withheld_counts_and_quotes_keys() {
        let statistics = Statistics {
            as_of: OffsetDateTime::UNIX_EPOCH,
            suppressed_below: SUPPRESSED_BELOW,
            rows: vec![
                StatRow {
                    count: Some(12),
                    ..StatRow::of(StatCategory::Records, Some(SourceSystem::Ees), None, None)
                },
                StatRow::of(StatCategory::Records, Some(SourceSystem::Vis), None, None),
                StatRow {
                    count: Some(10),
                    ..StatRow::of(
                        StatCategory::LinksByDay,
                        None,
                        Some("a,\"b"),
                        Some(EARLIER.to_owned()),
                    )
                },
            ],
        };
        assert_eq!(
            statistics.to_csv(),
            "category,system,key,period,count\nrecords,ees,,,12\nrecords,vis,,,<10\n\
             links_by_day,,\"a,\"\"b\",earlier,10\n"
        );
    }

    #[test]
    fn a_snapshot_reads_back_as_published() {
        let (_, statistics) = published(&population());
        let json = serde_json::to_string(&statistics).expect("json");
        let read: Statistics = serde_json::from_str(&json).expect("reads back");
        assert_eq!(read, statistics);
    }
}
