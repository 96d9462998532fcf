//! The requests of each [`Kind`](super::Kind), as the clients of a real
//! cluster send them.

use std::rc::Rc;

use jiff::SignedDuration;
use serde_json::json;

use super::bodies::{self, Live};
use super::request::{Identity, ObjRef, Request, StageKind, Status};
use super::{Generator, rfc3339_secs};

const fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

impl Generator {
    // -- reads ----------------------------------------------------------

    pub(super) fn read(&mut self) -> (Request, Vec<StageKind>) {
        use StageKind::*;
        let a = self.app();
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
        let rv = self.resource_version.to_string();
        let roll = self.rng.below(100);
        let mut stages = vec![ResponseComplete];
        let req = if roll < 22 {
            // Kubelets: their node, pods' secrets/configmaps, watches.
            let n = self.node();
            let (user, node_name) = (
                Rc::clone(&self.cluster.nodes[n].ident),
                self.cluster.nodes[n].name.clone(),
            );
            match self.rng.below(4) {
                0 => {
                    let uri = format!("/api/v1/nodes/{node_name}?resourceVersion=0&timeout=10s");
                    self.base(&user, "get", uri, ObjRef::new("nodes", "").name(node_name))
                }
                1 => {
                    let secret = format!("{name}-tls");
                    let uri = format!(
                        "/api/v1/namespaces/{ns}/secrets?allowWatchBookmarks=true&fieldSelector=metadata.name%3D{secret}&resourceVersion={rv}&timeout=6m21s&timeoutSeconds=381&watch=true"
                    );
                    let o = ObjRef::new("secrets", "").ns(ns).name(secret);
                    stages = vec![ResponseStarted];
                    let mut r = self.base(&user, "watch", uri, o);
                    r.latency = secs(381);
                    r
                }
                2 => {
                    let uri = format!(
                        "/api/v1/namespaces/{ns}/configmaps?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dkube-root-ca.crt&resourceVersion={rv}&timeout=8m2s&timeoutSeconds=482&watch=true"
                    );
                    let o = ObjRef::new("configmaps", "")
                        .ns(ns)
                        .name("kube-root-ca.crt");
                    let mut r = self.base(&user, "watch", uri, o);
                    r.latency = secs(482);
                    r.received -= r.latency;
                    r
                }
                _ => {
                    let pod = self.rng.pick(&self.cluster.apps[a].pods).clone();
                    let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}");
                    self.base(&user, "get", uri, ObjRef::new("pods", "").ns(ns).name(pod))
                }
            }
        } else if roll < 50 {
            // Controllers and operators: lists and watches.
            let user = if self.rng.chance(500) {
                Rc::clone(&self.rng.pick(&self.cluster.controllers).1)
            } else {
                Rc::clone(self.rng.pick(&self.cluster.readers))
            };
            let (resource, group, prefix) = *self.rng.pick(&[
                ("pods", "", "/api/v1"),
                ("deployments", "apps", "/apis/apps/v1"),
                ("replicasets", "apps", "/apis/apps/v1"),
                ("services", "", "/api/v1"),
                (
                    "endpointslices",
                    "discovery.k8s.io",
                    "/apis/discovery.k8s.io/v1",
                ),
                ("configmaps", "", "/api/v1"),
                ("nodes", "", "/api/v1"),
                (
                    "ingresses",
                    "networking.k8s.io",
                    "/apis/networking.k8s.io/v1",
                ),
            ]);
            let o = ObjRef::new(resource, group);
            if self.rng.chance(600) {
                let t = self.rng.range(300, 600);
                let uri = format!(
                    "{prefix}/{resource}?allowWatchBookmarks=true&resourceVersion={rv}&timeout={}m{}s&timeoutSeconds={t}&watch=true",
                    t / 60,
                    t % 60
                );
                if self.rng.chance(500) {
                    stages = vec![ResponseStarted];
                }
                let mut r = self.base(&user, "watch", uri, o);
                r.latency = secs(t as i64);
                r
            } else {
                let uri = format!("{prefix}/{resource}?limit=500&resourceVersion=0");
                self.base(&user, "list", uri, o)
            }
        } else if roll < 62 {
            // Argo CD's cluster cache: watches and gets of managed objects.
            let user = Rc::clone(&self.cluster.argocd);
            if self.rng.chance(500) {
                let uri = format!(
                    "/apis/apps/v1/namespaces/{ns}/deployments?allowWatchBookmarks=true&resourceVersion={rv}&watch=true"
                );
                stages = vec![ResponseStarted];
                self.base(
                    &user,
                    "watch",
                    uri,
                    ObjRef::new("deployments", "apps").ns(ns),
                )
            } else {
                let uri = format!("/api/v1/namespaces/{ns}/configmaps/{name}-config");
                let o = ObjRef::new("configmaps", "")
                    .ns(ns)
                    .name(format!("{name}-config"));
                self.base(&user, "get", uri, o)
            }
        } else if roll < 72 {
            // Leader election reads.
            let (user, lease) = if self.rng.chance(500) {
                (Rc::clone(&self.cluster.scheduler), "kube-scheduler")
            } else {
                (Rc::clone(&self.cluster.kcm), "kube-controller-manager")
            };
            let uri = format!(
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}?timeout=5s"
            );
            let o = ObjRef::new("leases", "coordination.k8s.io")
                .ns("kube-system")
                .name(lease);
            self.base(&user, "get", uri, o)
        } else if roll < 82 {
            // The API server itself, and discovery-ish gets.
            let user = Rc::clone(&self.cluster.apiserver);
            let uri = format!("/api/v1/namespaces/{ns}");
            self.base(
                &user,
                "get",
                uri,
                ObjRef::new("namespaces", "").ns(ns).name(ns),
            )
        } else {
            // People: kubectl get/describe/logs.
            let user = self.human();
            match self.rng.below(3) {
                0 => {
                    let uri = format!("/api/v1/namespaces/{ns}/pods?limit=500");
                    self.base(&user, "list", uri, ObjRef::new("pods", "").ns(ns))
                }
                1 => {
                    let uri = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
                    let o = ObjRef::new("deployments", "apps").ns(ns).name(name);
                    self.base(&user, "get", uri, o)
                }
                _ => {
                    let pod = self.rng.pick(&self.cluster.apps[a].pods).clone();
                    let uri = format!(
                        "/api/v1/namespaces/{ns}/pods/{pod}/log?container={name}&follow=true&tailLines=100"
                    );
                    let o = ObjRef::new("pods", "").ns(ns).name(pod).sub("log");
                    self.base(&user, "get", uri, o)
                }
            }
        };
        (req, stages)
    }

    // -- noise ----------------------------------------------------------

    pub(super) fn noise(&mut self) -> Request {
        let roll = self.rng.below(100);
        let a = self.app();
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
        if roll < 50 {
            // Node heartbeats (every 10 s per node) and leader election.
            let (user, lease_ns, lease) = if roll < 40 {
                let n = self.node();
                let node = &self.cluster.nodes[n];
                (Rc::clone(&node.ident), "kube-node-lease", node.name.clone())
            } else if roll < 45 {
                let user = Rc::clone(&self.cluster.scheduler);
                (user, "kube-system", "kube-scheduler".to_owned())
            } else {
                let user = Rc::clone(&self.cluster.kcm);
                (user, "kube-system", "kube-controller-manager".to_owned())
            };
            let uri = format!(
                "/apis/coordination.k8s.io/v1/namespaces/{lease_ns}/leases/{lease}?timeout=10s"
            );
            let o = ObjRef::new("leases", "coordination.k8s.io")
                .ns(lease_ns)
                .name(lease)
                .uid(self.rng.uuid())
                .rv(self.next_rv());
            self.base(&user, "update", uri, o)
        } else if roll < 80 {
            // Events from kubelets and controllers.
            let pod = self.rng.pick(&self.cluster.apps[a].pods).clone();
            let user = if self.rng.chance(600) {
                let n = self.node();
                Rc::clone(&self.cluster.nodes[n].ident)
            } else {
                self.cluster.controller("replicaset-controller")
            };
            let event_name = format!("{pod}.{}", self.rng.hex(16));
            let patch = self.rng.chance(300);
            let (verb, uri) = if patch {
                let uri = format!("/api/v1/namespaces/{ns}/events/{event_name}");
                ("patch", uri)
            } else {
                ("create", format!("/api/v1/namespaces/{ns}/events"))
            };
            let o = ObjRef::new("events", "").ns(ns).name(event_name);
            let mut r = self.base(&user, verb, uri, o);
            r.status = Status::ok(if patch { 200 } else { 201 });
            r
        } else {
            let user = self.cluster.controller("endpointslice-controller");
            let slice = format!("{name}-{}", self.rng.suffix(5));
            let uri = format!("/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{slice}");
            let o = ObjRef::new("endpointslices", "discovery.k8s.io")
                .ns(ns)
                .name(slice)
                .uid(self.rng.uuid())
                .rv(self.next_rv());
            self.base(&user, "update", uri, o)
        }
    }

    // -- controllers ----------------------------------------------------

    pub(super) fn controller_write(&mut self) -> Request {
        let a = self.app();
        let app = &self.cluster.apps[a];
        let (ns, name, rs) = (app.ns, app.name, format!("{}-{}", app.name, app.rs_hash));
        let pod = self.rng.pick(&app.pods).clone();
        let roll = self.rng.below(100);
        let mut r = if roll < 30 {
            let user = self.cluster.controller("deployment-controller");
            let uri = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}/status");
            let o = ObjRef::new("deployments", "apps")
                .ns(ns)
                .name(name)
                .uid(self.cluster.apps[a].deploy_uid.clone())
                .rv(self.next_rv())
                .sub("status");
            self.base(&user, "update", uri, o)
        } else if roll < 55 {
            let user = self.cluster.controller("replicaset-controller");
            let uri = format!("/apis/apps/v1/namespaces/{ns}/replicasets/{rs}/status");
            let o = ObjRef::new("replicasets", "apps")
                .ns(ns)
                .name(rs)
                .uid(self.rng.uuid())
                .rv(self.next_rv())
                .sub("status");
            self.base(&user, "update", uri, o)
        } else if roll < 70 {
            let user = self.cluster.controller("replicaset-controller");
            let uri = format!("/api/v1/namespaces/{ns}/pods");
            let mut r = self.base(&user, "create", uri, ObjRef::new("pods", "").ns(ns));
            r.status = Status::ok(201);
            r.level = "Request";
            r.request_object = Some(bodies::pod(&self.cluster.apps[a], &self.rng.uuid()));
            r.extra_annotations.push((
                "pod-security.kubernetes.io/enforce-policy",
                "restricted:latest".to_owned(),
            ));
            r
        } else if roll < 80 {
            let user = self.cluster.controller("deployment-controller");
            let uri = format!("/apis/apps/v1/namespaces/{ns}/replicasets/{rs}");
            let o = ObjRef::new("replicasets", "apps")
                .ns(ns)
                .name(rs)
                .uid(self.rng.uuid())
                .rv(self.next_rv());
            self.base(&user, "update", uri, o)
        } else if roll < 90 {
            // Binding a pod: the scheduler.
            let user = Rc::clone(&self.cluster.scheduler);
            let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}/binding");
            let o = ObjRef::new("pods", "").ns(ns).name(pod).sub("binding");
            let mut r = self.base(&user, "create", uri, o);
            r.status = Status::ok(201);
            r
        } else if self.rng.chance(700) {
            // Kubelet pod status.
            let n = self.node();
            let user = Rc::clone(&self.cluster.nodes[n].ident);
            let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}/status");
            let o = ObjRef::new("pods", "").ns(ns).name(pod).sub("status");
            self.base(&user, "patch", uri, o)
        } else {
            let user = self.cluster.controller("generic-garbage-collector");
            let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}");
            self.base(
                &user,
                "delete",
                uri,
                ObjRef::new("pods", "").ns(ns).name(pod),
            )
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
            r.status = Status::failure(msg, "Conflict", 409);
        }
        r
    }

    // -- pipelines ------------------------------------------------------

    pub(super) fn argocd_patch(&mut self, dry_run: bool) -> Request {
        let a = self.app();
        let user = Rc::clone(&self.cluster.argocd);
        self.pipeline_patch(a, &user, "argocd-controller", dry_run)
    }

    pub(super) fn flux_apply(&mut self, dry_run: bool) -> Request {
        let a = self.app();
        let user = Rc::clone(&self.cluster.flux);
        self.pipeline_patch(a, &user, "kustomize-controller", dry_run)
    }

    /// A sync: client-side apply (strategic merge patch with the
    /// last-applied annotation) or server-side apply (the whole object).
    fn pipeline_patch(
        &mut self,
        a: usize,
        user: &Rc<Identity>,
        manager: &str,
        dry_run: bool,
    ) -> Request {
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
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
        let o = ObjRef::new(resource, group).ns(ns).name(obj_name.clone());
        let mut r = self.base(user, "patch", uri, o);
        r.level = "RequestResponse";
        r.latency += SignedDuration::from_micros(4_000);
        let app = &self.cluster.apps[a];
        let manifest = bodies::manifest(app, resource, &obj_name, manager, None, self.clock);
        let request_object = if server_side {
            manifest
        } else {
            bodies::client_side_apply_patch(app, resource, &manifest)
        };
        let live = Live {
            uid: &uid,
            resource_version: &rv,
            generation: 40 + self.rng.below(30),
        };
        let object = bodies::manifest(app, resource, &obj_name, manager, Some(live), self.clock);
        r.request_object = Some(request_object);
        r.response_object = Some(object);
        r
    }

    // -- people ---------------------------------------------------------

    pub(super) fn kubectl_write(&mut self) -> Request {
        let a = self.app();
        let user = self.human();
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
        let roll = self.rng.below(100);
        let (manager, resource, group, prefix, obj_name, sub, patch) = if roll < 45 {
            // kubectl edit deployment: strategic merge patch.
            let tag = format!("1.{}.{}-hotfix", self.rng.range(10, 60), self.rng.below(10));
            let image = format!("registry.example.com/{ns}/{name}:{tag}");
            let patch = json!({"spec": bodies::container_patch(name, &image)});
            let obj = name.to_owned();
            (
                "kubectl-edit",
                "deployments",
                "apps",
                "/apis/apps/v1",
                obj,
                None,
                patch,
            )
        } else if roll < 65 {
            // kubectl edit configmap: merge patch.
            let level = *self.rng.pick(&["debug", "trace", "warn"]);
            let patch = json!({"data": {"LOG_LEVEL": level}});
            let obj = format!("{name}-config");
            (
                "kubectl-edit",
                "configmaps",
                "",
                "/api/v1",
                obj,
                None,
                patch,
            )
        } else if roll < 80 {
            // kubectl scale.
            let patch = json!({"spec": {"replicas": self.rng.range(1, 10)}});
            let (obj, sub) = (name.to_owned(), Some("scale"));
            (
                "kubectl-scale",
                "deployments",
                "apps",
                "/apis/apps/v1",
                obj,
                sub,
                patch,
            )
        } else if roll < 92 {
            // kubectl rollout restart.
            let now = rfc3339_secs(self.clock);
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": now
            }}}}});
            let obj = name.to_owned();
            (
                "kubectl-rollout",
                "deployments",
                "apps",
                "/apis/apps/v1",
                obj,
                None,
                patch,
            )
        } else {
            // kubectl patch --type merge on a secret.
            let patch = json!({"stringData": {"API_TOKEN": "hunter2"}});
            let obj = format!("{name}-credentials");
            ("kubectl-patch", "secrets", "", "/api/v1", obj, None, patch)
        };
        let sub_path = sub.map(|s| format!("/{s}")).unwrap_or_default();
        let uri = format!(
            "{prefix}/namespaces/{ns}/{resource}/{obj_name}{sub_path}?fieldManager={manager}"
        );
        let mut o = ObjRef::new(resource, group).ns(ns).name(obj_name.clone());
        o.subresource = sub;
        let mut r = self.base(&user, "patch", uri, o);
        if resource == "secrets" {
            // Secrets are logged at Metadata level: no body.
            r.level = "Metadata";
        } else if sub.is_none() && resource == "deployments" {
            r.level = "RequestResponse";
            r.request_object = Some(patch);
            let rv = self.next_rv();
            let live = Live {
                uid: &self.cluster.apps[a].deploy_uid,
                resource_version: &rv,
                generation: 40 + self.rng.below(30),
            };
            let app = &self.cluster.apps[a];
            let object = bodies::manifest(
                app,
                resource,
                &obj_name,
                "kubectl-edit",
                Some(live),
                self.clock,
            );
            r.response_object = Some(object);
        } else {
            r.level = "Request";
            r.request_object = Some(patch);
        }
        r
    }

    pub(super) fn forbidden(&mut self) -> Request {
        let a = self.app();
        let ns = self.cluster.apps[a].ns;
        let name = format!("{}-credentials", self.cluster.apps[a].name);
        let (user, target_ns) = if self.rng.chance(500) {
            (self.human(), "kube-system")
        } else {
            (Rc::clone(self.rng.pick(&self.cluster.readers)), ns)
        };
        let verb = *self.rng.pick(&["get", "get", "list", "patch", "delete"]);
        let uri = if verb == "list" {
            format!("/api/v1/namespaces/{target_ns}/secrets?limit=500")
        } else {
            format!("/api/v1/namespaces/{target_ns}/secrets/{name}")
        };
        let mut o = ObjRef::new("secrets", "").ns(target_ns);
        o.name = (verb != "list").then(|| name.clone());
        let mut r = self.base(&user, verb, uri, o);
        let msg = format!(
            "secrets \"{name}\" is forbidden: User \"{}\" cannot {verb} resource \"secrets\" in API group \"\" in the namespace \"{target_ns}\"",
            user.username()
        );
        r.status = Status::failure(msg, "Forbidden", 403);
        r
    }

    pub(super) fn dry_run(&mut self) -> Request {
        let roll = self.rng.below(100);
        if roll < 50 {
            // Argo CD server-side diff.
            self.argocd_patch(true)
        } else if roll < 85 {
            self.flux_apply(true)
        } else {
            // kubectl diff.
            let a = self.app();
            let user = self.human();
            let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
            let uri = format!(
                "/apis/apps/v1/namespaces/{ns}/deployments/{name}?dryRun=All&fieldManager=kubectl-client-side-apply"
            );
            let o = ObjRef::new("deployments", "apps").ns(ns).name(name);
            let mut r = self.base(&user, "patch", uri, o);
            r.level = "Request";
            r.request_object = Some(json!({"spec": {"replicas": 4}}));
            r
        }
    }

    /// `kubectl exec -it` over WebSocket: verb `get`, `101 Switching
    /// Protocols`, logged when the stream starts and when it ends.
    pub(super) fn exec(&mut self) -> Request {
        let a = self.app();
        let user = self.human();
        let (ns, name) = (self.cluster.apps[a].ns, self.cluster.apps[a].name);
        let pod = self.rng.pick(&self.cluster.apps[a].pods).clone();
        let uri = format!(
            "/api/v1/namespaces/{ns}/pods/{pod}/exec?command=sh&container={name}&stdin=true&stdout=true&tty=true"
        );
        let o = ObjRef::new("pods", "").ns(ns).name(pod).sub("exec");
        let mut r = self.base(&user, "get", uri, o);
        r.status = Status::ok(101);
        r.latency = secs(95);
        r.received = self.clock - SignedDuration::from_micros(400);
        r
    }
}
