//! The policy: one verdict per event. Pure and synchronous, no I/O, so that it
//! can be benchmarked and fuzzed alone.

mod baseline;
pub mod interactive;
mod policy;
pub mod risk;
mod rules;
mod severity;
mod verdict;

pub use policy::{Pipeline, Policy, SeverityOverride, SystemIdentities};
pub use rules::{Access, access_kind, classify};
pub use severity::raise_for_managed;
pub use verdict::{Drift, FindingType, IgnoreReason, Severity, Verdict, VerdictKind};

pub mod system_baseline {
    //! The built-in list, for docs and `policy check`.
    pub use super::baseline::{KUBE_SYSTEM_CONTROLLERS, USERS, usernames};
}
