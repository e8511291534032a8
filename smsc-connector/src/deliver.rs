//! Reading a `deliver_sm`: a delivery receipt, or an inbound (MO) message
//! or one part of one.
//!
//! Pure functions over the PDU, so the fuzz target can throw anything at
//! them: whatever the SMSC sends, the answer is a value, never a panic.

use chrono::{DateTime, Utc};
use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;
use serde::{Deserialize, Serialize};
use tern_core::DeliveryState;
use tern_core::encoding::{decode_gsm7, decode_latin1, decode_ucs2};

use crate::receipt::{looks_like_receipt, parse_receipt_text, state_from_message_state, state_from_stat};

/// A delivery receipt as the connector keeps it until it is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The SMSC message id it reports on.
    pub smsc_id: String,
    /// What it reports.
    pub state: DeliveryState,
    /// The network error code, if any.
    pub error_code: Option<u32>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// Which concatenated message a part belongs to, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// Reference shared by the parts.
    pub reference: u16,
    /// Parts in all.
    pub total: u8,
    /// This part, 1-based.
    pub seq: u8,
}

/// An inbound message, or one part of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mo {
    /// The handset, E.164 when the SMSC says it is international.
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    /// SMPP data_coding.
    pub data_coding: u8,
    /// The user data, after any UDH.
    pub payload: Vec<u8>,
    /// Set when it is one part of a longer message.
    pub concat: Option<Concat>,
}

/// What a `deliver_sm` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// A delivery receipt.
    Receipt(Receipt),
    /// An inbound message (or part).
    Mo(Mo),
    /// Something that cannot be used; the reason.
    Unreadable(String),
}

/// esm_class message types that are receipts: MC delivery receipt (0x04),
/// SME delivery acknowledgement (0x08), intermediate notification (0x20).
const RECEIPT_TYPES: [u8; 3] = [0x04, 0x08, 0x20];
const ESM_UDHI: u8 = 0x40;

/// Reads a `deliver_sm` that arrived at `now`.
pub fn classify(pdu: &DeliverSm, now: DateTime<Utc>) -> Delivered {
    let esm = u8::from(pdu.esm_class);
    let payload = pdu
        .tlvs()
        .iter()
        .find_map(|tlv| match tlv.value() {
            Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref().to_vec()),
            _ => None,
        })
        .unwrap_or_else(|| pdu.short_message().as_ref().to_vec());
    let typed_receipt = RECEIPT_TYPES.contains(&(esm & 0x3C));
    if typed_receipt || (esm & ESM_UDHI == 0 && looks_like_receipt(&decode_latin1(&payload))) {
        return receipt(pdu, &payload, now);
    }
    mo(pdu, payload)
}

fn receipt(pdu: &DeliverSm, payload: &[u8], now: DateTime<Utc>) -> Delivered {
    let mut id = None;
    let mut state = None;
    let mut error_code = None;
    for tlv in pdu.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(value)) => id = Some(value.to_string()),
            Some(TlvValue::MessageState(value)) => state = Some(state_from_message_state(u8::from(*value))),
            Some(TlvValue::NetworkErrorCode(value)) => error_code = Some(u32::from(value.error_code)),
            _ => {}
        }
    }
    let text = parse_receipt_text(&decode_latin1(payload));
    let id = id.filter(|i| !i.is_empty()).or_else(|| text.as_ref().map(|t| t.id.clone()));
    let state = state.or_else(|| text.as_ref().and_then(|t| t.stat.as_deref()).map(state_from_stat));
    let error_code = error_code.or_else(|| text.as_ref().and_then(|t| t.err).filter(|e| *e != 0));
    match (id, state) {
        (Some(smsc_id), Some(state)) => Delivered::Receipt(Receipt { smsc_id, state, error_code, received_at: now }),
        (None, _) => Delivered::Unreadable("a receipt without a message id".into()),
        (Some(_), None) => Delivered::Unreadable("a receipt without a state".into()),
    }
}

fn mo(pdu: &DeliverSm, payload: Vec<u8>) -> Delivered {
    let esm = u8::from(pdu.esm_class);
    let (concat, payload) = if esm & ESM_UDHI != 0 {
        match strip_udh(&payload) {
            Some(found) => found,
            None => return Delivered::Unreadable("the user data header runs past the message".into()),
        }
    } else {
        (sar(pdu), payload)
    };
    if concat.is_some_and(|c| c.total == 0 || c.seq == 0 || c.seq > c.total) {
        return Delivered::Unreadable("a concatenated part out of range".into());
    }
    Delivered::Mo(Mo {
        from: handset(&pdu.source_addr.to_string(), u8::from(pdu.source_addr_ton)),
        to: pdu.destination_addr.to_string().trim_start_matches('+').to_owned(),
        data_coding: u8::from(pdu.data_coding),
        payload,
        concat: concat.filter(|c| c.total > 1),
    })
}

/// The concatenation of a UDH (8- or 16-bit reference) and the user data after it.
fn strip_udh(data: &[u8]) -> Option<(Option<Concat>, Vec<u8>)> {
    let length = usize::from(*data.first()?);
    let header = data.get(1..=length)?;
    let rest = data.get(length + 1..)?.to_vec();
    let mut concat = None;
    let mut at = 0;
    while at + 2 <= header.len() {
        let (iei, len) = (header[at], usize::from(header[at + 1]));
        let value = header.get(at + 2..at + 2 + len)?;
        match (iei, value) {
            (0x00, [reference, total, seq]) => {
                concat = Some(Concat { reference: u16::from(*reference), total: *total, seq: *seq });
            }
            (0x08, [hi, lo, total, seq]) => {
                concat = Some(Concat { reference: u16::from_be_bytes([*hi, *lo]), total: *total, seq: *seq });
            }
            _ => {}
        }
        at += 2 + len;
    }
    Some((concat, rest))
}

