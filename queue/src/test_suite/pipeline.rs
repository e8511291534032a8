//! Conformance tests of what the pipeline stores besides messages: charges
//! and refunds, account updates, opt-outs, conversations, inbound messages,
//! leases and settings, and the index and journal reads the scheduler and
//! the stages use (`statuses`, `expirable`, `messages_events`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tern_core::{AccountId, DeliveryState, Event, EventKind, MessageId, MessageStatus, PricePlan};
use tokio::time::{Instant, sleep_until};

use super::records::account;
use super::{MARGIN, accepted, now_ms, routed};
use crate::{AccountUpdate, Charge, ChargeOutcome, Conversation, Debit, InboundRow, NewEntry, RateLimits, Store};

// ---------------------------------------------------------------- helpers

/// Creates an account with this currency, credit limit and opening balance.
async fn open(store: &Store, currency: &str, credit_limit: i64, balance: i64) -> AccountId {
    let mut a = account(currency, None);
    a.currency = currency.into();
    a.credit_limit = credit_limit;
    store.accounts().create_account(&a).await.unwrap();
    if balance != 0 {
        store.accounts().top_up(a.id, balance, &format!("opening-{}", a.id), now_ms()).await.unwrap().unwrap();
    }
    a.id
}

fn debit(account_id: AccountId, amount: i64, currency: &str) -> Debit {
    Debit { account_id, amount, currency: currency.into() }
}

fn charge(message_id: MessageId, debits: Vec<Debit>) -> Charge {
    Charge { message_id, debits, at: now_ms() }
}

async fn balance(store: &Store, id: AccountId) -> i64 {
    store.accounts().account(id).await.unwrap().unwrap().balance
}

/// Debits in the order a recorded charge reports them: all were made at the
/// same time, so by ledger reference, that is by account id.
fn recorded(mut debits: Vec<Debit>) -> Vec<Debit> {
    debits.sort_by_key(|d| d.account_id.to_string());
    debits
}

// ---------------------------------------------------------------- charges

/// A charge debits every payer once; charging the message again (alone, in
/// a later batch, even with other amounts) changes nothing and reports the
/// debits recorded the first time.
pub async fn charges_apply_once_per_message(store: &Store) {
    let accounts = store.accounts();
    let (sub, reseller) = (open(store, "EUR", 0, 1_000).await, open(store, "USD", 0, 1_000).await);
    let m = MessageId::new();
    let debits = vec![debit(sub, 70, "EUR"), debit(reseller, 40, "USD")];
    assert!(accounts.charge(&[]).await.unwrap().is_empty());
    assert_eq!(accounts.charge(&[charge(m, debits.clone())]).await.unwrap(), [ChargeOutcome::Charged]);
    assert_eq!((balance(store, sub).await, balance(store, reseller).await), (930, 960));

    let again = charge(m, vec![debit(sub, 1, "EUR")]);
    let already = ChargeOutcome::AlreadyCharged(recorded(debits));
    assert_eq!(accounts.charge(std::slice::from_ref(&again)).await.unwrap(), std::slice::from_ref(&already));
    let other = MessageId::new();
    let outcomes = accounts.charge(&[again, charge(other, vec![debit(sub, 30, "EUR")])]).await.unwrap();
    assert_eq!(outcomes, [already, ChargeOutcome::Charged], "one outcome per charge, in order");
    assert_eq!((balance(store, sub).await, balance(store, reseller).await), (900, 960));
}

/// When one payer cannot pay, no payer is debited and nothing is recorded:
/// the same charge goes through once the payer has the funds.
pub async fn a_charge_is_all_or_nothing_across_payers(store: &Store) {
    let accounts = store.accounts();
    let (sub, reseller) = (open(store, "EUR", 0, 1_000).await, open(store, "USD", 0, 10).await);
    let m = MessageId::new();
    let both = charge(m, vec![debit(sub, 70, "EUR"), debit(reseller, 40, "USD")]);
    let short = ChargeOutcome::Insufficient { account_id: reseller };
    assert_eq!(accounts.charge(std::slice::from_ref(&both)).await.unwrap(), [short]);
    assert_eq!((balance(store, sub).await, balance(store, reseller).await), (1_000, 10), "nobody was debited");
    assert!(accounts.refund(m, now_ms()).await.unwrap().is_empty(), "a refused charge leaves nothing to refund");

    accounts.top_up(reseller, 30, "more", now_ms()).await.unwrap().unwrap();
    assert_eq!(accounts.charge(&[both]).await.unwrap(), [ChargeOutcome::Charged], "a refused charge can be retried");
    assert_eq!((balance(store, sub).await, balance(store, reseller).await), (930, 0));

    let first_short = charge(MessageId::new(), vec![debit(reseller, 1, "USD"), debit(sub, 1, "EUR")]);
    assert_eq!(accounts.charge(&[first_short]).await.unwrap(), [ChargeOutcome::Insufficient { account_id: reseller }]);
    assert_eq!((balance(store, sub).await, balance(store, reseller).await), (930, 0));
}

