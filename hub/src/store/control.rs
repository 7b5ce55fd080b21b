//! The control database: casbin's rules (so administrators' changes persist), access
//! requests after a hit flag, the append-only, hash-chained audit log, ingest quality
//! counts, and each day's published statistics.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::audit_chain::{
    AuditEntry, AuditEvent, ChainBreak, ChainEnd, ChainVerified, ChainVerifier, chain_hash,
};
use super::{
    Backend, Database, PoolSettings, Schema, StoreError, corrupt, from_unix_millis, placeholders,
    unix_millis,
};

/// A casbin rule as stored: `p` (subject, system, action) or `g` (member, role, "").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    pub id: i64,
    pub ptype: String,
    pub v0: String,
    pub v1: String,
    pub v2: String,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub reason: String,
}

/// A rule to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub ptype: &'static str,
    pub v0: String,
    pub v1: String,
    pub v2: String,
    pub expires_at: Option<OffsetDateTime>,
    pub created_by: String,
    pub reason: String,
}

/// A revocation as stored: `kind` is `token` (target: its id), `principal` (target:
/// `agency/subject`) or `agency` (target: the agency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub id: i64,
    pub kind: String,
    pub target: String,
    /// A principal's or agency's tokens issued up to this instant are refused.
    pub revoked_at: OffsetDateTime,
    /// Every token the revocation can refuse has expired by this instant.
    pub forget_after: OffsetDateTime,
    pub created_by: String,
    pub reason: String,
}

/// A change to the rules waiting for (or decided by) a second administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChangeRow {
    pub id: i64,
    /// `add` or `remove`.
    pub change: String,
    /// The rule to add, or the rule to remove as it was.
    pub rule: NewRule,
    /// `remove`: the rule's id.
    pub rule_id: Option<i64>,
    pub proposed_by: String,
    pub proposed_at: OffsetDateTime,
    /// `pending`, `approved` or `refused`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    pub decision_reason: Option<String>,
}

/// An access request (or a recorded decision not to file one) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: String,
    /// `request` or `no_request`.
    pub kind: String,
    /// pending, granted, refused, or recorded (`no_request`).
    pub status: String,
    pub subject: String,
    pub agency: String,
    pub member_state: String,
    pub system: String,
    pub case_reference: String,
    pub justification: String,
    pub created_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    /// A grant's full access lapses by itself at this instant.
    pub grant_expires_at: Option<OffsetDateTime>,
}

const CHANGE_COLUMNS: &str = "id, change, ptype, v0, v1, v2, rule_id, expires_at, reason, \
     proposed_by, proposed_at, status, decided_by, decided_at, decision_reason";
const REVOCATION_COLUMNS: &str = "id, kind, target, revoked_at, forget_after, created_by, reason";
const RULE_COLUMNS: &str = "id, ptype, v0, v1, v2, expires_at, created_at, created_by, reason";
const REQUEST_COLUMNS: &str = "id, kind, status, subject, agency, member_state, system, case_reference, \
     justification, created_at, decided_at, decided_by, decision_reason, grant_expires_at";
/// One ingest quality counter: (system, kind, rule).
pub type IngestCountKey = (String, String, String);

/// How many ingests of a system ended in one kind of outcome, by rule.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IngestCount {
    pub system: String,
    /// `accepted`, `refused`, `flagged`, …
    pub kind: String,
    /// The rule a refusal or finding named; empty for the kind as a whole.
    pub rule: String,
    pub count: i64,
}

/// Audit rows per INSERT statement: `AUDIT_COLUMN_COUNT` parameters each, well under
/// SQLite's limit of 32,766.
const AUDIT_ROWS_PER_INSERT: usize = 64;
const AUDIT_COLUMN_COUNT: usize = 11;

const AUDIT_COLUMNS: &str =
    "seq, at, subject, agency, member_state, purpose, action, query, outcome, prev_hash, hash";
const BASELINE_LOADED: &str = "baseline_loaded";
/// Written by the `audit_log_head` trigger (control migration 0002), which names it too.
const AUDIT_HEAD: &str = "audit_head";

#[derive(Debug, Clone)]
pub struct ControlStore {
    db: Database,
    /// PostgreSQL: the connections the shared request budgets and hit-flag counts are
    /// written on, which do not wait for their commit to reach the disk (a crash of the
    /// server forgets at most its last fraction of a second of budget use). Every search
    /// writes to them, and waiting for the disk twice per search halved the search rate.
    limits: Option<sqlx::AnyPool>,
    /// PostgreSQL: where announcements of changes to the rules are listened for.
    announcements: Option<ListenAt>,
    /// Where this process last ended the audit chain, shared by its appenders (SQLite, where
    /// this process is the only writer); `None` until the first append and after an error,
    /// when the chain's end is read from the rows again.
    audit_tail: Arc<tokio::sync::Mutex<Option<ChainEnd>>>,
}

