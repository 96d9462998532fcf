//! What one write does to the remembered versions of its object, and the
//! field changes read against them.
//!
//! Every write moves the remembered state, whoever made it: a write whose
//! result is not in the event (a `Metadata`-level event, a subresource that
//! answers with something else) makes the versions before it unknown rather
//! than leave them stale. And delivery is unordered (the API server sends its
//! batches concurrently; a slow request's event is emitted after a quicker
//! one that started later): a few recent versions are kept, ordered by
//! `resourceVersion`, and a change is diffed against the newest version
//! older than its own result, so that a controller's status write that
//! overtook a person's edit neither hides nor joins the edit.

use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;

use super::changes::{self, Change};
use crate::decode::Event;

/// Versions kept per object: enough to diff across the reorderings a
/// batch window produces.
const MAX_VERSIONS: usize = 3;

/// One remembered version of an object.
#[derive(Debug, Clone)]
pub(super) struct Version {
    /// `metadata.resourceVersion`, when it is a number (etcd's revision).
    pub(super) rv: Option<u64>,
    /// The stage time of the event it came from.
    pub(super) us: i64,
    pub(super) object: Arc<RawValue>,
}

impl Version {
    pub fn of(object: Arc<RawValue>, us: i64) -> Version {
        Version {
            rv: resource_version(&object),
            us,
            object,
        }
    }

    pub fn bytes(&self) -> usize {
        self.object.get().len()
    }

    /// Ordered by resourceVersion where both have one, else by time.
    fn before(&self, rv: Option<u64>, us: i64) -> bool {
        match (self.rv, rv) {
            (Some(a), Some(b)) => a < b,
            _ => self.us < us,
        }
    }
}

/// The recent versions of one object, oldest first.
#[derive(Debug, Clone, Default)]
pub(super) struct Versions(Vec<Version>);

impl Versions {
    /// Versions read back from a shared store, oldest first.
    pub(super) fn from_vec(v: Vec<Version>) -> Versions {
        Versions(v)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Version> {
        self.0.iter()
    }

    /// The newest version older than a result at `rv` / `us`.
    fn base(&self, rv: Option<u64>, us: i64) -> Option<&RawValue> {
        self.0
            .iter()
            .rev()
            .find(|v| v.before(rv, us))
            .map(|v| &*v.object)
    }

    pub fn insert(&mut self, v: Version) {
        if v.rv.is_some() && self.0.iter().any(|o| o.rv == v.rv) {
            return;
        }
        let at = self
            .0
            .iter()
            .position(|o| !o.before(v.rv, v.us))
            .unwrap_or(self.0.len());
        self.0.insert(at, v);
        if self.0.len() > MAX_VERSIONS {
            self.0.remove(0);
        }
    }

    /// A write at `us` whose result is unknown: the versions before it no
    /// longer describe the object.
    pub fn forget_before(&mut self, us: i64) {
        self.0.retain(|v| v.us > us);
    }

    pub fn drop_larger_than(&mut self, max: usize) {
        self.0.retain(|v| v.bytes() <= max);
    }

    pub fn bytes(&self) -> usize {
        self.0.iter().map(Version::bytes).sum()
    }
}

/// What a write does to the remembered versions.
pub(super) enum Next {
    Version(Arc<RawValue>),
    /// Changed in a way the event does not show.
    Unknown,
    /// Not changed (exec, a token request, a log read...).
    Unchanged,
    Gone,
}

/// Subresources whose write changes the object and answers with the whole
/// object.
const ANSWER_WITH_OBJECT: &[&str] = &[
    "status",
    "approval",
    "finalize",
    "ephemeralcontainers",
    "resize",
];

/// Just enough of a body to tell its shape and version; everything else is
/// skipped without building anything.
#[derive(serde::Deserialize)]
struct Shape<'a> {
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
}

#[derive(serde::Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default, rename = "resourceVersion")]
    resource_version: Option<std::borrow::Cow<'a, str>>,
}

fn resource_version(body: &RawValue) -> Option<u64> {
    shape(body)?.metadata?.resource_version?.parse().ok()
}

fn shape(body: &RawValue) -> Option<Shape<'_>> {
    serde_json::from_str::<Shape<'_>>(body.get()).ok()
}

