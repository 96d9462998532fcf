//! Change paths, rendered exactly as `correlate::changes` renders them
//! (dotted plain keys, `["quoted"]` other keys, `[name=x]` for items of a
//! list whose items all carry a merge key, `[0]` otherwise), and the paths
//! a patch document touches.

use serde_json::Value;

/// Bounds the paths read from one patch document.
const MAX_TOUCHED: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn root() -> Path {
        Path(String::new())
    }

    /// `a.b.c` from plain keys.
    pub fn of(dotted: &str) -> Path {
        dotted.split('.').fold(Path::root(), |p, k| p.key(k))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self, k: &str) -> Path {
        let mut s = self.0.clone();
        push_key(&mut s, k);
        Path(s)
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    /// The path of `list[i]`: by merge key when every item has one, as
    /// `correlate::changes` does, else by index.
    pub fn item(&self, list: &[Value], i: usize) -> Path {
        match list.get(i).and_then(merge_key) {
            Some(name) if list.iter().all(|v| merge_key(v).is_some()) => {
                Path(format!("{}[name={name}]", self.0))
            }
            _ => self.index(i),
        }
    }
}

fn push_key(s: &mut String, k: &str) {
    if is_plain(k) {
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(k);
    } else {
        s.push('[');
        s.push_str(&Value::String(k.to_owned()).to_string());
        s.push(']');
    }
}

fn is_plain(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The keys `correlate::changes` identifies list items by, in its order.
fn merge_key(item: &Value) -> Option<&str> {
    let map = item.as_object()?;
    ["name", "mountPath", "devicePath", "ip", "type"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
}

fn is_merge_key_field(key: &str) -> bool {
    matches!(
        key,
        "name" | "containerPort" | "mountPath" | "devicePath" | "ip" | "type"
    )
}

/// Whether a risk at `risk` concerns a patch that touched `touched`: the
/// same path, a parent (a whole list or object replaced) or a child (one
/// verb of a rule's verbs replaced).
pub fn related(touched: &str, risk: &str) -> bool {
    under(touched, risk) || under(risk, touched)
}

/// `path` is `base` or below it.
fn under(base: &str, path: &str) -> bool {
    base.is_empty()
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// The paths a patch document sets or removes. A JSON patch's indexes are
/// resolved against the object after the patch, so that `containers/0` is
/// `containers[name=app]` like the risk found there.
pub fn touched(patch: &Value, after: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    match patch {
        Value::Array(ops) => {
            for op in ops {
                for key in ["path", "from"] {
                    if let Some(pointer) = op.get(key).and_then(Value::as_str) {
                        out.push(resolve(pointer, after).0);
                    }
                }
            }
        }
        _ => walk(patch, &Path::root(), &mut out),
    }
    out.truncate(MAX_TOUCHED);
    out
}

fn walk(value: &Value, path: &Path, out: &mut Vec<String>) {
    if out.len() >= MAX_TOUCHED {
        return;
    }
    match value {
        Value::Object(map) if !map.is_empty() && !map.contains_key("$patch") => {
            for (key, child) in map.iter().filter(|(k, _)| !k.starts_with('$')) {
                walk(child, &path.key(key), out);
            }
        }
        Value::Array(items)
            if !items.is_empty() && items.iter().all(|i| merge_key(i).is_some()) =>
        {
            for (i, item) in items.iter().enumerate() {
                let item_path = path.item(items, i);
                let fields = item.as_object().into_iter().flatten();
                let mut any = false;
                for (key, child) in
                    fields.filter(|(k, _)| !k.starts_with('$') && !is_merge_key_field(k))
                {
                    any = true;
                    walk(child, &item_path.key(key), out);
                }
                if !any {
                    out.push(item_path.0);
                }
            }
        }
        _ => out.push(path.0.clone()),
    }
}

/// A JSON pointer as a change path, list items named from `after`.
fn resolve(pointer: &str, after: Option<&Value>) -> Path {
    let mut path = Path::root();
    let mut cursor = after;
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match cursor {
            Some(Value::Array(items)) => {
                let i = if token == "-" {
                    items.len().saturating_sub(1)
                } else {
                    token.parse().unwrap_or(usize::MAX)
                };
                path = path.item(items, i);
                cursor = items.get(i);
            }
            Some(Value::Object(map)) => {
                path = path.key(&token);
                cursor = map.get(&token);
            }
            _ => {
                path = match token.parse::<usize>() {
                    Ok(i) => path.index(i),
                    Err(_) => path.key(&token),
                };
                cursor = None;
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_render_like_change_paths() {
        let containers = [json!({"name": "app"}), json!({"name": "side"})];
        let p = Path::of("spec.template.spec")
            .key("containers")
            .item(&containers, 1)
            .key("securityContext");
        assert_eq!(
            p.as_str(),
            "spec.template.spec.containers[name=side].securityContext"
        );
        let rules = [json!({"verbs": ["get"]})];
        assert_eq!(
            Path::root().key("rules").item(&rules, 0).as_str(),
            "rules[0]"
        );
        assert_eq!(
            Path::of("metadata.labels")
                .key("pod-security.kubernetes.io/enforce")
                .as_str(),
            r#"metadata.labels["pod-security.kubernetes.io/enforce"]"#
        );
    }

    #[test]
    fn strategic_merge_patch_touches_named_leaves() {
        let patch = json!({"spec": {"replicas": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "image": "nginx:1.27"}]}}}});
        assert_eq!(
            touched(&patch, None),
            [
                "spec.replicas",
                "spec.template.spec.containers[name=app].image"
            ]
        );
    }

    #[test]
    fn json_patch_indexes_are_named_from_the_object_after() {
        let after =
            json!({"spec": {"containers": [{"name": "app"}, {"name": "dbg"}]}, "rules": [{}, {}]});
        let patch = json!([
            {"op": "replace", "path": "/spec/containers/1/securityContext/privileged", "value": true},
            {"op": "add", "path": "/rules/-", "value": {}},
            {"op": "remove", "path": "/metadata/labels/a~1b"}
        ]);
        assert_eq!(
            touched(&patch, Some(&after)),
            [
                "spec.containers[name=dbg].securityContext.privileged",
                "rules[1]",
                r#"metadata.labels["a/b"]"#
            ]
        );
    }

    #[test]
    fn related_is_same_parent_or_child() {
        assert!(related("rules", "rules[0].verbs"));
        assert!(related("rules[0].verbs[1]", "rules[0].verbs"));
        assert!(related("", "spec.hostPID"));
        assert!(!related("spec.replicas", "spec.template.spec.hostPID"));
        assert!(!related("spec.host", "spec.hostPID"));
    }
}
