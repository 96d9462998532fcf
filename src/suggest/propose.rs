//! From findings to proposed allowances: which findings may be trusted at
//! all, grouped by identity and by scope (API group, resource, verbs,
//! namespaces, names and, for shared objects, fields), and why the rest
//! is not suggested.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{FindingType, PathPattern};

use super::collect::Seen;

/// Names listed in a scope when there are at most this many; beyond it
/// they are left out, unless the resource is sensitive.
pub const MAX_NAMES: usize = 5;
/// A sensitive resource is always scoped by name; one written under more
/// names than this is not suggested.
pub const MAX_SENSITIVE_NAMES: usize = 20;
/// Namespaces listed when there are at most this many (always, for a
/// sensitive resource).
pub const MAX_NAMESPACES: usize = 10;
/// More changed keys than this under one parent become `parent.*`.
const MAX_KEYS_PER_PARENT: usize = 5;

/// The identity an allowance trusts: never a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Identity {
    /// `NAMESPACE:NAME`, as `who.service_accounts` takes it.
    ServiceAccount {
        namespace: String,
        name: String,
    },
    User(String),
}

impl Identity {
    pub fn describe(&self) -> String {
        match self {
            Identity::ServiceAccount { namespace, name } => {
                format!("service account {namespace}:{name}")
            }
            Identity::User(u) => format!("user {u}"),
        }
    }

    /// The allowance name: `suggested/NAMESPACE/NAME` or `suggested/USER`.
    pub fn allowance_name(&self) -> String {
        match self {
            Identity::ServiceAccount { namespace, name } => {
                format!("suggested/{namespace}/{name}")
            }
            Identity::User(u) => format!("suggested/{u}"),
        }
    }

    /// EKS components authenticate through AWS-managed roles.
    pub fn is_eks(&self) -> bool {
        matches!(self, Identity::User(u) if u.starts_with("eks:"))
    }
}

/// One proposed allowance: an identity and the scopes of its writes.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub name: String,
    pub identity: Identity,
    /// The product token every reported write of the identity carried
    /// (`cert-manager-cainjector` of `cert-manager-cainjector/v1.16.1 ...`).
    pub user_agent: Option<String>,
    pub verify_aws_arn: bool,
    pub scopes: Vec<Scope>,
    pub risk: String,
}

impl Proposal {
    pub fn removes(&self) -> usize {
        self.scopes.iter().map(|s| s.removes).sum()
    }
}

/// One `what` entry.
#[derive(Debug, Clone)]
pub struct Scope {
    pub api_group: String,
    /// `pods` or `pods/status`.
    pub resource: String,
    pub verbs: Vec<String>,
    /// `None`: any namespace; `[""]`: cluster-scoped.
    pub namespaces: Option<Vec<String>>,
    /// `None`: any name.
    pub names: Option<Vec<String>>,
    /// Path patterns; empty: any field.
    pub fields: Vec<String>,
    /// Ids of the findings this scope was made from.
    pub members: Vec<String>,
    /// How many of them replaying with the allowance removed.
    pub removes: usize,
    /// What was generalised or left out, for the reader.
    pub notes: Vec<String>,
}

/// Findings not suggested, grouped by identity, resource and reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Withheld {
    pub identity: String,
    pub api_group: String,
    pub resource: String,
    pub verbs: BTreeSet<String>,
    pub findings: usize,
    pub reason: String,
}

/// Identity, API group, resource and reason.
type WithheldKey = (String, String, String, String);

/// Collects withheld findings into one entry per identity, resource and
/// reason: the verbs seen and how many.
#[derive(Debug, Default)]
pub struct WithheldSet(BTreeMap<WithheldKey, (BTreeSet<String>, usize)>);

impl WithheldSet {
    pub fn add(&mut self, f: &Seen, reason: &str) {
        let e = self
            .0
            .entry((
                f.username.clone(),
                f.group.clone(),
                f.rbac_resource(),
                reason.to_owned(),
            ))
            .or_default();
        e.0.insert(f.verb.clone());
        e.1 += 1;
    }

