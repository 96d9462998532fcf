//! A network sink's on-disk outbox: an append-only log of rendered records
//! under `<outbox_dir>/<sink>/`, so that a receiver that is down never
//! blocks ingestion and an acknowledged batch survives a crash.
//!
//! Segment files `<n>.seg` hold frames `len u32 LE | crc32 u32 LE | time_ms
//! u64 LE | payload`, the crc over time and payload. The engine thread
//! appends (and fsyncs) through [`Writer`]; the sink's delivery thread reads
//! in order through [`Reader`] up to what is durable, and after a send
//! records its position in `cursor` and deletes the segments behind it. A
//! crash between a send and the cursor resends (at-least-once). A frame cut
//! short by a crash (a torn tail) is found on open and cut off, so the next
//! append overwrites it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::telemetry::events::Emit;

/// A new segment is started past this: small enough that a delivered one
/// is soon deleted, large enough that there are few files.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
const HEADER: usize = 16;
/// A frame longer than this is damage, not a record (records are one
/// finding or alert, far smaller).
const MAX_RECORD: usize = 64 * 1024 * 1024;
const CURSOR: &str = "cursor";

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When it was appended (Unix milliseconds): the outbox's age.
    pub time_ms: u64,
    pub payload: Vec<u8>,
}

/// A place in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

/// What the writer and the reader share.
#[derive(Debug)]
struct State {
    /// The end of what is durable; the reader stops there.
    head: Pos,
    /// Undelivered frames, and their bytes (what the limit bounds).
    records: u64,
    bytes: u64,
    /// Set by the writer's owner at shutdown: the reader stops waiting.
    closing: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counters half-updated in a way
        // that matters more than stopping delivery would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How much an outbox holds, for its gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    pub records: u64,
    pub bytes: u64,
}

/// What one append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    pub written: usize,
    /// Records refused because the outbox was at its limit.
    pub dropped: usize,
}

/// Opens (or creates) the outbox in `dir`, resuming from its cursor.
pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Writer, Reader)> {
    fs::create_dir_all(dir)?;
    let mut segments = list_segments(dir)?;
    let cursor = read_cursor(dir).unwrap_or_default();
    // Segments wholly behind the cursor were delivered; a crash came
    // between the cursor and their deletion.
    for &s in segments.iter().filter(|&&s| s < cursor.segment) {
        fs::remove_file(segment_path(dir, s))?;
    }
    segments.retain(|&s| s >= cursor.segment);
    let start = match segments.first() {
        Some(&first) if first == cursor.segment => cursor,
        Some(&first) => Pos {
            segment: first,
            offset: 0,
        },
        None => Pos {
            segment: cursor.segment.max(1),
            offset: 0,
        },
    };
    let mut depth = Depth::default();
    let mut head = start;
    for &s in &segments {
        let from = if s == start.segment { start.offset } else { 0 };
        let end = scan(&segment_path(dir, s), from, &mut depth)?;
        head = Pos {
            segment: s,
            offset: end,
        };
    }
    // A cursor past what reads back whole (a segment cut short by hand)
    // resumes at the end of what does.
    let start = start.min(head);
    let file = open_segment(dir, head.segment)?;
    // Cut off a torn tail, so that the next append continues a whole log.
    file.set_len(head.offset)?;
    file.sync_all()?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            head,
            records: depth.records,
            bytes: depth.bytes,
            closing: false,
        }),
        changed: Condvar::new(),
    });
    let writer = Writer {
        dir: dir.to_owned(),
        file,
        at: head,
        max_bytes,
        buffer: Vec::new(),
        shared: Arc::clone(&shared),
    };
    let reader = Reader {
        dir: dir.to_owned(),
        at: start,
        open: None,
        shared,
    };
    Ok((writer, reader))
}

/// Counts the whole frames of a segment from `from`; returns where they end.
fn scan(path: &Path, from: u64, depth: &mut Depth) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut at = from.min(len);
    file.seek(SeekFrom::Start(at))?;
    let mut reader = io::BufReader::new(file);
    while let Some(record) = read_frame(&mut reader, len - at)? {
        let size = frame_len(record.payload.len());
        at += size;
        depth.records += 1;
        depth.bytes += size;
    }
    Ok(at)
}

fn frame_len(payload: usize) -> u64 {
    (HEADER + payload) as u64
}

