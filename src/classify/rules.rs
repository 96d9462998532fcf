//! The verdict for one event. Cheap tests first: more than half of a real
//! audit stream is reads, and they must cost next to nothing.

use crate::decode::{Event, Stage, UserInfo};

use super::policy::{Pipeline, Policy, resource_matches};
use super::severity::{Target, severity};
use super::verdict::{Drift, FindingType, IgnoreReason, Severity, Verdict};

/// Resources whose "create" stores nothing: reviews answered on the spot.
const VIRTUAL: &[&str] = &[
    "tokenreviews",
    "subjectaccessreviews",
    "selfsubjectaccessreviews",
    "localsubjectaccessreviews",
    "selfsubjectreviews",
    "selfsubjectrulesreviews",
];

/// High-volume resources written by controllers all day. Leases are not
/// here: a change of a lock's holder is a takeover; renewals are quiet
/// ([`super::quiet`]). Deleting events is not noise either: it hides tracks.
const NOISE: &[&str] = &["events", "endpoints", "endpointslices"];

/// What a request does to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Mutation,
    /// exec, attach, portforward, debug, proxy: security drift even though
    /// no spec changes.
    Interactive,
}

pub fn access_kind(ev: &Event<'_>) -> Access {
    let verb = ev.verb();
    let sub = ev.subresource();
    if !sub.is_empty() {
        let resource = ev.resource();
        match sub {
            // kubectl uses WebSocket (verb `get`) by default now, SPDY (`create`) before.
            "exec" | "attach" | "portforward" if resource == "pods" => {
                return if matches!(verb, "get" | "create") {
                    Access::Interactive
                } else {
                    Access::Read
                };
            }
            "ephemeralcontainers" if resource == "pods" => {
                return if matches!(verb, "update" | "patch") {
                    Access::Interactive
                } else {
                    Access::Read
                };
            }
            "proxy" => return Access::Interactive,
            _ => {}
        }
    }
    match verb {
        "create" | "update" | "patch" | "delete" | "deletecollection" => Access::Mutation,
        _ => Access::Read,
    }
}

/// Decides the verdict of one decoded event.
pub fn classify(policy: &Policy, ev: &Event<'_>, stage: Stage) -> Verdict {
    let access = access_kind(ev);
    if access == Access::Read {
        return Verdict::Ignored(IgnoreReason::Read);
    }
    match stage {
        // Authorization and impersonation are not known yet.
        Stage::RequestReceived => return Verdict::Ignored(IgnoreReason::Stage),
        Stage::ResponseStarted if access != Access::Interactive => {
            return Verdict::Ignored(IgnoreReason::Stage);
        }
        _ => {}
    }
    if let Some(code) = ev.status_code() {
        let ok = (200..300).contains(&code) || (access == Access::Interactive && code == 101);
        // A node credential refused on another node's objects changed
        // nothing, but the attempt is what a stolen kubelet credential
        // looks like under NodeRestriction: it is judged like a write.
        let attempt = access == Access::Mutation && super::risk::node::off_node(ev).is_some();
        if !ok && !attempt {
            return Verdict::Ignored(IgnoreReason::Failed);
        }
    }
    if ev.query_param("dryRun").as_deref() == Some("All") || dry_run_in_body(ev) {
        return Verdict::Ignored(IgnoreReason::DryRun);
    }
    let resource = ev.resource();
    let group = ev.api_group();
    if VIRTUAL.contains(&resource) {
        return Verdict::Ignored(IgnoreReason::VirtualResource);
    }
    if NOISE.contains(&resource)
        && ev.subresource().is_empty()
        && !matches!(ev.verb(), "delete" | "deletecollection")
    {
        return Verdict::Ignored(IgnoreReason::NoiseResource);
    }
    // Ignoring a kind ignores its churn, never a shell opened into it.
    if access == Access::Mutation
        && policy
            .ignore_resources
            .iter()
            .any(|r| resource_matches(r, resource, group))
    {
        return Verdict::Ignored(IgnoreReason::ConfiguredResource);
    }
    let namespace = ev.namespace();
    if !namespace.is_empty() && policy.ignore_namespaces.contains(namespace) {
        return Verdict::Ignored(IgnoreReason::ConfiguredNamespace);
    }
    decide(policy, ev, access)
}

