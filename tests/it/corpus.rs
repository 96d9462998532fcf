//! `driftwatch replay` over the real audit events in `../shared/corpus`
//! (see its PROVENANCE.md): every Kubernetes event decodes, the malformed
//! document is rejected with its file and line, and every finding follows the
//! `driftwatch.finding/v1` contract of DESIGN.md.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::common::{corpus, corpus_dir, run};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The files of plain Kubernetes audit events (no cloud envelopes, no
/// negative cases), sorted.
fn plain_event_files() -> Result<Vec<PathBuf>> {
    let dir = corpus_dir();
    let mut files = Vec::new();
    let all_in = |sub: &str, files: &mut Vec<PathBuf>| -> Result<()> {
        for entry in std::fs::read_dir(dir.join(sub)).with_context(|| format!("listing {sub}"))? {
            let path = entry?.path();
            if path.is_file() {
                files.push(path);
            }
        }
        Ok(())
    };
    for entry in std::fs::read_dir(dir.join("falco-trace-files"))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // fal_01_003.json is the malformed `{"kind": 0}`: a negative case.
        if name.ends_with(".json") && name != "fal_01_003.json" {
            files.push(path);
        }
    }
    all_in("tfk70-audit-exporter", &mut files)?;
    all_in("openshift-cluster-logging-operator", &mut files)?;
    all_in("configbutler-gitops-reverser/eventlists", &mut files)?;
    for rel in [
        "audit2rbac/demo.log",
        "configbutler-gitops-reverser/single_events.jsonl",
        "gcp-khi/oss_entries.jsonl",
        "sysdig-aks-audit-log/sample_KubeAuditLog_event.json",
    ] {
        files.push(dir.join(rel));
    }
    files.sort();
    Ok(files)
}

/// Events in one JSON document: the items of an `EventList`, the elements of
/// an array, or the document itself.
fn events_in(doc: &Value) -> usize {
    match doc {
        Value::Object(o) => match o.get("items") {
            Some(Value::Array(items)) => items.len(),
            _ => 1,
        },
        Value::Array(a) => a.iter().map(events_in).sum(),
        _ => 1,
    }
}

/// How many events a file holds, worked out independently of driftwatch: a
/// whole-file JSON document (pretty-printed Event, EventList), or else one
/// document per non-empty line.
fn expected_events(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path)?;
    let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    if let Ok(doc) = serde_json::from_slice::<Value>(bytes) {
        return Ok(events_in(&doc));
    }
    let text = std::str::from_utf8(bytes)?;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let doc: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        n += events_in(&doc);
    }
    Ok(n)
}

/// The event count of the replay summary on stderr ("..., N events, ...").
fn summary_events(stderr: &str) -> Option<u64> {
    let re = regex::Regex::new(r"\b(\d+) events\b").ok()?;
    let caps = stderr.lines().rev().find_map(|l| re.captures(l))?;
    caps[1].parse().ok()
}

/// `2026-11-20T10:00:00.123456Z`, the finding's time format.
fn rfc3339_micros(time: &str) -> bool {
    regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
        .is_ok_and(|re| re.is_match(time))
        && time.parse::<jiff::Timestamp>().is_ok()
}

