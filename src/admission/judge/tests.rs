use super::*;
use crate::config::AdmissionOverride;

const ARGO: &str = "system:serviceaccount:argocd:argocd-application-controller";

fn policy() -> Policy {
    let mut p = Policy::baseline();
    p.pipelines.push(classify::Pipeline {
        name: "argocd".into(),
        users: [ARGO.to_owned()].into_iter().collect(),
        groups: Default::default(),
        user_agents: vec![Regex::new("^argocd-application-controller/").unwrap()],
        source_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
        report_risks: None,
    });
    p
}

fn judge(mode: AdmissionMode) -> Judge {
    let config = AdmissionConfig {
        mode,
        break_glass_groups: vec!["oncall".into()],
        break_glass_annotation: Some("driftwatch.io/break-glass".into()),
        overrides: vec![AdmissionOverride {
            namespaces: vec!["sandbox".into()],
            rules: vec![],
            mode: AdmissionMode::Warn,
        }],
        ..AdmissionConfig::default()
    };
    Judge::new(&policy(), config, Inventories::default())
}

fn deployment(ns: &str, replicas: u32, manager: &str, time: &str, annotations: &str) -> String {
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"api","namespace":"{ns}","annotations":{{"argocd.argoproj.io/tracking-id":"shop:apps/Deployment:{ns}/api"{annotations}}},"managedFields":[{{"manager":"argocd-controller","operation":"Apply","time":"2026-12-01T00:00:00Z","fieldsV1":{{}}}},{{"manager":"{manager}","operation":"Update","time":"{time}","fieldsV1":{{"f:spec":{{}}}}}}]}},"spec":{{"replicas":{replicas}}}}}"#
    )
}

fn review(user: &str, groups: &str, ns: &str, new: &str, old: &str, options: &str) -> String {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u1","kind":{{"group":"apps","version":"v1","kind":"Deployment"}},"resource":{{"group":"apps","version":"v1","resource":"deployments"}},"name":"api","namespace":"{ns}","operation":"UPDATE","userInfo":{{"username":"{user}","groups":{groups}}},"object":{new},"oldObject":{old},"options":{options},"dryRun":false}}}}"#
    )
}

fn decide(j: &Judge, text: &str) -> Decision {
    let r: super::super::review::Review<'_> = serde_json::from_str(text).unwrap();
    j.judge(
        "c",
        r.request.as_ref().unwrap(),
        "2026-12-05T00:00:00Z".parse().unwrap(),
    )
}

fn edit_by(user: &str, groups: &str, ns: &str, manager: &str, annotations: &str) -> String {
    let old = deployment(
        ns,
        2,
        "kube-controller-manager",
        "2026-12-01T00:00:00Z",
        annotations,
    );
    let new = deployment(ns, 5, manager, "2026-12-05T00:00:00Z", annotations);
    review(
        user,
        groups,
        ns,
        &new,
        &old,
        r#"{"kind":"UpdateOptions","apiVersion":"meta.k8s.io/v1"}"#,
    )
}

