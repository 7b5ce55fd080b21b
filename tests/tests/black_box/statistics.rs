//! Statistics, the data-quality report and the metrics: counts that withhold what is small
//! and whatever would give it away, one snapshot a day, shown alike by the console; rates
//! that follow what ingest saw; and no personal data anywhere.

use hub_tests::{Backend, EXAMPLES, TestHub, fixture, on_both_backends};
use interop_hub::clock::Clock;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

on_both_backends!(
    statistics_suppress_counts_below_ten,
    a_small_age_band_cannot_be_worked_out,
    statistics_are_one_snapshot_a_day,
    the_console_dashboard_shows_the_published_statistics,
    data_quality_follows_refusals_and_findings,
    no_personal_data_reaches_metrics_or_statistics,
);

/// An EES record of the fixture's person under its own file id and document number.
fn ees_copy(i: usize) -> String {
    let mut record: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    record["file_id"] = json!(format!("EES-STAT-{i:03}"));
    record["travel_document"]["number"] = json!(format!("ST{i:05}"));
    record.to_string()
}

fn count(stats: &Value, category: &str, system: Option<&str>, key: Option<&str>) -> Value {
    stats["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| {
            r["category"] == category && r["system"].as_str() == system && r["key"].as_str() == key
        })
        .map_or(Value::String("absent".into()), |r| r["count"].clone())
}

async fn statistics_suppress_counts_below_ten(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for i in 0..12 {
        let response = hub
            .post_record("ees", "application/json", ees_copy(i))
            .await;
        assert_eq!(response.status(), 201);
    }
    let vis = hub
        .post_record("vis", "application/xml", fixture("vis.xml"))
        .await;
    assert_eq!(vis.status(), 201);

    let (status, stats) = hub.get_json("/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["suppressed_below"], 10);
    assert_eq!(count(&stats, "records", None, None), 13);
    assert_eq!(
        count(&stats, "records", Some("vis"), None),
        Value::Null,
        "1 is suppressed"
    );
    assert_eq!(
        count(&stats, "records", Some("ees"), None),
        Value::Null,
        "beside the total of 13, EES's 12 would give VIS's 1 away"
    );
    assert_eq!(
        count(&stats, "records", Some("sis"), None),
        0,
        "0 discloses no one"
    );
    assert_eq!(
        count(&stats, "records_by_nationality", Some("ees"), Some("TUR")),
        Value::Null,
        "EES's only nationality would be its withheld total"
    );
    assert_eq!(
        count(&stats, "records_by_age_band", Some("vis"), Some("30-49")),
        Value::Null
    );
    assert_eq!(
        count(&stats, "links", None, Some("white")),
        12,
        "each EES copy to the visa"
    );
    assert_no_small_count_given_away(&stats);

    let response = hub
        .client
        .get(hub.url("/v1/stats?format=csv"))
        .send()
        .await
        .expect("hub answers");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/csv")
    );
    let csv = response.text().await.expect("text");
    assert!(
        csv.starts_with("category,system,key,period,count\n"),
        "{csv}"
    );
    assert!(csv.contains("\nrecords,,,,13\n"), "{csv}");
    assert!(csv.contains("\nrecords,vis,,,<10\n"), "{csv}");
    assert!(csv.contains("\nrecords,ees,,,<10\n"), "{csv}");
    for small in 1..10 {
        assert!(
            !csv.contains(&format!(",{small}\n")),
            "no count below ten: {csv}"
        );
    }

    let (status, _) = hub.get_json("/v1/stats?format=xml").await;
    assert_eq!(status, 400);
    let guard = hub.token("officer", "DE", &["border_guard"]);
    let (status, _) = hub.call(Method::GET, "/v1/stats", Some(&guard), None).await;
    assert_eq!(status, 403, "statistics are for the statistics duty");
    hub.stop().await;
}

/// A row's name as the console marks it: `category/system/key/period`.
fn row_name(row: &Value) -> String {
    let field = |name: &str| row[name].as_str().unwrap_or("").to_owned();
    format!(
        "{}/{}/{}/{}",
        field("category"),
        field("system"),
        field("key"),
        field("period")
    )
}

