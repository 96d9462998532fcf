//! Live-object context against a real kube-apiserver (1.20.2 on loopback,
//! `scripts/kube-dev-cluster`) with a real controller-manager: driftwatch's
//! Kubernetes client reads as the `driftwatch` ServiceAccount bound to
//! exactly the ClusterRole of deploy/kubernetes/20-rbac.yaml, applied to
//! the cluster. The API server logs at `Metadata` level (a policy of that
//! one rule), as managed clusters do; the test posts those real events to
//! driftwatch's webhook itself, so it controls when each one arrives.
//!
//! Lookups go through a [`RecordingProxy`], which counts requests (the cache
//! hit path and negative caching make none) and, for the faults test, delays
//! or fails chosen paths: a real server will not be slow or answer 500 on
//! demand. The `dw-direct` cluster name reaches the API server directly, to
//! stop it mid-stream.
//!
//! 1.20's limits, seen here: `kubectl scale` (the scale subresource) leaves
//! managedFields as they were (fixed in 1.22), so the managed Deployment is
//! changed with `kubectl patch`, which files its fields as `kubectl-patch`.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    Cluster, Service, block_on, event_list, get_json, metric, post_json, wait_until,
};
use crate::receivers::RecordingProxy;

/// One control plane at a time from this module.
static SERIAL: Mutex<()> = Mutex::new(());

const ARGOCD_UA: &str = "argocd-application-controller/v2.13.1 (linux/amd64) kubernetes/a1b2c3d";

/// Bodies logged, as the policy in deploy/audit logs writes: the drift
/// keeps fingerprints of the values it wrote.
const REQUEST_RESPONSE_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: RequestResponse\n";

/// A Metadata-only audit policy: no request or response bodies.
const METADATA_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n";

struct Setup {
    cluster: Cluster,
    proxy: RecordingProxy,
    svc: Service,
    _files: tempfile::TempDir,
}

impl Setup {
    fn start(name: &str, port_offset: u16, lookup_timeout: &str) -> Result<Setup> {
        Setup::start_with(name, port_offset, lookup_timeout, "")
    }

    /// `kubernetes` holds more keys of `kubernetes:`, indented by two.
    fn start_with(
        name: &str,
        port_offset: u16,
        lookup_timeout: &str,
        kubernetes: &str,
    ) -> Result<Setup> {
        Setup::start_logging(
            name,
            port_offset,
            lookup_timeout,
            kubernetes,
            METADATA_POLICY,
        )
    }

    /// With the API server's audit policy `policy`.
    fn start_logging(
        name: &str,
        port_offset: u16,
        lookup_timeout: &str,
        kubernetes: &str,
        policy: &str,
    ) -> Result<Setup> {
        let files = tempfile::tempdir()?;
        let policy_text = policy;
        let policy = files.path().join("policy.yaml");
        std::fs::write(&policy, policy_text)?;
        let policy = policy.display().to_string();
        let cluster = Cluster::start(name, port_offset, "off", &["--audit-policy", &policy])?;
        for f in [
            "00-namespace.yaml",
            "10-serviceaccount.yaml",
            "20-rbac.yaml",
        ] {
            let path = format!("{}/deploy/kubernetes/{f}", env!("CARGO_MANIFEST_DIR"));
            cluster.kubectl("admin", &["apply", "-f", &path])?;
        }
        let token = service_account_token(&cluster)?;
        let ca = std::fs::read(cluster.env("CA"))?;
        let proxy = RecordingProxy::start(cluster.env("SERVER"), &ca)?;
        let kubeconfig = files.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&cluster, &proxy, &token))?;
        let config = format!(
            r#"cluster: {name}
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
kubernetes:
  enabled: true
  kubeconfig: {}
  context: proxied
  clusters:
    dw-direct: {{context: direct}}
  lookup_timeout: {lookup_timeout}
{kubernetes}"#,
            kubeconfig.display()
        );
        let svc = Service::start(Some(&config))?;
        cluster.kubectl("admin", &["create", "namespace", "shop"])?;
        Ok(Setup {
            cluster,
            proxy,
            svc,
            _files: files,
        })
    }

    /// The `ResponseComplete` event of the write `pred` picks, from the API
    /// server's (Metadata-level) audit log.
    fn logged(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let path = self.cluster.audit_log();
        wait_until(
            Duration::from_secs(30),
            || format!("{what} in {}", path.display()),
            || {
                let text = std::fs::read_to_string(&path).ok()?;
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|e| e["stage"] == "ResponseComplete")
                    .find(|e| pred(e))
            },
        )
    }

    /// alice's write of `verb` on `resource/name`, from the log.
    fn by_alice(&self, verb: &str, resource: &str, name: &str) -> Result<Value> {
        self.logged(&format!("alice's {verb} of {resource}/{name}"), |e| {
            e["user"]["username"] == "alice"
                && e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["name"] == name
                && e["objectRef"]["subresource"].is_null()
        })
    }

    /// Posts events as driftwatch's webhook receives them for `cluster`.
    fn post(&self, cluster: &str, events: &[Value]) -> Result<()> {
        let path = format!("/audit/webhook/{cluster}");
        let list = event_list(events.iter().cloned());
        let answer = block_on(post_json(&self.svc, &path, &list))?;
        ensure!(
            answer.status == 200,
            "webhook: {} {}",
            answer.status,
            answer.json
        );
        Ok(())
    }

    fn finding(&self, audit_id: &str) -> Result<Value> {
        self.svc.wait_for_finding(audit_id)
    }

    fn breaker_open(&self, cluster: &str) -> Option<f64> {
        let labels = format!("cluster=\"{cluster}\"");
        block_on(metric(
            &self.svc,
            "driftwatch_context_breaker_open",
            &labels,
        ))
        .ok()
        .flatten()
    }

    fn lookups(&self, outcome: &str) -> f64 {
        let labels = format!("outcome=\"{outcome}\"");
        block_on(metric(
            &self.svc,
            "driftwatch_context_lookups_total",
            &labels,
        ))
        .ok()
        .flatten()
        .unwrap_or(0.0)
    }
}

