//! Exchanges and their bindings; routing a message to destinations (queues and, for
//! exchange-to-exchange bindings, other exchanges).
//!
//! Runs in: the publishing connection's reader (route), any reader (declare/bind/unbind).
//!
//! # Invariants
//! - Routing takes only a read lock on one exchange's bindings at a time and never holds it while
//!   taking a queue lock (it returns `Arc`s; the vhost walks exchange destinations and the caller
//!   enqueues).
//! - A binding is unique by (destination, routing key, arguments), as in RabbitMQ; binding twice is
//!   a no-op, unbinding a missing binding is not an error.
//! - The direct index and the topic trie always hold exactly the destinations of `all`.
use crate::queue::Queue;
use parking_lot::RwLock;
use std::sync::Arc;
use warren_protocol::{FieldTable, FieldValue, ShortStr};

pub mod topic;

/// Exchange type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &[u8]) -> Option<ExchangeKind> {
        Some(match s {
            b"direct" => ExchangeKind::Direct,
            b"fanout" => ExchangeKind::Fanout,
            b"topic" => ExchangeKind::Topic,
            b"headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Clone)]
pub enum Dest {
    Queue(Arc<Queue>),
    Exchange(Arc<Exchange>),
}

impl Dest {
    /// Same destination (by identity).
    pub fn same(&self, o: &Dest) -> bool {
        match (self, o) {
            (Dest::Queue(a), Dest::Queue(b)) => Arc::ptr_eq(a, b),
            (Dest::Exchange(a), Dest::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A binding of this exchange (the source) to a destination.
#[derive(Clone)]
pub struct Binding {
    /// Destination queue or exchange.
    pub dest: Dest,
    /// Binding key.
    pub routing_key: ShortStr,
    /// Binding arguments (used by the headers exchange).
    pub arguments: FieldTable,
}

/// Bindings of one exchange, indexed for its type.
#[derive(Default)]
pub struct Bindings {
    /// All bindings, in creation order.
    pub all: Vec<Binding>,
    /// Direct exchanges: routing key -> destinations bound with it.
    by_key: crate::vhost::NameMap<Vec<Dest>>,
    /// Topic exchanges: pattern trie.
    trie: topic::TopicTrie<Dest>,
}

/// Routing output: queues and exchanges reached, each at most once.
#[derive(Default)]
pub struct Routed {
    pub queues: Vec<Arc<Queue>>,
    pub exchanges: Vec<Arc<Exchange>>,
}

impl Routed {
    pub fn clear(&mut self) {
        self.queues.clear();
        self.exchanges.clear();
    }
    #[inline]
    fn push(&mut self, d: &Dest) {
        match d {
            Dest::Queue(q) => {
                if !self.queues.iter().any(|x| Arc::ptr_eq(x, q)) {
                    self.queues.push(q.clone());
                }
            }
            Dest::Exchange(e) => {
                if !self.exchanges.iter().any(|x| Arc::ptr_eq(x, e)) {
                    self.exchanges.push(e.clone());
                }
            }
        }
    }
}

/// An exchange.
pub struct Exchange {
    /// Name (never empty: the default exchange is implicit in the vhost).
    pub name: ShortStr,
    /// Type.
    pub kind: ExchangeKind,
    /// Declared durable.
    pub durable: bool,
    /// Deleted when its last binding (as a source) goes.
    pub auto_delete: bool,
    /// Internal: clients may not publish to it directly.
    pub internal: bool,
    /// Declare arguments as given.
    pub arguments: FieldTable,
    /// `alternate-exchange` argument (or, without one, the policy's): where messages this
    /// exchange cannot route go.
    pub alternate: Option<ShortStr>,
    /// The policy that applied when it was declared.
    pub policy: Option<Arc<crate::policy::Policy>>,
    /// Bindings where this exchange is the source.
    pub bindings: RwLock<Bindings>,
    /// Messages published to it, and of those, routed to at least one queue (management API).
    pub counters: ExchangeCounters,
}

/// An exchange's message counters, on a cache line of their own.
#[derive(Default)]
#[repr(align(64))]
pub struct ExchangeCounters {
    /// Messages published to this exchange.
    pub publish_in: std::sync::atomic::AtomicU64,
    /// Of those, messages routed to at least one queue.
    pub publish_out: std::sync::atomic::AtomicU64,
}

impl Exchange {
    pub fn new(
        name: ShortStr,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
        policy: Option<Arc<crate::policy::Policy>>,
    ) -> Arc<Exchange> {
        // As RabbitMQ: the argument wins over the policy.
        let alternate = arguments
            .get("alternate-exchange")
            .and_then(|v| v.as_bytes())
            .map(|b| ShortStr::truncating(bytes::Bytes::copy_from_slice(b)))
            .or_else(|| {
                policy.as_ref().and_then(|p| p.string("alternate-exchange")).map(|a| ShortStr::from(a.to_string()))
            });
        Arc::new(Exchange {
            policy,
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            alternate,
            bindings: RwLock::new(Bindings::default()),
            counters: ExchangeCounters::default(),
        })
    }

    /// Add a binding; false if an identical one exists.
    pub fn bind(&self, b: Binding) -> bool {
        let mut bs = self.bindings.write();
        if bs.all.iter().any(|x| x.dest.same(&b.dest) && x.routing_key == b.routing_key && x.arguments == b.arguments) {
            return false;
        }
        match self.kind {
            ExchangeKind::Direct => {
                let v = bs.by_key.entry(b.routing_key.clone()).or_default();
                if !v.iter().any(|d| d.same(&b.dest)) {
                    v.push(b.dest.clone());
                }
            }
            ExchangeKind::Topic => bs.trie.insert(b.routing_key.as_bytes(), b.dest.clone()),
            _ => {}
        }
        bs.all.push(b);
        true
    }

    /// Remove a binding; false if there was none.
    pub fn unbind(&self, dest: &Dest, routing_key: &ShortStr, arguments: &FieldTable) -> bool {
        let mut bs = self.bindings.write();
        let Some(i) =
            bs.all.iter().position(|x| x.dest.same(dest) && x.routing_key == *routing_key && x.arguments == *arguments)
        else {
            return false;
        };
        bs.all.remove(i);
        match self.kind {
            ExchangeKind::Direct => {
                // Another binding (other arguments) may still lead to the same place with this key.
                let still = bs.all.iter().any(|x| x.dest.same(dest) && x.routing_key == *routing_key);
                if !still {
                    if let Some(v) = bs.by_key.get_mut(routing_key) {
                        v.retain(|d| !d.same(dest));
                        if v.is_empty() {
                            bs.by_key.remove(routing_key);
                        }
                    }
                }
            }
            ExchangeKind::Topic => bs.trie.remove(routing_key.as_bytes(), |d| d.same(dest)),
            _ => {}
        }
        true
    }

    /// Remove every binding to `dest` (it was deleted). Returns true if bindings were removed and
    /// none are left.
    pub fn unbind_dest(&self, dest: &Dest) -> bool {
        let mut bs = self.bindings.write();
        let before = bs.all.len();
        bs.all.retain(|x| !x.dest.same(dest));
        if bs.all.len() == before {
            return false;
        }
        for v in bs.by_key.values_mut() {
            v.retain(|d| !d.same(dest));
        }
        bs.by_key.retain(|_, v| !v.is_empty());
        bs.trie.retain(&|d: &Dest| !d.same(dest));
        bs.all.is_empty()
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.read().all.is_empty()
    }

    /// Destinations for a message with routing `keys` (the routing key plus CC/BCC) and `headers`.
    /// Returns whether anything matched.
    #[inline]
    pub fn route_into(&self, keys: &[ShortStr], headers: Option<&FieldTable>, out: &mut Routed) -> bool {
        let bs = self.bindings.read();
        let (q0, e0) = (out.queues.len(), out.exchanges.len());
        let mut any = false;
        match self.kind {
            ExchangeKind::Direct => {
                for k in keys {
                    if let Some(ds) = bs.by_key.get(k) {
                        any = true;
                        for d in ds {
                            out.push(d);
                        }
                    }
                }
            }
            ExchangeKind::Fanout => {
                for b in &bs.all {
                    any = true;
                    out.push(&b.dest);
                }
            }
            ExchangeKind::Topic => {
                let mut found = Vec::new();
                for k in keys {
                    bs.trie.match_into(k.as_bytes(), &mut found);
                }
                for d in &found {
                    any = true;
                    out.push(d);
                }
            }
            ExchangeKind::Headers => {
                let empty = FieldTable::new();
                let h = headers.unwrap_or(&empty);
                for b in &bs.all {
                    if headers_match(&b.arguments, h) {
                        any = true;
                        out.push(&b.dest);
                    }
                }
            }
        }
        any || out.queues.len() != q0 || out.exchanges.len() != e0
    }
}

/// Headers exchange matching, as RabbitMQ: `x-match` = `all` (default), `any`, `all-with-x`,
/// `any-with-x`. Binding keys starting `x-` are ignored except in the `-with-x` modes. A void binding
/// value matches on the header's presence; otherwise values match as in `same_value`.
pub fn headers_match(binding: &FieldTable, headers: &FieldTable) -> bool {
    let mode = binding.get("x-match").and_then(|v| v.as_bytes()).unwrap_or(b"all");
    let (any, with_x) = match mode {
        b"any" => (true, false),
        b"any-with-x" => (true, true),
        b"all-with-x" => (false, true),
        _ => (false, false),
    };
    let mut considered = binding.iter().filter(|(k, _)| k != "x-match" && (with_x || !k.as_bytes().starts_with(b"x-")));
    let check = |(k, v): &(ShortStr, FieldValue)| match headers.iter().find(|(hk, _)| hk == k) {
        Some((_, hv)) => matches!(v, FieldValue::Void) || same_value(v, hv),
        None => false,
    };
    if any {
        considered.any(&check)
    } else {
        considered.all(check)
    }
}

fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    // As RabbitMQ (Erlang `==`): numbers compare by value whatever their width or kind (integers,
    // floats, timestamps); strings and byte arrays compare by their bytes; anything else exactly.
    fn number(v: &FieldValue) -> Option<f64> {
        match v {
            FieldValue::F32(x) => Some(*x as f64),
            FieldValue::F64(x) => Some(*x),
            FieldValue::Timestamp(t) => Some(*t as f64),
            other => other.as_i64().map(|i| i as f64),
        }
    }
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_bytes(), b.as_bytes()) {
        return x == y;
    }
    a == b
}
