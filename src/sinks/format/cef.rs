//! Placeholder, fleshed out next.

use crate::sinks::Finding;
use crate::sinks::shape::Alert;

pub(super) fn finding(f: &Finding<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "CEF:0|driftwatch|driftwatch|{}|{}|x|5|",
            env!("CARGO_PKG_VERSION"),
            f.finding_type.as_str()
        )
        .as_bytes(),
    );
}

pub(super) fn alert(a: &Alert, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "CEF:0|driftwatch|driftwatch|{}|{}|x|5|",
            env!("CARGO_PKG_VERSION"),
            a.kind.as_str()
        )
        .as_bytes(),
    );
}
