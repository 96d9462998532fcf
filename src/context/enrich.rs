//! The [`Enricher`]: context for the records of one group of batches,
//! cache hits at once, misses fetched concurrently on the runtime, all
//! waited for with one deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{ApiResource, GroupVersionKind};
use tokio::sync::Semaphore;

use super::apply::{Resolution, apply};
use super::breaker::{self, Breakers, Ticket};
use super::cache::{Answer, Cache, Entry, Key};
use super::client::{self, Clients, Failed};
use super::inventory::Inventories;
use crate::config::KubernetesConfig;
use crate::model::{ChangeRecord, ContextState, Owner, Unavailable, VerdictKind};
use crate::telemetry::events::{ContextCircuitOpen, ContextLookup, ContextTimedOut, Emit, Outcome};

/// Controllers followed above an object: Pod -> ReplicaSet -> Deployment,
/// Job -> CronJob, with one to spare.
const MAX_OWNER_LEVELS: usize = 3;

/// What the lookups share with the tasks that outlive a deadline.
struct Shared {
    clients: Clients,
    cache: Cache,
    slots: Semaphore,
    breakers: Arc<Breakers>,
}

pub struct Enricher {
    shared: Arc<Shared>,
    inventories: Inventories,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

/// One record's lookup: its object, the event's time, and whether the
/// answer must be newer than that (no body: the fields must be read after
/// the write).
#[derive(Clone)]
struct Job {
    key: Key,
    time_us: i64,
    need_after: bool,
}

impl Enricher {
    pub fn new(
        clients: Clients,
        inventories: Inventories,
        config: &KubernetesConfig,
        runtime: tokio::runtime::Handle,
    ) -> Enricher {
        Enricher {
            inventories,
            shared: Arc::new(Shared {
                clients,
                cache: Cache::new(&config.cache),
                slots: Semaphore::new(config.max_concurrent_lookups),
                breakers: Arc::new(Breakers::new(config)),
            }),
            runtime,
            timeout: config.lookup_timeout,
        }
    }

    /// The per-cluster clients, for other features that read the API.
    pub fn clients(&self) -> &Clients {
        &self.shared.clients
    }

    /// The live-values reader of the query API, on the same clients and
    /// breakers: a cluster that is not answering is not asked twice.
    pub fn live(&self, redaction: Vec<crate::model::PathPattern>) -> super::Live {
        super::Live::new(
            self.shared.clients.clone(),
            Arc::clone(&self.shared.breakers),
            self.timeout,
            redaction,
        )
    }

    /// Adds context to the drift and sanctioned records. Blocks the calling
    /// (engine) thread for at most `lookup_timeout`; never fails a record.
    pub fn enrich(&self, records: &mut [ChangeRecord]) {
        self.look_up(records);
        // After the lookups: their markers and owners say which pipeline
        // object to name. The inventories are local: no request, no wait.
        for r in records.iter_mut() {
            if matches!(r.verdict, VerdictKind::Drift | VerdictKind::Sanctioned) {
                self.inventories.annotate(r);
            }
        }
    }

    fn look_up(&self, records: &mut [ChangeRecord]) {
        let deadline = Instant::now() + self.timeout;
        let mut tasks = Vec::new();
        let mut tickets: Vec<Arc<Ticket>> = Vec::new();
        // Records waiting for a task; records on one object share its task
        // (or its breaker's refusal: `None`).
        let mut waiting: Vec<(usize, usize)> = Vec::new();
        let mut by_key: HashMap<Key, Option<usize>> = HashMap::new();
        for (i, r) in records.iter_mut().enumerate() {
            if !matches!(r.verdict, VerdictKind::Drift | VerdictKind::Sanctioned) {
                continue;
            }
            match self.plan(r) {
                Plan::Ready(res) => apply(r, res),
                Plan::Lookup(job) => {
                    let task = *by_key.entry(job.key.clone()).or_insert_with(|| {
                        let breakers = &self.shared.breakers;
                        let ticket = Arc::new(breakers.admit(&job.key.cluster, Instant::now())?);
                        let shared = Arc::clone(&self.shared);
                        let run = resolve(shared, job, Arc::clone(&ticket));
                        tasks.push(self.runtime.spawn(run));
                        tickets.push(ticket);
                        Some(tasks.len() - 1)
                    });
                    match task {
                        Some(task) => waiting.push((i, task)),
                        None => {
                            ContextCircuitOpen.emit();
                            apply(r, Resolution::unavailable(Unavailable::CircuitOpen));
                        }
                    }
                }
            }
        }
        if tasks.is_empty() {
            return;
        }
        let answers = self.runtime.block_on(async move {
            let mut answers = Vec::with_capacity(tasks.len());
            for task in tasks {
                // A task not done by the deadline goes on: its answer fills
                // the cache for the next finding on the object.
                let answer = tokio::time::timeout_at(deadline.into(), task).await;
                answers.push(answer.ok().and_then(Result::ok));
            }
            answers
        });
        for (answer, ticket) in answers.iter().zip(&tickets) {
            if answer.is_none() {
                // Timed out: counts against the cluster now, whatever the
                // request's own end says later.
                ticket.report(true);
            }
        }
        drop(tickets);
        for (i, task) in waiting {
            let res = answers[task].clone().unwrap_or_else(|| {
                ContextTimedOut.emit();
                Resolution::unavailable(Unavailable::Timeout)
            });
            apply(&mut records[i], res);
        }
    }

