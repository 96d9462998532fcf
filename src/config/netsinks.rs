//! `sinks.http[]`, `sinks.syslog[]` and `sinks.outbox_dir`: the network
//! sinks, each delivering from an on-disk outbox of its own.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::check::Problems;
use super::raw::{RawHttpSink, RawSinks, RawSyslogSink};
use crate::sinks::format::Format;
use crate::sinks::shape::Stream;

pub const DEFAULT_OUTBOX_MAX_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct NetSinksConfig {
    /// `<outbox_dir>/<sink name>/` holds each sink's outbox; `None`:
    /// `<history.data_dir>/outbox`, resolved when the sinks start (the
    /// command line may still move the data directory).
    pub outbox_dir: Option<PathBuf>,
    pub http: Vec<HttpSinkConfig>,
    pub syslog: Vec<SyslogSinkConfig>,
}

/// How a sink sends what waits in its outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    pub timeout: Duration,
    pub batch_max_items: usize,
    /// How long a record may wait for others to fill its batch.
    pub batch_max_wait: Duration,
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    pub outbox_max_bytes: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: Duration::from_secs(10),
            batch_max_items: 100,
            batch_max_wait: Duration::from_secs(1),
            retry_initial_backoff: Duration::from_millis(500),
            retry_max_backoff: Duration::from_secs(60),
            outbox_max_bytes: DEFAULT_OUTBOX_MAX_BYTES,
        }
    }
}

/// A CA to trust instead of the system's, and a client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsConfig {
    pub ca_file: Option<PathBuf>,
    /// Certificate and key, both or neither.
    pub identity: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPreset {
    Generic,
    SplunkHec,
    Slack,
}

