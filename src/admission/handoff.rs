//! What a review shows that its audit event may not: the old and new
//! objects. An audit policy at `Metadata` (every managed cluster's default)
//! logs no bodies, so the field changes and ownership a review computed are
//! kept here, under the review's uid, until the request's audit event
//! (which carries that uid in the webhook's `review` annotation) takes
//! them. Bounded in entries, bytes and age: an entry whose audit event never
//! comes (the write failed later, the event went to another replica) is
//! dropped, never waited for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::model::{Change, ManagedBy, ObjectRef, Owner};
use crate::telemetry::events::{AdmissionHandoff, Emit};

/// Reviews whose changes wait for their audit event.
pub const MAX_ENTRIES: usize = 20_000;
/// Bytes of their changes' values (JSON text), at most.
pub const MAX_BYTES: usize = 64 << 20;
/// The API server's audit webhook sends a batch within seconds (its
/// `--audit-webhook-batch-max-wait`, 30 s by default) and retries with
/// backoff; past this the event is not coming.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// A review whose changes weigh more is not kept: one object must not
/// push out thousands of others.
const MAX_ENTRY_BYTES: usize = 4 << 20;

/// What the review of one request knew.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub cluster: String,
    pub object: ObjectRef,
    pub changes: Vec<Change>,
    pub managed_by: Option<ManagedBy>,
    pub owner: Option<Owner>,
}

struct Entry {
    admitted: Admitted,
    bytes: usize,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    entries: Option<LruCache<String, Entry>>,
    bytes: usize,
}

/// Shared by the admission handlers (which put) and the engine (which takes).
#[derive(Default)]
pub struct Handoff {
    inner: Mutex<Inner>,
}

impl Handoff {
    pub fn new() -> Handoff {
        Handoff::default()
    }

    /// Keeps `admitted` for the audit event of review `uid`; whether it
    /// was kept (nothing worth handing over, or too large, is not).
    pub fn put(&self, uid: &str, admitted: Admitted) -> bool {
        let bytes = weight(&admitted);
        if bytes > MAX_ENTRY_BYTES || admitted.changes.is_empty() && admitted.managed_by.is_none() {
            return false;
        }
        let mut inner = self.lock();
        let now = Instant::now();
        let Inner {
            entries,
            bytes: held,
        } = &mut *inner;
        let entries = entries.get_or_insert_with(LruCache::unbounded);
        let entry = Entry {
            admitted,
            bytes,
            at: now,
        };
        if let Some(old) = entries.put(uid.to_owned(), entry) {
            *held -= old.bytes;
        }
        *held += bytes;
        let mut dropped = 0;
        while entries.len() > MAX_ENTRIES || *held > MAX_BYTES {
            let Some((_, old)) = entries.pop_lru() else {
                break;
            };
            *held -= old.bytes;
            dropped += 1;
        }
        if dropped > 0 {
            AdmissionHandoff { outcome: "evicted" }.count(dropped);
        }
        true
    }

    /// The review's changes for the audit event of `cluster`'s request on
    /// `object`, if its review (uid `uid`) is still held and was of it.
    pub fn take(&self, uid: &str, cluster: &str, object: &ObjectRef) -> Option<Admitted> {
        let mut inner = self.lock();
        let Inner { entries, bytes } = &mut *inner;
        let entry = entries.as_mut()?.pop(uid);
        let Some(entry) = entry else {
            AdmissionHandoff { outcome: "missing" }.emit();
            return None;
        };
        *bytes -= entry.bytes;
        let a = &entry.admitted;
        let outcome = if entry.at.elapsed() > MAX_AGE {
            "expired"
        } else if a.cluster != cluster || !same_object(&a.object, object) {
            // Only the API server writes these annotations, but anyone with
            // an audit webhook token can post events: a uid is not enough.
            "mismatched"
        } else {
            AdmissionHandoff { outcome: "joined" }.emit();
            return Some(entry.admitted);
        };
        AdmissionHandoff { outcome }.emit();
        None
    }

    /// Drops review `uid`'s entry: its event needed none of it.
    pub fn discard(&self, uid: &str) {
        let mut inner = self.lock();
        let Inner { entries, bytes } = &mut *inner;
        if let Some(entry) = entries.as_mut().and_then(|e| e.pop(uid)) {
            *bytes -= entry.bytes;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it left at worst an entry half-counted.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The review names the resource it was converted to (`matchPolicy:
/// Equivalent` may give `apps/v1` for an `extensions` request): group and
/// version are not compared.
fn same_object(a: &ObjectRef, b: &ObjectRef) -> bool {
    a.resource == b.resource && a.namespace == b.namespace && a.name == b.name
}

fn weight(a: &Admitted) -> usize {
    let value = |v: &serde_json::Value| serde_json::to_string(v).map_or(0, |s| s.len());
    a.changes
        .iter()
        .map(|c| c.path.len() + value(&c.old) + value(&c.new) + 64)
        .sum::<usize>()
        + 256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectRef {
        ObjectRef {
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
            namespace: Some("shop".into()),
            name: Some(name.into()),
            ..ObjectRef::default()
        }
    }

    fn admitted(name: &str, value: &str) -> Admitted {
        Admitted {
            cluster: "prod".into(),
            object: object(name),
            changes: vec![Change {
                path: "spec.replicas".into(),
                old: serde_json::json!(1),
                new: serde_json::json!(value),
                redacted: false,
            }],
            managed_by: None,
            owner: None,
        }
    }

    #[test]
    fn an_entry_is_taken_once_and_only_for_its_own_object_and_cluster() {
        let h = Handoff::new();
        h.put("u1", admitted("api", "3"));
        h.put("u2", admitted("api", "4"));
        h.put("u3", admitted("api", "5"));
        assert!(h.take("u1", "prod", &object("web")).is_none());
        assert!(h.take("u1", "prod", &object("api")).is_none(), "taken once");
        assert!(h.take("u2", "staging", &object("api")).is_none());
        let got = h.take("u3", "prod", &object("api")).unwrap();
        assert_eq!(got.changes[0].new, serde_json::json!("5"));
        assert_eq!(h.lock().bytes, 0, "every byte given back");
    }

    #[test]
    fn entries_are_bounded_in_count_and_bytes() {
        let h = Handoff::new();
        for i in 0..MAX_ENTRIES + 10 {
            h.put(&format!("u{i}"), admitted("api", "x"));
        }
        assert_eq!(h.lock().entries.as_ref().unwrap().len(), MAX_ENTRIES);
        assert!(
            h.take("u0", "prod", &object("api")).is_none(),
            "oldest gone"
        );
        assert!(
            h.take(&format!("u{}", MAX_ENTRIES + 9), "prod", &object("api"))
                .is_some()
        );

        let big = "v".repeat(MAX_ENTRY_BYTES / 8);
        for i in 0..40 {
            h.put(&format!("b{i}"), admitted("api", &big));
        }
        assert!(h.lock().bytes <= MAX_BYTES);
        assert!(h.take("b39", "prod", &object("api")).is_some());
        let huge = "v".repeat(MAX_ENTRY_BYTES + 1);
        assert!(!h.put("huge", admitted("api", &huge)));
        assert!(h.take("huge", "prod", &object("api")).is_none());
    }
}
