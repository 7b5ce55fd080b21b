//! Following the partitions' change feeds: each partition's reader applies what any hub on
//! the same databases changed to this hub's biometric indexes and owner maps, knows how far
//! it has read (its position) and since when it has been level with the feed (its lag), and
//! lets an ingest wait until what committed before it has been applied. Each hub reports its
//! position to the feed's database, so that rows every hub has passed can be pruned.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connectors::Partition;
use serde::Serialize;
use utoipa::ToSchema;

use super::parts::{Indexes, Partitions};
use crate::biometrics::Biometrics;
use crate::error::HubError;
use crate::metrics::HubMetrics;
use crate::store::{FeedCursor, IdentityStore};

/// The least a reader waits after a failed read before the next.
const FAILED_READ_PAUSE: Duration = Duration::from_secs(1);

/// Feed rows read per round trip.
const FEED_PAGE: usize = 1_000;

/// How often a hub reports its position when it has not moved: a heartbeat that keeps its
/// unread rows from being pruned.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// How long a hub's last report holds back pruning: longer than any start-up between taking
/// the start positions and the first read, so that a hub loading its indexes keeps its rows.
pub(crate) const READER_EXPIRY: Duration = Duration::from_secs(600);

/// Where one partition's reader stands.
#[derive(Debug, Default)]
struct Reading {
    /// `None` until the indexes are prepared: the reader starts where the store was read.
    cursor: Option<FeedCursor>,
    /// When the last read that reached the end of the feed began.
    level_at: Option<Instant>,
    /// The position last reported to the store, and when.
    reported: Option<(FeedCursor, Instant)>,
}

/// One partition's reader.
#[derive(Debug)]
struct Reader {
    reading: Mutex<Reading>,
    /// Reads begun so far: each read is numbered by it as it begins.
    begun: AtomicU64,
    /// The number of the last read that reached the end of the feed: everything committed
    /// before it began is applied.
    applied: tokio::sync::watch::Sender<u64>,
    /// Wakes the reader before its next poll: an ingest waiting.
    wake: tokio::sync::Notify,
}