/// The token of ServiceAccount driftwatch/driftwatch (1.20's token
/// controller puts it in a Secret).
fn service_account_token(cluster: &Cluster) -> Result<String> {
    let secret = wait_until(
        Duration::from_secs(30),
        || "the driftwatch ServiceAccount's token Secret".to_owned(),
        || {
            let args = [
                "-n",
                "driftwatch",
                "get",
                "sa",
                "driftwatch",
                "-o",
                "jsonpath={.secrets[0].name}",
            ];
            let name = cluster.kubectl("admin", &args).ok()?;
            (!name.trim().is_empty()).then(|| name.trim().to_owned())
        },
    )?;
    let args = [
        "-n",
        "driftwatch",
        "get",
        "secret",
        &secret,
        "-o",
        "jsonpath={.data.token}",
    ];
    let encoded = cluster.kubectl("admin", &args)?;
    let token = base64::engine::general_purpose::STANDARD.decode(encoded.trim())?;
    Ok(String::from_utf8(token)?)
}

/// Two contexts for the one ServiceAccount: through the proxy, and direct.
fn kubeconfig_text(cluster: &Cluster, proxy: &RecordingProxy, token: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Config
clusters:
  - name: proxied
    cluster: {{server: "{proxied}"}}
  - name: direct
    cluster: {{server: "{direct}", certificate-authority: "{ca}"}}
users:
  - name: driftwatch
    user: {{token: "{token}"}}
contexts:
  - name: proxied
    context: {{cluster: proxied, user: driftwatch}}
  - name: direct
    context: {{cluster: direct, user: driftwatch}}
current-context: proxied
"#,
        proxied = proxy.url(),
        direct = cluster.env("SERVER"),
        ca = cluster.env("CA"),
    )
}

/// A copy of a logged event with its own audit id: the same request seen
/// again (another replica's log, say), a second finding on the object.
fn again(event: &Value, n: u32) -> Value {
    let mut e = event.clone();
    let id = format!("{}-again-{n}", e["auditID"].as_str().unwrap_or_default());
    e["auditID"] = json!(id);
    e
}

fn id(e: &Value) -> &str {
    e["auditID"].as_str().unwrap_or_default()
}

/// The Deployment as it is in Git, applied server-side by Argo CD.
fn git_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "api",
            "namespace": "shop",
            "annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/api"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            }
        }
    })
}

fn argocd_apply(cluster: &Cluster) -> Result<()> {
    let (code, answer) = cluster.request(
        "argocd",
        ARGOCD_UA,
        Method::PATCH,
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=argocd-controller&force=true",
        "application/apply-patch+yaml",
        &git_deployment(),
    )?;
    ensure!(matches!(code, 200 | 201), "apply: {code} {answer}");
    Ok(())
}

