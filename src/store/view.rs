//! List views are bounded: an item's values are cut to a few KiB and its
//! lists to a hundred entries (the item then says `"truncated": true`), and
//! a page stops before its items exceed `server.max_query_page_bytes` (at
//! least one item per page; the cursor carries on from the last one).
//! Without this, four clients asking for a thousand changes of 15 MB each
//! held gigabytes. Single-item routes and the CLI reading its own store
//! take everything whole.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::model::{Change, ChangeRecord, ObjectRef, Risk};

/// How much one page of a list may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Bytes of a page's items, as JSON; a page holds at least one item.
    pub page_bytes: usize,
    /// Bytes of one value in an item; a longer string or JSON value is
    /// replaced by its beginning and a marker.
    pub value_bytes: usize,
    /// Entries of one list in an item (changes, groups, reasons, a drift's
    /// audit ids...).
    pub list_items: usize,
}

/// A cut value ends with this, then its length: `… [15728640 bytes, truncated]`.
pub const MARKER: &str = "…";

impl Bounds {
    /// Everything whole: single-item routes, the CLI on its own store.
    pub const WHOLE: Bounds = Bounds {
        page_bytes: usize::MAX,
        value_bytes: usize::MAX,
        list_items: usize::MAX,
    };
    /// Values are cut beyond this in list views: far above a user agent, a
    /// request URI or a field's value in a real cluster.
    pub const VALUE_BYTES: usize = 4 * 1024;
    pub const LIST_ITEMS: usize = 100;

    /// The bounds of a list route.
    pub fn list(page_bytes: usize) -> Bounds {
        Bounds {
            page_bytes,
            value_bytes: Bounds::VALUE_BYTES,
            list_items: Bounds::LIST_ITEMS,
        }
    }

    /// Whether an item of `size` bytes still fits a page holding `used`
    /// bytes in `items` items.
    pub fn fits(&self, items: usize, used: usize, size: usize) -> bool {
        items == 0 || used.saturating_add(size) <= self.page_bytes
    }
}

/// Bytes of `value` as JSON, counted without building the text.
pub fn json_len<T: Serialize>(value: &T) -> usize {
    let mut counter = Prefix::new(0);
    // Writing to a counter cannot fail, nor can serializing our own types.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.total
}

/// Collects the first `max` bytes written and counts them all.
struct Prefix {
    max: usize,
    head: Vec<u8>,
    total: usize,
}

impl Prefix {
    fn new(max: usize) -> Prefix {
        Prefix {
            max,
            head: Vec::new(),
            total: 0,
        }
    }
}

impl Write for Prefix {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.max.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..room.min(buf.len())]);
        self.total += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The beginning of `text` (`total` bytes in all) and the marker, in at
/// most `max` bytes when `max` leaves room for the marker: a value cut once
/// is not cut again.
fn marked(text: &str, total: usize, max: usize) -> String {
    let marker = format!("{MARKER} [{total} bytes, truncated]");
    let mut end = max.saturating_sub(marker.len()).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

/// Cuts `s` to `max` bytes (at a character boundary) and marks it.
pub fn cut_str(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    *s = marked(s, s.len(), max);
    true
}

/// `s` owned, cut to `max` bytes: a long borrowed value is never copied
/// whole.
pub fn cut_text(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max {
        (s.to_owned(), false)
    } else {
        (marked(s, s.len(), max), true)
    }
}

/// A stored JSON value, parsed only when it is short: a long string is cut
/// like any string (borrowed when it holds no escape), a long object or
/// array becomes the beginning of its JSON and the marker, as
/// [`cut_value`] does.
pub fn cut_raw(raw: Option<&RawValue>, max: usize) -> (Value, bool) {
    let Some(raw) = raw else {
        return (Value::Null, false);
    };
    let text = raw.get();
    if text.len() <= max {
        return (serde_json::from_str(text).unwrap_or(Value::Null), false);
    }
    if text.starts_with('"') {
        return match serde_json::from_str::<std::borrow::Cow<'_, str>>(text) {
            Ok(s) => {
                let (kept, cut) = cut_text(&s, max);
                (Value::String(kept), cut)
            }
            Err(_) => (Value::Null, false),
        };
    }
    (Value::String(marked(text, text.len(), max)), true)
}