/// The kind of a whole object (not a patch, not a `Status` reply).
fn object_kind(body: &RawValue) -> Option<String> {
    let s = shape(body)?;
    s.metadata?;
    let kind = s.kind.unwrap_or_default();
    (kind != "Status").then(|| kind.into_owned())
}

/// The whole object as a tree, for a diff.
fn whole_object(body: &RawValue) -> Option<Value> {
    object_kind(body)?;
    serde_json::from_str(body.get()).ok()
}

pub(super) fn next(ev: &Event<'_>, versions: &Versions, us: i64) -> Next {
    let keep = |b: &RawValue| Arc::from(b.to_owned());
    let (verb, sub) = (ev.verb(), ev.subresource());
    let (request, response) = (ev.request_object, ev.response_object);
    match sub {
        "" if matches!(verb, "delete" | "deletecollection") => Next::Gone,
        "" => {
            let whole = response.filter(|b| object_kind(b).is_some()).or_else(|| {
                request.filter(|b| matches!(verb, "create" | "update") && object_kind(b).is_some())
            });
            whole.map_or(Next::Unknown, |b| Next::Version(keep(b)))
        }
        "scale" => scaled(versions, ev, us).map_or(Next::Unknown, Next::Version),
        // A status write changes nothing a diff reads (`status` and the
        // version fields are skipped), so once a version is known it takes
        // no slot: a rollout's burst of status writes, delivered ahead of a
        // person's edit by the API server's concurrent batches, would push
        // out the version that edit must be compared with.
        "status" if !versions.0.is_empty() => Next::Unchanged,
        s if ANSWER_WITH_OBJECT.contains(&s) => {
            let last_kind = versions.0.last().and_then(|v| object_kind(&v.object));
            match response.and_then(|b| object_kind(b).map(|k| (b, k))) {
                Some((b, kind)) if last_kind.is_none_or(|l| l == kind) => Next::Version(keep(b)),
                _ => Next::Unknown,
            }
        }
        // The scheduler binds a pod: its node changed, the rest not shown.
        "binding" => Next::Unknown,
        // An eviction deletes the pod.
        "eviction" if ev.resource() == "pods" => Next::Gone,
        _ => Next::Unchanged,
    }
}

/// The resourceVersion a write's result has: its response's.
fn result_version(ev: &Event<'_>) -> Option<u64> {
    ev.response_object.and_then(resource_version)
}

/// The replicas a `/scale` write set, from its response (a `Scale`) or its
/// request (a whole `Scale`, or a merge patch of one).
fn scale_replicas(ev: &Event<'_>) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Scale {
        spec: Option<ScaleSpec>,
    }
    #[derive(serde::Deserialize)]
    struct ScaleSpec {
        replicas: Option<Value>,
    }
    [ev.response_object, ev.request_object]
        .into_iter()
        .flatten()
        .find_map(|b| serde_json::from_str::<Scale>(b.get()).ok()?.spec?.replicas)
}

/// The version before a `/scale` write with the replicas it set, at the
/// resourceVersion of the write.
fn scaled(versions: &Versions, ev: &Event<'_>, us: i64) -> Option<Arc<RawValue>> {
    let rv = result_version(ev);
    let mut object = whole_object(versions.base(rv, us)?)?;
    *object.get_mut("spec")?.get_mut("replicas")? = scale_replicas(ev)?;
    if let Some(rv) = rv {
        *object.get_mut("metadata")?.get_mut("resourceVersion")? = Value::String(rv.to_string());
    }
    let text = serde_json::to_string(&object).ok()?;
    RawValue::from_string(text).ok().map(Arc::from)
}

/// Field changes of a write: against the newest remembered version older
/// than its result when there is one, else read from the request. The flag
/// says whether they are known: a diff, a scale or a patch body shows what
/// changed; a create, delete, or an update of an object not seen before
/// does not.
pub(super) fn field_changes(
    ev: &Event<'_>,
    versions: &Versions,
    us: i64,
    read_ahead: Option<&Option<Value>>,
) -> (Vec<Change>, bool) {
    let (verb, resource) = (ev.verb(), ev.resource());
    let request = ev.request_object;
    let from_request = || {
        let known = verb == "patch" && request.is_some();
        (changes::from_request(verb, resource, request), known)
    };
    let base = versions.base(result_version(ev), us);
    match ev.subresource() {
        "" => {}
        "scale" => return (scale_change(ev, base), true),
        _ => return from_request(),
    }
    if matches!(verb, "update" | "patch")
        && let Some(base) = base.and_then(whole_object)
    {
        let parsed;
        let after = match read_ahead {
            Some(after) => after.as_ref(),
            None => {
                parsed = result_object(ev);
                parsed.as_ref()
            }
        };
        if let Some(after) = after {
            return (changes::diff(resource, &base, after), true);
        }
    }
    from_request()
}

