//! Cloud envelopes (issue 4, item 3), end to end through `replay` and the
//! webhook, on the real corpus: AKS Event Hub batches and single records,
//! GKE Cloud Audit Logs entries, Panther's EKS/AKS/GKE fixtures, and
//! CloudWatch Logs subscription payloads built from real events, plain,
//! gzip-compressed and base64-encoded. Expected counts are worked out here
//! from the files, independently of driftwatch.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{Answer, Run, Service, audit_ids, corpus, gzip, post_bytes, run};

const BOM: &[u8] = b"\xEF\xBB\xBF";

// ---------------------------------------------------------------------------
// Helpers.

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("path is not UTF-8")
}

fn replay(path: &Path) -> Result<Run> {
    run(&["replay", path_str(path)?], None)
}

/// A count from the replay summary on stderr, e.g. `events` in "22 events"
/// or `rejected` in "rejected: 9".
fn summary(stderr: &str, what: &str) -> Option<u64> {
    let re = match what {
        "rejected" => regex::Regex::new(r"rejected: (\d+)").ok()?,
        _ => regex::Regex::new(&format!(r"\b(\d+) {what}\b")).ok()?,
    };
    let line = stderr.lines().rev().find(|l| l.starts_with("replayed "))?;
    re.captures(line)?[1].parse().ok()
}

