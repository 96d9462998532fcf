//! Sinks that send over the network (HTTP, syslog). `write` renders each
//! finding (or, on the alert stream, each alert) for the receiver and
//! appends it to the sink's on-disk [`outbox`](super::outbox): that append,
//! fsynced, is the acceptance, so a receiver that is down never blocks
//! ingestion. A delivery thread per sink sends the outbox in order, retries
//! with backoff, and moves the cursor on after each success.

mod deliver;
pub mod http;
pub mod syslog;

use std::io;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::outbox::{self, Writer};
use super::shape::{Alert, Shaper, Stream};
use super::{Batch, Finding, Sink, SinkError};
use crate::config::{AlertsConfig, DeliveryConfig};
use crate::model::Time;
use crate::telemetry::events::{Emit, OutboxDepth, OutboxFull};

pub use deliver::{SendError, Transport};

/// How long delivery goes on at shutdown; what is left stays on disk for
/// the next start.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Turns findings and alerts into the records a transport sends.
pub trait Encoder: Send {
    fn finding(&self, f: &Finding<'_>, out: &mut Vec<u8>);
    fn alert(&self, a: &Alert, out: &mut Vec<u8>);
}

pub struct NetSink {
    name: &'static str,
    encoder: Box<dyn Encoder>,
    shaper: Option<Shaper>,
    outbox: Writer,
    limit: u64,
    delivery: Option<JoinHandle<()>>,
}

impl NetSink {
    /// Opens the sink's outbox under `outbox_dir` and starts its delivery.
    pub fn start(
        name: &str,
        stream: Stream,
        alerts: &AlertsConfig,
        outbox_dir: &Path,
        delivery: &DeliveryConfig,
        encoder: Box<dyn Encoder>,
        transport: Box<dyn Transport>,
    ) -> Result<NetSink, SinkError> {
        let name = static_name(name);
        let dir = outbox_dir.join(name);
        let opened = outbox::open(&dir, delivery.outbox_max_bytes).map_err(|e| {
            SinkError::fatal(
                name,
                io::Error::new(e.kind(), format!("outbox {}: {e}", dir.display())),
            )
        })?;
        let (writer, reader) = opened;
        let depth = writer.depth();
        OutboxDepth {
            sink: name,
            records: depth.records,
            bytes: depth.bytes,
            oldest_seconds: None,
        }
        .emit();
        let thread = deliver::spawn(name, reader, transport, delivery.clone())
            .map_err(|e| SinkError::fatal(name, e))?;
        Ok(NetSink {
            name,
            encoder,
            shaper: (stream == Stream::Alerts)
                .then(|| Shaper::new(alerts.fold_window, alerts.max_drifts)),
            outbox: writer,
            limit: delivery.outbox_max_bytes,
            delivery: Some(thread),
        })
    }

    fn append(&mut self, records: &[Vec<u8>]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        let done = self
            .outbox
            .append(now_ms(), records)
            .map_err(|e| SinkError::of_io(self.name, e))?;
        if done.dropped > 0 {
            OutboxFull {
                sink: self.name,
                dropped: done.dropped,
                limit: self.limit,
            }
            .emit();
        }
        let depth = self.outbox.depth();
        OutboxDepth {
            sink: self.name,
            records: depth.records,
            bytes: depth.bytes,
            oldest_seconds: None,
        }
        .emit();
        Ok(())
    }

    fn alerts(&self, alerts: &[Alert]) -> Vec<Vec<u8>> {
        alerts
            .iter()
            .map(|a| {
                let mut out = Vec::new();
                self.encoder.alert(a, &mut out);
                out
            })
            .collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Sink for NetSink {
    fn name(&self) -> &'static str {
        self.name
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let records = match &mut self.shaper {
            Some(shaper) => {
                let alerts = shaper.offer(batch, &Time::now());
                self.alerts(&alerts)
            }
            None => batch
                .findings
                .iter()
                .map(|f| {
                    let mut out = Vec::new();
                    self.encoder.finding(f, &mut out);
                    out
                })
                .collect(),
        };
        self.append(&records)
    }

    fn tick(&mut self, now: &Time) -> Result<(), SinkError> {
        let Some(shaper) = &mut self.shaper else {
            return Ok(());
        };
        let alerts = shaper.due(now);
        let records = self.alerts(&alerts);
        self.append(&records)
    }
}

impl Drop for NetSink {
    fn drop(&mut self) {
        // Held updates are written out first: they then wait on disk if
        // the grace is not enough.
        if let Some(shaper) = &mut self.shaper {
            let alerts = shaper.drain();
            let records = self.alerts(&alerts);
            if let Err(e) = self.append(&records) {
                crate::telemetry::events::SinkFailed {
                    sink: self.name,
                    kind: e.kind(),
                    error: &e.source,
                }
                .emit();
            }
        }
        self.outbox.close();
        if let Some(thread) = self.delivery.take() {
            let _ = thread.join();
        }
    }
}

/// A sink's name as a metric label and an error's `sink` for the process's
/// life: leaked once per configured sink (the config bounds how many).
pub fn static_name(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}

/// A sink that cannot start (a bad CA, certificate or header), named by its
/// config key and name; the process exits on it.
pub fn start_error<'a>(key: &'a str, name: &'a str) -> impl Fn(String) -> SinkError + 'a {
    move |message| {
        SinkError::fatal(
            static_name(name),
            std::io::Error::other(format!("{key} {name}: {message}")),
        )
    }
}
