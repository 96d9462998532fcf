//! The layer every request passes first: the request head's size, a total
//! deadline and a size cap on the body as it arrives on the wire, JSON for
//! every error answer, and a refused request's unread body drained (within
//! bounds) or kept until the answer is sent.
//!
//! Why keep the body: over HTTP/2, dropping a request body the client is
//! still sending makes h2 reset the stream with `CANCEL`, and a reset
//! discards the answer still queued for it, so the client sees a stream
//! error instead of its `401`. Reading the rest first lets the client finish
//! and read the answer (HTTP/1.1 clients then see no broken pipe either);
//! past the drain's bounds, the body is dropped only once the answer is
//! sent, and h2 then resets with `NO_ERROR`, which RFC 9113 §8.1 allows
//! after a complete response.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::telemetry::events::{BodyRefusal, BodyRefused, Emit};

/// Bodies of the query API (a drift accept: a reason and a name) are small;
/// this bounds what every open stream can make the listener buffer.
pub const API_MAX_BODY_BYTES: usize = 16 * 1024;

/// A refused request's body is read and thrown away up to this much and this
/// long, so that a client still sending a batch of normal size finishes and
/// reads the answer; a client that sends without end is cut off, and one
/// that pauses is answered at once (it is not sending a batch, it is
/// stalling).
const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);
const DRAIN_MAX_PAUSE: Duration = Duration::from_secs(1);

/// An error body longer than this is not worth repeating in JSON.
const ERROR_TEXT_MAX: usize = 4096;

/// The guard's settings, from `server.*`.
#[derive(Debug, Clone)]
pub struct Guard {
    pub max_header_bytes: usize,
    pub body_read_timeout: Duration,
    /// The wire cap of webhook bodies (`server.max_body_bytes`); the
    /// handler bounds the decompressed body itself.
    pub max_body_bytes: usize,
}

impl Guard {
    fn wire_cap(&self, path: &str) -> usize {
        // An AdmissionReview carries the old and new objects (an etcd
        // object is up to 1.5 MiB): as large as an audit batch may be.
        if path.starts_with(crate::app::routes::WEBHOOK)
            || path.starts_with(crate::app::routes::ADMISSION)
        {
            self.max_body_bytes
        } else {
            API_MAX_BODY_BYTES
        }
    }
}

/// Why the guard stopped a body: its read fails with this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyCut {
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body not received within {after:?} (server.body_read_timeout)")]
    Deadline { after: Duration },
}

impl BodyCut {
    pub fn status(self) -> StatusCode {
        match self {
            BodyCut::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyCut::Deadline { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn refusal(self) -> BodyRefusal {
        match self {
            BodyCut::TooLarge { .. } => BodyRefusal::TooLarge,
            BodyCut::Deadline { .. } => BodyRefusal::Deadline,
        }
    }

    /// The cut in an error's chain of sources, if it is one.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<BodyCut> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(cut) = e.downcast_ref::<BodyCut>() {
                return Some(*cut);
            }
            next = e.source();
        }
        None
    }
}

/// A JSON error answer: `{"error": message}`.
pub fn json_error(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// The middleware.
pub async fn guard(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let deadline = Instant::now() + guard.body_read_timeout;
    let head = head_size(&request);
    if head > guard.max_header_bytes {
        let refusal = json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request head of {head} bytes exceeds {} (server.max_header_bytes)",
                guard.max_header_bytes
            ),
        );
        return settle(refusal, request.into_body(), true, deadline).await;
    }
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let slot = Arc::new(Mutex::new(Returned::default()));
    let cap = guard.wire_cap(request.uri().path());
    let request = request.map(|body| Body::new(Lent::new(body, cap, deadline, &guard, &slot)));
    let response = next.run(request).await;
    let returned = std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner));
    let response = with_json_body(explain_cut(response, returned.cut)).await;
    let Some(body) = returned.body else {
        return response;
    };
    // A client waiting for `100 Continue` has sent nothing: do not ask for
    // it; a client past the deadline gets no more time.
    let waiting_for_continue = expects_continue && !returned.polled;
    let drain = !waiting_for_continue && !matches!(returned.cut, Some(BodyCut::Deadline { .. }));
    settle(response, body, drain, deadline).await
}

/// The answer to a request whose body was cut: the handler's, when it says
/// so; else (an extractor's generic error) one that says what happened.
fn explain_cut(response: Response, cut: Option<BodyCut>) -> Response {
    let Some(cut) = cut else {
        return response;
    };
    BodyRefused {
        reason: cut.refusal(),
    }
    .emit();
    if response.status() == cut.status() {
        response
    } else {
        json_error(cut.status(), cut.to_string())
    }
}

