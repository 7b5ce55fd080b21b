//! The audit log's route, for supervisors.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::Caller;
use super::responses::Refused;
use crate::core::AuditPage;
use crate::error::HubError;

/// Paging of `GET /v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditPaging {
    /// Entries after this sequence number (default 0: from the start).
    after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    limit: Option<i64>,
}

/// The audit log in order: who, which agency, purpose, when, what kind of query and what
/// kind of result — never personal data — each entry chained to the one before.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditPaging),
    responses(
        (status = 200, description = "One page of entries", body = AuditPage),
        Refused,
    )
)]
pub(super) async fn log(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(paging): Query<AuditPaging>,
) -> Result<Json<AuditPage>, HubError> {
    state
        .hub
        .administration
        .audit_log(
            &caller,
            paging.after.unwrap_or(0),
            paging.limit.unwrap_or(100),
        )
        .await
        .map(Json)
}
