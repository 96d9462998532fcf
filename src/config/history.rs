use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::check::Problems;
use super::netsinks::{ClientTlsConfig, client_tls};
use super::raw::{RawHistory, RawPostgresTls};

/// How much a `200` promises about the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Committed to the WAL: survives a crash of driftwatch, not of the machine.
    Normal,
    /// fsync on every commit: survives power loss.
    Full,
}

/// Where the history lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// `DATA_DIR/driftwatch.db`: one replica.
    #[default]
    Sqlite,
    /// A PostgreSQL server that several replicas share.
    Postgres(PostgresConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    pub url: PostgresUrl,
    /// Read connections kept for the query API.
    pub pool: usize,
    /// TLS to the server, required when set: its certificate must chain to
    /// `ca_file` and name the URL's host.
    pub tls: Option<ClientTlsConfig>,
}

/// The server's URL, or a file holding it (a mounted Secret: the password
/// stays out of the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresUrl {
    Inline(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// `history.backend`: `sqlite` (the default) or `postgres`.
    pub backend: Backend,
    /// Record history in `data_dir` (serve: yes; replay: with --data-dir).
    pub enabled: bool,
    /// Where driftwatch keeps its state (the SQLite store).
    pub data_dir: PathBuf,
    /// Changes older than this are deleted; open drifts are kept.
    pub retention: Duration,
    /// Also store changes by system identities (off: they are most of the volume).
    pub store_system: bool,
    /// Objects remembered for field diffs, least recently changed evicted.
    pub max_tracked_objects: usize,
    /// Bytes of remembered objects; least recently changed evicted first.
    pub max_tracked_bytes: usize,
    pub durability: Durability,
    /// How often the whole store file is checked for damage
    /// (`PRAGMA quick_check`, a read beside the writer).
    pub integrity_check_interval: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            backend: Backend::Sqlite,
            enabled: true,
            data_dir: PathBuf::from(super::DEFAULT_DATA_DIR),
            retention: Duration::from_secs(30 * 86_400),
            store_system: false,
            max_tracked_objects: 50_000,
            max_tracked_bytes: 256 * 1024 * 1024,
            durability: Durability::Normal,
            integrity_check_interval: Duration::from_secs(6 * 3600),
        }
    }
}

pub(super) fn compile(raw: &RawHistory, p: &mut Problems) -> HistoryConfig {
    let mut h = HistoryConfig::default();
    if let Some(dir) = &raw.data_dir {
        h.data_dir = PathBuf::from(dir);
    }
    h.enabled = raw.enabled.unwrap_or(h.enabled);
    h.store_system = raw.store_system.unwrap_or(h.store_system);
    if let Some(d) = p.duration(&raw.retention, "history.retention") {
        h.retention = d;
    }
    if let Some(d) = p.duration(
        &raw.integrity_check_interval,
        "history.integrity_check_interval",
    ) {
        h.integrity_check_interval = d;
    }
    if let Some(n) = p.at_least(&raw.max_tracked_objects, 1, "history.max_tracked_objects") {
        h.max_tracked_objects = n;
    }
    if let Some(n) = p.at_least(
        &raw.max_tracked_bytes,
        1024 * 1024,
        "history.max_tracked_bytes",
    ) {
        h.max_tracked_bytes = n;
    }
    h.backend = backend(raw, p);
    if let Some(d) = &raw.durability {
        h.durability = match d.value.as_str() {
            "normal" => Durability::Normal,
            "full" => Durability::Full,
            other => {
                p.at(
                    d,
                    "history.durability",
                    format!("{other:?}: expected normal or full"),
                );
                Durability::Normal
            }
        };
    }
    h
}

