//! Human text of an alert, for chat (Slack's `text`, mrkdwn allowed).

use std::fmt::Write;

use super::common::alert_title;
use crate::sinks::shape::{Alert, AlertKind};

/// Fields listed in a message; the rest are counted.
const MAX_LISTED_PATHS: usize = 8;

/// A readable one-paragraph text of an alert: who changed what where,
/// severity, fields, drift state, how to see history.
pub fn alert_text(a: &Alert) -> String {
    let mut s = format!(
        "*[{}] {}* in cluster `{}`",
        a.severity.as_str().to_uppercase(),
        plain(&alert_title(a)),
        plain(&a.cluster)
    );
    if let Some(f) = &a.finding {
        let actor = &f.record.actor;
        let _ = write!(
            s,
            ": `{}` ran `{}`",
            plain(&actor.describe()),
            plain(&f.record.verb)
        );
        if let Some(client) = &actor.client {
            let _ = write!(s, " with {}", plain(client));
        }
        if a.kind == AlertKind::Updated {
            let _ = write!(s, " ({} changes since {})", a.folded, a.first.text);
        }
        s.push('.');
    }
    if let Some(c) = &a.closed {
        let _ = write!(
            s,
            ": {} by `{}` after {:.0}s",
            c.state.as_str(),
            plain(&c.by),
            c.seconds
        );
        if let Some(reason) = &c.reason {
            let _ = write!(s, " (\"{}\")", plain(reason));
        }
        s.push('.');
    }
    paths(a, &mut s);
    if let Some(state) = a.state {
        let _ = write!(s, " Drift state: {}.", state.as_str());
    }
    if let Some(f) = &a.finding {
        let reasons = f.record.reasons.join(" ");
        if !reasons.is_empty() {
            let _ = write!(s, " {}", plain(&reasons));
        }
    }
    let _ = write!(s, " History: `{}`", who_changed(a));
    s
}

fn paths(a: &Alert, s: &mut String) {
    if a.paths.is_empty() {
        return;
    }
    let listed: Vec<String> = a
        .paths
        .iter()
        .take(MAX_LISTED_PATHS)
        .map(|p| format!("`{}`", plain(p)))
        .collect();
    let _ = write!(s, " Fields: {}", listed.join(", "));
    if a.paths.len() > MAX_LISTED_PATHS {
        let _ = write!(s, " and {} more", a.paths.len() - MAX_LISTED_PATHS);
    }
    s.push('.');
}

/// The command that lists the object's changes.
fn who_changed(a: &Alert) -> String {
    let o = &a.object;
    let kind = if o.group.is_empty() {
        o.resource.clone()
    } else {
        format!("{}.{}", o.resource, o.group)
    };
    let mut cmd = format!("driftwatch who-changed {kind}/{}", o.name_str());
    if let Some(ns) = &o.namespace {
        let _ = write!(cmd, " -n {ns}");
    }
    let _ = write!(cmd, " --cluster {}", a.cluster);
    plain(&cmd)
}

/// Text from outside, made inert for mrkdwn: Slack's three escapes (no
/// `<!channel>`, no link), no code-span breakout, one line.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('\''),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
