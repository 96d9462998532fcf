//! Who made a request: the effective identity, the real one behind an
//! impersonation, and the client they used.

use serde::{Deserialize, Serialize};

use crate::decode::{Event, UserInfo};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The effective identity: the impersonated user when impersonation was used.
    pub username: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    /// The real identity, when it impersonated `username`.
    pub impersonated_by: Option<Impersonator>,
    pub user_agent: Option<String>,
    pub client: Option<String>,
    pub source_ips: Vec<String>,
    pub field_manager: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impersonator {
    pub username: String,
    pub groups: Vec<String>,
}

fn strings(v: Option<&crate::decode::Strs<'_>>) -> Vec<String> {
    v.map(|v| v.iter().map(|s| s.clone().into_owned()).collect())
        .unwrap_or_default()
}

impl Actor {
    pub fn of(ev: &Event<'_>) -> Actor {
        let empty = UserInfo::default();
        let real = ev.user.as_ref().unwrap_or(&empty);
        let effective = ev.impersonated_user.as_ref().unwrap_or(real);
        let user_agent = ev.user_agent.as_deref().filter(|s| !s.is_empty());
        Actor {
            username: effective.username.as_deref().unwrap_or("").to_owned(),
            groups: strings(effective.groups.as_ref()),
            uid: effective
                .uid
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            impersonated_by: ev.impersonated_user.as_ref().map(|_| Impersonator {
                username: real.username.as_deref().unwrap_or("").to_owned(),
                groups: strings(real.groups.as_ref()),
            }),
            user_agent: user_agent.map(str::to_owned),
            client: user_agent.map(client_of),
            source_ips: strings(ev.source_ips.as_ref()),
            field_manager: ev.query_param("fieldManager"),
        }
    }

    /// `alice (as system:serviceaccount:...)` when impersonating, else the name.
    pub fn describe(&self) -> String {
        match &self.impersonated_by {
            Some(by) => format!("{} (as {})", by.username, self.username),
            None => self.username.clone(),
        }
    }
}

/// The effective username of an event, without building an [`Actor`].
pub(crate) fn effective_username<'e>(ev: &'e Event<'_>) -> &'e str {
    ev.impersonated_user
        .as_ref()
        .or(ev.user.as_ref())
        .and_then(|u| u.username.as_deref())
        .unwrap_or("")
}

/// A short name for the client program, from the user agent's product token:
/// `kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234` is `kubectl`.
pub fn client_of(user_agent: &str) -> String {
    let product = user_agent
        .split(['/', ' '])
        .next()
        .unwrap_or(user_agent)
        .to_ascii_lowercase();
    let name = match product.as_str() {
        "kubectl.exe" => "kubectl",
        "argocd-application-controller" | "argocd-server" | "argocd" => "argocd",
        "kustomize-controller" | "helm-controller" | "source-controller" | "flux" => "flux",
        other => other,
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients() {
        assert_eq!(
            client_of("kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234"),
            "kubectl"
        );
        assert_eq!(
            client_of("kubectl.exe/v1.31.2 (windows/amd64) kubernetes/abc1234"),
            "kubectl"
        );
        assert_eq!(
            client_of("argocd-application-controller/v2.13.1 (linux/amd64)"),
            "argocd"
        );
        assert_eq!(client_of("kustomize-controller/v1.4.0"), "flux");
        assert_eq!(client_of("Helm/3.16.2"), "helm");
        assert_eq!(client_of("Go-http-client/2.0"), "go-http-client");
    }

    #[test]
    fn impersonation_names_both_identities() {
        let ev: Event<'_> = serde_json::from_str(
            r#"{"user":{"username":"alice","groups":["devs"]},"impersonatedUser":{"username":"system:serviceaccount:argocd:argocd-application-controller","groups":["system:serviceaccounts"]},"userAgent":"kubectl/v1.31.2","requestURI":"/apis/apps/v1/namespaces/s/deployments/a?fieldManager=kubectl-edit"}"#,
        )
        .unwrap();
        let a = Actor::of(&ev);
        assert_eq!(
            a.username,
            "system:serviceaccount:argocd:argocd-application-controller"
        );
        assert_eq!(a.groups, ["system:serviceaccounts"]);
        let by = a.impersonated_by.as_ref().unwrap();
        assert_eq!(
            (by.username.as_str(), by.groups.as_slice()),
            ("alice", &["devs".to_owned()][..])
        );
        assert_eq!(a.field_manager.as_deref(), Some("kubectl-edit"));
        assert_eq!(a.client.as_deref(), Some("kubectl"));
        assert_eq!(effective_username(&ev), a.username);
        assert!(a.describe().starts_with("alice (as "));
    }
}
