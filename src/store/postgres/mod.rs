//! The history in PostgreSQL (`history.backend: postgres`), for several
//! replicas that share one history and one drift lifecycle. What SQLite's
//! single writer guarantees by being alone, the database enforces here:
//!
//! - a request is stored once (`dedupe_key` is unique; a repeat is skipped);
//! - an object has at most one unclosed drift (a partial unique index), and
//!   a drift closes once (every transition names the states it leaves);
//! - what the correlator remembers of an object (`resources`) is read and
//!   written under a per-object lock ([`PgStore::lock`]) held until the
//!   batch's transaction ends, so two replicas judging the same object take
//!   turns, and the second sees what the first committed.
//!
//! Readers take their own connections from a [`PgReaders`] pool.

mod pool;
pub mod query;
mod schema;
mod tls;

use std::sync::Arc;

use postgres::config::SslMode;
use postgres::{Client, NoTls};

use super::{Health, ProblemKind, StoreError, StoreKey, Written, records};
use crate::model::{ChangeRecord, DriftTransition, ObjectRef, OpenDrift, Time};
pub use pool::{PgConn, PgReaders};

/// Where and how to reach the server (`history.postgres`).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// libpq-style: `postgres://user:password@host:port/db?sslmode=disable`.
    pub url: String,
    /// Read connections for the query API.
    pub pool: usize,
    /// TLS, required when set (`history.postgres.tls`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl PgConfig {
    /// The URL without its password, for messages.
    pub fn shown(&self) -> String {
        shown_url(&self.url)
    }
}

pub(crate) fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme && url[scheme + 3..at].contains(':') => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// One object's remembered state as the store holds it.
#[derive(Debug, Clone)]
pub struct Held {
    pub cluster: String,
    pub object: ObjectRef,
    /// The correlator's encoding ([`crate::correlate::SharedState`]).
    pub state: Option<Vec<u8>>,
    pub open: Option<OpenDrift>,
}

/// An object's state to write back at commit.
#[derive(Debug, Clone)]
pub struct Keep {
    pub cluster: String,
    pub object: ObjectRef,
    /// `None`: nothing remembered any more (deleted).
    pub state: Option<Vec<u8>>,
}

/// The write side: the engine thread's connection.
pub struct PgStore {
    client: Client,
    config: PgConfig,
    health: Health,
    /// A batch's transaction is open (from [`PgStore::lock`] to its write).
    in_tx: bool,
}

impl PgStore {
    /// Connects and migrates.
    pub fn open(config: &PgConfig) -> Result<PgStore, StoreError> {
        let mut client = connect(config)?;
        migrate(&mut client, config)?;
        Ok(PgStore {
            client,
            config: config.clone(),
            health: Health::default(),
            in_tx: false,
        })
    }

