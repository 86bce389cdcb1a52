//! The consistent-hash exchange (`x-consistent-hash`, RabbitMQ's bundled
//! rabbitmq_consistent_hash_exchange plugin): each binding's key is a weight, the number of points
//! its destination gets on a hash ring; a message goes to the destination owning the first point
//! at or after the hash of its routing key (or of the header named by the `hash-header`
//! argument, or of the property named by `hash-property`). A key always maps to the same
//! destination while the bindings do not change, and adding a destination moves only the keys
//! that now land on its points.
//!
//! Runs in: the publishing task (route, under the exchange's bindings read lock); bind / unbind
//! handlers (the ring is rebuilt under its write lock).
//!
//! # Invariants
//! - `points` is sorted by position and holds exactly `weight` points per binding.
//! - Positions depend only on the destination's name, the binding key and the point's index, so
//!   a restart (bindings restored from the definitions file) rebuilds the same ring.
use super::{Binding, Dest, Routed};
use crate::lent::Lent;
use std::hash::BuildHasher;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};

/// The most points one binding may put on the ring.
// rabbitmq-compat: RabbitMQ sets no bound; a weight of billions would make the broker allocate
// that many points, so Warren refuses weights above this (406) instead.
pub const MAX_WEIGHT: u64 = 100_000;

/// Seed of the ring's hash: fixed, so positions are the same in every run.
const SEED: u64 = 0x5741_5252_454e_4348;

/// What a message is hashed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// The routing key (the default).
    RoutingKey,
    /// A header's value (`hash-header`); a missing header hashes as empty.
    Header(ShortStr),
    /// A property (`hash-property`): `message_id`, `correlation_id` or `timestamp`.
    Property(Property),
}

/// The properties `hash-property` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    MessageId,
    CorrelationId,
    Timestamp,
}

/// The exchange arguments' rules, with RabbitMQ's texts (406 PRECONDITION_FAILED).
pub fn validate_args(args: &FieldTable) -> Result<(), String> {
    hash_on(args).map(|_| ())
}

/// What the arguments say to hash on.
pub fn hash_on(args: &FieldTable) -> Result<HashOn, String> {
    let text = |k: &str| args.get(k).and_then(|v| v.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
    match (text("hash-header"), text("hash-property")) {
        (Some(_), Some(_)) => Err("hash-header and hash-property are mutually exclusive".into()),
        (Some(h), None) => Ok(HashOn::Header(ShortStr::from(h))),
        (None, Some(p)) => match p.as_str() {
            "message_id" => Ok(HashOn::Property(Property::MessageId)),
            "correlation_id" => Ok(HashOn::Property(Property::CorrelationId)),
            "timestamp" => Ok(HashOn::Property(Property::Timestamp)),
            other => Err(format!("Unsupported property: {other}")),
        },
        (None, None) => Ok(HashOn::RoutingKey),
    }
}

/// A binding key's weight, with RabbitMQ's texts for keys that are not one.
pub fn weight(key: &ShortStr) -> Result<u64, String> {
    let text = key.to_str_lossy();
    match text.parse::<i64>() {
        Ok(w) if w <= 0 => Err("The binding key must be greater than 0".into()),
        Ok(w) if w as u64 > MAX_WEIGHT => Err(format!("The binding key must be at most {MAX_WEIGHT}")),
        Ok(w) => Ok(w as u64),
        Err(_) => Err(format!("The binding key must be an integer: <<\"{text}\">>")),
    }
}

/// The ring of one exchange.
pub struct Ring {
    /// What messages are hashed on.
    on: HashOn,
    /// (position, destination), sorted by position.
    points: Vec<(u64, Dest)>,
}

/// The hash of `bytes` on the ring.
fn position(bytes: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(SEED).hash_one(bytes)
}

impl Ring {
    /// An empty ring hashing on what `args` say (declare has validated them).
    pub fn new(args: &FieldTable) -> Ring {
        Ring { on: hash_on(args).unwrap_or(HashOn::RoutingKey), points: Vec::new() }
    }

    /// Rebuild from the exchange's bindings (after any change: binds and unbinds are rare).
    pub fn rebuild(&mut self, all: &[Binding]) {
        self.points.clear();
        for b in all {
            let w = weight(&b.routing_key).unwrap_or(0);
            let name = match &b.dest {
                Dest::Queue(q) => [b"q:".as_slice(), q.name.as_bytes()].concat(),
                Dest::Exchange(x) => [b"x:".as_slice(), x.name.as_bytes()].concat(),
            };
            for i in 0..w {
                let mut id = name.clone();
                id.extend_from_slice(format!("/{}/{i}", b.routing_key.to_str_lossy()).as_bytes());
                self.points.push((position(&id), b.dest.clone()));
            }
        }
        self.points.sort_by_key(|p| p.0);
    }

    /// The destination of a message; whether there was one (an empty ring routes nowhere).
    pub fn route(&self, keys: &[&[u8]], headers: Option<&FieldTable>, properties: Lent<'_>, out: &mut Routed) -> bool {
        if self.points.is_empty() {
            return false;
        }
        let h = match &self.on {
            HashOn::RoutingKey => position(keys.first().copied().unwrap_or_default()),
            HashOn::Header(name) => position(&value_bytes(headers.and_then(|h| h.get(&name.to_str_lossy())))),
            HashOn::Property(p) => position(&property_bytes(*p, properties)),
        };
        let i = self.points.partition_point(|(pos, _)| *pos < h) % self.points.len();
        out.push(&self.points[i].1);
        true
    }
}

/// The bytes a header value hashes as (strings by their bytes, numbers by their decimal text).
fn value_bytes(v: Option<&FieldValue>) -> Vec<u8> {
    match v {
        None => Vec::new(),
        Some(v) => match (v.as_bytes(), v.as_i64()) {
            (Some(b), _) => b.to_vec(),
            (None, Some(n)) => n.to_string().into_bytes(),
            (None, None) => format!("{v:?}").into_bytes(),
        },
    }
}

/// The bytes a property hashes as (missing: empty).
fn property_bytes(p: Property, properties: Lent<'_>) -> Vec<u8> {
    let Ok(props) = BasicProperties::decode(properties.share()) else { return Vec::new() };
    match p {
        Property::MessageId => props.message_id.map(|s| s.as_bytes().to_vec()),
        Property::CorrelationId => props.correlation_id.map(|s| s.as_bytes().to_vec()),
        Property::Timestamp => props.timestamp.map(|t| t.to_string().into_bytes()),
    }
    .unwrap_or_default()
}