/// An Argo CD-managed Deployment patched by alice, its ReplicaSet edited, a
/// deleted ConfigMap and a Secret driftwatch may not read, all logged at
/// Metadata level: the live object supplies managed_by (and severity high),
/// the field managers with the takeover, the changes from managedFields,
/// the owner roll-up; 404 and 403 are cached and counted, and a cache hit
/// makes no request.
#[test]
fn live_context_fills_in_what_metadata_level_events_leave_out() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Setup::start("dw-ctx", 940, "5s")?;
    let alice = |args: &[&str]| s.cluster.kubectl("alice", args);

    // Argo CD syncs; its (sanctioned) write is looked up as it arrives.
    argocd_apply(&s.cluster)?;
    let sync = s.logged("Argo CD's apply", |e| {
        e["user"]["username"] == "system:serviceaccount:argocd:argocd-application-controller"
            && e["verb"] == "patch"
    })?;
    s.post("dw-ctx", &[sync])?;
    wait_until(
        Duration::from_secs(30),
        || format!("the sync's lookup; proxy saw {:?}", s.proxy.seen()),
        || (s.lookups("miss_ok") >= 1.0).then_some(()),
    )?;

    // alice patches the replicas: the event names no field and no marker.
    alice(&[
        "-n",
        "shop",
        "patch",
        "deployment",
        "api",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ])?;
    let patch = s.by_alice("patch", "deployments", "api")?;
    assert!(patch.get("requestObject").is_none(), "{patch}");
    s.post("dw-ctx", std::slice::from_ref(&patch))?;
    let f = s.finding(id(&patch))?;
    assert_eq!(f["context"], json!({"state": "live"}), "{f:#}");
    assert_eq!(
        f["managed_by"],
        json!({"tool": "argocd", "name": "shop"}),
        "{f:#}"
    );
    assert_eq!(f["severity"], "high", "{f:#}");
    assert_eq!(f["changes_source"], "managed_fields", "{f:#}");
    assert_eq!(
        f["changes"],
        json!([{"path": "spec.replicas", "old": null, "new": null}]),
        "{f:#}"
    );
    assert_eq!(
        f["field_managers"],
        json!([{"path": "spec.replicas", "managers": ["kubectl-patch"], "by": "kubectl-patch",
                "took_over_from": ["argocd-controller"]}]),
        "{f:#}"
    );

    // The same request again: answered from the cache, no request made.
    let before = s.proxy.count("/deployments/api");
    s.post("dw-ctx", &[again(&patch, 1)])?;
    let f = s.finding(&format!("{}-again-1", id(&patch)))?;
    assert_eq!(f["context"], json!({"state": "cached"}), "{f:#}");
    assert_eq!(f["managed_by"]["tool"], "argocd", "{f:#}");
    assert_eq!(
        s.proxy.count("/deployments/api"),
        before,
        "{:?}",
        s.proxy.seen()
    );
    assert!(s.lookups("hit") >= 1.0);

    // The controller-manager made the ReplicaSet; alice labels it.
    let rs = wait_until(
        Duration::from_secs(30),
        || "the Deployment's ReplicaSet".to_owned(),
        || {
            let args = [
                "-n",
                "shop",
                "get",
                "rs",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ];
            let name = s.cluster.kubectl("admin", &args).ok()?;
            (!name.trim().is_empty()).then(|| name.trim().to_owned())
        },
    )?;
    alice(&["-n", "shop", "label", "rs", &rs, "debug=true"])?;
    let label = s.by_alice("patch", "replicasets", &rs)?;
    s.post("dw-ctx", std::slice::from_ref(&label))?;
    let f = s.finding(id(&label))?;
    assert_eq!(f["owner"]["kind"], "Deployment", "{f:#}");
    assert_eq!(f["owner"]["name"], "api", "{f:#}");
    assert_eq!(f["context"]["state"], "live", "{f:#}");

    // A deleted ConfigMap: 404, and the second finding on it asks nothing.
    alice(&[
        "-n",
        "shop",
        "create",
        "configmap",
        "gone",
        "--from-literal=a=1",
    ])?;
    alice(&["-n", "shop", "delete", "configmap", "gone"])?;
    let delete = s.by_alice("delete", "configmaps", "gone")?;
    s.post("dw-ctx", std::slice::from_ref(&delete))?;
    let f = s.finding(id(&delete))?;
    assert_eq!(
        f["context"],
        json!({"state": "unavailable", "reason": "not_found"}),
        "{f:#}"
    );
    let asked = s.proxy.count("/configmaps/gone");
    assert_eq!(asked, 1, "{:?}", s.proxy.seen());
    s.post("dw-ctx", &[again(&delete, 1)])?;
    let f = s.finding(&format!("{}-again-1", id(&delete)))?;
    assert_eq!(f["context"]["reason"], "not_found", "{f:#}");
    assert_eq!(
        s.proxy.count("/configmaps/gone"),
        asked,
        "{:?}",
        s.proxy.seen()
    );
    assert!(s.lookups("not_found") >= 1.0);

    // A Secret: the ClusterRole grants no `get secrets`, so 403, counted,
    // and the finding goes out all the same.
    alice(&[
        "-n",
        "shop",
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=k=v",
    ])?;
    let create = s.by_alice("create", "secrets", "creds")?;
    s.post("dw-ctx", std::slice::from_ref(&create))?;
    let f = s.finding(id(&create))?;
    assert_eq!(
        f["context"],
        json!({"state": "unavailable", "reason": "forbidden"}),
        "{f:#}"
    );
    assert_eq!(f["type"], "out_of_band_change");
    assert!(s.lookups("forbidden") >= 1.0);
    // A later write to it: the 403 stands for negative_ttl, no request.
    let asked = s.proxy.count("/secrets/creds");
    alice(&["-n", "shop", "label", "secret", "creds", "rotated=yes"])?;
    let label = s.by_alice("patch", "secrets", "creds")?;
    s.post("dw-ctx", std::slice::from_ref(&label))?;
    let f = s.finding(id(&label))?;
    assert_eq!(f["context"]["reason"], "forbidden", "{f:#}");
    assert_eq!(
        s.proxy.count("/secrets/creds"),
        asked,
        "{:?}",
        s.proxy.seen()
    );
    Ok(())
}

