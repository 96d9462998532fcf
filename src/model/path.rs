//! Patterns over change paths (`spec.template.spec.containers[name=app].image`):
//! what redaction withholds and what an allowance may touch.

/// One path pattern: segments of a change path, `*` for any one segment,
/// `**` for any number (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// `spec.containers[name=app].env[3].value` ->
/// `spec`, `containers`, `[name=app]`, `env`, `[3]`, `value`.
pub(crate) fn segments(path: &str) -> Vec<String> {
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

impl PathPattern {
    pub fn parse(s: &str) -> Result<PathPattern, PatternError> {
        let segs = segments(s.trim());
        if segs.is_empty() {
            return Err(PatternError {
                pattern: s.to_owned(),
                reason: "empty",
            });
        }
        Ok(PathPattern(segs))
    }

    /// The pattern's segments: `spec`, `containers`, `[*]`, `data["ca.crt"]`'s `["ca.crt"]`.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    pub fn matches(&self, path: &str) -> bool {
        let segs = segments(path);
        matches_from(&self.0, &segs)
    }

    /// Matches `path` or one of its parents: a pattern for a field covers
    /// everything below it.
    pub fn covers(&self, path: &str) -> bool {
        let segs = segments(path);
        (1..=segs.len()).any(|n| matches_from(&self.0, &segs[..n]))
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

/// The unescaped tokens of a JSON pointer (RFC 6901): `/a~1b/0` is
/// `["a/b", "0"]`; the whole document (`""`) has none.
pub fn pointer_tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}
