//! Splits a body (a webhook request, a Kafka message, a chunk of a log file)
//! into audit events.
//!
//! Accepted shapes, mixed freely in one body: an `EventList`, a single Event,
//! a JSON array of either, JSON lines, and pretty-printed documents one after
//! another. A document that fails is rejected with its line and a reason, and
//! decoding resumes at the next line that starts a document, so one bad line
//! never hides the good events around it.

use serde_json::value::RawValue;

use super::arena::Arena;
use super::encoding::GZIP_MAGIC;
use super::envelope;
use super::event::{Event, NotAnEvent, Stage};

/// An event accepted from a body, with the line its document starts on.
#[derive(Debug)]
pub struct DecodedEvent<'a> {
    pub event: Event<'a>,
    pub stage: Stage,
    pub line: usize,
}

/// Why a document was rejected; the label set of the rejection metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    InvalidUtf8,
    InvalidJson,
    Truncated,
    NotAnEvent,
    /// A compressed or encoded payload that decodes past the arena's limit.
    TooLarge,
    /// Corrupt gzip or base64.
    InvalidEncoding,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::Truncated,
        RejectReason::NotAnEvent,
        RejectReason::TooLarge,
        RejectReason::InvalidEncoding,
    ];

    /// Position in [`RejectReason::ALL`], for per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::Truncated => "truncated",
            RejectReason::NotAnEvent => "not_audit_event",
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidEncoding => "invalid_encoding",
        }
    }
}

/// A rejected document: where it starts and why it is not an audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: usize,
    pub reason: RejectReason,
    pub message: String,
}

/// What a body held.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    pub events: Vec<DecodedEvent<'a>>,
    pub rejections: Vec<Rejection>,
    /// Top-level JSON documents seen (an `EventList` is one document).
    pub documents: usize,
}

impl<'a> Decoded<'a> {
    pub(super) fn reject(&mut self, line: usize, reason: RejectReason, message: impl Into<String>) {
        self.rejections.push(Rejection {
            line,
            reason,
            message: message.into(),
        });
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where owned data goes, and how deeply encoded payloads are nested.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    /// `None` for [`decode_bytes`]: envelopes whose events need owned memory
    /// are then rejected.
    pub(super) arena: Option<&'a Arena>,
    pub(super) depth: u8,
}

/// Decodes a whole body that holds plain audit events (an `EventList`, JSON
/// lines, ...) and the envelopes whose events can be read in place (GKE
/// entries, AKS records whose `log` is an object). Line numbers start at 1.
///
/// Sources use [`decode_bytes_in`]: CloudWatch payloads, AKS `log` strings,
/// gzip and base64 need an arena for the data they unpack, and are rejected
/// here.
pub fn decode_bytes(body: &[u8]) -> Decoded<'_> {
    let mut out = Decoded::default();
    let ctx = Ctx {
        arena: None,
        depth: 0,
    };
    decode_into(body, 1, ctx, &mut out);
    out
}

/// Decodes a whole body, cloud envelopes included; what envelopes unpack is
/// kept in `arena`, which must outlive the result. Line numbers start at 1.
pub fn decode_bytes_in<'a>(body: &'a [u8], arena: &'a Arena) -> Decoded<'a> {
    let mut out = Decoded::default();
    let ctx = Ctx {
        arena: Some(arena),
        depth: 0,
    };
    decode_into(body, 1, ctx, &mut out);
    out
}

/// Decodes a part of a larger input (a chunk of a file) into `out`,
/// numbering lines from `first_line`. A part is never taken for gzip data:
/// a compressed input is decompressed as a stream before it is cut into
/// parts (see [`super::decompress_reader`]), and a line of binary garbage
/// that happens to start a part must be rejected alone, not with the part.
pub fn decode_bytes_into<'a>(
    body: &'a [u8],
    first_line: usize,
    arena: &'a Arena,
    out: &mut Decoded<'a>,
) {
    let ctx = Ctx {
        arena: Some(arena),
        depth: 0,
    };
    decode_part(body, first_line, ctx, out);
}