/// The lines of a JSON-lines file, parsed (independently of driftwatch).
fn json_lines(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

fn findings(out: &Run) -> Vec<Value> {
    out.findings()
}

/// Stderr lines of rejections in `file`, as (line, message).
fn rejections(stderr: &str, file: &str) -> Vec<(usize, String)> {
    let prefix = format!("{file}:");
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (line, message) = rest.split_once(": ")?;
            Some((line.parse().ok()?, message.to_owned()))
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// Whether an AKS diagnostic record holds an audit event (independently of
/// driftwatch's rules: the categories AKS documents for audit logs, and not
/// the placeholder for a dropped event).
fn aks_audit_record(r: &Value) -> bool {
    matches!(
        r["category"].as_str(),
        Some("kube-audit" | "kube-audit-admin")
    ) && r["properties"]["log"] != json!("skipped-too-big-size-object")
}

/// Whether a Cloud Logging entry is a Kubernetes audit entry.
fn gke_kubernetes_entry(e: &Value) -> bool {
    let p = &e["protoPayload"];
    match p["serviceName"].as_str() {
        Some(s) => s == "k8s.io",
        None => p["methodName"]
            .as_str()
            .is_some_and(|m| m.starts_with("io.k8s.")),
    }
}

/// A CloudWatch Logs subscription payload carrying `messages`.
fn subscription(message_type: &str, messages: &[&str]) -> Value {
    json!({
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/eks/prod-eu-1/cluster",
        "logStream": "kube-apiserver-audit-5e1f0c9b2a7d4e3f",
        "subscriptionFilters": ["driftwatch"],
        "logEvents": messages.iter().enumerate().map(|(i, m)| json!({
            "id": format!("37{i:054}"),
            "timestamp": 1_700_000_000_000u64 + i as u64,
            "message": m,
        })).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------
// AKS.

#[test]
fn aks_event_hub_batch_and_single_record_replay() -> Result<()> {
    let batch = corpus("sysdig-aks-audit-log/event.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&batch)?)?;
    let records = doc["records"].as_array().context("no records")?;
    let expected = records.iter().filter(|r| aks_audit_record(r)).count();
    ensure!(
        expected == 22,
        "PROVENANCE: 22 events in the batch, found {expected}"
    );
    let out = replay(&batch)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        summary(&out.stderr, "events"),
        Some(expected as u64),
        "{}",
        out.stderr
    );
    assert_eq!(summary(&out.stderr, "documents"), Some(1), "{}", out.stderr);

    // One record, not wrapped in `records`, pretty-printed after a BOM.
    let single = corpus("sysdig-aks-audit-log/sample_EventHubs_event.json");
    let bytes = std::fs::read(&single)?;
    ensure!(
        bytes.starts_with(BOM),
        "the sample was expected to start with a BOM"
    );
    let out = replay(&single)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(summary(&out.stderr, "events"), Some(1), "{}", out.stderr);
    let from_stdin = run(&["replay", "-"], Some(&bytes))?;
    assert_eq!(from_stdin.code, 0, "{}", from_stdin.stderr);
    assert_eq!(summary(&from_stdin.stderr, "events"), Some(1));
    Ok(())
}

#[test]
fn aks_dropped_and_foreign_records_are_rejected_without_hiding_the_rest() -> Result<()> {
    let doc: Value =
        serde_json::from_slice(&std::fs::read(corpus("sysdig-aks-audit-log/event.json"))?)?;
    let mut records = doc["records"].as_array().context("no records")?.clone();
    let real = records.len();
    let mut skipped = records[0].clone();
    skipped["properties"]["log"] = json!("skipped-too-big-size-object");
    let mut apiserver = records[1].clone();
    apiserver["category"] = json!("kube-apiserver");
    apiserver["properties"]["log"] = json!("I0505 16:16:37.655912       1 trace.go:116] Trace[1]");
    records.insert(3, skipped);
    records.push(apiserver);
    let dir = tempfile::tempdir()?;
    let body = format!("{}\n", json!({ "records": records }));
    let path = write(dir.path(), "batch.json", body.as_bytes())?;
    let shown = path_str(&path)?;

    let out = replay(&path)?;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        summary(&out.stderr, "events"),
        Some(real as u64),
        "{}",
        out.stderr
    );
    assert_eq!(summary(&out.stderr, "rejected"), Some(2), "{}", out.stderr);
    let rejected = rejections(&out.stderr, shown);
    assert_eq!(
        rejected,
        [
            (
                1,
                "records[3]: AKS skipped an oversized event (skipped-too-big-size-object)"
                    .to_owned()
            ),
            (
                1,
                format!(
                    "records[{}]: AKS record of category \"kube-apiserver\" is not an audit \
                     record (kube-audit or kube-audit-admin)",
                    real + 1
                )
            ),
        ],
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn aks_record_whose_log_is_an_object_yields_findings() -> Result<()> {
    let exec: Value =
        serde_json::from_slice(&std::fs::read(corpus("falco-trace-files/exec_pod.json"))?)?;
    let secret: Value = serde_json::from_slice(&std::fs::read(corpus(
        "falco-trace-files/create_secret.json",
    ))?)?;
    let template: Value = serde_json::from_slice(
        std::fs::read(corpus("sysdig-aks-audit-log/sample_EventHubs_event.json"))?
            .strip_prefix(BOM)
            .context("BOM")?,
    )?;
    let mut as_object = template.clone();
    as_object["properties"]["log"] = exec.clone();
    let mut as_string = template.clone();
    as_string["category"] = json!("kube-audit-admin");
    as_string["properties"]["log"] = json!(secret.to_string());
    let dir = tempfile::tempdir()?;
    // A single record with an object log, then a batch mixing both.
    let body = format!(
        "{}\n{}\n",
        serde_json::to_string_pretty(&as_object)?,
        json!({"records": [as_string]})
    );
    let path = write(dir.path(), "aks.json", body.as_bytes())?;
    let out = replay(&path)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(summary(&out.stderr, "events"), Some(2), "{}", out.stderr);
    let found = findings(&out);
    assert_eq!(found.len(), 2, "{}", out.stdout);
    assert_eq!(found[0]["type"], "interactive_access", "{}", found[0]);
    assert_eq!(found[0]["actor"]["username"], "minikube-user");
    assert_eq!(found[0]["audit_id"], exec["auditID"]);
    assert_eq!(found[1]["audit_id"], secret["auditID"]);
    assert_eq!(found[1]["resource"]["resource"], "secrets");
    Ok(())
}

#[test]
fn panther_azure_fixtures_all_decode() -> Result<()> {
    let path = corpus("panther-analysis/azure_monitor_kube_audit.jsonl");
    let lines = json_lines(&path)?;
    let expected = lines.iter().filter(|r| aks_audit_record(r)).count();
    ensure!(
        expected == lines.len() && expected > 30,
        "{expected} of {}",
        lines.len()
    );
    let out = replay(&path)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        summary(&out.stderr, "events"),
        Some(expected as u64),
        "{}",
        out.stderr
    );
    assert_eq!(summary(&out.stderr, "rejected"), Some(0));
    ensure!(
        !findings(&out).is_empty(),
        "detection fixtures, yet no findings"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// EKS.

#[test]
fn panther_eks_fixtures_all_decode() -> Result<()> {
    let path = corpus("panther-analysis/k8s_audit_event.jsonl");
    let lines = json_lines(&path)?;
    ensure!(lines.len() == 188, "{} fixtures", lines.len());
    // Most are hand-written without auditID or stage: see Event::complete.
    let without_id = lines.iter().filter(|l| l.get("auditID").is_none()).count();
    ensure!(without_id > 100, "{without_id}");
    let out = replay(&path)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        summary(&out.stderr, "events"),
        Some(lines.len() as u64),
        "{}",
        out.stderr
    );
    assert_eq!(summary(&out.stderr, "rejected"), Some(0));
    for f in findings(&out) {
        let id = f["audit_id"].as_str().unwrap_or("");
        ensure!(!id.is_empty(), "finding without audit id: {f}");
    }
    // Derived ids are stable: a second run reports the same findings.
    let again = replay(&path)?;
    assert_eq!(audit_ids(&findings(&out)), audit_ids(&findings(&again)));
    Ok(())
}

#[tokio::test]
async fn cloudwatch_subscription_payloads_through_webhook_and_replay() -> Result<()> {
    // 100 real OpenShift events, as CloudWatch Logs would carry them.
    let log = corpus("openshift-cluster-logging-operator/audit_in.log");
    let text = std::fs::read_to_string(&log)?;
    let messages: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(messages.len() == 100, "{} events", messages.len());
    let plain = replay(&log)?;
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let expected = audit_ids(&findings(&plain));
    ensure!(!expected.is_empty(), "audit_in.log yields findings");

    let payload = serde_json::to_vec(&subscription("DATA_MESSAGE", &messages))?;
    let gz = gzip(&payload)?;
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("plain", payload.clone()),
        ("gzip", gz.clone()),
        ("base64(gzip)", b64(&gz).into_bytes()),
    ];

    let dir = tempfile::tempdir()?;
    for (what, body) in &variants {
        let path = write(dir.path(), "payload", body)?;
        let out = replay(&path)?;
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        assert_eq!(
            summary(&out.stderr, "events"),
            Some(100),
            "{what}: {}",
            out.stderr
        );
        assert_eq!(audit_ids(&findings(&out)), expected, "{what}");
    }
    // Firehose to S3 concatenates records: several gzip members back to back.
    let two = [gz.clone(), gz.clone()].concat();
    let out = replay(&write(dir.path(), "firehose.gz", &two)?)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(summary(&out.stderr, "events"), Some(200), "{}", out.stderr);
    assert_eq!(audit_ids(&findings(&out)), expected);

    let svc = Service::start(None)?;
    let Answer {
        status,
        json: answer,
    } = post_bytes(&svc, "/audit/webhook", variants[0].1.clone(), &[]).await?;
    ensure!(status == 200, "plain: {answer}");
    assert_eq!(answer["events"], json!(100), "{answer}");
    assert_eq!(answer["documents"], json!(1), "{answer}");
    assert_eq!(answer["findings"], json!(expected.len()), "{answer}");
    let found = svc.wait_for_findings(expected.len())?;
    assert_eq!(audit_ids(&found), expected);
    // The same events again in another envelope: a redelivery, absorbed.
    for (what, body) in &variants[1..] {
        let Answer {
            status,
            json: answer,
        } = post_bytes(&svc, "/audit/webhook", body.clone(), &[]).await?;
        ensure!(status == 200, "{what}: {answer}");
        assert_eq!(answer["events"], json!(100), "{what}: {answer}");
        assert_eq!(answer["findings"], json!(0), "{what}: {answer}");
    }
    // CloudWatch checking the destination: no events, and no error.
    let control = subscription(
        "CONTROL_MESSAGE",
        &["CWL CONTROL MESSAGE: Checking health of destination Firehose."],
    );
    for body in [
        serde_json::to_vec(&control)?,
        gzip(&serde_json::to_vec(&control)?)?,
    ] {
        let Answer {
            status,
            json: answer,
        } = post_bytes(&svc, "/audit/webhook", body, &[]).await?;
        ensure!(status == 200, "control message: {answer}");
        assert_eq!(answer["events"], json!(0), "{answer}");
        assert_eq!(answer["rejected"], json!([]), "{answer}");
    }
    // An AKS batch through the webhook too.
    let aks = std::fs::read(corpus("sysdig-aks-audit-log/event.json"))?;
    let Answer {
        status,
        json: answer,
    } = post_bytes(&svc, "/audit/webhook", aks, &[]).await?;
    ensure!(status == 200, "AKS batch: {answer}");
    assert_eq!(answer["events"], json!(22), "{answer}");
    assert_eq!(svc.findings().len(), expected.len());
    Ok(())
}

#[tokio::test]
async fn a_zip_bomb_is_rejected_cleanly() -> Result<()> {
    // 256 MiB of zeros is about 256 KiB of gzip: past the limit on what a
    // body unpacks to (server.max_body_bytes, 16 MiB), like a body sent
    // with Content-Encoding: 413.
    let bomb = gzip(&vec![0u8; 256 << 20])?;
    ensure!(bomb.len() < 1 << 20, "{} bytes", bomb.len());

    let svc = Service::start(None)?;
    let Answer {
        status,
        json: answer,
    } = post_bytes(&svc, "/audit/webhook", bomb.clone(), &[]).await?;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["rejected"][0]["reason"], "too_large", "{answer}");
    let error = answer["error"].as_str().unwrap_or("");
    assert!(error.contains("decompression limit"), "{answer}");
    // The service is unharmed and takes the next batch.
    let exec = std::fs::read_to_string(corpus("falco-trace-files/exec_pod.json"))?;
    let payload = serde_json::to_vec(&subscription("DATA_MESSAGE", &[exec.trim()]))?;
    let Answer {
        status,
        json: answer,
    } = post_bytes(&svc, "/audit/webhook", gzip(&payload)?, &[]).await?;
    ensure!(status == 200, "{answer}");
    assert_eq!(answer["findings"], json!(1), "{answer}");

    let dir = tempfile::tempdir()?;
    // As base64 text, the way Kinesis hands records over.
    let path = write(dir.path(), "bomb.b64", b64(&bomb).as_bytes())?;
    let out = replay(&path)?;
    assert_eq!(out.code, 1, "{}", out.stderr);
    let rejected = rejections(&out.stderr, path_str(&path)?);
    assert_eq!(rejected.len(), 1, "{}", out.stderr);
    assert!(
        rejected[0].1.contains("decompression limit"),
        "{}",
        out.stderr
    );
    // As a file: read as a stream, it fails on the endless line.
    let path = write(dir.path(), "bomb.gz", &bomb)?;
    let out = replay(&path)?;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(path_str(&path)?), "{}", out.stderr);
    assert!(out.stderr.contains("longer than 64 MiB"), "{}", out.stderr);
    Ok(())
}

// ---------------------------------------------------------------------------
// GKE.

#[test]
fn gke_kubernetes_entries_decode_and_cluster_operations_are_rejected() -> Result<()> {
    let k8s = corpus("gcp-khi/k8s_audit_entries.jsonl");
    let entries = json_lines(&k8s)?;
    ensure!(entries.iter().all(gke_kubernetes_entry));
    let out = replay(&k8s)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        summary(&out.stderr, "events"),
        Some(entries.len() as u64),
        "{}",
        out.stderr
    );
    let ops: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e["operation"]["id"].as_str().map(str::to_owned))
        .collect();
    for f in findings(&out) {
        let id = f["audit_id"].as_str().unwrap_or("").to_owned();
        ensure!(ops.contains(&id), "audit id {id} is not an operation id");
        ensure!(
            f["request_uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("/api/v1/namespaces/"))
        );
    }

    let ops = corpus("gcp-khi/gke_audit_entries.jsonl");
    let entries = json_lines(&ops)?;
    ensure!(entries.len() == 9 && !entries.iter().any(gke_kubernetes_entry));
    let out = replay(&ops)?;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(summary(&out.stderr, "events"), Some(0), "{}", out.stderr);
    assert_eq!(summary(&out.stderr, "rejected"), Some(9), "{}", out.stderr);
    let rejected = rejections(&out.stderr, path_str(&ops)?);
    assert_eq!(rejected.len(), 9, "{}", out.stderr);
    for ((line, message), n) in rejected.iter().zip(1..) {
        assert_eq!(*line, n);
        assert_eq!(
            message,
            "not a Kubernetes audit entry: serviceName container.googleapis.com"
        );
    }
    Ok(())
}

#[test]
fn panther_gcp_fixtures_decode_and_foreign_services_are_rejected() -> Result<()> {
    let path = corpus("panther-analysis/gcp_auditlog.jsonl");
    let entries = json_lines(&path)?;
    let kubernetes = entries.iter().filter(|e| gke_kubernetes_entry(e)).count();
    let foreign: Vec<(usize, &str)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !gke_kubernetes_entry(e))
        .map(|(i, e)| {
            (
                i + 1,
                e["protoPayload"]["serviceName"].as_str().unwrap_or(""),
            )
        })
        .collect();
    ensure!(
        foreign.len() == 6,
        "PROVENANCE: 6 non-Kubernetes entries, found {foreign:?}"
    );
    let out = replay(&path)?;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        summary(&out.stderr, "events"),
        Some(kubernetes as u64),
        "{}",
        out.stderr
    );
    let rejected = rejections(&out.stderr, path_str(&path)?);
    let expected: Vec<(usize, String)> = foreign
        .iter()
        .map(|(line, service)| {
            (
                *line,
                format!("not a Kubernetes audit entry: serviceName {service}"),
            )
        })
        .collect();
    assert_eq!(rejected, expected, "{}", out.stderr);
    Ok(())
}

