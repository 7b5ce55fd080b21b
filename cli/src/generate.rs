//! `interop-hub generate`: a deterministic synthetic population written as native records of
//! the five source systems, with the ground truth (which records are one biological person,
//! which are identity fraud, which are look-alikes) that linking quality is measured against.
//!
//! Everything derives from the seed: the same `(persons, seed)` gives byte-identical files.
//! Biometric base vectors are not stored anywhere; they are re-derived from
//! `(seed, person, trait)` by [`base_vector`], so a test can make a fresh capture of any
//! stored person's face or finger with [`new_capture`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
pub use connectors::RecordRef;
use connectors::{FingerPosition, MinimumQuality, Modality, SourceSystem, vector_base64};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng as _, RngExt as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The seed used when the command line gives none.
pub const DEFAULT_SEED: u64 = 42;

/// Algorithm ids and dimensions of the hub's default algorithm registry.
pub const FACE_ALGORITHM: &str = "acme-face-v3";
pub const FACE_DIMENSION: usize = 512;
pub const FINGER_ALGORITHM: &str = "acme-finger-v2";
pub const FINGER_DIMENSION: usize = 192;

/// The fingers every biometric record carries: the two index fingers, as border systems
/// enrol them when ten prints are not taken.
pub const FINGERS: [FingerPosition; 2] = [FingerPosition::RightIndex, FingerPosition::LeftIndex];

/// Expected cosine similarity of two captures of one trait; the capture noise is derived
/// from it (see [`noise_sigma`]).
pub const MATE_SIMILARITY: f64 = 0.85;

/// Share of persons who also hold a record under a different identity in a biometric system.
pub const FRAUD_RATE: f64 = 0.03;
/// Share of persons for whom a different person with the same name and date of birth exists.
pub const LOOK_ALIKE_RATE: f64 = 0.03;
/// Share of templates captured below their modality's minimum quality (face < 50, finger < 40).
pub const BELOW_MINIMUM_QUALITY_RATE: f64 = 0.03;

/// Systems that carry biometrics; ETIAS does not.
const BIOMETRIC_SYSTEMS: [SourceSystem; 4] = [
    SourceSystem::Ees,
    SourceSystem::Vis,
    SourceSystem::Sis,
    SourceSystem::EcrisTcn,
];

/// How likely a person is to appear in each system (order of [`SourceSystem::ALL`]): most
/// third-country nationals are travellers (EES, ETIAS, VIS), fewer are in police systems.
const SYSTEM_WEIGHTS: [f64; 5] = [0.32, 0.26, 0.20, 0.12, 0.10];
/// How many systems a person appears in: 1, 2, 3 or 4. Most appear in more than one, so most
/// persons yield cross-system pairs.
const SYSTEM_COUNT_WEIGHTS: [f64; 4] = [0.15, 0.40, 0.30, 0.15];

// Variation between a person's appearances. Each applies per record.
const CYRILLIC_SCRIPT_RATE: f64 = 0.35;
const LATIN_VARIANT_RATE: f64 = 0.20;
const TYPO_RATE: f64 = 0.05;
const GIVEN_NAME_SWAP_RATE: f64 = 0.10;
const YEAR_MONTH_RATE: f64 = 0.03;
const YEAR_ONLY_RATE: f64 = 0.02;
const DAY_MONTH_SWAP_RATE: f64 = 0.03;
const DOCUMENT_FORMATTED_RATE: f64 = 0.07;
const DOCUMENT_RENEWED_RATE: f64 = 0.05;
/// Police records are often made without the person's papers.
const LAW_ENFORCEMENT_NO_DOCUMENT_RATE: f64 = 0.10;
const SEX_UNSPECIFIED_RATE: f64 = 0.01;
/// Persons whose day and month of birth were never known, in every record.
const YEAR_ONLY_PERSON_RATE: f64 = 0.02;

/// Seed domains, so the base vectors, per-person choices, captures, record details and the
/// file order never draw from one another's streams.
const DOMAIN_BASE: u64 = 1;
const DOMAIN_PERSON: u64 = 2;
const DOMAIN_CAPTURE: u64 = 3;
const DOMAIN_DETAIL: u64 = 4;
const DOMAIN_ORDER: u64 = 5;

/// Xoshiro256++ rather than `StdRng`: rand documents its output as portable across versions
/// and platforms, which `StdRng`'s is not, and the files must be reproducible from a seed.
type Prng = Xoshiro256PlusPlus;

/// Records rendered per batch: enough to keep every core busy, few enough to bound memory.
const RENDER_BATCH: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Biological persons to generate; look-alikes come on top, with ids from `persons` up.
    pub persons: u64,
    pub seed: u64,
    /// Directory that receives `records.ndjson` and `truth.json`; created if missing.
    pub out: PathBuf,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSummary {
    pub persons: u64,
    /// Additional persons created as look-alikes of generated persons.
    pub look_alike_persons: u64,
    pub records: u64,
    pub records_per_system: BTreeMap<SourceSystem, u64>,
    /// Records under a fraudulent identity (one per fraudster).
    pub fraud_records: u64,
    pub fraud_pairs: u64,
    pub look_alike_pairs: u64,
    /// Pairs of records in different systems that belong to one person (fraud pairs included).
    pub same_person_pairs: u64,
    pub templates: u64,
    pub templates_below_minimum_quality: u64,
    pub records_file: PathBuf,
    pub truth_file: PathBuf,
}

impl fmt::Display for GenerateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "generated {} records for {} persons and {} look-alikes",
            self.records, self.persons, self.look_alike_persons
        )?;
        let per_system: Vec<String> = self
            .records_per_system
            .iter()
            .map(|(system, count)| format!("{system} {count}"))
            .collect();
        writeln!(f, "  per system: {}", per_system.join(", "))?;
        writeln!(
            f,
            "  same-person cross-system pairs: {}",
            self.same_person_pairs
        )?;
        writeln!(
            f,
            "  identity fraud: {} records, {} pairs; look-alikes: {} pairs",
            self.fraud_records, self.fraud_pairs, self.look_alike_pairs
        )?;
        writeln!(
            f,
            "  templates: {} ({} below minimum quality)",
            self.templates, self.templates_below_minimum_quality
        )?;
        writeln!(f, "  records: {}", self.records_file.display())?;
        write!(f, "  truth:   {}", self.truth_file.display())
    }
}

/// The ground truth of a generated population (`truth.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    pub seed: u64,
    /// Persons asked for; look-alike persons have ids from here up.
    pub persons: u64,
    /// Every record, in the order of `records.ndjson`.
    pub records: Vec<TruthRecord>,
    /// `(record under a fraudulent identity, genuine record of the same person)`, for each of
    /// the person's genuine records in a biometric system.
    pub fraud_pairs: Vec<(RecordRef, RecordRef)>,
    /// `(look-alike's record, original's record)`, for each of the original's records in a
    /// system other than the look-alike's.
    pub look_alike_pairs: Vec<(RecordRef, RecordRef)>,
}

/// One record and the biological person it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TruthRecord {
    pub system: SourceSystem,
    pub source_id: String,
    pub person: u64,
}

impl TruthRecord {
    pub fn record_ref(&self) -> RecordRef {
        RecordRef::new(self.system, self.source_id.clone())
    }
}

impl Truth {
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Truth> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a truth file", path.display()))
    }

    /// The person each record belongs to.
    pub fn person_of(&self) -> HashMap<RecordRef, u64> {
        self.records
            .iter()
            .map(|record| (record.record_ref(), record.person))
            .collect()
    }

    /// Every unordered pair of records of one person held by two different systems, the
    /// smaller reference first. These are the pairs the hub should link (white, or red for
    /// fraud); same-system pairs are not, because MID compares across systems only.
    pub fn same_person_pairs_across_systems(&self) -> HashSet<(RecordRef, RecordRef)> {
        let mut by_person: BTreeMap<u64, Vec<RecordRef>> = BTreeMap::new();
        for record in &self.records {
            by_person
                .entry(record.person)
                .or_default()
                .push(record.record_ref());
        }
        let mut pairs = HashSet::new();
        for records in by_person.values() {
            for (i, a) in records.iter().enumerate() {
                for b in &records[i + 1..] {
                    if a.system != b.system {
                        pairs.insert(normalised_pair(a, b));
                    }
                }
            }
        }
        pairs
    }
}

/// The pair with the smaller reference first, so `(a, b)` and `(b, a)` compare equal.
pub fn normalised_pair(a: &RecordRef, b: &RecordRef) -> (RecordRef, RecordRef) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

/// A biometric trait of a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trait {
    Face,
    Finger(FingerPosition),
}

impl Trait {
    pub fn dimension(self) -> usize {
        match self {
            Self::Face => FACE_DIMENSION,
            Self::Finger(_) => FINGER_DIMENSION,
        }
    }

    pub fn algorithm(self) -> &'static str {
        match self {
            Self::Face => FACE_ALGORITHM,
            Self::Finger(_) => FINGER_ALGORITHM,
        }
    }

    /// A stable number per trait, part of the seed its base vector derives from.
    fn code(self) -> u64 {
        match self {
            Self::Face => 0,
            Self::Finger(position) => FingerPosition::ALL
                .iter()
                .position(|p| *p == position)
                .map_or(99, |index| 1 + index as u64),
        }
    }
}

/// The trait's true vector for this person: a random unit vector (Gaussian components,
/// normalised), the same every time for the same `(seed, person, trait_)`.
pub fn base_vector(seed: u64, person: u64, trait_: Trait) -> Vec<f32> {
    let mut rng = Prng::seed_from_u64(derive_seed(&[DOMAIN_BASE, seed, person, trait_.code()]));
    normalise(&standard_normals(&mut rng, trait_.dimension()))
}

/// Per-component standard deviation of capture noise for unit vectors of `dimension`.
///
/// A capture is `b + n` renormalised, with `|b| = 1` and `E|n|² = dσ²`. For two captures the
/// cross terms average zero, so their cosine is about `1 / (1 + dσ²)`; solving for the
/// wanted [`MATE_SIMILARITY`] gives `σ = √((1/s − 1) / d)`: 0.0185 for 512-d faces, 0.0303
/// for 192-d fingers. Fixing the similarity rather than σ keeps both modalities alike.
pub fn noise_sigma(dimension: usize) -> f64 {
    ((1.0 / MATE_SIMILARITY - 1.0) / dimension.max(1) as f64).sqrt()
}

/// A new capture of a trait: `base` plus Gaussian noise, renormalised. Two captures of one
/// base have a cosine similarity of about [`MATE_SIMILARITY`].
pub fn new_capture(base: &[f32], rng_seed: u64) -> Vec<f32> {
    let mut rng = Prng::seed_from_u64(rng_seed);
    // Scaled by the base's length so a base that is not unit length gets the same relative noise.
    let length = base
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    let sigma = noise_sigma(base.len()) * length;
    let noise = standard_normals(&mut rng, base.len());
    let values: Vec<f64> = base
        .iter()
        .zip(noise)
        .map(|(&v, n)| f64::from(v) + sigma * n)
        .collect();
    normalise(&values)
}

/// Cosine similarity, the metric the hub's registry uses for both algorithms.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut aa, mut bb) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        dot / (aa.sqrt() * bb.sqrt())
    }
}

