//! `interop-hub bench --timing`: whether what a caller may not see shows in the time its
//! answers take. Pairs of requests that must be answered alike (same status, same body
//! shape) are sent interleaved to a hub serving on a local port, one at a time, and each
//! pair's latencies compared: the median difference with a bootstrap 99% interval, and
//! the two-sample Kolmogorov–Smirnov test.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;
use serde_json::json;

use crate::bench::{Progress, native_record};
use crate::generate::{Sex, WrittenDocument, WrittenPerson, ees_file};
use interop_hub::access::{Principal, TokenAuthority};
use interop_hub::config::HubConfig;
use interop_hub::core::Hub;
use interop_hub::http::AppState;

/// Fewest requests per class: below this the 99% interval is too wide to tell 20 µs.
pub const MIN_REQUESTS: usize = 5_000;
/// Records of the generated background population (EES and SIS, with biometrics).
const BACKGROUND_RECORDS: usize = 2_000;
/// Bootstrap resamples for each interval.
const RESAMPLES: usize = 2_000;
/// The target: every interval contains 0 or lies within this many microseconds of it.
pub const TARGET_MICROSECONDS: f64 = 20.0;
/// The member state of every principal and record the timing bench makes.
const STATE: &str = "DE";

#[derive(Debug, Clone)]
pub struct TimingOptions {
    /// Requests per class (each pair sends twice this many).
    pub requests: usize,
    pub seed: u64,
}

/// One request: method, path and JSON body, sent with a token.
#[derive(Debug, Clone)]
struct Probe {
    path: String,
    body: Option<serde_json::Value>,
    token: String,
}

/// Two requests a caller must not be able to tell apart.
struct Pair {
    name: &'static str,
    classes: [(&'static str, Probe); 2],
}

/// One pair's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct PairTiming {
    pub pair: &'static str,
    pub classes: [&'static str; 2],
    pub requests_per_class: usize,
    pub median_us: [f64; 2],
    /// Median of the first class minus the second's.
    pub median_difference_us: f64,
    /// Bootstrap 99% interval of that difference.
    pub interval_99_us: [f64; 2],
    pub ks_statistic: f64,
    pub ks_p_value: f64,
    /// The interval contains 0 or lies within the target.
    pub meets_target: bool,
}

/// The run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TimingReport {
    pub cpu: String,
    pub target_us: f64,
    pub pairs: Vec<PairTiming>,
}

impl fmt::Display for TimingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "timing side channels on {} (target ±{} µs)\n",
            self.cpu, self.target_us
        )?;
        writeln!(
            f,
            "| pair | classes | n per class | medians, µs | difference, µs | 99% interval, µs | KS D | KS p | target |"
        )?;
        writeln!(f, "|---|---|---:|---:|---:|---:|---:|---:|---|")?;
        for p in &self.pairs {
            writeln!(
                f,
                "| {} | {} / {} | {} | {:.1} / {:.1} | {:+.1} | [{:+.1}, {:+.1}] | {:.4} | {:.3} | {} |",
                p.pair,
                p.classes[0],
                p.classes[1],
                p.requests_per_class,
                p.median_us[0],
                p.median_us[1],
                p.median_difference_us,
                p.interval_99_us[0],
                p.interval_99_us[1],
                p.ks_statistic,
                p.ks_p_value,
                if p.meets_target { "met" } else { "missed" }
            )?;
        }
        Ok(())
    }
}

fn principal(subject: &str, roles: &[&str]) -> anyhow::Result<Principal> {
    let roles = roles
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e: &str| anyhow::anyhow!(e))?;
    Principal::new(subject, "TIMING", STATE, roles).map_err(|e| anyhow::anyhow!(e))
}

/// An EES file of one person: `file`, `surname`, born `born`.
fn ees_record(file: &str, surname: &str, given: &str, born: &str) -> String {
    let number = format!("T{:08}", file.len() * 7919 % 99_999_999);
    let person = WrittenPerson {
        surname,
        given: &[given.to_owned()],
        date_of_birth: born,
        sex: Sex::Female,
        nationality: "TUR",
        document: Some(WrittenDocument {
            number: &number,
            country: "TUR",
            expiry: None,
        }),
    };
    serde_json::Value::Object(ees_file(file, STATE, &person)).to_string()
}

/// An ECRIS-TCN record of a convicted person without biometrics.
fn ecris_record(id: &str, surname: &str, born: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ConvictedPerson xmlns="urn:interop-hub:ecris-tcn:1" recordId="{id}" version="1" convictingState="{STATE}">
  <Identity>
    <Surname>{surname}</Surname>
    <Forename>Jan</Forename>
    <BirthDate>{born}</BirthDate>
    <Gender>M</Gender>
    <Nationality>UKR</Nationality>
  </Identity>
  <IdentityDocument type="P" number="EC{:07}" country="UKR"/>
</ConvictedPerson>
"#,
        id.len() * 104_729 % 9_999_999
    )
}

