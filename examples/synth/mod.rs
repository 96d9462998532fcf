//! A synthetic, deterministic Kubernetes audit stream shaped like a real
//! cluster's: shared by `benches/pipeline.rs` and `examples/loadgen.rs`.
//!
//! The mix (per generated request; two-stage requests add a second event):
//! about 55% reads (get/list/watch by kubelets, controllers, Argo CD,
//! monitoring and people), 15% lease/event/endpointslice writes by system
//! identities, 10% controller writes (deployment-controller,
//! replicaset-controller, ...), 10% Argo CD sync patches at `RequestResponse`
//! level with a few KB of bodies, 5% `kubectl` edits/patches, and the rest
//! 403s, dry-runs, Flux applies and WebSocket `exec` (verb `get`, code 101,
//! `ResponseStarted` then `ResponseComplete`). Some mutations also arrive as a
//! `RequestReceived` event with the same `auditID`, usually before, sometimes
//! after. Strings are escaped like Go's `encoding/json` does it (so `&` in a
//! `requestURI` is `\u0026`), and `EventList` items carry no kind/apiVersion,
//! as the API server's webhook sends them.
//!
//! No dependencies: a xorshift64* generator and a small JSON writer.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::rc::Rc;

/// The seed both the bench and the load generator use by default.
pub const DEFAULT_SEED: u64 = 0x6472_6966_7477_6174;

/// A policy that declares the two pipelines the stream contains.
pub const POLICY_YAML: &str = r#"cluster: synth
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
  - name: flux
    users:
      - "system:serviceaccount:flux-system:kustomize-controller"
      - "system:serviceaccount:flux-system:helm-controller"
    user_agents: ["^kustomize-controller/", "^helm-controller/"]
    source_cidrs: ["10.0.0.0/8"]
"#;

// ---------------------------------------------------------------------------
// Randomness

/// xorshift64*, seeded through splitmix64.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// A Kubernetes-style random suffix (`7d9f8b6c5d`, `x7k2p`).
    pub fn suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len).map(|_| char::from(*self.pick(ALPHABET))).collect()
    }

    pub fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// JSON writing, escaped like Go's encoding/json (HTML-safe: & < > escaped)

#[derive(Default)]
pub struct Json {
    out: String,
    first: Vec<bool>,
    after_key: bool,
}

impl Json {
    pub fn new() -> Self {
        Json::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Json {
            out: String::with_capacity(n),
            ..Json::default()
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn sep(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if let Some(first) = self.first.last_mut() {
            if *first {
                *first = false;
            } else {
                self.out.push(',');
            }
        }
    }

    fn escaped(&mut self, s: &str) {
        self.out.push('"');
        // Copy runs of plain characters; escape the rest as Go does.
        let mut run = 0;
        for (i, c) in s.char_indices() {
            let escape = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                '&' | '<' | '>' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => Some(""),
                _ => None,
            };
            if let Some(esc) = escape {
                self.out.push_str(&s[run..i]);
                if esc.is_empty() {
                    let _ = write!(self.out, "\\u{:04x}", u32::from(c));
                } else {
                    self.out.push_str(esc);
                }
                run = i + c.len_utf8();
            }
        }
        self.out.push_str(&s[run..]);
        self.out.push('"');
    }

    pub fn obj(&mut self) -> &mut Self {
        self.sep();
        self.out.push('{');
        self.first.push(true);
        self
    }

    pub fn arr(&mut self) -> &mut Self {
        self.sep();
        self.out.push('[');
        self.first.push(true);
        self
    }

    pub fn end_obj(&mut self) -> &mut Self {
        self.first.pop();
        self.out.push('}');
        self
    }

    pub fn end_arr(&mut self) -> &mut Self {
        self.first.pop();
        self.out.push(']');
        self
    }

    pub fn key(&mut self, k: &str) -> &mut Self {
        self.sep();
        self.escaped(k);
        self.out.push(':');
        self.after_key = true;
        self
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.sep();
        self.escaped(v);
        self
    }

    pub fn num(&mut self, v: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.out, "{v}");
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.sep();
        self.out.push_str(if v { "true" } else { "false" });
        self
    }

    /// Already-encoded JSON.
    pub fn raw(&mut self, v: &str) -> &mut Self {
        self.sep();
        self.out.push_str(v);
        self
    }

    pub fn kv(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k).str(v)
    }

    pub fn kn(&mut self, k: &str, v: i64) -> &mut Self {
        self.key(k).num(v)
    }

    pub fn kb(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k).bool(v)
    }

    pub fn kstrs(&mut self, k: &str, v: &[&str]) -> &mut Self {
        self.key(k).arr();
        for s in v {
            self.str(s);
        }
        self.end_arr()
    }

    pub fn kobj(&mut self, k: &str) -> &mut Self {
        self.key(k).obj()
    }

    pub fn karr(&mut self, k: &str) -> &mut Self {
        self.key(k).arr()
    }

    /// `{"k":"v",...}` from pairs.
    pub fn kmap(&mut self, k: &str, pairs: &[(&str, &str)]) -> &mut Self {
        self.key(k).obj();
        for (a, b) in pairs {
            self.kv(a, b);
        }
        self.end_obj()
    }
}

// ---------------------------------------------------------------------------
// Time

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 with microseconds, as the API server writes it.
pub fn rfc3339_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn rfc3339_secs(us: i64) -> String {
    let s = rfc3339_micros(us);
    format!("{}Z", &s[..19])
}

// ---------------------------------------------------------------------------
// The cluster the stream describes

const K8S_VERSION: &str = "v1.31.2";
const K8S_COMMIT: &str = "5864a46";
const KUBECTL_UA: &str = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46";
const ARGOCD_UA: &str = "argocd-application-controller/v2.13.1+af54ef8 (linux/amd64)";
const FLUX_UA: &str = "kustomize-controller/v1.4.0 (linux/amd64)";
const CONTROL_PLANE_IP: &str = "10.0.0.10";

const NAMESPACES: &[&str] = &[
    "shop",
    "payments",
    "search",
    "checkout",
    "catalog",
    "identity",
    "data",
    "monitoring",
];
const APPS: &[&str] = &[
    "api", "web", "worker", "gateway", "cart", "redis", "indexer", "notifier",
];
const HUMANS: &[(&str, &str)] = &[
    ("alice@example.com", "oidc:platform-team"),
    ("bob@example.com", "oidc:developers"),
    ("carol@example.com", "oidc:developers"),
    ("dave@example.com", "oidc:sre"),
];
const HUMAN_IPS: &[&str] = &["10.20.3.14", "10.20.7.201", "10.20.1.9", "172.16.4.33"];

/// A pre-rendered `user` object and what goes with it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub username: String,
    user_json: Rc<str>,
    user_agent: Rc<str>,
    source_ip: Rc<str>,
    /// `authorization.k8s.io/reason` for an allowed request.
    allow_reason: Rc<str>,
}

fn identity(
    username: &str,
    uid: Option<&str>,
    groups: &[&str],
    extra: &[(&str, &str)],
    user_agent: &str,
    source_ip: &str,
    allow_reason: &str,
) -> Identity {
    let mut j = Json::new();
    j.obj().kv("username", username);
    if let Some(uid) = uid {
        j.kv("uid", uid);
    }
    j.kstrs("groups", groups);
    if !extra.is_empty() {
        j.kobj("extra");
        for (k, v) in extra {
            j.kstrs(k, &[v]);
        }
        j.end_obj();
    }
    j.end_obj();
    Identity {
        username: username.to_owned(),
        user_json: j.finish().into(),
        user_agent: user_agent.into(),
        source_ip: source_ip.into(),
        allow_reason: allow_reason.into(),
    }
}

fn rbac_reason(kind: &str, binding: &str, role: &str, subject: &str) -> String {
    format!("RBAC: allowed by {kind} \"{binding}\" of ClusterRole \"{role}\" to {subject}")
}

