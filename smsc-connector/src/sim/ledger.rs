//! What the simulator accepted, for assertions: every message in arrival
//! order, and which ones repeat an earlier one (the stress harness proves
//! with it that the connector sends nothing twice unless a response was
//! lost).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::udh::{Concat, decode_text, split_udh};

/// A message the simulator accepted (gave a message id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submitted {
    /// The `system_id` of the bind it came on.
    pub system_id: String,
    /// The message id the simulator gave it.
    pub message_id: String,
    /// `source_addr`.
    pub source_addr: String,
    /// `source_addr_ton`.
    pub source_addr_ton: u8,
    /// `source_addr_npi`.
    pub source_addr_npi: u8,
    /// `destination_addr`.
    pub destination_addr: String,
    /// `esm_class`.
    pub esm_class: u8,
    /// `data_coding`.
    pub data_coding: u8,
    /// `registered_delivery`.
    pub registered_delivery: u8,
    /// `short_message`, UDH included.
    pub short_message: Vec<u8>,
    /// The `message_payload` TLV, if any.
    pub message_payload: Option<Vec<u8>>,
    /// (reference, total, seq) from the UDH or the `sar_*` TLVs.
    pub concat: Option<(u16, u8, u8)>,
    /// The text, decoded per `data_coding`, without the UDH.
    pub text: String,
}

/// An accepted message as kept: the PDU's own buffers, no copies, no text
/// decoding until someone asks.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) system_id: Arc<str>,
    pub(crate) message_id: Bytes,
    pub(crate) source_addr: Bytes,
    pub(crate) source_addr_ton: u8,
    pub(crate) source_addr_npi: u8,
    pub(crate) destination_addr: Bytes,
    pub(crate) esm_class: u8,
    pub(crate) data_coding: u8,
    pub(crate) registered_delivery: u8,
    pub(crate) short_message: Bytes,
    pub(crate) message_payload: Option<Bytes>,
    pub(crate) concat: Option<Concat>,
}

impl Record {
    /// Identifies the content: two messages with the same digest are the
    /// same message sent twice. 128 bits keep an accidental collision out
    /// of reach for any run length.
    pub(crate) fn digest(&self) -> u128 {
        let half = |salt: u8| {
            let mut hasher = DefaultHasher::new();
            salt.hash(&mut hasher);
            self.source_addr.hash(&mut hasher);
            self.destination_addr.hash(&mut hasher);
            self.short_message.hash(&mut hasher);
            self.message_payload.hash(&mut hasher);
            hasher.finish()
        };
        (u128::from(half(0)) << 64) | u128::from(half(1))
    }

    /// The user data the text is in: the payload when there is one.
    pub(crate) fn user_data(&self) -> &[u8] {
        self.message_payload.as_deref().unwrap_or(&self.short_message)
    }

    pub(crate) fn to_submitted(&self) -> Submitted {
        let (_, text) = split_udh(self.esm_class, self.user_data());
        Submitted {
            system_id: self.system_id.to_string(),
            message_id: c_string(&self.message_id),
            source_addr: c_string(&self.source_addr),
            source_addr_ton: self.source_addr_ton,
            source_addr_npi: self.source_addr_npi,
            destination_addr: c_string(&self.destination_addr),
            esm_class: self.esm_class,
            data_coding: self.data_coding,
            registered_delivery: self.registered_delivery,
            short_message: self.short_message.to_vec(),
            message_payload: self.message_payload.as_ref().map(|p| p.to_vec()),
            concat: self.concat,
            text: decode_text(self.data_coding, text),
        }
    }
}

/// A C-octet string's text without its NUL.
pub(crate) fn c_string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.strip_suffix(&[0]).unwrap_or(bytes)).into_owned()
}

/// Every accepted message, and the digests of all seen.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    records: Vec<(Record, bool)>,
    seen: HashSet<u128>,
}

impl Ledger {
    /// Records `record`; whether it repeats an earlier message.
    pub(crate) fn accept(&mut self, record: Record, digest: u128, max_recorded: usize) -> bool {
        let duplicate = !self.seen.insert(digest);
        if self.records.len() < max_recorded {
            self.records.push((record, duplicate));
        }
        duplicate
    }

    pub(crate) fn submitted(&self) -> Vec<Submitted> {
        self.records.iter().map(|(record, _)| record.to_submitted()).collect()
    }

    pub(crate) fn duplicates(&self) -> Vec<Submitted> {
        self.records.iter().filter(|(_, duplicate)| *duplicate).map(|(record, _)| record.to_submitted()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(destination: &'static [u8], text: &'static [u8]) -> Record {
        Record {
            system_id: Arc::from("tern"),
            message_id: Bytes::from_static(b"1\0"),
            source_addr: Bytes::from_static(b"Tern\0"),
            source_addr_ton: 5,
            source_addr_npi: 0,
            destination_addr: Bytes::from_static(destination),
            esm_class: 0,
            data_coding: 0,
            registered_delivery: 1,
            short_message: Bytes::from_static(text),
            message_payload: None,
            concat: None,
        }
    }

    #[test]
    fn the_same_content_to_the_same_handset_is_a_duplicate() {
        let mut ledger = Ledger::default();
        let first = record(b"4479\0", b"hi");
        assert!(!ledger.accept(first.clone(), first.digest(), 10));
        let other = record(b"4480\0", b"hi");
        assert!(!ledger.accept(other.clone(), other.digest(), 10), "another handset");
        let mut payload = record(b"4479\0", b"hi");
        payload.message_payload = Some(Bytes::from_static(b"x"));
        assert!(!ledger.accept(payload.clone(), payload.digest(), 10), "other content");
        assert!(ledger.accept(first.clone(), first.digest(), 10));
        let duplicates = ledger.duplicates();
        assert_eq!(duplicates.len(), 1);
        assert_eq!((duplicates[0].destination_addr.as_str(), duplicates[0].text.as_str()), ("4479", "hi"));
        assert_eq!(duplicates[0].source_addr, "Tern");
        // Beyond the record limit duplicates are still seen.
        assert!(ledger.accept(first.clone(), first.digest(), 0));
        assert_eq!(ledger.submitted().len(), 4);
    }
}
