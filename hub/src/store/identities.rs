//! One partition's identity records: idempotent versioned upserts, reads, deletes, and the
//! queries the biometric index and the multiple-identity detector need.

use connectors::{Accepted, IdentityRecord, Partition, QualityFinding, RecordRef, SourceSystem};
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use super::{
    Backend, Database, PoolSettings, Schema, StoreError, corrupt, placeholders, rows, with_ids,
};
use crate::batch::{BatchWriter, Batcher};
use crate::matching::BlockingKeys;

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// First version of this record.
    Created,
    /// The same version was already stored; nothing changed.
    Replayed,
    /// A newer version replaced the stored one.
    Updated,
}

/// Why an upsert was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertRefusal {
    /// The stored version is newer than the one offered.
    Stale { stored: i64 },
    /// The same version was stored with other content: a version number was reused.
    VersionReused { version: i64 },
    /// The stored record belongs to another member state: only its own state's
    /// connector changes it.
    OtherOwner,
}

/// What the purpose and ownership rules need of a record before it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateFacts {
    pub date_of_birth: connectors::PartialDate,
    /// The responsible member state; none for ETIAS.
    pub member_state: Option<String>,
}

/// An applied upsert, with what the biometric index must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub outcome: UpsertOutcome,
    pub record_id: i64,
    /// Template ids in the order of the record's templates (empty for a replay whose
    /// detection finished).
    pub template_ids: Vec<i64>,
    /// Ids of the templates the update replaced.
    pub removed_template_ids: Vec<i64>,
    /// The stored version's templates may be missing from the index and its links are not
    /// all written: a new version, or a replay of one whose ingest stopped after storing it.
    pub detection_pending: bool,
}

/// A record as the repository holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRecord {
    pub partition: Partition,
    /// When this version was stored (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub stored_at: OffsetDateTime,
    pub record: IdentityRecord,
    /// Non-blocking data-quality findings raised when this version was ingested.
    pub findings: Vec<QualityFinding>,
}

/// How many of one system's records have each optional part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completeness {
    pub system: String,
    pub records: i64,
    /// (part, records that have it), in a fixed order.
    pub present: Vec<(String, i64)>,
}

/// The record a template belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateOwner {
    pub template_id: i64,
    pub record_id: i64,
    pub record: RecordRef,
}

/// One partition's store.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    db: Database,
    /// On SQLite, upserts go through one writer, which applies whatever queued up meanwhile
    /// in one transaction (group commit); on PostgreSQL each runs its own transaction.
    upserts: Option<Batcher<PendingUpsert>>,
}

type UpsertResult = Result<Result<Upserted, UpsertRefusal>, sqlx::Error>;

/// A record to upsert, and who waits for the result.
#[derive(Debug)]
struct PendingUpsert {
    accepted: Accepted,
    now: OffsetDateTime,
    done: tokio::sync::oneshot::Sender<UpsertResult>,
}

