//! Codec of RabbitMQ's stream protocol (the `rabbitmq_stream` plugin, port 5552): framing,
//! client-to-server requests, server-to-client responses and commands, and Deliver frames carrying
//! osiris chunks.
//!
//! No I/O and no broker state: it runs in the stream connection's reader (split and decode) and
//! writer (encode) tasks.
//!
//! Layout:
//! - [`frame`]: `size:u32` prefix, [`split_frame`] (streaming, `Ok(None)` = need more bytes).
//! - [`request`]: [`Request`], every frame a client sends (decode + encode).
//! - [`response`]: [`Response`], every frame a server sends (encode + decode), and allocation-free
//!   encoders for the frequent ones.
//! - [`chunk`]: Deliver frames; [`deliver_messages`] builds one around the caller's message bodies
//!   for vectored writes.
//! - [`constants`]: command keys ([`key`]), response codes ([`code`]), offset types, versions.
//! - [`wire`], [`crc32`], [`error`]: primitive types, the chunk checksum, errors.
//!
//! Wire format: RabbitMQ's `PROTOCOL.adoc` (rabbitmq-server, deps/rabbitmq_stream/docs) and, where
//! it is silent or differs, what `rabbit_stream_core.erl` and osiris write and what the Java and
//! Python clients read (noted at each place).
//!
//! # Invariants
//! - Nothing here panics on input: every decoder returns an error for malformed bytes.
//! - Decoding never copies message bodies or strings: they are `Bytes` slices of the frame, which
//!   is itself a slice of the read buffer.
//! - Every encoder writes whole frames, size prefix included, and never fails (Deliver building
//!   reports counts that do not fit as a [`ChunkError`]).
//! - Strings are raw bytes; UTF-8 is the server's business (RabbitMQ does not check it either).
pub mod chunk;
pub mod constants;
pub mod crc32;
pub mod error;
pub mod frame;
pub mod request;
pub mod response;
pub mod wire;

#[cfg(test)]
mod tests;

pub use chunk::{
    deliver_entries, deliver_messages, ChunkEntry, ChunkHeader, ChunkMeta, Deliver, DeliverFrame, SubBatch,
};
pub use constants::{code, key, offset_type};
pub use error::{ChunkError, StreamDecodeError, StreamFrameError};
pub use frame::split_frame;
pub use request::{CommandVersion, OffsetSpec, PublishedMessage, Request};
pub use response::{
    encode_close, encode_credit_response, encode_heartbeat, encode_metadata_update, encode_publish_confirm,
    encode_publish_error, encode_response, encode_tune, Broker, PublishingError, Response, StreamMetadata,
};
pub use wire::Properties;
