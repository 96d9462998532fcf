//! The admission decision: the review rewritten as the audit event the same
//! request will produce, judged by the policy the audit path uses, then the
//! mode, break-glass and the message. No I/O: the inventories are read
//! under a read lock.

use std::borrow::Cow;

use jiff::Timestamp;
use regex::Regex;
use serde::Serialize;
use serde_json::value::RawValue;

use super::handoff::Admitted;
use super::review::Request;
use crate::classify::{self, FindingType, Policy, Severity, Verdict};
use crate::config::{AdmissionConfig, AdmissionMode};
use crate::context::Inventories;
use crate::decode::{Event, Stage};
use crate::model::{ManagedBy, ObjectRef, Owner};

/// Clients people drive by hand: a pipeline identity writing through one
/// is a stolen or borrowed credential.
const HAND_TOOLS: &[&str] = &["kubectl", "k9s", "Mozilla", "lens", "OpenLens", "headlamp"];

/// What admission concluded about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to object to (system, sanctioned, allowed, unmanaged).
    Allowed,
    /// A finding the mode lets through (`audit`).
    Audited,
    /// Let through with a warning (`warn`).
    Warned,
    Denied,
    /// Would be denied; a break-glass let it through.
    BreakGlass,
    /// Not a write driftwatch judges (CONNECT, an unknown operation).
    NotJudged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Audited => "audited",
            Outcome::Warned => "warned",
            Outcome::Denied => "denied",
            Outcome::BreakGlass => "break_glass",
            Outcome::NotJudged => "not_judged",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    pub finding_type: Option<FindingType>,
    pub severity: Option<Severity>,
    pub mode: Option<AdmissionMode>,
    pub managed_by: Option<ManagedBy>,
    pub reasons: Vec<String>,
    /// What the client is told (the denial or the warning).
    pub message: Option<String>,
    /// Who let a break-glass through, and why.
    pub break_glass: Option<String>,
    /// What the request's audit event may lack (see [`super::handoff`]).
    pub handoff: Option<Admitted>,
}

impl Decision {
    fn allowed(outcome: Outcome) -> Decision {
        Decision {
            outcome,
            finding_type: None,
            severity: None,
            mode: None,
            managed_by: None,
            reasons: Vec::new(),
            message: None,
            break_glass: None,
            handoff: None,
        }
    }
}

/// Everything a decision needs, built once at start.
pub struct Judge {
    /// The policy with what a review cannot show (user agents, source
    /// addresses) taken out of its pipelines and allowances.
    policy: Policy,
    /// Each pipeline's user agents, from the real policy.
    agents: Vec<(String, Vec<Regex>)>,
    config: AdmissionConfig,
    inventories: Inventories,
}

impl Judge {
    pub fn new(policy: &Policy, config: AdmissionConfig, inventories: Inventories) -> Judge {
        Judge {
            policy: policy.without_network_facts(),
            agents: policy
                .pipelines
                .iter()
                .map(|p| (p.name.clone(), p.user_agents.clone()))
                .collect(),
            config,
            inventories,
        }
    }

    pub fn judge(&self, cluster: &str, req: &Request<'_>, now: Timestamp) -> Decision {
        let Some(verb) = verb(req) else {
            return Decision::allowed(Outcome::NotJudged);
        };
        let text = synthetic_event(req, verb, now);
        let Ok(ev) = Event::parse(&text) else {
            return Decision::allowed(Outcome::NotJudged);
        };
        let (verdict, changes) = self.verdict(&ev, req);
        if matches!(verdict, Verdict::System | Verdict::Ignored(_)) {
            return Decision::allowed(Outcome::Allowed);
        }
        let (managed, owner) = self.managed(cluster, &ev, req);
        let handoff = Some(Admitted {
            cluster: cluster.to_owned(),
            object: ObjectRef::of(&ev),
            changes,
            managed_by: managed.clone(),
            owner,
        });
        let allowed = Decision {
            handoff: handoff.clone(),
            ..Decision::allowed(Outcome::Allowed)
        };
        let Verdict::Drift(drift) = verdict else {
            return allowed;
        };
        let involves_pipeline = drift.finding_type.involves_pipeline();
        if drift.finding_type != FindingType::OutOfBandChange && !involves_pipeline {
            return allowed;
        }
        if !involves_pipeline && managed.as_ref().is_none_or(|m| m.tool == "helm") {
            // Helm alone is often run by people: only GitOps pipelines'
            // objects are protected.
            return allowed;
        }
        let mut severity = drift.severity;
        let mut reasons = drift.reasons;
        if let Some(m) = &managed {
            classify::raise_severity_for_managed(&mut severity, &mut reasons, m);
        }
        let mode = self
            .config
            .mode_for(req.namespace.as_str(), drift.finding_type);
        let mut d = Decision {
            outcome: Outcome::Audited,
            finding_type: Some(drift.finding_type),
            severity: Some(severity),
            mode: Some(mode),
            message: None,
            break_glass: None,
            managed_by: managed,
            reasons,
            handoff,
        };
        if mode == AdmissionMode::Audit {
            return d;
        }
        let break_glass = if involves_pipeline {
            None
        } else {
            self.break_glass(&ev, req, now)
        };
        let message = self.message(&d, req, break_glass.as_ref());
        match (break_glass, mode) {
            (Some(Ok(how)), _) => {
                d.outcome = Outcome::BreakGlass;
                d.severity = d.severity.max(Some(Severity::High));
                d.break_glass = Some(how);
            }
            (_, AdmissionMode::Warn) => d.outcome = Outcome::Warned,
            _ => d.outcome = Outcome::Denied,
        }
        d.message = Some(message);
        d
    }

