//! Conformance tests of accounts, keys, idempotency records and the message index.

use chrono::TimeDelta;
use tern_core::{AccountId, BatchId, Event, EventKind, MessageId, MessageStatus, PricePlan};

use super::{accepted, join, now_ms};
use crate::{
    Account, ApiKeyRecord, BatchRecord, Begin, IdempotencyRecord, MessageQuery, NewEntry, QueueError, RateLimits, Store,
};

pub(crate) fn account(name: &str, parent: Option<AccountId>) -> Account {
    Account {
        id: AccountId::new(),
        name: name.into(),
        parent_id: parent,
        currency: "EUR".into(),
        balance: 0,
        credit_limit: 500,
        price_plan: Some(PricePlan { default: Some(7), ..PricePlan::default() }),
        limits: RateLimits { requests_per_second: 10, messages_per_second: 100 },
        callback_url: Some("https://example.com/cb".into()),
        inbound_url: None,
        webhook_secret: None,
        suspended: false,
        created_at: now_ms(),
    }
}

/// Accounts round-trip every field, start at a zero balance whatever the
/// caller says, list in id order (all, or one reseller's children, with an
/// `after` cursor), refuse a duplicate id, and suspend and reinstate.
pub async fn accounts_are_created_listed_and_suspended(store: &Store) {
    let accounts = store.accounts();
    let reseller = account("reseller", None);
    accounts.create_account(&reseller).await.unwrap();
    let mut child = account("child", Some(reseller.id));
    child.balance = 1_000_000;
    accounts.create_account(&child).await.unwrap();
    let other = account("other", None);
    accounts.create_account(&other).await.unwrap();

    let got = accounts.account(child.id).await.unwrap().unwrap();
    assert_eq!(got, Account { balance: 0, ..child.clone() }, "balance starts at zero");
    assert!(accounts.account(AccountId::new()).await.unwrap().is_none());
    let err = accounts.create_account(&reseller).await.unwrap_err();
    assert!(matches!(err, QueueError::Invalid(_)), "duplicate id: {err}");

    let all: Vec<AccountId> = accounts.list_accounts(None, None, 10).await.unwrap().iter().map(|a| a.id).collect();
    assert_eq!(all, [reseller.id, child.id, other.id]);
    let page: Vec<AccountId> =
        accounts.list_accounts(None, Some(reseller.id), 1).await.unwrap().iter().map(|a| a.id).collect();
    assert_eq!(page, [child.id]);
    let children = accounts.list_accounts(Some(reseller.id), None, 10).await.unwrap();
    assert_eq!(children.iter().map(|a| a.id).collect::<Vec<_>>(), [child.id]);

    let suspended = accounts.set_suspended(child.id, true).await.unwrap().unwrap();
    assert!(suspended.suspended);
    assert!(accounts.account(child.id).await.unwrap().unwrap().suspended);
    assert!(!accounts.set_suspended(child.id, false).await.unwrap().unwrap().suspended);
    assert!(accounts.set_suspended(AccountId::new(), true).await.unwrap().is_none());
}

/// A top-up adds its amount once per reference; an unknown account is `None`.
pub async fn top_ups_apply_once_per_reference(store: &Store) {
    let accounts = store.accounts();
    let a = account("a", None);
    accounts.create_account(&a).await.unwrap();
    let first = accounts.top_up(a.id, 2_500, "t1", now_ms()).await.unwrap().unwrap();
    assert_eq!((first.balance, first.duplicate), (2_500, false));
    let again = accounts.top_up(a.id, 2_500, "t1", now_ms()).await.unwrap().unwrap();
    assert_eq!((again.balance, again.duplicate), (2_500, true), "same reference, no second credit");
    let second = accounts.top_up(a.id, 100, "t2", now_ms()).await.unwrap().unwrap();
    assert_eq!(second.balance, 2_600);
    assert_eq!(accounts.account(a.id).await.unwrap().unwrap().balance, 2_600);
    assert!(accounts.top_up(AccountId::new(), 1, "t3", now_ms()).await.unwrap().is_none());
}