    /// A resolution from the cache alone, or the lookup to run.
    fn plan(&self, r: &ChangeRecord) -> Plan {
        let Some(name) = r.resource.name.clone() else {
            return Plan::Ready(Resolution::unavailable(Unavailable::NoObject));
        };
        if self.shared.clients.get(&r.cluster).is_none() {
            return Plan::Ready(Resolution::unavailable(Unavailable::NoClient));
        }
        let o = &r.resource;
        let job = Job {
            key: Key {
                cluster: r.cluster.clone(),
                group: o.group.clone(),
                version: o.version.clone(),
                resource: o.resource.clone(),
                namespace: o.namespace.clone(),
                name,
            },
            time_us: r.time.us,
            need_after: !r.had_body,
        };
        match from_cache(&self.shared.cache, &job) {
            Some(res) => Plan::Ready(res),
            None => Plan::Lookup(job),
        }
    }
}

/// A record's context known at once, or the lookup that will find it.
enum Plan {
    Ready(Resolution),
    Lookup(Job),
}

/// The whole chain from the cache, or `None` at the first miss.
fn from_cache(cache: &Cache, job: &Job) -> Option<Resolution> {
    let found = cache.get(&job.key);
    let entry = found.fresh.filter(|e| usable(e, job))?;
    let mut res = Resolution::of(&entry, ContextState::Cached, job.time_us);
    let Answer::Found(meta) = &entry.answer else {
        // A cached 404 or 403: answered without a request all the same.
        ContextLookup::hit();
        return Some(res);
    };
    let mut next = meta.controller.clone();
    for _ in 0..MAX_OWNER_LEVELS {
        let Some(owner) = next.take() else { break };
        let Some(key) = owner_key(&job.key, &owner) else {
            break;
        };
        let e = cache.get(&key).fresh?;
        next = res.push_owner(owner, &e);
    }
    ContextLookup::hit();
    Some(res)
}

/// An entry answers a lookup unless the fields must postdate the event and
/// it was fetched before it. A 403 says nothing about the object's state,
/// so it stands until `negative_ttl` whatever the event's time.
fn usable(e: &Entry, job: &Job) -> bool {
    matches!(e.answer, Answer::Forbidden) || !job.need_after || e.wall_us >= job.time_us
}

/// The lookup of an object and its controllers, each level from the cache
/// or the API server.
async fn resolve(shared: Arc<Shared>, job: Job, ticket: Arc<Ticket>) -> Resolution {
    let found = shared.cache.get(&job.key);
    let before = found
        .fresh
        .clone()
        .filter(|e| !usable(e, &job))
        .or(found.stale);
    let (entry, state) = match found.fresh.filter(|e| usable(e, &job)) {
        Some(e) => (e, ContextState::Cached),
        None => match fetch(&shared, &job.key, Some(&ticket)).await {
            Ok(e) => (e, ContextState::Live),
            Err(reason) => return Resolution::unavailable(reason),
        },
    };
    let mut res = Resolution::of(&entry, state, job.time_us);
    res.set_before(before.as_ref());
    let Answer::Found(meta) = &entry.answer else {
        return res;
    };
    let mut next = meta.controller.clone();
    for _ in 0..MAX_OWNER_LEVELS {
        let Some(owner) = next.take() else { break };
        let Some(key) = owner_key(&job.key, &owner) else {
            break;
        };
        let e = match shared.cache.get(&key).fresh {
            Some(e) => e,
            // The owner chain is best effort: what is known so far stands.
            None => match fetch(&shared, &key, None).await {
                Ok(e) => {
                    res.fetched();
                    e
                }
                Err(_) => break,
            },
        };
        next = res.push_owner(owner, &e);
    }
    res
}

/// One request, counted and cached; a failure that says nothing about the
/// object (a 500, a refused connection) is not cached. The object's own
/// request reports to its cluster's breaker (`ticket`); its owners' do not.
async fn fetch(shared: &Shared, key: &Key, ticket: Option<&Ticket>) -> Result<Entry, Unavailable> {
    let Some(client) = shared.clients.get(&key.cluster) else {
        return Err(Unavailable::NoClient);
    };
    let Ok(_slot) = shared.slots.acquire().await else {
        return Err(Unavailable::Error);
    };
    let started = Instant::now();
    let result = client::fetch(client, key).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(ticket) = ticket {
        ticket.report(result.as_ref().err().is_some_and(breaker::is_outage));
    }
    let (answer, outcome) = match result {
        Ok(meta) => (Answer::Found(Arc::new(meta)), Outcome::MissOk),
        Err(Failed::NotFound) => (Answer::NotFound, Outcome::NotFound),
        Err(Failed::Forbidden) => (Answer::Forbidden, Outcome::Forbidden),
        Err(Failed::Other(error)) => {
            ContextLookup::failed(seconds, &key.resource, &error);
            return Err(Unavailable::Error);
        }
    };
    ContextLookup { outcome, seconds }.emit();
    Ok(shared.cache.put(key.clone(), answer))
}

/// The cache key of an object's controller: same cluster, same namespace.
fn owner_key(of: &Key, owner: &Owner) -> Option<Key> {
    let api_version = owner.api_version.as_deref()?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
    let resource = ApiResource::from_gvk(&gvk);
    Some(Key {
        cluster: of.cluster.clone(),
        group: resource.group,
        version: resource.version,
        resource: resource.plural,
        namespace: of.namespace.clone(),
        name: owner.name.clone(),
    })
}
