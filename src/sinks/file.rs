use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::Sink;

/// Findings appended to a file as JSON lines.
pub struct FileSink {
    file: File,
}

impl FileSink {
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(FileSink { file })
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write_lines(&mut self, lines: &[u8], _: &[super::Finding]) -> io::Result<()> {
        self.file.write_all(lines)?;
        self.file.flush()
    }
}
