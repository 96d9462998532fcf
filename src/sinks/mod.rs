//! Where findings go. Every sink writes a batch and flushes it before the
//! batch is acknowledged.

pub mod file;
pub mod finding;
pub mod kafka;
pub mod stdout;

use std::io;

pub use finding::{Actor, DriftRef, Finding, Impersonator, ResourceRef};

use crate::config::SinksConfig;
use crate::telemetry::events;

/// One destination for JSON-lines findings.
pub trait Sink: Send {
    fn name(&self) -> &'static str;
    /// Writes a batch and returns once it is flushed (or acknowledged).
    /// `lines` is `findings` serialized, one JSON object per line, in order.
    fn write_lines(&mut self, lines: &[u8], findings: &[Finding]) -> io::Result<()>;
}

#[derive(Debug, thiserror::Error)]
#[error("{sink} sink: {source}")]
pub struct SinkError {
    pub sink: &'static str,
    pub source: io::Error,
}

/// All configured sinks; a batch is written to each in turn.
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
    buffer: Vec<u8>,
}

impl Sinks {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Sinks {
            sinks,
            buffer: Vec::new(),
        }
    }

    pub fn from_config(config: &SinksConfig) -> Result<Self, SinkError> {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if config.stdout {
            sinks.push(Box::new(stdout::StdoutSink));
        }
        if let Some(kafka) = &config.kafka {
            sinks.push(Box::new(kafka::KafkaSink::new(kafka).map_err(
                |source| SinkError {
                    sink: "kafka",
                    source,
                },
            )?));
        }
        if let Some(path) = &config.file {
            sinks.push(Box::new(file::FileSink::open(path).map_err(|source| {
                SinkError {
                    sink: "file",
                    source,
                }
            })?));
        }
        Ok(Sinks::new(sinks))
    }

    pub fn emit(&mut self, findings: &[Finding]) -> Result<(), SinkError> {
        if findings.is_empty() {
            return Ok(());
        }
        self.buffer.clear();
        for f in findings {
            // Serializing our own struct to a Vec cannot fail.
            if serde_json::to_writer(&mut self.buffer, f).is_ok() {
                self.buffer.push(b'\n');
            }
        }
        for sink in &mut self.sinks {
            if let Err(source) = sink.write_lines(&self.buffer, findings) {
                let err = SinkError {
                    sink: sink.name(),
                    source,
                };
                events::sink_failed(err.sink, &err.source);
                return Err(err);
            }
        }
        Ok(())
    }
}
