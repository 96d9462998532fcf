//! Real receivers on loopback for the network sinks: an HTTP server that
//! records every request (and can be told to fail, or to stop listening
//! and come back on the same port), and a syslog server over TCP or TLS
//! that reads octet-counted RFC 5424 frames.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::common::{Pki, wait_until};

/// One request as the receiver saw it, and the status it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("body is not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    /// Concatenated JSON values (Splunk HEC's batch body).
    pub fn json_values(&self) -> Result<Vec<serde_json::Value>> {
        Ok(serde_json::Deserializer::from_slice(&self.body)
            .into_iter()
            .collect::<Result<_, _>>()?)
    }
}

/// What the next requests are answered with, before `200`.
#[derive(Default)]
struct Script {
    failures: Vec<(u16, Option<u64>)>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<Script>,
}

/// A recording HTTP server on a loopback port of its own.
pub struct RecordingHttp {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    serving: Option<JoinSet<()>>,
}

impl RecordingHttp {
    pub fn start() -> Result<RecordingHttp> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let mut receiver = RecordingHttp {
            addr,
            shared: Arc::default(),
            runtime,
            serving: None,
        };
        receiver.serve(listener);
        Ok(receiver)
    }

    /// A receiver that is not listening yet; [`RecordingHttp::up`] starts it
    /// on its port.
    pub fn down_at_first() -> Result<RecordingHttp> {
        let mut r = RecordingHttp::start()?;
        r.down();
        Ok(r)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next `n` requests with `status` (and `Retry-After`).
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        let mut script = self.shared.script.lock().unwrap();
        script
            .failures
            .extend(std::iter::repeat_n((status, retry_after), n));
    }

    /// Stops listening and closes every connection: the sink sees a
    /// receiver that is down.
    pub fn down(&mut self) {
        stop_serving(&self.runtime, &mut self.serving);
    }

    /// Listens again on the same port.
    pub fn up(&mut self) -> Result<()> {
        let listener = self.runtime.block_on(TcpListener::bind(self.addr))?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let shared = Arc::clone(&self.shared);
        let mut tasks = JoinSet::new();
        let _guard = self.runtime.enter();
        tasks.spawn(async move {
            // Dropped with this task: `down` closes the connections too.
            let mut open = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                open.spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| answer(Arc::clone(&shared), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        self.serving = Some(tasks);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until `ready` holds for the requests so far.
    pub fn wait_for<T>(
        &self,
        what: &str,
        mut ready: impl FnMut(&[Recorded]) -> Option<T>,
    ) -> Result<T> {
        wait_until(
            Duration::from_secs(60),
            || format!("{what}; requests: {:#?}", self.summary()),
            || ready(&self.requests()),
        )
    }

    fn summary(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {:.300}",
                    r.method,
                    r.path,
                    r.status,
                    String::from_utf8_lossy(&r.body)
                )
            })
            .collect()
    }
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req.into_body().collect().await?.to_bytes().to_vec();
    let (status, retry_after) = {
        let mut script = shared.script.lock().unwrap();
        if script.failures.is_empty() {
            (200, None)
        } else {
            script.failures.remove(0)
        }
    };
    shared.requests.lock().unwrap().push(Recorded {
        method,
        path,
        headers,
        body,
        status,
    });
    let mut response = Response::builder().status(status);
    if let Some(s) = retry_after {
        response = response.header("Retry-After", s.to_string());
    }
    Ok(response
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Syslog.

/// One RFC 5424 message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syslog {
    pub pri: u16,
    pub version: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub sd_id: String,
    /// The structured data's params, unescaped.
    pub params: BTreeMap<String, String>,
    pub msg: String,
}

/// A syslog receiver over TCP, or TLS with the test CA's server
/// certificate, keeping every message it reads.
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    frames: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl SyslogReceiver {
    pub fn tcp() -> Result<SyslogReceiver> {
        SyslogReceiver::start(None)
    }

    pub fn tls(pki: &Pki) -> Result<SyslogReceiver> {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(pki.path("tls.crt"))?
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.path("tls.key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        SyslogReceiver::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Result<SyslogReceiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let frames = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&frames);
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let kept = Arc::clone(&kept);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => read_frames(tcp, kept).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                read_frames(stream, kept).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(SyslogReceiver {
            addr,
            frames,
            _runtime: runtime,
        })
    }

    /// Waits for `n` messages and parses them all.
    pub fn wait_for(&self, n: usize) -> Result<Vec<Syslog>> {
        let frames = wait_until(
            Duration::from_secs(60),
            || {
                format!(
                    "{n} syslog messages; got {:#?}",
                    self.frames.lock().unwrap()
                )
            },
            || {
                let frames = self.frames.lock().unwrap();
                (frames.len() >= n).then(|| frames.clone())
            },
        )?;
        frames.iter().map(|f| parse_5424(f)).collect()
    }
}

/// Octet-counted frames (RFC 6587 3.4.1), `LEN SP MSG`, until the peer
/// closes.
async fn read_frames(stream: impl tokio::io::AsyncRead + Unpin, kept: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut len = Vec::new();
        match reader.read_until(b' ', &mut len).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(n) = std::str::from_utf8(&len[..len.len() - 1])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            kept.lock().unwrap().push(format!(
                "BAD FRAME LENGTH {:?}",
                String::from_utf8_lossy(&len)
            ));
            return;
        };
        let mut msg = vec![0u8; n];
        if reader.read_exact(&mut msg).await.is_err() {
            return;
        }
        kept.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&msg).into_owned());
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID k="v"...] MSG`.
pub fn parse_5424(frame: &str) -> Result<Syslog> {
    let rest = frame
        .strip_prefix('<')
        .with_context(|| format!("no PRI: {frame}"))?;
    let (pri, rest) = rest.split_once('>').context("PRI not closed")?;
    let mut fields = rest.splitn(7, ' ');
    let mut next = |what: &str| {
        fields
            .next()
            .map(str::to_owned)
            .with_context(|| format!("no {what} in {frame}"))
    };
    let version = next("VERSION")?;
    let timestamp = next("TIMESTAMP")?;
    let hostname = next("HOSTNAME")?;
    let app_name = next("APP-NAME")?;
    let procid = next("PROCID")?;
    let msgid = next("MSGID")?;
    let rest = next("STRUCTURED-DATA")?;
    let (sd_id, params, msg) = parse_sd(&rest)?;
    Ok(Syslog {
        pri: pri.parse()?,
        version: version.parse()?,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd_id,
        params,
        msg,
    })
}

/// One SD-ELEMENT with its escapes (`\"`, `\\`, `\]`), then the MSG.
fn parse_sd(s: &str) -> Result<(String, BTreeMap<String, String>, String)> {
    let body = s.strip_prefix('[').context("no structured data")?;
    let (id, mut rest) = body.split_once(' ').context("no SD params")?;
    let mut params = BTreeMap::new();
    loop {
        if let Some(after) = rest.strip_prefix(']') {
            let msg = after.strip_prefix(' ').unwrap_or(after);
            return Ok((id.to_owned(), params, msg.to_owned()));
        }
        let r = rest.trim_start();
        let (name, value) = r.split_once("=\"").context("SD param without =\"")?;
        let mut out = String::new();
        let mut chars = value.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    if let Some((_, c)) = chars.next() {
                        out.push(c);
                    }
                }
                Some((i, '"')) => break i,
                Some((_, c)) => out.push(c),
                None => bail!("SD param value not closed: {s}"),
            }
        };
        params.insert(name.to_owned(), out);
        rest = &value[end + 1..];
    }
}

