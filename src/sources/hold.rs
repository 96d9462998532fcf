//! The Kafka source's reorder hold (`sources.kafka.reorder_window`): with
//! several replicas, one resource's events reach different partitions,
//! consumers and replicas, and a partition whose owner crashed resumes
//! only after the group notices (`session.timeout.ms`) and rebalances. Each
//! message waits until `window` after its timestamp, and due messages go
//! to the engine oldest first across this replica's partitions, in offset
//! order within each (offsets are stored in order). Every replica, on
//! clocks kept close by NTP, then judges a resource's events in the order
//! they were produced, as long as each reaches some replica within
//! `window` of being produced.
//!
//! Bounded: past `max_messages` or `max_bytes` held, the oldest are let
//! go before they are due (counted as early: order is then no longer
//! promised for them).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One message waiting, with what ordering it needs.
pub struct Held<T> {
    /// The message's timestamp, ms since the epoch.
    pub ts_ms: i64,
    pub bytes: usize,
    pub item: T,
}

pub struct Hold<T> {
    window_ms: i64,
    max_messages: usize,
    max_bytes: usize,
    /// Per (topic, partition), in offset order.
    queues: BTreeMap<(String, i32), VecDeque<Held<T>>>,
    messages: usize,
    bytes: usize,
}

/// What [`Hold::take`] let go.
pub struct Taken<T> {
    pub items: Vec<T>,
    /// Let go before they were due: the hold was full.
    pub early: usize,
}

impl<T> Hold<T> {
    pub fn new(window: Duration, max_messages: usize, max_bytes: usize) -> Hold<T> {
        Hold {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
            queues: BTreeMap::new(),
            messages: 0,
            bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    pub fn push(&mut self, topic: &str, partition: i32, held: Held<T>) {
        self.messages += 1;
        self.bytes += held.bytes;
        self.queues
            .entry((topic.to_owned(), partition))
            .or_default()
            .push_back(held);
    }

    /// When the oldest message is due, ms since the epoch.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.queues
            .values()
            .filter_map(|q| q.front())
            .map(|h| h.ts_ms.saturating_add(self.window_ms))
            .min()
    }

    /// Drops the messages of partitions this replica no longer owns: their
    /// new owner reads them again from the last stored offset. Returns how
    /// many were dropped.
    pub fn retain_partitions(&mut self, owned: impl Fn(&str, i32) -> bool) -> usize {
        let gone: Vec<(String, i32)> = self
            .queues
            .keys()
            .filter(|(t, p)| !owned(t, *p))
            .cloned()
            .collect();
        let mut dropped = 0;
        for key in gone {
            if let Some(q) = self.queues.remove(&key) {
                dropped += q.len();
                self.messages -= q.len();
                self.bytes -= q.iter().map(|h| h.bytes).sum::<usize>();
            }
        }
        dropped
    }

    /// Up to `max` messages due at `now_ms` (or let go early while over the
    /// bounds), oldest head first; within a partition in offset order.
    pub fn take(&mut self, now_ms: i64, max: usize) -> Taken<T> {
        let mut taken = Taken {
            items: Vec::new(),
            early: 0,
        };
        while taken.items.len() < max {
            let Some(key) = self.oldest_head() else { break };
            let Some(q) = self.queues.get_mut(&key) else {
                break;
            };
            let Some(head) = q.front() else { break };
            let due = head.ts_ms.saturating_add(self.window_ms) <= now_ms;
            let over = self.messages > self.max_messages || self.bytes > self.max_bytes;
            if !due && !over {
                break;
            }
            let Some(h) = q.pop_front() else { break };
            if q.is_empty() {
                self.queues.remove(&key);
            }
            self.messages -= 1;
            self.bytes -= h.bytes;
            taken.early += usize::from(!due);
            taken.items.push(h.item);
        }
        taken
    }

    fn oldest_head(&self) -> Option<(String, i32)> {
        self.queues
            .iter()
            .filter_map(|(k, q)| q.front().map(|h| (h.ts_ms, k)))
            .min()
            .map(|(_, k)| k.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(ts_ms: i64, item: &'static str) -> Held<&'static str> {
        Held {
            ts_ms,
            bytes: 10,
            item,
        }
    }

    #[test]
    fn messages_wait_for_the_window_then_go_oldest_first_across_partitions() {
        let mut h = Hold::new(Duration::from_secs(10), 100, 1 << 20);
        h.push("audit", 0, held(1_000, "p0-a"));
        h.push("audit", 0, held(5_000, "p0-b"));
        h.push("audit", 1, held(2_000, "p1-a"));
        h.push("audit", 1, held(3_000, "p1-b"));
        assert_eq!(h.next_due_ms(), Some(11_000));
        assert!(h.take(10_999, 10).items.is_empty(), "nothing is due yet");
        let t = h.take(13_500, 10);
        assert_eq!(t.items, vec!["p0-a", "p1-a", "p1-b"]);
        assert_eq!(t.early, 0);
        assert_eq!(h.take(20_000, 10).items, vec!["p0-b"]);
        assert!(h.is_empty());
    }

    #[test]
    fn a_partition_keeps_offset_order_even_when_its_timestamps_do_not() {
        let mut h = Hold::new(Duration::from_secs(1), 100, 1 << 20);
        h.push("audit", 0, held(5_000, "first"));
        h.push("audit", 0, held(2_000, "second"));
        h.push("audit", 1, held(3_000, "other"));
        assert_eq!(h.take(10_000, 10).items, vec!["other", "first", "second"]);
    }

    #[test]
    fn revoked_partitions_are_dropped_and_a_full_hold_lets_the_oldest_go_early() {
        let mut h = Hold::new(Duration::from_secs(60), 2, 1 << 20);
        h.push("audit", 0, held(1_000, "a"));
        h.push("audit", 1, held(2_000, "b"));
        h.push("audit", 2, held(3_000, "c"));
        let t = h.take(3_000, 10);
        assert_eq!(t.items, vec!["a"], "one over the bound goes, the oldest");
        assert_eq!(t.early, 1);
        assert_eq!(h.retain_partitions(|_, p| p != 1), 1);
        assert_eq!(h.len(), 1);
        assert_eq!(h.take(70_000, 10).items, vec!["c"]);
    }
}
