//! Access control through the API: tokens on every endpoint, the role × endpoint × system
//! matrix of the baseline policy, hit flags that say nothing more, revocations that apply
//! to the very next request, grants that lapse on time, and the tamper-evident audit log.

use hub_tests::{Backend, EXAMPLES, TestHub, fixture, on_both_backends};
use interop_hub::access::{Principal, TokenAuthority};
use interop_hub::clock::Clock;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

on_both_backends!(
    every_endpoint_needs_a_valid_token,
    every_role_endpoint_and_system_is_allowed_or_denied_as_the_baseline_says,
    a_hit_flag_answer_is_the_same_for_none_one_or_five_matches,
    a_revocation_denies_the_very_next_request,
    a_granted_access_request_lapses_on_time,
    audit_verify_names_the_first_altered_or_deleted_entry,
    failed_authentications_are_audited_and_a_flood_is_counted_not_written,
    token_lifetimes_and_start_times_are_bounded,
    revoked_tokens_principals_and_agencies_are_refused_from_the_next_request,
    a_denial_overrides_every_permission_of_an_officer_an_agency_or_a_role,
    a_rotated_out_key_verifies_until_removed_and_the_hub_follows_its_key_directory,
    signed_checkpoints_reveal_a_rewritten_audit_chain_and_name_its_interval,
    a_right_to_personal_data_waits_for_a_second_administrator,
);

fn principal(roles: &[&str]) -> Principal {
    Principal::new(
        "someone",
        "TEST",
        "SE",
        roles.iter().map(|r| r.parse().expect("role")).collect(),
    )
    .expect("principal")
}

async fn every_endpoint_needs_a_valid_token(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let everything = principal(&hub_tests::ALL_ROLES);
    let now = OffsetDateTime::now_utc();
    let elsewhere = tempfile::tempdir().expect("a temporary directory");
    let forged = TokenAuthority::load_or_create(elsewhere.path())
        .expect("another hub's keys")
        .mint(&everything, now, time::Duration::hours(1))
        .expect("token");
    let expired = hub
        .tokens
        .mint(
            &everything,
            now - time::Duration::hours(2),
            time::Duration::hours(1),
        )
        .expect("token");
    let attempts: [(&str, Option<String>); 5] = [
        ("no token", None),
        ("malformed", Some("Bearer not-a-token".to_owned())),
        ("other scheme", Some("Basic dXNlcjpwdw==".to_owned())),
        ("forged", Some(format!("Bearer {forged}"))),
        ("expired", Some(format!("Bearer {expired}"))),
    ];
    // Every route the API documents, so that a new route cannot slip through untested.
    let (_, spec) = hub.get_json("/openapi.json").await;
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().expect("paths") {
        if path == "/healthz" || path == "/readyz" {
            continue;
        }
        let concrete = path
            .replace("{system}", "ees")
            .replace("{source_id}", "EES-1")
            .replace("{id}", "1");
        for method in operations.as_object().expect("operations").keys() {
            let method: Method = method.to_uppercase().parse().expect("method");
            for (what, header) in &attempts {
                let mut request = hub
                    .anonymous
                    .request(method.clone(), hub.url(&concrete))
                    .json(&json!({}));
                if let Some(header) = header {
                    request = request.header("authorization", header);
                }
                let response = request.send().await.expect("hub answers");
                let context = format!("{method} {path} with {what}");
                assert_eq!(response.status(), 401, "{context}");
                assert_eq!(
                    response.headers()["www-authenticate"],
                    "Bearer",
                    "{context}"
                );
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json",
                    "{context}"
                );
                let problem: Value = response.json().await.expect("json");
                assert_eq!(problem["code"], "unauthenticated", "{context}");
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 5 * 19,
        "only {checked} attempts: routes missing?"
    );
    // The health checks stay open to orchestrators.
    let (status, _) = hub.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    hub.stop().await;
}

/// What the baseline policy gives a role: the systems it writes, reads (some field
/// group), sees hit flags of, and may request access to; its hub-wide duty (both duties'
/// holders also read the statistics); whether it verifies the SIRENE SE bureau's yellow
/// links.
struct Expected {
    role: &'static str,
    writes: &'static [&'static str],
    reads: &'static [&'static str],
    hits: &'static [&'static str],
    requests: &'static [&'static str],
    duty: Option<&'static str>,
    /// The purpose the role searches for (others are refused).
    purpose: Option<&'static str>,
    verifies_sirene_se: bool,
}

const fn role(role: &'static str) -> Expected {
    Expected {
        role,
        writes: &[],
        reads: &[],
        hits: &[],
        requests: &[],
        duty: None,
        purpose: None,
        verifies_sirene_se: false,
    }
}

const CIVIL_AND_ECRIS: &[&str] = &["ees", "etias", "vis", "ecris-tcn"];

const BASELINE: [Expected; 15] = [
    Expected {
        writes: &["ees"],
        reads: &["ees"],
        ..role("connector:ees")
    },
    Expected {
        writes: &["etias"],
        reads: &["etias"],
        ..role("connector:etias")
    },
    Expected {
        writes: &["vis"],
        reads: &["vis"],
        ..role("connector:vis")
    },
    Expected {
        writes: &["sis"],
        reads: &["sis"],
        ..role("connector:sis")
    },
    Expected {
        writes: &["ecris-tcn"],
        reads: &["ecris-tcn"],
        ..role("connector:ecris-tcn")
    },
    Expected {
        reads: &["ees", "etias", "vis", "sis"],
        purpose: Some("border_check"),
        ..role("border_guard")
    },
    Expected {
        reads: &["ees", "etias", "vis", "sis"],
        purpose: Some("visa_examination"),
        ..role("visa_authority")
    },
    Expected {
        reads: &["ees", "etias", "vis", "sis"],
        hits: &["ecris-tcn"],
        purpose: Some("travel_authorisation"),
        ..role("etias_unit")
    },
    Expected {
        reads: &["ees", "etias", "vis", "sis"],
        verifies_sirene_se: true,
        purpose: Some("alert_handling"),
        ..role("sirene")
    },
    Expected {
        reads: &["ecris-tcn"],
        purpose: Some("criminal_records"),
        ..role("ecris_central_authority")
    },
    Expected {
        reads: &["ees", "etias", "vis", "sis", "ecris-tcn"],
        purpose: Some("identity_check"),
        ..role("police")
    },
    Expected {
        reads: &["sis"],
        hits: CIVIL_AND_ECRIS,
        requests: CIVIL_AND_ECRIS,
        purpose: Some("serious_crime"),
        ..role("le_designated")
    },
    Expected {
        reads: &["sis"],
        hits: CIVIL_AND_ECRIS,
        requests: CIVIL_AND_ECRIS,
        purpose: Some("serious_crime"),
        ..role("europol")
    },
    Expected {
        duty: Some("audit"),
        ..role("supervisor")
    },
    Expected {
        duty: Some("administer"),
        ..role("admin")
    },
];

/// Checks one answer against what was expected, collecting every mismatch.
struct Matrix {
    failures: Vec<String>,
    cases: usize,
}

impl Matrix {
    fn expect(
        &mut self,
        case: String,
        status: u16,
        allowed: u16,
        denied: u16,
        allow: bool,
        body: &Value,
    ) {
        self.cases += 1;
        let want = if allow { allowed } else { denied };
        if status != want {
            self.failures
                .push(format!("{case}: {status}, expected {want} ({body})"));
        }
    }

    fn check(&mut self, case: String, holds: bool, body: &Value) {
        if !holds {
            self.failures.push(format!("{case}: {body}"));
        }
    }
}

