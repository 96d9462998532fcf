//! `driftwatch policy suggest`: the scoped allowances that would silence
//! the automation seen in an audit log, measured by replaying the log with
//! them, and what is never suggested and why.
//!
//! ```text
//! replay (config)        ──► findings ──► group by identity and scope ──► proposals
//! replay (config + them) ──► findings left: what each proposal really removes;
//!                            too small ones dropped, replayed again until stable
//! ```
//!
//! Both replays run the engine exactly as `replay` does (decode, dedupe,
//! policy, correlation) with no store and no sink but memory. Every
//! proposal is loaded by the config loader before it is measured, so what
//! is printed is what `policy check` accepts.

mod collect;
mod propose;
mod render;
mod risk;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

pub use collect::Seen;
pub use propose::{Identity, MAX_NAMES, MAX_SENSITIVE_NAMES, Proposal, Scope, Withheld};
pub use render::{json, yaml};

use crate::config::{Config, ConfigError};
use crate::engine::IngestError;
use crate::store::StoreError;
use propose::WithheldSet;

#[derive(Debug, thiserror::Error)]
pub enum SuggestError {
    #[error("name at least one audit log file")]
    NoInput,
    #[error(
        "policy suggest replays its input more than once and cannot read standard input: save the log to a file and name the file"
    )]
    Stdin,
    #[error("{path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("replay stopped: {0}")]
    Ingest(IngestError),
    #[error("cannot start the engine: {0}")]
    Engine(StoreError),
}

impl SuggestError {
    /// A mistake on the command line, rather than in the input.
    pub fn is_usage(&self) -> bool {
        matches!(self, SuggestError::NoInput | SuggestError::Stdin)
    }
}

/// What `policy suggest` found.
#[derive(Debug)]
pub struct Suggestions {
    pub inputs: Vec<String>,
    /// `embedded defaults` or the config file.
    pub config: String,
    pub events: u64,
    /// Findings of the log under the config.
    pub findings: usize,
    /// Findings of the log once every proposal is added.
    pub remaining: usize,
    /// Ranked: most findings removed first.
    pub proposals: Vec<Proposal>,
    pub withheld: Vec<Withheld>,
    /// `FILE:LINE: reason` for documents that are not audit events.
    pub rejections: Vec<String>,
}

impl Suggestions {
    /// Findings the proposals remove.
    pub fn removed(&self) -> usize {
        self.proposals.iter().map(Proposal::removes).sum()
    }
}

