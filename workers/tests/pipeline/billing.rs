//! Billing through the `mt` stage: exact, atomic across payers, once per message.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tern_core::{AccountId, EventKind, MessageId};
use tern_workers::mt::MtStage;

use crate::helpers::*;

pub async fn messages_and_resellers_are_charged_once_even_when_retried(store: &TestStore) {
    let reseller = account(store, NewAccount { plan: Some(flat(3)), ..NewAccount::default() }).await;
    let sub = account(store, NewAccount { parent: Some(reseller.id), ..NewAccount::default() }).await;
    let (mut registry, _) = mt_registry(store, table("sim")).await;
    // Fails after billing, twice: the batch is redone from scratch each time.
    registry.register("crash", Arc::new(FailFirst(Mutex::new(2))));
    let stage =
        MtStage::new(store.store.clone(), registry.chain(&names(&["optout", "routing", "billing", "crash"])).unwrap());
    let id = send(store, &sub, Send { segments: 2, ..Send::default() }).await;
    drain(store, &stage).await;
    assert_eq!(balance(store, sub.id).await, 1_000_000 - 20, "10 per segment, 2 segments, once");
    assert_eq!(balance(store, reseller.id).await, 1_000_000 - 6, "wholesale 3 per segment, once");
    let events = history(store, id).await;
    let charges: Vec<(AccountId, i64)> = events
        .iter()
        .filter_map(|k| match k {
            EventKind::Charged { payer, amount, currency } => {
                assert_eq!(currency, "EUR");
                Some((*payer, *amount))
            }
            _ => None,
        })
        .collect();
    assert_eq!(charges.len(), 2, "one Charged per payer: {events:?}");
    assert!(charges.contains(&(sub.id, 20)) && charges.contains(&(reseller.id, 6)));
}

pub async fn insufficient_funds_reject_without_charging_anyone(store: &TestStore) {
    let poor_reseller = account(store, NewAccount { balance: 5, plan: Some(flat(3)), ..NewAccount::default() }).await;
    let sub = account(store, NewAccount { parent: Some(poor_reseller.id), ..NewAccount::default() }).await;
    let tight = account(store, NewAccount { balance: 15, credit_limit: 5, ..NewAccount::default() }).await;
    let (registry, _) = mt_registry(store, table("sim")).await;
    let stage = MtStage::new(store.store.clone(), registry.chain(&names(DEFAULT_CHAIN)).unwrap());
    let reseller_short = send(store, &sub, Send { segments: 2, ..Send::default() }).await;
    // 15 + credit 5 covers two messages of 10 exactly, not a third.
    let ok1 = send(store, &tight, Send::default()).await;
    let ok2 = send(store, &tight, Send::default()).await;
    let refused = send(store, &tight, Send::default()).await;
    drain(store, &stage).await;
    let events = history(store, reseller_short).await;
    assert_eq!(rejected_code(&events).as_deref(), Some("reseller_insufficient_balance"), "{events:?}");
    assert_eq!(balance(store, sub.id).await, 1_000_000, "the sub-account's debit is undone with the reseller's");
    assert_eq!(balance(store, poor_reseller.id).await, 5);
    assert_eq!(rejected_code(&history(store, ok1).await), None);
    assert_eq!(rejected_code(&history(store, ok2).await), None);
    let events = history(store, refused).await;
    assert_eq!(rejected_code(&events).as_deref(), Some("insufficient_balance"), "{events:?}");
    assert_eq!(balance(store, tight.id).await, -5, "down to minus the credit limit, no further");
}

#[derive(Debug, Clone)]
enum Op {
    /// Send from sub-account `0` or `1` with this many segments; the chain
    /// crashes after billing `crashes` times, then passes or fails the message.
    Send {
        sub: usize,
        segments: u16,
        crashes: u32,
        fail: bool,
    },
    TopUp {
        sub: usize,
        amount: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1..4u16, 0..3u32, any::<bool>()).prop_map(|(sub, segments, crashes, fail)| Op::Send { sub, segments, crashes, fail }),
        1 => (0..2usize, 1..50i64).prop_map(|(sub, amount)| Op::TopUp { sub, amount }),
    ]
}

