//! criterion micro-benchmarks of the hot paths: name normalisation, identity comparison,
//! one 1:N search of the ANN index (walking its graph, and scanning its sketches), the
//! Hamming scan of 100k face sketches (the CPU's kernel and the scalar loop) and of 200k
//! finger sketches, the distance kernel (and a bare search with usearch's own kernel and
//! with the hub's), the biometric comparison of a record pair, one audit append to SQLite,
//! and the access decision (made afresh, and from the per-policy-version memo).
//! Run with `cargo bench -p interop-hub-cli --bench hot_paths`.

use std::hint::black_box;

use connectors::{AlgorithmRegistry, NameForms, SourceSystem};
use criterion::{Criterion, criterion_group, criterion_main};
use interop_hub::access::{PolicyEngine, Principal, Role};
use interop_hub::biometrics::SKETCH_SHORTLIST;
use interop_hub::biometrics::ann::{
    AnnIndex, IndexSettings, MIN_FIRST_STAGE_CANDIDATES, PREFIX_WORDS, Quantization,
};
use interop_hub::clock::Clock;
use interop_hub::matching::{compare_biometrics, compare_identity};
use interop_hub::store::{ControlStore, PoolSettings};
use interop_hub_cli::generate::{Trait, base_vector, new_capture};

fn fixture(system: SourceSystem, file: &str) -> connectors::IdentityRecord {
    let path = format!("{}/../tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    connectors::parse(system, &body, &AlgorithmRegistry::default())
        .unwrap_or_else(|e| panic!("{file}: {e:?}"))
        .record
}

fn names(c: &mut Criterion) {
    c.bench_function("name_forms/latin_diacritics", |b| {
        b.iter(|| NameForms::new(black_box("Žukauskienė-Müller")))
    });
    c.bench_function("name_forms/cyrillic", |b| {
        b.iter(|| NameForms::new(black_box("Щукина Анастасия")))
    });
}

fn identity(c: &mut Criterion) {
    let ees = fixture(SourceSystem::Ees, "ees.json");
    let sis = fixture(SourceSystem::Sis, "sis.json");
    let registry = AlgorithmRegistry::default();
    c.bench_function("compare_identity/ees_sis", |b| {
        b.iter(|| compare_identity(black_box(&ees), black_box(&sis)))
    });
    c.bench_function("compare_biometrics/ees_sis", |b| {
        b.iter(|| compare_biometrics(black_box(&ees), black_box(&sis), &registry))
    });
}

fn one_to_n(c: &mut Criterion) {
    const TEMPLATES: u64 = 20_000;
    let index = AnnIndex::new(&IndexSettings::new(512)).unwrap_or_else(|e| panic!("index: {e}"));
    let items: Vec<(u64, Vec<f32>)> = (0..TEMPLATES)
        .map(|person| {
            (
                person,
                new_capture(&base_vector(1, person, Trait::Face), person),
            )
        })
        .collect();
    let refs: Vec<(u64, &[f32])> = items.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    index
        .add_batch(&refs)
        .unwrap_or_else(|e| panic!("add: {e}"));
    let probe = new_capture(&base_vector(1, 4_242, Trait::Face), 99);
    c.bench_function("ann_search/20k_face_top10", |b| {
        b.iter(|| {
            index
                .search(black_box(&probe), 10)
                .unwrap_or_else(|e| panic!("search: {e}"))
        })
    });
    drop(index);

    // The hub's own face settings: i8, searched by scanning sketches.
    let hub_settings = interop_hub::biometrics::settings_for(
        AlgorithmRegistry::default()
            .get("acme-face-v3")
            .unwrap_or_else(|| panic!("face algorithm")),
        interop_hub::biometrics::IndexTuning::default(),
    );
    let sketched = AnnIndex::new(&hub_settings).unwrap_or_else(|e| panic!("index: {e}"));
    sketched
        .add_batch(&refs)
        .unwrap_or_else(|e| panic!("add: {e}"));
    c.bench_function("ann_search/20k_face_sketch_top10", |b| {
        b.iter(|| {
            sketched
                .search(black_box(&probe), 10)
                .unwrap_or_else(|e| panic!("search: {e}"))
        })
    });
}

/// The Hamming scan under a sketch search: 100k 512-bit face sketches, with the kernel the
/// CPU gets and with the scalar `popcnt` loop; 200k 192-bit finger sketches, for one probe
/// and for a record's two, one after the other and sharing the scan.
fn sketch_scan(c: &mut Criterion) {
    const MEMBERS: u64 = 100_000;
    let mut sketch = Vec::new();
    let mut sketches = Vec::new();
    for person in 0..MEMBERS {
        kernels::sign_sketch(&base_vector(1, person, Trait::Face), &mut sketch);
        sketches.extend_from_slice(&sketch);
    }
    kernels::sign_sketch(
        &new_capture(&base_vector(1, 4_242, Trait::Face), 99),
        &mut sketch,
    );
    let mut distances = Vec::new();
    c.bench_function("sketch/hamming_100k_512_bits", |b| {
        b.iter(|| kernels::hamming_distances(black_box(&sketch), &sketches, &mut distances))
    });
    c.bench_function("sketch/hamming_100k_512_bits_scalar", |b| {
        b.iter(|| kernels::hamming_distances_scalar(black_box(&sketch), &sketches, &mut distances))
    });

    // A finger index of 100k records: two 192-bit sketches each.
    let finger = Trait::Finger(connectors::FingerPosition::RightIndex);
    sketches.clear();
    for person in 0..2 * MEMBERS {
        kernels::sign_sketch(&base_vector(1, person, finger), &mut sketch);
        sketches.extend_from_slice(&sketch);
    }
    kernels::sign_sketch(
        &new_capture(&base_vector(1, 4_242, finger), 99),
        &mut sketch,
    );
    c.bench_function("sketch/hamming_200k_192_bits", |b| {
        b.iter(|| kernels::hamming_distances(black_box(&sketch), &sketches, &mut distances))
    });
    c.bench_function("sketch/hamming_200k_192_bits_scalar", |b| {
        b.iter(|| kernels::hamming_distances_scalar(black_box(&sketch), &sketches, &mut distances))
    });
    // What a shortlist of 64 gathers after that scan: the members within a loose first
    // cutoff (the 256th smallest distance here), in blocks and member by member.
    kernels::hamming_distances(&sketch, &sketches, &mut distances);
    let mut sorted = distances.clone();
    sorted.sort_unstable();
    let limit = sorted[255];
    let mut gathered = Vec::new();
    c.bench_function("sketch/gather_200k_near_256", |b| {
        b.iter(|| {
            gathered.clear();
            kernels::gather_within(black_box(&distances), limit, 0, &mut gathered);
        })
    });
    c.bench_function("sketch/gather_200k_near_256_filtered", |b| {
        b.iter(|| {
            gathered.clear();
            kernels::gather_within_filtered(black_box(&distances), limit, 0, &mut gathered);
        })
    });
    // The whole shortlist of 64 for one probe: the scan streamed through its selection.
    c.bench_function("sketch/shortlist_200k_192_bits_64", |b| {
        b.iter(|| kernels::nearest_each(black_box(&[sketch.as_slice()]), &sketches, 64))
    });
    // A record's two fingers against the same index: one after the other, and sharing a scan.
    let mut other = Vec::new();
    kernels::sign_sketch(&new_capture(&base_vector(1, 4_243, finger), 98), &mut other);
    let mut other_distances = Vec::new();
    c.bench_function("sketch/hamming_200k_192_bits_two_probes_in_turn", |b| {
        b.iter(|| {
            kernels::hamming_distances(black_box(&sketch), &sketches, &mut distances);
            kernels::hamming_distances(black_box(&other), &sketches, &mut other_distances);
        })
    });
    let mut shared = Vec::new();
    c.bench_function("sketch/hamming_200k_192_bits_two_probes_shared", |b| {
        b.iter(|| {
            kernels::hamming_distances_each(
                black_box(&[sketch.as_slice(), other.as_slice()]),
                &sketches,
                &mut shared,
            )
        })
    });
    // Ten times as many (48 MB, past a server's last-level cache): the bits do not matter
    // to the scan's speed, so they are drawn, not derived from templates.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let large: Vec<u64> = (0..3 * 20 * MEMBERS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
        .collect();
    c.bench_function("sketch/hamming_2m_192_bits_two_probes_in_turn", |b| {
        b.iter(|| {
            kernels::hamming_distances(black_box(&sketch), &large, &mut distances);
            kernels::hamming_distances(black_box(&other), &large, &mut other_distances);
        })
    });
    c.bench_function("sketch/hamming_2m_192_bits_two_probes_shared", |b| {
        b.iter(|| {
            kernels::hamming_distances_each(
                black_box(&[sketch.as_slice(), other.as_slice()]),
                &large,
                &mut shared,
            )
        })
    });
}

/// A million persons' 512-bit face sketches, each one's first words again end to end (as
/// the hub keeps them for a two-stage scan), and new captures of some of them with the
/// person each is of.
struct MillionFaces {
    sketches: Vec<u64>,
    prefixes: Vec<u64>,
    captures: Vec<Vec<u64>>,
    persons: Vec<u64>,
}

impl MillionFaces {
    const MEMBERS: u64 = 1_000_000;

    /// New captures of every 2,000th person and, last, of two far apart, which the timed
    /// searches probe.
    fn generate() -> Self {
        let mut sketch = Vec::new();
        let mut sketches = Vec::with_capacity(8 * Self::MEMBERS as usize);
        let mut prefixes = Vec::with_capacity(PREFIX_WORDS * Self::MEMBERS as usize);
        for person in 0..Self::MEMBERS {
            kernels::sign_sketch(&base_vector(1, person, Trait::Face), &mut sketch);
            sketches.extend_from_slice(&sketch);
            prefixes.extend_from_slice(&sketch[..PREFIX_WORDS]);
        }
        let persons: Vec<u64> = (0..Self::MEMBERS)
            .step_by(2_000)
            .chain([4_242, 777_777])
            .collect();
        let captures = persons
            .iter()
            .map(|&person| {
                let mut capture = Vec::new();
                kernels::sign_sketch(
                    &new_capture(&base_vector(1, person, Trait::Face), 99 ^ person),
                    &mut capture,
                );
                capture
            })
            .collect();
        Self {
            sketches,
            prefixes,
            captures,
            persons,
        }
    }

    /// The hub's shortlist for each probe, whole sketches scanned or in two stages.
    fn shortlists(&self, probes: &[&[u64]], two_stages: bool) -> Vec<Vec<(u32, usize)>> {
        if two_stages {
            kernels::nearest_each_by_prefix(
                probes,
                &self.prefixes,
                PREFIX_WORDS,
                &self.sketches,
                MIN_FIRST_STAGE_CANDIDATES,
                SKETCH_SHORTLIST,
            )
        } else {
            kernels::nearest_each(probes, &self.sketches, SKETCH_SHORTLIST)
        }
    }

    /// How many captures' shortlists hold their person's own sketch.
    fn mates_held(&self, two_stages: bool) -> usize {
        let probes: Vec<&[u64]> = self.captures.iter().map(Vec::as_slice).collect();
        self.shortlists(&probes, two_stages)
            .iter()
            .zip(&self.persons)
            .filter(|(found, person)| found.iter().any(|&(_, at)| at as u64 == **person))
            .count()
    }
}

/// The hub's shortlist from a million 512-bit face sketches (64 MB, past a server's
/// last-level cache), for one probe and for two sharing the scan: the whole sketches
/// scanned, and two stages (the first 128 bits of every sketch, then whole sketches for
/// the nearest by those), with the bare scan's distances alone beside them. The sketches
/// are made only when one of these benchmarks is selected; before the timings, how many
/// of 502 new captures' shortlists hold the mate's own sketch is printed for each method,
/// and the two-stage shortlist must hold nearly all.
fn sketch_shortlist_at_a_million(c: &mut Criterion) {
    let faces = std::cell::OnceCell::new();
    let faces = || {
        faces.get_or_init(|| {
            let faces = MillionFaces::generate();
            let (whole, two_stages) = (faces.mates_held(false), faces.mates_held(true));
            let probes = faces.persons.len();
            eprintln!(
                "1M face sketches, shortlist {SKETCH_SHORTLIST}: the mate held for {whole} of \
                 {probes} probes scanning whole sketches, {two_stages} in two stages"
            );
            assert!(two_stages * 1_000 >= probes * 995, "two stages lost mates");
            faces
        })
    };
    c.bench_function("sketch/hamming_1m_512_bits", |b| {
        let faces = faces();
        let mut distances = Vec::new();
        let probe = &faces.captures[faces.captures.len() - 1];
        b.iter(|| kernels::hamming_distances(black_box(probe), &faces.sketches, &mut distances))
    });
    for (name, count) in [("one_probe", 1), ("two_probes", 2)] {
        for (method, two_stages) in [("whole", false), ("two_stages", true)] {
            c.bench_function(
                &format!("sketch/shortlist_1m_512_bits_64_{method}_{name}"),
                |b| {
                    let faces = faces();
                    let probes: Vec<&[u64]> = faces.captures[faces.captures.len() - count..]
                        .iter()
                        .map(Vec::as_slice)
                        .collect();
                    b.iter(|| faces.shortlists(black_box(&probes), two_stages))
                },
            );
        }
    }
}

/// The distance kernel alone, one bare usearch search of an f16 graph with usearch's own
/// cosine kernel and with the hub's (same graph, same probe), and one of the hub's i8 graph.
fn distance(c: &mut Criterion) {
    let a = new_capture(&base_vector(1, 1, Trait::Face), 1);
    let b = new_capture(&base_vector(1, 2, Trait::Face), 2);
    let half = |v: &[f32]| -> Vec<u16> {
        v.iter()
            .map(|x| half::f16::from_f32(*x).to_bits())
            .collect()
    };
    let (ha, hb) = (half(&a), half(&b));
    c.bench_function("distance/dot_f32_512", |bench| {
        bench.iter(|| kernels::dot_f32(black_box(&a), black_box(&b)))
    });
    c.bench_function("distance/dot_f16_512", |bench| {
        bench.iter(|| kernels::dot_f16(black_box(&ha), black_box(&hb)))
    });

    let hub_settings = interop_hub::biometrics::settings_for(
        AlgorithmRegistry::default()
            .get("acme-face-v3")
            .unwrap_or_else(|| panic!("face algorithm")),
        interop_hub::biometrics::IndexTuning::default(),
    );
    let graph = |quantization: Quantization| {
        let settings = IndexSettings {
            quantization,
            ..hub_settings.clone()
        };
        let mut index =
            usearch::Index::new(&settings.usearch_options()).unwrap_or_else(|e| panic!("{e}"));
        kernels::install_unit_cosine(&mut index);
        index
            .reserve(20_000)
            .unwrap_or_else(|e| panic!("reserve: {e}"));
        for person in 0..20_000_u64 {
            let v = new_capture(&base_vector(1, person, Trait::Face), person);
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let unit: Vec<f32> = v.iter().map(|x| x / norm).collect();
            quantization
                .add_unit(&index, person, &unit)
                .unwrap_or_else(|e| panic!("add: {e}"));
        }
        index
    };
    let probe = new_capture(&base_vector(1, 4_242, Trait::Face), 99);
    let norm = probe.iter().map(|x| x * x).sum::<f32>().sqrt();
    let unit_probe: Vec<f32> = probe.iter().map(|x| x / norm).collect();
    let integers = graph(Quantization::I8);
    c.bench_function("distance/bare_search_20k_i8", |bench| {
        bench.iter(|| Quantization::I8.search_unit(&integers, black_box(&unit_probe), 10))
    });
    drop(integers);
    let index = graph(Quantization::F16);
    c.bench_function("distance/bare_search_20k_hub_kernel", |bench| {
        bench.iter(|| index.search(black_box(&probe), 10))
    });
    index
        .change_metric_kind(usearch::MetricKind::Cos)
        .unwrap_or_else(|e| panic!("metric: {e}"));
    c.bench_function("distance/bare_search_20k_builtin_kernel", |bench| {
        bench.iter(|| index.search(black_box(&probe), 10))
    });
}

/// What every audited answer waits for on the embedded default: one entry appended to a
/// SQLite control database (one autocommit INSERT, as a search's entry is), and, for
/// scale, one single-statement read through the same pool.
fn audit(c: &mut Criterion) {
    let (runtime, _dir, store) = sqlite_control_store();
    let event = interop_hub::store::AuditEvent {
        subject: "bench".into(),
        agency: "BENCH".into(),
        member_state: "SE".into(),
        purpose: "border_check".into(),
        action: "search_biometric".into(),
        query: "biometric=acme-face-v3".into(),
        outcome: "hits=1".into(),
    };
    let no_counts = std::collections::BTreeMap::new();
    let mut appender = store.audit_appender();
    c.bench_function("audit/append_one_sqlite", |b| {
        b.iter(|| {
            runtime
                .block_on(appender.append(
                    &[interop_hub::store::ChainEntry::new(
                        event.clone(),
                        time::OffsetDateTime::now_utc(),
                    )],
                    &no_counts,
                ))
                .unwrap_or_else(|e| panic!("append: {e}"))
        })
    });
    c.bench_function("audit/read_head_sqlite", |b| {
        b.iter(|| runtime.block_on(store.audit_head()))
    });
}

/// A runtime and a fresh SQLite control database in a temporary directory (kept while
/// the directory handle lives).
fn sqlite_control_store() -> (tokio::runtime::Runtime, tempfile::TempDir, ControlStore) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("control.sqlite").display()
    );
    let store = runtime
        .block_on(ControlStore::open(&url, &PoolSettings::default()))
        .unwrap_or_else(|e| panic!("control store: {e}"));
    (runtime, dir, store)
}

