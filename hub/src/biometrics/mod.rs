//! The shared biometric matching service (sBMS): one ANN index per partition × algorithm,
//! derived from the store (the truth), persisted under the data directory, checked against
//! the store at start-up and mended or rebuilt from it.

pub mod ann;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use connectors::{AlgorithmRegistry, Partition};

use self::ann::{AnnError, AnnIndex, IndexSettings, Neighbour, Quantization};
use crate::store::{IdentityStore, TemplateChange, TemplateOwner};

/// Templates read from the store per round trip while building an index.
const PAGE: usize = 2_000;

/// One index and whether it changed since it was last saved.
#[derive(Debug)]
struct Slot {
    index: Arc<AnnIndex>,
    path: PathBuf,
    dirty: AtomicBool,
}

/// Every index, complete: a `Biometrics` exists only once each index holds exactly the
/// store's indexable templates, so nothing is ever searched in an incomplete index.
#[derive(Debug)]
pub struct Biometrics {
    slots: HashMap<(Partition, String), Slot>,
    /// Template id → its record, per partition: derived like the index, so that a 1:N
    /// search answers without a store round trip per query.
    owners: HashMap<Partition, RwLock<HashMap<i64, TemplateOwner>>>,
}

/// A 1:N hit: a template of a partition, the record it belongs to, and its similarity to
/// the probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub partition: Partition,
    pub owner: TemplateOwner,
    pub similarity: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum BiometricsError {
    #[error(transparent)]
    Index(#[from] AnnError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error("index task failed: {0}")]
    Task(String),
    #[error("cannot create the index directory: {0}")]
    Io(#[from] std::io::Error),
}

/// What the settings file may change in every index the hub builds: how searches find
/// their neighbours (`search.sketch_shortlist`) and how hard an insertion works on the graph
/// (`index.expansion_add`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTuning {
    pub sketch_shortlist: usize,
    pub expansion_add: usize,
    /// The ef of searches that walk the graph; unset: the modality's own.
    pub expansion_search: Option<usize>,
}

impl IndexTuning {
    /// The tuning of a search method (`sketch_shortlist`; 0: walk the graph), its graph built
    /// with `expansion_add`, or unset, for that method: for walking when searches walk it
    /// ([`EXPANSION_ADD`]), else cheaply ([`SCANNED_EXPANSION_ADD`]), since no search reads
    /// it then, and an index that comes to walk it is rebuilt at start.
    pub fn new(sketch_shortlist: usize, expansion_add: Option<usize>) -> Self {
        let for_method = if sketch_shortlist > 0 {
            SCANNED_EXPANSION_ADD
        } else {
            EXPANSION_ADD
        };
        Self {
            sketch_shortlist,
            expansion_add: expansion_add.unwrap_or(for_method),
            expansion_search: None,
        }
    }
}

impl Default for IndexTuning {
    fn default() -> Self {
        Self::new(SKETCH_SHORTLIST, None)
    }
}

/// The index settings the hub uses for an algorithm's templates.
pub fn settings_for(algorithm: &connectors::Algorithm, tuning: IndexTuning) -> IndexSettings {
    IndexSettings {
        dimension: algorithm.dimension,
        // A quarter of f32's vector memory, and the fastest storage at the same genuine-mate
        // recall on every CPU measured (`interop-hub bench`, quantisation table; figures in
        // bench/README.md). Quantised per vector, not by usearch's coarser cast
        // (`kernels::quantize_i8`).
        quantization: Quantization::I8,
        // A missed mate is a missed identity fraud: 256 is where the hub's trade-off curves
        // (`interop-hub bench`) reach the recall target for faces and fingers, and 128 falls
        // short (bench/README.md).
        expansion_search: tuning.expansion_search.unwrap_or(match algorithm.modality {
            connectors::Modality::Face => FACE_EXPANSION_SEARCH,
            connectors::Modality::Finger => FINGER_EXPANSION_SEARCH,
            connectors::Modality::Iris => IndexSettings::DEFAULT_EXPANSION,
        }),
        // 1:N searches, the portal's and the detector's, scan the sign sketches instead of
        // walking the graph: cheaper per ingest than the detector's graph walks
        // (`interop-hub bench`, ingest steps).
        shortlist: tuning.sketch_shortlist,
        expansion_add: tuning.expansion_add,
        ..IndexSettings::default()
    }
}

/// Members a sketch search re-ranks by cosine (`IndexSettings::shortlist`), unless the
/// setting `search.sketch_shortlist` says otherwise.
pub const SKETCH_SHORTLIST: usize = 64;

/// HNSW's candidate list while inserting into a graph that searches walk, unless the
/// setting `index.expansion_add` says otherwise.
pub const EXPANSION_ADD: usize = IndexSettings::DEFAULT_EXPANSION;

/// The same, into a graph no search walks (sketch searches, the default): inserting at 16
/// is several times faster than at 128, and no search reads the graph. Walked, such a graph
/// finds too few mates, so an index that comes to walk it is rebuilt at start
/// (bench/README.md).
pub const SCANNED_EXPANSION_ADD: usize = 16;

/// HNSW's search expansion for face indexes: used only while the index's shortlist is 0
/// (otherwise searches scan the sketches), by searches that name no expansion.
pub const FACE_EXPANSION_SEARCH: usize = 256;

/// HNSW's search expansion for finger indexes, likewise.
pub const FINGER_EXPANSION_SEARCH: usize = 256;

// A panic elsewhere while holding the lock leaves a map that is still consistent entry by
// entry: keep serving rather than poison every later search.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs blocking index work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BiometricsError> + Send + 'static,
) -> Result<T, BiometricsError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BiometricsError::Task(e.to_string()))?
}

