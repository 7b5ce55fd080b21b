//! The policy engine: casbin enforcers built from the control database's rules, swapped in
//! whole on every change (so no request ever sees a half-loaded policy), rebuilt when a
//! time-boxed grant lapses, and the [`Access`] each principal gets from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use connectors::SourceSystem;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::revocations::{LONGEST_REFUSAL, Revocation, RevocationTarget, Revoked};
use super::rules::{CheckedRule, parse_policy_csv};
use super::{Action, FieldGroup, HubDuty, Member, Principal, Purpose, RuleSpec, VerifiedToken};
use crate::clock::Clock;
use crate::error::HubError;
use crate::matching::LinkColour;
use crate::metrics::HubMetrics;
use crate::store::{
    ControlStore, NewRule, PolicyChangeRow, RevocationRow, RuleRow, StoredLink, VerifierQueue,
};

const MODEL: &str = include_str!("../../../policies/model.conf");
const DENY_MODEL: &str = include_str!("../../../policies/deny_model.conf");
const BASELINE: &str = include_str!("../../../policies/baseline.csv");
/// Principals whose access one policy version remembers; beyond it the memo starts over.
const ACCESS_MEMO_LIMIT: usize = 10_000;

/// What a principal may do with one system's data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SystemRights {
    /// Field groups shown in reads and search answers; empty: no full access.
    pub fields: BTreeSet<FieldGroup>,
    pub hit_flag: bool,
    pub write: bool,
    pub verify: bool,
    pub request_access: bool,
}

/// How a system answers a principal's search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "answer", content = "fields")]
pub enum Answer {
    /// The matching records, with these field groups.
    Full(BTreeSet<FieldGroup>),
    /// Only whether the system holds data on the person.
    HitFlag,
    /// No entry: the principal may not know about the system's data.
    Nothing,
}

/// What one principal may do under one version of the policy. Only the policy engine
/// makes these: holding one is proof that the check was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Access {
    #[serde(skip)]
    principal: Principal,
    #[schema(value_type = Object)]
    systems: BTreeMap<SourceSystem, SystemRights>,
    duties: BTreeSet<HubDuty>,
    /// The purposes the principal may search for.
    purposes: BTreeSet<Purpose>,
    /// The verifying authorities the principal acts for (`sirene:IT`, `visa_authority`).
    authorities: BTreeSet<String>,
    /// The store's policy version this was decided under.
    #[serde(skip)]
    policy_version: i64,
}

/// How much of a link its viewer may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSight {
    /// Both records, evidence and history: the viewer reads both sides, or verifies it.
    Whole,
    /// The viewer reads only this side (0 or 1 of `records`): of the other it learns the
    /// system and the responsible authority, nothing more.
    OneSide(usize),
}

impl Access {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The store's policy version this access was decided under.
    pub fn policy_version(&self) -> i64 {
        self.policy_version
    }

    pub fn rights(&self, system: SourceSystem) -> SystemRights {
        self.systems.get(&system).cloned().unwrap_or_default()
    }

    pub fn answer(&self, system: SourceSystem) -> Answer {
        let rights = self.rights(system);
        if !rights.fields.is_empty() {
            Answer::Full(rights.fields)
        } else if rights.hit_flag {
            Answer::HitFlag
        } else {
            Answer::Nothing
        }
    }

    /// The field groups the principal may read in `system`; `None`: not readable at all.
    pub fn readable_fields(&self, system: SourceSystem) -> Option<BTreeSet<FieldGroup>> {
        match self.answer(system) {
            Answer::Full(fields) => Some(fields),
            _ => None,
        }
    }

    pub fn require_write(&self, system: SourceSystem) -> Result<(), HubError> {
        if self.rights(system).write {
            Ok(())
        } else {
            Err(HubError::Forbidden)
        }
    }

    pub fn require_duty(&self, duty: HubDuty) -> Result<(), HubError> {
        if self.duties.contains(&duty) {
            Ok(())
        } else {
            Err(HubError::Forbidden)
        }
    }

