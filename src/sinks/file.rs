//! Findings or alerts appended to a file, one per line, in the configured
//! format, with size-based rotation (`path` -> `path.1` ... `path.N`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::format;
use super::shape::{Alert, Shaper, Stream};
use super::{Batch, Sink, SinkError};
use crate::config::{AlertsConfig, FileSinkConfig};
use crate::model::Time;

pub struct FileSink {
    config: FileSinkConfig,
    file: File,
    /// Bytes in the current file, for rotation.
    size: u64,
    /// Each rendered event, newline included.
    lines: Vec<Vec<u8>>,
    /// Set for the `alerts` stream.
    shaper: Option<Shaper>,
}

impl FileSink {
    pub fn open(config: &FileSinkConfig, alerts: &AlertsConfig) -> Result<Self, SinkError> {
        let (file, size) = open(&config.path).map_err(|e| SinkError::fatal("file", e))?;
        let shaper = (config.stream == Stream::Alerts)
            .then(|| Shaper::new(alerts.fold_window, alerts.max_drifts));
        Ok(FileSink {
            config: config.clone(),
            file,
            size,
            lines: Vec::new(),
            shaper,
        })
    }

    fn render_alerts(&mut self, alerts: &[Alert]) {
        for a in alerts {
            let mut line = Vec::new();
            format::render_alert(self.config.format, a, &mut line);
            line.push(b'\n');
            self.lines.push(line);
        }
    }

    fn render(&mut self, batch: &Batch<'_>, now: &Time) {
        self.lines.clear();
        match &mut self.shaper {
            Some(shaper) => {
                let alerts = shaper.offer(batch, now);
                self.render_alerts(&alerts);
            }
            None => {
                for f in batch.findings {
                    let mut line = Vec::new();
                    format::render_finding(self.config.format, f, &mut line);
                    line.push(b'\n');
                    self.lines.push(line);
                }
            }
        }
    }

    /// Writes the rendered lines, rotating before one that would take the
    /// file past `max_bytes`; a line is never split across files.
    fn flush_lines(&mut self) -> io::Result<()> {
        let lines = std::mem::take(&mut self.lines);
        let mut chunk: Vec<u8> = Vec::new();
        for line in &lines {
            if self.over(chunk.len() as u64, line.len() as u64) {
                self.append(&chunk)?;
                chunk.clear();
                self.rotate()?;
            }
            chunk.extend_from_slice(line);
        }
        self.append(&chunk)
    }

    /// Whether a line of `more` bytes after `pending` unwritten ones would
    /// take a non-empty file past the limit (a line alone larger than the
    /// limit still gets a file of its own).
    fn over(&self, pending: u64, more: u64) -> bool {
        let used = self.size + pending;
        self.config
            .max_bytes
            .is_some_and(|max| used > 0 && used + more > max)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes)?;
        self.file.flush()?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// `path.N-1` -> `path.N` ... `path` -> `path.1`, the oldest deleted.
    /// The file is synced before it is renamed and the directory after, so
    /// a crash leaves every line in one of the files.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let path = &self.config.path;
        let keep = self.config.keep;
        remove_if_exists(&numbered(path, keep))?;
        for n in (1..keep).rev() {
            rename_if_exists(&numbered(path, n), &numbered(path, n + 1))?;
        }
        fs::rename(path, numbered(path, 1))?;
        sync_dir(path)?;
        let (file, size) = open(path)?;
        sync_dir(path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        self.render(batch, &Time::now());
        self.flush_lines().map_err(|e| SinkError::of_io("file", e))
    }

    fn tick(&mut self, now: &Time) -> Result<(), SinkError> {
        let Some(shaper) = &mut self.shaper else {
            return Ok(());
        };
        let due = shaper.due(now);
        if due.is_empty() {
            return Ok(());
        }
        self.lines.clear();
        self.render_alerts(&due);
        self.flush_lines().map_err(|e| SinkError::of_io("file", e))
    }
}

impl Drop for FileSink {
    /// At shutdown, every held update is written: folded changes are not
    /// lost with the process.
    fn drop(&mut self) {
        let Some(shaper) = &mut self.shaper else {
            return;
        };
        let held = shaper.drain();
        self.lines.clear();
        self.render_alerts(&held);
        let _ = self.flush_lines();
    }
}

/// Opens `path` for appending, creating its directory; returns its size.
fn open(path: &Path) -> io::Result<(File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// `path.n`.
pub fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Makes the renames in `path`'s directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
