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
    // 4: the compact row format (see `compact`): repeated strings and
    // objects in dictionaries, the row's own detail small (and deflated
    // when long). Rows of schema 3 move over as they are: their columns
    // into the dictionaries, their `detail` left as the JSON text it was
    // (a reader tells the two apart by type: text, or a compact blob), as
    // are their time text and audit id. In new rows a NULL `time` is the
    // text of `time_us`, an audit id of 16 bytes a UUID, and a drift id of
    // 16 bytes its 32 hex digits (old rows' drift ids move over so too).
    // `changes_by_object` leads with the row's epoch (`seq >> 14`, 16,384
    // rows): a batch's entries go into the last epoch's few pages instead
    // of one page per object (see query::EPOCHS).
    "
    CREATE TABLE strings (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
    CREATE TABLE paths   (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
    CREATE TABLE objects (
        id          INTEGER PRIMARY KEY,
        cluster     TEXT NOT NULL,
        api_group   TEXT NOT NULL,
        api_version TEXT NOT NULL,
        resource    TEXT NOT NULL,
        subresource TEXT,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        uid         TEXT
    );
    CREATE INDEX objects_by_name ON objects (name, resource, namespace);
    -- How a change was made and judged: a handful of combinations all day.
    CREATE TABLE shapes (
        id           INTEGER PRIMARY KEY,
        verb         INTEGER NOT NULL,
        verdict      INTEGER NOT NULL,
        pipeline     INTEGER,
        finding_type INTEGER,
        severity     INTEGER,
        profile      INTEGER,
        ownership    INTEGER
    );
    CREATE INDEX shapes_by_fields
        ON shapes (verdict, verb, pipeline, finding_type, severity, profile, ownership);

    INSERT INTO objects (cluster, api_group, api_version, resource, subresource, namespace, name, uid)
        SELECT DISTINCT cluster, api_group, api_version, resource, subresource, namespace, name, uid
        FROM changes ORDER BY name, resource, namespace;
    INSERT OR IGNORE INTO strings (text)
        SELECT verb FROM changes UNION SELECT actor FROM changes UNION SELECT verdict FROM changes
        UNION SELECT pipeline FROM changes WHERE pipeline IS NOT NULL
        UNION SELECT finding_type FROM changes WHERE finding_type IS NOT NULL
        UNION SELECT severity FROM changes WHERE severity IS NOT NULL;
    INSERT OR IGNORE INTO paths (text) SELECT DISTINCT changed_paths FROM changes;
    INSERT INTO shapes (verb, verdict, pipeline, finding_type, severity)
        SELECT DISTINCT v.id, d.id, p.id, t.id, s.id FROM changes c
        JOIN strings v ON v.text = c.verb
        JOIN strings d ON d.text = c.verdict
        LEFT JOIN strings p ON p.text = c.pipeline
        LEFT JOIN strings t ON t.text = c.finding_type
        LEFT JOIN strings s ON s.text = c.severity;

    CREATE TABLE changes_compact (
        seq          INTEGER PRIMARY KEY,
        dedupe_key   BLOB    NOT NULL UNIQUE,
        time_us      INTEGER NOT NULL,
        time         TEXT,
        object       INTEGER NOT NULL,
        actor        INTEGER NOT NULL,
        shape        INTEGER NOT NULL,
        audit_id              NOT NULL,
        drift_id     TEXT,
        paths        INTEGER NOT NULL,
        uri          INTEGER,
        detail                NOT NULL,
        received_us  INTEGER
    );
    INSERT INTO changes_compact (seq, dedupe_key, time_us, time, object, actor, shape, audit_id,
            drift_id, paths, detail, received_us)
        SELECT c.seq, c.dedupe_key, c.time_us, c.time, o.id,
            (SELECT id FROM strings WHERE text = c.actor),
            (SELECT sh.id FROM shapes sh
                WHERE sh.verdict = (SELECT id FROM strings WHERE text = c.verdict)
                AND sh.verb = (SELECT id FROM strings WHERE text = c.verb)
                AND sh.pipeline IS (SELECT id FROM strings WHERE text = c.pipeline)
                AND sh.finding_type IS (SELECT id FROM strings WHERE text = c.finding_type)
                AND sh.severity IS (SELECT id FROM strings WHERE text = c.severity)
                AND sh.profile IS NULL AND sh.ownership IS NULL),
            c.audit_id,
            CASE WHEN length(c.drift_id) = 32 AND c.drift_id NOT GLOB '*[^0-9a-f]*'
                THEN unhex(c.drift_id) ELSE c.drift_id END,
            (SELECT id FROM paths WHERE text = c.changed_paths),
            c.detail, c.received_us
        FROM changes c JOIN objects o
            ON o.name = c.name AND o.resource = c.resource AND o.namespace = c.namespace
            AND o.api_group = c.api_group AND o.cluster = c.cluster
            AND o.api_version = c.api_version
            AND o.subresource IS c.subresource AND o.uid IS c.uid;
    DROP TABLE changes;
    ALTER TABLE changes_compact RENAME TO changes;
    CREATE INDEX changes_by_object   ON changes (seq >> 14, object, time_us);
    CREATE INDEX changes_by_time     ON changes (time_us);
    CREATE INDEX changes_by_actor    ON changes (actor, time_us);
    CREATE INDEX changes_by_drift    ON changes (drift_id) WHERE drift_id IS NOT NULL;
    CREATE INDEX changes_by_received ON changes (received_us) WHERE received_us IS NOT NULL;
    ",
];
