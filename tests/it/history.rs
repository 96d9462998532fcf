//! History (issue 3): the SQLite store under `--data-dir`, the drift
//! lifecycle, field-level changes, the query API and `who-changed`, through
//! the real binary: `serve` over real HTTP, `replay --data-dir` and
//! `who-changed`, each on a real SQLite file in a temp dir.
//!
//! Every expectation follows from issue 3 and DESIGN.md (audit semantics,
//! classification, the finding contract), not from a recorded run. Event
//! times are relative to now, so that the default 30-day retention, which
//! runs when `serve` starts, never deletes what a test just wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use driftwatch_testkit::time::rfc3339_micros as rfc3339;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::common::{
    ALICE, ARGOCD_CONFIG as CONFIG, ARGOCD_SA, Answer, Ev, Run, Service, client, get_json, get_ok,
    post_events, post_json, run, send, wait_until,
};

const BOB: &str = "bob@example.com";
const BOB_GROUPS: &[&str] = &["oidc:sre", "system:authenticated"];

// ---------------------------------------------------------------------------
// Times of events.

/// A start time for a test's events: a few hours ago, on a whole second
/// plus a quarter, so that offsets give readable times.
pub(crate) fn recent_base() -> Timestamp {
    let now = Timestamp::now().as_second();
    Timestamp::from_second(now - 3 * 3600).expect("a valid time")
        + SignedDuration::from_micros(250_000)
}

pub(crate) fn secs(s: f64) -> SignedDuration {
    SignedDuration::from_micros((s * 1e6).round() as i64)
}

fn tracking_id(kind: &str, group: &str, ns: &str, name: &str) -> String {
    format!("shop:{group}/{kind}:{ns}/{name}")
}

// ---------------------------------------------------------------------------
// Objects as the API server returns them.

/// A Deployment of the `shop` Argo CD application.
#[derive(Clone)]
pub(crate) struct Deploy {
    ns: &'static str,
    name: &'static str,
    pub replicas: u64,
    image: String,
    resource_version: u64,
    generation: u64,
    /// Field managers, in the order they first wrote.
    pub managers: Vec<&'static str>,
    ready: u64,
}

impl Deploy {
    pub(crate) fn new(ns: &'static str, name: &'static str) -> Deploy {
        Deploy {
            ns,
            name,
            replicas: 3,
            image: format!("registry.example.com/shop/{name}:1.8.3"),
            resource_version: 48_213,
            generation: 1,
            managers: vec!["argocd-controller"],
            ready: 0,
        }
    }

    /// The manifest Argo CD sends on create.
    pub(crate) fn manifest(&self) -> Value {
        let mut v = self.object();
        if let Some(meta) = v["metadata"].as_object_mut() {
            for k in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
            ] {
                meta.remove(k);
            }
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        v
    }

    /// The whole object after a write: resourceVersion, generation,
    /// managedFields and status change with every write and are not
    /// changes anybody made.
    pub(crate) fn object(&self) -> Value {
        let managed: Vec<Value> = self
            .managers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                json!({
                    "manager": m,
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": format!("2026-11-20T09:{:02}:{:02}Z", 10 + i, self.resource_version % 60),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}}
                })
            })
            .collect();
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": self.name,
                "namespace": self.ns,
                "uid": "3f9a1c5e-7b2d-4e8f-a6c1-9d0b2e4f6a81",
                "resourceVersion": self.resource_version.to_string(),
                "generation": self.generation,
                "creationTimestamp": "2026-11-20T09:10:00Z",
                "labels": {
                    "app.kubernetes.io/name": self.name,
                    "app.kubernetes.io/part-of": "shop"
                },
                "annotations": {
                    "argocd.argoproj.io/tracking-id": tracking_id("Deployment", "apps", self.ns, self.name),
                    "deployment.kubernetes.io/revision": "1"
                },
                "managedFields": managed
            },
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": self.name}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": self.name}},
                    "spec": {
                        "containers": [{
                            "name": "app",
                            "image": self.image,
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}
                        }]
                    }
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600
            },
            "status": {
                "observedGeneration": self.generation.saturating_sub(1),
                "replicas": self.ready,
                "readyReplicas": self.ready,
                "availableReplicas": self.ready,
                "updatedReplicas": self.ready
            }
        })
    }

    /// The same object after one more write.
    pub(crate) fn next(&self, resource_version: u64) -> Deploy {
        let mut d = self.clone();
        d.resource_version = resource_version;
        d.generation += 1;
        d.ready = self.replicas;
        d
    }
}

pub(crate) fn deploy_uri(ns: &str, name: &str, query: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}?{query}")
}

/// The story on one Deployment: Argo CD creates it with 3 replicas,
/// alice scales it to 5 with `kubectl edit` 12 minutes later, and Argo CD's
/// next sync puts 3 back 187.25 s after that.
pub(crate) struct Story {
    pub create: Ev,
    pub edit: Ev,
    pub sync: Ev,
}

const RECONCILE_SECONDS: f64 = 187.25;

pub(crate) fn story(ns: &'static str, name: &'static str, base: Timestamp) -> Story {
    let created = Deploy::new(ns, name);
    let create = Ev::at(
        "create",
        &format!("/apis/apps/v1/namespaces/{ns}/deployments?fieldManager=argocd-controller"),
        base,
    )
    .by_argocd()
    .named(name)
    .bodies(created.manifest(), created.object());

    let mut scaled = created.next(48_377);
    scaled.replicas = 5;
    scaled.managers.push("kubectl-edit");
    let edit_at = base + secs(12.0 * 60.0 + 31.25);
    let edit = Ev::at(
        "patch",
        &deploy_uri(ns, name, "fieldManager=kubectl-edit&fieldValidation=Strict"),
        edit_at,
    )
    .bodies(json!({"spec": {"replicas": 5}}), scaled.object());

    let mut restored = scaled.next(48_412);
    restored.replicas = 3;
    let sync = Ev::at(
        "patch",
        &deploy_uri(ns, name, "fieldManager=argocd-controller"),
        edit_at + secs(RECONCILE_SECONDS),
    )
    .by_argocd()
    .bodies(json!({"spec": {"replicas": 3}}), restored.object());
    Story { create, edit, sync }
}

/// A ConfigMap of the `shop` application.
fn configmap(ns: &str, name: &str, data: Value, resource_version: u64) -> Value {
    json!({
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": "8e2d4c6a-1f3b-4a5c-9e7d-0b1a2c3d4e5f",
            "resourceVersion": resource_version.to_string(),
            "creationTimestamp": "2026-11-20T09:10:00Z",
            "annotations": {
                "argocd.argoproj.io/tracking-id": tracking_id("ConfigMap", "", ns, name)
            },
            "managedFields": [{
                "manager": "argocd-controller",
                "operation": "Update",
                "apiVersion": "v1",
                "time": format!("2026-11-20T09:10:{:02}Z", resource_version % 60),
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {}}
            }]
        },
        "data": data
    })
}

/// `kubectl exec -it POD -- sh` over WebSocket-less SPDY: verb `create`,
/// answered `101 Switching Protocols`.
fn kubectl_exec(ns: &str, pod: &str, time: Timestamp) -> Ev {
    Ev::at(
        "create",
        &format!(
            "/api/v1/namespaces/{ns}/pods/{pod}/exec?command=sh&container=app&stdin=true&stdout=true&tty=true"
        ),
        time,
    )
}

// ---------------------------------------------------------------------------
// Talking to the service.

/// Every item of a listing, following `next` cursors.
pub(crate) async fn all_items(svc: &Service, path: &str, limit: usize) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut req = client()?
            .get(svc.url(path))
            .query(&[("limit", limit.to_string())]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let Answer { status, json: page } = send(req, &format!("GET {path}")).await?;
        ensure!(
            status == 200,
            "GET {path} (cursor {cursor:?}): {status} {page}"
        );
        let got = page["items"]
            .as_array()
            .with_context(|| format!("no items in {page}"))?;
        ensure!(got.len() <= limit, "a page holds more than limit={limit}");
        items.extend(got.iter().cloned());
        match &page["next"] {
            Value::Null => return Ok(items),
            Value::String(next) => {
                ensure!(
                    got.len() == limit,
                    "a page with a next cursor is full, got {}",
                    got.len()
                );
                cursor = Some(next.clone());
            }
            other => bail!("next is neither a string nor null: {other}"),
        }
    }
    bail!("GET {path}: cursors never ended")
}

/// Proves that nothing else was emitted since `before` findings: stdout is
/// one ordered stream, so once a fresh marker finding shows up, anything
/// emitted earlier is visible too.
async fn assert_only_marker_since(svc: &Service, before: usize) -> Result<()> {
    let marker = Ev::at(
        "patch",
        &deploy_uri("shop", "marker", "fieldManager=kubectl-patch"),
        recent_base(),
    )
    .bodies(
        json!({"spec": {"replicas": 1}}),
        Deploy::new("shop", "marker").object(),
    );
    post_events(svc, &[&marker]).await?;
    let found = svc.wait_for_findings(before + 1)?;
    let new = &found[before..];
    ensure!(
        new.len() == 1 && new[0]["audit_id"] == json!(marker.id()),
        "unexpected findings were emitted: {new:#?}"
    );
    Ok(())
}

