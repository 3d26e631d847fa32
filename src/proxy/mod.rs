//! The proxy: one pipeline per client connection, fed by a front door (stdio today).

pub mod fdio;
pub mod pipeline;
pub mod stdio;

pub use pipeline::{Outbound, Pipeline, Route, SessionInfo};
