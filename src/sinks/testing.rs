//! Findings for the sinks' unit tests: an Argo-managed Deployment edited
//! with kubectl.

use crate::decode::Stage;
use crate::model::{
    Actor, Change, ChangeRecord, DriftClosed, DriftRef, DriftState, FindingType, Impersonator,
    ManagedBy, ObjectRef, Severity, Time, Verification,
};

use super::shape::OwnedFinding;

pub const DRIFT: &str = "f-0";

pub fn object() -> ObjectRef {
    ObjectRef {
        group: "apps".into(),
        version: "v1".into(),
        resource: "deployments".into(),
        subresource: None,
        namespace: Some("shop".into()),
        name: Some("api".into()),
        uid: Some("4f1c-uid".into()),
    }
}

/// The `n`th change of an edit loop at second `n`; the first opens drift
/// `f-0`.
pub fn change(n: u32, path: &str, severity: Severity) -> OwnedFinding {
    let record = ChangeRecord {
        id: format!("f-{n}"),
        time: Time::from_us(1_700_000_000_000_000 + i64::from(n) * 1_000_000),
        cluster: "prod".into(),
        resource: object(),
        verb: "patch".into(),
        actor: Actor {
            username: "alice@example.com".into(),
            groups: vec!["devs".into(), "system:authenticated".into()],
            uid: Some("u-123".into()),
            impersonated_by: None,
            user_agent: Some("kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234".into()),
            client: Some("kubectl".into()),
            source_ips: vec!["10.0.0.7".into()],
            field_manager: Some("kubectl-edit".into()),
        },
        audit_id: format!("audit-{n}"),
        request_uri: "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-edit"
            .into(),
        finding_type: Some(FindingType::OutOfBandChange),
        severity: Some(severity),
        reasons: vec!["alice@example.com is not a sanctioned pipeline.".into()],
        changes: vec![Change {
            path: path.into(),
            old: serde_json::json!(1),
            new: serde_json::json!(n),
            redacted: false,
        }],
        drift: Some(DriftRef {
            id: DRIFT.into(),
            state: Some(DriftState::Open),
        }),
        managed_by: Some(ManagedBy::new("argocd", Some("shop".into()))),
        ..ChangeRecord::default()
    };
    OwnedFinding {
        record,
        finding_type: FindingType::OutOfBandChange,
        severity,
        stage: Stage::ResponseComplete,
    }
}

/// An interactive exec by someone impersonating a service account.
pub fn exec() -> OwnedFinding {
    let mut f = change(100, "", Severity::High);
    f.finding_type = FindingType::InteractiveAccess;
    f.record.finding_type = Some(FindingType::InteractiveAccess);
    f.record.id = "f-exec".into();
    f.record.verb = "create".into();
    f.record.drift = None;
    f.record.changes.clear();
    f.record.resource = ObjectRef {
        group: String::new(),
        version: "v1".into(),
        resource: "pods".into(),
        subresource: Some("exec".into()),
        namespace: Some("shop".into()),
        name: Some("api-7d9f".into()),
        uid: None,
    };
    f.record.actor.impersonated_by = Some(Impersonator {
        username: "mallory".into(),
        groups: vec!["contractors".into()],
    });
    f.record.actor.username = "system:serviceaccount:shop:default".into();
    f
}

pub fn reconciled(at_s: i64) -> DriftClosed {
    DriftClosed {
        id: DRIFT.into(),
        cluster: "prod".into(),
        object: object(),
        state: DriftState::Reconciled,
        at: Time::from_us(1_700_000_000_000_000 + at_s * 1_000_000),
        by: "system:serviceaccount:argocd:argocd-application-controller".into(),
        pipeline: Some("argocd".into()),
        verification: Some(Verification::Verified),
        reason: None,
        seconds: at_s as f64,
    }
}

pub fn at(s: i64) -> Time {
    Time::from_us(1_700_000_000_000_000 + s * 1_000_000)
}