fn service_account(
    rng: &mut Rng,
    ns: &str,
    name: &str,
    pod: Option<(&str, &str)>,
    user_agent: &str,
    source_ip: &str,
    reason: &str,
) -> Identity {
    let username = format!("system:serviceaccount:{ns}:{name}");
    let ns_group = format!("system:serviceaccounts:{ns}");
    let uid = rng.uuid();
    let jti = format!("JTI={}", rng.uuid());
    let pod_uid = rng.uuid();
    let node_uid = rng.uuid();
    let mut extra = vec![("authentication.kubernetes.io/credential-id", jti.as_str())];
    if let Some((pod, node)) = pod {
        extra.push(("authentication.kubernetes.io/node-name", node));
        extra.push(("authentication.kubernetes.io/node-uid", &node_uid));
        extra.push(("authentication.kubernetes.io/pod-name", pod));
        extra.push(("authentication.kubernetes.io/pod-uid", &pod_uid));
    }
    identity(
        &username,
        Some(&uid),
        &["system:serviceaccounts", &ns_group, "system:authenticated"],
        &extra,
        user_agent,
        source_ip,
        reason,
    )
}

struct Node {
    name: String,
    ip: String,
    ident: Identity,
}

struct App {
    ns: &'static str,
    name: &'static str,
    rs_hash: String,
    pods: Vec<String>,
    replicas: i64,
    image_tag: String,
    deploy_uid: String,
}

struct Cluster {
    nodes: Vec<Node>,
    apps: Vec<App>,
    controllers: Vec<(&'static str, Identity)>,
    scheduler: Identity,
    kcm: Identity,
    apiserver: Identity,
    argocd: Identity,
    flux: Identity,
    readers: Vec<Identity>,
    humans: Vec<Identity>,
}

impl Cluster {
    fn new(rng: &mut Rng) -> Self {
        let nodes = (0..12)
            .map(|i| {
                let ip = format!("10.0.{}.{}", 1 + i % 3, 20 + i * 7);
                let name = format!("ip-{}.eu-west-1.compute.internal", ip.replace('.', "-"));
                let ua = format!("kubelet/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}");
                let ident = identity(
                    &format!("system:node:{name}"),
                    None,
                    &["system:nodes", "system:authenticated"],
                    &[],
                    &ua,
                    &ip,
                    "",
                );
                Node { name, ip, ident }
            })
            .collect::<Vec<_>>();
        let mut apps = Vec::new();
        for ns in NAMESPACES {
            for name in APPS.iter().take(3 + rng.below(4) as usize) {
                let rs_hash = rng.suffix(10);
                let replicas = rng.range(2, 6) as i64;
                let pods = (0..replicas)
                    .map(|_| format!("{name}-{rs_hash}-{}", rng.suffix(5)))
                    .collect();
                apps.push(App {
                    ns,
                    name,
                    rs_hash,
                    pods,
                    replicas,
                    image_tag: format!("1.{}.{}", rng.range(10, 60), rng.below(10)),
                    deploy_uid: rng.uuid(),
                });
            }
        }
        let kcm_ua = |sa: &str| {
            format!(
                "kube-controller-manager/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}/system:serviceaccount:kube-system:{sa}"
            )
        };
        let controllers = [
            "deployment-controller",
            "replicaset-controller",
            "statefulset-controller",
            "endpointslice-controller",
            "job-controller",
            "generic-garbage-collector",
            "horizontal-pod-autoscaler",
            "daemon-set-controller",
        ]
        .into_iter()
        .map(|sa| {
            let role = format!("system:controller:{sa}");
            let subject = format!("ServiceAccount \"{sa}/kube-system\"");
            let reason = rbac_reason("ClusterRoleBinding", &role, &role, &subject);
            let ident = service_account(
                rng,
                "kube-system",
                sa,
                None,
                &kcm_ua(sa),
                CONTROL_PLANE_IP,
                &reason,
            );
            (sa, ident)
        })
        .collect();
        let scheduler = identity(
            "system:kube-scheduler",
            None,
            &["system:authenticated"],
            &[],
            &format!(
                "kube-scheduler/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}/leader-election"
            ),
            CONTROL_PLANE_IP,
            &rbac_reason(
                "ClusterRoleBinding",
                "system:kube-scheduler",
                "system:kube-scheduler",
                "User \"system:kube-scheduler\"",
            ),
        );
        let kcm = identity(
            "system:kube-controller-manager",
            None,
            &["system:authenticated"],
            &[],
            &format!(
                "kube-controller-manager/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}/leader-election"
            ),
            CONTROL_PLANE_IP,
            &rbac_reason(
                "ClusterRoleBinding",
                "system:kube-controller-manager",
                "system:kube-controller-manager",
                "User \"system:kube-controller-manager\"",
            ),
        );
        let apiserver_uid = rng.uuid();
        let apiserver = identity(
            "system:apiserver",
            Some(&apiserver_uid),
            &["system:authenticated"],
            &[],
            &format!("kube-apiserver/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}"),
            "::1",
            "",
        );
        let argo_node = nodes[4].name.clone();
        let argocd = service_account(
            rng,
            "argocd",
            "argocd-application-controller",
            Some(("argocd-application-controller-0", &argo_node)),
            ARGOCD_UA,
            "10.42.4.17",
            &rbac_reason(
                "ClusterRoleBinding",
                "argocd-application-controller",
                "argocd-application-controller",
                "ServiceAccount \"argocd-application-controller/argocd\"",
            ),
        );
        let flux_node = nodes[7].name.clone();
        let flux_pod = format!("kustomize-controller-{}-{}", rng.suffix(10), rng.suffix(5));
        let flux = service_account(
            rng,
            "flux-system",
            "kustomize-controller",
            Some((&flux_pod, &flux_node)),
            FLUX_UA,
            "10.42.7.33",
            &rbac_reason(
                "ClusterRoleBinding",
                "cluster-reconciler-flux-system",
                "cluster-admin",
                "ServiceAccount \"kustomize-controller/flux-system\"",
            ),
        );
        let mut readers = Vec::new();
        for (ns, sa, ua, ip) in [
            (
                "monitoring",
                "prometheus-k8s",
                "Prometheus/2.54.1",
                "10.42.2.51",
            ),
            (
                "monitoring",
                "kube-state-metrics",
                "kube-state-metrics/v2.13.0 (linux/amd64) kubernetes/7c8d1f2",
                "10.42.1.12",
            ),
            (
                "kube-system",
                "coredns",
                "coredns/v1.11.3 (linux/amd64) kubernetes/0f5aa5b",
                "10.42.0.5",
            ),
            (
                "ingress-nginx",
                "ingress-nginx",
                "nginx-ingress-controller/v1.11.2 (linux/amd64) ingress-nginx/46e76e5",
                "10.42.3.8",
            ),
            (
                "cert-manager",
                "cert-manager",
                "cert-manager-controller/v1.16.1 (linux/amd64) cert-manager/2a2c8ac2e2cc",
                "10.42.5.40",
            ),
        ] {
            let pod = format!("{sa}-{}-{}", rng.suffix(10), rng.suffix(5));
            let node = rng.pick(&nodes).name.clone();
            let reason = rbac_reason(
                "ClusterRoleBinding",
                sa,
                sa,
                &format!("ServiceAccount \"{sa}/{ns}\""),
            );
            readers.push(service_account(
                rng,
                ns,
                sa,
                Some((&pod, &node)),
                ua,
                ip,
                &reason,
            ));
        }
        let humans = HUMANS
            .iter()
            .zip(HUMAN_IPS)
            .map(|((user, group), ip)| {
                identity(
                    user,
                    None,
                    &[group, "system:authenticated"],
                    &[],
                    KUBECTL_UA,
                    ip,
                    &rbac_reason(
                        "RoleBinding",
                        "edit",
                        "edit",
                        &format!("Group \"{group}\" in namespace \"shop\""),
                    ),
                )
            })
            .collect();
        Cluster {
            nodes,
            apps,
            controllers,
            scheduler,
            kcm,
            apiserver,
            argocd,
            flux,
            readers,
            humans,
        }
    }

    fn controller(&self, name: &str) -> &Identity {
        self.controllers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, i)| i)
            .unwrap_or(&self.controllers[0].1)
    }
}

// ---------------------------------------------------------------------------
// One API request, rendered at any of its stages

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
}

