//! The second half of a verdict, once correlation knows what a write
//! changed: field-scoped allowances and quiet rules are decided here.

use super::allow;
use super::policy::Policy;
use super::verdict::{AllowedBy, Verdict};
use crate::decode::Event;
use crate::model::Change;

/// The final verdict. `known` says whether `changes` is what the write
/// changed; unknown changes never fit a field scope.
pub fn settle(
    policy: &Policy,
    verdict: Verdict,
    ev: &Event<'_>,
    changes: &[Change],
    known: bool,
) -> Verdict {
    let Verdict::Drift(drift) = &verdict else {
        return verdict;
    };
    if !known {
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
