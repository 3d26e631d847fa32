//! The proxy: one pipeline per client connection, fed by a front door: the stdio
//! wrapper (`stdio.rs`) or the HTTP gateway (`http/`).

pub mod fdio;
pub mod http;
pub mod pipeline;
pub(crate) mod pool;
pub mod remote;
pub mod stdio;

pub use pipeline::{Outbound, Pipeline, Route, SessionInfo};
