//! A store written in schema 3 (one wide row per change, its detail one
//! JSON text), migrated to the compact format: every row comes back from
//! every query exactly as the same changes written in the compact format
//! do, and as they were written.

use serde_json::{Value, json};

use super::*;
use crate::model::{
    Change, DriftRef, DriftState, FindingType, Impersonator, ManagedBy, Owner, RequestId, Risk,
    Severity, VerdictKind,
};
use crate::store::query::{self, Filter};
use crate::store::view::Bounds;

/// The schema-3 insert, as it was.
const LEGACY_INSERT: &str = "INSERT OR IGNORE INTO changes (dedupe_key, time, time_us, cluster,
    api_group, api_version, resource, subresource, namespace, name, uid, verb, actor, impersonator,
    client, field_manager, audit_id, verdict, pipeline, finding_type, severity, drift_id,
    changed_paths, detail, received_us)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20, ?21, ?22, ?23, ?24, ?25)";

fn legacy_row(tx: &rusqlite::Transaction<'_>, c: &ChangeRecord) {
    let detail = serde_json::to_string(&records::DetailRef::of(c)).unwrap();
    let r = &c.resource;
    let paths: Vec<&str> = c.changes.iter().map(|ch| ch.path.as_str()).collect();
    tx.execute(
        LEGACY_INSERT,
        params![
            &c.request.store_key()[..],
            c.time.text,
            c.time.us,
            c.cluster,
            r.group,
            r.version,
            r.resource,
            r.subresource,
            r.namespace_str(),
            r.name_str(),
            r.uid,
            c.verb,
            c.actor.username,
            c.actor
                .impersonated_by
                .as_ref()
                .map(|i| i.username.as_str()),
            c.actor.client,
            c.actor.field_manager,
            c.audit_id,
            c.verdict.as_str(),
            c.pipeline,
            c.finding_type.map(|t| t.as_str()),
            c.severity.map(|s| s.as_str()),
            c.drift.as_ref().map(|d| d.id.as_str()),
            paths.join("\n"),
            detail,
            c.received.as_ref().map(|t| t.us),
        ],
    )
    .unwrap();
}

/// A store at schema 3 holding `changes` and the drifts they opened.
fn legacy_store(dir: &Path, changes: &[ChangeRecord], drifts: &[DriftTransition]) {
    let mut conn = Connection::open(dir.join(DB_FILE)).unwrap();
    for sql in &schema::MIGRATIONS[..3] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 3).unwrap();
    let tx = conn.transaction().unwrap();
    for c in changes {
        legacy_row(&tx, c);
    }
    for d in drifts {
        write_drift(&tx, d).unwrap();
    }
    tx.commit().unwrap();
}

fn time(us: i64) -> Time {
    Time::from_us(us)
}

/// Changes that use every field the store keeps, in many shapes.
fn varied(n: u64) -> Vec<ChangeRecord> {
    (0..n).map(change).collect()
}

