//! Operators' metrics in Prometheus text format. Labels are few and bounded — route
//! templates, systems, outcomes and problem codes, colours — never record ids, names or
//! anything a caller typed.

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

/// The hub's metrics, one registry per hub (tests run several hubs in one process).
pub struct HubMetrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    ingests: Family<IngestLabels, Counter>,
    link_changes: Family<LinkLabels, Counter>,
    audit_entries: Counter,
    policy_swaps: Counter,
    index_templates: Family<IndexLabels, Gauge>,
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
        let link_changes = Family::<LinkLabels, Counter>::default();
        let audit_entries = Counter::default();
        let policy_swaps = Counter::default();
        let index_templates = Family::<IndexLabels, Gauge>::default();
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
            "index_templates",
            "Templates in each biometric index",
            index_templates.clone(),
        );
        Self {
            registry,
            http_requests,
            http_seconds,
            ingests,
            link_changes,
            audit_entries,
            policy_swaps,
            index_templates,
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

    pub fn index_size(&self, partition: &str, algorithm: &str, templates: usize) {
        self.index_templates
            .get_or_create(&IndexLabels {
                partition: partition.to_owned(),
                algorithm: algorithm.to_owned(),
            })
            .set(i64::try_from(templates).unwrap_or(i64::MAX));
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
