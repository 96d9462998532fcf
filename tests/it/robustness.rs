//! Robustness (issue 5, item 5): decode, classify and correlate never panic
//! and keep their accounting on any input, and the running service survives
//! an adversarial corpus over real HTTP without unbounded memory.
//!
//! The property tests feed three kinds of input through
//! `decode::decode_bytes` (and `decode_bytes_in`, with an arena for cloud
//! envelopes, as the webhook decodes) then `Engine::ingest` (judge and
//! deliver): arbitrary bytes, arbitrary JSON, and near-valid audit
//! events (random field types, missing fields, stages, verbs, subresources,
//! status codes, impersonation, huge and escaped strings, JSON patches and
//! strategic-merge directives, Secrets, duplicate keys, damaged bodies, AKS,
//! CloudWatch and Firehose envelopes). Seeds are fixed so CI runs the same
//! cases every time; a failure prints the minimal input, which then belongs
//! in the regression tests at the end of the property section. The fuzz
//! target in `fuzz/` covers the same path without a time budget.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use driftwatch::config::Config;
use driftwatch::decode::{self, Decoded};
use driftwatch::engine::{Engine, IngestError, Input, Stats};
use driftwatch::model::{FindingType, VerdictKind};
use driftwatch::sinks::{Batch, Sink, SinkError, Sinks};
use driftwatch::store::Store;
use driftwatch::telemetry::events::Source;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestCaseError};
use serde_json::{Value, json};

// ===========================================================================
// Part 1: properties over decode -> classify -> correlate -> deliver.

/// Three pipelines with every kind of constraint, ignore rules, an
/// override, and a small tracker so that LRU eviction happens inside a case.
const CONFIG: &str = r#"
cluster: prop-cluster
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
  - name: flux
    users: ["system:serviceaccount:flux-system:kustomize-controller"]
    groups: ["flux-deployers"]
  - name: helm-ci
    users: ["ci-deployer@example.com"]
    user_agents: ["^Helm/3\\."]
    source_cidrs: ["10.20.0.0/16", "2001:db8::/32"]
system_identities:
  baseline: true
  extra_users: ["system:serviceaccount:cert-manager:cert-manager"]
  extra_groups: ["trusted-operators"]
ignore:
  resources: ["widgets.example.com"]
  namespaces: ["scratch"]
severity:
  overrides:
    - resources: ["configmaps"]
      namespaces: ["kube-system"]
      severity: high
dedupe:
  capacity: 4096
history:
  max_tracked_objects: 8
"#;

const PIPELINES: &[&str] = &["argocd", "flux", "helm-ci"];
const FINDING_TYPES: &[&str] = &[
    "pipeline_impersonation",
    "pipeline_credential_misuse",
    "user_agent_spoofing",
    "interactive_access",
    "out_of_band_change",
];
const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];
const PIPELINE_TYPES: &[&str] = &[
    "pipeline_impersonation",
    "pipeline_credential_misuse",
    "user_agent_spoofing",
];

/// The secret value put in Secrets' `data`, `stringData` and in the
/// last-applied annotation (which copies them). It must never be emitted
/// or stored.
const MARKER: &str = "Zm9vS3VwZXJTZWNyZXRNYXJrZXI";

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn config() -> Arc<Config> {
    Arc::new(Config::from_yaml(CONFIG, "robustness.yaml").expect("the test config is valid"))
}

fn proptest_config(cases: u32, seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // Failures are turned into named regression tests below instead of
        // files written next to the sources.
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// What decompression and base64 may produce per body in these tests.
const ARENA_LIMIT: usize = 4 << 20;

/// Captures what the engine asks the sinks to write, as finding lines; when
/// `down`, it refuses after capturing (what a retry must write again).
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<Mutex<Vec<u8>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Capture {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Sink for Capture {
    fn name(&self) -> &'static str {
        "capture"
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let findings = batch.findings;
        let mut lines = self.lines.lock().unwrap();
        driftwatch::sinks::finding::json_lines(findings, &mut lines);
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SinkError::retriable(
                "capture",
                std::io::Error::other("sink is down"),
            ));
        }
        Ok(())
    }
}

/// An engine whose only sink is a [`Capture`].
struct Harness {
    engine: Engine,
    capture: Capture,
}

impl Harness {
    fn new(store: Option<Store>) -> Harness {
        let capture = Capture::default();
        let sinks = Sinks::new(vec![Box::new(capture.clone())]);
        Harness {
            engine: Engine::new(config(), store, sinks).unwrap(),
            capture,
        }
    }

    fn ingest(&mut self, body: &[u8]) -> Result<driftwatch::engine::Accepted, IngestError> {
        let input = Input::whole(bytes::Bytes::copy_from_slice(body), None, Source::Replay);
        self.engine.ingest(vec![input]).pop().unwrap()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The body as the webhook judges it: without a byte-order mark, is there
/// anything but ASCII whitespace?
fn is_blank(body: &[u8]) -> bool {
    let content = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    content.iter().all(u8::is_ascii_whitespace)
}

/// Whether every document of `body` is an empty container: `[]`, an
/// `EventList` with `items: []`, an envelope with no records or log events,
/// a CloudWatch control message. Only such bodies may hold neither an event
/// nor a rejection. `None` when the body does not parse as a stream of JSON
/// values here (nesting past serde_json's recursion limit).
fn only_empty_containers(body: &[u8]) -> Option<bool> {
    fn empty(doc: &Value) -> bool {
        match doc {
            // An array of empty lists holds no event either.
            Value::Array(items) => items.iter().all(|i| i.is_object() && empty(i)),
            Value::Object(map) => {
                ["items", "records", "logEvents"].iter().any(|k| {
                    map.get(*k)
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty)
                }) || map.get("messageType").and_then(Value::as_str) == Some("CONTROL_MESSAGE")
            }
            _ => false,
        }
    }
    let content = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let docs: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(content)
        .into_iter::<Value>()
        .collect();
    Some(docs.ok()?.iter().all(empty))
}

/// Invariants of decode alone.
fn check_decoded(body: &[u8], decoded: &Decoded<'_>) -> Result<(), TestCaseError> {
    let lines = body.split(|b| *b == b'\n').count();
    if !is_blank(body) {
        prop_assert!(
            decoded.documents >= 1,
            "a non-blank body holds at least one document"
        );
        if decoded.events.is_empty() && decoded.rejections.is_empty() {
            // Nothing accepted and nothing rejected: only an empty batch may
            // say so; anything else was dropped silently.
            prop_assert_ne!(
                only_empty_containers(body),
                Some(false),
                "body neither accepted nor rejected: {:?}",
                String::from_utf8_lossy(body)
            );
        }
    } else {
        prop_assert!(decoded.events.is_empty() && decoded.rejections.is_empty());
    }
    for r in &decoded.rejections {
        prop_assert!(
            (1..=lines).contains(&r.line),
            "rejection line {} outside 1..={lines}: {:?}",
            r.line,
            r.message
        );
        prop_assert!(!r.message.trim().is_empty(), "a rejection says why");
    }
    for e in &decoded.events {
        prop_assert!(
            (1..=lines).contains(&e.line),
            "event line {} outside 1..={lines}",
            e.line
        );
        // Accepted events are valid ones.
        prop_assert_eq!(e.event.validate().ok(), Some(e.stage));
    }
    Ok(())
}

/// Invariants of one processed batch and of the finding lines its delivery
/// wrote.
fn check_batch(
    decoded: &Decoded<'_>,
    s: &Stats,
    findings: usize,
    lines: &[u8],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.documents, decoded.documents as u64);
    prop_assert_eq!(s.events, decoded.events.len() as u64);
    prop_assert_eq!(s.rejected, decoded.rejections.total() as u64);
    // Every decoded event gets exactly one verdict, or is a duplicate.
    let drift = s.verdict(VerdictKind::Drift);
    prop_assert_eq!(
        s.verdict(VerdictKind::Ignored) + s.mutations() + s.deduplicated(),
        s.events,
        "stats do not account for every event: {:?}",
        s
    );
    prop_assert_eq!(findings as u64, drift);
    prop_assert_eq!(s.findings_total(), drift);

    let written: Vec<&[u8]> = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    prop_assert_eq!(written.len(), findings);
    let mut ids = BTreeSet::new();
    for line in written {
        prop_assert!(
            !contains(line, MARKER.as_bytes()),
            "a secret value leaked into a finding: {}",
            String::from_utf8_lossy(line)
        );
        let f: Value = serde_json::from_slice(line)
            .map_err(|e| TestCaseError::fail(format!("finding is not JSON: {e}")))?;
        prop_assert_eq!(&f["schema"], "driftwatch.finding/v1");
        let id = f["id"].as_str().unwrap_or("");
        prop_assert!(!id.is_empty(), "finding without id: {}", f);
        prop_assert!(ids.insert(id.to_owned()), "two findings share id {}", id);
        let ty = f["type"].as_str().unwrap_or("");
        prop_assert!(FINDING_TYPES.contains(&ty), "type {:?}", ty);
        let severity = f["severity"].as_str().unwrap_or("");
        prop_assert!(SEVERITIES.contains(&severity), "severity {:?}", severity);
        // The contract: `pipeline` names the pipeline for the three
        // pipeline-related types, and only for them.
        match f["pipeline"].as_str() {
            Some(p) => {
                prop_assert!(PIPELINE_TYPES.contains(&ty), "{} names pipeline {}", ty, p);
                prop_assert!(PIPELINES.contains(&p), "unknown pipeline {:?}", p);
            }
            None => prop_assert!(!PIPELINE_TYPES.contains(&ty), "{} without pipeline", ty),
        }
        prop_assert!(f["audit_id"].as_str().is_some_and(|a| !a.is_empty()));
        prop_assert!(f["actor"]["username"].is_string());
        prop_assert!(f["changes"].as_array().is_some_and(|c| c.len() <= 200));
        prop_assert!(!f["reasons"].as_array().is_none_or(Vec::is_empty));
    }
    Ok(())
}