/// A whole body: gzip data (a Kinesis record, a gzip-compressed webhook or
/// Kafka payload without `Content-Encoding`), or text.
pub(super) fn decode_into<'a>(
    body: &'a [u8],
    first_line: usize,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) {
    if body.starts_with(&GZIP_MAGIC) {
        envelope::decode_gzip(body, first_line, ctx, out);
    } else {
        decode_part(body, first_line, ctx, out);
    }
}

fn decode_part<'a>(body: &'a [u8], first_line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    match std::str::from_utf8(body) {
        Ok(text) => {
            decode_text(text, first_line, true, ctx, out);
        }
        Err(_) => decode_with_bad_utf8(body, first_line, ctx, out),
    }
}

/// Decodes the runs of valid UTF-8 lines as usual and rejects each line that
/// is not UTF-8, rather than guessing at its content.
fn decode_with_bad_utf8<'a>(
    body: &'a [u8],
    first_line: usize,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) {
    let mut segment_start = 0;
    let mut segment_line = first_line;
    let mut line_no = first_line;
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        if let Err(e) = std::str::from_utf8(&body[pos..end]) {
            if let Ok(segment) = std::str::from_utf8(&body[segment_start..pos]) {
                decode_text(segment, segment_line, true, ctx, out);
            }
            out.documents += 1;
            out.reject(
                line_no,
                RejectReason::InvalidUtf8,
                format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1),
            );
            segment_start = end;
            segment_line = line_no + 1;
        }
        line_no += 1;
        pos = end;
    }
    if let Ok(segment) = std::str::from_utf8(&body[segment_start..]) {
        decode_text(segment, segment_line, true, ctx, out);
    }
}

/// Decodes `text`, numbering lines from `first_line`. With `is_final` false,
/// a document cut off by the end of `text` is left for the next call: the
/// return value is how many bytes were consumed. With `is_final` true it is
/// rejected as truncated and all of `text` is consumed. What envelopes
/// unpack is kept in `arena`.
pub fn decode_str<'a>(
    text: &'a str,
    first_line: usize,
    is_final: bool,
    arena: &'a Arena,
    out: &mut Decoded<'a>,
) -> usize {
    let ctx = Ctx {
        arena: Some(arena),
        depth: 0,
    };
    decode_text(text, first_line, is_final, ctx, out)
}

