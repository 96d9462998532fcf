use super::check::Problems;
use super::raw::RawSources;

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
    /// How long each message waits before it is judged, so that one
    /// resource's events from several partitions are judged in the order
    /// they were produced (see `sources::hold`); `None`: not held.
    pub reorder_window: Option<std::time::Duration>,
    /// Bytes of messages held at most; past it the oldest go early.
    pub reorder_max_bytes: usize,
}

pub(super) fn compile(raw: &RawSources, p: &mut Problems) -> Option<KafkaSourceConfig> {
    let k = raw.kafka.as_ref()?;
    p.non_empty(&k.brokers, "sources.kafka.brokers");
    if k.topics.value.is_empty() || k.topics.value.iter().any(|t| t.trim().is_empty()) {
        p.at(
            &k.topics,
            "sources.kafka.topics",
            "must list at least one topic, none empty",
        );
    }
    Some(KafkaSourceConfig {
        brokers: k.brokers.value.clone(),
        topics: k.topics.value.clone(),
        group_id: k
            .group_id
            .clone()
            .unwrap_or_else(|| "driftwatch".to_owned()),
        dead_letter_topic: k.dead_letter_topic.clone().filter(|t| !t.is_empty()),
        cluster_from: match k.cluster_from.as_deref() {
            None | Some("header") => ClusterFrom::Header,
            Some(name) => ClusterFrom::Fixed(name.to_owned()),
        },
        properties: k.properties.clone().into_iter().collect(),
        max_batch_messages: p
            .at_least(&k.max_batch_messages, 1, "sources.kafka.max_batch_messages")
            .unwrap_or(256),
        reorder_window: p.duration(&k.reorder_window, "sources.kafka.reorder_window"),
        reorder_max_bytes: p
            .at_least(
                &k.reorder_max_bytes,
                1024 * 1024,
                "sources.kafka.reorder_max_bytes",
            )
            .unwrap_or(256 * 1024 * 1024),
    })
}
