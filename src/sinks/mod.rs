//! Where findings go. Each sink owns its encoding, writes a batch and
//! flushes it before the batch is acknowledged, and says whether a failure
//! may pass if retried.

pub mod file;
pub mod finding;
pub mod format;
pub mod kafka;
pub mod net;
pub mod outbox;
pub mod shape;
pub mod stdout;
#[cfg(test)]
pub(crate) mod testing;

use std::io;
use std::path::Path;

pub use finding::Finding;

use crate::model::{DriftClosed, Time};

use crate::config::SinksConfig;
use crate::telemetry::events::{Emit, SinkFailed};

/// What one group of inputs (or one accept) gives the sinks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch<'a> {
    /// The findings, in the order their events were judged.
    pub findings: &'a [Finding<'a>],
    /// The drifts this group closed, after the findings. The native stream
    /// carries findings only; alerting sinks end a drift's thread with these.
    pub closed: &'a [DriftClosed],
}

impl Batch<'_> {
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty() && self.closed.is_empty()
    }
}

pub trait Sink: Send {
    fn name(&self) -> &'static str;
    /// Writes the batch, in order, and returns once it is flushed (or
    /// acknowledged by the receiver, or durably queued for it).
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError>;
    /// Time passed without a batch: work that is due by the clock (alerts
    /// folded for a window) is done here. Called from the same thread as
    /// `write`.
    fn tick(&mut self, _now: &Time) -> Result<(), SinkError> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{sink} sink: {source}")]
pub struct SinkError {
    pub sink: &'static str,
    /// A retry may succeed (a broker or receiver is down or slow); when
    /// false, it will fail the same way until someone fixes the sink.
    pub retriable: bool,
    pub source: io::Error,
}

impl SinkError {
    pub fn retriable(sink: &'static str, source: io::Error) -> SinkError {
        SinkError {
            sink,
            retriable: true,
            source,
        }
    }

    pub fn fatal(sink: &'static str, source: io::Error) -> SinkError {
        SinkError {
            sink,
            retriable: false,
            source,
        }
    }

    /// From an I/O error of a local stream or file: a full disk or a closed
    /// pipe stays so; an interruption may pass.
    pub fn of_io(sink: &'static str, source: io::Error) -> SinkError {
        let retriable = matches!(
            source.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        SinkError {
            sink,
            retriable,
            source,
        }
    }

    pub fn kind(&self) -> &'static str {
        if self.retriable { "retriable" } else { "final" }
    }
}

/// All configured sinks; a batch is written to each in turn.
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
}

impl Sinks {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Sinks { sinks }
    }

    /// The configured sinks; network sinks keep their outboxes under
    /// `sinks.outbox_dir`, or `<data_dir>/outbox`.
    pub fn from_config(config: &SinksConfig, data_dir: &Path) -> Result<Self, SinkError> {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if config.stdout {
            sinks.push(Box::new(stdout::StdoutSink::default()));
        }
        if let Some(kafka) = &config.kafka {
            sinks.push(Box::new(kafka::KafkaSink::new(kafka)?));
        }
        if let Some(file) = &config.file {
            sinks.push(Box::new(file::FileSink::open(file, &config.alerts)?));
        }
        let outbox_dir = config
            .net
            .outbox_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("outbox"));
        for h in &config.net.http {
            sinks.push(Box::new(net::http::start(h, &outbox_dir, &config.alerts)?));
        }
        for s in &config.net.syslog {
            sinks.push(Box::new(net::syslog::start(
                s,
                &outbox_dir,
                &config.alerts,
            )?));
        }
        Ok(Sinks::new(sinks))
    }

    pub fn emit(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        for sink in &mut self.sinks {
            sink.write(batch).map_err(reported)?;
        }
        Ok(())
    }

    /// Gives every sink its clock-driven work; a failure is logged and the
    /// other sinks still get theirs.
    pub fn tick(&mut self, now: &Time) {
        for sink in &mut self.sinks {
            let _ = sink.tick(now).map_err(reported);
        }
    }
}

fn reported(e: SinkError) -> SinkError {
    SinkFailed {
        sink: e.sink,
        kind: e.kind(),
        error: &e.source,
    }
    .emit();
    e
}
