//! The user data of a short message: a concatenation header (UDH) in
//! front of the text when the UDHI bit of `esm_class` is set, and the text
//! in the alphabet `data_coding` names.

use tern_core::encoding::{decode_gsm7, decode_latin1, decode_ucs2};

/// `esm_class` bit saying `short_message` starts with a UDH.
pub(crate) const UDHI: u8 = 0x40;

/// Where a segment sits in a concatenated message: (reference, total, seq).
pub(crate) type Concat = (u16, u8, u8);

/// Splits user data into its concatenation info and the text octets. A
/// header that runs past the data is taken as no header at all, so that a
/// bad one still shows up in the recorded text instead of vanishing.
pub(crate) fn split_udh(esm_class: u8, data: &[u8]) -> (Option<Concat>, &[u8]) {
    if esm_class & UDHI == 0 {
        return (None, data);
    }
    let Some((&length, rest)) = data.split_first() else { return (None, data) };
    let Some((header, text)) = rest.split_at_checked(usize::from(length)) else { return (None, data) };
    (concat_of(header), text)
}

/// The concatenation element of a UDH: IEI 0x00 (8-bit reference) or 0x08
/// (16-bit reference); other elements are skipped.
fn concat_of(mut header: &[u8]) -> Option<Concat> {
    while let [iei, length, rest @ ..] = header {
        let (element, next) = rest.split_at_checked(usize::from(*length))?;
        match (iei, element) {
            (0x00, &[reference, total, seq]) => return Some((u16::from(reference), total, seq)),
            (0x08, &[hi, lo, total, seq]) => return Some((u16::from_be_bytes([hi, lo]), total, seq)),
            _ => header = next,
        }
    }
    None
}

/// A 6-octet UDH for part `seq` of `total` with an 8-bit reference.
pub(crate) fn concat_header(reference: u8, total: u8, seq: u8) -> [u8; 6] {
    [0x05, 0x00, 0x03, reference, total, seq]
}

/// The text of user data in the alphabet `data_coding` names: 0 is GSM
/// 03.38 unpacked (one septet an octet, as SMPP carries it), 8 UCS-2, 3
/// Latin-1; anything else is read as UTF-8, lossily.
pub(crate) fn decode_text(data_coding: u8, text: &[u8]) -> String {
    match data_coding {
        0 => decode_gsm7(text),
        8 => decode_ucs2(text),
        3 => decode_latin1(text),
        _ => String::from_utf8_lossy(text).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_concatenation_elements() {
        let eight = [0x05, 0x00, 0x03, 0x2A, 0x03, 0x02, b'h', b'i'];
        assert_eq!(split_udh(UDHI, &eight), (Some((0x2A, 3, 2)), &b"hi"[..]));
        let sixteen = [0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01, b'x'];
        assert_eq!(split_udh(UDHI, &sixteen), (Some((0x1234, 2, 1)), &b"x"[..]));
        // Another element first (a port address), then the concatenation.
        let mixed = [0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x07, 0x02, 0x02];
        assert_eq!(split_udh(UDHI, &mixed), (Some((7, 2, 2)), &[][..]));
        assert_eq!(split_udh(0, &eight), (None, &eight[..]), "no UDHI, no header");
    }

    #[test]
    fn bad_headers_are_no_headers() {
        for data in [&[][..], &[0x09, 0x00, 0x03], &[0x03, 0x00, 0x07, 0x01]] {
            assert_eq!(split_udh(UDHI, data).0, None, "{data:?}");
        }
        assert_eq!(split_udh(UDHI, &[0x02, 0x00, 0x07, b'a']), (None, &b"a"[..]));
    }

    #[test]
    fn decodes_each_alphabet() {
        assert_eq!(decode_text(0, &[0x48, 0x00, 0x1B, 0x65]), "H@€");
        assert_eq!(decode_text(8, &[0x04, 0x36]), "ж");
        assert_eq!(decode_text(3, &[0xE7]), "ç");
        assert_eq!(decode_text(4, &[0xFF, b'a']), "\u{FFFD}a");
    }
}
