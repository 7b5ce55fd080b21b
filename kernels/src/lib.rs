//! The distances the biometric index spends its time in — dot products of unit vectors stored
//! as `f16` or `f32`, cosine of quantised `i8` vectors, Hamming distances of sign sketches and
//! the gather of the members near enough by them —
//! the usearch metrics built on them, and the `i8` quantisation of unit vectors: the one place in the workspace that holds
//! `unsafe` code (SIMD intrinsics, and the raw pointers usearch hands its metric).
//!
//! Why not usearch's own kernels: the NumKong kernels bundled with usearch 2.26.6 compute
//! cosine on AVX2 as three single-accumulator FMA chains (`a·b`, `a·a`, `b·b`; and `f32` through
//! `f64`), so every step waits for the previous one's latency. The hub stores unit vectors, so
//! cosine distance is `1 − a·b`; four independent accumulators keep both FMA ports busy.
//! `cargo bench -p interop-hub-cli --bench hot_paths -- distance` measures the difference.
//!
//! Why `i8` is quantised here and not by usearch: usearch casts `f32` to `i8` as `x · 127`,
//! which suits components near ±1; a 512-d unit vector's components are near ±0.04, so they
//! land on a handful of steps, and the cosine of a mated pair comes out several times further
//! off (`quantisation_keeps_cosine` below measures both). Genuine-mate recall was the same
//! either way in `interop-hub bench` (its quantisation table), but the hub reports
//! similarities and compares them with match thresholds. [`quantize_i8`] scales each vector
//! by its own largest component instead, and cosine, which ignores length, needs no scale
//! stored beside it. On a CPU with VNNI (AVX-512 or AVX) usearch's own `i8` cosine computes
//! it: there it beat an earlier AVX2 kernel of ours (widening to 16 bits, three `madd`
//! chains; dropped, never committed). Without VNNI, usearch's AVX2
//! kernel widens each byte to 16 bits before multiplying, because `maddubs` (unsigned ×
//! signed bytes) goes wrong on −128; the quantised vectors never hold −128, so the kernel
//! here multiplies bytes directly, 32 at a time (`interop-hub bench` compares it with
//! usearch's on the same vectors: the `i8_usearch_kernel` row).

use usearch::{Index, ScalarKind};

/// Which kernel `install_unit_cosine` put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// AVX2 + FMA (+ F16C for `f16`) dot product of unit vectors.
    Avx2UnitDot,
    /// AVX2 cosine of `i8` vectors written by [`quantize_i8`] (no component is −128), on a
    /// CPU without VNNI.
    Avx2QuantisedCosine,
    /// usearch's own metric stays: the CPU lacks AVX2 (or FMA, F16C), the scalar kind has no
    /// kernel here, or (for `i8`) the CPU has VNNI, where usearch's kernel is the faster.
    Builtin,
}

/// Replaces `index`'s cosine metric with `1 − a·b` computed by the fastest kernel this CPU
/// runs, when the index stores `f16` or `f32`: only correct for indexes whose members and
/// queries are unit vectors (the hub normalises both before they reach usearch). An `i8`
/// index gets the cosine kernel here on CPUs without VNNI, and keeps usearch's own
/// otherwise: only correct when every member and query was written by [`quantize_i8`].
/// usearch does not persist a custom metric, so call this again after every `load`.
pub fn install_unit_cosine(index: &mut Index) -> Installed {
    let dimension = index.dimensions();
    if dimension == 0 || !avx2_available() {
        return Installed::Builtin;
    }
    match index.scalar_kind() {
        ScalarKind::F16 => {
            index.change_metric::<usearch::f16>(Box::new(move |a, b| {
                // SAFETY: usearch calls its metric only with pointers to two vectors of the
                // index's dimension, stored as the index's scalar kind (f16: 16-bit values),
                // and this CPU has AVX2, FMA and F16C (checked above).
                unsafe { 1.0 - x86::dot_f16(a.cast::<u16>(), b.cast::<u16>(), dimension) }
            }));
            Installed::Avx2UnitDot
        }
        ScalarKind::F32 => {
            index.change_metric::<f32>(Box::new(move |a, b| {
                // SAFETY: as above, for an index of f32 scalars.
                unsafe { 1.0 - x86::dot_f32(a, b, dimension) }
            }));
            Installed::Avx2UnitDot
        }
        ScalarKind::I8 if !vnni_available() => {
            index.change_metric::<i8>(Box::new(move |a, b| {
                // SAFETY: as above, for an index of i8 scalars; AVX2 is checked above.
                unsafe { x86::cosine_distance_i8(a, b, dimension) }
            }));
            Installed::Avx2QuantisedCosine
        }
        _ => Installed::Builtin,
    }
}

/// Writes `vector` into `out` as `i8`, scaled so that its largest component is ±127. Cosine
/// between the results approximates cosine between the inputs (the scale cancels); a zero
/// vector stays zero.
pub fn quantize_i8(vector: &[f32], out: &mut Vec<i8>) {
    let largest = vector.iter().fold(0.0_f32, |m, x| m.max(x.abs()));
    out.clear();
    if largest == 0.0 {
        out.resize(vector.len(), 0);
        return;
    }
    // Divided first: `127 / largest` overflows for components below ~4e-37.
    // In range by construction; the clamp only guards against rounding at ±127.
    out.extend(
        vector
            .iter()
            .map(|x| (x / largest * 127.0).round().clamp(-127.0, 127.0) as i8),
    );
}

/// The sign sketch of `vector`: bit `i % 64` of word `i / 64` is set where component `i` is
/// positive, `out` holds `vector.len().div_ceil(64)` words. Two vectors at angle θ differ in
/// about θ/π of their bits whatever their length, so the Hamming distance between sketches
/// ranks a whole index cheaply for a shortlist that cosine then re-ranks.
/// Takes `f32` or a quantised `i8` vector alike (positive: above `T::default()`).
pub fn sign_sketch<T: Copy + PartialOrd + Default>(vector: &[T], out: &mut Vec<u64>) {
    out.clear();
    out.extend(vector.chunks(64).map(|chunk| {
        chunk
            .iter()
            .enumerate()
            .filter(|(_, x)| **x > T::default())
            .fold(0_u64, |word, (bit, _)| word | (1 << bit))
    }));
}

/// The Hamming distance from `probe` to each sketch in `sketches` (concatenated, each as
/// long as `probe`), in their order, into `out`.
///
/// # Panics
/// When `sketches` is not a whole number of `probe`-long sketches, or `probe` is empty.
pub fn hamming_distances(probe: &[u64], sketches: &[u64], out: &mut Vec<u32>) {
    one_distance_each(probe, sketches, out);
    fastest_hamming_distances(probe, sketches, out);
}