fn cut_opt(s: &mut Option<String>, max: usize) -> bool {
    s.as_mut().is_some_and(|s| cut_str(s, max))
}

/// A string value is cut like a string; any other value longer than `max`
/// as JSON becomes a string: the beginning of its JSON and the marker.
pub fn cut_value(v: &mut Value, max: usize) -> bool {
    match v {
        Value::String(s) => cut_str(s, max),
        Value::Array(_) | Value::Object(_) => {
            let mut prefix = Prefix::new(max);
            let _ = serde_json::to_writer(&mut prefix, &*v);
            if prefix.total <= max {
                return false;
            }
            let head = match std::str::from_utf8(&prefix.head) {
                Ok(text) => text,
                // Cut inside a character: keep what precedes it.
                Err(e) => std::str::from_utf8(&prefix.head[..e.valid_up_to()]).unwrap_or(""),
            };
            *v = Value::String(marked(head, prefix.total, max));
            true
        }
        _ => false,
    }
}

/// Keeps the first `max` entries.
fn cut_list<T>(list: &mut Vec<T>, max: usize) -> bool {
    if list.len() <= max {
        return false;
    }
    list.truncate(max);
    true
}

fn cut_strings(list: &mut Vec<String>, b: &Bounds) -> bool {
    let mut cut = cut_list(list, b.list_items);
    for s in list.iter_mut() {
        cut |= cut_str(s, b.value_bytes);
    }
    cut
}

fn cut_object(o: &mut ObjectRef, max: usize) -> bool {
    let mut cut = false;
    for s in [&mut o.group, &mut o.version, &mut o.resource] {
        cut |= cut_str(s, max);
    }
    for s in [
        &mut o.subresource,
        &mut o.namespace,
        &mut o.name,
        &mut o.uid,
    ] {
        cut |= cut_opt(s, max);
    }
    cut
}

/// A drift's or a record's changes, cut.
pub fn cut_changes(changes: &mut Vec<Change>, b: &Bounds) -> bool {
    let mut cut = cut_list(changes, b.list_items);
    for c in changes.iter_mut() {
        cut |= cut_str(&mut c.path, b.value_bytes);
        cut |= cut_value(&mut c.old, b.value_bytes);
        cut |= cut_value(&mut c.new, b.value_bytes);
    }
    cut
}

fn cut_risks(risks: &mut Vec<Risk>, b: &Bounds) -> bool {
    let mut cut = cut_list(risks, b.list_items);
    for r in risks.iter_mut() {
        cut |= cut_str(&mut r.path, b.value_bytes);
        cut |= cut_value(&mut r.value, b.value_bytes);
    }
    cut
}

