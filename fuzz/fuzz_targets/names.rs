#![no_main]
//! Name normalisation on any text. `NameForms` documents each form, and that is what is
//! checked: the original is kept verbatim; the ICAO form is upper-case A–Z and single spaces,
//! and A–Z map to themselves, so normalising it again changes nothing; the ASCII form is an
//! upper-case ASCII fold (letters and digits, single spaces), stable the same way; the folded
//! form has its whitespace collapsed. Nothing is claimed of folding twice, so nothing is
//! checked of it.

use connectors::NameForms;
use libfuzzer_sys::fuzz_target;

fn collapsed(text: &str) -> bool {
    text.split_whitespace().collect::<Vec<_>>().join(" ") == text
}

fuzz_target!(|name: &str| {
    let forms = NameForms::new(name);
    assert_eq!(forms.original, name);

    assert!(
        forms
            .icao
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == ' '),
        "ICAO form {:?}",
        forms.icao
    );
    assert!(collapsed(&forms.icao), "ICAO form {:?}", forms.icao);
    assert_eq!(NameForms::new(&forms.icao).icao, forms.icao);

    assert!(
        forms
            .ascii
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' '),
        "ASCII form {:?}",
        forms.ascii
    );
    assert!(collapsed(&forms.ascii), "ASCII form {:?}", forms.ascii);
    assert_eq!(NameForms::new(&forms.ascii).ascii, forms.ascii);

    assert!(collapsed(&forms.folded), "folded form {:?}", forms.folded);
});