    /// The audit path's verdict, then what the field manager says about
    /// the client, settled with the change the review shows.
    fn verdict(&self, ev: &Event<'_>, req: &Request<'_>) -> (Verdict, Vec<crate::model::Change>) {
        let verdict = classify::classify(&self.policy, ev, Stage::ResponseComplete);
        let verdict = self.check_client(verdict, req);
        let (changes, known) = changes(req, ev);
        let verdict =
            classify::settle(&self.policy, verdict, ev, &changes, known, Some(Vec::new()));
        (verdict, changes)
    }

    /// A review carries no user agent; the field manager stands in for it
    /// (the API server derives it from the user agent when the client names
    /// none). A pipeline writing through a hand tool, and anyone else whose
    /// manager is a pipeline's client, are what the audit path calls
    /// credential misuse and user agent spoofing.
    fn check_client(&self, verdict: Verdict, req: &Request<'_>) -> Verdict {
        let Some(manager) = req.field_manager() else {
            return verdict;
        };
        let tool = if manager.starts_with("kubectl") {
            "kubectl"
        } else {
            manager.as_str()
        };
        let as_agent = format!("{tool}/");
        match verdict {
            Verdict::Sanctioned { pipeline } => {
                let Some((name, agents)) = self.agents.get(pipeline) else {
                    return verdict;
                };
                let hand = HAND_TOOLS.contains(&tool);
                if !hand || agents.is_empty() || agents.iter().any(|re| re.is_match(&as_agent)) {
                    return verdict;
                }
                drift(
                    FindingType::PipelineCredentialMisuse,
                    Some(pipeline),
                    format!(
                        "pipeline {name:?}'s identity wrote through {tool} (field manager {manager:?}), not one of its user_agents"
                    ),
                )
            }
            Verdict::Drift(d) if d.finding_type == FindingType::OutOfBandChange => {
                let owner = self.agents.iter().position(|(_, agents)| {
                    !agents.is_empty() && agents.iter().any(|re| re.is_match(&as_agent))
                });
                match owner {
                    Some(i) => drift(
                        FindingType::UserAgentSpoofing,
                        Some(i),
                        format!(
                            "field manager {manager:?} is pipeline {:?}'s client but the identity is not",
                            self.agents[i].0
                        ),
                    ),
                    None => Verdict::Drift(d),
                }
            }
            other => other,
        }
    }

    /// Markers on the new or old object, else the inventories; and the
    /// object's controller.
    fn managed(
        &self,
        cluster: &str,
        ev: &Event<'_>,
        req: &Request<'_>,
    ) -> (Option<ManagedBy>, Option<Owner>) {
        let facts = [req.object, req.old_object]
            .into_iter()
            .flatten()
            .map(crate::correlate::ownership::facts);
        let mut markers = None;
        let mut owner: Option<Owner> = None;
        for f in facts {
            markers = markers.or(f.managed_by);
            owner = owner.or(f.owner);
        }
        let object = ObjectRef::of(ev);
        let listed = self
            .inventories
            .managed(cluster, &object, owner.as_ref(), markers.as_ref());
        (listed.or(markers), owner)
    }

