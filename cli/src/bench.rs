//! `interop-hub bench`: ingest with detection and 1:N search measured through the hub's own
//! paths, beside bare usearch indexes with the same settings and data (searched, and doing
//! ingest's index work) and an exact scan of the same vectors, then the search portal over
//! HTTP at fixed concurrency — all in one run, on generated data with known mates.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connectors::{FingerPosition, Partition, SourceSystem};
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::generate::{
    FACE_ALGORITHM, FINGER_ALGORITHM, Sex, Template, Trait, WrittenDocument, WrittenPerson,
    base_vector, ees_file, new_capture, sis_alert, with_biometrics,
};
use interop_hub::access::{Principal, Purpose, TokenAuthority};
use interop_hub::biometrics::ann::{IndexSettings, Quantization};
use interop_hub::biometrics::{Biometrics, IndexTuning, settings_for};
use interop_hub::config::HubConfig;
use interop_hub::core::{BiometricSearch, Hub, NEIGHBOURS_PER_WANTED_RECORD};
use interop_hub::http::AppState;
use interop_hub::metrics::IngestStep;
use interop_hub::store::{IdentityStore, LinkStore};

pub(crate) const FACE: &str = FACE_ALGORITHM;
const FINGER: &str = FINGER_ALGORITHM;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Records to ingest; each carries a face (the templates searched) and two fingers.
    pub templates: usize,
    /// 1:N probes: new captures of stored persons' faces.
    pub queries: usize,
    /// Threads of the bare and exact baselines, and hub searches in flight in the first pass.
    pub threads: usize,
    pub seed: u64,
    /// Where the hub under test keeps its data; a temporary directory when absent.
    pub data_dir: Option<PathBuf>,
    /// Clients in flight at once in the HTTP load test of `POST /v1/search`.
    pub http_concurrency: usize,
    /// Where to write the face vectors and probes for other libraries' baselines.
    pub export_vectors: Option<PathBuf>,
    /// Records in flight at once while ingesting.
    pub ingest_in_flight: usize,
    /// HNSW's ef of the bare ingest's searches, and of the hub detector's where an index
    /// walks its graph (the hub's scan their sketches unless `sketch_shortlist` is 0).
    pub detection_expansion: usize,
    /// HNSW's candidate list while inserting, in the hub's indexes and the bare ones (the
    /// setting `index.expansion_add`); `None`: each index's default for how it is searched
    /// (the hub's scan their sketches unless `sketch_shortlist` is 0, the bare ones walk
    /// their graphs).
    pub expansion_add: Option<usize>,
    /// The hub's setting `search.sketch_shortlist` (0: its searches and its detector walk
    /// the graphs).
    pub sketch_shortlist: usize,
    /// Builds the bare index again at every other quantisation (the quantisation table):
    /// at 100k the longest phase of the run.
    pub quantisation_table: bool,
    /// Builds the bare index again at every other connectivity of [`CONNECTIVITIES`] (the
    /// connectivity table).
    pub connectivity_table: bool,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The CPU the run measured and the SIMD extensions the distance kernels choose
    /// between: figures from different CPUs do not compare.
    pub cpu: String,
    pub templates: usize,
    pub queries: usize,
    pub threads: usize,
    /// Records per second through `Records::ingest` (parse, store, index, detect).
    pub ingest_records_per_s: f64,
    /// Ingest's index work alone on bare usearch indexes with the hub's settings: each
    /// record's three templates inserted into its partition's indexes and searched in both
    /// partitions at the detector's ef, `threads` records at a time, one insertion at a time
    /// per index (as the hub inserts).
    pub ingest_records_per_s_bare: f64,
    /// The hub's ingest over the bare indexes': what the hub adds to ingest's index work.
    pub ingest_hub_to_bare_ratio: f64,
    /// Mean time from handing a record to `Records::ingest` to its answer, `ingest_in_flight`
    /// records in flight.
    pub ingest_mean_ms: f64,
    /// Where that time went: each step's mean per record (waiting included; steps a record
    /// skips, such as the detector's for a replay, count as 0 for it).
    pub ingest_steps: Vec<IngestStepTiming>,
    /// Share of second appearances that the bare indexes' searches joined to their first
    /// (from either record's searches: records in flight finish in either order).
    pub bare_ingest_mate_recall: f64,
    /// Records in flight at once while ingesting.
    pub ingest_in_flight: usize,
    /// HNSW's ef of the bare ingest's searches, and of the hub detector's where an index
    /// walks its graph (the hub's scan their sketches unless `shortlist` is 0).
    pub detection_expansion_search: usize,
    /// Share of second appearances that ingest's detection linked to the first.
    pub detection_recall: f64,
    /// The same, of second appearances under another name, date of birth and document:
    /// found by the biometric search alone.
    pub detection_recall_assumed_identity: f64,
    /// Links the detector made between records of different persons.
    pub detection_false_links: usize,
    /// 1:N searches per second through the hub's search (both partitions, owner lookup).
    pub search_qps_hub: f64,
    /// The hub's search again, with `portal_http_concurrency` callers in flight instead of
    /// `threads`: searches still run on `threads` usearch slots, but a caller waiting for its
    /// audit commit no longer leaves a core idle.
    pub search_qps_hub_in_flight: f64,
    /// The same probes against a bare usearch index with the hub's settings (distance kernel
    /// included) and data.
    pub search_qps_bare_usearch: f64,
    /// The bare index at each quantisation, with the hub's graph settings and expansion
    /// (only the hub's own without the quantisation table).
    pub quantization_curve: Vec<QuantizationPoint>,
    /// Two bare indexes split as the hub's partitions are (EES civil, SIS law enforcement),
    /// both searched per probe, one after the other: the index work of a hub search that
    /// walked the graph (the hub now scans sketches: `search_qps_index_alone`).
    pub search_qps_bare_partitioned: f64,
    pub recall_bare_partitioned: f64,
    /// Hub over the partitioned bare indexes.
    pub hub_to_bare_partitioned_ratio: f64,
    /// Which distance kernel the hub's and the bare index ran.
    pub kernel: String,
    /// Inserts per second into the bare index, one at a time from one thread (as the hub's
    /// writer inserts).
    pub bare_adds_per_s: f64,
    /// The bare index searched at other expansions: the speed / recall trade-off.
    pub expansion_curve: Vec<CurvePoint>,
    /// The bare index built at other connectivities (HNSW's M; the hub's first), each with
    /// its insertion speed, memory and expansion curve (only the hub's own without the
    /// connectivity table).
    pub connectivity_curve: Vec<ConnectivityPoint>,
    /// The hub's search (`threads` in flight) with its face indexes' graphs walked at other
    /// expansions instead of their sketches scanned.
    pub hub_expansion_curve: Vec<CurvePoint>,
    /// The hub's finger search (`threads` in flight) with its finger indexes' graphs walked
    /// at other expansions.
    pub hub_finger_expansion_curve: Vec<CurvePoint>,
    /// The members a sketch search re-ranks by cosine (`IndexSettings::shortlist`) in the
    /// hub's face and finger indexes.
    pub shortlist: usize,
    /// HNSW's candidate list while inserting (`IndexSettings::expansion_add`) in the hub's
    /// indexes.
    pub expansion_add: usize,
    /// The same in the bare indexes, whose searches walk their graphs.
    pub bare_expansion_add: usize,
    /// The hub's search (`threads` in flight) with its face indexes' sketch scans at other
    /// shortlists.
    pub hub_shortlist_curve: Vec<ShortlistPoint>,
    /// The same, of the finger indexes.
    pub hub_finger_shortlist_curve: Vec<ShortlistPoint>,
    /// The same probes searched straight in the hub's own face indexes (both partitions per
    /// probe, one after the other, `threads` at a time): a hub search's index work, without
    /// the store, the owners, the access checks or the audit log.
    pub search_qps_index_alone: f64,
    /// The hub's search over its indexes searched alone: what the hub adds to them.
    pub hub_to_index_ratio: f64,
    /// The same probes scanned exhaustively over the same vectors.
    pub search_qps_exact: f64,
    /// The hub's face search over the bare index's, timed in turns: `head_to_head.ratio`.
    pub hub_to_bare_ratio: f64,
    /// The hub's face search and the bare index timed in turns, the bare index at the
    /// expansion that matches the hub's recall.
    pub head_to_head: HeadToHead,
    pub bare_to_exact_ratio: f64,
    /// Share of probes whose true mate comes first, from the hub.
    pub recall_genuine_mate: f64,
    /// Share of finger probes (new captures of stored persons' right index fingers) whose
    /// person's record comes first, from the hub's finger indexes at their own expansion.
    pub recall_genuine_mate_finger: f64,
    /// Finger 1:N searches per second through the hub, `threads` in flight.
    pub search_qps_hub_finger: f64,
    pub recall_bare_usearch: f64,
    pub recall_exact: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
    /// Face-index memory per face template.
    pub bytes_per_template: f64,
    /// Seconds from opening the stores to ready, with the saved index files.
    pub ready_after_restart_s: f64,
    /// `POST /v1/search` over HTTP (biometric face probe, a border guard's token): clients
    /// in flight at once, requests per second, latency percentiles, non-200 answers.
    pub portal_http_concurrency: usize,
    pub portal_http_requests_per_s: f64,
    pub portal_http_p50_ms: f64,
    pub portal_http_p99_ms: f64,
    pub portal_http_errors: usize,
    /// Share of portal answers whose first record is the probe's true mate.
    pub portal_recall_genuine_mate: f64,
}

/// The hub's face search against a bare usearch index with the hub's settings and data, timed
/// in turns ([`HEAD_TO_HEAD_ROUNDS`] each, after a warm-up), the best of each kept: the bare
/// index at the smallest expansion of [`MATCHING_EXPANSIONS`] whose recall reaches the hub's
/// (the largest if none does), so that neither is timed at a recall the other does not give.
///
/// The bare index runs on `threads` threads, each busy all the time. The hub is timed twice
/// per round: with `threads` searches in flight, where each waits for its audit entry to
/// be durable and leaves its core idle meanwhile, and with as many in flight as the HTTP
/// load test has clients, which keeps the cores busy as a server under load is. The latter
/// compares the two at full use of the machine: the headline ratio.
#[derive(Debug, Clone, Serialize)]
pub struct HeadToHead {
    pub bare_expansion_search: usize,
    pub bare_recall: f64,
    pub hub_recall: f64,
    /// Hub searches in flight in the saturated timing.
    pub hub_in_flight: usize,
    /// Each round's searches per second.
    pub rounds: Vec<HeadToHeadRound>,
    /// The best round of each, and the hub's (saturated) over the bare index's.
    pub hub_qps: f64,
    pub hub_qps_threads_in_flight: f64,
    pub bare_qps: f64,
    pub ratio: f64,
    /// The hub with `threads` in flight over the bare index.
    pub ratio_threads_in_flight: f64,
}