/// `count` independent standard normal deviates, by the Box–Muller transform.
///
/// Not rand_distr's ziggurat: that is generic, so it is compiled at this crate's opt-level,
/// and unoptimised (debug builds) it made up most of the generation time; this is a few
/// float operations and two calls into the already-optimised standard library per pair.
fn standard_normals(rng: &mut Prng, count: usize) -> Vec<f64> {
    // 53 random bits as a float in [0, 1).
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    let mut values = Vec::with_capacity(count + 1);
    while values.len() < count {
        // (0, 1]: the logarithm needs a non-zero argument.
        let u = ((rng.next_u64() >> 11) as f64 + 1.0) * SCALE;
        let angle = std::f64::consts::TAU * ((rng.next_u64() >> 11) as f64 * SCALE);
        let radius = (-2.0 * u.ln()).sqrt();
        values.push(radius * angle.cos());
        values.push(radius * angle.sin());
    }
    values.truncate(count);
    values
}

fn normalise(values: &[f64]) -> Vec<f32> {
    let length = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if length == 0.0 {
        // Only reachable with an all-zero base; a zero vector has no direction to keep.
        return vec![0.0; values.len()];
    }
    values.iter().map(|v| (v / length) as f32).collect()
}

/// SplitMix64's finaliser: every input bit affects every output bit, so nearby inputs (person
/// 7 and 8) give unrelated seeds.
fn splitmix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed from several numbers. Hand-rolled because std's hashers are not guaranteed stable
/// across Rust releases, and the bases must stay reproducible.
fn derive_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x6A09_E667_F3BC_C908, |acc, &part| {
        splitmix(acc ^ splitmix(part))
    })
}

fn capture_seed(seed: u64, person: u64, appearance: u64, trait_: Trait) -> u64 {
    derive_seed(&[DOMAIN_CAPTURE, seed, person, appearance, trait_.code()])
}

/// Writes `records.ndjson` and `truth.json` for `options.persons` persons.
pub fn generate(options: &GenerateOptions) -> anyhow::Result<GenerateSummary> {
    generate_with_progress(options, &mut |_, _| {})
}

/// [`generate`], calling `progress(written, total)` after each record is written.
pub fn generate_with_progress(
    options: &GenerateOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<GenerateSummary> {
    anyhow::ensure!(options.persons > 0, "--persons must be at least 1");
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    let records_file = options.out.join("records.ndjson");
    let truth_file = options.out.join("truth.json");

    let population = Population::plan(options.persons, options.seed);
    let total = population.records.len() as u64;
    let file = File::create(&records_file)
        .with_context(|| format!("cannot create {}", records_file.display()))?;
    let mut writer = BufWriter::new(file);
    // Rendering (mostly drawing Gaussian noise) is the work; it runs on every core in
    // batches, written in order so the file stays the same whatever the core count.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let mut written = 0;
    for batch in population.records.chunks(RENDER_BATCH) {
        for line in render_lines(batch, options.seed, workers) {
            writer.write_all(line.as_bytes())?;
            writer.write_all(b"\n")?;
            written += 1;
            progress(written, total);
        }
    }
    writer
        .flush()
        .with_context(|| format!("cannot write {}", records_file.display()))?;

    let truth = population.truth(options.seed);
    let file = File::create(&truth_file)
        .with_context(|| format!("cannot create {}", truth_file.display()))?;
    let mut writer = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut writer, &truth)?;
    writer.write_all(b"\n")?;
    writer
        .flush()
        .with_context(|| format!("cannot write {}", truth_file.display()))?;

    Ok(population.summary(&truth, records_file, truth_file))
}

/// All records of a population, in file order, with their source ids assigned.
#[derive(Debug)]
struct Population {
    persons: u64,
    look_alike_persons: u64,
    records: Vec<Planned>,
    /// Indexes into `records`.
    fraud_pairs: Vec<(usize, usize)>,
    look_alike_pairs: Vec<(usize, usize)>,
}

impl Population {
    fn plan(persons: u64, seed: u64) -> Self {
        let mut records: Vec<Planned> = Vec::new();
        let mut fraud_pairs = Vec::new();
        let mut look_alike_pairs = Vec::new();
        let mut look_alike_persons = 0;
        for person in 0..persons {
            // One stream per person: persons 0..n come out the same whatever n is.
            let mut rng = Prng::seed_from_u64(derive_seed(&[DOMAIN_PERSON, seed, person]));
            let identity = Identity::random(&mut rng, None);
            let fraud = rng.random_bool(FRAUD_RATE);
            let look_alike = rng.random_bool(LOOK_ALIKE_RATE);
            let systems = choose_systems(&mut rng, fraud);
            let genuine: Vec<usize> = systems
                .iter()
                .enumerate()
                .map(|(appearance, &system)| {
                    let written = identity.appearance(&mut rng, system, Variation::Full);
                    records.push(Planned::new(
                        &mut rng,
                        person,
                        appearance as u64,
                        system,
                        written,
                    ));
                    records.len() - 1
                })
                .collect();

            if fraud {
                let free: Vec<SourceSystem> = BIOMETRIC_SYSTEMS
                    .into_iter()
                    .filter(|system| !systems.contains(system))
                    .collect();
                if !free.is_empty() {
                    let system = *pick(&mut rng, &free);
                    let alias = Identity::random(&mut rng, Some(&identity));
                    // A fraudster presents the other identity's papers as they are.
                    let held = alias.appearance(&mut rng, system, Variation::SpellingOnly);
                    records.push(Planned::new(
                        &mut rng,
                        person,
                        systems.len() as u64,
                        system,
                        held,
                    ));
                    let fraud_record = records.len() - 1;
                    fraud_pairs.extend(
                        genuine
                            .iter()
                            .filter(|&&index| records[index].system.has_biometrics())
                            .map(|&index| (fraud_record, index)),
                    );
                }
            }

            if look_alike {
                let other = persons + look_alike_persons;
                look_alike_persons += 1;
                let mut other_rng = Prng::seed_from_u64(derive_seed(&[DOMAIN_PERSON, seed, other]));
                let twin = identity.look_alike(&mut other_rng);
                // Somewhere MID will compare it with at least one of the original's records.
                let candidates: Vec<SourceSystem> = SourceSystem::ALL
                    .into_iter()
                    .filter(|candidate| systems.iter().any(|s| s != candidate))
                    .collect();
                let system = *pick(&mut other_rng, &candidates);
                let held = twin.appearance(&mut other_rng, system, Variation::SpellingOnly);
                records.push(Planned::new(&mut other_rng, other, 0, system, held));
                let look_alike_record = records.len() - 1;
                look_alike_pairs.extend(
                    genuine
                        .iter()
                        .filter(|&&index| records[index].system != system)
                        .map(|&index| (look_alike_record, index)),
                );
            }
        }

        // Shuffled so that a person's records are not neighbours in the file (nor in source-id
        // order): an import then interleaves persons as real traffic does.
        let mut order: Vec<usize> = (0..records.len()).collect();
        let mut rng = Prng::seed_from_u64(derive_seed(&[DOMAIN_ORDER, seed]));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut position = vec![0; records.len()];
        for (at, &index) in order.iter().enumerate() {
            position[index] = at;
        }
        let mut slots: Vec<Option<Planned>> = records.into_iter().map(Some).collect();
        let mut records: Vec<Planned> = order
            .iter()
            .filter_map(|&index| slots[index].take())
            .collect();
        let mut counters: BTreeMap<SourceSystem, u64> = BTreeMap::new();
        for record in &mut records {
            let counter = counters.entry(record.system).or_default();
            *counter += 1;
            record.source_id = format!("{}-GEN-{:06}", id_prefix(record.system), counter);
        }
        let moved = |pairs: Vec<(usize, usize)>| -> Vec<(usize, usize)> {
            pairs
                .into_iter()
                .map(|(a, b)| (position[a], position[b]))
                .collect()
        };
        Self {
            persons,
            look_alike_persons,
            records,
            fraud_pairs: moved(fraud_pairs),
            look_alike_pairs: moved(look_alike_pairs),
        }
    }

    fn truth(&self, seed: u64) -> Truth {
        let reference = |index: usize| {
            let record = &self.records[index];
            RecordRef::new(record.system, record.source_id.clone())
        };
        let pairs = |pairs: &[(usize, usize)]| -> Vec<(RecordRef, RecordRef)> {
            pairs
                .iter()
                .map(|&(a, b)| (reference(a), reference(b)))
                .collect()
        };
        Truth {
            seed,
            persons: self.persons,
            records: self
                .records
                .iter()
                .map(|record| TruthRecord {
                    system: record.system,
                    source_id: record.source_id.clone(),
                    person: record.person,
                })
                .collect(),
            fraud_pairs: pairs(&self.fraud_pairs),
            look_alike_pairs: pairs(&self.look_alike_pairs),
        }
    }

    fn summary(
        &self,
        truth: &Truth,
        records_file: PathBuf,
        truth_file: PathBuf,
    ) -> GenerateSummary {
        let mut records_per_system = BTreeMap::new();
        let mut templates = 0;
        let mut below = 0;
        for record in &self.records {
            *records_per_system.entry(record.system).or_default() += 1;
            if record.system.has_biometrics() {
                templates += record.qualities.len() as u64;
                below += record
                    .traits()
                    .zip(record.qualities)
                    .filter(|&(trait_, quality)| quality < minimum_quality(trait_))
                    .count() as u64;
            }
        }
        let fraud_records: HashSet<usize> = self.fraud_pairs.iter().map(|&(a, _)| a).collect();
        GenerateSummary {
            persons: self.persons,
            look_alike_persons: self.look_alike_persons,
            records: self.records.len() as u64,
            records_per_system,
            fraud_records: fraud_records.len() as u64,
            fraud_pairs: self.fraud_pairs.len() as u64,
            look_alike_pairs: self.look_alike_pairs.len() as u64,
            same_person_pairs: truth.same_person_pairs_across_systems().len() as u64,
            templates,
            templates_below_minimum_quality: below,
            records_file,
            truth_file,
        }
    }
}

fn id_prefix(system: SourceSystem) -> &'static str {
    match system {
        SourceSystem::Ees => "EES",
        SourceSystem::Etias => "ETIAS",
        SourceSystem::Vis => "VIS",
        SourceSystem::Sis => "SIS",
        SourceSystem::EcrisTcn => "ECRIS",
    }
}

/// The hub's default minimum quality for the trait's modality (face 50, finger 40): below it
/// a template is stored but never indexed.
fn minimum_quality(trait_: Trait) -> u8 {
    let modality = match trait_ {
        Trait::Face => Modality::Face,
        Trait::Finger(_) => Modality::Finger,
    };
    MinimumQuality::default().for_modality(modality)
}

trait HasBiometrics {
    fn has_biometrics(self) -> bool;
}

impl HasBiometrics for SourceSystem {
    fn has_biometrics(self) -> bool {
        BIOMETRIC_SYSTEMS.contains(&self)
    }
}

/// The systems a person's genuine records are in. A fraudster needs a genuine biometric
/// record to be caught against and a biometric system left to hold the false identity.
fn choose_systems(rng: &mut Prng, fraud: bool) -> Vec<SourceSystem> {
    let count = 1 + weighted_index(rng, &SYSTEM_COUNT_WEIGHTS);
    let mut weights = SYSTEM_WEIGHTS;
    let mut systems = Vec::with_capacity(count + 1);
    for _ in 0..count {
        let index = weighted_index(rng, &weights);
        weights[index] = 0.0;
        systems.push(SourceSystem::ALL[index]);
    }
    if fraud {
        if !systems.iter().any(|s| s.has_biometrics()) {
            systems.push(*pick(rng, &BIOMETRIC_SYSTEMS));
        }
        if BIOMETRIC_SYSTEMS.iter().all(|s| systems.contains(s)) {
            let biometric: Vec<usize> = (0..systems.len())
                .filter(|&i| systems[i].has_biometrics())
                .collect();
            let drop = *pick(rng, &biometric);
            systems.remove(drop);
        }
    }
    systems
}

