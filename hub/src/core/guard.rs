//! The guarded operation: every call on the hub passes one gate — the caller's access
//! under the policy in force, the declared purpose (may the caller declare it, and is it
//! enabled), the caller's request budget — runs, and leaves one audit entry whatever its
//! outcome. Operations and purposes are typed; the audit log's words come from here alone.

use std::sync::Arc;

use connectors::SourceSystem;

use super::audit_log::{self, AuditLog, Logged};
use super::limits::Budgets;
use super::{outcome_of, timed};
use crate::access::{Access, HubDuty, PolicyEngine, Principal, Purpose};
use crate::clock::Clock;
use crate::config::Settings;
use crate::error::HubError;
use crate::metrics::{HubMetrics, IngestStep};
use crate::store::{ControlStore, IngestCountKey};

/// Everything a caller can ask of the hub, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The search portal.
    Search(Purpose),
    /// 1:N search of the shared biometric matching service.
    BiometricSearch(Purpose),
    ReadRecord(Purpose),
    Ingest(SourceSystem),
    Delete(SourceSystem),
    /// The caller's verification queue.
    ListLinks,
    ReadLink,
    Verify,
    ListRules,
    AddRule,
    RemoveRule,
    SimulatePolicy,
    FileAccessRequest,
    ListAccessRequests,
    DecideAccessRequest,
    Revoke,
    ListRevocations,
    ListPolicyChanges,
    DecidePolicyChange,
    /// The caller revokes the token it signed in with.
    SignOut,
    ReadAudit,
    Statistics,
    Dashboard,
    DataQuality,
}

/// What the gate checks before an operation runs; finer checks (per system, per link)
/// are the operation's own.
enum Check {
    /// The caller must be allowed to declare this purpose.
    Purpose(Purpose),
    /// The caller must write to this system (and so manage its records).
    Write(SourceSystem),
    Duty(HubDuty),
    /// Decided inside the operation (an access request names its system in its body).
    Inside,
}

