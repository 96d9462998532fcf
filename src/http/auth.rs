//! Who is calling: the client certificate's common name (from the TLS
//! layer) and a bearer token, each optionally bound to one cluster so that
//! one API server cannot write as another.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use foldhash::HashMap;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::telemetry::events::{AuthRefused, Emit, FileReloaded, WebhookAnswered};

/// Set on every request by the listener: the verified client certificate's
/// common name, if the connection presented one.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub common_name: Option<String>,
}

/// What the webhook's auth layer concluded; handlers read it from the
/// extensions.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The only cluster this caller may write as, when bound.
    pub cluster: Option<String>,
    pub bound_by: BoundBy,
}

/// Why a caller is bound to its cluster: the refusal says what to change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BoundBy {
    /// Not bound: no authentication, or `server.auth.allow_any_cluster`.
    #[default]
    Nothing,
    /// The cluster after its token in the tokens file.
    Token,
    /// Its certificate's common name in `server.auth.client_clusters`.
    Certificate,
    /// Authenticated, but bound to no cluster: only the default one.
    Default,
}

impl Caller {
    /// Why writing as `wanted` is refused, naming the fix.
    pub fn refusal(&self, wanted: &str) -> Option<String> {
        let bound = self.cluster.as_deref()?;
        if bound == wanted {
            return None;
        }
        Some(match self.bound_by {
            BoundBy::Default => format!(
                "this client is bound to no cluster, so it may only write as the default cluster {bound:?}, not {wanted:?}: bind it (a cluster after its token in server.auth.bearer_tokens_file, or its certificate's common name in server.auth.client_clusters), or set server.auth.allow_any_cluster: true"
            ),
            BoundBy::Token | BoundBy::Certificate | BoundBy::Nothing => {
                format!("this client may only write as cluster {bound:?}, not {wanted:?}")
            }
        })
    }
}

/// Who calls the query API, as far as the credentials say: the name after
/// the token in `query_tokens_file`, else the client certificate's common
/// name.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: cannot read tokens: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// A tokens file: one token per line, optionally followed by a label (the
/// cluster a webhook token is bound to, the caller a query token names);
/// `#` starts a comment.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Option<String>)>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let token = fields.next().unwrap_or_default();
            let cluster = fields.next().map(str::to_owned);
            if fields.next().is_some() {
                return Err(AuthError::Line {
                    path: path.display().to_string(),
                    line: i + 1,
                    message: "expected TOKEN [CLUSTER]".to_owned(),
                });
            }
            if token.len() < 16 {
                return Err(AuthError::Line {
                    path: path.display().to_string(),
                    line: i + 1,
                    message: "token shorter than 16 characters".to_owned(),
                });
            }
            entries.push((token.as_bytes().to_vec(), cluster));
        }
        Ok(Tokens { entries })
    }

    /// The label of the entry matching `presented`. Every entry is
    /// compared, each in constant time, so the time taken says nothing of
    /// which token came close.
    fn find(&self, presented: &[u8]) -> Option<&Option<String>> {
        let mut found = None;
        for (token, label) in &self.entries {
            if bool::from(token.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(label);
            }
        }
        found
    }
}

/// A tokens file that is re-read when it changes.
pub struct TokenFile {
    path: PathBuf,
    current: ArcSwap<Tokens>,
}

impl TokenFile {
    pub fn open(path: &Path) -> Result<Arc<TokenFile>, AuthError> {
        Ok(Arc::new(TokenFile {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(Tokens::load(path)?),
        }))
    }

    pub fn spawn_watch(self: &Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let this = Arc::clone(self);
        super::watch::spawn(
            vec![self.path.clone()],
            every,
            shutdown,
            move || match Tokens::load(&this.path) {
                Ok(t) => {
                    this.current.store(Arc::new(t));
                    FileReloaded {
                        what: "tokens",
                        path: &this.path,
                        error: None,
                    }
                    .emit();
                }
                Err(e) => FileReloaded {
                    what: "tokens",
                    path: &this.path,
                    error: Some(&e),
                }
                .emit(),
            },
        );
    }
}

/// The webhook's auth settings.
#[derive(Clone, Default)]
pub struct WebhookAuth {
    pub tokens: Option<Arc<TokenFile>>,
    /// Client certificate common name -> the cluster it writes as.
    pub cn_clusters: Arc<HashMap<String, String>>,
    /// Client certificates are verified (`server.tls.client_ca_file`).
    pub client_certificates: bool,
    /// `cluster`: what an authenticated caller bound to none writes as.
    pub default_cluster: String,
    /// `server.auth.allow_any_cluster`.
    pub allow_any_cluster: bool,
}

impl WebhookAuth {
    /// Whether callers prove who they are (a token or a certificate).
    fn authenticates(&self) -> bool {
        self.tokens.is_some() || self.client_certificates
    }

    /// The cluster binding of a caller that passed authentication.
    fn bind(&self, certificate: Option<&String>, token: Option<&String>) -> Caller {
        let (cluster, bound_by) = match (token, certificate) {
            (Some(t), _) => (Some(t.clone()), BoundBy::Token),
            (None, Some(c)) => (Some(c.clone()), BoundBy::Certificate),
            (None, None) if self.authenticates() && !self.allow_any_cluster => {
                (Some(self.default_cluster.clone()), BoundBy::Default)
            }
            (None, None) => (None, BoundBy::Nothing),
        };
        Caller { cluster, bound_by }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let rest = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))?;
    Some(rest.trim_ascii())
}

