//! The words every stage shares, with no I/O: the object a request touched
//! ([`ObjectRef`]), who made it ([`Actor`]), the request's identity
//! ([`RequestId`]), times, field changes, a drift's transitions, and the
//! attributed change ([`ChangeRecord`]) that the history stores and every
//! finding is a view of.
//!
//! Stages import from here; nothing here imports a stage but the borrowed
//! audit event it reads ([`crate::decode::Event`]).

mod actor;
mod change;
mod context;
mod drift;
mod object;
pub(crate) mod path;
mod record;
mod request;
mod risk;
pub mod time;
mod verdict;

pub(crate) use actor::effective_username;
pub use actor::{Actor, Impersonator, client_of};
pub use change::Change;
pub use context::{ChangesSource, ContextState, FieldManagers, LiveContext, Unavailable};
pub use drift::{
    DriftClosed, DriftRef, DriftState, DriftTransition, DriftedPath, MAX_DRIFTED_PATHS, OpenDrift,
    Verification, fingerprint,
};
pub use object::{ManagedBy, ObjectRef, Owner, PipelineObject, PipelineSource, PipelineVia};
pub use path::{PathPattern, PatternError, pointer_tokens};
pub use record::ChangeRecord;
pub use request::{RequestId, STORE_KEY_LEN};
pub use risk::Risk;
pub use time::Time;
pub use verdict::{FindingType, Severity, VerdictKind};
