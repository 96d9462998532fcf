//! What a body held, and what decoding it may cost.
//!
//! A body is bounded by its bytes, not by what they say: a small body must
//! not buy unbounded memory or time. So the rejections of a body are
//! counted, but only the first [`MAX_LISTED`] keep a message; every
//! document, event and rejection is charged to a work budget
//! ([`Limits::work`]); an event larger than [`Limits::max_event_bytes`] is
//! rejected without being kept.

use std::ops::Deref;

use super::event::{Event, Stage};

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
    /// A compressed or encoded payload that decodes past the arena's limit,
    /// or an event past `server.max_event_bytes`.
    TooLarge,
    /// Corrupt gzip or base64.
    InvalidEncoding,
    /// `stageTimestamp` or `requestReceivedTimestamp` is not RFC 3339.
    InvalidTime,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::Truncated,
        RejectReason::NotAnEvent,
        RejectReason::TooLarge,
        RejectReason::InvalidEncoding,
        RejectReason::InvalidTime,
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
            RejectReason::InvalidTime => "invalid_time",
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

/// Rejections of one body listed with their message; the rest are counted.
pub const MAX_LISTED: usize = 20;

/// A listed message is cut here: labels such as a CloudWatch `logStream`
/// come from the input and may be as long as it.
const MAX_MESSAGE_BYTES: usize = 512;

/// The rejections of one body: the first [`MAX_LISTED`] with their
/// messages, and counts of all. It derefs to the listed ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    listed: Vec<Rejection>,
    total: usize,
    by_reason: [usize; RejectReason::ALL.len()],
    /// The line of the last rejection, listed or not.
    last_line: usize,
}

impl Deref for Rejections {
    type Target = [Rejection];

    fn deref(&self) -> &[Rejection] {
        &self.listed
    }
}

impl<'r> IntoIterator for &'r Rejections {
    type Item = &'r Rejection;
    type IntoIter = std::slice::Iter<'r, Rejection>;

    /// The listed ones.
    fn into_iter(self) -> Self::IntoIter {
        self.listed.iter()
    }
}

impl Rejections {
    /// Every rejection, listed or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Rejections counted but not listed.
    pub fn unlisted(&self) -> usize {
        self.total - self.listed.len()
    }

    /// How many of each reason, in [`RejectReason::ALL`] order.
    pub fn by_reason(&self) -> impl Iterator<Item = (RejectReason, usize)> + '_ {
        RejectReason::ALL.iter().copied().zip(self.by_reason)
    }

    pub fn count(&self, reason: RejectReason) -> usize {
        self.by_reason[reason.index()]
    }

    /// The line of the last rejection; 0 when there is none.
    pub fn last_line(&self) -> usize {
        self.last_line
    }

    /// Counts one rejection; its message is built only if it is listed.
    pub(super) fn push(
        &mut self,
        line: usize,
        reason: RejectReason,
        message: impl FnOnce() -> String,
    ) {
        self.total += 1;
        self.by_reason[reason.index()] += 1;
        self.last_line = line;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(Rejection {
                line,
                reason,
                message: cut(message()),
            });
        }
    }

    /// Where the rejections stand now, for [`Rejections::relocate`].
    pub(super) fn mark(&self) -> (usize, usize) {
        (self.total, self.listed.len())
    }

    /// Rejections since `mark` were found inside a payload unpacked from
    /// the document at `line`: they take its line, and their messages say
    /// where in the payload (`what line N: ...`).
    pub(super) fn relocate(&mut self, mark: (usize, usize), line: usize, what: &str) {
        if self.total > mark.0 {
            self.last_line = line;
        }
        for r in &mut self.listed[mark.1..] {
            r.message = cut(format!("{what} line {}: {}", r.line, r.message));
            r.line = line;
        }
    }
}