/// The value of a metric in `/metrics` (summed over its label sets).
async fn metric(svc: &Service, name: &str) -> Result<Option<f64>> {
    let resp = client()?.get(svc.url("/metrics")).send().await?;
    let text = resp.text().await?;
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if key == name || key.starts_with(&format!("{name}{{")) {
            let v: f64 = value
                .parse()
                .with_context(|| format!("metric line {line:?}"))?;
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    Ok(found)
}

fn ids_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["audit_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn find_by_id<'a>(items: &'a [Value], id: &str) -> Option<&'a Value> {
    items.iter().find(|i| i["id"] == json!(id))
}

fn same_time(a: &Value, b: Timestamp) -> bool {
    a.as_str()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .is_some_and(|t| t == b)
}

/// `changes` as path -> (old, new).
fn changes_of(v: &Value) -> BTreeMap<String, (Value, Value)> {
    v["changes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["path"].as_str().unwrap_or("").to_owned(),
                        (c["old"].clone(), c["new"].clone()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `changes` as path -> new.
fn new_values(v: &Value) -> BTreeMap<String, Value> {
    changes_of(v)
        .into_iter()
        .map(|(p, (_, new))| (p, new))
        .collect()
}

fn json_lines(run: &Run) -> Result<Vec<Value>> {
    run.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l}")))
        .collect()
}

fn write_log(dir: &std::path::Path, name: &str, events: &[&Ev]) -> Result<String> {
    let path = dir.join(name);
    let mut text = String::new();
    for e in events {
        text.push_str(&e.line());
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

fn write_config(dir: &std::path::Path, yaml: &str) -> Result<String> {
    let path = dir.join("driftwatch.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path.display().to_string())
}

// ---------------------------------------------------------------------------
// The scenario.

#[tokio::test]
async fn kubectl_edit_of_an_argo_managed_deployment_is_drift_until_the_next_sync() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let s = story("shop", "api", recent_base());

    post_events(&svc, &[&s.create]).await?;
    post_events(&svc, &[&s.edit]).await?;
    let findings = svc.wait_for_findings(1)?;
    ensure!(
        findings.len() == 1,
        "only alice's edit is drift: {findings:#?}"
    );
    let f = &findings[0];
    assert_eq!(f["audit_id"], json!(s.edit.id()), "{f}");
    assert_eq!(f["type"], "out_of_band_change", "{f}");
    assert_eq!(f["actor"]["username"], ALICE, "{f}");
    assert_eq!(f["actor"]["field_manager"], "kubectl-edit", "{f}");
    // The response objects differ in resourceVersion, generation,
    // managedFields and status too: none of that is a change.
    assert_eq!(
        f["changes"],
        json!([{"path": "spec.replicas", "old": 3, "new": 5}]),
        "{f}"
    );
    assert_eq!(f["drift"]["state"], "open", "{f}");
    assert_eq!(f["managed_by"]["tool"], "argocd", "{f}");
    assert!(
        matches!(f["severity"].as_str(), Some("high" | "critical")),
        "a change to a pipeline-managed object is at least high: {f}"
    );
    let drift_id = f["drift"]["id"]
        .as_str()
        .context("the finding names its drift")?
        .to_owned();

    let open = get_ok(&svc, "/api/v1/drifts?state=open").await?;
    let items = open["items"].as_array().context("items")?;
    assert_eq!(items.len(), 1, "{open}");
    assert_eq!(open["next"], Value::Null, "{open}");
    let d = find_by_id(items, &drift_id).context("the open drift is listed")?;
    assert_eq!(d["state"], "open", "{d}");
    assert_eq!(d["opened_by"], ALICE, "{d}");
    assert_eq!(d["cluster"], "prod-eu-1", "{d}");
    assert_eq!(d["resource"]["group"], "apps", "{d}");
    assert_eq!(d["resource"]["resource"], "deployments", "{d}");
    assert_eq!(d["resource"]["namespace"], "shop", "{d}");
    assert_eq!(d["resource"]["name"], "api", "{d}");
    assert!(same_time(&d["opened_at"], s.edit.time()), "{d}");
    assert_eq!(d["audit_ids"], json!([s.edit.id()]), "{d}");
    assert_eq!(
        d["changes"],
        json!([{"path": "spec.replicas", "old": 3, "new": 5}]),
        "{d}"
    );
    assert_eq!(d["closed_at"], Value::Null, "{d}");
    assert_eq!(d["closed_by"], Value::Null, "{d}");

    // Argo CD's next sync puts 3 back.
    post_events(&svc, &[&s.sync]).await?;
    let d = get_ok(&svc, &format!("/api/v1/drifts/{drift_id}")).await?;
    assert_eq!(d["id"], json!(drift_id), "{d}");
    assert_eq!(d["state"], "reconciled", "{d}");
    assert_eq!(d["opened_by"], ALICE, "{d}");
    assert_eq!(d["closed_by"]["pipeline"], "argocd", "{d}");
    assert_eq!(d["closed_by"]["audit_id"], json!(s.sync.id()), "{d}");
    assert!(same_time(&d["closed_at"], s.sync.time()), "{d}");
    let seconds = d["reconcile_seconds"]
        .as_f64()
        .with_context(|| format!("reconcile_seconds in {d}"))?;
    assert!(
        (seconds - RECONCILE_SECONDS).abs() < 1e-3,
        "time to reconcile is the time between the edit and the sync: {d}"
    );
    // The drift's audit ids are the out-of-band changes only.
    assert_eq!(d["audit_ids"], json!([s.edit.id()]), "{d}");
    let open = get_ok(&svc, "/api/v1/drifts?state=open").await?;
    assert_eq!(open["items"], json!([]), "{open}");
    let reconciled = get_ok(&svc, "/api/v1/drifts?state=reconciled").await?;
    assert_eq!(reconciled["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(reconciled["items"][0]["id"], json!(drift_id));

    // who-changed against the running server.
    let by_server = run(
        &[
            "who-changed",
            "deploy/api",
            "-n",
            "shop",
            "--server",
            &svc.base,
            "--output",
            "json",
        ],
        None,
    )?;
    ensure!(
        by_server.code == 0,
        "who-changed --server: {}",
        by_server.stderr
    );
    let by_server = json_lines(&by_server)?;

    let data = svc.data_dir();
    let data = data.to_str().context("utf-8 path")?.to_owned();
    let (code, _dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0, "serve exits cleanly on SIGTERM");

    // who-changed on the store the server left behind: a table...
    let table = run(
        &[
            "who-changed",
            "deploy/api",
            "-n",
            "shop",
            "--data-dir",
            &data,
        ],
        None,
    )?;
    ensure!(table.code == 0, "who-changed: {}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    let header: Vec<&str> = lines
        .first()
        .context("a header line")?
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "TIME", "ACTOR", "CLIENT", "VERB", "FIELDS", "VERDICT", "PIPELINE"
        ],
        "{}",
        table.stdout
    );
    let rows = &lines[1..];
    assert_eq!(rows.len(), 3, "create, edit, sync:\n{}", table.stdout);
    let alice_rows: Vec<&&str> = rows.iter().filter(|r| r.contains(ALICE)).collect();
    assert_eq!(alice_rows.len(), 1, "{}", table.stdout);
    for needle in ["kubectl", "patch", "spec.replicas", "drift"] {
        assert!(
            alice_rows[0].contains(needle),
            "{needle}: {}",
            alice_rows[0]
        );
    }
    let argo_rows: Vec<&&str> = rows.iter().filter(|r| r.contains(ARGOCD_SA)).collect();
    assert_eq!(argo_rows.len(), 2, "{}", table.stdout);
    for row in &argo_rows {
        assert!(
            row.contains("sanctioned") && row.contains("argocd"),
            "{row}"
        );
    }

    // ...and JSON lines, oldest first, the same items the server gave.
    let json_run = run(
        &[
            "who-changed",
            "deploy/api",
            "-n",
            "shop",
            "--data-dir",
            &data,
            "--output",
            "json",
        ],
        None,
    )?;
    ensure!(json_run.code == 0, "who-changed: {}", json_run.stderr);
    let by_store = json_lines(&json_run)?;
    assert_eq!(
        ids_of(&by_store),
        [s.create.id(), s.edit.id(), s.sync.id()],
        "{by_store:#?}"
    );
    assert_eq!(by_store[0]["actor"]["username"], ARGOCD_SA);
    assert_eq!(by_store[0]["verdict"], "sanctioned");
    assert_eq!(by_store[0]["pipeline"], "argocd");
    assert_eq!(by_store[1]["actor"]["username"], ALICE);
    assert_eq!(by_store[1]["verdict"], "drift");
    assert_eq!(
        by_store[1]["changes"],
        json!([{"path": "spec.replicas", "old": 3, "new": 5}])
    );
    assert_eq!(by_store[2]["actor"]["username"], ARGOCD_SA);
    assert_eq!(
        by_store[2]["changes"],
        json!([{"path": "spec.replicas", "old": 5, "new": 3}])
    );
    assert_eq!(by_server, by_store, "--server and --data-dir agree");

    // --field keeps the changes that touched that field.
    let field = run(
        &[
            "who-changed",
            "deploy/api",
            "-n",
            "shop",
            "--data-dir",
            &data,
            "--field",
            "spec.replicas",
            "--output",
            "json",
        ],
        None,
    )?;
    ensure!(field.code == 0, "who-changed --field: {}", field.stderr);
    assert_eq!(ids_of(&json_lines(&field)?), [s.edit.id(), s.sync.id()]);
    let other_field = run(
        &[
            "who-changed",
            "deploy/api",
            "-n",
            "shop",
            "--data-dir",
            &data,
            "--field",
            "spec.template",
            "--output",
            "json",
        ],
        None,
    )?;
    ensure!(other_field.code == 0, "{}", other_field.stderr);
    assert_eq!(json_lines(&other_field)?, Vec::<Value>::new());
    // A field and everything below it, not any path that starts alike.
    for (field, want) in [
        ("spec", vec![s.edit.id(), s.sync.id()]),
        ("spec.rep", vec![]),
    ] {
        let found = run(
            &[
                "who-changed",
                "deploy/api",
                "-n",
                "shop",
                "--data-dir",
                &data,
                "--field",
                field,
                "--output",
                "json",
            ],
            None,
        )?;
        ensure!(found.code == 0, "{}", found.stderr);
        assert_eq!(ids_of(&json_lines(&found)?), want, "--field {field}");
    }
    Ok(())
}

/// Delivery is unordered: a retried batch can bring an Argo CD sync from
/// before the edit after it. That older sync did not put anything back.
#[tokio::test]
async fn a_sanctioned_change_older_than_the_drift_does_not_close_it() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let s = story("shop", "api", recent_base());
    let mut earlier = Deploy::new("shop", "api").next(48_300);
    earlier.image = "registry.example.com/shop/api:1.8.4".to_owned();
    let late_sync = Ev::at(
        "patch",
        &deploy_uri("shop", "api", "fieldManager=argocd-controller"),
        s.edit.time() - secs(300.0),
    )
    .by_argocd()
    .bodies(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": earlier.image}]}}}}),
        earlier.object(),
    );

    post_events(&svc, &[&s.create, &s.edit]).await?;
    let findings = svc.wait_for_findings(1)?;
    let drift_id = findings[0]["drift"]["id"]
        .as_str()
        .context("drift id")?
        .to_owned();
    post_events(&svc, &[&late_sync]).await?;
    let d = get_ok(&svc, &format!("/api/v1/drifts/{drift_id}")).await?;
    assert_eq!(d["state"], "open", "{d}");

    post_events(&svc, &[&s.sync]).await?;
    let d = get_ok(&svc, &format!("/api/v1/drifts/{drift_id}")).await?;
    assert_eq!(d["state"], "reconciled", "{d}");
    assert_eq!(d["closed_by"]["audit_id"], json!(s.sync.id()), "{d}");
    assert!((d["reconcile_seconds"].as_f64().unwrap_or(-1.0) - RECONCILE_SECONDS).abs() < 1e-3);

    // Field changes are not mixed up either: the late sync is not diffed
    // against alice's newer object (it did not scale anything back), and
    // the real sync is diffed against alice's object, not the late one.
    let stored = all_items(&svc, "/api/v1/changes", 100).await?;
    let changes = |e: &Ev| {
        stored
            .iter()
            .find(|i| i["audit_id"] == json!(e.id()))
            .map(changes_of)
            .unwrap_or_default()
    };
    let late = changes(&late_sync);
    assert_eq!(
        late.keys().collect::<Vec<_>>(),
        ["spec.template.spec.containers[name=app].image"],
        "{late:?}"
    );
    assert_eq!(
        late.values().next().map(|(_, new)| new),
        Some(&json!(earlier.image))
    );
    assert_eq!(
        changes(&s.sync),
        BTreeMap::from([("spec.replicas".to_owned(), (json!(5), json!(3)))])
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Restarts.

#[tokio::test]
async fn redelivering_the_whole_stream_after_a_restart_adds_nothing() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let base = recent_base();
    let s = story("shop", "api", base);
    let settings = json!({"LOG_LEVEL": "info"});
    let cm_create = Ev::at(
        "create",
        "/api/v1/namespaces/shop/configmaps?fieldManager=argocd-controller",
        base + secs(1.0),
    )
    .by_argocd()
    .named("settings")
    .bodies(
        configmap("shop", "settings", settings.clone(), 48_220),
        configmap("shop", "settings", settings, 48_220),
    );
    let cm_edit = Ev::at(
        "patch",
        "/api/v1/namespaces/shop/configmaps/settings?fieldManager=kubectl-patch",
        base + secs(1500.0),
    )
    .by(BOB, BOB_GROUPS)
    .bodies(
        json!({"data": {"LOG_LEVEL": "debug"}}),
        configmap("shop", "settings", json!({"LOG_LEVEL": "debug"}), 48_901),
    );
    let exec = kubectl_exec("shop", "api-7d9c5b8f4-x2k8q", base + secs(1560.0));
    let first = [&s.create, &s.edit, &cm_create];
    let second = [&s.sync, &cm_edit, &exec];

    post_events(&svc, &first).await?;
    post_events(&svc, &second).await?;
    let findings = svc.wait_for_findings(3)?;
    assert_eq!(
        findings
            .iter()
            .map(|f| f["audit_id"].as_str().unwrap_or("").to_owned())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([s.edit.id(), cm_edit.id(), exec.id()]),
        "{findings:#?}"
    );
    let changes = all_items(&svc, "/api/v1/changes", 100).await?;
    assert_eq!(
        changes.len(),
        6,
        "every sanctioned and drift change: {changes:#?}"
    );
    let drifts = all_items(&svc, "/api/v1/drifts", 100).await?;
    let states: BTreeMap<String, String> = drifts
        .iter()
        .map(|d| {
            (
                d["resource"]["resource"].as_str().unwrap_or("").to_owned(),
                d["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("configmaps".to_owned(), "open".to_owned()),
            ("deployments".to_owned(), "reconciled".to_owned()),
        ]),
        "interactive access opens no drift: {drifts:#?}"
    );

    let (code, dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0);
    let svc = Service::start_in(dir, Some(CONFIG))?;

    // The apiserver retries the same batches; then the whole stream again.
    for batch in [&first[..], &second[..], &[&first[..], &second[..]].concat()] {
        let answer = post_events(&svc, batch).await?;
        assert_eq!(answer["findings"], json!(0), "{answer}");
    }
    assert_eq!(all_items(&svc, "/api/v1/changes", 100).await?, changes);
    assert_eq!(all_items(&svc, "/api/v1/drifts", 100).await?, drifts);
    assert_only_marker_since(&svc, 0).await?;
    assert_eq!(
        all_items(&svc, "/api/v1/changes", 100).await?.len(),
        changes.len() + 1
    );
    Ok(())
}

#[tokio::test]
async fn an_open_drift_survives_a_restart_and_the_next_sync_closes_it() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let base = recent_base();
    let s = story("shop", "api", base);
    post_events(&svc, &[&s.create, &s.edit]).await?;
    let findings = svc.wait_for_findings(1)?;
    let drift_id = findings[0]["drift"]["id"]
        .as_str()
        .context("drift id")?
        .to_owned();
    assert_eq!(metric(&svc, "driftwatch_drifts_open").await?, Some(1.0));

    let (code, dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0);
    let svc = Service::start_in(dir, Some(CONFIG))?;

    let open = get_ok(&svc, "/api/v1/drifts?state=open").await?;
    let d = find_by_id(open["items"].as_array().context("items")?, &drift_id)
        .with_context(|| format!("the drift is still open after the restart: {open}"))?;
    assert_eq!(d["opened_by"], ALICE, "{d}");

    // Argo CD creating another object leaves the restored drift open.
    let other = Deploy::new("shop", "web");
    let create_web = Ev::at(
        "create",
        "/apis/apps/v1/namespaces/shop/deployments?fieldManager=argocd-controller",
        base + secs(60.0),
    )
    .by_argocd()
    .named("web")
    .bodies(other.manifest(), other.object());
    post_events(&svc, &[&create_web]).await?;
    assert_eq!(
        metric(&svc, "driftwatch_drifts_open").await?,
        Some(1.0),
        "the gauge counts the drift restored from the store"
    );

    post_events(&svc, &[&s.sync]).await?;
    let d = get_ok(&svc, &format!("/api/v1/drifts/{drift_id}")).await?;
    assert_eq!(d["state"], "reconciled", "{d}");
    assert_eq!(d["closed_by"]["pipeline"], "argocd", "{d}");
    assert_eq!(d["closed_by"]["audit_id"], json!(s.sync.id()), "{d}");
    let seconds = d["reconcile_seconds"]
        .as_f64()
        .context("reconcile_seconds")?;
    assert!((seconds - RECONCILE_SECONDS).abs() < 1e-3, "{d}");
    assert_eq!(metric(&svc, "driftwatch_drifts_open").await?, Some(0.0));
    assert_eq!(
        metric(&svc, "driftwatch_drift_reconcile_seconds_count").await?,
        Some(1.0)
    );
    let sum = metric(&svc, "driftwatch_drift_reconcile_seconds_sum")
        .await?
        .context("the reconcile histogram has a sum")?;
    assert!((sum - RECONCILE_SECONDS).abs() < 1e-3, "{sum}");
    // The sync is sanctioned: nothing on stdout after the restart.
    assert_only_marker_since(&svc, 0).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Verified reconcile.

/// The container had no env: the edit adds the list.
const ENV_DEBUG: &str = "spec.template.spec.containers[name=app].env";

/// A Deployment object with `DEBUG=1` in its container's env.
fn with_debug_env(mut object: Value) -> Value {
    object["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "DEBUG", "value": "1"}]);
    object
}

/// The case: `kubectl edit` adds an env var, then Argo CD's
/// server-side apply, which does not own that field, changes the image and
/// leaves the env var in the live object. The drift is not reconciled: it
/// persists (across a restart), its age is a metric past the alert
/// threshold, and the pipeline's next write that removes the env var
/// closes it, verified.
#[tokio::test]
async fn a_pipeline_write_that_leaves_a_drifted_field_keeps_the_drift_open() -> Result<()> {
    let config = format!("{CONFIG}\ndrifts:\n  persisting_alert_after: 1m\n");
    let svc = Service::start(Some(&config))?;
    let base = recent_base();
    let created = Deploy::new("shop", "api");
    let create = Ev::at(
        "create",
        "/apis/apps/v1/namespaces/shop/deployments?fieldManager=argocd-controller",
        base,
    )
    .by_argocd()
    .named("api")
    .bodies(created.manifest(), created.object());
    let mut edited = created.next(48_377);
    edited.managers.push("kubectl-edit");
    let edit = Ev::at(
        "patch",
        &deploy_uri("shop", "api", "fieldManager=kubectl-edit&fieldValidation=Strict"),
        base + secs(60.0),
    )
    .bodies(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "DEBUG", "value": "1"}]}]}}}}),
        with_debug_env(edited.object()),
    );
    let mut applied = edited.next(48_412);
    applied.image = "registry.example.com/shop/api:1.8.4".to_owned();
    let apply = Ev::at(
        "patch",
        &deploy_uri("shop", "api", "fieldManager=argocd-controller&force=true"),
        base + secs(120.0),
    )
    .by_argocd()
    .bodies(applied.manifest(), with_debug_env(applied.object()));
    post_events(&svc, &[&create, &edit, &apply]).await?;

    let findings = svc.wait_for_findings(1)?;
    let f = &findings[0];
    assert_eq!(f["audit_id"], json!(edit.id()), "{f}");
    assert_eq!(changes_of(f).keys().collect::<Vec<_>>(), [ENV_DEBUG], "{f}");
    let drift_id = f["drift"]["id"].as_str().context("drift id")?.to_owned();
    let d = get_ok(&svc, &format!("/api/v1/drifts/{drift_id}")).await?;
    assert_eq!(d["state"], "persisting", "{d}");
    assert_eq!(d["persisting"]["paths"], json!([ENV_DEBUG]), "{d}");
    assert_eq!(d["persisting"]["pipeline"], "argocd", "{d}");
    assert_eq!(d["persisting"]["audit_id"], json!(apply.id()), "{d}");
    assert!(same_time(&d["persisting"]["since"], apply.time()), "{d}");
    assert_eq!(d["closed_by"], Value::Null, "{d}");
    // Still an open drift to whoever lists the open ones.
    let open = get_ok(&svc, "/api/v1/drifts?state=open").await?;
    assert_eq!(ids(&open["items"]), [drift_id.as_str()], "{open}");
    let persisting = get_ok(&svc, "/api/v1/drifts?state=persisting").await?;
    assert_eq!(
        ids(&persisting["items"]),
        [drift_id.as_str()],
        "{persisting}"
    );
    assert_eq!(
        metric(&svc, "driftwatch_drifts_persisting").await?,
        Some(1.0)
    );

    // Its fields survive a restart: another apply that leaves DEBUG keeps it
    // persisting, and the age is reported past the threshold.
    let (code, dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0);
    let svc = Service::start_in(dir, Some(&config))?;
    assert_eq!(
        metric(&svc, "driftwatch_drifts_persisting").await?,
        Some(1.0)
    );
    assert_eq!(
        metric(&svc, "driftwatch_drifts_persisting_overdue").await?,
        Some(1.0),
        "persisting since hours ago, past the 1m threshold"
    );
    let oldest = metric(&svc, "driftwatch_drift_persisting_oldest_seconds")
        .await?
        .context("the oldest persisting drift's age")?;
    assert!(oldest > 3600.0, "{oldest}");
    let warned = wait_until(
        Duration::from_secs(10),
        || "a warning naming drifts.persisting_alert_after".to_owned(),
        || {
            let logs = svc.logs.lock().map(|l| l.clone()).unwrap_or_default();
            logs.iter()
                .any(|l| l.contains("WARN") && l.contains("drifts.persisting_alert_after"))
                .then_some(())
        },
    );
    assert!(warned.is_ok(), "{warned:?}");
    let mut again = applied.next(48_500);
    again.image = "registry.example.com/shop/api:1.8.5".to_owned();
    let apply_again = Ev::at(
        "patch",
        &deploy_uri("shop", "api", "fieldManager=argocd-controller&force=true"),
        base + secs(180.0),
    )
    .by_argocd()
    .bodies(again.manifest(), with_debug_env(again.object()));
    post_events(&svc, &[&apply_again]).await?;
    let d = get_ok(&svc, &format!("/api/v1/drifts/{drift_id}")).await?;
    assert_eq!(d["state"], "persisting", "{d}");
    assert_eq!(d["persisting"]["audit_id"], json!(apply_again.id()), "{d}");
    assert!(
        same_time(&d["persisting"]["since"], apply.time()),
        "persisting since the first write that left it: {d}"
    );

    // A replace of the whole object without DEBUG puts it back: verified.
    let replaced = again.next(48_600);
    let replace = Ev::at(
        "update",
        &deploy_uri("shop", "api", "fieldManager=argocd-controller"),
        base + secs(240.0),
    )
    .by_argocd()
    .bodies(replaced.object(), replaced.object());
    post_events(&svc, &[&replace]).await?;
    let d = get_ok(&svc, &format!("/api/v1/drifts/{drift_id}")).await?;
    assert_eq!(d["state"], "reconciled", "{d}");
    assert_eq!(d["verification"], "verified", "{d}");
    assert_eq!(d["closed_by"]["audit_id"], json!(replace.id()), "{d}");
    assert_eq!(d["persisting"]["paths"], Value::Null, "{d}");
    assert_eq!(
        metric(&svc, "driftwatch_drifts_persisting").await?,
        Some(0.0)
    );
    assert_eq!(metric(&svc, "driftwatch_drifts_open").await?, Some(0.0));
    assert_only_marker_since(&svc, 0).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Accepting a drift.

