//! What one connection has to send later: responses held back (slow
//! responses), receipts and MOs not yet due, those due but waiting for room
//! in the window, and those sent and waiting for their `deliver_sm_resp`.
//!
//! One binary heap per connection holds everything timed, so a hundred
//! thousand receipts in flight cost a hundred thousand heap entries and one
//! timer, not as many sleeping tasks.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};

use rusmpp::Command;
use rusmpp::pdus::DeliverSm;
use tokio::time::Instant;

/// What a `deliver_sm` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Receipt,
    Mo,
}

/// A `deliver_sm` the simulator owes a client: kept until acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) pdu: DeliverSm,
    pub(crate) kind: Kind,
    /// Times it was sent already.
    pub(crate) attempts: u32,
}

impl Delivery {
    pub(crate) fn new(pdu: DeliverSm, kind: Kind) -> Self {
        Self { pdu, kind, attempts: 0 }
    }
}

/// Something to do at a given time.
#[derive(Debug)]
pub(crate) enum Timed {
    /// Send this response (a slow one).
    Respond(Command),
    /// This delivery becomes due.
    Deliver(Delivery),
}

#[derive(Debug)]
struct Entry {
    due: Instant,
    /// Keeps entries due at the same instant in the order they came.
    order: u64,
    item: Timed,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

#[derive(Debug)]
struct Outstanding {
    delivery: Delivery,
    deadline: Instant,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    timers: BinaryHeap<Reverse<Entry>>,
    order: u64,
    ready: VecDeque<Delivery>,
    outstanding: HashMap<u32, Outstanding>,
    /// No outstanding deadline is earlier than this; it may be earlier
    /// than the earliest (after acks), which costs one needless scan.
    next_deadline: Option<Instant>,
}

impl Outbox {
    pub(crate) fn schedule(&mut self, due: Instant, item: Timed) {
        self.order += 1;
        self.timers.push(Reverse(Entry { due, order: self.order, item }));
    }

    /// A delivery to send as soon as the window allows, ahead of others.
    pub(crate) fn push_front(&mut self, delivery: Delivery) {
        self.ready.push_front(delivery);
    }

    /// When something next needs doing.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse(entry)| entry.due);
        match (timer, self.next_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next timed item due by `now`; deliveries go to the ready queue.
    pub(crate) fn pop_due_response(&mut self, now: Instant) -> Option<Command> {
        while self.timers.peek().is_some_and(|Reverse(entry)| entry.due <= now) {
            match self.timers.pop().map(|Reverse(entry)| entry.item) {
                Some(Timed::Respond(command)) => return Some(command),
                Some(Timed::Deliver(delivery)) => self.ready.push_back(delivery),
                None => break,
            }
        }
        None
    }

    /// The next delivery to send, if the window has room.
    pub(crate) fn next_ready(&mut self, window: usize) -> Option<Delivery> {
        if self.outstanding.len() >= window.max(1) {
            return None;
        }
        self.ready.pop_front()
    }

    pub(crate) fn sent(&mut self, sequence: u32, delivery: Delivery, deadline: Instant) {
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |at| at.min(deadline)));
        self.outstanding.insert(sequence, Outstanding { delivery, deadline });
    }

    /// The delivery a `deliver_sm_resp` answers, if it is one of ours.
    pub(crate) fn answered(&mut self, sequence: u32) -> Option<Delivery> {
        let delivery = self.outstanding.remove(&sequence).map(|o| o.delivery);
        if self.outstanding.is_empty() {
            self.next_deadline = None;
        }
        delivery
    }

    /// The deliveries whose resp is overdue at `now`.
    pub(crate) fn overdue(&mut self, now: Instant) -> Vec<Delivery> {
        if self.next_deadline.is_none_or(|at| at > now) {
            return Vec::new();
        }
        let late: Vec<u32> = self.outstanding.iter().filter(|(_, o)| o.deadline <= now).map(|(s, _)| *s).collect();
        let overdue = late.iter().filter_map(|s| self.outstanding.remove(s)).map(|o| o.delivery).collect();
        self.next_deadline = self.outstanding.values().map(|o| o.deadline).min();
        overdue
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.outstanding.len()
    }

