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

/// Serves `router` on `listener` until `shutdown`, then waits (up to the
/// grace period) for the connections' in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<tls::Reloading>>,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
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
    let builder = Arc::new(builder);
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
        let watcher = graceful.watcher();
        let builder = Arc::clone(&builder);
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let service =
                        TowerToHyperService::new(router.layer(Extension(auth::Peer::default())));
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        ConnectionFailed {
                            peer,
                            during: "http",
                            error: &e,
                        }
                        .emit();
                    }
                }
                Some(tls) => {
                    let acceptor = TlsAcceptor::from(tls.current());
                    let stream = match tokio::time::timeout(
                        limits.header_read_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            AuthRefused {
                                reason: "tls_handshake",
                            }
                            .emit();
                            ConnectionFailed {
                                peer,
                                during: "tls_handshake",
                                error: &e,
                            }
                            .emit();
                            return;
                        }
                        Err(_) => {
                            AuthRefused {
                                reason: "tls_handshake",
                            }
                            .emit();
                            ConnectionFailed {
                                peer,
                                during: "tls_handshake",
                                error: &"timed out",
                            }
                            .emit();
                            return;
                        }
                    };
                    let common_name = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|cert| tls::common_name(cert));
                    let service = TowerToHyperService::new(
                        router.layer(Extension(auth::Peer { common_name })),
                    );
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        ConnectionFailed {
                            peer,
                            during: "http",
                            error: &e,
                        }
                        .emit();
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
