//! GKE Cloud Audit Logs entries: a `LogEntry` whose `protoPayload` is a
//! `google.cloud.audit.AuditLog` of service `k8s.io`, turned into the audit
//! Event the API server logged.
//!
//! | Event | entry |
//! |---|---|
//! | `verb` | last segment of `methodName` (`io.k8s.core.v1.pods.exec.create`: `create`) |
//! | `objectRef` | `resourceName` (`core/v1/namespaces/default/pods/foo/exec`), else `methodName` |
//! | `requestURI` | made from `resourceName` (`/api/v1/...` for core, `/apis/GROUP/...` otherwise) |
//! | `user.username` | `authenticationInfo.principalEmail` |
//! | `userAgent`, `sourceIPs` | `requestMetadata.callerSuppliedUserAgent`, `callerIp` |
//! | `responseStatus.code` | `status.code`, a google.rpc code mapped to HTTP (absent or 0: 200) |
//! | `auditID` | `operation.id`, else `insertId`, else derived from the entry's bytes |
//! | timestamps | `timestamp` (else `receiveTimestamp`) |
//! | `annotations` | `labels` |
//! | `requestObject`, `responseObject` | `request`, `response`, without their top-level `@type` |
//! | `stage` | `ResponseComplete`: Cloud Logging records completed requests |
//!
//! Entries of other services (cluster operations of `container.googleapis.com`,
//! Compute, Deployment Manager) are rejected with the service they name.
//!
//! Cloud Logging writes each body as a protobuf `Any` in JSON, with the type
//! URL as a top-level `"@type"` member (`core.k8s.io/v1.Pod`, `k8s.io/Patch`,
//! `rbac.authorization.k8s.io/v1.ClusterRoleBinding`). The API server never
//! wrote it: left in, every patch would change a field `["@type"]`, and a
//! diff, a risk rule or a quiet rule would read an object that is not the
//! Kubernetes one. It is removed when the body is unpacked (see
//! [`without_type`]), so every later stage sees the object as a plain audit
//! event carries it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decode::arena::Arena;
use crate::decode::body::{self, Ctx};
use crate::decode::decoded::{Decoded, RejectReason};
use crate::decode::event::{Event, ObjectRef, ResponseStatus, UserInfo, derived_audit_id, opt_str};
use crate::decode::snippet;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    #[serde(borrow)]
    proto_payload: Payload<'a>,
    #[serde(borrow, default)]
    operation: Option<Operation<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    insert_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    labels: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    receive_timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    service_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    method_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    resource_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    authentication_info: Option<AuthenticationInfo<'a>>,
    #[serde(borrow, default)]
    request_metadata: Option<RequestMetadata<'a>>,
    #[serde(default)]
    status: Option<RpcStatus>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationInfo<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    principal_email: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    principal_subject: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestMetadata<'a> {
    // Panther's fixtures spell it `callerIP`.
    #[serde(borrow, default, alias = "callerIP", deserialize_with = "opt_str")]
    caller_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    caller_supplied_user_agent: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RpcStatus {
    #[serde(default)]
    code: Option<i64>,
}

#[derive(Deserialize)]
struct Operation<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    id: Option<Cow<'a, str>>,
}

/// One entry: an audit event, or a rejection that names why not.
pub(super) fn decode<'a>(doc: &'a str, line: usize, ctx: Ctx<'a>, out: &mut Decoded<'a>) {
    let entry: Entry<'a> = match serde_json::from_str(doc) {
        Ok(e) => e,
        Err(e) => {
            return out.reject(
                line,
                RejectReason::NotAnEvent,
                format!("not a Cloud Audit Logs entry: {}", snippet::error(&e)),
            );
        }
    };
    match to_event(entry, doc) {
        Ok(mut event) => {
            if let Some(arena) = ctx.arena {
                event.request_object = event.request_object.map(|b| without_type(b, arena));
                event.response_object = event.response_object.map(|b| without_type(b, arena));
            }
            if let Err(e) = body::push_event(event, line, doc, &String::new, out) {
                out.reject(line, e.reason(), format!("GKE entry: {e}"));
            }
        }
        Err(message) => out.reject(line, RejectReason::NotAnEvent, message),
    }
}

