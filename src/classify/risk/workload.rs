//! Pods and everything that templates them: privilege, host namespaces,
//! host paths, capabilities, root, and service-account tokens in
//! kube-system.

use serde_json::Value;

use super::path::Path;
use super::{Ctx, Sink};
use crate::model::Severity::{self, Critical, High, Medium};

pub const APPS: &[&str] = &["deployments", "daemonsets", "statefulsets", "replicasets"];

/// Where the pod spec lives, by resource.
fn pod_spec_path(resource: &str) -> Option<&'static str> {
    match resource {
        "pods" => Some("spec"),
        "podtemplates" => Some("template.spec"),
        "cronjobs" => Some("spec.jobTemplate.spec.template.spec"),
        "deployments"
        | "daemonsets"
        | "statefulsets"
        | "replicasets"
        | "jobs"
        | "replicationcontrollers" => Some("spec.template.spec"),
        _ => None,
    }
}

/// Pod-level switches that share a host namespace. hostPID is critical:
/// it shows every process on the node and, with `nsenter`, is a root shell
/// on it; the network and IPC namespaces expose traffic and shared memory.
const HOST_NAMESPACES: &[(&str, &str, Severity)] = &[
    ("hostPID", "host_pid", Critical),
    ("hostIPC", "host_ipc", High),
    ("hostNetwork", "host_network", High),
];

/// Host paths whose mount hands over the node: the container runtime's
/// sockets (start any container, privileged) are critical, like `/` which
/// holds them; the rest expose credentials, kubelet state or the kernel.
const HOST_PATHS: &[(&str, Severity)] = &[
    ("/var/run/docker.sock", Critical),
    ("/run/docker.sock", Critical),
    ("/var/run/containerd", Critical),
    ("/run/containerd", Critical),
    ("/var/run/crio", Critical),
    ("/run/crio", Critical),
    ("/var/run/cri-dockerd.sock", Critical),
    ("/run/k3s/containerd", Critical),
    ("/etc", High),
    ("/proc", High),
    ("/sys", High),
    ("/dev", High),
    ("/boot", High),
    ("/root", High),
    ("/home", High),
    ("/var/log", High),
    ("/var/lib/kubelet", High),
    ("/var/lib/etcd", High),
    ("/var/lib/docker", High),
    ("/var/lib/containerd", High),
];

/// Capabilities that break out of the container or into the node's
/// network, kernel or other processes. SYS_ADMIN is nearly root on the
/// host (mount, cgroups release_agent); ALL includes it.
const CAPABILITIES: &[(&str, Severity)] = &[
    ("SYS_ADMIN", Critical),
    ("ALL", Critical),
    ("NET_ADMIN", High),
    ("SYS_PTRACE", High),
    ("SYS_MODULE", High),
    ("SYS_RAWIO", High),
    ("SYS_BOOT", High),
    ("DAC_READ_SEARCH", High),
    ("DAC_OVERRIDE", High),
    ("BPF", High),
    ("PERFMON", High),
];

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

pub fn check(ctx: &Ctx<'_>, sink: &mut Sink) {
    let Some(dotted) = pod_spec_path(ctx.ev.resource()) else {
        return;
    };
    let pointer = format!("/{}", dotted.replace('.', "/"));
    let Some(spec) = ctx.at(&pointer) else {
        return;
    };
    let base = Path::of(dotted);
    host_namespaces(spec, &base, sink);
    host_paths(spec, &base, sink);
    if let Some(sc) = spec.get("securityContext") {
        run_as_root(sc, &base.key("securityContext"), sink);
    }
    for list in CONTAINER_LISTS {
        let Some(items) = spec.get(*list).and_then(Value::as_array) else {
            continue;
        };
        for (i, container) in items.iter().enumerate() {
            if let Some(sc) = container.get("securityContext") {
                let at = base.key(list).item(items, i).key("securityContext");
                container_security(sc, &at, sink);
            }
        }
    }
    token_automount(ctx, spec, &base, sink);
}

