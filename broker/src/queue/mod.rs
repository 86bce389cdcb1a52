//! Queues: ready messages, the consumers ring, the delivery loop, and message lifetime (TTL, length
//! limits, dead-lettering, priorities, queue expiry).
//!
//! Design (b) of the architecture: each queue's state sits behind one short `parking_lot::Mutex`
//! taken by whoever has work for it (a publisher's reader enqueuing, a consumer's reader acking or
//! requeuing, a writer re-driving after its buffer drained, the broker's sweeper expiring). Nobody
//! awaits while holding it. Delivery happens inline: the enqueuing task hands the message to a
//! consumer's channel, which encodes it into that connection's outbound buffer.
//!
//! # Invariants
//! - `ready` is ordered by `seq` within each priority level; requeued messages go back to their
//!   original position.
//! - A message is in exactly one place: `ready`, or one channel's unacked map, or gone.
//! - Lock order: queue state -> channel state -> outbound (LOCKS.md). Dead letters are collected
//!   under the lock and republished after it is released (so dead-letter cycles cannot deadlock).
//! - An expired message is never delivered: the head is checked before every delivery and get.
//! - One channel's publishes reach the queue in publish order (the reader enqueues synchronously).
//! - Inside a reader's batch, a publish to a plain queue with one consumer to consider is queued
//!   and the queue driven once the batch's run of publishes ends (`defer`, `drive_pending`): its
//!   consumer gets them in runs (`drain_runs`). A queue whose `drive_pending` is set is driven
//!   before that reader handles any other frame.
pub mod chunked;
pub mod consumer;
pub mod deadletter;
pub mod defer;
pub mod ready;
pub mod settings;
pub mod staged;
pub mod stream;

use crate::clock::VClock;
use crate::error::{AmqpError, AmqpResult};
use crate::ids::ConnectionId;
use crate::message::{Message, QueuedMsg};
use crate::queue::consumer::Consumer;
use crate::store::{log::KIND_PERSISTENT, RecoveredMsg, Store};
use deadletter::{DeadLetter, Reason};
use parking_lot::Mutex;
use ready::Ready;
use settings::{Overflow, QueueSettings};
use std::sync::{Arc, Weak};
use warren_protocol::constants::ACCESS_REFUSED;
use warren_protocol::{FieldTable, ShortStr};

/// Mutable state of a queue.
pub struct QueueState {
    /// Messages waiting for a consumer.
    ready: Ready,
    /// Next `seq` to assign.
    next_seq: u64,
    /// Consumers by priority (highest first), then subscription order. Deliveries go to the highest
    /// priority with credit, round-robin within a priority.
    consumers: Vec<Arc<Consumer>>,
    /// Round-robin position within a priority group.
    rr: usize,
    /// Set once a consumer has subscribed (auto-delete applies only after that).
    had_consumer: bool,
    /// Set when the queue was deleted: enqueues and requeues are dropped.
    pub deleted: bool,
    /// Last time (`now_ms`) the queue was used (consumer, get, declare), for `x-expires`.
    last_used: u64,
    /// When the expiry timer asked of the host fires (`now_ms` clock); 0 = none armed.
    expiry_armed: u64,
    /// A reader's batch deferred a delivery and will drive this queue when it ends (see
    /// [`defer`]): a publish meanwhile only queues.
    drive_pending: bool,
    /// Message counters (management API, Prometheus), kept under this lock (no atomics on the
    /// publish path): published, delivered (ack / no-ack), got (ack / no-ack), get_empty,
    /// redelivered.
    pub counters: crate::counters::Totals,
    /// Its effective settings and the policies they came from: re-applied when a policy that
    /// matches it is set, changed or cleared (under this lock, which every reader holds anyway).
    /// Boxed, so the state's hot fields stay on as few cache lines as before.
    pub applied: Box<Applied>,
    /// A stream's log (`None` for other queues): it replaces `ready`.
    pub log: Option<Box<crate::stream::Log>>,
}

/// A queue's effective settings and the (operator) policy behind them.
#[derive(Clone)]
pub struct Applied {
    /// Arguments merged with the policy and the operator policy (`settings.rs`).
    pub settings: QueueSettings,
    /// The policy that applies.
    pub policy: Option<Arc<crate::policy::Policy>>,
    /// The operator policy that applies (its limits cap the others).
    pub operator_policy: Option<Arc<crate::policy::Policy>>,
}

impl Applied {
    /// `arguments` with `policy` then `operator_policy` merged in (the lowest limit wins).
    pub fn new(
        arguments: &FieldTable,
        policy: Option<Arc<crate::policy::Policy>>,
        operator_policy: Option<Arc<crate::policy::Policy>>,
    ) -> Applied {
        let settings =
            QueueSettings::from_args(arguments).with_policy(policy.as_deref()).with_policy(operator_policy.as_deref());
        Applied { settings, policy, operator_policy }
    }
}

/// Acks of a queue's deliveries: counted by the acking reader, once per run of acks, on a cache
/// line of its own (the queue lock's line is written by publishers and consumers all the time).
#[derive(Default)]
#[repr(align(64))]
pub struct AckCounter(pub std::sync::atomic::AtomicU64);

/// Most messages a queue hands to one consumer under one lock of its channel and of its
/// connection's buffer ([`Queue::drain_runs`]): long enough to take those locks' cost (cache lines
/// the consumer's core takes too) off each message, short enough that the consumer's own replies
/// and its writer wait a few microseconds at most.
const DRAIN_RUN: usize = 64;

/// Purged or deleted queues with at least this many messages are freed on the dropper thread.
const DISPOSE_IN_BACKGROUND: usize = 16 * 1024;

