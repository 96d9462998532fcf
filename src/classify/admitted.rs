//! What driftwatch's admission webhook said of a request, as its audit
//! event carries it: the webhook's `auditAnnotations`, which the API server
//! files as `<webhook name>/<key>` (the name must contain `driftwatch`).
//! The audit path stores a denial or a break-glass write once, from this
//! event, and marks writes no review saw.

use serde_json::value::RawValue;

use super::verdict::{Drift, FindingType, Pending, Severity, Verdict};
use crate::decode::Event;

pub const DECISION_KEY: &str = "decision";
pub const RULE_KEY: &str = "rule";
pub const BREAK_GLASS_KEY: &str = "break-glass";
/// The review's uid, where the review left field changes for this event.
pub const REVIEW_KEY: &str = "review";
/// How a break-glass write's reason begins (`who-changed` marks it).
pub const BREAK_GLASS_REASON: &str = "break-glass past driftwatch's admission";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reviewed {
    pub decision: String,
    pub rule: Option<String>,
    pub break_glass: Option<String>,
    pub review: Option<String>,
}

/// `None`: no review of driftwatch's annotated the event.
pub fn reviewed(annotations: Option<&RawValue>) -> Option<Reviewed> {
    let text = annotations?.get();
    // Every write carries the authorizer's annotations: parse only where
    // driftwatch's webhook left some.
    if !text.contains("driftwatch") {
        return None;
    }
    let map: std::collections::BTreeMap<&str, String> = serde_json::from_str(text).ok()?;
    let find = |key: &str| {
        map.iter()
            .find(|(k, _)| {
                k.rsplit_once('/')
                    .is_some_and(|(prefix, k)| k == key && prefix.contains("driftwatch"))
            })
            .map(|(_, v)| v.clone())
    };
    Some(Reviewed {
        decision: find(DECISION_KEY)?,
        rule: find(RULE_KEY),
        break_glass: find(BREAK_GLASS_KEY),
        review: find(REVIEW_KEY),
    })
}

/// The verdict with the review's word added: a denied request (which the
/// policy ignores as failed) becomes a `denied_change`, a break-glass write
/// is raised to high, and with `admission` on, a drift no review saw says
/// so. A dry run stays what it was: never recorded.
pub fn apply(verdict: Verdict, ev: &Event<'_>, admission: bool) -> Verdict {
    let dry_run = ev.query_param("dryRun").as_deref() == Some("All");
    let review = reviewed(ev.annotations);
    match (verdict, review) {
        (Verdict::Ignored(_), Some(r)) if r.decision == "denied" && !dry_run && denied(ev) => {
            Verdict::Drift(Drift {
                finding_type: FindingType::DeniedChange,
                severity: Severity::High,
                pipeline: None,
                reasons: vec![format!(
                    "driftwatch's admission webhook denied the write (rule {})",
                    r.rule.as_deref().unwrap_or("unknown")
                )],
                pending: Pending::default(),
                risks: Vec::new(),
            })
        }
        (Verdict::Drift(mut d), Some(r)) => {
            match r.decision.as_str() {
                "break_glass" => {
                    d.severity = d.severity.max(Severity::High);
                    d.reasons.push(format!(
                        "{BREAK_GLASS_REASON}: {}",
                        r.break_glass.as_deref().unwrap_or("no reason recorded")
                    ));
                }
                "warned" => d
                    .reasons
                    .push("admitted with a warning (admission mode warn)".to_owned()),
                _ => {}
            }
            Verdict::Drift(d)
        }
        (Verdict::Drift(mut d), None) if admission && d.finding_type.opens_drift() => {
            d.reasons
                .push("no driftwatch admission review saw this write".to_owned());
            Verdict::Drift(d)
        }
        (verdict, _) => verdict,
    }
}

/// Whether a drift's reasons say no review saw its write.
pub fn unreviewed(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Drift(d) if d.reasons.last().is_some_and(|r| r == "no driftwatch admission review saw this write"))
}

fn denied(ev: &Event<'_>) -> bool {
    ev.status_code() == Some(403)
}
