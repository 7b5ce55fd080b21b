//! Operators' metrics in Prometheus text format. Labels are few and bounded — route
//! templates, systems, outcomes and problem codes, colours — never record ids, names or
//! anything a caller typed.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The matched route template (`/v1/systems/{system}/records/{source_id}`), or
    /// `unmatched`: never the path as sent.
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngestLabels {
    system: String,
    /// created, updated, replayed, or the refusal's problem code.
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

/// The steps of an ingest, timed apart so that an operator (and `interop-hub bench`) sees
/// where ingest time goes: waiting included, since waiting is most of what shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestStep {
    /// Decoding the native format into the common record.
    Parse,
    /// Waiting for the lock that keeps two ingests of one record apart.
    RecordLock,
    /// Storing the record (create, update or replay), its write transaction included.
    Store,
    /// Replacing the record's templates in the biometric indexes.
    Index,
    /// Waiting until the indexes hold what other hubs committed before this record.
    FeedWait,
    /// The detector's blocking-key queries of both partitions.
    BlockingCandidates,
    /// The detector's 1:N searches of every template of the record.
    BiometricSearch,
    /// Loading the candidates, comparing them with the record and storing the links.
    CompareAndLink,
    /// Queueing the mark that detection ran on this version.
    DetectionMark,
    /// Appending the audit entry.
    Audit,
}

impl IngestStep {
    pub const ALL: [Self; 10] = [
        Self::Parse,
        Self::RecordLock,
        Self::Store,
        Self::Index,
        Self::FeedWait,
        Self::BlockingCandidates,
        Self::BiometricSearch,
        Self::CompareAndLink,
        Self::DetectionMark,
        Self::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parse => "parse",
            Self::RecordLock => "record_lock",
            Self::Store => "store",
            Self::Index => "index",
            Self::FeedWait => "feed_wait",
            Self::BlockingCandidates => "blocking_candidates",
            Self::BiometricSearch => "biometric_search",
            Self::CompareAndLink => "compare_and_link",
            Self::DetectionMark => "detection_mark",
            Self::Audit => "audit",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabels {
    colour: String,
    /// created, updated or unchanged.
    change: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IndexLabels {
    partition: String,
    algorithm: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn step_histogram() -> Histogram {
    // 20 µs to ~0.7 s: most steps take well under a millisecond.
    Histogram::new(exponential_buckets(0.00002, 2.0, 16))
}

/// The hub's metrics, one registry per hub (tests run several hubs in one process).
pub struct HubMetrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    ingests: Family<IngestLabels, Counter>,
    ingest_steps: Family<StepLabels, Histogram, fn() -> Histogram>,
    link_changes: Family<LinkLabels, Counter>,
    audit_entries: Counter,
    policy_swaps: Counter,
    misuse_alarms: Counter,
    index_templates: Family<IndexLabels, Gauge>,
    feed_applied: Family<PartitionLabels, Counter>,
    feed_position: Family<PartitionLabels, Gauge>,
    feed_lag: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: String,
}

impl std::fmt::Debug for HubMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubMetrics { .. }")
    }
}

impl Default for HubMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("interop_hub");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let ingests = Family::<IngestLabels, Counter>::default();
        let ingest_steps = Family::<StepLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            step_histogram,
        );
        // Every step from the start: a step that never ran shows as 0, not as missing.
        for step in IngestStep::ALL {
            drop(ingest_steps.get_or_create(&StepLabels {
                step: step.as_str(),
            }));
        }
        let link_changes = Family::<LinkLabels, Counter>::default();
        let audit_entries = Counter::default();
        let policy_swaps = Counter::default();
        let misuse_alarms = Counter::default();
        let index_templates = Family::<IndexLabels, Gauge>::default();
        let feed_applied = Family::<PartitionLabels, Counter>::default();
        let feed_position = Family::<PartitionLabels, Gauge>::default();
        let feed_lag = Family::<PartitionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            http_seconds.clone(),
        );
        registry.register(
            "ingests",
            "Records pushed, by system and outcome (or refusal code)",
            ingests.clone(),
        );
        registry.register(
            "ingest_step_duration_seconds",
            "Time each step of an ingest took, waiting included, by step",
            ingest_steps.clone(),
        );
        registry.register(
            "link_changes",
            "Links the detector created, updated or left unchanged, by colour",
            link_changes.clone(),
        );
        registry.register(
            "audit_entries",
            "Entries appended to the audit log",
            audit_entries.clone(),
        );
        registry.register(
            "policy_swaps",
            "Access policies built and swapped in (changes and lapses)",
            policy_swaps.clone(),
        );
        registry.register(
            "misuse_alarms",
            "Principals whose searches answered by hit flags passed the hourly threshold",
            misuse_alarms.clone(),
        );
        registry.register(
            "index_templates",
            "Templates in each biometric index",
            index_templates.clone(),
        );
        registry.register(
            "feed_changes_applied",
            "Changes read from a partition's change feed and applied to this hub's indexes",
            feed_applied.clone(),
        );
        registry.register(
            "feed_position",
            "The position of the last change feed row this hub applied, by partition",
            feed_position.clone(),
        );
        registry.register(
            "feed_lag_seconds",
            "Seconds since this hub last read a partition's change feed to its end",
            feed_lag.clone(),
        );
        Self {
            registry,
            http_requests,
            http_seconds,
            ingests,
            ingest_steps,
            link_changes,
            audit_entries,
            policy_swaps,
            misuse_alarms,
            index_templates,
            feed_applied,
            feed_position,
            feed_lag,
        }
    }
}

