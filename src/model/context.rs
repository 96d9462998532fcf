//! What the live object (fetched from the Kubernetes API) added to a change.

use serde::{Deserialize, Serialize};

/// Whether a finding's context came from the API server, from the cache, or
/// could not be had (`reason` says why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveContext {
    pub state: ContextState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Unavailable>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextState {
    /// Fetched for this batch.
    Live,
    /// Answered from the cache: fetched within `kubernetes.cache.ttl`.
    Cached,
    Unavailable,
}

/// Why there is no live context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    /// The object is gone (404): deleted, or never created (a dry run).
    NotFound,
    /// driftwatch's credentials may not read it (403); see deploy/kubernetes.
    Forbidden,
    /// Not back within `kubernetes.lookup_timeout`.
    Timeout,
    /// The API server failed or could not be reached.
    Error,
    /// No kubeconfig context is configured for the finding's cluster.
    NoClient,
    /// Not looked up: the cluster's API server stopped answering
    /// (`kubernetes.breaker`), so its lookups are suspended for a while.
    CircuitOpen,
    /// The request named no object (a create with `generateName`, a collection).
    NoObject,
}

impl LiveContext {
    pub fn available(state: ContextState) -> LiveContext {
        LiveContext {
            state,
            reason: None,
        }
    }

    pub fn unavailable(reason: Unavailable) -> LiveContext {
        LiveContext {
            state: ContextState::Unavailable,
            reason: Some(reason),
        }
    }
}

/// Who owns a changed field, from the object's `managedFields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldManagers {
    pub path: String,
    /// The managers owning the field (or fields under it) in the object as
    /// fetched.
    pub managers: Vec<String>,
    /// The request's own manager (`fieldManager=`, else its user agent's
    /// product, as the API server defaults it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Managers that owned the field before this request and another manager
    /// took it over (known when an earlier copy of the object was cached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub took_over_from: Vec<String>,
}

/// Where a change list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangesSource {
    /// The event's bodies (or the remembered previous object).
    Body,
    /// Best effort: the event had no body, so these are the fields the
    /// request's manager holds in `managedFields` with this request's time;
    /// values are not known (`null`).
    ManagedFields,
    /// The event had no body (or showed no change): the old and new objects
    /// of the request's admission review, diffed when it was judged.
    Admission,
}
