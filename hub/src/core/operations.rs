//! Operations: readiness, metrics, the state of the biometric indexes, and a clean stop.

use std::path::PathBuf;
use std::sync::Arc;

use connectors::Partition;
use serde::Serialize;
use utoipa::ToSchema;

use super::feed::{FeedLag, Feeds, READER_EXPIRY};
use super::guard::Gate;
use super::parts::{DetectionMarks, Indexes, Partitions};
use crate::access::{HubDuty, Principal};
use crate::config::Settings;
use crate::error::HubError;
use crate::metrics::HubMetrics;
use crate::store::{ControlStore, LinkStore};

/// The longest `/readyz` waits for the databases' answers: a probe that hangs on a database
/// out of reach would tell a load balancer nothing.
const READINESS_DEADLINE: std::time::Duration = std::time::Duration::from_millis(800);

/// The advisory lock key the hub pruning a partition's feed holds (PostgreSQL): any fixed
/// number no other lock of the hub uses.
const FEED_PRUNER_LOCK: i64 = 0x6665_6564_5f70_7275;

/// One index and how it compares with the store.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IndexStatus {
    pub partition: Partition,
    pub algorithm: String,
    /// Templates in the index.
    pub indexed: usize,
    /// Templates of the algorithm at or above minimum quality in the store.
    pub eligible: usize,
    /// Members a search re-ranks by cosine after scanning every member's sign sketch; 0:
    /// searches walk the HNSW graph (the setting `search.sketch_shortlist`).
    pub sketch_shortlist: usize,
    /// HNSW's candidate list while inserting (the setting `index.expansion_add`, by default
    /// 128 for a graph that searches walk and 16 for one they do not).
    pub expansion_add: usize,
    /// The shortest candidate list any template in the index was inserted with: how well
    /// its graph is built (0: unknown, saved by an earlier version). An index that walks its
    /// graph is rebuilt at start when this is below `expansion_add`.
    pub graph_expansion_add: usize,
}

/// The operations service, for operators and the process's own life cycle.
#[derive(Debug)]
pub struct Operations {
    pub(super) gate: Arc<Gate>,
    pub(super) stores: Arc<Partitions>,
    pub(super) links: LinkStore,
    pub(super) control: ControlStore,
    pub(super) indexes: Arc<Indexes>,
    pub(super) marks: Arc<DetectionMarks>,
    pub(super) feeds: Arc<Feeds>,
    pub(super) settings: Arc<Settings>,
    pub(super) metrics: Arc<HubMetrics>,
    /// Where the SQLite files and the index files live: readiness needs room there.
    pub(super) data_dir: PathBuf,
}

impl Operations {
    /// Where the audit chain ends, as recorded at its last append (`None`: nothing yet).
    pub async fn audit_chain_end(&self) -> Result<Option<crate::store::ChainEnd>, HubError> {
        Ok(self.control.audit_head().await?)
    }

    /// The hub's metrics, for the HTTP layer to add its own.
    pub fn metrics(&self) -> &HubMetrics {
        &self.metrics
    }

    /// The Prometheus exposition, for operators; index sizes are read at the scrape.
    pub async fn metrics_text(&self, principal: &Principal) -> Result<String, HubError> {
        self.gate
            .access(principal)
            .await?
            .require_duty(HubDuty::Operate)?;
        for position in self.feeds.positions() {
            self.metrics.feed_state(
                position.partition.as_str(),
                position.cursor.position,
                position.lag,
            );
        }
        if let Some(biometrics) = self.indexes.get() {
            for partition in [Partition::Civil, Partition::LawEnforcement] {
                for algorithm in &self.settings.biometrics.algorithms {
                    self.metrics.index_size(
                        partition.as_str(),
                        &algorithm.id,
                        biometrics.len(partition, &algorithm.id),
                    );
                }
            }
        }
        Ok(self.metrics.encode())
    }

