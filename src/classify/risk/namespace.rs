//! Pod Security Admission labels on a namespace: set to `privileged`, or
//! removed. Loosening `restricted` to `baseline` needs the previous value,
//! which a body alone does not show.

use serde_json::Value;

use super::path::Path;
use super::{Ctx, Sink};
use crate::model::Severity::High;

const MODES: &[&str] = &["enforce", "warn", "audit"];

pub fn check(ctx: &Ctx<'_>, sink: &mut Sink) {
    let labels = Path::of("metadata.labels");
    for mode in MODES {
        let label = format!("pod-security.kubernetes.io/{mode}");
        let at = labels.key(&label);
        let value = ctx.at("/metadata/labels").and_then(|l| l.get(&label));
        if value.and_then(Value::as_str) == Some("privileged") {
            sink.push(
                "pod_security_privileged",
                &at,
                Value::from("privileged"),
                High,
            );
        } else if ctx.patch.is_some_and(|p| removes(p, &label)) {
            sink.push_always("pod_security_label_removed", &at, Value::Null, High);
        }
    }
}

/// Whether a patch document removes the label: `null` in a merge patch, a
/// JSON patch `remove` of it or of all the labels.
fn removes(patch: &Value, label: &str) -> bool {
    match patch {
        Value::Array(ops) => {
            let escaped = format!(
                "/metadata/labels/{}",
                label.replace('~', "~0").replace('/', "~1")
            );
            ops.iter().any(|op| {
                op.get("op").and_then(Value::as_str) == Some("remove")
                    && op
                        .get("path")
                        .and_then(Value::as_str)
                        .is_some_and(|p| p == escaped || p == "/metadata/labels")
            })
        }
        _ => {
            let labels = patch.pointer("/metadata/labels");
            labels.is_some_and(Value::is_null)
                || labels
                    .and_then(|l| l.get(label))
                    .is_some_and(Value::is_null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Ev;
    use super::*;
    use crate::model::Severity;

    fn ns(
        verb: &'static str,
        request: &str,
        response: Option<&str>,
    ) -> Vec<(&'static str, String, Severity)> {
        Ev {
            verb,
            resource: "namespaces",
            name: "shop",
            request: Some(request),
            response,
            ..Ev::default()
        }
        .risks()
    }

    const ENFORCE: &str = r#"metadata.labels["pod-security.kubernetes.io/enforce"]"#;

    #[test]
    fn labels_set_to_privileged() {
        let body = r#"{"kind":"Namespace","metadata":{"name":"shop","labels":{"pod-security.kubernetes.io/enforce":"privileged","pod-security.kubernetes.io/warn":"restricted"}}}"#;
        assert_eq!(
            ns("update", body, None),
            [("pod_security_privileged", ENFORCE.to_owned(), High)]
        );
        // `kubectl label ns shop pod-security.kubernetes.io/enforce=privileged --overwrite`
        let after = r#"{"kind":"Namespace","metadata":{"name":"shop","labels":{"pod-security.kubernetes.io/enforce":"privileged","team":"a"}}}"#;
        let patch =
            r#"{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}"#;
        assert_eq!(ns("patch", patch, Some(after)).len(), 1);
        // Another label on an already privileged namespace is no new risk.
        let other = r#"{"metadata":{"labels":{"team":"a"}}}"#;
        assert!(ns("patch", other, Some(after)).is_empty());
        let baseline = r#"{"metadata":{"name":"shop","labels":{"pod-security.kubernetes.io/enforce":"baseline"}}}"#;
        assert!(ns("create", baseline, None).is_empty());
    }

    #[test]
    fn labels_removed() {
        let after = r#"{"kind":"Namespace","metadata":{"name":"shop","labels":{"team":"a"}}}"#;
        let merge = r#"{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":null}}}"#;
        assert_eq!(
            ns("patch", merge, Some(after)),
            [("pod_security_label_removed", ENFORCE.to_owned(), High)]
        );
        let json =
            r#"[{"op":"remove","path":"/metadata/labels/pod-security.kubernetes.io~1audit"}]"#;
        assert_eq!(ns("patch", json, Some(after)).len(), 1);
        let unrelated = r#"[{"op":"remove","path":"/metadata/labels/team"}]"#;
        assert!(ns("patch", unrelated, Some(after)).is_empty());
    }
}
