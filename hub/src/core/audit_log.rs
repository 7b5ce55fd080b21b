//! The audit sequencer: entries queued by every operation, appended to the hash chain by
//! one writer in this process, which whatever queued up while it wrote goes into the next
//! transaction with (group commit). The interface is what a database-serialised sequencer
//! (several hubs on one log) will keep.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::access::Principal;
use crate::batch::{BatchWriter, Batcher};
use crate::clock::Clock;
use crate::error::HubError;
use crate::metrics::HubMetrics;
use crate::store::{AuditAppender, AuditEvent, ControlStore, IngestCountKey};

/// An audit entry waiting for its transaction, the ingest quality counts that go with it,
/// and who to tell when it is written.
#[derive(Debug)]
pub(crate) struct PendingAudit {
    event: AuditEvent,
    at: OffsetDateTime,
    counts: Vec<IngestCountKey>,
    done: tokio::sync::oneshot::Sender<Result<(), HubError>>,
}

/// Says when an audit entry is written, or why it could not be.
pub(crate) type AuditWritten = tokio::sync::oneshot::Receiver<Result<(), HubError>>;

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
            entries.push((pending.event, pending.at));
            for key in pending.counts {
                *counts.entry(key).or_default() += 1;
            }
            waiters.push(pending.done);
        }
        let written = match self.appender.append(&entries, &counts).await {
            Ok(()) => {
                for _ in &entries {
                    self.metrics.audit_entry();
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, entries = entries.len(), "audit entries not written");
                false
            }
        };
        for done in waiters {
            // Not written: the answer is withheld and the caller may retry.
            let _ = done.send(if written {
                Ok(())
            } else {
                Err(HubError::Unavailable)
            });
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
}

/// The hub's audit log, as the operations write to it.
#[derive(Debug)]
pub(crate) struct AuditLog {
    queue: Batcher<PendingAudit>,
    clock: Clock,
}

impl AuditLog {
    pub(crate) fn spawn(control: &ControlStore, clock: Clock, metrics: Arc<HubMetrics>) -> Self {
        Self {
            queue: Batcher::spawn(AuditWriter {
                appender: control.audit_appender(),
                metrics,
            }),
            clock,
        }
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
        let (done, written) = tokio::sync::oneshot::channel();
        let entry = PendingAudit {
            event,
            at: self.clock.now(),
            counts: record.counts,
            done,
        };
        (entry, written)
    }

    /// Hands an entry to the writer and waits until it is written. Callers withhold their
    /// answer until then, and when it fails: nothing is shared that was not logged.
    pub(crate) async fn write(
        &self,
        (entry, written): (PendingAudit, AuditWritten),
    ) -> Result<(), HubError> {
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
