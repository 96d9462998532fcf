//! A sink's delivery thread: the outbox sent in order, in batches, with
//! retries (exponential backoff with jitter, `Retry-After` honoured) until
//! the receiver takes each batch; the cursor moves on only after that.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::DeliveryConfig;
use crate::sinks::outbox::{Pending, Reader, Record};
use crate::telemetry::events::{
    Emit, OutboxDepth, SinkBatchRefused, SinkDelivered, SinkSendRetried,
};

use super::SHUTDOWN_GRACE;

/// Why a send did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The receiver is down, slow or busy: the same batch is sent again,
    /// after `after` when the receiver said when (429 `Retry-After`).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// The receiver refuses this batch and would refuse it again (a 4xx
    /// other than 408 and 429): it is dropped, so that one bad record
    /// does not stop the sink forever.
    Refused { error: String },
}

/// Sends one batch of records, in order, to the receiver.
pub trait Transport: Send {
    fn send(&mut self, records: &[Record]) -> Result<(), SendError>;
}

/// The most payload bytes in one batch (past its first record).
const BATCH_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The longest `Retry-After` honoured: a longer one is taken as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

pub(super) fn spawn(
    name: &'static str,
    reader: Reader,
    transport: Box<dyn Transport>,
    config: DeliveryConfig,
) -> io::Result<JoinHandle<()>> {
    let mut delivery = Delivery {
        name,
        reader,
        transport,
        config,
        grace_until: None,
    };
    std::thread::Builder::new()
        .name(format!("sink-{name}"))
        .spawn(move || delivery.run())
}

struct Delivery {
    name: &'static str,
    reader: Reader,
    transport: Box<dyn Transport>,
    config: DeliveryConfig,
    /// Set once shutdown began: delivery stops at this instant.
    grace_until: Option<Instant>,
}

impl Delivery {
    fn run(&mut self) {
        while !self.out_of_time() {
            let pending = match self.next_batch() {
                Ok(Some(p)) => p,
                Ok(None) if self.reader.is_closing() => return,
                Ok(None) => continue,
                Err(e) => {
                    self.retried(&format!("reading the outbox: {e}"), Duration::from_secs(1));
                    continue;
                }
            };
            if self.send(&pending) {
                self.commit(&pending);
            }
        }
    }

    /// Past the shutdown grace (which starts when the outbox is closed).
    fn out_of_time(&mut self) -> bool {
        if self.grace_until.is_none() && self.reader.is_closing() {
            self.grace_until = Some(Instant::now() + SHUTDOWN_GRACE);
        }
        self.grace_until.is_some_and(|t| Instant::now() >= t)
    }

    /// The next batch: waits for a first record, then up to
    /// `batch_max_wait` from its append for the batch to fill.
    fn next_batch(&mut self) -> io::Result<Option<Pending>> {
        if !self.reader.wait(Duration::from_millis(500)) {
            return Ok(None);
        }
        let max = self.config.batch_max_items;
        loop {
            let pending = self.reader.peek(max, BATCH_MAX_BYTES)?;
            let Some(first) = pending.records.first() else {
                return Ok(None);
            };
            let age = age(first.time_ms);
            self.depth(Some(age.as_secs_f64()));
            let full = pending.records.len() >= max || pending.bytes >= BATCH_MAX_BYTES as u64;
            if full || age >= self.config.batch_max_wait || self.reader.is_closing() {
                return Ok(Some(pending));
            }
            self.reader.sleep(self.config.batch_max_wait - age);
        }
    }

    /// Sends until the receiver takes the batch or refuses it (`true`: move
    /// on), or shutdown runs out of time (`false`: it stays on disk).
    fn send(&mut self, pending: &Pending) -> bool {
        let mut backoff = self.config.retry_initial_backoff;
        loop {
            match self.transport.send(&pending.records) {
                Ok(()) => {
                    SinkDelivered {
                        sink: self.name,
                        records: pending.records.len(),
                    }
                    .emit();
                    return true;
                }
                Err(SendError::Refused { error }) => {
                    SinkBatchRefused {
                        sink: self.name,
                        error: &error,
                        records: pending.records.len(),
                    }
                    .emit();
                    return true;
                }
                Err(SendError::Retry { error, after }) => {
                    let wait = after.map_or_else(|| jitter(backoff), |a| a.min(MAX_RETRY_AFTER));
                    self.retried(&error, wait);
                    backoff = (backoff * 2).min(self.config.retry_max_backoff);
                    if self.out_of_time() {
                        return false;
                    }
                }
            }
        }
    }

    fn retried(&mut self, error: &str, wait: Duration) {
        SinkSendRetried {
            sink: self.name,
            error,
            retry_in: wait,
        }
        .emit();
        let wait = match self.grace_until {
            Some(t) => wait.min(t.saturating_duration_since(Instant::now())),
            None => wait,
        };
        self.reader.sleep(wait);
    }

    fn commit(&mut self, pending: &Pending) {
        if let Err(e) = self.reader.commit(pending) {
            // The batch went out; a cursor not written means it goes again
            // (at-least-once), never that it is lost.
            self.retried(
                &format!("writing the outbox cursor: {e}"),
                Duration::from_secs(1),
            );
            return;
        }
        self.depth(None);
    }

    fn depth(&self, oldest: Option<f64>) {
        let d = self.reader.depth();
        OutboxDepth {
            sink: self.name,
            records: d.records,
            bytes: d.bytes,
            oldest_seconds: Some(if d.records == 0 {
                0.0
            } else {
                oldest.unwrap_or(0.0)
            }),
        }
        .emit();
    }
}

fn age(time_ms: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(Duration::from_millis(time_ms))
}

/// Between half of `d` and all of it, so that sinks that failed together
/// do not retry together.
fn jitter(d: Duration) -> Duration {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    let unit = (h.finish() % 1_000_001) as f64 / 1_000_000.0;
    d.mul_f64(0.5 + unit / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let d = Duration::from_millis(800);
        for _ in 0..200 {
            let j = jitter(d);
            assert!(j >= d / 2 && j <= d, "{j:?}");
        }
    }
}