impl HttpPreset {
    fn parse(s: &str) -> Option<HttpPreset> {
        match s {
            "generic" => Some(HttpPreset::Generic),
            "splunk_hec" => Some(HttpPreset::SplunkHec),
            "slack" => Some(HttpPreset::Slack),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    pub name: String,
    pub preset: HttpPreset,
    pub url: String,
    pub format: Format,
    pub stream: Stream,
    pub token_file: Option<PathBuf>,
    pub headers: Vec<(String, String)>,
    pub tls: ClientTlsConfig,
    pub delivery: DeliveryConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    Tcp,
    Tls,
}

#[derive(Debug, Clone)]
pub struct SyslogSinkConfig {
    pub name: String,
    /// `HOST:PORT`.
    pub address: String,
    /// The HOST of `address`, the name a TLS certificate must carry.
    pub host: String,
    pub transport: SyslogTransport,
    pub format: Format,
    pub stream: Stream,
    pub tls: ClientTlsConfig,
    pub app_name: String,
    /// The RFC 5424 facility code (local0 = 16).
    pub facility: u8,
    /// `None`: the machine's hostname, read at start.
    pub hostname: Option<String>,
    pub delivery: DeliveryConfig,
}

/// The facilities by their RFC 5424 names and codes.
pub const FACILITIES: [(&str, u8); 24] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("audit", 13),
    ("alert", 14),
    ("clock", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Local0: findings are not this host's own authentication messages
/// (authpriv), and local0..7 are the facilities set aside for a site's own
/// sources, the ones SIEM syslog inputs are routed by.
pub const DEFAULT_FACILITY: u8 = 16;

pub(super) fn compile(raw: &RawSinks, p: &mut Problems) -> NetSinksConfig {
    let mut names = BTreeSet::new();
    let mut unique = |name: &Spanned<String>, key: &str, p: &mut Problems| {
        check_name(name, key, p);
        if !names.insert(name.value.clone()) {
            p.at(
                name,
                key,
                format!("duplicate sink name {:?}: names must be unique across sinks.http and sinks.syslog (each has its own outbox directory)", name.value),
            );
        }
    };
    let mut http = Vec::new();
    for (i, h) in raw.http.iter().enumerate() {
        let key = format!("sinks.http[{i}]");
        unique(&h.name, &format!("{key}.name"), p);
        http.push(http_sink(h, &key, p));
    }
    let mut syslog = Vec::new();
    for (i, s) in raw.syslog.iter().enumerate() {
        let key = format!("sinks.syslog[{i}]");
        unique(&s.name, &format!("{key}.name"), p);
        syslog.push(syslog_sink(s, &key, p));
    }
    NetSinksConfig {
        outbox_dir: raw.outbox_dir.as_ref().map(|d| {
            p.non_empty(d, "sinks.outbox_dir");
            PathBuf::from(&d.value)
        }),
        http,
        syslog,
    }
}

/// `[a-z0-9_-]+`: it names a directory and a metric label.
fn check_name(name: &Spanned<String>, key: &str, p: &mut Problems) {
    let ok = !name.value.is_empty()
        && name.value.len() <= 64
        && name
            .value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        p.at(
            name,
            key,
            format!(
                "invalid sink name {:?}: 1 to 64 of a-z, 0-9, _ and -",
                name.value
            ),
        );
    }
}

fn http_sink(h: &RawHttpSink, key: &str, p: &mut Problems) -> HttpSinkConfig {
    let preset = h.preset.as_ref().map_or(HttpPreset::Generic, |v| {
        HttpPreset::parse(&v.value).unwrap_or_else(|| {
            p.at(
                v,
                &format!("{key}.preset"),
                format!("{:?}: expected generic, splunk_hec or slack", v.value),
            );
            HttpPreset::Generic
        })
    });
    check_url(&h.url, &format!("{key}.url"), p);
    let default_stream = if preset == HttpPreset::Slack {
        Stream::Alerts
    } else {
        Stream::Findings
    };
    let stream = stream(&h.stream, default_stream, &format!("{key}.stream"), p);
    if preset == HttpPreset::Slack && stream == Stream::Findings {
        // Allowed (a quiet cluster may want every finding in chat), but
        // nobody reads a channel that gets one message per finding.
        tracing::warn!(
            key = %format!("{key}.stream"),
            "A slack sink on the findings stream posts one message per finding; stream: alerts folds them."
        );
    }
    let mut delivery = delivery(h, key, p);
    if preset == HttpPreset::Slack {
        // An incoming webhook takes one message per request.
        delivery.batch_max_items = 1;
    }
    HttpSinkConfig {
        name: h.name.value.clone(),
        preset,
        url: h.url.value.clone(),
        format: format(&h.format, Format::Native, &format!("{key}.format"), p),
        stream,
        token_file: h.token_file.as_ref().map(|t| {
            p.non_empty(t, &format!("{key}.token_file"));
            PathBuf::from(&t.value)
        }),
        headers: h.headers.clone().into_iter().collect(),
        tls: client_tls(
            [&h.ca_file, &h.client_cert_file, &h.client_key_file],
            key,
            p,
        ),
        delivery,
    }
}

fn check_url(url: &Spanned<String>, key: &str, p: &mut Problems) {
    let u = &url.value;
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?']).next().unwrap_or_default());
    if host.is_none_or(str::is_empty) || u.chars().any(char::is_whitespace) {
        p.at(
            url,
            key,
            format!("invalid URL {u:?}: expected http://HOST[:PORT]/PATH or https://..."),
        );
    }
}

fn delivery(h: &RawHttpSink, key: &str, p: &mut Problems) -> DeliveryConfig {
    let mut d = DeliveryConfig::default();
    let k = |name: &str| format!("{key}.{name}");
    if let Some(t) = duration(&h.timeout, &k("timeout"), p) {
        d.timeout = t;
    }
    if let Some(n) = p.at_least(&h.batch_max_items, 1, &k("batch_max_items")) {
        d.batch_max_items = n;
    }
    if let Some(t) = duration(&h.batch_max_wait, &k("batch_max_wait"), p) {
        d.batch_max_wait = t;
    }
    if let Some(t) = duration(&h.retry_initial_backoff, &k("retry_initial_backoff"), p) {
        d.retry_initial_backoff = t;
    }
    if let Some(t) = duration(&h.retry_max_backoff, &k("retry_max_backoff"), p) {
        d.retry_max_backoff = t;
    }
    if d.retry_max_backoff < d.retry_initial_backoff
        && let Some(v) = &h.retry_max_backoff
    {
        p.at(
            v,
            &k("retry_max_backoff"),
            "must not be less than retry_initial_backoff",
        );
    }
    d.outbox_max_bytes = outbox_max(&h.outbox_max_bytes, key, p);
    d
}

/// A duration as `p.duration` reads it, or in milliseconds (`500ms`):
/// delivery timings are often below a second.
pub(super) fn duration(
    v: &Option<Spanned<String>>,
    key: &str,
    p: &mut Problems,
) -> Option<Duration> {
    let spanned = v.as_ref()?;
    let Some(ms) = spanned.value.trim().strip_suffix("ms") else {
        return p.duration(v, key);
    };
    match ms.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(Duration::from_millis(n)),
        _ => {
            p.at(
                spanned,
                key,
                format!(
                    "invalid duration {:?}: expected a positive whole number of ms, or s, m, h",
                    spanned.value
                ),
            );
            None
        }
    }
}

fn outbox_max(v: &Option<Spanned<u64>>, key: &str, p: &mut Problems) -> u64 {
    p.at_least(v, 64 * 1024, &format!("{key}.outbox_max_bytes"))
        .unwrap_or(DEFAULT_OUTBOX_MAX_BYTES)
}

fn syslog_sink(s: &RawSyslogSink, key: &str, p: &mut Problems) -> SyslogSinkConfig {
    let k = |name: &str| format!("{key}.{name}");
    let host = match s.address.value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        _ => {
            p.at(
                &s.address,
                &k("address"),
                format!("invalid address {:?}: expected HOST:PORT", s.address.value),
            );
            String::new()
        }
    };
    let transport = match s.transport.as_ref().map(|t| (t, t.value.as_str())) {
        None | Some((_, "tls")) => SyslogTransport::Tls,
        Some((_, "tcp")) => SyslogTransport::Tcp,
        Some((t, other)) => {
            p.at(
                t,
                &k("transport"),
                format!("{other:?}: expected tcp or tls"),
            );
            SyslogTransport::Tls
        }
    };
    let tls = client_tls(
        [&s.ca_file, &s.client_cert_file, &s.client_key_file],
        key,
        p,
    );
    if transport == SyslogTransport::Tls && tls.ca_file.is_none() {
        p.at(
            &s.address,
            &k("ca_file"),
            "transport tls needs ca_file: the CA that signed the receiver's certificate",
        );
    }
    let delivery = DeliveryConfig {
        outbox_max_bytes: outbox_max(&s.outbox_max_bytes, key, p),
        ..DeliveryConfig::default()
    };
    SyslogSinkConfig {
        name: s.name.value.clone(),
        address: s.address.value.clone(),
        host,
        transport,
        format: format(&s.format, Format::Cef, &k("format"), p),
        stream: stream(&s.stream, Stream::Findings, &k("stream"), p),
        tls,
        app_name: header_field(&s.app_name, "driftwatch", 48, &k("app_name"), p),
        facility: facility(&s.facility, &k("facility"), p),
        hostname: s
            .hostname
            .as_ref()
            .map(|_| header_field(&s.hostname, "-", 255, &k("hostname"), p)),
        delivery,
    }
}