fn host_namespaces(spec: &Value, base: &Path, sink: &mut Sink) {
    for (field, rule, severity) in HOST_NAMESPACES {
        if spec.get(*field) == Some(&Value::Bool(true)) {
            sink.push(rule, &base.key(field), Value::Bool(true), *severity);
        }
    }
}

fn host_paths(spec: &Value, base: &Path, sink: &mut Sink) {
    let Some(volumes) = spec.get("volumes").and_then(Value::as_array) else {
        return;
    };
    for (i, volume) in volumes.iter().enumerate() {
        let Some(written) = volume.pointer("/hostPath/path").and_then(Value::as_str) else {
            continue;
        };
        if let Some(severity) = host_path_severity(written) {
            let at = base
                .key("volumes")
                .item(volumes, i)
                .key("hostPath")
                .key("path");
            sink.push("sensitive_host_path", &at, Value::from(written), severity);
        }
    }
}

/// A path is sensitive when it is a listed path, below one, or above one
/// (`/`, `/var` and `/var/lib` hold the runtime socket or kubelet state).
fn host_path_severity(written: &str) -> Option<Severity> {
    let path = normalize(written)?;
    HOST_PATHS
        .iter()
        .filter(|(listed, _)| within(&path, listed) || within(listed, &path))
        .map(|(_, severity)| *severity)
        .max()
}

