//! Per-resource memory: the last known object (for field diffs), who manages
//! it, and the drift lifecycle. A drift opens with the first out-of-band
//! change to a resource, collects the later ones, and closes when the
//! pipeline next writes the resource (`reconciled`) or someone accepts it.
//!
//! Changes are journaled per batch and undone if the batch is not accepted,
//! so a retried batch sees the same state as the first attempt.

use std::num::NonZeroUsize;
use std::sync::Arc;

use foldhash::HashMap;
use lru::LruCache;
use serde_json::Value;
use serde_json::value::RawValue;

use super::changes::{self, Change};
use super::ownership::{self, ObjectFacts};
use crate::classify::{FindingType, Verdict};
use crate::decode::Event;
use crate::model::{DriftTransition, ManagedBy, ObjectRef, OpenDrift, Owner, Time};

/// One object in one cluster. Subresources belong to their parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    cluster: String,
    object: ObjectRef,
}

impl Key {
    fn of(drift: &OpenDrift) -> Key {
        Key {
            cluster: drift.cluster.clone(),
            object: drift.object.parent(),
        }
    }
}

/// The correlation of one event: the object it touched, its field changes,
/// who manages the object, and what the event did to its drift.
#[derive(Debug, Clone, Default)]
pub struct Correlation {
    /// The event's object, its name and uid taken from the bodies when the
    /// request did not carry them (`generateName`).
    pub object: ObjectRef,
    pub changes: Vec<Change>,
    pub transition: Option<DriftTransition>,
    pub managed_by: Option<ManagedBy>,
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, Default)]
struct Known {
    /// Shared, so that the undo journal's copy costs a reference count.
    last_object: Option<Arc<RawValue>>,
    /// The stage time (µs) of the event `last_object` came from. Delivery
    /// is unordered: an older event delivered late neither diffs against a
    /// newer object nor replaces it.
    last_us: i64,
    managed_by: Option<ManagedBy>,
    owner: Option<Owner>,
}

enum Undo {
    Open(Key, Option<OpenDrift>),
    Known(Key, Option<Known>),
}

pub struct Tracker {
    open: HashMap<Key, OpenDrift>,
    known: LruCache<Key, Known>,
    /// Bytes of the remembered objects: memory is bounded by bytes, not only
    /// by count, or 50,000 large ConfigMaps would keep gigabytes.
    known_bytes: usize,
    max_bytes: usize,
    /// Larger objects are not remembered (their changes come from patches).
    max_object_bytes: usize,
    journal: Vec<Undo>,
}

/// Bookkeeping per remembered resource besides its object.
const ENTRY_OVERHEAD: usize = 256;

fn size_of(k: &Known) -> usize {
    ENTRY_OVERHEAD + k.last_object.as_ref().map_or(0, |o| o.get().len())
}

/// Facts about the event being correlated, decided before correlation.
pub struct Observation<'a> {
    pub cluster: &'a str,
    pub verdict: &'a Verdict,
    /// The sanctioned pipeline that wrote, for a reconcile.
    pub pipeline: Option<&'a str>,
    pub actor: &'a str,
    pub time: &'a Time,
    pub finding_id: &'a str,
    /// Compute field changes (for findings and stored changes); skipped for
    /// changes nobody will read.
    pub want_changes: bool,
}

impl Tracker {
    pub fn new(max_objects: usize, max_bytes: usize) -> Self {
        Tracker {
            open: HashMap::default(),
            known: LruCache::new(NonZeroUsize::new(max_objects).unwrap_or(NonZeroUsize::MIN)),
            known_bytes: 0,
            max_bytes,
            // etcd refuses objects over 1.5 MiB; 1 MiB covers nearly all real ones.
            max_object_bytes: (max_bytes / 64).clamp(64 * 1024, 1024 * 1024),
            journal: Vec::new(),
        }
    }

    fn put_known(&mut self, key: Key, mut k: Known) {
        if k.last_object
            .as_ref()
            .is_some_and(|o| o.get().len() > self.max_object_bytes)
        {
            k.last_object = None;
        }
        self.known_bytes += size_of(&k);
        // `push` hands back the value it replaced, or the entry it evicted.
        if let Some((_, old)) = self.known.push(key, k) {
            self.known_bytes = self.known_bytes.saturating_sub(size_of(&old));
        }
        while self.known_bytes > self.max_bytes {
            match self.known.pop_lru() {
                Some((_, old)) => self.known_bytes = self.known_bytes.saturating_sub(size_of(&old)),
                None => break,
            }
        }
    }