    /// Every index with its template count beside the store's.
    pub async fn index_status(&self, principal: &Principal) -> Result<Vec<IndexStatus>, HubError> {
        self.gate
            .access(principal)
            .await?
            .require_duty(HubDuty::Operate)?;
        let biometrics = self.indexes.ready()?;
        let mut status = Vec::new();
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            for algorithm in &self.settings.biometrics.algorithms {
                let eligible = self
                    .stores
                    .of(partition)
                    .indexable_template_ids(&algorithm.id)
                    .await?
                    .len();
                // Every registered algorithm has an index in each partition once prepared:
                // a missing one is the hub's fault, not a reason for the caller to retry.
                let index = biometrics.index(partition, &algorithm.id).ok_or_else(|| {
                    HubError::Internal(format!(
                        "no {} index for algorithm {}",
                        partition.as_str(),
                        algorithm.id
                    ))
                })?;
                status.push(IndexStatus {
                    partition,
                    algorithm: algorithm.id.clone(),
                    indexed: index.len(),
                    eligible,
                    sketch_shortlist: index.shortlist(),
                    expansion_add: index.expansion_add(),
                    graph_expansion_add: index.graph_expansion_add(),
                });
            }
        }
        Ok(status)
    }

    /// Ready when the biometric indexes are complete, every database answers within
    /// [`READINESS_DEADLINE`], the data directory's file system has room and this hub has
    /// read both change feeds to their end within `feed.max_lag_seconds`; says which of them
    /// is not. Answers how far behind each feed the hub is.
    pub async fn ready(&self) -> Result<Vec<FeedLag>, HubError> {
        self.indexes.ready()?;
        self.disk_has_room()?;
        if let Some(partition) = self.feeds.behind(self.settings.feed.max_lag()) {
            return Err(HubError::OutOfService(format!(
                "the {} change feed has not been read to its end within {} s",
                partition.as_str(),
                self.settings.feed.max_lag_seconds
            )));
        }
        let databases = [
            ("civil", self.stores.of(Partition::Civil).database()),
            (
                "law-enforcement",
                self.stores.of(Partition::LawEnforcement).database(),
            ),
            ("links", self.links.database()),
            ("control", self.control.database()),
        ];
        let answers = tokio::time::timeout(
            READINESS_DEADLINE,
            futures::future::join_all(databases.iter().map(|(_, database)| database.ping())),
        )
        .await
        .map_err(|_| {
            tracing::warn!("a database did not answer the readiness probe in time");
            HubError::OutOfService("a database does not answer in time".to_owned())
        })?;
        for ((name, _), answer) in databases.iter().zip(answers) {
            answer.map_err(|e| {
                tracing::warn!(database = name, error = %e, "database not answering");
                HubError::OutOfService(format!("the {name} database does not answer"))
            })?;
        }
        Ok(self.feeds.positions().iter().map(|p| p.lag()).collect())
    }

    /// Upkeep of the change feeds, run every `feed.mend_interval_seconds`: rows older than
    /// `feed.retention_hours` are pruned, and each partition's indexes are checked against
    /// the store and mended (a change the feed could not deliver, a template the index
    /// refused).
    pub async fn tend_feeds(&self) -> Result<(), HubError> {
        let biometrics = self.indexes.ready()?;
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            let store = self.stores.of(partition);
            // One pruner at a time among the hubs on this database; every hub mends its own
            // indexes.
            let pruned = match store.database().try_advisory_lock(FEED_PRUNER_LOCK).await? {
                Some(_pruner) => {
                    store
                        .prune_feed(self.settings.feed.retention(), READER_EXPIRY)
                        .await?
                }
                None => 0,
            };
            let (added, removed) = biometrics.mend(partition, store).await?;
            if pruned > 0 || added > 0 || removed > 0 {
                tracing::info!(
                    partition = partition.as_str(),
                    pruned,
                    added,
                    removed,
                    "change feed pruned, indexes checked against the store"
                );
            }
        }
        Ok(())
    }

    /// The data directory's file system keeps the free space the settings ask for: a full
    /// disk fails every write while reads still answer, and a load balancer should stop
    /// sending traffic until an operator makes room.
    fn disk_has_room(&self) -> Result<(), HubError> {
        let minimum = self.settings.database.min_free_disk_mib;
        let stats = rustix::fs::statvfs(&self.data_dir).map_err(|e| {
            tracing::warn!(error = %e, "cannot read the data directory's free space");
            HubError::OutOfService("the data directory cannot be read".to_owned())
        })?;
        let free_mib = stats.f_bavail.saturating_mul(stats.f_frsize) / (1024 * 1024);
        if free_mib < minimum {
            tracing::warn!(
                free_mib,
                minimum,
                "the data directory's disk is nearly full"
            );
            return Err(HubError::OutOfService(format!(
                "the data directory's file system has less than {minimum} MiB free"
            )));
        }
        Ok(())
    }

    /// Saves the indexes that changed since their last save.
    pub async fn save_indexes(&self) -> Result<(), HubError> {
        if let Some(biometrics) = self.indexes.get() {
            biometrics.save_dirty().await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        // Marks still gathering would meet closed pools; written now, start-up need not
        // detect those records again.
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            let _ = self.marks.written(partition).await;
        }
        for database in [
            self.stores.of(Partition::Civil).database(),
            self.stores.of(Partition::LawEnforcement).database(),
            self.links.database(),
            self.control.database(),
        ] {
            database.close().await;
        }
    }
}
