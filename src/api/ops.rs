//! `/metrics`, `/healthz`, `/readyz`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::engine;

#[derive(Clone)]
pub struct OpsState {
    pub metrics: PrometheusHandle,
    pub engine: engine::Handle,
    /// The history store's health; `None` when history is disabled.
    pub store: Option<crate::store::Health>,
    /// What the Kafka source's consumer owns; `None` without one.
    pub kafka: Option<crate::sources::kafka::KafkaStatus>,
    pub shutdown: CancellationToken,
}

pub async fn metrics(State(state): State<OpsState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The engine takes batches: not shutting down, thread alive, queue not
/// full, and the history store can commit.
pub async fn readyz(State(state): State<OpsState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if state.engine.is_stopped() {
        return (StatusCode::SERVICE_UNAVAILABLE, "engine stopped\n").into_response();
    }
    if state.engine.is_full() {
        return (StatusCode::SERVICE_UNAVAILABLE, "engine queue full\n").into_response();
    }
    if let Some(problem) = state.store.as_ref().and_then(|h| h.problem()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "history store cannot commit ({}): {}\n",
                problem.kind.as_str(),
                problem.message
            ),
        )
            .into_response();
    }
    let mut text = "ready\n".to_owned();
    if let Some(kafka) = &state.kafka {
        text.push_str(&kafka_line(&kafka.partitions()));
    }
    (StatusCode::OK, text).into_response()
}

/// Partitions listed on `/readyz`; the rest are counted.
const LISTED_PARTITIONS: usize = 64;

/// `kafka: 3 partitions, lag 12: audit/0 lag 0, audit/1 lag 12, audit/2 lag ?`
fn kafka_line(partitions: &[crate::sources::kafka::PartitionLag]) -> String {
    let lag: i64 = partitions.iter().filter_map(|p| p.lag).sum();
    let mut listed: Vec<String> = partitions
        .iter()
        .take(LISTED_PARTITIONS)
        .map(|p| {
            let lag = p.lag.map_or_else(|| "?".to_owned(), |l| l.to_string());
            format!("{}/{} lag {lag}", p.topic, p.partition)
        })
        .collect();
    if partitions.len() > LISTED_PARTITIONS {
        listed.push(format!("{} more", partitions.len() - LISTED_PARTITIONS));
    }
    format!(
        "kafka: {} partitions, lag {lag}: {}\n",
        partitions.len(),
        listed.join(", ")
    )
}
