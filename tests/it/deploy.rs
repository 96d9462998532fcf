//! What `deploy/` ships, checked by the real tools: the Helm chart rendered by
//! Helm's own engine (helm.sh/helm/v4 v4.2.3 through `scripts/helm-dev`, and
//! the official helm v3.17.1 binary for comparison), every
//! rendered object and every plain manifest sent to a real kube-apiserver
//! (1.20.2, `scripts/kube-dev-cluster`) with `kubectl apply --dry-run=server`,
//! every config they carry run through `driftwatch policy check`, and the
//! container image packed by `scripts/pack-image` and built by podman (offline:
//! FROM scratch), then inspected. Running the image is not possible on these
//! machines (crun cannot set RLIMIT_NOFILE here), so its contents and entrypoint
//! are checked instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::common::{Cluster, Run, bin, repo_script, run, wait_until, yaml_documents};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const CHART: &str = "deploy/helm/driftwatch";
const RELEASE: &str = "dw";
const CHART_NAMESPACE: &str = "dw-chart";

/// The chart's value sets: `None` is the defaults, the others are files in
/// the chart's `ci/` folder.
const VALUE_SETS: [Option<&str>; 7] = [
    None,
    Some("tls-auth-values.yaml"),
    Some("cert-manager-values.yaml"),
    Some("kafka-siem-values.yaml"),
    Some("no-persistence-values.yaml"),
    Some("admission-values.yaml"),
    Some("scale-out-values.yaml"),
];

const SCALE_OUT: Option<&str> = Some("scale-out-values.yaml");

/// The chart's workload: a StatefulSet on PostgreSQL, else a Deployment.
fn workload(values: Option<&str>) -> &'static str {
    if values == SCALE_OUT {
        "StatefulSet"
    } else {
        "Deployment"
    }
}

fn ok(run: Run, what: &str) -> Result<String> {
    ensure!(
        run.code == 0,
        "{what}: exit {}\nstdout: {}\nstderr: {}",
        run.code,
        run.stdout,
        run.stderr
    );
    Ok(run.stdout)
}

fn helm(cmd: &str, values: Option<&str>) -> Result<Run> {
    let file = values.map(|v| format!("{CHART}/ci/{v}"));
    let mut args = vec![cmd, RELEASE, CHART, "-n", CHART_NAMESPACE];
    if let Some(f) = &file {
        args.extend(["-f", f]);
    }
    repo_script("helm-dev", &args)
}

/// `helm template` with values given as YAML text; the run, to check how
/// it fails.
fn template_text(values: &str) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("values.yaml");
    std::fs::write(&path, values)?;
    repo_script(
        "helm-dev",
        &[
            "template",
            RELEASE,
            CHART,
            "-f",
            path.to_str().context("path")?,
        ],
    )
}

/// `helm template` of one value set, as text.
fn template(values: Option<&str>) -> Result<String> {
    ok(
        helm("template", values)?,
        &format!("helm template {values:?}"),
    )
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn one<'a>(docs: &'a [Value], k: &str) -> Result<&'a Value> {
    let mut it = docs.iter().filter(|d| kind(d) == k);
    let first = it.next().with_context(|| format!("no {k} rendered"))?;
    ensure!(it.next().is_none(), "more than one {k}");
    Ok(first)
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(|d| kind(d).to_owned()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The plain manifests, in the order `kubectl apply -f deploy/kubernetes/` takes them.
fn plain_manifests() -> Result<String> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| Ok(e?.path()))
        .collect::<Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let mut all = String::new();
    for f in files {
        all.push_str("---\n");
        all.push_str(&std::fs::read_to_string(&f)?);
    }
    Ok(all)
}

fn config_of(docs: &[Value]) -> Result<String> {
    Ok(one(docs, "ConfigMap")?["data"]["config.yaml"]
        .as_str()
        .context("ConfigMap without data.config.yaml")?
        .to_owned())
}

