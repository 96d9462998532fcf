//! Risk read from content: what makes one write dangerous, whoever made it.
//!
//! Pure and synchronous like the rest of `classify`. Bodies are parsed into
//! `serde_json::Value` here: risk runs only on the changes that are reported,
//! a small fraction of the stream. One file per family of objects; each
//! family is a function that reads a [`Ctx`] and pushes into a [`Sink`].
//!
//! Which body is read:
//! - `create`/`update`: the object, the response object when present, else
//!   the request object. Without the previous object every field present is
//!   judged, changed or not.
//! - `patch`: the response object (the object after the patch), but a risk
//!   is kept only when its path, a parent or a child of it appears in the
//!   patch document: bumping replicas on a privileged DaemonSet is not a
//!   privileged-container risk. Without a response object a merge patch is
//!   judged as the partial object it is, and a JSON patch as the partial
//!   object its `add` and `replace` operations write ([`written_by`]).
//! - `delete`/`deletecollection`: the risk of the removal itself.
//! - Secrets: their data is never parsed (see `credentials.rs`).

mod admission;
pub mod client;
mod configmap;
mod credentials;
mod namespace;
mod network;
pub mod node;
mod path;
mod rbac;
mod workload;

use serde_json::Value;

use crate::decode::Event;
use crate::model::Severity;

use path::Path;

/// A bound on the work and on the finding: one event yields at most this many.
pub const MAX_RISKS: usize = 50;

pub use crate::model::Risk;

/// What makes this write dangerous, read from its bodies. `create`/`update`:
/// the object (response object when present, else the request object);
/// `patch`: the patch document (request object) AND the response object
/// (the object after the patch) — a risk found in the response object is
/// reported only when the same path (or a parent of it) appears in the patch
/// document; `delete`/`deletecollection`: risks of removing (e.g. a
/// NetworkPolicy). Empty for reads. Secrets: never read their data.
pub fn assess(ev: &Event<'_>) -> Vec<Risk> {
    let Some(op) = Op::of(ev.verb()) else {
        return Vec::new();
    };
    let Some(family) = family_of(ev) else {
        return Vec::new();
    };
    let mut sink = Sink::default();
    // Secrets bypass the generic body parsing: their data stays unread.
    if family.bodies == Bodies::Never {
        (family.check)(&Ctx::bare(ev, op), &mut sink);
        return sink.risks;
    }
    let patch = body(ev.request_object).filter(|_| op == Op::Patch);
    // A refused write answers with a `Status`: what it attempted is in the
    // request alone.
    let response = body(ev.response_object).filter(|_| !ev.failed());
    let has_response = response.is_some();
    let object = match op {
        Op::Write => response.or_else(|| body(ev.request_object)),
        Op::Patch => response.or_else(|| match &patch {
            Some(Value::Array(ops)) => written_by(ops),
            other => other.clone().filter(Value::is_object),
        }),
        Op::Delete => None,
    };
    if op == Op::Patch && has_response {
        match &patch {
            Some(doc) => sink.touched = Some(path::touched(doc, object.as_ref())),
            // What changed is unknown: nothing can be said about it.
            None => return Vec::new(),
        }
    }
    let ctx = Ctx {
        ev,
        op,
        object: object.as_ref(),
        patch: patch.as_ref(),
    };
    (family.check)(&ctx, &mut sink);
    sink.risks
}

/// Bounds on the partial object read from one JSON patch.
const MAX_OPS: usize = 1024;
const MAX_INDEX: usize = 1024;

