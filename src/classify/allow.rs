//! Scoped allowances: which identity may make which writes, and nothing
//! else. A write inside an allowance's scope is `allowed` (no finding); one
//! outside it is judged as if the allowance did not exist. Never a blanket
//! trust: an allowance names resources and verbs, and for shared objects the
//! fields it may touch.

use foldhash::HashSet;
use ipnet::IpNet;
use regex::Regex;

use super::policy::{outside, user_agent_ok};
use crate::decode::{Event, UserInfo};
use crate::model::PathPattern;

/// One allowance, from the config or a built-in pack.
#[derive(Debug, Clone)]
pub struct Allowance {
    pub name: String,
    /// What a holder of the identity can still do silently because of it.
    pub risk: String,
    pub who: Who,
    pub what: Vec<Scope>,
}

#[derive(Debug, Clone, Default)]
pub struct Who {
    /// Exact usernames (service accounts already spelled out).
    pub users: HashSet<String>,
    pub groups: HashSet<String>,
    /// When set, one must match the user agent.
    pub user_agents: Vec<Regex>,
    /// When set, every source address must be inside one.
    pub source_cidrs: Vec<IpNet>,
    /// EKS: the request must come from an AWS-managed role (`user.extra.arn`).
    pub verify_aws_arn: bool,
}

/// Writes an allowance covers, in RBAC's words.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `""` the core group, `*` any.
    pub api_groups: Vec<String>,
    /// `pods`, `pods/status`, `*/status`, `*`.
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    /// Empty: any; `""`: cluster-scoped objects only.
    pub namespaces: Vec<String>,
    /// Empty: any object name.
    pub names: Vec<String>,
    /// When set, every changed field must match one; a write whose changes
    /// cannot be known is not covered.
    pub fields: Vec<PathPattern>,
}

/// An allowance that covers a write if the write's field changes stay
/// inside its scope's `fields`: known only once the changes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldScope {
    pub allowance: usize,
    pub scope: usize,
}

/// What the allowances say about one write, before its changes are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    None,
    /// Index of the allowance that covers it whole.
    Whole(usize),
    /// Covered only if its changes fit one of these.
    IfFields(Vec<FieldScope>),
}

/// The allowances that cover this write. Impersonated requests are never
/// covered: the allowance is for the identity's own automation.
pub fn coverage(allowances: &[Allowance], ev: &Event<'_>) -> Coverage {
    if ev.impersonated_user.is_some() {
        return Coverage::None;
    }
    let mut pending = Vec::new();
    for (i, a) in allowances.iter().enumerate() {
        if !a.who.matches(ev) {
            continue;
        }
        for (j, scope) in a.what.iter().enumerate() {
            if !scope.matches(ev) {
                continue;
            }
            if scope.fields.is_empty() {
                return Coverage::Whole(i);
            }
            pending.push(FieldScope {
                allowance: i,
                scope: j,
            });
        }
    }
    if pending.is_empty() {
        Coverage::None
    } else {
        Coverage::IfFields(pending)
    }
}

/// Whether changes at `paths` fit the field scope (and there are some).
pub fn fits(allowances: &[Allowance], f: FieldScope, paths: &[&str]) -> bool {
    let Some(scope) = allowances
        .get(f.allowance)
        .and_then(|a| a.what.get(f.scope))
    else {
        return false;
    };
    !paths.is_empty()
        && paths
            .iter()
            .all(|p| scope.fields.iter().any(|pat| pat.covers(p)))
}

impl Who {
    pub fn matches(&self, ev: &Event<'_>) -> bool {
        let empty = UserInfo::default();
        let user = ev.user.as_ref().unwrap_or(&empty);
        let username = user.username.as_deref().unwrap_or("");
        let groups = user.groups.as_deref().unwrap_or(&[]);
        let identity = (!username.is_empty() && self.users.contains(username))
            || groups.iter().any(|g| self.groups.contains(g.as_ref()));
        identity
            && user_agent_ok(&self.user_agents, ev.user_agent.as_deref().unwrap_or(""))
            && outside(&self.source_cidrs, ev.source_ips.as_deref().unwrap_or(&[])).is_ok()
            && (!self.verify_aws_arn || aws_managed_role(user))
    }
}

/// EKS maps its own components to `eks:*` usernames through AWS-managed
/// roles; an `aws-auth` entry can map any IAM role to the same name, but
/// not to this ARN path, which only AWS can create.
fn aws_managed_role(user: &UserInfo<'_>) -> bool {
    user.extra_values("arn").any(|arn| {
        arn.starts_with("arn:aws:iam::") && arn.contains(":role/aws-service-role/eks")
            || arn.starts_with("arn:aws:sts::")
                && arn.contains(":assumed-role/AWSServiceRoleForAmazonEKS")
    })
}

impl Scope {
    pub fn matches(&self, ev: &Event<'_>) -> bool {
        let group = ev.api_group();
        let namespace = ev.namespace();
        let name = ev.name();
        any_or(&self.api_groups, |g| g == "*" || g == group)
            && self.resources.iter().any(|r| rbac_resource_matches(r, ev))
            && self.verbs.iter().any(|v| v == "*" || v == ev.verb())
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
            && (self.names.is_empty() || self.names.iter().any(|n| n == name))
    }
}

fn any_or(list: &[String], f: impl Fn(&str) -> bool) -> bool {
    list.is_empty() || list.iter().any(|x| f(x))
}

/// RBAC's resource syntax: `pods` is the object itself, `pods/status` its
/// subresource, `*/status` any status, `*` any object (not subresources).
fn rbac_resource_matches(entry: &str, ev: &Event<'_>) -> bool {
    let (resource, sub) = (ev.resource(), ev.subresource());
    match entry.split_once('/') {
        None => sub.is_empty() && (entry == "*" || entry == resource),
        Some((r, s)) => (r == "*" || r == resource) && (s == "*" || s == sub) && !sub.is_empty(),
    }
}
