//! The multiple-identity detector's links: one row per pair of records from different
//! systems, with its evidence and its verification history (the identity confirmation file).

use connectors::{RecordRef, SourceSystem};
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::{Database, PoolSettings, Schema, StoreError, corrupt, from_unix_millis, unix_millis};
use crate::matching::{LinkColour, LinkRule};

/// The detector's automatic outcome for one pair, to be stored.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub a: RecordRef,
    pub b: RecordRef,
    pub colour: LinkColour,
    pub rule: LinkRule,
    /// As JSON text.
    pub evidence: String,
    pub authority: String,
    pub deadline: Option<OffsetDateTime>,
}

/// One event in a link's life.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub at: OffsetDateTime,
    /// `mid` for the detector, otherwise the verifier.
    pub actor: String,
    /// `detected`, `redetected` or `verified`.
    pub event: String,
    pub colour_before: Option<LinkColour>,
    pub colour_after: LinkColour,
    pub justification: Option<String>,
}

/// A link as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLink {
    pub id: String,
    /// The two records, in a fixed order.
    pub records: [RecordRef; 2],
    pub colour: LinkColour,
    pub rule: LinkRule,
    /// Every piece of evidence with its score: identity comparison and biometric scores.
    pub evidence: serde_json::Value,
    /// The authority responsible for verifying the link.
    pub authority: String,
    /// Yellow links only: when verification is due.
    pub deadline: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Filters and page for listing links.
#[derive(Debug, Clone, Default)]
pub struct LinkQuery {
    pub colour: Option<LinkColour>,
    pub system: Option<SourceSystem>,
    pub authority: Option<String>,
    /// Only yellow links past their deadline (true) or not past it (false).
    pub overdue: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

/// The links one principal verifies, as the store selects its queue: those whose
/// responsible authority the principal acts for, touching a system whose links it may
/// verify. Listing links takes one: there is no "every link" value for a caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifierQueue {
    pub verifiable: Vec<SourceSystem>,
    pub authorities: Vec<String>,
}

/// Why a verification was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyRefusal {
    NotFound,
    AlreadyThatColour,
}

/// What an automatic upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChange {
    Created,
    Updated,
    Unchanged,
}

impl LinkChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        }
    }
}

const LINK_COLUMNS: &str = "id, a_system, a_source_id, b_system, b_source_id, colour, rule, evidence, authority, deadline, created_at, updated_at";

/// The MID database.
#[derive(Debug, Clone)]
pub struct LinkStore {
    db: Database,
}

impl LinkStore {
    pub async fn open(url: &str, pool: &PoolSettings) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::open(url, Schema::Mid, pool).await?,
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Stores the detector's outcome for a pair. A replay finds the link it made before; an
    /// automatic (white or yellow) link follows the new evidence; a verifier's green or red
    /// decision is never overwritten by the detector.
    pub async fn upsert_automatic(
        &self,
        link: &NewLink,
        now: OffsetDateTime,
    ) -> Result<(String, LinkChange), sqlx::Error> {
        // On PostgreSQL a delete can commit between the insert that met the pair's link and
        // the read of it: the read finds nothing, and the insert is tried again.
        let mut attempts = 0;
        loop {
            match self.upsert_automatic_once(link, now).await {
                Err(sqlx::Error::RowNotFound) if attempts < 3 => attempts += 1,
                answer => return answer,
            }
        }
    }

