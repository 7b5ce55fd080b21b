//! The search portal's route: one query across every system the caller may query.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::responses::{BadRequest, Refused, Unavailable, Unprocessable};
use crate::core::{SearchAnswer, SearchRequest};
use crate::error::HubError;

/// Search all systems at once by identity data and/or live biometrics. Each system the
/// caller may query answers with records (only the permitted field groups, only the links
/// the caller may see) or, for hit-flag access, `{system, hit}` alone; systems the caller
/// may not know about are absent.
#[utoipa::path(
    post,
    path = "/v1/search",
    tag = "search",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "One entry per system queried", body = SearchAnswer),
        BadRequest,
        Refused,
        Unprocessable,
        Unavailable,
    )
)]
pub(super) async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    request: JsonBody<SearchRequest>,
) -> Result<Json<SearchAnswer>, HubError> {
    state.hub.portal.search(&caller, request.0).await.map(Json)
}
