//! Handlers, their outcomes, the registry and the chain.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tern_core::EventKind;

use crate::HandlerError;

/// What a handler decided about one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Go on to the next handler.
    Continue,
    /// The item is finished with this terminal fact (a rejection, say).
    Stop(EventKind),
    /// Try the item again later; the stage counts the attempt and dead-letters
    /// the item once attempts are exhausted.
    RetryLater {
        /// How long to wait.
        after: Duration,
        /// Why, for the journal.
        reason: String,
    },
}

/// One step of a stage. `W` is the work item: [`crate::Mt`] or [`crate::Mo`].
#[async_trait]
pub trait Handler<W: Send>: Send + Sync + fmt::Debug {
    /// Decides about every item of `batch` (those still going; stopped items
    /// are not passed on), returning one outcome per item, in order. A handler
    /// may add facts to an item and must make any store write it depends on
    /// idempotent per message: a batch may be redone after a crash.
    async fn handle(&self, batch: &mut [&mut W]) -> Result<Vec<Outcome>, HandlerError>;
}

/// Handlers by name, for one kind of work item.
pub struct Registry<W> {
    handlers: BTreeMap<String, Arc<dyn Handler<W>>>,
}

impl<W> fmt::Debug for Registry<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("handlers", &self.handlers.keys().collect::<Vec<_>>()).finish()
    }
}

impl<W: Send + 'static> Default for Registry<W> {
    fn default() -> Self {
        Self { handlers: BTreeMap::new() }
    }
}

impl<W: Send + 'static> Registry<W> {
    /// Registers (or replaces) a handler under `name`.
    pub fn register(&mut self, name: impl Into<String>, handler: Arc<dyn Handler<W>>) -> &mut Self {
        self.handlers.insert(name.into(), handler);
        self
    }

    /// The chain of the named handlers, in that order.
    pub fn chain(&self, names: &[String]) -> Result<Chain<W>, HandlerError> {
        let mut steps = Vec::with_capacity(names.len());
        for name in names {
            let handler = self.handlers.get(name).ok_or_else(|| {
                let known: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
                HandlerError::Config(format!("no handler named {name:?}; registered: {}", known.join(", ")))
            })?;
            steps.push((name.clone(), handler.clone()));
        }
        Ok(Chain { steps })
    }
}

/// Handlers run in order over a batch.
pub struct Chain<W> {
    steps: Vec<(String, Arc<dyn Handler<W>>)>,
}

impl<W> fmt::Debug for Chain<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.steps.iter().map(|(name, _)| name)).finish()
    }
}

impl<W: Send + 'static> Chain<W> {
    /// Runs every handler over the items still going; returns each item's
    /// final outcome (`Continue` for those that passed every handler).
    pub async fn run(&self, items: &mut [W]) -> Result<Vec<Outcome>, HandlerError> {
        let mut outcomes = vec![Outcome::Continue; items.len()];
        for (name, handler) in &self.steps {
            let going: Vec<usize> = (0..items.len()).filter(|&i| outcomes[i] == Outcome::Continue).collect();
            if going.is_empty() {
                break;
            }
            let mut batch: Vec<&mut W> = items
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| outcomes[*i] == Outcome::Continue)
                .map(|(_, item)| item)
                .collect();
            let decided = handler.handle(&mut batch).await?;
            if decided.len() != going.len() {
                return Err(HandlerError::Unexpected(anyhow::anyhow!(
                    "handler {name} answered {} outcomes for {} items",
                    decided.len(),
                    going.len()
                )));
            }
            for (i, outcome) in going.into_iter().zip(decided) {
                crate::metrics::outcome(name, &outcome);
                outcomes[i] = outcome;
            }
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct StopOdd;

    #[async_trait]
    impl Handler<u32> for StopOdd {
        async fn handle(&self, batch: &mut [&mut u32]) -> Result<Vec<Outcome>, HandlerError> {
            Ok(batch
                .iter()
                .map(|n| if **n % 2 == 1 { Outcome::Stop(EventKind::Expired) } else { Outcome::Continue })
                .collect())
        }
    }

    #[derive(Debug)]
    struct Double;

    #[async_trait]
    impl Handler<u32> for Double {
        async fn handle(&self, batch: &mut [&mut u32]) -> Result<Vec<Outcome>, HandlerError> {
            for n in batch.iter_mut() {
                **n *= 2;
            }
            Ok(vec![Outcome::Continue; batch.len()])
        }
    }

    #[tokio::test]
    async fn a_stopped_item_skips_the_rest_of_the_chain() {
        let mut registry = Registry::<u32>::default();
        registry.register("stop_odd", Arc::new(StopOdd)).register("double", Arc::new(Double));
        let chain = registry.chain(&["stop_odd".into(), "double".into()]).unwrap();
        let mut items = vec![1, 2, 3, 4];
        let outcomes = chain.run(&mut items).await.unwrap();
        assert_eq!(items, vec![1, 4, 3, 8]);
        assert_eq!(outcomes[0], Outcome::Stop(EventKind::Expired));
        assert_eq!(outcomes[1], Outcome::Continue);
    }

    #[test]
    fn an_unknown_handler_name_is_a_clear_error() {
        let mut registry = Registry::<u32>::default();
        registry.register("double", Arc::new(Double));
        let err = registry.chain(&["dobule".into()]).unwrap_err().to_string();
        assert!(err.contains("\"dobule\"") && err.contains("registered: double"), "{err}");
    }
}