    /// Every delivery still owed, to hand to another bind when this one
    /// goes: outstanding and ready ones are due now, timed ones keep
    /// their time. Held-back responses die with the link.
    pub(crate) fn take_deliveries(&mut self, now: Instant) -> Vec<(Instant, Delivery)> {
        let mut owed: Vec<(Instant, Delivery)> = Vec::with_capacity(self.outstanding.len() + self.ready.len());
        let mut outstanding: Vec<(u32, Outstanding)> = self.outstanding.drain().collect();
        // Oldest first, so that a receipt keeps its place ahead of later ones.
        outstanding.sort_by_key(|(sequence, _)| *sequence);
        owed.extend(outstanding.into_iter().map(|(_, o)| (now, o.delivery)));
        owed.extend(self.ready.drain(..).map(|d| (now, d)));
        let mut timers: Vec<Entry> = std::mem::take(&mut self.timers).into_iter().map(|Reverse(e)| e).collect();
        timers.sort();
        owed.extend(timers.into_iter().filter_map(|entry| match entry.item {
            Timed::Deliver(delivery) => Some((entry.due, delivery)),
            Timed::Respond(_) => None,
        }));
        self.next_deadline = None;
        owed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn delivery(kind: Kind) -> Delivery {
        Delivery::new(DeliverSm::default(), kind)
    }

    #[test]
    fn timed_items_come_due_in_order_and_the_window_holds_back_the_rest() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        outbox.schedule(now + Duration::from_millis(20), Timed::Deliver(delivery(Kind::Mo)));
        outbox.schedule(now + Duration::from_millis(10), Timed::Deliver(delivery(Kind::Receipt)));
        outbox.schedule(now + Duration::from_millis(10), Timed::Respond(Command::default()));
        assert_eq!(outbox.next_wakeup(), Some(now + Duration::from_millis(10)));
        assert!(outbox.pop_due_response(now).is_none());
        assert!(outbox.next_ready(1).is_none(), "nothing due yet");
        // The receipt was scheduled first at 10 ms, so it is ready before the response pops.
        assert!(outbox.pop_due_response(now + Duration::from_millis(10)).is_some());
        assert!(outbox.pop_due_response(now + Duration::from_millis(30)).is_none());
        let first = outbox.next_ready(1).unwrap();
        assert_eq!(first.kind, Kind::Receipt);
        outbox.sent(7, first, now + Duration::from_secs(10));
        assert!(outbox.next_ready(1).is_none(), "window of one is full");
        assert_eq!(outbox.answered(7).map(|d| d.kind), Some(Kind::Receipt));
        assert_eq!(outbox.answered(7).map(|d| d.kind), None, "answered once");
        assert_eq!(outbox.next_ready(1).map(|d| d.kind), Some(Kind::Mo));
    }

    #[test]
    fn overdue_deliveries_come_back_once() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        outbox.sent(1, delivery(Kind::Receipt), now + Duration::from_secs(1));
        outbox.sent(2, delivery(Kind::Mo), now + Duration::from_secs(5));
        assert_eq!(outbox.next_wakeup(), Some(now + Duration::from_secs(1)));
        assert!(outbox.overdue(now).is_empty());
        let late = outbox.overdue(now + Duration::from_secs(2));
        assert_eq!(late.iter().map(|d| d.kind).collect::<Vec<_>>(), vec![Kind::Receipt]);
        assert_eq!(outbox.next_wakeup(), Some(now + Duration::from_secs(5)));
        assert_eq!(outbox.in_flight(), 1);
    }

    #[test]
    fn a_closing_link_hands_back_every_delivery_but_not_its_responses() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        outbox.sent(3, delivery(Kind::Receipt), now);
        outbox.push_front(delivery(Kind::Mo));
        outbox.schedule(now + Duration::from_secs(9), Timed::Deliver(delivery(Kind::Receipt)));
        outbox.schedule(now, Timed::Respond(Command::default()));
        let owed = outbox.take_deliveries(now);
        assert_eq!(owed.len(), 3);
        assert_eq!(owed[2].0, now + Duration::from_secs(9), "a timed delivery keeps its time");
        assert_eq!(outbox.next_wakeup(), None);
    }
}
