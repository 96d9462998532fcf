//! Scenario tests: realistic audit events, as a real API server writes them,
//! piped through the real `driftwatch replay` with a realistic pipeline
//! config. Every expectation follows from DESIGN.md ("Audit semantics",
//! "Classification (the policy)" and the finding contract), not from a
//! recorded run of the program.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::common::{
    ALICE, ALICE_GROUPS, ARGOCD_SA, ARGOCD_UA, Ev, KUBECTL, all_ignored, replay, replay_args,
    sa_groups, single_finding,
};

// Client fingerprints as real clients send them.
const KUBECTL_WINDOWS: &str = "kubectl.exe/v1.31.2 (windows/amd64) kubernetes/5864a46";
const ARGOCD_SERVER_UA: &str = "argocd-server/v2.13.1 (linux/amd64)";
const KUSTOMIZE_UA: &str = "kustomize-controller/v1.4.0";
const HELM_CONTROLLER_UA: &str = "helm-controller/v1.1.0";
const NOTIFICATION_UA: &str = "notification-controller/v1.4.0";
const HELM_UA: &str = "Helm/3.16.2";
const KCM_UA: &str = "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46";
const KUBELET_UA: &str = "kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46";
const CERT_MANAGER_UA: &str =
    "cert-manager-certificates-issuing/v1.16.1 (linux/amd64) cert-manager/4ba1f5e";

// Identities.
const MALLORY: &str = "mallory@example.com";
const ADMIN: &str = "platform-admin@example.com";
const ADMIN_GROUPS: &[&str] = &["oidc:platform-admins", "system:authenticated"];
const CI_USER: &str = "ci-deployer@example.com";
const CI_GROUPS: &[&str] = &["oidc:ci", "system:authenticated"];
const CI_RUNNER_IP: &str = "10.20.5.17";
const OUTSIDE_IP: &str = "203.0.113.50";

/// The sanctioned pipelines of a realistic cluster: Argo CD, Flux, Helm from
/// CI. Tests append `system_identities`, `ignore` or `severity` sections.
const PIPELINES: &str = r#"
cluster: prod-eu-1
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
  - name: flux
    users:
      - "system:serviceaccount:flux-system:kustomize-controller"
      - "system:serviceaccount:flux-system:helm-controller"
    user_agents: ["^kustomize-controller/", "^helm-controller/"]
  - name: helm-ci
    users: ["ci-deployer@example.com"]
    user_agents: ["^Helm/"]
    source_cidrs: ["10.20.0.0/16"]
"#;

/// The same Flux pipeline declared by namespace group instead of users.
const FLUX_BY_GROUP: &str = r#"
cluster: prod-eu-1
pipelines:
  - name: flux
    groups: ["system:serviceaccounts:flux-system"]
    user_agents: ["^kustomize-controller/", "^helm-controller/"]
"#;

fn config(extra: &str) -> String {
    format!("{PIPELINES}{extra}")
}

// ---------------------------------------------------------------------------
// Realistic requests.

/// `kubectl edit deployment api` changing the replica count.
fn kubectl_edit_replicas() -> Ev {
    Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-edit&fieldValidation=Strict",
    )
    .body(json!({"spec": {"replicas": 5}}))
}

/// Argo CD syncing the same deployment (client-side apply, its field manager).
fn argocd_sync() -> Ev {
    Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=argocd-controller",
    )
    .by_argocd()
    .body(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.example.com/shop/api:1.8.3"}
    ]}}}}))
}

/// `kubectl exec -it api-7d9c5b8f4-x2k8q -- sh`; `verb` is `create` over
/// SPDY and `get` over WebSocket.
fn kubectl_exec(verb: &str) -> Ev {
    Ev::new(
        verb,
        "/api/v1/namespaces/shop/pods/api-7d9c5b8f4-x2k8q/exec?command=sh&container=app&stdin=true&stdout=true&tty=true",
    )
}

/// The deployment controller creating a ReplicaSet for a rollout.
fn controller_creates_replicaset(controller_sa: &str) -> Ev {
    Ev::new("create", "/apis/apps/v1/namespaces/shop/replicasets")
        .by_sa("kube-system", controller_sa, "kube-controller-manager-cp-1")
        .ua(&format!(
            "{KCM_UA}/system:serviceaccount:kube-system:{controller_sa}"
        ))
        .source_ips(&["10.0.0.11"])
}

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

fn reasons(f: &Value) -> String {
    f["reasons"].to_string()
}

// ---------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------

#[test]
fn each_verdict_is_counted_once_and_only_drift_emits_a_finding() -> Result<()> {
    let read = Ev::new("get", "/apis/apps/v1/namespaces/shop/deployments/api");
    let system = controller_creates_replicaset("deployment-controller");
    let sanctioned = argocd_sync();
    let drift = kubectl_edit_replicas();
    let r = replay(&config(""), &[read, system, sanctioned, drift.clone()])?;
    assert_eq!(r.summary.verdicts(), (1, 1, 1, 1), "{}", r.summary.line);
    // Everything but the read is a completed, successful mutation.
    assert_eq!(r.summary.mutations, 3, "{}", r.summary.line);
    assert_eq!(r.summary.documents, 4, "{}", r.summary.line);
    let f = r.only()?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["audit_id"], drift.id());
    assert_eq!(f["type"], "out_of_band_change");
    Ok(())
}

#[test]
fn argocd_sync_is_sanctioned() -> Result<()> {
    let r = replay(&config(""), &[argocd_sync()])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 1, 0), "{}", r.summary.line);
    assert!(r.findings.is_empty());
    Ok(())
}

#[test]
fn flux_controllers_applying_are_sanctioned() -> Result<()> {
    // kustomize-controller applies server-side; helm-controller installs a
    // release (creates its objects).
    let kustomize = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kustomize-controller&force=true",
    )
    .by_sa("flux-system", "kustomize-controller", "kustomize-controller-6b9f8d7c5-q4w2m")
    .ua(KUSTOMIZE_UA)
    .body(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop",
                     "labels": {"kustomize.toolkit.fluxcd.io/name": "shop"}},
        "spec": {"replicas": 3}
    }));
    let helm = Ev::new(
        "create",
        "/api/v1/namespaces/monitoring/configmaps?fieldManager=helm-controller",
    )
    .by_sa(
        "flux-system",
        "helm-controller",
        "helm-controller-5c8d9f7b6-z9x8c",
    )
    .ua(HELM_CONTROLLER_UA);
    let r = replay(&config(""), &[kustomize, helm])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 2, 0), "{}", r.summary.line);
    assert!(r.findings.is_empty());
    Ok(())
}

