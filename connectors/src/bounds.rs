//! The bounds on every text and list a record may carry, checked before anything costly
//! (normalisation, transliteration, matching) reads the value. The hub reuses them for the
//! fields of its search body through [`text_problem`].

use unicode_normalization::char::is_combining_mark;

use crate::rule;

/// Characters in one name as a record gives it: a surname, the given names, an alias's
/// surname or given names, a name at birth, a previous name or a pseudonym (list formats
/// count the parts joined). Passports print far shorter names (the machine-readable zone
/// has 39 characters for the whole name); the room above that is for long compound names
/// in full. Comparing two names costs the product of their lengths: this bound is what
/// keeps one comparison cheap.
pub const MAX_NAME_CHARS: usize = 128;
/// Entries in a list of name parts (ETIAS `first_names`, SIS `surnames` and `forenames`);
/// the parts joined are still held to [`MAX_NAME_CHARS`].
pub const MAX_NAME_PARTS: usize = 16;
/// Names a record carries besides its primary name: aliases, names at birth, previous
/// names and pseudonyms together. Every pair of two records' names is compared.
pub const MAX_OTHER_NAMES: usize = 16;
/// Characters in a place of birth, which may name the region or country as well.
pub const MAX_PLACE_OF_BIRTH_CHARS: usize = 128;
/// Characters in an identifier: a record's source id, a border crossing point.
pub const MAX_IDENTIFIER_CHARS: usize = 64;
/// Characters in a travel document number as sent, grouping spaces and dashes included
/// (ICAO 9303 numbers have nine characters, national documents rarely more than twenty).
pub const MAX_DOCUMENT_NUMBER_CHARS: usize = 32;
/// Travel documents in one record.
pub const MAX_DOCUMENTS: usize = 16;
/// Nationalities in one record.
pub const MAX_NATIONALITIES: usize = 16;
/// Biometric templates in one record. Ten fingers, two irises and faces from every
/// re-enrolment fit many times over; the bound only keeps the list from being endless.
pub const MAX_TEMPLATES: usize = 512;
/// Border events in one EES file: a traveller crossing both ways every day for the three
/// years EES keeps a file makes about 2,200.
pub const MAX_EVENTS: usize = 4096;

/// What a text is, which decides its bound and the characters it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A surname, given names or another name of a person, in any script.
    Name,
    /// A place of birth, in any script.
    PlaceOfBirth,
    /// A source id or another id a system assigns.
    Identifier,
    /// A travel document number.
    DocumentNumber,
}

impl TextKind {
    /// The most characters a text of this kind may have.
    pub fn max_chars(self) -> usize {
        match self {
            Self::Name => MAX_NAME_CHARS,
            Self::PlaceOfBirth => MAX_PLACE_OF_BIRTH_CHARS,
            Self::Identifier => MAX_IDENTIFIER_CHARS,
            Self::DocumentNumber => MAX_DOCUMENT_NUMBER_CHARS,
        }
    }
}

/// Why `text` cannot be taken as a value of `kind`, if it cannot: the rule it breaks and a
/// message that never echoes the text. Blank text is the caller's to judge.
///
/// The length is checked first, counting no further than one character past the bound, so
/// that every later step reads a bounded text whatever was sent.
pub fn text_problem(text: &str, kind: TextKind) -> Option<(&'static str, String)> {
    let max = kind.max_chars();
    if text.chars().nth(max).is_some() {
        return Some((rule::TOO_LONG, format!("expected at most {max} characters")));
    }
    // Names and places keep the whitespace XML pretty-printers put around them; no
    // identifier holds a tab or a line break.
    let in_any_script = matches!(kind, TextKind::Name | TextKind::PlaceOfBirth);
    if text
        .chars()
        .any(|c| c.is_control() && !(in_any_script && c.is_whitespace()))
    {
        Some((
            rule::CONTROL_CHARACTER,
            "expected text without control characters".to_owned(),
        ))
    } else if in_any_script && has_invisible_besides_joins(text) {
        Some((
            rule::FORBIDDEN_CHARACTER,
            "expected text without invisible formatting characters (bidirectional controls, \
             zero-width spaces; a zero-width joiner or non-joiner only between letters)"
                .to_owned(),
        ))
    } else if !in_any_script && text.chars().any(is_invisible_format) {
        Some((
            rule::FORBIDDEN_CHARACTER,
            "expected text without invisible formatting characters (bidirectional controls, \
             zero-width characters)"
                .to_owned(),
        ))
    } else {
        None
    }
}