impl ControlStore {
    pub async fn open(url: &str, pool: &PoolSettings) -> Result<Self, StoreError> {
        let db = Database::open(url, Schema::Control, pool).await?;
        let limits = if db.backend() == Backend::Postgres {
            let timeout_millis = pool.statement_timeout.as_millis();
            Some(
                sqlx::any::AnyPoolOptions::new()
                    .max_connections(LIMITS_CONNECTIONS)
                    .acquire_timeout(pool.acquire_timeout)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor as _;
                            conn.execute(
                                format!("SET statement_timeout = {timeout_millis}").as_str(),
                            )
                            .await?;
                            conn.execute("SET synchronous_commit = off").await?;
                            Ok(())
                        })
                    })
                    .connect_lazy(url)?,
            )
        } else {
            None
        };
        let announcements = (db.backend() == Backend::Postgres).then(|| ListenAt(url.to_owned()));
        Ok(Self {
            db,
            limits,
            announcements,
            audit_tail: Arc::default(),
        })
    }

    /// Listens, on a connection of its own, for announcements of changes to the rules made
    /// through any hub; `None` on SQLite, where this process makes every change.
    pub async fn policy_announcements(&self) -> Result<Option<PolicyAnnouncements>, sqlx::Error> {
        let Some(ListenAt(url)) = &self.announcements else {
            return Ok(None);
        };
        let options = url
            .parse::<sqlx::postgres::PgConnectOptions>()?
            .application_name(POLICY_LISTENER_NAME);
        // The listener's own pool of one, which reconnects it when its connection breaks;
        // an idle listener is not a stale connection.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(self.db.acquire_timeout)
            .connect_with(options)
            .await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(POLICY_CHANNEL).await?;
        Ok(Some(PolicyAnnouncements { listener }))
    }

    /// Where the shared budgets and counts are written.
    fn limits_pool(&self) -> &sqlx::AnyPool {
        self.limits.as_ref().unwrap_or(&self.db.pool)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Stores the baseline policy, once in the database's life: an administrator who
    /// removes a baseline rule does not see it come back at the next start.
    pub async fn seed_once(
        &self,
        rules: &[NewRule],
        now: OffsetDateTime,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        if self.db.backend() == Backend::Postgres {
            // Hubs started together on a new database: one seeds, the others wait for it and
            // then find the baseline loaded.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SEED_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let loaded: Option<String> =
            sqlx::query_scalar("SELECT value FROM control_meta WHERE key = $1")
                .bind(BASELINE_LOADED)
                .fetch_optional(&mut *tx)
                .await?;
        if loaded.is_some() {
            return Ok(false);
        }
        for rule in rules {
            insert_rule(&mut tx, rule, now, OnConflict::Keep).await?;
        }
        sqlx::query("INSERT INTO control_meta (key, value) VALUES ($1, $2)")
            .bind(BASELINE_LOADED)
            .bind(unix_millis(now).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The policy's version: moved by every change to the rules, whichever hub made it.
    pub async fn policy_version(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT version FROM policy_version")
            .fetch_one(&self.db.pool)
            .await
    }

    /// Every rule, lapsed grants included, in the order they were made.
    pub async fn rules(&self) -> Result<Vec<RuleRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM policy_rules ORDER BY id"
        ))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(rule_from_row).collect()
    }

    /// Adds a rule; `None` when the same rule exists already.
    pub async fn add_rule(
        &self,
        rule: &NewRule,
        now: OffsetDateTime,
    ) -> Result<Option<RuleRow>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let added = insert_rule(&mut tx, rule, now, OnConflict::Keep).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// One rule, by id.
    pub async fn rule(&self, id: i64) -> Result<Option<RuleRow>, sqlx::Error> {
        let mut conn = self.db.pool.acquire().await?;
        rule_in(&mut conn, id).await
    }

    pub async fn delete_rule(&self, id: i64) -> Result<Option<RuleRow>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let Some(rule) = rule_in(&mut tx, id).await? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM policy_rules WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(rule))
    }

    /// Stores a proposed change, pending (its `id` is the store's to give).
    pub async fn propose_policy_change(
        &self,
        change: &PolicyChangeRow,
    ) -> Result<PolicyChangeRow, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO policy_changes (change, ptype, v0, v1, v2, rule_id, expires_at, reason, \
             proposed_by, proposed_at, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending') RETURNING id",
        )
        .bind(change.change.as_str())
        .bind(change.rule.ptype)
        .bind(change.rule.v0.as_str())
        .bind(change.rule.v1.as_str())
        .bind(change.rule.v2.as_str())
        .bind(change.rule_id)
        .bind(change.rule.expires_at.map(unix_millis))
        .bind(change.rule.reason.as_str())
        .bind(change.proposed_by.as_str())
        .bind(unix_millis(change.proposed_at))
        .fetch_one(&mut *tx)
        .await?;
        let row = policy_change_in(&mut tx, id).await?;
        tx.commit().await?;
        row.ok_or(sqlx::Error::RowNotFound)
    }

    /// Changes with `status` (every one when `None`), newest first, at most `limit`.
    pub async fn policy_changes(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PolicyChangeRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM policy_changes WHERE ($1 = '' OR status = $1) \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(status.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(policy_change_from_row).collect()
    }

    pub async fn policy_change(&self, id: i64) -> Result<Option<PolicyChangeRow>, sqlx::Error> {
        let mut conn = self.db.pool.acquire().await?;
        policy_change_in(&mut conn, id).await
    }

    /// Decides a pending change and, if approved, makes it — the rule added or removed —
    /// in one transaction. `None` when the change is not pending (decided meanwhile).
    pub async fn decide_policy_change(
        &self,
        decided: &PolicyChangeRow,
    ) -> Result<Option<PolicyChangeRow>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE policy_changes SET status = $2, decided_by = $3, decided_at = $4, \
             decision_reason = $5 WHERE id = $1 AND status = 'pending'",
        )
        .bind(decided.id)
        .bind(decided.status.as_str())
        .bind(decided.decided_by.as_deref())
        .bind(decided.decided_at.map(unix_millis))
        .bind(decided.decision_reason.as_deref())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        if decided.status == "approved" {
            let now = decided.decided_at.unwrap_or_else(OffsetDateTime::now_utc);
            match (decided.change.as_str(), decided.rule_id) {
                ("remove", Some(rule_id)) => {
                    sqlx::query("DELETE FROM policy_rules WHERE id = $1")
                        .bind(rule_id)
                        .execute(&mut *tx)
                        .await?;
                }
                // The same rule added meanwhile is the change made already.
                _ => {
                    insert_rule(&mut tx, &decided.rule, now, OnConflict::Keep).await?;
                }
            }
        }
        let row = policy_change_in(&mut tx, decided.id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The revocations not yet forgotten at `now`, oldest first.
    pub async fn revocations(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<RevocationRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE forget_after > $1 ORDER BY id"
        ))
        .bind(unix_millis(now))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    /// Stores a revocation (its `id` is the store's to give), forgetting those whose tokens
    /// have all expired by `revocation.revoked_at`, in one transaction.
    pub async fn add_revocation(
        &self,
        revocation: &RevocationRow,
    ) -> Result<RevocationRow, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM revocations WHERE forget_after <= $1")
            .bind(unix_millis(revocation.revoked_at))
            .execute(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO revocations (kind, target, revoked_at, forget_after, created_by, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(revocation.kind.as_str())
        .bind(revocation.target.as_str())
        .bind(unix_millis(revocation.revoked_at))
        .bind(unix_millis(revocation.forget_after))
        .bind(revocation.created_by.as_str())
        .bind(revocation.reason.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        revocation_from_row(&row)
    }

    pub async fn insert_access_request(&self, request: &AccessRequest) -> Result<(), sqlx::Error> {
        let _gate = self.db.write_gate().await?;
        sqlx::query(&format!(
            "INSERT INTO access_requests ({REQUEST_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(request.id.as_str())
        .bind(request.kind.as_str())
        .bind(request.status.as_str())
        .bind(request.subject.as_str())
        .bind(request.agency.as_str())
        .bind(request.member_state.as_str())
        .bind(request.system.as_str())
        .bind(request.case_reference.as_str())
        .bind(request.justification.as_str())
        .bind(unix_millis(request.created_at))
        .bind(request.decided_at.map(unix_millis))
        .bind(request.decided_by.as_deref())
        .bind(request.decision_reason.as_deref())
        .bind(request.grant_expires_at.map(unix_millis))
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Requests, oldest first; only those with `status` when given.
    pub async fn access_requests(
        &self,
        status: Option<&str>,
    ) -> Result<Vec<AccessRequest>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE ($1 = '' OR status = $1) \
             ORDER BY created_at, id"
        ))
        .bind(status.unwrap_or(""))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    pub async fn access_request(&self, id: &str) -> Result<Option<AccessRequest>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    /// Decides a pending request, and stores the grant's rules with it, in one transaction.
    /// `false` when the request is not pending (decided meanwhile, or never filed).
    pub async fn decide_access_request(
        &self,
        decided: &AccessRequest,
        grant: &[NewRule],
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE access_requests SET status = $2, decided_at = $3, decided_by = $4, \
             decision_reason = $5, grant_expires_at = $6 WHERE id = $1 AND status = 'pending'",
        )
        .bind(decided.id.as_str())
        .bind(decided.status.as_str())
        .bind(decided.decided_at.map(unix_millis))
        .bind(decided.decided_by.as_deref())
        .bind(decided.decision_reason.as_deref())
        .bind(decided.grant_expires_at.map(unix_millis))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        let now = decided.decided_at.unwrap_or_else(OffsetDateTime::now_utc);
        for rule in grant {
            // A second grant of the same right extends the first rather than failing.
            insert_rule(&mut tx, rule, now, OnConflict::ExtendLapsing).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Every ingest count.
    pub async fn ingest_counts(&self) -> Result<Vec<IngestCount>, sqlx::Error> {
        sqlx::query_as(
            "SELECT system, kind, rule, count FROM ingest_quality ORDER BY system, kind, rule",
        )
        .fetch_all(&self.db.pool)
        .await
    }

    /// The statistics published for a UTC day (days since the epoch), if taken yet.
    pub async fn statistics_snapshot(&self, day: i64) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT statistics FROM statistics_snapshots WHERE day = $1")
            .bind(day)
            .fetch_optional(&self.db.pool)
            .await
    }

    /// Keeps `statistics` as the day's publication unless one is kept already, and answers
    /// the one kept: requests (or hubs) that take the day's first snapshot at once agree on
    /// one.
    pub async fn keep_statistics_snapshot(
        &self,
        day: i64,
        statistics: &str,
    ) -> Result<String, sqlx::Error> {
        {
            let _gate = self.db.write_gate().await?;
            sqlx::query(
                "INSERT INTO statistics_snapshots (day, statistics) VALUES ($1, $2) \
                 ON CONFLICT (day) DO NOTHING",
            )
            .bind(day)
            .bind(statistics)
            .execute(&self.db.pool)
            .await?;
        }
        self.statistics_snapshot(day)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Takes one request from the GCRA budget `key` at `now_micros`, for every hub on this
    /// database at once: `emission_micros` apart on average, `tolerance_micros` ahead of that
    /// at most (a burst of b is b − 1 emissions). `None` when taken, or the microseconds to
    /// wait before one can be.
    pub async fn take_budget(
        &self,
        key: &str,
        now_micros: i64,
        emission_micros: i64,
        tolerance_micros: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let taken: Option<i64> = {
            let _gate = self.db.write_gate().await?;
            // The new instant is max(instant + emission, now + emission); a budget a row
            // refuses keeps its instant.
            sqlx::query_scalar(
                "INSERT INTO request_budgets AS b (key, tat_micros) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET tat_micros = CASE \
                     WHEN b.tat_micros + $3 > excluded.tat_micros THEN b.tat_micros + $3 \
                     ELSE excluded.tat_micros END \
                 WHERE b.tat_micros + $3 - excluded.tat_micros <= $4 \
                 RETURNING tat_micros",
            )
            .bind(key)
            .bind(now_micros.saturating_add(emission_micros))
            .bind(emission_micros)
            .bind(tolerance_micros)
            .fetch_optional(self.limits_pool())
            .await?
        };
        if taken.is_some() {
            return Ok(None);
        }
        let instant: Option<i64> =
            sqlx::query_scalar("SELECT tat_micros FROM request_budgets WHERE key = $1")
                .bind(key)
                .fetch_optional(self.limits_pool())
                .await?;
        Ok(Some(instant.map_or(0, |at| {
            (at - tolerance_micros - now_micros).max(0)
        })))
    }

    /// Counts a search answered to `subject` with a hit flag in `hour` (hours since the
    /// epoch), for every hub on this database at once: the count so far, this one included.
    pub async fn count_hit_flag(&self, subject: &str, hour: i64) -> Result<i64, sqlx::Error> {
        let _gate = self.db.write_gate().await?;
        sqlx::query_scalar(
            "INSERT INTO hit_flag_counts (subject, hour, count) VALUES ($1, $2, 1) \
             ON CONFLICT (subject, hour) DO UPDATE SET count = hit_flag_counts.count + 1 \
             RETURNING count",
        )
        .bind(subject)
        .bind(hour)
        .fetch_one(self.limits_pool())
        .await
    }

    /// Forgets budgets back at full by `now_micros` and hit-flag counts of hours before
    /// `hour`: rows that no longer change what any hub decides.
    pub async fn prune_limits(&self, now_micros: i64, hour: i64) -> Result<u64, sqlx::Error> {
        let _gate = self.db.write_gate().await?;
        let budgets = sqlx::query("DELETE FROM request_budgets WHERE tat_micros < $1")
            .bind(now_micros)
            .execute(self.limits_pool())
            .await?;
        let counts = sqlx::query("DELETE FROM hit_flag_counts WHERE hour < $1")
            .bind(hour)
            .execute(self.limits_pool())
            .await?;
        Ok(budgets.rows_affected() + counts.rows_affected())
    }

    /// An appender of the audit chain. Any number may append at once, in this process or in
    /// several hubs on one PostgreSQL database: each append holds the chain's one head (module
    /// comment of [`AuditAppender`]), so none collides and none is retried.
    pub fn audit_appender(&self) -> AuditAppender {
        AuditAppender {
            store: self.clone(),
        }
    }

    /// Entries with `seq > after`, in order, at most `limit`.
    pub async fn audit_entries(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Walks the whole audit log: the number of entries when the chain holds, or the first
    /// place it breaks.
    pub async fn verify_audit_chain(&self) -> Result<Result<u64, ChainBreak>, sqlx::Error> {
        Ok(self
            .verify_audit_chain_against(Vec::new())
            .await?
            .map(|verified| verified.entries))
    }

    /// As [`Self::verify_audit_chain`], and every entry a signed checkpoint names must still
    /// have the hash the checkpoint signed.
    pub async fn verify_audit_chain_against(
        &self,
        checkpoints: Vec<ChainEnd>,
    ) -> Result<Result<ChainVerified, ChainBreak>, sqlx::Error> {
        /// Entries read at a time.
        const PAGE: i64 = 1_000;
        let mut verifier = ChainVerifier::with_checkpoints(checkpoints);
        let mut after = 0;
        loop {
            let entries = self.audit_entries(after, PAGE).await?;
            for entry in &entries {
                if let Err(broken) = verifier.check(entry) {
                    return Ok(Err(broken));
                }
            }
            match entries.last() {
                Some(last) => after = last.seq,
                None => break,
            }
        }
        Ok(verifier.finish(self.audit_head().await?))
    }

    /// The last entry's sequence number and hash, as recorded at its append.
    pub async fn audit_head(&self) -> Result<Option<ChainEnd>, sqlx::Error> {
        let mut conn = self.db.pool.acquire().await?;
        recorded_head(&mut conn).await
    }
}

/// Appends to the audit chain, holding its one head for the whole append.
///
/// On PostgreSQL, where several hubs may append, every append is a transaction that first
/// takes a transaction-scoped advisory lock on the head, then reads where the chain ends and
/// inserts after it: appenders queue on the lock, and the primary key on `seq` is never
/// reached by a second writer. On SQLite this process is the only writer (the data
/// directory's lock); its appenders share the end of the chain they last wrote, behind a
/// mutex, so that an append of search entries is a single INSERT statement (a trigger keeps
/// the recorded head in step): each statement is a round trip to the database's worker, and
/// every answer waits for its entry. Any other append reads the chain's end under the write
/// lock, and so does one whose INSERT met an entry another store in this process wrote
/// (several hubs opened in one process, as the bench does).
#[derive(Debug)]
pub struct AuditAppender {
    store: ControlStore,
}

/// Connections of a hub's pool for the shared request budgets (PostgreSQL): one short
/// statement each, so two serve many searches in flight.
const LIMITS_CONNECTIONS: u32 = 2;

/// The channel every change to the rules is announced on (PostgreSQL): control migration
/// 0006 names it too.
const POLICY_CHANNEL: &str = "interop_hub_policy";
/// How the announcement listener's connection names itself (in `pg_stat_activity`).
pub const POLICY_LISTENER_NAME: &str = "interop-hub policy listener";

/// The control database's URL, for the listener's connection; never shown, as it may hold a
/// password.
#[derive(Clone)]
struct ListenAt(String);

impl std::fmt::Debug for ListenAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenAt(..)")
    }
}

/// Announcements of changes to the rules, made through any hub on the control database.
pub struct PolicyAnnouncements {
    listener: sqlx::postgres::PgListener,
}

impl std::fmt::Debug for PolicyAnnouncements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyAnnouncements")
            .finish_non_exhaustive()
    }
}

