//! Access-request routes: law enforcement asks for full access after a hit flag (or
//! records why not); administrators decide, and a grant applies at once for a time.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::responses::{BadRequest, Conflict, NotFound, Refused, Unprocessable};
use crate::core::{AccessRequestDecision, AccessRequestFiling, AccessRequestView};
use crate::error::HubError;

/// Filter of `GET /v1/access-requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RequestFilter {
    /// pending, granted, refused or recorded.
    status: Option<String>,
}

/// File a full-access request after a hit flag, or (`kind: no_request`) record why none
/// follows. Both are logged.
#[utoipa::path(
    post,
    path = "/v1/access-requests",
    tag = "access",
    request_body = AccessRequestFiling,
    responses(
        (status = 201, description = "Filed", body = AccessRequestView),
        BadRequest,
        Refused,
        Unprocessable,
    )
)]
pub(super) async fn file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    filing: JsonBody<AccessRequestFiling>,
) -> Result<(StatusCode, Json<AccessRequestView>), HubError> {
    state
        .hub
        .administration
        .file_access_request(&caller, filing.0)
        .await
        .map(|request| (StatusCode::CREATED, Json(request)))
}

/// Access requests, oldest first: all of them for administrators, their own for requesters.
#[utoipa::path(
    get,
    path = "/v1/access-requests",
    tag = "access",
    params(RequestFilter),
    responses(
        (status = 200, description = "The requests", body = Vec<AccessRequestView>),
        Refused,
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(filter): Query<RequestFilter>,
) -> Result<Json<Vec<AccessRequestView>>, HubError> {
    state
        .hub
        .administration
        .access_requests(&caller, filter.status.as_deref())
        .await
        .map(Json)
}

/// Grant or refuse a pending request. A grant gives the requester full access to the
/// system from the very next request until it lapses by itself (`hours`, default 24).
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/decision",
    tag = "access",
    params(("id" = String, Path, description = "The request's id")),
    request_body = AccessRequestDecision,
    responses(
        (status = 200, description = "Decided", body = AccessRequestView),
        Refused,
        NotFound,
        Conflict,
        Unprocessable,
    )
)]
pub(super) async fn decide(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    decision: JsonBody<AccessRequestDecision>,
) -> Result<Json<AccessRequestView>, HubError> {
    state
        .hub
        .administration
        .decide_access_request(&caller, &id, decision.0)
        .await
        .map(Json)
}