impl Operation {
    /// The action word of the audit entry.
    pub fn action(self) -> &'static str {
        match self {
            Self::Search(_) => "search",
            Self::BiometricSearch(_) => "search_biometric",
            Self::ReadRecord(_) => "read",
            Self::Ingest(_) => "ingest",
            Self::Delete(_) => "delete",
            Self::ListLinks => "list_links",
            Self::ReadLink => "read_link",
            Self::Verify => "verify",
            Self::ListRules => "policy_list",
            Self::AddRule => "policy_add",
            Self::RemoveRule => "policy_remove",
            Self::SimulatePolicy => "policy_simulate",
            Self::FileAccessRequest => "access_request",
            Self::ListAccessRequests => "access_request_list",
            Self::DecideAccessRequest => "access_request_decide",
            Self::Revoke => "revoke",
            Self::ListRevocations => "revocation_list",
            Self::ListPolicyChanges => "policy_change_list",
            Self::DecidePolicyChange => "policy_change_decide",
            Self::SignOut => "sign_out",
            Self::ReadAudit => "audit_read",
            Self::Statistics => "statistics",
            Self::Dashboard => "dashboard",
            Self::DataQuality => "data_quality",
        }
    }

    /// The purpose the audit entry records: the declared one where personal data leaves.
    pub fn purpose(self) -> &'static str {
        match self {
            Self::Search(purpose) | Self::BiometricSearch(purpose) | Self::ReadRecord(purpose) => {
                purpose.as_str()
            }
            Self::Ingest(_) | Self::Delete(_) => Purpose::RecordManagement.as_str(),
            Self::ListLinks | Self::ReadLink | Self::Verify => {
                Purpose::MultipleIdentityVerification.as_str()
            }
            Self::FileAccessRequest => Purpose::SeriousCrime.as_str(),
            Self::ListRules
            | Self::AddRule
            | Self::RemoveRule
            | Self::SimulatePolicy
            | Self::ListAccessRequests
            | Self::DecideAccessRequest
            | Self::Revoke
            | Self::ListRevocations
            | Self::ListPolicyChanges
            | Self::DecidePolicyChange => "administration",
            Self::SignOut => "authentication",
            Self::ReadAudit => "supervision",
            Self::Statistics | Self::Dashboard | Self::DataQuality => "statistics",
        }
    }

    /// Whether `purpose` is one this operation can serve: a source system manages its
    /// records by reading them back, never by searching.
    fn serves(self, purpose: Purpose) -> bool {
        !matches!(
            (self, purpose),
            (
                Self::Search(_) | Self::BiometricSearch(_),
                Purpose::RecordManagement
            )
        )
    }

    /// Searches and reads: what a request budget limits (ingest is the connectors' bulk
    /// work, and the link queue the verifiers' own).
    fn hands_out_personal_data(self) -> bool {
        matches!(
            self,
            Self::Search(_) | Self::BiometricSearch(_) | Self::ReadRecord(_)
        )
    }

    fn check(self) -> Check {
        match self {
            Self::Search(purpose) | Self::BiometricSearch(purpose) | Self::ReadRecord(purpose) => {
                Check::Purpose(purpose)
            }
            Self::Ingest(system) | Self::Delete(system) => Check::Write(system),
            Self::ListLinks | Self::ReadLink | Self::Verify => {
                Check::Purpose(Purpose::MultipleIdentityVerification)
            }
            Self::ListRules | Self::AddRule | Self::RemoveRule | Self::SimulatePolicy => {
                Check::Duty(HubDuty::Administer)
            }
            // Requesters list their own, administrators all: decided inside.
            Self::ListAccessRequests | Self::FileAccessRequest => Check::Inside,
            Self::DecideAccessRequest
            | Self::Revoke
            | Self::ListRevocations
            | Self::ListPolicyChanges
            | Self::DecidePolicyChange => Check::Duty(HubDuty::Administer),
            // Whoever holds a token may give it up.
            Self::SignOut => Check::Inside,
            Self::ReadAudit => Check::Duty(HubDuty::Audit),
            Self::Statistics | Self::Dashboard | Self::DataQuality => {
                Check::Duty(HubDuty::Statistics)
            }
        }
    }
}

/// How often a read is decided again when the policy moved under its decision, before it
/// gives up (a rule changes in seconds; a read runs in milliseconds).
const MAX_REDECISIONS: usize = 3;

/// What the audit entry of one operation's result records, besides the result.
struct Logging<'a> {
    principal: &'a Principal,
    operation: Operation,
    query: String,
    counts: Vec<IngestCountKey>,
    decided_under: Option<i64>,
}

/// The gate every operation passes, and the audit log every operation leaves its entry in.
#[derive(Debug)]
pub(crate) struct Gate {
    policy: Arc<PolicyEngine>,
    budgets: Budgets,
    audit: AuditLog,
    /// Member states whose law enables police identity checks.
    identity_check_states: Vec<String>,
    metrics: Arc<HubMetrics>,
}

impl Gate {
    /// `shared_limits`: the control store (and clock) the request budgets and hit-flag
    /// counts are kept in, where other hubs share them; `None` to count in this process.
    pub(crate) fn new(
        policy: Arc<PolicyEngine>,
        settings: &Settings,
        audit: AuditLog,
        metrics: Arc<HubMetrics>,
        shared_limits: Option<(ControlStore, Clock)>,
    ) -> Self {
        Self {
            policy,
            budgets: Budgets::new(&settings.limits, shared_limits),
            audit,
            identity_check_states: settings.identity_check.member_states.clone(),
            metrics,
        }
    }

    /// Records a request refused for want of a valid credential (bounded; never waits).
    pub(crate) fn refused_authentication(&self, route: &str, reason: &str) {
        self.audit.refused_authentication(route, reason);
    }

    /// What `principal` may do under the policy in force at this very moment.
    pub(crate) async fn access(&self, principal: &Principal) -> Result<Arc<Access>, HubError> {
        self.policy.access(principal).await
    }