    pub fn readers(&self) -> PgReaders {
        PgReaders::new(self.config.clone())
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    pub fn describe(&self) -> String {
        self.config.shown()
    }

    fn err(&self) -> impl Fn(postgres::Error) -> StoreError + use<> {
        let url = self.config.shown();
        move |source| StoreError::Postgres {
            url: url.clone(),
            source,
        }
    }

    /// A failing server is tried again at every batch; the connection is
    /// made again when it was lost.
    pub fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn outcome<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.health.clear(ProblemKind::Failing),
            Err(e) => {
                self.health.set(ProblemKind::Failing, e.to_string());
                if self.client.is_closed() {
                    // The next batch connects again rather than failing on a
                    // dead socket forever.
                    if let Ok(client) = connect(&self.config) {
                        self.client = client;
                    }
                }
                self.in_tx = false;
            }
        }
        result
    }

    /// Opens the batch's transaction and locks `objects` (one cluster each)
    /// until it ends, in a fixed order so that two replicas locking
    /// overlapping sets never wait on each other in a cycle. Returns what
    /// the store holds of each.
    pub fn lock(&mut self, objects: &[(String, ObjectRef)]) -> Result<Vec<Held>, StoreError> {
        let result = self.lock_tx(objects);
        if result.is_err() {
            self.rollback();
        }
        self.outcome(result)
    }

    fn lock_tx(&mut self, objects: &[(String, ObjectRef)]) -> Result<Vec<Held>, StoreError> {
        // Every batch ends in a write or a rollback. One left open would
        // have this batch's locks join its own and be held past it, by an
        // engine that may wait a long time for its next input: end it.
        self.rollback();
        self.begin()?;
        let mut ids: Vec<i64> = objects.iter().map(|(c, o)| lock_id(c, o)).collect();
        ids.sort_unstable();
        ids.dedup();
        let err = self.err();
        self.client
            .execute(
                "SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS id ORDER BY id",
                &[&ids],
            )
            .map_err(&err)?;
        // Two statements for the whole batch, however many objects.
        let keys = ObjectArrays::of(objects.iter().map(|(c, o)| (c.as_str(), o)));
        let mut held: Vec<Held> = objects
            .iter()
            .map(|(cluster, object)| Held {
                cluster: cluster.clone(),
                object: object.clone(),
                state: None,
                open: None,
            })
            .collect();
        let states = self
            .client
            .query(
                &format!(
                    "SELECT u.i, r.state FROM {OBJECTS} JOIN resources r ON r.cluster = u.c
                       AND r.api_group = u.g AND r.resource = u.r AND r.namespace = u.ns AND r.name = u.n"
                ),
                &keys.params(),
            )
            .map_err(&err)?;
        for row in states {
            if let Some(h) = index(&mut held, row.get(0)) {
                h.state = Some(row.get(1));
            }
        }
        let open = self
            .client
            .query(
                &format!(
                    "SELECT u.i, {OPEN_D_COLUMNS} FROM {OBJECTS} JOIN drifts d ON d.cluster = u.c
                       AND d.api_group = u.g AND d.resource = u.r AND d.namespace = u.ns AND d.name = u.n
                       AND d.state IN ('open', 'persisting')"
                ),
                &keys.params(),
            )
            .map_err(&err)?;
        for row in open {
            let drift = open_row_at(&row, 1);
            if let Some(h) = index(&mut held, row.get(0)) {
                h.open = Some(drift);
            }
        }
        Ok(held)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            self.client.batch_execute("BEGIN").map_err(self.err())?;
            self.in_tx = true;
        }
        Ok(())
    }

    /// Ends the batch's transaction without writing.
    pub fn rollback(&mut self) {
        if self.in_tx {
            // A failed rollback leaves the server to end the transaction
            // when the connection goes.
            let _ = self.client.batch_execute("ROLLBACK");
            self.in_tx = false;
        }
    }

    /// Which of `keys` are stored (inside the batch's transaction, if open).
    pub fn known_keys(
        &mut self,
        keys: &[StoreKey],
    ) -> Result<foldhash::HashSet<StoreKey>, StoreError> {
        let mut known = foldhash::HashSet::default();
        if keys.is_empty() {
            return Ok(known);
        }
        let list: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let rows = self
            .client
            .query(
                "SELECT dedupe_key FROM changes WHERE dedupe_key = ANY($1)",
                &[&list],
            )
            .map_err(self.err());
        for row in self.outcome(rows)? {
            let key: Vec<u8> = row.get(0);
            if let Ok(key) = StoreKey::try_from(key.as_slice()) {
                known.insert(key);
            }
        }
        Ok(known)
    }

    /// Writes a batch and the objects' state in one transaction (the one
    /// [`PgStore::lock`] opened, or a new one) and commits it.
    pub fn write(
        &mut self,
        changes: &[ChangeRecord],
        drifts: &[DriftTransition],
        keep: &[Keep],
    ) -> Result<Written, StoreError> {
        let result = self.write_tx(changes, drifts, keep);
        if result.is_err() {
            self.rollback();
        }
        self.outcome(result)
    }

    fn write_tx(
        &mut self,
        changes: &[ChangeRecord],
        drifts: &[DriftTransition],
        keep: &[Keep],
    ) -> Result<Written, StoreError> {
        self.begin()?;
        let err = self.err();
        let inserted = insert_changes(&mut self.client, changes).map_err(&err)?;
        let written = Written {
            inserted,
            duplicates: changes.len() - inserted,
        };
        for d in drifts {
            write_drift(&mut self.client, d).map_err(&err)?;
        }
        write_keep(&mut self.client, keep).map_err(&err)?;
        self.client.batch_execute("COMMIT").map_err(&err)?;
        self.in_tx = false;
        Ok(written)
    }

    /// Open and persisting drifts, to restore the tracker at start-up.
    pub fn open_drifts(&mut self) -> Result<Vec<OpenDrift>, StoreError> {
        let rows = self
            .client
            .query(
                &format!("SELECT {OPEN_COLUMNS} FROM drifts WHERE state IN ('open', 'persisting')"),
                &[],
            )
            .map_err(self.err());
        Ok(self.outcome(rows)?.iter().map(open_row).collect())
    }

    /// The open drift `id` and its object, locked for the batch's
    /// transaction (an accept from any replica).
    pub fn lock_drift(&mut self, id: &str) -> Result<Option<Held>, StoreError> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT {OPEN_COLUMNS} FROM drifts WHERE id = $1 AND state IN ('open', 'persisting')"
                ),
                &[&id],
            )
            .map_err(self.err());
        let Some(open) = self.outcome(row)?.map(|r| open_row(&r)) else {
            return Ok(None);
        };
        let mut held = self.lock(&[(open.cluster.clone(), open.object.clone())])?;
        Ok(held.pop())
    }

    /// Deletes changes older than `cutoff_us`, drifts closed before it, and
    /// the remembered state of objects not changed since. Open drifts stay.
    pub fn purge_before(&mut self, cutoff_us: i64) -> Result<usize, StoreError> {
        let result = self.purge_tx(cutoff_us);
        self.outcome(result)
    }

    fn purge_tx(&mut self, cutoff_us: i64) -> Result<usize, StoreError> {
        let err = self.err();
        let mut tx = self.client.transaction().map_err(&err)?;
        let mut deleted = tx
            .execute(
                "DELETE FROM changes WHERE time_us < $1 AND received_us IS NULL",
                &[&cutoff_us],
            )
            .map_err(&err)?;
        deleted += tx
            .execute("DELETE FROM changes WHERE received_us < $1", &[&cutoff_us])
            .map_err(&err)?;
        deleted += tx
            .execute(
                "DELETE FROM drifts WHERE state NOT IN ('open', 'persisting') AND closed_at_us < $1",
                &[&cutoff_us],
            )
            .map_err(&err)?;
        tx.execute("DELETE FROM resources WHERE updated_us < $1", &[&cutoff_us])
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }
}

