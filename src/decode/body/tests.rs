use super::*;

const EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/x/configmaps/y?fieldManager=kubectl-edit\u0026dryRun=All","verb":"patch","user":{"username":"alice"},"responseStatus":{"code":200}}"#;

fn ids(d: &Decoded<'_>) -> Vec<String> {
    d.events
        .iter()
        .map(|e| e.event.audit_id().to_owned())
        .collect()
}

#[test]
fn single_event_with_escapes_borrows_what_it_can() {
    let d = decode_bytes(EV.as_bytes());
    assert_eq!(d.documents, 1);
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    assert_eq!(
        d.events[0].event.request_uri(),
        "/api/v1/namespaces/x/configmaps/y?fieldManager=kubectl-edit&dryRun=All"
    );
    assert_eq!(d.events[0].stage, Stage::ResponseComplete);
}

#[test]
fn event_list_items_without_kind() {
    let body = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[
{"auditID":"1","stage":"ResponseComplete","verb":"create"},
{"auditID":"2","stage":"ResponseComplete","verb":"delete"}]}"#;
    let d = decode_bytes(body.as_bytes());
    assert_eq!(ids(&d), ["1", "2"]);
    assert_eq!(d.events[1].line, 3);
    assert_eq!(d.documents, 1);
}

#[test]
fn array_lines_and_pretty_documents_mix() {
    let body = format!(
        "\u{feff}{EV}\n[{EV}]\n{{\n  \"auditID\": \"p\",\n  \"stage\": \"Panic\",\n  \"verb\": \"update\"\n}}\n{EV}\n"
    );
    let d = decode_bytes(body.as_bytes());
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    assert_eq!(ids(&d), ["a1", "a1", "p", "a1"]);
    assert_eq!(
        d.events.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 2, 3, 8]
    );
}

#[test]
fn one_bad_line_among_good_lines() {
    let body = format!("{EV}\n{{\"auditID\": \"broken\", \n{EV}\nnot json at all\n{EV}\n");
    let d = decode_bytes(body.as_bytes());
    assert_eq!(ids(&d), ["a1", "a1", "a1"]);
    assert_eq!(d.rejections.len(), 2, "{:?}", d.rejections);
    assert_eq!(d.rejections[0].line, 2);
    assert_eq!(d.rejections[0].reason, RejectReason::InvalidJson);
    assert_eq!(d.rejections[1].line, 4);
    assert!(d.rejections[1].message.contains("not JSON"));
}

#[test]
fn truncated_document_is_rejected_when_final() {
    let cut = &EV[..EV.len() - 20];
    let d = decode_bytes(cut.as_bytes());
    assert!(d.events.is_empty());
    assert_eq!(d.rejections.len(), 1);
    assert_eq!(d.rejections[0].reason, RejectReason::Truncated);
}

#[test]
fn truncated_document_waits_for_more_when_not_final() {
    let text = format!("{EV}\n{}", &EV[..50]);
    let arena = Arena::new();
    let mut d = Decoded::default();
    let consumed = decode_str(&text, 1, false, &arena, &mut d);
    assert_eq!(consumed, EV.len() + 1);
    assert_eq!(d.events.len(), 1);
    assert!(d.rejections.is_empty());
}

#[test]
fn json_that_is_not_audit_events() {
    for (body, reason) in [
        (r#"{"kind": 0}"#, RejectReason::NotAnEvent),
        (r#"{"hello": "world"}"#, RejectReason::NotAnEvent),
        (r#"{"kind":"EventList"}"#, RejectReason::NotAnEvent),
        (r#"[1, "two"]"#, RejectReason::NotAnEvent),
        (r#""just a string""#, RejectReason::InvalidJson),
    ] {
        let d = decode_bytes(body.as_bytes());
        assert!(d.events.is_empty(), "{body}");
        assert!(!d.rejections.is_empty(), "{body}");
        assert!(
            d.rejections.iter().all(|r| r.reason == reason),
            "{body}: {:?}",
            d.rejections
        );
    }
}

#[test]
fn invalid_utf8_line_is_rejected_and_neighbours_kept() {
    let mut body = Vec::new();
    body.extend_from_slice(EV.as_bytes());
    body.extend_from_slice(b"\n{\"auditID\":\"\xff\xfe\"}\n");
    body.extend_from_slice(EV.as_bytes());
    let d = decode_bytes(&body);
    assert_eq!(d.events.len(), 2);
    assert_eq!(d.rejections.len(), 1);
    assert_eq!(d.rejections[0].line, 2);
    assert_eq!(d.rejections[0].reason, RejectReason::InvalidUtf8);
}

#[test]
fn legacy_v1beta1_with_timestamp_and_null_impersonation() {
    let body = r#"{"apiVersion":"audit.k8s.io/v1beta1","kind":"Event","timestamp":"2018-10-26T13:38:34Z","auditID":"x","stage":"ResponseComplete","verb":"create","impersonatedUser":null,"objectRef":{"resource":"pods","namespace":"default"}}"#;
    let d = decode_bytes(body.as_bytes());
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].event.received_at(), "2018-10-26T13:38:34Z");
    assert!(d.events[0].event.impersonated_user.is_none());
}

#[test]
fn what_follows_a_rejected_document_is_judged_not_skipped() {
    // Valid JSON that is not an event ends where its value ends: the garbage
    // line after it is a rejection of its own, and an event sharing its line
    // or indented on the next one is kept.
    let body = format!("{{\"kind\": 0}}\ngarbage, not JSON\n{{\"kind\": 0}} {EV}\n  {EV}\n{EV}\n");
    let d = decode_bytes(body.as_bytes());
    assert_eq!(ids(&d), ["a1", "a1", "a1"]);
    assert_eq!(
        d.rejections.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 2, 3],
        "{:?}",
        d.rejections
    );
    assert_eq!(d.rejections[1].reason, RejectReason::InvalidJson);
    assert_eq!(d.documents, 6);

    // A broken document has no known end: resume at the next line that
    // starts a document, and reject a garbage line there too.
    let body =
        format!("{{\"auditID\": \"broken\",,\n  \"verb\": \"get\"\n}}\nnot JSON either\n{EV}\n");
    let d = decode_bytes(body.as_bytes());
    assert_eq!(ids(&d), ["a1"]);
    assert_eq!(
        d.rejections.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 4],
        "{:?}",
        d.rejections
    );
}
