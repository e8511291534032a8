//! The PDUs the simulator sends, built on rusmpp's types.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DataSmResp, DeliverSm, SubmitSmResp};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{
    DataCoding, ErrorCodeNetworkType, EsmClass, InterfaceVersion, MessageState, NetworkErrorCode, Npi, Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tern_core::DeliveryState;

use tern_core::encoding::{Encoding, detect, encode_gsm7, encode_ucs2, split};

use super::config::{MessageIdForm, ReceiptForm};
use super::udh::{UDHI, concat_header};
use crate::receipt::{format_receipt_text, stat_of};

/// How the simulator names itself in bind responses.
const SYSTEM_ID: &[u8] = b"TernSim\0";

/// `esm_class` of an MC delivery receipt.
const RECEIPT_ESM_CLASS: u8 = 0x04;

/// An address with its TON and NPI.
#[derive(Debug, Clone)]
pub(crate) struct Address {
    pub(crate) addr: COctetString<1, 21>,
    pub(crate) ton: u8,
    pub(crate) npi: u8,
}

impl Address {
    /// A handset number: international, E.164, digits without `+`.
    /// `None` when it does not fit an SMPP address.
    pub(crate) fn handset(number: &str) -> Option<Self> {
        let digits = number.trim_start_matches('+');
        Some(Self { addr: COctetString::from_string(digits.to_owned()).ok()?, ton: 1, npi: 1 })
    }

    /// The other end of an MO: a number, or an alphanumeric sender id.
    pub(crate) fn service(address: &str) -> Option<Self> {
        let digits = address.trim_start_matches('+');
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Self::handset(digits);
        }
        Some(Self { addr: COctetString::from_string(address.to_owned()).ok()?, ton: 5, npi: 0 })
    }
}

/// The kinds of bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    /// Whether receipts and MOs may go to it.
    pub(crate) fn receives(self) -> bool {
        self != BindKind::Transmitter
    }

    /// Whether it may submit.
    pub(crate) fn transmits(self) -> bool {
        self != BindKind::Receiver
    }

    fn response_id(self) -> CommandId {
        match self {
            BindKind::Transmitter => CommandId::BindTransmitterResp,
            BindKind::Receiver => CommandId::BindReceiverResp,
            BindKind::Transceiver => CommandId::BindTransceiverResp,
        }
    }
}

/// A successful bind response naming the simulator and SMPP 3.4.
pub(crate) fn bind_resp(kind: BindKind, sequence: u32) -> Command {
    let system_id = COctetString::from_static_slice(SYSTEM_ID).unwrap_or_default();
    let version = Some(InterfaceVersion::Smpp3_4);
    let pdu = match kind {
        BindKind::Transmitter => Pdu::BindTransmitterResp(BindTransmitterResp::new(system_id, version)),
        BindKind::Receiver => Pdu::BindReceiverResp(BindReceiverResp::new(system_id, version)),
        BindKind::Transceiver => Pdu::BindTransceiverResp(BindTransceiverResp::new(system_id, version)),
    };
    Command::new(CommandStatus::EsmeRok, sequence, pdu)
}

/// A refused bind: the error status and no body.
pub(crate) fn bind_refused(kind: BindKind, status: CommandStatus, sequence: u32) -> Command {
    error_resp(kind.response_id(), status, sequence)
}

/// A response carrying only an error status: SMPP 3.4 §3.3 has a response
/// with a non-zero status omit its body.
pub(crate) fn error_resp(id: CommandId, status: CommandStatus, sequence: u32) -> Command {
    Command::new(status, sequence, Pdu::Other { command_id: id, body: AnyOctetString::empty() })
}

/// An empty-bodied request or response (`enquire_link_resp`, `unbind`...).
pub(crate) fn bare(pdu: Pdu, sequence: u32) -> Command {
    Command::new(CommandStatus::EsmeRok, sequence, pdu)
}

pub(crate) fn generic_nack(status: CommandStatus, sequence: u32) -> Command {
    Command::new(status, sequence, Pdu::GenericNack)
}

