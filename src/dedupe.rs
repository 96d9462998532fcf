//! The redelivery filter. The API server retries whole batches, and one
//! request yields up to three events (one per stage), possibly in different
//! batches and in any order: each request may be acted on once.
//!
//! The key is the request's identity ([`crate::model::RequestId`]), not its
//! `auditID`, which a client may choose.

use std::num::NonZeroUsize;

use lru::LruCache;

use crate::decode::Stage;

/// A request's key: [`crate::model::RequestId::dedupe_key`].
pub type RequestKey = u128;

/// What the filter says about an event that would be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New,
    /// The same stage of the same request again: a retried batch.
    Redelivery,
    /// Another stage of a request already acted on (exec's ResponseStarted
    /// then ResponseComplete).
    SameRequest,
}

/// Bounded memory of requests already acted on. Changes are staged per batch
/// and committed only once the batch's findings are durably written, so that
/// a batch that failed and is retried is processed again, not dropped.
pub struct Dedupe {
    acted: LruCache<RequestKey, u8>,
    staged: foldhash::HashMap<RequestKey, u8>,
}

impl Dedupe {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Dedupe {
            acted: LruCache::new(capacity),
            staged: foldhash::HashMap::default(),
        }
    }

    /// Checks and stages `key` at `stage`.
    pub fn check(&mut self, key: RequestKey, stage: Stage) -> Seen {
        let known = self
            .staged
            .get(&key)
            .copied()
            .or_else(|| self.acted.peek(&key).copied());
        match known {
            Some(stages) if stages & stage.bit() != 0 => Seen::Redelivery,
            Some(stages) => {
                self.staged.insert(key, stages | stage.bit());
                Seen::SameRequest
            }
            None => {
                self.staged.insert(key, stage.bit());
                Seen::New
            }
        }
    }

    /// Makes the staged keys permanent: the batch was durably accepted.
    pub fn commit(&mut self) {
        for (key, stages) in self.staged.drain() {
            self.acted.put(key, stages);
        }
    }

    /// Forgets the staged keys: the batch failed and will be retried.
    pub fn rollback(&mut self) {
        self.staged.clear();
    }

    pub fn len(&self) -> usize {
        self.acted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Event;

    fn key(audit_id: &str, user: &str) -> RequestKey {
        crate::model::RequestId::of("c", &event(audit_id, user)).dedupe_key()
    }

    fn event(audit_id: &str, user: &str) -> Event<'static> {
        let json = format!(
            r#"{{"auditID":"{audit_id}","stage":"ResponseComplete","verb":"patch","requestURI":"/api/v1/x","requestReceivedTimestamp":"2026-11-20T10:00:00.000001Z","user":{{"username":"{user}"}}}}"#
        );
        serde_json::from_str(Box::leak(json.into_boxed_str())).unwrap()
    }

    #[test]
    fn redelivery_and_second_stage_are_caught_after_commit() {
        let mut d = Dedupe::new(10);
        let k = key("a", "alice");
        assert_eq!(d.check(k, Stage::ResponseStarted), Seen::New);
        d.commit();
        assert_eq!(d.check(k, Stage::ResponseStarted), Seen::Redelivery);
        assert_eq!(d.check(k, Stage::ResponseComplete), Seen::SameRequest);
        assert_eq!(d.check(k, Stage::ResponseComplete), Seen::Redelivery);
    }

    #[test]
    fn rollback_forgets_a_failed_batch() {
        let mut d = Dedupe::new(10);
        let k = key("a", "alice");
        assert_eq!(d.check(k, Stage::ResponseComplete), Seen::New);
        d.rollback();
        assert_eq!(d.check(k, Stage::ResponseComplete), Seen::New);
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = Dedupe::new(2);
        for id in ["1", "2", "3"] {
            d.check(key(id, "u"), Stage::ResponseComplete);
        }
        d.commit();
        assert_eq!(d.len(), 2);
    }
}
