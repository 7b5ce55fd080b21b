//! Storage: the common identity repository (CIR, one database per partition) and the
//! multiple-identity detector's links (MID, a database of its own) and access control
//! (rules, access requests, the audit log: the control database). One SQL implementation
//! over sqlx's `Any` driver with two backends — SQLite (embedded default) and PostgreSQL —
//! chosen by URL; they differ only in connection set-up and in their twin migrations under
//! `migrations/`. Every query is written once, in the SQL both accept.

mod audit_chain;
mod control;
mod feed;
mod identities;
mod links;
mod rows;

pub use audit_chain::{AuditEntry, AuditEvent, ChainBreak, ChainEnd, ChainVerified, chain_hash};
pub use control::{
    AccessRequest, AuditAppender, ChainEntry, ControlStore, IngestCount, IngestCountKey, NewRule,
    Outdated, POLICY_LISTENER_NAME, PolicyAnnouncements, PolicyChangeRow, RevocationRow, RuleRow,
};
pub use feed::{FeedCursor, FeedPage, PresentTemplate, TemplateChange};
pub use identities::{
    Completeness, GateFacts, IdentityStore, StoredRecord, TemplateOwner, UpsertOutcome,
    UpsertRefusal, Upserted,
};
pub use links::{
    HistoryEntry, LinkChange, LinkQuery, LinkStore, NewLink, StoredLink, VerifierQueue,
    VerifyRefusal,
};

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{AnyPool, Executor};
use time::OffsetDateTime;

static CIR_SQLITE: Migrator = sqlx::migrate!("../migrations/cir/sqlite");
static CIR_POSTGRES: Migrator = sqlx::migrate!("../migrations/cir/postgres");
static MID_SQLITE: Migrator = sqlx::migrate!("../migrations/mid/sqlite");
static MID_POSTGRES: Migrator = sqlx::migrate!("../migrations/mid/postgres");
static CONTROL_SQLITE: Migrator = sqlx::migrate!("../migrations/control/sqlite");
static CONTROL_POSTGRES: Migrator = sqlx::migrate!("../migrations/control/postgres");

/// Which schema a database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Identity records of one partition.
    Cir,
    /// Links between records of different systems.
    Mid,
    /// Access rules, access requests and the audit log.
    Control,
}

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    fn migrator(self, schema: Schema) -> &'static Migrator {
        match (schema, self) {
            (Schema::Cir, Self::Sqlite) => &CIR_SQLITE,
            (Schema::Cir, Self::Postgres) => &CIR_POSTGRES,
            (Schema::Mid, Self::Sqlite) => &MID_SQLITE,
            (Schema::Mid, Self::Postgres) => &MID_POSTGRES,
            (Schema::Control, Self::Sqlite) => &CONTROL_SQLITE,
            (Schema::Control, Self::Postgres) => &CONTROL_POSTGRES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The file or the server says its data is damaged: no retry mends it, an operator
    /// restores the database from a backup.
    #[error("the database {database} is damaged ({detail}); restore it from a backup")]
    Damaged { database: String, detail: String },
}

/// What a database error says of the database rather than of the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Out of reach, restarting, overloaded, out of space or contended: retrying later can
    /// succeed.
    Unreachable,
    /// Its stored data is damaged: no retry mends it, an operator restores a backup.
    Damaged,
}

/// The fault `error` reports, if it reports one: `None` for an error of the statement
/// itself (a constraint, a type, a missing row).
pub fn fault_of(error: &sqlx::Error) -> Option<Fault> {
    let cause = match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => return Some(Fault::Unreachable),
        sqlx::Error::Database(cause) => cause,
        _ => return None,
    };
    if let Some(postgres) = cause.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = postgres.code();
        // 08: connection exception; 53: insufficient resources (disk full, out of memory,
        // too many connections); 57014: cancelled by the statement timeout; 57P01-57P03:
        // shut down or starting up; 40001 and 40P01: serialisation failure and deadlock,
        // retried whole. XX001 and XX002: data and index corrupted.
        return if code.starts_with("08")
            || code.starts_with("53")
            || ["57014", "57P01", "57P02", "57P03", "40001", "40P01"].contains(&code)
        {
            Some(Fault::Unreachable)
        } else if ["XX001", "XX002"].contains(&code) {
            Some(Fault::Damaged)
        } else {
            None
        };
    }
    cause.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    // The primary result code, under SQLite's extended ones.
    match cause.code()?.parse::<i64>().ok()? & 0xff {
        // BUSY, LOCKED, IOERR, FULL, CANTOPEN.
        5 | 6 | 10 | 13 | 14 => Some(Fault::Unreachable),
        // CORRUPT, NOTADB.
        11 | 26 => Some(Fault::Damaged),
        _ => None,
    }
}