/// A debit may take a balance down to exactly minus the credit limit, not
/// one unit further; a negative credit limit counts as none; a negative
/// debit is refused.
pub async fn debits_may_reach_minus_the_credit_limit_and_no_further(store: &Store) {
    let accounts = store.accounts();
    let outcome = |account: AccountId, amount: i64| async move {
        let one = charge(MessageId::new(), vec![debit(account, amount, "EUR")]);
        let outcomes = store.accounts().charge(&[one]).await.unwrap();
        assert_eq!(outcomes.len(), 1);
        outcomes.into_iter().next().unwrap()
    };
    let a = open(store, "EUR", 500, 0).await;
    assert_eq!(outcome(a, 501).await, ChargeOutcome::Insufficient { account_id: a });
    assert_eq!(outcome(a, 500).await, ChargeOutcome::Charged);
    assert_eq!(balance(store, a).await, -500);
    assert_eq!(outcome(a, 1).await, ChargeOutcome::Insufficient { account_id: a });
    assert_eq!(outcome(a, 0).await, ChargeOutcome::Charged, "a free message fits at the limit");
    assert_eq!(outcome(a, -5).await, ChargeOutcome::Insufficient { account_id: a }, "negative debit");
    assert_eq!(balance(store, a).await, -500);

    let b = open(store, "EUR", -100, 50).await;
    assert_eq!(outcome(b, 51).await, ChargeOutcome::Insufficient { account_id: b });
    assert_eq!(outcome(b, 50).await, ChargeOutcome::Charged);
    assert_eq!(outcome(b, 1).await, ChargeOutcome::Insufficient { account_id: b }, "a negative limit is none");
    assert_eq!(balance(store, b).await, 0);
    assert_eq!(accounts.account(b).await.unwrap().unwrap().credit_limit, -100, "the stored limit stays as set");
}

/// Charges of one call are decided in order, each on the balances the
/// earlier ones left, and a refused charge leaves every payer as it was.
pub async fn charges_in_one_call_see_the_earlier_ones(store: &Store) {
    let (a, b) = (open(store, "EUR", 0, 100).await, open(store, "EUR", 0, 100).await);
    let calls = [
        charge(MessageId::new(), vec![debit(a, 60, "EUR")]),
        charge(MessageId::new(), vec![debit(b, 10, "EUR"), debit(a, 50, "EUR")]),
        charge(MessageId::new(), vec![debit(a, 40, "EUR")]),
        charge(MessageId::new(), vec![debit(b, 100, "EUR")]),
        charge(MessageId::new(), vec![debit(a, 1, "EUR")]),
    ];
    let outcomes = store.accounts().charge(&calls).await.unwrap();
    assert_eq!(
        outcomes,
        [
            ChargeOutcome::Charged,
            ChargeOutcome::Insufficient { account_id: a },
            ChargeOutcome::Charged,
            ChargeOutcome::Charged,
            ChargeOutcome::Insufficient { account_id: a },
        ]
    );
    assert_eq!(
        (balance(store, a).await, balance(store, b).await),
        (0, 0),
        "b's debit in the refused charge was undone"
    );
}