/// The options of a delete travel in its body: `kubectl delete
/// --dry-run=server` sends `DeleteOptions{dryRun: [All]}`, not a query
/// parameter; an eviction carries them as `deleteOptions`. Without a request
/// body (a `Metadata`-level event) a dry-run delete cannot be told apart.
fn dry_run_in_body(ev: &Event<'_>) -> bool {
    #[derive(serde::Deserialize)]
    struct Options<'a> {
        #[serde(borrow, default, rename = "dryRun")]
        dry_run: Option<Vec<std::borrow::Cow<'a, str>>>,
        #[serde(borrow, default, rename = "deleteOptions")]
        delete_options: Option<Box<Options<'a>>>,
    }
    impl Options<'_> {
        fn all(&self) -> bool {
            self.dry_run.iter().flatten().any(|d| d == "All")
                || self.delete_options.as_ref().is_some_and(|o| o.all())
        }
    }
    let deleting = matches!(ev.verb(), "delete" | "deletecollection")
        || (ev.subresource() == "eviction" && ev.resource() == "pods");
    deleting
        && ev
            .request_object
            .and_then(|body| serde_json::from_str::<Options<'_>>(body.get()).ok())
            .is_some_and(|o| o.all())
}

fn decide(policy: &Policy, ev: &Event<'_>, access: Access) -> Verdict {
    // A kubelet scrape reads metrics on an exact path list, whoever asks.
    if access == Access::Interactive
        && policy
            .quiet
            .on
            .contains(&super::quiet::Quiet::KubeletScrape)
        && super::interactive::is_declared_scrape(ev)
    {
        return Verdict::Allowed(super::AllowedBy::Quiet(super::quiet::Quiet::KubeletScrape));
    }
    let empty = UserInfo::default();
    let user = ev.user.as_ref().unwrap_or(&empty);
    let impersonated = ev.impersonated_user.as_ref();
    let user_agent = ev.user_agent.as_deref().unwrap_or("");
    let mut reasons = Vec::new();

    // The real actor is a pipeline: sanctioned only if its constraints hold.
    if let Some(index) = matching_pipeline(policy, user) {
        let pipeline = &policy.pipelines[index];
        if !user_agent_allowed(pipeline, user_agent) {
            reasons.push(format!(
                "user agent {user_agent:?} is not one of pipeline {:?}'s user_agents",
                pipeline.name
            ));
        }
        if let Some(problem) = source_problem(pipeline, ev.source_ips.as_deref()) {
            reasons.push(problem);
        }
        if !reasons.is_empty() {
            return drift(
                policy,
                ev,
                FindingType::PipelineCredentialMisuse,
                Some(index),
                reasons,
            );
        }
        if access == Access::Interactive {
            // Pipelines apply manifests; they do not open shells.
            reasons.push(format!(
                "pipeline {:?} opened an interactive session",
                pipeline.name
            ));
            return drift(
                policy,
                ev,
                FindingType::InteractiveAccess,
                Some(index),
                reasons,
            );
        }
        return Verdict::Sanctioned { pipeline: index };
    }

    if let Some(imp) = impersonated
        && let Some(index) = matching_pipeline(policy, imp)
    {
        reasons.push(format!(
            "{:?} impersonated pipeline {:?}'s identity {:?}",
            user.username.as_deref().unwrap_or(""),
            policy.pipelines[index].name,
            imp.username.as_deref().unwrap_or("")
        ));
        return drift(
            policy,
            ev,
            FindingType::PipelineImpersonation,
            Some(index),
            reasons,
        );
    }

    // A node is trusted for its own node's objects only.
    let off_node = super::risk::node::off_node(ev).is_some();
    if is_system(policy, user) && !off_node {
        return Verdict::System;
    }
    let mut pending = super::Pending::default();
    if access == Access::Mutation {
        if let Some(rule) = policy.quiet.by_identity(ev) {
            return Verdict::Allowed(super::AllowedBy::Quiet(rule));
        }
        match super::allow::coverage(&policy.allowances, ev) {
            super::allow::Coverage::Whole(i) => {
                return Verdict::Allowed(super::AllowedBy::Allowance(i));
            }
            super::allow::Coverage::IfFields(f) => pending.fields = f,
            super::allow::Coverage::None => {}
        }
        pending.quiet = policy.quiet.may_cover_by_fields(ev);
    }

    if let Some(imp) = impersonated {
        reasons.push(format!(
            "{:?} acted as {:?} by impersonation",
            user.username.as_deref().unwrap_or(""),
            imp.username.as_deref().unwrap_or("")
        ));
    }

    if !user_agent.is_empty()
        && let Some(index) = policy.pipelines.iter().position(|p| {
            !p.user_agents.is_empty() && p.user_agents.iter().any(|re| re.is_match(user_agent))
        })
    {
        reasons.insert(
            0,
            format!(
                "user agent {user_agent:?} belongs to pipeline {:?} but the identity does not",
                policy.pipelines[index].name
            ),
        );
        return drift(
            policy,
            ev,
            FindingType::UserAgentSpoofing,
            Some(index),
            reasons,
        );
    }

    if access == Access::Interactive {
        reasons.insert(0, interactive_reason(ev));
        return drift(policy, ev, FindingType::InteractiveAccess, None, reasons);
    }

    reasons.insert(0, "identity matches no sanctioned pipeline".to_owned());
    if off_node {
        reasons.push(format!(
            "{:?} is a node credential, trusted for its own node's objects only",
            user.username.as_deref().unwrap_or("")
        ));
    }
    let mut verdict = drift(policy, ev, FindingType::OutOfBandChange, None, reasons);
    if let Verdict::Drift(d) = &mut verdict {
        d.pending = pending;
        if is_anonymous(user) {
            // No one may write without credentials: an open API server.
            d.severity = Severity::Critical;
            d.reasons
                .push("an unauthenticated request changed the cluster".to_owned());
        }
    }
    verdict
}

