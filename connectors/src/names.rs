//! Name normalisation: the original as sent plus the folded, ICAO 9303 and ASCII forms that
//! matching works on.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use utoipa::ToSchema;

/// A name as sent, with the forms the hub matches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NameForms {
    /// Exactly as the source sent it.
    pub original: String,
    /// Unicode NFKC, case-folded, whitespace collapsed.
    pub folded: String,
    /// ICAO 9303 transliteration, upper-case A–Z and single spaces (`Müller` → `MUELLER`).
    pub icao: String,
    /// Plain ASCII fold, upper case (`Müller` → `MULLER`).
    pub ascii: String,
}

#[cfg(test)]
thread_local! {
    /// How many names this thread has normalised: tests show with it that a refused name
    /// never reaches normalisation.
    pub(crate) static NORMALISED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl NameForms {
    pub fn new(original: &str) -> Self {
        #[cfg(test)]
        NORMALISED.with(|count| count.set(count.get() + 1));
        Self {
            original: original.to_owned(),
            folded: fold(original),
            icao: icao(original),
            ascii: ascii(original),
        }
    }
}

/// NFKC, then case folding. Lower-casing alone leaves the letters whose folded form differs
/// from their lower case — `ß`/`ẞ` fold to `ss` and final sigma `ς` to `σ` — so `STRASSE`
/// and `Straße` would fold apart.
fn fold(name: &str) -> String {
    let mut folded = String::with_capacity(name.len());
    for c in name.nfkc().collect::<String>().to_lowercase().chars() {
        match c {
            'ß' => folded.push_str("ss"),
            'ς' => folded.push('σ'),
            _ => folded.push(c),
        }
    }
    collapse_spaces(&folded)
}

fn ascii(name: &str) -> String {
    let spaced: String = deunicode::deunicode(name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                ' '
            }
        })
        .collect();
    collapse_spaces(&spaced)
}

fn icao(name: &str) -> String {
    // Apostrophes go before NFKC, which would turn the acute accent U+00B4 into a space and
    // a combining mark; `O'Brien` is `OBRIEN` in a machine-readable zone.
    let compatible: String = name.chars().filter(|&c| !is_apostrophe(c)).nfkc().collect();
    let mut out = String::with_capacity(compatible.len());
    for c in compatible.chars().flat_map(char::to_uppercase) {
        push_icao(&mut out, c);
    }
    collapse_spaces(&out)
}

/// Appends the ICAO form of one upper-cased character.
fn push_icao(out: &mut String, c: char) {
    if is_apostrophe(c) || is_combining_mark(c) {
        return;
    }
    if let Some(letters) = icao_letters(c) {
        out.push_str(letters);
        return;
    }
    if !c.is_alphabetic() {
        // Hyphens, digits and other punctuation separate name parts.
        out.push(' ');
        return;
    }
    // Letters the table does not name are their base letter (`É` → `E`, `Ά` → `Α` → `A`);
    // what has no base letter in the table falls back to a general transliteration.
    for base in c.nfd().filter(|&m| !is_combining_mark(m)) {
        match icao_letters(base) {
            Some(letters) => out.push_str(letters),
            None => push_fallback(out, base),
        }
    }
}

fn push_fallback(out: &mut String, c: char) {
    let Some(latin) = deunicode::deunicode_char(c) else {
        out.push(' ');
        return;
    };
    for l in latin.chars() {
        out.push(if l.is_ascii_alphabetic() {
            l.to_ascii_uppercase()
        } else {
            ' '
        });
    }
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '`' | '´' | '‘' | '’' | 'ʹ' | 'ʻ' | 'ʼ' | 'ʽ' | '′'
    )
}

