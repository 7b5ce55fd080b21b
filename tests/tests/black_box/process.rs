//! A hub in a process of its own, for what a process inside the test cannot show: a
//! `kill -9`, a SIGTERM, a database or a disk that fails under a running hub.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use connectors::RecordRef;
use hub_tests::{READ_PURPOSE, free_port, fresh_postgres_database_on};
use interop_hub::access::TokenAuthority;

/// A hub process started with `args`, restarted with the same on [`HubProcess::spawn`].
pub(crate) struct HubProcess {
    args: Vec<String>,
    pub base: String,
    child: Option<Child>,
    /// The process's log (warnings and errors), shown when the test fails.
    log: std::path::PathBuf,
}

impl HubProcess {
    /// Serves on a free port, on `data_dir`, with the settings file `config`; `extra` adds
    /// arguments (database URLs).
    pub(crate) fn start(data_dir: &Path, config: &Path, extra: Vec<String>) -> Self {
        let port = free_port();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ];
        args.extend(extra);
        // Beside, not inside, the data directory: a test may fill that disk.
        let log = std::env::temp_dir().join(format!("interop-hub-test-{port}.log"));
        let mut server = Self {
            args,
            base: format!("http://127.0.0.1:{port}"),
            child: None,
            log,
        };
        server.spawn();
        server
    }

    pub(crate) fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("a log file for the hub process");
        let child = Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hub process starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown hook runs, nothing is flushed.
    pub(crate) fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM, then waits up to `patience` for the process to exit: whether it exited
    /// successfully in time.
    pub(crate) async fn terminate(&mut self, patience: Duration) -> bool {
        let Some(child) = self.child.take() else {
            return false;
        };
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        self.child = Some(child);
        signalled
            && self
                .wait_exit(patience)
                .await
                .is_some_and(|status| status.success())
    }

    /// Waits up to `patience` for the process to exit by itself: its exit status, or `None`
    /// (the process is then killed).
    pub(crate) async fn wait_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// What the process wrote to its log so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) async fn wait_ready(&self, client: &reqwest::Client) {
        self.wait_ready_within(client, Duration::from_secs(60))
            .await;
    }

    pub(crate) async fn wait_ready_within(&self, client: &reqwest::Client, patience: Duration) {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            let ready = client.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the hub did not become ready within {patience:?}");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill_9();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("the hub process's last log lines:\n{}", tail.join("\n"));
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A settings file in `dir`: request budgets no test meets (unless `extra` has budgets of
/// its own), then `extra` TOML.
pub(crate) fn settings_file(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("hub.toml");
    let limits = if extra.contains("[limits]") {
        ""
    } else {
        "[limits]\nper_second = 100000\nburst = 100000\n\
         agency_per_second = 100000\nagency_burst = 100000\n"
    };
    std::fs::write(&path, format!("{limits}{extra}")).expect("settings file");
    path
}

/// The signing key the hub process made in `data_dir` at start, to sign with as an
/// operator would.
pub(crate) fn tokens_of(data_dir: &Path) -> std::sync::Arc<TokenAuthority> {
    std::sync::Arc::new(
        TokenAuthority::load_or_create(&data_dir.join("token-keys")).expect("the hub's key"),
    )
}

/// Every one of `records` reads back from the hub at `base`.
pub(crate) async fn assert_readable(client: &reqwest::Client, base: &str, records: &[RecordRef]) {
    assert!(!records.is_empty(), "records to read back");
    for record in records {
        let read = client
            .get(format!(
                "{base}/v1/systems/{}/records/{}?purpose={READ_PURPOSE}",
                record.system, record.source_id
            ))
            .send()
            .await
            .expect("answer");
        assert_eq!(read.status(), 200, "acknowledged {record:?} is stored");
    }
}

/// The command-line flags that put a hub's four databases on fresh PostgreSQL databases of
/// the server at `admin_url`.
pub(crate) async fn postgres_database_flags(admin_url: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for (flag, role) in [
        ("--civil-database-url", "civil"),
        ("--law-enforcement-database-url", "le"),
        ("--mid-database-url", "mid"),
        ("--control-database-url", "control"),
    ] {
        flags.push(flag.to_owned());
        flags.push(fresh_postgres_database_on(admin_url, role).await);
    }
    flags
}
