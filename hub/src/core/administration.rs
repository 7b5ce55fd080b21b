//! Administration: access rules changed in real time (and simulated first), access
//! requests after a hit flag with their time-boxed grants, and the audit log's review.

use connectors::SourceSystem;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use std::sync::Arc;

use super::guard::{Gate, Operation};
use super::{AccessRequestView, AuditEntryView};
use crate::access::{
    Answer, CheckedRule, HubDuty, Member, PolicyEngine, PolicyRule, Principal, ProposedChanges,
    Revocation, RevocationTarget, RuleChangeKind, RuleSpec, VerifiedToken, checked_principal,
    full_access_rules,
};
use crate::clock::Clock;
use crate::error::HubError;
use crate::store::{AccessRequest, ControlStore, PolicyChangeRow};

/// Longest a grant may last.
const MAX_GRANT_HOURS: u32 = 24 * 30;
const AUDIT_PAGE: i64 = 1_000;

/// A rule to add, and why.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    pub rule: RuleSpec,
    /// Why: kept with the rule and in the audit log.
    pub reason: String,
    /// Makes the rule time-boxed: it lapses by itself at this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// What came of a change to the rules.
#[derive(Debug, Clone)]
pub enum RuleChange {
    /// Made: in force from the next request (a removal: the rule as it was).
    Made(PolicyRule),
    /// Widens access to personal data: waits for a second administrator.
    Pending(PolicyChangeView),
}

/// A change to the rules proposed for four eyes, and its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PolicyChangeView {
    pub id: i64,
    /// `add` or `remove`.
    #[schema(example = "add")]
    pub change: String,
    pub rule: RuleSpec,
    /// For a removal: the rule's id.
    pub rule_id: Option<i64>,
    /// For an addition: the rule lapses by itself at this instant.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub reason: String,
    pub proposed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub proposed_at: OffsetDateTime,
    /// `pending`, `approved` (made) or `refused`.
    #[schema(example = "pending")]
    pub status: String,
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    pub decision_reason: Option<String>,
}

impl PolicyChangeView {
    fn from_row(row: &PolicyChangeRow) -> Result<Self, HubError> {
        let rule = PolicyEngine::rule_of_change(row)?;
        Ok(Self {
            id: row.id,
            change: row.change.clone(),
            rule: rule.spec(),
            rule_id: row.rule_id,
            expires_at: row.rule.expires_at,
            reason: row.rule.reason.clone(),
            proposed_by: row.proposed_by.clone(),
            proposed_at: row.proposed_at,
            status: row.status.clone(),
            decided_by: row.decided_by.clone(),
            decided_at: row.decided_at,
            decision_reason: row.decision_reason.clone(),
        })
    }
}

/// A second administrator's decision on a pending change.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChangeDecision {
    /// `true` makes the change; `false` refuses it (its proposer may refuse, that is
    /// withdraw, their own).
    pub approve: bool,
    pub reason: String,
}

/// Which policy changes to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyChangeStatus {
    Pending,
    Approved,
    Refused,
}

impl PolicyChangeStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Refused => "refused",
        }
    }
}

/// The most policy changes one listing returns.
const CHANGES_PAGE: i64 = 500;

/// Tokens to cut short, and why.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationOrder {
    pub revoke: RevocationTarget,
    /// Why: kept with the revocation and in the audit log.
    pub reason: String,
}

/// "What would this principal see": a principal, the systems of a query, and changes
/// not yet made.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Simulation {
    pub principal: Principal,
    /// The systems the query would ask; default: all.
    pub systems: Option<Vec<SourceSystem>>,
    /// Rules to add for the dry run.
    #[serde(default)]
    pub add: Vec<RuleSpec>,
    /// Ids of rules to remove for the dry run.
    #[serde(default)]
    pub remove: Vec<i64>,
}

/// How one system would answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SystemDecision {
    pub system: SourceSystem,
    #[serde(flatten)]
    pub answer: Answer,
}

/// A dry run's outcome: decisions only, never data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SimulationAnswer {
    /// How each asked system would answer a search (`nothing`: no entry at all).
    pub search: Vec<SystemDecision>,
    /// Every right the principal would hold.
    pub access: crate::access::Access,
}

