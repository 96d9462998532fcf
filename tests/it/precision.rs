//! Precision: the built-in quiet rules and scoped allowances silence the
//! automation they name, and each still reports the attack its stated risk
//! leaves open beside it.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::common::{Ev, all_ignored, change_paths, replay, risk_rules, run};

const NO_PIPELINES: &str = "cluster: prod\n";

/// Replays `events`; the verdict counts (drift, allowed) and the findings.
fn judged(config: &str, events: &[Ev]) -> Result<(u64, u64, Vec<Value>)> {
    let r = replay(config, events)?;
    Ok((r.summary.drift, r.summary.allowed, r.findings))
}

fn lease(holder: &str, renew: &str, transitions: u64) -> Value {
    json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": "istio-leader", "namespace": "istio-system", "resourceVersion": renew},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30,
            "renewTime": format!("2026-11-20T10:00:{renew}.000000Z"), "leaseTransitions": transitions}})
}

fn lease_update(holder: &str, renew: &str, transitions: u64) -> Ev {
    let body = lease(holder, renew, transitions);
    Ev::new(
        "update",
        "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/istio-leader",
    )
    .by_sa("istio-system", "istiod", "istiod-7f9c-abcde")
    .bodies(body.clone(), body)
}

#[test]
fn a_leader_lock_renewal_is_quiet_and_a_change_of_holder_is_reported() -> Result<()> {
    let (drift, allowed, findings) = judged(
        NO_PIPELINES,
        &[
            lease_update("istiod-7f9c-abcde", "01", 3),
            lease_update("istiod-7f9c-abcde", "03", 3),
            lease_update("istiod-7f9c-abcde", "05", 3),
            // Someone else takes the lock: a takeover, not a renewal.
            lease_update("attacker-pod", "07", 4),
        ],
    )?;
    // The first write of a lock is not compared (nothing is remembered yet):
    // reported, as the stated risk of the rule says only later ones are quiet.
    ensure!(allowed == 2, "renewals allowed: {allowed}");
    ensure!(drift == 2, "first sighting and the takeover: {findings:#?}");
    let takeover = findings.last().cloned().unwrap_or_default();
    let paths: Vec<&str> = takeover["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["path"].as_str())
        .collect();
    ensure!(paths.contains(&"spec.holderIdentity"), "{takeover:#}");
    Ok(())
}

fn configmap_lock(record: &str) -> Value {
    json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "ingress-controller-leader", "namespace": "ingress-nginx",
            "annotations": {"control-plane.alpha.kubernetes.io/leader": record}}})
}

#[test]
fn a_configmap_lock_renewal_is_quiet_but_not_its_other_fields() -> Result<()> {
    let record = |holder: &str, t: &str| {
        format!(
            r#"{{"holderIdentity":"{holder}","leaseDurationSeconds":30,"acquireTime":"2026-11-20T09:00:00Z","renewTime":"2026-11-20T10:00:{t}Z","leaderTransitions":1}}"#
        )
    };
    let write = |body: Value| {
        Ev::new(
            "update",
            "/api/v1/namespaces/ingress-nginx/configmaps/ingress-controller-leader",
        )
        .by_sa(
            "ingress-nginx",
            "ingress-nginx",
            "ingress-nginx-controller-1",
        )
        .bodies(body.clone(), body)
    };
    let mut extra = configmap_lock(&record("ctrl-1", "04"));
    extra["data"] = json!({"backdoor": "yes"});
    let (drift, allowed, _) = judged(
        NO_PIPELINES,
        &[
            write(configmap_lock(&record("ctrl-1", "00"))),
            write(configmap_lock(&record("ctrl-1", "02"))),
            write(extra),
        ],
    )?;
    ensure!(
        (drift, allowed) == (2, 1),
        "drift {drift}, allowed {allowed}"
    );
    Ok(())
}