/// Where a database is, for an operator's message: a SQLite file's path, or a
/// PostgreSQL server's host and database without credentials.
fn location(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        return path.split('?').next().unwrap_or(path).to_owned();
    }
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let without_credentials = without_scheme
        .rsplit_once('@')
        .map_or(without_scheme, |(_, rest)| rest);
    without_credentials
        .split('?')
        .next()
        .unwrap_or(without_credentials)
        .to_owned()
}

impl StoreError {
    /// This error, told as damage to the database at `url` where that is what it is.
    fn located(self, url: &str) -> Self {
        let cause = match &self {
            Self::Database(error)
            | Self::Migration(sqlx::migrate::MigrateError::Execute(error)) => error,
            _ => return self,
        };
        if fault_of(cause) != Some(Fault::Damaged) {
            return self;
        }
        let detail = match cause {
            sqlx::Error::Database(database) => database.message().to_owned(),
            other => other.to_string(),
        };
        Self::Damaged {
            database: location(url),
            detail,
        }
    }
}

/// How a pool treats its database: how many connections it holds, how long a request waits
/// for one and how long one statement may run. Both waits are short by design: a database
/// out of reach is answered as unavailable within seconds, never after a minute's hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout`; on SQLite the time a statement waits for another
    /// process's write lock (`busy_timeout`).
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// A connection pool to one database, with its backend.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer per file, and a connection that finds the write lock taken
    /// retries in sleeps that grow to 100 ms: writers of this process queue here instead,
    /// in order and without sleeping. `None` for PostgreSQL, whose writers do not exclude
    /// each other.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// How long a caller waits for a connection (or for the write gate).
    acquire_timeout: Duration,
    /// One connection for the readiness probe, apart from the pool.
    probe: AnyPool,
    /// The session that holds this process's record locks (PostgreSQL).
    locks: Option<Arc<tokio::sync::Mutex<LockSession>>>,
    statement_timeout: Duration,
}

/// The first and the longest pause between attempts at a key another process holds.
const KEY_LOCK_FIRST_PAUSE: Duration = Duration::from_millis(2);
const KEY_LOCK_LAST_PAUSE: Duration = Duration::from_millis(50);

/// A connection of its own for advisory locks (from a pool of one, opened when first
/// used), kept for as long as it works.
#[derive(Debug)]
pub(crate) struct LockSession {
    pool: AnyPool,
    conn: Option<PoolConnection<sqlx::Any>>,
}

impl LockSession {
    /// One attempt at `key`: whether this session holds it now. A session that fails is
    /// closed (the server lets go of its keys with it) and the next attempt opens another.
    async fn try_lock(&mut self, key: i64) -> Result<bool, sqlx::Error> {
        if self.conn.is_none() {
            self.conn = Some(self.pool.acquire().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        let attempt = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut **conn)
            .await;
        if attempt.is_err() {
            self.close();
        }
        attempt
    }

    async fn unlock(&mut self, key: i64) {
        let Some(conn) = self.conn.as_mut() else {
            // The session that held it is gone, and the key with it.
            return;
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut **conn)
            .await;
        if unlocked.is_err() {
            self.close();
        }
    }

    fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

/// A key this process holds on its lock session, given back when dropped.
#[derive(Debug)]
pub(crate) struct KeyLock {
    session: Arc<tokio::sync::Mutex<LockSession>>,
    key: i64,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        let (session, key) = (Arc::clone(&self.session), self.key);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { session.lock().await.unlock(key).await });
        }
    }
}

/// How long the readiness probe waits for its connection.
const PROBE_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

/// A write transaction, holding the database's write gate until it ends.
///
/// BEGIN, COMMIT and ROLLBACK are sent as plain statements rather than through sqlx's
/// transaction type: sqlx counts a transaction depth per connection and leaves it raised
/// when a COMMIT fails after SQLite has already rolled back by itself (a full disk, an I/O
/// error), so that connection refused every later BEGIN until the process restarted. Here a
/// connection whose transaction cannot be closed cleanly is closed instead of being pooled,
/// and so is one whose BEGIN or COMMIT was cut off (a request dropped mid-statement).
#[derive(Debug)]
pub(crate) struct WriteTransaction {
    /// `Some` until `commit` succeeds; a drop before that rolls back.
    conn: Option<PoolConnection<sqlx::Any>>,
    /// Where the transaction stands, for a drop to know what the connection holds.
    stage: Stage,
    gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// BEGIN sent, its answer not yet read.
    Beginning,
    Open,
    /// COMMIT sent, its answer not yet read.
    Committing,
}

