//! A virtual host: the registries of its exchanges and queues, and the core operations every door
//! calls, each for an `Actor` whose permissions it checks (`access.rs`): routing (`route.rs`), the
//! one publish path (`publish.rs`), queue rules (`queues.rs`), exchange and binding rules
//! (`exchanges.rs`), policies (`policies.rs`).
//!
//! Runs in: whichever task a door runs in (connection readers, HTTP handlers, boot import);
//! declares are rare, routing is per message.
//!
//! # Invariants
//! - Topology maps are `RwLock`s: routing takes read locks only and holds none of them while it
//!   enqueues. Declares and deletes take the write lock of one map at a time (LOCKS.md), through
//!   `queues_write` / `exchanges_write`, which move the names epoch: a channel's cached lookups
//!   ([`crate::exchange::NameCache`], routing without the map locks) are valid only at the epoch
//!   they were taken at.
//! - The default exchange (`""`) is implicit: every queue is bound to it by name; it cannot be
//!   bound, unbound or deleted.
//! - Standard exchanges (`amq.direct`, `amq.fanout`, `amq.topic`, `amq.headers`, `amq.match`, and
//!   the internal `amq.rabbitmq.trace`) exist in every vhost, and the internal `amq.rabbitmq.event`
//!   in the default one; they cannot be deleted or declared differently.
//! - Every change of queues, exchanges and bindings is reported to the broker's events after it
//!   is made.
//! - Every operation that changes state or moves messages checks its actor's permissions before
//!   anything else but RabbitMQ's name rules.
pub mod access;
mod exchanges;
pub mod limits;
mod policies;
mod publish;
mod queues;
mod route;
pub mod timers;
mod trace;

use crate::exchange::{Exchange, ExchangeKind, NameMap};
use crate::ids::ConnectionId;
use crate::queue::Queue;
pub use access::Actor;
pub use exchanges::rabbit_type;
use parking_lot::{RwLock, RwLockWriteGuard};
pub use publish::{Outcome, Publish};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use warren_protocol::{FieldTable, ShortStr};

/// A virtual host.
pub struct VHost {
    /// Name, e.g. `/`.
    pub name: String,
    /// Exchanges by name (the default exchange is not in here).
    exchanges: RwLock<NameMap<Arc<Exchange>>>,
    /// Queues by name.
    queues: RwLock<NameMap<Arc<Queue>>>,
    /// Moved on every write lock of `exchanges` or `queues` (while it is held): channels' cached
    /// lookups ([`crate::exchange::NameCache`]) taken at another value are not used.
    names_epoch: AtomicU64,
    /// Direct reply-to consumers by their generated reply queue name.
    pub replies: parking_lot::Mutex<HashMap<ShortStr, ReplyTarget>>,
    /// `Weak` to itself, handed to queues for dead-lettering.
    me: std::sync::Weak<VHost>,
    /// The broker's message store (durable queues write persistent messages there).
    store: Option<Arc<crate::store::Store>>,
    /// The broker's metadata file: durable topology changes request a write.
    meta: Option<Arc<crate::store::meta::MetaStore>>,
    /// Message counters of deleted queues (so totals never go backwards).
    retired: parking_lot::Mutex<crate::counters::Totals>,
    /// Policies by name.
    policies: RwLock<Vec<Arc<crate::policy::Policy>>>,
    /// Operator policies by name.
    operator_policies: RwLock<Vec<Arc<crate::policy::Policy>>>,
    /// Its limits (`max-connections`, `max-queues`).
    limits: parking_lot::Mutex<limits::Limits>,
    /// Its timers: messages held by its delayed-message exchanges, queue head expiry.
    pub timers: Arc<timers::Timers>,
    /// Its message trace (`journal.rs`).
    pub journal: Arc<crate::journal::Journal>,
    /// Its clock (`clock::VClock`): the real one unless a test control moved it.
    pub clock: Arc<crate::clock::VClock>,
    /// Test fault: how many of the next confirm-mode publishes to nack (`faults.rs`).
    fault_nacks: std::sync::atomic::AtomicU64,
    /// Its firehose tracer (`crate::trace`): off unless switched on.
    pub tracer: Arc<crate::trace::Tracer>,
    /// The broker's event sink: what changes here is reported there.
    pub events: Arc<crate::events::Events>,
}

/// Where replies to an `amq.rabbitmq.reply-to.*` name go.
pub struct ReplyTarget {
    /// The requester's channel.
    pub channel: std::sync::Weak<crate::queue::consumer::ChannelShared>,
    /// Its reply consumer's tag.
    pub consumer_tag: ShortStr,
}

