//! `admission:`: the validating admission webhook (see [`crate::admission`]).

use std::time::Duration;

use super::check::Problems;
use super::raw::{RawAdmission, RawAdmissionOverride};
use crate::model::FindingType;

/// What a rule's verdict does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionMode {
    /// Allow, and record as the audit path does.
    Audit,
    /// Allow with a warning the client prints.
    Warn,
    /// Deny.
    Enforce,
}

impl AdmissionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AdmissionMode::Audit => "audit",
            AdmissionMode::Warn => "warn",
            AdmissionMode::Enforce => "enforce",
        }
    }

    fn parse(s: &str) -> Option<AdmissionMode> {
        [
            AdmissionMode::Audit,
            AdmissionMode::Warn,
            AdmissionMode::Enforce,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// `admission.overrides[]`: the first whose every given list matches wins.
#[derive(Debug, Clone)]
pub struct AdmissionOverride {
    /// Empty: any namespace. `""` names cluster-scoped objects.
    pub namespaces: Vec<String>,
    /// Finding types; empty: any.
    pub rules: Vec<FindingType>,
    pub mode: AdmissionMode,
}

#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub mode: AdmissionMode,
    /// Members pass (recorded, alerted at high severity).
    pub break_glass_groups: Vec<String>,
    /// An object annotation that lets a request through until the time it
    /// names; `None`: break-glass by annotation is off.
    pub break_glass_annotation: Option<String>,
    /// The longest an annotation's `until` may lie ahead.
    pub break_glass_max: Duration,
    pub overrides: Vec<AdmissionOverride>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            mode: AdmissionMode::Audit,
            break_glass_groups: Vec::new(),
            break_glass_annotation: None,
            break_glass_max: Duration::from_secs(4 * 3600),
            overrides: Vec::new(),
        }
    }
}

impl AdmissionConfig {
    /// The mode of a verdict of `rule` on an object in `namespace`.
    pub fn mode_for(&self, namespace: &str, rule: FindingType) -> AdmissionMode {
        self.overrides
            .iter()
            .find(|o| {
                (o.namespaces.is_empty() || o.namespaces.iter().any(|n| n == namespace))
                    && (o.rules.is_empty() || o.rules.contains(&rule))
            })
            .map_or(self.mode, |o| o.mode)
    }
}

/// `None` unless `admission.enabled` is true.
pub(super) fn compile(raw: &RawAdmission, p: &mut Problems) -> Option<AdmissionConfig> {
    let mut a = AdmissionConfig::default();
    if let Some(m) = &raw.mode {
        a.mode = mode(m, "admission.mode", p);
    }
    for g in &raw.break_glass_groups {
        p.non_empty(g, "admission.break_glass_groups");
        a.break_glass_groups.push(g.value.clone());
    }
    if let Some(key) = &raw.break_glass_annotation {
        p.non_empty(key, "admission.break_glass_annotation");
        a.break_glass_annotation = Some(key.value.clone());
    }
    if let Some(d) = p.duration(&raw.break_glass_max, "admission.break_glass_max") {
        a.break_glass_max = d;
    }
    for (i, o) in raw.overrides.iter().enumerate() {
        a.overrides.push(compile_override(o, i, p));
    }
    raw.enabled.unwrap_or(false).then_some(a)
}

fn compile_override(o: &RawAdmissionOverride, i: usize, p: &mut Problems) -> AdmissionOverride {
    let key = format!("admission.overrides[{i}]");
    let mut rules = Vec::new();
    for r in &o.rules {
        match FindingType::parse(&r.value).filter(|t| t.opens_drift()) {
            Some(t) => rules.push(t),
            None => p.at(
                r,
                &format!("{key}.rules"),
                format!(
                    "unknown rule {:?}: use out_of_band_change, pipeline_credential_misuse, pipeline_impersonation or user_agent_spoofing",
                    r.value
                ),
            ),
        }
    }
    AdmissionOverride {
        namespaces: o.namespaces.iter().map(|n| n.value.clone()).collect(),
        rules,
        mode: mode(&o.mode, &format!("{key}.mode"), p),
    }
}

fn mode(m: &serde_saphyr::Spanned<String>, key: &str, p: &mut Problems) -> AdmissionMode {
    AdmissionMode::parse(&m.value).unwrap_or_else(|| {
        p.at(
            m,
            key,
            format!("unknown mode {:?}: use audit, warn or enforce", m.value),
        );
        AdmissionMode::Audit
    })
}