impl WriteTransaction {
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        self.stage = Stage::Committing;
        let committed = conn.execute("COMMIT").await.map(|_| ());
        match committed {
            // Committed: the connection goes back to the pool as it is.
            Ok(()) => drop(self.conn.take()),
            // Not committed: the drop rolls back.
            Err(_) => self.stage = Stage::Open,
        }
        committed
    }
}

/// An uncommitted transaction (an error, an early return, a cancelled request) is rolled
/// back before the gate opens, so that the next writer does not find the lock still held.
/// A ROLLBACK that fails (SQLite answers so when it has rolled back by itself), or a COMMIT
/// whose answer never came, leaves the connection in a state nobody knows: it is closed
/// rather than handed to the next caller mid-transaction. A BEGIN whose answer never came
/// is rolled back like an open transaction.
impl Drop for WriteTransaction {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.stage == Stage::Committing {
            conn.close_on_drop();
            return;
        }
        let gate = self.gate.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if conn.execute("ROLLBACK").await.is_err() {
                    conn.close_on_drop();
                }
                drop(gate);
            });
        }
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        self.conn
            .as_deref()
            .expect("a write transaction is open until commit consumes it")
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn
            .as_deref_mut()
            .expect("a write transaction is open until commit consumes it")
    }
}

impl Database {
    /// Connects and brings `schema` up to date.
    /// Connects and brings `schema` up to date; a damaged database is named in the error.
    pub async fn open(url: &str, schema: Schema, pool: &PoolSettings) -> Result<Self, StoreError> {
        let database = Self::connect(url, pool).await.map_err(|e| e.located(url))?;
        database.migrate(schema).await.map_err(|e| e.located(url))?;
        Ok(database)
    }