fn within(path: &str, base: &str) -> bool {
    base == "/"
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Lexical normal form of an absolute path: no `.`, `..`, `//` or trailing
/// slash, so `/etc/../` is `/` and `//var/run/` is `/var/run`.
fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn container_security(sc: &Value, at: &Path, sink: &mut Sink) {
    if sc.get("privileged") == Some(&Value::Bool(true)) {
        sink.push(
            "privileged_container",
            &at.key("privileged"),
            Value::Bool(true),
            Critical,
        );
    }
    if sc.get("allowPrivilegeEscalation") == Some(&Value::Bool(true)) {
        let path = at.key("allowPrivilegeEscalation");
        sink.push(
            "allow_privilege_escalation",
            &path,
            Value::Bool(true),
            Medium,
        );
    }
    run_as_root(sc, at, sink);
    let Some(added) = sc.pointer("/capabilities/add").and_then(Value::as_array) else {
        return;
    };
    for (i, cap) in added.iter().enumerate() {
        let Some(name) = cap.as_str() else { continue };
        let bare = name.to_ascii_uppercase();
        let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
        if let Some((_, severity)) = CAPABILITIES.iter().find(|(c, _)| *c == bare) {
            let path = at.key("capabilities").key("add").index(i);
            sink.push("added_capability", &path, Value::from(name), *severity);
        }
    }
}

/// A pod or container security context that asks for root.
fn run_as_root(sc: &Value, at: &Path, sink: &mut Sink) {
    if sc.get("runAsUser").and_then(Value::as_i64) == Some(0) {
        sink.push("run_as_root", &at.key("runAsUser"), Value::from(0), Medium);
    }
    if sc.get("runAsNonRoot") == Some(&Value::Bool(false)) {
        sink.push(
            "run_as_root",
            &at.key("runAsNonRoot"),
            Value::Bool(false),
            Medium,
        );
    }
}

/// kube-system's service accounts are the controllers' own, with the
/// broadest rights in the cluster: a pod there that mounts its token is a
/// way to borrow them. An explicit `true` anywhere in kube-system; for a
/// Pod a person creates, anything but an explicit `false` (the pod then
/// mounts the token unless its service account opts out, which is not
/// visible here).
fn token_automount(ctx: &Ctx<'_>, spec: &Value, base: &Path, sink: &mut Sink) {
    if ctx.ev.namespace() != "kube-system" {
        return;
    }
    let at = base.key("automountServiceAccountToken");
    match spec.get("automountServiceAccountToken") {
        Some(Value::Bool(true)) => {
            sink.push(
                "kube_system_token_automount",
                &at,
                Value::Bool(true),
                Medium,
            );
        }
        Some(Value::Bool(false)) => {}
        _ if ctx.ev.resource() == "pods" && ctx.ev.verb() == "create" && ctx.by_person() => {
            sink.push(
                "kube_system_pod_default_automount",
                &at,
                Value::Null,
                Medium,
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Ev;
    use super::*;

    fn pod(spec: &str) -> String {
        format!(
            r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"p","namespace":"default"}},"spec":{spec}}}"#
        )
    }

    fn create_pod(spec: &str) -> Vec<(&'static str, String, Severity)> {
        let body = pod(spec);
        Ev {
            namespace: "default",
            request: Some(&body),
            ..Ev::default()
        }
        .risks()
    }

    #[test]
    fn privileged_container_and_its_near_miss() {
        // Panther's k8s_privileged_pod_created fixture shape.
        let got = create_pod(
            r#"{"containers":[{"name":"app","image":"nginx","securityContext":{"privileged":true}}]}"#,
        );
        assert_eq!(
            got,
            [(
                "privileged_container",
                "spec.containers[name=app].securityContext.privileged".to_owned(),
                Critical
            )]
        );
        let safe = create_pod(
            r#"{"containers":[{"name":"app","image":"nginx","securityContext":{"privileged":false,"allowPrivilegeEscalation":false,"runAsNonRoot":true}}]}"#,
        );
        assert!(safe.is_empty(), "{safe:?}");
    }

    #[test]
    fn host_namespaces() {
        let got = create_pod(
            r#"{"hostPID":true,"hostIPC":true,"hostNetwork":true,"containers":[{"name":"a","image":"busybox"}]}"#,
        );
        assert_eq!(
            got,
            [
                ("host_pid", "spec.hostPID".to_owned(), Critical),
                ("host_ipc", "spec.hostIPC".to_owned(), High),
                ("host_network", "spec.hostNetwork".to_owned(), High),
            ]
        );
        let off =
            create_pod(r#"{"hostPID":false,"hostNetwork":false,"containers":[{"name":"a"}]}"#);
        assert!(off.is_empty());
    }

    #[test]
    fn sensitive_host_paths() {
        let got = create_pod(
            r#"{"containers":[{"name":"a"}],"volumes":[{"name":"root","hostPath":{"path":"/"}},{"name":"sock","hostPath":{"path":"/var/run/docker.sock","type":"Socket"}},{"name":"etc","hostPath":{"path":"/etc/kubernetes/"}},{"name":"var","hostPath":{"path":"/var/lib"}},{"name":"sneaky","hostPath":{"path":"/tmp/../etc"}}]}"#,
        );
        let at = |v: &str| format!("spec.volumes[name={v}].hostPath.path");
        assert_eq!(
            got,
            [
                ("sensitive_host_path", at("root"), Critical),
                ("sensitive_host_path", at("sock"), Critical),
                ("sensitive_host_path", at("etc"), High),
                ("sensitive_host_path", at("var"), High),
                ("sensitive_host_path", at("sneaky"), High),
            ]
        );
        // Scratch space, an application's data dir, and an emptyDir.
        let safe = create_pod(
            r#"{"containers":[{"name":"a"}],"volumes":[{"name":"t","hostPath":{"path":"/tmp/cache"}},{"name":"d","hostPath":{"path":"/data/app"}},{"name":"e","emptyDir":{}},{"name":"etcx","hostPath":{"path":"/etcetera"}}]}"#,
        );
        assert!(safe.is_empty(), "{safe:?}");
    }

    #[test]
    fn added_capabilities() {
        // Panther's k8s_pod_dangerous_capabilities fixtures.
        let got = create_pod(
            r#"{"initContainers":[{"name":"init","securityContext":{"capabilities":{"add":["SYS_ADMIN","NET_RAW"]}}}],"containers":[{"name":"net","securityContext":{"capabilities":{"add":["cap_net_admin"],"drop":["ALL"]}}}]}"#,
        );
        assert_eq!(
            got,
            [
                (
                    "added_capability",
                    "spec.containers[name=net].securityContext.capabilities.add[0]".to_owned(),
                    High
                ),
                (
                    "added_capability",
                    "spec.initContainers[name=init].securityContext.capabilities.add[0]".to_owned(),
                    Critical
                ),
            ]
        );
        let safe = create_pod(
            r#"{"containers":[{"name":"a","securityContext":{"capabilities":{"add":["NET_BIND_SERVICE","CHOWN"],"drop":["ALL"]}}}]}"#,
        );
        assert!(safe.is_empty(), "{safe:?}");
    }

    #[test]
    fn escalation_and_root() {
        let got = create_pod(
            r#"{"securityContext":{"runAsUser":0},"containers":[{"name":"a","securityContext":{"allowPrivilegeEscalation":true,"runAsNonRoot":false}}]}"#,
        );
        assert_eq!(
            got,
            [
                (
                    "run_as_root",
                    "spec.securityContext.runAsUser".to_owned(),
                    Medium
                ),
                (
                    "allow_privilege_escalation",
                    "spec.containers[name=a].securityContext.allowPrivilegeEscalation".to_owned(),
                    Medium
                ),
                (
                    "run_as_root",
                    "spec.containers[name=a].securityContext.runAsNonRoot".to_owned(),
                    Medium
                ),
            ]
        );
        let safe = create_pod(
            r#"{"securityContext":{"runAsUser":1000,"runAsNonRoot":true},"containers":[{"name":"a","securityContext":{"allowPrivilegeEscalation":false}}]}"#,
        );
        assert!(safe.is_empty(), "{safe:?}");
    }

    const PRIVILEGED_DS: &str = r#"{"kind":"DaemonSet","apiVersion":"apps/v1","metadata":{"name":"agent","namespace":"monitoring"},"spec":{"replicas":2,"template":{"spec":{"hostPID":true,"containers":[{"name":"agent","image":"agent:2","securityContext":{"privileged":true}}]}}}}"#;

    fn patch_ds(patch: &str) -> Vec<(&'static str, String, Severity)> {
        Ev {
            verb: "patch",
            group: "apps",
            resource: "daemonsets",
            namespace: "monitoring",
            name: "agent",
            request: Some(patch),
            response: Some(PRIVILEGED_DS),
            ..Ev::default()
        }
        .risks()
    }

    #[test]
    fn a_patch_is_judged_on_what_it_touched() {
        // An image bump or a restart on a privileged DaemonSet: no risk.
        assert!(patch_ds(r#"{"spec":{"template":{"spec":{"containers":[{"name":"agent","image":"agent:3"}]}}}}"#).is_empty());
        assert!(patch_ds(r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-01T00:00:00Z"}}}}}"#).is_empty());
        assert!(patch_ds(r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"agent:3"}]"#).is_empty());
        // The patch that makes it privileged: strategic merge and JSON patch.
        let at = "spec.template.spec.containers[name=agent].securityContext.privileged";
        let merge = patch_ds(
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"agent","securityContext":{"privileged":true}}]}}}}"#,
        );
        assert_eq!(merge, [("privileged_container", at.to_owned(), Critical)]);
        let json = patch_ds(
            r#"[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}]"#,
        );
        assert_eq!(json, [("privileged_container", at.to_owned(), Critical)]);
        let host = patch_ds(r#"{"spec":{"template":{"spec":{"hostPID":true}}}}"#);
        assert_eq!(
            host,
            [(
                "host_pid",
                "spec.template.spec.hostPID".to_owned(),
                Critical
            )]
        );
    }

    #[test]
    fn a_patch_without_the_object_after_is_read_as_a_partial_object() {
        let got = Ev {
            verb: "patch",
            group: "apps",
            resource: "deployments",
            namespace: "shop",
            name: "web",
            request: Some(r#"{"spec":{"template":{"spec":{"hostNetwork":true}}}}"#),
            ..Ev::default()
        }
        .risks();
        assert_eq!(
            got,
            [(
                "host_network",
                "spec.template.spec.hostNetwork".to_owned(),
                High
            )]
        );
    }

    #[test]
    fn cronjob_and_pod_spec_paths() {
        let body = r#"{"kind":"CronJob","spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"c","securityContext":{"privileged":true}}]}}}}}}"#;
        let got = Ev {
            group: "batch",
            resource: "cronjobs",
            namespace: "ops",
            request: Some(body),
            ..Ev::default()
        }
        .risks();
        assert_eq!(
            got[0].1,
            "spec.jobTemplate.spec.template.spec.containers[name=c].securityContext.privileged"
        );
        // A scale subresource carries no pod spec.
        let scale = Ev {
            verb: "patch",
            group: "apps",
            resource: "daemonsets",
            sub: "scale",
            request: Some(r#"{"spec":{"replicas":3}}"#),
            response: Some(PRIVILEGED_DS),
            ..Ev::default()
        };
        assert!(scale.risks().is_empty());
    }

    #[test]
    fn kube_system_token_automount() {
        let body = pod(r#"{"containers":[{"name":"a"}]}"#);
        let by = |user: &'static str| Ev {
            namespace: "kube-system",
            user,
            request: Some(&body),
            ..Ev::default()
        };
        assert_eq!(
            by("alice@example.com").risks(),
            [(
                "kube_system_pod_default_automount",
                "spec.automountServiceAccountToken".to_owned(),
                Medium
            )]
        );
        // A controller's pod, and a pod that opts out.
        assert!(
            by("system:serviceaccount:kube-system:daemon-set-controller")
                .risks()
                .is_empty()
        );
        let off = pod(r#"{"automountServiceAccountToken":false,"containers":[{"name":"a"}]}"#);
        let ev = Ev {
            namespace: "kube-system",
            request: Some(&off),
            ..Ev::default()
        };
        assert!(ev.risks().is_empty());
        // Elsewhere the default is no risk; an explicit true in kube-system is.
        let elsewhere = Ev {
            namespace: "default",
            request: Some(&body),
            ..Ev::default()
        };
        assert!(elsewhere.risks().is_empty());
        let deploy = r#"{"spec":{"template":{"spec":{"automountServiceAccountToken":true,"containers":[{"name":"a"}]}}}}"#;
        let ev = Ev {
            group: "apps",
            resource: "deployments",
            namespace: "kube-system",
            user: "system:serviceaccount:ci:deployer",
            request: Some(deploy),
            ..Ev::default()
        };
        assert_eq!(ev.rules(), ["kube_system_token_automount"]);
    }

    #[test]
    fn reads_have_no_risk() {
        let body = pod(r#"{"containers":[{"name":"a","securityContext":{"privileged":true}}]}"#);
        for verb in ["get", "list", "watch"] {
            let ev = Ev {
                verb,
                response: Some(&body),
                ..Ev::default()
            };
            assert!(ev.risks().is_empty());
        }
    }

    #[test]
    fn at_most_fifty_risks() {
        let containers: Vec<String> = (0..80)
            .map(|i| format!(r#"{{"name":"c{i}","securityContext":{{"privileged":true}}}}"#))
            .collect();
        let body = pod(&format!(r#"{{"containers":[{}]}}"#, containers.join(",")));
        let ev = Ev {
            request: Some(&body),
            ..Ev::default()
        };
        assert_eq!(ev.risks().len(), super::super::MAX_RISKS);
    }
}
