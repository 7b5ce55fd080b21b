//! The common identity record every connector produces and the hub stores (CIR).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::names::NameForms;

/// A source system feeding the hub.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum SourceSystem {
    #[serde(rename = "ees")]
    Ees,
    #[serde(rename = "etias")]
    Etias,
    #[serde(rename = "vis")]
    Vis,
    #[serde(rename = "sis")]
    Sis,
    #[serde(rename = "ecris-tcn")]
    EcrisTcn,
}

impl SourceSystem {
    pub const ALL: [SourceSystem; 5] =
        [Self::Ees, Self::Etias, Self::Vis, Self::Sis, Self::EcrisTcn];

    /// The identifier used in URLs, storage and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ees => "ees",
            Self::Etias => "etias",
            Self::Vis => "vis",
            Self::Sis => "sis",
            Self::EcrisTcn => "ecris-tcn",
        }
    }

    /// Civil systems share one store; law-enforcement systems are physically separate.
    pub fn partition(self) -> Partition {
        match self {
            Self::Ees | Self::Etias | Self::Vis => Partition::Civil,
            Self::Sis | Self::EcrisTcn => Partition::LawEnforcement,
        }
    }

    /// The native wire format this system's connector accepts.
    pub fn native_format(self) -> NativeFormat {
        match self {
            Self::Ees | Self::Etias | Self::Sis => NativeFormat::Json,
            Self::Vis | Self::EcrisTcn => NativeFormat::Xml,
        }
    }
}

impl fmt::Display for SourceSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string was not one of the five source systems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source system; expected one of ees, etias, vis, sis, ecris-tcn")]
pub struct UnknownSystem;

impl FromStr for SourceSystem {
    type Err = UnknownSystem;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|system| system.as_str() == s)
            .ok_or(UnknownSystem)
    }
}

/// Where a system's records live.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Partition {
    Civil,
    LawEnforcement,
}

impl Partition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Civil => "civil",
            Self::LawEnforcement => "law_enforcement",
        }
    }
}

/// The media type a connector parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeFormat {
    Json,
    Xml,
}

impl NativeFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Xml => "application/xml",
        }
    }
}

/// One identity as held by one source system, in the hub's common shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IdentityRecord {
    pub system: SourceSystem,
    /// The record's id in its source system (unique within that system).
    pub source_id: String,
    /// Integer version ≥ 1; a higher version replaces the record.
    pub version: i64,
    /// Member state (ISO alpha-2) that created or issued the record, where the format has one.
    pub member_state: Option<String>,
    /// The primary name first, then aliases, names at birth, previous names and pseudonyms.
    pub names: Vec<PersonName>,
    pub date_of_birth: PartialDate,
    pub place_of_birth: Option<PlaceOfBirth>,
    pub sex: Sex,
    /// ICAO / ISO 3166-1 alpha-3 codes.
    pub nationalities: Vec<String>,
    pub travel_documents: Vec<TravelDocument>,
    pub templates: Vec<BiometricTemplate>,
    /// System-specific data with no common meaning (status, category, events, expiry…).
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl IdentityRecord {
    pub fn partition(&self) -> Partition {
        self.system.partition()
    }
}

/// Why a name is attached to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NameKind {
    Primary,
    Alias,
    AtBirth,
    Previous,
    Pseudonym,
}

impl NameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Alias => "alias",
            Self::AtBirth => "at_birth",
            Self::Previous => "previous",
            Self::Pseudonym => "pseudonym",
        }
    }
}

impl FromStr for NameKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [
            Self::Primary,
            Self::Alias,
            Self::AtBirth,
            Self::Previous,
            Self::Pseudonym,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == s)
        .ok_or(())
    }
}

/// A surname and given names as sent, each with the hub's normalised forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PersonName {
    pub kind: NameKind,
    pub surname: NameForms,
    /// All given names in their original order, space-separated; may be empty.
    pub given_names: NameForms,
}

/// A date of birth that keeps the precision the source knew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartialDate {
    pub year: u16,
    pub month: Option<u8>,
    pub day: Option<u8>,
}

/// The date was not `YYYY`, `YYYY-MM` or a real calendar day `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a date YYYY-MM-DD, YYYY-MM or YYYY")]
pub struct InvalidPartialDate;

impl PartialDate {
    pub fn precision(&self) -> DatePrecision {
        match (self.month, self.day) {
            (Some(_), Some(_)) => DatePrecision::Day,
            (Some(_), None) => DatePrecision::Month,
            _ => DatePrecision::Year,
        }
    }
}

impl FromStr for PartialDate {
    type Err = InvalidPartialDate;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fn number<T: FromStr>(part: &str, width: usize) -> Result<T, InvalidPartialDate> {
            if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidPartialDate);
            }
            part.parse().map_err(|_| InvalidPartialDate)
        }
        let mut parts = s.split('-');
        let year: u16 = number(parts.next().ok_or(InvalidPartialDate)?, 4)?;
        let month: Option<u8> = parts.next().map(|p| number(p, 2)).transpose()?;
        let day: Option<u8> = parts.next().map(|p| number(p, 2)).transpose()?;
        if parts.next().is_some() || year == 0 {
            return Err(InvalidPartialDate);
        }
        if let Some(m) = month {
            let month = time::Month::try_from(m).map_err(|_| InvalidPartialDate)?;
            if let Some(d) = day {
                time::Date::from_calendar_date(i32::from(year), month, d)
                    .map_err(|_| InvalidPartialDate)?;
            }
        }
        Ok(Self { year, month, day })
    }
}