/// The pseudo-queue of direct reply-to.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// A queue declaration as every door hands it to the core (AMQP's queue.declare, the HTTP API's
/// `PUT /api/queues/...`, a definitions file): typed, with no protocol method in it.
#[derive(Debug, Clone, Default)]
pub struct QueueSpec {
    /// The queue's final name (a server-named queue's generated name already).
    pub name: ShortStr,
    /// The client left the name to the server (the `amq.` rule does not apply then).
    pub server_named: bool,
    /// Only check that it exists (and renew its lease).
    pub passive: bool,
    /// Survives a restart (never true for an exclusive queue).
    pub durable: bool,
    /// Owned by the declaring connection.
    pub exclusive: bool,
    /// Deleted with its last consumer.
    pub auto_delete: bool,
    /// `x-` arguments (`queue/settings.rs` knows them).
    pub arguments: FieldTable,
}

/// An exchange declaration as every door hands it to the core.
#[derive(Debug, Clone, Default)]
pub struct ExchangeSpec {
    /// The exchange's name.
    pub name: ShortStr,
    /// Its type as asked (`direct`, `topic`, ...; checked by the core).
    pub kind: ShortStr,
    /// Only check that it exists.
    pub passive: bool,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted with its last binding (as source).
    pub auto_delete: bool,
    /// Not published to by clients (only via exchange-to-exchange bindings).
    pub internal: bool,
    /// Arguments (`alternate-exchange`).
    pub arguments: FieldTable,
}

/// Result of a queue.declare.
pub struct Declared {
    pub queue: Arc<Queue>,
    pub message_count: u32,
    pub consumer_count: u32,
    /// True when this declare created the queue.
    pub created: bool,
}

impl VHost {
    /// A vhost with the standard exchanges, and `amq.rabbitmq.event` with `event_exchange`.
    pub fn new(
        name: &str,
        store: Option<Arc<crate::store::Store>>,
        meta: Option<Arc<crate::store::meta::MetaStore>>,
        events: Arc<crate::events::Events>,
        event_exchange: bool,
        trace_size: usize,
    ) -> Arc<VHost> {
        let mut ex = NameMap::default();
        for (n, k) in [
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            let name = ShortStr::from_static(n);
            ex.insert(name.clone(), Exchange::new(name, k, true, false, false, FieldTable::new(), None));
        }
        // The firehose tracer (`trace.rs`) publishes to this internal topic exchange; it exists
        // in every vhost.
        let trace = ShortStr::from_static(crate::trace::TRACE_EXCHANGE);
        ex.insert(trace.clone(), Exchange::new(trace, ExchangeKind::Topic, true, false, true, FieldTable::new(), None));
        if event_exchange {
            // Where broker events go (`crate::events`): internal, as RabbitMQ's plugin declares it.
            let name = ShortStr::from_static(crate::events::EVENT_EXCHANGE);
            ex.insert(
                name.clone(),
                Exchange::new(name, ExchangeKind::Topic, true, false, true, FieldTable::new(), None),
            );
        }
        Arc::new_cyclic(|me| VHost {
            name: name.to_string(),
            exchanges: RwLock::new(ex),
            queues: RwLock::new(NameMap::default()),
            names_epoch: AtomicU64::new(0),
            replies: Default::default(),
            me: me.clone(),
            store,
            meta,
            retired: Default::default(),
            policies: RwLock::new(Vec::new()),
            operator_policies: RwLock::new(Vec::new()),
            timers: Default::default(),
            fault_nacks: Default::default(),
            clock: Default::default(),
            journal: Arc::new(crate::journal::Journal::new(trace_size)),
            limits: Default::default(),
            tracer: Default::default(),
            events,
        })
    }

