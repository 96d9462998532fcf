//! Configurable redaction of field values: `redaction.paths` patterns are
//! matched against change paths, and matching values are withheld before
//! anything is stored, logged or emitted. Secret values are always withheld
//! (see `changes`); this covers the rest (env values, tokens in ConfigMaps).

use super::changes::Change;

/// One path pattern: segments of a change path, `*` for any one segment,
/// `**` for any number (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid redaction pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// `spec.containers[name=app].env[3].value` ->
/// `spec`, `containers`, `[name=app]`, `env`, `[3]`, `value`.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quoted = false;
    for c in path.chars() {
        match c {
            '"' if depth > 0 => {
                quoted = !quoted;
                cur.push(c);
            }
            '[' if !quoted => {
                if depth == 0 && !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                depth += 1;
                cur.push(c);
            }
            ']' if !quoted && depth > 0 => {
                cur.push(c);
                depth -= 1;
                if depth == 0 {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '.' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        let segs = segments(s.trim());
        if segs.is_empty() {
            return Err(PatternError {
                pattern: s.to_owned(),
                reason: "empty",
            });
        }
        Ok(Pattern(segs))
    }

    pub fn matches(&self, path: &str) -> bool {
        let segs = segments(path);
        matches_from(&self.0, &segs)
    }
}

fn matches_from(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|i| matches_from(rest, &path[i..])),
        Some((p, rest)) => match path.split_first() {
            Some((seg, more)) => segment_matches(p, seg) && matches_from(rest, more),
            None => false,
        },
    }
}

fn segment_matches(pattern: &str, seg: &str) -> bool {
    pattern == "*" || pattern == "[*]" && seg.starts_with('[') || pattern == seg
}

/// Withholds the values of every change whose path matches a pattern, or
/// lies below a matching path.
pub fn apply(patterns: &[Pattern], changes: &mut [Change]) {
    if patterns.is_empty() {
        return;
    }
    for c in changes {
        let segs = segments(&c.path);
        let hit = patterns
            .iter()
            .any(|p| (1..=segs.len()).any(|n| matches_from(&p.0, &segs[..n])));
        if hit {
            c.old = serde_json::Value::Null;
            c.new = serde_json::Value::Null;
            c.redacted = true;
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
    }
}
