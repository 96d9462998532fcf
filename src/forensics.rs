//! `driftwatch who-changed`: one object's change history, from the local
//! store or a running server, as a table or JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::classify::admitted::BREAK_GLASS_REASON;
use crate::model::ChangeRecord;
use crate::store::query::{self, Filter, Page};
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
    #[error("{path}: {message}")]
    Credentials { path: String, message: String },
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

/// `KIND/NAME` as kubectl users type it (`deploy/api`, `cm/settings`,
/// `deployments.apps/api`) as a filter: the plural resource, the group when
/// given, the name, and `_` as the namespace of a cluster-scoped kind.
pub fn target(s: &str) -> Result<Filter, ForensicsError> {
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
    Ok(Filter {
        resource: Some(resource),
        group,
        name: Some(name.to_owned()),
        namespace: cluster_scoped.then(|| "_".to_owned()),
        ..Filter::default()
    })
}

/// How to reach a running driftwatch.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `Authorization: Bearer` for `server.auth.query_tokens_file`.
    pub token: Option<String>,
    /// The CA that signed the server's certificate.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate and key, for a listener with `client_ca_file`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Oldest first: the order in which a reader follows what happened.
pub fn from_store(dir: &Path, filter: &Filter) -> Result<Vec<ChangeRecord>, ForensicsError> {
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
    // The reader's own store: every value whole.
    let mut items = query::changes(&conn, filter, &crate::store::view::Bounds::WHOLE)?.items;
    items.reverse();
    Ok(items)
}

/// Asks a running driftwatch, forwarding every filter as it is.
pub async fn from_server(
    server: &str,
    filter: &Filter,
    options: &ServerOptions,
) -> Result<Vec<ChangeRecord>, ForensicsError> {
    let url = format!("{}/api/v1/changes", server.trim_end_matches('/'));
    let err = |message: String| ForensicsError::Server {
        url: url.clone(),
        message,
    };
    let mut request = client(options)?.get(&url).query(filter);
    if let Some(token) = &options.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| err(describe(&e)))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| err(describe(&e)))?;
    if !status.is_success() {
        return Err(err(format!("{status}: {body}")));
    }
    let mut page: Page<ChangeRecord> =
        serde_json::from_str(&body).map_err(|e| err(format!("unexpected answer: {e}")))?;
    page.items.reverse();
    Ok(page.items)
}

/// An HTTP client with the CA and client certificate asked for.
pub fn client(options: &ServerOptions) -> Result<reqwest::Client, ForensicsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| ForensicsError::Credentials {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let bad = |path: &PathBuf, e: reqwest::Error| ForensicsError::Credentials {
        path: path.display().to_string(),
        message: describe(&e),
    };
    let mut builder = crate::http::client_builder();
    if let Some(ca) = &options.ca_cert {
        // Only that CA: a server named by the operator is verified against
        // the CA the operator names, not every CA the system trusts.
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| bad(ca, e))?;
        builder = builder.tls_certs_only(certs);
    }
    match (&options.client_cert, &options.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| bad(cert, e))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        (Some(path), None) | (None, Some(path)) => {
            return Err(ForensicsError::Credentials {
                path: path.display().to_string(),
                message: "--client-cert and --client-key go together".to_owned(),
            });
        }
    }
    builder.build().map_err(|e| ForensicsError::Server {
        url: String::new(),
        message: describe(&e),
    })
}

/// reqwest's message and its causes: "error sending request" alone does not
/// say that the certificate was refused.
fn describe(e: &reqwest::Error) -> String {
    crate::telemetry::with_causes(e)
}

const FIELDS_WIDTH: usize = 72;

/// A readable table: time, actor, client, verb, fields, verdict, pipeline.
pub fn table(items: &[ChangeRecord]) -> String {
    let rows: Vec<[String; 7]> = items
        .iter()
        .map(|c| {
            let actor = c.actor.describe();
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
            let mut verdict = match &c.finding_type {
                Some(t) => format!("{} ({})", c.verdict.as_str(), t.as_str()),
                None => c.verdict.as_str().to_owned(),
            };
            if c.reasons.iter().any(|r| r.starts_with(BREAK_GLASS_REASON)) {
                verdict.push_str(" break-glass");
            }
            [
                c.time.text.clone(),
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
        let t = target("deploy/api").unwrap();
        assert_eq!(
            (t.resource.as_deref(), t.name.as_deref(), t.namespace),
            (Some("deployments"), Some("api"), None)
        );
        assert_eq!(
            target("cm/settings").unwrap().resource.as_deref(),
            Some("configmaps")
        );
        assert_eq!(
            target("sts/db").unwrap().resource.as_deref(),
            Some("statefulsets")
        );
        assert_eq!(target("ns/shop").unwrap().namespace.as_deref(), Some("_"));
        let t = target("deployments.apps/api").unwrap();
        assert_eq!(
            (t.resource.as_deref(), t.group.as_deref()),
            (Some("deployments"), Some("apps"))
        );
        assert_eq!(
            target("flunder/x").unwrap().resource.as_deref(),
            Some("flunders")
        );
        assert!(target("deploy").is_err());
        assert!(target("deploy/").is_err());
    }
}
