//! The hit flag, sealed: every route that hands out personal data is purpose-bound, an
//! identity check answers only live biometrics and never a child, a reader of one side of
//! a red link learns nothing of the other, and budgets and alarms bound what one
//! principal can ask.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hub_tests::{Backend, TestHub, fixture, on_both_backends};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

on_both_backends!(
    purposes_bind_every_route_that_hands_out_personal_data,
    an_identity_check_never_answers_anyone_who_may_be_under_12,
    a_random_vector_finds_nothing_by_name_without_a_declared_fallback,
    a_reader_of_one_side_of_a_red_link_learns_nothing_of_the_other,
    a_principal_past_its_budget_is_told_when_to_come_back,
    hit_flag_searches_past_the_hourly_threshold_raise_one_alarm,
    slow_clients_are_cut_and_connections_past_the_cap_refused,
    a_connector_changes_only_its_own_states_records,
    a_twenty_thousand_character_name_is_refused_before_any_comparison,
);

/// Every audit entry so far, as a supervisor reads them.
async fn audit_entries(hub: &TestHub) -> Vec<Value> {
    let supervisor = hub.token("sup", "SE", &["supervisor"]);
    let (status, log) = hub
        .call(
            Method::GET,
            "/v1/audit?after=0&limit=1000",
            Some(&supervisor),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    log["entries"].as_array().cloned().unwrap_or_default()
}

/// The Prometheus text, as the default caller (an operator too) scrapes it.
async fn metrics_text(hub: &TestHub) -> String {
    hub.client
        .get(hub.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

fn live_capture() -> Value {
    json!({
        "captured_at": OffsetDateTime::now_utc().format(&Rfc3339).expect("timestamp"),
        "device": "SE-POLICE-MOBILE-7",
    })
}

/// The EES fixture's face as a probe.
fn ees_face() -> Value {
    let ees: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    json!({
        "modality": "face",
        "algorithm": ees["biometrics"][0]["algorithm"],
        "data": ees["biometrics"][0]["data"],
    })
}

async fn purposes_bind_every_route_that_hands_out_personal_data(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    hub.post_examples().await;
    let police = hub.token("p.olsson", "SE", &["police"]);
    let call = |method: Method, path: &str, body: Option<Value>| {
        let (hub, police, path) = (&hub, police.clone(), path.to_owned());
        async move { hub.call(method, &path, Some(&police), body.as_ref()).await }
    };
    let mut search = ees_face();
    search.as_object_mut().expect("object").remove("modality");
    search["purpose"] = json!("border_check");
    let (status, body) = call(Method::POST, "/v1/biometrics/search", Some(search.clone())).await;
    assert_eq!(
        status, 403,
        "police searches for identity checks only: {body}"
    );
    search["purpose"] = json!("identity_check");
    let (status, body) = call(Method::POST, "/v1/biometrics/search", Some(search.clone())).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "/capture", "{body}");
    search["capture"] = json!({"captured_at": "2026-01-01T00:00:00Z", "device": "SE-1"});
    let (status, body) = call(Method::POST, "/v1/biometrics/search", Some(search.clone())).await;
    assert_eq!(status, 422, "a capture of long ago is not live: {body}");
    assert_eq!(body["errors"][0]["rule"], "stale_capture", "{body}");
    search["capture"] = live_capture();
    let (status, body) = call(Method::POST, "/v1/biometrics/search", Some(search.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"][0]["record"]["system"], "ees", "{body}");

    let record = "/v1/systems/ees/records/EES-DE-2026-000123";
    let (status, body) = call(Method::GET, record, None).await;
    assert_eq!(status, 400, "a read declares its purpose: {body}");
    let (status, _) = call(Method::GET, &format!("{record}?purpose=border_check"), None).await;
    assert_eq!(status, 403);
    let (status, body) = call(
        Method::GET,
        &format!("{record}?purpose=identity_check"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["fields"],
        json!(["identity", "documents"]),
        "an identity check sees identity and document data only"
    );
    let (status, _) = call(Method::GET, "/v1/links", None).await;
    assert_eq!(status, 403, "the link list is a verifier's queue");

    // A state whose law does not provide for identity checks runs none.
    let elsewhere = hub.token("p.huber", "AT", &["police"]);
    let (status, _) = hub
        .call(
            Method::POST,
            "/v1/biometrics/search",
            Some(&elsewhere),
            Some(&search),
        )
        .await;
    assert_eq!(status, 403);
    // A connector reads back its own records, but searches nothing.
    let connector = hub.token("ees-feed", "SE", &["connector:ees"]);
    let mut managing = search.clone();
    managing["purpose"] = json!("record_management");
    let (status, _) = hub
        .call(
            Method::POST,
            "/v1/biometrics/search",
            Some(&connector),
            Some(&managing),
        )
        .await;
    assert_eq!(status, 403);
    hub.stop().await;
}

/// The EES fixture's person as a child: same face, other file, born `born`.
fn ees_child(born: &str) -> String {
    let mut record: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    record["file_id"] = json!("EES-DE-2026-CHILD");
    record["traveller"]["surname"] = json!("Kind");
    record["traveller"]["given_names"] = json!("Lena");
    record["traveller"]["date_of_birth"] = json!(born);
    record["travel_document"]["number"] = json!("C01234567");
    record.to_string()
}

async fn an_identity_check_never_answers_anyone_who_may_be_under_12(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    hub.post_examples().await;
    // Born this year, with no month: any completion of the date is a child.
    let year = OffsetDateTime::now_utc().year() - 11;
    let created = hub
        .post_record("ees", "application/json", ees_child(&year.to_string()))
        .await;
    assert_eq!(created.status(), 201);
    let police = hub.token("p.olsson", "SE", &["police"]);
    let mut probe = ees_face();
    probe["capture"] = live_capture();

    let query =
        json!({"purpose": "identity_check", "biometric": [probe.clone()], "systems": ["ees"]});
    let (status, answer) = hub
        .call(Method::POST, "/v1/search", Some(&police), Some(&query))
        .await;
    assert_eq!(status, 200, "{answer}");
    let ids: Vec<&str> = answer["results"][0]["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["record"]["record"]["source_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["EES-DE-2026-000123"], "{answer}");

    let mut search = probe.clone();
    search["purpose"] = json!("identity_check");
    search.as_object_mut().expect("object").remove("modality");
    let (status, answer) = hub
        .call(
            Method::POST,
            "/v1/biometrics/search",
            Some(&police),
            Some(&search),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        !answer.to_string().contains("CHILD"),
        "the child is not among the hits: {answer}"
    );

    let (status, child) = hub
        .call(
            Method::GET,
            "/v1/systems/ees/records/EES-DE-2026-CHILD?purpose=identity_check",
            Some(&police),
            None,
        )
        .await;
    let (_, missing) = hub
        .call(
            Method::GET,
            "/v1/systems/ees/records/EES-DE-2026-NOBODY?purpose=identity_check",
            Some(&police),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        child, missing,
        "a child is answered exactly as a missing record"
    );

    let fallback = json!({"purpose": "identity_check", "fallback": "biometrics_unusable",
                          "biographic": {"surname": "Kind", "date_of_birth": year.to_string()}});
    let (status, answer) = hub
        .call(Method::POST, "/v1/search", Some(&police), Some(&fallback))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.to_string().contains("CHILD"), "{answer}");
    hub.stop().await;
}

async fn a_random_vector_finds_nothing_by_name_without_a_declared_fallback(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    hub.post_examples().await;
    let police = hub.token("p.olsson", "SE", &["police"]);
    let noise: Vec<u8> = (0..512_u32)
        .flat_map(|i| (((i * 7919) % 251) as f32 / 251.0 - 0.5).to_le_bytes())
        .collect();
    let random = json!({"modality": "face", "algorithm": "acme-face-v3",
                        "data": STANDARD.encode(noise), "capture": live_capture()});
    let by_name = json!({"surname": "Müller", "date_of_birth": "1990-04-17"});

    let both =
        json!({"purpose": "identity_check", "biometric": [random.clone()], "biographic": by_name});
    let (status, answer) = hub
        .call(Method::POST, "/v1/search", Some(&police), Some(&both))
        .await;
    assert_eq!(
        status, 422,
        "identity data only with a declared fallback: {answer}"
    );
    assert_eq!(answer["errors"][0]["field"], "/biographic", "{answer}");

    let live_only = json!({"purpose": "identity_check", "biometric": [random]});
    let (status, answer) = hub
        .call(Method::POST, "/v1/search", Some(&police), Some(&live_only))
        .await;
    assert_eq!(status, 200, "{answer}");
    for system in answer["results"].as_array().expect("results") {
        assert_eq!(
            system["records"],
            json!([]),
            "a random face matches nobody: {answer}"
        );
    }

    let fallback = json!({"purpose": "identity_check", "fallback": "biometric_query_failed",
                          "biographic": by_name});
    let (status, answer) = hub
        .call(Method::POST, "/v1/search", Some(&police), Some(&fallback))
        .await;
    assert_eq!(status, 200, "{answer}");
    let found = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|s| s["records"].as_array().is_some_and(|r| !r.is_empty()))
        .count();
    assert!(
        found >= 4,
        "the declared fallback searches by name: {answer}"
    );
    let entries = audit_entries(&hub).await;
    let fallbacks = entries
        .iter()
        .filter(|e| {
            e["purpose"] == "identity_check"
                && e["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("fallback=biometric_query_failed"))
        })
        .count();
    assert_eq!(fallbacks, 1, "the fallback is audited: {entries:?}");
    hub.stop().await;
}

async fn a_reader_of_one_side_of_a_red_link_learns_nothing_of_the_other(backend: Backend) {
    const JUSTIFICATION: &str = "same face and fingers under a second identity";
    const FRAUD_ID: &str = "SIS-IT-2026-000999";
    let hub = TestHub::spawn(backend).await;
    let fraud = super::links::ees_then_fraud(&hub).await;
    let link_id = fraud["links"][0]["id"].as_str().expect("a link").to_owned();
    let (status, decided) = hub
        .post_json(
            &format!("/v1/links/{link_id}/verification"),
            &json!({"colour": "red", "justification": JUSTIFICATION}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");

    // A reader of EES only: given the right through the API, as an administrator would.
    let admin = hub.token("admin-1", "SE", &["admin"]);
    for (system, action) in [("ees", "read:identity"), ("hub", "purpose:border_check")] {
        let rule = json!({"rule": {"kind": "permission", "subject": "user:TEST/one-side",
                                   "system": system, "action": action},
                          "reason": "one-side reader"});
        let (status, body) = hub
            .call(
                Method::POST,
                "/v1/admin/policies",
                Some(&admin),
                Some(&rule),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let reader = hub.token("one-side", "SE", &[]);
    let query = json!({"purpose": "border_check",
                       "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"}});
    let (status, answer) = hub
        .call(Method::POST, "/v1/search", Some(&reader), Some(&query))
        .await;
    assert_eq!(status, 200, "{answer}");
    let links = &answer["results"][0]["records"][0]["links"];
    assert_eq!(links.as_array().map(Vec::len), Some(1), "{answer}");
    let link = &links[0];
    assert_eq!(link["colour"], "red");
    assert_eq!(link["authority"], "sirene:SE");
    let other = link["records"]
        .as_array()
        .expect("ends")
        .iter()
        .find(|end| end["system"] == "sis")
        .expect("the SIS end");
    assert_eq!(*other, json!({"system": "sis"}), "{link}");
    assert!(link.get("evidence").is_none(), "{link}");

    // The EES connector's ingest answer (the file is Spain's): the same sight.
    let connector = hub.token("ees-feed", "ES", &["connector:ees"]);
    let replay = hub
        .anonymous
        .post(hub.url("/v1/systems/ees/records"))
        .bearer_auth(&connector)
        .header("content-type", "application/json")
        .body(fixture("ees.json"))
        .send()
        .await
        .expect("answer");
    assert_eq!(replay.status(), 200);
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(
        replay["links"][0]["other"],
        json!({"system": "sis"}),
        "{replay}"
    );

    let (status, _) = hub
        .call(
            Method::GET,
            &format!("/v1/links/{link_id}"),
            Some(&connector),
            None,
        )
        .await;
    assert_eq!(status, 403, "the confirmation file is the verifier's");
    for (what, text) in [
        ("search", answer.to_string()),
        ("ingest", replay.to_string()),
    ] {
        assert!(!text.contains(FRAUD_ID), "{what} shows the other side's id");
        assert!(
            !text.contains(JUSTIFICATION),
            "{what} shows the justification"
        );
        assert!(!text.contains("test-operator"), "{what} shows the verifier");
    }
    hub.stop().await;
}

async fn a_principal_past_its_budget_is_told_when_to_come_back(backend: Backend) {
    // The default budgets: the scenario harness raises them, this scenario restores them.
    let hub = TestHub::spawn_with(backend, |config| {
        config.settings.limits = interop_hub::config::LimitSettings::default();
    })
    .await;
    hub.post_examples().await;
    let officer = hub.token("b.guard", "SE", &["border_guard"]);
    let query = json!({"purpose": "border_check",
                       "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"}});
    let search = || async {
        hub.anonymous
            .post(hub.url("/v1/search"))
            .bearer_auth(&officer)
            .json(&query)
            .send()
            .await
            .expect("answer")
    };
    // Five a second for a minute: an officer at work is never held back. A tick missed on
    // a busy machine is not made up in a burst: the officer would not either.
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(200));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..300 {
        ticks.tick().await;
        assert_eq!(search().await.status(), 200);
    }
    // Fifty a second: the budget runs out within the second.
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut refused = None;
    for _ in 0..100 {
        ticks.tick().await;
        let answer = search().await;
        if answer.status() == 429 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a 429 within two seconds at fifty searches a second");
    let wait: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=5).contains(&wait), "{wait}");
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(problem["code"], "rate_limited");
    let entries = audit_entries(&hub).await;
    assert!(
        entries
            .iter()
            .any(|e| e["outcome"] == "refused:rate_limited"),
        "the refusal is audited"
    );
    hub.stop().await;
}

async fn hit_flag_searches_past_the_hourly_threshold_raise_one_alarm(backend: Backend) {
    let hub = TestHub::spawn_with(backend, |config| {
        config.settings.limits.hit_flag_alarm_per_hour = 3;
    })
    .await;
    hub.post_examples().await;
    let designated = hub.token("k.weber", "DE", &["le_designated"]);
    for i in 0..6 {
        let query = json!({"purpose": "serious_crime", "case_reference": "BKA-2026-0417",
                           "biographic": {"surname": format!("Person{i}"), "date_of_birth": "1980-01-01"}});
        let (status, answer) = hub
            .call(Method::POST, "/v1/search", Some(&designated), Some(&query))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let entries = audit_entries(&hub).await;
    let alarms: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "misuse_alarm")
        .collect();
    assert_eq!(
        alarms.len(),
        1,
        "one alarm per principal and hour: {alarms:?}"
    );
    assert_eq!(alarms[0]["subject"], "k.weber");
    let text = metrics_text(&hub).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("interop_hub_misuse_alarms_total 1")),
        "{text}"
    );
    hub.stop().await;
}

async fn slow_clients_are_cut_and_connections_past_the_cap_refused(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let second = std::time::Duration::from_secs(1);
    let hub = TestHub::spawn_with(backend, |config| {
        config.settings.server.header_read_timeout_seconds = 1;
        config.settings.server.body_read_timeout_seconds = 1;
    })
    .await;
    let address = hub.base.trim_start_matches("http://").to_owned();

    // Headers a byte at a time: the connection is closed at the header deadline.
    let mut trickling = TcpStream::connect(&address).await.expect("connect");
    trickling
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut chunk = [0_u8; 1024];
    let mut cut = false;
    while !cut && started.elapsed() < 5 * second {
        cut = trickling.write_all(b"X").await.is_err()
            || tokio::time::timeout(
                std::time::Duration::from_millis(100),
                trickling.read(&mut chunk),
            )
            .await
            .is_ok();
    }
    assert!(cut, "a client trickling its headers was never cut");
    assert!(
        started.elapsed() < 3 * second,
        "cut only after {:?}",
        started.elapsed()
    );

    // A body a byte at a time: answered 408 at the body deadline.
    let token = hub.token("b.guard", "SE", &["border_guard"]);
    let mut slow_body = TcpStream::connect(&address).await.expect("connect");
    slow_body
        .write_all(
            format!(
                "POST /v1/search HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < 5 * second {
        let _ = slow_body.write_all(b" ").await;
        if let Ok(Ok(read)) = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            slow_body.read(&mut chunk),
        )
        .await
        {
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..read]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled body is cut with 408: {answer:?}"
    );
    assert!(started.elapsed() < 3 * second, "{:?}", started.elapsed());
    hub.stop().await;

    // Past the cap, a connection is closed as soon as it is accepted.
    let hub = TestHub::spawn_with(backend, |config| {
        config.settings.server.max_connections = 3;
    })
    .await;
    let address = hub.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&address).await.expect("connect"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut over = TcpStream::connect(&address)
        .await
        .expect("the kernel accepts");
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await;
    let mut refused = Vec::new();
    let read = tokio::time::timeout(2 * second, over.read_to_end(&mut refused)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the fourth connection was served: {:?}",
        String::from_utf8_lossy(&refused)
    );
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _) = hub.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200, "freed slots serve again");
    hub.stop().await;
}

