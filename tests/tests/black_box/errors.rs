//! Transport-level behaviour: every error is problem+json, probes, the OpenAPI document and
//! the docs UI.

use hub_tests::{Backend, TestHub, fixture, on_both_backends};
use serde_json::Value;

on_both_backends!(
    framework_errors_are_problem_documents,
    oversized_bodies_are_413_problems,
    probes_answer,
    openapi_and_docs_are_served_from_the_binary,
);

async fn assert_problem(response: reqwest::Response, status: u16, code: &str, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let problem: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(problem["status"], status, "{what}");
    assert_eq!(problem["code"], code, "{what}");
    assert!(
        problem["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: type"
    );
    assert!(
        problem["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: title"
    );
}

async fn framework_errors_are_problem_documents(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let c = &hub.client;
    assert_problem(
        c.get(hub.url("/no/such/route"))
            .send()
            .await
            .expect("answer"),
        404,
        "not_found",
        "unknown route",
    )
    .await;
    assert_problem(
        hub.post_record("eurodac", "application/json", "{}").await,
        404,
        "unknown_system",
        "unknown system",
    )
    .await;
    assert_problem(
        hub.get_record("ees", "EES-NOBODY").await,
        404,
        "record_not_found",
        "missing record",
    )
    .await;
    assert_problem(
        hub.get_record("sis", "EES-NOBODY").await,
        404,
        "record_not_found",
        "missing record",
    )
    .await;
    let put = c
        .put(hub.url("/v1/systems/ees/records"))
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert!(
        put.headers().contains_key("allow"),
        "405 keeps its Allow header"
    );
    assert_problem(put, 405, "method_not_allowed", "wrong method").await;
    assert_problem(
        hub.post_record("vis", "application/json", fixture("vis.xml"))
            .await,
        415,
        "unsupported_media_type",
        "XML system sent as JSON",
    )
    .await;
    assert_problem(
        hub.post_record("ees", "text/plain", fixture("ees.json"))
            .await,
        415,
        "unsupported_media_type",
        "wrong content type",
    )
    .await;
    let no_type = c
        .post(hub.url("/v1/systems/ees/records"))
        .body(fixture("ees.json"))
        .send()
        .await
        .expect("answer");
    assert_problem(no_type, 415, "unsupported_media_type", "no content type").await;
    assert_eq!(hub.count_all_rows().await, 0);
    hub.stop().await;
}

async fn oversized_bodies_are_413_problems(backend: Backend) {
    let hub = TestHub::spawn_with(backend, |config| config.settings.max_body_bytes = 2048).await;
    // The EES fixture is over 5 KB.
    assert_problem(
        hub.post_record("ees", "application/json", fixture("ees.json"))
            .await,
        413,
        "payload_too_large",
        "body over the limit",
    )
    .await;
    assert_eq!(
        hub.post_record("etias", "application/json", fixture("etias.json"))
            .await
            .status(),
        201,
        "a small body still passes"
    );
    hub.stop().await;
}

async fn probes_answer(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = hub.client.get(hub.url(path)).send().await.expect("answer");
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], status);
    }
    hub.stop().await;
}

async fn openapi_and_docs_are_served_from_the_binary(backend: Backend) {
    let hub = TestHub::spawn(backend).await;
    let spec: Value = hub.get_json("/openapi.json").await.1;
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1"
    );
    for path in [
        "/v1/systems/{system}/records",
        "/v1/systems/{system}/records/{source_id}",
        "/healthz",
        "/readyz",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} is documented");
    }
    let committed: Value = serde_json::from_str(include_str!("../../../openapi/openapi.json"))
        .expect("committed spec");
    assert_eq!(spec, committed, "the served spec is the committed one");

    let page = hub
        .client
        .get(hub.url("/docs/"))
        .send()
        .await
        .expect("answer");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger"), "the docs UI page");
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = hub.client.get(hub.url(asset)).send().await.expect("answer");
        assert_eq!(response.status(), 200, "{asset} is served from the binary");
        if asset.ends_with("initializer.js") {
            let script = response.text().await.expect("text");
            assert!(
                script.contains("/openapi.json"),
                "the UI loads the hub's own spec"
            );
            assert!(
                !script.contains("https://"),
                "the UI loads nothing from outside: {script}"
            );
        }
    }
    hub.stop().await;
}