fn weighted_index(rng: &mut Prng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut left = rng.random::<f64>() * total;
    for (index, &weight) in weights.iter().enumerate() {
        if left < weight {
            return index;
        }
        left -= weight;
    }
    // Rounding can leave a sliver past the last weight; it belongs to the last non-zero one.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// One item of a non-empty list (every list here is a non-empty constant or checked).
fn pick<'a, T>(rng: &mut Prng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

// ---------------------------------------------------------------------------------------
// Names and origins
// ---------------------------------------------------------------------------------------

/// A name as one person bears it in different records.
#[derive(Debug)]
struct NameSpec {
    /// Latin spellings: the first as in the passport, the others transliteration variants
    /// other authorities wrote down (`Müller`, `Mueller`, `Muller`).
    latin: &'static [&'static str],
    /// The spelling in the original script, for names of Cyrillic origin.
    cyrillic: Option<&'static str>,
}

const fn n(latin: &'static [&'static str]) -> NameSpec {
    NameSpec {
        latin,
        cyrillic: None,
    }
}

const fn c(latin: &'static [&'static str], cyrillic: &'static str) -> NameSpec {
    NameSpec {
        latin,
        cyrillic: Some(cyrillic),
    }
}

impl NameSpec {
    fn canonical(&self) -> &'static str {
        self.latin.first().copied().unwrap_or_default()
    }
}

/// Where a person comes from: nationality, birthplaces and the names given there.
#[derive(Debug)]
struct Origin {
    weight: f64,
    nationalities: &'static [&'static str],
    places: &'static [&'static str],
    /// Surnames by sex (aligned where a language inflects them: `Ivanov`/`Ivanova`).
    surnames_male: &'static [NameSpec],
    surnames_female: &'static [NameSpec],
    given_male: &'static [NameSpec],
    given_female: &'static [NameSpec],
    /// Chance of a second given name.
    second_given_name: f64,
}

static TURKISH_SURNAMES: &[NameSpec] = &[
    n(&["Yılmaz", "Yilmaz"]),
    n(&["Öztürk", "Oeztuerk", "Ozturk"]),
    n(&["Şahin", "Sahin"]),
    n(&["Çelik", "Celik"]),
    n(&["Demir"]),
    n(&["Kaya"]),
    n(&["Aydın", "Aydin"]),
    n(&["Doğan", "Dogan"]),
    n(&["Kılıç", "Kilic"]),
    n(&["Arslan"]),
];
static TURKISH_MALE: &[NameSpec] = &[
    n(&["Mehmet"]),
    n(&["Mustafa"]),
    n(&["Ahmet"]),
    n(&["Emre"]),
    n(&["Burak"]),
    n(&["Oğuz", "Oguz"]),
    n(&["Hüseyin", "Hueseyin", "Huseyin"]),
];
static TURKISH_FEMALE: &[NameSpec] = &[
    n(&["Ayşe", "Ayse"]),
    n(&["Zeynep"]),
    n(&["Elif"]),
    n(&["Emine"]),
    n(&["Fatma"]),
    n(&["Büşra", "Buesra", "Busra"]),
    n(&["Gül", "Guel", "Gul"]),
];

// Russian surnames inflect by sex; the lists are aligned so a family shares a stem.
static RUSSIAN_SURNAMES_MALE: &[NameSpec] = &[
    c(&["Ivanov", "Iwanow"], "Иванов"),
    c(&["Petrov", "Petrow"], "Петров"),
    c(&["Smirnov"], "Смирнов"),
    c(&["Kuznetsov", "Kusnezow", "Kuznecov"], "Кузнецов"),
    c(&["Popov"], "Попов"),
    c(&["Sokolov"], "Соколов"),
    c(&["Volkov", "Wolkow"], "Волков"),
    c(&["Iusupov", "Yusupov", "Jusupow"], "Юсупов"),
    c(&["Fedorov", "Fyodorov"], "Фёдоров"),
];
static RUSSIAN_SURNAMES_FEMALE: &[NameSpec] = &[
    c(&["Ivanova", "Iwanowa"], "Иванова"),
    c(&["Petrova", "Petrowa"], "Петрова"),
    c(&["Smirnova"], "Смирнова"),
    c(&["Kuznetsova", "Kusnezowa", "Kuznecova"], "Кузнецова"),
    c(&["Popova"], "Попова"),
    c(&["Sokolova"], "Соколова"),
    c(&["Volkova", "Wolkowa"], "Волкова"),
    c(&["Iusupova", "Yusupova", "Jusupowa"], "Юсупова"),
    c(&["Fedorova", "Fyodorova"], "Фёдорова"),
];
static RUSSIAN_MALE: &[NameSpec] = &[
    c(&["Ivan"], "Иван"),
    c(&["Sergei", "Sergey", "Sergej"], "Сергей"),
    c(&["Aleksandr", "Alexander", "Aleksander"], "Александр"),
    c(&["Dmitrii", "Dmitry", "Dmitriy"], "Дмитрий"),
    c(&["Mikhail", "Michail"], "Михаил"),
    c(&["Andrei", "Andrey"], "Андрей"),
    c(&["Nikolai", "Nikolay"], "Николай"),
    c(&["Aleksei", "Alexey", "Alexei"], "Алексей"),
];
static RUSSIAN_FEMALE: &[NameSpec] = &[
    c(&["Olga"], "Ольга"),
    c(&["Iuliia", "Yulia", "Julia"], "Юлия"),
    c(&["Natalia", "Natalya"], "Наталья"),
    c(&["Ekaterina", "Yekaterina"], "Екатерина"),
    c(&["Svetlana"], "Светлана"),
    c(&["Tatiana", "Tatyana"], "Татьяна"),
    c(&["Anastasiia", "Anastasia"], "Анастасия"),
    c(&["Mariia", "Maria"], "Мария"),
];

static UKRAINIAN_SURNAMES: &[NameSpec] = &[
    c(&["Shevchenko", "Schewtschenko"], "Шевченко"),
    c(&["Kovalenko"], "Коваленко"),
    c(&["Bondarenko"], "Бондаренко"),
    c(&["Tkachenko", "Tkatschenko"], "Ткаченко"),
    c(&["Kravchenko"], "Кравченко"),
    c(&["Melnyk", "Melnik"], "Мельник"),
    c(&["Hryhorenko", "Grigorenko"], "Григоренко"),
];
static UKRAINIAN_MALE: &[NameSpec] = &[
    c(&["Oleksandr"], "Олександр"),
    c(&["Andrii", "Andriy"], "Андрій"),
    c(&["Volodymyr", "Volodimir"], "Володимир"),
    c(&["Serhii", "Sergii", "Serhiy"], "Сергій"),
    c(&["Taras"], "Тарас"),
];
static UKRAINIAN_FEMALE: &[NameSpec] = &[
    c(&["Olena"], "Олена"),
    c(&["Iryna", "Irina"], "Ірина"),
    c(&["Oksana"], "Оксана"),
    c(&["Nataliia", "Natalia"], "Наталія"),
    c(&["Yevheniia", "Ievgeniia", "Evgenia"], "Євгенія"),
];

static SERBIAN_SURNAMES: &[NameSpec] = &[
    c(&["Jovanović", "Jovanovic"], "Јовановић"),
    c(&["Petrović", "Petrovic"], "Петровић"),
    c(&["Nikolić", "Nikolic"], "Николић"),
    c(&["Đorđević", "Djordjevic", "Dordevic"], "Ђорђевић"),
    c(&["Marković", "Markovic"], "Марковић"),
];
static SERBIAN_MALE: &[NameSpec] = &[
    c(&["Nikola"], "Никола"),
    c(&["Marko"], "Марко"),
    c(&["Stefan"], "Стефан"),
    c(&["Miloš", "Milos", "Milosh"], "Милош"),
];
static SERBIAN_FEMALE: &[NameSpec] = &[
    c(&["Jelena"], "Јелена"),
    c(&["Milica", "Militsa"], "Милица"),
    c(&["Ana"], "Ана"),
    c(&["Jovana"], "Јована"),
];

static WESTERN_SURNAMES: &[NameSpec] = &[
    n(&["Müller", "Mueller", "Muller"]),
    n(&["Schröder", "Schroeder", "Schroder"]),
    n(&["Smith"]),
    n(&["Johnson"]),
    n(&["O'Brien", "OBrien"]),
    n(&["Øster", "Oester", "Oster"]),
    n(&["Søndergaard", "Soendergaard", "Sondergaard"]),
    n(&["Žukauskas", "Zukauskas"]),
    n(&["García", "Garcia"]),
    n(&["Núñez", "Nunez"]),
    n(&["García López", "Garcia Lopez", "García-López"]),
    n(&["Gonçalves", "Goncalves"]),
    n(&["Brown"]),
    n(&["Wilson"]),
    n(&["Johansson"]),
];
static WESTERN_MALE: &[NameSpec] = &[
    n(&["John"]),
    n(&["James"]),
    n(&["Michael"]),
    n(&["Lukas"]),
    n(&["Jürgen", "Juergen", "Jurgen"]),
    n(&["Søren", "Soeren", "Soren"]),
    n(&["Björn", "Bjoern", "Bjorn"]),
    n(&["José", "Jose"]),
    n(&["João", "Joao"]),
    n(&["Thomas"]),
];
static WESTERN_FEMALE: &[NameSpec] = &[
    n(&["Anna"]),
    n(&["Maria"]),
    n(&["Emma"]),
    n(&["Sophie"]),
    n(&["Zoë", "Zoe"]),
    n(&["Léa", "Lea"]),
    n(&["Åsa", "Aasa", "Asa"]),
    n(&["Sofía", "Sofia"]),
    n(&["Chloé", "Chloe"]),
    n(&["Ingrid"]),
];

static ARABIC_SURNAMES: &[NameSpec] = &[
    n(&["Haddad"]),
    n(&["Mansour", "Mansur"]),
    n(&["El Amrani", "El-Amrani", "Elamrani"]),
    n(&["Ben Ali", "Benali"]),
    n(&["Al-Hassan", "Al Hassan", "Alhassan"]),
    n(&["Khalil"]),
    n(&["Saleh", "Salih"]),
    n(&["Nasser", "Naser"]),
    n(&["Ibrahim"]),
];
static ARABIC_MALE: &[NameSpec] = &[
    n(&["Mohammed", "Mohamed", "Muhammad", "Mohammad"]),
    n(&["Ahmed", "Ahmad"]),
    n(&["Youssef", "Yousef", "Yusuf"]),
    n(&["Omar"]),
    n(&["Karim", "Kareem"]),
    n(&["Hassan"]),
    n(&["Ali"]),
];
static ARABIC_FEMALE: &[NameSpec] = &[
    n(&["Fatima", "Fatma"]),
    n(&["Khadija", "Khadidja"]),
    n(&["Aisha", "Aicha", "Ayesha"]),
    n(&["Layla", "Leila", "Laila"]),
    n(&["Mariam", "Maryam"]),
    n(&["Nour", "Nur"]),
    n(&["Salma"]),
];

static ALBANIAN_SURNAMES: &[NameSpec] = &[
    n(&["Hoxha", "Hodja"]),
    n(&["Krasniqi"]),
    n(&["Berisha"]),
    n(&["Gashi"]),
    n(&["Shehu"]),
    n(&["Çela", "Cela"]),
];
static ALBANIAN_MALE: &[NameSpec] = &[
    n(&["Arben"]),
    n(&["Blerim"]),
    n(&["Ilir"]),
    n(&["Endrit"]),
    n(&["Besnik"]),
];
static ALBANIAN_FEMALE: &[NameSpec] = &[
    n(&["Elira"]),
    n(&["Drita"]),
    n(&["Arta"]),
    n(&["Besa"]),
    n(&["Mimoza"]),
];

