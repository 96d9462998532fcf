//! Every metric name in one place: `driftwatch_<noun>_<unit>`, `_total` for
//! counters, base units. Labels come from closed sets only.

pub const EVENTS_RECEIVED: &str = "driftwatch_events_received_total";
pub const EVENTS_REJECTED: &str = "driftwatch_events_rejected_total";
pub const EVENTS_DEDUPLICATED: &str = "driftwatch_events_deduplicated_total";
pub const EVENTS_CLASSIFIED: &str = "driftwatch_events_classified_total";
pub const EVENTS_IGNORED: &str = "driftwatch_events_ignored_total";
pub const EVENTS_ALLOWED: &str = "driftwatch_events_allowed_total";
pub const FINDINGS: &str = "driftwatch_findings_total";
pub const WEBHOOK_REQUESTS: &str = "driftwatch_webhook_requests_total";
pub const BATCH_EVENTS: &str = "driftwatch_batch_events";
pub const BATCH_PROCESSING_SECONDS: &str = "driftwatch_batch_processing_seconds";
pub const SINK_ERRORS: &str = "driftwatch_sink_errors_total";
pub const QUEUE_DEPTH: &str = "driftwatch_queue_batches";
pub const CHANGES_STORED: &str = "driftwatch_changes_stored_total";
pub const STORE_ERRORS: &str = "driftwatch_store_errors_total";
pub const STORE_CORRUPT_ROWS: &str = "driftwatch_store_corrupt_rows_total";
pub const STORE_READY: &str = "driftwatch_store_ready";
pub const BATCHES_REFUSED: &str = "driftwatch_batches_refused_total";
pub const DRIFTS_OPEN: &str = "driftwatch_drifts_open";
pub const DRIFTS_PERSISTING: &str = "driftwatch_drifts_persisting";
pub const DRIFTS_PERSISTING_OVERDUE: &str = "driftwatch_drifts_persisting_overdue";
pub const DRIFT_PERSISTING_OLDEST_SECONDS: &str = "driftwatch_drift_persisting_oldest_seconds";
pub const DRIFT_RECONCILE_SECONDS: &str = "driftwatch_drift_reconcile_seconds";
pub const RETENTION_DELETED: &str = "driftwatch_retention_deleted_rows_total";
pub const KAFKA_MESSAGES: &str = "driftwatch_kafka_messages_total";
pub const KAFKA_CONSUMER_LAG: &str = "driftwatch_kafka_consumer_lag_messages";
pub const KAFKA_PARTITIONS_ASSIGNED: &str = "driftwatch_kafka_partitions_assigned";
pub const KAFKA_DELIVERY_ERRORS: &str = "driftwatch_kafka_delivery_errors_total";
pub const KAFKA_ERRORS: &str = "driftwatch_kafka_errors_total";
pub const KAFKA_HELD_MESSAGES: &str = "driftwatch_kafka_held_messages";
pub const KAFKA_HELD_EARLY: &str = "driftwatch_kafka_held_early_messages_total";
pub const AUTH_REFUSED: &str = "driftwatch_auth_refused_total";
pub const TLS_RELOADS: &str = "driftwatch_tls_reloads_total";
pub const HTTP_CONNECTIONS: &str = "driftwatch_http_connections";
pub const CONNECTION_LIMIT_WAITS: &str = "driftwatch_connection_limit_waits_total";
pub const INFLIGHT_BODY_BYTES: &str = "driftwatch_inflight_body_bytes";
pub const BODIES_REFUSED: &str = "driftwatch_bodies_refused_total";

// Network sinks (HTTP, syslog) and their outboxes; `sink` is the configured
// name, a set the config closes.
pub const SINK_DROPPED_FINDINGS: &str = "driftwatch_sink_dropped_findings_total";
pub const SINK_OUTBOX_BYTES: &str = "driftwatch_sink_outbox_bytes";
pub const SINK_OUTBOX_RECORDS: &str = "driftwatch_sink_outbox_records";
pub const SINK_OUTBOX_OLDEST_SECONDS: &str = "driftwatch_sink_outbox_oldest_seconds";
pub const SINK_SENT_RECORDS: &str = "driftwatch_sink_sent_records_total";
pub const SINK_RETRIES: &str = "driftwatch_sink_retries_total";
pub const SINK_REFUSED_RECORDS: &str = "driftwatch_sink_refused_records_total";
pub const SINK_OUTBOX_DAMAGED: &str = "driftwatch_sink_outbox_damaged_total";

// Live-object context (kubernetes:).
pub const CONTEXT_LOOKUPS: &str = "driftwatch_context_lookups_total";
pub const CONTEXT_CACHE_ENTRIES: &str = "driftwatch_context_cache_entries";
pub const CONTEXT_LOOKUP_SECONDS: &str = "driftwatch_context_lookup_seconds";
pub const CONTEXT_BREAKER_OPEN: &str = "driftwatch_context_breaker_open";
pub const CONTEXT_LIVE_READS: &str = "driftwatch_context_live_reads_total";
pub const CONTEXT_WATCH_RESTARTS: &str = "driftwatch_context_watch_restarts_total";
pub const CONTEXT_INVENTORY_OBJECTS: &str = "driftwatch_context_inventory_objects";