impl IdentityStore {
    /// Connects, brings the schema up to date and, on SQLite, starts the upsert writer.
    pub async fn open(url: &str, pool: &PoolSettings) -> Result<Self, StoreError> {
        let db = Database::open(url, Schema::Cir, pool).await?;
        // PostgreSQL locks rows, not the database: its upserts run side by side, and a batch
        // would only add lock cycles with the mark writer's statement.
        let upserts = (db.backend() == Backend::Sqlite)
            .then(|| Batcher::spawn(UpsertWriter { db: db.clone() }));
        Ok(Self { db, upserts })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Idempotent upsert keyed by (system, source id): creates, replays or applies a newer
    /// version in one transaction (on SQLite together with the partition's other upserts
    /// queued meanwhile). Safe under concurrent calls for the same key: the first applied
    /// creates, the others become replays or updates.
    pub async fn upsert(&self, accepted: &Accepted, now: OffsetDateTime) -> UpsertResult {
        let Some(upserts) = &self.upserts else {
            return upsert_alone(&self.db, accepted, now).await;
        };
        let (done, applied) = tokio::sync::oneshot::channel();
        let pending = PendingUpsert {
            accepted: accepted.clone(),
            now,
            done,
        };
        upserts
            .send(pending)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        applied.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    pub async fn get(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<Option<StoredRecord>, sqlx::Error> {
        let mut conn = self.db.pool.acquire().await?;
        rows::load(&mut conn, rows::RecordKey::Source(system, source_id)).await
    }

    /// What the purpose and ownership rules look at, in one query of one row: the date of
    /// birth and the responsible member state. Asking costs the same whether the answer is
    /// a record the caller may not see or none at all.
    pub async fn gate_facts(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<Option<GateFacts>, sqlx::Error> {
        // Exactly one row either way (empty for no record), and from the covering index
        // alone: a row more or a table read less would tell the two apart (SQLite hands
        // each row across to the async side, and would take the unique index and then
        // read the table for a record that exists).
        let sql = match self.db.backend() {
            Backend::Sqlite => {
                "SELECT r.date_of_birth, r.member_state FROM (SELECT 1) AS one \
                 LEFT JOIN identity_records r INDEXED BY identity_records_gate \
                 ON r.system = $1 AND r.source_id = $2"
            }
            Backend::Postgres => {
                "SELECT r.date_of_birth, r.member_state FROM (SELECT 1) AS one \
                 LEFT JOIN identity_records r ON r.system = $1 AND r.source_id = $2"
            }
        };
        let (born, member_state): (Option<String>, Option<String>) = sqlx::query_as(sql)
            .bind(system.as_str())
            .bind(source_id)
            .fetch_one(&self.db.pool)
            .await?;
        born.map(|born| {
            Ok(GateFacts {
                date_of_birth: born
                    .parse()
                    .map_err(|_| corrupt("identity_records.date_of_birth"))?,
                member_state,
            })
        })
        .transpose()
    }

    pub async fn get_by_id(&self, record_id: i64) -> Result<Option<StoredRecord>, sqlx::Error> {
        let mut conn = self.db.pool.acquire().await?;
        rows::load(&mut conn, rows::RecordKey::Id(record_id)).await
    }

    /// A record's template ids, in the order of its templates.
    pub async fn template_ids(&self, record_id: i64) -> Result<Vec<i64>, sqlx::Error> {
        let mut conn = self.db.pool.acquire().await?;
        rows::template_ids(&mut conn, record_id).await
    }

    /// The records with these ids that exist (in id order when `ids` is sorted), in four
    /// queries however many.
    pub async fn get_many_by_id(&self, ids: &[i64]) -> Result<Vec<StoredRecord>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.db.pool.acquire().await?;
        rows::load_many(&mut conn, ids).await
    }

    /// Removes the record with its names, documents and templates; returns the removed
    /// templates' ids, or `None` when there was no such record.
    pub async fn delete(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<Option<Vec<i64>>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM identity_records WHERE system = $1 AND source_id = $2",
        )
        .bind(system.as_str())
        .bind(source_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        // Read before deleting: the cascade would take the template rows with the record.
        let templates = rows::template_ids(&mut tx, id).await?;
        let deleted = sqlx::query("DELETE FROM identity_records WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // A concurrent delete of the same record got there first: report it as absent.
        Ok((deleted.rows_affected() == 1).then_some(templates))
    }

    /// The `skip`-th record of `system` sharing a blocking key with `keys`, if any: for a
    /// hit flag, which stops at its first match. The blocks are read without sorting or
    /// merging, so the database stops at the row asked for: a block of one and a block of
    /// thirty cost the same up to it. A record in both blocks may come twice.
    pub async fn nth_candidate(
        &self,
        keys: &BlockingKeys,
        system: SourceSystem,
        skip: usize,
    ) -> Result<Option<i64>, sqlx::Error> {
        let (sql, binds) = blocking_query(keys, &[system], "UNION ALL", "");
        if sql.is_empty() {
            return Ok(None);
        }
        let sql = format!("{sql} LIMIT 1 OFFSET {skip}");
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Number(number) => query.bind(number),
            };
        }
        Ok(query.fetch_optional(&self.db.pool).await?.map(|(id, _)| id))
    }

    /// Records of `systems` sharing a blocking key with `keys`, with their system, in id
    /// order. Only `systems` are read: a system left out costs the query nothing it
    /// could tell apart (its rows are excluded by the query itself, not after it).
    pub async fn candidates(
        &self,
        keys: &BlockingKeys,
        systems: &[SourceSystem],
    ) -> Result<Vec<(i64, SourceSystem)>, sqlx::Error> {
        let (sql, binds) = blocking_query(keys, systems, "UNION", " ORDER BY 1");
        if sql.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Number(number) => query.bind(number),
            };
        }
        query
            .fetch_all(&self.db.pool)
            .await?
            .into_iter()
            .map(|(id, system)| {
                let system = system
                    .parse()
                    .map_err(|_| corrupt("identity_records.system"))?;
                Ok((id, system))
            })
            .collect()
    }