/// A charge naming an account that does not exist changes nothing and
/// leaves no record.
pub async fn charging_an_unknown_account_changes_nothing(store: &Store) {
    let accounts = store.accounts();
    let (a, ghost) = (open(store, "EUR", 0, 100).await, AccountId::new());
    let m = MessageId::new();
    let unknown = ChargeOutcome::UnknownAccount { account_id: ghost };
    let known_first = charge(m, vec![debit(a, 10, "EUR"), debit(ghost, 5, "EUR")]);
    assert_eq!(accounts.charge(&[known_first]).await.unwrap(), std::slice::from_ref(&unknown));
    assert_eq!(
        accounts.charge(&[charge(m, vec![debit(ghost, 5, "EUR"), debit(a, 10, "EUR")])]).await.unwrap(),
        [unknown]
    );
    assert_eq!(balance(store, a).await, 100);
    assert_eq!(accounts.charge(&[charge(m, vec![debit(a, 10, "EUR")])]).await.unwrap(), [ChargeOutcome::Charged]);
    assert_eq!(balance(store, a).await, 90);
}

/// A refund credits each recorded debit back exactly once and returns what
/// it credited; it does not make the message chargeable again.
pub async fn refunds_give_each_debit_back_once(store: &Store) {
    let accounts = store.accounts();
    let (sub, reseller) = (open(store, "EUR", 0, 1_000).await, open(store, "USD", 0, 1_000).await);
    let m = MessageId::new();
    let debits = vec![debit(sub, 70, "EUR"), debit(reseller, 40, "USD")];
    assert!(accounts.refund(m, now_ms()).await.unwrap().is_empty(), "never charged");
    assert_eq!(accounts.charge(&[charge(m, debits.clone())]).await.unwrap(), [ChargeOutcome::Charged]);
    assert_eq!(recorded(accounts.refund(m, now_ms()).await.unwrap()), recorded(debits.clone()));
    assert_eq!((balance(store, sub).await, balance(store, reseller).await), (1_000, 1_000));
    assert!(accounts.refund(m, now_ms()).await.unwrap().is_empty(), "refunded already");
    assert_eq!((balance(store, sub).await, balance(store, reseller).await), (1_000, 1_000));
    assert_eq!(
        accounts.charge(&[charge(m, debits.clone())]).await.unwrap(),
        [ChargeOutcome::AlreadyCharged(recorded(debits))],
        "a refunded message stays charged"
    );
    assert_eq!((balance(store, sub).await, balance(store, reseller).await), (1_000, 1_000));
    assert!(accounts.refund(MessageId::new(), now_ms()).await.unwrap().is_empty());
}

/// A charge that names one payer twice is an error and changes nothing
/// (both debits would share one ledger reference).
pub async fn a_charge_naming_one_payer_twice_is_refused(store: &Store) {
    let accounts = store.accounts();
    let a = open(store, "EUR", 0, 100).await;
    let m = MessageId::new();
    let twice = charge(m, vec![debit(a, 10, "EUR"), debit(a, 20, "EUR")]);
    assert!(accounts.charge(&[twice]).await.is_err());
    assert_eq!(balance(store, a).await, 100);
    assert_eq!(accounts.charge(&[charge(m, vec![debit(a, 10, "EUR")])]).await.unwrap(), [ChargeOutcome::Charged]);
    assert_eq!(balance(store, a).await, 90);
}

// ---------------------------------------------------------------- account updates

/// An update changes the fields it names (clearing those set to `Some(None)`)
/// and nothing else, not the balance nor the suspension; the new credit
/// limit is the one charges use. Unknown accounts are `None`.
pub async fn account_updates_change_only_what_they_name(store: &Store) {
    let accounts = store.accounts();
    let original = account("updated", None);
    accounts.create_account(&original).await.unwrap();
    accounts.top_up(original.id, 250, "t", now_ms()).await.unwrap().unwrap();
    accounts.set_suspended(original.id, true).await.unwrap().unwrap();
    let stored = accounts.account(original.id).await.unwrap().unwrap();

    let unchanged = accounts.update_account(original.id, &AccountUpdate::default()).await.unwrap();
    assert_eq!(unchanged.as_ref(), Some(&stored), "an empty update changes nothing");

    let update = AccountUpdate {
        callback_url: Some(None),
        inbound_url: Some(Some("https://example.com/in".into())),
        webhook_secret: Some("whsec".into()),
        credit_limit: Some(900),
        ..AccountUpdate::default()
    };
    let mut expected = stored.clone();
    update.apply(&mut expected);
    assert_eq!(expected.balance, 250);
    assert!(expected.suspended);
    let updated = accounts.update_account(original.id, &update).await.unwrap().unwrap();
    assert_eq!(updated, expected);
    assert_eq!(updated.callback_url, None);
    assert_eq!(updated.price_plan, original.price_plan, "fields not named stay");
    assert_eq!(accounts.account(original.id).await.unwrap().unwrap(), expected);

    let limits = RateLimits { requests_per_second: 1, messages_per_second: 2 };
    let plan = PricePlan { default: Some(3), ..PricePlan::default() };
    let second =
        AccountUpdate { price_plan: Some(Some(plan.clone())), limits: Some(limits), ..AccountUpdate::default() };
    let updated = accounts.update_account(original.id, &second).await.unwrap().unwrap();
    assert_eq!((updated.price_plan, updated.limits), (Some(plan), limits));
    assert_eq!(updated.inbound_url.as_deref(), Some("https://example.com/in"), "the first update stays");
    let cleared = AccountUpdate { price_plan: Some(None), ..AccountUpdate::default() };
    assert_eq!(accounts.update_account(original.id, &cleared).await.unwrap().unwrap().price_plan, None);

    let limit_charge = charge(MessageId::new(), vec![debit(original.id, 1_150, "EUR")]);
    assert_eq!(accounts.charge(&[limit_charge]).await.unwrap(), [ChargeOutcome::Charged], "250 + the new 900");
    assert_eq!(balance(store, original.id).await, -900);
    assert!(accounts.update_account(AccountId::new(), &update).await.unwrap().is_none());
}