#[tokio::test]
async fn accepting_a_drift_closes_it_once() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let base = recent_base();
    let s = story("shop", "api", base);
    let web = story("shop", "web", base + secs(5.0));
    post_events(&svc, &[&s.create, &s.edit, &web.create, &web.edit]).await?;
    let findings = svc.wait_for_findings(2)?;
    let drift_of = |id: &str| -> Result<String> {
        findings
            .iter()
            .find(|f| f["audit_id"] == json!(id))
            .and_then(|f| f["drift"]["id"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no drift for {id}: {findings:#?}"))
    };
    let api_drift = drift_of(&s.edit.id())?;
    let web_drift = drift_of(&web.edit.id())?;
    assert_ne!(api_drift, web_drift, "one drift per resource");

    let accept = format!("/api/v1/drifts/{api_drift}/accept");
    let Answer { status, json: d } =
        post_json(&svc, &accept, &json!({"by": "bob", "reason": "hotfix"})).await?;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["id"], json!(api_drift), "{d}");
    assert_eq!(d["state"], "accepted", "{d}");
    assert_eq!(d["closed_by"]["actor"], "bob", "{d}");
    assert_eq!(d["closed_by"]["reason"], "hotfix", "{d}");
    assert!(d["closed_at"].is_string(), "{d}");
    assert_eq!(
        get_ok(&svc, &format!("/api/v1/drifts/{api_drift}")).await?,
        d
    );

    let Answer { status, json: body } =
        post_json(&svc, &accept, &json!({"by": "bob", "reason": "again"})).await?;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].is_string(), "{body}");

    let Answer { status, json: body } = post_json(
        &svc,
        "/api/v1/drifts/00000000000000000000000000000000/accept",
        &json!({"by": "bob", "reason": "hotfix"}),
    )
    .await?;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");

    // Bad bodies are refused and leave the drift open.
    let web_accept = format!("/api/v1/drifts/{web_drift}/accept");
    for bad in [
        json!({"by": "bob"}),
        json!("hotfix"),
        json!({"by": 7, "reason": "x"}),
    ] {
        let Answer { status, json: body } = post_json(&svc, &web_accept, &bad).await?;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let Answer { status, json: body } = send(
        client()?
            .post(svc.url(&web_accept))
            .header("Content-Type", "application/json")
            .body("by=bob&reason=hotfix"),
        "POST accept with a form body",
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let d = get_ok(&svc, &format!("/api/v1/drifts/{web_drift}")).await?;
    assert_eq!(d["state"], "open", "{d}");

    // An accepted drift is closed: the next sync does not reconcile it, and
    // the next out-of-band change opens a new one.
    post_events(&svc, &[&s.sync]).await?;
    let d = get_ok(&svc, &format!("/api/v1/drifts/{api_drift}")).await?;
    assert_eq!(d["state"], "accepted", "{d}");
    let mut again = Deploy::new("shop", "api").next(48_500);
    again.replicas = 7;
    let edit_again = Ev::at(
        "patch",
        &deploy_uri("shop", "api", "fieldManager=kubectl-edit"),
        s.sync.time() + secs(30.0),
    )
    .bodies(json!({"spec": {"replicas": 7}}), again.object());
    post_events(&svc, &[&edit_again]).await?;
    let findings = svc.wait_for_findings(3)?;
    let f = &findings[2];
    assert_eq!(f["audit_id"], json!(edit_again.id()), "{f}");
    assert_eq!(f["drift"]["state"], "open", "{f}");
    assert_ne!(f["drift"]["id"], json!(api_drift), "{f}");
    let accepted = get_ok(&svc, "/api/v1/drifts?state=accepted").await?;
    assert_eq!(ids(&accepted["items"]), [api_drift]);
    Ok(())
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["id"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Field-level changes of each write flavour, through `replay --data-dir`.

const OLD_PASSWORD_B64: &str = "VHIwdWI0ZG9yJjMtb2xkLWRiLXBhc3M=";
const OLD_PASSWORD: &str = "Tr0ub4dor&3-old-db-pass";
const NEW_PASSWORD_B64: &str = "bjN3LUhvdGZpeC1kYi1wYXNzLTc3MzE=";
const NEW_PASSWORD: &str = "n3w-Hotfix-db-pass-7731";
const API_KEY: &str = "sk_live_51HqLyjWDarjtT1zdp7dc";
const API_KEY_B64: &str = "c2tfbGl2ZV81MUhxTHlqV0Rhcmp0VDF6ZHA3ZGM=";
const TOKEN_B64: &str = "dG9rLTlmOGU3ZDZjNWI0YS1wbGFpbnRleHQ=";
const TOKEN: &str = "tok-9f8e7d6c5b4a-plaintext";
const SECRET_STRINGS: &[&str] = &[
    OLD_PASSWORD_B64,
    OLD_PASSWORD,
    NEW_PASSWORD_B64,
    NEW_PASSWORD,
    API_KEY,
    API_KEY_B64,
    TOKEN_B64,
    TOKEN,
];

fn secret(name: &str, data: Value, annotations: Value, resource_version: u64) -> Value {
    json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": "6d5c4b3a-2f1e-4d0c-9b8a-7f6e5d4c3b2a",
            "resourceVersion": resource_version.to_string(),
            "creationTimestamp": "2026-11-20T09:10:00Z",
            "annotations": annotations,
            "managedFields": [{
                "manager": "argocd-controller",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2026-11-20T09:10:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {}}
            }]
        },
        "data": data
    })
}

