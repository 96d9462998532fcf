//! `policy suggest`: its allowances load, remove what they say they remove
//! (a replay with them is the measure), never cover control objects, and
//! leave every labelled attack reported.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::common::{Ev, addon_hour_log, audit_ids, log_file, replay_args, run, temp_file};

/// `# removes N findings (X%)` above each allowance: N, in order.
fn removes_per_allowance(yaml: &str) -> Vec<usize> {
    yaml.lines()
        .filter_map(|l| l.strip_prefix("  # removes "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

/// Groups and resources no suggestion may cover.
fn control_object(group: &str, resource: &str) -> bool {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    matches!(
        group,
        "rbac.authorization.k8s.io"
            | "admissionregistration.k8s.io"
            | "apiregistration.k8s.io"
            | "apiextensions.k8s.io"
            | "certificates.k8s.io"
    ) || resource == "secrets"
        || matches!(
            sub,
            "exec" | "attach" | "portforward" | "ephemeralcontainers" | "proxy" | "token"
        )
}

/// The names of the allowances the config loader compiles from `yaml`;
/// none may cover a control object.
fn loaded_allowances(yaml: &str) -> Result<Vec<String>> {
    let config = driftwatch::config::Config::from_yaml(yaml, "suggested.yaml")
        .map_err(|e| anyhow::anyhow!("the suggestions do not load: {e}\n{yaml}"))?;
    let mut out = Vec::new();
    for a in &config.policy.allowances {
        for s in &a.what {
            for g in &s.api_groups {
                for r in &s.resources {
                    ensure!(!control_object(g, r), "{} covers {g}/{r}:\n{yaml}", a.name);
                }
            }
        }
        out.push(a.name.clone());
    }
    Ok(out)
}

#[test]
fn suggestions_quiet_the_addon_hour_and_every_attack_still_surfaces() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (log, attacks) = addon_hour_log(dir.path())?;
    let log = log.to_str().context("temp path is not UTF-8")?;
    let before = replay_args("", &[log], "")?;

    let out = run(&["policy", "suggest", log], None)?;
    ensure!(out.code == 0, "suggest exited {}: {}", out.code, out.stderr);
    let yaml = out.stdout;
    let loaded = loaded_allowances(&yaml)?;
    let removes = removes_per_allowance(&yaml);
    ensure!(
        removes.len() == loaded.len() && !loaded.is_empty(),
        "one count per allowance: {removes:?}\n{yaml}"
    );
    ensure!(
        removes.windows(2).all(|w| w[0] >= w[1]),
        "ranked: {removes:?}"
    );
    let path = temp_file(".yaml", &yaml)?;
    let check = run(
        &[
            "policy",
            "check",
            "--config",
            &path.path().to_string_lossy(),
        ],
        None,
    )?;
    ensure!(check.code == 0, "policy check: {}", check.stderr);

    let after = replay_args(&yaml, &[log], "")?;
    let removed: usize = removes.iter().sum();
    let attack_ids: BTreeSet<&str> = attacks.iter().map(|(_, id)| id.as_str()).collect();
    let automation = |findings: &[Value]| {
        findings
            .iter()
            .filter(|f| !attack_ids.contains(f["audit_id"].as_str().unwrap_or("")))
            .count()
    };
    let (auto_before, auto_after) = (automation(&before.findings), automation(&after.findings));
    eprintln!(
        "add-on hour: {} findings before ({auto_before} automation), {} after ({auto_after} automation); \
         {} allowances say they remove {removed}",
        before.findings.len(),
        after.findings.len(),
        loaded.len()
    );
    // The comments tell the truth about the replay.
    ensure!(
        after.findings.len() + removed == before.findings.len(),
        "{} after + {removed} removed != {} before",
        after.findings.len(),
        before.findings.len()
    );
    ensure!(
        auto_after * 10 <= auto_before,
        "most automation is quiet: {auto_after} of {auto_before} left"
    );
    let left = audit_ids(&after.findings);
    for (name, id) in &attacks {
        ensure!(left.contains(id), "attack {name} is no longer reported");
    }
    // What is not suggested says why.
    for expected in [
        "# NOT SUGGESTED: system:serviceaccount:istio-system:istiod: create clusterrolebindings (rbac.authorization.k8s.io), 1 finding: RBAC writes grant permissions; review and write by hand",
        "# NOT SUGGESTED: system:serviceaccount:cert-manager:cert-manager-cainjector: patch validatingwebhookconfigurations (admissionregistration.k8s.io), 1 finding: admission webhooks",
        "# NOT SUGGESTED: system:anonymous: create configmaps, 1 finding: unauthenticated writes are never trusted",
        "nodes/proxy, 1 finding: interactive sessions",
    ] {
        ensure!(yaml.contains(expected), "{expected:?} in\n{yaml}");
    }
    Ok(())
}

const AUTOSCALER_UA: &str = "cluster-autoscaler/v1.31.0 (linux/amd64) kubernetes/$Format";

/// cluster-autoscaler rewriting its status ConfigMap (every scan).
fn status_write(scan: u32) -> Ev {
    let cm = json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "cluster-autoscaler-status", "namespace": "kube-system",
            "resourceVersion": format!("{}", 4100 + scan),
            "annotations": {"cluster-autoscaler.kubernetes.io/last-updated": format!("2026-11-20 10:00:{scan:02}Z")}},
        "data": {"status": format!("time: 2026-11-20 10:00:{scan:02}Z\nautoscalerStatus: Running\n")}});
    Ev::new(
        "update",
        "/api/v1/namespaces/kube-system/configmaps/cluster-autoscaler-status",
    )
    .by_sa(
        "kube-system",
        "cluster-autoscaler",
        "cluster-autoscaler-6d4c-x2k",
    )
    .ua(AUTOSCALER_UA)
    .source_ips(&["10.42.1.17"])
    .bodies(cm.clone(), cm)
}