/// The scan on the widest kernel the CPU has, into an `out` sized one per sketch.
fn fastest_hamming_distances(probe: &[u64], sketches: &[u64], out: &mut [u32]) {
    if avx512_popcnt_available() {
        // SAFETY: the CPU has the features; the function reads only the slices given.
        unsafe { x86_avx512_popcnt::hamming_distances(probe, sketches, out) }
    } else {
        scalar_hamming_distances(probe, sketches, out);
    }
}

/// Bytes of sketches [`hamming_distances_each`] scans for every probe before it reads on:
/// small enough to stay in any x86 core's L2 cache between one probe's pass and the next,
/// large enough that a block's fixed cost (the wide kernel loads its probe afresh) is noise.
const SHARED_SCAN_BLOCK_BYTES: usize = 128 * 1024;

/// [`hamming_distances`] of several probes over the same sketches in one pass: the sketches
/// are read from memory a block at a time and every probe is counted against the block while
/// it is in cache, so two probes cost about one pass of memory traffic, not two. `out[i]`
/// receives probe `i`'s distances (`out` is resized to the probes).
///
/// # Panics
/// When the probes differ in length, or as [`hamming_distances`] for any of them.
pub fn hamming_distances_each(probes: &[&[u64]], sketches: &[u64], out: &mut Vec<Vec<u32>>) {
    out.resize_with(probes.len(), Vec::new);
    let Some(words) = probes.first().map(|probe| probe.len()) else {
        return;
    };
    assert!(
        probes.iter().all(|probe| probe.len() == words),
        "sketches of unequal length"
    );
    for (probe, distances) in probes.iter().zip(out.iter_mut()) {
        one_distance_each(probe, sketches, distances);
    }
    // A whole number of the wide kernel's eight-member steps, so that only the last block
    // has a scalar tail.
    let block = (SHARED_SCAN_BLOCK_BYTES / (words * 8)).next_multiple_of(8);
    let members = sketches.len() / words;
    for start in (0..members).step_by(block) {
        let end = (start + block).min(members);
        let chunk = &sketches[start * words..end * words];
        for (probe, distances) in probes.iter().zip(out.iter_mut()) {
            fastest_hamming_distances(probe, chunk, &mut distances[start..end]);
        }
    }
}

/// [`hamming_distances`] by the scalar loop (`popcnt` where the CPU has it) whatever else
/// the CPU has: the baseline the benchmarks compare the wider kernel with.
///
/// # Panics
/// As [`hamming_distances`].
pub fn hamming_distances_scalar(probe: &[u64], sketches: &[u64], out: &mut Vec<u32>) {
    one_distance_each(probe, sketches, out);
    scalar_hamming_distances(probe, sketches, out);
}

/// Members a gather looks at together: a block is passed over when none of it is near.
const GATHER_BLOCK: usize = 64;

/// Appends `(distance, first + i)` for each `distances[i]` at most `limit`, in member order.
/// Few members fall within a shortlist's cutoff, so a block of distances is looked into only
/// when its count within the limit is not zero: a sum of compares, which the compiler
/// vectorises (a minimum of unsigned values is not on baseline x86-64), instead of a branch
/// per member. `cargo bench -p interop-hub-cli --bench hot_paths -- sketch/gather` compares it
/// with [`gather_within_filtered`].
pub fn gather_within(distances: &[u32], limit: u32, first: usize, out: &mut Vec<(u32, usize)>) {
    let blocks = distances.chunks_exact(GATHER_BLOCK);
    let tail = distances.len() - blocks.remainder().len();
    for (at, block) in blocks.enumerate() {
        if block.iter().map(|&d| u32::from(d <= limit)).sum::<u32>() > 0 {
            let start = at * GATHER_BLOCK;
            gather_within_filtered(block, limit, first + start, out);
        }
    }
    gather_within_filtered(&distances[tail..], limit, first + tail, out);
}

/// [`gather_within`] by a filter over every member: the reference the tests and the
/// benchmarks compare it with.
pub fn gather_within_filtered(
    distances: &[u32],
    limit: u32,
    first: usize,
    out: &mut Vec<(u32, usize)>,
) {
    out.extend(
        distances
            .iter()
            .enumerate()
            .filter(|(_, distance)| **distance <= limit)
            .map(|(at, distance)| (*distance, first + at)),
    );
}