/// Decodes, judges and delivers one body; returns the finding lines.
/// With `fail_first`, delivery first fails (sink down) and the body is
/// ingested again, as after a retry: it must give the same findings.
fn run_body(h: &mut Harness, body: &[u8], fail_first: bool) -> Result<Vec<u8>, TestCaseError> {
    // Without an arena, and with one as the webhook decodes: cloud
    // envelopes, gzip and base64 unpack into the arena.
    check_decoded(body, &decode::decode_bytes(body))?;
    let arena = decode::Arena::with_limit(ARENA_LIMIT);
    let decoded = decode::decode_bytes_in(body, &arena);
    check_decoded(body, &decoded)?;
    if fail_first {
        h.capture.set_down(true);
        let failed = h.ingest(body);
        h.capture.set_down(false);
        let first = h.capture.take();
        match failed {
            Ok(a) => {
                // Nothing to write: the batch was accepted as it is.
                prop_assert_eq!(a.findings, 0, "a sink that is down accepted findings");
                check_batch(&decoded, &a.stats, a.findings, &[])?;
                return Ok(Vec::new());
            }
            Err(e) => {
                prop_assert!(matches!(e, IngestError::Sink(_)), "{e}");
                prop_assert!(!first.is_empty(), "refused without findings to write");
                let again = h.ingest(body);
                prop_assert!(again.is_ok(), "retry failed: {:?}", again.err());
                let lines = h.capture.take();
                prop_assert_eq!(
                    String::from_utf8_lossy(&first),
                    String::from_utf8_lossy(&lines),
                    "a retried batch yields other findings"
                );
                let a = again.unwrap();
                check_batch(&decoded, &a.stats, a.findings, &lines)?;
                return Ok(lines);
            }
        }
    }
    let delivered = h.ingest(body);
    prop_assert!(delivered.is_ok(), "ingest failed: {:?}", delivered.err());
    let a = delivered.unwrap();
    let lines = h.capture.take();
    check_batch(&decoded, &a.stats, a.findings, &lines)?;
    Ok(lines)
}

// ---------------------------------------------------------------------------
// Generators.

fn pick(xs: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(xs).prop_map(str::to_owned).boxed()
}

/// Strings that stress escaping, Unicode and size.
fn weird_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "\\PC{0,12}",
        2 => ".{0,12}",
        2 => "[\\x00-\\x1f\"\\\\/\u{7f}\u{80}\u{2028}\u{fffd}\u{10ffff}]{0,8}",
        1 => (0usize..7, 1usize..40_000).prop_map(|(k, n)| {
            ["é", "\"", "\\", "\u{0}", "\u{1F600}", "a", "\u{feff}"][k].repeat(n)
        }),
        1 => Just(String::new()),
    ]
    .boxed()
}

/// Keys an audit event or a Kubernetes object uses, and others.
fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => pick(&[
            "kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
            "username", "uid", "groups", "extra", "impersonatedUser", "sourceIPs",
            "userAgent", "objectRef", "resource", "namespace", "name", "apiGroup",
            "subresource", "responseStatus", "code", "requestObject", "responseObject",
            "requestReceivedTimestamp", "stageTimestamp", "timestamp", "items", "metadata",
            "labels", "annotations", "ownerReferences", "controller", "data", "stringData",
            "spec", "status", "containers", "image", "op", "path", "value", "from",
            "$patch", "$retainKeys", "$setElementOrder/containers", "mountPath", "type",
        ]),
        1 => weird_string(),
    ]
    .boxed()
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        weird_string().prop_map(Value::from),
        pick(&[
            "ResponseComplete",
            "patch",
            "secrets",
            "exec",
            "Event",
            "EventList"
        ])
        .prop_map(Value::from),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// `Some(valid)` mostly, sometimes missing, rarely any JSON (of the wrong
/// type, most of the time): an event has some 25 fields, and one of the
/// wrong type is enough to reject it.
fn field(valid: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        100 => valid.prop_map(Some),
        8 => Just(None),
        1 => json_value().prop_map(Some),
    ]
    .boxed()
}

fn string_field(values: &'static [&'static str]) -> BoxedStrategy<Option<Value>> {
    field(
        prop_oneof![
            6 => pick(values).prop_map(Value::from),
            1 => weird_string().prop_map(Value::from),
        ]
        .boxed(),
    )
}

const USERS: &[&str] = &[
    "alice@example.com",
    "system:serviceaccount:argocd:argocd-application-controller",
    "system:serviceaccount:argocd:argocd-server",
    "system:serviceaccount:flux-system:kustomize-controller",
    "ci-deployer@example.com",
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:cert-manager:cert-manager",
    "system:node:node-1",
    "system:admin",
    "system:anonymous",
    "",
];
const GROUPS: &[&str] = &[
    "system:authenticated",
    "system:masters",
    "system:nodes",
    "flux-deployers",
    "trusted-operators",
    "devs",
];
const USER_AGENTS: &[&str] = &[
    "kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234",
    "kubectl.exe/v1.31.2 (windows/amd64) kubernetes/abc1234",
    "argocd-application-controller/v2.13.1 (linux/amd64) kubernetes/0e0e0e0",
    "kustomize-controller/v1.4.0",
    "Helm/3.16.2",
    "Go-http-client/2.0",
    "",
];
const SOURCE_IPS: &[&str] = &[
    "10.20.1.5",
    "10.0.0.7",
    "192.168.1.1",
    "::1",
    "2001:db8::7",
    "not-an-ip",
    "",
];
/// Mutations more often than reads: reads are ignored at once.
const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "create",
    "update",
    "update",
    "patch",
    "patch",
    "patch",
    "patch",
    "delete",
    "deletecollection",
    "impersonate",
    "proxy",
];
const STAGES: &[&str] = &[
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "ResponseComplete",
    "Panic",
    "responsecomplete",
];
const RESOURCES: &[&str] = &[
    "pods",
    "deployments",
    "secrets",
    "configmaps",
    "roles",
    "clusterrolebindings",
    "mutatingwebhookconfigurations",
    "namespaces",
    "events",
    "leases",
    "tokenreviews",
    "selfsubjectaccessreviews",
    "services",
    "widgets",
    "customresourcedefinitions",
];
const API_GROUPS: &[&str] = &[
    "",
    "apps",
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "example.com",
];
const SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "portforward",
    "ephemeralcontainers",
    "proxy",
    "status",
    "scale",
    "log",
];
const NAMESPACES: &[&str] = &["shop", "kube-system", "argocd", "scratch", ""];
const NAMES: &[&str] = &["api", "web", "db-creds", ""];
const TIMES: &[&str] = &[
    "2026-11-20T10:00:00.000001Z",
    "2026-11-20T10:00:00.500000Z",
    "2026-11-20T10:00:01Z",
    "2026-11-20T09:59:59.999999+02:00",
    "2018-10-26T13:38:34Z",
    "2022-12-01 20:27:06",
    "9999-12-31T23:59:59.999999Z",
    "0000-01-01T00:00:00Z",
];

/// Times that are no times: their events are rejected (`invalid_time`).
const BAD_TIMES: &[&str] = &["<ts>", "", "yesterday", "1700000000", "2026-11-20T10:00:00"];

/// A time: valid mostly, rarely one of [`BAD_TIMES`] or a weird string
/// (every bad one costs its event, so they must stay rare).
fn time_field() -> BoxedStrategy<Option<Value>> {
    field(
        prop_oneof![
            40 => pick(TIMES).prop_map(Value::from),
            1 => pick(BAD_TIMES).prop_map(Value::from),
            1 => weird_string().prop_map(Value::from),
        ]
        .boxed(),
    )
}
const POINTERS: &[&str] = &[
    "/spec/replicas",
    "/spec/template/spec/containers/0/image",
    "/spec/template/spec/containers/-",
    "/metadata/labels/app.kubernetes.io~1managed-by",
    "/metadata/annotations/argocd.argoproj.io~1tracking-id",
    "/metadata/resourceVersion",
    "/status/phase",
    "/data/password",
    "/data",
    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
    "",
    "/",
    "/~2/~",
    "/18446744073709551616",
    "-",
];

fn user_info() -> BoxedStrategy<Value> {
    (
        string_field(USERS),
        field(weird_string().prop_map(Value::from).boxed()),
        field(
            prop::collection::vec(pick(GROUPS), 0..4)
                .prop_map(|g| json!(g))
                .boxed(),
        ),
        field(
            prop::collection::vec((key(), prop::collection::vec(weird_string(), 0..3)), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k, json!(v))).collect()))
                .boxed(),
        ),
    )
        .prop_map(|(username, uid, groups, extra)| {
            object([
                ("username", username),
                ("uid", uid),
                ("groups", groups),
                ("extra", extra),
            ])
        })
        .boxed()
}

fn object<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