pub(crate) fn submit_sm_resp(message_id: COctetString<1, 65>, sequence: u32) -> Command {
    Command::new(CommandStatus::EsmeRok, sequence, SubmitSmResp::new(message_id, Vec::new()))
}

pub(crate) fn data_sm_resp(message_id: COctetString<1, 65>, sequence: u32) -> Command {
    Command::new(CommandStatus::EsmeRok, sequence, DataSmResp::new(message_id, Vec::new()))
}

/// The `n`-th message id in the configured form; `n` is unique for the
/// simulator's life, so ids are too.
pub(crate) fn message_id(n: u64, form: MessageIdForm) -> COctetString<1, 65> {
    let text = match form {
        MessageIdForm::Hex => format!("{n:010x}"),
        MessageIdForm::Decimal => n.to_string(),
    };
    COctetString::from_string(text).unwrap_or_default()
}

/// What a receipt says.
#[derive(Debug)]
pub(crate) struct ReceiptFacts<'a> {
    pub(crate) message_id: &'a COctetString<1, 65>,
    /// The handset the message went to: the receipt comes from it.
    pub(crate) handset: Address,
    /// The message's source: the receipt goes to it.
    pub(crate) sender: Address,
    pub(crate) state: DeliveryState,
    pub(crate) submitted_at: DateTime<Utc>,
    pub(crate) done_at: DateTime<Utc>,
    /// The start of the message's text.
    pub(crate) text: &'a str,
    pub(crate) form: ReceiptForm,
}

/// The network error a failed receipt reports (GSM MAP causes: 27 absent
/// subscriber, 1 unknown subscriber).
pub(crate) fn network_error(state: DeliveryState) -> u16 {
    match state {
        DeliveryState::Delivered | DeliveryState::Unknown => 0,
        DeliveryState::Expired => 27,
        DeliveryState::Undeliverable => 1,
    }
}

/// A delivery receipt as the configured form has it.
pub(crate) fn receipt(facts: &ReceiptFacts<'_>) -> DeliverSm {
    let err = network_error(facts.state);
    let mut short_message = OctetString::empty();
    if facts.form != ReceiptForm::TlvOnly {
        // The text travels as GSM 7-bit (data_coding 0); keeping only the
        // characters whose GSM code is their ASCII code makes it read the
        // same to clients that take it for ASCII.
        let prefix: String =
            facts.text.chars().take(20).map(|c| if same_in_gsm_and_ascii(c) { c } else { '.' }).collect();
        let text = format_receipt_text(
            facts.message_id.as_str(),
            facts.state,
            u32::from(err),
            facts.submitted_at,
            facts.done_at,
            &prefix,
        );
        short_message = OctetString::from_string(text).unwrap_or_default();
    }
    let mut tlvs = Vec::new();
    if facts.form != ReceiptForm::TextOnly {
        tlvs.push(MessageDeliveryRequestTlvValue::ReceiptedMessageId(facts.message_id.clone()));
        tlvs.push(MessageDeliveryRequestTlvValue::MessageState(MessageState::from(stat_of(facts.state).1)));
        if facts.state != DeliveryState::Delivered {
            tlvs.push(MessageDeliveryRequestTlvValue::NetworkErrorCode(NetworkErrorCode::new(
                ErrorCodeNetworkType::Gsm,
                err,
            )));
        }
    }
    deliver_sm(&facts.handset, &facts.sender, RECEIPT_ESM_CLASS, 0, short_message, tlvs)
}

fn same_in_gsm_and_ascii(c: char) -> bool {
    c.is_ascii() && tern_core::encoding::encode_gsm7(c.encode_utf8(&mut [0; 4])).as_deref() == Some(&[c as u8][..])
}