/// A full-access request, or a recorded decision to file none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessRequestKind {
    /// Asks an administrator for full access to the system's data.
    #[default]
    Request,
    /// Records why no request follows the hit.
    NoRequest,
}

impl AccessRequestKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::NoRequest => "no_request",
        }
    }
}

/// What a law-enforcement user files after a hit flag.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestFiling {
    #[serde(default)]
    pub kind: AccessRequestKind,
    pub system: SourceSystem,
    /// The agency's case file.
    pub case_reference: String,
    /// Why full access is needed — or, for `no_request`, why none is filed.
    pub justification: String,
}

/// An administrator's decision on a pending request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestDecision {
    pub grant: bool,
    pub reason: String,
    /// How long a grant lasts, 1–720 hours (default 24).
    pub hours: Option<u32>,
}

/// One page of the audit log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `after` for the next page; absent at the end.
    pub next_after: Option<i64>,
}

fn required_text(text: &str, field: &'static str) -> Result<String, HubError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 2_000 || text.chars().any(char::is_control) {
        return Err(HubError::InvalidRequest(format!(
            "{field}: 1-2000 characters, no control characters"
        )));
    }
    Ok(text.to_owned())
}

/// The administration service: access rules changed in real time (simulated first), access
/// requests and their grants, and the audit log for supervisors.
#[derive(Debug)]
pub struct Administration {
    pub(super) gate: Arc<Gate>,
    /// Changes that widen access to personal data wait for a second administrator.
    pub(super) four_eyes: bool,
    pub(super) policy: Arc<PolicyEngine>,
    pub(super) control: ControlStore,
    pub(super) clock: Clock,
}

