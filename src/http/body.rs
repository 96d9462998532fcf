//! Reading a webhook body: `Content-Encoding: gzip` inflated as it arrives
//! (every member, RFC 1952 allows several), the decompressed body bounded
//! by `server.max_body_bytes`, and every byte of its buffer reserved from
//! the listener's [`Budget`] before it is filled. Gzip inside a body that
//! says no `Content-Encoding` is the decoder's business, not this one's.
//!
//! The buffer grows by doubling, each step reserved first; a plain body
//! whose `Content-Length` is known gets its exact size at once. A read into
//! the buffer never asks for more than its free room, so the inflater cannot
//! produce more than was reserved, whatever the compression ratio.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_compression::tokio::bufread::GzipDecoder;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Buf, Bytes};
use hyper::body::Body as HttpBody;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, ReadBuf};

use super::budget::{Budget, Reservation, Spent};
use super::guard::BodyCut;
use crate::telemetry::events::{BodyRefusal, BodyRefused, Emit};

/// The first buffer of a body of unknown size.
const FIRST_CAPACITY: usize = 64 * 1024;

/// What one inflater's state costs (zlib's window and tables, about 45
/// KiB with miniz_oxide): reserved before it is made, so that thousands of
/// streams waiting for room do not each hold one.
pub const INFLATER_BYTES: usize = 64 * 1024;

/// How bodies are read.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// The largest body, decompressed.
    pub max_bytes: usize,
    pub budget: Arc<Budget>,
}