/// Every field of the finding contract, with its type; an empty list means
/// the finding conforms.
fn contract_problems(f: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    let str_or_null = |v: &Value| v.is_string() || v.is_null();
    let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));

    need(f["schema"] == "driftwatch.finding/v1", "schema");
    // `time` may be empty: some hand-written fixtures carry no timestamp.
    need(f["time"].is_string(), "time is a string");
    for key in ["id", "cluster", "audit_id", "verb"] {
        need(
            f[key].as_str().is_some_and(|s| !s.is_empty()),
            &format!("{key} is a non-empty string"),
        );
    }
    need(f["request_uri"].is_string(), "request_uri is a string");
    need(
        matches!(
            f["type"].as_str(),
            Some(
                "pipeline_impersonation"
                    | "pipeline_credential_misuse"
                    | "user_agent_spoofing"
                    | "interactive_access"
                    | "out_of_band_change"
            )
        ),
        "type is one of the five finding types",
    );
    need(
        matches!(
            f["severity"].as_str(),
            Some("low" | "medium" | "high" | "critical")
        ),
        "severity is low|medium|high|critical",
    );

    let r = &f["resource"];
    need(r.is_object(), "resource is an object");
    for key in ["group", "version", "resource"] {
        need(r[key].is_string(), &format!("resource.{key} is a string"));
    }
    for key in ["subresource", "namespace", "name", "uid"] {
        let present = r.get(key).is_some_and(str_or_null);
        need(
            present,
            &format!("resource.{key} is present (string or null)"),
        );
    }

    let a = &f["actor"];
    need(a.is_object(), "actor is an object");
    need(a["username"].is_string(), "actor.username is a string");
    need(strings(&a["groups"]), "actor.groups is a list of strings");
    need(
        strings(&a["source_ips"]),
        "actor.source_ips is a list of strings",
    );
    for key in ["uid", "user_agent", "client", "field_manager"] {
        let present = a.get(key).is_some_and(str_or_null);
        need(present, &format!("actor.{key} is present (string or null)"));
    }
    let imp = a.get("impersonated_by");
    need(
        imp.is_some_and(|i| i.is_null() || (i["username"].is_string() && strings(&i["groups"]))),
        "actor.impersonated_by is null or {username, groups}",
    );

    need(
        f["reasons"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(Value::is_string)),
        "reasons is a non-empty list of strings",
    );
    need(f["changes"].is_array(), "changes is a list");
    need(
        f.get("pipeline").is_some_and(str_or_null),
        "pipeline is present",
    );
    need(
        f.get("drift").is_some_and(|d| d.is_null() || d.is_object()),
        "drift is present (object or null)",
    );
    problems
}

/// Parses stdout as findings; every line must be one conforming finding.
fn findings_of(stdout: &str, source: &str) -> Result<Vec<Value>> {
    let mut findings = Vec::new();
    for (i, line) in stdout.lines().enumerate() {
        let f: Value = serde_json::from_str(line)
            .with_context(|| format!("{source}: stdout line {} is not JSON: {line}", i + 1))?;
        let problems = contract_problems(&f);
        ensure!(
            problems.is_empty(),
            "{source}: stdout line {} breaks the finding contract ({}): {line}",
            i + 1,
            problems.join("; ")
        );
        findings.push(f);
    }
    Ok(findings)
}

