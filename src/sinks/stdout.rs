use std::io::{self, Write};

use super::Sink;

/// Findings as JSON lines on stdout; logs never go there.
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn write_lines(&mut self, lines: &[u8], _: &[super::Finding]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(lines)?;
        out.flush()
    }
}