    async fn upsert_automatic_once(
        &self,
        link: &NewLink,
        now: OffsetDateTime,
    ) -> Result<(String, LinkChange), sqlx::Error> {
        let (a, b) = if link.a <= link.b {
            (&link.a, &link.b)
        } else {
            (&link.b, &link.a)
        };
        let mut tx = self.db.begin_write().await?;
        let new_id = uuid::Uuid::now_v7().to_string();
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO links (id, a_system, a_source_id, b_system, b_source_id, colour, rule, evidence, \
             authority, deadline, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
             ON CONFLICT (a_system, a_source_id, b_system, b_source_id) DO NOTHING RETURNING id",
        )
        .bind(new_id.as_str())
        .bind(a.system.as_str())
        .bind(a.source_id.as_str())
        .bind(b.system.as_str())
        .bind(b.source_id.as_str())
        .bind(link.colour.as_str())
        .bind(link.rule.as_str())
        .bind(link.evidence.as_str())
        .bind(link.authority.as_str())
        .bind(link.deadline.map(unix_millis))
        .bind(unix_millis(now))
        .fetch_optional(&mut *tx)
        .await?;
        let result = if let Some(id) = inserted {
            append_history(
                &mut tx,
                &id,
                now,
                "mid",
                "detected",
                None,
                link.colour,
                None,
            )
            .await?;
            (id, LinkChange::Created)
        } else {
            let (id, colour, rule, verified_at): (String, String, String, Option<i64>) = sqlx::query_as(
                "SELECT id, colour, rule, verified_at FROM links WHERE a_system = $1 AND a_source_id = $2 \
                 AND b_system = $3 AND b_source_id = $4",
            )
            .bind(a.system.as_str())
            .bind(a.source_id.as_str())
            .bind(b.system.as_str())
            .bind(b.source_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let colour = LinkColour::parse(&colour).ok_or_else(|| corrupt("colour"))?;
            let changed = colour != link.colour || rule != link.rule.as_str();
            // Compare-and-set on what was read: a verifier deciding meanwhile wins.
            let updated = if verified_at.is_none() && changed {
                sqlx::query(
                    "UPDATE links SET colour = $1, rule = $2, evidence = $3, authority = $4, deadline = $5, \
                     updated_at = $6 WHERE id = $7 AND verified_at IS NULL AND colour = $8",
                )
                .bind(link.colour.as_str())
                .bind(link.rule.as_str())
                .bind(link.evidence.as_str())
                .bind(link.authority.as_str())
                .bind(link.deadline.map(unix_millis))
                .bind(unix_millis(now))
                .bind(id.as_str())
                .bind(colour.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            } else {
                false
            };
            if updated {
                append_history(
                    &mut tx,
                    &id,
                    now,
                    "mid",
                    "redetected",
                    Some(colour),
                    link.colour,
                    None,
                )
                .await?;
                (id, LinkChange::Updated)
            } else {
                (id, LinkChange::Unchanged)
            }
        };
        tx.commit().await?;
        Ok(result)
    }

    /// The ids and other ends of every link that touches a record.
    pub async fn links_of(&self, record: &RecordRef) -> Result<Vec<StoredLink>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE (a_system = $1 AND a_source_id = $2) \
             OR (b_system = $1 AND b_source_id = $2) ORDER BY created_at, id"
        ))
        .bind(record.system.as_str())
        .bind(record.source_id.as_str())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(link_from_row).collect()
    }

    /// Deletes the detector's links by id, with their history; a link a verifier has
    /// decided stays.
    pub async fn delete_unverified(&self, ids: &[String]) -> Result<(), sqlx::Error> {
        self.delete_where(ids, "AND verified_at IS NULL").await
    }

    /// Notes that `record` is being deleted (see [`LinkStore::deletions`]) and removes its
    /// links, decided or not, in one transaction; answers how many links went.
    pub async fn begin_deletion(
        &self,
        record: &RecordRef,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO record_deletions (system, source_id, started_at) VALUES ($1, $2, $3) \
             ON CONFLICT (system, source_id) DO NOTHING",
        )
        .bind(record.system.as_str())
        .bind(record.source_id.as_str())
        .bind(unix_millis(now))
        .execute(&mut *tx)
        .await?;
        let removed = delete_links_of(&mut tx, record).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Removes every link of the deleted `record` again (a detection of another record may
    /// have linked it meanwhile) and the note that it is being deleted, in one transaction;
    /// answers how many links went.
    pub async fn finish_deletion(&self, record: &RecordRef) -> Result<u64, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let removed = delete_links_of(&mut tx, record).await?;
        forget_deletion(&mut tx, record).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Drops the note that `record` is being deleted, leaving its links: for a record
    /// whose delete stopped before the record was removed.
    pub async fn cancel_deletion(&self, record: &RecordRef) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        forget_deletion(&mut tx, record).await?;
        tx.commit().await
    }

    /// Whether a delete of `record` began and has not finished.
    pub async fn deletion_pending(&self, record: &RecordRef) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT started_at FROM record_deletions WHERE system = $1 AND source_id = $2",
        )
        .bind(record.system.as_str())
        .bind(record.source_id.as_str())
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Records whose delete began and did not finish (the process stopped in between).
    pub async fn deletions(&self) -> Result<Vec<RecordRef>, sqlx::Error> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT system, source_id FROM record_deletions ORDER BY started_at")
                .fetch_all(&self.db.pool)
                .await?;
        rows.into_iter()
            .map(|(system, source_id)| {
                let system = system
                    .parse()
                    .map_err(|_| corrupt("record_deletions.system"))?;
                Ok(RecordRef::new(system, source_id))
            })
            .collect()
    }

    /// Deletes links by id, decided or not: for links whose record is gone.
    pub async fn delete(&self, ids: &[String]) -> Result<(), sqlx::Error> {
        self.delete_where(ids, "").await
    }

    async fn delete_where(&self, ids: &[String], guard: &str) -> Result<(), sqlx::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        // The history goes by ON DELETE CASCADE, in the same statement as its link.
        let sql = format!("DELETE FROM links WHERE id = $1 {guard}");
        for id in ids {
            sqlx::query(&sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    pub async fn get(
        &self,
        id: &str,
    ) -> Result<Option<(StoredLink, Vec<HistoryEntry>)>, sqlx::Error> {
        let Some(row) = sqlx::query(&format!("SELECT {LINK_COLUMNS} FROM links WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?
        else {
            return Ok(None);
        };
        let link = link_from_row(&row)?;
        let history = sqlx::query(
            "SELECT at, actor, event, colour_before, colour_after, justification FROM link_history \
             WHERE link_id = $1 ORDER BY ordinal",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|row| {
            let colour = |column: &'static str, text: Option<String>| {
                text.map(|t| LinkColour::parse(&t).ok_or_else(|| corrupt(column)))
                    .transpose()
            };
            Ok(HistoryEntry {
                at: from_unix_millis(row.try_get("at")?).ok_or_else(|| corrupt("at"))?,
                actor: row.try_get("actor")?,
                event: row.try_get("event")?,
                colour_before: colour("colour_before", row.try_get("colour_before")?)?,
                colour_after: colour("colour_after", Some(row.try_get("colour_after")?))?
                    .ok_or_else(|| corrupt("colour_after"))?,
                justification: row.try_get("justification")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some((link, history)))
    }

    /// One page of a verifier's queue matching the filters, and how many match in all.
    pub async fn list(
        &self,
        query: &LinkQuery,
        queue: &VerifierQueue,
        now: OffsetDateTime,
    ) -> Result<(Vec<StoredLink>, i64), sqlx::Error> {
        self.select(query, Some(queue), now).await
    }

    /// Every stored link: the hub's own checks (the bench's ground truth), never a
    /// caller's answer.
    pub async fn list_all(&self, now: OffsetDateTime) -> Result<Vec<StoredLink>, sqlx::Error> {
        let query = LinkQuery {
            limit: i64::MAX,
            ..LinkQuery::default()
        };
        Ok(self.select(&query, None, now).await?.0)
    }

    async fn select(
        &self,
        query: &LinkQuery,
        queue: Option<&VerifierQueue>,
        now: OffsetDateTime,
    ) -> Result<(Vec<StoredLink>, i64), sqlx::Error> {
        let mut conditions: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let arg = |value: String, texts: &mut Vec<String>| {
            texts.push(value);
            format!("${}", texts.len())
        };
        if let Some(colour) = query.colour {
            conditions.push(format!(
                "colour = {}",
                arg(colour.as_str().to_owned(), &mut texts)
            ));
        }
        if let Some(system) = query.system {
            let p = arg(system.as_str().to_owned(), &mut texts);
            conditions.push(format!("(a_system = {p} OR b_system = {p})"));
        }
        if let Some(authority) = &query.authority {
            conditions.push(format!(
                "authority = {}",
                arg(authority.clone(), &mut texts)
            ));
        }
        if let Some(queue) = queue {
            let list = |values: Vec<String>, texts: &mut Vec<String>| -> String {
                // An empty IN list is not SQL; the empty name matches no stored value.
                let values = if values.is_empty() {
                    vec![String::new()]
                } else {
                    values
                };
                values
                    .into_iter()
                    .map(|v| arg(v, texts))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let verifiable = list(
                queue
                    .verifiable
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
                &mut texts,
            );
            let authorities = list(queue.authorities.clone(), &mut texts);
            conditions.push(format!(
                "authority IN ({authorities}) \
                 AND (a_system IN ({verifiable}) OR b_system IN ({verifiable}))"
            ));
        }
        let now_param = format!("${}", texts.len() + 1);
        match query.overdue {
            Some(true) => conditions.push(format!("colour = 'yellow' AND deadline < {now_param}")),
            Some(false) => conditions.push(format!(
                "NOT (colour = 'yellow' AND deadline < {now_param})"
            )),
            None => conditions.push(format!("{now_param} = {now_param}")),
        }
        let filter = conditions.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) AS total FROM links WHERE {filter}");
        let page_sql = format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE {filter} ORDER BY created_at, id LIMIT {} OFFSET {}",
            query.limit, query.offset
        );
        let now = unix_millis(now);
        let total: i64 = bind_filters(&count_sql, &texts, now)
            .fetch_one(&self.db.pool)
            .await?
            .try_get("total")?;
        let rows = bind_filters(&page_sql, &texts, now)
            .fetch_all(&self.db.pool)
            .await?;
        Ok((
            rows.iter().map(link_from_row).collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// Links per colour, and the yellow links past their deadline.
    pub async fn colour_counts(
        &self,
        now: OffsetDateTime,
    ) -> Result<(Vec<(String, i64)>, i64), sqlx::Error> {
        let rows =
            sqlx::query("SELECT colour, COUNT(*) AS n FROM links GROUP BY colour ORDER BY colour")
                .fetch_all(&self.db.pool)
                .await?;
        let colours = rows
            .iter()
            .map(|r| Ok((r.try_get("colour")?, r.try_get("n")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let overdue: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM links WHERE colour = 'yellow' AND deadline < $1",
        )
        .bind(unix_millis(now))
        .fetch_one(&self.db.pool)
        .await?;
        Ok((colours, overdue))
    }

    /// Links made per day since `since`, by colour: (colour, day since the epoch, count).
    pub async fn created_per_day(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT colour, created_at / 86400000 AS day, COUNT(*) AS n FROM links \
             WHERE created_at >= $1 GROUP BY colour, created_at / 86400000",
        )
        .bind(unix_millis(since))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("colour")?, r.try_get("day")?, r.try_get("n")?)))
            .collect()
    }

    /// Yellow links per responsible authority: (authority, open).
    pub async fn backlog_by_authority(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT authority, COUNT(*) AS open \
             FROM links WHERE colour = 'yellow' GROUP BY authority ORDER BY authority",
        )
        .fetch_all(&self.db.pool)
        .await
    }

    /// Applies a verifier's decision, keeping the history.
    pub async fn verify(
        &self,
        id: &str,
        colour: LinkColour,
        justification: &str,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<Result<(), VerifyRefusal>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let current: Option<String> = sqlx::query_scalar("SELECT colour FROM links WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(current) = current else {
            return Ok(Err(VerifyRefusal::NotFound));
        };
        let current = LinkColour::parse(&current).ok_or_else(|| corrupt("colour"))?;
        if current == colour {
            return Ok(Err(VerifyRefusal::AlreadyThatColour));
        }
        // Compare-and-set on the colour read above: of two concurrent decisions one applies,
        // the other is answered as already decided.
        let updated = sqlx::query(
            "UPDATE links SET colour = $1, deadline = NULL, updated_at = $2, verified_at = $2 \
             WHERE id = $3 AND colour = $4",
        )
        .bind(colour.as_str())
        .bind(unix_millis(now))
        .bind(id)
        .bind(current.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(Err(VerifyRefusal::AlreadyThatColour));
        }
        append_history(
            &mut tx,
            id,
            now,
            actor,
            "verified",
            Some(current),
            colour,
            Some(justification),
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}

fn bind_filters<'q>(
    sql: &'q str,
    texts: &'q [String],
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    texts
        .iter()
        .fold(sqlx::query(sql), |query, text| query.bind(text.as_str()))
        .bind(now)
}

#[allow(clippy::too_many_arguments)]
async fn append_history(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    at: OffsetDateTime,
    actor: &str,
    event: &str,
    before: Option<LinkColour>,
    after: LinkColour,
    justification: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO link_history (link_id, ordinal, at, actor, event, colour_before, colour_after, justification) \
         VALUES ($1, (SELECT COALESCE(MAX(ordinal), 0) + 1 FROM link_history WHERE link_id = $1), $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(unix_millis(at))
    .bind(actor)
    .bind(event)
    .bind(before.map(LinkColour::as_str))
    .bind(after.as_str())
    .bind(justification)
    .execute(&mut *conn)
    .await
    .map(|_| ())
}

fn link_from_row(row: &AnyRow) -> Result<StoredLink, sqlx::Error> {
    let reference =
        |system: &'static str, source: &'static str| -> Result<RecordRef, sqlx::Error> {
            let system_name: String = row.try_get(system)?;
            Ok(RecordRef {
                system: system_name.parse().map_err(|_| corrupt(system))?,
                source_id: row.try_get(source)?,
            })
        };
    let colour: String = row.try_get("colour")?;
    let rule: String = row.try_get("rule")?;
    let evidence: String = row.try_get("evidence")?;
    let deadline: Option<i64> = row.try_get("deadline")?;
    Ok(StoredLink {
        id: row.try_get("id")?,
        records: [
            reference("a_system", "a_source_id")?,
            reference("b_system", "b_source_id")?,
        ],
        colour: LinkColour::parse(&colour).ok_or_else(|| corrupt("colour"))?,
        rule: LinkRule::parse(&rule).ok_or_else(|| corrupt("rule"))?,
        evidence: serde_json::from_str(&evidence).map_err(|_| corrupt("evidence"))?,
        authority: row.try_get("authority")?,
        deadline: deadline
            .map(|d| from_unix_millis(d).ok_or_else(|| corrupt("deadline")))
            .transpose()?,
        created_at: from_unix_millis(row.try_get("created_at")?)
            .ok_or_else(|| corrupt("created_at"))?,
        updated_at: from_unix_millis(row.try_get("updated_at")?)
            .ok_or_else(|| corrupt("updated_at"))?,
    })
}

/// Deletes every link of `record` inside `tx`; answers how many.
async fn delete_links_of(
    tx: &mut sqlx::AnyConnection,
    record: &RecordRef,
) -> Result<u64, sqlx::Error> {
    // The history goes by ON DELETE CASCADE, in the same statement as its link.
    Ok(sqlx::query(
        "DELETE FROM links WHERE (a_system = $1 AND a_source_id = $2) \
         OR (b_system = $1 AND b_source_id = $2)",
    )
    .bind(record.system.as_str())
    .bind(record.source_id.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

async fn forget_deletion(
    tx: &mut sqlx::AnyConnection,
    record: &RecordRef,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM record_deletions WHERE system = $1 AND source_id = $2")
        .bind(record.system.as_str())
        .bind(record.source_id.as_str())
        .execute(&mut *tx)
        .await
        .map(|_| ())
}
