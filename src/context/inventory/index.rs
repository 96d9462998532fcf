//! One cluster's pipeline objects and, the other way, which of them lists
//! an object.

use std::collections::HashMap;

use super::read::{Kind, Listed, Listing};

/// A pipeline object's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl Key {
    fn of(l: &Listing) -> Key {
        Key {
            kind: l.kind,
            namespace: l.namespace.clone(),
            name: l.name.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Index {
    pipelines: HashMap<Key, Listing>,
    /// Usually one; two when pipelines fight over an object (Argo CD's
    /// SharedResourceWarning): the first in key order answers.
    listed: HashMap<Listed, Vec<Key>>,
}

impl Index {
    pub fn put(&mut self, listing: Listing) {
        let key = Key::of(&listing);
        self.remove(&key);
        for o in &listing.objects {
            let keys = self.listed.entry(o.clone()).or_default();
            if let Err(at) = keys.binary_search(&key) {
                keys.insert(at, key.clone());
            }
        }
        self.pipelines.insert(key, listing);
    }

    pub fn remove(&mut self, key: &Key) {
        let Some(old) = self.pipelines.remove(key) else {
            return;
        };
        for o in &old.objects {
            if let Some(keys) = self.listed.get_mut(o) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.listed.remove(o);
                }
            }
        }
    }

    /// Drops the pipeline objects of `kind` that `keep` does not know: the
    /// ones deleted while the watch was down.
    pub fn retain(&mut self, kind: Kind, keep: impl Fn(&Key) -> bool) {
        let gone: Vec<Key> = self
            .pipelines
            .keys()
            .filter(|k| k.kind == kind && !keep(k))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
    }

    pub fn listing_of(&self, o: &Listed) -> Option<&Listing> {
        let key = self.listed.get(o)?.first()?;
        self.pipelines.get(key)
    }

    /// The pipeline object a marker names: Argo CD's application name (or
    /// `namespace_name` when applications live in any namespace), a Flux
    /// Kustomization's or HelmRelease's name. When several share the name,
    /// the one in the object's own namespace, else Argo CD's `argocd`, else
    /// none: a guess would name the wrong repository.
    pub fn named(&self, tool: &str, name: &str, object_ns: Option<&str>) -> Option<&Listing> {
        if tool == "argocd"
            && let Some((ns, app)) = name.split_once('_')
        {
            let key = Key {
                kind: Kind::Application,
                namespace: ns.to_owned(),
                name: app.to_owned(),
            };
            if let Some(l) = self.pipelines.get(&key) {
                return Some(l);
            }
        }
        let found: Vec<&Listing> = self
            .pipelines
            .values()
            .filter(|l| l.kind.tool() == tool && l.name == name)
            .collect();
        match found.as_slice() {
            [one] => Some(one),
            [] => None,
            many => many
                .iter()
                .find(|l| Some(l.namespace.as_str()) == object_ns)
                .or_else(|| many.iter().find(|l| l.namespace == "argocd"))
                .copied(),
        }
    }

    /// Objects listed, for the gauge.
    pub fn listed_objects(&self) -> usize {
        self.listed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str) -> Listed {
        Listed {
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    fn listing(kind: Kind, ns: &str, name: &str, objects: &[&str]) -> Listing {
        Listing {
            kind,
            namespace: ns.into(),
            name: name.into(),
            source: None,
            objects: objects.iter().map(|o| listed(o)).collect(),
        }
    }

    #[test]
    fn an_update_replaces_what_a_pipeline_lists() {
        let mut index = Index::default();
        index.put(listing(
            Kind::Application,
            "argocd",
            "shop",
            &["web", "api"],
        ));
        index.put(listing(Kind::Application, "argocd", "shop", &["web"]));
        assert_eq!(index.listing_of(&listed("web")).unwrap().name, "shop");
        assert!(index.listing_of(&listed("api")).is_none());
        assert_eq!(index.listed_objects(), 1);
    }

    #[test]
    fn a_shared_object_stays_listed_when_one_of_its_pipelines_goes() {
        let mut index = Index::default();
        index.put(listing(Kind::Application, "argocd", "a", &["web"]));
        index.put(listing(Kind::Kustomization, "flux-system", "b", &["web"]));
        assert_eq!(index.listing_of(&listed("web")).unwrap().name, "a");
        index.retain(Kind::Application, |_| false);
        assert_eq!(index.listing_of(&listed("web")).unwrap().name, "b");
        index.remove(&Key {
            kind: Kind::Kustomization,
            namespace: "flux-system".into(),
            name: "b".into(),
        });
        assert!(index.listing_of(&listed("web")).is_none());
    }

    #[test]
    fn a_name_shared_by_two_pipelines_resolves_only_by_namespace() {
        let mut index = Index::default();
        index.put(listing(Kind::Kustomization, "team-a", "apps", &[]));
        index.put(listing(Kind::Kustomization, "team-b", "apps", &[]));
        assert_eq!(
            index
                .named("flux", "apps", Some("team-b"))
                .unwrap()
                .namespace,
            "team-b"
        );
        assert!(index.named("flux", "apps", Some("other")).is_none());
        index.put(listing(Kind::Application, "tenants", "shop", &[]));
        assert_eq!(
            index.named("argocd", "tenants_shop", None).unwrap().name,
            "shop"
        );
        assert!(index.named("argocd", "apps", None).is_none());
    }
}