/// The partial object a JSON patch writes, for a patch logged without the
/// object after it (a `Request`-level policy): its `add` and `replace`
/// values placed at their pointers, so that
/// `[{"op":"replace","path":"/webhooks/0/clientConfig/url","value":u}]`
/// reads as `{"webhooks":[{"clientConfig":{"url":u}}]}` and the rules see
/// the URL at `webhooks[0].clientConfig.url`, its change path. Items before
/// an index are `null` (unknown); `remove`, `move`, `copy` and `test` write
/// nothing readable. `None` when nothing was written.
fn written_by(ops: &[Value]) -> Option<Value> {
    let mut root = Value::Object(serde_json::Map::new());
    for op in ops.iter().take(MAX_OPS) {
        if !matches!(
            op.get("op").and_then(Value::as_str),
            Some("add" | "replace")
        ) {
            continue;
        }
        let (Some(pointer), Some(value)) =
            (op.get("path").and_then(Value::as_str), op.get("value"))
        else {
            continue;
        };
        let tokens = crate::model::pointer_tokens(pointer);
        if tokens.is_empty() {
            // The whole document replaced.
            if value.is_object() {
                root = value.clone();
            }
            continue;
        }
        place(&mut root, &tokens, value);
    }
    root.as_object()
        .is_some_and(|m| !m.is_empty())
        .then_some(root)
}

fn place(at: &mut Value, tokens: &[String], value: &Value) {
    let Some((token, rest)) = tokens.split_first() else {
        return;
    };
    // What the next token needs below this one.
    let container = || match rest.first() {
        Some(t) if t == "-" || t.parse::<usize>().is_ok() => Value::Array(Vec::new()),
        _ => Value::Object(serde_json::Map::new()),
    };
    let slot = match at {
        Value::Object(map) => {
            if rest.is_empty() {
                map.insert(token.clone(), value.clone());
                return;
            }
            map.entry(token.clone()).or_insert_with(container)
        }
        Value::Array(items) => {
            let i = if token == "-" {
                items.len()
            } else {
                match token.parse::<usize>() {
                    Ok(i) if i <= MAX_INDEX => i,
                    _ => return,
                }
            };
            if items.len() <= i {
                items.resize(i + 1, Value::Null);
            }
            if rest.is_empty() {
                items[i] = value.clone();
                return;
            }
            let slot = &mut items[i];
            if slot.is_null() {
                *slot = container();
            }
            slot
        }
        // A value in the way: the patch and what it writes disagree.
        _ => return,
    };
    place(slot, rest, value);
}

fn body(raw: Option<&serde_json::value::RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .filter(|v| !v.is_null())
}

/// The verbs risk is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// `create` or `update`: the whole object is in the body.
    Write,
    Patch,
    Delete,
}

impl Op {
    fn of(verb: &str) -> Option<Op> {
        match verb {
            "create" | "update" => Some(Op::Write),
            "patch" => Some(Op::Patch),
            "delete" | "deletecollection" => Some(Op::Delete),
            _ => None,
        }
    }
}

/// What one family of rules reads.
pub(super) struct Ctx<'c> {
    pub ev: &'c Event<'c>,
    pub op: Op,
    /// The object after the write (or the merge patch as a partial object);
    /// `None` for deletes and for Metadata-level events.
    pub object: Option<&'c Value>,
    /// The patch document of a `patch`.
    pub patch: Option<&'c Value>,
}