/// One round of the head-to-head.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HeadToHeadRound {
    pub hub_qps: f64,
    pub hub_qps_threads_in_flight: f64,
    pub bare_qps: f64,
}

/// Rounds of the head-to-head.
const HEAD_TO_HEAD_ROUNDS: usize = 3;
/// Expansions the head-to-head tries on the bare index, smallest first, until its recall
/// reaches the hub's.
const MATCHING_EXPANSIONS: [usize; 12] = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];

/// The smallest of [`MATCHING_EXPANSIONS`] whose recall (`recall_at`, which leaves the index
/// at that expansion) reaches `recall`, with that recall; the largest if none does.
fn matching_expansion(recall: f64, mut recall_at: impl FnMut(usize) -> f64) -> (usize, f64) {
    let mut reached = (0, 0.0);
    for expansion in MATCHING_EXPANSIONS {
        reached = (expansion, recall_at(expansion));
        if reached.1 >= recall {
            break;
        }
    }
    reached
}

/// The bare index built and searched with one way of storing its vectors.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizationPoint {
    /// `f32` and `f16` run the hub's dot-product kernel; `i8` is quantised per vector
    /// (`kernels::quantize_i8`) and runs the kernel the hub installs on this CPU;
    /// `i8_usearch_kernel` is the same with usearch's own cosine; `i8_usearch_cast` is
    /// usearch's own cast of the unit vectors.
    pub quantization: String,
    pub qps: f64,
    pub recall: f64,
    /// One inserting thread.
    pub adds_per_s: f64,
}

/// The bare index built with one connectivity and otherwise the hub's settings.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectivityPoint {
    pub connectivity: usize,
    /// One inserting thread.
    pub adds_per_s: f64,
    /// The index's serialised length (vectors and graph) per member: usearch's
    /// `memory_usage()` counts its reserved arenas and came out the same for every
    /// connectivity.
    pub serialized_bytes_per_template: f64,
    /// Searched at each expansion of [`CURVE`].
    pub curve: Vec<CurvePoint>,
}

/// One step of `Records::ingest` and its mean time per record.
#[derive(Debug, Clone, Serialize)]
pub struct IngestStepTiming {
    pub step: &'static str,
    pub mean_ms: f64,
}

/// One point of the sketch search's speed / recall trade-off.
#[derive(Debug, Clone, Serialize)]
pub struct ShortlistPoint {
    pub shortlist: usize,
    pub qps: f64,
    pub recall: f64,
}

/// One point of a speed / recall trade-off.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub expansion_search: usize,
    pub qps: f64,
    pub recall: f64,
}

/// Person `i`'s record: EES (civil) and SIS (law enforcement) alternate, so detection
/// searches and links across both partitions. Every tenth record is a second appearance of
/// the person before it; every other such appearance is under another name, date of birth
/// and document, so that only the biometric search can find its mate.
pub(crate) fn native_record(seed: u64, i: usize) -> (SourceSystem, usize, String) {
    let person = if i % 10 == 9 { i - 1 } else { i };
    let assumed_identity = is_assumed_identity(i);
    let system = if i.is_multiple_of(2) {
        SourceSystem::Ees
    } else {
        SourceSystem::Sis
    };
    // An assumed identity takes a surname no person has: the names run from the other end.
    let surname = synthetic_surname(if assumed_identity {
        SURNAMES - 1 - person
    } else {
        person
    });
    // Given names drawn from a short list, as real ones are: common, not unique.
    let given = synthetic_given_name((person + usize::from(assumed_identity) * 31) % GIVEN_NAMES);
    let year = 1940 + (person + usize::from(assumed_identity) * 23) % 66;
    let month = 1 + (person + usize::from(assumed_identity) * 5) % 12;
    let date_of_birth = format!("{year}-{month:02}-14");
    let document = format!("{}{person:08}", if assumed_identity { 'F' } else { 'B' });
    let templates: Vec<Template> = RECORD_TRAITS
        .iter()
        .map(|trait_| Template::new(*trait_, 80, &capture(seed, i, person, *trait_)))
        .collect();
    // SIS writes forenames in capitals: the hub compares names on their normalised forms.
    let given = [match system {
        SourceSystem::Sis => given.to_uppercase(),
        _ => given,
    }];
    let written = WrittenPerson {
        surname: &surname,
        given: &given,
        date_of_birth: &date_of_birth,
        sex: Sex::Unspecified,
        nationality: "XXA",
        document: Some(WrittenDocument {
            number: &document,
            country: "XXA",
            expiry: None,
        }),
    };
    let id = source_id(system, i);
    let record = match system {
        SourceSystem::Sis => sis_alert(&id, BENCH_STATE, "discreet_check", &written, &[]),
        _ => ees_file(&id, BENCH_STATE, &written),
    };
    let body = with_biometrics(&serde_json::Value::Object(record), &templates);
    (system, person, body)
}

/// The member state whose connectors write every bench record (a connector writes only its
/// own state's records).
pub(crate) const BENCH_STATE: &str = "DE";

/// What each bench record carries, in its order: a face and two index fingers.
const RECORD_TRAITS: [Trait; 3] = [
    Trait::Face,
    Trait::Finger(FingerPosition::RightIndex),
    Trait::Finger(FingerPosition::LeftIndex),
];

/// Record `i`'s capture of a trait of its person: a new capture for every record, so a
/// second appearance never repeats the first one's vectors.
/// The bench's caller: a connector of both systems (of the state that owns every bench
/// record) that also searches them as a border guard.
pub(crate) fn bench_caller() -> anyhow::Result<Principal> {
    Principal::new(
        "bench",
        "BENCH",
        BENCH_STATE,
        ["connector:ees", "connector:sis", "border_guard"]
            .iter()
            .map(|r| r.parse::<interop_hub::access::Role>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e: &str| anyhow::anyhow!(e))?,
    )
    .map_err(|e| anyhow::anyhow!(e))
}

pub(crate) fn capture(seed: u64, i: usize, person: usize, trait_: Trait) -> Vec<f32> {
    let salt = match trait_ {
        Trait::Face => 1,
        Trait::Finger(FingerPosition::RightIndex) => 2,
        Trait::Finger(_) => 3,
    };
    new_capture(
        &base_vector(seed, person as u64, trait_),
        seed ^ ((i as u64) << 8) ^ salt,
    )
}

/// The q-th probe: a new capture of `persons[q]`'s trait, unlike any stored one, with the
/// person it belongs to.
pub(crate) fn probe_captures(
    seed: u64,
    persons: &[usize],
    trait_: Trait,
    salt: u64,
) -> Vec<(usize, Vec<f32>)> {
    persons
        .iter()
        .enumerate()
        .map(|(q, &person)| {
            let capture = new_capture(
                &base_vector(seed, person as u64, trait_),
                seed ^ salt ^ q as u64,
            );
            (person, capture)
        })
        .collect()
}

/// Distinct given names the bench draws from, as real ones are: common, not unique.
const GIVEN_NAMES: usize = 97;

/// A given name from a vocabulary of its own, short where surnames are long: no given name
/// is like anyone's surname, so two persons never look alike by a name written in the other
/// field. Each syllable starts with a consonant of its own phonetic class, so the names
/// keep as many distinct blocking keys.
fn synthetic_given_name(k: usize) -> String {
    spelled(
        k,
        2,
        &["bo", "ka", "te", "fi", "ju", "lo", "me", "na", "ri", "su"],
    )
}

/// Fewest records a run makes: one second appearance under another identity at least.
pub const MIN_TEMPLATES: usize = 20;

/// The second appearance of a person under another identity (see `native_record`).
fn is_assumed_identity(i: usize) -> bool {
    i % 20 == 19
}

const SURNAME_SYLLABLES: [&str; 20] = [
    "ba", "ko", "ri", "tu", "me", "sa", "lo", "ni", "de", "va", "po", "gu", "ze", "fi", "ha", "mo",
    "ru", "te", "ly", "xa",
];

/// Distinct surnames `synthetic_surname` makes: five syllables of twenty.
const SURNAMES: usize = SURNAME_SYLLABLES.len().pow(5);

/// A pronounceable surname unique to `person`, so name blocking stays as selective as
/// real surnames are. The number is scrambled first (a bijection: the multiplier is prime to
/// 20): spelled as it is, neighbouring persons' names would share all but a syllable and
/// look alike to the name matcher.
fn synthetic_surname(person: usize) -> String {
    const SCRAMBLE: usize = 1_234_567;
    spelled(
        (person % SURNAMES) * SCRAMBLE % SURNAMES,
        5,
        &SURNAME_SYLLABLES,
    )
}

/// `k` written as `length` syllables, digit by digit in base `syllables.len()`.
fn spelled(k: usize, length: usize, syllables: &[&str]) -> String {
    let mut rest = k;
    let mut name = String::new();
    for _ in 0..length {
        name.push_str(syllables[rest % syllables.len()]);
        rest /= syllables.len();
    }
    name
}

/// A progress bar on a terminal; elsewhere (CI logs, `nohup`), where the bar is hidden, a
/// plain line every 15 seconds.
pub(crate) struct Progress {
    bar: ProgressBar,
    what: &'static str,
    plain: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn new(length: usize, what: &'static str) -> Self {
        use std::io::IsTerminal as _;
        let bar = ProgressBar::new(length as u64).with_style(
            ProgressStyle::with_template(&format!(
                "{what:>8} {{bar:40}} {{pos}}/{{len}}  {{per_sec}}  eta {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let plain = (!std::io::stderr().is_terminal()).then(|| {
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_secs(15));
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    eprintln!(
                        "{what}: {}/{} ({:.0}/s)",
                        bar.position(),
                        bar.length().unwrap_or(0),
                        bar.per_sec()
                    );
                }
            })
        });
        Self { bar, what, plain }
    }

    pub(crate) fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    pub(crate) fn finish(self) {
        self.bar.finish_and_clear();
        if let Some(plain) = self.plain {
            plain.abort();
            eprintln!("{}: {} done", self.what, self.bar.position());
        }
    }
}

/// The CPU model `/proc/cpuinfo` names, its SIMD extensions that matter to the kernels, and
/// the threads available; "unknown" parts elsewhere.
pub(crate) fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    let flags = field("flags").unwrap_or_default();
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let simd: Vec<&str> = [
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512_vnni",
        "avx_vnni",
        "avx512_fp16",
    ]
    .into_iter()
    .filter(|extension| flags.contains(extension))
    .collect();
    format!(
        "{} ({}), {} threads",
        field("model name").unwrap_or_else(|| "unknown CPU".to_owned()),
        if simd.is_empty() {
            "no x86 SIMD extensions listed".to_owned()
        } else {
            simd.join(" ")
        },
        std::thread::available_parallelism().map_or(1, usize::from)
    )
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1_000.0
}

