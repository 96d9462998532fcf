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
use crate::api::query::{self, QueryState};
use crate::config::Config;
use crate::http::{Limits, auth, tls};
use crate::pipeline::Pipeline;
use crate::sinks::{SinkError, Sinks};
use crate::sources::kafka::{KafkaSource, KafkaSourceError};
use crate::sources::webhook::{self, WebhookState};
use crate::store::{Store, StoreError};
use crate::telemetry;
use crate::worker::{self, Work};
use tower_http::timeout::RequestBodyTimeoutLayer;

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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] KafkaSourceError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::http::tls::TlsError),
    #[error(transparent)]
    Auth(#[from] crate::http::auth::AuthError),
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
    kafka: Option<tokio::task::JoinHandle<()>>,
    tls: Option<Arc<tls::Reloading>>,
    limits: Limits,
    shutdown: CancellationToken,
}

impl Server {
    /// Binds the listener and starts the pipeline thread.
    pub async fn bind(config: Config, shutdown: CancellationToken) -> Result<Server, AppError> {
        // First: the store and retention record metrics as soon as they open.
        let metrics = telemetry::init_metrics();
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
        // Certificates and tokens first: a broken file must stop the start,
        // not surface on the first request.
        let tls = match &config.tls {
            Some(t) => {
                let reloading = tls::Reloading::new(t.clone())?;
                reloading.spawn_watch(t.reload_interval, shutdown.clone());
                Some(reloading)
            }
            None => None,
        };
        let reload_every = config
            .tls
            .as_ref()
            .map_or(std::time::Duration::from_secs(10), |t| t.reload_interval);
        let open_tokens =
            |path: &Option<std::path::PathBuf>| -> Result<Option<Arc<auth::TokenFile>>, AppError> {
                match path {
                    Some(p) => {
                        let file = auth::TokenFile::open(p)?;
                        file.spawn_watch(reload_every, shutdown.clone());
                        Ok(Some(file))
                    }
                    None => Ok(None),
                }
            };
        let webhook_auth = auth::WebhookAuth {
            tokens: open_tokens(&config.auth.bearer_tokens_file)?,
            cn_clusters: Arc::new(config.auth.client_clusters.iter().cloned().collect()),
        };
        let query_tokens = open_tokens(&config.auth.query_tokens_file)?;
        let limits = Limits {
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes,
            shutdown_grace: config.shutdown_grace,
        };
        let sinks = Sinks::from_config(&config.sinks)?;
        let config = Arc::new(config);
        let pipeline = if config.history.enabled {
            let store = Store::open(&config.data_dir)?;
            store.set_durability(config.history.durability)?;
            info!(path = %store.path().display(), "History store open.");
            Pipeline::with_store(Arc::clone(&config), store)?
        } else {
            Pipeline::new(Arc::clone(&config))
        };
        let (queue, work) = mpsc::channel::<Work>(config.queue_batches);
        let pipeline_thread = std::thread::Builder::new()
            .name("pipeline".to_owned())
            .spawn(move || worker::run(pipeline, sinks, work))
            .map_err(AppError::Thread)?;
        if config.history.enabled {
            spawn_retention(queue.clone(), config.history.retention, shutdown.clone());
        }
        let kafka = match &config.kafka_source {
            Some(k) => {
                let source = KafkaSource::new(k.clone(), queue.clone())?;
                Some(tokio::spawn(source.run(shutdown.clone())))
            }
            None => None,
        };

        let webhook_state = WebhookState {
            queue: queue.clone(),
            max_body_bytes: config.max_body_bytes,
            shutdown: shutdown.clone(),
        };
        let query_state = QueryState {
            data_dir: config.history.enabled.then(|| config.data_dir.clone()),
            queue: queue.clone(),
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
            // A client that stalls mid-body must not hold a slot forever.
            .layer(RequestBodyTimeoutLayer::new(config.body_read_timeout))
            // Nobody reaches the pipeline without passing authentication.
            .layer(axum::middleware::from_fn_with_state(
                webhook_auth,
                auth::webhook,
            ))
            // Outermost: the decompression layer answers an unsupported
            // Content-Encoding with a bare 415; say why, in JSON, like every
            // other refusal.
            .layer(axum::middleware::map_response(explain_unsupported_encoding))
            .with_state(webhook_state);
        let query_routes = Router::new()
            .route("/api/v1/changes", get(query::changes))
            .route("/api/v1/drifts", get(query::drifts))
            .route("/api/v1/drifts/{id}", get(query::drift))
            .route("/api/v1/drifts/{id}/accept", post(query::accept))
            .route(
                "/api/v1/resources/{group}/{resource}/{namespace}/{name}/history",
                get(query::history),
            )
            .route("/api/v1/openapi.json", get(query::openapi))
            .with_state(query_state)
            .layer(axum::middleware::from_fn_with_state(
                query_tokens,
                auth::query,
            ));
        let ops_routes = Router::new()
            .route("/metrics", get(ops::metrics))
            .route("/healthz", get(ops::healthz))
            .route("/readyz", get(ops::readyz))
            .with_state(ops_state);
        let router = webhook_routes.merge(query_routes).merge(ops_routes);
        Ok(Server {
            listener,
            router,
            pipeline_thread,
            kafka,
            tls,
            limits,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// `http://ADDR` or `https://ADDR`, for the start-up log line.
    pub fn url(&self) -> Option<String> {
        self.local_addr()
            .map(|a| crate::http::describe(a, self.tls.is_some()))
    }

    /// Serves until the shutdown token fires, then finishes in-flight
    /// batches and stops the pipeline.
    pub async fn run(self) -> Result<(), AppError> {
        let Server {
            listener,
            router,
            pipeline_thread,
            kafka,
            tls,
            limits,
            shutdown,
        } = self;
        let result = crate::http::serve(listener, router, tls, limits, shutdown).await;
        // The Kafka source stops taking messages and commits what was
        // processed; then no queue sender is left.
        if let Some(kafka) = kafka {
            let _ = kafka.await;
        }
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

async fn explain_unsupported_encoding(
    response: axum::response::Response,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if response.status() != axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    crate::telemetry::events::webhook_answered(415);
    (
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        axum::Json(serde_json::json!({
            "error": "unsupported Content-Encoding: send the body uncompressed or gzip-compressed"
        })),
    )
        .into_response()
}

/// Asks the pipeline thread to apply retention now and then, until shutdown.
fn spawn_retention(
    queue: mpsc::Sender<Work>,
    retention: std::time::Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(worker::retention_interval(retention));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    // Skipped when the queue is full: batches come first.
                    let _ = queue.try_send(Work::Retention);
                }
            }
        }
    });
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