    pub fn has_duty(&self, duty: HubDuty) -> bool {
        self.duties.contains(&duty)
    }

    /// Whether the principal may do nothing but operate the hub (metrics, health): no right
    /// on any system's data, no purpose, no other duty, no authority.
    pub fn only_operates(&self) -> bool {
        self.duties.iter().all(|duty| *duty == HubDuty::Operate)
            && self
                .systems
                .values()
                .all(|rights| *rights == SystemRights::default())
            && self.purposes.is_empty()
            && self.authorities.is_empty()
    }

    /// Whether the principal may declare `purpose`: a rule grants it, and record
    /// management comes with the right to write to a system.
    pub fn may_declare(&self, purpose: Purpose) -> bool {
        self.purposes.contains(&purpose)
            || (purpose == Purpose::RecordManagement && self.systems.values().any(|r| r.write))
    }

    /// How `system` answers the principal under `purpose`'s rules: record management
    /// reaches only the systems the principal writes to, an identity check only identity
    /// and document data (CIR Art. 20).
    pub fn answer_for(&self, purpose: Purpose, system: SourceSystem) -> Answer {
        let answer = self.answer(system);
        match (purpose, answer) {
            (Purpose::RecordManagement, _) if !self.rights(system).write => Answer::Nothing,
            (Purpose::IdentityCheck, Answer::Full(fields)) => {
                let fields: BTreeSet<FieldGroup> = fields
                    .into_iter()
                    .filter(|group| matches!(group, FieldGroup::Identity | FieldGroup::Documents))
                    .collect();
                if fields.is_empty() {
                    Answer::Nothing
                } else {
                    Answer::Full(fields)
                }
            }
            (_, answer) => answer,
        }
    }

    /// The field groups of `system` the principal may read under `purpose`; `None`: none.
    pub fn readable_fields_for(
        &self,
        purpose: Purpose,
        system: SourceSystem,
    ) -> Option<BTreeSet<FieldGroup>> {
        match self.answer_for(purpose, system) {
            Answer::Full(fields) => Some(fields),
            _ => None,
        }
    }

    pub fn authorities(&self) -> &BTreeSet<String> {
        &self.authorities
    }

    /// How much of `link` the principal sees, if anything. Links follow the data: read
    /// access counts (hit flags and writing alone do not). The responsible verifier sees
    /// the whole link; otherwise red to whoever reads either side (only that side shown
    /// when it reads one), white to whoever reads both, green only where the caller's own
    /// query matched both records (`both_matched`), yellow to nobody else.
    pub fn sight_of(&self, link: &StoredLink, both_matched: bool) -> Option<LinkSight> {
        if self.may_verify(link) {
            return Some(LinkSight::Whole);
        }
        let [a, b] = &link.records;
        let reads = [a, b].map(|r| self.readable_fields(r.system).is_some());
        match (link.colour, reads) {
            (LinkColour::Red | LinkColour::White, [true, true]) => Some(LinkSight::Whole),
            (LinkColour::Green, [true, true]) if both_matched => Some(LinkSight::Whole),
            (LinkColour::Red, [true, false]) => Some(LinkSight::OneSide(0)),
            (LinkColour::Red, [false, true]) => Some(LinkSight::OneSide(1)),
            _ => None,
        }
    }

    /// The link's responsible authority is one the principal acts for, and the policy lets
    /// the principal verify links of one of its systems.
    pub fn may_verify(&self, link: &StoredLink) -> bool {
        self.authorities.contains(&link.authority)
            && link.records.iter().any(|r| self.rights(r.system).verify)
    }

    /// The links this principal verifies: its queue.
    pub fn verifier_queue(&self) -> VerifierQueue {
        VerifierQueue {
            verifiable: self
                .systems
                .iter()
                .filter(|(_, rights)| rights.verify)
                .map(|(system, _)| *system)
                .collect(),
            authorities: self.authorities.iter().cloned().collect(),
        }
    }
}

