//! The refusals a route can answer with, each an RFC 9457 problem document, described once
//! and listed by name in the routes' OpenAPI annotations.
#![expect(
    dead_code,
    reason = "each type is an OpenAPI description; responses are built from `HubError`"
)]

use utoipa::IntoResponses;

use super::problem::Problem;

/// Not a well-formed document (record, search, rule, decision, filter), or a missing or
/// unknown purpose.
#[derive(Debug, IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
pub(super) struct BadRequest(Problem);

/// What every route behind a bearer token can answer: no valid token (401), or a caller
/// whose roles do not allow the operation, the system or the declared purpose (403).
#[derive(Debug, IntoResponses)]
pub(super) enum Refused {
    /// No valid bearer token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// The caller's roles do not allow this operation, this system or the declared purpose.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
}

/// No such resource, or one the caller may not see for the declared purpose: the two get
/// the same answer.
#[derive(Debug, IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
pub(super) struct NotFound(Problem);

/// At odds with what the hub holds: an older or different version of a record, a link
/// already of that colour, a request decided already, a rule that exists.
#[derive(Debug, IntoResponses)]
#[response(status = 409, content_type = "application/problem+json")]
pub(super) struct Conflict(Problem);

/// The body is larger than the hub accepts.
#[derive(Debug, IntoResponses)]
#[response(status = 413, content_type = "application/problem+json")]
pub(super) struct TooLarge(Problem);

/// Not the system's media type.
#[derive(Debug, IntoResponses)]
#[response(status = 415, content_type = "application/problem+json")]
pub(super) struct UnsupportedMediaType(Problem);

/// Well-formed, but a rule of its content is broken (every offending field of a record is
/// listed): a missing reason or justification, an unusable probe, a value out of range.
#[derive(Debug, IntoResponses)]
#[response(status = 422, content_type = "application/problem+json")]
pub(super) struct Unprocessable(Problem);

/// A database or the indexes are not available (still being built, out of reach, out of
/// service); retry after `Retry-After`.
#[derive(Debug, IntoResponses)]
#[response(status = 503, content_type = "application/problem+json")]
pub(super) struct Unavailable(Problem);
