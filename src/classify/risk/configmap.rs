//! ConfigMaps that are cluster configuration: EKS's identity mapping and
//! the cluster DNS.

use serde_json::Value;

use super::path::Path;
use super::{Ctx, Op, Sink};
use crate::model::Severity::{Critical, High};

pub fn check(ctx: &Ctx<'_>, sink: &mut Sink) {
    if ctx.ev.namespace() != "kube-system" {
        return;
    }
    match ctx.name() {
        // IAM roles and users to Kubernetes groups, system:masters
        // included: any write can hand out cluster-admin, and deleting it
        // locks the nodes out. Reported whatever the write touched.
        "aws-auth" => {
            let data = ctx.at("/data").cloned().unwrap_or(Value::Null);
            sink.push_always("aws_auth_modified", &Path::of("data"), data, Critical);
        }
        // The Corefile can forward or rewrite any name, the API server's
        // and the registries' included, for every pod.
        "coredns" if ctx.op != Op::Delete => {
            if let Some(corefile) = ctx.at("/data/Corefile") {
                sink.push(
                    "coredns_modified",
                    &Path::of("data.Corefile"),
                    corefile.clone(),
                    High,
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Ev;

    fn cm(
        verb: &'static str,
        namespace: &'static str,
        name: &'static str,
        request: Option<&'static str>,
        response: Option<&'static str>,
    ) -> Vec<&'static str> {
        Ev {
            verb,
            resource: "configmaps",
            namespace,
            name,
            request,
            response,
            ..Ev::default()
        }
        .rules()
    }

    const AWS_AUTH: &str = r#"{"kind":"ConfigMap","metadata":{"name":"aws-auth","namespace":"kube-system"},"data":{"mapRoles":"- rolearn: arn:aws:iam::111122223333:role/attacker\n  username: attacker\n  groups:\n  - system:masters\n"}}"#;

    #[test]
    fn any_write_to_aws_auth() {
        assert_eq!(
            cm("update", "kube-system", "aws-auth", Some(AWS_AUTH), None),
            ["aws_auth_modified"]
        );
        // Even a label patch, and a delete.
        let label = r#"{"metadata":{"labels":{"a":"b"}}}"#;
        assert_eq!(
            cm(
                "patch",
                "kube-system",
                "aws-auth",
                Some(label),
                Some(AWS_AUTH)
            ),
            ["aws_auth_modified"]
        );
        assert_eq!(
            cm("delete", "kube-system", "aws-auth", None, None),
            ["aws_auth_modified"]
        );
        // The same name elsewhere is an application's.
        assert!(cm("update", "shop", "aws-auth", Some(AWS_AUTH), None).is_empty());
    }

    #[test]
    fn corefile_writes() {
        let after = r#"{"kind":"ConfigMap","metadata":{"name":"coredns","namespace":"kube-system"},"data":{"Corefile":".:53 {\n    forward . 203.0.113.53\n}\n"}}"#;
        let patch = r#"{"data":{"Corefile":".:53 {\n    forward . 203.0.113.53\n}\n"}}"#;
        assert_eq!(
            cm("patch", "kube-system", "coredns", Some(patch), Some(after)),
            ["coredns_modified"]
        );
        let annotate = r#"{"metadata":{"annotations":{"note":"x"}}}"#;
        assert!(
            cm(
                "patch",
                "kube-system",
                "coredns",
                Some(annotate),
                Some(after)
            )
            .is_empty()
        );
        assert!(cm("update", "kube-system", "kube-proxy", Some(after), None).is_empty());
    }
}
