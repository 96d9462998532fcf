//! What a pipeline object says: the objects it applied (its inventory) and
//! where it takes them from. Pure: the watch hands it the objects.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use crate::model::{ObjectRef, Owner, PipelineObject, PipelineSource, PipelineVia};

/// The pipeline kinds watched, each at the version its tool serves today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Application,
    Kustomization,
    HelmRelease,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Application => "Application",
            Kind::Kustomization => "Kustomization",
            Kind::HelmRelease => "HelmRelease",
        }
    }

    /// The tool name `managed_by` gives it, as markers do.
    pub fn tool(self) -> &'static str {
        match self {
            Kind::Application => "argocd",
            Kind::Kustomization | Kind::HelmRelease => "flux",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (group, version, plural) = match self {
            Kind::Application => ("argoproj.io", "v1alpha1", "applications"),
            Kind::Kustomization => ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"),
            Kind::HelmRelease => ("helm.toolkit.fluxcd.io", "v2", "helmreleases"),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, self.as_str()),
            plural,
        )
    }
}

/// An object as the audit log names it: group, plural resource, namespace,
/// name (inventories name kinds; they are pluralized the way owner
/// references are).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listed {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Listed {
    fn of_kind(group: &str, kind: &str, namespace: &str, name: &str) -> Option<Listed> {
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        Some(Listed {
            group: group.to_owned(),
            resource: ApiResource::from_gvk(&gvk).plural,
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            name: name.to_owned(),
        })
    }

    pub fn of_object(o: &ObjectRef) -> Option<Listed> {
        Some(Listed {
            group: o.group.clone(),
            resource: o.resource.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone()?,
        })
    }

    /// An object's controller, in the object's namespace.
    pub fn of_owner(owner: &Owner, namespace: Option<&str>) -> Option<Listed> {
        let api_version = owner.api_version.as_deref()?;
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        Listed::of_kind(group, &owner.kind, namespace.unwrap_or(""), &owner.name)
    }
}

/// A pipeline object read: who it is, its source, what it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub source: Option<PipelineSource>,
    pub objects: Vec<Listed>,
}

