//! Field-level changes read from a request body.
//!
//! A PATCH body is the patch document; its type is not logged, so it is told
//! from the shape: an array is a JSON patch, an object a merge, strategic
//! merge or server-side apply document. Old values need remembered state and
//! are `null` when unknown.

use serde_json::Value;
use serde_json::value::RawValue;

/// A bound on what one finding carries, so a huge apply document does not
/// turn into a huge finding.
pub const MAX_CHANGES: usize = 200;

pub use crate::model::Change;

/// Fields that change on every write or carry no intent.
fn skipped(path: &[Seg<'_>]) -> bool {
    match path {
        [Seg::Key("status"), ..] => true,
        [Seg::Key("metadata"), Seg::Key(k), ..] => matches!(
            *k,
            "managedFields" | "resourceVersion" | "generation" | "uid" | "creationTimestamp"
        ),
        _ => false,
    }
}

/// Identity fields an apply document repeats; they are not changes.
fn apply_identity(path: &[Seg<'_>]) -> bool {
    matches!(
        path,
        [Seg::Key("apiVersion" | "kind")] | [Seg::Key("metadata"), Seg::Key("name" | "namespace")]
    )
}

#[derive(Debug, Clone, Copy)]
enum Seg<'v> {
    Key(&'v str),
    Index(usize),
    /// A strategic-merge list item, identified by its merge key.
    Named(&'v str),
    /// JSON patch `-`: past the end of an array.
    Append,
}

/// The changes a mutation's request body shows, or none when it shows none
/// (creates, deletes and updates need the previous object).
pub fn from_request(verb: &str, resource: &str, body: Option<&RawValue>) -> Vec<Change> {
    if verb != "patch" {
        return Vec::new();
    }
    let Some(body) = body else {
        return Vec::new();
    };
    let Ok(doc) = serde_json::from_str::<Value>(body.get()) else {
        return Vec::new();
    };
    let secret = resource == "secrets";
    let mut out = Vec::new();
    match &doc {
        Value::Array(ops) => json_patch(ops, secret, &mut out),
        Value::Object(_) => {
            let is_apply = doc.get("apiVersion").is_some() && doc.get("kind").is_some();
            let mut path = Vec::new();
            walk_merge(&doc, &mut path, is_apply, secret, &mut out);
        }
        _ => {}
    }
    out
}

fn json_patch(ops: &[Value], secret: bool, out: &mut Vec<Change>) {
    for op in ops {
        if out.len() >= MAX_CHANGES {
            return;
        }
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let Some(pointer) = op.get("path").and_then(Value::as_str) else {
            continue;
        };
        let tokens = crate::model::pointer_tokens(pointer);
        let segs: Vec<Seg<'_>> = tokens
            .iter()
            .map(|t| match t.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) if t == "-" => Seg::Append,
                Err(_) => Seg::Key(t.as_str()),
            })
            .collect();
        if segs.is_empty() || skipped(&segs) {
            continue;
        }
        let new = match kind {
            "add" | "replace" => op.get("value").cloned().unwrap_or(Value::Null),
            "remove" => Value::Null,
            "copy" | "move" => continue_from(op),
            _ => continue,
        };
        push(out, &segs, new, secret);
    }
}

/// `copy`/`move` take their value from another path, unknown here.
fn continue_from(op: &Value) -> Value {
    op.get("from")
        .and_then(Value::as_str)
        .map_or(Value::Null, |from| {
            Value::String(format!("<value of {from}>"))
        })
}

fn walk_merge<'v>(
    value: &'v Value,
    path: &mut Vec<Seg<'v>>,
    is_apply: bool,
    secret: bool,
    out: &mut Vec<Change>,
) {
    if out.len() >= MAX_CHANGES || skipped(path) || (is_apply && apply_identity(path)) {
        return;
    }
    match value {
        Value::Object(map) if !map.is_empty() => {
            if map.get("$patch").and_then(Value::as_str) == Some("delete") {
                push(out, path, Value::Null, secret);
                return;
            }
            for (key, child) in map {
                // Strategic-merge directives ($patch, $setElementOrder/...,
                // $retainKeys, $deleteFromPrimitiveList/...) are not fields.
                if key.starts_with('$') {
                    continue;
                }
                path.push(Seg::Key(key));
                walk_merge(child, path, is_apply, secret, out);
                path.pop();
            }
        }
        Value::Array(items)
            if !items.is_empty() && items.iter().all(|i| merge_key(i).is_some()) =>
        {
            for item in items {
                let Some(name) = merge_key(item) else {
                    continue;
                };
                path.push(Seg::Named(name));
                let mut any = false;
                if let Value::Object(map) = item {
                    if map.get("$patch").and_then(Value::as_str) == Some("delete") {
                        push(out, path, Value::Null, secret);
                        path.pop();
                        continue;
                    }
                    for (key, child) in map {
                        if key.starts_with('$') || is_merge_key_field(key) {
                            continue;
                        }
                        any = true;
                        path.push(Seg::Key(key));
                        walk_merge(child, path, is_apply, secret, out);
                        path.pop();
                    }
                }
                if !any {
                    push(out, path, item.clone(), secret);
                }
                path.pop();
            }
        }
        _ => push(out, path, value.clone(), secret),
    }
}