// ---------------------------------------------------------------- contacts

fn sorted(mut numbers: Vec<String>) -> Vec<String> {
    numbers.sort();
    numbers
}

/// Opting out and back in reports whether anything changed; `opted_out`
/// returns only the numbers opted out of that account's traffic.
pub async fn opt_outs_are_per_account_and_reversible(store: &Store) {
    let contacts = store.contacts();
    let (a, b) = (AccountId::new(), AccountId::new());
    let numbers = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    assert!(contacts.opted_out(a, &numbers(&["+441"])).await.unwrap().is_empty());
    assert!(contacts.set_opt_out(a, "+441", true, now_ms()).await.unwrap());
    assert!(!contacts.set_opt_out(a, "+441", true, now_ms()).await.unwrap(), "already out");
    assert_eq!(contacts.opted_out(a, &numbers(&["+441", "+442"])).await.unwrap(), ["+441"]);
    assert!(contacts.opted_out(b, &numbers(&["+441"])).await.unwrap().is_empty(), "opt-outs are per account");
    assert!(contacts.set_opt_out(a, "+442", true, now_ms()).await.unwrap());
    let out = contacts.opted_out(a, &numbers(&["+443", "+442", "+441"])).await.unwrap();
    assert_eq!(sorted(out), ["+441", "+442"]);
    assert!(contacts.set_opt_out(a, "+441", false, now_ms()).await.unwrap(), "back in");
    assert!(!contacts.set_opt_out(a, "+441", false, now_ms()).await.unwrap(), "already in");
    assert!(!contacts.set_opt_out(b, "+442", false, now_ms()).await.unwrap(), "b never opted it out");
    assert_eq!(contacts.opted_out(a, &numbers(&["+441", "+442"])).await.unwrap(), ["+442"]);
    assert!(contacts.opted_out(a, &[]).await.unwrap().is_empty());
}

