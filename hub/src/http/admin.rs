//! Administration routes: access rules and role assignments, changed in real time, the
//! dry run that shows what a principal would see, and revocations of tokens.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::responses::{BadRequest, Conflict, NotFound, Refused, Unprocessable};
use crate::access::{PolicyRule, Revocation};
use crate::core::{
    PolicyChange, PolicyChangeDecision, PolicyChangeStatus, PolicyChangeView, RevocationOrder,
    RuleChange, Simulation, SimulationAnswer,
};
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

/// Add a permission, a denial or a role assignment, optionally time-boxed. It applies to
/// the very next request; the change is audited with who, when and why. Under four eyes
/// (the default), a rule that widens access to personal data (a `read:*` permission, or an
/// assignment of a role that reads) is not made but proposed (202): a second administrator
/// approves it at `/v1/admin/changes/{id}/decision`. Nobody changes rules about themselves
/// (403 `four_eyes`).
#[utoipa::path(
    post,
    path = "/v1/admin/policies",
    tag = "admin",
    request_body = PolicyChange,
    responses(
        (status = 201, description = "Added and in force", body = PolicyRule),
        (status = 202, description = "Proposed: waits for a second administrator", body = PolicyChangeView),
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
) -> Result<Response, HubError> {
    state
        .hub
        .administration
        .add_policy_rule(&caller, change.0)
        .await
        .map(|change| change_response(change, StatusCode::CREATED))
}

/// A change made (`made`), or proposed (202 with the pending change).
fn change_response(change: RuleChange, made: StatusCode) -> Response {
    match change {
        RuleChange::Made(rule) => (made, Json(rule)).into_response(),
        RuleChange::Pending(pending) => (StatusCode::ACCEPTED, Json(pending)).into_response(),
    }
}

/// Remove a rule; the very next request is decided without it. Under four eyes, removing
/// a denial of reading (or of everything) widens access: it is proposed (202) for a second
/// administrator.
#[utoipa::path(
    delete,
    path = "/v1/admin/policies/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "The rule's id"), RemovalReason),
    responses(
        (status = 200, description = "Removed; the rule as it was", body = PolicyRule),
        (status = 202, description = "Proposed: waits for a second administrator", body = PolicyChangeView),
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
) -> Result<Response, HubError> {
    state
        .hub
        .administration
        .remove_policy_rule(&caller, id, query.reason.as_deref().unwrap_or(""))
        .await
        .map(|change| change_response(change, StatusCode::OK))
}

/// Which changes to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ChangeFilter {
    /// pending, approved or refused; default: all.
    status: Option<PolicyChangeStatus>,
}

/// Changes to the rules proposed for four eyes, newest first (at most 500).
#[utoipa::path(
    get,
    path = "/v1/admin/changes",
    tag = "admin",
    params(ChangeFilter),
    responses(
        (status = 200, description = "The changes, newest first", body = Vec<PolicyChangeView>),
        BadRequest,
        Refused,
    )
)]
pub(super) async fn changes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(filter): Query<ChangeFilter>,
) -> Result<Json<Vec<PolicyChangeView>>, HubError> {
    state
        .hub
        .administration
        .policy_changes(&caller, filter.status)
        .await
        .map(Json)
}

/// Approve (make) or refuse a pending change. Nobody approves their own change, nor one
/// to a rule about themselves (403 `four_eyes`); its proposer may refuse it (withdraw).
#[utoipa::path(
    post,
    path = "/v1/admin/changes/{id}/decision",
    tag = "admin",
    params(("id" = i64, Path, description = "The change's id")),
    request_body = PolicyChangeDecision,
    responses(
        (status = 200, description = "Decided; an approved change is in force", body = PolicyChangeView),
        BadRequest,
        Refused,
        NotFound,
        Conflict,
        Unprocessable,
    )
)]
pub(super) async fn decide_change(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    decision: JsonBody<PolicyChangeDecision>,
) -> Result<Json<PolicyChangeView>, HubError> {
    state
        .hub
        .administration
        .decide_policy_change(&caller, id, decision.0)
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
