//! A vhost's timers, in one heap served by one task: delayed messages of `x-delayed-message`
//! exchanges (the contract of RabbitMQ's rabbitmq_delayed_message_exchange plugin: a message
//! published with an `x-delay` header of more than 0 ms is held, then routed as the exchange's
//! `x-delayed-type` routes at that moment), and the expiry of queue heads (a queue asks for a
//! timer at its head's expiry, so a TTL fires on time instead of at the next 100 ms sweep).
//!
//! Runs in: the publishing task (hold, schedule), and the vhost's timer task (spawned at the
//! first timer) for delivery and expiry.
//!
//! # Invariants
//! - Timers fire in due order; equal due times keep the order they were set in (`seq`).
//! - A due time that does not fit the clock (years of delay) is capped at `MAX_DELAY`, never
//!   wrapped into the past.
//! - The task holds only a `Weak` to its vhost and ends once the vhost is gone.
//! - Due times are on the vhost's clock (`clock::VClock`): advancing or unfreezing it wakes the
//!   task, which fires what became due; while it is frozen, nothing becomes due by waiting.
use super::VHost;
use crate::exchange::Routed;
use crate::message::Message;
use crate::queue::Queue;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use warren_protocol::FieldValue;

/// The longest delay kept as asked; longer ones are held this long (about 100 years).
const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long the delay task waits for work before checking that its vhost still exists.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// What a timer does when due.
enum Work {
    /// Route a held message (its exchange and routing key say where it goes); its record in
    /// the store, for a persistent message held by a durable exchange (dropped once it is routed,
    /// which acks the record).
    Deliver(Message, Option<crate::store::DiskRef>),
    /// Expire the head of a queue (if it still exists).
    Expire(Weak<Queue>),
}

/// One timer.
struct Held {
    /// When it is due (ms on the vhost's clock, `VClock::now_ms`).
    due: u64,
    /// Order of setting, for equal due times.
    seq: u64,
    /// What to do.
    work: Work,
}

impl PartialEq for Held {
    fn eq(&self, o: &Held) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Held) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

/// A vhost's timers.
#[derive(Default)]
pub struct Timers {
    /// Earliest due first, and the last `seq` given.
    heap: Mutex<(BinaryHeap<Reverse<Held>>, u64)>,
    /// Wakes the task when an earlier message arrives.
    wake: Notify,
    /// The task has been spawned.
    started: AtomicBool,
    /// What the messages held count against the memory watermark ([`held_cost`]).
    held_bytes: AtomicU64,
}

/// What a held message counts against the memory watermark: its head and body, and the fixed
/// overhead a queued message counts (its timer entry is of the same order).
fn held_cost(m: &Message) -> u64 {
    (m.mem_size() + crate::queue::ready::QUEUED_MESSAGE_OVERHEAD) as u64
}

impl Timers {
    /// Drop every held delayed message (their records are acked); queue expiry timers stay.
    /// Returns how many were dropped.
    pub fn drop_delayed(&self) -> usize {
        let gone: Vec<Held> = {
            let mut h = self.heap.lock();
            let all = std::mem::take(&mut h.0).into_vec();
            let (gone, kept): (Vec<_>, Vec<_>) =
                all.into_iter().map(|r| r.0).partition(|x| matches!(x.work, Work::Deliver(..)));
            h.0 = kept.into_iter().map(Reverse).collect();
            gone
        };
        for g in &gone {
            if let Work::Deliver(m, _) = &g.work {
                self.held_bytes.fetch_sub(held_cost(m), Ordering::Relaxed);
            }
        }
        gone.len()
    }

    /// The clock moved (a test control): fire what became due, wait anew for the rest.
    pub fn clock_moved(&self) {
        self.wake.notify_one();
    }