fn decode_text<'a>(
    text: &'a str,
    first_line: usize,
    is_final: bool,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) -> usize {
    let bytes = text.as_bytes();
    let mut lines = LineCounter::new(text, first_line);
    let mut pos = 0;
    // Bytes parsed for documents that were then rejected. Resuming at the
    // next line keeps the good events after a cut line, but re-parses what
    // the broken document already covered; past this budget decoding
    // resumes where the broken document ended instead, so a hostile body of
    // unclosed brackets stays linear.
    let mut rescan_budget = bytes.len().saturating_mul(4).saturating_add(1 << 20);
    loop {
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= bytes.len() {
            return bytes.len();
        }
        let line = lines.line_at(pos);
        let rest = &text[pos..];
        match bytes[pos] {
            b'{' => {
                let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Event<'a>>();
                match stream.next() {
                    Some(Ok(event)) => {
                        out.documents += 1;
                        let end = pos + stream.byte_offset();
                        let doc = &text[pos..end];
                        accept_document(event, line, doc, text, &mut lines, ctx, out);
                        pos = end;
                    }
                    Some(Err(e)) if e.is_eof() && !is_final => return pos,
                    Some(Err(e)) => {
                        out.documents += 1;
                        let Some(next) = resume(text, pos, &e, &mut rescan_budget) else {
                            // Never closed and the budget spent: the rest is inside it.
                            reject_json(&e, line, out);
                            return bytes.len();
                        };
                        if !(e.is_data() && envelope::rescue(&text[pos..next], line, ctx, out)) {
                            reject_json(&e, line, out);
                        }
                        pos = next;
                    }
                    None => return bytes.len(),
                }
            }
            b'[' => {
                let mut stream =
                    serde_json::Deserializer::from_str(rest).into_iter::<Vec<&'a RawValue>>();
                match stream.next() {
                    Some(Ok(items)) => {
                        out.documents += 1;
                        for item in items {
                            let item_line = lines.line_at(offset_in(text, item.get()));
                            match Event::parse(item.get()) {
                                Ok(event) => accept_document(
                                    event,
                                    item_line,
                                    item.get(),
                                    text,
                                    &mut lines,
                                    ctx,
                                    out,
                                ),
                                Err(e)
                                    if e.is_data()
                                        && envelope::rescue(item.get(), item_line, ctx, out) => {}
                                Err(e) => reject_json(&e, item_line, out),
                            }
                        }
                        pos += stream.byte_offset();
                    }
                    Some(Err(e)) if e.is_eof() && !is_final => return pos,
                    Some(Err(e)) => {
                        out.documents += 1;
                        reject_json(&e, line, out);
                        match resume(text, pos, &e, &mut rescan_budget) {
                            Some(next) => pos = next,
                            None => return bytes.len(),
                        }
                    }
                    None => return bytes.len(),
                }
            }
            _ => {
                let next = resync(text, pos);
                if next >= bytes.len() && !is_final && !text.ends_with('\n') {
                    return pos;
                }
                // Kinesis and Firehose hand over base64 text (of gzip).
                if let Some(after) = envelope::decode_base64(text, pos, line, is_final, ctx, out) {
                    pos = after;
                    continue;
                }
                out.documents += 1;
                let snippet: String = rest.chars().take(40).take_while(|c| *c != '\n').collect();
                out.reject(
                    line,
                    RejectReason::InvalidJson,
                    format!("not JSON: a document must start with '{{' or '[', found {snippet:?}"),
                );
                pos = next;
            }
        }
    }
}

/// One document: an Event, an `EventList` whose items are Events, or a
/// cloud envelope. `doc` is its text, within `text`.
fn accept_document<'a>(
    event: Event<'a>,
    line: usize,
    doc: &'a str,
    text: &'a str,
    lines: &mut LineCounter<'a>,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) {
    if let Some(items) = event.items {
        for item in items {
            let item_line = lines.line_at(offset_in(text, item.get()));
            match Event::parse(item.get()) {
                Ok(item_event) if item_event.items.is_none() => {
                    push_or_reject(item_event, item_line, item.get(), out)
                }
                Ok(_) => out.reject(
                    item_line,
                    RejectReason::NotAnEvent,
                    "an EventList item is itself a list",
                ),
                Err(e) => reject_json(&e, item_line, out),
            }
        }
        return;
    }
    if event.kind.as_deref() == Some("EventList") {
        out.reject(line, RejectReason::NotAnEvent, "EventList without items");
        return;
    }
    if let Some(kind) = envelope::kind_of(&event) {
        envelope::decode_envelope(kind, doc, line, ctx, out);
        return;
    }
    push_or_reject(event, line, doc, out);
}

/// Accepts one audit event whose JSON text is `doc`, after filling in what
/// a self-declared but incomplete event lacks ([`Event::complete`]).
pub(super) fn push_event<'a>(
    mut event: Event<'a>,
    line: usize,
    doc: &str,
    out: &mut Decoded<'a>,
) -> Result<(), NotAnEvent> {
    event.complete(doc.as_bytes());
    let stage = event.validate()?;
    out.events.push(DecodedEvent { event, stage, line });
    Ok(())
}

fn push_or_reject<'a>(event: Event<'a>, line: usize, doc: &str, out: &mut Decoded<'a>) {
    if let Err(e) = push_event(event, line, doc, out) {
        out.reject(line, RejectReason::NotAnEvent, e.to_string());
    }
}