/// A body read whole, and its share of the budget: keep it as long as the
/// bytes are in use (until the batch is answered).
#[derive(Debug)]
pub struct Received {
    pub bytes: Bytes,
    pub held: Reservation,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body exceeds {limit} bytes (server.max_body_bytes)")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Cut(BodyCut),
    #[error(transparent)]
    Budget(#[from] Spent),
    #[error("unsupported Content-Encoding {0:?}: send the body uncompressed or gzip-compressed")]
    Encoding(String),
    #[error("corrupt gzip body (Content-Encoding: gzip): {0}")]
    Corrupt(String),
    #[error("cannot read body: {0}")]
    Read(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Cut(cut) => cut.status(),
            BodyError::Budget(_) => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Corrupt(_) | BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn from_io(e: &io::Error) -> BodyError {
        if let Some(cut) = BodyCut::find(e) {
            return match cut {
                BodyCut::TooLarge { limit } => BodyError::TooLarge { limit },
                cut @ BodyCut::Deadline { .. } => BodyError::Cut(cut),
            };
        }
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<WireError>())
        {
            Some(wire) => BodyError::Read(wire.0.to_string()),
            None if e.kind() == io::ErrorKind::UnexpectedEof => {
                BodyError::Corrupt("truncated gzip data".to_owned())
            }
            None => BodyError::Corrupt(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Result<Encoding, BodyError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            _ => Err(BodyError::Encoding(text.chars().take(64).collect())),
        }
    }
}

/// Reads the whole body of `request` within the limits. The head is let go
/// first: with thousands of streams waiting, their headers add up.
pub async fn read(request: Request, limits: &BodyLimits) -> Result<Received, BodyError> {
    let (parts, body) = request.into_parts();
    let encoding = Encoding::of(&parts.headers);
    drop(parts);
    let result = match encoding {
        Ok(encoding) => read_within(body, encoding, limits).await,
        Err(e) => Err(e),
    };
    let refusal = match &result {
        Err(BodyError::TooLarge { .. }) => Some(BodyRefusal::TooLarge),
        Err(BodyError::Budget(_)) => Some(BodyRefusal::Budget),
        _ => None,
    };
    if let Some(reason) = refusal {
        BodyRefused { reason }.emit();
    }
    result
}

async fn read_within(
    body: Body,
    encoding: Encoding,
    limits: &BodyLimits,
) -> Result<Received, BodyError> {
    let known = body
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok());
    let mut sink = Sink {
        buf: Vec::new(),
        held: limits.budget.reservation(),
        limit: limits.max_bytes,
    };
    let reader = BodyReader {
        body,
        chunk: Bytes::new(),
    };
    match encoding {
        Encoding::Identity => {
            if let Some(n) = known {
                if n > limits.max_bytes {
                    return Err(BodyError::TooLarge {
                        limit: limits.max_bytes,
                    });
                }
                sink.grow_to(n.max(1)).await?;
            }
            sink.fill(reader).await?;
        }
        Encoding::Gzip => {
            let mut inflater = limits.budget.reservation();
            inflater.grow_to(INFLATER_BYTES).await?;
            let mut decoder = GzipDecoder::new(reader);
            decoder.multiple_members(true);
            sink.fill(decoder).await?;
        }
    }
    Ok(sink.finish())
}

/// The buffer a body is read into, and what it holds of the budget.
struct Sink {
    buf: Vec<u8>,
    held: Reservation,
    limit: usize,
}

impl Sink {
    /// Reads `from` to its end into the buffer.
    async fn fill<R: AsyncRead + Unpin>(&mut self, mut from: R) -> Result<(), BodyError> {
        loop {
            if self.buf.len() == self.buf.capacity() {
                // Full: is there more? One byte says, without reserving
                // room for a body that may have just ended.
                let mut probe = [0u8; 1];
                let n = from
                    .read(&mut probe)
                    .await
                    .map_err(|e| BodyError::from_io(&e))?;
                if n == 0 {
                    return Ok(());
                }
                if self.buf.len() >= self.limit {
                    return Err(BodyError::TooLarge { limit: self.limit });
                }
                let next = (self.buf.capacity() * 2).clamp(FIRST_CAPACITY, self.limit);
                self.grow_to(next).await?;
                self.buf.push(probe[0]);
            }
            if read_some(&mut from, &mut self.buf).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Room for `capacity` bytes, reserved before it is allocated.
    async fn grow_to(&mut self, capacity: usize) -> Result<(), BodyError> {
        self.held.grow_to(capacity).await?;
        self.buf
            .reserve_exact(capacity.saturating_sub(self.buf.len()));
        Ok(())
    }

    /// The bytes, in a buffer no larger than they are, and the budget held
    /// for exactly that.
    fn finish(mut self) -> Received {
        if self.buf.capacity() > self.buf.len() {
            self.buf.shrink_to_fit();
        }
        self.held.shrink_to(self.buf.capacity());
        Received {
            bytes: Bytes::from(self.buf),
            held: self.held,
        }
    }
}

/// One read into the free room of `buf` (a `Vec` grows only when full,
/// which [`Sink::fill`] never lets happen here).
async fn read_some<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut Vec<u8>,
) -> Result<usize, BodyError> {
    from.read_buf(buf).await.map_err(|e| BodyError::from_io(&e))
}

/// An error of the connection or the guard, told apart from the inflater's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WireError(axum::Error);

/// The body's frames as a byte stream, for the inflater and the buffer.
struct BodyReader {
    body: Body,
    chunk: Bytes,
}

impl AsyncBufRead for BodyReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.chunk.is_empty() {
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                None => break,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(WireError(e)))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                }
            }
        }
        Poll::Ready(Ok(&this.chunk))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().chunk.advance(amt);
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let chunk = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = chunk.len().min(buf.remaining());
        buf.put_slice(&chunk[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn limits(max_bytes: usize, budget: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            budget: Budget::with_wait(budget, Duration::from_millis(10)),
        }
    }

    fn gzip_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        h
    }

    async fn read_body(
        body: impl Into<Body>,
        headers: &HeaderMap,
        limits: &BodyLimits,
    ) -> Result<Received, BodyError> {
        let mut request = Request::new(body.into());
        *request.headers_mut() = headers.clone();
        read(request, limits).await
    }

    /// A body of several frames and no known size, as chunked uploads come.
    fn streamed(parts: Vec<Vec<u8>>) -> Body {
        Body::new(Frames(parts.into_iter().map(Bytes::from).collect()))
    }

    struct Frames(std::collections::VecDeque<Bytes>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn plain_bodies_are_read_into_exactly_their_size() {
        let l = limits(1 << 20, 1 << 20);
        let got = read_body(Body::from(vec![b'x'; 1000]), &HeaderMap::new(), &l)
            .await
            .unwrap();
        assert_eq!(got.bytes.len(), 1000);
        assert_eq!(got.held.bytes(), 1000);
        assert_eq!(l.budget.in_use(), 1000);
        drop(got);
        assert_eq!(l.budget.in_use(), 0);

        let parts = vec![vec![b'a'; 70_000], vec![b'b'; 70_000], vec![b'c'; 5]];
        let got = read_body(streamed(parts), &HeaderMap::new(), &l)
            .await
            .unwrap();
        assert_eq!(got.bytes.len(), 140_005);
        assert_eq!(got.held.bytes(), 140_005, "shrunk to what it holds");
    }

    #[tokio::test]
    async fn every_gzip_member_is_inflated() {
        let l = limits(1 << 20, 1 << 20);
        let mut body = gzip(b"{\"a\":1}\n");
        body.extend(gzip(b"{\"b\":2}\n"));
        let got = read_body(Body::from(body), &gzip_headers(), &l)
            .await
            .unwrap();
        assert_eq!(&got.bytes[..], b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn a_bomb_stops_at_the_limit_having_reserved_no_more() {
        // A budget of exactly the limit and the inflater: reserving past it
        // would be refused as a spent budget, not as too large.
        let l = limits(256 * 1024, 256 * 1024 + INFLATER_BYTES);
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let err = read_body(Body::from(bomb), &gzip_headers(), &l)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BodyError::TooLarge { limit } if limit == 256 * 1024),
            "{err}"
        );
        assert_eq!(l.budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_the_body() {
        let l = limits(1 << 20, 100_000);
        let mut hog = l.budget.reservation();
        hog.grow_to(90_000).await.unwrap();
        let err = read_body(Body::from(vec![b'x'; 20_000]), &HeaderMap::new(), &l)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::Budget(_)), "{err}");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn bad_encodings_and_corrupt_gzip_are_told_apart() {
        let l = limits(1 << 20, 1 << 20);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        let err = read_body(Body::from("x"), &h, &l).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let cut = gzip(b"hello world, hello world");
        let err = read_body(
            Body::from(cut[..cut.len() - 6].to_vec()),
            &gzip_headers(),
            &l,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BodyError::Corrupt(_)), "{err}");
        let err = read_body(Body::from("not gzip"), &gzip_headers(), &l)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::Corrupt(_)), "{err}");
    }
}
