//! One memory budget for request bodies in flight, shared by every
//! connection: a body holds a reservation for the buffer it fills, from its
//! first byte until its answer is sent, so the sum of what all clients can
//! make the listener hold is bounded, however many connections, streams and
//! gzip bombs they send.
//!
//! A body reserves as it grows (the decompressed size of a gzip body is only
//! known while inflating), not `max_body_bytes` up front: typical batches are
//! a few hundred KB, and reserving the largest size for each would let eight
//! of them spend a 128 MiB budget. A body whose size is known (a plain body
//! with `Content-Length`) reserves it in one step, so it either gets all it
//! needs or does not start.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::telemetry::events::{Emit, InflightBodyBytes};

/// How long a body waits for room before it is refused: long enough for
/// another batch to finish, short enough that the client's retry (with
/// backoff) comes before its own timeout.
pub const WAIT: Duration = Duration::from_secs(2);

/// The budget: a semaphore whose permits are bytes.
#[derive(Debug)]
pub struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
    wait: Duration,
}

/// The budget was spent and stayed spent for the whole wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the memory budget for request bodies in flight is spent (server.max_inflight_body_bytes)")]
pub struct Spent;

impl Budget {
    pub fn new(total: usize) -> Arc<Budget> {
        Budget::with_wait(total, WAIT)
    }

    pub fn with_wait(total: usize, wait: Duration) -> Arc<Budget> {
        let total = total.min(Semaphore::MAX_PERMITS);
        Arc::new(Budget {
            permits: Arc::new(Semaphore::new(total)),
            total,
            wait,
        })
    }

    /// A reservation of nothing yet, for one body.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            permit: None,
            bytes: 0,
        }
    }

    /// Bytes reserved now, all bodies together.
    pub fn in_use(&self) -> usize {
        self.total - self.permits.available_permits()
    }

    fn report(&self) {
        InflightBodyBytes {
            bytes: self.in_use(),
        }
        .emit();
    }
}

/// What one body holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `bytes` in all, waiting (up to the budget's wait) for what is
    /// missing. Never more than the whole budget: that could never be had.
    pub async fn grow_to(&mut self, bytes: usize) -> Result<(), Spent> {
        let Some(more) = bytes.checked_sub(self.bytes).filter(|&n| n > 0) else {
            return Ok(());
        };
        if bytes > self.budget.total {
            return Err(Spent);
        }
        let n = u32::try_from(more).map_err(|_| Spent)?;
        let permits = Arc::clone(&self.budget.permits);
        let got = match permits.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(self.budget.wait, permits.acquire_many_owned(n))
                .await
                .map_err(|_| Spent)?
                // Closed: the semaphore is never closed, but say no rather than panic.
                .map_err(|_| Spent)?,
        };
        match &mut self.permit {
            Some(p) => p.merge(got),
            None => self.permit = Some(got),
        }
        self.bytes = bytes;
        self.budget.report();
        Ok(())
    }

    /// Gives back what is held past `bytes` (a buffer shrunk to its content).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            return;
        }
        if let Some(p) = &mut self.permit {
            drop(p.split(self.bytes - bytes));
        }
        self.bytes = bytes;
        self.budget.report();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.budget.report();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_share_the_budget_and_give_it_back() {
        let budget = Budget::with_wait(1000, Duration::from_millis(20));
        let mut a = budget.reservation();
        a.grow_to(600).await.unwrap();
        a.grow_to(300).await.unwrap();
        assert_eq!(a.bytes(), 600, "growing never shrinks");
        let mut b = budget.reservation();
        assert_eq!(b.grow_to(500).await, Err(Spent));
        assert_eq!(b.bytes(), 0);
        b.grow_to(400).await.unwrap();
        assert_eq!(budget.in_use(), 1000);
        a.shrink_to(100);
        assert_eq!(budget.in_use(), 500);
        drop(a);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_waiting_body_gets_room_given_back_within_the_wait() {
        let budget = Budget::with_wait(100, Duration::from_secs(30));
        let mut a = budget.reservation();
        a.grow_to(100).await.unwrap();
        let waiter = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move {
                let mut b = budget.reservation();
                b.grow_to(50).await.map(|()| b.bytes())
            })
        };
        tokio::task::yield_now().await;
        drop(a);
        assert_eq!(waiter.await.unwrap(), Ok(50));
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_refused_at_once() {
        let budget = Budget::with_wait(100, Duration::from_secs(30));
        let mut a = budget.reservation();
        assert_eq!(a.grow_to(101).await, Err(Spent));
    }
}
