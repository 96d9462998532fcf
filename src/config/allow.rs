//! Scoped allowances (`allow:`), the built-in packs (`allow_packs:`) and the
//! quiet rules (`quiet_rules:`), each checked with its key and line.

use foldhash::HashSet;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::Problems;
use super::raw::RawConfig;
use crate::classify::allow::{Allowance, Scope, Who};
use crate::classify::quiet::{Quiet, QuietRules};
use crate::model::PathPattern;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllowance {
    pub name: Spanned<String>,
    #[serde(default)]
    pub risk: Option<String>,
    pub who: RawWho,
    #[serde(default)]
    pub what: Vec<RawScope>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWho {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub service_accounts: Vec<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub user_agents: Vec<Spanned<String>>,
    #[serde(default)]
    pub source_cidrs: Vec<Spanned<String>>,
    #[serde(default)]
    pub verify_aws_arn: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<Spanned<String>>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub fields: Vec<Spanned<String>>,
}

/// A built-in pack file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPack {
    pub pack: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub allow: Vec<RawAllowance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuietRules {
    #[serde(default = "yes")]
    pub status_by_service_accounts: bool,
    #[serde(default = "yes")]
    pub node_self: bool,
    #[serde(default = "yes")]
    pub leader_lock_renewals: bool,
    #[serde(default = "yes")]
    pub kubelet_scrapes: bool,
    /// Replaces the built-in list; `[]` turns the rule off.
    #[serde(default)]
    pub ca_bundle_injectors: Option<Vec<String>>,
}

impl Default for RawQuietRules {
    fn default() -> Self {
        RawQuietRules {
            status_by_service_accounts: true,
            node_self: true,
            leader_lock_renewals: true,
            kubelet_scrapes: true,
            ca_bundle_injectors: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// The packs driftwatch ships, by name.
pub const PACKS: &[(&str, &str)] = &[
    ("aks", include_str!("../classify/packs/aks.yaml")),
    (
        "aws-ebs-csi",
        include_str!("../classify/packs/aws-ebs-csi.yaml"),
    ),
    (
        "cert-manager",
        include_str!("../classify/packs/cert-manager.yaml"),
    ),
    (
        "cluster-autoscaler",
        include_str!("../classify/packs/cluster-autoscaler.yaml"),
    ),
    ("eks", include_str!("../classify/packs/eks.yaml")),
    (
        "external-dns",
        include_str!("../classify/packs/external-dns.yaml"),
    ),
    (
        "gatekeeper",
        include_str!("../classify/packs/gatekeeper.yaml"),
    ),
    ("gke", include_str!("../classify/packs/gke.yaml")),
    (
        "ingress-nginx",
        include_str!("../classify/packs/ingress-nginx.yaml"),
    ),
    ("istio", include_str!("../classify/packs/istio.yaml")),
    (
        "karpenter",
        include_str!("../classify/packs/karpenter.yaml"),
    ),
    ("kyverno", include_str!("../classify/packs/kyverno.yaml")),
    ("linkerd", include_str!("../classify/packs/linkerd.yaml")),
    (
        "metrics-server",
        include_str!("../classify/packs/metrics-server.yaml"),
    ),
    (
        "prometheus-operator",
        include_str!("../classify/packs/prometheus-operator.yaml"),
    ),
];

const VERBS: &[&str] = &[
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "*",
];
/// Too broad to be trusted with anything.
const BROAD_GROUPS: &[&str] = &[
    "system:authenticated",
    "system:unauthenticated",
    "system:serviceaccounts",
    "system:masters",
];
/// The groups of those objects, for `resources: ["*"]`.
const SHARED_GROUPS: &[&str] = &[
    "admissionregistration.k8s.io",
    "apiregistration.k8s.io",
    "apiextensions.k8s.io",
];
/// Shared objects where an allowance must say which fields it may touch.
const FIELDS_REQUIRED: &[&str] = &[
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
    "apiservices",
    "customresourcedefinitions",
];

pub(super) fn compile(raw: &RawConfig, problems: &mut Problems) -> Vec<Allowance> {
    let mut out = Vec::new();
    for (i, a) in raw.allow.iter().enumerate() {
        out.push(allowance(a, &format!("allow[{i}]"), problems));
    }
    for (i, name) in raw.allow_packs.iter().enumerate() {
        let key = format!("allow_packs[{i}]");
        match pack(&name.value) {
            Ok(pack) => {
                for (j, a) in pack.allow.iter().enumerate() {
                    out.push(allowance(
                        a,
                        &format!("{key} ({}) allow[{j}]", name.value),
                        problems,
                    ));
                }
            }
            Err(message) => problems.at(name, &key, message),
        }
    }
    let mut seen = HashSet::default();
    for a in &out {
        if !seen.insert(a.name.clone()) {
            problems.add(
                None,
                "allow",
                format!("duplicate allowance name {:?}", a.name),
            );
        }
    }
    out
}

/// A built-in pack, parsed.
pub fn pack(name: &str) -> Result<RawPack, String> {
    let Some((_, text)) = PACKS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = PACKS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown pack {name:?}; the packs are: {}",
            known.join(", ")
        ));
    };
    serde_saphyr::from_str::<RawPack>(text)
        .map_err(|e| format!("pack {name:?} does not parse: {e}"))
}

fn allowance(a: &RawAllowance, key: &str, problems: &mut Problems) -> Allowance {
    problems.non_empty(&a.name, &format!("{key}.name"));
    if a.risk.as_deref().is_none_or(|r| r.trim().is_empty()) {
        problems.at(
            &a.name,
            &format!("{key}.risk"),
            "say what a holder of this identity can still do silently because of it",
        );
    }
    if a.what.is_empty() {
        problems.at(
            &a.name,
            &format!("{key}.what"),
            "names no writes: an allowance is a scope, never trust for everything",
        );
    }
    Allowance {
        name: a.name.value.clone(),
        risk: a.risk.clone().unwrap_or_default(),
        who: who(&a.who, &a.name, key, problems),
        what: a
            .what
            .iter()
            .enumerate()
            .map(|(j, s)| scope(s, &a.name, &format!("{key}.what[{j}]"), problems))
            .collect(),
    }
}

fn who(w: &RawWho, at: &Spanned<String>, key: &str, problems: &mut Problems) -> Who {
    let mut users: HashSet<String> = w.users.iter().cloned().collect();
    for (i, sa) in w.service_accounts.iter().enumerate() {
        match sa.value.split_once(':') {
            Some((ns, name))
                if !ns.is_empty()
                    && !name.is_empty()
                    && !sa.value.contains('*')
                    && !name.contains(':') =>
            {
                users.insert(format!("system:serviceaccount:{ns}:{name}"));
            }
            _ => problems.at(
                sa,
                &format!("{key}.who.service_accounts[{i}]"),
                format!("{:?} is not NAMESPACE:NAME (exact, no wildcards)", sa.value),
            ),
        }
    }
    let mut groups = HashSet::default();
    for (i, g) in w.groups.iter().enumerate() {
        if BROAD_GROUPS.contains(&g.value.as_str()) {
            problems.at(
                g,
                &format!("{key}.who.groups[{i}]"),
                format!("{:?} is far too broad for an allowance", g.value),
            );
        }
        groups.insert(g.value.clone());
    }
    if users.is_empty() && groups.is_empty() {
        problems.at(
            at,
            &format!("{key}.who"),
            "names no users, service accounts or groups",
        );
    }
    Who {
        users,
        groups,
        user_agents: super::policy::regexes(
            &w.user_agents,
            &format!("{key}.who.user_agents"),
            problems,
        ),
        source_cidrs: super::policy::cidrs(
            &w.source_cidrs,
            &format!("{key}.who.source_cidrs"),
            problems,
        ),
        verify_aws_arn: w.verify_aws_arn,
    }
}

fn scope(s: &RawScope, at: &Spanned<String>, key: &str, problems: &mut Problems) -> Scope {
    if s.resources.is_empty() {
        problems.at(
            at,
            &format!("{key}.resources"),
            "must name at least one resource",
        );
    }
    if s.verbs.is_empty() {
        problems.at(at, &format!("{key}.verbs"), "must name at least one verb");
    }
    for (i, v) in s.verbs.iter().enumerate() {
        if !VERBS.contains(&v.value.as_str()) {
            problems.at(
                v,
                &format!("{key}.verbs[{i}]"),
                format!("{:?} is not a write verb ({})", v.value, VERBS.join(", ")),
            );
        }
    }
    let mut fields = Vec::new();
    for (i, f) in s.fields.iter().enumerate() {
        match PathPattern::parse(&f.value) {
            Ok(p) => fields.push(p),
            Err(e) => problems.at(f, &format!("{key}.fields[{i}]"), e.to_string()),
        }
    }
    let any_group = s.api_groups.is_empty()
        || s.api_groups
            .iter()
            .any(|g| g == "*" || SHARED_GROUPS.contains(&g.as_str()));
    let shared = s
        .resources
        .iter()
        .any(|r| FIELDS_REQUIRED.contains(&r.as_str()) || (r == "*" && any_group));
    if shared && fields.is_empty() {
        problems.at(at, &format!("{key}.fields"), "webhook configurations, APIServices and CRDs are shared: say which fields this identity may touch");
    }
    // A kube-system lease is the control plane's lock: whoever holds the
    // controller-manager's runs its controllers.
    let kube_system = s.namespaces.is_empty() || s.namespaces.iter().any(|n| n == "kube-system");
    let leases = s.resources.iter().any(|r| r == "leases" || r == "*");
    let lease_group = s.api_groups.is_empty()
        || s.api_groups
            .iter()
            .any(|g| g == "*" || g == "coordination.k8s.io");
    if leases && lease_group && kube_system && s.names.is_empty() {
        problems.at(at, &format!("{key}.names"), "leases in kube-system must be named: an unnamed one would allow taking over the controller-manager's lock");
    }
    Scope {
        api_groups: s.api_groups.clone(),
        resources: s.resources.clone(),
        verbs: s.verbs.iter().map(|v| v.value.clone()).collect(),
        namespaces: s.namespaces.clone(),
        names: s.names.clone(),
        fields,
    }
}

pub(super) fn quiet_rules(raw: &RawQuietRules) -> QuietRules {
    let mut rules = QuietRules::default();
    let flags = [
        (
            Quiet::StatusByServiceAccount,
            raw.status_by_service_accounts,
        ),
        (Quiet::NodeSelf, raw.node_self),
        (Quiet::LeaderLockRenewal, raw.leader_lock_renewals),
        (Quiet::KubeletScrape, raw.kubelet_scrapes),
    ];
    for (rule, on) in flags {
        if !on {
            rules.on.remove(&rule);
        }
    }
    if let Some(injectors) = &raw.ca_bundle_injectors {
        rules.ca_bundle_injectors = injectors.iter().cloned().collect();
        if injectors.is_empty() {
            rules.on.remove(&Quiet::CaBundleInjection);
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped pack parses, compiles without a problem and names its
    /// sources and risks.
    #[test]
    fn every_pack_compiles_clean() {
        for (name, _) in PACKS {
            let yaml = format!("allow_packs: [{name}]\n");
            let config = crate::config::Config::from_yaml(&yaml, "c.yaml")
                .unwrap_or_else(|p| panic!("pack {name}: {p:?}"));
            let raw = pack(name).unwrap();
            // A read-only component's pack allows nothing, and says so.
            assert!(
                !config.policy.allowances.is_empty() || raw.description.contains("allows nothing"),
                "{name}"
            );
            assert_eq!(raw.pack, *name);
            assert!(!raw.sources.is_empty(), "{name} cites no sources");
        }
    }
}