impl StageKind {
    fn as_str(self) -> &'static str {
        match self {
            StageKind::RequestReceived => "RequestReceived",
            StageKind::ResponseStarted => "ResponseStarted",
            StageKind::ResponseComplete => "ResponseComplete",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ObjRef {
    resource: &'static str,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    api_group: &'static str,
    api_version: &'static str,
    resource_version: Option<String>,
    subresource: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Request {
    level: &'static str,
    audit_id: String,
    uri: String,
    verb: &'static str,
    user: Identity,
    object_ref: ObjRef,
    code: i64,
    /// Encoded `responseStatus` for a failure; `{"metadata":{},"code":N}` otherwise.
    failure: Option<String>,
    request_object: Option<String>,
    response_object: Option<String>,
    received_us: i64,
    latency_us: i64,
    extra_annotations: Vec<(&'static str, String)>,
}

impl Request {
    fn render(&self, stage: StageKind, out: &mut Json) {
        let j = out;
        j.obj();
        j.kv("level", self.level)
            .kv("auditID", &self.audit_id)
            .kv("stage", stage.as_str())
            .kv("requestURI", &self.uri)
            .kv("verb", self.verb)
            .key("user")
            .raw(&self.user.user_json);
        j.kstrs("sourceIPs", &[&self.user.source_ip])
            .kv("userAgent", &self.user.user_agent);
        let o = &self.object_ref;
        j.kobj("objectRef").kv("resource", o.resource);
        if let Some(ns) = &o.namespace {
            j.kv("namespace", ns);
        }
        if let Some(name) = &o.name {
            j.kv("name", name);
        }
        if let Some(uid) = &o.uid {
            j.kv("uid", uid);
        }
        if !o.api_group.is_empty() {
            j.kv("apiGroup", o.api_group);
        }
        j.kv("apiVersion", o.api_version);
        if let Some(rv) = &o.resource_version {
            j.kv("resourceVersion", rv);
        }
        if let Some(sub) = o.subresource {
            j.kv("subresource", sub);
        }
        j.end_obj();
        if stage != StageKind::RequestReceived {
            match &self.failure {
                Some(status) => {
                    j.key("responseStatus").raw(status);
                }
                None => {
                    j.kobj("responseStatus")
                        .kobj("metadata")
                        .end_obj()
                        .kn("code", self.code)
                        .end_obj();
                }
            }
            if let Some(body) = &self.request_object {
                j.key("requestObject").raw(body);
            }
            if stage == StageKind::ResponseComplete
                && let Some(body) = &self.response_object
            {
                j.key("responseObject").raw(body);
            }
        }
        let stage_us = match stage {
            StageKind::RequestReceived => self.received_us,
            StageKind::ResponseStarted => self.received_us + self.latency_us.min(900),
            StageKind::ResponseComplete => self.received_us + self.latency_us,
        };
        j.kv(
            "requestReceivedTimestamp",
            &rfc3339_micros(self.received_us),
        )
        .kv("stageTimestamp", &rfc3339_micros(stage_us));
        if stage != StageKind::RequestReceived {
            j.kobj("annotations");
            if self.failure.is_some() && self.code == 403 {
                j.kv("authorization.k8s.io/decision", "forbid")
                    .kv("authorization.k8s.io/reason", "");
            } else {
                j.kv("authorization.k8s.io/decision", "allow")
                    .kv("authorization.k8s.io/reason", &self.user.allow_reason);
            }
            for (k, v) in &self.extra_annotations {
                j.kv(k, v);
            }
            j.end_obj();
        }
        j.end_obj();
    }
}

// ---------------------------------------------------------------------------
// The generator

/// What kind of request an event belongs to; counted for the mix report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Noise,
    Controller,
    Argocd,
    Kubectl,
    Forbidden,
    DryRun,
    Flux,
    Exec,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Read,
        Kind::Noise,
        Kind::Controller,
        Kind::Argocd,
        Kind::Kubectl,
        Kind::Forbidden,
        Kind::DryRun,
        Kind::Flux,
        Kind::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Read => "read (get/list/watch)",
            Kind::Noise => "lease/event/endpointslice write",
            Kind::Controller => "controller write",
            Kind::Argocd => "argocd sync patch",
            Kind::Kubectl => "kubectl edit/patch",
            Kind::Forbidden => "403 forbidden",
            Kind::DryRun => "dryRun=All",
            Kind::Flux => "flux apply",
            Kind::Exec => "exec (get, 101)",
        }
    }
}

/// Per-request weights, out of their sum.
const WEIGHTS: &[(Kind, u64)] = &[
    (Kind::Read, 5500),
    (Kind::Noise, 1500),
    (Kind::Controller, 1000),
    (Kind::Argocd, 1000),
    (Kind::Kubectl, 500),
    (Kind::Forbidden, 200),
    (Kind::DryRun, 80),
    (Kind::Flux, 100),
    (Kind::Exec, 40),
];

/// Per mille of mutations that also log a `RequestReceived` event.
const REQUEST_RECEIVED_PER_MILLE: u64 = 100;

/// Counts of generated events.
#[derive(Debug, Clone, Default)]
pub struct Mix {
    pub events: u64,
    pub bytes: u64,
    pub by_kind: [u64; Kind::ALL.len()],
    pub request_received: u64,
}

impl Mix {
    pub fn report(&self) -> String {
        let mut s = format!(
            "{} events, {:.0} bytes/event on average\n",
            self.events,
            self.bytes as f64 / self.events.max(1) as f64
        );
        let pct = |n: u64| 100.0 * n as f64 / self.events.max(1) as f64;
        for (k, n) in Kind::ALL.iter().zip(self.by_kind) {
            let _ = writeln!(s, "  {:<34} {:>6.2}%", k.as_str(), pct(n));
        }
        let _ = writeln!(
            s,
            "  {:<34} {:>6.2}% (included above)",
            "RequestReceived stage copies",
            pct(self.request_received)
        );
        s
    }
}

pub struct Generator {
    rng: Rng,
    cluster: Cluster,
    clock_us: i64,
    resource_version: u64,
    /// Second stages waiting for a later slot: (events to wait, kind, event).
    pending: Vec<(u32, Kind, String)>,
    mix: Mix,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let cluster = Cluster::new(&mut rng);
        Generator {
            rng,
            cluster,
            clock_us: days_from_civil(2026, 11, 20) * 86_400_000_000 + 10 * 3_600_000_000,
            resource_version: 48_213_377,
            pending: Vec::new(),
            mix: Mix::default(),
        }
    }

    pub fn mix(&self) -> &Mix {
        &self.mix
    }

