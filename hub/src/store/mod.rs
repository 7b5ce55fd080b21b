//! Storage: the common identity repository (CIR, one database per partition) and the
//! multiple-identity detector's links (MID, a database of its own) and access control
//! (rules, access requests, the audit log: the control database). One SQL implementation
//! over sqlx's `Any` driver with two backends — SQLite (embedded default) and PostgreSQL —
//! chosen by URL; they differ only in connection set-up and in their twin migrations under
//! `migrations/`. Every query is written once, in the SQL both accept.

mod control;
mod identities;
mod links;
mod rows;

pub use control::{AccessRequest, AuditAppender, ControlStore, IngestCountKey, NewRule, RuleRow};
pub use identities::{
    Completeness, GateFacts, IdentityStore, StoredRecord, TemplateOwner, UpsertOutcome,
    UpsertRefusal, Upserted,
};
pub use links::{
    HistoryEntry, LinkChange, LinkQuery, LinkStore, NewLink, StoredLink, VerifierQueue,
    VerifyRefusal,
};

use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
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
}

/// A write transaction, holding the database's write gate until it ends.
#[derive(Debug)]
pub(crate) struct WriteTransaction {
    /// `Some` until `commit` takes it, or `drop` rolls it back.
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
    gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.tx.take() {
            Some(tx) => tx.commit().await,
            None => Ok(()),
        }
    }
}

/// An uncommitted transaction (an error, an early return, a cancelled request) is rolled
/// back before the gate opens: sqlx only queues the ROLLBACK when a transaction is dropped,
/// and the next writer would find the lock still held and meet the busy handler.
impl Drop for WriteTransaction {
    fn drop(&mut self) {
        let (Some(tx), Ok(runtime)) = (self.tx.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let gate = self.gate.take();
        runtime.spawn(async move {
            let _ = tx.rollback().await;
            drop(gate);
        });
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        self.tx
            .as_deref()
            .expect("a write transaction is open until commit consumes it")
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.tx
            .as_deref_mut()
            .expect("a write transaction is open until commit consumes it")
    }
}

impl Database {
    /// Connects and brings `schema` up to date.
    pub async fn open(url: &str, schema: Schema) -> Result<Self, StoreError> {
        let database = Self::connect(url).await?;
        database
            .backend
            .migrator(schema)
            .run(&database.pool)
            .await?;
        Ok(database)
    }

    async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            // A SQLite connection is a file handle in this process: it cannot go stale the
            // way a server's socket can, and the test would cost a round trip to its worker
            // thread on every acquire (about 40 % of a pooled read's time under ingest load:
            // an instrumented build of `interop-hub bench` at 20k, session 8).
            .test_before_acquire(backend != Backend::Sqlite)
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the writer; it is a property of the file, set once.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        let write_gate =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Self {
            pool,
            backend,
            write_gate,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that will write. On SQLite it takes the write lock at once: a deferred
    /// transaction that reads first and writes later cannot wait for a concurrent writer and
    /// fails with "database is locked" instead.
    pub(crate) async fn begin_write(&self) -> Result<WriteTransaction, sqlx::Error> {
        let gate = self.write_gate().await;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTransaction { tx: Some(tx), gate })
    }

    /// The write gate, for a single write statement outside a transaction; hold the guard
    /// until the statement is done.
    pub(crate) async fn write_gate(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(Arc::clone(gate).lock_owned().await),
            None => None,
        }
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.pool.execute("SELECT 1").await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
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
