//! Opt-out: STOP-style keywords in inbound messages opt a number out of an
//! account's traffic (START opts it back in), and outbound messages to an
//! opted-out number are rejected before billing, so they are never charged.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use serde::Deserialize;
use tern_core::{AccountId, EventKind};
use tern_queue::Store;

use crate::{Handler, HandlerError, Mo, Mt, Outcome};

/// Keywords by language (`en`, `fr`...): any language's keyword counts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptOutConfig {
    /// Keywords that opt a number out.
    pub stop: BTreeMap<String, Vec<String>>,
    /// Keywords that opt it back in.
    pub start: BTreeMap<String, Vec<String>>,
}

impl Default for OptOutConfig {
    fn default() -> Self {
        let table = |entries: &[(&str, &[&str])]| {
            entries
                .iter()
                .map(|(lang, words)| ((*lang).to_owned(), words.iter().map(|w| (*w).to_owned()).collect()))
                .collect()
        };
        Self {
            // The CTIA/carrier set for English, and the usual words elsewhere.
            stop: table(&[
                ("en", &["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"]),
                ("fr", &["ARRET", "ARRÊT", "STOP", "DESABONNER", "DÉSABONNER"]),
                ("de", &["STOPP", "ABMELDEN", "STOP"]),
                ("es", &["BAJA", "PARAR", "CANCELAR"]),
                ("pt", &["PARAR", "SAIR", "CANCELAR"]),
                ("it", &["STOP", "CANCELLA", "BASTA"]),
                ("nl", &["STOP", "AFMELDEN"]),
            ]),
            start: table(&[
                ("en", &["START", "UNSTOP", "SUBSCRIBE", "YES"]),
                ("fr", &["START", "DEMARRER", "DÉMARRER"]),
                ("de", &["START", "ANMELDEN"]),
                ("es", &["ALTA", "START"]),
                ("pt", &["VOLTAR", "START"]),
                ("it", &["START", "ISCRIVI"]),
                ("nl", &["START", "AANMELDEN"]),
            ]),
        }
    }
}

/// What an inbound text asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyword {
    /// Opt out; carries the keyword as recognised.
    Stop(String),
    /// Opt back in.
    Start(String),
}

/// Recognises keywords: the first word of the message, without surrounding
/// punctuation, compared case-insensitively ("Stop.", "stop please" both opt
/// out; "don't stop" does not).
#[derive(Debug, Clone)]
pub struct Keywords {
    stop: HashSet<String>,
    start: HashSet<String>,
}

impl Keywords {
    /// Builds the recogniser; a word listed as both stop and start is an error.
    pub fn new(config: &OptOutConfig) -> Result<Self, HandlerError> {
        let upper = |table: &BTreeMap<String, Vec<String>>| -> HashSet<String> {
            table.values().flatten().map(|w| w.trim().to_uppercase()).filter(|w| !w.is_empty()).collect()
        };
        let (stop, start) = (upper(&config.stop), upper(&config.start));
        if let Some(both) = stop.intersection(&start).next() {
            return Err(HandlerError::Config(format!("opt-out keyword {both:?} is both a stop and a start keyword")));
        }
        Ok(Self { stop, start })
    }

    /// The keyword `text` starts with, if any.
    pub fn recognise(&self, text: &str) -> Option<Keyword> {
        let first = text.split_whitespace().next()?;
        let word = first.trim_matches(|c: char| !c.is_alphanumeric()).to_uppercase();
        if self.stop.contains(&word) {
            Some(Keyword::Stop(word))
        } else if self.start.contains(&word) {
            Some(Keyword::Start(word))
        } else {
            None
        }
    }
}

/// `mt` handler: rejects messages to numbers opted out of the account's traffic.
#[derive(Debug, Clone)]
pub struct OptOutCheck {
    store: Store,
}

impl OptOutCheck {
    /// A handler reading opt-outs from `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Handler<Mt> for OptOutCheck {
    async fn handle(&self, batch: &mut [&mut Mt]) -> Result<Vec<Outcome>, HandlerError> {
        let mut by_account: HashMap<AccountId, Vec<String>> = HashMap::new();
        for mt in batch.iter() {
            by_account.entry(mt.account.id).or_default().push(mt.message.to.clone());
        }
        let mut opted_out: HashSet<(AccountId, String)> = HashSet::new();
        for (account, numbers) in by_account {
            for number in self.store.contacts().opted_out(account, &numbers).await? {
                opted_out.insert((account, number));
            }
        }
        Ok(batch
            .iter()
            .map(|mt| {
                if opted_out.contains(&(mt.account.id, mt.message.to.clone())) {
                    Outcome::Stop(EventKind::Rejected {
                        code: "opted_out".into(),
                        detail: format!(
                            "{} opted out of this account's messages by replying with a stop keyword; \
                             it receives nothing from this account until it sends a start keyword",
                            mt.message.to
                        ),
                    })
                } else {
                    Outcome::Continue
                }
            })
            .collect())
    }
}

/// `mo` handler: applies STOP/START keywords of inbound messages attributed
/// to an account (by reply matching, which must run first).
#[derive(Debug, Clone)]
pub struct OptOutKeywords {
    store: Store,
    keywords: Keywords,
}

impl OptOutKeywords {
    /// A handler writing opt-outs to `store`.
    pub fn new(store: Store, keywords: Keywords) -> Self {
        Self { store, keywords }
    }
}

#[async_trait]
impl Handler<Mo> for OptOutKeywords {
    async fn handle(&self, batch: &mut [&mut Mo]) -> Result<Vec<Outcome>, HandlerError> {
        for mo in batch.iter_mut() {
            let (Some(account), Some(keyword)) = (mo.account_id(), self.keywords.recognise(&mo.body)) else {
                continue;
            };
            // Idempotent: a redelivered inbound sets the same state again.
            let (out, word) = match keyword {
                Keyword::Stop(word) => (true, word),
                Keyword::Start(word) => (false, word),
            };
            self.store.contacts().set_opt_out(account, &mo.from, out, mo.received_at).await?;
            let number = mo.from.clone();
            mo.facts.push(if out {
                EventKind::OptedOut { number, keyword: word }
            } else {
                EventKind::OptedIn { number, keyword: word }
            });
        }
        Ok(vec![Outcome::Continue; batch.len()])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_first_word_decides_whatever_its_case_and_punctuation() {
        let k = Keywords::new(&OptOutConfig::default()).unwrap();
        assert_eq!(k.recognise("STOP"), Some(Keyword::Stop("STOP".into())));
        assert_eq!(k.recognise("  stop. "), Some(Keyword::Stop("STOP".into())));
        assert_eq!(k.recognise("Stop sending me these"), Some(Keyword::Stop("STOP".into())));
        assert_eq!(k.recognise("arrêt"), Some(Keyword::Stop("ARRÊT".into())));
        assert_eq!(k.recognise("Baja"), Some(Keyword::Stop("BAJA".into())));
        assert_eq!(k.recognise("start!"), Some(Keyword::Start("START".into())));
        assert_eq!(k.recognise("don't stop"), None);
        assert_eq!(k.recognise("stopwatch"), None);
        assert_eq!(k.recognise(""), None);
    }

    #[test]
    fn a_word_cannot_both_stop_and_start() {
        let mut config = OptOutConfig::default();
        config.start.insert("xx".into(), vec!["quit".into()]);
        let err = Keywords::new(&config).unwrap_err().to_string();
        assert!(err.contains("QUIT"), "{err}");
    }
}
