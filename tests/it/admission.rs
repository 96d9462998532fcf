//! driftwatch as the validating admission webhook of a real control plane
//! (Kubernetes 1.20.2 from `scripts/kube-dev-cluster`, which calls admission
//! webhooks with the audit webhook's client certificate and token), driven
//! with real kubectl: a ValidatingWebhookConfiguration points at
//! `/admission/validate/{cluster}` over TLS, `failurePolicy: Ignore`.
//!
//! What 1.20 cannot show: the `kubernetes.io/metadata.name` namespace label
//! (1.21+) the shipped configuration's namespaceSelector uses; the test's
//! configuration selects by resource instead (deploy/ is checked by the
//! deploy tests).

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Result, ensure};
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cluster::{ARGOCD_UA, EDITOR, api, argocd_apply, config, finding, git_deployment};
use crate::common::{Cluster, Service, kube_pki, wait_until};

static SERIAL: Mutex<()> = Mutex::new(());

const NAME: &str = "dw-adm";

fn admission_config() -> Result<String> {
    Ok(format!(
        r#"{}admission:
  enabled: true
  mode: enforce
  break_glass_groups: ["oncall-breakglass"]
  break_glass_annotation: driftwatch.io/break-glass
  break_glass_max: 4h
  overrides:
    - {{namespaces: ["sandbox"], mode: warn}}
    - {{namespaces: ["legacy"], mode: audit}}
"#,
        config(NAME)?
    ))
}

/// Deployments and ConfigMaps, reviewed by driftwatch; a driftwatch that
/// does not answer lets writes through.
fn webhook_configuration(svc: &Service) -> Result<Value> {
    let ca = std::fs::read(&kube_pki(NAME)?["ca"])?;
    Ok(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "driftwatch"},
        "webhooks": [{
            "name": "validate.driftwatch.io",
            "clientConfig": {
                "url": format!("{}/admission/validate/{NAME}", svc.base),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
            },
            "rules": [{
                "apiGroups": ["", "apps"],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "resources": ["deployments", "configmaps"],
                "scope": "Namespaced",
            }],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    }))
}

/// The repository's audit policy, but namespace `legacy` logged at
/// `Metadata` only (no bodies), as managed clusters log everything.
fn metadata_for_legacy(dir: &std::path::Path) -> Result<String> {
    let policy = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/audit/policy.yaml"),
    )?;
    let rule = "rules:\n  - level: Metadata\n    namespaces: [\"legacy\"]\n";
    ensure!(policy.contains("\nrules:\n"), "the policy's rules moved");
    let path = dir.join("audit-policy.yaml");
    std::fs::write(&path, policy.replacen("rules:\n", rule, 1))?;
    Ok(path.display().to_string())
}

/// The pipeline's server-side apply of Deployment `NS/NAME`.
fn argocd_apply_in(cluster: &Cluster, ns: &str, name: &str, body: &Value) -> Result<u16> {
    let (code, answer) = cluster.request(
        "argocd",
        ARGOCD_UA,
        Method::PATCH,
        &format!(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}?fieldManager=argocd-controller&force=true"
        ),
        "application/apply-patch+yaml",
        body,
    )?;
    ensure!(
        matches!(code, 200 | 201),
        "apply of {ns}/{name}: {code} {answer}"
    );
    Ok(code)
}

/// `kubectl patch deploy/NAME -n NS -p PATCH` as `user`.
fn kubectl_patch(
    cluster: &Cluster,
    user: &str,
    (ns, name): (&str, &str),
    patch: &str,
) -> Result<crate::common::Run> {
    let deploy = format!("deploy/{name}");
    kubectl_run(cluster, user, &["patch", &deploy, "-n", ns, "-p", patch])
}

fn kubectl_run(cluster: &Cluster, user: &str, args: &[&str]) -> Result<crate::common::Run> {
    cluster.kubectl_with(user, args, None, &[])
}

/// Waits until the API server calls the webhook: alice's dry-run patch of
/// the Argo CD-managed Deployment is denied (a dry run is judged).
fn until_reviewed(cluster: &Cluster) -> Result<String> {
    wait_until(
        Duration::from_secs(60),
        || "the API server to call driftwatch's webhook".to_owned(),
        || {
            let run = kubectl_run(
                cluster,
                "alice",
                &[
                    "patch",
                    "deploy/api",
                    "-n",
                    "shop",
                    "--dry-run=server",
                    "-p",
                    r#"{"spec":{"replicas":7}}"#,
                ],
            )
            .ok()?;
            (run.code != 0 && run.stderr.contains("driftwatch")).then_some(run.stderr)
        },
    )
}