fn key(template_id: i64) -> u64 {
    // Store ids are positive; the index keys them as unsigned.
    template_id.unsigned_abs()
}

impl Biometrics {
    /// Loads each partition × algorithm index from its file and makes it hold exactly the
    /// store's indexable templates: missing ones are added; an index whose file is missing
    /// or unreadable, or that holds templates the store no longer has, is rebuilt.
    pub async fn open(
        registry: &AlgorithmRegistry,
        tuning: IndexTuning,
        dir: &Path,
        store_of: impl Fn(Partition) -> IdentityStore,
    ) -> Result<Self, BiometricsError> {
        // Inside the data directory, which the hub restricted at start.
        crate::data_dir::create(dir)?;
        let mut slots = HashMap::new();
        let mut owners = HashMap::new();
        for partition in [Partition::Civil, Partition::LawEnforcement] {
            let listed = store_of(partition).indexable_template_owners().await?;
            let by_template = listed
                .into_iter()
                .map(|owner| (owner.template_id, owner))
                .collect();
            owners.insert(partition, RwLock::new(by_template));
            for algorithm in &registry.algorithms {
                let path = dir.join(format!("{}-{}.usearch", partition.as_str(), algorithm.id));
                let store = store_of(partition);
                let settings = settings_for(algorithm, tuning);
                let (index, changed) = Self::reconcile(&store, algorithm, settings, &path).await?;
                tracing::info!(
                    partition = partition.as_str(),
                    algorithm = %algorithm.id,
                    templates = index.len(),
                    "biometric index checked against the store"
                );
                slots.insert(
                    (partition, algorithm.id.clone()),
                    Slot {
                        index: Arc::new(index),
                        path,
                        dirty: AtomicBool::new(changed),
                    },
                );
            }
        }
        let biometrics = Self { slots, owners };
        biometrics.save_dirty().await?;
        Ok(biometrics)
    }

