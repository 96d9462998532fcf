//! The HTTP sink: a generic JSON webhook, Splunk HEC's event endpoint, or
//! a Slack-compatible incoming webhook. Records are rendered for the
//! preset on the engine thread (the Splunk envelope, the Slack message) so
//! that delivery only joins them into a body.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;

use super::deliver::{SendError, Transport};
use super::{Encoder, NetSink};
use crate::config::{AlertsConfig, ClientTlsConfig, HttpPreset, HttpSinkConfig};
use crate::sinks::format::{self, Format, alert_text};
use crate::sinks::outbox::Record;
use crate::sinks::shape::Alert;
use crate::sinks::{Finding, SinkError};

/// Starts an HTTP sink; a bad CA, certificate or header stops the start.
pub fn start(
    config: &HttpSinkConfig,
    outbox_dir: &Path,
    alerts: &AlertsConfig,
) -> Result<NetSink, SinkError> {
    let fail = super::start_error("sinks.http", &config.name);
    let transport = HttpTransport::new(config).map_err(fail)?;
    NetSink::start(
        &config.name,
        config.stream,
        alerts,
        outbox_dir,
        &config.delivery,
        Box::new(HttpEncoder {
            preset: config.preset,
            format: config.format,
        }),
        Box::new(transport),
    )
}

struct HttpEncoder {
    preset: HttpPreset,
    format: Format,
}

impl Encoder for HttpEncoder {
    fn finding(&self, f: &Finding<'_>, out: &mut Vec<u8>) {
        match self.preset {
            HttpPreset::Generic => format::render_finding(self.format, f, out),
            HttpPreset::SplunkHec => {
                let mut event = Vec::new();
                format::render_finding(self.format, f, &mut event);
                splunk_envelope(
                    self.format,
                    f.record.time.us,
                    &f.record.cluster,
                    &event,
                    out,
                );
            }
            HttpPreset::Slack => slack_message(&Alert::single(f), out),
        }
    }

    fn alert(&self, a: &Alert, out: &mut Vec<u8>) {
        match self.preset {
            HttpPreset::Generic => format::render_alert(self.format, a, out),
            HttpPreset::SplunkHec => {
                let mut event = Vec::new();
                format::render_alert(self.format, a, &mut event);
                splunk_envelope(self.format, a.last.us, &a.cluster, &event, out);
            }
            HttpPreset::Slack => slack_message(a, out),
        }
    }
}

/// `{"time", "host", "source", "sourcetype", "event"}`: one HEC event.
fn splunk_envelope(format: Format, time_us: i64, cluster: &str, event: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(event);
    // A JSON format goes in as the object it is; CEF as a string.
    let event: serde_json::Value = if format.is_json() {
        match RawValue::from_string(text.into_owned()) {
            Ok(raw) => serde_json::to_value(raw).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    } else {
        serde_json::Value::String(text.into_owned())
    };
    let envelope = serde_json::json!({
        "time": time_us as f64 / 1e6,
        "host": cluster,
        "source": "driftwatch",
        "sourcetype": format!("driftwatch:{}", format.as_str()),
        "event": event,
    });
    let _ = serde_json::to_writer(out, &envelope);
}

fn slack_message(a: &Alert, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, &serde_json::json!({ "text": alert_text(a) }));
}

struct HttpTransport {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    preset: HttpPreset,
    json: bool,
    headers: HeaderMap,
    token_file: Option<PathBuf>,
}

