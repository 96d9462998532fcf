//! Per-resource memory: the last known object (for field diffs), who manages
//! it, and the drift lifecycle. A drift opens with the first out-of-band
//! change to a resource, collects the later ones and the fields they set,
//! and closes when a pipeline write puts every one of those fields back
//! (`reconciled`; see `reconcile`) or someone accepts it. A pipeline write
//! that leaves some in place makes it `persisting`.
//!
//! Changes are journaled per batch and undone if the batch is not accepted,
//! so a retried batch sees the same state as the first attempt.

use std::num::NonZeroUsize;

use foldhash::HashMap;
use lru::LruCache;

use super::changes::{self, Change};
use super::ownership::{self, ObjectFacts};
use super::{reconcile, state};
use crate::classify::{FindingType, Verdict};
use crate::decode::Event;
use crate::model::{
    DriftState, DriftTransition, DriftedPath, MAX_DRIFTED_PATHS, ManagedBy, ObjectRef, OpenDrift,
    Owner, Time, Verification,
};

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
    /// Whether `changes` is what changed (a diff or a patch body), rather
    /// than nothing known (a create, or an update of an object not seen).
    pub changes_known: bool,
    pub transition: Option<DriftTransition>,
    pub managed_by: Option<ManagedBy>,
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Known {
    /// Recent versions; their objects are shared, so that the undo
    /// journal's copy costs reference counts.
    pub(super) versions: state::Versions,
    pub(super) managed_by: Option<ManagedBy>,
    pub(super) owner: Option<Owner>,
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
    ENTRY_OVERHEAD + k.versions.bytes()
}

