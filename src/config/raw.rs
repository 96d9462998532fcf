//! The config file as written: serde structs that refuse unknown keys.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::classify::{FindingType, Severity};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub pipelines: Vec<RawPipeline>,
    #[serde(default)]
    pub system_identities: RawSystem,
    #[serde(default)]
    pub ignore: RawIgnore,
    #[serde(default)]
    pub severity: RawSeverity,
    #[serde(default)]
    pub dedupe: RawDedupe,
    #[serde(default)]
    pub sinks: RawSinks,
    #[serde(default)]
    pub sources: RawSources,
    #[serde(default)]
    pub redaction: RawRedaction,
    #[serde(default)]
    pub history: RawHistory,
    #[serde(default)]
    pub allow: Vec<super::allow::RawAllowance>,
    #[serde(default)]
    pub allow_packs: Vec<Spanned<String>>,
    #[serde(default)]
    pub quiet_rules: super::allow::RawQuietRules,
    #[serde(default)]
    pub drifts: RawDrifts,
    // -- alert shaping (formats branch) --
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub kubernetes: RawKubernetes,
    #[serde(default)]
    pub admission: RawAdmission,
}

/// `alerts:`: how the alert stream folds a drift's changes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub fold_window: Option<Spanned<String>>,
    pub max_drifts: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrifts {
    pub persisting_alert_after: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub max_body_bytes: Option<Spanned<u64>>,
    pub queue_batches: Option<Spanned<usize>>,
    pub max_events_per_batch: Option<Spanned<usize>>,
    pub max_header_bytes: Option<Spanned<usize>>,
    pub max_event_bytes: Option<Spanned<u64>>,
    pub max_inflate_ratio: Option<Spanned<usize>>,
    pub max_decode_work: Option<Spanned<u64>>,
    pub max_clock_skew: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<usize>>,
    pub max_concurrent_streams: Option<Spanned<u32>>,
    pub max_inflight_body_bytes: Option<Spanned<u64>>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub body_read_timeout: Option<Spanned<String>>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub max_query_page_bytes: Option<Spanned<usize>>,
    pub max_concurrent_queries: Option<Spanned<usize>>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub auth: RawAuth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Spanned<String>,
    pub key_file: Spanned<String>,
    pub client_ca_file: Option<Spanned<String>>,
    pub reload_interval: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub bearer_tokens_file: Option<Spanned<String>>,
    pub query_tokens_file: Option<Spanned<String>>,
    /// Client certificate common name -> the only cluster it may write as.
    #[serde(default)]
    pub client_clusters: std::collections::BTreeMap<String, String>,
    /// An authenticated caller bound to no cluster may write as any.
    #[serde(default)]
    pub allow_any_cluster: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    pub name: Spanned<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub user_agents: Vec<Spanned<String>>,
    #[serde(default)]
    pub source_cidrs: Vec<Spanned<String>>,
    /// `low`..`critical`, or `off`; default `high`.
    #[serde(default)]
    pub report_risks: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    #[serde(default = "yes")]
    pub baseline: bool,
    /// Baseline names to leave out.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    #[serde(default)]
    pub extra_users: Vec<String>,
    #[serde(default)]
    pub extra_groups: Vec<Spanned<String>>,
}

