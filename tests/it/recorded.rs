//! Replays of what a real API server wrote: the audit logs (its log backend,
//! `--audit-log-path`, with `deploy/audit/policy.yaml`) of two runs of the
//! cluster tests against kube-apiserver 1.20.2, kept in
//! `tests/fixtures/real-apiserver/`. They pin, without a control plane,
//! what the live tests showed: the findings of a kubectl session, and none
//! from the control plane's own writes.
//!
//! - `kubectl-session.jsonl`: `kubectl_changes_are_attributed_end_to_end`
//!   (Argo CD server-side apply, people's scale/edit/set image/patch/delete,
//!   server dry-runs in the URL and in a DeleteOptions body, a forbidden
//!   write, impersonation of the pipeline, the pipeline's token from kubectl,
//!   a ClusterRoleBinding, a Secret edit, the reconciling re-apply).
//! - `control-plane.jsonl`: `the_control_plane_itself_raises_no_finding`
//!   (Deployments, Jobs, CronJobs, a namespace deleted, garbage collection,
//!   leader election, a few minutes of controller traffic).
//!
//! Both start with the script's own setup as `admin` (namespaces, RBAC for
//! the test users): those are real out-of-band changes and are found.
//! 1.20 cannot show WebSocket exec or newer API fields; the scenario and
//! corpus tests cover those from recorded events of newer servers.
//!
//! To record again: run the two cluster tests, then copy
//! `target/kube-dev-cluster/instances/{dw-e2e,dw-quiet}/audit.log` here and
//! review the snapshot diff.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use serde_json::Value;

use crate::common::{Run, run};

/// The policy the cluster tests configure (their TLS settings aside).
const POLICY: &str = r#"pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
  - name: flux
    users: ["system:serviceaccount:flux-system:kustomize-controller"]
    user_agents: ["^kustomize-controller/"]
  - name: ci
    groups: ["ci"]
"#;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real-apiserver")
        .join(name)
}

fn replay(name: &str) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("driftwatch.yaml");
    std::fs::write(&config, POLICY)?;
    let path = fixture(name);
    let out = run(
        &[
            "replay",
            "--config",
            &config.to_string_lossy(),
            "--cluster",
            "recorded",
            &path.to_string_lossy(),
        ],
        None,
    )?;
    ensure!(
        out.code == 0,
        "replay of {name}: exit {}: {}",
        out.code,
        out.stderr
    );
    ensure!(out.stderr.contains("rejected: 0"), "{name}: {}", out.stderr);
    Ok(out)
}

/// The recorded events, one per line.
fn events(name: &str) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(fixture(name))?;
    text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

/// One line per finding: what an on-call engineer reads first.
fn summary(f: &Value) -> String {
    let r = &f["resource"];
    let fields: Vec<&str> = f["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["path"].as_str())
        .collect();
    format!(
        "{} {} {} {}/{}/{} by {} [{}]",
        f["severity"].as_str().unwrap_or("?"),
        f["type"].as_str().unwrap_or("?"),
        f["verb"].as_str().unwrap_or("?"),
        r["resource"].as_str().unwrap_or("?"),
        r["namespace"].as_str().unwrap_or("_"),
        r["name"].as_str().unwrap_or("?"),
        f["actor"]["username"].as_str().unwrap_or("?"),
        fields.join(", ")
    )
}

fn is_dry_run(e: &Value) -> bool {
    let uri = e["requestURI"].as_str().unwrap_or("");
    uri.contains("dryRun=") || e["requestObject"]["dryRun"].is_array()
}

#[test]
fn a_recorded_kubectl_session_gives_its_findings_and_no_others() -> Result<()> {
    let out = replay("kubectl-session.jsonl")?;
    let findings = out.findings();
    let lines: Vec<String> = findings.iter().map(summary).collect();
    insta::assert_snapshot!(lines.join("\n"));

    let dry_runs: Vec<Value> = events("kubectl-session.jsonl")?
        .into_iter()
        .filter(is_dry_run)
        .map(|e| e["auditID"].clone())
        .collect();
    // The URL form (scale, annotate) and the DeleteOptions body form (a
    // ConfigMap, and a Secret, logged at Request level for it).
    ensure!(dry_runs.len() == 4, "dry-runs recorded: {dry_runs:?}");
    for f in &findings {
        ensure!(
            !dry_runs.contains(&f["audit_id"]),
            "a dry-run gave a finding: {}",
            summary(f)
        );
        // A system identity is named only where the pipeline's was used by
        // someone else: its token from kubectl, or impersonated.
        let user = f["actor"]["username"].as_str().unwrap_or("");
        ensure!(
            !user.starts_with("system:")
                || matches!(
                    f["type"].as_str(),
                    Some("pipeline_credential_misuse" | "pipeline_impersonation")
                ),
            "a control-plane write gave a finding: {}",
            summary(f)
        );
    }
    // The scale shows what it changed from: the remembered object moved with
    // the controllers' writes before it.
    let scale = findings
        .iter()
        .flat_map(|f| f["changes"].as_array().into_iter().flatten())
        .find(|c| c["path"] == "spec.replicas")
        .cloned()
        .unwrap_or(Value::Null);
    ensure!(
        scale["old"].is_number() && scale["new"].is_number(),
        "scale change: {scale}"
    );
    Ok(())
}

#[test]
fn a_recorded_control_plane_raises_no_finding_of_its_own() -> Result<()> {
    let out = replay("control-plane.jsonl")?;
    let system_writes = events("control-plane.jsonl")?
        .iter()
        .filter(|e| {
            e["user"]["username"]
                .as_str()
                .is_some_and(|u| u.starts_with("system:"))
        })
        .filter(|e| !matches!(e["verb"].as_str(), Some("get" | "list" | "watch")))
        .count();
    ensure!(
        system_writes > 400,
        "the log holds the control plane's writes: {system_writes}"
    );
    let findings = out.findings();
    // Only the script's setup, as admin, before the test's own writes.
    ensure!(!findings.is_empty());
    for f in &findings {
        ensure!(
            f["actor"]["username"] == "admin",
            "unexpected finding: {}",
            summary(f)
        );
    }
    ensure!(
        out.stderr.contains("findings: 7 "),
        "the setup's 7 writes and nothing else: {}",
        out.stderr
    );
    Ok(())
}