impl PolicyAnnouncements {
    /// Waits until the rules may have changed: a change was announced, or the listening
    /// connection was seen to break and was opened again (an announcement may have been
    /// missed while it was down). An error: it broke in a way the listener does not mend by
    /// itself, or could not be opened again; open another.
    pub async fn changed(&mut self) -> Result<(), sqlx::Error> {
        self.listener.try_recv().await.map(|_| ())
    }
}

/// The advisory lock key of the one-time seeding of the baseline policy (PostgreSQL).
const SEED_LOCK: i64 = 0x7365_6564_5f6f_6e63;

/// The advisory lock key of the audit chain's head (PostgreSQL): any fixed number no other
/// lock of the hub uses.
const AUDIT_HEAD_LOCK: i64 = 0x6175_6469_745f_6864;

/// One entry placed in the chain.
#[derive(Debug)]
struct ChainedRow<'a> {
    seq: i64,
    at_millis: i64,
    event: &'a AuditEvent,
    prev_hash: String,
    hash: String,
}

/// One entry for the chain: what happened, when, and for an answer that hands out personal
/// data, the policy version it was decided under.
#[derive(Debug, Clone)]
pub struct ChainEntry {
    pub event: AuditEvent,
    pub at: OffsetDateTime,
    pub decided_under: Option<i64>,
}