#[test]
fn status_writes_by_service_accounts_are_quiet_but_not_csr_status_or_people() -> Result<()> {
    let sa_status = Ev::new(
        "patch",
        "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web/status",
    )
    .by_sa(
        "ingress-nginx",
        "ingress-nginx",
        "ingress-nginx-controller-1",
    );
    let (drift, allowed, _) = judged(NO_PIPELINES, &[sa_status])?;
    ensure!((drift, allowed) == (0, 1));
    // Signing a certificate is a status write too, and issues credentials.
    let csr_status = Ev::new(
        "update",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-csr-x/status",
    )
    .by_sa("kube-system", "rogue-signer", "rogue-1");
    // A person writing status fakes what controllers report.
    let person = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api/status",
    );
    let (drift, allowed, _) = judged(NO_PIPELINES, &[csr_status, person])?;
    ensure!((drift, allowed) == (2, 0));
    Ok(())
}

fn pod_status_by(node: &str, bound_to: &str, groups: &[&str]) -> Ev {
    let pod = json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"nodeName": bound_to, "containers": [{"name": "web", "image": "nginx"}]},
        "status": {"phase": "Running"}});
    Ev::new("patch", "/api/v1/namespaces/shop/pods/web-1/status")
        .by(&format!("system:node:{node}"), groups)
        .ua("kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46")
        .bodies(json!({"status": {"phase": "Running"}}), pod)
}

#[test]
fn a_node_writes_its_own_pods_even_without_groups_but_not_another_nodes() -> Result<()> {
    // GKE's audit entries carry no groups: matched by the name alone.
    let gke = pod_status_by("gke-pool-1-abcd", "gke-pool-1-abcd", &[]);
    let own_node = Ev::new("patch", "/api/v1/nodes/gke-pool-1-abcd/status")
        .by("system:node:gke-pool-1-abcd", &[]);
    let (drift, allowed, _) = judged(NO_PIPELINES, &[gke, own_node])?;
    ensure!((drift, allowed) == (0, 2), "drift {drift}");
    // A node credential writing another node's pod is what a stolen kubelet
    // credential looks like.
    let other = pod_status_by("gke-pool-1-abcd", "gke-pool-1-wxyz", &[]);
    let other_node = Ev::new("patch", "/api/v1/nodes/gke-pool-1-wxyz/status")
        .by("system:node:gke-pool-1-abcd", &[]);
    let (drift, allowed, _) = judged(NO_PIPELINES, &[other, other_node])?;
    ensure!((drift, allowed) == (2, 0), "allowed {allowed}");
    Ok(())
}

fn webhook(url: Option<&str>, ca: &str) -> Value {
    let client = match url {
        Some(u) => json!({"url": u, "caBundle": ca}),
        None => {
            json!({"service": {"name": "cert-manager-webhook", "namespace": "cert-manager"}, "caBundle": ca})
        }
    };
    json!({"kind": "ValidatingWebhookConfiguration", "apiVersion": "admissionregistration.k8s.io/v1",
        "metadata": {"name": "cert-manager-webhook"},
        "webhooks": [{"name": "webhook.cert-manager.io", "clientConfig": client,
            "admissionReviewVersions": ["v1"], "sideEffects": "None"}]})
}

fn cainjector_update(body: Value) -> Ev {
    Ev::new(
        "update",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/cert-manager-webhook",
    )
    .by_sa("cert-manager", "cert-manager-cainjector", "cert-manager-cainjector-1")
    .bodies(body.clone(), body)
}

#[test]
fn a_ca_bundle_injection_is_quiet_and_a_repointed_webhook_is_not() -> Result<()> {
    let (drift, allowed, findings) = judged(
        NO_PIPELINES,
        &[
            // First sighting: nothing to compare with, so reported.
            cainjector_update(webhook(None, "Q0EtMQ==")),
            cainjector_update(webhook(None, "Q0EtMg==")),
            cainjector_update(webhook(
                Some("https://evil.example.net/validate"),
                "Q0EtMg==",
            )),
        ],
    )?;
    ensure!(
        (drift, allowed) == (2, 1),
        "drift {drift}, allowed {allowed}"
    );
    let repoint = findings.last().cloned().unwrap_or_default();
    ensure!(
        repoint.to_string().contains("clientConfig.url"),
        "the finding names the repointed URL: {repoint:#}"
    );
    Ok(())
}

const AUTOSCALER: &str = r#"cluster: prod
allow:
  - name: cluster-autoscaler/status
    risk: can rewrite the status ConfigMap, which people read to learn what the autoscaler did
    who:
      service_accounts: ["kube-system:cluster-autoscaler"]
    what:
      - api_groups: [""]
        resources: ["configmaps"]
        verbs: ["update", "patch"]
        namespaces: ["kube-system"]
        names: ["cluster-autoscaler-status"]