pub async fn run(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        options.templates >= MIN_TEMPLATES,
        "--templates must be at least {MIN_TEMPLATES}"
    );
    // Assumed identities take surnames from the far end of the range.
    anyhow::ensure!(
        options.templates <= SURNAMES / 2,
        "--templates must be at most {}",
        SURNAMES / 2
    );
    // An earlier run's data would turn every ingest into a replay, over graphs built with
    // that run's settings: the report would describe neither run.
    if let Some(dir) = &options.data_dir {
        let holds_data = match std::fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => anyhow::bail!("--data-dir {}: {e}", dir.display()),
        };
        anyhow::ensure!(
            !holds_data,
            "--data-dir {} is not empty: the benchmark needs a fresh directory",
            dir.display()
        );
    }
    let threads = options.threads.max(1);
    let scratch = tempfile::tempdir()?;
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let mut config = HubConfig::embedded(&data_dir);
    config.settings.detection.expansion_search = options.detection_expansion;
    config.settings.index.expansion_add = options.expansion_add;
    config.settings.search.sketch_shortlist = options.sketch_shortlist;
    // One bench principal makes thousands of searches a second: the budgets meant for
    // officers would measure the limiter, not the search.
    config.settings.limits = interop_hub::config::LimitSettings {
        per_second: u32::MAX,
        burst: u32::MAX,
        agency_per_second: u32::MAX,
        agency_burst: u32::MAX,
        ..interop_hub::config::LimitSettings::default()
    };
    config.settings.validate()?;
    let tuning = config.settings.index_tuning();
    // The bare indexes are searched the usearch way, by walking their graphs.
    let bare_tuning = IndexTuning::new(0, options.expansion_add);
    let tokens = Arc::new(TokenAuthority::load_or_create(&config.keys_dir())?);
    let hub = Arc::new(Hub::open(&config).await?);
    hub.records.prepare(&config.index_dir()).await?;
    // Through the same access checks and audit log as any caller: a connector of both
    // systems (of the state that owns every bench record) that also reads them.
    let caller = Arc::new(bench_caller()?);
    // Reads the hub's metrics, as Prometheus would.
    let operator = Principal::new(
        "bench-operator",
        "BENCH",
        BENCH_STATE,
        vec![
            "admin"
                .parse::<interop_hub::access::Role>()
                .map_err(|e: &str| anyhow::anyhow!(e))?,
        ],
    )
    .map_err(|e| anyhow::anyhow!(e))?;

    // Bodies are made before the clock starts: the benchmark measures the hub, not base64.
    let seed = options.seed;
    let total = options.templates;
    let made = Progress::new(total, "generate");
    let records: Vec<(SourceSystem, usize, String)> = (0..total)
        .map(|i| {
            made.inc(1);
            native_record(seed, i)
        })
        .collect();
    made.finish();

    let bar = Progress::new(total, "ingest");
    let started = Instant::now();
    // Each ingest a task of its own, as the server runs each request: polled by the
    // runtime's workers, not all by the thread that waits for them.
    let records = Arc::new(records);
    let mut ingests = futures::stream::iter((0..records.len()).map(|i| {
        let hub = Arc::clone(&hub);
        let caller = Arc::clone(&caller);
        let records = Arc::clone(&records);
        tokio::spawn(async move {
            let (system, _, body) = &records[i];
            let began = Instant::now();
            let result = hub
                .records
                .ingest(&caller, *system, Some("application/json"), body.as_bytes())
                .await;
            (result, began.elapsed())
        })
    }))
    .buffer_unordered(options.ingest_in_flight.max(1));
    let mut ingest_latency = Duration::ZERO;
    while let Some(joined) = ingests.next().await {
        let (result, latency) = joined.map_err(|e| anyhow::anyhow!("ingest task failed: {e}"))?;
        result.map_err(|e| anyhow::anyhow!("ingest failed: {e}"))?;
        ingest_latency += latency;
        bar.inc(1);
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    drop(ingests);
    bar.finish();
    // Only the bench's ingests have run on this hub so far: each step's seconds in all, as
    // an operator scrapes them.
    let exposition = hub.operations.metrics_text(&operator).await?;
    let ingest_steps: Vec<IngestStepTiming> = IngestStep::ALL
        .into_iter()
        .map(|step| {
            let seconds = step_seconds(&exposition, step.as_str())?;
            Ok(IngestStepTiming {
                step: step.as_str(),
                mean_ms: seconds * 1_000.0 / records.len().max(1) as f64,
            })
        })
        .collect::<anyhow::Result<_>>()?;

    // Probes: new captures of stored persons' faces, and each person's record ids.
    let queries = options.queries.min(total).max(1);
    let step = (total / queries).max(1);
    let persons: Vec<usize> = (0..queries)
        .map(|q| records[(q * step) % total].1)
        .collect();
    let probes = probe_captures(seed, &persons, Trait::Face, 0xBE7C);
    let mut records_of: std::collections::HashMap<usize, Vec<String>> =
        std::collections::HashMap::new();
    for (i, (system, person, _)) in records.iter().enumerate() {
        records_of
            .entry(*person)
            .or_default()
            .push(source_id(*system, i));
    }
    let detection = detection_against_truth(&config, &records).await?;

    let searching = HubProbing {
        hub: &hub,
        config: &config,
        caller: &caller,
        records_of: &records_of,
    };
    let (hub_seconds, hub_first, latencies) = searching.searches(FACE, &probes, threads).await?;
    let (hub_in_flight_seconds, _, _) = searching
        .searches(FACE, &probes, options.http_concurrency.max(1))
        .await?;

    // Fingers too: new captures of the same persons' right index fingers, searched in the
    // finger indexes (both fingers of every record in one index per partition).
    let finger_probes = probe_captures(
        seed,
        &persons,
        Trait::Finger(FingerPosition::RightIndex),
        0xF1A6,
    );
    let (finger_seconds, finger_first, _) =
        searching.searches(FINGER, &finger_probes, threads).await?;

    // The hub's own trade-offs: its face and finger indexes' graphs walked at other
    // expansions, and their sketches scanned at other shortlists, each on a hub opened with
    // it over the index files saved here. Nothing changes the indexes from now on.
    hub.operations.save_indexes().await?;
    let faces_and_fingers = |face_values: &'static [usize], finger_values: &'static [usize]| {
        [
            Curve {
                algorithm: FACE,
                probes: &probes,
                values: face_values,
            },
            Curve {
                algorithm: FINGER,
                probes: &finger_probes,
                values: finger_values,
            },
        ]
    };
    let [hub_curve, hub_finger_curve]: [Vec<CurvePoint>; 2] = searching
        .trade_off(
            Knob::Expansion,
            &faces_and_fingers(&HUB_CURVE, &HUB_FINGER_CURVE),
            threads,
        )
        .await?
        .try_into()
        .map_err(|_| anyhow::anyhow!("two expansion curves"))?;
    let shortlist_points = |curve: Vec<CurvePoint>| -> Vec<ShortlistPoint> {
        curve
            .into_iter()
            .map(|point| ShortlistPoint {
                shortlist: point.expansion_search,
                qps: point.qps,
                recall: point.recall,
            })
            .collect()
    };
    let [face_shortlists, finger_shortlists]: [Vec<CurvePoint>; 2] = searching
        .trade_off(
            Knob::Shortlist,
            &faces_and_fingers(&SHORTLIST_CURVE, &SHORTLIST_CURVE),
            threads,
        )
        .await?
        .try_into()
        .map_err(|_| anyhow::anyhow!("two shortlist curves"))?;
    let hub_shortlist_curve = shortlist_points(face_shortlists);
    let hub_finger_shortlist_curve = shortlist_points(finger_shortlists);
    // The hub's face indexes searched alone: the saved files opened as the hub opens them.
    let stores = [
        IdentityStore::open(&config.civil_url(), &config.settings.database.pool()).await?,
        IdentityStore::open(
            &config.law_enforcement_url(),
            &config.settings.database.pool(),
        )
        .await?,
    ];
    let biometrics = Biometrics::open(
        &config.settings.biometrics,
        tuning,
        &config.index_dir(),
        |partition| match partition {
            Partition::Civil => stores[0].clone(),
            Partition::LawEnforcement => stores[1].clone(),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("the saved indexes: {e}"))?;
    let index_alone_seconds = {
        let indexes: Vec<_> = [Partition::Civil, Partition::LawEnforcement]
            .iter()
            .filter_map(|p| biometrics.index(*p, FACE))
            .collect();
        let probes = probes.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            parallel_count(&probes, threads, |(_, probe)| {
                // Every partition searched, whatever an earlier one found.
                indexes
                    .iter()
                    .filter(|index| index.search(probe, 1).is_ok_and(|found| !found.is_empty()))
                    .count()
                    == indexes.len()
            });
            started.elapsed().as_secs_f64()
        })
        .await?
    };
    let face_bytes: usize = [Partition::Civil, Partition::LawEnforcement]
        .iter()
        .map(|p| biometrics.memory_usage(*p, FACE))
        .sum();
    let face_count: usize = [Partition::Civil, Partition::LawEnforcement]
        .iter()
        .map(|p| biometrics.len(*p, FACE))
        .sum();
    drop(biometrics);
    for store in &stores {
        store.database().close().await;
    }

    // The baselines get the same vectors: every record's templates, and its face keyed by
    // person.
    let record_vectors: Vec<RecordVectors> = records
        .iter()
        .enumerate()
        .map(|(i, (system, person, _))| RecordVectors::of(seed, i, *system, *person))
        .collect();
    let faces: Vec<(u64, Vec<f32>)> = records
        .iter()
        .zip(&record_vectors)
        .map(|((_, person, _), vectors)| (*person as u64, vectors.face().to_vec()))
        .collect();
    if let Some(dir) = &options.export_vectors {
        export_vectors(dir, &faces, &probes)?;
    }
    let probes = Arc::new(probes);
    let faces = Arc::new(faces);
    let bare = {
        let (probes, faces) = (Arc::clone(&probes), Arc::clone(&faces));
        let tables = BareTables {
            quantisation: options.quantisation_table,
            connectivity: options.connectivity_table,
        };
        tokio::task::spawn_blocking(move || {
            bare_usearch(&faces, &probes, threads, tables, bare_tuning)
        })
        .await??
    };
    let (bare_seconds, bare_first) = bare.at_hub_settings;
    let head_to_head = searching
        .head_to_head(
            Arc::new(bare.at_hub),
            &probes,
            (threads, options.http_concurrency.max(1)),
            hub_first as f64 / probes.len().max(1) as f64,
        )
        .await?;
    let (exact_seconds, exact_first) = {
        let (probes, faces) = (Arc::clone(&probes), Arc::clone(&faces));
        tokio::task::spawn_blocking(move || exact_scan(&faces, &probes, threads)).await?
    };
    let bare_ingest = {
        let neighbours = config.settings.detection.neighbours_per_template;
        let expansion = options.detection_expansion;
        tokio::task::spawn_blocking(move || {
            bare_ingest(&record_vectors, threads, expansion, neighbours, bare_tuning)
        })
        .await??
    };

    let portal = portal_over_http(
        &hub,
        &tokens,
        &probes,
        &records_of,
        options.http_concurrency,
    )
    .await?;

    hub.operations.close().await;
    drop(hub);
    let started = Instant::now();
    let reopened = Hub::open(&config).await?;
    reopened.records.prepare(&config.index_dir()).await?;
    let ready_after_restart_s = started.elapsed().as_secs_f64();
    reopened.operations.close().await;

    let qps = |seconds: f64| queries as f64 / seconds.max(f64::EPSILON);
    let share = |first: usize| first as f64 / queries as f64;
    let ingest_records_per_s = total as f64 / ingest_seconds.max(f64::EPSILON);
    Ok(BenchReport {
        cpu: cpu_description(),
        templates: total,
        queries,
        threads,
        ingest_records_per_s,
        ingest_records_per_s_bare: bare_ingest.records_per_s,
        ingest_hub_to_bare_ratio: ingest_records_per_s
            / bare_ingest.records_per_s.max(f64::EPSILON),
        bare_ingest_mate_recall: bare_ingest.mates_found as f64
            / bare_ingest.second_appearances.max(1) as f64,
        ingest_in_flight: options.ingest_in_flight.max(1),
        ingest_mean_ms: ingest_latency.as_secs_f64() * 1_000.0 / total.max(1) as f64,
        ingest_steps,
        detection_expansion_search: options.detection_expansion,
        detection_recall: detection.linked as f64 / detection.pairs.max(1) as f64,
        detection_recall_assumed_identity: detection.assumed_linked as f64
            / detection.assumed_pairs.max(1) as f64,
        detection_false_links: detection.false_links,
        search_qps_hub: qps(hub_seconds),
        search_qps_hub_in_flight: qps(hub_in_flight_seconds),
        search_qps_bare_usearch: qps(bare_seconds),
        quantization_curve: bare.quantizations,
        search_qps_bare_partitioned: qps(bare.partitioned.0),
        recall_bare_partitioned: share(bare.partitioned.1),
        hub_to_bare_partitioned_ratio: qps(hub_seconds) / qps(bare.partitioned.0),
        kernel: format!("{:?}", bare.kernel),
        bare_adds_per_s: bare.adds_per_s,
        expansion_curve: bare
            .connectivities
            .first()
            .map(|hub_row| hub_row.curve.clone())
            .unwrap_or_default(),
        connectivity_curve: bare.connectivities,
        hub_expansion_curve: hub_curve,
        hub_finger_expansion_curve: hub_finger_curve,
        shortlist: tuning.sketch_shortlist,
        expansion_add: tuning.expansion_add,
        bare_expansion_add: bare_tuning.expansion_add,
        hub_shortlist_curve,
        hub_finger_shortlist_curve,
        search_qps_index_alone: qps(index_alone_seconds),
        hub_to_index_ratio: qps(hub_seconds) / qps(index_alone_seconds),
        search_qps_exact: qps(exact_seconds),
        hub_to_bare_ratio: head_to_head.ratio,
        head_to_head,
        bare_to_exact_ratio: qps(bare_seconds) / qps(exact_seconds),
        recall_genuine_mate: share(hub_first),
        recall_genuine_mate_finger: share(finger_first),
        search_qps_hub_finger: queries as f64 / finger_seconds.max(f64::EPSILON),
        recall_bare_usearch: share(bare_first),
        recall_exact: share(exact_first),
        search_p50_ms: percentile(&latencies, 0.50),
        search_p99_ms: percentile(&latencies, 0.99),
        bytes_per_template: face_bytes as f64 / face_count.max(1) as f64,
        ready_after_restart_s,
        portal_http_concurrency: options.http_concurrency,
        portal_http_requests_per_s: queries as f64 / portal.seconds.max(f64::EPSILON),
        portal_http_p50_ms: percentile(&portal.latencies, 0.50),
        portal_http_p99_ms: percentile(&portal.latencies, 0.99),
        portal_http_errors: portal.errors,
        portal_recall_genuine_mate: share(portal.first),
    })
}

