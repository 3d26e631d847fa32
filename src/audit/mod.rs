//! Audit events and the writer that makes them durable.

pub mod bound;
pub mod event;
pub mod settle;
pub mod writer;

pub use event::{AuditEvent, EventId, EventIds, EventType, Metadata, Outcome, RiskLevel};
pub use writer::{Ack, AuditError, AuditSink};
