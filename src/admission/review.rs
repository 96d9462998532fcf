//! AdmissionReview `admission.k8s.io/v1`: what the API server sends and
//! what it reads back. Only the fields driftwatch uses are read; the
//! objects stay raw JSON.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Deserialize)]
pub struct Review<'a> {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(borrow)]
    pub request: Option<Request<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub operation: String,
    #[serde(borrow)]
    pub user_info: &'a RawValue,
    #[serde(borrow, default)]
    pub object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub old_object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(borrow, default)]
    pub options: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

/// The answer: `allowed`, a `status` when denied, `warnings` kubectl prints,
/// and `auditAnnotations` the API server files (prefixed with the webhook's
/// name) in the request's audit event, which is how the audit path learns
/// the verdict.
#[derive(Debug, Serialize)]
pub struct Answer {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: Response,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub audit_annotations: std::collections::BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Answer {
    pub fn new(response: Response) -> Answer {
        Answer {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response,
        }
    }
}

/// `metadata.managedFields[]` of an object: who set which fields when.
#[derive(Debug, Deserialize)]
pub struct ManagedEntry<'a> {
    #[serde(borrow, default)]
    pub manager: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub operation: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub time: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, rename = "fieldsV1")]
    pub fields: Option<&'a RawValue>,
}

impl ManagedEntry<'_> {
    fn same(&self, other: &ManagedEntry<'_>) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.time == other.time
            && self.fields.map(RawValue::get) == other.fields.map(RawValue::get)
    }
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    metadata: Option<ManagedFields<'a>>,
}

#[derive(Deserialize)]
struct ManagedFields<'a> {
    #[serde(borrow, default, rename = "managedFields")]
    managed_fields: Option<Vec<ManagedEntry<'a>>>,
}

#[derive(Deserialize)]
struct Options<'a> {
    #[serde(borrow, default, rename = "fieldManager")]
    field_manager: Option<std::borrow::Cow<'a, str>>,
}

fn entries(object: Option<&RawValue>) -> Vec<ManagedEntry<'_>> {
    object
        .and_then(|o| serde_json::from_str::<Meta<'_>>(o.get()).ok())
        .and_then(|m| m.metadata?.managed_fields)
        .unwrap_or_default()
}

impl Request<'_> {
    /// The field manager of this request: the one it named, else the one
    /// entry of the new object's managedFields that the old object does not
    /// have (the API server names it after the client's user agent, up to
    /// its first `/`, when the client names none). `None` when unknown (a
    /// delete, or several managers changed).
    pub fn field_manager(&self) -> Option<String> {
        let named = self
            .options
            .and_then(|o| serde_json::from_str::<Options<'_>>(o.get()).ok())
            .and_then(|o| o.field_manager)
            .filter(|m| !m.is_empty());
        if let Some(m) = named {
            return Some(m.into_owned());
        }
        let old = entries(self.old_object);
        let new = entries(self.object);
        let mut changed = new
            .iter()
            .filter(|e| !old.iter().any(|o| o.same(e)))
            .filter_map(|e| e.manager.as_deref());
        let first = changed.next()?;
        changed.all(|m| m == first).then(|| first.to_owned())
    }

    /// Whether the options say it was a patch (the review's operation says
    /// `UPDATE` for both).
    pub fn is_patch(&self) -> bool {
        self.options
            .is_some_and(|o| o.get().contains("\"PatchOptions\""))
    }
}
