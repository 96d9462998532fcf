//! One replay of the audit logs through the engine, exactly as `replay`
//! runs it, with no store and a sink that keeps what suggestions need of
//! each finding instead of printing it.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::engine::{Engine, IngestError};
use crate::model::{FindingType, Severity};
use crate::sinks::{Batch, Finding, Sink, SinkError, Sinks};
use crate::sources::file::{ReplayError, replay_input};

use super::SuggestError;

/// What a suggestion reads of one finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub id: String,
    pub finding_type: FindingType,
    /// The effective identity.
    pub username: String,
    pub groups: Vec<String>,
    pub impersonated: bool,
    pub user_agent: Option<String>,
    pub client: Option<String>,
    pub field_manager: Option<String>,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The paths of the finding's `changes`.
    pub paths: Vec<String>,
    /// `(rule, severity)` of the finding's `risks`.
    pub risks: Vec<(String, Severity)>,
}

impl Seen {
    fn of(f: &Finding<'_>) -> Seen {
        let r = f.record;
        Seen {
            id: r.id.clone(),
            finding_type: f.finding_type,
            username: r.actor.username.clone(),
            groups: r.actor.groups.clone(),
            impersonated: r.actor.impersonated_by.is_some(),
            user_agent: r.actor.user_agent.clone(),
            client: r.actor.client.clone(),
            field_manager: r.actor.field_manager.clone(),
            verb: r.verb.clone(),
            group: r.resource.group.clone(),
            resource: r.resource.resource.clone(),
            subresource: r.resource.subresource.clone(),
            namespace: r.resource.namespace.clone(),
            name: r.resource.name.clone().filter(|n| !n.is_empty()),
            paths: r.changes.iter().map(|c| c.path.clone()).collect(),
            risks: r
                .risks
                .iter()
                .map(|k| (k.rule.to_string(), k.severity))
                .collect(),
        }
    }

    /// `resource` or `resource/subresource`, as RBAC and allowances spell it.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// The findings of one replay, and the documents it rejected.
#[derive(Debug, Default)]
pub struct Replayed {
    pub findings: Vec<Seen>,
    /// `FILE:LINE: reason` for every document that is not an audit event.
    pub rejections: Vec<String>,
    pub events: u64,
}

impl Replayed {
    pub fn ids(&self) -> HashSet<&str> {
        self.findings.iter().map(|f| f.id.as_str()).collect()
    }
}

/// Keeps findings in memory; shared with the caller, which takes them
/// once the replay is done.
struct Collect(Arc<Mutex<Vec<Seen>>>);

impl Sink for Collect {
    fn name(&self) -> &'static str {
        "suggest"
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let findings = batch.findings;
        let mut kept = self
            .0
            .lock()
            .map_err(|_| SinkError::fatal("suggest", io::Error::other("collector poisoned")))?;
        kept.extend(findings.iter().map(Seen::of));
        Ok(())
    }
}

/// Replays `files` under `config`: the same decoding, dedupe, policy and
/// correlation as `replay`, without a store.
pub fn replay(config: &Config, files: &[PathBuf]) -> Result<Replayed, SuggestError> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sinks = Sinks::new(vec![Box::new(Collect(Arc::clone(&kept)))]);
    let mut engine =
        Engine::new(Arc::new(config.clone()), None, sinks).map_err(SuggestError::Engine)?;
    let mut ingest = |input| {
        engine
            .ingest_ready(vec![input])
            .pop()
            .unwrap_or(Err(IngestError::Stopped))
    };
    let mut rejections = Vec::new();
    let mut on_reject = |name: &str, r: crate::sources::file::Reported<'_>| {
        rejections.push(r.display(name));
    };
    let mut events = 0;
    for path in files {
        match replay_input(path, None, config, &mut ingest, &mut on_reject) {
            Ok(stats) => events += stats.events,
            Err(ReplayError::Ingest(e)) => return Err(SuggestError::Ingest(e)),
            Err(ReplayError::Read { path, source }) => {
                return Err(SuggestError::Read { path, source });
            }
        }
    }
    drop(engine);
    // The engine and its sink are gone: the findings are ours alone.
    let findings = kept
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .map_err(|_| SuggestError::Ingest(IngestError::Stopped))?;
    Ok(Replayed {
        findings,
        rejections,
        events,
    })
}
