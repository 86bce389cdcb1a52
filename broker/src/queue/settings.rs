//! The effective settings of a queue, from its declare arguments and its policy: this is the one
//! place that combines them, with RabbitMQ's rules (limits and TTLs: the lower of the two;
//! everything else: the argument wins).
//!
//! Queue arguments are known here only: their validation at declare ([`validate_queue_args`]),
//! which of them must match on redeclare ([`QUEUE_EQUIV_ARGS`]), their values ([`QueueType`],
//! [`Overflow`]) and how policies combine with them. A new argument is added in this file.
//!
//! # Invariants
//! - Arguments were validated at declare time ([`validate_queue_args`]), so parsing here only
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

impl Overflow {
    /// An `x-overflow` argument or `overflow` policy value.
    pub fn parse(v: &[u8]) -> Option<Overflow> {
        match v {
            b"drop-head" => Some(Overflow::DropHead),
            b"reject-publish" => Some(Overflow::RejectPublish),
            b"reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
            _ => None,
        }
    }
}

/// `x-queue-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    /// Behaves as a durable classic queue plus `x-delivery-limit` and `x-delivery-count`.
    Quorum,
    /// An append-only log read non-destructively (`queue/stream.rs`, `stream/`).
    Stream,
}

impl QueueType {
    /// An `x-queue-type` value.
    pub fn parse(v: &[u8]) -> Option<QueueType> {
        match v {
            b"classic" => Some(QueueType::Classic),
            b"quorum" => Some(QueueType::Quorum),
            b"stream" => Some(QueueType::Stream),
            _ => None,
        }
    }
    /// The type a queue declared with `args` has (classic when not given).
    pub fn of(args: &FieldTable) -> QueueType {
        args.get("x-queue-type").and_then(|v| v.as_bytes()).and_then(QueueType::parse).unwrap_or(QueueType::Classic)
    }
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
        let kind = QueueType::of(args);
        QueueSettings {
            message_ttl: int("x-message-ttl"),
            expires: int("x-expires"),
            max_length: int("x-max-length"),
            max_length_bytes: int("x-max-length-bytes"),
            overflow: args
                .get("x-overflow")
                .and_then(|v| v.as_bytes())
                .and_then(Overflow::parse)
                .unwrap_or(Overflow::DropHead),
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
            self.overflow = p.string("overflow").and_then(|o| Overflow::parse(o.as_bytes())).unwrap_or(self.overflow);
        }
        self
    }

    /// True when messages can expire in this queue by the queue's own TTL.
    pub fn has_limits(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}

/// Queue arguments compared on redeclare (RabbitMQ's list; others may change freely).
pub const QUEUE_EQUIV_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
];

/// Check the types and ranges of the queue arguments RabbitMQ knows, as RabbitMQ does (406 on a bad
/// one). Unknown arguments are accepted and kept.
pub fn validate_queue_args(args: &FieldTable) -> Result<(), (String, String)> {
    if args.get("x-dead-letter-routing-key").is_some() && args.get("x-dead-letter-exchange").is_none() {
        return Err(("x-dead-letter-routing-key".into(), "{routing_key_but_no_dlx_defined}".into()));
    }
    let quorum = QueueType::of(args) == QueueType::Quorum;
    let stream = QueueType::of(args) == QueueType::Stream;
    if args.get("x-delivery-limit").is_some() && !quorum {
        return Err(("x-delivery-limit".into(), "only quorum queues support a delivery limit".into()));
    }
    for (k, v) in args.iter() {
        let key = k.to_str_lossy();
        let int = || v.as_i64().ok_or_else(|| (key.to_string(), format!("{{unacceptable_type,{}}}", type_name(v))));
        if stream
            && matches!(key.as_ref(), "x-max-length-bytes" | "x-stream-max-segment-size-bytes")
            && v.as_i64().is_none()
        {
            // rabbitmq-compat: a stream's own check, with its own text.
            return Err((key.to_string(), format!("\"expected integer, got {}\"", type_name(v))));
        }
        match key.as_ref() {
            "x-message-ttl"
            | "x-max-length"
            | "x-max-length-bytes"
            | "x-delivery-limit"
            | "x-consumer-timeout"
            | "x-stream-max-segment-size-bytes"
                if int()? < 0 =>
            {
                return Err((key.to_string(), format!("{{value_negative,{}}}", int()?)));
            }
            "x-expires" if int()? <= 0 => {
                return Err((key.to_string(), format!("{{value_zero_or_less,{}}}", int()?)));
            }
            "x-max-priority" => {
                let p = int()?;
                if !(0..=255).contains(&p) {
                    return Err((key.to_string(), format!("{{value_out_of_range,{p}}}")));
                }
            }
            "x-max-age" => {
                let Some(b) = v.as_bytes() else {
                    return Err((key.to_string(), format!("{{unacceptable_type,{}}}", type_name(v))));
                };
                if crate::stream::offset::parse_duration(&String::from_utf8_lossy(b)).is_none() {
                    return Err((key.to_string(), "invalid_max_age".into()));
                }
            }
            "x-single-active-consumer" if v.as_bool().is_none() => {
                return Err((key.to_string(), format!("{{unacceptable_type,{}}}", type_name(v))));
            }
            "x-dead-letter-exchange" | "x-dead-letter-routing-key" | "x-queue-mode" | "x-queue-type" | "x-overflow" => {
                let Some(b) = v.as_bytes() else {
                    return Err((key.to_string(), format!("{{unacceptable_type,{}}}", type_name(v))));
                };
                let ok = match key.as_ref() {
                    "x-overflow" => Overflow::parse(b).is_some(),
                    "x-queue-mode" => matches!(b, b"default" | b"lazy"),
                    "x-queue-type" => QueueType::parse(b).is_some(),
                    _ => true,
                };
                if !ok {
                    return Err((key.to_string(), format!("{{unacceptable_value,{}}}", String::from_utf8_lossy(b))));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn type_name(v: &warren_protocol::FieldValue) -> &'static str {
    use warren_protocol::FieldValue as F;
    match v {
        F::LongStr(_) | F::Bytes(_) => "longstr",
        F::Bool(_) => "bool",
        F::F32(_) | F::F64(_) => "double",
        F::Table(_) => "table",
        F::Array(_) => "array",
        F::Timestamp(_) => "timestamp",
        F::Decimal(..) => "decimal",
        F::Void => "void",
        _ => "signedint",
    }
}
