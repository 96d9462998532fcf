//! Cloud envelopes: the containers managed Kubernetes services wrap audit
//! events in, recognised by their fields and unpacked into plain events.
//!
//! - AKS diagnostic records: an Event Hub batch `{"records": [...]}` or one
//!   record, `category` `kube-audit` or `kube-audit-admin`, the event in
//!   `properties.log` as a JSON string or an object. AKS writes the string
//!   `skipped-too-big-size-object` for an event it dropped.
//! - EKS CloudWatch Logs subscription payloads: `logEvents[].message` hold
//!   the events as JSON strings; a `CONTROL_MESSAGE` holds none.
//! - GKE Cloud Audit Logs entries (`protoPayload`): see `gke.rs`.
//! - gzip and base64, as Kinesis and Firehose deliver the above, and the
//!   records of a Firehose HTTP endpoint request (`records[].data`), within
//!   the arena's limit.
//!
//! The body splitter sees the envelope's marks while it parses a document
//! as an Event, so plain events pay nothing for this; an envelope document
//! is then parsed again as what it is. Everything unpacked from a document
//! carries the document's line; a rejection names the record in its
//! message (`records[3]: ...`), so that one bad record never hides the
//! others.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::body::{self, Ctx};
use super::decoded::{Decoded, RejectReason};
use super::encoding::{self, EncodingError};
use super::event::{Event, opt_str};
use super::snippet;

mod gke;
#[cfg(test)]
mod tests;

/// Payloads inside payloads (base64 of gzip of ...) deeper than this are no
/// delivery format, only a way to make the decoder work.
const MAX_DEPTH: u8 = 4;

/// What AKS writes in place of an event it dropped for its size.
const AKS_SKIPPED: &str = "skipped-too-big-size-object";

/// Names a part of a document in messages (`records[3]`); empty for none.
pub(super) type Label<'l> = &'l dyn Fn() -> String;

/// The envelopes a JSON document may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Gke,
    CloudWatch,
    /// AKS diagnostic records, or a Firehose HTTP endpoint request.
    Records,
    /// One AKS diagnostic record.
    Record,
}

fn kind(proto_payload: bool, log_events: bool, records: bool, properties: bool) -> Option<Kind> {
    if proto_payload {
        Some(Kind::Gke)
    } else if log_events {
        Some(Kind::CloudWatch)
    } else if records {
        Some(Kind::Records)
    } else if properties {
        Some(Kind::Record)
    } else {
        None
    }
}

/// Whether a document parsed as an Event is in fact a cloud envelope.
pub(super) fn kind_of(event: &Event<'_>) -> Option<Kind> {
    kind(
        event.proto_payload.is_some(),
        event.log_events.is_some(),
        event.records.is_some(),
        event.properties.is_some(),
    )
}

/// The envelope marks alone.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Marks {
    #[serde(default)]
    proto_payload: Option<IgnoredAny>,
    #[serde(default)]
    log_events: Option<IgnoredAny>,
    #[serde(default)]
    records: Option<IgnoredAny>,
    #[serde(default)]
    properties: Option<IgnoredAny>,
}

/// A document that is valid JSON but failed to parse as an Event may still
/// be an envelope whose fields collide with an Event's (a Firehose request
/// has a numeric `timestamp`). Decodes it and says so if it is one.
pub(super) fn rescue<'a>(doc: &'a str, line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) -> bool {
    out.scanned(doc.len());
    let Ok(m) = serde_json::from_str::<Marks>(doc) else {
        return false;
    };
    match kind(
        m.proto_payload.is_some(),
        m.log_events.is_some(),
        m.records.is_some(),
        m.properties.is_some(),
    ) {
        Some(k) => {
            decode_envelope(k, doc, line, ctx, out);
            true
        }
        None => false,
    }
}

/// Unpacks the envelope document `doc`.
pub(super) fn decode_envelope<'a>(
    kind: Kind,
    doc: &'a str,
    line: usize,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) {
    // Parsed again, as what it is.
    out.scanned(doc.len());
    match kind {
        Kind::Gke => gke::decode(doc, line, ctx, out),
        Kind::CloudWatch => cloudwatch(doc, line, ctx, out),
        Kind::Records => records(doc, line, ctx, out),
        Kind::Record => record(doc, &|| "AKS record".to_owned(), line, ctx, out),
    }
}

