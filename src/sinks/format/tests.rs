//! Every format, field by field; OCSF against the schema subset in
//! `tests/fixtures/ocsf`.

use serde_json::{Value, json};

use super::*;
use crate::model::{DriftState, Severity};
use crate::sinks::Batch;
use crate::sinks::shape::{AlertKind, OwnedFinding, Shaper};
use crate::sinks::testing::{at, change, exec, reconciled};

fn json_of(format: Format, f: &OwnedFinding) -> Value {
    let mut out = Vec::new();
    render_finding(format, &f.view(), &mut out);
    serde_json::from_slice(&out).unwrap()
}

fn alert_json(format: Format, a: &Alert) -> Value {
    let mut out = Vec::new();
    render_alert(format, a, &mut out);
    assert!(!out.contains(&b'\n'), "one line");
    serde_json::from_slice(&out).unwrap()
}

/// One alert of each kind, from an edit loop, an exec and a reconcile.
fn alerts() -> Vec<Alert> {
    let mut s = Shaper::new(std::time::Duration::from_secs(300), 10);
    let fs = [
        change(0, "spec.replicas", Severity::High),
        change(
            1,
            "spec.template.spec.containers[name=app].image",
            Severity::High,
        ),
        exec(),
    ];
    let views: Vec<_> = fs.iter().map(OwnedFinding::view).collect();
    let closed = [reconciled(60)];
    let mut out = s.offer(
        &Batch {
            findings: &views,
            closed: &closed,
        },
        &at(60),
    );
    let mut accepted = reconciled(90);
    accepted.id = "f-other".into();
    accepted.state = DriftState::Accepted;
    accepted.by = "bob".into();
    accepted.pipeline = None;
    accepted.verification = None;
    accepted.reason = Some("hotfix | kept = on purpose\nsee INC-1".into());
    out.extend(s.offer(
        &Batch {
            findings: &[],
            closed: &[accepted],
        },
        &at(90),
    ));
    let got: Vec<AlertKind> = out.iter().map(|a| a.kind).collect();
    assert_eq!(
        got,
        [
            AlertKind::Opened,
            AlertKind::Single,
            AlertKind::Updated,
            AlertKind::Closed,
            AlertKind::Closed
        ]
    );
    out
}

#[test]
fn format_spellings_round_trip() {
    for f in Format::ALL {
        assert_eq!(Format::parse(f.as_str()), Some(f));
    }
    assert_eq!(Format::parse("xml"), None);
    assert!(!Format::Cef.is_json() && Format::Ocsf.is_json());
    assert_eq!(Format::default(), Format::Native);
}

#[test]
fn native_finding_is_the_finding_schema() {
    let f = change(0, "spec.replicas", Severity::High);
    let v = json_of(Format::Native, &f);
    assert_eq!(v, serde_json::to_value(f.view()).unwrap());
    assert_eq!(v["schema"], "driftwatch.finding/v1");
}

#[test]
fn native_alert_fields() {
    let all = alerts();
    let v = alert_json(Format::Native, &all[2]);
    assert_eq!(v["schema"], ALERT_SCHEMA);
    assert_eq!(v["kind"], "updated");
    assert_eq!(v["drift_id"], "f-0");
    assert_eq!(v["state"], "open");
    assert_eq!(v["folded"], 1);
    assert_eq!(
        v["paths"],
        json!(["spec.template.spec.containers[name=app].image"])
    );
    assert_eq!(v["severity"], "high");
    assert_eq!(v["finding"]["id"], "f-1");
    assert_eq!(v["finding"]["schema"], "driftwatch.finding/v1");
    assert_eq!(v["closed"], Value::Null);
    let c = alert_json(Format::Native, &all[3]);
    assert_eq!(c["kind"], "closed");
    assert_eq!(c["closed"]["state"], "reconciled");
    assert_eq!(c["closed"]["verification"], "verified");
    assert_eq!(c["closed"]["pipeline"], "argocd");
    assert_eq!(c["finding"], Value::Null);
}

// ---- OCSF ----

fn schema() -> Value {
    driftwatch_testkit::ocsf::schema().unwrap()
}

fn ocsf_problems(schema: &Value, v: &Value, has_call: bool) -> Vec<String> {
    driftwatch_testkit::ocsf::problems(schema, v, has_call)
}

#[test]
fn ocsf_has_every_required_attribute_of_both_classes() {
    let schema = schema();
    assert_eq!(schema["version"], OCSF_VERSION);
    for f in [
        change(0, "spec.replicas", Severity::High),
        change(3, "a", Severity::Low),
        exec(),
    ] {
        let v = json_of(Format::Ocsf, &f);
        assert_eq!(
            ocsf_problems(&schema, &v, true),
            Vec::<String>::new(),
            "{}",
            f.record.id
        );
    }
    for a in alerts() {
        let v = alert_json(Format::Ocsf, &a);
        let has_call = a.kind != AlertKind::Closed;
        assert_eq!(
            ocsf_problems(&schema, &v, has_call),
            Vec::<String>::new(),
            "{:?}",
            a.kind
        );
    }
}

