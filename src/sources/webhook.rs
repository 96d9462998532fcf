//! The API server's audit webhook: `POST /audit/webhook[/{cluster}]`.
//!
//! The API server retries any error five times with backoff, then drops the
//! batch. So: `200` only once every event of the batch is classified and its
//! findings flushed; `400` only for a body that holds no audit event at all
//! (a retry cannot fix it); `429`/`503` with `Retry-After` when the pipeline
//! cannot take the batch now.

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::decode::{self, MAX_LISTED, RejectReason};
use crate::engine::{self, Busy, IngestError, Input};
use crate::http::auth::Caller;
use crate::http::body::{self, BodyError, BodyLimits};
use crate::telemetry::events::{AuthRefused, Emit, Source, WebhookAnswered};

#[derive(Clone)]
pub struct WebhookState {
    pub engine: engine::Handle,
    /// `server.max_body_bytes` and the listener's memory budget.
    pub body: BodyLimits,
    pub shutdown: CancellationToken,
}

#[derive(Debug, Serialize)]
struct AcceptedBody {
    documents: u64,
    events: u64,
    findings: usize,
    /// The first rejected documents ([`MAX_LISTED`] at most).
    rejected: Vec<RejectedDoc>,
    /// All rejected documents, listed or not.
    rejected_count: usize,
}

#[derive(Debug, Serialize)]
struct RejectedDoc {
    line: usize,
    reason: &'static str,
    message: String,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    /// The config key whose limit the request passed, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected: Vec<RejectedDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected_count: Option<usize>,
}

impl ErrorBody {
    fn new(error: String) -> ErrorBody {
        ErrorBody {
            error,
            limit: None,
            rejected: Vec::new(),
            rejected_count: None,
        }
    }
}

pub async fn post_default(
    State(state): State<WebhookState>,
    caller: Option<Extension<Caller>>,
    request: Request,
) -> Response {
    // A caller bound to a cluster writes as that cluster.
    let bound = caller.and_then(|Extension(c)| c.cluster);
    handle(state, bound, request).await
}

pub async fn post_cluster(
    State(state): State<WebhookState>,
    caller: Option<Extension<Caller>>,
    Path(cluster): Path<String>,
    request: Request,
) -> Response {
    if let Some(refusal) = caller.and_then(|Extension(c)| c.refusal(&cluster)) {
        AuthRefused {
            reason: "cluster_mismatch",
        }
        .emit();
        return error(StatusCode::FORBIDDEN, refusal);
    }
    if !valid_cluster_name(&cluster) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid cluster name {cluster:?}: use 1-253 characters of a-z, 0-9, '-', '.', '_'"
            ),
        );
    }
    handle(state, Some(cluster), request).await
}

async fn handle(state: WebhookState, cluster: Option<String>, request: Request) -> Response {
    let received = Instant::now();
    if state.shutdown.is_cancelled() {
        return unavailable(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    // `_held`: the body's share of the memory budget, until it is answered.
    let (body, _held) = match body::read(request, &state.body).await {
        Ok(received) => (received.bytes, received.held),
        Err(e) => return body_refused(&e),
    };
    // A byte-order mark alone is no more a batch than an empty body.
    let content = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&body);
    if content.iter().all(u8::is_ascii_whitespace) {
        return error(
            StatusCode::BAD_REQUEST,
            "empty body: expected an EventList, Event, array or JSON lines",
        );
    }

    let mut input = Input::whole(body, cluster, Source::Webhook);
    input.received = received;
    let answer = match state.engine.try_ingest(input).await {
        Ok(answer) => answer,
        Err(Busy::Full) => {
            return unavailable(StatusCode::TOO_MANY_REQUESTS, "the engine's queue is full");
        }
        Err(Busy::Stopped) => {
            return unavailable(StatusCode::SERVICE_UNAVAILABLE, "the engine is not running");
        }
    };
    match answer.await {
        Ok(Ok(accepted)) => accepted_response(accepted),
        Ok(Err(e @ IngestError::TooManyEvents { .. })) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{e}; lower the API server's --audit-webhook-batch-max-size"),
        ),
        // A retry would cost the same and be refused again.
        Ok(Err(e @ IngestError::OverBudget { .. })) => limited(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e}: mostly not audit events"),
            "server.max_decode_work",
        ),
        Ok(Err(e)) => unavailable(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(_) => unavailable(StatusCode::SERVICE_UNAVAILABLE, "the engine stopped"),
    }
}

fn accepted_response(a: engine::Accepted) -> Response {
    let rejected: Vec<RejectedDoc> = a
        .rejections
        .iter()
        .take(MAX_LISTED)
        .map(|r| RejectedDoc {
            line: r.line,
            reason: r.reason.as_str(),
            message: r.message.clone(),
        })
        .collect();
    let rejected_count = a.rejections.total();
    if a.stats.events == 0
        && let Some(first) = a.rejections.first()
    {
        return no_events(&a.rejections, first, rejected);
    }
    WebhookAnswered { code: 200 }.emit();
    (
        StatusCode::OK,
        Json(AcceptedBody {
            documents: a.stats.documents,
            events: a.stats.events,
            findings: a.findings,
            rejected,
            rejected_count,
        }),
    )
        .into_response()
}

/// A body with rejected documents and no event: `400`, or `413` when
/// something in it is too large (what it unpacks to, or an event): the
/// message names the limit.
fn no_events(
    rejections: &decode::Rejections,
    first: &decode::Rejection,
    rejected: Vec<RejectedDoc>,
) -> Response {
    let too_large = rejections.count(RejectReason::TooLarge) > 0;
    let code = if too_large {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    let summary = format!(
        "no audit events in body: {} document(s) rejected; line {}: {}",
        rejections.total(),
        first.line,
        first.message
    );
    WebhookAnswered {
        code: code.as_u16(),
    }
    .emit();
    let body = ErrorBody {
        rejected,
        rejected_count: Some(rejections.total()),
        ..ErrorBody::new(summary)
    };
    (code, Json(body)).into_response()
}

/// A body that could not be read whole, answered with what to change.
fn body_refused(e: &BodyError) -> Response {
    let code = e.status();
    match e {
        BodyError::TooLarge { .. } => error(
            code,
            format!("{e}; lower the API server's --audit-webhook-batch-max-size"),
        ),
        BodyError::Budget(_) => unavailable(code, &e.to_string()),
        _ => error(code, e.to_string()),
    }
}

fn valid_cluster_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        })
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    WebhookAnswered {
        code: code.as_u16(),
    }
    .emit();
    (code, Json(ErrorBody::new(message.into()))).into_response()
}

/// [`error`] for a request past the limit of config key `limit`.
fn limited(code: StatusCode, message: String, limit: &'static str) -> Response {
    WebhookAnswered {
        code: code.as_u16(),
    }
    .emit();
    let body = ErrorBody {
        limit: Some(limit),
        ..ErrorBody::new(message)
    };
    (code, Json(body)).into_response()
}

/// The API server backs off and retries; say when.
fn unavailable(code: StatusCode, message: &str) -> Response {
    let mut response = error(code, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
