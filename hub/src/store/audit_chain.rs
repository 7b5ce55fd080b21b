//! The audit log's entries and their hash chain: what is recorded of every search, read,
//! ingest, verification, access request and policy change (who, which agency, purpose,
//! when, what kind of query, what kind of result — never personal data), and how a
//! broken chain is found.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The hash the first entry chains to.
pub(super) const GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// One thing to record, before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub subject: String,
    pub agency: String,
    pub member_state: String,
    /// The purpose the caller declared, or the kind of duty (`ingest`, `administration`).
    pub purpose: String,
    /// What was done: `search`, `read`, `ingest`, `delete`, `verify`, `policy_add`, …
    pub action: String,
    /// The kind of query: systems, kinds of data searched by — never the values.
    pub query: String,
    /// The kind of result: per system full / hit flag / refused, counts, status.
    pub outcome: String,
}

/// An entry as stored: its place in the chain and the hashes that hold it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: OffsetDateTime,
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// SHA-256 over the previous hash and every field, each length-prefixed so that no two
/// different entries serialise alike.
pub(super) fn chain_hash(prev_hash: &str, seq: i64, at_millis: i64, event: &AuditEvent) -> String {
    let mut hasher = Sha256::new();
    let fields: [&str; 9] = [
        prev_hash,
        &seq.to_string(),
        &at_millis.to_string(),
        &event.subject,
        &event.agency,
        &event.member_state,
        &event.purpose,
        &event.action,
        &event.query,
    ];
    for field in fields
        .iter()
        .chain(std::iter::once(&event.outcome.as_str()))
    {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq}: its hash does not match its content (altered)")]
    Altered { seq: i64 },
    #[error("entry {seq}: missing after entry {previous} (deleted)")]
    Gap { seq: i64, previous: i64 },
    #[error("entry {seq}: its previous-hash does not match entry {previous}'s hash")]
    Unlinked { seq: i64, previous: i64 },
    #[error("entry {seq}: the log ends before it (deleted), though the head records it")]
    Truncated { seq: i64 },
    #[error("the log holds entries after the recorded head {head}: entry {seq}")]
    BeyondHead { seq: i64, head: i64 },
}

/// Where the chain ends: the last entry's sequence number and hash (0 and the genesis hash
/// for an empty chain).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChainEnd {
    pub seq: i64,
    pub hash: String,
}

impl ChainEnd {
    /// The end of an empty chain.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// Walks the chain page by page, checking each entry against its predecessor.
#[derive(Debug)]
pub(super) struct ChainVerifier {
    previous: ChainEnd,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            previous: ChainEnd::genesis(),
            checked: 0,
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry in sequence order.
    pub(super) fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let ChainEnd {
            seq: previous_seq,
            hash: previous_hash,
        } = &self.previous;
        if entry.seq != previous_seq + 1 {
            return Err(ChainBreak::Gap {
                seq: previous_seq + 1,
                previous: *previous_seq,
            });
        }
        let at_millis = crate::store::unix_millis(entry.at);
        if chain_hash(&entry.prev_hash, entry.seq, at_millis, &entry.event) != entry.hash {
            return Err(ChainBreak::Altered { seq: entry.seq });
        }
        if &entry.prev_hash != previous_hash {
            return Err(ChainBreak::Unlinked {
                seq: entry.seq,
                previous: *previous_seq,
            });
        }
        self.previous = ChainEnd {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        self.checked += 1;
        Ok(())
    }

    /// After the last entry: the chain must end where the recorded head says.
    pub(super) fn finish(&self, head: Option<ChainEnd>) -> Result<u64, ChainBreak> {
        let last = &self.previous;
        match head {
            None if last.seq == 0 => Ok(self.checked),
            None => Err(ChainBreak::BeyondHead { seq: 1, head: 0 }),
            Some(head) if head.seq > last.seq => Err(ChainBreak::Truncated { seq: last.seq + 1 }),
            Some(head) if head.seq < last.seq => Err(ChainBreak::BeyondHead {
                seq: head.seq + 1,
                head: head.seq,
            }),
            Some(head) if head.hash != last.hash => Err(ChainBreak::Altered { seq: last.seq }),
            Some(_) => Ok(self.checked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str) -> AuditEvent {
        AuditEvent {
            subject: "officer-1".into(),
            agency: "BPOL".into(),
            member_state: "DE".into(),
            purpose: "border_check".into(),
            action: action.into(),
            query: "systems=ees".into(),
            outcome: "ees:full".into(),
        }
    }

    fn chain(actions: &[&str]) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        let mut entries = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            let seq = i64::try_from(i).unwrap_or_default() + 1;
            let event = event(action);
            let at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seq);
            let hash = chain_hash(&prev, seq, 1_000 * seq, &event);
            entries.push(AuditEntry {
                seq,
                at,
                event,
                prev_hash: prev,
                hash: hash.clone(),
            });
            prev = hash;
        }
        entries
    }

    fn verify(entries: &[AuditEntry], head: Option<ChainEnd>) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::default();
        for entry in entries {
            verifier.check(entry)?;
        }
        verifier.finish(head)
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_named() {
        let entries = chain(&["search", "read", "ingest", "verify"]);
        let head = Some(ChainEnd {
            seq: 4,
            hash: entries[3].hash.clone(),
        });
        assert_eq!(verify(&entries, head.clone()), Ok(4));

        let mut altered = entries.clone();
        altered[1].event.outcome = "ees:hit".into();
        assert_eq!(
            verify(&altered, head.clone()),
            Err(ChainBreak::Altered { seq: 2 })
        );

        let mut gap = entries.clone();
        gap.remove(2);
        assert_eq!(
            verify(&gap, head.clone()),
            Err(ChainBreak::Gap {
                seq: 3,
                previous: 2
            })
        );

        let truncated = &entries[..3];
        assert_eq!(
            verify(truncated, head.clone()),
            Err(ChainBreak::Truncated { seq: 4 })
        );
        assert_eq!(verify(&[], None), Ok(0));
    }
}