impl Reader {
    fn new() -> Self {
        Self {
            reading: Mutex::new(Reading::default()),
            begun: AtomicU64::new(0),
            applied: tokio::sync::watch::Sender::new(0),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn reading(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.reading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How far behind a partition's change feed a hub may be.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeedLag {
    pub partition: Partition,
    /// Milliseconds since this hub last read the feed to its end; `null` before its first
    /// read.
    pub lag_ms: Option<u64>,
}

/// Where a hub stands in a partition's feed.
#[derive(Debug, Clone)]
pub(crate) struct FeedPosition {
    pub(crate) partition: Partition,
    /// The last feed row applied.
    pub(crate) cursor: FeedCursor,
    /// Since this hub last read the feed to its end; `None` before its first read.
    pub(crate) lag: Option<Duration>,
}

impl FeedPosition {
    pub(crate) fn lag(&self) -> FeedLag {
        FeedLag {
            partition: self.partition,
            lag_ms: self
                .lag
                .map(|lag| u64::try_from(lag.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// The readers of both partitions' feeds.
#[derive(Debug)]
pub(crate) struct Feeds {
    readers: BTreeMap<Partition, Reader>,
    stores: std::sync::Arc<Partitions>,
    /// This run's name among the feeds' readers.
    id: String,
}

impl Feeds {
    pub(crate) fn new(stores: std::sync::Arc<Partitions>) -> Self {
        Self {
            readers: [Partition::Civil, Partition::LawEnforcement]
                .into_iter()
                .map(|partition| (partition, Reader::new()))
                .collect(),
            stores,
            id: uuid::Uuid::now_v7().to_string(),
        }
    }

    fn reader(&self, partition: Partition) -> Result<&Reader, HubError> {
        self.readers
            .get(&partition)
            .ok_or_else(|| HubError::Internal("no feed reader for a partition".to_owned()))
    }

    /// Where each partition's reader will start: taken before the indexes read the store,
    /// so that whatever commits meanwhile is read again from the feed.
    pub(crate) async fn starts(&self) -> Result<BTreeMap<Partition, FeedCursor>, HubError> {
        let mut starts = BTreeMap::new();
        for partition in self.readers.keys() {
            let store = self.stores.of(*partition);
            let start = store.feed_start().await?;
            // Reported at once: rows after it are kept for this hub while it loads.
            store.report_feed_position(&self.id, start).await?;
            starts.insert(*partition, start);
        }
        Ok(starts)
    }

    /// Sets where the readers start, once the indexes hold the store as it was at `starts`.
    pub(crate) fn start_at(
        &self,
        starts: &BTreeMap<Partition, FeedCursor>,
    ) -> Result<(), HubError> {
        for (partition, cursor) in starts {
            self.reader(*partition)?.reading().cursor = Some(*cursor);
        }
        Ok(())
    }

    /// Reads `partition`'s feed to its end and applies it to `biometrics`; answers how many
    /// changes it applied. A reader that then finds the feed pruned past where it began
    /// mends the partition's indexes from the store.
    pub(crate) async fn read(
        &self,
        partition: Partition,
        biometrics: &Biometrics,
        metrics: &HubMetrics,
    ) -> Result<usize, HubError> {
        let reader = self.reader(partition)?;
        let store = self.stores.of(partition);
        let Some(mut settled) = reader.reading().cursor else {
            return Ok(0);
        };
        let number = reader.begun.fetch_add(1, Ordering::AcqRel) + 1;
        let began = Instant::now();
        let started_from = settled;
        let mut scan = settled;
        let mut applied = 0;
        loop {
            let page = store.feed_after(scan, settled, FEED_PAGE).await?;
            biometrics.apply(partition, &page.changes).await?;
            applied += page.changes.len();
            scan = page.scanned;
            settled = page.settled;
            reader.reading().cursor = Some(settled);
            if page.complete {
                // Pruned past where this read began, before or while it read: this hub had
                // gone uncounted among the readers (silent too long, or behind the
                // retention), and rows it had not read may be gone. One look, at the end:
                // the rows still there were applied, and the mend puts back the rest.
                if started_from < store.feed_pruned_through().await? {
                    settled = mend(partition, store, biometrics).await?;
                    reader.reading().cursor = Some(settled);
                }
                reader.reading().level_at = Some(began);
                reader.applied.send_if_modified(|last| {
                    let newer = number > *last;
                    if newer {
                        *last = number;
                    }
                    newer
                });
                metrics.feed_applied(partition.as_str(), applied);
                let report_due = reader
                    .reading()
                    .reported
                    .is_none_or(|(cursor, at)| cursor != settled || at.elapsed() >= REPORT_EVERY);
                if report_due {
                    store.report_feed_position(&self.id, settled).await?;
                    reader.reading().reported = Some((settled, Instant::now()));
                }
                return Ok(applied);
            }
        }
    }

    /// Follows `partition`'s feed for as long as the hub runs: a read every `interval`, or
    /// sooner when woken. Reads begin once the indexes are prepared.
    pub(crate) async fn follow(
        &self,
        partition: Partition,
        indexes: &Indexes,
        interval: Duration,
        metrics: &HubMetrics,
    ) {
        let Ok(reader) = self.reader(partition) else {
            return;
        };
        loop {
            let mut pause = interval;
            if let Some(biometrics) = indexes.get()
                && let Err(e) = self.read(partition, biometrics, metrics).await
            {
                tracing::warn!(partition = partition.as_str(), error = %e, "reading the change feed failed");
                // A database out of reach: try again, without a warning every few
                // milliseconds.
                pause = interval.max(FAILED_READ_PAUSE);
            }
            let _ = tokio::time::timeout(pause, reader.wake.notified()).await;
        }
    }

    /// Waits, for at most `deadline`, until this hub has applied every change of
    /// `partition` committed before the call: until a read that began after it has reached
    /// the end of the feed.
    pub(crate) async fn caught_up(
        &self,
        partition: Partition,
        deadline: Duration,
    ) -> Result<(), HubError> {
        let reader = self.reader(partition)?;
        let mut applied = reader.applied.subscribe();
        let wanted = reader.begun.load(Ordering::Acquire) + 1;
        reader.wake.notify_one();
        tokio::time::timeout(deadline, applied.wait_for(|number| *number >= wanted))
            .await
            .map_err(|_| {
                tracing::warn!(
                    partition = partition.as_str(),
                    "the change feed was not read in time for an ingest"
                );
                HubError::Unavailable
            })?
            .map_err(|_| HubError::Unavailable)?;
        Ok(())
    }

    /// Each partition's position and lag.
    pub(crate) fn positions(&self) -> Vec<FeedPosition> {
        self.readers
            .iter()
            .map(|(partition, reader)| {
                let reading = reader.reading();
                FeedPosition {
                    partition: *partition,
                    cursor: reading.cursor.unwrap_or_default(),
                    lag: reading.level_at.map(|at| at.elapsed()),
                }
            })
            .collect()
    }

    /// A partition whose feed this hub has not read to its end within `max_lag`, if any.
    pub(crate) fn behind(&self, max_lag: Duration) -> Option<Partition> {
        self.readers.iter().find_map(|(partition, reader)| {
            let level = reader.reading().level_at;
            level
                .is_none_or(|at| at.elapsed() > max_lag)
                .then_some(*partition)
        })
    }
}

/// Mends `partition`'s indexes from the store; answers the cursor to read on from.
async fn mend(
    partition: Partition,
    store: &IdentityStore,
    biometrics: &Biometrics,
) -> Result<FeedCursor, HubError> {
    let start = store.feed_start().await?;
    let (added, removed) = biometrics.mend(partition, store).await?;
    tracing::warn!(
        partition = partition.as_str(),
        added,
        removed,
        "the change feed was pruned past this hub's position: indexes mended from the store"
    );
    Ok(start)
}
