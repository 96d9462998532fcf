//! Audit log files and stdin, for `replay`. Files are read in chunks, so a
//! week of logs needs no more memory than its largest document.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use std::time::Instant;

use bytes::Bytes;

use crate::config::Config;
use crate::decode::{self, MAX_LISTED, Rejection};
use crate::engine::{Framing, IngestError, Input, Outcome, Ready, Stats, prepare};
use crate::telemetry::events::Source;

const CHUNK: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Read { path: String, source: io::Error },
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// How an input is named in messages: its path, or `<stdin>` for `-`.
pub fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

/// What replay says of a file's rejected documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported<'a> {
    /// One of the first [`MAX_LISTED`] of the file.
    One(&'a Rejection),
    /// The rest, once the file is read: counted, not listed, so that a
    /// file of millions of bad lines does not print millions of lines.
    More { count: usize, last_line: usize },
}

impl Reported<'_> {
    /// `FILE:LINE: message`, or `FILE: N more ...`: a line of stderr.
    pub fn display(&self, name: &str) -> String {
        match self {
            Reported::One(r) => format!("{name}:{}: {}", r.line, r.message),
            Reported::More { count, last_line } => format!(
                "{name}: {count} more document(s) rejected, the last on line {last_line}; only the first {MAX_LISTED} are listed"
            ),
        }
    }
}

/// Counts a file's rejections across its chunks, listing the first.
#[derive(Default)]
struct FileRejections {
    listed: usize,
    more: usize,
    last_line: usize,
}

impl FileRejections {
    fn add(
        &mut self,
        name: &str,
        rejections: &decode::Rejections,
        on_reject: &mut dyn FnMut(&str, Reported<'_>),
    ) {
        for r in rejections.iter() {
            if self.listed < MAX_LISTED {
                self.listed += 1;
                on_reject(name, Reported::One(r));
            } else {
                self.more += 1;
            }
        }
        self.more += rejections.unlisted();
        if rejections.total() > 0 {
            self.last_line = rejections.last_line();
        }
    }

    fn finish(&self, name: &str, on_reject: &mut dyn FnMut(&str, Reported<'_>)) {
        if self.more > 0 {
            let (count, last_line) = (self.more, self.last_line);
            on_reject(name, Reported::More { count, last_line });
        }
    }
}

/// Replays one file through `ingest` (the engine), a chunk at a time. The
/// first rejected documents are passed to `on_reject` with the file's name,
/// then how many more there were; the rest of the file is still processed.
///
/// A reader thread reads and decodes ([`prepare`]) each chunk while the
/// calling thread judges the one before: at most [`AHEAD`] chunks wait.
pub fn replay_input(
    path: &PathBuf,
    cluster: Option<&str>,
    config: &Config,
    ingest: &mut dyn FnMut(Ready) -> Outcome,
    on_reject: &mut dyn FnMut(&str, Reported<'_>),
) -> Result<Stats, ReplayError> {
    let name = display_name(path);
    let read_err = |source| ReplayError::Read {
        path: name.clone(),
        source,
    };
    let reader: Box<dyn Read + Send> = if path == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(read_err)?)
    };
    // A gzip-compressed log is read through a streaming decompressor.
    let reader = decode::decompress_reader(reader).map_err(read_err)?;
    let mut stats = Stats::default();
    let mut rejected = FileRejections::default();
    std::thread::scope(|scope| {
        let (chunks, received) = std::sync::mpsc::sync_channel(AHEAD);
        let chunker = Chunker {
            reader,
            cluster,
            origin: &name,
            config,
        };
        scope.spawn(move || chunker.run(&chunks));
        // A failed ingest returns here, dropping `received`: the reader's
        // next send fails and it stops.
        for chunk in received {
            let accepted = ingest(chunk.map_err(read_err)?)?;
            rejected.add(&name, &accepted.rejections, on_reject);
            stats.add(&accepted.stats);
        }
        Ok::<(), ReplayError>(())
    })?;
    rejected.finish(&name, on_reject);
    Ok(stats)
}

/// Chunks decoded ahead of the one being judged.
const AHEAD: usize = 2;

/// Reads a file in chunks cut after a newline and decodes each.
struct Chunker<'a> {
    reader: Box<dyn Read + Send>,
    cluster: Option<&'a str>,
    origin: &'a str,
    config: &'a Config,
}

impl Chunker<'_> {
    fn run(mut self, chunks: &std::sync::mpsc::SyncSender<io::Result<Ready>>) {
        if let Err(e) = self.chunks(chunks) {
            let _ = chunks.send(Err(e));
        }
    }

    /// Sends each chunk decoded; stops when the receiver is gone.
    fn chunks(
        &mut self,
        chunks: &std::sync::mpsc::SyncSender<io::Result<Ready>>,
    ) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut line = 1usize;
        let mut at_start = true;
        let mut eof = false;
        while !eof || !buf.is_empty() {
            if !eof {
                // `take` + `read_to_end` read into spare capacity: no chunk
                // of zeroes written first.
                let before = buf.len();
                (&mut self.reader)
                    .take(CHUNK as u64)
                    .read_to_end(&mut buf)?;
                eof = buf.len() == before;
            }
            if at_start && buf.len() >= 3 || eof {
                if at_start && buf.starts_with(b"\xEF\xBB\xBF") {
                    buf.drain(..3);
                }
                at_start = false;
            }
            if at_start {
                continue;
            }
            // Decode complete lines only; a document cut by the chunk
            // boundary waits for the next read.
            let region_end = if eof {
                buf.len()
            } else {
                match buf.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => continue,
                }
            };
            // The next chunk's buffer, sized for it at once: growing it
            // read by read would copy it a dozen times.
            let mut tail = Vec::with_capacity(CHUNK + buf.len() - region_end);
            tail.extend_from_slice(&buf[region_end..]);
            buf.truncate(region_end);
            let body = Bytes::from(std::mem::replace(&mut buf, tail));
            let ready = prepare(self.config, self.input(body, line, eof));
            let consumed = ready.borrow_dependent().consumed;
            let body = &ready.input().body;
            line += body[..consumed].iter().filter(|&&b| b == b'\n').count();
            if consumed < body.len() {
                // A document the decoder left for the next chunk.
                let mut next = Vec::with_capacity(CHUNK + body.len() - consumed + buf.len());
                next.extend_from_slice(&body[consumed..]);
                next.extend_from_slice(&buf);
                buf = next;
            }
            let last = eof;
            if chunks.send(Ok(ready)).is_err() || last {
                return Ok(());
            }
        }
        Ok(())
    }

    fn input(&self, body: Bytes, first_line: usize, last: bool) -> Input {
        Input {
            body,
            cluster: self.cluster.map(str::to_owned),
            source: Source::Replay,
            origin: self.origin.to_owned(),
            received: Instant::now(),
            framing: Framing::Part { first_line, last },
        }
    }
}
