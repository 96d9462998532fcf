//! The second half of a verdict, once correlation knows what a write
//! changed: field-scoped allowances and quiet rules are decided here, and
//! the risk read from the write's content is weighed.

use super::allow;
use super::policy::Policy;
use super::verdict::{AllowedBy, Drift, FindingType, Severity, Verdict};
use crate::decode::Event;
use crate::model::{Change, Risk};

/// The final verdict. `known` says whether `changes` is what the write
/// changed; unknown changes never fit a field scope.
/// Whether risk is read for a verdict. System writes are most of the write
/// stream and risk changes nothing for them: their bodies are not read.
/// Sessions are triaged instead.
pub fn weighed(verdict: &Verdict) -> bool {
    match verdict {
        Verdict::Drift(d) => d.finding_type != FindingType::InteractiveAccess,
        Verdict::Allowed(_) | Verdict::Sanctioned { .. } => true,
        Verdict::Ignored(_) | Verdict::System => false,
    }
}

/// `risks`: [`super::risk::assess`] of the event when it was read ahead
/// (off the engine thread); `None`: assessed here if needed.
pub fn settle(
    policy: &Policy,
    verdict: Verdict,
    ev: &Event<'_>,
    changes: &[Change],
    known: bool,
    risks: Option<Vec<Risk>>,
) -> Verdict {
    let verdict = allow_by_fields(policy, verdict, ev, changes, known);
    if !weighed(&verdict) {
        return verdict;
    }
    let mut risks = risks.unwrap_or_else(|| super::risk::assess(ev));
    if let Some(r) = lock_taken_over(ev, changes) {
        risks.push(r);
    }
    if risks.is_empty() && grant_unreadable(ev) {
        risks.push(Risk {
            rule: "grant_not_logged".into(),
            path: String::new(),
            value: serde_json::Value::from(
                "no request or response body: log RBAC and admission writes at RequestResponse",
            ),
            severity: Severity::Critical,
        });
    }
    // How and with whose credential the write was made, beside what it says.
    if let Some(r) = super::risk::client::tooling_rbac(ev, &risks)
        && !agents_declared(policy, &verdict)
    {
        risks.push(r);
    }
    risks.extend(super::risk::node::off_node(ev));
    if risks.is_empty() {
        return verdict;
    }
    if matches!(verdict, Verdict::Sanctioned { .. }) && known && ev.verb() != "create" {
        // A pipeline re-applies its whole manifest on every sync: only what
        // this write changed is news.
        risks.retain(|r| changes.iter().any(|c| overlaps(&c.path, &r.path)));
    }
    let mut verdict = weigh(policy, verdict, risks);
    if let Verdict::Drift(d) = &mut verdict
        && ev.failed()
    {
        d.reasons.push(format!(
            "the API server refused it ({}): an attempt, nothing changed",
            ev.status_code().unwrap_or_default()
        ));
    }
    verdict
}

/// The identity declared the user agents it writes with (a pipeline's
/// `user_agents`, an allowance's `who.user_agents`) and one matched: a tool
/// it was declared with is not news.
fn agents_declared(policy: &Policy, verdict: &Verdict) -> bool {
    match verdict {
        Verdict::Sanctioned { pipeline } => policy
            .pipelines
            .get(*pipeline)
            .is_some_and(|p| !p.user_agents.is_empty()),
        Verdict::Allowed(AllowedBy::Allowance(i)) => policy
            .allowances
            .get(*i)
            .is_some_and(|a| !a.who.user_agents.is_empty()),
        _ => false,
    }
}

fn allow_by_fields(
    policy: &Policy,
    verdict: Verdict,
    ev: &Event<'_>,
    changes: &[Change],
    known: bool,
) -> Verdict {
    let Verdict::Drift(drift) = &verdict else {
        return verdict;
    };
    if !known || drift.pending == Default::default() {
        return verdict;
    }
    if drift.pending.quiet
        && let Some(rule) = policy.quiet.by_fields(ev, changes)
    {
        return Verdict::Allowed(AllowedBy::Quiet(rule));
    }
    let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
    for f in &drift.pending.fields {
        if allow::fits(&policy.allowances, *f, &paths) {
            return Verdict::Allowed(AllowedBy::Allowance(f.allowance));
        }
    }
    verdict
}