fn to_event<'a>(entry: Entry<'a>, doc: &str) -> Result<Event<'a>, String> {
    let p = entry.proto_payload;
    let method = p.method_name.as_deref().unwrap_or("");
    match p.service_name.as_deref() {
        Some("k8s.io") => {}
        Some(other) => {
            return Err(format!("not a Kubernetes audit entry: serviceName {other}"));
        }
        // Some exports drop the service; the method still says Kubernetes.
        None if method.starts_with("io.k8s.") => {}
        None => {
            return Err(format!(
                "not a Kubernetes audit entry: no serviceName, methodName {method:?}"
            ));
        }
    }
    let Some(method_name) = p.method_name.as_ref().filter(|m| m.starts_with("io.k8s.")) else {
        return Err(format!(
            "not a Kubernetes audit entry: methodName {method:?} is not io.k8s.*"
        ));
    };
    let from_method = parse_method(&method_name["io.k8s.".len()..]);
    let verb = sub(method_name, from_method.verb);

    let from_name = p
        .resource_name
        .as_ref()
        .map(|rn| (rn, parse_resource_name(rn)));
    let (target, source) = match &from_name {
        Some((rn, Some(t))) => (Some(*t), Some(*rn)),
        _ => (from_method.target, Some(method_name)),
    };
    let request_uri = match &from_name {
        Some((rn, Some(_))) => Some(match rn.strip_prefix("core/") {
            Some(rest) => format!("/api/{rest}"),
            None => format!("/apis/{rn}"),
        }),
        // A non-resource path such as `/readyz`.
        Some((rn, None)) => Some(format!("/{}", rn.trim_start_matches('/'))),
        None => target.map(|t| t.uri()),
    };
    let object_ref = target.zip(source).map(|(t, src)| ObjectRef {
        resource: Some(sub(src, t.resource)),
        namespace: t.namespace.map(|n| sub(src, n)),
        name: t.name.map(|n| sub(src, n)),
        uid: None,
        api_group: (!t.group.is_empty() && t.group != "core").then(|| sub(src, t.group)),
        api_version: Some(sub(src, t.version)),
        subresource: match t.subresource {
            Some(s) => Some(sub(src, s)),
            // `resourceName` may lack what `methodName` says.
            None => from_method
                .target
                .and_then(|m| m.subresource)
                .map(|s| sub(method_name, s)),
        },
    });

    let code = p.status.and_then(|s| s.code).unwrap_or(0);
    let http = http_status(code);
    let user = p.authentication_info.and_then(|a| {
        a.principal_email
            .or(a.principal_subject)
            .map(|name| UserInfo {
                username: Some(name),
                uid: None,
                groups: None,
                extra: None,
            })
    });
    let (caller_ip, user_agent) = match p.request_metadata {
        Some(m) => (m.caller_ip, m.caller_supplied_user_agent),
        None => (None, None),
    };
    let audit_id = entry
        .operation
        .and_then(|o| o.id)
        .filter(|id| !id.is_empty())
        .or(entry.insert_id.filter(|id| !id.is_empty()))
        .unwrap_or_else(|| Cow::Owned(derived_audit_id(doc.as_bytes())));
    let time = entry.timestamp.or(entry.receive_timestamp);
    let level = if p.response.is_some() {
        "RequestResponse"
    } else if p.request.is_some() {
        "Request"
    } else {
        "Metadata"
    };
    Ok(Event {
        kind: Some(Cow::Borrowed("Event")),
        api_version: Some(Cow::Borrowed("audit.k8s.io/v1")),
        level: Some(Cow::Borrowed(level)),
        audit_id: Some(audit_id),
        stage: Some(Cow::Borrowed("ResponseComplete")),
        request_uri: request_uri.map(|u| crate::decode::JsonStr::Text(Cow::Owned(u))),
        verb: Some(verb),
        user,
        source_ips: caller_ip.map(|ip| std::iter::once(ip).collect()),
        user_agent,
        object_ref,
        response_status: Some(ResponseStatus {
            code: Some(http),
            status: Some(Cow::Borrowed(if http < 400 {
                "Success"
            } else {
                "Failure"
            })),
            reason: None,
        }),
        request_object: p.request,
        response_object: p.response,
        request_received_timestamp: time.clone(),
        stage_timestamp: time,
        annotations: entry.labels,
        ..Event::default()
    })
}