impl ChainEntry {
    /// An entry whose answer does not depend on the policy version.
    pub fn new(event: AuditEvent, at: OffsetDateTime) -> Self {
        Self {
            event,
            at,
            decided_under: None,
        }
    }
}

/// The entries an append left out of the chain: their answers were decided under a policy
/// version older than the store's `policy_version` (another hub changed a rule since), so
/// their operations decide again instead of answering.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outdated {
    /// Positions in the appended slice.
    pub entries: Vec<usize>,
    pub policy_version: i64,
}

impl AuditAppender {
    /// Appends entries, in order, at the end of the chain, all or none. `counts` are added to
    /// the ingest quality counts ((system, kind, rule) → how many) in the same transaction:
    /// the counts of ingests whose entries are written, and no others.
    ///
    /// On PostgreSQL the policy version is read in the same transaction, under the head's
    /// lock: an entry decided under an older one is left out and named in the answer. A
    /// rule removed through any hub has committed before any request that follows its
    /// answer appends, so no such request is answered under the rule. On SQLite this process
    /// is the only one changing the policy, and swaps the new one in before a change is
    /// answered: nothing is left out.
    pub async fn append(
        &mut self,
        entries: &[ChainEntry],
        counts: &BTreeMap<IngestCountKey, i64>,
    ) -> Result<Outdated, sqlx::Error> {
        if entries.is_empty() {
            return Ok(Outdated::default());
        }
        let db = &self.store.db;
        if db.backend() == Backend::Postgres {
            let mut tx = db.begin_write().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(AUDIT_HEAD_LOCK)
                .execute(&mut *tx)
                .await?;
            let mut outdated = Outdated::default();
            if entries.iter().any(|entry| entry.decided_under.is_some()) {
                outdated.policy_version = sqlx::query_scalar("SELECT version FROM policy_version")
                    .fetch_one(&mut *tx)
                    .await?;
                outdated.entries = entries
                    .iter()
                    .enumerate()
                    .filter(|(_, entry)| {
                        entry
                            .decided_under
                            .is_some_and(|version| version < outdated.policy_version)
                    })
                    .map(|(n, _)| n)
                    .collect();
            }
            let kept: Vec<&ChainEntry> = entries
                .iter()
                .enumerate()
                .filter(|(n, _)| !outdated.entries.contains(n))
                .map(|(_, entry)| entry)
                .collect();
            if !kept.is_empty() {
                let tail = chain_tail(&mut tx).await?;
                append_in(&mut tx, tail, &kept, counts).await?;
            }
            tx.commit().await?;
            return Ok(outdated);
        }
        let entries: Vec<&ChainEntry> = entries.iter().collect();
        let mut remembered = self.store.audit_tail.lock().await;
        let fast = remembered
            .take()
            .filter(|_| counts.is_empty() && entries.len() <= AUDIT_ROWS_PER_INSERT);
        if let Some(tail) = fast {
            // The remembered end and a batch one statement holds: one INSERT, atomic by
            // itself, trigger included.
            let (rows, end) = chained(tail, &entries);
            let sql = audit_insert_sql(rows.len());
            let inserted = {
                let _gate = db.write_gate().await?;
                audit_insert(&sql, &rows).execute(&db.pool).await
            };
            match inserted {
                Ok(_) => {
                    *remembered = Some(end);
                    return Ok(Outdated::default());
                }
                // Another store of this process on the same file appended since (the bench
                // and the tests open several hubs in one process): chain on from the rows.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
                Err(e) => return Err(e),
            }
        }
        // Under SQLite's write lock, read from the rows: no other writer appends between the
        // read and the insert.
        let mut tx = db.begin_write().await?;
        let tail = chain_tail(&mut tx).await?;
        let end = append_in(&mut tx, tail, &entries, counts).await?;
        tx.commit().await?;
        *remembered = Some(end);
        Ok(Outdated::default())
    }
}

