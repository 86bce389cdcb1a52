//! AMQP errors as handlers return them. One place (`connection::Connection::fail`) turns them into
//! `channel.close` or `connection.close` frames.
//!
//! # Invariants
//! - Reply texts start with RabbitMQ's name of the code (`NOT_FOUND - ...`), as clients display them.
//! - A reply text over 255 bytes is sent cut to 252 bytes and `...` ([`reply_text`]), as RabbitMQ does.
use warren_protocol::constants::{reply_name, ACCESS_REFUSED};
use warren_protocol::{Method, ShortStr};

/// A soft (channel) or hard (connection) error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmqpError {
    /// Closes one channel; the connection and its other channels go on.
    #[error("channel error {code}: {text}")]
    Channel { code: u16, text: String, class_id: u16, method_id: u16 },
    /// Closes the whole connection.
    #[error("connection error {code}: {text}")]
    Connection { code: u16, text: String, class_id: u16, method_id: u16 },
    /// A permission refusal by the core's access-control check: 403 ACCESS_REFUSED, a channel
    /// error once a door gives it ids ([`AmqpError::at`]). Its own kind so the HTTP door can word
    /// it as RabbitMQ's API does (`Access refused.`), unlike the other 403s (reserved names).
    #[error("access refused: {text}")]
    Refused { text: String },
}

pub type AmqpResult<T> = Result<T, AmqpError>;

impl AmqpError {
    /// A channel error in reply to method `m` (or `None` when no method caused it).
    pub fn channel(code: u16, text: impl AsRef<str>, m: Option<&Method>) -> AmqpError {
        let (class_id, method_id) = ids(m);
        AmqpError::Channel { code, text: format!("{} - {}", reply_name(code), text.as_ref()), class_id, method_id }
    }
    /// A connection error in reply to method `m` (or `None`).
    pub fn connection(code: u16, text: impl AsRef<str>, m: Option<&Method>) -> AmqpError {
        let (class_id, method_id) = ids(m);
        AmqpError::Connection { code, text: format!("{} - {}", reply_name(code), text.as_ref()), class_id, method_id }
    }
    /// A channel error naming the class/method ids directly.
    pub fn channel_ids(code: u16, text: impl AsRef<str>, class_id: u16, method_id: u16) -> AmqpError {
        AmqpError::Channel { code, text: format!("{} - {}", reply_name(code), text.as_ref()), class_id, method_id }
    }
    /// A connection error naming the class/method ids directly.
    pub fn connection_ids(code: u16, text: impl AsRef<str>, class_id: u16, method_id: u16) -> AmqpError {
        AmqpError::Connection { code, text: format!("{} - {}", reply_name(code), text.as_ref()), class_id, method_id }
    }
    /// The error as the reply to method `m`: the core reports errors without class/method ids
    /// (they are the AMQP door's business); the channel handlers add them here.
    pub fn at(self, m: &Method) -> AmqpError {
        self.at_ids(m.class_id(), m.method_id())
    }

    /// As [`AmqpError::at`], with the ids given directly (a reply to a method that is not at hand).
    pub fn at_ids(self, c: u16, mid: u16) -> AmqpError {
        match self {
            AmqpError::Refused { text } => {
                AmqpError::Channel { code: ACCESS_REFUSED, text, class_id: c, method_id: mid }
            }
            AmqpError::Channel { code, text, class_id: 0, method_id: 0 } => {
                AmqpError::Channel { code, text, class_id: c, method_id: mid }
            }
            AmqpError::Connection { code, text, class_id: 0, method_id: 0 } => {
                AmqpError::Connection { code, text, class_id: c, method_id: mid }
            }
            other => other,
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            AmqpError::Channel { code, .. } | AmqpError::Connection { code, .. } => *code,
            AmqpError::Refused { .. } => ACCESS_REFUSED,
        }
    }
    pub fn reply_text(&self) -> ShortStr {
        match self {
            AmqpError::Channel { text, .. } | AmqpError::Connection { text, .. } | AmqpError::Refused { text } => {
                reply_text(text.clone())
            }
        }
    }
}

/// A reply text as sent in channel.close / connection.close. rabbitmq-compat: RabbitMQ sends a
/// text longer than a short string holds as its first 252 bytes followed by `...`; here the cut is
/// moved back to a character boundary so the text stays valid UTF-8.
pub fn reply_text(text: impl Into<String>) -> ShortStr {
    const MAX: usize = 255;
    const KEEP: usize = MAX - 3;
    let mut text = text.into();
    if text.len() > MAX {
        let mut cut = KEEP;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    ShortStr::truncating(text)
}

fn ids(m: Option<&Method>) -> (u16, u16) {
    m.map(|m| (m.class_id(), m.method_id())).unwrap_or((0, 0))
}