/// `body` without its top-level `"@type"` member, kept in `arena`; `body`
/// itself when it has none (the common case costs a substring search). When
/// the type URL was the only type the body carried, its kind is kept as
/// `kind` (`core.k8s.io/v1.Status` is a `Status`): the correlation stage tells
/// an object from a `Status` reply by it. The API version is not derived:
/// the URL's group (`core.k8s.io`, `apps.k8s.io`) does not spell the API
/// group, and nothing downstream reads a body's `apiVersion` but the
/// apply-shape check of a patch, whose type URL (`k8s.io/Patch`) names no
/// kind. Without an arena ([`crate::decode::decode_bytes`]) a body is kept
/// as logged.
fn without_type<'a>(body: &'a RawValue, arena: &'a Arena) -> &'a RawValue {
    if !body.get().contains("\"@type\"") {
        return body;
    }
    let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(body.get()) else {
        // Not an object (a JSON patch is an array): nothing at its top level.
        return body;
    };
    let Some(type_url) = members.iter().find(|(k, _)| k == "@type").map(|m| m.1) else {
        return body;
    };
    let has_kind = members.iter().any(|(k, _)| k == "kind");
    let mut text = String::with_capacity(body.get().len());
    text.push('{');
    let kept = members.iter().filter(|(k, _)| k != "@type");
    let derived = (!has_kind)
        .then(|| serde_json::from_str::<&str>(type_url.get()).ok())
        .flatten()
        .and_then(kind_of_type_url);
    for (i, (key, value)) in kept.enumerate() {
        if i > 0 {
            text.push(',');
        }
        push_member(&mut text, key, value.get());
    }
    if let Some(kind) = derived {
        if text.len() > 1 {
            text.push(',');
        }
        push_member(
            &mut text,
            "kind",
            &serde_json::Value::from(kind).to_string(),
        );
    }
    text.push('}');
    let text = arena.keep_str(text);
    serde_json::from_str::<&RawValue>(text).unwrap_or(body)
}

fn push_member(text: &mut String, key: &str, value: &str) {
    text.push_str(&serde_json::Value::from(key).to_string());
    text.push(':');
    text.push_str(value);
}

