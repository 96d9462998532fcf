//! Request and response bodies: manifests as Git holds them, objects as the
//! API server returns them, kubectl's patches, a pod as the ReplicaSet
//! controller creates it.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::cluster::App;
use crate::gojson;
use crate::time::rfc3339_secs;

/// What the API server adds to a stored object.
pub struct Live<'a> {
    pub uid: &'a str,
    pub resource_version: &'a str,
    pub generation: u64,
}

/// `fieldsV1` of the pipeline's field manager, per resource.
fn pipeline_fields(resource: &str) -> Value {
    match resource {
        "deployments" => json!({
            "f:metadata": {
                "f:annotations": {".": {}, "f:argocd.argoproj.io/tracking-id": {}},
                "f:labels": {".": {}, "f:app.kubernetes.io/instance": {}, "f:app.kubernetes.io/name": {}, "f:app.kubernetes.io/part-of": {}}
            },
            "f:spec": {
                "f:replicas": {}, "f:selector": {},
                "f:template": {
                    "f:metadata": {
                        "f:annotations": {".": {}, "f:prometheus.io/port": {}, "f:prometheus.io/scrape": {}},
                        "f:labels": {".": {}, "f:app.kubernetes.io/name": {}}
                    },
                    "f:spec": {
                        "f:containers": {"k:{\"name\":\"app\"}": {
                            ".": {}, "f:env": {}, "f:image": {}, "f:name": {}, "f:ports": {},
                            "f:readinessProbe": {}, "f:resources": {}
                        }},
                        "f:serviceAccountName": {}
                    }
                }
            }
        }),
        "configmaps" => json!({
            "f:data": {".": {}, "f:FEATURE_FLAGS": {}, "f:LOG_LEVEL": {}, "f:UPSTREAM_URL": {}},
            "f:metadata": {
                "f:annotations": {".": {}, "f:argocd.argoproj.io/tracking-id": {}},
                "f:labels": {".": {}, "f:app.kubernetes.io/name": {}}
            }
        }),
        _ => json!({
            "f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/name": {}}},
            "f:spec": {
                "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}}},
                "f:selector": {}
            }
        }),
    }
}