/// Bench record `i`'s source id in `system`.
pub(crate) fn source_id(system: SourceSystem, i: usize) -> String {
    let prefix = if system == SourceSystem::Sis {
        "SIS"
    } else {
        "EES"
    };
    format!("{prefix}-BENCH-{i:08}")
}

/// What ingest's detection linked, against the persons the bench made.
struct DetectionRun {
    pairs: usize,
    linked: usize,
    assumed_pairs: usize,
    assumed_linked: usize,
    false_links: usize,
}

/// Every link the detector stored, compared with the known second appearances: how many
/// were linked to their first, and how many links join two different persons.
async fn detection_against_truth(
    config: &HubConfig,
    records: &[(SourceSystem, usize, String)],
) -> anyhow::Result<DetectionRun> {
    let person_of: std::collections::HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, (system, person, _))| (source_id(*system, i), *person))
        .collect();
    let mut linked_persons = std::collections::HashSet::new();
    let mut false_links = 0;
    // Straight from the links database, unfiltered: the bench's check against its ground
    // truth, never a caller's view.
    let links = LinkStore::open(&config.mid_url(), &config.settings.database.pool()).await?;
    let stored = links.list_all(time::OffsetDateTime::now_utc()).await;
    links.database().close().await;
    for link in stored? {
        let [a, b] = &link.records;
        match (person_of.get(&a.source_id), person_of.get(&b.source_id)) {
            (Some(a), Some(b)) if a == b => {
                linked_persons.insert(*a);
            }
            _ => false_links += 1,
        }
    }
    let mut run = DetectionRun {
        pairs: 0,
        linked: 0,
        assumed_pairs: 0,
        assumed_linked: 0,
        false_links,
    };
    for (i, (_, person, _)) in records.iter().enumerate().filter(|(i, _)| i % 10 == 9) {
        let linked = usize::from(linked_persons.contains(person));
        run.pairs += 1;
        run.linked += linked;
        if is_assumed_identity(i) {
            run.assumed_pairs += 1;
            run.assumed_linked += linked;
        }
    }
    Ok(run)
}

/// What every pass of probes through the hub's 1:N search shares: the hub and its index
/// tuning, the caller, and each person's record ids (a probe's true mates).
struct HubProbing<'a> {
    hub: &'a Arc<Hub>,
    config: &'a HubConfig,
    caller: &'a Arc<Principal>,
    records_of: &'a std::collections::HashMap<usize, Vec<String>>,
}

