//! The common identity repository (CIR): one SQL implementation over sqlx's `Any` driver,
//! with two backends — SQLite (embedded default) and PostgreSQL — chosen by URL. The
//! backends differ only in connection set-up and in their twin migrations under
//! `migrations/`; every query is written once, in the SQL both accept.

mod rows;

use connectors::{Accepted, IdentityRecord, QualityFinding, SourceSystem};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use time::OffsetDateTime;
use utoipa::ToSchema;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

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

    fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATIONS,
            Self::Postgres => &POSTGRES_MIGRATIONS,
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

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOutcome {
    /// First version of this record.
    Created,
    /// The same version was already stored; nothing changed.
    Replayed,
    /// A newer version replaced the stored one.
    Updated,
}

/// The stored version is newer than the one offered: the offer was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleVersion {
    pub stored: i64,
}

/// A record as the repository holds it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredRecord {
    pub partition: connectors::Partition,
    /// When this version was stored (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub stored_at: OffsetDateTime,
    pub record: IdentityRecord,
    /// Non-blocking data-quality findings raised when this version was ingested.
    pub findings: Vec<QualityFinding>,
}

/// One partition's store.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the writer; it is a property of the file, set once.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        Ok(Self { pool, backend })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.backend.migrator().run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.pool.execute("SELECT 1").await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Idempotent upsert keyed by (system, source id): creates, replays or applies a newer
    /// version in one transaction. Safe under concurrent calls for the same key: the
    /// unique key decides which insert wins, the others become replays or updates.
    pub async fn upsert(
        &self,
        accepted: &Accepted,
        now: OffsetDateTime,
    ) -> Result<Result<UpsertOutcome, StaleVersion>, sqlx::Error> {
        let record = &accepted.record;
        let row = rows::RecordRow::from_accepted(accepted, now);
        let mut tx = self.pool.begin().await?;
        let inserted: Option<i64> = row
            .bind_all(sqlx::query_scalar(rows::INSERT_RECORD))
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = if let Some(id) = inserted {
            rows::insert_children(&mut tx, id, record).await?;
            Ok(UpsertOutcome::Created)
        } else {
            let updated: Option<i64> = row
                .bind_all(sqlx::query_scalar(rows::UPDATE_NEWER_RECORD))
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(id) = updated {
                rows::delete_children(&mut tx, id).await?;
                rows::insert_children(&mut tx, id, record).await?;
                Ok(UpsertOutcome::Updated)
            } else {
                let stored: i64 = sqlx::query_scalar(
                    "SELECT version FROM identity_records WHERE system = $1 AND source_id = $2",
                )
                .bind(record.system.as_str())
                .bind(record.source_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
                if stored == record.version {
                    Ok(UpsertOutcome::Replayed)
                } else {
                    Err(StaleVersion { stored })
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub async fn get(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<Option<StoredRecord>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        rows::load(&mut conn, system, source_id).await
    }

    /// Removes the record with its names, documents and templates; false when absent.
    pub async fn delete(&self, system: SourceSystem, source_id: &str) -> Result<bool, sqlx::Error> {
        let id: Option<i64> = sqlx::query_scalar(
            "DELETE FROM identity_records WHERE system = $1 AND source_id = $2 RETURNING id",
        )
        .bind(system.as_str())
        .bind(source_id)
        .fetch_optional(&self.pool)
        .await?;
        // Names, documents and templates go with it: ON DELETE CASCADE (sqlx enables
        // SQLite's foreign keys on every connection).
        Ok(id.is_some())
    }

    /// Number of records a system holds in this partition.
    pub async fn count(&self, system: SourceSystem) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM identity_records WHERE system = $1")
            .bind(system.as_str())
            .fetch_one(&self.pool)
            .await
    }
}
