//! The hub's transport-free core: every operation the REST layer and the CLI expose.

use std::path::Path;

use connectors::{AlgorithmRegistry, NativeFormat, Partition, SourceSystem, UnknownSystem};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::config::HubConfig;
use crate::error::HubError;
use crate::store::{SqlStore, StoreError, StoredRecord, UpsertOutcome};

impl From<UnknownSystem> for HubError {
    fn from(_: UnknownSystem) -> Self {
        Self::UnknownSystem
    }
}

/// What an ingest did, with the record as now stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestReport {
    pub outcome: UpsertOutcome,
    #[serde(flatten)]
    pub stored: StoredRecord,
}

/// The running hub: one store per partition and the rules records are checked against.
#[derive(Debug)]
pub struct Hub {
    civil: SqlStore,
    law_enforcement: SqlStore,
    registry: AlgorithmRegistry,
}

impl Hub {
    /// Opens (and migrates) both partitions' stores.
    pub async fn open(config: &HubConfig) -> Result<Self, StoreError> {
        ensure_dir(&config.data_dir)?;
        let civil = SqlStore::open(&config.civil_url()).await?;
        let law_enforcement = SqlStore::open(&config.law_enforcement_url()).await?;
        Ok(Self {
            civil,
            law_enforcement,
            registry: config.settings.biometrics.clone(),
        })
    }

    fn store(&self, system: SourceSystem) -> &SqlStore {
        match system.partition() {
            Partition::Civil => &self.civil,
            Partition::LawEnforcement => &self.law_enforcement,
        }
    }

    /// Parses a native record and applies it: created, replayed or updated; refused whole
    /// when invalid or older than what is stored.
    pub async fn ingest(
        &self,
        system: SourceSystem,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<IngestReport, HubError> {
        let expected = system.native_format();
        if !media_type_matches(content_type, expected) {
            return Err(HubError::UnsupportedMediaType {
                expected: expected.media_type(),
            });
        }
        let accepted = connectors::parse(system, body, &self.registry)?;
        let now = OffsetDateTime::now_utc();
        let offered = accepted.record.version;
        let outcome = self
            .store(system)
            .upsert(&accepted, now)
            .await?
            .map_err(|stale| HubError::VersionConflict {
                stored: stale.stored,
                offered,
            })?;
        let stored = match outcome {
            UpsertOutcome::Replayed => self.record(system, &accepted.record.source_id).await?,
            UpsertOutcome::Created | UpsertOutcome::Updated => StoredRecord {
                partition: system.partition(),
                stored_at: now,
                record: accepted.record,
                findings: accepted.findings,
            },
        };
        tracing::info!(system = %system, outcome = ?outcome, "record ingested");
        Ok(IngestReport { outcome, stored })
    }

    pub async fn record(
        &self,
        system: SourceSystem,
        source_id: &str,
    ) -> Result<StoredRecord, HubError> {
        self.store(system)
            .get(system, source_id)
            .await?
            .ok_or(HubError::RecordNotFound)
    }

    /// Deletes a record with its templates, as its source system did.
    pub async fn delete(&self, system: SourceSystem, source_id: &str) -> Result<(), HubError> {
        if self.store(system).delete(system, source_id).await? {
            tracing::info!(system = %system, "record deleted");
            Ok(())
        } else {
            Err(HubError::RecordNotFound)
        }
    }

    /// Ready when every partition's database answers.
    pub async fn ready(&self) -> Result<(), HubError> {
        for store in [&self.civil, &self.law_enforcement] {
            store.ping().await.map_err(|e| {
                tracing::warn!(error = %e, "database not answering");
                HubError::Unavailable
            })?;
        }
        Ok(())
    }

    pub async fn count(&self, system: SourceSystem) -> Result<i64, HubError> {
        Ok(self.store(system).count(system).await?)
    }

    pub async fn close(&self) {
        self.civil.close().await;
        self.law_enforcement.close().await;
    }
}

fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
}

/// Compares the media type's essence, ignoring parameters such as `charset`.
fn media_type_matches(content_type: Option<&str>, expected: NativeFormat) -> bool {
    let Some(essence) = content_type.and_then(|ct| ct.split(';').next()) else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    match expected {
        NativeFormat::Json => essence == "application/json" || essence.ends_with("+json"),
        NativeFormat::Xml => {
            essence == "application/xml" || essence == "text/xml" || essence.ends_with("+xml")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_compare_by_essence() {
        assert!(media_type_matches(
            Some("application/json; charset=utf-8"),
            NativeFormat::Json
        ));
        assert!(media_type_matches(
            Some("Application/XML"),
            NativeFormat::Xml
        ));
        assert!(media_type_matches(Some("text/xml"), NativeFormat::Xml));
        assert!(!media_type_matches(
            Some("application/xml"),
            NativeFormat::Json
        ));
        assert!(!media_type_matches(Some("text/plain"), NativeFormat::Json));
        assert!(!media_type_matches(None, NativeFormat::Json));
    }
}
