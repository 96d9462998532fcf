//! Several replicas on one PostgreSQL history (`history.backend:
//! postgres`): a real PostgreSQL 15 server from Debian's packages on
//! loopback, started by `scripts/postgres-dev-server` (`scripts/test` starts
//! it first; a run without it starts it here), one fresh database per test.
//! Each replica is a real `driftwatch serve`.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

use crate::common::{self, ARGOCD_CONFIG, Ev, Service, get_ok, post_events};
use crate::history::{Story, all_items, recent_base, secs, story};

fn script() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-dev-server")
}

/// The server's URL (database `driftwatch`), starting it if needed.
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DRIFTWATCH_TEST_POSTGRES")
            && !url.is_empty()
        {
            return url;
        }
        let out = Command::new(script())
            .arg("start")
            .output()
            .expect("running scripts/postgres-dev-server start");
        assert!(
            out.status.success(),
            "scripts/postgres-dev-server start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("the server's URL")
            .trim()
            .to_owned()
    })
}

/// A fresh database on the server; its URL.
pub(crate) fn database(prefix: &str) -> Result<String> {
    database_on(server(), prefix)
}

/// A fresh database on the server at `base`; its URL.
fn database_on(base: &str, prefix: &str) -> Result<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let port = base
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .context("the server URL's port")?;
    let out = Command::new(script())
        .args(["psql", port, "-c", &format!("CREATE DATABASE {name}")])
        .output()?;
    if !out.status.success() {
        bail!(
            "CREATE DATABASE {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let root = base.rsplit_once('/').context("a database in the URL")?.0;
    Ok(format!("{root}/{name}"))
}

/// Argo CD's policy with its history in `url`.
pub(crate) fn pg_config(url: &str) -> String {
    format!(
        "{ARGOCD_CONFIG}history:\n  backend: postgres\n  postgres:\n    url: \"{url}\"\n    pool: 4\n"
    )
}

/// Every item of a list route, page after page (each page checked).
async fn all(svc: &Service, path: &str) -> Result<Vec<Value>> {
    all_items(svc, path, 50).await
}

/// Every page of `path` at `limit` items a page, each page whole.
async fn all_pages(svc: &Service, path: &str, limit: &str) -> Result<Vec<Value>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut pages = Vec::new();
    let mut url = format!("{path}{sep}limit={limit}");
    loop {
        let mut page = get_ok(svc, &url).await?;
        let next = page["next"].as_str().map(str::to_owned);
        // Cursors are opaque (a row's sequence number in its store): only
        // whether there is one compares.
        if next.is_some() {
            page["next"] = json!("a cursor");
        }
        pages.push(page);
        match next {
            Some(c) if pages.len() < 200 => url = format!("{path}{sep}limit={limit}&cursor={c}"),
            _ => return Ok(pages),
        }
    }
}

/// What the query API says of the history, to compare replicas and backends.
async fn answers(svc: &Service) -> Result<(Vec<Value>, Vec<Value>)> {
    Ok((
        all(svc, "/api/v1/changes").await?,
        all(svc, "/api/v1/drifts").await?,
    ))
}

/// Two replicas on a fresh database.
fn two_replicas(prefix: &str) -> Result<(Service, Service)> {
    let config = pg_config(&database(prefix)?);
    Ok((
        Service::start(Some(&config))?,
        Service::start(Some(&config))?,
    ))
}

