//! SMS body encodings (GSM 03.38 / 3GPP TS 23.038) and segmentation.
//!
//! Everything that bills, splits or submits a message must agree on how many
//! segments it costs, so the counting rules live here and nowhere else.

use serde::{Deserialize, Serialize};

/// Alphabet a message body is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// GSM 7-bit default alphabet plus its extension table.
    Gsm7,
    /// UCS-2, sent as UTF-16BE so non-BMP characters survive as surrogate pairs.
    Ucs2,
}

impl Encoding {
    /// SMPP data_coding value: 0 for GSM 7-bit default alphabet, 8 for UCS-2.
    pub fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 => 0,
            Encoding::Ucs2 => 8,
        }
    }

    /// Max units in a single (unconcatenated) segment: 160 septets / 70 UTF-16 units.
    pub fn single_segment_units(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Max units per part of a concatenated message (6-byte UDH): 153 / 67.
    pub fn multipart_segment_units(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }

    /// Units `c` costs; callers guarantee `c` is representable in `self`.
    fn char_units(self, c: char) -> usize {
        match self {
            // A non-GSM char cannot reach here, but costing it 1 keeps this total.
            Encoding::Gsm7 => gsm_septets(c).unwrap_or(1),
            Encoding::Ucs2 => c.len_utf16(),
        }
    }
}

/// Size of a message body once encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyInfo {
    /// Alphabet the body will be sent in.
    pub encoding: Encoding,
    /// septets (GSM, escapes count 2) or UTF-16 code units (UCS-2)
    pub units: usize,
    /// Number of SMS segments the body occupies (at least 1).
    pub segments: usize,
}

const ESC: u8 = 0x1B;

/// GSM 03.38 basic character set indexed by septet value. Position 0x1B is
/// the escape to the extension table, so its entry is a placeholder that is
/// never decoded or encoded.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 03.38 extension table: (code after ESC, character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

const NO_CODE: u8 = 0xFF;
/// Every basic-table char is below U+0400 (the Greek capitals top out at Ω).
const REVERSE_LEN: usize = 0x400;

/// Code point -> septet, derived from `BASIC` at compile time so the two
/// directions can never disagree.
const BASIC_REVERSE: [u8; REVERSE_LEN] = {
    let mut table = [NO_CODE; REVERSE_LEN];
    let mut i = 0;
    while i < BASIC.len() {
        if i != ESC as usize {
            table[BASIC[i] as usize] = i as u8;
        }
        i += 1;
    }
    table
};

fn basic_code(c: char) -> Option<u8> {
    match BASIC_REVERSE.get(c as usize) {
        Some(&code) if code != NO_CODE => Some(code),
        _ => None,
    }
}

fn extension_code(c: char) -> Option<u8> {
    EXTENSION.iter().find(|&&(_, ch)| ch == c).map(|&(code, _)| code)
}

fn extension_char(code: u8) -> Option<char> {
    EXTENSION.iter().find(|&&(cd, _)| cd == code).map(|&(_, ch)| ch)
}

/// Chooses GSM 7-bit when every char is in the basic table or extension table, else UCS-2.
pub fn detect(body: &str) -> Encoding {
    if body.chars().all(|c| gsm_septets(c).is_some()) { Encoding::Gsm7 } else { Encoding::Ucs2 }
}

/// Septets a char costs in GSM 03.38: Some(1) basic, Some(2) extension (ESC + code), None not representable.
pub fn gsm_septets(c: char) -> Option<usize> {
    if basic_code(c).is_some() {
        Some(1)
    } else if extension_code(c).is_some() {
        Some(2)
    } else {
        None
    }
}

/// Encoding, unit count and segment count of `body`; an empty body is 1 segment of 0 units.
pub fn analyze(body: &str) -> BodyInfo {
    let encoding = detect(body);
    let units = body.chars().map(|c| encoding.char_units(c)).sum();
    let segments = walk_segments(body, encoding, units, |_| {});
    BodyInfo { encoding, units, segments }
}

/// Number of SMS segments `body` is sent as; always equals `split(body).len()`.
pub fn segment_count(body: &str) -> usize {
    analyze(body).segments
}

/// Greedy segmentation shared by `analyze` and `split` so counting and
/// splitting cannot drift apart. Calls `cut` with the byte offset where each
/// new part starts and returns the number of parts.
fn walk_segments(body: &str, encoding: Encoding, units: usize, mut cut: impl FnMut(usize)) -> usize {
    if units <= encoding.single_segment_units() {
        return 1;
    }
    let limit = encoding.multipart_segment_units();
    let mut used = 0;
    let mut parts = 1;
    for (i, c) in body.char_indices() {
        let cost = encoding.char_units(c);
        // A char that would straddle the boundary moves whole to the next part:
        // a split escape or surrogate pair would be garbage on the handset.
        if used + cost > limit {
            cut(i);
            parts += 1;
            used = 0;
        }
        used += cost;
    }
    parts
}