    async fn reconcile(
        store: &IdentityStore,
        algorithm: &connectors::Algorithm,
        settings: IndexSettings,
        path: &Path,
    ) -> Result<(AnnIndex, bool), BiometricsError> {
        let ids = store.indexable_template_ids(&algorithm.id).await?;
        let file = path.to_path_buf();
        let loaded_settings = settings.clone();
        let loaded = blocking(move || {
            Ok(match AnnIndex::load(&file, &loaded_settings) {
                Ok(index) => Some(index),
                Err(e) => {
                    // No file is a first start; any other refusal is worth knowing about.
                    if file.exists() {
                        tracing::warn!(error = %e, "index file not loaded: rebuilding from the store");
                    }
                    None
                }
            })
        })
        .await?;
        let (index, missing) = match loaded {
            Some(index) => {
                let index = Arc::new(index);
                let probe = Arc::clone(&index);
                let expected: Vec<u64> = ids.iter().map(|id| key(*id)).collect();
                let adopted = blocking(move || Ok(probe.adopt_members(&expected))).await?;
                match adopted {
                    Ok(absent) => {
                        let absent: std::collections::HashSet<u64> = absent.into_iter().collect();
                        let missing: Vec<i64> = ids
                            .iter()
                            .copied()
                            .filter(|id| absent.contains(&key(*id)))
                            .collect();
                        if index.len() + missing.len() == ids.len() {
                            (index, missing)
                        } else {
                            tracing::warn!(algorithm = %algorithm.id, "index holds templates the store does not: rebuilding");
                            (Arc::new(AnnIndex::new(&settings)?), ids)
                        }
                    }
                    Err(e) => {
                        tracing::warn!(algorithm = %algorithm.id, error = %e, "index vectors unreadable: rebuilding");
                        (Arc::new(AnnIndex::new(&settings)?), ids)
                    }
                }
            }
            None => (Arc::new(AnnIndex::new(&settings)?), ids),
        };
        for chunk in missing.chunks(PAGE) {
            let templates = store.templates_by_ids(chunk).await?;
            let target = Arc::clone(&index);
            blocking(move || {
                let items: Vec<(u64, &[f32])> = templates
                    .iter()
                    .map(|(id, v)| (key(*id), v.as_slice()))
                    .collect();
                if target.add_batch(&items).is_err() {
                    // One template the index refuses (written before a rule that now refuses
                    // it, or of a changed dimension) must not keep the hub from ever being
                    // ready: add the rest one by one and report the rejects.
                    for (key, vector) in items {
                        if let Err(e) = target.add(key, vector) {
                            tracing::error!(template = key, error = %e, "template left out of the index");
                        }
                    }
                }
                Ok(())
            })
            .await?;
        }
        let index = Arc::try_unwrap(index)
            .map_err(|_| BiometricsError::Task("index still shared".into()))?;
        Ok((index, !missing.is_empty()))
    }

    /// Adds a record's indexable templates (ids aligned with the record's templates), all
    /// in one blocking task.
    pub async fn add(
        &self,
        partition: Partition,
        record_id: i64,
        record: &connectors::RecordRef,
        templates: &[connectors::BiometricTemplate],
        template_ids: &[i64],
    ) -> Result<(), BiometricsError> {
        let mut inserts: Vec<(Arc<AnnIndex>, u64, Vec<f32>)> = Vec::new();
        for (template, id) in templates.iter().zip(template_ids) {
            if !template.indexable {
                continue;
            }
            // The owner first: a search that finds the key must be able to name its record.
            if let Some(owners) = self.owners.get(&partition) {
                let owner = TemplateOwner {
                    template_id: *id,
                    record_id,
                    record: record.clone(),
                };
                write(owners).insert(*id, owner);
            }
            if let Some(slot) = self.slots.get(&(partition, template.algorithm.clone())) {
                // Marked before the insert: a save that races it saves again next time.
                slot.dirty.store(true, Ordering::Release);
                inserts.push((Arc::clone(&slot.index), key(*id), template.vector.clone()));
            }
        }
        if inserts.is_empty() {
            return Ok(());
        }
        blocking(move || {
            for (index, key, vector) in inserts {
                index.add(key, &vector)?;
            }
            Ok(())
        })
        .await
    }

    /// Makes the index hold exactly `templates` (with their ids) for `record_id`: adds them,
    /// and removes whatever else it holds of that record — templates an update replaced,
    /// where the update stopped before taking them out. Scans the partition's owners, so
    /// for recovery paths, not for every ingest.
    pub async fn replace_record(
        &self,
        partition: Partition,
        record_id: i64,
        record: &connectors::RecordRef,
        templates: &[connectors::BiometricTemplate],
        template_ids: &[i64],
    ) -> Result<(), BiometricsError> {
        let stale: Vec<i64> = match self.owners.get(&partition) {
            Some(owners) => read(owners)
                .values()
                .filter(|owner| owner.record_id == record_id)
                .map(|owner| owner.template_id)
                .filter(|id| !template_ids.contains(id))
                .collect(),
            None => Vec::new(),
        };
        self.remove(partition, &stale).await?;
        self.add(partition, record_id, record, templates, template_ids)
            .await
    }

