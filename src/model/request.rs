//! One API request's identity, computed once per event and the source of
//! every key derived from it: the redelivery filter's key, the finding id a
//! SIEM deduplicates on, and the history store's idempotency key.
//!
//! `auditID` alone is not an identity: a client may choose it (`Audit-ID`
//! header), and a forged repeat must not hide a second change. The identity
//! also covers the cluster, receive time, verb, URI and user.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::decode::Event;

/// Bytes of [`RequestId::store_key`].
pub const STORE_KEY_LEN: usize = 24;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The request's receive time in µs, 0 when the event's is unknown.
    received_us: i64,
    /// The first 128 bits of a SHA-256: a cryptographic hash, so that ids
    /// never change with a library upgrade.
    digest: [u8; 16],
}

impl RequestId {
    pub fn of(cluster: &str, ev: &Event<'_>) -> RequestId {
        let mut h = Sha256::new();
        for part in [
            cluster,
            ev.audit_id(),
            ev.received_at(),
            ev.verb(),
            &ev.request_uri(),
            ev.username(),
        ] {
            h.update(part.as_bytes());
            // A separator, so that ("ab", "c") and ("a", "bc") differ.
            h.update([0u8]);
        }
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&h.finalize()[..16]);
        RequestId {
            received_us: ev
                .received_at()
                .parse::<jiff::Timestamp>()
                .map_or(0, |t| t.as_microsecond()),
            digest,
        }
    }

    /// The in-memory redelivery filter's key.
    pub fn dedupe_key(&self) -> u128 {
        u128::from_be_bytes(self.digest)
    }

    /// Stable for a request across redeliveries and restarts.
    pub fn finding_id(&self) -> String {
        let mut id = String::with_capacity(32);
        for b in self.digest {
            let _ = write!(id, "{b:02x}");
        }
        id
    }

    /// The receive time (big-endian, so that keys arrive almost in order and
    /// the unique index grows at its right edge) followed by the digest.
    pub fn store_key(&self) -> [u8; STORE_KEY_LEN] {
        let mut key = [0u8; STORE_KEY_LEN];
        // The sign bit flipped: negative times sort before positive ones.
        key[..8].copy_from_slice(&((self.received_us as u64) ^ (1 << 63)).to_be_bytes());
        key[8..].copy_from_slice(&self.digest);
        key
    }

    /// Reads a [`RequestId::store_key`] back.
    pub fn from_store_key(key: &[u8]) -> Option<RequestId> {
        let key: &[u8; STORE_KEY_LEN] = key.try_into().ok()?;
        let mut time = [0u8; 8];
        time.copy_from_slice(&key[..8]);
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&key[8..]);
        Some(RequestId {
            received_us: (u64::from_be_bytes(time) ^ (1 << 63)) as i64,
            digest,
        })
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
    fn forged_audit_id_from_another_user_is_another_request() {
        let a = RequestId::of("c", &event("same", "alice"));
        let b = RequestId::of("c", &event("same", "mallory"));
        let c = RequestId::of("other-cluster", &event("same", "alice"));
        assert_ne!(a, b);
        assert_ne!(a.dedupe_key(), c.dedupe_key());
        assert_eq!(a, RequestId::of("c", &event("same", "alice")));
    }

    #[test]
    fn keys_derive_from_one_identity() {
        let id = RequestId::of("c", &event("a", "alice"));
        let key = id.store_key();
        assert_eq!(RequestId::from_store_key(&key), Some(id));
        assert_eq!(id.finding_id().len(), 32);
        assert!(id.finding_id().chars().all(|c| c.is_ascii_hexdigit()));
        // Store keys sort by receive time first.
        let mut later = id;
        later.received_us += 1;
        assert!(later.store_key() > key);
        assert_eq!(RequestId::from_store_key(&key[..10]), None);
    }

    #[test]
    fn the_finding_id_is_the_sha256_prefix_of_the_request_fields() {
        // Pinned: SIEM rules deduplicate on it, and stored rows carry it.
        let id = RequestId::of("c", &event("a", "alice"));
        let mut h = Sha256::new();
        for p in [
            "c",
            "a",
            "2026-11-20T10:00:00.000001Z",
            "patch",
            "/api/v1/x",
            "alice",
        ] {
            h.update(p.as_bytes());
            h.update([0u8]);
        }
        let hex: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(id.finding_id(), hex);
    }
}
