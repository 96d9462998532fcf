//! The engine's side of a store several replicas share: before a group is
//! judged, the objects its events will correlate are locked and what the
//! store holds of them taken as known; once judged, what changed goes back
//! in the group's transaction (see [`crate::store::postgres`]).

use super::{Engine, Ready};
use crate::correlate::Tracker;
use crate::model::ObjectRef;
use crate::store::StoreError;
use crate::store::postgres::{Held, Keep};

/// An object locked for a group, and its state as the store held it.
pub(super) struct Locked {
    cluster: String,
    object: ObjectRef,
    state: Option<Vec<u8>>,
}

impl Engine {
    /// With a shared store: locks the objects the inputs' events touch,
    /// until their group is written or refused, and takes what the store
    /// holds of them as what is known (another replica may have changed
    /// them since). Nothing without one.
    pub(super) fn lock_objects(&mut self, inputs: &[Ready]) -> Result<Vec<Locked>, StoreError> {
        let Some(store) = self.store.as_mut().filter(|s| s.shares_state()) else {
            return Ok(Vec::new());
        };
        let mut objects = Vec::new();
        for ready in inputs {
            let input = ready.input();
            let cluster = input.cluster.as_deref().unwrap_or(&self.config.cluster);
            let p = ready.borrow_dependent();
            // Ignored events (reads, dry runs, failures...) are never
            // correlated: they need no lock.
            for (d, pre) in p.decoded.events.iter().zip(&p.pre) {
                if pre.verdict.as_ref().is_some_and(|v| v.is_mutation()) {
                    objects.extend(Tracker::key_of(&d.event, cluster));
                }
            }
        }
        if objects.is_empty() {
            // No transaction is opened that nothing would end.
            return Ok(Vec::new());
        }
        objects.sort_by(|a, b| (&a.0, object_key(&a.1)).cmp(&(&b.0, object_key(&b.1))));
        objects.dedup();
        let held = store.lock(&objects)?;
        Ok(held.into_iter().map(|h| self.adopt(h)).collect())
    }

    /// [`Engine::lock_objects`] for an accept: the drift's object.
    pub(super) fn lock_drift(&mut self, id: &str) -> Result<Vec<Locked>, StoreError> {
        let Some(store) = self.store.as_mut().filter(|s| s.shares_state()) else {
            return Ok(Vec::new());
        };
        Ok(store
            .lock_drift(id)?
            .map(|h| self.adopt(h))
            .into_iter()
            .collect())
    }

    fn adopt(&mut self, h: Held) -> Locked {
        self.tracker
            .adopt(&h.cluster, &h.object, h.state.as_deref(), h.open);
        Locked {
            cluster: h.cluster,
            object: h.object,
            state: h.state,
        }
    }

    /// The locked objects' state now, where it is not what the store holds:
    /// most writes (a lease renewed, a status at `Metadata` level) leave
    /// nothing new to remember.
    pub(super) fn keep(&self, locked: &[Locked]) -> Vec<Keep> {
        locked
            .iter()
            .filter_map(|l| {
                let state = self.tracker.export(&l.cluster, &l.object);
                (state != l.state).then(|| Keep {
                    cluster: l.cluster.clone(),
                    object: l.object.clone(),
                    state,
                })
            })
            .collect()
    }
}

/// An object's identity as a sort key: locks are taken in one order.
fn object_key(o: &ObjectRef) -> (&str, &str, &str, &str) {
    (&o.group, &o.resource, o.namespace_str(), o.name_str())
}