    /// Every indexable template with the record it belongs to: what the biometric index
    /// keeps beside itself so that a search needs no store lookup.
    pub async fn indexable_template_owners(&self) -> Result<Vec<TemplateOwner>, sqlx::Error> {
        sqlx::query(
            "SELECT t.id, t.record_id, r.system, r.source_id FROM biometric_templates t \
             JOIN identity_records r ON r.id = t.record_id WHERE t.indexable = TRUE",
        )
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|row| {
            let system: String = row.try_get("system")?;
            Ok(TemplateOwner {
                template_id: row.try_get("id")?,
                record_id: row.try_get("record_id")?,
                record: RecordRef::new(
                    system.parse().map_err(|_| super::corrupt("system"))?,
                    row.try_get::<String, _>("source_id")?,
                ),
            })
        })
        .collect()
    }

    /// Ids of the templates of `algorithm` that belong in the index.
    pub async fn indexable_template_ids(&self, algorithm: &str) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT id FROM biometric_templates WHERE algorithm = $1 AND indexable = TRUE ORDER BY id",
        )
        .bind(algorithm)
        .fetch_all(&self.db.pool)
        .await
    }

    /// The vectors of the given templates.
    pub async fn templates_by_ids(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<f32>)>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        self.rows_by_ids(
            "SELECT id, vector FROM biometric_templates WHERE id IN",
            ids,
        )
        .await?
        .iter()
        .map(|row| {
            let bytes: Vec<u8> = row.try_get("vector")?;
            let vector = connectors::vector_base64::from_bytes(&bytes)
                .ok_or_else(|| super::corrupt("vector"))?;
            Ok((row.try_get("id")?, vector))
        })
        .collect()
    }

    /// Runs `select_where_in` followed by the placeholder list for `ids`.
    pub(super) async fn rows_by_ids(
        &self,
        select_where_in: &str,
        ids: &[i64],
    ) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
        let sql = format!("{select_where_in} ({})", placeholders(1, ids.len()));
        with_ids(&sql, ids).fetch_all(&self.db.pool).await
    }

    /// Records whose current version the detector has not finished with (after a crash).
    /// Records per (system, birth year): the age bands of the statistics.
    pub async fn counts_by_birth_year(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT system, birth_year, COUNT(*) AS n FROM identity_records GROUP BY system, birth_year",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("system")?,
                    r.try_get("birth_year")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Records (latest versions) stored per hour since `since`: (hour since the epoch, count).
    pub async fn stored_per_hour(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stored_at / 3600000 AS hour, COUNT(*) AS n FROM identity_records \
             WHERE stored_at >= $1 GROUP BY stored_at / 3600000",
        )
        .bind(super::unix_millis(since))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("hour")?, r.try_get("n")?)))
            .collect()
    }

    /// Each record's system and nationalities (JSON), for the statistics by nationality.
    pub async fn nationalities(&self) -> Result<Vec<(String, Vec<String>)>, sqlx::Error> {
        let rows = sqlx::query("SELECT system, nationalities FROM identity_records")
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("nationalities")?;
                Ok((
                    r.try_get("system")?,
                    serde_json::from_str(&text).map_err(|_| corrupt("nationalities"))?,
                ))
            })
            .collect()
    }

    /// Per system: records, and how many have each optional part.
    pub async fn completeness(&self) -> Result<Vec<Completeness>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT r.system, COUNT(*) AS total, \
             SUM(CASE WHEN r.birth_day IS NOT NULL THEN 1 ELSE 0 END) AS full_date_of_birth, \
             SUM(CASE WHEN r.birth_place IS NOT NULL OR r.birth_country IS NOT NULL THEN 1 ELSE 0 END) AS place_of_birth, \
             SUM(CASE WHEN r.nationalities <> '[]' THEN 1 ELSE 0 END) AS nationality, \
             SUM(CASE WHEN r.sex <> 'X' THEN 1 ELSE 0 END) AS sex, \
             SUM(CASE WHEN EXISTS (SELECT 1 FROM identity_names n WHERE n.record_id = r.id AND n.given_names <> '') THEN 1 ELSE 0 END) AS given_names, \
             SUM(CASE WHEN EXISTS (SELECT 1 FROM travel_documents d WHERE d.record_id = r.id) THEN 1 ELSE 0 END) AS travel_document, \
             SUM(CASE WHEN EXISTS (SELECT 1 FROM biometric_templates t WHERE t.record_id = r.id AND t.modality = 'face') THEN 1 ELSE 0 END) AS face, \
             SUM(CASE WHEN EXISTS (SELECT 1 FROM biometric_templates t WHERE t.record_id = r.id AND t.modality = 'finger') THEN 1 ELSE 0 END) AS fingerprint \
             FROM identity_records r GROUP BY r.system ORDER BY r.system",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let part = |column: &str| -> Result<(String, i64), sqlx::Error> {
                    Ok((column.to_owned(), r.try_get(column)?))
                };
                Ok(Completeness {
                    system: r.try_get("system")?,
                    records: r.try_get("total")?,
                    present: [
                        "given_names",
                        "full_date_of_birth",
                        "place_of_birth",
                        "sex",
                        "nationality",
                        "travel_document",
                        "face",
                        "fingerprint",
                    ]
                    .into_iter()
                    .map(part)
                    .collect::<Result<_, _>>()?,
                })
            })
            .collect()
    }

    pub async fn undetected(&self) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT id FROM identity_records WHERE detected_version < version ORDER BY id",
        )
        .fetch_all(&self.db.pool)
        .await
    }

    /// Marks a record for detection at the next start; false when there is no such record.
    pub async fn mark_undetected(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let _gate = self.db.write_gate().await?;
        let updated = sqlx::query(
            "UPDATE identity_records SET detected_version = 0 WHERE system = $1 AND source_id = $2",
        )
        .bind(system.as_str())
        .bind(source_id)
        .execute(&self.db.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Marks each `(record id, version)` detected in one statement; a record that has
    /// meanwhile gained a newer version stays undetected.
    pub async fn mark_detected_many(&self, marks: &[(i64, i64)]) -> Result<(), sqlx::Error> {
        if marks.is_empty() {
            return Ok(());
        }
        let pairs = (0..marks.len())
            .map(|i| format!("(id = ${} AND version = ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!("UPDATE identity_records SET detected_version = version WHERE {pairs}");
        let query = marks
            .iter()
            .fold(sqlx::query(&sql), |query, (id, version)| {
                query.bind(*id).bind(*version)
            });
        let _gate = self.db.write_gate().await?;
        query.execute(&self.db.pool).await.map(|_| ())
    }
}

/// A SQLite partition's single upserter: takes what is queued and applies it in one
/// transaction (every write holds the one write lock through its commit, so a transaction
/// per record left ingests queueing for it). When a batch fails, each of its records is
/// tried again alone, so that one record's error is its own.
#[derive(Debug)]
struct UpsertWriter {
    db: Database,
}

impl BatchWriter for UpsertWriter {
    type Job = PendingUpsert;
    const MAX_BATCH: usize = 32;

    async fn write(&mut self, batch: &mut Vec<PendingUpsert>) {
        // A caller that went away (a cancelled request) wants nothing stored.
        batch.retain(|job| !job.done.is_closed());
        let together = if batch.len() > 1 {
            upsert_together(&self.db, batch).await.ok()
        } else {
            None
        };
        let results = match together {
            Some(results) => results,
            None => {
                let mut results = Vec::with_capacity(batch.len());
                for job in batch.iter() {
                    results.push(if job.done.is_closed() {
                        Err(sqlx::Error::PoolClosed)
                    } else {
                        upsert_alone(&self.db, &job.accepted, job.now).await
                    });
                }
                results
            }
        };
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.done.send(result);
        }
    }
}

async fn upsert_together(
    db: &Database,
    batch: &[PendingUpsert],
) -> Result<Vec<UpsertResult>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        results.push(Ok(upsert_in(&mut tx, &job.accepted, job.now).await?));
    }
    tx.commit().await?;
    Ok(results)
}