impl HubProbing<'_> {
    /// Every probe through `Portal::search_biometric`, `in_flight` at once: seconds taken, probes
    /// whose true mate came first, and each search's latency, sorted.
    async fn searches(
        &self,
        algorithm: &'static str,
        probes: &[(usize, Vec<f32>)],
        in_flight: usize,
    ) -> anyhow::Result<(f64, usize, Vec<Duration>)> {
        let HubProbing {
            hub,
            caller,
            records_of,
            ..
        } = self;
        let bar = Progress::new(probes.len(), "hub");
        let started = Instant::now();
        let mut searches = futures::stream::iter(probes.iter().map(|(person, probe)| {
            let hub = Arc::clone(hub);
            let caller = Arc::clone(caller);
            let data = STANDARD.encode(connectors::vector_base64::to_bytes(probe));
            async move {
                let began = Instant::now();
                let answer = hub
                    .portal
                    .search_biometric(
                        &caller,
                        BiometricSearch {
                            purpose: Purpose::BorderCheck,
                            capture: None,
                            algorithm: algorithm.to_owned(),
                            data,
                            limit: Some(1),
                        },
                    )
                    .await;
                (*person, answer, began.elapsed())
            }
        }))
        .buffer_unordered(in_flight);
        let mut latencies = Vec::with_capacity(probes.len());
        let mut first = 0_usize;
        while let Some((person, answer, latency)) = searches.next().await {
            let answer = answer.map_err(|e| anyhow::anyhow!("search failed: {e}"))?;
            let expected = records_of
                .get(&person)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if answer
                .hits
                .first()
                .is_some_and(|hit| expected.contains(&hit.record.source_id))
            {
                first += 1;
            }
            latencies.push(latency);
            bar.inc(1);
        }
        let seconds = started.elapsed().as_secs_f64();
        drop(searches);
        bar.finish();
        latencies.sort_unstable();
        Ok((seconds, first, latencies))
    }

    /// The hub's face search and `bare` timed in turns: see [`HeadToHead`].
    async fn head_to_head(
        &self,
        bare: Arc<BareIndex>,
        probes: &[(usize, Vec<f32>)],
        (threads, hub_in_flight): (usize, usize),
        hub_recall: f64,
    ) -> anyhow::Result<HeadToHead> {
        let matching = Arc::clone(&bare);
        // Each expansion tried searches every probe: the last of them warms the index.
        let (bare_expansion_search, bare_recall) = tokio::task::spawn_blocking(move || {
            matching_expansion(hub_recall, |expansion| {
                matching.index.change_expansion_search(expansion);
                matching.recall(matching.timed(threads).1)
            })
        })
        .await?;
        self.searches(
            FACE,
            &probes[..WARM_UP_PROBES.min(probes.len())],
            hub_in_flight,
        )
        .await?;
        let qps = |seconds: f64| probes.len() as f64 / seconds.max(f64::EPSILON);
        let mut rounds = Vec::with_capacity(HEAD_TO_HEAD_ROUNDS);
        for _ in 0..HEAD_TO_HEAD_ROUNDS {
            let (hub_seconds, _, _) = self.searches(FACE, probes, hub_in_flight).await?;
            let (hub_threads_seconds, _, _) = self.searches(FACE, probes, threads).await?;
            let timing = Arc::clone(&bare);
            let (bare_seconds, _) =
                tokio::task::spawn_blocking(move || timing.timed(threads)).await?;
            rounds.push(HeadToHeadRound {
                hub_qps: qps(hub_seconds),
                hub_qps_threads_in_flight: qps(hub_threads_seconds),
                bare_qps: qps(bare_seconds),
            });
        }
        let best =
            |qps_of: fn(&HeadToHeadRound) -> f64| rounds.iter().map(qps_of).fold(0.0_f64, f64::max);
        let (hub_qps, bare_qps) = (best(|r| r.hub_qps), best(|r| r.bare_qps));
        let hub_qps_threads_in_flight = best(|r| r.hub_qps_threads_in_flight);
        Ok(HeadToHead {
            bare_expansion_search,
            bare_recall,
            hub_recall,
            hub_in_flight,
            hub_qps,
            hub_qps_threads_in_flight,
            bare_qps,
            ratio: hub_qps / bare_qps.max(f64::EPSILON),
            ratio_threads_in_flight: hub_qps_threads_in_flight / bare_qps.max(f64::EPSILON),
            rounds,
        })
    }

    /// The hub's searches at each value of `knob` (for expansions, the graph walked instead
    /// of the sketches scanned), one curve per entry of `curves`: for each value a hub opened
    /// on the same databases and saved index files with the setting at that value
    /// (`search.expansion_search`, `search.sketch_shortlist`; every algorithm alike, so one
    /// hub serves every curve that visits the value), its graphs as built
    /// (`index.expansion_add` kept, so nothing is rebuilt), warmed before it is timed.
    async fn trade_off(
        &self,
        knob: Knob,
        curves: &[Curve<'_>],
        in_flight: usize,
    ) -> anyhow::Result<Vec<Vec<CurvePoint>>> {
        let values: std::collections::BTreeSet<usize> = curves
            .iter()
            .flat_map(|curve| curve.values.iter().copied())
            .collect();
        let mut points = vec![Vec::new(); curves.len()];
        for value in values {
            let mut config = self.config.clone();
            config.settings.index.expansion_add =
                Some(self.config.settings.index_tuning().expansion_add);
            match knob {
                Knob::Expansion => {
                    config.settings.search.sketch_shortlist = 0;
                    config.settings.search.expansion_search = Some(value);
                }
                Knob::Shortlist => config.settings.search.sketch_shortlist = value,
            }
            let tuned = Arc::new(Hub::open(&config).await?);
            tuned.records.prepare(&config.index_dir()).await?;
            let probing = HubProbing {
                hub: &tuned,
                config: &config,
                caller: self.caller,
                records_of: self.records_of,
            };
            let measured = probing.curve_points(curves, value, in_flight).await;
            tuned.operations.close().await;
            for (curve, point) in points.iter_mut().zip(measured?) {
                curve.extend(point);
            }
        }
        Ok(points)
    }

    /// On a hub just opened, each curve's point at `value` (none for a curve that does not
    /// visit it). Its caches (policy decisions, the databases' pages) are cold: warmed first,
    /// as the hub the other figures come from was by the ingest.
    async fn curve_points(
        &self,
        curves: &[Curve<'_>],
        value: usize,
        in_flight: usize,
    ) -> anyhow::Result<Vec<Option<CurvePoint>>> {
        let mut points = Vec::with_capacity(curves.len());
        for curve in curves {
            if !curve.values.contains(&value) {
                points.push(None);
                continue;
            }
            let probes = curve.probes;
            let warm_up = &probes[..probes.len().min(WARM_UP_PROBES)];
            self.searches(curve.algorithm, warm_up, in_flight).await?;
            let (seconds, first, _) = self.searches(curve.algorithm, probes, in_flight).await?;
            points.push(Some(CurvePoint {
                expansion_search: value,
                qps: probes.len() as f64 / seconds.max(f64::EPSILON),
                recall: first as f64 / probes.len().max(1) as f64,
            }));
        }
        Ok(points)
    }
}

/// One trade-off curve: an algorithm's probes, searched at each of `values`.
struct Curve<'p> {
    algorithm: &'static str,
    probes: &'p [(usize, Vec<f32>)],
    values: &'p [usize],
}

/// What the HTTP load test saw.
struct PortalRun {
    seconds: f64,
    latencies: Vec<Duration>,
    errors: usize,
    first: usize,
}

