//! The REST surface: routes (each registered with its OpenAPI docs), extractors that turn
//! requests into core arguments, and the layer that makes every error problem+json.

mod access_requests;
mod admin;
mod audit;
mod biometrics;
mod console;
mod extract;
mod health;
mod links;
mod problem;
mod records;
mod responses;
mod search;
mod serve;
mod session;
mod statistics;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::access::TokenAuthority;
use crate::core::Hub;
use crate::error::HubError;
pub use problem::{PROBLEM_JSON, Problem};
pub use serve::serve;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub tokens: Arc<TokenAuthority>,
    pub max_body_bytes: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "interop-hub",
        description = "Links the identities held by separate border and law-enforcement systems.",
        license(name = "EUPL-1.2", identifier = "EUPL-1.2")
    ),
    tags(
        (name = "search", description = "The search portal: one query across every system the caller may query"),
        (name = "records", description = "Source systems push, read and delete records in the common identity repository"),
        (name = "links", description = "The multiple-identity detector's links and their manual verification"),
        (name = "biometrics", description = "The shared biometric matching service: 1:N search and index state"),
        (name = "access", description = "Full-access requests after a hit flag, and their time-boxed grants"),
        (name = "admin", description = "Access rules and role assignments, changed in real time and simulated first; revocations of tokens"),
        (name = "session", description = "The caller's own token, given up before it expires"),
        (name = "audit", description = "The tamper-evident audit log, for supervisors"),
        (name = "statistics", description = "Anonymised statistics and the data-quality report"),
        (name = "operations", description = "Liveness, readiness and metrics")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Every route but the health checks needs `Authorization: Bearer <token>`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A token from `interop-hub token`"))
                    .build(),
            ),
        );
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(search::search))
        .routes(routes!(records::ingest))
        .routes(routes!(records::read, records::delete))
        .routes(routes!(links::list))
        .routes(routes!(links::read))
        .routes(routes!(links::verify))
        .routes(routes!(biometrics::search))
        .routes(routes!(biometrics::indexes))
        .routes(routes!(access_requests::file, access_requests::list))
        .routes(routes!(access_requests::decide))
        .routes(routes!(admin::list, admin::add))
        .routes(routes!(admin::remove))
        .routes(routes!(admin::simulate))
        .routes(routes!(admin::revocations, admin::revoke))
        .routes(routes!(admin::changes))
        .routes(routes!(admin::decide_change))
        .routes(routes!(session::sign_out))
        .routes(routes!(audit::log))
        .routes(routes!(statistics::stats))
        .routes(routes!(statistics::data_quality))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document, generated from the registered routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// The OpenAPI document as committed at `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

pub fn router(state: AppState) -> Router {
    let (routes, openapi) = api().split_for_parts();
    // The validator badge would call out to swagger.io: the docs must load nothing external.
    let docs = SwaggerUi::new("/docs")
        .url("/openapi.json", openapi)
        .config(Config::from("/openapi.json").validator_url("none"));
    routes
        .merge(console::routes())
        .merge(docs)
        .fallback(|| async { HubError::RouteNotFound })
        .method_not_allowed_fallback(|| async { HubError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(CatchPanicLayer::custom(|_| {
            Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// A request's span names its method and route template — never the path as sent, which
/// carries record ids.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |path| path.as_str());
    tracing::info_span!("request", method = %request.method(), route)
}

/// Counts every request by method, route template and status, and times it. Applied to
/// the routes (after routing), so the template is known; unrouted requests are `unmatched`.
async fn count_requests(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.hub.operations.metrics().http(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Framework-made error responses (plain-text rejections, bare statuses) become problem
/// documents; their original bodies are dropped, since they may quote the request.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    // Problem documents, and the console's own HTML error pages, are made on purpose.
    let is_made = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| {
            ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes())
                || ct.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_made {
        return response;
    }
    let mut problem = Problem::for_status(status).into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    problem
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_openapi_matches_the_code() {
        let committed = include_str!("../../../openapi/openapi.json");
        assert!(
            committed == super::openapi_json(),
            "openapi/openapi.json has drifted from the code: regenerate it with \
             `cargo run -p interop-hub-cli -- openapi > openapi/openapi.json`"
        );
    }
}
