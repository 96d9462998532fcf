//! A risk: what makes one write dangerous, named by the rule that found it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Severity;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// Stable snake_case id, e.g. `privileged_container`.
    pub rule: Cow<'static, str>,
    /// In the change-path syntax (`spec.template.spec.containers[name=app]...`).
    pub path: String,
    /// The risky value as written (never a Secret's data).
    pub value: serde_json::Value,
    pub severity: Severity,
}
