//! A partition's ordered change feed: rows the partition's triggers write in the transaction
//! of each change, read in an order that no late commit can get behind (module comment of the
//! migration `0005_change_feed.sql`), with the present state of what each row names.

use std::time::Duration;

use connectors::RecordRef;
use sqlx::Row;

use super::{Backend, IdentityStore, TemplateOwner, corrupt};

/// Where a reader of a feed stands: every row at or before it has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FeedCursor {
    /// The writing transaction's id (PostgreSQL; always 0 on SQLite).
    pub txid: i64,
    pub position: i64,
}

/// A template that changed, as the store holds it now.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateChange {
    pub template_id: i64,
    /// `None`: the template is gone (or no longer indexable).
    pub present: Option<PresentTemplate>,
}

/// An indexable template, with what an index needs of it.
#[derive(Debug, Clone, PartialEq)]
pub struct PresentTemplate {
    pub owner: TemplateOwner,
    pub algorithm: String,
    pub vector: Vec<f32>,
}

/// One page of the feed: the rows after a scan position, visible now.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub changes: Vec<TemplateChange>,
    /// Where the next page of this scan starts: the last row read.
    pub scanned: FeedCursor,
    /// Where a reader that has applied this page and every earlier one may move its cursor
    /// for good: the last row read of a transaction below the horizon (every transaction
    /// below it had finished when the page was read, so no row can later appear before
    /// it). Rows after it were applied too, and are read again next time, in case a
    /// transaction still running commits a row between them.
    pub settled: FeedCursor,
    /// Every visible row after the scan position was read: the page was not cut short by
    /// its limit.
    pub complete: bool,
}

impl IdentityStore {
    /// The horizon below which every transaction has finished (PostgreSQL's oldest running
    /// transaction id, cluster-wide); `i64::MAX` on SQLite, whose one writer commits in
    /// position order.
    async fn horizon(&self) -> Result<i64, sqlx::Error> {
        match self.database().backend() {
            Backend::Sqlite => Ok(i64::MAX),
            Backend::Postgres => {
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    .fetch_one(&self.database().pool)
                    .await
            }
        }
    }

    /// Where a reader starts that has just seen the whole store: every row a transaction
    /// still running (or yet to begin) will write lies after it. Take it *before* reading the
    /// store, so that what commits meanwhile is read again from the feed.
    pub async fn feed_start(&self) -> Result<FeedCursor, sqlx::Error> {
        match self.database().backend() {
            Backend::Sqlite => {
                let last: Option<i64> = sqlx::query_scalar("SELECT MAX(position) FROM change_feed")
                    .fetch_one(&self.database().pool)
                    .await?;
                let pruned = self.feed_pruned_through().await?;
                Ok(FeedCursor {
                    txid: 0,
                    position: last.unwrap_or(0).max(pruned.position),
                })
            }
            // Transactions below the horizon have finished: their rows are in what the reader
            // is about to see in the store.
            Backend::Postgres => Ok(FeedCursor {
                txid: self.horizon().await?,
                position: -1,
            }),
        }
    }

