//! The web console in headless Chromium (Debian's `chromium` and `chromium-driver`, driven
//! over WebDriver): an administrator grants and revokes a right and the principal's next
//! search follows; under four eyes a second administrator approves a grant a first one
//! proposed; a verifier decides a yellow link from the queue. Each console page is
//! saved as a PNG under `target/console-screenshots/` (not committed).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hub_tests::{Backend, TestHub, fixture, free_port};
use reqwest::Method;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium under its own chromedriver, gone when dropped.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn browser() -> Browser {
    assert!(
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
        "the console tests need Debian's chromium and chromium-driver \
         (tests/run installs them: apt-get install chromium chromium-driver)"
    );
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().expect("profile directory");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--no-first-run", "--window-size=1280,1800",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last_error = String::new();
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                return Browser {
                    client,
                    driver,
                    _profile: profile,
                };
            }
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session: {last_error}");
}

impl Browser {
    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("page loads");
    }

    /// The text of the element, waiting for it to appear: a click that submits a form
    /// returns before the next page has loaded.
    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// Waits until the element's text contains `want` (the page after a form post), and
    /// returns the text; fails after ten seconds.
    async fn wait_for_text(&self, css: &str, want: &str) -> String {
        let mut seen = String::new();
        for _ in 0..100 {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                seen = element.text().await.unwrap_or_default();
                if seen.contains(want) {
                    return seen;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never showed {want:?}; last seen {seen:?}");
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .expect("click");
    }

    async fn select(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .select_by_value(value)
            .await
            .expect("select");
    }

    /// Saves the page as `target/console-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn sign_in(&self, hub: &TestHub, token: &str) {
        self.goto(&hub.url("/console/sign-in")).await;
        self.fill("#token", token).await;
        self.click("#sign-in").await;
        self.wait_for_text("#who", "TEST").await;
    }
}

async fn rule_id(hub: &TestHub, admin: &str, pick: impl Fn(&Value) -> bool) -> i64 {
    let (_, rules) = hub
        .call(Method::GET, "/v1/admin/policies", Some(admin), None)
        .await;
    rules
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| pick(r))
        .and_then(|r| r["id"].as_i64())
        .expect("the rule")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_grants_and_revokes_a_right_and_the_next_search_follows() {
    let hub = TestHub::spawn(Backend::Sqlite).await;
    for file in ["ees.json", "sis.json"] {
        let system = file.trim_end_matches(".json");
        let created = hub
            .post_record(system, "application/json", fixture(file))
            .await;
        assert_eq!(created.status(), 201);
    }
    let admin = hub.token("admin-1", "SE", &["admin"]);
    let officer = hub.token("m.rossi", "IT", &[]);
    let query = json!({
        "purpose": "border_check",
        "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"},
        "systems": ["ees"],
    });
    let search = || async {
        hub.call(Method::POST, "/v1/search", Some(&officer), Some(&query))
            .await
    };
    assert_eq!(search().await.0, 403, "no rights yet");

    let browser = browser().await;
    browser.goto(&hub.url("/console/sign-in")).await;
    browser.screenshot("sign-in").await;
    browser.sign_in(&hub, &admin).await;
    assert!(browser.text("h1").await.contains("Dashboard"));
    browser.screenshot("dashboard").await;

    // Grant: assign the officer the border guard role.
    browser.goto(&hub.url("/console/access")).await;
    browser
        .select("#add-rule select[name=kind]", "assignment")
        .await;
    browser
        .fill("#add-rule input[name=who]", "user:TEST/m.rossi")
        .await;
    browser
        .fill("#add-rule input[name=role]", "border_guard")
        .await;
    browser
        .fill(
            "#add-rule input[name=reason]",
            "seconded to the border police",
        )
        .await;
    browser.click("#add-rule button").await;
    browser.wait_for_text("#notice", "Rule added").await;
    let (status, answer) = search().await;
    assert_eq!(status, 200, "the grant applies to the very next search");
    assert_eq!(
        answer["results"][0]["records"].as_array().map(Vec::len),
        Some(1)
    );

    // The simulator shows what the officer now gets, without changing anything.
    browser
        .fill("#simulate input[name=subject]", "m.rossi")
        .await;
    browser.fill("#simulate input[name=agency]", "TEST").await;
    browser
        .fill("#simulate input[name=member_state]", "IT")
        .await;
    browser.fill("#simulate input[name=roles]", "").await;
    browser.click("#simulate button").await;
    let simulated = browser.text("#simulation").await;
    assert!(simulated.contains("ees full"), "{simulated}");
    assert!(simulated.contains("ecris-tcn nothing"), "{simulated}");
    browser.screenshot("access-rights").await;

    // Revoke it from the rules table.
    let id = rule_id(&hub, &admin, |r| r["member"] == "user:TEST/m.rossi").await;
    let row = format!("tr[data-rule='{id}']");
    browser
        .fill(&format!("{row} input[name=reason]"), "secondment ended")
        .await;
    browser.click(&format!("{row} button")).await;
    browser.wait_for_text("#notice", "Rule revoked").await;
    assert_eq!(
        search().await.0,
        403,
        "the revocation denies the very next search"
    );

    // The console is closed to a principal without administration.
    let guard = hub.token("officer", "DE", &["border_guard"]);
    browser.click("#sign-out").await;
    browser.sign_in(&hub, &guard).await;
    let (status, refusal) = hub
        .call(Method::GET, "/v1/admin/policies", Some(&admin), None)
        .await;
    assert_eq!(
        (status, refusal["detail"].as_str()),
        (401, Some("the token has been revoked")),
        "signing out revoked the token itself, not only the cookie"
    );
    browser.goto(&hub.url("/console/access")).await;
    assert!(browser.text("h1").await.contains("Forbidden"));
    let _ = browser.client.clone().close().await;
    hub.stop().await;
}