fn request_uri() -> BoxedStrategy<Value> {
    (
        pick(&[
            "/apis/apps/v1/namespaces/shop/deployments/api",
            "/api/v1/namespaces/shop/pods/web/exec",
            "/api/v1/namespaces/shop/secrets/db-creds",
            "/api/v1/namespaces/shop",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "",
        ]),
        pick(&[
            "",
            "?dryRun=All",
            "?dryRun=All&dryRun=None",
            "?fieldManager=kubectl-edit",
            "?fieldManager=argocd-controller&force=true",
            "?fieldManager=%E2%9C%93%zz%",
            "?fieldManager=kubectl+client+side+apply&fieldManager=helm",
            "?dryRun=%41ll",
            "?&&=&dryRun",
            "?timeout=32s&watch=true",
        ]),
    )
        .prop_map(|(p, q)| Value::from(format!("{p}{q}")))
        .boxed()
}

/// Object metadata, with GitOps ownership markers and controller owners.
fn metadata() -> BoxedStrategy<Value> {
    (
        pick(NAMES),
        pick(NAMESPACES),
        prop::sample::subsequence(
            &[
                ("app.kubernetes.io/instance", "shop"),
                ("app.kubernetes.io/managed-by", "Helm"),
                ("kustomize.toolkit.fluxcd.io/name", "apps"),
                ("helm.toolkit.fluxcd.io/name", "redis"),
                ("team", "a"),
            ][..],
            0..3,
        ),
        prop::sample::subsequence(
            &[
                ("argocd.argoproj.io/tracking-id", "shop:apps/Deployment:shop/api"),
                ("meta.helm.sh/release-name", "redis"),
                ("deployment.kubernetes.io/revision", "3"),
            ][..],
            0..3,
        ),
        any::<bool>(),
        json_value(),
    )
        .prop_map(|(name, ns, labels, annotations, owned, junk)| {
            let mut m = json!({
                "name": name,
                "namespace": ns,
                "uid": format!("uid-{name}"),
                "resourceVersion": "12345",
                "labels": labels.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "annotations": annotations.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "managedFields": [{"manager": "kubectl-edit", "operation": "Update"}],
            });
            if owned {
                m["ownerReferences"] = json!([{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5d4f",
                    "uid": "rs-uid", "controller": true
                }]);
            }
            if junk.is_object() {
                m["extraField"] = junk;
            }
            m
        })
        .boxed()
}

fn json_patch() -> BoxedStrategy<Value> {
    prop::collection::vec(
        (
            field(
                pick(&["add", "replace", "remove", "copy", "move", "test", "bogus"])
                    .prop_map(Value::from)
                    .boxed(),
            ),
            field(
                prop_oneof![4 => pick(POINTERS), 1 => weird_string()]
                    .prop_map(Value::from)
                    .boxed(),
            ),
            field(json_value()),
            field(pick(POINTERS).prop_map(Value::from).boxed()),
        )
            .prop_map(|(op, path, value, from)| {
                object([("op", op), ("path", path), ("value", value), ("from", from)])
            }),
        0..6,
    )
    .prop_map(Value::Array)
    .boxed()
}

/// Merge and strategic-merge patches: nested objects, keyed lists and
/// directives.
fn merge_patch() -> BoxedStrategy<Value> {
    let container = (pick(&["app", "side", ""]), json_value(), any::<bool>()).prop_map(
        |(name, image, delete)| {
            let mut c = json!({"name": name, "image": image});
            if delete {
                c["$patch"] = json!("delete");
            }
            c
        },
    );
    (
        prop::collection::vec(container, 0..4),
        field(json!({"$patch": "replace", "a": "b"}).pipe_just()),
        field(json!(["spec", "metadata"]).pipe_just()),
        any::<i64>(),
        field(metadata()),
        field(json_value()),
        field(
            pick(&["delete", "replace", "merge", "bogus"])
                .prop_map(Value::from)
                .boxed(),
        ),
    )
        .prop_map(
            |(containers, labels, retain, replicas, meta, status, directive)| {
                let mut spec = json!({
                    "replicas": replicas,
                    "template": {"spec": {
                        "$setElementOrder/containers": containers.iter()
                            .map(|c| json!({"name": c["name"]})).collect::<Vec<_>>(),
                        "containers": containers,
                    }},
                });
                if let Some(d) = directive {
                    spec["$patch"] = d;
                }
                object([
                    ("spec", Some(spec)),
                    (
                        "metadata",
                        meta.map(|mut m| {
                            if let (Some(l), Some(map)) = (labels, m.as_object_mut()) {
                                map.insert("labels".to_owned(), l);
                            }
                            m
                        }),
                    ),
                    ("$retainKeys", retain),
                    ("status", status),
                ])
            },
        )
        .boxed()
}

/// A whole object (create/update bodies, responses), maybe a server-side
/// apply document.
fn whole_object() -> BoxedStrategy<Value> {
    (
        pick(&["Deployment", "ConfigMap", "Pod", "Namespace", "Status"]),
        metadata(),
        field(json_value()),
        field(json_value()),
    )
        .prop_map(|(kind, meta, spec, status)| {
            let mut o = object([("spec", spec), ("status", status)]);
            o["apiVersion"] = json!("v1");
            o["kind"] = json!(kind);
            o["metadata"] = meta;
            o
        })
        .boxed()
}

/// Nested arrays or objects past serde_json's recursion limit (128).
fn deep() -> BoxedStrategy<Value> {
    (100usize..400, any::<bool>())
        .prop_map(|(depth, arrays)| {
            let mut v = json!(1);
            for _ in 0..depth {
                v = if arrays {
                    json!([v])
                } else {
                    json!({"spec": v})
                };
            }
            v
        })
        .boxed()
}

fn body_object() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        2 => Just(None),
        3 => json_patch().prop_map(Some),
        3 => merge_patch().prop_map(Some),
        3 => whole_object().prop_map(Some),
        1 => deep().prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
    .boxed()
}

trait PipeJust {
    fn pipe_just(self) -> BoxedStrategy<Value>;
}

impl PipeJust for Value {
    fn pipe_just(self) -> BoxedStrategy<Value> {
        Just(self).boxed()
    }
}

/// A near-valid audit event: every field valid most of the time, missing
/// or of another type sometimes.
fn audit_event() -> BoxedStrategy<Value> {
    let identity = (
        field(user_info()),
        prop_oneof![3 => Just(None), 1 => user_info().prop_map(Some)],
        field(
            prop::collection::vec(
                prop_oneof![4 => pick(SOURCE_IPS), 1 => weird_string()],
                0..3,
            )
            .prop_map(|v| json!(v))
            .boxed(),
        ),
        string_field(USER_AGENTS),
    );
    let object_ref = field(
        (
            string_field(RESOURCES),
            string_field(NAMESPACES),
            string_field(NAMES),
            string_field(API_GROUPS),
            string_field(&["v1", "v1beta1"]),
            prop_oneof![3 => Just(None), 2 => string_field(SUBRESOURCES)],
            field(weird_string().prop_map(Value::from).boxed()),
        )
            .prop_map(|(resource, namespace, name, group, version, sub, uid)| {
                object([
                    ("resource", resource),
                    ("namespace", namespace),
                    ("name", name),
                    ("apiGroup", group),
                    ("apiVersion", version),
                    ("subresource", sub),
                    ("uid", uid),
                ])
            })
            .boxed(),
    );
    let status = field(
        (
            field(
                prop_oneof![
                    4 => prop::sample::select(&[101i64, 200, 200, 200, 201, 204, 403, 404, 409, 500][..]),
                    1 => any::<i64>(),
                ]
                .prop_map(Value::from)
                .boxed(),
            ),
            string_field(&["Success", "Failure"]),
        )
            .prop_map(|(code, status)| object([("code", code), ("status", status)]))
            .boxed(),
    );
    let head = (
        prop_oneof![6 => Just(None), 1 => string_field(&["Event", "EventList", "Pod"])],
        string_field(&["audit.k8s.io/v1", "audit.k8s.io/v1beta1"]),
        string_field(&["Metadata", "Request", "RequestResponse"]),
        field(
            prop_oneof![4 => (0u32..50).prop_map(|n| format!("id-{n}")), 1 => weird_string()]
                .prop_map(Value::from)
                .boxed(),
        ),
        string_field(STAGES),
        field(request_uri()),
        string_field(VERBS),
    );
    let times = (
        time_field(),
        time_field(),
        prop_oneof![3 => Just(None), 1 => time_field()],
    );
    (
        head,
        identity,
        object_ref,
        status,
        body_object(),
        body_object(),
        times,
    )
        .prop_map(
            |(
                (kind, api_version, level, audit_id, stage, uri, verb),
                (user, impersonated, ips, ua),
                object_ref,
                status,
                request,
                response,
                (received, staged, legacy),
            )| {
                let mut e = object([
                    ("kind", kind),
                    ("apiVersion", api_version),
                    ("level", level),
                    ("auditID", audit_id),
                    ("stage", stage),
                    ("requestURI", uri),
                    ("verb", verb),
                    ("user", user),
                    ("impersonatedUser", impersonated),
                    ("sourceIPs", ips),
                    ("userAgent", ua),
                    ("objectRef", object_ref),
                    ("responseStatus", status),
                    ("requestReceivedTimestamp", received),
                    ("stageTimestamp", staged),
                    ("timestamp", legacy),
                ]);
                if let Some(r) = request {
                    e["requestObject"] = r;
                }
                if let Some(r) = response {
                    e["responseObject"] = r;
                }
                e
            },
        )
        .boxed()
}