/// A mobile-originated text as the `deliver_sm` that carry it: one when it
/// fits a segment, else UDH-concatenated parts under `reference`; in GSM
/// 7-bit (data_coding 0) when every character has a GSM code, else UCS-2
/// (8). `None` when it needs more than 255 parts.
pub(crate) fn mo_parts(from: &Address, to: &Address, text: &str, reference: u8) -> Option<Vec<DeliverSm>> {
    let encoding = detect(text);
    let encode = |part: &str| match encoding {
        Encoding::Gsm7 => encode_gsm7(part).unwrap_or_default(),
        Encoding::Ucs2 => encode_ucs2(part),
    };
    let data_coding = encoding.data_coding();
    let parts = split(text);
    if parts.len() == 1 {
        return Some(vec![mo(from, to, 0x00, data_coding, Bytes::from(encode(text)))]);
    }
    let total = u8::try_from(parts.len()).ok()?;
    let mut seq = 0u8;
    let pdus = parts
        .iter()
        .map(|part| {
            seq += 1;
            let mut user_data = concat_header(reference, total, seq).to_vec();
            user_data.extend(encode(part));
            mo(from, to, UDHI, data_coding, Bytes::from(user_data))
        })
        .collect();
    Some(pdus)
}

/// A mobile-originated message (or one part of it).
pub(crate) fn mo(from: &Address, to: &Address, esm_class: u8, data_coding: u8, user_data: Bytes) -> DeliverSm {
    let short_message = OctetString::from_bytes(user_data).unwrap_or_default();
    deliver_sm(from, to, esm_class, data_coding, short_message, Vec::new())
}

fn deliver_sm(
    from: &Address,
    to: &Address,
    esm_class: u8,
    data_coding: u8,
    short_message: OctetString<0, 255>,
    tlvs: Vec<MessageDeliveryRequestTlvValue>,
) -> DeliverSm {
    DeliverSm::builder()
        .source_addr_ton(Ton::from(from.ton))
        .source_addr_npi(Npi::from(from.npi))
        .source_addr(from.addr.clone())
        .dest_addr_ton(Ton::from(to.ton))
        .dest_addr_npi(Npi::from(to.npi))
        .destination_addr(to.addr.clone())
        .esm_class(EsmClass::from(esm_class))
        .data_coding(DataCoding::from(data_coding))
        .short_message(short_message)
        .tlvs(tlvs)
        .build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_or_decimal() {
        assert_eq!(message_id(0x5f3c1a0b9e, MessageIdForm::Hex).as_str(), "5f3c1a0b9e");
        assert_eq!(message_id(42, MessageIdForm::Hex).as_str(), "000000002a");
        assert_eq!(message_id(42, MessageIdForm::Decimal).as_str(), "42");
    }

    #[test]
    fn addresses_fit_smpp() {
        let handset = Address::handset("+447700900123").unwrap();
        assert_eq!((handset.addr.as_str(), handset.ton, handset.npi), ("447700900123", 1, 1));
        let sender = Address::service("Tern").unwrap();
        assert_eq!((sender.ton, sender.npi), (5, 0));
        assert!(Address::handset("123456789012345678901").is_none(), "21 digits do not fit");
        assert!(Address::service("Tërn").is_none(), "not ASCII");
    }

    #[test]
    fn long_mo_texts_go_in_concatenated_parts() {
        let (from, to) = (Address::handset("447700900123").unwrap(), Address::service("Tern").unwrap());
        let one = mo_parts(&from, &to, "Thanks!", 9).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((u8::from(one[0].esm_class), u8::from(one[0].data_coding)), (0x00, 0));
        let text = "x".repeat(200);
        let parts = mo_parts(&from, &to, &text, 9).unwrap();
        assert_eq!(parts.len(), 2);
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(u8::from(part.esm_class), UDHI);
            assert_eq!(&part.short_message()[..6], &[5, 0, 3, 9, 2, i as u8 + 1]);
        }
        let ucs2 = mo_parts(&from, &to, "привет", 1).unwrap();
        assert_eq!(u8::from(ucs2[0].data_coding), 8);
        assert!(mo_parts(&from, &to, &"x".repeat(153 * 256), 1).is_none(), "256 parts do not fit");
    }

    #[test]
    fn receipt_text_keeps_to_characters_both_alphabets_share() {
        assert!(same_in_gsm_and_ascii('a') && same_in_gsm_and_ascii(' ') && same_in_gsm_and_ascii('!'));
        assert!(!same_in_gsm_and_ascii('@') && !same_in_gsm_and_ascii('_') && !same_in_gsm_and_ascii('é'));
    }
}
