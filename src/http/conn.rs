//! One accepted connection: its TLS handshake, HTTP on it, and its end: at
//! shutdown, or once it has had no request in progress for the header
//! timeout (HTTP/1.1 closes such a connection on its own; HTTP/2 and a
//! connection that never sends a byte would keep their slot forever).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{ConnBuilder, Limits, auth, tls};
use crate::telemetry::events::{AuthRefused, ConnectionFailed, ConnectionIdle, Emit};

/// An accepted connection and what it needs to serve.
pub(super) struct Connection {
    pub peer: SocketAddr,
    pub builder: Arc<ConnBuilder>,
    pub router: Router,
    pub limits: Limits,
    /// Fires at shutdown: finish in-flight requests, take no new ones.
    pub closing: CancellationToken,
    /// Its slot of `server.max_connections`, given back when it ends.
    pub _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// The handshake if TLS is on, then HTTP until the connection ends.
    pub async fn run(self, stream: TcpStream, tls: Option<Arc<tls::Reloading>>) {
        match tls {
            None => self.serve(TokioIo::new(stream), None).await,
            Some(tls) => {
                if let Some(stream) = handshake(&tls, stream, self.peer, &self.limits).await {
                    let common_name = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|cert| tls::common_name(cert));
                    self.serve(TokioIo::new(stream), common_name).await;
                }
            }
        }
    }

    /// Serves HTTP on `io`; every request carries the certificate's name.
    async fn serve<I>(self, io: TokioIo<I>, common_name: Option<String>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let service = Tracked {
            inner: TowerToHyperService::new(self.router.clone()),
            peer: auth::Peer { common_name },
            activity: Arc::clone(&activity),
        };
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let idle_after = self.limits.header_read_timeout;
        let mut closing = Closing::No;
        let result = loop {
            tokio::select! {
                result = conn.as_mut() => break result,
                // Shutdown: in-flight requests finish within the grace
                // period, which the listener enforces for all connections.
                () = self.closing.cancelled(), if !matches!(closing, Closing::Shutdown) => {
                    if closing == Closing::No {
                        conn.as_mut().graceful_shutdown();
                    }
                    closing = Closing::Shutdown;
                }
                () = activity.idle_for(idle_after), if closing == Closing::No => {
                    ConnectionIdle { peer: self.peer }.emit();
                    conn.as_mut().graceful_shutdown();
                    closing = Closing::Idle(Instant::now() + idle_after);
                }
                // An idle connection told to close that does not (a client
                // that never reads the answer): drop it.
                () = until(closing.hard_stop()) => break Ok(()),
            }
        };
        if let Err(e) = result {
            ConnectionFailed {
                peer: self.peer,
                during: "http",
                error: &e,
            }
            .emit();
        }
    }
}

/// Whether a connection was asked to close, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// Idle: closed for good at this instant if still open.
    Idle(Instant),
    Shutdown,
}

impl Closing {
    fn hard_stop(self) -> Option<Instant> {
        match self {
            Closing::Idle(at) => Some(at),
            Closing::No | Closing::Shutdown => None,
        }
    }
}

/// Sleeps until `at` (never, when `None`).
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The TLS handshake within the header timeout; `None` when refused.
async fn handshake(
    tls: &tls::Reloading,
    stream: TcpStream,
    peer: SocketAddr,
    limits: &Limits,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = TlsAcceptor::from(tls.current());
    let failed: Box<dyn std::fmt::Display> =
        match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(s)) => return Some(s),
            Ok(Err(e)) => Box::new(e),
            Err(_) => Box::new("timed out"),
        };
    AuthRefused {
        reason: "tls_handshake",
    }
    .emit();
    ConnectionFailed {
        peer,
        during: "tls_handshake",
        error: &failed,
    }
    .emit();
    None
}

/// Requests in progress on one connection, and since when it has had none.
struct Activity {
    state: Mutex<(usize, Instant)>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new((0, Instant::now())),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        Busy(Arc::clone(self))
    }

    /// Resolves once no request has been in progress for `after`.
    async fn idle_for(&self, after: Duration) {
        loop {
            let (busy, since) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let at = since + after;
            if busy == 0 && Instant::now() >= at {
                return;
            }
            // Busy: look again later; the request ends on its own deadline.
            let wake = if busy == 0 {
                at
            } else {
                Instant::now() + after
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One request in progress; ends when dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0 {
            state.1 = Instant::now();
        }
    }
}

/// The router as this connection's service: each request gets the peer's
/// certificate name and counts as activity until it is answered.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    peer: auth::Peer,
    activity: Arc<Activity>,
}

type Answer = Result<axum::response::Response, std::convert::Infallible>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        let busy = self.activity.begin();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            drop(busy);
            response
        })
    }
}
