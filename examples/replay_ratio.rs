//! `replay` against the floor a JSON parser sets, over the same file in the
//! same run: the ratio the README's performance table gives.
//!
//! ```sh
//! cargo build --release --bin driftwatch --examples
//! target/release/examples/replay_ratio --events 200000 --runs 3
//! ```
//!
//! Writes `--events` synthetic events (`driftwatch_testkit::synth`, 400 to
//! an `EventList`, one list per line) and the stream's policy into `--dir`,
//! then alternates, `--runs` times:
//! - (a) the baseline: the file read and every line parsed by `serde_json`
//!   into `IgnoredAny` (validates, builds nothing) on one thread;
//! - (b) `driftwatch replay --config POLICY FILE` (findings to /dev/null);
//! - (c) the same with `--data-dir` (a fresh SQLite history each run).
//!
//! Prints each run's events/s and (b)/(a), (c)/(a), then the medians.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch_testkit::synth;

struct Args {
    events: usize,
    runs: usize,
    dir: PathBuf,
    binary: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        events: 200_000,
        runs: 3,
        dir: std::env::temp_dir().join("driftwatch-replay-ratio"),
        binary: PathBuf::from("target/release/driftwatch"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--events" => a.events = number()?,
            "--runs" => a.runs = number()?.max(1),
            "--dir" => a.dir = PathBuf::from(&value),
            "--binary" => a.binary = PathBuf::from(&value),
            other => {
                return Err(format!(
                    "unknown flag {other}; flags: --events N --runs N --dir DIR --binary PATH"
                ));
            }
        }
    }
    Ok(a)
}

fn main() -> std::process::ExitCode {
    match args().and_then(|a| run(&a)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replay_ratio: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    let err = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(&a.dir).map_err(err)?;
    let file = a.dir.join("events.jsonl");
    let policy = a.dir.join("policy.yaml");
    std::fs::write(&policy, synth::POLICY_YAML).map_err(err)?;
    write_events(&file, a.events).map_err(err)?;
    let bytes = std::fs::metadata(&file).map_err(err)?.len();
    eprintln!(
        "{} events, {:.1} MB in {}",
        a.events,
        bytes as f64 / 1e6,
        file.display()
    );
    let mut ratios: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 1..=a.runs {
        let bare = bare_parse(&file).map_err(err)?;
        let replay = timed_replay(a, &policy, &file, None)?;
        let store = a.dir.join(format!("store-{run}"));
        let _ = std::fs::remove_dir_all(&store);
        let stored = timed_replay(a, &policy, &file, Some(&store))?;
        let rate = |d: Duration| a.events as f64 / d.as_secs_f64();
        let (r, s) = (
            bare.as_secs_f64() / replay.as_secs_f64(),
            bare.as_secs_f64() / stored.as_secs_f64(),
        );
        println!(
            "run {run}: (a) bare parse {:.0} events/s; (b) replay {:.0} events/s = {r:.2} of (a); \
             (c) replay --data-dir {:.0} events/s = {s:.2} of (a)",
            rate(bare),
            rate(replay),
            rate(stored)
        );
        ratios[0].push(r);
        ratios[1].push(s);
    }
    println!(
        "median of {} runs: replay {:.2} of the bare parse, replay --data-dir {:.2}",
        a.runs,
        median(&mut ratios[0]),
        median(&mut ratios[1])
    );
    Ok(())
}

fn write_events(path: &Path, events: usize) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut generator = synth::Generator::new(synth::DEFAULT_SEED);
    let mut left = events;
    while left > 0 {
        let n = left.min(400);
        out.write_all(&generator.event_list(n))?;
        out.write_all(b"\n")?;
        left -= n;
    }
    out.flush()
}

/// The floor: read the file and validate every line as JSON, building nothing.
fn bare_parse(path: &Path) -> std::io::Result<Duration> {
    let started = Instant::now();
    let bytes = std::fs::read(path)?;
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<serde::de::IgnoredAny>(line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    }
    Ok(started.elapsed())
}

fn timed_replay(
    a: &Args,
    policy: &Path,
    file: &Path,
    store: Option<&Path>,
) -> Result<Duration, String> {
    let mut cmd = Command::new(&a.binary);
    cmd.arg("replay").arg("--config").arg(policy);
    if let Some(dir) = store {
        cmd.arg("--data-dir").arg(dir);
    }
    cmd.arg(file).stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", a.binary.display()))?;
    let took = started.elapsed();
    if !out.status.success() {
        return Err(format!(
            "replay exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