/// exec, attach, port-forward, debug or proxy, over SPDY or WebSocket; the
/// rest of the event as random as any other.
fn interactive_event() -> BoxedStrategy<Value> {
    (
        audit_event(),
        pick(&[
            "exec",
            "attach",
            "portforward",
            "ephemeralcontainers",
            "proxy",
        ]),
        pick(&["get", "create", "patch", "update"]),
        pick(&["ResponseStarted", "ResponseComplete"]),
        prop::sample::select(&[101i64, 200, 403][..]),
    )
        .prop_map(|(mut e, sub, verb, stage, code)| {
            if let Some(map) = e.as_object_mut() {
                map.insert(
                    "objectRef".to_owned(),
                    json!({"resource": "pods", "namespace": "shop", "name": "web",
                           "subresource": sub, "apiVersion": "v1"}),
                );
                map.insert("verb".to_owned(), json!(verb));
                map.insert("stage".to_owned(), json!(stage));
                map.insert("responseStatus".to_owned(), json!({"code": code}));
            }
            e
        })
        .boxed()
}

/// A secret value as it appears in a Secret: alone, or inside a longer value.
fn secret_value() -> BoxedStrategy<Value> {
    (
        pick(&["", "prefix-", "é\"\\\n"]),
        pick(&["", "-suffix", "=="]),
    )
        .prop_map(|(a, b)| Value::from(format!("{a}{MARKER}{b}")))
        .boxed()
}

fn secret_map() -> BoxedStrategy<Value> {
    prop::collection::vec(
        (
            pick(&["password", "token", "tls.key", "a/b", "~1"]),
            secret_value(),
        ),
        1..3,
    )
    .prop_map(|kv| Value::Object(kv.into_iter().collect()))
    .boxed()
}

/// The last-applied annotation of a client-side `kubectl apply`: the whole
/// object, secret values included, as a JSON string.
fn last_applied() -> BoxedStrategy<Value> {
    secret_map()
        .prop_map(|data| {
            Value::from(json!({"apiVersion": "v1", "kind": "Secret", "data": data}).to_string())
        })
        .boxed()
}

fn secret_object() -> BoxedStrategy<Value> {
    (
        pick(&["db-creds", "api"]),
        pick(&["shop", "kube-system"]),
        field(secret_map()),
        field(secret_map()),
        field(last_applied()),
        any::<bool>(),
    )
        .prop_map(|(name, ns, data, string_data, applied, helm)| {
            let mut annotations = serde_json::Map::new();
            if let Some(a) = applied {
                annotations.insert(LAST_APPLIED.to_owned(), a);
            }
            if helm {
                annotations.insert("meta.helm.sh/release-name".to_owned(), json!("shop"));
            }
            let mut o = object([("data", data), ("stringData", string_data)]);
            o["apiVersion"] = json!("v1");
            o["kind"] = json!("Secret");
            o["type"] = json!("Opaque");
            o["metadata"] = json!({
                "name": name, "namespace": ns, "uid": format!("uid-{name}"),
                "resourceVersion": "7", "annotations": annotations,
            });
            o
        })
        .boxed()
}

/// How a change to a Secret can carry its values: every patch shape.
fn secret_body() -> BoxedStrategy<Value> {
    // Each path with the values a successful request can put there: a
    // Secret's values live in `data` and `stringData`, and are copied into
    // the last-applied annotation.
    let target = prop_oneof![
        (
            pick(&["/data/password", "/stringData/token", "/data/a~1b", "/", ""]),
            secret_value()
        ),
        (pick(&["/data", "/stringData"]), secret_map()),
        (
            Just(
                "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"
                    .to_owned()
            ),
            prop_oneof![last_applied(), secret_value()]
        ),
        (
            Just("/metadata/annotations".to_owned()),
            last_applied().prop_map(|a| json!({ LAST_APPLIED: a }))
        ),
        (
            Just("/metadata".to_owned()),
            last_applied()
                .prop_map(|a| json!({"name": "db-creds", "annotations": { LAST_APPLIED: a }}))
        ),
    ];
    let op = (
        pick(&["add", "replace", "remove", "copy", "move", "test"]),
        target,
    )
        .prop_map(|(op, (path, value))| {
            json!({"op": op, "path": path, "value": value, "from": "/data/password"})
        });
    prop_oneof![
        secret_object(),
        prop::collection::vec(op, 1..4).prop_map(Value::Array),
        secret_map().prop_map(|d| json!({"data": d})),
        secret_map().prop_map(|d| json!({"stringData": d})),
        secret_map().prop_map(|d| json!({"$patch": "replace", "data": d})),
        secret_map().prop_map(|d| json!({"$retainKeys": ["data"], "data": d})),
        secret_map().prop_map(|d| json!({"data": {"$patch": "replace", "inner": d}})),
        last_applied().prop_map(|a| json!({"metadata": {"annotations": { LAST_APPLIED: a }}})),
        secret_map().prop_map(|d| json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db-creds", "namespace": "shop"}, "data": d})),
    ]
    .boxed()
}

/// A change to a Secret whose values hold [`MARKER`]. The resource stays
/// `secrets`; everything else varies.
fn secret_event() -> BoxedStrategy<Value> {
    (
        (0u32..30).prop_map(|n| format!("secret-{n}")),
        pick(&["create", "update", "patch", "delete"]),
        pick(&[
            "ResponseComplete",
            "ResponseComplete",
            "Panic",
            "ResponseStarted",
        ]),
        pick(USERS),
        prop_oneof![3 => Just(None), 1 => pick(USERS).prop_map(Some)],
        pick(USER_AGENTS),
        pick(&["db-creds", "api"]),
        pick(&["shop", "kube-system"]),
        prop::sample::select(&[200i64, 201, 200][..]),
        prop_oneof![1 => Just(None), 3 => secret_body().prop_map(Some)],
        prop_oneof![1 => Just(None), 2 => secret_object().prop_map(Some)],
        pick(TIMES),
    )
        .prop_map(
            |(id, verb, stage, user, imp, ua, name, ns, code, request, response, at)| {
                let mut e = json!({
                    "auditID": id, "stage": stage, "verb": verb, "level": "RequestResponse",
                    "requestURI": format!("/api/v1/namespaces/{ns}/secrets/{name}"),
                    "user": {"username": user, "groups": ["system:authenticated"]},
                    "sourceIPs": ["10.20.1.5"], "userAgent": ua,
                    "objectRef": {"resource": "secrets", "namespace": ns, "name": name,
                                  "apiVersion": "v1"},
                    "responseStatus": {"code": code},
                    "requestReceivedTimestamp": at, "stageTimestamp": at,
                });
                if let Some(imp) = imp {
                    e["impersonatedUser"] = json!({"username": imp});
                }
                if let Some(r) = request {
                    e["requestObject"] = r;
                }
                if let Some(r) = response {
                    e["responseObject"] = r;
                }
                e
            },
        )
        .boxed()
}

/// How the events of one body are written.
#[derive(Debug, Clone, Copy)]
enum Shape {
    EventList,
    Array,
    Lines,
    Pretty,
    Single,
    /// AKS diagnostic records: each event a JSON string in `properties.log`.
    Aks,
    /// An EKS CloudWatch Logs subscription payload: `logEvents[].message`.
    CloudWatch,
    /// A Firehose HTTP endpoint request: `records[].data`, base64 of a
    /// gzipped CloudWatch payload.
    Firehose,
}

/// Damage done to a well-formed body.
#[derive(Debug, Clone)]
struct Damage {
    bom: bool,
    crlf: bool,
    /// Lines inserted at (fraction of the body, text).
    garbage: Vec<(f64, Vec<u8>)>,
    /// Cut the body at this fraction of its length.
    truncate: Option<f64>,
    /// `(event index, "key":value,)` inserted right after the event's `{`.
    duplicate_key: Option<(usize, &'static str)>,
}

fn damage() -> BoxedStrategy<Damage> {
    let garbage_line = prop_oneof![
        pick(&[
            "not json",
            "{\"broken\":",
            "]",
            ",",
            "\"str\"",
            "12345",
            "null",
            "[]",
            "{}",
            "[[[[",
            "{\"kind\":\"EventList\"}",
            "{\"items\":[{\"items\":[]}]}",
            "\u{feff}{}",
        ])
        .prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..24),
        Just(b"\xff\xfe\xc0\xaf\xed\xa0\x80".to_vec()),
    ];
    (
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec((0.0..1.0f64, garbage_line), 1..3),
        ],
        prop_oneof![6 => Just(None), 1 => (0.0..1.0f64).prop_map(Some)],
        prop_oneof![
            4 => Just(None),
            1 => (0usize..8, prop::sample::select(&[
                "\"auditID\":\"dup\",",
                "\"verb\":\"delete\",",
                "\"stage\":\"Panic\",",
                "\"requestObject\":{\"spec\":{\"replicas\":1}},",
                "\"user\":{\"username\":\"system:admin\"},",
                "\"unknown\":[1,2,3],",
            ][..])).prop_map(Some),
        ],
    )
        .prop_map(|(bom, crlf, garbage, truncate, duplicate_key)| Damage {
            bom,
            crlf,
            garbage,
            truncate,
            duplicate_key,
        })
        .boxed()
}

fn shape() -> BoxedStrategy<Shape> {
    prop::sample::select(
        &[
            Shape::EventList,
            Shape::Array,
            Shape::Lines,
            Shape::Pretty,
            Shape::Single,
            Shape::Aks,
            Shape::CloudWatch,
            Shape::Firehose,
        ][..],
    )
    .boxed()
}