/// Inserts `events` after `tail` and adds `counts`, inside `tx`; the chain's new end.
async fn append_in(
    tx: &mut sqlx::AnyConnection,
    tail: ChainEnd,
    events: &[&ChainEntry],
    counts: &BTreeMap<IngestCountKey, i64>,
) -> Result<ChainEnd, sqlx::Error> {
    let (rows, end) = chained(tail, events);
    // One multi-row INSERT per chunk: a statement per entry costs a round trip.
    for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
        let sql = audit_insert_sql(chunk.len());
        audit_insert(&sql, chunk).execute(&mut *tx).await?;
    }
    for ((system, kind, rule), count) in counts {
        sqlx::query(
            "INSERT INTO ingest_quality (system, kind, rule, count) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (system, kind, rule) DO UPDATE SET count = ingest_quality.count + $4",
        )
        .bind(system.as_str())
        .bind(kind.as_str())
        .bind(rule.as_str())
        .bind(*count)
        .execute(&mut *tx)
        .await?;
    }
    Ok(end)
}

/// `events` placed in the chain after `tail`, and the chain's new end.
fn chained<'a>(tail: ChainEnd, events: &[&'a ChainEntry]) -> (Vec<ChainedRow<'a>>, ChainEnd) {
    let ChainEnd {
        mut seq,
        hash: mut prev_hash,
    } = tail;
    let mut rows = Vec::with_capacity(events.len());
    for entry in events {
        seq += 1;
        let at_millis = unix_millis(entry.at);
        let hash = chain_hash(&prev_hash, seq, at_millis, &entry.event);
        rows.push(ChainedRow {
            seq,
            at_millis,
            event: &entry.event,
            prev_hash,
            hash: hash.clone(),
        });
        prev_hash = hash;
    }
    (
        rows,
        ChainEnd {
            seq,
            hash: prev_hash,
        },
    )
}