fn drift(
    policy: &Policy,
    ev: &Event<'_>,
    finding_type: FindingType,
    pipeline: Option<usize>,
    mut reasons: Vec<String>,
) -> Verdict {
    if ev.status_code().is_none() {
        reasons.push("the event has no response status; assumed successful".to_owned());
    }
    let target = Target {
        resource: ev.resource(),
        group: ev.api_group(),
        namespace: ev.namespace(),
        verb: ev.verb(),
        finding_type,
    };
    let mut risks = Vec::new();
    let severity = if finding_type == FindingType::InteractiveAccess {
        // A session ranks by what it runs: a token read through a shell is
        // not a metrics scrape.
        let t = super::interactive::triage(ev);
        reasons.push(format!("{}: {}", t.rule, t.detail));
        risks.push(crate::model::Risk {
            rule: t.rule.into(),
            path: String::new(),
            value: serde_json::Value::from(t.detail),
            severity: t.severity,
        });
        super::severity::overridden(policy, &target).unwrap_or(t.severity)
    } else {
        severity(policy, &target)
    };
    Verdict::Drift(Drift {
        finding_type,
        severity,
        pipeline,
        reasons,
        pending: super::Pending::default(),
        risks,
    })
}

fn interactive_reason(ev: &Event<'_>) -> String {
    let what = match ev.subresource() {
        "exec" => "exec into a pod",
        "attach" => "attach to a pod",
        "portforward" => "port-forward to a pod",
        "ephemeralcontainers" => "ephemeral debug container",
        _ => "proxy to a cluster endpoint",
    };
    format!("interactive access: {what}")
}

fn matching_pipeline(policy: &Policy, user: &UserInfo<'_>) -> Option<usize> {
    let username = user.username.as_deref().unwrap_or("");
    let groups = user.groups.as_deref().unwrap_or(&[]);
    policy.pipelines.iter().position(|p| {
        (!username.is_empty() && p.users.contains(username))
            || (!p.groups.is_empty() && groups.iter().any(|g| p.groups.contains(g.as_ref())))
    })
}

fn user_agent_allowed(pipeline: &Pipeline, user_agent: &str) -> bool {
    super::policy::user_agent_ok(&pipeline.user_agents, user_agent)
}

