//! Warren's AMQP 0-9-1 wire codec: frames, methods, field tables and content-header properties.
//!
//! This crate does no I/O and holds no broker state. It runs wherever its caller runs (in Warren, the
//! connection reader and writer tasks).
//!
//! Layout:
//! - [`frame`]: the 7-byte frame header, frame-end check, streaming decode (`Ok(None)` = need more
//!   bytes) and the frame_max check.
//! - [`method`]: every method of 0-9-1 plus RabbitMQ's extensions (generated from the spec JSON).
//! - [`fast`]: hand-written, allocation-free encoders for the hot server-to-client methods.
//! - [`table`]: field tables and arrays with every RabbitMQ value type.
//! - [`properties`]: content headers kept raw, decoded on demand.
//!
//! # Invariants
//! - Nothing here panics on input: every decoder returns an error for malformed bytes.
//! - Short strings are raw bytes (RabbitMQ does not require UTF-8); tables keep order and duplicates.
//! - A message body is never copied by decoding: frames are `Bytes` slices of the read buffer.
pub mod amqp10;
pub mod codec;
pub mod constants;
pub mod error;
pub mod fast;
pub mod frame;
pub mod method;
pub mod properties;
pub mod stream;
pub mod table;
pub mod types;

pub use error::{FrameError, MethodError};
pub use frame::{Frame, FrameType};
pub use method::Method;
pub use properties::{BasicProperties, ContentHeader, ContentHeaderRef};
pub use table::{FieldTable, FieldValue};
pub use types::{LongStr, ShortStr};