impl Listing {
    pub fn pipeline(&self, via: PipelineVia) -> PipelineObject {
        PipelineObject {
            kind: self.kind.as_str().to_owned(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            via,
            source: self.source.clone(),
        }
    }
}

/// `None` for an object without a name (not a stored object).
pub fn read(kind: Kind, obj: &DynamicObject) -> Option<Listing> {
    let name = obj.metadata.name.clone()?;
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    let data = &obj.data;
    let (source, objects) = match kind {
        Kind::Application => (argo_source(data), argo_resources(data)),
        Kind::Kustomization => (kustomization_source(data, &namespace), flux_inventory(data)),
        Kind::HelmRelease => (helm_release_source(data, &namespace), Vec::new()),
    };
    Some(Listing {
        kind,
        namespace,
        name,
        source,
        objects,
    })
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut at = v;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `spec.source`, or the first of a multi-source application's `spec.sources`.
fn argo_source(data: &Value) -> Option<PipelineSource> {
    let spec = data.get("spec")?;
    let source = spec
        .get("source")
        .or_else(|| spec.get("sources").and_then(|s| s.get(0)))?;
    let revision = text(data, &["status", "sync", "revision"]).or_else(|| {
        data.pointer("/status/sync/revisions/0")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    Some(PipelineSource {
        repo_url: text(source, &["repoURL"]),
        path: text(source, &["path"]),
        chart: text(source, &["chart"]),
        target_revision: text(source, &["targetRevision"]),
        revision,
        ..PipelineSource::default()
    })
}

/// `status.resources[]`: `{group, version, kind, namespace, name}`.
fn argo_resources(data: &Value) -> Vec<Listed> {
    let Some(items) = data.pointer("/status/resources").and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|r| {
            let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            Listed::of_kind(
                field("group"),
                field("kind"),
                field("namespace"),
                field("name"),
            )
        })
        .collect()
}

/// A Flux `sourceRef` as `Kind/namespace/name` (its namespace defaults to
/// the referring object's).
fn source_ref(r: &Value, default_ns: &str) -> Option<String> {
    let kind = text(r, &["kind"])?;
    let name = text(r, &["name"])?;
    let ns = text(r, &["namespace"]).unwrap_or_else(|| default_ns.to_owned());
    Some(format!("{kind}/{ns}/{name}"))
}

fn kustomization_source(data: &Value, namespace: &str) -> Option<PipelineSource> {
    let spec = data.get("spec")?;
    Some(PipelineSource {
        source_ref: spec.get("sourceRef").and_then(|r| source_ref(r, namespace)),
        path: text(spec, &["path"]),
        revision: text(data, &["status", "lastAppliedRevision"]),
        ..PipelineSource::default()
    })
}

/// `status.inventory.entries[].id`: `<namespace>_<name>_<group>_<kind>`
/// (none of the four can hold `_`; the namespace is empty when cluster
/// scoped).
fn flux_inventory(data: &Value) -> Vec<Listed> {
    let Some(entries) = data
        .pointer("/status/inventory/entries")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let id = e.get("id")?.as_str()?;
            let mut parts = id.split('_');
            let (ns, name, group, kind) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            Listed::of_kind(group, kind, ns, name)
        })
        .collect()
}

/// `spec.chart.spec` (a chart from a HelmRepository, GitRepository or
/// Bucket) or `spec.chartRef` (an OCIRepository or HelmChart).
fn helm_release_source(data: &Value, namespace: &str) -> Option<PipelineSource> {
    let spec = data.get("spec")?;
    let revision = text(data, &["status", "lastAttemptedRevision"]);
    if let Some(chart) = spec.pointer("/chart/spec") {
        return Some(PipelineSource {
            chart: text(chart, &["chart"]),
            target_revision: text(chart, &["version"]),
            source_ref: chart
                .get("sourceRef")
                .and_then(|r| source_ref(r, namespace)),
            revision,
            ..PipelineSource::default()
        });
    }
    let chart_ref = spec.get("chartRef")?;
    Some(PipelineSource {
        source_ref: source_ref(chart_ref, namespace),
        revision,
        ..PipelineSource::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_application_lists_its_resources_pluralized_as_the_audit_log_names_them() {
        let app = object(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "argocd"},
            "spec": {"source": {"repoURL": "https://git.example/shop.git", "path": "deploy", "targetRevision": "main"}},
            "status": {
                "sync": {"status": "Synced", "revision": "4f1c2e"},
                "resources": [
                    {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
                    {"version": "v1", "kind": "Service", "namespace": "shop", "name": "web"},
                    {"group": "networking.k8s.io", "version": "v1", "kind": "IngressClass", "name": "edge"},
                    {"version": "v1", "kind": "Policy", "namespace": "shop", "name": "p"},
                    {"kind": "", "name": "broken"}
                ]
            }
        }));
        let l = read(Kind::Application, &app).unwrap();
        let names: Vec<(String, String, Option<String>)> = l
            .objects
            .iter()
            .map(|o| (o.group.clone(), o.resource.clone(), o.namespace.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("apps".into(), "deployments".into(), Some("shop".into())),
                ("".into(), "services".into(), Some("shop".into())),
                ("networking.k8s.io".into(), "ingressclasses".into(), None),
                ("".into(), "policies".into(), Some("shop".into())),
            ]
        );
        let source = l.source.unwrap();
        assert_eq!(
            source.repo_url.as_deref(),
            Some("https://git.example/shop.git")
        );
        assert_eq!(source.revision.as_deref(), Some("4f1c2e"));
        assert_eq!(source.target_revision.as_deref(), Some("main"));
    }

    #[test]
    fn a_kustomization_inventory_id_splits_into_four_and_rejects_more() {
        let ks = object(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {"path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "fleet"}},
            "status": {"lastAppliedRevision": "main@sha1:9a8b", "inventory": {"entries": [
                {"id": "shop_web_apps_Deployment", "v": "v1"},
                {"id": "_shop__Namespace", "v": "v1"},
                {"id": "a_b_c_d_e", "v": "v1"},
                {"id": "short", "v": "v1"}
            ]}}
        }));
        let l = read(Kind::Kustomization, &ks).unwrap();
        assert_eq!(
            l.objects,
            [
                Listed {
                    group: "apps".into(),
                    resource: "deployments".into(),
                    namespace: Some("shop".into()),
                    name: "web".into()
                },
                Listed {
                    group: "".into(),
                    resource: "namespaces".into(),
                    namespace: None,
                    name: "shop".into()
                },
            ]
        );
        let source = l.source.unwrap();
        assert_eq!(
            source.source_ref.as_deref(),
            Some("GitRepository/flux-system/fleet")
        );
        assert_eq!(source.revision.as_deref(), Some("main@sha1:9a8b"));
    }

    #[test]
    fn a_helm_release_names_its_chart_and_lists_nothing() {
        let hr = object(serde_json::json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "podinfo", "namespace": "apps"},
            "spec": {"chart": {"spec": {"chart": "podinfo", "version": "6.x",
                "sourceRef": {"kind": "HelmRepository", "name": "podinfo", "namespace": "flux-system"}}}},
            "status": {"lastAttemptedRevision": "6.5.4"}
        }));
        let l = read(Kind::HelmRelease, &hr).unwrap();
        assert!(l.objects.is_empty());
        let s = l.source.unwrap();
        assert_eq!(s.chart.as_deref(), Some("podinfo"));
        assert_eq!(
            s.source_ref.as_deref(),
            Some("HelmRepository/flux-system/podinfo")
        );
        assert_eq!(s.revision.as_deref(), Some("6.5.4"));
    }
}
