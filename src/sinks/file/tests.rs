use std::fs;

use super::*;
use crate::model::Severity;
use crate::sinks::format::Format;
use crate::sinks::shape::OwnedFinding;
use crate::sinks::testing::{change, reconciled};

fn sink(dir: &Path, max_bytes: Option<u64>, keep: usize, stream: Stream) -> FileSink {
    let mut c = FileSinkConfig::new(dir.join("out/findings.log"));
    c.max_bytes = max_bytes;
    c.keep = keep;
    c.stream = stream;
    let alerts = AlertsConfig {
        fold_window: std::time::Duration::from_secs(2),
        max_drifts: 10,
    };
    FileSink::open(&c, &alerts).unwrap()
}

fn write(s: &mut FileSink, fs: &[OwnedFinding]) {
    let views: Vec<_> = fs.iter().map(OwnedFinding::view).collect();
    s.write(&Batch {
        findings: &views,
        closed: &[],
    })
    .unwrap();
}

/// The ids in `path`, `path.1`... oldest file first.
fn ids(dir: &Path, keep: usize) -> (Vec<String>, Vec<u64>) {
    let path = dir.join("out/findings.log");
    let mut files: Vec<PathBuf> = (1..=keep).rev().map(|n| numbered(&path, n)).collect();
    files.push(path);
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    for f in files.iter().filter(|f| f.exists()) {
        let text = fs::read_to_string(f).unwrap();
        sizes.push(text.len() as u64);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    (ids, sizes)
}

#[test]
fn rotates_by_size_keeping_every_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let one = {
        let mut v = Vec::new();
        format::render_finding(
            Format::Native,
            &change(0, "a", Severity::Low).view(),
            &mut v,
        );
        v.len() as u64 + 1
    };
    // Three findings fit a file, not four.
    let mut s = sink(dir.path(), Some(one * 3 + one / 2), 10, Stream::Findings);
    for n in 0..10 {
        write(&mut s, &[change(n, "a", Severity::Low)]);
    }
    let (got, sizes) = ids(dir.path(), 10);
    let want: Vec<String> = (0..10).map(|n| format!("f-{n}")).collect();
    assert_eq!(got, want, "nothing lost, in order");
    assert_eq!(sizes, [3 * one, 3 * one, 3 * one, one]);
}

#[test]
fn keeps_only_keep_rotated_files_the_oldest_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(dir.path(), Some(4096), 2, Stream::Findings);
    // A batch larger than the limit is split between files, by line.
    for n in 0..5 {
        let batch: Vec<_> = (0..8)
            .map(|i| change(n * 8 + i, "a", Severity::Low))
            .collect();
        write(&mut s, &batch);
    }
    let path = dir.path().join("out/findings.log");
    assert!(numbered(&path, 1).exists() && numbered(&path, 2).exists());
    assert!(!numbered(&path, 3).exists());
    let (got, sizes) = ids(dir.path(), 2);
    assert!(
        sizes.iter().all(|&s| s <= 4096),
        "a line never passes the limit: {sizes:?}"
    );
    // The newest lines survive, in order; only the oldest went.
    let first: u32 = got[0][2..].parse().unwrap();
    let want: Vec<String> = (first..40).map(|n| format!("f-{n}")).collect();
    assert_eq!(got, want);
    assert!(first > 0, "some rotated file was deleted");
}

#[test]
fn never_rotates_without_max_bytes_and_appends_across_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = sink(dir.path(), None, 5, Stream::Findings);
        write(&mut s, &[change(0, "a", Severity::Low)]);
    }
    let mut s = sink(dir.path(), None, 5, Stream::Findings);
    write(&mut s, &[change(1, "a", Severity::Low)]);
    assert_eq!(ids(dir.path(), 5).0, ["f-0", "f-1"]);
    assert!(!numbered(&dir.path().join("out/findings.log"), 1).exists());
}

#[test]
fn the_alerts_stream_writes_alerts_on_write_tick_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/findings.log");
    let kinds = || -> Vec<String> {
        fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let mut s = sink(dir.path(), None, 5, Stream::Alerts);
    write(
        &mut s,
        &(0..5)
            .map(|n| change(n, "a", Severity::Low))
            .collect::<Vec<_>>(),
    );
    assert_eq!(kinds(), ["opened"]);
    s.tick(&Time::from_us(Time::now().us + 3_000_000)).unwrap();
    assert_eq!(kinds(), ["opened", "updated"]);
    write(&mut s, &[change(6, "b", Severity::Low)]);
    s.write(&Batch {
        findings: &[],
        closed: &[reconciled(10)],
    })
    .unwrap();
    assert_eq!(kinds(), ["opened", "updated", "updated", "closed"]);
    write(
        &mut s,
        &[change(0, "a", Severity::Low), change(1, "a", Severity::Low)],
    );
    drop(s);
    assert_eq!(
        kinds().last().map(String::as_str),
        Some("updated"),
        "held updates written at drop"
    );
}
