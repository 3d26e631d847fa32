//! mcp-audit-proxy: a transparent MCP proxy that records every tool call in a durable audit
//! trail.
//!
//! # Layout
//!
//! ```text
//! main.rs, cli.rs     thin entry; clap subcommands (stdio, events, reindex)
//! commands.rs         the modes behind the subcommands
//! config.rs           RawConfig (serde, unknown keys refused) -> Config (validated)
//! error.rs            which side failed: client, upstream, internal
//! jsonrpc/            NDJSON framing with a size limit; classification of raw bytes
//! mcp.rs              borrowed views of the few MCP params and results the proxy reads
//! proxy/pipeline.rs   classify -> assess -> record -> forward or refuse -> correlate -> record
//! proxy/stdio.rs      the stdio front door: spawn the server, move lines, shut down in order
//! proxy/fdio.rs       non-blocking client pipes (no thread hop per read or write)
//! policy/             risk assessment (pure functions)
//! audit/              AuditEvent (the stable JSON), the writer thread with group commit
//! store/              journal (durable record, CRC'd segments) + sled index (references
//!                     into the journal, by id, session, tool, user; links)
//! ```
//!
//! # Data flow of one `tools/call`
//!
//! Bytes in -> frame (size limit, UTF-8) -> classify by `method` -> decode `params` into a
//! borrowed view -> context (session, era, client, server) -> assess risk -> record the access
//! event (durable before forwarding in `sync` mode) -> forward the **original bytes** -> the
//! response is framed and classified -> correlated by id to the waiting context -> the
//! execution or failure event is recorded (durable before the client sees it in `sync` mode)
//! -> the original response bytes go to the client. Everything that is not a `tools/call` is
//! forwarded untouched after classification.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod jsonrpc;
pub mod mcp;
pub mod policy;
pub mod proxy;
pub mod store;
