//! What the policy says about one event.

use serde::{Deserialize, Serialize};

/// Exactly one per decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ignored(IgnoreReason),
    System,
    /// A declared pipeline, by index into [`super::Policy::pipelines`].
    Sanctioned {
        pipeline: usize,
    },
    Drift(Drift),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Ignored(_) => "ignored",
            Verdict::System => "system",
            Verdict::Sanctioned { .. } => "sanctioned",
            Verdict::Drift(_) => "drift",
        }
    }

    /// A completed, successful, real change (or interactive session): every
    /// verdict but `ignored`.
    pub fn is_mutation(&self) -> bool {
        !matches!(self, Verdict::Ignored(_))
    }
}

/// An out-of-band change: what kind, how bad, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub finding_type: FindingType,
    pub severity: Severity,
    /// The pipeline whose identity or user agent was involved.
    pub pipeline: Option<usize>,
    pub reasons: Vec<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingType {
    PipelineImpersonation,
    PipelineCredentialMisuse,
    UserAgentSpoofing,
    InteractiveAccess,
    OutOfBandChange,
}

impl FindingType {
    pub const ALL: [FindingType; 5] = [
        FindingType::PipelineImpersonation,
        FindingType::PipelineCredentialMisuse,
        FindingType::UserAgentSpoofing,
        FindingType::InteractiveAccess,
        FindingType::OutOfBandChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingType::PipelineImpersonation => "pipeline_impersonation",
            FindingType::PipelineCredentialMisuse => "pipeline_credential_misuse",
            FindingType::UserAgentSpoofing => "user_agent_spoofing",
            FindingType::InteractiveAccess => "interactive_access",
            FindingType::OutOfBandChange => "out_of_band_change",
        }
    }

    /// The three types that always name a pipeline.
    pub fn involves_pipeline(self) -> bool {
        matches!(
            self,
            FindingType::PipelineImpersonation
                | FindingType::PipelineCredentialMisuse
                | FindingType::UserAgentSpoofing
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}