static CHINESE_SURNAMES: &[NameSpec] = &[
    n(&["Wang"]),
    n(&["Li"]),
    n(&["Zhang"]),
    n(&["Liu"]),
    n(&["Chen"]),
    n(&["Yang"]),
    n(&["Huang"]),
    n(&["Zhao"]),
];
static CHINESE_MALE: &[NameSpec] = &[
    n(&["Wei"]),
    n(&["Jun"]),
    n(&["Hao"]),
    n(&["Lei"]),
    n(&["Jian"]),
    n(&["Zhiwei", "Zhi Wei"]),
];
static CHINESE_FEMALE: &[NameSpec] = &[
    n(&["Fang"]),
    n(&["Mei"]),
    n(&["Xiuying", "Xiu Ying"]),
    n(&["Jing"]),
    n(&["Yan"]),
    n(&["Min"]),
];

static VIETNAMESE_SURNAMES: &[NameSpec] = &[
    n(&["Nguyễn", "Nguyen"]),
    n(&["Trần", "Tran"]),
    n(&["Lê", "Le"]),
    n(&["Phạm", "Pham"]),
    n(&["Hoàng", "Hoang"]),
];
static VIETNAMESE_MALE: &[NameSpec] = &[
    n(&["Minh"]),
    n(&["Hùng", "Hung"]),
    n(&["Đức", "Duc"]),
    n(&["Quang"]),
    n(&["Văn", "Van"]),
];
static VIETNAMESE_FEMALE: &[NameSpec] = &[
    n(&["Lan"]),
    n(&["Thu"]),
    n(&["Hương", "Huong"]),
    n(&["Linh"]),
    n(&["Thị", "Thi"]),
];

static INDIAN_SURNAMES: &[NameSpec] = &[
    n(&["Sharma"]),
    n(&["Patel"]),
    n(&["Singh"]),
    n(&["Kumar"]),
    n(&["Gupta"]),
    n(&["Reddy"]),
    n(&["Iyer"]),
];
static INDIAN_MALE: &[NameSpec] = &[
    n(&["Rahul"]),
    n(&["Amit"]),
    n(&["Arjun"]),
    n(&["Vikram"]),
    n(&["Sanjay"]),
];
static INDIAN_FEMALE: &[NameSpec] = &[
    n(&["Priya"]),
    n(&["Anjali"]),
    n(&["Deepika"]),
    n(&["Kavya"]),
    n(&["Sunita"]),
];

static WEST_AFRICAN_SURNAMES: &[NameSpec] = &[
    n(&["Okafor"]),
    n(&["Adeyemi"]),
    n(&["Okonkwo"]),
    n(&["Mensah"]),
    n(&["Diallo"]),
    n(&["Ndiaye"]),
];
static WEST_AFRICAN_MALE: &[NameSpec] = &[
    n(&["Chinedu"]),
    n(&["Oluwaseun"]),
    n(&["Kwame"]),
    n(&["Mamadou"]),
    n(&["Ibrahima"]),
];
static WEST_AFRICAN_FEMALE: &[NameSpec] = &[
    n(&["Ngozi"]),
    n(&["Adaeze"]),
    n(&["Ama"]),
    n(&["Aminata"]),
    n(&["Fatou"]),
];

static ORIGINS: &[Origin] = &[
    Origin {
        weight: 12.0,
        nationalities: &["TUR"],
        places: &["Izmir", "Ankara", "Istanbul", "Bursa", "Konya"],
        surnames_male: TURKISH_SURNAMES,
        surnames_female: TURKISH_SURNAMES,
        given_male: TURKISH_MALE,
        given_female: TURKISH_FEMALE,
        second_given_name: 0.2,
    },
    Origin {
        weight: 10.0,
        nationalities: &["RUS"],
        places: &["Moskva", "Sankt-Peterburg", "Kazan", "Novosibirsk"],
        surnames_male: RUSSIAN_SURNAMES_MALE,
        surnames_female: RUSSIAN_SURNAMES_FEMALE,
        given_male: RUSSIAN_MALE,
        given_female: RUSSIAN_FEMALE,
        second_given_name: 0.0,
    },
    Origin {
        weight: 6.0,
        nationalities: &["UKR"],
        places: &["Kyiv", "Lviv", "Kharkiv", "Odesa", "Dnipro"],
        surnames_male: UKRAINIAN_SURNAMES,
        surnames_female: UKRAINIAN_SURNAMES,
        given_male: UKRAINIAN_MALE,
        given_female: UKRAINIAN_FEMALE,
        second_given_name: 0.0,
    },
    Origin {
        weight: 3.0,
        nationalities: &["SRB"],
        places: &["Beograd", "Novi Sad", "Niš", "Kragujevac"],
        surnames_male: SERBIAN_SURNAMES,
        surnames_female: SERBIAN_SURNAMES,
        given_male: SERBIAN_MALE,
        given_female: SERBIAN_FEMALE,
        second_given_name: 0.0,
    },
    Origin {
        weight: 14.0,
        nationalities: &[
            "USA", "GBR", "CAN", "AUS", "CHE", "NOR", "ISL", "ARG", "MEX", "BRA",
        ],
        places: &[
            "New York",
            "London",
            "Toronto",
            "Zürich",
            "Oslo",
            "Buenos Aires",
            "São Paulo",
        ],
        surnames_male: WESTERN_SURNAMES,
        surnames_female: WESTERN_SURNAMES,
        given_male: WESTERN_MALE,
        given_female: WESTERN_FEMALE,
        second_given_name: 0.4,
    },
    Origin {
        weight: 12.0,
        nationalities: &["MAR", "DZA", "TUN", "EGY", "SYR", "IRQ", "JOR", "XXA"],
        places: &[
            "Casablanca",
            "Alger",
            "Tunis",
            "Cairo",
            "Damascus",
            "Aleppo",
            "Baghdad",
        ],
        surnames_male: ARABIC_SURNAMES,
        surnames_female: ARABIC_SURNAMES,
        given_male: ARABIC_MALE,
        given_female: ARABIC_FEMALE,
        second_given_name: 0.15,
    },
    Origin {
        weight: 4.0,
        nationalities: &["ALB", "MKD"],
        places: &["Tirana", "Durrës", "Shkodër", "Skopje"],
        surnames_male: ALBANIAN_SURNAMES,
        surnames_female: ALBANIAN_SURNAMES,
        given_male: ALBANIAN_MALE,
        given_female: ALBANIAN_FEMALE,
        second_given_name: 0.1,
    },
    Origin {
        weight: 8.0,
        nationalities: &["CHN"],
        places: &["Beijing", "Shanghai", "Guangzhou", "Chengdu"],
        surnames_male: CHINESE_SURNAMES,
        surnames_female: CHINESE_SURNAMES,
        given_male: CHINESE_MALE,
        given_female: CHINESE_FEMALE,
        second_given_name: 0.0,
    },
    Origin {
        weight: 4.0,
        nationalities: &["VNM"],
        places: &["Hà Nội", "Hồ Chí Minh", "Hải Phòng", "Đà Nẵng"],
        surnames_male: VIETNAMESE_SURNAMES,
        surnames_female: VIETNAMESE_SURNAMES,
        given_male: VIETNAMESE_MALE,
        given_female: VIETNAMESE_FEMALE,
        second_given_name: 0.5,
    },
    Origin {
        weight: 8.0,
        nationalities: &["IND"],
        places: &["Mumbai", "Delhi", "Bengaluru", "Chennai", "Kolkata"],
        surnames_male: INDIAN_SURNAMES,
        surnames_female: INDIAN_SURNAMES,
        given_male: INDIAN_MALE,
        given_female: INDIAN_FEMALE,
        second_given_name: 0.1,
    },
    Origin {
        weight: 5.0,
        nationalities: &["NGA", "GHA", "SEN"],
        places: &["Lagos", "Abuja", "Accra", "Dakar"],
        surnames_male: WEST_AFRICAN_SURNAMES,
        surnames_female: WEST_AFRICAN_SURNAMES,
        given_male: WEST_AFRICAN_MALE,
        given_female: WEST_AFRICAN_FEMALE,
        second_given_name: 0.2,
    },
];

/// Member states (alpha-2) that create records.
const MEMBER_STATES: [&str; 15] = [
    "DE", "FR", "IT", "ES", "NL", "BE", "PL", "AT", "SE", "GR", "PT", "CZ", "HU", "FI", "HR",
];
/// Border crossing points, each in a member state above.
const BORDER_CROSSING_POINTS: [&str; 8] = [
    "DE-FRA-T1",
    "FR-CDG-T2",
    "ES-MAD-T4",
    "IT-FCO-T3",
    "PL-WAW-T1",
    "GR-ATH-T1",
    "HR-BAJ-R",
    "FI-VAA-R",
];
const SIS_CATEGORIES: [(&str, f64); 4] = [
    ("refusal_of_entry", 0.40),
    ("discreet_check", 0.25),
    ("arrest", 0.20),
    ("missing", 0.15),
];

// ---------------------------------------------------------------------------------------
// Identities and their appearances
// ---------------------------------------------------------------------------------------

/// A person's sex as the source systems write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
    Unspecified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BirthDate {
    year: u16,
    /// `None` for persons whose day and month were never known.
    month_day: Option<(u8, u8)>,
}

/// Who a person is on paper: the identity every appearance derives from.
#[derive(Debug, Clone)]
struct Identity {
    surname: &'static NameSpec,
    given: Vec<&'static NameSpec>,
    sex: Sex,
    birth: BirthDate,
    nationality: &'static str,
    place_of_birth: &'static str,
    passport: String,
    passport_expiry: String,
}

/// How far a record may stray from the identity it is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variation {
    /// Everything records of one person differ in: spelling, typos, name order, partial or
    /// swapped dates, document formatting and renewal.
    Full,
    /// Only the writing of the same data: case, script, transliteration.
    SpellingOnly,
}

impl Identity {
    /// A new identity; with `unlike`, one sharing neither surname nor date of birth with it
    /// (a fraudster's second identity keeps only the sex).
    fn random(rng: &mut Prng, unlike: Option<&Identity>) -> Self {
        let sex = match unlike {
            Some(other) => other.sex,
            None if rng.random_bool(0.5) => Sex::Female,
            None => Sex::Male,
        };
        let weights: Vec<f64> = ORIGINS.iter().map(|o| o.weight).collect();
        let origin = &ORIGINS[weighted_index(rng, &weights)];
        let mut identity = Self::from_origin(rng, origin, sex);
        if let Some(other) = unlike {
            // A few draws suffice: the lists are long enough that a clash is rare.
            for _ in 0..8 {
                if identity.surname.canonical() != other.surname.canonical()
                    && identity.birth != other.birth
                {
                    break;
                }
                let origin = &ORIGINS[weighted_index(rng, &weights)];
                identity = Self::from_origin(rng, origin, sex);
            }
        }
        identity
    }

    fn from_origin(rng: &mut Prng, origin: &'static Origin, sex: Sex) -> Self {
        let (surnames, given_names) = match sex {
            Sex::Female => (origin.surnames_female, origin.given_female),
            Sex::Male | Sex::Unspecified => (origin.surnames_male, origin.given_male),
        };
        let first = pick(rng, given_names);
        let mut given = vec![first];
        if rng.random_bool(origin.second_given_name) {
            let second = pick(rng, given_names);
            if second.canonical() != first.canonical() {
                given.push(second);
            }
        }
        let year = rng.random_range(1950..=2014);
        let month_day = (!rng.random_bool(YEAR_ONLY_PERSON_RATE)).then(|| {
            let month = rng.random_range(1..=12);
            (month, rng.random_range(1..=days_in_month(year, month)))
        });
        Self {
            surname: pick(rng, surnames),
            given,
            sex,
            birth: BirthDate { year, month_day },
            nationality: *pick(rng, origin.nationalities),
            place_of_birth: *pick(rng, origin.places),
            passport: passport_number(rng),
            passport_expiry: expiry_date(rng),
        }
    }