/// Per sender and handset the conversation with the latest time is kept (an
/// equal time overwrites, within a call too); it is found only at or after
/// `since`.
pub async fn the_latest_conversation_per_sender_and_handset_wins(store: &Store) {
    let contacts = store.contacts();
    let (a, b) = (AccountId::new(), AccountId::new());
    let t0 = now_ms();
    let conversation = |sender: &str, handset: &str, account_id, offset_ms: i64| Conversation {
        sender: sender.into(),
        handset: handset.into(),
        account_id,
        message_id: MessageId::new(),
        at: t0 + TimeDelta::milliseconds(offset_ms),
    };
    let latest = |sender: &'static str, since: DateTime<Utc>| async move {
        store.contacts().latest_conversation(sender, "+447700900001", since).await.unwrap()
    };
    let long_ago = t0 - TimeDelta::hours(1);
    contacts.remember_conversations(&[]).await.unwrap();
    assert_eq!(latest("Tern", long_ago).await, None);
    let first = conversation("Tern", "+447700900001", a, 0);
    contacts.remember_conversations(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(latest("Tern", long_ago).await, Some(first.clone()));

    contacts.remember_conversations(&[conversation("Tern", "+447700900001", b, -10_000)]).await.unwrap();
    assert_eq!(latest("Tern", long_ago).await, Some(first), "an older conversation does not replace a newer one");
    let newer = conversation("Tern", "+447700900001", a, 5_000);
    contacts.remember_conversations(std::slice::from_ref(&newer)).await.unwrap();
    assert_eq!(latest("Tern", long_ago).await, Some(newer));
    let tie = conversation("Tern", "+447700900001", b, 5_000);
    contacts.remember_conversations(std::slice::from_ref(&tie)).await.unwrap();
    assert_eq!(latest("Tern", long_ago).await, Some(tie), "an equal time: the later write wins");

    let (late, early) =
        (conversation("Tern", "+447700900001", a, 9_000), conversation("Tern", "+447700900001", b, 7_000));
    let other_sender = conversation("Acme", "+447700900001", b, 1_000);
    let other_handset = conversation("Tern", "+447700900002", b, 1_000);
    contacts.remember_conversations(&[late.clone(), early, other_sender.clone(), other_handset.clone()]).await.unwrap();
    assert_eq!(latest("Tern", long_ago).await, Some(late.clone()), "the latest of one call");
    let (x, y) = (conversation("Tern", "+447700900001", b, 9_000), conversation("Tern", "+447700900001", a, 9_000));
    contacts.remember_conversations(&[x, y.clone()]).await.unwrap();
    assert_eq!(latest("Tern", long_ago).await, Some(y.clone()), "on a tie within a call the later one wins");
    assert_eq!(latest("Acme", long_ago).await, Some(other_sender), "senders are kept apart");
    let handset_2 = contacts.latest_conversation("Tern", "+447700900002", long_ago).await.unwrap();
    assert_eq!(handset_2, Some(other_handset), "handsets are kept apart");

    assert_eq!(latest("Tern", y.at).await, Some(y.clone()), "since is inclusive");
    assert_eq!(latest("Tern", y.at + TimeDelta::milliseconds(1)).await, None, "too old");
    assert_eq!(contacts.latest_conversation("Nobody", "+447700900001", long_ago).await.unwrap(), None);
}

/// Inbound rows are stored once per account and message id (the first
/// stays) and listed per account, newest first, paged by an exclusive
/// `before` cursor.
pub async fn inbound_messages_list_newest_first_by_cursor(store: &Store) {
    let contacts = store.contacts();
    let (a, b) = (AccountId::new(), AccountId::new());
    let mut ids: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
    ids.sort();
    let replied = MessageId::new();
    let row = |account_id, message_id, body: &str| InboundRow {
        message_id,
        account_id,
        from: "+447700900001".into(),
        to: "+447700900999".into(),
        body: body.into(),
        connector: "smsc-a".into(),
        reply_to: (message_id == ids[1]).then_some(replied),
        received_at: now_ms(),
    };
    let rows: Vec<InboundRow> = ids.iter().map(|id| row(a, *id, &format!("body {id}"))).collect();
    contacts.put_inbound(&[]).await.unwrap();
    contacts.put_inbound(&rows[..3]).await.unwrap();
    let again = vec![row(a, ids[0], "a second copy"), rows[3].clone(), rows[4].clone(), row(b, ids[0], "b's")];
    contacts.put_inbound(&again).await.unwrap();

    let newest_first: Vec<InboundRow> = rows.iter().rev().cloned().collect();
    assert_eq!(contacts.list_inbound(a, None, 10).await.unwrap(), newest_first, "the first copy stays");
    assert_eq!(contacts.list_inbound(a, None, 2).await.unwrap(), newest_first[..2]);
    assert_eq!(contacts.list_inbound(a, Some(ids[3]), 2).await.unwrap(), [rows[2].clone(), rows[1].clone()]);
    assert_eq!(contacts.list_inbound(a, Some(ids[1]), 10).await.unwrap(), [rows[0].clone()]);
    assert!(contacts.list_inbound(a, Some(ids[0]), 10).await.unwrap().is_empty());
    let bs = contacts.list_inbound(b, None, 10).await.unwrap();
    assert_eq!(bs.iter().map(|r| (r.message_id, r.body.as_str())).collect::<Vec<_>>(), [(ids[0], "b's")]);
    assert!(contacts.list_inbound(AccountId::new(), None, 10).await.unwrap().is_empty());
}

