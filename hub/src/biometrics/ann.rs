//! The sBMS's 1:N index: one usearch HNSW graph of templates (one partition × modality ×
//! algorithm) with every member's sign sketch beside it for searches that scan them all,
//! wrapped so that any number of threads can share it, it grows by itself, and it is
//! saved atomically with a checksum (after a load, `adopt_members` rebuilds the sketches
//! from the stored vectors). The index is derived data: the store is the truth, so a file
//! that fails to load is an error to rebuild from, never something to patch up.
//!
//! Thread safety rests on five facts read from usearch 2.26.6's C++ core:
//! - every `add` and `search` borrows one of a fixed pool of *thread slots* (scratch contexts),
//!   popped from a mutex-guarded free list and returned before the FFI call comes back; a call
//!   that finds the pool empty fails ("Reserve capacity ahead of …"). The pool holds
//!   `threads + 1` slots: searches pass a counting semaphore of `threads` permits, and the one
//!   writer (below) has the last slot to itself, so the pool can never run dry.
//! - concurrent `add`s leave some nodes stored but unreachable by any search (upstream issue
//!   #735, unfixed in 2.26.6; reproduced here with several inserting threads, never with one
//!   inserter beside searchers: bench/README.md). A missed template is
//!   a missed identity fraud, so all mutations (add, replace, remove) go through one writer
//!   mutex; searches run alongside it.
//! - `reserve` (growing, resizing the slot pool) must not overlap any other call: it runs under
//!   the write half of an `RwLock` that every other call holds for reading.
//! - the duplicate-key check in `add` is not atomic with the insertion, and "replace" has to be
//!   remove-then-add: the writer mutex makes both atomic.
//! - a search reads the graph's entry node as soon as the node count is not zero, and the first
//!   `add` raises the count before it stores that node: the first insertion into an empty
//!   index holds the write half too.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Smallest capacity ever reserved, so that a young index does not regrow on every few inserts.
const MIN_CAPACITY: usize = 1024;
/// usearch marks deleted entries with this key, so it can never name a template.
const RESERVED_KEY: u64 = u64::MAX;
/// Appended after usearch's own bytes: the graph's shortest insertion list (8 bytes), then
/// this magic, usearch's length and a checksum of everything before the magic (8 bytes each).
/// usearch stops reading at the end of its data, so the file stays loadable by any usearch
/// tool; the trailer is only checked here.
const TRAILER_MAGIC: [u8; 8] = *b"HUBANN\0\x02";
/// The trailer of files saved before the insertion list was recorded: magic, length, and a
/// checksum of usearch's bytes alone.
const TRAILER_MAGIC_V1: [u8; 8] = *b"HUBANN\0\x01";
/// Magic, length and checksum: the end of every version's trailer.
const SEAL_LEN: u64 = 24;
const GRAPH_FIELD_LEN: u64 = 8;

/// How similarity between two templates is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cosine similarity. Vectors are normalised to unit length before they reach usearch.
    #[default]
    Cosine,
}

impl Metric {
    fn kind(self) -> MetricKind {
        match self {
            Self::Cosine => MetricKind::Cos,
        }
    }
}

/// The scalar type usearch stores each vector component as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    #[default]
    F32,
    /// Half the memory of `f32`, at some cost in precision.
    F16,
    /// A quarter of the memory of `f32`: each unit vector scaled by its own largest component
    /// into `i8` (`kernels::quantize_i8`; cosine changes by under 2e-3), not by usearch's
    /// fixed `x · 127` cast, whose cosines of 512-d templates are several times further off.
    I8,
}

impl Quantization {
    fn scalar(self) -> ScalarKind {
        match self {
            Self::F32 => ScalarKind::F32,
            Self::F16 => ScalarKind::F16,
            Self::I8 => ScalarKind::I8,
        }
    }

    /// Adds a unit vector to a usearch index of this quantization, in the form the hub's
    /// indexes store it (usearch itself casts to `f16`; `i8` is quantised here).
    pub fn add_unit(self, index: &Index, key: u64, unit: &[f32]) -> Result<(), AnnError> {
        match self {
            Self::F32 | Self::F16 => index.add(key, unit),
            Self::I8 => index.add(key, Self::integers(unit).as_slice()),
        }
        .map_err(native("add a vector"))
    }

    /// The `count` nearest members of a usearch index of this quantization to a unit vector.
    pub fn search_unit(
        self,
        index: &Index,
        unit: &[f32],
        count: usize,
    ) -> Result<usearch::ffi::Matches, AnnError> {
        match self {
            Self::F32 | Self::F16 => index.search(unit, count),
            Self::I8 => index.search(Self::integers(unit).as_slice(), count),
        }
        .map_err(native("search"))
    }

    /// The sign sketch of a unit vector as an index of this quantization stores it: for
    /// `i8` of its quantised form (a component rounded to 0 gives bit 0), as `adopt_members`
    /// sketches the stored vectors after a load. (`f16` can flush a component below about
    /// 6e-8 to 0 as well; a unit vector's components are a thousand times larger.)
    fn stored_sketch(self, unit: &[f32]) -> Vec<u64> {
        let mut sketch = Vec::new();
        match self {
            Self::F32 | Self::F16 => kernels::sign_sketch(unit, &mut sketch),
            Self::I8 => kernels::sign_sketch(&Self::integers(unit), &mut sketch),
        }
        sketch
    }

    fn integers(unit: &[f32]) -> Vec<i8> {
        let mut quantised = Vec::with_capacity(unit.len());
        kernels::quantize_i8(unit, &mut quantised);
        quantised
    }
}

/// How one index is built. `dimension` is the template length of the algorithm it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSettings {
    pub dimension: usize,
    #[serde(default)]
    pub metric: Metric,
    #[serde(default)]
    pub quantization: Quantization,
    /// Edges per graph node (HNSW's M). Stored in the file: changing it needs a rebuild.
    #[serde(default = "IndexSettings::default_connectivity")]
    pub connectivity: usize,
    /// Candidate list length while inserting: higher builds a better graph, slower.
    #[serde(default = "IndexSettings::default_expansion")]
    pub expansion_add: usize,
    /// Candidate list length while searching: higher finds more true neighbours, slower.
    #[serde(default = "IndexSettings::default_expansion")]
    pub expansion_search: usize,
    /// How many searches may run inside usearch at once; the rest wait their turn. Writes are
    /// one at a time regardless. `None`: twice the available CPUs, at least 4.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Searches scan every member's sign sketch and re-rank this many nearest by Hamming
    /// distance (more when tied) with the index's cosine, instead of walking the graph; 0 walks the graph. Two captures of one trait stand far nearer
    /// each other than strangers do, so the true mate is in a short shortlist (the bench's
    /// shortlist curve measures the recall); the scan is linear in the
    /// members but reads one bit per dimension, and needs no graph to reach the mate.
    #[serde(default)]
    pub shortlist: usize,
}

/// The defaults of every field but `dimension`, which has none: it stays 0, which
/// [`AnnIndex::new`] refuses until it is set.
impl Default for IndexSettings {
    fn default() -> Self {
        Self {
            dimension: 0,
            metric: Metric::default(),
            quantization: Quantization::default(),
            connectivity: Self::DEFAULT_CONNECTIVITY,
            expansion_add: Self::DEFAULT_EXPANSION,
            expansion_search: Self::DEFAULT_EXPANSION,
            threads: None,
            shortlist: 0,
        }
    }
}

impl IndexSettings {
    pub const DEFAULT_CONNECTIVITY: usize = 16;
    pub const DEFAULT_EXPANSION: usize = 128;

