//! A PostgreSQL cluster of a test's own, in a temporary directory on a free port, that the
//! test may restart and stop under a running hub: the machine's shared server must not be
//! stopped under the rest of the suite.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A running cluster; stopped (immediately) when dropped.
#[derive(Debug)]
pub struct PostgresCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `initdb` and the server refuse to run as root: as root the cluster is run by this
    /// system user instead (it must exist: Debian's PostgreSQL packages create `postgres`).
    run_as: Option<&'static str>,
}

/// The user a root test runs the cluster as.
const CLUSTER_USER: &str = "postgres";

impl PostgresCluster {
    /// Initialises and starts a cluster; panics with what is missing if it cannot.
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let run_as = is_root().then_some(CLUSTER_USER);
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        if let Some(user) = run_as {
            let owned = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(
                owned.success(),
                "the tests run as root, so the test cluster runs as the system user \
                 {user}, which must exist (Debian's postgresql package creates it)"
            );
        }
        let port = crate::free_port();
        let cluster = Self {
            dir,
            bin,
            port,
            run_as,
        };
        let data = cluster.data_dir();
        cluster.run_tool(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster.ctl(&["start"]);
        cluster
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A fast restart (`pg_ctl restart -m fast`): every session is terminated, and the
    /// server is back once this returns.
    pub fn restart(&self) {
        self.ctl(&["restart", "-m", "fast"]);
    }

    /// A fast stop: every session is terminated and no new one is accepted.
    pub fn stop(&self) {
        self.ctl(&["stop", "-m", "fast"]);
    }

    /// Starts a stopped cluster again, on the same port.
    pub fn start_again(&self) {
        self.ctl(&["start"]);
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn ctl(&self, action: &[&str]) {
        let data = self.data_dir().display().to_string();
        let socket_dir = self.dir.path().display().to_string();
        let options = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections=200",
            self.port
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let mut args = vec!["-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60"];
        args.extend_from_slice(action);
        self.run_tool("pg_ctl", &args);
    }

    /// `tool` of the cluster's PostgreSQL, run as the cluster's user.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        }
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> Output {
        let output = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{tool} runs: {e}"));
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}\nserver log:\n{log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        output
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let data = self.data_dir().display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn postgres_bin_dir() -> PathBuf {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|version| version.join("bin"))
        .find(|bin| bin.join("initdb").exists())
        .unwrap_or_else(|| {
            panic!(
                "the fault tests start a PostgreSQL cluster of their own: initdb and pg_ctl \
                 were not found (install Debian's postgresql package, as tests/run does)"
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}
