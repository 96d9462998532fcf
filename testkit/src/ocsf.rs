//! OCSF documents against the schema subset driftwatch ships
//! (`tests/fixtures/ocsf/schema-1.3.0-subset.json`, with its provenance):
//! one checker for the formats' unit tests and the end-to-end tests.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// The schema subset, read from driftwatch's `tests/fixtures/ocsf/`.
pub fn schema() -> Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ocsf/schema-1.3.0-subset.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(serde_json::from_str(&text)?)
}

/// What in `v` breaks the subset: Detection Finding's required attributes
/// and enums, its evidence (with the event's base attributes) as an API
/// Activity, and every object in them; empty when it conforms. `has_call`
/// is false for a closed drift's alert, whose evidence names no endpoint.
pub fn problems(schema: &Value, v: &Value, has_call: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let df = &schema["classes"]["detection_finding"];
    attributes(schema, df, v, "finding", &mut problems);
    check(
        schema,
        "evidences[]",
        &v["evidences"],
        "finding.evidences",
        &mut problems,
    );
    check(
        schema,
        "resource_details[]",
        &v["resources"],
        "finding.resources",
        &mut problems,
    );
    for key in ["activity_id", "severity_id", "status_id"] {
        let allowed = df["enums"][key].as_array().cloned().unwrap_or_default();
        if !allowed.contains(&v[key]) {
            problems.push(format!(
                "finding.{key}: {} is not in the enum {allowed:?}",
                v[key]
            ));
        }
    }
    for key in ["class_uid", "category_uid"] {
        let want = if key == "class_uid" {
            &df["uid"]
        } else {
            &df[key]
        };
        if &v[key] != want {
            problems.push(format!("finding.{key}: {} is not {want}", v[key]));
        }
    }
    let type_uid = v["activity_id"].as_i64().map(|a| 2004 * 100 + a);
    if v["type_uid"].as_i64() != type_uid {
        problems.push(format!(
            "finding.type_uid: {} for activity {}",
            v["type_uid"], v["activity_id"]
        ));
    }
    let api = &schema["classes"]["api_activity"];
    let mut activity = v["evidences"][0].clone();
    for base in api["base_event"].as_array().into_iter().flatten() {
        if let Some(base) = base.as_str() {
            activity[base] = v[base].clone();
        }
    }
    let mut required = api.clone();
    if !has_call && let Some(r) = required["required"].as_object_mut() {
        r.remove("src_endpoint");
    }
    attributes(schema, &required, &activity, "api_activity", &mut problems);
    problems
}

fn check(schema: &Value, ty: &str, v: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(inner) = ty.strip_suffix("[]") {
        match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(schema, inner, item, &format!("{at}[{i}]"), problems);
                }
            }
            None => problems.push(format!("{at}: not an array")),
        }
        return;
    }
    let ok = match ty {
        "integer_t" | "long_t" | "timestamp_t" => v.is_i64() || v.is_u64(),
        "string_t" => v.is_string(),
        _ => v.is_object(),
    };
    if !ok {
        problems.push(format!("{at}: not a {ty}: {v}"));
        return;
    }
    if let Some(object) = schema["objects"].get(ty) {
        attributes(schema, object, v, at, problems);
    }
}

fn attributes(schema: &Value, def: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    for (name, ty) in def["required"].as_object().into_iter().flatten() {
        match v.get(name) {
            Some(value) if !value.is_null() => check(
                schema,
                ty.as_str().unwrap_or(""),
                value,
                &format!("{at}.{name}"),
                problems,
            ),
            _ => problems.push(format!("{at}.{name}: required, missing")),
        }
    }
    for (name, ty) in def["optional_types"].as_object().into_iter().flatten() {
        if let Some(value) = v.get(name).filter(|x| !x.is_null()) {
            check(
                schema,
                ty.as_str().unwrap_or(""),
                value,
                &format!("{at}.{name}"),
                problems,
            );
        }
    }
    if let Some(any) = def["at_least_one"].as_array()
        && !any.iter().any(|n| {
            n.as_str()
                .and_then(|n| v.get(n))
                .is_some_and(|x| !x.is_null())
        })
    {
        problems.push(format!("{at}: none of {any:?}"));
    }
}