// The validating admission webhook (admission:).
pub const ADMISSION_REVIEWS: &str = "driftwatch_admission_reviews_total";
pub const ADMISSION_REVIEW_SECONDS: &str = "driftwatch_admission_review_seconds";
pub const ADMISSION_UNREVIEWED: &str = "driftwatch_admission_unreviewed_writes_total";
pub const ADMISSION_HANDOFFS: &str = "driftwatch_admission_handoffs_total";

/// Registers descriptions so that `/metrics` explains itself.
pub fn describe() {
    describe_counter!(
        ADMISSION_REVIEWS,
        Unit::Count,
        "Admission reviews answered, by outcome: allowed, audited, warned, denied, break_glass, not_judged, invalid."
    );
    describe_histogram!(
        ADMISSION_REVIEW_SECONDS,
        Unit::Seconds,
        "Time from an admission review's body read to its answer."
    );
    describe_counter!(
        ADMISSION_UNREVIEWED,
        Unit::Count,
        "Findings on writes whose audit event carries no driftwatch admission decision while admission is enabled: the webhook was down, timed out (failurePolicy Ignore let them through) or not asked."
    );
    describe_counter!(
        ADMISSION_HANDOFFS,
        Unit::Count,
        "A review's field changes handed to its request's audit event, by outcome: joined, missing (the event names a review no longer held), expired, mismatched (another object or cluster), evicted (dropped unclaimed at the bound)."
    );
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Audit events decoded, by source."
    );
    describe_counter!(
        EVENTS_REJECTED,
        Unit::Count,
        "Documents rejected as not audit events, by source and reason."
    );
    describe_counter!(
        EVENTS_DEDUPLICATED,
        Unit::Count,
        "Events dropped as redeliveries or as a second stage of an already judged request."
    );
    describe_counter!(
        EVENTS_CLASSIFIED,
        Unit::Count,
        "Events classified, by verdict."
    );
    describe_counter!(
        EVENTS_ALLOWED,
        Unit::Count,
        "Events with verdict allowed, by quiet rule (or `allowance`)."
    );
    describe_counter!(
        EVENTS_IGNORED,
        Unit::Count,
        "Events with verdict ignored, by reason."
    );
    describe_counter!(
        FINDINGS,
        Unit::Count,
        "Findings emitted, by type and severity."
    );
    describe_counter!(
        WEBHOOK_REQUESTS,
        Unit::Count,
        "Webhook requests answered, by status code."
    );
    describe_histogram!(BATCH_EVENTS, Unit::Count, "Events per accepted batch.");
    describe_counter!(
        CONTEXT_LOOKUPS,
        Unit::Count,
        "Live-object lookups by outcome: hit (cache), miss_ok, not_found, forbidden, error (each API request), timeout (a finding whose context was not back by kubernetes.lookup_timeout), circuit_open (a finding whose cluster's breaker was open: no lookup attempted)."
    );
    describe_gauge!(
        CONTEXT_BREAKER_OPEN,
        Unit::Count,
        "1 while a cluster's live-object lookups are suspended (kubernetes.breaker), else 0; cluster is a kubernetes.clusters name or default."
    );
    describe_counter!(
        CONTEXT_LIVE_READS,
        Unit::Count,
        "Live values of a drift read for GET /api/v1/drifts/{id}?live=true, by outcome: live, not_found, forbidden, secret, no_client, no_version, circuit_open, timeout, error."
    );
    describe_counter!(
        CONTEXT_WATCH_RESTARTS,
        Unit::Count,
        "Pipeline inventory watches that failed and relist after a backoff, by kind (Application, Kustomization, HelmRelease)."
    );
    describe_gauge!(
        CONTEXT_INVENTORY_OBJECTS,
        Unit::Count,
        "Objects listed by a cluster's watched pipeline inventories (kubernetes.inventories); cluster is a kubernetes.clusters name or default."
    );
    describe_gauge!(
        CONTEXT_CACHE_ENTRIES,
        Unit::Count,
        "Objects in the live-object cache (negative answers included)."
    );
    describe_histogram!(
        CONTEXT_LOOKUP_SECONDS,
        Unit::Seconds,
        "Duration of each live-object request to the API server."
    );
    describe_histogram!(
        BATCH_PROCESSING_SECONDS,
        Unit::Seconds,
        "Time from a batch's arrival to its durable acceptance (accepted batches only)."
    );
    describe_counter!(
        BATCHES_REFUSED,
        Unit::Count,
        "Batches not accepted, by source and reason (sink, store, too_many_events, queue_full, stopped)."
    );
    describe_counter!(
        STORE_CORRUPT_ROWS,
        Unit::Count,
        "History rows read back that could not be read whole, by table."
    );
    describe_counter!(
        SINK_ERRORS,
        Unit::Count,
        "Failed finding writes, by sink and kind (retriable, final)."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Batches waiting for the pipeline."
    );
    describe_counter!(
        CHANGES_STORED,
        Unit::Count,
        "Changes written to the history store."
    );
    describe_counter!(
        STORE_ERRORS,
        Unit::Count,
        "Failed history store writes, refusals of a store known unable to commit included."
    );
    describe_gauge!(
        STORE_READY,
        Unit::Count,
        "1 while the history store can commit, 0 while it cannot (see /readyz for why)."
    );
    describe_gauge!(
        DRIFTS_OPEN,
        Unit::Count,
        "Drifts opened and not yet reconciled or accepted (persisting ones included)."
    );
    describe_gauge!(
        DRIFTS_PERSISTING,
        Unit::Count,
        "Open drifts that a pipeline write left in place (some drifted field kept its out-of-band value)."
    );
    describe_gauge!(
        DRIFTS_PERSISTING_OVERDUE,
        Unit::Count,
        "Persisting drifts older than drifts.persisting_alert_after."
    );
    describe_gauge!(
        DRIFT_PERSISTING_OLDEST_SECONDS,
        Unit::Seconds,
        "Age of the oldest persisting drift, from the first pipeline write that left it (0 when none)."
    );
    describe_histogram!(
        DRIFT_RECONCILE_SECONDS,
        Unit::Seconds,
        "Time from a drift's first out-of-band change to the pipeline's reconcile."
    );
    describe_counter!(
        RETENTION_DELETED,
        Unit::Count,
        "Rows deleted by history retention."
    );
    describe_counter!(
        KAFKA_MESSAGES,
        Unit::Count,
        "Kafka messages consumed, by result (processed, dead_lettered, skipped)."
    );
    describe_gauge!(
        KAFKA_CONSUMER_LAG,
        Unit::Count,
        "Messages between the consumer's position and the end of its assigned partitions."
    );
    describe_gauge!(
        KAFKA_PARTITIONS_ASSIGNED,
        Unit::Count,
        "Partitions of the source topics this replica's consumer owns."
    );
    describe_counter!(
        KAFKA_DELIVERY_ERRORS,
        Unit::Count,
        "Findings the Kafka sink could not deliver."
    );
    describe_counter!(
        KAFKA_ERRORS,
        Unit::Count,
        "Failed Kafka operations, by operation."
    );
    describe_gauge!(
        KAFKA_HELD_MESSAGES,
        Unit::Count,
        "Messages in the reorder hold (sources.kafka.reorder_window), waiting for their window to end."
    );
    describe_counter!(
        KAFKA_HELD_EARLY,
        Unit::Count,
        "Messages let out of the reorder hold before their window ended, because it was at sources.kafka.reorder_max_bytes."
    );
    describe_counter!(
        AUTH_REFUSED,
        Unit::Count,
        "Requests or connections refused before the pipeline, by reason."
    );
    describe_counter!(TLS_RELOADS, Unit::Count, "Certificate reloads, by result.");
    describe_gauge!(
        HTTP_CONNECTIONS,
        Unit::Count,
        "Connections open (server.max_connections at most)."
    );
    describe_counter!(
        CONNECTION_LIMIT_WAITS,
        Unit::Count,
        "Times every connection slot was taken, so new connections waited in the listen backlog."
    );
    describe_gauge!(
        INFLIGHT_BODY_BYTES,
        Unit::Bytes,
        "Memory reserved by request bodies in flight (server.max_inflight_body_bytes at most)."
    );
    describe_counter!(
        BODIES_REFUSED,
        Unit::Count,
        "Request bodies refused while being read, by reason (deadline, too_large, budget)."
    );
    describe_net_sinks();
}