fn refuse(code: StatusCode, reason: &'static str, message: &str) -> Response {
    AuthRefused { reason }.emit();
    WebhookAnswered {
        code: code.as_u16(),
    }
    .emit();
    let mut r = (code, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if code == StatusCode::UNAUTHORIZED
        && let Ok(v) = "Bearer realm=\"driftwatch\"".parse()
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Middleware for the webhook: a token when tokens are configured, and the
/// cluster binding of the token or certificate.
pub async fn webhook(
    State(auth): State<WebhookAuth>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<Peer>()
        .cloned()
        .unwrap_or_default();
    let by_certificate = peer
        .common_name
        .as_ref()
        .and_then(|cn| auth.cn_clusters.get(cn));
    let mut by_token = None;
    if let Some(tokens) = &auth.tokens {
        let Some(presented) = bearer(request.headers()) else {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "a bearer token is required",
            );
        };
        let current = tokens.current.load();
        let Some(cluster) = current.find(presented) else {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "bad_token",
                "the bearer token is not valid",
            );
        };
        if let (Some(t), Some(c)) = (cluster, by_certificate)
            && t != c
        {
            return refuse(
                StatusCode::FORBIDDEN,
                "cluster_mismatch",
                "the client certificate and the token are bound to different clusters",
            );
        }
        by_token.clone_from(cluster);
    }
    let caller = auth.bind(by_certificate, by_token.as_ref());
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Middleware for the query API: a token when `query_tokens_file` is set,
/// and the caller's name for what it writes (a drift accept).
pub async fn query(
    State(tokens): State<Option<Arc<TokenFile>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let common_name = request
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.common_name.clone());
    let mut principal = Principal { name: common_name };
    if let Some(tokens) = &tokens {
        let current = tokens.current.load();
        let Some(label) = bearer(request.headers()).and_then(|t| current.find(t)) else {
            AuthRefused {
                reason: "query_token",
            }
            .emit();
            let mut r = (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({ "error": "a valid bearer token is required for the query API" })),
            )
                .into_response();
            if let Ok(v) = "Bearer realm=\"driftwatch\"".parse() {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return r;
        };
        if label.is_some() {
            principal.name.clone_from(label);
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(tokens: bool, certificates: bool, allow_any_cluster: bool) -> WebhookAuth {
        WebhookAuth {
            tokens: tokens.then(|| {
                Arc::new(TokenFile {
                    path: PathBuf::new(),
                    current: ArcSwap::from_pointee(Tokens::default()),
                })
            }),
            client_certificates: certificates,
            default_cluster: "prod-eu-1".to_owned(),
            allow_any_cluster,
            ..WebhookAuth::default()
        }
    }

    #[test]
    fn an_authenticated_caller_bound_to_nothing_writes_only_as_the_default_cluster() {
        let eu = "prod-eu-1".to_owned();
        let us = "prod-us-2".to_owned();
        for a in [auth(true, false, false), auth(false, true, false)] {
            let caller = a.bind(None, None);
            assert_eq!(caller.bound_by, BoundBy::Default);
            assert_eq!(caller.refusal("prod-eu-1"), None);
            let refusal = caller.refusal("prod-us-2").unwrap();
            assert!(
                refusal.contains("server.auth.allow_any_cluster: true"),
                "{refusal}"
            );
            assert!(refusal.contains("server.auth.client_clusters"), "{refusal}");
        }
        assert_eq!(
            auth(true, true, true).bind(None, None).refusal("prod-us-2"),
            None
        );
        assert_eq!(
            auth(false, false, false)
                .bind(None, None)
                .refusal("prod-us-2"),
            None
        );
        let by_token = auth(true, true, false).bind(Some(&eu), Some(&us));
        assert_eq!(
            (by_token.cluster.as_deref(), by_token.bound_by),
            (Some("prod-us-2"), BoundBy::Token)
        );
        let by_cert = auth(false, true, true).bind(Some(&us), None);
        assert!(
            by_cert.refusal("prod-eu-1").is_some(),
            "a binding holds with allow_any_cluster"
        );
    }

    #[test]
    fn tokens_file_with_bindings_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# api servers\nabcdefghijklmnop0001 prod-eu-1\nabcdefghijklmnop0002\n\n",
        )
        .unwrap();
        let t = Tokens::load(&path).unwrap();
        assert_eq!(
            t.find(b"abcdefghijklmnop0001"),
            Some(&Some("prod-eu-1".to_owned()))
        );
        assert_eq!(t.find(b"abcdefghijklmnop0002"), Some(&None));
        assert_eq!(t.find(b"abcdefghijklmnop0003"), None);
        assert_eq!(t.find(b""), None);
    }

    #[test]
    fn short_tokens_and_extra_fields_are_refused_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "abcdefghijklmnop0001\nshort\n").unwrap();
        assert!(
            Tokens::load(&path)
                .unwrap_err()
                .to_string()
                .ends_with(":2: token shorter than 16 characters")
        );
        std::fs::write(&path, "abcdefghijklmnop0001 a b\n").unwrap();
        assert!(
            Tokens::load(&path)
                .unwrap_err()
                .to_string()
                .contains(":1: expected TOKEN [CLUSTER]")
        );
    }
}