/// A lookup slower than `lookup_timeout` (the proxy holds it), one the
/// proxy fails with 500 and one to an API server that was stopped: each
/// finding is emitted, marked unavailable with its reason; the slow answer
/// still fills the cache when it comes.
#[test]
fn slow_failing_and_stopped_api_servers_never_hold_back_a_finding() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Setup::start("dw-ctx-faults", 950, "1s")?;
    let alice = |args: &[&str]| s.cluster.kubectl("alice", args);
    for name in ["slow", "broken", "direct-a", "direct-b"] {
        alice(&[
            "-n",
            "shop",
            "create",
            "configmap",
            name,
            "--from-literal=a=1",
        ])?;
    }
    s.proxy.delay("/configmaps/slow", Duration::from_secs(3));
    s.proxy.fail("/configmaps/broken", 500);
    let slow = s.by_alice("create", "configmaps", "slow")?;
    let broken = s.by_alice("create", "configmaps", "broken")?;
    s.post("dw-ctx-faults", &[slow.clone(), broken.clone()])?;
    let f = s.finding(id(&slow))?;
    assert_eq!(
        f["context"],
        json!({"state": "unavailable", "reason": "timeout"}),
        "{f:#}"
    );
    let f = s.finding(id(&broken))?;
    assert_eq!(
        f["context"],
        json!({"state": "unavailable", "reason": "error"}),
        "{f:#}"
    );
    assert!(s.lookups("timeout") >= 1.0 && s.lookups("error") >= 1.0);
    // The slow answer arrives after its finding left, and is kept.
    wait_until(
        Duration::from_secs(30),
        || "the slow lookup's answer".to_owned(),
        || (s.lookups("miss_ok") >= 1.0).then_some(()),
    )?;
    s.post("dw-ctx-faults", &[again(&slow, 1)])?;
    let f = s.finding(&format!("{}-again-1", id(&slow)))?;
    assert_eq!(f["context"], json!({"state": "cached"}), "{f:#}");
    assert_eq!(s.proxy.count("/configmaps/slow"), 1, "{:?}", s.proxy.seen());

    // Straight to the API server (cluster dw-direct): one lookup works,
    // then the server stops and findings go on flowing.
    let a = s.by_alice("create", "configmaps", "direct-a")?;
    let b = s.by_alice("create", "configmaps", "direct-b")?;
    s.post("dw-direct", std::slice::from_ref(&a))?;
    let f = s.finding(id(&a))?;
    assert_eq!(f["context"]["state"], "live", "{f:#}");
    let Setup { cluster, svc, .. } = s;
    drop(cluster);
    let list = event_list([b.clone()]);
    let answer = block_on(post_json(&svc, "/audit/webhook/dw-direct", &list))?;
    ensure!(answer.status == 200, "webhook: {}", answer.status);
    let f = svc
        .wait_for_finding(id(&b))
        .context("finding after the stop")?;
    assert_eq!(f["context"]["state"], "unavailable", "{f:#}");
    assert!(
        matches!(f["context"]["reason"].as_str(), Some("error" | "timeout")),
        "{f:#}"
    );
    Ok(())
}