/// The object after a write to it (not to a subresource): the response, or
/// for `update` the request, which is the whole object.
pub fn result_object(ev: &Event<'_>) -> Option<Value> {
    if !ev.subresource().is_empty() {
        return None;
    }
    ev.response_object.and_then(whole_object).or_else(|| {
        (ev.verb() == "update")
            .then(|| ev.request_object.and_then(whole_object))
            .flatten()
    })
}

fn scale_change(ev: &Event<'_>, base: Option<&RawValue>) -> Vec<Change> {
    let Some(new) = scale_replicas(ev) else {
        return Vec::new();
    };
    let old = base
        .and_then(whole_object)
        .and_then(|o| o.get("spec")?.get("replicas").cloned())
        .unwrap_or(Value::Null);
    if old == new {
        return Vec::new();
    }
    vec![Change {
        path: "spec.replicas".to_owned(),
        old,
        new,
        redacted: false,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(rv: u64, replicas: u64, image: &str) -> String {
        format!(
            r#"{{"kind":"Deployment","apiVersion":"apps/v1","metadata":{{"name":"api","namespace":"shop","resourceVersion":"{rv}"}},"spec":{{"replicas":{replicas},"template":{{"spec":{{"containers":[{{"name":"app","image":"{image}"}}]}}}}}}}}"#
        )
    }

    fn event(json: &str) -> Event<'_> {
        serde_json::from_str(json).unwrap()
    }

    fn raw(json: &str) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(json.to_owned()).unwrap())
    }

    fn versions(objects: &[(String, i64)]) -> Versions {
        let mut v = Versions::default();
        for (o, us) in objects {
            v.insert(Version::of(raw(o), *us));
        }
        v
    }

    #[test]
    fn a_scale_reads_and_moves_the_remembered_replicas() {
        let ev = event(
            r#"{"verb":"patch","objectRef":{"apiGroup":"apps","resource":"deployments","subresource":"scale","namespace":"shop","name":"api"},"requestObject":{"spec":{"replicas":5}},"responseObject":{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"api","resourceVersion":"12"},"spec":{"replicas":5}}}"#,
        );
        let known = versions(&[(deploy(10, 3, "a"), 1)]);
        let changes = field_changes(&ev, &known, 2, None).0;
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].path.as_str(), &changes[0].old, &changes[0].new),
            ("spec.replicas", &Value::from(3), &Value::from(5))
        );
        let Next::Version(next) = next(&ev, &known, 2) else {
            panic!("the scaled object is known")
        };
        let next: Value = serde_json::from_str(next.get()).unwrap();
        assert_eq!(next["spec"]["replicas"], 5);
        assert_eq!(next["metadata"]["resourceVersion"], "12");
        assert_eq!(next["kind"], "Deployment");
        // Without a remembered version the old value is unknown, and so is
        // the object afterwards.
        let none = Versions::default();
        assert_eq!(field_changes(&ev, &none, 2, None).0[0].old, Value::Null);
        assert!(matches!(super::next(&ev, &none, 2), Next::Unknown));
    }

    /// A rollout's burst of status writes, delivered before a person's
    /// edit, does not push out the version the edit is compared with.
    #[test]
    fn status_writes_take_no_version_slot_once_a_version_is_known() {
        let mut known = versions(&[(deploy(10, 2, "nginx:1.25"), 100)]);
        for rv in 20..30 {
            let status = format!(
                r#"{{"verb":"update","objectRef":{{"apiGroup":"apps","resource":"deployments","subresource":"status","namespace":"shop","name":"api"}},"responseObject":{}}}"#,
                deploy(rv, 2, "nginx:1.25")
            );
            let ev = event(&status);
            match next(&ev, &known, 300) {
                Next::Version(o) => known.insert(Version::of(o, 300)),
                Next::Unchanged => {}
                _ => panic!("a status write with its object"),
            }
        }
        let edit = format!(
            r#"{{"verb":"patch","objectRef":{{"apiGroup":"apps","resource":"deployments","namespace":"shop","name":"api"}},"responseObject":{}}}"#,
            deploy(15, 2, "nginx:1.26")
        );
        let changes = field_changes(&event(&edit), &known, 200, None).0;
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].old, Value::from("nginx:1.25"));
        // The first write seen of an object, a status write, is remembered.
        let first = format!(
            r#"{{"verb":"update","objectRef":{{"apiGroup":"apps","resource":"deployments","subresource":"status","namespace":"shop","name":"api"}},"responseObject":{}}}"#,
            deploy(5, 1, "a")
        );
        assert!(matches!(
            next(&event(&first), &Versions::default(), 1),
            Next::Version(_)
        ));
    }

    /// A controller's status write that overtook a person's edit: the edit
    /// is diffed against the version before it, not the one after.
    #[test]
    fn an_edit_delivered_after_a_newer_write_diffs_against_its_own_base() {
        let known = versions(&[
            (deploy(10, 2, "nginx:1.25"), 100),
            (deploy(14, 2, "nginx:1.26"), 300),
        ]);
        let edit = format!(
            r#"{{"verb":"patch","objectRef":{{"apiGroup":"apps","resource":"deployments","namespace":"shop","name":"api"}},"responseObject":{}}}"#,
            deploy(12, 2, "nginx:1.26")
        );
        let changes = field_changes(&event(&edit), &known, 200, None).0;
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].old, Value::from("nginx:1.25"));
        assert_eq!(changes[0].new, Value::from("nginx:1.26"));
    }

    #[test]
    fn a_write_without_its_result_makes_older_versions_unknown() {
        let known = versions(&[(deploy(10, 2, "a"), 100)]);
        let metadata_level = event(
            r#"{"verb":"update","objectRef":{"apiGroup":"apps","resource":"deployments","namespace":"shop","name":"api"}}"#,
        );
        assert!(matches!(next(&metadata_level, &known, 200), Next::Unknown));
        let mut v = known.clone();
        v.forget_before(200);
        assert!(v.base(None, 300).is_none());
        let mut v = known.clone();
        v.forget_before(50);
        assert!(
            v.base(None, 300).is_some(),
            "a late, older unknown write keeps newer versions"
        );
        let text = format!(
            r#"{{"verb":"update","objectRef":{{"apiGroup":"apps","resource":"deployments","subresource":"status","namespace":"shop","name":"api"}},"responseObject":{}}}"#,
            deploy(11, 2, "a")
        );
        // A status write keeps the known version (it changes nothing a diff
        // reads), and is remembered when nothing else is.
        assert!(matches!(next(&event(&text), &known, 150), Next::Unchanged));
        assert!(matches!(
            next(&event(&text), &Versions::default(), 150),
            Next::Version(_)
        ));
        let token = event(
            r#"{"verb":"create","objectRef":{"resource":"serviceaccounts","subresource":"token","namespace":"shop","name":"api"},"responseObject":{"kind":"TokenRequest","metadata":{"name":"api"}}}"#,
        );
        assert!(matches!(next(&token, &known, 150), Next::Unchanged));
        let deleted = event(
            r#"{"verb":"delete","objectRef":{"apiGroup":"apps","resource":"deployments","namespace":"shop","name":"api"}}"#,
        );
        assert!(matches!(next(&deleted, &known, 150), Next::Gone));
    }

    #[test]
    fn versions_are_kept_in_order_and_bounded() {
        let v = versions(&[
            (deploy(14, 1, "a"), 4),
            (deploy(10, 1, "a"), 1),
            (deploy(12, 1, "a"), 2),
            (deploy(12, 1, "a"), 3),
            (deploy(16, 1, "a"), 5),
        ]);
        let rvs: Vec<Option<u64>> = v.0.iter().map(|v| v.rv).collect();
        assert_eq!(rvs, [Some(12), Some(14), Some(16)]);
    }
}
