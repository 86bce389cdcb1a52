//! A channel's last route, remembered: a publish with the same exchange and routing key as the
//! one before it, while neither the vhost's names nor that exchange's bindings changed, goes to
//! the same queues, so it takes them from the last route instead of routing again.
//!
//! Routing a fanout to ten queues cloned ten queue references per message (their counts are
//! also moved by the consumers' cores) and checked each against the ones before it; a publish
//! that hits the memo clones none and looks nothing up.
//!
//! Runs in: the publishing connection's reader (inside [`crate::vhost::VHost::route`]).
//!
//! # Invariants
//! - Only routes that depend on nothing but the exchange, the routing key, the vhost's names and
//!   the exchange's bindings are remembered: the default exchange, or one direct, fanout or
//!   topic exchange (not a delayed one) that reached queues itself (no exchange-to-exchange
//!   binding or alternate exchange was taken), for a message without CC / BCC.
//! - A memo is used only while the names epoch and the exchange's bindings version are the ones
//!   read before the remembered routing; both move, under their write locks, before any change
//!   they cover, so a used memo is what routing would return (a change landing as it is used is
//!   a change just after this publish, as with [`super::NameCache`]).
//! - The queues themselves are `Routed::queues`: the memo is valid only while they are the
//!   remembered route's ([`super::Routed::clear`] forgets it).
//! - Strong references, as in [`super::NameCache`]: the last route's queues (and its exchange)
//!   stay referenced until the channel's next publish or its close; a deleted queue's messages
//!   are gone with its deletion, and its deletion moved the epoch, so it is never used.
use super::{Exchange, ExchangeKind};
use std::sync::Arc;

/// The route that `Routed::queues` holds, if it may be used again.
#[derive(Default)]
pub struct RouteMemo {
    /// Whether the fields below describe `Routed::queues`.
    valid: bool,
    /// The vhost's identity and names epoch ([`crate::vhost::VHost::names_at`]) read before
    /// routing.
    at: (usize, u64),
    /// The exchange routed through (`None`: the default exchange); held, so that its address is
    /// not another exchange's while the memo lives.
    exchange: Option<Arc<Exchange>>,
    /// The exchange's bindings version read before routing (0 for the default exchange).
    version: u64,
    /// The exchange's name then the routing key, copied (compared without touching the
    /// exchange; the buffer is reused from one memo to the next).
    names: Vec<u8>,
    /// Where the routing key starts in `names`.
    split: usize,
}

impl RouteMemo {
    /// Whether a routing of this kind may be remembered (see the invariants).
    #[inline]
    pub fn may_remember(e: &Exchange) -> bool {
        e.kind == e.route_kind && matches!(e.kind, ExchangeKind::Direct | ExchangeKind::Fanout | ExchangeKind::Topic)
    }

    /// Whether the remembered route is the one for `exchange` and `key` now (`at`: the current
    /// names epoch). Reads one exchange's bindings version; no lock.
    #[inline]
    pub fn holds(&self, at: (usize, u64), exchange: &[u8], key: &[u8]) -> Option<Option<&Arc<Exchange>>> {
        if !self.valid
            || self.at != at
            || self.split != exchange.len()
            || self.names[..self.split] != *exchange
            || self.names[self.split..] != *key
        {
            return None;
        }
        match &self.exchange {
            None => Some(None),
            Some(e) if e.bindings_version() == self.version => Some(Some(e)),
            Some(_) => None,
        }
    }

    /// Remember the route just taken for `key` through `exchange` (`None`: the default
    /// exchange), with the epoch and bindings version read before it.
    pub fn remember(&mut self, at: (usize, u64), exchange: Option<&Arc<Exchange>>, version: u64, key: &[u8]) {
        let same = match (&self.exchange, exchange) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.exchange = exchange.cloned();
        }
        self.at = at;
        self.version = version;
        self.names.clear();
        if let Some(e) = exchange {
            self.names.extend_from_slice(e.name.as_bytes());
        }
        self.split = self.names.len();
        self.names.extend_from_slice(key);
        self.valid = true;
    }

    /// `Routed::queues` changed: nothing is remembered.
    #[inline]
    pub fn forget(&mut self) {
        self.valid = false;
    }
}