/// A body that starts with the gzip magic bytes.
pub(super) fn decode_gzip<'a>(data: &'a [u8], line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) {
    let what = || "gzip payload".to_owned();
    let Some(arena) = ctx.arena else {
        out.document();
        return needs_arena(&what, line, out);
    };
    if ctx.depth >= MAX_DEPTH {
        out.document();
        return too_deep(&what, line, out);
    }
    match encoding::gunzip(data, arena) {
        Ok(bytes) => {
            out.scanned(bytes.len());
            decode_nested(bytes, line, &what, ctx, out)
        }
        Err(e) => {
            out.document();
            reject_encoding(e, &what, line, out);
        }
    }
}

/// Widths at which tools wrap base64 (`base64`, MIME: 76; PEM, `openssl`: 64).
const WRAP_WIDTHS: [usize; 2] = [64, 76];

/// A line of `text` at `pos` that is not JSON: if it starts base64 text
/// that decodes to gzip or JSON (Kinesis and Firehose deliver records so),
/// decodes it and returns where to go on; `None` leaves the line to be
/// rejected as not JSON. Lines wrapped at a usual width are one payload;
/// otherwise each line is one. Every line is scanned a bounded number of
/// times, so no input makes this quadratic.
pub(super) fn decode_base64<'a>(
    text: &'a str,
    pos: usize,
    line: usize,
    is_final: bool,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) -> Option<usize> {
    let what = || "base64 payload".to_owned();
    // The line at `pos`: (end of its content, start of the next line).
    let line_at = |p: usize| -> Option<(usize, usize)> {
        let (end, next) = match text[p..].find('\n') {
            Some(i) => (p + i, p + i + 1),
            None if is_final => (text.len(), text.len()),
            None => return None,
        };
        let content = text[p..end].trim_end();
        encoding::is_base64_line(content).then_some((p + content.len(), next))
    };
    let (first_end, after_first) = line_at(pos)?;
    let width = first_end - pos;
    // Short words are more likely garbage than payloads (a gzip header
    // alone is 24 characters of base64): leave them to the usual rejection.
    if width < 16 {
        return None;
    }
    let Some(arena) = ctx.arena else {
        out.document();
        needs_arena(&what, line, out);
        return Some(after_first);
    };
    if ctx.depth >= MAX_DEPTH {
        return None;
    }
    // Wrapped: full lines of one usual width, then a last, shorter one.
    let (mut run_end, mut after_run, mut lines) = (first_end, after_first, 1);
    if WRAP_WIDTHS.contains(&width) {
        while after_run < text.len() {
            let Some((end, next)) = line_at(after_run) else {
                break;
            };
            let w = end - after_run;
            if w == 0 || w > width {
                break;
            }
            (run_end, after_run, lines) = (end, next, lines + 1);
            if w < width {
                break;
            }
        }
    }
    let mut tries = vec![(run_end, after_run)];
    if lines > 1 {
        tries.push((first_end, after_first));
    }
    for (end, resume) in tries {
        out.scanned(end - pos);
        match encoding::unbase64(&text[pos..end], arena) {
            Ok(bytes) if encoding::looks_like_payload(&bytes) => {
                let bytes = arena.keep_bytes(bytes);
                decode_nested(bytes, line, &what, ctx, out);
                return Some(resume);
            }
            Err(e @ (EncodingError::TooLarge { .. } | EncodingError::Ratio { .. })) => {
                out.document();
                reject_encoding(e, &what, line, out);
                return Some(resume);
            }
            _ => {}
        }
    }
    if lines == 1 {
        return None;
    }
    // Not rejected line by line: each line would scan the rest of the run.
    out.document();
    out.reject(
        line,
        RejectReason::InvalidEncoding,
        format!("{lines} lines of base64 text that decode to neither gzip nor JSON"),
    );
    Some(after_run)
}

/// Decodes unpacked bytes as a body of their own. What they hold takes the
/// line of the document they came from; a rejection says where in them.
fn decode_nested<'a>(
    bytes: &'a [u8],
    line: usize,
    what: Label<'_>,
    ctx: Ctx<'a>,
    out: &mut Decoded<'a>,
) {
    let (events, rejections, documents) = (out.events.len(), out.rejections.mark(), out.documents);
    let inner = Ctx {
        arena: ctx.arena,
        depth: ctx.depth + 1,
    };
    body::decode_into(bytes, 1, inner, out);
    for e in &mut out.events[events..] {
        e.line = line;
    }
    if out.rejections.total() > rejections.0 {
        out.rejections.relocate(rejections, line, &what());
    }
    if out.documents == documents {
        out.document();
        out.reject(
            line,
            RejectReason::NotAnEvent,
            format!("{}: empty, no audit events", what()),
        );
    }
}