impl<'c> Ctx<'c> {
    fn bare(ev: &'c Event<'c>, op: Op) -> Ctx<'c> {
        Ctx {
            ev,
            op,
            object: None,
            patch: None,
        }
    }

    /// The object's name: the objectRef's, else the body's (a create with
    /// `generateName`, or an objectRef that omits it).
    pub fn name(&self) -> &str {
        let from_ref = self.ev.object_ref.as_ref().and_then(|o| o.name.as_deref());
        from_ref
            .filter(|n| !n.is_empty())
            .or_else(|| {
                self.object
                    .and_then(|o| o.pointer("/metadata/name"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("")
    }

    /// `/a/b` of the object, if present and not null.
    pub fn at(&self, pointer: &str) -> Option<&'c Value> {
        self.object
            .and_then(|o| o.pointer(pointer))
            .filter(|v| !v.is_null())
    }

    /// A person, not a component: Kubernetes' own identities (nodes,
    /// controllers, service accounts) all start with `system:`.
    pub fn by_person(&self) -> bool {
        let user = self.ev.username();
        !user.is_empty() && !user.starts_with("system:")
    }
}

/// Where the risks go: bounded, and filtered by what a patch touched.
#[derive(Default)]
pub(super) struct Sink {
    risks: Vec<Risk>,
    /// The paths a patch document touched; `None` when every path counts.
    touched: Option<Vec<String>>,
}

impl Sink {
    pub fn full(&self) -> bool {
        self.risks.len() >= MAX_RISKS
    }

    /// Keeps the risk if the write touched its path.
    pub fn push(&mut self, rule: &'static str, path: &Path, value: Value, severity: Severity) {
        let touched = match &self.touched {
            None => true,
            Some(paths) => paths.iter().any(|t| path::related(t, path.as_str())),
        };
        if touched {
            self.push_always(rule, path, value, severity);
        }
    }

    /// Keeps the risk whatever the write touched: a rule about the write
    /// itself (any write to `aws-auth`, a delete).
    pub fn push_always(&mut self, rule: &'static str, path: &Path, value: Value, sev: Severity) {
        if !self.full() {
            self.risks.push(Risk {
                rule: rule.into(),
                path: path.as_str().to_owned(),
                value,
                severity: sev,
            });
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bodies {
    Parsed,
    /// Never parsed generically (Secrets).
    Never,
}

struct Family {
    /// API group; an event with no group matches too for non-core groups
    /// (hand-written and exported events often omit it).
    group: &'static str,
    resources: &'static [&'static str],
    subresources: &'static [&'static str],
    bodies: Bodies,
    check: fn(&Ctx<'_>, &mut Sink),
}

const MAIN: &[&str] = &[""];
const RBAC: &str = "rbac.authorization.k8s.io";
const ADMISSION: &str = "admissionregistration.k8s.io";

const FAMILIES: &[Family] = &[
    family(
        "",
        &["pods", "replicationcontrollers", "podtemplates"],
        workload::check,
    ),
    family("apps", workload::APPS, workload::check),
    family("batch", &["jobs", "cronjobs"], workload::check),
    family(RBAC, &["roles", "clusterroles"], rbac::roles),
    family(
        RBAC,
        &["rolebindings", "clusterrolebindings"],
        rbac::bindings,
    ),
    family(ADMISSION, admission::WEBHOOKS, admission::webhooks),
    family(ADMISSION, admission::POLICIES, admission::policies),
    family(
        "apiregistration.k8s.io",
        &["apiservices"],
        admission::apiservices,
    ),
    family("networking.k8s.io", &["networkpolicies"], network::check),
    family("", &["namespaces"], namespace::check),
    family("", &["configmaps"], configmap::check),
    family("", &["serviceaccounts"], credentials::service_accounts),
    Family {
        subresources: &["approval", "status"],
        ..family(
            "certificates.k8s.io",
            &["certificatesigningrequests"],
            credentials::csr,
        )
    },
    Family {
        bodies: Bodies::Never,
        ..family("", &["secrets"], credentials::secrets)
    },
];

const fn family(
    group: &'static str,
    resources: &'static [&'static str],
    check: fn(&Ctx<'_>, &mut Sink),
) -> Family {
    Family {
        group,
        resources,
        subresources: MAIN,
        bodies: Bodies::Parsed,
        check,
    }
}

fn family_of(ev: &Event<'_>) -> Option<&'static Family> {
    let (group, resource, sub) = (ev.api_group(), ev.resource(), ev.subresource());
    FAMILIES.iter().find(|f| {
        (f.group == group || (group.is_empty() && !f.group.is_empty()))
            && f.resources.contains(&resource)
            && f.subresources.contains(&sub)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::written_by;

    #[test]
    fn a_json_patch_reads_as_the_partial_object_it_writes() {
        let ops = json!([
            {"op": "replace", "path": "/webhooks/1/clientConfig/url", "value": "https://x/"},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "dbg"}},
            {"op": "add", "path": "/metadata/labels/a~1b", "value": "c"},
            {"op": "remove", "path": "/spec/replicas"},
            {"op": "test", "path": "/kind", "value": "X"},
            {"op": "copy", "from": "/a", "path": "/b"}
        ]);
        assert_eq!(
            written_by(ops.as_array().unwrap()),
            Some(json!({
                "webhooks": [null, {"clientConfig": {"url": "https://x/"}}],
                "spec": {"template": {"spec": {"containers": [{"name": "dbg"}]}}},
                "metadata": {"labels": {"a/b": "c"}}
            }))
        );
        // Nothing written; an index past the bound; a value in the way.
        assert_eq!(
            written_by(json!([{"op": "remove", "path": "/a"}]).as_array().unwrap()),
            None
        );
        let far = json!([{"op": "add", "path": "/rules/100000/verbs", "value": ["*"]}]);
        assert_eq!(
            written_by(far.as_array().unwrap()),
            Some(json!({"rules": []}))
        );
        let clash = json!([
            {"op": "replace", "path": "/spec", "value": 1},
            {"op": "replace", "path": "/spec/hostPID", "value": true}
        ]);
        assert_eq!(
            written_by(clash.as_array().unwrap()),
            Some(json!({"spec": 1}))
        );
    }
}

#[cfg(test)]
pub(super) mod test_support {
    //! Events shaped like the peers' published rule fixtures (Panther's test
    //! cases, Falco's and Elastic's rule conditions), written as JSON.

    use super::*;

    /// One audit event, as an API server writes it at RequestResponse level.
    pub struct Ev<'a> {
        pub verb: &'a str,
        pub group: &'a str,
        pub resource: &'a str,
        pub sub: &'a str,
        pub namespace: &'a str,
        pub name: &'a str,
        pub user: &'a str,
        pub request: Option<&'a str>,
        pub response: Option<&'a str>,
    }

    impl Default for Ev<'_> {
        fn default() -> Self {
            Ev {
                verb: "create",
                group: "",
                resource: "pods",
                sub: "",
                namespace: "",
                name: "",
                user: "alice@example.com",
                request: None,
                response: None,
            }
        }
    }

    impl Ev<'_> {
        pub fn json(&self) -> String {
            let mut doc = serde_json::json!({
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "level": "RequestResponse",
                "auditID": "0d1c2b3a-0000-4000-8000-000000000001",
                "stage": "ResponseComplete",
                "requestURI": "/api/v1/x",
                "verb": self.verb,
                "user": {"username": self.user, "groups": ["system:authenticated"]},
                "sourceIPs": ["203.0.113.7"],
                "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234",
                "objectRef": {"resource": self.resource, "apiGroup": self.group, "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 200},
            });
            let r = &mut doc["objectRef"];
            for (key, value) in [
                ("subresource", self.sub),
                ("namespace", self.namespace),
                ("name", self.name),
            ] {
                if !value.is_empty() {
                    r[key] = Value::from(value);
                }
            }
            for (key, body) in [
                ("requestObject", self.request),
                ("responseObject", self.response),
            ] {
                if let Some(body) = body {
                    doc[key] = serde_json::from_str(body).unwrap();
                }
            }
            doc.to_string()
        }

        /// `(rule, path, severity)` of each risk.
        pub fn risks(&self) -> Vec<(&'static str, String, Severity)> {
            let json = self.json();
            let ev: Event<'_> = serde_json::from_str(&json).unwrap();
            assess(&ev)
                .into_iter()
                .map(|r| {
                    let rule = match r.rule {
                        std::borrow::Cow::Borrowed(s) => s,
                        std::borrow::Cow::Owned(_) => "owned",
                    };
                    (rule, r.path, r.severity)
                })
                .collect()
        }

        pub fn rules(&self) -> Vec<&'static str> {
            self.risks().into_iter().map(|r| r.0).collect()
        }
    }
}