/// Where the next entry chains on: the last row, or the recorded head where it is further
/// on. The newest entries were then deleted, and chaining on from the head keeps the gap
/// visible instead of reusing their numbers.
async fn chain_tail(conn: &mut sqlx::AnyConnection) -> Result<ChainEnd, sqlx::Error> {
    let last: ChainEnd =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or_else(ChainEnd::genesis);
    Ok(match recorded_head(conn).await? {
        Some(head) if head.seq > last.seq => head,
        _ => last,
    })
}

/// The head as the `audit_log_head` trigger recorded it.
async fn recorded_head(conn: &mut sqlx::AnyConnection) -> Result<Option<ChainEnd>, sqlx::Error> {
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM control_meta WHERE key = $1")
        .bind(AUDIT_HEAD)
        .fetch_optional(&mut *conn)
        .await?;
    value
        .map(|v| {
            let (seq, hash) = v.split_once(' ').ok_or_else(|| corrupt("audit_head"))?;
            Ok(ChainEnd {
                seq: seq.parse().map_err(|_| corrupt("audit_head"))?,
                hash: hash.to_owned(),
            })
        })
        .transpose()
}

fn audit_insert_sql(rows: usize) -> String {
    let values = (0..rows)
        .map(|row| {
            let first = row * AUDIT_COLUMN_COUNT + 1;
            format!("({})", placeholders(first, AUDIT_COLUMN_COUNT))
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES {values}")
}

fn audit_insert<'q>(
    sql: &'q str,
    rows: &'q [ChainedRow<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    rows.iter().fold(sqlx::query(sql), |insert, row| {
        let event = row.event;
        insert
            .bind(row.seq)
            .bind(row.at_millis)
            .bind(event.subject.as_str())
            .bind(event.agency.as_str())
            .bind(event.member_state.as_str())
            .bind(event.purpose.as_str())
            .bind(event.action.as_str())
            .bind(event.query.as_str())
            .bind(event.outcome.as_str())
            .bind(row.prev_hash.as_str())
            .bind(row.hash.as_str())
    })
}