/// Risk raises a drift's severity; it turns an allowed write back into a
/// finding (an allowance silences routine, never danger), and a pipeline's
/// write into `risky_pipeline_change` when it reaches the pipeline's bar.
fn weigh(policy: &Policy, verdict: Verdict, risks: Vec<Risk>) -> Verdict {
    let top = risks
        .iter()
        .map(|r| r.severity)
        .max()
        .unwrap_or(Severity::Low);
    match verdict {
        Verdict::Drift(mut d) => {
            d.severity = d.severity.max(top);
            d.reasons.push(summary(&risks));
            d.risks = risks;
            Verdict::Drift(d)
        }
        Verdict::Allowed(by) if top >= Severity::High => {
            let name = match by {
                AllowedBy::Quiet(q) => format!("quiet rule {}", q.as_str()),
                AllowedBy::Allowance(i) => format!(
                    "allowance {:?}",
                    policy.allowances.get(i).map_or("", |a| a.name.as_str())
                ),
            };
            Verdict::Drift(Drift {
                finding_type: FindingType::OutOfBandChange,
                severity: top,
                pipeline: None,
                reasons: vec![
                    format!("dangerous content; {name} covers routine writes only"),
                    summary(&risks),
                ],
                pending: Default::default(),
                risks,
            })
        }
        Verdict::Sanctioned { pipeline } => {
            let bar = policy.pipelines.get(pipeline).and_then(|p| p.report_risks);
            if bar.is_none_or(|bar| top < bar) {
                return Verdict::Sanctioned { pipeline };
            }
            let name = policy.pipeline_name(pipeline).unwrap_or_default();
            Verdict::Drift(Drift {
                finding_type: FindingType::RiskyPipelineChange,
                severity: top,
                pipeline: Some(pipeline),
                reasons: vec![
                    format!("pipeline {name:?} delivered dangerous content"),
                    summary(&risks),
                ],
                pending: Default::default(),
                risks,
            })
        }
        other => other,
    }
}

fn summary(risks: &[Risk]) -> String {
    let mut rules: Vec<&str> = risks.iter().map(|r| r.rule.as_ref()).collect();
    rules.dedup();
    format!("risk: {}", rules.join(", "))
}

/// An RBAC or admission write whose body the audit policy left out: what it
/// grants cannot be read, so it is taken for the worst.
fn grant_unreadable(ev: &Event<'_>) -> bool {
    let webhooks = &super::severity::ADMISSION[..2];
    let control = super::severity::is_rbac(ev.resource(), ev.api_group())
        || (webhooks.contains(&ev.resource()) && ev.api_group() == "admissionregistration.k8s.io");
    control
        && matches!(ev.verb(), "create" | "update" | "patch")
        && ev.request_object.is_none()
        && ev.response_object.is_none()
}

/// A Lease given to another holder by a write that is not the system's: in
/// kube-system that is the controller-manager's or scheduler's lock, and
/// whoever holds it runs the cluster's controllers.
fn lock_taken_over(ev: &Event<'_>, changes: &[Change]) -> Option<Risk> {
    if ev.resource() != "leases" {
        return None;
    }
    let c = changes.iter().find(|c| c.path == "spec.holderIdentity")?;
    let severity = if ev.namespace() == "kube-system" {
        Severity::Critical
    } else {
        Severity::High
    };
    Some(Risk {
        rule: "lease_holder_changed".into(),
        path: c.path.clone(),
        value: c.new.clone(),
        severity,
    })
}

/// One path is the other or lies below it.
fn overlaps(a: &str, b: &str) -> bool {
    let below = |long: &str, short: &str| {
        long.starts_with(short)
            && matches!(long.as_bytes().get(short.len()), None | Some(b'.' | b'['))
    };
    below(a, b) || below(b, a)
}