    /// Brings `schema` up to date on a connection without the statement timeout: a
    /// migration may rewrite a large table, and on PostgreSQL it waits for another hub's
    /// migration (an advisory lock) rather than run beside it. The connection is closed
    /// afterwards rather than pooled without its timeout.
    async fn migrate(&self, schema: Schema) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        conn.close_on_drop();
        if self.backend == Backend::Postgres {
            conn.execute("SET statement_timeout = 0").await?;
        }
        self.backend.migrator(schema).run(&mut *conn).await?;
        Ok(())
    }

    async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let timeout_millis = settings.statement_timeout.as_millis();
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let statement = match backend {
                        Backend::Sqlite => format!("PRAGMA busy_timeout = {timeout_millis}"),
                        Backend::Postgres => format!("SET statement_timeout = {timeout_millis}"),
                    };
                    conn.execute(statement.as_str()).await.map(|_| ())
                })
            })
            // A SQLite connection is a file handle in this process: it cannot go stale the
            // way a server's socket can, and the test would cost a round trip to its worker
            // thread on every acquire, a large share of a pooled read under ingest load
            // (bench/README.md).
            .test_before_acquire(backend != Backend::Sqlite)
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the writer; it is a property of the file, set once.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        let write_gate =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        let probe = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(PROBE_ACQUIRE_TIMEOUT)
            .connect_lazy(url)?;
        let locks = if backend == Backend::Postgres {
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(settings.acquire_timeout)
                .connect_lazy(url)?;
            Some(Arc::new(tokio::sync::Mutex::new(LockSession {
                pool,
                conn: None,
            })))
        } else {
            None
        };
        Ok(Self {
            pool,
            backend,
            write_gate,
            acquire_timeout: settings.acquire_timeout,
            probe,
            locks,
            statement_timeout: settings.statement_timeout,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that will write. On SQLite it takes the write lock at once: a deferred
    /// transaction that reads first and writes later cannot wait for a concurrent writer and
    /// fails with "database is locked" instead.
    pub(crate) async fn begin_write(&self) -> Result<WriteTransaction, sqlx::Error> {
        let gate = self.write_gate().await?;
        let conn = self.pool.acquire().await?;
        let mut tx = WriteTransaction {
            conn: Some(conn),
            stage: Stage::Beginning,
            gate,
        };
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        let Some(conn) = tx.conn.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        match conn.execute(begin).await {
            Ok(_) => {
                tx.stage = Stage::Open;
                Ok(tx)
            }
            Err(error) => {
                // No transaction began (SQLite busy, a broken connection): nothing to roll
                // back, and the connection goes back to the pool as it is (a broken one fails
                // the pool's test before its next use).
                drop(tx.conn.take());
                Err(error)
            }
        }
    }

    /// The write gate, for a single write statement outside a transaction; hold the guard
    /// until the statement is done. Waiting for it counts as waiting for a connection: it
    /// gives up after the pool's acquire timeout.
    pub(crate) async fn write_gate(
        &self,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, sqlx::Error> {
        let Some(gate) = &self.write_gate else {
            return Ok(None);
        };
        tokio::time::timeout(self.acquire_timeout, Arc::clone(gate).lock_owned())
            .await
            .map(Some)
            .map_err(|_| sqlx::Error::PoolTimedOut)
    }

    /// Takes the session advisory lock `key` for this process, waiting for another process
    /// that holds it at most the statement timeout; held until the returned lock is dropped.
    /// `None` on SQLite, whose only writer is this process.
    ///
    /// Every key this process holds lives on one session of its own (`locks`), so that a
    /// thousand records in flight cost one connection, not a thousand: each attempt is a
    /// `pg_try_advisory_lock` (a blocking wait would hold that session for everyone), retried
    /// with a growing pause while another process holds the key. Should that session break,
    /// the server lets go of its keys; the next attempt opens a new one.
    pub(crate) async fn key_lock(&self, key: i64) -> Result<Option<KeyLock>, sqlx::Error> {
        let Some(locks) = &self.locks else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + self.statement_timeout;
        let mut pause = KEY_LOCK_FIRST_PAUSE;
        loop {
            let taken = locks.lock().await.try_lock(key).await?;
            if taken {
                return Ok(Some(KeyLock {
                    session: Arc::clone(locks),
                    key,
                }));
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(sqlx::Error::PoolTimedOut);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(KEY_LOCK_LAST_PAUSE);
        }
    }

    /// Takes the session advisory lock `key` if nobody holds it, on a connection of its own:
    /// `Some` while this process holds it, `None` when another does. On SQLite, whose only
    /// writer is this process, always held (with no connection).
    pub(crate) async fn try_advisory_lock(
        &self,
        key: i64,
    ) -> Result<Option<AdvisoryLock>, sqlx::Error> {
        if self.backend != Backend::Postgres {
            return Ok(Some(AdvisoryLock { conn: None, key }));
        }
        let mut conn = self.pool.acquire().await?;
        let taken: Result<bool, sqlx::Error> =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await;
        match taken {
            Ok(true) => Ok(Some(AdvisoryLock {
                conn: Some(conn),
                key,
            })),
            Ok(false) => Ok(None),
            Err(error) => {
                conn.close_on_drop();
                Err(error)
            }
        }
    }

    /// Asks the database for an answer over a connection of its own, so that a busy pool
    /// does not read as an unreachable database.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.probe.execute("SELECT 1").await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.probe.close().await;
        if let Some(locks) = &self.locks {
            let mut session = locks.lock().await;
            session.close();
            session.pool.close().await;
        }
    }
}

/// A PostgreSQL session advisory lock, held on its own pooled connection until dropped.
#[derive(Debug)]
pub(crate) struct AdvisoryLock {
    conn: Option<PoolConnection<sqlx::Any>>,
    key: i64,
}

/// The lock is given back before its connection returns to the pool; a connection whose
/// unlock fails, or that cannot be unlocked for want of a runtime, is closed instead, which
/// releases every lock it held.
impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(key)
                        .execute(&mut *conn)
                        .await;
                    if unlocked.is_err() {
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

/// `$first, $first+1, …` for an `IN (…)` list of `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql` with `ids` bound to its placeholders, in order.
fn with_ids<'q>(
    sql: &'q str,
    ids: &[i64],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    ids.iter()
        .fold(sqlx::query(sql), |query, id| query.bind(*id))
}

pub fn unix_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_unix_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

/// A stored value that the hub itself wrote no longer parses: the database was altered.
pub(crate) fn corrupt(column: &'static str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: "stored value is not one the hub writes".into(),
    }
}