/// An RFC 5424 header field: printable US-ASCII without spaces.
fn header_field(
    v: &Option<Spanned<String>>,
    default: &str,
    max: usize,
    key: &str,
    p: &mut Problems,
) -> String {
    let Some(v) = v else {
        return default.to_owned();
    };
    let ok = !v.value.is_empty()
        && v.value.len() <= max
        && v.value.bytes().all(|b| (33..=126).contains(&b));
    if !ok {
        p.at(
            v,
            key,
            format!(
                "{:?}: 1 to {max} printable ASCII characters, no spaces (RFC 5424)",
                v.value
            ),
        );
    }
    v.value.clone()
}

fn facility(v: &Option<Spanned<String>>, key: &str, p: &mut Problems) -> u8 {
    let Some(v) = v else {
        return DEFAULT_FACILITY;
    };
    match FACILITIES.iter().find(|(n, _)| *n == v.value) {
        Some((_, code)) => *code,
        None => {
            p.at(
                v,
                key,
                format!(
                    "{:?}: expected a facility name (local0..local7, authpriv, daemon...)",
                    v.value
                ),
            );
            DEFAULT_FACILITY
        }
    }
}

fn format(v: &Option<Spanned<String>>, default: Format, key: &str, p: &mut Problems) -> Format {
    let Some(v) = v else { return default };
    Format::parse(&v.value).unwrap_or_else(|| {
        p.at(
            v,
            key,
            format!("{:?}: expected native, ocsf, ecs or cef", v.value),
        );
        default
    })
}

fn stream(v: &Option<Spanned<String>>, default: Stream, key: &str, p: &mut Problems) -> Stream {
    let Some(v) = v else { return default };
    Stream::parse(&v.value).unwrap_or_else(|| {
        p.at(
            v,
            key,
            format!("{:?}: expected findings or alerts", v.value),
        );
        default
    })
}