#[test]
fn flux_declared_by_group_sanctions_its_controllers_and_still_checks_user_agents() -> Result<()> {
    let kustomize = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kustomize-controller&force=true",
    )
    .by_sa("flux-system", "kustomize-controller", "kustomize-controller-6b9f8d7c5-q4w2m")
    .ua(KUSTOMIZE_UA);
    // Another service account of flux-system is in the group, but its user
    // agent is none of the pipeline's: credential misuse.
    let notification = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=notification-controller",
    )
    .by_sa(
        "flux-system",
        "notification-controller",
        "notification-controller-7f6d5c4b3-m2n3b",
    )
    .ua(NOTIFICATION_UA);
    let r = replay(FLUX_BY_GROUP, &[kustomize, notification])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 1, 1), "{}", r.summary.line);
    let f = r.only()?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["type"], "pipeline_credential_misuse");
    assert_eq!(f["pipeline"], "flux");
    assert_eq!(
        f["actor"]["username"],
        "system:serviceaccount:flux-system:notification-controller"
    );
    Ok(())
}

#[test]
fn helm_from_ci_inside_its_cidr_is_sanctioned() -> Result<()> {
    let upgrade = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=helm",
    )
    .by(CI_USER, CI_GROUPS)
    .ua(HELM_UA)
    .source_ips(&[CI_RUNNER_IP]);
    let install = Ev::new(
        "create",
        "/api/v1/namespaces/shop/services?fieldManager=helm",
    )
    .by(CI_USER, CI_GROUPS)
    .ua(HELM_UA)
    .source_ips(&["10.20.200.3"]);
    let r = replay(&config(""), &[upgrade, install])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 2, 0), "{}", r.summary.line);
    assert!(r.findings.is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding types
// ---------------------------------------------------------------------------

#[test]
fn human_impersonating_argocd_controller_is_pipeline_impersonation() -> Result<()> {
    // kubectl --as=system:serviceaccount:argocd:argocd-application-controller
    let e = kubectl_edit_replicas()
        .by(ADMIN, ADMIN_GROUPS)
        .impersonating(ARGOCD_SA, &sa_groups("argocd"));
    let f = single_finding(&config(""), e, "pipeline_impersonation", "critical")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["pipeline"], "argocd");
    assert_eq!(f["actor"]["username"], ARGOCD_SA);
    assert_eq!(f["actor"]["impersonated_by"]["username"], ADMIN);
    Ok(())
}

#[test]
fn impersonation_wins_over_spoofing_when_the_user_agent_is_forged_too() -> Result<()> {
    // Impersonating the controller AND sending its user agent: the most
    // specific type is the impersonation.
    let e = kubectl_edit_replicas()
        .by(ADMIN, ADMIN_GROUPS)
        .impersonating(ARGOCD_SA, &sa_groups("argocd"))
        .ua(ARGOCD_UA);
    let f = single_finding(&config(""), e, "pipeline_impersonation", "critical")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["pipeline"], "argocd");
    Ok(())
}

#[test]
fn argocd_token_used_from_kubectl_is_pipeline_credential_misuse() -> Result<()> {
    // The controller's token, lifted from its pod, used with kubectl.
    let e = kubectl_edit_replicas()
        .by_sa(
            "argocd",
            "argocd-application-controller",
            "argocd-application-controller-0",
        )
        .source_ips(&["192.168.10.24"]);
    let f = single_finding(&config(""), e, "pipeline_credential_misuse", "critical")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["pipeline"], "argocd");
    assert_eq!(f["actor"]["username"], ARGOCD_SA);
    assert_eq!(f["actor"]["client"], "kubectl");
    assert!(reasons(&f).contains("kubectl/v1.31.2"), "{f}");
    Ok(())
}

#[test]
fn helm_ci_user_from_outside_its_cidr_is_pipeline_credential_misuse() -> Result<()> {
    let e = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=helm",
    )
    .by(CI_USER, CI_GROUPS)
    .ua(HELM_UA)
    .source_ips(&[OUTSIDE_IP]);
    let f = single_finding(&config(""), e, "pipeline_credential_misuse", "critical")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["pipeline"], "helm-ci");
    assert_eq!(f["actor"]["source_ips"], json!([OUTSIDE_IP]));
    assert!(reasons(&f).contains(OUTSIDE_IP), "{f}");
    Ok(())
}

#[test]
fn helm_ci_forwarded_address_inside_but_real_hop_outside_is_pipeline_credential_misuse()
-> Result<()> {
    // sourceIPs[0] is the client's X-Forwarded-For claim; the last entry is
    // the hop the API server saw. A stolen token can forge only the first.
    let e = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=helm",
    )
    .by(CI_USER, CI_GROUPS)
    .ua(HELM_UA)
    .source_ips(&[CI_RUNNER_IP, OUTSIDE_IP]);
    let f = single_finding(&config(""), e, "pipeline_credential_misuse", "critical")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["pipeline"], "helm-ci");
    assert!(reasons(&f).contains(OUTSIDE_IP), "{f}");
    Ok(())
}

#[test]
fn human_with_argocd_user_agent_is_user_agent_spoofing() -> Result<()> {
    // kubectl --user-agent 'argocd-application-controller/v2.13.1 (linux/amd64)'
    let e = kubectl_edit_replicas().ua(ARGOCD_UA);
    let f = single_finding(&config(""), e, "user_agent_spoofing", "critical")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["pipeline"], "argocd");
    assert_eq!(f["actor"]["username"], ALICE);
    assert_eq!(f["actor"]["client"], "argocd");
    Ok(())
}

/// Checks an interactive-access finding on pod `api-7d9c5b8f4-x2k8q`.
fn assert_interactive(f: &Value, subresource: &str) {
    assert_eq!(f["resource"]["resource"], "pods", "{f}");
    assert_eq!(f["resource"]["subresource"], subresource, "{f}");
    assert_eq!(f["resource"]["namespace"], "shop", "{f}");
    assert_eq!(f["pipeline"], Value::Null, "{f}");
    assert_eq!(f["actor"]["username"], ALICE, "{f}");
}

#[test]
fn exec_over_spdy_is_interactive_access() -> Result<()> {
    let f = single_finding(
        &config(""),
        kubectl_exec("create"),
        "interactive_access",
        "high",
    )?;
    insta::assert_json_snapshot!(f);
    assert_interactive(&f, "exec");
    assert_eq!(f["verb"], "create");
    Ok(())
}

#[test]
fn exec_over_websocket_get_is_interactive_access() -> Result<()> {
    // kubectl's default since 1.30: a GET upgraded to WebSocket, answered 101.
    let f = single_finding(
        &config(""),
        kubectl_exec("get"),
        "interactive_access",
        "high",
    )?;
    insta::assert_json_snapshot!(f);
    assert_interactive(&f, "exec");
    assert_eq!(f["verb"], "get");
    Ok(())
}

#[test]
fn attach_is_interactive_access() -> Result<()> {
    let e = Ev::new(
        "create",
        "/api/v1/namespaces/shop/pods/api-7d9c5b8f4-x2k8q/attach?container=app&stdin=true&stdout=true&tty=true",
    );
    let f = single_finding(&config(""), e, "interactive_access", "high")?;
    insta::assert_json_snapshot!(f);
    assert_interactive(&f, "attach");
    Ok(())
}

