//! How an RBAC write was made: by a generic HTTP tool or scripting library
//! rather than a Kubernetes client.
//!
//! Attack caught: a stolen token (read from a pod's service-account mount, a
//! leaked kubeconfig, a CI variable) used by hand. Whoever holds it rarely
//! has kubectl on the compromised host, or does not want kubectl's history:
//! the grant that keeps their access (a ClusterRoleBinding to their own
//! account, a Role with `secrets` or `pods/exec`) is sent with `curl`,
//! `wget`, a `python-requests` script or PowerShell's `Invoke-WebRequest`,
//! as post-exploitation kits and write-ups do. Kubernetes clients name
//! themselves: client-go sends `<program>/<version> (<os>/<arch>)
//! kubernetes/<commit>` (kubectl, helm, argocd-application-controller,
//! kustomize-controller, every operator built on it), so a bare library
//! agent writing RBAC is someone who built the request themselves.
//!
//! The user agent is chosen by the client: this rule raises what it finds
//! and never clears anything. An attacker who sends `kubectl/v1.31.2` is not
//! caught by it (the write is still a finding, by identity).
//!
//! Noise (automation that can trip it):
//! - `eks:addon-manager` sends `Go-http-client/1.1` (Panther's public EKS
//!   fixture) and writes the RBAC objects of managed add-ons on add-on
//!   updates; those writes are findings already (the `eks` pack does not
//!   allow them), and now say `tooling_user_agent_rbac`.
//! - JavaScript on `@kubernetes/client-node` 1.x sends node-fetch's default
//!   agent (`node-fetch`, as a GitOps-Reverser corpus event shows), and Java
//!   on old fabric8 or hand-rolled okhttp clients sends `okhttp/x`.
//! - Bootstrap and CI scripts that `curl` the API with a token (cluster
//!   installers, some Terraform `local-exec` steps). Declare such a script as
//!   a pipeline with its `user_agents`, or as an allowance with `who.user_agents`:
//!   an identity whose declared agents matched is not judged by this rule.
//! - No pack in `src/classify/packs/` and no add-on in the testkit's traffic
//!   writes RBAC, and none uses one of these agents for anything it writes.
//!
//! Not in the list: the official Python client (`OpenAPI-Generator/<v>/python`,
//! also `kubernetes_asyncio`). It is a full Kubernetes client whose agent
//! names the generator, not a program, and it is what Ansible's
//! `kubernetes.core`, kopf-era operators, JupyterHub's KubeSpawner and
//! Airflow use, RBAC included: flagging it would flag their every apply. The
//! same goes for the official Java (`Kubernetes Java Client/...`) and .NET
//! clients. There is no `kubernetes-python` agent.

use crate::decode::Event;
use crate::model::{Risk, Severity};

/// Product names (case-insensitive) of generic HTTP tools and libraries, as
/// each sends its default `User-Agent`.
pub const TOOLS: &[&str] = &[
    "curl",              // curl/8.5.0
    "wget",              // Wget/1.21.4
    "python-requests",   // python-requests/2.31.0
    "python-urllib",     // Python-urllib/3.11
    "python-httpx",      // python-httpx/0.27.0
    "aiohttp",           // Python/3.11 aiohttp/3.9.1
    "go-http-client",    // Go-http-client/1.1: net/http without client-go
    "node-fetch",        // node-fetch, node-fetch/1.0 (+https://github.com/bitinn/node-fetch)
    "axios",             // axios/1.6.8
    "powershell",        // Mozilla/5.0 (...) PowerShell/7.4.1
    "windowspowershell", // Mozilla/5.0 (...) WindowsPowerShell/5.1.22621.2506
    "okhttp",            // okhttp/4.12.0
    "libwww-perl",       // libwww-perl/6.72
    "httpie",            // HTTPie/3.2.2
    "postmanruntime",    // PostmanRuntime/7.36.0
];

/// Leading products that name a platform, not a program: the next product
/// says who sent the request.
const PREFIXES: &[&str] = &["mozilla", "python"];

pub const RULE: &str = "tooling_user_agent_rbac";

/// The generic tool a user agent names, judged on its first product token
/// (after a platform prefix such as `Mozilla/5.0 (...)`): a named program
/// that mentions a library later (`my-operator/1.0 Go-http-client/1.1`) is
/// not a tool.
pub fn tool_of(user_agent: &str) -> Option<&'static str> {
    let product =
        products(user_agent).find(|p| !PREFIXES.iter().any(|x| p.eq_ignore_ascii_case(x)))?;
    TOOLS
        .iter()
        .copied()
        .find(|t| product.eq_ignore_ascii_case(t))
}