fn sandbox_deployment() -> Value {
    let mut d = git_deployment("nginx:1.27");
    d["metadata"]["name"] = json!("web");
    d["metadata"]["namespace"] = json!("sandbox");
    d["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
        json!("sandbox:apps/Deployment:sandbox/web");
    d
}

/// Enforce denies alice's `kubectl edit` of an Argo CD-managed Deployment
/// with a message naming the manager, where to change it and how to break
/// glass, and denies the pipeline's token used through kubectl; the
/// pipeline's own apply passes; `warn` (namespace sandbox) lets a write
/// through with the warning kubectl prints; a break-glass group and a
/// break-glass annotation pass and are recorded at high severity; a dry run
/// is judged and not recorded; denials are findings (`denied_change`), in
/// `/api/v1/denials` and in `who-changed`; with driftwatch stopped the API
/// server lets writes through (`failurePolicy: Ignore`) and driftwatch
/// counts them as unreviewed once it is back.
#[test]
fn admission_denies_warns_and_breaks_glass_against_a_real_api_server() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::start(Some(&admission_config()?))?;
    let policy_dir = tempfile::tempdir()?;
    let cluster = Cluster::start(
        NAME,
        990,
        &format!("{}/audit/webhook/{NAME}", svc.base),
        &[
            "--webhook-initial-backoff",
            "1s",
            "--audit-policy",
            &metadata_for_legacy(policy_dir.path())?,
        ],
    )?;
    for ns in ["shop", "sandbox", "legacy"] {
        cluster.kubectl("admin", &["create", "namespace", ns])?;
    }
    let hook = serde_json::to_vec(&webhook_configuration(&svc)?)?;
    let run = cluster.kubectl_with("admin", &["apply", "-f", "-"], Some(&hook), &[])?;
    ensure!(run.code == 0, "webhook configuration: {}", run.stderr);

    // The pipeline's own apply passes the webhook.
    assert_eq!(argocd_apply(&cluster, &git_deployment("nginx:1.27"))?, 201);
    let dry = until_reviewed(&cluster)?;
    assert!(dry.contains("denied the request"), "{dry}");

    denied_edit(&cluster, &svc)?;
    pipeline_token_through_kubectl(&cluster)?;
    warned_in_sandbox(&cluster)?;
    break_glass(&cluster, &svc)?;
    metadata_only_changes_come_from_the_review(&cluster, &svc)?;
    recorded(&svc)?;
    stopped_driftwatch_lets_writes_through(cluster, svc)
}

fn denied_edit(cluster: &Cluster, svc: &Service) -> Result<()> {
    let editor = svc.dir.path().join("editor.py");
    std::fs::write(&editor, EDITOR)?;
    let editor = format!("python3 {}", editor.display());
    let run = cluster.kubectl_with(
        "alice",
        &["edit", "deploy/api", "-n", "shop", "-o", "json"],
        None,
        &[("KUBE_EDITOR", editor.as_str())],
    )?;
    ensure!(run.code != 0, "the edit was not denied: {}", run.stdout);
    for part in [
        "admission webhook \"validate.driftwatch.io\" denied the request",
        "deployments.apps shop/api is managed by argocd (shop)",
        "change it in Git",
        "out_of_band_change",
        "a member of oncall-breakglass may retry",
        "driftwatch.io/break-glass",
    ] {
        assert!(run.stderr.contains(part), "{part:?} not in {}", run.stderr);
    }
    let live = cluster.kubectl("admin", &["get", "deploy/api", "-n", "shop", "-o", "json"])?;
    assert!(!live.contains("DEBUG"), "the denied edit landed");
    denial_in_the_audit_log(cluster)
}

/// What the API server itself logs of a denial: its audit event carries
/// the 403 (`responseStatus` has no message; the `Status` body does, at
/// `RequestResponse`) and driftwatch's annotations; the API server's own
/// log says nothing at its default verbosity.
fn denial_in_the_audit_log(cluster: &Cluster) -> Result<()> {
    let denial = wait_until(
        Duration::from_secs(30),
        || "alice's denied update in the API server's audit log".to_owned(),
        || {
            let log = std::fs::read_to_string(cluster.audit_log()).ok()?;
            log.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|e| {
                    e["user"]["username"] == "alice"
                        && e["requestURI"]
                            .as_str()
                            .is_some_and(|u| u.ends_with("fieldManager=kubectl-edit"))
                        && e["stage"] == "ResponseComplete"
                        && e["responseStatus"]["code"] == 403
                })
        },
    )?;
    eprintln!(
        "the API server's audit event of the denial: {}",
        serde_json::to_string(&json!({
            "responseStatus": denial["responseStatus"],
            "responseObject.message": denial["responseObject"]["message"],
            "annotations": denial["annotations"],
        }))?
    );
    let message = denial["responseObject"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("admission webhook \"validate.driftwatch.io\" denied the request: driftwatch: deployments.apps shop/api is managed by argocd"),
        "{denial:#}"
    );
    let annotations = &denial["annotations"];
    assert_eq!(
        annotations["validate.driftwatch.io/decision"], "denied",
        "{denial:#}"
    );
    assert_eq!(
        annotations["validate.driftwatch.io/rule"],
        "out_of_band_change"
    );
    assert!(
        annotations["validate.driftwatch.io/review"].is_string(),
        "the review's uid, for the handoff: {denial:#}"
    );
    Ok(())
}