    /// `Some(Ok(how))`: let through; `Some(Err(why))`: an annotation that
    /// does not hold; `None`: no break-glass asked for.
    fn break_glass(
        &self,
        ev: &Event<'_>,
        req: &Request<'_>,
        now: Timestamp,
    ) -> Option<Result<String, String>> {
        let groups = ev
            .user
            .as_ref()
            .and_then(|u| u.groups.as_deref())
            .unwrap_or(&[]);
        if let Some(g) = groups.iter().find(|g| {
            self.config
                .break_glass_groups
                .iter()
                .any(|b| b == g.as_ref())
        }) {
            return Some(Ok(format!("member of break-glass group {g:?}")));
        }
        let key = self.config.break_glass_annotation.as_deref()?;
        let object = req.object.or(req.old_object)?;
        let value = annotation(object, key)?;
        Some(
            parse_break_glass(&value, now, self.config.break_glass_max)
                .map(|(until, reason)| format!("annotation {key} until {until}: {reason}")),
        )
    }

    fn message(
        &self,
        d: &Decision,
        req: &Request<'_>,
        break_glass: Option<&Result<String, String>>,
    ) -> String {
        let what = object_name(req);
        let mut m = match (&d.managed_by, d.finding_type) {
            (Some(managed), Some(FindingType::OutOfBandChange) | None) => {
                format!("{what} is managed by {}", where_to_change(managed))
            }
            _ => format!(
                "{what}: {}",
                d.reasons
                    .first()
                    .map_or("a pipeline's identity misused", String::as_str)
            ),
        };
        if let Some(t) = d.finding_type {
            m.push_str(&format!(" (driftwatch rule {})", t.as_str()));
        }
        if let Some(Err(why)) = break_glass {
            m.push_str(&format!(
                "; the break-glass annotation does not hold: {why}"
            ));
        }
        if !d.finding_type.is_some_and(FindingType::involves_pipeline) {
            m.push_str(&self.how_to_break_glass());
        }
        m
    }

    fn how_to_break_glass(&self) -> String {
        let mut ways = Vec::new();
        if !self.config.break_glass_groups.is_empty() {
            ways.push(format!(
                "a member of {} may retry",
                self.config.break_glass_groups.join(", ")
            ));
        }
        if let Some(key) = &self.config.break_glass_annotation {
            ways.push(format!(
                "set annotation {key}: \"<until, RFC 3339, at most {} ahead> <reason>\" on the object",
                jiff::SignedDuration::try_from(self.config.break_glass_max)
                    .map_or_else(|_| "?".to_owned(), |d| format!("{d:#}"))
            ));
        }
        if ways.is_empty() {
            return String::new();
        }
        format!(
            ". To break glass in an emergency: {}; break-glass writes are recorded and alerted",
            ways.join(", or ")
        )
    }
}

fn drift(finding_type: FindingType, pipeline: Option<usize>, reason: String) -> Verdict {
    Verdict::Drift(classify::Drift {
        finding_type,
        severity: Severity::High,
        pipeline,
        reasons: vec![reason],
        pending: classify::Pending::default(),
        risks: Vec::new(),
    })
}

fn verb(req: &Request<'_>) -> Option<&'static str> {
    Some(match req.operation.as_str() {
        "CREATE" => "create",
        "UPDATE" if req.is_patch() => "patch",
        "UPDATE" => "update",
        "DELETE" => "delete",
        _ => return None,
    })
}

/// What a changed field is worth knowing: old and new from the review.
fn changes(req: &Request<'_>, ev: &Event<'_>) -> (Vec<crate::model::Change>, bool) {
    let parse = |o: Option<&RawValue>| o.and_then(|o| serde_json::from_str(o.get()).ok());
    match (parse(req.old_object), parse(req.object)) {
        (Some(old), Some(new)) => (
            crate::correlate::changes::diff(ev.resource(), &old, &new),
            true,
        ),
        _ => (Vec::new(), false),
    }
}

/// `deployments.apps shop/web`, as the message names it.
fn object_name(req: &Request<'_>) -> String {
    let mut kind = req.resource.resource.clone();
    if !req.resource.group.is_empty() {
        kind.push('.');
        kind.push_str(&req.resource.group);
    }
    if !req.sub_resource.is_empty() {
        kind.push('/');
        kind.push_str(&req.sub_resource);
    }
    match req.namespace.as_str() {
        "" => format!("{kind} {}", req.name),
        ns => format!("{kind} {ns}/{}", req.name),
    }
}

/// Who manages it and where the change belongs instead: the pipeline
/// object, the repository and path when the inventories know them.
fn where_to_change(m: &ManagedBy) -> String {
    let Some(p) = &m.pipeline else {
        return match m.tool.as_str() {
            "argocd" => format!("{m}: change it in Git and let Argo CD sync it"),
            "flux" => format!("{m}: change it in Git and let Flux reconcile it"),
            _ => format!("{m}: change it where it is deployed from"),
        };
    };
    let mut s = format!("{} {} {}/{}", m.tool, p.kind, p.namespace, p.name);
    if let Some(src) = &p.source {
        let repo = src.repo_url.as_deref().or(src.source_ref.as_deref());
        if let Some(repo) = repo {
            s.push_str(&format!(": change it in {repo}"));
            if let Some(path) = &src.path {
                s.push_str(&format!(", path {path}"));
            }
            if let Some(rev) = &src.target_revision {
                s.push_str(&format!(", revision {rev}"));
            }
            return s;
        }
        if let Some(chart) = &src.chart {
            s.push_str(&format!(": change the values of chart {chart}"));
            return s;
        }
    }
    s.push_str(": change it at its source");
    s
}

fn annotation(object: &RawValue, key: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Doc<'a> {
        #[serde(borrow)]
        metadata: Option<Meta<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Meta<'a> {
        #[serde(borrow)]
        annotations: Option<std::collections::HashMap<Cow<'a, str>, Cow<'a, str>>>,
    }
    let doc: Doc<'_> = serde_json::from_str(object.get()).ok()?;
    doc.metadata?.annotations?.remove(key).map(Cow::into_owned)
}

