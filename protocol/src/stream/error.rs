//! Errors of the stream codec: splitting frames, decoding their content, building Deliver chunks.
//!
//! # Invariants
//! - Every error a client can cause maps to the response code RabbitMQ closes the connection with
//!   (`response_code`): RabbitMQ answers any frame it cannot parse with a Close of UNKNOWN_FRAME and
//!   an oversized frame with FRAME_TOO_LARGE.
use super::constants::code;

/// A frame could not be split off the read buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFrameError {
    #[error("frame of {size} bytes exceeds frame_max {max}")]
    TooLarge { size: u32, max: u32 },
    #[error("frame of {0} bytes cannot hold a key and a version")]
    TooSmall(u32),
}

impl StreamFrameError {
    /// The code of the Close the server sends for this error.
    pub fn response_code(&self) -> u16 {
        match self {
            StreamFrameError::TooLarge { .. } => code::FRAME_TOO_LARGE,
            StreamFrameError::TooSmall(_) => code::UNKNOWN_FRAME,
        }
    }
}

/// The content of a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamDecodeError {
    #[error("truncated frame")]
    Truncated,
    #[error("bytes after the last field of the frame")]
    TrailingBytes,
    #[error("unknown command key {key:#06x} version {version}")]
    UnknownCommand { key: u16, version: u16 },
    #[error("null string where a string is required")]
    NullString,
    #[error("unknown offset type {0}")]
    BadOffsetType(u16),
    #[error("chunk CRC is {found:#010x}, its data gives {computed:#010x}")]
    BadCrc { found: u32, computed: u32 },
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
}

impl StreamDecodeError {
    /// The code of the Close the server sends for this error (RabbitMQ: "unknown frame").
    pub fn response_code(&self) -> u16 {
        code::UNKNOWN_FRAME
    }
}

/// A Deliver frame could not be built from the given entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("{0} entries do not fit a chunk (at most 65535)")]
    TooManyEntries(usize),
    #[error("entry of {0} bytes is too large for a chunk entry")]
    EntryTooLarge(usize),
    #[error("more than 2^32-1 records in a chunk")]
    TooManyRecords,
    #[error("deliver frame of {0} bytes does not fit the 32-bit size prefix")]
    TooLarge(u64),
}
