//! Bytes to audit events: the `audit.k8s.io/v1` model and the containers it
//! arrives in, cloud envelopes included.

mod arena;
mod body;
mod encoding;
mod envelope;
mod event;

pub use arena::{Arena, DEFAULT_INFLATE_LIMIT};
pub use body::{
    Decoded, DecodedEvent, RejectReason, Rejection, decode_bytes, decode_bytes_in,
    decode_bytes_into, decode_str,
};
pub use encoding::decompress_reader;
pub use event::{Event, NotAnEvent, ObjectRef, ResponseStatus, Stage, UserInfo, query_param};