/// Leaf-level differences between two versions of an object, with old and
/// new values. Keyed lists (containers by name...) are matched by key, other
/// lists compared whole.
pub fn diff(resource: &str, old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    diff_into(old, new, &mut path, resource == "secrets", &mut out);
    out
}

fn diff_into<'v>(
    old: &'v Value,
    new: &'v Value,
    path: &mut Vec<Seg<'v>>,
    secret: bool,
    out: &mut Vec<Change>,
) {
    if out.len() >= MAX_CHANGES || old == new || skipped(path) || noisy(path) {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, av) in a {
                path.push(Seg::Key(k));
                diff_into(av, b.get(k).unwrap_or(&Value::Null), path, secret, out);
                path.pop();
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    path.push(Seg::Key(k));
                    diff_into(&Value::Null, bv, path, secret, out);
                    path.pop();
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.iter().chain(b).all(|i| merge_key(i).is_some()) => {
            let (in_a, in_b) = (Keyed::new(a), Keyed::new(b));
            for item in a {
                let Some(name) = merge_key(item) else {
                    continue;
                };
                if out.len() >= MAX_CHANGES {
                    return;
                }
                let other = in_b.get(name);
                path.push(Seg::Named(name));
                diff_into(item, other.unwrap_or(&Value::Null), path, secret, out);
                path.pop();
            }
            for item in b {
                let Some(name) = merge_key(item) else {
                    continue;
                };
                if out.len() >= MAX_CHANGES {
                    return;
                }
                if in_a.get(name).is_none() {
                    path.push(Seg::Named(name));
                    diff_into(&Value::Null, item, path, secret, out);
                    path.pop();
                }
            }
        }
        _ => {
            if path.is_empty() {
                return;
            }
            let redacted = secret && is_secret_value(path, &[old, new]);
            out.push(Change {
                path: render(path),
                old: if redacted { Value::Null } else { old.clone() },
                new: if redacted { Value::Null } else { new.clone() },
                redacted,
            });
        }
    }
}

