//! The policy part of the config: pipelines, system identities, ignores,
//! severity overrides.

use foldhash::HashSet;
use ipnet::IpNet;
use regex::Regex;
use serde_saphyr::Spanned;

use super::check::Problems;
use super::raw::{RawConfig, RawSystem};
use crate::classify::{Pipeline, Policy, SeverityOverride, SystemIdentities, system_baseline};

pub(super) fn compile(raw: &RawConfig, problems: &mut Problems) -> Policy {
    Policy {
        pipelines: pipelines(raw, problems),
        system: system(&raw.system_identities, problems),
        ignore_resources: raw.ignore.resources.clone(),
        ignore_namespaces: raw.ignore.namespaces.iter().cloned().collect(),
        severity_overrides: raw
            .severity
            .overrides
            .iter()
            .map(|o| SeverityOverride {
                resources: o.resources.clone(),
                namespaces: o.namespaces.clone(),
                types: o.types.clone(),
                severity: o.severity,
            })
            .collect(),
        allowances: super::allow::compile(raw, problems),
        quiet: super::allow::quiet_rules(&raw.quiet_rules),
    }
}

fn pipelines(raw: &RawConfig, problems: &mut Problems) -> Vec<Pipeline> {
    let mut seen_names = HashSet::default();
    let mut pipelines = Vec::new();
    for (i, p) in raw.pipelines.iter().enumerate() {
        let key = |field: &str| format!("pipelines[{i}].{field}");
        if p.name.value.trim().is_empty() {
            problems.at(&p.name, &key("name"), "must not be empty");
        } else if !seen_names.insert(p.name.value.clone()) {
            problems.at(
                &p.name,
                &key("name"),
                format!("duplicate pipeline name {:?}", p.name.value),
            );
        }
        if p.users.is_empty() && p.groups.is_empty() {
            problems.at(
                &p.name,
                &format!("pipelines[{i}]"),
                "declares no users and no groups: a pipeline is an identity, and a user agent alone never sanctions",
            );
        }
        let user_agents = regexes(&p.user_agents, &key("user_agents"), problems);
        let source_cidrs = cidrs(&p.source_cidrs, &key("source_cidrs"), problems);
        let report_risks = match p.report_risks.as_ref() {
            None => Some(crate::classify::Severity::High),
            Some(v) if v.value == "off" => None,
            Some(v) => crate::classify::Severity::parse(&v.value).or_else(|| {
                problems.at(
                    v,
                    &key("report_risks"),
                    format!("{:?} is not low, medium, high, critical or off", v.value),
                );
                None
            }),
        };
        pipelines.push(Pipeline {
            name: p.name.value.clone(),
            users: p.users.iter().cloned().collect(),
            groups: p.groups.iter().cloned().collect(),
            user_agents,
            source_cidrs,
            report_risks,
        });
    }
    pipelines
}

fn system(sys: &RawSystem, problems: &mut Problems) -> SystemIdentities {
    let mut system = SystemIdentities::default();
    if sys.baseline {
        system.users = system_baseline::usernames().collect();
        system.nodes = true;
    }
    for (i, name) in sys.exclude.iter().enumerate() {
        let known = name.value == "nodes" || system_baseline::usernames().any(|u| u == name.value);
        if !known {
            problems.at(
                name,
                &format!("system_identities.exclude[{i}]"),
                format!(
                    "{:?} is not in the built-in baseline (names are exact, or \"nodes\")",
                    name.value
                ),
            );
        }
        if name.value == "nodes" {
            system.nodes = false;
        }
        system.users.remove(&name.value);
    }
    system.users.extend(sys.extra_users.iter().cloned());
    for (i, group) in sys.extra_groups.iter().enumerate() {
        if matches!(
            group.value.as_str(),
            "system:masters" | "system:authenticated" | "system:unauthenticated"
        ) {
            problems.at(
                group,
                &format!("system_identities.extra_groups[{i}]"),
                format!("{:?} is far too broad to be a system identity", group.value),
            );
        }
        system.groups.insert(group.value.clone());
    }
    system
}

/// Compiled regexes of a list at `key`; each bad one reported with its line.
pub(super) fn regexes(list: &[Spanned<String>], key: &str, problems: &mut Problems) -> Vec<Regex> {
    let mut out = Vec::new();
    for (j, ua) in list.iter().enumerate() {
        match Regex::new(&ua.value) {
            Ok(re) => out.push(re),
            Err(e) => problems.at(
                ua,
                &format!("{key}[{j}]"),
                format!("invalid regex {:?}: {}", ua.value, regex_error(&e)),
            ),
        }
    }
    out
}

/// Parsed CIDRs of a list at `key`.
pub(super) fn cidrs(list: &[Spanned<String>], key: &str, problems: &mut Problems) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (j, cidr) in list.iter().enumerate() {
        match parse_cidr(&cidr.value) {
            Some(net) => out.push(net),
            None => problems.at(
                cidr,
                &format!("{key}[{j}]"),
                format!(
                    "invalid CIDR {:?} (expected e.g. 10.0.0.0/8 or fd00::/8)",
                    cidr.value
                ),
            ),
        }
    }
    out
}

/// A CIDR, or a bare address meaning a single host.
fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// The regex crate's message spans several lines with a caret diagram; keep
/// the last line, which says what is wrong.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_owned())
        .unwrap_or(text)
}
