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
use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use warren_protocol::{FieldTable, ShortStr};

pub mod consistent_hash;
pub mod direct;
pub mod fanout;
pub mod headers;
pub mod memo;
pub mod modulus_hash;
pub mod random;
pub mod topic;

/// Maps keyed by client-chosen names, looked up on every publish: foldhash (fast, and seeded per
/// process, so names cannot be crafted to collide) instead of SipHash.
pub type NameMap<V> = HashMap<ShortStr, V, foldhash::fast::RandomState>;

/// Exchange type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
    /// `x-consistent-hash` (`consistent_hash.rs`).
    ConsistentHash,
    /// `x-modulus-hash` (`modulus_hash.rs`).
    ModulusHash,
    /// `x-random` (`random.rs`).
    Random,
    /// `x-local-random` (`random.rs`).
    LocalRandom,
    /// `x-delayed-message`: routes as its `x-delayed-type` (`Exchange::route_kind`) once a
    /// message's `x-delay` has passed (`vhost/delayed.rs`).
    DelayedMessage,
}

impl ExchangeKind {
    pub fn parse(s: &[u8]) -> Option<ExchangeKind> {
        Some(match s {
            b"direct" => ExchangeKind::Direct,
            b"fanout" => ExchangeKind::Fanout,
            b"topic" => ExchangeKind::Topic,
            b"headers" => ExchangeKind::Headers,
            b"x-consistent-hash" => ExchangeKind::ConsistentHash,
            b"x-modulus-hash" => ExchangeKind::ModulusHash,
            b"x-random" => ExchangeKind::Random,
            b"x-local-random" => ExchangeKind::LocalRandom,
            b"x-delayed-message" => ExchangeKind::DelayedMessage,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
            ExchangeKind::ConsistentHash => "x-consistent-hash",
            ExchangeKind::ModulusHash => "x-modulus-hash",
            ExchangeKind::Random => "x-random",
            ExchangeKind::LocalRandom => "x-local-random",
            ExchangeKind::DelayedMessage => "x-delayed-message",
        }
    }

    /// RabbitMQ's description of the type (`/api/overview`).
    pub fn description(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "AMQP direct exchange, as per the AMQP specification",
            ExchangeKind::Fanout => "AMQP fanout exchange, as per the AMQP specification",
            ExchangeKind::Headers => "AMQP headers exchange, as per the AMQP specification",
            ExchangeKind::Topic => "AMQP topic exchange, as per the AMQP specification",
            ExchangeKind::ConsistentHash => "Consistent Hashing Exchange",
            ExchangeKind::ModulusHash => "Modulus Hashing Exchange",
            ExchangeKind::Random => "Randomly picks a binding (queue) to route via (to).",
            ExchangeKind::LocalRandom => "Picks one random local queue",
            ExchangeKind::DelayedMessage => "Delayed Message Exchange.",
        }
    }

    /// Every type, in the order the management API lists them.
    pub const ALL: [ExchangeKind; 9] = [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Headers,
        ExchangeKind::Topic,
        ExchangeKind::ConsistentHash,
        ExchangeKind::ModulusHash,
        ExchangeKind::Random,
        ExchangeKind::LocalRandom,
        ExchangeKind::DelayedMessage,
    ];

    /// The declare arguments' rules of this type (406 PRECONDITION_FAILED with the text).
    pub fn validate_args(self, args: &FieldTable) -> Result<(), String> {
        match self {
            ExchangeKind::ConsistentHash => consistent_hash::validate_args(args),
            ExchangeKind::DelayedMessage => match delayed_type(args) {
                Some(inner) => inner.validate_args(args),
                None => Err("Invalid argument, 'x-delayed-type' must be an existing exchange type".into()),
            },
            _ => Ok(()),
        }
    }

    /// The binding key's rules of this type (406 PRECONDITION_FAILED with the text).
    pub fn validate_binding_key(self, key: &ShortStr) -> Result<(), String> {
        match self {
            ExchangeKind::ConsistentHash => consistent_hash::weight(key).map(|_| ()),
            _ => Ok(()),
        }
    }
}