#[test]
fn portforward_is_interactive_access() -> Result<()> {
    let e = Ev::new(
        "get",
        "/api/v1/namespaces/shop/pods/api-7d9c5b8f4-x2k8q/portforward",
    );
    let f = single_finding(&config(""), e, "interactive_access", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_interactive(&f, "portforward");
    Ok(())
}

#[test]
fn kubectl_debug_ephemeral_container_is_interactive_access() -> Result<()> {
    // kubectl debug -it api-7d9c5b8f4-x2k8q --image=busybox:1.36 --target=app
    let e = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/pods/api-7d9c5b8f4-x2k8q/ephemeralcontainers",
    )
    .body(json!({"spec": {"ephemeralContainers": [{
        "name": "debugger-w7x4z", "image": "busybox:1.36", "stdin": true, "tty": true,
        "targetContainerName": "app", "terminationMessagePolicy": "File"
    }]}}));
    let f = single_finding(&config(""), e, "interactive_access", "high")?;
    insta::assert_json_snapshot!(f);
    assert_interactive(&f, "ephemeralcontainers");
    Ok(())
}

#[test]
fn service_proxy_is_interactive_access() -> Result<()> {
    // kubectl proxy, then a browser on .../services/http:api:80/proxy/
    let e = Ev::new(
        "get",
        "/api/v1/namespaces/shop/services/http:api:80/proxy/admin/debug",
    );
    let f = single_finding(&config(""), e, "interactive_access", "high")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["resource"]["resource"], "services");
    assert_eq!(f["resource"]["subresource"], "proxy");
    assert_eq!(f["resource"]["name"], "http:api:80");
    Ok(())
}

#[test]
fn failed_exec_is_ignored() -> Result<()> {
    // Forbidden: no session was opened.
    all_ignored(&config(""), &[kubectl_exec("create").code(403)])?;
    Ok(())
}

#[test]
fn kubectl_edit_is_out_of_band_change() -> Result<()> {
    let e = kubectl_edit_replicas()
        .received_at("2026-11-20T09:41:07.402117Z")
        .stage_at("2026-11-20T09:41:07.415893Z");
    let f = single_finding(&config(""), e.clone(), "out_of_band_change", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["cluster"], "prod-eu-1");
    assert_eq!(f["time"], "2026-11-20T09:41:07.415893Z");
    assert_eq!(f["audit_id"], e.id());
    assert_eq!(f["verb"], "patch");
    // The URI as the API server saw it (`\u0026` decoded).
    assert_eq!(
        f["request_uri"],
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-edit&fieldValidation=Strict"
    );
    assert_eq!(
        f["resource"],
        json!({"group": "apps", "version": "v1", "resource": "deployments",
               "subresource": null, "namespace": "shop", "name": "api", "uid": null})
    );
    assert_eq!(f["actor"]["username"], ALICE);
    assert_eq!(f["actor"]["groups"], json!(ALICE_GROUPS));
    assert_eq!(f["actor"]["impersonated_by"], Value::Null);
    assert_eq!(f["actor"]["user_agent"], KUBECTL);
    assert_eq!(f["actor"]["source_ips"], json!(["192.168.10.24"]));
    assert_eq!(f["pipeline"], Value::Null);
    assert!(f["id"].as_str().is_some_and(|id| !id.is_empty()), "id: {f}");
    Ok(())
}

#[test]
fn kubectl_delete_is_out_of_band_change() -> Result<()> {
    let e = Ev::new("delete", "/api/v1/namespaces/shop/configmaps/api-config");
    let f = single_finding(&config(""), e, "out_of_band_change", "high")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["verb"], "delete");
    assert_eq!(f["resource"]["name"], "api-config");
    Ok(())
}

#[test]
fn kubectl_create_is_out_of_band_change() -> Result<()> {
    // kubectl create configmap feature-flags --from-literal=checkout_v2=true
    let e = Ev::new(
        "create",
        "/api/v1/namespaces/shop/configmaps?fieldManager=kubectl-create&fieldValidation=Strict",
    )
    .body(json!({"kind": "ConfigMap", "apiVersion": "v1",
                 "metadata": {"name": "feature-flags", "namespace": "shop"},
                 "data": {"checkout_v2": "true"}}));
    let f = single_finding(&config(""), e, "out_of_band_change", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["verb"], "create");
    assert_eq!(f["actor"]["field_manager"], "kubectl-create");
    Ok(())
}

#[test]
fn argocd_sync_impersonating_tenant_service_account_stays_sanctioned() -> Result<()> {
    // Argo CD 2.13 sync impersonation, and Flux `serviceAccountName`: the
    // pipeline acts as a tenant's service account.
    let argocd = argocd_sync().impersonating(
        "system:serviceaccount:shop:argocd-shop-deployer",
        &sa_groups("shop"),
    );
    let flux = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/worker?fieldManager=kustomize-controller&force=true",
    )
    .by_sa("flux-system", "kustomize-controller", "kustomize-controller-6b9f8d7c5-q4w2m")
    .ua(KUSTOMIZE_UA)
    .impersonating("system:serviceaccount:shop:flux-tenant", &sa_groups("shop"));
    let r = replay(&config(""), &[argocd, flux])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 2, 0), "{}", r.summary.line);
    assert!(r.findings.is_empty(), "{}", r.run.stdout);
    Ok(())
}

// ---------------------------------------------------------------------------
// Ignore rules
// ---------------------------------------------------------------------------

#[test]
fn request_received_stage_is_ignored() -> Result<()> {
    // Before authorization: the same request at ResponseComplete is drift.
    let e = kubectl_edit_replicas();
    let r = replay(&config(""), &[e.clone().stage("RequestReceived"), e])?;
    assert_eq!(r.summary.verdicts(), (1, 0, 0, 1), "{}", r.summary.line);
    assert_eq!(r.only()?["stage"], "ResponseComplete");
    Ok(())
}

#[test]
fn response_started_of_a_non_connect_request_is_ignored() -> Result<()> {
    let create = Ev::new(
        "create",
        "/apis/apps/v1/namespaces/shop/deployments?fieldManager=kubectl-create",
    )
    .stage("ResponseStarted");
    let watch =
        Ev::new("watch", "/api/v1/namespaces/shop/pods?watch=true").stage("ResponseStarted");
    all_ignored(&config(""), &[create, watch])?;
    Ok(())
}

#[test]
fn reads_are_ignored() -> Result<()> {
    all_ignored(
        &config(""),
        &[
            Ev::new("get", "/apis/apps/v1/namespaces/shop/deployments/api"),
            Ev::new("list", "/api/v1/namespaces/shop/secrets?limit=500"),
            Ev::new(
                "watch",
                "/api/v1/namespaces/shop/pods?allowWatchBookmarks=true&resourceVersion=48213&watch=true",
            ),
            Ev::new(
                "get",
                "/api/v1/namespaces/shop/pods/api-7d9c5b8f4-x2k8q/log?container=app&follow=true",
            ),
        ],
    )?;
    Ok(())
}

