//! The compiled policy: everything `classify` needs, built once at config load.

use foldhash::HashSet;
use ipnet::IpNet;
use regex::Regex;

use super::verdict::{FindingType, Severity};

/// A sanctioned deployment pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub users: HashSet<String>,
    pub groups: HashSet<String>,
    /// Any match sanctions; empty means any user agent.
    pub user_agents: Vec<Regex>,
    /// Every source address must be inside one; empty means anywhere.
    pub source_cidrs: Vec<IpNet>,
    /// Dangerous content it delivers at or above this severity is reported
    /// as `risky_pipeline_change`; `None`: never.
    pub report_risks: Option<super::Severity>,
}

/// Expected Kubernetes system identities.
#[derive(Debug, Clone, Default)]
pub struct SystemIdentities {
    pub users: HashSet<String>,
    pub groups: HashSet<String>,
    /// `system:node:*` in group `system:nodes`.
    pub nodes: bool,
}

/// A severity override from the config; the first that matches wins.
#[derive(Debug, Clone)]
pub struct SeverityOverride {
    /// Resource names, plain (`configmaps`) or with group (`deployments.apps`);
    /// empty matches any.
    pub resources: Vec<String>,
    pub namespaces: Vec<String>,
    pub types: Vec<FindingType>,
    pub severity: Severity,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub pipelines: Vec<Pipeline>,
    pub system: SystemIdentities,
    /// Added to the built-in noise resources.
    pub ignore_resources: Vec<String>,
    pub ignore_namespaces: HashSet<String>,
    pub severity_overrides: Vec<SeverityOverride>,
    /// Configured allowances, then those of the enabled packs.
    pub allowances: Vec<super::allow::Allowance>,
    pub quiet: super::quiet::QuietRules,
}

impl Policy {
    /// The policy of the embedded defaults: the system baseline, no pipelines.
    pub fn baseline() -> Self {
        Policy {
            system: SystemIdentities {
                users: super::baseline::usernames().collect(),
                groups: HashSet::default(),
                nodes: true,
            },
            ..Policy::default()
        }
    }

    /// The policy as an admission review can apply it: a review carries no
    /// user agent and no source address, so constraints on them are
    /// dropped (pipelines and allowances then match more, never less; the
    /// audit path still applies them to the same request's audit event).
    pub fn without_network_facts(&self) -> Policy {
        let mut p = self.clone();
        for pipeline in &mut p.pipelines {
            pipeline.user_agents.clear();
            pipeline.source_cidrs.clear();
        }
        for a in &mut p.allowances {
            a.who.user_agents.clear();
            a.who.source_cidrs.clear();
        }
        p
    }

    pub fn pipeline_name(&self, index: usize) -> Option<&str> {
        self.pipelines.get(index).map(|p| p.name.as_str())
    }
}

/// No patterns, or one matches the user agent.
pub(crate) fn user_agent_ok(patterns: &[Regex], user_agent: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|re| re.is_match(user_agent))
}

/// Every source address inside one of `cidrs` (nothing required when
/// `cidrs` is empty): the first is what the client claimed
/// (X-Forwarded-For), the last the hop the API server saw, and a stolen
/// token forges only the former. `Err(None)`: no address recorded;
/// `Err(Some(ip))`: one outside.
pub(crate) fn outside<'a>(
    cidrs: &[IpNet],
    ips: &'a [std::borrow::Cow<'a, str>],
) -> Result<(), Option<&'a str>> {
    if cidrs.is_empty() {
        return Ok(());
    }
    if ips.is_empty() {
        return Err(None);
    }
    for ip in ips {
        let inside = ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|addr| cidrs.iter().any(|net| net.contains(&addr)));
        if !inside {
            return Err(Some(ip));
        }
    }
    Ok(())
}

/// Matches `entry` (`configmaps` or `deployments.apps`) against a resource.
pub(crate) fn resource_matches(entry: &str, resource: &str, group: &str) -> bool {
    match entry.split_once('.') {
        None => entry == resource,
        Some((r, g)) => r == resource && g == group,
    }
}