impl HttpTransport {
    fn new(config: &HttpSinkConfig) -> Result<HttpTransport, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start its runtime: {e}"))?;
        let builder = crate::http::client_builder()
            .timeout(config.delivery.timeout)
            .connect_timeout(config.delivery.timeout);
        let client = tls(builder, &config.tls)?
            .build()
            .map_err(|e| format!("cannot build its client: {e}"))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let name =
                HeaderName::try_from(k.as_str()).map_err(|e| format!("headers: {k:?}: {e}"))?;
            let value =
                HeaderValue::try_from(v.as_str()).map_err(|e| format!("headers: {k}: {e}"))?;
            headers.insert(name, value);
        }
        if let Some(t) = &config.token_file {
            read_token(t)?;
        }
        Ok(HttpTransport {
            runtime,
            client,
            url: config.url.clone(),
            preset: config.preset,
            json: config.format.is_json() || config.preset != HttpPreset::Generic,
            headers,
            token_file: config.token_file.clone(),
        })
    }

    /// The body of a batch: a JSON array (generic JSON formats), lines
    /// (generic CEF), concatenated events (Splunk), one message (Slack).
    fn body(&self, records: &[Record]) -> Vec<u8> {
        let mut body = Vec::new();
        let generic_json = self.preset == HttpPreset::Generic && self.json;
        if generic_json {
            body.push(b'[');
        }
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                body.push(if generic_json { b',' } else { b'\n' });
            }
            body.extend_from_slice(&r.payload);
        }
        if generic_json {
            body.push(b']');
        } else if self.preset == HttpPreset::Generic {
            body.push(b'\n');
        }
        body
    }

    fn authorization(&self) -> Result<Option<HeaderValue>, String> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        // Read at each send: a rotated token is used from the next one.
        let token = read_token(path)?;
        let scheme = if self.preset == HttpPreset::SplunkHec {
            "Splunk"
        } else {
            "Bearer"
        };
        HeaderValue::try_from(format!("{scheme} {token}"))
            .map(|mut v| {
                v.set_sensitive(true);
                Some(v)
            })
            .map_err(|_| format!("{}: the token is not a valid header value", path.display()))
    }
}

fn read_token(path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("token_file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("token_file {}: empty", path.display()));
    }
    Ok(token.to_owned())
}

fn tls(
    mut builder: reqwest::ClientBuilder,
    tls: &ClientTlsConfig,
) -> Result<reqwest::ClientBuilder, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    if let Some(ca) = &tls.ca_file {
        // Only that CA: the operator named the one that signs the receiver.
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    if let Some((cert, key)) = &tls.identity {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("client_cert_file {}: {e}", cert.display()))?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

impl Transport for HttpTransport {
    fn send(&mut self, records: &[Record]) -> Result<(), SendError> {
        let retry = |error: String| SendError::Retry { error, after: None };
        let auth = self.authorization().map_err(retry)?;
        let content_type = if self.json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, content_type)
            .body(self.body(records));
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| retry(describe(&e)))?;
            let status = response.status();
            let after = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            judge(status, after, &text)
        })
    }
}

/// What a status means for the batch.
fn judge(status: StatusCode, after: Option<Duration>, body: &str) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let error = format!(
        "answered {status}: {}",
        body.chars().take(300).collect::<String>()
    );
    match status.as_u16() {
        429 => Err(SendError::Retry { error, after }),
        408 => Err(SendError::Retry { error, after: None }),
        400..=499 => Err(SendError::Refused { error }),
        _ => Err(SendError::Retry { error, after: None }),
    }
}

/// `Retry-After` in seconds (the HTTP-date form falls back to backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// reqwest's message and its causes ("error sending request" alone does
/// not say the connection was refused).
fn describe(e: &reqwest::Error) -> String {
    crate::telemetry::with_causes(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_retried_or_refused() {
        let ok = judge(StatusCode::OK, None, "");
        assert_eq!(ok, Ok(()));
        let later = Some(Duration::from_secs(7));
        assert!(matches!(
            judge(StatusCode::TOO_MANY_REQUESTS, later, ""),
            Err(SendError::Retry { after, .. }) if after == later
        ));
        for s in [408, 500, 502, 503] {
            let s = StatusCode::from_u16(s).unwrap_or_default();
            assert!(
                matches!(judge(s, None, ""), Err(SendError::Retry { .. })),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 413] {
            let s = StatusCode::from_u16(s).unwrap_or_default();
            assert!(
                matches!(judge(s, None, ""), Err(SendError::Refused { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn a_splunk_envelope_carries_a_json_event_as_an_object_and_cef_as_a_string() {
        let mut out = Vec::new();
        splunk_envelope(
            Format::Native,
            1_500_000,
            "prod",
            br#"{"id":"x"}"#,
            &mut out,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["event"]["id"], "x");
        assert_eq!(v["time"], 1.5);
        assert_eq!(v["host"], "prod");
        assert_eq!(v["sourcetype"], "driftwatch:native");
        out.clear();
        splunk_envelope(Format::Cef, 0, "prod", b"CEF:0|a|b", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["event"], "CEF:0|a|b");
    }
}
