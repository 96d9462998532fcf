//! Where findings go. Each sink owns its encoding, writes a batch and
//! flushes it before the batch is acknowledged, and says whether a failure
//! may pass if retried.

pub mod file;
pub mod finding;
pub mod kafka;
pub mod stdout;

use std::io;

pub use finding::Finding;

use crate::config::SinksConfig;
use crate::telemetry::events::{Emit, SinkFailed};

pub trait Sink: Send {
    fn name(&self) -> &'static str;
    /// Writes `findings`, in order, and returns once they are flushed (or
    /// acknowledged by the receiver).
    fn write(&mut self, findings: &[Finding<'_>]) -> Result<(), SinkError>;
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

    pub fn from_config(config: &SinksConfig) -> Result<Self, SinkError> {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if config.stdout {
            sinks.push(Box::new(stdout::StdoutSink::default()));
        }
        if let Some(kafka) = &config.kafka {
            sinks.push(Box::new(kafka::KafkaSink::new(kafka)?));
        }
        if let Some(path) = &config.file {
            sinks.push(Box::new(file::FileSink::open(path)?));
        }
        Ok(Sinks::new(sinks))
    }

    pub fn emit(&mut self, findings: &[Finding<'_>]) -> Result<(), SinkError> {
        if findings.is_empty() {
            return Ok(());
        }
        for sink in &mut self.sinks {
            if let Err(e) = sink.write(findings) {
                SinkFailed {
                    sink: e.sink,
                    kind: e.kind(),
                    error: &e.source,
                }
                .emit();
                return Err(e);
            }
        }
        Ok(())
    }
}