/// A syslog receiver over TCP that can stop listening, closing every
/// connection it holds (as a receiver restarting does), and listen again
/// on the same port; it keeps the messages of all its lives.
pub struct RestartableSyslog {
    pub addr: SocketAddr,
    frames: Arc<Mutex<Vec<String>>>,
    runtime: tokio::runtime::Runtime,
    serving: Option<JoinSet<()>>,
}

impl RestartableSyslog {
    pub fn start() -> Result<RestartableSyslog> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let mut receiver = RestartableSyslog {
            addr: listener.local_addr()?,
            frames: Arc::default(),
            runtime,
            serving: None,
        };
        receiver.serve(listener);
        Ok(receiver)
    }

    /// Stops listening and closes its connections.
    pub fn down(&mut self) {
        stop_serving(&self.runtime, &mut self.serving);
    }

    /// Listens again on the same port.
    pub fn up(&mut self) -> Result<()> {
        let listener = self.runtime.block_on(TcpListener::bind(self.addr))?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let kept = Arc::clone(&self.frames);
        let mut tasks = JoinSet::new();
        let _guard = self.runtime.enter();
        tasks.spawn(async move {
            // Dropped with this task: `down` closes the connections too.
            let mut open = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                open.spawn(read_frames(tcp, Arc::clone(&kept)));
            }
        });
        self.serving = Some(tasks);
    }

    /// Every message so far, parsed.
    pub fn messages(&self) -> Result<Vec<Syslog>> {
        let frames = self.frames.lock().unwrap().clone();
        frames.iter().map(|f| parse_5424(f)).collect()
    }

    /// Waits until `ready` holds for the messages so far.
    pub fn wait_for<T>(
        &self,
        what: &str,
        mut ready: impl FnMut(&[Syslog]) -> Option<T>,
    ) -> Result<T> {
        wait_until(
            Duration::from_secs(60),
            || format!("{what}; got {:#?}", self.frames.lock().unwrap()),
            || ready(&self.messages().ok()?),
        )
    }
}

