//! The closed vocabularies of a judgement: finding types, severities and
//! verdict kinds. They are labels of metrics, fields of findings and stored
//! columns, so each has one spelling.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingType {
    PipelineImpersonation,
    PipelineCredentialMisuse,
    UserAgentSpoofing,
    InteractiveAccess,
    OutOfBandChange,
    /// A sanctioned pipeline delivered dangerous content (a privileged pod,
    /// a cluster-admin binding): what a compromised Git repository or CI
    /// job looks like. Opens no drift; the pipeline is the source of truth.
    RiskyPipelineChange,
    /// A write driftwatch's admission webhook denied: the attempt, not a
    /// change. Opens no drift.
    DeniedChange,
}

impl FindingType {
    pub const ALL: [FindingType; 7] = [
        FindingType::PipelineImpersonation,
        FindingType::PipelineCredentialMisuse,
        FindingType::UserAgentSpoofing,
        FindingType::InteractiveAccess,
        FindingType::OutOfBandChange,
        FindingType::RiskyPipelineChange,
        FindingType::DeniedChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingType::PipelineImpersonation => "pipeline_impersonation",
            FindingType::PipelineCredentialMisuse => "pipeline_credential_misuse",
            FindingType::UserAgentSpoofing => "user_agent_spoofing",
            FindingType::InteractiveAccess => "interactive_access",
            FindingType::OutOfBandChange => "out_of_band_change",
            FindingType::RiskyPipelineChange => "risky_pipeline_change",
            FindingType::DeniedChange => "denied_change",
        }
    }

    pub fn parse(s: &str) -> Option<FindingType> {
        FindingType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Position in [`FindingType::ALL`], for per-type counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the finding is out-of-band state that the pipeline should put
    /// back: not a session, not the pipeline's own write.
    pub fn opens_drift(self) -> bool {
        !matches!(
            self,
            FindingType::InteractiveAccess
                | FindingType::RiskyPipelineChange
                | FindingType::DeniedChange
        )
    }

    /// The three types that always name a sanctioned pipeline.
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
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Which of the four verdicts an event got, without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    #[default]
    Ignored,
    System,
    Sanctioned,
    Drift,
    /// Expected automation inside a quiet rule or a scoped allowance.
    Allowed,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 5] = [
        VerdictKind::Ignored,
        VerdictKind::System,
        VerdictKind::Sanctioned,
        VerdictKind::Drift,
        VerdictKind::Allowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Ignored => "ignored",
            VerdictKind::System => "system",
            VerdictKind::Sanctioned => "sanctioned",
            VerdictKind::Drift => "drift",
            VerdictKind::Allowed => "allowed",
        }
    }

    pub fn parse(s: &str) -> Option<VerdictKind> {
        VerdictKind::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for t in FindingType::ALL {
            assert_eq!(FindingType::parse(t.as_str()), Some(t));
            assert_eq!(FindingType::ALL[t.index()], t);
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::from(t.as_str())
            );
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        for v in VerdictKind::ALL {
            assert_eq!(VerdictKind::parse(v.as_str()), Some(v));
        }
        assert_eq!(FindingType::parse("nope"), None);
    }
}
