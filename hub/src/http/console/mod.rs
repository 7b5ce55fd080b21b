//! The web console at `/console` for administrators, supervisors and verifiers: server-
//! rendered pages over the same core operations as the API, plain forms and inline SVG
//! plots — no script and nothing loaded from elsewhere (`Content-Security-Policy: 'self'`).
//! Signing in stores the bearer token in an HttpOnly, SameSite=Strict cookie scoped to
//! `/console`; every page is rendered with the signed-in principal's access.

mod charts;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;

use super::extract::authenticated;
use super::{AppState, Problem};
use crate::access::{Access, HubDuty, Principal, Purpose, Role, RuleSpec};
use crate::core::{
    AccessRequestDecision, LinkFilter, PolicyChange, PolicyChangeDecision, PolicyChangeStatus,
    RuleChange, Simulation, Verification,
};
use crate::error::HubError;
use crate::matching::LinkColour;
use pages::{Section, SimulationQuery};

const COOKIE: &str = "hub_session";
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(home))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/access", get(access_page))
        .route("/console/access/rules", post(add_rule))
        .route("/console/access/rules/{id}/revoke", post(revoke_rule))
        .route("/console/access/requests/{id}/decide", post(decide_request))
        .route("/console/access/changes/{id}/decide", post(decide_change))
        .route("/console/verification", get(queue))
        .route(
            "/console/verification/{id}",
            get(link_page).post(decide_link),
        )
        .route("/console/assets/console.css", get(stylesheet))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(same_origin_posts))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` with form posts, which the
    // same-origin check must refuse.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages carry what the principal may see, personal data included: never cached.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A form post must come from the console's own origin (with SameSite=Strict cookies this
/// closes cross-site request forgery).
async fn same_origin_posts(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() == axum::http::Method::POST {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if let (Some(host), Some(origin)) = (host, origin) {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if origin_host != host {
                tracing::warn!(
                    origin,
                    host,
                    "console form post from another origin refused"
                );
                return error_page(HubError::Forbidden);
            }
        }
    }
    next.run(request).await
}

/// The signed-in principal and what the policy lets them do now.
struct Session {
    principal: Principal,
    access: Arc<Access>,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let token = session_token(&parts.headers).ok_or_else(to_sign_in)?;
        let principal = authenticated(state, Ok(&token), "/console")
            .await
            .map_err(|error| match error {
                HubError::Unauthenticated(_) => to_sign_in(),
                other => error_page(other),
            })?
            .principal;
        let access = state.hub.access(&principal).await.map_err(error_page)?;
        Ok(Self { principal, access })
    }
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_owned)
        })
}

fn error_page(error: HubError) -> Response {
    let problem = Problem::from(&error);
    let page = pages::layout(
        &problem.title,
        None,
        &[],
        None,
        Some(&problem.detail),
        maud::html! {
            p { a href="/console" { "Back to the console" } }
        },
    );
    (problem.status_code(), page).into_response()
}

fn page(
    session: &Session,
    title: &str,
    current: Section,
    notice: Option<&str>,
    body: Markup,
) -> Response {
    let nav = pages::sections(&session.access);
    if !nav.iter().any(|(section, _, _)| *section == current) {
        return error_page(HubError::Forbidden);
    }
    pages::layout(
        title,
        Some(&session.principal),
        &nav,
        Some(current),
        notice,
        body,
    )
    .into_response()
}

/// `?done=…` after a change: a fixed message per outcome, never text from the URL.
#[derive(Debug, Deserialize)]
struct Done {
    done: Option<String>,
}

impl Done {
    fn notice(&self) -> Option<&'static str> {
        Some(match self.done.as_deref()? {
            "added" => "Rule added: it applies to the very next request.",
            "revoked" => "Rule revoked: the very next request is decided without it.",
            "approved" => "Change approved: it applies to the very next request.",
            "withheld" => "Change refused: nothing changed.",
            "proposed" => {
                "Change proposed: it widens access to personal data, so it waits for a second \
                 administrator's approval."
            }
            "granted" => "Access granted: it applies at once and lapses by itself.",
            "refused" => "Access request refused.",
            "decided" => "Decision recorded.",
            _ => return None,
        })
    }
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        pages::STYLESHEET,
    )
}

async fn sign_in_page() -> Markup {
    pages::sign_in(None)
}

#[derive(Debug, Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(State(state): State<AppState>, Form(form): Form<SignIn>) -> Response {
    let token = form.token.trim();
    match authenticated(&state, Ok(token), "/console/sign-in").await {
        Ok(_) => {
            let cookie = format!("{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict");
            let mut response = Redirect::to("/console").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error @ HubError::Unauthenticated(_)) => (
            StatusCode::UNAUTHORIZED,
            pages::sign_in(Some(&error.to_string())),
        )
            .into_response(),
        Err(other) => error_page(other),
    }
}

/// Revokes the session's token, so that it is refused everywhere from now on (a copy of it
/// included), then forgets the cookie. A token the hub refuses already needs no revoking; a
/// revocation that cannot be stored leaves the session as it was, and says so.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        match authenticated(&state, Ok(&token), "/console/sign-out").await {
            Ok(verified) => {
                if let Err(error) = state.hub.administration.sign_out(&verified).await {
                    return error_page(error);
                }
            }
            Err(HubError::Unauthenticated(_)) => {}
            Err(other) => return error_page(other),
        }
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "hub_session=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

async fn home(State(state): State<AppState>, session: Session) -> Response {
    if !session.access.has_duty(HubDuty::Statistics) {
        let nav = pages::sections(&session.access);
        return pages::layout(
            "Console",
            Some(&session.principal),
            &nav,
            None,
            None,
            pages::home(&nav),
        )
        .into_response();
    }
    match state.hub.statistics.dashboard(&session.principal).await {
        Ok(dashboard) => page(
            &session,
            "Dashboard",
            Section::Dashboard,
            None,
            pages::dashboard(&dashboard),
        ),
        Err(error) => error_page(error),
    }
}

/// The access page's query: a notice after a change, and the simulator's fields.
#[derive(Debug, Deserialize)]
struct AccessParams {
    done: Option<String>,
    subject: Option<String>,
    agency: Option<String>,
    member_state: Option<String>,
    roles: Option<String>,
}

async fn access_page(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<AccessParams>,
) -> Response {
    let done = Done {
        done: params.done.clone(),
    };
    let simulate = params.subject.clone().map(|subject| SimulationQuery {
        subject,
        agency: params.agency.clone().unwrap_or_default(),
        member_state: params.member_state.clone().unwrap_or_default(),
        roles: params.roles.clone().unwrap_or_default(),
    });
    let result = async {
        let rules = state
            .hub
            .administration
            .policy_rules(&session.principal)
            .await?;
        let pending = state
            .hub
            .administration
            .access_requests(&session.principal, Some("pending"))
            .await?;
        let changes = state
            .hub
            .administration
            .policy_changes(&session.principal, Some(PolicyChangeStatus::Pending))
            .await?;
        let simulation = match &simulate {
            Some(query) => {
                let roles = query
                    .roles
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(|r| r.parse::<Role>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| HubError::InvalidRequest(format!("roles: {m}")))?;
                let principal = Principal {
                    subject: query.subject.trim().to_owned(),
                    agency: query.agency.trim().to_owned(),
                    member_state: query.member_state.trim().to_owned(),
                    roles,
                };
                let simulation = Simulation {
                    principal,
                    systems: None,
                    add: Vec::new(),
                    remove: Vec::new(),
                };
                Some(
                    state
                        .hub
                        .administration
                        .simulate(&session.principal, simulation)
                        .await?,
                )
            }
            None => None,
        };
        Ok::<_, HubError>((rules, pending, changes, simulation))
    }
    .await;
    match result {
        Ok((rules, pending, changes, simulation)) => {
            let shown = simulate.as_ref().zip(simulation.as_ref());
            page(
                &session,
                "Access rights",
                Section::Access,
                done.notice(),
                pages::access(&rules, &pending, &changes, shown),
            )
        }
        Err(error) => error_page(error),
    }
}

#[derive(Debug, Deserialize)]
struct AddRule {
    kind: String,
    who: String,
    #[serde(default)]
    system: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    hours: String,
    reason: String,
}

async fn add_rule(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<AddRule>,
) -> Response {
    let (subject, system, action) = (
        form.who.trim().to_owned(),
        form.system.trim().to_owned(),
        form.action.trim().to_owned(),
    );
    let rule = match form.kind.as_str() {
        "assignment" => RuleSpec::Assignment {
            member: subject,
            role: form.role.trim().to_owned(),
        },
        "denial" => RuleSpec::Denial {
            subject,
            system,
            action,
        },
        _ => RuleSpec::Permission {
            subject,
            system,
            action,
        },
    };
    let expires_at = match form.hours.trim() {
        "" => None,
        hours => match hours.parse::<i64>() {
            Ok(h) if h > 0 => Some(state.hub.now() + time::Duration::hours(h)),
            _ => {
                return error_page(HubError::InvalidRequest(
                    "hours: a whole number of hours".to_owned(),
                ));
            }
        },
    };
    let change = PolicyChange {
        rule,
        reason: form.reason,
        expires_at,
    };
    match state
        .hub
        .administration
        .add_policy_rule(&session.principal, change)
        .await
    {
        Ok(RuleChange::Made(_)) => Redirect::to("/console/access?done=added").into_response(),
        Ok(RuleChange::Pending(_)) => Redirect::to("/console/access?done=proposed").into_response(),
        Err(error) => error_page(error),
    }
}

#[derive(Debug, Deserialize)]
struct Reason {
    reason: String,
}

async fn revoke_rule(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<Reason>,
) -> Response {
    match state
        .hub
        .administration
        .remove_policy_rule(&session.principal, id, &form.reason)
        .await
    {
        Ok(RuleChange::Made(_)) => Redirect::to("/console/access?done=revoked").into_response(),
        Ok(RuleChange::Pending(_)) => Redirect::to("/console/access?done=proposed").into_response(),
        Err(error) => error_page(error),
    }
}

#[derive(Debug, Deserialize)]
struct Decide {
    grant: bool,
    reason: String,
    hours: Option<u32>,
}

async fn decide_request(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Decide>,
) -> Response {
    let decision = AccessRequestDecision {
        grant: form.grant,
        reason: form.reason,
        hours: form.hours,
    };
    match state
        .hub
        .administration
        .decide_access_request(&session.principal, &id, decision)
        .await
    {
        Ok(request) if request.status == "granted" => {
            Redirect::to("/console/access?done=granted").into_response()
        }
        Ok(_) => Redirect::to("/console/access?done=refused").into_response(),
        Err(error) => error_page(error),
    }
}

#[derive(Debug, Deserialize)]
struct DecideChange {
    approve: bool,
    reason: String,
}

async fn decide_change(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<DecideChange>,
) -> Response {
    let decision = PolicyChangeDecision {
        approve: form.approve,
        reason: form.reason,
    };
    match state
        .hub
        .administration
        .decide_policy_change(&session.principal, id, decision)
        .await
    {
        Ok(change) if change.status == "approved" => {
            Redirect::to("/console/access?done=approved").into_response()
        }
        Ok(_) => Redirect::to("/console/access?done=withheld").into_response(),
        Err(error) => error_page(error),
    }
}

async fn queue(State(state): State<AppState>, session: Session) -> Response {
    let query = LinkFilter {
        colour: Some(LinkColour::Yellow),
        limit: 500,
        ..LinkFilter::default()
    };
    match state.hub.links.queue(&session.principal, query).await {
        Ok(page_of_links) => page(
            &session,
            "Verification queue",
            Section::Verification,
            None,
            pages::queue(&page_of_links.links, state.hub.now()),
        ),
        Err(error) => error_page(error),
    }
}

async fn link_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let file = match state.hub.links.file(&session.principal, &id).await {
        Ok(file) => file,
        Err(error) => return error_page(error),
    };
    let mut records = Vec::new();
    for reference in &file.link.records {
        // A record the verifier may not read is shown as such, not as an error.
        records.push(
            state
                .hub
                .records
                .record(
                    &session.principal,
                    Purpose::MultipleIdentityVerification,
                    reference.system,
                    &reference.source_id,
                )
                .await
                .ok(),
        );
    }
    page(
        &session,
        "Identity confirmation file",
        Section::Verification,
        done.notice(),
        pages::link_file(
            &file,
            [records[0].as_ref(), records[1].as_ref()],
            state.hub.now(),
        ),
    )
}

#[derive(Debug, Deserialize)]
struct LinkDecision {
    colour: LinkColour,
    justification: String,
}

async fn decide_link(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<LinkDecision>,
) -> Response {
    let decision = Verification {
        colour: form.colour,
        justification: form.justification,
    };
    match state
        .hub
        .links
        .verify(&session.principal, &id, decision)
        .await
    {
        Ok(_) => Redirect::to(&format!("/console/verification/{id}?done=decided")).into_response(),
        Err(error) => error_page(error),
    }
}
