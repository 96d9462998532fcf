//! The listener: plain TCP or TLS, HTTP/1.1 and HTTP/2, with header
//! timeouts and size limits, a cap on connections and on streams per
//! connection, one memory budget for the bodies in flight ([`budget`]), the
//! client certificate's identity attached to every request, and graceful
//! shutdown that lets in-flight requests finish.

pub mod auth;
pub mod body;
pub mod budget;
mod conn;
pub mod guard;
pub mod tls;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::telemetry::events::{
    AcceptFailed, ConnectionLimitReached, ConnectionsOpen, Emit, Shutdown, ShutdownStage,
};

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a client to send its request headers (and the TLS
    /// handshake); also how long a connection may sit with no request.
    pub header_read_timeout: Duration,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// HTTP/2 streams open at once on one connection.
    pub max_concurrent_streams: u32,
}

/// HTTP/2 flow-control windows: what a client may send before the body is
/// read. hyper's defaults (1 MiB each) would let every connection park a
/// megabyte while its handler waits for the body budget; these still fill
/// a 10 ms link at tens of MB/s, far above an API server's audit rate.
const H2_STREAM_WINDOW: u32 = 256 * 1024;
const H2_CONNECTION_WINDOW: u32 = 512 * 1024;

type ConnBuilder = Builder<TokioExecutor>;

/// Serves `router` on `listener` until `shutdown`, then waits (up to the
/// grace period) for the connections' in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<tls::Reloading>>,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let builder = Arc::new(conn_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = accept(&listener, &slots, limits.max_connections) => accepted,
        };
        let Some((stream, peer, slot)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = conn::Connection {
            peer,
            builder: Arc::clone(&builder),
            router: router.clone(),
            limits,
            closing: closing.clone(),
            _slot: slot,
        };
        let (tls, slots) = (tls.clone(), Arc::clone(&slots));
        connections.spawn(async move {
            conn.run(stream, tls).await;
            ConnectionsOpen {
                open: limits.max_connections - slots.available_permits(),
            }
            .emit();
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        Shutdown {
            stage: ShutdownStage::GraceExceeded(limits.shutdown_grace),
        }
        .emit();
    }
    Ok(())
}

/// The next connection, once a slot is free: while every slot is taken,
/// new connections wait in the kernel's listen backlog, costing this
/// process nothing. `None` when accepting failed.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    max: usize,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let slot = match Arc::clone(slots).try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => {
            ConnectionLimitReached { max }.emit();
            Arc::clone(slots).acquire_owned().await.ok()?
        }
    };
    match listener.accept().await {
        Ok((stream, peer)) => {
            ConnectionsOpen {
                open: max - slots.available_permits(),
            }
            .emit();
            Some((stream, peer, slot))
        }
        Err(error) => {
            // Out of file descriptors and the like: pause, do not spin.
            AcceptFailed { error: &error }.emit();
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

fn conn_builder(limits: &Limits) -> ConnBuilder {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Room past the limit, so that a head a little too large reaches
        // the guard and gets a JSON `431`; hyper answers larger ones with
        // a bare `431` (it has no hook for a body).
        .max_buf_size((limits.max_header_bytes * 4).max(16 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        // Less slack than HTTP/1.1's: here it is paid per stream.
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 2).unwrap_or(u32::MAX));
    builder
}

/// For logs: where the service listens and how.
pub fn describe(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

/// An HTTP client builder with rustls on ring: reqwest is built without a
/// crypto provider of its own, so the process-wide one is installed first.
pub fn client_builder() -> reqwest::ClientBuilder {
    // Fails only when a provider is installed already, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