fn cloudwatch(texts: &[String]) -> Value {
    json!({
        "messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-1",
        "subscriptionFilters": ["audit"],
        "logEvents": texts.iter().enumerate().map(|(i, t)| json!({
            "id": i.to_string(), "timestamp": 1_700_000_000_000u64, "message": t,
        })).collect::<Vec<_>>(),
    })
}

fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Writes `events` as one body of `shape`, then damages it.
fn render(events: &[Value], shape: Shape, damage: &Damage) -> Vec<u8> {
    let mut texts: Vec<String> = events
        .iter()
        .map(|e| match shape {
            Shape::Pretty => serde_json::to_string_pretty(e).unwrap(),
            _ => e.to_string(),
        })
        .collect();
    if let Some((i, dup)) = damage.duplicate_key
        && !texts.is_empty()
    {
        let i = i % texts.len();
        if texts[i].starts_with('{') {
            texts[i].insert_str(1, dup);
        }
    }
    let mut body = match shape {
        Shape::EventList => format!(
            "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{{}},\"items\":[{}]}}",
            texts.join(",")
        ),
        Shape::Array => format!("[{}]", texts.join(",\n")),
        Shape::Lines | Shape::Pretty => texts.join("\n"),
        Shape::Single => texts.first().cloned().unwrap_or_default(),
        Shape::Aks => json!({"records": texts.iter().map(|t| json!({
            "category": "kube-audit",
            "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "properties": {"log": t, "stream": "stdout", "pod": "kube-apiserver-1"},
        })).collect::<Vec<_>>()})
        .to_string(),
        Shape::CloudWatch => cloudwatch(&texts).to_string(),
        // Empty inside base64 and gzip would be beyond `only_empty_containers`.
        Shape::Firehose if texts.is_empty() => "{\"records\":[]}".to_owned(),
        Shape::Firehose => {
            use base64::Engine as _;
            let data = base64::engine::general_purpose::STANDARD
                .encode(gzip_bytes(cloudwatch(&texts).to_string().as_bytes()));
            json!({"requestId": "r-1", "timestamp": 1_700_000_000_000u64,
                   "records": [{"data": data}]})
            .to_string()
        }
    }
    .into_bytes();
    for (at, line) in &damage.garbage {
        // At a line boundary, so the body stays a sequence of lines.
        let target = (body.len() as f64 * at) as usize;
        let pos = body[..target.min(body.len())]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        let mut inserted = line.clone();
        inserted.push(b'\n');
        body.splice(pos..pos, inserted);
    }
    if damage.crlf {
        body = String::from_utf8_lossy(&body)
            .replace('\n', "\r\n")
            .into_bytes();
    }
    if let Some(at) = damage.truncate {
        body.truncate((body.len() as f64 * at) as usize);
    }
    if damage.bom {
        body.splice(0..0, b"\xEF\xBB\xBF".iter().copied());
    }
    body
}

/// A batch of events, some of them changes to Secrets, some repeated
/// (a redelivery inside the batch, or another stage of the same request).
fn batch_body() -> BoxedStrategy<Body> {
    (
        prop::collection::vec(
            prop_oneof![6 => audit_event(), 1 => interactive_event(), 2 => secret_event()],
            0..7,
        ),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::option::of(pick(&["ResponseStarted", "ResponseComplete", "Panic"])),
            ),
            0..3,
        ),
        shape(),
        damage(),
    )
        .prop_map(|(mut events, repeats, shape, damage)| {
            for (i, stage) in repeats {
                if events.is_empty() {
                    break;
                }
                let mut again = events[i.index(events.len())].clone();
                if let (Some(stage), Some(map)) = (stage, again.as_object_mut()) {
                    map.insert("stage".to_owned(), Value::from(stage));
                }
                events.push(again);
            }
            Body(render(&events, shape, &damage))
        })
        .boxed()
}

/// A body, shown as text when proptest prints a failing case.
#[derive(Clone)]
struct Body(Vec<u8>);

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// Several batches, and which of them first meet a sink that is down.
fn batches() -> BoxedStrategy<Vec<(Body, bool)>> {
    prop::collection::vec((batch_body(), prop::bool::weighted(0.25)), 1..5).boxed()
}

/// Processes `bodies` in order, then redelivers all of them: a redelivered
/// batch must yield no finding.
/// Finding lines with the time of an event that carried none masked: it
/// takes the time it was received, which differs from run to run. Every
/// other time is one of [`TIMES`].
fn without_receipt_times(batches: &[Vec<u8>]) -> Vec<String> {
    let known: BTreeSet<String> = TIMES
        .iter()
        .map(|t| driftwatch::model::time::normalize(t))
        .collect();
    let mut out = Vec::new();
    for line in batches.iter().flat_map(|b| b.split(|&c| c == b'\n')) {
        let Ok(mut f) = serde_json::from_slice::<Value>(line) else {
            out.push(String::from_utf8_lossy(line).into_owned());
            continue;
        };
        if f["time"].as_str().is_some_and(|t| !known.contains(t)) {
            f["time"] = json!("<received>");
        }
        out.push(f.to_string());
    }
    out
}

fn run_batches(h: &mut Harness, bodies: &[(Body, bool)]) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let mut out = Vec::new();
    for (body, fail_first) in bodies {
        out.push(run_body(h, &body.0, *fail_first)?);
    }
    for (body, _) in bodies {
        let again = run_body(h, &body.0, false)?;
        prop_assert!(
            again.is_empty(),
            "a redelivered batch yielded findings: {}",
            String::from_utf8_lossy(&again)
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(proptest_config(512, 0x5eed_0001))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        run_body(&mut Harness::new(None), &body, false)?;
    }

    #[test]
    fn arbitrary_json_never_panics(
        docs in prop::collection::vec(json_value(), 0..5),
        shape in shape(),
        damage in damage(),
    ) {
        run_body(&mut Harness::new(None), &render(&docs, shape, &damage), false)?;
    }
}

proptest! {
    #![proptest_config(proptest_config(256, 0x5eed_0002))]

    /// Near-valid events through the whole pipeline without history.
    #[test]
    fn near_valid_events_keep_the_invariants(bodies in batches()) {
        run_batches(&mut Harness::new(None), &bodies)?;
    }
}

proptest! {
    #![proptest_config(proptest_config(256, 0x5eed_0003))]

    /// The same with the history store, across a restart: a batch
    /// redelivered to a restarted service yields no finding either, and no
    /// secret value reaches the store.
    #[test]
    fn near_valid_events_with_history_and_restart(bodies in batches()) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut harness = Harness::new(Some(store));
        let first = run_batches(&mut harness, &bodies)?;
        drop(harness);

        // The same process as before, run without failures, gives the same
        // findings: a failed delivery left no trace.
        let dir2 = tempfile::tempdir().unwrap();
        let mut clean = Harness::new(Some(Store::open(dir2.path()).unwrap()));
        let clean_bodies: Vec<(Body, bool)> =
            bodies.iter().map(|(b, _)| (b.clone(), false)).collect();
        let reference = run_batches(&mut clean, &clean_bodies)?;
        prop_assert_eq!(
            without_receipt_times(&first),
            without_receipt_times(&reference),
            "failed deliveries changed later findings"
        );
        drop(clean);

        let restarted = Store::open(dir.path()).unwrap();
        let mut harness = Harness::new(Some(restarted));
        for (body, _) in &bodies {
            let again = run_body(&mut harness, &body.0, false)?;
            prop_assert!(
                again.is_empty(),
                "redelivery after a restart yielded findings: {}",
                String::from_utf8_lossy(&again)
            );
        }
        drop(harness);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            prop_assert!(
                !contains(&bytes, MARKER.as_bytes()),
                "a secret value reached the store ({})",
                path.display()
            );
        }
    }
}

// Regression cases found by the properties and by fuzzing, and the
// boundaries the properties rely on.

