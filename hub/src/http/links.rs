//! Link routes: the multiple-identity detector's links, their identity confirmation files,
//! and verifiers' decisions.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use connectors::SourceSystem;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::responses::{BadRequest, Conflict, NotFound, Refused, Unprocessable};
use crate::core::{ConfirmationFile, LinkFilter, LinkPage, Verification};
use crate::error::HubError;
use crate::matching::LinkColour;

/// Filters and paging of `GET /v1/links`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinkFilters {
    /// white, yellow, green or red.
    colour: Option<LinkColour>,
    /// Links touching a record of this system.
    system: Option<SourceSystem>,
    /// The responsible authority, e.g. `sirene:IT`, `etias_unit`.
    authority: Option<String>,
    /// true: only yellow links past their deadline; false: all others.
    overdue: Option<bool>,
    /// Page size, 1–500 (default 50).
    limit: Option<i64>,
    /// Links to skip (default 0).
    offset: Option<i64>,
}

impl FromRequestParts<AppState> for LinkFilters {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HubError> {
        let Query(filters) = Query::<Self>::from_request_parts(parts, state)
            .await
            // serde's messages can quote the offending value: say what is expected instead.
            .map_err(|_| {
                HubError::InvalidQuery(
                    "expected colour (white|yellow|green|red), system (ees|etias|vis|sis|ecris-tcn), \
                     authority, overdue (true|false), limit and offset (integers)",
                )
            })?;
        Ok(filters)
    }
}

impl From<LinkFilters> for LinkFilter {
    fn from(filters: LinkFilters) -> Self {
        Self {
            colour: filters.colour,
            system: filters.system,
            authority: filters.authority,
            overdue: filters.overdue,
            limit: filters.limit.unwrap_or(50),
            offset: filters.offset.unwrap_or(0),
        }
    }
}

/// The caller's verification queue, oldest first, filtered and paged: the links whose
/// responsible authority the caller acts for (any colour). Other links reach a caller only
/// inside a record it may read.
#[utoipa::path(
    get,
    path = "/v1/links",
    tag = "links",
    params(LinkFilters),
    responses(
        (status = 200, description = "One page of links", body = LinkPage),
        BadRequest,
        Refused,
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    filters: LinkFilters,
) -> Result<Json<LinkPage>, HubError> {
    state
        .hub
        .links
        .queue(&caller, filters.into())
        .await
        .map(Json)
}

/// A link's identity confirmation file: both records, colour, evidence and scores, the rule
/// that fired, the responsible authority, deadline and verification history.
#[utoipa::path(
    get,
    path = "/v1/links/{id}",
    tag = "links",
    params(("id" = String, Path, description = "The link's id")),
    responses(
        (status = 200, description = "The identity confirmation file", body = ConfirmationFile),
        Refused,
        NotFound,
    )
)]
pub(super) async fn read(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ConfirmationFile>, HubError> {
    state.hub.links.file(&caller, &id).await.map(Json)
}

/// Decide a link as its responsible authority: white (same person, legitimately), green
/// (different persons) or red (identity fraud), with a justification; the token names the
/// verifier. Refused when the link already has that colour.
#[utoipa::path(
    post,
    path = "/v1/links/{id}/verification",
    tag = "links",
    params(("id" = String, Path, description = "The link's id")),
    request_body = Verification,
    responses(
        (status = 200, description = "Decided: the updated identity confirmation file", body = ConfirmationFile),
        BadRequest,
        Refused,
        NotFound,
        Conflict,
        Unprocessable,
    )
)]
pub(super) async fn verify(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    decision: JsonBody<Verification>,
) -> Result<Json<ConfirmationFile>, HubError> {
    state
        .hub
        .links
        .verify(&caller, &id, decision.0)
        .await
        .map(Json)
}
