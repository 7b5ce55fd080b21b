//! How an identity record maps to rows of the repository's tables, and back.

use connectors::{
    Accepted, BiometricTemplate, DocumentKind, FingerPosition, IdentityRecord, Modality, NameForms,
    NameKind, PartialDate, PersonName, PlaceOfBirth, QualityFinding, SourceSystem, TravelDocument,
    vector_base64,
};
use std::collections::HashMap;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::QueryScalar;
use sqlx::{Any, AnyConnection, Row};
use time::OffsetDateTime;

use super::{StoredRecord, corrupt, from_unix_millis, placeholders, unix_millis, with_ids};
use crate::matching::{given_names_key, surname_key};

/// How a record is looked up.
#[derive(Debug, Clone, Copy)]
pub(super) enum RecordKey<'a> {
    Source(SourceSystem, &'a str),
    Id(i64),
}

const RECORD_COLUMNS: &str = "system, source_id, version, member_state, date_of_birth, birth_year, \
     birth_month, birth_day, birth_place, birth_country, sex, nationalities, attributes, findings, \
     stored_at, fingerprint";

pub(super) const INSERT_RECORD: &str = "INSERT INTO identity_records (system, source_id, version, \
     member_state, date_of_birth, birth_year, birth_month, birth_day, birth_place, birth_country, \
     sex, nationalities, attributes, findings, stored_at, fingerprint) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
     ON CONFLICT (system, source_id) DO NOTHING RETURNING id";

/// Applies only when the offered version is newer, so a stale writer changes nothing, and
/// only within the record's member state (the empty state stands for none: ETIAS's).
pub(super) const UPDATE_NEWER_RECORD: &str = "UPDATE identity_records SET version = $3, \
     member_state = $4, date_of_birth = $5, birth_year = $6, birth_month = $7, birth_day = $8, \
     birth_place = $9, birth_country = $10, sex = $11, nationalities = $12, attributes = $13, \
     findings = $14, stored_at = $15, fingerprint = $16, detected_version = 0 \
     WHERE system = $1 AND source_id = $2 AND version < $3 \
     AND COALESCE(member_state, '') = COALESCE($4, '') RETURNING id";

/// The scalar columns of `identity_records`, in binding order.
pub(super) struct RecordRow {
    system: &'static str,
    source_id: String,
    version: i64,
    member_state: Option<String>,
    date_of_birth: String,
    birth_year: i64,
    birth_month: Option<i64>,
    birth_day: Option<i64>,
    birth_place: Option<String>,
    birth_country: Option<String>,
    sex: &'static str,
    nationalities: String,
    attributes: String,
    findings: String,
    stored_at: i64,
    fingerprint: String,
}

impl RecordRow {
    pub(super) fn from_accepted(accepted: &Accepted, now: OffsetDateTime) -> Self {
        let record = &accepted.record;
        let dob = record.date_of_birth;
        let place = record.place_of_birth.as_ref();
        Self {
            system: record.system.as_str(),
            source_id: record.source_id.clone(),
            version: record.version,
            member_state: record.member_state.clone(),
            date_of_birth: dob.to_string(),
            birth_year: i64::from(dob.year),
            birth_month: dob.month.map(i64::from),
            birth_day: dob.day.map(i64::from),
            birth_place: place.and_then(|p| p.place.clone()),
            birth_country: place.and_then(|p| p.country.clone()),
            sex: record.sex.as_str(),
            nationalities: json_text(&record.nationalities),
            attributes: json_text(&record.attributes),
            findings: json_text(&accepted.findings),
            stored_at: unix_millis(now),
            fingerprint: fingerprint(record),
        }
    }

    pub(super) fn bind_all<'q, O>(
        &'q self,
        query: QueryScalar<'q, Any, O, AnyArguments<'q>>,
    ) -> QueryScalar<'q, Any, O, AnyArguments<'q>> {
        query
            .bind(self.system)
            .bind(self.source_id.as_str())
            .bind(self.version)
            .bind(self.member_state.as_deref())
            .bind(self.date_of_birth.as_str())
            .bind(self.birth_year)
            .bind(self.birth_month)
            .bind(self.birth_day)
            .bind(self.birth_place.as_deref())
            .bind(self.birth_country.as_deref())
            .bind(self.sex)
            .bind(self.nationalities.as_str())
            .bind(self.attributes.as_str())
            .bind(self.findings.as_str())
            .bind(self.stored_at)
            .bind(self.fingerprint.as_str())
    }

    pub(super) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// SHA-256 of the record as mapped, hex: equal for the same content however it was