/// A rule with its bookkeeping, as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PolicyRule {
    pub id: i64,
    #[serde(flatten)]
    pub rule: RuleSpec,
    /// A time-boxed grant lapses by itself at this instant.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// False once a time-boxed grant has lapsed.
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub reason: String,
}

/// One version of the policy: its enforcers and what they were built from.
struct PolicySnapshot {
    /// What permissions allow.
    enforcer: Enforcer,
    /// What denials refuse, whatever the permissions allow.
    denials: Enforcer,
    /// The g rules, for the authorities a principal acts for through assigned roles.
    assignments: Vec<(String, String)>,
    /// The first instant at which a rule in this version lapses.
    next_lapse: Option<OffsetDateTime>,
    /// The tokens this version refuses.
    revoked: Revoked,
    /// The store's policy version the rules were read at (read before them: a change that
    /// commits meanwhile moves it past this).
    version: i64,
    memo: Mutex<HashMap<Principal, Arc<Access>>>,
}

impl std::fmt::Debug for PolicySnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySnapshot")
            .field("next_lapse", &self.next_lapse)
            .finish_non_exhaustive()
    }
}

impl PolicySnapshot {
    async fn build(
        rules: &[CheckedRule],
        next_lapse: Option<OffsetDateTime>,
        revoked: Revoked,
        version: i64,
    ) -> Result<Self, HubError> {
        let mut permissions = Vec::new();
        let mut denials = Vec::new();
        let mut assignments = Vec::new();
        for rule in rules {
            let (ptype, v0, v1, v2) = rule.casbin_fields();
            match ptype {
                "p" => permissions.push(vec![v0, v1, v2]),
                "d" => denials.push(vec![v0, v1, v2]),
                _ => assignments.push((v0, v1)),
            }
        }
        assignments.sort();
        assignments.dedup();
        let grouping: Vec<Vec<String>> = assignments
            .iter()
            .map(|(member, role)| vec![member.clone(), role.clone()])
            .collect();
        Ok(Self {
            enforcer: enforcer(MODEL, permissions, grouping.clone()).await?,
            denials: enforcer(DENY_MODEL, denials, grouping).await?,
            assignments,
            next_lapse,
            revoked,
            version,
            memo: Mutex::new(HashMap::new()),
        })
    }

    /// A permission of one of `subjects` allows `action` on `scope`, and no denial of any
    /// of them refuses it.
    fn allowed(&self, subjects: &[String], scope: &str, action: Action) -> bool {
        let matches = |enforcer: &Enforcer, unevaluable: bool| {
            subjects.iter().any(|subject| {
                enforcer
                    .enforce((subject.as_str(), scope, action.as_str()))
                    .unwrap_or(unevaluable)
            })
        };
        // A matcher that cannot be evaluated permits nothing, and refuses everything.
        matches(&self.enforcer, false) && !matches(&self.denials, true)
    }

    /// Every role the principal holds: from the token, and assigned by g rules (also
    /// through roles that hold roles).
    fn roles_of(&self, principal: &Principal) -> BTreeSet<String> {
        let mut roles: BTreeSet<String> = principal
            .roles
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        let mut frontier: Vec<String> = roles.iter().cloned().collect();
        frontier.push(principal.rule_subject());
        frontier.push(principal.agency_subject());
        while let Some(member) = frontier.pop() {
            for (m, role) in &self.assignments {
                if *m == member && roles.insert(role.clone()) {
                    frontier.push(role.clone());
                }
            }
        }
        roles
    }

    fn access(&self, principal: &Principal) -> Arc<Access> {
        let mut memo = self
            .memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(access) = memo.get(principal) {
            return Arc::clone(access);
        }
        let access = Arc::new(self.decide(principal));
        if memo.len() >= ACCESS_MEMO_LIMIT {
            memo.clear();
        }
        memo.insert(principal.clone(), Arc::clone(&access));
        access
    }