fn policy(c: &mut Criterion) {
    let (runtime, _dir, store) = sqlite_control_store();
    let engine = runtime
        .block_on(PolicyEngine::open(store, Clock::System, Default::default()))
        .unwrap_or_else(|e| panic!("policy: {e}"));
    let officer = Principal::new(
        "k.weber",
        "BKA",
        "DE",
        vec!["le_designated".parse().unwrap_or_else(|e| panic!("{e}"))],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // A principal's first request: more officers than the policy's memo keeps, in turn, so
    // that each is decided afresh (the memo starts over once it is full).
    let role: Role = "le_designated".parse().unwrap_or_else(|e| panic!("{e}"));
    let officers: Vec<Principal> = (0..20_001)
        .map(|n| {
            Principal::new(format!("officer-{n}"), "BKA", "DE", vec![role.clone()])
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let mut next = officers.iter().cycle();
    c.bench_function("policy/decide_afresh_baseline", |b| {
        b.iter(|| {
            let officer = next.next().unwrap_or(&officers[0]);
            runtime.block_on(engine.access(black_box(officer)))
        })
    });
    c.bench_function("policy/decide_memoised", |b| {
        b.iter(|| runtime.block_on(engine.access(black_box(&officer))))
    });
}

criterion_group!(
    benches,
    names,
    identity,
    one_to_n,
    sketch_scan,
    sketch_shortlist_at_a_million,
    distance,
    audit,
    policy
);
criterion_main!(benches);
