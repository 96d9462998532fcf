//! The redelivery filter. The API server retries whole batches, and one
//! request yields up to three events (one per stage), possibly in different
//! batches and in any order: each request may be acted on once.
//!
//! `auditID` alone is not a key: a client may choose it (`Audit-ID` header),
//! and a forged repeat must not hide a second change. The key also covers the
//! cluster, receive time, verb, URI and user.

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroUsize;

use foldhash::quality::FixedState;
use lru::LruCache;

use crate::decode::{Event, Stage};

/// Identifies one API request across its stages and redeliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey(pub u128);

impl RequestKey {
    pub fn of(cluster: &str, ev: &Event<'_>) -> RequestKey {
        let parts = [
            cluster,
            ev.audit_id(),
            ev.received_at(),
            ev.verb(),
            ev.request_uri(),
            ev.username(),
        ];
        let hash = |seed: u64| {
            let mut h = FixedState::with_seed(seed).build_hasher();
            for p in parts {
                h.write(p.as_bytes());
                // A separator so that ("ab","c") and ("a","bc") differ.
                h.write_u8(0xff);
            }
            h.finish()
        };
        RequestKey(
            u128::from(hash(0x6472_6966_7477_6174)) << 64 | u128::from(hash(0x6368_6b65_7973_2121)),
        )
    }
}

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

    fn event(audit_id: &str, user: &str) -> Event<'static> {
        let json = format!(
            r#"{{"auditID":"{audit_id}","stage":"ResponseComplete","verb":"patch","requestURI":"/api/v1/x","requestReceivedTimestamp":"2026-11-20T10:00:00.000001Z","user":{{"username":"{user}"}}}}"#
        );
        serde_json::from_str(Box::leak(json.into_boxed_str())).unwrap()
    }

    #[test]
    fn redelivery_and_second_stage_are_caught_after_commit() {
        let mut d = Dedupe::new(10);
        let k = RequestKey::of("c", &event("a", "alice"));
        assert_eq!(d.check(k, Stage::ResponseStarted), Seen::New);
        d.commit();
        assert_eq!(d.check(k, Stage::ResponseStarted), Seen::Redelivery);
        assert_eq!(d.check(k, Stage::ResponseComplete), Seen::SameRequest);
        assert_eq!(d.check(k, Stage::ResponseComplete), Seen::Redelivery);
    }

    #[test]
    fn rollback_forgets_a_failed_batch() {
        let mut d = Dedupe::new(10);
        let k = RequestKey::of("c", &event("a", "alice"));
        assert_eq!(d.check(k, Stage::ResponseComplete), Seen::New);
        d.rollback();
        assert_eq!(d.check(k, Stage::ResponseComplete), Seen::New);
    }

    #[test]
    fn forged_audit_id_from_another_user_is_a_different_request() {
        let a = RequestKey::of("c", &event("same", "alice"));
        let b = RequestKey::of("c", &event("same", "mallory"));
        let c = RequestKey::of("other-cluster", &event("same", "alice"));
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = Dedupe::new(2);
        for id in ["1", "2", "3"] {
            d.check(
                RequestKey::of("c", &event(id, "u")),
                Stage::ResponseComplete,
            );
        }
        d.commit();
        assert_eq!(d.len(), 2);
    }
}
