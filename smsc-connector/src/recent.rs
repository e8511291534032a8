//! The SMSC ids this process recorded lately, so that most receipts are
//! matched without a read of the store: an SMSC usually reports within
//! seconds, on the bind the message went out on.
//!
//! Two generations of a map: when the current one is full it becomes the
//! old one and the older is dropped, so memory stays bounded and the ids
//! kept are always the latest `2 × capacity` or fewer. A miss is not a
//! verdict; the store is asked next.

use std::collections::HashMap;
use std::sync::Mutex;

use tern_queue::SmscIdRecord;

/// Recently recorded SMSC ids of one connector, keyed as stored.
#[derive(Debug)]
pub struct RecentIds {
    capacity: usize,
    maps: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<String, SmscIdRecord>,
    previous: HashMap<String, SmscIdRecord>,
}

impl RecentIds {
    /// Keeps about `capacity` to `2 × capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), maps: Mutex::default() }
    }

    /// Remembers records just made durable.
    pub fn remember(&self, records: &[SmscIdRecord]) {
        let mut maps = self.maps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for record in records {
            if maps.current.len() >= self.capacity {
                maps.previous = std::mem::take(&mut maps.current);
            }
            maps.current.insert(record.smsc_id.clone(), record.clone());
        }
    }

    /// The record of `key`, if remembered.
    pub fn get(&self, key: &str) -> Option<SmscIdRecord> {
        let maps = self.maps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        maps.current.get(key).or_else(|| maps.previous.get(key)).cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Utc;
    use tern_core::MessageId;

    use super::*;

    fn record(id: &str) -> SmscIdRecord {
        SmscIdRecord {
            connector: "c1".into(),
            smsc_id: id.into(),
            message_id: MessageId::new(),
            account_id: None,
            first_segment: 1,
            last_segment: 1,
            at: Utc::now(),
        }
    }

    #[test]
    fn keeps_the_latest_ids_within_two_generations() {
        let recent = RecentIds::new(2);
        recent.remember(&[record("a"), record("b")]);
        assert!(recent.get("a").is_some());
        recent.remember(&[record("c"), record("d")]);
        assert!(recent.get("a").is_some() && recent.get("d").is_some(), "the previous generation still answers");
        recent.remember(&[record("e")]);
        assert!(recent.get("a").is_none(), "the oldest generation is gone");
        assert!(recent.get("c").is_some() && recent.get("e").is_some());
        assert!(recent.get("zz").is_none());
    }
}
