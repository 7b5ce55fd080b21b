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
use crate::error::HubError;

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    pub status: &'static str,
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Alive", body = Health)))]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Every database answers: the hub can take traffic.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Health),
        Unavailable,
    ))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, HubError> {
    state
        .hub
        .operations
        .ready()
        .await
        .map(|()| Json(Health { status: "ready" }))
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
