//! The caller's own credential: giving it up before it expires.

use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::extract::Credential;
use super::responses::Refused;
use crate::error::HubError;

/// Sign out: revoke the token this request carries. It is refused from the very next
/// request, on every route and the console, wherever a copy of it is.
#[utoipa::path(
    post,
    path = "/v1/session/sign-out",
    tag = "session",
    responses(
        (status = 204, description = "Revoked: the token is refused from now on"),
        Refused,
    )
)]
pub(super) async fn sign_out(
    State(state): State<AppState>,
    Credential(token): Credential,
) -> Result<StatusCode, HubError> {
    state
        .hub
        .administration
        .sign_out(&token)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