/// The pipeline's identity through kubectl: what a stolen token looks like.
fn pipeline_token_through_kubectl(cluster: &Cluster) -> Result<()> {
    let run = kubectl_run(
        cluster,
        "argocd",
        &["annotate", "deploy/api", "-n", "shop", "touched=by-hand"],
    )?;
    ensure!(
        run.code != 0,
        "argocd's token through kubectl was let through"
    );
    assert!(
        run.stderr.contains("pipeline_credential_misuse") && run.stderr.contains("kubectl"),
        "{}",
        run.stderr
    );
    Ok(())
}

fn warned_in_sandbox(cluster: &Cluster) -> Result<()> {
    assert_eq!(
        argocd_apply_in(cluster, "sandbox", "web", &sandbox_deployment())?,
        201
    );
    let run = kubectl_patch(
        cluster,
        "alice",
        ("sandbox", "web"),
        r#"{"spec":{"replicas":3}}"#,
    )?;
    ensure!(run.code == 0, "warn mode denied: {}", run.stderr);
    assert!(
        run.stderr
            .contains("Warning: driftwatch: deployments.apps sandbox/web is managed by argocd"),
        "{}",
        run.stderr
    );
    Ok(())
}

fn break_glass(cluster: &Cluster, svc: &Service) -> Result<()> {
    // bob may impersonate groups: a member of the break-glass group.
    let run = kubectl_run(
        cluster,
        "bob",
        &[
            "--as=bob",
            "--as-group=oncall-breakglass",
            "--as-group=devs",
            "patch",
            "deploy/api",
            "-n",
            "shop",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ],
    )?;
    ensure!(run.code == 0, "break-glass group denied: {}", run.stderr);
    assert!(
        run.stderr.contains("driftwatch: break-glass"),
        "{}",
        run.stderr
    );

    // alice annotates the object herself, then edits within the window.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let value = format!("driftwatch.io/break-glass={until} INC-4411 roll back the bad config");
    let run = kubectl_run(
        cluster,
        "alice",
        &["annotate", "deploy/api", "-n", "shop", &value],
    )?;
    ensure!(
        run.code == 0,
        "break-glass annotation denied: {}",
        run.stderr
    );
    let run = kubectl_patch(
        cluster,
        "alice",
        ("shop", "api"),
        r#"{"spec":{"replicas":1}}"#,
    )?;
    ensure!(
        run.code == 0,
        "edit under the annotation denied: {}",
        run.stderr
    );
    // An annotation too far ahead is refused, and says why.
    let far = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(30);
    let value = format!("driftwatch.io/break-glass={far} forever");
    let run = kubectl_run(
        cluster,
        "alice",
        &[
            "annotate",
            "--overwrite",
            "deploy/api",
            "-n",
            "shop",
            &value,
        ],
    )?;
    ensure!(run.code != 0, "a 30 h break-glass was let through");
    assert!(run.stderr.contains("more than 4h ahead"), "{}", run.stderr);

    let bob = finding(svc, "bob's break-glass patch", |f| {
        f["actor"]["username"] == "bob" && f["type"] == "out_of_band_change"
    })?;
    assert_eq!(bob["severity"], "high");
    let reasons = bob["reasons"].to_string();
    assert!(
        reasons.contains("break-glass past driftwatch's admission: member of break-glass group"),
        "{reasons}"
    );
    let alice = finding(svc, "alice's patch under the annotation", |f| {
        f["actor"]["username"] == "alice"
            && f["reasons"]
                .to_string()
                .contains("annotation driftwatch.io/break-glass until")
    })?;
    assert_eq!(alice["severity"], "high");
    Ok(())
}

