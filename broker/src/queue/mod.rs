//! Queues: ready messages in order, the consumers ring, and the delivery loop.
//!
//! Design (b) of the architecture: each queue's state sits behind one short `parking_lot::Mutex`
//! taken by whoever has work for it (a publisher's reader enqueuing, a consumer's reader acking or
//! requeuing, a writer re-driving after its buffer drained). Nobody awaits while holding it. Delivery
//! happens inline: the enqueuing task hands the message to a consumer's channel, which encodes it into
//! that connection's outbound buffer. No task hop, no per-message wakeup beyond the writer's.
//!
//! # Invariants
//! - `ready` is ordered by `seq`; requeued messages go back to their original position.
//! - A message is in exactly one place: `ready`, or one channel's unacked map, or gone.
//! - Lock order: queue state -> channel state -> outbound (LOCKS.md). No topology lock is held here.
//! - One channel's publishes reach the queue in publish order (the reader enqueues synchronously).
use crate::channel::delivery::Consumer;
use crate::error::{AmqpError, AmqpResult};
use crate::ids::ConnectionId;
use crate::message::{Message, QueuedMsg};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use warren_protocol::constants::ACCESS_REFUSED;
use warren_protocol::{FieldTable, ShortStr};

/// Mutable state of a queue.
pub struct QueueState {
    /// Messages waiting for a consumer, by `seq`.
    pub ready: VecDeque<QueuedMsg>,
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
    /// Body bytes of the messages in `ready` (for the memory alarm).
    ready_bytes: usize,
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
    /// `x-single-active-consumer`: only the earliest registered consumer receives; the next takes
    /// over when it goes.
    pub single_active: bool,
    /// `Weak` to itself, to hand out `Arc<Queue>` from `&self`.
    me: Weak<Queue>,
    /// The state.
    state: Mutex<QueueState>,
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
        let single_active = arguments.get("x-single-active-consumer").and_then(|v| v.as_bool()).unwrap_or(false);
        Arc::new_cyclic(|me| Queue {
            single_active,
            name,
            vhost: vhost.to_string(),
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            me: me.clone(),
            state: Mutex::new(QueueState {
                ready: VecDeque::new(),
                next_seq: 0,
                consumers: Vec::new(),
                rr: 0,
                had_consumer: false,
                deleted: false,
                ready_bytes: 0,
            }),
        })
    }

    fn arc(&self) -> Option<Arc<Queue>> {
        self.me.upgrade()
    }

    /// `queue 'name' in vhost '/'`, as RabbitMQ words it in error texts.
    pub fn describe(&self) -> String {
        format!("queue '{}' in vhost '{}'", self.name, self.vhost)
    }

    /// Enqueue a published message and deliver what can be delivered. False if the queue is deleted.
    #[inline]
    pub fn publish(&self, msg: Arc<Message>) -> bool {
        let mut st = self.state.lock();
        if st.deleted {
            return false;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.ready_bytes += msg.body.len();
        st.ready.push_back(QueuedMsg { msg, seq, redelivered: false });
        self.drain(&mut st);
        true
    }

    /// Deliver ready messages while some consumer has credit.
    pub fn drive(&self) {
        let mut st = self.state.lock();
        self.drain(&mut st);
    }

    fn drain(&self, st: &mut QueueState) {
        if st.consumers.is_empty() || st.ready.is_empty() {
            return;
        }
        let Some(me) = self.arc() else { return };
        'outer: while let Some(mut m) = st.ready.pop_front() {
            let bytes = m.msg.body.len();
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
                    match c.channel.try_deliver(c, m, &me) {
                        Ok(()) => {
                            st.rr = pos + 1;
                            st.ready_bytes -= bytes;
                            continue 'outer;
                        }
                        Err(back) => m = back,
                    }
                }
                start = end;
            }
            st.ready.push_front(m);
            break;
        }
    }

    /// Put messages back (nack/reject with requeue, recover, channel close). They keep their
    /// position and are marked redelivered.
    pub fn requeue(&self, mut msgs: Vec<QueuedMsg>) {
        if msgs.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        if st.deleted {
            return;
        }
        for m in msgs.iter_mut() {
            m.redelivered = true;
            st.ready_bytes += m.msg.body.len();
        }
        msgs.sort_by_key(|m| m.seq);
        let all_before = st.ready.front().is_none_or(|f| msgs.last().is_some_and(|l| l.seq < f.seq));
        if all_before {
            for m in msgs.into_iter().rev() {
                st.ready.push_front(m);
            }
        } else {
            // General case: merge by seq.
            let old = std::mem::take(&mut st.ready);
            let mut merged = VecDeque::with_capacity(old.len() + msgs.len());
            let mut a = old.into_iter().peekable();
            let mut b = msgs.into_iter().peekable();
            loop {
                let take_a = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => x.seq < y.seq,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                let next = if take_a { a.next() } else { b.next() };
                merged.extend(next);
            }
            st.ready = merged;
        }
        self.drain(&mut st);
    }

    /// basic.get: take the first ready message and the count left.
    pub fn get(&self) -> Option<(QueuedMsg, u32)> {
        let mut st = self.state.lock();
        let m = st.ready.pop_front()?;
        st.ready_bytes -= m.msg.body.len();
        Some((m, st.ready.len() as u32))
    }

    /// Subscribe a consumer (checks exclusivity) and start delivering to it.
    /// `on_added` runs under the queue lock once the consumer is accepted, before any delivery to it
    /// (the caller writes basic.consume-ok there).
    pub fn add_consumer(&self, c: Arc<Consumer>, on_added: impl FnOnce()) -> AmqpResult<()> {
        let mut st = self.state.lock();
        if st.deleted {
            return Err(AmqpError::channel(
                warren_protocol::constants::NOT_FOUND,
                format!("no {}", self.describe()),
                None,
            ));
        }
        if st.consumers.iter().any(|x| x.exclusive) || (c.exclusive && !st.consumers.is_empty()) {
            return Err(AmqpError::channel(ACCESS_REFUSED, format!("{} in exclusive use", self.describe()), None));
        }
        on_added();
        let at = if self.single_active {
            st.consumers.len() // registration order decides who is active
        } else {
            st.consumers.iter().position(|x| x.priority < c.priority).unwrap_or(st.consumers.len())
        };
        st.consumers.insert(at, c);
        st.had_consumer = true;
        self.drain(&mut st);
        Ok(())
    }

    /// Unsubscribe the consumer `tag` of `channel`. Returns true when the queue is auto-delete and
    /// this was its last consumer: the caller deletes it.
    pub fn remove_consumer(&self, c: &Arc<Consumer>) -> bool {
        let mut st = self.state.lock();
        let before = st.consumers.len();
        st.consumers.retain(|x| !Arc::ptr_eq(x, c));
        if st.consumers.len() != before && st.rr >= st.consumers.len() {
            st.rr = 0;
        }
        self.auto_delete && st.had_consumer && st.consumers.is_empty() && !st.deleted
    }

    /// Drop every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len();
        st.ready.clear();
        st.ready_bytes = 0;
        n as u32
    }

    /// Body bytes of the ready messages.
    pub fn ready_bytes(&self) -> usize {
        self.state.lock().ready_bytes
    }

    pub fn message_count(&self) -> u32 {
        self.state.lock().ready.len() as u32
    }
    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }
    /// (ready messages, consumers) in one lock.
    pub fn counts(&self) -> (u32, u32) {
        let st = self.state.lock();
        (st.ready.len() as u32, st.consumers.len() as u32)
    }

    /// Mark deleted, drop messages, and return the consumers to cancel and the message count.
    pub fn mark_deleted(&self) -> (Vec<Arc<Consumer>>, u32) {
        let mut st = self.state.lock();
        st.deleted = true;
        let n = st.ready.len() as u32;
        st.ready.clear();
        st.ready_bytes = 0;
        (std::mem::take(&mut st.consumers), n)
    }
}