pub(super) fn client_tls(
    [ca, cert, key_file]: [&Option<Spanned<String>>; 3],
    key: &str,
    p: &mut Problems,
) -> ClientTlsConfig {
    let path = |v: &Spanned<String>, name: &str, p: &mut Problems| {
        p.non_empty(v, &format!("{key}.{name}"));
        PathBuf::from(&v.value)
    };
    let identity = match (cert, key_file) {
        (Some(c), Some(k)) => Some((
            path(c, "client_cert_file", p),
            path(k, "client_key_file", p),
        )),
        (None, None) => None,
        (Some(v), None) | (None, Some(v)) => {
            p.at(
                v,
                &format!("{key}.client_cert_file"),
                "client_cert_file and client_key_file go together",
            );
            None
        }
    };
    ClientTlsConfig {
        ca_file: ca.as_ref().map(|c| path(c, "ca_file", p)),
        identity,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn problems(yaml: &str) -> String {
        Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_compiles_with_its_defaults() {
        let c = Config::from_yaml(
            "\
sinks:
  outbox_dir: /var/lib/driftwatch/outbox
  http:
    - name: splunk
      preset: splunk_hec
      url: https://splunk:8088/services/collector/event
      format: ocsf
      headers: {X-Team: sec}
      retry_initial_backoff: 250ms
    - name: chat
      preset: slack
      url: https://hooks.slack.com/services/T/B/X
  syslog:
    - name: siem
      address: siem.example:6514
      ca_file: /etc/ca.crt
",
            "c.yaml",
        )
        .unwrap();
        let net = &c.sinks.net;
        assert_eq!(
            net.outbox_dir.as_deref(),
            Some(Path::new("/var/lib/driftwatch/outbox"))
        );
        let splunk = &net.http[0];
        assert_eq!(splunk.preset, HttpPreset::SplunkHec);
        assert_eq!(splunk.format, Format::Ocsf);
        assert_eq!(splunk.stream, Stream::Findings);
        assert_eq!(
            splunk.delivery.retry_initial_backoff,
            Duration::from_millis(250)
        );
        assert_eq!(splunk.delivery.outbox_max_bytes, DEFAULT_OUTBOX_MAX_BYTES);
        assert_eq!(splunk.headers, [("X-Team".to_owned(), "sec".to_owned())]);
        let chat = &net.http[1];
        assert_eq!(
            (chat.stream, chat.delivery.batch_max_items),
            (Stream::Alerts, 1)
        );
        let siem = &net.syslog[0];
        assert_eq!(siem.transport, SyslogTransport::Tls);
        assert_eq!(siem.host, "siem.example");
        assert_eq!(
            (siem.format, siem.facility),
            (Format::Cef, DEFAULT_FACILITY)
        );
        assert_eq!(siem.app_name, "driftwatch");
    }

    #[test]
    fn every_mistake_is_named_with_its_key() {
        let text = problems(
            "\
sinks:
  http:
    - name: Siem
      url: splunk:8088
      preset: splunk
      batch_max_wait: 0ms
    - name: dup
      url: http://a/
      client_cert_file: /c.crt
  syslog:
    - name: dup
      address: siem.example
      transport: udp
      facility: local9
      app_name: drift watch
",
        );
        for needle in [
            "c.yaml:3: sinks.http[0].name: invalid sink name \"Siem\"",
            "c.yaml:4: sinks.http[0].url: invalid URL \"splunk:8088\"",
            "c.yaml:5: sinks.http[0].preset: \"splunk\": expected generic, splunk_hec or slack",
            "c.yaml:6: sinks.http[0].batch_max_wait: invalid duration \"0ms\"",
            "c.yaml:9: sinks.http[1].client_cert_file: client_cert_file and client_key_file go together",
            "c.yaml:11: sinks.syslog[0].name: duplicate sink name \"dup\"",
            "c.yaml:12: sinks.syslog[0].address: invalid address \"siem.example\"",
            "c.yaml:13: sinks.syslog[0].transport: \"udp\": expected tcp or tls",
            "c.yaml:14: sinks.syslog[0].facility: \"local9\"",
            "c.yaml:15: sinks.syslog[0].app_name: \"drift watch\"",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
    }

    #[test]
    fn tls_syslog_needs_the_ca_that_signs_the_receiver() {
        let text = problems("sinks:\n  syslog:\n    - name: s\n      address: h:6514\n");
        assert!(
            text.contains("sinks.syslog[0].ca_file: transport tls needs ca_file"),
            "{text}"
        );
    }
}