/// One frame, or `None` at the end of the segment or at a frame that is cut
/// short or damaged (nothing after it is trusted).
fn read_frame(r: &mut impl Read, left: u64) -> io::Result<Option<Record>> {
    if left < HEADER as u64 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER];
    r.read_exact(&mut header)?;
    let [l0, l1, l2, l3, c0, c1, c2, c3, t @ ..] = header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    if len > MAX_RECORD || frame_len(len) > left {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    if checksum(&t, &payload) != crc {
        return Ok(None);
    }
    Ok(Some(Record {
        time_ms: u64::from_le_bytes(t),
        payload,
    }))
}

fn checksum(time: &[u8; 8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(time);
    h.update(payload);
    h.finalize()
}

fn encode(time_ms: u64, payload: &[u8], out: &mut Vec<u8>) {
    let t = time_ms.to_le_bytes();
    // Records are bounded far below 4 GiB by what renders them.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(&t, payload).to_le_bytes());
    out.extend_from_slice(&t);
    out.extend_from_slice(payload);
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.seg"))
}

fn open_segment(dir: &Path, segment: u64) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(segment_path(dir, segment))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(n) = n.parse() {
            segments.push(n);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// The cursor, `SEGMENT OFFSET`; `None` when absent or unreadable (then
/// delivery starts at the oldest segment: a resend, never a loss).
fn read_cursor(dir: &Path) -> Option<Pos> {
    let text = fs::read_to_string(dir.join(CURSOR)).ok()?;
    let (s, o) = text.trim().split_once(' ')?;
    Some(Pos {
        segment: s.parse().ok()?,
        offset: o.parse().ok()?,
    })
}

fn write_cursor(dir: &Path, at: Pos) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    fs::write(&tmp, format!("{} {}\n", at.segment, at.offset))?;
    // No fsync: a cursor lost to a power cut means a resend, which the
    // receivers dedupe on the finding id; a sync per delivered batch
    // would cost more than it saves.
    fs::rename(tmp, dir.join(CURSOR))
}

/// The appending side, owned by the sink on the engine thread.
pub struct Writer {
    dir: PathBuf,
    file: File,
    at: Pos,
    max_bytes: u64,
    buffer: Vec<u8>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Appends records, durably (fsync) before it returns; those past the
    /// limit are dropped and counted. On an error nothing of this call is
    /// kept.
    pub fn append(&mut self, time_ms: u64, records: &[Vec<u8>]) -> io::Result<Appended> {
        let held = self.shared.lock().bytes;
        let mut done = Appended::default();
        let mut added = 0;
        self.buffer.clear();
        for payload in records {
            let size = frame_len(payload.len());
            if held + added + size > self.max_bytes {
                done.dropped += 1;
                continue;
            }
            if self.at.offset + self.buffered() >= SEGMENT_BYTES {
                self.flush_buffer()?;
                self.roll()?;
            }
            encode(time_ms, payload, &mut self.buffer);
            added += size;
            done.written += 1;
        }
        self.flush_buffer()?;
        let mut state = self.shared.lock();
        state.head = self.at;
        state.records += done.written as u64;
        state.bytes += added;
        drop(state);
        self.shared.changed.notify_all();
        Ok(done)
    }

    fn buffered(&self) -> u64 {
        self.buffer.len() as u64
    }

    /// Writes and syncs the buffer; on failure the segment is cut back to
    /// where it was, so no partial frame stays before the next append.
    fn flush_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all(&self.buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.at.offset);
            return Err(e);
        }
        self.at.offset += self.buffered();
        self.buffer.clear();
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        let next = self.at.segment + 1;
        self.file = open_segment(&self.dir, next)?;
        // The new file's name must survive a crash with the records in it.
        File::open(&self.dir)?.sync_all()?;
        self.at = Pos {
            segment: next,
            offset: 0,
        };
        Ok(())
    }

    pub fn depth(&self) -> Depth {
        let state = self.shared.lock();
        Depth {
            records: state.records,
            bytes: state.bytes,
        }
    }

    /// The reader stops waiting for more (shutdown).
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
    }
}

/// Records read but not yet committed, and where they end.
#[derive(Debug, Default)]
pub struct Pending {
    pub records: Vec<Record>,
    pub bytes: u64,
    pub end: Pos,
}

/// The delivering side, owned by the sink's delivery thread.
pub struct Reader {
    dir: PathBuf,
    at: Pos,
    open: Option<(u64, File)>,
    shared: Arc<Shared>,
}

