//! Extractors that turn request parts into the core's typed arguments, failing as `HubError`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use connectors::SourceSystem;

use super::AppState;
use crate::access::{Principal, VerifiedToken};
use crate::error::HubError;

/// The authenticated caller: a bearer token the hub signed, not expired.
#[derive(Debug)]
pub(super) struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HubError> {
        let Credential(token) = Credential::from_request_parts(parts, state).await?;
        Ok(Self(token.principal))
    }
}

/// The authenticated caller's token itself: for giving it up.
#[derive(Debug)]
pub(super) struct Credential(pub VerifiedToken);

impl FromRequestParts<AppState> for Credential {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HubError> {
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or("", axum::extract::MatchedPath::as_str);
        authenticated(state, bearer_token(parts), route)
            .await
            .map(Self)
    }
}

/// The token `token` is (or of its absence, the refusal), if the hub signed it and admits
/// it now ([`crate::core::Hub::admit`]); a refusal for want of a valid credential is
/// audited, naming `route`.
pub(super) async fn authenticated(
    state: &AppState,
    token: Result<&str, HubError>,
    route: &str,
) -> Result<VerifiedToken, HubError> {
    let admitted = match token.and_then(|token| state.tokens.verify(token)) {
        Ok(verified) => state.hub.admit(verified).await,
        Err(refused) => Err(refused),
    };
    if let Err(HubError::Unauthenticated(reason)) = &admitted {
        state.hub.refused_authentication(route, reason);
    }
    admitted
}

/// The bearer token of `Authorization`.
fn bearer_token(parts: &Parts) -> Result<&str, HubError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(HubError::Unauthenticated("a bearer token is required"))?;
    header
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or(HubError::Unauthenticated(
            "expected Authorization: Bearer <token>",
        ))
}

async fn path_params(
    parts: &mut Parts,
    state: &AppState,
) -> Result<HashMap<String, String>, HubError> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|_| HubError::RouteNotFound)?;
    Ok(params)
}

/// `{system}` in the path.
#[derive(Debug)]
pub(super) struct System(pub SourceSystem);

impl FromRequestParts<AppState> for System {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HubError> {
        let params = path_params(parts, state).await?;
        let system = params.get("system").ok_or(HubError::RouteNotFound)?;
        Ok(Self(system.parse()?))
    }
}

/// `{system}/records/{source_id}` in the path.
#[derive(Debug)]
pub(super) struct RecordKey {
    pub system: SourceSystem,
    pub source_id: String,
}

impl FromRequestParts<AppState> for RecordKey {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HubError> {
        let mut params = path_params(parts, state).await?;
        let system = params
            .get("system")
            .ok_or(HubError::RouteNotFound)?
            .parse()?;
        let source_id = params.remove("source_id").ok_or(HubError::RouteNotFound)?;
        Ok(Self { system, source_id })
    }
}

/// A native record body with the media type it was sent as.
#[derive(Debug)]
pub(super) struct NativeBody {
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

impl FromRequest<AppState> for NativeBody {
    type Rejection = HubError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, HubError> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    HubError::PayloadTooLarge {
                        limit: state.max_body_bytes,
                    }
                } else if timed_out(&rejection) {
                    HubError::BodyTimeout
                } else {
                    HubError::UnreadableBody
                }
            })?;
        Ok(Self {
            content_type,
            bytes,
        })
    }
}

/// Whether reading the body failed because its deadline passed (the server's body read
/// timeout), somewhere down the rejection's chain of causes.
fn timed_out(rejection: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// A JSON request body whose rejections are problem documents naming what was wrong.
#[derive(Debug)]
pub(super) struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = HubError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, HubError> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state)
            .await
            .map_err(|rejection| match rejection.status() {
                _ if timed_out(&rejection) => HubError::BodyTimeout,
                StatusCode::UNSUPPORTED_MEDIA_TYPE => HubError::UnsupportedMediaType {
                    expected: "application/json",
                },
                StatusCode::PAYLOAD_TOO_LARGE => HubError::PayloadTooLarge {
                    limit: state.max_body_bytes,
                },
                // serde's messages can quote the offending value: name the kind of fault.
                StatusCode::BAD_REQUEST => HubError::InvalidBody("not well-formed JSON"),
                _ => HubError::InvalidBody("a field is missing, unknown or of the wrong type"),
            })?;
        Ok(Self(value))
    }
}

/// `?purpose=…`: why the caller reads; the purpose's rules apply to the answer.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeclaredPurpose {
    /// A purpose the caller may declare: border_check, visa_examination,
    /// travel_authorisation, identity_check, serious_crime, alert_handling,
    /// criminal_records, multiple_identity_verification or record_management.
    pub purpose: crate::access::Purpose,
}

impl FromRequestParts<AppState> for DeclaredPurpose {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HubError> {
        let axum::extract::Query(declared) =
            axum::extract::Query::<Self>::from_request_parts(parts, state)
                .await
                // serde's messages can quote the offending value: say what is expected.
                .map_err(|_| {
                    HubError::InvalidQuery(
                        "expected purpose, one of the purposes the caller may declare \
                         (e.g. purpose=border_check)",
                    )
                })?;
        Ok(declared)
    }
}