#[tokio::test]
async fn each_write_flavour_yields_its_field_paths() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), CONFIG)?;
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().context("utf-8 path")?.to_owned();
    let base = recent_base();
    let mut t = 0.0;
    let mut next = || {
        t += 7.5;
        base + secs(t)
    };

    // kubectl patch --type=json: ops on JSON pointers (`~1` is `/`, `~0`
    // is `~`); `test` changes nothing.
    let json_patch = Ev::at(
        "patch",
        &deploy_uri("shop", "web", "fieldManager=kubectl-patch"),
        next(),
    )
    .bodies(
        json!([
            {"op": "test", "path": "/spec/replicas", "value": 3},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1version", "value": "1.8.4"},
            {"op": "add", "path": "/metadata/annotations/ops.example.com~1note~0v2", "value": "paged"},
            {"op": "remove", "path": "/spec/template/spec/containers/0/resources/limits/cpu"}
        ]),
        Deploy::new("shop", "web").next(50_001).object(),
    );

    // kubectl patch --type=merge.
    let merge_patch = Ev::at(
        "patch",
        &deploy_uri("shop", "cart", "fieldManager=kubectl-patch"),
        next(),
    )
    .bodies(
        json!({
            "metadata": {"labels": {"team": "payments"}},
            "spec": {"replicas": 2, "template": {"spec": {"nodeSelector": null}}}
        }),
        Deploy::new("shop", "cart").next(50_002).object(),
    );

    // A strategic merge patch as kubectl writes it, with directives.
    let strategic = Ev::at(
        "patch",
        &deploy_uri("shop", "checkout", "fieldManager=kubectl-edit"),
        next(),
    )
    .bodies(
        json!({
            "spec": {
                "strategy": {
                    "$retainKeys": ["rollingUpdate", "type"],
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1}
                },
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "app"}, {"name": "istio-proxy"}],
                    "containers": [{"name": "app", "image": "registry.example.com/shop/checkout:3.4.1"}],
                    "volumes": [{"name": "cache", "$patch": "delete"}]
                }}
            }
        }),
        Deploy::new("shop", "checkout").next(50_003).object(),
    );

    // kubectl apply --server-side --force-conflicts creating an object:
    // verb patch, code 201, a whole object with apiVersion and kind.
    let apply_doc = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "worker", "namespace": "shop", "labels": {"tier": "backend"}},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "worker"}},
            "template": {
                "metadata": {"labels": {"app": "worker"}},
                "spec": {"containers": [{"name": "worker", "image": "registry.example.com/shop/worker:2.0.1"}]}
            }
        }
    });
    let mut applied = apply_doc.clone();
    applied["metadata"]["uid"] = json!("0f1e2d3c-4b5a-4697-8a8b-9c0d1e2f3a4b");
    applied["metadata"]["resourceVersion"] = json!("50004");
    applied["metadata"]["generation"] = json!(1);
    applied["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply",
        "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]);
    applied["status"] = json!({});
    let apply = Ev::at(
        "patch",
        &deploy_uri("shop", "worker", "fieldManager=kubectl&force=true"),
        next(),
    )
    .code(201)
    .bodies(apply_doc, applied);

    // kubectl replace: an update whose request is the whole object; old
    // values come from the previous event's response.
    let cm_before = configmap(
        "shop",
        "settings",
        json!({"LOG_LEVEL": "info", "FEATURE_X": "off"}),
        50_010,
    );
    let cm_create = Ev::at(
        "create",
        "/api/v1/namespaces/shop/configmaps?fieldManager=argocd-controller",
        next(),
    )
    .by_argocd()
    .named("settings")
    .bodies(cm_before.clone(), cm_before.clone());
    let mut cm_request = cm_before.clone();
    cm_request["data"] = json!({"LOG_LEVEL": "debug", "FEATURE_X": "off", "FEATURE_Y": "on"});
    let cm_after = configmap("shop", "settings", cm_request["data"].clone(), 50_011);
    let cm_update = Ev::at(
        "update",
        "/api/v1/namespaces/shop/configmaps/settings?fieldManager=kubectl-replace",
        next(),
    )
    .bodies(cm_request, cm_after);

    // Secrets: Argo CD creates one (client-side apply keeps a copy of the
    // values in last-applied-configuration); alice patches the password,
    // then adds a key through stringData; bob replaces another Secret's
    // whole data map with a JSON patch.
    let last_applied = json!({
        "kubectl.kubernetes.io/last-applied-configuration":
            format!("{{\"apiVersion\":\"v1\",\"data\":{{\"password\":\"{OLD_PASSWORD_B64}\"}},\"kind\":\"Secret\",\"metadata\":{{\"name\":\"db-credentials\",\"namespace\":\"shop\"}}}}\n"),
        "argocd.argoproj.io/tracking-id": tracking_id("Secret", "", "shop", "db-credentials")
    });
    let secret_v1 = secret(
        "db-credentials",
        json!({"password": OLD_PASSWORD_B64}),
        last_applied.clone(),
        50_020,
    );
    let secret_create = Ev::at(
        "create",
        "/api/v1/namespaces/shop/secrets?fieldManager=argocd-controller",
        next(),
    )
    .by_argocd()
    .named("db-credentials")
    .bodies(secret_v1.clone(), secret_v1);
    let secret_patch = Ev::at(
        "patch",
        "/api/v1/namespaces/shop/secrets/db-credentials?fieldManager=kubectl-patch",
        next(),
    )
    .bodies(
        json!({"data": {"password": NEW_PASSWORD_B64}}),
        secret(
            "db-credentials",
            json!({"password": NEW_PASSWORD_B64}),
            last_applied.clone(),
            50_021,
        ),
    );
    let secret_string_data = Ev::at(
        "patch",
        "/api/v1/namespaces/shop/secrets/db-credentials?fieldManager=kubectl-patch",
        next(),
    )
    .bodies(
        json!({"stringData": {"api-key": API_KEY}}),
        secret(
            "db-credentials",
            json!({"password": NEW_PASSWORD_B64, "api-key": API_KEY_B64}),
            last_applied,
            50_022,
        ),
    );
    let secret_json_patch = Ev::at(
        "patch",
        "/api/v1/namespaces/shop/secrets/api-token?fieldManager=kubectl-patch",
        next(),
    )
    .by(BOB, BOB_GROUPS)
    .bodies(
        json!([{"op": "replace", "path": "/data", "value": {"token": TOKEN_B64}}]),
        secret("api-token", json!({"token": TOKEN_B64}), json!({}), 50_030),
    );

    let events = [
        &json_patch,
        &merge_patch,
        &strategic,
        &apply,
        &cm_create,
        &cm_update,
        &secret_create,
        &secret_patch,
        &secret_string_data,
        &secret_json_patch,
    ];
    let log = write_log(dir.path(), "audit.log", &events)?;
    let replay = run(
        &["replay", "--config", &config, "--data-dir", &data, &log],
        None,
    )?;
    ensure!(replay.code == 0, "replay: {}", replay.stderr);
    let findings = replay.findings();
    let by_audit: BTreeMap<String, Value> = findings
        .iter()
        .map(|f| (f["audit_id"].as_str().unwrap_or("").to_owned(), f.clone()))
        .collect();
    ensure!(
        by_audit.len() == 8,
        "every write but Argo CD's is drift: {findings:#?}"
    );
    let finding = |e: &Ev| -> Result<&Value> {
        by_audit
            .get(&e.id())
            .with_context(|| format!("no finding for {}", e.id()))
    };

    // JSON patch.
    let f = finding(&json_patch)?;
    let got = new_values(f);
    assert_eq!(got.len(), 4, "four ops change something: {f}");
    assert_eq!(got.get("spec.replicas"), Some(&json!(4)), "{f}");
    assert_eq!(
        got.get("spec.template.spec.containers[0].resources.limits.cpu"),
        Some(&Value::Null),
        "{f}"
    );
    let label = got
        .iter()
        .find(|(p, _)| p.starts_with("metadata.labels") && p.contains("app.kubernetes.io/version"))
        .with_context(|| format!("the label path, with ~1 decoded: {f}"))?;
    assert_eq!(label.1, &json!("1.8.4"));
    let note = got
        .iter()
        .find(|(p, _)| {
            p.starts_with("metadata.annotations") && p.contains("ops.example.com/note~v2")
        })
        .with_context(|| format!("the annotation path, with ~1 and ~0 decoded: {f}"))?;
    assert_eq!(note.1, &json!("paged"));
    assert!(got.keys().all(|p| !p.contains("~1")), "{f}");

    // Merge patch: leaf paths.
    let f = finding(&merge_patch)?;
    assert_eq!(
        new_values(f),
        BTreeMap::from([
            ("metadata.labels.team".to_owned(), json!("payments")),
            ("spec.replicas".to_owned(), json!(2)),
            ("spec.template.spec.nodeSelector".to_owned(), Value::Null),
        ]),
        "{f}"
    );

    // Strategic merge: directives understood, list items by merge key.
    let f = finding(&strategic)?;
    assert_eq!(
        new_values(f),
        BTreeMap::from([
            ("spec.strategy.type".to_owned(), json!("RollingUpdate")),
            ("spec.strategy.rollingUpdate.maxSurge".to_owned(), json!(1)),
            (
                "spec.template.spec.containers[name=app].image".to_owned(),
                json!("registry.example.com/shop/checkout:3.4.1")
            ),
            (
                "spec.template.spec.volumes[name=cache]".to_owned(),
                Value::Null
            ),
        ]),
        "{f}"
    );
    assert!(!f["changes"].to_string().contains('$'), "{f}");

    // Server-side apply: identity fields are not changes.
    let f = finding(&apply)?;
    assert_eq!(
        new_values(f),
        BTreeMap::from([
            ("metadata.labels.tier".to_owned(), json!("backend")),
            ("spec.replicas".to_owned(), json!(6)),
            ("spec.selector.matchLabels.app".to_owned(), json!("worker")),
            (
                "spec.template.metadata.labels.app".to_owned(),
                json!("worker")
            ),
            (
                "spec.template.spec.containers[name=worker].image".to_owned(),
                json!("registry.example.com/shop/worker:2.0.1")
            ),
        ]),
        "{f}"
    );
    assert_eq!(f["actor"]["field_manager"], "kubectl", "{f}");

    // Update: old and new from the responses of consecutive events.
    let f = finding(&cm_update)?;
    assert_eq!(
        changes_of(f),
        BTreeMap::from([
            ("data.LOG_LEVEL".to_owned(), (json!("info"), json!("debug"))),
            ("data.FEATURE_Y".to_owned(), (Value::Null, json!("on"))),
        ]),
        "{f}"
    );
    assert_eq!(f["managed_by"]["tool"], "argocd", "{f}");

    // Secrets: the keys, never the values.
    let f = finding(&secret_patch)?;
    assert_eq!(
        changes_of(f).keys().collect::<Vec<_>>(),
        ["data.password"],
        "{f}"
    );
    assert_eq!(f["changes"][0]["old"], Value::Null, "{f}");
    assert_eq!(f["changes"][0]["new"], Value::Null, "{f}");
    assert_eq!(f["changes"][0]["redacted"], json!(true), "{f}");
    let f = finding(&secret_string_data)?;
    assert!(
        changes_of(f).keys().any(|p| p.contains("api-key")),
        "the key is reported: {f}"
    );
    let f = finding(&secret_json_patch)?;
    assert!(
        changes_of(f).keys().any(|p| p.starts_with("data")),
        "the data map is reported: {f}"
    );
    assert!(
        f["changes"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["redacted"] == json!(true))),
        "{f}"
    );
    for s in SECRET_STRINGS {
        assert!(!replay.stdout.contains(s), "{s} printed in a finding");
        assert!(!replay.stderr.contains(s), "{s} printed in a log line");
    }

    // The store holds the same changes, and the sanctioned writes too.
    let svc = Service::start_in(dir, Some(CONFIG))?;
    let stored = all_items(&svc, "/api/v1/changes", 1000).await?;
    assert_eq!(stored.len(), events.len(), "{stored:#?}");
    for e in &events {
        let item = stored
            .iter()
            .find(|i| i["audit_id"] == json!(e.id()))
            .with_context(|| format!("{} is not stored", e.id()))?;
        match by_audit.get(&e.id()) {
            Some(f) => {
                assert_eq!(item["verdict"], "drift", "{item}");
                assert_eq!(item["changes"], f["changes"], "{item}");
                assert_eq!(item["id"], f["id"], "the change is the finding: {item}");
            }
            None => {
                assert_eq!(item["verdict"], "sanctioned", "{item}");
                assert_eq!(item["pipeline"], "argocd", "{item}");
            }
        }
    }
    // Parsed and written again, so that no JSON escape can hide a value.
    let text = serde_json::to_string(&stored)?;
    let drifts = all_items(&svc, "/api/v1/drifts", 1000).await?;
    let drift_text = serde_json::to_string(&drifts)?;
    for s in SECRET_STRINGS {
        assert!(!text.contains(s), "{s} served by /api/v1/changes");
        assert!(!drift_text.contains(s), "{s} served by /api/v1/drifts");
    }
    let data_dir = svc.data_dir();
    let (code, _dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0);

    // Nor anywhere in the SQLite files (database, WAL, shared memory).
    let mut files = 0;
    for entry in std::fs::read_dir(&data_dir)? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        files += 1;
        for s in SECRET_STRINGS {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} is stored in {}",
                path.display()
            );
        }
    }
    assert!(files >= 1, "the store is in {}", data_dir.display());
    Ok(())
}