"#;

#[test]
fn an_allowance_covers_its_scope_and_nothing_else() -> Result<()> {
    let status = Ev::new(
        "update",
        "/api/v1/namespaces/kube-system/configmaps/cluster-autoscaler-status",
    )
    .by_sa("kube-system", "cluster-autoscaler", "cluster-autoscaler-1");
    let (drift, allowed, _) = judged(AUTOSCALER, &[status])?;
    ensure!((drift, allowed) == (0, 1));
    // The same identity outside the scope: another ConfigMap, a binding.
    let coredns = Ev::new(
        "update",
        "/api/v1/namespaces/kube-system/configmaps/coredns",
    )
    .by_sa("kube-system", "cluster-autoscaler", "cluster-autoscaler-1");
    let binding = Ev::new(
        "create",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    )
    .named("autoscaler-admin")
    .by_sa("kube-system", "cluster-autoscaler", "cluster-autoscaler-1");
    // Impersonating the allowed identity is never covered.
    let impersonated = Ev::new(
        "update",
        "/api/v1/namespaces/kube-system/configmaps/cluster-autoscaler-status",
    )
    .impersonating("system:serviceaccount:kube-system:cluster-autoscaler", &[]);
    let (drift, allowed, _) = judged(AUTOSCALER, &[coredns, binding, impersonated])?;
    ensure!((drift, allowed) == (3, 0), "allowed {allowed}");
    Ok(())
}

#[test]
fn an_allowance_that_trusts_too_much_is_refused_with_its_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("driftwatch.yaml");
    std::fs::write(
        &path,
        r#"allow:
  - name: everyone
    risk: none
    who:
      groups: ["system:authenticated"]
    what:
      - resources: ["validatingwebhookconfigurations"]
        verbs: ["patch", "get"]
      - api_groups: ["coordination.k8s.io"]
        resources: ["leases"]
        verbs: ["update"]
        namespaces: ["kube-system"]
"#,
    )?;
    let out = run(
        &["policy", "check", "--config", &path.to_string_lossy()],
        None,
    )?;
    ensure!(out.code != 0, "refused: {}", out.stderr);
    for expected in [
        ":5: allow[0].who.groups[0]: \"system:authenticated\" is far too broad",
        "allow[0].what[0].verbs[1]: \"get\" is not a write verb",
        "allow[0].what[0].fields: webhook configurations",
        "allow[0].what[1].names: leases in kube-system must be named",
    ] {
        ensure!(
            out.stderr.contains(expected),
            "{expected:?} in {}",
            out.stderr
        );
    }
    Ok(())
}

#[test]
fn deleting_events_is_reported_though_writing_them_is_noise() -> Result<()> {
    all_ignored(
        NO_PIPELINES,
        &[Ev::new("create", "/api/v1/namespaces/kube-system/events")],
    )?;
    let (drift, _, _) = judged(
        NO_PIPELINES,
        &[Ev::new(
            "deletecollection",
            "/api/v1/namespaces/kube-system/events",
        )],
    )?;
    ensure!(drift == 1);
    Ok(())
}