fn stories() -> Vec<Story> {
    let base = recent_base();
    vec![
        story("shop", "api", base),
        story("shop", "web", base + secs(1.0)),
        story("shop", "cart", base + secs(2.0)),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_one_history_that_answers_like_sqlite() -> Result<()> {
    let (a, b) = two_replicas("share")?;
    let alone = Service::start(Some(ARGOCD_CONFIG))?;
    let s = stories();
    let (api, web, cart) = (&s[0], &s[1], &s[2]);

    // One replica alone on SQLite sees every event, in order.
    for e in [
        &api.create,
        &web.create,
        &cart.create,
        &api.edit,
        &web.edit,
        &cart.edit,
        &api.sync,
        &web.sync,
    ] {
        post_events(&alone, &[e]).await?;
    }
    // The replicas see them spread: a drift opened on one is closed by the
    // sync the other receives, and cart's edit reaches both.
    for (svc, e) in [
        (&a, &api.create),
        (&b, &web.create),
        (&a, &cart.create),
        (&b, &api.edit),
        (&a, &web.edit),
        (&a, &cart.edit),
        (&b, &cart.edit),
        (&a, &api.sync),
        (&b, &web.sync),
    ] {
        post_events(svc, &[e]).await?;
    }

    let want = answers(&alone).await?;
    for (name, svc) in [("a", &a), ("b", &b)] {
        let got = answers(svc).await?;
        ensure!(
            got.0 == want.0,
            "replica {name}'s changes differ from one SQLite replica's:\n{:#?}\nvs\n{:#?}",
            got.0,
            want.0
        );
        ensure!(
            got.1 == want.1,
            "replica {name}'s drifts differ from one SQLite replica's:\n{:#?}\nvs\n{:#?}",
            got.1,
            want.1
        );
    }
    // Every filter and route answers alike too, pages and cursors included.
    for path in [
        "/api/v1/changes?field=spec.replicas",
        "/api/v1/changes?field=spec.rep",
        "/api/v1/changes?field=spec",
        "/api/v1/changes?actor=alice@example.com",
        "/api/v1/changes?type=out_of_band_change&verdict=drift",
        "/api/v1/changes?namespace=shop&resource=deployments&name=web",
        "/api/v1/changes?cluster=prod-eu-1&group=apps",
        "/api/v1/drifts?state=open",
        "/api/v1/drifts?state=reconciled&actor=alice@example.com",
        "/api/v1/resources/apps/deployments/shop/api/history",
    ] {
        for limit in ["1", "2", "1000"] {
            let want = all_pages(&alone, path, limit).await?;
            let got = all_pages(&b, path, limit).await?;
            ensure!(
                got == want,
                "{path} limit {limit}:\n{got:#?}\nvs\n{want:#?}"
            );
        }
    }
    for bad in [
        "/api/v1/changes?state=open",
        "/api/v1/drifts?field=spec",
        "/api/v1/changes?cursor=x",
    ] {
        let (want, got) = (
            common::get_json(&alone, bad).await?,
            common::get_json(&a, bad).await?,
        );
        assert_eq!((got.status, &got.json), (want.status, &want.json), "{bad}");
        assert_eq!(got.status, 400, "{bad}");
    }
    let (changes, drifts) = want;
    let edits = changes
        .iter()
        .filter(|c| c["audit_id"] == json!(cart.edit.id()))
        .count();
    assert_eq!(
        edits, 1,
        "cart's edit reached both replicas and is stored once"
    );
    let states: BTreeMap<String, String> = drifts
        .iter()
        .map(|d| {
            (
                d["resource"]["name"].as_str().unwrap_or("").to_owned(),
                d["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("api".to_owned(), "reconciled".to_owned()),
            ("cart".to_owned(), "open".to_owned()),
            ("web".to_owned(), "reconciled".to_owned()),
        ])
    );
    let api_drift = drifts
        .iter()
        .find(|d| d["resource"]["name"] == "api")
        .context("api's drift")?;
    assert_eq!(api_drift["opened_by"], common::ALICE, "{api_drift}");
    assert_eq!(api_drift["closed_by"]["audit_id"], json!(api.sync.id()));

    // who-changed asks either replica and hears the same.
    let mut heard = Vec::new();
    for svc in [&a, &b] {
        let run = common::run(
            &[
                "who-changed",
                "deploy/api",
                "-n",
                "shop",
                "--server",
                &svc.base,
                "--output",
                "json",
            ],
            None,
        )?;
        ensure!(run.code == 0, "who-changed --server: {}", run.stderr);
        heard.push(run.stdout);
    }
    assert_eq!(heard[0], heard[1]);
    assert!(heard[0].contains(&api.edit.id()), "{}", heard[0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_replicas_store_a_request_once_and_close_its_drift_once() -> Result<()> {
    let (a, b) = two_replicas("race")?;
    let s = story("shop", "api", recent_base());
    post_events(&a, &[&s.create]).await?;
    // Both replicas get the same edit at once, then the same sync.
    for e in [&s.edit, &s.sync] {
        let batch = [e];
        let (x, y) = tokio::join!(post_events(&a, &batch), post_events(&b, &batch));
        x?;
        y?;
    }
    let (changes, drifts) = answers(&b).await?;
    let ids: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["audit_id"].as_str())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "no request stored twice: {ids:?}");
    assert!(ids.contains(&s.edit.id().as_str()), "{ids:?}");
    assert_eq!(
        drifts.len(),
        1,
        "one drift, whichever replica opened it: {drifts:#?}"
    );
    assert_eq!(drifts[0]["state"], "reconciled", "{:#}", drifts[0]);
    assert_eq!(drifts[0]["closed_by"]["audit_id"], json!(s.sync.id()));
    assert_eq!(drifts[0]["audit_ids"], json!([s.edit.id()]));
    assert_eq!(answers(&a).await?, (changes, drifts));
    Ok(())
}

/// A request a replica has stored already (here: sent to it again) leaves
/// nothing to write. Its batch must still end: until it does, the object's
/// lock stays with that replica, and every other replica waits on the
/// object for good (the bound below is far past any lock wait).
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_request_leaves_its_object_unlocked() -> Result<()> {
    let (a, b) = two_replicas("repeat")?;
    let s = story("shop", "api", recent_base());
    post_events(&a, &[&s.create]).await?;
    post_events(&a, &[&s.edit]).await?;
    post_events(&a, &[&s.edit]).await?;
    let bound = std::time::Duration::from_secs(60);
    tokio::time::timeout(bound, post_events(&b, &[&s.sync]))
        .await
        .map_err(|_| {
            anyhow!("replica b waited {bound:?} on the object replica a locked for the repeat")
        })??;
    let (changes, drifts) = answers(&b).await?;
    assert_eq!(changes.len(), 3, "create, edit, sync: {changes:#?}");
    assert_eq!(drifts.len(), 1, "{drifts:#?}");
    assert_eq!(drifts[0]["state"], "reconciled", "{:#}", drifts[0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accept_on_one_replica_closes_the_drift_another_opened() -> Result<()> {
    let (a, b) = two_replicas("accept")?;
    let s = story("shop", "api", recent_base());
    post_events(&a, &[&s.create]).await?;
    post_events(&a, &[&s.edit]).await?;
    let drifts = all(&b, "/api/v1/drifts?state=open").await?;
    let id = drifts
        .first()
        .and_then(|d| d["id"].as_str())
        .context("the open drift, seen from the other replica")?
        .to_owned();
    let accepted = common::post_json(
        &b,
        &format!("/api/v1/drifts/{id}/accept"),
        &json!({"by": "bob@example.com", "reason": "hotfix, in Git next"}),
    )
    .await?;
    assert_eq!(accepted.status, 200, "{}", accepted.json);
    // The sync that follows finds no open drift on either replica.
    post_events(&a, &[&s.sync]).await?;
    let d = get_ok(&a, &format!("/api/v1/drifts/{id}")).await?;
    assert_eq!(d["state"], "accepted", "{d}");
    assert_eq!(d["closed_by"]["actor"], "bob@example.com", "{d}");
    let again = common::post_json(
        &a,
        &format!("/api/v1/drifts/{id}/accept"),
        &json!({"by": "carol@example.com", "reason": "again"}),
    )
    .await?;
    assert_eq!(again.status, 409, "{}", again.json);
    Ok(())
}

// ---------------------------------------------------------------------------
// Three replicas in one consumer group on a topic of six partitions.

const PARTITIONS: i32 = 6;
const RESOURCES: usize = 30;
const PHASES: usize = 5;

/// One resource's timeline, phase by phase (`None`: nothing that phase),
/// in one of three shapes: edit then sync (one drift, reconciled), then an
/// edit again that stays open; edit, a second person's edit (joined), sync;
/// or an edit left open.
fn timeline(i: usize, base: jiff::Timestamp) -> Vec<Option<Ev>> {
    use crate::history::{Deploy, deploy_uri};
    let name: &'static str = Box::leak(format!("svc-{i}").into_boxed_str());
    let at = |phase: usize| base + secs(phase as f64 * 60.0 + i as f64 * 0.01);
    let created = Deploy::new("shop", name);
    let create = Ev::at(
        "create",
        "/apis/apps/v1/namespaces/shop/deployments?fieldManager=argocd-controller",
        at(0),
    )
    .by_argocd()
    .named(name)
    .bodies(created.manifest(), created.object());
    let mut rv = 50_000;
    let mut write = |prev: &Deploy, replicas: u64, phase: usize, by: Option<&str>| {
        rv += 7;
        let mut d = prev.next(rv);
        d.replicas = replicas;
        let (manager, ev) = match by {
            Some(user) => (
                "kubectl-edit",
                Ev::at(
                    "patch",
                    &deploy_uri("shop", name, "fieldManager=kubectl-edit"),
                    at(phase),
                )
                .by(user, &["devs", "system:authenticated"]),
            ),
            None => (
                "argocd-controller",
                Ev::at(
                    "patch",
                    &deploy_uri("shop", name, "fieldManager=argocd-controller"),
                    at(phase),
                )
                .by_argocd(),
            ),
        };
        if !d.managers.contains(&manager) {
            d.managers.push(manager);
        }
        let ev = ev.bodies(json!({"spec": {"replicas": replicas}}), d.object());
        (d, ev)
    };
    let (d1, edit) = write(&created, 5, 1, Some(common::ALICE));
    match i % 3 {
        0 => {
            let (d2, sync) = write(&d1, 3, 2, None);
            let (_, again) = write(&d2, 4, 4, Some("bob@example.com"));
            vec![Some(create), Some(edit), Some(sync), None, Some(again)]
        }
        1 => {
            let (d2, join) = write(&d1, 7, 2, Some("bob@example.com"));
            let (_, sync) = write(&d2, 3, 3, None);
            vec![Some(create), Some(edit), Some(join), Some(sync), None]
        }
        _ => vec![Some(create), Some(edit), None, None, None],
    }
}

fn kafka_config(url: &str, topic: &str, window: &str) -> String {
    format!(
        "{}sources:\n  kafka:\n    brokers: \"{}\"\n    topics: [\"{topic}\"]\n    group_id: \"dw-{topic}\"\n{window}",
        pg_config(url),
        crate::kafka::broker()
    )
}

/// How many partitions `/readyz` says a replica owns.
fn owned(svc: &Service) -> usize {
    let Ok(text) = common::blocking_get(&svc.url("/readyz")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("kafka: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What one run of the stream did, and what one replica alone does with it.
struct ScaleRun {
    replicas: Vec<Service>,
    want: (Vec<Value>, Vec<Value>),
}

/// Three replicas consume the stream; the first is SIGKILLed after phase 1
/// and a fourth joins after phase 3. Returns once the replicas stored as
/// many changes as one replica's `replay` of the same events, in produce
/// order, did.
fn scale_run(window: &str) -> Result<ScaleRun> {
    use rdkafka::producer::{BaseRecord, Producer};
    let url = database("kafka")?;
    let topic = crate::kafka::topic("audit-scale", PARTITIONS as u32)?;
    let config = kafka_config(&url, &topic, window);
    let mut replicas = vec![
        Service::start(Some(&config))?,
        Service::start(Some(&config))?,
        Service::start(Some(&config))?,
    ];
    common::wait_until(
        std::time::Duration::from_secs(60),
        || "every replica owning partitions".to_owned(),
        || replicas.iter().all(|r| owned(r) > 0).then_some(()),
    )?;
    // Recent event times: the replicas record no receive time beside them.
    let base = jiff::Timestamp::now() - secs(5.0 * 60.0);
    let timelines: Vec<Vec<Option<Ev>>> = (0..RESOURCES).map(|i| timeline(i, base)).collect();
    let producer = crate::kafka::producer()?;
    let mut sent: Vec<Value> = Vec::new();
    for phase in 0..PHASES {
        for (i, t) in timelines.iter().enumerate() {
            let Some(ev) = &t[phase] else { continue };
            let payload = ev.0.to_string();
            // One resource's events go to a different partition each phase.
            let partition = ((i + phase) % PARTITIONS as usize) as i32;
            producer
                .send(
                    BaseRecord::<(), _>::to(&topic)
                        .partition(partition)
                        .payload(&payload),
                )
                .map_err(|(e, _)| e)?;
            sent.push(ev.0.clone());
        }
        producer.flush(std::time::Duration::from_secs(20))?;
        match phase {
            // SIGKILL: its partitions wait for the group to notice.
            1 => {
                let _ = replicas[0].child.kill();
            }
            3 => replicas.push(Service::start(Some(&config))?),
            _ => {}
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    drop(replicas.remove(0));
    let want = replay_alone(&sent)?;
    let stored = || -> Option<Vec<Value>> {
        let page = common::blocking_get(&replicas[0].url("/api/v1/changes?limit=1000")).ok()?;
        let page: Value = serde_json::from_str(&page).ok()?;
        page["items"].as_array().cloned()
    };
    let waited = common::wait_until(
        std::time::Duration::from_secs(180),
        || format!("{} changes stored by the replicas", want.0.len()),
        || stored().filter(|items| items.len() >= want.0.len()),
    );
    if let Err(e) = waited {
        let ids = |items: &[Value]| -> std::collections::BTreeSet<String> {
            items
                .iter()
                .filter_map(|c| c["audit_id"].as_str().map(str::to_owned))
                .collect()
        };
        let have = ids(&stored().unwrap_or_default());
        let missing: Vec<String> = ids(&want.0).difference(&have).cloned().collect();
        bail!(
            "{e}; missing {missing:?}; replicas: {:#?}",
            diagnose(&replicas)
        );
    }
    Ok(ScaleRun { replicas, want })
}

/// What each replica says of its partitions, its Kafka metrics and its
/// warnings: for a failure message.
fn diagnose(replicas: &[Service]) -> Vec<String> {
    replicas
        .iter()
        .map(|r| {
            let ready = common::blocking_get(&r.url("/readyz")).unwrap_or_default();
            let metrics = common::blocking_get(&r.url("/metrics")).unwrap_or_default();
            let kafka: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("driftwatch_kafka") || l.starts_with("driftwatch_ingest"))
                .collect();
            let logs = [r.logs_with("WARN"), r.logs_with("ERROR")].concat();
            format!("{ready}\n{}\n{}", kafka.join("\n"), logs.join("\n"))
        })
        .collect()
}

/// One replica alone: `replay` of `events` into SQLite, then asked.
fn replay_alone(events: &[Value]) -> Result<(Vec<Value>, Vec<Value>)> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.jsonl");
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    std::fs::write(&log, lines.join("\n") + "\n")?;
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, ARGOCD_CONFIG)?;
    let data = dir.path().join("data");
    let path = |p: &std::path::Path| p.to_str().map(str::to_owned).context("utf-8 path");
    let replay = common::run(
        &[
            "replay",
            "--config",
            &path(&cfg)?,
            "--data-dir",
            &path(&data)?,
            &path(&log)?,
        ],
        None,
    )?;
    ensure!(replay.code == 0, "replay: {}", replay.stderr);
    let alone = Service::start_in(dir, Some(ARGOCD_CONFIG))?;
    common::block_on(answers(&alone))
}

#[test]
fn three_replicas_one_killed_one_added_end_as_one_replica_would() -> Result<()> {
    let run = scale_run("    reorder_window: 30s\n")?;
    let want = &run.want;
    for (n, r) in run.replicas.iter().enumerate() {
        let got = common::block_on(answers(r))?;
        ensure!(
            got.0 == want.0,
            "replica {n}: changes differ from one replica's replay ({} vs {}):\n{}",
            got.0.len(),
            want.0.len(),
            first_difference(&got.0, &want.0)
        );
        ensure!(
            got.1 == want.1,
            "replica {n}: drifts differ from one replica's replay:\n{}",
            first_difference(&got.1, &want.1)
        );
    }
    let states: BTreeMap<String, usize> = want.1.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d["state"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
        m
    });
    assert_eq!(
        states,
        BTreeMap::from([("open".to_owned(), 20), ("reconciled".to_owned(), 20)]),
        "the reference itself: {states:?}"
    );
    Ok(())
}

fn first_difference(got: &[Value], want: &[Value]) -> String {
    let differ = got.iter().zip(want).filter(|(g, w)| g != w).count();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            return format!("{differ} items differ; the first, item {i}:\n{g:#}\nvs\n{w:#}");
        }
    }
    format!("lengths {} vs {}", got.len(), want.len())
}

#[test]
fn retention_on_postgres_deletes_old_history_and_keeps_open_drifts() -> Result<()> {
    let url = database("retention")?;
    // Old event times kept as they are (no receive time beside them), and
    // history kept long at first.
    let config = |retention: &str| {
        format!(
            "{}server:\n  max_clock_skew: 3650d\n",
            pg_config(&url).replace(
                "history:\n",
                &format!("history:\n  retention: {retention}\n")
            )
        )
    };
    let old = story("shop", "legacy", "2020-03-14T09:26:53.589793Z".parse()?);
    let stale = story("shop", "stale", "2020-03-15T09:26:53.589793Z".parse()?);
    let recent = story("shop", "api", jiff::Timestamp::now() - secs(900.0));
    let first = Service::start(Some(&config("36500d")))?;
    common::block_on(async {
        for e in [
            &old.create,
            &old.edit,
            &old.sync,
            &stale.create,
            &stale.edit,
            &recent.create,
            &recent.edit,
        ] {
            post_events(&first, &[e]).await?;
        }
        assert_eq!(all(&first, "/api/v1/changes").await?.len(), 7);
        assert_eq!(all(&first, "/api/v1/drifts").await?.len(), 3);
        Ok(())
    })?;
    first.stop()?;

    let svc = Service::start(Some(&config("1d")))?;
    let changes = common::wait_until(
        std::time::Duration::from_secs(30),
        || "retention to delete the 2020 changes".to_owned(),
        || {
            let changes = common::block_on(all(&svc, "/api/v1/changes")).ok()?;
            (changes.len() == 2).then_some(changes)
        },
    )?;
    let ids: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["audit_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![recent.edit.id().as_str(), recent.create.id().as_str()]
    );
    let drifts = common::block_on(all(&svc, "/api/v1/drifts"))?;
    let names: Vec<(&str, &str)> = drifts
        .iter()
        .map(|d| {
            (
                d["resource"]["name"].as_str().unwrap_or(""),
                d["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // The drift closed in 2020 is gone; the one open since 2020 stays.
    assert_eq!(
        names,
        vec![("api", "open"), ("stale", "open")],
        "{drifts:#?}"
    );
    Ok(())
}

/// A server of this test's own (the others share one), stopped when dropped.
struct OwnServer(&'static str);

impl OwnServer {
    fn start(port: &'static str) -> Result<(OwnServer, String)> {
        OwnServer::start_with(port, &[])
    }

    fn start_with(
        port: &'static str,
        env: &[(&str, &std::path::Path)],
    ) -> Result<(OwnServer, String)> {
        let out = Command::new(script())
            .args(["start", port])
            .envs(env.iter().copied())
            .output()?;
        ensure!(
            out.status.success(),
            "scripts/postgres-dev-server start {port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .context("the server's URL")?
            .trim()
            .to_owned();
        Ok((OwnServer(port), url))
    }

    /// [`OwnServer::start_with`], for a test's first start: without the
    /// databases earlier runs left (a restart keeps the test's own).
    fn fresh(port: &'static str, env: &[(&str, &std::path::Path)]) -> Result<(OwnServer, String)> {
        let (server, url) = OwnServer::start_with(port, env)?;
        server.drop_earlier_databases()?;
        Ok((server, url))
    }

    /// Its data dir outlives the run, and `scripts/test` cleans only the
    /// shared server: earlier runs' databases (NAME_PID_N) go here.
    fn drop_earlier_databases(&self) -> Result<()> {
        let psql = |sql: &str| {
            Command::new(script())
                .args(["psql", self.0, "-tAc", sql])
                .output()
        };
        let out = psql("SELECT datname FROM pg_database WHERE datname ~ '_[0-9]+_[0-9]+$'")?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for db in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
        {
            let dropped = psql(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))?;
            ensure!(
                dropped.status.success(),
                "{}",
                String::from_utf8_lossy(&dropped.stderr)
            );
        }
        Ok(())
    }

    fn stop(&self) -> Result<()> {
        let out = Command::new(script()).args(["stop", self.0]).output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_outage_refuses_batches_until_the_server_is_back() -> Result<()> {
    // The real server, stopped and started again: no proxy needed.
    let (server, base) = OwnServer::fresh("15491", &[])?;
    let svc = Service::start(Some(&pg_config(&database_on(&base, "outage")?)))?;
    let s = story("shop", "api", recent_base());
    post_events(&svc, &[&s.create]).await?;

    server.stop()?;
    let list = common::event_list([s.edit.item()].into_iter());
    let refused = common::post_json(&svc, "/audit/webhook", &list).await?;
    assert_eq!(refused.status, 503, "{}", refused.json);
    assert!(
        refused.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("history store")),
        "{}",
        refused.json
    );
    let (code, ready) = common::get_text(&svc, "/readyz").await?;
    assert_eq!(code, 503, "{ready}");

    let (_restarted, _) = OwnServer::start("15491")?;
    // The sender retries; the first try after the restart may meet the
    // dead connection and fail, and the store connects again.
    let mut tries = 0;
    loop {
        let answer = common::post_json(&svc, "/audit/webhook", &list).await?;
        if answer.status == 200 {
            break;
        }
        tries += 1;
        ensure!(
            tries < 60,
            "still refused after the restart: {}",
            answer.json
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let changes = all(&svc, "/api/v1/changes").await?;
    let ids: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["audit_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![s.edit.id().as_str(), s.create.id().as_str()],
        "each once"
    );
    let (code, ready) = common::get_text(&svc, "/readyz").await?;
    assert_eq!(code, 200, "{ready}");
    Ok(())
}

// ---------------------------------------------------------------------------
// TLS to the server.

/// A CA, the server's certificate for 127.0.0.1, a client certificate for
/// the role driftwatch, and another CA that signed neither.
fn pg_pki() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let ca_of = |cn: &str| -> Result<rcgen::CertifiedIssuer<'static, rcgen::KeyPair>> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        Ok(rcgen::CertifiedIssuer::self_signed(
            params,
            rcgen::KeyPair::generate()?,
        )?)
    };
    let ca = ca_of("driftwatch test PostgreSQL CA")?;
    std::fs::write(dir.path().join("ca.crt"), ca.pem())?;
    std::fs::write(dir.path().join("rogue-ca.crt"), ca_of("another CA")?.pem())?;
    let issue = |sans: Vec<String>, cn: &str, usage, name: &str| -> Result<()> {
        let mut params = rcgen::CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem())?;
        std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())?;
        Ok(())
    };
    let server_auth = rcgen::ExtendedKeyUsagePurpose::ServerAuth;
    issue(
        vec!["127.0.0.1".to_owned()],
        "127.0.0.1",
        server_auth,
        "server",
    )?;
    let client_auth = rcgen::ExtendedKeyUsagePurpose::ClientAuth;
    issue(Vec::new(), "driftwatch", client_auth, "client")?;
    Ok(dir)
}

/// `pg_config` with `history.postgres.tls` lines.
fn tls_config(url: &str, tls: &[(&str, &std::path::Path)]) -> String {
    let mut yaml = pg_config(url);
    if !tls.is_empty() {
        yaml.push_str("    tls:\n");
    }
    for (key, path) in tls {
        yaml.push_str(&format!("      {key}: \"{}\"\n", path.display()));
    }
    yaml
}

/// A server that takes TLS only, and client certificates for the role
/// driftwatch: the history is stored over TLS with the CA and the client
/// certificate; no CA, another CA, or no client certificate is refused at
/// start with the reason.
#[test]
fn postgres_over_tls_verifies_the_server_and_presents_a_client_certificate() -> Result<()> {
    let pki = pg_pki()?;
    let file = |name: &str| pki.path().join(name);
    // A server an interrupted run left up has that run's certificates.
    Command::new(script()).args(["stop", "15492"]).output()?;
    let (_server, _) = OwnServer::fresh("15492", &[("POSTGRES_DEV_SERVER_TLS_DIR", pki.path())])?;
    let db = format!("tls_{}_0", std::process::id());
    let out = Command::new(script())
        .args([
            "psql",
            "15492",
            "-c",
            &format!("CREATE DATABASE {db} OWNER driftwatch"),
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("postgres://driftwatch@127.0.0.1:15492/{db}");
    let (ca, rogue) = (file("ca.crt"), file("rogue-ca.crt"));
    let (cert, key) = (file("client.crt"), file("client.key"));

    let refused = |tls: &[(&str, &std::path::Path)], why: &str| -> Result<()> {
        let err = match Service::start(Some(&tls_config(&url, tls))) {
            Ok(_) => bail!("started with {tls:?}: expected a refusal ({why})"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(err.contains("history store"), "{err}");
        ensure!(err.contains(why), "expected {why:?} in: {err}");
        Ok(())
    };
    // In the clear: the server has no line for it.
    refused(&[], "no encryption")?;
    refused(
        &[
            ("ca_file", &rogue),
            ("client_cert_file", &cert),
            ("client_key_file", &key),
        ],
        "invalid peer certificate: UnknownIssuer",
    )?;
    refused(&[("ca_file", &ca)], "requires a valid client certificate")?;

    let tls = [
        ("ca_file", &ca),
        ("client_cert_file", &cert),
        ("client_key_file", &key),
    ];
    let tls: Vec<(&str, &std::path::Path)> = tls.iter().map(|(k, p)| (*k, p.as_path())).collect();
    let svc = Service::start(Some(&tls_config(&url, &tls)))?;
    let s = story("shop", "api", recent_base());
    common::block_on(async {
        post_events(&svc, &[&s.create, &s.edit]).await?;
        let changes = all(&svc, "/api/v1/changes").await?;
        let ids: Vec<&str> = changes
            .iter()
            .filter_map(|c| c["audit_id"].as_str())
            .collect();
        assert_eq!(ids, vec![s.edit.id().as_str(), s.create.id().as_str()]);
        Ok::<_, anyhow::Error>(())
    })?;
    // The server saw those connections encrypted, as the certificate's user.
    let out = Command::new(script())
        .args([
            "psql",
            "15492",
            "-tAc",
            &format!(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE ssl AND client_dn = '/CN=driftwatch' AND usename = 'driftwatch' AND datname = '{db}'"
            ),
        ])
        .output()?;
    let n: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("a count")?;
    assert!(
        n >= 1,
        "no TLS connection of driftwatch's: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// A slow server.

/// A TCP proxy on loopback in front of the real PostgreSQL server. It
/// forwards bytes both ways and, while a delay is set, holds each chunk
/// the server sends for that long. It exists because a real server will
/// not be slow on demand; every answer is still the server's own.
struct SlowProxy {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    delayed: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl SlowProxy {
    fn start(upstream: &str) -> Result<SlowProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delayed = Arc::new(AtomicUsize::new(0));
        let (upstream, d, n) = (
            upstream.to_owned(),
            Arc::clone(&delay_ms),
            Arc::clone(&delayed),
        );
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, d, n) = (upstream.clone(), Arc::clone(&d), Arc::clone(&n));
                tokio::spawn(async move {
                    if let Ok(server) = tokio::net::TcpStream::connect(&upstream).await {
                        relay(client, server, d, n).await;
                    }
                });
            }
        });
        Ok(SlowProxy {
            port,
            delay_ms,
            delayed,
            _runtime: runtime,
        })
    }

    fn slow(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// Client to server as it comes; server to client, each chunk held for the
/// delay set at the time.
async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    delay_ms: Arc<AtomicU64>,
    delayed: Arc<AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let ms = delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            delayed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = client_write.shutdown().await;
    up.abort();
}

/// Six batches posted at once while every answer of the server is held
/// 250 ms: each batch answered 200 is stored, any other answer is a 503
/// whose retry is stored once the server is quick again, no request is
/// stored twice, and the listener answers `/healthz` meanwhile.
#[test]
fn a_slow_postgres_server_slows_batches_and_loses_none() -> Result<()> {
    let url = database("slow")?;
    // The proxy runs on a runtime of its own, outside the test's.
    let proxy = SlowProxy::start("127.0.0.1:15432")?;
    let via = url.replacen(":15432/", &format!(":{}/", proxy.port), 1);
    ensure!(
        via != url,
        "the test server's URL is not on port 15432: {url}"
    );
    let svc = Service::start(Some(&pg_config(&via)))?;
    const NAMES: [&str; 6] = ["slow-0", "slow-1", "slow-2", "slow-3", "slow-4", "slow-5"];
    let base = recent_base();
    let stories: Vec<Story> = NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| story("shop", name, base + secs(i as f64)))
        .collect();
    common::block_on(slowed(&svc, &proxy, &stories))
}

async fn slowed(svc: &Service, proxy: &SlowProxy, stories: &[Story]) -> Result<()> {
    for s in stories {
        post_events(svc, &[&s.create]).await?;
    }

    proxy.slow(std::time::Duration::from_millis(250));
    let batches: Vec<Value> = stories
        .iter()
        .map(|s| common::event_list([s.edit.item()]))
        .collect();
    let posts = batches
        .iter()
        .map(|b| common::post_json(svc, "/audit/webhook", b));
    let (answers, health) = tokio::join!(
        futures_util::future::join_all(posts),
        common::get_text(svc, "/healthz")
    );
    assert_eq!(
        health?.0, 200,
        "the listener answers while the store is slow"
    );
    let mut retry = Vec::new();
    for (s, answer) in stories.iter().zip(answers) {
        let answer = answer?;
        match answer.status {
            200 => {}
            503 => retry.push(s),
            other => bail!("{other} for {}: {}", s.edit.id(), answer.json),
        }
    }
    ensure!(
        proxy.delayed.load(Ordering::SeqCst) > 0,
        "the proxy held no answer: the test did not test a slow server"
    );

    eprintln!(
        "slow server: {} of {} batches answered 503 and were retried; {} answers of the server held",
        retry.len(),
        stories.len(),
        proxy.delayed.load(Ordering::SeqCst)
    );
    proxy.slow(std::time::Duration::ZERO);
    for s in &retry {
        post_events(svc, &[&s.edit]).await?;
    }
    let changes = all(svc, "/api/v1/changes").await?;
    let mut ids: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["audit_id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut want: Vec<String> = stories
        .iter()
        .flat_map(|s| [s.create.id(), s.edit.id()])
        .collect();
    want.sort_unstable();
    assert_eq!(
        ids,
        want,
        "every create and edit, once ({} retried)",
        retry.len()
    );
    Ok(())
}
