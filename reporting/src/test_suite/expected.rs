//! What the store must hold, computed straight from the events with
//! [`MessageStatus::fold`], independently of the projector's own code.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use tern_core::{AccountId, Event, EventKind, MessageId, MessageStatus};

use super::support::text_rows;
use crate::ReportStore;

type Rows = Vec<Vec<Option<String>>>;

fn ts(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(|at| at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

fn pg_ts(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

fn inbound_kind(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::InboundReceived { .. }
            | EventKind::ReplyMatched { .. }
            | EventKind::OptedOut { .. }
            | EventKind::OptedIn { .. }
    )
}

fn callback_kind(kind: &EventKind) -> bool {
    matches!(kind, EventKind::CallbackDelivered { .. } | EventKind::CallbackFailed { .. })
}

/// The expected contents of the store's tables for a journal's events.
#[derive(Debug, Default)]
pub struct Expected {
    /// `messages` (see [`MESSAGES_SQL`]).
    pub messages: Rows,
    /// `daily_stats`.
    pub daily_stats: Rows,
    /// `batches`.
    pub batches: Rows,
    /// `inbound_messages`.
    pub inbound: Rows,
}

fn some<T: ToString>(value: T) -> Option<String> {
    Some(value.to_string())
}

/// The instant the fold became terminal: the first event (in canonical
/// order) after which the fold of the events so far is terminal.
fn ended_at(events: &[&Event]) -> Option<DateTime<Utc>> {
    let mut ordered: Vec<&Event> = events.to_vec();
    ordered.sort_by_key(|e| e.sequence_key());
    let segments = ordered.iter().find_map(|e| match e.kind {
        EventKind::Accepted { segments, .. } => Some(segments),
        _ => None,
    });
    for i in 0..ordered.len() {
        // Prefix folds must know the segment count the full fold knows.
        let mut prefix: Vec<&Event> = ordered[..=i].to_vec();
        if let (Some(_), None) = (segments, prefix.iter().find(|e| matches!(e.kind, EventKind::Accepted { .. }))) {
            prefix.extend(ordered.iter().filter(|e| matches!(e.kind, EventKind::Accepted { .. })));
        }
        if MessageStatus::fold(prefix.iter().copied()).is_some_and(MessageStatus::is_terminal) {
            return Some(ordered[i].at);
        }
    }
    None
}

/// Computes [`Expected`] from the journal's events.
pub fn expected(events: &[Event]) -> Expected {
    let mut outbound: BTreeMap<MessageId, Vec<&Event>> = BTreeMap::new();
    let mut inbound: BTreeMap<MessageId, Vec<&Event>> = BTreeMap::new();
    for event in events {
        if inbound_kind(&event.kind) {
            inbound.entry(event.message_id).or_default().push(event);
        }
    }
    for event in events {
        let inbound_callback = callback_kind(&event.kind) && inbound.contains_key(&event.message_id);
        if !inbound_kind(&event.kind) && !inbound_callback {
            outbound.entry(event.message_id).or_default().push(event);
        }
    }
    let mut out = Expected::default();
    let mut stats: BTreeMap<[String; 5], [i64; 3]> = BTreeMap::new();
    let mut batches: BTreeMap<String, (String, HashMap<&'static str, i64>)> = BTreeMap::new();
    for (id, history) in &outbound {
        if history.iter().all(|e| callback_kind(&e.kind)) {
            continue;
        }
        let status = MessageStatus::fold(history.iter().copied());
        let owner: Option<AccountId> = history.iter().find_map(|e| e.account_id);
        let accepted = history.iter().find_map(|e| match &e.kind {
            EventKind::Accepted { country, segments, batch_id, .. } => {
                Some((e.at, country.clone(), *segments, *batch_id))
            }
            _ => None,
        });
        let connector = history
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Routed { connector, attempt, .. } => Some((*attempt, connector.clone())),
                _ => None,
            })
            .max()
            .map(|(_, c)| c);
        let (mut charged, mut refunded, mut wholesale) = (0i64, 0i64, 0i64);
        let mut resellers = Vec::new();
        for e in history {
            match &e.kind {
                EventKind::Charged { payer, amount, .. } if Some(*payer) == owner => charged += amount,
                EventKind::Charged { payer, amount, .. } => {
                    wholesale += amount;
                    resellers.push(*payer);
                }
                EventKind::Refunded { payer, amount, .. } if Some(*payer) == owner => refunded += amount,
                EventKind::Refunded { amount, .. } => wholesale -= amount,
                _ => {}
            }
        }
        let submitted_at =
            history.iter().filter(|e| matches!(e.kind, EventKind::SubmittedToSmsc { .. })).map(|e| e.at).min();
        let ended = ended_at(history);
        let delivered = ended.filter(|_| status == Some(MessageStatus::Delivered));
        out.messages.push(vec![
            some(id),
            owner.map(|a| a.to_string()),
            resellers.iter().min().map(ToString::to_string),
            accepted.as_ref().and_then(|a| a.3).map(|b| b.to_string()),
            accepted.as_ref().and_then(|a| a.1.clone()),
            connector.clone(),
            accepted.as_ref().map(|a| a.2.to_string()),
            status.map(|s| s.as_str().to_owned()),
            some(charged),
            some(refunded),
            some(wholesale),
            ts(accepted.as_ref().map(|a| a.0)),
            ts(submitted_at),
            ts(delivered),
            ts(ended),
        ]);
        if let (Some((at, country, segments, batch)), Some(status), Some(owner)) = (&accepted, status, owner) {
            let key = [
                at.date_naive().format("%Y-%m-%d").to_string(),
                owner.to_string(),
                country.clone().unwrap_or_default(),
                connector.clone().unwrap_or_default(),
                status.as_str().to_owned(),
            ];
            let bucket = stats.entry(key).or_default();
            bucket[0] += 1;
            bucket[1] += i64::from(*segments);
            bucket[2] += charged - refunded;
            if let Some(batch) = batch {
                let entry = batches.entry(batch.to_string()).or_insert_with(|| (owner.to_string(), HashMap::new()));
                *entry.1.entry(status.as_str()).or_default() += 1;
            }
        }
    }
    for (key, [messages, segments, revenue]) in stats {
        let mut row: Vec<Option<String>> = key.into_iter().map(Some).collect();
        row.extend([some(messages), some(segments), some(revenue)]);
        out.daily_stats.push(row);
    }
    for (batch, (account, counts)) in batches {
        let mut row = vec![Some(batch), Some(account), some(counts.values().sum::<i64>())];
        for status in crate::model::BATCH_STATUSES {
            row.push(some(counts.get(status.as_str()).copied().unwrap_or(0)));
        }
        out.batches.push(row);
    }
    for (id, history) in &inbound {
        let received = history.iter().find_map(|e| match &e.kind {
            EventKind::InboundReceived { from, .. } => Some((e.at, from.clone())),
            _ => None,
        });
        let reply_to = history.iter().find_map(|e| match &e.kind {
            EventKind::ReplyMatched { outbound_message_id } => Some(outbound_message_id.to_string()),
            _ => None,
        });
        let opt = history.iter().find_map(|e| match &e.kind {
            EventKind::OptedOut { keyword, .. } => Some(("opted_out".to_owned(), keyword.clone())),
            EventKind::OptedIn { keyword, .. } => Some(("opted_in".to_owned(), keyword.clone())),
            _ => None,
        });
        out.inbound.push(vec![
            some(id),
            history.iter().find_map(|e| e.account_id).map(|a| a.to_string()),
            received.as_ref().map(|r| r.1.clone()),
            reply_to,
            opt.as_ref().map(|o| o.0.clone()),
            opt.map(|o| o.1),
            ts(received.map(|r| r.0)),
        ]);
    }
    for rows in [&mut out.messages, &mut out.daily_stats, &mut out.batches, &mut out.inbound] {
        rows.sort();
    }
    out
}

/// The store's tables in [`Expected`]'s shape.
pub async fn actual(store: &ReportStore) -> Expected {
    let (messages, stats, batches, inbound) = match store {
        ReportStore::Sqlite(_) => (
            "SELECT message_id, account_id, reseller_id, batch_id, country, connector, CAST(segments AS TEXT), status, \
             CAST(charged AS TEXT), CAST(refunded AS TEXT), CAST(wholesale AS TEXT), accepted_at, submitted_at, \
             delivered_at, ended_at FROM messages"
                .to_owned(),
            "SELECT day, account_id, country, connector, status, CAST(messages AS TEXT), CAST(segments AS TEXT), \
             CAST(revenue AS TEXT) FROM daily_stats"
                .to_owned(),
            "SELECT batch_id, account_id, CAST(messages AS TEXT), CAST(accepted AS TEXT), CAST(scheduled AS TEXT), \
             CAST(routed AS TEXT), CAST(submitted AS TEXT), CAST(delivered AS TEXT), CAST(undeliverable AS TEXT), \
             CAST(expired AS TEXT), CAST(rejected AS TEXT), CAST(failed AS TEXT), CAST(cancelled AS TEXT) FROM batches"
                .to_owned(),
            "SELECT message_id, account_id, from_number, reply_to, opt, keyword, received_at FROM inbound_messages"
                .to_owned(),
        ),
        ReportStore::Postgres(_) => (
            format!(
                "SELECT message_id::text, account_id::text, reseller_id::text, batch_id::text, country, connector, \
                 segments::text, status, charged::text, refunded::text, wholesale::text, {}, {}, {}, {} FROM messages",
                pg_ts("accepted_at"),
                pg_ts("submitted_at"),
                pg_ts("delivered_at"),
                pg_ts("ended_at")
            ),
            "SELECT day::text, account_id::text, country, connector, status, messages::text, segments::text, \
             revenue::text FROM daily_stats"
                .to_owned(),
            "SELECT batch_id::text, account_id::text, messages::text, accepted::text, scheduled::text, routed::text, \
             submitted::text, delivered::text, undeliverable::text, expired::text, rejected::text, failed::text, \
             cancelled::text FROM batches"
                .to_owned(),
            format!(
                "SELECT message_id::text, account_id::text, from_number, reply_to::text, opt, keyword, {} \
                 FROM inbound_messages",
                pg_ts("received_at")
            ),
        ),
    };
    Expected {
        messages: text_rows(store, &messages).await,
        daily_stats: text_rows(store, &stats).await,
        batches: text_rows(store, &batches).await,
        inbound: text_rows(store, &inbound).await,
    }
}

fn compare(table: &str, actual: &Rows, expected: &Rows) {
    if let Some((a, e)) = actual.iter().zip(expected).find(|(a, e)| a != e) {
        panic!("{table} differs from the fold of the events:\n  stored:   {a:?}\n  expected: {e:?}");
    }
    assert_eq!(actual.len(), expected.len(), "{table}: {} rows stored, {} expected", actual.len(), expected.len());
}

/// Asserts the store holds exactly what the events fold to.
pub async fn assert_matches_fold(store: &ReportStore, events: &[Event]) {
    let actual = actual(store).await;
    let expected = expected(events);
    compare("messages", &actual.messages, &expected.messages);
    compare("daily_stats", &actual.daily_stats, &expected.daily_stats);
    compare("batches", &actual.batches, &expected.batches);
    compare("inbound_messages", &actual.inbound, &expected.inbound);
}