/// The true positives of the peers' Kubernetes-audit rule sets (Falco,
/// Elastic, Sigma, Panther; see tests/fixtures/peer-rules/README.md), with
/// the embedded defaults: a ratchet on what is caught, at the severity the
/// case deserves, and on false alarms among their benign cases.
#[test]
fn the_peers_true_positives_are_caught_and_their_benign_cases_are_quiet() -> Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/peer-rules/cases.jsonl");
    let cases: Vec<Value> = std::fs::read_to_string(&path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let events: String = cases.iter().map(|c| format!("{}\n", c["event"])).collect();
    let out = run(&["replay", "-"], Some(events.as_bytes()))?;
    ensure!(out.code == 0, "{}", out.stderr);
    let found: std::collections::HashMap<String, String> = out
        .findings()
        .iter()
        .map(|f| {
            (
                f["audit_id"].as_str().unwrap_or("").to_owned(),
                f["severity"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let rank = |s: &str| {
        ["low", "medium", "high", "critical"]
            .iter()
            .position(|x| *x == s)
    };
    let (mut at_severity, mut missed, mut false_alarms) = (0, Vec::new(), Vec::new());
    for c in &cases {
        let id = c["event"]["auditID"].as_str().unwrap_or("");
        let what = format!("{} / {}", c["source"], c["rule"]);
        match (c["expect"].as_str(), found.get(id)) {
            (Some("finding"), None) => missed.push(what),
            (Some("finding"), Some(s)) => {
                at_severity +=
                    usize::from(rank(s) >= rank(c["min_severity"].as_str().unwrap_or("low")));
            }
            (_, Some(_)) => false_alarms.push(what),
            _ => {}
        }
    }
    eprintln!(
        "peer cases: {} at severity, missed {missed:?}, false alarms {false_alarms:?}",
        at_severity
    );
    ensure!(missed.len() <= 1, "missed: {missed:?}");
    ensure!(at_severity >= 82, "caught at their severity: {at_severity}");
    ensure!(false_alarms.len() <= 1, "false alarms: {false_alarms:?}");
    Ok(())
}

/// A pack allows its component's own lock by name; the same identity taking
/// the controller-manager's lock is still a critical finding.
#[test]
fn a_pack_allows_its_own_lock_and_not_the_control_planes() -> Result<()> {
    let by_cert_manager = |name: &str, holder: &str| {
        let body = json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"holderIdentity": holder, "renewTime": "2026-11-20T10:00:01.000000Z"}});
        Ev::new(
            "update",
            &format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}"),
        )
        .by_sa("cert-manager", "cert-manager", "cert-manager-5d8f-1")
        .bodies(body.clone(), body)
    };
    let (drift, allowed, findings) = judged(
        "allow_packs: [cert-manager]\n",
        &[
            by_cert_manager("cert-manager-controller", "cert-manager-5d8f-1"),
            by_cert_manager("kube-controller-manager", "cert-manager-5d8f-1"),
        ],
    )?;
    ensure!(
        (drift, allowed) == (1, 1),
        "drift {drift}, allowed {allowed}"
    );
    ensure!(findings[0]["resource"]["name"] == "kube-controller-manager");
    Ok(())
}

// ---------------------------------------------------------------------------
// Tooling user agents on RBAC writes.

/// Argo CD, Flux and Helm from CI as sanctioned pipelines, and a bootstrap
/// script declared with the `curl` it really uses.
const PIPELINES: &str = r#"cluster: prod
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
  - name: flux
    users: ["system:serviceaccount:flux-system:kustomize-controller"]
    user_agents: ["^kustomize-controller/"]
  - name: helm-ci
    users: ["ci-deployer@example.com"]
    user_agents: ["^Helm/"]
  - name: bootstrap
    users: ["system:serviceaccount:kube-system:cluster-bootstrap"]
    user_agents: ["^curl/"]
"#;