/// Splits into segments exactly as they will be sent: concatenating the returned strings gives back `body`;
/// returns one element when it fits a single segment. Never splits an extension-table escape
/// (a 2-septet char never straddles a boundary: if only 1 septet is left, the char moves to the next part)
/// and never splits a UTF-16 surrogate pair (a non-BMP char is 2 units; same rule).
pub fn split(body: &str) -> Vec<String> {
    let encoding = detect(body);
    let units = body.chars().map(|c| encoding.char_units(c)).sum();
    let mut cuts = Vec::new();
    walk_segments(body, encoding, units, |i| cuts.push(i));
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for end in cuts {
        parts.push(body[start..end].to_owned());
        start = end;
    }
    parts.push(body[start..].to_owned());
    parts
}

/// Unpacked GSM 7-bit septet values (one byte per septet, 0x1B escape before extension chars), None if not GSM.
pub fn encode_gsm7(body: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    for c in body.chars() {
        if let Some(code) = basic_code(c) {
            out.push(code);
        } else {
            out.push(ESC);
            out.push(extension_code(c)?);
        }
    }
    Some(out)
}

/// Inverse of encode_gsm7 (unknown escape -> the basic-table char, per 23.038; unknown bytes -> U+FFFD;
/// ESC ESC and a lone trailing ESC -> space, as 23.038 asks receivers to show a space). Never panics on any input.
pub fn decode_gsm7(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut bytes = septets.iter().copied();
    while let Some(b) = bytes.next() {
        if b == ESC {
            match bytes.next() {
                // 0x1B 0x1B is reserved for a future second extension table.
                None | Some(ESC) => out.push(' '),
                Some(code) => out.push(extension_char(code).unwrap_or_else(|| basic_char(code))),
            }
        } else {
            out.push(basic_char(b));
        }
    }
    out
}

fn basic_char(septet: u8) -> char {
    match BASIC.get(usize::from(septet)) {
        Some(&c) if septet != ESC => c,
        _ => char::REPLACEMENT_CHARACTER,
    }
}

/// GSM 7-bit packing into octets (as used in UDH-less TP-UD / some SMPP peers): septets are laid
/// LSB-first; only the low 7 bits of each input byte are used and unused trailing bits are zero.
pub fn pack_septets(septets: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; (septets.len() * 7).div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let s = s & 0x7F;
        let bit = i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        if let Some(o) = out.get_mut(byte) {
            *o |= s << shift;
        }
        // Bits beyond the 7th spill into the next octet once shift exceeds 1.
        let spill = if shift > 1 { s >> (8 - shift) } else { 0 };
        if let Some(o) = out.get_mut(byte + 1) {
            *o |= spill;
        }
    }
    out
}

/// Inverse of `pack_septets`; the septet count must travel separately because 7 septets and
/// 8 septets both pack into 7 octets. Stops early if `octets` hold fewer septets than asked.
pub fn unpack_septets(octets: &[u8], septet_count: usize) -> Vec<u8> {
    let count = septet_count.min(octets.len() * 8 / 7);
    (0..count)
        .map(|i| {
            let bit = i * 7;
            let (byte, shift) = (bit / 8, bit % 8);
            let lo = octets.get(byte).copied().unwrap_or(0) >> shift;
            let hi = if shift > 1 { octets.get(byte + 1).copied().unwrap_or(0) << (8 - shift) } else { 0 };
            (lo | hi) & 0x7F
        })
        .collect()
}