    /// Another person with the same name, date of birth, sex and nationality, holding a
    /// passport of their own.
    fn look_alike(&self, rng: &mut Prng) -> Self {
        let mut passport = passport_number(rng);
        while passport == self.passport {
            passport = passport_number(rng);
        }
        Self {
            passport,
            passport_expiry: expiry_date(rng),
            ..self.clone()
        }
    }

    /// The identity as one system wrote it down.
    fn appearance(&self, rng: &mut Prng, system: SourceSystem, variation: Variation) -> Written {
        let full = variation == Variation::Full;
        let cyrillic = self.surname.cyrillic.is_some()
            && self.given.iter().all(|g| g.cyrillic.is_some())
            && rng.random_bool(CYRILLIC_SCRIPT_RATE);
        let spell = |rng: &mut Prng, name: &NameSpec| -> String {
            match name.cyrillic {
                Some(cyr) if cyrillic => cyr.to_owned(),
                _ => latin_spelling(rng, name).to_owned(),
            }
        };
        let mut surname = spell(rng, self.surname);
        let mut given: Vec<String> = self.given.iter().map(|g| spell(rng, g)).collect();
        if full && !cyrillic && rng.random_bool(TYPO_RATE) {
            surname = typo(rng, &surname);
        }
        if full && given.len() > 1 && rng.random_bool(GIVEN_NAME_SWAP_RATE) {
            given.reverse();
        }
        // Authorities write names in capitals more or less often; ETIAS forms mostly do.
        let upper_rate = match system {
            SourceSystem::Etias => 0.8,
            SourceSystem::Sis => 0.5,
            _ => 0.3,
        };
        let upper = rng.random_bool(upper_rate);
        let case = |name: String| if upper { name.to_uppercase() } else { name };
        let alias_rate = match system {
            SourceSystem::Sis => 0.15,
            SourceSystem::EcrisTcn => 0.10,
            SourceSystem::Etias => 0.05,
            SourceSystem::Ees | SourceSystem::Vis => 0.0,
        };
        let alias = rng
            .random_bool(alias_rate)
            .then(|| alias_spelling(rng, self.surname));
        let sex = if full && rng.random_bool(SEX_UNSPECIFIED_RATE) {
            Sex::Unspecified
        } else {
            self.sex
        };
        Written {
            surname: case(surname),
            given: given.into_iter().map(case).collect(),
            alias: alias.map(case),
            date_of_birth: self.written_birth_date(rng, full),
            sex,
            nationality: self.nationality,
            place_of_birth: self.place_of_birth,
            document: self.written_document(rng, system, full),
        }
    }

    fn written_birth_date(&self, rng: &mut Prng, full: bool) -> String {
        let year = self.birth.year;
        let Some((month, day)) = self.birth.month_day else {
            return format!("{year:04}");
        };
        if !full {
            return format!("{year:04}-{month:02}-{day:02}");
        }
        let roll = rng.random::<f64>();
        if roll < YEAR_MONTH_RATE {
            format!("{year:04}-{month:02}")
        } else if roll < YEAR_MONTH_RATE + YEAR_ONLY_RATE {
            format!("{year:04}")
        } else if roll < YEAR_MONTH_RATE + YEAR_ONLY_RATE + DAY_MONTH_SWAP_RATE
            && day <= 12
            && day != month
        {
            // Swapped, the month (≤ 12) becomes a day that every month has.
            format!("{year:04}-{day:02}-{month:02}")
        } else {
            format!("{year:04}-{month:02}-{day:02}")
        }
    }

    fn written_document(
        &self,
        rng: &mut Prng,
        system: SourceSystem,
        full: bool,
    ) -> Option<Document> {
        let law_enforcement = matches!(system, SourceSystem::Sis | SourceSystem::EcrisTcn);
        if full && law_enforcement && rng.random_bool(LAW_ENFORCEMENT_NO_DOCUMENT_RATE) {
            return None;
        }
        let roll = if full { rng.random::<f64>() } else { 1.0 };
        let (number, expiry) = if roll < DOCUMENT_FORMATTED_RATE {
            (
                formatted_number(rng, &self.passport),
                self.passport_expiry.clone(),
            )
        } else if roll < DOCUMENT_FORMATTED_RATE + DOCUMENT_RENEWED_RATE {
            let mut renewed = passport_number(rng);
            while renewed == self.passport {
                renewed = passport_number(rng);
            }
            (renewed, expiry_date(rng))
        } else {
            (self.passport.clone(), self.passport_expiry.clone())
        };
        Some(Document {
            number,
            country: self.nationality,
            expiry,
        })
    }
}

/// The canonical Latin spelling mostly, another transliteration sometimes.
fn latin_spelling(rng: &mut Prng, name: &NameSpec) -> &'static str {
    match name.latin.split_first() {
        Some((_, others)) if !others.is_empty() && rng.random_bool(LATIN_VARIANT_RATE) => {
            others[rng.random_range(0..others.len())]
        }
        Some((canonical, _)) => canonical,
        None => "",
    }
}

/// An alias as police records carry them: the surname in another spelling.
fn alias_spelling(rng: &mut Prng, name: &NameSpec) -> String {
    match name.latin.split_first() {
        Some((_, others)) if !others.is_empty() => (*pick(rng, others)).to_owned(),
        _ => typo(rng, name.canonical()),
    }
}

/// One keyboard or hearing slip (`Smith` → `Smieth`): an inserted, dropped, replaced or
/// swapped letter, never the first, so the name stays recognisable.
fn typo(rng: &mut Prng, name: &str) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    let letters = chars.iter().filter(|c| c.is_alphabetic()).count();
    if letters < 4 {
        return name.to_owned();
    }
    const VOWELS: [char; 5] = ['a', 'e', 'i', 'o', 'u'];
    let at = rng.random_range(1..chars.len());
    match rng.random_range(0..4) {
        0 => chars.insert(at, *pick(rng, &VOWELS)),
        1 if chars.len() > 4 => {
            chars.remove(at);
        }
        2 if at + 1 < chars.len() && chars[at] != chars[at + 1] => chars.swap(at, at + 1),
        _ => {
            let replacement = VOWELS
                .iter()
                .copied()
                .find(|v| *v != chars[at].to_ascii_lowercase())
                .unwrap_or('e');
            chars[at] = replacement;
        }
    }
    chars.into_iter().collect()
}

