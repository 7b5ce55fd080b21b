//! Record routes: source systems push, read back and delete records.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::{Caller, DeclaredPurpose, NativeBody, RecordKey, System};
use crate::core::{IngestReport, RecordView};
use crate::error::{HubError, Problem};
use crate::store::UpsertOutcome;

impl IntoResponse for IngestReport {
    fn into_response(self) -> Response {
        let status = match self.outcome {
            UpsertOutcome::Created => StatusCode::CREATED,
            UpsertOutcome::Replayed | UpsertOutcome::Updated => StatusCode::OK,
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
        (status = 400, description = "Not a well-formed record", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not write to this system", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown system", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Older than the stored version, or the stored version with other content", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not the system's media type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Field rules broken; every field listed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Indexes still being built, or a database out of reach", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ingest(
    State(state): State<AppState>,
    Caller(caller): Caller,
    System(system): System,
    body: NativeBody,
) -> Result<IngestReport, HubError> {
    state
        .hub
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
        (status = 400, description = "No purpose, or not one the hub knows", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not declare that purpose", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record or system, or one the caller may not read for the purpose (the same answer)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    Caller(caller): Caller,
    key: RecordKey,
    declared: DeclaredPurpose,
) -> Result<Json<RecordView>, HubError> {
    state
        .hub
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
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not write to this system", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record or system", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Indexes still being built, or a database out of reach", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    key: RecordKey,
) -> Result<StatusCode, HubError> {
    state
        .hub
        .delete(&caller, key.system, &key.source_id)
        .await
        .map(|()| StatusCode::NO_CONTENT)
}