    fn decide(&self, principal: &Principal) -> Access {
        let mut subjects = vec![principal.rule_subject(), principal.agency_subject()];
        subjects.extend(principal.roles.iter().map(|r| r.as_str().to_owned()));
        let mut systems = BTreeMap::new();
        for system in SourceSystem::ALL {
            let allowed = |action| self.allowed(&subjects, system.as_str(), action);
            let rights = SystemRights {
                fields: FieldGroup::ALL
                    .into_iter()
                    .filter(|group| allowed(Action::Read(*group)))
                    .collect(),
                hit_flag: allowed(Action::Hit),
                write: allowed(Action::Write),
                verify: allowed(Action::Verify),
                request_access: allowed(Action::RequestAccess),
            };
            if rights != SystemRights::default() {
                systems.insert(system, rights);
            }
        }
        let duties = HubDuty::ALL
            .into_iter()
            .filter(|duty| self.allowed(&subjects, "hub", Action::Duty(*duty)))
            .collect();
        let purposes = Purpose::ALL
            .into_iter()
            .filter(|purpose| self.allowed(&subjects, "hub", Action::Declare(*purpose)))
            .collect();
        let authorities = self
            .roles_of(principal)
            .iter()
            .filter_map(|role| authority_of(role))
            .flat_map(|authority| {
                // A link names the state of the record's authority when the record has
                // one; a record without a state is for that authority of every state.
                [
                    format!("{authority}:{}", principal.member_state),
                    authority.to_owned(),
                ]
            })
            .collect();
        Access {
            principal: principal.clone(),
            systems,
            duties,
            purposes,
            authorities,
            policy_version: self.version,
        }
    }
}

/// An enforcer of `model` holding `policies` and the role assignments `grouping`.
async fn enforcer(
    model: &str,
    mut policies: Vec<Vec<String>>,
    grouping: Vec<Vec<String>>,
) -> Result<Enforcer, HubError> {
    let internal = |e: casbin::Error| HubError::Internal(format!("policy engine: {e}"));
    let model = DefaultModel::from_str(model).await.map_err(internal)?;
    let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
        .await
        .map_err(internal)?;
    policies.sort();
    policies.dedup();
    if !policies.is_empty() {
        enforcer.add_policies(policies).await.map_err(internal)?;
    }
    if !grouping.is_empty() {
        enforcer
            .add_grouping_policies(grouping)
            .await
            .map_err(internal)?;
    }
    Ok(enforcer)
}

/// The verifying authority a role acts as (docs/RULES.md#who-verifies-a-link),
/// as `crate::mid::responsible_authority` names it.
fn authority_of(role: &str) -> Option<&'static str> {
    match role {
        "sirene" => Some("sirene"),
        "border_guard" => Some("border_authority"),
        "visa_authority" => Some("visa_authority"),
        "etias_unit" => Some("etias_unit"),
        "ecris_central_authority" => Some("ecris_central_authority"),
        _ => None,
    }
}