    /// The queue map, to change it: moves the names epoch (see [`VHost::names_at`]).
    fn queues_write(&self) -> RwLockWriteGuard<'_, NameMap<Arc<Queue>>> {
        let g = self.queues.write();
        self.names_epoch.fetch_add(1, Ordering::Release);
        g
    }

    /// The exchange map, to change it: moves the names epoch.
    fn exchanges_write(&self) -> RwLockWriteGuard<'_, NameMap<Arc<Exchange>>> {
        let g = self.exchanges.write();
        self.names_epoch.fetch_add(1, Ordering::Release);
        g
    }

    /// This vhost's identity and names epoch now: what a channel's [`crate::exchange::NameCache`]
    /// is valid for. Read under a map's read lock when an entry is kept (no write can move it
    /// then), without a lock when one is used (an entry used just as a change lands is a lookup
    /// made just before it).
    #[inline]
    pub fn names_at(&self) -> (usize, u64) {
        (self as *const VHost as usize, self.names_epoch.load(Ordering::Acquire))
    }

    /// Test control: move this vhost's clock forward by `ms`; what that makes due (delayed
    /// messages, TTLs) fires at once, queue expiry and consumer timeouts at their next check.
    pub fn advance_clock(&self, ms: u64) {
        self.clock.advance(ms);
        self.timers.clock_moved();
    }

    /// Test control: stop this vhost's clock (`true`) or let it run on from where it stands.
    pub fn freeze_clock(&self, on: bool) {
        self.clock.freeze(on);
        self.timers.clock_moved();
    }

    /// Test fault: nack the next `n` confirm-mode publishes (0: none).
    pub fn set_fault_nacks(&self, n: u64) {
        self.fault_nacks.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this publish is to be nacked by a test fault (counts it down). One relaxed load
    /// when no fault is set.
    pub fn take_fault_nack(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.fault_nacks.load(Relaxed) > 0
            && self.fault_nacks.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    /// A durable part of the topology changed: ask for the definitions file to be rewritten.
    fn changed(&self, durable: bool) {
        if let (true, Some(m)) = (durable, &self.meta) {
            m.request();
        }
    }

    /// Every queue (for export and recovery).
    pub fn queues_snapshot(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }
    /// Every exchange but the default one.
    pub fn exchanges_snapshot(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.read().values().cloned().collect()
    }

    pub fn queue(&self, name: &ShortStr) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }
    pub fn exchange<K: std::hash::Hash + Eq + ?Sized>(&self, name: &K) -> Option<Arc<Exchange>>
    where
        ShortStr: std::borrow::Borrow<K>,
    {
        self.exchanges.read().get(name).cloned()
    }

    /// `exchange 'x' in vhost '/'`.
    fn ex_desc(&self, name: impl AsRef<[u8]>) -> String {
        format!("exchange '{}' in vhost '{}'", String::from_utf8_lossy(name.as_ref()), self.name)
    }
    fn q_desc(&self, name: &ShortStr) -> String {
        format!("queue '{}' in vhost '{}'", name, self.name)
    }

    /// Message counters of every queue this vhost ever had (live ones plus deleted ones).
    pub fn queue_totals(&self) -> crate::counters::Totals {
        let mut t = *self.retired.lock();
        for q in self.queues_snapshot() {
            t.add(&q.totals());
        }
        t
    }

    /// Periodic work: expire messages at queue heads, delete queues unused past `x-expires`.
    pub fn sweep(&self, now: u64) {
        let queues: Vec<Arc<Queue>> = self
            .queues
            .read()
            .values()
            .filter(|q| {
                let s = q.settings();
                s.message_ttl.is_some() || s.expires.is_some() || q.may_hold_expiring()
            })
            .cloned()
            .collect();
        for q in queues {
            if q.sweep(now) {
                tracing::info!(
                    "{} expired (unused for {} ms): deleting it",
                    q.describe(),
                    q.settings().expires.unwrap_or(0)
                );
                self.delete_queue(&q);
            }
        }
    }

    /// Memory of all ready messages in this vhost held in memory (bodies plus a fixed overhead per
    /// message, `Queue::ready_bytes`), and the bodies its delayed-message exchanges hold (memory
    /// alarm).
    pub fn queued_bytes(&self) -> u64 {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        queues.iter().map(|q| q.ready_bytes() as u64).sum::<u64>() + self.timers.held_bytes()
    }

    /// Test control "reset" (`Broker::reset_vhost` closes the connections first): every queue and
    /// every exchange but the standard ones deleted, policies, operator policies and limits
    /// cleared, delayed messages dropped, tracing off. `by`: who asked, as events name it.
    pub fn reset(&self, by: Option<&str>) {
        for q in self.queues_snapshot() {
            self.delete_queue_deferring(&q, None, by);
        }
        for x in self.exchanges_snapshot() {
            if !x.name.as_bytes().starts_with(b"amq.") {
                self.remove_exchange(&x, by);
            }
        }
        for p in self.policies() {
            self.clear_policy(&p.name, by);
        }
        for p in self.operator_policies() {
            self.clear_operator_policy(&p.name);
        }
        for name in limits::NAMES {
            self.clear_limit(name);
        }
        self.timers.drop_delayed();
        self.set_fault_nacks(0);
        self.clock.reset();
        self.journal.clear();
        self.set_tracing(false);
        self.changed(true);
    }

    /// Queues owned exclusively by `conn` (deleted when it closes).
    pub fn exclusive_queues_of(&self, conn: ConnectionId) -> Vec<Arc<Queue>> {
        self.queues.read().values().filter(|q| q.exclusive_owner == Some(conn)).cloned().collect()
    }
}
