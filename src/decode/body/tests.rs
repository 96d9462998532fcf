use super::*;
use crate::decode::event::Stage;
use crate::decode::{Decoded, RejectReason};

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

fn decode_within<'a>(
    body: &'a str,
    arena: &'a Arena,
    limits: crate::decode::Limits,
) -> Decoded<'a> {
    let mut d = Decoded::with_limits(limits);
    decode_body(body.as_bytes(), arena, &mut d);
    d
}

fn max_event(bytes: usize) -> crate::decode::Limits {
    crate::decode::Limits {
        max_event_bytes: bytes,
        ..crate::decode::Limits::default()
    }
}

#[test]
fn an_event_past_max_event_bytes_is_rejected_by_name_and_the_others_kept() {
    let big = EV.replace("\"a1\"", "\"big-one\"").replace(
        "\"verb\"",
        &format!("\"userAgent\":\"{}\",\"verb\"", "x".repeat(2000)),
    );
    let arena = Arena::new();
    let lines = format!("{EV}\n{big}\n{EV}\n");
    let d = decode_within(&lines, &arena, max_event(1024));
    assert_eq!(ids(&d), ["a1", "a1"]);
    assert_eq!(reasons(&d), [RejectReason::TooLarge]);
    assert_eq!(d.rejections[0].line, 2);
    let m = &d.rejections[0].message;
    assert!(
        m.contains("auditID \"big-one\"") && m.contains("server.max_event_bytes (1024)"),
        "{m}"
    );
    // In an EventList, the item is named too.
    let list = format!("{{\"kind\":\"EventList\",\"items\":[{EV},{big}]}}");
    let d = decode_within(&list, &arena, max_event(1024));
    assert_eq!(ids(&d), ["a1"]);
    assert!(
        d.rejections[0].message.starts_with("items[1]: event of "),
        "{:?}",
        d.rejections
    );
    // Under the limit, nothing changes.
    assert_eq!(
        decode_within(&lines, &arena, max_event(1 << 20))
            .events
            .len(),
        3
    );
}

fn reasons(d: &Decoded<'_>) -> Vec<RejectReason> {
    d.rejections.iter().map(|r| r.reason).collect()
}

#[test]
fn millions_of_bad_lines_are_counted_not_kept_and_spend_the_budget() {
    let body = "x\n".repeat(200_000);
    let arena = Arena::new();
    let d = decode_within(&body, &arena, crate::decode::Limits::default());
    assert_eq!(d.rejections.total(), 200_000);
    assert_eq!(d.rejections.len(), crate::decode::MAX_LISTED);
    assert_eq!(d.rejections.last_line(), 200_000);
    assert!(!d.over_budget());
    let limits = crate::decode::Limits {
        work: Some(1 << 20),
        ..crate::decode::Limits::default()
    };
    let d = decode_within(&body, &arena, limits);
    assert!(d.over_budget());
    // Decoding stopped about where the budget ran out.
    let per_line = 2 * crate::decode::WORK_PER_ITEM + 2;
    assert!(
        d.rejections.total() as u64 <= (1 << 20) / per_line + 1,
        "{}",
        d.rejections.total()
    );
    // A good body of tiny events costs a few units per byte.
    let good = format!("{EV}\n").repeat(2000);
    let d = decode_within(&good, &arena, crate::decode::Limits::default());
    assert_eq!(d.events.len(), 2000);
    assert!(
        d.work() < 2 * good.len() as u64,
        "{} for {}",
        d.work(),
        good.len()
    );
}

#[test]
fn a_cut_line_of_a_secret_is_not_echoed() {
    let body =
        format!("{EV}\n\"data\": {{\"password\": \"aHVudGVyMjpzM2NyM3Q=\", \"other\": 1}}\n");
    let d = decode_bytes(body.as_bytes());
    assert_eq!(d.events.len(), 1);
    let m = &d.rejections[0].message;
    assert!(
        m.contains("<withheld: ") && !m.contains("aHVud") && !m.contains("password"),
        "{m}"
    );
    // A value where an object belongs: the parser's message quotes it.
    let wrong = EV.replace("{\"username\":\"alice\"}", "\"aHVudGVyMjpzM2NyM3Q=\"");
    let d = decode_bytes(wrong.as_bytes());
    let m = &d.rejections[0].message;
    assert!(m.contains("<withheld: ") && !m.contains("aHVud"), "{m}");
    // Harmless garbage is still shown.
    let d = decode_bytes(b"<html>\n");
    assert!(
        d.rejections[0].message.ends_with("found \"<html>\""),
        "{:?}",
        d.rejections
    );
}

#[test]
fn events_with_times_that_are_not_rfc_3339_are_rejected_with_their_line() {
    let with = |field: &str, value: &str| {
        EV.replace("\"verb\"", &format!("\"{field}\":\"{value}\",\"verb\""))
    };
    let body = [
        with("stageTimestamp", "yesterday"),
        with("requestReceivedTimestamp", ""),
        with("stageTimestamp", "9999-12-31T23:59:59Z"),
        with("timestamp", "1700000000"),
        EV.to_owned(),
        with("stageTimestamp", "1970-01-01T00:00:00Z"),
    ]
    .join("\n");
    let d = decode_bytes(body.as_bytes());
    assert_eq!(
        d.events.iter().map(|e| e.line).collect::<Vec<_>>(),
        [3, 5, 6]
    );
    assert_eq!(reasons(&d), [RejectReason::InvalidTime; 3]);
    assert_eq!(
        d.rejections.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 2, 4]
    );
    assert_eq!(
        d.rejections[0].message,
        "stageTimestamp \"yesterday\" is not an RFC 3339 time (such as 2026-11-20T10:00:00.123456Z)"
    );
    assert!(
        d.rejections[1]
            .message
            .starts_with("requestReceivedTimestamp \"\" is not")
    );
}
