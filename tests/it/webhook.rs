//! The audit webhook over real HTTP against a running `driftwatch serve`:
//! DESIGN.md "Contracts / HTTP" and "Audit semantics" (EventList items without
//! kind/apiVersion, stages, redelivery, the `200` only once findings are out).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::common::{Service, corpus};

/// A sanctioned Argo CD pipeline, and a cluster name to find in findings.
const CONFIG: &str = r#"
cluster: prod-eu-1
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
"#;

const HUMAN: &str = "alice@example.com";
const HUMAN_GROUPS: &[&str] = &["devs", "system:authenticated"];
const KUBECTL: &str = "kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234";
const ARGOCD_SA: &str = "system:serviceaccount:argocd:argocd-application-controller";
const ARGOCD_UA: &str = "argocd-application-controller/v2.13.1 (linux/amd64) kubernetes/0e0e0e0";
const KCM_UA: &str = "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/abc1234/system:serviceaccount:kube-system:replicaset-controller";

// ---------------------------------------------------------------------------
// Building audit events the way the API server writes them.

/// One API request as an audit event.
#[derive(Clone)]
struct Req {
    audit_id: String,
    stage: &'static str,
    verb: &'static str,
    user: String,
    groups: Vec<String>,
    user_agent: String,
    /// `None` for `RequestReceived`, which has no response yet.
    code: Option<u16>,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: Option<&'static str>,
    namespace: Option<String>,
    name: Option<String>,
    query: String,
    /// Seconds after 10:00:00 on the day of the batch; keeps times distinct.
    at: u32,
}

impl Req {
    fn new(audit_id: String, verb: &'static str, user: &str, user_agent: &str) -> Req {
        Req {
            audit_id,
            stage: "ResponseComplete",
            verb,
            user: user.to_owned(),
            groups: vec!["system:authenticated".to_owned()],
            user_agent: user_agent.to_owned(),
            code: Some(200),
            group: "apps",
            version: "v1",
            resource: "deployments",
            subresource: None,
            namespace: Some("shop".to_owned()),
            name: None,
            query: String::new(),
            at: 0,
        }
    }

    fn groups(mut self, groups: &[&str]) -> Req {
        self.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }

    fn resource(mut self, group: &'static str, version: &'static str, res: &'static str) -> Req {
        self.group = group;
        self.version = version;
        self.resource = res;
        self
    }

    fn sub(mut self, sub: &'static str) -> Req {
        self.subresource = Some(sub);
        self
    }

    fn ns(mut self, ns: &str) -> Req {
        self.namespace = Some(ns.to_owned());
        self
    }

    fn name(mut self, name: &str) -> Req {
        self.name = Some(name.to_owned());
        self
    }

    fn query(mut self, q: &str) -> Req {
        self.query = q.to_owned();
        self
    }

    fn code(mut self, code: u16) -> Req {
        self.code = Some(code);
        self
    }

    fn stage(mut self, stage: &'static str) -> Req {
        self.stage = stage;
        if stage == "RequestReceived" {
            self.code = None;
        }
        self
    }

    fn at(mut self, at: u32) -> Req {
        self.at = at;
        self
    }

    fn uri(&self) -> String {
        let mut uri = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(ns) = &self.namespace {
            uri.push_str(&format!("/namespaces/{ns}"));
        }
        uri.push('/');
        uri.push_str(self.resource);
        if let Some(name) = &self.name {
            uri.push('/');
            uri.push_str(name);
        }
        if let Some(sub) = self.subresource {
            uri.push('/');
            uri.push_str(sub);
        }
        if !self.query.is_empty() {
            uri.push('?');
            uri.push_str(&self.query);
        }
        uri
    }