/// A hand-written hour: a controller's routine writes, the same identity
/// writing RBAC and a Secret, a person's edits.
fn hand_written() -> Vec<Ev> {
    let mut events: Vec<Ev> = (0..5).map(status_write).collect();
    for node in ["ip-10-0-1-7", "ip-10-0-2-9", "ip-10-0-3-4"] {
        events.push(
            Ev::new("patch", &format!("/api/v1/nodes/{node}"))
                .by_sa("kube-system", "cluster-autoscaler", "cluster-autoscaler-6d4c-x2k")
                .ua(AUTOSCALER_UA)
                .body(json!({"spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]}})),
        );
    }
    for i in 0..2 {
        events.push(
            Ev::new(
                "create",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            )
            .named(&format!("autoscaler-extra-{i}"))
            .by_sa(
                "kube-system",
                "cluster-autoscaler",
                "cluster-autoscaler-6d4c-x2k",
            )
            .ua(AUTOSCALER_UA),
        );
        events.push(
            Ev::new(
                "patch",
                "/api/v1/namespaces/kube-system/secrets/autoscaler-cloud",
            )
            .by_sa(
                "kube-system",
                "cluster-autoscaler",
                "cluster-autoscaler-6d4c-x2k",
            )
            .ua(AUTOSCALER_UA),
        );
    }
    // A person by name, and kubeadm's admin certificate with kubectl.
    let edit = "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-edit";
    events.push(Ev::new("patch", edit));
    events.push(Ev::new("patch", edit).by(
        "kubernetes-admin",
        &["kubeadm:cluster-admins", "system:authenticated"],
    ));
    events
}

#[test]
fn a_hand_written_log_gets_one_scoped_allowance_and_the_rest_explained() -> Result<()> {
    let events = hand_written();
    let log = log_file(&events)?;
    let log = log.path().to_str().context("temp path is not UTF-8")?;
    let before = replay_args("", &[log], "")?;
    ensure!(
        before.findings.len() == events.len(),
        "every write is a finding: {}",
        before.summary.line
    );

    let out = run(&["policy", "suggest", "-o", "json", log], None)?;
    ensure!(out.code == 0, "{}", out.stderr);
    let j: Value = serde_json::from_str(&out.stdout)?;
    let suggestions = j["suggestions"].as_array().context("suggestions")?;
    ensure!(suggestions.len() == 1, "{:#}", j);
    let allowance = &suggestions[0]["allowance"];
    ensure!(allowance["name"] == "suggested/kube-system/cluster-autoscaler");
    ensure!(
        allowance["who"]
            == json!({"service_accounts": ["kube-system:cluster-autoscaler"], "user_agents": ["^cluster-autoscaler/"]})
    );
    // The first status write has nothing to be compared with: it stays.
    ensure!(
        allowance["what"]
            == json!([
                {"api_groups": [""], "resources": ["configmaps"], "verbs": ["update"],
                 "namespaces": ["kube-system"], "names": ["cluster-autoscaler-status"],
                 "fields": ["data.status", "metadata.annotations[\"cluster-autoscaler.kubernetes.io/last-updated\"]"]},
                {"api_groups": [""], "resources": ["nodes"], "verbs": ["patch"],
                 "namespaces": [""], "names": ["ip-10-0-1-7", "ip-10-0-2-9", "ip-10-0-3-4"]},
            ]),
        "{:#}",
        allowance["what"]
    );
    ensure!(
        j["findings"] == 14 && j["removed"] == 7 && j["remaining"] == 7,
        "{j:#}"
    );
    let reasons: Vec<&str> = j["not_suggested"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["reason"].as_str())
        .collect();
    for expected in [
        "RBAC writes grant permissions",
        "Secrets hold credentials",
        "a person's changes are what driftwatch reports",
        "written with kubectl or Helm",
        "their changed fields are not known",
    ] {
        ensure!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected:?} in {j:#}"
        );
    }

    // The YAML says the same, loads, and a replay with it keeps the rest.
    let yaml = run(&["policy", "suggest", log], None)?.stdout;
    ensure!(removes_per_allowance(&yaml) == [7], "{yaml}");
    loaded_allowances(&yaml)?;
    let after = replay_args(&yaml, &[log], "")?;
    ensure!(after.findings.len() == 7, "{}", after.summary.line);

    // A higher bar leaves the three node patches out.
    let strict = run(
        &[
            "policy",
            "suggest",
            "--min-findings",
            "4",
            "-o",
            "json",
            log,
        ],
        None,
    )?;
    let j: Value = serde_json::from_str(&strict.stdout)?;
    ensure!(j["removed"] == 4, "{j:#}");
    Ok(())
}

#[test]
fn suggest_refuses_stdin_and_bad_arguments_as_usage_errors() -> Result<()> {
    let out = run(&["policy", "suggest", "-"], Some(b"{}\n"))?;
    ensure!(out.code == 2, "{}", out.stderr);
    ensure!(
        out.stderr.contains("cannot read standard input"),
        "{}",
        out.stderr
    );
    let out = run(&["policy", "suggest"], None)?;
    ensure!(out.code == 2, "{}", out.stderr);
    let log = log_file(&[status_write(1)])?;
    let log = log.path().to_str().context("temp path is not UTF-8")?;
    let out = run(&["policy", "suggest", "--min-findings", "0", log], None)?;
    ensure!(out.code == 2, "{}", out.stderr);
    let bad = temp_file(".yaml", "allow: [{name: x}]\n")?;
    let out = run(
        &[
            "policy",
            "suggest",
            "--config",
            &bad.path().to_string_lossy(),
            log,
        ],
        None,
    )?;
    ensure!(out.code == 2, "{}", out.stderr);
    Ok(())
}
