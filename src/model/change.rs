use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field a request changed: its path (`spec.replicas`,
/// `spec.template.spec.containers[name=app].image`) and its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub old: Value,
    pub new: Value,
    /// Secret values never leave the process: only the key is reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}
