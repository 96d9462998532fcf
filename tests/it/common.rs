//! Helpers shared by the integration tests, and only here: the corpus, the
//! binary, a running service, HTTP to it, bounded waits, and audit events
//! written the way the API server writes them, with real user agents,
//! field managers and groups.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use driftwatch_testkit::gojson;
use driftwatch_testkit::time::{rfc3339_micros, utc};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// `../shared/corpus`: real audit events written by others.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

pub fn corpus(rel: &str) -> PathBuf {
    corpus_dir().join(rel)
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_driftwatch"))
}

/// Output of a finished `driftwatch` command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Findings printed on stdout, parsed.
    pub fn findings(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON: {e}: {l}"))
            })
            .collect()
    }
}

/// Runs `driftwatch ARGS...` with `stdin` piped in, and waits for it.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Result<Run> {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning driftwatch")?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().context("stdin")?;
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output()?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A `driftwatch serve` process on a free loopback port, with its findings
/// (stdout) and logs (stderr) collected.
pub struct Service {
    pub child: Child,
    pub base: String,
    pub findings: Arc<Mutex<Vec<String>>>,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service with `config` (YAML) or the embedded defaults.
    pub fn start(config: Option<&str>) -> Result<Service> {
        Service::start_in(tempfile::tempdir()?, config)
    }

    /// Starts the service in `dir`, with `DIR/data` as its data directory:
    /// a directory handed back by [`Service::stop_keeping_dir`] (a restart
    /// on the same history store) or filled by `replay --data-dir`.
    pub fn start_in(dir: tempfile::TempDir, config: Option<&str>) -> Result<Service> {
        Service::start_at(dir, config, "127.0.0.1:0")
    }

    /// [`Service::start_in`] on a given address: a restart that the API
    /// server's webhook configuration must find again.
    pub fn start_at(dir: tempfile::TempDir, config: Option<&str>, listen: &str) -> Result<Service> {
        let data = dir.path().join("data");
        Service::start_with(dir, config, listen, &data)
    }

    /// Starts the service with its history in `data` (a directory on a
    /// [`LoopFs`], say); `DIR` holds only its config.
    pub fn start_on(data: &std::path::Path, config: Option<&str>) -> Result<Service> {
        Service::start_with(tempfile::tempdir()?, config, "127.0.0.1:0", data)
    }

    fn start_with(
        dir: tempfile::TempDir,
        config: Option<&str>,
        listen: &str,
        data: &std::path::Path,
    ) -> Result<Service> {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data);
        if let Some(yaml) = config {
            let path = dir.path().join("driftwatch.yaml");
            std::fs::write(&path, yaml)?;
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning driftwatch serve")?;
        let findings = Arc::new(Mutex::new(Vec::new()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        {
            let findings = Arc::clone(&findings);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    findings.lock().unwrap().push(line);
                }
            });
        }
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    for scheme in ["https://", "http://"] {
                        if let Some(rest) = line.split(scheme).nth(1)
                            && let Some(addr) = rest.split("/audit/webhook").next()
                        {
                            let _ = addr_tx.send(format!("{scheme}{addr}"));
                            break;
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "service did not report its address; logs: {:?}",
                    logs.lock().unwrap()
                );
            }
        };
        Ok(Service {
            child,
            base: addr,
            findings,
            logs,
            dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Findings emitted so far, parsed.
    pub fn findings(&self) -> Vec<serde_json::Value> {
        self.findings
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON: {e}: {l}"))
            })
            .collect()
    }

    /// Waits (10 s at most) until at least `n` findings are out, and returns
    /// them all. The service writes findings before it answers `200`; the
    /// test reads its stdout on another thread, which may lag a little.
    pub fn wait_for_findings(&self, n: usize) -> Result<Vec<Value>> {
        let what = || format!("{n} finding(s) on stdout, found {:#?}", self.findings());
        wait_until(Duration::from_secs(10), what, || {
            let found = self.findings();
            (found.len() >= n).then_some(found)
        })
    }

    /// Waits (10 s at most) for the finding of `audit_id`.
    pub fn wait_for_finding(&self, audit_id: &str) -> Result<Value> {
        let what = || format!("a finding for {audit_id} on stdout");
        wait_until(Duration::from_secs(10), what, || {
            self.findings()
                .into_iter()
                .find(|f| f["audit_id"] == audit_id)
        })
    }

    /// A field of the service's `/proc/PID/status`, in KiB: `VmHWM` is its
    /// peak resident memory, `VmRSS` the current. Memory bounds are asserted
    /// on these, never on time.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(self.child.id(), field)
    }

    /// Log lines (stderr) so far that contain `needle`.
    pub fn logs_with(&self, needle: &str) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits (10 s at most) for a log line containing `needle`: stderr is
    /// read on a thread of its own, so a line logged before an answer may
    /// be read after it.
    pub fn wait_for_log(&self, needle: &str) -> Result<Vec<String>> {
        let what = || format!("a log line with {needle:?}");
        wait_until(Duration::from_secs(10), what, || {
            Some(self.logs_with(needle)).filter(|l| !l.is_empty())
        })
    }

    /// Bytes of log (stderr) so far, newlines included.
    pub fn log_bytes(&self) -> usize {
        self.logs.lock().unwrap().iter().map(|l| l.len() + 1).sum()
    }

    /// The `--data-dir` the service runs with.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub fn stop(mut self) -> Result<i32> {
        self.terminate()
    }

    /// Like [`Service::stop`], but hands the directory back (it is deleted
    /// otherwise), for [`Service::start_in`].
    pub fn stop_keeping_dir(mut self) -> Result<(i32, tempfile::TempDir)> {
        let code = self.terminate()?;
        // `Service` implements `Drop`, so the field cannot be moved out;
        // swap in an empty directory for the drop to delete.
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        Ok((code, dir))
    }

    /// SIGKILL: no shutdown, no flush; hands the directory back for
    /// [`Service::start_in`].
    pub fn kill_keeping_dir(mut self) -> Result<tempfile::TempDir> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(std::mem::replace(&mut self.dir, tempfile::tempdir()?))
    }

    fn terminate(&mut self) -> Result<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("service did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A field of `/proc/PID/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Waiting, bounded.

/// Polls `ready` every 10 ms until it gives a value, for `timeout` at most;
/// then fails with `what` (called once, at the end). It blocks the calling
/// thread: in an async test that is the test's own runtime, which runs
/// nothing the wait depends on (the service is another process, and its
/// output is read on threads of its own).
pub fn wait_until<T>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    mut ready: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("waited {timeout:?} for {}", what());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// HTTP to the service.

/// No proxy, and a timeout long enough for the biggest bodies the tests send.
pub fn client() -> Result<reqwest::Client> {
    Ok(driftwatch::http::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()?)
}

/// The status of an answer and its body, which the service always writes as
/// JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
}