impl Administration {
    pub async fn policy_rules(&self, principal: &Principal) -> Result<Vec<PolicyRule>, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::ListRules,
                String::new(),
                |_| async move { self.policy.rules().await },
                |rules| format!("rules={}", rules.len()),
            )
            .await
    }

    /// Adds a rule; it applies to the very next request — or, if it widens access to
    /// personal data, waits for a second administrator.
    pub async fn add_policy_rule(
        &self,
        principal: &Principal,
        change: PolicyChange,
    ) -> Result<RuleChange, HubError> {
        let described = format!("{} why={}", rule_text(&change.rule), brief(&change.reason));
        self.gate
            .guarded(
                principal,
                Operation::AddRule,
                described,
                |_| async move {
                    let rule = change
                        .rule
                        .check()
                        .map_err(|m| HubError::InvalidRequest(m.to_owned()))?;
                    let reason = required_text(&change.reason, "reason")?;
                    if change.expires_at.is_some_and(|at| at <= self.clock.now()) {
                        return Err(HubError::InvalidRequest(
                            "expires_at: must lie in the future".to_owned(),
                        ));
                    }
                    let kind = RuleChangeKind::Add(&rule);
                    if self.needs_second_administrator(principal, &kind).await? {
                        let proposed = self
                            .policy
                            .propose(&kind, None, change.expires_at, principal, &reason)
                            .await?;
                        return Ok(RuleChange::Pending(PolicyChangeView::from_row(&proposed)?));
                    }
                    self.policy
                        .add(&rule, change.expires_at, principal, &reason)
                        .await
                        .map(RuleChange::Made)
                },
                change_outcome,
            )
            .await
    }

    /// Removes a rule; the very next request is decided without it — or, if removing it
    /// widens access to personal data (a denial), the removal waits for a second
    /// administrator.
    pub async fn remove_policy_rule(
        &self,
        principal: &Principal,
        id: i64,
        reason: &str,
    ) -> Result<RuleChange, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::RemoveRule,
                format!("rule={id} why={}", brief(reason)),
                |_| async move {
                    let reason = required_text(reason, "reason")?;
                    let rule = self.policy.rule(id).await?;
                    let kind = RuleChangeKind::Remove(&rule);
                    if self.needs_second_administrator(principal, &kind).await? {
                        let proposed = self
                            .policy
                            .propose(&kind, Some(id), None, principal, &reason)
                            .await?;
                        return Ok(RuleChange::Pending(PolicyChangeView::from_row(&proposed)?));
                    }
                    self.policy.remove(id).await.map(RuleChange::Made)
                },
                change_outcome,
            )
            .await
    }

    /// Under four eyes: refuses a change to a rule about the caller, and says whether the
    /// change widens access to personal data.
    async fn needs_second_administrator(
        &self,
        principal: &Principal,
        change: &RuleChangeKind<'_>,
    ) -> Result<bool, HubError> {
        if !self.four_eyes {
            return Ok(false);
        }
        let (RuleChangeKind::Add(rule) | RuleChangeKind::Remove(rule)) = change;
        if names(rule, principal) {
            return Err(HubError::FourEyes(
                "nobody changes rules about themselves: another administrator must",
            ));
        }
        self.policy.widens_personal_data(change).await
    }

    /// Policy changes, newest first (at most 500): those with `status`, or all.
    pub async fn policy_changes(
        &self,
        principal: &Principal,
        status: Option<PolicyChangeStatus>,
    ) -> Result<Vec<PolicyChangeView>, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::ListPolicyChanges,
                format!(
                    "status={}",
                    status.map_or("all", PolicyChangeStatus::as_str)
                ),
                |_| async move {
                    self.control
                        .policy_changes(status.map(PolicyChangeStatus::as_str), CHANGES_PAGE)
                        .await?
                        .iter()
                        .map(PolicyChangeView::from_row)
                        .collect()
                },
                |changes: &Vec<PolicyChangeView>| format!("changes={}", changes.len()),
            )
            .await
    }

    /// A second administrator approves (makes) or refuses a pending change. Nobody approves
    /// their own change, nor one to a rule about themselves.
    pub async fn decide_policy_change(
        &self,
        principal: &Principal,
        id: i64,
        decision: PolicyChangeDecision,
    ) -> Result<PolicyChangeView, HubError> {
        let described = format!("change={id} approve={}", decision.approve);
        self.gate
            .guarded(
                principal,
                Operation::DecidePolicyChange,
                described,
                |_| async move {
                    let reason = required_text(&decision.reason, "reason")?;
                    let mut change = self
                        .control
                        .policy_change(id)
                        .await?
                        .ok_or(HubError::ChangeNotFound)?;
                    if change.status != "pending" {
                        return Err(HubError::ChangeDecided);
                    }
                    if decision.approve {
                        if change.proposed_by == principal.rule_subject() {
                            return Err(HubError::FourEyes(
                                "nobody approves their own change: another administrator must",
                            ));
                        }
                        if names(&PolicyEngine::rule_of_change(&change)?, principal) {
                            return Err(HubError::FourEyes(
                                "nobody approves a change to rules about themselves",
                            ));
                        }
                    }
                    change.status = if decision.approve {
                        "approved"
                    } else {
                        "refused"
                    }
                    .to_owned();
                    change.decided_by = Some(principal.rule_subject());
                    change.decided_at = Some(self.clock.now());
                    change.decision_reason = Some(reason);
                    let decided = self
                        .policy
                        .decide_change(&change)
                        .await?
                        .ok_or(HubError::ChangeDecided)?;
                    PolicyChangeView::from_row(&decided)
                },
                |change| format!("change={} status={}", change.id, change.status),
            )
            .await
    }

    /// The revocations in force.
    pub async fn revocations(&self, principal: &Principal) -> Result<Vec<Revocation>, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::ListRevocations,
                String::new(),
                |_| async move { self.policy.revocations().await },
                |revocations| format!("revocations={}", revocations.len()),
            )
            .await
    }

    /// Revokes one token, or the tokens one principal or agency holds now; they are refused
    /// from the very next request.
    pub async fn revoke(
        &self,
        principal: &Principal,
        order: RevocationOrder,
    ) -> Result<Revocation, HubError> {
        let described = format!(
            "{} why={}",
            brief(&revocation_text(&order.revoke)),
            brief(&order.reason)
        );
        self.gate
            .guarded(
                principal,
                Operation::Revoke,
                described,
                |_| async move {
                    let target = order
                        .revoke
                        .check()
                        .map_err(|m| HubError::InvalidRequest(m.to_owned()))?;
                    let reason = required_text(&order.reason, "reason")?;
                    self.policy.revoke(target, None, principal, &reason).await
                },
                |revocation| format!("revocation={}", revocation.id),
            )
            .await
    }

    /// Revokes the token its holder signs out with: refused from the very next request.
    pub async fn sign_out(&self, token: &VerifiedToken) -> Result<Revocation, HubError> {
        let principal = &token.principal;
        self.gate
            .guarded(
                principal,
                Operation::SignOut,
                format!("token={}", token.token_id),
                |_| async move {
                    let target = RevocationTarget::Token {
                        token_id: token.token_id.clone(),
                    };
                    self.policy
                        .revoke(target, Some(token.expires_at), principal, "signed out")
                        .await
                },
                |revocation| format!("revocation={}", revocation.id),
            )
            .await
    }

    /// What a principal would be answered, under the current rules with proposed changes.
    pub async fn simulate(
        &self,
        principal: &Principal,
        simulation: Simulation,
    ) -> Result<SimulationAnswer, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::SimulatePolicy,
                String::new(),
                |_| async move {
                    let subject = checked_principal(simulation.principal)?;
                    let add = simulation
                        .add
                        .iter()
                        .map(|rule| {
                            rule.check()
                                .map_err(|m| HubError::InvalidRequest(m.to_owned()))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let proposed = ProposedChanges {
                        add,
                        remove: simulation.remove,
                    };
                    let access = self.policy.simulate(&subject, &proposed).await?;
                    let asked = simulation
                        .systems
                        .unwrap_or_else(|| SourceSystem::ALL.to_vec());
                    let search = SourceSystem::ALL
                        .into_iter()
                        .filter(|s| asked.contains(s))
                        .map(|system| SystemDecision {
                            system,
                            answer: access.answer(system),
                        })
                        .collect();
                    Ok(SimulationAnswer { search, access })
                },
                |_| "simulated".to_owned(),
            )
            .await
    }

    /// Files a full-access request after a hit flag, or records why none is filed.
    pub async fn file_access_request(
        &self,
        principal: &Principal,
        filing: AccessRequestFiling,
    ) -> Result<AccessRequestView, HubError> {
        let described = format!("kind={} system={}", filing.kind.as_str(), filing.system);
        self.gate
            .guarded(
                principal,
                Operation::FileAccessRequest,
                described,
                |access| async move {
                    if !access.rights(filing.system).request_access {
                        return Err(HubError::Forbidden);
                    }
                    let row = AccessRequest {
                        id: uuid::Uuid::now_v7().to_string(),
                        kind: filing.kind.as_str().to_owned(),
                        status: match filing.kind {
                            AccessRequestKind::Request => "pending",
                            AccessRequestKind::NoRequest => "recorded",
                        }
                        .to_owned(),
                        subject: principal.subject.clone(),
                        agency: principal.agency.clone(),
                        member_state: principal.member_state.clone(),
                        system: filing.system.as_str().to_owned(),
                        case_reference: required_text(&filing.case_reference, "case_reference")?,
                        justification: required_text(&filing.justification, "justification")?,
                        created_at: self.clock.now(),
                        decided_at: None,
                        decided_by: None,
                        decision_reason: None,
                        grant_expires_at: None,
                    };
                    self.control.insert_access_request(&row).await?;
                    Ok(row.into())
                },
                |r: &AccessRequestView| format!("status={}", r.status),
            )
            .await
    }

    /// Administrators see every request; a requester sees their own.
    pub async fn access_requests(
        &self,
        principal: &Principal,
        status: Option<&str>,
    ) -> Result<Vec<AccessRequestView>, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::ListAccessRequests,
                format!("status={}", status.unwrap_or("any")),
                |access| async move {
                    let all = access.has_duty(HubDuty::Administer);
                    let may_request = SourceSystem::ALL
                        .iter()
                        .any(|s| access.rights(*s).request_access);
                    if !all && !may_request {
                        return Err(HubError::Forbidden);
                    }
                    let rows = self.control.access_requests(status).await?;
                    Ok(rows
                        .into_iter()
                        .filter(|r| {
                            all || (r.subject == principal.subject && r.agency == principal.agency)
                        })
                        .map(AccessRequestView::from)
                        .collect::<Vec<_>>())
                },
                |requests| format!("requests={}", requests.len()),
            )
            .await
    }

    /// Grants (time-boxed, applying at once) or refuses a pending request.
    pub async fn decide_access_request(
        &self,
        principal: &Principal,
        id: &str,
        decision: AccessRequestDecision,
    ) -> Result<AccessRequestView, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::DecideAccessRequest,
                format!("grant={}", decision.grant),
                |_| async move {
                    let reason = required_text(&decision.reason, "reason")?;
                    let hours = decision.hours.unwrap_or(24);
                    if !(1..=MAX_GRANT_HOURS).contains(&hours) {
                        return Err(HubError::InvalidRequest(format!(
                            "hours: 1-{MAX_GRANT_HOURS}"
                        )));
                    }
                    let mut row = self
                        .control
                        .access_request(id)
                        .await?
                        .ok_or(HubError::AccessRequestNotFound)?;
                    if row.status != "pending" {
                        return Err(HubError::AccessRequestDecided);
                    }
                    let now = self.clock.now();
                    row.status = if decision.grant { "granted" } else { "refused" }.to_owned();
                    row.decided_at = Some(now);
                    row.decided_by = Some(principal.rule_subject());
                    row.decision_reason = Some(reason);
                    let mut grant = Vec::new();
                    if decision.grant {
                        row.grant_expires_at = Some(now + time::Duration::hours(i64::from(hours)));
                        let system: SourceSystem = row.system.parse().map_err(|_| {
                            HubError::Internal("stored request names no system".into())
                        })?;
                        let requester = Principal::new(
                            row.subject.clone(),
                            row.agency.clone(),
                            row.member_state.clone(),
                            Vec::new(),
                        )
                        .map_err(|e| HubError::Internal(format!("stored requester: {e}")))?;
                        grant = full_access_rules(&requester, system);
                    }
                    if !self.policy.decide_request(&row, &grant, principal).await? {
                        return Err(HubError::AccessRequestDecided);
                    }
                    Ok(row.into())
                },
                |r: &AccessRequestView| format!("status={}", r.status),
            )
            .await
    }

    /// A page of the audit log, for supervisors.
    pub async fn audit_log(
        &self,
        principal: &Principal,
        after: i64,
        limit: i64,
    ) -> Result<AuditPage, HubError> {
        let limit = limit.clamp(1, AUDIT_PAGE);
        self.gate
            .guarded(
                principal,
                Operation::ReadAudit,
                format!("after={after} limit={limit}"),
                |_| async move {
                    let entries = self.control.audit_entries(after.max(0), limit).await?;
                    let next_after = (entries.len()
                        == usize::try_from(limit).unwrap_or(usize::MAX))
                    .then(|| entries.last().map(|e| e.seq))
                    .flatten();
                    Ok(AuditPage {
                        entries: entries.into_iter().map(AuditEntryView::from).collect(),
                        next_after,
                    })
                },
                |page| format!("entries={}", page.entries.len()),
            )
            .await
    }
}

