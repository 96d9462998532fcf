//! `driftwatch who-changed`: one object's change history, from the local
//! store or a running server, as a table or JSON.

use std::fmt::Write as _;
use std::path::Path;

use crate::store::query::{self, ChangeFilter, ChangeItem, Page};
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ForensicsError {
    #[error("{0:?} is not KIND/NAME (for example deploy/api or configmaps/settings)")]
    BadTarget(String),
    #[error("no history at {dir}: {source} (run `driftwatch serve` or `replay --data-dir` first)")]
    NoStore { dir: String, source: StoreError },
    #[error(transparent)]
    Query(#[from] query::QueryError),
    #[error("server {url}: {message}")]
    Server { url: String, message: String },
}

/// A kind as the user typed it, resolved to the plural resource and, when
/// given as `resource.group`, the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource: String,
    pub group: Option<String>,
    pub name: String,
    pub cluster_scoped: bool,
}

/// Short names and singular kinds kubectl users type, to plural resources.
const KINDS: &[(&[&str], &str, bool)] = &[
    (&["po", "pod"], "pods", false),
    (&["deploy", "deployment"], "deployments", false),
    (&["rs", "replicaset"], "replicasets", false),
    (&["sts", "statefulset"], "statefulsets", false),
    (&["ds", "daemonset"], "daemonsets", false),
    (&["job"], "jobs", false),
    (&["cj", "cronjob"], "cronjobs", false),
    (&["svc", "service"], "services", false),
    (&["cm", "configmap"], "configmaps", false),
    (&["secret"], "secrets", false),
    (&["sa", "serviceaccount"], "serviceaccounts", false),
    (&["ing", "ingress"], "ingresses", false),
    (&["netpol", "networkpolicy"], "networkpolicies", false),
    (
        &["pvc", "persistentvolumeclaim"],
        "persistentvolumeclaims",
        false,
    ),
    (
        &["hpa", "horizontalpodautoscaler"],
        "horizontalpodautoscalers",
        false,
    ),
    (
        &["pdb", "poddisruptionbudget"],
        "poddisruptionbudgets",
        false,
    ),
    (&["role"], "roles", false),
    (&["rolebinding"], "rolebindings", false),
    (&["ns", "namespace"], "namespaces", true),
    (&["no", "node"], "nodes", true),
    (&["pv", "persistentvolume"], "persistentvolumes", true),
    (&["clusterrole"], "clusterroles", true),
    (&["crb", "clusterrolebinding"], "clusterrolebindings", true),
    (
        &["crd", "customresourcedefinition"],
        "customresourcedefinitions",
        true,
    ),
    (&["sc", "storageclass"], "storageclasses", true),
    (
        &["validatingwebhookconfiguration"],
        "validatingwebhookconfigurations",
        true,
    ),
    (
        &["mutatingwebhookconfiguration"],
        "mutatingwebhookconfigurations",
        true,
    ),
];

impl Target {
    pub fn parse(s: &str) -> Result<Target, ForensicsError> {
        let (kind, name) = s
            .split_once('/')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| ForensicsError::BadTarget(s.to_owned()))?;
        let kind = kind.to_ascii_lowercase();
        let (kind, group) = match kind.split_once('.') {
            Some((k, g)) => (k.to_owned(), Some(g.to_owned())),
            None => (kind, None),
        };
        let known = KINDS
            .iter()
            .find(|(short, plural, _)| short.contains(&kind.as_str()) || *plural == kind);
        let (resource, cluster_scoped) = match known {
            Some((_, plural, scoped)) => ((*plural).to_owned(), *scoped),
            None if kind.ends_with('s') => (kind, false),
            None => (format!("{kind}s"), false),
        };
        Ok(Target {
            resource,
            group,
            name: name.to_owned(),
            cluster_scoped,
        })
    }
}

pub struct Request<'a> {
    pub target: &'a Target,
    pub namespace: Option<&'a str>,
    pub cluster: Option<&'a str>,
    pub since: Option<&'a str>,
    pub field: Option<&'a str>,
    pub limit: usize,
}

impl Request<'_> {
    fn filter(&self) -> ChangeFilter {
        ChangeFilter {
            cluster: self.cluster.map(str::to_owned),
            namespace: if self.target.cluster_scoped {
                Some("_".to_owned())
            } else {
                self.namespace.map(str::to_owned)
            },
            group: self.target.group.clone(),
            resource: Some(self.target.resource.clone()),
            name: Some(self.target.name.clone()),
            field: self.field.map(str::to_owned),
            since: self.since.map(str::to_owned),
            limit: Some(self.limit.min(query::MAX_LIMIT)),
            ..ChangeFilter::default()
        }
    }
}