/// Sends `req`; the answer's body must be JSON. `what` names the request in
/// errors (`POST /audit/webhook`).
pub async fn send(req: reqwest::RequestBuilder, what: &str) -> Result<Answer> {
    let resp = req.send().await.with_context(|| what.to_owned())?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let json = serde_json::from_str(&text).with_context(|| {
        format!("{what} answered {status} with a body that is not JSON: {text:.500}")
    })?;
    Ok(Answer { status, json })
}

/// `Content-Encoding: gzip`, for [`post_bytes`].
pub const GZIP: &[(&str, &str)] = &[("Content-Encoding", "gzip")];

/// POSTs `body` as JSON to `path`, with extra `headers`.
pub async fn post_bytes(
    svc: &Service,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<Answer> {
    let mut req = client()?
        .post(svc.url(path))
        .header("Content-Type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req, &format!("POST {path}")).await
}

pub async fn post_json(svc: &Service, path: &str, body: &Value) -> Result<Answer> {
    post_bytes(svc, path, serde_json::to_vec(body)?, &[]).await
}

/// Posts `events` as one webhook batch; returns the answer once it is
/// `200` (the batch is durably accepted).
pub async fn post_events(svc: &Service, events: &[&Ev]) -> Result<Value> {
    let list = event_list(events.iter().map(|e| e.item()));
    let answer = post_json(svc, "/audit/webhook", &list).await?;
    ensure!(
        answer.status == 200,
        "webhook answered {}: {}",
        answer.status,
        answer.json
    );
    Ok(answer.json)
}

pub async fn get_json(svc: &Service, path: &str) -> Result<Answer> {
    send(client()?.get(svc.url(path)), &format!("GET {path}")).await
}

/// The body of a `GET` that must answer `200`.
pub async fn get_ok(svc: &Service, path: &str) -> Result<Value> {
    let a = get_json(svc, path).await?;
    ensure!(a.status == 200, "GET {path}: {} {}", a.status, a.json);
    Ok(a.json)
}

/// Status and text of a `GET` (`/metrics`, `/healthz`).
pub async fn get_text(svc: &Service, path: &str) -> Result<(u16, String)> {
    let resp = client()?.get(svc.url(path)).send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// The sum of a metric's series in `/metrics` whose labels contain
/// `labels`; `None` while the metric does not exist yet.
pub async fn metric(svc: &Service, name: &str, labels: &str) -> Result<Option<f64>> {
    let (_, text) = get_text(svc, "/metrics").await?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    Ok((!values.is_empty()).then(|| values.iter().sum()))
}

/// A throwaway runtime, for tests that are not async.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// POSTs `body`, blocking; returns the status code and the response body.
pub fn post(url: &str, body: Vec<u8>) -> Result<(u16, String)> {
    block_on(async {
        let r = client()?.post(url).body(body).send().await?;
        let code = r.status().as_u16();
        Ok((code, r.text().await?))
    })
}

/// GETs `url`, blocking; returns the body.
pub fn blocking_get(url: &str) -> Result<String> {
    block_on(async { Ok(client()?.get(url).send().await?.text().await?) })
}

// ---------------------------------------------------------------------------
// The service as a process: its memory and its metrics.

/// The `host:port` the service listens on.
pub fn addr(svc: &Service) -> String {
    svc.base
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_owned()
}

// ---------------------------------------------------------------------------
// HTTP by hand: requests a client library would never send (a body that
// stalls, a byte at a time), answers read off the socket.

/// One HTTP/1.1 connection on a raw socket.
pub struct RawHttp {
    read: tokio::net::tcp::OwnedReadHalf,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl RawHttp {
    pub async fn connect(addr: &str) -> Result<RawHttp> {
        let (read, write) = tokio::net::TcpStream::connect(addr).await?.into_split();
        Ok(RawHttp { read, write })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        Ok(self.write.write_all(bytes).await?)
    }

    /// The next answer: its status and its body, which must be JSON.
    pub async fn response(&mut self) -> Result<Answer> {
        read_answer(&mut self.read).await
    }

    /// Sends `bytes` one at a time, one every `every`, until the answer
    /// comes; the answer, and how many bytes went out before it.
    pub async fn trickle(&mut self, bytes: &[u8], every: Duration) -> Result<(Answer, usize)> {
        use tokio::io::AsyncWriteExt;
        let RawHttp { read, write } = self;
        let answer = read_answer(read);
        tokio::pin!(answer);
        let mut sent = 0;
        for b in bytes {
            let one = async {
                write.write_all(std::slice::from_ref(b)).await?;
                tokio::time::sleep(every).await;
                anyhow::Ok(())
            };
            tokio::select! {
                a = &mut answer => return Ok((a?, sent)),
                r = one => { r?; sent += 1; }
            }
        }
        Ok((answer.await?, sent))
    }
}

/// The status and `Content-Length` of an HTTP/1.1 response head.
pub fn response_head(head: &[u8]) -> Result<(u16, Option<usize>)> {
    let head = String::from_utf8_lossy(head);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    Ok((status, length))
}

/// An HTTP/1.1 answer read off a socket.
async fn read_answer(read: &mut tokio::net::tcp::OwnedReadHalf) -> Result<Answer> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = read.read(&mut byte).await?;
        ensure!(n == 1, "connection closed inside a response head: {buf:?}");
        buf.push(byte[0]);
    }
    let (status, length) = response_head(&buf)?;
    let length = length.with_context(|| format!("no content-length in {buf:?}"))?;
    let mut body = vec![0u8; length];
    read.read_exact(&mut body).await?;
    let json = serde_json::from_slice(&body).with_context(|| {
        format!(
            "answered {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok(Answer { status, json })
}

/// The head of a webhook POST of `length` bytes, with `headers` (each line
/// `Name: value`).
pub fn webhook_head(addr: &str, length: usize, headers: &[&str]) -> String {
    let mut head = format!(
        "POST /audit/webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// An HTTP/2 connection with prior knowledge (h2c), for the streams of
/// one connection.
/// The connection has the server's SETTINGS once one answer came: until
/// then a client assumes no stream limit, and the streams it opens past the
/// server's are refused (`REFUSED_STREAM`) instead of queued.
pub async fn h2c(addr: &str) -> Result<h2::client::SendRequest<bytes::Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (send, connection) = h2::client::handshake(tcp).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send.ready().await?;
    let probe = axum::http::Request::get(format!("http://{addr}/healthz")).body(())?;
    let (response, _) = send.send_request(probe, true)?;
    let status = response.await?.status();
    ensure!(status.is_success(), "GET /healthz over HTTP/2: {status}");
    Ok(send.ready().await?)
}

/// A webhook POST opened on an HTTP/2 connection, its body not ended.
pub fn h2_webhook_post(addr: &str, headers: &[(&str, &str)]) -> Result<axum::http::Request<()>> {
    let mut req = axum::http::Request::post(format!("http://{addr}/audit/webhook"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Ok(req.body(())?)
}

/// The status and JSON body of an HTTP/2 answer.
pub async fn h2_answer(response: h2::client::ResponseFuture) -> Result<Answer> {
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let json = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "answered {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    Ok(Answer { status, json })
}

// ---------------------------------------------------------------------------
// Bodies.

pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

/// `line` repeated `times` times, gzipped as a stream: megabytes of
/// repetition in kilobytes, without holding the plain text.
pub fn gzip_repeated(line: &[u8], times: usize) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = line.repeat((1 << 16) / line.len().max(1) + 1);
    let per_chunk = chunk.len() / line.len().max(1);
    let mut left = times;
    while left > 0 {
        let n = left.min(per_chunk);
        enc.write_all(&chunk[..n * line.len()])?;
        left -= n;
    }
    Ok(enc.finish()?)
}

/// Gzip of `inflated` spaces without its last 8 bytes (the CRC and the
/// size): a decoder inflates all of it, then waits for the end. About 16 KB
/// for 16 MiB: what one stalled upload makes a server hold, at most.
pub fn gzip_without_trailer(inflated: usize) -> Result<Vec<u8>> {
    let mut body = gzip(&vec![b' '; inflated])?;
    body.truncate(body.len() - 8);
    Ok(body)
}

/// The `audit_id`s of findings.
pub fn audit_ids(findings: &[Value]) -> BTreeSet<String> {
    findings
        .iter()
        .filter_map(|f| f["audit_id"].as_str().map(str::to_owned))
        .collect()
}

/// The paths of a finding's `changes`, in order.
pub fn change_paths(f: &Value) -> Vec<String> {
    strings_at(f, "changes", "path")
}

/// The rules of a finding's `risks`, in order.
pub fn risk_rules(f: &Value) -> Vec<String> {
    strings_at(f, "risks", "rule")
}

fn strings_at(f: &Value, list: &str, key: &str) -> Vec<String> {
    f[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item[key].as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------------------
// Audit events as the API server writes them.

// Clients and identities as real clusters show them.
pub const KUBECTL: &str = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46";
pub const ARGOCD_SA: &str = "system:serviceaccount:argocd:argocd-application-controller";
pub const ARGOCD_UA: &str = "argocd-application-controller/v2.13.1 (linux/amd64)";
pub const ALICE: &str = "alice@example.com";
pub const ALICE_GROUPS: &[&str] = &["oidc:shop-devs", "system:authenticated"];

/// The sanctioned pipeline most tests run with: Argo CD's application
/// controller, in cluster `prod-eu-1`.
pub const ARGOCD_CONFIG: &str = driftwatch_testkit::crash::CONFIG;

thread_local! {
    /// Numbers the events a test builds. Per thread, and libtest runs each
    /// test on a thread of its own: a test builds the same events on every
    /// run, so its findings (ids, times) are the same too.
    static SEQ: Cell<u32> = const { Cell::new(1) };
}

/// One audit event, `audit.k8s.io/v1`, as the log backend writes it.
#[derive(Clone, Debug)]
pub struct Ev(pub Value);

impl Ev {
    /// A completed request by alice with kubectl, from her laptop. The n-th
    /// event a test builds was received at 2026-11-20T10:00:00Z plus n
    /// seconds (and a fraction), so no two share a request key. `objectRef`
    /// is derived from the URI the way the API server fills it in, and the
    /// response code is what it answers for the verb (101 for connect
    /// upgrades).
    pub fn new(verb: &str, uri: &str) -> Ev {
        let n = SEQ.with(|s| s.replace(s.get() + 1));
        let at = utc(2026, 11, 20, 10) + SignedDuration::from_secs(i64::from(n));
        let object_ref = object_ref(uri);
        let code = match (verb, object_ref["subresource"].as_str()) {
            (_, Some("exec" | "attach" | "portforward")) => 101,
            ("create", _) => 201,
            _ => 200,
        };
        Ev(json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": format!("4f6c1d2e-8a3b-4c5d-9e7f-{n:012x}"),
            "stage": "ResponseComplete",
            "requestURI": uri,
            "verb": verb,
            "user": {"username": ALICE, "groups": ALICE_GROUPS},
            "sourceIPs": ["192.168.10.24"],
            "userAgent": KUBECTL,
            "objectRef": object_ref,
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": rfc3339_micros(at + SignedDuration::from_micros(123_456)),
            "stageTimestamp": rfc3339_micros(at + SignedDuration::from_micros(131_072)),
            "annotations": {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"shop-devs\""
            }
        }))
    }

    /// [`Ev::new`], its response written at `time` (its `stageTimestamp`).
    pub fn at(verb: &str, uri: &str, time: Timestamp) -> Ev {
        let received = time - SignedDuration::from_micros(8_431);
        Ev::new(verb, uri)
            .received_at(&rfc3339_micros(received))
            .stage_at(&rfc3339_micros(time))
    }

    /// The authenticated (real) user.
    pub fn by(mut self, username: &str, groups: &[&str]) -> Ev {
        self.0["user"] = json!({"username": username, "groups": groups});
        self
    }

    /// A service account token, as a projected token in a pod presents it.
    pub fn by_sa(mut self, namespace: &str, name: &str, pod: &str) -> Ev {
        self.0["user"] = json!({
            "username": format!("system:serviceaccount:{namespace}:{name}"),
            "uid": "9d4f3c2a-61b7-4e0f-8a5d-2c7e1b9f0a34",
            "groups": sa_groups(namespace),
            "extra": {
                "authentication.kubernetes.io/node-name": ["worker-2"],
                "authentication.kubernetes.io/pod-name": [pod],
                "authentication.kubernetes.io/pod-uid": ["0b7c9e1d-3f2a-4c6b-8e5d-7a1f9c3b2e60"]
            }
        });
        self
    }

    /// The Argo CD application controller, with its projected token, its
    /// user agent and its pod's address.
    pub fn by_argocd(self) -> Ev {
        let mut e = self
            .by_sa(
                "argocd",
                "argocd-application-controller",
                "argocd-application-controller-0",
            )
            .ua(ARGOCD_UA)
            .source_ips(&["10.244.3.17"]);
        e.0["annotations"]["authorization.k8s.io/reason"] =
            json!("RBAC: allowed by ClusterRoleBinding \"argocd-application-controller\"");
        e
    }

    /// `Impersonate-User` (and the groups the API server resolved for it).
    pub fn impersonating(mut self, username: &str, groups: &[String]) -> Ev {
        self.0["impersonatedUser"] = json!({"username": username, "groups": groups});
        self
    }

    pub fn ua(mut self, user_agent: &str) -> Ev {
        self.0["userAgent"] = json!(user_agent);
        self
    }

    pub fn source_ips(mut self, ips: &[&str]) -> Ev {
        self.0["sourceIPs"] = json!(ips);
        self
    }

    pub fn stage(mut self, stage: &str) -> Ev {
        self.0["stage"] = json!(stage);
        if stage == "RequestReceived" {
            // Nothing is answered yet: no status, and the stage time is the
            // receive time.
            if let Some(o) = self.0.as_object_mut() {
                o.remove("responseStatus");
            }
            self.0["stageTimestamp"] = self.0["requestReceivedTimestamp"].clone();
        }
        self
    }

    pub fn stage_at(mut self, ts: &str) -> Ev {
        self.0["stageTimestamp"] = json!(ts);
        self
    }

    pub fn received_at(mut self, ts: &str) -> Ev {
        self.0["requestReceivedTimestamp"] = json!(ts);
        self
    }

    pub fn audit_id(mut self, id: &str) -> Ev {
        self.0["auditID"] = json!(id);
        self
    }

    /// `objectRef.name` of a create, which the API server fills in from
    /// the object in the body.
    pub fn named(mut self, name: &str) -> Ev {
        self.0["objectRef"]["name"] = json!(name);
        self
    }

    /// The response code; a failure comes with the Status the API server
    /// answers.
    pub fn code(mut self, code: u16) -> Ev {
        if code < 400 {
            self.0["responseStatus"] = json!({"metadata": {}, "code": code});
            return self;
        }
        let reason = match code {
            403 => "Forbidden",
            404 => "NotFound",
            409 => "AlreadyExists",
            422 => "Invalid",
            _ => "InternalError",
        };
        self.0["responseStatus"] = json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("request failed: {reason}"),
            "reason": reason,
            "code": code
        });
        if code == 403 {
            self.0["annotations"]["authorization.k8s.io/decision"] = json!("forbid");
        }
        self
    }

    /// The request body; the event is then logged at `RequestResponse`.
    pub fn body(mut self, body: Value) -> Ev {
        self.0["level"] = json!("RequestResponse");
        self.0["requestObject"] = body;
        self
    }

    /// The object after the change (`RequestResponse` level).
    pub fn response(mut self, object: Value) -> Ev {
        self.0["level"] = json!("RequestResponse");
        self.0["responseObject"] = object;
        self
    }

    /// The request body (the patch, or the whole object) and the object
    /// after the change.
    pub fn bodies(self, request: Value, response: Value) -> Ev {
        self.body(request).response(response)
    }

    pub fn id(&self) -> String {
        self.0["auditID"].as_str().unwrap_or("").to_owned()
    }

    pub fn time(&self) -> Timestamp {
        self.0["stageTimestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("events carry a stage time")
    }

    /// One JSON line as the log backend writes it: Go's encoder escapes
    /// `&` (in query strings), `<` and `>`.
    pub fn line(&self) -> String {
        gojson::to_string(&self.0)
    }

    /// An `EventList` item: the webhook backend leaves out kind/apiVersion.
    pub fn item(&self) -> Value {
        let mut v = self.0.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("kind");
            o.remove("apiVersion");
        }
        v
    }
}

/// `objectRef` for a request URI, as the API server's request info parses
/// it: `/api/v1` is the core group, `/apis/GROUP/VERSION` any other; after
/// `namespaces/NS` comes `RESOURCE[/NAME[/SUBRESOURCE]]`, except that for
/// `/api/v1/namespaces/NS` itself the resource is `namespaces`, the name NS
/// and the namespace NS too (as real audit logs show).
pub fn object_ref(uri: &str) -> Value {
    let path = uri.split('?').next().unwrap_or(uri);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, mut rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", version, rest),
        ["apis", group, version, rest @ ..] => (group, version, rest),
        _ => ("", "", &[]),
    };
    let mut r = json!({"apiVersion": version});
    if let ["namespaces", ns, tail @ ..] = rest {
        r["namespace"] = json!(ns);
        if !tail.is_empty() && !matches!(tail[0], "status" | "finalize") {
            rest = tail;
        }
    }
    if let Some(resource) = rest.first() {
        r["resource"] = json!(resource);
    }
    if let Some(name) = rest.get(1) {
        r["name"] = json!(name);
    }
    if let Some(sub) = rest.get(2) {
        r["subresource"] = json!(sub);
    }
    if !group.is_empty() {
        r["apiGroup"] = json!(group);
    }
    r
}

/// The groups of a service account of `namespace`.
pub fn sa_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_owned(),
    ]
}

/// A webhook batch of `items` (see [`Ev::item`]).
pub fn event_list(items: impl IntoIterator<Item = Value>) -> Value {
    json!({
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": items.into_iter().collect::<Vec<_>>()
    })
}

// ---------------------------------------------------------------------------
// A real control plane: `scripts/kube-dev-cluster` (Kubernetes 1.20.2 built
// from Debian's sources, started on loopback; `scripts/test` installs it).

/// `scripts/kube-dev-cluster` in this checkout.
pub fn kube_dev_cluster() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kube-dev-cluster")
}

/// `key=value` (or `KEY=value`) lines of the script's `pki` and `env`.
fn key_values(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

fn script(args: &[&str]) -> Result<String> {
    let out = Command::new(kube_dev_cluster())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running scripts/kube-dev-cluster")?;
    if !out.status.success() {
        bail!(
            "scripts/kube-dev-cluster {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The webhook credentials and the certificates driftwatch serves with.
pub fn kube_pki(name: &str) -> Result<std::collections::BTreeMap<String, String>> {
    Ok(key_values(&script(&["pki", "--name", name])?))
}

/// A running control plane whose audit webhook points at a driftwatch.
pub struct Cluster {
    pub name: String,
    env: std::collections::BTreeMap<String, String>,
}

impl Cluster {
    /// Starts instance `name` afresh (empty etcd) with its webhook at
    /// `webhook_url`; `extra` are more `start` options.
    pub fn start(
        name: &str,
        port_offset: u16,
        webhook_url: &str,
        extra: &[&str],
    ) -> Result<Cluster> {
        let offset = port_offset.to_string();
        let mut args = vec![
            "start",
            "--fresh",
            "--name",
            name,
            "--port-offset",
            &offset,
            "--webhook-url",
            webhook_url,
        ];
        args.extend(extra);
        script(&args)?;
        let env = key_values(&script(&["env", "--name", name])?)
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("KUBE_DEV_CLUSTER_")?.to_owned(), v)))
            .collect();
        Ok(Cluster {
            name: name.to_owned(),
            env,
        })
    }

    pub fn env(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    pub fn audit_log(&self) -> PathBuf {
        PathBuf::from(self.env("AUDIT_LOG"))
    }

    /// A token user's bearer token (admin, alice, bob, argocd, flux, ci-deployer).
    pub fn token(&self, user: &str) -> Result<String> {
        let path = PathBuf::from(self.env("PKI_DIR")).join(format!("tokens/{user}.token"));
        Ok(std::fs::read_to_string(&path)
            .with_context(|| path.display().to_string())?
            .trim()
            .to_owned())
    }

    /// Real kubectl as `user`, with `stdin` and extra environment.
    pub fn kubectl_with(
        &self,
        user: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        envs: &[(&str, &str)],
    ) -> Result<Run> {
        use std::io::Write;
        let kubeconfig =
            PathBuf::from(self.env("KUBECONFIG_DIR")).join(format!("{user}.kubeconfig"));
        let mut child = Command::new(self.env("KUBECTL"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .envs(envs.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning kubectl")?;
        if let Some(input) = stdin {
            child.stdin.take().context("stdin")?.write_all(input)?;
        }
        let out = child.wait_with_output()?;
        Ok(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// kubectl as `user`; fails unless it exits 0.
    pub fn kubectl(&self, user: &str, args: &[&str]) -> Result<String> {
        let run = self.kubectl_with(user, args, None, &[])?;
        ensure!(
            run.code == 0,
            "kubectl {} as {user}: exit {}: {}",
            args.join(" "),
            run.code,
            run.stderr
        );
        Ok(run.stdout)
    }

    /// A request with a chosen user agent, as an Argo CD or Flux controller
    /// makes it: `method path` with a JSON `body` and `content_type`.
    pub fn request(
        &self,
        user: &str,
        user_agent: &str,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<(u16, Value)> {
        let token = self.token(user)?;
        let ca = std::fs::read(self.env("CA"))?;
        let url = format!("{}{path}", self.env("SERVER"));
        block_on(async move {
            let client = driftwatch::http::client_builder()
                .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca)?)
                .user_agent(user_agent)
                .build()?;
            let r = client
                .request(method, &url)
                .bearer_auth(token)
                .header("Content-Type", content_type)
                .body(serde_json::to_vec(body)?)
                .send()
                .await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            Ok((
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ))
        })
    }

    /// The API server's own metrics, as admin.
    pub fn metrics(&self) -> Result<String> {
        self.kubectl("admin", &["get", "--raw", "/metrics"])
    }

    /// The sum of a counter's series whose labels contain `labels`.
    pub fn counter(&self, name: &str, labels: &str) -> Result<f64> {
        Ok(self
            .metrics()?
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script(&["stop", "--name", &self.name]);
    }
}

// ---------------------------------------------------------------------------
// `driftwatch replay` of built events, with its summary line.

/// The stderr summary line of `replay` (see `print_summary` in main.rs).
#[derive(Debug, Default)]
pub struct Summary {
    pub line: String,
    pub documents: u64,
    pub events: u64,
    pub mutations: u64,
    pub deduplicated: u64,
    pub ignored: u64,
    pub system: u64,
    pub sanctioned: u64,
    pub drift: u64,
    pub allowed: u64,
    pub findings: u64,
    pub rejected: u64,
}

impl Summary {
    pub fn parse(stderr: &str) -> Result<Summary> {
        let line = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("replayed "))
            .with_context(|| format!("no summary line on stderr: {stderr}"))?;
        let digits = |s: &str| -> Result<u64> {
            let d: String = s.chars().take_while(char::is_ascii_digit).collect();
            d.parse()
                .with_context(|| format!("no number at {s:?} in {line:?}"))
        };
        let after = |key: &str| -> Result<u64> {
            let at = line
                .find(key)
                .with_context(|| format!("{key:?} missing in {line:?}"))?;
            digits(&line[at + key.len()..])
        };
        let before = |word: &str| -> Result<u64> {
            let at = line
                .find(word)
                .with_context(|| format!("{word:?} missing in {line:?}"))?;
            let head = line[..at].trim_end();
            digits(head.rsplit([' ', '(']).next().unwrap_or(""))
        };
        Ok(Summary {
            line: line.to_owned(),
            documents: before(" documents")?,
            events: before(" events")?,
            mutations: before(" mutations")?,
            deduplicated: before(" deduplicated")?,
            ignored: after("ignored=")?,
            system: after("system=")?,
            sanctioned: after("sanctioned=")?,
            drift: after("drift=")?,
            allowed: after("allowed=").unwrap_or(0),
            findings: after("findings: ")?,
            rejected: after("rejected: ")?,
        })
    }

    /// The per-type count; types with no finding are not listed.
    pub fn of_type(&self, finding_type: &str) -> u64 {
        let key = format!("{finding_type}=");
        self.line.find(&key).map_or(0, |at| {
            self.line[at + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
    }

    /// (ignored, system, sanctioned, drift)
    pub fn verdicts(&self) -> (u64, u64, u64, u64) {
        (self.ignored, self.system, self.sanctioned, self.drift)
    }
}

pub struct Replay {
    pub run: Run,
    pub findings: Vec<Value>,
    pub summary: Summary,
}

impl Replay {
    /// The one finding of the run.
    pub fn only(&self) -> Result<&Value> {
        match self.findings.as_slice() {
            [f] => Ok(f),
            other => bail!(
                "expected exactly one finding, got {}: {}\n{}",
                other.len(),
                self.run.stdout,
                self.summary.line
            ),
        }
    }

    /// The finding whose actor (effective user) is `username`.
    pub fn by_actor(&self, username: &str) -> Result<&Value> {
        self.findings
            .iter()
            .find(|f| f["actor"]["username"] == username)
            .with_context(|| format!("no finding for {username}: {}", self.run.stdout))
    }

    pub fn types(&self) -> Vec<&str> {
        self.findings
            .iter()
            .map(|f| f["type"].as_str().unwrap_or(""))
            .collect()
    }
}

/// `driftwatch replay --config CONFIG ARGS...` with `stdin`; checks the run
/// was clean (exit 0, nothing rejected, one finding line per drift).
pub fn replay_args(config: &str, args: &[&str], stdin: &str) -> Result<Replay> {
    let file = temp_file(".yaml", config)?;
    let path = file.path().to_str().context("temp path is not UTF-8")?;
    let mut argv = vec!["replay", "--config", path];
    argv.extend_from_slice(args);
    let run = run(&argv, Some(stdin.as_bytes()))?;
    ensure!(
        run.code == 0,
        "replay exited {}: {}\n{}",
        run.code,
        run.stderr,
        run.stdout
    );
    let summary = Summary::parse(&run.stderr)?;
    ensure!(summary.rejected == 0, "rejections: {}", run.stderr);
    let findings = run.findings();
    ensure!(
        findings.len() as u64 == summary.findings && summary.findings == summary.drift,
        "stdout has {} findings, summary says {}",
        findings.len(),
        summary.line
    );
    for f in &findings {
        ensure!(f["schema"] == "driftwatch.finding/v1", "schema: {f}");
    }
    Ok(Replay {
        run,
        findings,
        summary,
    })
}

/// A file holding `text`, deleted when dropped.
pub fn temp_file(suffix: &str, text: &str) -> Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("driftwatch-")
        .suffix(suffix)
        .tempfile()?;
    file.write_all(text.as_bytes())?;
    file.flush()?;
    Ok(file)
}

/// `events` as an audit log file (JSON lines).
pub fn log_file(events: &[Ev]) -> Result<tempfile::NamedTempFile> {
    let text: String = events.iter().map(|e| e.line() + "\n").collect();
    temp_file(".jsonl", &text)
}

/// The testkit's hour of add-on traffic (default seed) written to
/// `DIR/addon-hour.jsonl`, and each labelled attack's `(name, auditID)`.
pub fn addon_hour_log(dir: &std::path::Path) -> Result<(PathBuf, Vec<(String, String)>)> {
    use driftwatch_testkit::addons;
    let events = addons::hour(driftwatch_testkit::synth::DEFAULT_SEED);
    let path = dir.join("addon-hour.jsonl");
    let mut text = String::new();
    let mut attacks = Vec::new();
    for e in &events {
        text.push_str(&e.json);
        text.push('\n');
        if let Some(name) = e.attack {
            let v: Value = serde_json::from_str(&e.json)?;
            ensure!(
                v["annotations"][addons::ATTACK_ANNOTATION] == name,
                "attack {name} is labelled"
            );
            let id = v["auditID"].as_str().context("an attack without auditID")?;
            attacks.push((name.to_owned(), id.to_owned()));
        }
    }
    std::fs::write(&path, text)?;
    ensure!(
        attacks.len() == addons::ATTACKS.len(),
        "attacks: {attacks:?}"
    );
    Ok((path, attacks))
}

/// Replays `events` as JSON lines on stdin.
pub fn replay(config: &str, events: &[Ev]) -> Result<Replay> {
    let input: String = events.iter().map(|e| e.line() + "\n").collect();
    let r = replay_args(config, &["-"], &input)?;
    ensure!(
        r.summary.events == events.len() as u64,
        "events: {}",
        r.summary.line
    );
    Ok(r)
}

/// Replays one event that must be drift with one finding of `finding_type`
/// and `severity`; returns that finding.
pub fn single_finding(
    config: &str,
    event: Ev,
    finding_type: &str,
    severity: &str,
) -> Result<Value> {
    let r = replay(config, &[event])?;
    ensure!(
        r.summary.verdicts() == (0, 0, 0, 1),
        "expected drift: {}",
        r.summary.line
    );
    ensure!(
        r.summary.of_type(finding_type) == 1,
        "summary: {}",
        r.summary.line
    );
    let f = r.only()?.clone();
    ensure!(f["type"] == finding_type, "type: {f}");
    ensure!(f["severity"] == severity, "severity: {f}");
    Ok(f)
}

/// Replays events that must all be ignored: no findings, no mutations.
pub fn all_ignored(config: &str, events: &[Ev]) -> Result<Replay> {
    let r = replay(config, events)?;
    let n = events.len() as u64;
    ensure!(
        r.summary.verdicts() == (n, 0, 0, 0) && r.summary.mutations == 0,
        "expected all {n} ignored: {}",
        r.summary.line
    );
    ensure!(r.findings.is_empty(), "findings: {}", r.run.stdout);
    Ok(r)
}

// ---------------------------------------------------------------------------
// A filesystem of its own, for storage faults.

/// A small ext4 filesystem in an image file, loop-mounted at [`LoopFs::mount`]:
/// files on it can be made immutable (`chattr +i`), it can be filled up, its
/// files deleted under a running service. Unmounted, detached and deleted
/// on drop, a failing test included. Needs root and util-linux/e2fsprogs
/// (`losetup`, `mount`, `mkfs.ext4`, `chattr`); without them it fails and
/// says so, it never skips.
pub struct LoopFs {
    pub mount: PathBuf,
    device: String,
    /// Holds the image and the mount point.
    dir: tempfile::TempDir,
}

fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (the storage fault tests need it)"))?;
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl LoopFs {
    pub fn new(megabytes: u64) -> Result<LoopFs> {
        ensure!(
            sh("id", &["-u"])? == "0",
            "the storage fault tests loop-mount a filesystem and make files immutable: \
             run them as root (losetup, mount, mkfs.ext4 and chattr are needed)"
        );
        let dir = tempfile::tempdir()?;
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)?.set_len(megabytes * 1024 * 1024)?;
        let image = image.to_str().context("utf-8 path")?.to_owned();
        sh("mkfs.ext4", &["-q", "-F", &image])?;
        let device = sh("losetup", &["--find", "--show", &image])?;
        // From here on, dropping `fs` detaches the device.
        let mut fs = LoopFs {
            mount: dir.path().join("mnt"),
            device,
            dir,
        };
        std::fs::create_dir(&fs.mount)?;
        let mount = fs.mount.to_str().context("utf-8 path")?.to_owned();
        if let Err(e) = sh("mount", &[&fs.device, &mount]) {
            fs.mount = PathBuf::new();
            return Err(e);
        }
        Ok(fs)
    }

    /// `chattr +i` (`on`) or `-i` on `path`.
    pub fn immutable(&self, path: &std::path::Path, on: bool) -> Result<()> {
        let path = path.to_str().context("utf-8 path")?;
        sh("chattr", &[if on { "+i" } else { "-i" }, path]).map(drop)
    }

    /// Fills the filesystem with `path` until no block is left (root's
    /// reserved blocks included).
    pub fn fill(&self, path: &std::path::Path) -> Result<u64> {
        let mut f = std::fs::File::create(path)?;
        let mut written = 0u64;
        for chunk in [1 << 20, 4096, 512] {
            let block = vec![0u8; chunk];
            while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {
                written += chunk as u64;
            }
        }
        Ok(written)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if !self.mount.as_os_str().is_empty() {
            let mount = self.mount.to_string_lossy().into_owned();
            // Immutable files would outlive the test in the image only; a
            // busy mount (a service still running) is detached lazily.
            let _ = sh("chattr", &["-R", "-i", &mount]);
            if sh("umount", &[&mount]).is_err() {
                let _ = sh("umount", &["-l", &mount]);
            }
        }
        let _ = sh("losetup", &["-d", &self.device]);
        // `dir`, the image in it, goes after this.
    }
}

// ---------------------------------------------------------------------------
// Test certificates.

/// A CA (`ca.crt`), a server certificate for 127.0.0.1 and localhost
/// (`tls.crt`, `tls.key`), client certificates by common name
/// (`kube-apiserver-prod-eu-1.crt`...), and one from another CA (`rogue`).
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Result<Pki> {
        let dir = tempfile::tempdir()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "driftwatch test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
        std::fs::write(dir.path().join("ca.crt"), ca.pem())?;

        let mut server =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate()?;
        let cert = server.signed_by(&key, &ca)?;
        std::fs::write(dir.path().join("tls.crt"), cert.pem())?;
        std::fs::write(dir.path().join("tls.key"), key.serialize_pem())?;

        // The third is in no `client_clusters` entry.
        for cn in [
            "kube-apiserver-prod-eu-1",
            "kube-apiserver-prod-us-2",
            "kube-apiserver-unmapped",
        ] {
            let mut client = rcgen::CertificateParams::new(Vec::<String>::new())?;
            client
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let key = rcgen::KeyPair::generate()?;
            let cert = client.signed_by(&key, &ca)?;
            std::fs::write(dir.path().join(format!("{cn}.crt")), cert.pem())?;
            std::fs::write(dir.path().join(format!("{cn}.key")), key.serialize_pem())?;
        }
        // A client certificate from a CA the server does not trust.
        let mut rogue_ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        rogue_ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let rogue_ca =
            rcgen::CertifiedIssuer::self_signed(rogue_ca_params, rcgen::KeyPair::generate()?)?;
        let mut rogue = rcgen::CertificateParams::new(Vec::<String>::new())?;
        rogue
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver-prod-eu-1");
        rogue.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate()?;
        let cert = rogue.signed_by(&key, &rogue_ca)?;
        std::fs::write(dir.path().join("rogue.crt"), cert.pem())?;
        std::fs::write(dir.path().join("rogue.key"), key.serialize_pem())?;
        Ok(Pki { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

// ---------------------------------------------------------------------------
// An Argo CD-managed Deployment through its life: the controller creates
// it, people `kubectl edit` it, the controller's next sync puts Git's spec
// back. Each write is one event with the patch and the object after it, at
// `RequestResponse`, as the audit policy in deploy/ logs writes.

/// A Deployment of the Argo CD application `shop`, and what Git says it is.
#[derive(Clone, Debug)]
pub struct ArgoDeployment {
    pub ns: String,
    pub name: String,
    replicas: u64,
    image: String,
    env: Vec<(String, String)>,
    privileged: bool,
    resource_version: u64,
    generation: u64,
    /// Field managers, in the order they first wrote.
    managers: Vec<&'static str>,
    /// When the next event happens; each write moves it on a second.
    clock: Timestamp,
}

/// Git's spec of every [`ArgoDeployment`].
const GIT_REPLICAS: u64 = 3;

impl ArgoDeployment {
    /// Not created yet; its first event happens at `start`.
    pub fn new(ns: &str, name: &str, start: Timestamp) -> ArgoDeployment {
        ArgoDeployment {
            ns: ns.to_owned(),
            name: name.to_owned(),
            replicas: GIT_REPLICAS,
            image: Self::git_image(name),
            env: Vec::new(),
            privileged: false,
            resource_version: 48_213,
            generation: 1,
            managers: vec!["argocd-controller"],
            clock: start,
        }
    }

    fn git_image(name: &str) -> String {
        format!("registry.example.com/shop/{name}:1.8.3")
    }

    fn uri(&self, query: &str) -> String {
        format!(
            "/apis/apps/v1/namespaces/{}/deployments/{}?{query}",
            self.ns, self.name
        )
    }

    fn tick(&mut self) -> Timestamp {
        let t = self.clock;
        self.clock = t + SignedDuration::from_secs(1);
        self.resource_version += 17;
        self.generation += 1;
        t
    }

    /// The object as the API server returns it after a write.
    pub fn object(&self) -> Value {
        let managed: Vec<Value> = self
            .managers
            .iter()
            .map(|m| {
                json!({
                    "manager": m,
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2026-11-20T09:10:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}}
                })
            })
            .collect();
        let mut container = json!({
            "name": "app",
            "image": self.image,
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}
        });
        if !self.env.is_empty() {
            container["env"] = self
                .env
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
        }
        if self.privileged {
            container["securityContext"] = json!({"privileged": true});
        }
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": self.name,
                "namespace": self.ns,
                "uid": "3f9a1c5e-7b2d-4e8f-a6c1-9d0b2e4f6a81",
                "resourceVersion": self.resource_version.to_string(),
                "generation": self.generation,
                "creationTimestamp": "2026-11-20T09:10:00Z",
                "labels": {"app.kubernetes.io/name": self.name, "app.kubernetes.io/part-of": "shop"},
                "annotations": {
                    "argocd.argoproj.io/tracking-id":
                        format!("shop:apps/Deployment:{}/{}", self.ns, self.name)
                },
                "managedFields": managed
            },
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": self.name}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": self.name}},
                    "spec": {"containers": [container]}
                },
                "revisionHistoryLimit": 10
            }
        })
    }

    /// Argo CD creates it from Git.
    pub fn create(&mut self) -> Ev {
        let at = self.tick();
        let mut manifest = self.object();
        if let Some(meta) = manifest["metadata"].as_object_mut() {
            for k in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
            ] {
                meta.remove(k);
            }
        }
        Ev::at(
            "create",
            &format!(
                "/apis/apps/v1/namespaces/{}/deployments?fieldManager=argocd-controller",
                self.ns
            ),
            at,
        )
        .by_argocd()
        .named(&self.name)
        .bodies(manifest, self.object())
    }

    /// alice's `kubectl edit`: a strategic merge patch of what she changed.
    fn edit(&mut self, patch: Value) -> Ev {
        let at = self.tick();
        if !self.managers.contains(&"kubectl-edit") {
            self.managers.push("kubectl-edit");
        }
        Ev::at(
            "patch",
            &self.uri("fieldManager=kubectl-edit&fieldValidation=Strict"),
            at,
        )
        .bodies(patch, self.object())
    }

    /// `kubectl edit` of `spec.replicas`.
    pub fn edit_replicas(&mut self, replicas: u64) -> Ev {
        self.replicas = replicas;
        self.edit(json!({"spec": {"replicas": replicas}}))
    }

    /// `kubectl edit` of one environment variable of the `app` container.
    pub fn edit_env(&mut self, name: &str, value: &str) -> Ev {
        match self.env.iter_mut().find(|(k, _)| k == name) {
            Some(e) => e.1 = value.to_owned(),
            None => self.env.push((name.to_owned(), value.to_owned())),
        }
        self.edit(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "env": [{"name": name, "value": value}]}]
        }}}}))
    }

    /// `kubectl edit` of the `app` container's image.
    pub fn edit_image(&mut self, tag: &str) -> Ev {
        self.image = format!("registry.example.com/shop/{}:{tag}", self.name);
        let image = self.image.clone();
        self.edit(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "image": image}]
        }}}}))
    }

    /// `kubectl edit` that makes the `app` container privileged.
    pub fn edit_privileged(&mut self) -> Ev {
        self.privileged = true;
        self.edit(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "securityContext": {"privileged": true}}]
        }}}}))
    }

    /// Argo CD's next sync: Git's spec applied again, every drifted field
    /// back in the object after it.
    pub fn sync(&mut self) -> Ev {
        let at = self.tick();
        self.replicas = GIT_REPLICAS;
        self.image = Self::git_image(&self.name);
        self.env.clear();
        self.privileged = false;
        let spec = self.object()["spec"].clone();
        Ev::at("patch", &self.uri("fieldManager=argocd-controller"), at)
            .by_argocd()
            .bodies(json!({ "spec": spec }), self.object())
    }
}

