//! `/api/v1`: changes, drifts, one resource's history, accepting a drift.
//! Reads run on blocking threads with their own SQLite connections; the
//! accept goes through the engine thread, the only writer.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::context::live;
use crate::engine::{self, AcceptOutcome, IngestError};
use crate::http::auth::Principal;
use crate::store::query::{self, Filter, QueryError};
use crate::store::read::{self, Conn, Readers};
use crate::store::view::Bounds;
use crate::store::{Health, ProblemKind, StoreError};

#[derive(Clone)]
pub struct QueryState {
    /// `None` when history is disabled.
    pub pool: Option<Readers>,
    /// Damage a query finds is reported here: the writer stops committing
    /// to a damaged file.
    pub health: Option<Health>,
    /// What one page of a list route may carry (`server.max_query_page_bytes`).
    pub bounds: Bounds,
    /// Queries running at once (`server.max_concurrent_queries`): each holds
    /// a row in memory and a core busy, which ingest needs too.
    pub permits: Arc<Semaphore>,
    pub engine: engine::Handle,
    /// The live-values reader for `?live=true`; `None` without
    /// `kubernetes`.
    pub live: Option<crate::context::Live>,
}

/// How long a query waits for its turn before it is told to come back.
const QUERY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize)]
struct ApiError {
    error: String,
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

enum Failure {
    Disabled,
    /// Every query slot stayed taken for [`QUERY_WAIT`].
    Busy,
    Query(QueryError),
    Store(StoreError),
    Join,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Disabled => error(
                StatusCode::NOT_FOUND,
                "history is disabled (history.enabled: false)",
            ),
            Failure::Query(e @ QueryError::BadParam { .. }) => {
                error(StatusCode::BAD_REQUEST, e.to_string())
            }
            Failure::Query(QueryError::Sqlite(e)) if crate::store::is_corruption(&e) => {
                error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Failure::Query(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Failure::Store(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            Failure::Join => error(StatusCode::INTERNAL_SERVER_ERROR, "query task failed"),
            Failure::Busy => {
                let mut response = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "every query slot (server.max_concurrent_queries) stayed busy for {}s; try again",
                        QUERY_WAIT.as_secs()
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                response
            }
        }
    }
}

/// Runs `f` with a pooled read connection on a blocking thread.
async fn read<T, F>(state: &QueryState, f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&mut Conn) -> Result<T, QueryError> + Send + 'static,
{
    let pool = state.pool.clone().ok_or(Failure::Disabled)?;
    let health = state.health.clone();
    let permit = tokio::time::timeout(QUERY_WAIT, Arc::clone(&state.permits).acquire_owned())
        .await
        .map_err(|_| Failure::Busy)?
        .map_err(|_| Failure::Join)?;
    tokio::task::spawn_blocking(move || {
        // Held until the answer is built, serialization included.
        let _permit = permit;
        let mut conn = pool.get().map_err(Failure::Store)?;
        f(&mut conn).map_err(|e| {
            if let (QueryError::Sqlite(source), Some(health), Some(path)) =
                (&e, &health, pool.sqlite_file())
                && crate::store::is_corruption(source)
            {
                health.set(
                    ProblemKind::Corrupt,
                    crate::store::damaged(&path, &source.to_string()),
                );
            }
            Failure::Query(e)
        })
    })
    .await
    .map_err(|_| Failure::Join)?
}

fn bad_query(e: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, e.body_text())
}

pub async fn changes(
    State(state): State<QueryState>,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let Query(filter) = match filter {
        Ok(f) => f,
        Err(e) => return bad_query(e),
    };
    let bounds = state.bounds;
    match read(&state, move |c| json(read::changes(c, &filter, &bounds)?)).await {
        Ok(body) => body.into_response(),
        Err(f) => f.into_response(),
    }
}

/// `GET /api/v1/denials`: the changes admission denied (`type` is
/// `denied_change`), with every filter and the cursor of `/api/v1/changes`.
pub async fn denials(
    State(state): State<QueryState>,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let Query(mut filter) = match filter {
        Ok(f) => f,
        Err(e) => return bad_query(e),
    };
    let denied = crate::model::FindingType::DeniedChange.as_str();
    if filter.finding_type.as_deref().is_some_and(|t| t != denied) {
        return crate::http::guard::json_error(
            axum::http::StatusCode::BAD_REQUEST,
            format!("/api/v1/denials lists type {denied} only; use /api/v1/changes for others"),
        );
    }
    filter.finding_type = Some(denied.to_owned());
    let bounds = state.bounds;
    match read(&state, move |c| json(read::changes(c, &filter, &bounds)?)).await {
        Ok(body) => body.into_response(),
        Err(f) => f.into_response(),
    }
}

/// A page as JSON, written on the query's blocking thread (within its
/// slot) rather than on the runtime's.
fn json<T: Serialize>(page: T) -> Result<JsonBody, QueryError> {
    // Serializing our own types to memory cannot fail.
    Ok(JsonBody(serde_json::to_vec(&page).unwrap_or_default()))
}

struct JsonBody(Vec<u8>);

impl IntoResponse for JsonBody {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

pub async fn drifts(
    State(state): State<QueryState>,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let Query(filter) = match filter {
        Ok(f) => f,
        Err(e) => return bad_query(e),
    };
    let bounds = state.bounds;
    match read(&state, move |c| json(read::drifts(c, &filter, &bounds)?)).await {
        Ok(body) => body.into_response(),
        Err(f) => f.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DriftParams {
    /// Read the object now and compare the drifted fields (an unclosed
    /// drift only); without it the route reads the store alone.
    #[serde(default)]
    live: bool,
}

/// A drift, and with `?live=true` on an unclosed one, its live values.
#[derive(Serialize)]
struct DriftWithLive {
    #[serde(flatten)]
    drift: query::DriftItem,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<live::LiveView>,
}

pub async fn drift(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    params: Result<Query<DriftParams>, QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return bad_query(e),
    };
    let wanted = id.clone();
    let found = read(&state, move |c| {
        let Some(drift) = read::drift(c, &wanted)? else {
            return Ok(None);
        };
        let target = if params.live && drift.state.is_unclosed() {
            read::drift_live_target(c, &wanted)?.map(|(_, t)| t)
        } else {
            None
        };
        Ok(Some((drift, target)))
    })
    .await;
    match found {
        Ok(Some((drift, target))) => {
            // Outside the query slot: the API server's answer can take up
            // to `lookup_timeout`, and holds no connection.
            let live = match (target, &state.live) {
                (None, _) => None,
                (Some(t), Some(reader)) => Some(reader.read(&t).await),
                (Some(_), None) => Some(live::unavailable(live::Reason::NoClient, None)),
            };
            Json(DriftWithLive { drift, live }).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no drift {id:?}")),
        Err(f) => f.into_response(),
    }
}

/// One object's changes: the path names the object, the query the rest.
pub async fn history(
    State(state): State<QueryState>,
    Path((group, resource, namespace, name)): Path<(String, String, String, String)>,
    params: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let Query(mut filter) = match params {
        Ok(p) => p,
        Err(e) => return bad_query(e),
    };
    if filter.names_object() {
        return error(
            StatusCode::BAD_REQUEST,
            "the path names the object: namespace, group, resource and name are not query parameters here",
        );
    }
    filter.namespace = Some(namespace);
    filter.group = Some(group);
    filter.resource = Some(resource);
    filter.name = Some(name);
    let bounds = state.bounds;
    match read(&state, move |c| json(read::changes(c, &filter, &bounds)?)).await {
        Ok(body) => body.into_response(),
        Err(f) => f.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// Who accepts; taken from the caller's credentials when they name
    /// someone, required otherwise.
    #[serde(default)]
    pub by: Option<String>,
    pub reason: String,
}

/// Who an accept is attributed to: the authenticated caller when the
/// credentials name one, else what the body says.
fn accepted_by(
    principal: Option<&Principal>,
    stated: Option<String>,
) -> Result<String, (StatusCode, String)> {
    let stated = stated.filter(|b| !b.trim().is_empty());
    match (principal.and_then(|p| p.name.clone()), stated) {
        (Some(name), None) => Ok(name),
        (Some(name), Some(by)) if by == name => Ok(name),
        (Some(name), Some(by)) => Err((
            StatusCode::FORBIDDEN,
            format!("`by` is taken from your credentials ({name:?}); leave it out, or send {name:?}, not {by:?}"),
        )),
        (None, Some(by)) => Ok(by),
        (None, None) => Err((
            StatusCode::BAD_REQUEST,
            "`by` must not be empty (or name the caller in server.auth.query_tokens_file: TOKEN NAME)"
                .to_owned(),
        )),
    }
}

pub async fn accept(
    State(state): State<QueryState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    body: Result<Json<AcceptBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"reason\": ..., \"by\": ...}}: {}",
                    e.body_text()
                ),
            );
        }
    };
    let by = match accepted_by(principal.as_ref().map(|Extension(p)| p), body.by) {
        Ok(by) => by,
        Err((code, message)) => return error(code, message),
    };
    if body.reason.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "`reason` must not be empty");
    }
    if state.pool.is_none() {
        return Failure::Disabled.into_response();
    }
    let outcome = state.engine.accept_drift(id.clone(), by, body.reason).await;
    let wanted = id.clone();
    let current = || read(&state, move |c| read::drift(c, &wanted));
    match outcome {
        Ok(AcceptOutcome::Accepted) => match current().await {
            Ok(Some(d)) => Json(d).into_response(),
            Ok(None) => error(StatusCode::NOT_FOUND, format!("no drift {id:?}")),
            Err(f) => f.into_response(),
        },
        Ok(AcceptOutcome::NotOpen) => match current().await {
            Ok(Some(d)) => error(
                StatusCode::CONFLICT,
                format!("drift {id:?} is already {}", d.state.as_str()),
            ),
            Ok(None) => error(StatusCode::NOT_FOUND, format!("no drift {id:?}")),
            Err(f) => f.into_response(),
        },
        Ok(AcceptOutcome::NoStore) => Failure::Disabled.into_response(),
        Err(e @ IngestError::Stopped) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
