//! Identifiers: the connection id newtype and RabbitMQ-style random name suffixes. (Channel
//! numbers and delivery tags stay plain `u16` / `u64`: they live inside one channel's code, next
//! to the wire format, and a newtype there bought nothing but conversions.)
//!
//! # Invariants
//! - A `ConnectionId` is never reused within a process (`Broker::next_conn` only grows).

/// Process-unique connection number (for exclusive-queue ownership and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A random identifier suffix in RabbitMQ's style (`amq.gen-XXXX`, `amq.ctag-XXXX`): 22 URL-safe
/// base64 characters from 128 random bits.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u128 = rand::random();
    (0..22)
        .map(|_| {
            let c = ALPHABET[(bits & 63) as usize] as char;
            bits >>= 6;
            c
        })
        .collect()
}
