//! The search portal's route: one query across every system the caller may query.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{Caller, JsonBody};
use crate::core::{SearchAnswer, SearchRequest};
use crate::error::{HubError, Problem};

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
        (status = 400, description = "Not a search document", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may query no system", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Nothing to search by, a name without a date of birth, an identity check without biometrics, or an unusable probe", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The indexes are still being built", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    request: JsonBody<SearchRequest>,
) -> Result<Json<SearchAnswer>, HubError> {
    state.hub.search(&caller, request.0).await.map(Json)
}