#[derive(Deserialize)]
struct Records<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
}

/// An Event Hub batch of AKS diagnostic records, or a Firehose HTTP
/// endpoint request: each record on its own.
fn records<'a>(doc: &'a str, line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) {
    let batch: Records<'a> = match serde_json::from_str(doc) {
        Ok(b) => b,
        Err(e) => {
            return out.reject(
                line,
                RejectReason::NotAnEvent,
                format!(
                    "records is not a list of AKS diagnostic or Firehose records: {}",
                    snippet::error(&e)
                ),
            );
        }
    };
    for (i, raw) in batch.records.into_iter().enumerate() {
        if out.over_budget() {
            return;
        }
        out.scanned(raw.get().len());
        record(raw.get(), &|| format!("records[{i}]"), line, ctx, out);
    }
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
    /// A Firehose HTTP endpoint record: base64.
    #[serde(borrow, default, deserialize_with = "opt_str")]
    data: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Properties<'a> {
    #[serde(borrow, default)]
    log: Option<&'a RawValue>,
}

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn record<'a>(raw: &'a str, at: Label<'_>, line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) {
    let rec: Record<'a> = match serde_json::from_str(raw) {
        Ok(r) => r,
        Err(e) => {
            return out.reject(
                line,
                RejectReason::NotAnEvent,
                format!(
                    "{}: not an AKS diagnostic record: {}",
                    at(),
                    snippet::error(&e)
                ),
            );
        }
    };
    match (rec.category.as_deref(), rec.data) {
        (Some(category @ ("kube-audit" | "kube-audit-admin")), _) => {
            match rec.properties.and_then(|p| p.log) {
                Some(log) => aks_log(log, at, line, ctx, out),
                None => out.reject(
                    line,
                    RejectReason::NotAnEvent,
                    format!("{}: {category} record without properties.log", at()),
                ),
            }
        }
        (Some(category), _) => out.reject(
            line,
            RejectReason::NotAnEvent,
            format!(
                "{}: AKS record of category {category:?} is not an audit record \
                 (kube-audit or kube-audit-admin)",
                at()
            ),
        ),
        (None, Some(data)) => firehose(&data, at, line, ctx, out),
        (None, None) => out.reject(
            line,
            RejectReason::NotAnEvent,
            format!(
                "{}: neither an AKS diagnostic record (no category) nor a Firehose record (no data)",
                at()
            ),
        ),
    }
}

fn aks_log<'a>(log: &'a RawValue, at: Label<'_>, line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) {
    let text = log.get();
    match text.as_bytes().first() {
        Some(b'"') => {
            let s = match serde_json::from_str::<Text<'a>>(text) {
                Ok(Text(s)) => s,
                Err(e) => {
                    return out.reject(
                        line,
                        RejectReason::InvalidJson,
                        format!("{}: properties.log: {}", at(), snippet::error(&e)),
                    );
                }
            };
            if s.trim() == AKS_SKIPPED {
                return out.reject(
                    line,
                    RejectReason::NotAnEvent,
                    format!("{}: AKS skipped an oversized event ({AKS_SKIPPED})", at()),
                );
            }
            match keep(s, ctx) {
                Some(s) => inner_event(s, at, line, out),
                None => needs_arena(at, line, out),
            }
        }
        Some(b'{') => inner_event(text, at, line, out),
        _ => out.reject(
            line,
            RejectReason::NotAnEvent,
            format!(
                "{}: properties.log is neither a JSON string nor an object: {}",
                at(),
                snippet::show(text)
            ),
        ),
    }
}