fn change(i: u64) -> ChangeRecord {
    let mut key = [0u8; STORE_KEY_LEN];
    key[..8].copy_from_slice(&((1_700_000_000_000_000 + i) ^ (1 << 63)).to_be_bytes());
    key[8..16].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    let request = RequestId::from_store_key(&key).unwrap();
    let human = i.is_multiple_of(3);
    let mut c = ChangeRecord {
        id: request.finding_id(),
        // A time in the text an event may carry (not our own form) now and then.
        time: if i.is_multiple_of(7) {
            Time::stored(
                1_700_000_000_000_000 + i as i64 * 1000,
                "2023-11-14T22:13:20Z".to_owned(),
            )
        } else {
            time(1_700_000_000_000_000 + (i as i64 % 13) * 1_000_000)
        },
        received: (i.is_multiple_of(11)).then(|| time(1_800_000_000_000_000)),
        cluster: if i.is_multiple_of(5) {
            "prod-us"
        } else {
            "prod-eu-1"
        }
        .to_owned(),
        resource: ObjectRef {
            group: if i.is_multiple_of(4) { "" } else { "apps" }.to_owned(),
            version: if i.is_multiple_of(9) { "v1beta1" } else { "v1" }.to_owned(),
            resource: if i.is_multiple_of(4) {
                "configmaps"
            } else {
                "deployments"
            }
            .to_owned(),
            subresource: (i.is_multiple_of(10)).then(|| "scale".to_owned()),
            namespace: (!i.is_multiple_of(6)).then(|| format!("team-{}", i % 3)),
            name: Some(format!("svc-{}", i % 4)),
            uid: (!i.is_multiple_of(8)).then(|| format!("6f1c2a7e-8b1d-4a51-9d0e-{:012x}", i % 4)),
        },
        verb: if i.is_multiple_of(12) {
            "delete"
        } else {
            "patch"
        }
        .to_owned(),
        audit_id: if i.is_multiple_of(2) {
            format!("{i:08x}-1b0d-4c1e-9a53-{i:012x}")
        } else {
            format!("Audit-{i}")
        },
        request_uri: format!(
            "/apis/apps/v1/namespaces/team-{}/deployments/svc-{}?fieldManager=kubectl-edit",
            i % 3,
            i % 4
        ),
        verdict: if human {
            VerdictKind::Drift
        } else {
            VerdictKind::Sanctioned
        },
        pipeline: (!human).then(|| "argocd".to_owned()),
        finding_type: human.then_some(FindingType::OutOfBandChange),
        severity: human.then_some(if i.is_multiple_of(2) {
            Severity::High
        } else {
            Severity::Critical
        }),
        reasons: if human {
            vec!["identity matches no sanctioned pipeline".to_owned()]
        } else {
            vec![]
        },
        changes: changes_of(i),
        risks: if i % 6 == 3 {
            vec![Risk {
                rule: "privileged_container".into(),
                path: "spec.template.spec.containers[name=app].securityContext.privileged"
                    .to_owned(),
                value: json!(true),
                severity: Severity::Critical,
            }]
        } else {
            vec![]
        },
        drift: human.then(|| DriftRef {
            // Finding ids (stored as bytes) and others (as text).
            id: if i.is_multiple_of(2) {
                format!("{:032x}", i % 4)
            } else {
                format!("drift-{}", i % 4)
            },
            state: Some(DriftState::Open),
        }),
        managed_by: (i % 4 == 1).then(|| ManagedBy::new("argocd", Some("shop".to_owned()))),
        owner: (i % 5 == 2).then(|| Owner {
            api_version: Some("apps/v1".to_owned()),
            kind: "Deployment".to_owned(),
            name: "api".to_owned(),
            uid: None,
        }),
        request,
        ..ChangeRecord::default()
    };
    c.actor.username = if human {
        format!("engineer{}@example.com", i % 4)
    } else {
        "system:serviceaccount:argocd:argocd-application-controller".to_owned()
    };
    c.actor.groups = vec!["system:authenticated".to_owned()];
    c.actor.user_agent = Some(
        if human {
            "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"
        } else {
            "argocd-application-controller/v2.13.1"
        }
        .to_owned(),
    );
    c.actor.client = Some(if human { "kubectl" } else { "argocd" }.to_owned());
    c.actor.source_ips = vec![format!("10.0.0.{}", i % 3)];
    c.actor.field_manager = human.then(|| "kubectl-edit".to_owned());
    c.actor.impersonated_by = (i % 9 == 3).then(|| Impersonator {
        username: "admin@example.com".to_owned(),
        groups: vec!["system:masters".to_owned()],
    });
    c.actor.uid = (i % 5 == 1).then(|| "u-1".to_owned());
    c
}

fn changes_of(i: u64) -> Vec<Change> {
    let value = |v: Value| v;
    match i % 5 {
        0 => vec![],
        1 => vec![Change {
            path: "spec.replicas".to_owned(),
            old: json!(3),
            new: json!(i),
            redacted: false,
        }],
        2 => vec![
            Change {
                path: "spec.template.spec.containers[name=app].image".to_owned(),
                old: value(json!("registry.example.com/shop/api:1.0")),
                new: json!({"long": "x".repeat(300 + i as usize)}),
                redacted: false,
            },
            Change {
                path: "data.password".to_owned(),
                old: Value::Null,
                new: Value::Null,
                redacted: true,
            },
        ],
        3 => vec![Change {
            path: "data.line\nbreak".to_owned(),
            old: json!("a"),
            new: json!(null),
            redacted: false,
        }],
        _ => vec![Change {
            path: String::new(),
            old: json!([1, 2]),
            new: json!({}),
            redacted: false,
        }],
    }
}

fn opened(changes: &[ChangeRecord]) -> Vec<DriftTransition> {
    let mut ids: Vec<&str> = changes
        .iter()
        .filter_map(|c| c.drift.as_ref().map(|d| d.id.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            DriftTransition::Opened(OpenDrift {
                id: id.to_owned(),
                cluster: "prod-eu-1".to_owned(),
                object: ObjectRef {
                    group: "apps".to_owned(),
                    resource: "deployments".to_owned(),
                    namespace: Some("team-1".to_owned()),
                    name: Some("svc-1".to_owned()),
                    ..ObjectRef::default()
                },
                opened: time(1_700_000_000_000_000),
                opened_by: "engineer0@example.com".to_owned(),
                paths: None,
                persisting_since: None,
            })
        })
        .collect()
}