/// Facts about the event being correlated, decided before correlation.
pub struct Observation<'a> {
    pub cluster: &'a str,
    /// The sanctioned pipeline that wrote, for a reconcile.
    pub pipeline: Option<&'a str>,
    pub actor: &'a str,
    pub time: &'a Time,
    pub finding_id: &'a str,
    /// Compute field changes (for findings and stored changes); skipped for
    /// changes nobody will read.
    pub want_changes: bool,
    /// The object the write left ([`state::result_object`]), when it was
    /// read ahead off the engine thread; `None`: read it here if needed.
    pub read_ahead: Option<&'a Option<serde_json::Value>>,
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
        k.versions.drop_larger_than(self.max_object_bytes);
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

    /// When each persisting drift started persisting.
    pub fn persisting_since(&self) -> impl Iterator<Item = &Time> {
        self.open
            .values()
            .filter_map(|d| d.persisting_since.as_ref())
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
        if ev.failed() {
            // A refused attempt (reported for what it tried): the object is
            // as it was, and nothing is known to have changed. Its bodies
            // are what it tried to write and the refusal, not the object.
            return out;
        }
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
        out
    }

    /// What the event's final verdict does to the object's drift; called
    /// after [`Tracker::observe`], once the changes have been judged.
    pub fn settle(
        &mut self,
        ev: &Event<'_>,
        s: &Observation<'_>,
        corr: &Correlation,
        verdict: &Verdict,
    ) -> Option<DriftTransition> {
        corr.object.name.as_ref()?;
        if ev.failed() {
            // Nothing changed: no drift opens, joins or closes.
            return None;
        }
        let key = Key {
            cluster: s.cluster.to_owned(),
            object: corr.object.parent(),
        };
        let write = Write { ev, s, corr };
        self.drift(&write, &key, verdict)
    }

    /// Field changes against the remembered object, and the object to
    /// remember next. Writes of every verdict move it, system ones included.
    fn remember(
        &mut self,
        ev: &Event<'_>,
        s: &Observation<'_>,
        key: &Key,
        facts: &ObjectFacts,
        out: &mut Correlation,
    ) {
        let previous = self.known.get(key).cloned();
        self.journal
            .push(Undo::Known(key.clone(), previous.clone()));
        let previous = previous.unwrap_or_default();
        // Field changes are parsed only where they are reported or stored,
        // or checked against an open drift.
        if s.want_changes || self.open.contains_key(key) {
            (out.changes, out.changes_known) =
                state::field_changes(ev, &previous.versions, s.time.us, s.read_ahead);
        }
        out.managed_by = facts.managed_by.clone().or(previous.managed_by);
        out.owner = facts.owner.clone().or(previous.owner);
        let mut versions = previous.versions;
        match state::next(ev, &versions, s.time.us) {
            state::Next::Gone => {
                self.pop_known(key);
                return;
            }
            state::Next::Version(object) => versions.insert(state::Version::of(object, s.time.us)),
            state::Next::Unknown => versions.forget_before(s.time.us),
            state::Next::Unchanged => {}
        }
        let known = Known {
            versions,
            managed_by: out.managed_by.clone(),
            owner: out.owner.clone(),
        };
        self.put_known(key.clone(), known);
    }

    /// Opens or joins a drift for an out-of-band change; checks it against
    /// the pipeline's next write.
    fn drift(&mut self, w: &Write<'_>, key: &Key, verdict: &Verdict) -> Option<DriftTransition> {
        match verdict {
            Verdict::Drift(d) if d.finding_type.opens_drift() => Some(self.open_or_join(w, key)),
            Verdict::Sanctioned { .. } => self.reconcile(w, key),
            Verdict::Drift(d) if d.finding_type == FindingType::RiskyPipelineChange => {
                self.reconcile(w, key)
            }
            _ => None,
        }
    }

    fn open_or_join(&mut self, w: &Write<'_>, key: &Key) -> DriftTransition {
        self.journal
            .push(Undo::Open(key.clone(), self.open.get(key).cloned()));
        let fields = w.drifted_paths();
        if let Some(open) = self.open.get_mut(key) {
            open.paths = match (open.paths.take(), fields) {
                (Some(known), Some(new)) => merge_paths(known, new),
                _ => None,
            };
            let state = if open.persisting_since.is_some() {
                DriftState::Persisting
            } else {
                DriftState::Open
            };
            return DriftTransition::Joined {
                id: open.id.clone(),
                state,
                paths: open.paths.clone(),
            };
        }
        let open = OpenDrift {
            id: w.s.finding_id.to_owned(),
            cluster: key.cluster.clone(),
            object: key.object.clone(),
            opened: w.s.time.clone(),
            opened_by: w.s.actor.to_owned(),
            paths: fields,
            persisting_since: None,
        };
        self.open.insert(key.clone(), open.clone());
        DriftTransition::Opened(open)
    }

    /// The pipeline wrote the object again: its drift, if any, closes when
    /// every drifted field is back, and persists otherwise.
    fn reconcile(&mut self, w: &Write<'_>, key: &Key) -> Option<DriftTransition> {
        let s = w.s;
        // Delivery is unordered: a sanctioned change from before the drift
        // opened (a retried batch) put nothing back.
        let after_drift = self
            .open
            .get(key)
            .is_some_and(|open| s.time.us >= open.opened.us);
        if !after_drift {
            return None;
        }
        let mut open = self.open.remove(key)?;
        self.journal
            .push(Undo::Open(key.clone(), Some(open.clone())));
        let pipeline = s.pipeline.unwrap_or_default().to_owned();
        let audit_id = w.ev.audit_id().to_owned();
        let verification = match &open.paths {
            None => Verification::Unverified,
            Some(paths) => {
                let after = state::result_object(w.ev);
                let left = reconcile::remaining(paths, &w.corr.changes, after.as_ref());
                if !left.is_empty() {
                    let since = open.persisting_since.get_or_insert_with(|| s.time.clone());
                    let t = DriftTransition::Persisting {
                        id: open.id.clone(),
                        since: since.clone(),
                        pipeline,
                        audit_id,
                        paths: left.clone(),
                    };
                    open.paths = Some(left);
                    self.open.insert(key.clone(), open);
                    return Some(t);
                }
                Verification::Verified
            }
        };
        Some(DriftTransition::Reconciled {
            seconds: (s.time.us - open.opened.us).max(0) as f64 / 1e6,
            id: open.id,
            at: s.time.clone(),
            pipeline,
            audit_id,
            actor: s.actor.to_owned(),
            verification,
        })
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

    /// The object an event's state is kept under in `cluster`, as
    /// [`Tracker::observe`] will find it; `None` for a collection.
    pub fn key_of(ev: &Event<'_>, cluster: &str) -> Option<(String, ObjectRef)> {
        let mut object = ObjectRef::of(ev);
        if object.name.is_none() {
            let subresource = ev.subresource();
            let response = ev.response_object.filter(|_| subresource.is_empty());
            let facts = merge_facts(
                response.map(ownership::facts),
                ev.request_object.map(ownership::facts),
            );
            object.name = facts.name;
        }
        object.name.as_ref()?;
        Some((cluster.to_owned(), object.parent()))
    }

    /// Takes what a shared store holds of an object as what is known of it
    /// (another replica may have changed it since this one last did): its
    /// remembered state and its unclosed drift, each `None` for none.
    /// Not journaled: it is where the batch starts from.
    pub fn adopt(
        &mut self,
        cluster: &str,
        object: &ObjectRef,
        state: Option<&[u8]>,
        open: Option<OpenDrift>,
    ) {
        let key = Key {
            cluster: cluster.to_owned(),
            object: object.parent(),
        };
        match state.and_then(super::shared::decode) {
            Some(known) => self.put_known(key.clone(), known),
            None => self.pop_known(&key),
        }
        match open {
            Some(d) => self.open.insert(key, d),
            None => self.open.remove(&key),
        };
    }

    /// What is remembered of an object, for a shared store; `None` when
    /// nothing is (deleted, evicted, or never seen).
    pub fn export(&self, cluster: &str, object: &ObjectRef) -> Option<Vec<u8>> {
        let key = Key {
            cluster: cluster.to_owned(),
            object: object.parent(),
        };
        self.known.peek(&key).map(super::shared::encode)
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

/// One write being settled: the event, its facts and its correlation.
struct Write<'a> {
    ev: &'a Event<'a>,
    s: &'a Observation<'a>,
    corr: &'a Correlation,
}

impl Write<'_> {
    /// The fields an out-of-band write set, when its changes are known.
    fn drifted_paths(&self) -> Option<Vec<DriftedPath>> {
        let c = self.corr;
        (c.changes_known && c.changes.len() < changes::MAX_CHANGES)
            .then(|| c.changes.iter().map(DriftedPath::of).collect())
    }
}

/// A drift's fields after another change: the newest value per field, and
/// unknown once there are too many to keep.
fn merge_paths(mut known: Vec<DriftedPath>, new: Vec<DriftedPath>) -> Option<Vec<DriftedPath>> {
    for p in new {
        match known.iter_mut().find(|k| k.path == p.path) {
            Some(k) => k.value = p.value,
            None => known.push(p),
        }
    }
    (known.len() <= MAX_DRIFTED_PATHS).then_some(known)
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
