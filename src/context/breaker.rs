//! One circuit breaker per cluster: an API server that black-holes requests
//! (a partition, an overloaded server) would otherwise hold every group of
//! batches with a miss for the whole `lookup_timeout`. After
//! `kubernetes.breaker.failures` consecutive lookups that timed out or
//! failed (5xx, connection errors) the breaker opens: misses on that cluster
//! are answered `circuit_open` at once, cache hits still served. After
//! `open_for` one probe lookup goes through (half-open); its success closes
//! the breaker, its failure opens it again. A 404 or 403 is an answer.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::Failed;
use crate::config::KubernetesConfig;
use crate::telemetry::events::{ContextBreaker, Emit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: usize,
    },
    Open {
        until: Instant,
    },
    /// The cooldown is over and no probe is in flight (a probe ended
    /// without a verdict: the answer was in the cache after all).
    HalfOpen,
    /// The one probe is in flight.
    Probing,
}

pub struct Breakers {
    failures: usize,
    open_for: Duration,
    /// `kubernetes.clusters`: the names that may be a metric label.
    configured: BTreeSet<String>,
    states: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub fn new(config: &KubernetesConfig) -> Breakers {
        Breakers {
            failures: config.breaker.failures.max(1),
            open_for: config.breaker.open_for,
            configured: config.clusters.keys().cloned().collect(),
            states: Mutex::new(HashMap::new()),
        }
    }

    /// The `cluster` label: a configured name, else `default` (the default
    /// client's cluster).
    fn label<'a>(&'a self, cluster: &'a str) -> &'a str {
        if self.configured.contains(cluster) {
            cluster
        } else {
            "default"
        }
    }

    /// Whether a lookup of `cluster` may be made now: a ticket to report
    /// its outcome on, or `None` while the breaker is open.
    pub fn admit(self: &Arc<Self>, cluster: &str, now: Instant) -> Option<Ticket> {
        let probe = self.admit_at(cluster, now)?;
        Some(Ticket {
            breakers: Arc::clone(self),
            cluster: cluster.to_owned(),
            probe,
            done: AtomicBool::new(false),
        })
    }

    /// `Some(probe)` when a lookup may be made.
    fn admit_at(&self, cluster: &str, now: Instant) -> Option<bool> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let state = states
            .entry(cluster.to_owned())
            .or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => Some(false),
            State::Open { until } if now < until => None,
            State::Open { .. } | State::HalfOpen => {
                *state = State::Probing;
                Some(true)
            }
            State::Probing => None,
        }
    }

    /// A lookup's outcome: `failed` for a timeout, a 5xx, a connection
    /// error. A probe's decides the state; a late report from a lookup
    /// admitted before the breaker opened changes nothing.
    fn record(&self, cluster: &str, probe: bool, failed: bool, now: Instant) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = states.get_mut(cluster) else {
            return;
        };
        let event = match (*state, failed) {
            (State::Closed { failures }, true) if failures + 1 >= self.failures => {
                *state = State::Open {
                    until: now + self.open_for,
                };
                Some(ContextBreaker::Opened {
                    cluster: self.label(cluster),
                    failures: failures + 1,
                    open_for: self.open_for,
                })
            }
            (State::Closed { failures }, true) => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            (State::Closed { .. }, false) => {
                *state = State::Closed { failures: 0 };
                None
            }
            (State::Probing, true) if probe => {
                *state = State::Open {
                    until: now + self.open_for,
                };
                Some(ContextBreaker::ProbeFailed {
                    cluster: self.label(cluster),
                })
            }
            (State::Probing, false) if probe => {
                *state = State::Closed { failures: 0 };
                Some(ContextBreaker::Closed {
                    cluster: self.label(cluster),
                })
            }
            _ => None,
        };
        drop(states);
        if let Some(event) = event {
            event.emit();
        }
    }

    /// A probe that ended with no request made: the next lookup probes.
    fn abandon(&self, cluster: &str) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = states.get_mut(cluster)
            && *state == State::Probing
        {
            *state = State::HalfOpen;
        }
    }

    #[cfg(test)]
    fn state(&self, cluster: &str) -> Option<State> {
        self.states.lock().unwrap().get(cluster).copied()
    }
}

/// One admitted lookup; its first report counts (the engine's deadline or
/// the request's own end, whichever comes first), later ones are ignored.
pub struct Ticket {
    breakers: Arc<Breakers>,
    cluster: String,
    probe: bool,
    done: AtomicBool,
}

impl Ticket {
    /// The request ended: `failed` when it says the server is unreachable.
    pub fn report(&self, failed: bool) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.breakers
                .record(&self.cluster, self.probe, failed, Instant::now());
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.probe && !self.done.load(Ordering::Acquire) {
            self.breakers.abandon(&self.cluster);
        }
    }
}