/// `Pod` of `core.k8s.io/v1.Pod`: the part after the version, when it reads
/// like a kind. `k8s.io/Patch` and `type.googleapis.com/...` name none.
fn kind_of_type_url(url: &str) -> Option<&str> {
    let (_, last) = url.rsplit_once('/')?;
    let (version, kind) = last.split_once('.')?;
    let starts_upper = kind.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    (is_version(version) && starts_upper && kind.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(kind)
}

/// The top-level members of a JSON object, their values unparsed.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<BorrowedKey<'de>>()? {
                    members.push((key.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// A key borrowed from the input when it has no escapes.
#[derive(Deserialize)]
#[serde(transparent)]
struct BorrowedKey<'a>(#[serde(borrow)] Cow<'a, str>);

/// google.rpc.Code to the HTTP status it stands for (google/rpc/code.proto).
fn http_status(code: i64) -> i64 {
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// What a request was about, as slices of `resourceName` or `methodName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target<'s> {
    /// `core` for the core group.
    group: &'s str,
    version: &'s str,
    resource: &'s str,
    subresource: Option<&'s str>,
    namespace: Option<&'s str>,
    name: Option<&'s str>,
}

impl Target<'_> {
    /// A request URI for an entry without `resourceName`.
    fn uri(&self) -> String {
        let mut uri = if self.group.is_empty() || self.group == "core" {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(ns) = self.namespace {
            uri.push_str("/namespaces/");
            uri.push_str(ns);
        }
        for part in [Some(self.resource), self.name, self.subresource]
            .into_iter()
            .flatten()
        {
            uri.push('/');
            uri.push_str(part);
        }
        uri
    }
}

/// `GROUP/VERSION/[namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]]`, read as
/// the API server reads a path: `namespaces/NS` alone is the Namespace NS
/// (logged with NS as its namespace too), `namespaces/NS/status` its
/// subresource. `None` for a non-resource path (`/readyz`).
fn parse_resource_name(rn: &str) -> Option<Target<'_>> {
    if rn.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = rn.split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        [group, version, rest @ ..] if !rest.is_empty() && is_version(version) => {
            (*group, *version, rest)
        }
        _ => return None,
    };
    let (namespace, resource, name, subresource) = match rest {
        ["namespaces", ns] => (Some(*ns), "namespaces", Some(*ns), None),
        ["namespaces", ns, sub @ ("status" | "finalize")] => {
            (Some(*ns), "namespaces", Some(*ns), Some(*sub))
        }
        ["namespaces", ns, resource, more @ ..] => (
            Some(*ns),
            *resource,
            more.first().copied(),
            more.get(1).copied(),
        ),
        [resource, more @ ..] => (None, *resource, more.first().copied(), more.get(1).copied()),
        [] => return None,
    };
    Some(Target {
        group,
        version,
        resource,
        subresource,
        namespace,
        name,
    })
}

struct Method<'s> {
    verb: &'s str,
    target: Option<Target<'s>>,
}

/// `GROUP.VERSION.RESOURCE[.SUBRESOURCE].VERB` (after `io.k8s.`); the group
/// may hold dots, and is GKE's short name (`rbac`, not
/// `rbac.authorization.k8s.io`), so `resourceName` is preferred. Without a
/// version segment (`io.k8s.readyz`, a non-resource request) there is no
/// target, and the verb is the last segment as it is: the policy treats
/// anything but a write verb as a read.
fn parse_method(m: &str) -> Method<'_> {
    let (path, verb) = m.rsplit_once('.').unwrap_or(("", m));
    let segments: Vec<&str> = path.split('.').collect();
    let target = segments.iter().position(|s| is_version(s)).and_then(|v| {
        let resource = segments.get(v + 1)?;
        let group_len = segments[..v].iter().map(|s| s.len() + 1).sum::<usize>();
        Some(Target {
            group: &path[..group_len.saturating_sub(1)],
            version: segments[v],
            resource,
            subresource: segments.get(v + 2).copied(),
            namespace: None,
            name: None,
        })
    });
    Method { verb, target }
}

