//! The parts the services share, each behind the narrow interface the services use, so that
//! later work can put another implementation behind it: the two partitions' stores, the
//! biometric indexes (local today; remote shards next), record serialisation (an in-process
//! striped lock today; a database advisory lock next) and the detection marks.

use std::collections::BTreeMap;
use std::time::Duration;

use connectors::{Partition, RecordRef, SourceSystem};
use tokio::sync::OnceCell;

use crate::batch::{BatchWriter, Batcher};
use crate::biometrics::Biometrics;
use crate::error::HubError;
use crate::store::{IdentityStore, StoredRecord};

/// The common identity repository: one store per partition.
#[derive(Debug, Clone)]
pub(crate) struct Partitions {
    civil: IdentityStore,
    law_enforcement: IdentityStore,
}

impl Partitions {
    pub(crate) fn new(civil: IdentityStore, law_enforcement: IdentityStore) -> Self {
        Self {
            civil,
            law_enforcement,
        }
    }

    pub(crate) fn of(&self, partition: Partition) -> &IdentityStore {
        match partition {
            Partition::Civil => &self.civil,
            Partition::LawEnforcement => &self.law_enforcement,
        }
    }

    /// The store holding `system`'s records.
    pub(crate) fn holding(&self, system: SourceSystem) -> &IdentityStore {
        self.of(system.partition())
    }

    /// A stored record, or [`HubError::RecordNotFound`].
    pub(crate) async fn stored(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<StoredRecord, HubError> {
        self.holding(system)
            .get(system, source_id)
            .await?
            .ok_or(HubError::RecordNotFound)
    }
}

/// The biometric indexes, set once they are complete: until then the hub is not ready.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    complete: OnceCell<Biometrics>,
}

impl Indexes {
    /// The indexes, or [`HubError::NotReady`] while they are being built.
    pub(crate) fn ready(&self) -> Result<&Biometrics, HubError> {
        self.complete.get().ok_or(HubError::NotReady)
    }

    pub(crate) fn get(&self) -> Option<&Biometrics> {
        self.complete.get()
    }

    pub(crate) fn complete(&self, biometrics: Biometrics) {
        let _ = self.complete.set(biometrics);
    }
}

/// Stripes of the per-record lock: enough that unrelated records rarely wait on each other's
/// stripe with many ingests in flight (fewer stripes made ingests wait: bench/README.md).
const RECORD_LOCK_STRIPES: usize = 1024;

/// Record serialisation: work on one record (ingest, delete, a finished detection) runs
/// alone, so that two versions in flight cannot interleave their index updates and
/// detections. Within this process a striped lock; across the hubs on one PostgreSQL
/// database, besides, a session advisory lock on the record's key, taken in the record's
/// partition database (on SQLite this process is the only writer).
#[derive(Debug)]
pub(crate) struct RecordLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
    stores: std::sync::Arc<Partitions>,
}

/// A record's lock, held until dropped.
#[derive(Debug)]
pub(crate) struct RecordGuard<'a> {
    // Dropped in order: the other hubs' lock first, then this process's stripe.
    _shared: Option<crate::store::KeyLock>,
    _stripe: tokio::sync::MutexGuard<'a, ()>,
}

impl RecordLocks {
    pub(crate) fn new(stores: std::sync::Arc<Partitions>) -> Self {
        Self {
            stripes: (0..RECORD_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            stores,
        }
    }

    /// Waits for `record`'s lock: this process's stripe first (so that its own workers
    /// queue without a connection each), then the advisory lock, for at most the statement
    /// timeout (then 503).
    pub(crate) async fn lock(&self, record: &RecordRef) -> Result<RecordGuard<'_>, HubError> {
        let key = record_key(record);
        let stripe_at =
            usize::try_from(key.unsigned_abs() % RECORD_LOCK_STRIPES as u64).unwrap_or(0);
        let stripe = self.stripes[stripe_at].lock().await;
        let shared = self
            .stores
            .holding(record.system)
            .database()
            .key_lock(key)
            .await?;
        Ok(RecordGuard {
            _shared: shared,
            _stripe: stripe,
        })
    }
}