    /// Removes templates of a partition from every index that holds them.
    pub async fn remove(
        &self,
        partition: Partition,
        template_ids: &[i64],
    ) -> Result<(), BiometricsError> {
        if template_ids.is_empty() {
            return Ok(());
        }
        for ((slot_partition, _), slot) in &self.slots {
            if *slot_partition != partition {
                continue;
            }
            let index = Arc::clone(&slot.index);
            let keys: Vec<u64> = template_ids.iter().map(|id| key(*id)).collect();
            let removed = blocking(move || {
                let mut removed = false;
                for key in keys {
                    removed |= index.remove(key)?;
                }
                Ok(removed)
            })
            .await?;
            if removed {
                slot.dirty.store(true, Ordering::Release);
            }
        }
        if let Some(owners) = self.owners.get(&partition) {
            let mut owners = write(owners);
            for id in template_ids {
                owners.remove(id);
            }
        }
        Ok(())
    }

    /// Brings a partition's indexes and owners to the state each change reports (from the
    /// change feed, or from the store when mending): a present template is added unless the
    /// index holds it already, a gone one removed. Template ids are never reused and a
    /// template never changes, so applying a change twice, or one that is already out of
    /// date, does no harm: a later change of the same template follows it.
    pub async fn apply(
        &self,
        partition: Partition,
        changes: &[TemplateChange],
    ) -> Result<(), BiometricsError> {
        let mut gone = Vec::new();
        let mut inserts: Vec<(Arc<AnnIndex>, u64, Vec<f32>)> = Vec::new();
        for change in changes {
            let Some(present) = &change.present else {
                gone.push(change.template_id);
                continue;
            };
            let Some(slot) = self.slots.get(&(partition, present.algorithm.clone())) else {
                continue;
            };
            // The owner first: a search that finds the key must be able to name its record.
            if let Some(owners) = self.owners.get(&partition) {
                write(owners).insert(change.template_id, present.owner.clone());
            }
            if !slot.index.contains(key(change.template_id)) {
                slot.dirty.store(true, Ordering::Release);
                inserts.push((
                    Arc::clone(&slot.index),
                    key(change.template_id),
                    present.vector.clone(),
                ));
            }
        }
        self.remove(partition, &gone).await?;
        if inserts.is_empty() {
            return Ok(());
        }
        blocking(move || {
            for (index, key, vector) in inserts {
                if let Err(e) = index.add(key, &vector) {
                    // As at start-up: one template the index refuses must not hold up the rest.
                    tracing::error!(template = key, error = %e, "template left out of the index");
                }
            }
            Ok(())
        })
        .await
    }

    /// Makes a partition's indexes hold exactly the store's indexable templates again, as
    /// start-up does: what a missed change left out is added, what it left in is removed.
    /// Answers how many templates it added and removed.
    pub async fn mend(
        &self,
        partition: Partition,
        store: &IdentityStore,
    ) -> Result<(usize, usize), BiometricsError> {
        let listed = store.indexable_template_owners().await?;
        let (missing, extra) = match self.owners.get(&partition) {
            None => return Ok((0, 0)),
            Some(owners) => {
                let owners = read(owners);
                let listed_ids: std::collections::HashSet<i64> =
                    listed.iter().map(|owner| owner.template_id).collect();
                let missing: Vec<i64> = listed
                    .iter()
                    .map(|owner| owner.template_id)
                    .filter(|id| !owners.contains_key(id))
                    .collect();
                let extra: Vec<i64> = owners
                    .keys()
                    .copied()
                    .filter(|id| !listed_ids.contains(id))
                    .collect();
                (missing, extra)
            }
        };
        if missing.is_empty() && extra.is_empty() {
            return Ok((0, 0));
        }
        let mut wanted = missing.clone();
        wanted.extend(&extra);
        for chunk in wanted.chunks(PAGE) {
            let states = store.template_states(chunk).await?;
            self.apply(partition, &states).await?;
        }
        Ok((missing.len(), extra.len()))
    }

    /// 1:N search of one algorithm's indexes in `partitions`, best first. The partitions'
    /// indexes are searched at the same time.
    pub async fn search(
        &self,
        algorithm: &str,
        probe: &[f32],
        count: usize,
        partitions: &[Partition],
    ) -> Result<Vec<Hit>, BiometricsError> {
        let mut found = self
            .search_each(
                vec![(algorithm.to_owned(), probe.to_vec())],
                count,
                None,
                partitions,
            )
            .await?;
        Ok(found.pop().unwrap_or_default())
    }

