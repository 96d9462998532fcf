use std::path::PathBuf;

use super::check::Problems;
use super::raw::RawSinks;

#[derive(Debug, Clone)]
pub struct SinksConfig {
    pub stdout: bool,
    pub file: Option<PathBuf>,
    pub kafka: Option<KafkaSinkConfig>,
    /// HTTP and syslog sinks, each with an outbox.
    pub net: super::netsinks::NetSinksConfig,
}

impl Default for SinksConfig {
    fn default() -> Self {
        SinksConfig {
            stdout: true,
            file: None,
            kafka: None,
            net: super::netsinks::NetSinksConfig::default(),
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
    if let Some(file) = &raw.file {
        p.non_empty(&file.path, "sinks.file.path");
        s.file = Some(PathBuf::from(&file.path.value));
    }
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
