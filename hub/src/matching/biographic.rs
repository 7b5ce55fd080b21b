//! Biographic comparison: transliterated, order-independent names, partial and swapped
//! dates of birth, sex, nationality and travel documents.

use std::sync::LazyLock;

use connectors::{IdentityRecord, PartialDate, PersonName, Sex};
use rphonetic::{DoubleMetaphone, Encoder as _};
use serde::Serialize;
use utoipa::ToSchema;

/// At or above: the names are the same after transliteration (small spelling noise).
const SAME_NAME: f64 = 0.97;
/// At or above: the names are similar (typos, transliteration variants).
const SIMILAR_NAME: f64 = 0.88;

static METAPHONE: LazyLock<DoubleMetaphone> = LazyLock::new(DoubleMetaphone::default);

/// The blocking key of a surname: the Double Metaphone code of its ICAO form, so that
/// spelling and transliteration variants (`MUELLER`, `MULLER`, `SMIETH`) share a key.
pub fn surname_key(icao_surname: &str) -> String {
    let letters: String = icao_surname
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect();
    if letters.is_empty() {
        return String::new();
    }
    METAPHONE.encode(&letters)
}

/// The blocking key of given names: the phonetic code of the alphabetically first name,
/// so that the order the names come in does not matter.
pub fn given_names_key(icao_given_names: &str) -> String {
    icao_given_names
        .split_whitespace()
        .min()
        .map(surname_key)
        .unwrap_or_default()
}

/// The keys that pick a record's match candidates: records sharing the surname key and
/// birth year; or the given-name key, birth year and month (given names are common, so
/// that block needs the month to stay small; it catches a typo in the surname); or a
/// document number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingKeys {
    pub surnames: Vec<String>,
    pub given_names: Vec<String>,
    pub birth_year: i64,
    pub birth_month: Option<i64>,
    pub documents: Vec<String>,
}

impl BlockingKeys {
    pub fn of(record: &IdentityRecord) -> Self {
        let distinct = |keys: Vec<String>| -> Vec<String> {
            let set: std::collections::BTreeSet<String> =
                keys.into_iter().filter(|k| !k.is_empty()).collect();
            set.into_iter().collect()
        };
        Self {
            surnames: distinct(
                record
                    .names
                    .iter()
                    .map(|n| surname_key(&n.surname.icao))
                    .collect(),
            ),
            given_names: distinct(
                record
                    .names
                    .iter()
                    .map(|n| given_names_key(&n.given_names.icao))
                    .collect(),
            ),
            birth_year: i64::from(record.date_of_birth.year),
            birth_month: record.date_of_birth.month.map(i64::from),
            documents: distinct(
                record
                    .travel_documents
                    .iter()
                    .map(|d| d.number_normalised.clone())
                    .collect(),
            ),
        }
    }
}

/// How two dates of birth relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DateAgreement {
    /// Every part known on both sides, and equal.
    Same,
    /// Equal as far as the less precise side goes (`1990` and `1990-04-17`).
    Compatible,
    /// Day and month exchanged: the classic transcription error.
    DayMonthSwapped,
    Different,
}

impl DateAgreement {
    pub fn compare(a: PartialDate, b: PartialDate) -> Self {
        if a.year != b.year {
            return Self::Different;
        }
        match (a.month, a.day, b.month, b.day) {
            (Some(am), Some(ad), Some(bm), Some(bd)) if am == bm && ad == bd => Self::Same,
            (Some(am), Some(ad), Some(bm), Some(bd)) if am == bd && ad == bm => {
                Self::DayMonthSwapped
            }
            (Some(_), Some(_), Some(_), Some(_)) => Self::Different,
            (None, _, _, _) | (_, _, None, _) => Self::Compatible,
            (Some(am), _, Some(bm), _) if am == bm => Self::Compatible,
            _ => Self::Different,
        }
    }

    fn agrees(self) -> bool {
        !matches!(self, Self::Different)
    }
}

/// How two records' travel documents relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentAgreement {
    /// A document number (normalised) is shared, with no conflicting issuing country.
    Same,
    /// Both sides have documents and none is shared.
    Different,
    /// One side has no document.
    Absent,
}

/// The identity-data verdict (docs/RULES.md#identity-data-verdicts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityAgreement {
    Same,
    Similar,
    Different,
}

/// The biographic evidence for one pair of records.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IdentityComparison {
    /// 0–1: best Jaro–Winkler agreement over every pair of names (aliases included),
    /// on ICAO forms, given names in any order.
    pub name_score: f64,
    pub date_of_birth: DateAgreement,
    /// False only when both sides state a sex (F or M) and they differ.
    pub sex_consistent: bool,
    /// At least one nationality in common.
    pub nationality_shared: bool,
    pub document: DocumentAgreement,
    pub identity: IdentityAgreement,
}

