use std::io::Write as _;

use base64::Engine as _;
use serde_json::json;

use crate::decode::{
    Arena, Decoded, RejectReason, Stage, decode_bytes, decode_bytes_in, decode_str,
};

const EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/x/configmaps/y","verb":"patch","user":{"username":"alice"},"responseStatus":{"code":200}}"#;

fn event(id: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(EV).unwrap();
    v["auditID"] = json!(id);
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn ids(d: &Decoded<'_>) -> Vec<String> {
    d.events
        .iter()
        .map(|e| e.event.audit_id().to_owned())
        .collect()
}

fn reasons(d: &Decoded<'_>) -> Vec<RejectReason> {
    d.rejections.iter().map(|r| r.reason).collect()
}

fn subscription(message_type: &str, messages: &[String]) -> String {
    json!({
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/eks/prod/cluster",
        "logStream": "kube-apiserver-audit-0123456789abcdef",
        "subscriptionFilters": ["driftwatch"],
        "logEvents": messages.iter().enumerate().map(|(i, m)| json!({
            "id": format!("3753{i}"), "timestamp": 1_700_000_000_000u64 + i as u64, "message": m
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

// ---- AKS ----

#[test]
fn aks_batch_with_string_and_object_logs_skipped_and_foreign_records() {
    let body = json!({"records": [
        {"category": "kube-audit", "properties": {"log": event("s1").to_string() + "\n", "stream": "stdout"}},
        {"category": "kube-audit-admin", "properties": {"log": event("o2")}},
        {"category": "kube-audit", "properties": {"log": "skipped-too-big-size-object"}},
        {"category": "kube-apiserver", "properties": {"log": "I0101 started"}},
        {"category": "kube-audit", "properties": {"log": "{\"kind\": 0}"}},
        {"category": "kube-audit", "properties": {}},
        "not a record",
        {"category": "kube-audit", "properties": {"log": event("s8").to_string()}},
    ]})
    .to_string();
    let body = format!("{EV}\n\n{body}\n");
    let arena = Arena::new();
    let d = decode_bytes_in(body.as_bytes(), &arena);
    assert_eq!(ids(&d), ["a1", "s1", "o2", "s8"]);
    assert!(d.events[1..].iter().all(|e| e.line == 3), "{:?}", d.events);
    assert_eq!(d.documents, 2);
    let messages: Vec<&str> = d.rejections.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(d.rejections.len(), 5, "{messages:?}");
    assert!(d.rejections.iter().all(|r| r.line == 3));
    assert_eq!(
        messages[0],
        "records[2]: AKS skipped an oversized event (skipped-too-big-size-object)"
    );
    assert_eq!(d.rejections[0].reason, RejectReason::NotAnEvent);
    assert!(
        messages[1].starts_with("records[3]: AKS record of category \"kube-apiserver\""),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].starts_with("records[4]: not an audit event"),
        "{}",
        messages[2]
    );
    assert!(messages[3].contains("records[5]") && messages[3].contains("properties.log"));
    assert!(messages[4].starts_with("records[6]: not an AKS diagnostic record"));
}

#[test]
fn single_aks_record_with_bom_and_pretty_printing() {
    let record = json!({
        "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "category": "kube-audit",
        "properties": {"log": event("single").to_string(), "pod": "kube-apiserver-0"},
    });
    let body = format!(
        "\u{feff}{}\n",
        serde_json::to_string_pretty(&record).unwrap()
    );
    let arena = Arena::new();
    let d = decode_bytes_in(body.as_bytes(), &arena);
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    assert_eq!(ids(&d), ["single"]);
    assert_eq!(d.events[0].event.verb(), "patch");
    assert_eq!(d.events[0].event.username(), "alice");
}

#[test]
fn an_aks_log_object_is_borrowed_even_without_an_arena() {
    let body =
        json!({"records": [{"category": "kube-audit", "properties": {"log": event("obj")}}]})
            .to_string();
    let d = decode_bytes(body.as_bytes());
    assert_eq!(ids(&d), ["obj"]);
    // A string log needs unescaping, so memory: decode_bytes says so.
    let body =
        json!({"records": [{"category": "kube-audit", "properties": {"log": EV}}]}).to_string();
    let d = decode_bytes(body.as_bytes());
    assert!(d.events.is_empty());
    assert!(
        d.rejections[0].message.contains("decode_bytes_in"),
        "{:?}",
        d.rejections
    );
}

// ---- CloudWatch Logs ----

#[test]
fn cloudwatch_data_message_plain_gzip_and_base64() {
    let payload = subscription(
        "DATA_MESSAGE",
        &[event("c1").to_string(), event("c2").to_string()],
    );
    let gz = gzip(payload.as_bytes());
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("plain", payload.clone().into_bytes()),
        ("gzip", gz.clone()),
        ("base64(gzip)", b64(&gz).into_bytes()),
        ("base64(gzip) and a newline", (b64(&gz) + "\n").into_bytes()),
        ("base64(plain)", b64(payload.as_bytes()).into_bytes()),
        ("gzip(gzip)", gzip(&gz)),
    ];
    for (what, body) in bodies {
        let arena = Arena::new();
        let d = decode_bytes_in(&body, &arena);
        assert!(d.rejections.is_empty(), "{what}: {:?}", d.rejections);
        assert_eq!(ids(&d), ["c1", "c2"], "{what}");
        assert_eq!(d.documents, 1, "{what}");
        assert!(
            d.events
                .iter()
                .all(|e| e.line == 1 && e.stage == Stage::ResponseComplete)
        );
    }
}

#[test]
fn cloudwatch_control_message_carries_no_events_and_is_no_error() {
    let payload = subscription(
        "CONTROL_MESSAGE",
        &["CWL CONTROL MESSAGE: Checking health of destination Firehose.".to_owned()],
    );
    for body in [payload.clone().into_bytes(), gzip(payload.as_bytes())] {
        let arena = Arena::new();
        let d = decode_bytes_in(&body, &arena);
        assert!(d.events.is_empty());
        assert!(d.rejections.is_empty(), "{:?}", d.rejections);
        assert_eq!(d.documents, 1);
    }
}

#[test]
fn cloudwatch_messages_that_are_not_audit_events_are_rejected_by_index() {
    let payload = subscription(
        "DATA_MESSAGE",
        &[
            "time=\"2024-01-01T00:00:00Z\" level=info msg=\"access granted\"".to_owned(),
            event("ok").to_string(),
            r#"{"kind":"Pod"}"#.to_owned(),
        ],
    );
    let body = format!("{EV}\n{}", b64(&gzip(payload.as_bytes())));
    let arena = Arena::new();
    let d = decode_bytes_in(body.as_bytes(), &arena);
    assert_eq!(ids(&d), ["a1", "ok"]);
    assert_eq!(d.events[1].line, 2);
    assert_eq!(d.rejections.len(), 2, "{:?}", d.rejections);
    assert!(d.rejections.iter().all(|r| r.line == 2));
    assert_eq!(
        reasons(&d),
        [RejectReason::InvalidJson, RejectReason::NotAnEvent]
    );
    let m = &d.rejections[0].message;
    assert!(
        m.starts_with("base64 payload line 1: gzip payload line 1: logEvents[0] of logStream \"kube-apiserver-audit-0123456789abcdef\": not an audit event: not JSON"),
        "{m}"
    );
    assert!(d.rejections[1].message.contains("logEvents[2]"));
    assert!(d.rejections[1].message.contains("Pod"));
}

#[test]
fn a_zip_bomb_is_rejected_within_the_limit() {
    // 64 MiB + 1 of zeros: about 64 KiB of gzip.
    let bomb = gzip(&vec![0u8; (64 << 20) + 1]);
    assert!(bomb.len() < 1 << 20);
    // Past the limit, with a ratio that allows it...
    let arena = Arena::with_limits(64 << 20, 10_000);
    let d = decode_bytes_in(&bomb, &arena);
    assert!(d.events.is_empty());
    assert_eq!(reasons(&d), [RejectReason::TooLarge]);
    assert_eq!(
        d.rejections[0].message,
        "gzip payload: decodes to more than 64 MiB (server.max_body_bytes, the decompression limit); not read further"
    );
    // ... and past the ratio, within the limit.
    let arena = Arena::new();
    let d = decode_bytes_in(&bomb, &arena);
    assert_eq!(reasons(&d), [RejectReason::TooLarge]);
    assert_eq!(
        d.rejections[0].message,
        "gzip payload: decompresses to more than 100 times its size (server.max_inflate_ratio); not read further"
    );
    // The limit is the arena's, and covers base64 too.
    let arena = Arena::with_limit(1000);
    let payload = subscription("DATA_MESSAGE", &vec![event("c1").to_string(); 10]);
    let d = decode_bytes_in(payload.as_bytes(), &arena);
    assert_eq!(d.events.len(), 10, "JSON strings are not counted");
    let encoded = b64(payload.as_bytes());
    let d = decode_bytes_in(encoded.as_bytes(), &arena);
    assert_eq!(reasons(&d), [RejectReason::TooLarge]);
    let compressed = gzip(payload.as_bytes());
    let d = decode_bytes_in(&compressed, &arena);
    assert_eq!(reasons(&d), [RejectReason::TooLarge]);
}

#[test]
fn corrupt_and_too_deeply_nested_payloads_are_rejected() {
    let mut cut = gzip(EV.as_bytes());
    cut.truncate(cut.len() / 2);
    let arena = Arena::new();
    let d = decode_bytes_in(&cut, &arena);
    assert_eq!(reasons(&d), [RejectReason::InvalidEncoding]);
    assert!(
        d.rejections[0].message.contains("gzip"),
        "{:?}",
        d.rejections
    );

    let mut nested = EV.as_bytes().to_vec();
    for _ in 0..6 {
        nested = gzip(&nested);
    }
    let d = decode_bytes_in(&nested, &arena);
    assert!(d.events.is_empty());
    assert_eq!(reasons(&d), [RejectReason::InvalidEncoding]);
    assert!(
        d.rejections[0].message.contains("nested"),
        "{:?}",
        d.rejections
    );

    // Short words that happen to be base64 stay ordinary garbage.
    let d = decode_bytes_in(b"nonsense\n", &arena);
    assert_eq!(reasons(&d), [RejectReason::InvalidJson]);
    assert!(d.rejections[0].message.contains("not JSON"));
}

#[test]
fn base64_wrapped_over_lines_and_one_record_per_line() {
    let gz = gzip(subscription("DATA_MESSAGE", &[event("w").to_string()]).as_bytes());
    let encoded = b64(&gz);
    let wrapped: String = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    assert!(wrapped.lines().count() > 2);
    let arena = Arena::new();
    let d = decode_bytes_in(wrapped.as_bytes(), &arena);
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    assert_eq!(ids(&d), ["w"]);

    let lines = format!(
        "{}\n{}\n{}\n",
        b64(&gzip(event("l1").to_string().as_bytes())),
        b64(&gzip(event("l2").to_string().as_bytes())),
        b64(event("l3").to_string().as_bytes()),
    );
    let d = decode_bytes_in(lines.as_bytes(), &arena);
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    assert_eq!(ids(&d), ["l1", "l2", "l3"]);
    assert_eq!(
        d.events.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn firehose_http_endpoint_records() {
    let gz = gzip(subscription("DATA_MESSAGE", &[event("f1").to_string()]).as_bytes());
    let body = json!({
        "requestId": "ed4acda5-034f-9f42-bba1-f29aea6d7d8f",
        "timestamp": 1_578_090_901_599u64,
        "records": [{"data": b64(&gz)}, {"data": "%%%"}],
    })
    .to_string();
    let arena = Arena::new();
    let d = decode_bytes_in(body.as_bytes(), &arena);
    assert_eq!(ids(&d), ["f1"]);
    assert_eq!(reasons(&d), [RejectReason::InvalidEncoding]);
    assert!(
        d.rejections[0]
            .message
            .starts_with("records[1] data: invalid base64")
    );
}

#[test]
fn a_chunk_that_ends_inside_a_base64_line_waits_for_the_rest() {
    let line = b64(&gzip(EV.as_bytes()));
    let text = format!("{EV}\n{}", &line[..line.len() / 2]);
    let arena = Arena::new();
    let mut d = Decoded::default();
    let consumed = decode_str(&text, 1, false, &arena, &mut d);
    assert_eq!(consumed, EV.len() + 1);
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
}

// ---- GKE ----

fn gke_entry(method: &str, resource: &str) -> serde_json::Value {
    json!({
        "insertId": "ins-1",
        "labels": {"authorization.k8s.io/decision": "allow"},
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"first": true, "id": "op-1", "last": true, "producer": "k8s.io"},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "alice@example.com"},
            "methodName": method,
            "requestMetadata": {"callerIp": "203.0.113.7", "callerSuppliedUserAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234"},
            "resourceName": resource,
            "serviceName": "k8s.io",
            "status": {"code": 0},
            "request": {"spec": {"replicas": 5}},
        },
        "resource": {"type": "k8s_cluster"},
        "timestamp": "2024-01-01T01:00:00.123456Z",
        "receiveTimestamp": "2024-01-01T01:00:01Z",
    })
}

#[test]
fn gke_entry_becomes_the_audit_event() {
    let body = gke_entry(
        "io.k8s.apps.v1.deployments.patch",
        "apps/v1/namespaces/shop/deployments/api",
    )
    .to_string();
    let d = decode_bytes(body.as_bytes());
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    let e = &d.events[0];
    assert_eq!(e.stage, Stage::ResponseComplete);
    let ev = &e.event;
    assert_eq!(ev.verb(), "patch");
    assert_eq!(ev.audit_id(), "op-1");
    assert_eq!(ev.username(), "alice@example.com");
    assert_eq!(ev.api_group(), "apps");
    assert_eq!(ev.resource(), "deployments");
    assert_eq!(ev.namespace(), "shop");
    assert_eq!(ev.object_ref.as_ref().unwrap().name.as_deref(), Some("api"));
    assert_eq!(ev.subresource(), "");
    assert_eq!(
        ev.request_uri(),
        "/apis/apps/v1/namespaces/shop/deployments/api"
    );
    assert_eq!(ev.status_code(), Some(200));
    assert_eq!(
        ev.user_agent.as_deref(),
        Some("kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234")
    );
    assert_eq!(ev.source_ips.as_deref().unwrap(), ["203.0.113.7"]);
    assert_eq!(ev.received_at(), "2024-01-01T01:00:00.123456Z");
    assert_eq!(ev.stage_at(), "2024-01-01T01:00:00.123456Z");
    assert_eq!(
        ev.request_object.unwrap().get(),
        r#"{"spec":{"replicas":5}}"#
    );
    assert_eq!(
        ev.annotations.unwrap().get(),
        r#"{"authorization.k8s.io/decision":"allow"}"#
    );
    assert_eq!(ev.level.as_deref(), Some("Request"));
    // Everything is borrowed from the body.
    assert!(matches!(ev.verb, Some(std::borrow::Cow::Borrowed(_))));
    assert!(matches!(
        ev.object_ref.as_ref().unwrap().resource,
        Some(std::borrow::Cow::Borrowed(_))
    ));
}

#[test]
fn gke_exec_core_resources_and_status_codes() {
    let exec = gke_entry(
        "io.k8s.core.v1.pods.exec.create",
        "core/v1/namespaces/default/pods/foo/exec",
    );
    let mut denied = gke_entry(
        "io.k8s.core.v1.secrets.get",
        "core/v1/namespaces/prod/secrets/db",
    );
    denied["protoPayload"]["status"] = json!({"code": 7, "message": "PERMISSION_DENIED"});
    let mut no_op = gke_entry(
        "io.k8s.core.v1.namespaces.delete",
        "core/v1/namespaces/team-a",
    );
    no_op["operation"] = json!(null);
    let mut bare = gke_entry(
        "io.k8s.core.v1.pods.create",
        "core/v1/namespaces/default/pods/p",
    );
    bare.as_object_mut().unwrap().remove("operation");
    bare.as_object_mut().unwrap().remove("insertId");
    bare["protoPayload"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    // `gcloud logging read --format=json` prints an array of entries.
    let body = serde_json::to_string(&json!([exec, denied, no_op, bare])).unwrap();
    let d = decode_bytes(body.as_bytes());
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    assert_eq!(d.events.len(), 4);
    let ev = &d.events[0].event;
    assert_eq!(
        (ev.verb(), ev.resource(), ev.subresource()),
        ("create", "pods", "exec")
    );
    assert_eq!(ev.api_group(), "");
    assert_eq!(ev.request_uri(), "/api/v1/namespaces/default/pods/foo/exec");
    assert_eq!(d.events[1].event.status_code(), Some(403));
    let ns = &d.events[2].event;
    assert_eq!(
        ns.audit_id(),
        "ins-1",
        "insertId when there is no operation"
    );
    assert_eq!((ns.resource(), ns.namespace()), ("namespaces", "team-a"));
    let bare = &d.events[3].event;
    assert!(
        bare.audit_id().starts_with("derived-"),
        "{}",
        bare.audit_id()
    );
    assert_eq!(bare.status_code(), Some(200));
}

/// Cloud Logging's protobuf type URL is no field of the object: it is
/// gone from the top level of both bodies (only there: a nested `@type` is
/// the object's own), and a body typed by it alone keeps its kind.
#[test]
fn gke_bodies_lose_their_type_url() {
    let mut patch = gke_entry(
        "io.k8s.core.v1.pods.status.patch",
        "core/v1/namespaces/shop/pods/web-1/status",
    );
    patch["protoPayload"]["request"] = json!({"@type": "k8s.io/Patch",
        "metadata": {"uid": "c0b4e00d"}, "status": {"phase": "Running"}});
    patch["protoPayload"]["response"] = json!({"@type": "core.k8s.io/v1.Pod",
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "annotations": {"@type": "kept"}},
        "spec": {"nodeName": "gke-pool-1-abcd"}});
    let mut denied = gke_entry(
        "io.k8s.core.v1.pods.create",
        "core/v1/namespaces/shop/pods/web-2",
    );
    denied["protoPayload"]["status"] = json!({"code": 7});
    denied["protoPayload"]["request"] = json!({"@type": "core.k8s.io/v1.Pod", "spec": {}});
    denied["protoPayload"]["response"] = json!({"@type": "core.k8s.io/v1.Status",
        "metadata": {}, "code": 403, "reason": "Forbidden"});
    let mut json_patch = gke_entry(
        "io.k8s.apps.v1.deployments.patch",
        "apps/v1/namespaces/shop/deployments/api",
    );
    json_patch["protoPayload"]["request"] =
        json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]);
    let body = format!("{patch}\n{denied}\n{json_patch}\n");
    let arena = Arena::new();
    let d = decode_bytes_in(body.as_bytes(), &arena);
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    let body_of = |i: usize, response: bool| -> serde_json::Value {
        let ev = &d.events[i].event;
        let raw = if response {
            ev.response_object
        } else {
            ev.request_object
        };
        serde_json::from_str(raw.unwrap().get()).unwrap()
    };
    assert_eq!(
        body_of(0, false),
        json!({"metadata": {"uid": "c0b4e00d"}, "status": {"phase": "Running"}})
    );
    let pod = body_of(0, true);
    assert_eq!(pod.get("@type"), None);
    assert_eq!(
        (pod["kind"].as_str(), pod["apiVersion"].as_str()),
        (Some("Pod"), Some("v1"))
    );
    assert_eq!(pod["metadata"]["annotations"]["@type"], "kept");
    assert_eq!(body_of(1, false), json!({"spec": {}, "kind": "Pod"}));
    assert_eq!(body_of(1, true)["kind"], "Status");
    assert!(body_of(2, false).is_array());
    // Without an arena the bodies are kept as logged.
    let d = decode_bytes(body.as_bytes());
    assert!(
        d.events[0]
            .event
            .request_object
            .unwrap()
            .get()
            .contains("@type")
    );
}

#[test]
fn non_kubernetes_cloud_entries_are_rejected_naming_the_service() {
    let mut cluster_op = gke_entry(
        "google.container.v1.ClusterManager.CreateCluster",
        "projects/p/zones/z/clusters/c",
    );
    cluster_op["protoPayload"]["serviceName"] = json!("container.googleapis.com");
    let unnamed = json!({"protoPayload": {"methodName": "compute.instances.list"}});
    let body = format!("{cluster_op}\n{unnamed}\n{EV}\n");
    let d = decode_bytes(body.as_bytes());
    assert_eq!(ids(&d), ["a1"]);
    assert_eq!(reasons(&d), [RejectReason::NotAnEvent; 2]);
    assert_eq!(
        d.rejections[0].message,
        "not a Kubernetes audit entry: serviceName container.googleapis.com"
    );
    assert_eq!(d.rejections[0].line, 1);
    assert!(d.rejections[1].message.contains("compute.instances.list"));
}

// ---- Exported and hand-written events ----

#[test]
fn self_declared_events_get_a_stage_and_a_derived_id() {
    let with_status = r#"{"kind":"Event","verb":"update","objectRef":{"resource":"mutatingwebhookconfigurations","name":"w"},"responseStatus":{"code":200},"p_log_type":"Amazon.EKS.Audit"}"#;
    let without_status = r#"{"kind":"Event","verb":"create","objectRef":{"resource":"pods","namespace":"default","name":"p"}}"#;
    let no_verb = r#"{"apiVersion":"audit.k8s.io/v1","kind":"Event","level":"Metadata","requestURI":"/healthz","responseStatus":{"code":200},"stage":"ResponseComplete","user":{"username":"system:anonymous"}}"#;
    let body = format!("{with_status}\n{without_status}\n{no_verb}\n{with_status}\n");
    let d = decode_bytes(body.as_bytes());
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    let stages: Vec<Stage> = d.events.iter().map(|e| e.stage).collect();
    assert_eq!(
        stages,
        [
            Stage::ResponseComplete,
            Stage::RequestReceived,
            Stage::ResponseComplete,
            Stage::ResponseComplete
        ]
    );
    let ids = ids(&d);
    assert!(
        ids.iter()
            .all(|id| id.starts_with("derived-") && id.len() == 40),
        "{ids:?}"
    );
    assert_eq!(ids[0], ids[3], "the same document, the same id");
    assert_ne!(ids[0], ids[1]);
    assert_eq!(d.events[2].event.verb(), "");
}

#[test]
fn documents_that_do_not_declare_themselves_audit_events_stay_strict() {
    for (body, missing) in [
        // A core v1 Event is not an audit event.
        (
            r#"{"kind":"Event","apiVersion":"v1","involvedObject":{"kind":"Pod"},"reason":"Started"}"#,
            "auditID",
        ),
        (r#"{"kind":"Event"}"#, "auditID"),
        // EventList items carry no kind: a real webhook batch stays strict.
        (
            r#"{"kind":"EventList","items":[{"auditID":"x","stage":"ResponseComplete"}]}"#,
            "verb",
        ),
        (
            r#"{"kind":"EventList","items":[{"verb":"get","stage":"ResponseComplete"}]}"#,
            "auditID",
        ),
    ] {
        let d = decode_bytes(body.as_bytes());
        assert!(d.events.is_empty(), "{body}");
        assert_eq!(d.rejections.len(), 1, "{body}");
        assert!(
            d.rejections[0].message.contains(missing),
            "{body}: {:?}",
            d.rejections
        );
    }
}

#[test]
fn a_file_chunk_is_never_taken_for_gzip() {
    // Replay decompresses gzip inputs as a stream: within a chunk, a line of
    // binary garbage that starts with the gzip magic is one bad line.
    let mut chunk = b"\x1f\x8b\x08 garbage\n".to_vec();
    chunk.extend_from_slice(EV.as_bytes());
    chunk.push(b'\n');
    let arena = Arena::new();
    let mut d = Decoded::default();
    crate::decode::decode_bytes_into(&chunk, 10, &arena, &mut d);
    assert_eq!(ids(&d), ["a1"]);
    assert_eq!(d.events[0].line, 11);
    assert_eq!(reasons(&d), [RejectReason::InvalidUtf8]);
    assert_eq!(d.rejections[0].line, 10);
}

#[test]
fn runs_of_base64_garbage_cost_linear_time() {
    // Wrapped-width lines that decode to nothing: one rejection for the run.
    let garbage76 = format!("{}\n", "A".repeat(76)).repeat(50_000);
    let arena = Arena::new();
    let d = decode_bytes_in(garbage76.as_bytes(), &arena);
    assert_eq!(reasons(&d), [RejectReason::InvalidEncoding]);
    assert!(d.rejections[0].message.starts_with("50000 lines of base64"));
    // Other widths: each line is judged, and rejected, alone.
    let garbage20 = format!("{}\n", "B".repeat(20)).repeat(50_000);
    let d = decode_bytes_in(garbage20.as_bytes(), &arena);
    assert_eq!(d.rejections.total(), 50_000);
    assert_eq!(d.rejections.count(RejectReason::InvalidJson), 50_000);
    assert_eq!(d.rejections.last_line(), 50_000);
}