// ---------------------------------------------------------------- coordination

/// A lease belongs to one holder until it expires: others are refused while
/// it is live, its holder renews it, and anyone takes it once it expired.
/// Only the holder releases it; `lease_holder` shows only a live lease.
pub async fn a_lease_is_taken_over_only_after_it_expires(store: &Store) {
    let coordination = store.coordination();
    let ttl = Duration::from_millis(300);
    assert_eq!(coordination.lease_holder("scheduler").await.unwrap(), None);
    assert!(coordination.try_lease("dispatcher", "p2", Duration::from_secs(60)).await.unwrap());

    let (taking, before) = (Instant::now(), now_ms());
    assert!(coordination.try_lease("scheduler", "p1", ttl).await.unwrap());
    let held = coordination.lease_holder("scheduler").await.unwrap();
    let refused = coordination.try_lease("scheduler", "p2", ttl).await.unwrap();
    let renewed = coordination.try_lease("scheduler", "p1", ttl).await.unwrap();
    // Valid only while the first lease was surely live: fail loudly, not wrongly.
    assert!(Instant::now() < taking + ttl, "too slow to check a live lease");
    let (holder, until) = held.unwrap();
    assert_eq!(holder, "p1");
    assert!(until >= before + TimeDelta::milliseconds(300) && until <= now_ms() + TimeDelta::milliseconds(300));
    assert!(!refused, "another holder is refused while the lease is live");
    assert!(renewed, "the holder renews");
    assert_eq!(coordination.lease_holder("dispatcher").await.unwrap().unwrap().0, "p2", "leases are independent");

    sleep_until(Instant::now() + ttl + MARGIN).await;
    assert_eq!(coordination.lease_holder("scheduler").await.unwrap(), None, "an expired lease has no holder");
    assert!(coordination.try_lease("scheduler", "p2", Duration::from_secs(60)).await.unwrap(), "taken over");
    assert_eq!(coordination.lease_holder("scheduler").await.unwrap().unwrap().0, "p2");
    assert!(!coordination.try_lease("scheduler", "p1", ttl).await.unwrap(), "the old holder lost it");

    coordination.release_lease("scheduler", "p1").await.unwrap();
    assert_eq!(coordination.lease_holder("scheduler").await.unwrap().unwrap().0, "p2", "only the holder releases");
    coordination.release_lease("scheduler", "p2").await.unwrap();
    assert_eq!(coordination.lease_holder("scheduler").await.unwrap(), None);
    assert!(coordination.try_lease("scheduler", "p1", ttl).await.unwrap(), "a released lease is free at once");
}

/// Every write of a setting increments its version, starting at 1, and
/// stores the value and the time of the write.
pub async fn settings_count_their_versions(store: &Store) {
    let coordination = store.coordination();
    assert_eq!(coordination.setting("routing").await.unwrap(), None);
    let before = now_ms();
    assert_eq!(coordination.put_setting("routing", "{\"routes\":[]}").await.unwrap(), 1);
    let first = coordination.setting("routing").await.unwrap().unwrap();
    assert_eq!((first.value.as_str(), first.version), ("{\"routes\":[]}", 1));
    assert!(first.updated_at >= before && first.updated_at <= now_ms());
    assert_eq!(coordination.put_setting("routing", "{\"routes\":[1]}").await.unwrap(), 2);
    assert_eq!(coordination.put_setting("routing", "{\"routes\":[1]}").await.unwrap(), 3, "every write counts");
    let third = coordination.setting("routing").await.unwrap().unwrap();
    assert_eq!((third.value.as_str(), third.version), ("{\"routes\":[1]}", 3));
    assert!(third.updated_at >= first.updated_at);
    assert_eq!(coordination.put_setting("checkpoint", "42").await.unwrap(), 1, "versions are per key");
}

// ---------------------------------------------------------------- index and journal reads

/// Accepted messages expiring at `expires_at`, plus `then` events recorded after.
async fn accept_expiring(store: &Store, owner: AccountId, expires_at: DateTime<Utc>, then: &[EventKind]) -> MessageId {
    let m = MessageId::new();
    let mut event = accepted(m, owner);
    if let EventKind::Accepted { expires_at: at, .. } = &mut event.kind {
        *at = expires_at;
    }
    store.accept(&[event], "mt", vec![NewEntry::new(m.to_string(), "job")]).await.unwrap();
    for (i, kind) in then.iter().enumerate() {
        // Strictly later than the accept, so the fold orders them after it.
        let at = now_ms() + TimeDelta::milliseconds(1 + i64::try_from(i).unwrap());
        store.record(&[Event::new(m, Some(owner), at, kind.clone())]).await.unwrap();
    }
    m
}

