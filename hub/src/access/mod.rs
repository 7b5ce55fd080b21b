//! Access control: who a caller is (a principal from a signed token), what the policy lets
//! them do (an [`Access`] only the policy engine can mint), and the vocabulary of rules.

mod engine;
mod keys;
mod revocations;
mod rules;
mod token;

pub use engine::{
    Access, Answer, LinkSight, PolicyEngine, PolicyRule, ProposedChanges, RuleChangeKind,
    SystemRights, full_access_rules,
};
pub(crate) use keys::new_ed25519_pem;
pub use keys::{KeyDirectory, KeyId, KeyState};
pub use revocations::{Revocation, RevocationTarget};
pub use rules::{Action, CheckedRule, FieldGroup, HubDuty, Member, Purpose, RuleSpec, Scope};
pub use token::{
    LONGEST_TOKEN_LIFETIME, TokenAuthority, TokenId, VerifiedToken, parse_ttl,
    unverified_member_state, unverified_token_id,
};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::HubError;

/// A role name: lower-case words (`border_guard`), optionally qualified (`connector:ees`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "border_guard")]
pub struct Role(String);

impl Role {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Role {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        const ERROR: &str =
            "a role is lower-case letters, digits and _, optionally followed by :qualifier";
        let (name, qualifier) = match text.split_once(':') {
            Some((name, qualifier)) => (name, Some(qualifier)),
            None => (text.as_str(), None),
        };
        let name_ok = name.len() <= 48
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let qualifier_ok = qualifier.is_none_or(|q| {
            !q.is_empty()
                && q.len() <= 32
                && q.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
        // "user:" and "agency:" name principals and agencies in rules: a role must never be
        // mistaken for one.
        if name_ok && qualifier_ok && name != "user" && name != "agency" {
            Ok(Self(text))
        } else {
            Err(ERROR)
        }
    }
}

impl From<Role> for String {
    fn from(role: Role) -> Self {
        role.0
    }
}

impl std::str::FromStr for Role {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::try_from(text.to_owned())
    }
}

/// An authenticated caller: a person or system of an agency of a member state, with roles.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// Who, within the agency (an officer's or a system's id).
    pub subject: String,
    /// The agency, e.g. `BPOL`, `BKA`, `SIRENE-IT`.
    pub agency: String,
    /// ISO 3166-1 alpha-2, or `EU` for Union bodies.
    pub member_state: String,
    pub roles: Vec<Role>,
}

impl Principal {
    /// Checks the identity fields: short, printable, and free of the `/` that separates
    /// agency and subject in rules.
    pub fn new(
        subject: impl Into<String>,
        agency: impl Into<String>,
        member_state: impl Into<String>,
        roles: Vec<Role>,
    ) -> Result<Self, &'static str> {
        let principal = Self {
            subject: subject.into(),
            agency: agency.into(),
            member_state: member_state.into(),
            roles,
        };
        principal.check()?;
        Ok(principal)
    }

    fn check(&self) -> Result<(), &'static str> {
        let name_ok = |s: &str| {
            !s.is_empty() && s.len() <= 128 && !s.contains('/') && !s.chars().any(char::is_control)
        };
        if !name_ok(&self.subject) {
            return Err("subject: 1-128 printable characters without /");
        }
        if !name_ok(&self.agency) {
            return Err("agency: 1-128 printable characters without /");
        }
        let state = &self.member_state;
        if !(state.len() == 2 && state.chars().all(|c| c.is_ascii_uppercase())) {
            return Err("member_state: two upper-case letters (ISO 3166-1 alpha-2, or EU)");
        }
        Ok(())
    }

    /// The principal's own name in rules: `user:<agency>/<subject>`.
    pub fn rule_subject(&self) -> String {
        format!("user:{}/{}", self.agency, self.subject)
    }

    /// The principal's agency's name in rules: `agency:<agency>`.
    pub fn agency_subject(&self) -> String {
        format!("agency:{}", self.agency)
    }
}

/// Checks a principal arriving from outside (a simulation's body).
pub fn checked_principal(principal: Principal) -> Result<Principal, HubError> {
    principal
        .check()
        .map_err(|message| HubError::InvalidRequest(message.to_owned()))?;
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_principals_are_checked_when_made() {
        for good in [
            "border_guard",
            "connector:ees",
            "connector:ecris-tcn",
            "le_designated",
        ] {
            assert!(good.parse::<Role>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "Admin",
            "user:x",
            "agency:x",
            "a b",
            "connector:",
            "x:Y",
            "1role",
        ] {
            assert!(bad.parse::<Role>().is_err(), "{bad}");
        }
        assert!(Principal::new("k.weber", "BKA", "DE", vec![]).is_ok());
        assert!(Principal::new("k/weber", "BKA", "DE", vec![]).is_err());
        assert!(Principal::new("k.weber", "BKA", "de", vec![]).is_err());
        assert!(Principal::new("", "BKA", "DE", vec![]).is_err());
    }
}
