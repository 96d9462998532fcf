//! The syslog sink: RFC 5424 messages over TCP with octet-counting framing
//! (RFC 6587), or over TLS (RFC 5425). One connection, reopened with
//! backoff when it fails.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [driftwatch@32473 id=..
//! cluster=.. drift=..] MSG`, MSG being the item in the sink's format.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::deliver::{SendError, Transport};
use super::{Encoder, NetSink};
use crate::config::{AlertsConfig, SyslogSinkConfig, SyslogTransport};
use crate::model::Severity;
use crate::sinks::format::{self, Format};
use crate::sinks::outbox::Record;
use crate::sinks::shape::Alert;
use crate::sinks::{Finding, SinkError};

/// The private enterprise number in the structured data's ID (RFC 5424
/// 7.2.2 asks for one; 32473 is the one set aside for documentation).
pub const SD_ID: &str = "driftwatch@32473";

pub fn start(
    config: &SyslogSinkConfig,
    outbox_dir: &Path,
    alerts: &AlertsConfig,
) -> Result<NetSink, SinkError> {
    let fail = super::start_error("sinks.syslog", &config.name);
    let transport = Connection::new(config).map_err(fail)?;
    let hostname = config.hostname.clone().unwrap_or_else(machine_hostname);
    NetSink::start(
        &config.name,
        config.stream,
        alerts,
        outbox_dir,
        &config.delivery,
        Box::new(SyslogEncoder {
            format: config.format,
            facility: config.facility,
            hostname,
            app_name: config.app_name.clone(),
            procid: std::process::id().to_string(),
        }),
        Box::new(transport),
    )
}

/// The kernel's hostname, as RFC 5424 allows it (printable, no spaces).
fn machine_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() {
        "-".to_owned()
    } else {
        name
    }
}

struct SyslogEncoder {
    format: Format,
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
}

/// A header and its structured data, for one message.
struct Header<'a> {
    severity: Severity,
    time: &'a str,
    msgid: &'a str,
    id: &'a str,
    cluster: &'a str,
    drift: Option<&'a str>,
}

impl SyslogEncoder {
    fn header(&self, h: &Header<'_>, out: &mut Vec<u8>) {
        let pri = u16::from(self.facility) * 8 + u16::from(code(h.severity));
        let line = format!(
            "<{pri}>1 {} {} {} {} {} [{SD_ID} id=\"{}\" cluster=\"{}\"",
            h.time,
            self.hostname,
            self.app_name,
            self.procid,
            h.msgid,
            escape(h.id),
            escape(h.cluster),
        );
        out.extend_from_slice(line.as_bytes());
        if let Some(d) = h.drift {
            out.extend_from_slice(format!(" drift=\"{}\"", escape(d)).as_bytes());
        }
        out.extend_from_slice(b"] ");
    }
}

impl Encoder for SyslogEncoder {
    fn finding(&self, f: &Finding<'_>, out: &mut Vec<u8>) {
        let r = f.record;
        let header = Header {
            severity: f.severity,
            time: &r.time.text,
            msgid: f.finding_type.as_str(),
            id: &r.id,
            cluster: &r.cluster,
            drift: r.drift.as_ref().map(|d| d.id.as_str()),
        };
        self.header(&header, out);
        format::render_finding(self.format, f, out);
    }

    fn alert(&self, a: &Alert, out: &mut Vec<u8>) {
        let finding = a.finding.as_ref();
        let msgid = finding.map_or("drift_closed", |f| f.finding_type.as_str());
        let id = finding
            .map(|f| f.record.id.as_str())
            .or(a.drift_id.as_deref())
            .unwrap_or("-");
        let header = Header {
            severity: a.severity,
            time: &a.last.text,
            msgid,
            id,
            cluster: &a.cluster,
            drift: a.drift_id.as_deref(),
        };
        self.header(&header, out);
        format::render_alert(self.format, a, out);
    }
}

