//! The fast number validator agrees with the `phonenumber` crate.

#![allow(clippy::unwrap_used)]

use phonenumber::Mode;
use proptest::prelude::*;
use tern_core::Msisdn;

/// What `phonenumber` alone says: the E.164 form and country, or nothing.
fn reference(input: &str) -> Option<(String, Option<String>)> {
    let number = phonenumber::parse(None, input).ok()?;
    phonenumber::is_valid(&number)
        .then(|| (number.format().mode(Mode::E164).to_string(), number.country().id().map(|id| id.as_ref().to_owned())))
}

fn ours(input: &str) -> Option<(String, Option<String>)> {
    Msisdn::parse(input).ok().map(|m| (m.as_str().to_owned(), m.country().map(str::to_owned)))
}

/// Same validity and E.164 form; the same country wherever `phonenumber`
/// names one. (It names none for numbers with an Italian leading zero, such
/// as Rome's +39 06..., because it keeps national numbers as integers and
/// loses the zero; the metadata says IT, and so do we.)
fn agree(ours: &Option<(String, Option<String>)>, reference: &Option<(String, Option<String>)>) -> bool {
    match (ours, reference) {
        (None, None) => true,
        (Some((a, ca)), Some((b, cb))) => a == b && (cb.is_none() || ca == cb),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// Random numbers under busy calling codes: where either accepts, both agree.
    #[test]
    fn agrees_with_phonenumber(
        code in prop::sample::select(vec!["0", "00", "044", "01", "1", "7", "20", "33", "34", "39", "44", "49", "52", "55", "61", "81", "86", "91", "234", "254", "358", "380", "852", "971", "882", "800"]),
        national in "[0-9]{4,13}",
    ) {
        let input = format!("+{code}{national}");
        let (ours, reference) = (ours(&input), reference(&input));
        prop_assert!(agree(&ours, &reference), "{}: ours {:?}, phonenumber {:?}", input, ours, reference);
    }
}

#[test]
fn known_numbers() {
    for input in ["+447400123456", "+12025550143", "+4915123456789", "+390612345678", "+61412345678", "+8613812345678"]
    {
        assert!(agree(&ours(input), &reference(input)), "{input}");
        assert!(ours(input).is_some(), "{input}");
    }
    assert_eq!(ours("+390612345678").unwrap().1.as_deref(), Some("IT"));
    for input in ["+0447400123456", "+012025550143", "+079161234567"] {
        assert_eq!(ours(input), None, "{input}: no calling code starts with 0");
    }
}
