//! How a finding or an alert is written for its receiver: driftwatch's own
//! JSON, OCSF, Elastic ECS or CEF. Pure functions: no I/O, no clock.

mod cef;
mod common;
mod ecs;
mod native;
mod ocsf;
mod text;

use super::Finding;
use super::shape::Alert;

pub use ecs::ECS_VERSION;
pub use native::ALERT_SCHEMA;
pub use ocsf::OCSF_VERSION;
pub use text::alert_text;

/// The encoding a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `driftwatch.finding/v1` and `driftwatch.alert/v1`.
    #[default]
    Native,
    /// OCSF Detection Finding (2004) with the API Activity as evidence.
    Ocsf,
    /// Elastic Common Schema.
    Ecs,
    /// ArcSight Common Event Format, one line per event.
    Cef,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Native, Format::Ocsf, Format::Ecs, Format::Cef];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
            Format::Cef => "cef",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether one rendered event is a JSON object (else a CEF line).
    pub fn is_json(self) -> bool {
        self != Format::Cef
    }
}

/// One finding in `format`, appended to `out`: one JSON object (no newline)
/// or one CEF line (no newline).
pub fn render_finding(format: Format, f: &Finding<'_>, out: &mut Vec<u8>) {
    match format {
        Format::Native => native::finding(f, out),
        Format::Ocsf => json(&ocsf::finding(f), out),
        Format::Ecs => json(&ecs::finding(f), out),
        Format::Cef => cef::finding(f, out),
    }
}

/// One alert in `format`, appended to `out` (same framing).
pub fn render_alert(format: Format, a: &Alert, out: &mut Vec<u8>) {
    match format {
        Format::Native => native::alert(a, out),
        Format::Ocsf => json(&ocsf::alert(a), out),
        Format::Ecs => json(&ecs::alert(a), out),
        Format::Cef => cef::alert(a, out),
    }
}

/// Serializing a `serde_json::Value` or our own structs to a Vec cannot
/// fail (no maps with non-string keys, no I/O).
/// A finding's native JSON as a value, for formats that carry it whole.
fn native_value(f: &Finding<'_>) -> serde_json::Value {
    serde_json::to_value(f).unwrap_or(serde_json::Value::Null)
}

fn json<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests;
