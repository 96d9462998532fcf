//! driftwatch as the audit webhook of a real control plane: Kubernetes
//! 1.20.2 (kube-apiserver, kube-controller-manager with
//! `--use-service-account-credentials`, kube-scheduler, etcd), built from
//! Debian's sources and started on loopback by `scripts/kube-dev-cluster`,
//! its webhook pointed at a `driftwatch serve` over TLS with a client
//! certificate and a token, driven with real kubectl.
//!
//! What this server cannot show, and where it is covered instead: WebSocket
//! exec (kubectl 1.20 uses SPDY, and without a kubelet no pod runs, so no
//! exec succeeds) and fields of newer releases (`ValidatingAdmissionPolicy`,
//! `selfsubjectreviews`, newer controllers) are in the recorded fixtures of
//! the scenario and corpus tests. Server-side apply bodies are sent as JSON,
//! as client-go, Argo CD and Flux send them: a YAML body makes 1.20's API
//! server unable to serialize its audit event (a Kubernetes bug), and its
//! webhook then retries and drops the batch.
//!
//! The tests share the machine's two cores with everything else: they run
//! one at a time (each starts its own control plane).

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Cluster, Service, change_paths, kube_pki, wait_until};

/// One control plane at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const ARGOCD: &str = "system:serviceaccount:argocd:argocd-application-controller";
pub(crate) const ARGOCD_UA: &str =
    "argocd-application-controller/v2.13.1 (linux/amd64) kubernetes/a1b2c3d";

/// driftwatch's side of the webhook: the script's serving certificate, its
/// client CA and tokens, each API server's client certificate bound to its
/// instance name; the test users' pipelines.
pub(crate) fn config(name: &str) -> Result<String> {
    let pki = kube_pki(name)?;
    let get = |k: &str| {
        pki.get(k)
            .cloned()
            .with_context(|| format!("pki has no {k}"))
    };
    Ok(format!(
        r#"cluster: {name}
server:
  tls:
    cert_file: {cert}
    key_file: {key}
    client_ca_file: {ca}
  auth:
    bearer_tokens_file: {tokens}
    client_clusters:
      {cn}: {name}
pipelines:
  - name: argocd
    users: ["{ARGOCD}"]
    user_agents: ["^argocd-application-controller/"]
  - name: flux
    users: ["system:serviceaccount:flux-system:kustomize-controller"]
    user_agents: ["^kustomize-controller/"]
  - name: ci
    groups: ["ci"]
history:
  store_system: true
"#,
        cert = get("driftwatch_cert")?,
        key = get("driftwatch_key")?,
        ca = get("driftwatch_client_ca")?,
        tokens = get("driftwatch_tokens")?,
        cn = get("webhook_client_cn")?,
    ))
}

/// A driftwatch on a free port and a control plane whose webhook points at it.
fn start(name: &str, port_offset: u16, extra: &[&str]) -> Result<(Service, Cluster)> {
    let svc = Service::start(Some(&config(name)?))?;
    let url = format!("{}/audit/webhook/{name}", svc.base);
    let cluster = Cluster::start(name, port_offset, &url, extra)?;
    Ok((svc, cluster))
}

/// Waits (60 s at most: the webhook batches for a second, a loaded machine
/// takes longer) for a finding that `pred` accepts.
pub(crate) fn finding(svc: &Service, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    wait_until(
        Duration::from_secs(60),
        || format!("a finding: {what}; findings: {:#?}", svc.findings()),
        || svc.findings().into_iter().find(|f| pred(f)),
    )
}

/// Waits until a history query has an item: the events before it are in.
fn stored(svc: &Service, what: &str, path: &str) -> Result<Value> {
    wait_until(
        Duration::from_secs(60),
        || format!("{what} in the history ({path})"),
        || {
            let page = api(svc, "dw-e2e", path).ok()?;
            page["items"].as_array()?.first().cloned()
        },
    )
}

