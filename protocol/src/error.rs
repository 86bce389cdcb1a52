//! Decoding errors. Each maps to the AMQP reply code RabbitMQ uses for it (see `reply_code`).
use crate::constants::{FRAME_ERROR, NOT_IMPLEMENTED, SYNTAX_ERROR};

/// A frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame end byte was {0:#04x}, expected 0xce")]
    BadFrameEnd(u8),
    #[error("frame of {size} bytes exceeds frame_max {max}")]
    TooLarge { size: u32, max: u32 },
    #[error("unknown frame type {0}")]
    UnknownType(u8),
}

impl FrameError {
    /// spec: all of these are connection exceptions with 501 FRAME_ERROR.
    pub fn reply_code(&self) -> u16 {
        FRAME_ERROR
    }
}

/// A method, content header or field table could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    #[error("truncated payload")]
    Truncated,
    #[error("unknown method class {class} method {method}")]
    Unknown { class: u16, method: u16 },
    #[error("invalid field value type {0:#04x} in field table")]
    BadFieldType(u8),
    #[error("field table nested too deeply")]
    TooDeep,
    #[error("bytes after the last property")]
    TrailingBytes,
    #[error("Malformed UTF-8 in shortstr")]
    BadUtf8,
}

impl MethodError {
    pub fn reply_code(&self) -> u16 {
        match self {
            MethodError::Unknown { .. } => NOT_IMPLEMENTED,
            // RabbitMQ: connection.close 501 FRAME_ERROR - Malformed UTF-8 in shortstr.
            MethodError::BadUtf8 => FRAME_ERROR,
            _ => SYNTAX_ERROR,
        }
    }
}