#[test]
fn failed_requests_are_ignored() -> Result<()> {
    all_ignored(
        &config(""),
        &[
            kubectl_edit_replicas().code(403),
            Ev::new(
                "create",
                "/api/v1/namespaces/shop/configmaps?fieldManager=kubectl-create",
            )
            .code(409),
            Ev::new(
                "update",
                "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-replace",
            )
            .code(422),
            Ev::new("delete", "/api/v1/namespaces/shop/secrets/old-token").code(404),
        ],
    )?;
    Ok(())
}

#[test]
fn dry_run_all_is_ignored_wherever_it_sits_in_the_query() -> Result<()> {
    let dry = [
        Ev::new(
            "patch",
            "/apis/apps/v1/namespaces/shop/deployments/api?dryRun=All",
        ),
        // kubectl diff
        Ev::new(
            "patch",
            "/apis/apps/v1/namespaces/shop/deployments/api?dryRun=All&fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
        ),
        // kubectl apply --dry-run=server
        Ev::new(
            "create",
            "/api/v1/namespaces/shop/configmaps?fieldManager=kubectl-client-side-apply&dryRun=All&fieldValidation=Strict",
        ),
        Ev::new(
            "delete",
            "/api/v1/namespaces/shop/configmaps/api-config?gracePeriodSeconds=0&dryRun=All",
        ),
    ];
    all_ignored(&config(""), &dry)?;
    // The same request without the dry run is a change.
    let real = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
    );
    let r = replay(&config(""), &[real])?;
    assert_eq!(r.summary.drift, 1, "{}", r.summary.line);
    Ok(())
}

#[test]
fn virtual_resources_are_ignored() -> Result<()> {
    all_ignored(
        &config(""),
        &[
            Ev::new("create", "/apis/authentication.k8s.io/v1/tokenreviews"),
            Ev::new(
                "create",
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            ),
            Ev::new(
                "create",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            ),
            Ev::new(
                "create",
                "/apis/authorization.k8s.io/v1/namespaces/shop/localsubjectaccessreviews",
            ),
            Ev::new(
                "create",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            ),
            Ev::new(
                "create",
                "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            ),
        ],
    )?;
    Ok(())
}

#[test]
fn noise_kinds_are_ignored() -> Result<()> {
    // Written by anyone, even a human, these are not tracked. Leases are:
    // a change of holder is a takeover (see the precision tests).
    all_ignored(
        &config(""),
        &[
            Ev::new("create", "/api/v1/namespaces/shop/events"),
            Ev::new(
                "patch",
                "/apis/events.k8s.io/v1/namespaces/shop/events/api.17f3c2a1b4d5e6f7",
            ),
            Ev::new("update", "/api/v1/namespaces/shop/endpoints/api"),
            Ev::new(
                "create",
                "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
            ),
        ],
    )?;
    Ok(())
}

#[test]
fn configured_ignore_resources_and_namespaces() -> Result<()> {
    let cfg = config(
        r#"
ignore:
  resources: ["configmaps", "certificates.cert-manager.io"]
  namespaces: ["sandbox"]
"#,
    );
    let configmap = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/configmaps/api-config?fieldManager=kubectl-edit",
    );
    let certificate = Ev::new(
        "patch",
        "/apis/cert-manager.io/v1/namespaces/shop/certificates/api-tls?fieldManager=kubectl-edit",
    );
    let sandbox = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/sandbox/deployments/api?fieldManager=kubectl-edit",
    );
    all_ignored(&cfg, &[configmap, certificate, sandbox])?;

    // Not covered: another namespace, and a same-named resource of another group.
    let shop = kubectl_edit_replicas();
    let other_group = Ev::new(
        "patch",
        "/apis/networking.example.io/v1/namespaces/shop/certificates/api-tls",
    );
    let r = replay(&cfg, &[shop, other_group])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 0, 2), "{}", r.summary.line);
    Ok(())
}

// ---------------------------------------------------------------------------
// System baseline
// ---------------------------------------------------------------------------

#[test]
fn kube_controller_manager_is_system() -> Result<()> {
    let e = Ev::new("create", "/apis/apps/v1/namespaces/shop/replicasets")
        .by("system:kube-controller-manager", &["system:authenticated"])
        .ua(KCM_UA)
        .source_ips(&["10.0.0.11"]);
    let r = replay(&config(""), &[e])?;
    assert_eq!(r.summary.verdicts(), (0, 1, 0, 0), "{}", r.summary.line);
    assert!(r.findings.is_empty());
    Ok(())
}

#[test]
fn kube_system_deployment_controller_is_system() -> Result<()> {
    let r = replay(
        &config(""),
        &[controller_creates_replicaset("deployment-controller")],
    )?;
    assert_eq!(r.summary.verdicts(), (0, 1, 0, 0), "{}", r.summary.line);
    assert!(r.findings.is_empty());
    Ok(())
}

fn kubelet_patches_pod_status(username: &str, groups: &[&str]) -> Ev {
    Ev::new(
        "patch",
        "/api/v1/namespaces/shop/pods/api-7d9c5b8f4-x2k8q/status",
    )
    .by(username, groups)
    .ua(KUBELET_UA)
    .source_ips(&["10.0.1.21"])
}

#[test]
fn node_in_nodes_group_is_system() -> Result<()> {
    let e = kubelet_patches_pod_status(
        "system:node:worker-1",
        &["system:nodes", "system:authenticated"],
    );
    let r = replay(&config(""), &[e])?;
    assert_eq!(r.summary.verdicts(), (0, 1, 0, 0), "{}", r.summary.line);
    Ok(())
}

#[test]
fn node_name_without_nodes_group_is_drift() -> Result<()> {
    // A client certificate with CN=system:node:worker-1 but no O=system:nodes
    // (or an OIDC user who picked that name) is not a kubelet.
    let e = kubelet_patches_pod_status("system:node:worker-1", &["system:authenticated"]);
    let f = single_finding(&config(""), e, "out_of_band_change", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["actor"]["username"], "system:node:worker-1");
    Ok(())
}

#[test]
fn system_masters_member_is_drift() -> Result<()> {
    let e = kubectl_edit_replicas().by(
        "kubernetes-admin",
        &["system:masters", "system:authenticated"],
    );
    let f = single_finding(&config(""), e, "out_of_band_change", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["actor"]["username"], "kubernetes-admin");
    Ok(())
}

#[test]
fn anonymous_write_is_critical_drift() -> Result<()> {
    let e = Ev::new("create", "/api/v1/namespaces/shop/configmaps")
        .by("system:anonymous", &["system:unauthenticated"])
        .ua("curl/8.5.0")
        .source_ips(&["198.51.100.23"]);
    let f = single_finding(&config(""), e, "out_of_band_change", "critical")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["actor"]["username"], "system:anonymous");
    assert_eq!(f["actor"]["client"], "curl");
    Ok(())
}

