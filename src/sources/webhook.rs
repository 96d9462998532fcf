//! The API server's audit webhook: `POST /audit/webhook[/{cluster}]`.
//!
//! The API server retries any error five times with backoff, then drops the
//! batch. So: `200` only once every event of the batch is classified and its
//! findings flushed; `400` only for a body that holds no audit event at all
//! (a retry cannot fix it); `429`/`503` with `Retry-After` when the pipeline
//! cannot take the batch now.

use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::decode::{self, MAX_LISTED, RejectReason};
use crate::engine::{self, Busy, IngestError, Input};
use crate::http::auth::Caller;
use crate::telemetry::events::{AuthRefused, Emit, Source, WebhookAnswered};

#[derive(Clone)]
pub struct WebhookState {
    pub engine: engine::Handle,
    pub max_body_bytes: usize,
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
    body: Body,
) -> Response {
    // A caller bound to a cluster writes as that cluster.
    let bound = caller.and_then(|Extension(c)| c.cluster);
    handle(state, bound, body).await
}

pub async fn post_cluster(
    State(state): State<WebhookState>,
    caller: Option<Extension<Caller>>,
    Path(cluster): Path<String>,
    body: Body,
) -> Response {
    if let Some(Extension(Caller {
        cluster: Some(bound),
    })) = &caller
        && *bound != cluster
    {
        AuthRefused {
            reason: "cluster_mismatch",
        }
        .emit();
        return error(
            StatusCode::FORBIDDEN,
            format!("this client may only write as cluster {bound:?}, not {cluster:?}"),
        );
    }
    if !valid_cluster_name(&cluster) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid cluster name {cluster:?}: use 1-253 characters of a-z, 0-9, '-', '.', '_'"
            ),
        );
    }
    handle(state, Some(cluster), body).await
}

async fn handle(state: WebhookState, cluster: Option<String>, body: Body) -> Response {
    let received = Instant::now();
    if state.shutdown.is_cancelled() {
        return unavailable(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let body = match read_body(body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body exceeds {} bytes (server.max_body_bytes); lower the API server's --audit-webhook-batch-max-size",
                    state.max_body_bytes
                ),
            );
        }
        Err(ReadError::Body(e)) => {
            return error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}"));
        }
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
    let answer = match state.engine.try_ingest(input) {
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

enum ReadError {
    TooLarge,
    Body(axum::Error),
}

/// Past the limit, the rest of the body is still read and thrown away, up to
/// this much more: a server that answers and closes while the client is still
/// sending makes the client's next write fail (broken pipe, reset), and the
/// client never sees the `413` that tells it to send smaller batches.
const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// The whole (decompressed) body, at most `limit` bytes of it.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ReadError> {
    // Content-Length sizes the buffer, but only up to a point: a client that
    // announces a big body and sends nothing must not pin that much memory.
    const PREALLOCATE_MAX: usize = 1024 * 1024;
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(limit);
    let mut buf = BytesMut::with_capacity(hint.min(limit).min(PREALLOCATE_MAX));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            drain(body).await;
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(data);
    }
    Ok(buf.freeze())
}

/// Reads and discards what is left of a body, within bounds: a client that
/// keeps sending gets its answer late rather than never; one that sends
/// without end, or a decompression bomb, is cut off.
async fn drain(mut body: Body) {
    let mut drained = 0usize;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, Bytes::len);
            if drained > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
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