/// What storing a rule that exists already does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnConflict {
    /// Nothing: the caller learns that the rule existed (`None`).
    Keep,
    /// A lapsing rule takes the new expiry (a grant renewed); a permanent one stays.
    ExtendLapsing,
}

async fn insert_rule(
    conn: &mut sqlx::AnyConnection,
    rule: &NewRule,
    now: OffsetDateTime,
    on_conflict: OnConflict,
) -> Result<Option<RuleRow>, sqlx::Error> {
    let conflict = match on_conflict {
        OnConflict::Keep => "DO NOTHING",
        OnConflict::ExtendLapsing => {
            "DO UPDATE SET expires_at = excluded.expires_at, created_by = excluded.created_by, \
             reason = excluded.reason WHERE policy_rules.expires_at IS NOT NULL"
        }
    };
    let id: Option<i64> = sqlx::query_scalar(&format!(
        "INSERT INTO policy_rules (ptype, v0, v1, v2, expires_at, created_at, created_by, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (ptype, v0, v1, v2) {conflict} RETURNING id"
    ))
    .bind(rule.ptype)
    .bind(rule.v0.as_str())
    .bind(rule.v1.as_str())
    .bind(rule.v2.as_str())
    .bind(rule.expires_at.map(unix_millis))
    .bind(unix_millis(now))
    .bind(rule.created_by.as_str())
    .bind(rule.reason.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id.map(|id| RuleRow {
        id,
        ptype: rule.ptype.to_owned(),
        v0: rule.v0.clone(),
        v1: rule.v1.clone(),
        v2: rule.v2.clone(),
        expires_at: rule.expires_at,
        created_at: from_unix_millis(unix_millis(now)).unwrap_or(now),
        created_by: rule.created_by.clone(),
        reason: rule.reason.clone(),
    }))
}

fn millis(row: &AnyRow, column: &'static str) -> Result<OffsetDateTime, sqlx::Error> {
    from_unix_millis(row.try_get(column)?).ok_or_else(|| corrupt(column))
}

fn optional_millis(
    row: &AnyRow,
    column: &'static str,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|m| from_unix_millis(m).ok_or_else(|| corrupt(column)))
        .transpose()
}

fn rule_from_row(row: &AnyRow) -> Result<RuleRow, sqlx::Error> {
    Ok(RuleRow {
        id: row.try_get("id")?,
        ptype: row.try_get("ptype")?,
        v0: row.try_get("v0")?,
        v1: row.try_get("v1")?,
        v2: row.try_get("v2")?,
        expires_at: optional_millis(row, "expires_at")?,
        created_at: millis(row, "created_at")?,
        created_by: row.try_get("created_by")?,
        reason: row.try_get("reason")?,
    })
}

async fn rule_in(conn: &mut sqlx::AnyConnection, id: i64) -> Result<Option<RuleRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {RULE_COLUMNS} FROM policy_rules WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(rule_from_row)
    .transpose()
}

async fn policy_change_in(
    conn: &mut sqlx::AnyConnection,
    id: i64,
) -> Result<Option<PolicyChangeRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {CHANGE_COLUMNS} FROM policy_changes WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(policy_change_from_row)
    .transpose()
}

fn policy_change_from_row(row: &AnyRow) -> Result<PolicyChangeRow, sqlx::Error> {
    let ptype: String = row.try_get("ptype")?;
    let ptype = ["p", "g", "d"]
        .into_iter()
        .find(|known| *known == ptype)
        .ok_or_else(|| corrupt("ptype"))?;
    let proposed_by: String = row.try_get("proposed_by")?;
    Ok(PolicyChangeRow {
        id: row.try_get("id")?,
        change: row.try_get("change")?,
        rule: NewRule {
            ptype,
            v0: row.try_get("v0")?,
            v1: row.try_get("v1")?,
            v2: row.try_get("v2")?,
            expires_at: optional_millis(row, "expires_at")?,
            created_by: proposed_by.clone(),
            reason: row.try_get("reason")?,
        },
        rule_id: row.try_get("rule_id")?,
        proposed_by,
        proposed_at: millis(row, "proposed_at")?,
        status: row.try_get("status")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: optional_millis(row, "decided_at")?,
        decision_reason: row.try_get("decision_reason")?,
    })
}

fn revocation_from_row(row: &AnyRow) -> Result<RevocationRow, sqlx::Error> {
    Ok(RevocationRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        target: row.try_get("target")?,
        revoked_at: millis(row, "revoked_at")?,
        forget_after: millis(row, "forget_after")?,
        created_by: row.try_get("created_by")?,
        reason: row.try_get("reason")?,
    })
}