/// UTF-16BE bytes (SMPP data_coding 8).
pub fn encode_ucs2(body: &str) -> Vec<u8> {
    body.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Lossy UTF-16BE decode (odd trailing byte ignored, lone surrogates -> U+FFFD). Never panics.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let units = bytes.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

/// ISO-8859-1 decode (data_coding 3) – every byte maps to the same code point.
pub fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_a_bijection() {
        for (i, &c) in BASIC.iter().enumerate() {
            if i == usize::from(ESC) {
                assert_eq!(gsm_septets(c), None, "ESC must not be encodable text");
                continue;
            }
            assert_eq!(basic_code(c), Some(i as u8), "basic {c:?}");
        }
        for &(code, c) in &EXTENSION {
            assert_eq!(basic_code(c), None, "{c:?} must not also be basic");
            assert_eq!(extension_code(c), Some(code));
        }
    }

    #[test]
    fn spot_check_positions() {
        assert_eq!(encode_gsm7("@£$¥").unwrap(), [0x00, 0x01, 0x02, 0x03]);
        assert_eq!(encode_gsm7("ÇΔΞÆÉ").unwrap(), [0x09, 0x10, 0x1A, 0x1C, 0x1F]);
        assert_eq!(encode_gsm7("¤¡§¿à").unwrap(), [0x24, 0x40, 0x5F, 0x60, 0x7F]);
        assert_eq!(encode_gsm7("€").unwrap(), [0x1B, 0x65]);
        assert_eq!(encode_gsm7("\u{0C}^|").unwrap(), [0x1B, 0x0A, 0x1B, 0x14, 0x1B, 0x40]);
    }

    #[test]
    fn septet_costs() {
        assert_eq!(gsm_septets('a'), Some(1));
        assert_eq!(gsm_septets('€'), Some(2));
        assert_eq!(gsm_septets('{'), Some(2));
        assert_eq!(gsm_septets('ç'), None);
        assert_eq!(gsm_septets('\u{1B}'), None);
        assert_eq!(analyze("€").units, 2);
    }

    #[test]
    fn gsm_segment_boundaries() {
        for (n, segs) in [(0, 1), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3)] {
            let body = "a".repeat(n);
            let info = analyze(&body);
            assert_eq!(info.encoding, Encoding::Gsm7);
            assert_eq!(info.units, n);
            assert_eq!(info.segments, segs, "{n} chars");
            assert_eq!(split(&body).len(), segs);
        }
    }

    #[test]
    fn ucs2_segment_boundaries() {
        for (n, segs) in [(70, 1), (71, 2), (134, 2), (135, 3)] {
            let body = "ж".repeat(n);
            let info = analyze(&body);
            assert_eq!(info.encoding, Encoding::Ucs2);
            assert_eq!(info.units, n);
            assert_eq!(info.segments, segs, "{n} chars");
            assert_eq!(split(&body).len(), segs);
        }
    }

    #[test]
    fn escape_never_straddles() {
        // 152 septets then '{' (2 septets) would end at 154 > 153.
        let body = format!("{}{{{}", "a".repeat(152), "b".repeat(10));
        let parts = split(&body);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "a".repeat(152));
        assert!(parts[1].starts_with('{'));
        assert_eq!(parts.concat(), body);
    }

    #[test]
    fn surrogate_pair_never_straddles() {
        let body = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        assert_eq!(analyze(&body).units, 78);
        let parts = split(&body);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "ж".repeat(66));
        assert!(parts[1].starts_with('😀'));
        assert_eq!(analyze("😀").units, 2);
    }

    #[test]
    fn one_non_gsm_char_switches_to_ucs2() {
        assert_eq!(detect("Ça va"), Encoding::Gsm7);
        assert_eq!(detect("ça va"), Encoding::Ucs2);
        let body = format!("{}ç", "a".repeat(100));
        let info = analyze(&body);
        assert_eq!(info.encoding, Encoding::Ucs2);
        assert_eq!(info.segments, 2);
        assert_eq!(encode_gsm7(&body), None);
    }

    #[test]
    fn data_coding_values() {
        assert_eq!(Encoding::Gsm7.data_coding(), 0);
        assert_eq!(Encoding::Ucs2.data_coding(), 8);
    }

    #[test]
    fn round_trips() {
        let gsm = "Hello @£$ {€} [~] \\|^ ΔΦΓ äöñüà\r\n\u{0C}";
        assert_eq!(decode_gsm7(&encode_gsm7(gsm).unwrap()), gsm);
        let uni = "Привет 😀 ç";
        assert_eq!(decode_ucs2(&encode_ucs2(uni)), uni);
        let septets = encode_gsm7("hellohello").unwrap();
        let packed = pack_septets(&septets);
        assert_eq!(packed.len(), 9);
        assert_eq!(unpack_septets(&packed, septets.len()), septets);
    }

    #[test]
    fn packing_matches_known_vector() {
        // Classic 23.038 example: "hellohello" packs to E8329BFD4697D9EC37.
        let packed = pack_septets(&encode_gsm7("hellohello").unwrap());
        assert_eq!(packed, [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]);
    }

    #[test]
    fn decode_quirks() {
        assert_eq!(decode_gsm7(&[0x1B, 0x41]), "A");
        assert_eq!(decode_gsm7(&[0x41, 0x1B]), "A ");
        assert_eq!(decode_gsm7(&[0x1B, 0x1B]), " ");
        assert_eq!(decode_gsm7(&[0x80, 0xFF]), "\u{FFFD}\u{FFFD}");
        assert_eq!(decode_ucs2(&[0x00, 0x41, 0x00]), "A");
        assert_eq!(decode_ucs2(&[0xD8, 0x3D]), "\u{FFFD}");
        assert_eq!(decode_latin1(&[0x41, 0xE7, 0xFF]), "Açÿ");
    }

    #[test]
    fn decoders_never_panic_on_any_bytes() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in 0..all.len() {
            let slice = &all[..len];
            let _ = decode_gsm7(slice);
            let _ = decode_ucs2(slice);
            let _ = decode_latin1(slice);
            let _ = unpack_septets(slice, usize::MAX);
            let _ = pack_septets(slice);
        }
    }

    #[test]
    fn serde_names() {
        let json = serde_json::to_string(&Encoding::Gsm7).unwrap();
        assert_eq!(json, "\"gsm7\"");
        assert_eq!(serde_json::from_str::<Encoding>("\"ucs2\"").unwrap(), Encoding::Ucs2);
    }
}
