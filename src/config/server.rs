use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::check::Problems;
use super::raw::RawServer;

/// The listener: address, limits, TLS and who may call.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub queue_batches: usize,
    pub max_events_per_batch: usize,
    pub max_header_bytes: usize,
    /// The largest event, in bytes of its JSON text: a larger one is
    /// rejected with its line and audit id, the rest of its body accepted.
    pub max_event_bytes: usize,
    /// How many times its own size a gzip stream inside a body may inflate
    /// to (what it inflates to counts against `max_body_bytes` too).
    pub max_inflate_ratio: usize,
    /// Work units (see [`crate::decode::Limits::work`]) decoding one webhook
    /// body or Kafka message may cost before it is refused whole.
    pub max_decode_work: u64,
    /// An event time further than this from the time a live source (webhook,
    /// Kafka) received it is kept, with the receive time recorded beside it
    /// and retention judged on that.
    pub max_clock_skew: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// HTTP/2 streams (requests) open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Memory for request bodies in flight, all connections together.
    pub max_inflight_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Bytes of one page of a list route's items (at least one item).
    pub max_query_page_bytes: usize,
    /// Queries of the API running at once; more wait for a slot.
    pub max_concurrent_queries: usize,
    pub tls: Option<TlsConfig>,
    pub auth: AuthConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: super::DEFAULT_MAX_BODY_BYTES,
            queue_batches: super::DEFAULT_QUEUE_BATCHES,
            max_events_per_batch: 50_000,
            max_header_bytes: 16 * 1024,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_inflate_ratio: crate::decode::DEFAULT_INFLATE_RATIO,
            max_decode_work: default_decode_work(super::DEFAULT_MAX_BODY_BYTES),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            max_connections: super::DEFAULT_MAX_CONNECTIONS,
            max_concurrent_streams: super::DEFAULT_MAX_CONCURRENT_STREAMS,
            max_inflight_body_bytes: super::DEFAULT_MAX_INFLIGHT_BODY_BYTES,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            max_query_page_bytes: 4 * 1024 * 1024,
            max_concurrent_queries: default_concurrent_queries(),
            tls: None,
            auth: AuthConfig::default(),
        }
    }
}

/// etcd stores objects of up to 1.5 MiB, and an update logged at
/// `RequestResponse` carries two of them: the largest event a default API
/// server writes fits in 4 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// A day: clocks are never that far apart, and a live source's backlog
/// (a Kafka topic read from its start) older than that is recorded with
/// its receive time, which costs nothing but a longer retention.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(86_400);

/// Eight units per byte of the largest body: the most a legitimate body
/// costs is about 3.5 per byte (a full body of the smallest events, each a
/// document and an event), the envelopes' layers (base64, gzip, JSON
/// strings) about 5.
pub fn default_decode_work(max_body_bytes: usize) -> u64 {
    u64::try_from(max_body_bytes)
        .unwrap_or(u64::MAX)
        .saturating_mul(8)
}

/// Half the cores: the other half stays for ingest. On this project's 2
/// cores, 4 clients paging without a limit took the webhook from 24k to
/// 6.5k events/s; with one query at a time it kept 14k.
fn default_concurrent_queries() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca_file: Option<PathBuf>,
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub bearer_tokens_file: Option<PathBuf>,
    pub query_tokens_file: Option<PathBuf>,
    pub client_clusters: Vec<(String, String)>,
    /// Let an authenticated caller bound to no cluster write as any cluster
    /// (otherwise only as the default `cluster`).
    pub allow_any_cluster: bool,
}

