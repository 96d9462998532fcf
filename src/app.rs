//! Wires the service: the engine's thread, the HTTP router, the sources,
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::ops::{self, OpsState};
use crate::api::query::{self, QueryState};
use crate::config::Config;
use crate::config::{HistoryBackend, PostgresUrl};
use crate::engine::{self, Engine};
use crate::http::body::BodyLimits;
use crate::http::budget::Budget;
use crate::http::guard::{self, Guard};
use crate::http::{Limits, auth, tls};
use crate::sinks::{SinkError, Sinks};
use crate::sources::kafka::{KafkaSource, KafkaSourceError};
use crate::sources::webhook::{self, WebhookState};
use crate::store::postgres::{PgConfig, PgStore};
use crate::store::read::Readers;
use crate::store::{Backend, Health, Store, StoreError};
use crate::telemetry;
use crate::telemetry::events::{Emit, Shutdown, ShutdownStage, StoreOpened};

/// Every route the router serves, as `(method, path)`; the OpenAPI document
/// describes exactly these (a test holds them together).
pub mod routes {
    pub const WEBHOOK: &str = "/audit/webhook";
    pub const WEBHOOK_CLUSTER: &str = "/audit/webhook/{cluster}";
    pub const CHANGES: &str = "/api/v1/changes";
    pub const DENIALS: &str = "/api/v1/denials";
    pub const DRIFTS: &str = "/api/v1/drifts";
    pub const DRIFT: &str = "/api/v1/drifts/{id}";
    pub const DRIFT_ACCEPT: &str = "/api/v1/drifts/{id}/accept";
    pub const HISTORY: &str = "/api/v1/resources/{group}/{resource}/{namespace}/{name}/history";
    pub const OPENAPI: &str = "/api/v1/openapi.json";
    pub const METRICS: &str = "/metrics";
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
    pub const ADMISSION: &str = "/admission/validate";
    pub const ADMISSION_CLUSTER: &str = "/admission/validate/{cluster}";

