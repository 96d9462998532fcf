//! Splits a body (a webhook request, a Kafka message, a chunk of a log file)
//! into audit events.
//!
//! Accepted shapes, mixed freely in one body: an `EventList`, a single Event,
//! a JSON array of either, JSON lines, and pretty-printed documents one after
//! another. A document that fails is rejected with its line and a reason, and
//! decoding resumes at the next line that starts a document, so one bad line
//! never hides the good events around it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::arena::Arena;
use super::decoded::{Decoded, DecodedEvent, RejectReason};
use super::encoding::GZIP_MAGIC;
use super::envelope::{self, Label};
use super::event::{Event, NotAnEvent, opt_str};
use super::snippet;

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
    decode_body(body, arena, &mut out);
    out
}

/// [`decode_bytes_in`] into `out`, within the limits `out` was made with
/// ([`Decoded::with_limits`]).
pub fn decode_body<'a>(body: &'a [u8], arena: &'a Arena, out: &mut Decoded<'a>) {
    let ctx = Ctx {
        arena: Some(arena),
        depth: 0,
    };
    decode_into(body, 1, ctx, out);
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
    out.scanned(body.len());
    let mut segment_start = 0;
    let mut segment_line = first_line;
    let mut line_no = first_line;
    let mut pos = 0;
    while pos < body.len() && !out.over_budget() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        if let Err(e) = std::str::from_utf8(&body[pos..end]) {
            if let Ok(segment) = std::str::from_utf8(&body[segment_start..pos]) {
                decode_text(segment, segment_line, true, ctx, out);
            }
            out.document();
            out.reject_with(line_no, RejectReason::InvalidUtf8, || {
                format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1)
            });
            segment_start = end;
            segment_line = line_no + 1;
        }
        line_no += 1;
        pos = end;
    }
    if let Ok(segment) = std::str::from_utf8(&body[segment_start..pos]) {
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

/// Where one call of [`decode_text`] is.
struct Cursor<'a> {
    text: &'a str,
    lines: LineCounter<'a>,
    is_final: bool,
    // Bytes parsed for documents that were then rejected. Resuming at the
    // next line keeps the good events after a cut line, but re-parses what
    // the broken document already covered; past this budget decoding
    // resumes where the broken document ended instead, so a hostile body of
    // unclosed brackets stays linear.
    rescan_budget: usize,
}

/// What to do after one document.
enum Step {
    /// Go on at this offset.
    At(usize),
    /// Stop: this many bytes were consumed.
    Done(usize),
}

fn decode_text<'a>(
    text: &'a str,
    first_line: usize,
    is_final: bool,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) -> usize {
    let bytes = text.as_bytes();
    let mut cur = Cursor {
        text,
        lines: LineCounter::new(text, first_line),
        is_final,
        rescan_budget: bytes.len().saturating_mul(4).saturating_add(1 << 20),
    };
    let mut pos = 0;
    loop {
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        // Past the work budget the rest is not read: the caller refuses
        // the body whole.
        if pos >= bytes.len() || out.over_budget() {
            return bytes.len();
        }
        let step = match bytes[pos] {
            b'{' => object_document(&mut cur, pos, ctx, out),
            b'[' => array_document(&mut cur, pos, ctx, out),
            _ => other_line(&mut cur, pos, ctx, out),
        };
        match step {
            Step::At(next) => pos = next,
            Step::Done(consumed) => return consumed,
        }
    }
}

/// A document that starts with `{`: an Event, an `EventList`, an envelope.
fn object_document<'a>(
    cur: &mut Cursor<'a>,
    pos: usize,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) -> Step {
    let text = cur.text;
    let line = cur.lines.line_at(pos);
    let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Event<'a>>();
    match stream.next() {
        Some(Ok(event)) => {
            out.document();
            let end = pos + stream.byte_offset();
            out.scanned(end - pos);
            let doc = &text[pos..end];
            accept_document(event, line, doc, &mut cur.lines, text, ctx, out);
            Step::At(end)
        }
        Some(Err(e)) if e.is_eof() && !cur.is_final => Step::Done(pos),
        Some(Err(e)) => {
            out.document();
            let Some(next) = resume(text, pos, &e, &mut cur.rescan_budget, out) else {
                // Never closed and the budget spent: the rest is inside it.
                reject_json(&e, line, out);
                return Step::Done(text.len());
            };
            if !(e.is_data() && envelope::rescue(&text[pos..next], line, ctx, out)) {
                reject_json(&e, line, out);
            }
            Step::At(next)
        }
        None => Step::Done(text.len()),
    }
}