#[test]
fn kube_system_default_service_account_is_drift() -> Result<()> {
    // No kube-system:* wildcard: a pod in kube-system with the default SA.
    let e = kubectl_edit_replicas()
        .by_sa("kube-system", "default", "debug-shell")
        .ua("Go-http-client/2.0")
        .source_ips(&["10.244.1.9"]);
    let f = single_finding(&config(""), e, "out_of_band_change", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(
        f["actor"]["username"],
        "system:serviceaccount:kube-system:default"
    );
    Ok(())
}

#[test]
fn argocd_server_ui_edit_is_drift() -> Result<()> {
    // Editing a live manifest in the Argo CD UI: not the pipeline.
    let e = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=argocd-server",
    )
    .by_sa("argocd", "argocd-server", "argocd-server-5f7d8c9b6-k3j2h")
    .ua(ARGOCD_SERVER_UA)
    .source_ips(&["10.244.3.22"])
    .body(json!({"spec": {"replicas": 0}}));
    let f = single_finding(&config(""), e, "out_of_band_change", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(
        f["actor"]["username"],
        "system:serviceaccount:argocd:argocd-server"
    );
    assert_eq!(f["pipeline"], Value::Null);
    Ok(())
}

#[test]
fn baseline_exclude_makes_a_controller_change_drift() -> Result<()> {
    let cfg = config(
        r#"
system_identities:
  exclude: ["system:serviceaccount:kube-system:deployment-controller"]
"#,
    );
    let r = replay(
        &cfg,
        &[
            controller_creates_replicaset("deployment-controller"),
            // The rest of the baseline still holds.
            controller_creates_replicaset("replicaset-controller"),
        ],
    )?;
    assert_eq!(r.summary.verdicts(), (0, 1, 0, 1), "{}", r.summary.line);
    assert_eq!(
        r.only()?["actor"]["username"],
        "system:serviceaccount:kube-system:deployment-controller"
    );
    Ok(())
}

#[test]
fn baseline_false_makes_the_controller_manager_and_nodes_drift() -> Result<()> {
    let cfg = config(
        r#"
system_identities:
  baseline: false
"#,
    );
    let kcm = Ev::new("create", "/apis/apps/v1/namespaces/shop/replicasets")
        .by("system:kube-controller-manager", &["system:authenticated"])
        .ua(KCM_UA);
    let node = kubelet_patches_pod_status(
        "system:node:worker-1",
        &["system:nodes", "system:authenticated"],
    );
    let r = replay(&cfg, &[kcm, node])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 0, 2), "{}", r.summary.line);
    assert_eq!(r.types(), ["out_of_band_change", "out_of_band_change"]);
    Ok(())
}

#[test]
fn extra_users_makes_an_operator_system() -> Result<()> {
    let issue = || {
        Ev::new(
            "create",
            "/api/v1/namespaces/shop/secrets?fieldManager=cert-manager-certificates-issuing",
        )
        .by_sa(
            "cert-manager",
            "cert-manager",
            "cert-manager-7c9d8b6f5-h4g3f",
        )
        .ua(CERT_MANAGER_UA)
    };
    // Not in the baseline: drift.
    let r = replay(&config(""), &[issue()])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 0, 1), "{}", r.summary.line);
    let cfg = config(
        r#"
system_identities:
  extra_users: ["system:serviceaccount:cert-manager:cert-manager"]
"#,
    );
    let r = replay(&cfg, &[issue()])?;
    assert_eq!(r.summary.verdicts(), (0, 1, 0, 0), "{}", r.summary.line);
    assert!(r.findings.is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

#[test]
fn server_side_apply_creating_with_patch_201_is_a_mutation() -> Result<()> {
    // kubectl apply --server-side of a new ConfigMap: verb patch, code 201.
    let apply = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/configmaps/api-config?fieldManager=kubectl&fieldValidation=Strict&force=false",
    )
    .code(201)
    .body(json!({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "api-config", "namespace": "shop"},
                 "data": {"LOG_LEVEL": "debug"}}));
    let r = replay(&config(""), &[apply])?;
    assert_eq!(r.summary.mutations, 1, "{}", r.summary.line);
    assert_eq!(r.summary.verdicts(), (0, 0, 0, 1), "{}", r.summary.line);
    let f = r.only()?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["type"], "out_of_band_change");
    assert_eq!(f["actor"]["field_manager"], "kubectl");
    // The apply document's identity fields are not changes; its data is.
    assert_eq!(
        f["changes"],
        json!([{"path": "data.LOG_LEVEL", "old": null, "new": "debug"}])
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Stages and redelivery
// ---------------------------------------------------------------------------

/// The three events of one `kubectl exec` session: same auditID and receive
/// time, stage times from the upgrade to the session's end.
fn exec_session() -> [Ev; 3] {
    let base = kubectl_exec("create")
        .received_at("2026-11-20T11:02:13.554102Z")
        .audit_id("c3a1e6f2-7b4d-4f8e-a2c9-5d1b8e7f3a60");
    [
        base.clone().stage("RequestReceived"),
        base.clone()
            .stage("ResponseStarted")
            .stage_at("2026-11-20T11:02:13.571946Z"),
        base.stage("ResponseComplete")
            .stage_at("2026-11-20T11:09:47.210388Z"),
    ]
}

#[test]
fn exec_response_started_and_response_complete_give_one_finding() -> Result<()> {
    let r = replay(&config(""), &exec_session())?;
    assert_eq!(r.summary.verdicts(), (1, 0, 0, 1), "{}", r.summary.line);
    assert_eq!(r.summary.deduplicated, 1, "{}", r.summary.line);
    let f = r.only()?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["type"], "interactive_access");
    // ResponseStarted is the early signal of a long-running connect.
    assert_eq!(f["stage"], "ResponseStarted");
    assert_eq!(f["audit_id"], "c3a1e6f2-7b4d-4f8e-a2c9-5d1b8e7f3a60");
    Ok(())
}

#[test]
fn exec_stages_in_any_order_give_one_finding() -> Result<()> {
    let [received, started, complete] = exec_session();
    let r = replay(&config(""), &[complete, received, started])?;
    assert_eq!(r.summary.drift, 1, "{}", r.summary.line);
    assert_eq!(r.summary.deduplicated, 1, "{}", r.summary.line);
    assert_eq!(r.findings.len(), 1);
    Ok(())
}

#[test]
fn redelivered_event_gives_one_finding() -> Result<()> {
    let e = kubectl_edit_replicas();
    let r = replay(&config(""), &[e.clone(), e.clone()])?;
    assert_eq!(r.summary.drift, 1, "{}", r.summary.line);
    assert_eq!(r.summary.deduplicated, 1, "{}", r.summary.line);
    let id = r.only()?["id"].clone();

    // A retried batch can land in another file; and the finding id is stable
    // for the request, so a SIEM can deduplicate too.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.log");
    std::fs::write(&path, e.line() + "\n")?;
    let path = path.to_str().context("temp path is not UTF-8")?;
    let r = replay_args(&config(""), &[path, path], "")?;
    assert_eq!(r.summary.events, 2, "{}", r.summary.line);
    assert_eq!(r.summary.deduplicated, 1, "{}", r.summary.line);
    assert_eq!(r.only()?["id"], id);
    Ok(())
}

