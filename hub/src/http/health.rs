//! Liveness and readiness probes, and the operators' metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::extract::Caller;
use super::responses::{Refused, Unavailable};
use crate::core::FeedLag;
use crate::error::HubError;

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Readiness {
    pub status: &'static str,
    /// How far behind each partition's change feed this hub is.
    pub feeds: Vec<FeedLag>,
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Alive", body = Health)))]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The indexes are complete and level with the change feeds, every database answers: the
/// hub can take traffic.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        Unavailable,
    ))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, HubError> {
    state.hub.operations.ready().await.map(|feeds| {
        Json(Readiness {
            status: "ready",
            feeds,
        })
    })
}

/// Operators' metrics in Prometheus text format (a token with the operate duty; Prometheus
/// sends it with `authorization: {credentials: …}`). Labels carry route templates, systems,
/// outcomes, ingest steps and colours only.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text exposition", body = String, content_type = "text/plain; version=0.0.4"),
        Refused,
    ))]
pub(super) async fn metrics(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<impl IntoResponse, HubError> {
    let text = state.hub.operations.metrics_text(&caller).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    ))
}