#[test]
fn ocsf_fields() {
    let all = alerts();
    let opened = alert_json(Format::Ocsf, &all[0]);
    assert_eq!(opened["activity_id"], 1);
    assert_eq!(opened["severity_id"], 4);
    assert_eq!(opened["status_id"], 1);
    assert_eq!(opened["status"], "New");
    assert_eq!(opened["time"], 1_700_000_000_000i64);
    assert_eq!(opened["metadata"]["version"], "1.3.0");
    assert_eq!(opened["metadata"]["product"]["name"], "driftwatch");
    assert_eq!(opened["finding_info"]["uid"], "f-0");
    assert_eq!(
        opened["finding_info"]["types"],
        json!(["out_of_band_change"])
    );
    let e = &opened["evidences"][0];
    assert_eq!(e["actor"]["user"]["name"], "alice@example.com");
    assert_eq!(e["actor"]["user"]["uid"], "u-123");
    assert_eq!(e["actor"]["user"]["groups"][0]["name"], "devs");
    assert_eq!(e["api"]["operation"], "patch");
    assert_eq!(e["api"]["request"]["uid"], "audit-0");
    assert_eq!(e["src_endpoint"]["ip"], "10.0.0.7");
    assert!(
        e["http_request"]["user_agent"]
            .as_str()
            .unwrap()
            .starts_with("kubectl/")
    );
    let r = &opened["resources"][0];
    assert_eq!(
        (&r["name"], &r["namespace"], &r["type"]),
        (&json!("api"), &json!("shop"), &json!("deployments"))
    );
    assert_eq!(r["cloud_partition"], "prod");
    let single = alert_json(Format::Ocsf, &all[1]);
    assert_eq!(single["evidences"][0]["actor"]["invoked_by"], "mallory");
    let updated = alert_json(Format::Ocsf, &all[2]);
    assert_eq!(
        (updated["activity_id"].clone(), updated["status_id"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(
        updated["finding_info"]["uid"], "f-0",
        "one finding across the drift"
    );
    let closed = alert_json(Format::Ocsf, &all[3]);
    assert_eq!(
        (closed["activity_id"].clone(), closed["status"].clone()),
        (json!(3), json!("Resolved"))
    );
    let accepted = alert_json(Format::Ocsf, &all[4]);
    assert_eq!(accepted["status"], "Suppressed");
    assert_eq!(accepted["evidences"][0]["actor"]["user"]["name"], "bob");
}

// ---- ECS ----

#[test]
fn ecs_fields() {
    let v = json_of(Format::Ecs, &change(0, "spec.replicas", Severity::High));
    assert_eq!(v["@timestamp"], "2023-11-14T22:13:20.000000Z");
    assert_eq!(v["event"]["kind"], "alert");
    assert_eq!(v["event"]["category"], json!(["configuration"]));
    assert_eq!(v["event"]["type"], json!(["change"]));
    assert_eq!(v["event"]["action"], "patch");
    assert_eq!(v["event"]["severity"], 73);
    assert_eq!(v["event"]["dataset"], "driftwatch.finding");
    assert_eq!(v["event"]["id"], "f-0");
    assert_eq!(v["user"]["name"], "alice@example.com");
    assert_eq!(v["user"]["id"], "u-123");
    assert_eq!(
        v["user"]["group"]["name"],
        json!(["devs", "system:authenticated"])
    );
    assert!(
        v["user_agent"]["original"]
            .as_str()
            .unwrap()
            .starts_with("kubectl/")
    );
    assert_eq!(v["source"]["ip"], "10.0.0.7");
    let o = &v["orchestrator"];
    assert_eq!(o["type"], "kubernetes");
    assert_eq!(o["cluster"]["name"], "prod");
    assert_eq!(o["namespace"], "shop");
    assert_eq!(o["api_version"], "apps/v1");
    assert_eq!(
        o["resource"],
        json!({"type": "deployments", "name": "api", "id": "4f1c-uid"})
    );
    assert_eq!(v["rule"]["name"], "out_of_band_change");
    assert_eq!(v["driftwatch"]["drift"]["id"], "f-0");
    assert_eq!(v["driftwatch"]["changes"][0]["path"], "spec.replicas");
    let ex = json_of(Format::Ecs, &exec());
    assert_eq!(ex["user"]["name"], "mallory", "who acted");
    assert_eq!(
        ex["user"]["effective"]["name"],
        "system:serviceaccount:shop:default"
    );
    assert_eq!(ex["event"]["type"], json!(["creation"]));
    let closed = alert_json(Format::Ecs, &alerts()[3]);
    assert_eq!(closed["event"]["dataset"], "driftwatch.alert");
    assert_eq!(closed["driftwatch"]["alert"]["kind"], "closed");
    assert_eq!(
        closed["user"]["name"],
        "system:serviceaccount:argocd:argocd-application-controller"
    );
}

// ---- CEF ----

fn cef(f: &OwnedFinding) -> String {
    let mut out = Vec::new();
    render_finding(Format::Cef, &f.view(), &mut out);
    String::from_utf8(out).unwrap()
}

/// Splits a CEF extension on unescaped `key=` boundaries.
fn extension(line: &str) -> Vec<(String, String)> {
    let ext = line.splitn(8, '|').nth(7).unwrap_or("");
    let mut fields = Vec::new();
    let mut rest = ext;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 1..].char_indices().peekable();
        let mut end = rest.len() - eq - 1;
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                if let Some((_, n)) = chars.next() {
                    value.push(match n {
                        'n' => '\n',
                        'r' => '\r',
                        n => n,
                    });
                }
                continue;
            }
            if c == ' ' {
                let tail = &rest[eq + 1 + i + 1..];
                let next_key = tail.split('=').next().unwrap_or("");
                if tail.contains('=')
                    && !next_key.is_empty()
                    && next_key.chars().all(|k| k.is_ascii_alphanumeric())
                {
                    end = i;
                    break;
                }
            }
            value.push(c);
        }
        fields.push((key, value));
        rest = rest.get(eq + 1 + end + 1..).unwrap_or("");
    }
    fields
}