/// Keys are found by id, listed per account oldest first, and revoked once
/// (the first revocation time stays); revoking another account's key fails.
pub async fn api_keys_are_found_listed_and_revoked(store: &Store) {
    let accounts = store.accounts();
    let (a, b) = (account("a", None), account("b", None));
    accounts.create_account(&a).await.unwrap();
    accounts.create_account(&b).await.unwrap();
    let key = |id: &str, owner: AccountId, offset: i64| ApiKeyRecord {
        id: id.into(),
        account_id: owner,
        secret_hash: format!("hash-of-{id}"),
        name: Some(format!("key {id}")),
        created_at: now_ms() + TimeDelta::milliseconds(offset),
        revoked_at: None,
    };
    let (k1, k2, k3) = (key("k1", a.id, 0), key("k2", a.id, 5), key("k3", b.id, 0));
    for k in [&k1, &k2, &k3] {
        accounts.create_key(k).await.unwrap();
    }
    assert_eq!(accounts.key("k2").await.unwrap().unwrap(), k2);
    assert!(accounts.key("nope").await.unwrap().is_none());
    assert_eq!(accounts.list_keys(a.id).await.unwrap(), [k1.clone(), k2.clone()]);

    assert!(!accounts.revoke_key(a.id, "k3", now_ms()).await.unwrap(), "not a's key");
    assert!(accounts.key("k3").await.unwrap().unwrap().revoked_at.is_none());
    let at = now_ms();
    assert!(accounts.revoke_key(a.id, "k1", at).await.unwrap());
    assert!(accounts.revoke_key(a.id, "k1", at + TimeDelta::seconds(9)).await.unwrap());
    assert_eq!(accounts.key("k1").await.unwrap().unwrap().revoked_at, Some(at), "the first revocation stays");
}

/// The first use of a key starts the request; later uses get the record
/// (with the response once finished); keys are per account; a record older
/// than the expiry is replaced; purge removes old records.
pub async fn idempotency_records_replay_and_expire(store: &Store) {
    let accounts = store.accounts();
    let (a, b) = (AccountId::new(), AccountId::new());
    let now = now_ms();
    let record = |hash: &str, at| IdempotencyRecord {
        request_hash: hash.into(),
        plan: format!("plan-{hash}"),
        response: None,
        created_at: at,
    };
    let day_ago = now - TimeDelta::hours(24);
    assert_eq!(accounts.find_request(a, "k", day_ago).await.unwrap(), None, "finding writes nothing");
    assert_eq!(accounts.begin_request(a, "k", &record("h1", now), day_ago).await.unwrap(), Begin::Started);
    assert_eq!(accounts.find_request(a, "k", day_ago).await.unwrap(), Some(record("h1", now)));
    assert_eq!(accounts.find_request(b, "k", day_ago).await.unwrap(), None, "keys are per account");
    assert_eq!(
        accounts.begin_request(a, "k", &record("h2", now), day_ago).await.unwrap(),
        Begin::Existing(record("h1", now)),
        "in flight: the first record, not replaced"
    );
    assert_eq!(accounts.begin_request(b, "k", &record("h3", now), day_ago).await.unwrap(), Begin::Started);
    accounts.finish_request(a, "k", 202, "{\"id\":1}").await.unwrap();
    let finished = IdempotencyRecord { response: Some((202, "{\"id\":1}".into())), ..record("h1", now) };
    assert_eq!(accounts.find_request(a, "k", day_ago).await.unwrap(), Some(finished.clone()));
    assert_eq!(accounts.find_request(a, "k", now + TimeDelta::seconds(1)).await.unwrap(), None, "expired");
    assert_eq!(accounts.begin_request(a, "k", &record("h1", now), day_ago).await.unwrap(), Begin::Existing(finished));
    let later = now + TimeDelta::hours(25);
    assert_eq!(
        accounts.begin_request(a, "k", &record("h4", later), later - TimeDelta::hours(24)).await.unwrap(),
        Begin::Started,
        "an expired record is replaced"
    );
    assert_eq!(
        accounts.begin_request(a, "k", &record("h5", later), later - TimeDelta::hours(24)).await.unwrap(),
        Begin::Existing(record("h4", later))
    );
    assert_eq!(accounts.purge_requests(now + TimeDelta::hours(1)).await.unwrap(), 1, "b's record is old");
    assert_eq!(accounts.begin_request(b, "k", &record("h6", now), day_ago).await.unwrap(), Begin::Started);
}

fn in_batch(event: &mut Event, batch: BatchId, to: &str) {
    if let EventKind::Accepted { batch_id, to: dest, .. } = &mut event.kind {
        *batch_id = Some(batch);
        *dest = to.into();
    }
}