fn backend(raw: &RawHistory, p: &mut Problems) -> Backend {
    let pg = raw.postgres.as_ref();
    match raw.backend.as_ref().map(|b| b.value.as_str()) {
        None | Some("sqlite") => {
            if let (Some(_), Some(b)) = (pg, &raw.backend) {
                p.at(
                    b,
                    "history.postgres",
                    "set, but history.backend is sqlite: set backend: postgres, or remove it",
                );
            }
            Backend::Sqlite
        }
        Some("postgres") => match pg {
            Some(pg) => postgres(pg, p),
            None => {
                if let Some(b) = &raw.backend {
                    p.at(
                        b,
                        "history.postgres",
                        "backend postgres needs history.postgres.url (or url_file)",
                    );
                }
                Backend::Sqlite
            }
        },
        Some(other) => {
            if let Some(b) = &raw.backend {
                p.at(
                    b,
                    "history.backend",
                    format!("{other:?}: expected sqlite or postgres"),
                );
            }
            Backend::Sqlite
        }
    }
}

fn postgres(raw: &super::raw::RawPostgres, p: &mut Problems) -> Backend {
    let url = match (&raw.url, &raw.url_file) {
        (Some(u), None) => {
            p.non_empty(u, "history.postgres.url");
            if !(u.value.starts_with("postgres://") || u.value.starts_with("postgresql://")) {
                p.at(
                    u,
                    "history.postgres.url",
                    "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                );
            }
            PostgresUrl::Inline(u.value.clone())
        }
        (None, Some(f)) => {
            p.non_empty(f, "history.postgres.url_file");
            PostgresUrl::File(PathBuf::from(&f.value))
        }
        (Some(u), Some(_)) => {
            p.at(u, "history.postgres", "set url or url_file, not both");
            PostgresUrl::Inline(u.value.clone())
        }
        (None, None) => {
            p.add(None, "history.postgres", "needs url (or url_file)");
            PostgresUrl::Inline(String::new())
        }
    };
    let pool = p
        .at_least(&raw.pool, 1, "history.postgres.pool")
        .unwrap_or(16);
    let tls = raw.tls.as_ref().map(|t| postgres_tls(t, p));
    Backend::Postgres(PostgresConfig { url, pool, tls })
}

fn postgres_tls(raw: &Spanned<RawPostgresTls>, p: &mut Problems) -> ClientTlsConfig {
    let t = &raw.value;
    let tls = client_tls(
        [&t.ca_file, &t.client_cert_file, &t.client_key_file],
        "history.postgres.tls",
        p,
    );
    if tls.ca_file.is_none() {
        p.at(
            raw,
            "history.postgres.tls.ca_file",
            "needed with tls: the CA that signed the server's certificate",
        );
    }
    tls
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::{Backend, ClientTlsConfig};
    use crate::config::Config;

    const PG: &str =
        "history:\n  backend: postgres\n  postgres:\n    url: \"postgres://dw@db:5432/dw\"\n";

    #[test]
    fn postgres_tls_takes_the_sinks_options_and_needs_a_ca() {
        let yaml = format!(
            "{PG}    tls:\n      ca_file: /ca.crt\n      client_cert_file: /c.crt\n      client_key_file: /c.key\n"
        );
        let config = Config::from_yaml(&yaml, "c.yaml").unwrap();
        let Backend::Postgres(pg) = &config.history.backend else {
            panic!("not postgres: {:?}", config.history.backend);
        };
        assert_eq!(
            pg.tls,
            Some(ClientTlsConfig {
                ca_file: Some(PathBuf::from("/ca.crt")),
                identity: Some((PathBuf::from("/c.crt"), PathBuf::from("/c.key"))),
            })
        );
        let without_ca = format!(
            "{PG}    tls:\n      client_cert_file: /c.crt\n      client_key_file: /c.key\n"
        );
        let err = Config::from_yaml(&without_ca, "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("history.postgres.tls.ca_file"), "{err}");
        let half =
            format!("{PG}    tls:\n      ca_file: /ca.crt\n      client_cert_file: /c.crt\n");
        let err = Config::from_yaml(&half, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("go together"), "{err}");
    }
}