/// Replays `files` under `config` and proposes allowances that remove at
/// least `min_findings` findings each (per scope). `config_name` names the
/// config in the output.
pub fn suggest(
    config: &Config,
    config_name: &str,
    files: &[PathBuf],
    min_findings: usize,
) -> Result<Suggestions, SuggestError> {
    if files.is_empty() {
        return Err(SuggestError::NoInput);
    }
    if files.iter().any(|f| f == Path::new("-")) {
        return Err(SuggestError::Stdin);
    }
    let min_findings = min_findings.max(1);
    let first = collect::replay(config, files)?;
    let by_id: HashMap<&str, &Seen> = first.findings.iter().map(|f| (f.id.as_str(), f)).collect();
    let taken: BTreeSet<String> = config
        .policy
        .allowances
        .iter()
        .map(|a| a.name.clone())
        .collect();
    let mut withheld = WithheldSet::default();
    let mut proposals = propose::build(&first.findings, min_findings, &taken, &mut withheld);
    // The ids of the findings left by the last replay with the proposals.
    let left: HashSet<String> = loop {
        if proposals.is_empty() {
            break first.findings.iter().map(|f| f.id.clone()).collect();
        }
        let mut trial = config.clone();
        let mut refused = Vec::new();
        for (i, p) in proposals.iter().enumerate() {
            match compile(p) {
                Ok(allowances) => trial.policy.allowances.extend(allowances),
                Err(e) => refused.push((i, e)),
            }
        }
        if !refused.is_empty() {
            // Never expected: kept honest rather than printed as loadable.
            for (i, e) in refused.iter().rev() {
                let p = proposals.remove(*i);
                let reason = format!("the config loader refuses the allowance: {e}");
                withhold(&p.scopes, &by_id, |_| true, &reason, &mut withheld);
            }
            continue;
        }
        let after = collect::replay(&trial, files)?;
        let left = after.ids();
        let mut dropped = false;
        for p in &mut proposals {
            p.scopes.retain_mut(|s| {
                s.removes = s
                    .members
                    .iter()
                    .filter(|id| !left.contains(id.as_str()))
                    .count();
                if s.removes >= min_findings {
                    return true;
                }
                let reason = format!(
                    "replaying with an allowance for them removed {} of {}: too few to suggest (--min-findings {min_findings})",
                    s.removes,
                    s.members.len()
                );
                withhold(std::slice::from_ref(s), &by_id, |_| true, &reason, &mut withheld);
                dropped = true;
                false
            });
        }
        proposals.retain(|p| !p.scopes.is_empty());
        if !dropped {
            break left.into_iter().map(str::to_owned).collect();
        }
    };
    for p in &mut proposals {
        for s in &mut p.scopes {
            let stay = s.members.len() - s.removes;
            if stay == 0 {
                continue;
            }
            let reason = if s.fields.is_empty() {
                format!(
                    "grouped into {}, but replaying with it left them reported",
                    p.name
                )
            } else {
                format!(
                    "grouped into {}, but their changed fields are not known (the first write seen of each object) or there were none, so its fields cannot cover them",
                    p.name
                )
            };
            withhold(
                std::slice::from_ref(s),
                &by_id,
                |id| left.contains(id),
                &reason,
                &mut withheld,
            );
            s.notes.push(if stay == 1 {
                "1 more of these stays reported (see NOT SUGGESTED)".to_owned()
            } else {
                format!("{stay} more of these stay reported (see NOT SUGGESTED)")
            });
        }
        p.scopes.sort_by(|a, b| {
            b.removes
                .cmp(&a.removes)
                .then_with(|| (&a.api_group, &a.resource).cmp(&(&b.api_group, &b.resource)))
        });
        p.risk = risk::text(p);
    }
    proposals.sort_by(|a, b| {
        b.removes()
            .cmp(&a.removes())
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(Suggestions {
        inputs: files
            .iter()
            .map(|f| crate::sources::file::display_name(f))
            .collect(),
        config: config_name.to_owned(),
        events: first.events,
        findings: first.findings.len(),
        remaining: left.len(),
        proposals,
        withheld: withheld.into_vec(),
        rejections: first.rejections,
    })
}

/// The allowance as the config loader compiles it from the YAML printed.
fn compile(p: &Proposal) -> Result<Vec<crate::classify::allow::Allowance>, ConfigError> {
    let mut text = String::from("allow:\n");
    render::allowance(p, &mut text);
    Config::from_yaml(&text, &format!("suggested allowance {:?}", p.name))
        .map(|c| c.policy.allowances)
}

fn withhold(
    scopes: &[Scope],
    by_id: &HashMap<&str, &Seen>,
    which: impl Fn(&str) -> bool,
    reason: &str,
    withheld: &mut WithheldSet,
) {
    for s in scopes {
        for id in s.members.iter().filter(|id| which(id)) {
            if let Some(f) = by_id.get(id.as_str()) {
                withheld.add(f, reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// One audit event as the log backend writes it; `n` orders them.
    fn event(n: u32, user: &str, verb: &str, object: Value, body: Option<Value>) -> String {
        let (group, resource) = (
            object["apiGroup"].as_str().unwrap_or(""),
            object["resource"].as_str().unwrap_or(""),
        );
        let prefix = if group.is_empty() {
            "/api/v1".to_owned()
        } else {
            format!("/apis/{group}/v1")
        };
        let mut uri = prefix;
        if let Some(ns) = object["namespace"].as_str() {
            uri.push_str(&format!("/namespaces/{ns}"));
        }
        uri.push_str(&format!("/{resource}"));
        if verb != "create" {
            uri.push_str(&format!("/{}", object["name"].as_str().unwrap_or("")));
        }
        let (ua, groups) = if user.contains('@') {
            (
                "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
                json!(["oidc:sre", "system:authenticated"]),
            )
        } else {
            (
                "cluster-autoscaler/v1.31.0 (linux/amd64) kubernetes/$Format",
                json!(["system:serviceaccounts", "system:authenticated"]),
            )
        };
        let mut ev = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": format!("7d1c9b2e-0000-4000-8000-{n:012}"), "stage": "ResponseComplete",
            "requestURI": uri, "verb": verb,
            "user": {"username": user, "groups": groups},
            "sourceIPs": ["10.42.1.17"], "userAgent": ua, "objectRef": object,
            "responseStatus": {"metadata": {}, "code": if verb == "create" { 201 } else { 200 }},
            "requestReceivedTimestamp": format!("2026-11-20T10:00:{:02}.100000Z", n),
            "stageTimestamp": format!("2026-11-20T10:00:{:02}.110000Z", n),
        });
        if let Some(b) = body {
            ev["requestObject"] = b.clone();
            ev["responseObject"] = b;
        }
        ev.to_string()
    }

    const CA: &str = "system:serviceaccount:kube-system:cluster-autoscaler";

    fn status_cm(n: u32) -> String {
        let cm = json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "cluster-autoscaler-status", "namespace": "kube-system",
                "resourceVersion": format!("{}", 100 + n)},
            "data": {"status": format!("scan {n}")}});
        event(
            n,
            CA,
            "update",
            json!({"resource": "configmaps", "namespace": "kube-system",
                "name": "cluster-autoscaler-status", "apiVersion": "v1"}),
            Some(cm),
        )
    }

    fn log() -> Vec<String> {
        let mut lines: Vec<String> = (1..=4).map(status_cm).collect();
        for i in 0..3 {
            lines.push(event(
                10 + i,
                CA,
                "create",
                json!({"resource": "certificaterequests", "apiGroup": "cert-manager.io",
                    "namespace": "shop", "name": format!("web-{i}"), "apiVersion": "v1"}),
                None,
            ));
        }
        for i in 0..2 {
            let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("ca-{i}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": "cluster-autoscaler", "namespace": "kube-system"}]});
            lines.push(event(
                20 + i,
                CA,
                "create",
                json!({"resource": "clusterrolebindings", "apiGroup": "rbac.authorization.k8s.io",
                    "name": format!("ca-{i}"), "apiVersion": "v1"}),
                Some(crb),
            ));
            lines.push(event(
                30 + i,
                "alice@example.com",
                "patch",
                json!({"resource": "deployments", "apiGroup": "apps", "namespace": "shop",
                    "name": "api", "apiVersion": "v1"}),
                None,
            ));
        }
        lines
    }

    fn run(lines: &[String]) -> Suggestions {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        suggest(&Config::default(), "embedded defaults", &[path], 2).unwrap()
    }

    #[test]
    fn proposals_load_and_their_counts_are_what_a_replay_removes() {
        let s = run(&log());
        assert!(s.rejections.is_empty(), "{:?}", s.rejections);
        assert_eq!(s.findings, 11);
        let names: Vec<&str> = s.proposals.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["suggested/kube-system/cluster-autoscaler"]);
        let scopes: Vec<(&str, usize)> = s.proposals[0]
            .scopes
            .iter()
            .map(|sc| (sc.resource.as_str(), sc.removes))
            .collect();
        // The first update is not compared (nothing remembered): it stays.
        assert_eq!(scopes, [("configmaps", 3), ("certificaterequests", 3)]);
        assert_eq!(s.removed(), 6);
        assert_eq!(s.remaining, s.findings - s.removed());
        let withheld: usize = s.withheld.iter().map(|w| w.findings).sum();
        assert_eq!(withheld, s.remaining);
        let text = yaml(&s);
        let loaded = Config::from_yaml(&text, "suggested.yaml").unwrap();
        assert_eq!(loaded.policy.allowances.len(), 1);
        assert!(text.contains("# removes 6 findings (54.5%)"), "{text}");
        assert!(
            text.contains("user_agents: [\"^cluster-autoscaler/\"]"),
            "{text}"
        );
        assert!(text.contains("# NOT SUGGESTED: system:serviceaccount:kube-system:cluster-autoscaler: create clusterrolebindings (rbac.authorization.k8s.io), 2 findings: RBAC writes grant permissions"), "{text}");
        // JSON allowances are config entries too.
        let j: Value = serde_json::from_str(&json(&s)).unwrap();
        let allow = json!({"allow": j["suggestions"].as_array().unwrap().iter().map(|x| x["allowance"].clone()).collect::<Vec<_>>()});
        Config::from_yaml(&allow.to_string(), "suggested.json").unwrap();
        assert_eq!(j["removed"], 6);
        assert_eq!(j["remaining"], 5);
    }

    #[test]
    fn standard_input_is_refused_as_a_usage_error() {
        let e = suggest(&Config::default(), "", &[PathBuf::from("-")], 2).unwrap_err();
        assert!(e.is_usage(), "{e}");
        let e = suggest(
            &Config::default(),
            "",
            &[PathBuf::from("/nonexistent/x.jsonl")],
            2,
        )
        .unwrap_err();
        assert!(matches!(e, SuggestError::Read { .. }), "{e}");
    }

    #[test]
    fn text_from_the_log_cannot_break_the_yaml() {
        let odd = "robot\nallow: [] # \"x\"";
        let seen = |i: usize, user: &str| Seen {
            id: format!("f{i}"),
            finding_type: crate::model::FindingType::OutOfBandChange,
            username: user.to_owned(),
            groups: Vec::new(),
            impersonated: false,
            user_agent: None,
            client: None,
            field_manager: None,
            verb: "update".into(),
            group: "example.com".into(),
            resource: "widgets".into(),
            subresource: None,
            namespace: Some("ns\n#".into()),
            name: Some("w\"1".into()),
            paths: Vec::new(),
            risks: Vec::new(),
        };
        let findings = vec![seen(1, odd), seen(2, odd), seen(3, "x@example.com\nallow:")];
        let mut withheld = WithheldSet::default();
        let mut proposals = propose::build(&findings, 2, &BTreeSet::new(), &mut withheld);
        for p in &mut proposals {
            p.scopes[0].removes = 2;
        }
        let s = Suggestions {
            inputs: vec!["a\nb.jsonl".into()],
            config: "embedded defaults".into(),
            events: 3,
            findings: 3,
            remaining: 1,
            proposals,
            withheld: withheld.into_vec(),
            rejections: Vec::new(),
        };
        let text = yaml(&s);
        let loaded = Config::from_yaml(&text, "suggested.yaml").unwrap();
        assert_eq!(loaded.policy.allowances.len(), 1, "{text}");
        assert!(loaded.policy.allowances[0].who.users.contains(odd));
        assert_eq!(loaded.policy.allowances[0].what[0].names, ["w\"1"]);
    }

    #[test]
    fn nothing_to_suggest_still_loads() {
        let s = run(&log()[7..]);
        assert!(s.proposals.is_empty());
        let text = yaml(&s);
        assert!(text.contains("allow: []"), "{text}");
        Config::from_yaml(&text, "suggested.yaml").unwrap();
        assert_eq!(s.remaining, s.findings);
    }
}