/// Concatenation told by the sar_* TLVs instead of a UDH.
fn sar(pdu: &DeliverSm) -> Option<Concat> {
    let (mut reference, mut total, mut seq) = (None, None, None);
    for tlv in pdu.tlvs() {
        match tlv.value() {
            Some(TlvValue::SarMsgRefNum(v)) => reference = Some(*v),
            Some(TlvValue::SarTotalSegments(v)) => total = Some(*v),
            Some(TlvValue::SarSegmentSeqnum(v)) => seq = Some(*v),
            _ => {}
        }
    }
    Some(Concat { reference: reference?, total: total?, seq: seq? })
}

/// The handset in E.164 when the SMSC marks it international (TON 1), or
/// when it is too long to be a short code; as received otherwise.
fn handset(source: &str, ton: u8) -> String {
    let digits = source.trim_start_matches('+');
    let numeric = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    if numeric && (ton == 1 || digits.len() >= 10) { format!("+{digits}") } else { source.to_owned() }
}

/// Decodes user data by its SMPP data_coding.
pub fn decode_text(data_coding: u8, bytes: &[u8]) -> String {
    match data_coding {
        0 => decode_gsm7(bytes),
        1 | 3 => decode_latin1(bytes),
        8 => decode_ucs2(bytes),
        2 | 4 => String::from_utf8_lossy(bytes).into_owned(),
        // GSM message-class coding: bit 2 chooses 8-bit data over the default alphabet.
        0xF0..=0xFF if data_coding & 0x04 == 0 => decode_gsm7(bytes),
        0xF0..=0xFF => String::from_utf8_lossy(bytes).into_owned(),
        // General data coding groups: bits 3-2 give the alphabet.
        _ if data_coding & 0xC0 == 0 && data_coding & 0x0C == 0x08 => decode_ucs2(bytes),
        _ => decode_latin1(bytes),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::str::FromStr;

    use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::{EsmClass, MessageState, Ton};

    use super::*;

    fn deliver(esm: u8, text: &[u8]) -> DeliverSm {
        DeliverSm::builder()
            .source_addr_ton(Ton::International)
            .source_addr(COctetString::from_str("447700900001").unwrap())
            .destination_addr(COctetString::from_str("4000").unwrap())
            .esm_class(EsmClass::from(esm))
            .short_message(OctetString::from_slice(text).unwrap())
            .build()
    }

    #[test]
    fn receipts_are_read_from_tlvs_or_text() {
        let now = Utc::now();
        let text = b"id:abc sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD err:000 text:";
        match classify(&deliver(0x04, text), now) {
            Delivered::Receipt(r) => {
                assert_eq!((r.smsc_id.as_str(), r.state, r.error_code), ("abc", DeliveryState::Delivered, None));
            }
            other => panic!("{other:?}"),
        }
        let mut tlvs = deliver(0x04, b"");
        tlvs.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(COctetString::from_str("x9").unwrap()));
        tlvs.push_tlv(MessageDeliveryRequestTlvValue::MessageState(MessageState::Expired));
        match classify(&tlvs, now) {
            Delivered::Receipt(r) => assert_eq!((r.smsc_id.as_str(), r.state), ("x9", DeliveryState::Expired)),
            other => panic!("{other:?}"),
        }
        // No esm_class flag, but unmistakably a receipt.
        assert!(matches!(classify(&deliver(0x00, b"id:7 stat:UNDELIV err:001"), now), Delivered::Receipt(_)));
        assert!(matches!(classify(&deliver(0x04, b"hello"), now), Delivered::Unreadable(_)));
    }

    #[test]
    fn inbound_messages_and_parts() {
        let now = Utc::now();
        match classify(&deliver(0x00, b"STOP"), now) {
            Delivered::Mo(mo) => {
                assert_eq!((mo.from.as_str(), mo.to.as_str(), mo.concat), ("+447700900001", "4000", None));
                assert_eq!(decode_text(mo.data_coding, &mo.payload), "STOP");
            }
            other => panic!("{other:?}"),
        }
        let mut part = vec![0x06, 0x08, 0x04, 0x01, 0x02, 0x03, 0x02];
        part.extend_from_slice(b"lo");
        match classify(&deliver(0x40, &part), now) {
            Delivered::Mo(mo) => {
                assert_eq!(mo.concat, Some(Concat { reference: 0x0102, total: 3, seq: 2 }));
                assert_eq!(mo.payload, b"lo");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(&deliver(0x40, &[0x09, 0x00, 0x03]), now), Delivered::Unreadable(_)));
        assert!(matches!(classify(&deliver(0x40, &[0x05, 0x00, 0x03, 1, 2, 3]), now), Delivered::Unreadable(_)));
    }

    #[test]
    fn text_decodes_by_data_coding() {
        assert_eq!(decode_text(8, &[0x04, 0x1F, 0x00, 0x21]), "П!");
        assert_eq!(decode_text(3, &[0xE9]), "é");
        assert_eq!(decode_text(0xF0, &[0x48, 0x69]), "Hi");
        assert_eq!(decode_text(0x18, &[0x00, 0x41]), "A");
    }
}