fn audit_id_of(rel: &str) -> Result<String> {
    let doc: Value = serde_json::from_slice(&std::fs::read(corpus(rel))?)?;
    doc["auditID"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{rel} has no auditID"))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("corpus path is not UTF-8")
}

#[test]
fn every_plain_kubernetes_file_replays_cleanly() -> Result<()> {
    let files = plain_event_files()?;
    // 46 falco files and 1 + 7 + 8 + 4 others: a listing that went wrong would
    // make this test vacuous.
    ensure!(files.len() >= 60, "only {} corpus files found", files.len());
    let mut failures = Vec::new();
    let mut total_events = 0;
    for path in &files {
        let shown = path.display().to_string();
        let expected = expected_events(path)?;
        total_events += expected;
        // Placeholder times are no times: the events decode once real ones
        // stand in for them (the file as it is: see below).
        let filled = with_placeholder_times_filled(path)?;
        let replayed = filled.as_ref().map_or(path.as_path(), |f| f.path());
        let out = run(&["replay", path_str(replayed)?], None)?;
        if out.code != 0 {
            failures.push(format!("{shown}: exit {}: {}", out.code, out.stderr));
            continue;
        }
        match summary_events(&out.stderr) {
            Some(n) if n == expected as u64 => {}
            other => failures.push(format!(
                "{shown}: summary counts {other:?} events, the file holds {expected}: {}",
                out.stderr
            )),
        }
        match findings_of(&out.stdout, &shown) {
            Ok(findings) if findings.len() <= expected => {
                // Real captures carry real timestamps: RFC 3339, UTC, with
                // microseconds. GitOps-Reverser's fixtures may carry none or
                // a placeholder such as `<ts>` (PROVENANCE).
                if !shown.contains("configbutler-gitops-reverser") {
                    for f in &findings {
                        let time = f["time"].as_str().unwrap_or("");
                        if !rfc3339_micros(time) {
                            failures.push(format!("{shown}: finding time {time:?}"));
                        }
                    }
                }
            }
            Ok(findings) => failures.push(format!(
                "{shown}: {} findings from {expected} events",
                findings.len()
            )),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    // PROVENANCE: audit_in.log alone holds 100 events; the plain files
    // together hold well over 200.
    ensure!(
        total_events > 200,
        "only {total_events} events in the corpus"
    );
    Ok(())
}

/// GitOps-Reverser's mutation-lab events hold `<ts>` where times belong
/// (PROVENANCE).
const PLACEHOLDER_TIME: &str = "\"<ts>\"";

/// A copy of `path` with a real time for every placeholder, if it has any.
fn with_placeholder_times_filled(path: &Path) -> Result<Option<tempfile::NamedTempFile>> {
    let text = std::fs::read_to_string(path)?;
    if !text.contains(PLACEHOLDER_TIME) {
        return Ok(None);
    }
    let filled = text.replace(PLACEHOLDER_TIME, "\"2025-12-03T09:26:48.504655Z\"");
    Ok(Some(crate::common::temp_file(".jsonl", &filled)?))
}

#[test]
fn placeholder_times_are_rejected_with_their_line() -> Result<()> {
    let path = corpus("configbutler-gitops-reverser/single_events.jsonl");
    let text = std::fs::read_to_string(&path)?;
    let placeholders: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(PLACEHOLDER_TIME))
        .map(|(i, _)| i + 1)
        .collect();
    ensure!(placeholders.len() >= 10, "{placeholders:?}");
    let shown = path_str(&path)?;
    let out = run(&["replay", shown], None)?;
    ensure!(out.code == 1, "exit {}: {}", out.code, out.stderr);
    let rejected: Vec<usize> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix(shown)?.strip_prefix(':'))
        .filter(|l| l.contains("Timestamp \"<ts>\" is not an RFC 3339 time"))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect();
    // The first 20 are listed by line, the rest counted.
    let listed = placeholders.len().min(20);
    ensure!(
        rejected == placeholders[..listed],
        "{rejected:?} {placeholders:?}\n{}",
        out.stderr
    );
    let events = summary_events(&out.stderr).context("summary")?;
    ensure!(
        events as usize == expected_events(&path)? - placeholders.len(),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn falco_exec_is_one_interactive_access_by_minikube_user() -> Result<()> {
    let path = corpus("falco-trace-files/exec_pod.json");
    let out = run(&["replay", path_str(&path)?], None)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let findings = findings_of(&out.stdout, "exec_pod.json")?;
    assert_eq!(findings.len(), 1, "{}", out.stdout);
    let f = &findings[0];
    assert_eq!(f["type"], "interactive_access", "{f}");
    // DESIGN: interactive access is high.
    assert_eq!(f["severity"], "high", "{f}");
    assert_eq!(f["actor"]["username"], "minikube-user", "{f}");
    assert_eq!(f["audit_id"], "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6", "{f}");
    assert_eq!(f["verb"], "create", "{f}");
    assert_eq!(f["resource"]["resource"], "pods", "{f}");
    assert_eq!(f["resource"]["subresource"], "exec", "{f}");
    assert_eq!(f["resource"]["namespace"], "default", "{f}");
    assert_eq!(
        f["resource"]["name"], "nginx-deployment-7998647bdf-phvq7",
        "{f}"
    );
    assert_eq!(
        f["actor"]["source_ips"],
        serde_json::json!(["192.168.99.1"]),
        "{f}"
    );
    assert_eq!(f["actor"]["impersonated_by"], Value::Null, "{f}");
    assert_eq!(f["pipeline"], Value::Null, "{f}");
    Ok(())
}

#[test]
fn malformed_falco_document_is_rejected_with_file_and_line() -> Result<()> {
    let path = corpus("falco-trace-files/fal_01_003.json");
    let shown = path_str(&path)?;
    let out = run(&["replay", shown], None)?;
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(&format!("{shown}:1:"))
                || (l.contains(shown) && l.contains("line 1"))),
        "stderr names neither the file nor line 1: {}",
        out.stderr
    );
    assert_eq!(summary_events(&out.stderr), Some(0), "{}", out.stderr);
    Ok(())
}

#[test]
fn a_bad_file_among_good_ones_still_yields_their_findings() -> Result<()> {
    let exec = corpus("falco-trace-files/exec_pod.json");
    let bad = corpus("falco-trace-files/fal_01_003.json");
    let secret = corpus("falco-trace-files/create_secret.json");
    let out = run(
        &[
            "replay",
            path_str(&exec)?,
            path_str(&bad)?,
            path_str(&secret)?,
        ],
        None,
    )?;
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    assert!(out.stderr.contains(path_str(&bad)?), "{}", out.stderr);
    let findings = findings_of(&out.stdout, "three files")?;
    let ids: Vec<&str> = findings
        .iter()
        .filter_map(|f| f["audit_id"].as_str())
        .collect();
    let expected = [
        audit_id_of("falco-trace-files/exec_pod.json")?,
        audit_id_of("falco-trace-files/create_secret.json")?,
    ];
    for id in &expected {
        assert!(
            ids.contains(&id.as_str()),
            "no finding for {id}: {}",
            out.stdout
        );
    }
    assert_eq!(findings.len(), 2, "{}", out.stdout);
    assert_eq!(summary_events(&out.stderr), Some(2), "{}", out.stderr);
    Ok(())
}

#[test]
fn stdin_is_replayed_like_the_file() -> Result<()> {
    let path = corpus("openshift-cluster-logging-operator/audit_in.log");
    let bytes = std::fs::read(&path)?;
    let expected = expected_events(&path)?;
    let from_stdin = run(&["replay", "-"], Some(&bytes))?;
    assert_eq!(from_stdin.code, 0, "{}", from_stdin.stderr);
    assert_eq!(
        summary_events(&from_stdin.stderr),
        Some(expected as u64),
        "{}",
        from_stdin.stderr
    );
    let from_file = run(&["replay", path_str(&path)?], None)?;
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);

    let stdin_findings = findings_of(&from_stdin.stdout, "<stdin>")?;
    let file_findings = findings_of(&from_file.stdout, "audit_in.log")?;
    // The log holds an `oc exec` and writes by people: it is not silent.
    ensure!(!stdin_findings.is_empty(), "no findings from audit_in.log");
    let ids = |fs: &[Value]| -> Vec<String> {
        fs.iter()
            .filter_map(|f| f["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(&stdin_findings), ids(&file_findings));
    Ok(())
}

#[test]
fn pretty_printed_file_with_bom_replays() -> Result<()> {
    let path = corpus("sysdig-aks-audit-log/sample_KubeAuditLog_event.json");
    let bytes = std::fs::read(&path)?;
    ensure!(
        bytes.starts_with(BOM),
        "the sample was expected to start with a BOM"
    );
    ensure!(
        bytes.iter().filter(|&&b| b == b'\n').count() > 10,
        "expected a pretty-printed file"
    );

    let out = run(&["replay", path_str(&path)?], None)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(summary_events(&out.stderr), Some(1), "{}", out.stderr);
    findings_of(&out.stdout, "sample_KubeAuditLog_event.json")?;

    let out = run(&["replay", "-"], Some(&bytes))?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(summary_events(&out.stderr), Some(1), "{}", out.stderr);

    // The same shape with an event that must be flagged: BOM, then falco's
    // exec event pretty-printed.
    let exec: Value =
        serde_json::from_slice(&std::fs::read(corpus("falco-trace-files/exec_pod.json"))?)?;
    let dir = tempfile::tempdir()?;
    let pretty = dir.path().join("exec_pretty.json");
    let mut body = BOM.to_vec();
    body.extend_from_slice(serde_json::to_string_pretty(&exec)?.as_bytes());
    body.push(b'\n');
    std::fs::write(&pretty, &body)?;
    let out = run(&["replay", path_str(&pretty)?], None)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let findings = findings_of(&out.stdout, "exec_pretty.json")?;
    assert_eq!(findings.len(), 1, "{}", out.stdout);
    assert_eq!(findings[0]["type"], "interactive_access");
    assert_eq!(findings[0]["actor"]["username"], "minikube-user");
    Ok(())
}

#[test]
fn missing_file_exits_1_and_names_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-such-audit.log");
    let shown = path_str(&missing)?;
    let out = run(&["replay", shown], None)?;
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    assert!(out.stderr.contains(shown), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty());
    Ok(())
}

#[test]
fn usage_and_config_errors_exit_2() -> Result<()> {
    let exec = corpus("falco-trace-files/exec_pod.json");
    let out = run(&["replay", "--no-such-flag", path_str(&exec)?], None)?;
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("driftwatch.yaml");
    std::fs::write(&config, "clustr: typo\n")?;
    let out = run(
        &["replay", "--config", path_str(&config)?, path_str(&exec)?],
        None,
    )?;
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    if out.stderr.trim().is_empty() {
        bail!("a config error exits without saying why");
    }
    Ok(())
}