fn firehose<'a>(data: &str, at: Label<'_>, line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) {
    let what = || format!("{} data", at());
    let Some(arena) = ctx.arena else {
        return needs_arena(&what, line, out);
    };
    if ctx.depth >= MAX_DEPTH {
        return too_deep(&what, line, out);
    }
    out.scanned(data.len());
    match encoding::unbase64(data, arena) {
        Ok(bytes) => {
            let bytes = arena.keep_bytes(bytes);
            decode_nested(bytes, line, &what, ctx, out);
        }
        Err(e) => reject_encoding(e, &what, line, out),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    message_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    log_stream: Option<Cow<'a, str>>,
    #[serde(borrow)]
    log_events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
}

/// A CloudWatch Logs subscription payload: one audit event per log event.
fn cloudwatch<'a>(doc: &'a str, line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) {
    let payload: Subscription<'a> = match serde_json::from_str(doc) {
        Ok(p) => p,
        Err(e) => {
            return out.reject(
                line,
                RejectReason::NotAnEvent,
                format!(
                    "not a CloudWatch Logs subscription payload: {}",
                    snippet::error(&e)
                ),
            );
        }
    };
    match payload.message_type.as_deref() {
        // CloudWatch checking that the destination is reachable.
        Some("CONTROL_MESSAGE") => return,
        None | Some("DATA_MESSAGE") => {}
        Some(other) => {
            return out.reject(
                line,
                RejectReason::NotAnEvent,
                format!("CloudWatch Logs payload of unknown messageType {other:?}"),
            );
        }
    }
    let stream = payload.log_stream.as_deref().unwrap_or("");
    for (i, raw) in payload.log_events.into_iter().enumerate() {
        if out.over_budget() {
            return;
        }
        out.scanned(raw.get().len());
        let at = || {
            if stream.is_empty() {
                format!("logEvents[{i}]")
            } else {
                format!("logEvents[{i}] of logStream {stream:?}")
            }
        };
        match serde_json::from_str::<LogEvent<'a>>(raw.get()) {
            Ok(ev) => match keep(ev.message, ctx) {
                Some(message) => inner_event(message, &at, line, out),
                None => needs_arena(&at, line, out),
            },
            Err(e) => out.reject(
                line,
                RejectReason::NotAnEvent,
                format!(
                    "{}: not a CloudWatch log event: {}",
                    at(),
                    snippet::error(&e)
                ),
            ),
        }
    }
}

/// One audit event embedded in an envelope, as JSON text.
fn inner_event<'a>(doc: &'a str, at: Label<'_>, line: usize, out: &mut Decoded<'a>) {
    let start = doc.trim_start();
    if !start.starts_with('{') {
        return out.reject_with(line, RejectReason::InvalidJson, || {
            format!(
                "{}: not an audit event: not JSON, found {}",
                at(),
                snippet::show(start)
            )
        });
    }
    out.scanned(doc.len());
    match Event::parse(doc) {
        Ok(event) if event.items.is_some() || kind_of(&event).is_some() => out.reject(
            line,
            RejectReason::NotAnEvent,
            format!("{}: a list or another envelope, not one audit event", at()),
        ),
        Ok(event) => {
            if let Err(e) = body::push_event(event, line, doc, at, out) {
                out.reject(line, e.reason(), format!("{}: {e}", at()));
            }
        }
        Err(e) => {
            let (reason, what) = match e.classify() {
                serde_json::error::Category::Eof => (RejectReason::Truncated, "truncated JSON"),
                serde_json::error::Category::Data => {
                    (RejectReason::NotAnEvent, "not an audit event")
                }
                _ => (RejectReason::InvalidJson, "invalid JSON"),
            };
            out.reject_with(line, reason, || {
                format!("{}: {what}: {}", at(), snippet::error(&e))
            });
        }
    }
}

/// An unescaped string, kept in the arena if it could not be borrowed.
fn keep<'a>(s: Cow<'a, str>, ctx: Ctx<'a>) -> Option<&'a str> {
    match s {
        Cow::Borrowed(s) => Some(s),
        Cow::Owned(s) => ctx.arena.map(|a| a.keep_str(s)),
    }
}

fn needs_arena(at: Label<'_>, line: usize, out: &mut Decoded<'_>) {
    out.reject(
        line,
        RejectReason::NotAnEvent,
        format!(
            "{}: its events must be unpacked into an arena: decode with decode_bytes_in",
            at()
        ),
    );
}

fn too_deep(at: Label<'_>, line: usize, out: &mut Decoded<'_>) {
    out.reject(
        line,
        RejectReason::InvalidEncoding,
        format!(
            "{}: payloads nested more than {MAX_DEPTH} deep are no delivery format",
            at()
        ),
    );
}

fn reject_encoding(e: EncodingError, at: Label<'_>, line: usize, out: &mut Decoded<'_>) {
    match e {
        EncodingError::TooLarge { limit } => out.reject(
            line,
            RejectReason::TooLarge,
            format!(
                "{}: decodes to more than {} (server.max_body_bytes, the decompression limit); not read further",
                at(),
                size(limit)
            ),
        ),
        EncodingError::Ratio { ratio } => out.reject(
            line,
            RejectReason::TooLarge,
            format!(
                "{}: decompresses to more than {ratio} times its size (server.max_inflate_ratio); not read further",
                at()
            ),
        ),
        EncodingError::Corrupt(message) => out.reject(
            line,
            RejectReason::InvalidEncoding,
            format!("{}: {message}", at()),
        ),
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}