/// The advisory lock of one object: a digest of its identity, the same in
/// every version of driftwatch (replicas of two versions run side by side
/// during an upgrade). Two objects whose digests collide only take turns.
fn lock_id(cluster: &str, o: &ObjectRef) -> i64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [
        cluster,
        &o.group,
        &o.resource,
        o.namespace_str(),
        o.name_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

fn connect(config: &PgConfig) -> Result<Client, StoreError> {
    let err = |source| StoreError::Postgres {
        url: config.shown(),
        source,
    };
    let mut pg: postgres::Config = config.url.parse().map_err(err)?;
    let refused = |reason: &str| StoreError::PostgresTls {
        url: config.shown(),
        reason: reason.to_owned(),
    };
    match &config.tls {
        None if pg.get_ssl_mode() == SslMode::Require => Err(refused(
            "the URL asks for sslmode=require: set history.postgres.tls.ca_file to the CA that signed the server's certificate",
        )),
        None => pg.connect(NoTls).map_err(err),
        Some(_) if pg.get_ssl_mode() == SslMode::Disable => Err(refused(
            "history.postgres.tls is set, but the URL says sslmode=disable: remove one",
        )),
        // Required, never preferred: a server that answers "no TLS" is not
        // talked to in the clear.
        Some(tls) => pg
            .ssl_mode(SslMode::Require)
            .connect(tls::Rustls::new(Arc::clone(tls)))
            .map_err(err),
    }
}

/// Runs the migrations not yet run, one transaction each, under an
/// advisory lock: replicas starting together migrate once.
fn migrate(client: &mut Client, config: &PgConfig) -> Result<(), StoreError> {
    let err = |source| StoreError::Postgres {
        url: config.shown(),
        source,
    };
    const MIGRATION_LOCK: i64 = 0x6472_6966_7477_6174; // "driftwat"
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .map_err(err)?;
    let version: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .map_err(err)?
        .map_or(0, |r| r.get(0));
    let known = schema::MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            path: config.shown(),
            found: version,
            known,
        });
    }
    for sql in schema::MIGRATIONS.iter().skip(version as usize) {
        tx.batch_execute(sql).map_err(err)?;
    }
    tx.execute("DELETE FROM schema_version", &[]).map_err(err)?;
    tx.execute("INSERT INTO schema_version VALUES ($1)", &[&known])
        .map_err(err)?;
    tx.commit().map_err(err)
}