    /// 1:N searches of several probes, each `(algorithm, vector)`, in `partitions`: the hits
    /// of each probe, best first, in the probes' order. `expansion` is HNSW's ef for every
    /// search that walks a graph (`None`: each index's own). One blocking task per
    /// partition runs every probe, the probes of one algorithm in one call (a record's two
    /// fingers share a scan), and the partitions run at the same time.
    pub async fn search_each(
        &self,
        probes: Vec<(String, Vec<f32>)>,
        count: usize,
        expansion: Option<usize>,
        partitions: &[Partition],
    ) -> Result<Vec<Vec<Hit>>, BiometricsError> {
        let probe_count = probes.len();
        let probes = Arc::new(probes);
        let mut by_algorithm: Vec<(&str, Vec<usize>)> = Vec::new();
        for (at, (algorithm, _)) in probes.iter().enumerate() {
            match by_algorithm
                .iter_mut()
                .find(|(named, _)| named == algorithm)
            {
                Some((_, positions)) => positions.push(at),
                None => by_algorithm.push((algorithm, vec![at])),
            }
        }
        let searches = partitions.iter().map(|partition| {
            let partition = *partition;
            let groups: Vec<(Arc<AnnIndex>, Vec<usize>)> = by_algorithm
                .iter()
                .filter_map(|(algorithm, positions)| {
                    let slot = self.slots.get(&(partition, (*algorithm).to_owned()))?;
                    Some((Arc::clone(&slot.index), positions.clone()))
                })
                .collect();
            let probes = Arc::clone(&probes);
            async move {
                let neighbours = blocking(move || {
                    let mut found: Vec<Vec<Neighbour>> = vec![Vec::new(); probe_count];
                    for (index, positions) in groups {
                        let vectors: Vec<&[f32]> = positions
                            .iter()
                            .map(|&at| probes[at].1.as_slice())
                            .collect();
                        let each = index.search_each_at(&vectors, count, expansion)?;
                        for (at, neighbours) in positions.into_iter().zip(each) {
                            found[at] = neighbours;
                        }
                    }
                    Ok(found)
                })
                .await?;
                Ok::<_, BiometricsError>((partition, neighbours))
            }
        });
        let found = futures::future::try_join_all(searches).await?;
        let mut hits: Vec<Vec<Hit>> = vec![Vec::new(); probe_count];
        for (partition, per_probe) in found {
            let Some(owners) = self.owners.get(&partition) else {
                continue;
            };
            let owners = read(owners);
            for (probe_hits, neighbours) in hits.iter_mut().zip(per_probe) {
                probe_hits.extend(neighbours.into_iter().filter_map(|n| {
                    let owner = owners.get(&i64::try_from(n.key).ok()?)?.clone();
                    Some(Hit {
                        partition,
                        owner,
                        similarity: n.similarity,
                    })
                }));
            }
        }
        for probe_hits in &mut hits {
            probe_hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        }
        Ok(hits)
    }

    /// The index of a partition and algorithm itself, for measuring it without the hub.
    pub fn index(&self, partition: Partition, algorithm: &str) -> Option<Arc<AnnIndex>> {
        self.slots
            .get(&(partition, algorithm.to_owned()))
            .map(|slot| Arc::clone(&slot.index))
    }

    /// Bytes the index of a partition and algorithm holds in memory.
    pub fn memory_usage(&self, partition: Partition, algorithm: &str) -> usize {
        self.slots
            .get(&(partition, algorithm.to_owned()))
            .map_or(0, |slot| slot.index.memory_usage())
    }

    /// Number of templates in the index of a partition and algorithm.
    pub fn len(&self, partition: Partition, algorithm: &str) -> usize {
        self.slots
            .get(&(partition, algorithm.to_owned()))
            .map_or(0, |slot| slot.index.len())
    }

    /// Writes every index that changed since its last save (atomically: temp file, fsync,
    /// rename). A crash loses nothing: start-up mends the index from the store.
    pub async fn save_dirty(&self) -> Result<(), BiometricsError> {
        for slot in self.slots.values() {
            if slot.dirty.swap(false, Ordering::AcqRel) {
                let index = Arc::clone(&slot.index);
                let path = slot.path.clone();
                if let Err(e) = blocking(move || Ok(index.save(&path)?)).await {
                    slot.dirty.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
