//! Biometric routes: 1:N search of the shared biometric matching service, and the state of
//! its indexes.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{Caller, JsonBody};
use crate::core::{BiometricSearch, BiometricSearchAnswer, IndexStatus};
use crate::error::{HubError, Problem};

/// 1:N search for a declared purpose: the records whose templates are nearest a probe,
/// across both partitions; only records the caller may read for that purpose are answered
/// (an identity check needs a live capture and never answers anyone who may be under 12).
#[utoipa::path(
    post,
    path = "/v1/biometrics/search",
    tag = "biometrics",
    request_body = BiometricSearch,
    responses(
        (status = 200, description = "Records best first, each with its best similarity", body = BiometricSearchAnswer),
        (status = 400, description = "Not a search document", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not declare the purpose, or reads no system for it", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unregistered algorithm, unusable probe, or no live capture for an identity check", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The indexes are still being built", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    search: JsonBody<BiometricSearch>,
) -> Result<Json<BiometricSearchAnswer>, HubError> {
    state
        .hub
        .search_biometric(&caller, search.0)
        .await
        .map(Json)
}

/// Each index's template count beside the store's count of templates it should hold.
#[utoipa::path(
    get,
    path = "/v1/biometrics/indexes",
    tag = "biometrics",
    responses(
        (status = 200, description = "One entry per partition and algorithm", body = Vec<IndexStatus>),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators (the operate duty) only", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The indexes are still being built", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn indexes(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<IndexStatus>>, HubError> {
    state.hub.index_status(&caller).await.map(Json)
}
