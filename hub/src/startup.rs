//! Builds the application from configuration and serves it on a listener that tests can
//! bind to port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::HubConfig;
use crate::core::Hub;
use crate::http::{AppState, router};

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    hub: Arc<Hub>,
    max_body_bytes: usize,
}

impl Application {
    /// Opens the stores (migrating them) and binds the listener.
    pub async fn build(config: HubConfig) -> anyhow::Result<Self> {
        let hub = Arc::new(Hub::open(&config).await?);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        Ok(Self {
            listener,
            hub,
            max_body_bytes: config.settings.max_body_bytes,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.hub)
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = AppState {
            hub: Arc::clone(&self.hub),
            max_body_bytes: self.max_body_bytes,
        };
        axum::serve(self.listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await?;
        self.hub.close().await;
        Ok(())
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