fn request_from_row(row: &AnyRow) -> Result<AccessRequest, sqlx::Error> {
    Ok(AccessRequest {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        subject: row.try_get("subject")?,
        agency: row.try_get("agency")?,
        member_state: row.try_get("member_state")?,
        system: row.try_get("system")?,
        case_reference: row.try_get("case_reference")?,
        justification: row.try_get("justification")?,
        created_at: millis(row, "created_at")?,
        decided_at: optional_millis(row, "decided_at")?,
        decided_by: row.try_get("decided_by")?,
        decision_reason: row.try_get("decision_reason")?,
        grant_expires_at: optional_millis(row, "grant_expires_at")?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at: millis(row, "at")?,
        event: AuditEvent {
            subject: row.try_get("subject")?,
            agency: row.try_get("agency")?,
            member_state: row.try_get("member_state")?,
            purpose: row.try_get("purpose")?,
            action: row.try_get("action")?,
            query: row.try_get("query")?,
            outcome: row.try_get("outcome")?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            subject: format!("subject-{n}"),
            agency: "AGENCY".into(),
            member_state: "SE".into(),
            purpose: "border_check".into(),
            action: "search".into(),
            query: "biometric=acme-face-v3".into(),
            outcome: format!("hits={n}"),
        }
    }

    /// A fresh SQLite control store, kept while the directory lives.
    async fn sqlite_store() -> (tempfile::TempDir, ControlStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("control.sqlite").display()
        );
        let store = ControlStore::open(&url, &PoolSettings::default())
            .await
            .expect("open");
        (dir, store)
    }

    /// A batch larger than one INSERT statement keeps its order and its chain.
    #[tokio::test]
    async fn batched_audit_appends_chain_in_order() {
        let (_dir, store) = sqlite_store().await;
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let first: Vec<_> = (0..150).map(|n| ChainEntry::new(event(n), at)).collect();
        let second: Vec<_> = (150..153).map(|n| ChainEntry::new(event(n), at)).collect();
        let counts =
            BTreeMap::from([(("ees".to_owned(), "accepted".to_owned(), String::new()), 2)]);
        let mut appender = store.audit_appender();
        appender.append(&first, &counts).await.expect("append");
        appender.append(&second, &counts).await.expect("append");
        assert_eq!(
            store.ingest_counts().await.expect("counts"),
            vec![IngestCount {
                system: "ees".into(),
                kind: "accepted".into(),
                rule: String::new(),
                count: 4
            }]
        );

        let entries = store.audit_entries(0, 1_000).await.expect("entries");
        assert_eq!(entries.len(), 153);
        for (n, entry) in entries.iter().enumerate() {
            assert_eq!(entry.seq, n as i64 + 1);
            assert_eq!(entry.event, event(n));
        }
        assert_eq!(
            store.verify_audit_chain().await.expect("walk").ok(),
            Some(153)
        );
    }

    /// Two appenders of one process take turns: each appends where the other ended, and the
    /// chain never forks or breaks.
    #[tokio::test]
    async fn appenders_that_race_keep_one_chain() {
        let (_dir, store) = sqlite_store().await;
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let no_counts = BTreeMap::new();
        let mut first = store.audit_appender();
        let mut second = store.audit_appender();
        for n in 0..6 {
            let appender = if n % 3 == 0 { &mut second } else { &mut first };
            appender
                .append(&[ChainEntry::new(event(n), at)], &no_counts)
                .await
                .expect("append");
        }
        let entries = store.audit_entries(0, 100).await.expect("entries");
        let outcomes: Vec<&str> = entries.iter().map(|e| e.event.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            ["hits=0", "hits=1", "hits=2", "hits=3", "hits=4", "hits=5"]
        );
        assert_eq!(
            store.verify_audit_chain().await.expect("walk").ok(),
            Some(6)
        );
        let last = entries.last().expect("entries");
        assert_eq!(
            store.audit_head().await.expect("head"),
            Some(ChainEnd {
                seq: last.seq,
                hash: last.hash.clone()
            })
        );
    }

    /// Two stores on one file (two hubs opened in one process, as the bench opens them) that
    /// take turns: each one's remembered end goes stale when the other appends, its INSERT
    /// meets the other's entry, and it chains on from the rows: no append fails, the chain
    /// holds.
    #[tokio::test]
    async fn two_stores_on_one_file_keep_one_chain() {
        let (dir, first) = sqlite_store().await;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("control.sqlite").display()
        );
        let second = ControlStore::open(&url, &PoolSettings::default())
            .await
            .expect("open");
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let no_counts = BTreeMap::new();
        for n in 0..6 {
            let store = if n % 2 == 0 { &first } else { &second };
            store
                .audit_appender()
                .append(&[ChainEntry::new(event(n), at)], &no_counts)
                .await
                .expect("append");
        }
        assert_eq!(
            first.verify_audit_chain().await.expect("walk").ok(),
            Some(6)
        );
    }

    /// The newest entries deleted while no hub ran: the next hub chains on from the recorded
    /// head, so the deletion still shows as a gap instead of being written over.
    #[tokio::test]
    async fn a_deletion_at_the_end_stays_visible_after_a_restart() {
        let (_dir, store) = sqlite_store().await;
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let no_counts = BTreeMap::new();
        let events: Vec<_> = (0..3).map(|n| ChainEntry::new(event(n), at)).collect();
        store
            .audit_appender()
            .append(&events, &no_counts)
            .await
            .expect("append");
        sqlx::query("DELETE FROM audit_log WHERE seq = 3")
            .execute(&store.database().pool)
            .await
            .expect("delete");
        store
            .audit_appender()
            .append(&[ChainEntry::new(event(3), at)], &no_counts)
            .await
            .expect("append");
        let seqs: Vec<i64> = store
            .audit_entries(0, 100)
            .await
            .expect("entries")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 4]);
        assert!(store.verify_audit_chain().await.expect("walk").is_err());
    }
}