/// A document that starts with `[`: an array of Events (or envelopes).
fn array_document<'a>(
    cur: &mut Cursor<'a>,
    pos: usize,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) -> Step {
    let text = cur.text;
    let line = cur.lines.line_at(pos);
    let mut stream =
        serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Vec<&'a RawValue>>();
    match stream.next() {
        Some(Ok(items)) => {
            out.document();
            out.scanned(stream.byte_offset());
            for (i, item) in items.into_iter().enumerate() {
                if out.over_budget() {
                    break;
                }
                let item_line = cur.lines.line_at(offset_in(text, item.get()));
                let at = || format!("[{i}]");
                if too_large(item.get(), item_line, &at, out) {
                    continue;
                }
                out.scanned(item.get().len());
                match Event::parse(item.get()) {
                    Ok(event) => accept_document(
                        event,
                        item_line,
                        item.get(),
                        &mut cur.lines,
                        text,
                        ctx,
                        out,
                    ),
                    Err(e) if e.is_data() && envelope::rescue(item.get(), item_line, ctx, out) => {}
                    Err(e) => reject_json(&e, item_line, out),
                }
            }
            Step::At(pos + stream.byte_offset())
        }
        Some(Err(e)) if e.is_eof() && !cur.is_final => Step::Done(pos),
        Some(Err(e)) => {
            out.document();
            reject_json(&e, line, out);
            match resume(text, pos, &e, &mut cur.rescan_budget, out) {
                Some(next) => Step::At(next),
                None => Step::Done(text.len()),
            }
        }
        None => Step::Done(text.len()),
    }
}

/// A line that starts with neither `{` nor `[`: base64 (Kinesis and
/// Firehose hand over base64 text of gzip), or not JSON.
fn other_line<'a>(cur: &mut Cursor<'a>, pos: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) -> Step {
    let text = cur.text;
    let line = cur.lines.line_at(pos);
    let next = resync(text, pos);
    if next >= text.len() && !cur.is_final && !text.ends_with('\n') {
        return Step::Done(pos);
    }
    if let Some(after) = envelope::decode_base64(text, pos, line, cur.is_final, ctx, out) {
        return Step::At(after);
    }
    out.document();
    out.scanned(next - pos);
    out.reject_with(line, RejectReason::InvalidJson, || {
        format!(
            "not JSON: a document must start with '{{' or '[', found {}",
            snippet::show(&text[pos..])
        )
    });
    Step::At(next)
}

/// One document: an Event, an `EventList` whose items are Events, or a
/// cloud envelope. `doc` is its text, within `text`.
fn accept_document<'a>(
    event: Event<'a>,
    line: usize,
    doc: &'a str,
    lines: &mut LineCounter<'a>,
    text: &'a str,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) {
    if let Some(items) = event.items {
        return accept_items(items, lines, text, out);
    }
    if event.kind.as_deref() == Some("EventList") {
        out.reject(line, RejectReason::NotAnEvent, "EventList without items");
        return;
    }
    if let Some(kind) = envelope::kind_of(&event) {
        envelope::decode_envelope(kind, doc, line, ctx, out);
        return;
    }
    push_or_reject(event, line, doc, &String::new, out);
}

/// The items of an `EventList`: each an Event.
fn accept_items<'a>(
    items: Vec<&'a RawValue>,
    lines: &mut LineCounter<'a>,
    text: &'a str,
    out: &mut Decoded<'a>,
) {
    for (i, item) in items.into_iter().enumerate() {
        if out.over_budget() {
            return;
        }
        let item_line = lines.line_at(offset_in(text, item.get()));
        let at = || format!("items[{i}]");
        if too_large(item.get(), item_line, &at, out) {
            continue;
        }
        out.scanned(item.get().len());
        match Event::parse(item.get()) {
            Ok(item_event) if item_event.items.is_none() => {
                push_or_reject(item_event, item_line, item.get(), &at, out)
            }
            Ok(_) => out.reject(
                item_line,
                RejectReason::NotAnEvent,
                format!("{}: an EventList item is itself a list", at()),
            ),
            Err(e) => reject_json(&e, item_line, out),
        }
    }
}

