//! What a lookup's answer adds to a record: `context`, `managed_by` (and the
//! managed-object severity), the top `owner`, `field_managers` and, for an
//! event without a body, `changes` from `managedFields`.

use std::sync::Arc;

use super::cache::{Answer, Entry};
use super::fields;
use super::meta::Meta;
use crate::model::path::segments;
use crate::model::{
    Actor, Change, ChangeRecord, ChangesSource, ContextState, FieldManagers, LiveContext, Owner,
    Unavailable,
};

/// Field paths given their managers per finding: a finding stays readable.
const MAX_FIELD_MANAGERS: usize = 50;

#[derive(Debug, Clone)]
pub struct Resolution {
    context: LiveContext,
    object: Option<Arc<Meta>>,
    /// The object was fetched at or after the event: its fields include it.
    after_event: bool,
    /// An earlier copy (cached before the change), if any.
    before: Option<Arc<Meta>>,
    /// Controllers upward, nearest first.
    chain: Vec<Owner>,
}

impl Resolution {
    pub fn unavailable(reason: Unavailable) -> Resolution {
        Resolution {
            context: LiveContext::unavailable(reason),
            object: None,
            after_event: false,
            before: None,
            chain: Vec::new(),
        }
    }

    pub fn of(entry: &Entry, state: ContextState, event_us: i64) -> Resolution {
        match &entry.answer {
            Answer::Found(meta) => Resolution {
                context: LiveContext::available(state),
                object: Some(Arc::clone(meta)),
                after_event: entry.wall_us >= event_us,
                before: None,
                chain: Vec::new(),
            },
            Answer::NotFound => Resolution::unavailable(Unavailable::NotFound),
            Answer::Forbidden => Resolution::unavailable(Unavailable::Forbidden),
        }
    }

    pub fn set_before(&mut self, before: Option<&Entry>) {
        if let Some(Entry {
            answer: Answer::Found(meta),
            ..
        }) = before
        {
            self.before = Some(Arc::clone(meta));
        }
    }

    /// Part of the answer came from the API server just now.
    pub fn fetched(&mut self) {
        if self.context.state == ContextState::Cached {
            self.context.state = ContextState::Live;
        }
    }

    /// Adds `owner` (named by the level below) and returns its controller.
    pub fn push_owner(&mut self, owner: Owner, entry: &Entry) -> Option<Owner> {
        self.chain.push(owner);
        match &entry.answer {
            Answer::Found(meta) => meta.controller.clone(),
            Answer::NotFound | Answer::Forbidden => None,
        }
    }
}

pub fn apply(r: &mut ChangeRecord, res: Resolution) {
    r.context = Some(res.context.clone());
    let Some(meta) = res.object.as_deref() else {
        return;
    };
    if r.managed_by.is_none()
        && let Some(managed) = meta.managed_by()
    {
        if r.finding_type.is_some()
            && let Some(severity) = &mut r.severity
        {
            crate::classify::raise_severity_for_managed(severity, &mut r.reasons, &managed);
        }
        r.managed_by = Some(managed);
    }
    if let Some(top) = res.chain.last() {
        r.owner = Some(top.clone());
    }
    let by = request_manager(&r.actor);
    if r.changes.is_empty() && !r.had_body && res.after_event {
        if let Some(by) = &by {
            r.changes = changes_at(meta, by, r.time.us);
        }
        if !r.changes.is_empty() {
            r.changes_source = Some(ChangesSource::ManagedFields);
        }
    }
    r.field_managers = field_managers(&r.changes, &res, by.as_deref());
}

/// The manager the API server files a request under: `fieldManager=`, else
/// its user agent's product (`kubectl/v1.20.2 (...)` -> `kubectl`).
fn request_manager(actor: &Actor) -> Option<String> {
    actor.field_manager.clone().or_else(|| {
        let ua = actor.user_agent.as_deref()?;
        ua.split('/')
            .next()
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
    })
}