/// A record's lock key: the same in every process and every release (a stable hash of the
/// system and source id; `DefaultHasher` may change between Rust releases, and two hubs of
/// different builds must agree). Two records sharing a key only wait for each other.
fn record_key(record: &RecordRef) -> i64 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(
        format!("{}\u{1f}{}", record.system.as_str(), record.source_id).as_bytes(),
    );
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

/// What a partition's mark writer is asked to do, in queue order.
#[derive(Debug)]
enum PendingMark {
    /// A finished detection to mark in the store.
    Detected { record_id: i64, version: i64 },
    /// Answered once every mark queued before it is written (or failed to be).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// One partition's writer of detection marks: a mark is a write of its own, and each
/// write holds SQLite's single write lock through a commit, so the writer gathers marks for
/// a while (less when a barrier waits) and writes them in one statement. The linger bounds
/// what a crash can make start-up detect again.
#[derive(Debug)]
struct MarkWriter {
    store: IdentityStore,
}

impl BatchWriter for MarkWriter {
    type Job = PendingMark;
    const MAX_BATCH: usize = 128;
    const LINGER: Duration = Duration::from_millis(100);

    fn urgent(&self, job: &PendingMark) -> bool {
        matches!(job, PendingMark::Barrier(_))
    }

    async fn write(&mut self, batch: &mut Vec<PendingMark>) {
        let mut marks = Vec::with_capacity(batch.len());
        let mut barriers = Vec::new();
        for pending in batch.drain(..) {
            match pending {
                PendingMark::Detected { record_id, version } => marks.push((record_id, version)),
                PendingMark::Barrier(done) => barriers.push(done),
            }
        }
        if let Err(e) = self.store.mark_detected_many(&marks).await {
            // Unmarked records are detected again at the next start: nothing is lost.
            tracing::error!(error = %e, marks = marks.len(), "detection marks not written");
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}

/// The marks of finished detections, one writer per partition.
#[derive(Debug)]
pub(crate) struct DetectionMarks {
    writers: BTreeMap<Partition, Batcher<PendingMark>>,
}

impl DetectionMarks {
    pub(crate) fn spawn(stores: &Partitions) -> Self {
        Self {
            writers: [Partition::Civil, Partition::LawEnforcement]
                .into_iter()
                .map(|partition| {
                    let store = stores.of(partition).clone();
                    (partition, Batcher::spawn(MarkWriter { store }))
                })
                .collect(),
        }
    }

    /// Queues the record that detection finished for `record_id` at `version`; the
    /// partition's mark writer writes it with whatever other marks queued up meanwhile (one
    /// statement, one commit). Nobody waits for it: the record and its links are already
    /// stored, and a mark a crash loses only has start-up detect the record again.
    pub(crate) async fn mark(
        &self,
        partition: Partition,
        record_id: i64,
        version: i64,
    ) -> Result<(), HubError> {
        self.writer(partition)?
            .send(PendingMark::Detected { record_id, version })
            .await
            .map_err(|_| HubError::Unavailable)
    }

    /// Waits until every mark queued for `partition` so far is written (or failed to be).
    pub(crate) async fn written(&self, partition: Partition) -> Result<(), HubError> {
        let (done, written) = tokio::sync::oneshot::channel();
        self.writer(partition)?
            .send(PendingMark::Barrier(done))
            .await
            .map_err(|_| HubError::Unavailable)?;
        written.await.map_err(|_| HubError::Unavailable)
    }

    fn writer(&self, partition: Partition) -> Result<&Batcher<PendingMark>, HubError> {
        self.writers.get(&partition).ok_or(HubError::Unavailable)
    }
}
