//! The vocabulary of access rules: systems (scopes), actions, field groups, and a rule as
//! administrators write it — each parsed once, at the edge.

use connectors::SourceSystem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Role;

/// A group of a record's fields that a policy shows or hides as a whole.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FieldGroup {
    /// Names and aliases, date and place of birth, sex, nationalities.
    Identity,
    /// Travel documents.
    Documents,
    /// Biometric templates.
    Biometrics,
    /// The issuing member state, system-specific attributes and data-quality findings.
    SystemData,
}

impl FieldGroup {
    pub const ALL: [Self; 4] = [
        Self::Identity,
        Self::Documents,
        Self::Biometrics,
        Self::SystemData,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Documents => "documents",
            Self::Biometrics => "biometrics",
            Self::SystemData => "system_data",
        }
    }
}

/// A duty that concerns the hub as a whole rather than one system's data.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HubDuty {
    /// Manage access rules and decide access requests.
    Administer,
    /// Read the audit log.
    Audit,
    /// Watch the biometric indexes and the metrics.
    Operate,
    /// Read the anonymised statistics and the data-quality report.
    Statistics,
}

impl HubDuty {
    pub const ALL: [Self; 4] = [
        Self::Administer,
        Self::Audit,
        Self::Operate,
        Self::Statistics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Administer => "administer",
            Self::Audit => "audit",
            Self::Operate => "operate",
            Self::Statistics => "statistics",
        }
    }
}

/// Why the caller searches; recorded in the audit log with every query.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    BorderCheck,
    VisaExamination,
    TravelAuthorisation,
    /// A police identity check by live biometrics (CIR Art. 20): biometric probes
    /// required, never answered for children under 12.
    IdentityCheck,
    /// Prevention, detection or investigation of terrorist offences or other serious
    /// crime (CIR Art. 22).
    SeriousCrime,
    AlertHandling,
    CriminalRecords,
    MultipleIdentityVerification,
    /// A source system keeping its own records: pushing, reading back and deleting what
    /// it writes. Declarable by whoever may write to a system, for that system only.
    RecordManagement,
}

impl Purpose {
    pub const ALL: [Self; 9] = [
        Self::BorderCheck,
        Self::VisaExamination,
        Self::TravelAuthorisation,
        Self::IdentityCheck,
        Self::SeriousCrime,
        Self::AlertHandling,
        Self::CriminalRecords,
        Self::MultipleIdentityVerification,
        Self::RecordManagement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BorderCheck => "border_check",
            Self::VisaExamination => "visa_examination",
            Self::TravelAuthorisation => "travel_authorisation",
            Self::IdentityCheck => "identity_check",
            Self::SeriousCrime => "serious_crime",
            Self::AlertHandling => "alert_handling",
            Self::CriminalRecords => "criminal_records",
            Self::MultipleIdentityVerification => "multiple_identity_verification",
            Self::RecordManagement => "record_management",
        }
    }
}

/// What a rule permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Push and delete records (connectors).
    Write,
    /// See one group of a record's fields, in reads and search answers.
    Read(FieldGroup),
    /// Learn only whether the system holds data on a person.
    Hit,
    /// Decide links as the responsible authority.
    Verify,
    /// Ask for full access after a hit flag.
    RequestAccess,
    Duty(HubDuty),
    /// Search for this purpose (the rule's system is `hub`).
    Declare(Purpose),
}

