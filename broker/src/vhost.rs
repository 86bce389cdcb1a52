//! A virtual host: its exchanges, queues and bindings, and the declare/delete/bind rules.
//!
//! Runs in: any connection reader (declares are rare; routing is per message).
//!
//! # Invariants
//! - Topology maps are `RwLock`s: routing takes read locks only and holds none of them while it
//!   enqueues. Declares and deletes take the write lock of one map at a time (LOCKS.md).
//! - The default exchange (`""`) is implicit: every queue is bound to it by name; it cannot be
//!   bound, unbound or deleted.
//! - Standard exchanges (`amq.direct`, `amq.fanout`, `amq.topic`, `amq.headers`, `amq.match`, and the internal `amq.rabbitmq.trace`) exist
//!   in every vhost and cannot be deleted or declared differently.
use crate::channel::delivery::Consumer;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Binding, Dest, Exchange, ExchangeKind, Routed};
use crate::ids::ConnectionId;
use crate::queue::Queue;
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use warren_protocol::constants::*;
use warren_protocol::method::{ExchangeDeclare, QueueDeclare};
use warren_protocol::{BasicProperties, FieldValue};
use warren_protocol::{FieldTable, Method, ShortStr};

/// Bit 13 of the property flags (headers present), as seen in the first flags byte.
const HEADERS_FLAG_HIGH_BYTE: u8 = 0x20;

/// Properties without the BCC header (RabbitMQ removes it before delivery).
fn strip_bcc(properties: &Bytes) -> Bytes {
    match BasicProperties::decode(properties.clone()) {
        Ok(mut p) => {
            if let Some(h) = &mut p.headers {
                h.0.retain(|(k, _)| k != "BCC");
            }
            p.to_bytes()
        }
        Err(_) => properties.clone(),
    }
}

/// Maps keyed by client-chosen names, looked up on every publish: foldhash (fast, and seeded per
/// process, so names cannot be crafted to collide) instead of SipHash.
pub type NameMap<V> = HashMap<ShortStr, V, foldhash::fast::RandomState>;

/// A virtual host.
pub struct VHost {
    /// Name, e.g. `/`.
    pub name: String,
    /// Exchanges by name (the default exchange is not in here).
    exchanges: RwLock<NameMap<Arc<Exchange>>>,
    /// Queues by name.
    queues: RwLock<NameMap<Arc<Queue>>>,
    /// Direct reply-to consumers by their generated reply queue name.
    pub replies: parking_lot::Mutex<HashMap<ShortStr, ReplyTarget>>,
    /// `Weak` to itself, handed to queues for dead-lettering.
    me: std::sync::Weak<VHost>,
    /// The broker's message store (durable queues write persistent messages there).
    store: Option<Arc<crate::store::Store>>,
    /// The broker's metadata file: durable topology changes request a write.
    meta: Option<Arc<crate::store::definitions::MetaStore>>,
    /// Message counters of deleted queues (so totals never go backwards).
    retired: parking_lot::Mutex<crate::stats::Totals>,
    /// Policies by name.
    policies: RwLock<Vec<Arc<crate::policy::Policy>>>,
}

/// Where replies to an `amq.rabbitmq.reply-to.*` name go.
pub struct ReplyTarget {
    /// The requester's channel.
    pub channel: std::sync::Weak<crate::channel::delivery::ChannelShared>,
    /// Its reply consumer's tag.
    pub consumer_tag: ShortStr,
}

/// The pseudo-queue of direct reply-to.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Result of a queue.declare.
pub struct Declared {
    pub queue: Arc<Queue>,
    pub message_count: u32,
    pub consumer_count: u32,
    /// True when this declare created the queue.
    pub created: bool,
}