/// Written by every client-side `kubectl apply`: a JSON copy of the whole
/// applied object, so for a Secret it holds every secret value.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Rewritten on every `kubectl apply`; its content is the object itself.
/// Annotations that carry no one's intent: kubectl's copy of the last
/// applied object, and the revisions controllers stamp on what they own
/// (written right after each rollout, possibly delivered after the next
/// person's edit).
fn noisy(path: &[Seg<'_>]) -> bool {
    matches!(
        path,
        [Seg::Key("metadata"), Seg::Key("annotations"), Seg::Key(k)]
            if matches!(*k, LAST_APPLIED | "deployment.kubernetes.io/revision" | "deprecated.daemonset.template.generation")
    )
}

/// Whether a change to a Secret at `segs`, with these old/new values, would
/// show a secret value. Not only `data.KEY`: a JSON patch can replace the
/// whole `data` map in one op (`replace /data`), and `kubectl apply` copies
/// every value into the last-applied annotation, reachable as the annotation
/// itself or inside a replaced `metadata`/`annotations` object. Paths whose
/// content cannot be vetted are redacted too; only `metadata` and the
/// scalar fields of a Secret are shown.
fn is_secret_value(segs: &[Seg<'_>], values: &[&Value]) -> bool {
    match segs.first() {
        Some(Seg::Key("data" | "stringData")) => {
            segs.len() > 1 || values.iter().any(|v| !v.is_null())
        }
        Some(Seg::Key("metadata")) => {
            segs.iter().any(|s| matches!(s, Seg::Key(LAST_APPLIED)))
                || values.iter().any(|v| contains_key(v, LAST_APPLIED))
        }
        Some(Seg::Key("type" | "immutable" | "apiVersion" | "kind")) => false,
        _ => values.iter().any(|v| !v.is_null()),
    }
}

fn contains_key(value: &Value, key: &str) -> bool {
    match value {
        Value::Object(map) => map.contains_key(key) || map.values().any(|v| contains_key(v, key)),
        Value::Array(items) => items.iter().any(|v| contains_key(v, key)),
        _ => false,
    }
}

fn is_merge_key_field(key: &str) -> bool {
    matches!(
        key,
        "name" | "containerPort" | "mountPath" | "devicePath" | "ip" | "type"
    )
}

/// Strategic merge lists of objects are keyed, most often by `name`.
/// A keyed list's items by merge key, the first of each name as a scan
/// finds it: a scan for the short lists of real objects, a map past that,
/// so that two lists of 100,000 entries cost two passes, not 10^10 looks.
enum Keyed<'v> {
    Scan(&'v [Value]),
    Map(foldhash::HashMap<&'v str, &'v Value>),
}

impl<'v> Keyed<'v> {
    const SCAN_MAX: usize = 32;

    fn new(items: &'v [Value]) -> Keyed<'v> {
        if items.len() <= Self::SCAN_MAX {
            return Keyed::Scan(items);
        }
        let mut map = foldhash::HashMap::default();
        map.reserve(items.len());
        for item in items {
            if let Some(key) = merge_key(item) {
                map.entry(key).or_insert(item);
            }
        }
        Keyed::Map(map)
    }

    fn get(&self, name: &str) -> Option<&'v Value> {
        match self {
            Keyed::Scan(items) => items.iter().find(|i| merge_key(i) == Some(name)),
            Keyed::Map(map) => map.get(name).copied(),
        }
    }
}

fn merge_key(item: &Value) -> Option<&str> {
    let map = item.as_object()?;
    ["name", "mountPath", "devicePath", "ip", "type"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
}

fn push(out: &mut Vec<Change>, segs: &[Seg<'_>], new: Value, secret: bool) {
    if segs.is_empty() || out.len() >= MAX_CHANGES {
        return;
    }
    let redacted = secret && is_secret_value(segs, &[&new]);
    out.push(Change {
        path: render(segs),
        old: Value::Null,
        new: if redacted { Value::Null } else { new },
        redacted,
    });
}

/// `spec.template.spec.containers[name=app].image`; keys that are not plain
/// identifiers are quoted: `metadata.annotations["argocd.argoproj.io/tracking-id"]`.
fn render(segs: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) if is_plain(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Key(k) => {
                s.push('[');
                s.push_str(&Value::String((*k).to_owned()).to_string());
                s.push(']');
            }
            Seg::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
            Seg::Append => s.push_str("[-]"),
            Seg::Named(n) => {
                s.push_str("[name=");
                s.push_str(n);
                s.push(']');
            }
        }
    }
    s
}

fn is_plain(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What an object holds at a rendered change path.
#[derive(Debug, PartialEq)]
pub enum Lookup<'v> {
    Found(&'v Value),
    Absent,
    /// The path cannot be followed (`[-]`, or not a path this module
    /// renders).
    Unknown,
}

/// The value at `path` (as [`render`] writes it) in `object`.
pub fn value_at<'v>(object: &'v Value, path: &str) -> Lookup<'v> {
    let Some(segs) = parse_rendered(path) else {
        return Lookup::Unknown;
    };
    let mut at = object;
    for seg in &segs {
        let next = match (seg, at) {
            (Owned::Key(k), Value::Object(map)) => map.get(k),
            (Owned::Index(i), Value::Array(items)) => items.get(*i),
            (Owned::Named(n), Value::Array(items)) => {
                items.iter().find(|i| merge_key(i) == Some(n.as_str()))
            }
            (Owned::Append, _) => return Lookup::Unknown,
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return Lookup::Absent,
        }
    }
    Lookup::Found(at)
}

enum Owned {
    Key(String),
    Index(usize),
    Named(String),
    Append,
}

/// The segments of a rendered path; `None` when it is not one.
fn parse_rendered(path: &str) -> Option<Vec<Owned>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let (seg, after) = bracketed(r)?;
            out.push(seg);
            rest = after;
        } else {
            let r = if out.is_empty() {
                rest
            } else {
                rest.strip_prefix('.')?
            };
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if !is_plain(key) {
                return None;
            }
            out.push(Owned::Key(key.to_owned()));
            rest = &r[end..];
        }
    }
    Some(out)
}