/// A start for a test's events: an hour ago, on a whole second, so that
/// retention (which runs at start-up) keeps them and times read well.
pub fn an_hour_ago() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() - 3600).unwrap_or(Timestamp::UNIX_EPOCH)
}

// ---------------------------------------------------------------------------
// Files a sink writes.

/// The JSON lines of `path` so far (none while it does not exist).
pub fn json_lines_of(path: &std::path::Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l}")))
        .collect()
}

/// Waits (30 s at most) until `path` holds at least `n` JSON lines.
pub fn wait_for_lines(path: &std::path::Path, n: usize) -> Result<Vec<Value>> {
    wait_until(
        Duration::from_secs(30),
        || {
            format!(
                "{n} line(s) in {}: {:#?}",
                path.display(),
                json_lines_of(path)
            )
        },
        || json_lines_of(path).ok().filter(|l| l.len() >= n),
    )
}

// ---------------------------------------------------------------------------
// The repo's own scripts (scripts/helm-dev, scripts/pack-image), as a user
// runs them from the checkout.

/// Runs `scripts/NAME ARGS...` from the repo root; any exit code is returned.
pub fn repo_script(name: &str, args: &[&str]) -> Result<Run> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts").join(name))
        .args(args)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running scripts/{name}"))?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Every YAML document of `text` (a manifest stream), empty ones left out.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).context("parsing YAML documents")?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}