#[test]
fn forged_audit_id_from_another_user_gives_two_findings() -> Result<()> {
    // mallory sends `Audit-ID: <alice's>` hoping her change is taken for a
    // redelivery of alice's.
    let alice = kubectl_edit_replicas();
    let mallory = alice
        .clone()
        .by(MALLORY, &["oidc:contractors", "system:authenticated"]);
    let r = replay(&config(""), &[alice, mallory])?;
    assert_eq!(r.summary.drift, 2, "{}", r.summary.line);
    assert_eq!(r.summary.deduplicated, 0, "{}", r.summary.line);
    let a = r.by_actor(ALICE)?;
    insta::assert_json_snapshot!(
        "forged_audit_id_from_another_user_gives_two_findings-alice",
        a
    );
    let m = r.by_actor(MALLORY)?;
    insta::assert_json_snapshot!(
        "forged_audit_id_from_another_user_gives_two_findings-mallory",
        m
    );
    assert_eq!(a["audit_id"], m["audit_id"]);
    assert_ne!(a["id"], m["id"]);
    Ok(())
}

// ---------------------------------------------------------------------------
// Severity
// ---------------------------------------------------------------------------

#[test]
fn rbac_change_is_critical() -> Result<()> {
    // kubectl create clusterrolebinding backdoor --clusterrole=cluster-admin --user=mallory@example.com
    let e = Ev::new(
        "create",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create&fieldValidation=Strict",
    );
    let f = single_finding(&config(""), e, "out_of_band_change", "critical")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["resource"]["group"], "rbac.authorization.k8s.io");
    assert_eq!(f["resource"]["namespace"], Value::Null);
    Ok(())
}

#[test]
fn admission_webhook_configuration_change_is_high_and_an_external_url_critical() -> Result<()> {
    let delete = Ev::new(
        "delete",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/gatekeeper-validating-webhook-configuration",
    );
    let edit = Ev::new(
        "patch",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio-sidecar-injector?fieldManager=kubectl-edit",
    )
    .body(json!({"webhooks": [{"name": "namespace.sidecar-injector.istio.io", "failurePolicy": "Ignore"}]}));
    let repoint = Ev::new(
        "patch",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/gatekeeper-validating-webhook-configuration",
    )
    .body(json!({"webhooks": [{"name": "validation.gatekeeper.sh", "clientConfig": {"url": "https://203.0.113.9/validate"}}]}));
    let r = replay(&config(""), &[delete, edit, repoint])?;
    assert_eq!(r.summary.drift, 3, "{}", r.summary.line);
    insta::assert_json_snapshot!(r.findings);
    // Disabling a guard (delete, fail-open) is high; sending every admitted
    // object to an outside URL is critical.
    let severities: Vec<&str> = r
        .findings
        .iter()
        .filter_map(|f| f["severity"].as_str())
        .collect();
    assert_eq!(severities, ["high", "high", "critical"]);
    Ok(())
}

/// cert-manager's cainjector token repointing a webhook outside the
/// cluster with a JSON patch (it normally patches only `caBundle`): critical,
/// naming the URL, whether the audit policy logs the object after the patch
/// (`RequestResponse`) or only the patch (`Request`).
#[test]
fn cainjector_repointing_a_webhook_to_an_external_url_is_critical() -> Result<()> {
    let uri =
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/cert-manager-webhook";
    let patch = json!([
        {"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": "https://evil.example.com/"},
        {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "LS0tLS1CRUdJTg=="}
    ]);
    let after = json!({"kind": "MutatingWebhookConfiguration", "apiVersion": "admissionregistration.k8s.io/v1",
        "metadata": {"name": "cert-manager-webhook", "resourceVersion": "5120"},
        "webhooks": [{"name": "webhook.cert-manager.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://evil.example.com/", "caBundle": "LS0tLS1CRUdJTg=="}}]});
    let by_cainjector = |e: Ev| {
        e.by_sa(
            "cert-manager",
            "cert-manager-cainjector",
            "cert-manager-cainjector-5f7d-q2",
        )
        .ua("cert-manager-cainjector/v1.16.1 (linux/amd64) cert-manager/2a2c8ac2e2cc")
    };
    let request_only = by_cainjector(Ev::new("patch", uri).body(patch.clone()));
    let with_object = by_cainjector(Ev::new("patch", uri).bodies(patch, after));
    for (e, path) in [
        (request_only, "webhooks[0].clientConfig.url"),
        (
            with_object,
            "webhooks[name=webhook.cert-manager.io].clientConfig.url",
        ),
    ] {
        let f = single_finding(&config(""), e, "out_of_band_change", "critical")?;
        assert_eq!(
            f["risks"],
            json!([{"rule": "webhook_external_url", "path": path,
                "value": "https://evil.example.com/", "severity": "critical"}]),
            "{f:#}"
        );
    }
    Ok(())
}

#[test]
fn pipeline_findings_are_critical_even_on_low_severity_objects() -> Result<()> {
    // A custom resource is low on its own; the pipeline types lift it.
    let cr =
        "/apis/cert-manager.io/v1/namespaces/shop/certificates/api-tls?fieldManager=kubectl-edit";
    let impersonation = Ev::new("patch", cr)
        .by(ADMIN, ADMIN_GROUPS)
        .impersonating(ARGOCD_SA, &sa_groups("argocd"));
    let misuse = Ev::new("patch", cr).by_sa(
        "argocd",
        "argocd-application-controller",
        "argocd-application-controller-0",
    );
    let spoofing = Ev::new("patch", cr).ua(KUSTOMIZE_UA);
    let plain = Ev::new("patch", cr).by(MALLORY, &["system:authenticated"]);
    let r = replay(&config(""), &[impersonation, misuse, spoofing, plain])?;
    assert_eq!(
        r.types(),
        [
            "pipeline_impersonation",
            "pipeline_credential_misuse",
            "user_agent_spoofing",
            "out_of_band_change"
        ]
    );
    let severities: Vec<&Value> = r.findings.iter().map(|f| &f["severity"]).collect();
    assert_eq!(severities, ["critical", "critical", "critical", "low"]);
    Ok(())
}

#[test]
fn secret_change_is_high() -> Result<()> {
    let e = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/secrets/db-credentials?fieldManager=kubectl-edit",
    );
    single_finding(&config(""), e, "out_of_band_change", "high")?;
    Ok(())
}

#[test]
fn delete_is_high_even_for_a_low_resource() -> Result<()> {
    let e = Ev::new(
        "delete",
        "/apis/cert-manager.io/v1/namespaces/shop/certificates/api-tls",
    );
    single_finding(&config(""), e, "out_of_band_change", "high")?;
    Ok(())
}