    /// What the messages held count against the memory watermark.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes.load(Ordering::Relaxed)
    }

    /// Messages held by every delayed-message exchange of the vhost (Prometheus).
    pub fn delayed(&self) -> usize {
        self.heap.lock().0.iter().filter(|h| matches!(&h.0.work, Work::Deliver(..))).count()
    }

    /// Test control "peek": the messages held for exchange `name`, earliest due first, from
    /// `offset`, at most `count`: (due time on the vhost's clock, message). Nothing is taken.
    pub fn peek_delayed(&self, name: &[u8], offset: usize, count: usize) -> (Vec<(u64, Message)>, usize) {
        let h = self.heap.lock();
        let mut held: Vec<(u64, u64, &Message)> =
            h.0.iter()
                .filter_map(|r| match &r.0.work {
                    Work::Deliver(m, _) if m.exchange_bytes() == name => Some((r.0.due, r.0.seq, m)),
                    _ => None,
                })
                .collect();
        held.sort_unstable_by_key(|(due, seq, _)| (*due, *seq));
        let total = held.len();
        let copy = |m: &Message| Message::new(m.exchange(), m.routing_key(), m.properties(), m.body_owned()).ok();
        let page = held.into_iter().skip(offset).take(count).filter_map(|(due, _, m)| Some((due, copy(m)?))).collect();
        (page, total)
    }

    /// Messages held for exchange `name` (management API: `messages_delayed`).
    pub fn count_for(&self, name: &[u8]) -> usize {
        self.heap
            .lock()
            .0
            .iter()
            .filter(|h| matches!(&h.0.work, Work::Deliver(m, _) if m.exchange_bytes() == name))
            .count()
    }
}

/// The `x-delay` header of raw `properties`, when it asks for a delay (an integer above 0).
pub fn delay_of(headers: Option<&warren_protocol::FieldTable>) -> Option<u64> {
    match headers?.get("x-delay")? {
        v @ FieldValue::LongStr(_) => String::from_utf8_lossy(v.as_bytes()?).trim().parse::<i64>().ok(),
        v => v.as_i64(),
    }
    .filter(|d| *d > 0)
    .map(|d| d as u64)
}

impl VHost {
    /// Hold `msg` for `delay_ms`. A persistent message held by a `durable` exchange is written
    /// to the store first (its due time as the record's expiry), so it survives a restart;
    /// returns the LSN its publisher's confirm waits for (0: not stored).
    pub(super) fn hold(&self, delay_ms: u64, msg: Message, durable: bool) -> u64 {
        let delay = Duration::from_millis(delay_ms).min(MAX_DELAY).as_millis() as u64;
        let (disk, lsn) = match (&self.store, durable && msg.persistent()) {
            (Some(store), true) => {
                let due_unix = self.clock.unix_ms().saturating_add(delay);
                let key = crate::store::delayed_key(&self.name, msg.exchange_bytes());
                let (d, lsn) = store.append(crate::store::log::KIND_PERSISTENT, key, &msg, due_unix, 0);
                (Some(d), lsn)
            }
            _ => (None, 0),
        };
        self.timers.held_bytes.fetch_add(held_cost(&msg), Ordering::Relaxed);
        self.set_timer(self.clock.now_ms().saturating_add(delay), Work::Deliver(msg, disk));
        lsn
    }

    /// Hold again a delayed message recovered from the store: due at `due_unix_ms` (at once if
    /// that has passed while the broker was down).
    pub fn hold_recovered(&self, due_unix_ms: u64, msg: Message, disk: crate::store::DiskRef) {
        let wait = due_unix_ms.saturating_sub(self.clock.unix_ms());
        let delay = Duration::from_millis(wait).min(MAX_DELAY).as_millis() as u64;
        self.timers.held_bytes.fetch_add(held_cost(&msg), Ordering::Relaxed);
        self.set_timer(self.clock.now_ms().saturating_add(delay), Work::Deliver(msg, Some(disk)));
    }