/// GET of driftwatch's listener, which wants a client certificate here on
/// every route: the API server's webhook one.
pub(crate) fn get(svc: &Service, name: &str, path: &str) -> Result<String> {
    let pki = kube_pki(name)?;
    let ca = std::fs::read(&pki["ca"])?;
    let mut identity = std::fs::read(&pki["webhook_client_cert"])?;
    identity.push(b'\n');
    identity.extend(std::fs::read(&pki["webhook_client_key"])?);
    let url = svc.url(path);
    crate::common::block_on(async move {
        let client = driftwatch::http::client_builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca)?)
            .identity(reqwest::Identity::from_pem(&identity)?)
            .build()?;
        let r = client.get(&url).send().await?;
        ensure!(r.status().is_success(), "GET {url}: {}", r.status());
        Ok(r.text().await?)
    })
}

/// The query API's JSON answer.
pub(crate) fn api(svc: &Service, name: &str, path: &str) -> Result<Value> {
    Ok(serde_json::from_str(&get(svc, name, path)?)?)
}

fn on(f: &Value, resource: &str, name: &str) -> bool {
    f["resource"]["resource"] == resource && f["resource"]["name"] == name
}

/// The Deployment as it is in Git, applied server-side by Argo CD (JSON,
/// with Argo CD's tracking annotation).
pub(crate) fn git_deployment(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "api",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/instance": "shop"},
            "annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/api"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

/// The drift once it is in `state` (the API server's batches arrive a
/// moment after kubectl returns).
fn drift_in_state(svc: &Service, drift: &str, state: &str) -> Result<Value> {
    wait_until(
        Duration::from_secs(60),
        || format!("drift {drift} {state}"),
        || {
            let body = api(svc, "dw-e2e", &format!("/api/v1/drifts/{drift}")).ok()?;
            (body["state"] == state).then_some(body)
        },
    )
}

pub(crate) fn argocd_apply(cluster: &Cluster, body: &Value) -> Result<u16> {
    let (code, answer) = cluster.request(
        "argocd",
        ARGOCD_UA,
        Method::PATCH,
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=argocd-controller&force=true",
        "application/apply-patch+yaml",
        body,
    )?;
    ensure!(matches!(code, 200 | 201), "apply: {code} {answer}");
    Ok(code)
}

/// An editor for `kubectl edit -o json`: adds `DEBUG=1` to container `app`.
pub(crate) const EDITOR: &str = r#"import json, sys
path = sys.argv[-1]
obj = json.load(open(path))
for c in obj["spec"]["template"]["spec"]["containers"]:
    if c["name"] == "app":
        c.setdefault("env", []).append({"name": "DEBUG", "value": "1"})
json.dump(obj, open(path, "w"))
"#;

/// People, a pipeline and an admin against a real API server: each write
/// gives exactly its finding (type, resource, actor, fields); dry runs and
/// refused writes give none; the pipeline's re-apply leaves the drift
/// persisting on the fields it does not own and its replace closes it; the
/// history (`who-changed` over TLS) and `/api/v1/drifts` agree; the API
/// server never failed to deliver an audit batch.
#[test]
fn kubectl_changes_are_attributed_end_to_end() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (svc, cluster) = start("dw-e2e", 200, &[])?;
    // The script's own RBAC setup (as admin) comes before this: not counted.
    let t0 = jiff::Timestamp::now();
    cluster.kubectl("ci-deployer", &["create", "namespace", "shop"])?;

    // The pipeline creates the Deployment: sanctioned, no finding. The API
    // server sends its batches concurrently, so a later batch can overtake
    // this one; a person acts seconds after a sync, so wait for it here.
    assert_eq!(argocd_apply(&cluster, &git_deployment("nginx:1.25"))?, 201);
    stored(
        &svc,
        "the sync",
        "/api/v1/changes?namespace=shop&name=api&verdict=sanctioned",
    )?;

    // alice scales it: the field, its old value, Argo CD as its manager.
    cluster.kubectl(
        "alice",
        &["scale", "deploy/api", "-n", "shop", "--replicas=5"],
    )?;
    let scale = finding(&svc, "alice's scale", |f| on(f, "deployments", "api"))?;
    assert_eq!(scale["type"], "out_of_band_change");
    assert_eq!(scale["actor"]["username"], "alice");
    assert_eq!(scale["resource"]["subresource"], "scale");
    assert_eq!(
        scale["changes"],
        json!([{"path": "spec.replicas", "old": 2, "new": 5}])
    );
    assert_eq!(scale["managed_by"]["tool"], "argocd");
    assert_eq!(scale["severity"], "high");
    let drift = scale["drift"]["id"].as_str().context("a drift")?.to_owned();

    // kubectl edit adds an env var; the controller's revision bump and the
    // earlier scale are not alice's edit.
    let editor = svc.dir.path().join("editor.py");
    std::fs::write(&editor, EDITOR)?;
    let editor = format!("python3 {}", editor.display());
    let run = cluster.kubectl_with(
        "alice",
        &["edit", "deploy/api", "-n", "shop", "-o", "json"],
        None,
        &[("KUBE_EDITOR", editor.as_str())],
    )?;
    ensure!(run.code == 0, "kubectl edit: {}", run.stderr);
    let edit = finding(&svc, "alice's edit", |f| {
        on(f, "deployments", "api") && f["actor"]["field_manager"] == "kubectl-edit"
    })?;
    let edited = change_paths(&edit);
    assert!(
        edited.iter().any(|p| p.contains("env"))
            && edited.iter().all(|p| p.starts_with("spec.template")),
        "{edited:?}"
    );
    assert_eq!(edit["drift"]["id"], drift.as_str(), "joins the open drift");

    // kubectl set image: old and new image.
    cluster.kubectl(
        "alice",
        &["set", "image", "deploy/api", "-n", "shop", "app=nginx:1.26"],
    )?;
    let image = finding(&svc, "alice's set image", |f| {
        on(f, "deployments", "api") && f["actor"]["field_manager"] == "kubectl-set"
    })?;
    assert_eq!(
        image["changes"],
        json!([{"path": "spec.template.spec.containers[name=app].image", "old": "nginx:1.25", "new": "nginx:1.26"}])
    );

    // A ConfigMap: create, patch, delete.
    cluster.kubectl(
        "alice",
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "shop",
            "--from-literal=mode=safe",
        ],
    )?;
    // The API server sends its batches concurrently: a patch made within
    // milliseconds can arrive before the create, and then its old value is
    // honestly unknown (`null`). A person patches later than a script.
    finding(&svc, "alice's create", |f| {
        on(f, "configmaps", "settings") && f["verb"] == "create"
    })?;
    cluster.kubectl(
        "alice",
        &[
            "patch",
            "configmap",
            "settings",
            "-n",
            "shop",
            "-p",
            r#"{"data":{"mode":"debug"}}"#,
        ],
    )?;
    let patch = finding(&svc, "alice's patch", |f| {
        on(f, "configmaps", "settings") && f["verb"] == "patch"
    })?;
    assert_eq!(
        patch["changes"],
        json!([{"path": "data.mode", "old": "safe", "new": "debug"}])
    );

    // Server dry runs change nothing and are not changes.
    for args in [
        &[
            "delete",
            "configmap",
            "settings",
            "-n",
            "shop",
            "--dry-run=server",
        ][..],
        &[
            "scale",
            "deploy/api",
            "-n",
            "shop",
            "--replicas=9",
            "--dry-run=server",
        ][..],
        &[
            "annotate",
            "deploy/api",
            "-n",
            "shop",
            "dry=run",
            "--dry-run=server",
        ][..],
    ] {
        cluster.kubectl("alice", args)?;
    }
    cluster.kubectl("alice", &["delete", "configmap", "settings", "-n", "shop"])?;
    let delete = finding(&svc, "alice's delete", |f| {
        on(f, "configmaps", "settings") && f["verb"] == "delete"
    })?;
    assert_eq!(delete["severity"], "high");

    // A refused write is no change.
    let refused = cluster.kubectl_with(
        "alice",
        &[
            "create",
            "clusterrolebinding",
            "alice-admin",
            "--clusterrole=cluster-admin",
            "--user=alice",
        ],
        None,
        &[],
    )?;
    ensure!(
        refused.code != 0 && refused.stderr.contains("forbidden"),
        "{}",
        refused.stderr
    );

    // bob impersonates the pipeline; the pipeline's token is used from kubectl.
    cluster.kubectl(
        "bob",
        &[
            "--as",
            ARGOCD,
            "annotate",
            "deploy/api",
            "-n",
            "shop",
            "owner=bob",
        ],
    )?;
    let imp = finding(&svc, "bob as Argo CD", |f| {
        f["type"] == "pipeline_impersonation"
    })?;
    assert_eq!(imp["actor"]["username"], ARGOCD);
    assert_eq!(imp["actor"]["impersonated_by"]["username"], "bob");
    assert_eq!(
        (imp["severity"].as_str(), imp["pipeline"].as_str()),
        (Some("critical"), Some("argocd"))
    );
    cluster.kubectl(
        "argocd",
        &["annotate", "deploy/api", "-n", "shop", "via=kubectl"],
    )?;
    let misuse = finding(&svc, "Argo CD's token from kubectl", |f| {
        f["type"] == "pipeline_credential_misuse"
    })?;
    assert_eq!(misuse["actor"]["client"], "kubectl");
    assert_eq!(misuse["severity"], "critical");

    // An admin's ClusterRoleBinding; a Secret edited by a person.
    cluster.kubectl(
        "admin",
        &[
            "create",
            "clusterrolebinding",
            "dw-view",
            "--clusterrole=view",
            "--user=alice",
        ],
    )?;
    let crb = finding(&svc, "the ClusterRoleBinding", |f| {
        on(f, "clusterrolebindings", "dw-view")
    })?;
    // A binding to `view` grants nothing dangerous: high (an RBAC object),
    // not critical; one to cluster-admin is (see the recorded tests).
    assert_eq!(
        (crb["severity"].as_str(), crb["actor"]["username"].as_str()),
        (Some("high"), Some("admin"))
    );
    assert_eq!(crb["risks"], json!([]));
    assert_eq!(crb["resource"]["namespace"], Value::Null);
    cluster.kubectl(
        "alice",
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "shop",
            "--from-literal=password=hunter2-very-secret",
        ],
    )?;
    cluster.kubectl(
        "alice",
        &[
            "patch",
            "secret",
            "creds",
            "-n",
            "shop",
            "-p",
            r#"{"stringData":{"password":"other-secret-value"}}"#,
        ],
    )?;
    let secret = finding(&svc, "the Secret edit", |f| {
        on(f, "secrets", "creds") && f["verb"] == "patch"
    })?;
    assert_eq!(secret["severity"], "high");
    // Secrets are logged at Metadata (no bodies), but their deletes at
    // Request: the body is only DeleteOptions, which carries the dry-run.
    cluster.kubectl(
        "alice",
        &[
            "delete",
            "secret",
            "creds",
            "-n",
            "shop",
            "--dry-run=server",
        ],
    )?;

    // The pipeline's next sync, a server-side apply of the Git version,
    // puts back what it owns (replicas, image) and leaves what it does not
    // (alice's env var, the annotation): the drift persists, naming them.
    argocd_apply(&cluster, &git_deployment("nginx:1.25"))?;
    let state = drift_in_state(&svc, &drift, "persisting")?;
    let left: Vec<&str> = state["persisting"]["paths"]
        .as_array()
        .context("persisting paths")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        left.contains(&"spec.template.spec.containers[name=app].env")
            && left.contains(&"metadata.annotations.via"),
        "{state}"
    );
    assert!(
        !left
            .iter()
            .any(|p| p.contains("replicas") || p.contains("image")),
        "{state}"
    );
    assert_eq!(state["persisting"]["pipeline"], "argocd");
    // A replace of the Git version (Argo CD's `Replace=true`) drops them:
    // reconciled, verified.
    let (code, answer) = cluster.request(
        "argocd",
        ARGOCD_UA,
        Method::PUT,
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=argocd-controller",
        "application/json",
        &git_deployment("nginx:1.25"),
    )?;
    ensure!(code == 200, "replace: {code} {answer}");
    let state = drift_in_state(&svc, &drift, "reconciled")?;
    assert_eq!(state["closed_by"]["pipeline"], "argocd");
    assert_eq!(state["verification"], "verified", "{state}");

    // Exactly the findings above, nothing from the control plane, no secret.
    let findings: Vec<Value> = svc
        .findings()
        .into_iter()
        .filter(|f| {
            f["time"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                >= Some(t0)
        })
        .collect();
    let by: Vec<(&str, &str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["actor"]["username"].as_str().unwrap_or(""),
                f["verb"].as_str().unwrap_or(""),
                f["resource"]["resource"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for (user, _, _) in &by {
        assert!(
            ["alice", "bob", "admin", ARGOCD].contains(user),
            "a finding by {user}: {by:?}"
        );
    }
    assert_eq!(findings.len(), 11, "{by:#?}");
    let all = serde_json::to_string(&findings)?;
    assert!(!all.contains("hunter2") && !all.contains("other-secret-value"));

    // who-changed over TLS (the webhook's client certificate opens the
    // listener) agrees with the findings, and shows the reconcile.
    let pki = kube_pki("dw-e2e")?;
    let who = crate::common::run(
        &[
            "who-changed",
            "deploy/api",
            "-n",
            "shop",
            "-o",
            "json",
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
    let history = who.findings();
    // With history.store_system the controllers' writes are there too.
    let verdicts: Vec<&str> = history
        .iter()
        .filter_map(|c| c["verdict"].as_str())
        .filter(|v| *v != "system")
        .collect();
    assert_eq!(
        verdicts.len(),
        8,
        "sync, 5 drift, apply, replace: {verdicts:?}"
    );
    assert_eq!(verdicts.first(), Some(&"sanctioned"), "{verdicts:?}");
    assert_eq!(verdicts.last(), Some(&"sanctioned"), "{verdicts:?}");
    let drift_changes = history
        .iter()
        .filter(|c| c["drift"]["id"] == drift.as_str())
        .count();
    assert!(
        drift_changes >= 5,
        "scale, edit, set image, impersonation, misuse: {history:#?}"
    );
    assert!(
        history.iter().all(|c| c["verb"] != "delete"),
        "the dry-run delete is not in the history"
    );

    // The API server delivered every batch.
    assert_eq!(
        cluster.counter("apiserver_audit_error_total", "webhook")?,
        0.0
    );
    Ok(())
}

/// The identities and verdicts of every stored change since `t0`, counted,
/// from the query API: a running `serve` holds its store exclusively.
fn stored_verdicts(
    svc: &Service,
    name: &str,
    t0: jiff::Timestamp,
) -> Result<Vec<(String, String, i64)>> {
    let mut counts = std::collections::BTreeMap::<(String, String), i64>::new();
    for change in stored_changes(svc, name, &format!("since={t0}"))? {
        let key = (
            change["actor"]["username"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            change["verdict"].as_str().unwrap_or("").to_owned(),
        );
        *counts.entry(key).or_default() += 1;
    }
    Ok(counts.into_iter().map(|((a, v), n)| (a, v, n)).collect())
}

/// Every stored change the query matches, following the cursor.
fn stored_changes(svc: &Service, name: &str, query: &str) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/changes?limit=1000&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api(svc, name, &path)?;
        all.extend(page["items"].as_array().into_iter().flatten().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(all),
        }
    }
}

fn findings_since(svc: &Service, t0: jiff::Timestamp) -> Vec<Value> {
    svc.findings()
        .into_iter()
        .filter(|f| {
            f["time"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                >= Some(t0)
        })
        .collect()
}

/// A pipeline's objects for the control plane to work on.
fn workload(namespace: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [
  {{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "web", "namespace": "{namespace}"}},
   "spec": {{"replicas": 2, "selector": {{"matchLabels": {{"app": "web"}}}},
            "template": {{"metadata": {{"labels": {{"app": "web"}}}}, "spec": {{"containers": [{{"name": "web", "image": "nginx:1.25"}}]}}}}}}}},
  {{"apiVersion": "batch/v1", "kind": "Job", "metadata": {{"name": "migrate", "namespace": "{namespace}"}},
   "spec": {{"template": {{"spec": {{"restartPolicy": "Never", "containers": [{{"name": "m", "image": "busybox"}}]}}}}}}}},
  {{"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {{"name": "tick", "namespace": "{namespace}"}},
   "spec": {{"schedule": "*/1 * * * *", "jobTemplate": {{"spec": {{"template": {{"spec": {{"restartPolicy": "Never", "containers": [{{"name": "t", "image": "busybox"}}]}}}}}}}}}}}},
  {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "web", "namespace": "{namespace}"}},
   "spec": {{"selector": {{"app": "web"}}, "ports": [{{"port": 80}}]}}}},
  {{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "settings", "namespace": "{namespace}"}}, "data": {{"mode": "safe"}}}}
]}}"#
    )
}

