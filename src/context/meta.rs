//! The part of a live object's metadata that context uses, kept small so
//! that a cache of 100,000 objects stays in a few hundred MB at most.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

use super::fields;
use crate::model::{ManagedBy, Owner};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The ownerReference marked `controller: true`, if any.
    pub controller: Option<Owner>,
    pub managed: Vec<Managed>,
}

/// One `managedFields` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    /// Unix seconds (the API server keeps second precision).
    pub time: Option<i64>,
    /// The fields it owns, as change-path segments (see [`fields::leaves`]).
    pub fields: Vec<Vec<String>>,
}

impl Meta {
    pub fn of(meta: ObjectMeta) -> Meta {
        let controller = meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.controller == Some(true))
            .map(|r| Owner {
                api_version: Some(r.api_version),
                kind: r.kind,
                name: r.name,
                uid: Some(r.uid),
            });
        Meta {
            labels: meta.labels.unwrap_or_default(),
            annotations: meta.annotations.unwrap_or_default(),
            controller,
            managed: meta
                .managed_fields
                .unwrap_or_default()
                .into_iter()
                .map(Managed::of)
                .collect(),
        }
    }

    /// The GitOps markers, read by the same code as an event's bodies.
    pub fn managed_by(&self) -> Option<ManagedBy> {
        crate::correlate::ownership::managed_by(
            |k| self.labels.get(k).cloned(),
            |k| self.annotations.get(k).cloned(),
        )
    }

    /// The managers owning `path` or a field under or above it.
    pub fn owners_of(&self, path: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self
            .managed
            .iter()
            .filter(|m| m.fields.iter().any(|f| fields::overlaps(f, path)))
            .map(|m| m.manager.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Managed {
    fn of(e: ManagedFieldsEntry) -> Managed {
        Managed {
            manager: e.manager.unwrap_or_default(),
            operation: e.operation.unwrap_or_default(),
            time: e.time.map(|t| t.0.as_second()),
            fields: e
                .fields_v1
                .map(|f| fields::leaves(&f.0))
                .unwrap_or_default(),
        }
    }
}
