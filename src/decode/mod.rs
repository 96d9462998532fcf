//! Bytes to audit events: the `audit.k8s.io/v1` model and the containers it
//! arrives in.

mod body;
mod event;

pub use body::{
    Decoded, DecodedEvent, RejectReason, Rejection, decode_bytes, decode_bytes_into, decode_str,
};
pub use event::{Event, NotAnEvent, ObjectRef, ResponseStatus, Stage, UserInfo, query_param};
