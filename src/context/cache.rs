//! The lookup cache: an LRU of answers with a TTL, negative answers (404,
//! 403) kept for their own shorter TTL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::meta::Meta;
use crate::config::KubeCacheConfig;
use crate::telemetry::events::{ContextCacheEntries, Emit};

/// An object by cluster and identity (the version it is served at does not
/// change what it is).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub cluster: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// What the API server said.
#[derive(Debug, Clone)]
pub enum Answer {
    Found(Arc<Meta>),
    NotFound,
    Forbidden,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub answer: Answer,
    /// When it was fetched (monotonic, for the TTL).
    pub at: Instant,
    /// When it was fetched (Unix microseconds), to compare with event times.
    pub wall_us: i64,
}

pub struct Cache {
    entries: Mutex<LruCache<Key, Entry>>,
    ttl: Duration,
    negative_ttl: Duration,
}

/// A fresh entry, and whether the cache held an expired one (kept: an
/// earlier copy shows who owned a field before a change).
pub struct Found {
    pub fresh: Option<Entry>,
    pub stale: Option<Entry>,
}

impl Cache {
    pub fn new(config: &KubeCacheConfig) -> Cache {
        let capacity =
            std::num::NonZeroUsize::new(config.capacity).unwrap_or(std::num::NonZeroUsize::MIN);
        Cache {
            entries: Mutex::new(LruCache::new(capacity)),
            ttl: config.ttl,
            negative_ttl: config.negative_ttl,
        }
    }

    pub fn get(&self, key: &Key) -> Found {
        let Ok(mut entries) = self.entries.lock() else {
            return Found {
                fresh: None,
                stale: None,
            };
        };
        let Some(e) = entries.get(key) else {
            return Found {
                fresh: None,
                stale: None,
            };
        };
        let ttl = match e.answer {
            Answer::Found(_) => self.ttl,
            Answer::NotFound | Answer::Forbidden => self.negative_ttl,
        };
        if e.at.elapsed() < ttl {
            Found {
                fresh: Some(e.clone()),
                stale: None,
            }
        } else {
            Found {
                fresh: None,
                stale: Some(e.clone()),
            }
        }
    }

    pub fn put(&self, key: Key, answer: Answer) -> Entry {
        let entry = Entry {
            answer,
            at: Instant::now(),
            wall_us: jiff::Timestamp::now().as_microsecond(),
        };
        if let Ok(mut entries) = self.entries.lock() {
            entries.put(key, entry.clone());
            ContextCacheEntries {
                entries: entries.len(),
            }
            .emit();
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            cluster: "c".into(),
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    #[test]
    fn negative_answers_expire_first_and_capacity_evicts() {
        let cache = Cache::new(&KubeCacheConfig {
            capacity: 2,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::ZERO,
        });
        cache.put(key("a"), Answer::Found(Arc::new(Meta::default())));
        cache.put(key("gone"), Answer::NotFound);
        let gone = cache.get(&key("gone"));
        assert!(gone.fresh.is_none() && gone.stale.is_some());
        assert!(cache.get(&key("a")).fresh.is_some());
        cache.put(key("c"), Answer::Forbidden);
        // `a` was used last, so `gone` went.
        assert!(cache.get(&key("gone")).stale.is_none());
        assert!(cache.get(&key("a")).fresh.is_some());
    }
}
