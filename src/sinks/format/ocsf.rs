//! Placeholder, fleshed out next.

use serde_json::{Value, json};

use crate::sinks::Finding;
use crate::sinks::shape::Alert;

pub(super) fn finding(f: &Finding<'_>) -> Value {
    json!({"id": f.record.id})
}

pub(super) fn alert(a: &Alert) -> Value {
    json!({"kind": a.kind.as_str()})
}
