use super::*;
use crate::model::FindingType;

#[test]
fn empty_config_is_the_embedded_defaults() {
    let c = Config::from_yaml("", "x.yaml").unwrap();
    assert_eq!(c.cluster, DEFAULT_CLUSTER);
    assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
    assert!(c.policy.pipelines.is_empty());
    assert!(
        c.policy
            .system
            .users
            .contains("system:serviceaccount:kube-system:deployment-controller")
    );
    assert!(c.policy.system.nodes);
}

#[test]
fn every_problem_is_reported_with_key_and_line() {
    let yaml = "\
cluster: prod
pipelines:
  - name: argocd
    users: [\"system:serviceaccount:argocd:argocd-application-controller\"]
    user_agents: [\"^argocd(\"]
  - name: flux
    groups: [\"system:serviceaccounts:flux-system\"]
    source_cidrs: [\"10.0.0.0/33\"]
";
    let err = Config::from_yaml(yaml, "driftwatch.yaml").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("driftwatch.yaml:5: pipelines[0].user_agents[0]: invalid regex \"^argocd(\""),
        "{text}"
    );
    assert!(
        text.contains("driftwatch.yaml:8: pipelines[1].source_cidrs[0]: invalid CIDR"),
        "{text}"
    );
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_yaml("cluster: a\npipelnes: []\n", "c.yaml").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("pipelnes"), "{text}");
    assert!(
        text.starts_with("c.yaml:2: unknown field `pipelnes`"),
        "{text}"
    );
}

#[test]
fn pipeline_without_identity_is_refused() {
    let err = Config::from_yaml(
        "pipelines:\n  - name: helm\n    user_agents: [\"^Helm/\"]\n",
        "c.yaml",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("c.yaml:2: pipelines[0]: declares no users and no groups"),
        "{err}"
    );
}

#[test]
fn baseline_opt_out_and_extras() {
    let c = Config::from_yaml(
        "system_identities:\n  exclude: [\"system:kube-proxy\", nodes]\n  extra_users: [\"system:serviceaccount:cert-manager:cert-manager\"]\n",
        "c.yaml",
    )
    .unwrap();
    assert!(!c.policy.system.users.contains("system:kube-proxy"));
    assert!(!c.policy.system.nodes);
    assert!(
        c.policy
            .system
            .users
            .contains("system:serviceaccount:cert-manager:cert-manager")
    );

    let c = Config::from_yaml("system_identities:\n  baseline: false\n", "c.yaml").unwrap();
    assert!(c.policy.system.users.is_empty());
    assert!(!c.policy.system.nodes);
}

#[test]
fn every_limit_and_duration_is_checked_with_its_key() {
    let yaml = "\
server:
  queue_batches: 0
  max_header_bytes: 10
  body_read_timeout: 0s
  shutdown_grace: soon
history:
  retention: 5y
  max_tracked_objects: 0
sinks:
  kafka: {brokers: \"\", topic: t, delivery_timeout_ms: 5}
";
    let text = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
    for expected in [
        "c.yaml:2: server.queue_batches: must be at least 1",
        "c.yaml:3: server.max_header_bytes: must be at least 1024",
        "c.yaml:4: server.body_read_timeout: invalid duration \"0s\": must not be zero",
        "c.yaml:5: server.shutdown_grace: invalid duration \"soon\": expected a number and a unit",
        "c.yaml:7: history.retention: invalid duration \"5y\": unit must be s, m, h, d or w",
        "c.yaml:8: history.max_tracked_objects: must be at least 1",
        "sinks.kafka.brokers: must not be empty",
        "sinks.kafka.delivery_timeout_ms: must be at least 100",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn decode_limits_are_read_checked_and_the_work_budget_follows_the_body_limit() {
    let c = Config::from_yaml("server:\n  max_body_bytes: 1048576\n", "c.yaml").unwrap();
    assert_eq!(c.server.max_decode_work, 8 << 20);
    assert_eq!(c.server.max_event_bytes, 4 << 20);
    assert_eq!(c.server.max_inflate_ratio, 100);
    assert_eq!(
        c.server.max_clock_skew,
        std::time::Duration::from_secs(86_400)
    );
    let yaml = "\
server:
  max_event_bytes: 2048
  max_inflate_ratio: 20
  max_decode_work: 2097152
  max_clock_skew: 1h
";
    let c = Config::from_yaml(yaml, "c.yaml").unwrap();
    assert_eq!(
        (
            c.server.max_event_bytes,
            c.server.max_inflate_ratio,
            c.server.max_decode_work,
            c.server.max_clock_skew.as_secs()
        ),
        (2048, 20, 2 << 20, 3600)
    );
    let yaml = "\
server:
  max_event_bytes: 10
  max_inflate_ratio: 1
  max_decode_work: 5
  max_clock_skew: never
";
    let text = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
    for expected in [
        "c.yaml:2: server.max_event_bytes: must be at least 1024",
        "c.yaml:3: server.max_inflate_ratio: must be at least 2",
        "c.yaml:4: server.max_decode_work: must be at least 1048576",
        "c.yaml:5: server.max_clock_skew: invalid duration \"never\"",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn listener_limits_are_checked_with_their_keys() {
    let yaml = "\
server:
  max_connections: 0
  max_concurrent_streams: 0
  max_body_bytes: 2000000
  max_inflight_body_bytes: 1000000
";
    let text = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
    for expected in [
        "c.yaml:2: server.max_connections: must be at least 1",
        "c.yaml:3: server.max_concurrent_streams: must be at least 1",
        "c.yaml:5: server.max_inflight_body_bytes: 1000000 is less than server.max_body_bytes (2000000)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let c = Config::from_yaml(
        "server:\n  max_connections: 8\n  max_concurrent_streams: 4\n  max_inflight_body_bytes: 33554432\n  auth:\n    allow_any_cluster: true\n",
        "c.yaml",
    )
    .unwrap();
    assert_eq!(
        (
            c.server.max_connections,
            c.server.max_concurrent_streams,
            c.server.max_inflight_body_bytes,
            c.server.auth.allow_any_cluster
        ),
        (8, 4, 32 << 20, true)
    );
    let d = Config::default().server;
    assert!(d.max_inflight_body_bytes >= d.max_body_bytes + crate::http::body::INFLATER_BYTES);
    assert!(!d.auth.allow_any_cluster);
}

// -- formats branch: alerts and the file sink --

#[test]
fn alerts_and_file_sink_keys() {
    use crate::sinks::format::Format;
    use crate::sinks::shape::Stream;
    let c = Config::from_yaml(
        "alerts:\n  fold_window: 2s\n  max_drifts: 50\nsinks:\n  file:\n    path: /tmp/a.log\n    format: ocsf\n    stream: alerts\n    max_bytes: 1048576\n    keep: 3\n",
        "c.yaml",
    )
    .unwrap();
    assert_eq!(c.alerts.fold_window, std::time::Duration::from_secs(2));
    assert_eq!(c.alerts.max_drifts, 50);
    assert_eq!(c.sinks.alerts, c.alerts);
    let f = c.sinks.file.unwrap();
    assert_eq!(
        (f.format, f.stream, f.max_bytes, f.keep),
        (Format::Ocsf, Stream::Alerts, Some(1 << 20), 3)
    );
    let d = Config::from_yaml("sinks:\n  file:\n    path: x.log\n", "c.yaml").unwrap();
    let f = d.sinks.file.unwrap();
    assert_eq!(
        (f.format, f.stream, f.max_bytes, f.keep),
        (Format::Native, Stream::Findings, None, 5)
    );
    assert_eq!(d.alerts.fold_window, std::time::Duration::from_secs(300));
    let yaml = "alerts:\n  fold_window: soon\n  max_drifts: 0\nsinks:\n  file:\n    path: x\n    format: xml\n    stream: pages\n    max_bytes: 10\n    keep: 0\n";
    let text = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
    for expected in [
        "c.yaml:2: alerts.fold_window: invalid duration",
        "c.yaml:3: alerts.max_drifts: must be at least 1",
        "c.yaml:7: sinks.file.format: unknown value \"xml\": expected one of native, ocsf, ecs, cef",
        "c.yaml:8: sinks.file.stream: unknown value \"pages\": expected one of findings, alerts",
        "c.yaml:9: sinks.file.max_bytes: must be at least 4096",
        "c.yaml:10: sinks.file.keep: must be at least 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn kubernetes_is_off_unless_enabled_and_checked_either_way() {
    assert!(
        Config::from_yaml("", "x.yaml")
            .unwrap()
            .kubernetes
            .is_none()
    );
    let on = "\
cluster: prod-eu-1
kubernetes:
  enabled: true
  kubeconfig: /etc/kube/config
  context: eu
  clusters:
    prod-us-1: {context: us}
  cache: {capacity: 10, ttl: 1m, negative_ttl: 10s}
  max_concurrent_lookups: 4
  lookup_timeout: 500ms
  breaker: {failures: 3, open_for: 1s}
  inventories: [flux, argocd, flux]
";
    let k = Config::from_yaml(on, "x.yaml").unwrap().kubernetes.unwrap();
    assert_eq!(k.auth, KubeAuth::Kubeconfig("/etc/kube/config".into()));
    assert_eq!(k.context.as_deref(), Some("eu"));
    assert_eq!(k.clusters["prod-us-1"], "us");
    assert_eq!(k.cache.capacity, 10);
    assert_eq!(k.lookup_timeout, std::time::Duration::from_millis(500));
    assert_eq!(k.breaker.failures, 3);
    assert_eq!(k.breaker.open_for, std::time::Duration::from_secs(1));
    assert_eq!(
        k.inventories,
        [
            crate::config::InventoryTool::Flux,
            crate::config::InventoryTool::ArgoCd
        ]
    );
    let defaults = Config::from_yaml("kubernetes: {enabled: true}", "x.yaml")
        .unwrap()
        .kubernetes
        .unwrap();
    assert_eq!(defaults.breaker.failures, 5);
    assert!(defaults.inventories.is_empty());
    assert_eq!(
        defaults.breaker.open_for,
        std::time::Duration::from_secs(30)
    );
    let bad = "\
kubernetes:
  clusters:
    prod-us-1: {context: us}
  cache:
    negative_ttl: soon
  max_concurrent_lookups: 0
  lookup_timeout: 1m
  breaker:
    failures: 0
    open_for: never
  inventories: [argocd, rancher-fleet]
";
    let text = Config::from_yaml(bad, "d.yaml").unwrap_err().to_string();
    for needle in [
        "d.yaml:3: kubernetes.clusters.prod-us-1.context: needs kubernetes.kubeconfig",
        "d.yaml:5: kubernetes.cache.negative_ttl: invalid duration",
        "d.yaml:6: kubernetes.max_concurrent_lookups: must be at least 1",
        "d.yaml:7: kubernetes.lookup_timeout: \"1m\" is too long",
        "d.yaml:9: kubernetes.breaker.failures: must be at least 1",
        "d.yaml:10: kubernetes.breaker.open_for: invalid duration",
        "d.yaml:11: kubernetes.inventories: unknown pipeline \"rancher-fleet\": use argocd or flux",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
}

#[test]
fn admission_is_off_unless_enabled_and_its_modes_are_checked() {
    assert!(Config::from_yaml("", "a.yaml").unwrap().admission.is_none());
    let good = "admission:\n  enabled: true\n  mode: enforce\n  break_glass_groups: [oncall]\n  overrides:\n    - {namespaces: [sandbox], mode: warn}\n    - {rules: [user_agent_spoofing], mode: audit}\n";
    let a = Config::from_yaml(good, "a.yaml")
        .unwrap()
        .admission
        .unwrap();
    assert_eq!(
        a.mode_for("shop", FindingType::OutOfBandChange),
        AdmissionMode::Enforce
    );
    assert_eq!(
        a.mode_for("sandbox", FindingType::OutOfBandChange),
        AdmissionMode::Warn
    );
    assert_eq!(
        a.mode_for("shop", FindingType::UserAgentSpoofing),
        AdmissionMode::Audit
    );
    let bad = "admission:\n  enabled: true\n  mode: block\n  break_glass_max: soon\n  overrides:\n    - {rules: [interactive_access], mode: deny}\n";
    let text = Config::from_yaml(bad, "a.yaml").unwrap_err().to_string();
    for needle in [
        "a.yaml:3: admission.mode: unknown mode \"block\": use audit, warn or enforce",
        "a.yaml:4: admission.break_glass_max: invalid duration",
        "a.yaml:6: admission.overrides[0].rules: unknown rule \"interactive_access\"",
        "a.yaml:6: admission.overrides[0].mode: unknown mode \"deny\"",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
}
