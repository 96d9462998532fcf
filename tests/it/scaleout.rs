//! Several replicas on one PostgreSQL history (`history.backend:
//! postgres`): a real PostgreSQL 15 server from Debian's packages on
//! loopback, started by `scripts/postgres-dev-server` (`scripts/test` starts
//! it first; a run without it starts it here), one fresh database per test.
//! Each replica is a real `driftwatch serve`.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::common::{self, ARGOCD_CONFIG, Service, get_ok, post_events};
use crate::history::{Story, recent_base, secs, story};

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
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let base = server();
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

/// Every item of a list route, page after page.
async fn all(svc: &Service, path: &str) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(c) => format!("{path}{sep}limit=50&cursor={c}"),
            None => format!("{path}{sep}limit=50"),
        };
        let page = get_ok(svc, &url).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => return Ok(items),
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
    let url = database("share")?;
    let config = pg_config(&url);
    let a = Service::start(Some(&config))?;
    let b = Service::start(Some(&config))?;
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
    let url = database("race")?;
    let config = pg_config(&url);
    let a = Service::start(Some(&config))?;
    let b = Service::start(Some(&config))?;
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

#[tokio::test(flavor = "multi_thread")]
async fn an_accept_on_one_replica_closes_the_drift_another_opened() -> Result<()> {
    let url = database("accept")?;
    let config = pg_config(&url);
    let a = Service::start(Some(&config))?;
    let b = Service::start(Some(&config))?;
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