impl HubMetrics {
    pub fn http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn ingest(&self, system: &str, outcome: &str) {
        self.ingests
            .get_or_create(&IngestLabels {
                system: system.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn ingest_step(&self, step: IngestStep, elapsed: Duration) {
        self.ingest_steps
            .get_or_create(&StepLabels {
                step: step.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn link_change(&self, colour: &str, change: &str) {
        self.link_changes
            .get_or_create(&LinkLabels {
                colour: colour.to_owned(),
                change: change.to_owned(),
            })
            .inc();
    }

    pub fn audit_entry(&self) {
        self.audit_entries.inc();
    }

    pub fn policy_swap(&self) {
        self.policy_swaps.inc();
    }

    pub fn misuse_alarm(&self) {
        self.misuse_alarms.inc();
    }

    pub fn index_size(&self, partition: &str, algorithm: &str, templates: usize) {
        self.index_templates
            .get_or_create(&IndexLabels {
                partition: partition.to_owned(),
                algorithm: algorithm.to_owned(),
            })
            .set(i64::try_from(templates).unwrap_or(i64::MAX));
    }

    pub fn feed_applied(&self, partition: &str, changes: usize) {
        self.feed_applied
            .get_or_create(&PartitionLabels {
                partition: partition.to_owned(),
            })
            .inc_by(u64::try_from(changes).unwrap_or(u64::MAX));
    }

    /// Where this hub stands in a partition's feed; `lag` is `None` before its first read.
    pub fn feed_state(&self, partition: &str, position: i64, lag: Option<Duration>) {
        let labels = PartitionLabels {
            partition: partition.to_owned(),
        };
        self.feed_position.get_or_create(&labels).set(position);
        if let Some(lag) = lag {
            self.feed_lag.get_or_create(&labels).set(lag.as_secs_f64());
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_exported_with_its_count_and_seconds() {
        let metrics = HubMetrics::default();
        metrics.ingest_step(IngestStep::Store, Duration::from_millis(3));
        metrics.ingest_step(IngestStep::Store, Duration::from_millis(5));
        metrics.ingest_step(IngestStep::Audit, Duration::from_micros(250));
        let text = metrics.encode();
        assert!(
            text.contains(r#"interop_hub_ingest_step_duration_seconds_sum{step="store"} 0.008"#),
            "{text}"
        );
        assert!(
            text.contains(r#"interop_hub_ingest_step_duration_seconds_sum{step="audit"} 0.00025"#),
            "{text}"
        );
        assert!(
            text.contains(r#"interop_hub_ingest_step_duration_seconds_count{step="store"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"interop_hub_ingest_step_duration_seconds_count{step="parse"} 0"#),
            "a step that never ran is exported as 0: {text}"
        );
    }
}
