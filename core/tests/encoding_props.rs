//! Property tests for body encoding and segmentation.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tern_core::encoding::{
    Encoding, analyze, decode_gsm7, decode_ucs2, detect, encode_gsm7, encode_ucs2, gsm_septets, pack_septets,
    segment_count, split, unpack_septets,
};

fn gsm_basic() -> impl Strategy<Value = char> {
    prop::sample::select(
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿abcxyzäöñüà"
            .chars()
            .collect::<Vec<_>>(),
    )
}

fn gsm_ext() -> impl Strategy<Value = char> {
    prop::sample::select(vec!['\u{0C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'])
}

fn latin() -> impl Strategy<Value = char> {
    prop::sample::select("çÀÁÂãêíóôúÿ¢«»жЖ中".chars().collect::<Vec<_>>())
}

fn non_bmp() -> impl Strategy<Value = char> {
    prop::sample::select(vec!['😀', '🚀', '𝄞', '🇫', '\u{10FFFF}'])
}

/// Mostly-GSM strings with lengths spanning 0..4 segments, sometimes
/// polluted with UCS-2-only characters.
fn body() -> impl Strategy<Value = String> {
    let gsm_only = prop::collection::vec(prop_oneof![8 => gsm_basic(), 2 => gsm_ext()], 0..500);
    let mixed =
        prop::collection::vec(prop_oneof![6 => gsm_basic(), 2 => gsm_ext(), 1 => latin(), 1 => non_bmp()], 0..300);
    prop_oneof![gsm_only, mixed].prop_map(|v| v.into_iter().collect())
}

fn units(s: &str, enc: Encoding) -> usize {
    match enc {
        Encoding::Gsm7 => s.chars().map(|c| gsm_septets(c).unwrap()).sum(),
        Encoding::Ucs2 => s.encode_utf16().count(),
    }
}

proptest! {
    #[test]
    fn split_concat_is_identity(s in body()) {
        prop_assert_eq!(split(&s).concat(), s);
    }

    #[test]
    fn split_len_matches_segment_count(s in body()) {
        let parts = split(&s);
        prop_assert_eq!(parts.len(), segment_count(&s));
        prop_assert_eq!(parts.len(), analyze(&s).segments);
    }

    #[test]
    fn parts_fit_and_are_greedy(s in body()) {
        let enc = detect(&s);
        let parts = split(&s);
        let limit = if parts.len() == 1 {
            enc.single_segment_units()
        } else {
            enc.multipart_segment_units()
        };
        for (i, part) in parts.iter().enumerate() {
            let used = units(part, enc);
            prop_assert!(used <= limit, "part {} has {} > {}", i, used, limit);
            if let Some(next) = parts.get(i + 1) {
                let first = next.chars().next().unwrap();
                let cost = units(&first.to_string(), enc);
                prop_assert!(used + cost > limit, "part {} not greedy", i);
            }
        }
        prop_assert_eq!(analyze(&s).units, units(&s, enc));
    }

    #[test]
    fn detect_agrees_with_encode_gsm7(s in body()) {
        prop_assert_eq!(detect(&s) == Encoding::Gsm7, encode_gsm7(&s).is_some());
    }

    #[test]
    fn gsm7_round_trip(s in body()) {
        if let Some(septets) = encode_gsm7(&s) {
            prop_assert_eq!(septets.len(), units(&s, Encoding::Gsm7));
            prop_assert_eq!(decode_gsm7(&septets), s);
        }
    }

    #[test]
    fn ucs2_round_trip(s in any::<String>()) {
        prop_assert_eq!(decode_ucs2(&encode_ucs2(&s)), s);
    }

    #[test]
    fn ucs2_round_trip_mixed(s in body()) {
        prop_assert_eq!(decode_ucs2(&encode_ucs2(&s)), s);
    }

    #[test]
    fn pack_unpack_round_trip(septets in prop::collection::vec(0u8..0x80, 0..400)) {
        let packed = pack_septets(&septets);
        prop_assert_eq!(packed.len(), (septets.len() * 7).div_ceil(8));
        prop_assert_eq!(unpack_septets(&packed, septets.len()), septets);
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), n in 0usize..1000) {
        let _ = decode_gsm7(&bytes);
        let _ = decode_ucs2(&bytes);
        let _ = unpack_septets(&bytes, n);
    }
}