/// Drains what is left of an unread body (when `drain`), or keeps it until
/// the answer is sent; a body already at its end costs nothing.
async fn settle(response: Response, mut body: Body, drain: bool, deadline: Instant) -> Response {
    if body.is_end_stream() {
        return response;
    }
    let until = deadline.min(Instant::now() + DRAIN_MAX_TIME);
    if drain && drain_until(&mut body, until).await {
        return response;
    }
    response.map(|answer| {
        Body::new(Held {
            answer,
            _request: body,
        })
    })
}

/// About the bytes of the request line and headers as sent over HTTP/1.1.
fn head_size(request: &Request) -> usize {
    let line = request.method().as_str().len()
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + 12;
    line + request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}

/// What a [`Lent`] body leaves behind when dropped.
#[derive(Default)]
struct Returned {
    /// The rest of the body, when it was not read to its end.
    body: Option<Body>,
    cut: Option<BodyCut>,
    polled: bool,
}

/// The request body as handlers see it: cut at the deadline and at the
/// wire cap, and handed back to the guard when dropped unfinished.
struct Lent {
    inner: Option<Body>,
    slot: Arc<Mutex<Returned>>,
    received: usize,
    cap: usize,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    cut: Option<BodyCut>,
    polled: bool,
}

impl Lent {
    fn new(
        body: Body,
        cap: usize,
        deadline: Instant,
        guard: &Guard,
        slot: &Arc<Mutex<Returned>>,
    ) -> Lent {
        Lent {
            inner: Some(body),
            slot: Arc::clone(slot),
            received: 0,
            cap,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timeout: guard.body_read_timeout,
            cut: None,
            polled: false,
        }
    }

    fn cut(&mut self, cut: BodyCut) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.cut = Some(cut);
        Poll::Ready(Some(Err(Box::new(cut))))
    }
}

impl HttpBody for Lent {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        this.polled = true;
        if let Some(cut) = this.cut {
            return Poll::Ready(Some(Err(Box::new(cut))));
        }
        // A total deadline, not an idle one: a byte now and then does not
        // reset it.
        if this.deadline.as_mut().poll(cx).is_ready() {
            return this.cut(BodyCut::Deadline {
                after: this.timeout,
            });
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.received += frame.data_ref().map_or(0, Bytes::len);
                if this.received > this.cap {
                    return this.cut(BodyCut::TooLarge { limit: this.cap });
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.body = self.inner.take().filter(|b| !b.is_end_stream());
        slot.cut = self.cut;
        slot.polled = self.polled;
    }
}

/// An answer that keeps the request's unread body until it is sent.
struct Held {
    answer: Body,
    _request: Body,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.answer).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.answer.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.answer.size_hint()
    }
}

/// Reads and discards the rest of a body, until `until`, at most
/// [`DRAIN_MAX_BYTES`] and while frames keep coming; whether it reached its
/// end.
async fn drain_until(body: &mut Body, until: Instant) -> bool {
    let mut drained = 0u64;
    let read = async {
        loop {
            let Ok(frame) = tokio::time::timeout(DRAIN_MAX_PAUSE, body.frame()).await else {
                return false;
            };
            let Some(Ok(frame)) = frame else {
                return frame.is_none();
            };
            drained += frame.data_ref().map_or(0, |d| d.len() as u64);
            if drained > DRAIN_MAX_BYTES {
                return false;
            }
        }
    };
    tokio::time::timeout_at(until, read).await.unwrap_or(false)
}

/// Every error answer carries a JSON body: answers made by the router or an
/// extractor (a bare `404`, a text rejection) get one, keeping their text.
async fn with_json_body(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, ERROR_TEXT_MAX)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty());
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    });
    let body = serde_json::json!({ "error": message }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_is_found_through_the_errors_that_wrap_it() {
        let cut = BodyCut::TooLarge { limit: 10 };
        let wrapped = axum::Error::new(Box::new(cut) as BoxError);
        let io = std::io::Error::other(wrapped);
        assert_eq!(BodyCut::find(&io), Some(cut));
        assert_eq!(BodyCut::find(&std::io::Error::other("reset")), None);
    }

    #[tokio::test]
    async fn bare_error_answers_get_a_json_body_and_keep_their_headers() {
        let bare = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        )
            .into_response();
        let json = with_json_body(bare).await;
        assert_eq!(json.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(json.headers()[header::ALLOW], "GET,HEAD");
        let body = axum::body::to_bytes(json.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"method not allowed"}"#);

        let text = (StatusCode::UNPROCESSABLE_ENTITY, "missing field `reason`").into_response();
        let body = axum::body::to_bytes(with_json_body(text).await.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"error":"missing field `reason`"}"#);

        let ok = axum::Json(serde_json::json!({"a": 1})).into_response();
        assert_eq!(with_json_body(ok).await.status(), StatusCode::OK);
    }
}
