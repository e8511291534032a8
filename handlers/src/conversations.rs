//! `mt` handler that remembers, per sender and handset, the latest message
//! going out, so that a reply can be matched to it (see [`crate::replies`]).
//! It goes last in the chain: only messages that passed every check count.

use async_trait::async_trait;
use tern_queue::{Conversation, Store};

use crate::{Handler, HandlerError, Mt, Outcome};

/// Records conversations in one write per batch.
#[derive(Debug, Clone)]
pub struct Conversations {
    store: Store,
}

impl Conversations {
    /// A handler writing to `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Handler<Mt> for Conversations {
    async fn handle(&self, batch: &mut [&mut Mt]) -> Result<Vec<Outcome>, HandlerError> {
        let conversations: Vec<Conversation> = batch
            .iter()
            .map(|mt| Conversation {
                sender: mt.message.from.clone(),
                handset: mt.message.to.clone(),
                account_id: mt.account.id,
                message_id: mt.id(),
                at: mt.entry.accepted.at,
            })
            .collect();
        self.store.contacts().remember_conversations(&conversations).await?;
        Ok(vec![Outcome::Continue; batch.len()])
    }
}
