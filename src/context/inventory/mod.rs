//! Pipeline inventories: Argo CD `Application`s and Flux `Kustomization`s
//! list the objects they applied (`status.resources`,
//! `status.inventory`), so an object without markers is still known as
//! managed, and `managed_by` can name the pipeline object and its source.
//! Flux `HelmRelease`s list nothing (their objects carry Flux's labels);
//! they are watched for their chart source.
//!
//! One watch per kind per cluster (a kube-runtime reflector, relisting with
//! backoff after any error); the engine reads the index under a read lock,
//! with no request on its path.

mod index;
mod read;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};

use self::index::{Index, Key};
use self::read::{Kind, Listed};
use super::Clients;
use crate::config::{InventoryTool, KubernetesConfig};
use crate::model::{ChangeRecord, ManagedBy, ObjectRef, Owner, PipelineVia};
use crate::telemetry::events::{ContextInventory, ContextWatchRestart, Emit};

/// The indexes by cluster name, as findings name clusters.
#[derive(Clone, Default)]
pub struct Inventories {
    by_cluster: HashMap<String, Arc<RwLock<Index>>>,
}

impl Inventories {
    /// Starts the watches `kubernetes.inventories` asks for, on every
    /// cluster with a client. Needs the runtime.
    pub fn start(
        clients: &Clients,
        config: &KubernetesConfig,
        default_cluster: &str,
    ) -> Inventories {
        let kinds: Vec<Kind> = config
            .inventories
            .iter()
            .flat_map(|tool| match tool {
                InventoryTool::ArgoCd => &[Kind::Application][..],
                InventoryTool::Flux => &[Kind::Kustomization, Kind::HelmRelease][..],
            })
            .copied()
            .collect();
        let mut by_cluster = HashMap::new();
        if kinds.is_empty() {
            return Inventories { by_cluster };
        }
        for (cluster, client) in clients.iter() {
            let index = Arc::new(RwLock::new(Index::default()));
            // A bounded label: a configured name, or `default`.
            let label = if cluster == default_cluster && !config.clusters.contains_key(cluster) {
                "default".to_owned()
            } else {
                cluster.to_owned()
            };
            for &kind in &kinds {
                let watch = Watch {
                    client: client.clone(),
                    kind,
                    index: Arc::clone(&index),
                    label: label.clone(),
                };
                tokio::spawn(watch.run());
            }
            by_cluster.insert(cluster.to_owned(), index);
        }
        Inventories { by_cluster }
    }

    /// Names the pipeline object of a drift or sanctioned record: the one
    /// its markers name, or, with no markers, the one listing the object or
    /// its top controller (then the record is managed, and a finding's
    /// severity is raised as for a marked object).
    pub fn annotate(&self, r: &mut ChangeRecord) {
        let found = self.managed(
            &r.cluster,
            &r.resource,
            r.owner.as_ref(),
            r.managed_by.as_ref(),
        );
        let Some(found) = found else { return };
        if r.managed_by.is_none()
            && r.finding_type.is_some()
            && let Some(severity) = &mut r.severity
        {
            crate::classify::raise_severity_for_managed(severity, &mut r.reasons, &found);
        }
        r.managed_by = Some(found);
    }

    /// Who manages an object by the inventories: its markers' tool and name
    /// with their pipeline object added, or, without markers, the pipeline
    /// object listing it or its top controller. `None`: nothing to add.
    pub fn managed(
        &self,
        cluster: &str,
        object: &ObjectRef,
        owner: Option<&Owner>,
        markers: Option<&ManagedBy>,
    ) -> Option<ManagedBy> {
        let index = self.by_cluster.get(cluster)?.read().ok()?;
        let ns = object.namespace.as_deref();
        if let Some(m) = markers {
            if m.pipeline.is_some() {
                return None;
            }
            let l = m
                .name
                .as_deref()
                .and_then(|n| index.named(&m.tool, n, ns))?;
            return Some(ManagedBy {
                pipeline: Some(l.pipeline(PipelineVia::Markers)),
                ..m.clone()
            });
        }
        let candidates = Listed::of_object(object)
            .into_iter()
            .chain(owner.and_then(|o| Listed::of_owner(o, ns)));
        let l = candidates.into_iter().find_map(|o| index.listing_of(&o))?;
        Some(ManagedBy {
            pipeline: Some(l.pipeline(PipelineVia::Inventory)),
            ..ManagedBy::new(l.kind.tool(), Some(l.name.clone()))
        })
    }
}

/// One kind's watch on one cluster.
struct Watch {
    client: kube::Client,
    kind: Kind,
    index: Arc<RwLock<Index>>,
    label: String,
}

impl Watch {
    async fn run(self) {
        let resource = self.kind.api_resource();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let writer = reflector::store::Writer::new(resource);
        let reader = writer.as_reader();
        // Relists after an error (a 410, a dropped connection, the CRD not
        // installed yet), waiting longer each time up to a few seconds.
        let stream = watcher(api).default_backoff().reflect(writer);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => self.apply(event, &reader),
                Err(error) => ContextWatchRestart {
                    kind: self.kind.as_str(),
                    cluster: &self.label,
                    error: &error,
                }
                .emit(),
            }
        }
    }

    fn apply(&self, event: Event<DynamicObject>, reader: &Store<DynamicObject>) {
        let Ok(mut index) = self.index.write() else {
            return;
        };
        match event {
            Event::Apply(o) | Event::InitApply(o) => {
                if let Some(l) = read::read(self.kind, &o) {
                    index.put(l);
                }
            }
            Event::Delete(o) => {
                if let Some(l) = read::read(self.kind, &o) {
                    index.remove(&Key {
                        kind: l.kind,
                        namespace: l.namespace,
                        name: l.name,
                    });
                }
            }
            Event::Init => {}
            Event::InitDone => {
                let present: std::collections::HashSet<(String, String)> = reader
                    .state()
                    .iter()
                    .filter_map(|o| Some((o.metadata.namespace.clone()?, o.metadata.name.clone()?)))
                    .collect();
                index.retain(self.kind, |k| {
                    present.contains(&(k.namespace.clone(), k.name.clone()))
                });
            }
        }
        ContextInventory {
            cluster: &self.label,
            objects: index.listed_objects(),
        }
        .emit();
    }
}

fn watcher(
    api: Api<DynamicObject>,
) -> impl futures_util::stream::Stream<Item = watcher::Result<Event<DynamicObject>>> {
    watcher::watcher(api, watcher::Config::default())
}
