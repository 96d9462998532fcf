//! Admission latency: `serve` over TLS with `admission.mode: enforce`,
//! answering AdmissionReviews at a fixed rate, measured as the API server
//! would see it (client side, TLS, kept-alive connections).
//!
//! ```text
//! cargo build --release
//! cargo run --release --example admission_latency -- --rate 200 --seconds 60
//! ```
//!
//! Open loop: a request is sent when it is due, whether or not the ones
//! before it were answered, so a slow answer cannot hide the queue behind
//! it. The mix: Argo CD applying its Deployments (sanctioned), people
//! patching them (denied), people writing unmanaged ConfigMaps (audited),
//! each review carrying the old and new objects (about 4 KiB each). The
//! baseline, in the same run at the same rate on the same client, is `GET
//! /healthz`: what TLS, HTTP and the listener cost without judging.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use driftwatch_testkit::synth;
use serde_json::{Value, json};

struct Args {
    rate: f64,
    seconds: f64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        rate: 200.0,
        seconds: 60.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rate" => a.rate = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            other => bail!("unknown flag {other}; flags: --rate REVIEWS_PER_S --seconds S"),
        }
    }
    if !(a.rate > 0.0 && a.seconds > 0.0) {
        bail!("--rate and --seconds must be positive");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir()?;
    let ca = certificates(work.path())?;
    let config = work.path().join("admission.yaml");
    std::fs::write(
        &config,
        format!(
            "{}server:\n  tls: {{cert_file: {dir}/tls.crt, key_file: {dir}/tls.key}}\n\
             sinks:\n  stdout:\n    enabled: false\n\
             admission:\n  enabled: true\n  mode: enforce\n  break_glass_groups: [oncall]\n",
            synth::POLICY_YAML,
            dir = work.path().display()
        ),
    )?;
    let (mut child, base) = driftwatch_testkit::serve::start(
        &root.join("target/release/driftwatch"),
        &config,
        &work.path().join("data"),
    )?;
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(&args, &base, &ca));
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// A CA and a server certificate for 127.0.0.1; returns the CA's PEM.
fn certificates(dir: &std::path::Path) -> Result<Vec<u8>> {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate()?)?;
    let mut server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = server.signed_by(&key, &ca)?;
    std::fs::write(dir.join("tls.crt"), cert.pem())?;
    std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
    Ok(ca.pem().into_bytes())
}

fn deployment(name: &str, image: &str, replicas: u64) -> Value {
    let env: Vec<Value> = (0..40)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}-{name}")}))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": format!("uid-{name}"),
            "labels": {"app.kubernetes.io/instance": "shop"},
            "annotations": {"argocd.argoproj.io/tracking-id": format!("shop:apps/Deployment:shop/{name}")},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image, "env": env}]},
            },
        },
    })
}

fn review(i: u64) -> Value {
    let name = format!("api-{}", i % 50);
    let old = deployment(&name, "shop/api:1.4.2", 2);
    let (user, manager, object, resource) = match i % 10 {
        0..=3 => (
            json!({"username": "system:serviceaccount:argocd:argocd-application-controller",
                   "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]}),
            "argocd-controller",
            deployment(&name, "shop/api:1.4.3", 2),
            ("apps", "deployments", name.clone()),
        ),
        4..=6 => (
            json!({"username": "alice@example.com", "groups": ["devs", "system:authenticated"]}),
            "kubectl-edit",
            deployment(&name, "shop/api:1.4.2", 5),
            ("apps", "deployments", name.clone()),
        ),
        _ => {
            let cm = |v: &str| {
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": format!("notes-{}", i % 20), "namespace": "shop"},
                       "data": {"owner": v}})
            };
            return envelope(
                i,
                json!({"username": "bob@example.com", "groups": ["devs", "system:authenticated"]}),
                "kubectl-edit",
                (cm("bob"), cm("carol")),
                ("", "configmaps", format!("notes-{}", i % 20)),
            );
        }
    };
    envelope(i, user, manager, (object, old), resource)
}

fn envelope(
    i: u64,
    user: Value,
    manager: &str,
    (object, old): (Value, Value),
    (group, resource, name): (&str, &str, String),
) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "kind": {"group": group, "version": "v1", "kind": "Object"},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": "Object"},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": name,
            "namespace": "shop",
            "operation": "UPDATE",
            "userInfo": user,
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions", "fieldManager": manager},
        },
    })
}

struct Sent {
    admission: bool,
    seconds: f64,
    denied: bool,
}

async fn run(args: &Args, base: &str, ca: &[u8]) -> Result<()> {
    let client = driftwatch::http::client_builder()
        .no_proxy()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca)?)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = Arc::new(format!("{base}/admission/validate"));
    let health = Arc::new(format!("{base}/healthz"));
    let bodies: Vec<bytes::Bytes> = (0..1000)
        .map(|i| serde_json::to_vec(&review(i)).map(bytes::Bytes::from))
        .collect::<Result<_, _>>()?;
    // Warm up: connections made, first-use costs paid.
    for b in bodies.iter().take(20) {
        client.post(url.as_str()).body(b.clone()).send().await?;
    }
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let total = (args.seconds * args.rate) as u64;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize * 2);
    for i in 0..total {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let (c, url, body) = (
            client.clone(),
            Arc::clone(&url),
            bodies[i as usize % 1000].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let answer: Value = c.post(url.as_str()).body(body).send().await?.json().await?;
            Ok::<_, anyhow::Error>(Sent {
                admission: true,
                seconds: t.elapsed().as_secs_f64(),
                denied: answer["response"]["allowed"] == false,
            })
        }));
        let (c, health) = (client.clone(), Arc::clone(&health));
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            c.get(health.as_str()).send().await?.bytes().await?;
            Ok(Sent {
                admission: false,
                seconds: t.elapsed().as_secs_f64(),
                denied: false,
            })
        }));
    }
    let mut admission = Vec::new();
    let mut baseline = Vec::new();
    let mut denied = 0;
    for t in tasks {
        let s = t.await??;
        denied += u64::from(s.denied);
        if s.admission {
            admission.push(s.seconds);
        } else {
            baseline.push(s.seconds);
        }
    }
    let took = start.elapsed().as_secs_f64();
    report(args, took, denied, &mut admission, &mut baseline);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for line in metrics.lines().filter(|l| {
        l.starts_with("driftwatch_admission_review_seconds_sum")
            || l.starts_with("driftwatch_admission_review_seconds_count")
            || l.starts_with("driftwatch_admission_reviews_total")
    }) {
        println!("  {line}");
    }
    Ok(())
}

fn report(args: &Args, took: f64, denied: u64, admission: &mut [f64], baseline: &mut [f64]) {
    let pct = |v: &mut [f64], p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize] * 1000.0
    };
    println!(
        "{} reviews in {took:.1} s at {} /s ({denied} denied), with as many GET /healthz",
        admission.len(),
        args.rate
    );
    let (a50, a99, amax) = (
        pct(admission, 0.5),
        pct(admission, 0.99),
        pct(admission, 1.0),
    );
    let (b50, b99, bmax) = (pct(baseline, 0.5), pct(baseline, 0.99), pct(baseline, 1.0));
    println!("                 p50 ms   p99 ms   max ms");
    println!("  admission    {a50:>8.2} {a99:>8.2} {amax:>8.2}");
    println!("  /healthz     {b50:>8.2} {b99:>8.2} {bmax:>8.2}");
    println!(
        "  ratio        {:>8.2} {:>8.2}",
        a50 / b50.max(1e-9),
        a99 / b99.max(1e-9)
    );
}