    /// One webhook body: an `EventList` of `n` items, as the API server posts it.
    pub fn event_list(&mut self, n: usize) -> Vec<u8> {
        let mut out = String::with_capacity(n * 1800 + 100);
        out.push_str(
            r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#,
        );
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&self.next_event());
        }
        out.push_str("]}");
        out.into_bytes()
    }

    /// The next event, as an `EventList` item (no kind/apiVersion).
    pub fn next_event(&mut self) -> String {
        // ~4,000 events/s, the default webhook rate of one API server.
        self.clock_us += 150 + self.rng.below(200) as i64;
        if let Some(i) = self.pending.iter().position(|(wait, _, _)| *wait == 0) {
            let (_, kind, event) = self.pending.swap_remove(i);
            self.count(kind, &event);
            return event;
        }
        for (wait, _, _) in &mut self.pending {
            *wait -= 1;
        }
        let kind = self.pick_kind();
        let (req, stages) = self.request(kind);
        let mut first = None;
        for (i, stage) in stages.iter().enumerate() {
            let mut j = Json::with_capacity(2048);
            req.render(*stage, &mut j);
            let text = j.finish();
            if i == 0 {
                first = Some(text);
            } else {
                let wait = self.rng.range(1, 40) as u32;
                self.pending.push((wait, kind, text));
            }
        }
        let event = first.unwrap_or_default();
        self.count(kind, &event);
        event
    }

    fn count(&mut self, kind: Kind, event: &str) {
        self.mix.events += 1;
        self.mix.bytes += event.len() as u64;
        if event.contains(r#""stage":"RequestReceived""#) {
            self.mix.request_received += 1;
        }
        if let Some(i) = Kind::ALL.iter().position(|k| *k == kind) {
            self.mix.by_kind[i] += 1;
        }
    }

    fn pick_kind(&mut self) -> Kind {
        let total: u64 = WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.below(total);
        for (kind, w) in WEIGHTS {
            if r < *w {
                return *kind;
            }
            r -= w;
        }
        Kind::Read
    }

    fn next_rv(&mut self) -> String {
        self.resource_version += 1 + self.rng.below(7);
        self.resource_version.to_string()
    }

    fn base(&mut self, user: &Identity, verb: &'static str, uri: String, o: ObjRef) -> Request {
        let mut latency_us = 300 + self.rng.below(12_000) as i64;
        let mut extra_annotations = Vec::new();
        // Requests slower than 500 ms carry the API server's latency breakdown.
        if verb != "watch" && self.rng.chance(if verb == "list" { 250 } else { 50 }) {
            latency_us = 500_000 + self.rng.below(2_500_000) as i64;
            let ms = |us: i64| format!("{}.{:03}ms", us / 1000, us % 1000);
            let etcd = latency_us * 6 / 10;
            extra_annotations.push(("apiserver.latency.k8s.io/etcd", ms(etcd)));
            extra_annotations.push((
                "apiserver.latency.k8s.io/response-write",
                ms(latency_us / 50),
            ));
            extra_annotations.push((
                "apiserver.latency.k8s.io/serialize-response-object",
                ms(latency_us / 5),
            ));
            extra_annotations.push(("apiserver.latency.k8s.io/total", ms(latency_us)));
            extra_annotations.push((
                "apiserver.latency.k8s.io/transform-response-object",
                ms(latency_us / 100),
            ));
        }
        Request {
            level: "Metadata",
            audit_id: self.rng.uuid(),
            uri,
            verb,
            user: user.clone(),
            object_ref: o,
            code: 200,
            failure: None,
            request_object: None,
            response_object: None,
            received_us: self.clock_us - latency_us,
            latency_us,
            extra_annotations,
        }
    }

    /// A request of `kind` and the stages it is logged at, in delivery order.
    fn request(&mut self, kind: Kind) -> (Request, Vec<StageKind>) {
        use StageKind::*;
        let req = match kind {
            Kind::Read => return self.read(),
            Kind::Noise => self.noise(),
            Kind::Controller => self.controller_write(),
            Kind::Argocd => self.argocd_patch(false),
            Kind::Kubectl => self.kubectl_write(),
            Kind::Forbidden => return (self.forbidden(), vec![ResponseComplete]),
            Kind::DryRun => self.dry_run(),
            Kind::Flux => self.flux_apply(false),
            Kind::Exec => return (self.exec(), vec![ResponseStarted, ResponseComplete]),
        };
        let mutation = matches!(
            kind,
            Kind::Controller | Kind::Argocd | Kind::Kubectl | Kind::Flux
        );
        let stages = if mutation && self.rng.chance(REQUEST_RECEIVED_PER_MILLE) {
            // Usually first; the webhook may also deliver it after.
            if self.rng.chance(800) {
                vec![RequestReceived, ResponseComplete]
            } else {
                vec![ResponseComplete, RequestReceived]
            }
        } else {
            vec![ResponseComplete]
        };
        (req, stages)
    }

    fn app(&mut self) -> usize {
        self.rng.below(self.cluster.apps.len() as u64) as usize
    }

    fn node(&mut self) -> usize {
        self.rng.below(self.cluster.nodes.len() as u64) as usize
    }

    // -- reads ----------------------------------------------------------

    fn read(&mut self) -> (Request, Vec<StageKind>) {
        use StageKind::*;
        let a = self.app();
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
        let rv = self.resource_version.to_string();
        let roll = self.rng.below(100);
        let mut stages = vec![ResponseComplete];
        let req = if roll < 22 {
            // Kubelets: their node, pods' secrets/configmaps, watches.
            let n = self.node();
            let node = &self.cluster.nodes[n];
            let user = node.ident.clone();
            let node_name = node.name.clone();
            match self.rng.below(4) {
                0 => {
                    let uri = format!("/api/v1/nodes/{node_name}?resourceVersion=0&timeout=10s");
                    let o = ObjRef {
                        resource: "nodes",
                        name: Some(node_name),
                        api_version: "v1",
                        ..ObjRef::default()
                    };
                    self.base(&user, "get", uri, o)
                }
                1 => {
                    let secret = format!("{name}-tls");
                    let uri = format!(
                        "/api/v1/namespaces/{ns}/secrets?allowWatchBookmarks=true&fieldSelector=metadata.name%3D{secret}&resourceVersion={rv}&timeout=6m21s&timeoutSeconds=381&watch=true"
                    );
                    let o = ObjRef {
                        resource: "secrets",
                        namespace: Some(ns.to_owned()),
                        name: Some(secret),
                        api_version: "v1",
                        ..ObjRef::default()
                    };
                    stages = vec![ResponseStarted];
                    let mut r = self.base(&user, "watch", uri, o);
                    r.latency_us = 381_000_000;
                    r
                }
                2 => {
                    let uri = format!(
                        "/api/v1/namespaces/{ns}/configmaps?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dkube-root-ca.crt&resourceVersion={rv}&timeout=8m2s&timeoutSeconds=482&watch=true"
                    );
                    let o = ObjRef {
                        resource: "configmaps",
                        namespace: Some(ns.to_owned()),
                        name: Some("kube-root-ca.crt".to_owned()),
                        api_version: "v1",
                        ..ObjRef::default()
                    };
                    stages = vec![ResponseComplete];
                    let mut r = self.base(&user, "watch", uri, o);
                    r.latency_us = 482_000_000;
                    r.received_us -= r.latency_us;
                    r
                }
                _ => {
                    let pod = self.rng.pick(&self.cluster.apps[a].pods).clone();
                    let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}");
                    let o = ObjRef {
                        resource: "pods",
                        namespace: Some(ns.to_owned()),
                        name: Some(pod),
                        api_version: "v1",
                        ..ObjRef::default()
                    };
                    self.base(&user, "get", uri, o)
                }
            }
        } else if roll < 50 {
            // Controllers and operators: lists and watches.
            let user = if self.rng.chance(500) {
                let (_, c) = self.rng.pick(&self.cluster.controllers);
                c.clone()
            } else {
                self.rng.pick(&self.cluster.readers).clone()
            };
            let (resource, group, version, prefix) = *self.rng.pick(&[
                ("pods", "", "v1", "/api/v1"),
                ("deployments", "apps", "v1", "/apis/apps/v1"),
                ("replicasets", "apps", "v1", "/apis/apps/v1"),
                ("services", "", "v1", "/api/v1"),
                (
                    "endpointslices",
                    "discovery.k8s.io",
                    "v1",
                    "/apis/discovery.k8s.io/v1",
                ),
                ("configmaps", "", "v1", "/api/v1"),
                ("nodes", "", "v1", "/api/v1"),
                (
                    "ingresses",
                    "networking.k8s.io",
                    "v1",
                    "/apis/networking.k8s.io/v1",
                ),
            ]);
            let watch = self.rng.chance(600);
            let o = ObjRef {
                resource,
                api_group: group,
                api_version: version,
                ..ObjRef::default()
            };
            if watch {
                let t = self.rng.range(300, 600);
                let uri = format!(
                    "{prefix}/{resource}?allowWatchBookmarks=true&resourceVersion={rv}&timeout={}m{}s&timeoutSeconds={t}&watch=true",
                    t / 60,
                    t % 60
                );
                stages = vec![if self.rng.chance(500) {
                    ResponseStarted
                } else {
                    ResponseComplete
                }];
                let mut r = self.base(&user, "watch", uri, o);
                r.latency_us = t as i64 * 1_000_000;
                r
            } else {
                let uri = format!("{prefix}/{resource}?limit=500&resourceVersion=0");
                self.base(&user, "list", uri, o)
            }
        } else if roll < 62 {
            // Argo CD's cluster cache: watches and gets of managed objects.
            let user = self.cluster.argocd.clone();
            if self.rng.chance(500) {
                let uri = format!(
                    "/apis/apps/v1/namespaces/{ns}/deployments?allowWatchBookmarks=true&resourceVersion={rv}&watch=true"
                );
                let o = ObjRef {
                    resource: "deployments",
                    namespace: Some(ns.to_owned()),
                    api_group: "apps",
                    api_version: "v1",
                    ..ObjRef::default()
                };
                stages = vec![ResponseStarted];
                self.base(&user, "watch", uri, o)
            } else {
                let uri = format!("/api/v1/namespaces/{ns}/configmaps/{name}-config");
                let o = ObjRef {
                    resource: "configmaps",
                    namespace: Some(ns.to_owned()),
                    name: Some(format!("{name}-config")),
                    api_version: "v1",
                    ..ObjRef::default()
                };
                self.base(&user, "get", uri, o)
            }
        } else if roll < 72 {
            // Leader election reads.
            let user = if self.rng.chance(500) {
                self.cluster.scheduler.clone()
            } else {
                self.cluster.kcm.clone()
            };
            let lease = if user.username.contains("scheduler") {
                "kube-scheduler"
            } else {
                "kube-controller-manager"
            };
            let uri = format!(
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}?timeout=5s"
            );
            let o = ObjRef {
                resource: "leases",
                namespace: Some("kube-system".to_owned()),
                name: Some(lease.to_owned()),
                api_group: "coordination.k8s.io",
                api_version: "v1",
                ..ObjRef::default()
            };
            self.base(&user, "get", uri, o)
        } else if roll < 82 {
            // The API server itself, and discovery-ish gets.
            let user = self.cluster.apiserver.clone();
            let uri = format!("/api/v1/namespaces/{ns}");
            let o = ObjRef {
                resource: "namespaces",
                namespace: Some(ns.to_owned()),
                name: Some(ns.to_owned()),
                api_version: "v1",
                ..ObjRef::default()
            };
            self.base(&user, "get", uri, o)
        } else {
            // People: kubectl get/describe/logs.
            let h = self.rng.below(self.cluster.humans.len() as u64) as usize;
            let user = self.cluster.humans[h].clone();
            match self.rng.below(3) {
                0 => {
                    let uri = format!("/api/v1/namespaces/{ns}/pods?limit=500");
                    let o = ObjRef {
                        resource: "pods",
                        namespace: Some(ns.to_owned()),
                        api_version: "v1",
                        ..ObjRef::default()
                    };
                    self.base(&user, "list", uri, o)
                }
                1 => {
                    let uri = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
                    let o = ObjRef {
                        resource: "deployments",
                        namespace: Some(ns.to_owned()),
                        name: Some(name.to_owned()),
                        api_group: "apps",
                        api_version: "v1",
                        ..ObjRef::default()
                    };
                    self.base(&user, "get", uri, o)
                }
                _ => {
                    let pod = self.rng.pick(&self.cluster.apps[a].pods).clone();
                    let uri = format!(
                        "/api/v1/namespaces/{ns}/pods/{pod}/log?container={name}&follow=true&tailLines=100"
                    );
                    let o = ObjRef {
                        resource: "pods",
                        namespace: Some(ns.to_owned()),
                        name: Some(pod),
                        api_version: "v1",
                        subresource: Some("log"),
                        ..ObjRef::default()
                    };
                    self.base(&user, "get", uri, o)
                }
            }
        };
        (req, stages)
    }

    // -- noise ----------------------------------------------------------

    fn noise(&mut self) -> Request {
        let roll = self.rng.below(100);
        let a = self.app();
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
        if roll < 50 {
            // Node heartbeats (every 10 s per node) and leader election.
            let (user, lease_ns, lease) = if roll < 40 {
                let n = self.node();
                let node = &self.cluster.nodes[n];
                (node.ident.clone(), "kube-node-lease", node.name.clone())
            } else if roll < 45 {
                (
                    self.cluster.scheduler.clone(),
                    "kube-system",
                    "kube-scheduler".to_owned(),
                )
            } else {
                (
                    self.cluster.kcm.clone(),
                    "kube-system",
                    "kube-controller-manager".to_owned(),
                )
            };
            let uri = format!(
                "/apis/coordination.k8s.io/v1/namespaces/{lease_ns}/leases/{lease}?timeout=10s"
            );
            let o = ObjRef {
                resource: "leases",
                namespace: Some(lease_ns.to_owned()),
                name: Some(lease),
                uid: Some(self.rng.uuid()),
                api_group: "coordination.k8s.io",
                api_version: "v1",
                resource_version: Some(self.next_rv()),
                ..ObjRef::default()
            };
            self.base(&user, "update", uri, o)
        } else if roll < 80 {
            // Events from kubelets and controllers.
            let pod = self.rng.pick(&self.cluster.apps[a].pods).clone();
            let user = if self.rng.chance(600) {
                let n = self.node();
                self.cluster.nodes[n].ident.clone()
            } else {
                self.cluster.controller("replicaset-controller").clone()
            };
            let event_name = format!("{pod}.{}", self.rng.hex(16));
            let patch = self.rng.chance(300);
            let (verb, uri) = if patch {
                (
                    "patch",
                    format!("/api/v1/namespaces/{ns}/events/{event_name}"),
                )
            } else {
                ("create", format!("/api/v1/namespaces/{ns}/events"))
            };
            let o = ObjRef {
                resource: "events",
                namespace: Some(ns.to_owned()),
                name: Some(event_name),
                api_version: "v1",
                ..ObjRef::default()
            };
            let mut r = self.base(&user, verb, uri, o);
            r.code = if patch { 200 } else { 201 };
            r
        } else {
            let user = self.cluster.controller("endpointslice-controller").clone();
            let slice = format!("{name}-{}", self.rng.suffix(5));
            let uri = format!("/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{slice}");
            let o = ObjRef {
                resource: "endpointslices",
                namespace: Some(ns.to_owned()),
                name: Some(slice),
                uid: Some(self.rng.uuid()),
                api_group: "discovery.k8s.io",
                api_version: "v1",
                resource_version: Some(self.next_rv()),
                ..ObjRef::default()
            };
            self.base(&user, "update", uri, o)
        }
    }

    // -- controllers ----------------------------------------------------

    fn controller_write(&mut self) -> Request {
        let a = self.app();
        let app = &self.cluster.apps[a];
        let (ns, name, rs) = (app.ns, app.name, format!("{}-{}", app.name, app.rs_hash));
        let pod = self.rng.pick(&app.pods).clone();
        let roll = self.rng.below(100);
        let mut r = if roll < 30 {
            let user = self.cluster.controller("deployment-controller").clone();
            let uri = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}/status");
            let o = ObjRef {
                resource: "deployments",
                namespace: Some(ns.to_owned()),
                name: Some(name.to_owned()),
                uid: Some(self.cluster.apps[a].deploy_uid.clone()),
                api_group: "apps",
                api_version: "v1",
                resource_version: Some(self.next_rv()),
                subresource: Some("status"),
            };
            self.base(&user, "update", uri, o)
        } else if roll < 55 {
            let user = self.cluster.controller("replicaset-controller").clone();
            let uri = format!("/apis/apps/v1/namespaces/{ns}/replicasets/{rs}/status");
            let o = ObjRef {
                resource: "replicasets",
                namespace: Some(ns.to_owned()),
                name: Some(rs),
                uid: Some(self.rng.uuid()),
                api_group: "apps",
                api_version: "v1",
                resource_version: Some(self.next_rv()),
                subresource: Some("status"),
            };
            self.base(&user, "update", uri, o)
        } else if roll < 70 {
            let user = self.cluster.controller("replicaset-controller").clone();
            let uri = format!("/api/v1/namespaces/{ns}/pods");
            let o = ObjRef {
                resource: "pods",
                namespace: Some(ns.to_owned()),
                api_version: "v1",
                ..ObjRef::default()
            };
            let mut r = self.base(&user, "create", uri, o);
            r.code = 201;
            r.level = "Request";
            r.request_object = Some(self.pod_body(a));
            r.extra_annotations.push((
                "pod-security.kubernetes.io/enforce-policy",
                "restricted:latest".to_owned(),
            ));
            r
        } else if roll < 80 {
            let user = self.cluster.controller("deployment-controller").clone();
            let uri = format!("/apis/apps/v1/namespaces/{ns}/replicasets/{rs}");
            let o = ObjRef {
                resource: "replicasets",
                namespace: Some(ns.to_owned()),
                name: Some(rs),
                uid: Some(self.rng.uuid()),
                api_group: "apps",
                api_version: "v1",
                resource_version: Some(self.next_rv()),
                ..ObjRef::default()
            };
            self.base(&user, "update", uri, o)
        } else if roll < 90 {
            // Binding a pod: the scheduler.
            let user = self.cluster.scheduler.clone();
            let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}/binding");
            let o = ObjRef {
                resource: "pods",
                namespace: Some(ns.to_owned()),
                name: Some(pod),
                api_version: "v1",
                subresource: Some("binding"),
                ..ObjRef::default()
            };
            let mut r = self.base(&user, "create", uri, o);
            r.code = 201;
            r
        } else {
            // Kubelet pod status, or the garbage collector.
            if self.rng.chance(700) {
                let n = self.node();
                let user = self.cluster.nodes[n].ident.clone();
                let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}/status");
                let o = ObjRef {
                    resource: "pods",
                    namespace: Some(ns.to_owned()),
                    name: Some(pod),
                    api_version: "v1",
                    subresource: Some("status"),
                    ..ObjRef::default()
                };
                self.base(&user, "patch", uri, o)
            } else {
                let user = self.cluster.controller("generic-garbage-collector").clone();
                let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}");
                let o = ObjRef {
                    resource: "pods",
                    namespace: Some(ns.to_owned()),
                    name: Some(pod),
                    api_version: "v1",
                    ..ObjRef::default()
                };
                self.base(&user, "delete", uri, o)
            }
        };
        // Optimistic concurrency: some updates lose the race.
        if r.verb == "update" && self.rng.chance(40) {
            let o = &r.object_ref;
            let what = if o.api_group.is_empty() {
                o.resource.to_owned()
            } else {
                format!("{}.{}", o.resource, o.api_group)
            };
            let msg = format!(
                "Operation cannot be fulfilled on {what} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                o.name.as_deref().unwrap_or("")
            );
            r.code = 409;
            r.failure = Some(status_json(&msg, "Conflict", 409));
        }
        r
    }

    // -- pipelines ------------------------------------------------------

    fn argocd_patch(&mut self, dry_run: bool) -> Request {
        let a = self.app();
        let user = self.cluster.argocd.clone();
        self.pipeline_patch(a, &user, "argocd-controller", dry_run)
    }

    fn flux_apply(&mut self, dry_run: bool) -> Request {
        let a = self.app();
        let user = self.cluster.flux.clone();
        self.pipeline_patch(a, &user, "kustomize-controller", dry_run)
    }

    /// A sync: client-side apply (strategic merge patch with the
    /// last-applied annotation) or server-side apply (the whole object).
    fn pipeline_patch(
        &mut self,
        a: usize,
        user: &Identity,
        manager: &str,
        dry_run: bool,
    ) -> Request {
        let app = &self.cluster.apps[a];
        let (ns, name) = (app.ns, app.name);
        let server_side = manager == "kustomize-controller" || self.rng.chance(300);
        let what = self.rng.below(10);
        let (resource, group, prefix, obj_name) = if what < 6 {
            ("deployments", "apps", "/apis/apps/v1", name.to_owned())
        } else if what < 8 {
            ("configmaps", "", "/api/v1", format!("{name}-config"))
        } else {
            ("services", "", "/api/v1", name.to_owned())
        };
        let mut query = Vec::new();
        if dry_run {
            query.push("dryRun=All".to_owned());
        }
        query.push(format!("fieldManager={manager}"));
        if server_side {
            query.push("force=true".to_owned());
        }
        let uri = format!(
            "{prefix}/namespaces/{ns}/{resource}/{obj_name}?{}",
            query.join("&")
        );
        let rv = self.next_rv();
        let uid = if resource == "deployments" {
            self.cluster.apps[a].deploy_uid.clone()
        } else {
            self.rng.uuid()
        };
        let o = ObjRef {
            resource,
            namespace: Some(ns.to_owned()),
            name: Some(obj_name.clone()),
            api_group: group,
            api_version: "v1",
            ..ObjRef::default()
        };
        let mut r = self.base(user, "patch", uri, o);
        r.level = "RequestResponse";
        r.latency_us += 4_000;
        let manifest = self.manifest(a, resource, &obj_name, manager, false, None, None);
        let request_object = if server_side {
            manifest.clone()
        } else {
            // kubectl's apply library: a three-way strategic merge patch that
            // carries the new last-applied-configuration.
            self.client_side_apply_patch(a, resource, &manifest)
        };
        let live = self.manifest(a, resource, &obj_name, manager, true, Some(&rv), Some(&uid));
        r.request_object = Some(request_object);
        r.response_object = Some(live);
        r
    }

    fn client_side_apply_patch(&mut self, a: usize, resource: &str, manifest: &str) -> String {
        let app = &self.cluster.apps[a];
        let mut j = Json::new();
        j.obj()
            .kobj("metadata")
            .kobj("annotations")
            .kv(
                "kubectl.kubernetes.io/last-applied-configuration",
                &format!("{manifest}\n"),
            )
            .end_obj()
            .end_obj();
        match resource {
            "deployments" => {
                let image = format!(
                    "registry.example.com/{}/{}:{}",
                    app.ns, app.name, app.image_tag
                );
                j.kobj("spec")
                    .kobj("template")
                    .kobj("spec")
                    .karr("$setElementOrder/containers")
                    .obj()
                    .kv("name", app.name)
                    .end_obj()
                    .end_arr()
                    .karr("containers")
                    .obj()
                    .kv("image", &image)
                    .kv("name", app.name)
                    .end_obj()
                    .end_arr()
                    .end_obj()
                    .end_obj()
                    .end_obj();
            }
            "configmaps" => {
                j.kmap(
                    "data",
                    &[
                        ("LOG_LEVEL", "info"),
                        ("FEATURE_FLAGS", "checkout-v2,search-boost"),
                    ],
                );
            }
            _ => {
                j.kobj("spec")
                    .kmap("selector", &[("app.kubernetes.io/name", app.name)])
                    .end_obj();
            }
        }
        j.end_obj();
        j.finish()
    }

    /// A manifest as Git holds it, or (`live`) the object as the API server
    /// returns it: with uid, resourceVersion, managedFields and status.
    #[allow(clippy::too_many_arguments)]
    fn manifest(
        &mut self,
        a: usize,
        resource: &str,
        obj_name: &str,
        manager: &str,
        live: bool,
        rv: Option<&str>,
        uid: Option<&str>,
    ) -> String {
        let app = &self.cluster.apps[a];
        let (ns, name) = (app.ns, app.name);
        let kind = match resource {
            "deployments" => "Deployment",
            "configmaps" => "ConfigMap",
            _ => "Service",
        };
        let api_version = if resource == "deployments" {
            "apps/v1"
        } else {
            "v1"
        };
        let argo = manager == "argocd-controller";
        let now = rfc3339_secs(self.clock_us);
        let created = rfc3339_secs(self.clock_us - 86_400_000_000 * 12);
        let mut j = Json::with_capacity(3000);
        j.obj().kv("apiVersion", api_version).kv("kind", kind);
        j.kobj("metadata");
        if live {
            j.kv("name", obj_name)
                .kv("namespace", ns)
                .kv("uid", uid.unwrap_or(""))
                .kv("resourceVersion", rv.unwrap_or(""));
            if resource == "deployments" {
                j.kn("generation", 40 + self.rng.below(30) as i64);
            }
            j.kv("creationTimestamp", &created);
        } else {
            j.kv("name", obj_name).kv("namespace", ns);
        }
        j.kobj("labels")
            .kv("app.kubernetes.io/name", name)
            .kv("app.kubernetes.io/part-of", ns);
        if argo {
            j.kv("app.kubernetes.io/instance", &format!("{ns}-{name}"));
        } else {
            j.kv("kustomize.toolkit.fluxcd.io/name", ns)
                .kv("kustomize.toolkit.fluxcd.io/namespace", "flux-system");
        }
        j.end_obj();
        j.kobj("annotations");
        if argo {
            j.kv(
                "argocd.argoproj.io/tracking-id",
                &format!(
                    "{ns}-{name}:{}/{kind}:{ns}/{obj_name}",
                    if resource == "deployments" {
                        "apps"
                    } else {
                        ""
                    }
                ),
            );
        }
        if live && resource == "deployments" {
            j.kv("deployment.kubernetes.io/revision", "17");
        }
        j.end_obj();
        if live {
            j.karr("managedFields");
            j.obj()
                .kv("manager", manager)
                .kv("operation", if manager == "kustomize-controller" { "Apply" } else { "Update" })
                .kv("apiVersion", api_version)
                .kv("time", &now)
                .kv("fieldsType", "FieldsV1")
                .key("fieldsV1")
                .raw(match resource {
                    "deployments" => r#"{"f:metadata":{"f:annotations":{".":{},"f:argocd.argoproj.io/tracking-id":{}},"f:labels":{".":{},"f:app.kubernetes.io/instance":{},"f:app.kubernetes.io/name":{},"f:app.kubernetes.io/part-of":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:annotations":{".":{},"f:prometheus.io/port":{},"f:prometheus.io/scrape":{}},"f:labels":{".":{},"f:app.kubernetes.io/name":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{},"f:image":{},"f:name":{},"f:ports":{},"f:readinessProbe":{},"f:resources":{}}},"f:serviceAccountName":{}}}}}"#,
                    "configmaps" => r#"{"f:data":{".":{},"f:FEATURE_FLAGS":{},"f:LOG_LEVEL":{},"f:UPSTREAM_URL":{}},"f:metadata":{"f:annotations":{".":{},"f:argocd.argoproj.io/tracking-id":{}},"f:labels":{".":{},"f:app.kubernetes.io/name":{}}}}"#,
                    _ => r#"{"f:metadata":{"f:labels":{".":{},"f:app.kubernetes.io/name":{}}},"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:name":{},"f:port":{},"f:targetPort":{}}},"f:selector":{}}}"#,
                })
                .end_obj();
            if resource == "deployments" {
                j.obj()
                    .kv("manager", "kube-controller-manager")
                    .kv("operation", "Update")
                    .kv("apiVersion", "apps/v1")
                    .kv("time", &now)
                    .kv("fieldsType", "FieldsV1")
                    .key("fieldsV1")
                    .raw(r#"{"f:metadata":{"f:annotations":{"f:deployment.kubernetes.io/revision":{}}},"f:status":{"f:availableReplicas":{},"f:conditions":{},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{},"f:updatedReplicas":{}}}"#)
                    .kv("subresource", "status")
                    .end_obj();
            }
            j.end_arr();
        }
        j.end_obj();
        match resource {
            "deployments" => {
                let image = format!("registry.example.com/{ns}/{name}:{}", app.image_tag);
                j.kobj("spec")
                    .kn("replicas", app.replicas)
                    .kobj("selector")
                    .kmap("matchLabels", &[("app.kubernetes.io/name", name)])
                    .end_obj();
                if live {
                    j.kobj("strategy")
                        .kv("type", "RollingUpdate")
                        .kobj("rollingUpdate")
                        .kv("maxUnavailable", "25%")
                        .kv("maxSurge", "25%")
                        .end_obj()
                        .end_obj()
                        .kn("revisionHistoryLimit", 10)
                        .kn("progressDeadlineSeconds", 600);
                }
                j.kobj("template")
                    .kobj("metadata")
                    .kmap("labels", &[("app.kubernetes.io/name", name)])
                    .kmap(
                        "annotations",
                        &[
                            ("prometheus.io/scrape", "true"),
                            ("prometheus.io/port", "9090"),
                        ],
                    )
                    .end_obj()
                    .kobj("spec")
                    .kv("serviceAccountName", name)
                    .karr("containers")
                    .obj()
                    .kv("name", name)
                    .kv("image", &image)
                    .karr("ports")
                    .obj()
                    .kv("name", "http")
                    .kn("containerPort", 8080)
                    .kv("protocol", "TCP")
                    .end_obj()
                    .end_arr()
                    .karr("env")
                    .obj()
                    .kv("name", "UPSTREAM_URL")
                    .kv(
                        "value",
                        &format!("http://{name}.{ns}.svc:8080/v1?timeout=5s&retries=3"),
                    )
                    .end_obj()
                    .obj()
                    .kv("name", "GOMAXPROCS")
                    .kv("value", "2")
                    .end_obj()
                    .end_arr()
                    .kobj("resources")
                    .kmap("requests", &[("cpu", "250m"), ("memory", "256Mi")])
                    .kmap("limits", &[("memory", "512Mi")])
                    .end_obj()
                    .kobj("readinessProbe")
                    .kobj("httpGet")
                    .kv("path", "/healthz")
                    .kv("port", "http")
                    .end_obj()
                    .kn("periodSeconds", 10)
                    .end_obj();
                if live {
                    j.kv("terminationMessagePath", "/dev/termination-log")
                        .kv("terminationMessagePolicy", "File")
                        .kv("imagePullPolicy", "IfNotPresent");
                }
                j.end_obj().end_arr();
                if live {
                    j.kv("restartPolicy", "Always")
                        .kn("terminationGracePeriodSeconds", 30)
                        .kv("dnsPolicy", "ClusterFirst")
                        .kv("schedulerName", "default-scheduler");
                }
                j.end_obj().end_obj().end_obj();
                if live {
                    j.kobj("status")
                        .kn("observedGeneration", 52)
                        .kn("replicas", app.replicas)
                        .kn("updatedReplicas", app.replicas)
                        .kn("readyReplicas", app.replicas)
                        .kn("availableReplicas", app.replicas)
                        .karr("conditions")
                        .obj()
                        .kv("type", "Available")
                        .kv("status", "True")
                        .kv("lastUpdateTime", &created)
                        .kv("lastTransitionTime", &created)
                        .kv("reason", "MinimumReplicasAvailable")
                        .kv("message", "Deployment has minimum availability.")
                        .end_obj()
                        .obj()
                        .kv("type", "Progressing")
                        .kv("status", "True")
                        .kv("lastUpdateTime", &now)
                        .kv("lastTransitionTime", &created)
                        .kv("reason", "NewReplicaSetAvailable")
                        .kv(
                            "message",
                            &format!(
                                "ReplicaSet \"{name}-{}\" has successfully progressed.",
                                app.rs_hash
                            ),
                        )
                        .end_obj()
                        .end_arr()
                        .end_obj();
                }
            }
            "configmaps" => {
                j.kmap(
                    "data",
                    &[
                        ("LOG_LEVEL", "info"),
                        ("FEATURE_FLAGS", "checkout-v2,search-boost"),
                        ("UPSTREAM_URL", "http://backend:8080/v1?a=1&b=2"),
                    ],
                );
            }
            _ => {
                j.kobj("spec");
                if live {
                    j.kv("clusterIP", "172.20.41.7")
                        .kstrs("clusterIPs", &["172.20.41.7"])
                        .kv("type", "ClusterIP")
                        .kv("sessionAffinity", "None");
                }
                j.karr("ports")
                    .obj()
                    .kv("name", "http")
                    .kn("port", 80)
                    .kv("protocol", "TCP")
                    .kv("targetPort", "http")
                    .end_obj()
                    .end_arr()
                    .kmap("selector", &[("app.kubernetes.io/name", name)])
                    .end_obj();
            }
        }
        j.end_obj();
        j.finish()
    }

    /// A pod as the ReplicaSet controller creates it.
    fn pod_body(&mut self, a: usize) -> String {
        let app = &self.cluster.apps[a];
        let (ns, name) = (app.ns, app.name);
        let rs = format!("{name}-{}", app.rs_hash);
        let image = format!("registry.example.com/{ns}/{name}:{}", app.image_tag);
        let rs_uid = self.rng.uuid();
        let mut j = Json::with_capacity(1600);
        j.obj()
            .kv("kind", "Pod")
            .kv("apiVersion", "v1")
            .kobj("metadata")
            .kv("generateName", &format!("{rs}-"))
            .kv("namespace", ns)
            .kmap(
                "labels",
                &[
                    ("app.kubernetes.io/name", name),
                    ("pod-template-hash", &app.rs_hash),
                ],
            )
            .kmap(
                "annotations",
                &[
                    ("prometheus.io/scrape", "true"),
                    ("prometheus.io/port", "9090"),
                ],
            )
            .karr("ownerReferences")
            .obj()
            .kv("apiVersion", "apps/v1")
            .kv("kind", "ReplicaSet")
            .kv("name", &rs)
            .kv("uid", &rs_uid)
            .kb("controller", true)
            .kb("blockOwnerDeletion", true)
            .end_obj()
            .end_arr()
            .end_obj()
            .kobj("spec")
            .karr("containers")
            .obj()
            .kv("name", name)
            .kv("image", &image)
            .karr("ports")
            .obj()
            .kv("name", "http")
            .kn("containerPort", 8080)
            .kv("protocol", "TCP")
            .end_obj()
            .end_arr()
            .kobj("resources")
            .kmap("requests", &[("cpu", "250m"), ("memory", "256Mi")])
            .kmap("limits", &[("memory", "512Mi")])
            .end_obj()
            .kv("terminationMessagePath", "/dev/termination-log")
            .kv("terminationMessagePolicy", "File")
            .kv("imagePullPolicy", "IfNotPresent")
            .kobj("securityContext")
            .kb("allowPrivilegeEscalation", false)
            .kb("runAsNonRoot", true)
            .kobj("capabilities")
            .kstrs("drop", &["ALL"])
            .end_obj()
            .end_obj()
            .end_obj()
            .end_arr()
            .kv("restartPolicy", "Always")
            .kn("terminationGracePeriodSeconds", 30)
            .kv("dnsPolicy", "ClusterFirst")
            .kv("serviceAccountName", name)
            .kv("schedulerName", "default-scheduler")
            .karr("tolerations")
            .obj()
            .kv("key", "node.kubernetes.io/not-ready")
            .kv("operator", "Exists")
            .kv("effect", "NoExecute")
            .kn("tolerationSeconds", 300)
            .end_obj()
            .obj()
            .kv("key", "node.kubernetes.io/unreachable")
            .kv("operator", "Exists")
            .kv("effect", "NoExecute")
            .kn("tolerationSeconds", 300)
            .end_obj()
            .end_arr()
            .kv("priorityClassName", "standard")
            .kb("enableServiceLinks", false)
            .end_obj()
            .kobj("status")
            .end_obj()
            .end_obj();
        j.finish()
    }

    // -- people ---------------------------------------------------------

    fn kubectl_write(&mut self) -> Request {
        let a = self.app();
        let h = self.rng.below(self.cluster.humans.len() as u64) as usize;
        let user = self.cluster.humans[h].clone();
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
        let roll = self.rng.below(100);
        let (manager, resource, group, prefix, obj_name, sub, patch) = if roll < 45 {
            // kubectl edit deployment: strategic merge patch.
            let tag = format!("1.{}.{}-hotfix", self.rng.range(10, 60), self.rng.below(10));
            let image = format!("registry.example.com/{ns}/{name}:{tag}");
            let mut j = Json::new();
            j.obj()
                .kobj("spec")
                .kobj("template")
                .kobj("spec")
                .karr("$setElementOrder/containers")
                .obj()
                .kv("name", name)
                .end_obj()
                .end_arr()
                .karr("containers")
                .obj()
                .kv("image", &image)
                .kv("name", name)
                .end_obj()
                .end_arr()
                .end_obj()
                .end_obj()
                .end_obj()
                .end_obj();
            (
                "kubectl-edit",
                "deployments",
                "apps",
                "/apis/apps/v1",
                name.to_owned(),
                None,
                j.finish(),
            )
        } else if roll < 65 {
            // kubectl edit configmap: merge patch.
            let level = *self.rng.pick(&["debug", "trace", "warn"]);
            let mut j = Json::new();
            j.obj().kmap("data", &[("LOG_LEVEL", level)]).end_obj();
            (
                "kubectl-edit",
                "configmaps",
                "",
                "/api/v1",
                format!("{name}-config"),
                None,
                j.finish(),
            )
        } else if roll < 80 {
            // kubectl scale.
            let replicas = self.rng.range(1, 10) as i64;
            let mut j = Json::new();
            j.obj()
                .kobj("spec")
                .kn("replicas", replicas)
                .end_obj()
                .end_obj();
            (
                "kubectl-scale",
                "deployments",
                "apps",
                "/apis/apps/v1",
                name.to_owned(),
                Some("scale"),
                j.finish(),
            )
        } else if roll < 92 {
            // kubectl rollout restart.
            let now = rfc3339_secs(self.clock_us);
            let mut j = Json::new();
            j.obj()
                .kobj("spec")
                .kobj("template")
                .kobj("metadata")
                .kmap(
                    "annotations",
                    &[("kubectl.kubernetes.io/restartedAt", &now)],
                )
                .end_obj()
                .end_obj()
                .end_obj()
                .end_obj();
            (
                "kubectl-rollout",
                "deployments",
                "apps",
                "/apis/apps/v1",
                name.to_owned(),
                None,
                j.finish(),
            )
        } else {
            // kubectl patch --type merge on a secret.
            let mut j = Json::new();
            j.obj()
                .kmap("stringData", &[("API_TOKEN", "hunter2")])
                .end_obj();
            (
                "kubectl-patch",
                "secrets",
                "",
                "/api/v1",
                format!("{name}-credentials"),
                None,
                j.finish(),
            )
        };
        let sub_path = sub.map(|s| format!("/{s}")).unwrap_or_default();
        let uri = format!(
            "{prefix}/namespaces/{ns}/{resource}/{obj_name}{sub_path}?fieldManager={manager}"
        );
        let o = ObjRef {
            resource,
            namespace: Some(ns.to_owned()),
            name: Some(obj_name.clone()),
            api_group: group,
            api_version: "v1",
            subresource: sub,
            ..ObjRef::default()
        };
        let mut r = self.base(&user, "patch", uri, o);
        r.request_object = Some(patch);
        if resource == "secrets" {
            r.level = "Metadata";
            r.request_object = None;
        } else if sub.is_none() && resource == "deployments" {
            r.level = "RequestResponse";
            let rv = self.next_rv();
            let uid = self.cluster.apps[a].deploy_uid.clone();
            r.response_object = Some(self.manifest(
                a,
                resource,
                &obj_name,
                "kubectl-edit",
                true,
                Some(&rv),
                Some(&uid),
            ));
        } else {
            r.level = "Request";
        }
        r
    }

    fn forbidden(&mut self) -> Request {
        let a = self.app();
        let ns = self.cluster.apps[a].ns;
        let name = format!("{}-credentials", self.cluster.apps[a].name);
        let (user, target_ns) = if self.rng.chance(500) {
            let h = self.rng.below(self.cluster.humans.len() as u64) as usize;
            (self.cluster.humans[h].clone(), "kube-system")
        } else {
            (self.rng.pick(&self.cluster.readers).clone(), ns)
        };
        let verb = *self.rng.pick(&["get", "get", "list", "patch", "delete"]);
        let uri = if verb == "list" {
            format!("/api/v1/namespaces/{target_ns}/secrets?limit=500")
        } else {
            format!("/api/v1/namespaces/{target_ns}/secrets/{name}")
        };
        let o = ObjRef {
            resource: "secrets",
            namespace: Some(target_ns.to_owned()),
            name: (verb != "list").then(|| name.clone()),
            api_version: "v1",
            ..ObjRef::default()
        };
        let mut r = self.base(&user, verb, uri, o);
        let msg = format!(
            "secrets \"{name}\" is forbidden: User \"{}\" cannot {verb} resource \"secrets\" in API group \"\" in the namespace \"{target_ns}\"",
            user.username
        );
        r.code = 403;
        r.failure = Some(status_json(&msg, "Forbidden", 403));
        r
    }

    fn dry_run(&mut self) -> Request {
        let roll = self.rng.below(100);
        if roll < 50 {
            // Argo CD server-side diff.
            let a = self.app();
            let user = self.cluster.argocd.clone();
            self.pipeline_patch(a, &user, "argocd-controller", true)
        } else if roll < 85 {
            self.flux_apply(true)
        } else {
            // kubectl diff.
            let a = self.app();
            let h = self.rng.below(self.cluster.humans.len() as u64) as usize;
            let user = self.cluster.humans[h].clone();
            let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
            let uri = format!(
                "/apis/apps/v1/namespaces/{ns}/deployments/{name}?dryRun=All&fieldManager=kubectl-client-side-apply"
            );
            let o = ObjRef {
                resource: "deployments",
                namespace: Some(ns.to_owned()),
                name: Some(name.to_owned()),
                api_group: "apps",
                api_version: "v1",
                ..ObjRef::default()
            };
            let mut r = self.base(&user, "patch", uri, o);
            r.level = "Request";
            r.request_object = Some(r#"{"spec":{"replicas":4}}"#.to_owned());
            r
        }
    }

    fn exec(&mut self) -> Request {
        let a = self.app();
        let h = self.rng.below(self.cluster.humans.len() as u64) as usize;
        let user = self.cluster.humans[h].clone();
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
        let pod = self.rng.pick(&self.cluster.apps[a].pods).clone();
        let uri = format!(
            "/api/v1/namespaces/{ns}/pods/{pod}/exec?command=sh&container={name}&stdin=true&stdout=true&tty=true"
        );
        let o = ObjRef {
            resource: "pods",
            namespace: Some(ns.to_owned()),
            name: Some(pod),
            api_version: "v1",
            subresource: Some("exec"),
            ..ObjRef::default()
        };
        let mut r = self.base(&user, "get", uri, o);
        r.code = 101;
        r.latency_us = 95_000_000;
        r.received_us = self.clock_us - 400;
        r
    }
}

/// A failed request's `responseStatus`.
fn status_json(message: &str, reason: &str, code: i64) -> String {
    let mut j = Json::new();
    j.obj()
        .kobj("metadata")
        .end_obj()
        .kv("status", "Failure")
        .kv("message", message)
        .kv("reason", reason)
        .kn("code", code)
        .end_obj();
    j.finish()
}