/// Regression (found by the wrong-types case below): serde's derived
/// `Deserialize` for a struct also accepts a JSON array of its fields in
/// declaration order, so `"objectRef": ["secrets"]` read as a Secret and
/// `[[null,null,null,"id","ResponseComplete",null,"delete"]]` as an audit
/// event. No API server writes those: they are rejected.
#[test]
fn arrays_are_not_audit_objects() {
    let mut e = json!({"auditID": "a", "stage": "ResponseComplete", "verb": "delete",
                       "responseStatus": {"code": 200}});
    e["objectRef"] = json!(["secrets", "shop", "db"]);
    let bodies = [
        ("objectRef as an array", e.to_string()),
        (
            "an event as an array",
            r#"[[null,null,null,"id","ResponseComplete",null,"delete"]]"#.to_owned(),
        ),
        (
            "user as an array",
            r#"{"auditID":"a","stage":"ResponseComplete","verb":"patch","user":["alice"]}"#
                .to_owned(),
        ),
    ];
    let accepted: Vec<&str> = bodies
        .iter()
        .filter(|(_, body)| !decode::decode_bytes(body.as_bytes()).events.is_empty())
        .map(|(what, _)| *what)
        .collect();
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

/// Was an issue: a line cut right after `:` or `[` (a partial write) hid
/// the good event on the next line. The next line parses as the
/// value the cut line was waiting for; then the document either runs to the
/// end of the body (rejected whole, "never closed") or fails on the line
/// after (resumed there). Before the quadratic-time fix in
/// src/decode/body.rs decoding resynced at the line after the broken
/// document's first line, so the event was kept.
#[test]
fn a_line_cut_after_a_colon_does_not_hide_the_next_event() {
    let good = drift_event("good-after-cut").to_string();
    let tail = r#"{"auditID":"b","stage":"ResponseComplete","verb":"get"}"#;
    let mut lost = Vec::new();
    for cut in [r#"{"requestObject":"#, r#"{"requestObject":["#] {
        for (body, expected) in [
            (format!("{cut}\n{good}\n"), 1),
            (format!("{cut}\n{good}\n{tail}\n"), 2),
        ] {
            let d = decode::decode_bytes(body.as_bytes());
            if d.events.len() != expected {
                lost.push(format!(
                    "{cut:?} then {expected} event(s): {} decoded",
                    d.events.len()
                ));
            }
        }
    }
    assert!(lost.is_empty(), "{lost:#?}");
}

#[test]
fn empty_containers_are_documents_without_events() {
    for body in ["[]", "{\"kind\":\"EventList\",\"items\":[]}", "[]\n[]"] {
        let d = decode::decode_bytes(body.as_bytes());
        assert!(d.documents >= 1, "{body}");
        assert!(d.events.is_empty() && d.rejections.is_empty(), "{body}");
    }
    assert_eq!(only_empty_containers(b"[]\n{\"items\":[]}"), Some(true));
    assert_eq!(only_empty_containers(b"{\"records\":[]}"), Some(true));
    assert_eq!(only_empty_containers(b"{}"), Some(false));
}

/// The properties only mean something if their inputs reach the paths
/// that matter: accepted events of every verdict, findings of several types,
/// field changes (on Secrets too), duplicates.
#[test]
fn generators_reach_the_interesting_paths() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::new(proptest_config(200, 0x5eed_0004));
    let mut stats = Stats::default();
    let (mut changes, mut secret_changes) = (0, 0);
    for _ in 0..200 {
        let bodies = batches().new_tree(&mut runner).unwrap().current();
        let mut h = Harness::new(None);
        for (body, _) in &bodies {
            let accepted = h.ingest(&body.0).unwrap();
            for line in h
                .capture
                .take()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let f: Value = serde_json::from_slice(line).unwrap();
                let n = f["changes"].as_array().map_or(0, Vec::len);
                changes += n;
                if f["resource"]["resource"] == "secrets" {
                    secret_changes += n;
                }
            }
            stats.add(&accepted.stats);
        }
    }
    eprintln!("generated: {stats:?}; {changes} changes, {secret_changes} to Secrets");
    assert!(stats.events > 500 && stats.rejected > 100, "{stats:?}");
    assert!(
        stats.verdict(VerdictKind::System) > 20
            && stats.verdict(VerdictKind::Sanctioned) > 20
            && stats.verdict(VerdictKind::Drift) > 100,
        "{stats:?}"
    );
    assert!(stats.deduplicated() > 20, "{stats:?}");
    // The synthetic stream has no pipeline delivering dangerous content and
    // no admission webhook's annotations: risky_pipeline_change has its own
    // scenario tests, denied_change the admission tests.
    assert!(
        FindingType::ALL
            .iter()
            .filter(|t| ![FindingType::RiskyPipelineChange, FindingType::DeniedChange].contains(t))
            .all(|t| stats.findings_of(*t) > 0),
        "every finding type: {stats:?}"
    );
    assert!(
        changes > 50 && secret_changes > 20,
        "{changes} {secret_changes}"
    );
}

// ===========================================================================
// Part 2: an adversarial corpus against the running service.
//
// Every input gets a defined answer (200 with counts, or an error status with
// a JSON error), the service stays up (`/healthz`) and still turns a normal
// batch into its finding afterwards. Peak memory (VmHWM) is checked at the
// end: a bound on memory, not on time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::common::{Answer, Ev, Service, client, gzip, post_bytes};

/// Findings need a pipeline to be out of band from.
const SERVICE_CONFIG: &str = r#"
cluster: adversarial
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
"#;

const MIB: usize = 1024 * 1024;
/// The default `server.max_body_bytes`.
const DEFAULT_LIMIT: usize = 16 * MIB;
/// A generous bound on the service's peak resident memory.
const RSS_BOUND_KIB: u64 = 2 * 1024 * 1024;

/// POSTs a webhook body, with `Content-Encoding: ENCODING` if given.
async fn post(svc: &Service, body: Vec<u8>, encoding: Option<&str>) -> Result<Answer> {
    let header = encoding.map(|e| ("Content-Encoding", e));
    post_bytes(svc, "/audit/webhook", body, header.as_slice()).await
}

/// A human's out-of-band patch: one finding.
fn drift_event(audit_id: &str) -> Value {
    Ev::new(
        "patch",
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-patch",
    )
    .audit_id(audit_id)
    .by("alice@example.com", &["devs", "system:authenticated"])
    .source_ips(&["10.0.0.7"])
    .body(json!({"spec": {"replicas": 5}}))
    .item()
}

/// The event with `"@PLACEHOLDER@"` (the whole JSON string) replaced by raw
/// JSON text that a `Value` cannot hold (too deep, invalid UTF-8...).
fn splice(event: &Value, raw: &[u8]) -> Vec<u8> {
    let text = event.to_string();
    let (a, b) = text
        .split_once("\"@PLACEHOLDER@\"")
        .expect("the event has a placeholder");
    [a.as_bytes(), raw, b.as_bytes()].concat()
}

/// `/healthz` answers and a normal batch still yields its finding.
async fn assert_alive(svc: &Service, after: &str) -> Result<()> {
    let health = client()?.get(svc.url("/healthz")).send().await;
    ensure!(
        health.as_ref().is_ok_and(|r| r.status().is_success()),
        "after {after}: /healthz failed: {health:?}"
    );
    let id = format!("after-{}", after.replace(' ', "-"));
    let body = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                      "items": [drift_event(&id)]});
    let answer = post(svc, serde_json::to_vec(&body)?, None).await?;
    ensure!(
        answer.status == 200 && answer.json["findings"] == json!(1),
        "after {after}: a normal batch was answered {} {}",
        answer.status,
        answer.json
    );
    svc.wait_for_finding(&id)?;
    Ok(())
}

/// Posts one adversarial body; the answer must be one of `expected`, with a
/// JSON error unless it is `200`. Then the service must be alive.
async fn survive(
    svc: &Service,
    what: &str,
    body: Vec<u8>,
    encoding: Option<&str>,
    expected: &[u16],
) -> Result<Answer> {
    let size = body.len();
    let started = Instant::now();
    let answer = post(svc, body, encoding)
        .await
        .with_context(|| format!("{what}: no answer"))?;
    eprintln!(
        "adversarial: {what}: {size} bytes -> {} in {:.2?}; rss {} KiB",
        answer.status,
        started.elapsed(),
        svc.status_kib("VmRSS").unwrap_or(0),
    );
    ensure!(
        expected.contains(&answer.status),
        "{what}: answered {} (expected one of {expected:?}): {:.500}",
        answer.status,
        answer.json.to_string()
    );
    if answer.status != 200 {
        ensure!(
            answer.json["error"]
                .as_str()
                .is_some_and(|e| !e.trim().is_empty()),
            "{what}: {} without a JSON error: {}",
            answer.status,
            answer.json
        );
    }
    assert_alive(svc, what).await?;
    Ok(answer)
}