    /// The event as an `EventList` item: no `kind`, no `apiVersion`.
    fn item(&self) -> Value {
        let received = format!(
            "2026-11-20T10:{:02}:{:02}.{:06}Z",
            self.at / 60 % 60,
            self.at % 60,
            (u64::from(self.at) * 7919) % 900_000
        );
        let stage_ts = format!(
            "2026-11-20T10:{:02}:{:02}.{:06}Z",
            self.at / 60 % 60,
            self.at % 60,
            (u64::from(self.at) * 7919) % 900_000 + 1500
        );
        let mutating = matches!(
            self.verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        );
        let mut object_ref = json!({
            "resource": self.resource,
            "apiGroup": self.group,
            "apiVersion": self.version,
        });
        if let Some(ns) = &self.namespace {
            object_ref["namespace"] = json!(ns);
        }
        if let Some(name) = &self.name {
            object_ref["name"] = json!(name);
        }
        if let Some(sub) = self.subresource {
            object_ref["subresource"] = json!(sub);
        }
        let mut ev = json!({
            "level": if mutating { "Request" } else { "Metadata" },
            "auditID": self.audit_id,
            "stage": self.stage,
            "requestURI": self.uri(),
            "verb": self.verb,
            "user": {"username": self.user, "groups": self.groups},
            "sourceIPs": ["10.0.0.7"],
            "userAgent": self.user_agent,
            "objectRef": object_ref,
            "requestReceivedTimestamp": received,
            "stageTimestamp": if self.stage == "RequestReceived" { received.clone() } else { stage_ts },
            "annotations": {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding"
            }
        });
        if let Some(code) = self.code {
            ev["responseStatus"] = if (200..300).contains(&code) {
                json!({"metadata": {}, "code": code})
            } else {
                json!({"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": code})
            };
        }
        if mutating && self.verb == "patch" {
            ev["requestObject"] = json!({"spec": {"replicas": 5}});
        }
        ev
    }
}

fn audit_id(tag: &str, n: usize) -> String {
    // The shape of a real auditID (a UUID), unique per tag and number.
    let t = tag
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{t:08x}-{:04x}-4000-8000-{:012x}", n % 0xffff, n)
}

/// A human's `kubectl patch` of a deployment: a finding every time it succeeds.
fn human_patch(tag: &str, n: usize) -> Req {
    Req::new(audit_id(tag, n), "patch", HUMAN, KUBECTL)
        .groups(HUMAN_GROUPS)
        .name(&format!("checkout-{n}"))
        .query("fieldManager=kubectl-patch")
        .at(n as u32)
}

fn event_list(items: impl IntoIterator<Item = Value>) -> Value {
    json!({
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": items.into_iter().collect::<Vec<_>>(),
    })
}

/// A realistic webhook batch of exactly 400 events, and the auditIDs of the
/// requests that must produce a finding.
struct Batch {
    body: Value,
    expected: BTreeSet<String>,
}

