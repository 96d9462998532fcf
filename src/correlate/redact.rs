//! Configurable redaction of field values: `redaction.paths` patterns are
//! matched against change paths, and matching values are withheld before
//! anything is stored, logged or emitted. Secret values are always withheld
//! (see `changes`); this covers the rest (env values, tokens in ConfigMaps).

use super::changes::Change;
pub use crate::model::{PathPattern as Pattern, PatternError};

/// Withholds the values of every change whose path matches a pattern, or
/// lies below a matching path.
pub fn apply(patterns: &[Pattern], changes: &mut [Change]) {
    if patterns.is_empty() {
        return;
    }
    for c in changes {
        if patterns.iter().any(|p| p.covers(&c.path)) {
            c.old = serde_json::Value::Null;
            c.new = serde_json::Value::Null;
            c.redacted = true;
        }
    }
}

/// The same for risks: a risk names the path, its value is withheld.
pub fn apply_to_risks(patterns: &[Pattern], risks: &mut [crate::model::Risk]) {
    for r in risks {
        if !r.path.is_empty() && patterns.iter().any(|p| p.covers(&r.path)) {
            r.value = serde_json::Value::Null;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn change(path: &str) -> Change {
        Change {
            path: path.to_owned(),
            old: Value::from("old-secret"),
            new: Value::from("new-secret"),
            redacted: false,
        }
    }

    #[test]
    fn wildcards_and_prefixes() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(
            p("spec.template.spec.containers[*].env[*].value")
                .matches("spec.template.spec.containers[name=app].env[name=TOKEN].value")
        );
        assert!(
            !p("spec.template.spec.containers[*].env[*].value")
                .matches("spec.template.spec.containers[name=app].image")
        );
        assert!(
            p("**.env[*].value")
                .matches("spec.template.spec.containers[name=app].env[name=TOKEN].value")
        );
        assert!(p("data.*").matches("data.password"));
        assert!(
            p(r#"metadata.annotations["example.com/token"]"#)
                .matches(r#"metadata.annotations["example.com/token"]"#)
        );
        assert!(Pattern::parse("  ").is_err());
    }

    #[test]
    fn values_below_a_matching_path_are_withheld() {
        let patterns = vec![
            Pattern::parse("data").unwrap(),
            Pattern::parse("**.env").unwrap(),
        ];
        let mut changes = vec![
            change("data.api-key"),
            change("spec.template.spec.containers[name=app].env[name=X].value"),
            change("spec.replicas"),
        ];
        apply(&patterns, &mut changes);
        assert!(changes[0].redacted && changes[0].new.is_null() && changes[0].old.is_null());
        assert!(changes[1].redacted);
        assert!(!changes[2].redacted);
        assert_eq!(changes[2].new, Value::from("new-secret"));
        let mut risks = vec![crate::model::Risk {
            rule: "webhook_external_url".into(),
            path: "data.url".to_owned(),
            value: Value::from("https://internal.example/hook"),
            severity: crate::model::Severity::Critical,
        }];
        apply_to_risks(&patterns, &mut risks);
        assert!(risks[0].value.is_null());
    }
}