async fn a_connector_changes_only_its_own_states_records(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let push = |token: String, system: &'static str, body: String| {
        let hub = &hub;
        async move {
            let response = hub
                .anonymous
                .post(hub.url(&format!("/v1/systems/{system}/records")))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("answer");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or_default())
        }
    };
    let german = hub.token("ees-feed", "DE", &["connector:ees"]);
    let spanish = hub.token("ees-feed", "ES", &["connector:ees"]);
    // The EES fixture's file was created by Spain.
    let (status, body) = push(german.clone(), "ees", fixture("ees.json")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_owner")),
        "{body}"
    );
    assert_eq!(
        hub.count_all_rows().await,
        0,
        "a refused record stores nothing"
    );
    let (status, _) = push(spanish.clone(), "ees", fixture("ees.json")).await;
    assert_eq!(status, 201);

    // Claiming the file for Germany in a newer version changes nothing.
    let mut claimed: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    claimed["version"] = json!(2);
    claimed["member_state"] = json!("DE");
    let (status, body) = push(german.clone(), "ees", claimed.to_string()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_owner")),
        "{body}"
    );
    let record = "/v1/systems/ees/records/EES-DE-2026-000123";
    for (method, path) in [
        (Method::DELETE, record.to_owned()),
        (Method::GET, format!("{record}?purpose=record_management")),
    ] {
        let (status, body) = hub.call(method.clone(), &path, Some(&german), None).await;
        assert_eq!(status, 404, "{method} by another state's connector: {body}");
    }
    let (status, stored) = hub
        .call(
            Method::GET,
            &format!("{record}?purpose=record_management"),
            Some(&spanish),
            None,
        )
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["record"]["version"], 1);
    assert_eq!(stored["record"]["member_state"], "ES");
    let (status, _) = hub.call(Method::DELETE, record, Some(&spanish), None).await;
    assert_eq!(status, 204);

    // ETIAS records belong to the central ETIAS connector.
    for (state, expected) in [("SE", 403), ("EU", 201)] {
        let token = hub.token("etias-feed", state, &["connector:etias"]);
        let (status, body) = push(token, "etias", fixture("etias.json")).await;
        assert_eq!(status, expected, "ETIAS pushed by {state}: {body}");
    }
    hub.stop().await;
}

