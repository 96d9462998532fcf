//! Config: YAML file -> raw serde structs -> validated, compiled [`Config`].
//! Every problem is collected and reported with its key and line.

mod raw;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use foldhash::HashSet;
use ipnet::IpNet;
use regex::Regex;
use serde_saphyr::Spanned;

use crate::classify::{Pipeline, Policy, SeverityOverride, SystemIdentities, system_baseline};

pub use raw::RawConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_CLUSTER: &str = "default";
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_QUEUE_BATCHES: usize = 64;
pub const DEFAULT_DEDUPE_CAPACITY: usize = 500_000;
pub const DEFAULT_DATA_DIR: &str = "./data";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca_file: Option<PathBuf>,
    pub reload_interval: std::time::Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub bearer_tokens_file: Option<PathBuf>,
    pub query_tokens_file: Option<PathBuf>,
    pub client_clusters: Vec<(String, String)>,
}

/// How much a `200` promises about the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Committed to the WAL: survives a crash of driftwatch, not of the machine.
    Normal,
    /// fsync on every commit: survives power loss.
    Full,
}

/// The validated configuration the service runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: String,
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub queue_batches: usize,
    pub max_events_per_batch: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: std::time::Duration,
    pub body_read_timeout: std::time::Duration,
    pub shutdown_grace: std::time::Duration,
    pub tls: Option<TlsConfig>,
    pub auth: AuthConfig,
    pub policy: Policy,
    pub dedupe_capacity: usize,
    pub sinks: SinksConfig,
    pub data_dir: PathBuf,
    pub history: HistoryConfig,
    pub kafka_source: Option<KafkaSourceConfig>,
    /// Change paths whose values are withheld everywhere.
    pub redaction: Vec<crate::correlate::redact::Pattern>,
}