/// Accepts one audit event whose JSON text is `doc`, after filling in what
/// a self-declared but incomplete event lacks ([`Event::complete`]). An
/// event past [`Limits::max_event_bytes`](super::Limits) is rejected here
/// (and `Ok` returned: it is dealt with); `at` names it within its
/// container, empty for a top-level document.
pub(super) fn push_event<'a>(
    mut event: Event<'a>,
    line: usize,
    doc: &str,
    at: Label<'_>,
    out: &mut Decoded<'a>,
) -> Result<(), NotAnEvent> {
    if too_large(doc, line, at, out) {
        return Ok(());
    }
    event.complete(doc.as_bytes());
    let stage = event.validate()?;
    out.push(DecodedEvent { event, stage, line });
    Ok(())
}

fn push_or_reject<'a>(
    event: Event<'a>,
    line: usize,
    doc: &str,
    at: Label<'_>,
    out: &mut Decoded<'a>,
) {
    if let Err(e) = push_event(event, line, doc, at, out) {
        out.reject_with(line, e.reason(), || prefixed(at, &e.to_string()));
    }
}

/// `at: message`, or the message alone for a top-level document.
fn prefixed(at: Label<'_>, message: &str) -> String {
    let at = at();
    if at.is_empty() {
        message.to_owned()
    } else {
        format!("{at}: {message}")
    }
}

/// Just the audit id of an event, read without keeping anything else.
#[derive(Deserialize)]
struct AuditIdOnly<'a> {
    #[serde(borrow, default, rename = "auditID", deserialize_with = "opt_str")]
    audit_id: Option<Cow<'a, str>>,
}

/// Audit ids are shown up to this many characters.
const AUDIT_ID_SHOWN: usize = 64;

/// Rejects an event whose text `doc` is past `server.max_event_bytes`,
/// naming it by `at`, its line and its audit id; true if it did.
fn too_large(doc: &str, line: usize, at: Label<'_>, out: &mut Decoded<'_>) -> bool {
    let max = out.limits().max_event_bytes;
    if doc.len() <= max {
        return false;
    }
    out.scanned(doc.len());
    out.reject_with(line, RejectReason::TooLarge, || {
        let id = serde_json::from_str::<AuditIdOnly<'_>>(doc)
            .ok()
            .and_then(|a| a.audit_id)
            .map_or_else(
                || "no readable auditID".to_owned(),
                |id| {
                    let shown: String = id.chars().take(AUDIT_ID_SHOWN).collect();
                    format!("auditID {shown:?}")
                },
            );
        prefixed(
            at,
            &format!(
                "event of {} bytes ({id}) is larger than server.max_event_bytes ({max}); rejected unread",
                doc.len()
            ),
        )
    });
    true
}

fn reject_json(e: &serde_json::Error, doc_line: usize, out: &mut Decoded<'_>) {
    let reason = match e.classify() {
        serde_json::error::Category::Eof => RejectReason::Truncated,
        serde_json::error::Category::Data => RejectReason::NotAnEvent,
        _ => RejectReason::InvalidJson,
    };
    out.reject_with(doc_line, reason, || json_message(e, reason, doc_line));
}

fn json_message(e: &serde_json::Error, reason: RejectReason, doc_line: usize) -> String {
    // serde_json appends "at line L column C" relative to the document; say
    // where it is in the body instead. Quoted values in its message are
    // withheld: they are the input's.
    let text = snippet::error(e);
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    // The document's first line is what a reader looks for; the exact spot
    // follows in the message.
    let at = doc_line + e.line().saturating_sub(1);
    match reason {
        RejectReason::Truncated => format!("truncated JSON: {message}"),
        RejectReason::NotAnEvent => {
            format!(
                "not an audit event: {message} (line {at}, column {})",
                e.column()
            )
        }
        _ => format!("invalid JSON: {message} (line {at}, column {})", e.column()),
    }
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
/// `e`, charging what its parse covered to `budget` (and to the body's
/// work); `None` when it was never closed and the budget is spent (the rest
/// of the body is inside it).
fn resume(
    text: &str,
    from: usize,
    e: &serde_json::Error,
    budget: &mut usize,
    out: &mut Decoded<'_>,
) -> Option<usize> {
    if let Some(end) = after_rejected(text, from, e) {
        // Parsed twice: as an Event, then skipped as any value.
        out.scanned((end - from).saturating_mul(2));
        return Some(end);
    }
    let reached = if e.is_eof() {
        text.len()
    } else {
        error_line_start(text, from, e)
    };
    let covered = reached.saturating_sub(from);
    out.scanned(covered);
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
