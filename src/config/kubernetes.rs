//! `kubernetes:`: the optional client for live-object context (see
//! [`crate::context`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::check::Problems;
use super::raw::RawKubernetes;

/// Past this a lookup holds a whole group of batches too long: the API
/// server's webhook times out a batch after 30 s.
const MAX_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the client's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeAuth {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, its token and CA).
    InCluster,
    Kubeconfig(PathBuf),
}

#[derive(Debug, Clone)]
pub struct KubeCacheConfig {
    /// Objects remembered, least recently used evicted.
    pub capacity: usize,
    /// How long an object's metadata is trusted.
    pub ttl: Duration,
    /// How long a 404 or 403 is remembered.
    pub negative_ttl: Duration,
}

/// `kubernetes.breaker`: when a cluster's API server stops answering.
#[derive(Debug, Clone)]
pub struct KubeBreakerConfig {
    /// Consecutive timed-out or failed (5xx, connection) lookups that open it.
    pub failures: usize,
    /// How long lookups of that cluster are not attempted, before one probe.
    pub open_for: Duration,
}

#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    pub auth: KubeAuth,
    /// The kubeconfig context of the default cluster; `None`: the current one.
    pub context: Option<String>,
    /// Further clusters by name (as findings name them), each with its context.
    pub clusters: BTreeMap<String, String>,
    pub cache: KubeCacheConfig,
    pub max_concurrent_lookups: usize,
    /// The longest a finding waits for its context.
    pub lookup_timeout: Duration,
    pub breaker: KubeBreakerConfig,
    /// The pipeline objects watched for their inventories.
    pub inventories: Vec<InventoryTool>,
}

/// `kubernetes.inventories`: whose pipeline objects are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InventoryTool {
    /// Argo CD `Application`s (argoproj.io/v1alpha1).
    ArgoCd,
    /// Flux `Kustomization`s (kustomize.toolkit.fluxcd.io/v1) and
    /// `HelmRelease`s (helm.toolkit.fluxcd.io/v2).
    Flux,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            auth: KubeAuth::InCluster,
            context: None,
            clusters: BTreeMap::new(),
            cache: KubeCacheConfig {
                capacity: 100_000,
                ttl: Duration::from_secs(300),
                negative_ttl: Duration::from_secs(60),
            },
            max_concurrent_lookups: 16,
            lookup_timeout: Duration::from_secs(2),
            breaker: KubeBreakerConfig {
                failures: 5,
                open_for: Duration::from_secs(30),
            },
            inventories: Vec::new(),
        }
    }
}

/// `None` unless `kubernetes.enabled` is true.
pub(super) fn compile(raw: &RawKubernetes, p: &mut Problems) -> Option<KubernetesConfig> {
    let mut k = KubernetesConfig::default();
    if let Some(path) = &raw.kubeconfig {
        p.non_empty(path, "kubernetes.kubeconfig");
        k.auth = KubeAuth::Kubeconfig(expand_home(&path.value));
    }
    if let Some(context) = &raw.context {
        p.non_empty(context, "kubernetes.context");
        k.context = Some(context.value.clone());
    }
    for (name, cluster) in &raw.clusters {
        let key = format!("kubernetes.clusters.{name}.context");
        p.non_empty(&cluster.context, &key);
        if k.auth == KubeAuth::InCluster {
            p.at(
                &cluster.context,
                &key,
                "needs kubernetes.kubeconfig: in-cluster credentials reach one cluster only",
            );
        }
        k.clusters
            .insert(name.clone(), cluster.context.value.clone());
    }
    compile_limits(raw, &mut k, p);
    compile_inventories(raw, &mut k, p);
    raw.enabled.unwrap_or(false).then_some(k)
}

fn compile_limits(raw: &RawKubernetes, k: &mut KubernetesConfig, p: &mut Problems) {
    let c = &raw.cache;
    if let Some(n) = p.at_least(&c.capacity, 1, "kubernetes.cache.capacity") {
        k.cache.capacity = n;
    }
    if let Some(d) = p.duration(&c.ttl, "kubernetes.cache.ttl") {
        k.cache.ttl = d;
    }
    if let Some(d) = p.duration(&c.negative_ttl, "kubernetes.cache.negative_ttl") {
        k.cache.negative_ttl = d;
    }
    if let Some(n) = p.at_least(
        &raw.max_concurrent_lookups,
        1,
        "kubernetes.max_concurrent_lookups",
    ) {
        k.max_concurrent_lookups = n;
    }
    // `500ms` reads as it should: a lookup budget is often under a second.
    if let Some(d) = super::netsinks::duration(&raw.lookup_timeout, "kubernetes.lookup_timeout", p)
    {
        if d > MAX_LOOKUP_TIMEOUT
            && let Some(at) = &raw.lookup_timeout
        {
            p.at(
                at,
                "kubernetes.lookup_timeout",
                format!(
                    "{:?} is too long: at most 10s (batches wait for it)",
                    at.value
                ),
            );
        }
        k.lookup_timeout = d;
    }
    let b = &raw.breaker;
    if let Some(n) = p.at_least(&b.failures, 1, "kubernetes.breaker.failures") {
        k.breaker.failures = n;
    }
    if let Some(d) = super::netsinks::duration(&b.open_for, "kubernetes.breaker.open_for", p) {
        k.breaker.open_for = d;
    }
}

fn compile_inventories(raw: &RawKubernetes, k: &mut KubernetesConfig, p: &mut Problems) {
    for tool in &raw.inventories {
        let parsed = match tool.value.as_str() {
            "argocd" => InventoryTool::ArgoCd,
            "flux" => InventoryTool::Flux,
            other => {
                p.at(
                    tool,
                    "kubernetes.inventories",
                    format!("unknown pipeline {other:?}: use argocd or flux"),
                );
                continue;
            }
        };
        if !k.inventories.contains(&parsed) {
            k.inventories.push(parsed);
        }
    }
}

/// `~/x` as the shell reads it, so the issue's `~/.kube/config` works.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}