// ---------------------------------------------------------------------------
// A recording HTTP proxy in front of a real server.

/// What the proxy does to requests whose path contains a pattern.
#[derive(Default)]
struct ProxyRules {
    delays: Vec<(String, Duration)>,
    failures: Vec<(String, u16)>,
}

#[derive(Default)]
struct ProxyShared {
    /// Path and query of every request, in arrival order.
    seen: Mutex<Vec<String>>,
    rules: Mutex<ProxyRules>,
}

/// A plain-HTTP reverse proxy on loopback in front of an HTTPS server (a
/// real kube-apiserver): records every request's path, and delays or fails
/// the paths it is told to. It exists because a real server will not be
/// slow or answer 500 on demand; everything else is the server's own answer.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    shared: Arc<ProxyShared>,
    _runtime: tokio::runtime::Runtime,
}

impl RecordingProxy {
    /// Forwards to `upstream` (`https://127.0.0.1:PORT`), trusting `ca_pem`.
    pub fn start(upstream: &str, ca_pem: &[u8]) -> Result<RecordingProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let client = driftwatch::http::client_builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca_pem)?)
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(ProxyShared::default());
        let upstream = upstream.trim_end_matches('/').to_owned();
        let state = (Arc::clone(&shared), client, upstream);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (shared, client, upstream) = state.clone();
                        forward(shared, client, upstream, req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RecordingProxy {
            addr,
            shared,
            _runtime: runtime,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds requests whose path contains `pattern` for `delay` first.
    pub fn delay(&self, pattern: &str, delay: Duration) {
        let mut rules = self.shared.rules.lock().unwrap();
        rules.delays.push((pattern.to_owned(), delay));
    }

    /// Answers requests whose path contains `pattern` with `status` itself.
    pub fn fail(&self, pattern: &str, status: u16) {
        let mut rules = self.shared.rules.lock().unwrap();
        rules.failures.push((pattern.to_owned(), status));
    }

    /// Forgets every delay and failure: from now on requests go straight
    /// to the server (requests already held finish their delay).
    pub fn clear(&self) {
        let mut rules = self.shared.rules.lock().unwrap();
        *rules = ProxyRules::default();
    }

    /// Requests so far whose path contains `pattern`.
    pub fn count(&self, pattern: &str) -> usize {
        let seen = self.shared.seen.lock().unwrap();
        seen.iter().filter(|p| p.contains(pattern)).count()
    }

    pub fn seen(&self) -> Vec<String> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn forward(
    shared: Arc<ProxyShared>,
    client: reqwest::Client,
    upstream: String,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    shared.seen.lock().unwrap().push(target.clone());
    let (delay, failure) = {
        let rules = shared.rules.lock().unwrap();
        let delay = rules
            .delays
            .iter()
            .find(|(p, _)| target.contains(p.as_str()));
        let failure = rules
            .failures
            .iter()
            .find(|(p, _)| target.contains(p.as_str()));
        (delay.map(|d| d.1), failure.map(|f| f.1))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let status_only = |code: u16, text: &str| {
        let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
        *r.status_mut() =
            hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
        r
    };
    if let Some(code) = failure {
        return Ok(status_only(code, "injected by the test proxy"));
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut out = client.request(method, format!("{upstream}{target}"));
    for name in ["authorization", "accept", "content-type", "user-agent"] {
        if let Some(v) = req.headers().get(name) {
            out = out.header(name, v.as_bytes());
        }
    }
    let body = req.into_body().collect().await?.to_bytes();
    let answer = match out.body(body.to_vec()).send().await {
        Ok(a) => a,
        Err(e) => return Ok(status_only(502, &e.to_string())),
    };
    let code = answer.status().as_u16();
    let content_type = answer.headers().get("content-type").cloned();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut r = status_only(code, "");
    *r.body_mut() = Full::new(bytes);
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert("content-type", ct.as_bytes().try_into().unwrap());
    }
    Ok(r)
}

/// Ends a receiver's accept loop and, with it, its open connections.
fn stop_serving(runtime: &tokio::runtime::Runtime, serving: &mut Option<JoinSet<()>>) {
    if let Some(mut tasks) = serving.take() {
        runtime.block_on(async {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        });
    }
}