impl Reader {
    /// Waits up to `wait` for a record; `false` when none came (or the
    /// outbox is closing and empty).
    pub fn wait(&self, wait: Duration) -> bool {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, wait, |s| s.head == self.at && !s.closing)
            .unwrap_or_else(|p| p.into_inner());
        state.head != self.at
    }

    /// Sleeps `d`, or until the outbox is closed when it is not yet (so
    /// that a backoff does not hold up shutdown, and a backoff during the
    /// shutdown grace still waits).
    pub fn sleep(&self, d: Duration) {
        let state = self.shared.lock();
        if state.closing {
            drop(state);
            std::thread::sleep(d);
            return;
        }
        let _ = self
            .shared
            .changed
            .wait_timeout_while(state, d, |s| !s.closing);
    }

    pub fn is_closing(&self) -> bool {
        self.shared.lock().closing
    }

    /// The next records in order, at most `max_items` and (past the first)
    /// `max_bytes` of payload; empty when everything durable was read.
    pub fn peek(&mut self, max_items: usize, max_bytes: usize) -> io::Result<Pending> {
        let head = self.shared.lock().head;
        let mut pending = Pending {
            end: self.at,
            ..Pending::default()
        };
        let mut payload = 0;
        while pending.records.len() < max_items && pending.end < head {
            let Some((record, next)) = self.read_at(pending.end, head)? else {
                break;
            };
            if !pending.records.is_empty() && payload + record.payload.len() > max_bytes {
                break;
            }
            payload += record.payload.len();
            pending.bytes += frame_len(record.payload.len());
            pending.records.push(record);
            pending.end = next;
        }
        Ok(pending)
    }

    /// The record at `at` and the position after it, moving on to the next
    /// segment at the end of one.
    fn read_at(&mut self, mut at: Pos, head: Pos) -> io::Result<Option<(Record, Pos)>> {
        loop {
            let end = if at.segment == head.segment {
                head.offset
            } else {
                fs::metadata(segment_path(&self.dir, at.segment)).map_or(0, |m| m.len())
            };
            if at.offset < end {
                let file = self.segment(at.segment)?;
                file.seek(SeekFrom::Start(at.offset))?;
                if let Some(record) = read_frame(file, end - at.offset)? {
                    let next = at.offset + frame_len(record.payload.len());
                    return Ok(Some((record, Pos { offset: next, ..at })));
                }
                // Damage inside a segment (not a torn tail, which open cut
                // off): what follows in that segment cannot be framed.
                crate::telemetry::events::OutboxDamaged {
                    dir: &self.dir,
                    segment: at.segment,
                    offset: at.offset,
                }
                .emit();
            }
            if at.segment >= head.segment {
                return Ok(None);
            }
            at = Pos {
                segment: self.next_segment(at.segment)?.unwrap_or(head.segment),
                offset: 0,
            };
        }
    }

    /// The segment's file, kept open while the reader is in it.
    fn segment(&mut self, segment: u64) -> io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|(s, _)| *s != segment) {
            let file = File::open(segment_path(&self.dir, segment))?;
            self.open = Some((segment, file));
        }
        match &mut self.open {
            Some((_, file)) => Ok(file),
            None => Err(io::Error::other("outbox segment not open")),
        }
    }

    fn next_segment(&self, after: u64) -> io::Result<Option<u64>> {
        Ok(list_segments(&self.dir)?.into_iter().find(|&s| s > after))
    }

    /// Marks `pending` delivered (or given up on): the cursor moves past
    /// it and the segments behind it are deleted.
    pub fn commit(&mut self, pending: &Pending) -> io::Result<()> {
        if pending.end == self.at {
            return Ok(());
        }
        write_cursor(&self.dir, pending.end)?;
        for s in list_segments(&self.dir)? {
            if s < pending.end.segment {
                if self.open.as_ref().is_some_and(|(o, _)| *o == s) {
                    self.open = None;
                }
                fs::remove_file(segment_path(&self.dir, s))?;
            }
        }
        self.at = pending.end;
        let mut state = self.shared.lock();
        state.records = state.records.saturating_sub(pending.records.len() as u64);
        state.bytes = state.bytes.saturating_sub(pending.bytes);
        Ok(())
    }

    pub fn depth(&self) -> Depth {
        let state = self.shared.lock();
        Depth {
            records: state.records,
            bytes: state.bytes,
        }
    }
}

#[cfg(test)]
mod tests;