/// `v1`, `v2beta1`, `v1alpha3`.
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let rest = &rest[digits..];
    rest.is_empty()
        || ["alpha", "beta"].iter().any(|p| {
            rest.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// `piece`, a slice of `src`, as a `Cow` that borrows as long as `src` does.
fn sub<'a>(src: &Cow<'a, str>, piece: &str) -> Cow<'a, str> {
    if let Cow::Borrowed(s) = src {
        let start = (piece.as_ptr() as usize).wrapping_sub(s.as_ptr() as usize);
        if let Some(p) = s.get(start..start.wrapping_add(piece.len()))
            && p.as_ptr() == piece.as_ptr()
        {
            return Cow::Borrowed(p);
        }
    }
    Cow::Owned(piece.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_read_like_api_paths() {
        let t = parse_resource_name("core/v1/namespaces/default/pods/foo/exec").unwrap();
        assert_eq!(
            t,
            Target {
                group: "core",
                version: "v1",
                resource: "pods",
                subresource: Some("exec"),
                namespace: Some("default"),
                name: Some("foo"),
            }
        );
        let t = parse_resource_name("apps/v1/namespaces/shop/deployments/api").unwrap();
        assert_eq!(
            (t.group, t.resource, t.namespace, t.name, t.subresource),
            ("apps", "deployments", Some("shop"), Some("api"), None)
        );
        let t = parse_resource_name("rbac.authorization.k8s.io/v1/clusterroles/admin").unwrap();
        assert_eq!(
            (t.group, t.resource, t.namespace, t.name),
            (
                "rbac.authorization.k8s.io",
                "clusterroles",
                None,
                Some("admin")
            )
        );
        let t = parse_resource_name("core/v1/namespaces/team-a").unwrap();
        assert_eq!(
            (t.resource, t.namespace, t.name),
            ("namespaces", Some("team-a"), Some("team-a"))
        );
        let t = parse_resource_name("core/v1/namespaces/team-a/finalize").unwrap();
        assert_eq!(
            (t.resource, t.name, t.subresource),
            ("namespaces", Some("team-a"), Some("finalize"))
        );
        let t = parse_resource_name("core/v1/namespaces/default/pods").unwrap();
        assert_eq!(
            (t.resource, t.namespace, t.name),
            ("pods", Some("default"), None)
        );
        let t = parse_resource_name("core/v1/secrets").unwrap();
        assert_eq!((t.resource, t.namespace, t.name), ("secrets", None, None));
        assert_eq!(parse_resource_name("/readyz"), None);
        assert_eq!(parse_resource_name("readyz"), None);
        assert_eq!(parse_resource_name("projects/p/zones/z/clusters/c"), None);
    }

    #[test]
    fn method_names_give_the_verb_and_a_fallback_target() {
        let m = parse_method("core.v1.pods.exec.create");
        assert_eq!(m.verb, "create");
        let t = m.target.unwrap();
        assert_eq!((t.group, t.version, t.resource), ("core", "v1", "pods"));
        assert_eq!(t.subresource, Some("exec"));
        let m = parse_method("admissionregistration.k8s.io.v1.mutatingwebhookconfigurations.patch");
        assert_eq!(m.verb, "patch");
        assert_eq!(m.target.unwrap().group, "admissionregistration.k8s.io");
        let m = parse_method("apps.v1.deployments.scale.update");
        assert_eq!(m.target.unwrap().subresource, Some("scale"));
        let m = parse_method("readyz");
        assert_eq!((m.verb, m.target), ("readyz", None));
        assert!(is_version("v1") && is_version("v2beta1") && is_version("v1alpha3"));
        assert!(
            !is_version("v") && !is_version("vx") && !is_version("v1beta") && !is_version("core")
        );
    }

    #[test]
    fn rpc_codes_map_to_http() {
        for (rpc, http) in [
            (0, 200),
            (3, 400),
            (5, 404),
            (6, 409),
            (7, 403),
            (16, 401),
            (13, 500),
            (2, 500),
        ] {
            assert_eq!(http_status(rpc), http, "{rpc}");
        }
    }

    #[test]
    fn slices_borrow_from_borrowed_sources() {
        let text = String::from("core/v1/pods");
        let src: Cow<'_, str> = Cow::Borrowed(&text);
        assert!(matches!(sub(&src, &text[8..]), Cow::Borrowed("pods")));
        let owned: Cow<'_, str> = Cow::Owned(text.clone());
        assert_eq!(sub(&owned, &text[8..]), "pods");
        assert!(matches!(sub(&src, "elsewhere"), Cow::Owned(_)));
    }
}