/// Accepting indexes each message with its owner, batch, recipient and
/// status (scheduled when a `Scheduled` event comes with it); listing is
/// per account, newest first, filtered and paged by cursor; `record`
/// appends events and moves the indexed status; batch counts follow.
pub async fn accepted_messages_are_indexed_and_record_refreshes_their_status(store: &Store) {
    let (owner, stranger, batch) = (AccountId::new(), AccountId::new(), BatchId::new());
    let ids: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
    let mut events = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut e = accepted(*id, if i == 4 { stranger } else { owner });
        if i < 3 {
            in_batch(&mut e, batch, if i == 0 { "+447400000001" } else { "+447400000002" });
        }
        events.push(e);
    }
    let send_at = now_ms() + TimeDelta::hours(1);
    events.push(Event::new(ids[3], Some(owner), now_ms(), EventKind::Scheduled { send_at }));
    let entries = ids.iter().map(|id| NewEntry::new(id.to_string(), "job")).collect();
    store.accept(&events, "mt", entries).await.unwrap();
    let record = BatchRecord {
        batch_id: batch,
        account_id: owner,
        recipients: 4,
        accepted: 3,
        invalid: 1,
        created_at: now_ms(),
    };
    store.messages().put_batch(&record).await.unwrap();
    store.messages().put_batch(&BatchRecord { accepted: 99, ..record.clone() }).await.unwrap();
    assert_eq!(store.messages().batch(batch).await.unwrap(), Some(record), "the first batch record stays");
    assert!(store.messages().batch(BatchId::new()).await.unwrap().is_none());

    let messages = store.messages();
    let query = MessageQuery::new(owner, 10);
    // Follows `next` to the end, as clients do: a backend may return short pages.
    let listed = |q: MessageQuery| async move {
        let mut ids = Vec::new();
        let mut page_query = q.clone();
        loop {
            let page = store.messages().list(&page_query).await.unwrap();
            assert!(page.rows.len() <= q.limit);
            ids.extend(page.rows.iter().map(|m| m.message_id));
            match page.next {
                Some(next) if ids.len() < q.limit => page_query.before = Some(next),
                _ => break,
            }
            page_query.limit = q.limit - ids.len();
        }
        ids
    };
    assert_eq!(listed(query.clone()).await, [ids[3], ids[2], ids[1], ids[0]], "owner's, newest first");
    assert_eq!(listed(MessageQuery { account_id: stranger, ..query.clone() }).await, [ids[4]]);
    assert_eq!(listed(MessageQuery { limit: 2, ..query.clone() }).await, [ids[3], ids[2]]);
    let first = messages.list(&MessageQuery { limit: 2, ..query.clone() }).await.unwrap();
    assert_eq!(first.next, Some(ids[2]), "a full page points past its last row");
    let last = messages.list(&MessageQuery { before: first.next, ..query.clone() }).await.unwrap();
    assert_eq!((last.rows.len(), last.next), (2, None), "the last page has no next");
    // A scan bound of 1 may cut pages short; following `next` still finds everything.
    let recipient = MessageQuery { to: Some("+447400000002".into()), scan_limit: 1, ..query.clone() };
    assert_eq!(listed(recipient).await, [ids[2], ids[1]]);
    assert_eq!(listed(MessageQuery { before: Some(ids[2]), ..query.clone() }).await, [ids[1], ids[0]]);
    assert_eq!(listed(MessageQuery { batch_id: Some(batch), ..query.clone() }).await, [ids[2], ids[1], ids[0]]);
    assert_eq!(listed(MessageQuery { to: Some("+447400000001".into()), ..query.clone() }).await, [ids[0]]);
    let scheduled = MessageQuery { status: Some(MessageStatus::Scheduled), ..query.clone() };
    assert_eq!(listed(scheduled).await, [ids[3]]);
    let future = now_ms() + TimeDelta::hours(2);
    assert!(listed(MessageQuery { since: Some(future), ..query.clone() }).await.is_empty());
    assert_eq!(listed(MessageQuery { until: Some(future), limit: 1, ..query.clone() }).await, [ids[3]]);
    let past = now_ms() - TimeDelta::hours(2);
    assert!(listed(MessageQuery { until: Some(past), ..query.clone() }).await.is_empty());
    assert_eq!(listed(MessageQuery { since: Some(past), ..query.clone() }).await.len(), 4);

    let row = messages.get(owner, ids[0]).await.unwrap().unwrap();
    assert!(messages.get(stranger, ids[0]).await.unwrap().is_none(), "another account's message");
    assert_eq!((row.account_id, row.batch_id, row.status), (owner, Some(batch), MessageStatus::Accepted));
    assert_eq!(row.client_ref.as_deref(), Some("ref-1"));
    assert_eq!(messages.get(owner, ids[3]).await.unwrap().unwrap().status, MessageStatus::Scheduled);
    assert!(messages.get(owner, MessageId::new()).await.unwrap().is_none());

    let cancel = Event::new(ids[1], Some(owner), now_ms(), EventKind::Cancelled { by: "api".into() });
    assert_eq!(store.record(std::slice::from_ref(&cancel)).await.unwrap(), 1);
    assert_eq!(store.record(&[cancel]).await.unwrap(), 0, "recorded once");
    assert_eq!(messages.get(owner, ids[1]).await.unwrap().unwrap().status, MessageStatus::Cancelled);
    let cancelled = MessageQuery { status: Some(MessageStatus::Cancelled), ..query.clone() };
    assert_eq!(listed(cancelled).await, [ids[1]]);
    let mut counts = messages.batch_counts(batch).await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(counts, [(MessageStatus::Accepted, 2), (MessageStatus::Cancelled, 1)]);
    assert!(messages.batch_counts(BatchId::new()).await.unwrap().is_empty());
}

