//! Field-level changes read from a request body.
//!
//! A PATCH body is the patch document; its type is not logged, so it is told
//! from the shape: an array is a JSON patch, an object a merge, strategic
//! merge or server-side apply document. Old values need remembered state and
//! are `null` when unknown.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// A bound on what one finding carries, so a huge apply document does not
/// turn into a huge finding.
pub const MAX_CHANGES: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub old: Value,
    pub new: Value,
    /// Secret values never leave the process: only the key is reported.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

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
        let tokens: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
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

fn is_merge_key_field(key: &str) -> bool {
    matches!(
        key,
        "name" | "containerPort" | "mountPath" | "devicePath" | "ip" | "type"
    )
}

/// Strategic merge lists of objects are keyed, most often by `name`.
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
    let redacted =
        secret && matches!(segs.first(), Some(Seg::Key("data" | "stringData"))) && segs.len() > 1;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn non_patch_verbs_show_nothing_without_state() {
        assert!(changes("update", "deployments", r#"{"spec":{"replicas":1}}"#).is_empty());
    }
}