/// Four eyes in the console: the first administrator's grant is proposed, not made; the
/// second sees it among the changes waiting and approves it; the officer's next search
/// follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_administrator_approves_a_proposed_grant() {
    let hub = TestHub::spawn_with(Backend::Sqlite, |config| {
        config.settings.administration.four_eyes = true;
    })
    .await;
    let first = hub.token("admin-1", "SE", &["admin"]);
    let second = hub.token("admin-2", "SE", &["admin"]);
    let officer = hub.token("m.rossi", "IT", &[]);
    let query = json!({
        "purpose": "border_check",
        "biographic": {"surname": "Müller", "date_of_birth": "1990-04-17"},
    });
    let search = || async {
        hub.call(Method::POST, "/v1/search", Some(&officer), Some(&query))
            .await
            .0
    };

    let browser = browser().await;
    browser.sign_in(&hub, &first).await;
    browser.goto(&hub.url("/console/access")).await;
    assert!(browser.text("#no-changes").await.contains("None"));
    browser
        .select("#add-rule select[name=kind]", "assignment")
        .await;
    browser
        .fill("#add-rule input[name=who]", "user:TEST/m.rossi")
        .await;
    browser
        .fill("#add-rule input[name=role]", "border_guard")
        .await;
    browser
        .fill(
            "#add-rule input[name=reason]",
            "seconded to the border police",
        )
        .await;
    browser.click("#add-rule button").await;
    browser.wait_for_text("#notice", "Change proposed").await;
    assert_eq!(search().await, 403, "proposed, not made");
    // Its proposer cannot approve it.
    browser
        .fill("#changes input[name=reason]", "looks right")
        .await;
    browser
        .click("#changes button[name=approve][value=true]")
        .await;
    browser.wait_for_text("h1", "Four eyes").await;
    assert_eq!(search().await, 403);

    browser.goto(&hub.url("/console/access")).await;
    browser.click("#sign-out").await;
    browser.sign_in(&hub, &second).await;
    browser.goto(&hub.url("/console/access")).await;
    let waiting = browser.text("#changes").await;
    assert!(
        waiting.contains("user:TEST/admin-1") && waiting.contains("user:TEST/m.rossi"),
        "{waiting}"
    );
    browser.screenshot("changes-waiting").await;
    browser
        .fill(
            "#changes input[name=reason]",
            "checked the secondment order",
        )
        .await;
    browser
        .click("#changes button[name=approve][value=true]")
        .await;
    browser.wait_for_text("#notice", "Change approved").await;
    assert_eq!(search().await, 200, "in force once approved");
    assert!(browser.text("#no-changes").await.contains("None"));
    let _ = browser.client.clone().close().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_decides_a_yellow_link_from_the_queue() {
    let hub = TestHub::spawn(Backend::Sqlite).await;
    let created = hub
        .post_record("ees", "application/json", fixture("ees.json"))
        .await;
    assert_eq!(created.status(), 201);
    let fraud = hub
        .post_record("sis", "application/json", super::links::sis_fraud())
        .await;
    let fraud: Value = fraud.json().await.expect("json");
    let link_id = fraud["links"][0]["id"].as_str().expect("a link").to_owned();
    assert_eq!(fraud["links"][0]["colour"], "yellow");

    let verifier = hub.token("sirene-se-7", "SE", &["sirene"]);
    let browser = browser().await;
    browser.sign_in(&hub, &verifier).await;
    browser.goto(&hub.url("/console/verification")).await;
    let queue = browser.text("#queue").await;
    assert!(queue.contains("sirene:SE"), "{queue}");
    browser.screenshot("verification-queue").await;

    browser.click("#queue a").await;
    assert_eq!(browser.text("#colour").await, "yellow");
    let evidence = browser.text("#evidence").await;
    assert!(
        evidence.contains("different"),
        "identity differs: {evidence}"
    );
    browser.screenshot("link-file").await;

    browser.click("#decide input[value=red]").await;
    browser
        .fill(
            "#justification",
            "same face and fingers under a second identity",
        )
        .await;
    browser.click("#submit-decision").await;
    assert_eq!(browser.wait_for_text("#colour", "red").await, "red");
    let history = browser.text("#history").await;
    assert!(history.contains("user:TEST/sirene-se-7"), "{history}");
    browser.screenshot("link-file-decided").await;

    let (status, file) = hub.get_json(&format!("/v1/links/{link_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(file["colour"], "red");
    let history = file["history"].as_array().expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["actor"], "user:TEST/sirene-se-7");
    assert_eq!(
        history[1]["justification"],
        "same face and fingers under a second identity"
    );
    let _ = browser.client.clone().close().await;
    hub.stop().await;
}
