use std::path::PathBuf;

use super::check::Problems;
use super::raw::{RawAlerts, RawFileSink, RawSinks};
use crate::sinks::format::Format;
use crate::sinks::shape::Stream;

#[derive(Debug, Clone)]
pub struct SinksConfig {
    pub stdout: bool,
    pub file: Option<FileSinkConfig>,
    pub kafka: Option<KafkaSinkConfig>,
    /// HTTP and syslog sinks, each with an outbox.
    pub net: super::netsinks::NetSinksConfig,
    /// `alerts:`, as [`super::Config::alerts`]: here too so that every sink
    /// built from this config can shape alerts.
    pub alerts: AlertsConfig,
}

impl Default for SinksConfig {
    fn default() -> Self {
        SinksConfig {
            stdout: true,
            file: None,
            kafka: None,
            net: super::netsinks::NetSinksConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
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

pub(super) fn compile(raw: &RawSinks, p: &mut Problems) -> SinksConfig {
    let mut s = SinksConfig::default();
    if let Some(stdout) = &raw.stdout {
        s.stdout = stdout.enabled;
    }
    s.file = raw.file.as_ref().map(|f| file(f, p));
    s.kafka = raw.kafka.as_ref().map(|k| {
        p.non_empty(&k.brokers, "sinks.kafka.brokers");
        p.non_empty(&k.topic, "sinks.kafka.topic");
        KafkaSinkConfig {
            brokers: k.brokers.value.clone(),
            topic: k.topic.value.clone(),
            properties: k.properties.clone().into_iter().collect(),
            delivery_timeout_ms: p
                .at_least(
                    &k.delivery_timeout_ms,
                    100,
                    "sinks.kafka.delivery_timeout_ms",
                )
                .unwrap_or(30_000),
        }
    });
    s.net = super::netsinks::compile(raw, p);
    s
}

// -- file sink, formats and alert shaping (formats branch) --

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    pub format: Format,
    pub stream: Stream,
    /// Rotate before a write would take the file past this; `None`: never.
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`path.1` newest .. `path.N`).
    pub keep: usize,
}

pub const DEFAULT_FILE_KEEP: usize = 5;

impl FileSinkConfig {
    /// Findings in the native format, never rotated: the file sink as it
    /// was before formats.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSinkConfig {
            path: path.into(),
            format: Format::Native,
            stream: Stream::Findings,
            max_bytes: None,
            keep: DEFAULT_FILE_KEEP,
        }
    }
}

/// `alerts:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertsConfig {
    /// How long a drift's later changes are folded into one update.
    pub fold_window: std::time::Duration,
    /// Drifts whose alert state is held; past it the oldest pending
    /// update goes out early.
    pub max_drifts: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            fold_window: std::time::Duration::from_secs(300),
            max_drifts: 10_000,
        }
    }
}

/// One of a closed set of spellings, or a problem naming them all.
fn word<T: Copy>(
    value: &Option<serde_saphyr::Spanned<String>>,
    key: &str,
    all: &[T],
    as_str: fn(T) -> &'static str,
    p: &mut Problems,
) -> Option<T> {
    let v = value.as_ref()?;
    let found = all.iter().copied().find(|t| as_str(*t) == v.value);
    if found.is_none() {
        let names: Vec<&str> = all.iter().map(|t| as_str(*t)).collect();
        p.at(
            v,
            key,
            format!(
                "unknown value {:?}: expected one of {}",
                v.value,
                names.join(", ")
            ),
        );
    }
    found
}

fn file(f: &RawFileSink, p: &mut Problems) -> FileSinkConfig {
    p.non_empty(&f.path, "sinks.file.path");
    let mut c = FileSinkConfig::new(&f.path.value);
    if let Some(format) = word(
        &f.format,
        "sinks.file.format",
        &Format::ALL,
        Format::as_str,
        p,
    ) {
        c.format = format;
    }
    if let Some(stream) = word(
        &f.stream,
        "sinks.file.stream",
        &Stream::ALL,
        Stream::as_str,
        p,
    ) {
        c.stream = stream;
    }
    // Smaller than one finding would rotate on every write.
    c.max_bytes = p.at_least(&f.max_bytes, 4096, "sinks.file.max_bytes");
    if let Some(keep) = p.at_least(&f.keep, 1, "sinks.file.keep") {
        c.keep = keep;
    }
    c
}

pub(super) fn compile_alerts(raw: &RawAlerts, p: &mut Problems) -> AlertsConfig {
    let mut a = AlertsConfig::default();
    if let Some(d) = p.duration(&raw.fold_window, "alerts.fold_window") {
        a.fold_window = d;
    }
    if let Some(n) = p.at_least(&raw.max_drifts, 1, "alerts.max_drifts") {
        a.max_drifts = n;
    }
    a
}