    pub const ALL: &[(&str, &str)] = &[
        ("post", WEBHOOK),
        ("post", WEBHOOK_CLUSTER),
        ("get", CHANGES),
        ("get", DENIALS),
        ("get", DRIFTS),
        ("get", DRIFT),
        ("post", DRIFT_ACCEPT),
        ("get", HISTORY),
        ("get", OPENAPI),
        ("get", METRICS),
        ("get", HEALTHZ),
        ("get", READYZ),
        ("post", ADMISSION),
        ("post", ADMISSION_CLUSTER),
    ];
}

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
    #[error("history.postgres.url_file {path}: {source}")]
    PostgresUrl {
        path: String,
        source: std::io::Error,
    },
    #[error("history.postgres.tls: {reason}")]
    PostgresTls { reason: String },
    #[error(transparent)]
    Kafka(#[from] KafkaSourceError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::http::tls::TlsError),
    #[error(transparent)]
    Auth(#[from] crate::http::auth::AuthError),
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    #[error("cannot start the engine thread: {0}")]
    Thread(std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// A bound, not yet serving, service.
pub struct Server {
    listener: TcpListener,
    router: Router,
    engine_thread: JoinHandle<()>,
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
        std::fs::create_dir_all(&config.history.data_dir).map_err(|source| AppError::DataDir {
            path: config.history.data_dir.display().to_string(),
            source,
        })?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.server.listen,
                source,
            })?;
        // Certificates and tokens first: a broken file must stop the start,
        // not surface on the first request.
        let (tls, webhook_auth, query_tokens) = security(&config, &shutdown)?;
        let limits = Limits {
            header_read_timeout: config.server.header_read_timeout,
            max_header_bytes: config.server.max_header_bytes,
            shutdown_grace: config.server.shutdown_grace,
            max_connections: config.server.max_connections,
            max_concurrent_streams: config.server.max_concurrent_streams,
        };
        let sinks = Sinks::from_config(&config.sinks, &config.history.data_dir)?;
        let config = Arc::new(config);
        // The PostgreSQL client blocks on a runtime of its own.
        let (history, mut engine) = tokio::task::block_in_place(|| {
            let store = if config.history.enabled {
                Some(open_history(&config.history)?)
            } else {
                None
            };
            let history = store.as_ref().map(|s| History {
                readers: s.readers(),
                health: s.health(),
            });
            let engine = Engine::with_backend(Arc::clone(&config), store, sinks)?;
            Ok::<_, AppError>((history, engine))
        })?;
        let mut live = None;
        let mut inventories = crate::context::Inventories::default();
        if let Some(kube) = &config.kubernetes {
            let clients = crate::context::Clients::connect(kube, &config.cluster).await?;
            let runtime = tokio::runtime::Handle::current();
            inventories = crate::context::Inventories::start(&clients, kube, &config.cluster);
            let enricher =
                crate::context::Enricher::new(clients, inventories.clone(), kube, runtime);
            live = Some(enricher.live(config.redaction.clone()));
            engine.set_enricher(enricher);
        }
        let handoff = Arc::new(crate::admission::Handoff::new());
        if config.admission.is_some() {
            engine.set_handoff(Arc::clone(&handoff));
        }
        let (handle, engine_thread) =
            engine::writer::spawn(engine, config.server.queue_batches).map_err(AppError::Thread)?;
        spawn_sink_ticks(handle.clone(), shutdown.clone());
        if let Some(history) = &history {
            spawn_retention(handle.clone(), config.history.retention, shutdown.clone());
            spawn_store_watch(
                handle.clone(),
                history.clone(),
                config.history.integrity_check_interval,
                shutdown.clone(),
            );
        }
        let mut kafka_status = None;
        let kafka = match &config.kafka_source {
            Some(k) => {
                let source = KafkaSource::new(k.clone(), handle.clone())?;
                kafka_status = Some(source.status());
                Some(tokio::spawn(source.run(shutdown.clone())))
            }
            None => None,
        };
        let admission = config.admission.as_ref().map(|a| {
            Arc::new(crate::admission::Judge::new(
                &config.policy,
                a.clone(),
                inventories,
            ))
        });
        let router = router(
            &config,
            handle,
            ReadSide {
                history,
                live,
                admission,
                handoff,
                kafka: kafka_status,
            },
            metrics,
            webhook_auth,
            query_tokens,
            shutdown.clone(),
        );
        Ok(Server {
            listener,
            router,
            engine_thread,
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
            engine_thread,
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
        // The router, and with it every engine handle, is gone: the engine's
        // thread drains what is queued and exits.
        let joined = tokio::task::spawn_blocking(move || engine_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            Shutdown {
                stage: ShutdownStage::EngineDidNotStop,
            }
            .emit();
        }
        Shutdown {
            stage: ShutdownStage::Stopped,
        }
        .emit();
        result.map_err(AppError::Serve)
    }
}

type Security = (
    Option<Arc<tls::Reloading>>,
    auth::WebhookAuth,
    Option<Arc<auth::TokenFile>>,
);

/// TLS, the webhook's tokens and certificate bindings, and the query API's
/// tokens, each watched for changes.
fn security(config: &Config, shutdown: &CancellationToken) -> Result<Security, AppError> {
    let server = &config.server;
    let tls = match &server.tls {
        Some(t) => {
            let reloading = tls::Reloading::new(t.clone())?;
            reloading.spawn_watch(t.reload_interval, shutdown.clone());
            Some(reloading)
        }
        None => None,
    };
    let reload_every = server
        .tls
        .as_ref()
        .map_or(std::time::Duration::from_secs(10), |t| t.reload_interval);
    let open_tokens = |path: &Option<std::path::PathBuf>| -> Result<_, AppError> {
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
        tokens: open_tokens(&server.auth.bearer_tokens_file)?,
        cn_clusters: Arc::new(server.auth.client_clusters.iter().cloned().collect()),
        client_certificates: server
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some()),
        default_cluster: config.cluster.clone(),
        allow_any_cluster: server.auth.allow_any_cluster,
    };
    Ok((
        tls,
        webhook_auth,
        open_tokens(&server.auth.query_tokens_file)?,
    ))
}

/// The query side's view of the store.
#[derive(Clone)]
struct History {
    readers: Readers,
    health: Health,
}

/// Opens the configured backend; a PostgreSQL URL in a file is read here.
fn open_history(h: &crate::config::HistoryConfig) -> Result<Backend, AppError> {
    match &h.backend {
        HistoryBackend::Sqlite => {
            let mut store = Store::open(&h.data_dir)?;
            store.set_durability(h.durability)?;
            StoreOpened {
                at: &store.path().display(),
                backend: "sqlite",
            }
            .emit();
            Ok(Backend::Sqlite(store))
        }
        HistoryBackend::Postgres(pg) => {
            let url = match &pg.url {
                PostgresUrl::Inline(u) => u.clone(),
                PostgresUrl::File(path) => std::fs::read_to_string(path)
                    .map(|u| u.trim().to_owned())
                    .map_err(|source| AppError::PostgresUrl {
                        path: path.display().to_string(),
                        source,
                    })?,
            };
            let tls = match &pg.tls {
                None => None,
                Some(t) => Some(Arc::new(
                    crate::tls::client_config(t)
                        .map_err(|reason| AppError::PostgresTls { reason })?,
                )),
            };
            let store = PgStore::open(&PgConfig {
                url,
                pool: pg.pool,
                tls,
            })?;
            StoreOpened {
                at: &store.describe(),
                backend: "postgres",
            }
            .emit();
            Ok(Backend::Postgres(store))
        }
    }
}

/// What the routes share besides the engine: the store, the clusters for a
/// drift's live values (`None` without `kubernetes`), the admission judge
/// (`None` without `admission`) and where its reviews leave their changes.
struct ReadSide {
    history: Option<History>,
    live: Option<crate::context::Live>,
    admission: Option<Arc<crate::admission::Judge>>,
    handoff: Arc<crate::admission::Handoff>,
    kafka: Option<crate::sources::kafka::KafkaStatus>,
}

/// Until shutdown: asks the engine to probe the store every
/// [`engine::writer::PROBE_INTERVAL`], and checks the whole file every
/// `integrity_every` on a blocking thread (a read; the writer goes on).
fn spawn_store_watch(
    engine: engine::Handle,
    history: History,
    integrity_every: std::time::Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut probe = tokio::time::interval(engine::writer::PROBE_INTERVAL);
        let mut check = tokio::time::interval(integrity_every);
        // The first tick is immediate: the store was just opened.
        check.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = probe.tick() => engine.request_probe(),
                _ = check.tick() => {
                    let History { readers, health } = history.clone();
                    // A server checks its own pages.
                    let Readers::Sqlite(readers) = readers else { continue };
                    let _ = tokio::task::spawn_blocking(move || {
                        crate::store::verify(&readers, &health);
                    })
                    .await;
                }
            }
        }
    });
}

