//! What a rejection may show of the input it rejects.
//!
//! A rejection message travels far: the webhook's answer, the WARN log, the
//! replay CLI's stderr, a Kafka dead-letter header. A line that is cut out
//! of a Secret manifest (`"data": {"password": "aHVudGVy...`) must not
//! travel with it. So a piece of input is shown only when it cannot hold a
//! value: no quote, no `:` or `=`, no word that names one (`data`,
//! `password`, `token`...), no run that looks like base64. Anything else is
//! shown as its length and an id: `<withheld: 40 bytes, id 1a2b3c4d>`.
//!
//! The id is the start of a SHA-256 keyed with a random key of this
//! process: equal lines get equal ids within one run (the answer and the
//! log line can be matched), but a guessed password cannot be checked
//! against an id, which a plain hash of a short secret would allow.

use std::fmt::Write as _;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Characters of a harmless line shown.
const PREVIEW_CHARS: usize = 40;

/// A run of base64 characters this long may be an encoded value.
const BASE64_RUN: usize = 12;

/// Words that name a value (compared in ASCII lower case); `data` covers
/// `stringData`.
const VALUE_WORDS: [&str; 8] = [
    "data", "pass", "secret", "token", "key", "auth", "cred", "cert",
];

/// The first line of `text`, quoted, when it cannot hold a value; else its
/// length and id.
pub(crate) fn show(text: &str) -> String {
    let line = text.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    if may_hold_value(line) {
        return withheld(line);
    }
    let preview: String = line.chars().take(PREVIEW_CHARS).collect();
    if preview.len() < line.len() {
        format!("{preview:?} ({} bytes)", line.len())
    } else {
        format!("{preview:?}")
    }
}

/// `<withheld: N bytes, id XXXXXXXX>`.
pub(crate) fn withheld(text: &str) -> String {
    format!(
        "<withheld: {} bytes, id {}>",
        text.len(),
        id(text.as_bytes())
    )
}

/// A serde_json error's message with every quoted string in it withheld:
/// `invalid type: string "hunter2", expected a JSON object` names a value.
pub(crate) fn error(e: &serde_json::Error) -> String {
    scrub_quoted(&e.to_string())
}

fn may_hold_value(line: &str) -> bool {
    if line
        .chars()
        .any(|c| matches!(c, '"' | '\'' | '`' | ':' | '=' | '\\') || c.is_control())
    {
        return true;
    }
    let lower = line.to_ascii_lowercase();
    if VALUE_WORDS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    let mut run = 0;
    for b in line.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_') {
            run += 1;
            if run >= BASE64_RUN {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Replaces each `"..."` (with its escapes) in `message` by its withheld form.
fn scrub_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        let quoted = &rest[start + 1..];
        let end = closing_quote(quoted).unwrap_or(quoted.len());
        out.push_str(&withheld(&quoted[..end]));
        rest = quoted.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The offset of the quote that closes a string whose text starts `s`.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// The first 32 bits of SHA-256(key || text), in hex.
fn id(text: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(process_key())
        .chain_update(text)
        .finalize();
    let mut hex = String::with_capacity(8);
    for b in &digest[..4] {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// 128 random bits for this process, from the standard library's randomly
/// keyed hasher (no other source of randomness is linked in).
fn process_key() -> &'static [u8; 16] {
    static KEY: OnceLock<[u8; 16]> = OnceLock::new();
    KEY.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut key = [0u8; 16];
        for (i, half) in key.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_lines_are_shown() {
        assert_eq!(show("x"), "\"x\"");
        assert_eq!(
            show("HTTP/1.1 502 Bad Gateway\nmore"),
            "\"HTTP/1.1 502 Bad Gateway\""
        );
        assert_eq!(show("<html>"), "\"<html>\"");
        let long = "ab ".repeat(30);
        assert_eq!(show(&long), format!("{:?} (90 bytes)", &long[..40]));
    }

    #[test]
    fn lines_that_may_hold_a_value_are_withheld() {
        for line in [
            r#""data": {"password": "aHVudGVyMjpzM2NyM3Q=", "#,
            "  password: aHVudGVy",
            "stringData",
            "token abc",
            "aHVudGVyMjpzM2NyM3Q",
            "x=1",
            "it's",
            "a\u{1b}[31m",
        ] {
            let shown = show(line);
            assert!(shown.starts_with("<withheld: "), "{line:?}: {shown}");
            assert!(shown.contains(&format!("{} bytes", line.len())), "{shown}");
        }
        let secret = r#""data": {"password": "aHVudGVyMjpzM2NyM3Q="}"#;
        assert!(!show(secret).contains("aHVud"));
    }

    #[test]
    fn ids_match_for_equal_lines_only() {
        assert_eq!(withheld("a: b"), withheld("a: b"));
        assert_ne!(withheld("a: b"), withheld("a: c"));
        let w = withheld("a: b");
        let id = w.trim_end_matches('>').rsplit(' ').next().unwrap();
        assert_eq!(id.len(), 8);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn quoted_values_in_parser_errors_are_withheld() {
        let e = serde_json::from_str::<std::collections::BTreeMap<String, u8>>(
            r#"{"a": "hunter2 \" x"}"#,
        )
        .unwrap_err();
        let m = error(&e);
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.starts_with("invalid type: string <withheld: "), "{m}");
        assert!(m.contains("expected u8"), "{m}");
        assert_eq!(scrub_quoted("no quotes"), "no quotes");
        assert!(!scrub_quoted("cut \"open").contains("open"));
    }
}
