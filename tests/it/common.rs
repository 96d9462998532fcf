//! Helpers shared by the integration tests: the corpus, the binary, a running
//! service.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

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
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("data"));
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

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` and returns the status code and the response body.
pub fn post(url: &str, body: Vec<u8>) -> Result<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = driftwatch::http::client_builder()
            .build()?
            .post(url)
            .body(body)
            .send()
            .await?;
        let code = r.status().as_u16();
        Ok((code, r.text().await?))
    })
}