// ---------------------------------------------------------------------------
// Queries: pagination and filters.

/// What one generated change is, per DESIGN.md's classification.
struct Planned {
    ev: Ev,
    time_us: i64,
    namespace: &'static str,
    resource: &'static str,
    name: String,
    actor: &'static str,
    verdict: &'static str,
    finding_type: Option<&'static str>,
}

/// 250 writes over two namespaces: Argo CD syncs (sanctioned), alice's and
/// bob's edits (out-of-band), bob's `kubectl exec` sessions (interactive
/// access). Two events share each time, so pages break inside a tie.
fn planned(base: Timestamp) -> Vec<Planned> {
    (0..250u32)
        .map(|i| {
            let time = base + SignedDuration::from_millis(i64::from(i / 2) * 1500);
            let namespace = if i % 2 == 0 { "shop" } else { "payments" };
            let name = format!("svc-{}", i % 7);
            if i % 10 == 4 {
                let pod = format!("{name}-7d9c5b8f4-x2k8q");
                return Planned {
                    ev: kubectl_exec(namespace, &pod, time).by(BOB, BOB_GROUPS),
                    time_us: time.as_microsecond(),
                    namespace,
                    resource: "pods",
                    name: pod,
                    actor: BOB,
                    verdict: "drift",
                    finding_type: Some("interactive_access"),
                };
            }
            let (resource, uri) = if i % 5 == 0 {
                (
                    "configmaps",
                    format!("/api/v1/namespaces/{namespace}/configmaps/{name}"),
                )
            } else {
                (
                    "deployments",
                    format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}"),
                )
            };
            let patch =
                json!({"metadata": {"annotations": {"shop.example.com/change": i.to_string()}}});
            let (ev, actor, verdict, finding_type) = match i % 3 {
                0 => (
                    Ev::at(
                        "patch",
                        &format!("{uri}?fieldManager=argocd-controller"),
                        time,
                    )
                    .by_argocd(),
                    ARGOCD_SA,
                    "sanctioned",
                    None,
                ),
                1 => (
                    Ev::at(
                        "patch",
                        &format!("{uri}?fieldManager=kubectl-annotate"),
                        time,
                    ),
                    ALICE,
                    "drift",
                    Some("out_of_band_change"),
                ),
                _ => (
                    Ev::at(
                        "patch",
                        &format!("{uri}?fieldManager=kubectl-annotate"),
                        time,
                    )
                    .by(BOB, BOB_GROUPS),
                    BOB,
                    "drift",
                    Some("out_of_band_change"),
                ),
            };
            let mut ev = ev;
            ev.0["level"] = json!("Request");
            ev.0["requestObject"] = patch;
            Planned {
                ev,
                time_us: time.as_microsecond(),
                namespace,
                resource,
                name,
                actor,
                verdict,
                finding_type,
            }
        })
        .collect()
}

