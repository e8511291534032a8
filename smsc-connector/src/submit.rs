//! Turning an accepted message into `submit_sm` PDUs.
//!
//! The text is split exactly as `tern-core` counted (and billed) it, and
//! encoded as GSM 03.38 (data_coding 0, one septet per octet, as SMPP
//! carries it) or UCS-2 (8). A long message becomes one PDU per segment with
//! a concatenation UDH, or one PDU with the whole text in `message_payload`,
//! as the connector is configured. The UDH reference is derived from the
//! message id, so a segment resent after a timeout carries the same one and
//! the handset still assembles one message.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, Ton};
use tern_core::encoding::{encode_gsm7, encode_ucs2, split};
use tern_core::{Encoding, MessageId};
use tern_handlers::Outbound;

use crate::config::{ConnectorConfig, LongMessages};

/// One `submit_sm` and the segments it carries.
#[derive(Debug, Clone)]
pub struct Piece {
    /// First segment (1-based).
    pub first: u16,
    /// Last segment (equal to `first` unless the whole text is in `message_payload`).
    pub last: u16,
    /// The PDU.
    pub pdu: SubmitSm,
}

/// UDHI set: the short message starts with a user data header.
const ESM_UDHI: u8 = 0x40;

/// The PDUs of a message, one per piece; an error names what cannot be sent
/// (a permanent failure: sending it again would not help).
pub fn pieces(message: &Outbound, id: MessageId, config: &ConnectorConfig) -> Result<Vec<Piece>, String> {
    let parts = split(&message.body);
    let gsm = message.encoding == Encoding::Gsm7;
    let encode = |text: &str| if gsm { encode_gsm7(text) } else { Some(encode_ucs2(text)) };
    let encoded: Option<Vec<Vec<u8>>> = parts.iter().map(|p| encode(p)).collect();
    // A body that is not GSM after all goes as UCS-2 rather than garbled.
    let (encoded, coding) = match encoded {
        Some(encoded) => (encoded, message.encoding),
        None => (parts.iter().map(|p| encode_ucs2(p)).collect(), Encoding::Ucs2),
    };
    let total = u16::try_from(encoded.len()).map_err(|_| "the message has too many segments".to_owned())?;
    let template = template(message, config, coding)?;
    if total == 1 || config.long_messages == LongMessages::Payload {
        let whole: Vec<u8> = encoded.concat();
        let mut pdu = template;
        if total == 1 {
            pdu.set_short_message(octets(&whole)?);
        } else {
            pdu.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(
                AnyOctetString::from_slice(&whole),
            )));
        }
        return Ok(vec![Piece { first: 1, last: total, pdu }]);
    }
    let total_u8 = u8::try_from(total).map_err(|_| "more than 255 segments cannot be concatenated".to_owned())?;
    let reference = id.as_uuid().as_bytes()[15];
    encoded
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let mut data = vec![0x05, 0x00, 0x03, reference, total_u8, seq];
            data.extend_from_slice(bytes);
            let mut pdu = template.clone();
            pdu.esm_class = EsmClass::from(ESM_UDHI);
            pdu.set_short_message(octets(&data)?);
            Ok(Piece { first: u16::from(seq), last: u16::from(seq), pdu })
        })
        .collect()
}

fn octets(bytes: &[u8]) -> Result<OctetString<0, 255>, String> {
    OctetString::from_slice(bytes).map_err(|e| format!("a segment does not fit a short_message: {e}"))
}

fn address(value: &str, what: &str) -> Result<COctetString<1, 21>, String> {
    COctetString::from_str(value).map_err(|e| format!("the {what} {value:?} does not fit an SMPP address: {e}"))
}

/// What every piece of the message shares.
fn template(message: &Outbound, config: &ConnectorConfig, coding: Encoding) -> Result<SubmitSm, String> {
    let sender = message.from.trim_start_matches('+');
    let numeric = !sender.is_empty() && sender.chars().all(|c| c.is_ascii_digit());
    let (ton, npi) = match (numeric, sender.len() <= config.short_code_max_len) {
        (false, _) => config.alphanumeric_ton_npi,
        (true, true) => config.short_code_ton_npi,
        (true, false) => config.international_ton_npi,
    };
    let (dest_ton, dest_npi) = config.international_ton_npi;
    let mut pdu = SubmitSm::builder()
        .source_addr_ton(Ton::from(ton))
        .source_addr_npi(Npi::from(npi))
        .source_addr(address(sender, "sender")?)
        .dest_addr_ton(Ton::from(dest_ton))
        .dest_addr_npi(Npi::from(dest_npi))
        .destination_addr(address(message.to.trim_start_matches('+'), "destination")?)
        // EsmClass::default() is 0x08 (an ANSI-41 flag), not "default mode".
        .esm_class(EsmClass::from(0x00))
        .registered_delivery(RegisteredDelivery::from(u8::from(config.receipts)))
        .data_coding(DataCoding::from(coding.data_coding()))
        .build();
    pdu.validity_period = validity(message.expires_at, Utc::now());
    Ok(pdu)
}