    /// Cosine over `f32` with the default graph parameters.
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension,
            ..Self::default()
        }
    }

    fn default_connectivity() -> usize {
        Self::DEFAULT_CONNECTIVITY
    }

    fn default_expansion() -> usize {
        Self::DEFAULT_EXPANSION
    }

    fn validate(&self) -> Result<(), AnnError> {
        if self.dimension == 0 {
            return Err(AnnError::InvalidSettings("dimension must be at least 1"));
        }
        // usearch treats 0 as "its default" and degenerates below 2; say so instead.
        if self.connectivity < 2 {
            return Err(AnnError::InvalidSettings("connectivity must be at least 2"));
        }
        if self.expansion_add == 0 || self.expansion_search == 0 {
            return Err(AnnError::InvalidSettings("expansions must be at least 1"));
        }
        if self.threads == Some(0) {
            return Err(AnnError::InvalidSettings("threads must be at least 1"));
        }
        Ok(())
    }

    fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| (available_cpus() * 2).max(4))
    }

    /// The usearch options these settings make: a bare index built with them is the
    /// benchmark's baseline.
    pub fn usearch_options(&self) -> IndexOptions {
        IndexOptions {
            dimensions: self.dimension,
            metric: self.metric.kind(),
            quantization: self.quantization.scalar(),
            connectivity: self.connectivity,
            expansion_add: self.expansion_add,
            expansion_search: self.expansion_search,
            multi: false,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub key: u64,
    /// 1 − cosine distance: 1 is the same direction, higher is closer.
    pub similarity: f32,
}

/// Every way an index operation can fail. Messages never carry vector content.
#[derive(Debug, thiserror::Error)]
pub enum AnnError {
    #[error("invalid index settings: {0}")]
    InvalidSettings(&'static str),
    #[error("vector has {actual} dimensions, the index expects {expected}")]
    DimensionMismatch { expected: usize, actual: usize },
    #[error("invalid vector: {0}")]
    InvalidVector(&'static str),
    #[error("key {0} is reserved by usearch for deleted entries")]
    ReservedKey(u64),
    #[error("the index file has {field} {stored}, the settings ask for {configured}")]
    SettingsMismatch {
        field: &'static str,
        stored: String,
        configured: String,
    },
    #[error("usearch failed to {operation}: {message}")]
    Usearch {
        operation: &'static str,
        message: String,
    },
    #[error("failed to {operation} {}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("index file {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: &'static str },
    #[error("unusable index path {}: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: &'static str },
}

/// A thread-safe, self-growing usearch index. Every method blocks (usearch is synchronous C++):
/// call it from `spawn_blocking` or a dedicated thread, never on an async worker.
pub struct AnnIndex {
    /// Read-locked by every call into usearch; write-locked only to grow.
    index: RwLock<Index>,
    /// Held by add, remove and save: one insertion at a time keeps every node reachable, and a
    /// snapshot never interleaves with a mutation. Searches never take it.
    writer: Mutex<()>,
    /// Admits searches; the writer does not need a permit, it owns the extra thread slot.
    searches: Slots,
    settings: IndexSettings,
    /// Concurrent searches allowed; usearch has one more thread slot, for the writer.
    threads: usize,
    /// The distance kernel usearch calls.
    kernel: kernels::Installed,
    /// HNSW's ef for searches that name none. usearch's own setting stays at 1: it searches
    /// with ef = max(its setting, results wanted), so asking it for `ef` results gives each
    /// search its own ef without changing shared state.
    expansion_search: AtomicUsize,
    /// Every member's sign sketch, for sketch searches. `None` after `load` until
    /// `adopt_members` rebuilds them: searches walk the graph meanwhile.
    sketches: RwLock<Option<Sketches>>,
    /// The shortlist of sketch searches (`IndexSettings::shortlist`; 0: walk the graph).
    shortlist: AtomicUsize,
    /// The shortest candidate list any member was inserted with (0: unknown, read from a
    /// file saved before it was recorded). A graph is only as navigable as its weakest
    /// insertions: a graph built cheaply for an index that scans its sketches must not be
    /// walked as if it were built for walking.
    graph_expansion_add: AtomicUsize,
}

/// Members' sign sketches (`kernels::sign_sketch` of each stored vector), end to end for
/// one linear scan, with the key each belongs to; and, for sketches longer than
/// [`PREFIX_WORDS`], each one's first words again, end to end, which a large index's scan
/// reads first.
struct Sketches {
    words: usize,
    keys: Vec<u64>,
    codes: Vec<u64>,
    /// Each member's first [`PREFIX_WORDS`] words; empty where sketches are no longer.
    prefixes: Vec<u64>,
    positions: HashMap<u64, usize>,
    /// Members from which a scan takes two stages ([`TWO_STAGES_FROM_MEMBERS`]).
    two_stages_from: usize,
    /// The fewest candidates a first stage keeps ([`MIN_FIRST_STAGE_CANDIDATES`]).
    min_candidates: usize,
}

/// Words of a sketch's first stage: 128 bits, the first 128 components' signs.
pub const PREFIX_WORDS: usize = 2;

/// Members from which a scan reads the prefixes first and whole sketches only for the
/// nearest of them. Below it the whole sketches are scanned: they stay in the last-level
/// cache, and the first stage's ranking by fewer bits is not needed.
const TWO_STAGES_FROM_MEMBERS: usize = 1 << 18;

/// A first stage keeps this many candidates per member wanted, and at least
/// [`MIN_FIRST_STAGE_CANDIDATES`]: a mate's 128-bit distance is spread about twice as widely
/// (relative to the bits) as its whole sketch's, and the wide margin keeps it in.
const FIRST_STAGE_CANDIDATES_PER_WANTED: usize = 16;
pub const MIN_FIRST_STAGE_CANDIDATES: usize = 1_024;

impl Sketches {
    fn new(dimension: usize) -> Self {
        Self {
            words: dimension.div_ceil(64),
            keys: Vec::new(),
            codes: Vec::new(),
            prefixes: Vec::new(),
            positions: HashMap::new(),
            two_stages_from: TWO_STAGES_FROM_MEMBERS,
            min_candidates: MIN_FIRST_STAGE_CANDIDATES,
        }
    }

    fn has_prefixes(&self) -> bool {
        self.words > PREFIX_WORDS
    }

    fn put(&mut self, key: u64, sketch: &[u64]) {
        let words = self.words;
        match self.positions.get(&key) {
            Some(&at) => {
                self.codes[at * words..(at + 1) * words].copy_from_slice(sketch);
                if self.has_prefixes() {
                    self.prefixes[at * PREFIX_WORDS..(at + 1) * PREFIX_WORDS]
                        .copy_from_slice(&sketch[..PREFIX_WORDS]);
                }
            }
            None => {
                self.positions.insert(key, self.keys.len());
                self.keys.push(key);
                self.codes.extend_from_slice(sketch);
                if self.has_prefixes() {
                    self.prefixes.extend_from_slice(&sketch[..PREFIX_WORDS]);
                }
            }
        }
    }

    fn remove(&mut self, key: u64) {
        let Some(at) = self.positions.remove(&key) else {
            return;
        };
        let last = self.keys.len() - 1;
        self.keys.swap_remove(at);
        if at != last {
            self.positions.insert(self.keys[at], at);
        }
        swap_remove_words(&mut self.codes, self.words, at, last);
        if self.has_prefixes() {
            swap_remove_words(&mut self.prefixes, PREFIX_WORDS, at, last);
        }
    }

    /// For each probe, the keys of the `wanted` members nearest it by Hamming distance and
    /// of every member tied with the farthest of them, in no particular order. The probes
    /// share one scan of the sketches. From [`TWO_STAGES_FROM_MEMBERS`] on, the scan reads
    /// only the prefixes for many more candidates than wanted, and these are ranked by
    /// their whole sketches: a quarter of the bytes for 512-bit sketches, two thirds for
    /// 192-bit ones, at the cost of a mate whose prefix alone ranks it past the candidates.
    fn shortlists(&self, probes: &[&[u64]], wanted: usize) -> Vec<Vec<u64>> {
        if self.keys.len() <= wanted {
            return vec![self.keys.clone(); probes.len()];
        }
        let nearest = match self.first_stage_candidates(wanted) {
            Some(candidates) => kernels::nearest_each_by_prefix(
                probes,
                &self.prefixes,
                PREFIX_WORDS,
                &self.codes,
                candidates,
                wanted,
            ),
            None => kernels::nearest_each(probes, &self.codes, wanted),
        };
        nearest
            .into_iter()
            .map(|found| found.into_iter().map(|(_, at)| self.keys[at]).collect())
            .collect()
    }

    /// How many candidates a first stage keeps for `wanted`; `None` where the whole
    /// sketches are scanned at once.
    fn first_stage_candidates(&self, wanted: usize) -> Option<usize> {
        let candidates = wanted
            .saturating_mul(FIRST_STAGE_CANDIDATES_PER_WANTED)
            .max(self.min_candidates);
        let members = self.keys.len();
        (self.has_prefixes() && members >= self.two_stages_from && members > 2 * candidates)
            .then_some(candidates)
    }

    fn memory_usage(&self) -> usize {
        let entry = std::mem::size_of::<(u64, usize)>() + 1;
        (self.keys.capacity() + self.codes.capacity() + self.prefixes.capacity())
            * std::mem::size_of::<u64>()
            + self.positions.capacity() * entry
    }
}

/// Moves member `last`'s `words` words into member `at`'s place and drops the last member,
/// as `Vec::swap_remove` does for one element.
fn swap_remove_words(codes: &mut Vec<u64>, words: usize, at: usize, last: usize) {
    if at != last {
        let (kept, moved) = codes.split_at_mut(last * words);
        kept[at * words..(at + 1) * words].copy_from_slice(&moved[..words]);
    }
    codes.truncate(last * words);
}

// The hub shares indexes behind `Arc` across blocking threads: keep that a compile-time fact.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<AnnIndex>();
};

impl fmt::Debug for AnnIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnnIndex")
            .field("settings", &self.settings)
            .field("threads", &self.threads)
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl AnnIndex {
    /// An empty index.
    pub fn new(settings: &IndexSettings) -> Result<Self, AnnError> {
        settings.validate()?;
        let index = Index::new(&settings.usearch_options()).map_err(native("create the index"))?;
        Self::ready(
            index,
            settings,
            Some(Sketches::new(settings.dimension)),
            settings.expansion_add,
        )
    }

    /// Restores an index written by [`AnnIndex::save`]. The file must match `settings` in
    /// dimension, metric and quantization, and an index that walks its graph (shortlist 0)
    /// needs a graph built with at least its `expansion_add`; anything else is an error, and
    /// the caller rebuilds.
    pub fn load(path: &Path, settings: &IndexSettings) -> Result<Self, AnnError> {
        settings.validate()?;
        let path_text = utf8(path)?;
        // usearch trusts its input: a flipped bit in the graph could become an out-of-bounds read
        // on a later search. Only bytes that hash to what `save` wrote are handed to it.
        let sealed = verify_trailer(path)?;
        let payload = sealed.payload;
        // A graph built cheaply, while searches scanned sketches (or of unknown make), is
        // not one to walk: an index that walks its graph needs it built at its setting.
        if settings.shortlist == 0 && sealed.graph_expansion_add < settings.expansion_add {
            return Err(mismatch(
                "graph expansion_add",
                sealed.graph_expansion_add,
                settings.expansion_add,
            ));
        }
        // The header alone says whether the file fits, before any of it is loaded into memory.
        let header = Index::metadata(path_text).map_err(native("read the index header"))?;
        let stored_dimension = usize::try_from(header.dimensions).unwrap_or(usize::MAX);
        if stored_dimension != settings.dimension {
            return Err(AnnError::DimensionMismatch {
                expected: settings.dimension,
                actual: stored_dimension,
            });
        }
        if header.metric != settings.metric.kind() {
            return Err(mismatch("metric", header.metric, settings.metric.kind()));
        }
        if header.quantization != settings.quantization.scalar() {
            return Err(mismatch(
                "quantization",
                header.quantization,
                settings.quantization.scalar(),
            ));
        }
        if header.multi {
            return Err(mismatch("multi", true, false));
        }

        let index = Index::new(&settings.usearch_options()).map_err(native("create the index"))?;
        index.load(path_text).map_err(native("load the index"))?;
        if index.dimensions() != settings.dimension {
            return Err(AnnError::Corrupt {
                path: path.to_owned(),
                reason: "header and body disagree on the dimension",
            });
        }
        // usearch stops reading where its data ends, and the trailer follows: a payload cut
        // short but resealed would be completed with trailer bytes without this check.
        if u64::try_from(index.serialized_length()).ok() != Some(payload) {
            return Err(AnnError::Corrupt {
                path: path.to_owned(),
                reason: "usearch read a different length than was saved",
            });
        }
        if index.connectivity() != settings.connectivity {
            // Still a valid graph: searches work, only its shape differs from the new setting.
            tracing::warn!(
                path = %path.display(),
                stored = index.connectivity(),
                configured = settings.connectivity,
                "index was built with another connectivity; rebuild it to apply the new one"
            );
        }
        Self::ready(index, settings, None, sealed.graph_expansion_add)
    }

    /// Final setup shared by `new` and `load`. A loaded usearch index has capacity for exactly
    /// its members and one thread slot per core, whatever it had when saved: both must be
    /// reserved again before the first concurrent call.
    fn ready(
        mut index: Index,
        settings: &IndexSettings,
        sketches: Option<Sketches>,
        graph_expansion_add: usize,
    ) -> Result<Self, AnnError> {
        // Every member and query is a unit vector (`normalise_into`), so cosine is 1 − a·b.
        let kernel = match settings.metric {
            Metric::Cosine => kernels::install_unit_cosine(&mut index),
        };
        let threads = settings.threads();
        let capacity = grown_capacity(0, index.size().saturating_add(1));
        index
            .reserve_capacity_and_threads(capacity, usearch_slots(threads))
            .map_err(native("reserve capacity and threads"))?;
        index.change_expansion_add(settings.expansion_add);
        index.change_expansion_search(1);
        Ok(Self {
            index: RwLock::new(index),
            writer: Mutex::new(()),
            searches: Slots::new(threads),
            settings: settings.clone(),
            threads,
            kernel,
            expansion_search: AtomicUsize::new(settings.expansion_search),
            sketches: RwLock::new(sketches),
            shortlist: AtomicUsize::new(settings.shortlist),
            graph_expansion_add: AtomicUsize::new(graph_expansion_add),
        })
    }

    /// Rebuilds a loaded index's sign sketches from its stored vectors, from then on kept
    /// with every add and remove: `keys` are the members the caller expects, and those the
    /// index does not hold are the answer. A member not among `keys` gets no sketch, so no
    /// sketch search finds it: a caller whose index holds more than it expects rebuilds the
    /// index (as `Biometrics::open` does). Until this runs, a loaded index's searches walk
    /// its graph.
    pub fn adopt_members(&self, keys: &[u64]) -> Result<Vec<u64>, AnnError> {
        let _writer = lock(&self.writer);
        let index = read(&self.index);
        let mut sketches = Sketches::new(self.settings.dimension);
        let mut stored = vec![0.0_f32; self.settings.dimension];
        let mut sketch = Vec::new();
        let mut missing = Vec::new();
        for &key in keys {
            if key == RESERVED_KEY || !index.contains(key) {
                missing.push(key);
                continue;
            }
            index
                .get(key, &mut stored)
                .map_err(native("read a stored vector"))?;
            kernels::sign_sketch(&stored, &mut sketch);
            sketches.put(key, &sketch);
        }
        *write(&self.sketches) = Some(sketches);
        Ok(missing)
    }

    /// Inserts `vector` under `key`, replacing whatever the key held before.
    pub fn add(&self, key: u64, vector: &[f32]) -> Result<(), AnnError> {
        check_key(key)?;
        let norm = self.check_vector(vector)?;
        let mut unit = Vec::with_capacity(vector.len());
        normalise_into(vector, norm, &mut unit);
        let _writer = lock(&self.writer);
        self.reserve_room(1)?;
        self.insert(key, &unit)
    }

    /// Inserts many vectors, growing the index once. Every item is validated before any is
    /// inserted; if a key repeats, its last vector wins. The batch is one write: a save sees
    /// all of it or none, and other writes wait, so page very large loads. An error after
    /// validation (usearch failing) can leave part of the batch inserted.
    ///
    /// Insertion is sequential on purpose: concurrent inserts strand nodes (module comment).
    pub fn add_batch(&self, items: &[(u64, &[f32])]) -> Result<(), AnnError> {
        let mut last_position = HashMap::with_capacity(items.len());
        let mut norms = Vec::with_capacity(items.len());
        for (position, &(key, vector)) in items.iter().enumerate() {
            check_key(key)?;
            norms.push(self.check_vector(vector)?);
            last_position.insert(key, position);
        }
        let work = items
            .iter()
            .zip(norms)
            .enumerate()
            .filter(|(position, ((key, _), _))| last_position.get(key) == Some(position));

        let _writer = lock(&self.writer);
        self.reserve_room(last_position.len())?;
        let mut unit = Vec::with_capacity(self.settings.dimension);
        for (_, (&(key, vector), norm)) in work {
            normalise_into(vector, norm, &mut unit);
            self.insert(key, &unit)?;
        }
        Ok(())
    }

    /// The insertion proper: the caller holds the writer, has reserved room, validated the key
    /// and normalised the vector.
    fn insert(&self, key: u64, unit: &[f32]) -> Result<(), AnnError> {
        let index = read(&self.index);
        if index.size() == 0 {
            // usearch counts a graph's first node before it stores it, and a search that sees
            // a count reads that node at once (a null read, SIGSEGV): the first insertion into
            // an empty index runs alone. The writer mutex keeps the index empty meanwhile.
            drop(index);
            return self.insert_into(&write(&self.index), key, unit);
        }
        self.insert_into(&index, key, unit)
    }

    fn insert_into(&self, index: &Index, key: u64, unit: &[f32]) -> Result<(), AnnError> {
        // usearch refuses duplicate keys and cannot update in place.
        if index.contains(key) {
            self.remove_from(index, key, "remove the replaced vector")?;
        }
        self.settings.quantization.add_unit(index, key, unit)?;
        self.graph_expansion_add
            .fetch_min(self.settings.expansion_add, Ordering::Relaxed);
        // Only now, with its vector written whole, may a sketch search read the key.
        if let Some(sketches) = write(&self.sketches).as_mut() {
            sketches.put(key, &self.settings.quantization.stored_sketch(unit));
        }
        Ok(())
    }

    /// Removes `key` from usearch and its sketch, both under the sketches' write half: a sketch
    /// search reads vectors under the read half, so it never reads a slot that usearch frees
    /// here and a later add fills with another key's vector.
    fn remove_from(
        &self,
        index: &Index,
        key: u64,
        operation: &'static str,
    ) -> Result<usize, AnnError> {
        let mut sketches = write(&self.sketches);
        let removed = index.remove(key).map_err(native(operation))?;
        if let Some(sketches) = sketches.as_mut() {
            sketches.remove(key);
        }
        Ok(removed)
    }

    /// Removes `key`; `false` if it was not there.
    pub fn remove(&self, key: u64) -> Result<bool, AnnError> {
        if key == RESERVED_KEY {
            return Ok(false);
        }
        let _writer = lock(&self.writer);
        let removed = self.remove_from(&read(&self.index), key, "remove a vector")?;
        Ok(removed > 0)
    }

    pub fn contains(&self, key: u64) -> bool {
        key != RESERVED_KEY && read(&self.index).contains(key)
    }

    /// Live members (removed ones excluded).
    pub fn len(&self) -> usize {
        read(&self.index).size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Members the index can hold before it next grows.
    pub fn capacity(&self) -> usize {
        read(&self.index).capacity()
    }

    /// The `count` nearest members to `query`, best first, found at the index's expansion.
    pub fn search(&self, query: &[f32], count: usize) -> Result<Vec<Neighbour>, AnnError> {
        self.search_at(query, count, None)
    }

    /// The `count` nearest members to `query`, best first, found the index's own way: a
    /// sketch scan when it has a shortlist (`IndexSettings::shortlist`) and its sketches,
    /// else a walk of the graph keeping `expansion` candidates (HNSW's ef; at least `count`
    /// are kept whatever it says; `None`: the index's own expansion).
    pub fn search_at(
        &self,
        query: &[f32],
        count: usize,
        expansion: Option<usize>,
    ) -> Result<Vec<Neighbour>, AnnError> {
        Ok(self
            .search_each_at(&[query], count, expansion)?
            .pop()
            .unwrap_or_default())
    }

    /// [`AnnIndex::search_at`] for several queries, their neighbours in their order. Sketch
    /// searches share one scan of the sketches: two queries cost little more than one.
    pub fn search_each_at(
        &self,
        queries: &[&[f32]],
        count: usize,
        expansion: Option<usize>,
    ) -> Result<Vec<Vec<Neighbour>>, AnnError> {
        let expansion = expansion.unwrap_or_else(|| self.expansion_search.load(Ordering::Relaxed));
        if expansion == 0 {
            return Err(AnnError::InvalidSettings("expansions must be at least 1"));
        }
        let units = queries
            .iter()
            .map(|query| {
                let norm = self.check_vector(query)?;
                let mut unit = Vec::with_capacity(query.len());
                normalise_into(query, norm, &mut unit);
                Ok(unit)
            })
            .collect::<Result<Vec<_>, AnnError>>()?;
        let shortlist = self.shortlist.load(Ordering::Relaxed);
        if shortlist > 0
            && let Some(found) = self.search_sketched(&units, count, shortlist)?
        {
            return Ok(found);
        }
        units
            .iter()
            .map(|unit| self.search_graph(unit, count, expansion))
            .collect()
    }

    /// The graph search of one unit-length query.
    fn search_graph(
        &self,
        unit: &[f32],
        count: usize,
        expansion: usize,
    ) -> Result<Vec<Neighbour>, AnnError> {
        let _permit = self.searches.acquire();
        let index = read(&self.index);
        // usearch sizes its result buffers by what is asked up front: never past the members.
        let count = count.min(index.size());
        if count == 0 {
            return Ok(Vec::new());
        }
        let wanted = count.max(expansion).min(index.size());
        let matches = self
            .settings
            .quantization
            .search_unit(&index, unit, wanted)?;
        Ok(matches
            .keys
            .iter()
            .zip(&matches.distances)
            .take(count)
            .map(|(&key, &distance)| Neighbour {
                key,
                // Rounding (more so with f16) can push a distance just past [0, 2].
                similarity: (1.0 - distance).clamp(-1.0, 1.0),
            })
            .collect())
    }

    /// The sketch search of unit-length queries: each one's shortlist by Hamming distance
    /// between sign sketches (one scan for all), re-ranked by the cosine of the query and
    /// each stored vector (for `i8`, of both quantised, as the graph search has it). `None`
    /// while the sketches are not rebuilt after a load.
    fn search_sketched(
        &self,
        units: &[Vec<f32>],
        count: usize,
        shortlist: usize,
    ) -> Result<Option<Vec<Vec<Neighbour>>>, AnnError> {
        let index = read(&self.index);
        // Held until every candidate's vector is read: see `remove_from`.
        let sketches = read(&self.sketches);
        let Some(sketches) = sketches.as_ref() else {
            return Ok(None);
        };
        let wanted = shortlist.max(count);
        let dimension = self.settings.dimension;
        let mut found = match self.settings.quantization {
            Quantization::I8 => {
                // Quantised once, for its sketch (as the members' were made) and its cosines.
                let probes: Vec<Vec<i8>> =
                    units.iter().map(|u| Quantization::integers(u)).collect();
                rerank(
                    &index,
                    sketches,
                    &probes,
                    wanted,
                    dimension,
                    |probe, stored| 1.0 - kernels::cosine_distance_i8(probe, stored),
                )?
            }
            Quantization::F32 | Quantization::F16 => {
                rerank(&index, sketches, units, wanted, dimension, kernels::dot_f32)?
            }
        };
        for neighbours in &mut found {
            neighbours.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
            neighbours.truncate(count);
        }
        Ok(Some(found))
    }

    /// Writes the index to `path` atomically: a reader or a crash sees the old file or the new
    /// one, never a mix. Searches go on meanwhile; adds and removes wait for the snapshot.
    pub fn save(&self, path: &Path) -> Result<(), AnnError> {
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let name = path.file_name().ok_or_else(|| AnnError::InvalidPath {
            path: path.to_owned(),
            reason: "it names no file",
        })?;
        // Same directory, so the final rename never crosses a filesystem (which would copy).
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            SAVES.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = directory.join(temp_name);

        let outcome = self.write_snapshot(&temp).and_then(|()| {
            fs::rename(&temp, path).map_err(io_error("rename the snapshot to", path))?;
            sync_directory(directory)
        });
        if outcome.is_err() {
            // Best effort: the error that made the save fail is the one worth reporting.
            let _ = fs::remove_file(&temp);
        }
        outcome
    }

    /// usearch's own serialisation, then the trailer (the graph's insertion list, sealed
    /// with a checksum), then fsync.
    fn write_snapshot(&self, temp: &Path) -> Result<(), AnnError> {
        let temp_text = utf8(temp)?;
        let graph_expansion_add = {
            let _writer = lock(&self.writer);
            read(&self.index)
                .save(temp_text)
                .map_err(native("save the index"))?;
            self.graph_expansion_add()
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(temp)
            .map_err(io_error("reopen the snapshot", temp))?;
        restrict_permissions(&file, temp)?;
        let length = file
            .metadata()
            .map_err(io_error("inspect the snapshot", temp))?
            .len();
        file.write_all(&graph_field(graph_expansion_add))
            .map_err(io_error("write the trailer of", temp))?;
        // Appends leave the offset at the end: the checksum reads from the start.
        file.seek(SeekFrom::Start(0))
            .map_err(io_error("rewind the snapshot", temp))?;
        let checksum = checksum(&mut (&file).take(length + GRAPH_FIELD_LEN))
            .map_err(io_error("checksum the snapshot", temp))?;
        file.write_all(&seal(TRAILER_MAGIC, length, checksum))
            .map_err(io_error("write the trailer of", temp))?;
        file.sync_all().map_err(io_error("sync the snapshot", temp))
    }

    /// A fairly accurate lower bound of the RAM the index holds, in bytes.
    pub fn memory_usage(&self) -> usize {
        read(&self.index).memory_usage()
            + read(&self.sketches)
                .as_ref()
                .map_or(0, Sketches::memory_usage)
    }

    pub fn settings(&self) -> &IndexSettings {
        &self.settings
    }

    /// Changes how many candidates a search that names none keeps (HNSW's ef) from the next
    /// search on: the speed / recall trade-off, measured by `interop-hub bench`. Not saved in
    /// the file.
    pub fn set_expansion_search(&self, expansion: usize) -> Result<(), AnnError> {
        if expansion == 0 {
            return Err(AnnError::InvalidSettings("expansions must be at least 1"));
        }
        self.expansion_search.store(expansion, Ordering::Relaxed);
        Ok(())
    }

    /// Changes the shortlist of sketch searches from the next search on
    /// (`IndexSettings::shortlist`; 0: walk the graph). Not saved in the file.
    pub fn set_shortlist(&self, shortlist: usize) {
        self.shortlist.store(shortlist, Ordering::Relaxed);
    }

    /// The shortlist of sketch searches (0: searches walk the graph).
    pub fn shortlist(&self) -> usize {
        self.shortlist.load(Ordering::Relaxed)
    }

    /// HNSW's candidate list of the next insertion (`IndexSettings::expansion_add`).
    pub fn expansion_add(&self) -> usize {
        read(&self.index).expansion_add()
    }

    /// The shortest candidate list any member was inserted with, saved with the file: how
    /// well built the graph is (0: unknown, from a file saved before it was recorded).
    pub fn graph_expansion_add(&self) -> usize {
        self.graph_expansion_add.load(Ordering::Relaxed)
    }

    /// The distance kernel this index runs on.
    pub fn kernel(&self) -> kernels::Installed {
        self.kernel
    }

    /// Searches allowed inside usearch at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Grows the index, if needed, so that `incoming` more members fit. The caller holds the
    /// writer, so nothing else can add between this and its insertions. (usearch's `size`
    /// excludes removed nodes, but an add reuses a removed node before it takes a new one.)
    fn reserve_room(&self, incoming: usize) -> Result<(), AnnError> {
        let (size, capacity) = {
            let index = read(&self.index);
            (index.size(), index.capacity())
        };
        let needed = size.saturating_add(incoming);
        if needed <= capacity {
            return Ok(());
        }
        let index = write(&self.index);
        let capacity = grown_capacity(capacity, needed);
        index
            .reserve_capacity_and_threads(capacity, usearch_slots(self.threads))
            .map_err(native("grow the index"))?;
        if index.capacity() < needed {
            return Err(AnnError::Usearch {
                operation: "grow the index",
                message: format!("capacity {} after reserving {capacity}", index.capacity()),
            });
        }
        Ok(())
    }

    /// Length, finiteness and (for cosine) a direction; returns the Euclidean norm.
    fn check_vector(&self, vector: &[f32]) -> Result<f64, AnnError> {
        if vector.len() != self.settings.dimension {
            return Err(AnnError::DimensionMismatch {
                expected: self.settings.dimension,
                actual: vector.len(),
            });
        }
        // In f64 so that large but finite components cannot overflow the sum.
        let mut squares = 0.0_f64;
        for &component in vector {
            if !component.is_finite() {
                return Err(AnnError::InvalidVector("a component is NaN or infinite"));
            }
            squares += f64::from(component) * f64::from(component);
        }
        match self.settings.metric {
            Metric::Cosine if squares == 0.0 => {
                Err(AnnError::InvalidVector("a zero vector has no direction"))
            }
            Metric::Cosine => Ok(squares.sqrt()),
        }
    }
}

/// A counting semaphore over the searches' share of usearch's thread slots.
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    released: Condvar,
}

impl Slots {
    fn new(permits: usize) -> Self {
        Self {
            free: Mutex::new(permits),
            released: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotPermit<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self
                .released
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        SlotPermit { slots: self }
    }
}

#[derive(Debug)]
struct SlotPermit<'a> {
    slots: &'a Slots,
}

impl Drop for SlotPermit<'_> {
    fn drop(&mut self) {
        *lock(&self.slots.free) += 1;
        self.slots.released.notify_one();
    }
}

// Poisoning is ignored: the guarded state is usearch's, and a panic on the Rust side cannot
// leave it half-changed (each FFI call completes or throws before Rust code runs again).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One thread slot per admitted search, plus the writer's own.
fn usearch_slots(threads: usize) -> usize {
    threads.saturating_add(1)
}

/// Doubling keeps the number of (exclusive, stop-the-world) grow steps logarithmic.
fn grown_capacity(current: usize, needed: usize) -> usize {
    needed.max(current.saturating_mul(2)).max(MIN_CAPACITY)
}

fn check_key(key: u64) -> Result<(), AnnError> {
    if key == RESERVED_KEY {
        return Err(AnnError::ReservedKey(key));
    }
    Ok(())
}

/// Cosine ignores length, but quantised scalars (f16, i8) only hold unit-scale components
/// well, and the `f16`/`f32` kernel takes every norm as 1: hand usearch unit vectors.
/// Each probe's shortlist (from one scan of `sketches`, by the probe's sign sketch), its
/// members' `dimension`-long vectors read from `index` and scored by `similarity(probe,
/// stored)`, unsorted.
fn rerank<T: usearch::VectorType + Copy + PartialOrd + Default>(
    index: &Index,
    sketches: &Sketches,
    probes: &[Vec<T>],
    wanted: usize,
    dimension: usize,
    similarity: impl Fn(&[T], &[T]) -> f32,
) -> Result<Vec<Vec<Neighbour>>, AnnError> {
    let probe_sketches: Vec<Vec<u64>> = probes
        .iter()
        .map(|probe| {
            let mut sketch = Vec::new();
            kernels::sign_sketch(probe, &mut sketch);
            sketch
        })
        .collect();
    let borrowed: Vec<&[u64]> = probe_sketches.iter().map(Vec::as_slice).collect();
    let mut stored = vec![T::default(); dimension];
    sketches
        .shortlists(&borrowed, wanted)
        .into_iter()
        .zip(probes)
        .map(|(candidates, probe)| {
            let mut found = Vec::with_capacity(candidates.len());
            for key in candidates {
                if index
                    .get(key, &mut stored)
                    .map_err(native("read a stored vector"))?
                    > 0
                {
                    found.push(Neighbour {
                        key,
                        similarity: similarity(probe, &stored).clamp(-1.0, 1.0),
                    });
                }
            }
            Ok(found)
        })
        .collect()
}

fn normalise_into(vector: &[f32], norm: f64, unit: &mut Vec<f32>) {
    unit.clear();
    unit.extend(vector.iter().map(|&x| (f64::from(x) / norm) as f32));
}

fn native<E: fmt::Display>(operation: &'static str) -> impl FnOnce(E) -> AnnError {
    move |error| AnnError::Usearch {
        operation,
        message: error.to_string(),
    }
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AnnError {
    let path = path.to_owned();
    move |source| AnnError::Io {
        operation,
        path,
        source,
    }
}

fn mismatch(field: &'static str, stored: impl fmt::Debug, configured: impl fmt::Debug) -> AnnError {
    AnnError::SettingsMismatch {
        field,
        stored: format!("{stored:?}"),
        configured: format!("{configured:?}"),
    }
}

/// The binding takes paths as `&str`.
fn utf8(path: &Path) -> Result<&str, AnnError> {
    path.to_str().ok_or_else(|| AnnError::InvalidPath {
        path: path.to_owned(),
        reason: "usearch takes UTF-8 paths only",
    })
}

#[cfg(unix)]
fn sync_directory(directory: &Path) -> Result<(), AnnError> {
    // Without this the rename itself may not survive a power cut.
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("sync the directory", directory))
}

#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> Result<(), AnnError> {
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(file: &File, path: &Path) -> Result<(), AnnError> {
    use std::os::unix::fs::PermissionsExt;
    // Biometric templates are special-category personal data: owner-only, whatever the umask.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_error("restrict the permissions of", path))
}

#[cfg(not(unix))]
fn restrict_permissions(_file: &File, _path: &Path) -> Result<(), AnnError> {
    Ok(())
}

fn graph_field(graph_expansion_add: usize) -> [u8; GRAPH_FIELD_LEN as usize] {
    u64::try_from(graph_expansion_add)
        .unwrap_or(u64::MAX)
        .to_le_bytes()
}

fn seal(magic: [u8; 8], length: u64, checksum: u64) -> [u8; SEAL_LEN as usize] {
    let mut bytes = [0; SEAL_LEN as usize];
    bytes[..8].copy_from_slice(&magic);
    bytes[8..16].copy_from_slice(&length.to_le_bytes());
    bytes[16..].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

/// What a verified trailer vouches for.
struct Sealed {
    /// Length of usearch's own bytes, from the start of the file.
    payload: u64,
    /// The graph's shortest insertion list (0 in a file that did not record it).
    graph_expansion_add: usize,
}

/// Checks the trailer (either version) and the checksum of everything it covers.
fn verify_trailer(path: &Path) -> Result<Sealed, AnnError> {
    let corrupt = |reason| AnnError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let mut file = File::open(path).map_err(io_error("open", path))?;
    let length = file.metadata().map_err(io_error("inspect", path))?.len();
    let sealed = length
        .checked_sub(SEAL_LEN)
        .ok_or_else(|| corrupt("shorter than its trailer"))?;
    let mut stored = [0; SEAL_LEN as usize];
    file.seek(SeekFrom::Start(sealed))
        .and_then(|_| file.read_exact(&mut stored))
        .map_err(io_error("read the trailer of", path))?;
    let fields = match stored[..8].try_into() {
        Ok(TRAILER_MAGIC) => GRAPH_FIELD_LEN,
        Ok(TRAILER_MAGIC_V1) => 0,
        _ => return Err(corrupt("no trailer: truncated, or not written by this hub")),
    };
    let payload = sealed
        .checked_sub(fields)
        .ok_or_else(|| corrupt("shorter than its trailer"))?;
    if stored[8..16] != payload.to_le_bytes() {
        return Err(corrupt("its length differs from the one recorded at save"));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(io_error("rewind", path))?;
    let actual = checksum(&mut (&file).take(sealed)).map_err(io_error("read", path))?;
    if stored[16..] != actual.to_le_bytes() {
        return Err(corrupt("checksum mismatch"));
    }
    let mut graph = [0; GRAPH_FIELD_LEN as usize];
    if fields > 0 {
        file.seek(SeekFrom::Start(payload))
            .and_then(|_| file.read_exact(&mut graph))
            .map_err(io_error("read the trailer of", path))?;
    }
    Ok(Sealed {
        payload,
        graph_expansion_add: usize::try_from(u64::from_le_bytes(graph)).unwrap_or(usize::MAX),
    })
}

/// A 64-bit multiply–xorshift hash over little-endian words. Each step is a bijection of the
/// state, so any single changed word always changes the result; it guards against torn writes
/// and bit rot, not against an adversary (who could as well write a valid file).
fn checksum(reader: &mut impl Read) -> io::Result<u64> {
    fn mix(state: u64, word: u64) -> u64 {
        let state = (state ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        state ^ (state >> 32)
    }
    let mut buffer = vec![0_u8; 1 << 20];
    let mut state = 0xCBF2_9CE4_8422_2325_u64;
    let mut total = 0_u64;
    loop {
        let filled = fill(reader, &mut buffer)?;
        let (words, tail) = buffer[..filled].as_chunks::<8>();
        for word in words {
            state = mix(state, u64::from_le_bytes(*word));
        }
        total += filled as u64;
        if filled < buffer.len() {
            if !tail.is_empty() {
                let mut last = [0_u8; 8];
                last[..tail.len()].copy_from_slice(tail);
                state = mix(state, u64::from_le_bytes(last));
            }
            // The length distinguishes a zero-padded tail from real zero bytes.
            return Ok(mix(state, total));
        }
    }
}

/// Reads until `buffer` is full or the input ends, so only the final chunk can be short.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The whole trailer of the current version.
    const TRAILER_LEN: u64 = GRAPH_FIELD_LEN + SEAL_LEN;

    const DIMENSION: usize = 64;

    /// SplitMix64: deterministic, so a failure reproduces.
    struct Random(u64);

    impl Random {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [-1, 1).
        fn component(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1_u64 << 23) as f32 - 1.0
        }

        fn unit_vector(&mut self, dimension: usize) -> Vec<f32> {
            let vector: Vec<f32> = (0..dimension).map(|_| self.component()).collect();
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            vector.iter().map(|x| x / norm).collect()
        }

        fn noisy_copy(&mut self, vector: &[f32], amount: f32) -> Vec<f32> {
            vector
                .iter()
                .map(|x| x + amount * self.component())
                .collect()
        }
    }

    /// A fresh directory under the system temp dir, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static COUNT: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "hub-ann-test-{}-{}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn vectors(seed: u64, count: usize) -> Vec<Vec<f32>> {
        let mut random = Random(seed);
        (0..count).map(|_| random.unit_vector(DIMENSION)).collect()
    }

    fn filled(settings: &IndexSettings, vectors: &[Vec<f32>]) -> AnnIndex {
        let index = AnnIndex::new(settings).unwrap();
        let items: Vec<(u64, &[f32])> = vectors
            .iter()
            .enumerate()
            .map(|(key, vector)| (key as u64, vector.as_slice()))
            .collect();
        index.add_batch(&items).unwrap();
        index
    }

    fn recall_of_noisy_copies(index: &AnnIndex, vectors: &[Vec<f32>], amount: f32) -> f64 {
        recall_of_noisy_copies_at(index, vectors, amount, None)
    }

    /// Share of noisy copies whose original comes first, searched at `expansion` (`None`:
    /// the index's own).
    fn recall_of_noisy_copies_at(
        index: &AnnIndex,
        vectors: &[Vec<f32>],
        amount: f32,
        expansion: Option<usize>,
    ) -> f64 {
        let mut random = Random(99);
        let mut found = 0;
        for (key, vector) in vectors.iter().enumerate() {
            let probe = random.noisy_copy(vector, amount);
            let neighbours = index.search_at(&probe, 5, expansion).unwrap();
            assert_eq!(
                neighbours.len(),
                5,
                "as many results as asked, whatever the ef"
            );
            assert!(
                neighbours
                    .windows(2)
                    .all(|pair| pair[0].similarity >= pair[1].similarity),
                "results are best first"
            );
            if neighbours.first().map(|n| n.key) == Some(key as u64) {
                found += 1;
            }
        }
        f64::from(found) / vectors.len() as f64
    }

    #[test]
    fn noisy_copies_find_their_own_key_first() {
        let vectors = vectors(1, 2_000);
        let index = filled(&IndexSettings::new(DIMENSION), &vectors);
        assert_eq!(index.len(), 2_000);
        let recall = recall_of_noisy_copies(&index, &vectors, 0.1);
        eprintln!("f32 recall@1 of noisy copies: {recall:.4}");
        assert!(recall >= 0.99, "recall {recall}");

        let exact = index.search(&vectors[7], 1).unwrap();
        assert_eq!(exact[0].key, 7);
        assert!((exact[0].similarity - 1.0).abs() < 1e-5);
        assert!(index.memory_usage() > 2_000 * DIMENSION * 4);
    }

    #[test]
    fn search_expansion_trades_recall_for_speed_at_run_time() {
        let vectors = vectors(3, 2_000);
        let index = filled(&IndexSettings::new(DIMENSION), &vectors);
        let wide = recall_of_noisy_copies(&index, &vectors, 0.3);
        index.set_expansion_search(1).unwrap();
        let narrow = recall_of_noisy_copies(&index, &vectors, 0.3);
        assert!(narrow < wide, "ef 5: {narrow}, ef 128: {wide}");
        index
            .set_expansion_search(IndexSettings::DEFAULT_EXPANSION)
            .unwrap();
        assert_eq!(recall_of_noisy_copies(&index, &vectors, 0.3), wide);
        assert!(matches!(
            index.set_expansion_search(0),
            Err(AnnError::InvalidSettings(_))
        ));

        // One search's own expansion leaves the index's alone.
        let narrow_once = recall_of_noisy_copies_at(&index, &vectors, 0.3, Some(1));
        assert_eq!(narrow_once, narrow, "ef 5 named by the search");
        assert_eq!(recall_of_noisy_copies(&index, &vectors, 0.3), wide);
        assert_eq!(
            recall_of_noisy_copies_at(
                &index,
                &vectors,
                0.3,
                Some(IndexSettings::DEFAULT_EXPANSION)
            ),
            wide
        );
        assert!(matches!(
            index.search_at(&vectors[0], 5, Some(0)),
            Err(AnnError::InvalidSettings(_))
        ));
    }

    #[test]
    fn quantization_keeps_recall() {
        let vectors = vectors(2, 2_000);
        for quantization in [Quantization::F16, Quantization::I8] {
            let settings = IndexSettings {
                quantization,
                ..IndexSettings::new(DIMENSION)
            };
            let index = filled(&settings, &vectors);
            let recall = recall_of_noisy_copies(&index, &vectors, 0.1);
            eprintln!("{quantization:?} recall@1 of noisy copies: {recall:.4}");
            assert!(recall >= 0.99, "{quantization:?}: recall {recall}");
            // Similarities are cosines still: a member finds itself at (nearly) 1.
            let own = index.search(&vectors[0], 1).unwrap();
            assert_eq!(own[0].key, 0);
            assert!(
                own[0].similarity > 0.998,
                "{quantization:?}: {}",
                own[0].similarity
            );
        }
    }

    #[test]
    fn single_adds_grow_past_the_initial_reservation() {
        let index = AnnIndex::new(&IndexSettings::new(DIMENSION)).unwrap();
        let initial = index.capacity();
        assert!(initial >= MIN_CAPACITY);
        let vectors = vectors(3, initial * 3);
        for (key, vector) in vectors.iter().enumerate() {
            index.add(key as u64, vector).unwrap();
        }
        assert_eq!(index.len(), vectors.len());
        assert!(index.capacity() >= vectors.len() + index.threads());
        for key in (0..vectors.len()).step_by(97) {
            assert_eq!(index.search(&vectors[key], 1).unwrap()[0].key, key as u64);
        }
    }

    #[test]
    fn removal_makes_a_key_unfindable() {
        let vectors = vectors(4, 300);
        let index = filled(&IndexSettings::new(DIMENSION), &vectors);
        assert!(index.remove(7).unwrap());
        assert!(!index.remove(7).unwrap());
        assert!(!index.remove(RESERVED_KEY).unwrap());
        assert_eq!(index.len(), 299);
        assert!(!index.contains(7));
        let neighbours = index.search(&vectors[7], 20).unwrap();
        assert_eq!(neighbours.len(), 20);
        assert!(neighbours.iter().all(|n| n.key != 7));

        // Its graph node is reused by the next insertion, which must be findable.
        index.add(7_000, &vectors[7]).unwrap();
        assert_eq!(index.search(&vectors[7], 1).unwrap()[0].key, 7_000);
        assert_eq!(index.len(), 300);
    }

    #[test]
    fn adding_an_existing_key_replaces_its_vector() {
        let vectors = vectors(5, 200);
        let index = filled(&IndexSettings::new(DIMENSION), &vectors);
        index.add(3, &vectors[150]).unwrap();
        assert_eq!(index.len(), 200);
        let neighbours = index.search(&vectors[150], 2).unwrap();
        let keys: Vec<u64> = neighbours.iter().map(|n| n.key).collect();
        assert!(keys.contains(&3) && keys.contains(&150), "{keys:?}");
        assert!(
            index
                .search(&vectors[3], 5)
                .unwrap()
                .iter()
                .all(|n| n.key != 3 || n.similarity < 0.9)
        );

        // Same for a key repeated inside one batch: the last occurrence wins.
        let batch: Vec<(u64, &[f32])> =
            vec![(500, vectors[10].as_slice()), (500, vectors[20].as_slice())];
        index.add_batch(&batch).unwrap();
        assert_eq!(index.len(), 201);
        let best = index.search(&vectors[20], 2).unwrap();
        assert!(best.iter().any(|n| n.key == 500 && n.similarity > 0.999));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let index = AnnIndex::new(&IndexSettings::new(DIMENSION)).unwrap();
        assert!(index.search(&[0.5; DIMENSION], 3).unwrap().is_empty());
        index.add(1, &[0.5; DIMENSION]).unwrap();

        assert!(matches!(
            index.search(&[0.5; DIMENSION - 1], 3),
            Err(AnnError::DimensionMismatch {
                expected: 64,
                actual: 63
            })
        ));
        assert!(matches!(
            index.add(2, &[0.5; DIMENSION + 1]),
            Err(AnnError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            index.add(2, &[0.0; DIMENSION]),
            Err(AnnError::InvalidVector(_))
        ));
        let mut nan = [0.5; DIMENSION];
        nan[3] = f32::NAN;
        assert!(matches!(
            index.search(&nan, 1),
            Err(AnnError::InvalidVector(_))
        ));
        assert!(matches!(
            index.add(u64::MAX, &[0.5; DIMENSION]),
            Err(AnnError::ReservedKey(_))
        ));
        let batch: Vec<(u64, &[f32])> = vec![(2, &[0.5; DIMENSION][..]), (3, &[0.5; 3][..])];
        assert!(index.add_batch(&batch).is_err());
        assert!(!index.contains(2), "a rejected batch inserts nothing");

        assert!(index.search(&[0.5; DIMENSION], 0).unwrap().is_empty());
        assert_eq!(
            index.search(&[0.5; DIMENSION], usize::MAX).unwrap().len(),
            1
        );
        assert!(matches!(
            AnnIndex::new(&IndexSettings::new(0)),
            Err(AnnError::InvalidSettings(_))
        ));
    }

    fn sketched(dimension: usize) -> IndexSettings {
        IndexSettings {
            quantization: Quantization::I8,
            shortlist: 16,
            ..IndexSettings::new(dimension)
        }
    }

    #[test]
    fn sketch_searches_find_noisy_copies_and_follow_every_change() {
        let vectors = vectors(5, 2_000);
        let index = filled(&sketched(DIMENSION), &vectors);
        // A graph search keeping 5 candidates misses some of these; the scan misses none.
        index.set_expansion_search(1).unwrap();
        let scanned = recall_of_noisy_copies(&index, &vectors, 0.1);
        assert!(
            (scanned - 1.0).abs() < f64::EPSILON,
            "sketch recall {scanned}"
        );
        // An expansion given (the detector's) is for the graph: the scan still answers.
        let scanned_at_one = recall_of_noisy_copies_at(&index, &vectors, 0.1, Some(1));
        assert!(
            (scanned_at_one - 1.0).abs() < f64::EPSILON,
            "{scanned_at_one}"
        );
        index.set_shortlist(0);
        let walked = recall_of_noisy_copies(&index, &vectors, 0.1);
        assert!(walked < scanned, "graph at ef 5: {walked}");
        index.set_shortlist(16);

        // The re-ranking cosine is the graph's, for `i8` of both quantised.
        let mut random = Random(8);
        for vector in vectors.iter().step_by(97) {
            let probe = random.noisy_copy(vector, 0.1);
            let by_sketch = index.search(&probe, 1).unwrap()[0];
            index.set_shortlist(0);
            let by_graph = index.search_at(&probe, 1, Some(512)).unwrap()[0];
            index.set_shortlist(16);
            assert_eq!(by_sketch.key, by_graph.key);
            assert!(
                (by_sketch.similarity - by_graph.similarity).abs() < 1e-4,
                "{by_sketch:?} vs {by_graph:?}"
            );
        }

        removals_and_a_replacement_are_followed(&index, &vectors);
        assert_eq!(index.search(&vectors[9], 2).unwrap().len(), 2);
    }

    impl AnnIndex {
        /// Makes sketch scans take two stages from `members` on, keeping at least
        /// `min_candidates` after the first (until sketches are rebuilt).
        fn scan_in_two_stages(&self, members: usize, min_candidates: usize) {
            let mut sketches = write(&self.sketches);
            let sketches = sketches.as_mut().unwrap();
            sketches.two_stages_from = members;
            sketches.min_candidates = min_candidates;
        }
    }

    #[test]
    fn a_two_stage_shortlist_ranks_the_prefixes_nearest_by_their_whole_sketches() {
        /// `(distance, position)` of the members within the smallest distance that holds
        /// `wanted` of `distances`, by sorting.
        fn nearest(distances: &[(u32, usize)], wanted: usize) -> Vec<(u32, usize)> {
            let mut sorted: Vec<u32> = distances.iter().map(|(d, _)| *d).collect();
            sorted.sort_unstable();
            let cutoff = sorted[wanted - 1];
            distances
                .iter()
                .copied()
                .filter(|(d, _)| *d <= cutoff)
                .collect()
        }
        let mut random = Random(71);
        let words = 3;
        let mut sketches = Sketches::new(64 * words);
        let codes: Vec<Vec<u64>> = (0..5_000)
            .map(|_| (0..words).map(|_| random.next_u64()).collect())
            .collect();
        for (key, code) in codes.iter().enumerate() {
            sketches.put(1_000 + key as u64, code);
        }
        let probe: Vec<u64> = (0..words).map(|_| random.next_u64()).collect();
        let whole: Vec<(u32, usize)> = codes
            .iter()
            .enumerate()
            .map(|(at, code)| (kernels::hamming_distance(&probe, code), at))
            .collect();
        let prefix: Vec<(u32, usize)> = codes
            .iter()
            .enumerate()
            .map(|(at, code)| (kernels::hamming_distance(&probe[..2], &code[..2]), at))
            .collect();
        let keys_of = |found: Vec<(u32, usize)>| -> Vec<u64> {
            let mut keys: Vec<u64> = found.into_iter().map(|(_, at)| 1_000 + at as u64).collect();
            keys.sort_unstable();
            keys
        };
        let shortlist = |sketches: &Sketches, wanted: usize| -> Vec<u64> {
            let mut keys = sketches.shortlists(&[&probe], wanted).remove(0);
            keys.sort_unstable();
            keys
        };
        for wanted in [1, 10, 40] {
            // Below the threshold: the whole sketches' nearest.
            assert_eq!(
                shortlist(&sketches, wanted),
                keys_of(nearest(&whole, wanted))
            );
        }
        sketches.two_stages_from = 0;
        sketches.min_candidates = 600;
        for wanted in [1, 10, 40] {
            // 16 per wanted, at least 600: the first stage keeps 600 or 640 by prefix.
            let candidates = (16 * wanted).max(600);
            let kept: Vec<(u32, usize)> = nearest(&prefix, candidates)
                .into_iter()
                .map(|(_, at)| whole[at])
                .collect();
            let expected = keys_of(nearest(&kept, wanted));
            assert!(expected.len() >= wanted);
            assert_eq!(shortlist(&sketches, wanted), expected, "{wanted} wanted");
        }
        // A shorter sketch has no first stage, whatever the threshold.
        let mut short = Sketches::new(128);
        for key in 0..3_000 {
            short.put(key, &[random.next_u64(), random.next_u64()]);
        }
        short.two_stages_from = 0;
        assert!(short.prefixes.is_empty());
        assert_eq!(short.first_stage_candidates(10), None);
        assert_eq!(sketches.first_stage_candidates(10), Some(600));
    }

    /// Removes the last member (which moves no other), then members 7 and 0 (which move the
    /// last into their place), puts member 9's vector under key 8, and checks that every
    /// member's own vector then finds it first, or no longer finds a removed or replaced key.
    fn removals_and_a_replacement_are_followed(index: &AnnIndex, vectors: &[Vec<f32>]) {
        let last = vectors.len() - 1;
        for key in [last, 7, 0] {
            assert!(index.remove(key as u64).unwrap());
        }
        index.add(8, &vectors[9]).unwrap();
        for (key, vector) in vectors.iter().enumerate() {
            let first = index.search(vector, 1).unwrap()[0].key;
            match key {
                7 | 0 => assert_ne!(first, key as u64),
                _ if key == last => assert_ne!(first, key as u64),
                8 => assert_ne!(first, 8, "key 8 holds another vector now"),
                9 => assert!(first == 8 || first == 9, "either holds it: {first}"),
                _ => assert_eq!(first, key as u64, "member {key}"),
            }
        }
    }

    #[test]
    fn a_two_stage_scan_finds_noisy_copies_and_follows_every_change() {
        let dimension = 256;
        let mut random = Random(17);
        let vectors: Vec<Vec<f32>> = (0..2_500).map(|_| random.unit_vector(dimension)).collect();
        let index = filled(
            &IndexSettings {
                shortlist: 2,
                ..sketched(dimension)
            },
            &vectors,
        );
        // 32 candidates of 2,500 by their first 128 bits: a member whose prefix were left
        // stale by a change would be missed.
        index.scan_in_two_stages(0, 32);
        for (key, vector) in vectors.iter().enumerate().step_by(5) {
            let probe = random.noisy_copy(vector, 0.05);
            assert_eq!(
                index.search(&probe, 1).unwrap()[0].key,
                key as u64,
                "a noisy copy"
            );
        }
        removals_and_a_replacement_are_followed(&index, &vectors);
    }

    #[test]
    fn queries_searched_together_find_what_each_finds_alone() {
        let vectors = vectors(6, 1_500);
        let mut random = Random(61);
        let probes: Vec<Vec<f32>> = [3, 700, 1_499]
            .iter()
            .map(|&at| random.noisy_copy(&vectors[at], 0.1))
            .collect();
        let borrowed: Vec<&[f32]> = probes.iter().map(Vec::as_slice).collect();
        for quantization in [Quantization::I8, Quantization::F16] {
            let index = filled(
                &IndexSettings {
                    quantization,
                    ..sketched(DIMENSION)
                },
                &vectors,
            );
            for shortlist in [16, 0] {
                index.set_shortlist(shortlist);
                let together = index.search_each_at(&borrowed, 4, Some(64)).unwrap();
                let alone: Vec<Vec<Neighbour>> = borrowed
                    .iter()
                    .map(|probe| index.search_at(probe, 4, Some(64)).unwrap())
                    .collect();
                assert_eq!(together, alone, "{quantization:?}, shortlist {shortlist}");
                let firsts: Vec<u64> = together.iter().map(|found| found[0].key).collect();
                assert_eq!(
                    firsts,
                    [3, 700, 1_499],
                    "{quantization:?}, shortlist {shortlist}"
                );
            }
            assert!(index.search_each_at(&[], 4, None).unwrap().is_empty());
            let short = vec![0.5_f32; DIMENSION - 1];
            assert!(matches!(
                index.search_each_at(&[borrowed[0], &short], 4, None),
                Err(AnnError::DimensionMismatch { .. })
            ));
        }
    }

    #[test]
    fn a_loaded_index_walks_its_graph_until_its_sketches_are_rebuilt() {
        let scratch = Scratch::new();
        let path = scratch.0.join("sketched.usearch");
        let vectors = vectors(12, 2_000);
        let settings = sketched(DIMENSION);
        filled(&settings, &vectors).save(&path).unwrap();

        let loaded = AnnIndex::load(&path, &settings).unwrap();
        loaded.set_expansion_search(1).unwrap();
        let walked = recall_of_noisy_copies(&loaded, &vectors, 0.1);
        let mut expected: Vec<u64> = (0..2_000).collect();
        expected.push(5_000);
        assert_eq!(loaded.adopt_members(&expected).unwrap(), vec![5_000]);
        let scanned = recall_of_noisy_copies(&loaded, &vectors, 0.1);
        assert!(
            (scanned - 1.0).abs() < f64::EPSILON,
            "sketch recall {scanned}"
        );
        assert!(
            walked < scanned,
            "before the rebuild, the graph at ef 5: {walked}"
        );
        // Kept with every add from then on.
        loaded.add(5_000, &vectors[3]).unwrap();
        assert!(loaded.remove(3).unwrap());
        assert_eq!(loaded.search(&vectors[3], 1).unwrap()[0].key, 5_000);
    }

    #[test]
    fn save_then_load_round_trips() {
        let scratch = Scratch::new();
        let path = scratch.0.join("face-algo.usearch");
        let vectors = vectors(6, 1_500);
        let settings = IndexSettings::new(DIMENSION);
        let index = filled(&settings, &vectors);
        index.remove(11).unwrap();
        index.save(&path).unwrap();
        // A second save replaces the first, through the same temp-and-rename path.
        index.save(&path).unwrap();
        assert_eq!(scratch.entries(), vec!["face-algo.usearch".to_owned()]);

        let loaded = AnnIndex::load(&path, &settings).unwrap();
        // usearch does not persist a custom metric: a load must install it again.
        assert_eq!(loaded.kernel(), index.kernel());
        assert_eq!(loaded.len(), index.len());
        assert!(!loaded.contains(11));
        let mut random = Random(7);
        for _ in 0..50 {
            let query = random.unit_vector(DIMENSION);
            assert_eq!(
                index.search(&query, 10).unwrap(),
                loaded.search(&query, 10).unwrap()
            );
        }

        // A loaded index must take concurrent callers and grow like a new one.
        std::thread::scope(|scope| {
            for thread in 0..16_u64 {
                let loaded = &loaded;
                let vectors = &vectors;
                scope.spawn(move || {
                    for i in 0..40_u64 {
                        let key = 10_000 + thread * 100 + i;
                        loaded.add(key, &vectors[(key % 1_500) as usize]).unwrap();
                        loaded.search(&vectors[i as usize], 5).unwrap();
                    }
                });
            }
        });
        assert_eq!(loaded.len(), 1_499 + 16 * 40);
    }

    #[test]
    fn quantised_indexes_load_with_their_kernel() {
        let scratch = Scratch::new();
        let vectors = vectors(8, 600);
        for quantization in [Quantization::F16, Quantization::I8] {
            let path = scratch.0.join(format!("{quantization:?}.usearch"));
            let settings = IndexSettings {
                quantization,
                ..IndexSettings::new(DIMENSION)
            };
            let index = filled(&settings, &vectors);
            index.save(&path).unwrap();
            let loaded = AnnIndex::load(&path, &settings).unwrap();
            assert_eq!(loaded.kernel(), index.kernel(), "{quantization:?}");
            for query in vectors.iter().step_by(29) {
                assert_eq!(
                    index.search(query, 5).unwrap(),
                    loaded.search(query, 5).unwrap(),
                    "{quantization:?}"
                );
            }
        }
    }

    #[test]
    fn damaged_files_are_errors() {
        let scratch = Scratch::new();
        let settings = IndexSettings::new(DIMENSION);
        let good = scratch.0.join("good.usearch");
        filled(&settings, &vectors(8, 300)).save(&good).unwrap();
        let bytes = fs::read(&good).unwrap();
        let payload = &bytes[..bytes.len() - TRAILER_LEN as usize];
        let load = |name: &str, content: &[u8]| {
            let path = scratch.0.join(name);
            fs::write(&path, content).unwrap();
            AnnIndex::load(&path, &settings)
        };

        assert!(matches!(load("empty", &[]), Err(AnnError::Corrupt { .. })));
        assert!(matches!(
            load("half", &bytes[..bytes.len() / 2]),
            Err(AnnError::Corrupt { .. })
        ));
        assert!(matches!(
            load("bare", payload),
            Err(AnnError::Corrupt { .. })
        ));
        assert!(matches!(
            load("garbage", &[0xA5; 4096]),
            Err(AnnError::Corrupt { .. })
        ));
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 3] ^= 0x10;
        assert!(matches!(
            load("flipped", &flipped),
            Err(AnnError::Corrupt { .. })
        ));
        assert!(matches!(
            AnnIndex::load(&scratch.0.join("missing"), &settings),
            Err(AnnError::Io { .. })
        ));

        // A truncated usearch payload under a trailer that vouches for it: usearch's parser,
        // or the length check after it, must refuse it.
        for cut in [
            0,
            4,
            100,
            payload.len() / 2,
            payload.len() - 23,
            payload.len() - 1,
        ] {
            let mut resealed = payload[..cut].to_vec();
            resealed.extend_from_slice(&graph_field(IndexSettings::DEFAULT_EXPANSION));
            let checksum = checksum(&mut &resealed[..]).unwrap();
            resealed.extend_from_slice(&seal(TRAILER_MAGIC, cut as u64, checksum));
            assert!(load("resealed", &resealed).is_err(), "cut at {cut}");
        }
        AnnIndex::load(&good, &settings).unwrap();
    }

    #[test]
    fn the_graphs_insertion_list_is_saved_and_lowered_by_cheaper_insertions() {
        let scratch = Scratch::new();
        let path = scratch.0.join("graph.usearch");
        let vectors = vectors(10, 200);
        let with_expansion = |expansion_add| IndexSettings {
            expansion_add,
            ..IndexSettings::new(DIMENSION)
        };
        let index = filled(&with_expansion(40), &vectors);
        assert_eq!(index.graph_expansion_add(), 40);
        index.save(&path).unwrap();

        let scanned = IndexSettings {
            shortlist: 16,
            ..with_expansion(128)
        };
        let loaded = AnnIndex::load(&path, &scanned).unwrap();
        assert_eq!(
            loaded.graph_expansion_add(),
            40,
            "read back, not the new setting"
        );
        assert_eq!(loaded.expansion_add(), 128);
        let walked = with_expansion(128);
        assert!(
            matches!(
                AnnIndex::load(&path, &walked),
                Err(AnnError::SettingsMismatch { .. })
            ),
            "a graph built at 40 is not walked as one built at 128"
        );
        let loaded = AnnIndex::load(&path, &with_expansion(40)).unwrap();
        assert_eq!(loaded.graph_expansion_add(), 40, "walked at its own list");
        let loaded = AnnIndex::load(&path, &with_expansion(8)).unwrap();
        assert_eq!(loaded.graph_expansion_add(), 40);
        loaded.add(9_999, &vectors[0]).unwrap();
        assert_eq!(
            loaded.graph_expansion_add(),
            8,
            "a cheaper insertion lowers it"
        );

        // The checksum covers the recorded list.
        let bytes = fs::read(&path).unwrap();
        let field_at = bytes.len() - TRAILER_LEN as usize;
        let mut altered = bytes.clone();
        altered[field_at] ^= 0x01;
        let altered_path = scratch.0.join("altered.usearch");
        fs::write(&altered_path, &altered).unwrap();
        assert!(matches!(
            AnnIndex::load(&altered_path, &scanned),
            Err(AnnError::Corrupt { .. })
        ));

        // A file of the first trailer version loads, its graph's list unknown.
        let payload = &bytes[..field_at];
        let mut first_version = payload.to_vec();
        let checksum = checksum(&mut &first_version[..]).unwrap();
        first_version.extend_from_slice(&seal(TRAILER_MAGIC_V1, payload.len() as u64, checksum));
        let first_version_path = scratch.0.join("first-version.usearch");
        fs::write(&first_version_path, &first_version).unwrap();
        let loaded = AnnIndex::load(&first_version_path, &scanned).unwrap();
        assert_eq!(loaded.graph_expansion_add(), 0);
        assert_eq!(loaded.len(), index.len());
        assert!(
            AnnIndex::load(&first_version_path, &walked).is_err(),
            "a graph of unknown make is not walked"
        );
    }

    #[test]
    fn loading_with_other_settings_is_an_error() {
        let scratch = Scratch::new();
        let path = scratch.0.join("index.usearch");
        filled(&IndexSettings::new(DIMENSION), &vectors(9, 100))
            .save(&path)
            .unwrap();
        assert!(matches!(
            AnnIndex::load(&path, &IndexSettings::new(32)),
            Err(AnnError::DimensionMismatch {
                expected: 32,
                actual: 64
            })
        ));
        let f16 = IndexSettings {
            quantization: Quantization::F16,
            ..IndexSettings::new(DIMENSION)
        };
        assert!(matches!(
            AnnIndex::load(&path, &f16),
            Err(AnnError::SettingsMismatch {
                field: "quantization",
                ..
            })
        ));
    }

    #[test]
    fn sixteen_threads_add_search_and_remove_concurrently() {
        // One thread slot forces every caller through the semaphore; the default exercises
        // real parallelism inside usearch.
        for threads in [Some(1), None] {
            let settings = IndexSettings {
                threads,
                ..IndexSettings::new(DIMENSION)
            };
            let index = AnnIndex::new(&settings).unwrap();
            let vectors = vectors(10, 16 * 150);
            std::thread::scope(|scope| {
                for thread in 0..16 {
                    let index = &index;
                    let vectors = &vectors;
                    scope.spawn(move || {
                        for i in 0..150 {
                            let key = thread * 150 + i;
                            index.add(key as u64, &vectors[key]).unwrap();
                            index.search(&vectors[key], 3).unwrap();
                            if i % 10 == 0 {
                                assert!(index.remove(key as u64).unwrap());
                                index.add(key as u64, &vectors[key]).unwrap();
                            }
                        }
                    });
                }
            });
            assert_eq!(index.len(), 16 * 150);
            let recall = recall_of_noisy_copies(&index, &vectors, 0.1);
            // Exact self-queries are what concurrent inserts used to break (upstream #735).
            let reachable = vectors
                .iter()
                .enumerate()
                .filter(|&(key, vector)| index.search(vector, 1).unwrap()[0].key == key as u64)
                .count();
            eprintln!(
                "after a 16-thread build (threads {threads:?}): recall@1 of noisy copies {recall:.4}, \
                 exact self-queries found first {reachable}/{}",
                vectors.len()
            );
            assert!(recall >= 0.99, "recall {recall}");
            assert!(
                reachable * 1000 >= vectors.len() * 999,
                "{reachable} reachable"
            );
        }
    }

    #[test]
    fn searches_racing_the_first_insertion_find_nothing_or_it() {
        // usearch counts a node before it stores it, and a search that sees a count reads
        // the entry node at once: without the exclusive first insertion this dies with
        // SIGSEGV within a few rounds (a null node read in `search_to_find_in_base_`).
        use std::sync::atomic::AtomicBool;
        let vectors = vectors(13, 4);
        let settings = IndexSettings {
            quantization: Quantization::I8,
            ..IndexSettings::new(DIMENSION)
        };
        for _ in 0..300 {
            let index = AnnIndex::new(&settings).unwrap();
            let inserted = AtomicBool::new(false);
            let searching = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for probe in &vectors[..3] {
                    let (index, inserted, searching) = (&index, &inserted, &searching);
                    scope.spawn(move || {
                        let mut counted = false;
                        while !inserted.load(Ordering::Acquire) {
                            let found = index.search(probe, 1).unwrap();
                            assert!(found.is_empty() || found[0].key == 1, "{found:?}");
                            if !counted {
                                searching.fetch_add(1, Ordering::Release);
                                counted = true;
                            }
                        }
                    });
                }
                // Every searcher is spinning before the insertion starts.
                while searching.load(Ordering::Acquire) < 3 {
                    std::thread::yield_now();
                }
                index.add(1, &vectors[3]).unwrap();
                inserted.store(true, Ordering::Release);
            });
            assert_eq!(index.search(&vectors[3], 1).unwrap()[0].key, 1);
        }
    }

    #[test]
    fn concurrent_replacements_of_one_key_leave_one_member() {
        let index = AnnIndex::new(&IndexSettings::new(DIMENSION)).unwrap();
        let vectors = vectors(11, 16);
        std::thread::scope(|scope| {
            for vector in &vectors {
                let index = &index;
                scope.spawn(move || {
                    for _ in 0..50 {
                        index.add(42, vector).unwrap();
                    }
                });
            }
        });
        assert_eq!(index.len(), 1);
        assert!(index.contains(42));
    }

    #[test]
    fn saving_while_others_add_gives_loadable_snapshots() {
        let scratch = Scratch::new();
        let settings = IndexSettings::new(DIMENSION);
        let vectors = vectors(12, 2_000);
        let index = filled(&settings, &vectors[..500]);
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let index = &index;
                let vectors = &vectors;
                scope.spawn(move || {
                    for key in (500 + thread..2_000).step_by(4) {
                        index.add(key as u64, &vectors[key]).unwrap();
                    }
                });
            }
            for round in 0..3 {
                let path = scratch.0.join(format!("snapshot-{round}.usearch"));
                index.save(&path).unwrap();
                let loaded = AnnIndex::load(&path, &settings).unwrap();
                assert!(loaded.len() >= 500);
                assert_eq!(loaded.search(&vectors[3], 1).unwrap()[0].key, 3);
            }
        });
        assert_eq!(index.len(), 2_000);
    }

    #[test]
    fn settings_read_from_configuration() {
        let settings: IndexSettings =
            serde_json::from_str(r#"{"dimension": 512, "metric": "cosine"}"#).unwrap();
        assert_eq!(settings, IndexSettings::new(512));
        let tuned: IndexSettings = serde_json::from_str(
            r#"{"dimension": 128, "quantization": "f16", "connectivity": 32, "threads": 8}"#,
        )
        .unwrap();
        assert_eq!(tuned.quantization, Quantization::F16);
        assert_eq!(tuned.connectivity, 32);
        assert_eq!(tuned.expansion_search, IndexSettings::DEFAULT_EXPANSION);
        assert!(
            serde_json::from_str::<IndexSettings>(r#"{"dimension": 8, "metric": "l2"}"#).is_err()
        );
        assert!(serde_json::from_str::<IndexSettings>(r#"{"dimension": 8, "typo": 1}"#).is_err());
    }
}
