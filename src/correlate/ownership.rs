//! Who owns an object, read from the bodies an event carries: the GitOps
//! tool that manages it (tracking labels and annotations) and its controller
//! owner (a ReplicaSet's Deployment).
//!
//! Only `metadata` is parsed; the rest of the body is skipped.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use crate::model::{ManagedBy, Owner};

#[derive(Debug, Default, Deserialize)]
struct Doc<'a> {
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "pairs")]
    labels: Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
    #[serde(borrow, default, deserialize_with = "pairs")]
    annotations: Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
    #[serde(borrow, default)]
    owner_references: Option<Vec<OwnerRefRaw<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerRefRaw<'a> {
    #[serde(borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
    #[serde(default)]
    controller: Option<bool>,
}

/// A borrowed string: serde's own `Cow` impl always copies.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// Labels and annotations as pairs: a few entries each, so a vector beats a
/// map and borrows instead of copying.
#[allow(clippy::type_complexity)]
fn pairs<'de, D>(d: D) -> Result<Option<Vec<(Cow<'de, str>, Cow<'de, str>)>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Vec<(Cow<'de, str>, Cow<'de, str>)>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((Str(k), Str(v))) = map.next_entry::<Str<'de>, Str<'de>>()? {
                out.push((k, v));
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(V)
}

/// What the bodies of one event say about its object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    pub name: Option<String>,
    pub uid: Option<String>,
    pub managed_by: Option<ManagedBy>,
    pub owner: Option<Owner>,
}

/// Reads the facts from a body; a body that is not an object (a JSON patch,
/// a Status) yields none.
pub fn facts(body: &RawValue) -> ObjectFacts {
    let Ok(doc) = serde_json::from_str::<Doc<'_>>(body.get()) else {
        return ObjectFacts::default();
    };
    let Some(meta) = doc.metadata else {
        return ObjectFacts::default();
    };
    let labels = meta.labels.unwrap_or_default();
    let annotations = meta.annotations.unwrap_or_default();
    let find = |pairs: &[(Cow<'_, str>, Cow<'_, str>)], key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone().into_owned())
    };
    let managed_by = managed_by(|k| find(&labels, k), |k| find(&annotations, k));
    let owner = meta.owner_references.and_then(|refs| {
        let pick = refs
            .iter()
            .position(|r| r.controller == Some(true))
            .unwrap_or(0);
        refs.into_iter().nth(pick).and_then(|r| {
            Some(Owner {
                api_version: r.api_version.map(Cow::into_owned),
                kind: r.kind?.into_owned(),
                name: r.name?.into_owned(),
                uid: r.uid.map(Cow::into_owned),
            })
        })
    });
    ObjectFacts {
        name: meta.name.map(Cow::into_owned),
        uid: meta.uid.map(Cow::into_owned),
        managed_by,
        owner,
    }
}

/// The GitOps tool whose markers an object carries, from its labels and
/// annotations (by key). Shared by the bodies read here and the live
/// objects of [`crate::context`], so both read the same markers.
pub fn managed_by(
    label: impl Fn(&str) -> Option<String>,
    annotation: impl Fn(&str) -> Option<String>,
) -> Option<ManagedBy> {
    if let Some(id) = annotation("argocd.argoproj.io/tracking-id") {
        // `app:group/Kind:namespace/name`: the application comes first.
        Some(ManagedBy::new(
            "argocd",
            id.split(':').next().map(str::to_owned),
        ))
    } else if let Some(app) = label("argocd.argoproj.io/instance") {
        Some(ManagedBy::new("argocd", Some(app)))
    } else if let Some(ks) = label("kustomize.toolkit.fluxcd.io/name") {
        Some(ManagedBy::new("flux", Some(ks)))
    } else if let Some(hr) = label("helm.toolkit.fluxcd.io/name") {
        Some(ManagedBy::new("flux", Some(hr)))
    } else if let Some(release) = annotation("meta.helm.sh/release-name") {
        Some(ManagedBy::new("helm", Some(release)))
    } else if label("app.kubernetes.io/managed-by").as_deref() == Some("Helm") {
        Some(ManagedBy::new("helm", label("app.kubernetes.io/instance")))
    } else {
        // `app.kubernetes.io/instance` alone is Argo CD's default tracking
        // label, but Helm charts set it too: only trust it without Helm marks.
        label("app.kubernetes.io/instance").map(|app| ManagedBy::new("argocd", Some(app)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(json: &str) -> ObjectFacts {
        facts(&serde_json::from_str::<Box<RawValue>>(json).unwrap())
    }

    #[test]
    fn argocd_tracking_annotation() {
        let f = of(
            r#"{"metadata":{"name":"api","annotations":{"argocd.argoproj.io/tracking-id":"shop:apps/Deployment:shop/api"}}}"#,
        );
        assert_eq!(
            f.managed_by,
            Some(ManagedBy::new("argocd", Some("shop".into())))
        );
        assert_eq!(f.name.as_deref(), Some("api"));
    }

    #[test]
    fn flux_and_helm_labels() {
        assert_eq!(
            of(r#"{"metadata":{"labels":{"kustomize.toolkit.fluxcd.io/name":"apps"}}}"#)
                .managed_by
                .map(|m| m.tool),
            Some("flux".to_owned())
        );
        assert_eq!(
            of(r#"{"metadata":{"labels":{"app.kubernetes.io/managed-by":"Helm","app.kubernetes.io/instance":"redis"}}}"#)
                .managed_by,
            Some(ManagedBy::new("helm", Some("redis".into())))
        );
        assert_eq!(
            of(r#"{"metadata":{"annotations":{"meta.helm.sh/release-name":"redis"}}}"#)
                .managed_by
                .map(|m| m.tool),
            Some("helm".to_owned())
        );
    }

    #[test]
    fn controller_owner_wins() {
        let f = of(
            r#"{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Other","name":"x"},{"apiVersion":"apps/v1","kind":"Deployment","name":"api","uid":"u1","controller":true}]}}"#,
        );
        assert_eq!(
            f.owner.map(|o| (o.kind, o.name)),
            Some(("Deployment".into(), "api".into()))
        );
    }

    #[test]
    fn patches_and_statuses_carry_nothing() {
        assert_eq!(
            of(r#"[{"op":"replace","path":"/a","value":1}]"#),
            ObjectFacts::default()
        );
        assert_eq!(
            of(r#"{"kind":"Status","code":404}"#),
            ObjectFacts::default()
        );
    }
}
