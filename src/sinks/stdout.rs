use std::io::{self, Write};

use super::finding::json_lines;
use super::{Batch, Sink, SinkError};

/// Findings as JSON lines on stdout; logs never go there.
#[derive(Default)]
pub struct StdoutSink {
    buffer: Vec<u8>,
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let findings = batch.findings;
        self.buffer.clear();
        json_lines(findings, &mut self.buffer);
        let mut out = io::stdout().lock();
        out.write_all(&self.buffer)
            .and_then(|()| out.flush())
            .map_err(|e| SinkError::of_io("stdout", e))
    }
}