fn routed_kind() -> EventKind {
    EventKind::Routed { connector: "smsc-a".into(), route: "default".into(), attempt: 1 }
}

fn submitted_kind() -> EventKind {
    EventKind::SubmittedToSmsc { connector: "smsc-a".into(), segment: 1, smsc_message_id: "x1".into() }
}

/// `statuses` returns the indexed status of each message the index holds
/// for the account asked with it, and nothing for another account's.
pub async fn statuses_are_read_per_owner(store: &Store) {
    let (a, b) = (AccountId::new(), AccountId::new());
    let later = now_ms() + TimeDelta::days(1);
    let m0 = accept_expiring(store, a, later, &[]).await;
    let m1 = accept_expiring(store, a, later, &[routed_kind()]).await;
    let m2 = accept_expiring(store, b, later, &[EventKind::Cancelled { by: "api".into() }]).await;
    let asked = [(a, m0), (a, m1), (a, m2), (b, m2), (a, MessageId::new())];
    let found: HashMap<MessageId, MessageStatus> =
        store.messages().statuses(&asked).await.unwrap().into_iter().collect();
    let expected =
        HashMap::from([(m0, MessageStatus::Accepted), (m1, MessageStatus::Routed), (m2, MessageStatus::Cancelled)]);
    assert_eq!(found, expected);
    assert_eq!(store.messages().statuses(&[(a, m0), (b, m2)]).await.unwrap().len(), 2);
    assert!(store.messages().statuses(&[(b, m0)]).await.unwrap().is_empty(), "not b's message");
    assert!(store.messages().statuses(&[]).await.unwrap().is_empty());
}

/// `expirable` returns unsent messages (accepted, scheduled, routed) expired
/// by `due` and submitted ones expired by the earlier `submitted_due`, oldest
/// expiry first, never a message in a final status; bounds are inclusive.
pub async fn expirable_messages_wait_for_the_grace_of_submitted_ones(store: &Store) {
    let owner = AccountId::new();
    let t = now_ms();
    let ago = |minutes: i64| t - TimeDelta::minutes(minutes);
    let scheduled = EventKind::Scheduled { send_at: t + TimeDelta::hours(1) };
    let delivered = EventKind::DeliveryReport {
        segment: 1,
        smsc_message_id: "x1".into(),
        state: DeliveryState::Delivered,
        error_code: None,
    };
    let accepted_old = accept_expiring(store, owner, ago(180), &[]).await;
    let scheduled_old = accept_expiring(store, owner, ago(120), &[scheduled]).await;
    let submitted_old = accept_expiring(store, owner, ago(90), &[routed_kind(), submitted_kind()]).await;
    let routed_old = accept_expiring(store, owner, ago(60), &[routed_kind()]).await;
    let submitted_recent = accept_expiring(store, owner, ago(10), &[routed_kind(), submitted_kind()]).await;
    let accepted_recent = accept_expiring(store, owner, ago(5), &[]).await;
    let _future = accept_expiring(store, owner, t + TimeDelta::hours(1), &[]).await;
    let _delivered = accept_expiring(store, owner, ago(240), &[routed_kind(), submitted_kind(), delivered]).await;
    let _cancelled = accept_expiring(store, owner, ago(300), &[EventKind::Cancelled { by: "api".into() }]).await;

    let messages = store.messages();
    let ids = |rows: Vec<crate::MessageRow>| rows.iter().map(|r| r.message_id).collect::<Vec<_>>();
    let grace = messages.expirable(t, ago(60), 100).await.unwrap();
    assert_eq!(grace.iter().find(|r| r.message_id == accepted_old).and_then(|r| r.expires_at), Some(ago(180)));
    assert_eq!(ids(grace), [accepted_old, scheduled_old, submitted_old, routed_old, accepted_recent]);
    assert_eq!(ids(messages.expirable(t, ago(60), 2).await.unwrap()), [accepted_old, scheduled_old], "limit");
    assert_eq!(
        ids(messages.expirable(t, t, 100).await.unwrap()),
        [accepted_old, scheduled_old, submitted_old, routed_old, submitted_recent, accepted_recent],
        "without grace"
    );
    assert_eq!(ids(messages.expirable(ago(120), ago(120), 100).await.unwrap()), [accepted_old, scheduled_old]);
    assert_eq!(ids(messages.expirable(ago(90), ago(91), 100).await.unwrap()), [accepted_old, scheduled_old]);
    assert!(messages.expirable(ago(181), ago(181), 100).await.unwrap().is_empty());
}

