//! `managedFields[].fieldsV1` read as change paths.
//!
//! FieldsV1 is a trie of keys: `f:NAME` a field, `k:{"name":"app"}` a list
//! item by its keys, `v:VALUE` a set item, `i:N` an item by index, and `.`
//! the node itself. Rendered here the way [`crate::correlate`] renders
//! change paths (`spec.template.spec.containers[name=app].image`), so the
//! two compare segment by segment. Limits: a keyed item is named by the
//! first of `name`, `mountPath`, `devicePath`, `ip`, `type` it carries (as
//! the diff does); other keys (a port's `containerPort`+`protocol`) render
//! as their JSON and match no diff path; set items render as `[VALUE]`.

use serde_json::Value;

/// Deeper than any real object; bounds the walk over outside data.
const MAX_DEPTH: usize = 32;
/// Fields kept per entry.
const MAX_LEAVES: usize = 2_000;

/// The owned leaves of a FieldsV1 document, each as path segments.
pub fn leaves(doc: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

fn walk(node: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(map) = node.as_object() else {
        return;
    };
    if prefix.len() >= MAX_DEPTH {
        return;
    }
    for (key, child) in map {
        if out.len() >= MAX_LEAVES {
            return;
        }
        if key == "." {
            out.push(prefix.clone());
            continue;
        }
        let Some(seg) = segment(key) else {
            continue;
        };
        prefix.push(seg);
        match child.as_object() {
            Some(c) if !c.is_empty() => walk(child, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

/// One FieldsV1 key as a change-path segment.
fn segment(key: &str) -> Option<String> {
    let (kind, rest) = key.split_once(':')?;
    match kind {
        "f" if is_plain(rest) => Some(rest.to_owned()),
        "f" => Some(format!("[{}]", Value::String(rest.to_owned()))),
        "k" => Some(keyed(rest)),
        "v" | "i" => Some(format!("[{rest}]")),
        _ => None,
    }
}

fn keyed(json: &str) -> String {
    let parsed: Option<serde_json::Map<String, Value>> = serde_json::from_str(json).ok();
    let named = parsed.as_ref().and_then(|m| {
        ["name", "mountPath", "devicePath", "ip", "type"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str))
    });
    match named {
        Some(n) => format!("[name={n}]"),
        None => format!("[{json}]"),
    }
}

fn is_plain(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether an owned field and a changed path are the same field, or one
/// holds the other.
pub fn overlaps(owned: &[String], path: &[String]) -> bool {
    let n = owned.len().min(path.len());
    n > 0 && owned[..n] == path[..n]
}

/// Segments rendered back into a change path.
pub fn render(segs: &[String]) -> String {
    let mut s = String::new();
    for seg in segs {
        if !s.is_empty() && !seg.starts_with('[') {
            s.push('.');
        }
        s.push_str(seg);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::path::segments;

    fn paths(doc: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(doc).unwrap();
        leaves(&v).iter().map(|l| render(l)).collect()
    }

    #[test]
    fn fields_become_change_paths() {
        let got = paths(
            r#"{"f:metadata":{"f:annotations":{".":{},"f:argocd.argoproj.io/tracking-id":{}}},
               "f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{
                 "k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#,
        );
        assert!(got.contains(&"spec.replicas".to_owned()), "{got:?}");
        assert!(got.contains(&"metadata.annotations".to_owned()), "{got:?}");
        assert!(
            got.contains(&r#"metadata.annotations["argocd.argoproj.io/tracking-id"]"#.to_owned()),
            "{got:?}"
        );
        assert!(
            got.contains(&"spec.template.spec.containers[name=app].image".to_owned()),
            "{got:?}"
        );
        // Each renders to what the diff's path parser splits back.
        for p in &got {
            assert_eq!(render(&segments(p)), *p);
        }
    }

    #[test]
    fn ownership_covers_parents_and_children() {
        let owned = segments("spec.template.spec.containers[name=app].image");
        assert!(overlaps(
            &owned,
            &segments("spec.template.spec.containers[name=app]")
        ));
        assert!(overlaps(
            &segments("spec.replicas"),
            &segments("spec.replicas")
        ));
        assert!(!overlaps(
            &segments("spec.replicas"),
            &segments("spec.paused")
        ));
    }

    #[test]
    fn odd_keys_and_non_objects_are_skipped() {
        assert!(paths(r#"["f:a"]"#).is_empty());
        assert_eq!(paths(r#"{"x:y":{},"f:a":{}}"#), vec!["a".to_owned()]);
        assert_eq!(
            paths(r#"{"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{}}}"#),
            vec![r#"ports[{"containerPort":80,"protocol":"TCP"}]"#.to_owned()]
        );
    }
}