    pub fn into_vec(self) -> Vec<Withheld> {
        let mut out: Vec<Withheld> = self
            .0
            .into_iter()
            .map(
                |((identity, api_group, resource, reason), (verbs, findings))| Withheld {
                    identity,
                    api_group,
                    resource,
                    verbs,
                    findings,
                    reason,
                },
            )
            .collect();
        out.sort_by(|a, b| b.findings.cmp(&a.findings).then_with(|| a.cmp(b)));
        out
    }
}

/// Why a finding of another type than `out_of_band_change` is never suggested.
fn type_reason(t: FindingType) -> &'static str {
    match t {
        FindingType::InteractiveAccess => {
            "interactive sessions (exec, attach, port-forward, debug, proxy) are never allowed; they are triaged by what they run"
        }
        FindingType::PipelineImpersonation
        | FindingType::PipelineCredentialMisuse
        | FindingType::UserAgentSpoofing => {
            "involves a sanctioned pipeline's identity or user agent: fix the pipeline's declaration or investigate, never allow it"
        }
        FindingType::RiskyPipelineChange => {
            "a pipeline delivered dangerous content: review it in the pipeline's source"
        }
        FindingType::DeniedChange => {
            "driftwatch's admission webhook denied the write: nothing changed to allow"
        }
        FindingType::OutOfBandChange => "",
    }
}

/// Resources no suggestion ever covers, with why.
pub fn never(group: &str, resource: &str, sub: Option<&str>) -> Option<&'static str> {
    const RBAC: &[&str] = &[
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
    ];
    Some(match (group, resource, sub) {
        ("rbac.authorization.k8s.io", _, _) => {
            "RBAC writes grant permissions; review and write by hand"
        }
        ("", r, _) if RBAC.contains(&r) => {
            "RBAC writes grant permissions; review and write by hand"
        }
        ("admissionregistration.k8s.io", _, _) => {
            "admission webhooks and policies see or change every request; review and write by hand (packs scope them to caBundle fields)"
        }
        ("apiregistration.k8s.io", _, _) => {
            "APIServices hand a whole API group to a server; review and write by hand"
        }
        ("apiextensions.k8s.io", _, _) => {
            "CRDs define APIs and their conversion webhooks; review and write by hand"
        }
        ("", "secrets", _) => {
            "Secrets hold credentials; review and write by hand, scoped to named keys"
        }
        ("", "pods", Some("exec" | "attach" | "portforward" | "ephemeralcontainers")) => {
            "interactive access to pods is never allowed"
        }
        (_, _, Some("proxy")) => {
            "proxy subresources reach kubelets and pods directly (nodes/proxy runs commands in any pod of the node)"
        }
        ("", "serviceaccounts", Some("token")) => {
            "serviceaccounts/token mints credentials for the account"
        }
        ("certificates.k8s.io", _, _) => {
            "certificate signing requests and their approval issue credentials"
        }
        ("" | "events.k8s.io", "events", _) => {
            "deleting Events erases the cluster's record of what happened"
        }
        _ => return None,
    })
}

/// Who may be trusted: a service account or a machine user; never a
/// person, an unauthenticated or impersonated request, a node writing
/// outside its own objects, an administrator.
fn identity(f: &Seen) -> Result<Identity, &'static str> {
    if f.impersonated {
        return Err("impersonated requests are never covered by an allowance");
    }
    let unauthenticated = f.username.is_empty()
        || f.username == "system:anonymous"
        || f.groups.iter().any(|g| g == "system:unauthenticated");
    if unauthenticated {
        return Err("unauthenticated writes are never trusted");
    }
    if f.groups.iter().any(|g| g == "system:masters") {
        return Err(
            "a system:masters member can do anything: its writes are an administrator's; review them",
        );
    }
    if let Some(sa) = f.username.strip_prefix("system:serviceaccount:") {
        let Some((namespace, name)) = sa.split_once(':') else {
            return Err("not a service account name this allowance format can hold");
        };
        if namespace.is_empty() || name.is_empty() || name.contains(':') || sa.contains('*') {
            return Err("not a service account name this allowance format can hold");
        }
        if name == "default" {
            return Err(
                "the default service account is every pod's that names no other: trusting it trusts them all",
            );
        }
        if name == "argocd-server" {
            return Err(
                "argocd-server writes what people do in Argo CD's UI: those edits are not the pipeline",
            );
        }
        return Ok(Identity::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }
    if f.username.starts_with("system:node:") {
        return Err(
            "a node writing beyond its own objects is what a stolen kubelet credential looks like",
        );
    }
    if f.username.contains('@') {
        return Err(PERSON);
    }
    Ok(Identity::User(f.username.clone()))
}