/// RFC 5424 severities: critical 2, high error 3, medium warning 4, low
/// notice 5.
fn code(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
    }
}

/// A PARAM-VALUE: `"`, `\` and `]` are escaped with a backslash.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A TCP or TLS stream to the receiver; read only to see it closed.
trait Wire: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Wire for T {}

/// How long a send looks for the receiver having closed the connection: it
/// lets the runtime take in a FIN or RST that came since the last send.
const CLOSED_CHECK: Duration = Duration::from_millis(1);

/// Whether the receiver closed (or reset) the connection since the last
/// send. A syslog receiver never writes, so end-of-stream or an error on a
/// read means it is gone (a restart, an idle timeout); writing to it
/// anyway would succeed in the kernel and be lost with the RST that
/// answers it. Over TLS the read goes through rustls, which takes the
/// session tickets a server sends and sees `close_notify`.
async fn closed_by_peer(stream: &mut Box<dyn Wire>) -> bool {
    let mut buf = [0u8; 1024];
    // Bytes a receiver sends are not syslog: read past a few reads' worth.
    for _ in 0..16 {
        match tokio::time::timeout(CLOSED_CHECK, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
    false
}

struct Connection {
    runtime: tokio::runtime::Runtime,
    address: String,
    server_name: ServerName<'static>,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
    connection: Option<Box<dyn Wire>>,
}

impl Connection {
    fn new(config: &SyslogSinkConfig) -> Result<Connection, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start its runtime: {e}"))?;
        let tls = match config.transport {
            SyslogTransport::Tcp => None,
            SyslogTransport::Tls => Some(tokio_rustls::TlsConnector::from(Arc::new(
                crate::tls::client_config(&config.tls)?,
            ))),
        };
        let server_name = ServerName::try_from(config.host.clone())
            .map_err(|e| format!("address {:?}: {e}", config.address))?;
        Ok(Connection {
            runtime,
            address: config.address.clone(),
            server_name,
            tls,
            timeout: config.delivery.timeout,
            connection: None,
        })
    }

    async fn connect(&self) -> Result<Box<dyn Wire>, String> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.address))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let stream = tls
                    .connect(self.server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.address))?;
                Ok(Box::new(stream))
            }
        }
    }
}

/// Octet-counting framing (RFC 6587 3.4.1): `LEN SP MSG` per message.
fn frames(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(format!("{} ", r.payload.len()).as_bytes());
        out.extend_from_slice(&r.payload);
    }
    out
}

impl Transport for Connection {
    fn send(&mut self, records: &[Record]) -> Result<(), SendError> {
        let bytes = frames(records);
        let timeout = self.timeout;
        let mut connection = self.connection.take();
        let result = self.runtime.block_on(async {
            let sent = tokio::time::timeout(timeout, async {
                if let Some(open) = &mut connection
                    && closed_by_peer(open).await
                {
                    connection = None;
                }
                let stream = match &mut connection {
                    Some(s) => s,
                    None => connection.insert(self.connect().await?),
                };
                stream
                    .write_all(&bytes)
                    .await
                    .map_err(|e| format!("writing to {}: {e}", self.address))?;
                stream
                    .flush()
                    .await
                    .map_err(|e| format!("writing to {}: {e}", self.address))
            })
            .await;
            sent.unwrap_or_else(|_| Err(format!("{}: timed out after {timeout:?}", self.address)))
        });
        match result {
            Ok(()) => {
                self.connection = connection;
                Ok(())
            }
            // The connection is dropped: the next try opens a new one.
            Err(error) => Err(SendError::Retry { error, after: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_values_escape_quote_backslash_and_bracket() {
        assert_eq!(escape(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn frames_are_octet_counted() {
        let records = [
            Record {
                time_ms: 0,
                payload: b"<134>1 x".to_vec(),
            },
            Record {
                time_ms: 0,
                payload: "é".as_bytes().to_vec(),
            },
        ];
        assert_eq!(frames(&records), "8 <134>1 x2 é".as_bytes());
    }
}