fn realistic_batch(tag: &str) -> Batch {
    let mut reqs: Vec<Req> = Vec::new();
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        (audit_id(tag, n), n as u32)
    };

    // 200 reads: more than half of a real stream, humans and controllers alike.
    let readers: [(&str, &[&str], &str); 4] = [
        (HUMAN, HUMAN_GROUPS, KUBECTL),
        (
            "system:node:worker-1",
            &["system:nodes", "system:authenticated"],
            "kubelet/v1.31.2 (linux/amd64) kubernetes/abc1234",
        ),
        (
            "system:serviceaccount:kube-system:replicaset-controller",
            &["system:serviceaccounts", "system:authenticated"],
            KCM_UA,
        ),
        (
            ARGOCD_SA,
            &["system:serviceaccounts", "system:authenticated"],
            ARGOCD_UA,
        ),
    ];
    let read_resources: [(&str, &str, &str); 4] = [
        ("", "v1", "pods"),
        ("apps", "v1", "deployments"),
        ("", "v1", "configmaps"),
        ("", "v1", "secrets"),
    ];
    for i in 0..200 {
        let (id, at) = next();
        let verb = ["get", "list", "watch"][i % 3];
        let (user, groups, ua) = readers[i % readers.len()];
        let (g, v, r) = read_resources[i % read_resources.len()];
        let mut req = Req::new(id, verb, user, ua)
            .groups(groups)
            .resource(g, v, r)
            .at(at);
        if verb == "get" {
            req = req.name(&format!("object-{i}"));
        }
        reqs.push(req);
    }

    // 140 writes by Kubernetes itself: the system baseline and noise kinds.
    for i in 0..140 {
        let (id, at) = next();
        let req = match i % 7 {
            0 => Req::new(
                id,
                "update",
                "system:serviceaccount:kube-system:replicaset-controller",
                KCM_UA,
            )
            .resource("apps", "v1", "replicasets")
            .name(&format!("checkout-{i}-7d9f8b6c5"))
            .sub("status"),
            1 => Req::new(
                id,
                "update",
                "system:serviceaccount:kube-system:deployment-controller",
                KCM_UA,
            )
            .name(&format!("checkout-{i}"))
            .sub("status"),
            2 => Req::new(
                id,
                "create",
                "system:kube-scheduler",
                "kube-scheduler/v1.31.2 (linux/amd64) kubernetes/abc1234/scheduler",
            )
            .resource("", "v1", "pods")
            .name(&format!("checkout-{i}-7d9f8b6c5-x2k4q"))
            .sub("binding")
            .code(201),
            3 => Req::new(
                id,
                "patch",
                "system:node:worker-1",
                "kubelet/v1.31.2 (linux/amd64) kubernetes/abc1234",
            )
            .groups(&["system:nodes", "system:authenticated"])
            .resource("", "v1", "pods")
            .name(&format!("checkout-{i}-7d9f8b6c5-x2k4q"))
            .sub("status"),
            4 => Req::new(
                id,
                "update",
                "system:kube-controller-manager",
                "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/abc1234/leader-election",
            )
            .resource("coordination.k8s.io", "v1", "leases")
            .ns("kube-system")
            .name("kube-controller-manager"),
            5 => Req::new(
                id,
                "delete",
                "system:serviceaccount:kube-system:generic-garbage-collector",
                KCM_UA,
            )
            .resource("", "v1", "pods")
            .name(&format!("checkout-{i}-5c6b7d8e9-old")),
            _ => Req::new(
                id,
                "update",
                "system:serviceaccount:kube-system:endpointslice-controller",
                KCM_UA,
            )
            .resource("discovery.k8s.io", "v1", "endpointslices")
            .name(&format!("checkout-{i}-abcde")),
        };
        reqs.push(req.at(at));
    }

    // 10 Argo CD syncs: the sanctioned pipeline.
    for i in 0..10 {
        let (id, at) = next();
        reqs.push(
            Req::new(id, "patch", ARGOCD_SA, ARGOCD_UA)
                .groups(&["system:serviceaccounts", "system:authenticated"])
                .name(&format!("catalog-{i}"))
                .query("fieldManager=argocd-controller")
                .at(at),
        );
    }

    // 20 successful `kubectl patch` by a human, each also seen at
    // RequestReceived (which is never acted on): 20 findings.
    let mut expected = BTreeSet::new();
    for _ in 0..20 {
        let (_, at) = next();
        let done = human_patch(tag, 10_000 + at as usize);
        expected.insert(done.audit_id.clone());
        reqs.push(done.clone().stage("RequestReceived"));
        reqs.push(done);
    }

    // 5 dry runs (`kubectl diff`) and 5 denied patches by the same human: no change.
    for i in 0..10 {
        let (id, at) = next();
        let req = Req::new(id, "patch", HUMAN, KUBECTL)
            .groups(HUMAN_GROUPS)
            .name(&format!("checkout-{i}"))
            .at(at);
        reqs.push(if i < 5 {
            req.query("dryRun=All&fieldManager=kubectl-client-side-apply")
        } else {
            req.query("fieldManager=kubectl-patch").code(403)
        });
    }

    assert_eq!(
        reqs.len(),
        400,
        "the batch is meant to be a full webhook batch"
    );
    // A fixed shuffle: stages of one request need not be adjacent or in order.
    let len = reqs.len();
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by_key(|i| (i * 7919) % len);
    let body = event_list(order.iter().map(|&i| reqs[i].item()));
    Batch { body, expected }
}

// ---------------------------------------------------------------------------
// Talking to the service.

fn client() -> Result<reqwest::Client> {
    Ok(driftwatch::http::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?)
}

struct Answer {
    status: u16,
    json: Value,
}

async fn post_bytes(svc: &Service, path: &str, body: Vec<u8>, gzip: bool) -> Result<Answer> {
    let mut req = client()?
        .post(svc.url(path))
        .header("Content-Type", "application/json")
        .body(body);
    if gzip {
        req = req.header("Content-Encoding", "gzip");
    }
    let resp = req.send().await.with_context(|| format!("POST {path}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let json = serde_json::from_str(&text).with_context(|| {
        format!("POST {path} answered {status} with a body that is not JSON: {text:?}")
    })?;
    Ok(Answer { status, json })
}