/// The product names of a user agent (`name/version` tokens, comments in
/// parentheses skipped), in order.
fn products(user_agent: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    user_agent
        .split_ascii_whitespace()
        .filter_map(move |token| {
            let in_comment = depth > 0 || token.starts_with('(');
            for b in token.bytes() {
                match b {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            if in_comment {
                return None;
            }
            token.split('/').next().filter(|name| !name.is_empty())
        })
}

/// A create, update or patch of a Role, ClusterRole or binding sent by a
/// generic tool: `high`, `critical` when what it grants is already risky
/// (`content`: the write's content risks, `grant_not_logged` included).
pub fn tooling_rbac(ev: &Event<'_>, content: &[Risk]) -> Option<Risk> {
    let writes = matches!(ev.verb(), "create" | "update" | "patch");
    if !writes
        || !ev.subresource().is_empty()
        || !crate::classify::severity::is_rbac(ev.resource(), ev.api_group())
    {
        return None;
    }
    let user_agent = ev.user_agent.as_deref().unwrap_or("");
    tool_of(user_agent)?;
    let risky = content.iter().any(|r| r.severity >= Severity::High);
    Some(Risk {
        rule: RULE.into(),
        path: String::new(),
        value: serde_json::Value::from(user_agent),
        severity: if risky {
            Severity::Critical
        } else {
            Severity::High
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_tools_are_known_by_their_first_product() {
        for (ua, tool) in [
            ("curl/8.5.0", "curl"),
            ("Wget/1.21.4", "wget"),
            ("python-requests/2.31.0", "python-requests"),
            ("Python-urllib/3.11", "python-urllib"),
            ("Python/3.11 aiohttp/3.9.1", "aiohttp"),
            ("Go-http-client/1.1", "go-http-client"),
            ("Go-http-client/2.0", "go-http-client"),
            (
                "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
                "node-fetch",
            ),
            ("node-fetch", "node-fetch"),
            ("axios/1.6.8", "axios"),
            (
                "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.22621.2506",
                "windowspowershell",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.22631; en-US) PowerShell/7.4.1",
                "powershell",
            ),
            ("okhttp/4.12.0", "okhttp"),
            ("libwww-perl/6.72", "libwww-perl"),
        ] {
            assert_eq!(tool_of(ua), Some(tool), "{ua}");
        }
    }

    #[test]
    fn kubernetes_clients_and_named_programs_are_not_tools() {
        for ua in [
            "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
            "Helm/3.16.2",
            "helm/v3.16.2 (linux/amd64) kubernetes/abc",
            "argocd-application-controller/v2.13.1 (linux/amd64)",
            "kustomize-controller/v1.4.0",
            "helm-controller/v1.1.0",
            "OpenAPI-Generator/29.0.0/python",
            "Kubernetes Java Client/18.0.0-SNAPSHOT",
            "kube-controller-manager/v1.28.14 (linux/amd64) kubernetes/a4ef1a6/system:serviceaccount:kube-system:replicaset-controller",
            "cert-manager-cainjector/v1.16.1 (linux/amd64) cert-manager/2a2c8ac2e2cc",
            "my-operator/1.0 Go-http-client/1.1",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "",
        ] {
            assert_eq!(tool_of(ua), None, "{ua}");
        }
    }

    fn event(verb: &str, resource: &str, group: &str, ua: &str) -> String {
        serde_json::json!({"verb": verb, "userAgent": ua,
            "objectRef": {"resource": resource, "apiGroup": group, "name": "x"}})
        .to_string()
    }

    fn judge(json: &str, content: &[Risk]) -> Option<Severity> {
        let ev: Event<'_> = serde_json::from_str(json).unwrap();
        tooling_rbac(&ev, content).map(|r| r.severity)
    }

    #[test]
    fn rbac_writes_by_a_tool_are_high_and_critical_when_the_grant_is_risky() {
        let rbac = "rbac.authorization.k8s.io";
        for resource in [
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        ] {
            for verb in ["create", "update", "patch"] {
                let json = event(verb, resource, rbac, "curl/8.5.0");
                assert_eq!(judge(&json, &[]), Some(Severity::High), "{verb} {resource}");
            }
        }
        let grant = Risk {
            rule: "rbac_bind_admin".into(),
            path: "roleRef.name".into(),
            value: "cluster-admin".into(),
            severity: Severity::Critical,
        };
        let json = event(
            "create",
            "clusterrolebindings",
            rbac,
            "python-requests/2.31.0",
        );
        assert_eq!(judge(&json, &[grant]), Some(Severity::Critical));
        // Not RBAC, not a write, not a tool.
        for json in [
            event("create", "configmaps", "", "curl/8.5.0"),
            event("delete", "clusterroles", rbac, "curl/8.5.0"),
            event("get", "clusterroles", rbac, "curl/8.5.0"),
            event("create", "roles", "example.com", "curl/8.5.0"),
            event(
                "patch",
                "clusterroles",
                rbac,
                "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
            ),
        ] {
            assert_eq!(judge(&json, &[]), None, "{json}");
        }
    }
}