fn cut(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// What decoding one body may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest event, in bytes of its JSON text; a larger one is
    /// rejected (`too_large`), naming its line and audit id.
    pub max_event_bytes: usize,
    /// Work units a body may cost (see [`WORK_PER_ITEM`]); past them
    /// decoding stops and [`Decoded::over_budget`] says so. `None`: no
    /// budget (replay of the operator's own files).
    pub work: Option<u64>,
}

impl Default for Limits {
    /// No limits: what the library functions decode with.
    fn default() -> Self {
        Limits {
            max_event_bytes: usize::MAX,
            work: None,
        }
    }
}

/// Work units charged per document, event and rejection, beside one per
/// byte scanned: the fixed cost of starting a parse, judging and counting
/// it. Without it a body of millions of two-byte lines would cost as
/// little as its bytes, and take seconds.
pub const WORK_PER_ITEM: u64 = 64;

/// What a body held.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    pub events: Vec<DecodedEvent<'a>>,
    pub rejections: Rejections,
    /// Top-level JSON documents seen (an `EventList` is one document).
    pub documents: usize,
    limits: Limits,
    work: u64,
}

impl<'a> Decoded<'a> {
    /// An empty result that decoding fills within `limits`.
    pub fn with_limits(limits: Limits) -> Decoded<'a> {
        Decoded {
            limits,
            ..Decoded::default()
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Work units spent so far.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Whether the work budget ran out: decoding stopped early, and what
    /// was decoded is only a part of the body.
    pub fn over_budget(&self) -> bool {
        self.limits.work.is_some_and(|budget| self.work > budget)
    }

    pub(super) fn reject(&mut self, line: usize, reason: RejectReason, message: impl Into<String>) {
        self.reject_with(line, reason, || message.into());
    }

    /// [`Decoded::reject`] for a message that costs something to build: it
    /// is built only for a rejection that is listed.
    pub(super) fn reject_with(
        &mut self,
        line: usize,
        reason: RejectReason,
        message: impl FnOnce() -> String,
    ) {
        self.charge(WORK_PER_ITEM);
        self.rejections.push(line, reason, message);
    }

    /// One more top-level document.
    pub(super) fn document(&mut self) {
        self.documents += 1;
        self.charge(WORK_PER_ITEM);
    }

    pub(super) fn push(&mut self, event: DecodedEvent<'a>) {
        self.charge(WORK_PER_ITEM);
        self.events.push(event);
    }

    /// `bytes` more bytes scanned.
    pub(super) fn scanned(&mut self, bytes: usize) {
        self.charge(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    fn charge(&mut self, units: u64) {
        self.work = self.work.saturating_add(units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_rejections_keep_a_message() {
        let mut d = Decoded::default();
        let mut built = 0;
        for line in 1..=1000 {
            d.reject_with(line, RejectReason::InvalidJson, || {
                built += 1;
                format!("line {line}")
            });
        }
        assert_eq!(d.rejections.len(), MAX_LISTED);
        assert_eq!(d.rejections.total(), 1000);
        assert_eq!(d.rejections.unlisted(), 1000 - MAX_LISTED);
        assert_eq!(d.rejections.count(RejectReason::InvalidJson), 1000);
        assert_eq!(d.rejections.last_line(), 1000);
        assert_eq!(built, MAX_LISTED);
        assert_eq!(d.rejections[19].message, "line 20");
    }

    #[test]
    fn long_messages_are_cut() {
        let mut d = Decoded::default();
        d.reject(1, RejectReason::NotAnEvent, "é".repeat(1000));
        assert!(d.rejections[0].message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(d.rejections[0].message.ends_with('…'));
    }

    #[test]
    fn the_budget_counts_bytes_and_items() {
        let mut d = Decoded::with_limits(Limits {
            work: Some(200),
            ..Limits::default()
        });
        d.document();
        d.scanned(100);
        assert!(!d.over_budget());
        d.reject(1, RejectReason::InvalidJson, "x");
        assert_eq!(d.work(), 100 + 2 * WORK_PER_ITEM);
        d.scanned(100);
        assert!(d.over_budget());
        assert!(!Decoded::default().over_budget());
    }
}
