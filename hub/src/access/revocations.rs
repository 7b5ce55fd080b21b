//! Revoked credentials: one token, or every token of one principal or one agency issued up
//! to a moment. Kept in the control store as part of the policy, so that every hub refuses
//! them from the change on.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::token::START_LEEWAY;
use super::{Principal, TokenId, VerifiedToken};
use crate::error::HubError;
use crate::store::RevocationRow;

/// How long after a revocation a token it refuses can still be unexpired: the longest
/// lifetime any setting admits (366 days), plus the minute a token's issue may lie ahead.
pub(super) const LONGEST_REFUSAL: time::Duration = time::Duration::minutes(366 * 24 * 60 + 1);

/// What a revocation cuts short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RevocationTarget {
    /// One token, by its id (`interop-hub token` prints it).
    Token { token_id: TokenId },
    /// Every token of one principal issued up to the revocation; tokens issued later are
    /// admitted (a deny rule blocks the principal for good).
    Principal {
        #[schema(example = "BKA")]
        agency: String,
        #[schema(example = "k.weber")]
        subject: String,
    },
    /// Every token of every principal of one agency issued up to the revocation.
    Agency {
        #[schema(example = "BKA")]
        agency: String,
    },
}

impl RevocationTarget {
    /// Checks the names a target carries, as a principal's are checked.
    pub fn check(self) -> Result<Self, &'static str> {
        match &self {
            Self::Token { .. } => {}
            Self::Principal { agency, subject } => {
                Principal::new(subject.as_str(), agency.as_str(), "EU", Vec::new())?;
            }
            Self::Agency { agency } => {
                Principal::new("-", agency.as_str(), "EU", Vec::new())?;
            }
        }
        Ok(self)
    }

    /// The store's (kind, target).
    pub(super) fn stored(&self) -> (&'static str, String) {
        match self {
            Self::Token { token_id } => ("token", token_id.as_str().to_owned()),
            Self::Principal { agency, subject } => ("principal", format!("{agency}/{subject}")),
            Self::Agency { agency } => ("agency", agency.clone()),
        }
    }

    fn from_stored(kind: &str, target: &str) -> Option<Self> {
        match kind {
            "token" => TokenId::try_from(target.to_owned())
                .ok()
                .map(|token_id| Self::Token { token_id }),
            "principal" => target
                .split_once('/')
                .map(|(agency, subject)| Self::Principal {
                    agency: agency.to_owned(),
                    subject: subject.to_owned(),
                }),
            "agency" => Some(Self::Agency {
                agency: target.to_owned(),
            }),
            _ => None,
        }
    }
}

/// A revocation in force, as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Revocation {
    pub id: i64,
    #[serde(flatten)]
    pub target: RevocationTarget,
    /// Tokens of the principal or agency issued up to this instant are refused.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub revoked_at: OffsetDateTime,
    /// Every token it refuses has expired by then, and the hub forgets it.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub forget_after: OffsetDateTime,
    pub created_by: String,
    pub reason: String,
}

impl Revocation {
    pub(super) fn from_row(row: &RevocationRow) -> Result<Self, HubError> {
        let target = RevocationTarget::from_stored(&row.kind, &row.target).ok_or_else(|| {
            HubError::Internal(format!("revocation {} is not one the hub writes", row.id))
        })?;
        Ok(Self {
            id: row.id,
            target,
            revoked_at: row.revoked_at,
            forget_after: row.forget_after,
            created_by: row.created_by.clone(),
            reason: row.reason.clone(),
        })
    }
}

/// The revocations of one policy version, for refusing tokens at once.
#[derive(Debug, Default)]
pub(super) struct Revoked {
    tokens: HashSet<TokenId>,
    /// By agency, then subject: the latest instant up to which its tokens are refused.
    principals: HashMap<String, HashMap<String, OffsetDateTime>>,
    agencies: HashMap<String, OffsetDateTime>,
}

impl Revoked {
    pub(super) fn new(revocations: &[Revocation]) -> Self {
        let mut revoked = Self::default();
        let latest = |slot: &mut OffsetDateTime, at: OffsetDateTime| *slot = (*slot).max(at);
        for revocation in revocations {
            let at = revocation.revoked_at;
            match &revocation.target {
                RevocationTarget::Token { token_id } => {
                    revoked.tokens.insert(token_id.clone());
                }
                RevocationTarget::Principal { agency, subject } => latest(
                    revoked
                        .principals
                        .entry(agency.clone())
                        .or_default()
                        .entry(subject.clone())
                        .or_insert(at),
                    at,
                ),
                RevocationTarget::Agency { agency } => {
                    latest(revoked.agencies.entry(agency.clone()).or_insert(at), at);
                }
            }
        }
        revoked
    }

