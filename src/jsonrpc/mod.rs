//! JSON-RPC over newline-delimited streams: framing and classification of raw bytes.

pub mod frame;
pub mod members;
pub mod message;
pub mod names;
pub mod salvage;
pub mod scan;
pub mod surrogates;

pub use frame::{FrameError, LineFramer};
pub use message::{BatchItem, Invalid, Message, Parsed, RequestId, ResponseBody};
