use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::finding::json_lines;
use super::{Batch, Sink, SinkError};

/// Findings appended to a file as JSON lines.
pub struct FileSink {
    file: File,
    buffer: Vec<u8>,
}

impl FileSink {
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        let open = || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new().create(true).append(true).open(path)
        };
        let file = open().map_err(|e| SinkError::fatal("file", e))?;
        Ok(FileSink {
            file,
            buffer: Vec::new(),
        })
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let findings = batch.findings;
        self.buffer.clear();
        json_lines(findings, &mut self.buffer);
        self.file
            .write_all(&self.buffer)
            .and_then(|()| self.file.flush())
            .map_err(|e| SinkError::of_io("file", e))
    }
}
