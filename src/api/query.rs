//! `/api/v1`: changes, drifts, one resource's history, accepting a drift.
//! Reads run on blocking threads with their own SQLite connections; the
//! accept goes through the pipeline thread, the only writer.

use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::AcceptOutcome;
use crate::store::query::{self, ChangeFilter, DriftFilter, QueryError};
use crate::store::{self, StoreError};
use crate::worker::Work;

#[derive(Clone)]
pub struct QueryState {
    /// `None` when history is disabled.
    pub data_dir: Option<PathBuf>,
    pub queue: mpsc::Sender<Work>,
}

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
            Failure::Query(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Failure::Store(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            Failure::Join => error(StatusCode::INTERNAL_SERVER_ERROR, "query task failed"),
        }
    }
}

/// Runs `f` with a read connection on a blocking thread.
async fn read<T, F>(state: &QueryState, f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, QueryError> + Send + 'static,
{
    let dir = state.data_dir.clone().ok_or(Failure::Disabled)?;
    tokio::task::spawn_blocking(move || {
        let conn = store::open_reader(&dir).map_err(Failure::Store)?;
        f(&conn).map_err(Failure::Query)
    })
    .await
    .map_err(|_| Failure::Join)?
}

fn bad_query(e: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, e.body_text())
}

pub async fn changes(
    State(state): State<QueryState>,
    filter: Result<Query<ChangeFilter>, QueryRejection>,
) -> Response {
    let Query(filter) = match filter {
        Ok(f) => f,
        Err(e) => return bad_query(e),
    };
    match read(&state, move |c| query::changes(c, &filter)).await {
        Ok(page) => Json(page).into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn drifts(
    State(state): State<QueryState>,
    filter: Result<Query<DriftFilter>, QueryRejection>,
) -> Response {
    let Query(filter) = match filter {
        Ok(f) => f,
        Err(e) => return bad_query(e),
    };
    match read(&state, move |c| query::drifts(c, &filter)).await {
        Ok(page) => Json(page).into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn drift(State(state): State<QueryState>, Path(id): Path<String>) -> Response {
    let wanted = id.clone();
    match read(&state, move |c| query::drift(c, &wanted)).await {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no drift {id:?}")),
        Err(f) => f.into_response(),
    }
}

/// Filters of the per-resource history route, beside the path.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    pub cluster: Option<String>,
    pub field: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

pub async fn history(
    State(state): State<QueryState>,
    Path((group, resource, namespace, name)): Path<(String, String, String, String)>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return bad_query(e),
    };
    let filter = ChangeFilter {
        cluster: p.cluster,
        namespace: Some(namespace),
        group: Some(group),
        resource: Some(resource),
        name: Some(name),
        field: p.field,
        since: p.since,
        until: p.until,
        limit: p.limit,
        cursor: p.cursor,
        ..ChangeFilter::default()
    };
    match read(&state, move |c| query::changes(c, &filter)).await {
        Ok(page) => Json(page).into_response(),
        Err(f) => f.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    pub by: String,
    pub reason: String,
}

pub async fn accept(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    body: Result<Json<AcceptBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"by\": ..., \"reason\": ...}}: {}",
                    e.body_text()
                ),
            );
        }
    };
    if body.by.trim().is_empty() || body.reason.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "`by` and `reason` must not be empty",
        );
    }
    if state.data_dir.is_none() {
        return Failure::Disabled.into_response();
    }
    let (reply, answer) = oneshot::channel();
    let work = Work::AcceptDrift {
        id: id.clone(),
        by: body.by,
        reason: body.reason,
        reply,
    };
    if state.queue.send(work).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "pipeline is not running");
    }
    match answer.await {
        Ok(Ok(AcceptOutcome::Accepted)) => {
            let wanted = id.clone();
            match read(&state, move |c| query::drift(c, &wanted)).await {
                Ok(Some(d)) => Json(d).into_response(),
                Ok(None) => error(StatusCode::NOT_FOUND, format!("no drift {id:?}")),
                Err(f) => f.into_response(),
            }
        }
        Ok(Ok(AcceptOutcome::NotOpen)) => {
            let wanted = id.clone();
            match read(&state, move |c| query::drift(c, &wanted)).await {
                Ok(Some(d)) => error(
                    StatusCode::CONFLICT,
                    format!("drift {id:?} is already {}", d.state),
                ),
                Ok(None) => error(StatusCode::NOT_FOUND, format!("no drift {id:?}")),
                Err(f) => f.into_response(),
            }
        }
        Ok(Ok(AcceptOutcome::NoStore)) => Failure::Disabled.into_response(),
        Ok(Err(message)) => error(StatusCode::SERVICE_UNAVAILABLE, message),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "pipeline stopped"),
    }
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