/// The fields `manager` holds in an entry stamped with this request's
/// second (or the one before: the stamp is taken when the request is
/// received, the event's time when it completes). Values are unknown.
fn changes_at(meta: &Meta, manager: &str, event_us: i64) -> Vec<Change> {
    let second = event_us.div_euclid(1_000_000);
    let mut out = Vec::new();
    for m in &meta.managed {
        let stamped = m.time.is_some_and(|t| t == second || t == second - 1);
        if m.manager != manager || !stamped {
            continue;
        }
        for leaf in &m.fields {
            // `.` marks a map or item as owned: the leaves under it say more.
            let parent = m
                .fields
                .iter()
                .any(|f| f.len() > leaf.len() && f.starts_with(leaf));
            if !parent {
                out.push(Change {
                    path: fields::render(leaf),
                    old: serde_json::Value::Null,
                    new: serde_json::Value::Null,
                    redacted: false,
                });
            }
        }
    }
    out.dedup_by(|a, b| a.path == b.path);
    out
}

fn field_managers(changes: &[Change], res: &Resolution, by: Option<&str>) -> Vec<FieldManagers> {
    let Some(object) = res.object.as_deref() else {
        return Vec::new();
    };
    // An object fetched before the event shows the owners the request met.
    let (after, before) = if res.after_event {
        (Some(object), res.before.as_deref())
    } else {
        (None, Some(object))
    };
    let mut out = Vec::new();
    for c in changes.iter().take(MAX_FIELD_MANAGERS) {
        let path = segments(&c.path);
        let now = after.map(|m| m.owners_of(&path)).unwrap_or_default();
        let earlier = before.map(|m| m.owners_of(&path)).unwrap_or_default();
        let took_over_from: Vec<String> = match by {
            Some(by) => earlier
                .iter()
                .filter(|m| *m != by && !now.contains(m))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let managers = if after.is_some() { now } else { earlier };
        if managers.is_empty() && took_over_from.is_empty() {
            continue;
        }
        out.push(FieldManagers {
            path: c.path.clone(),
            managers,
            by: by.map(str::to_owned),
            took_over_from,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::meta::Managed;

    fn managed(manager: &str, time: i64, paths: &[&str]) -> Managed {
        Managed {
            manager: manager.into(),
            operation: "Update".into(),
            time: Some(time),
            fields: paths.iter().map(|p| segments(p)).collect(),
        }
    }

    fn entry(meta: Meta, wall_us: i64) -> Entry {
        Entry {
            answer: Answer::Found(Arc::new(meta)),
            at: std::time::Instant::now(),
            wall_us,
        }
    }

    #[test]
    fn a_takeover_names_both_managers_and_changes_come_from_the_stamp() {
        let t = 1_700_000_000;
        let before = Meta {
            managed: vec![managed(
                "argocd-controller",
                t - 60,
                &["spec.replicas", "spec.template"],
            )],
            ..Meta::default()
        };
        let after = Meta {
            managed: vec![
                managed("argocd-controller", t - 60, &["spec.template"]),
                managed("kubectl", t, &["spec", "spec.replicas"]),
            ],
            ..Meta::default()
        };
        let event_us = t * 1_000_000 + 500_000;
        let mut res = Resolution::of(&entry(after, event_us + 1), ContextState::Live, event_us);
        res.set_before(Some(&entry(before, event_us - 1)));
        let mut r = ChangeRecord {
            actor: Actor {
                user_agent: Some("kubectl/v1.20.2 (linux/amd64) kubernetes/faecb19".into()),
                ..Actor::default()
            },
            time: crate::model::Time {
                us: event_us,
                text: String::new(),
            },
            ..ChangeRecord::default()
        };
        apply(&mut r, res);
        assert_eq!(r.changes_source, Some(ChangesSource::ManagedFields));
        let paths: Vec<&str> = r.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["spec.replicas"]);
        assert_eq!(
            r.field_managers,
            vec![FieldManagers {
                path: "spec.replicas".into(),
                managers: vec!["kubectl".into()],
                by: Some("kubectl".into()),
                took_over_from: vec!["argocd-controller".into()],
            }]
        );
    }

    #[test]
    fn unavailable_context_leaves_the_record_as_it_was() {
        let mut r = ChangeRecord::default();
        apply(&mut r, Resolution::unavailable(Unavailable::Forbidden));
        assert_eq!(
            r.context,
            Some(LiveContext::unavailable(Unavailable::Forbidden))
        );
        assert!(r.managed_by.is_none() && r.field_managers.is_empty());
    }
}