/// `messages_events` returns the events of every message asked for, each
/// message's in journal order (as `message_events` returns them), and no
/// other message's.
pub async fn messages_events_reads_several_messages_in_journal_order(store: &Store) {
    let journal = store.journal();
    let owner = AccountId::new();
    let (m1, m2, m3, quiet) = (MessageId::new(), MessageId::new(), MessageId::new(), MessageId::new());
    let batches = [
        vec![accepted(m1, owner), accepted(m2, owner), accepted(m3, owner)],
        vec![routed(m2, 1)],
        vec![routed(m1, 1), routed(m3, 1), routed(m2, 2)],
        vec![Event::new(m1, Some(owner), now_ms(), EventKind::Cancelled { by: "api".into() })],
    ];
    for batch in &batches {
        journal.append(batch).await.unwrap();
    }
    assert!(journal.messages_events(&[]).await.unwrap().is_empty());
    let events = journal.messages_events(&[m2, m1, quiet]).await.unwrap();
    assert_eq!(events.len(), 6, "m1's three and m2's three, nothing else");
    let asked: HashSet<MessageId> = HashSet::from([m1, m2]);
    assert!(events.iter().all(|e| asked.contains(&e.message_id)));
    for m in [m1, m2] {
        let own: Vec<Event> = events.iter().filter(|e| e.message_id == m).cloned().collect();
        assert_eq!(own, journal.message_events(m).await.unwrap(), "{m}'s events in journal order");
        let expected: Vec<Event> = batches.iter().flatten().filter(|e| e.message_id == m).cloned().collect();
        assert_eq!(own, expected);
    }
}

/// Charges racing on one payer (each message charged by two callers at once)
/// debit every message at most once and never take the balance past the
/// limit; refunds racing on one message credit it once.
pub async fn racing_charges_debit_once_and_never_overdraw(store: &Store) {
    let payer = open(store, "EUR", 0, 100).await;
    let messages: Vec<MessageId> = (0..8).map(|_| MessageId::new()).collect();
    let mut tasks = Vec::new();
    for m in messages.iter().chain(&messages) {
        let (store, one) = (store.clone(), charge(*m, vec![debit(payer, 20, "EUR")]));
        tasks.push(tokio::spawn(async move { store.accounts().charge(&[one]).await.unwrap() }));
    }
    let mut by_message: HashMap<MessageId, Vec<ChargeOutcome>> = HashMap::new();
    for (m, task) in messages.iter().chain(&messages).zip(tasks) {
        by_message.entry(*m).or_default().extend(super::join(task).await);
    }
    let charged: Vec<MessageId> =
        messages.iter().copied().filter(|m| by_message[m].contains(&ChargeOutcome::Charged)).collect();
    assert_eq!(charged.len(), 5, "100 pays for five debits of 20: {by_message:?}");
    for m in &messages {
        let mut outcomes = by_message[m].clone();
        outcomes.sort_by_key(|o| format!("{o:?}"));
        let once = [ChargeOutcome::AlreadyCharged(vec![debit(payer, 20, "EUR")]), ChargeOutcome::Charged];
        let refused =
            [ChargeOutcome::Insufficient { account_id: payer }, ChargeOutcome::Insufficient { account_id: payer }];
        assert!(outcomes == once || outcomes == refused, "{m}: {outcomes:?}");
    }
    assert_eq!(balance(store, payer).await, 0);

    let refunds: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let m = charged[0];
            tokio::spawn(async move { store.accounts().refund(m, now_ms()).await.unwrap() })
        })
        .collect();
    let mut credited = Vec::new();
    for task in refunds {
        credited.extend(super::join(task).await);
    }
    assert_eq!(credited, [debit(payer, 20, "EUR")], "one refund credits, the others find it done");
    assert_eq!(balance(store, payer).await, 20);
}