/// The smallest distance within which `wanted` of `distances` (each at most `largest`) fall;
/// `largest` when fewer are given. Sketch distances are at most 64 per word: counting them
/// finds it without sorting.
pub fn smallest_cutoff(distances: impl Iterator<Item = u32>, largest: usize, wanted: usize) -> u32 {
    let mut counts = vec![0_usize; largest + 1];
    for distance in distances {
        counts[(distance as usize).min(largest)] += 1;
    }
    let mut within = 0;
    let at = counts
        .iter()
        .position(|&count| {
            within += count;
            within >= wanted
        })
        .unwrap_or(largest);
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// For each probe, `(distance, position)` of the `wanted` sketches nearest it in `sketches`
/// (concatenated, each as long as the probes) and of every sketch tied with the farthest of
/// them, in member order. The probes share one pass over the sketches, a block at a time
/// (as [`hamming_distances_each`]), and no distance outlives its block: each probe keeps the
/// members within its running cutoff, the distance within which `wanted` of the members
/// seen so far fall. That cutoff only shrinks as members are seen, so it never drops a
/// member the whole scan's cutoff keeps; the exact cutoff is then counted among the kept.
/// Nothing but the sketches is read from memory: at a million members a whole distance
/// array per probe would be 4 MB written and read again, past most caches.
///
/// # Panics
/// As [`hamming_distances_each`].
pub fn nearest_each(probes: &[&[u64]], sketches: &[u64], wanted: usize) -> Vec<Vec<(u32, usize)>> {
    let mut kept: Vec<Vec<(u32, usize)>> = vec![Vec::new(); probes.len()];
    let Some(words) = probes.first().map(|probe| probe.len()) else {
        return kept;
    };
    let largest = words * 64;
    let wanted = wanted.max(1);
    let mut cutoffs = vec![u32::MAX; probes.len()];
    let block = (SHARED_SCAN_BLOCK_BYTES / (words * 8)).next_multiple_of(8);
    let members = sketches.len() / words;
    let mut distances = Vec::new();
    for start in (0..members).step_by(block) {
        let end = (start + block).min(members);
        hamming_distances_each(
            probes,
            &sketches[start * words..end * words],
            &mut distances,
        );
        for ((found, cutoff), distances) in kept.iter_mut().zip(&mut cutoffs).zip(&distances) {
            gather_within(distances, *cutoff, start, found);
            // Pruned once the first `wanted` are in, then whenever the kept outgrow twice
            // that: the running cutoff tightens, and what is kept stays small.
            if found.len() >= wanted && (*cutoff == u32::MAX || found.len() > 2 * wanted + 64) {
                *cutoff = keep_nearest(found, largest, wanted);
            }
        }
    }
    for found in &mut kept {
        keep_nearest(found, largest, wanted);
    }
    kept
}

/// Keeps the `(distance, position)`s within the smallest distance that holds `wanted` of
/// them (distances at most `largest`), in their order, and returns that distance.
fn keep_nearest(found: &mut Vec<(u32, usize)>, largest: usize, wanted: usize) -> u32 {
    let cutoff = smallest_cutoff(found.iter().map(|(d, _)| *d), largest, wanted);
    found.retain(|(distance, _)| *distance <= cutoff);
    cutoff
}

/// [`nearest_each`] in two stages, for sketches too many to read whole for every probe:
/// each probe's `candidates` nearest by the first `prefix_words` words alone (`prefixes`
/// holds those words of every sketch, end to end, in the sketches' order), then the
/// `wanted` nearest of these by their whole sketches (and every candidate tied with the
/// farthest of them). The whole sketches are read only for the candidates. Approximate:
/// a member near by its whole sketch is lost when its prefix alone ranks it past the
/// candidates.
///
/// # Panics
/// When `prefix_words` is zero or longer than the probes, or as [`nearest_each`].
pub fn nearest_each_by_prefix(
    probes: &[&[u64]],
    prefixes: &[u64],
    prefix_words: usize,
    sketches: &[u64],
    candidates: usize,
    wanted: usize,
) -> Vec<Vec<(u32, usize)>> {
    let Some(words) = probes.first().map(|probe| probe.len()) else {
        return Vec::new();
    };
    assert!(
        (1..=words).contains(&prefix_words),
        "a prefix of {prefix_words} words of {words}-word sketches"
    );
    let probe_prefixes: Vec<&[u64]> = probes.iter().map(|probe| &probe[..prefix_words]).collect();
    nearest_each(&probe_prefixes, prefixes, candidates)
        .into_iter()
        .zip(probes)
        .map(|(candidates, probe)| {
            let mut whole: Vec<(u32, usize)> = candidates
                .into_iter()
                .map(|(_, at)| {
                    let sketch = &sketches[at * words..(at + 1) * words];
                    (hamming_distance(probe, sketch), at)
                })
                .collect();
            keep_nearest(&mut whole, words * 64, wanted);
            whole
        })
        .collect()
}

/// The Hamming distance between two sketches of one length.
///
/// # Panics
/// When the lengths differ.
pub fn hamming_distance(a: &[u64], b: &[u64]) -> u32 {
    assert_eq!(a.len(), b.len(), "sketches of unequal length");
    a.iter().zip(b).map(|(a, b)| (a ^ b).count_ones()).sum()
}

/// Sizes `out` for one distance per sketch.
fn one_distance_each(probe: &[u64], sketches: &[u64], out: &mut Vec<u32>) {
    assert!(
        !probe.is_empty() && sketches.len().is_multiple_of(probe.len()),
        "sketches of unequal length"
    );
    out.clear();
    out.resize(sketches.len() / probe.len(), 0);
}

fn scalar_hamming_distances(probe: &[u64], sketches: &[u64], out: &mut [u32]) {
    if popcnt_available() {
        // SAFETY: the CPU has the feature; the function reads only the slices given.
        unsafe { x86_popcnt::hamming_distances(probe, sketches, out) }
    } else {
        hamming_distances_portable(probe, sketches, out);
    }
}

/// The scan at the sketch lengths of common templates as loops of a length known at compile
/// time: unrolled, a 192-bit finger sketch is three loads, xors and counts with no loop of
/// its own, and the scans run at memory speed (`cargo bench -p interop-hub-cli --bench
/// hot_paths -- sketch/`; figures in bench/README.md).
#[inline(always)]
fn hamming_distances_portable(probe: &[u64], sketches: &[u64], out: &mut [u32]) {
    match probe.len() {
        1 => hamming_distances_of::<1>(probe, sketches, out),
        2 => hamming_distances_of::<2>(probe, sketches, out),
        3 => hamming_distances_of::<3>(probe, sketches, out),
        4 => hamming_distances_of::<4>(probe, sketches, out),
        6 => hamming_distances_of::<6>(probe, sketches, out),
        8 => hamming_distances_of::<8>(probe, sketches, out),
        _ => hamming_distances_any(probe, sketches, out),
    }
}

#[inline(always)]
fn hamming_distances_of<const WORDS: usize>(probe: &[u64], sketches: &[u64], out: &mut [u32]) {
    let Ok(probe) = <&[u64; WORDS]>::try_from(probe) else {
        return hamming_distances_any(probe, sketches, out);
    };
    let (members, _) = sketches.as_chunks::<WORDS>();
    for (sketch, distance) in members.iter().zip(out) {
        let mut differing = 0;
        for word in 0..WORDS {
            differing += (sketch[word] ^ probe[word]).count_ones();
        }
        *distance = differing;
    }
}

#[inline(always)]
fn hamming_distances_any(probe: &[u64], sketches: &[u64], out: &mut [u32]) {
    for (sketch, distance) in sketches.chunks_exact(probe.len()).zip(out) {
        *distance = hamming_distance(probe, sketch);
    }
}

/// `a·b` of two `f16` vectors given as their bit patterns, on the fastest path available.
///
/// # Panics
/// When the lengths differ.
pub fn dot_f16(a: &[u16], b: &[u16]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot product of vectors of unequal length");
    if avx2_available() {
        // SAFETY: both slices hold `a.len()` values and the CPU has the features.
        unsafe { x86::dot_f16(a.as_ptr(), b.as_ptr(), a.len()) }
    } else {
        a.iter()
            .zip(b)
            .map(|(x, y)| half::f16::from_bits(*x).to_f32() * half::f16::from_bits(*y).to_f32())
            .sum()
    }
}

/// `a·b` of two `f32` vectors on the fastest path available.
///
/// # Panics
/// When the lengths differ.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot product of vectors of unequal length");
    if avx2_available() {
        // SAFETY: both slices hold `a.len()` values and the CPU has the features.
        unsafe { x86::dot_f32(a.as_ptr(), b.as_ptr(), a.len()) }
    } else {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
}

/// Cosine distance `1 − a·b / (|a| |b|)` of two `i8` vectors, on the fastest path
/// available; 0 for two zero vectors, 1 for one. Exact for vectors from [`quantize_i8`] of
/// up to 133,000 components (the sums are 32-bit, as usearch's); a component of −128 gives
/// a wrong result.
///
/// # Panics
/// When the lengths differ.
pub fn cosine_distance_i8(a: &[i8], b: &[i8]) -> f32 {
    assert_eq!(a.len(), b.len(), "cosine of vectors of unequal length");
    if avx2_available() {
        // SAFETY: both slices hold `a.len()` values and the CPU has the features.
        unsafe { x86::cosine_distance_i8(a.as_ptr(), b.as_ptr(), a.len()) }
    } else {
        let sum = |x: &[i8], y: &[i8]| -> i64 {
            x.iter()
                .zip(y)
                .map(|(p, q)| i64::from(*p) * i64::from(*q))
                .sum()
        };
        cosine_distance_of_sums(sum(a, b), sum(a, a), sum(b, b))
    }
}

/// `1 − ab / √(aa · bb)` as usearch's cosine has it: 0 for two zero vectors, 1 for one.
fn cosine_distance_of_sums(ab: i64, aa: i64, bb: i64) -> f32 {
    if aa == 0 && bb == 0 {
        return 0.0;
    }
    if aa == 0 || bb == 0 {
        return 1.0;
    }
    // The sums are exact integers below 2^53; f64 keeps the quotient exact to f32's precision.
    let cosine = ab as f64 / (aa as f64 * bb as f64).sqrt();
    (1.0 - cosine).max(0.0) as f32
}

/// usearch's bundled NumKong has `i8` kernels on VNNI (`vpdpbusd`); they beat ours.
#[cfg(target_arch = "x86_64")]
fn vnni_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512vnni")
        || std::arch::is_x86_feature_detected!("avxvnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni_available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn popcnt_available() -> bool {
    std::arch::is_x86_feature_detected!("popcnt")
}

#[cfg(not(target_arch = "x86_64"))]
fn popcnt_available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn avx512_popcnt_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_popcnt_available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, __m256, __m256i, _mm_add_epi32, _mm_add_ps, _mm_add_ss, _mm_cvtsi128_si32,
        _mm_cvtss_f32, _mm_loadu_si128, _mm_movehl_ps, _mm_shuffle_epi32, _mm_shuffle_ps,
        _mm_unpackhi_epi64, _mm256_abs_epi8, _mm256_add_epi32, _mm256_add_ps,
        _mm256_castps256_ps128, _mm256_castsi256_si128, _mm256_cvtph_ps, _mm256_extractf128_ps,
        _mm256_extracti128_si256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu_si256,
        _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_set1_epi16, _mm256_setzero_ps,
        _mm256_setzero_si256, _mm256_sign_epi8,
    };

    /// Lanes per AVX register of `f32`.
    const LANES: usize = 8;
    /// Independent accumulators: enough to hide the FMA latency on two ports.
    const CHAINS: usize = 4;

    /// # Safety
    /// `a` and `b` point to `n` readable `f16` bit patterns each; the CPU has AVX2, FMA and
    /// F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: *const u16, b: *const u16, n: usize) -> f32 {
        let load = |p: *const u16, at: usize| {
            // SAFETY: `sum_products` asks only for `at + LANES <= n`.
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(at).cast::<__m128i>())) }
        };
        let widen = |p: *const u16, at: usize| {
            // SAFETY: `sum_products` asks only for `at < n`.
            half::f16::from_bits(unsafe { *p.add(at) }).to_f32()
        };
        sum_products(
            n,
            |at| (load(a, at), load(b, at)),
            |at| widen(a, at) * widen(b, at),
        )
    }

    /// # Safety
    /// `a` and `b` point to `n` readable `f32` each; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32(a: *const f32, b: *const f32, n: usize) -> f32 {
        let load = |p: *const f32, at: usize| {
            // SAFETY: `sum_products` asks only for `at + LANES <= n`.
            unsafe { _mm256_loadu_ps(p.add(at)) }
        };
        sum_products(
            n,
            |at| (load(a, at), load(b, at)),
            // SAFETY: `sum_products` asks only for `at < n`.
            |at| unsafe { *a.add(at) * *b.add(at) },
        )
    }

    /// The sum over `0..n` of products: `lanes(at)` gives the eight pairs from `at` on
    /// (asked only while `at + LANES <= n`), `single(at)` one product (only for `at < n`).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn sum_products(
        n: usize,
        lanes: impl Fn(usize) -> (__m256, __m256),
        single: impl Fn(usize) -> f32,
    ) -> f32 {
        let mut sums = [_mm256_setzero_ps(); CHAINS];
        let mut at = 0;
        while at + LANES * CHAINS <= n {
            for (chain, sum) in sums.iter_mut().enumerate() {
                let (x, y) = lanes(at + chain * LANES);
                *sum = _mm256_fmadd_ps(x, y, *sum);
            }
            at += LANES * CHAINS;
        }
        while at + LANES <= n {
            let (x, y) = lanes(at);
            sums[0] = _mm256_fmadd_ps(x, y, sums[0]);
            at += LANES;
        }
        let mut total = horizontal_sum(sums);
        while at < n {
            total += single(at);
            at += 1;
        }
        total
    }

    /// Bytes per AVX2 register.
    const BYTES: usize = 32;

    /// # Safety
    /// `a` and `b` point to `n` readable `i8` each; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn cosine_distance_i8(a: *const i8, b: *const i8, n: usize) -> f32 {
        let ones = _mm256_set1_epi16(1);
        // `maddubs` multiplies unsigned by signed bytes and adds neighbouring pairs into 16
        // bits: |a| × (b with a's sign) is a·b, and with no −128 (which `abs` and `sign`
        // cannot flip) a pair sums to at most 2 · 127² < 2^15, so nothing saturates.
        let pairs_to_i32 =
            |x: __m256i, y: __m256i| _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones);
        let (mut ab, mut aa, mut bb) = (
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
        );
        let mut at = 0;
        while at + BYTES <= n {
            // SAFETY: `at + BYTES <= n`.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_si256(a.add(at).cast::<__m256i>()),
                    _mm256_loadu_si256(b.add(at).cast::<__m256i>()),
                )
            };
            let (x_abs, y_abs) = (_mm256_abs_epi8(x), _mm256_abs_epi8(y));
            ab = _mm256_add_epi32(ab, pairs_to_i32(x_abs, _mm256_sign_epi8(y, x)));
            aa = _mm256_add_epi32(aa, pairs_to_i32(x_abs, x_abs));
            bb = _mm256_add_epi32(bb, pairs_to_i32(y_abs, y_abs));
            at += BYTES;
        }
        let (mut ab, mut aa, mut bb) = (
            i64::from(horizontal_sum_i32(ab)),
            i64::from(horizontal_sum_i32(aa)),
            i64::from(horizontal_sum_i32(bb)),
        );
        while at < n {
            // SAFETY: `at < n`.
            let (x, y) = unsafe { (i64::from(*a.add(at)), i64::from(*b.add(at))) };
            ab += x * y;
            aa += x * x;
            bb += y * y;
            at += 1;
        }
        super::cosine_distance_of_sums(ab, aa, bb)
    }

    #[target_feature(enable = "avx2")]
    fn horizontal_sum_i32(sums: __m256i) -> i32 {
        let quad = _mm_add_epi32(
            _mm256_castsi256_si128(sums),
            _mm256_extracti128_si256::<1>(sums),
        );
        let duo = _mm_add_epi32(quad, _mm_unpackhi_epi64(quad, quad));
        _mm_cvtsi128_si32(_mm_add_epi32(duo, _mm_shuffle_epi32::<0b01>(duo)))
    }

    #[target_feature(enable = "avx2")]
    fn horizontal_sum(sums: [__m256; CHAINS]) -> f32 {
        let pairs = _mm256_add_ps(
            _mm256_add_ps(sums[0], sums[1]),
            _mm256_add_ps(sums[2], sums[3]),
        );
        let quad = _mm_add_ps(
            _mm256_castps256_ps128(pairs),
            _mm256_extractf128_ps::<1>(pairs),
        );
        let duo = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(duo, _mm_shuffle_ps::<0b01>(duo, duo)))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_popcnt {
    /// `hamming_distances_portable` compiled for `popcnt`: the default x86-64 target
    /// counts bits with a dozen shifts and masks per word.
    #[target_feature(enable = "popcnt")]
    pub unsafe fn hamming_distances(probe: &[u64], sketches: &[u64], out: &mut [u32]) {
        super::hamming_distances_portable(probe, sketches, out);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_avx512_popcnt {
    use std::arch::x86_64::{
        __m256i, __m512i, __mmask8, _mm256_storeu_si256, _mm512_add_epi64, _mm512_cvtepi64_epi32,
        _mm512_loadu_epi64, _mm512_mask_permutexvar_epi64, _mm512_maskz_loadu_epi64,
        _mm512_permutex2var_epi64, _mm512_popcnt_epi64, _mm512_setzero_si512, _mm512_shuffle_i64x2,
        _mm512_unpackhi_epi64, _mm512_unpacklo_epi64, _mm512_xor_si512,
    };

    /// Words per 512-bit register.
    const WORDS: usize = 8;

    /// Eight sketches at a time, each as one register per 512 bits of it (the last loaded
    /// masked, so that a 192-bit finger sketch costs one load, not three): the per-word
    /// counts of the eight are summed in one shuffle tree instead of eight horizontal sums,
    /// which would cost more than the counting. The scalar `popcnt` loop spends about three
    /// instructions per word.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub unsafe fn hamming_distances(probe: &[u64], sketches: &[u64], out: &mut [u32]) {
        if let Ok(probe) = <&[u64; 3]>::try_from(probe) {
            // SAFETY: as this function's own contract.
            return unsafe { hamming_distances_3(probe, sketches, out) };
        }
        let words = probe.len();
        let chunks: Vec<(__mmask8, __m512i)> = probe
            .chunks(WORDS)
            .map(|chunk| {
                let mask = lanes(chunk.len());
                // SAFETY: the mask covers only the chunk's words.
                (mask, unsafe {
                    _mm512_maskz_loadu_epi64(mask, chunk.as_ptr().cast::<i64>())
                })
            })
            .collect();
        let blocks = out.len() / WORDS;
        for block in 0..blocks {
            let mut counts = [_mm512_setzero_si512(); WORDS];
            for (member, count) in counts.iter_mut().enumerate() {
                let start = (block * WORDS + member) * words;
                for (offset, (mask, probe_chunk)) in chunks.iter().enumerate() {
                    // SAFETY: `start + offset·8` plus the mask's lanes stays within this
                    // member's `words` words, which `sketches` holds (checked by the caller).
                    let member_chunk = unsafe {
                        _mm512_maskz_loadu_epi64(
                            *mask,
                            sketches.as_ptr().add(start + offset * WORDS).cast::<i64>(),
                        )
                    };
                    *count = _mm512_add_epi64(
                        *count,
                        _mm512_popcnt_epi64(_mm512_xor_si512(member_chunk, *probe_chunk)),
                    );
                }
            }
            let distances = _mm512_cvtepi64_epi32(sum_each(&counts));
            // SAFETY: `out` holds `blocks · 8` distances at least.
            unsafe {
                _mm256_storeu_si256(
                    out.as_mut_ptr().add(block * WORDS).cast::<__m256i>(),
                    distances,
                );
            }
        }
        let done = blocks * WORDS;
        super::scalar_hamming_distances(probe, &sketches[done * words..], &mut out[done..]);
    }

    /// 192-bit sketches (192-d finger templates), eight at a time as three whole registers
    /// of their 24 words: the probe, tiled to the same 24 words, xors all three, and each
    /// member's three counts are gathered into its own lane by permutes. One masked register
    /// per member, as the general loop loads them, made this length slower than the scalar
    /// loop (`cargo bench -p interop-hub-cli --bench hot_paths -- sketch/`).
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn hamming_distances_3(probe: &[u64; 3], sketches: &[u64], out: &mut [u32]) {
        const SPAN: usize = 3 * WORDS;
        let tiled: [u64; SPAN] = std::array::from_fn(|word| probe[word % 3]);
        // SAFETY: each load reads 8 of `tiled`'s 24 words.
        let probes: [__m512i; 3] = std::array::from_fn(|register| unsafe {
            _mm512_loadu_epi64(tiled.as_ptr().add(register * WORDS).cast::<i64>())
        });
        // Word `part` of member `lane` is word `3·lane + part` of the 24: in the first two
        // registers (indexes 0–15, for `permutex2var`) or the third (16–23, masked in).
        let gathers: [(__m512i, __mmask8, __m512i); 3] = std::array::from_fn(|part| {
            let positions: [i64; WORDS] = std::array::from_fn(|lane| (3 * lane + part) as i64);
            let from_first_two = positions.map(|position| position & 15);
            let from_third = positions.map(|position| (position - 16).max(0));
            let third = positions
                .iter()
                .enumerate()
                .filter(|(_, position)| **position >= 16)
                .fold(0_u8, |mask, (lane, _)| mask | (1 << lane));
            // SAFETY: both arrays hold 8 words.
            unsafe {
                (
                    _mm512_loadu_epi64(from_first_two.as_ptr()),
                    third,
                    _mm512_loadu_epi64(from_third.as_ptr()),
                )
            }
        });
        let blocks = out.len() / WORDS;
        for block in 0..blocks {
            // SAFETY: the 24 words at `block · 24` are members `block · 8` to `block · 8 + 7`,
            // which `sketches` holds (checked by the caller, as `out` has one per member).
            let counts: [__m512i; 3] = std::array::from_fn(|register| unsafe {
                let member_words = _mm512_loadu_epi64(
                    sketches
                        .as_ptr()
                        .add(block * SPAN + register * WORDS)
                        .cast::<i64>(),
                );
                _mm512_popcnt_epi64(_mm512_xor_si512(member_words, probes[register]))
            });
            let mut sums = _mm512_setzero_si512();
            for (from_first_two, third, from_third) in &gathers {
                let first_two = _mm512_permutex2var_epi64(counts[0], *from_first_two, counts[1]);
                let part = _mm512_mask_permutexvar_epi64(first_two, *third, *from_third, counts[2]);
                sums = _mm512_add_epi64(sums, part);
            }
            // SAFETY: `out` holds `blocks · 8` distances at least.
            unsafe {
                _mm256_storeu_si256(
                    out.as_mut_ptr().add(block * WORDS).cast::<__m256i>(),
                    _mm512_cvtepi64_epi32(sums),
                );
            }
        }
        let done = blocks * WORDS;
        super::scalar_hamming_distances(probe, &sketches[done * 3..], &mut out[done..]);
    }

    fn lanes(count: usize) -> __mmask8 {
        // `count` is 1..=8.
        (0xFF_u16 >> (WORDS - count)) as __mmask8
    }

    /// Lane `i` of the result: the sum of `v[i]`'s eight lanes.
    #[target_feature(enable = "avx512f")]
    fn sum_each(v: &[__m512i; WORDS]) -> __m512i {
        // Pairs of neighbouring lanes: [a01 b01 a23 b23 a45 b45 a67 b67] for v0 = a, v1 = b.
        let pair =
            |a, b| _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
        // 128-bit blocks 0 and 2 of each, plus blocks 1 and 3 of each.
        let fold = |x, y| {
            _mm512_add_epi64(
                _mm512_shuffle_i64x2::<0b10_00_10_00>(x, y),
                _mm512_shuffle_i64x2::<0b11_01_11_01>(x, y),
            )
        };
        let low = fold(pair(v[0], v[1]), pair(v[2], v[3]));
        let high = fold(pair(v[4], v[5]), pair(v[6], v[7]));
        fold(low, high)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86_avx512_popcnt {
    // Never called: `avx512_popcnt_available` is false off x86_64.
    pub unsafe fn hamming_distances(_: &[u64], _: &[u64], _: &mut [u32]) {
        unreachable!("no AVX-512 kernel off x86_64")
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86_popcnt {
    // Never called: `popcnt_available` is false off x86_64.
    pub unsafe fn hamming_distances(_: &[u64], _: &[u64], _: &mut [u32]) {
        unreachable!("no popcnt kernel off x86_64")
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    // Never called: `avx2_available` is false off x86_64.
    pub unsafe fn dot_f16(_: *const u16, _: *const u16, _: usize) -> f32 {
        unreachable!("no AVX2 kernel off x86_64")
    }
    pub unsafe fn dot_f32(_: *const f32, _: *const f32, _: usize) -> f32 {
        unreachable!("no AVX2 kernel off x86_64")
    }
    pub unsafe fn cosine_distance_i8(_: *const i8, _: *const i8, _: usize) -> f32 {
        unreachable!("no AVX2 kernel off x86_64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usearch::{IndexOptions, MetricKind};

    #[test]
    fn a_gather_finds_every_near_member_in_any_block_and_the_tail() {
        let mut noise = Noise(83);
        let mut next = || noise.next_word();
        for members in [0_usize, 1, 63, 64, 65, 1_000] {
            let mut distances: Vec<u32> =
                (0..members).map(|_| 100 + (next() % 50) as u32).collect();
            // Near ones at a block's first and last place, in a middle block (700), and in
            // the tail past the blocks.
            for at in [0, 63, 64, members.saturating_sub(1), 700] {
                if let Some(distance) = distances.get_mut(at) {
                    *distance = 40 + (at % 20) as u32;
                }
            }
            for limit in [0, 59, 100, 130, 200] {
                let mut expected = Vec::new();
                gather_within_filtered(&distances, limit, 7, &mut expected);
                assert!(limit < 40 || !expected.is_empty() || members == 0);
                assert!(
                    expected
                        .iter()
                        .all(|&(d, at)| distances[at - 7] == d && d <= limit)
                );
                // Appended after what the caller holds, positions counted from `first`.
                let mut gathered = vec![(1, 1)];
                gather_within(&distances, limit, 7, &mut gathered);
                assert_eq!(gathered[0], (1, 1));
                assert_eq!(gathered[1..], expected, "{members} members, limit {limit}");
            }
        }
    }

    /// Every member within the smallest distance that holds `wanted` of them, by sorting.
    fn nearest_by_sorting(distances: &[u32], wanted: usize) -> Vec<(u32, usize)> {
        let mut sorted = distances.to_vec();
        sorted.sort_unstable();
        let Some(&cutoff) = sorted.get(wanted.max(1) - 1).or(sorted.last()) else {
            return Vec::new();
        };
        (0..distances.len())
            .filter(|&at| distances[at] <= cutoff)
            .map(|at| (distances[at], at))
            .collect()
    }

    #[test]
    fn the_streamed_shortlist_is_the_nearest_and_their_ties_in_member_order() {
        let mut noise = Noise(0x5EED);
        let mut next = || noise.next_word();
        for (words, members) in [
            (3_usize, 0_usize),
            (3, 5),
            (3, 20_000),
            (8, 9_000),
            (1, 40_000),
        ] {
            let mut sketches: Vec<u64> = (0..words * members).map(|_| next()).collect();
            let probes: Vec<Vec<u64>> = (0..3)
                .map(|_| (0..words).map(|_| next()).collect())
                .collect();
            // The first probe's near members late in the scan, after many blocks whose
            // running cutoff was looser: they must still be found.
            for at in [members.saturating_sub(1), members / 2, members * 9 / 10] {
                if at < members {
                    sketches[at * words..(at + 1) * words].copy_from_slice(&probes[0]);
                    sketches[at * words] ^= 1;
                }
            }
            let borrowed: Vec<&[u64]> = probes.iter().map(Vec::as_slice).collect();
            for wanted in [1, 64, 700] {
                let found = nearest_each(&borrowed, &sketches, wanted);
                assert_eq!(found.len(), probes.len());
                for (probe, found) in probes.iter().zip(&found) {
                    let mut distances = Vec::new();
                    hamming_distances(probe, &sketches, &mut distances);
                    assert_eq!(
                        *found,
                        nearest_by_sorting(&distances, wanted),
                        "{words} words, {members} members, {wanted} wanted"
                    );
                }
                if members >= 20 {
                    assert!(found[0].iter().filter(|(d, _)| *d == 1).count() >= 3.min(wanted));
                }
            }
        }
        // Ties at the cutoff all stay: every member equally far.
        let same = vec![0_u64; 3 * 1_000];
        let found = nearest_each(&[&[1, 0, 0]], &same, 10);
        assert_eq!(found[0].len(), 1_000);
    }

    #[test]
    fn a_cutoff_holds_the_wanted_or_is_the_largest() {
        assert_eq!(smallest_cutoff([5, 1, 3, 3].into_iter(), 64, 1), 1);
        assert_eq!(smallest_cutoff([5, 1, 3, 3].into_iter(), 64, 2), 3);
        assert_eq!(smallest_cutoff([5, 1, 3, 3].into_iter(), 64, 3), 3);
        assert_eq!(smallest_cutoff([5, 1, 3, 3].into_iter(), 64, 4), 5);
        assert_eq!(smallest_cutoff([5, 1, 3, 3].into_iter(), 64, 5), 64);
        assert_eq!(hamming_distance(&[0b1011, 0], &[0b0001, 1 << 63]), 3);
    }

    struct Noise(u64);

    impl Noise {
        /// The next word of a xorshift stream (the seed must not be zero).
        fn next_word(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn next(&mut self) -> f32 {
            (self.next_word() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }

        fn unit(&mut self, n: usize) -> Vec<f32> {
            let v: Vec<f32> = (0..n).map(|_| self.next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        }
    }

    fn reference(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    fn bits(v: &[f32]) -> Vec<u16> {
        v.iter()
            .map(|x| half::f16::from_f32(*x).to_bits())
            .collect()
    }

    #[test]
    fn dot_products_agree_with_f64_for_every_tail_length() {
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 100, 512, 515] {
            let (a, b) = (noise.unit(n.max(1)), noise.unit(n.max(1)));
            let (a, b) = (&a[..n], &b[..n]);
            let exact = reference(a, b);
            assert!(
                (f64::from(dot_f32(a, b)) - exact).abs() < 1e-5,
                "f32, n = {n}"
            );
            let (ha, hb) = (bits(a), bits(b));
            let rounded: Vec<f32> = ha
                .iter()
                .map(|x| half::f16::from_bits(*x).to_f32())
                .collect();
            let rounded_b: Vec<f32> = hb
                .iter()
                .map(|x| half::f16::from_bits(*x).to_f32())
                .collect();
            assert!(
                (f64::from(dot_f16(&ha, &hb)) - reference(&rounded, &rounded_b)).abs() < 1e-5,
                "f16, n = {n}"
            );
        }
    }

    #[test]
    fn a_unit_vector_has_unit_self_product() {
        let mut noise = Noise(7);
        let a = noise.unit(512);
        assert!((dot_f32(&a, &a) - 1.0).abs() < 1e-5);
        assert!((dot_f16(&bits(&a), &bits(&a)) - 1.0).abs() < 2e-3);
    }

    fn cosine_of_integers(a: &[i8], b: &[i8]) -> f64 {
        let wide = |q: &[i8]| q.iter().map(|x| f32::from(*x)).collect::<Vec<f32>>();
        let (a, b) = (wide(a), wide(b));
        reference(&a, &b) / (reference(&a, &a) * reference(&b, &b)).sqrt()
    }

    /// Quantised 512-d unit vectors keep their cosine within 2e-3: rankings of genuine mates,
    /// and similarities against thresholds, move by no more than that; usearch's own cast
    /// (`x · 127`) moves them several times further.
    #[test]
    fn quantisation_keeps_cosine() {
        let cast = |v: &[f32]| -> Vec<i8> {
            v.iter()
                .map(|x| (x * 127.0).round().clamp(-127.0, 127.0) as i8)
                .collect()
        };
        let mut noise = Noise(11);
        let (mut worst, mut worst_cast) = (0.0_f64, 0.0_f64);
        for _ in 0..200 {
            let a = noise.unit(512);
            // Pairs from unrelated to near-copies.
            let mixed: Vec<f32> = a
                .iter()
                .zip(noise.unit(512))
                .map(|(x, y)| x + y * 0.7)
                .collect();
            let (mut qa, mut qb) = (Vec::new(), Vec::new());
            quantize_i8(&a, &mut qa);
            quantize_i8(&mixed, &mut qb);
            assert_eq!(qa.iter().map(|x| x.unsigned_abs()).max(), Some(127));
            let norm = reference(&mixed, &mixed).sqrt();
            let exact = reference(&a, &mixed) / norm;
            worst = worst.max((cosine_of_integers(&qa, &qb) - exact).abs());
            let unit_mixed: Vec<f32> = mixed.iter().map(|x| x / norm as f32).collect();
            worst_cast =
                worst_cast.max((cosine_of_integers(&cast(&a), &cast(&unit_mixed)) - exact).abs());
        }
        eprintln!(
            "worst cosine error: per-vector scale {worst:.5}, usearch's cast {worst_cast:.5}"
        );
        assert!(worst < 2e-3, "worst cosine error {worst}");
        assert!(worst_cast > 3.0 * worst, "{worst_cast} vs {worst}");
        let mut zero = vec![1_i8; 3];
        quantize_i8(&[0.0; 3], &mut zero);
        assert_eq!(zero, [0, 0, 0]);
        let mut tiny = Vec::new();
        quantize_i8(&[1e-38, -5e-39], &mut tiny);
        assert_eq!(tiny, [127, -64], "tiny components keep their ratio");
    }

    /// The installed metric gives the distances usearch's own cosine gives, within 2e-3
    /// (usearch divides by the f16-rounded norms, the kernel takes them as 1): the same
    /// neighbours, and thresholds move by no more than that.
    #[test]
    fn installed_metric_matches_the_builtin_cosine() {
        for quantization in [ScalarKind::F16, ScalarKind::F32] {
            let options = IndexOptions {
                dimensions: 64,
                metric: MetricKind::Cos,
                quantization,
                connectivity: 16,
                expansion_add: 64,
                expansion_search: 64,
                multi: false,
            };
            let builtin = Index::new(&options).expect("index");
            let mut custom = Index::new(&options).expect("index");
            let installed = install_unit_cosine(&mut custom);
            assert_eq!(installed == Installed::Avx2UnitDot, avx2_available());
            let mut noise = Noise(42);
            let members: Vec<Vec<f32>> = (0..300).map(|_| noise.unit(64)).collect();
            for index in [&builtin, &custom] {
                index.reserve(members.len()).expect("reserve");
                for (key, vector) in members.iter().enumerate() {
                    index.add(key as u64, vector).expect("add");
                }
            }
            for query in members.iter().step_by(37) {
                let (x, y) = (
                    builtin.exact_search(query, 5).expect("search"),
                    custom.exact_search(query, 5).expect("search"),
                );
                assert_eq!(x.keys, y.keys, "{quantization:?}");
                for (dx, dy) in x.distances.iter().zip(&y.distances) {
                    assert!((dx - dy).abs() < 2e-3, "{quantization:?}: {dx} vs {dy}");
                }
            }
        }
    }

    #[test]
    fn integer_cosine_agrees_with_f64_for_every_tail_length() {
        let mut noise = Noise(0x5DEE_CE66_D1CE_4E5B);
        for n in [1, 7, 31, 32, 33, 63, 64, 65, 100, 512, 515] {
            let (mut qa, mut qb) = (Vec::new(), Vec::new());
            quantize_i8(&noise.unit(n), &mut qa);
            quantize_i8(&noise.unit(n), &mut qb);
            // Extremes: every byte ±127 multiplied by ±127 — the most a pair can sum to.
            let extreme: Vec<i8> = (0..n)
                .map(|i| if i % 3 == 0 { -127 } else { 127 })
                .collect();
            for (a, b) in [
                (&qa, &qb),
                (&qa, &qa),
                (&extreme, &extreme),
                (&extreme, &qb),
            ] {
                let exact = 1.0 - cosine_of_integers(a, b);
                let got = f64::from(cosine_distance_i8(a, b));
                assert!(
                    (got - exact.max(0.0)).abs() < 1e-6,
                    "n = {n}: {got} vs {exact}"
                );
            }
        }
        assert_eq!(cosine_distance_i8(&[0; 40], &[0; 40]), 0.0);
        assert_eq!(cosine_distance_i8(&[0; 40], &[5; 40]), 1.0);
    }

    /// On an `i8` index the kernel here replaces usearch's only where VNNI is missing, and
    /// then finds the same neighbours at the same distances.
    #[test]
    fn integer_indexes_get_the_kernel_only_without_vnni() {
        let options = IndexOptions {
            dimensions: 96,
            metric: MetricKind::Cos,
            quantization: ScalarKind::I8,
            connectivity: 16,
            expansion_add: 64,
            expansion_search: 64,
            multi: false,
        };
        let builtin = Index::new(&options).expect("index");
        let mut custom = Index::new(&options).expect("index");
        let installed = install_unit_cosine(&mut custom);
        let expected = if avx2_available() && !vnni_available() {
            Installed::Avx2QuantisedCosine
        } else {
            Installed::Builtin
        };
        assert_eq!(installed, expected);
        let mut noise = Noise(43);
        let members: Vec<Vec<i8>> = (0..300)
            .map(|_| {
                let mut q = Vec::new();
                quantize_i8(&noise.unit(96), &mut q);
                q
            })
            .collect();
        for index in [&builtin, &custom] {
            index.reserve(members.len()).expect("reserve");
            for (key, vector) in members.iter().enumerate() {
                index.add(key as u64, vector.as_slice()).expect("add");
            }
        }
        for query in members.iter().step_by(37) {
            let (x, y) = (
                builtin.exact_search(query.as_slice(), 5).expect("search"),
                custom.exact_search(query.as_slice(), 5).expect("search"),
            );
            assert_eq!(x.keys, y.keys);
            for (dx, dy) in x.distances.iter().zip(&y.distances) {
                assert!((dx - dy).abs() < 1e-4, "{dx} vs {dy}");
            }
        }
    }

    #[test]
    fn sketches_count_differing_signs_for_every_tail_length() {
        let mut noise = Noise(51);
        for n in [1, 63, 64, 65, 130, 512] {
            let (a, b) = (noise.unit(n), noise.unit(n));
            let (mut sa, mut sb) = (Vec::new(), Vec::new());
            sign_sketch(&a, &mut sa);
            sign_sketch(&b, &mut sb);
            assert_eq!(sa.len(), n.div_ceil(64));
            let differing = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| (**x > 0.0) != (**y > 0.0))
                .count();
            let mut distances = Vec::new();
            let both: Vec<u64> = sa.iter().chain(&sb).copied().collect();
            hamming_distances(&sa, &both, &mut distances);
            assert_eq!(distances, vec![0, differing as u32], "length {n}");
        }
    }

    #[test]
    fn every_kernel_counts_like_the_portable_loop_for_any_length_and_count() {
        let mut noise = Noise(53);
        let mut word = || {
            noise.next();
            noise.0
        };
        for words in [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17] {
            let probe: Vec<u64> = (0..words).map(|_| word()).collect();
            for members in [0, 1, 7, 8, 9, 16, 23, 64] {
                let sketches: Vec<u64> = (0..words * members)
                    .map(|i| if i % 5 == 0 { probe[i % words] } else { word() })
                    .collect();
                let mut expected = vec![0; members];
                hamming_distances_any(&probe, &sketches, &mut expected);
                let mut found = Vec::new();
                hamming_distances(&probe, &sketches, &mut found);
                assert_eq!(found, expected, "{words} words, {members} members");
                let mut unrolled = vec![0; members];
                hamming_distances_portable(&probe, &sketches, &mut unrolled);
                assert_eq!(
                    unrolled, expected,
                    "unrolled, {words} words, {members} members"
                );
                if avx512_popcnt_available() {
                    let mut wide = vec![0; members];
                    // SAFETY: the CPU has the features.
                    unsafe { x86_avx512_popcnt::hamming_distances(&probe, &sketches, &mut wide) };
                    assert_eq!(wide, expected, "AVX-512, {words} words, {members} members");
                }
            }
        }
    }

    #[test]
    fn a_shared_scan_gives_each_probe_its_own_distances_across_blocks() {
        let mut noise = Noise(54);
        let mut word = || {
            noise.next();
            noise.0
        };
        for words in [3, 8, 9] {
            let block = (SHARED_SCAN_BLOCK_BYTES / (words * 8)).next_multiple_of(8);
            // Past two blocks, with a ragged last one.
            let members = 2 * block + 13;
            let sketches: Vec<u64> = (0..words * members).map(|_| word()).collect();
            let probes: Vec<Vec<u64>> = (0..3)
                .map(|_| (0..words).map(|_| word()).collect())
                .collect();
            let borrowed: Vec<&[u64]> = probes.iter().map(Vec::as_slice).collect();
            let mut shared = vec![vec![7_u32; 2]; 5];
            hamming_distances_each(&borrowed, &sketches, &mut shared);
            assert_eq!(shared.len(), 3, "{words} words");
            for (probe, found) in probes.iter().zip(&shared) {
                let mut expected = vec![0; members];
                hamming_distances_any(probe, &sketches, &mut expected);
                assert_eq!(found, &expected, "{words} words");
            }
        }
        let mut none = vec![vec![1_u32]];
        hamming_distances_each(&[], &[1, 2], &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn a_near_copy_is_nearer_by_sketch_than_strangers() {
        let mut noise = Noise(52);
        let stored: Vec<Vec<f32>> = (0..200).map(|_| noise.unit(512)).collect();
        let mut sketches = Vec::new();
        let mut sketch = Vec::new();
        for vector in &stored {
            sign_sketch(vector, &mut sketch);
            sketches.extend_from_slice(&sketch);
        }
        let mut distances = Vec::new();
        for (mate, vector) in stored.iter().enumerate().step_by(17) {
            let copy: Vec<f32> = vector
                .iter()
                .map(|x| x + 0.6 * noise.next() / 11.0)
                .collect();
            sign_sketch(&copy, &mut sketch);
            hamming_distances(&sketch, &sketches, &mut distances);
            let nearest = (0..distances.len()).min_by_key(|i| distances[*i]);
            assert_eq!(nearest, Some(mate));
        }
    }
}
