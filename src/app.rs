//! Wires the service: the pipeline thread, the HTTP router, shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower_http::decompression::RequestDecompressionLayer;
use tracing::{error, info};

use crate::api::ops::{self, OpsState};
use crate::config::Config;
use crate::decode;
use crate::pipeline::Pipeline;
use crate::sinks::{SinkError, Sinks};
use crate::sources::webhook::{self, Job, JobOutcome, WebhookState};
use crate::telemetry::{self, events};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open sink: {0}")]
    Sink(#[from] SinkError),
    #[error("cannot start the pipeline thread: {0}")]
    Thread(std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// A bound, not yet serving, service.
pub struct Server {
    listener: TcpListener,
    router: Router,
    pipeline_thread: JoinHandle<()>,
    shutdown: CancellationToken,
}

impl Server {
    /// Binds the listener and starts the pipeline thread.
    pub async fn bind(config: Config, shutdown: CancellationToken) -> Result<Server, AppError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.listen,
                source,
            })?;
        let sinks = Sinks::from_config(&config.sinks)?;
        let config = Arc::new(config);
        let (queue, jobs) = mpsc::channel::<Job>(config.queue_batches);
        let pipeline = Pipeline::new(Arc::clone(&config));
        let pipeline_thread = std::thread::Builder::new()
            .name("pipeline".to_owned())
            .spawn(move || run_pipeline(pipeline, sinks, jobs))
            .map_err(AppError::Thread)?;

        let metrics = telemetry::init_metrics();
        let webhook_state = WebhookState {
            queue: queue.clone(),
            max_body_bytes: config.max_body_bytes,
            shutdown: shutdown.clone(),
        };
        let ops_state = OpsState {
            metrics,
            queue,
            shutdown: shutdown.clone(),
        };
        let webhook_routes = Router::new()
            .route("/audit/webhook", post(webhook::post_default))
            .route("/audit/webhook/{cluster}", post(webhook::post_cluster))
            // The handler enforces the limit on the decompressed body itself.
            .layer(DefaultBodyLimit::disable())
            .layer(RequestDecompressionLayer::new())
            .with_state(webhook_state);
        let ops_routes = Router::new()
            .route("/metrics", get(ops::metrics))
            .route("/healthz", get(ops::healthz))
            .route("/readyz", get(ops::readyz))
            .with_state(ops_state);
        let router = webhook_routes.merge(ops_routes);
        Ok(Server {
            listener,
            router,
            pipeline_thread,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the shutdown token fires, then finishes in-flight
    /// batches and stops the pipeline.
    pub async fn run(self) -> Result<(), AppError> {
        let Server {
            listener,
            router,
            pipeline_thread,
            shutdown,
        } = self;
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        // The router, and with it every queue sender, is gone: the pipeline
        // thread drains what is queued and exits.
        let joined = tokio::task::spawn_blocking(move || pipeline_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            error!("The pipeline thread did not stop cleanly.");
        }
        info!("Stopped.");
        result.map_err(AppError::Serve)
    }
}

/// The pipeline thread: one batch at a time, so dedupe and per-resource state
/// need no locks and batches cannot race each other.
fn run_pipeline(mut pipeline: Pipeline, mut sinks: Sinks, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        let decoded = decode::decode_bytes(&job.body);
        let batch = pipeline.process(
            &decoded,
            job.cluster.as_deref(),
            events::Source::Webhook,
            "webhook",
        );
        let outcome = match sinks.emit(&batch.findings) {
            Ok(()) => {
                pipeline.commit();
                JobOutcome::Accepted {
                    documents: decoded.documents,
                    events: decoded.events.len(),
                    findings: batch.findings.len(),
                    rejections: decoded.rejections.clone(),
                }
            }
            Err(e) => {
                pipeline.rollback();
                JobOutcome::SinkFailed(e.to_string())
            }
        };
        events::batch_processed(decoded.events.len(), job.received.elapsed().as_secs_f64());
        // The client may have gone away; its batch is processed all the same.
        let _ = job.reply.send(outcome);
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