/// Cuts every value and list of a record that exceeds the bounds; true
/// when something was cut.
pub fn cut_record(r: &mut ChangeRecord, b: &Bounds) -> bool {
    let max = b.value_bytes;
    let mut cut = false;
    for s in [
        &mut r.id,
        &mut r.cluster,
        &mut r.verb,
        &mut r.audit_id,
        &mut r.request_uri,
        &mut r.actor.username,
    ] {
        cut |= cut_str(s, max);
    }
    for s in [
        &mut r.pipeline,
        &mut r.corrupt,
        &mut r.actor.uid,
        &mut r.actor.user_agent,
        &mut r.actor.client,
        &mut r.actor.field_manager,
    ] {
        cut |= cut_opt(s, max);
    }
    cut |= cut_object(&mut r.resource, max);
    cut |= cut_strings(&mut r.actor.groups, b);
    cut |= cut_strings(&mut r.actor.source_ips, b);
    cut |= cut_strings(&mut r.reasons, b);
    if let Some(i) = &mut r.actor.impersonated_by {
        cut |= cut_str(&mut i.username, max);
        cut |= cut_strings(&mut i.groups, b);
    }
    cut |= cut_changes(&mut r.changes, b);
    cut |= cut_risks(&mut r.risks, b);
    if let Some(d) = &mut r.drift {
        cut |= cut_str(&mut d.id, max);
    }
    if let Some(m) = &mut r.managed_by {
        cut |= cut_str(&mut m.tool, max);
        cut |= cut_opt(&mut m.name, max);
    }
    if let Some(o) = &mut r.owner {
        cut |= cut_str(&mut o.kind, max);
        cut |= cut_str(&mut o.name, max);
        cut |= cut_opt(&mut o.api_version, max);
        cut |= cut_opt(&mut o.uid, max);
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_values_keep_their_beginning_and_say_how_long_they_were() {
        let mut s = "é".repeat(30);
        assert!(cut_str(&mut s, 32), "60 bytes cut to 32");
        // The marker takes 25 of the 32 bytes; a character is not split.
        assert_eq!(s, "ééé… [60 bytes, truncated]");
        assert!(s.len() <= 32);
        assert!(!cut_str(&mut s, 32), "a value cut once is not cut again");
        let mut short = "kubectl".to_owned();
        assert!(!cut_str(&mut short, 7));

        let mut v = json!({"data": {"key": "x".repeat(100)}});
        let total = json_len(&v);
        assert_eq!(total, 119);
        assert!(cut_value(&mut v, 40));
        assert_eq!(v, json!("{\"data\":{\"key\"… [119 bytes, truncated]"));
        let mut n = json!(12345678);
        assert!(!cut_value(&mut n, 2), "numbers are never cut");
    }

    #[test]
    fn a_record_is_cut_everywhere_an_attacker_can_write() {
        let huge = "A".repeat(100_000);
        let mut r = ChangeRecord {
            request_uri: huge.clone(),
            changes: (0..300)
                .map(|i| Change {
                    path: format!("data.k{i}"),
                    old: json!(huge),
                    new: json!(null),
                    redacted: false,
                })
                .collect(),
            ..ChangeRecord::default()
        };
        r.actor.user_agent = Some(huge.clone());
        r.actor.groups = vec![huge.clone(); 3];
        r.resource.name = Some(huge);
        let b = Bounds::list(1 << 20);
        assert!(cut_record(&mut r, &b));
        assert_eq!(r.changes.len(), Bounds::LIST_ITEMS);
        assert!(json_len(&r) < 200 * Bounds::VALUE_BYTES, "{}", json_len(&r));
        assert!(r.request_uri.ends_with("[100000 bytes, truncated]"));
        assert!(
            !cut_record(&mut r.clone(), &b),
            "cutting twice cuts nothing"
        );
    }

    #[test]
    fn stored_values_are_cut_as_parsed_ones_are() {
        let b = 64;
        for v in [
            json!("x".repeat(200)),
            json!("tab\t".repeat(50)),
            json!({"a": ["y".repeat(200)]}),
            json!([1, 2, 3]),
            json!(null),
        ] {
            let text = serde_json::to_string(&v).unwrap();
            let raw: &RawValue = serde_json::from_str(&text).unwrap();
            let mut parsed = v.clone();
            let cut = cut_value(&mut parsed, b);
            assert_eq!(cut_raw(Some(raw), b), (parsed, cut), "{text:.40}");
        }
        assert_eq!(cut_raw(None, b), (Value::Null, false));
    }

    #[test]
    fn a_page_holds_one_item_whatever_its_size() {
        let b = Bounds::list(1000);
        assert!(b.fits(0, 0, 5000));
        assert!(b.fits(3, 500, 500));
        assert!(!b.fits(3, 500, 501));
    }
}
