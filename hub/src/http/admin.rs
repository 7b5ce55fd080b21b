//! Administration routes: access rules and role assignments, changed in real time, the
//! dry run that shows what a principal would see, and revocations of tokens.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::responses::{BadRequest, Conflict, NotFound, Refused, Unprocessable};
use crate::access::{PolicyRule, Revocation};
use crate::core::{PolicyChange, RevocationOrder, Simulation, SimulationAnswer};
use crate::error::HubError;

/// Why a rule is removed.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RemovalReason {
    /// Required: kept in the audit log.
    reason: Option<String>,
}

/// Every rule and role assignment, lapsed grants included (`active: false`).
#[utoipa::path(
    get,
    path = "/v1/admin/policies",
    tag = "admin",
    responses(
        (status = 200, description = "The rules, oldest first", body = Vec<PolicyRule>),
        Refused,
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<PolicyRule>>, HubError> {
    state
        .hub
        .administration
        .policy_rules(&caller)
        .await
        .map(Json)
}

/// Add a permission or a role assignment, optionally time-boxed. It applies to the very
/// next request; the change is audited with who, when and why.
#[utoipa::path(
    post,
    path = "/v1/admin/policies",
    tag = "admin",
    request_body = PolicyChange,
    responses(
        (status = 201, description = "Added and in force", body = PolicyRule),
        BadRequest,
        Refused,
        Conflict,
        Unprocessable,
    )
)]
pub(super) async fn add(
    State(state): State<AppState>,
    Caller(caller): Caller,
    change: JsonBody<PolicyChange>,
) -> Result<(StatusCode, Json<PolicyRule>), HubError> {
    state
        .hub
        .administration
        .add_policy_rule(&caller, change.0)
        .await
        .map(|rule| (StatusCode::CREATED, Json(rule)))
}

/// Remove a rule; the very next request is decided without it.
#[utoipa::path(
    delete,
    path = "/v1/admin/policies/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "The rule's id"), RemovalReason),
    responses(
        (status = 200, description = "Removed; the rule as it was", body = PolicyRule),
        Refused,
        NotFound,
        Unprocessable,
    )
)]
pub(super) async fn remove(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Query(query): Query<RemovalReason>,
) -> Result<Json<PolicyRule>, HubError> {
    state
        .hub
        .administration
        .remove_policy_rule(&caller, id, query.reason.as_deref().unwrap_or(""))
        .await
        .map(Json)
}

/// Dry run: how each system would answer a principal's search, and every right the
/// principal would hold, under the current rules with the proposed changes — which are
/// not made. Decisions only, never data.
#[utoipa::path(
    post,
    path = "/v1/admin/policies/simulation",
    tag = "admin",
    request_body = Simulation,
    responses(
        (status = 200, description = "What the principal would get", body = SimulationAnswer),
        Refused,
        Unprocessable,
    )
)]
pub(super) async fn simulate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    simulation: JsonBody<Simulation>,
) -> Result<Json<SimulationAnswer>, HubError> {
    state
        .hub
        .administration
        .simulate(&caller, simulation.0)
        .await
        .map(Json)
}

/// The revocations in force: tokens, principals and agencies whose tokens are refused.
#[utoipa::path(
    get,
    path = "/v1/admin/revocations",
    tag = "admin",
    responses(
        (status = 200, description = "The revocations, oldest first", body = Vec<Revocation>),
        Refused,
    )
)]
pub(super) async fn revocations(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<Revocation>>, HubError> {
    state
        .hub
        .administration
        .revocations(&caller)
        .await
        .map(Json)
}

/// Revoke one token (by its id), or every token one principal or one agency holds now. They
/// are refused from the very next request, on every route and the console; tokens issued
/// later are admitted (a deny rule blocks a principal or an agency for good).
#[utoipa::path(
    post,
    path = "/v1/admin/revocations",
    tag = "admin",
    request_body = RevocationOrder,
    responses(
        (status = 201, description = "Revoked, in force", body = Revocation),
        BadRequest,
        Refused,
        Unprocessable,
    )
)]
pub(super) async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    order: JsonBody<RevocationOrder>,
) -> Result<(StatusCode, Json<Revocation>), HubError> {
    state
        .hub
        .administration
        .revoke(&caller, order.0)
        .await
        .map(|revocation| (StatusCode::CREATED, Json(revocation)))
}
