//! The receipt text parser takes anything an SMSC sends without panicking,
//! and what it reads back from its own format is what was written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_smsc_connector::receipt::{looks_like_receipt, parse_receipt_text, state_from_stat};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = looks_like_receipt(&text);
    if let Some(receipt) = parse_receipt_text(&text) {
        assert!(!receipt.id.is_empty());
        assert!(!receipt.id.contains(char::is_whitespace));
        if let Some(stat) = &receipt.stat {
            let _ = state_from_stat(stat);
        }
    }
});