    /// Counts a search answered with a hit flag; the principal's first one past the hourly
    /// limit raises the misuse alarm: a metric and an audit entry, for the supervisor. The
    /// answer is already logged and stands whatever happens here: a count or an alarm that
    /// cannot be written is a warning, not a 503 for a search the log records as answered.
    pub(crate) async fn count_hit_flag_search(
        &self,
        principal: &Principal,
        purpose: Purpose,
        now: time::OffsetDateTime,
    ) {
        if let Err(e) = self.count_hit_flag_or_alarm(principal, purpose, now).await {
            tracing::warn!(error = %e, "a hit-flag answer was not counted for the misuse alarm");
        }
    }

    async fn count_hit_flag_or_alarm(
        &self,
        principal: &Principal,
        purpose: Purpose,
        now: time::OffsetDateTime,
    ) -> Result<(), HubError> {
        let hour = now.unix_timestamp().div_euclid(3_600);
        if !self.budgets.hit_flag_search(principal, hour).await? {
            return Ok(());
        }
        self.metrics.misuse_alarm();
        self.audit
            .write(self.audit.entry(audit_log::Record {
                principal,
                purpose: purpose.as_str(),
                action: "misuse_alarm",
                query: format!(
                    "hit_flag_searches_per_hour>{}",
                    self.budgets.hit_flag_alarm_after()
                ),
                outcome: "alarm".to_owned(),
                counts: Vec::new(),
                decided_under: None,
            }))
            .await
            .map(|_| ())
    }

    /// Runs `work` behind the gate and audits what came of it: `query` describes the
    /// request (never its values), `describe` the answer; a refusal is logged by its code.
    /// Nothing is answered that was not logged.
    pub(crate) async fn guarded<T, Work>(
        &self,
        principal: &Principal,
        operation: Operation,
        query: String,
        work: impl FnOnce(Arc<Access>) -> Work,
        describe: impl FnOnce(&T) -> String,
    ) -> Result<T, HubError>
    where
        Work: Future<Output = Result<T, HubError>>,
    {
        self.guarded_counting(principal, operation, query, work, describe, |_| Vec::new())
            .await
    }

    /// As [`Gate::guarded`], with the data-quality counts `count` draws from the result
    /// written in the audit entry's own transaction.
    pub(crate) async fn guarded_counting<T, Work>(
        &self,
        principal: &Principal,
        operation: Operation,
        query: String,
        work: impl FnOnce(Arc<Access>) -> Work,
        describe: impl FnOnce(&T) -> String,
        count: impl FnOnce(&Result<T, HubError>) -> Vec<IngestCountKey>,
    ) -> Result<T, HubError>
    where
        Work: Future<Output = Result<T, HubError>>,
    {
        // A verification answers with the link's confirmation file, and is not run twice:
        // it is decided under the policy as the store holds it at this moment (a change
        // through another hub applies to it at once, as to a read).
        let followed = if matches!(operation, Operation::Verify) {
            self.policy.follow().await.map(|_| ())
        } else {
            Ok(())
        };
        let result = match followed {
            Ok(()) => match self.pass_gate(principal, operation).await {
                Ok(access) => work(access).await,
                Err(refused) => Err(refused),
            },
            Err(e) => Err(e),
        };
        let logged = Logging {
            principal,
            operation,
            query,
            counts: count(&result),
            decided_under: None,
        };
        self.log(logged, &result, describe).await?;
        result
    }

