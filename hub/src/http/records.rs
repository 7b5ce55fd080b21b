//! Record routes: source systems push, read back and delete records.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::{Caller, DeclaredPurpose, NativeBody, RecordKey, System};
use super::responses::{
    BadRequest, Conflict, NotFound, Refused, TooLarge, Unavailable, Unprocessable,
    UnsupportedMediaType,
};
use crate::core::{IngestOutcome, IngestReport, RecordView};
use crate::error::HubError;

impl IntoResponse for IngestReport {
    fn into_response(self) -> Response {
        let status = match self.outcome {
            IngestOutcome::Created => StatusCode::CREATED,
            IngestOutcome::Replayed | IngestOutcome::Updated => StatusCode::OK,
        };
        (status, Json(self)).into_response()
    }
}

/// Push one record in its source system's native format.
///
/// Idempotent on (system, source id, version): the first version creates (201), the same
/// version again is a harmless replay (200, the stored record), a higher version replaces
/// the record (200), a lower one is refused (409). A refused record stores nothing.
#[utoipa::path(
    post,
    path = "/v1/systems/{system}/records",
    tag = "records",
    params(("system" = String, Path, description = "ees, etias, vis, sis or ecris-tcn")),
    request_body(
        description = "The native record: JSON for ees, etias and sis; XML for vis and ecris-tcn",
        content((Object = "application/json"), (String = "application/xml"))
    ),
    responses(
        (status = 201, description = "Created", body = IngestReport),
        (status = 200, description = "Replayed or updated", body = IngestReport),
        BadRequest,
        Refused,
        NotFound,
        Conflict,
        TooLarge,
        UnsupportedMediaType,
        Unprocessable,
        Unavailable,
    )
)]
pub(super) async fn ingest(
    State(state): State<AppState>,
    Caller(caller): Caller,
    System(system): System,
    body: NativeBody,
) -> Result<IngestReport, HubError> {
    state
        .hub
        .records
        .ingest(&caller, system, body.content_type.as_deref(), &body.bytes)
        .await
}

/// Read a record as the hub's common JSON.
#[utoipa::path(
    get,
    path = "/v1/systems/{system}/records/{source_id}",
    tag = "records",
    params(
        ("system" = String, Path, description = "ees, etias, vis, sis or ecris-tcn"),
        ("source_id" = String, Path, description = "The record's id in its source system"),
        DeclaredPurpose
    ),
    responses(
        (status = 200, description = "The stored record, with the field groups the caller may read for the purpose", body = RecordView),
        BadRequest,
        Refused,
        NotFound,
    )
)]
pub(super) async fn read(
    State(state): State<AppState>,
    Caller(caller): Caller,
    key: RecordKey,
    declared: DeclaredPurpose,
) -> Result<Json<RecordView>, HubError> {
    state
        .hub
        .records
        .record(&caller, declared.purpose, key.system, &key.source_id)
        .await
        .map(Json)
}

/// Delete a record with its names, documents and templates, as its source system did.
#[utoipa::path(
    delete,
    path = "/v1/systems/{system}/records/{source_id}",
    tag = "records",
    params(
        ("system" = String, Path, description = "ees, etias, vis, sis or ecris-tcn"),
        ("source_id" = String, Path, description = "The record's id in its source system")
    ),
    responses(
        (status = 204, description = "Deleted"),
        Refused,
        NotFound,
        Unavailable,
    )
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    key: RecordKey,
) -> Result<StatusCode, HubError> {
    state
        .hub
        .records
        .delete(&caller, key.system, &key.source_id)
        .await
        .map(|()| StatusCode::NO_CONTENT)
}