async fn a_twenty_thousand_character_name_is_refused_before_any_comparison(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let long = "Ä".repeat(20_000);
    let mut record: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    record["traveller"]["surname"] = json!(long);
    let response = hub
        .post_record("ees", "application/json", record.to_string())
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(
        problem["errors"][0]["field"], "/traveller/surname",
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["rule"], "too_long", "{problem}");
    assert!(
        !problem.to_string().contains("ÄÄ"),
        "the value is never echoed"
    );

    let query = json!({"purpose": "border_check",
                       "biographic": {"surname": long, "date_of_birth": "1990-04-17"}});
    let (status, problem) = hub.post_json("/v1/search", &query).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "/biographic/surname");
    assert_eq!(problem["errors"][0]["rule"], "too_long");

    let metrics = metrics_text(&hub).await;
    for step in [
        "blocking_candidates",
        "biometric_search",
        "compare_and_link",
    ] {
        let counted = metrics.lines().any(|line| {
            line.starts_with(&format!(
                "interop_hub_ingest_step_duration_seconds_count{{step=\"{step}\"}}"
            )) && !line.ends_with(" 0")
        });
        assert!(
            !counted,
            "no {step} step ran for a refused record:\n{metrics}"
        );
    }
    assert_eq!(hub.count_all_rows().await, 0);
    hub.stop().await;
}
