//! The writer's dictionaries: each repeated string (and each object) is
//! stored once, in `strings`, `paths` or `objects`, and rows hold its id.
//!
//! Ids are remembered in memory, so that a change whose strings were seen
//! before costs no lookup. The memory is only a cache of the tables: it is
//! forgotten whole when a transaction fails (the ids it took may have been
//! rolled back) and when it grows past [`MAX_REMEMBERED`] entries.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::model::ObjectRef;

/// Entries remembered per dictionary; past it the memory starts again
/// empty (a few tens of MiB at most, for long request URIs).
const MAX_REMEMBERED: usize = 200_000;

/// One dictionary table and what is remembered of it.
#[derive(Default)]
struct Table {
    ids: foldhash::HashMap<Box<str>, i64>,
}

impl Table {
    fn remember(&mut self, key: &str, id: i64) {
        if self.ids.len() >= MAX_REMEMBERED {
            self.ids.clear();
        }
        self.ids.insert(key.into(), id);
    }
}

#[derive(Default)]
pub(super) struct Dictionaries {
    strings: Table,
    paths: Table,
    objects: Table,
    shapes: foldhash::HashMap<Shape, i64>,
    /// The key of an object, built here to look it up without allocating.
    key: String,
}

impl Dictionaries {
    /// Forgets every id: after a failed transaction, or a reopen.
    pub fn forget(&mut self) {
        *self = Dictionaries::default();
    }

    /// The id of `text` in `strings`, added if new.
    pub fn string(&mut self, tx: &Transaction<'_>, text: &str) -> rusqlite::Result<i64> {
        text_id(&mut self.strings, tx, "strings", text)
    }

    /// [`Dictionaries::string`] of an optional string: `None` stays NULL.
    pub fn opt_string(
        &mut self,
        tx: &Transaction<'_>,
        text: Option<&str>,
    ) -> rusqlite::Result<Option<i64>> {
        text.map(|t| self.string(tx, t)).transpose()
    }

    /// The id of a row's path set in `paths`, added if new.
    pub fn paths(&mut self, tx: &Transaction<'_>, text: &str) -> rusqlite::Result<i64> {
        text_id(&mut self.paths, tx, "paths", text)
    }

    /// The id of a shape (dictionary ids, see [`Shape`]), added if new.
    pub fn shape(&mut self, tx: &Transaction<'_>, shape: Shape) -> rusqlite::Result<i64> {
        if let Some(&id) = self.shapes.get(&shape) {
            return Ok(id);
        }
        // The columns in `Shape`'s order: ?1 verb ... ?7 ownership.
        let fields = rusqlite::params_from_iter(shape.0);
        let found = tx
            .prepare_cached(
                "SELECT id FROM shapes WHERE verdict = ?2 AND verb = ?1 AND pipeline IS ?3
                   AND finding_type IS ?4 AND severity IS ?5 AND profile IS ?6 AND ownership IS ?7",
            )?
            .query_row(fields, |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                tx.prepare_cached(
                    "INSERT INTO shapes (verb, verdict, pipeline, finding_type, severity, profile,
                        ownership) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(rusqlite::params_from_iter(shape.0))?;
                tx.last_insert_rowid()
            }
        };
        if self.shapes.len() >= MAX_REMEMBERED {
            self.shapes.clear();
        }
        self.shapes.insert(shape, id);
        Ok(id)
    }

    /// The id of `object` of `cluster` in `objects`, added if new.
    pub fn object(
        &mut self,
        tx: &Transaction<'_>,
        cluster: &str,
        o: &ObjectRef,
    ) -> rusqlite::Result<i64> {
        object_key(&mut self.key, cluster, o);
        if let Some(&id) = self.objects.ids.get(self.key.as_str()) {
            return Ok(id);
        }
        let fields = params![
            cluster,
            o.group,
            o.version,
            o.resource,
            o.subresource,
            o.namespace_str(),
            o.name_str(),
            o.uid
        ];
        let found = tx
            .prepare_cached(
                "SELECT id FROM objects WHERE name = ?7 AND resource = ?4 AND namespace = ?6
                   AND api_group = ?2 AND cluster = ?1 AND api_version = ?3
                   AND subresource IS ?5 AND uid IS ?8",
            )?
            .query_row(fields, |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                tx.prepare_cached(
                    "INSERT INTO objects (cluster, api_group, api_version, resource, subresource,
                        namespace, name, uid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(fields)?;
                tx.last_insert_rowid()
            }
        };
        self.objects.remember(&self.key, id);
        Ok(id)
    }
}

/// How a change was made and judged, as the `strings` ids of its verb,
/// verdict, pipeline, finding type, severity, profile and ownership (the
/// columns of `shapes`, in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Shape(pub [Option<i64>; 7]);

/// Every field of an object, each with its length in front: two different
/// objects never make the same key, whatever their names hold.
fn object_key(key: &mut String, cluster: &str, o: &ObjectRef) {
    use std::fmt::Write;
    key.clear();
    let fields = [
        Some(cluster),
        Some(o.group.as_str()),
        Some(o.version.as_str()),
        Some(o.resource.as_str()),
        o.subresource.as_deref(),
        o.namespace.as_deref(),
        o.name.as_deref(),
        o.uid.as_deref(),
    ];
    for f in fields {
        match f {
            Some(s) => {
                let _ = write!(key, "{}:{s}", s.len());
            }
            None => key.push('-'),
        }
    }
}

fn text_id(
    table: &mut Table,
    tx: &Transaction<'_>,
    name: &str,
    text: &str,
) -> rusqlite::Result<i64> {
    if let Some(&id) = table.ids.get(text) {
        return Ok(id);
    }
    let found = tx
        .prepare_cached(&format!("SELECT id FROM {name} WHERE text = ?1"))?
        .query_row([text], |r| r.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            tx.prepare_cached(&format!("INSERT INTO {name} (text) VALUES (?1)"))?
                .execute([text])?;
            tx.last_insert_rowid()
        }
    };
    table.remember(text, id);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_tell_every_field_apart() {
        let a = ObjectRef {
            namespace: Some("a:b".to_owned()),
            name: Some("c".to_owned()),
            ..ObjectRef::default()
        };
        let b = ObjectRef {
            namespace: Some("a".to_owned()),
            name: Some("b:c".to_owned()),
            ..ObjectRef::default()
        };
        let cluster_scoped = ObjectRef {
            namespace: None,
            name: Some("c".to_owned()),
            ..ObjectRef::default()
        };
        let empty_ns = ObjectRef {
            namespace: Some(String::new()),
            ..cluster_scoped.clone()
        };
        let keys: Vec<String> = [a, b, cluster_scoped, empty_ns]
            .iter()
            .map(|o| {
                let mut k = String::new();
                object_key(&mut k, "prod", o);
                k
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(!keys[i + 1..].contains(k), "{k} twice");
        }
    }
}