/// A control plane at work (Deployments rolled out and scaled, a Job, a
/// CronJob firing, a namespace deleted with its contents, garbage
/// collection, leader election, service accounts and their tokens): every
/// write by the API server, controller-manager, scheduler and controllers'
/// service accounts is `system`, and none is a finding.
#[test]
fn the_control_plane_itself_raises_no_finding() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (svc, cluster) = start("dw-quiet", 400, &[])?;
    let t0 = jiff::Timestamp::now();
    for ns in ["work", "cron"] {
        cluster.kubectl("ci-deployer", &["create", "namespace", ns])?;
    }
    for ns in ["work", "cron"] {
        let run = cluster.kubectl_with(
            "ci-deployer",
            &["apply", "-f", "-"],
            Some(workload(ns).as_bytes()),
            &[],
        )?;
        ensure!(run.code == 0, "apply: {}", run.stderr);
    }
    cluster.kubectl(
        "ci-deployer",
        &["scale", "deploy/web", "-n", "work", "--replicas=3"],
    )?;
    cluster.kubectl(
        "ci-deployer",
        &["set", "image", "deploy/web", "-n", "work", "web=nginx:1.26"],
    )?;
    // The namespace and everything in it, through the namespace controller
    // (which may delete the ReplicaSets itself before the garbage collector
    // gets to them).
    cluster.kubectl(
        "ci-deployer",
        &["delete", "namespace", "work", "--wait=false"],
    )?;
    // A Deployment deleted in the background: only the garbage collector
    // deletes its ReplicaSets and their Pods.
    cluster.kubectl(
        "ci-deployer",
        &["delete", "deploy/web", "-n", "cron", "--wait=false"],
    )?;
    // The CronJob fires within a minute; its Job is the cronjob-controller's.
    wait_until(
        Duration::from_secs(150),
        || "the CronJob's first Job, the namespace and the ReplicaSets gone".to_owned(),
        || {
            let jobs = cluster
                .kubectl("admin", &["get", "jobs", "-n", "cron", "-o", "name"])
                .ok()?;
            let sets = cluster
                .kubectl("admin", &["get", "rs", "-n", "cron", "-o", "name"])
                .ok()?;
            let gone = cluster
                .kubectl_with("admin", &["get", "namespace", "work"], None, &[])
                .ok()?
                .code
                != 0;
            (jobs.lines().any(|l| l.contains("tick-")) && sets.trim().is_empty() && gone)
                .then_some(())
        },
    )?;
    // Let the last batches arrive.
    std::thread::sleep(Duration::from_secs(3));

    let findings = findings_since(&svc, t0);
    assert!(
        findings.is_empty(),
        "the control plane raised findings: {findings:#?}"
    );
    let stored = stored_verdicts(&svc, "dw-quiet", t0)?;
    eprintln!("stored since t0 (actor, verdict, changes): {stored:#?}");
    for (actor, verdict, n) in &stored {
        let expected = if actor == "ci-deployer" {
            "sanctioned"
        } else {
            "system"
        };
        assert_eq!(verdict, expected, "{actor}: {n} change(s)");
    }
    let actors: Vec<&str> = stored.iter().map(|(a, _, _)| a.as_str()).collect();
    for controller in [
        "deployment-controller",
        "replicaset-controller",
        "job-controller",
        "cronjob-controller",
        "namespace-controller",
        "generic-garbage-collector",
    ] {
        let sa = format!("system:serviceaccount:kube-system:{controller}");
        assert!(
            actors.contains(&sa.as_str()),
            "{controller} wrote nothing: {actors:?}"
        );
    }
    assert_eq!(
        cluster.counter("apiserver_audit_error_total", "webhook")?,
        0.0
    );
    Ok(())
}