fn filters() -> Vec<Filter> {
    let f = |edit: fn(&mut Filter)| {
        let mut f = Filter {
            limit: Some(1000),
            ..Filter::default()
        };
        edit(&mut f);
        f
    };
    vec![
        f(|_| {}),
        f(|f| f.namespace = Some("team-1".to_owned())),
        f(|f| f.namespace = Some("_".to_owned())),
        f(|f| f.group = Some("core".to_owned())),
        f(|f| f.cluster = Some("prod-us".to_owned())),
        f(|f| {
            f.namespace = Some("team-1".to_owned());
            f.group = Some("apps".to_owned());
            f.resource = Some("deployments".to_owned());
            f.name = Some("svc-1".to_owned());
        }),
        f(|f| f.name = Some("svc-2".to_owned())),
        f(|f| f.name = Some("no-such".to_owned())),
        f(|f| f.actor = Some("engineer0@example.com".to_owned())),
        f(|f| f.actor = Some("nobody".to_owned())),
        f(|f| f.verdict = Some("drift".to_owned())),
        f(|f| f.finding_type = Some("out_of_band_change".to_owned())),
        f(|f| f.drift = Some("drift-1".to_owned())),
        f(|f| f.drift = Some(format!("{:032x}", 2))),
        f(|f| f.field = Some("spec".to_owned())),
        f(|f| f.field = Some("data.password".to_owned())),
        f(|f| f.field = Some(String::new())),
        f(|f| f.since = Some("2023-11-14T22:13:25Z".to_owned())),
        f(|f| f.until = Some("2023-11-14T22:13:25Z".to_owned())),
        f(|f| f.limit = Some(7)),
    ]
}

/// Every page of every filter, as the API serializes them.
fn answers(dir: &Path) -> Vec<Value> {
    let conn = open_reader(dir).unwrap();
    let mut out = Vec::new();
    for f in filters() {
        let mut f = f;
        loop {
            let page = query::changes(&conn, &f, &Bounds::list(4096)).unwrap();
            out.push(serde_json::to_value(&page).unwrap());
            match page.next {
                Some(next) => f.cursor = Some(next),
                None => break,
            }
        }
        let whole = query::changes(&conn, &f, &Bounds::WHOLE).unwrap();
        out.push(serde_json::to_value(&whole).unwrap());
    }
    let drifts = query::drifts(&conn, &Filter::default(), &Bounds::list(1 << 20)).unwrap();
    out.push(serde_json::to_value(&drifts).unwrap());
    let ids = ["drift-1", "drift-3"].map(String::from);
    for id in ids.into_iter().chain((0..4).map(|i| format!("{i:032x}"))) {
        let id = id.as_str();
        out.push(serde_json::to_value(query::drift(&conn, id).unwrap()).unwrap());
        let live = query::drift_live_target(&conn, id).unwrap();
        out.push(json!(format!("{live:?}")));
    }
    out
}

#[test]
fn a_schema_3_store_reads_back_the_same_once_migrated() {
    let changes = varied(60);
    let drifts = opened(&changes);
    let old = tempfile::tempdir().unwrap();
    legacy_store(old.path(), &changes, &drifts);
    drop(Store::open(old.path()).unwrap());

    let new = tempfile::tempdir().unwrap();
    let mut store = Store::open(new.path()).unwrap();
    store.write(&changes, &drifts).unwrap();
    drop(store);

    let (migrated, compact) = (answers(old.path()), answers(new.path()));
    assert_eq!(migrated.len(), compact.len());
    for (m, c) in migrated.iter().zip(&compact) {
        assert_eq!(m, c);
    }
    // And as written: every change, whole.
    let conn = open_reader(old.path()).unwrap();
    let by_drift = Filter {
        drift: Some(format!("{:032x}", 2)),
        ..Filter::default()
    };
    let joined = query::changes(&conn, &by_drift, &Bounds::WHOLE).unwrap();
    assert_eq!(joined.items.len(), 5, "a drift id stored as bytes is found");
    let drift = query::drift(&conn, &format!("{:032x}", 2))
        .unwrap()
        .unwrap();
    assert_eq!(drift.audit_ids.len(), 5);
    let all = query::changes(&conn, &filters()[0], &Bounds::WHOLE).unwrap();
    assert_eq!(all.items.len(), changes.len());
    for item in &all.items {
        let written = changes.iter().find(|c| c.id == item.id).unwrap();
        assert_eq!(
            serde_json::to_value(item).unwrap(),
            serde_json::to_value(written).unwrap()
        );
    }
}

#[test]
fn a_migrated_store_knows_its_old_rows_and_takes_new_ones() {
    let changes = varied(20);
    let dir = tempfile::tempdir().unwrap();
    legacy_store(dir.path(), &changes[..10], &[]);
    let mut store = Store::open(dir.path()).unwrap();
    let keys: Vec<StoreKey> = changes.iter().map(|c| c.request.store_key()).collect();
    assert_eq!(store.known_keys(&keys).unwrap().len(), 10);
    let written = store.write(&changes, &[]).unwrap();
    assert_eq!(
        written,
        Written {
            inserted: 10,
            duplicates: 10
        }
    );
    drop(store);
    let conn = open_reader(dir.path()).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::MIGRATIONS.len() as i64);
    let legacy: i64 = conn
        .query_row(
            "SELECT count(*) FROM changes WHERE typeof(detail) = 'text'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        legacy, 10,
        "old rows keep their detail, new ones are compact"
    );
}