impl Action {
    /// Every action on a system's data.
    pub fn on_systems() -> impl Iterator<Item = Self> {
        [Self::Write, Self::Hit, Self::Verify, Self::RequestAccess]
            .into_iter()
            .chain(FieldGroup::ALL.into_iter().map(Self::Read))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Read(FieldGroup::Identity) => "read:identity",
            Self::Read(FieldGroup::Documents) => "read:documents",
            Self::Read(FieldGroup::Biometrics) => "read:biometrics",
            Self::Read(FieldGroup::SystemData) => "read:system_data",
            Self::Hit => "hit",
            Self::Verify => "verify",
            Self::RequestAccess => "request_access",
            Self::Duty(duty) => duty.as_str(),
            Self::Declare(purpose) => match purpose {
                Purpose::BorderCheck => "purpose:border_check",
                Purpose::VisaExamination => "purpose:visa_examination",
                Purpose::TravelAuthorisation => "purpose:travel_authorisation",
                Purpose::IdentityCheck => "purpose:identity_check",
                Purpose::SeriousCrime => "purpose:serious_crime",
                Purpose::AlertHandling => "purpose:alert_handling",
                Purpose::CriminalRecords => "purpose:criminal_records",
                Purpose::MultipleIdentityVerification => "purpose:multiple_identity_verification",
                Purpose::RecordManagement => "purpose:record_management",
            },
        }
    }

    /// Duties and purposes: actions on the hub, not on a system's data.
    pub fn is_hub_wide(self) -> bool {
        matches!(self, Self::Duty(_) | Self::Declare(_))
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::on_systems()
            .chain(HubDuty::ALL.into_iter().map(Self::Duty))
            .chain(Purpose::ALL.into_iter().map(Self::Declare))
            .find(|a| a.as_str() == text)
    }
}

/// Where a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    System(SourceSystem),
    /// `*`: every system.
    AllSystems,
    /// `hub`: hub-wide duties.
    Hub,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System(system) => system.as_str(),
            Self::AllSystems => "*",
            Self::Hub => "hub",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "*" => Some(Self::AllSystems),
            "hub" => Some(Self::Hub),
            other => other.parse().ok().map(Self::System),
        }
    }
}

/// Who a rule is about: a role, one principal (`user:<agency>/<subject>`), or every
/// principal of one agency (`agency:<agency>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Member {
    Role(Role),
    User { agency: String, subject: String },
    Agency(String),
}

impl Member {
    pub fn as_rule_text(&self) -> String {
        match self {
            Self::Role(role) => role.as_str().to_owned(),
            Self::User { agency, subject } => format!("user:{agency}/{subject}"),
            Self::Agency(agency) => format!("agency:{agency}"),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        if let Some(user) = text.strip_prefix("user:") {
            let (agency, subject) = user.split_once('/')?;
            let principal = super::Principal::new(subject, agency, "EU", Vec::new()).ok()?;
            return Some(Self::User {
                agency: principal.agency,
                subject: principal.subject,
            });
        }
        if let Some(agency) = text.strip_prefix("agency:") {
            let principal = super::Principal::new("-", agency, "EU", Vec::new()).ok()?;
            return Some(Self::Agency(principal.agency));
        }
        text.parse().ok().map(Self::Role)
    }
}

/// `*` in a denial's action: every action.
const EVERY_ACTION: &str = "*";

/// A rule as administrators write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleSpec {
    /// `subject` (a role or `user:<agency>/<subject>`) may do `action` on `system`.
    Permission {
        #[schema(example = "le_designated")]
        subject: String,
        /// ees, etias, vis, sis, ecris-tcn, `*` (every system) or `hub`.
        #[schema(example = "ees")]
        system: String,
        /// write, read:identity, read:documents, read:biometrics, read:system_data, hit,
        /// verify, request_access, administer, audit, operate, statistics,
        /// purpose:<purpose>.
        #[schema(example = "hit")]
        action: String,
    },
    /// `member` (a principal, an agency or a role) holds `role`.
    Assignment {
        #[schema(example = "user:BKA/k.weber")]
        member: String,
        #[schema(example = "le_designated")]
        role: String,
    },
    /// `subject` may not do `action` on `system`, whatever any permission says: blocks one
    /// officer, one agency or one role at once without touching the role's rules.
    Denial {
        #[schema(example = "user:BKA/k.weber")]
        subject: String,
        /// A system, `*` (every system and the hub's duties) or `hub`.
        #[schema(example = "*")]
        system: String,
        /// Any action a permission names, or `*` (every action).
        #[schema(example = "*")]
        action: String,
    },
}

