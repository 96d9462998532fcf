//! JSON as Go's `encoding/json` writes it: the API server's audit log and
//! webhook backends escape `&`, `<` and `>` (and U+2028, U+2029) in every
//! string, so a `requestURI` with a query reads `...?a=1\u0026b=2`.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

/// serde_json's compact output, with Go's HTML-safe escapes.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '&' => "\\u0026",
                '<' => "\\u003c",
                '>' => "\\u003e",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        CompactFormatter.write_string_fragment(writer, &fragment[start..])
    }
}

/// Appends `value` to `out`, escaped like Go.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(
        out,
        GoFormatter,
    ))
}

/// `value` as one JSON line (without the newline), escaped like Go.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(1024);
    // Serializing a `Serialize` type into memory fails only for maps with
    // non-string keys, which nothing here builds.
    if let Err(e) = write(&mut out, value) {
        panic!("serializing test JSON: {e}");
    }
    String::from_utf8(out).unwrap_or_else(|e| panic!("serde_json wrote UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn html_characters_are_escaped_like_go_and_the_rest_is_untouched() {
        let v = json!({"requestURI": "/api/v1/pods?a=1&b=<2>", "k&": "é\u{2028}\"\n"});
        let s = super::to_string(&v);
        assert_eq!(
            s,
            r#"{"k\u0026":"é\u2028\"\n","requestURI":"/api/v1/pods?a=1\u0026b=\u003c2\u003e"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        assert_eq!(back, v);
    }
}
