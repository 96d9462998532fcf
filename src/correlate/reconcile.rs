//! Whether a pipeline write put a drift's fields back.
//!
//! A field is back when the pipeline's write changed it (whatever value it
//! chose is a pipeline value), or when the object after the write no longer
//! holds the value the drift left. A field the pipeline did not touch and
//! whose result is not shown is not taken as back: a server-side apply that
//! does not own a field leaves it as the drift set it, and a request that
//! does not show its result proves nothing about the fields it omits.

use serde_json::Value;

use super::changes::{self, Change, Lookup};
use crate::model::{DriftedPath, fingerprint};

/// The drifted fields still holding their out-of-band value after a
/// pipeline write with these changes and this result.
pub fn remaining(
    drifted: &[DriftedPath],
    pipeline: &[Change],
    after: Option<&Value>,
) -> Vec<DriftedPath> {
    drifted
        .iter()
        .filter(|d| !restored(d, pipeline, after))
        .cloned()
        .collect()
}

fn restored(d: &DriftedPath, pipeline: &[Change], after: Option<&Value>) -> bool {
    if pipeline.iter().any(|c| overlaps(&c.path, &d.path)) {
        return true;
    }
    let (Some(after), Some(left)) = (after, d.value) else {
        return false;
    };
    match changes::value_at(after, &d.path) {
        Lookup::Found(v) => fingerprint(v) != left,
        // Absent is how a removal looks: back if the drift had set a value.
        Lookup::Absent => left != fingerprint(&Value::Null),
        Lookup::Unknown => false,
    }
}

/// One path is the other or lies under it: a pipeline write to a parent
/// (a replaced list, a whole map) or to a child sets the drifted field.
fn overlaps(a: &str, b: &str) -> bool {
    let under = |long: &str, short: &str| {
        long.strip_prefix(short)
            .is_some_and(|r| r.is_empty() || r.starts_with('.') || r.starts_with('['))
    };
    under(a, b) || under(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, new: Value) -> Change {
        Change {
            path: path.to_owned(),
            old: Value::Null,
            new,
            redacted: false,
        }
    }

    fn drifted(path: &str, value: Value) -> DriftedPath {
        DriftedPath::of(&change(path, value))
    }

    fn deployment(env: &[(&str, &str)], image: &str) -> Value {
        let env: Vec<Value> = env
            .iter()
            .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
            .collect();
        serde_json::json!({"kind": "Deployment", "metadata": {"name": "api"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image, "env": env}]}}}})
    }

    const ENV_DEBUG: &str = "spec.template.spec.containers[name=app].env[name=DEBUG]";
    const IMAGE: &str = "spec.template.spec.containers[name=app].image";

    /// The case: `kubectl edit` adds an env var; an apply that does
    /// not own it changes the image and leaves it.
    #[test]
    fn a_field_the_pipeline_neither_wrote_nor_removed_remains() {
        let d = [drifted(
            ENV_DEBUG,
            serde_json::json!({"name": "DEBUG", "value": "1"}),
        )];
        let after = deployment(&[("DEBUG", "1")], "api:2");
        let pipeline = [change(IMAGE, Value::from("api:2"))];
        assert_eq!(remaining(&d, &pipeline, Some(&after)), d);
        // Removed by the pipeline's write (an update without it).
        let after = deployment(&[], "api:2");
        assert!(remaining(&d, &pipeline, Some(&after)).is_empty());
        // Not shown: not taken as back.
        assert_eq!(remaining(&d, &pipeline, None), d);
    }

    #[test]
    fn a_field_the_pipeline_wrote_is_back_whatever_its_value() {
        let d = [drifted(IMAGE, Value::from("api:evil"))];
        let pipeline = [change(IMAGE, Value::from("api:evil"))];
        assert!(remaining(&d, &pipeline, None).is_empty());
        let parent = [change("spec.template.spec.containers", Value::Null)];
        assert!(remaining(&d, &parent, None).is_empty());
        let sibling = [change(
            "spec.template.spec.containers[name=app].imagePullPolicy",
            Value::Null,
        )];
        assert_eq!(remaining(&d, &sibling, None), d);
    }

    #[test]
    fn a_removed_field_is_back_when_it_is_there_again() {
        let d = [drifted("spec.replicas", Value::Null)];
        let absent = serde_json::json!({"spec": {}});
        assert_eq!(remaining(&d, &[], Some(&absent)), d);
        let present = serde_json::json!({"spec": {"replicas": 3}});
        assert!(remaining(&d, &[], Some(&present)).is_empty());
    }

    #[test]
    fn a_redacted_value_is_back_only_when_the_pipeline_writes_it() {
        let secret = DriftedPath {
            path: "data.password".to_owned(),
            value: None,
        };
        let after = serde_json::json!({"data": {"password": "b3RoZXI="}});
        assert_eq!(
            remaining(std::slice::from_ref(&secret), &[], Some(&after)).len(),
            1
        );
        let wrote = [Change {
            redacted: true,
            ..change("data.password", Value::Null)
        }];
        assert!(remaining(&[secret], &wrote, Some(&after)).is_empty());
    }
}