/// Namespace `legacy` is audited at `Metadata`: its events carry no
/// bodies, yet alice's patch of the Argo CD-managed Deployment there is
/// reported with its field change and its manager, from the review the
/// webhook saw of the same request (`changes_source: admission`).
fn metadata_only_changes_come_from_the_review(cluster: &Cluster, svc: &Service) -> Result<()> {
    let mut d = git_deployment("nginx:1.27");
    d["metadata"]["namespace"] = json!("legacy");
    d["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
        json!("legacy:apps/Deployment:legacy/api");
    assert_eq!(argocd_apply_in(cluster, "legacy", "api", &d)?, 201);
    let run = kubectl_patch(
        cluster,
        "alice",
        ("legacy", "api"),
        r#"{"spec":{"replicas":5}}"#,
    )?;
    ensure!(run.code == 0, "audit mode denied: {}", run.stderr);
    let f = finding(svc, "alice's patch in legacy", |f| {
        f["actor"]["username"] == "alice" && f["resource"]["namespace"] == "legacy"
    })?;
    assert_eq!(f["type"], "out_of_band_change", "{f:#}");
    assert_eq!(f["changes_source"], "admission", "{f:#}");
    assert_eq!(
        f["changes"],
        json!([{"path": "spec.replicas", "old": 2, "new": 5}]),
        "{f:#}"
    );
    assert_eq!(f["managed_by"]["tool"], "argocd", "{f:#}");
    assert_eq!(f["severity"], "high", "managed objects rank high: {f:#}");
    // The pipeline's next apply puts replicas back: its review's diff shows
    // it, so the drift closes although no event carried a body.
    let drift = f["drift"]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(argocd_apply_in(cluster, "legacy", "api", &d)?, 200);
    let closed = wait_until(
        Duration::from_secs(60),
        || format!("drift {drift} reconciled at Metadata level"),
        || {
            let body = api(svc, NAME, &format!("/api/v1/drifts/{drift}")).ok()?;
            (body["state"] == "reconciled").then_some(body)
        },
    )?;
    assert_eq!(closed["closed_by"]["pipeline"], "argocd", "{closed:#}");
    let joined = cluster_metric(svc, "driftwatch_admission_handoffs_total", "joined")?;
    assert!(joined >= 2.0, "handoffs joined: {joined}");
    Ok(())
}

/// Denials are findings and history; the dry run is in neither.
fn recorded(svc: &Service) -> Result<()> {
    // Her refused 30 h break-glass annotation is a denial too: this one
    // is the edit of the env.
    let edit = finding(svc, "alice's denied edit", |f| {
        f["type"] == "denied_change"
            && f["actor"]["username"] == "alice"
            && f["changes"]
                .to_string()
                .contains("containers[name=app].env")
    })?;
    assert_eq!(edit["severity"], "high");
    assert!(
        edit["reasons"]
            .to_string()
            .contains("rule out_of_band_change")
    );
    // What alice tried to change, from the review of the denied request.
    assert_eq!(edit["changes_source"], "admission", "{edit:#}");
    assert_eq!(
        edit["changes"],
        json!([{"path": "spec.template.spec.containers[name=app].env", "old": null,
                "new": [{"name": "DEBUG", "value": "1"}]}]),
        "{edit:#}"
    );
    finding(svc, "argocd's denied annotate", |f| {
        f["type"] == "denied_change"
            && f["reasons"]
                .to_string()
                .contains("pipeline_credential_misuse")
    })?;
    let denials = wait_until(
        Duration::from_secs(60),
        || "denials in the history".to_owned(),
        || {
            let page = api(svc, NAME, "/api/v1/denials?namespace=shop").ok()?;
            let items = page["items"].as_array()?.clone();
            (items.len() >= 3).then_some(items)
        },
    )?;
    let text = serde_json::to_string(&denials)?;
    assert!(!text.contains("dryRun"), "a dry run was recorded: {text}");
    assert!(denials.iter().all(|d| d["type"] == "denied_change"));
    let pki = kube_pki(NAME)?;
    let who = crate::common::run(
        &[
            "who-changed",
            "deploy/api",
            "-n",
            "shop",
            "--server",
            &svc.base,
            "--ca-cert",
            &pki["ca"],
            "--client-cert",
            &pki["webhook_client_cert"],
            "--client-key",
            &pki["webhook_client_key"],
        ],
        None,
    )?;
    ensure!(who.code == 0, "who-changed: {}", who.stderr);
    assert!(
        who.stdout.contains("drift (denied_change)"),
        "{}",
        who.stdout
    );
    assert!(who.stdout.contains("break-glass"), "{}", who.stdout);
    let reviews = cluster_metric(
        svc,
        "driftwatch_admission_reviews_total",
        "outcome=\"denied\"",
    )?;
    assert!(reviews >= 4.0, "denied reviews counted: {reviews}");
    Ok(())
}

fn cluster_metric(svc: &Service, name: &str, labels: &str) -> Result<f64> {
    let text = crate::cluster::get(svc, NAME, "/metrics")?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// `failurePolicy: Ignore`: a stopped driftwatch blocks nothing; the write
/// reaches the history once the API server's retries deliver its audit
/// event, counted as unreviewed.
fn stopped_driftwatch_lets_writes_through(cluster: Cluster, svc: Service) -> Result<()> {
    let listen = svc.base.trim_start_matches("https://").to_owned();
    let (code, dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0);
    let run = kubectl_run(
        &cluster,
        "alice",
        &["set", "env", "deploy/api", "-n", "shop", "UNREVIEWED=1"],
    )?;
    ensure!(
        run.code == 0,
        "with driftwatch down the write failed: {}",
        run.stderr
    );
    let svc = Service::start_at(dir, Some(&admission_config()?), &listen)?;
    let unreviewed = finding(&svc, "the unreviewed write", |f| {
        f["actor"]["username"] == "alice"
            && f["reasons"]
                .to_string()
                .contains("no driftwatch admission review saw this write")
    })?;
    assert_eq!(unreviewed["resource"]["name"], "api");
    let gap = wait_until(
        Duration::from_secs(30),
        || "driftwatch_admission_unreviewed_writes_total".to_owned(),
        || {
            let n =
                cluster_metric(&svc, "driftwatch_admission_unreviewed_writes_total", "").ok()?;
            (n >= 1.0).then_some(n)
        },
    )?;
    assert!(gap >= 1.0);
    Ok(())
}

const PLAIN: &str = r#"
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
admission:
  enabled: true
  mode: enforce
"#;

fn managed_deployment(env: usize, value: &str) -> Value {
    let env: Vec<Value> = (0..env)
        .map(|i| json!({"name": format!("V{i}"), "value": format!("{value}-{i}")}))
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop",
                     "annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/api"}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx", "env": env}]}}},
    })
}

