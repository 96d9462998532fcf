//! Bytes -> `decode::decode_bytes` (and `decode_bytes_in`, with an arena for
//! cloud envelopes) -> `Engine::ingest` (decode, dedupe, policy,
//! correlation, delivery): the path every webhook body, Kafka message and
//! replayed file takes. Any panic, abort, stack overflow or out-of-memory is
//! a bug.

#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use driftwatch::config::Config;
use driftwatch::decode;
use driftwatch::engine::{Engine, Input};
use driftwatch::sinks::Sinks;
use driftwatch::telemetry::events::Source;
use libfuzzer_sys::fuzz_target;

/// Pipelines with user-agent and CIDR constraints, so that every branch of
/// the policy is reachable; small memories so that eviction is too.
const CONFIG: &str = r#"
cluster: fuzz
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
  - name: helm-ci
    users: ["ci-deployer@example.com"]
    groups: ["deployers"]
    user_agents: ["^Helm/3\\."]
    source_cidrs: ["10.20.0.0/16"]
ignore:
  namespaces: ["scratch"]
dedupe:
  capacity: 1024
history:
  max_tracked_objects: 16
"#;

/// What gzip and base64 may unpack per input: the service allows 64 MiB
/// per body, which would only make the fuzzer slow.
const ARENA_LIMIT: usize = 1 << 20;

fn config() -> Arc<Config> {
    static CONFIG_ONCE: OnceLock<Arc<Config>> = OnceLock::new();
    Arc::clone(CONFIG_ONCE.get_or_init(|| {
        Arc::new(Config::from_yaml(CONFIG, "fuzz.yaml").expect("the fuzz config is valid"))
    }))
}

fuzz_target!(|body: &[u8]| {
    // Replay's plain path (no arena: envelopes that need unpacking are
    // rejected), then the webhook's (cloud envelopes, gzip and base64 unpack
    // into the arena, within its limit).
    let plain = decode::decode_bytes(body);
    drop(plain);
    let arena = decode::Arena::with_limit(ARENA_LIMIT);
    drop(decode::decode_bytes_in(body, &arena));
    // A fresh engine per input, so that a crash reproduces from its input
    // alone. The body is ingested twice: the second time as a redelivery,
    // through the dedupe and correlation state the first one left.
    let Ok(mut engine) = Engine::new(config(), None, Sinks::new(Vec::new())) else {
        panic!("an engine without a store always starts");
    };
    let mut first = None;
    for _ in 0..2 {
        let input = Input::whole(Bytes::copy_from_slice(body), None, Source::Replay);
        for outcome in engine.ingest(vec![input]) {
            if let Ok(accepted) = outcome {
                let events = accepted.stats.events;
                // A redelivery decodes the same events, and raises nothing.
                match first {
                    None => first = Some(events),
                    Some(n) => {
                        assert_eq!(n, events);
                        assert_eq!(accepted.findings, 0);
                    }
                }
            }
        }
    }
});
