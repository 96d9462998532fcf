//! The policy: one verdict per event. Pure and synchronous, no I/O, so that it
//! can be benchmarked and fuzzed alone.

pub mod admitted;
pub mod allow;
mod baseline;
pub mod interactive;
mod policy;
pub mod quiet;
pub mod risk;
mod rules;
mod settle;
mod severity;
mod verdict;

pub use policy::{Pipeline, Policy, SeverityOverride, SystemIdentities};
pub use rules::{Access, access_kind, classify};
pub use settle::{settle, weighed};
pub use severity::{raise_for_managed, raise_severity_for_managed};
pub use verdict::{
    AllowedBy, Drift, FindingType, IgnoreReason, Pending, Severity, Verdict, VerdictKind,
};

pub mod system_baseline {
    //! The built-in list, for docs and `policy check`.
    pub use super::baseline::{KUBE_SYSTEM_CONTROLLERS, USERS, usernames};
}