async fn post_json(svc: &Service, path: &str, body: &Value) -> Result<Answer> {
    post_bytes(svc, path, serde_json::to_vec(body)?, false).await
}

async fn get(svc: &Service, path: &str) -> Result<(u16, String)> {
    let resp = client()?.get(svc.url(path)).send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// The service writes findings before it answers `200`; the test reads its
/// stdout on another thread, so give that thread a moment to catch up.
async fn wait_for_findings(svc: &Service, n: usize) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = svc.findings();
        if found.len() >= n {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!(
                "expected {n} finding(s) on stdout, found {}: {found:#?}",
                found.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Proves that nothing was emitted since `before` findings: stdout is one
/// ordered stream, so once a fresh marker finding shows up, anything emitted
/// earlier is visible too.
async fn assert_nothing_new_since(svc: &Service, before: usize, tag: &str) -> Result<()> {
    let marker = human_patch(tag, 999_999);
    let answer = post_json(svc, "/audit/webhook", &event_list([marker.item()])).await?;
    ensure!(
        answer.status == 200,
        "marker batch refused: {}",
        answer.json
    );
    let found = wait_for_findings(svc, before + 1).await?;
    let new: Vec<&Value> = found[before..].iter().collect();
    ensure!(
        new.len() == 1 && new[0]["audit_id"] == json!(marker.audit_id),
        "unexpected findings were emitted: {new:#?}"
    );
    Ok(())
}

fn audit_ids(findings: &[Value]) -> BTreeSet<String> {
    findings
        .iter()
        .filter_map(|f| f["audit_id"].as_str().map(str::to_owned))
        .collect()
}

fn is_error_body(json: &Value) -> bool {
    json["error"].as_str().is_some_and(|e| !e.trim().is_empty())
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

// ---------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn full_batch_is_answered_after_its_findings_are_out() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let batch = realistic_batch("full");

    let answer = post_json(&svc, "/audit/webhook", &batch.body).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    assert_eq!(answer.json["documents"], json!(1), "{}", answer.json);
    assert_eq!(answer.json["events"], json!(400), "{}", answer.json);
    assert_eq!(answer.json["findings"], json!(20), "{}", answer.json);
    assert_eq!(answer.json["rejected"], json!([]), "{}", answer.json);

    let findings = wait_for_findings(&svc, batch.expected.len()).await?;
    assert_eq!(findings.len(), batch.expected.len(), "{findings:#?}");
    assert_eq!(audit_ids(&findings), batch.expected);
    for f in &findings {
        assert_eq!(f["schema"], "driftwatch.finding/v1", "{f}");
        assert_eq!(f["type"], "out_of_band_change", "{f}");
        // A deployment is a workload object: medium.
        assert_eq!(f["severity"], "medium", "{f}");
        assert_eq!(f["cluster"], "prod-eu-1", "{f}");
        assert_eq!(f["verb"], "patch", "{f}");
        assert_eq!(f["resource"]["group"], "apps", "{f}");
        assert_eq!(f["resource"]["resource"], "deployments", "{f}");
        assert_eq!(f["resource"]["namespace"], "shop", "{f}");
        assert_eq!(f["actor"]["username"], HUMAN, "{f}");
        assert_eq!(f["actor"]["groups"], json!(HUMAN_GROUPS), "{f}");
        assert_eq!(f["actor"]["user_agent"], KUBECTL, "{f}");
        assert_eq!(f["actor"]["client"], "kubectl", "{f}");
        assert_eq!(f["actor"]["field_manager"], "kubectl-patch", "{f}");
        assert_eq!(f["actor"]["impersonated_by"], Value::Null, "{f}");
        assert_eq!(f["pipeline"], Value::Null, "{f}");
        assert!(
            f["reasons"].as_array().is_some_and(|r| !r.is_empty()),
            "{f}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn redelivered_batch_yields_no_new_findings() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let batch = realistic_batch("redelivery");

    let first = post_json(&svc, "/audit/webhook", &batch.body).await?;
    ensure!(first.status == 200, "first: {}", first.json);
    let findings = wait_for_findings(&svc, batch.expected.len()).await?;
    assert_eq!(audit_ids(&findings), batch.expected);

    // The API server retries a batch it did not see answered.
    let second = post_json(&svc, "/audit/webhook", &batch.body).await?;
    ensure!(second.status == 200, "second: {}", second.json);
    assert_eq!(second.json["events"], json!(400), "{}", second.json);
    assert_eq!(second.json["findings"], json!(0), "{}", second.json);
    assert_nothing_new_since(&svc, batch.expected.len(), "redelivery-marker").await
}

#[tokio::test]
async fn bodies_that_are_not_audit_events_are_refused_with_400() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let good = serde_json::to_string(&event_list(
        (0..5).map(|n| human_patch("truncated", n).item()),
    ))?;
    let truncated = good[..good.len() / 2].to_owned();
    let bodies: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("whitespace", " \n\t\n".to_owned()),
        ("a byte-order mark alone", "\u{feff}\n".to_owned()),
        ("not JSON", "this is not JSON\n".to_owned()),
        ("a JSON string", "\"EventList\"".to_owned()),
        (
            "a Pod",
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web"}}"#.to_owned(),
        ),
        ("an object", r#"{"hello":1}"#.to_owned()),
        ("an array of numbers", "[1,2,3]".to_owned()),
        (
            "an EventList of pods",
            r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Pod","metadata":{"name":"web"}}]}"#
                .to_owned(),
        ),
        ("falco's malformed event", r#"{"kind": 0}"#.to_owned()),
        ("truncated EventList", truncated),
    ];
    for (what, body) in bodies {
        let answer = post_bytes(&svc, "/audit/webhook", body.into_bytes(), false).await?;
        assert_eq!(answer.status, 400, "{what}: {}", answer.json);
        assert!(
            is_error_body(&answer.json),
            "{what}: no JSON error: {}",
            answer.json
        );
    }
    assert_nothing_new_since(&svc, 0, "not-events-marker").await
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    // Realistic JSON lines, 20 MiB: over the 16 MiB default limit.
    let line = serde_json::to_string(&human_patch("big", 1).item())? + "\n";
    let big: Vec<u8> = line.repeat((20 << 20) / line.len() + 1).into_bytes();
    assert!(big.len() > 20 << 20);
    let answer = post_bytes(&svc, "/audit/webhook", big.clone(), false).await?;
    assert_eq!(answer.status, 413, "{}", answer.json);
    assert!(is_error_body(&answer.json), "{}", answer.json);

    // Small on the wire, past the limit once decompressed.
    let bomb = gzip(&big)?;
    assert!(bomb.len() < 1 << 20, "the gzip body should be small");
    let answer = post_bytes(&svc, "/audit/webhook", bomb, true).await?;
    assert_eq!(answer.status, 413, "{}", answer.json);
    assert!(is_error_body(&answer.json), "{}", answer.json);

    // The service still takes batches, and neither big body was processed.
    assert_nothing_new_since(&svc, 0, "oversized-marker").await
}

#[tokio::test]
async fn gzip_encoded_batch_is_accepted() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let batch = realistic_batch("gzip");
    let body = gzip(&serde_json::to_vec(&batch.body)?)?;
    let answer = post_bytes(&svc, "/audit/webhook", body, true).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    assert_eq!(answer.json["events"], json!(400), "{}", answer.json);
    assert_eq!(answer.json["findings"], json!(20), "{}", answer.json);
    let findings = wait_for_findings(&svc, batch.expected.len()).await?;
    assert_eq!(findings.len(), batch.expected.len());
    assert_eq!(audit_ids(&findings), batch.expected);
    Ok(())
}

#[tokio::test]
async fn one_bad_line_does_not_hide_the_good_ones() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let a = human_patch("bad-line", 1);
    let b = human_patch("bad-line", 2);
    let read = Req::new(audit_id("bad-line", 3), "list", HUMAN, KUBECTL).groups(HUMAN_GROUPS);
    let lines = [
        serde_json::to_string(&a.item())?,
        serde_json::to_string(&read.item())?,
        r#"{"kind": 0}"#.to_owned(),
        "garbage, not JSON".to_owned(),
        serde_json::to_string(&b.item())?,
    ];
    let body = lines.join("\n") + "\n";
    let answer = post_bytes(&svc, "/audit/webhook", body.into_bytes(), false).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    assert_eq!(answer.json["events"], json!(3), "{}", answer.json);
    assert_eq!(answer.json["findings"], json!(2), "{}", answer.json);
    let rejected: Vec<u64> = answer.json["rejected"]
        .as_array()
        .context("rejected is a list")?
        .iter()
        .filter_map(|r| r["line"].as_u64())
        .collect();
    assert_eq!(rejected, vec![3, 4], "{}", answer.json);

    let findings = wait_for_findings(&svc, 2).await?;
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert_eq!(
        audit_ids(&findings),
        BTreeSet::from([a.audit_id.clone(), b.audit_id.clone()])
    );
    Ok(())
}

#[tokio::test]
async fn cluster_in_the_path_names_the_cluster() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let patch = human_patch("cluster", 1);
    let answer = post_json(
        &svc,
        "/audit/webhook/prod-us-2",
        &event_list([patch.item()]),
    )
    .await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    let findings = wait_for_findings(&svc, 1).await?;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["cluster"], "prod-us-2");
    assert_eq!(findings[0]["audit_id"], json!(patch.audit_id));

    // Without a cluster in the path, the configured one.
    let other = human_patch("cluster", 2);
    let answer = post_json(&svc, "/audit/webhook", &event_list([other.item()])).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    let findings = wait_for_findings(&svc, 2).await?;
    assert_eq!(findings[1]["cluster"], "prod-eu-1");

    let long = "a".repeat(254);
    for bad in ["Prod_EU", "prod%20eu", "prod%2Feu", long.as_str()] {
        let path = format!("/audit/webhook/{bad}");
        let answer = post_json(&svc, &path, &event_list([human_patch("bad", 3).item()])).await?;
        assert_eq!(answer.status, 400, "{path}: {}", answer.json);
        assert!(is_error_body(&answer.json), "{path}: {}", answer.json);
    }
    assert_nothing_new_since(&svc, 2, "cluster-marker").await
}

#[tokio::test]
async fn health_and_metrics() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    assert_eq!(get(&svc, "/healthz").await?.0, 200);
    assert_eq!(get(&svc, "/readyz").await?.0, 200);

    let batch = realistic_batch("metrics");
    let answer = post_json(&svc, "/audit/webhook", &batch.body).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    let bad = post_bytes(&svc, "/audit/webhook", b"not JSON\n".to_vec(), false).await?;
    assert_eq!(bad.status, 400);

    let (code, text) = get(&svc, "/metrics").await?;
    assert_eq!(code, 200);
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let has = |prefix: &str, needles: &[&str]| {
        samples
            .iter()
            .any(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
    };
    assert!(has("driftwatch_events_received_total", &[]), "{text}");
    assert!(
        has("driftwatch_events_rejected_total{", &["reason=\""]),
        "{text}"
    );
    assert!(
        has("driftwatch_webhook_requests_total{", &["code=\"400\""]),
        "{text}"
    );
    assert!(
        has("driftwatch_webhook_requests_total{", &["code=\"200\""]),
        "{text}"
    );
    assert!(has("driftwatch_findings_total", &[]), "{text}");

    // Identities and object names are never labels.
    for secret in [
        HUMAN,
        "alice",
        "minikube-user",
        "worker-1",
        "argocd-application-controller",
        "replicaset-controller",
        "checkout-",
        "catalog-",
    ] {
        assert!(
            !text.contains(secret),
            "/metrics exposes {secret:?}:\n{text}"
        );
    }
    Ok(())
}

/// An HTTP/1.1 response read off a raw socket: status and body.
fn read_response(stream: &mut TcpStream) -> Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte)?;
        ensure!(n == 1, "connection closed inside a response head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

#[tokio::test]
async fn sigterm_finishes_the_batch_in_flight_and_exits_0() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let batch = realistic_batch("sigterm");
    let body = serde_json::to_vec(&batch.body)?;
    let addr = svc.base.trim_start_matches("http://").to_owned();

    let mut stream = TcpStream::connect(&addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "POST /audit/webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    // The server asks for the body only once the handler reads it: from here
    // on the batch is in flight.
    let (interim, _) = read_response(&mut stream)?;
    assert_eq!(interim, 100, "expected 100 Continue");
    let (most, last) = body.split_at(body.len() - 1);
    stream.write_all(most)?;

    Command::new("kill")
        .args(["-TERM", &svc.child.id().to_string()])
        .status()?;
    // The listener closes once the signal is handled; only then send the
    // last byte, so the batch is certainly in flight during shutdown.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_ok() {
        ensure!(
            Instant::now() < deadline,
            "the service still accepts connections 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stream.write_all(last)?;

    let (status, answer) = read_response(&mut stream)?;
    let answer: Value = serde_json::from_slice(&answer)?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"], json!(400), "{answer}");
    assert_eq!(answer["findings"], json!(20), "{answer}");
    drop(stream);

    let findings_lines = std::sync::Arc::clone(&svc.findings);
    let code = svc.stop()?;
    assert_eq!(code, 0, "exit code after SIGTERM");
    // The process is gone and its stdout is closed: every finding is in.
    let deadline = Instant::now() + Duration::from_secs(5);
    let found = loop {
        let found: Vec<Value> = findings_lines
            .lock()
            .map_err(|_| anyhow::anyhow!("findings lock poisoned"))?
            .iter()
            .map(|l| serde_json::from_str(l))
            .collect::<Result<_, _>>()?;
        if found.len() >= batch.expected.len() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(audit_ids(&found), batch.expected);
    assert_eq!(found.len(), batch.expected.len());
    Ok(())
}

#[tokio::test]
async fn exec_stages_in_two_batches_yield_one_finding() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let text = std::fs::read_to_string(corpus("falco-trace-files/exec_pod.json"))?;
    let mut started: Value = serde_json::from_str(&text)?;
    // As an EventList item.
    if let Some(obj) = started.as_object_mut() {
        obj.remove("kind");
        obj.remove("apiVersion");
    }
    assert_eq!(started["stage"], "ResponseStarted");
    let mut complete = started.clone();
    complete["stage"] = json!("ResponseComplete");
    complete["stageTimestamp"] = json!("2018-10-26T13:41:02.117431Z");

    let first = post_json(&svc, "/audit/webhook", &event_list([started.clone()])).await?;
    ensure!(first.status == 200, "first: {}", first.json);
    assert_eq!(first.json["findings"], json!(1), "{}", first.json);
    let findings = wait_for_findings(&svc, 1).await?;
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f["type"], "interactive_access", "{f}");
    assert_eq!(f["severity"], "high", "{f}");
    assert_eq!(f["actor"]["username"], "minikube-user", "{f}");
    assert_eq!(f["audit_id"], started["auditID"], "{f}");
    assert_eq!(f["resource"]["subresource"], "exec", "{f}");

    let second = post_json(&svc, "/audit/webhook", &event_list([complete])).await?;
    ensure!(second.status == 200, "second: {}", second.json);
    assert_eq!(second.json["events"], json!(1), "{}", second.json);
    assert_eq!(second.json["findings"], json!(0), "{}", second.json);

    // The other order: ResponseComplete first, then a late ResponseStarted.
    let mut later_complete = started.clone();
    later_complete["auditID"] = json!("5b0c3c1e-2f43-4a7e-9d1c-0c6f5e0b9a11");
    later_complete["requestReceivedTimestamp"] = json!("2018-10-26T13:45:00.000001Z");
    later_complete["stage"] = json!("ResponseComplete");
    let mut later_started = later_complete.clone();
    later_started["stage"] = json!("ResponseStarted");
    let third = post_json(&svc, "/audit/webhook", &event_list([later_complete])).await?;
    ensure!(third.status == 200, "third: {}", third.json);
    let fourth = post_json(&svc, "/audit/webhook", &event_list([later_started])).await?;
    ensure!(fourth.status == 200, "fourth: {}", fourth.json);
    assert_eq!(fourth.json["findings"], json!(0), "{}", fourth.json);

    let findings = wait_for_findings(&svc, 2).await?;
    assert_eq!(
        findings[1]["audit_id"],
        "5b0c3c1e-2f43-4a7e-9d1c-0c6f5e0b9a11"
    );
    assert_nothing_new_since(&svc, 2, "exec-marker").await
}