    fn pop_known(&mut self, key: &Key) {
        if let Some(old) = self.known.pop(key) {
            self.known_bytes = self.known_bytes.saturating_sub(size_of(&old));
        }
    }

    /// Bytes held by remembered objects (for tests and metrics).
    pub fn tracked_bytes(&self) -> usize {
        self.known_bytes
    }

    /// Open drifts loaded from the store at start-up.
    pub fn restore(&mut self, drifts: impl IntoIterator<Item = OpenDrift>) {
        for d in drifts {
            self.open.insert(Key::of(&d), d);
        }
    }

    pub fn open_drifts(&self) -> usize {
        self.open.len()
    }

    pub fn observe(&mut self, ev: &Event<'_>, s: &Observation<'_>) -> Correlation {
        let subresource = ev.subresource();
        let response = ev.response_object.filter(|_| subresource.is_empty());
        let request = ev.request_object;
        let facts = merge_facts(
            response.map(ownership::facts),
            request.map(ownership::facts),
        );
        let mut object = ObjectRef::of(ev);
        if object.name.is_none() {
            object.name.clone_from(&facts.name);
        }
        if object.uid.is_none() {
            object.uid.clone_from(&facts.uid);
        }
        let mut out = Correlation {
            object,
            ..Correlation::default()
        };
        if out.object.name.is_none() {
            // A collection (deletecollection, create without a name in the
            // response): no single resource to remember.
            out.changes = changes::from_request(ev.verb(), ev.resource(), request);
            out.managed_by = facts.managed_by;
            out.owner = facts.owner;
            return out;
        }
        let key = Key {
            cluster: s.cluster.to_owned(),
            object: out.object.parent(),
        };
        self.remember(ev, s, &key, &facts, &mut out);
        out.transition = self.drift(ev, s, &key);
        out
    }

    /// Field changes against the remembered object, and the object to
    /// remember next.
    fn remember(
        &mut self,
        ev: &Event<'_>,
        s: &Observation<'_>,
        key: &Key,
        facts: &ObjectFacts,
        out: &mut Correlation,
    ) {
        let subresource = ev.subresource();
        let response = ev.response_object.filter(|_| subresource.is_empty());
        let request = ev.request_object;
        let previous = self.known.get(key).cloned();
        self.journal
            .push(Undo::Known(key.clone(), previous.clone()));
        let previous = previous.unwrap_or_default();
        let in_order = previous.last_object.is_none() || s.time.us >= previous.last_us;
        let verb = ev.verb();
        // Field changes are parsed only where they are reported or stored.
        if s.want_changes {
            out.changes = field_changes(
                ev,
                verb,
                subresource,
                request,
                response,
                previous.last_object.as_deref().filter(|_| in_order),
            );
        }
        out.managed_by = facts.managed_by.clone().or(previous.managed_by.clone());
        out.owner = facts.owner.clone().or(previous.owner.clone());
        if matches!(verb, "delete" | "deletecollection") && subresource.is_empty() {
            self.pop_known(key);
            return;
        }
        let newer = if in_order {
            next_object(verb, subresource, request, response)
        } else {
            None
        };
        let next = match newer {
            Some(object) => Known {
                last_object: Some(object),
                last_us: s.time.us,
                managed_by: out.managed_by.clone(),
                owner: out.owner.clone(),
            },
            None => Known {
                managed_by: out.managed_by.clone(),
                owner: out.owner.clone(),
                ..previous
            },
        };
        self.put_known(key.clone(), next);
    }

