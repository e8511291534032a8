//! Delivery receipts: the `message_state`/`receipted_message_id` TLVs of
//! SMPP 3.4, and the de-facto text format of its Appendix B that most SMSCs
//! send in `short_message` instead (or as well):
//!
//! `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...`
//!
//! The parser takes what real SMSCs send: keys in any case, fields in any
//! order or missing, dates with or without seconds, `err` in decimal or hex.
//! It never panics, whatever the input (a fuzz target checks that).

use chrono::{DateTime, NaiveDateTime, Utc};
use tern_core::DeliveryState;

/// What a receipt's text says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptText {
    /// The SMSC message id the receipt is about.
    pub id: String,
    /// `sub:` messages submitted.
    pub submitted: Option<u32>,
    /// `dlvrd:` messages delivered.
    pub delivered: Option<u32>,
    /// `submit date:`.
    pub submit_date: Option<DateTime<Utc>>,
    /// `done date:`.
    pub done_date: Option<DateTime<Utc>>,
    /// `stat:`, upper case (`DELIVRD`, `UNDELIV`...).
    pub stat: Option<String>,
    /// `err:` network error code.
    pub err: Option<u32>,
    /// `text:` the first characters of the message.
    pub text: Option<String>,
}

/// Keys in the order a receipt normally has them; `text` runs to the end.
const KEYS: [&str; 8] = ["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:"];