/// Serves the hub on a local port and sends every probe to `POST /v1/search` as a border
/// guard would, `concurrency` requests in flight at once.
async fn portal_over_http(
    hub: &Arc<Hub>,
    tokens: &Arc<TokenAuthority>,
    probes: &[(usize, Vec<f32>)],
    records_of: &std::collections::HashMap<usize, Vec<String>>,
    concurrency: usize,
) -> anyhow::Result<PortalRun> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    let state = AppState {
        hub: Arc::clone(hub),
        tokens: Arc::clone(tokens),
        max_body_bytes: interop_hub::config::Settings::default().max_body_bytes,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        interop_hub::http::serve(
            listener,
            interop_hub::http::router(state),
            &interop_hub::config::ServerSettings::default(),
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    let guard = Principal::new(
        "bench",
        "BENCH",
        "DE",
        vec![
            "border_guard"
                .parse()
                .map_err(|e: &str| anyhow::anyhow!(e))?,
        ],
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let token = tokens.mint(
        &guard,
        time::OffsetDateTime::now_utc(),
        time::Duration::hours(8),
    )?;
    let client = reqwest::Client::new();
    let url = format!("http://{address}/v1/search");
    let bar = Progress::new(probes.len(), "portal");
    let started = Instant::now();
    let mut requests = futures::stream::iter(probes.iter().map(|(person, probe)| {
        let body = serde_json::json!({
            "purpose": "border_check",
            "biometric": [{"modality": "face", "algorithm": FACE,
                           "data": STANDARD.encode(connectors::vector_base64::to_bytes(probe))}],
        });
        let (client, url, token) = (&client, &url, &token);
        async move {
            let began = Instant::now();
            let answer = client.post(url).bearer_auth(token).json(&body).send().await;
            let answer = match answer {
                Ok(response) if response.status().is_success() => {
                    response.json::<serde_json::Value>().await.ok()
                }
                _ => None,
            };
            (*person, answer, began.elapsed())
        }
    }))
    .buffer_unordered(concurrency.max(1));
    let mut run = PortalRun {
        seconds: 0.0,
        latencies: Vec::with_capacity(probes.len()),
        errors: 0,
        first: 0,
    };
    while let Some((person, answer, latency)) = requests.next().await {
        run.latencies.push(latency);
        bar.inc(1);
        let Some(answer) = answer else {
            run.errors += 1;
            continue;
        };
        let expected = records_of
            .get(&person)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Each system answers its own records best first: the mate is first in its system.
        let mate_first = answer["results"].as_array().is_some_and(|systems| {
            systems.iter().any(|system| {
                system["records"][0]["record"]["record"]["source_id"]
                    .as_str()
                    .is_some_and(|id| expected.iter().any(|e| e == id))
            })
        });
        run.first += usize::from(mate_first);
    }
    run.seconds = started.elapsed().as_secs_f64();
    drop(requests);
    bar.finish();
    run.latencies.sort_unstable();
    let _ = stop.send(());
    server.await??;
    Ok(run)
}

fn unit(vector: &[f32]) -> Vec<f32> {
    let norm = vector
        .iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum::<f64>()
        .sqrt();
    vector
        .iter()
        .map(|v| (f64::from(*v) / norm.max(f64::MIN_POSITIVE)) as f32)
        .collect()
}

/// What the bare index did: seconds and mates found first per search pass.
struct BareRun {
    kernel: kernels::Installed,
    adds_per_s: f64,
    at_hub_settings: (f64, usize),
    quantizations: Vec<QuantizationPoint>,
    partitioned: (f64, usize),
    /// The hub's connectivity first: its curve is the bare index's expansion curve.
    connectivities: Vec<ConnectivityPoint>,
    /// The index built with the hub's settings, for the head-to-head.
    at_hub: BareIndex,
}

/// A bare index as the head-to-head searches it: built with the hub's settings, searched
/// with the probes as unit vectors (the hub normalises every probe before its index sees it).
struct BareIndex {
    index: usearch::Index,
    storing: Storing,
    /// The person each key (a position in the bench's faces) belongs to.
    persons: Vec<u64>,
    probes: Vec<(usize, Vec<f32>)>,
}

impl BareIndex {
    /// Every probe searched, `threads` at a time: seconds taken and probes whose true mate
    /// came first.
    fn timed(&self, threads: usize) -> (f64, usize) {
        mates_first(
            self.storing,
            &self.index,
            &self.probes,
            threads,
            |slot, person| mate_at(&self.persons, slot, person),
        )
    }

    fn recall(&self, first: usize) -> f64 {
        first as f64 / self.probes.len().max(1) as f64
    }
}

/// The index settings the hub gives `algorithm`'s templates.
fn hub_settings(
    algorithm: &str,
    tuning: IndexTuning,
) -> anyhow::Result<interop_hub::biometrics::ann::IndexSettings> {
    connectors::AlgorithmRegistry::default()
        .get(algorithm)
        .map(|algorithm| settings_for(algorithm, tuning))
        .ok_or_else(|| anyhow::anyhow!("algorithm {algorithm} is not registered"))
}

/// The seconds `step` took in all, from the hub's Prometheus exposition.
fn step_seconds(exposition: &str, step: &str) -> anyhow::Result<f64> {
    let series = format!("interop_hub_ingest_step_duration_seconds_sum{{step=\"{step}\"}} ");
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the metrics hold no total for the ingest step {step}"))
}

/// Searches a hub opened for a trade-off point makes before it is timed.
const WARM_UP_PROBES: usize = 200;

/// Expansions the trade-off curve visits.
const CURVE: [usize; 5] = [32, 64, 128, 256, 512];
/// Connectivities the connectivity table builds besides the hub's.
const CONNECTIVITIES: [usize; 3] = [8, 24, 32];
/// Expansions the hub's trade-off curve visits.
const HUB_CURVE: [usize; 4] = [64, 128, 192, 512];
/// Expansions the hub's finger trade-off curve visits.
const HUB_FINGER_CURVE: [usize; 5] = [64, 128, 192, 256, 512];
/// Shortlists the hub's sketch trade-off curves visit.
const SHORTLIST_CURVE: [usize; 4] = [1, 4, 16, 64];

/// Which search setting a hub trade-off curve varies.
#[derive(Debug, Clone, Copy)]
enum Knob {
    Expansion,
    Shortlist,
}

/// How a bare index stores its vectors: as the hub would at a quantisation (with the kernel
/// the hub installs); the same with usearch's own distance kernel; or (for `i8`) through
/// usearch's own cast, searched with the kernel the hub installs.
#[derive(Debug, Clone, Copy)]
enum Storing {
    Hub(Quantization),
    UsearchKernel(Quantization),
    UsearchCastI8,
}

impl Storing {
    fn name(self) -> String {
        match self {
            Self::Hub(quantization) => format!("{quantization:?}").to_lowercase(),
            Self::UsearchKernel(quantization) => {
                format!("{quantization:?}_usearch_kernel").to_lowercase()
            }
            Self::UsearchCastI8 => "i8_usearch_cast".to_owned(),
        }
    }

    fn quantization(self) -> Quantization {
        match self {
            Self::Hub(quantization) | Self::UsearchKernel(quantization) => quantization,
            Self::UsearchCastI8 => Quantization::I8,
        }
    }

    /// An empty bare index with `settings`' graph, stored this way, with room for `capacity`
    /// members and for `threads` searches beside one inserter.
    fn empty_index(
        self,
        settings: &IndexSettings,
        capacity: usize,
        threads: usize,
    ) -> anyhow::Result<(usearch::Index, kernels::Installed)> {
        let options = IndexSettings {
            quantization: self.quantization(),
            ..settings.clone()
        }
        .usearch_options();
        let mut index =
            usearch::Index::new(&options).map_err(|e| anyhow::anyhow!("usearch: {e}"))?;
        let kernel = match self {
            Self::UsearchKernel(_) => kernels::Installed::Builtin,
            Self::Hub(_) | Self::UsearchCastI8 => kernels::install_unit_cosine(&mut index),
        };
        index
            .reserve_capacity_and_threads(capacity.max(1), threads + 1)
            .map_err(|e| anyhow::anyhow!("usearch: {e}"))?;
        Ok((index, kernel))
    }

    fn add(self, index: &usearch::Index, key: u64, unit: &[f32]) -> anyhow::Result<()> {
        match self {
            Self::Hub(quantization) | Self::UsearchKernel(quantization) => {
                Ok(quantization.add_unit(index, key, unit)?)
            }
            Self::UsearchCastI8 => index
                .add(key, unit)
                .map_err(|e| anyhow::anyhow!("usearch: {e}")),
        }
    }

    fn search(
        self,
        index: &usearch::Index,
        unit: &[f32],
        count: usize,
    ) -> Option<usearch::ffi::Matches> {
        match self {
            Self::Hub(quantization) | Self::UsearchKernel(quantization) => {
                quantization.search_unit(index, unit, count).ok()
            }
            Self::UsearchCastI8 => index.search(unit, count).ok(),
        }
    }
}

/// Which of the bare index's optional tables a run builds.
#[derive(Debug, Clone, Copy)]
struct BareTables {
    quantisation: bool,
    connectivity: bool,
}

/// A bare usearch index with the hub's settings for the face algorithm (its distance kernel
/// too), built from the same vectors one insert at a time (as the hub inserts), searched from
/// `threads` threads at the hub's expansion and at each expansion of the curve; the same
/// vectors at the other quantisations (searched at the hub's expansion) and connectivities
/// (searched at each expansion of the curve); and two indexes split as the hub's partitions
/// are.
fn bare_usearch(
    faces: &[(u64, Vec<f32>)],
    probes: &[(usize, Vec<f32>)],
    threads: usize,
    tables: BareTables,
    tuning: IndexTuning,
) -> anyhow::Result<BareRun> {
    let settings = hub_settings(FACE, tuning)?;
    // The hub normalises every probe before it reaches usearch; so does the baseline, before
    // its clock starts.
    let probes: Vec<(usize, Vec<f32>)> = probes.iter().map(|(p, v)| (*p, unit(v))).collect();
    let persons: Vec<u64> = faces.iter().map(|(person, _)| *person).collect();
    let is_mate = |slot: u64, person: usize| mate_at(&persons, slot, person);
    // Keys are positions in `faces`: a person's second record gets a key of its own.
    let build = |storing: Storing,
                 settings: &IndexSettings,
                 members: &mut dyn Iterator<Item = usize>,
                 bar: Option<&Progress>|
     -> anyhow::Result<(usearch::Index, kernels::Installed, f64)> {
        let (index, kernel) = storing.empty_index(settings, faces.len(), threads)?;
        let started = Instant::now();
        let mut added = 0_usize;
        for slot in members {
            storing.add(&index, slot as u64, &faces[slot].1)?;
            added += 1;
            if let Some(bar) = bar {
                bar.inc(1);
            }
        }
        let adds_per_s = added as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON);
        Ok((index, kernel, adds_per_s))
    };
    let timed = |storing: Storing, index: &usearch::Index| {
        mates_first(storing, index, &probes, threads, is_mate)
    };
    let share = |first: usize| first as f64 / probes.len().max(1) as f64;
    let qps = |seconds: f64| probes.len() as f64 / seconds.max(f64::EPSILON);

    let hub_storing = Storing::Hub(settings.quantization);
    let bar = Progress::new(faces.len(), "bare");
    let (index, kernel, adds_per_s) =
        build(hub_storing, &settings, &mut (0..faces.len()), Some(&bar))?;
    bar.finish();
    let at_hub_settings = timed(hub_storing, &index);
    let curve_of = |index: &usearch::Index| -> Vec<CurvePoint> {
        CURVE
            .iter()
            .map(|&expansion_search| {
                index.change_expansion_search(expansion_search);
                let (seconds, first) = timed(hub_storing, index);
                CurvePoint {
                    expansion_search,
                    qps: qps(seconds),
                    recall: share(first),
                }
            })
            .collect()
    };
    let bytes_per_template =
        |index: &usearch::Index| index.serialized_length() as f64 / index.size().max(1) as f64;
    let mut connectivities = vec![ConnectivityPoint {
        connectivity: settings.connectivity,
        adds_per_s,
        serialized_bytes_per_template: bytes_per_template(&index),
        curve: curve_of(&index),
    }];
    index.change_expansion_search(settings.expansion_search);
    let at_hub = BareIndex {
        index,
        storing: hub_storing,
        persons: persons.clone(),
        probes: probes.clone(),
    };
    let other_connectivities: Vec<usize> = if tables.connectivity {
        CONNECTIVITIES
            .into_iter()
            .filter(|&m| m != settings.connectivity)
            .collect()
    } else {
        Vec::new()
    };
    let bar = (!other_connectivities.is_empty())
        .then(|| Progress::new(faces.len() * other_connectivities.len(), "connectivity"));
    for connectivity in other_connectivities {
        let at = IndexSettings {
            connectivity,
            ..settings.clone()
        };
        let (index, _, adds_per_s) = build(hub_storing, &at, &mut (0..faces.len()), bar.as_ref())?;
        connectivities.push(ConnectivityPoint {
            connectivity,
            adds_per_s,
            serialized_bytes_per_template: bytes_per_template(&index),
            curve: curve_of(&index),
        });
    }
    if let Some(bar) = bar {
        bar.finish();
    }

    let mut quantizations = vec![QuantizationPoint {
        quantization: hub_storing.name(),
        qps: qps(at_hub_settings.0),
        recall: share(at_hub_settings.1),
        adds_per_s,
    }];
    let others: &[Storing] = if tables.quantisation {
        &[
            Storing::Hub(Quantization::F32),
            Storing::Hub(Quantization::F16),
            Storing::Hub(Quantization::I8),
            Storing::UsearchKernel(Quantization::I8),
            Storing::UsearchCastI8,
        ]
    } else {
        &[]
    };
    let bar = (!others.is_empty()).then(|| Progress::new(faces.len() * others.len(), "quantise"));
    for &storing in others {
        let measured_already = match storing {
            Storing::Hub(quantization) => quantization == settings.quantization,
            // Where the hub keeps usearch's kernel, the first row is this one.
            Storing::UsearchKernel(quantization) => {
                quantization == settings.quantization && kernel == kernels::Installed::Builtin
            }
            Storing::UsearchCastI8 => false,
        };
        if measured_already {
            if let Some(bar) = &bar {
                bar.inc(faces.len() as u64);
            }
            continue;
        }
        let (index, _, adds_per_s) =
            build(storing, &settings, &mut (0..faces.len()), bar.as_ref())?;
        let (seconds, first) = timed(storing, &index);
        quantizations.push(QuantizationPoint {
            quantization: storing.name(),
            qps: qps(seconds),
            recall: share(first),
            adds_per_s,
        });
    }
    if let Some(bar) = bar {
        bar.finish();
    }

    // Split as the hub splits them: even records are EES (civil), odd ones SIS (law
    // enforcement); each probe searches both, asking each for as many as the hub asks.
    let halves = [
        build(
            hub_storing,
            &settings,
            &mut (0..faces.len()).step_by(2),
            None,
        )?
        .0,
        build(
            hub_storing,
            &settings,
            &mut (1..faces.len()).step_by(2),
            None,
        )?
        .0,
    ];
    let started = Instant::now();
    let first = parallel_count(&probes, threads, |(person, probe)| {
        halves
            .iter()
            .filter_map(|half| hub_storing.search(half, probe, NEIGHBOURS_PER_WANTED_RECORD))
            .filter_map(|m| Some((*m.keys.first()?, *m.distances.first()?)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .is_some_and(|(slot, _)| is_mate(slot, *person))
    });
    let partitioned = (started.elapsed().as_secs_f64(), first);
    Ok(BareRun {
        kernel,
        adds_per_s,
        at_hub_settings,
        quantizations,
        partitioned,
        connectivities,
        at_hub,
    })
}

/// One bench record's index work: its partition (0 civil, 1 law enforcement) and its
/// templates as unit vectors, in [`RECORD_TRAITS`]' order.
struct RecordVectors {
    partition: usize,
    templates: [Vec<f32>; 3],
}

impl RecordVectors {
    fn of(seed: u64, i: usize, system: SourceSystem, person: usize) -> Self {
        Self {
            partition: usize::from(system.partition() == Partition::LawEnforcement),
            templates: RECORD_TRAITS.map(|trait_| unit(&capture(seed, i, person, trait_))),
        }
    }

    fn face(&self) -> &[f32] {
        const _: () = assert!(matches!(RECORD_TRAITS[0], Trait::Face));
        &self.templates[0]
    }
}

/// What the bare indexes did with ingest's index work.
struct BareIngest {
    records_per_s: f64,
    /// Second appearances found among the neighbours of their first appearance's searches or
    /// of theirs (records in flight finish in either order, as in the hub).
    mates_found: usize,
    second_appearances: usize,
}

/// The algorithm of each of a record's templates, in [`RECORD_TRAITS`]' order: both fingers
/// go into the one finger index of their partition, as in the hub.
fn algorithm_of(trait_: Trait) -> &'static str {
    match trait_ {
        Trait::Face => FACE,
        Trait::Finger(_) => FINGER,
    }
}

/// Ingest's index work on bare usearch indexes laid out as the hub's (one per partition ×
/// algorithm, the hub's settings and distance kernel): each record's face and two fingers go
/// into its partition's indexes, then each is searched in both partitions at the detector's
/// `ef`, asking for as many neighbours as the detector does; `threads` records at a time, one
/// insertion at a time per index (as in the hub: concurrent usearch inserts strand nodes),
/// searches beside it. No parsing, store, matching or audit: the speed ingest is measured
/// against.
fn bare_ingest(
    records: &[RecordVectors],
    threads: usize,
    expansion: usize,
    neighbours: usize,
    tuning: IndexTuning,
) -> anyhow::Result<BareIngest> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// One algorithm's indexes, one per partition, each with its writer lock.
    struct Indexes {
        quantization: Quantization,
        per_partition: Vec<(usearch::Index, Mutex<()>)>,
    }

    let mut indexes: HashMap<&str, Indexes> = HashMap::new();
    for algorithm in RECORD_TRAITS.map(algorithm_of) {
        if indexes.contains_key(algorithm) {
            continue;
        }
        let settings = hub_settings(algorithm, tuning)?;
        let per_record = RECORD_TRAITS
            .iter()
            .filter(|t| algorithm_of(**t) == algorithm)
            .count();
        let mut per_partition = Vec::new();
        for partition in 0..2 {
            let members = records.iter().filter(|r| r.partition == partition).count();
            let (index, _) = Storing::Hub(settings.quantization).empty_index(
                &settings,
                members * per_record,
                threads,
            )?;
            index.change_expansion_search(expansion);
            per_partition.push((index, Mutex::new(())));
        }
        indexes.insert(
            algorithm,
            Indexes {
                quantization: settings.quantization,
                per_partition,
            },
        );
    }
    // Template t of record i is key 3i + t in its index, so a key names its record.
    let key = |i: usize, t: usize| (RECORD_TRAITS.len() * i + t) as u64;
    let record_of = |key: u64| key as usize / RECORD_TRAITS.len();
    // Pair p: record 10p + 8 and its second appearance 10p + 9.
    let pair_found: Vec<AtomicBool> = (0..records.len() / 10)
        .map(|_| AtomicBool::new(false))
        .collect();
    let partner = |i: usize| match i % 10 {
        8 => Some(i + 1),
        9 => Some(i - 1),
        _ => None,
    };
    let work = |i: usize| -> anyhow::Result<()> {
        let record = &records[i];
        let mut found = Vec::new();
        for (t, (trait_, vector)) in RECORD_TRAITS.iter().zip(&record.templates).enumerate() {
            let Indexes {
                quantization,
                per_partition,
            } = &indexes[algorithm_of(*trait_)];
            let (index, writer) = &per_partition[record.partition];
            {
                let _writer = writer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                quantization.add_unit(index, key(i, t), vector)?;
            }
            for (index, _) in per_partition {
                let matches = quantization.search_unit(index, vector, neighbours)?;
                found.extend(matches.keys.iter().map(|k| record_of(*k)));
            }
        }
        if let (Some(partner), Some(pair)) = (partner(i), pair_found.get(i / 10))
            && found.contains(&partner)
        {
            pair.store(true, Ordering::Relaxed);
        }
        Ok(())
    };

    let bar = Progress::new(records.len(), "bare ingest");
    let started = Instant::now();
    // Records one at a time until every index holds one: no search may race an index's first
    // insertion (see `AnnIndex::insert`).
    let mut alone = 0;
    while alone < records.len()
        && indexes
            .values()
            .any(|i| i.per_partition.iter().any(|(index, _)| index.size() == 0))
    {
        work(alone)?;
        bar.inc(1);
        alone += 1;
    }
    let next = AtomicUsize::new(alone);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= records.len() {
                            return Ok(());
                        }
                        work(i)?;
                        bar.inc(1);
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("a bare ingest thread panicked"))?
        })
    })?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish();
    Ok(BareIngest {
        records_per_s: records.len() as f64 / seconds.max(f64::EPSILON),
        mates_found: pair_found
            .iter()
            .filter(|f| f.load(Ordering::Relaxed))
            .count(),
        second_appearances: pair_found.len(),
    })
}