/// A manifest of `app` as Git holds it, or with `live` the object as the
/// API server returns it: uid, resourceVersion, managedFields, defaults and
/// status. `manager` is the field manager of the pipeline that applies it.
pub fn manifest(
    app: &App,
    resource: &str,
    obj_name: &str,
    manager: &str,
    live: Option<Live<'_>>,
    now: Timestamp,
) -> Value {
    let (ns, name) = (app.ns, app.name);
    let (kind, api_version, group) = match resource {
        "deployments" => ("Deployment", "apps/v1", "apps"),
        "configmaps" => ("ConfigMap", "v1", ""),
        _ => ("Service", "v1", ""),
    };
    let argo = manager == "argocd-controller";
    let created = rfc3339_secs(now - SignedDuration::from_hours(12 * 24));
    let now = rfc3339_secs(now);
    let labels = if argo {
        json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": ns,
               "app.kubernetes.io/instance": format!("{ns}-{name}")})
    } else {
        json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": ns,
               "kustomize.toolkit.fluxcd.io/name": ns,
               "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
    };
    let mut annotations = json!({});
    if argo {
        annotations["argocd.argoproj.io/tracking-id"] =
            json!(format!("{ns}-{name}:{group}/{kind}:{ns}/{obj_name}"));
    }
    let mut metadata = json!({"name": obj_name, "namespace": ns, "labels": labels});
    if let Some(live) = &live {
        metadata["uid"] = json!(live.uid);
        metadata["resourceVersion"] = json!(live.resource_version);
        metadata["creationTimestamp"] = json!(created);
        let mut managed = vec![json!({
            "manager": manager,
            "operation": if manager == "kustomize-controller" { "Apply" } else { "Update" },
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": pipeline_fields(resource),
        })];
        if resource == "deployments" {
            metadata["generation"] = json!(live.generation);
            annotations["deployment.kubernetes.io/revision"] = json!("17");
            managed.push(json!({
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": now,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
                    "f:status": {"f:availableReplicas": {}, "f:conditions": {}, "f:observedGeneration": {},
                                 "f:readyReplicas": {}, "f:replicas": {}, "f:updatedReplicas": {}}
                },
                "subresource": "status",
            }));
        }
        metadata["managedFields"] = json!(managed);
    }
    metadata["annotations"] = annotations;
    let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    let live = live.is_some();
    match resource {
        "deployments" => {
            let image = format!("registry.example.com/{ns}/{name}:{}", app.image_tag);
            let mut container = json!({
                "name": name,
                "image": image,
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "UPSTREAM_URL", "value": format!("http://{name}.{ns}.svc:8080/v1?timeout=5s&retries=3")},
                    {"name": "GOMAXPROCS", "value": "2"}
                ],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
            });
            let mut pod_spec = json!({"serviceAccountName": name});
            let mut spec = json!({
                "replicas": app.replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            });
            if live {
                container["terminationMessagePath"] = json!("/dev/termination-log");
                container["terminationMessagePolicy"] = json!("File");
                container["imagePullPolicy"] = json!("IfNotPresent");
                pod_spec["restartPolicy"] = json!("Always");
                pod_spec["terminationGracePeriodSeconds"] = json!(30);
                pod_spec["dnsPolicy"] = json!("ClusterFirst");
                pod_spec["schedulerName"] = json!("default-scheduler");
                spec["strategy"] = json!({"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
                spec["revisionHistoryLimit"] = json!(10);
                spec["progressDeadlineSeconds"] = json!(600);
            }
            pod_spec["containers"] = json!([container]);
            spec["template"] = json!({
                "metadata": {
                    "labels": {"app.kubernetes.io/name": name},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
                },
                "spec": pod_spec,
            });
            object["spec"] = spec;
            if live {
                let progressed = format!(
                    "ReplicaSet \"{name}-{}\" has successfully progressed.",
                    app.rs_hash
                );
                object["status"] = json!({
                    "observedGeneration": 52,
                    "replicas": app.replicas,
                    "updatedReplicas": app.replicas,
                    "readyReplicas": app.replicas,
                    "availableReplicas": app.replicas,
                    "conditions": [
                        {"type": "Available", "status": "True", "lastUpdateTime": created,
                         "lastTransitionTime": created, "reason": "MinimumReplicasAvailable",
                         "message": "Deployment has minimum availability."},
                        {"type": "Progressing", "status": "True", "lastUpdateTime": now,
                         "lastTransitionTime": created, "reason": "NewReplicaSetAvailable",
                         "message": progressed},
                    ],
                });
            }
        }
        "configmaps" => {
            object["data"] = json!({
                "LOG_LEVEL": "info",
                "FEATURE_FLAGS": "checkout-v2,search-boost",
                "UPSTREAM_URL": "http://backend:8080/v1?a=1&b=2",
            });
        }
        _ => {
            let mut spec = json!({
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
                "selector": {"app.kubernetes.io/name": name},
            });
            if live {
                spec["clusterIP"] = json!("172.20.41.7");
                spec["clusterIPs"] = json!(["172.20.41.7"]);
                spec["type"] = json!("ClusterIP");
                spec["sessionAffinity"] = json!("None");
            }
            object["spec"] = spec;
        }
    }
    object
}

/// kubectl's client-side apply: a three-way strategic merge patch that
/// carries the new last-applied-configuration.
pub fn client_side_apply_patch(app: &App, resource: &str, manifest: &Value) -> Value {
    let last_applied = gojson::to_string(manifest) + "\n";
    let mut patch = json!({"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied
    }}});
    match resource {
        "deployments" => {
            let image = format!(
                "registry.example.com/{}/{}:{}",
                app.ns, app.name, app.image_tag
            );
            patch["spec"] = container_patch(app.name, &image);
        }
        "configmaps" => {
            patch["data"] =
                json!({"LOG_LEVEL": "info", "FEATURE_FLAGS": "checkout-v2,search-boost"});
        }
        _ => patch["spec"] = json!({"selector": {"app.kubernetes.io/name": app.name}}),
    }
    patch
}

/// `spec` of a strategic merge patch setting the image of container `name`.
pub fn container_patch(name: &str, image: &str) -> Value {
    json!({"template": {"spec": {
        "$setElementOrder/containers": [{"name": name}],
        "containers": [{"image": image, "name": name}]
    }}})
}

/// A pod of `app` as the ReplicaSet controller creates it.
pub fn pod(app: &App, rs_uid: &str) -> Value {
    let (ns, name) = (app.ns, app.name);
    let rs = format!("{name}-{}", app.rs_hash);
    let toleration = |key: &str| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": format!("{rs}-"),
            "namespace": ns,
            "labels": {"app.kubernetes.io/name": name, "pod-template-hash": app.rs_hash},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                 "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "containers": [{
                "name": name,
                "image": format!("registry.example.com/{ns}/{name}:{}", app.image_tag),
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": name,
            "schedulerName": "default-scheduler",
            "tolerations": [toleration("node.kubernetes.io/not-ready"), toleration("node.kubernetes.io/unreachable")],
            "priorityClassName": "standard",
            "enableServiceLinks": false,
        },
        "status": {},
    })
}