/// An administrator's reason as the audit log keeps it: one line, at most 200 characters.
fn brief(reason: &str) -> String {
    reason
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

/// Whether `rule` is about `principal` itself (its subject or member).
fn names(rule: &CheckedRule, principal: &Principal) -> bool {
    let (CheckedRule::Permission { subject, .. }
    | CheckedRule::Denial { subject, .. }
    | CheckedRule::Assignment {
        member: subject, ..
    }) = rule;
    matches!(subject, Member::User { agency, subject }
        if *agency == principal.agency && *subject == principal.subject)
}

/// The audit log's words for a change's outcome.
fn change_outcome(change: &RuleChange) -> String {
    match change {
        RuleChange::Made(rule) => format!("rule={}", rule.id),
        RuleChange::Pending(pending) => format!("pending_change={}", pending.id),
    }
}

fn revocation_text(target: &RevocationTarget) -> String {
    match target {
        RevocationTarget::Token { token_id } => format!("token={token_id}"),
        RevocationTarget::Principal { agency, subject } => format!("principal={agency}/{subject}"),
        RevocationTarget::Agency { agency } => format!("agency={agency}"),
    }
}

fn rule_text(rule: &RuleSpec) -> String {
    match rule {
        RuleSpec::Permission {
            subject,
            system,
            action,
        } => format!("p:{subject},{system},{action}"),
        RuleSpec::Assignment { member, role } => format!("g:{member},{role}"),
        RuleSpec::Denial {
            subject,
            system,
            action,
        } => format!("d:{subject},{system},{action}"),
    }
}