/// `"<until> <reason>"`: until in RFC 3339, in the future and at most `max`
/// ahead; a reason is required.
pub fn parse_break_glass(
    value: &str,
    now: Timestamp,
    max: std::time::Duration,
) -> Result<(Timestamp, String), String> {
    let (until, reason) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let until: Timestamp = until
        .parse()
        .map_err(|e| format!("{until:?} is not an RFC 3339 time ({e})"))?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err("a reason must follow the time".to_owned());
    }
    if until <= now {
        return Err(format!("it expired at {until}"));
    }
    let max = jiff::SignedDuration::try_from(max).unwrap_or(jiff::SignedDuration::MAX);
    if until.duration_since(now) > max {
        return Err(format!("{until} is more than {max:#} ahead"));
    }
    Ok((until, reason.to_owned()))
}

#[derive(Serialize)]
struct Synthetic<'a> {
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: String,
    verb: &'a str,
    user: &'a RawValue,
    #[serde(rename = "objectRef")]
    object_ref: SyntheticRef<'a>,
    #[serde(rename = "responseStatus")]
    response_status: SyntheticStatus,
    #[serde(rename = "requestObject", skip_serializing_if = "Option::is_none")]
    request_object: Option<&'a RawValue>,
    #[serde(rename = "responseObject", skip_serializing_if = "Option::is_none")]
    response_object: Option<&'a RawValue>,
    #[serde(rename = "requestReceivedTimestamp")]
    received: &'a str,
    #[serde(rename = "stageTimestamp")]
    stage_time: &'a str,
}

#[derive(Serialize)]
struct SyntheticRef<'a> {
    resource: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    subresource: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "apiGroup", skip_serializing_if = "str::is_empty")]
    api_group: &'a str,
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
}

#[derive(Serialize)]
struct SyntheticStatus {
    code: u16,
}

/// The audit event this request will produce, as far as the review tells:
/// no user agent, no source address, the dry-run flag left out (a dry run
/// is judged like the real write).
fn synthetic_event(req: &Request<'_>, verb: &str, now: Timestamp) -> String {
    let r = &req.resource;
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let mut uri = prefix;
    if !req.namespace.is_empty() {
        uri.push_str(&format!("/namespaces/{}", req.namespace));
    }
    uri.push_str(&format!("/{}", r.resource));
    if verb != "create" || !req.sub_resource.is_empty() {
        uri.push_str(&format!("/{}", req.name));
    }
    if !req.sub_resource.is_empty() {
        uri.push_str(&format!("/{}", req.sub_resource));
    }
    let time = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
    let deleting = verb == "delete";
    let event = Synthetic {
        level: "RequestResponse",
        audit_id: &req.uid,
        stage: "ResponseComplete",
        request_uri: uri,
        verb,
        user: req.user_info,
        object_ref: SyntheticRef {
            resource: &r.resource,
            subresource: &req.sub_resource,
            namespace: &req.namespace,
            name: &req.name,
            api_group: &r.group,
            api_version: &r.version,
        },
        response_status: SyntheticStatus {
            code: if verb == "create" { 201 } else { 200 },
        },
        request_object: if deleting { req.options } else { req.object },
        response_object: if deleting { None } else { req.object },
        received: &time,
        stage_time: &time,
    };
    serde_json::to_string(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests;