#[test]
fn a_person_editing_a_managed_object_is_denied_with_where_to_change_it() {
    let d = decide(
        &judge(AdmissionMode::Enforce),
        &edit_by("alice", r#"["devs"]"#, "shop", "kubectl-edit", ""),
    );
    assert_eq!(d.outcome, Outcome::Denied);
    assert_eq!(d.finding_type, Some(FindingType::OutOfBandChange));
    let m = d.message.unwrap();
    assert!(
        m.contains("deployments.apps shop/api is managed by argocd (shop)"),
        "{m}"
    );
    assert!(m.contains("change it in Git"), "{m}");
    assert!(m.contains("a member of oncall may retry"), "{m}");
}

#[test]
fn modes_and_overrides() {
    let alice = edit_by("alice", r#"["devs"]"#, "sandbox", "kubectl-edit", "");
    assert_eq!(
        decide(&judge(AdmissionMode::Enforce), &alice).outcome,
        Outcome::Warned
    );
    let shop = edit_by("alice", r#"["devs"]"#, "shop", "kubectl-edit", "");
    assert_eq!(
        decide(&judge(AdmissionMode::Audit), &shop).outcome,
        Outcome::Audited
    );
}

#[test]
fn the_pipeline_passes_from_anywhere_but_not_through_a_hand_tool() {
    let j = judge(AdmissionMode::Enforce);
    // Its source_cidrs and user agents cannot be checked here: it passes.
    let own = edit_by(ARGO, "[]", "shop", "argocd-controller", "");
    assert_eq!(decide(&j, &own).outcome, Outcome::Allowed);
    let stolen = edit_by(ARGO, "[]", "shop", "kubectl-edit", "");
    let d = decide(&j, &stolen);
    assert_eq!(d.outcome, Outcome::Denied);
    assert_eq!(d.finding_type, Some(FindingType::PipelineCredentialMisuse));
}

#[test]
fn a_person_using_the_pipelines_client_name_is_spoofing() {
    let d = decide(
        &judge(AdmissionMode::Enforce),
        &edit_by("mallory", "[]", "shop", "argocd-application-controller", ""),
    );
    assert_eq!(d.finding_type, Some(FindingType::UserAgentSpoofing));
    assert_eq!(d.outcome, Outcome::Denied);
}

#[test]
fn break_glass_by_group_or_by_a_bounded_annotation() {
    let j = judge(AdmissionMode::Enforce);
    let d = decide(
        &j,
        &edit_by("bob", r#"["oncall"]"#, "shop", "kubectl-edit", ""),
    );
    assert_eq!(d.outcome, Outcome::BreakGlass);
    assert_eq!(d.severity, Some(Severity::High));
    let ok = r#","driftwatch.io/break-glass":"2026-12-05T02:00:00Z INC-1 rollback""#;
    assert_eq!(
        decide(&j, &edit_by("alice", "[]", "shop", "kubectl-edit", ok)).outcome,
        Outcome::BreakGlass
    );
    let expired = r#","driftwatch.io/break-glass":"2026-12-04T23:00:00Z INC-1 rollback""#;
    let d = decide(&j, &edit_by("alice", "[]", "shop", "kubectl-edit", expired));
    assert_eq!(d.outcome, Outcome::Denied);
    assert!(d.message.unwrap().contains("expired"));
    // A stolen pipeline token gets no break-glass.
    let d = decide(
        &j,
        &edit_by(ARGO, r#"["oncall"]"#, "shop", "kubectl-edit", ok),
    );
    assert_eq!(d.outcome, Outcome::Denied);
}

#[test]
fn unmanaged_objects_and_system_writes_pass() {
    let j = judge(AdmissionMode::Enforce);
    let plain =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"shop"}}"#;
    let text = review("alice", "[]", "shop", plain, plain, "null").replace(
        r#""group":"apps","version":"v1","resource":"deployments""#,
        r#""group":"","version":"v1","resource":"configmaps""#,
    );
    assert_eq!(decide(&j, &text).outcome, Outcome::Allowed);
    let system = edit_by(
        "system:kube-controller-manager",
        "[]",
        "shop",
        "kube-controller-manager",
        "",
    );
    assert_eq!(decide(&j, &system).outcome, Outcome::Allowed);
}

#[test]
fn break_glass_values_are_bounded() {
    let now: Timestamp = "2026-12-05T00:00:00Z".parse().unwrap();
    let max = std::time::Duration::from_secs(4 * 3600);
    assert!(parse_break_glass("2026-12-05T01:00:00Z INC-1 fix", now, max).is_ok());
    assert!(
        parse_break_glass("2026-12-05T01:00:00Z", now, max)
            .unwrap_err()
            .contains("reason")
    );
    assert!(
        parse_break_glass("2026-12-06T01:00:00Z x", now, max)
            .unwrap_err()
            .contains("ahead")
    );
    assert!(
        parse_break_glass("tomorrow x", now, max)
            .unwrap_err()
            .contains("RFC 3339")
    );
}

#[test]
fn a_denial_names_the_pipeline_object_and_its_source_when_the_inventories_know_them() {
    let mut m = ManagedBy::new("argocd", Some("shop".into()));
    assert_eq!(
        where_to_change(&m),
        "argocd (shop): change it in Git and let Argo CD sync it"
    );
    m.pipeline = Some(crate::model::PipelineObject {
        kind: "Application".into(),
        namespace: "argocd".into(),
        name: "shop".into(),
        via: crate::model::PipelineVia::Inventory,
        source: Some(crate::model::PipelineSource {
            repo_url: Some("https://git.example.com/shop.git".into()),
            path: Some("apps/shop".into()),
            target_revision: Some("main".into()),
            ..Default::default()
        }),
    });
    assert_eq!(
        where_to_change(&m),
        "argocd Application argocd/shop: change it in https://git.example.com/shop.git, path apps/shop, revision main"
    );
}