#[test]
fn gke_exec_entry_is_interactive_access_by_the_principal() -> Result<()> {
    let path = corpus("panther-analysis/gcp_auditlog.jsonl");
    let entry = json_lines(&path)?
        .into_iter()
        .find(|e| {
            e["protoPayload"]["methodName"] == "io.k8s.core.v1.pods.exec.create"
                && e["protoPayload"]["authenticationInfo"]["principalEmail"].is_string()
                && e["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"].is_string()
        })
        .context("no exec entry")?;
    let p = &entry["protoPayload"];
    let dir = tempfile::tempdir()?;
    let file = write(dir.path(), "exec.jsonl", format!("{entry}\n").as_bytes())?;
    let out = replay(&file)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{}", out.stdout);
    let f = &found[0];
    assert_eq!(f["type"], "interactive_access", "{f}");
    assert_eq!(f["severity"], "high", "{f}");
    assert_eq!(f["verb"], "create", "{f}");
    assert_eq!(
        f["actor"]["username"], p["authenticationInfo"]["principalEmail"],
        "{f}"
    );
    assert_eq!(
        f["actor"]["user_agent"],
        p["requestMetadata"]["callerSuppliedUserAgent"]
    );
    assert_eq!(f["actor"]["client"], "kubectl", "{f}");
    let ip = p["requestMetadata"]["callerIp"].clone();
    assert_eq!(f["actor"]["source_ips"], json!([ip]), "{f}");
    assert_eq!(f["resource"]["resource"], "pods", "{f}");
    assert_eq!(f["resource"]["subresource"], "exec", "{f}");
    let parts: Vec<&str> = p["resourceName"]
        .as_str()
        .unwrap_or("")
        .split('/')
        .collect();
    assert_eq!(f["resource"]["namespace"], parts[3], "{f}");
    assert_eq!(f["resource"]["name"], parts[5], "{f}");
    assert_eq!(
        f["request_uri"],
        format!("/api/v1/namespaces/{}/pods/{}/exec", parts[3], parts[5])
    );
    Ok(())
}