/// Loads the records every pair needs beside a generated background population.
async fn populate(hub: &Hub, connector: &Principal) -> anyhow::Result<()> {
    let ingest = |system: connectors::SourceSystem, content_type: &'static str, body: String| async move {
        hub.records
            .ingest(connector, system, Some(content_type), body.as_bytes())
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("timing bench ingest: {e}"))
    };
    let bar = Progress::new(BACKGROUND_RECORDS, "populate");
    for i in 0..BACKGROUND_RECORDS {
        let (system, _, body) = native_record(crate::generate::DEFAULT_SEED, i);
        ingest(system, "application/json", body).await?;
        bar.inc(1);
    }
    bar.finish();
    use connectors::SourceSystem::{EcrisTcn, Ees};
    // A conviction only ECRIS-TCN holds.
    ingest(
        EcrisTcn,
        "application/xml",
        ecris_record("ECRIS-T-1", "Kowalczyk", "1980-01-01"),
    )
    .await?;
    // One EES file of one name, thirty of another, all born the same day.
    ingest(
        Ees,
        "application/json",
        ees_record("EES-T-ONE", "Lindqvist", "Maria", "1975-05-05"),
    )
    .await?;
    for i in 0..30 {
        let file = format!("EES-T-MANY-{i:02}");
        ingest(
            Ees,
            "application/json",
            ees_record(&file, "Johansson", &format!("Given{i}"), "1975-05-05"),
        )
        .await?;
    }
    // A child, whom no identity check may answer.
    let born = (time::OffsetDateTime::now_utc().year() - 8).to_string();
    ingest(
        Ees,
        "application/json",
        ees_record("EES-T-CHILD", "Berg", "Lena", &born),
    )
    .await?;
    Ok(())
}

fn pairs(tokens: &TokenAuthority) -> anyhow::Result<Vec<Pair>> {
    let token = |subject: &str, roles: &[&str]| -> anyhow::Result<String> {
        tokens.mint(
            &principal(subject, roles)?,
            time::OffsetDateTime::now_utc(),
            time::Duration::hours(8),
        )
    };
    let sirene = token("sirene-officer", &["sirene"])?;
    let designated = token("designated-officer", &["le_designated"])?;
    let guard = token("border-officer", &["border_guard"])?;
    let police = token("police-officer", &["police"])?;
    let search =
        |token: &str, purpose: &str, surname: &str, born: &str, systems: Option<&[&str]>| {
            let mut body = json!({"purpose": purpose, "case_reference": "TIMING-1",
                              "biographic": {"surname": surname, "date_of_birth": born}});
            if let Some(systems) = systems {
                body["systems"] = json!(systems);
            }
            Probe {
                path: "/v1/search".to_owned(),
                body: Some(body),
                token: token.to_owned(),
            }
        };
    let read = |token: &str, path: &str| Probe {
        path: path.to_owned(),
        body: None,
        token: token.to_owned(),
    };
    Ok(vec![
        Pair {
            name: "a conviction the caller may not query at all (sirene, ECRIS-TCN)",
            classes: [
                (
                    "exists",
                    search(&sirene, "alert_handling", "Kowalczyk", "1980-01-01", None),
                ),
                (
                    "absent",
                    search(&sirene, "alert_handling", "Wisniewski", "1980-01-01", None),
                ),
            ],
        },
        Pair {
            name: "one vs thirty matches in a hit-only system (le_designated, EES)",
            classes: [
                (
                    "one",
                    search(
                        &designated,
                        "serious_crime",
                        "Lindqvist",
                        "1975-05-05",
                        Some(&["ees"]),
                    ),
                ),
                (
                    "thirty",
                    search(
                        &designated,
                        "serious_crime",
                        "Johansson",
                        "1975-05-05",
                        Some(&["ees"]),
                    ),
                ),
            ],
        },
        Pair {
            name: "a record of a system the caller may not read vs a missing one (border_guard, ECRIS-TCN)",
            classes: [
                (
                    "exists",
                    read(
                        &guard,
                        "/v1/systems/ecris-tcn/records/ECRIS-T-1?purpose=border_check",
                    ),
                ),
                (
                    "missing",
                    read(
                        &guard,
                        "/v1/systems/ecris-tcn/records/ECRIS-T-0?purpose=border_check",
                    ),
                ),
            ],
        },
        Pair {
            name: "a child's record under an identity check vs a missing one (police, EES)",
            classes: [
                (
                    "child",
                    read(
                        &police,
                        "/v1/systems/ees/records/EES-T-CHILD?purpose=identity_check",
                    ),
                ),
                (
                    "missing",
                    read(
                        &police,
                        "/v1/systems/ees/records/EES-T-NONE?purpose=identity_check",
                    ),
                ),
            ],
        },
    ])
}