/// The sums a reader may rely on, as (total, parts) of row names: every system's records
/// add up to all records, and so do the hours stored; each system's age bands, and
/// (nearly) its nationalities, add up to its records; each colour's days add up to its
/// links; the backlog is the yellow links, and adds up from its authorities and from
/// overdue and within deadline.
fn published_sums(stats: &Value) -> Vec<(String, Vec<String>)> {
    let rows = stats["rows"].as_array().expect("rows");
    let names = |pick: &dyn Fn(&Value) -> bool| -> Vec<String> {
        rows.iter().filter(|r| pick(r)).map(row_name).collect()
    };
    let mut sums = vec![
        (
            "records///".to_owned(),
            names(&|r| r["category"] == "records" && !r["system"].is_null()),
        ),
        (
            "records///".to_owned(),
            names(&|r| r["category"] == "records_stored_by_hour"),
        ),
        (
            "links//yellow/".to_owned(),
            vec!["verification_backlog///".to_owned()],
        ),
        (
            "verification_backlog///".to_owned(),
            names(&|r| r["category"] == "verification_backlog" && !r["key"].is_null()),
        ),
        (
            "verification_backlog///".to_owned(),
            vec![
                "verification_overdue///".to_owned(),
                "verification_within_deadline///".to_owned(),
            ],
        ),
    ];
    for system in ["ees", "etias", "vis", "sis", "ecris-tcn"] {
        for category in ["records_by_age_band", "records_by_nationality"] {
            sums.push((
                format!("records/{system}//"),
                names(&|r| r["category"] == category && r["system"] == system),
            ));
        }
    }
    for colour in ["white", "yellow", "green", "red"] {
        sums.push((
            format!("links//{colour}/"),
            names(&|r| r["category"] == "links_by_day" && r["key"] == colour),
        ));
    }
    sums
}

