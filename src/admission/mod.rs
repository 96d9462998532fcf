//! Prevention: the validating admission webhook `POST /admission/validate`
//! (`admission.k8s.io/v1`), behind the same TLS listener and authentication
//! as the audit webhook.
//!
//! source -> **admission** -> answer. A review is rewritten as the audit
//! event its request will produce and judged by the audit path's policy
//! ([`judge`]); what a review cannot show (user agent, source address) is
//! stood in for by the field manager. No network on this path: markers come
//! from the review's objects, inventories from the watched index.
//!
//! Nothing is stored here. The answer's `auditAnnotations` (`decision`,
//! `rule`, `break-glass`, `review`) reach the request's audit event,
//! prefixed with the webhook's name, and the audit path stores the denial
//! or the change once, from that event ([`crate::classify::admitted`]),
//! with the field changes the review saw where the event has no bodies
//! ([`handoff`]).

pub mod handoff;
pub mod judge;
pub mod review;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::http::auth::Caller;
use crate::http::body::{self, BodyLimits};
use crate::telemetry::events::{AdmissionReviewed, Emit};

pub use handoff::Handoff;
pub use judge::{Decision, Judge, Outcome};

use crate::classify::admitted::{BREAK_GLASS_KEY, DECISION_KEY, REVIEW_KEY, RULE_KEY};

#[derive(Clone)]
pub struct AdmissionState {
    /// `None`: `admission.enabled` is not set.
    pub judge: Option<Arc<Judge>>,
    /// Where reviews leave their changes for the audit path.
    pub handoff: Arc<Handoff>,
    pub cluster: String,
    pub body: BodyLimits,
}

pub async fn validate_default(
    State(state): State<AdmissionState>,
    caller: Option<Extension<Caller>>,
    request: Request,
) -> Response {
    let cluster = caller
        .and_then(|Extension(c)| c.cluster)
        .unwrap_or_else(|| state.cluster.clone());
    validate(state, cluster, request).await
}

pub async fn validate_cluster(
    State(state): State<AdmissionState>,
    caller: Option<Extension<Caller>>,
    Path(cluster): Path<String>,
    request: Request,
) -> Response {
    if let Some(refusal) = caller.and_then(|Extension(c)| c.refusal(&cluster)) {
        return refused(StatusCode::FORBIDDEN, refusal);
    }
    validate(state, cluster, request).await
}

async fn validate(state: AdmissionState, cluster: String, request: Request) -> Response {
    let started = Instant::now();
    let Some(judge) = &state.judge else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "admission is not enabled: set admission.enabled: true".to_owned(),
        );
    };
    // Held, and counted against the body budget, until answered.
    let received = match body::read(request, &state.body).await {
        Ok(received) => received,
        Err(e) => return refused(e.status(), e.to_string()),
    };
    // Diffing two large objects is CPU work: off the runtime's workers,
    // which serve the audit webhook too.
    let (judge, handoff) = (Arc::clone(judge), Arc::clone(&state.handoff));
    let judged = tokio::task::spawn_blocking(move || {
        let answered = answer(&judge, &handoff, &cluster, &received.bytes);
        drop(received);
        answered
    })
    .await;
    let answered = match judged {
        Ok(answered) => answered,
        Err(e) => {
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the review could not be judged: {e}"),
            );
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match answered {
        Ok((answer, d, object, user)) => {
            AdmissionReviewed {
                outcome: d.outcome.as_str(),
                seconds,
                object: &object,
                user: &user,
                message: d.message.as_deref(),
            }
            .emit();
            Json(answer).into_response()
        }
        Err(message) => {
            AdmissionReviewed {
                outcome: "invalid",
                seconds,
                object: "",
                user: "",
                message: Some(&message),
            }
            .emit();
            refused(StatusCode::BAD_REQUEST, message)
        }
    }
}

type Answered = (review::Answer, Decision, String, String);

fn answer(
    judge: &Judge,
    handoff: &Handoff,
    cluster: &str,
    bytes: &[u8],
) -> Result<Answered, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let review: review::Review<'_> =
        serde_json::from_str(text).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    if review.kind != "AdmissionReview" || review.api_version != "admission.k8s.io/v1" {
        return Err(format!(
            "expected kind AdmissionReview, apiVersion admission.k8s.io/v1, got {:?} {:?}: set admissionReviewVersions: [v1]",
            review.kind, review.api_version
        ));
    }
    let req = review
        .request
        .ok_or_else(|| "the AdmissionReview has no request".to_owned())?;
    let mut d = judge.judge(cluster, &req, jiff::Timestamp::now());
    // A dry run leaves no audit event to join: nothing is kept.
    let handed = d
        .handoff
        .take()
        .filter(|_| !req.dry_run)
        .is_some_and(|admitted| handoff.put(&req.uid, admitted));
    let object = format!("{}/{}/{}", req.resource.resource, req.namespace, req.name);
    let user = username(&req);
    Ok((
        review::Answer::new(response(&req, &d, handed)),
        d,
        object,
        user,
    ))
}

fn response(req: &review::Request<'_>, d: &Decision, handed: bool) -> review::Response {
    let mut annotations = BTreeMap::new();
    if handed {
        annotations.insert(REVIEW_KEY, req.uid.clone());
    }
    if d.outcome != Outcome::Allowed && d.outcome != Outcome::NotJudged {
        annotations.insert(DECISION_KEY, d.outcome.as_str().to_owned());
    } else {
        annotations.insert(DECISION_KEY, "allowed".to_owned());
    }
    if let Some(t) = d.finding_type {
        annotations.insert(RULE_KEY, t.as_str().to_owned());
    }
    if let Some(how) = &d.break_glass {
        annotations.insert(BREAK_GLASS_KEY, how.clone());
    }
    let denied = d.outcome == Outcome::Denied;
    let message = d.message.clone().unwrap_or_default();
    review::Response {
        uid: req.uid.clone(),
        allowed: !denied,
        status: denied.then(|| review::Status {
            code: 403,
            reason: "Forbidden",
            message: format!("driftwatch: {message}"),
        }),
        warnings: match d.outcome {
            Outcome::Warned => vec![format!("driftwatch: {message}")],
            Outcome::BreakGlass => vec![format!(
                "driftwatch: break-glass ({}): {message}",
                d.break_glass.as_deref().unwrap_or("")
            )],
            _ => Vec::new(),
        },
        audit_annotations: annotations,
    }
}

fn username(req: &review::Request<'_>) -> String {
    #[derive(serde::Deserialize)]
    struct User {
        #[serde(default)]
        username: String,
    }
    serde_json::from_str::<User>(req.user_info.get())
        .map(|u| u.username)
        .unwrap_or_default()
}

fn refused(code: StatusCode, message: String) -> Response {
    crate::http::guard::json_error(code, message)
}