fn reject_json(e: &serde_json::Error, doc_line: usize, out: &mut Decoded<'_>) {
    let reason = match e.classify() {
        serde_json::error::Category::Eof => RejectReason::Truncated,
        serde_json::error::Category::Data => RejectReason::NotAnEvent,
        _ => RejectReason::InvalidJson,
    };
    // serde_json appends "at line L column C" relative to the document; say
    // where it is in the body instead.
    let text = e.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    // The document's first line is what a reader looks for; the exact spot
    // follows in the message.
    let at = doc_line + e.line().saturating_sub(1);
    let message = match reason {
        RejectReason::Truncated => format!("truncated JSON: {message}"),
        RejectReason::NotAnEvent => {
            format!(
                "not an audit event: {message} (line {at}, column {})",
                e.column()
            )
        }
        _ => format!("invalid JSON: {message} (line {at}, column {})", e.column()),
    };
    let line = doc_line;
    out.reject(line, reason, message);
}

/// Where decoding resumes after the document at `from` was rejected with
/// `e`. A document that is valid JSON but not an event ends exactly where its
/// value ends, so whatever follows it (another document on the same line, an
/// indented line, a line of garbage) is judged on its own rather than skipped
/// unreported. A broken document has no known end: [`resync`].
fn after_rejected(text: &str, from: usize, e: &serde_json::Error) -> Option<usize> {
    if e.is_data() {
        let mut stream =
            serde_json::Deserializer::from_str(&text[from..]).into_iter::<serde::de::IgnoredAny>();
        if let Some(Ok(_)) = stream.next() {
            return Some(from + stream.byte_offset());
        }
    }
    None
}

/// Where decoding resumes after the document at `from` was rejected with
/// `e`, charging what its parse covered to `budget`; `None` when it was
/// never closed and the budget is spent (the rest of the body is inside it).
fn resume(text: &str, from: usize, e: &serde_json::Error, budget: &mut usize) -> Option<usize> {
    if let Some(end) = after_rejected(text, from, e) {
        return Some(end);
    }
    let reached = if e.is_eof() {
        text.len()
    } else {
        error_line_start(text, from, e)
    };
    let covered = reached.saturating_sub(from);
    if covered <= *budget {
        *budget -= covered;
        return Some(resync(text, from));
    }
    *budget = 0;
    if e.is_eof() {
        return None;
    }
    Some(resync(text, from).max(resync(text, reached.saturating_sub(1))))
}

/// The offset of the start of the line the error was found on.
fn error_line_start(text: &str, from: usize, e: &serde_json::Error) -> usize {
    let error_line = e.line().saturating_sub(1);
    if error_line == 0 {
        return from;
    }
    let mut seen = 0;
    for (i, &b) in text.as_bytes()[from..].iter().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == error_line {
                return from + i + 1;
            }
        }
    }
    text.len()
}

/// Where decoding resumes after a broken document or a line that is not JSON:
/// the next line that starts a document. The inner lines of a pretty-printed
/// document are indented and its closing bracket is at column 0, so a line
/// that starts with anything else is a new document, JSON or not; stopping
/// only at `{` or `[` would skip a garbage line without rejecting it.
fn resync(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = from;
    while let Some(nl) = bytes[i..].iter().position(|&b| b == b'\n') {
        i += nl + 1;
        match bytes.get(i) {
            Some(b) if b.is_ascii_whitespace() || matches!(b, b'}' | b']' | b',' | b'"') => {}
            Some(_) => return i,
            None => break,
        }
    }
    bytes.len()
}

fn offset_in(outer: &str, inner: &str) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// Line numbers for byte offsets that only move forward, without rescanning.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str, first_line: usize) -> Self {
        Self {
            text: text.as_bytes(),
            offset: 0,
            line: first_line,
        }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            let back = self.text[offset..self.offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line -= back;
        } else {
            self.line += self.text[self.offset..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
        }
        self.offset = offset;
        self.line
    }
}

#[cfg(test)]
mod tests;