    /// Whether a revocation refuses `token`. A token's issue time is its signer's clock,
    /// which may run up to a minute ahead of this hub's (the leeway `verify` grants): one
    /// issued up to a minute after a revocation counts as issued before it.
    pub(super) fn refuses(&self, token: &VerifiedToken) -> bool {
        let principal = &token.principal;
        let issued_by = |revoked_at: Option<&OffsetDateTime>| {
            revoked_at.is_some_and(|at| token.issued_at <= *at + START_LEEWAY)
        };
        self.tokens.contains(&token.token_id)
            || issued_by(
                self.principals
                    .get(&principal.agency)
                    .and_then(|subjects| subjects.get(&principal.subject)),
            )
            || issued_by(self.agencies.get(&principal.agency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(subject: &str, agency: &str, issued_at: OffsetDateTime, id: &str) -> VerifiedToken {
        VerifiedToken {
            principal: Principal::new(subject, agency, "DE", Vec::new())
                .unwrap_or_else(|e| panic!("{e}")),
            token_id: TokenId::try_from(id.to_owned()).unwrap_or_else(|e| panic!("{e}")),
            issued_at,
            expires_at: issued_at + time::Duration::hours(1),
        }
    }

    fn revocation(target: RevocationTarget, revoked_at: OffsetDateTime) -> Revocation {
        Revocation {
            id: 1,
            target,
            revoked_at,
            forget_after: revoked_at + LONGEST_REFUSAL,
            created_by: "user:HUB/admin".to_owned(),
            reason: "left the service".to_owned(),
        }
    }

    #[test]
    fn a_revocation_refuses_its_token_or_the_tokens_issued_before_it_and_no_other() {
        let at =
            OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or_else(|e| panic!("{e}"));
        let before = at - time::Duration::minutes(5);
        // A minute's leeway for a signer's clock ahead, and the revocation's own second.
        let after = at + time::Duration::seconds(61);
        let within_leeway = at + time::Duration::milliseconds(59_500);
        let revoked = Revoked::new(&[
            revocation(
                RevocationTarget::Token {
                    token_id: TokenId::try_from("t-1".to_owned()).unwrap_or_else(|e| panic!("{e}")),
                },
                at,
            ),
            revocation(
                RevocationTarget::Principal {
                    agency: "BKA".to_owned(),
                    subject: "k.weber".to_owned(),
                },
                before,
            ),
            // A later revocation of the same principal moves its instant on.
            revocation(
                RevocationTarget::Principal {
                    agency: "BKA".to_owned(),
                    subject: "k.weber".to_owned(),
                },
                at,
            ),
            revocation(
                RevocationTarget::Agency {
                    agency: "SIRENE-IT".to_owned(),
                },
                at,
            ),
        ]);
        assert!(revoked.refuses(&token("a.other", "BPOL", after, "t-1")));
        assert!(!revoked.refuses(&token("a.other", "BPOL", before, "t-2")));
        assert!(revoked.refuses(&token("k.weber", "BKA", at, "t-3")));
        assert!(revoked.refuses(&token("k.weber", "BKA", before, "t-4")));
        assert!(!revoked.refuses(&token("k.weber", "BKA", after, "t-5")));
        assert!(revoked.refuses(&token("k.weber", "BKA", within_leeway, "t-9")));
        assert!(!revoked.refuses(&token("m.bauer", "BKA", before, "t-6")));
        assert!(revoked.refuses(&token("m.rossi", "SIRENE-IT", before, "t-7")));
        assert!(!revoked.refuses(&token("m.rossi", "SIRENE-IT", after, "t-8")));
    }

    #[test]
    fn targets_are_checked_and_round_trip_through_the_store() {
        let principal = RevocationTarget::Principal {
            agency: "BKA".to_owned(),
            subject: "k.weber".to_owned(),
        };
        let (kind, target) = principal.stored();
        assert_eq!(
            RevocationTarget::from_stored(kind, &target),
            Some(principal.clone())
        );
        assert!(principal.check().is_ok());
        assert!(
            RevocationTarget::Agency {
                agency: "B/KA".to_owned()
            }
            .check()
            .is_err()
        );
        assert!(
            RevocationTarget::Principal {
                agency: "BKA".to_owned(),
                subject: String::new()
            }
            .check()
            .is_err()
        );
    }
}
