//! A synthetic, deterministic Kubernetes audit stream shaped like a real
//! cluster's: the input of `benches/pipeline.rs`, `examples/loadgen.rs` and
//! `examples/kafka_throughput.rs` (the README's performance figures are
//! measured on it).
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
//! The same seed gives the same bytes, on any machine.

mod bodies;
mod cluster;
mod kinds;
pub(crate) mod request;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::rc::Rc;

use jiff::{SignedDuration, Timestamp};

pub use self::request::{Identity, StageKind};
pub use crate::rng::Rng;
pub use crate::time::{rfc3339_micros, rfc3339_secs};

use self::cluster::Cluster;
use self::request::{ObjRef, Request, Status};

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

    /// The request's weight in the stream, out of [`Kind::TOTAL_WEIGHT`].
    pub fn weight(self) -> u64 {
        match self {
            Kind::Read => 5500,
            Kind::Noise => 1500,
            Kind::Controller => 1000,
            Kind::Argocd => 1000,
            Kind::Kubectl => 500,
            Kind::Forbidden => 200,
            Kind::DryRun => 80,
            Kind::Flux => 100,
            Kind::Exec => 40,
        }
    }

    pub const TOTAL_WEIGHT: u64 = 9920;

    /// Mutations that may also be logged at `RequestReceived`.
    pub fn is_mutation(self) -> bool {
        matches!(
            self,
            Kind::Controller | Kind::Argocd | Kind::Kubectl | Kind::Flux
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per mille of mutations that also log a `RequestReceived` event.
pub const REQUEST_RECEIVED_PER_MILLE: u32 = 100;

/// Counts of generated events (and of the requests they belong to).
#[derive(Debug, Clone, Default)]
pub struct Mix {
    pub events: u64,
    pub bytes: u64,
    /// Events per [`Kind::ALL`] entry.
    pub by_kind: [u64; Kind::ALL.len()],
    pub request_received: u64,
    /// Requests drawn per [`Kind::ALL`] entry (an event may still wait as
    /// the second stage of one).
    pub requests_by_kind: [u64; Kind::ALL.len()],
}

impl Mix {
    pub fn requests(&self) -> u64 {
        self.requests_by_kind.iter().sum()
    }

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

/// An event written ahead of its turn: the second stage of a request.
struct Pending {
    /// Events to let pass first.
    wait: u32,
    kind: Kind,
    stage: StageKind,
    event: String,
}

pub struct Generator {
    rng: Rng,
    cluster: Cluster,
    clock: Timestamp,
    resource_version: u64,
    pending: Vec<Pending>,
    mix: Mix,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        let mut rng = Rng::new(seed);
        let cluster = Cluster::new(&mut rng);
        Generator {
            rng,
            cluster,
            clock: crate::time::utc(2026, 11, 20, 10),
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
        let mut out = Vec::with_capacity(n * 1800 + 100);
        out.extend_from_slice(
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#,
        );
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.next_event().as_bytes());
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// The next event, as an `EventList` item (no kind/apiVersion).
    pub fn next_event(&mut self) -> String {
        self.next_tagged().2
    }

    /// The next event, with the kind of request and the stage it is of.
    pub fn next_tagged(&mut self) -> (Kind, StageKind, String) {
        // ~4,000 events/s, the default webhook rate of one API server.
        self.clock += SignedDuration::from_micros(150 + self.rng.below(200) as i64);
        if let Some(i) = self.pending.iter().position(|p| p.wait == 0) {
            let p = self.pending.swap_remove(i);
            self.count(p.kind, p.stage, &p.event);
            return (p.kind, p.stage, p.event);
        }
        for p in &mut self.pending {
            p.wait -= 1;
        }
        let kind = self.pick_kind();
        self.mix.requests_by_kind[kind.index()] += 1;
        let (req, stages) = self.request(kind);
        let (&first, rest) = stages
            .split_first()
            .unwrap_or((&StageKind::ResponseComplete, &[]));
        for &stage in rest {
            let wait = self.rng.range(1, 40) as u32;
            let event = req.render(stage);
            self.pending.push(Pending {
                wait,
                kind,
                stage,
                event,
            });
        }
        let event = req.render(first);
        self.count(kind, first, &event);
        (kind, first, event)
    }

    fn count(&mut self, kind: Kind, stage: StageKind, event: &str) {
        self.mix.events += 1;
        self.mix.bytes += event.len() as u64;
        if stage == StageKind::RequestReceived {
            self.mix.request_received += 1;
        }
        self.mix.by_kind[kind.index()] += 1;
    }

    fn pick_kind(&mut self) -> Kind {
        let mut r = self.rng.below(Kind::TOTAL_WEIGHT);
        for kind in Kind::ALL {
            if r < kind.weight() {
                return kind;
            }
            r -= kind.weight();
        }
        Kind::Read
    }

    fn next_rv(&mut self) -> String {
        self.resource_version += 1 + self.rng.below(7);
        self.resource_version.to_string()
    }

    /// A successful request by `user`, answered now.
    fn base(&mut self, user: &Rc<Identity>, verb: &'static str, uri: String, o: ObjRef) -> Request {
        let mut latency_us = 300 + self.rng.below(12_000) as i64;
        let mut extra_annotations = Vec::new();
        // Requests slower than 500 ms carry the API server's latency breakdown.
        if verb != "watch" && self.rng.chance(if verb == "list" { 250 } else { 50 }) {
            latency_us = 500_000 + self.rng.below(2_500_000) as i64;
            let ms = |us: i64| format!("{}.{:03}ms", us / 1000, us % 1000);
            extra_annotations = vec![
                ("apiserver.latency.k8s.io/etcd", ms(latency_us * 6 / 10)),
                (
                    "apiserver.latency.k8s.io/response-write",
                    ms(latency_us / 50),
                ),
                (
                    "apiserver.latency.k8s.io/serialize-response-object",
                    ms(latency_us / 5),
                ),
                ("apiserver.latency.k8s.io/total", ms(latency_us)),
                (
                    "apiserver.latency.k8s.io/transform-response-object",
                    ms(latency_us / 100),
                ),
            ];
        }
        let latency = SignedDuration::from_micros(latency_us);
        Request {
            level: "Metadata",
            audit_id: self.rng.uuid(),
            uri,
            verb,
            user: Rc::clone(user),
            object_ref: o,
            status: Status::ok(200),
            request_object: None,
            response_object: None,
            received: self.clock - latency,
            latency,
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
        let stages = if kind.is_mutation() && self.rng.chance(REQUEST_RECEIVED_PER_MILLE) {
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

    fn human(&mut self) -> Rc<Identity> {
        Rc::clone(self.rng.pick(&self.cluster.humans))
    }
}