#[test]
fn deployments_and_configmaps_are_medium() -> Result<()> {
    let configmap = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/configmaps/api-config?fieldManager=kubectl-edit",
    );
    let r = replay(&config(""), &[kubectl_edit_replicas(), configmap])?;
    assert_eq!(r.summary.drift, 2, "{}", r.summary.line);
    for f in &r.findings {
        assert_eq!(f["severity"], "medium", "{f}");
    }
    Ok(())
}

#[test]
fn change_to_a_pipeline_managed_object_is_high() -> Result<()> {
    // Argo CD created the ConfigMap with its tracking annotation; a
    // ConfigMap is medium on its own, but this one is the pipeline's.
    let created = Ev::new(
        "create",
        "/api/v1/namespaces/shop/configmaps?fieldManager=argocd-controller",
    )
    .by_sa("argocd", "argocd-application-controller", "argocd-application-controller-0")
    .ua(ARGOCD_UA)
    .body(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "api-config", "namespace": "shop",
                     "annotations": {"argocd.argoproj.io/tracking-id": "shop:/ConfigMap:shop/api-config"}},
        "data": {"LOG_LEVEL": "info"}
    }));
    let edit = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/configmaps/api-config?fieldManager=kubectl-edit",
    )
    .body(json!({"data": {"LOG_LEVEL": "debug"}}));
    let unmanaged = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/configmaps/scratch?fieldManager=kubectl-edit",
    )
    .body(json!({"data": {"LOG_LEVEL": "debug"}}));
    let r = replay(&config(""), &[created, edit, unmanaged])?;
    assert_eq!(r.summary.verdicts(), (0, 0, 1, 2), "{}", r.summary.line);
    let severities: Vec<&Value> = r.findings.iter().map(|f| &f["severity"]).collect();
    assert_eq!(severities, ["high", "medium"], "{}", r.run.stdout);
    Ok(())
}

#[test]
fn custom_resource_change_is_low() -> Result<()> {
    let e = Ev::new(
        "patch",
        "/apis/monitoring.coreos.com/v1/namespaces/shop/servicemonitors/api?fieldManager=kubectl-edit",
    )
    .body(json!({"spec": {"endpoints": [{"port": "metrics", "interval": "60s"}]}}));
    single_finding(&config(""), e, "out_of_band_change", "low")?;
    Ok(())
}

#[test]
fn severity_overrides_in_config_replace_the_builtin_rule() -> Result<()> {
    let cfg = config(
        r#"
severity:
  overrides:
    - resources: ["configmaps"]
      namespaces: ["kube-system"]
      severity: high
    - resources: ["servicemonitors.monitoring.coreos.com"]
      severity: critical
    - types: ["interactive_access"]
      namespaces: ["sandbox"]
      severity: low
"#,
    );
    let kube_system_cm = Ev::new(
        "patch",
        "/api/v1/namespaces/kube-system/configmaps/coredns?fieldManager=kubectl-edit",
    );
    let shop_cm = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/configmaps/api-config?fieldManager=kubectl-edit",
    );
    let monitor = Ev::new(
        "patch",
        "/apis/monitoring.coreos.com/v1/namespaces/shop/servicemonitors/api?fieldManager=kubectl-edit",
    );
    let sandbox_exec = Ev::new(
        "get",
        "/api/v1/namespaces/sandbox/pods/scratch-0/exec?command=bash&stdin=true&stdout=true&tty=true",
    );
    let shop_exec = kubectl_exec("get");
    let r = replay(
        &cfg,
        &[kube_system_cm, shop_cm, monitor, sandbox_exec, shop_exec],
    )?;
    let severities: Vec<&Value> = r.findings.iter().map(|f| &f["severity"]).collect();
    assert_eq!(severities, ["high", "medium", "critical", "low", "high"]);
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding fields
// ---------------------------------------------------------------------------

#[test]
fn impersonated_identity_is_the_actor_and_the_real_user_is_impersonated_by() -> Result<()> {
    // kubectl --as=system:serviceaccount:shop:deployer: not a pipeline.
    let e = kubectl_edit_replicas()
        .by(ADMIN, ADMIN_GROUPS)
        .impersonating("system:serviceaccount:shop:deployer", &sa_groups("shop"));
    let f = single_finding(&config(""), e, "out_of_band_change", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(
        f["actor"]["username"],
        "system:serviceaccount:shop:deployer"
    );
    assert_eq!(f["actor"]["groups"], json!(sa_groups("shop")));
    assert_eq!(
        f["actor"]["impersonated_by"],
        json!({"username": ADMIN, "groups": ADMIN_GROUPS})
    );
    assert_eq!(f["pipeline"], Value::Null);
    assert!(reasons(&f).contains(ADMIN), "{f}");
    Ok(())
}

#[test]
fn pipeline_is_named_only_for_pipeline_finding_types() -> Result<()> {
    let impersonation = kubectl_edit_replicas()
        .by(ADMIN, ADMIN_GROUPS)
        .impersonating(ARGOCD_SA, &sa_groups("argocd"));
    let misuse = kubectl_edit_replicas()
        .by(CI_USER, CI_GROUPS)
        .ua(HELM_UA)
        .source_ips(&[OUTSIDE_IP]);
    let spoofing = kubectl_edit_replicas().ua(HELM_CONTROLLER_UA);
    let interactive = kubectl_exec("get");
    // The pipeline's own identity and user agent opening a shell: not a
    // credential problem, but interactive access, which names no pipeline.
    let pipeline_exec = kubectl_exec("create")
        .by_sa(
            "argocd",
            "argocd-application-controller",
            "argocd-application-controller-0",
        )
        .ua(ARGOCD_UA);
    let out_of_band = Ev::new("delete", "/api/v1/namespaces/shop/configmaps/api-config");
    let r = replay(
        &config(""),
        &[
            impersonation,
            misuse,
            spoofing,
            interactive,
            pipeline_exec,
            out_of_band,
        ],
    )?;
    let got: Vec<(&str, &Value)> = r
        .findings
        .iter()
        .map(|f| (f["type"].as_str().unwrap_or(""), &f["pipeline"]))
        .collect();
    assert_eq!(
        got,
        [
            ("pipeline_impersonation", &json!("argocd")),
            ("pipeline_credential_misuse", &json!("helm-ci")),
            ("user_agent_spoofing", &json!("flux")),
            ("interactive_access", &Value::Null),
            ("interactive_access", &Value::Null),
            ("out_of_band_change", &Value::Null),
        ]
    );
    Ok(())
}

#[test]
fn kubectl_client_and_field_manager_are_reported() -> Result<()> {
    let edit = kubectl_edit_replicas();
    let rollout = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-rollout",
    )
    .by(MALLORY, &["system:authenticated"])
    .ua(KUBECTL_WINDOWS)
    .body(json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-11-20T10:15:02Z"
    }}}}}));
    let r = replay(&config(""), &[edit, rollout])?;
    let a = r.by_actor(ALICE)?;
    insta::assert_json_snapshot!("kubectl_client_and_field_manager_are_reported-alice", a);
    assert_eq!(a["actor"]["client"], "kubectl");
    assert_eq!(a["actor"]["field_manager"], "kubectl-edit");
    let m = r.by_actor(MALLORY)?;
    insta::assert_json_snapshot!("kubectl_client_and_field_manager_are_reported-mallory", m);
    assert_eq!(m["actor"]["client"], "kubectl");
    assert_eq!(m["actor"]["user_agent"], KUBECTL_WINDOWS);
    assert_eq!(m["actor"]["field_manager"], "kubectl-rollout");
    Ok(())
}