/// formatted on the wire.
pub(super) fn fingerprint(record: &IdentityRecord) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(json_text(record).as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain data (strings, maps, vectors) into a String cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

pub(super) async fn delete_children(
    conn: &mut AnyConnection,
    record_id: i64,
) -> Result<(), sqlx::Error> {
    for table in ["identity_names", "travel_documents", "biometric_templates"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE record_id = $1"))
            .bind(record_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn template_ids(
    conn: &mut AnyConnection,
    record_id: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM biometric_templates WHERE record_id = $1 ORDER BY ordinal")
        .bind(record_id)
        .fetch_all(&mut *conn)
        .await
}

/// Inserts names, documents and templates; returns the templates' ids in record order.
pub(super) async fn insert_children(
    conn: &mut AnyConnection,
    record_id: i64,
    record: &IdentityRecord,
) -> Result<Vec<i64>, sqlx::Error> {
    for (ordinal, name) in (0_i64..).zip(&record.names) {
        sqlx::query(
            "INSERT INTO identity_names (record_id, ordinal, kind, surname, surname_folded, \
             surname_icao, surname_ascii, given_names, given_folded, given_icao, given_ascii, \
             surname_key, given_key, birth_year, birth_month, system) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(record_id)
        .bind(ordinal)
        .bind(name.kind.as_str())
        .bind(name.surname.original.as_str())
        .bind(name.surname.folded.as_str())
        .bind(name.surname.icao.as_str())
        .bind(name.surname.ascii.as_str())
        .bind(name.given_names.original.as_str())
        .bind(name.given_names.folded.as_str())
        .bind(name.given_names.icao.as_str())
        .bind(name.given_names.ascii.as_str())
        .bind(surname_key(&name.surname.icao))
        .bind(given_names_key(&name.given_names.icao))
        .bind(i64::from(record.date_of_birth.year))
        .bind(record.date_of_birth.month.map(i64::from))
        .bind(record.system.as_str())
        .execute(&mut *conn)
        .await?;
    }
    for (ordinal, document) in (0_i64..).zip(&record.travel_documents) {
        sqlx::query(
            "INSERT INTO travel_documents (record_id, ordinal, kind, number, number_normalised, \
             issuing_country, expiry, system) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(record_id)
        .bind(ordinal)
        .bind(document.kind.as_str())
        .bind(document.number.as_str())
        .bind(document.number_normalised.as_str())
        .bind(document.issuing_country.as_deref())
        .bind(document.expiry.as_deref())
        .bind(record.system.as_str())
        .execute(&mut *conn)
        .await?;
    }
    // One statement for a record's templates (in chunks that keep far below both backends'
    // limits on parameters): a round trip costs more than a row.
    let mut returned: Vec<(i64, i64)> = Vec::with_capacity(record.templates.len());
    let numbered: Vec<(i64, &BiometricTemplate)> = (0_i64..).zip(&record.templates).collect();
    for chunk in numbered.chunks(TEMPLATES_PER_INSERT) {
        let values = (0..chunk.len())
            .map(|row| {
                format!(
                    "({})",
                    placeholders(1 + row * TEMPLATE_COLUMNS, TEMPLATE_COLUMNS)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO biometric_templates (record_id, ordinal, modality, finger_position, \
             algorithm, quality, indexable, vector) VALUES {values} RETURNING ordinal, id"
        );
        let mut query = sqlx::query_as::<_, (i64, i64)>(&sql);
        for (ordinal, template) in chunk {
            let vector: Vec<u8> = template
                .vector
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            query = query
                .bind(record_id)
                .bind(*ordinal)
                .bind(template.modality.as_str())
                .bind(template.position.map(FingerPosition::as_str))
                .bind(template.algorithm.as_str())
                .bind(i64::from(template.quality))
                .bind(template.indexable)
                .bind(vector);
        }
        returned.extend(query.fetch_all(&mut *conn).await?);
    }
    // RETURNING promises no order: the ordinal puts each id back in its template's place.
    returned.sort_unstable();
    Ok(returned.into_iter().map(|(_, id)| id).collect())
}

/// Templates per INSERT statement.
const TEMPLATES_PER_INSERT: usize = 256;
/// Columns bound per row of the template insert.
const TEMPLATE_COLUMNS: usize = 8;

fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    column: &'static str,
) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|_| corrupt(column))
}

/// Reads back one record, or `None` when there is none under `key`.
pub(super) async fn load(
    conn: &mut AnyConnection,
    key: RecordKey<'_>,
) -> Result<Option<StoredRecord>, sqlx::Error> {
    let select = format!("SELECT id, {RECORD_COLUMNS} FROM identity_records");
    let rows = match key {
        RecordKey::Source(system, source_id) => {
            sqlx::query(&format!("{select} WHERE system = $1 AND source_id = $2"))
                .bind(system.as_str())
                .bind(source_id)
                .fetch_all(&mut *conn)
                .await?
        }
        RecordKey::Id(id) => {
            sqlx::query(&format!("{select} WHERE id = $1"))
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
        }
    };
    Ok(assemble(conn, &rows).await?.pop())
}

/// Reads back the records with these ids that exist (in id order when `ids` is sorted):
/// four queries however many there are (the detector loads every candidate of a partition
/// at once).
pub(super) async fn load_many(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<Vec<StoredRecord>, sqlx::Error> {
    let mut records = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let sql = format!(
            "SELECT id, {RECORD_COLUMNS} FROM identity_records WHERE id IN ({}) ORDER BY id",
            placeholders(1, chunk.len())
        );
        let rows = with_ids(&sql, chunk).fetch_all(&mut *conn).await?;
        records.extend(assemble(conn, &rows).await?);
    }
    Ok(records)
}

/// Record ids bound in one `IN (…)` list: far below both backends' limits on parameters.
const IDS_PER_QUERY: usize = 500;

/// The records of `rows` (from `identity_records`) with their names, documents and
/// templates, one query per child table for all of them.
async fn assemble(
    conn: &mut AnyConnection,
    rows: &[AnyRow],
) -> Result<Vec<StoredRecord>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = rows
        .iter()
        .map(|row| row.try_get::<i64, _>("id"))
        .collect::<Result<Vec<i64>, _>>()?;
    let mut names = load_names(conn, &ids).await?;
    let mut documents = load_documents(conn, &ids).await?;
    let mut templates = load_templates(conn, &ids).await?;
    rows.iter()
        .zip(&ids)
        .map(|(row, id)| {
            record_from_row(
                row,
                names.remove(id).unwrap_or_default(),
                documents.remove(id).unwrap_or_default(),
                templates.remove(id).unwrap_or_default(),
            )
        })
        .collect()
}

fn record_from_row(
    row: &AnyRow,
    names: Vec<PersonName>,
    travel_documents: Vec<TravelDocument>,
    templates: Vec<BiometricTemplate>,
) -> Result<StoredRecord, sqlx::Error> {
    let system_name: String = row.try_get("system")?;
    let system: SourceSystem = system_name.parse().map_err(|_| corrupt("system"))?;
    let date_of_birth: String = row.try_get("date_of_birth")?;
    let birth_place: Option<String> = row.try_get("birth_place")?;
    let birth_country: Option<String> = row.try_get("birth_country")?;
    let sex: String = row.try_get("sex")?;
    let stored_at: i64 = row.try_get("stored_at")?;
    let record = IdentityRecord {
        system,
        source_id: row.try_get("source_id")?,
        version: row.try_get("version")?,
        member_state: row.try_get("member_state")?,
        names,
        date_of_birth: date_of_birth
            .parse::<PartialDate>()
            .map_err(|_| corrupt("date_of_birth"))?,
        place_of_birth: (birth_place.is_some() || birth_country.is_some()).then_some(
            PlaceOfBirth {
                place: birth_place,
                country: birth_country,
            },
        ),
        sex: sex.parse().map_err(|()| corrupt("sex"))?,
        nationalities: parse_json(&row.try_get::<String, _>("nationalities")?, "nationalities")?,
        travel_documents,
        templates,
        attributes: parse_json(&row.try_get::<String, _>("attributes")?, "attributes")?,
    };
    let findings: Vec<QualityFinding> =
        parse_json(&row.try_get::<String, _>("findings")?, "findings")?;
    Ok(StoredRecord {
        partition: system.partition(),
        stored_at: from_unix_millis(stored_at).ok_or_else(|| corrupt("stored_at"))?,
        record,
        findings,
    })
}

/// Rows of a child table for every record of `ids`, in each record's order, grouped by
/// record.
async fn children<T>(
    conn: &mut AnyConnection,
    columns_from_table: &str,
    ids: &[i64],
    parse: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> Result<HashMap<i64, Vec<T>>, sqlx::Error> {
    let sql = format!(
        "SELECT record_id, {columns_from_table} WHERE record_id IN ({}) ORDER BY record_id, ordinal",
        placeholders(1, ids.len())
    );
    let rows = with_ids(&sql, ids).fetch_all(&mut *conn).await?;
    let mut grouped: HashMap<i64, Vec<T>> = HashMap::new();
    for row in &rows {
        grouped
            .entry(row.try_get("record_id")?)
            .or_default()
            .push(parse(row)?);
    }
    Ok(grouped)
}

async fn load_names(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<PersonName>>, sqlx::Error> {
    children(
        conn,
        "kind, surname, surname_folded, surname_icao, surname_ascii, given_names, \
         given_folded, given_icao, given_ascii FROM identity_names",
        ids,
        |row| {
            let forms = |prefix: &str, original: &str| -> Result<NameForms, sqlx::Error> {
                Ok(NameForms {
                    original: row.try_get(original)?,
                    folded: row.try_get(format!("{prefix}_folded").as_str())?,
                    icao: row.try_get(format!("{prefix}_icao").as_str())?,
                    ascii: row.try_get(format!("{prefix}_ascii").as_str())?,
                })
            };
            let kind: String = row.try_get("kind")?;
            Ok(PersonName {
                kind: kind.parse::<NameKind>().map_err(|()| corrupt("kind"))?,
                surname: forms("surname", "surname")?,
                given_names: forms("given", "given_names")?,
            })
        },
    )
    .await
}

async fn load_documents(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<TravelDocument>>, sqlx::Error> {
    children(
        conn,
        "kind, number, number_normalised, issuing_country, expiry FROM travel_documents",
        ids,
        |row| {
            let kind: String = row.try_get("kind")?;
            Ok(TravelDocument {
                kind: kind.parse::<DocumentKind>().map_err(|()| corrupt("kind"))?,
                number: row.try_get("number")?,
                number_normalised: row.try_get("number_normalised")?,
                issuing_country: row.try_get("issuing_country")?,
                expiry: row.try_get("expiry")?,
            })
        },
    )
    .await
}

async fn load_templates(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<BiometricTemplate>>, sqlx::Error> {
    children(
        conn,
        // The Any driver decodes no SQLite BOOLEAN: read it as 0/1 on both backends.
        "modality, finger_position, algorithm, quality, \
         CAST(indexable AS INTEGER) AS indexable, vector FROM biometric_templates",
        ids,
        |row| {
            let modality: String = row.try_get("modality")?;
            let position: Option<String> = row.try_get("finger_position")?;
            let quality: i64 = row.try_get("quality")?;
            let bytes: Vec<u8> = row.try_get("vector")?;
            Ok(BiometricTemplate {
                modality: modality
                    .parse::<Modality>()
                    .map_err(|()| corrupt("modality"))?,
                position: position
                    .map(|p| {
                        FingerPosition::from_json_name(&p).ok_or_else(|| corrupt("finger_position"))
                    })
                    .transpose()?,
                algorithm: row.try_get("algorithm")?,
                quality: u8::try_from(quality).map_err(|_| corrupt("quality"))?,
                indexable: row.try_get::<i64, _>("indexable")? != 0,
                vector: vector_base64::from_bytes(&bytes).ok_or_else(|| corrupt("vector"))?,
            })
        },
    )
    .await
}
