//! Black-box test support: a real hub on port 0, on a fresh SQLite directory or on fresh
//! PostgreSQL databases, and the fixtures of every source system.

mod cluster;

pub use cluster::PostgresCluster;

use std::path::PathBuf;

use interop_hub::access::{Principal, TokenAuthority};
use interop_hub::config::HubConfig;
use interop_hub::startup::Application;
use sqlx::{Connection, Executor};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The database engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where PostgreSQL tests create their databases; the machine's local server by default.
pub fn postgres_admin_url() -> String {
    std::env::var("INTEROP_HUB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fixture from `tests/fixtures/`: the source systems' own examples.
pub fn fixture(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// (system, fixture file, content type) for all five source systems.
pub const EXAMPLES: [(&str, &str, &str); 5] = [
    ("ees", "ees.json", "application/json"),
    ("etias", "etias.json", "application/json"),
    ("vis", "vis.xml", "application/xml"),
    ("sis", "sis.json", "application/json"),
    ("ecris-tcn", "ecris-tcn.xml", "application/xml"),
];

/// Every role of the baseline policy: the default test caller may do everything, so that
/// scenarios about records and links need not be about access. Its member state is the
/// fixtures' SIS issuing state, so it is also their SIRENE bureau.
pub const ALL_ROLES: [&str; 15] = [
    "connector:ees",
    "connector:etias",
    "connector:vis",
    "connector:sis",
    "connector:ecris-tcn",
    "border_guard",
    "visa_authority",
    "etias_unit",
    "sirene",
    "ecris_central_authority",
    "police",
    "le_designated",
    "europol",
    "supervisor",
    "admin",
];

/// A hub serving on a real port, with its own databases.
#[derive(Debug)]
pub struct TestHub {
    pub base: String,
    /// Sends the all-roles token (`ALL_ROLES`) with every request.
    pub client: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    /// Signs tokens with the running hub's key.
    pub tokens: std::sync::Arc<TokenAuthority>,
    pub civil_url: String,
    pub law_enforcement_url: String,
    pub mid_url: String,
    pub control_url: String,
    pub data_dir: PathBuf,
    config: HubConfig,
    _data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with a configuration adjusted by `adjust` (e.g. a small body limit).
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut HubConfig)) -> Self {
        // Logs only: the test process exports no traces (a subprocess test does).
        let _ = interop_hub::telemetry::init();
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let mut config = HubConfig::embedded(data_dir.path());
        if backend == Backend::Postgres {
            config.civil_database_url = Some(fresh_postgres_database("civil").await);
            config.law_enforcement_database_url = Some(fresh_postgres_database("le").await);
            config.mid_database_url = Some(fresh_postgres_database("mid").await);
            config.control_database_url = Some(fresh_postgres_database("control").await);
        }
        // Identity checks enabled for the states the scenarios use, and budgets no
        // scenario meets (the rate-limit scenario sets its own).
        config.settings.identity_check.member_states = ["SE", "DE", "ES", "FR", "IT", "NL", "PL"]
            .map(str::to_owned)
            .to_vec();
        config.settings.limits = interop_hub::config::LimitSettings {
            per_second: 100_000,
            burst: 100_000,
            agency_per_second: 100_000,
            agency_burst: 100_000,
            ..interop_hub::config::LimitSettings::default()
        };
        // Rules change through one administrator in the scenarios of other features; the
        // four-eyes scenario turns it back on.
        config.settings.administration.four_eyes = false;
        adjust(&mut config);
        Self::serve(config, data_dir).await
    }

    async fn serve(config: HubConfig, data_dir: tempfile::TempDir) -> Self {
        let app = Application::build(config.clone())
            .await
            .expect("hub starts");
        let address = app.local_addr().expect("bound address");
        let tokens = std::sync::Arc::new(
            TokenAuthority::load_or_create(&config.keys_dir()).expect("the hub's key"),
        );
        let client = authorized_client(&all_roles_token(&tokens));
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stop.await;
        }));
        let hub = Self {
            base: format!("http://{address}"),
            client,
            anonymous: reqwest::Client::new(),
            tokens,
            civil_url: config.civil_url(),
            law_enforcement_url: config.law_enforcement_url(),
            mid_url: config.mid_url(),
            control_url: config.control_url(),
            data_dir: data_dir.path().to_path_buf(),
            config,
            _data_dir: data_dir,
            shutdown: Some(shutdown),
            server: Some(server),
        };
        hub.wait_ready().await;
        hub
    }

    /// Stops the hub gracefully and starts a new one on the same data and databases.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// As [`Self::restart`], with the configuration adjusted by `adjust` first.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut HubConfig)) -> Self {
        let mut config = self.config.clone();
        adjust(&mut config);
        let data_dir = tempfile::TempDir::new().expect("placeholder");
        let data_dir = std::mem::replace(&mut self._data_dir, data_dir);
        self.stop_in_place().await;
        Self::serve(config, data_dir).await
    }

    /// Waits until `/readyz` answers 200: the biometric indexes are level with the store.
    pub async fn wait_ready(&self) {
        for _ in 0..600 {
            let ready = self.client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the hub did not become ready within 30 s");
    }

    /// A token for one principal of agency `TEST`, valid for an hour.
    pub fn token(&self, subject: &str, member_state: &str, roles: &[&str]) -> String {
        mint(&self.tokens, subject, "TEST", member_state, roles)
    }

    /// Sends `method path` with `token` (none when `None`) and an optional JSON body:
    /// the status and the JSON answer (`null` when not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.anonymous.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("hub answers");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a native record to `/v1/systems/{system}/records` as its responsible member
    /// state's connector (all roles, that state): a connector writes only its own state's
    /// records. A body that does not parse goes with the default caller's token.
    pub async fn post_record(
        &self,
        system: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> reqwest::Response {
        let body: Vec<u8> = body.into();
        let state = owner_of(system, &body).unwrap_or_else(|| "SE".to_owned());
        self.anonymous
            .post(self.url(&format!("/v1/systems/{system}/records")))
            .bearer_auth(mint(
                &self.tokens,
                "test-operator",
                "TEST",
                &state,
                &ALL_ROLES,
            ))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("hub answers")
    }

    /// An all-roles token for every member state and for the central systems (`EU`): what
    /// an import of a generated population needs, one connector per state.
    pub fn connector_tokens(&self) -> Vec<String> {
        connector_tokens(&self.tokens)
    }

    /// POSTs every source system's example record, each of which must be created.
    pub async fn post_examples(&self) {
        for (system, file, content_type) in EXAMPLES {
            assert_eq!(
                self.post_record(system, content_type, fixture(file))
                    .await
                    .status(),
                201,
                "{file}"
            );
        }
    }

    /// GETs `path`: the status and the JSON body (`null` when the body is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("hub answers");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    /// Templates in the index of `algorithm` in `partition`, as `GET /v1/biometrics/indexes`
    /// reports them.
    pub async fn indexed(&self, partition: connectors::Partition, algorithm: &str) -> u64 {
        let (status, indexes) = self.get_json("/v1/biometrics/indexes").await;
        assert_eq!(status, 200, "index state: {indexes}");
        let partition = serde_json::to_value(partition).expect("a partition serialises");
        indexes
            .as_array()
            .expect("a list of indexes")
            .iter()
            .find(|index| index["partition"] == partition && index["algorithm"] == algorithm)
            .and_then(|index| index["indexed"].as_u64())
            .unwrap_or_else(|| panic!("no index of {algorithm} in {partition}: {indexes}"))
    }

    /// POSTs `body` as JSON to `path`: the status and the JSON answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("hub answers");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    /// Every link, as each responsible authority's queue lists it (`query` filters, e.g.
    /// `colour=yellow`): the union of the queues of every authority that holds a link.
    pub async fn all_links(&self, query: &str) -> Vec<serde_json::Value> {
        let mut tokens = vec![all_roles_token(&self.tokens)];
        for authority in self
            .query_strings(&self.mid_url, "SELECT DISTINCT authority FROM links")
            .await
        {
            let (name, state) = authority.split_once(':').unwrap_or((&authority, "SE"));
            let role = match name {
                "border_authority" => "border_guard",
                other => other,
            };
            tokens.push(self.token("verifier", state, &[role]));
        }
        let mut links = std::collections::BTreeMap::new();
        for token in tokens {
            let mut offset = 0;
            loop {
                let (status, page) = self
                    .call(
                        reqwest::Method::GET,
                        &format!("/v1/links?limit=500&offset={offset}&{query}"),
                        Some(&token),
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{page}");
                let batch = page["links"].as_array().cloned().unwrap_or_default();
                if batch.is_empty() {
                    break;
                }
                offset += batch.len();
                for link in batch {
                    links.insert(link["id"].as_str().unwrap_or_default().to_owned(), link);
                }
            }
        }
        links.into_values().collect()
    }

    /// GETs a record as the default caller reads it for verifying links (it reads every
    /// system, whichever state the record is of).
    pub async fn get_record(&self, system: &str, source_id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!(
                "/v1/systems/{system}/records/{source_id}?purpose={READ_PURPOSE}"
            )))
            .send()
            .await
            .expect("hub answers")
    }

    /// Rows in `table` of both partitions' databases (or, for `links`, of the links
    /// database), read behind the hub's back.
    pub async fn count_rows(&self, table: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let urls = if table.starts_with("link") {
            vec![&self.mid_url]
        } else if [
            "audit_log",
            "policy_rules",
            "access_requests",
            "control_meta",
        ]
        .contains(&table)
        {
            vec![&self.control_url]
        } else {
            vec![&self.civil_url, &self.law_enforcement_url]
        };
        let mut total = 0;
        for url in urls {
            let mut conn = sqlx::AnyConnection::connect(url)
                .await
                .expect("test connects to the store");
            let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&mut conn)
                .await
                .expect("count rows");
            total += count;
        }
        total
    }

    /// A one-column text query on the database at `url`, behind the hub's back.
    pub async fn query_strings(&self, url: &str, sql: &str) -> Vec<String> {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url)
            .await
            .expect("test connects to the database");
        sqlx::query_scalar(sql)
            .fetch_all(&mut conn)
            .await
            .expect("query the database")
    }

    /// Runs a statement on the database at `url`, behind the hub's back (tampering tests).
    pub async fn execute(&self, url: &str, sql: &str) -> u64 {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url)
            .await
            .expect("test connects to the database");
        conn.execute(sql)
            .await
            .expect("statement runs")
            .rows_affected()
    }

    /// Rows of every repository table, for "nothing was stored" checks.
    pub async fn count_all_rows(&self) -> i64 {
        let mut total = 0;
        for table in [
            "identity_records",
            "identity_names",
            "travel_documents",
            "biometric_templates",
        ] {
            total += self.count_rows(table).await;
        }
        total
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    async fn stop_in_place(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

/// The purpose the default caller reads records for in scenarios that are not about
/// purposes: it reads every system for it, whichever state a record is of.
pub const READ_PURPOSE: &str = "multiple_identity_verification";

/// The member states (and `EU`, the central systems') connector tokens are made for.
pub const MEMBER_STATES: [&str; 28] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "EU",
];

/// An all-roles token for each of `MEMBER_STATES`.
pub fn connector_tokens(tokens: &TokenAuthority) -> Vec<String> {
    MEMBER_STATES
        .iter()
        .map(|state| mint(tokens, "test-operator", "TEST", state, &ALL_ROLES))
        .collect()
}

/// The member state responsible for a native record, as the hub reads it; `None` when the
/// body does not parse.
pub fn owner_of(system: &str, body: &[u8]) -> Option<String> {
    let system: connectors::SourceSystem = system.parse().ok()?;
    let accepted =
        connectors::parse(system, body, &connectors::AlgorithmRegistry::default()).ok()?;
    Some(interop_hub::core::responsible_state(&accepted.record).to_owned())
}

/// An all-roles token of `state`: the connector of that state's records, and every other
/// role besides.
pub fn all_roles_token_of(tokens: &TokenAuthority, state: &str) -> String {
    mint(tokens, "test-operator", "TEST", state, &ALL_ROLES)
}

/// The default test caller's token: every role (`ALL_ROLES`), member state SE.
pub fn all_roles_token(tokens: &TokenAuthority) -> String {
    mint(tokens, "test-operator", "TEST", "SE", &ALL_ROLES)
}

/// A client that sends `token` with every request.
pub fn authorized_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A token for `subject` of `agency` in `member_state` with `roles`, signed by `tokens`, valid for an hour.
pub fn mint(
    tokens: &TokenAuthority,
    subject: &str,
    agency: &str,
    member_state: &str,
    roles: &[&str],
) -> String {
    let roles = roles
        .iter()
        .map(|r| r.parse().expect("a well-formed role"))
        .collect();
    let principal =
        Principal::new(subject, agency, member_state, roles).expect("a well-formed principal");
    tokens
        .mint(
            &principal,
            time::OffsetDateTime::now_utc(),
            time::Duration::hours(1),
        )
        .expect("token")
}

/// A new, empty PostgreSQL database on the machine's server; returns its URL.
pub async fn fresh_postgres_database(role: &str) -> String {
    fresh_postgres_database_on(&postgres_admin_url(), role).await
}

/// A new, empty PostgreSQL database on the server of `admin_url`; returns its URL.
pub async fn fresh_postgres_database_on(admin_url: &str, role: &str) -> String {
    let admin_url = admin_url.to_owned();
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for the postgres tests ({admin_url}): {e}; \
                 tests/run installs and starts it"
            )
        });
    let name = format!("hubtest_{role}_{}", unique_suffix());
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    let (prefix, _) = admin_url
        .rsplit_once('/')
        .expect("admin URL names a database");
    format!("{prefix}/{name}")
}

/// A port no one listens on at this moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs each named scenario `async fn name(backend: Backend)` once on SQLite and once on
/// PostgreSQL, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}