/// Fails (stops) every message when told to, after billing: a failure before any SMSC took it.
#[derive(Debug)]
struct FailAll(bool);

#[async_trait::async_trait]
impl tern_handlers::Handler<tern_handlers::Mt> for FailAll {
    async fn handle(
        &self,
        batch: &mut [&mut tern_handlers::Mt],
    ) -> Result<Vec<tern_handlers::Outcome>, tern_handlers::HandlerError> {
        Ok(batch
            .iter()
            .map(|_| {
                if self.0 {
                    tern_handlers::Outcome::Stop(EventKind::Failed {
                        code: "smsc_down".into(),
                        detail: "test".into(),
                        smpp_status: None,
                    })
                } else {
                    tern_handlers::Outcome::Continue
                }
            })
            .collect())
    }
}

async fn run_ops(store: &TestStore, ops: Vec<Op>) {
    let reseller =
        account(store, NewAccount { balance: 100, plan: Some(flat(2)), credit_limit: 10, ..NewAccount::default() })
            .await;
    let subs = [
        account(store, NewAccount { balance: 60, parent: Some(reseller.id), ..NewAccount::default() }).await,
        account(
            store,
            NewAccount { balance: 30, parent: Some(reseller.id), credit_limit: 20, ..NewAccount::default() },
        )
        .await,
    ];
    let mut top_ups: std::collections::HashMap<AccountId, i64> =
        [(reseller.id, 100), (subs[0].id, 60), (subs[1].id, 30)].into_iter().collect();
    let mut sent: Vec<MessageId> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::TopUp { sub, amount } => {
                store.accounts().top_up(subs[sub].id, amount, &format!("prop-{i}"), chrono::Utc::now()).await.unwrap();
                *top_ups.entry(subs[sub].id).or_default() += amount;
            }
            Op::Send { sub, segments, crashes, fail } => {
                let (mut registry, _) = mt_registry(store, table("sim")).await;
                registry.register("crash", Arc::new(FailFirst(Mutex::new(crashes))));
                registry.register("fail", Arc::new(FailAll(fail)));
                let chain = registry.chain(&names(&["routing", "billing", "crash", "fail"])).unwrap();
                let stage = MtStage::new(store.store.clone(), chain);
                sent.push(send(store, &subs[sub], Send { segments, ..Send::default() }).await);
                drain(store, &stage).await;
            }
        }
    }
    let mut charges: std::collections::HashMap<AccountId, i64> = Default::default();
    let mut refunds: std::collections::HashMap<AccountId, i64> = Default::default();
    for id in sent {
        let mut charged_payers = Vec::new();
        for kind in history(store, id).await {
            match kind {
                EventKind::Charged { payer, amount, .. } => {
                    charged_payers.push(payer);
                    *charges.entry(payer).or_default() += amount;
                }
                EventKind::Refunded { payer, amount, .. } => *refunds.entry(payer).or_default() += amount,
                _ => {}
            }
        }
        let before = charged_payers.len();
        charged_payers.sort();
        charged_payers.dedup();
        assert_eq!(before, charged_payers.len(), "a payer charged twice for one message");
    }
    for (account, limit) in [(reseller.id, 10), (subs[0].id, 0), (subs[1].id, 20)] {
        let expected = top_ups[&account] - charges.get(&account).copied().unwrap_or(0)
            + refunds.get(&account).copied().unwrap_or(0);
        let actual = balance(store, account).await;
        assert_eq!(actual, expected, "balance = top-ups − charges + refunds");
        assert!(actual >= -limit, "balance {actual} below minus the credit limit {limit}");
    }
}

pub async fn balance_always_equals_top_ups_minus_charges_plus_refunds(store: &TestStore) {
    // Few cases on MongoDB: each op is a handful of transactions on the stand-in.
    let cases = if store.backend == Backend::Sqlite { 24 } else { 6 };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases, ..ProptestConfig::default() });
    let backend = store.backend;
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&proptest::collection::vec(op(), 1..12), |ops| {
            handle.block_on(async {
                let store = fresh(backend).await;
                run_ops(&store, ops).await;
            });
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
