//! Rate limits for log lines that a client or a failing dependency can
//! repeat at will: a few lines per window, then one line saying how many were
//! held back. Counters are never limited.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines allowed per window.
const PER_WINDOW: u64 = 5;
const WINDOW_SECS: u64 = 10;

pub struct RateLimit {
    /// The current window's start (Unix seconds) in the high 40 bits, and
    /// the lines logged in it in the low 24: one atomic, no lock.
    state: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub const fn new() -> RateLimit {
        RateLimit {
            state: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held
    /// back since the last one; `None` when it must be held back.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.allow_at(now)
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        let window = now - now % WINDOW_SECS;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (start, used) = (current >> 24, current & 0xff_ffff);
            let next = if start == window {
                if used >= PER_WINDOW {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                current + 1
            } else {
                (window << 24) | 1
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(seen) => current = seen,
            }
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_window_then_a_count_of_what_was_held_back() {
        let limit = RateLimit::new();
        let t = 1_000_000;
        for _ in 0..PER_WINDOW {
            assert_eq!(limit.allow_at(t), Some(0));
        }
        assert_eq!(limit.allow_at(t + 1), None);
        assert_eq!(limit.allow_at(t + 2), None);
        assert_eq!(limit.allow_at(t + WINDOW_SECS), Some(2));
        assert_eq!(limit.allow_at(t + WINDOW_SECS), Some(0));
    }
}
