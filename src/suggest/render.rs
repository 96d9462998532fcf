//! Suggestions as a config file (`allow:`, with comments) or as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::Suggestions;
use super::propose::{Identity, Proposal, Withheld};

/// Risk text is wrapped at this width in the YAML.
const WIDTH: usize = 88;

/// A YAML (and JSON) double-quoted string.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn flow(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// `^PRODUCT/`, with the regex metacharacters a product token may hold escaped.
pub fn user_agent_pattern(product: &str) -> String {
    let mut out = String::from("^");
    for c in product.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('/');
    out
}

fn percent(n: usize, of: usize) -> String {
    if of == 0 {
        "0.0%".to_owned()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One `allow:` list item, two spaces in, with its scopes' comments.
pub fn allowance(p: &Proposal, out: &mut String) {
    let _ = writeln!(out, "  - name: {}", q(&p.name));
    out.push_str("    risk: >-\n");
    for line in wrap(&p.risk, WIDTH) {
        let _ = writeln!(out, "      {line}");
    }
    out.push_str("    who:\n");
    match &p.identity {
        Identity::ServiceAccount { namespace, name } => {
            let _ = writeln!(
                out,
                "      service_accounts: [{}]",
                q(&format!("{namespace}:{name}"))
            );
        }
        Identity::User(u) => {
            let _ = writeln!(out, "      users: [{}]", q(u));
        }
    }
    if let Some(product) = &p.user_agent {
        let _ = writeln!(
            out,
            "      # every reported write of this identity came from {product}/...; a client \
             chooses its user agent, so this corroborates and never authenticates"
        );
        let _ = writeln!(
            out,
            "      user_agents: [{}]",
            q(&user_agent_pattern(product))
        );
    }
    if p.verify_aws_arn {
        out.push_str(
            "      # EKS maps its own components through AWS-managed roles; an aws-auth entry can map any role to this name\n",
        );
        out.push_str("      verify_aws_arn: true\n");
    }
    out.push_str("    what:\n");
    for s in &p.scopes {
        if s.removes > 0 {
            let _ = writeln!(
                out,
                "      # removes {}",
                plural(s.removes, "finding", "findings")
            );
        }
        for note in &s.notes {
            let _ = writeln!(out, "      # {note}");
        }
        let _ = writeln!(out, "      - api_groups: [{}]", q(&s.api_group));
        let _ = writeln!(out, "        resources: [{}]", q(&s.resource));
        let _ = writeln!(out, "        verbs: {}", flow(&s.verbs));
        if let Some(ns) = &s.namespaces {
            let _ = writeln!(out, "        namespaces: {}", flow(ns));
        }
        if let Some(names) = &s.names {
            let _ = writeln!(out, "        names: {}", flow(names));
        }
        if !s.fields.is_empty() {
            let _ = writeln!(out, "        fields: {}", flow(&s.fields));
        }
    }
}

/// Words into lines of at most `width` (a longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn withheld_line(w: &Withheld) -> String {
    let verbs: Vec<&str> = w.verbs.iter().map(String::as_str).collect();
    let group = if w.api_group.is_empty() {
        String::new()
    } else {
        format!(" ({})", w.api_group)
    };
    let identity = if w.identity.is_empty() {
        "(no username)"
    } else {
        &w.identity
    };
    one_line(&format!(
        "{identity}: {} {}{group}, {}: {}",
        verbs.join("/"),
        w.resource,
        plural(w.findings, "finding", "findings"),
        w.reason
    ))
}

/// Text from the log in a comment: a line break would end the comment.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The config file: a header, `allow:`, then what is not suggested.
pub fn yaml(s: &Suggestions) -> String {
    let mut out = String::new();
    let removed: usize = s.proposals.iter().map(Proposal::removes).sum();
    let _ = writeln!(
        out,
        "# driftwatch policy suggest: {} in {} ({} events), under {}.",
        plural(s.findings, "finding", "findings"),
        one_line(&s.inputs.join(", ")),
        s.events,
        one_line(&s.config)
    );
    let _ = writeln!(
        out,
        "# The {} below remove {} ({}), measured by replaying the log with them; {} reported.",
        plural(s.proposals.len(), "allowance", "allowances"),
        plural(removed, "finding", "findings"),
        percent(removed, s.findings),
        plural(s.remaining, "finding stays", "findings stay"),
    );
    out.push_str(
        "# An allowance silences these writes for anyone holding the identity's credentials: review each one.\n\
         # Paste the entries under allow: in your config, then run: driftwatch policy check --config FILE\n",
    );
    if s.proposals.is_empty() {
        out.push_str("allow: []\n");
    } else {
        out.push_str("allow:\n");
    }
    for p in &s.proposals {
        let _ = writeln!(
            out,
            "  # removes {} ({})",
            plural(p.removes(), "finding", "findings"),
            percent(p.removes(), s.findings)
        );
        allowance(p, &mut out);
    }
    if !s.withheld.is_empty() {
        let n: usize = s.withheld.iter().map(|w| w.findings).sum();
        let _ = writeln!(
            out,
            "\n# Not suggested: {}. Review them by hand.",
            plural(n, "finding", "findings")
        );
        for w in &s.withheld {
            let _ = writeln!(out, "# NOT SUGGESTED: {}", withheld_line(w));
        }
    }
    out
}

#[derive(Serialize)]
struct JsonOut<'a> {
    schema: &'static str,
    inputs: &'a [String],
    config: &'a str,
    events: u64,
    findings: usize,
    removed: usize,
    remaining: usize,
    suggestions: Vec<JsonSuggestion<'a>>,
    not_suggested: Vec<JsonWithheld<'a>>,
}

