//! One Kubernetes client per cluster name (a registry later features share:
//! pipeline inventories, live values of a drift), and the metadata fetch.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::cache::Key;
use super::meta::Meta;
use crate::config::{KubeAuth, KubernetesConfig};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("kubernetes.kubeconfig: cannot read {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "kubernetes: no in-cluster credentials ({source}); set kubernetes.kubeconfig outside a pod"
    )]
    InCluster {
        source: kube::config::InClusterError,
    },
    #[error("kubernetes: cannot build the client for cluster {cluster:?}: {source}")]
    Client {
        cluster: String,
        source: kube::Error,
    },
}

/// The clients by cluster name, as findings name clusters.
#[derive(Clone, Default)]
pub struct Clients {
    by_cluster: HashMap<String, kube::Client>,
}

impl Clients {
    /// A client for `default_cluster` (`kubernetes.context`) and one for each
    /// of `kubernetes.clusters`. Needs the runtime: the client spawns its
    /// connection tasks there.
    pub async fn connect(
        config: &KubernetesConfig,
        default_cluster: &str,
    ) -> Result<Clients, ContextError> {
        let mut by_cluster = HashMap::new();
        let wanted = std::iter::once((default_cluster, config.context.as_deref())).chain(
            config
                .clusters
                .iter()
                .map(|(name, ctx)| (name.as_str(), Some(ctx.as_str()))),
        );
        // A request past this is abandoned: its finding went out long ago,
        // and it must not hold a lookup slot.
        let request_timeout = config.lookup_timeout * 5;
        for (cluster, context) in wanted {
            let client = client_for(&config.auth, context, cluster, request_timeout).await?;
            by_cluster.insert(cluster.to_owned(), client);
        }
        Ok(Clients { by_cluster })
    }

    pub fn get(&self, cluster: &str) -> Option<&kube::Client> {
        self.by_cluster.get(cluster)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &kube::Client)> {
        self.by_cluster.iter().map(|(name, c)| (name.as_str(), c))
    }
}

async fn client_for(
    auth: &KubeAuth,
    context: Option<&str>,
    cluster: &str,
    request_timeout: Duration,
) -> Result<kube::Client, ContextError> {
    let mut config = match auth {
        KubeAuth::InCluster => {
            kube::Config::incluster().map_err(|source| ContextError::InCluster { source })?
        }
        KubeAuth::Kubeconfig(path) => from_kubeconfig(path, context).await?,
    };
    config.read_timeout = Some(request_timeout);
    config.connect_timeout = Some(request_timeout);
    kube::Client::try_from(config).map_err(|source| ContextError::Client {
        cluster: cluster.to_owned(),
        source,
    })
}

async fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<kube::Config, ContextError> {
    let err = |source| ContextError::Kubeconfig {
        path: path.display().to_string(),
        source,
    };
    let file = Kubeconfig::read_from(path).map_err(err)?;
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(err)
}

/// Why a fetch gave no metadata.
#[derive(Debug)]
pub enum Failed {
    NotFound,
    Forbidden,
    Other(kube::Error),
}

/// The object's metadata only (`PartialObjectMetadata`): labels,
/// annotations, ownerReferences, managedFields; never its spec or data.
pub async fn fetch(client: &kube::Client, key: &Key) -> Result<Meta, Failed> {
    let resource = ApiResource {
        group: key.group.clone(),
        version: key.version.clone(),
        api_version: if key.group.is_empty() {
            key.version.clone()
        } else {
            format!("{}/{}", key.group, key.version)
        },
        kind: String::new(),
        plural: key.resource.clone(),
    };
    let api: Api<DynamicObject> = match &key.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    match api.get_metadata(&key.name).await {
        Ok(partial) => Ok(Meta::of(partial.metadata)),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(Failed::NotFound),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(Failed::Forbidden),
        Err(e) => Err(Failed::Other(e)),
    }
}