impl VHost {
    pub fn new(
        name: &str,
        store: Option<Arc<crate::store::Store>>,
        meta: Option<Arc<crate::store::definitions::MetaStore>>,
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
        // RabbitMQ's firehose tracer publishes to this internal topic exchange; it exists in
        // every vhost (tracing itself is not implemented: nothing is published to it).
        let trace = ShortStr::from_static("amq.rabbitmq.trace");
        ex.insert(trace.clone(), Exchange::new(trace, ExchangeKind::Topic, true, false, true, FieldTable::new(), None));
        Arc::new_cyclic(|me| VHost {
            name: name.to_string(),
            exchanges: RwLock::new(ex),
            queues: RwLock::new(NameMap::default()),
            replies: Default::default(),
            me: me.clone(),
            store,
            meta,
            retired: Default::default(),
            policies: RwLock::new(Vec::new()),
        })
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
    pub fn exchange(&self, name: &ShortStr) -> Option<Arc<Exchange>> {
        self.exchanges.read().get(name).cloned()
    }

    /// `exchange 'x' in vhost '/'`.
    fn ex_desc(&self, name: &ShortStr) -> String {
        format!("exchange '{}' in vhost '{}'", name, self.name)
    }
    fn q_desc(&self, name: &ShortStr) -> String {
        format!("queue '{}' in vhost '{}'", name, self.name)
    }

    /// A queue that exists and that `conn` may use (exclusive queues belong to their connection).
    pub fn usable_queue(&self, name: &ShortStr, conn: ConnectionId) -> AmqpResult<Arc<Queue>> {
        let q =
            self.queue(name).ok_or_else(|| AmqpError::channel(NOT_FOUND, format!("no {}", self.q_desc(name)), None))?;
        check_exclusive(&q, conn)?;
        Ok(q)
    }

    /// Route a message published to `exchange`: the queues it goes to end up in `out.queues`.
    /// Follows exchange-to-exchange bindings (each exchange visited once, so cycles neither loop nor
    /// duplicate), alternate exchanges, and the CC / BCC headers (sender-selected distribution).
    /// Returns replacement properties when the BCC header had to be removed before delivery.
    pub fn route(
        &self,
        exchange: &ShortStr,
        routing_key: &ShortStr,
        properties: &Bytes,
        out: &mut Routed,
    ) -> AmqpResult<Option<Bytes>> {
        out.clear();
        // Only a message with a headers table can carry CC/BCC or match a headers exchange.
        let headers = if properties.first().is_some_and(|f| f & HEADERS_FLAG_HIGH_BYTE != 0) {
            BasicProperties::decode(properties.clone()).ok().and_then(|p| p.headers)
        } else {
            None
        };
        // Routing keys: the message's, plus CC / BCC ones (a list is built only when there are any).
        let mut cc_keys: Vec<ShortStr> = Vec::new();
        let mut has_bcc = false;
        if let Some(h) = &headers {
            for (k, v) in h.iter() {
                let bcc = k == "BCC";
                if k == "CC" || bcc {
                    let FieldValue::Array(items) = v else {
                        return Err(AmqpError::channel_ids(
                            PRECONDITION_FAILED,
                            format!("invalid message: {{unacceptable_type_in_header,\"{k}\",{}}}", rabbit_type(v)),
                            60,
                            40,
                        ));
                    };
                    if cc_keys.is_empty() {
                        cc_keys.push(routing_key.clone());
                    }
                    cc_keys.extend(
                        items
                            .iter()
                            .filter_map(|i| i.as_bytes())
                            .map(|b| ShortStr::truncating(Bytes::copy_from_slice(b))),
                    );
                    has_bcc |= bcc;
                }
            }
        }
        let keys: &[ShortStr] = if cc_keys.is_empty() { std::slice::from_ref(routing_key) } else { &cc_keys };
        if exchange.is_empty() {
            let qs = self.queues.read();
            for k in keys {
                if let Some(q) = qs.get(k) {
                    if !out.queues.iter().any(|x| Arc::ptr_eq(x, q)) {
                        out.queues.push(q.clone());
                    }
                }
            }
        } else {
            let start = self.exchanges.read().get(exchange).cloned();
            let start = match start {
                None => {
                    return Err(AmqpError::channel_ids(NOT_FOUND, format!("no {}", self.ex_desc(exchange)), 60, 40))
                }
                Some(e) if e.internal => {
                    return Err(AmqpError::channel_ids(
                        ACCESS_REFUSED,
                        format!("cannot publish to internal {}", self.ex_desc(exchange)),
                        60,
                        40,
                    ))
                }
                Some(e) => e,
            };
            self.walk(&start, keys, headers.as_ref(), out);
            // One relaxed add on the exchange's own cache line (contended only when several
            // connections publish to the same exchange at once).
            start.counters.publish_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !out.queues.is_empty() {
                start.counters.publish_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(if has_bcc && !out.queues.is_empty() { Some(strip_bcc(properties)) } else { None })
    }

    /// Breadth-first over exchange destinations and alternate exchanges, each exchange once.
    fn walk(&self, start: &Arc<Exchange>, keys: &[ShortStr], headers: Option<&FieldTable>, out: &mut Routed) {
        let matched = start.route_into(keys, headers, out);
        if out.exchanges.is_empty() && matched {
            return; // the common case: one exchange, queues only
        }
        let mut visited: Vec<Arc<Exchange>> = vec![start.clone()];
        let mut todo: Vec<Arc<Exchange>> = std::mem::take(&mut out.exchanges);
        if !matched {
            todo.extend(self.alternate_of(start));
        }
        while let Some(x) = todo.pop() {
            if visited.iter().any(|v| Arc::ptr_eq(v, &x)) {
                continue;
            }
            visited.push(x.clone());
            let matched = x.route_into(keys, headers, out);
            todo.append(&mut out.exchanges);
            if !matched {
                todo.extend(self.alternate_of(&x));
            }
        }
    }

    /// The alternate exchange of `x`, if it names one that exists.
    fn alternate_of(&self, x: &Exchange) -> Option<Arc<Exchange>> {
        let name = x.alternate.as_ref()?;
        self.exchanges.read().get(name).cloned()
    }

    /// queue.declare, all of RabbitMQ's checks. `name` is the final name (server-named already).
    pub fn declare_queue(&self, d: &QueueDeclare, name: ShortStr, conn: ConnectionId) -> AmqpResult<Declared> {
        VHost::check_queue_name(d)?;
        if !d.passive {
            crate::queue::settings::validate_queue_args(&d.arguments).map_err(|(arg, why)| {
                AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("invalid arg '{arg}' for {}: {why}", self.q_desc(&name)),
                    None,
                )
            })?;
        }
        // rabbitmq-compat: an exclusive queue is never durable, whatever the client asked (so a
        // redeclare with either durable value is equivalent).
        let durable = d.durable && !d.exclusive;
        if let Some(q) = self.queue(&name) {
            check_exclusive(&q, conn)?;
            // rabbitmq-compat: a (non-passive) declare must agree on exclusivity, checked before
            // any other equivalence: 405 with the same text as another connection's queue.
            if !d.passive && q.exclusive_owner.is_some() != d.exclusive {
                return Err(exclusive_locked(&q));
            }
            if !d.passive {
                let ineq = |arg: &str, got: String, cur: String| {
                    AmqpError::channel(
                        PRECONDITION_FAILED,
                        format!(
                            "inequivalent arg '{arg}' for {}: received '{got}' but current is '{cur}'",
                            self.q_desc(&name)
                        ),
                        None,
                    )
                };
                if q.durable != durable {
                    return Err(ineq("durable", durable.to_string(), q.durable.to_string()));
                }
                if q.auto_delete != d.auto_delete {
                    return Err(ineq("auto_delete", d.auto_delete.to_string(), q.auto_delete.to_string()));
                }
                if let Some((k, got, cur)) =
                    first_arg_difference(&d.arguments, &q.arguments, crate::queue::settings::QUEUE_EQUIV_ARGS)
                {
                    return Err(ineq(&k, got, cur));
                }
            }
            // As RabbitMQ: any declare, passive included, renews an x-expires lease.
            q.touch();
            let (message_count, consumer_count) = q.counts();
            return Ok(Declared { queue: q, message_count, consumer_count, created: false });
        }
        if d.passive {
            return Err(AmqpError::channel(NOT_FOUND, format!("no {}", self.q_desc(&name)), None));
        }
        if crate::queue::settings::QueueType::of(&d.arguments) != crate::queue::settings::QueueType::Classic {
            // As RabbitMQ: replicated queue types must be durable, shared and not auto-deleted.
            let bad = if !d.durable {
                Some("non-durable")
            } else if d.exclusive {
                Some("exclusive-owner")
            } else if d.auto_delete {
                Some("auto-delete")
            } else {
                None
            };
            if let Some(p) = bad {
                return Err(AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("invalid property '{p}' for {}", self.q_desc(&name)),
                    None,
                ));
            }
        }
        let mut qs = self.queues.write();
        // Re-check under the write lock: another connection may have won the race.
        if qs.contains_key(&name) {
            drop(qs);
            return self.declare_queue(&QueueDeclare { passive: false, ..d.clone() }, name, conn);
        }
        let owner = d.exclusive.then_some(conn);
        let quorum = crate::queue::settings::QueueType::of(&d.arguments) == crate::queue::settings::QueueType::Quorum;
        let policy = self.policy_for(|p| p.matches_queue(&name.to_str_lossy(), quorum));
        let q = Queue::in_vhost(
            name.clone(),
            &self.name,
            self.me.clone(),
            self.store.clone(),
            durable,
            owner,
            d.auto_delete,
            d.arguments.clone(),
            policy,
        );
        if q.settings.kind == crate::queue::settings::QueueType::Stream {
            tracing::info!("{}: stream queues are accepted as durable classic queues for now", q.describe());
        }
        qs.insert(name, q.clone());
        drop(qs);
        self.changed(durable);
        Ok(Declared { queue: q, message_count: 0, consumer_count: 0, created: true })
    }

    /// Remove a queue: unbind it everywhere, cancel its consumers. Returns its ready message count.
    pub fn delete_queue(&self, q: &Arc<Queue>) -> u32 {
        self.delete_queue_deferring(q, None).0
    }

    /// queue.declare's name rule (every door's; RabbitMQ checks it before permissions, so doors
    /// call it first, and [`VHost::declare_queue`] applies it again): a client may not create a
    /// queue named `amq.*` (403). Passive declares, and server-named queues (`d.queue` empty),
    /// are not checked.
    pub fn check_queue_name(d: &QueueDeclare) -> AmqpResult<()> {
        if !d.passive && d.queue.as_bytes().starts_with(b"amq.") {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format!("queue name '{}' contains reserved prefix 'amq.*'", d.queue),
                None,
            ));
        }
        Ok(())
    }

    /// queue.delete's conditions (every door's): with `if_unused`, 406 while it has consumers;
    /// with `if_empty`, 406 while it holds messages.
    pub fn check_delete_conditions(q: &Queue, if_unused: bool, if_empty: bool) -> AmqpResult<()> {
        let (messages, consumers) = q.counts();
        if if_unused && consumers > 0 {
            return Err(AmqpError::channel(PRECONDITION_FAILED, format!("{} in use", q.describe()), None));
        }
        if if_empty && messages > 0 {
            return Err(AmqpError::channel(PRECONDITION_FAILED, format!("{} not empty", q.describe()), None));
        }
        Ok(())
    }

    /// Delete a queue, cancelling its consumers except those on channel `deferred` (the channel
    /// that asked for the deletion), which are returned for the caller to cancel with
    /// [`cancel_by_broker`] once it has sent queue.delete-ok.
    pub fn delete_queue_deferring(
        &self,
        q: &Arc<Queue>,
        deferred: Option<&Arc<crate::channel::delivery::ChannelShared>>,
    ) -> (u32, Vec<Arc<crate::channel::delivery::Consumer>>) {
        {
            let mut qs = self.queues.write();
            match qs.get(&q.name) {
                Some(x) if Arc::ptr_eq(x, q) => {
                    qs.remove(&q.name);
                }
                _ => return (0, Vec::new()),
            }
        }
        self.unbind_everywhere(&Dest::Queue(q.clone()));
        self.changed(q.durable && q.exclusive_owner.is_none());
        let (consumers, n) = q.mark_deleted();
        let mut later = Vec::new();
        for c in consumers {
            if deferred.is_some_and(|ch| Arc::ptr_eq(ch, &c.channel)) {
                later.push(c);
            } else {
                cancel_by_broker(&c);
            }
        }
        self.retired.lock().add(&q.totals());
        (n, later)
    }

    /// The policy that applies to an object `applies` accepts, if any.
    pub fn policy_for(&self, applies: impl Fn(&crate::policy::Policy) -> bool) -> Option<Arc<crate::policy::Policy>> {
        crate::policy::pick(&self.policies.read(), applies).cloned()
    }
    /// Every policy, by name.
    pub fn policies(&self) -> Vec<Arc<crate::policy::Policy>> {
        let mut v = self.policies.read().clone();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
    /// Set (create or replace) a policy; true when it is new. It applies to queues and exchanges
    /// declared from now on (see `policy`'s invariants); existing ones it matches are logged.
    pub fn set_policy(&self, p: crate::policy::Policy) -> bool {
        let p = Arc::new(p);
        let existing: Vec<String> = self
            .queues_snapshot()
            .iter()
            .map(|q| q.name.to_str_lossy().into_owned())
            .filter(|n| p.matches_queue(n, false) || p.matches_queue(n, true))
            .collect();
        if !existing.is_empty() {
            tracing::warn!(
                "policy '{}' in vhost '{}' applies to queues declared from now on; {} existing queue(s) keep their settings (e.g. '{}')",
                p.name,
                self.name,
                existing.len(),
                existing[0]
            );
        }
        let mut ps = self.policies.write();
        let created = !ps.iter().any(|x| x.name == p.name);
        ps.retain(|x| x.name != p.name);
        ps.push(p);
        drop(ps);
        self.changed(true);
        created
    }
    /// Remove a policy; false if there was none.
    pub fn clear_policy(&self, name: &str) -> bool {
        let mut ps = self.policies.write();
        let before = ps.len();
        ps.retain(|x| x.name != name);
        let removed = ps.len() != before;
        drop(ps);
        if removed {
            self.changed(true);
        }
        removed
    }

    /// Message counters of every queue this vhost ever had (live ones plus deleted ones).
    pub fn queue_totals(&self) -> crate::stats::Totals {
        let mut t = *self.retired.lock();
        for q in self.queues_snapshot() {
            t.add(&q.totals());
        }
        t
    }

    /// exchange.declare.
    pub fn declare_exchange(&self, d: &ExchangeDeclare) -> AmqpResult<()> {
        let name = &d.exchange;
        if name.is_empty() {
            // spec: the default exchange can be declared passively only... RabbitMQ refuses both.
            return Err(AmqpError::channel(ACCESS_REFUSED, "operation not permitted on the default exchange", None));
        }
        if !d.passive {
            if ExchangeKind::parse(d.kind.as_bytes()).is_none() {
                // As RabbitMQ: an unknown type closes the connection, even on a redeclare.
                return Err(AmqpError::connection(
                    COMMAND_INVALID,
                    format!("unknown exchange type '{}'", d.kind),
                    None,
                ));
            }
            if let Some(v) = d.arguments.get("alternate-exchange") {
                if v.as_bytes().is_none() {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        format!(
                            "invalid type '{}' for arg 'alternate-exchange' in {}",
                            rabbit_type(v),
                            self.ex_desc(name)
                        ),
                        None,
                    ));
                }
            }
        }
        if let Some(ex) = self.exchange(name) {
            if d.passive {
                return Ok(());
            }
            let ineq = |arg: &str, got: String, cur: String| {
                AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!(
                        "inequivalent arg '{arg}' for {}: received '{got}' but current is '{cur}'",
                        self.ex_desc(name)
                    ),
                    None,
                )
            };
            if ex.kind.name().as_bytes() != d.kind.as_bytes() {
                return Err(ineq("type", d.kind.to_string(), ex.kind.name().to_string()));
            }
            if ex.durable != d.durable {
                return Err(ineq("durable", d.durable.to_string(), ex.durable.to_string()));
            }
            if ex.auto_delete != d.auto_delete {
                return Err(ineq("auto_delete", d.auto_delete.to_string(), ex.auto_delete.to_string()));
            }
            if ex.internal != d.internal {
                return Err(ineq("internal", d.internal.to_string(), ex.internal.to_string()));
            }
            if let Some((k, got, cur)) = first_arg_difference(&d.arguments, &ex.arguments, EXCHANGE_EQUIV_ARGS) {
                return Err(ineq(&k, got, cur));
            }
            return Ok(());
        }
        if d.passive {
            return Err(AmqpError::channel(NOT_FOUND, format!("no {}", self.ex_desc(name)), None));
        }
        if name.as_bytes().starts_with(b"amq.") {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format!("exchange name '{name}' contains reserved prefix 'amq.*'"),
                None,
            ));
        }
        let kind = ExchangeKind::parse(d.kind.as_bytes()).ok_or_else(|| {
            // rabbitmq-compat: RabbitMQ closes the connection with 503 for an unknown type.
            AmqpError::connection(COMMAND_INVALID, format!("unknown exchange type '{}'", d.kind), None)
        })?;
        let mut exs = self.exchanges.write();
        exs.entry(name.clone()).or_insert_with(|| {
            Exchange::new(
                name.clone(),
                kind,
                d.durable,
                d.auto_delete,
                d.internal,
                d.arguments.clone(),
                self.policy_for(|p| p.matches_exchange(&name.to_str_lossy())),
            )
        });
        drop(exs);
        self.changed(d.durable);
        Ok(())
    }

    /// exchange.delete.
    pub fn delete_exchange(&self, name: &ShortStr, if_unused: bool) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(AmqpError::channel(ACCESS_REFUSED, "operation not permitted on the default exchange", None));
        }
        if name.as_bytes().starts_with(b"amq.") {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format!("deletion of system {} not allowed", self.ex_desc(name)),
                None,
            ));
        }
        let Some(ex) = self.exchange(name) else {
            // RabbitMQ 3.x answers delete-ok for a missing exchange.
            return Ok(());
        };
        if if_unused && ex.has_bindings() {
            return Err(AmqpError::channel(PRECONDITION_FAILED, format!("{} in use", self.ex_desc(name)), None));
        }
        self.remove_exchange(&ex);
        Ok(())
    }

    /// Remove `ex`, its bindings as a source, and every binding to it (cascading auto-deletes).
    fn remove_exchange(&self, ex: &Arc<Exchange>) {
        {
            let mut exs = self.exchanges.write();
            match exs.get(&ex.name) {
                Some(x) if Arc::ptr_eq(x, ex) => {
                    exs.remove(&ex.name);
                }
                _ => return,
            }
        }
        *ex.bindings.write() = Default::default();
        self.unbind_everywhere(&Dest::Exchange(ex.clone()));
        self.changed(ex.durable);
    }

    /// Remove every binding leading to `dest`; auto-delete exchanges left without bindings go too.
    fn unbind_everywhere(&self, dest: &Dest) {
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for ex in exchanges {
            if ex.unbind_dest(dest) && ex.auto_delete {
                self.remove_exchange(&ex);
            }
        }
    }

    /// exchange.bind: route from `source` to `destination` as well.
    pub fn bind_exchange(
        &self,
        destination: &ShortStr,
        source: &ShortStr,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> AmqpResult<()> {
        let dst = self.bindable_exchange(destination)?;
        let src = self.bindable_exchange(source)?;
        check_binding_args(&src, &arguments)?;
        let durable = src.durable && dst.durable;
        src.bind(Binding { dest: Dest::Exchange(dst), routing_key, arguments });
        self.changed(durable);
        Ok(())
    }

    /// exchange.unbind.
    pub fn unbind_exchange(
        &self,
        destination: &ShortStr,
        source: &ShortStr,
        routing_key: &ShortStr,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        // As RabbitMQ: unbinding where the source or destination does not exist is not an error.
        let (Some(dst), Some(src)) = (self.unbind_exchange_named(destination)?, self.unbind_exchange_named(source)?)
        else {
            return Ok(());
        };
        let durable = src.durable && dst.durable;
        if src.unbind(&Dest::Exchange(dst), routing_key, arguments) && src.auto_delete && !src.has_bindings() {
            self.remove_exchange(&src);
        }
        self.changed(durable);
        Ok(())
    }

    /// The exchange named in a bind/unbind: must exist and not be the default exchange.
    fn bindable_exchange(&self, exchange: &ShortStr) -> AmqpResult<Arc<Exchange>> {
        if exchange.is_empty() {
            return Err(AmqpError::channel(ACCESS_REFUSED, "operation not permitted on the default exchange", None));
        }
        self.exchange(exchange)
            .ok_or_else(|| AmqpError::channel(NOT_FOUND, format!("no {}", self.ex_desc(exchange)), None))
    }

    /// The exchange named in an unbind: the default exchange is refused, a missing one is `None`.
    fn unbind_exchange_named(&self, exchange: &ShortStr) -> AmqpResult<Option<Arc<Exchange>>> {
        if exchange.is_empty() {
            return Err(AmqpError::channel(ACCESS_REFUSED, "operation not permitted on the default exchange", None));
        }
        Ok(self.exchange(exchange))
    }

    /// queue.bind.
    pub fn bind_queue(
        &self,
        q: Arc<Queue>,
        exchange: &ShortStr,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> AmqpResult<()> {
        let ex = self.bindable_exchange(exchange)?;
        check_binding_args(&ex, &arguments)?;
        let durable = ex.durable && q.durable && q.exclusive_owner.is_none();
        ex.bind(Binding { dest: Dest::Queue(q), routing_key, arguments });
        self.changed(durable);
        Ok(())
    }

    /// queue.unbind.
    pub fn unbind_queue(
        &self,
        q: &Arc<Queue>,
        exchange: &ShortStr,
        routing_key: &ShortStr,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        let Some(ex) = self.unbind_exchange_named(exchange)? else { return Ok(()) };
        if ex.unbind(&Dest::Queue(q.clone()), routing_key, arguments) && ex.auto_delete && !ex.has_bindings() {
            self.remove_exchange(&ex);
        }
        self.changed(ex.durable && q.durable && q.exclusive_owner.is_none());
        Ok(())
    }

    /// Periodic work: expire messages at queue heads, delete queues unused past `x-expires`.
    pub fn sweep(&self, now: u64) {
        let queues: Vec<Arc<Queue>> = self
            .queues
            .read()
            .values()
            .filter(|q| q.settings.message_ttl.is_some() || q.settings.expires.is_some() || q.may_hold_expiring())
            .cloned()
            .collect();
        for q in queues {
            if q.sweep(now) {
                tracing::info!(
                    "{} expired (unused for {} ms): deleting it",
                    q.describe(),
                    q.settings.expires.unwrap_or(0)
                );
                self.delete_queue(&q);
            }
        }
    }

    /// Page message bodies beyond each queue's in-memory window out to the store (transient ones
    /// too under memory pressure). Returns the bytes freed.
    pub fn page_out(&self, pressure: bool) -> usize {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        queues.iter().map(|q| q.page_out(pressure)).sum()
    }

    /// Body bytes of all ready messages in this vhost held in memory (memory alarm).
    pub fn queued_bytes(&self) -> u64 {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        queues.iter().map(|q| q.ready_bytes() as u64).sum()
    }

    /// Queues owned exclusively by `conn` (deleted when it closes).
    pub fn exclusive_queues_of(&self, conn: ConnectionId) -> Vec<Arc<Queue>> {
        self.queues.read().values().filter(|q| q.exclusive_owner == Some(conn)).cloned().collect()
    }
}

/// 405 when `q` is exclusive to another connection.
fn check_exclusive(q: &Queue, conn: ConnectionId) -> AmqpResult<()> {
    match q.exclusive_owner {
        Some(owner) if owner != conn => Err(exclusive_locked(q)),
        _ => Ok(()),
    }
}

/// RabbitMQ's 405 for a queue this connection may not use exclusively (one text for every case).
fn exclusive_locked(q: &Queue) -> AmqpError {
    AmqpError::channel(
        RESOURCE_LOCKED,
        format!(
            "cannot obtain exclusive access to locked {}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
            q.describe()
        ),
        None,
    )
}

/// Headers exchanges check `x-match` when a binding is made, as RabbitMQ.
fn check_binding_args(ex: &Exchange, args: &FieldTable) -> AmqpResult<()> {
    if ex.kind != ExchangeKind::Headers {
        return Ok(());
    }
    match args.get("x-match") {
        None => Ok(()),
        Some(FieldValue::LongStr(s)) => match s.as_bytes() {
            b"all" | b"any" | b"all-with-x" | b"any-with-x" => Ok(()),
            other => Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!(
                    "Invalid x-match field value <<\"{}\">>; expected all, any, all-with-x, or any-with-x",
                    String::from_utf8_lossy(other)
                ),
                None,
            )),
        },
        Some(v) => Err(AmqpError::channel(
            PRECONDITION_FAILED,
            format!("Invalid x-match field type {} (value {}); expected longstr", rabbit_type(v), fmt_value(Some(v))),
            None,
        )),
    }
}