fn review(uid: &str, old: &Value, new: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "api", "namespace": "shop", "operation": "UPDATE",
            "userInfo": {"username": "alice", "groups": ["devs"]},
            "object": new, "oldObject": old, "dryRun": false,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-edit"},
        },
    })
}

/// What is not a v1 AdmissionReview gets a 400 that says what to fix; with
/// `admission` off the route says how to turn it on; a 9 MB review is
/// judged (off the runtime's workers) and answered for its uid, and its
/// 5 MB change is not kept for the audit event (past the handoff's bound
/// for one review).
#[tokio::test]
async fn bad_reviews_are_refused_with_the_fix_and_large_ones_are_judged() -> Result<()> {
    use crate::common::{post_bytes, post_json};
    let off = Service::start(None)?;
    let answer = post_json(&off, "/admission/validate", &json!({})).await?;
    assert_eq!(answer.status, 503, "{}", answer.json);
    assert!(
        answer.json["error"]
            .to_string()
            .contains("admission.enabled: true")
    );

    let svc = Service::start(Some(PLAIN))?;
    let answer = post_bytes(&svc, "/admission/validate", b"{not json".to_vec(), &[]).await?;
    assert_eq!(answer.status, 400);
    assert!(
        answer.json["error"]
            .to_string()
            .contains("not an AdmissionReview")
    );
    let mut old_version = review("u-1", &json!({}), &json!({}));
    old_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let answer = post_json(&svc, "/admission/validate", &old_version).await?;
    assert_eq!(answer.status, 400);
    assert!(
        answer.json["error"]
            .to_string()
            .contains("admissionReviewVersions: [v1]"),
        "{}",
        answer.json
    );

    // 60,000 list entries to diff, one of them a 5 MB value.
    let old = managed_deployment(60_000, "a");
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] =
        json!("x".repeat(5 << 20));
    let big = review("u-big", &old, &new);
    assert!(serde_json::to_vec(&big)?.len() > 8 << 20);
    let answer = post_json(&svc, "/admission/validate", &big).await?;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let response = &answer.json["response"];
    assert_eq!(response["uid"], "u-big");
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"]
            .to_string()
            .contains("is managed by argocd"),
        "{response}"
    );
    assert!(
        response["auditAnnotations"]["review"].is_null(),
        "{response}"
    );
    let small = review(
        "u-small",
        &managed_deployment(3, "a"),
        &managed_deployment(3, "b"),
    );
    let answer = post_json(&svc, "/admission/validate", &small).await?;
    assert_eq!(
        answer.json["response"]["auditAnnotations"]["review"],
        "u-small"
    );
    Ok(())
}
