//! The object a request touched, and what its bodies say about who owns it.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::decode::Event;

/// One object in one cluster's API, as findings, the history and the query
/// API name it. Its identity is group, resource, subresource, namespace and
/// name: the version it was served at and its uid are facts about it, not
/// part of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectRef {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

impl ObjectRef {
    /// The object an event's `objectRef` names. A Namespace is
    /// cluster-scoped: the API server files `/api/v1/namespaces/NAME` (a
    /// patch or delete of a Namespace) under namespace NAME, while the create
    /// of that Namespace carries none; both are no namespace here.
    pub fn of(ev: &Event<'_>) -> ObjectRef {
        fn field<'e>(
            o: Option<&'e crate::decode::ObjectRef<'e>>,
            f: fn(&'e crate::decode::ObjectRef<'e>) -> Option<&'e str>,
        ) -> Option<String> {
            non_empty(o.and_then(f))
        }
        let o = ev.object_ref.as_ref();
        let get = |f| field(o, f);
        let group = get(|o| o.api_group.as_deref()).unwrap_or_default();
        let resource = get(|o| o.resource.as_deref()).unwrap_or_default();
        let namespace = if is_namespace(&group, &resource) {
            None
        } else {
            get(|o| o.namespace.as_deref())
        };
        ObjectRef {
            version: get(|o| o.api_version.as_deref()).unwrap_or_default(),
            subresource: get(|o| o.subresource.as_deref()),
            name: get(|o| o.name.as_deref()),
            uid: get(|o| o.uid.as_deref()),
            group,
            resource,
            namespace,
        }
    }

    /// The object a subresource belongs to: what per-object state is kept
    /// for. Only its identity is kept.
    pub fn parent(&self) -> ObjectRef {
        ObjectRef {
            group: self.group.clone(),
            version: String::new(),
            resource: self.resource.clone(),
            subresource: None,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: None,
        }
    }

    pub fn namespace_str(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    pub fn name_str(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    fn identity(&self) -> (&str, &str, Option<&str>, Option<&str>, Option<&str>) {
        (
            &self.group,
            &self.resource,
            self.subresource.as_deref(),
            self.namespace.as_deref(),
            self.name.as_deref(),
        )
    }
}

/// Namespaces are the one cluster-scoped object filed under a namespace.
pub(crate) fn is_namespace(group: &str, resource: &str) -> bool {
    group.is_empty() && resource == "namespaces"
}

impl PartialEq for ObjectRef {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for ObjectRef {}

impl Hash for ObjectRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// The GitOps tool whose markers an object carries, or whose inventory
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedBy {
    /// `argocd`, `flux` or `helm`.
    pub tool: String,
    /// The Argo CD application, Flux Kustomization/HelmRelease or Helm release.
    pub name: Option<String>,
    /// The pipeline's own object and its source, from the watched
    /// inventories (`kubernetes.inventories`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineObject>,
}

impl ManagedBy {
    pub fn new(tool: impl Into<String>, name: Option<String>) -> ManagedBy {
        ManagedBy {
            tool: tool.into(),
            name,
            pipeline: None,
        }
    }
}

/// An Argo CD Application, Flux Kustomization or HelmRelease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineObject {
    /// `Application`, `Kustomization` or `HelmRelease`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// How the object is known to belong to it.
    pub via: PipelineVia,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PipelineSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineVia {
    /// The object's markers name the pipeline object.
    Markers,
    /// The object carries no markers; the pipeline object's inventory
    /// (`status.resources`, `status.inventory`) lists it or its owner.
    Inventory,
}

/// Where a pipeline object takes its manifests from, as it says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSource {
    /// Argo CD's `repoURL` (Git or Helm repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    /// Flux's `sourceRef`: `GitRepository/flux-system/shop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// What it is told to follow: a branch, tag or chart version range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// What it last synced or applied (a commit, `main@sha1:...`, a chart version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl std::fmt::Display for ManagedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} ({name})", self.tool),
            None => f.write_str(&self.tool),
        }
    }
}

/// An object's controller owner (a ReplicaSet's Deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    pub uid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(json: &str) -> ObjectRef {
        ObjectRef::of(&serde_json::from_str::<Event<'_>>(json).unwrap())
    }

    #[test]
    fn a_namespace_is_cluster_scoped_however_it_is_filed() {
        let patch = of(
            r#"{"objectRef":{"resource":"namespaces","namespace":"shop","name":"shop","apiVersion":"v1"}}"#,
        );
        let create = of(r#"{"objectRef":{"resource":"namespaces","name":"shop"}}"#);
        assert_eq!(patch.namespace, None);
        assert_eq!(patch, create);
        let cm = of(r#"{"objectRef":{"resource":"configmaps","namespace":"shop","name":"x"}}"#);
        assert_eq!(cm.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn uid_and_version_are_outside_identity_subresource_inside() {
        let a = of(
            r#"{"objectRef":{"apiGroup":"apps","apiVersion":"v1","resource":"deployments","namespace":"s","name":"api","uid":"u1"}}"#,
        );
        let b = of(
            r#"{"objectRef":{"apiGroup":"apps","apiVersion":"v1beta1","resource":"deployments","namespace":"s","name":"api"}}"#,
        );
        let scale = of(
            r#"{"objectRef":{"apiGroup":"apps","resource":"deployments","subresource":"scale","namespace":"s","name":"api"}}"#,
        );
        assert_eq!(a, b);
        assert_ne!(a, scale);
        assert_eq!(a, scale.parent());
        assert_eq!(scale.parent().subresource, None);
    }
}
