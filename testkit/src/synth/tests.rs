//! The stream keeps the mix and the shape the README's figures are
//! measured on, and a seed always gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;

const REQUESTS: u64 = 20_000;

/// Events of at least `REQUESTS` requests, parsed, with their kind and stage.
fn sample(seed: u64) -> (Generator, Vec<(Kind, StageKind, String, Value)>) {
    let mut g = Generator::new(seed);
    let mut events = Vec::new();
    while g.mix().requests() < REQUESTS {
        let (kind, stage, text) = g.next_tagged();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        events.push((kind, stage, text, v));
    }
    (g, events)
}

/// Whether `got` of `n` is within 4.5 standard deviations of a binomial
/// with probability `p`.
fn near(got: u64, n: u64, p: f64) -> bool {
    let sd = (p * (1.0 - p) / n as f64).sqrt();
    (got as f64 / n as f64 - p).abs() <= 4.5 * sd
}

#[test]
fn requests_follow_the_weights_and_mutations_repeat_at_request_received() {
    let (g, events) = sample(DEFAULT_SEED);
    let mix = g.mix();
    let n = mix.requests();
    for kind in Kind::ALL {
        let got = mix.requests_by_kind[kind.index()];
        let p = kind.weight() as f64 / Kind::TOTAL_WEIGHT as f64;
        assert!(
            near(got, n, p),
            "{}: {got} of {n} requests, expected {:.2}%",
            kind.as_str(),
            100.0 * p
        );
    }
    assert_eq!(
        Kind::ALL.iter().map(|k| k.weight()).sum::<u64>(),
        Kind::TOTAL_WEIGHT
    );
    // The README's figures: 54% reads, 14% noise, 11% controller writes,
    // 11% Argo CD patches, 5.5% kubectl, of the events.
    let share = |k: Kind| 100.0 * mix.by_kind[k.index()] as f64 / mix.events as f64;
    for (kind, lo, hi) in [
        (Kind::Read, 52.5, 56.5),
        (Kind::Noise, 13.5, 16.0),
        (Kind::Controller, 9.5, 11.5),
        (Kind::Argocd, 9.5, 11.5),
        (Kind::Kubectl, 4.5, 6.0),
    ] {
        let s = share(kind);
        assert!(
            (lo..=hi).contains(&s),
            "{}: {s:.2}% of events",
            kind.as_str()
        );
    }
    // About one mutation in ten is also logged at RequestReceived.
    let mutations: u64 = Kind::ALL
        .iter()
        .filter(|k| k.is_mutation())
        .map(|k| mix.requests_by_kind[k.index()])
        .sum();
    assert!(
        near(mix.request_received, mutations, 0.1),
        "{} RequestReceived copies of {mutations} mutations",
        mix.request_received
    );
    let counted = events
        .iter()
        .filter(|(_, s, _, _)| *s == StageKind::RequestReceived)
        .count() as u64;
    assert_eq!(counted, mix.request_received);
    assert_eq!(mix.events, events.len() as u64);
    let avg = mix.bytes as f64 / mix.events as f64;
    assert!((1200.0..2000.0).contains(&avg), "{avg:.0} bytes per event");
}