/// Which planned changes a filter should keep.
type Keep = Box<dyn Fn(&Planned) -> bool>;

fn id_set<'a>(items: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    items
        .into_iter()
        .map(|i| i["audit_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn changes_paginate_and_filter() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), CONFIG)?;
    let data = dir.path().join("data");
    let data = data.to_str().context("utf-8 path")?.to_owned();
    let base = recent_base();
    let plan = planned(base);
    let log = write_log(
        dir.path(),
        "audit.log",
        &plan.iter().map(|p| &p.ev).collect::<Vec<_>>(),
    )?;
    let replay = run(
        &["replay", "--config", &config, "--data-dir", &data, &log],
        None,
    )?;
    ensure!(replay.code == 0, "replay: {}", replay.stderr);
    let drifts = plan.iter().filter(|p| p.verdict == "drift").count();
    assert_eq!(replay.findings().len(), drifts);

    let svc = Service::start_in(dir, Some(CONFIG))?;

    // Pages of 100: 100, 100, 50, then no cursor.
    let mut cursor: Option<String> = None;
    let mut walked: Vec<Value> = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let mut req = client()?
            .get(svc.url("/api/v1/changes"))
            .query(&[("limit", "100")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let Answer { status, json: page } = send(req, "GET /api/v1/changes").await?;
        ensure!(status == 200, "{status} {page}");
        let items = page["items"].as_array().context("items")?;
        sizes.push(items.len());
        walked.extend(items.iter().cloned());
        match &page["next"] {
            Value::String(c) => cursor = Some(c.clone()),
            Value::Null => break,
            other => bail!("next: {other}"),
        }
        ensure!(sizes.len() < 10, "cursors never end");
    }
    assert_eq!(sizes, [100, 100, 50]);
    let expected_ids: BTreeSet<String> = plan.iter().map(|p| p.ev.id()).collect();
    assert_eq!(id_set(&walked), expected_ids, "250 distinct changes");
    let times: Vec<i64> = walked
        .iter()
        .map(|i| {
            i["time"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(|t| t.as_microsecond())
                .expect("items carry an RFC 3339 time")
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let planned_times: BTreeMap<String, i64> =
        plan.iter().map(|p| (p.ev.id(), p.time_us)).collect();
    for (item, t) in walked.iter().zip(&times) {
        assert_eq!(
            planned_times.get(item["audit_id"].as_str().unwrap_or("")),
            Some(t)
        );
    }
    // Odd-sized pages break between two changes of the same time: the same
    // order, nothing lost or repeated.
    let small = all_items(&svc, "/api/v1/changes", 7).await?;
    assert_eq!(ids_of(&small), ids_of(&walked));
    // Drifts paginate the same way.
    let drifts = all_items(&svc, "/api/v1/drifts", 1000).await?;
    ensure!(drifts.len() > 3, "{drifts:#?}");
    assert_eq!(all_items(&svc, "/api/v1/drifts", 3).await?, drifts);
    assert_eq!(
        drifts
            .iter()
            .map(|d| d["id"].as_str().unwrap_or(""))
            .collect::<BTreeSet<_>>()
            .len(),
        drifts.len()
    );

    // Filters, each against what the events are.
    let since = base + SignedDuration::from_millis(60_750);
    let until = base + SignedDuration::from_millis(120_750);
    let cases: Vec<(String, Keep)> = vec![
        (
            "namespace=payments".into(),
            Box::new(|p| p.namespace == "payments"),
        ),
        (
            "resource=configmaps".into(),
            Box::new(|p| p.resource == "configmaps"),
        ),
        ("name=svc-3".into(), Box::new(|p| p.name == "svc-3")),
        ("actor=bob@example.com".into(), Box::new(|p| p.actor == BOB)),
        (
            format!("actor={ARGOCD_SA}"),
            Box::new(|p| p.actor == ARGOCD_SA),
        ),
        (
            "verdict=sanctioned".into(),
            Box::new(|p| p.verdict == "sanctioned"),
        ),
        ("verdict=drift".into(), Box::new(|p| p.verdict == "drift")),
        (
            "type=interactive_access".into(),
            Box::new(|p| p.finding_type == Some("interactive_access")),
        ),
        (
            "type=out_of_band_change&namespace=shop&resource=deployments".into(),
            Box::new(|p| {
                p.finding_type == Some("out_of_band_change")
                    && p.namespace == "shop"
                    && p.resource == "deployments"
            }),
        ),
        (
            format!("since={}&until={}", rfc3339(since), rfc3339(until)),
            Box::new(move |p| {
                p.time_us >= since.as_microsecond() && p.time_us < until.as_microsecond()
            }),
        ),
        (
            format!("since={}", rfc3339(until)),
            Box::new(move |p| p.time_us >= until.as_microsecond()),
        ),
        (
            format!("until={}", rfc3339(since)),
            Box::new(move |p| p.time_us < since.as_microsecond()),
        ),
        ("namespace=kube-system".into(), Box::new(|_| false)),
    ];
    for (query, keep) in &cases {
        let want: BTreeSet<String> = plan.iter().filter(|p| keep(p)).map(|p| p.ev.id()).collect();
        let path = format!(
            "/api/v1/changes?{}",
            query
                .replace('@', "%40")
                .replace('+', "%2B")
                .replace(':', "%3A")
        );
        let got = all_items(&svc, &path, 1000).await?;
        assert_eq!(id_set(&got), want, "{query}");
        assert_eq!(got.len(), want.len(), "{query}");
    }

    // Bad parameters: 400 with a JSON error, never a 500 or an empty page.
    for bad in [
        "limit=0",
        "limit=ten",
        "limit=-5",
        "cursor=not-a-cursor",
        "cursor=123.abc",
        "since=yesterday",
        "since=2026-13-45T00:00:00Z",
        "until=7fortnights",
        "since=1000000000d",
        "since=99999999999999w",
        "colour=blue",
    ] {
        let Answer { status, json: body } =
            get_json(&svc, &format!("/api/v1/changes?{bad}")).await?;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {body}"
        );
    }
    for bad in [
        "state=closed",
        "limit=0",
        "cursor=x",
        "since=soon",
        "verdict=drift",
    ] {
        let Answer { status, json: body } =
            get_json(&svc, &format!("/api/v1/drifts?{bad}")).await?;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Retention.

#[tokio::test]
async fn retention_deletes_old_history_when_serve_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let yaml = format!("{CONFIG}history:\n  retention: 1d\n");
    let config = write_config(dir.path(), &yaml)?;
    let data = dir.path().join("data");
    let data = data.to_str().context("utf-8 path")?.to_owned();

    // A drift from 2020, reconciled in 2020; and one from a minute ago.
    let old = story("shop", "legacy", "2020-03-14T09:26:53.589793Z".parse()?);
    let now = Timestamp::now();
    let recent = story("shop", "api", now - secs(900.0));
    let log = write_log(
        dir.path(),
        "audit.log",
        &[
            &old.create,
            &old.edit,
            &old.sync,
            &recent.create,
            &recent.edit,
        ],
    )?;
    let replay = run(
        &["replay", "--config", &config, "--data-dir", &data, &log],
        None,
    )?;
    ensure!(replay.code == 0, "replay: {}", replay.stderr);
    // Replay does not apply retention: the old rows are there.
    let before = run(
        &[
            "who-changed",
            "deploy/legacy",
            "-n",
            "shop",
            "--data-dir",
            &data,
            "--output",
            "json",
        ],
        None,
    )?;
    ensure!(before.code == 0, "{}", before.stderr);
    assert_eq!(json_lines(&before)?.len(), 3);

    let svc = Service::start_in(dir, Some(&yaml))?;
    let old_ids = BTreeSet::from([old.create.id(), old.edit.id(), old.sync.id()]);
    let recent_ids = BTreeSet::from([recent.create.id(), recent.edit.id()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let items = loop {
        let items = all_items(&svc, "/api/v1/changes", 1000).await?;
        if id_set(&items).is_disjoint(&old_ids) {
            break items;
        }
        ensure!(
            Instant::now() < deadline,
            "old changes still stored: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(id_set(&items), recent_ids);

    let drifts = all_items(&svc, "/api/v1/drifts", 1000).await?;
    assert_eq!(
        drifts.len(),
        1,
        "the drift closed in 2020 is gone: {drifts:#?}"
    );
    assert_eq!(drifts[0]["state"], "open");
    assert_eq!(drifts[0]["audit_ids"], json!([recent.edit.id()]));

    let deleted = metric(&svc, "driftwatch_retention_deleted_rows_total")
        .await?
        .context("the retention counter is exported")?;
    assert!(
        deleted >= old_ids.len() as f64,
        "at least the {} old changes: {deleted}",
        old_ids.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// OpenAPI and the per-resource history route.

/// Every operation of the OpenAPI document is served by the router (a
/// handler answers, not the router's fallback), and an operation it does not
/// document is not: the document and the routes are one list.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_served_and_nothing_else() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let doc = get_ok(&svc, "/api/v1/openapi.json").await?;
    let client = crate::common::client()?;
    let concrete = |path: &str| {
        path.replace("{cluster}", "prod")
            .replace("{id}", "0123")
            .replace("{group}", "apps")
            .replace("{resource}", "deployments")
            .replace("{namespace}", "shop")
            .replace("{name}", "api")
    };
    let mut operations = 0;
    for (path, ops) in doc["paths"].as_object().context("paths")? {
        for method in ops.as_object().context("operations")?.keys() {
            let url = svc.url(&concrete(path));
            let req = match method.as_str() {
                "get" => client.get(&url),
                "post" => client.post(&url).body("{}"),
                other => bail!("unexpected method {other} for {path}"),
            };
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let body = resp.text().await?;
            // A handler's 404 ("no drift") and the router's fallback for an
            // unknown route both answer JSON; only the fallback says "no route".
            let routed = status != 405 && (status != 404 || !body.contains("no route for"));
            assert!(routed, "{method} {path}: {status} {body:?}");
            operations += 1;
        }
    }
    assert_eq!(operations, 14);
    let unknown = client.get(svc.url("/api/v1/nothing")).send().await?;
    assert_eq!(unknown.status().as_u16(), 404);
    let text = unknown.text().await?;
    assert!(
        text.contains("no route for"),
        "the fallback says why: {text}"
    );
    let wrong = client.delete(svc.url("/api/v1/changes")).send().await?;
    assert_eq!(
        wrong.status().as_u16(),
        405,
        "an undocumented method is refused"
    );
    Ok(())
}

#[tokio::test]
async fn openapi_document_and_history_of_core_and_cluster_scoped_objects() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let doc = get_ok(&svc, "/api/v1/openapi.json").await?;
    assert!(doc["openapi"].is_string(), "{doc}");
    for path in [
        "/api/v1/changes",
        "/api/v1/drifts",
        "/api/v1/drifts/{id}",
        "/api/v1/drifts/{id}/accept",
        "/api/v1/resources/{group}/{resource}/{namespace}/{name}/history",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }

    let base = recent_base();
    // Argo CD creates a Namespace (cluster-scoped, core group); alice
    // relaxes its pod security label; Argo CD's next sync removes it.
    let ns_object = |labels: Value, rv: u64| {
        json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": "shop-staging",
                "uid": "1a2b3c4d-5e6f-4789-8abc-def012345678",
                "resourceVersion": rv.to_string(),
                "creationTimestamp": "2026-11-20T09:10:00Z",
                "labels": labels,
                "annotations": {
                    "argocd.argoproj.io/tracking-id": "shop:/Namespace:shop-staging"
                }
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        })
    };
    let labels = json!({"kubernetes.io/metadata.name": "shop-staging"});
    let relaxed = json!({
        "kubernetes.io/metadata.name": "shop-staging",
        "pod-security.kubernetes.io/enforce": "privileged"
    });
    let ns_create = Ev::at(
        "create",
        "/api/v1/namespaces?fieldManager=argocd-controller",
        base,
    )
    .by_argocd()
    .named("shop-staging")
    .bodies(
        ns_object(labels.clone(), 700),
        ns_object(labels.clone(), 700),
    );
    let ns_label = Ev::at(
        "patch",
        "/api/v1/namespaces/shop-staging?fieldManager=kubectl-label",
        base + secs(60.0),
    )
    .bodies(
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}),
        ns_object(relaxed, 712),
    );
    let ns_sync = Ev::at(
        "patch",
        "/api/v1/namespaces/shop-staging?fieldManager=argocd-controller",
        base + secs(120.0),
    )
    .by_argocd()
    .bodies(
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": null}}}),
        ns_object(labels, 730),
    );
    // alice edits a ConfigMap (core group, namespaced).
    let cm_edit = Ev::at(
        "patch",
        "/api/v1/namespaces/shop/configmaps/settings?fieldManager=kubectl-edit",
        base + secs(90.0),
    )
    .bodies(
        json!({"data": {"LOG_LEVEL": "debug"}}),
        configmap("shop", "settings", json!({"LOG_LEVEL": "debug"}), 48_950),
    );
    post_events(&svc, &[&ns_create, &ns_label, &cm_edit]).await?;

    let history = get_ok(
        &svc,
        "/api/v1/resources/core/namespaces/_/shop-staging/history",
    )
    .await?;
    let items = history["items"].as_array().context("items")?;
    assert_eq!(
        ids_of(items),
        [ns_label.id(), ns_create.id()],
        "newest first: {history:#}"
    );
    for item in items {
        assert_eq!(item["resource"]["group"], "", "{item}");
        assert_eq!(item["resource"]["resource"], "namespaces", "{item}");
        assert_eq!(item["resource"]["namespace"], Value::Null, "{item}");
        assert_eq!(item["resource"]["name"], "shop-staging", "{item}");
    }
    assert_eq!(items[0]["verdict"], "drift");
    let label_changes = new_values(&items[0]);
    assert_eq!(label_changes.len(), 1, "{history:#}");
    let (path, new) = label_changes.iter().next().context("one change")?;
    assert!(
        path.starts_with("metadata.labels") && path.contains("pod-security.kubernetes.io/enforce"),
        "{path}"
    );
    assert_eq!(new, &json!("privileged"));
    let drift_id = items[0]["drift"]["id"]
        .as_str()
        .context("the label change opened a drift")?
        .to_owned();

    // The sync on the same Namespace reconciles alice's drift.
    post_events(&svc, &[&ns_sync]).await?;
    let d = get_ok(&svc, &format!("/api/v1/drifts/{drift_id}")).await?;
    assert_eq!(d["state"], "reconciled", "{d}");
    assert_eq!(d["closed_by"]["audit_id"], json!(ns_sync.id()), "{d}");
    assert_eq!(d["resource"]["namespace"], Value::Null, "{d}");

    let by_cli = run(
        &[
            "who-changed",
            "ns/shop-staging",
            "--server",
            &svc.base,
            "--output",
            "json",
        ],
        None,
    )?;
    ensure!(by_cli.code == 0, "{}", by_cli.stderr);
    assert_eq!(
        ids_of(&json_lines(&by_cli)?),
        [ns_create.id(), ns_label.id(), ns_sync.id()]
    );

    let history = get_ok(
        &svc,
        "/api/v1/resources/core/configmaps/shop/settings/history",
    )
    .await?;
    assert_eq!(
        ids_of(history["items"].as_array().context("items")?),
        [cm_edit.id()]
    );
    assert_eq!(history["items"][0]["resource"]["namespace"], "shop");
    assert_eq!(
        changes_of(&history["items"][0]).keys().collect::<Vec<_>>(),
        ["data.LOG_LEVEL"]
    );
    let none = get_ok(
        &svc,
        "/api/v1/resources/apps/configmaps/shop/settings/history",
    )
    .await?;
    assert_eq!(
        none["items"],
        json!([]),
        "the group is part of the identity"
    );
    Ok(())
}