/// The audit ids of the successful writes `user` made, from the API
/// server's own log backend (the same events, written as they happen).
fn logged_writes(cluster: &Cluster, user: &str) -> Result<std::collections::BTreeSet<String>> {
    let text = std::fs::read_to_string(cluster.audit_log())?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["user"]["username"] == user
                && e["stage"] == "ResponseComplete"
                && matches!(
                    e["verb"].as_str(),
                    Some("create" | "patch" | "update" | "delete")
                )
                && e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| (200..300).contains(&c))
        })
        .filter_map(|e| e["auditID"].as_str().map(str::to_owned))
        .collect())
}

/// The audit ids driftwatch stored for `user`.
fn stored_ids(svc: &Service, name: &str, user: &str) -> Result<std::collections::BTreeSet<String>> {
    Ok(stored_changes(svc, name, &format!("actor={user}"))?
        .iter()
        .filter_map(|c| c["audit_id"].as_str().map(str::to_owned))
        .collect())
}

/// alice patches a ConfigMap `n` times.
fn patches(cluster: &Cluster, from: usize, n: usize) -> Result<()> {
    for i in from..from + n {
        let patch = format!(r#"{{"data":{{"n":"{i}"}}}}"#);
        cluster.kubectl(
            "alice",
            &["patch", "configmap", "load", "-n", "shop", "-p", &patch],
        )?;
    }
    Ok(())
}

/// driftwatch stopped for 30 s while people write: the API server's own
/// retries (its default backoff, 10 s growing 1.5x, five tries) deliver every
/// batch once driftwatch is back on the same address, and nothing is missing
/// from the history.
#[test]
fn the_api_servers_retries_deliver_what_an_outage_missed() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (svc, cluster) = start("dw-outage", 500, &[])?;
    cluster.kubectl("ci-deployer", &["create", "namespace", "shop"])?;
    cluster.kubectl("alice", &["create", "configmap", "load", "-n", "shop"])?;
    patches(&cluster, 0, 5)?;
    let listen = svc.base.trim_start_matches("https://").to_owned();
    let config = config("dw-outage")?;
    let (code, dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0);

    let down = std::time::Instant::now();
    patches(&cluster, 5, 20)?;
    let wait = Duration::from_secs(30).saturating_sub(down.elapsed());
    std::thread::sleep(wait);
    let outage = down.elapsed();
    let svc = Service::start_at(dir, Some(&config), &listen)?;

    let logged = logged_writes(&cluster, "alice")?;
    assert_eq!(logged.len(), 26, "the create and 25 patches");
    let missing = wait_until(
        Duration::from_secs(120),
        || "every write of alice's in the history".to_owned(),
        || {
            let stored = stored_ids(&svc, "dw-outage", "alice").ok()?;
            let missing: Vec<&String> = logged.difference(&stored).collect();
            missing.is_empty().then_some(missing.len())
        },
    )?;
    assert_eq!(missing, 0);
    let dropped = cluster.counter("apiserver_audit_error_total", "webhook")?;
    let retried = cluster.counter("apiserver_audit_event_total", "")?;
    eprintln!(
        "outage of {outage:?}: {} writes logged, all stored {:?} after the restart; API server: {dropped} events dropped, {retried} audited",
        logged.len(),
        down.elapsed() - outage
    );
    assert_eq!(dropped, 0.0, "the API server dropped nothing");
    Ok(())
}

