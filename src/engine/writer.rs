//! The engine's thread: the only writer of the dedupe filter, per-object
//! state and the history store. Work arrives on one bounded queue, so
//! batches, drift accepts and retention never race each other, and inputs
//! waiting together are delivered in one store transaction (group commit)
//! while each is still acknowledged only after the write.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{AcceptOutcome, Engine, IngestError, Input, Outcome, Ready, prepare};
use crate::config::Config;
use crate::telemetry::events::{Emit, QueueDepth};

enum Work {
    Ingest(Ready, oneshot::Sender<Outcome>),
    Accept {
        id: String,
        by: String,
        reason: String,
        reply: oneshot::Sender<Result<AcceptOutcome, IngestError>>,
    },
    Retention,
    Probe,
    Tick,
}

/// Most inputs delivered in one group.
const MAX_GROUP: usize = 16;

/// Why an input was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The queue is full: try again shortly.
    Full,
    /// The engine has stopped.
    Stopped,
}

/// How sources and the API reach the engine's thread.
#[derive(Clone)]
pub struct Handle {
    queue: mpsc::Sender<Work>,
    decoding: Arc<Decoding>,
}

/// Inputs are decoded and read ahead ([`prepare`]) before they are queued,
/// on the runtime's blocking threads, while the engine thread judges the
/// ones before them. At most one per core at a time: what decoding reads
/// ahead (parsed bodies) is memory the body budget does not count.
struct Decoding {
    config: Arc<Config>,
    slots: Semaphore,
}

/// Starts the engine's thread with a queue of `capacity` inputs. The
/// thread ends once every handle is dropped and the queue is drained.
pub fn spawn(engine: Engine, capacity: usize) -> std::io::Result<(Handle, JoinHandle<()>)> {
    let (queue, work) = mpsc::channel(capacity.max(1));
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let decoding = Arc::new(Decoding {
        config: Arc::clone(&engine.config),
        slots: Semaphore::new(cores),
    });
    let thread = std::thread::Builder::new()
        .name("engine".to_owned())
        .spawn(move || run(engine, work))?;
    Ok((Handle { queue, decoding }, thread))
}

impl Handle {
    /// Decodes an input and queues it without waiting; a full queue is
    /// refused at once, before it is decoded.
    pub async fn try_ingest(&self, input: Input) -> Result<oneshot::Receiver<Outcome>, Busy> {
        if self.is_full() {
            return Err(Busy::Full);
        }
        let ready = self.prepare(input).await?;
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Work::Ingest(ready, reply)) {
            Ok(()) => {
                QueueDepth {
                    batches: self.depth(),
                }
                .emit();
                Ok(answer)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(Busy::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Busy::Stopped),
        }
    }

    /// Decodes an input and queues it, waiting for room.
    pub async fn ingest(&self, input: Input) -> Result<oneshot::Receiver<Outcome>, Busy> {
        let ready = self.prepare(input).await?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Work::Ingest(ready, reply))
            .await
            .map_err(|_| Busy::Stopped)?;
        Ok(answer)
    }

    pub async fn accept_drift(
        &self,
        id: String,
        by: String,
        reason: String,
    ) -> Result<AcceptOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        let work = Work::Accept {
            id,
            by,
            reason,
            reply,
        };
        self.queue
            .send(work)
            .await
            .map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }

    /// Asks for a retention pass, unless the queue is full: batches come first.
    pub fn request_retention(&self) {
        let _ = self.queue.try_send(Work::Retention);
    }

    /// Asks the store to look at its files and recover (see
    /// [`Engine::probe`]), unless the queue is full: batches come first,
    /// and each of them checks the files too.
    pub fn request_probe(&self) {
        let _ = self.queue.try_send(Work::Probe);
    }

    /// Gives the sinks their clock-driven work, unless the queue is full.
    pub fn request_tick(&self) {
        let _ = self.queue.try_send(Work::Tick);
    }

    async fn prepare(&self, input: Input) -> Result<Ready, Busy> {
        let _slot = self
            .decoding
            .slots
            .acquire()
            .await
            .map_err(|_| Busy::Stopped)?;
        let config = Arc::clone(&self.decoding.config);
        tokio::task::spawn_blocking(move || prepare(&config, input))
            .await
            .map_err(|_| Busy::Stopped)
    }

    /// Inputs waiting.
    pub fn depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    pub fn is_full(&self) -> bool {
        self.queue.capacity() == 0
    }

    pub fn is_stopped(&self) -> bool {
        self.queue.is_closed()
    }
}

fn run(mut engine: Engine, mut work: mpsc::Receiver<Work>) {
    let mut later = Vec::new();
    while let Some(item) = work.blocking_recv() {
        match item {
            Work::Ingest(input, reply) => {
                let mut group = vec![(input, reply)];
                while group.len() < MAX_GROUP {
                    match work.try_recv() {
                        Ok(Work::Ingest(input, reply)) => group.push((input, reply)),
                        Ok(other) => {
                            later.push(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                ingest(&mut engine, group);
            }
            other => later.push(other),
        }
        for item in later.drain(..) {
            match item {
                Work::Ingest(input, reply) => ingest(&mut engine, vec![(input, reply)]),
                Work::Accept {
                    id,
                    by,
                    reason,
                    reply,
                } => {
                    let _ = reply.send(engine.accept_drift(&id, &by, &reason));
                }
                Work::Retention => engine.retention(),
                Work::Probe => engine.probe(),
                Work::Tick => engine.tick(),
            }
        }
    }
}

fn ingest(engine: &mut Engine, group: Vec<(Ready, oneshot::Sender<Outcome>)>) {
    let (inputs, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    for (outcome, reply) in engine.ingest_ready(inputs).into_iter().zip(replies) {
        // The client may have gone away; its input was processed all the same.
        let _ = reply.send(outcome);
    }
}

/// How often the sinks get their clock-driven work: alerts folded for a
/// window go out within this of its end.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);

/// How often the store is probed: `/readyz` follows a deleted database
/// file or a full disk within this, and a store recovers within it.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How often retention runs: often enough that the store never holds much
/// more than the retention period, rarely enough to cost nothing.
pub fn retention_interval(retention: Duration) -> Duration {
    (retention / 100).clamp(Duration::from_secs(1), Duration::from_secs(600))
}