/// One statement per batch, the rows as arrays (a round trip per row
/// would bound a batch by the network's latency); a request already stored
/// is skipped. Paths travel joined by newlines, as no path holds one.
const INSERT_CHANGES: &str = "INSERT INTO changes (dedupe_key, time_us, received_us, cluster,
    api_group, resource, namespace, name, actor, verdict, finding_type, drift_id, paths, record)
    SELECT k, t, r, c, g, res, ns, n, a, v, ft, d, string_to_array(p, E'\\n'), rec
    FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
        $14::bytea[]) AS u(k, t, r, c, g, res, ns, n, a, v, ft, d, p, rec)
    ON CONFLICT (dedupe_key) DO NOTHING";

/// Inserts `changes`; returns how many were new.
fn insert_changes(client: &mut Client, changes: &[ChangeRecord]) -> Result<usize, postgres::Error> {
    if changes.is_empty() {
        return Ok(0);
    }
    let rows: Vec<ChangeRow> = changes.iter().map(ChangeRow::of).collect();
    let col = |f: fn(&ChangeRecord) -> &str| changes.iter().map(f).collect::<Vec<&str>>();
    let keys: Vec<&[u8]> = rows.iter().map(|r| r.key.as_slice()).collect();
    let times: Vec<i64> = changes.iter().map(|c| c.time.us).collect();
    let received: Vec<Option<i64>> = changes
        .iter()
        .map(|c| c.received.as_ref().map(|t| t.us))
        .collect();
    let types: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.finding_type.map(|t| t.as_str()))
        .collect();
    let drifts: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.drift.as_ref().map(|d| d.id.as_str()))
        .collect();
    let paths: Vec<&str> = rows.iter().map(|r| r.paths.as_str()).collect();
    let records: Vec<&[u8]> = rows.iter().map(|r| r.record.as_slice()).collect();
    let n = client.execute(
        INSERT_CHANGES,
        &[
            &keys,
            &times,
            &received,
            &col(|c| &c.cluster),
            &col(|c| &c.resource.group),
            &col(|c| &c.resource.resource),
            &col(|c| c.resource.namespace_str()),
            &col(|c| c.resource.name_str()),
            &col(|c| &c.actor.username),
            &col(|c| c.verdict.as_str()),
            &types,
            &drifts,
            &paths,
            &records,
        ],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// A change's row values that are not plain columns of its record.
struct ChangeRow {
    key: Vec<u8>,
    /// Joined by newlines (see [`INSERT_CHANGES`]).
    paths: String,
    record: Vec<u8>,
}

impl ChangeRow {
    fn of(c: &ChangeRecord) -> ChangeRow {
        // What the SQLite store keeps, so that both answer the same: the
        // live context is the finding's, at the time it was raised.
        let kept = ChangeRecord {
            context: None,
            field_managers: Vec::new(),
            changes_source: None,
            ..c.clone()
        };
        ChangeRow {
            key: c.request.store_key().to_vec(),
            paths: c
                .changes
                .iter()
                .map(|ch| ch.path.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            // Serializing our own record to memory cannot fail.
            record: serde_json::to_vec(&kept).unwrap_or_default(),
        }
    }
}

pub(super) const OPEN_COLUMNS: &str =
    "id, cluster, api_group, resource, namespace, name, opened_at,
    opened_at_us, opened_by, drifted_paths, persisting_at, persisting_at_us";

/// [`OPEN_COLUMNS`] of the table aliased `d`.
const OPEN_D_COLUMNS: &str = "d.id, d.cluster, d.api_group, d.resource, d.namespace, d.name,
    d.opened_at, d.opened_at_us, d.opened_by, d.drifted_paths, d.persisting_at, d.persisting_at_us";

fn open_row(r: &postgres::Row) -> OpenDrift {
    open_row_at(r, 0)
}

/// An open drift from [`OPEN_COLUMNS`] starting at column `at`.
fn open_row_at(r: &postgres::Row, at: usize) -> OpenDrift {
    let namespace: String = r.get(at + 4);
    let id: String = r.get(at);
    let paths = records::drifted_paths(&id, r.get(at + 9));
    let persisting: Option<String> = r.get(at + 10);
    let persisting_us: Option<i64> = r.get(at + 11);
    OpenDrift {
        id,
        cluster: r.get(at + 1),
        object: ObjectRef {
            group: r.get(at + 2),
            resource: r.get(at + 3),
            namespace: Some(namespace).filter(|n| !n.is_empty()),
            name: Some(r.get(at + 5)),
            ..ObjectRef::default()
        },
        opened: Time::stored(r.get(at + 7), r.get(at + 6)),
        opened_by: r.get(at + 8),
        paths,
        persisting_since: persisting.map(|text| Time::stored(persisting_us.unwrap_or(0), text)),
    }
}

fn write_keep(client: &mut Client, keep: &[Keep]) -> Result<(), postgres::Error> {
    if keep.is_empty() {
        return Ok(());
    }
    let now = jiff::Timestamp::now().as_microsecond();
    let (kept, gone): (Vec<&Keep>, Vec<&Keep>) = keep.iter().partition(|k| k.state.is_some());
    if !kept.is_empty() {
        let keys = ObjectArrays::of(kept.iter().map(|k| (k.cluster.as_str(), &k.object)));
        let states: Vec<&[u8]> = kept.iter().filter_map(|k| k.state.as_deref()).collect();
        let mut params = keys.params();
        params.push(&states);
        params.push(&now);
        client.execute(
            &format!(
                "INSERT INTO resources (cluster, api_group, resource, namespace, name, updated_us, state)
                 SELECT u.c, u.g, u.r, u.ns, u.n, $7, s.state
                 FROM {OBJECTS} JOIN unnest($6::bytea[]) WITH ORDINALITY AS s(state, i) ON s.i = u.i
                 ON CONFLICT (cluster, api_group, resource, namespace, name)
                 DO UPDATE SET updated_us = excluded.updated_us, state = excluded.state"
            ),
            &params,
        )?;
    }
    if !gone.is_empty() {
        let keys = ObjectArrays::of(gone.iter().map(|k| (k.cluster.as_str(), &k.object)));
        client.execute(
            &format!(
                "DELETE FROM resources r USING {OBJECTS} WHERE r.cluster = u.c AND r.api_group = u.g
                   AND r.resource = u.r AND r.namespace = u.ns AND r.name = u.n"
            ),
            &keys.params(),
        )?;
    }
    Ok(())
}

/// Objects as five parallel arrays, `$1` to `$5` of [`OBJECTS`].
struct ObjectArrays<'a> {
    cluster: Vec<&'a str>,
    group: Vec<&'a str>,
    resource: Vec<&'a str>,
    namespace: Vec<&'a str>,
    name: Vec<&'a str>,
}

/// The objects of [`ObjectArrays`] as rows `u(c, g, r, ns, n, i)`, `i`
/// numbering them from 1.
const OBJECTS: &str = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    WITH ORDINALITY AS u(c, g, r, ns, n, i)";

impl<'a> ObjectArrays<'a> {
    fn of(objects: impl Iterator<Item = (&'a str, &'a ObjectRef)>) -> ObjectArrays<'a> {
        let mut a = ObjectArrays {
            cluster: Vec::new(),
            group: Vec::new(),
            resource: Vec::new(),
            namespace: Vec::new(),
            name: Vec::new(),
        };
        for (cluster, o) in objects {
            a.cluster.push(cluster);
            a.group.push(&o.group);
            a.resource.push(&o.resource);
            a.namespace.push(o.namespace_str());
            a.name.push(o.name_str());
        }
        a
    }

    fn params(&self) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
        vec![
            &self.cluster,
            &self.group,
            &self.resource,
            &self.namespace,
            &self.name,
        ]
    }
}