/// A value bound to a blocking query's placeholder.
enum Bind {
    Text(String),
    Number(i64),
}

/// The blocking query for `keys` over `systems`: one branch per block (name keys with the
/// birth year, or a travel-document number), joined by `union` and followed by `tail`, with
/// the values to bind in order. Empty when no block applies.
fn blocking_query(
    keys: &BlockingKeys,
    systems: &[SourceSystem],
    union: &str,
    tail: &str,
) -> (String, Vec<Bind>) {
    if systems.is_empty() {
        return (String::new(), Vec::new());
    }
    // Blocks carry their record's system, first in their indexes: rows of systems left
    // out are never reached, and no block is joined to its record.
    let in_systems =
        |table: &str| format!("{table}.system IN ({})", placeholders(1, systems.len()));
    let mut binds: Vec<Bind> = systems
        .iter()
        .map(|s| Bind::Text(s.as_str().to_owned()))
        .collect();
    let mut blocks = Vec::new();
    // One SELECT per block, each naming every column of its index (an OR of the two name
    // blocks let SQLite fall back to the system alone).
    if !keys.surnames.is_empty() {
        let at = binds.len() + 1;
        blocks.push(format!(
            "SELECT n.record_id, n.system FROM identity_names n \
             WHERE {} AND n.surname_key IN ({}) AND n.birth_year = ${}",
            in_systems("n"),
            placeholders(at + 1, keys.surnames.len()),
            at,
        ));
        binds.push(Bind::Number(keys.birth_year));
        binds.extend(keys.surnames.iter().map(|key| Bind::Text(key.clone())));
    }
    // Without a birth month the given-name block would be too wide to be worth it.
    let given_names = &keys.given_names;
    if let (false, Some(month)) = (given_names.is_empty(), keys.birth_month) {
        let at = binds.len() + 1;
        blocks.push(format!(
            "SELECT n.record_id, n.system FROM identity_names n \
             WHERE {} AND n.given_key IN ({}) AND n.birth_year = ${} AND n.birth_month = ${}",
            in_systems("n"),
            placeholders(at + 2, given_names.len()),
            at,
            at + 1,
        ));
        binds.push(Bind::Number(keys.birth_year));
        binds.push(Bind::Number(month));
        binds.extend(given_names.iter().map(|key| Bind::Text(key.clone())));
    }
    if !keys.documents.is_empty() {
        blocks.push(format!(
            "SELECT d.record_id, d.system FROM travel_documents d \
             WHERE {} AND d.number_normalised IN ({})",
            in_systems("d"),
            placeholders(binds.len() + 1, keys.documents.len())
        ));
        binds.extend(keys.documents.iter().map(|n| Bind::Text(n.clone())));
    }
    if blocks.is_empty() {
        return (String::new(), Vec::new());
    }
    (
        format!("{}{tail}", blocks.join(&format!(" {union} "))),
        binds,
    )
}

