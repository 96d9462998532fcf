//! Bytes to audit events: the `audit.k8s.io/v1` model and the containers it
//! arrives in, cloud envelopes included.

mod arena;
mod body;
mod decoded;
mod encoding;
mod envelope;
mod event;
mod snippet;

pub use arena::{Arena, DEFAULT_INFLATE_LIMIT, DEFAULT_INFLATE_RATIO};
pub use body::{decode_body, decode_bytes, decode_bytes_in, decode_bytes_into, decode_str};
pub use decoded::{
    Decoded, DecodedEvent, Limits, MAX_LISTED, RejectReason, Rejection, Rejections, WORK_PER_ITEM,
};
pub use encoding::decompress_reader;
pub use event::{
    Event, JsonStr, NotAnEvent, ObjectRef, ResponseStatus, Stage, Strs, UserInfo, query_param,
};
