//! Statistics and data-quality routes.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::Caller;
use super::responses::{BadRequest, Refused};
use crate::core::{DataQuality, Statistics};
use crate::error::HubError;

/// Output format of `GET /v1/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsFormat {
    /// `json` (default) or `csv`; `Accept: text/csv` also asks for CSV.
    format: Option<String>,
}

/// Anonymised counts (in the spirit of the EU's CRRS), as one snapshot a UTC day taken at
/// its first request (`as_of`): records in all, per system, nationality, age band and hour
/// stored; links per colour and day made; the verification backlog (per authority, overdue
/// and within deadline); refused and flagged records. Every count from 1 to 9 is withheld
/// (null in JSON, `<10` in CSV), and so is any count that would let one be worked out from
/// the published totals: wherever a total is published, the withheld counts under it are
/// at least two and together at least 10.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "statistics",
    params(StatsFormat),
    responses(
        (status = 200, description = "The counts", body = Statistics, content_type = "application/json"),
        (status = 200, description = "The counts as CSV: category,system,key,period,count", body = String, content_type = "text/csv"),
        BadRequest,
        Refused,
    )
)]
pub(super) async fn stats(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    Query(format): Query<StatsFormat>,
) -> Result<Response, HubError> {
    let wants_csv = match format.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(_) => return Err(HubError::InvalidQuery("format is json or csv")),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv")),
    };
    let statistics = state.hub.statistics.statistics(&caller).await?;
    Ok(if wants_csv {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            )],
            statistics.to_csv(),
        )
            .into_response()
    } else {
        Json(statistics).into_response()
    })
}

/// Per system: completeness of stored records, validity of ingests (accepted against
/// refused), refusals and non-blocking findings by rule; and the ten most frequent issues.
#[utoipa::path(
    get,
    path = "/v1/data-quality",
    tag = "statistics",
    responses(
        (status = 200, description = "The report", body = DataQuality),
        Refused,
    )
)]
pub(super) async fn data_quality(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<DataQuality>, HubError> {
    state.hub.statistics.data_quality(&caller).await.map(Json)
}
