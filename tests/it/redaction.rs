//! Configured redaction paths: values withheld from findings and the store.

use anyhow::Result;
use serde_json::json;

use crate::common::{Ev, run};

#[test]
fn configured_paths_are_withheld_from_findings_and_history() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("driftwatch.yaml");
    std::fs::write(
        &config,
        "redaction:\n  paths:\n    - \"**.env[*].value\"\n    - \"data.db-password\"\n",
    )?;
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "ghcr.io/example/api:2", "env": [{"name": "API_TOKEN", "value": "tok-SECRET-123"}]}
    ]}}}});
    let cm = json!({"data": {"db-password": "hunter2-SECRET", "mode": "debug"}});
    let ev = |id: &str, uri: &str, body: &serde_json::Value| {
        Ev::new("patch", uri)
            .audit_id(id)
            .by("alice@example.com", &["system:authenticated"])
            .source_ips(&["10.0.0.7"])
            .body(body.clone())
            .line()
    };
    let input = format!(
        "{}\n{}\n",
        ev(
            "r-1",
            "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-edit",
            &patch
        ),
        ev(
            "r-2",
            "/api/v1/namespaces/shop/configmaps/settings?fieldManager=kubectl-edit",
            &cm
        )
    );
    let data = dir.path().join("data");
    let out = run(
        &[
            "replay",
            "--config",
            config.to_str().unwrap_or_default(),
            "--data-dir",
            data.to_str().unwrap_or_default(),
            "-",
        ],
        Some(input.as_bytes()),
    )?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("SECRET"), "{}", out.stdout);
    let findings = out.findings();
    let changes: Vec<(String, bool)> = findings
        .iter()
        .flat_map(|f| f["changes"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            (
                c["path"].as_str().unwrap_or("").to_owned(),
                c["redacted"] == true,
            )
        })
        .collect();
    assert!(
        changes.contains(&(
            "spec.template.spec.containers[name=api].env[name=API_TOKEN].value".to_owned(),
            true
        )),
        "{changes:?}"
    );
    assert!(
        changes.contains(&(
            "spec.template.spec.containers[name=api].image".to_owned(),
            false
        )),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("data.db-password".to_owned(), true)),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("data.mode".to_owned(), false)),
        "{changes:?}"
    );
    // Nothing of it in any file of the store either.
    for entry in std::fs::read_dir(&data)? {
        let bytes = std::fs::read(entry?.path())?;
        assert!(
            !bytes.windows(6).any(|w| w == b"SECRET"),
            "a redacted value reached the store"
        );
    }
    // And a bad pattern is a config error naming the key.
    std::fs::write(&config, "redaction:\n  paths: [\"  \"]\n")?;
    let out = run(
        &[
            "policy",
            "check",
            "--config",
            config.to_str().unwrap_or_default(),
        ],
        None,
    )?;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains(":2: redaction.paths[0]: invalid redaction pattern"),
        "{}",
        out.stderr
    );
    Ok(())
}