/// A Firehose HTTP endpoint request whose one record is a gzipped CloudWatch
/// payload of about `payload_bytes` of tiny events, base64-encoded: the
/// body is a few MB, what it unpacks to is not.
fn firehose_of_tiny_events(payload_bytes: usize) -> Result<(Vec<u8>, usize)> {
    use base64::Engine as _;
    let mut payload = String::from(r#"{"messageType":"DATA_MESSAGE","logEvents":["#);
    let mut n = 0;
    while payload.len() < payload_bytes {
        if n > 0 {
            payload.push(',');
        }
        payload.push_str(&format!(
            r#"{{"id":"{n}","timestamp":0,"message":"{{\"auditID\":\"{n:x}\",\"stage\":\"ResponseComplete\",\"verb\":\"get\"}}"}}"#
        ));
        n += 1;
    }
    payload.push_str("]}");
    let data = base64::engine::general_purpose::STANDARD.encode(gzip(payload.as_bytes())?);
    let body = json!({"requestId": "r", "timestamp": 0, "records": [{"data": data}]});
    Ok((serde_json::to_vec(&body)?, n))
}

/// A minimal event that decodes: a read, ignored at once.
fn tiny_event(n: usize) -> String {
    format!("{{\"auditID\":\"{n:x}\",\"stage\":\"ResponseComplete\",\"verb\":\"get\"}}\n")
}

/// JSON lines of tiny events, as many as `count` and fit in `limit` bytes.
fn tiny_events(count: usize, limit: usize) -> (Vec<u8>, usize) {
    let mut body = Vec::with_capacity(count.min(limit / 40) * 60);
    let mut n = 0;
    while n < count {
        let line = tiny_event(n);
        if body.len() + line.len() > limit {
            break;
        }
        body.extend_from_slice(line.as_bytes());
        n += 1;
    }
    (body, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_survives_the_adversarial_corpus() -> Result<()> {
    let svc = Service::start(Some(SERVICE_CONFIG))?;
    assert_alive(&svc, "start").await?;
    let deep = 100_000;

    // Deep nesting: inside requestObject the event is still one event; at
    // the top level, and inside an EventList item, it is refused.
    let nested = ["[".repeat(deep), "]".repeat(deep)].concat();
    let mut e = drift_event("deep-request-object");
    e["requestObject"] = json!("@PLACEHOLDER@");
    let a = survive(
        &svc,
        "100k nested arrays in requestObject",
        splice(&e, nested.as_bytes()),
        None,
        &[200],
    )
    .await?;
    ensure!(a.json["events"] == json!(1), "{}", a.json);
    let objects = ["{\"spec\":".repeat(deep), "1".to_owned(), "}".repeat(deep)].concat();
    e["requestObject"] = json!("@PLACEHOLDER@");
    e["auditID"] = json!("deep-request-objects");
    survive(
        &svc,
        "100k nested objects in requestObject",
        splice(&e, objects.as_bytes()),
        None,
        &[200],
    )
    .await?;
    survive(
        &svc,
        "100k nested arrays at the top level",
        nested.clone().into_bytes(),
        None,
        &[400],
    )
    .await?;
    survive(
        &svc,
        "100k nested objects at the top level",
        objects.clone().into_bytes(),
        None,
        &[400],
    )
    .await?;
    survive(
        &svc,
        "100k unclosed arrays",
        "[".repeat(deep).into_bytes(),
        None,
        &[400],
    )
    .await?;
    survive(
        &svc,
        "100k nested arrays as an EventList item",
        format!("{{\"items\":[{nested}]}}").into_bytes(),
        None,
        &[400],
    )
    .await?;

    // 10 MB strings: a user agent, an escaped value in the patch, a key,
    // a percent-encoded field manager. Each makes its event larger than
    // server.max_event_bytes (4 MiB): rejected by name, never stored.
    let ten_mb = 10 * 1000 * 1000;
    let too_large = |a: &Answer, id: &str| {
        let m = a.json["error"].as_str().unwrap_or_default();
        ensure!(
            m.contains("server.max_event_bytes") && m.contains(&format!("auditID \"{id}\"")),
            "{m}"
        );
        Ok(())
    };
    let mut e = drift_event("huge-user-agent");
    e["userAgent"] = json!(format!("kubectl/{}", "x".repeat(ten_mb)));
    let a = survive(
        &svc,
        "10 MB userAgent",
        serde_json::to_vec(&e)?,
        None,
        &[413],
    )
    .await?;
    too_large(&a, "huge-user-agent")?;
    let mut e = drift_event("huge-escaped-value");
    // 15 bytes once escaped: `a\n` `é` `\"` `\\` `\u0001`.
    e["requestObject"] = json!({"data": {"blob": "a\n\u{e9}\"\\\u{1}".repeat(ten_mb / 15)}});
    let a = survive(
        &svc,
        "10 MB escaped string in requestObject",
        serde_json::to_vec(&e)?,
        None,
        &[413],
    )
    .await?;
    too_large(&a, "huge-escaped-value")?;
    let mut e = drift_event("huge-key");
    e["x".repeat(ten_mb)] = json!(1);
    let a = survive(&svc, "10 MB key", serde_json::to_vec(&e)?, None, &[413]).await?;
    too_large(&a, "huge-key")?;
    let mut e = drift_event("huge-field-manager");
    e["requestURI"] = json!(format!(
        "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager={}",
        "%41".repeat(ten_mb / 3)
    ));
    let a = survive(
        &svc,
        "10 MB percent-encoded fieldManager",
        serde_json::to_vec(&e)?,
        None,
        &[413],
    )
    .await?;
    too_large(&a, "huge-field-manager")?;

    // Invalid UTF-8, alone and between good lines; JSON-escaped lone
    // surrogates.
    let bad_lines: [&[u8]; 6] = [
        b"\xff\xfe\xfd",
        b"{\"auditID\":\"\xc0\xaf\",\"stage\":\"ResponseComplete\",\"verb\":\"patch\"}",
        b"{\"auditID\":\"\xed\xa0\x80\",\"stage\":\"ResponseComplete\",\"verb\":\"patch\"}",
        b"{\"auditID\":\"\xe2\x82\",\"stage\":\"ResponseComplete\",\"verb\":\"patch\"}",
        b"{\"auditID\":\"\\ud800\",\"stage\":\"ResponseComplete\",\"verb\":\"patch\"}",
        b"{\"auditID\":\"\\udc00\\ud800x\",\"stage\":\"ResponseComplete\",\"verb\":\"patch\"}",
    ];
    let mut body = Vec::new();
    for line in bad_lines {
        body.extend_from_slice(line);
        body.push(b'\n');
    }
    survive(&svc, "invalid UTF-8 only", body.clone(), None, &[400]).await?;
    body.extend_from_slice(&serde_json::to_vec(&drift_event("after-bad-utf8"))?);
    body.push(b'\n');
    let a = survive(&svc, "invalid UTF-8 around a good line", body, None, &[200]).await?;
    ensure!(
        a.json["events"] == json!(1) && a.json["rejected"].as_array().map(Vec::len) == Some(6),
        "{}",
        a.json
    );

    // Numbers (and other types) where strings belong, and the reverse.
    let wrong: Vec<Value> = [
        ("verb", json!(5)),
        ("auditID", json!(12345)),
        ("stage", json!([])),
        ("requestURI", json!({"path": "/"})),
        ("user", json!("alice")),
        ("sourceIPs", json!("10.0.0.7")),
        ("objectRef", json!("pods")),
        ("objectRef", json!(["pods"])),
        ("user", json!(["alice"])),
        ("responseStatus", json!([200])),
        ("responseStatus", json!({"code": "200"})),
        ("responseStatus", json!({"code": 200.5})),
        ("responseStatus", json!({"code": 1e300})),
        ("requestReceivedTimestamp", json!(1_700_000_000)),
        ("items", json!(5)),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (k, v))| {
        let mut e = drift_event(&format!("wrong-type-{i}"));
        e[k] = v;
        e
    })
    .collect();
    let mut body: Vec<u8> = wrong
        .iter()
        .flat_map(|e| [e.to_string().into_bytes(), b"\n".to_vec()].concat())
        .collect();
    body.extend_from_slice(b"{\"auditID\":\"big\",\"stage\":\"ResponseComplete\",\"verb\":\"patch\",\"responseStatus\":{\"code\":99999999999999999999999}}\n");
    let a = survive(&svc, "wrong types only", body.clone(), None, &[400]).await?;
    ensure!(
        a.json["rejected"].as_array().map(Vec::len) == Some(wrong.len() + 1),
        "every wrong-typed event is rejected: {}",
        a.json
    );
    body.extend_from_slice(&serde_json::to_vec(&drift_event("after-wrong-types"))?);
    let a = survive(&svc, "wrong types around a good line", body, None, &[200]).await?;
    ensure!(a.json["events"] == json!(1), "{}", a.json);

    // Duplicate keys: an event that says `get` and `delete` is not an event;
    // duplicates inside a body are the body's business.
    let e = drift_event("duplicate-verb").to_string();
    let dup = e.replacen("{", "{\"verb\":\"get\",", 1);
    let a = survive(
        &svc,
        "duplicate top-level keys",
        dup.into_bytes(),
        None,
        &[400],
    )
    .await?;
    ensure!(
        a.json["error"]
            .as_str()
            .is_some_and(|m| m.contains("duplicate")),
        "{}",
        a.json
    );
    let mut e = drift_event("duplicate-body-keys");
    e["requestObject"] = json!("@PLACEHOLDER@");
    survive(
        &svc,
        "duplicate keys in requestObject",
        splice(
            &e,
            br#"{"spec":{"replicas":1,"replicas":2},"spec":{"replicas":3}}"#,
        ),
        None,
        &[200],
    )
    .await?;

    // A million tiny events: over the default limit in one batch (413), and
    // as many as fit under it (200).
    let (million, n) = tiny_events(1_000_000, usize::MAX);
    ensure!(n == 1_000_000);
    eprintln!(
        "adversarial: 1M tiny events are {} bytes ({:.1} MiB)",
        million.len(),
        million.len() as f64 / MIB as f64
    );
    let expect: &[u16] = if million.len() > DEFAULT_LIMIT {
        &[413]
    } else {
        &[200]
    };
    survive(&svc, "1M tiny events in one batch", million, None, expect).await?;
    let (fits, n) = tiny_events(1_000_000, DEFAULT_LIMIT);
    let a = survive(
        &svc,
        "tiny events up to the body limit",
        fits,
        None,
        &[200, 413],
    )
    .await?;
    eprintln!("adversarial: {n} tiny events fit in one body under the default limit");
    if a.status == 200 {
        ensure!(a.json["events"] == json!(n), "{n} events: {}", a.json);
    } else {
        // A limit on events per batch (server.max_events_per_batch) refused
        // it: it must say so, and a batch at that limit must pass.
        let message = a.json["error"].as_str().unwrap_or_default();
        let max: usize = message
            .split_once("max_events_per_batch (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .and_then(|(max, _)| max.parse().ok())
            .with_context(|| format!("413 for {n} events does not name the limit: {message}"))?;
        ensure!(max < n, "{message}");
        let (at_limit, m) = tiny_events(max, DEFAULT_LIMIT);
        let a = survive(
            &svc,
            "tiny events at max_events_per_batch",
            at_limit,
            None,
            &[200],
        )
        .await?;
        ensure!(a.json["events"] == json!(m), "{m} events: {}", a.json);
    }
    // A million tiny documents that are not events: each is rejected and
    // counted, only the first few are listed.
    let a = survive(
        &svc,
        "1M empty objects",
        b"{}\n".repeat(1_000_000),
        None,
        &[400],
    )
    .await?;
    ensure!(
        a.json["rejected"].as_array().is_some_and(|r| r.len() <= 20),
        "{:.300}",
        a.json.to_string()
    );

    // Compression: a bomb (1 GiB of whitespace in about 1 MiB), a body that
    // is not gzip, a truncated gzip stream.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        use std::io::Write;
        let chunk = vec![b' '; MIB];
        for _ in 0..1024 {
            enc.write_all(&chunk)?;
        }
    }
    let bomb = enc.finish()?;
    eprintln!("adversarial: gzip bomb is {} bytes", bomb.len());
    survive(&svc, "gzip bomb", bomb, Some("gzip"), &[413]).await?;
    survive(
        &svc,
        "gzip header on a plain body",
        serde_json::to_vec(&drift_event("not-gzip"))?,
        Some("gzip"),
        &[400],
    )
    .await?;
    let mut cut = gzip(&serde_json::to_vec(&drift_event("cut-gzip"))?)?;
    cut.truncate(cut.len() / 2);
    survive(&svc, "truncated gzip", cut, Some("gzip"), &[400]).await?;

    // Bombs inside a cloud envelope: what a body unpacks counts against
    // server.max_body_bytes (16 MiB), like Content-Encoding. A Firehose
    // record that unpacks past it is refused (413, naming the limit); one
    // that stays just under it unpacks to a quarter of a million events,
    // refused by the event limit (413) or accepted (200) where that limit
    // is higher.
    let (body, n) = firehose_of_tiny_events(17 * MIB)?;
    eprintln!(
        "adversarial: Firehose record of {n} events in {} bytes",
        body.len()
    );
    let a = survive(
        &svc,
        "Firehose record past the decompression limit",
        body,
        None,
        &[413],
    )
    .await?;
    ensure!(
        a.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("server.max_body_bytes")),
        "{}",
        a.json
    );
    let (body, n) = firehose_of_tiny_events(15 * MIB)?;
    eprintln!(
        "adversarial: Firehose record of {n} events in {} bytes",
        body.len()
    );
    survive(
        &svc,
        "Firehose record just under the decompression limit",
        body,
        None,
        &[200, 413],
    )
    .await?;

    let hwm = svc.status_kib("VmHWM").context("VmHWM")?;
    let rss = svc.status_kib("VmRSS").context("VmRSS")?;
    eprintln!(
        "adversarial: service peak RSS (VmHWM) {hwm} KiB = {:.0} MiB; RSS now {rss} KiB",
        hwm as f64 / 1024.0
    );
    ensure!(
        hwm < RSS_BOUND_KIB,
        "peak RSS {hwm} KiB over {RSS_BOUND_KIB} KiB"
    );
    let panics: Vec<String> = svc
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("panicked"))
        .cloned()
        .collect();
    ensure!(panics.is_empty(), "the service panicked: {panics:?}");
    let code = svc.stop()?;
    ensure!(code == 0, "the service exited {code} after the corpus");
    Ok(())
}

