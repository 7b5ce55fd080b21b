//! Builds the application from configuration and serves it on a listener that tests can
//! bind to port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connectors::Partition;
use tokio::net::TcpListener;

use crate::access::TokenAuthority;
use crate::audit_checkpoints::CheckpointSigner;
use crate::config::{HubConfig, ServerSettings};
use crate::core::Hub;
use crate::error::HubError;
use crate::http::{AppState, router, serve};

/// How often changed biometric indexes are written to disk. A crash in between loses
/// nothing: start-up mends the indexes from the store.
const INDEX_SAVE_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Application {
    /// Held while the application lives: one serving process per data directory.
    _data_dir_lock: DataDirLock,
    listener: TcpListener,
    hub: Arc<Hub>,
    tokens: Arc<TokenAuthority>,
    max_body_bytes: usize,
    server: ServerSettings,
    index_dir: PathBuf,
    sweep_interval_seconds: u32,
    feed_upkeep: Duration,
    checkpoints: Option<Checkpointing>,
}

/// The audit checkpoints this hub signs, and when.
#[derive(Debug)]
struct Checkpointing {
    signer: Arc<CheckpointSigner>,
    every_entries: i64,
    interval: Duration,
}

impl Application {
    /// Opens the stores (migrating them) and binds the listener.
    pub async fn build(config: HubConfig) -> anyhow::Result<Self> {
        // Before anything is opened: a second process would share the SQLite files and
        // write the same index files.
        let data_dir_lock = DataDirLock::take(&config.data_dir)?;
        let tokens = Arc::new(TokenAuthority::open(
            &config.keys_dir(),
            config.settings.auth.retired_keys_verify_for(),
        )?);
        let hub = Arc::new(Hub::open(&config).await?);
        let audit = &config.settings.audit;
        let checkpoints = if audit.checkpoints {
            Some(Checkpointing {
                signer: Arc::new(CheckpointSigner::open(
                    &config.checkpoint_key_file(),
                    &config.checkpoint_file(),
                )?),
                every_entries: i64::from(audit.checkpoint_every_entries),
                interval: audit.checkpoint_interval(),
            })
        } else {
            None
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        Ok(Self {
            _data_dir_lock: data_dir_lock,
            listener,
            hub,
            tokens,
            max_body_bytes: config.settings.max_body_bytes,
            server: config.settings.server.clone(),
            index_dir: config.index_dir(),
            sweep_interval_seconds: config.settings.detection.sweep_interval_seconds,
            feed_upkeep: config.settings.feed.mend_interval(),
            checkpoints,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves at once — `/readyz` answers 503 until the biometric indexes are level with
    /// the store — until `shutdown` completes; then lets in-flight requests finish and
    /// saves the indexes.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let preparing = tokio::spawn(prepare(Arc::clone(&self.hub), self.index_dir.clone()));
        let saving = tokio::spawn(save_periodically(Arc::clone(&self.hub)));
        let sweeping = tokio::spawn(sweep_detections(
            Arc::clone(&self.hub),
            Duration::from_secs(u64::from(self.sweep_interval_seconds)),
        ));
        let following: Vec<_> = [Partition::Civil, Partition::LawEnforcement]
            .into_iter()
            .map(|partition| {
                let hub = Arc::clone(&self.hub);
                tokio::spawn(async move { hub.follow_feed(partition).await })
            })
            .collect();
        let policy = tokio::spawn({
            let hub = Arc::clone(&self.hub);
            async move { hub.follow_policy().await }
        });
        let tending = tokio::spawn(tend_feeds(Arc::clone(&self.hub), self.feed_upkeep));
        let checkpointing = self
            .checkpoints
            .map(|checkpoints| tokio::spawn(sign_checkpoints(Arc::clone(&self.hub), checkpoints)));
        let state = AppState {
            hub: Arc::clone(&self.hub),
            tokens: Arc::clone(&self.tokens),
            max_body_bytes: self.max_body_bytes,
        };
        let served = serve(self.listener, router(state), &self.server, shutdown).await;
        preparing.abort();
        saving.abort();
        sweeping.abort();
        tending.abort();
        policy.abort();
        if let Some(checkpointing) = checkpointing {
            checkpointing.abort();
        }
        for follower in following {
            follower.abort();
        }
        if let Err(e) = self.hub.operations.save_indexes().await {
            tracing::error!(error = %e, "could not save the biometric indexes; start-up will mend them");
        }
        self.hub.operations.close().await;
        served
    }
}

/// How often the checkpoint signer looks at where the audit chain ends.
const CHECKPOINT_LOOK_INTERVAL: Duration = Duration::from_secs(1);

/// Signs a checkpoint of the audit chain once it grew by `every_entries`, or `interval`
/// after the last one if it grew at all, for as long as the hub runs.
async fn sign_checkpoints(hub: Arc<Hub>, checkpoints: Checkpointing) {
    let Checkpointing {
        signer,
        every_entries,
        interval,
    } = checkpoints;
    let mut signed_up_to = match signer.last() {
        Ok(last) => last.map_or(0, |checkpoint| checkpoint.seq),
        Err(e) => {
            tracing::error!(error = %e, "the audit checkpoint log cannot be read: no checkpoints are signed");
            return;
        }
    };
    // A chain grown while no hub signed (a crash, a stop) is signed at the first look.
    let mut signed_at: Option<std::time::Instant> = None;
    let mut looks = tokio::time::interval(CHECKPOINT_LOOK_INTERVAL.min(interval));
    loop {
        looks.tick().await;
        let end = match hub.operations.audit_chain_end().await {
            Ok(Some(end)) => end,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "where the audit chain ends could not be read");
                continue;
            }
        };
        if end.seq < signed_up_to {
            tracing::error!(
                end = end.seq,
                checkpoint = signed_up_to,
                "the audit chain ends before its last signed checkpoint: entries were deleted"
            );
            continue;
        }
        let grown = end.seq - signed_up_to;
        let waited = signed_at.is_none_or(|at| at.elapsed() >= interval);
        if grown == 0 || (grown < every_entries && !waited) {
            continue;
        }
        let now = hub.now();
        let signing = Arc::clone(&signer);
        let seq = end.seq;
        match tokio::task::spawn_blocking(move || signing.append(&end, now)).await {
            Ok(Ok(_)) => {
                signed_up_to = seq;
                signed_at = Some(std::time::Instant::now());
            }
            Ok(Err(e)) => tracing::error!(error = %e, "an audit checkpoint could not be written"),
            Err(e) => tracing::error!(error = %e, "the audit checkpoint writer failed"),
        }
    }
}

/// Builds the indexes, retrying while a database is unreachable.
async fn prepare(hub: Arc<Hub>, index_dir: PathBuf) {
    let started = std::time::Instant::now();
    loop {
        match hub.records.prepare(&index_dir).await {
            Ok(()) => {
                tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    "biometric indexes ready"
                );
                return;
            }
            Err(e) => {
                tracing::error!(error = ?e, "preparing the biometric indexes failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

async fn save_periodically(hub: Arc<Hub>) {
    let mut ticks = tokio::time::interval(INDEX_SAVE_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(e) = hub.operations.save_indexes().await {
            tracing::error!(error = %e, "saving the biometric indexes failed");
        }
    }
}

/// Finishes, every `interval`, the detections that ingests stopped before finishing.
async fn sweep_detections(hub: Arc<Hub>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match hub.records.finish_detections().await {
            Ok(0) | Err(HubError::NotReady) => {}
            Ok(finished) => tracing::info!(finished, "unfinished detections finished"),
            Err(e) => tracing::warn!(error = %e, "sweeping unfinished detections failed"),
        }
    }
}

/// Prunes the change feeds and mends the indexes against the store, every `interval`.
async fn tend_feeds(hub: Arc<Hub>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match hub.operations.tend_feeds().await {
            Ok(()) | Err(HubError::NotReady) => {}
            Err(e) => tracing::warn!(error = %e, "tending the change feeds failed"),
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// The data directory's lock: an exclusive `flock` on `interop-hub.lock` in it, which the
/// system lets go when the process ends, however it ends. The file says which process holds
/// it, for the error a second one gives.
#[derive(Debug)]
struct DataDirLock {
    _file: std::fs::File,
}

/// The lock file's name in the data directory.
const DATA_DIR_LOCK: &str = "interop-hub.lock";

impl DataDirLock {
    fn take(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::{Read as _, Seek as _, Write as _};
        // Created here, restricted once this process holds it: never another's files.
        crate::data_dir::create(data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        let path = data_dir.join(DATA_DIR_LOCK);
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        if let Err(e) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            if e != rustix::io::Errno::WOULDBLOCK {
                anyhow::bail!("cannot lock {}: {e}", path.display());
            }
            anyhow::bail!(
                "the data directory {} is in use by another interop-hub process{}: one \
                 process serves a data directory; give each hub a directory of its own",
                data_dir.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::DataDirLock;

    #[test]
    fn a_data_directory_is_locked_once_and_free_again_when_the_lock_goes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let first = DataDirLock::take(dir.path()).expect("a free directory");
        let refused = DataDirLock::take(dir.path()).expect_err("already locked");
        let message = refused.to_string();
        assert!(
            message.contains("in use by another interop-hub process"),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "names the holder: {message}"
        );
        drop(first);
        DataDirLock::take(dir.path()).expect("free once the holder let go");
    }
}