    /// Opens or joins a drift for an out-of-band change; closes it for the
    /// pipeline's next write.
    fn drift(&mut self, ev: &Event<'_>, s: &Observation<'_>, key: &Key) -> Option<DriftTransition> {
        match s.verdict {
            Verdict::Drift(d) if d.finding_type != FindingType::InteractiveAccess => {
                self.journal
                    .push(Undo::Open(key.clone(), self.open.get(key).cloned()));
                if let Some(open) = self.open.get(key) {
                    return Some(DriftTransition::Joined {
                        id: open.id.clone(),
                    });
                }
                let open = OpenDrift {
                    id: s.finding_id.to_owned(),
                    cluster: key.cluster.clone(),
                    object: key.object.clone(),
                    opened: s.time.clone(),
                    opened_by: s.actor.to_owned(),
                };
                self.open.insert(key.clone(), open.clone());
                Some(DriftTransition::Opened(open))
            }
            Verdict::Sanctioned { .. } => {
                // Delivery is unordered: a sanctioned change from before the
                // drift opened (a retried batch) put nothing back.
                let after_drift = self
                    .open
                    .get(key)
                    .is_some_and(|open| s.time.us >= open.opened.us);
                if !after_drift {
                    return None;
                }
                let open = self.open.remove(key)?;
                self.journal
                    .push(Undo::Open(key.clone(), Some(open.clone())));
                Some(DriftTransition::Reconciled {
                    seconds: (s.time.us - open.opened.us).max(0) as f64 / 1e6,
                    id: open.id,
                    at: s.time.clone(),
                    pipeline: s.pipeline.unwrap_or_default().to_owned(),
                    audit_id: ev.audit_id().to_owned(),
                    actor: s.actor.to_owned(),
                })
            }
            _ => None,
        }
    }

    /// Closes an open drift by id as accepted; returns it.
    pub fn accept(&mut self, id: &str) -> Option<OpenDrift> {
        let key = self
            .open
            .iter()
            .find(|(_, d)| d.id == id)
            .map(|(k, _)| k.clone())?;
        let open = self.open.remove(&key)?;
        self.journal.push(Undo::Open(key, Some(open.clone())));
        Some(open)
    }

    pub fn commit(&mut self) {
        self.journal.clear();
    }

    pub fn rollback(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Open(key, Some(d)) => {
                    self.open.insert(key, d);
                }
                Undo::Open(key, None) => {
                    self.open.remove(&key);
                }
                Undo::Known(key, Some(k)) => {
                    self.put_known(key, k);
                }
                Undo::Known(key, None) => {
                    self.pop_known(&key);
                }
            }
        }
    }
}

fn merge_facts(response: Option<ObjectFacts>, request: Option<ObjectFacts>) -> ObjectFacts {
    let (a, b) = (response.unwrap_or_default(), request.unwrap_or_default());
    ObjectFacts {
        name: a.name.or(b.name),
        uid: a.uid.or(b.uid),
        managed_by: a.managed_by.or(b.managed_by),
        owner: a.owner.or(b.owner),
    }
}

/// Just enough of a body to tell its shape; everything else is skipped
/// without building anything.
#[derive(serde::Deserialize)]
struct Shape<'a> {
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
}

/// Is this body the whole object (not a patch, not a `Status` reply)?
fn is_whole_object(body: &RawValue) -> bool {
    serde_json::from_str::<Shape<'_>>(body.get())
        .is_ok_and(|s| s.metadata.is_some() && s.kind.as_deref() != Some("Status"))
}

/// The whole object as a tree, for a diff.
fn whole_object(body: &RawValue) -> Option<Value> {
    if !is_whole_object(body) {
        return None;
    }
    serde_json::from_str(body.get()).ok()
}

fn field_changes(
    ev: &Event<'_>,
    verb: &str,
    subresource: &str,
    request: Option<&RawValue>,
    response: Option<&RawValue>,
    last: Option<&RawValue>,
) -> Vec<Change> {
    let resource = ev.resource();
    if subresource.is_empty()
        && matches!(verb, "update" | "patch")
        && let Some(last) = last.and_then(whole_object)
    {
        // The object after the change: the response, or for `update` the
        // request, which is the whole object.
        let after = response.and_then(whole_object).or_else(|| {
            (verb == "update")
                .then(|| request.and_then(whole_object))
                .flatten()
        });
        if let Some(after) = after {
            return changes::diff(resource, &last, &after);
        }
    }
    changes::from_request(verb, resource, request)
}

/// The version of the object to remember after this event.
fn next_object(
    verb: &str,
    subresource: &str,
    request: Option<&RawValue>,
    response: Option<&RawValue>,
) -> Option<Arc<RawValue>> {
    if !subresource.is_empty() {
        return None;
    }
    let keep = |b: &RawValue| is_whole_object(b).then(|| Arc::from(b.to_owned()));
    response.and_then(keep).or_else(|| {
        matches!(verb, "create" | "update")
            .then(|| request.and_then(keep))
            .flatten()
    })
}