#[derive(Serialize)]
struct JsonSuggestion<'a> {
    removes: usize,
    percent: f64,
    /// Exactly an `allow:` entry of the config.
    allowance: JsonAllowance<'a>,
    /// Per `what` entry, in order.
    scopes: Vec<JsonScopeNote<'a>>,
}

#[derive(Serialize)]
struct JsonAllowance<'a> {
    name: &'a str,
    risk: &'a str,
    who: JsonWho,
    what: Vec<JsonScope<'a>>,
}

#[derive(Serialize)]
struct JsonWho {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    service_accounts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user_agents: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    verify_aws_arn: bool,
}

#[derive(Serialize)]
struct JsonScope<'a> {
    api_groups: [&'a str; 1],
    resources: [&'a str; 1],
    verbs: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    namespaces: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<&'a [String]>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    fields: &'a [String],
}

#[derive(Serialize)]
struct JsonScopeNote<'a> {
    removes: usize,
    notes: &'a [String],
}

#[derive(Serialize)]
struct JsonWithheld<'a> {
    identity: &'a str,
    api_group: &'a str,
    resource: &'a str,
    verbs: Vec<&'a str>,
    findings: usize,
    reason: &'a str,
}

/// One JSON document; `suggestions[].allowance` is a config `allow:` entry.
pub fn json(s: &Suggestions) -> String {
    let suggestions = s
        .proposals
        .iter()
        .map(|p| {
            let (users, service_accounts) = match &p.identity {
                Identity::ServiceAccount { namespace, name } => {
                    (Vec::new(), vec![format!("{namespace}:{name}")])
                }
                Identity::User(u) => (vec![u.clone()], Vec::new()),
            };
            JsonSuggestion {
                removes: p.removes(),
                percent: if s.findings == 0 {
                    0.0
                } else {
                    (p.removes() as f64 * 1000.0 / s.findings as f64).round() / 10.0
                },
                allowance: JsonAllowance {
                    name: &p.name,
                    risk: &p.risk,
                    who: JsonWho {
                        users,
                        service_accounts,
                        user_agents: p.user_agent.iter().map(|u| user_agent_pattern(u)).collect(),
                        verify_aws_arn: p.verify_aws_arn,
                    },
                    what: p
                        .scopes
                        .iter()
                        .map(|sc| JsonScope {
                            api_groups: [&sc.api_group],
                            resources: [&sc.resource],
                            verbs: &sc.verbs,
                            namespaces: sc.namespaces.as_deref(),
                            names: sc.names.as_deref(),
                            fields: &sc.fields,
                        })
                        .collect(),
                },
                scopes: p
                    .scopes
                    .iter()
                    .map(|sc| JsonScopeNote {
                        removes: sc.removes,
                        notes: &sc.notes,
                    })
                    .collect(),
            }
        })
        .collect();
    let out = JsonOut {
        schema: "driftwatch.suggestions/v1",
        inputs: &s.inputs,
        config: &s.config,
        events: s.events,
        findings: s.findings,
        removed: s.proposals.iter().map(Proposal::removes).sum(),
        remaining: s.remaining,
        suggestions,
        not_suggested: s
            .withheld
            .iter()
            .map(|w| JsonWithheld {
                identity: &w.identity,
                api_group: &w.api_group,
                resource: &w.resource,
                verbs: w.verbs.iter().map(String::as_str).collect(),
                findings: w.findings,
                reason: &w.reason,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_tokens_become_anchored_prefixes() {
        assert_eq!(
            user_agent_pattern("cert-manager-cainjector"),
            "^cert-manager-cainjector/"
        );
        assert_eq!(user_agent_pattern("kube.proxy"), "^kube\\.proxy/");
        let re = regex::Regex::new(&user_agent_pattern("kube.proxy")).unwrap();
        assert!(re.is_match("kube.proxy/v1.31"));
        assert!(!re.is_match("kubeXproxy/v1.31"));
    }

    #[test]
    fn risk_lines_wrap_on_words() {
        let lines = wrap("a bb ccc dddd", 6);
        assert_eq!(lines, vec!["a bb", "ccc", "dddd"]);
        assert_eq!(
            wrap("averyveryverylongword x", 4),
            vec!["averyveryverylongword", "x"]
        );
    }
}
