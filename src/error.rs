//! Error vocabulary shared across modules: which side of the proxy a failure came from.

use serde::{Deserialize, Serialize};

/// Which side failed; decides what the client is told and is recorded in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The MCP client sent something wrong.
    Client,
    /// The MCP server behind the proxy failed or misbehaved.
    Upstream,
    /// The proxy itself could not do its job (for example the audit store failed).
    Internal,
}