#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Record history in `data_dir` (serve: yes; replay: with --data-dir).
    pub enabled: bool,
    /// Changes older than this are deleted; open drifts are kept.
    pub retention: std::time::Duration,
    /// Also store changes by system identities (off: they are most of the volume).
    pub store_system: bool,
    /// Objects remembered for field diffs, least recently changed evicted.
    pub max_tracked_objects: usize,
    /// Bytes of remembered objects; least recently changed evicted first.
    pub max_tracked_bytes: usize,
    pub durability: Durability,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            retention: std::time::Duration::from_secs(30 * 86_400),
            store_system: false,
            max_tracked_objects: 50_000,
            max_tracked_bytes: 256 * 1024 * 1024,
            durability: Durability::Normal,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SinksConfig {
    pub stdout: bool,
    pub file: Option<PathBuf>,
    pub kafka: Option<KafkaSinkConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    pub brokers: String,
    pub topic: String,
    pub properties: Vec<(String, String)>,
    /// How long a batch's findings may take to be acknowledged by the
    /// brokers (librdkafka retries within it) before the batch is refused.
    pub delivery_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterFrom {
    /// The message header `cluster`, else the config's `cluster`.
    Header,
    Fixed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    pub dead_letter_topic: Option<String>,
    pub cluster_from: ClusterFrom,
    pub properties: Vec<(String, String)>,
    pub max_batch_messages: usize,
}

impl Default for Config {
    /// The embedded defaults: no pipelines, the system baseline, findings on
    /// stdout.
    fn default() -> Self {
        Config {
            cluster: DEFAULT_CLUSTER.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            queue_batches: DEFAULT_QUEUE_BATCHES,
            max_events_per_batch: 50_000,
            max_header_bytes: 16 * 1024,
            header_read_timeout: std::time::Duration::from_secs(10),
            body_read_timeout: std::time::Duration::from_secs(30),
            shutdown_grace: std::time::Duration::from_secs(30),
            tls: None,
            auth: AuthConfig::default(),
            policy: Policy::baseline(),
            dedupe_capacity: DEFAULT_DEDUPE_CAPACITY,
            sinks: SinksConfig {
                stdout: true,
                file: None,
                kafka: None,
            },
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            history: HistoryConfig::default(),
            kafka_source: None,
            redaction: Vec::new(),
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
    #[error("{}", Problems { path, problems })]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

struct Problems<'a> {
    path: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for Problems<'_> {
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
    let mut problems = Vec::new();
    let mut config = Config::default();

    if let Some(cluster) = raw.cluster.clone() {
        if cluster.trim().is_empty() {
            problems.push(problem(None, "cluster", "must not be empty"));
        }
        config.cluster = cluster;
    }
    if let Some(listen) = &raw.server.listen {
        match listen.value.parse() {
            Ok(addr) => config.listen = addr,
            Err(e) => problems.push(spanned_problem(
                listen,
                "server.listen",
                format!(
                    "invalid address {:?}: {e} (expected HOST:PORT such as {DEFAULT_LISTEN})",
                    listen.value
                ),
            )),
        }
    }
    if let Some(max) = &raw.server.max_body_bytes {
        if max.value < 1024 {
            problems.push(spanned_problem(
                max,
                "server.max_body_bytes",
                "must be at least 1024",
            ));
        }
        config.max_body_bytes = usize::try_from(max.value).unwrap_or(usize::MAX);
    }
    if let Some(queue) = &raw.server.queue_batches {
        if queue.value == 0 {
            problems.push(spanned_problem(
                queue,
                "server.queue_batches",
                "must be at least 1",
            ));
        }
        config.queue_batches = queue.value;
    }
    let durations = [
        (
            &raw.server.header_read_timeout,
            "server.header_read_timeout",
            &mut config.header_read_timeout,
        ),
        (
            &raw.server.body_read_timeout,
            "server.body_read_timeout",
            &mut config.body_read_timeout,
        ),
        (
            &raw.server.shutdown_grace,
            "server.shutdown_grace",
            &mut config.shutdown_grace,
        ),
    ];
    for (value, key, slot) in durations {
        if let Some(v) = value {
            match parse_duration(&v.value) {
                Some(d) if !d.is_zero() => *slot = d,
                _ => problems.push(spanned_problem(
                    v,
                    key,
                    format!("invalid duration {:?} (expected e.g. 10s, 2m)", v.value),
                )),
            }
        }
    }
    if let Some(max) = &raw.server.max_events_per_batch {
        if max.value == 0 {
            problems.push(spanned_problem(
                max,
                "server.max_events_per_batch",
                "must be at least 1",
            ));
        }
        config.max_events_per_batch = max.value;
    }
    if let Some(max) = &raw.server.max_header_bytes {
        if max.value < 1024 {
            problems.push(spanned_problem(
                max,
                "server.max_header_bytes",
                "must be at least 1024",
            ));
        }
        config.max_header_bytes = max.value;
    }
    if let Some(tls) = &raw.server.tls {
        let mut reload = std::time::Duration::from_secs(10);
        if let Some(r) = &tls.reload_interval {
            match parse_duration(&r.value) {
                Some(d) if !d.is_zero() => reload = d,
                _ => problems.push(spanned_problem(
                    r,
                    "server.tls.reload_interval",
                    format!("invalid duration {:?}", r.value),
                )),
            }
        }
        for (f, key) in [
            (&tls.cert_file, "server.tls.cert_file"),
            (&tls.key_file, "server.tls.key_file"),
        ] {
            if f.value.trim().is_empty() {
                problems.push(spanned_problem(f, key, "must not be empty"));
            }
        }
        config.tls = Some(TlsConfig {
            cert_file: PathBuf::from(&tls.cert_file.value),
            key_file: PathBuf::from(&tls.key_file.value),
            client_ca_file: tls.client_ca_file.as_ref().map(|c| PathBuf::from(&c.value)),
            reload_interval: reload,
        });
    }
    config.auth = AuthConfig {
        bearer_tokens_file: raw
            .server
            .auth
            .bearer_tokens_file
            .as_ref()
            .map(|f| PathBuf::from(&f.value)),
        query_tokens_file: raw
            .server
            .auth
            .query_tokens_file
            .as_ref()
            .map(|f| PathBuf::from(&f.value)),
        client_clusters: raw
            .server
            .auth
            .client_clusters
            .clone()
            .into_iter()
            .collect(),
    };
    if !config.auth.client_clusters.is_empty()
        && raw
            .server
            .tls
            .as_ref()
            .is_none_or(|t| t.client_ca_file.is_none())
    {
        problems.push(problem(
            None,
            "server.auth.client_clusters",
            "binds client certificates to clusters, but server.tls.client_ca_file is not set, so no client certificate is verified",
        ));
    }
    if let Some(max) = &raw.history.max_tracked_bytes {
        if max.value < 1024 * 1024 {
            problems.push(spanned_problem(
                max,
                "history.max_tracked_bytes",
                "must be at least 1048576",
            ));
        }
        config.history.max_tracked_bytes = max.value;
    }
    if let Some(d) = &raw.history.durability {
        config.history.durability = match d.value.as_str() {
            "normal" => Durability::Normal,
            "full" => Durability::Full,
            other => {
                problems.push(spanned_problem(
                    d,
                    "history.durability",
                    format!("{other:?}: expected normal or full"),
                ));
                Durability::Normal
            }
        };
    }
    for (i, p) in raw.redaction.paths.iter().enumerate() {
        match crate::correlate::redact::Pattern::parse(&p.value) {
            Ok(pattern) => config.redaction.push(pattern),
            Err(e) => problems.push(spanned_problem(
                p,
                &format!("redaction.paths[{i}]"),
                e.to_string(),
            )),
        }
    }
    if let Some(capacity) = &raw.dedupe.capacity {
        if capacity.value == 0 {
            problems.push(spanned_problem(
                capacity,
                "dedupe.capacity",
                "must be at least 1",
            ));
        }
        config.dedupe_capacity = capacity.value;
    }

    config.policy = compile_policy(&raw, &mut problems);

    if let Some(stdout) = &raw.sinks.stdout {
        config.sinks.stdout = stdout.enabled;
    }
    if let Some(file) = &raw.sinks.file {
        if file.path.value.is_empty() {
            problems.push(spanned_problem(
                &file.path,
                "sinks.file.path",
                "must not be empty",
            ));
        }
        config.sinks.file = Some(PathBuf::from(&file.path.value));
    }
    if let Some(k) = &raw.sinks.kafka {
        if k.brokers.value.trim().is_empty() {
            problems.push(spanned_problem(
                &k.brokers,
                "sinks.kafka.brokers",
                "must not be empty",
            ));
        }
        if k.topic.value.trim().is_empty() {
            problems.push(spanned_problem(
                &k.topic,
                "sinks.kafka.topic",
                "must not be empty",
            ));
        }
        let timeout = k.delivery_timeout_ms.as_ref().map_or(30_000, |t| t.value);
        if let Some(t) = &k.delivery_timeout_ms
            && t.value < 100
        {
            problems.push(spanned_problem(
                t,
                "sinks.kafka.delivery_timeout_ms",
                "must be at least 100",
            ));
        }
        config.sinks.kafka = Some(KafkaSinkConfig {
            brokers: k.brokers.value.clone(),
            topic: k.topic.value.clone(),
            properties: k.properties.clone().into_iter().collect(),
            delivery_timeout_ms: timeout,
        });
    }
    if let Some(k) = &raw.sources.kafka {
        if k.brokers.value.trim().is_empty() {
            problems.push(spanned_problem(
                &k.brokers,
                "sources.kafka.brokers",
                "must not be empty",
            ));
        }
        if k.topics.value.is_empty() || k.topics.value.iter().any(|t| t.trim().is_empty()) {
            problems.push(spanned_problem(
                &k.topics,
                "sources.kafka.topics",
                "must list at least one topic, none empty",
            ));
        }
        let max = k.max_batch_messages.as_ref().map_or(256, |m| m.value);
        if let Some(m) = &k.max_batch_messages
            && m.value == 0
        {
            problems.push(spanned_problem(
                m,
                "sources.kafka.max_batch_messages",
                "must be at least 1",
            ));
        }
        let cluster_from = match k.cluster_from.as_deref() {
            None | Some("header") => ClusterFrom::Header,
            Some(name) => ClusterFrom::Fixed(name.to_owned()),
        };
        config.kafka_source = Some(KafkaSourceConfig {
            brokers: k.brokers.value.clone(),
            topics: k.topics.value.clone(),
            group_id: k
                .group_id
                .clone()
                .unwrap_or_else(|| "driftwatch".to_owned()),
            dead_letter_topic: k.dead_letter_topic.clone().filter(|t| !t.is_empty()),
            cluster_from,
            properties: k.properties.clone().into_iter().collect(),
            max_batch_messages: max,
        });
    }
    if let Some(dir) = raw.history.data_dir.clone() {
        config.data_dir = PathBuf::from(dir);
    }
    if let Some(enabled) = raw.history.enabled {
        config.history.enabled = enabled;
    }
    if let Some(store_system) = raw.history.store_system {
        config.history.store_system = store_system;
    }
    if let Some(retention) = &raw.history.retention {
        match parse_duration(&retention.value) {
            Some(d) if !d.is_zero() => config.history.retention = d,
            _ => problems.push(spanned_problem(
                retention,
                "history.retention",
                format!(
                    "invalid duration {:?} (expected e.g. 30d, 12h, 90m)",
                    retention.value
                ),
            )),
        }
    }
    if let Some(max) = &raw.history.max_tracked_objects {
        if max.value == 0 {
            problems.push(spanned_problem(
                max,
                "history.max_tracked_objects",
                "must be at least 1",
            ));
        }
        config.history.max_tracked_objects = max.value;
    }

    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn compile_policy(raw: &RawConfig, problems: &mut Vec<Problem>) -> Policy {
    let mut seen_names = HashSet::default();
    let mut pipelines = Vec::new();
    for (i, p) in raw.pipelines.iter().enumerate() {
        let key = |field: &str| format!("pipelines[{i}].{field}");
        if p.name.value.trim().is_empty() {
            problems.push(spanned_problem(&p.name, &key("name"), "must not be empty"));
        } else if !seen_names.insert(p.name.value.clone()) {
            problems.push(spanned_problem(
                &p.name,
                &key("name"),
                format!("duplicate pipeline name {:?}", p.name.value),
            ));
        }
        if p.users.is_empty() && p.groups.is_empty() {
            problems.push(spanned_problem(
                &p.name,
                &format!("pipelines[{i}]"),
                "declares no users and no groups: a pipeline is an identity, and a user agent alone never sanctions",
            ));
        }
        let mut user_agents = Vec::new();
        for (j, ua) in p.user_agents.iter().enumerate() {
            match Regex::new(&ua.value) {
                Ok(re) => user_agents.push(re),
                Err(e) => problems.push(spanned_problem(
                    ua,
                    &key(&format!("user_agents[{j}]")),
                    format!("invalid regex {:?}: {}", ua.value, regex_error(&e)),
                )),
            }
        }
        let mut source_cidrs = Vec::new();
        for (j, cidr) in p.source_cidrs.iter().enumerate() {
            match parse_cidr(&cidr.value) {
                Some(net) => source_cidrs.push(net),
                None => problems.push(spanned_problem(
                    cidr,
                    &key(&format!("source_cidrs[{j}]")),
                    format!(
                        "invalid CIDR {:?} (expected e.g. 10.0.0.0/8 or fd00::/8)",
                        cidr.value
                    ),
                )),
            }
        }
        pipelines.push(Pipeline {
            name: p.name.value.clone(),
            users: p.users.iter().cloned().collect(),
            groups: p.groups.iter().cloned().collect(),
            user_agents,
            source_cidrs,
        });
    }

    let sys = &raw.system_identities;
    let mut system = SystemIdentities::default();
    if sys.baseline {
        system.users = system_baseline::usernames().collect();
        system.nodes = true;
    }
    for (i, name) in sys.exclude.iter().enumerate() {
        let known = name.value == "nodes" || system_baseline::usernames().any(|u| u == name.value);
        if !known {
            problems.push(spanned_problem(
                name,
                &format!("system_identities.exclude[{i}]"),
                format!(
                    "{:?} is not in the built-in baseline (names are exact, or \"nodes\")",
                    name.value
                ),
            ));
        }
        if name.value == "nodes" {
            system.nodes = false;
        }
        system.users.remove(&name.value);
    }
    system.users.extend(sys.extra_users.iter().cloned());
    for (i, group) in sys.extra_groups.iter().enumerate() {
        if matches!(
            group.value.as_str(),
            "system:masters" | "system:authenticated" | "system:unauthenticated"
        ) {
            problems.push(spanned_problem(
                group,
                &format!("system_identities.extra_groups[{i}]"),
                format!("{:?} is far too broad to be a system identity", group.value),
            ));
        }
        system.groups.insert(group.value.clone());
    }

    Policy {
        pipelines,
        system,
        ignore_resources: raw.ignore.resources.clone(),
        ignore_namespaces: raw.ignore.namespaces.iter().cloned().collect(),
        severity_overrides: raw
            .severity
            .overrides
            .iter()
            .map(|o| SeverityOverride {
                resources: o.resources.clone(),
                namespaces: o.namespaces.clone(),
                types: o.types.clone(),
                severity: o.severity,
            })
            .collect(),
    }
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

/// `30d`, `12h`, `90m`, `45s`, `2w`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        "w" => n.checked_mul(604_800)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// A CIDR, or a bare address meaning a single host.
fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// The regex crate's message spans several lines with a caret diagram; keep
/// the last line, which says what is wrong.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_owned())
        .unwrap_or(text)
}

fn problem(line: Option<u64>, key: &str, message: impl Into<String>) -> Problem {
    Problem {
        line,
        key: key.to_owned(),
        message: message.into(),
    }
}

fn spanned_problem<T>(at: &Spanned<T>, key: &str, message: impl Into<String>) -> Problem {
    let line = at.referenced.line();
    problem((line > 0).then_some(line), key, message)
}

#[cfg(test)]
mod tests;