const PERSON: &str = "a person's changes are what driftwatch reports: declare the pipeline they come from, or fix the drift";

/// A write made with a person's tool, or by a GitOps controller that
/// belongs under `pipelines:`.
fn client_reason(f: &Seen) -> Option<&'static str> {
    let client = f.client.as_deref().unwrap_or("");
    let human = matches!(
        client,
        "kubectl" | "helm" | "oc" | "k9s" | "lens" | "openlens" | "headlamp" | "kubectx"
    ) || client.starts_with("kubectl-")
        || f.field_manager
            .as_deref()
            .is_some_and(|m| m.starts_with("kubectl"));
    if human {
        return Some(
            "written with kubectl or Helm: a person's or a CI job's change; declare the pipeline, or fix the drift",
        );
    }
    if matches!(client, "argocd" | "flux") {
        return Some("a GitOps controller: declare it under pipelines:, not allow:");
    }
    None
}

/// Resources whose scopes always name their objects.
fn sensitive(group: &str, resource: &str, sub: Option<&str>) -> bool {
    const SENSITIVE: &[(&str, &str)] = &[
        ("", "configmaps"),
        ("", "endpoints"),
        ("", "services"),
        ("", "serviceaccounts"),
        ("", "namespaces"),
        ("", "nodes"),
        ("", "persistentvolumes"),
        ("coordination.k8s.io", "leases"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.k8s.io", "networkpolicies"),
        ("storage.k8s.io", "storageclasses"),
        ("apps", "daemonsets"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
    ];
    sub != Some("status") && SENSITIVE.contains(&(group, resource))
}

/// Shared objects whose updates are scoped to the fields they changed.
fn field_scoped(group: &str, resource: &str, sub: Option<&str>) -> bool {
    sub.is_none()
        && matches!(
            (group, resource),
            ("", "configmaps" | "endpoints") | ("coordination.k8s.io", "leases")
        )
}

/// The identity and resource a scope is built for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Cell {
    identity: Identity,
    group: String,
    resource: String,
    subresource: Option<String>,
}

/// Groups `findings` into proposals (not yet measured); the rest goes to
/// `withheld` with why. `taken` are the allowance names already in the
/// config: names must be unique.
pub fn build(
    findings: &[Seen],
    min_findings: usize,
    taken: &BTreeSet<String>,
    withheld: &mut WithheldSet,
) -> Vec<Proposal> {
    let mut cells: BTreeMap<Cell, Vec<&Seen>> = BTreeMap::new();
    let mut by_identity: BTreeMap<Identity, Vec<&Seen>> = BTreeMap::new();
    for f in findings {
        if f.finding_type != FindingType::OutOfBandChange {
            withheld.add(f, type_reason(f.finding_type));
            continue;
        }
        if let Some(reason) = never(&f.group, &f.resource, f.subresource.as_deref()) {
            withheld.add(f, reason);
            continue;
        }
        let who = match identity(f) {
            Ok(who) => who,
            Err(reason) => {
                withheld.add(f, reason);
                continue;
            }
        };
        by_identity.entry(who.clone()).or_default().push(f);
        if let Some(reason) = client_reason(f) {
            withheld.add(f, reason);
            continue;
        }
        cells
            .entry(Cell {
                identity: who,
                group: f.group.clone(),
                resource: f.resource.clone(),
                subresource: f.subresource.clone(),
            })
            .or_default()
            .push(f);
    }
    let mut scopes: BTreeMap<Identity, Vec<Scope>> = BTreeMap::new();
    for (cell, members) in &cells {
        for scope in cell_scopes(cell, members, min_findings, withheld) {
            scopes.entry(cell.identity.clone()).or_default().push(scope);
        }
    }
    let mut names = taken.clone();
    scopes
        .into_iter()
        .map(|(identity, scopes)| {
            let seen = by_identity.get(&identity).map_or(&[][..], Vec::as_slice);
            let user_agent = one_product(seen);
            let name = unique_name(identity.allowance_name(), &mut names);
            let verify_aws_arn = identity.is_eks();
            let mut p = Proposal {
                name,
                identity,
                user_agent,
                verify_aws_arn,
                scopes,
                risk: String::new(),
            };
            p.risk = super::risk::text(&p);
            p
        })
        .collect()
}

fn unique_name(base: String, names: &mut BTreeSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while names.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    names.insert(name.clone());
    name
}

/// The product token of the user agent of every finding, when they share one.
fn one_product(findings: &[&Seen]) -> Option<String> {
    let mut products = findings.iter().map(|f| {
        f.user_agent
            .as_deref()
            .and_then(|ua| ua.split_once('/'))
            .map(|(p, _)| p)
            .filter(|p| !p.is_empty() && !p.contains(' '))
    });
    let first = products.next()??;
    products.all(|p| p == Some(first)).then(|| first.to_owned())
}

/// The scopes of one identity's writes to one resource; findings that
/// cannot be scoped are withheld.
fn cell_scopes(
    cell: &Cell,
    members: &[&Seen],
    min_findings: usize,
    withheld: &mut WithheldSet,
) -> Vec<Scope> {
    let sub = cell.subresource.as_deref();
    let resource = match sub {
        Some(s) => format!("{}/{s}", cell.resource),
        None => cell.resource.clone(),
    };
    let withhold = |withheld: &mut WithheldSet, fs: &[&Seen], reason: &str| {
        for f in fs {
            withheld.add(f, reason);
        }
    };
    let risky: BTreeSet<&str> = members
        .iter()
        .flat_map(|f| f.risks.iter().map(|(rule, _)| rule.as_str()))
        .collect();
    if !risky.is_empty() {
        let rules: Vec<&str> = risky.into_iter().collect();
        let reason = format!(
            "some of these writes carried risky content ({}): an allowance never silences danger, and this identity's writes here need a person's review",
            rules.join(", ")
        );
        withhold(withheld, members, &reason);
        return Vec::new();
    }
    let is_sensitive = sensitive(&cell.group, &cell.resource, sub);
    let (named, unnamed): (Vec<&Seen>, Vec<&Seen>) = members.iter().partition(|f| f.name.is_some());
    let members: Vec<&Seen> = if is_sensitive {
        withhold(
            withheld,
            &unnamed,
            "writes to unnamed objects (collections, generated names) of a sensitive resource cannot be scoped by name",
        );
        named
    } else {
        members.to_vec()
    };
    let parts: Vec<(Vec<&Seen>, bool)> = if field_scoped(&cell.group, &cell.resource, sub) {
        let (updates, others): (Vec<&Seen>, Vec<&Seen>) = members
            .iter()
            .partition(|f| matches!(f.verb.as_str(), "update" | "patch"));
        vec![(updates, true), (others, false)]
    } else {
        vec![(members, false)]
    };
    let mut out = Vec::new();
    for (part, with_fields) in parts {
        if part.is_empty() {
            continue;
        }
        if part.len() < min_findings {
            let reason = format!("too few to suggest (--min-findings {min_findings})");
            withhold(withheld, &part, &reason);
            continue;
        }
        match scope(cell, &resource, &part, is_sensitive, with_fields) {
            Ok(s) => out.push(s),
            Err(reason) => withhold(withheld, &part, &reason),
        }
    }
    out
}

fn scope(
    cell: &Cell,
    resource: &str,
    part: &[&Seen],
    is_sensitive: bool,
    with_fields: bool,
) -> Result<Scope, String> {
    let mut notes = Vec::new();
    let verbs: BTreeSet<String> = part.iter().map(|f| f.verb.clone()).collect();
    // A Namespace is filed under itself: scoped by name only.
    let namespaced = !(cell.group.is_empty() && cell.resource == "namespaces");
    let namespaces: BTreeSet<String> = part
        .iter()
        .map(|f| f.namespace.clone().unwrap_or_default())
        .collect();
    let namespaces = if !namespaced {
        None
    } else if namespaces.len() <= MAX_NAMESPACES || is_sensitive {
        Some(namespaces.into_iter().collect())
    } else {
        notes.push(format!(
            "any namespace: written in {} namespaces",
            namespaces.len()
        ));
        None
    };
    let names: BTreeSet<String> = part.iter().filter_map(|f| f.name.clone()).collect();
    let all_named = part.iter().all(|f| f.name.is_some());
    let names = if is_sensitive {
        if names.len() > MAX_SENSITIVE_NAMES {
            return Err(format!(
                "written under {} different names, more than {MAX_SENSITIVE_NAMES}: too many to name, and a sensitive resource is never allowed by any name",
                names.len()
            ));
        }
        Some(names.into_iter().collect())
    } else if all_named && names.len() <= MAX_NAMES {
        Some(names.into_iter().collect())
    } else {
        notes.push(if all_named {
            format!("any name: {} different objects", names.len())
        } else {
            "any name: some objects were created with generated names".to_owned()
        });
        None
    };
    let fields = if with_fields {
        let fields = fields(part.iter().flat_map(|f| f.paths.iter().map(String::as_str)));
        if fields.is_empty() {
            return Err(
                "their changed fields are not known (the first write seen of each object, or no body logged), and a field-scoped allowance never covers such a write"
                    .to_owned(),
            );
        }
        fields
    } else {
        Vec::new()
    };
    Ok(Scope {
        api_group: cell.group.clone(),
        resource: resource.to_owned(),
        verbs: verbs.into_iter().collect(),
        namespaces,
        names,
        fields,
        members: part.iter().map(|f| f.id.clone()).collect(),
        removes: 0,
        notes,
    })
}

/// Change paths generalised to the patterns the loader accepts: list
/// items (`[0]`, `[name=x]`, `[-]`) become `[*]`, map keys stay, and many
/// keys under one parent become `parent.*`.
pub fn fields<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut patterns: BTreeSet<Vec<String>> = BTreeSet::new();
    for path in paths {
        let Ok(p) = PathPattern::parse(path) else {
            continue;
        };
        let segs = p
            .segments()
            .iter()
            .map(|s| {
                if s.starts_with('[') && !s.starts_with("[\"") {
                    "[*]".to_owned()
                } else {
                    s.clone()
                }
            })
            .collect();
        patterns.insert(segs);
    }
    let mut children: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for p in &patterns {
        if p.len() > 1 {
            *children.entry(p[..p.len() - 1].to_vec()).or_default() += 1;
        }
    }
    let collapse: BTreeSet<Vec<String>> = children
        .into_iter()
        .filter(|(_, n)| *n > MAX_KEYS_PER_PARENT)
        .map(|(parent, _)| parent)
        .collect();
    let mut out: BTreeSet<String> = BTreeSet::new();
    for p in patterns {
        let parent = &p[..p.len().saturating_sub(1)];
        if p.len() > 1 && collapse.contains(parent) {
            let mut star = parent.to_vec();
            star.push("*".to_owned());
            out.insert(render(&star));
        } else {
            out.insert(render(&p));
        }
    }
    out.into_iter().collect()
}