/// Works out whatever the published sums determine, as a reader would (a sum with one
/// unknown gives it; solved counts feed the next sums), and fails on any withheld count so
/// worked out, or on withheld counts under a published total that together come to less
/// than ten.
fn assert_no_small_count_given_away(stats: &Value) {
    let rows = stats["rows"].as_array().expect("rows");
    let mut known: std::collections::BTreeMap<String, Option<i64>> = rows
        .iter()
        .map(|r| (row_name(r), r["count"].as_i64()))
        .collect();
    let sums: Vec<(String, Vec<String>)> = published_sums(stats)
        .into_iter()
        .filter(|(total, parts)| !parts.is_empty() && known.contains_key(total))
        .collect();
    let mut worked_out = Vec::new();
    loop {
        let mut progress = false;
        for (total, parts) in &sums {
            let members: Vec<&String> = std::iter::once(total).chain(parts).collect();
            let unknown: Vec<&String> = members
                .iter()
                .copied()
                .filter(|m| known.get(*m).copied().flatten().is_none())
                .collect();
            let parts_known: i64 = parts
                .iter()
                .filter_map(|p| known.get(p).copied().flatten())
                .sum();
            if let Some(total_value) = known.get(total).copied().flatten()
                && !unknown.is_empty()
            {
                assert!(
                    unknown.len() >= 2 && total_value - parts_known >= 10,
                    "{total} = {total_value} minus its published parts leaves {} for {unknown:?}",
                    total_value - parts_known
                );
            }
            if let [only] = unknown.as_slice() {
                let value = if *only == total {
                    parts_known
                } else {
                    known[total].unwrap_or_default() - parts_known
                };
                worked_out.push(format!("{only} = {value}"));
                known.insert((*only).clone(), Some(value));
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    assert!(
        worked_out.is_empty(),
        "withheld counts worked out from published sums: {worked_out:?}"
    );
}

async fn a_small_age_band_cannot_be_worked_out(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for i in 0..12 {
        let response = hub
            .post_record("ees", "application/json", ees_copy(i))
            .await;
        assert_eq!(response.status(), 201);
    }
    // One child: EES ages 0–11 = 1, beside EES's published records.
    let mut child: Value = serde_json::from_str(&ees_copy(12)).expect("json");
    child["traveller"]["date_of_birth"] = json!("2020-02-02");
    let response = hub
        .post_record("ees", "application/json", child.to_string())
        .await;
    assert_eq!(response.status(), 201);

    let (status, stats) = hub.get_json("/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(count(&stats, "records", Some("ees"), None), 13);
    assert_eq!(
        count(&stats, "records_by_age_band", Some("ees"), Some("0-11")),
        Value::Null
    );
    assert_no_small_count_given_away(&stats);
    hub.stop().await;
}

async fn statistics_are_one_snapshot_a_day(backend: Backend) {
    // Noon, so that the five minutes below never cross midnight (a run at 23:58 did).
    let clock = Clock::manual(
        OffsetDateTime::now_utc().replace_time(time::Time::from_hms(12, 0, 0).expect("noon")),
    );
    let hub = TestHub::spawn_with(backend, |config| config.clock = clock.clone()).await;
    for i in 0..12 {
        let response = hub
            .post_record("ees", "application/json", ees_copy(i))
            .await;
        assert_eq!(response.status(), 201);
    }
    let (status, first) = hub.get_json("/v1/stats").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(count(&first, "records", Some("ees"), None), 12);

    // A record minutes later: the same snapshot, so no difference to isolate it by.
    clock.advance(time::Duration::minutes(5));
    let response = hub
        .post_record("ees", "application/json", ees_copy(12))
        .await;
    assert_eq!(response.status(), 201);
    let (_, again) = hub.get_json("/v1/stats").await;
    assert_eq!(again, first, "the day's snapshot, unchanged");

    clock.advance(time::Duration::days(1));
    let (_, next_day) = hub.get_json("/v1/stats").await;
    assert_eq!(count(&next_day, "records", Some("ees"), None), 13);
    let as_of = |stats: &Value| {
        OffsetDateTime::parse(
            stats["as_of"].as_str().expect("as_of"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339")
    };
    assert!(as_of(&next_day) - as_of(&first) >= time::Duration::days(1));
    hub.stop().await;
}

async fn the_console_dashboard_shows_the_published_statistics(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for i in 0..12 {
        let response = hub
            .post_record("ees", "application/json", ees_copy(i))
            .await;
        assert_eq!(response.status(), 201);
    }
    hub.post_examples().await;
    let supervisor = hub.token("supervisor-1", "SE", &["supervisor"]);
    let page = hub
        .anonymous
        .get(hub.url("/console"))
        .header("cookie", format!("hub_session={supervisor}"))
        .send()
        .await
        .expect("hub answers");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("html");
    let (_, stats) = hub.get_json("/v1/stats").await;
    let published: std::collections::BTreeMap<String, String> = stats["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let count = r["count"]
                .as_i64()
                .map_or_else(|| "<10".to_owned(), |c| c.to_string());
            (row_name(r), count)
        })
        .collect();
    let mut figures = 0;
    for marked in page.split(" data-row=\"").skip(1) {
        let (row, rest) = marked.split_once('"').expect("closing quote");
        let shown = rest
            .strip_prefix(" data-count=\"")
            .and_then(|rest| rest.split_once('"'))
            .map(|(count, _)| count.replace("&lt;", "<"))
            .expect("a count beside each row");
        assert_eq!(
            published.get(row),
            Some(&shown),
            "the dashboard shows {shown} for {row}"
        );
        figures += 1;
    }
    assert!(figures > 100, "{figures} figures on the dashboard");
    hub.stop().await;
}

async fn data_quality_follows_refusals_and_findings(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for (system, file, content_type) in EXAMPLES {
        let response = hub.post_record(system, content_type, fixture(file)).await;
        assert_eq!(response.status(), 201, "{system}");
    }
    // A replay is neither accepted again nor refused.
    let replay = hub
        .post_record("ees", "application/json", fixture("ees.json"))
        .await;
    assert_eq!(replay.status(), 200);
    // Refused: no surname. Flagged: a face below minimum quality.
    let mut refused: Value = serde_json::from_str(&ees_copy(1)).expect("json");
    refused["traveller"]
        .as_object_mut()
        .expect("object")
        .remove("surname");
    let response = hub
        .post_record("ees", "application/json", refused.to_string())
        .await;
    assert_eq!(response.status(), 422);
    let mut flagged: Value = serde_json::from_str(&ees_copy(2)).expect("json");
    flagged["biometrics"][0]["quality"] = json!(10);
    let response = hub
        .post_record("ees", "application/json", flagged.to_string())
        .await;
    assert_eq!(response.status(), 201);

    let (status, report) = hub.get_json("/v1/data-quality").await;
    assert_eq!(status, 200, "{report}");
    let ees = report["systems"]
        .as_array()
        .expect("systems")
        .iter()
        .find(|s| s["system"] == "ees")
        .expect("ees")
        .clone();
    assert_eq!(ees["records"], 2);
    assert_eq!(ees["accepted"], 2);
    assert_eq!(ees["refused"], 1);
    let rate = ees["validity_rate"].as_f64().expect("rate");
    assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");
    assert_eq!(ees["refused_by_rule"]["required"], 1, "{ees}");
    assert_eq!(
        ees["flagged_by_rule"]["template_below_minimum_quality"], 1,
        "{ees}"
    );
    assert_eq!(ees["completeness"]["travel_document"], 1.0);
    assert_eq!(ees["completeness"]["face"], 1.0);
    let etias = report["systems"]
        .as_array()
        .expect("systems")
        .iter()
        .find(|s| s["system"] == "etias")
        .expect("etias")
        .clone();
    assert_eq!(
        etias["completeness"]["face"], 0.0,
        "ETIAS holds no biometrics"
    );
    assert_eq!(etias["validity_rate"], 1.0);
    let top = report["top_issues"].as_array().expect("issues");
    assert!(top.len() <= 10);
    assert!(
        top.iter()
            .any(|i| i["rule"] == "required" && i["kind"] == "refused")
    );
    hub.stop().await;
}

async fn no_personal_data_reaches_metrics_or_statistics(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for (system, file, content_type) in EXAMPLES {
        let response = hub.post_record(system, content_type, fixture(file)).await;
        assert_eq!(response.status(), 201, "{system}");
        let ids = ["EES-DE-2026-000123", "SIS-SE-2026-000042", "NOT-A-RECORD"];
        for id in ids {
            hub.get_record(system, id).await;
        }
    }
    let query = json!({"purpose": "border_check",
                       "biographic": {"surname": "Müller", "given_names": "Anna Maria", "date_of_birth": "1990-04-17",
                                      "document_number": "U12345678"}});
    assert_eq!(hub.post_json("/v1/search", &query).await.0, 200);

    let metrics = hub
        .client
        .get(hub.url("/metrics"))
        .send()
        .await
        .expect("hub answers");
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.expect("text");
    assert!(
        metrics.contains(r#"interop_hub_ingests_total{system="ees",outcome="created"} 1"#),
        "{metrics}"
    );
    // Every created record went through each step of an ingest once.
    for step in ["parse", "store", "index", "biometric_search", "audit"] {
        let series = format!(
            "interop_hub_ingest_step_duration_seconds_count{{step=\"{step}\"}} {}",
            EXAMPLES.len()
        );
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
    assert!(
        metrics.contains(r#"route="/v1/systems/{system}/records/{source_id}""#),
        "routes are labelled by template: {metrics}"
    );
    let stats = hub
        .client
        .get(hub.url("/v1/stats?format=csv"))
        .send()
        .await
        .expect("hub answers")
        .text()
        .await
        .expect("text");
    let (_, quality) = hub.get_json("/v1/data-quality").await;
    let quality = quality.to_string();

    let mut personal: Vec<String> = vec![
        "Müller".into(),
        "MUELLER".into(),
        "Mueller".into(),
        "Anna".into(),
        "U12345678".into(),
        "1990-04-17".into(),
        "NOT-A-RECORD".into(),
    ];
    // Every source id of the fixtures, read back from the hub.
    for (system, file, content_type) in EXAMPLES {
        let answer: Value = hub
            .post_record(system, content_type, fixture(file))
            .await
            .json()
            .await
            .expect("json");
        personal.push(
            answer["record"]["source_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    for (what, text) in [
        ("metrics", &metrics),
        ("stats", &stats),
        ("data quality", &quality),
    ] {
        for value in &personal {
            assert!(!text.contains(value.as_str()), "{value} in {what}");
        }
    }
    hub.stop().await;
}