/// ICAO Doc 9303 Part 3 transliteration of one upper-case letter (A–Z map to themselves);
/// `None` for letters the table does not name.
fn icao_letters(c: char) -> Option<&'static str> {
    const LATIN: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if c.is_ascii_uppercase() {
        let at = usize::from(c as u8 - b'A');
        return LATIN.get(at..=at);
    }
    Some(match c {
        // Latin letters the table spells out rather than stripping to the base letter.
        'Ä' | 'Æ' => "AE",
        'Å' => "AA",
        'Ö' | 'Ø' | 'Œ' => "OE",
        'Ü' => "UE",
        'ẞ' | 'ß' => "SS",
        'Þ' => "TH",
        'Ĳ' => "IJ",
        'Ð' | 'Đ' => "D",
        'Ħ' => "H",
        'Ł' | 'Ŀ' => "L",
        'Ŧ' => "T",
        'Ŋ' => "N",
        'ı' => "I",
        // Cyrillic.
        'А' => "A",
        'Б' => "B",
        'В' => "V",
        'Г' | 'Ґ' | 'Ѓ' => "G",
        'Д' | 'Ђ' => "D",
        'Е' | 'Ё' | 'Э' => "E",
        'Ж' => "ZH",
        'З' => "Z",
        'И' | 'Й' | 'І' | 'Ї' => "I",
        'К' | 'Ќ' => "K",
        'Л' => "L",
        'М' => "M",
        'Н' => "N",
        'О' => "O",
        'П' => "P",
        'Р' => "R",
        'С' => "S",
        'Т' => "T",
        'У' | 'Ў' => "U",
        'Ф' => "F",
        'Х' => "KH",
        'Ц' => "TS",
        'Ч' => "CH",
        'Ш' => "SH",
        'Щ' => "SHCH",
        'Ъ' | 'Є' => "IE",
        'Ы' => "Y",
        'Ь' => "",
        'Ю' => "IU",
        'Я' => "IA",
        'Ј' => "J",
        'Љ' => "LJ",
        'Њ' => "NJ",
        'Ћ' => "C",
        'Џ' | 'Ѕ' => "DZ",
        // Greek; accented vowels reach here through their base letter.
        'Α' => "A",
        'Β' => "V",
        'Γ' => "G",
        'Δ' => "D",
        'Ε' => "E",
        'Ζ' => "Z",
        'Η' | 'Ι' => "I",
        'Θ' => "TH",
        'Κ' => "K",
        'Λ' => "L",
        'Μ' => "M",
        'Ν' => "N",
        'Ξ' => "X",
        'Ο' | 'Ω' => "O",
        'Π' => "P",
        'Ρ' => "R",
        'Σ' => "S",
        'Τ' => "T",
        'Υ' => "Y",
        'Φ' => "F",
        'Χ' => "CH",
        'Ψ' => "PS",
        _ => return None,
    })
}

