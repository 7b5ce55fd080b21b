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
/// different entries serialise alike. Unkeyed: whoever can write the log can rewrite the
/// chain from any entry on, which only signed checkpoints kept elsewhere reveal.
pub fn chain_hash(prev_hash: &str, seq: i64, at_millis: i64, event: &AuditEvent) -> String {
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
    #[error(
        "the signed checkpoint at entry {last} no longer matches: entries {first}-{last} were \
         rewritten (from one of them to the end of the log); the {matched} checkpoint(s) \
         before it match"
    )]
    Rewritten {
        first: i64,
        last: i64,
        matched: usize,
    },
    #[error(
        "the log ends at entry {end}, before the signed checkpoint at entry {seq} (entries \
         deleted); the {matched} checkpoint(s) before it match"
    )]
    EndsBeforeCheckpoint { seq: i64, end: i64, matched: usize },
}

/// What a verification found intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainVerified {
    pub entries: u64,
    /// Signed checkpoints whose entry still has the hash they signed.
    pub checkpoints: usize,
    /// The entries after the last checkpoint, which no checkpoint vouches for yet: their
    /// first and last sequence numbers, and the time between their first and last entry.
    pub unvouched: Option<(i64, i64, time::Duration)>,
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

/// Walks the chain page by page, checking each entry against its predecessor and against
/// the signed checkpoints (ends of the chain as they were, in sequence order).
#[derive(Debug)]
pub(super) struct ChainVerifier {
    previous: ChainEnd,
    checked: u64,
    checkpoints: std::collections::VecDeque<ChainEnd>,
    /// Checkpoints matched so far, and the last one's sequence number.
    matched: usize,
    matched_up_to: i64,
    /// The first entry after the last matched checkpoint, and its time; the last entry's.
    unvouched_from: Option<(i64, OffsetDateTime)>,
    last_at: Option<OffsetDateTime>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::with_checkpoints(Vec::new())
    }
}

impl ChainVerifier {
    pub(super) fn with_checkpoints(mut checkpoints: Vec<ChainEnd>) -> Self {
        checkpoints.sort_by_key(|checkpoint| checkpoint.seq);
        checkpoints.dedup();
        Self {
            previous: ChainEnd::genesis(),
            checked: 0,
            checkpoints: checkpoints.into(),
            matched: 0,
            matched_up_to: 0,
            unvouched_from: None,
            last_at: None,
        }
    }

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
        while let Some(checkpoint) = self.checkpoints.front()
            && checkpoint.seq == entry.seq
        {
            if checkpoint.hash != entry.hash {
                return Err(ChainBreak::Rewritten {
                    first: self.matched_up_to + 1,
                    last: entry.seq,
                    matched: self.matched,
                });
            }
            self.matched += 1;
            self.matched_up_to = entry.seq;
            self.checkpoints.pop_front();
        }
        if self.matched_up_to == entry.seq {
            self.unvouched_from = None;
        } else if self.unvouched_from.is_none() {
            self.unvouched_from = Some((entry.seq, entry.at));
        }
        self.last_at = Some(entry.at);
        self.previous = ChainEnd {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        self.checked += 1;
        Ok(())
    }

    /// After the last entry: the chain must reach every checkpoint and end where the
    /// recorded head says.
    pub(super) fn finish(&self, head: Option<ChainEnd>) -> Result<ChainVerified, ChainBreak> {
        let last = &self.previous;
        if let Some(checkpoint) = self.checkpoints.front() {
            return Err(ChainBreak::EndsBeforeCheckpoint {
                seq: checkpoint.seq,
                end: last.seq,
                matched: self.matched,
            });
        }
        let verified = ChainVerified {
            entries: self.checked,
            checkpoints: self.matched,
            unvouched: self
                .unvouched_from
                .zip(self.last_at)
                .map(|((first, first_at), last_at)| (first, last.seq, last_at - first_at)),
        };
        match head {
            None if last.seq == 0 => Ok(verified),
            None => Err(ChainBreak::BeyondHead { seq: 1, head: 0 }),
            Some(head) if head.seq > last.seq => Err(ChainBreak::Truncated { seq: last.seq + 1 }),
            Some(head) if head.seq < last.seq => Err(ChainBreak::BeyondHead {
                seq: head.seq + 1,
                head: head.seq,
            }),
            Some(head) if head.hash != last.hash => Err(ChainBreak::Altered { seq: last.seq }),
            Some(_) => Ok(verified),
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
        verify_against(entries, head, Vec::new()).map(|verified| verified.entries)
    }

    fn verify_against(
        entries: &[AuditEntry],
        head: Option<ChainEnd>,
        checkpoints: Vec<ChainEnd>,
    ) -> Result<ChainVerified, ChainBreak> {
        let mut verifier = ChainVerifier::with_checkpoints(checkpoints);
        for entry in entries {
            verifier.check(entry)?;
        }
        verifier.finish(head)
    }

    fn end_of(entry: &AuditEntry) -> ChainEnd {
        ChainEnd {
            seq: entry.seq,
            hash: entry.hash.clone(),
        }
    }

    #[test]
    fn checkpoints_name_the_interval_a_rewritten_chain_begins_in() {
        let actions = [
            "search", "read", "ingest", "verify", "search", "read", "ingest",
        ];
        let entries = chain(&actions);
        let checkpoints = vec![
            end_of(&entries[1]),
            end_of(&entries[3]),
            end_of(&entries[5]),
        ];
        let head = Some(end_of(&entries[6]));
        assert_eq!(
            verify_against(&entries, head, checkpoints.clone()),
            Ok(ChainVerified {
                entries: 7,
                checkpoints: 3,
                unvouched: Some((7, 7, time::Duration::ZERO)),
            })
        );
        assert_eq!(
            verify_against(
                &entries[..6],
                Some(end_of(&entries[5])),
                checkpoints.clone()
            )
            .map(|verified| verified.unvouched),
            Ok(None),
            "every entry vouched for"
        );

        // Entry 4 changed and every hash from it on recomputed: the chain alone holds.
        let mut actions_rewritten = actions;
        actions_rewritten[3] = "nothing";
        let rewritten = chain(&actions_rewritten);
        let rewritten_head = Some(end_of(&rewritten[6]));
        assert_eq!(verify(&rewritten, rewritten_head.clone()), Ok(7));
        assert_eq!(
            verify_against(&rewritten, rewritten_head, checkpoints.clone()),
            Err(ChainBreak::Rewritten {
                first: 3,
                last: 4,
                matched: 1
            })
        );

        let cut = &entries[..5];
        assert_eq!(
            verify_against(cut, Some(end_of(&entries[4])), checkpoints),
            Err(ChainBreak::EndsBeforeCheckpoint {
                seq: 6,
                end: 5,
                matched: 2
            })
        );
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