/// driftwatch's queue full (its findings sink, a FIFO nobody reads, blocks
/// the engine; `server.queue_batches: 1`): the webhook answers `429`, the
/// API server retries (initial backoff 1 s) and, once its buffer (100
/// events) is full or a batch's tries are spent, drops events and counts
/// them in `apiserver_audit_error_total`. Whatever it did not count as
/// dropped is in the history once driftwatch is unblocked: nothing is lost
/// silently.
#[test]
fn a_full_queue_answers_429_and_only_what_the_api_server_counts_is_lost() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("findings.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    ensure!(made.success(), "mkfifo failed");
    // Opened for reading before driftwatch opens it for writing (an open
    // of a FIFO waits for the other side); read only once released.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let reader_fifo = fifo.clone();
    let reader = std::thread::spawn(move || -> Result<usize> {
        use std::io::Read;
        let mut f = std::fs::File::open(&reader_fifo)?;
        let _ = released.recv();
        let mut sink = Vec::new();
        Ok(f.read_to_end(&mut sink)?)
    });
    let config = format!(
        "{}sinks:\n  file:\n    path: {}\n",
        config("dw-429")?.replacen("server:\n", "server:\n  queue_batches: 1\n", 1),
        fifo.display()
    );
    let svc = Service::start_in(dir, Some(&config))?;
    let url = format!("{}/audit/webhook/dw-429", svc.base);
    let cluster = Cluster::start(
        "dw-429",
        600,
        &url,
        &[
            "--webhook-initial-backoff",
            "1s",
            "--apiserver-arg=--audit-webhook-batch-buffer-size=100",
            "--apiserver-arg=--audit-webhook-batch-max-size=10",
        ],
    )?;
    cluster.kubectl("ci-deployer", &["create", "namespace", "shop"])?;
    cluster.kubectl("alice", &["create", "configmap", "load", "-n", "shop"])?;
    // Findings fill the pipe's 64 KiB; then the engine waits, its queue
    // fills, and every further batch is refused with 429.
    patches(&cluster, 0, 150)?;
    let refused = wait_until(
        Duration::from_secs(60),
        || "429s".to_owned(),
        || {
            let text = get(&svc, "dw-429", "/metrics").ok()?;
            Some(metric(
                &text,
                "driftwatch_webhook_requests_total{code=\"429\"}",
            ))
            .filter(|n| *n > 0.0)
        },
    )?;
    std::thread::sleep(Duration::from_secs(15));
    release.send(()).ok();

    let logged = logged_writes(&cluster, "alice")?;
    let dropped = wait_until(
        Duration::from_secs(120),
        || "the API server's retries settle".to_owned(),
        || {
            let stored = stored_ids(&svc, "dw-429", "alice").ok()?;
            let missing = logged.difference(&stored).count() as f64;
            let dropped = cluster
                .counter("apiserver_audit_error_total", "webhook")
                .ok()?;
            (missing <= dropped).then_some((missing, dropped))
        },
    )?;
    let text = get(&svc, "dw-429", "/metrics")?;
    let refused_total = metric(&text, "driftwatch_webhook_requests_total{code=\"429\"}");
    eprintln!(
        "429 test: {} writes logged by the API server; {} missing from the history, {} events \
         the API server counted as dropped; driftwatch answered {refused_total} batches with 429 \
         (first seen after {refused} refusals)",
        logged.len(),
        dropped.0,
        dropped.1
    );
    drop(svc);
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    assert!(read > 64 * 1024, "the findings went through the FIFO");
    assert!(refused_total > 0.0);
    Ok(())
}

/// A counter's value from Prometheus text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