/// The API server black-holes metadata requests (the proxy holds them far
/// past `lookup_timeout`): after `breaker.failures` timed-out findings the
/// next ones come out `circuit_open` without a request; once the server
/// answers again, the probe after `open_for` closes the breaker and
/// context is live again.
#[test]
fn a_black_holed_api_server_opens_the_breaker_and_a_probe_closes_it() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Setup::start_with(
        "dw-ctx-breaker",
        960,
        "500ms",
        "  breaker: {failures: 3, open_for: 2s}\n",
    )?;
    let alice = |args: &[&str]| s.cluster.kubectl("alice", args);
    let names = ["hole-0", "hole-1", "hole-2", "hole-3", "hole-4", "probe"];
    for name in names {
        alice(&[
            "-n",
            "shop",
            "create",
            "configmap",
            name,
            "--from-literal=a=1",
        ])?;
    }
    let events = names
        .iter()
        .map(|n| s.by_alice("create", "configmaps", n))
        .collect::<Result<Vec<_>>>()?;
    s.proxy.delay("/configmaps/hole-", Duration::from_secs(120));

    // Three lookups time out, one batch each: the third opens the breaker.
    for e in &events[..3] {
        s.post("dw-ctx-breaker", std::slice::from_ref(e))?;
        let f = s.finding(id(e))?;
        assert_eq!(
            f["context"],
            json!({"state": "unavailable", "reason": "timeout"}),
            "{f:#}"
        );
    }
    assert_eq!(
        s.proxy.count("/configmaps/hole-"),
        3,
        "{:?}",
        s.proxy.seen()
    );
    assert_eq!(s.breaker_open("default"), Some(1.0));

    // The next findings go out at once, and nothing is asked for them.
    s.post("dw-ctx-breaker", &events[3..5])?;
    for e in &events[3..5] {
        let f = s.finding(id(e))?;
        assert_eq!(
            f["context"],
            json!({"state": "unavailable", "reason": "circuit_open"}),
            "{f:#}"
        );
    }
    assert_eq!(
        s.proxy.count("/configmaps/hole-3"),
        0,
        "{:?}",
        s.proxy.seen()
    );
    assert_eq!(
        s.proxy.count("/configmaps/hole-4"),
        0,
        "{:?}",
        s.proxy.seen()
    );
    assert!(s.lookups("circuit_open") >= 2.0);

    // The server answers again. Until open_for is over findings stay
    // circuit_open; then one probe goes through and closes the breaker.
    s.proxy.clear();
    let probe = &events[5];
    let mut n = 0;
    let f = wait_until(
        Duration::from_secs(30),
        || {
            format!(
                "a live finding after the cooldown; proxy saw {:?}",
                s.proxy.seen()
            )
        },
        || {
            n += 1;
            let e = again(probe, n);
            s.post("dw-ctx-breaker", std::slice::from_ref(&e)).ok()?;
            let f = s.finding(id(&e)).ok()?;
            if f["context"]["reason"] == "circuit_open" {
                std::thread::sleep(Duration::from_millis(200));
                return None;
            }
            Some(f)
        },
    )?;
    assert_eq!(f["context"], json!({"state": "live"}), "{f:#}");
    assert_eq!(
        s.proxy.count("/configmaps/probe"),
        1,
        "{:?}",
        s.proxy.seen()
    );
    assert_eq!(s.breaker_open("default"), Some(0.0));
    Ok(())
}