/// Exchange arguments compared on redeclare.
const EXCHANGE_EQUIV_ARGS: &[&str] = &["alternate-exchange"];

/// The first of `keys` whose value differs between a redeclare and the original, as
/// (name, received, current).
fn first_arg_difference(got: &FieldTable, cur: &FieldTable, keys: &[&str]) -> Option<(String, String, String)> {
    for k in keys {
        match (got.get(k), cur.get(k)) {
            (None, None) => {}
            (Some(a), Some(b)) if a == b || same_number(a, b) => {}
            (a, b) => return Some((k.to_string(), fmt_value(a), fmt_value(b))),
        }
    }
    None
}

/// RabbitMQ's name for a field value's type, as its error texts use it.
pub fn rabbit_type(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) => "long",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal(..) => "decimal",
        FieldValue::LongStr(_) => "longstr",
        FieldValue::Bytes(_) => "binary",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
    }
}

fn same_number(a: &warren_protocol::FieldValue, b: &warren_protocol::FieldValue) -> bool {
    matches!((a.as_i64(), b.as_i64()), (Some(x), Some(y)) if x == y)
}

fn fmt_value(v: Option<&warren_protocol::FieldValue>) -> String {
    use warren_protocol::FieldValue as F;
    match v {
        None => "none".into(),
        Some(v) => match v.as_i64() {
            Some(n) => n.to_string(),
            None => match v {
                F::LongStr(s) | F::Bytes(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                F::Bool(b) => b.to_string(),
                other => format!("{other:?}"),
            },
        },
    }
}

/// The broker cancels a consumer (its queue was deleted): remove it from its channel and tell the
/// client with basic.cancel if it supports consumer_cancel_notify.
pub fn cancel_by_broker(c: &Arc<Consumer>) {
    let ch = &c.channel;
    let mut st = ch.state.lock();
    if st.consumers.remove(&c.tag).is_none() || st.closed {
        return;
    }
    if ch.cancel_notify {
        let m =
            Method::BasicCancel(warren_protocol::method::BasicCancel { consumer_tag: c.tag.clone(), no_wait: true });
        ch.out.write(|b| warren_protocol::frame::encode_method(b, ch.id, &m));
    }
}