/// A batch of the most events that fit under the default body limit and a
/// raised event limit: the memory one batch costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_body_of_tiny_events_stays_within_the_memory_bound() -> Result<()> {
    let svc = Service::start(Some(&format!(
        "{SERVICE_CONFIG}server:\n  max_events_per_batch: 1000000\n"
    )))?;
    let before = svc.status_kib("VmRSS").unwrap_or(0);
    let (body, n) = tiny_events(1_000_000, DEFAULT_LIMIT);
    let a = survive(&svc, "a full body of tiny events", body, None, &[200]).await?;
    ensure!(a.json["events"] == json!(n), "{n} events: {}", a.json);
    let hwm = svc.status_kib("VmHWM").context("VmHWM")?;
    eprintln!(
        "adversarial: {n} tiny events in one 16 MiB body: peak RSS {hwm} KiB (from {before} KiB)"
    );
    ensure!(hwm < RSS_BOUND_KIB, "peak RSS {hwm} KiB");
    Ok(())
}

/// Posts `body` (gzipped) and checks that a normal batch sent a second later
/// is still answered within a minute, then that `body` got `expected`.
async fn assert_not_stalled(svc: &Service, what: &str, body: &[u8], expected: u16) -> Result<()> {
    let bomb = gzip(body)?;
    eprintln!(
        "adversarial: {what}: {} bytes, {} gzipped",
        body.len(),
        bomb.len()
    );
    let url = svc.url("/audit/webhook");
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let answer = client()?
            .post(url)
            .header("Content-Encoding", "gzip")
            .body(bomb)
            .send()
            .await;
        anyhow::Ok((answer.map(|r| r.status().as_u16()), started.elapsed()))
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A normal batch behind it must still be answered in good time.
    let normal = tokio::time::timeout(Duration::from_secs(60), assert_alive(svc, what)).await;
    if !matches!(normal, Ok(Ok(()))) {
        slow.abort();
        bail!("a normal batch was not answered within 60 s behind {what}: {normal:?}");
    }
    let (status, took) = slow.await??;
    eprintln!("adversarial: {what}: answered {status:?} in {took:.2?}");
    ensure!(
        matches!(status, Ok(s) if s == expected),
        "{what}: {status:?}, expected {expected}"
    );
    Ok(())
}

/// Regression: a body of lines that each open a bracket and never close it
/// (`[`, `{"requestObject":[`...) took time quadratic in its number of
/// lines: each broken document was parsed to the end of the body (a
/// `RawValue` skips nesting without a depth limit), then decoding resynced
/// at the next line and parsed to the end again. 16 MiB of `[\n` is 8M
/// lines, about 16 KiB gzipped on the wire: the pipeline thread never came
/// back, and every later batch waited behind it. A never-closed document now
/// ends the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclosed_brackets_line_after_line_do_not_stall_the_pipeline() -> Result<()> {
    let svc = Service::start(Some(SERVICE_CONFIG))?;
    let lines = b"[\n".repeat(DEFAULT_LIMIT / 2);
    assert_not_stalled(&svc, "8M lines of '['", &lines, 400).await
}

/// Regression: the same body with one stray closing brace at its end
/// (`[\n` x N, then `}`) stayed quadratic after the fix above: the first
/// document fails with a syntax error at the last line instead of at the end
/// of input, and `after_rejected` (src/decode/body.rs) resynced at the next
/// line, whose document was parsed to the last line again. 32k lines
/// (64 KiB) took 149 s in the fuzz build (release with AddressSanitizer);
/// 16 MiB (8M lines, 16 KiB gzipped) never ended, and every later batch
/// waited behind it. The same held for `{"requestObject":[` lines. Decoding
/// now resumes at the line of the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclosed_brackets_then_a_stray_brace_do_not_stall_the_pipeline() -> Result<()> {
    let svc = Service::start(Some(SERVICE_CONFIG))?;
    let mut lines = b"[\n".repeat(DEFAULT_LIMIT / 2 - 1);
    lines.extend_from_slice(b"}\n");
    assert_not_stalled(&svc, "8M lines of '[' and a '}'", &lines, 400).await
}

/// Regression: per-resource memory was bounded by a count
/// (`history.max_tracked_objects`, 50,000 by default) and not by bytes: the
/// tracker kept the last whole object of every resource it saw, whatever its
/// size (40 creates of 4 MB objects kept 150 MiB; 50,000 would keep 200 GB).
/// It is now bounded by `history.max_tracked_bytes`, and objects past a
/// per-object cap are not kept at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_objects_are_bounded_in_bytes() -> Result<()> {
    // 4 MiB for remembered objects: each may be up to 64 KiB.
    let svc = Service::start(Some(&format!(
        "{SERVICE_CONFIG}history:\n  max_tracked_bytes: 4194304\n"
    )))?;
    assert_alive(&svc, "start").await?;
    let create = |i: usize, name: &str, size: usize| -> Result<Vec<u8>> {
        let mut e = drift_event(&format!("big-object-{i}"));
        e["verb"] = json!("create");
        e["level"] = json!("RequestResponse");
        e["requestURI"] = json!("/api/v1/namespaces/shop/configmaps");
        e["objectRef"] = json!({"resource": "configmaps", "namespace": "shop",
                                "name": name, "apiVersion": "v1"});
        e["requestObject"] = Value::Null;
        e["responseObject"] = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("u-{i}")},
            "data": {"blob": "x".repeat(size)}});
        Ok(serde_json::to_vec(&e)?)
    };
    let mut i = 0;
    let mut send = async |name: String, size: usize| -> Result<()> {
        i += 1;
        let a = post(&svc, create(i, &name, size)?, None).await?;
        ensure!(a.status == 200, "{}", a.json);
        Ok(())
    };
    // The control: big objects for one resource, so that the allocator has
    // seen such bodies before the measurement.
    for _ in 0..40 {
        send("big".to_owned(), 60_000).await?;
    }
    let before = svc.status_kib("VmRSS").context("VmRSS")?;
    // 180 MB of objects under the per-object cap, 80 MB over it, each for
    // its own resource: without a byte bound all of the first would stay.
    for n in 0..3000 {
        send(format!("small-{n}"), 60_000).await?;
    }
    for n in 0..20 {
        send(format!("huge-{n}"), 4_000_000).await?;
    }
    let after = svc.status_kib("VmRSS").context("VmRSS")?;
    let grown = after.saturating_sub(before);
    eprintln!(
        "adversarial: 3000 objects of 60 KB and 20 of 4 MB for 3020 resources: \
         RSS {before} -> {after} KiB (+{grown}) with max_tracked_bytes 4 MiB"
    );
    ensure!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB: remembered objects are not bounded by bytes"
    );
    Ok(())
}