/// A change to the rules, as four eyes weigh it.
#[derive(Debug, Clone, Copy)]
pub enum RuleChangeKind<'a> {
    Add(&'a CheckedRule),
    Remove(&'a CheckedRule),
}

/// Changes an administrator proposes, for a dry run.
#[derive(Debug, Clone, Default)]
pub struct ProposedChanges {
    pub add: Vec<CheckedRule>,
    pub remove: Vec<i64>,
}

/// The live policy: the current snapshot, and the store that keeps the rules.
pub struct PolicyEngine {
    store: ControlStore,
    clock: Clock,
    metrics: Arc<HubMetrics>,
    current: ArcSwap<PolicySnapshot>,
    /// Changes are applied one at a time, so snapshots are swapped in the order made.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Loads the baseline into a new control database, then builds the first snapshot.
    pub async fn open(
        store: ControlStore,
        clock: Clock,
        metrics: Arc<HubMetrics>,
    ) -> Result<Self, HubError> {
        let now = clock.now();
        let baseline: Vec<NewRule> = parse_policy_csv(BASELINE)
            .map_err(|e| HubError::Internal(format!("baseline policy: {e}")))?
            .iter()
            .map(|rule| new_rule(rule, None, "baseline", "policies/baseline.csv"))
            .collect();
        if store.seed_once(&baseline, now).await? {
            tracing::info!(rules = baseline.len(), "baseline access policy loaded");
        }
        let snapshot = Self::build_current(&store, now, &ProposedChanges::default()).await?;
        Ok(Self {
            store,
            clock,
            metrics,
            current: ArcSwap::from_pointee(snapshot),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    async fn build_current(
        store: &ControlStore,
        now: OffsetDateTime,
        proposed: &ProposedChanges,
    ) -> Result<PolicySnapshot, HubError> {
        let version = store.policy_version().await?;
        let rows = store.rules().await?;
        let mut rules = Vec::new();
        let mut next_lapse: Option<OffsetDateTime> = None;
        for row in rows
            .iter()
            .filter(|row| row.expires_at.is_none_or(|at| at > now))
            .filter(|row| !proposed.remove.contains(&row.id))
        {
            let rule = checked(row)?;
            if let Some(at) = row.expires_at {
                next_lapse = Some(next_lapse.map_or(at, |n| n.min(at)));
            }
            rules.push(rule);
        }
        rules.extend(proposed.add.iter().cloned());
        let revocations = Self::revocations_in(store, now).await?;
        PolicySnapshot::build(&rules, next_lapse, Revoked::new(&revocations), version).await
    }

    async fn revocations_in(
        store: &ControlStore,
        now: OffsetDateTime,
    ) -> Result<Vec<Revocation>, HubError> {
        store
            .revocations(now)
            .await?
            .iter()
            .map(Revocation::from_row)
            .collect()
    }

    /// Rebuilds the snapshot if the store's policy version moved since it was built (a rule
    /// changed through another hub); answers whether it did.
    pub async fn follow(&self) -> Result<bool, HubError> {
        let version = self.store.policy_version().await?;
        self.catch_up(version).await
    }

    /// Rebuilds the snapshot unless it was built at `version` or later: an answer decided
    /// under an older one was found out when its audit entry was written.
    pub async fn catch_up(&self, version: i64) -> Result<bool, HubError> {
        if version <= self.current.load().version {
            return Ok(false);
        }
        let _one_at_a_time = self.changes.lock().await;
        if version <= self.current.load().version {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    /// The current snapshot; rebuilt first if a grant in it has lapsed.
    async fn snapshot(&self) -> Result<Arc<PolicySnapshot>, HubError> {
        let snapshot = self.current.load_full();
        let now = self.clock.now();
        if snapshot.next_lapse.is_none_or(|at| at > now) {
            return Ok(snapshot);
        }
        let _one_at_a_time = self.changes.lock().await;
        let snapshot = self.current.load_full();
        if snapshot.next_lapse.is_some_and(|at| at <= now) {
            self.reload().await?;
        }
        Ok(self.current.load_full())
    }

    async fn reload(&self) -> Result<(), HubError> {
        let now = self.clock.now();
        let snapshot = Self::build_current(&self.store, now, &ProposedChanges::default()).await?;
        self.current.store(Arc::new(snapshot));
        self.metrics.policy_swap();
        Ok(())
    }

    /// Refuses a token a revocation in force cuts short.
    pub async fn admit(&self, token: &VerifiedToken) -> Result<(), HubError> {
        if self.snapshot().await?.revoked.refuses(token) {
            return Err(HubError::Unauthenticated("the token has been revoked"));
        }
        Ok(())
    }

    /// The revocations in force, oldest first.
    pub async fn revocations(&self) -> Result<Vec<Revocation>, HubError> {
        Self::revocations_in(&self.store, self.clock.now()).await
    }

    /// Stores a revocation and swaps in the policy that includes it, before answering: the
    /// tokens it refuses are refused from the very next request. `forget_after`: when
    /// every token it refuses has expired, if known (a token signing out); otherwise the
    /// longest any token can live.
    pub async fn revoke(
        &self,
        target: RevocationTarget,
        forget_after: Option<OffsetDateTime>,
        by: &Principal,
        reason: &str,
    ) -> Result<Revocation, HubError> {
        let _one_at_a_time = self.changes.lock().await;
        let now = self.clock.now();
        let (kind, target) = target.stored();
        let row = self
            .store
            .add_revocation(&RevocationRow {
                id: 0,
                kind: kind.to_owned(),
                target,
                revoked_at: now,
                forget_after: forget_after.unwrap_or(now + LONGEST_REFUSAL),
                created_by: by.rule_subject(),
                reason: reason.to_owned(),
            })
            .await?;
        self.reload().await?;
        Revocation::from_row(&row)
    }

    /// What `principal` may do under the policy in force now.
    pub async fn access(&self, principal: &Principal) -> Result<Arc<Access>, HubError> {
        Ok(self.snapshot().await?.access(principal))
    }

    /// What `principal` would get under the current rules with `proposed` applied; the
    /// live policy is untouched.
    pub async fn simulate(
        &self,
        principal: &Principal,
        proposed: &ProposedChanges,
    ) -> Result<Access, HubError> {
        let snapshot = Self::build_current(&self.store, self.clock.now(), proposed).await?;
        Ok(snapshot.decide(principal))
    }

    pub async fn rules(&self) -> Result<Vec<PolicyRule>, HubError> {
        let now = self.clock.now();
        self.store
            .rules()
            .await?
            .iter()
            .map(|row| policy_rule(row, now))
            .collect()
    }

    /// Stores a rule and swaps in the policy that includes it, before answering.
    pub async fn add(
        &self,
        rule: &CheckedRule,
        expires_at: Option<OffsetDateTime>,
        by: &Principal,
        reason: &str,
    ) -> Result<PolicyRule, HubError> {
        let _one_at_a_time = self.changes.lock().await;
        let now = self.clock.now();
        let row = self
            .store
            .add_rule(&new_rule(rule, expires_at, &by.rule_subject(), reason), now)
            .await?
            .ok_or(HubError::RuleExists)?;
        self.reload().await?;
        policy_rule(&row, now)
    }

    /// Whether making `change` would widen anyone's access to personal data: a permission
    /// to read a field group, an assignment of a role that reads one (under the rules in
    /// force), or the removal of a denial of reading (or of everything).
    pub async fn widens_personal_data(
        &self,
        change: &RuleChangeKind<'_>,
    ) -> Result<bool, HubError> {
        Ok(match change {
            RuleChangeKind::Add(CheckedRule::Permission { action, .. }) => {
                matches!(action, Action::Read(_))
            }
            RuleChangeKind::Add(CheckedRule::Assignment { role, .. }) => {
                let snapshot = self.snapshot().await?;
                let subjects = [role.as_str().to_owned()];
                SourceSystem::ALL.into_iter().any(|system| {
                    FieldGroup::ALL.into_iter().any(|group| {
                        snapshot.allowed(&subjects, system.as_str(), Action::Read(group))
                    })
                })
            }
            RuleChangeKind::Add(CheckedRule::Denial { .. }) => false,
            RuleChangeKind::Remove(CheckedRule::Denial { action, .. }) => {
                matches!(action, None | Some(Action::Read(_)))
            }
            RuleChangeKind::Remove(_) => false,
        })
    }

    /// A rule as stored, by id.
    pub async fn rule(&self, id: i64) -> Result<CheckedRule, HubError> {
        let row = self.store.rule(id).await?.ok_or(HubError::RuleNotFound)?;
        checked(&row)
    }

    /// The rule a proposed change adds or removes.
    pub fn rule_of_change(change: &PolicyChangeRow) -> Result<CheckedRule, HubError> {
        let rule = &change.rule;
        CheckedRule::from_casbin(rule.ptype, &rule.v0, &rule.v1, &rule.v2).ok_or_else(|| {
            HubError::Internal(format!(
                "policy change {} names no rule the hub writes",
                change.id
            ))
        })
    }

    /// Stores a change for a second administrator to decide; nothing changes meanwhile.
    pub async fn propose(
        &self,
        change: &RuleChangeKind<'_>,
        rule_id: Option<i64>,
        expires_at: Option<OffsetDateTime>,
        by: &Principal,
        reason: &str,
    ) -> Result<PolicyChangeRow, HubError> {
        let (kind, rule) = match change {
            RuleChangeKind::Add(rule) => ("add", rule),
            RuleChangeKind::Remove(rule) => ("remove", rule),
        };
        Ok(self
            .store
            .propose_policy_change(&PolicyChangeRow {
                id: 0,
                change: kind.to_owned(),
                rule: new_rule(rule, expires_at, &by.rule_subject(), reason),
                rule_id,
                proposed_by: by.rule_subject(),
                proposed_at: self.clock.now(),
                status: "pending".to_owned(),
                decided_by: None,
                decided_at: None,
                decision_reason: None,
            })
            .await?)
    }

    /// Records a decision on a pending change; an approved one is made, and the policy that
    /// includes it swapped in, before answering. `None`: decided meanwhile.
    pub async fn decide_change(
        &self,
        decided: &PolicyChangeRow,
    ) -> Result<Option<PolicyChangeRow>, HubError> {
        let _one_at_a_time = self.changes.lock().await;
        let row = self.store.decide_policy_change(decided).await?;
        if row.as_ref().is_some_and(|row| row.status == "approved") {
            self.reload().await?;
        }
        Ok(row)
    }

    /// Deletes a rule and swaps in the policy without it, before answering.
    pub async fn remove(&self, id: i64) -> Result<PolicyRule, HubError> {
        let _one_at_a_time = self.changes.lock().await;
        let row = self
            .store
            .delete_rule(id)
            .await?
            .ok_or(HubError::RuleNotFound)?;
        self.reload().await?;
        policy_rule(&row, self.clock.now())
    }

    /// Applies a decided access request (and its grant's rules) and swaps in the result.
    pub async fn decide_request(
        &self,
        decided: &crate::store::AccessRequest,
        grant: &[CheckedRule],
        by: &Principal,
    ) -> Result<bool, HubError> {
        let _one_at_a_time = self.changes.lock().await;
        let reason = format!("access request {}", decided.id);
        let rules: Vec<NewRule> = grant
            .iter()
            .map(|rule| new_rule(rule, decided.grant_expires_at, &by.rule_subject(), &reason))
            .collect();
        let applied = self.store.decide_access_request(decided, &rules).await?;
        if applied {
            self.reload().await?;
        }
        Ok(applied)
    }
}

/// The rules giving one principal full access to one system, for a grant.
pub fn full_access_rules(principal: &Principal, system: SourceSystem) -> Vec<CheckedRule> {
    FieldGroup::ALL
        .into_iter()
        .map(|group| CheckedRule::Permission {
            subject: Member::User {
                agency: principal.agency.clone(),
                subject: principal.subject.clone(),
            },
            scope: super::Scope::System(system),
            action: Action::Read(group),
        })
        .collect()
}

fn new_rule(
    rule: &CheckedRule,
    expires_at: Option<OffsetDateTime>,
    by: &str,
    reason: &str,
) -> NewRule {
    let (ptype, v0, v1, v2) = rule.casbin_fields();
    NewRule {
        ptype,
        v0,
        v1,
        v2,
        expires_at,
        created_by: by.to_owned(),
        reason: reason.to_owned(),
    }
}

fn checked(row: &RuleRow) -> Result<CheckedRule, HubError> {
    CheckedRule::from_casbin(&row.ptype, &row.v0, &row.v1, &row.v2).ok_or_else(|| {
        HubError::Internal(format!("policy rule {} is not one the hub writes", row.id))
    })
}

fn policy_rule(row: &RuleRow, now: OffsetDateTime) -> Result<PolicyRule, HubError> {
    Ok(PolicyRule {
        id: row.id,
        rule: checked(row)?.spec(),
        expires_at: row.expires_at,
        active: row.expires_at.is_none_or(|at| at > now),
        created_at: row.created_at,
        created_by: row.created_by.clone(),
        reason: row.reason.clone(),
    })
}