    /// Add a timer (the task is spawned at the first one).
    fn set_timer(&self, due: u64, work: Work) {
        let d = &self.timers;
        let earliest = {
            let mut h = d.heap.lock();
            h.1 += 1;
            let seq = h.1;
            let earlier = h.0.peek().is_none_or(|top| due < top.0.due);
            h.0.push(Reverse(Held { due, seq, work }));
            earlier
        };
        if !d.started.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(run(self.timers.clone(), self.clock.clone(), self.me.clone()));
                }
                Err(_) => {
                    d.started.store(false, Ordering::Release);
                    tracing::error!("vhost '{}': no runtime to run timers on", self.name);
                }
            }
        }
        if earliest {
            d.wake.notify_one();
        }
    }

    /// A queue's head expiry timer (see `QueueHost::schedule_expiry`).
    pub(super) fn expire_at(&self, q: Weak<Queue>, at_ms: u64) {
        self.set_timer(at_ms, Work::Expire(q));
    }

    /// Route a message that came due: as its exchange routes now (no delay again).
    fn deliver_due(&self, msg: Message, disk: Option<crate::store::DiskRef>) {
        self.timers.held_bytes.fetch_sub(held_cost(&msg), Ordering::Relaxed);
        // As the plugin: the delivered message carries `x-delay` negated, so a consumer that
        // forwards it with its headers does not delay it again.
        let msg = match negate_delay(&msg.properties()) {
            Some(p) => msg.with_properties(&p),
            None => msg,
        };
        let mut routed = Routed::default();
        let (exchange, routing_key, properties) = (msg.exchange(), msg.routing_key(), msg.properties());
        let properties = crate::lent::Lent::all(&properties);
        match self.route_with(exchange.as_bytes(), routing_key.as_bytes(), properties, &mut routed, false) {
            Ok(replaced) => {
                let msg = match replaced {
                    Some(p) => msg.with_properties(&p),
                    None => msg,
                };
                self.journal.record(msg.properties_bytes(), &self.clock, || crate::journal::Event::Released {
                    exchange: exchange.to_str_lossy().into_owned(),
                    queues: routed.queues.iter().map(|q| crate::journal::owned(&q.name)).collect(),
                });
                VHost::enqueue(&routed.queues, &msg, |_| false);
            }
            Err(e) => tracing::debug!("delayed message dropped: {}", e.reply_text()),
        }
        // Routed (and written again by each durable queue that took it): its held record goes.
        drop(disk);
    }
}

/// Properties with the `x-delay` header negated (`None` when there is no such header).
fn negate_delay(properties: &bytes::Bytes) -> Option<bytes::Bytes> {
    let mut p = warren_protocol::BasicProperties::decode(properties.clone()).ok()?;
    let h = p.headers.as_mut()?;
    let d = h.get("x-delay")?.as_i64()?;
    let v = match i32::try_from(-d) {
        Ok(v) => FieldValue::I32(v),
        Err(_) => FieldValue::I64(d.saturating_neg()),
    };
    h.insert("x-delay", v);
    Some(p.to_bytes())
}

/// The timer task of one vhost.
async fn run(d: Arc<Timers>, clock: Arc<crate::clock::VClock>, vhost: Weak<VHost>) {
    loop {
        let next = d.heap.lock().0.peek().map(|h| h.0.due);
        let wait = match next {
            // Frozen, only a move of the clock (which wakes this task) makes anything due.
            Some(due) if !clock.frozen() => Duration::from_millis(due.saturating_sub(clock.now_ms())).min(IDLE_CHECK),
            _ => IDLE_CHECK,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = d.wake.notified() => {}
        }
        let Some(v) = vhost.upgrade() else { return };
        let now = clock.now_ms();
        loop {
            let due = {
                let mut h = d.heap.lock();
                match h.0.peek() {
                    Some(top) if top.0.due <= now => h.0.pop().map(|r| r.0.work),
                    _ => None,
                }
            };
            match due {
                Some(Work::Deliver(msg, disk)) => v.deliver_due(msg, disk),
                Some(Work::Expire(q)) => {
                    if let Some(q) = q.upgrade() {
                        q.on_expiry_timer();
                    }
                }
                None => break,
            }
        }
    }
}