#[test]
fn merge_patch_changes_are_reported() -> Result<()> {
    // kubectl edit (strategic merge) and kubectl set image (keyed list item).
    let set_image = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/worker?fieldManager=kubectl-set",
    )
    .by(MALLORY, &["system:authenticated"])
    .body(json!({"spec": {"template": {"spec": {"containers": [
        {"image": "registry.example.com/shop/worker:2.0.1-hotfix", "name": "worker"}
    ]}}}}));
    let r = replay(&config(""), &[kubectl_edit_replicas(), set_image])?;
    insta::assert_json_snapshot!(r.findings);
    assert_eq!(
        r.by_actor(ALICE)?["changes"],
        json!([{"path": "spec.replicas", "old": null, "new": 5}])
    );
    assert_eq!(
        r.by_actor(MALLORY)?["changes"],
        json!([{"path": "spec.template.spec.containers[name=worker].image", "old": null,
                "new": "registry.example.com/shop/worker:2.0.1-hotfix"}])
    );
    Ok(())
}

#[test]
fn json_patch_changes_are_reported() -> Result<()> {
    // kubectl patch deployment api --type=json -p '[...]'
    let e = Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-patch",
    )
    .body(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image",
         "value": "registry.example.com/shop/api:1.9.0-rc1"},
        {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1managed-by"}
    ]));
    let f = single_finding(&config(""), e, "out_of_band_change", "medium")?;
    insta::assert_json_snapshot!(f);
    assert_eq!(f["actor"]["field_manager"], "kubectl-patch");
    assert_eq!(
        f["changes"],
        json!([
            {"path": "spec.template.spec.containers[0].image", "old": null,
             "new": "registry.example.com/shop/api:1.9.0-rc1"},
            {"path": "metadata.labels[\"app.kubernetes.io/managed-by\"]", "old": null, "new": null}
        ])
    );
    Ok(())
}

#[test]
fn secret_values_never_appear_in_findings() -> Result<()> {
    // base64 of "s3cr3t-Passw0rd!", "prod-db-passw0rd", "sk_live_51HxYz",
    // and a plain stringData value.
    const EDITED: &str = "czNjcjN0LVBhc3N3MHJkIQ==";
    const REPLACED: &str = "cHJvZC1kYi1wYXNzdzByZA==";
    const APPLIED: &str = "c2tfbGl2ZV81MUh4WXo=";
    const STRING_DATA: &str = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
    const CREATED: &str = "Y3JlYXRlZC1zZWNyZXQtdmFsdWU=";
    const FILLED: &str = "Z2hwXzd4S3E5bU4yVnAzUjh0WTVjTDF3";

    // kubectl edit secret db-credentials
    let edit = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/secrets/db-credentials?fieldManager=kubectl-edit",
    )
    .body(json!({"data": {"password": EDITED}}));
    // kubectl patch secret db-credentials --type=json -p '[{"op":"replace","path":"/data","value":{...}}]'
    let replace_data = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/secrets/db-credentials?fieldManager=kubectl-patch",
    )
    .body(json!([{"op": "replace", "path": "/data",
                  "value": {"password": REPLACED, "username": "YWRtaW4="}}]));
    // kubectl apply -f secret.yaml (client-side): the patch carries the
    // last-applied-configuration annotation, a JSON copy of the whole Secret.
    let last_applied = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"annotations": {}, "name": "payment-api", "namespace": "shop"},
        "data": {"api-key": APPLIED}
    })
    .to_string()
        + "\n";
    let client_apply = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/secrets/payment-api?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
    )
    .body(json!({
        "data": {"api-key": APPLIED},
        "metadata": {"annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": last_applied
        }}
    }));
    // kubectl apply --server-side with stringData
    let server_apply = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/secrets/tls-ca?fieldManager=kubectl&fieldValidation=Strict&force=false",
    )
    .code(201)
    .body(json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": "tls-ca", "namespace": "shop"},
                 "stringData": {"ca.key": STRING_DATA}}));
    // kubectl create secret generic
    let create = Ev::new(
        "create",
        "/api/v1/namespaces/shop/secrets?fieldManager=kubectl-create&fieldValidation=Strict",
    )
    .body(json!({"kind": "Secret", "apiVersion": "v1",
                 "metadata": {"name": "created", "namespace": "shop"},
                 "data": {"value": CREATED}}));

    // kubectl create secret generic api-token (no data yet), then kubectl
    // edit adding a key, logged with the object after the change: the
    // remembered object and the new one differ by a whole `data` map.
    let empty = Ev::new(
        "create",
        "/api/v1/namespaces/shop/secrets?fieldManager=kubectl-create&fieldValidation=Strict",
    )
    .body(
        json!({"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
                 "metadata": {"name": "api-token", "namespace": "shop"}}),
    );
    let fill = Ev::new(
        "patch",
        "/api/v1/namespaces/shop/secrets/api-token?fieldManager=kubectl-edit",
    )
    .body(json!({"data": {"token": FILLED}}))
    .response(
        json!({"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
                     "metadata": {"name": "api-token", "namespace": "shop",
                                  "uid": "5e0c7d1a-2b3f-4a6e-9c8d-1f2e3a4b5c6d",
                                  "resourceVersion": "48291"},
                     "data": {"token": FILLED}}),
    );

    let r = replay(
        &config(""),
        &[
            edit,
            replace_data,
            client_apply,
            server_apply,
            create,
            empty,
            fill,
        ],
    )?;
    assert_eq!(r.summary.drift, 7, "{}", r.summary.line);
    for value in [
        EDITED,
        REPLACED,
        APPLIED,
        STRING_DATA,
        CREATED,
        FILLED,
        "YWRtaW4=",
    ] {
        assert!(
            !r.run.stdout.contains(value),
            "secret value {value} leaked: {}",
            r.run.stdout
        );
    }
    insta::assert_json_snapshot!(r.findings);
    for f in &r.findings {
        assert_eq!(f["severity"], "high", "{f}");
        for change in f["changes"].as_array().into_iter().flatten() {
            if change["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("data") || p.starts_with("stringData"))
            {
                assert_eq!(change["redacted"], true, "{change}");
                assert_eq!(change["new"], Value::Null, "{change}");
            }
        }
    }
    // Only the key is reported: the reader still learns what changed.
    let paths: Vec<&str> = r
        .findings
        .iter()
        .flat_map(|f| f["changes"].as_array().into_iter().flatten())
        .filter_map(|c| c["path"].as_str())
        .collect();
    for expected in [
        "data.password",
        "data",
        "data.api-key",
        "stringData[\"ca.key\"]",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    Ok(())
}
