//! The listener: plain TCP or TLS, HTTP/1.1 and HTTP/2, with header
//! timeouts and size limits, the client certificate's identity attached to
//! every request, and graceful shutdown that lets in-flight requests finish.

pub mod auth;
pub mod tls;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::telemetry::events::{
    AcceptFailed, AuthRefused, ConnectionFailed, Emit, Shutdown, ShutdownStage,
};

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a client to send its request headers (and the TLS handshake).
    pub header_read_timeout: Duration,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

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
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    AcceptFailed { error: &error }.emit();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            peer,
            builder: Arc::clone(&builder),
            router: router.clone(),
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn.serve(TokioIo::new(stream), None).await,
                Some(tls) => {
                    if let Some(stream) = handshake(&tls, stream, peer, &limits).await {
                        let common_name = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|cert| tls::common_name(cert));
                        conn.serve(TokioIo::new(stream), common_name).await;
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
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

fn conn_builder(limits: &Limits) -> ConnBuilder {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// One accepted connection, before or after its TLS handshake.
struct Connection {
    peer: SocketAddr,
    builder: Arc<ConnBuilder>,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Connection {
    /// Serves HTTP on `io`; every request carries the certificate's name.
    async fn serve<I>(self, io: TokioIo<I>, common_name: Option<String>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service =
            TowerToHyperService::new(self.router.layer(Extension(auth::Peer { common_name })));
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        if let Err(e) = self.watcher.watch(conn).await {
            ConnectionFailed {
                peer: self.peer,
                during: "http",
                error: &e,
            }
            .emit();
        }
    }
}

/// The TLS handshake within the header timeout; `None` when refused.
async fn handshake(
    tls: &tls::Reloading,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    limits: &Limits,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
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