    /// Up to `limit` template changes after `scan`, in feed order, each with the template's
    /// present state; `settled` is where a reader that began at `settled` may move to.
    pub async fn feed_after(
        &self,
        scan: FeedCursor,
        settled: FeedCursor,
        limit: usize,
    ) -> Result<FeedPage, sqlx::Error> {
        // Before the rows: a transaction below it had finished before they were read.
        let horizon = self.horizon().await?;
        let rows = sqlx::query(
            "SELECT f.txid, f.position, f.subject, t.record_id, t.algorithm, t.vector, \
             r.system, r.source_id FROM change_feed f \
             LEFT JOIN biometric_templates t ON t.id = f.subject AND t.indexable = TRUE \
             LEFT JOIN identity_records r ON r.id = t.record_id \
             WHERE f.kind = 'template' \
             AND (f.txid > $1 OR (f.txid = $1 AND f.position > $2)) \
             ORDER BY f.txid, f.position LIMIT $3",
        )
        .bind(scan.txid)
        .bind(scan.position)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.database().pool)
        .await?;
        let mut scanned = scan;
        let mut settled = settled;
        // Settling stops at the first row of a transaction at or past the horizon: rows are
        // in txid order, so every later one is past it too.
        let mut settling = scan == settled;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            scanned = FeedCursor {
                txid: row.try_get("txid")?,
                position: row.try_get("position")?,
            };
            settling &= scanned.txid < horizon;
            if settling {
                settled = scanned;
            }
            changes.push(change_from_row(row)?);
        }
        Ok(FeedPage {
            complete: rows.len() < limit,
            changes,
            scanned,
            settled,
        })
    }

    /// The present state of the templates `ids`, as [`Self::feed_after`] reports a change:
    /// for mending an index against the store.
    pub async fn template_states(&self, ids: &[i64]) -> Result<Vec<TemplateChange>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut states = Vec::with_capacity(ids.len());
        for row in &self
            .rows_by_ids(
                "SELECT t.id AS subject, t.record_id, t.algorithm, t.vector, r.system, \
                 r.source_id FROM biometric_templates t \
                 JOIN identity_records r ON r.id = t.record_id \
                 WHERE t.indexable = TRUE AND t.id IN",
                ids,
            )
            .await?
        {
            states.push(change_from_row(row)?);
        }
        // An id the store no longer holds (as an indexable template) is gone.
        let present: std::collections::HashSet<i64> =
            states.iter().map(|state| state.template_id).collect();
        states.extend(
            ids.iter()
                .filter(|id| !present.contains(id))
                .map(|&template_id| TemplateChange {
                    template_id,
                    present: None,
                }),
        );
        Ok(states)
    }

    /// How far the feed has been pruned: a reader behind this may have missed rows.
    pub async fn feed_pruned_through(&self) -> Result<FeedCursor, sqlx::Error> {
        let (txid, position): (i64, i64) =
            sqlx::query_as("SELECT txid, position FROM change_feed_pruned")
                .fetch_one(&self.database().pool)
                .await?;
        Ok(FeedCursor { txid, position })
    }

    /// Records that `reader` (one run of a hub) stands at `cursor` in this feed.
    pub async fn report_feed_position(
        &self,
        reader: &str,
        cursor: FeedCursor,
    ) -> Result<(), sqlx::Error> {
        let now_millis = super::unix_millis(time::OffsetDateTime::now_utc());
        let _gate = self.database().write_gate().await?;
        sqlx::query(
            "INSERT INTO feed_readers (reader, txid, position, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (reader) DO UPDATE SET txid = excluded.txid, \
                 position = excluded.position, seen_at = excluded.seen_at",
        )
        .bind(reader)
        .bind(cursor.txid)
        .bind(cursor.position)
        .bind(now_millis)
        .execute(&self.database().pool)
        .await?;
        Ok(())
    }

    /// Removes the rows every reader that reported within `reader_expiry` has passed, and
    /// at the latest those written more than `age` ago (they name templates whose state the
    /// store holds anyway); forgets readers silent for longer than `age`; records how far
    /// it pruned. Answers how many rows went.
    pub async fn prune_feed(
        &self,
        age: Duration,
        reader_expiry: Duration,
    ) -> Result<u64, sqlx::Error> {
        let now_millis = super::unix_millis(time::OffsetDateTime::now_utc());
        let before = |span: Duration| {
            now_millis.saturating_sub(i64::try_from(span.as_millis()).unwrap_or(i64::MAX))
        };
        let cutoff = before(age);
        let mut tx = self.database().begin_write().await?;
        let aged: Option<(i64, i64)> = sqlx::query_as(
            "SELECT txid, position FROM change_feed WHERE written_at < $1 \
             ORDER BY txid DESC, position DESC LIMIT 1",
        )
        .bind(cutoff)
        .fetch_optional(&mut *tx)
        .await?;
        let slowest: Option<(i64, i64)> = sqlx::query_as(
            "SELECT txid, position FROM feed_readers WHERE seen_at >= $1 \
             ORDER BY txid, position LIMIT 1",
        )
        .bind(before(reader_expiry))
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM feed_readers WHERE seen_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        let cut = [aged, slowest]
            .into_iter()
            .flatten()
            .map(|(txid, position)| FeedCursor { txid, position })
            .max();
        let Some(FeedCursor { txid, position }) = cut else {
            tx.commit().await?;
            return Ok(0);
        };
        let pruned = sqlx::query(
            "DELETE FROM change_feed WHERE txid < $1 OR (txid = $1 AND position <= $2)",
        )
        .bind(txid)
        .bind(position)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE change_feed_pruned SET txid = $1, position = $2 \
             WHERE txid < $1 OR (txid = $1 AND position < $2)",
        )
        .bind(txid)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pruned)
    }
}

/// A change from a row naming the template (`subject`) and, left-joined, its present state.
fn change_from_row(row: &sqlx::any::AnyRow) -> Result<TemplateChange, sqlx::Error> {
    let template_id: i64 = row.try_get("subject")?;
    let present = match row.try_get::<Option<i64>, _>("record_id")? {
        None => None,
        Some(record_id) => {
            let system: String = row.try_get("system")?;
            let bytes: Vec<u8> = row.try_get("vector")?;
            Some(PresentTemplate {
                owner: TemplateOwner {
                    template_id,
                    record_id,
                    record: RecordRef::new(
                        system.parse().map_err(|_| corrupt("system"))?,
                        row.try_get::<String, _>("source_id")?,
                    ),
                },
                algorithm: row.try_get("algorithm")?,
                vector: connectors::vector_base64::from_bytes(&bytes)
                    .ok_or_else(|| corrupt("vector"))?,
            })
        }
    };
    Ok(TemplateChange {
        template_id,
        present,
    })
}
