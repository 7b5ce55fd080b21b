//! Biometric routes: 1:N search of the shared biometric matching service, and the state of
//! its indexes.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::responses::{BadRequest, Refused, Unavailable, Unprocessable};
use crate::core::{BiometricSearch, BiometricSearchAnswer, IndexStatus};
use crate::error::HubError;

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
        BadRequest,
        Refused,
        Unprocessable,
        Unavailable,
    )
)]
pub(super) async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    search: JsonBody<BiometricSearch>,
) -> Result<Json<BiometricSearchAnswer>, HubError> {
    state
        .hub
        .portal
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
        Refused,
        Unavailable,
    )
)]
pub(super) async fn indexes(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<IndexStatus>>, HubError> {
    state.hub.operations.index_status(&caller).await.map(Json)
}
