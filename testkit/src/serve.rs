//! `driftwatch serve` as a child process for the examples: started with
//! its logs drained on a thread (a pipe left unread would stall or fail
//! the service's logging, and the run would measure that), and its base URL
//! read from the line that announces it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// Starts `BIN serve --listen 127.0.0.1:0 --config CONFIG --data-dir
/// DATA`; returns it with its base URL (`http://` or `https://`).
pub fn start(bin: &Path, config: &Path, data: &Path) -> Result<(Child, String)> {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{}: build it with cargo build --release", bin.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(base) = announced(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(base);
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .context("the service did not print its address")?;
    Ok((child, base))
}

/// `https://127.0.0.1:PORT` from "Listening: POST audit batches to
/// https://127.0.0.1:PORT/audit/webhook".
fn announced(line: &str) -> Option<String> {
    let (scheme, rest) = ["https://", "http://"]
        .into_iter()
        .find_map(|s| Some((s, line.split_once(s)?.1)))?;
    let (addr, _) = rest.split_once("/audit/webhook")?;
    Some(format!("{scheme}{addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_address_keeps_its_scheme() {
        let line = "INFO Listening: POST audit batches to https://127.0.0.1:4431/audit/webhook";
        assert_eq!(announced(line).as_deref(), Some("https://127.0.0.1:4431"));
        let line = "INFO Listening: POST audit batches to http://127.0.0.1:80/audit/webhook";
        assert_eq!(announced(line).as_deref(), Some("http://127.0.0.1:80"));
        assert_eq!(announced("INFO Stopped."), None);
    }
}