impl fmt::Display for PartialDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
        }
        if let Some(d) = self.day {
            write!(f, "-{d:02}")?;
        }
        Ok(())
    }
}

impl Serialize for PartialDate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PartialDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for PartialDate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\d{4}(-\d{2}(-\d{2})?)?$"))
            .description(Some(
                "Date of birth as precise as the source knew it: YYYY-MM-DD, YYYY-MM or YYYY",
            ))
            .examples(["1990-04-17", "1990-04", "1990"])
            .into()
    }
}

impl ToSchema for PartialDate {}

/// How much of a partial date is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatePrecision {
    Year,
    Month,
    Day,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlaceOfBirth {
    pub place: Option<String>,
    /// ICAO / ISO 3166-1 alpha-3.
    pub country: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Sex {
    F,
    M,
    /// Unspecified.
    X,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F => "F",
            Self::M => "M",
            Self::X => "X",
        }
    }
}

impl FromStr for Sex {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "F" => Ok(Self::F),
            "M" => Ok(Self::M),
            "X" => Ok(Self::X),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Passport,
    IdentityCard,
    Other,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passport => "passport",
            Self::IdentityCard => "identity_card",
            Self::Other => "other",
        }
    }
}

impl FromStr for DocumentKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [Self::Passport, Self::IdentityCard, Self::Other]
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TravelDocument {
    pub kind: DocumentKind,
    /// As sent.
    pub number: String,
    /// Upper case, without spaces, dashes or other separators: the form documents are matched on.
    pub number_normalised: String,
    /// ICAO / ISO 3166-1 alpha-3.
    pub issuing_country: Option<String>,
    /// `YYYY-MM-DD`.
    pub expiry: Option<String>,
}

impl TravelDocument {
    /// The form documents are matched on: letters and digits only, upper case.
    pub fn normalise_number(number: &str) -> String {
        number
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_uppercase)
            .collect()
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Face,
    Finger,
    Iris,
}

impl Modality {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Face => "face",
            Self::Finger => "finger",
            Self::Iris => "iris",
        }
    }
}

impl FromStr for Modality {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [Self::Face, Self::Finger, Self::Iris]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or(())
    }
}

/// The ten finger positions, `right_thumb` … `left_little`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FingerPosition {
    RightThumb,
    RightIndex,
    RightMiddle,
    RightRing,
    RightLittle,
    LeftThumb,
    LeftIndex,
    LeftMiddle,
    LeftRing,
    LeftLittle,
}

impl FingerPosition {
    pub const ALL: [FingerPosition; 10] = [
        Self::RightThumb,
        Self::RightIndex,
        Self::RightMiddle,
        Self::RightRing,
        Self::RightLittle,
        Self::LeftThumb,
        Self::LeftIndex,
        Self::LeftMiddle,
        Self::LeftRing,
        Self::LeftLittle,
    ];

    /// The JSON spelling, e.g. `right_index`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RightThumb => "right_thumb",
            Self::RightIndex => "right_index",
            Self::RightMiddle => "right_middle",
            Self::RightRing => "right_ring",
            Self::RightLittle => "right_little",
            Self::LeftThumb => "left_thumb",
            Self::LeftIndex => "left_index",
            Self::LeftMiddle => "left_middle",
            Self::LeftRing => "left_ring",
            Self::LeftLittle => "left_little",
        }
    }

    /// The XML spelling, e.g. `RightIndex`.
    pub fn xml_name(self) -> &'static str {
        match self {
            Self::RightThumb => "RightThumb",
            Self::RightIndex => "RightIndex",
            Self::RightMiddle => "RightMiddle",
            Self::RightRing => "RightRing",
            Self::RightLittle => "RightLittle",
            Self::LeftThumb => "LeftThumb",
            Self::LeftIndex => "LeftIndex",
            Self::LeftMiddle => "LeftMiddle",
            Self::LeftRing => "LeftRing",
            Self::LeftLittle => "LeftLittle",
        }
    }

    pub fn from_json_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn from_xml_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.xml_name() == s)
    }
}

/// A vendor-made biometric template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BiometricTemplate {
    pub modality: Modality,
    /// Fingers only.
    pub position: Option<FingerPosition>,
    /// Registered algorithm id; templates of different algorithms are never compared.
    pub algorithm: String,
    /// 0–100, ISO/IEC 29794 style.
    pub quality: u8,
    /// False when the quality is below the modality's minimum: stored, never indexed.
    pub indexable: bool,
    /// The vector, finite float32 values of the algorithm's dimension.
    #[serde(with = "crate::vector_base64")]
    #[schema(value_type = String, format = Byte)]
    pub vector: Vec<f32>,
}

/// A record named the way its source system names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct RecordRef {
    pub system: SourceSystem,
    pub source_id: String,
}

impl RecordRef {
    pub fn new(system: SourceSystem, source_id: impl Into<String>) -> Self {
        Self {
            system,
            source_id: source_id.into(),
        }
    }
}
