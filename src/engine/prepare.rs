//! What can be worked out for an input before the engine's state is
//! touched: its events decoded, each one's first verdict, and, for the
//! changes that will be judged further, their bodies read (the object a
//! write left, the risks in it). Pure and per input, so it runs on the
//! thread that received the input (a webhook handler's, replay's reader)
//! while the engine thread judges the inputs before it; only what must be
//! ordered (dedupe, per-object state, sinks, store) waits for that thread.

use serde_json::Value;

use crate::classify::{self, Access, IgnoreReason, Verdict};
use crate::config::Config;
use crate::decode::{self, Arena, Decoded, DecodedEvent};
use crate::model::Risk;
use crate::telemetry::events::Source;

use super::input::{Framing, IngestError, Input};

/// An input and the arena its decoded events may borrow from.
pub struct Owner {
    pub input: Input,
    arena: Arena,
}

/// An input's events and what was read ahead of each.
pub struct Prepared<'a> {
    pub decoded: Decoded<'a>,
    /// Bytes of the body decoded (see [`super::Accepted::consumed`]).
    pub consumed: usize,
    /// One per event, in order.
    pub pre: Vec<Pre>,
    /// Refused whole before anything is judged.
    pub refused: Option<IngestError>,
}

/// What judging an event needs that its bytes alone decide.
pub struct Pre {
    /// Its first verdict (taken by the engine).
    pub verdict: Option<Verdict>,
    /// The object the write left, parsed, where the diff will want it.
    pub after: Option<Option<Value>>,
    /// Its risks, where they will be weighed.
    pub risks: Option<Vec<Risk>>,
}

self_cell::self_cell!(
    /// An input, decoded and read ahead: what the engine thread judges.
    pub struct Ready {
        owner: Owner,
        #[covariant]
        dependent: Prepared,
    }
);

impl Ready {
    pub fn input(&self) -> &Input {
        &self.borrow_owner().input
    }
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("input", self.input())
            .field("events", &self.borrow_dependent().decoded.events.len())
            .finish_non_exhaustive()
    }
}

/// Decodes `input` and reads ahead what its events' bytes decide.
pub fn prepare(config: &Config, input: Input) -> Ready {
    let server = &config.server;
    let owner = Owner {
        // What cloud envelopes unpack, bounded like the body itself.
        arena: Arena::with_limits(server.max_body_bytes, server.max_inflate_ratio),
        input,
    };
    Ready::new(owner, |o| read(config, &o.input, &o.arena))
}

fn read<'a>(config: &Config, input: &'a Input, arena: &'a Arena) -> Prepared<'a> {
    let server = &config.server;
    let (decoded, consumed) = decode_input(input, arena, limits(config, input.source));
    let refused = if decoded.over_budget() {
        // Refused whole, before any state changes: the rest of the body
        // was not read, so accepting a part would hide it.
        Some(IngestError::OverBudget {
            budget: server.max_decode_work,
            per_item: decode::WORK_PER_ITEM,
            documents: decoded.documents,
            rejected: decoded.rejections.total(),
        })
    } else if decoded.events.len() > server.max_events_per_batch {
        // Refused whole, before any state changes: the sender must split it.
        Some(IngestError::TooManyEvents {
            events: decoded.events.len(),
            max: server.max_events_per_batch,
        })
    } else {
        None
    };
    let pre = match refused {
        Some(_) => Vec::new(),
        None => decoded
            .events
            .iter()
            .map(|d| pre_judge(config, d))
            .collect(),
    };
    Prepared {
        decoded,
        consumed,
        pre,
        refused,
    }
}

fn pre_judge(config: &Config, d: &DecodedEvent<'_>) -> Pre {
    let ev = &d.event;
    // Reads are most of the stream: judge them before anything else.
    let verdict = if classify::access_kind(ev) == Access::Read {
        Verdict::Ignored(IgnoreReason::Read)
    } else {
        let verdict = classify::classify(&config.policy, ev, d.stage);
        classify::admitted::apply(verdict, ev, config.admission.is_some())
    };
    let kept = match &verdict {
        Verdict::Drift(_) | Verdict::Sanctioned { .. } => true,
        Verdict::System | Verdict::Allowed(_) => config.history.store_system,
        Verdict::Ignored(_) => false,
    };
    // Where `correlate` diffs the object a write left against the last
    // version (an update or patch of the object itself that succeeded).
    let diffed = kept
        && !ev.failed()
        && ev.subresource().is_empty()
        && matches!(ev.verb(), "update" | "patch");
    Pre {
        after: diffed.then(|| crate::correlate::result_object(ev)),
        risks: classify::weighed(&verdict).then(|| classify::risk::assess(ev)),
        verdict: Some(verdict),
    }
}

/// What decoding a body from `source` may cost. Replay reads the
/// operator's own files, one at a time: no other batch waits behind it, so
/// it has no work budget (its rejections are still counted, not kept,
/// past the first).
fn limits(config: &Config, source: Source) -> decode::Limits {
    let server = &config.server;
    decode::Limits {
        max_event_bytes: server.max_event_bytes,
        work: (source != Source::Replay).then_some(server.max_decode_work),
    }
}

/// Decodes an input as its framing says; returns the bytes consumed.
fn decode_input<'a>(
    input: &'a Input,
    arena: &'a Arena,
    limits: decode::Limits,
) -> (Decoded<'a>, usize) {
    let body = &input.body[..];
    let mut decoded = Decoded::with_limits(limits);
    match input.framing {
        Framing::Whole => {
            decode::decode_body(body, arena, &mut decoded);
            (decoded, body.len())
        }
        Framing::Part { first_line, last } => {
            let consumed = match std::str::from_utf8(body) {
                Ok(text) => decode::decode_str(text, first_line, last, arena, &mut decoded),
                Err(_) => {
                    decode::decode_bytes_into(body, first_line, arena, &mut decoded);
                    body.len()
                }
            };
            (decoded, consumed)
        }
    }
}