/// The message's expiry as an absolute SMPP time (`YYMMDDhhmmss000+`, UTC),
/// so the SMSC stops trying when Tern would call it expired.
fn validity(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> EmptyOrFullCOctetString<17> {
    if expires_at <= now {
        return EmptyOrFullCOctetString::default();
    }
    let text = format!("{}000+", expires_at.format("%y%m%d%H%M%S"));
    EmptyOrFullCOctetString::from_str(&text).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeDelta;
    use tern_core::encoding::{decode_gsm7, decode_ucs2};

    use super::*;

    fn outbound(body: &str, from: &str) -> Outbound {
        Outbound {
            to: "+447700900123".into(),
            country: Some("GB".into()),
            from: from.into(),
            body: body.into(),
            encoding: tern_core::encoding::detect(body),
            segments: u16::try_from(split(body).len()).unwrap(),
            batch_id: None,
            client_ref: None,
            callback_url: None,
            expires_at: Utc::now() + TimeDelta::hours(1),
            price: None,
            currency: None,
        }
    }

    #[test]
    fn a_short_gsm_message_is_one_plain_pdu() {
        let pieces = pieces(&outbound("Hello €!", "TernBank"), MessageId::new(), &ConnectorConfig::default()).unwrap();
        assert_eq!(pieces.len(), 1);
        let pdu = &pieces[0].pdu;
        assert_eq!(u8::from(pdu.esm_class), 0x00);
        assert_eq!(u8::from(pdu.data_coding), 0);
        assert_eq!((u8::from(pdu.source_addr_ton), u8::from(pdu.source_addr_npi)), (5, 0));
        assert_eq!(pdu.destination_addr.to_string(), "447700900123");
        assert_eq!((u8::from(pdu.dest_addr_ton), u8::from(pdu.dest_addr_npi)), (1, 1));
        assert_eq!(u8::from(pdu.registered_delivery), 1);
        assert_eq!(decode_gsm7(pdu.short_message().as_ref()), "Hello €!");
        assert_eq!(pdu.validity_period.to_string().len(), 16);
    }

    #[test]
    fn long_messages_go_as_udh_segments_or_one_payload() {
        let body = "x".repeat(200) + "ü";
        let id = MessageId::new();
        let udh = pieces(&outbound(&body, "4000"), id, &ConnectorConfig::default()).unwrap();
        assert_eq!(udh.len(), 2);
        let mut text = String::new();
        for (i, piece) in udh.iter().enumerate() {
            let data = piece.pdu.short_message().as_ref().to_vec();
            assert_eq!(&data[..6], &[5, 0, 3, id.as_uuid().as_bytes()[15], 2, u8::try_from(i + 1).unwrap()]);
            assert_eq!(u8::from(piece.pdu.esm_class), 0x40);
            assert_eq!((piece.first, piece.last), (u16::try_from(i + 1).unwrap(), u16::try_from(i + 1).unwrap()));
            text.push_str(&decode_gsm7(&data[6..]));
        }
        assert_eq!(text, body);
        assert_eq!((u8::from(udh[0].pdu.source_addr_ton), u8::from(udh[0].pdu.source_addr_npi)), (3, 0));

        let config = ConnectorConfig { long_messages: LongMessages::Payload, ..ConnectorConfig::default() };
        let whole = pieces(&outbound(&body, "+447700900999"), id, &config).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].first, whole[0].last), (1, 2));
        assert_eq!(whole[0].pdu.short_message().as_ref().len(), 0);
        assert_eq!(whole[0].pdu.tlvs().len(), 1);
        assert_eq!((u8::from(whole[0].pdu.source_addr_ton), u8::from(whole[0].pdu.source_addr_npi)), (1, 1));
    }

    #[test]
    fn unicode_goes_as_ucs2() {
        let body = "Привет 👋";
        let pieces = pieces(&outbound(body, "TernBank"), MessageId::new(), &ConnectorConfig::default()).unwrap();
        assert_eq!(u8::from(pieces[0].pdu.data_coding), 8);
        assert_eq!(decode_ucs2(pieces[0].pdu.short_message().as_ref()), body);
    }

    #[test]
    fn an_unfit_address_is_a_permanent_error() {
        let mut message = outbound("hi", "TernBank");
        message.to = "1".repeat(30);
        assert!(pieces(&message, MessageId::new(), &ConnectorConfig::default()).unwrap_err().contains("destination"));
    }
}