fn read_only_role() -> Ev {
    Ev::new(
        "create",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles",
    )
    .named("pod-reader")
    .body(
        json!({"kind": "Role", "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "pod-reader", "namespace": "shop"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    )
}

fn admin_binding(subject: &str) -> Ev {
    Ev::new(
        "create",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    )
    .named("backup-operator")
    .body(json!({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "backup-operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": "default"}]}))
}

#[test]
fn rbac_written_with_a_generic_http_tool_is_reported_and_kubernetes_clients_are_not() -> Result<()>
{
    // A token from a pod's mount, used with curl to bind cluster-admin; a
    // script granting something harmless with python-requests; the same
    // harmless grant with kubectl.
    let stolen = admin_binding("default")
        .by_sa("default", "default", "web-5d8f-1")
        .ua("curl/8.5.0");
    let script = read_only_role().ua("python-requests/2.31.0");
    let kubectl = read_only_role();
    let r = replay(NO_PIPELINES, &[stolen, script, kubectl])?;
    let rules: Vec<Vec<String>> = r.findings.iter().map(risk_rules).collect();
    let severities: Vec<&str> = r
        .findings
        .iter()
        .filter_map(|f| f["severity"].as_str())
        .collect();
    ensure!(
        rules
            == [
                vec!["rbac_bind_admin", "tooling_user_agent_rbac"],
                vec!["tooling_user_agent_rbac"],
                vec![]
            ],
        "{rules:?}"
    );
    ensure!(severities == ["critical", "high", "high"], "{severities:?}");
    let tool = &r.findings[0]["risks"][1];
    ensure!(
        tool["value"] == "curl/8.5.0" && tool["severity"] == "critical",
        "{tool}"
    );

    // The pipelines' own agents, and a pipeline declared with curl.
    let argocd = read_only_role().by_argocd();
    let flux = read_only_role()
        .by_sa(
            "flux-system",
            "kustomize-controller",
            "kustomize-controller-7f9c-1",
        )
        .ua("kustomize-controller/v1.4.0");
    let helm = read_only_role()
        .by(
            "ci-deployer@example.com",
            &["oidc:ci", "system:authenticated"],
        )
        .ua("Helm/3.16.2");
    let bootstrap = read_only_role()
        .by_sa("kube-system", "cluster-bootstrap", "bootstrap-x1")
        .ua("curl/8.5.0");
    let r = replay(PIPELINES, &[argocd, flux, helm, bootstrap])?;
    ensure!(
        r.summary.sanctioned == 4 && r.findings.is_empty(),
        "{}\n{}",
        r.summary.line,
        r.run.stdout
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Node credentials used off their node.

const KUBELET_UA: &str = "kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46";
const NODES: &[&str] = &["system:nodes", "system:authenticated"];

fn by_node(e: Ev, node: &str, groups: &[&str]) -> Ev {
    e.by(&format!("system:node:{node}"), groups)
        .ua(KUBELET_UA)
        .source_ips(&["10.0.1.21"])
}

fn node_status(node: &str) -> Ev {
    Ev::new("patch", &format!("/api/v1/nodes/{node}/status"))
        .body(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
}

fn node_lease(node: &str) -> Ev {
    let lease = json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "renewTime": "2026-11-20T10:00:10.000000Z"}});
    Ev::new(
        "update",
        &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"),
    )
    .body(lease)
}

#[test]
fn node_credentials_on_another_nodes_objects_are_critical_even_when_refused() -> Result<()> {
    // Its own Node and lease: system, as always.
    let own = [
        by_node(node_status("pool-1-a"), "pool-1-a", NODES),
        by_node(node_lease("pool-1-a"), "pool-1-a", NODES),
    ];
    let r = replay(NO_PIPELINES, &own)?;
    ensure!(
        r.summary.system == 2 && r.findings.is_empty(),
        "{}",
        r.summary.line
    );

    // Another node's Node, accepted (no NodeRestriction); another node's
    // lease, refused by NodeRestriction; a pod bound to another node, by a
    // GKE kubelet (no groups).
    let other_node = by_node(node_status("pool-1-b"), "pool-1-a", NODES);
    let refused_lease = by_node(node_lease("pool-1-b"), "pool-1-a", NODES).code(403);
    let again = by_node(node_lease("pool-1-b"), "pool-1-a", NODES).code(403);
    let other_pod = pod_status_by("gke-pool-1-abcd", "gke-pool-1-wxyz", &[]);
    let r = replay(NO_PIPELINES, &[other_node, refused_lease, again, other_pod])?;
    ensure!(r.findings.len() == 4, "{}", r.run.stdout);
    for f in &r.findings {
        ensure!(f["severity"] == "critical", "{f:#}");
        ensure!(risk_rules(f) == ["node_credentials_off_node"], "{f:#}");
    }
    let values: Vec<&Value> = r.findings.iter().map(|f| &f["risks"][0]["value"]).collect();
    ensure!(
        values == ["pool-1-b", "pool-1-b", "pool-1-b", "gke-pool-1-wxyz"],
        "{values:?}"
    );
    // The refusals changed nothing: no change, no drift opened or joined.
    for refused in &r.findings[1..3] {
        ensure!(refused["changes"] == json!([]), "{refused:#}");
        ensure!(refused["drift"].is_null(), "{refused:#}");
        ensure!(
            refused["reasons"].to_string().contains("refused it (403)"),
            "{refused:#}"
        );
    }
    ensure!(
        r.findings[0]["drift"]["state"] == "open",
        "{:#}",
        r.findings[0]
    );

    // A refusal on its own objects is a failed request like any other.
    all_ignored(
        NO_PIPELINES,
        &[by_node(node_status("pool-1-a"), "pool-1-a", NODES).code(409)],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// GKE: Cloud Logging's `@type` is not a field.

#[test]
fn gke_findings_carry_no_type_url_change() -> Result<()> {
    // The corpus's GKE kubelet status patches (logged without the pod, so
    // not quiet) and replica-set controller create.
    let path = crate::common::corpus("gcp-khi/k8s_audit_entries.jsonl");
    let path = path.to_str().unwrap_or_default();
    let r = crate::common::replay_args(NO_PIPELINES, &[path], "")?;
    ensure!(!r.findings.is_empty(), "{}", r.summary.line);
    for f in &r.findings {
        ensure!(
            !f["changes"].to_string().contains("@type"),
            "a change of the type URL: {f:#}"
        );
    }
    // A person's merge patch, as Cloud Logging records it.
    let entry = json!({
        "insertId": "3f1c0b9e-4a2d-4e5f-8c6b-7d9e0f1a2b3c",
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"first": true, "id": "3f1c0b9e-4a2d-4e5f-8c6b-7d9e0f1a2b3c", "last": true, "producer": "k8s.io"},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "alice@example.com"},
            "methodName": "io.k8s.apps.v1.deployments.patch",
            "requestMetadata": {"callerIp": "203.0.113.7", "callerSuppliedUserAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"},
            "resourceName": "apps/v1/namespaces/shop/deployments/api",
            "serviceName": "k8s.io",
            "status": {"code": 0},
            "request": {"@type": "k8s.io/Patch", "spec": {"replicas": 5}},
            "response": {"@type": "apps.k8s.io/v1.Deployment", "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "api", "namespace": "shop", "resourceVersion": "41"},
                "spec": {"replicas": 5}}
        },
        "resource": {"type": "k8s_cluster"},
        "timestamp": "2026-11-20T10:00:00.123456Z"
    });
    let r = crate::common::replay_args(NO_PIPELINES, &["-"], &format!("{entry}\n"))?;
    let f = r.only()?;
    ensure!(change_paths(f) == ["spec.replicas"], "{f:#}");
    Ok(())
}