/// The entry numbered `i` (from 1, as `WITH ORDINALITY` numbers them).
fn index(held: &mut [Held], i: i64) -> Option<&mut Held> {
    let i = usize::try_from(i).ok()?.checked_sub(1)?;
    held.get_mut(i)
}

/// A transition leaves only the states it names: a drift closed by one
/// replica is not closed again, or reopened, by another.
fn write_drift(client: &mut Client, d: &DriftTransition) -> Result<(), postgres::Error> {
    match d {
        DriftTransition::Opened(o) => {
            client.execute(
                "INSERT INTO drifts (id, state, cluster, api_group, resource, namespace, name,
                    opened_at, opened_at_us, opened_by, drifted_paths)
                 VALUES ($1, 'open', $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT DO NOTHING",
                &[
                    &o.id,
                    &o.cluster,
                    &o.object.group,
                    &o.object.resource,
                    &o.object.namespace_str(),
                    &o.object.name_str(),
                    &o.opened.text,
                    &o.opened.us,
                    &o.opened_by,
                    &records::paths_json(o.paths.as_deref()),
                ],
            )?;
        }
        DriftTransition::Joined { id, paths, .. } => {
            client.execute(
                "UPDATE drifts SET drifted_paths = $2 WHERE id = $1 AND state IN ('open', 'persisting')",
                &[id, &records::paths_json(paths.as_deref())],
            )?;
        }
        DriftTransition::Persisting {
            id,
            since,
            pipeline,
            audit_id,
            paths,
        } => {
            client.execute(
                "UPDATE drifts SET state = 'persisting', persisting_at = $2, persisting_at_us = $3,
                    persisting_pipeline = $4, persisting_audit_id = $5, drifted_paths = $6
                 WHERE id = $1 AND state IN ('open', 'persisting')",
                &[
                    id,
                    &since.text,
                    &since.us,
                    pipeline,
                    audit_id,
                    &records::paths_json(Some(paths)),
                ],
            )?;
        }
        DriftTransition::Reconciled {
            id,
            at,
            pipeline,
            audit_id,
            actor,
            seconds,
            verification,
        } => {
            client.execute(
                "UPDATE drifts SET state = 'reconciled', closed_at = $2, closed_at_us = $3,
                    closed_pipeline = $4, closed_audit_id = $5, closed_actor = $6,
                    reconcile_seconds = $7, reconcile_verification = $8
                 WHERE id = $1 AND state IN ('open', 'persisting')",
                &[
                    id,
                    &at.text,
                    &at.us,
                    pipeline,
                    audit_id,
                    actor,
                    seconds,
                    &verification.as_str(),
                ],
            )?;
        }
        DriftTransition::Accepted { id, at, by, reason } => {
            client.execute(
                "UPDATE drifts SET state = 'accepted', closed_at = $2, closed_at_us = $3,
                    closed_actor = $4, closed_reason = $5
                 WHERE id = $1 AND state IN ('open', 'persisting')",
                &[id, &at.text, &at.us, by, reason],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, tls: bool) -> PgConfig {
        let tls = tls.then(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                });
            Arc::new(config.unwrap_or_else(|e| panic!("{e}")))
        });
        PgConfig {
            url: url.to_owned(),
            pool: 1,
            tls,
        }
    }

    /// Refused before any connection: nothing listens on port 1.
    fn refusal(url: &str, tls: bool) -> String {
        match connect(&config(url, tls)) {
            Err(e @ StoreError::PostgresTls { .. }) => e.to_string(),
            Err(e) => panic!("not a TLS refusal: {e}"),
            Ok(_) => panic!("connected to {url}"),
        }
    }

    #[test]
    fn a_url_and_tls_options_that_disagree_are_refused_naming_the_fix() {
        let need = refusal("postgres://dw@127.0.0.1:1/dw?sslmode=require", false);
        assert!(need.contains("history.postgres.tls.ca_file"), "{need}");
        let both = refusal("postgres://dw@127.0.0.1:1/dw?sslmode=disable", true);
        assert!(both.contains("sslmode=disable"), "{both}");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            shown_url("postgres://dw:s3cret@db.example:5432/driftwatch"),
            "postgres://dw:***@db.example:5432/driftwatch"
        );
        assert_eq!(
            shown_url("postgres://db.example/driftwatch"),
            "postgres://db.example/driftwatch"
        );
        assert_eq!(
            shown_url("postgres://dw@db.example/driftwatch"),
            "postgres://dw@db.example/driftwatch"
        );
    }

    #[test]
    fn the_lock_of_an_object_is_its_own() {
        let o = |name: &str| ObjectRef {
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: Some("shop".into()),
            name: Some(name.into()),
            ..ObjectRef::default()
        };
        assert_eq!(lock_id("prod", &o("api")), lock_id("prod", &o("api")));
        assert_ne!(lock_id("prod", &o("api")), lock_id("prod", &o("web")));
        assert_ne!(lock_id("prod", &o("api")), lock_id("stage", &o("api")));
    }
}
