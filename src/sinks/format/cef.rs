//! ArcSight Common Event Format (CEF:0), one line per event:
//! `CEF:0|driftwatch|driftwatch|VERSION|TYPE|TITLE|SEVERITY|key=value ...`.
//! Every value comes from outside (names, paths, user agents), so every
//! value is escaped: a hostile one cannot add a field or a line.

use std::fmt::Write;

use super::common::{alert_title, alert_type, alert_uid, finding_title, ms, object_label};
use crate::model::{ChangeRecord, Severity};
use crate::sinks::Finding;
use crate::sinks::shape::Alert;

/// CEF severity 0-10.
pub fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// A header field: `\` and `|` escaped; a line break would end the event,
/// so it becomes a space (CEF has no escape for it in the header).
pub fn escape_header(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// An extension value: `\`, `=` and line breaks escaped.
pub fn escape_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The line being built: header, then `key=value` pairs.
struct Line(String);

impl Line {
    fn new(signature: &str, name: &str, severity: Severity) -> Line {
        let mut s = String::from("CEF:0|driftwatch|driftwatch|");
        escape_header(env!("CARGO_PKG_VERSION"), &mut s);
        for field in [signature, name] {
            s.push('|');
            escape_header(field, &mut s);
        }
        let _ = write!(s, "|{}|", severity_number(severity));
        Line(s)
    }

    fn put(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        if !self.0.ends_with('|') {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        escape_value(value, &mut self.0);
    }

    /// A custom string with its label (`cs1Label=cluster cs1=prod`).
    fn custom(&mut self, n: u8, label: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        self.put(&format!("cs{n}Label"), label);
        self.put(&format!("cs{n}"), value);
    }

    fn finish(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
}

pub(super) fn finding(f: &Finding<'_>, out: &mut Vec<u8>) {
    let r = f.record;
    let mut line = Line::new(
        f.finding_type.as_str(),
        &finding_title(f.finding_type, &r.resource),
        f.severity,
    );
    line.put("rt", &ms(r.time.us).to_string());
    line.put("externalId", &r.id);
    record(&mut line, r, &paths(r));
    line.finish(out);
}

pub(super) fn alert(a: &Alert, out: &mut Vec<u8>) {
    let mut line = Line::new(alert_type(a), &alert_title(a), a.severity);
    line.put("rt", &ms(a.last.us).to_string());
    line.put("externalId", &alert_uid(a));
    line.put("cat", a.kind.as_str());
    line.put("cnt", &a.folded.to_string());
    match &a.finding {
        Some(f) => record(&mut line, &f.record, &a.paths.join(",")),
        None => closed(&mut line, a),
    }
    line.finish(out);
}

/// The change: who, from where, which call, on what.
fn record(line: &mut Line, r: &ChangeRecord, changes: &str) {
    let a = &r.actor;
    match &a.impersonated_by {
        Some(by) => {
            line.put("suser", &by.username);
            line.put("duser", &a.username);
        }
        None => line.put("suser", &a.username),
    }
    line.put("suid", a.uid.as_deref().unwrap_or(""));
    line.put("src", a.source_ips.first().map_or("", String::as_str));
    line.put("act", &r.verb);
    line.put("request", &r.request_uri);
    line.put(
        "requestClientApplication",
        a.user_agent.as_deref().unwrap_or(""),
    );
    line.put("msg", &r.reasons.join(" "));
    line.custom(1, "cluster", &r.cluster);
    line.custom(2, "namespace", r.resource.namespace_str());
    line.custom(3, "resource", &object_label(&r.resource));
    line.custom(4, "driftId", r.drift.as_ref().map_or("", |d| d.id.as_str()));
    line.custom(5, "changes", changes);
    let risks: Vec<&str> = r.risks.iter().map(|k| k.rule.as_ref()).collect();
    line.custom(6, "risks", &risks.join(","));
}

fn closed(line: &mut Line, a: &Alert) {
    if let Some(c) = &a.closed {
        line.put("suser", &c.by);
        line.put("act", c.state.as_str());
        line.put("reason", c.reason.as_deref().unwrap_or(""));
    }
    line.custom(1, "cluster", &a.cluster);
    line.custom(2, "namespace", a.object.namespace_str());
    line.custom(3, "resource", &object_label(&a.object));
    line.custom(4, "driftId", a.drift_id.as_deref().unwrap_or(""));
}

fn paths(r: &ChangeRecord) -> String {
    let paths: Vec<&str> = r.changes.iter().map(|c| c.path.as_str()).collect();
    paths.join(",")
}
