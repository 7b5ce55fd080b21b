//! The audit sequencer: entries queued by every operation, appended to the hash chain by
//! one writer in this process, which whatever queued up while it wrote goes into the next
//! transaction with (group commit). On PostgreSQL the chain's head is locked in each append
//! transaction, so any number of hubs append to one log; the same transaction reads the
//! policy version, and an answer decided under an older one is not logged but sent back to
//! be decided again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::access::Principal;
use crate::batch::{BatchWriter, Batcher};
use crate::clock::Clock;
use crate::error::HubError;
use crate::metrics::HubMetrics;
use crate::store::{AuditAppender, AuditEvent, ChainEntry, ControlStore, IngestCountKey};

/// An audit entry waiting for its transaction, the ingest quality counts that go with it,
/// and who to tell when it is written.
#[derive(Debug)]
pub(crate) struct PendingAudit {
    entry: ChainEntry,
    counts: Vec<IngestCountKey>,
    done: tokio::sync::oneshot::Sender<Result<Logged, HubError>>,
}

/// What became of an audit entry the log took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logged {
    Written,
    /// Not written: the answer it records was decided under an older policy than this
    /// version, which the operation must catch up with and decide again.
    Outdated(i64),
}

/// Says when an audit entry is written, or why it was not.
pub(crate) type AuditWritten = tokio::sync::oneshot::Receiver<Result<Logged, HubError>>;

/// The single appender of the audit chain: takes what is queued, appends it all or none
/// (`AuditAppender`), then answers every waiter.
#[derive(Debug)]
struct AuditWriter {
    appender: AuditAppender,
    metrics: Arc<HubMetrics>,
}

impl BatchWriter for AuditWriter {
    type Job = PendingAudit;
    const MAX_BATCH: usize = 256;

    async fn write(&mut self, batch: &mut Vec<PendingAudit>) {
        let mut entries = Vec::with_capacity(batch.len());
        let mut counts: BTreeMap<IngestCountKey, i64> = BTreeMap::new();
        let mut waiters = Vec::with_capacity(batch.len());
        for pending in batch.drain(..) {
            entries.push(pending.entry);
            for key in pending.counts {
                *counts.entry(key).or_default() += 1;
            }
            waiters.push(pending.done);
        }
        let appended = self.appender.append(&entries, &counts).await;
        if let Err(e) = &appended {
            tracing::error!(error = %e, entries = entries.len(), "audit entries not written");
        }
        for (n, done) in waiters.into_iter().enumerate() {
            // Not written: the answer is withheld and the caller may retry.
            let logged = match &appended {
                Ok(outdated) if outdated.entries.contains(&n) => {
                    Ok(Logged::Outdated(outdated.policy_version))
                }
                Ok(_) => {
                    self.metrics.audit_entry();
                    Ok(Logged::Written)
                }
                Err(_) => Err(HubError::Unavailable),
            };
            let _ = done.send(logged);
        }
    }
}

/// What is recorded of one operation, before it has a place in the chain.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub(crate) principal: &'a Principal,
    pub(crate) purpose: &'a str,
    pub(crate) action: &'a str,
    /// The kind of query, never its values.
    pub(crate) query: String,
    /// The kind of result.
    pub(crate) outcome: String,
    /// Ingest quality counts written in the entry's transaction.
    pub(crate) counts: Vec<IngestCountKey>,
    /// For an answer that hands out personal data, the policy version it was decided under.
    pub(crate) decided_under: Option<i64>,
}

/// The hub's audit log, as the operations write to it.
#[derive(Debug)]
pub(crate) struct AuditLog {
    queue: Batcher<PendingAudit>,
    clock: Clock,
    refused_authentications: RefusedAuthentications,
}

/// Failed authentications the log records one by one, per second, after a burst of as
/// many: a flood of bad tokens cannot grow the log faster than this. The ones beyond are
/// counted, and the next one recorded says how many went unrecorded before it.
const REFUSED_AUTHENTICATIONS_PER_SECOND: u32 = 10;

#[derive(Debug)]
struct RefusedAuthentications {
    recorded: governor::DefaultDirectRateLimiter,
    unrecorded: std::sync::atomic::AtomicU64,
}

impl Default for RefusedAuthentications {
    fn default() -> Self {
        let per_second = std::num::NonZeroU32::new(REFUSED_AUTHENTICATIONS_PER_SECOND)
            .unwrap_or(std::num::NonZeroU32::MIN);
        Self {
            recorded: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            unrecorded: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl AuditLog {
    pub(crate) fn spawn(control: &ControlStore, clock: Clock, metrics: Arc<HubMetrics>) -> Self {
        Self {
            queue: Batcher::spawn(AuditWriter {
                appender: control.audit_appender(),
                metrics,
            }),
            clock,
            refused_authentications: RefusedAuthentications::default(),
        }
    }

    /// Records a request refused for want of a valid credential, on `route` (a route
    /// template), for `reason` (the refusal's own words, which name no caller): who sent
    /// it is unknown, so the entry names nobody. Never waits (the refusal is answered at
    /// once) and is bounded ([`REFUSED_AUTHENTICATIONS_PER_SECOND`]).
    pub(crate) fn refused_authentication(&self, route: &str, reason: &str) {
        use std::sync::atomic::Ordering;
        let counts = &self.refused_authentications;
        if counts.recorded.check().is_err() {
            counts.unrecorded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let unrecorded = counts.unrecorded.swap(0, Ordering::Relaxed);
        let event = AuditEvent {
            subject: String::new(),
            agency: String::new(),
            member_state: String::new(),
            purpose: "authentication".to_owned(),
            action: "authenticate".to_owned(),
            query: format!("route={route};unrecorded_before={unrecorded}"),
            outcome: format!("refused:unauthenticated:{reason}"),
        };
        self.write_if_room(self.pending(event, None, Vec::new()));
    }

    /// An entry for the writer, and the receiver that says when it is written.
    pub(crate) fn entry(&self, record: Record<'_>) -> (PendingAudit, AuditWritten) {
        let event = AuditEvent {
            subject: record.principal.subject.clone(),
            agency: record.principal.agency.clone(),
            member_state: record.principal.member_state.clone(),
            purpose: record.purpose.to_owned(),
            action: record.action.to_owned(),
            query: record.query,
            outcome: record.outcome,
        };
        self.pending(event, record.decided_under, record.counts)
    }

    /// `event`, stamped now, for the writer, and the receiver that says when it is written.
    fn pending(
        &self,
        event: AuditEvent,
        decided_under: Option<i64>,
        counts: Vec<IngestCountKey>,
    ) -> (PendingAudit, AuditWritten) {
        let (done, written) = tokio::sync::oneshot::channel();
        let entry = PendingAudit {
            entry: ChainEntry {
                event,
                at: self.clock.now(),
                decided_under,
            },
            counts,
            done,
        };
        (entry, written)
    }

    /// Hands an entry to the writer and waits until it is written or found outdated.
    /// Callers withhold their answer until then, and when it fails or is outdated: nothing
    /// is shared that was not logged.
    pub(crate) async fn write(
        &self,
        (entry, written): (PendingAudit, AuditWritten),
    ) -> Result<Logged, HubError> {
        self.queue
            .send(entry)
            .await
            .map_err(|_| HubError::Unavailable)?;
        written.await.map_err(|_| HubError::Unavailable)?
    }

    /// Hands an entry to the writer if it has room now, without waiting for it.
    pub(crate) fn write_if_room(&self, (entry, _): (PendingAudit, AuditWritten)) {
        let _ = self.queue.try_send(entry);
    }
}