/// `GET /api/v1/drifts/{id}?live=true` against the live Deployment: alice's
/// image is still there (`still_drifted`); someone sets another image
/// without driftwatch seeing the event (`changed`); the object is deleted
/// (`unavailable`, `not_found`); the API server fails the read
/// (`unavailable`, `error`). The plain route reads the store alone: no
/// request reaches the API server.
#[test]
fn live_values_of_a_drift_are_read_on_request() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Setup::start_logging("dw-ctx-live", 970, "5s", "", REQUEST_RESPONSE_POLICY)?;
    argocd_apply(&s.cluster)?;
    let sync = s.logged("Argo CD's apply", |e| {
        e["user"]["username"] == "system:serviceaccount:argocd:argocd-application-controller"
            && e["verb"] == "patch"
    })?;
    s.post("dw-ctx-live", &[sync])?;
    let image = |image: &str| {
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
            .to_string()
    };
    let patch = |user: &str, to: &str| {
        let args = ["-n", "shop", "patch", "deployment", "api", "-p", &image(to)];
        s.cluster.kubectl(user, &args)
    };
    patch("alice", "nginx:1.28")?;
    let edit = s.by_alice("patch", "deployments", "api")?;
    s.post("dw-ctx-live", std::slice::from_ref(&edit))?;
    let f = s.finding(id(&edit))?;
    let drift = f["drift"]["id"]
        .as_str()
        .context("the finding's drift")?
        .to_owned();
    let route = format!("/api/v1/drifts/{drift}");
    let live = || -> Result<Value> {
        let answer = block_on(get_json(&s.svc, &format!("{route}?live=true")))?;
        ensure!(answer.status == 200, "{} {}", answer.status, answer.json);
        Ok(answer.json["live"].clone())
    };
    let image_field = |live: &Value| -> Result<Value> {
        live["fields"]
            .as_array()
            .and_then(|fs| {
                fs.iter()
                    .find(|f| f["path"] == "spec.template.spec.containers[name=app].image")
            })
            .cloned()
            .with_context(|| format!("no image field in {live:#}"))
    };

    let l = live()?;
    assert_eq!(l["state"], "live", "{l:#}");
    assert!(l["fetched_at"].is_string(), "{l:#}");
    let field = image_field(&l)?;
    assert_eq!(field["status"], "still_drifted", "{l:#}");
    assert_eq!(field["live"], "nginx:1.28", "{l:#}");
    assert!(field["drift_value_fingerprint"].is_string(), "{l:#}");

    patch("admin", "nginx:1.29")?;
    let l = live()?;
    let field = image_field(&l)?;
    assert_eq!(field["status"], "changed", "{l:#}");
    assert_eq!(field["live"], "nginx:1.29", "{l:#}");

    // The plain route: the store only.
    let before = s.proxy.count("/deployments/api");
    let plain = block_on(get_json(&s.svc, &route))?;
    assert_eq!(plain.status, 200, "{}", plain.json);
    assert!(plain.json.get("live").is_none(), "{:#}", plain.json);
    assert_eq!(plain.json["state"], "open", "{:#}", plain.json);
    assert_eq!(
        s.proxy.count("/deployments/api"),
        before,
        "{:?}",
        s.proxy.seen()
    );

    s.proxy.fail("/deployments/api", 500);
    let l = live()?;
    assert_eq!(l["state"], "unavailable", "{l:#}");
    assert_eq!(l["reason"], "error", "{l:#}");
    assert_eq!(l["fields"], json!([]), "{l:#}");
    s.proxy.clear();

    s.cluster
        .kubectl("admin", &["-n", "shop", "delete", "deployment", "api"])?;
    let l = live()?;
    assert_eq!(l["state"], "unavailable", "{l:#}");
    assert_eq!(l["reason"], "not_found", "{l:#}");
    let reads = |outcome: &str| {
        s.gauge(
            "driftwatch_context_live_reads_total",
            &format!("outcome=\"{outcome}\""),
        )
    };
    assert_eq!(reads("live"), Some(2.0));
    assert_eq!(reads("error"), Some(1.0));
    assert_eq!(reads("not_found"), Some(1.0));
    Ok(())
}

/// Where the inventory CRDs are (stand-ins for the published ones, which
/// cannot be fetched here: tests/fixtures/crds/README.md says why and what
/// they keep).
const PIPELINE_CRDS: [&str; 3] = [
    "argocd-application.yaml",
    "flux-kustomization.yaml",
    "flux-helmrelease.yaml",
];

impl Setup {
    /// `POST` (or a status `PATCH`) of a pipeline object as admin.
    fn admin_request(&self, method: Method, path: &str, body: &Value) -> Result<()> {
        let content_type = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (code, answer) =
            self.cluster
                .request("admin", "kubectl/v1.20.2", method, path, content_type, body)?;
        ensure!((200..300).contains(&code), "{path}: {code} {answer}");
        Ok(())
    }

    /// alice's `n`th (from 0) write of `verb` on `resource/name`.
    fn nth_by_alice(&self, n: usize, verb: &str, resource: &str, name: &str) -> Result<Value> {
        let path = self.cluster.audit_log();
        wait_until(
            Duration::from_secs(30),
            || format!("alice's {verb} #{n} of {resource}/{name}"),
            || {
                let text = std::fs::read_to_string(&path).ok()?;
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|e| {
                        e["stage"] == "ResponseComplete"
                            && e["user"]["username"] == "alice"
                            && e["verb"] == verb
                            && e["objectRef"]["resource"] == resource
                            && e["objectRef"]["name"] == name
                            && e["objectRef"]["subresource"].is_null()
                    })
                    .nth(n)
            },
        )
    }

    /// alice runs kubectl `args` in `shop`, her `n`th `verb` of
    /// `resource/name` is posted for the direct cluster: its finding.
    fn alice_direct(
        &self,
        args: &[&str],
        (n, verb, resource, name): (usize, &str, &str, &str),
    ) -> Result<Value> {
        let args: Vec<&str> = ["-n", "shop"].iter().chain(args).copied().collect();
        self.cluster.kubectl("alice", &args)?;
        let event = self.nth_by_alice(n, verb, resource, name)?;
        self.post("dw-direct", std::slice::from_ref(&event))?;
        self.finding(id(&event))
    }

    fn gauge(&self, name: &str, labels: &str) -> Option<f64> {
        block_on(metric(&self.svc, name, labels)).ok().flatten()
    }
}