/// Characters that change how text displays, or make two texts compare apart, without
/// showing: the soft hyphen, the Arabic letter mark, bidirectional marks, embeddings,
/// overrides and isolates, zero-width spaces and joiners, the word joiner and invisible
/// operators, the byte-order mark, interlinear annotation and tag characters.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Whether a name or place holds an invisible formatting character it has no use for. The
/// zero-width non-joiner (U+200C) and joiner (U+200D) are spelling in some scripts — a
/// Persian name keeps two letters unjoined, a Sinhala or Malayalam name picks a conjunct's
/// form — so they are kept where they do that, between two letters (a virama is a mark).
/// Anywhere else they only make one name look like another.
fn has_invisible_besides_joins(name: &str) -> bool {
    let is_letter = |c: Option<char>| c.is_some_and(|c| c.is_alphabetic() || is_combining_mark(c));
    let mut before = None;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        let joins_letters = matches!(c, '\u{200C}' | '\u{200D}')
            && is_letter(before)
            && is_letter(chars.peek().copied());
        if is_invisible_format(c) && !joins_letters {
            return true;
        }
        before = Some(c);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{MAX_DOCUMENT_NUMBER_CHARS, MAX_NAME_CHARS, TextKind, text_problem};
    use crate::rule;

    fn rule_of(text: &str, kind: TextKind) -> Option<&'static str> {
        text_problem(text, kind).map(|(rule, _)| rule)
    }

    #[test]
    fn texts_up_to_their_bound_pass_and_longer_ones_are_too_long() {
        let at_bound = "ä".repeat(MAX_NAME_CHARS);
        assert_eq!(rule_of(&at_bound, TextKind::Name), None);
        assert_eq!(
            rule_of(&format!("{at_bound}a"), TextKind::Name),
            Some(rule::TOO_LONG)
        );
        let number = "1".repeat(MAX_DOCUMENT_NUMBER_CHARS + 1);
        assert_eq!(
            rule_of(&number, TextKind::DocumentNumber),
            Some(rule::TOO_LONG)
        );
        for kind in [
            TextKind::Name,
            TextKind::PlaceOfBirth,
            TextKind::Identifier,
            TextKind::DocumentNumber,
        ] {
            let message = text_problem(&"x".repeat(20_000), kind).map(|(_, m)| m);
            assert_eq!(
                message,
                Some(format!("expected at most {} characters", kind.max_chars()))
            );
        }
    }

    #[test]
    fn the_length_is_judged_before_the_characters() {
        // A forbidden character past the bound is never reached.
        let text = format!("{}\u{202E}", "a".repeat(MAX_NAME_CHARS));
        assert_eq!(rule_of(&text, TextKind::Name), Some(rule::TOO_LONG));
    }

    #[test]
    fn identifiers_refuse_every_control_and_invisible_character() {
        assert_eq!(rule_of("EES-DE-2026-000123", TextKind::Identifier), None);
        assert_eq!(rule_of("u12 345-678", TextKind::DocumentNumber), None);
        for text in ["EES\t1", "EES\n1", "EES\u{0}1", "EES\u{7F}1"] {
            assert_eq!(
                rule_of(text, TextKind::Identifier),
                Some(rule::CONTROL_CHARACTER),
                "{text:?}"
            );
        }
        for c in [
            '\u{00AD}',
            '\u{061C}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202E}',
            '\u{2060}',
            '\u{2066}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{E0041}',
        ] {
            for kind in [TextKind::Identifier, TextKind::DocumentNumber] {
                assert_eq!(
                    rule_of(&format!("U1{c}2345678"), kind),
                    Some(rule::FORBIDDEN_CHARACTER),
                    "U+{:04X}",
                    u32::from(c)
                );
            }
        }
    }

    #[test]
    fn names_keep_whitespace_and_joiners_between_letters_only() {
        for name in [
            "Müller",
            "  Anna\n  Maria ",
            // Persian: the non-joiner keeps ی and ر unjoined.
            "علی\u{200C}رضا",
            // Malayalam: a chillu-style conjunct after the virama (a mark).
            "കാര്\u{200D}ത്തിക്",
            "Gri\u{FB03}n",
        ] {
            assert_eq!(rule_of(name, TextKind::Name), None, "{name:?}");
        }
        for name in [
            "\u{200D}Anna",
            "Anna\u{200C}",
            "Anna \u{200D}Maria",
            "An\u{200C}\u{200C}na",
            "Mül\u{200B}ler",
            "\u{202E}rellüM",
            "Mül\u{2066}ler\u{2069}",
            "\u{FEFF}Müller",
            "Mül\u{00AD}ler",
        ] {
            assert_eq!(
                rule_of(name, TextKind::Name),
                Some(rule::FORBIDDEN_CHARACTER),
                "{name:?}"
            );
        }
        assert_eq!(
            rule_of("Mül\u{0}ler", TextKind::Name),
            Some(rule::CONTROL_CHARACTER)
        );
        assert_eq!(
            rule_of("Izmir\u{200F}", TextKind::PlaceOfBirth),
            Some(rule::FORBIDDEN_CHARACTER)
        );
    }

    #[test]
    fn messages_never_echo_the_text() {
        for (text, kind) in [
            ("Zq7Secret".repeat(20), TextKind::Name),
            ("Zq7Secret\u{202E}".to_owned(), TextKind::Name),
            ("Zq7Secret\u{1}".to_owned(), TextKind::Identifier),
            ("Zq7Secret\u{200B}".to_owned(), TextKind::DocumentNumber),
        ] {
            let (_, message) = text_problem(&text, kind).unwrap_or_default();
            assert!(!message.is_empty() && !message.contains("Zq7"), "{message}");
        }
    }
}