/// Whether a failed fetch says the server is unavailable (a 5xx, no
/// connection, no answer in time) rather than answering about the object
/// (404, 403, another 4xx).
pub fn is_outage(failed: &Failed) -> bool {
    match failed {
        Failed::NotFound | Failed::Forbidden => false,
        Failed::Other(kube::Error::Api(status)) => status.code >= 500,
        Failed::Other(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KubeBreakerConfig;

    fn breakers(failures: usize) -> Arc<Breakers> {
        let mut config = KubernetesConfig {
            breaker: KubeBreakerConfig {
                failures,
                open_for: Duration::from_secs(30),
            },
            ..KubernetesConfig::default()
        };
        config.clusters.insert("prod-us-1".into(), "ctx".into());
        Arc::new(Breakers::new(&config))
    }

    fn fail_n(b: &Breakers, cluster: &str, n: usize, now: Instant) {
        for _ in 0..n {
            assert_eq!(b.admit_at(cluster, now), Some(false));
            b.record(cluster, false, true, now);
        }
    }

    #[test]
    fn opens_after_n_consecutive_failures_and_stays_open() {
        let b = breakers(5);
        let t0 = Instant::now();
        fail_n(&b, "c", 4, t0);
        assert_eq!(b.state("c"), Some(State::Closed { failures: 4 }));
        // A success resets the count: failures must be consecutive.
        b.record("c", false, false, t0);
        fail_n(&b, "c", 4, t0);
        assert_eq!(b.admit_at("c", t0), Some(false));
        fail_n(&b, "c", 1, t0);
        assert!(matches!(b.state("c"), Some(State::Open { .. })));
        assert_eq!(b.admit_at("c", t0), None);
        assert_eq!(b.admit_at("c", t0 + Duration::from_secs(29)), None);
        // Other clusters are not affected.
        assert_eq!(b.admit_at("prod-us-1", t0), Some(false));
    }

    #[test]
    fn one_probe_after_the_cooldown_and_its_success_closes() {
        let b = breakers(2);
        let t0 = Instant::now();
        fail_n(&b, "c", 2, t0);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(b.admit_at("c", later), Some(true));
        // Only one probe at a time.
        assert_eq!(b.admit_at("c", later), None);
        b.record("c", true, false, later);
        assert_eq!(b.state("c"), Some(State::Closed { failures: 0 }));
        assert_eq!(b.admit_at("c", later), Some(false));
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cooldown() {
        let b = breakers(2);
        let t0 = Instant::now();
        fail_n(&b, "c", 2, t0);
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(b.admit_at("c", t1), Some(true));
        b.record("c", true, true, t1);
        assert_eq!(
            b.state("c"),
            Some(State::Open {
                until: t1 + Duration::from_secs(30)
            })
        );
        assert_eq!(b.admit_at("c", t1 + Duration::from_secs(29)), None);
        assert_eq!(b.admit_at("c", t1 + Duration::from_secs(30)), Some(true));
    }

    #[test]
    fn late_reports_of_lookups_admitted_before_do_not_decide() {
        let b = breakers(1);
        let t0 = Instant::now();
        fail_n(&b, "c", 1, t0);
        // A lookup admitted while closed answers late: still open.
        b.record("c", false, false, t0);
        assert!(matches!(b.state("c"), Some(State::Open { .. })));
    }

    #[test]
    fn tickets_count_once_and_an_unused_probe_lets_the_next_one_through() {
        let b = breakers(1);
        let t = b.admit("c", Instant::now()).unwrap();
        t.report(true);
        // The request's own end after the deadline already counted.
        t.report(false);
        drop(t);
        assert!(matches!(b.state("c"), Some(State::Open { .. })));
        let after = Instant::now() + Duration::from_secs(31);
        let probe = b.admit("c", after).unwrap();
        assert!(b.admit("c", after).is_none());
        drop(probe);
        assert_eq!(b.state("c"), Some(State::HalfOpen));
        assert!(b.admit("c", after).is_some());
    }

    #[test]
    fn not_found_forbidden_and_other_4xx_are_answers() {
        let status = |code: u16| {
            Failed::Other(kube::Error::Api(
                kube::core::Status::failure("test", "Test")
                    .with_code(code)
                    .boxed(),
            ))
        };
        assert!(!is_outage(&Failed::NotFound));
        assert!(!is_outage(&Failed::Forbidden));
        assert!(!is_outage(&status(409)));
        assert!(is_outage(&status(500)));
        assert!(is_outage(&status(503)));
        let b = breakers(1);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(b.admit_at("c", t0), Some(false));
            b.record("c", false, is_outage(&Failed::NotFound), t0);
        }
        assert_eq!(b.state("c"), Some(State::Closed { failures: 0 }));
    }

    #[test]
    fn only_configured_cluster_names_are_labels() {
        let b = breakers(1);
        assert_eq!(b.label("prod-us-1"), "prod-us-1");
        assert_eq!(b.label("dw-ctx"), "default");
    }
}
