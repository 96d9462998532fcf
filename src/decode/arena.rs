//! Owned bytes that decoded events borrow from.
//!
//! A plain body is decoded in place: events borrow from it. Envelopes carry
//! events the body does not hold as they are: JSON strings that must be
//! unescaped (AKS `properties.log`, CloudWatch `logEvents[].message`),
//! gzip-compressed or base64-encoded payloads. Those are decoded into an
//! [`Arena`] the caller owns next to the body, so that one `Decoded<'a>`
//! borrows from both. The arena is append-only and frees everything at once
//! when dropped, after the decoded events.
//!
//! Nothing is allocated until an envelope needs it: a plain body costs an
//! arena nothing.

use std::cell::{Cell, OnceCell};

/// The default limit on the bytes that decompression and base64 decoding
/// may produce for one body: a small gzip payload must not become gigabytes.
/// The engine uses `server.max_body_bytes` instead.
pub const DEFAULT_INFLATE_LIMIT: usize = 64 << 20;

/// How many times its own size a gzip stream may inflate to. Real audit
/// logs compress 10-13x (the corpus), a batch of lease renewals that
/// differ only in ids and times about 25x; a bomb, a thousand.
pub const DEFAULT_INFLATE_RATIO: usize = 100;

/// Storage for the owned data of one decoded body. Create one per body (or
/// per chunk of a file), pass it to [`super::decode_bytes_in`], and keep it
/// alive as long as the decoded events.
pub struct Arena {
    strings: OnceCell<typed_arena::Arena<String>>,
    bytes: OnceCell<typed_arena::Arena<Vec<u8>>>,
    limit: usize,
    ratio: usize,
    inflated: Cell<usize>,
}

impl Default for Arena {
    fn default() -> Self {
        Arena::new()
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("limit", &self.limit)
            .field("ratio", &self.ratio)
            .field("inflated", &self.inflated.get())
            .finish_non_exhaustive()
    }
}

impl Arena {
    /// An arena whose decompressed data is capped at [`DEFAULT_INFLATE_LIMIT`].
    pub fn new() -> Self {
        Arena::with_limit(DEFAULT_INFLATE_LIMIT)
    }

    /// An arena whose decompressed and base64-decoded data together may not
    /// exceed `limit` bytes; a payload past it is rejected, not truncated.
    pub fn with_limit(limit: usize) -> Self {
        Arena::with_limits(limit, DEFAULT_INFLATE_RATIO)
    }

    /// [`Arena::with_limit`], and no gzip stream may inflate to more than
    /// `ratio` times its compressed size (nested ones included, each
    /// against its own size).
    pub fn with_limits(limit: usize, ratio: usize) -> Self {
        Arena {
            strings: OnceCell::new(),
            bytes: OnceCell::new(),
            limit,
            ratio: ratio.max(1),
            inflated: Cell::new(0),
        }
    }

    /// The limit on decompressed and decoded bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The limit on a gzip stream's inflation, in times its size.
    pub fn ratio(&self) -> usize {
        self.ratio
    }

    /// Bytes that may still be produced by decompression or decoding.
    pub(crate) fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.inflated.get())
    }

    /// Keeps an unescaped string; not counted against the limit (it is never
    /// longer than the JSON text it came from).
    pub(crate) fn keep_str(&self, s: String) -> &str {
        self.strings
            .get_or_init(typed_arena::Arena::new)
            .alloc(s)
            .as_str()
    }

    /// Keeps decompressed or decoded bytes, counted against the limit.
    pub(crate) fn keep_bytes(&self, v: Vec<u8>) -> &[u8] {
        self.inflated
            .set(self.inflated.get().saturating_add(v.len()));
        self.bytes
            .get_or_init(typed_arena::Arena::new)
            .alloc(v)
            .as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_data_outlives_later_allocations_and_counts_against_the_limit() {
        let arena = Arena::with_limit(10);
        let a = arena.keep_str("first".to_owned());
        let b = arena.keep_bytes(vec![1, 2, 3]);
        for i in 0..1000 {
            arena.keep_str(i.to_string());
        }
        assert_eq!(a, "first");
        assert_eq!(b, [1, 2, 3]);
        assert_eq!(arena.remaining(), 7);
        arena.keep_bytes(vec![0; 20]);
        assert_eq!(arena.remaining(), 0);
    }
}
