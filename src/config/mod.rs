//! Config: YAML file -> raw serde structs ([`raw`], unknown keys refused) ->
//! validated, compiled [`Config`], one module per concern. Every problem is
//! collected and reported with its key and line, not just the first.

mod admission;
mod allow;
mod check;
mod history;
mod kubernetes;
mod netsinks;
mod policy;
mod raw;
mod server;
mod sinks;
mod sources;

use std::fmt;
use std::path::Path;

pub use admission::{AdmissionConfig, AdmissionMode, AdmissionOverride};
pub use allow::{PACKS, RawPack, pack};
pub use history::{
    Backend as HistoryBackend, Durability, HistoryConfig, PostgresConfig, PostgresUrl,
};
pub use kubernetes::{
    InventoryTool, KubeAuth, KubeBreakerConfig, KubeCacheConfig, KubernetesConfig,
};
pub use netsinks::{
    ClientTlsConfig, DeliveryConfig, HttpPreset, HttpSinkConfig, NetSinksConfig, SyslogSinkConfig,
    SyslogTransport,
};
pub use raw::RawConfig;
pub use server::{AuthConfig, ServerConfig, TlsConfig};
pub use sinks::{AlertsConfig, FileSinkConfig, KafkaSinkConfig, SinksConfig};
pub use sources::{ClusterFrom, KafkaSourceConfig};

use crate::classify::Policy;
use check::Problems;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_CLUSTER: &str = "default";
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_QUEUE_BATCHES: usize = 64;
/// Far more than the few API servers, query clients and scrapers that call
/// one instance; small enough that every connection's buffers together stay
/// well inside the memory bound (see README, Hardening).
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// A Go client opens another connection past this, so it limits memory per
/// connection, not throughput.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 16;
/// Eight bodies of the largest default size, or hundreds of typical batches.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: usize = 128 * 1024 * 1024;
pub const DEFAULT_DEDUPE_CAPACITY: usize = 500_000;
pub const DEFAULT_DATA_DIR: &str = "./data";

/// The validated configuration the service runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster of events whose source names none.
    pub cluster: String,
    pub server: ServerConfig,
    pub policy: Policy,
    pub dedupe_capacity: usize,
    pub sinks: SinksConfig,
    pub history: HistoryConfig,
    pub kafka_source: Option<KafkaSourceConfig>,
    /// Change paths whose values are withheld everywhere.
    pub redaction: Vec<crate::correlate::redact::Pattern>,
    /// A drift persisting longer than this counts as overdue
    /// (`driftwatch_drifts_persisting_overdue`, a warning in the log).
    pub persisting_alert_after: std::time::Duration,
    /// `alerts:`: how the alert stream folds a drift's changes.
    pub alerts: AlertsConfig,
    /// `kubernetes:`: live-object context; `None` when not enabled.
    pub kubernetes: Option<KubernetesConfig>,
    /// `admission:`: the validating webhook; `None` when not enabled.
    pub admission: Option<AdmissionConfig>,
}

/// One hour: past a pipeline's sync interval and an on-call's patience.
pub const DEFAULT_PERSISTING_ALERT_AFTER: std::time::Duration =
    std::time::Duration::from_secs(3600);

impl Default for Config {
    /// The embedded defaults: no pipelines, the system baseline, findings on
    /// stdout, history under `./data`.
    fn default() -> Self {
        Config {
            cluster: DEFAULT_CLUSTER.to_owned(),
            server: ServerConfig::default(),
            policy: Policy::baseline(),
            dedupe_capacity: DEFAULT_DEDUPE_CAPACITY,
            sinks: SinksConfig::default(),
            history: HistoryConfig::default(),
            kafka_source: None,
            redaction: Vec::new(),
            persisting_alert_after: DEFAULT_PERSISTING_ALERT_AFTER,
            alerts: AlertsConfig::default(),
            kubernetes: None,
            admission: None,
        }
    }
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<u64>,
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `message` starts with the line number when the parser knows it.
    #[error("{path}:{message}")]
    Parse { path: String, message: String },
    #[error("{}", Listed { path, problems })]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

struct Listed<'a> {
    path: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                Some(line) => write!(f, "{}:{line}: {}: {}", self.path, p.key, p.message)?,
                None => write!(f, "{}: {}: {}", self.path, p.key, p.message)?,
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Config::from_yaml(&text, &shown)
    }

    /// Parses and validates config text; `origin` names it in messages.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| parse_error(&e, origin))?
        };
        compile(raw).map_err(|problems| ConfigError::Invalid {
            path: origin.to_owned(),
            problems,
        })
    }
}

fn compile(raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let mut config = Config::default();
    if let Some(cluster) = &raw.cluster {
        if cluster.trim().is_empty() {
            p.add(None, "cluster", "must not be empty");
        }
        config.cluster.clone_from(cluster);
    }
    config.server = server::compile(&raw.server, &mut p);
    config.policy = policy::compile(&raw, &mut p);
    config.sinks = sinks::compile(&raw.sinks, &mut p);
    config.alerts = sinks::compile_alerts(&raw.alerts, &mut p);
    config.sinks.alerts = config.alerts;
    config.kafka_source = sources::compile(&raw.sources, &mut p);
    config.history = history::compile(&raw.history, &mut p);
    config.kubernetes = kubernetes::compile(&raw.kubernetes, &mut p);
    config.admission = admission::compile(&raw.admission, &mut p);
    for (i, path) in raw.redaction.paths.iter().enumerate() {
        match crate::correlate::redact::Pattern::parse(&path.value) {
            Ok(pattern) => config.redaction.push(pattern),
            Err(e) => p.at(
                path,
                &format!("redaction.paths[{i}]"),
                format!("invalid redaction pattern {:?}: {}", e.pattern, e.reason),
            ),
        }
    }
    if let Some(d) = p.duration(
        &raw.drifts.persisting_alert_after,
        "drifts.persisting_alert_after",
    ) {
        config.persisting_alert_after = d;
    }
    if let Some(capacity) = p.at_least(&raw.dedupe.capacity, 1, "dedupe.capacity") {
        config.dedupe_capacity = capacity;
    }
    if p.0.is_empty() { Ok(config) } else { Err(p.0) }
}

/// `FILE:LINE: message`, then the parser's snippet with the file named.
fn parse_error(e: &serde_saphyr::Error, origin: &str) -> ConfigError {
    let text = e.to_string().replace("<input>", origin);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let first = first.trim_start_matches("error: ");
    // Drop the parser's own "line L column C: " prefix: the line leads instead.
    let first = match first.split_once(": ") {
        Some((pos, rest)) if pos.starts_with("line ") => rest,
        _ => first,
    };
    let snippet: Vec<&str> = lines.collect();
    let message = match e.location() {
        Some(loc) => format!("{}: {first}", loc.line()),
        None => format!(" {first}"),
    };
    let message = if snippet.is_empty() {
        message
    } else {
        format!("{message}\n{}", snippet.join("\n"))
    };
    ConfigError::Parse {
        path: origin.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests;