#[test]
fn each_kind_of_request_looks_as_the_api_server_logs_it() {
    let (_, events) = sample(DEFAULT_SEED ^ 1);
    // auditID -> stages seen, for the two-stage requests.
    let mut stages: BTreeMap<String, Vec<StageKind>> = BTreeMap::new();
    let mut bytes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut escaped = 0;
    for (kind, stage, text, v) in &events {
        // EventList items, escaped like Go.
        assert!(
            v.get("kind").is_none() && v.get("apiVersion").is_none(),
            "{text}"
        );
        assert!(!text.contains(['&', '<', '>']), "{text}");
        escaped += usize::from(text.contains("\\u0026"));
        assert_eq!(v["stage"], stage.as_str());
        assert!(
            v["auditID"].as_str().is_some_and(|id| id.len() == 36),
            "{text}"
        );
        for key in ["requestReceivedTimestamp", "stageTimestamp"] {
            let t = v[key].as_str().unwrap_or("");
            assert!(
                t.len() == 27 && t.ends_with('Z') && t.parse::<Timestamp>().is_ok(),
                "{t}"
            );
        }
        let id = v["auditID"].as_str().unwrap_or("").to_owned();
        stages.entry(id).or_default().push(*stage);
        let b = bytes.entry(kind.as_str()).or_default();
        b.0 += 1;
        b.1 += text.len() as u64;
        let uri = v["requestURI"].as_str().unwrap_or("");
        let user = v["user"]["username"].as_str().unwrap_or("");
        let code = &v["responseStatus"]["code"];
        if *stage == StageKind::RequestReceived {
            assert!(v.get("responseStatus").is_none() && v.get("requestObject").is_none());
            assert_eq!(v["stageTimestamp"], v["requestReceivedTimestamp"]);
            assert!(kind.is_mutation(), "{text}");
            continue;
        }
        match kind {
            Kind::Read => {
                assert!(["get", "list", "watch"].contains(&v["verb"].as_str().unwrap_or("")));
                assert!(v.get("requestObject").is_none());
            }
            Kind::Argocd => {
                assert_eq!(
                    user,
                    "system:serviceaccount:argocd:argocd-application-controller"
                );
                assert_eq!(v["level"], "RequestResponse");
                assert!(v["requestObject"].is_object() && v["responseObject"].is_object());
                assert!(uri.contains("fieldManager=argocd-controller") && !uri.contains("dryRun"));
            }
            Kind::Flux => {
                assert_eq!(
                    user,
                    "system:serviceaccount:flux-system:kustomize-controller"
                );
                assert!(
                    uri.contains("fieldManager=kustomize-controller&force=true"),
                    "{uri}"
                );
                // Server-side apply: the whole object.
                assert!(v["requestObject"]["kind"].is_string(), "{text}");
            }
            Kind::Kubectl => {
                assert!(user.ends_with("@example.com"));
                assert!(
                    v["userAgent"]
                        .as_str()
                        .is_some_and(|ua| ua.starts_with("kubectl/"))
                );
                assert!(uri.contains("fieldManager=kubectl-"), "{uri}");
                assert_eq!(v["verb"], "patch");
            }
            Kind::Forbidden => {
                assert_eq!(*code, 403);
                assert_eq!(v["annotations"]["authorization.k8s.io/decision"], "forbid");
            }
            Kind::DryRun => assert!(uri.contains("dryRun=All"), "{uri}"),
            Kind::Exec => {
                assert_eq!(v["verb"], "get");
                assert_eq!(*code, 101);
                assert_eq!(v["objectRef"]["subresource"], "exec");
            }
            Kind::Noise | Kind::Controller => {
                assert!(user.starts_with("system:"), "{user}");
                assert!(
                    [200, 201, 409].contains(&code.as_u64().unwrap_or(0)),
                    "{text}"
                );
            }
        }
    }
    assert!(
        escaped > events.len() / 4,
        "{escaped} events with an escaped '&'"
    );
    // Argo CD patches carry a few KB of bodies; reads are about 1 KB.
    let avg = |k: Kind| bytes[k.as_str()].1 / bytes[k.as_str()].0;
    assert!(avg(Kind::Argocd) > 3000, "{}", avg(Kind::Argocd));
    assert!(avg(Kind::Read) < 1500, "{}", avg(Kind::Read));
    // WebSocket exec: ResponseStarted, then ResponseComplete, same auditID.
    // RequestReceived copies come before their ResponseComplete, or after.
    let (mut exec, mut before, mut after) = (0, 0, 0);
    for seen in stages.values() {
        use StageKind::*;
        match seen.as_slice() {
            [ResponseStarted, ResponseComplete] => exec += 1,
            [RequestReceived, ResponseComplete] => before += 1,
            [ResponseComplete, RequestReceived] => after += 1,
            [_] => {}
            other => panic!("stages {other:?}"),
        }
    }
    assert!(
        exec > 40 && before > 300 && after > 40,
        "{exec} {before} {after}"
    );
    let distinct: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e.3["auditID"].as_str())
        .collect();
    assert_eq!(distinct.len(), stages.len());
}

#[test]
fn a_seed_gives_the_same_bytes_and_another_seed_others() {
    let a = Generator::new(DEFAULT_SEED).event_list(400);
    let b = Generator::new(DEFAULT_SEED).event_list(400);
    let c = Generator::new(DEFAULT_SEED + 1).event_list(400);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let list: Value = serde_json::from_slice(&a).unwrap_or_default();
    assert_eq!(list["kind"], "EventList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(400));
}