/// A rule checked against the vocabulary, as casbin stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckedRule {
    Permission {
        subject: Member,
        scope: Scope,
        action: Action,
    },
    Assignment {
        member: Member,
        role: Role,
    },
    /// `action` `None`: every action; scope `AllSystems`: every system and the hub.
    Denial {
        subject: Member,
        scope: Scope,
        action: Option<Action>,
    },
}

impl CheckedRule {
    /// casbin's (ptype, v0, v1, v2).
    pub fn casbin_fields(&self) -> (&'static str, String, String, String) {
        match self {
            Self::Permission {
                subject,
                scope,
                action,
            } => (
                "p",
                subject.as_rule_text(),
                scope.as_str().to_owned(),
                action.as_str().to_owned(),
            ),
            Self::Assignment { member, role } => (
                "g",
                member.as_rule_text(),
                role.as_str().to_owned(),
                String::new(),
            ),
            Self::Denial {
                subject,
                scope,
                action,
            } => (
                "d",
                subject.as_rule_text(),
                scope.as_str().to_owned(),
                action.map_or(EVERY_ACTION, Action::as_str).to_owned(),
            ),
        }
    }

    pub fn from_casbin(ptype: &str, v0: &str, v1: &str, v2: &str) -> Option<Self> {
        match ptype {
            "p" => Some(Self::Permission {
                subject: Member::parse(v0)?,
                scope: Scope::parse(v1)?,
                action: Action::parse(v2)?,
            }),
            "g" if v2.is_empty() => Some(Self::Assignment {
                member: Member::parse(v0)?,
                role: v1.parse().ok()?,
            }),
            "d" => Some(Self::Denial {
                subject: Member::parse(v0)?,
                scope: Scope::parse(v1)?,
                action: if v2 == EVERY_ACTION {
                    None
                } else {
                    Some(Action::parse(v2)?)
                },
            }),
            _ => None,
        }
    }

    pub fn spec(&self) -> RuleSpec {
        let (_, v0, v1, v2) = self.casbin_fields();
        match self {
            Self::Permission { .. } => RuleSpec::Permission {
                subject: v0,
                system: v1,
                action: v2,
            },
            Self::Assignment { .. } => RuleSpec::Assignment {
                member: v0,
                role: v1,
            },
            Self::Denial { .. } => RuleSpec::Denial {
                subject: v0,
                system: v1,
                action: v2,
            },
        }
    }
}

const HUB_WIDE_ERROR: &str = "system: duties and purposes apply to hub, other actions to systems";
const SUBJECT_ERROR: &str = "subject: a role, user:<agency>/<subject> or agency:<agency>";
const SYSTEM_ERROR: &str = "system: ees, etias, vis, sis, ecris-tcn, * or hub";
const ACTION_ERROR: &str = "action: write, read:identity, read:documents, read:biometrics, \
     read:system_data, hit, verify, request_access, administer, audit, operate, statistics or \
     purpose:<purpose>";

impl RuleSpec {
    /// Checks every part against the vocabulary; the message names the part that is wrong.
    pub fn check(&self) -> Result<CheckedRule, &'static str> {
        match self {
            Self::Permission {
                subject,
                system,
                action,
            } => {
                let (subject, scope) = subject_and_scope(subject, system)?;
                let action = Action::parse(action).ok_or(ACTION_ERROR)?;
                if action.is_hub_wide() != (scope == Scope::Hub) {
                    return Err(HUB_WIDE_ERROR);
                }
                Ok(CheckedRule::Permission {
                    subject,
                    scope,
                    action,
                })
            }
            Self::Assignment { member, role } => Ok(CheckedRule::Assignment {
                member: Member::parse(member)
                    .ok_or("member: a role, user:<agency>/<subject> or agency:<agency>")?,
                role: role
                    .parse()
                    .map_err(|_| "role: a role name such as le_designated")?,
            }),
            Self::Denial {
                subject,
                system,
                action,
            } => {
                let (subject, scope) = subject_and_scope(subject, system)?;
                let action = if action == EVERY_ACTION {
                    None
                } else {
                    Some(Action::parse(action).ok_or(ACTION_ERROR)?)
                };
                // `*` reaches every system and the hub; a named one only its own actions.
                if let Some(action) = action
                    && scope != Scope::AllSystems
                    && action.is_hub_wide() != (scope == Scope::Hub)
                {
                    return Err(HUB_WIDE_ERROR);
                }
                Ok(CheckedRule::Denial {
                    subject,
                    scope,
                    action,
                })
            }
        }
    }
}