/// Parses a receipt text; `None` when it names no message id.
pub fn parse_receipt_text(text: &str) -> Option<ReceiptText> {
    let lower = text.to_ascii_lowercase();
    let value = |key: &str| -> Option<&str> {
        let start = find_key(&lower, key)? + key.len();
        let rest = text.get(start..)?;
        if key == "text:" {
            return Some(rest);
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest.get(..end)
    };
    let id = value("id:").filter(|id| !id.is_empty())?.to_owned();
    Some(ReceiptText {
        id,
        submitted: value("sub:").and_then(|v| v.parse().ok()),
        delivered: value("dlvrd:").and_then(|v| v.parse().ok()),
        submit_date: value("submit date:").and_then(parse_date),
        done_date: value("done date:").and_then(parse_date),
        stat: value("stat:").filter(|s| !s.is_empty()).map(str::to_ascii_uppercase),
        err: value("err:").and_then(parse_code),
        text: value("text:").map(str::to_owned),
    })
}

/// Where `key` starts as a whole key: at the start or after white space.
fn find_key(lower: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = lower.get(from..).and_then(|rest| rest.find(key)) {
        let at = from + found;
        let boundary = at == 0 || lower[..at].ends_with(char::is_whitespace);
        // "id:" must not match the end of "submit date:"-like keys or a
        // value such as "xid:1"; the boundary rule covers both.
        if boundary {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// `YYMMDDhhmm` or `YYMMDDhhmmss`, taken as UTC (SMSCs rarely say otherwise).
fn parse_date(value: &str) -> Option<DateTime<Utc>> {
    let format = match value.len() {
        10 => "%y%m%d%H%M",
        12 => "%y%m%d%H%M%S",
        _ => return None,
    };
    NaiveDateTime::parse_from_str(value, format).ok().map(|t| t.and_utc())
}

/// Decimal as specified; some SMSCs send hex.
fn parse_code(value: &str) -> Option<u32> {
    value.parse().ok().or_else(|| u32::from_str_radix(value.trim_start_matches("0x"), 16).ok())
}

/// The state a `stat:` value reports.
pub fn state_from_stat(stat: &str) -> DeliveryState {
    match stat.to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => DeliveryState::Delivered,
        "EXPIRED" => DeliveryState::Expired,
        "UNDELIV" | "UNDELIVERABLE" | "REJECTD" | "REJECTED" | "DELETED" => DeliveryState::Undeliverable,
        // ACCEPTD, ENROUTE, UNKNOWN, SKIPPED...: not final, or not telling.
        _ => DeliveryState::Unknown,
    }
}

/// The state a `message_state` TLV value reports (SMPP 3.4 §5.2.28).
pub fn state_from_message_state(value: u8) -> DeliveryState {
    match value {
        2 => DeliveryState::Delivered,
        3 => DeliveryState::Expired,
        4 | 5 | 8 => DeliveryState::Undeliverable,
        _ => DeliveryState::Unknown,
    }
}

/// The `stat:` and `message_state` an SMSC reports for a final state.
pub fn stat_of(state: DeliveryState) -> (&'static str, u8) {
    match state {
        DeliveryState::Delivered => ("DELIVRD", 2),
        DeliveryState::Expired => ("EXPIRED", 3),
        DeliveryState::Undeliverable => ("UNDELIV", 5),
        DeliveryState::Unknown => ("UNKNOWN", 7),
    }
}

/// Formats a receipt text as SMSCs send it (the simulator uses this).
pub fn format_receipt_text(
    id: &str,
    state: DeliveryState,
    err: u32,
    submitted_at: DateTime<Utc>,
    done_at: DateTime<Utc>,
    text: &str,
) -> String {
    let delivered = u8::from(state == DeliveryState::Delivered);
    let prefix: String = text.chars().take(20).collect();
    format!(
        "id:{id} sub:001 dlvrd:{delivered:03} submit date:{} done date:{} stat:{} err:{err:03} text:{prefix}",
        submitted_at.format("%y%m%d%H%M"),
        done_at.format("%y%m%d%H%M"),
        stat_of(state).0,
    )
}

/// Whether a key of the format appears in `text` at all (a cheap test that
/// a `deliver_sm` without the receipt `esm_class` still carries a receipt,
/// as a few SMSCs send them).
pub fn looks_like_receipt(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    find_key(&lower, KEYS[0]).is_some() && find_key(&lower, KEYS[5]).is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_the_appendix_b_format() {
        let text = "id:0123456789 sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD err:000 text:Hello world";
        let receipt = parse_receipt_text(text).unwrap();
        assert_eq!(receipt.id, "0123456789");
        assert_eq!((receipt.submitted, receipt.delivered), (Some(1), Some(1)));
        assert_eq!(receipt.submit_date, Some(Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()));
        assert_eq!(receipt.done_date, Some(Utc.with_ymd_and_hms(2026, 12, 1, 12, 1, 0).unwrap()));
        assert_eq!(receipt.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(receipt.err, Some(0));
        assert_eq!(receipt.text.as_deref(), Some("Hello world"));
        assert_eq!(state_from_stat("DELIVRD"), DeliveryState::Delivered);
    }

    #[test]
    fn takes_what_real_smscs_send() {
        // Upper-case keys, seconds in dates, hex err, fields reordered, no text.
        let receipt =
            parse_receipt_text("ID:7f3a stat:undeliv ERR:0x1A Submit Date:261201120005 done date:bad").unwrap();
        assert_eq!(receipt.id, "7f3a");
        assert_eq!(receipt.stat.as_deref(), Some("UNDELIV"));
        assert_eq!(receipt.err, Some(0x1A));
        assert_eq!(receipt.submit_date, Some(Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 5).unwrap()));
        assert_eq!(receipt.done_date, None);
        assert_eq!(state_from_stat(receipt.stat.as_deref().unwrap()), DeliveryState::Undeliverable);
        assert!(parse_receipt_text("sub:001 stat:DELIVRD").is_none(), "no id, no receipt");
        assert!(parse_receipt_text("id: stat:DELIVRD").is_none(), "an empty id is no id");
        // "id:" inside another token is not the id.
        assert_eq!(parse_receipt_text("xid:9 id:42 stat:EXPIRED").unwrap().id, "42");
        assert!(looks_like_receipt("id:42 stat:EXPIRED"));
        assert!(!looks_like_receipt("did you get it?"));
    }

    #[test]
    fn states_map_to_the_lifecycle() {
        for (stat, state) in [
            ("EXPIRED", DeliveryState::Expired),
            ("REJECTD", DeliveryState::Undeliverable),
            ("DELETED", DeliveryState::Undeliverable),
            ("ACCEPTD", DeliveryState::Unknown),
            ("ENROUTE", DeliveryState::Unknown),
        ] {
            assert_eq!(state_from_stat(stat), state, "{stat}");
        }
        assert_eq!(state_from_message_state(2), DeliveryState::Delivered);
        assert_eq!(state_from_message_state(3), DeliveryState::Expired);
        assert_eq!(state_from_message_state(5), DeliveryState::Undeliverable);
        assert_eq!(state_from_message_state(6), DeliveryState::Unknown);
    }

    proptest! {
        #[test]
        fn formatted_receipts_read_back(
            id in "[0-9A-Za-z]{1,64}",
            state in prop::sample::select(vec![DeliveryState::Delivered, DeliveryState::Undeliverable, DeliveryState::Expired]),
            err in 0u32..1000,
            text in "\\PC{0,30}",
        ) {
            let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 0).unwrap();
            let formatted = format_receipt_text(&id, state, err, at, at, &text);
            let parsed = parse_receipt_text(&formatted).unwrap();
            prop_assert_eq!(parsed.id, id);
            prop_assert_eq!(state_from_stat(parsed.stat.as_deref().unwrap()), state);
            prop_assert_eq!(parsed.err, Some(err));
            prop_assert_eq!(parsed.done_date, Some(at));
        }

        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse_receipt_text(&text);
        }
    }
}
