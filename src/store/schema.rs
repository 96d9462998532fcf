//! Versioned migrations, applied in order at open. `PRAGMA user_version`
//! holds how many have run; each runs in its own transaction.

pub const MIGRATIONS: &[&str] = &[
    // 1: changes and drifts.
    "
    CREATE TABLE changes (
        seq           INTEGER PRIMARY KEY,
        -- receive time (8 bytes) + finding id (16 bytes): see records::store_key
        dedupe_key    BLOB    NOT NULL UNIQUE,
        time          TEXT    NOT NULL,
        time_us       INTEGER NOT NULL,
        cluster       TEXT    NOT NULL,
        api_group     TEXT    NOT NULL,
        api_version   TEXT    NOT NULL,
        resource      TEXT    NOT NULL,
        subresource   TEXT,
        namespace     TEXT    NOT NULL,
        name          TEXT    NOT NULL,
        uid           TEXT,
        verb          TEXT    NOT NULL,
        actor         TEXT    NOT NULL,
        impersonator  TEXT,
        client        TEXT,
        field_manager TEXT,
        audit_id      TEXT    NOT NULL,
        verdict       TEXT    NOT NULL,
        pipeline      TEXT,
        finding_type  TEXT,
        severity      TEXT,
        drift_id      TEXT,
        changed_paths TEXT    NOT NULL,
        detail        TEXT    NOT NULL
    );
    CREATE INDEX changes_by_object ON changes (name, resource, namespace, time_us);
    CREATE INDEX changes_by_time   ON changes (time_us);
    CREATE INDEX changes_by_actor  ON changes (actor, time_us);
    CREATE INDEX changes_by_drift  ON changes (drift_id) WHERE drift_id IS NOT NULL;

    CREATE TABLE drifts (
        id              TEXT    PRIMARY KEY,
        state           TEXT    NOT NULL,
        cluster         TEXT    NOT NULL,
        api_group       TEXT    NOT NULL,
        resource        TEXT    NOT NULL,
        namespace       TEXT    NOT NULL,
        name            TEXT    NOT NULL,
        opened_at       TEXT    NOT NULL,
        opened_at_us    INTEGER NOT NULL,
        opened_by       TEXT    NOT NULL,
        closed_at       TEXT,
        closed_at_us    INTEGER,
        closed_pipeline TEXT,
        closed_audit_id TEXT,
        closed_actor    TEXT,
        closed_reason   TEXT,
        reconcile_seconds REAL
    ) WITHOUT ROWID;
    CREATE INDEX drifts_by_state  ON drifts (state, opened_at_us);
    CREATE INDEX drifts_by_object ON drifts (name, resource, namespace);
    ",
    // 2: verified reconcile: the fields each drift set, and when a
    // pipeline write first left some of them in place.
    "
    ALTER TABLE drifts ADD COLUMN drifted_paths TEXT;
    ALTER TABLE drifts ADD COLUMN persisting_at TEXT;
    ALTER TABLE drifts ADD COLUMN persisting_at_us INTEGER;
    ALTER TABLE drifts ADD COLUMN persisting_pipeline TEXT;
    ALTER TABLE drifts ADD COLUMN persisting_audit_id TEXT;
    ALTER TABLE drifts ADD COLUMN reconcile_verification TEXT;
    ",
    // 3: the receive time of a change whose event time was too far from it
    // (server.max_clock_skew); retention goes by it. NULL for every other
    // change: its event time is close enough.
    "
    ALTER TABLE changes ADD COLUMN received_us INTEGER;
    CREATE INDEX changes_by_received ON changes (received_us) WHERE received_us IS NOT NULL;
    ",
];