fn describe_net_sinks() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        SINK_DROPPED_FINDINGS,
        Unit::Count,
        "Findings or alerts a network sink dropped because its outbox was at outbox_max_bytes, by sink."
    );
    describe_gauge!(
        SINK_OUTBOX_BYTES,
        Unit::Bytes,
        "Bytes in a network sink's outbox not yet delivered, by sink."
    );
    describe_gauge!(
        SINK_OUTBOX_RECORDS,
        Unit::Count,
        "Records in a network sink's outbox not yet delivered, by sink."
    );
    describe_gauge!(
        SINK_OUTBOX_OLDEST_SECONDS,
        Unit::Seconds,
        "Age of the oldest undelivered record in a network sink's outbox (0 when empty), by sink."
    );
    describe_counter!(
        SINK_SENT_RECORDS,
        Unit::Count,
        "Records a network sink's receiver acknowledged, by sink."
    );
    describe_counter!(
        SINK_RETRIES,
        Unit::Count,
        "Failed sends a network sink will retry (receiver down, 5xx, 408, 429, timeout), by sink."
    );
    describe_counter!(
        SINK_REFUSED_RECORDS,
        Unit::Count,
        "Records dropped because the receiver refused their batch (a 4xx other than 408 and 429), by sink."
    );
    describe_counter!(
        SINK_OUTBOX_DAMAGED,
        Unit::Count,
        "Damaged outbox frames skipped with the rest of their segment."
    );
}
