//! The PostgreSQL schema: the SQLite store's tables (`changes`, `drifts`)
//! in PostgreSQL's types, plus `resources`, the per-resource state several
//! replicas share. A change row keeps its record whole (JSON) beside the
//! columns the queries filter and sort on; SQLite's dictionary encoding
//! saved file size on one disk, which a server need not.
//!
//! Migrations are numbered like SQLite's (`schema_version` holds how many
//! ran) and run under an advisory lock, so replicas starting together
//! migrate once.

pub const MIGRATIONS: &[&str] = &[r"
CREATE TABLE changes (
    seq          BIGSERIAL PRIMARY KEY,
    -- The request's idempotency key: two replicas that see one request
    -- store it once.
    dedupe_key   BYTEA NOT NULL UNIQUE,
    time_us      BIGINT NOT NULL,
    -- Set only when the event's own time was too far from its receipt:
    -- retention then goes by it.
    received_us  BIGINT,
    cluster      TEXT NOT NULL,
    api_group    TEXT NOT NULL,
    resource     TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    verdict      TEXT NOT NULL,
    finding_type TEXT,
    drift_id     TEXT,
    -- Every changed path, for `field=` (a path or its prefix).
    paths        TEXT[] NOT NULL,
    record       BYTEA NOT NULL
);
CREATE INDEX changes_by_time ON changes (time_us DESC, seq DESC);
-- One object's history: the route names group, resource, namespace and
-- name; the cluster, when given, is checked on the rows found.
CREATE INDEX changes_by_object ON changes (api_group, resource, namespace, name, time_us DESC, seq DESC);
CREATE INDEX changes_by_drift ON changes (drift_id, time_us, seq) WHERE drift_id IS NOT NULL;
CREATE INDEX changes_by_received ON changes (received_us) WHERE received_us IS NOT NULL;

CREATE TABLE drifts (
    id                     TEXT PRIMARY KEY,
    state                  TEXT NOT NULL,
    cluster                TEXT NOT NULL,
    api_group              TEXT NOT NULL,
    resource               TEXT NOT NULL,
    namespace              TEXT NOT NULL,
    name                   TEXT NOT NULL,
    opened_at              TEXT NOT NULL,
    opened_at_us           BIGINT NOT NULL,
    opened_by              TEXT NOT NULL,
    closed_at              TEXT,
    closed_at_us           BIGINT,
    closed_pipeline        TEXT,
    closed_audit_id        TEXT,
    closed_actor           TEXT,
    closed_reason          TEXT,
    reconcile_seconds      DOUBLE PRECISION,
    reconcile_verification TEXT,
    persisting_at          TEXT,
    persisting_at_us       BIGINT,
    persisting_pipeline    TEXT,
    persisting_audit_id    TEXT,
    drifted_paths          TEXT
);
-- At most one unclosed drift per object, whichever replica opens it.
CREATE UNIQUE INDEX one_unclosed_drift ON drifts (cluster, api_group, resource, namespace, name)
    WHERE state IN ('open', 'persisting');
CREATE INDEX drifts_by_opened ON drifts (opened_at_us DESC, id DESC);
CREATE INDEX drifts_by_closed ON drifts (closed_at_us) WHERE closed_at_us IS NOT NULL;

-- What the correlator remembers of one object (recent versions for field
-- diffs, its manager and owner), read and written under the object's lock.
CREATE TABLE resources (
    cluster    TEXT NOT NULL,
    api_group  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    updated_us BIGINT NOT NULL,
    state      BYTEA NOT NULL,
    PRIMARY KEY (cluster, api_group, resource, namespace, name)
);
CREATE INDEX resources_by_updated ON resources (updated_us);
"];
