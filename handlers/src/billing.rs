//! Billing: each message is charged the price quoted when it was accepted,
//! per segment in integer minor units, and every reseller above its account
//! its own wholesale price from its own plan. The debits of one message are
//! applied together or not at all, once per message however often the
//! message is retried; a message that fails before any SMSC took it is
//! refunded exactly what it was charged.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tern_core::{AccountId, Event, EventKind, MessageId, Msisdn};
use tern_queue::{Account, Charge, ChargeOutcome, Debit, Store};

use crate::{Handler, HandlerError, Mt, Outcome};

/// Resellers above resellers are followed this far (a loop in the data must not hang billing).
const MAX_RESELLER_DEPTH: usize = 8;

/// `mt` handler: charges each message and its resellers.
#[derive(Debug, Clone)]
pub struct Billing {
    store: Store,
}

impl Billing {
    /// A handler charging through `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn account(
        &self,
        cache: &mut HashMap<AccountId, Option<Arc<Account>>>,
        id: AccountId,
    ) -> Result<Option<Arc<Account>>, HandlerError> {
        if let Some(found) = cache.get(&id) {
            return Ok(found.clone());
        }
        let found = self.store.accounts().account(id).await?.map(Arc::new);
        cache.insert(id, found.clone());
        Ok(found)
    }

    /// The debits of one message, or why it cannot be charged.
    async fn debits(
        &self,
        cache: &mut HashMap<AccountId, Option<Arc<Account>>>,
        mt: &Mt,
    ) -> Result<Result<Vec<Debit>, EventKind>, HandlerError> {
        let mut debits = Vec::new();
        match mt.message.price {
            Some(price) if price > 0 => debits.push(Debit {
                account_id: mt.account.id,
                amount: price,
                currency: mt.message.currency.clone().unwrap_or_else(|| mt.account.currency.clone()),
            }),
            Some(_) => {}
            // No plan at all means the account is not billed per message.
            None if mt.account.price_plan.is_none() => {}
            None => {
                return Ok(Err(reject(
                    "no_price",
                    format!("the account's price plan has no price for {}", mt.message.to),
                )));
            }
        }
        let to = Msisdn::parse(&mt.message.to).ok();
        let mut parent = mt.account.parent_id;
        for _ in 0..MAX_RESELLER_DEPTH {
            let Some(id) = parent else { break };
            let Some(reseller) = self.account(cache, id).await? else {
                return Ok(Err(reject("unknown_reseller", format!("reseller {id} of this account does not exist"))));
            };
            if let Some(plan) = &reseller.price_plan {
                let wholesale = to.as_ref().and_then(|to| plan.price(to, mt.message.segments));
                match wholesale {
                    Some(amount) if amount > 0 => {
                        debits.push(Debit { account_id: id, amount, currency: reseller.currency.clone() });
                    }
                    Some(_) => {}
                    None => {
                        return Ok(Err(reject(
                            "no_wholesale_price",
                            format!("reseller {id}'s price plan has no price for {}", mt.message.to),
                        )));
                    }
                }
            }
            parent = reseller.parent_id;
        }
        Ok(Ok(debits))
    }
}

fn reject(code: &str, detail: String) -> EventKind {
    EventKind::Rejected { code: code.into(), detail }
}

fn charged(debit: &Debit) -> EventKind {
    EventKind::Charged { payer: debit.account_id, amount: debit.amount, currency: debit.currency.clone() }
}

#[async_trait]
impl Handler<Mt> for Billing {
    async fn handle(&self, batch: &mut [&mut Mt]) -> Result<Vec<Outcome>, HandlerError> {
        let mut cache = HashMap::new();
        let mut outcomes = vec![Outcome::Continue; batch.len()];
        let mut charges = Vec::new();
        let mut charged_items = Vec::new();
        for (i, mt) in batch.iter().enumerate() {
            match self.debits(&mut cache, mt).await? {
                Err(refusal) => outcomes[i] = Outcome::Stop(refusal),
                Ok(debits) if debits.is_empty() => {}
                Ok(debits) => {
                    charges.push(Charge { message_id: mt.id(), debits, at: mt.now });
                    charged_items.push(i);
                }
            }
        }
        let results = self.store.accounts().charge(&charges).await?;
        for ((i, charge), result) in charged_items.into_iter().zip(&charges).zip(results) {
            let mt = &mut batch[i];
            match result {
                ChargeOutcome::Charged => {
                    for debit in &charge.debits {
                        metrics::counter!(crate::metrics::CHARGED_MINOR_UNITS, "currency" => debit.currency.clone())
                            .increment(u64::try_from(debit.amount).unwrap_or(0));
                    }
                    mt.facts.extend(charge.debits.iter().map(charged));
                }
                // Charged by an earlier delivery: record what was charged then.
                ChargeOutcome::AlreadyCharged(debits) => mt.facts.extend(debits.iter().map(charged)),
                ChargeOutcome::Insufficient { account_id } => {
                    let (code, whose) = if account_id == mt.account.id {
                        ("insufficient_balance", "the account's".to_owned())
                    } else {
                        ("reseller_insufficient_balance", format!("reseller {account_id}'s"))
                    };
                    let amount = charge.debits.iter().find(|d| d.account_id == account_id).map_or(0, |d| d.amount);
                    outcomes[i] = Outcome::Stop(reject(
                        code,
                        format!(
                            "{whose} balance and credit limit do not cover {amount} (minor units) for this message"
                        ),
                    ));
                }
                ChargeOutcome::UnknownAccount { account_id } => {
                    outcomes[i] =
                        Outcome::Stop(reject("unknown_account", format!("account {account_id} does not exist")));
                }
            }
        }
        Ok(outcomes)
    }
}

/// Refunds whatever `message` was charged, unless it was refunded already,
/// and returns the `Refunded` events to record (none if there was nothing
/// to give back). For messages that failed before any SMSC accepted them.
pub async fn refund(
    store: &Store,
    message: MessageId,
    account: Option<AccountId>,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, HandlerError> {
    let credits = store.accounts().refund(message, at).await?;
    Ok(credits
        .into_iter()
        .map(|credit| {
            metrics::counter!(crate::metrics::REFUNDED_MINOR_UNITS, "currency" => credit.currency.clone())
                .increment(u64::try_from(credit.amount).unwrap_or(0));
            Event::new(
                message,
                account,
                at,
                EventKind::Refunded {
                    payer: credit.account_id,
                    amount: credit.amount,
                    currency: credit.currency,
                    reason: reason.to_owned(),
                },
            )
        })
        .collect())
}

/// Whether a message's history shows an SMSC took one of its segments (then
/// the network has it, and a failure is not refunded).
pub fn reached_smsc(history: &[Event]) -> bool {
    history.iter().any(|e| matches!(e.kind, EventKind::SubmittedToSmsc { .. }))
}