    /// As [`Gate::guarded`], for a read that hands out personal data: an answer is given
    /// only if the policy it was decided under is still the store's when its audit entry is
    /// written, in the same transaction. If another hub changed a rule meanwhile, the policy
    /// is caught up and the read decided and run again, so that a narrowed access applies to
    /// every request that follows the change, on every hub.
    pub(crate) async fn guarded_read<T, Work>(
        &self,
        principal: &Principal,
        operation: Operation,
        query: String,
        work: impl Fn(Arc<Access>) -> Work,
        describe: impl Fn(&T) -> String,
    ) -> Result<T, HubError>
    where
        Work: Future<Output = Result<T, HubError>>,
    {
        let logging = |decided_under| Logging {
            principal,
            operation,
            query: query.clone(),
            counts: Vec::new(),
            decided_under,
        };
        let mut decided = self.pass_gate(principal, operation).await;
        for _ in 0..=MAX_REDECISIONS {
            let access = match decided {
                Ok(access) => access,
                Err(refused) => {
                    let result = Err(refused);
                    self.log(logging(None), &result, &describe).await?;
                    return result;
                }
            };
            let result = work(Arc::clone(&access)).await;
            let decided_under = result.is_ok().then(|| access.policy_version());
            match self.log(logging(decided_under), &result, &describe).await? {
                Logged::Written => return result,
                Logged::Outdated(version) => {
                    // A policy that cannot be read now refuses the read, and is logged so.
                    decided = match self.policy.catch_up(version).await {
                        Ok(_) => self.decide(principal, operation).await,
                        Err(e) => Err(e),
                    };
                }
            }
        }
        // The policy moved under every decision: rules are changing faster than a read
        // runs. Nothing is answered (the client may retry), and the log says so.
        tracing::warn!(
            action = operation.action(),
            "the policy moved under every decision"
        );
        let result = Err(HubError::Unavailable);
        self.log(logging(None), &result, &describe).await?;
        result
    }

    /// Writes the audit entry of `result` (or, with the database out of reach, hands it to
    /// the log if it has room), and says whether it was written.
    async fn log<T>(
        &self,
        logging: Logging<'_>,
        result: &Result<T, HubError>,
        describe: impl FnOnce(&T) -> String,
    ) -> Result<Logged, HubError> {
        let Logging {
            principal,
            operation,
            query,
            counts,
            decided_under,
        } = logging;
        let entry = self.audit.entry(audit_log::Record {
            principal,
            purpose: operation.purpose(),
            action: operation.action(),
            query,
            outcome: outcome_of(result, describe),
            counts,
            decided_under,
        });
        if matches!(
            result,
            Err(HubError::Unavailable | HubError::OutOfService(_))
        ) {
            // A database out of reach: the answer hands nothing out, and waiting for the
            // audit log, likely out of reach as well (or its queue full behind it), would
            // add to the client's wait. The entry is written if the log can take it.
            self.audit.write_if_room(entry);
            return Ok(Logged::Written);
        }
        let written = self.audit.write(entry);
        if matches!(operation, Operation::Ingest(_)) {
            timed(&self.metrics, IngestStep::Audit, written).await
        } else {
            written.await
        }
    }

    /// The gate: the caller's access, checked for `operation`, and for a read that hands
    /// out personal data, one request of the caller's budget.
    async fn pass_gate(
        &self,
        principal: &Principal,
        operation: Operation,
    ) -> Result<Arc<Access>, HubError> {
        let access = self.decide(principal, operation).await?;
        if operation.hands_out_personal_data() {
            self.budgets.take(principal).await?;
        }
        Ok(access)
    }

    /// The caller's access under the policy in force, if it admits `operation`.
    async fn decide(
        &self,
        principal: &Principal,
        operation: Operation,
    ) -> Result<Arc<Access>, HubError> {
        let access = self.access(principal).await?;
        match operation.check() {
            Check::Purpose(purpose) => {
                if !access.may_declare(purpose)
                    || !self.purpose_enabled(principal, purpose)
                    || !operation.serves(purpose)
                {
                    return Err(HubError::Forbidden);
                }
            }
            Check::Write(system) => access.require_write(system)?,
            Check::Duty(duty) => access.require_duty(duty)?,
            Check::Inside => {}
        }
        Ok(access)
    }

    /// Purposes a member state must enable by its own law: police identity checks
    /// (CIR Art. 20) only for the states the settings list.
    fn purpose_enabled(&self, principal: &Principal, purpose: Purpose) -> bool {
        purpose != Purpose::IdentityCheck
            || self.identity_check_states.contains(&principal.member_state)
    }
}