fn policy_check(config: &str, what: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config)?;
    let run = run(
        &[
            "policy",
            "check",
            "--config",
            path.to_str().context("path")?,
        ],
        None,
    )?;
    ensure!(
        run.code == 0,
        "policy check of {what}: exit {}: {}\n{config}",
        run.code,
        run.stderr
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The API server's verdict.

/// Minimal CRDs for the two third-party kinds the chart can render, so that
/// the 1.20 API server knows them and `--dry-run=server` (and kubectl's
/// validation against the server's OpenAPI) checks the objects instead of
/// refusing an unknown kind. Written for this test: the subset of
/// cert-manager's `certificates.cert-manager.io/v1` and Prometheus
/// Operator's `servicemonitors.monitoring.coreos.com/v1` schemas that the
/// chart uses, with their required fields and enums, no
/// `x-kubernetes-preserve-unknown-fields` on the specs (a field the real
/// CRDs lack is refused by kubectl's validation, as it would be there).
const CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  names: {kind: Certificate, listKind: CertificateList, plural: certificates, singular: certificate}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [issuerRef, secretName]
              properties:
                secretName: {type: string}
                duration: {type: string}
                renewBefore: {type: string}
                dnsNames: {type: array, items: {type: string}}
                ipAddresses: {type: array, items: {type: string}}
                usages:
                  type: array
                  items:
                    type: string
                    enum: [signing, digital signature, key encipherment, server auth, client auth]
                privateKey:
                  type: object
                  properties:
                    algorithm: {type: string, enum: [RSA, ECDSA, Ed25519]}
                    size: {type: integer}
                    rotationPolicy: {type: string, enum: [Never, Always]}
                issuerRef:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    kind: {type: string}
                    group: {type: string}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [selector]
              properties:
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      scheme: {type: string, enum: [http, https]}
                      path: {type: string}
                      interval: {type: string}
                      scrapeTimeout: {type: string}
                      tlsConfig:
                        type: object
                        properties:
                          insecureSkipVerify: {type: boolean}
                          serverName: {type: string}
                          ca: {type: object, x-kubernetes-preserve-unknown-fields: true}
                          cert: {type: object, x-kubernetes-preserve-unknown-fields: true}
                          keySecret: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

/// `kubectl apply --dry-run=server -f -` as admin: the API server runs
/// admission, defaulting and its validation and stores nothing; kubectl
/// 1.20 first validates every object against the server's OpenAPI (unknown
/// fields refused). A current API server (1.25+) also refuses unknown
/// fields itself (server-side field validation), which 1.20 would drop
/// silently; kubectl's validation covers that here.
fn dry_run(cluster: &Cluster, yaml: &str, what: &str) -> Result<BTreeSet<String>> {
    let run = cluster.kubectl_with(
        "admin",
        &["apply", "--dry-run=server", "-o", "name", "-f", "-"],
        Some(yaml.as_bytes()),
        &[],
    )?;
    ensure!(
        run.code == 0,
        "{what}: kubectl apply --dry-run=server: exit {}: {}",
        run.code,
        run.stderr
    );
    // `-o name` prints resource[.group]/name per object accepted.
    Ok(run
        .stdout
        .lines()
        .filter_map(|l| l.split_once('/').map(|(r, _)| r.to_owned()))
        .collect())
}

#[test]
fn every_manifest_and_chart_value_set_is_accepted_by_the_api_server() -> Result<()> {
    let cluster = Cluster::start("dw-deploy", 700, "off", &[])?;
    // The CRDs for real (a dry-run CR needs its CRD established), and the
    // two namespaces: a dry-run of a namespaced object needs its namespace
    // to exist, even when the Namespace itself is in the same stream.
    let run = cluster.kubectl_with("admin", &["apply", "-f", "-"], Some(CRDS.as_bytes()), &[])?;
    ensure!(run.code == 0, "creating the CRDs: {}", run.stderr);
    cluster.kubectl(
        "admin",
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/certificates.cert-manager.io",
            "crd/servicemonitors.monitoring.coreos.com",
        ],
    )?;
    // kubectl validates against the server's OpenAPI document, which
    // publishes a new CRD's schema a few seconds after it is established;
    // until then a CR would pass unvalidated. Wait until both are explained.
    for field in [
        "certificates.spec.secretName",
        "servicemonitors.spec.endpoints",
    ] {
        wait_until(
            Duration::from_secs(60),
            || format!("the OpenAPI schema of {field}"),
            || {
                std::thread::sleep(Duration::from_millis(250));
                let run = cluster
                    .kubectl_with("admin", &["explain", field], None, &[])
                    .ok()?;
                (run.code == 0).then_some(())
            },
        )?;
    }
    cluster.kubectl("admin", &["create", "namespace", "driftwatch"])?;
    cluster.kubectl("admin", &["create", "namespace", CHART_NAMESPACE])?;

    // The check can fail: a misspelled field in a CR (validated against the
    // CRD's schema) and in a built-in kind are refused, not dropped.
    for (bad, field) in [
        (
            "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: x, namespace: dw-chart}\n\
             spec: {secretName: s, issuerRef: {name: i}, dnsNamez: [a]}\n",
            "dnsNamez",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: dw-chart}\n\
             spec: {ports: [{port: 443, targetPorts: https}]}\n",
            "targetPorts",
        ),
    ] {
        let run = cluster.kubectl_with(
            "admin",
            &["apply", "--dry-run=server", "-f", "-"],
            Some(bad.as_bytes()),
            &[],
        )?;
        assert_ne!(run.code, 0, "{bad}");
        assert!(
            run.stderr.contains(&format!("unknown field \"{field}\"")),
            "{}",
            run.stderr
        );
    }

    let plain = plain_manifests()?;
    let accepted = dry_run(&cluster, &plain, "deploy/kubernetes")?;
    assert_eq!(
        accepted,
        set(&[
            "namespace",
            "serviceaccount",
            "clusterrole.rbac.authorization.k8s.io",
            "clusterrolebinding.rbac.authorization.k8s.io",
            "configmap",
            "persistentvolumeclaim",
            "deployment.apps",
            "service",
            "networkpolicy.networking.k8s.io",
            "validatingwebhookconfiguration.admissionregistration.k8s.io",
        ]),
        "deploy/kubernetes"
    );

    let base = set(&[
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceAccount",
        "PersistentVolumeClaim",
        "ClusterRole",
        "ClusterRoleBinding",
        "NetworkPolicy",
    ]);
    for values in VALUE_SETS {
        let text = template(values)?;
        let docs = yaml_documents(&text)?;
        let mut expected = base.clone();
        match values {
            Some("cert-manager-values.yaml") => {
                expected.extend(set(&["Certificate", "ServiceMonitor"]));
            }
            Some("admission-values.yaml") => {
                expected.extend(set(&["Certificate", "ValidatingWebhookConfiguration"]));
            }
            Some("no-persistence-values.yaml") => {
                for k in [
                    "PersistentVolumeClaim",
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "ServiceAccount",
                    "NetworkPolicy",
                ] {
                    expected.remove(k);
                }
            }
            // Each replica's volume comes from the StatefulSet's template.
            v if v == SCALE_OUT => {
                expected.remove("Deployment");
                expected.remove("PersistentVolumeClaim");
                expected.insert("StatefulSet".to_owned());
            }
            _ => {}
        }
        assert_eq!(kinds(&docs), expected, "kinds rendered for {values:?}");
        let accepted = dry_run(&cluster, &text, &format!("chart with {values:?}"))?;
        assert_eq!(
            accepted.len(),
            docs.len(),
            "{values:?}: every rendered object accepted: {accepted:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What the objects say.

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// The hardening every Deployment shipped must carry.
fn assert_locked_down(deployment: &Value, what: &str) {
    let pod = &deployment["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{what}");
    assert_eq!(psc["runAsUser"], 65532, "{what}");
    assert_eq!(psc["fsGroup"], 65532, "{what}");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    let c = container(deployment);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{what}"
    );
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "{what}: resources.{kind}.{res}"
            );
        }
    }
    if deployment["kind"] == "Deployment" {
        // One writer of the SQLite file: never two pods at once.
        assert_eq!(deployment["spec"]["replicas"], 1, "{what}");
        assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "{what}");
    }
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    for path in ["/etc/driftwatch", "/var/lib/driftwatch", "/tmp"] {
        assert!(mounts.contains(&path), "{what}: {path} mounted: {mounts:?}");
    }
}