impl Default for RawSystem {
    fn default() -> Self {
        RawSystem {
            baseline: true,
            exclude: Vec::new(),
            extra_users: Vec::new(),
            extra_groups: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIgnore {
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeverity {
    #[serde(default)]
    pub overrides: Vec<RawSeverityOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeverityOverride {
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub types: Vec<FindingType>,
    pub severity: Severity,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedupe {
    pub capacity: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSinks {
    pub stdout: Option<RawStdoutSink>,
    pub file: Option<RawFileSink>,
    pub kafka: Option<RawKafkaSink>,
    // Network sinks (HTTP, syslog) and their outboxes: see netsinks.rs.
    #[serde(default)]
    pub outbox_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub http: Vec<RawHttpSink>,
    #[serde(default)]
    pub syslog: Vec<RawSyslogSink>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedaction {
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSources {
    pub kafka: Option<RawKafkaSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSource {
    pub brokers: Spanned<String>,
    pub topics: Spanned<Vec<String>>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// `header` (the message header `cluster`) or a fixed cluster name.
    #[serde(default)]
    pub cluster_from: Option<String>,
    /// Passed to librdkafka as is: security.protocol, sasl.*, ssl.*...
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub max_batch_messages: Option<Spanned<usize>>,
    #[serde(default)]
    pub reorder_window: Option<Spanned<String>>,
    #[serde(default)]
    pub reorder_max_bytes: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSink {
    pub brokers: Spanned<String>,
    pub topic: Spanned<String>,
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub delivery_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStdoutSink {
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSink {
    pub path: Spanned<String>,
    // -- format, stream and rotation (formats branch) --
    pub format: Option<Spanned<String>>,
    pub stream: Option<Spanned<String>>,
    pub max_bytes: Option<Spanned<u64>>,
    pub keep: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    pub data_dir: Option<String>,
    pub enabled: Option<bool>,
    pub retention: Option<Spanned<String>>,
    pub store_system: Option<bool>,
    pub max_tracked_objects: Option<Spanned<usize>>,
    pub durability: Option<Spanned<String>>,
    pub max_tracked_bytes: Option<Spanned<usize>>,
    pub integrity_check_interval: Option<Spanned<String>>,
    pub backend: Option<Spanned<String>>,
    pub postgres: Option<RawPostgres>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub url: Option<Spanned<String>>,
    pub url_file: Option<Spanned<String>>,
    pub pool: Option<Spanned<usize>>,
    pub tls: Option<Spanned<RawPostgresTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresTls {
    pub ca_file: Option<Spanned<String>>,
    pub client_cert_file: Option<Spanned<String>>,
    pub client_key_file: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// Network sinks (HTTP, syslog): compiled by netsinks.rs.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpSink {
    pub name: Spanned<String>,
    pub preset: Option<Spanned<String>>,
    pub url: Spanned<String>,
    pub format: Option<Spanned<String>>,
    pub stream: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub ca_file: Option<Spanned<String>>,
    pub client_cert_file: Option<Spanned<String>>,
    pub client_key_file: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub batch_max_items: Option<Spanned<usize>>,
    pub batch_max_wait: Option<Spanned<String>>,
    pub retry_initial_backoff: Option<Spanned<String>>,
    pub retry_max_backoff: Option<Spanned<String>>,
    pub outbox_max_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSyslogSink {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub transport: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub stream: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub client_cert_file: Option<Spanned<String>>,
    pub client_key_file: Option<Spanned<String>>,
    pub app_name: Option<Spanned<String>>,
    pub facility: Option<Spanned<String>>,
    pub hostname: Option<Spanned<String>>,
    pub outbox_max_bytes: Option<Spanned<u64>>,
}

// ---------------------------------------------------------------------------
// Live-object context from the Kubernetes API: compiled by kubernetes.rs.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubernetes {
    pub enabled: Option<bool>,
    pub kubeconfig: Option<Spanned<String>>,
    /// The kubeconfig context of the default cluster (`cluster:`).
    pub context: Option<Spanned<String>>,
    /// Cluster name (as findings name it) -> its kubeconfig context.
    #[serde(default)]
    pub clusters: std::collections::BTreeMap<String, RawKubeCluster>,
    #[serde(default)]
    pub cache: RawKubeCache,
    pub max_concurrent_lookups: Option<Spanned<usize>>,
    pub lookup_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub breaker: RawKubeBreaker,
    /// Pipeline objects to watch: `argocd`, `flux`.
    #[serde(default)]
    pub inventories: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubeBreaker {
    pub failures: Option<Spanned<usize>>,
    pub open_for: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubeCluster {
    pub context: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubeCache {
    pub capacity: Option<Spanned<usize>>,
    pub ttl: Option<Spanned<String>>,
    pub negative_ttl: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// The validating admission webhook: compiled by admission.rs.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    pub enabled: Option<bool>,
    pub mode: Option<Spanned<String>>,
    #[serde(default)]
    pub break_glass_groups: Vec<Spanned<String>>,
    pub break_glass_annotation: Option<Spanned<String>>,
    pub break_glass_max: Option<Spanned<String>>,
    #[serde(default)]
    pub overrides: Vec<RawAdmissionOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmissionOverride {
    #[serde(default)]
    pub namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<String>>,
    pub mode: Spanned<String>,
}