/// The limits on what decoding one body may cost.
fn decode_limits(raw: &RawServer, p: &mut Problems, s: &mut ServerConfig) {
    if let Some(n) = p.at_least(&raw.max_event_bytes, 1024, "server.max_event_bytes") {
        s.max_event_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = p.at_least(&raw.max_inflate_ratio, 2, "server.max_inflate_ratio") {
        s.max_inflate_ratio = n;
    }
    s.max_decode_work = default_decode_work(s.max_body_bytes);
    if let Some(n) = p.at_least(&raw.max_decode_work, 1 << 20, "server.max_decode_work") {
        s.max_decode_work = n;
    }
    if let Some(d) = p.duration(&raw.max_clock_skew, "server.max_clock_skew") {
        s.max_clock_skew = d;
    }
}

pub(super) fn compile(raw: &RawServer, p: &mut Problems) -> ServerConfig {
    let mut s = ServerConfig::default();
    if let Some(listen) = &raw.listen {
        match listen.value.parse() {
            Ok(addr) => s.listen = addr,
            Err(e) => p.at(
                listen,
                "server.listen",
                format!(
                    "invalid address {:?}: {e} (expected HOST:PORT such as {})",
                    listen.value,
                    super::DEFAULT_LISTEN
                ),
            ),
        }
    }
    if let Some(n) = p.at_least(&raw.max_body_bytes, 1024, "server.max_body_bytes") {
        s.max_body_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = p.at_least(&raw.queue_batches, 1, "server.queue_batches") {
        s.queue_batches = n;
    }
    if let Some(n) = p.at_least(&raw.max_events_per_batch, 1, "server.max_events_per_batch") {
        s.max_events_per_batch = n;
    }
    if let Some(n) = p.at_least(&raw.max_header_bytes, 1024, "server.max_header_bytes") {
        s.max_header_bytes = n;
    }
    decode_limits(raw, p, &mut s);
    compile_listener_limits(raw, p, &mut s);
    if let Some(n) = p.at_least(
        &raw.max_query_page_bytes,
        64 * 1024,
        "server.max_query_page_bytes",
    ) {
        s.max_query_page_bytes = n;
    }
    if let Some(n) = p.at_least(
        &raw.max_concurrent_queries,
        1,
        "server.max_concurrent_queries",
    ) {
        s.max_concurrent_queries = n;
    }
    for (value, key, slot) in [
        (
            &raw.header_read_timeout,
            "server.header_read_timeout",
            &mut s.header_read_timeout,
        ),
        (
            &raw.body_read_timeout,
            "server.body_read_timeout",
            &mut s.body_read_timeout,
        ),
        (
            &raw.shutdown_grace,
            "server.shutdown_grace",
            &mut s.shutdown_grace,
        ),
    ] {
        if let Some(d) = p.duration(value, key) {
            *slot = d;
        }
    }
    s.tls = raw.tls.as_ref().map(|tls| {
        p.non_empty(&tls.cert_file, "server.tls.cert_file");
        p.non_empty(&tls.key_file, "server.tls.key_file");
        TlsConfig {
            cert_file: PathBuf::from(&tls.cert_file.value),
            key_file: PathBuf::from(&tls.key_file.value),
            client_ca_file: tls.client_ca_file.as_ref().map(|c| PathBuf::from(&c.value)),
            reload_interval: p
                .duration(&tls.reload_interval, "server.tls.reload_interval")
                .unwrap_or(Duration::from_secs(10)),
        }
    });
    let path =
        |f: &Option<serde_saphyr::Spanned<String>>| f.as_ref().map(|f| PathBuf::from(&f.value));
    s.auth = AuthConfig {
        bearer_tokens_file: path(&raw.auth.bearer_tokens_file),
        query_tokens_file: path(&raw.auth.query_tokens_file),
        client_clusters: raw.auth.client_clusters.clone().into_iter().collect(),
        allow_any_cluster: raw.auth.allow_any_cluster,
    };
    if !s.auth.client_clusters.is_empty()
        && s.tls.as_ref().is_none_or(|t| t.client_ca_file.is_none())
    {
        p.add(
            None,
            "server.auth.client_clusters",
            "binds client certificates to clusters, but server.tls.client_ca_file is not set, so no client certificate is verified",
        );
    }
    s
}

/// The listener's memory bounds: connections, streams per connection, and
/// the body budget, which must hold at least one body of the largest size
/// and the inflater of a gzip one.
fn compile_listener_limits(raw: &RawServer, p: &mut Problems, s: &mut ServerConfig) {
    if let Some(n) = p.at_least(&raw.max_connections, 1, "server.max_connections") {
        s.max_connections = n;
    }
    if let Some(n) = p.at_least(
        &raw.max_concurrent_streams,
        1,
        "server.max_concurrent_streams",
    ) {
        s.max_concurrent_streams = n;
    }
    if let Some(n) = p.at_least(
        &raw.max_inflight_body_bytes,
        1024,
        "server.max_inflight_body_bytes",
    ) {
        s.max_inflight_body_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    let one_body = s
        .max_body_bytes
        .saturating_add(crate::http::body::INFLATER_BYTES);
    if s.max_inflight_body_bytes < one_body {
        let at = raw
            .max_inflight_body_bytes
            .as_ref()
            .or(raw.max_body_bytes.as_ref());
        let message = format!(
            "{} is less than server.max_body_bytes ({}) and 64 KiB for a gzip inflater: a body of the largest size could never be read; raise it or lower server.max_body_bytes",
            s.max_inflight_body_bytes, s.max_body_bytes
        );
        match at {
            Some(v) => p.at(v, "server.max_inflight_body_bytes", message),
            None => p.add(None, "server.max_inflight_body_bytes", message),
        }
    }
}