/// One `[...]` segment (the opening bracket already read) and what follows.
fn bracketed(r: &str) -> Option<(Owned, &str)> {
    if let Some(q) = r.strip_prefix('"') {
        let mut escaped = false;
        let close = q.char_indices().find_map(|(i, c)| {
            let end = !escaped && c == '"';
            escaped = !escaped && c == '\\';
            end.then_some(i)
        })?;
        let key: String = serde_json::from_str(&r[..close + 2]).ok()?;
        let after = q[close + 1..].strip_prefix(']')?;
        return Some((Owned::Key(key), after));
    }
    let close = r.find(']')?;
    let (inner, after) = (&r[..close], &r[close + 1..]);
    let seg = if inner == "-" {
        Owned::Append
    } else if let Some(name) = inner.strip_prefix("name=") {
        Owned::Named(name.to_owned())
    } else {
        Owned::Index(inner.parse().ok()?)
    };
    Some((seg, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path a diff renders leads back to its new value.
    #[test]
    fn rendered_paths_lead_back_to_their_values() {
        let old = serde_json::json!({"metadata": {"annotations": {"a.b/c": "1"}},
            "spec": {"replicas": 1, "ports": [80, 443], "template": {"spec": {"containers": [
                {"name": "app", "image": "a:1", "env": [{"name": "X", "value": "1"}]}]}}}});
        let new = serde_json::json!({"metadata": {"annotations": {"a.b/c": "2", "we\"ird]": "q"}},
            "spec": {"replicas": 2, "ports": [80], "template": {"spec": {"containers": [
                {"name": "app", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "DEBUG", "value": "1"}]}]}}}});
        let changes = diff("deployments", &old, &new);
        assert_eq!(changes.len(), 6, "{changes:?}");
        for c in &changes {
            assert_eq!(value_at(&new, &c.path), Lookup::Found(&c.new), "{}", c.path);
        }
        assert_eq!(value_at(&new, "spec.paused"), Lookup::Absent);
        assert_eq!(value_at(&new, "spec.ports[5]"), Lookup::Absent);
        assert_eq!(value_at(&new, "spec.ports[-]"), Lookup::Unknown);
        assert_eq!(value_at(&new, "spec..x"), Lookup::Unknown);
    }

    /// Long keyed lists are matched by name through a map: the same
    /// changes as the scan of short ones (first of a duplicated name wins),
    /// in linear time.
    #[test]
    fn long_keyed_lists_give_the_changes_short_ones_do() {
        let env = |n: usize, changed: Option<usize>| {
            let items: Vec<Value> = (0..n)
                .map(|i| {
                    let v = if Some(i) == changed { "new" } else { "old" };
                    serde_json::json!({"name": format!("V{i}"), "value": v})
                })
                .collect();
            serde_json::json!({"env": items})
        };
        for n in [3, 100_000] {
            let mut new = env(n, Some(1));
            new["env"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "V0", "value": "dup"}));
            new["env"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "ADDED", "value": "a"}));
            let got: Vec<(String, Value)> = diff("deployments", &env(n, None), &new)
                .into_iter()
                .map(|c| (c.path, c.new))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("env[name=V1].value".to_owned(), Value::from("new")),
                    (
                        "env[name=ADDED]".to_owned(),
                        serde_json::json!({"name": "ADDED", "value": "a"})
                    ),
                ],
                "{n} entries"
            );
        }
        let all_new: Vec<Value> = (0..100_000)
            .map(|i| serde_json::json!({"name": format!("V{i}"), "value": i}))
            .collect();
        let changes = diff(
            "deployments",
            &env(100_000, None),
            &serde_json::json!({"env": all_new}),
        );
        assert_eq!(changes.len(), MAX_CHANGES);
    }

    fn changes(verb: &str, resource: &str, body: &str) -> Vec<(String, Value)> {
        let raw = serde_json::from_str::<Box<RawValue>>(body).unwrap();
        from_request(verb, resource, Some(&raw))
            .into_iter()
            .map(|c| (c.path, c.new))
            .collect()
    }

    #[test]
    fn merge_patch_leaf_paths() {
        let got = changes(
            "patch",
            "deployments",
            r#"{"spec":{"replicas":5,"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-20T10:00:00Z"}}}}}"#,
        );
        assert_eq!(
            got,
            vec![
                ("spec.replicas".to_owned(), Value::from(5)),
                (
                    "spec.template.metadata.annotations[\"kubectl.kubernetes.io/restartedAt\"]"
                        .to_owned(),
                    Value::from("2026-11-20T10:00:00Z")
                ),
            ]
        );
    }

    #[test]
    fn strategic_merge_directives_and_named_items() {
        let got = changes(
            "patch",
            "deployments",
            r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"app"}],"containers":[{"name":"app","image":"nginx:1.27"}]}}}}"#,
        );
        assert_eq!(
            got,
            vec![(
                "spec.template.spec.containers[name=app].image".to_owned(),
                Value::from("nginx:1.27")
            )]
        );
    }

    #[test]
    fn json_patch_ops() {
        let got = changes(
            "patch",
            "deployments",
            r#"[{"op":"replace","path":"/spec/replicas","value":2},{"op":"remove","path":"/metadata/labels/app.kubernetes.io~1managed-by"},{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"X"}},{"op":"test","path":"/a","value":1}]"#,
        );
        assert_eq!(got[0], ("spec.replicas".to_owned(), Value::from(2)));
        assert_eq!(
            got[1],
            (
                "metadata.labels[\"app.kubernetes.io/managed-by\"]".to_owned(),
                Value::Null
            )
        );
        assert_eq!(got[2].0, "spec.template.spec.containers[0].env[-]");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn apply_document_skips_identity_and_bookkeeping() {
        let got = changes(
            "patch",
            "configmaps",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"n","resourceVersion":"1","managedFields":[]},"data":{"k":"v"},"status":{}}"#,
        );
        assert_eq!(got, vec![("data.k".to_owned(), Value::from("v"))]);
    }

    #[test]
    fn secret_values_are_redacted() {
        let raw = serde_json::from_str::<Box<RawValue>>(r#"{"data":{"password":"aHVudGVyMg=="}}"#)
            .unwrap();
        let got = from_request("patch", "secrets", Some(&raw));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "data.password");
        assert_eq!(got[0].new, Value::Null);
        assert!(got[0].redacted);
        assert!(!serde_json::to_string(&got).unwrap().contains("aHVudGVyMg"));
    }

    #[test]
    fn object_diff_has_old_and_new() {
        let old: Value = serde_json::from_str(
            r#"{"metadata":{"resourceVersion":"1","labels":{"a":"1"}},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"app","image":"v1"},{"name":"side","image":"s1"}]}}},"status":{"replicas":3}}"#,
        )
        .unwrap();
        let new: Value = serde_json::from_str(
            r#"{"metadata":{"resourceVersion":"2","labels":{"a":"1","b":"2"}},"spec":{"replicas":5,"template":{"spec":{"containers":[{"name":"side","image":"s1"},{"name":"app","image":"v2"}]}}},"status":{"replicas":5}}"#,
        )
        .unwrap();
        let got: Vec<(String, Value, Value)> = diff("deployments", &old, &new)
            .into_iter()
            .map(|c| (c.path, c.old, c.new))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "metadata.labels.b".to_owned(),
                    Value::Null,
                    Value::from("2")
                ),
                ("spec.replicas".to_owned(), Value::from(3), Value::from(5)),
                (
                    "spec.template.spec.containers[name=app].image".to_owned(),
                    Value::from("v1"),
                    Value::from("v2")
                ),
            ]
        );
    }

    #[test]
    fn secret_diff_reports_keys_only() {
        let old: Value = serde_json::from_str(r#"{"data":{"password":"b2xk"}}"#).unwrap();
        let new: Value = serde_json::from_str(r#"{"data":{"password":"bmV3"}}"#).unwrap();
        let got = diff("secrets", &old, &new);
        assert_eq!(got.len(), 1);
        assert!(got[0].redacted);
        let text = serde_json::to_string(&got).unwrap();
        assert!(!text.contains("b2xk") && !text.contains("bmV3"), "{text}");
    }

    #[test]
    fn whole_secret_maps_and_last_applied_copies_are_redacted() {
        // kubectl patch --type=json replacing the whole map, and a
        // client-side kubectl apply carrying the last-applied annotation.
        let bodies = [
            r#"[{"op":"replace","path":"/data","value":{"password":"aHVudGVyMg=="}}]"#,
            r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}}}"#,
            r#"[{"op":"add","path":"/metadata/annotations","value":{"kubectl.kubernetes.io/last-applied-configuration":"aHVudGVyMg=="}}]"#,
        ];
        for body in bodies {
            let raw = serde_json::from_str::<Box<RawValue>>(body).unwrap();
            let got = from_request("patch", "secrets", Some(&raw));
            assert_eq!(got.len(), 1, "{body}");
            assert!(got[0].redacted, "{body}");
            assert!(!serde_json::to_string(&got).unwrap().contains("aHVudGVyMg"));
        }
        // Labels and the type stay visible.
        let got = changes(
            "patch",
            "secrets",
            r#"{"metadata":{"labels":{"team":"shop"}},"type":"Opaque"}"#,
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, Value::from("shop"));
    }

    #[test]
    fn secret_diff_of_a_new_data_map_is_redacted() {
        let old: Value = serde_json::from_str(r#"{"type":"Opaque"}"#).unwrap();
        let new: Value =
            serde_json::from_str(r#"{"type":"Opaque","data":{"password":"bmV3"}}"#).unwrap();
        let text = serde_json::to_string(&diff("secrets", &old, &new)).unwrap();
        assert!(!text.contains("bmV3"), "{text}");
    }

    #[test]
    fn non_patch_verbs_show_nothing_without_state() {
        assert!(changes("update", "deployments", r#"{"spec":{"replicas":1}}"#).is_empty());
    }
}