/// A passport number: one letter and eight digits, or two letters and seven.
fn passport_number(rng: &mut Prng) -> String {
    // No I, O or Q: issuers avoid letters that read as digits.
    const LETTERS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";
    let letters = if rng.random_bool(0.5) { 1 } else { 2 };
    let mut number = String::with_capacity(9);
    for _ in 0..letters {
        number.push(char::from(*pick(rng, LETTERS)));
    }
    for _ in letters..9 {
        number.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    number
}

/// The same number as an officer typed it: lower case or grouped with spaces.
fn formatted_number(rng: &mut Prng, number: &str) -> String {
    if rng.random_bool(0.5) {
        number.to_lowercase()
    } else {
        let chars: Vec<char> = number.chars().collect();
        chars
            .chunks(3)
            .map(|chunk| chunk.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn expiry_date(rng: &mut Prng) -> String {
    let year = rng.random_range(2026..=2036);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=days_in_month(year, month));
    format!("{year:04}-{month:02}-{day:02}")
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An identity as written in one record.
#[derive(Debug, Clone)]
struct Written {
    surname: String,
    given: Vec<String>,
    /// A surname alias (SIS, ETIAS) or pseudonym (ECRIS-TCN).
    alias: Option<String>,
    date_of_birth: String,
    sex: Sex,
    nationality: &'static str,
    place_of_birth: &'static str,
    document: Option<Document>,
}

#[derive(Debug, Clone)]
struct Document {
    number: String,
    country: &'static str,
    expiry: String,
}

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

/// A record decided but not yet rendered: vectors are made while writing, so a large
/// population never holds them all in memory.
#[derive(Debug)]
struct Planned {
    system: SourceSystem,
    person: u64,
    /// Which of the person's records this is; the captures' noise derives from it.
    appearance: u64,
    /// Assigned once the file order is known.
    source_id: String,
    member_state: &'static str,
    written: Written,
    /// Face, then the [`FINGERS`] in order.
    qualities: [u8; 3],
}

impl Planned {
    fn new(
        rng: &mut Prng,
        person: u64,
        appearance: u64,
        system: SourceSystem,
        written: Written,
    ) -> Self {
        let mut qualities = [0; 3];
        for (quality, trait_) in qualities.iter_mut().zip(record_traits()) {
            *quality = capture_quality(rng, trait_);
        }
        Self {
            system,
            person,
            appearance,
            source_id: String::new(),
            member_state: *pick(rng, &MEMBER_STATES),
            written,
            qualities,
        }
    }

    fn traits(&self) -> impl Iterator<Item = Trait> + use<> {
        record_traits()
    }

    /// Each template a new capture of the person's own traits.
    fn templates(&self, seed: u64) -> Vec<Template> {
        if !self.system.has_biometrics() {
            return Vec::new();
        }
        self.traits()
            .zip(self.qualities)
            .map(|(trait_, quality)| {
                let base = base_vector(seed, self.person, trait_);
                let vector = new_capture(
                    &base,
                    capture_seed(seed, self.person, self.appearance, trait_),
                );
                Template {
                    trait_,
                    quality,
                    data: vector_base64::encode(&vector),
                }
            })
            .collect()
    }

    fn render(&self, seed: u64) -> Rendered {
        // Cosmetic details (events, timestamps, optional fields) from their own stream, so
        // they never shift the choices that matter.
        let mut rng = Prng::seed_from_u64(derive_seed(&[
            DOMAIN_DETAIL,
            seed,
            self.person,
            self.appearance,
        ]));
        let templates = self.templates(seed);
        let body = match self.system {
            SourceSystem::Ees => Body::Json(with_biometrics(&self.ees(&mut rng), &templates)),
            SourceSystem::Etias => Body::Json(self.etias(&mut rng).to_string()),
            SourceSystem::Vis => Body::Xml(self.vis(&mut rng, &templates)),
            SourceSystem::Sis => Body::Json(with_biometrics(&self.sis(&mut rng), &templates)),
            SourceSystem::EcrisTcn => Body::Xml(self.ecris_tcn(&mut rng, &templates)),
        };
        Rendered {
            system: self.system,
            body,
        }
    }

    /// Who the record is about, as it writes them.
    fn person(&self) -> WrittenPerson<'_> {
        let w = &self.written;
        WrittenPerson {
            surname: &w.surname,
            given: &w.given,
            date_of_birth: &w.date_of_birth,
            sex: w.sex,
            nationality: w.nationality,
            document: w.document.as_ref().map(|document| WrittenDocument {
                number: &document.number,
                country: document.country,
                expiry: Some(&document.expiry),
            }),
        }
    }

    /// The EES file without its biometrics, which [`with_biometrics`] adds.
    fn ees(&self, rng: &mut Prng) -> Value {
        let mut root = ees_file(&self.source_id, self.member_state, &self.person());
        if rng.random_bool(0.5)
            && let Some(Value::Object(traveller)) = root.get_mut("traveller")
        {
            traveller.insert("place_of_birth".into(), json!(self.written.place_of_birth));
        }
        let events: Vec<Value> = (0..rng.random_range(1..=3))
            .map(|i| {
                // A stay alternates entries and exits, starting with an entry.
                let kind = if i % 2 == 0 { "entry" } else { "exit" };
                json!({
                    "kind": kind,
                    "bcp": pick(rng, &BORDER_CROSSING_POINTS),
                    "at": timestamp(rng, 2025..=2026),
                })
            })
            .collect();
        root.insert("events".into(), Value::Array(events));
        Value::Object(root)
    }

    fn etias(&self, rng: &mut Prng) -> Value {
        let w = &self.written;
        let sex = match w.sex {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Unspecified => "other",
        };
        let other_names: Vec<Value> = w
            .alias
            .iter()
            .map(|alias| json!({ "family_name": alias, "first_names": w.given }))
            .collect();
        let mut applicant = Map::new();
        applicant.insert("family_name".into(), json!(w.surname));
        applicant.insert("first_names".into(), json!(w.given));
        applicant.insert("birth_date".into(), json!(w.date_of_birth));
        if rng.random_bool(0.9) {
            applicant.insert("birth_place".into(), json!(w.place_of_birth.to_uppercase()));
            applicant.insert("birth_country".into(), json!(w.nationality));
        }
        applicant.insert("sex".into(), json!(sex));
        applicant.insert("nationalities".into(), json!([w.nationality]));
        applicant.insert("other_names".into(), Value::Array(other_names));
        let mut root = Map::new();
        root.insert("application_number".into(), json!(self.source_id));
        root.insert("revision".into(), json!(1));
        root.insert("status".into(), json!("issued"));
        root.insert("applicant".into(), Value::Object(applicant));
        if let Some(document) = &w.document {
            root.insert(
                "document".into(),
                json!({
                    "type": "passport",
                    "number": document.number,
                    "country": document.country,
                    "expiry_date": document.expiry,
                }),
            );
        }
        root.insert("submitted_at".into(), json!(timestamp(rng, 2025..=2026)));
        Value::Object(root)
    }

    /// The SIS alert without its biometrics, which [`with_biometrics`] adds.
    fn sis(&self, rng: &mut Prng) -> Value {
        let w = &self.written;
        let aliases: Vec<Value> = w
            .alias
            .iter()
            .map(|alias| json!({ "surnames": surname_parts(alias), "forenames": w.given }))
            .collect();
        let weights: Vec<f64> = SIS_CATEGORIES.iter().map(|(_, w)| *w).collect();
        let category = SIS_CATEGORIES[weighted_index(rng, &weights)].0;
        let mut alert = sis_alert(
            &self.source_id,
            self.member_state,
            category,
            &self.person(),
            &aliases,
        );
        alert.insert("expires_at".into(), json!(timestamp(rng, 2027..=2031)));
        Value::Object(alert)
    }

    fn vis(&self, rng: &mut Prng, templates: &[Template]) -> Vec<Piece> {
        let w = &self.written;
        let sex = match w.sex {
            Sex::Female => "F",
            Sex::Male => "M",
            Sex::Unspecified => "X",
        };
        let mut xml = XmlPieces::default();
        xml.text("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        xml.text(&format!(
            "<VisaApplication xmlns=\"urn:interop-hub:vis:1\" number=\"{}\" version=\"1\" state=\"{}\">\n",
            escape(&self.source_id),
            self.member_state
        ));
        xml.text("  <Applicant>\n");
        xml.text(&format!("    <Surname>{}</Surname>\n", escape(&w.surname)));
        xml.text(&format!(
            "    <FirstNames>{}</FirstNames>\n",
            escape(&w.given.join(" "))
        ));
        xml.text(&format!(
            "    <DateOfBirth>{}</DateOfBirth>\n",
            w.date_of_birth
        ));
        if rng.random_bool(0.5) {
            xml.text(&format!(
                "    <PlaceOfBirth country=\"{}\">{}</PlaceOfBirth>\n",
                w.nationality,
                escape(w.place_of_birth)
            ));
        }
        xml.text(&format!("    <Sex>{sex}</Sex>\n"));
        xml.text(&format!(
            "    <Nationality>{}</Nationality>\n",
            w.nationality
        ));
        xml.text("  </Applicant>\n");
        if let Some(document) = &w.document {
            xml.text(&format!(
                "  <TravelDocument type=\"P\" number=\"{}\" issuer=\"{}\" expires=\"{}\"/>\n",
                escape(&document.number),
                document.country,
                document.expiry
            ));
        }
        xml.text("  <Biometrics>\n");
        for template in templates {
            xml.template(template, "    ", "Face");
        }
        xml.text("  </Biometrics>\n");
        xml.text("</VisaApplication>\n");
        xml.finish()
    }

    fn ecris_tcn(&self, rng: &mut Prng, templates: &[Template]) -> Vec<Piece> {
        let w = &self.written;
        let sex = match w.sex {
            Sex::Female => "F",
            Sex::Male => "M",
            Sex::Unspecified => "U",
        };
        let mut xml = XmlPieces::default();
        xml.text("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        xml.text(&format!(
            "<ConvictedPerson xmlns=\"urn:interop-hub:ecris-tcn:1\" recordId=\"{}\" version=\"1\" convictingState=\"{}\">\n",
            escape(&self.source_id),
            self.member_state
        ));
        xml.text("  <Identity>\n");
        xml.text(&format!("    <Surname>{}</Surname>\n", escape(&w.surname)));
        xml.text(&format!(
            "    <Forename>{}</Forename>\n",
            escape(&w.given.join(" "))
        ));
        xml.text(&format!("    <BirthDate>{}</BirthDate>\n", w.date_of_birth));
        if rng.random_bool(0.6) {
            xml.text(&format!(
                "    <BirthPlace country=\"{}\">{}</BirthPlace>\n",
                w.nationality,
                escape(w.place_of_birth)
            ));
        }
        xml.text(&format!("    <Gender>{sex}</Gender>\n"));
        xml.text(&format!(
            "    <Nationality>{}</Nationality>\n",
            w.nationality
        ));
        if let Some(alias) = &w.alias {
            xml.text(&format!("    <Pseudonym>{}</Pseudonym>\n", escape(alias)));
        }
        xml.text("  </Identity>\n");
        if let Some(document) = &w.document {
            xml.text(&format!(
                "  <IdentityDocument type=\"P\" number=\"{}\" country=\"{}\"/>\n",
                escape(&document.number),
                document.country
            ));
        }
        xml.text("  <Fingerprints>\n");
        for template in templates.iter().filter(|t| t.trait_ != Trait::Face) {
            xml.template(template, "    ", "FacialImage");
        }
        xml.text("  </Fingerprints>\n");
        for template in templates.iter().filter(|t| t.trait_ == Trait::Face) {
            xml.template(template, "  ", "FacialImage");
        }
        xml.text("</ConvictedPerson>\n");
        xml.finish()
    }
}

/// The traits every biometric record carries, in the order of [`Planned::qualities`].
fn record_traits() -> impl Iterator<Item = Trait> {
    std::iter::once(Trait::Face).chain(FINGERS.into_iter().map(Trait::Finger))
}

/// Mostly good captures (60–95); a few poor ones just above the minimum; ~3% below it,
/// which the hub must store but keep out of its index.
fn capture_quality(rng: &mut Prng, trait_: Trait) -> u8 {
    let minimum = minimum_quality(trait_);
    let roll = rng.random::<f64>();
    if roll < BELOW_MINIMUM_QUALITY_RATE {
        rng.random_range(minimum / 2..minimum)
    } else if roll < BELOW_MINIMUM_QUALITY_RATE + 0.07 {
        rng.random_range(minimum..60)
    } else {
        rng.random_range(60..=95)
    }
}

/// A template as a native record carries it.
#[derive(Debug)]
pub struct Template {
    trait_: Trait,
    quality: u8,
    /// Base64 of the little-endian float32 vector.
    data: String,
}

impl Template {
    pub fn new(trait_: Trait, quality: u8, vector: &[f32]) -> Self {
        Self {
            trait_,
            quality,
            data: vector_base64::encode(vector),
        }
    }
}

/// Who a native EES file or SIS alert is about, as it writes them: the part of the record
/// the generator and the bench write alike.
#[derive(Debug, Clone)]
pub struct WrittenPerson<'a> {
    pub surname: &'a str,
    pub given: &'a [String],
    pub date_of_birth: &'a str,
    pub sex: Sex,
    pub nationality: &'a str,
    pub document: Option<WrittenDocument<'a>>,
}

/// A passport as a native record writes it.
#[derive(Debug, Clone)]
pub struct WrittenDocument<'a> {
    pub number: &'a str,
    pub country: &'a str,
    /// EES keeps it; SIS does not.
    pub expiry: Option<&'a str>,
}

/// An EES file about `person`, without its events and biometrics ([`with_biometrics`]).
pub fn ees_file(
    file_id: &str,
    member_state: &str,
    person: &WrittenPerson<'_>,
) -> Map<String, Value> {
    let mut traveller = Map::new();
    traveller.insert("surname".into(), json!(person.surname));
    traveller.insert("given_names".into(), json!(person.given.join(" ")));
    traveller.insert("date_of_birth".into(), json!(person.date_of_birth));
    let sex = match person.sex {
        Sex::Female => "F",
        Sex::Male => "M",
        Sex::Unspecified => "U",
    };
    traveller.insert("sex".into(), json!(sex));
    traveller.insert("nationality".into(), json!(person.nationality));
    let mut root = Map::new();
    root.insert("file_id".into(), json!(file_id));
    root.insert("version".into(), json!(1));
    root.insert("member_state".into(), json!(member_state));
    root.insert("traveller".into(), Value::Object(traveller));
    if let Some(document) = &person.document {
        let mut written = Map::new();
        written.insert("type".into(), json!("P"));
        written.insert("number".into(), json!(document.number));
        written.insert("issuing_country".into(), json!(document.country));
        if let Some(expiry) = document.expiry {
            written.insert("expiry".into(), json!(expiry));
        }
        root.insert("travel_document".into(), Value::Object(written));
    }
    root
}