/// Every address in `sourceIPs` must be inside the pipeline's CIDRs: the first
/// is whatever the client claimed (X-Forwarded-For), the last is the hop the
/// API server saw, and a stolen token can forge only the former.
fn source_problem(
    pipeline: &Pipeline,
    source_ips: Option<&[std::borrow::Cow<'_, str>]>,
) -> Option<String> {
    if pipeline.source_cidrs.is_empty() {
        return None;
    }
    match super::policy::outside(&pipeline.source_cidrs, source_ips.unwrap_or(&[])) {
        Ok(()) => None,
        Err(None) => Some(format!(
            "no source address recorded, and pipeline {:?} is restricted to source_cidrs",
            pipeline.name
        )),
        Err(Some(ip)) => Some(format!(
            "source address {ip} is outside pipeline {:?}'s source_cidrs",
            pipeline.name
        )),
    }
}

fn is_anonymous(user: &UserInfo<'_>) -> bool {
    user.username.as_deref() == Some("system:anonymous")
        || user
            .groups
            .iter()
            .flatten()
            .any(|g| g == "system:unauthenticated")
}

fn is_system(policy: &Policy, user: &UserInfo<'_>) -> bool {
    let username = user.username.as_deref().unwrap_or("");
    if username.is_empty() {
        return false;
    }
    if policy.system.users.contains(username) {
        return true;
    }
    let groups = user.groups.as_deref().unwrap_or(&[]);
    if policy.system.nodes
        && username.starts_with(super::baseline::NODE_PREFIX)
        && groups.iter().any(|g| g == super::baseline::NODES_GROUP)
    {
        return true;
    }
    !policy.system.groups.is_empty()
        && groups
            .iter()
            .any(|g| policy.system.groups.contains(g.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(json: &str) -> Verdict {
        let ev: Event<'_> = serde_json::from_str(json).unwrap();
        classify(&Policy::baseline(), &ev, Stage::ResponseComplete)
    }

    #[test]
    fn a_dry_run_delete_is_known_by_its_body() {
        let dry = r#"{"verb":"delete","requestURI":"/api/v1/namespaces/s/configmaps/c","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"s","name":"c"},"responseStatus":{"code":200},"requestObject":{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"],"propagationPolicy":"Background"}}"#;
        assert_eq!(verdict(dry), Verdict::Ignored(IgnoreReason::DryRun));
        let evict = r#"{"verb":"create","requestURI":"/api/v1/namespaces/s/pods/p/eviction","user":{"username":"alice"},"objectRef":{"resource":"pods","subresource":"eviction","namespace":"s","name":"p"},"responseStatus":{"code":201},"requestObject":{"kind":"Eviction","deleteOptions":{"dryRun":["All"]}}}"#;
        assert_eq!(verdict(evict), Verdict::Ignored(IgnoreReason::DryRun));
        let real = dry.replace(r#""dryRun":["All"],"#, "");
        assert!(matches!(verdict(&real), Verdict::Drift(_)));
        // A create whose object happens to have a dryRun field is no dry run.
        let create = r#"{"verb":"create","requestURI":"/api/v1/namespaces/s/configmaps","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"s"},"responseStatus":{"code":201},"requestObject":{"kind":"ConfigMap","dryRun":["All"]}}"#;
        assert!(matches!(verdict(create), Verdict::Drift(_)));
    }

    fn by_node(groups: &str, name: &str, code: u16) -> String {
        format!(
            r#"{{"verb":"patch","requestURI":"/api/v1/nodes/{name}/status","user":{{"username":"system:node:pool-1-a","groups":{groups}}},"objectRef":{{"resource":"nodes","name":"{name}","subresource":"status"}},"responseStatus":{{"code":{code}}}}}"#
        )
    }

    /// A kubelet is system for its own node only; another node's object is
    /// a finding, refused (NodeRestriction's 403) or not, and a refusal on
    /// its own objects is an ordinary failed request.
    #[test]
    fn a_node_is_system_for_its_own_node_only() {
        let kubelet = r#"["system:nodes","system:authenticated"]"#;
        assert_eq!(verdict(&by_node(kubelet, "pool-1-a", 200)), Verdict::System);
        for (groups, code) in [(kubelet, 200), (kubelet, 403), ("[]", 200), ("[]", 403)] {
            let v = verdict(&by_node(groups, "pool-1-b", code));
            let Verdict::Drift(d) = v else {
                panic!("{groups} {code}: {v:?}")
            };
            assert_eq!(d.finding_type, FindingType::OutOfBandChange);
            assert!(
                d.reasons
                    .iter()
                    .any(|r| r.contains("own node's objects only")),
                "{:?}",
                d.reasons
            );
        }
        assert_eq!(
            verdict(&by_node(kubelet, "pool-1-a", 403)),
            Verdict::Ignored(IgnoreReason::Failed)
        );
    }
}