fn collapse_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::NameForms;

    fn icao(name: &str) -> String {
        NameForms::new(name).icao
    }

    #[test]
    fn keeps_the_original_verbatim() {
        assert_eq!(NameForms::new("  Anna  ").original, "  Anna  ");
    }

    #[test]
    fn german_umlauts_follow_icao_but_fold_plainly_to_ascii() {
        let forms = NameForms::new("Müller");
        assert_eq!(forms.icao, "MUELLER");
        assert_eq!(forms.ascii, "MULLER");
        assert_eq!(forms.folded, "müller");
        assert_eq!(icao("Strauß"), "STRAUSS");
        assert_eq!(icao("Öztürk"), "OEZTUERK");
    }

    #[test]
    fn nordic_and_other_latin_letters() {
        assert_eq!(icao("Ångström"), "AANGSTROEM");
        assert_eq!(icao("Ørsted"), "OERSTED");
        assert_eq!(icao("Þórður"), "THORDUR");
        assert_eq!(icao("Æsa"), "AESA");
        assert_eq!(icao("Łukasz Wałęsa"), "LUKASZ WALESA");
        assert_eq!(icao("José Núñez"), "JOSE NUNEZ");
        assert_eq!(icao("Çağrı Yıldız"), "CAGRI YILDIZ");
        assert_eq!(icao("Đorđe"), "DORDE");
    }

    #[test]
    fn cyrillic_follows_icao_9303() {
        assert_eq!(icao("Иванов"), "IVANOV");
        assert_eq!(icao("Щукин"), "SHCHUKIN");
        assert_eq!(icao("Юлия Фёдорова"), "IULIIA FEDOROVA");
        assert_eq!(icao("Игорь Хрущёв"), "IGOR KHRUSHCHEV");
        assert_eq!(icao("Объедков"), "OBIEEDKOV");
        assert_eq!(icao("Царёв"), "TSAREV");
        assert_eq!(icao("Євгенія Їжак"), "IEVGENIIA IZHAK");
        assert_eq!(icao("Ґалаґан"), "GALAGAN");
        assert_eq!(icao("Ўладзімір"), "ULADZIMIR");
        assert_eq!(icao("Ђорђе Љубичић"), "DORDE LJUBICHIC");
        assert_eq!(icao("Његош Џајић"), "NJEGOSH DZAJIC");
        assert_eq!(icao("Ѓорѓи Ќосе Ѕвезда"), "GORGI KOSE DZVEZDA");
        assert_eq!(icao("Јован"), "JOVAN");
    }

    #[test]
    fn greek_basic_letters() {
        assert_eq!(icao("Γιώργος Παπαδάκης"), "GIORGOS PAPADAKIS");
        assert_eq!(icao("Θεοχάρης Ψαρράς"), "THEOCHARIS PSARRAS");
    }

    #[test]
    fn other_scripts_fall_back_to_a_general_transliteration() {
        assert_eq!(icao("张伟"), "ZHANG WEI");
        assert!(
            NameForms::new("محمد")
                .icao
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ')
        );
    }

    #[test]
    fn punctuation_separates_and_apostrophes_vanish() {
        assert_eq!(icao("O'Brien-Smith"), "OBRIEN SMITH");
        assert_eq!(icao("D’Angelo"), "DANGELO");
        assert_eq!(icao("d´Artagnan"), "DARTAGNAN");
        assert_eq!(icao("  Jean -- Paul  "), "JEAN PAUL");
        assert_eq!(NameForms::new("O'Brien-Smith").ascii, "O BRIEN SMITH");
    }

    #[test]
    fn folding_applies_nfkc_lower_case_and_collapses_whitespace() {
        assert_eq!(
            NameForms::new("Straße").folded,
            NameForms::new("STRASSE").folded
        );
        assert_eq!(
            NameForms::new("ΟΔΥΣΣΕΥΣ").folded,
            NameForms::new("οδυσσευς").folded
        );
        assert_eq!(NameForms::new("  anna   maria ").folded, "anna maria");
        assert_eq!(NameForms::new("\tANNA\u{00A0}Maria\n").folded, "anna maria");
        assert_eq!(NameForms::new("Gri\u{FB03}n").folded, "griffin");
        assert_eq!(NameForms::new("Ｍüller").folded, "müller");
        // A decomposed ü folds to the same form as a precomposed one.
        assert_eq!(
            NameForms::new("Mu\u{308}ller").folded,
            NameForms::new("Müller").folded
        );
    }

    #[test]
    fn compatibility_forms_reach_the_icao_and_ascii_forms() {
        assert_eq!(icao("Gri\u{FB03}n"), "GRIFFIN");
        assert_eq!(icao("Ｍüller"), "MUELLER");
        assert_eq!(icao("Mu\u{308}ller"), "MUELLER");
        assert_eq!(NameForms::new("Gri\u{FB03}n").ascii, "GRIFFIN");
    }

    #[test]
    fn empty_and_blank_names_have_empty_forms() {
        for name in ["", "   ", "'-'"] {
            let forms = NameForms::new(name);
            assert_eq!(forms.icao, "");
            assert_eq!(forms.ascii, "");
        }
        assert_eq!(NameForms::new("   ").folded, "");
    }
}