/// Recorders racing on the same messages (the receipts of two segments
/// arriving on two binds at once) leave each message's indexed status at
/// the fold of its whole journal.
pub async fn racing_records_leave_the_index_at_the_fold_of_the_journal(store: &Store) {
    let owner = AccountId::new();
    let ids: Vec<MessageId> = (0..40).map(|_| MessageId::new()).collect();
    let mut events = Vec::new();
    for id in &ids {
        let mut e = accepted(*id, owner);
        if let EventKind::Accepted { segments, .. } = &mut e.kind {
            *segments = 2;
        }
        events.push(e);
    }
    let entries = ids.iter().map(|id| NewEntry::new(id.to_string(), "job")).collect();
    store.accept(&events, "mt", entries).await.unwrap();
    let fact = |id: MessageId, kind: EventKind| Event::new(id, Some(owner), now_ms(), kind);
    let submitted: Vec<Event> = ids
        .iter()
        .flat_map(|id| {
            (1..=2)
                .map(move |segment| EventKind::SubmittedToSmsc {
                    connector: "c1".into(),
                    segment,
                    smsc_message_id: format!("{id}/{segment}"),
                })
                .map(move |kind| fact(*id, kind))
        })
        .collect();
    store.record(&submitted).await.unwrap();
    let report = |segment: u16| -> Vec<Event> {
        ids.iter()
            .map(|id| {
                let kind = EventKind::DeliveryReport {
                    segment,
                    smsc_message_id: format!("{id}/{segment}"),
                    state: tern_core::DeliveryState::Delivered,
                    error_code: None,
                };
                fact(*id, kind)
            })
            .collect()
    };
    // Each message's two receipts are recorded at the same moment, one
    // message at a time, so the two recorders overlap on it.
    let (first, second) = (report(1), report(2));
    for (a, b) in first.into_iter().zip(second) {
        let (left, right) = (store.clone(), store.clone());
        let one = tokio::spawn(async move { left.record(&[a]).await.unwrap() });
        let two = tokio::spawn(async move { right.record(&[b]).await.unwrap() });
        join(one).await;
        join(two).await;
    }
    let keys: Vec<(AccountId, MessageId)> = ids.iter().map(|id| (owner, *id)).collect();
    let statuses = store.messages().statuses(&keys).await.unwrap();
    assert_eq!(statuses.len(), ids.len());
    for (id, status) in statuses {
        let journal = MessageStatus::fold(&store.journal().message_events(id).await.unwrap());
        assert_eq!(journal, Some(MessageStatus::Delivered));
        assert_eq!(status, MessageStatus::Delivered, "{id}: the index says {status:?}");
    }
    // Recording what is already journaled changes nothing but still refreshes.
    assert_eq!(store.record(&submitted).await.unwrap(), 0);
}