/// Segments back to a path: `a.b[*].c`, `data["ca.crt"]`.
fn render(segs: &[String]) -> String {
    let mut s = String::new();
    for seg in segs {
        if !seg.starts_with('[') && !s.is_empty() {
            s.push('.');
        }
        s.push_str(seg);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(username: &str, verb: &str, group: &str, resource: &str) -> Seen {
        Seen {
            id: format!("{username}-{verb}-{resource}-{}", rand_id()),
            finding_type: FindingType::OutOfBandChange,
            username: username.to_owned(),
            groups: vec!["system:authenticated".to_owned()],
            impersonated: false,
            user_agent: Some("cluster-autoscaler/v1.31.0 (linux/amd64) kubernetes/$Format".into()),
            client: Some("cluster-autoscaler".into()),
            field_manager: None,
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: None,
            namespace: Some("kube-system".into()),
            name: Some("cluster-autoscaler-status".into()),
            paths: vec!["data.status".into()],
            risks: Vec::new(),
        }
    }

    fn rand_id() -> u32 {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    const CA: &str = "system:serviceaccount:kube-system:cluster-autoscaler";

    struct Built {
        proposals: Vec<Proposal>,
        withheld: Vec<Withheld>,
    }

    fn build(findings: &[Seen], min_findings: usize, taken: &BTreeSet<String>) -> Built {
        let mut withheld = WithheldSet::default();
        let proposals = super::build(findings, min_findings, taken, &mut withheld);
        Built {
            proposals,
            withheld: withheld.into_vec(),
        }
    }

    #[test]
    fn list_items_generalise_and_map_keys_stay() {
        assert_eq!(
            fields([
                "webhooks[0].clientConfig.caBundle",
                "webhooks[name=a.example.com].clientConfig.caBundle",
                r#"metadata.annotations["control-plane.alpha.kubernetes.io/leader"]"#,
                r#"data["ca.crt"]"#,
                "subsets[-]",
            ]),
            vec![
                r#"data["ca.crt"]"#.to_owned(),
                r#"metadata.annotations["control-plane.alpha.kubernetes.io/leader"]"#.to_owned(),
                "subsets[*]".to_owned(),
                "webhooks[*].clientConfig.caBundle".to_owned(),
            ]
        );
        // Each pattern parses and covers the path it came from.
        for path in [
            "webhooks[3].clientConfig.caBundle",
            r#"metadata.annotations["a/b"]"#,
        ] {
            let f = fields([path]);
            let p = PathPattern::parse(&f[0]).unwrap();
            assert!(p.covers(path), "{f:?} covers {path}");
        }
    }

    #[test]
    fn many_keys_under_one_parent_become_a_wildcard() {
        let paths: Vec<String> = (0..8).map(|i| format!("data.key{i}")).collect();
        let f = fields(
            paths
                .iter()
                .map(String::as_str)
                .chain(["metadata.labels.app"]),
        );
        assert_eq!(
            f,
            vec!["data.*".to_owned(), "metadata.labels.app".to_owned()]
        );
    }

    #[test]
    fn a_status_configmap_is_scoped_to_its_name_and_fields() {
        let fs: Vec<Seen> = (0..3)
            .map(|_| seen(CA, "update", "", "configmaps"))
            .collect();
        let built = build(&fs, 2, &BTreeSet::new());
        assert!(built.withheld.is_empty(), "{:?}", built.withheld);
        let [p] = built.proposals.as_slice() else {
            panic!("{:?}", built.proposals)
        };
        assert_eq!(p.name, "suggested/kube-system/cluster-autoscaler");
        assert_eq!(p.user_agent.as_deref(), Some("cluster-autoscaler"));
        let [s] = p.scopes.as_slice() else {
            panic!("{:?}", p.scopes)
        };
        assert_eq!(s.names, Some(vec!["cluster-autoscaler-status".to_owned()]));
        assert_eq!(s.namespaces, Some(vec!["kube-system".to_owned()]));
        assert_eq!(s.fields, vec!["data.status".to_owned()]);
        assert_eq!(s.members.len(), 3);
    }

    #[test]
    fn control_objects_people_and_risky_writes_are_never_proposed() {
        let mut fs = Vec::new();
        for _ in 0..3 {
            fs.push(seen(
                CA,
                "create",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
            ));
            fs.push(seen(CA, "patch", "", "secrets"));
            fs.push(seen(
                CA,
                "patch",
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
            ));
            fs.push(seen("alice@example.com", "update", "apps", "deployments"));
            fs.push(seen(
                "system:serviceaccount:shop:default",
                "update",
                "",
                "configmaps",
            ));
            let mut kubectl = seen("kubernetes-admin", "update", "apps", "replicasets");
            kubectl.client = Some("kubectl".into());
            fs.push(kubectl);
            let mut risky = seen(CA, "create", "apps", "daemonsets");
            if fs.len() < 10 {
                risky.risks.push((
                    "privileged_container".into(),
                    crate::model::Severity::Critical,
                ));
            }
            fs.push(risky);
        }
        let built = build(&fs, 2, &BTreeSet::new());
        assert!(built.proposals.is_empty(), "{:#?}", built.proposals);
        let reasons: Vec<&str> = built.withheld.iter().map(|w| w.reason.as_str()).collect();
        for expected in [
            "RBAC writes grant permissions",
            "Secrets hold credentials",
            "admission webhooks",
            "a person's changes",
            "default service account",
            "written with kubectl",
            "risky content (privileged_container)",
        ] {
            assert!(
                reasons.iter().any(|r| r.contains(expected)),
                "{expected:?} in {reasons:#?}"
            );
        }
        let total: usize = built.withheld.iter().map(|w| w.findings).sum();
        assert_eq!(total, fs.len());
    }

    #[test]
    fn many_names_are_dropped_only_where_the_resource_is_not_sensitive() {
        let mut fs = Vec::new();
        for i in 0..8 {
            let mut f = seen(CA, "delete", "reports.kyverno.io", "ephemeralreports");
            f.name = Some(format!("r-{i}"));
            fs.push(f);
            let mut cm = seen(CA, "create", "", "configmaps");
            cm.name = Some(format!("cm-{i}"));
            fs.push(cm);
        }
        let built = build(&fs, 2, &BTreeSet::new());
        let scopes = &built.proposals[0].scopes;
        let reports = scopes
            .iter()
            .find(|s| s.resource == "ephemeralreports")
            .unwrap();
        assert_eq!(reports.names, None);
        let cms = scopes.iter().find(|s| s.resource == "configmaps").unwrap();
        assert_eq!(cms.names.as_ref().map(Vec::len), Some(8));
        // A create's changes are not known: no fields, a scope of its own.
        assert!(cms.fields.is_empty() && cms.verbs == ["create"]);
    }

    #[test]
    fn updates_of_unknown_fields_and_small_groups_are_withheld() {
        let mut fs = Vec::new();
        for _ in 0..3 {
            let mut lease = seen(CA, "update", "coordination.k8s.io", "leases");
            lease.paths.clear();
            fs.push(lease);
        }
        fs.push(seen(CA, "update", "apps", "deployments"));
        let built = build(&fs, 2, &BTreeSet::new());
        assert!(built.proposals.is_empty());
        assert!(
            built.withheld[0]
                .reason
                .contains("changed fields are not known")
        );
        assert!(
            built.withheld[1]
                .reason
                .contains("too few to suggest (--min-findings 2)")
        );
    }

    #[test]
    fn names_are_unique_against_the_config() {
        let fs: Vec<Seen> = (0..2)
            .map(|_| seen(CA, "update", "", "configmaps"))
            .collect();
        let taken = ["suggested/kube-system/cluster-autoscaler".to_owned()].into();
        let built = build(&fs, 2, &taken);
        assert_eq!(
            built.proposals[0].name,
            "suggested/kube-system/cluster-autoscaler-2"
        );
    }

    #[test]
    fn user_agents_need_one_product_token() {
        let a = seen(CA, "update", "", "configmaps");
        let mut b = a.clone();
        assert_eq!(
            one_product(&[&a, &b]).as_deref(),
            Some("cluster-autoscaler")
        );
        b.user_agent = Some("csi-attacher/v4.7.0".into());
        assert_eq!(one_product(&[&a, &b]), None);
        b.user_agent = None;
        assert_eq!(one_product(&[&a, &b]), None);
    }
}
