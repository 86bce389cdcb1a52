//! The effective settings of a queue, from its declare arguments and its policy: this is the one
//! place that combines them, with RabbitMQ's rules (limits and TTLs: the lower of the two;
//! everything else: the argument wins).
//!
//! # Invariants
//! - Arguments were validated at declare time (`vhost::validate_queue_args`), so parsing here only
//!   has to pick values; an argument of an unexpected type is ignored.
use warren_protocol::{FieldTable, ShortStr};

/// What a full queue does with a new message (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest ready message (RabbitMQ's default).
    DropHead,
    /// Refuse the new message (basic.nack under confirms).
    RejectPublish,
    /// Refuse and dead-letter the new message.
    RejectPublishDlx,
}

/// `x-queue-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    /// Behaves as a durable classic queue plus `x-delivery-limit` and `x-delivery-count`.
    Quorum,
    /// TODO(streams issue): accepted as a durable classic queue until streams exist.
    Stream,
}

/// Effective settings.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// `x-message-ttl`, ms.
    pub message_ttl: Option<u64>,
    /// `x-expires`, ms: delete the queue after this long unused.
    pub expires: Option<u64>,
    /// `x-max-length`, ready messages.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`, ready body bytes.
    pub max_length_bytes: Option<u64>,
    /// `x-overflow`.
    pub overflow: Overflow,
    /// `x-dead-letter-exchange` (may be `""`, the default exchange).
    pub dlx: Option<ShortStr>,
    /// `x-dead-letter-routing-key`.
    pub dlrk: Option<ShortStr>,
    /// `x-max-priority` (priorities 0..=max).
    pub max_priority: Option<u8>,
    /// `x-delivery-limit` (quorum queues): deliveries after which a message is dead-lettered.
    pub delivery_limit: Option<u64>,
    /// `x-single-active-consumer`.
    pub single_active: bool,
    /// `x-queue-type`.
    pub kind: QueueType,
    /// `x-overflow` was given as an argument (a policy's `overflow` then does not apply).
    pub overflow_from_args: bool,
}

impl QueueSettings {
    pub fn from_args(args: &FieldTable) -> QueueSettings {
        let int = |k: &str| args.get(k).and_then(|v| v.as_i64()).and_then(|v| u64::try_from(v).ok());
        let string = |k: &str| {
            args.get(k).and_then(|v| v.as_bytes()).map(|b| ShortStr::truncating(bytes::Bytes::copy_from_slice(b)))
        };
        let kind = match args.get("x-queue-type").and_then(|v| v.as_bytes()) {
            Some(b"quorum") => QueueType::Quorum,
            Some(b"stream") => QueueType::Stream,
            _ => QueueType::Classic,
        };
        QueueSettings {
            message_ttl: int("x-message-ttl"),
            expires: int("x-expires"),
            max_length: int("x-max-length"),
            max_length_bytes: int("x-max-length-bytes"),
            overflow: match args.get("x-overflow").and_then(|v| v.as_bytes()) {
                Some(b"reject-publish") => Overflow::RejectPublish,
                Some(b"reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => Overflow::DropHead,
            },
            dlx: string("x-dead-letter-exchange"),
            dlrk: string("x-dead-letter-routing-key"),
            max_priority: int("x-max-priority").map(|p| p.min(255) as u8),
            delivery_limit: int("x-delivery-limit"),
            single_active: args.get("x-single-active-consumer").and_then(|v| v.as_bool()).unwrap_or(false),
            kind,
            overflow_from_args: args.get("x-overflow").is_some(),
        }
    }

    /// Apply a policy's definition where RabbitMQ lets it apply.
    pub fn with_policy(mut self, p: Option<&crate::policy::Policy>) -> QueueSettings {
        let Some(p) = p else { return self };
        let lower = |arg: Option<u64>, pol: Option<u64>| match (arg, pol) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.message_ttl = lower(self.message_ttl, p.int("message-ttl"));
        self.expires = lower(self.expires, p.int("expires"));
        self.max_length = lower(self.max_length, p.int("max-length"));
        self.max_length_bytes = lower(self.max_length_bytes, p.int("max-length-bytes"));
        self.delivery_limit = lower(self.delivery_limit, p.int("delivery-limit"));
        if self.dlx.is_none() {
            self.dlx = p.string("dead-letter-exchange").map(|s| ShortStr::from(s.to_string()));
        }
        if self.dlrk.is_none() {
            self.dlrk = p.string("dead-letter-routing-key").map(|s| ShortStr::from(s.to_string()));
        }
        if !self.overflow_from_args {
            self.overflow = match p.string("overflow") {
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => self.overflow,
            };
        }
        self
    }

    /// True when messages can expire in this queue by the queue's own TTL.
    pub fn has_limits(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}