/// A SIS alert about `person`, without its biometrics ([`with_biometrics`]).
pub fn sis_alert(
    alert_id: &str,
    issuing_state: &str,
    category: &str,
    person: &WrittenPerson<'_>,
    aliases: &[Value],
) -> Map<String, Value> {
    let sex = match person.sex {
        Sex::Female => "female",
        Sex::Male => "male",
        Sex::Unspecified => "unknown",
    };
    let documents: Vec<Value> = person
        .document
        .iter()
        .map(|document| {
            json!({
                "type": "passport",
                "number": document.number,
                "country": document.country,
            })
        })
        .collect();
    let alert = json!({
        "alert_id": alert_id,
        "version": 1,
        "issuing_state": issuing_state,
        "category": category,
        "person": {
            // SIS keeps surnames as a list: compound surnames arrive in parts.
            "surnames": surname_parts(person.surname),
            "forenames": person.given,
            "dob": person.date_of_birth,
            "gender": sex,
            "nationalities": [person.nationality],
            "aliases": aliases,
        },
        "documents": documents,
    });
    match alert {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A surname as SIS lists it: in its parts.
fn surname_parts(surname: &str) -> Vec<String> {
    surname.split_whitespace().map(str::to_owned).collect()
}

/// The JSON text of `record` (an object) with a `biometrics` array of `templates` (EES, SIS).
///
/// The templates are spliced in as text rather than serialised: base64 never needs JSON
/// escaping, and serde_json's byte-by-byte escaping of ~10 kB of base64 per record, compiled
/// unoptimised into this crate in debug builds, dominated the generation time.
pub fn with_biometrics(record: &Value, templates: &[Template]) -> String {
    let text = record.to_string();
    let Some(open) = text.strip_suffix('}') else {
        return text;
    };
    let entries: Vec<String> = templates.iter().map(json_template).collect();
    let separator = if open.ends_with('{') { "" } else { "," };
    format!("{open}{separator}\"biometrics\":[{}]}}", entries.join(","))
}

fn json_template(template: &Template) -> String {
    match template.trait_ {
        Trait::Face => format!(
            "{{\"modality\":\"face\",\"algorithm\":\"{FACE_ALGORITHM}\",\"quality\":{},\"data\":\"{}\"}}",
            template.quality, template.data
        ),
        Trait::Finger(position) => format!(
            "{{\"modality\":\"finger\",\"position\":\"{}\",\"algorithm\":\"{FINGER_ALGORITHM}\",\"quality\":{},\"data\":\"{}\"}}",
            position.as_str(),
            template.quality,
            template.data
        ),
    }
}

/// An XML document built in pieces, its base64 apart from the markup so that writing it as a
/// JSON string escapes only the markup (see [`with_biometrics`] for why).
#[derive(Debug, Default)]
struct XmlPieces {
    pieces: Vec<Piece>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Markup and character data, to be escaped in a JSON string.
    Text(String),
    /// Base64: safe in a JSON string as it is.
    Base64(String),
}

impl XmlPieces {
    fn text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn base64(&mut self, data: &str) {
        if !self.text.is_empty() {
            self.pieces
                .push(Piece::Text(std::mem::take(&mut self.text)));
        }
        self.pieces.push(Piece::Base64(data.to_owned()));
    }

    /// A template element of VIS or ECRIS-TCN; faces are `<Face>` in one, `<FacialImage>`
    /// in the other.
    fn template(&mut self, template: &Template, indent: &str, face_element: &str) {
        let element = match template.trait_ {
            Trait::Face => {
                self.text(&format!(
                    "{indent}<{face_element} algorithm=\"{FACE_ALGORITHM}\" quality=\"{}\">",
                    template.quality
                ));
                face_element
            }
            Trait::Finger(position) => {
                self.text(&format!(
                    "{indent}<Finger position=\"{}\" algorithm=\"{FINGER_ALGORITHM}\" quality=\"{}\">",
                    position.xml_name(),
                    template.quality
                ));
                "Finger"
            }
        };
        self.base64(&template.data);
        self.text(&format!("</{element}>\n"));
    }

    fn finish(mut self) -> Vec<Piece> {
        if !self.text.is_empty() {
            self.pieces.push(Piece::Text(self.text));
        }
        self.pieces
    }
}

/// XML character data or attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Appends `text` as the inside of a JSON string literal.
fn push_json_escaped(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
}

/// An RFC 3339 UTC timestamp in the given years.
fn timestamp(rng: &mut Prng, years: std::ops::RangeInclusive<u16>) -> String {
    let year = rng.random_range(years);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=days_in_month(year, month));
    let hour = rng.random_range(0..24);
    let minute = rng.random_range(0..60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:00Z")
}

/// A rendered record.
#[derive(Debug)]
struct Rendered {
    system: SourceSystem,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// The JSON text of the native record.
    Json(String),
    /// The XML document, in pieces.
    Xml(Vec<Piece>),
}

impl Rendered {
    /// The line `interop-hub import` reads: `{system, content_type, body}`, the body a JSON
    /// value for JSON systems and the document text for XML ones.
    fn import_line(&self) -> String {
        let mut line = String::with_capacity(16 * 1024);
        line.push_str("{\"system\":\"");
        line.push_str(self.system.as_str());
        line.push_str("\",\"content_type\":\"");
        line.push_str(self.system.native_format().media_type());
        line.push_str("\",\"body\":");
        match &self.body {
            Body::Json(text) => line.push_str(text),
            Body::Xml(pieces) => {
                line.push('"');
                for piece in pieces {
                    match piece {
                        Piece::Text(text) => push_json_escaped(&mut line, text),
                        Piece::Base64(data) => line.push_str(data),
                    }
                }
                line.push('"');
            }
        }
        line.push('}');
        line
    }
}

/// Renders `records` into import lines on up to `workers` threads, in order.
fn render_lines(records: &[Planned], seed: u64, workers: usize) -> Vec<String> {
    let render = |record: &Planned| record.render(seed).import_line();
    if workers <= 1 || records.len() < 2 {
        return records.iter().map(render).collect();
    }
    let share = records.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(share)
            .map(|part| scope.spawn(move || part.iter().map(render).collect::<Vec<String>>()))
            .collect();
        handles
            .into_iter()
            // A worker can only fail by panicking; carry the panic on rather than hide it.
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use connectors::{AlgorithmRegistry, IdentityRecord, Modality, SourceSystem};

    use super::*;

    const SEED: u64 = 7;

    /// Every record of a population of `persons`, parsed by its connector, with the truth.
    fn parsed(persons: u64, seed: u64) -> (Vec<IdentityRecord>, Truth) {
        let population = Population::plan(persons, seed);
        let registry = AlgorithmRegistry::default();
        let records = population
            .records
            .iter()
            .map(|planned| {
                let line: Value = serde_json::from_str(&planned.render(seed).import_line())
                    .expect("an import line is JSON");
                let system: SourceSystem = line["system"].as_str().unwrap().parse().unwrap();
                let body = match &line["body"] {
                    Value::String(text) => text.clone().into_bytes(),
                    other => serde_json::to_vec(other).unwrap(),
                };
                match connectors::parse(system, &body, &registry) {
                    Ok(accepted) => accepted.record,
                    Err(refusal) => panic!(
                        "{system} {} refused: {refusal:?}\n{}",
                        planned.source_id,
                        String::from_utf8_lossy(&body)
                    ),
                }
            })
            .collect();
        (records, population.truth(seed))
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "interop-hub-generate-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn every_record_is_accepted_by_its_connector_and_matches_the_truth() {
        let (records, truth) = parsed(300, SEED);
        assert_eq!(records.len(), truth.records.len());
        for (record, truth) in records.iter().zip(&truth.records) {
            assert_eq!(
                (record.system, &record.source_id),
                (truth.system, &truth.source_id)
            );
            assert_eq!(record.version, 1);
            let expected = if record.system.has_biometrics() { 3 } else { 0 };
            assert_eq!(record.templates.len(), expected, "{}", record.source_id);
        }
        let systems: HashSet<SourceSystem> = records.iter().map(|r| r.system).collect();
        assert_eq!(systems.len(), 5, "every system gets records");
    }

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        let dir_a = scratch_dir("det-a");
        let dir_b = scratch_dir("det-b");
        let dir_c = scratch_dir("det-c");
        for (dir, seed) in [(&dir_a, 11), (&dir_b, 11), (&dir_c, 12)] {
            let options = GenerateOptions {
                persons: 60,
                seed,
                out: dir.clone(),
            };
            generate(&options).unwrap();
        }
        let read = |dir: &PathBuf, file: &str| std::fs::read(dir.join(file)).unwrap();
        for file in ["records.ndjson", "truth.json"] {
            assert_eq!(read(&dir_a, file), read(&dir_b, file), "{file}");
            assert_ne!(read(&dir_a, file), read(&dir_c, file), "{file}");
        }
        for dir in [dir_a, dir_b, dir_c] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn the_files_are_import_lines_and_a_loadable_truth() {
        let dir = scratch_dir("files");
        let options = GenerateOptions {
            persons: 40,
            seed: SEED,
            out: dir.clone(),
        };
        let mut last = (0, 0);
        let summary =
            generate_with_progress(&options, &mut |done, total| last = (done, total)).unwrap();
        let truth = Truth::load(dir.join("truth.json")).unwrap();
        let text = std::fs::read_to_string(dir.join("records.ndjson")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), truth.records.len());
        assert_eq!(last, (summary.records, summary.records));
        assert_eq!(summary.records, lines.len() as u64);
        assert_eq!(truth.seed, SEED);
        assert_eq!(truth.persons, 40);
        for (line, record) in lines.iter().zip(&truth.records) {
            let object = line.as_object().unwrap();
            assert_eq!(object.len(), 3);
            assert_eq!(line["system"], record.system.as_str());
            assert_eq!(
                line["content_type"],
                record.system.native_format().media_type()
            );
            match record.system.native_format() {
                connectors::NativeFormat::Json => assert!(line["body"].is_object()),
                connectors::NativeFormat::Xml => assert!(line["body"].is_string()),
            }
        }
        let shown = summary.to_string();
        assert!(shown.contains("records for 40 persons"), "{shown}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_truth_covers_every_record_once_and_source_ids_are_unique() {
        let population = Population::plan(500, SEED);
        let truth = population.truth(SEED);
        let refs: HashSet<RecordRef> = truth.records.iter().map(TruthRecord::record_ref).collect();
        assert_eq!(refs.len(), truth.records.len(), "source ids repeat");
        for (a, b) in truth.fraud_pairs.iter().chain(&truth.look_alike_pairs) {
            assert!(refs.contains(a) && refs.contains(b));
        }
        // Most persons appear in more than one system.
        let mut systems_per_person: BTreeMap<u64, HashSet<SourceSystem>> = BTreeMap::new();
        for record in truth.records.iter().filter(|r| r.person < 500) {
            systems_per_person
                .entry(record.person)
                .or_default()
                .insert(record.system);
        }
        assert_eq!(systems_per_person.len(), 500);
        let several = systems_per_person.values().filter(|s| s.len() > 1).count();
        assert!(several > 350, "{several} of 500 persons in several systems");
        assert!(systems_per_person.values().all(|s| s.len() <= 5));
    }

    #[test]
    fn same_person_pairs_are_normalised_and_across_systems() {
        let truth = Population::plan(200, SEED).truth(SEED);
        let pairs = truth.same_person_pairs_across_systems();
        assert!(pairs.len() > 150, "{}", pairs.len());
        let person = truth.person_of();
        for (a, b) in &pairs {
            assert!(a < b);
            assert_ne!(a.system, b.system);
            assert_eq!(person[a], person[b]);
        }
        for (fraud, genuine) in &truth.fraud_pairs {
            assert!(pairs.contains(&normalised_pair(fraud, genuine)));
        }
        for (twin, original) in &truth.look_alike_pairs {
            assert!(!pairs.contains(&normalised_pair(twin, original)));
        }
    }

    #[test]
    fn fraud_records_carry_another_identity_and_the_persons_own_biometrics() {
        let (records, truth) = parsed(600, SEED);
        assert!(!truth.fraud_pairs.is_empty());
        let by_ref: HashMap<RecordRef, &IdentityRecord> = records
            .iter()
            .map(|r| (RecordRef::new(r.system, r.source_id.clone()), r))
            .collect();
        let person = truth.person_of();
        for (fraud, genuine) in &truth.fraud_pairs {
            assert_ne!(fraud.system, genuine.system);
            assert!(fraud.system.has_biometrics() && genuine.system.has_biometrics());
            assert_eq!(person[fraud], person[genuine]);
            let (f, g) = (by_ref[fraud], by_ref[genuine]);
            assert_ne!(f.names[0].surname.icao, g.names[0].surname.icao);
            assert_ne!(f.date_of_birth, g.date_of_birth);
            // The face is the fraudster's own: two captures of one base.
            assert!(cosine(&face(f), &face(g)) > 0.6);
        }
    }

    #[test]
    fn look_alikes_share_name_and_birth_date_but_not_biometrics_or_document() {
        let (records, truth) = parsed(600, SEED);
        assert!(!truth.look_alike_pairs.is_empty());
        let by_ref: HashMap<RecordRef, &IdentityRecord> = records
            .iter()
            .map(|r| (RecordRef::new(r.system, r.source_id.clone()), r))
            .collect();
        let person = truth.person_of();
        for (twin, original) in &truth.look_alike_pairs {
            assert_ne!(twin.system, original.system);
            assert_ne!(person[twin], person[original]);
            assert!(person[twin] >= truth.persons);
            let (t, o) = (by_ref[twin], by_ref[original]);
            assert_eq!(t.nationalities, o.nationalities);
            let (t_doc, o_doc) = (t.travel_documents.first(), o.travel_documents.first());
            if let (Some(t_doc), Some(o_doc)) = (t_doc, o_doc) {
                assert_ne!(t_doc.number_normalised, o_doc.number_normalised);
            }
            if t.system.has_biometrics() && o.system.has_biometrics() {
                assert!(cosine(&face(t), &face(o)) < 0.3);
            }
        }
        // The twin's record is written without variation, the original's with it: most pairs
        // still show the same birth date and the same surname up to case and transliteration.
        let pairs = truth.look_alike_pairs.len();
        let same_birth = truth
            .look_alike_pairs
            .iter()
            .filter(|(t, o)| by_ref[t].date_of_birth == by_ref[o].date_of_birth)
            .count();
        let same_surname = truth
            .look_alike_pairs
            .iter()
            .filter(|(t, o)| {
                let (t, o) = (&by_ref[t].names[0].surname, &by_ref[o].names[0].surname);
                t.icao == o.icao || t.ascii == o.ascii
            })
            .count();
        assert!(same_birth * 10 >= pairs * 8, "{same_birth} of {pairs}");
        assert!(same_surname * 10 >= pairs * 6, "{same_surname} of {pairs}");
    }

    #[test]
    fn a_look_alike_is_the_same_identity_on_another_passport() {
        let mut rng = Prng::seed_from_u64(5);
        for _ in 0..50 {
            let original = Identity::random(&mut rng, None);
            let twin = original.look_alike(&mut rng);
            assert_eq!(twin.surname.canonical(), original.surname.canonical());
            let given = |i: &Identity| i.given.iter().map(|g| g.canonical()).collect::<Vec<_>>();
            assert_eq!(given(&twin), given(&original));
            assert_eq!((twin.birth, twin.sex), (original.birth, original.sex));
            assert_ne!(twin.passport, original.passport);
            // Written without variation, the date is always the identity's own.
            let written = twin.appearance(&mut rng, SourceSystem::Vis, Variation::SpellingOnly);
            let expected = match original.birth.month_day {
                Some((m, d)) => format!("{:04}-{m:02}-{d:02}", original.birth.year),
                None => format!("{:04}", original.birth.year),
            };
            assert_eq!(written.date_of_birth, expected);
            assert_eq!(written.document.map(|d| d.number), Some(twin.passport));
        }
    }

    fn face(record: &IdentityRecord) -> Vec<f32> {
        record
            .templates
            .iter()
            .find(|t| t.modality == Modality::Face)
            .unwrap()
            .vector
            .clone()
    }

    #[test]
    fn the_noise_gives_mates_about_0_85_and_non_mates_about_0() {
        assert!(
            (noise_sigma(512) - 0.0185).abs() < 0.0005,
            "{}",
            noise_sigma(512)
        );
        assert!(
            (noise_sigma(192) - 0.0303).abs() < 0.0005,
            "{}",
            noise_sigma(192)
        );
        for trait_ in [
            Trait::Face,
            Trait::Finger(FingerPosition::RightIndex),
            Trait::Finger(FingerPosition::LeftIndex),
        ] {
            let persons = 200;
            let captures: Vec<(Vec<f32>, Vec<f32>)> = (0..persons)
                .map(|person| {
                    let base = base_vector(SEED, person, trait_);
                    let length = base.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
                    assert!((length - 1.0).abs() < 1e-4, "{length}");
                    (
                        new_capture(&base, capture_seed(SEED, person, 0, trait_)),
                        new_capture(&base, capture_seed(SEED, person, 1, trait_)),
                    )
                })
                .collect();
            let mates: Vec<f64> = captures.iter().map(|(a, b)| cosine(a, b)).collect();
            let mean = mates.iter().sum::<f64>() / mates.len() as f64;
            let min = mates.iter().copied().fold(f64::INFINITY, f64::min);
            assert!((0.82..=0.88).contains(&mean), "{trait_:?} mate mean {mean}");
            assert!(min > 0.6, "{trait_:?} mate min {min}");
            let mut non_mates = Vec::new();
            for (i, (a, _)) in captures.iter().enumerate() {
                for (b, _) in &captures[i + 1..] {
                    non_mates.push(cosine(a, b));
                }
            }
            let mean = non_mates.iter().sum::<f64>() / non_mates.len() as f64;
            let max = non_mates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert!(mean.abs() < 0.01, "{trait_:?} non-mate mean {mean}");
            // 192-d vectors spread wider (σ = 1/√192 ≈ 0.072): still far below the 0.5 threshold.
            let ceiling = if trait_ == Trait::Face { 0.3 } else { 0.45 };
            assert!(max < ceiling, "{trait_:?} non-mate max {max}");
        }
    }

    #[test]
    fn base_vectors_are_reproducible_and_match_the_stored_captures() {
        assert_eq!(
            base_vector(SEED, 3, Trait::Face),
            base_vector(SEED, 3, Trait::Face)
        );
        assert_ne!(
            base_vector(SEED, 3, Trait::Face),
            base_vector(SEED + 1, 3, Trait::Face)
        );
        let (records, truth) = parsed(40, SEED);
        for (record, truth) in records.iter().zip(&truth.records) {
            for template in &record.templates {
                let trait_ = match template.position {
                    None => Trait::Face,
                    Some(position) => Trait::Finger(position),
                };
                let probe = new_capture(&base_vector(SEED, truth.person, trait_), 999);
                let similarity = cosine(&probe, &template.vector);
                assert!(
                    similarity > 0.6,
                    "{} {trait_:?} {similarity}",
                    record.source_id
                );
            }
        }
    }

    #[test]
    fn templates_below_minimum_quality_occur_but_are_rare() {
        let population = Population::plan(1000, SEED);
        let truth = population.truth(SEED);
        let summary = population.summary(&truth, PathBuf::new(), PathBuf::new());
        let share = summary.templates_below_minimum_quality as f64 / summary.templates as f64;
        assert!((0.015..0.05).contains(&share), "{share}");
        let fraud = summary.fraud_records as f64 / 1000.0;
        assert!((0.01..0.06).contains(&fraud), "{fraud}");
        let twins = summary.look_alike_persons as f64 / 1000.0;
        assert!((0.01..0.06).contains(&twins), "{twins}");
    }

    #[test]
    fn records_of_one_person_vary_as_real_records_do() {
        let (records, truth) = parsed(600, SEED);
        let cyrillic = records
            .iter()
            .filter(|r| {
                r.names[0]
                    .surname
                    .original
                    .chars()
                    .any(|c| ('\u{400}'..='\u{4FF}').contains(&c))
            })
            .count();
        assert!(cyrillic > 5, "{cyrillic} Cyrillic surnames");
        let diacritics = records
            .iter()
            .filter(|r| {
                r.names[0]
                    .surname
                    .original
                    .chars()
                    .any(|c| "üÜøØŽžşŞ".contains(c))
            })
            .count();
        assert!(diacritics > 5, "{diacritics} surnames with diacritics");
        let partial = records
            .iter()
            .filter(|r| r.date_of_birth.day.is_none())
            .count();
        assert!(partial > 5, "{partial} partial dates");

        // Between two records of one person in different systems.
        let mut by_person: BTreeMap<u64, Vec<&IdentityRecord>> = BTreeMap::new();
        for (record, truth) in records.iter().zip(&truth.records) {
            by_person.entry(truth.person).or_default().push(record);
        }
        let (mut case, mut spelling, mut swapped_dates, mut other_document) = (0, 0, 0, 0);
        for person in by_person.values() {
            for (i, a) in person.iter().enumerate() {
                for b in &person[i + 1..] {
                    let (x, y) = (&a.names[0].surname, &b.names[0].surname);
                    if x.original != y.original && x.folded == y.folded {
                        case += 1;
                    }
                    if x.icao != y.icao && x.ascii == y.ascii {
                        spelling += 1;
                    }
                    let (p, q) = (a.date_of_birth, b.date_of_birth);
                    if p.year == q.year && p.month == q.day && p.day == q.month && p.day != p.month
                    {
                        swapped_dates += 1;
                    }
                    if let (Some(d), Some(e)) =
                        (a.travel_documents.first(), b.travel_documents.first())
                        && d.number_normalised != e.number_normalised
                        && a.names[0].surname.ascii == b.names[0].surname.ascii
                    {
                        other_document += 1;
                    }
                }
            }
        }
        assert!(case > 20, "{case} case differences");
        assert!(spelling > 0, "{spelling} transliteration differences");
        assert!(swapped_dates > 0, "{swapped_dates} day-month swaps");
        assert!(other_document > 0, "{other_document} renewed documents");
    }

    #[test]
    fn hand_written_json_is_what_serde_json_reads() {
        let tricky = "a \"quoted\" \\ back\nslash\t\u{1} Ωμέγα";
        let mut literal = String::from("\"");
        push_json_escaped(&mut literal, tricky);
        literal.push('"');
        assert_eq!(serde_json::from_str::<String>(&literal).unwrap(), tricky);
        let template = Template {
            trait_: Trait::Finger(FingerPosition::LeftIndex),
            quality: 61,
            data: "AAAA".to_owned(),
        };
        let text = with_biometrics(&json!({ "a": 1 }), std::slice::from_ref(&template));
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["a"], 1);
        assert_eq!(value["biometrics"][0]["position"], "left_index");
        assert_eq!(value["biometrics"][0]["quality"], 61);
        let text = with_biometrics(&json!({}), &[template]);
        assert!(serde_json::from_str::<Value>(&text).unwrap()["biometrics"].is_array());
    }

    #[test]
    fn typos_and_name_lists_are_sound() {
        let mut rng = Prng::seed_from_u64(1);
        for _ in 0..200 {
            let slipped = typo(&mut rng, "Smith");
            assert_ne!(slipped, "Smith");
            assert!(slipped.starts_with('S'));
            assert!((4..=6).contains(&slipped.chars().count()));
        }
        assert_eq!(typo(&mut rng, "Li"), "Li");
        for origin in ORIGINS {
            assert!(!origin.nationalities.is_empty() && !origin.places.is_empty());
            assert_eq!(origin.surnames_male.len(), origin.surnames_female.len());
            for list in [
                origin.surnames_male,
                origin.surnames_female,
                origin.given_male,
                origin.given_female,
            ] {
                assert!(!list.is_empty());
                assert!(list.iter().all(|name| !name.latin.is_empty()));
            }
            assert!(origin.nationalities.iter().all(|n| n.len() == 3));
        }
        // A Cyrillic spelling transliterates to one of the Latin ones, so a hub can match them.
        for origin in ORIGINS {
            let names = origin.surnames_male.iter().chain(origin.surnames_female);
            for name in names.chain(origin.given_male).chain(origin.given_female) {
                if let Some(cyrillic) = name.cyrillic {
                    let icao = connectors::NameForms::new(cyrillic).icao;
                    let latin: Vec<String> = name
                        .latin
                        .iter()
                        .map(|l| connectors::NameForms::new(l).icao)
                        .collect();
                    assert!(
                        latin.contains(&icao),
                        "{cyrillic} → {icao} not in {latin:?}"
                    );
                }
            }
        }
    }
}