/// Writes `faces.f32` (unit vectors, row after row), `face_persons.u64`, `probes.f32` (as
/// sent to the hub) and `probe_persons.u64`, all little-endian, and `shape.json`.
fn export_vectors(
    dir: &std::path::Path,
    faces: &[(u64, Vec<f32>)],
    probes: &[(usize, Vec<f32>)],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let floats = |rows: &mut dyn Iterator<Item = &Vec<f32>>| -> Vec<u8> {
        rows.flat_map(|row| row.iter().flat_map(|x| x.to_le_bytes()))
            .collect()
    };
    let persons = |ids: &mut dyn Iterator<Item = u64>| -> Vec<u8> {
        ids.flat_map(u64::to_le_bytes).collect()
    };
    std::fs::write(
        dir.join("faces.f32"),
        floats(&mut faces.iter().map(|(_, v)| v)),
    )?;
    std::fs::write(
        dir.join("face_persons.u64"),
        persons(&mut faces.iter().map(|(p, _)| *p)),
    )?;
    std::fs::write(
        dir.join("probes.f32"),
        floats(&mut probes.iter().map(|(_, v)| v)),
    )?;
    std::fs::write(
        dir.join("probe_persons.u64"),
        persons(&mut probes.iter().map(|(p, _)| *p as u64)),
    )?;
    let dimension = faces.first().map_or(0, |(_, v)| v.len());
    std::fs::write(
        dir.join("shape.json"),
        serde_json::to_string(&serde_json::json!({
            "dimension": dimension, "faces": faces.len(), "probes": probes.len(),
        }))?,
    )?;
    Ok(())
}