/// After freeing something, the dropper thread asks the allocator to return freed memory to the
/// OS this often...
const RELEASE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);
/// ...for this long: the threads that own the freed memory hand its pages back to the allocator
/// bit by bit, and the allocator returns pages to the OS (`madvise`) once they have been free for
/// its purge delay (1 s), all that is due at once, on whichever thread is allocating then: a
/// runtime thread, stalled for 100 ms after a 13 M-message queue was deleted. Asked often from the
/// dropper, it does that work there, in small parts.
const RELEASE_FOR: std::time::Duration = std::time::Duration::from_millis(1500);

/// The dropper thread's nice level (the lowest priority).
const DROPPER_NICE: i32 = 19;

/// The allocator's "return freed memory to the OS now" (set once by `main`, which chooses the
/// allocator; unset, the dropper only drops).
static RELEASE_FREED_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Give the dropper thread the allocator's "return freed memory to the OS now".
pub fn set_release_freed_memory(f: fn()) {
    let _ = RELEASE_FREED_MEMORY.set(f);
}

/// Hand something big to the dropper thread (started on first use) to be freed there.
fn dispose_in_background(garbage: Garbage) {
    use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
    static DROPPER: std::sync::OnceLock<Option<Mutex<Sender<Garbage>>>> = std::sync::OnceLock::new();
    let tx = DROPPER.get_or_init(|| {
        let (tx, rx) = channel::<Garbage>();
        std::thread::Builder::new()
            .name("warren-dropper".into())
            .spawn(move || {
                // The lowest priority: freeing takes a core for a second or two, and the
                // connections' threads must not wait for it.
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), DROPPER_NICE);
                let mut release_until = None;
                loop {
                    let next = match release_until {
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(_) => rx.recv_timeout(RELEASE_INTERVAL),
                    };
                    match next {
                        Ok(g) => {
                            drop_messages(g);
                            release_until = RELEASE_FREED_MEMORY.get().map(|_| std::time::Instant::now() + RELEASE_FOR);
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if let Some(release) = RELEASE_FREED_MEMORY.get() {
                                release();
                            }
                            if release_until.is_some_and(|t| std::time::Instant::now() >= t) {
                                release_until = None;
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    match tx {
        Some(tx) => {
            if let Err(back) = tx.lock().send(garbage) {
                drop(back.0);
            }
        }
        None => drop_messages(garbage),
    }
}

/// Run `f`, which blocks for a while, without holding up the runtime worker's other tasks: on a
/// multi-thread runtime they are handed to another thread meanwhile (`block_in_place`); elsewhere
/// (a current-thread runtime, no runtime) `f` just runs.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Messages taken out of a queue, to be freed.
type Garbage = Vec<chunked::ChunkDeque<QueuedMsg>>;

/// Store references are released in batches of this many (one lock of the store per batch).
const RELEASE_BATCH: usize = 4096;

/// Free messages taken out of a queue; their store records' ends are recorded a batch at a time.
fn drop_messages(mut taken: Garbage) {
    release_records(&mut taken);
    drop(taken);
}

/// Record the end of the store records of messages taken out of a queue, a batch at a time.
fn release_records(taken: &mut Garbage) {
    let mut refs = Vec::with_capacity(RELEASE_BATCH);
    for m in taken.iter_mut().flat_map(|level| level.iter_mut()) {
        if let Some(d) = m.disk.take() {
            refs.push(d);
            if refs.len() == RELEASE_BATCH {
                crate::store::DiskRef::release_batch(&mut refs);
            }
        }
    }
    crate::store::DiskRef::release_batch(&mut refs);
}

/// A queue's state as the management API shows it.
pub struct QueueSnapshot {
    /// Ready messages.
    pub ready: u64,
    /// Bytes of ready message bodies.
    pub ready_bytes: u64,
    /// Bytes of ready bodies held in memory.
    pub ready_mem_bytes: u64,
    /// Ready messages whose body is in memory (not paged out; none for a stream).
    pub ready_in_memory: u64,
    /// Ready persistent messages and their bytes.
    pub ready_persistent: (u64, u64),
    /// `timestamp` property of the head message, if it has one.
    pub head_timestamp: Option<u64>,
    /// Consumers, in delivery order.
    pub consumers: Vec<Arc<Consumer>>,
    /// Last use (`now_ms` clock).
    pub last_used: u64,
}

/// What happened to a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Taken (delivered or waiting).
    Accepted,
    /// Refused by `x-overflow: reject-publish[-dlx]` (the publisher gets basic.nack under confirms).
    Rejected,
    /// The queue was deleted meanwhile.
    Gone,
}

/// A queue.
pub struct Queue {
    /// Queue name.
    pub name: ShortStr,
    /// Name of the vhost it lives in (for error texts).
    pub vhost: String,
    /// Declared durable.
    pub durable: bool,
    /// The connection owning an exclusive queue.
    pub exclusive_owner: Option<ConnectionId>,
    /// Deleted when its last consumer goes (after it had one).
    pub auto_delete: bool,
    /// Declare arguments as given (compared on redeclare).
    pub arguments: FieldTable,
    /// Its type (`x-queue-type`), fixed at declare.
    pub kind: settings::QueueType,
    /// Single active consumer (`x-single-active-consumer`), fixed at declare.
    single_active: bool,
    /// Highest priority level (`x-max-priority`), fixed at declare.
    max_priority: Option<u8>,
    /// The vhost, for dead-lettering.
    vhost_ref: Weak<dyn QueueHost>,
    /// Its vhost's clock (message TTL, `x-expires`, consumer timeouts, `x-death` times).
    pub clock: Arc<VClock>,
    /// Its vhost's message trace (deliveries, settlements, refusals, expiry, dead letters).
    pub journal: Arc<crate::journal::Journal>,
    /// Set once a message with its own TTL was enqueued (the sweeper then visits this queue).
    saw_message_ttl: std::sync::atomic::AtomicBool,
    /// `Weak` to itself, to hand out `Arc<Queue>` from `&self`.
    me: Weak<Queue>,
    /// The broker's message store, if it has a data directory (persistence and paging).
    store: Option<Arc<Store>>,
    /// Persistent messages are written to the store: durable and not exclusive (exclusive queues
    /// die with their connection, so RabbitMQ does not restore them).
    persist: bool,
    /// Identifies the queue in message records ([`crate::store::queue_key`]).
    key: u64,
    /// Acknowledged deliveries.
    pub acked: AckCounter,
    /// Streams: woken on every append, for stream protocol subscribers waiting for messages.
    pub tick: tokio::sync::Notify,
    /// The state.
    state: Mutex<QueueState>,
}

fn m_has_ttl(m: &Message) -> bool {
    m.ttl_ms().get().is_some()
}

/// Dead letters collected under the lock, republished after it.
type DeadLetters = Vec<(QueuedMsg, Reason)>;

/// A ready message as `Queue::peek` shows it.
pub struct Peeked {
    /// The message (its body read back if it was paged out).
    pub msg: Message,
    /// It was delivered before and requeued.
    pub redelivered: bool,
    /// Times delivered so far.
    pub deliveries: u32,
}

impl Queue {
    pub fn new(
        name: ShortStr,
        vhost: &str,
        durable: bool,
        exclusive_owner: Option<ConnectionId>,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Arc<Queue> {
        Queue::in_vhost(
            name,
            vhost,
            Weak::<NoSink>::new(),
            Arc::default(),
            Arc::default(),
            None,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            None,
            None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn in_vhost(
        name: ShortStr,
        vhost: &str,
        vhost_ref: Weak<dyn QueueHost>,
        clock: Arc<VClock>,
        journal: Arc<crate::journal::Journal>,
        store: Option<Arc<Store>>,
        durable: bool,
        exclusive_owner: Option<ConnectionId>,
        auto_delete: bool,
        arguments: FieldTable,
        policy: Option<Arc<crate::policy::Policy>>,
        operator_policy: Option<Arc<crate::policy::Policy>>,
    ) -> Arc<Queue> {
        // The lowest of argument, policy and operator policy wins for every limit.
        let applied = Applied::new(&arguments, policy, operator_policy);
        let settings = &applied.settings;
        let (kind, single_active, max_priority) = (settings.kind, settings.single_active, settings.max_priority);
        let levels = max_priority.map(|p| p as usize + 1).unwrap_or(1);
        let key = crate::store::queue_key(vhost, name.as_bytes());
        let persist = durable && exclusive_owner.is_none() && store.is_some();
        let q = Arc::new_cyclic(|me| Queue {
            store: store.clone(),
            persist,
            key,
            name,
            vhost: vhost.to_string(),
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            kind,
            single_active,
            max_priority,
            vhost_ref,
            clock: clock.clone(),
            journal,
            saw_message_ttl: Default::default(),
            me: me.clone(),
            state: Mutex::new(QueueState {
                ready: Ready::new(levels, store),
                next_seq: 0,
                consumers: Vec::new(),
                rr: 0,
                had_consumer: false,
                deleted: false,
                last_used: clock.now_ms(),
                expiry_armed: 0,
                drive_pending: false,
                counters: crate::counters::Totals::default(),
                applied: Box::new(applied),
                log: None,
            }),
            acked: AckCounter::default(),
            tick: tokio::sync::Notify::new(),
        });
        if q.kind == settings::QueueType::Stream {
            let log = q.open_log();
            q.state.lock().log = log;
        }
        q
    }

    fn arc(&self) -> Option<Arc<Queue>> {
        self.me.upgrade()
    }

    /// `queue 'name' in vhost '/'`, as RabbitMQ words it in error texts.
    pub fn describe(&self) -> String {
        format!("queue '{}' in vhost '{}'", self.name, self.vhost)
    }

    /// Its effective settings now (a copy: they change when a policy does).
    pub fn settings(&self) -> QueueSettings {
        self.state.lock().applied.settings.clone()
    }

    /// Its effective settings and the policies behind them now.
    pub fn applied(&self) -> Applied {
        (*self.state.lock().applied).clone()
    }

    /// A policy or operator policy that matches it was set, changed or cleared: apply the new
    /// pair. A lower length limit drops (or dead-letters) the oldest messages at once, as a
    /// publish would; a new TTL applies to messages enqueued from now on.
    pub fn reapply(&self, policy: Option<Arc<crate::policy::Policy>>, operator: Option<Arc<crate::policy::Policy>>) {
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            if st.deleted {
                return;
            }
            *st.applied = Applied::new(&self.arguments, policy, operator);
            if st.applied.settings.overflow == Overflow::DropHead && st.applied.settings.has_limits() {
                self.drop_head_over_limit(&mut st, &mut dead);
            }
        }
        self.dead_letter(dead);
    }

    /// Enqueue a published message and deliver what can be delivered.
    #[inline]
    pub fn publish(self: &Arc<Self>, msg: Message) -> Enqueued {
        self.publish_durably(msg, &mut 0)
    }

    /// As [`Queue::publish`]; when the message is written to the store, `lsn` is raised to its
    /// record's LSN (a publisher confirm waits for that LSN to be fsynced).
    #[inline]
    pub fn publish_durably(self: &Arc<Self>, msg: Message, lsn: &mut u64) -> Enqueued {
        let mut dead = DeadLetters::new();
        let mut arm = None;
        let r = self.publish_locked(msg, &mut dead, lsn, &mut arm);
        self.dead_letter(dead);
        if let Some(at) = arm {
            self.arm_expiry(at);
        }
        r
    }

    /// Ask the host for an expiry timer at `at` (the state already says it is armed).
    #[cold]
    fn arm_expiry(&self, at: u64) {
        if let Some(host) = self.vhost_ref.upgrade() {
            host.schedule_expiry(self.me.clone(), at);
        }
    }

    /// The expiry timer fired: expire (and dead-letter) what is due at the heads, then arm the
    /// timer for the next head that expires. (The broker's sweeper does the same every 100 ms
    /// as a backstop; the timer makes a TTL fire within a millisecond or so, as RabbitMQ's.)
    pub fn on_expiry_timer(&self) {
        let mut expired = Vec::new();
        let next = {
            let mut st = self.state.lock();
            st.expiry_armed = 0;
            st.ready.expire_heads(self.clock.now_ms(), &mut expired);
            let next = st.ready.next_head_expiry();
            if let Some(n) = next {
                st.expiry_armed = n;
            }
            next
        };
        self.dead_letter(expired.into_iter().map(|m| (m, Reason::Expired)).collect());
        if let Some(at) = next {
            self.arm_expiry(at);
        }
    }

    /// A run of messages a reader staged for this queue ([`staged`]): enqueued in order under one
    /// lock of the queue, as [`Queue::publish`] would one by one (no outcome: nobody waits for
    /// one).
    pub fn publish_run(self: &Arc<Self>, msgs: &[Message]) {
        let mut dead = DeadLetters::new();
        let mut arm: Option<u64> = None;
        {
            let mut st = self.state.lock();
            for m in msgs {
                let mut at = None;
                if self.publish_in(&mut st, m.clone(), &mut dead, &mut 0, &mut at) == Enqueued::Gone {
                    break;
                }
                // The earliest: its timer re-arms itself for the next head.
                arm = match (arm, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        self.dead_letter(dead);
        if let Some(at) = arm {
            self.arm_expiry(at);
        }
    }

    fn publish_locked(
        self: &Arc<Self>,
        msg: Message,
        dead: &mut DeadLetters,
        lsn: &mut u64,
        arm: &mut Option<u64>,
    ) -> Enqueued {
        let mut st = self.state.lock();
        self.publish_in(&mut st, msg, dead, lsn, arm)
    }

    /// One publish, under the queue's lock.
    #[inline]
    fn publish_in(
        self: &Arc<Self>,
        st: &mut QueueState,
        msg: Message,
        dead: &mut DeadLetters,
        lsn: &mut u64,
        arm: &mut Option<u64>,
    ) -> Enqueued {
        if st.deleted {
            return Enqueued::Gone;
        }
        if st.log.is_some() {
            self.stream_publish(st, &msg, lsn);
            return Enqueued::Accepted;
        }
        let (queue_ttl, overflow, limited) = {
            let s = &st.applied.settings;
            (s.message_ttl, s.overflow, s.has_limits())
        };
        let priority = self.max_priority.map(|max| msg.priority().min(max)).unwrap_or(0);
        // Read the clock only when something in this queue can expire.
        let now = if queue_ttl.is_some() || msg.ttl_ms().get().is_some() { self.clock.now_ms() } else { 0 };
        let ttl = match (queue_ttl, msg.ttl_ms().get()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let expires_at = ttl.map(|t| now + t).unwrap_or(0);
        if m_has_ttl(&msg) {
            self.saw_message_ttl.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let persistent = msg.persistent();
        let mut m =
            QueuedMsg { msg, seq, redelivered: false, priority, expires_at, deliveries: 0, persistent, disk: None };
        if overflow != Overflow::DropHead && self.full_for(st, &m) {
            self.journal.record(m.msg.properties_bytes(), &self.clock, || crate::journal::Event::Refused {
                queue: crate::journal::owned(&self.name),
                reason: "maxlen",
            });
            if overflow == Overflow::RejectPublishDlx {
                dead.push((m, Reason::Maxlen));
            }
            return Enqueued::Rejected;
        }
        if self.persist && m.msg.persistent() {
            if let Some(store) = &self.store {
                let expires_unix = ttl.map(|t| self.clock.unix_ms() + t).unwrap_or(0);
                let (d, l) = store.append(KIND_PERSISTENT, self.key, &m.msg, expires_unix, priority);
                m.disk = Some(Box::new(d));
                *lsn = (*lsn).max(l);
            }
        }
        st.counters.published += 1;
        // A backlog means the last drain left messages that no consumer could take (no credit, its
        // connection's buffer full, or no consumer), and every event that gives a consumer room
        // drives the queue again (an ack, nack or requeue, basic.qos, a drained connection buffer,
        // a new or removed consumer): a publish behind a backlog need not try every consumer again
        // (under load that was a failed delivery attempt, two locks and a pop and push, per
        // message).
        //
        // An empty queue with consumers hands the message to one straight away (no push and pop):
        // the same outcome as queueing it and draining, which is what the end-to-end path does
        // for every message when consumers keep up.
        //
        // Inside a reader's batch, a plain queue (no TTL, length limit or priorities, whose
        // delivery order and drops do not depend on when a message leaves) with one consumer to
        // consider queues the message and is driven once when the batch ends ([`defer`]): its
        // consumer gets the batch's messages as runs, one lock of its channel per run.
        let backlog = !st.ready.is_empty();
        if backlog || st.consumers.is_empty() {
            st.ready.push_back(m);
        } else if ttl.is_none()
            && !limited
            && self.max_priority.is_none()
            && (self.single_active || st.consumers.len() == 1)
            && defer::active()
        {
            st.ready.push_back(m);
            if !st.drive_pending {
                st.drive_pending = true;
                defer::add(self.clone());
            }
        } else {
            let mut now = ttl.map(|_| now);
            if let Some(back) = self.offer(st, self, m, &mut now, dead) {
                st.ready.push_back(back);
            }
        }
        if ttl.is_some() {
            // TTL 0 (or already past): what was not delivered just now expires now.
            let mut expired = Vec::new();
            st.ready.expire_heads(now, &mut expired);
            dead.extend(expired.into_iter().map(|m| (m, Reason::Expired)));
        }
        if limited {
            self.drop_head_over_limit(st, dead);
        }
        // An expiring message: make sure a timer fires no later than its expiry, if it is (or
        // becomes) a head. One timer per queue at a time; it re-arms itself for the next head.
        if expires_at != 0 && (st.expiry_armed == 0 || expires_at < st.expiry_armed) {
            match st.ready.next_head_expiry() {
                Some(next) if st.expiry_armed == 0 || next < st.expiry_armed => {
                    st.expiry_armed = next;
                    *arm = Some(next);
                }
                _ => {}
            }
        }
        Enqueued::Accepted
    }

    /// reject-publish: would adding `m` exceed a length limit?
    fn full_for(&self, st: &QueueState, m: &QueuedMsg) -> bool {
        let s = &st.applied.settings;
        s.max_length.is_some_and(|max| st.ready.len() as u64 >= max)
            || s.max_length_bytes.is_some_and(|max| (st.ready.bytes() + m.msg.body().len()) as u64 > max)
    }

    /// drop-head: remove the oldest messages while over a length limit.
    fn drop_head_over_limit(&self, st: &mut QueueState, dead: &mut DeadLetters) {
        let (max_length, max_bytes) = (st.applied.settings.max_length, st.applied.settings.max_length_bytes);
        while max_length.is_some_and(|max| st.ready.len() as u64 > max)
            || max_bytes.is_some_and(|max| st.ready.bytes() as u64 > max)
        {
            match st.ready.pop_front() {
                Some(m) => dead.push((m, Reason::Maxlen)),
                None => break,
            }
        }
    }

    /// Deliver ready messages while some consumer has credit.
    pub fn drive(&self) {
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            self.drain(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// The end of a reader's batch that deferred a delivery here ([`defer`]): drive.
    fn drive_deferred(&self) {
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            st.drive_pending = false;
            self.drain(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    fn drain(&self, st: &mut QueueState, dead: &mut DeadLetters) {
        self.drain_at(st, dead, None)
    }

    /// `now` is the caller's clock reading, if it has one (a publish passes its own, so a TTL-0
    /// message can still go to a waiting consumer).
    fn drain_at(&self, st: &mut QueueState, dead: &mut DeadLetters, mut now: Option<u64>) {
        if st.log.is_some() {
            return self.stream_drain(st);
        }
        if st.consumers.is_empty() || st.ready.is_empty() {
            return;
        }
        let Some(me) = self.arc() else { return };
        if self.single_active || st.consumers.len() == 1 {
            return self.drain_runs(st, &me, &mut now, dead);
        }
        while let Some(m) = st.ready.pop_front() {
            if let Some(back) = self.offer(st, &me, m, &mut now, dead) {
                st.ready.push_front(back);
                break;
            }
        }
    }

    /// [`Queue::drain_at`] with one consumer to consider (the only one, or the single active
    /// one): deliver in runs of up to [`DRAIN_RUN`] messages, each under one lock of the
    /// consumer's channel and one of its connection's buffer, instead of both locks per message.
    fn drain_runs(&self, st: &mut QueueState, me: &Arc<Queue>, now: &mut Option<u64>, dead: &mut DeadLetters) {
        let c = st.consumers[0].clone();
        let no_ack = c.no_ack;
        loop {
            let mut took = 0;
            let delivered = c.channel.deliver_run::<DRAIN_RUN>(&c, me, || loop {
                let mut m = st.ready.pop_front()?;
                if m.expires_at != 0 && *now.get_or_insert_with(|| self.clock.now_ms()) > m.expires_at {
                    dead.push((m, Reason::Expired));
                    continue;
                }
                self.mark_redelivery(&mut m, false);
                m.deliveries += 1;
                took += 1;
                if no_ack {
                    st.counters.delivered_no_ack += 1;
                } else {
                    st.counters.delivered += 1;
                }
                st.counters.redelivered += m.redelivered as u64;
                // A stored message's first delivery is recorded, so it comes back redelivered.
                if let (Some(d), Some(store), false, false) = (&m.disk, &self.store, m.redelivered, no_ack) {
                    store.mark_delivered(d.seg, d.off);
                }
                return Some(m);
            });
            debug_assert_eq!(delivered, took, "a run delivers every message it takes");
            if delivered < DRAIN_RUN {
                return;
            }
        }
    }

    /// Offer `m` to the consumers in turn (priority groups first, round robin within one):
    /// `None` once one took it (or it had expired: then it is in `dead`), `Some(m)` back when none
    /// could take it (no credit, a full connection buffer).
    fn offer(
        &self,
        st: &mut QueueState,
        me: &Arc<Queue>,
        mut m: QueuedMsg,
        now: &mut Option<u64>,
        dead: &mut DeadLetters,
    ) -> Option<QueuedMsg> {
        if m.expires_at != 0 && *now.get_or_insert_with(|| self.clock.now_ms()) > m.expires_at {
            dead.push((m, Reason::Expired));
            return None;
        }
        self.mark_redelivery(&mut m, false);
        // A stored message's first delivery is recorded, so it comes back redelivered.
        let mark = if m.redelivered { None } else { m.disk.as_ref().map(|d| (d.seg, d.off)) };
        // Single active consumer: only the first in registration order is considered.
        let n = if self.single_active { 1 } else { st.consumers.len() };
        let mut start = 0;
        while start < n {
            // The group of consumers sharing this priority: [start, end).
            let p = st.consumers[start].priority;
            let end = start + st.consumers[start..n].iter().take_while(|c| c.priority == p).count();
            let len = end - start;
            for k in 0..len {
                let pos = (st.rr + k) % len;
                let c = &st.consumers[start + pos];
                m.deliveries += 1;
                let no_ack = c.no_ack;
                let again = m.redelivered;
                match c.channel.try_deliver(c, m, me) {
                    Ok(()) => {
                        if no_ack {
                            st.counters.delivered_no_ack += 1;
                        } else {
                            st.counters.delivered += 1;
                        }
                        st.counters.redelivered += again as u64;
                        if let (Some((seg, off)), Some(store), false) = (mark, &self.store, no_ack) {
                            store.mark_delivered(seg, off);
                        }
                        st.rr = pos + 1;
                        return None;
                    }
                    Err(back) => {
                        m = back;
                        m.deliveries -= 1;
                    }
                }
            }
            start = end;
        }
        Some(m)
    }

    /// Quorum queues tell consumers how often a message was delivered before (`x-delivery-count`).
    /// As RabbitMQ 3.10: basic.get always carries it (from 0), a consumer delivery only once the
    /// message was delivered before.
    fn mark_redelivery(&self, m: &mut QueuedMsg, for_get: bool) {
        if self.kind == settings::QueueType::Quorum && (for_get || m.deliveries > 0) {
            let n = warren_protocol::FieldValue::I64(m.deliveries as i64);
            m.msg = m.msg.with_header("x-delivery-count", n);
        }
    }

    /// Put messages back (nack/reject with requeue, recover, channel close). They keep their
    /// position and are marked redelivered; past `x-delivery-limit` they are dead-lettered instead.
    pub fn requeue(&self, mut msgs: Vec<QueuedMsg>) {
        if msgs.is_empty() {
            return;
        }
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            if st.deleted {
                return;
            }
            if st.log.is_some() {
                // rabbitmq-compat: a stream keeps every message; a requeue only returns credit.
                drop(msgs);
                self.stream_drain(&mut st);
                return;
            }
            if let Some(limit) = st.applied.settings.delivery_limit {
                let (over, keep): (Vec<_>, Vec<_>) = msgs.into_iter().partition(|m| m.deliveries as u64 > limit);
                dead.extend(over.into_iter().map(|m| (m, Reason::DeliveryLimit)));
                msgs = keep;
            }
            for m in msgs.iter_mut() {
                m.redelivered = true;
            }
            st.ready.requeue(msgs);
            self.drain(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// Messages settled without requeue (nack/reject requeue=false): dead-lettered if configured.
    pub fn rejected(&self, msgs: Vec<QueuedMsg>) {
        if self.state.lock().applied.settings.dlx.is_some() {
            self.dead_letter(msgs.into_iter().map(|m| (m, Reason::Rejected)).collect());
        }
    }

    /// basic.get: take the first unexpired ready message and the count left (refused by streams).
    pub fn get(&self, no_ack: bool) -> AmqpResult<Option<(QueuedMsg, u32)>> {
        let mut dead = DeadLetters::new();
        let r = {
            let mut st = self.state.lock();
            if st.log.is_some() {
                return Err(self.stream_refusal("basic.get"));
            }
            st.last_used = self.clock.now_ms();
            let mut r = None;
            while let Some(mut m) = st.ready.pop_front() {
                if m.expires_at != 0 && self.clock.now_ms() > m.expires_at {
                    dead.push((m, Reason::Expired));
                    continue;
                }
                self.mark_redelivery(&mut m, true);
                m.deliveries += 1;
                if let (false, Some(d), Some(store)) = (m.redelivered, &m.disk, &self.store) {
                    store.mark_delivered(d.seg, d.off);
                }
                if no_ack {
                    st.counters.got_no_ack += 1;
                } else {
                    st.counters.got += 1;
                }
                st.counters.redelivered += m.redelivered as u64;
                r = Some((m, st.ready.len() as u32));
                break;
            }
            if r.is_none() {
                st.counters.get_empty += 1;
            }
            r
        };
        self.dead_letter(dead);
        Ok(r)
    }

    /// Subscribe a consumer (checks exclusivity) and start delivering to it.
    /// `on_added` runs under the queue lock once the consumer is accepted, before any delivery to it
    /// (the caller writes basic.consume-ok there).
    pub fn add_consumer(&self, c: Arc<Consumer>, on_added: impl FnOnce()) -> AmqpResult<()> {
        let mut dead = DeadLetters::new();
        {
            let mut st = self.state.lock();
            if st.deleted {
                return Err(AmqpError::channel(
                    warren_protocol::constants::NOT_FOUND,
                    format!("no {}", self.describe()),
                    None,
                ));
            }
            // rabbitmq-compat: as RabbitMQ, a stream does not enforce exclusive consumers.
            let exclusive_matters = st.log.is_none();
            if exclusive_matters
                && (st.consumers.iter().any(|x| x.exclusive) || (c.exclusive && !st.consumers.is_empty()))
            {
                return Err(AmqpError::channel(ACCESS_REFUSED, format!("{} in exclusive use", self.describe()), None));
            }
            on_added();
            if let (Some(log), Some(cur)) = (st.log.as_deref(), &c.stream) {
                cur.next.store(log.resolve(cur.start), std::sync::atomic::Ordering::Relaxed);
            }
            let at = if self.single_active {
                st.consumers.len() // registration order decides who is active
            } else {
                st.consumers.iter().position(|x| x.priority < c.priority).unwrap_or(st.consumers.len())
            };
            st.consumers.insert(at, c);
            st.had_consumer = true;
            st.last_used = self.clock.now_ms();
            self.drain(&mut st, &mut dead);
        }
        self.dead_letter(dead);
        Ok(())
    }

    /// Remove every consumer (a test fault: they are cancelled as if the queue were deleted, by
    /// the caller with `cancel_by_broker`); the queue stays.
    pub fn take_consumers(&self) -> Vec<Arc<Consumer>> {
        let mut st = self.state.lock();
        st.rr = 0;
        std::mem::take(&mut st.consumers)
    }

    /// Unsubscribe consumer `c`. Returns true when the queue is auto-delete and this was its last
    /// consumer: the caller deletes it. Otherwise the caller drives the queue once the consumer's
    /// unacked messages are requeued (if they are): the next consumer in line (single active
    /// consumer) takes the backlog, requeued messages first.
    pub fn remove_consumer(&self, c: &Arc<Consumer>) -> bool {
        let mut st = self.state.lock();
        let before = st.consumers.len();
        st.consumers.retain(|x| !Arc::ptr_eq(x, c));
        if st.consumers.len() != before && st.rr >= st.consumers.len() {
            st.rr = 0;
        }
        st.last_used = self.clock.now_ms();
        self.auto_delete && st.had_consumer && st.consumers.is_empty() && !st.deleted
    }

    /// Test control "peek": the ready messages `offset..offset + count` in delivery order, read
    /// without removing, reordering or redelivering them (a paged-out body is read back from
    /// the store, after the queue's lock is released). Returns them and the ready count.
    pub fn peek(&self, offset: usize, count: usize) -> (Vec<Peeked>, usize) {
        let (picked, total): (Vec<_>, usize) = {
            let st = self.state.lock();
            if let Some(log) = st.log.as_deref() {
                // A stream: its messages from the first kept one, read without moving anyone.
                let r = log.read(log.first() + offset as u64, count);
                let out = r
                    .entries
                    .iter()
                    .map(|e| Peeked { msg: stream::as_amqp091(e, &self.name), redelivered: false, deliveries: 0 })
                    .collect();
                return (out, log.len() as usize);
            }
            let picked = st
                .ready
                .iter()
                .skip(offset)
                .take(count)
                .map(|m| {
                    let paged = m.disk.as_ref().filter(|d| d.paged).map(|d| (d.seg, d.off, d.len));
                    (m.msg.clone(), paged, m.redelivered, m.deliveries)
                })
                .collect();
            (picked, st.ready.len())
        };
        let out = picked
            .into_iter()
            .map(|(msg, paged, redelivered, deliveries)| {
                let msg = match (paged, &self.store) {
                    (Some(r), Some(store)) => match store.page_in(&[r]).pop() {
                        Some(Ok(m)) => m,
                        _ => msg,
                    },
                    _ => msg,
                };
                Peeked { msg, redelivered, deliveries }
            })
            .collect();
        (out, total)
    }

    /// Whether messages with their own TTL may sit in this queue.
    pub fn may_hold_expiring(&self) -> bool {
        self.saw_message_ttl.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A redeclare counts as use (`x-expires`).
    pub fn touch(&self) {
        self.state.lock().last_used = self.clock.now_ms();
    }

    /// Periodic work (the broker's sweeper): expire messages at the head, and report whether the
    /// queue itself has expired (`x-expires`: unused for that long).
    pub fn sweep(&self, now: u64) -> bool {
        let mut expired = Vec::new();
        let unused_too_long = {
            let mut st = self.state.lock();
            if let Some(log) = st.log.as_deref_mut() {
                if log.retention.max_age_ms.is_some() {
                    log.apply_retention(self.clock.unix_ms());
                }
                return false;
            }
            st.ready.expire_heads(now, &mut expired);
            st.applied
                .settings
                .expires
                .is_some_and(|e| st.consumers.is_empty() && now.saturating_sub(st.last_used) >= e)
        };
        self.dead_letter(expired.into_iter().map(|m| (m, Reason::Expired)).collect());
        unused_too_long
    }

    /// Drop every ready message; returns how many.
    pub fn purge(&self) -> AmqpResult<u32> {
        let (n, taken) = {
            let mut st = self.state.lock();
            if st.log.is_some() {
                return Err(self.stream_refusal("queue.purge"));
            }
            st.ready.take_all()
        };
        self.dispose(n, taken);
        Ok(n as u32)
    }

    /// Drop messages taken out of the queue, after its lock is released. Millions of them take
    /// seconds to free: that happens on a background thread, so neither this queue's lock nor the
    /// runtime thread of the client that purged or deleted it stall (a latency spike for every
    /// other connection served there). A queue with records in the store releases them here
    /// first: the ack entries must be appended before the caller reports the purge or delete as
    /// durable.
    fn dispose(&self, n: usize, mut taken: Vec<chunked::ChunkDeque<QueuedMsg>>) {
        if n < DISPOSE_IN_BACKGROUND {
            drop_messages(taken);
            return;
        }
        if self.persist {
            // Millions of records take a fraction of a second: the runtime's other tasks move to
            // another thread meanwhile (another queue's p99 during a 6 M-message purge was 200 ms).
            off_the_runtime(|| release_records(&mut taken));
        }
        dispose_in_background(taken);
    }

    /// Memory the ready messages take as the memory alarm counts it: bodies held in memory plus a
    /// fixed overhead per message held in memory (`Ready::mem_footprint`; paged-out ones count
    /// nothing).
    pub fn ready_bytes(&self) -> usize {
        self.state.lock().ready.mem_footprint()
    }

    /// One step of a paging sweep: page bodies beyond the in-memory window out to the store
    /// (persistent ones always; transient ones under memory pressure or in a long queue), walking at
    /// most [`PAGE_STEP_MESSAGES`](crate::store::PAGE_STEP_MESSAGES) messages under the queue's
    /// lock (`Ready::page_out`). Returns the bytes freed and whether more work is left.
    pub fn page_out_step(&self, pressure: ready::Pressure) -> (usize, bool) {
        if self.store.is_none() {
            return (0, false);
        }
        self.state.lock().ready.page_out(pressure, self.key, crate::store::PAGE_STEP_MESSAGES)
    }

    /// Identifies the queue in message records.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// Whether the queue is restored at start (durable, not exclusive) with its messages.
    pub fn persists(&self) -> bool {
        self.persist
    }

    /// Put a recovered message back (boot, before any client connects; called in log order).
    /// `now` and `now_unix` are one clock reading on both clocks, for the stored expiry.
    pub fn recover(&self, r: RecoveredMsg, now: u64, now_unix: u64) {
        let Some(store) = &self.store else { return };
        let expires_at = match r.header.expires_unix_ms {
            0 => 0,
            // Already past: expires at the first sweep.
            e => now + e.saturating_sub(now_unix).max(1),
        };
        if expires_at != 0 {
            self.saw_message_ttl.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.ready.push_back(QueuedMsg {
            msg: store.placeholder(),
            seq,
            redelivered: r.delivered,
            priority: self.max_priority.map(|m| r.header.priority.min(m)).unwrap_or(0),
            expires_at,
            deliveries: r.delivered as u32,
            // Only persistent messages are recovered.
            persistent: true,
            disk: Some(Box::new(r.disk)),
        });
    }

    /// Count `n` acknowledged deliveries (called once per run of acks to this queue).
    #[inline]
    pub fn count_acks(&self, n: u64) {
        self.acked.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Message counters, for the management API: the locked ones plus acks.
    pub fn totals(&self) -> crate::counters::Totals {
        let mut t = self.state.lock().counters;
        t.acked = self.acked.0.load(std::sync::atomic::Ordering::Relaxed);
        t
    }

    /// What the management API shows of the queue's state: (ready, ready bytes, consumers,
    /// consumer tags with their channels, idle since ms on `now_ms`'s clock).
    pub fn snapshot(&self) -> QueueSnapshot {
        let st = self.state.lock();
        let head_timestamp =
            st.ready.head().filter(|m| !m.is_paged()).and_then(|m| {
                warren_protocol::BasicProperties::decode(m.msg.properties()).ok().and_then(|p| p.timestamp)
            });
        let (pn, pb) = st.ready.persistent();
        QueueSnapshot {
            ready: st.log.as_deref().map(|l| l.len()).unwrap_or(st.ready.len() as u64),
            ready_bytes: st.log.as_deref().map(|l| l.bytes()).unwrap_or(st.ready.bytes() as u64),
            ready_mem_bytes: st.ready.mem_bytes() as u64,
            ready_in_memory: st.ready.mem_len() as u64,
            ready_persistent: (pn as u64, pb as u64),
            head_timestamp,
            consumers: st.consumers.clone(),
            last_used: st.last_used,
        }
    }

    pub fn message_count(&self) -> u32 {
        self.counts().0
    }
    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }
    /// (ready messages, consumers) in one lock.
    pub fn counts(&self) -> (u32, u32) {
        let st = self.state.lock();
        let messages = st.log.as_deref().map(|l| l.len() as u32).unwrap_or(st.ready.len() as u32);
        (messages, st.consumers.len() as u32)
    }

    /// Mark deleted, drop messages, and return the consumers to cancel and the message count
    /// (0 for a stream, as RabbitMQ reports it).
    pub fn mark_deleted(&self) -> (Vec<Arc<Consumer>>, u32) {
        let (consumers, n, taken) = {
            let mut st = self.state.lock();
            st.deleted = true;
            if let Some(log) = st.log.as_deref_mut() {
                log.destroy();
            }
            // Stream protocol subscribers see the deletion.
            self.tick.notify_waiters();
            let (n, taken) = st.ready.take_all();
            (std::mem::take(&mut st.consumers), n, taken)
        };
        self.dispose(n, taken);
        (consumers, n as u32)
    }

    /// Hand dead letters to the vhost, which publishes them to the dead-letter exchange (no
    /// queue lock held). Inlined to the emptiness check: every enqueue and settle calls it, almost
    /// always with none (the call and the drop of an empty list were ~40 instructions each time,
    /// 3 % of a fanout delivery's).
    #[inline]
    fn dead_letter(&self, dead: DeadLetters) {
        if !dead.is_empty() {
            self.dead_letter_some(dead);
        }
    }

    /// [`Queue::dead_letter`] with at least one.
    #[inline(never)]
    fn dead_letter_some(&self, dead: DeadLetters) {
        let (dlx, dlrk) = {
            let st = self.state.lock();
            (st.applied.settings.dlx.clone(), st.applied.settings.dlrk.clone())
        };
        if self.journal.on() {
            for (m, reason) in &dead {
                self.journal.record(m.msg.properties_bytes(), &self.clock, || crate::journal::Event::Left {
                    queue: crate::journal::owned(&self.name),
                    reason: reason.as_str(),
                    dlx: dlx.as_ref().map(crate::journal::owned),
                });
            }
        }
        let (Some(dlx), Some(sink)) = (&dlx, self.vhost_ref.upgrade()) else { return };
        let now_secs = self.clock.unix_ms() / 1000;
        for (mut m, reason) in dead {
            if let (true, Some(store)) = (m.is_paged(), &self.store) {
                // An unacked message paged out under memory pressure, now rejected.
                if let Err(e) = store.read_back(&mut m) {
                    tracing::error!(
                        "message store: cannot read back a dead letter of {}: {e}; dropped",
                        self.describe()
                    );
                    continue;
                }
            }
            let (msg, deaths) = deadletter::dead_letter(&m.msg, &self.name, reason, dlx, dlrk.as_ref(), now_secs);
            sink.publish_dead_letter(DeadLetter { msg, deaths, reason }, &self.describe());
        }
    }
}

/// What a queue needs from the vhost that holds it, as a trait so the queue layer does not
/// import the vhost: somewhere to publish its dead letters (through the one publish path) once
/// its lock is released, and a timer for the expiry of its head.
pub trait QueueHost: Send + Sync {
    /// Publish `dl` to its dead-letter exchange; `from` names the queue it died in (for logs).
    fn publish_dead_letter(&self, dl: DeadLetter, from: &str);
    /// Call `q.on_expiry_timer()` at `at_ms` (`now_ms` clock).
    fn schedule_expiry(&self, q: Weak<Queue>, at_ms: u64);
}

/// The host of a queue made outside a vhost (tests): dead letters go nowhere, and expiry is
/// left to sweeps.
struct NoSink;
impl QueueHost for NoSink {
    fn publish_dead_letter(&self, _: DeadLetter, _: &str) {}
    fn schedule_expiry(&self, _: Weak<Queue>, _: u64) {}
}

impl crate::outbound::Redrive for Queue {
    fn redrive(&self) {
        self.drive();
    }
}