/// A permission's or denial's subject and system, checked.
fn subject_and_scope(subject: &str, system: &str) -> Result<(Member, Scope), &'static str> {
    Ok((
        Member::parse(subject).ok_or(SUBJECT_ERROR)?,
        Scope::parse(system).ok_or(SYSTEM_ERROR)?,
    ))
}

/// Parses the baseline policy file: `p, subject, system, action`, `d, subject, system,
/// action` and `g, member, role`.
pub(super) fn parse_policy_csv(text: &str) -> Result<Vec<CheckedRule>, String> {
    let mut rules = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let rule = match fields.as_slice() {
            [kind @ ("p" | "d"), subject, system, action] => {
                CheckedRule::from_casbin(kind, subject, system, action)
            }
            ["g", member, role] => CheckedRule::from_casbin("g", member, role, ""),
            _ => None,
        };
        rules.push(rule.ok_or_else(|| format!("line {}: not a rule", number + 1))?);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_policy_parses_and_rules_are_checked() {
        let baseline = parse_policy_csv(include_str!("../../../policies/baseline.csv"))
            .unwrap_or_else(|e| panic!("baseline: {e}"));
        assert!(baseline.len() > 100);
        let good = RuleSpec::Permission {
            subject: "le_designated".into(),
            system: "ees".into(),
            action: "hit".into(),
        };
        let checked = good.check().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(checked.spec(), good);
        let wrong_scope = RuleSpec::Permission {
            subject: "admin".into(),
            system: "ees".into(),
            action: "administer".into(),
        };
        assert!(wrong_scope.check().is_err());
        let bad_member = RuleSpec::Assignment {
            member: "user:no-slash".into(),
            role: "police".into(),
        };
        assert!(bad_member.check().is_err());
        assert!(parse_policy_csv("p, police, ees").is_err());
    }

    #[test]
    fn denials_name_every_action_or_system_and_round_trip_through_casbin() {
        let every = RuleSpec::Denial {
            subject: "agency:BKA".into(),
            system: "*".into(),
            action: "*".into(),
        };
        let checked = every.check().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            checked,
            CheckedRule::Denial {
                subject: Member::Agency("BKA".into()),
                scope: Scope::AllSystems,
                action: None,
            }
        );
        let (ptype, v0, v1, v2) = checked.casbin_fields();
        assert_eq!(
            CheckedRule::from_casbin(ptype, &v0, &v1, &v2),
            Some(checked.clone())
        );
        assert_eq!(checked.spec(), every);
        let duty_everywhere = RuleSpec::Denial {
            subject: "user:BKA/k.weber".into(),
            system: "*".into(),
            action: "administer".into(),
        };
        assert!(duty_everywhere.check().is_ok());
        let duty_on_a_system = RuleSpec::Denial {
            subject: "user:BKA/k.weber".into(),
            system: "ees".into(),
            action: "administer".into(),
        };
        assert_eq!(duty_on_a_system.check(), Err(HUB_WIDE_ERROR));
        assert!(
            RuleSpec::Permission {
                subject: "police".into(),
                system: "ees".into(),
                action: "*".into(),
            }
            .check()
            .is_err(),
            "only a denial names every action"
        );
    }
}
