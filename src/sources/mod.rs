//! Where audit bytes come from. A source hands bytes to the pipeline and
//! acknowledges them only once the pipeline says they are durably accepted.

pub mod file;
pub mod hold;
pub mod kafka;
pub mod webhook;