/// Gives the sinks their clock-driven work every second, until shutdown.
fn spawn_sink_ticks(engine: engine::Handle, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(engine::writer::TICK_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => engine.request_tick(),
            }
        }
    });
}

/// Asks the engine to apply retention now and then, until shutdown.
fn spawn_retention(
    engine: engine::Handle,
    retention: std::time::Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(engine::writer::retention_interval(retention));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => engine.request_retention(),
            }
        }
    });
}

/// The routes of [`routes::ALL`], each behind its layers.
fn router(
    config: &Config,
    engine: engine::Handle,
    reads: ReadSide,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    webhook_auth: auth::WebhookAuth,
    query_tokens: Option<Arc<auth::TokenFile>>,
    shutdown: CancellationToken,
) -> Router {
    let ReadSide {
        history,
        live,
        admission,
        handoff,
        kafka,
    } = reads;
    let webhook_state = WebhookState {
        engine: engine.clone(),
        body: BodyLimits {
            max_bytes: config.server.max_body_bytes,
            budget: Budget::new(config.server.max_inflight_body_bytes),
        },
        shutdown: shutdown.clone(),
    };
    let query_state = QueryState {
        pool: history.as_ref().map(|h| h.readers.clone()),
        health: history.as_ref().map(|h| h.health.clone()),
        bounds: crate::store::view::Bounds::list(config.server.max_query_page_bytes),
        permits: Arc::new(tokio::sync::Semaphore::new(
            config.server.max_concurrent_queries,
        )),
        engine: engine.clone(),
        live,
    };
    let ops_state = OpsState {
        metrics,
        engine,
        store: history.map(|h| h.health),
        kafka,
        shutdown,
    };
    let admission_state = crate::admission::AdmissionState {
        judge: admission,
        handoff,
        cluster: config.cluster.clone(),
        body: webhook_state.body.clone(),
    };
    let admission_routes = Router::new()
        .route(routes::ADMISSION, post(crate::admission::validate_default))
        .route(
            routes::ADMISSION_CLUSTER,
            post(crate::admission::validate_cluster),
        )
        .with_state(admission_state);
    let webhook_routes = Router::new()
        .route(routes::WEBHOOK, post(webhook::post_default))
        .route(routes::WEBHOOK_CLUSTER, post(webhook::post_cluster))
        .with_state(webhook_state)
        .merge(admission_routes)
        // The handlers inflate and bound the body themselves (http::body).
        .layer(DefaultBodyLimit::disable())
        // Nobody reaches the engine or a verdict without passing
        // authentication: the API server calls both.
        .layer(axum::middleware::from_fn_with_state(
            webhook_auth,
            auth::webhook,
        ));
    let query_routes = Router::new()
        .route(routes::CHANGES, get(query::changes))
        .route(routes::DENIALS, get(query::denials))
        .route(routes::DRIFTS, get(query::drifts))
        .route(routes::DRIFT, get(query::drift))
        .route(routes::DRIFT_ACCEPT, post(query::accept))
        .route(routes::HISTORY, get(query::history))
        .route(routes::OPENAPI, get(query::openapi))
        .with_state(query_state)
        .layer(axum::middleware::from_fn_with_state(
            query_tokens,
            auth::query,
        ));
    let ops_routes = Router::new()
        .route(routes::METRICS, get(ops::metrics))
        .route(routes::HEALTHZ, get(ops::healthz))
        .route(routes::READYZ, get(ops::readyz))
        .with_state(ops_state);
    let guard = Arc::new(Guard {
        max_header_bytes: config.server.max_header_bytes,
        body_read_timeout: config.server.body_read_timeout,
        max_body_bytes: config.server.max_body_bytes,
    });
    webhook_routes
        .merge(query_routes)
        .merge(ops_routes)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        // Outermost: every request, routed or not, passes the guard.
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    guard::json_error(
        axum::http::StatusCode::NOT_FOUND,
        format!(
            "no route for {:.200}: the routes are listed in {}",
            uri.path(),
            routes::OPENAPI
        ),
    )
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    guard::json_error(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not served on {:.200}; the Allow header lists what is",
            uri.path()
        ),
    )
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

#[cfg(test)]
mod tests {
    use super::routes;

    /// The OpenAPI document describes exactly the routes the router is built
    /// from; the integration suite checks that each is really served.
    #[test]
    fn openapi_documents_every_route_and_no_other() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("api/openapi.json")).unwrap();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let mut served: Vec<(String, String)> = routes::ALL
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