fn probe_paths(deployment: &Value) -> (Value, Value) {
    let c = container(deployment);
    (
        c["livenessProbe"]["httpGet"]["path"].clone(),
        c["readinessProbe"]["httpGet"]["path"].clone(),
    )
}

fn volume<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn shipped_deployments_are_locked_down_with_probes_and_history_volume() -> Result<()> {
    let plain = yaml_documents(&plain_manifests()?)?;
    let d = one(&plain, "Deployment")?;
    assert_locked_down(d, "deploy/kubernetes");
    assert_eq!(probe_paths(d), ("/healthz".into(), "/readyz".into()));
    assert_eq!(
        volume(d, "history")["persistentVolumeClaim"]["claimName"],
        "driftwatch-history"
    );
    assert!(
        one(&plain, "Namespace")?["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
            == "restricted"
    );

    for values in VALUE_SETS {
        let docs = yaml_documents(&template(values)?)?;
        let d = one(&docs, workload(values))?;
        let what = format!("chart with {values:?}");
        assert_locked_down(d, &what);
        let history = volume(d, "history");
        match values {
            Some("no-persistence-values.yaml") => {
                assert!(history["emptyDir"].is_object(), "{what}: {history}")
            }
            v if v == SCALE_OUT => {
                assert!(history.is_null(), "{what}: {history}");
                let claim = &d["spec"]["volumeClaimTemplates"][0];
                assert_eq!(claim["metadata"]["name"], "history", "{what}");
            }
            _ => assert_eq!(
                history["persistentVolumeClaim"]["claimName"], "dw-driftwatch-history",
                "{what}"
            ),
        }
        match values {
            // The kubelet has no client certificate, so with a client CA
            // an HTTPS probe would fail the handshake: TCP probes.
            Some("tls-auth-values.yaml") => {
                let c = container(d);
                assert!(c["livenessProbe"]["tcpSocket"].is_object(), "{what}");
                assert!(c["readinessProbe"]["tcpSocket"].is_object(), "{what}");
            }
            _ => assert_eq!(
                probe_paths(d),
                ("/healthz".into(), "/readyz".into()),
                "{what}"
            ),
        }
        // The serving certificate is mounted where the config points.
        let tls_secret = match values {
            Some("tls-auth-values.yaml") => "driftwatch-serving",
            _ => "dw-driftwatch-tls",
        };
        let sources = volume(d, "config")["projected"]["sources"].to_string();
        assert!(sources.contains(tls_secret), "{what}: {sources}");
        let config = config_of(&docs)?;
        assert!(
            config.contains("cert_file: /etc/driftwatch/tls/tls.crt"),
            "{what}: {config}"
        );
    }
    Ok(())
}

#[test]
fn the_chart_runs_replicas_only_on_postgres() -> Result<()> {
    let docs = yaml_documents(&template(SCALE_OUT)?)?;
    let set = one(&docs, "StatefulSet")?;
    assert_eq!(set["spec"]["replicas"], 3);
    let sources = volume(set, "config")["projected"]["sources"].to_string();
    assert!(sources.contains("driftwatch-postgres"), "{sources}");
    assert!(sources.contains("postgres/url"), "{sources}");
    for path in ["ca.crt", "tls.crt", "tls.key"] {
        let item = format!("postgres/tls/{path}");
        assert!(sources.contains(&item), "{item} in {sources}");
    }
    assert!(sources.contains("driftwatch-postgres-tls"), "{sources}");
    let config: Value = serde_saphyr::from_str(&config_of(&docs)?)?;
    assert_eq!(config["history"]["backend"], "postgres", "{config}");
    assert_eq!(
        config["history"]["postgres"],
        json!({
            "url_file": "/etc/driftwatch/postgres/url",
            "pool": 8,
            "tls": {
                "ca_file": "/etc/driftwatch/postgres/tls/ca.crt",
                "client_cert_file": "/etc/driftwatch/postgres/tls/tls.crt",
                "client_key_file": "/etc/driftwatch/postgres/tls/tls.key"
            }
        })
    );
    assert_eq!(config["sources"]["kafka"]["reorder_window"], "30s");
    // A CA alone: the server is verified, no client certificate is sent.
    let ca_only = template_text(
        "postgres:\n  enabled: true\n  urlSecret: {name: pg}\n  tlsSecret: {name: pg-ca}\n",
    )?;
    assert_eq!(ca_only.code, 0, "{}", ca_only.stderr);
    let ca_docs = yaml_documents(&ca_only.stdout)?;
    let ca_config: Value = serde_saphyr::from_str(&config_of(&ca_docs)?)?;
    assert_eq!(
        ca_config["history"]["postgres"]["tls"],
        json!({"ca_file": "/etc/driftwatch/postgres/tls/ca.crt"})
    );
    // One replica alone is a Deployment on SQLite, whatever else is set.
    let single = yaml_documents(&template(None)?)?;
    assert_eq!(one(&single, "Deployment")?["spec"]["replicas"], 1);
    let run = template_text("replicaCount: 2\n")?;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("replicaCount > 1 needs postgres.enabled"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn shipped_configs_pass_policy_check() -> Result<()> {
    let plain = yaml_documents(&plain_manifests()?)?;
    policy_check(&config_of(&plain)?, "deploy/kubernetes/30-configmap.yaml")?;
    for values in VALUE_SETS {
        let docs = yaml_documents(&template(values)?)?;
        let config = config_of(&docs)?;
        if values == Some("kafka-siem-values.yaml") {
            // The camelCase values become exactly the SIEM sink keys of
            // README "Configuration" (checked key by key, then by the
            // config loader below).
            let parsed: Value = serde_saphyr::from_str(&config)?;
            let http = &parsed["sinks"]["http"][0];
            assert_eq!(http["name"], "splunk");
            assert_eq!(http["preset"], "splunk_hec");
            assert_eq!(http["format"], "ocsf");
            assert_eq!(http["stream"], "findings");
            assert_eq!(http["token_file"], "/etc/driftwatch/sinks/splunk/token");
            assert_eq!(http["ca_file"], "/etc/driftwatch/sinks/splunk/ca.crt");
            assert_eq!(http["headers"]["X-Team"], "sec");
            assert_eq!(http["timeout"], "10s");
            assert_eq!(http["outbox_max_bytes"], 268435456);
            assert_eq!(http["batch_max_items"], 100);
            assert_eq!(http["retry_initial_backoff"], "500ms");
            let syslog = &parsed["sinks"]["syslog"][0];
            assert_eq!(syslog["address"], "siem.example:6514");
            assert_eq!(syslog["transport"], "tls");
            assert_eq!(syslog["format"], "cef");
            assert_eq!(syslog["ca_file"], "/etc/driftwatch/sinks/siem/ca.crt");
            assert_eq!(syslog["app_name"], "driftwatch");
            assert_eq!(parsed["sinks"]["file"]["max_bytes"], 104857600);
            assert_eq!(parsed["sinks"]["file"]["keep"], 5);
            assert_eq!(parsed["sinks"]["outbox_dir"], "/var/lib/driftwatch/outbox");
            assert_eq!(parsed["sinks"]["kafka"]["topic"], "driftwatch-findings");
            assert_eq!(parsed["alerts"]["fold_window"], "5m");
            assert_eq!(
                parsed["sources"]["kafka"]["dead_letter_topic"],
                "k8s-audit-dlq"
            );
            assert_eq!(parsed["sources"]["kafka"]["cluster_from"], "header");
            assert_eq!(
                parsed["sources"]["kafka"]["properties"]["security.protocol"],
                "SSL"
            );
        }
        policy_check(&config, &format!("the chart's config with {values:?}"))?;
    }
    Ok(())
}

#[test]
fn chart_schema_refuses_misspelled_values() -> Result<()> {
    for (text, key) in [
        ("persistance:\n  enabled: false\n", "persistance"),
        ("tls:\n  existingSecrets: x\n", "existingSecrets"),
        (
            "sinks:\n  http:\n    - name: splunk\n      url: https://s/\n      tokenFile: /x\n",
            "tokenFile",
        ),
    ] {
        let run = template_text(text)?;
        assert_eq!(run.code, 1, "{text}: {}", run.stdout);
        assert!(
            run.stderr
                .contains(&format!("additional properties '{key}' not allowed")),
            "{text}: {}",
            run.stderr
        );
    }
    // And Helm's own lint, against the API server version the tests run.
    ok(
        repo_script("helm-dev", &["lint", CHART, "--kube-version", "v1.20.2"])?,
        "helm lint",
    )?;
    Ok(())
}

/// Two independent real Helms agree: the Go SDK v4.2.3 behind
/// `scripts/helm-dev template` and the official helm v3.17.1 binary
/// (`scripts/helm-dev helm3`). The SDK path is a driver of Helm's install
/// action, not `helm template` itself; this shows it renders what the CLI
/// renders (their texts differ only in blank lines between documents, and
/// v4 puts kinds outside Helm's install order, a Certificate and a
/// ValidatingWebhookConfiguration, in another order: compared by kind and
/// name).
#[test]
fn helm_v4_sdk_and_helm_v3_cli_render_the_chart_alike() -> Result<()> {
    let by_kind_and_name = |mut docs: Vec<Value>| {
        docs.sort_by_key(|d| (kind(d).to_owned(), d["metadata"]["name"].to_string()));
        docs
    };
    for values in VALUE_SETS {
        let v4 = by_kind_and_name(yaml_documents(&template(values)?)?);
        let file = values.map(|v| format!("{CHART}/ci/{v}"));
        let mut args = vec!["helm3", "template", RELEASE, CHART, "-n", CHART_NAMESPACE];
        if let Some(f) = &file {
            args.extend(["-f", f]);
        }
        let v3 = by_kind_and_name(yaml_documents(&ok(
            repo_script("helm-dev", &args)?,
            "helm v3 template",
        )?)?);
        assert!(!v3.is_empty());
        assert_eq!(v3, v4, "{values:?}");
    }
    let dir = tempfile::tempdir()?;
    let typo = dir.path().join("typo.yaml");
    std::fs::write(&typo, "persistance:\n  enabled: false\n")?;
    let run = repo_script(
        "helm-dev",
        &[
            "helm3",
            "template",
            RELEASE,
            CHART,
            "-f",
            typo.to_str().context("path")?,
        ],
    )?;
    assert_ne!(run.code, 0, "helm v3 accepted a misspelled value");
    assert!(run.stderr.contains("persistance"), "{}", run.stderr);
    Ok(())
}

fn rules(docs: &[Value]) -> Result<Value> {
    Ok(one(docs, "ClusterRole")?["rules"].clone())
}

#[test]
fn rbac_is_read_only_never_secrets_and_the_same_in_chart_and_manifests() -> Result<()> {
    let plain = rules(&yaml_documents(&plain_manifests()?)?)?;
    let chart = rules(&yaml_documents(&template(None)?)?)?;
    assert_eq!(
        plain, chart,
        "deploy/kubernetes and the chart grant the same"
    );
    let rules = plain.as_array().context("rules")?;
    assert!(rules.len() >= 10, "{plain}");
    for rule in rules {
        let verbs: BTreeSet<&str> = rule["verbs"]
            .as_array()
            .context("verbs")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(verbs.is_subset(&["get", "list", "watch"].into()), "{rule}");
        // Lookups are single GETs; only the pipeline inventories are watched.
        let groups = rule["apiGroups"].to_string();
        if !(groups.contains("argoproj.io") || groups.contains("fluxcd.io")) {
            assert_eq!(verbs, ["get"].into(), "{rule}");
        }
        for r in rule["resources"].as_array().context("resources")? {
            let r = r.as_str().context("resource")?;
            assert!(r != "secrets" && r != "*" && !r.contains('/'), "{rule}");
        }
        assert!(!rule["apiGroups"].to_string().contains('*'), "{rule}");
    }
    Ok(())
}

#[test]
fn notes_print_the_apiserver_flags_and_webhook_kubeconfig() -> Result<()> {
    let notes = ok(helm("notes", Some("tls-auth-values.yaml"))?, "helm notes")?;
    for needle in [
        "--audit-policy-file=",
        "--audit-webhook-config-file=/etc/kubernetes/driftwatch-webhook.yaml",
        "--audit-webhook-batch-max-size=400",
        "server: https://dw-driftwatch.dw-chart.svc:443/audit/webhook/prod-eu-1",
        "client-certificate:",
        "token:",
        "kind: Config",
    ] {
        assert!(notes.contains(needle), "{needle} in:\n{notes}");
    }
    // Defaults: no authentication and no API server range, and it says so.
    let notes = ok(helm("notes", None)?, "helm notes")?;
    assert!(
        notes.contains("WARNING: neither clientCa nor tokens"),
        "{notes}"
    );
    assert!(
        notes.contains("networkPolicy.apiServerCidrs is empty"),
        "{notes}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The container image.

/// The absolute paths ldd resolves for `bin` (what the image must carry).
fn ldd(bin: &Path) -> Result<BTreeSet<String>> {
    let out = std::process::Command::new("ldd").arg(bin).output()?;
    ensure!(out.status.success(), "ldd {}", bin.display());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                [_, "=>", path, ..] if path.starts_with('/') => Some((*path).to_owned()),
                [path, ..] if path.starts_with('/') => Some((*path).to_owned()),
                _ => None,
            }
        })
        .collect())
}

fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes the test's image however the test ends.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

#[test]
fn packed_image_holds_the_binary_and_its_libraries_and_runs_as_nonroot() -> Result<()> {
    let binary = bin();
    let libs = ldd(&binary)?;
    // At least libc and the loader: a static binary would need no libraries,
    // and this test would then say nothing about them.
    assert!(libs.iter().any(|l| l.contains("libc.so")), "{libs:?}");

    // The staged file list: the binary, every library, CA certificates.
    let stage = tempfile::tempdir()?;
    let listed = ok(
        repo_script(
            "pack-image",
            &[
                "stage",
                binary.to_str().context("path")?,
                stage.path().to_str().context("path")?,
            ],
        )?,
        "pack-image stage",
    )?;
    let listed: BTreeSet<String> = listed.lines().map(str::to_owned).collect();
    let mut expected = libs.clone();
    expected.extend(set(&[
        "/driftwatch",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/passwd",
        "/etc/group",
    ]));
    assert!(
        expected.is_subset(&listed),
        "missing: {:?}",
        expected.difference(&listed).collect::<Vec<_>>()
    );
    assert!(
        !listed
            .iter()
            .any(|f| f.starts_with("/bin/") || f.starts_with("/usr/bin/")),
        "{listed:?}"
    );
    let passwd = std::fs::read_to_string(stage.path().join("rootfs/etc/passwd"))?;
    assert!(passwd.contains(":65532:65532:"), "{passwd}");

    // Built by podman from that dir, offline (the prebuilt target is FROM scratch).
    let tag = format!("localhost/driftwatch-it:{}", std::process::id());
    let image = Image(tag.clone());
    let built = ok(
        repo_script(
            "pack-image",
            &["build", binary.to_str().context("path")?, &tag],
        )?,
        "pack-image build",
    )?;
    assert!(!built.trim().is_empty());
    let config: Value = serde_json::from_str(&sh(
        "podman",
        &["image", "inspect", "--format", "{{json .Config}}", &image.0],
    )?)?;
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/driftwatch", "serve"])
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["--config", "/etc/driftwatch/config.yaml"])
    );

    // Every file of every layer, as `podman save` writes the image.
    let saved = tempfile::tempdir()?;
    let archive = saved.path().join("image.tar");
    let archive = archive.to_str().context("path")?;
    sh(
        "podman",
        &[
            "save",
            "--format",
            "docker-archive",
            "-o",
            archive,
            &image.0,
        ],
    )?;
    let manifest: Value = serde_json::from_str(&sh("tar", &["-xOf", archive, "manifest.json"])?)?;
    // path -> owner (uid/gid), from `tar -tv --numeric-owner` of each layer.
    let mut owners = std::collections::BTreeMap::new();
    for layer in manifest[0]["Layers"].as_array().context("layers")? {
        let layer = layer.as_str().context("layer")?;
        let list = sh(
            "sh",
            &[
                "-c",
                &format!("tar -xOf '{archive}' '{layer}' | tar -tv --numeric-owner"),
            ],
        )?;
        for line in list.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if let (Some(owner), Some(path)) = (w.get(1), w.get(5)) {
                let path = format!("/{}", path.trim_start_matches("./"));
                owners.insert(path, (*owner).to_owned());
            }
        }
    }
    let files: BTreeSet<String> = owners.keys().cloned().collect();
    // The data dir alone belongs to the runtime user; the binary, libraries
    // and /var/lib stay root's (not writable by the process).
    assert_eq!(
        owners.get("/var/lib/driftwatch/").map(String::as_str),
        Some("65532/65532")
    );
    assert_eq!(owners.get("/var/lib/").map(String::as_str), Some("0/0"));
    assert_eq!(owners.get("/driftwatch").map(String::as_str), Some("0/0"));
    assert!(
        expected.is_subset(&files),
        "missing in the image: {:?}",
        expected.difference(&files).collect::<Vec<_>>()
    );
    assert!(!files.contains("/bin/sh"), "no shell in the image");
    assert!(files.contains("/var/lib/driftwatch/"), "{files:?}");
    Ok(())
}

/// The shipped webhook configurations cannot lock a cluster: they fail
/// open, skip the API server's namespaces and driftwatch's own, and ask
/// v1 reviews of driftwatch's admission route.
#[test]
fn admission_webhooks_fail_open_and_skip_the_control_planes_namespaces() -> Result<()> {
    let plain = yaml_documents(&plain_manifests()?)?;
    let chart = yaml_documents(&template(Some("admission-values.yaml"))?)?;
    for (docs, own) in [(&plain, "driftwatch"), (&chart, CHART_NAMESPACE)] {
        let hook = &one(docs, "ValidatingWebhookConfiguration")?["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
        let path = hook["clientConfig"]["service"]["path"]
            .as_str()
            .unwrap_or("");
        assert!(path.starts_with("/admission/validate/"), "{path}");
        let skipped = &hook["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(skipped["operator"], "NotIn");
        for ns in ["kube-system", "kube-node-lease", "kube-public", own] {
            assert!(
                skipped["values"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|n| n == ns)),
                "{ns} not excluded: {skipped}"
            );
        }
    }
    let config = config_of(&chart)?;
    assert!(config.contains("mode: warn"), "{config}");
    Ok(())
}
