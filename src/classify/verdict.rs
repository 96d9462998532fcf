//! What the policy says about one event.

pub use crate::model::{FindingType, Severity, VerdictKind};

/// Exactly one per decoded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ignored(IgnoreReason),
    System,
    /// Inside a quiet rule's or an allowance's scope: expected automation.
    Allowed(AllowedBy),
    /// A declared pipeline, by index into [`super::Policy::pipelines`].
    Sanctioned {
        pipeline: usize,
    },
    Drift(Drift),
}

impl Verdict {
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Ignored(_) => VerdictKind::Ignored,
            Verdict::System => VerdictKind::System,
            Verdict::Allowed(_) => VerdictKind::Allowed,
            Verdict::Sanctioned { .. } => VerdictKind::Sanctioned,
            Verdict::Drift(_) => VerdictKind::Drift,
        }
    }

    /// A completed, successful, real change (or interactive session): every
    /// verdict but `ignored`.
    pub fn is_mutation(&self) -> bool {
        !matches!(self, Verdict::Ignored(_))
    }
}

/// An out-of-band change: what kind, how bad, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub finding_type: FindingType,
    pub severity: Severity,
    /// The sanctioned pipeline whose identity or user agent was involved.
    pub pipeline: Option<usize>,
    pub reasons: Vec<String>,
    /// Allowances that cover the write if its field changes fit them,
    /// decided once the changes are known ([`super::settle`]).
    pub pending: Pending,
    /// What makes the write dangerous; the severity is at least the highest.
    pub risks: Vec<crate::model::Risk>,
}

/// What may still allow a drift once its field changes are known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub fields: Vec<super::allow::FieldScope>,
    /// A built-in field rule (leader-lock renewal, caBundle) may apply.
    pub quiet: bool,
}

/// Which rule allowed a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowedBy {
    Quiet(super::quiet::Quiet),
    /// By index into [`super::Policy::allowances`].
    Allowance(usize),
}

/// Why an event needs no decision. Also the label set of the ignore metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// `RequestReceived`, or `ResponseStarted` of something not long-running.
    Stage,
    /// Not a mutating verb.
    Read,
    /// The request did not succeed.
    Failed,
    /// `dryRun=All`: nothing was persisted.
    DryRun,
    /// A virtual resource such as `tokenreviews`: nothing is stored.
    VirtualResource,
    /// Built-in noise kinds (events, leases, endpoints, endpointslices).
    NoiseResource,
    /// `ignore.resources` in the config.
    ConfiguredResource,
    /// `ignore.namespaces` in the config.
    ConfiguredNamespace,
}

impl IgnoreReason {
    pub const ALL: [IgnoreReason; 8] = [
        IgnoreReason::Stage,
        IgnoreReason::Read,
        IgnoreReason::Failed,
        IgnoreReason::DryRun,
        IgnoreReason::VirtualResource,
        IgnoreReason::NoiseResource,
        IgnoreReason::ConfiguredResource,
        IgnoreReason::ConfiguredNamespace,
    ];

    /// Position in [`IgnoreReason::ALL`], for per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::Stage => "stage",
            IgnoreReason::Read => "read",
            IgnoreReason::Failed => "failed",
            IgnoreReason::DryRun => "dry_run",
            IgnoreReason::VirtualResource => "virtual_resource",
            IgnoreReason::NoiseResource => "noise_resource",
            IgnoreReason::ConfiguredResource => "configured_resource",
            IgnoreReason::ConfiguredNamespace => "configured_namespace",
        }
    }
}