fn application(name: &str, path: &str, deployments: &[&str]) -> Value {
    let resources: Vec<Value> = deployments
        .iter()
        .map(|d| {
            json!({"group": "apps", "version": "v1", "kind": "Deployment",
                        "namespace": "shop", "name": d, "status": "Synced"})
        })
        .collect();
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example/shop.git", "path": path, "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"}
        },
        "status": {"sync": {"status": "Synced", "revision": "4f1c2e9"}, "resources": resources}
    })
}

/// Argo CD Applications and Flux Kustomizations/HelmReleases watched on the
/// real API server (CRDs installed while driftwatch runs, so the watches
/// first fail and are counted): an object without markers that an
/// Application lists, its ReplicaSet (through the owner roll-up) and a
/// ConfigMap in a Kustomization's inventory are managed, named with their
/// Git source and raised to high; marked objects gain their Application's
/// or HelmRelease's source; a deleted Application stops naming its objects.
///
/// The findings are posted for `dw-direct`, whose client reaches the API
/// server directly: the recording proxy answers a request once the server
/// has answered it whole, so a watch through it would deliver nothing until
/// the server ends it (its lookups are counted in the tests above).
#[test]
fn pipeline_inventories_name_the_pipeline_of_objects_without_markers() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Setup::start_with("dw-ctx-inv", 980, "5s", "  inventories: [argocd, flux]\n")?;
    let restarts = |kind: &str| {
        s.gauge(
            "driftwatch_context_watch_restarts_total",
            &format!("kind=\"{kind}\""),
        )
    };
    wait_until(
        Duration::from_secs(30),
        || "failed watches before the CRDs exist".to_owned(),
        || (restarts("Application")? >= 1.0 && restarts("Kustomization")? >= 1.0).then_some(()),
    )?;
    for crd in PIPELINE_CRDS {
        let path = format!("{}/tests/fixtures/crds/{crd}", env!("CARGO_MANIFEST_DIR"));
        s.cluster.kubectl("admin", &["apply", "-f", &path])?;
    }
    s.cluster.kubectl(
        "admin",
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/applications.argoproj.io",
            "crd/kustomizations.kustomize.toolkit.fluxcd.io",
            "crd/helmreleases.helm.toolkit.fluxcd.io",
        ],
    )?;
    // The cluster already has `argocd` and `flux-system`: the controllers'
    // ServiceAccounts live there.

    // Objects: `web` and `settings` carry no markers; `api` has Argo CD's
    // tracking annotation (applied by Argo CD), `podinfo-values` Flux's
    // HelmRelease labels.
    let admin = |args: &[&str]| s.cluster.kubectl("admin", args);
    admin(&[
        "-n",
        "shop",
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
    ])?;
    admin(&[
        "-n",
        "shop",
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
    ])?;
    admin(&[
        "-n",
        "shop",
        "create",
        "configmap",
        "podinfo-values",
        "--from-literal=a=1",
    ])?;
    admin(&[
        "-n",
        "shop",
        "label",
        "configmap",
        "podinfo-values",
        "helm.toolkit.fluxcd.io/name=podinfo",
        "helm.toolkit.fluxcd.io/namespace=shop",
    ])?;
    argocd_apply(&s.cluster)?;

    let apps = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";
    s.admin_request(
        Method::POST,
        apps,
        &application("shop-web", "web", &["web"]),
    )?;
    s.admin_request(Method::POST, apps, &application("shop", "api", &["api"]))?;
    let ks = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations";
    s.admin_request(
        Method::POST,
        ks,
        &json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {"interval": "10m", "path": "./apps", "prune": true,
                     "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
        }),
    )?;
    // Flux writes status through the status subresource, as here.
    s.admin_request(
        Method::PATCH,
        &format!("{ks}/apps/status"),
        &json!({"status": {"lastAppliedRevision": "main@sha1:9a8b7c6",
                "inventory": {"entries": [{"id": "shop_settings__ConfigMap", "v": "v1"}]}}}),
    )?;
    s.admin_request(
        Method::POST,
        "/apis/helm.toolkit.fluxcd.io/v2/namespaces/shop/helmreleases",
        &json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "podinfo", "namespace": "shop"},
            "spec": {"interval": "10m", "chart": {"spec": {"chart": "podinfo", "version": "6.x",
                "sourceRef": {"kind": "HelmRepository", "name": "podinfo", "namespace": "flux-system"}}}}
        }),
    )?;
    let listed = || {
        s.gauge(
            "driftwatch_context_inventory_objects",
            "cluster=\"dw-direct\"",
        )
    };
    let until_listed = |n: f64| {
        wait_until(
            Duration::from_secs(60),
            || format!("{n} objects in the inventories, gauge {:?}", listed()),
            || (listed()? == n).then_some(()),
        )
    };
    until_listed(3.0)?;

    // alice scales `web`: no marker anywhere, but Application shop-web lists it.
    let f = s.alice_direct(
        &[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
        (0, "patch", "deployments", "web"),
    )?;
    assert_eq!(
        f["managed_by"],
        json!({"tool": "argocd", "name": "shop-web", "pipeline": {
            "kind": "Application", "namespace": "argocd", "name": "shop-web", "via": "inventory",
            "source": {"repo_url": "https://git.example/shop.git", "path": "web",
                       "target_revision": "main", "revision": "4f1c2e9"}}}),
        "{f:#}"
    );
    assert_eq!(f["severity"], "high", "{f:#}");

    // Its ReplicaSet is listed nowhere; its owner is.
    let rs = wait_until(
        Duration::from_secs(30),
        || "web's ReplicaSet".to_owned(),
        || {
            let args = [
                "-n",
                "shop",
                "get",
                "rs",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ];
            let name = admin(&args).ok()?;
            (!name.trim().is_empty()).then(|| name.trim().to_owned())
        },
    )?;
    let f = s.alice_direct(
        &["label", "rs", &rs, "debug=true"],
        (0, "patch", "replicasets", &rs),
    )?;
    assert_eq!(f["owner"]["name"], "web", "{f:#}");
    assert_eq!(f["managed_by"]["pipeline"]["name"], "shop-web", "{f:#}");
    assert_eq!(f["managed_by"]["pipeline"]["via"], "inventory", "{f:#}");

    // A ConfigMap in the Kustomization's inventory.
    let f = s.alice_direct(
        &["label", "configmap", "settings", "tuned=yes"],
        (0, "patch", "configmaps", "settings"),
    )?;
    assert_eq!(
        f["managed_by"],
        json!({"tool": "flux", "name": "apps", "pipeline": {
            "kind": "Kustomization", "namespace": "flux-system", "name": "apps", "via": "inventory",
            "source": {"source_ref": "GitRepository/flux-system/fleet", "path": "./apps",
                       "revision": "main@sha1:9a8b7c6"}}}),
        "{f:#}"
    );
    assert_eq!(f["severity"], "high", "{f:#}");

    // Marked objects: the markers name the pipeline object; it adds the source.
    let f = s.alice_direct(
        &[
            "patch",
            "deployment",
            "api",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ],
        (0, "patch", "deployments", "api"),
    )?;
    assert_eq!(f["managed_by"]["name"], "shop", "{f:#}");
    assert_eq!(f["managed_by"]["pipeline"]["via"], "markers", "{f:#}");
    assert_eq!(
        f["managed_by"]["pipeline"]["source"]["path"], "api",
        "{f:#}"
    );
    let f = s.alice_direct(
        &["label", "configmap", "podinfo-values", "tuned=yes"],
        (0, "patch", "configmaps", "podinfo-values"),
    )?;
    assert_eq!(
        f["managed_by"]["pipeline"],
        json!({"kind": "HelmRelease", "namespace": "shop", "name": "podinfo", "via": "markers",
               "source": {"source_ref": "HelmRepository/flux-system/podinfo", "chart": "podinfo",
                          "target_revision": "6.x"}}),
        "{f:#}"
    );

    // Application shop-web deleted: the watch drops what it listed.
    admin(&[
        "-n",
        "argocd",
        "delete",
        "applications.argoproj.io",
        "shop-web",
    ])?;
    until_listed(2.0)?;
    let f = s.alice_direct(
        &[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ],
        (1, "patch", "deployments", "web"),
    )?;
    assert!(f["managed_by"].is_null(), "{f:#}");
    assert_ne!(f["severity"], "high", "{f:#}");
    Ok(())
}