#[test]
fn cef_fields() {
    let line = cef(&change(0, "spec.replicas", Severity::High));
    assert!(line.starts_with(&format!(
        "CEF:0|driftwatch|driftwatch|{}|out_of_band_change|Out-of-band change: deployments.apps shop/api|8|",
        env!("CARGO_PKG_VERSION")
    )), "{line}");
    let ext = extension(&line);
    let get = |k: &str| {
        ext.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("suser"), Some("alice@example.com"));
    assert_eq!(get("src"), Some("10.0.0.7"));
    assert_eq!(get("act"), Some("patch"));
    assert_eq!(get("rt"), Some("1700000000000"));
    assert_eq!(get("externalId"), Some("f-0"));
    assert_eq!(
        get("request"),
        Some("/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-edit")
    );
    assert_eq!(get("cs1Label"), Some("cluster"));
    assert_eq!(get("cs1"), Some("prod"));
    assert_eq!(get("cs3"), Some("deployments.apps shop/api"));
    assert_eq!(get("cs4Label"), Some("driftId"));
    assert_eq!(get("cs5"), Some("spec.replicas"));
}

#[test]
fn cef_escapes_hostile_values() {
    let mut f = change(0, "data.a=b c=d", Severity::Critical);
    f.record.resource.name = Some("x|y\\z\nCEF:0|forged".into());
    f.record.actor.username = "eve act=delete\\".into();
    f.record.reasons = vec!["line1\nline2\r=".into()];
    let line = cef(&f);
    assert_eq!(line.lines().count(), 1, "no line break survives: {line}");
    let header: Vec<&str> = {
        // Split on unescaped pipes only.
        let mut parts = Vec::new();
        let (mut start, mut escaped) = (0, false);
        for (i, c) in line.char_indices() {
            match (c, escaped) {
                ('\\', false) => escaped = true,
                ('|', false) if parts.len() < 7 => {
                    parts.push(&line[start..i]);
                    start = i + 1;
                }
                _ => escaped = false,
            }
        }
        parts
    };
    assert_eq!(header.len(), 7);
    assert_eq!(
        header[5],
        "Out-of-band change: deployments.apps shop/x\\|y\\\\z CEF:0\\|forged"
    );
    assert_eq!(header[6], "10");
    let ext = extension(&line);
    let get = |k: &str| {
        ext.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.to_owned())
    };
    assert_eq!(get("suser").as_deref(), Some("eve act=delete\\"));
    assert_eq!(
        ext.iter().filter(|(k, _)| k == "act").count(),
        1,
        "no forged key"
    );
    assert_eq!(get("msg").as_deref(), Some("line1\nline2\r="));
    assert_eq!(get("cs5").as_deref(), Some("data.a=b c=d"));
}

// ---- text ----

#[test]
fn alert_text_says_who_what_where_and_how_to_see_history() {
    let all = alerts();
    let t = alert_text(&all[0]);
    assert!(t.contains("[HIGH]"), "{t}");
    assert!(t.contains("deployments.apps shop/api"), "{t}");
    assert!(
        t.contains("`alice@example.com` ran `patch` with kubectl"),
        "{t}"
    );
    assert!(t.contains("`spec.replicas`"), "{t}");
    assert!(t.contains("Drift state: open."), "{t}");
    assert!(
        t.contains("driftwatch who-changed deployments.apps/api -n shop --cluster prod"),
        "{t}"
    );
    let mut hostile = all[1].clone();
    if let Some(f) = &mut hostile.finding {
        f.record.actor.impersonated_by = None;
        f.record.actor.username = "<!channel> `x` & y".into();
    }
    let t = alert_text(&hostile);
    assert!(
        !t.contains("<!channel>") && t.contains("&lt;!channel&gt; 'x' &amp; y"),
        "{t}"
    );
    let closed = alert_text(&all[4]);
    assert!(
        closed.contains("accepted by `bob`") && closed.contains("hotfix"),
        "{closed}"
    );
    assert!(!closed.contains('\n'), "one paragraph");
}