/// Sends one probe; its latency, and its status and body (the classes of a pair must
/// answer alike).
async fn send(
    client: &reqwest::Client,
    base: &str,
    probe: &Probe,
) -> anyhow::Result<(Duration, u16, serde_json::Value)> {
    let url = format!("{base}{}", probe.path);
    let request = match &probe.body {
        Some(body) => client.post(url).json(body),
        None => client.get(url),
    }
    .bearer_auth(&probe.token);
    let started = Instant::now();
    let response = request.send().await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    let latency = started.elapsed();
    Ok((
        latency,
        status,
        serde_json::from_slice(&bytes).unwrap_or_default(),
    ))
}

/// The run: a hub with the pairs' records, served on a local port; every pair measured.
pub async fn run(options: &TimingOptions) -> anyhow::Result<TimingReport> {
    anyhow::ensure!(
        options.requests >= MIN_REQUESTS,
        "--requests must be at least {MIN_REQUESTS}"
    );
    let data_dir = tempfile::tempdir()?;
    let mut config = HubConfig::embedded(data_dir.path());
    config.settings.identity_check.member_states = vec![STATE.to_owned()];
    // Thousands of requests from one principal: budgets would measure the limiter.
    config.settings.limits = interop_hub::config::LimitSettings {
        per_second: u32::MAX,
        burst: u32::MAX,
        agency_per_second: u32::MAX,
        agency_burst: u32::MAX,
        hit_flag_alarm_per_hour: u32::MAX,
    };
    config.settings.validate()?;
    let tokens = Arc::new(TokenAuthority::load_or_create(&config.keys_dir())?);
    let hub = Arc::new(Hub::open(&config).await?);
    hub.records.prepare(&config.index_dir()).await?;
    let connector = principal(
        "timing-connector",
        &["connector:ees", "connector:sis", "connector:ecris-tcn"],
    )?;
    populate(&hub, &connector).await?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState {
        hub: Arc::clone(&hub),
        tokens: Arc::clone(&tokens),
        max_body_bytes: config.settings.max_body_bytes,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_settings = config.settings.server.clone();
    let server = tokio::spawn(async move {
        interop_hub::http::serve(
            listener,
            interop_hub::http::router(state),
            &server_settings,
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    let client = reqwest::Client::new();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(options.seed);
    let mut report = TimingReport {
        cpu: crate::bench::cpu_description(),
        target_us: TARGET_MICROSECONDS,
        pairs: Vec::new(),
    };
    for pair in pairs(&tokens)? {
        // Both classes answer alike, or the pair measures nothing worth hiding.
        let answers = [
            send(&client, &base, &pair.classes[0].1).await?,
            send(&client, &base, &pair.classes[1].1).await?,
        ];
        anyhow::ensure!(
            answers[0].1 == answers[1].1 && answers[0].2 == answers[1].2,
            "{}: the two classes are answered differently ({} vs {})",
            pair.name,
            answers[0].1,
            answers[1].1
        );
        // Warm both paths, then interleave in a random order per round.
        for _ in 0..200 {
            for (_, probe) in &pair.classes {
                send(&client, &base, probe).await?;
            }
        }
        let bar = Progress::new(options.requests, "timing");
        let mut latencies: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..options.requests {
            let first = usize::from(rng.random_bool(0.5));
            for class in [first, 1 - first] {
                let (latency, _, _) = send(&client, &base, &pair.classes[class].1).await?;
                latencies[class].push(latency.as_secs_f64() * 1e6);
            }
            bar.inc(1);
        }
        bar.finish();
        report.pairs.push(compare(
            pair.name,
            [pair.classes[0].0, pair.classes[1].0],
            &latencies,
            &mut rng,
        ));
    }
    let _ = stop.send(());
    server.await??;
    hub.operations.close().await;
    Ok(report)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values
}

fn compare(
    name: &'static str,
    classes: [&'static str; 2],
    latencies: &[Vec<f64>; 2],
    rng: &mut rand::rngs::Xoshiro256PlusPlus,
) -> PairTiming {
    let [a, b] = [sorted(&latencies[0]), sorted(&latencies[1])];
    let difference = median(&a) - median(&b);
    let mut resampled: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let draw = |values: &[f64], rng: &mut rand::rngs::Xoshiro256PlusPlus| {
                sorted(
                    &(0..values.len())
                        .map(|_| values[rng.random_range(0..values.len())])
                        .collect::<Vec<_>>(),
                )
            };
            median(&draw(&a, rng)) - median(&draw(&b, rng))
        })
        .collect();
    resampled.sort_by(f64::total_cmp);
    let at = |q: f64| resampled[((q * (RESAMPLES - 1) as f64).round()) as usize];
    let interval = [at(0.005), at(0.995)];
    let (statistic, p_value) = kolmogorov_smirnov(&a, &b);
    PairTiming {
        pair: name,
        classes,
        requests_per_class: a.len().min(b.len()),
        median_us: [median(&a), median(&b)],
        median_difference_us: difference,
        interval_99_us: interval,
        ks_statistic: statistic,
        ks_p_value: p_value,
        meets_target: (interval[0] <= 0.0 && interval[1] >= 0.0)
            || (interval[0] >= -TARGET_MICROSECONDS && interval[1] <= TARGET_MICROSECONDS),
    }
}

/// The two-sample KS statistic of two sorted samples and its asymptotic p-value.
fn kolmogorov_smirnov(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut statistic) = (0, 0, 0.0_f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        statistic = statistic.max((i as f64 / n - j as f64 / m).abs());
    }
    let effective = (n * m / (n + m)).sqrt();
    let lambda = (effective + 0.12 + 0.11 / effective) * statistic;
    (statistic, kolmogorov_survival(lambda))
}

/// Q(λ) = P(K > λ) of Kolmogorov's distribution, from whichever of its two series
/// converges fast at λ.
fn kolmogorov_survival(lambda: f64) -> f64 {
    use std::f64::consts::PI;
    if lambda <= 0.0 {
        return 1.0;
    }
    let p = if lambda < 1.18 {
        // P(K ≤ λ) = √(2π)/λ · Σ e^(−(2k−1)²π²/(8λ²))
        let sum: f64 = (1..=20)
            .map(|k| {
                let odd = f64::from(2 * k - 1);
                (-odd * odd * PI * PI / (8.0 * lambda * lambda)).exp()
            })
            .sum();
        1.0 - (2.0 * PI).sqrt() / lambda * sum
    } else {
        // Q(λ) = 2 Σ (−1)^(k−1) e^(−2k²λ²)
        (1..=100)
            .map(|k| {
                let k = f64::from(k);
                let sign = if k % 2.0 == 1.0 { 2.0 } else { -2.0 };
                sign * (-2.0 * k * k * lambda * lambda).exp()
            })
            .sum()
    };
    p.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ks_test_tells_shifted_samples_apart_and_not_equal_ones() {
        let a: Vec<f64> = (0..2_000).map(|i| f64::from(i % 100)).collect();
        let shifted: Vec<f64> = a.iter().map(|v| v + 30.0).collect();
        let (d, p) = kolmogorov_smirnov(&sorted(&a), &sorted(&shifted));
        assert!((d - 0.3).abs() < 0.01, "{d}");
        assert!(p < 1e-6, "{p}");
        let (d, p) = kolmogorov_smirnov(&sorted(&a), &sorted(&a));
        assert!(d < 1e-9 && p > 0.99, "{d} {p}");
        // Q(1) of Kolmogorov's distribution, from either series near their meeting point.
        assert!((kolmogorov_survival(1.0) - 0.2700).abs() < 1e-3);
        assert!((kolmogorov_survival(1.2) - 0.1122).abs() < 1e-3);
        assert!((kolmogorov_survival(1.17) - kolmogorov_survival(1.19)).abs() < 0.02);
    }

    #[test]
    fn the_interval_holds_the_true_difference_and_judges_the_target() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        let noise = |rng: &mut rand::rngs::Xoshiro256PlusPlus, shift: f64| -> Vec<f64> {
            (0..5_000)
                .map(|_| 1_000.0 + shift + rng.random_range(0.0..100.0))
                .collect()
        };
        let same = [noise(&mut rng, 0.0), noise(&mut rng, 0.0)];
        let timing = compare("same", ["a", "b"], &same, &mut rng);
        assert!(timing.meets_target, "{timing:?}");
        let apart = [noise(&mut rng, 50.0), noise(&mut rng, 0.0)];
        let timing = compare("apart", ["a", "b"], &apart, &mut rng);
        assert!(
            timing.interval_99_us[0] < 50.0 && timing.interval_99_us[1] > 50.0,
            "{timing:?}"
        );
        assert!(!timing.meets_target);
    }
}