pub fn compare_identity(a: &IdentityRecord, b: &IdentityRecord) -> IdentityComparison {
    let name_score = a
        .names
        .iter()
        .flat_map(|x| b.names.iter().map(move |y| name_similarity(x, y)))
        .fold(0.0_f64, f64::max);
    let date_of_birth = DateAgreement::compare(a.date_of_birth, b.date_of_birth);
    let sex_consistent = a.sex == b.sex || a.sex == Sex::X || b.sex == Sex::X;
    let nationality_shared = a.nationalities.iter().any(|n| b.nationalities.contains(n));
    let document = compare_documents(a, b);
    let identity =
        if name_score >= SAME_NAME && date_of_birth == DateAgreement::Same && sex_consistent {
            IdentityAgreement::Same
        } else if name_score >= SIMILAR_NAME && date_of_birth.agrees() {
            IdentityAgreement::Similar
        } else {
            IdentityAgreement::Different
        };
    IdentityComparison {
        name_score,
        date_of_birth,
        sex_consistent,
        nationality_shared,
        document,
        identity,
    }
}

fn sorted_tokens(text: &str) -> String {
    let mut tokens: Vec<&str> = text.split_whitespace().collect();
    tokens.sort_unstable();
    tokens.join(" ")
}

/// Surname and given names weighed together; given names compared as a sorted token set so
/// `ANNA MARIA` equals `MARIA ANNA`; the whole name as a token set too, for sources that
/// split surname and given names differently.
fn name_similarity(a: &PersonName, b: &PersonName) -> f64 {
    let surname = strsim::jaro_winkler(&a.surname.icao, &b.surname.icao);
    let (given_a, given_b) = (
        sorted_tokens(&a.given_names.icao),
        sorted_tokens(&b.given_names.icao),
    );
    let split = if given_a.is_empty() || given_b.is_empty() {
        // A name without given names is weaker evidence than a full one.
        surname * 0.95
    } else {
        0.6 * surname + 0.4 * strsim::jaro_winkler(&given_a, &given_b)
    };
    let whole_a = sorted_tokens(&format!("{} {}", a.surname.icao, a.given_names.icao));
    let whole_b = sorted_tokens(&format!("{} {}", b.surname.icao, b.given_names.icao));
    let whole = strsim::jaro_winkler(&whole_a, &whole_b) * 0.98;
    split.max(whole)
}

fn compare_documents(a: &IdentityRecord, b: &IdentityRecord) -> DocumentAgreement {
    if a.travel_documents.is_empty() || b.travel_documents.is_empty() {
        return DocumentAgreement::Absent;
    }
    let shared = a.travel_documents.iter().any(|x| {
        b.travel_documents.iter().any(|y| {
            x.number_normalised == y.number_normalised
                && match (&x.issuing_country, &y.issuing_country) {
                    (Some(cx), Some(cy)) => cx == cy,
                    _ => true,
                }
        })
    });
    if shared {
        DocumentAgreement::Same
    } else {
        DocumentAgreement::Different
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> PartialDate {
        text.parse().unwrap_or_else(|_| panic!("test date {text}"))
    }

    #[test]
    fn dates_keep_their_precision_and_catch_swaps() {
        use DateAgreement::*;
        assert_eq!(
            DateAgreement::compare(date("1990-04-17"), date("1990-04-17")),
            Same
        );
        assert_eq!(
            DateAgreement::compare(date("1990-04-07"), date("1990-07-04")),
            DayMonthSwapped
        );
        assert_eq!(
            DateAgreement::compare(date("1990"), date("1990-04-17")),
            Compatible
        );
        assert_eq!(
            DateAgreement::compare(date("1990-04"), date("1990-04-17")),
            Compatible
        );
        assert_eq!(
            DateAgreement::compare(date("1990-05"), date("1990-04-17")),
            Different
        );
        assert_eq!(
            DateAgreement::compare(date("1991-04-17"), date("1990-04-17")),
            Different
        );
        assert_eq!(
            DateAgreement::compare(date("1990-04-18"), date("1990-04-17")),
            Different
        );
    }

    #[test]
    fn surname_keys_absorb_spelling_variants() {
        let key = |s: &str| surname_key(&connectors::NameForms::new(s).icao);
        assert_eq!(key("Müller"), key("Mueller"));
        assert_eq!(key("MUELLER"), key("Muller"));
        assert_eq!(key("Smith"), key("Smieth"));
        assert_eq!(key("Иванов"), key("Ivanov"));
        assert_ne!(key("Rossi"), key("Müller"));
        assert_eq!(surname_key(""), "");
        assert_eq!(given_names_key("MARIA ANNA"), given_names_key("ANNA MARIA"));
        assert_eq!(given_names_key(""), "");
    }

    fn name(surname: &str, given: &str) -> PersonName {
        PersonName {
            kind: connectors::NameKind::Primary,
            surname: connectors::NameForms::new(surname),
            given_names: connectors::NameForms::new(given),
        }
    }

    #[test]
    fn names_compare_across_scripts_order_and_typos() {
        let same = name_similarity(
            &name("Müller", "Anna Maria"),
            &name("MUELLER", "Maria Anna"),
        );
        assert!(same >= SAME_NAME, "{same}");
        let typo = name_similarity(&name("Smith", "John"), &name("Smieth", "John"));
        assert!(typo >= SIMILAR_NAME, "{typo}");
        let cyrillic = name_similarity(&name("Иванов", "Иван"), &name("Ivanov", "Ivan"));
        assert!(cyrillic >= SAME_NAME, "{cyrillic}");
        let other = name_similarity(&name("Rossi", "Marco"), &name("Müller", "Anna"));
        assert!(other < SIMILAR_NAME, "{other}");
    }
}