/// Oldest first: the order in which a reader follows what happened.
pub fn from_store(dir: &Path, req: &Request<'_>) -> Result<Vec<ChangeItem>, ForensicsError> {
    if !dir.join(store::DB_FILE).exists() {
        return Err(ForensicsError::NoStore {
            dir: dir.display().to_string(),
            source: StoreError::Dir {
                path: dir.join(store::DB_FILE).display().to_string(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        });
    }
    let conn = store::open_reader(dir).map_err(|source| ForensicsError::NoStore {
        dir: dir.display().to_string(),
        source,
    })?;
    let mut items = query::changes(&conn, &req.filter())?.items;
    items.reverse();
    Ok(items)
}

pub async fn from_server(
    server: &str,
    req: &Request<'_>,
) -> Result<Vec<ChangeItem>, ForensicsError> {
    let f = req.filter();
    let url = format!("{}/api/v1/changes", server.trim_end_matches('/'));
    let mut params: Vec<(&str, String)> = Vec::new();
    let mut add = |k, v: &Option<String>| {
        if let Some(v) = v {
            params.push((k, v.clone()));
        }
    };
    add("cluster", &f.cluster);
    add("namespace", &f.namespace);
    add("group", &f.group);
    add("resource", &f.resource);
    add("name", &f.name);
    add("field", &f.field);
    add("since", &f.since);
    add("limit", &f.limit.map(|l| l.to_string()));
    let err = |message: String| ForensicsError::Server {
        url: url.clone(),
        message,
    };
    let response = reqwest::Client::new()
        .get(&url)
        .query(&params)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        return Err(err(format!("{status}: {body}")));
    }
    let mut page: Page<ChangeItem> =
        serde_json::from_str(&body).map_err(|e| err(format!("unexpected answer: {e}")))?;
    page.items.reverse();
    Ok(page.items)
}

const FIELDS_WIDTH: usize = 72;

/// A readable table: time, actor, client, verb, fields, verdict, pipeline.
pub fn table(items: &[ChangeItem]) -> String {
    let rows: Vec<[String; 7]> = items
        .iter()
        .map(|c| {
            let actor = match &c.actor.impersonated_by {
                Some(by) => format!("{} (as {})", by.username, c.actor.username),
                None => c.actor.username.clone(),
            };
            let mut fields = c
                .changes
                .iter()
                .take(3)
                .map(|ch| match (&ch.old, &ch.new, ch.redacted) {
                    (_, _, true) => format!("{} (redacted)", ch.path),
                    (serde_json::Value::Null, new, _) => format!("{}={}", ch.path, short(new)),
                    (old, new, _) => format!("{}: {} -> {}", ch.path, short(old), short(new)),
                })
                .collect::<Vec<_>>()
                .join(", ");
            if c.changes.len() > 3 {
                let _ = write!(fields, " (+{} more)", c.changes.len() - 3);
            }
            // A terminal line, not a dump: `--output json` has everything.
            if fields.chars().count() > FIELDS_WIDTH {
                fields = format!(
                    "{}…",
                    fields.chars().take(FIELDS_WIDTH - 1).collect::<String>()
                );
            }
            let verb = match &c.resource.subresource {
                Some(sub) => format!("{}/{sub}", c.verb),
                None => c.verb.clone(),
            };
            let verdict = match &c.finding_type {
                Some(t) => format!("{} ({t})", c.verdict),
                None => c.verdict.clone(),
            };
            [
                c.time.clone(),
                actor,
                c.actor.client.clone().unwrap_or_else(|| "-".to_owned()),
                verb,
                if fields.is_empty() {
                    "-".to_owned()
                } else {
                    fields
                },
                verdict,
                c.pipeline.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let header = [
        "TIME", "ACTOR", "CLIENT", "VERB", "FIELDS", "VERDICT", "PIPELINE",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_resolve_like_kubectl() {
        let t = Target::parse("deploy/api").unwrap();
        assert_eq!(
            (t.resource.as_str(), t.name.as_str()),
            ("deployments", "api")
        );
        assert_eq!(Target::parse("cm/settings").unwrap().resource, "configmaps");
        assert_eq!(Target::parse("sts/db").unwrap().resource, "statefulsets");
        assert!(Target::parse("ns/shop").unwrap().cluster_scoped);
        let t = Target::parse("deployments.apps/api").unwrap();
        assert_eq!(
            (t.resource.as_str(), t.group.as_deref()),
            ("deployments", Some("apps"))
        );
        assert_eq!(Target::parse("flunder/x").unwrap().resource, "flunders");
        assert!(Target::parse("deploy").is_err());
        assert!(Target::parse("deploy/").is_err());
    }
}