// ---------------------------------------------------------------------------
// cert-manager's cainjector repointing a webhook.

fn cainjector_json_patch(ops: Value, after: Option<Value>) -> Ev {
    let e = Ev::new(
        "patch",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/cert-manager-webhook",
    )
    .by_sa(
        "cert-manager",
        "cert-manager-cainjector",
        "cert-manager-cainjector-1",
    )
    .ua("cert-manager-cainjector/v1.16.1 (linux/amd64) cert-manager/2a2c8ac2e2cc")
    .body(ops);
    match after {
        Some(a) => e.response(a),
        None => e,
    }
}

#[test]
fn a_cainjector_repointing_a_webhook_is_critical_whether_or_not_the_object_is_logged() -> Result<()>
{
    let repoint = json!([
        {"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": "https://evil.example.com/"},
        {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "Q0EtMg=="}
    ]);
    let mut after = webhook(Some("https://evil.example.com/"), "Q0EtMg==");
    after["kind"] = json!("MutatingWebhookConfiguration");
    // With the injector's pack on: its caBundle patches are allowed; a URL
    // is outside the allowance's fields, and its content makes it critical.
    let packs = "cluster: prod\nallow_packs: [cert-manager]\n";
    let ca_only = json!([{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "Q0EtMw=="}]);
    let r = replay(
        packs,
        &[
            cainjector_json_patch(repoint.clone(), None),
            cainjector_json_patch(repoint, Some(after)),
            cainjector_json_patch(ca_only, None),
        ],
    )?;
    ensure!(
        r.findings.len() == 2 && r.summary.allowed == 1,
        "{}\n{}",
        r.summary.line,
        r.run.stdout
    );
    for f in &r.findings {
        ensure!(f["severity"] == "critical", "{f:#}");
        let risk = &f["risks"][0];
        ensure!(risk["rule"] == "webhook_external_url", "{f:#}");
        ensure!(risk["value"] == "https://evil.example.com/", "{f:#}");
        ensure!(
            f["reasons"]
                .to_string()
                .contains("risk: webhook_external_url"),
            "{f:#}"
        );
    }
    Ok(())
}