async fn every_role_endpoint_and_system_is_allowed_or_denied_as_the_baseline_says(
    backend: Backend,
) {
    let hub = TestHub::spawn(backend).await;
    let mut source_ids = std::collections::HashMap::new();
    for (system, file, content_type) in EXAMPLES {
        let response = hub.post_record(system, content_type, fixture(file)).await;
        assert_eq!(response.status(), 201, "{system}");
        let answer: Value = response.json().await.expect("json");
        source_ids.insert(
            system,
            answer["record"]["source_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let fraud = hub
        .post_record("sis", "application/json", super::links::sis_fraud())
        .await;
    assert_eq!(fraud.status(), 201);
    let (_, yellow) = hub.get_json("/v1/links?colour=yellow").await;
    let yellow = &yellow["links"][0];
    assert_eq!(yellow["authority"], "sirene:SE", "{yellow}");
    let yellow_id = yellow["id"].as_str().expect("a yellow link").to_owned();
    let ees: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    let face = json!({
        "algorithm": ees["biometrics"][0]["algorithm"],
        "data": ees["biometrics"][0]["data"],
    });

    let mut matrix = Matrix {
        failures: Vec::new(),
        cases: 0,
    };
    for expected in &BASELINE {
        let role = expected.role;
        let token = hub.token("matrix", "SE", &[role]);
        let call = |method: Method, path: String, body: Option<Value>| {
            let token = token.clone();
            let hub = &hub;
            async move { hub.call(method, &path, Some(&token), body.as_ref()).await }
        };
        let searches =
            expected.purpose.is_some() && (!expected.reads.is_empty() || !expected.hits.is_empty());
        let purpose = expected.purpose.unwrap_or("border_check");
        // Connectors read back what they write; others read for the purpose they search for.
        let read_purpose = if expected.writes.is_empty() {
            purpose
        } else {
            "record_management"
        };
        let declares_read = !expected.writes.is_empty() || expected.purpose.is_some();
        let verifier = [
            "border_guard",
            "visa_authority",
            "etias_unit",
            "sirene",
            "ecris_central_authority",
        ]
        .contains(&role);
        let capture = json!({"captured_at": OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a timestamp"), "device": "MATRIX-1"});

        for (system, file, content_type) in EXAMPLES {
            let writes = expected.writes.contains(&system);
            let reads = expected.reads.contains(&system);
            // A connector writes and manages only its own member state's records.
            let owner = hub_tests::owner_of(system, fixture(file).as_bytes()).expect("fixture");
            let owners_token = hub.token("matrix", &owner, &[role]);
            let replay = hub
                .anonymous
                .post(hub.url(&format!("/v1/systems/{system}/records")))
                .bearer_auth(&owners_token)
                .header("content-type", content_type)
                .body(fixture(file))
                .send()
                .await
                .expect("hub answers");
            let status = replay.status().as_u16();
            let body: Value = replay.json().await.unwrap_or_default();
            matrix.expect(
                format!("{role} ingest {system}"),
                status,
                200,
                403,
                writes,
                &body,
            );

            let id = &source_ids[system];
            let reader = if read_purpose == "record_management" {
                &owners_token
            } else {
                &token
            };
            let (status, body) = hub
                .call(
                    Method::GET,
                    &format!("/v1/systems/{system}/records/{id}?purpose={read_purpose}"),
                    Some(reader),
                    None,
                )
                .await;
            matrix.expect(
                format!("{role} read {system} for {read_purpose}"),
                status,
                if reads { 200 } else { 404 },
                403,
                declares_read,
                &body,
            );
            if declares_read && !reads {
                matrix.check(
                    format!("{role} read {system}: denied exactly as a missing record"),
                    body["code"] == "record_not_found",
                    &body,
                );
            }

            let (status, body) = hub
                .call(
                    Method::DELETE,
                    &format!("/v1/systems/{system}/records/NO-SUCH-RECORD"),
                    Some(&owners_token),
                    None,
                )
                .await;
            matrix.expect(
                format!("{role} delete {system}"),
                status,
                404,
                403,
                writes,
                &body,
            );

            // An identity check queries by live biometrics: the fixtures' face.
            let query = if purpose == "identity_check" {
                json!({"purpose": purpose, "systems": [system],
                       "biometric": [{"modality": "face", "algorithm": face["algorithm"], "data": face["data"],
                                      "capture": capture}]})
            } else {
                json!({"purpose": purpose, "systems": [system], "case_reference": "MATRIX-1",
                       "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"}})
            };
            let (status, body) = call(Method::POST, "/v1/search".to_owned(), Some(query)).await;
            matrix.expect(
                format!("{role} search {system}"),
                status,
                200,
                403,
                searches,
                &body,
            );
            if status == 200 {
                let results = &body["results"];
                // The probe is the EES record's own face; other systems' captures of the
                // person need not reach the threshold.
                let may_be_empty = purpose == "identity_check" && system != "ees";
                let holds = if reads {
                    results[0]["system"] == system
                        && results[0]["records"]
                            .as_array()
                            .is_some_and(|r| may_be_empty || !r.is_empty())
                } else if expected.hits.contains(&system) {
                    *results == json!([{"system": system, "hit": true}])
                } else {
                    *results == json!([])
                };
                matrix.check(
                    format!("{role} search {system}: answer shape"),
                    holds,
                    &body,
                );
            }

            let filing = json!({
                "kind": "no_request",
                "system": system,
                "case_reference": "CASE-1",
                "justification": "matrix",
            });
            let (status, body) =
                call(Method::POST, "/v1/access-requests".to_owned(), Some(filing)).await;
            let requests = expected.requests.contains(&system);
            matrix.expect(
                format!("{role} file access request {system}"),
                status,
                201,
                403,
                requests,
                &body,
            );
        }

        let serious_crime = json!({"purpose": "serious_crime", "case_reference": "BKA-2026-0417",
                                   "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"}});
        let (status, body) = call(Method::POST, "/v1/search".to_owned(), Some(serious_crime)).await;
        let declares = expected.purpose == Some("serious_crime");
        matrix.expect(
            format!("{role} search declaring serious_crime"),
            status,
            200,
            403,
            declares,
            &body,
        );

        let mut biometric = face.clone();
        biometric["purpose"] = json!(purpose);
        biometric["capture"] = capture.clone();
        let (status, body) = call(
            Method::POST,
            "/v1/biometrics/search".to_owned(),
            Some(biometric),
        )
        .await;
        matrix.expect(
            format!("{role} biometric search for {purpose}"),
            status,
            200,
            403,
            expected.purpose.is_some() && !expected.reads.is_empty(),
            &body,
        );
        if status == 200 {
            let hits = body["hits"].as_array().cloned().unwrap_or_default();
            let only_readable = hits.iter().all(|h| {
                expected
                    .reads
                    .contains(&h["record"]["system"].as_str().unwrap_or(""))
            });
            matrix.check(
                format!("{role} biometric search: readable systems only"),
                only_readable,
                &body,
            );
        }

        // The link list is the caller's verification queue: verifiers only, their own links.
        let (status, body) = call(Method::GET, "/v1/links?limit=500".to_owned(), None).await;
        matrix.expect(
            format!("{role} list links"),
            status,
            200,
            403,
            verifier,
            &body,
        );
        let authority = match role {
            "border_guard" => "border_authority",
            other => other,
        };
        for link in body["links"].as_array().cloned().unwrap_or_default() {
            let theirs = link["authority"] == authority
                || link["authority"] == format!("{authority}:SE").as_str();
            matrix.check(format!("{role} queue holds only its links"), theirs, &link);
        }

        let decision = json!({"colour": "yellow", "justification": "matrix"});
        let (status, body) = call(
            Method::POST,
            format!("/v1/links/{yellow_id}/verification"),
            Some(decision),
        )
        .await;
        let want = if expected.verifies_sirene_se {
            422
        } else if verifier {
            404
        } else {
            403
        };
        matrix.expect(
            format!("{role} verify yellow"),
            status,
            want,
            want,
            true,
            &body,
        );

        let admin = expected.duty == Some("administer");
        let (status, body) = call(Method::GET, "/v1/biometrics/indexes".to_owned(), None).await;
        matrix.expect(
            format!("{role} index status"),
            status,
            200,
            403,
            admin,
            &body,
        );
        let (status, body) = call(Method::GET, "/v1/access-requests".to_owned(), None).await;
        matrix.expect(
            format!("{role} list access requests"),
            status,
            200,
            403,
            admin || !expected.requests.is_empty(),
            &body,
        );
        let decide = json!({"grant": false, "reason": "matrix"});
        let (status, body) = call(
            Method::POST,
            "/v1/access-requests/none/decision".to_owned(),
            Some(decide),
        )
        .await;
        matrix.expect(
            format!("{role} decide access request"),
            status,
            404,
            403,
            admin,
            &body,
        );
        let (status, body) = call(Method::GET, "/v1/admin/policies".to_owned(), None).await;
        matrix.expect(
            format!("{role} list policies"),
            status,
            200,
            403,
            admin,
            &body,
        );
        let bad_rule = json!({
            "rule": {"kind": "permission", "subject": "police", "system": "nowhere", "action": "hit"},
            "reason": "matrix",
        });
        let (status, body) = call(
            Method::POST,
            "/v1/admin/policies".to_owned(),
            Some(bad_rule),
        )
        .await;
        matrix.expect(format!("{role} add policy"), status, 422, 403, admin, &body);
        let (status, body) = call(
            Method::DELETE,
            "/v1/admin/policies/999999?reason=matrix".to_owned(),
            None,
        )
        .await;
        matrix.expect(
            format!("{role} remove policy"),
            status,
            404,
            403,
            admin,
            &body,
        );
        let simulation = json!({"principal": {"subject": "a", "agency": "B", "member_state": "DE", "roles": ["police"]}});
        let (status, body) = call(
            Method::POST,
            "/v1/admin/policies/simulation".to_owned(),
            Some(simulation),
        )
        .await;
        matrix.expect(format!("{role} simulate"), status, 200, 403, admin, &body);
        let (status, body) = call(Method::GET, "/v1/audit".to_owned(), None).await;
        matrix.expect(
            format!("{role} read audit"),
            status,
            200,
            403,
            expected.duty == Some("audit"),
            &body,
        );
        let (status, body) = call(Method::GET, "/v1/stats".to_owned(), None).await;
        matrix.expect(
            format!("{role} statistics"),
            status,
            200,
            403,
            expected.duty.is_some(),
            &body,
        );
        let (status, body) = call(Method::GET, "/v1/data-quality".to_owned(), None).await;
        matrix.expect(
            format!("{role} data quality"),
            status,
            200,
            403,
            expected.duty.is_some(),
            &body,
        );
        let (status, body) = call(Method::GET, "/metrics".to_owned(), None).await;
        matrix.expect(format!("{role} metrics"), status, 200, 403, admin, &body);
    }
    assert!(
        matrix.failures.is_empty(),
        "{} of {} cases differ from the baseline:\n{}",
        matrix.failures.len(),
        matrix.cases,
        matrix.failures.join("\n")
    );
    assert!(matrix.cases >= 15 * 38, "{} cases", matrix.cases);
    hub.stop().await;
}

/// An EES record of the fixture's person with its own file id and document number.
fn ees_variant(i: usize) -> String {
    let mut record: Value = serde_json::from_str(&fixture("ees.json")).expect("fixture");
    record["file_id"] = json!(format!("EES-HIT-{i}"));
    record["travel_document"]["number"] = json!(format!("HIT{i}000"));
    record.to_string()
}

async fn a_hit_flag_answer_is_the_same_for_none_one_or_five_matches(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for i in 0..5 {
        let response = hub
            .post_record("ees", "application/json", ees_variant(i))
            .await;
        assert_eq!(response.status(), 201);
    }
    let queries = [
        (
            0,
            json!({"surname": "Nobody", "date_of_birth": "1990-04-17"}),
        ),
        (1, json!({"document_number": "HIT3000"})),
        (
            5,
            json!({"surname": "Müller", "date_of_birth": "1990-04-17"}),
        ),
    ];
    let designated = hub.token("k.weber", "DE", &["le_designated"]);
    let mut bodies = Vec::new();
    for (matches, biographic) in &queries {
        let query = json!({"purpose": "serious_crime", "case_reference": "BKA-2026-0417", "biographic": biographic, "systems": ["ees"]});
        // Ground truth: a caller with full access sees exactly that many records.
        let (status, full) = hub.post_json("/v1/search", &query).await;
        assert_eq!(status, 200);
        assert_eq!(
            full["results"][0]["records"].as_array().map(Vec::len),
            Some(*matches),
            "{full}"
        );
        let response = hub
            .anonymous
            .post(hub.url("/v1/search"))
            .bearer_auth(&designated)
            .json(&query)
            .send()
            .await
            .expect("hub answers");
        assert_eq!(response.status(), 200);
        let mut headers: Vec<String> = response
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        headers.sort();
        let body = response.text().await.expect("body");
        bodies.push((*matches, headers, body));
    }
    let expected_hit = r#"{"results":[{"system":"ees","hit":true}]}"#;
    let expected_miss = r#"{"results":[{"system":"ees","hit":false}]}"#;
    assert_eq!(bodies[0].2, expected_miss);
    assert_eq!(bodies[1].2, expected_hit);
    assert_eq!(bodies[2].2, expected_hit, "five matches answer as one");
    assert!(
        bodies.iter().all(|(_, headers, _)| *headers == bodies[0].1),
        "the same headers whatever matched: {bodies:?}"
    );
    hub.stop().await;
}

async fn rule_id(hub: &TestHub, admin: &str, subject: &str, system: &str, action: &str) -> i64 {
    let (status, rules) = hub
        .call(Method::GET, "/v1/admin/policies", Some(admin), None)
        .await;
    assert_eq!(status, 200);
    rules
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["subject"] == subject && r["system"] == system && r["action"] == action)
        .and_then(|r| r["id"].as_i64())
        .unwrap_or_else(|| panic!("no rule {subject} {system} {action}"))
}

async fn a_revocation_denies_the_very_next_request(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let created = hub
        .post_record("ees", "application/json", fixture("ees.json"))
        .await;
    assert_eq!(created.status(), 201);
    let admin = hub.token("admin-1", "SE", &["admin"]);
    let designated = hub.token("k.weber", "DE", &["le_designated"]);
    let query = json!({
        "purpose": "serious_crime",
        "case_reference": "BKA-2026-0417",
        "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"},
        "systems": ["ees"],
    });
    let search = |token: String| {
        let hub = &hub;
        let mut query = query.clone();
        // Each role searches for its own purpose: the officer becomes a border guard.
        if !token.is_empty() && token != designated {
            query["purpose"] = json!("border_check");
        }
        async move {
            hub.call(Method::POST, "/v1/search", Some(&token), Some(&query))
                .await
        }
    };
    assert_eq!(
        search(designated.clone()).await.1["results"],
        json!([{"system": "ees", "hit": true}])
    );

    // The simulator shows what removing the rule would do, without doing it.
    let id = rule_id(&hub, &admin, "le_designated", "ees", "hit").await;
    let simulation = json!({
        "principal": {"subject": "k.weber", "agency": "TEST", "member_state": "DE", "roles": ["le_designated"]},
        "systems": ["ees", "sis"],
        "remove": [id],
    });
    let (status, dry_run) = hub
        .call(
            Method::POST,
            "/v1/admin/policies/simulation",
            Some(&admin),
            Some(&simulation),
        )
        .await;
    assert_eq!(status, 200, "{dry_run}");
    assert_eq!(
        dry_run["search"][0],
        json!({"system": "ees", "answer": "nothing"})
    );
    assert_eq!(dry_run["search"][1]["answer"], "full");
    assert_eq!(
        search(designated.clone()).await.1["results"],
        json!([{"system": "ees", "hit": true}]),
        "a dry run changes nothing"
    );

    let (status, problem) = hub
        .call(
            Method::DELETE,
            &format!("/v1/admin/policies/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 422, "a change needs a reason: {problem}");
    let (status, removed) = hub
        .call(
            Method::DELETE,
            &format!("/v1/admin/policies/{id}?reason=hit%20flags%20suspended"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(
        search(designated.clone()).await.1["results"],
        json!([]),
        "the very next search no longer knows about EES"
    );

    // A principal's own role assignment, granted and revoked in real time.
    let officer = hub.token("m.rossi", "IT", &[]);
    assert_eq!(search(officer.clone()).await.0, 403);
    let assignment = json!({
        "rule": {"kind": "assignment", "member": "user:TEST/m.rossi", "role": "border_guard"},
        "reason": "seconded to the border police",
    });
    let (status, added) = hub
        .call(
            Method::POST,
            "/v1/admin/policies",
            Some(&admin),
            Some(&assignment),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let (status, answer) = search(officer.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["results"][0]["records"].as_array().map(Vec::len),
        Some(1)
    );
    let (status, again) = hub
        .call(
            Method::POST,
            "/v1/admin/policies",
            Some(&admin),
            Some(&assignment),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    let added_id = added["id"].as_i64().expect("id");
    let (status, _) = hub
        .call(
            Method::DELETE,
            &format!("/v1/admin/policies/{added_id}?reason=secondment%20ended"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        search(officer).await.0,
        403,
        "revoked on the very next request"
    );

    // Both changes are in the audit log, with who made them.
    let supervisor = hub.token("sup-1", "SE", &["supervisor"]);
    let (_, log) = hub
        .call(Method::GET, "/v1/audit?limit=1000", Some(&supervisor), None)
        .await;
    let changes: Vec<&Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "policy_remove" || e["action"] == "policy_add")
        .filter(|e| {
            e["outcome"]
                .as_str()
                .is_some_and(|o| !o.starts_with("refused"))
        })
        .collect();
    assert_eq!(changes.len(), 3, "{changes:#?}");
    assert!(changes.iter().all(|e| e["subject"] == "admin-1"));
    let why: Vec<&str> = changes.iter().filter_map(|e| e["query"].as_str()).collect();
    assert!(why[0].ends_with("why=hit flags suspended"), "{why:?}");
    assert!(
        why[1].contains("why=seconded to the border police"),
        "{why:?}"
    );
    hub.stop().await;
}

async fn a_granted_access_request_lapses_on_time(backend: Backend) {
    let clock = Clock::manual(OffsetDateTime::now_utc());
    let hub = TestHub::spawn_with(backend, |config| config.clock = clock.clone()).await;
    let created = hub
        .post_record("ees", "application/json", fixture("ees.json"))
        .await;
    assert_eq!(created.status(), 201);
    let admin = hub.token("admin-1", "SE", &["admin"]);
    let designated = hub.token("k.weber", "DE", &["le_designated"]);
    let query = json!({
        "purpose": "serious_crime",
        "case_reference": "BKA-2026-0417",
        "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"},
        "systems": ["ees"],
    });
    let search = || async {
        hub.call(Method::POST, "/v1/search", Some(&designated), Some(&query))
            .await
            .1["results"]
            .clone()
    };
    let read = || async {
        hub.call(
            Method::GET,
            "/v1/systems/ees/records/EES-DE-2026-000123?purpose=serious_crime",
            Some(&designated),
            None,
        )
        .await
        .0
    };
    assert_eq!(search().await, json!([{"system": "ees", "hit": true}]));
    assert_eq!(read().await, 404);

    let filing = json!({
        "system": "ees",
        "case_reference": "BKA-2026-0417",
        "justification": "suspect in an investigation of trafficking in human beings",
    });
    let (status, request) = hub
        .call(
            Method::POST,
            "/v1/access-requests",
            Some(&designated),
            Some(&filing),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    assert_eq!(request["status"], "pending");
    let id = request["id"].as_str().expect("id").to_owned();
    let (_, pending) = hub
        .call(
            Method::GET,
            "/v1/access-requests?status=pending",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");

    let grant = json!({"grant": true, "reason": "proportionate to the case", "hours": 2});
    let (status, decided) = hub
        .call(
            Method::POST,
            &format!("/v1/access-requests/{id}/decision"),
            Some(&admin),
            Some(&grant),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "granted");
    let (status, _) = hub
        .call(
            Method::POST,
            &format!("/v1/access-requests/{id}/decision"),
            Some(&admin),
            Some(&grant),
        )
        .await;
    assert_eq!(status, 409, "decided once");

    let granted = search().await;
    assert_eq!(
        granted[0]["records"].as_array().map(Vec::len),
        Some(1),
        "{granted}"
    );
    assert_eq!(read().await, 200, "full access applies at once");

    clock.advance(time::Duration::hours(2) - time::Duration::seconds(1));
    assert_eq!(read().await, 200, "a second before it lapses");
    clock.advance(time::Duration::seconds(2));
    assert_eq!(read().await, 404, "lapsed by itself");
    assert_eq!(search().await, json!([{"system": "ees", "hit": true}]));
    let (_, rules) = hub
        .call(Method::GET, "/v1/admin/policies", Some(&admin), None)
        .await;
    let grants: Vec<&Value> = rules
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["subject"] == "user:TEST/k.weber")
        .collect();
    assert_eq!(grants.len(), 4, "one rule per field group: {grants:#?}");
    assert!(grants.iter().all(|r| r["active"] == false));
    hub.stop().await;
}

fn audit_verify(hub: &TestHub) -> (bool, String) {
    audit_verify_with(hub, &[])
}

/// `interop-hub audit verify` with `extra` arguments: whether it found the log intact, and
/// what it said.
fn audit_verify_with(hub: &TestHub, extra: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&hub.data_dir)
        .args(["--control-database-url", &hub.control_url])
        .args(extra)
        .output()
        .expect("run audit verify");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

async fn audit_verify_names_the_first_altered_or_deleted_entry(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for (system, file, content_type) in EXAMPLES {
        let response = hub.post_record(system, content_type, fixture(file)).await;
        assert_eq!(response.status(), 201);
        let (status, _) = hub
            .get_json(&format!(
                "/v1/systems/{system}/records/NOT-THERE?purpose=record_management"
            ))
            .await;
        assert_eq!(status, 404);
    }
    let query = json!({"purpose": "border_check", "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"}});
    assert_eq!(hub.post_json("/v1/search", &query).await.0, 200);

    // The supervisor's view holds who, purpose, kinds of query and result: no personal data.
    let supervisor = hub.token("sup-1", "SE", &["supervisor"]);
    let response = hub
        .anonymous
        .get(hub.url("/v1/audit?limit=1000"))
        .bearer_auth(&supervisor)
        .send()
        .await
        .expect("hub answers");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    for personal in [
        "Müller",
        "MUELLER",
        "Anna",
        "U12345678",
        "1990-04-17",
        "EES-DE-2026-000123",
    ] {
        assert!(!text.contains(personal), "{personal} in the audit log");
    }
    let log: Value = serde_json::from_str(&text).expect("json");
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 11, "5 ingests, 5 reads, 1 search");
    assert_eq!(entries[10]["action"], "search");
    assert_eq!(entries[10]["purpose"], "border_check");
    assert!(
        entries[1]["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("record_not_found")),
        "{}",
        entries[1]
    );

    let (intact, said) = audit_verify(&hub);
    assert!(intact, "{said}");
    assert!(said.contains("intact"), "{said}");

    let original = hub
        .query_strings(
            &hub.control_url,
            "SELECT outcome FROM audit_log WHERE seq = 3",
        )
        .await;
    hub.execute(
        &hub.control_url,
        "UPDATE audit_log SET outcome = 'refused:forbidden' WHERE seq = 3",
    )
    .await;
    let (intact, said) = audit_verify(&hub);
    assert!(!intact, "an altered entry fails: {said}");
    assert!(said.contains("entry 3:"), "{said}");

    hub.execute(
        &hub.control_url,
        &format!(
            "UPDATE audit_log SET outcome = '{}' WHERE seq = 3",
            original[0]
        ),
    )
    .await;
    assert!(audit_verify(&hub).0, "restored, the chain holds again");

    hub.execute(&hub.control_url, "DELETE FROM audit_log WHERE seq = 5")
        .await;
    let (intact, said) = audit_verify(&hub);
    assert!(!intact, "a deleted entry fails: {said}");
    assert!(said.contains("entry 5:"), "{said}");
    hub.stop().await;
}

/// A request without a valid credential leaves an audit entry naming its route and why it
/// was refused (and nobody, as nobody is known). A flood leaves a bounded number of entries,
/// yet every refusal is accounted for: the entries, plus the counts of those not recorded
/// singly that the entries carry, add up to the refusals sent.
async fn failed_authentications_are_audited_and_a_flood_is_counted_not_written(backend: Backend) {
    const FLOOD: usize = 300;
    let hub = TestHub::spawn(backend).await;
    let stranger = Principal::new("m.rossi", "TEST", "IT", Vec::new()).expect("a principal");
    let elsewhere = tempfile::tempdir().expect("a temporary directory");
    let forged = TokenAuthority::load_or_create(elsewhere.path())
        .expect("another hub's keys")
        .mint(
            &stranger,
            OffsetDateTime::now_utc(),
            time::Duration::hours(1),
        )
        .expect("a token of another key");
    let search = json!({"purpose": "border_check", "biographic": {"surname": "X", "date_of_birth": "1970-01-01"}});
    assert_eq!(hub.call(Method::GET, "/v1/audit", None, None).await.0, 401);
    assert_eq!(
        hub.call(
            Method::POST,
            "/v1/search",
            Some("not.a.token"),
            Some(&search)
        )
        .await
        .0,
        401
    );
    assert_eq!(
        hub.call(Method::POST, "/v1/search", Some(&forged), Some(&search))
            .await
            .0,
        401
    );
    let flood = futures::future::join_all(
        (0..FLOOD).map(|_| hub.call(Method::POST, "/v1/search", Some("not.a.token"), None)),
    )
    .await;
    assert!(flood.iter().all(|(status, _)| *status == 401));
    // Past the second in which the flood came, one more refusal is recorded with the count
    // of those that were not.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(hub.call(Method::GET, "/v1/links", None, None).await.0, 401);
    let sent = 3 + FLOOD + 1;

    let supervisor = hub.token("sup-1", "SE", &["supervisor"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refusals = loop {
        let (_, log) = hub
            .call(Method::GET, "/v1/audit?limit=1000", Some(&supervisor), None)
            .await;
        let refusals: Vec<Value> = log["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["action"] == "authenticate")
            .cloned()
            .collect();
        let accounted: usize = refusals
            .iter()
            .map(|e| {
                1 + e["query"]
                    .as_str()
                    .and_then(|q| q.split("unrecorded_before=").nth(1))
                    .and_then(|n| n.parse::<usize>().ok())
                    .expect("the count of those not recorded singly")
            })
            .sum();
        if accounted == sent || std::time::Instant::now() > deadline {
            assert_eq!(
                accounted, sent,
                "every refusal accounted for: {refusals:#?}"
            );
            break refusals;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        refusals.len() < 40,
        "a flood of {FLOOD} wrote {} entries",
        refusals.len()
    );
    assert!(
        refusals
            .iter()
            .all(|e| e["subject"] == "" && e["agency"] == "")
    );
    let first: Vec<(&str, &str)> = refusals[..3]
        .iter()
        .map(|e| {
            (
                e["query"].as_str().unwrap_or_default(),
                e["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        first,
        [
            (
                "route=/v1/audit;unrecorded_before=0",
                "refused:unauthenticated:a bearer token is required"
            ),
            (
                "route=/v1/search;unrecorded_before=0",
                "refused:unauthenticated:the bearer token is not a valid hub token"
            ),
            (
                "route=/v1/search;unrecorded_before=0",
                "refused:unauthenticated:the token was not signed by this hub"
            ),
        ]
    );
    hub.stop().await;
}

/// A token is admitted for at most `auth.max_token_lifetime_hours` (12) from its issue, and
/// not while its issue lies over a minute ahead; a longer one only while its holder may do
/// nothing but operate the hub (a metrics scraper), and not once it may do more.
async fn token_lifetimes_and_start_times_are_bounded(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let now = OffsetDateTime::now_utc();
    let token = |subject: &str, role: &str, from: OffsetDateTime, lasting: time::Duration| {
        let principal = Principal::new(
            subject,
            "TEST",
            "SE",
            vec![role.parse().expect("a well-formed role")],
        )
        .expect("a principal");
        hub.tokens.mint(&principal, from, lasting).expect("a token")
    };
    let hours = time::Duration::hours;
    let search = json!({"purpose": "border_check", "biographic": {"surname": "X", "date_of_birth": "1970-01-01"}});
    let searched = |token: String| {
        let search = search.clone();
        let hub = &hub;
        async move {
            let (status, body) = hub
                .call(Method::POST, "/v1/search", Some(&token), Some(&search))
                .await;
            (
                status,
                body["detail"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    assert_eq!(
        searched(token("g-1", "border_guard", now, hours(12)))
            .await
            .0,
        200
    );
    assert_eq!(
        searched(token("g-2", "border_guard", now, hours(13))).await,
        (
            401,
            "the token lives longer than this hub admits".to_owned()
        )
    );
    assert_eq!(
        searched(token(
            "g-3",
            "border_guard",
            now + time::Duration::minutes(5),
            hours(1)
        ))
        .await,
        (401, "the token was issued in the future".to_owned())
    );
    assert_eq!(
        searched(token(
            "g-4",
            "border_guard",
            now + time::Duration::seconds(30),
            hours(1)
        ))
        .await
        .0,
        200,
        "a clock a little ahead"
    );

    // A scraper's role, given the operate duty and nothing else.
    let admin = hub.token("admin-1", "SE", &["admin"]);
    let permit_scrapers = |system: &'static str, action: &'static str| {
        let rule = json!({
            "rule": {"kind": "permission", "subject": "metrics_scraper", "system": system, "action": action},
            "reason": "Prometheus",
        });
        let (hub, admin) = (&hub, &admin);
        async move {
            let (status, added) = hub
                .call(Method::POST, "/v1/admin/policies", Some(admin), Some(&rule))
                .await;
            assert_eq!(status, 201, "{added}");
        }
    };
    let scraped = |token: String| {
        let hub = &hub;
        async move {
            hub.anonymous
                .get(hub.url("/metrics"))
                .bearer_auth(token)
                .send()
                .await
                .expect("the hub answers")
                .status()
                .as_u16()
        }
    };
    permit_scrapers("hub", "operate").await;
    let scraper = token(
        "prometheus",
        "metrics_scraper",
        now,
        time::Duration::days(90),
    );
    assert_eq!(
        scraped(scraper.clone()).await,
        200,
        "a scraper's long-lived credential"
    );
    permit_scrapers("ees", "read:identity").await;
    assert_eq!(scraped(scraper).await, 401, "no longer only a scraper's");
    let long_guard = token("g-5", "border_guard", now, time::Duration::days(90));
    assert_eq!(scraped(long_guard).await, 401);
    hub.stop().await;
}

/// A revoked token, or any token of a revoked principal or agency issued before the
/// revocation, is refused from the very next request, and still after a restart; tokens
/// issued after it, other tokens and other principals are not. Signing out revokes the
/// token it is sent with.
async fn revoked_tokens_principals_and_agencies_are_refused_from_the_next_request(
    backend: Backend,
) {
    let hub = TestHub::spawn(backend).await;
    let token = |subject: &str, agency: &str, from: OffsetDateTime| {
        let principal = Principal::new(
            subject,
            agency,
            "DE",
            vec!["border_guard".parse().expect("a well-formed role")],
        )
        .expect("a principal");
        hub.tokens
            .mint(&principal, from, time::Duration::hours(1))
            .expect("a token")
    };
    let revoked = (401, "the token has been revoked".to_owned());
    let admin = hub.token("admin-1", "SE", &["admin"]);
    let now = OffsetDateTime::now_utc();
    let (leaked, kept) = (token("g-1", "BPOL", now), token("g-1", "BPOL", now));
    let (departed, other) = (token("g-2", "BPOL", now), token("g-3", "BPOL", now));
    let (agency_a, agency_b) = (token("k-1", "BKA", now), token("k-2", "BKA", now));
    for token in [&leaked, &kept, &departed, &other, &agency_a, &agency_b] {
        assert_eq!(searched(&hub, token).await.0, 200);
    }

    let leaked_id = hub.tokens.verify(&leaked).expect("a hub token").token_id;
    let (status, made) = revoke(
        &hub,
        &admin,
        json!({"kind": "token", "token_id": leaked_id}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["kind"], "token");
    assert_eq!(made["created_by"], "user:TEST/admin-1");
    assert_eq!(searched(&hub, &leaked).await, revoked);
    assert_eq!(
        searched(&hub, &kept).await.0,
        200,
        "the same officer's other token"
    );

    let (status, made) = revoke(
        &hub,
        &admin,
        json!({"kind": "principal", "agency": "BPOL", "subject": "g-2"}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(searched(&hub, &departed).await, revoked);
    assert_eq!(searched(&hub, &other).await.0, 200, "a colleague");
    // Issued over a minute (the clock leeway) after the revocation: a new credential,
    // admitted once this clock is within a minute of its issue.
    let reissued = token(
        "g-2",
        "BPOL",
        OffsetDateTime::now_utc() + time::Duration::seconds(61),
    );
    assert_eq!(
        searched(&hub, &reissued).await.0,
        401,
        "issued in the future"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(searched(&hub, &reissued).await.0, 200);

    let (status, made) = revoke(&hub, &admin, json!({"kind": "agency", "agency": "BKA"})).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(searched(&hub, &agency_a).await, revoked);
    assert_eq!(searched(&hub, &agency_b).await, revoked);
    assert_eq!(searched(&hub, &other).await.0, 200, "another agency");

    // Only administrators revoke; a target is checked.
    assert_eq!(
        hub.call(
            Method::POST,
            "/v1/admin/revocations",
            Some(&other),
            Some(&json!({"revoke": {"kind": "agency", "agency": "BPOL"}, "reason": "no"})),
        )
        .await
        .0,
        403
    );
    assert_eq!(searched(&hub, &other).await.0, 200);
    for bad in [
        json!({"revoke": {"kind": "agency", "agency": "B/KA"}, "reason": "typo"}),
        json!({"revoke": {"kind": "principal", "agency": "BKA", "subject": ""}, "reason": "typo"}),
        json!({"revoke": {"kind": "agency", "agency": "BKA"}, "reason": " "}),
    ] {
        assert_eq!(revoke_raw(&hub, &admin, &bad).await.0, 422, "{bad}");
    }
    assert_eq!(
        revoke_raw(
            &hub,
            &admin,
            &json!({"revoke": {"kind": "everyone"}, "reason": "x"})
        )
        .await
        .0,
        400
    );

    // Signing out revokes the token sent, and only it.
    let session = token("g-4", "BPOL", now);
    let sibling = token("g-4", "BPOL", now);
    let (status, _) = hub
        .call(Method::POST, "/v1/session/sign-out", Some(&session), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(searched(&hub, &session).await, revoked);
    assert_eq!(searched(&hub, &sibling).await.0, 200);
    assert_eq!(
        hub.call(Method::POST, "/v1/session/sign-out", Some(&session), None)
            .await
            .0,
        401,
        "a revoked token cannot sign out again"
    );

    let (status, listed) = hub
        .call(Method::GET, "/v1/admin/revocations", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["token", "principal", "agency", "token"]);
    let audited = hub
        .query_strings(
            &hub.control_url,
            "SELECT action || ' ' || outcome FROM audit_log \
             WHERE action IN ('revoke', 'sign_out') ORDER BY seq",
        )
        .await;
    assert_eq!(
        audited
            .iter()
            .filter(|a| a.starts_with("revoke revocation="))
            .count(),
        3,
        "{audited:?}"
    );
    assert!(
        audited
            .iter()
            .any(|a| a.starts_with("sign_out revocation=")),
        "{audited:?}"
    );

    // Kept in the store: still refused after a restart.
    let hub = hub.restart().await;
    assert_eq!(searched(&hub, &leaked).await, revoked);
    assert_eq!(searched(&hub, &agency_b).await, revoked);
    assert_eq!(searched(&hub, &session).await, revoked);
    assert_eq!(searched(&hub, &kept).await.0, 200);
    hub.stop().await;
}

/// A border-check search by the holder of `token`: its status and the problem's detail.
async fn searched(hub: &TestHub, token: &str) -> (u16, String) {
    let search = json!({"purpose": "border_check", "biographic": {"surname": "X", "date_of_birth": "1970-01-01"}});
    let (status, body) = hub
        .call(Method::POST, "/v1/search", Some(token), Some(&search))
        .await;
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Revokes `target` as `admin`, because its holder left the service.
async fn revoke(hub: &TestHub, admin: &str, target: Value) -> (u16, Value) {
    let body = json!({"revoke": target, "reason": "left the service"});
    revoke_raw(hub, admin, &body).await
}

/// Posts `body` to the revocations as `admin`: the status and the answer.
async fn revoke_raw(hub: &TestHub, admin: &str, body: &Value) -> (u16, Value) {
    hub.call(
        Method::POST,
        "/v1/admin/revocations",
        Some(admin),
        Some(body),
    )
    .await
}

/// A denial refuses what it names whatever the permissions allow: one officer entirely,
/// one agency one purpose, one role one field group. Removing it restores the rights; a
/// denial that mixes a system with a hub duty is refused.
async fn a_denial_overrides_every_permission_of_an_officer_an_agency_or_a_role(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let admin = hub.token("admin-1", "SE", &["admin"]);
    let guard = |subject: &str, agency: &str| {
        hub_tests::mint(&hub.tokens, subject, agency, "DE", &["border_guard"])
    };
    let (blocked, colleague, elsewhere) = (
        guard("g-1", "BPOL"),
        guard("g-2", "BPOL"),
        guard("g-3", "TEST"),
    );
    let search = json!({"purpose": "border_check", "biographic": {"surname": "X", "date_of_birth": "1970-01-01"}});
    let searched = |token: &str| {
        let (hub, token, search) = (&hub, token.to_owned(), search.clone());
        async move {
            hub.call(Method::POST, "/v1/search", Some(&token), Some(&search))
                .await
                .0
        }
    };
    let deny = |subject: &str, system: &str, action: &str| {
        let rule = json!({
            "rule": {"kind": "denial", "subject": subject, "system": system, "action": action},
            "reason": "suspended pending inquiry",
        });
        let (hub, admin) = (&hub, &admin);
        async move {
            hub.call(Method::POST, "/v1/admin/policies", Some(admin), Some(&rule))
                .await
        }
    };
    for token in [&blocked, &colleague, &elsewhere] {
        assert_eq!(searched(token).await, 200);
    }

    let (status, rule) = deny("user:BPOL/g-1", "*", "*").await;
    assert_eq!(status, 201, "{rule}");
    assert_eq!(rule["kind"], "denial");
    assert_eq!(searched(&blocked).await, 403);
    assert_eq!(searched(&colleague).await, 200);

    let (status, _) = deny("agency:BPOL", "hub", "purpose:border_check").await;
    assert_eq!(status, 201);
    assert_eq!(searched(&colleague).await, 403);
    assert_eq!(searched(&elsewhere).await, 200);

    let (status, _) = deny("border_guard", "ees", "read:identity").await;
    assert_eq!(status, 201);
    let (status, simulated) = hub
        .call(
            Method::POST,
            "/v1/admin/policies/simulation",
            Some(&admin),
            Some(&json!({"principal": {"subject": "g-3", "agency": "TEST", "member_state": "DE", "roles": ["border_guard"]}})),
        )
        .await;
    assert_eq!(status, 200, "{simulated}");
    let ees_fields = &simulated["access"]["systems"]["ees"]["fields"];
    assert!(
        ees_fields
            .as_array()
            .is_some_and(|f| !f.is_empty() && !f.contains(&json!("identity"))),
        "{simulated}"
    );

    let (status, refused) = deny("user:BPOL/g-2", "ees", "administer").await;
    assert_eq!(status, 422, "{refused}");
    let (status, refused) = deny("agency:B/POL", "*", "*").await;
    assert_eq!(status, 422, "{refused}");

    let lift = |subject: &'static str, system: &'static str, action: &'static str| {
        let (hub, admin) = (&hub, &admin);
        async move {
            let id = rule_id(hub, admin, subject, system, action).await;
            let path = format!("/v1/admin/policies/{id}?reason=cleared");
            let (status, _) = hub.call(Method::DELETE, &path, Some(admin), None).await;
            assert_eq!(status, 200);
        }
    };
    lift("user:BPOL/g-1", "*", "*").await;
    assert_eq!(
        searched(&blocked).await,
        403,
        "the agency's denial still holds"
    );
    lift("agency:BPOL", "hub", "purpose:border_check").await;
    assert_eq!(searched(&blocked).await, 200, "both denials gone: restored");
    assert_eq!(searched(&colleague).await, 200);
    hub.stop().await;
}

/// `interop-hub keys` run beside a serving hub, on its key directory.
fn keys_command(hub: &TestHub, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(&hub.data_dir)
        .output()
        .expect("run keys");
    assert!(
        output.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Tokens are EdDSA JWTs naming their key. After `keys rotate` (run while the hub serves) a
/// token of the previous key is still admitted and new ones are signed with the new key;
/// after `keys remove` of the previous key its tokens are refused at the next request. A
/// token signed with the old key after its retirement is refused too.
async fn a_rotated_out_key_verifies_until_removed_and_the_hub_follows_its_key_directory(
    backend: Backend,
) {
    let hub = TestHub::spawn(backend).await;
    let kid = |token: &str| {
        let header = token.split('.').next().expect("a JWT header");
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .expect("base64url"),
        )
        .expect("a JSON header");
        assert_eq!(header["alg"], "EdDSA");
        header["kid"].as_str().expect("a key id").to_owned()
    };
    let before = hub.token("g-1", "DE", &["border_guard"]);
    let first_key = kid(&before);
    assert_eq!(searched(&hub, &before).await.0, 200);
    let listed = keys_command(&hub, &["list"]);
    assert!(
        listed.contains(&first_key) && listed.contains("signs"),
        "{listed}"
    );

    let second_key = keys_command(&hub, &["rotate"]).trim().to_owned();
    assert_ne!(second_key, first_key);
    let after = hub.token("g-2", "DE", &["border_guard"]);
    assert_eq!(kid(&after), second_key, "the new key signs from now on");
    assert_eq!(
        searched(&hub, &after).await.0,
        200,
        "the hub reads the new key"
    );
    assert_eq!(
        searched(&hub, &before).await.0,
        200,
        "the retired key still verifies"
    );
    let listed = keys_command(&hub, &["list"]);
    assert!(listed.contains("verifies until"), "{listed}");

    keys_command(&hub, &["remove", &first_key]);
    assert_eq!(
        searched(&hub, &before).await,
        (401, "the token was not signed by this hub".to_owned())
    );
    assert_eq!(searched(&hub, &after).await.0, 200);
    hub.stop().await;
}

/// The sequence numbers of the hub's signed checkpoints, once the newest reaches `at_least`
/// (waits at most 15 s).
async fn checkpoints_reaching(hub: &TestHub, at_least: i64) -> Vec<i64> {
    let log = hub.data_dir.join("audit-checkpoints.jsonl");
    for _ in 0..150 {
        let seqs: Vec<i64> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|checkpoint| checkpoint["seq"].as_i64())
            .collect();
        if seqs.last().is_some_and(|last| *last >= at_least) {
            return seqs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no checkpoint reached entry {at_least}");
}

/// Where the audit chain ends now.
async fn audit_end(hub: &TestHub) -> i64 {
    hub.query_strings(
        &hub.control_url,
        "SELECT CAST(MAX(seq) AS TEXT) FROM audit_log",
    )
    .await[0]
        .parse()
        .expect("a sequence number")
}

/// Changes entry `from`'s outcome and recomputes every hash from it to the end, head
/// included, as whoever can write the control database can: the chain holds again.
async fn rewrite_audit_chain_from(url: &str, from: i64) {
    use sqlx::{Connection as _, Row as _};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("the control database");
    let mut prev: String = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
        .bind(from - 1)
        .fetch_one(&mut conn)
        .await
        .expect("the entry before");
    let rows = sqlx::query(
        "SELECT seq, at, subject, agency, member_state, purpose, action, query, outcome \
         FROM audit_log WHERE seq >= $1 ORDER BY seq",
    )
    .bind(from)
    .fetch_all(&mut conn)
    .await
    .expect("the entries from it on");
    let mut end = (0, String::new());
    for row in rows {
        let seq: i64 = row.get("seq");
        let at: i64 = row.get("at");
        let mut event = interop_hub::store::AuditEvent {
            subject: row.get("subject"),
            agency: row.get("agency"),
            member_state: row.get("member_state"),
            purpose: row.get("purpose"),
            action: row.get("action"),
            query: row.get("query"),
            outcome: row.get("outcome"),
        };
        if seq == from {
            event.outcome = "refused:forbidden".to_owned();
        }
        let hash = interop_hub::store::chain_hash(&prev, seq, at, &event);
        sqlx::query("UPDATE audit_log SET outcome = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&event.outcome)
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&mut conn)
            .await
            .expect("rewritten");
        prev = hash.clone();
        end = (seq, hash);
    }
    sqlx::query("UPDATE control_meta SET value = $1 WHERE key = 'audit_head'")
        .bind(format!("{} {}", end.0, end.1))
        .execute(&mut conn)
        .await
        .expect("the head rewritten");
}

/// The hub signs checkpoints of the audit chain (here every 5 entries, or every second) into
/// a log outside the databases. A chain rewritten from an entry inside one checkpoint
/// interval to its end, hashes and head recomputed, still verifies as a chain — but not
/// against the checkpoints, and `audit verify --checkpoints` names that interval while
/// every earlier checkpoint matches. A checkpoint log altered by hand fails its signature.
async fn signed_checkpoints_reveal_a_rewritten_audit_chain_and_name_its_interval(backend: Backend) {
    let hub = TestHub::spawn_with(backend, |config| {
        config.settings.audit.checkpoint_every_entries = 5;
        config.settings.audit.checkpoint_interval_seconds = 1;
    })
    .await;
    let guard = hub.token("g-1", "DE", &["border_guard"]);
    let mut checkpoints = Vec::new();
    for _ in 0..3 {
        for _ in 0..6 {
            assert_eq!(searched(&hub, &guard).await.0, 200);
        }
        checkpoints = checkpoints_reaching(&hub, audit_end(&hub).await).await;
    }
    assert!(checkpoints.len() >= 3, "{checkpoints:?}");
    let (before, interval_end) = (checkpoints[0], checkpoints[1]);
    let rewritten_from = before + (interval_end - before + 1) / 2;
    assert!(before < rewritten_from && rewritten_from <= interval_end);

    let log = hub.data_dir.join("audit-checkpoints.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let (intact, said) = audit_verify_with(&hub, &["--checkpoints", &log_arg]);
    assert!(intact, "{said}");
    assert!(
        said.contains(&format!("{} signed checkpoint(s) match", checkpoints.len())),
        "{said}"
    );

    rewrite_audit_chain_from(&hub.control_url, rewritten_from).await;
    let (intact, said) = audit_verify(&hub);
    assert!(intact, "the chain alone cannot tell: {said}");
    let (intact, said) = audit_verify_with(&hub, &["--checkpoints", &log_arg]);
    assert!(!intact, "{said}");
    assert!(
        said.contains(&format!("entries {}-{interval_end}", before + 1))
            && said.contains("the 1 checkpoint(s) before it match"),
        "{said}"
    );

    let text = std::fs::read_to_string(&log).expect("the checkpoint log");
    let first_hash = text
        .lines()
        .next()
        .and_then(|line| serde_json::from_str::<Value>(line).ok())
        .and_then(|checkpoint| checkpoint["hash"].as_str().map(str::to_owned))
        .expect("a first checkpoint");
    let forged_hash: String = first_hash
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    std::fs::write(&log, text.replacen(&first_hash, &forged_hash, 1)).expect("forged");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&hub.data_dir)
        .args(["--control-database-url", &hub.control_url])
        .args(["--checkpoints", &log_arg])
        .output()
        .expect("run audit verify");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("checkpoint line 1"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    hub.stop().await;
}

/// Under four eyes (the default), a rule that widens access to personal data is proposed,
/// not made: nothing changes until a second administrator approves it; its proposer cannot;
/// nobody changes rules about themselves; a rule that gives no personal data applies at
/// once; removing a denial of reading waits too.
async fn a_right_to_personal_data_waits_for_a_second_administrator(backend: Backend) {
    let hub = TestHub::spawn_with(backend, |config| {
        config.settings.administration.four_eyes = true;
    })
    .await;
    let first = hub.token("admin-1", "SE", &["admin"]);
    let second = hub.token("admin-2", "SE", &["admin"]);
    let officer = hub.token("m.rossi", "IT", &[]);
    let add = |admin: &str, rule: Value| {
        let body = json!({"rule": rule, "reason": "seconded to the border police"});
        let (hub, admin) = (&hub, admin.to_owned());
        async move {
            hub.call(
                Method::POST,
                "/v1/admin/policies",
                Some(&admin),
                Some(&body),
            )
            .await
        }
    };
    let decide = |admin: &str, id: i64, approve: bool| {
        let body = json!({"approve": approve, "reason": "checked the secondment order"});
        let (hub, admin) = (&hub, admin.to_owned());
        async move {
            hub.call(
                Method::POST,
                &format!("/v1/admin/changes/{id}/decision"),
                Some(&admin),
                Some(&body),
            )
            .await
        }
    };
    let assignment =
        json!({"kind": "assignment", "member": "user:TEST/m.rossi", "role": "border_guard"});

    let (status, pending) = add(&first, assignment.clone()).await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["proposed_by"], "user:TEST/admin-1");
    let id = pending["id"].as_i64().expect("the change's id");
    assert_eq!(searched(&hub, &officer).await.0, 403, "nothing changed yet");
    let (status, listed) = hub
        .call(
            Method::GET,
            "/v1/admin/changes?status=pending",
            Some(&second),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let (status, refused) = decide(&first, id, true).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("four_eyes")),
        "{refused}"
    );
    assert_eq!(searched(&hub, &officer).await.0, 403);
    let (status, approved) = decide(&second, id, true).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "user:TEST/admin-2");
    assert_eq!(
        searched(&hub, &officer).await.0,
        200,
        "in force once approved"
    );
    assert_eq!(decide(&second, id, false).await.0, 409, "decided already");
    assert_eq!(decide(&second, 999_999, true).await.0, 404);

    // Rules about oneself: neither proposed nor approved.
    let (status, body) = add(
        &first,
        json!({"kind": "permission", "subject": "user:TEST/admin-1", "system": "ees", "action": "read:identity"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("four_eyes")),
        "{body}"
    );
    let (status, pending) = add(
        &first,
        json!({"kind": "permission", "subject": "user:TEST/admin-2", "system": "ees", "action": "read:identity"}),
    )
    .await;
    assert_eq!(status, 202, "{pending}");
    let about_second = pending["id"].as_i64().expect("an id");
    let (status, body) = decide(&second, about_second, true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("four_eyes")),
        "{body}"
    );
    assert_eq!(
        decide(&first, about_second, false).await.0,
        200,
        "withdrawn by its proposer"
    );

    // No personal data: at once.
    let (status, made) = add(
        &first,
        json!({"kind": "permission", "subject": "police", "system": "ees", "action": "hit"}),
    )
    .await;
    assert_eq!(status, 201, "{made}");

    // A denial narrows at once; removing it waits.
    let (status, denial) = add(
        &first,
        json!({"kind": "denial", "subject": "user:TEST/m.rossi", "system": "*", "action": "*"}),
    )
    .await;
    assert_eq!(status, 201, "{denial}");
    assert_eq!(searched(&hub, &officer).await.0, 403);
    let denial_id = denial["id"].as_i64().expect("the denial's id");
    let (status, pending) = hub
        .call(
            Method::DELETE,
            &format!("/v1/admin/policies/{denial_id}?reason=inquiry%20closed"),
            Some(&first),
            None,
        )
        .await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["change"], "remove");
    assert_eq!(searched(&hub, &officer).await.0, 403, "still denied");
    let id = pending["id"].as_i64().expect("an id");
    assert_eq!(decide(&second, id, true).await.0, 200);
    assert_eq!(searched(&hub, &officer).await.0, 200, "the denial is gone");
    hub.stop().await;
}