/// The type a delayed-message exchange routes as (`x-delayed-type`); never itself.
pub fn delayed_type(args: &FieldTable) -> Option<ExchangeKind> {
    let t = ExchangeKind::parse(args.get("x-delayed-type")?.as_bytes()?)?;
    (t != ExchangeKind::DelayedMessage).then_some(t)
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
pub struct Bindings {
    /// All bindings, in creation order.
    pub all: Vec<Binding>,
    /// The type's own index of `all` (direct: by key; topic: pattern trie; fanout and headers
    /// scan `all`).
    index: Index,
}

/// An exchange type's index of its bindings.
enum Index {
    /// `direct.rs`.
    Direct(direct::DirectIndex),
    /// `topic.rs`.
    Topic(topic::TopicTrie<Dest>),
    /// `consistent_hash.rs`, rebuilt on every change.
    Ring(consistent_hash::Ring),
    /// `modulus_hash.rs`, rebuilt on every change.
    Modulus(modulus_hash::ModulusIndex),
    /// Fanout, headers and the random types route from the bindings list itself.
    Scan,
}

impl Bindings {
    fn new(kind: ExchangeKind, arguments: &FieldTable) -> Bindings {
        let index = match kind {
            ExchangeKind::Direct => Index::Direct(direct::DirectIndex::default()),
            ExchangeKind::Topic => Index::Topic(topic::TopicTrie::default()),
            ExchangeKind::ConsistentHash => Index::Ring(consistent_hash::Ring::new(arguments)),
            ExchangeKind::ModulusHash => Index::Modulus(modulus_hash::ModulusIndex::default()),
            ExchangeKind::Fanout
            | ExchangeKind::Headers
            | ExchangeKind::Random
            | ExchangeKind::LocalRandom
            | ExchangeKind::DelayedMessage => Index::Scan,
        };
        Bindings { all: Vec::new(), index }
    }

    /// Rebuild an index that is rebuilt whole on every change (after `all` changed).
    fn rebuild(&mut self) {
        match &mut self.index {
            Index::Ring(r) => r.rebuild(&self.all),
            Index::Modulus(m) => m.rebuild(&self.all),
            Index::Direct(_) | Index::Topic(_) | Index::Scan => {}
        }
    }
}

/// Routing output: queues and exchanges reached, each at most once.
#[derive(Default)]
pub struct Routed {
    pub queues: Vec<Arc<Queue>>,
    pub exchanges: Vec<Arc<Exchange>>,
    /// Set instead of queues when a delayed-message exchange holds the message this long (ms).
    pub delay_ms: Option<u64>,
    /// The holding delayed-message exchange is durable (a persistent message is then stored).
    pub delay_durable: bool,
    /// The store LSN of a held message's record (0: not stored): its confirm waits for it.
    pub held_lsn: u64,
    /// Exchanges the message went through after the first (exchange-to-exchange bindings and
    /// alternate exchanges, `true` for an alternate), in the order they were taken; filled only
    /// when there were any (the message trace shows them).
    pub via: Vec<(ShortStr, bool)>,
    /// The channel's last lookups, kept from one publish to the next (not cleared).
    pub names: NameCache,
    /// What `queues` were routed from, while they may be used again without routing.
    pub memo: memo::RouteMemo,
}

/// One channel's last queue (default exchange) and exchange looked up by name in its vhost, and
/// the vhost's [names epoch](crate::vhost::VHost::names_at) when they were: while that has not
/// moved, a publish to the same name takes them without the vhost's map locks. Every publish
/// took a read lock on a vhost-wide map, an atomic add on one reader count: with two connections
/// publishing on two cores that cache line moved between them on every message (route_with was
/// 18.7 % of the broker's time with two pairs, 2.3 % with one).
///
/// # Invariants
/// - An entry is used only while the epoch it was taken at is current: any change of the vhost's
///   queue or exchange maps moves the epoch (under the map's write lock), so a cached entry is
///   always what a lookup would return.
/// - Strong references: a deleted queue or exchange can be held here until the channel's next
///   lookup or its close (never used: its deletion moved the epoch).
#[derive(Default)]
pub struct NameCache {
    /// The vhost's identity and names epoch when the entries were taken.
    taken: (usize, u64),
    /// The queue the default exchange routed the last routing key to.
    queue: Option<Arc<Queue>>,
    /// The exchange last published to.
    exchange: Option<Arc<Exchange>>,
}

impl NameCache {
    /// The cached queue named `name`, if the cache is current (`at`, see
    /// [`crate::vhost::VHost::names_at`]).
    #[inline]
    pub fn queue(&self, at: (usize, u64), name: &[u8]) -> Option<&Arc<Queue>> {
        self.queue.as_ref().filter(|q| self.taken == at && q.name.as_bytes() == name)
    }
    /// The cached exchange named `name`, taken out, if the cache is current (put it back with
    /// [`NameCache::keep_exchange`] at the same `at`).
    #[inline]
    pub fn take_exchange(&mut self, at: (usize, u64), name: &[u8]) -> Option<Arc<Exchange>> {
        if self.taken == at && self.exchange.as_ref().is_some_and(|e| e.name.as_bytes() == name) {
            self.exchange.take()
        } else {
            None
        }
    }
    /// Keep `q`, looked up at `at` (read under the map's lock).
    pub fn keep_queue(&mut self, at: (usize, u64), q: &Arc<Queue>) {
        self.retake(at);
        self.queue = Some(q.clone());
    }
    /// Keep `e`, looked up (under the map's lock) or found current at `at`.
    #[inline]
    pub fn keep_exchange(&mut self, at: (usize, u64), e: Arc<Exchange>) {
        self.retake(at);
        self.exchange = Some(e);
    }
    /// Entries of another epoch are dropped before one of `at` is kept.
    fn retake(&mut self, at: (usize, u64)) {
        if self.taken != at {
            *self = NameCache { taken: at, queue: None, exchange: None };
        }
    }
}

impl Routed {
    pub fn clear(&mut self) {
        self.memo.forget();
        self.queues.clear();
        self.exchanges.clear();
        self.delay_ms = None;
        self.delay_durable = false;
        self.held_lsn = 0;
        self.via.clear();
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
    /// The type it routes as: `kind`, or a delayed-message exchange's `x-delayed-type`.
    pub route_kind: ExchangeKind,
    /// Declared durable.
    pub durable: bool,
    /// Deleted when its last binding (as a source) goes.
    pub auto_delete: bool,
    /// Internal: clients may not publish to it directly.
    pub internal: bool,
    /// Declare arguments as given.
    pub arguments: FieldTable,
    /// The policy that applies and what it decides (re-applied when a matching policy changes;
    /// read on the unroutable path only).
    pub applied: RwLock<ExchangeApplied>,
    /// Bindings where this exchange is the source (read through [`Exchange::bindings`]). Every
    /// publish to the exchange reads them, from every publishing connection at once: sharded, so
    /// that a read locks its thread's shard only (a bind locks them all). With one `RwLock`, its
    /// reader count moved between cores on every message: two connections publishing through one
    /// direct exchange spent 11 % of the broker's time on that line.
    bindings: ShardedLock<Bindings>,
    /// Messages published to it, and of those, routed to at least one queue (management API).
    pub counters: ExchangeCounters,
    /// Moved on every change of `bindings`, under their write lock and before the change
    /// ([`memo::RouteMemo`]: a route remembered at one version is what routing would return
    /// while the version stays).
    bindings_version: std::sync::atomic::AtomicU64,
}

/// Stripes of an exchange's counters: one per runtime thread on machines up to this size (more
/// threads share stripes, which stays correct).
const COUNTER_STRIPES: usize = 8;

/// The stripe of the calling thread: threads take stripes in turn as they first count.
#[inline]
fn counter_stripe() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % COUNTER_STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// An exchange's message counters, striped: every connection publishing to the exchange adds to
/// them, so each thread adds on a cache line of its own and readers add the stripes up.
#[derive(Default)]
pub struct ExchangeCounters {
    /// One per thread (see [`counter_stripe`]).
    stripes: [CounterStripe; COUNTER_STRIPES],
}

/// One stripe of [`ExchangeCounters`], on a cache line of its own.
#[derive(Default)]
#[repr(align(64))]
struct CounterStripe {
    /// Messages published to this exchange.
    publish_in: std::sync::atomic::AtomicU64,
    /// Of those, messages routed to at least one queue.
    publish_out: std::sync::atomic::AtomicU64,
}

impl ExchangeCounters {
    /// Count a message published to the exchange; `routed`: it reached at least one queue.
    #[inline]
    pub fn count(&self, routed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stripes[counter_stripe()];
        s.publish_in.fetch_add(1, Relaxed);
        if routed {
            s.publish_out.fetch_add(1, Relaxed);
        }
    }
    /// Messages published to the exchange.
    pub fn publish_in(&self) -> u64 {
        self.stripes.iter().map(|s| s.publish_in.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }
    /// Of those, messages routed to at least one queue.
    pub fn publish_out(&self) -> u64 {
        self.stripes.iter().map(|s| s.publish_out.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }
}

/// What an exchange's arguments and policy decide.
#[derive(Clone, Default)]
pub struct ExchangeApplied {
    /// `alternate-exchange` argument (or, without one, the policy's): where messages this
    /// exchange cannot route go.
    pub alternate: Option<ShortStr>,
    /// The policy that applies.
    pub policy: Option<Arc<crate::policy::Policy>>,
}

impl ExchangeApplied {
    /// As RabbitMQ: the argument wins over the policy.
    pub fn new(arguments: &FieldTable, policy: Option<Arc<crate::policy::Policy>>) -> ExchangeApplied {
        let alternate = arguments
            .get("alternate-exchange")
            .and_then(|v| v.as_bytes())
            .map(|b| ShortStr::truncating(bytes::Bytes::copy_from_slice(b)))
            .or_else(|| {
                policy.as_ref().and_then(|p| p.string("alternate-exchange")).map(|a| ShortStr::from(a.to_string()))
            });
        ExchangeApplied { alternate, policy }
    }
}

impl Exchange {
    /// The policy that applies now.
    pub fn policy(&self) -> Option<Arc<crate::policy::Policy>> {
        self.applied.read().policy.clone()
    }

    /// A policy matching it was set, changed or cleared.
    pub fn reapply(&self, policy: Option<Arc<crate::policy::Policy>>) {
        *self.applied.write() = ExchangeApplied::new(&self.arguments, policy);
    }

    pub fn new(
        name: ShortStr,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
        policy: Option<Arc<crate::policy::Policy>>,
    ) -> Arc<Exchange> {
        let applied = RwLock::new(ExchangeApplied::new(&arguments, policy));
        let route_kind = match kind {
            ExchangeKind::DelayedMessage => delayed_type(&arguments).unwrap_or(ExchangeKind::Direct),
            k => k,
        };
        let bindings = ShardedLock::new(Bindings::new(route_kind, &arguments));
        Arc::new(Exchange {
            applied,
            name,
            kind,
            route_kind,
            durable,
            auto_delete,
            internal,
            arguments,
            bindings,
            counters: ExchangeCounters::default(),
            bindings_version: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Its bindings, to read.
    pub fn bindings(&self) -> ShardedLockReadGuard<'_, Bindings> {
        self.bindings.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Its bindings, to change: the version moves before the caller changes them.
    fn bindings_mut(&self) -> ShardedLockWriteGuard<'_, Bindings> {
        let guard = self.bindings.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.bindings_version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        guard
    }

    /// The version of its bindings (read before routing with them: see [`memo::RouteMemo`]).
    #[inline]
    pub fn bindings_version(&self) -> u64 {
        self.bindings_version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Add a binding; false if an identical one exists.
    pub fn bind(&self, b: Binding) -> bool {
        let mut bs = self.bindings_mut();
        if bs.all.iter().any(|x| x.dest.same(&b.dest) && x.routing_key == b.routing_key && x.arguments == b.arguments) {
            return false;
        }
        match &mut bs.index {
            Index::Direct(d) => d.add(&b),
            Index::Topic(t) => t.insert(b.routing_key.as_bytes(), b.dest.clone()),
            Index::Ring(_) | Index::Modulus(_) | Index::Scan => {}
        }
        bs.all.push(b);
        bs.rebuild();
        true
    }

    /// Remove a binding; false if there was none.
    pub fn unbind(&self, dest: &Dest, routing_key: &ShortStr, arguments: &FieldTable) -> bool {
        let mut bs = self.bindings_mut();
        let Some(i) =
            bs.all.iter().position(|x| x.dest.same(dest) && x.routing_key == *routing_key && x.arguments == *arguments)
        else {
            return false;
        };
        bs.all.remove(i);
        let Bindings { all, index } = &mut *bs;
        match index {
            Index::Direct(d) => d.remove(all, dest, routing_key),
            Index::Topic(t) => t.remove(routing_key.as_bytes(), |d| d.same(dest)),
            Index::Ring(_) | Index::Modulus(_) | Index::Scan => {}
        }
        bs.rebuild();
        true
    }

    /// Remove every binding to `dest` (it was deleted). Returns the bindings removed, and whether
    /// none are left (when some were removed).
    pub fn unbind_dest(&self, dest: &Dest) -> (Vec<Binding>, bool) {
        let mut bs = self.bindings_mut();
        if !bs.all.iter().any(|x| x.dest.same(dest)) {
            return (Vec::new(), false);
        }
        let (gone, kept): (Vec<Binding>, Vec<Binding>) =
            std::mem::take(&mut bs.all).into_iter().partition(|x| x.dest.same(dest));
        bs.all = kept;
        match &mut bs.index {
            Index::Direct(d) => d.remove_dest(dest),
            Index::Topic(t) => t.retain(&|d: &Dest| !d.same(dest)),
            Index::Ring(_) | Index::Modulus(_) | Index::Scan => {}
        }
        bs.rebuild();
        let empty = bs.all.is_empty();
        (gone, empty)
    }

    /// Drop every binding (the exchange was deleted).
    pub fn clear_bindings(&self) {
        *self.bindings_mut() = Bindings::new(self.route_kind, &self.arguments);
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings().all.is_empty()
    }

    /// Destinations for a message with routing `keys` (the routing key plus CC/BCC), `headers`
    /// and raw `properties` (decoded only by a type hashing on one). Returns whether anything
    /// matched.
    #[inline]
    pub fn route_into(
        &self,
        keys: &[&[u8]],
        headers: Option<&FieldTable>,
        properties: crate::lent::Lent<'_>,
        out: &mut Routed,
    ) -> bool {
        let bs = self.bindings();
        let (q0, e0) = (out.queues.len(), out.exchanges.len());
        let any = match (&bs.index, self.route_kind) {
            (Index::Direct(d), _) => d.route(keys, out),
            (Index::Topic(t), _) => topic::route(t, keys, out),
            (Index::Ring(r), _) => r.route(keys, headers, properties, out),
            (Index::Modulus(m), _) => m.route(keys, out),
            (Index::Scan, ExchangeKind::Headers) => headers::route(&bs.all, headers, out),
            (Index::Scan, ExchangeKind::Random | ExchangeKind::LocalRandom) => random::route(&bs.all, out),
            (Index::Scan, _) => fanout::route(&bs.all, out),
        };
        any || out.queues.len() != q0 || out.exchanges.len() != e0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counters_add_up_across_threads() {
        let c = Arc::new(ExchangeCounters::default());
        // More threads than stripes, so some share one.
        let threads: Vec<_> = (0..COUNTER_STRIPES + 3)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        c.count((i + t) % 2 == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("counting thread");
        }
        let n = (COUNTER_STRIPES + 3) as u64;
        assert_eq!(c.publish_in(), n * 1000);
        assert_eq!(c.publish_out(), n * 500);
    }
}