async fn upsert_alone(db: &Database, accepted: &Accepted, now: OffsetDateTime) -> UpsertResult {
    let mut tx = db.begin_write().await?;
    let result = upsert_in(&mut tx, accepted, now).await?;
    tx.commit().await?;
    Ok(result)
}

/// Creates, replays or applies a newer version of one record inside `tx`. A refusal
/// writes nothing.
async fn upsert_in(
    tx: &mut sqlx::AnyConnection,
    accepted: &Accepted,
    now: OffsetDateTime,
) -> UpsertResult {
    let record = &accepted.record;
    let row = rows::RecordRow::from_accepted(accepted, now);
    let inserted: Option<i64> = row
        .bind_all(sqlx::query_scalar(rows::INSERT_RECORD))
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(record_id) = inserted {
        let template_ids = rows::insert_children(tx, record_id, record).await?;
        return Ok(Ok(Upserted {
            outcome: UpsertOutcome::Created,
            record_id,
            template_ids,
            removed_template_ids: vec![],
            detection_pending: true,
        }));
    }
    let updated: Option<i64> = row
        .bind_all(sqlx::query_scalar(rows::UPDATE_NEWER_RECORD))
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(record_id) = updated {
        let removed_template_ids = rows::template_ids(tx, record_id).await?;
        rows::delete_children(tx, record_id).await?;
        let template_ids = rows::insert_children(tx, record_id, record).await?;
        return Ok(Ok(Upserted {
            outcome: UpsertOutcome::Updated,
            record_id,
            template_ids,
            removed_template_ids,
            detection_pending: true,
        }));
    }
    let (record_id, stored, fingerprint, owner, detected): (i64, i64, String, Option<String>, i64) =
        sqlx::query_as(
            "SELECT id, version, fingerprint, member_state, detected_version FROM identity_records \
             WHERE system = $1 AND source_id = $2",
        )
        .bind(record.system.as_str())
        .bind(record.source_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
    Ok(if owner != record.member_state {
        Err(UpsertRefusal::OtherOwner)
    } else if stored != record.version {
        Err(UpsertRefusal::Stale { stored })
    } else if fingerprint != row.fingerprint() {
        Err(UpsertRefusal::VersionReused { version: stored })
    } else {
        let detection_pending = detected < stored;
        let template_ids = if detection_pending {
            rows::template_ids(tx, record_id).await?
        } else {
            vec![]
        };
        Ok(Upserted {
            outcome: UpsertOutcome::Replayed,
            record_id,
            template_ids,
            removed_template_ids: vec![],
            detection_pending,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EES: &str = include_str!("../../../tests/fixtures/ees.json");

    fn ees(source_id: &str, version: i64, surname: &str) -> Accepted {
        let body = EES
            .replace("EES-DE-2026-000123", source_id)
            .replace("\"version\": 1", &format!("\"version\": {version}"))
            .replace("\"Müller\"", &format!("\"{surname}\""));
        connectors::parse(
            SourceSystem::Ees,
            body.as_bytes(),
            &connectors::AlgorithmRegistry::default(),
        )
        .expect("a valid EES record")
    }

    async fn applied(store: &IdentityStore, accepted: Accepted, now: OffsetDateTime) -> Upserted {
        store
            .upsert(&accepted, now)
            .await
            .expect("stored")
            .expect("applied")
    }

    async fn sqlite_store() -> (tempfile::TempDir, IdentityStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("civil.sqlite").display()
        );
        (
            dir,
            IdentityStore::open(&url, &PoolSettings::default())
                .await
                .expect("open"),
        )
    }

    /// Upserts queued while the write lock is held (the first waits for it alone, the five
    /// behind it form a batch) go into one transaction; a record whose statement fails there
    /// gets its own error, and the others of that batch are stored.
    #[tokio::test]
    async fn one_failing_record_does_not_fail_the_others_of_its_batch() {
        let (_dir, store) = sqlite_store().await;
        sqlx::query(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON identity_records \
             WHEN NEW.source_id = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(&store.db.pool)
        .await
        .expect("trigger");
        let now = OffsetDateTime::now_utc();
        applied(&store, ees("first", 1, "FIRST"), now).await;

        let gate = store.db.write_gate().await.expect("the gate");
        let mut waiting = Vec::new();
        for (i, source_id) in ["a", "b", "poison", "c", "first", "d"].iter().enumerate() {
            let store = store.clone();
            let accepted = ees(source_id, if *source_id == "first" { 2 } else { 1 }, "X");
            waiting.push(tokio::spawn(async move {
                (i, store.upsert(&accepted, now).await)
            }));
            // Queued in this order: "a" waits for the held write lock alone, the rest queue.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(gate);
        for joined in waiting {
            let (i, result) = joined.await.expect("task");
            match i {
                2 => assert!(result.is_err(), "the poisoned record fails"),
                4 => assert_eq!(
                    result.expect("stored").expect("applied").outcome,
                    UpsertOutcome::Updated
                ),
                _ => {
                    let upserted = result.expect("stored").expect("applied");
                    assert_eq!(upserted.outcome, UpsertOutcome::Created);
                    assert_eq!(upserted.template_ids.len(), 3);
                }
            }
        }
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_records")
            .fetch_one(&store.db.pool)
            .await
            .expect("count");
        assert_eq!(stored, 5, "first, a, b, c and d");
    }

    /// Many upserts at once, new records, replays and stale versions mixed: each gets the
    /// outcome it would get alone, with its own template ids.
    #[tokio::test]
    async fn concurrent_upserts_each_get_their_own_outcome() {
        let (_dir, store) = sqlite_store().await;
        let now = OffsetDateTime::now_utc();
        applied(&store, ees("kept", 3, "KEPT"), now).await;
        let results = futures::future::join_all((0..40).map(|i| {
            let store = store.clone();
            async move {
                let accepted = match i % 4 {
                    0 => ees("kept", 2, "KEPT"),
                    1 => ees("kept", 3, "KEPT"),
                    2 => ees("kept", 3, "OTHER"),
                    _ => ees(&format!("new-{i}"), 1, "NEW"),
                };
                store.upsert(&accepted, now).await.expect("stored")
            }
        }))
        .await;
        let mut template_ids = std::collections::BTreeSet::new();
        for (i, result) in results.into_iter().enumerate() {
            match i % 4 {
                0 => assert_eq!(result, Err(UpsertRefusal::Stale { stored: 3 })),
                1 => assert_eq!(result.expect("replayed").outcome, UpsertOutcome::Replayed),
                2 => assert_eq!(result, Err(UpsertRefusal::VersionReused { version: 3 })),
                _ => {
                    let created = result.expect("created");
                    assert_eq!(created.outcome, UpsertOutcome::Created);
                    template_ids.extend(created.template_ids);
                }
            }
        }
        assert_eq!(template_ids.len(), 30, "ten records, three templates each");
    }

    /// Every indexable template added or removed leaves one feed row, in commit order, read
    /// with the template's present state: an update's old template and a deleted record's
    /// (taken by the cascade) read as gone, and a reader that goes on from its cursor sees
    /// only what came after. Pruned rows are gone, and the pruned position says how far.
    #[tokio::test]
    async fn the_feed_names_every_template_change_in_commit_order() {
        let (_dir, store) = sqlite_store().await;
        let start = store.feed_start().await.expect("start");
        let now = OffsetDateTime::now_utc();
        let first = applied(&store, ees("EES-FEED-1", 1, "Feed"), now).await;
        let page = store.feed_after(start, start, 100).await.expect("page");
        assert!(page.complete);
        assert_eq!(page.changes.len(), first.template_ids.len());
        let present = page.changes[0].present.as_ref().expect("present");
        assert_eq!(present.owner.record_id, first.record_id);
        assert_eq!(present.owner.record.source_id, "EES-FEED-1");
        assert_eq!(page.changes[0].template_id, first.template_ids[0]);

        let second = applied(&store, ees("EES-FEED-1", 2, "Feed"), now).await;
        let after_update = store
            .feed_after(page.settled, page.settled, 100)
            .await
            .expect("page");
        let gone: Vec<i64> = after_update
            .changes
            .iter()
            .filter(|change| change.present.is_none())
            .map(|change| change.template_id)
            .collect();
        let added: Vec<i64> = after_update
            .changes
            .iter()
            .filter(|change| change.present.is_some())
            .map(|change| change.template_id)
            .collect();
        assert_eq!(
            gone, first.template_ids,
            "the replaced templates read as gone"
        );
        assert_eq!(added, second.template_ids, "the new ones as present");

        store
            .delete(SourceSystem::Ees, "EES-FEED-1")
            .await
            .expect("deleted")
            .expect("it existed");
        let after_delete = store
            .feed_after(after_update.settled, after_update.settled, 100)
            .await
            .expect("page");
        assert_eq!(
            after_delete
                .changes
                .iter()
                .map(|change| (change.template_id, change.present.is_some()))
                .collect::<Vec<_>>(),
            second
                .template_ids
                .iter()
                .map(|id| (*id, false))
                .collect::<Vec<_>>(),
            "the cascade's deletes are fed too"
        );
        let again = store.feed_after(start, start, 100).await.expect("page");
        assert!(
            again.changes.iter().all(|change| change.present.is_none()),
            "read again, every row reads the state now"
        );
        assert_eq!(
            store
                .feed_after(after_delete.settled, after_delete.settled, 100)
                .await
                .expect("page")
                .changes,
            vec![],
            "nothing after the end"
        );
        let limited = store.feed_after(start, start, 1).await.expect("page");
        assert!(!limited.complete, "a page cut short by its limit says so");

        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let pruned = store
            .prune_feed(std::time::Duration::ZERO, std::time::Duration::ZERO)
            .await
            .expect("pruned");
        assert_eq!(
            pruned,
            u64::try_from(again.changes.len()).unwrap_or_default()
        );
        assert_eq!(
            store.feed_pruned_through().await.expect("pruned"),
            after_delete.settled
        );
        assert!(store.feed_start().await.expect("start") >= after_delete.settled);
    }

    /// Rows every reader still reporting has passed are pruned before their age; a reader
    /// that stopped reporting holds nothing back, and rows a live reader has not passed stay.
    #[tokio::test]
    async fn the_feed_is_pruned_up_to_the_slowest_reader_still_reporting() {
        let (_dir, store) = sqlite_store().await;
        let day = std::time::Duration::from_secs(86_400);
        let now = OffsetDateTime::now_utc();
        let mut ends = Vec::new();
        let mut fed = Vec::new();
        for n in 1..=3 {
            let before = store.feed_start().await.expect("start");
            let upserted = applied(&store, ees(&format!("EES-PRUNE-{n}"), 1, "Prune"), now).await;
            fed.push(upserted.template_ids.len() as u64);
            let page = store.feed_after(before, before, 100).await.expect("page");
            ends.push(page.settled);
        }
        store
            .report_feed_position("fast", ends[2])
            .await
            .expect("reported");
        store
            .report_feed_position("slow", ends[0])
            .await
            .expect("reported");
        assert_eq!(
            store.prune_feed(day, day).await.expect("pruned"),
            fed[0],
            "the rows both readers passed"
        );
        assert_eq!(store.feed_pruned_through().await.expect("pruned"), ends[0]);
        assert_eq!(
            store.prune_feed(day, day).await.expect("pruned"),
            0,
            "the slow reader has not passed the rest"
        );
        store
            .report_feed_position("slow", ends[1])
            .await
            .expect("reported");
        assert_eq!(store.prune_feed(day, day).await.expect("pruned"), fed[1]);

        // The slow reader goes silent; the fast one reports again.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        store
            .report_feed_position("fast", ends[2])
            .await
            .expect("reported");
        assert_eq!(
            store
                .prune_feed(day, std::time::Duration::from_millis(25))
                .await
                .expect("pruned"),
            fed[2],
            "a silent reader holds nothing back"
        );
        assert_eq!(store.feed_pruned_through().await.expect("pruned"), ends[2]);
    }
}