/// Brute force: every probe against every vector.
fn exact_scan(
    faces: &[(u64, Vec<f32>)],
    probes: &[(usize, Vec<f32>)],
    threads: usize,
) -> (f64, usize) {
    let started = Instant::now();
    let first = parallel_count(probes, threads, |(person, probe)| {
        let probe = unit(probe);
        let best = faces
            .iter()
            .map(|(p, v)| (p, kernels::dot_f32(v, &probe)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        best.is_some_and(|(p, _)| *p == *person as u64)
    });
    (started.elapsed().as_secs_f64(), first)
}

/// Every probe searched in `index`, `threads` at a time: seconds taken and probes whose
/// first answer `is_mate` of the probe's person.
fn mates_first(
    storing: Storing,
    index: &usearch::Index,
    probes: &[(usize, Vec<f32>)],
    threads: usize,
    is_mate: impl Fn(u64, usize) -> bool + Sync,
) -> (f64, usize) {
    let started = Instant::now();
    let first = parallel_count(probes, threads, |(person, probe)| {
        storing
            .search(index, probe, 1)
            .and_then(|m| m.keys.first().copied())
            .is_some_and(|slot| is_mate(slot, *person))
    });
    (started.elapsed().as_secs_f64(), first)
}

/// Whether key `slot` (a position among the bench's faces) belongs to `person`.
fn mate_at(persons: &[u64], slot: u64, person: usize) -> bool {
    usize::try_from(slot)
        .ok()
        .and_then(|slot| persons.get(slot))
        .is_some_and(|p| *p == person as u64)
}

/// How many probes `hit` is true for, spread over `threads` threads.
fn parallel_count<T: Sync>(items: &[T], threads: usize, hit: impl Fn(&T) -> bool + Sync) -> usize {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().filter(|item| hit(item)).count()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    })
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| templates | threads | ingest rec/s | bare ingest rec/s | ingest hub / bare | hub qps | hub qps ({} in flight) | bare usearch qps | bare, partitioned qps | exact qps | hub / bare (in turns) | hub / bare partitioned | recall hub | recall bare | recall exact | p50 ms | p99 ms | bare adds/s | ready after restart s | portal clients | portal req/s | portal p50 ms | portal p99 ms | portal errors |",
            self.portal_http_concurrency
        )?;
        writeln!(
            f,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        writeln!(
            f,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.4} | {:.4} | {:.4} | {:.2} | {:.2} | {:.0} | {:.2} | {} | {:.0} | {:.2} | {:.2} | {} |",
            self.templates,
            self.threads,
            self.ingest_records_per_s,
            self.ingest_records_per_s_bare,
            self.ingest_hub_to_bare_ratio,
            self.search_qps_hub,
            self.search_qps_hub_in_flight,
            self.search_qps_bare_usearch,
            self.search_qps_bare_partitioned,
            self.search_qps_exact,
            self.hub_to_bare_ratio,
            self.hub_to_bare_partitioned_ratio,
            self.recall_genuine_mate,
            self.recall_bare_usearch,
            self.recall_exact,
            self.search_p50_ms,
            self.search_p99_ms,
            self.bare_adds_per_s,
            self.ready_after_restart_s,
            self.portal_http_concurrency,
            self.portal_http_requests_per_s,
            self.portal_http_p50_ms,
            self.portal_http_p99_ms,
            self.portal_http_errors
        )?;
        writeln!(f)?;
        let h2h = &self.head_to_head;
        writeln!(
            f,
            "hub / bare {:.2} ({:.2} with {} in flight), timed in turns (best of {}): hub {:.0} qps with {} in flight ({:.0} with {}) at recall {:.4}, bare usearch {:.0} qps on {} threads at ef {} (recall {:.4}); rounds, hub ({} in flight) / hub ({}) / bare qps: {}",
            h2h.ratio,
            h2h.ratio_threads_in_flight,
            self.threads,
            h2h.rounds.len(),
            h2h.hub_qps,
            h2h.hub_in_flight,
            h2h.hub_qps_threads_in_flight,
            self.threads,
            h2h.hub_recall,
            h2h.bare_qps,
            self.threads,
            h2h.bare_expansion_search,
            h2h.bare_recall,
            h2h.hub_in_flight,
            self.threads,
            h2h.rounds
                .iter()
                .map(|r| format!(
                    "{:.0} / {:.0} / {:.0}",
                    r.hub_qps, r.hub_qps_threads_in_flight, r.bare_qps
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(
            f,
            "cpu: {}; kernel: {}; ingest with {} records in flight; bare partitioned recall {:.4}",
            self.cpu, self.kernel, self.ingest_in_flight, self.recall_bare_partitioned
        )?;
        writeln!(
            f,
            "sketch shortlist {}, graph built at ef {} (bare indexes: {}): the hub's face indexes searched alone {:.0} qps, hub / index alone {:.2}",
            self.shortlist,
            self.expansion_add,
            self.bare_expansion_add,
            self.search_qps_index_alone,
            self.hub_to_index_ratio
        )?;
        writeln!(
            f,
            "detection ({}): recall {:.4} (under another identity {:.4}), {} false links; bare ingest at ef {} found {:.4} of mates",
            if self.shortlist == 0 {
                format!("graphs walked at ef {}", self.detection_expansion_search)
            } else {
                format!("sketches, shortlist {}", self.shortlist)
            },
            self.detection_recall,
            self.detection_recall_assumed_identity,
            self.detection_false_links,
            self.detection_expansion_search,
            self.bare_ingest_mate_recall
        )?;
        writeln!(
            f,
            "fingers: recall {:.4} at {:.0} hub qps",
            self.recall_genuine_mate_finger, self.search_qps_hub_finger
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| ingest step ({:.2} ms per record in all) | mean ms per record |",
            self.ingest_mean_ms
        )?;
        writeln!(f, "|---|---:|")?;
        for step in &self.ingest_steps {
            writeln!(f, "| {} | {:.3} |", step.step, step.mean_ms)?;
        }
        writeln!(f)?;
        curve_table(f, "bare qps", "bare recall", &self.expansion_curve)?;
        writeln!(f)?;
        curve_table(
            f,
            &format!("hub qps ({} in flight)", self.threads),
            "hub recall",
            &self.hub_expansion_curve,
        )?;
        writeln!(f)?;
        curve_table(
            f,
            &format!("hub finger qps ({} in flight)", self.threads),
            "hub finger recall",
            &self.hub_finger_expansion_curve,
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| sketch shortlist | hub face qps ({0} in flight) | face recall | hub finger qps ({0} in flight) | finger recall |",
            self.threads
        )?;
        writeln!(f, "|---:|---:|---:|---:|---:|")?;
        for (face, finger) in self
            .hub_shortlist_curve
            .iter()
            .zip(&self.hub_finger_shortlist_curve)
        {
            writeln!(
                f,
                "| {} | {:.0} | {:.4} | {:.0} | {:.4} |",
                face.shortlist, face.qps, face.recall, finger.qps, finger.recall
            )?;
        }
        writeln!(f)?;
        connectivity_table(f, &self.connectivity_curve)?;
        writeln!(f)?;
        writeln!(f, "| quantization | bare qps | bare recall | bare adds/s |")?;
        writeln!(f, "|---|---:|---:|---:|")?;
        for point in &self.quantization_curve {
            writeln!(
                f,
                "| {} | {:.0} | {:.4} | {:.0} |",
                point.quantization, point.qps, point.recall, point.adds_per_s
            )?;
        }
        Ok(())
    }
}

/// One row per connectivity, one column per expansion of the curve.
fn connectivity_table(f: &mut fmt::Formatter<'_>, points: &[ConnectivityPoint]) -> fmt::Result {
    let Some(first) = points.first() else {
        return Ok(());
    };
    write!(
        f,
        "| connectivity | bare adds/s | serialised bytes per template |"
    )?;
    for point in &first.curve {
        write!(f, " ef {} qps / recall |", point.expansion_search)?;
    }
    writeln!(f)?;
    writeln!(f, "|---:|---:|---:|{}", "---|".repeat(first.curve.len()))?;
    for point in points {
        write!(
            f,
            "| {} | {:.0} | {:.0} |",
            point.connectivity, point.adds_per_s, point.serialized_bytes_per_template
        )?;
        for at in &point.curve {
            write!(f, " {:.0} / {:.4} |", at.qps, at.recall)?;
        }
        writeln!(f)?;
    }
    Ok(())
}

fn curve_table(
    f: &mut fmt::Formatter<'_>,
    qps: &str,
    recall: &str,
    points: &[CurvePoint],
) -> fmt::Result {
    writeln!(f, "| expansion_search | {qps} | {recall} |")?;
    writeln!(f, "|---:|---:|---:|")?;
    for point in points {
        writeln!(
            f,
            "| {} | {:.0} | {:.4} |",
            point.expansion_search, point.qps, point.recall
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_index_runs_at_the_smallest_expansion_that_reaches_the_hubs_recall() {
        let curve = |expansion: usize| (expansion as f64 / 128.0).min(1.0);
        let mut tried = Vec::new();
        let chosen = matching_expansion(0.99, |expansion| {
            tried.push(expansion);
            curve(expansion)
        });
        assert_eq!(chosen, (128, 1.0));
        assert_eq!(tried.last(), Some(&128), "no larger expansion is tried");
        assert_eq!(
            matching_expansion(0.25, curve),
            (32, 0.25),
            "reached exactly"
        );
        assert_eq!(
            matching_expansion(1.0, |_| 0.5),
            (512, 0.5),
            "never reached: the largest"
        );
    }

    #[test]
    fn bench_records_are_valid_and_surnames_distinct() {
        let registry = connectors::AlgorithmRegistry::default();
        for i in [0, 1, 8, 9, 10] {
            let (system, person, body) = native_record(7, i);
            let accepted = connectors::parse(system, body.as_bytes(), &registry)
                .unwrap_or_else(|e| panic!("record {i} refused: {e:?}"));
            assert_eq!(accepted.record.templates.len(), 3);
            assert!(accepted.record.templates.iter().all(|t| t.indexable));
            assert_eq!(
                person,
                if i == 9 { 8 } else { i },
                "every tenth record is a second appearance"
            );
        }
        let names: std::collections::HashSet<String> = (0..20_000).map(synthetic_surname).collect();
        assert_eq!(names.len(), 20_000);
        let given_keys: std::collections::HashSet<String> = (0..GIVEN_NAMES)
            .map(|k| {
                interop_hub::matching::given_names_key(&synthetic_given_name(k).to_uppercase())
            })
            .collect();
        assert_eq!(
            given_keys.len(),
            GIVEN_NAMES,
            "every given name has a blocking key of its own"
        );
    }

    #[test]
    fn every_twentieth_record_is_a_second_appearance_under_another_identity() {
        let registry = connectors::AlgorithmRegistry::default();
        let record = |i: usize| {
            let (system, person, body) = native_record(7, i);
            let accepted = connectors::parse(system, body.as_bytes(), &registry)
                .expect("bench records are valid");
            (person, accepted.record)
        };
        let (first_person, first) = record(18);
        let (same_person, same_identity) = record(9 + 20);
        let (assumed_person, assumed) = record(19);
        assert_eq!((assumed_person, same_person), (first_person, 28));
        assert!(!is_assumed_identity(29) && is_assumed_identity(19));
        let (_, twenty_eight) = record(28);
        let surname = |r: &connectors::IdentityRecord| r.names[0].surname.clone();
        let document = |r: &connectors::IdentityRecord| r.travel_documents[0].number.clone();
        assert_eq!(surname(&same_identity), surname(&twenty_eight));
        assert_eq!(same_identity.date_of_birth, twenty_eight.date_of_birth);
        assert_eq!(document(&same_identity), document(&twenty_eight));
        assert_ne!(surname(&assumed), surname(&first));
        assert_ne!(assumed.date_of_birth, first.date_of_birth);
        assert_ne!(document(&assumed), document(&first));
    }

    // A runtime for the progress line, which a test's stderr (not a terminal) gets.
    #[tokio::test]
    async fn bare_ingest_searches_both_partitions_for_every_template() {
        let records: Vec<RecordVectors> = (0..600)
            .map(|i| {
                let (system, person, _) = native_record(7, i);
                RecordVectors::of(7, i, system, person)
            })
            .collect();
        assert_eq!(records[8].partition, 0, "EES is civil");
        assert_eq!(records[9].partition, 1, "SIS is law enforcement");
        let run = bare_ingest(&records, 2, 64, 8, IndexTuning::new(0, None))
            .expect("the bare indexes take the records");
        assert_eq!(run.second_appearances, 60);
        // Each second appearance is in the other partition from its first: found only when
        // both partitions are searched with the record's own vectors.
        assert!(
            run.mates_found >= 59,
            "{} of 60 mates found",
            run.mates_found
        );
        assert!(run.records_per_s > 0.0);
    }

    #[tokio::test]
    async fn connectivity_table_builds_each_graph_with_its_own_connectivity() {
        let faces: Vec<(u64, Vec<f32>)> = (0..1_500)
            .map(|i| {
                let (system, person, _) = native_record(11, i);
                let vectors = RecordVectors::of(11, i, system, person);
                (person as u64, vectors.face().to_vec())
            })
            .collect();
        let persons: Vec<usize> = (0..60).map(|q| faces[q * 25].0 as usize).collect();
        let probes = probe_captures(11, &persons, Trait::Face, 0xBE7C);
        let tables = BareTables {
            quantisation: false,
            connectivity: true,
        };
        let run = bare_usearch(&faces, &probes, 2, tables, IndexTuning::new(0, None))
            .expect("the bare indexes build");
        let built: Vec<usize> = run.connectivities.iter().map(|p| p.connectivity).collect();
        assert_eq!(built, [16, 8, 24, 32], "the hub's first, then the others");
        let expansions = |curve: &[CurvePoint]| -> Vec<usize> {
            curve.iter().map(|p| p.expansion_search).collect()
        };
        // More edges per node take more memory: equal figures would mean one graph built
        // four times.
        let mut by_connectivity = run.connectivities.clone();
        by_connectivity.sort_by_key(|p| p.connectivity);
        for pair in by_connectivity.windows(2) {
            assert!(
                pair[1].serialized_bytes_per_template > pair[0].serialized_bytes_per_template,
                "M {} takes {:.0} bytes, M {} {:.0}",
                pair[1].connectivity,
                pair[1].serialized_bytes_per_template,
                pair[0].connectivity,
                pair[0].serialized_bytes_per_template
            );
        }
        for point in &run.connectivities {
            assert_eq!(expansions(&point.curve), CURVE);
            let widest = point.curve.last().expect("a curve point");
            assert!(
                widest.recall >= 0.95,
                "M {}: recall {} at ef {}",
                point.connectivity,
                widest.recall,
                widest.expansion_search
            );
            assert!(point.adds_per_s > 0.0);
        }
        let without = bare_usearch(
            &faces,
            &probes,
            2,
            BareTables {
                quantisation: false,
                connectivity: false,
            },
            IndexTuning::default(),
        )
        .expect("the bare index builds");
        assert_eq!(without.connectivities.len(), 1, "only the hub's own row");
    }

    #[test]
    fn percentiles_pick_by_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert!((percentile(&sorted, 0.50) - 51.0).abs() < 1e-9);
        assert!((percentile(&sorted, 0.99) - 99.0).abs() < 1e-9);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
