//! Audit log files and stdin, for `replay`. Files are read in chunks, so a
//! week of logs needs no more memory than its largest document.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use std::time::Instant;

use bytes::Bytes;

use crate::decode::{self, MAX_LISTED, Rejection};
use crate::engine::{Framing, IngestError, Input, Outcome, Stats};
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
pub fn replay_input(
    path: &PathBuf,
    cluster: Option<&str>,
    ingest: &mut dyn FnMut(Input) -> Outcome,
    on_reject: &mut dyn FnMut(&str, Reported<'_>),
) -> Result<Stats, ReplayError> {
    let name = display_name(path);
    let read_err = |source| ReplayError::Read {
        path: name.clone(),
        source,
    };
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(read_err)?)
    };
    // A gzip-compressed log is read through a streaming decompressor.
    let mut reader = decode::decompress_reader(reader).map_err(read_err)?;

    let mut stats = Stats::default();
    let mut rejected = FileRejections::default();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut line = 1usize;
    let mut at_start = true;
    let mut eof = false;
    while !eof || !buf.is_empty() {
        if !eof {
            let before = buf.len();
            buf.resize(before + CHUNK, 0);
            let n = read_some(&mut reader, &mut buf[before..]).map_err(read_err)?;
            buf.truncate(before + n);
            eof = n == 0;
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
        // Decode complete lines only; a document cut by the chunk boundary
        // waits for the next read.
        let region_end = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => continue,
            }
        };
        let input = Input {
            body: Bytes::copy_from_slice(&buf[..region_end]),
            cluster: cluster.map(str::to_owned),
            source: Source::Replay,
            origin: name.clone(),
            received: Instant::now(),
            framing: Framing::Part {
                first_line: line,
                last: eof,
            },
        };
        let accepted = ingest(input)?;
        rejected.add(&name, &accepted.rejections, on_reject);
        stats.add(&accepted.stats);
        let consumed = accepted.consumed;
        line += buf[..consumed].iter().filter(|&&b| b == b'\n').count();
        buf.drain(..consumed);
        if eof {
            break;
        }
    }
    rejected.finish(&name, on_reject);
    Ok(stats)
}

fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
