//! The part of a channel that queues touch: delivery tags, unacked messages, prefetch credit and the
//! channel's consumers. Shared (`Arc<ChannelShared>`) between the connection reader, which acks and
//! closes, and every queue that delivers to a consumer of this channel.
//!
//! Runs in: whichever task delivers (a publisher's reader, this connection's reader on ack, a writer
//! re-driving a queue) under the queue's lock; and this connection's reader for acks.
//!
//! # Invariants
//! - Lock order: queue state -> `ChannelShared::state` -> outbound buffer (LOCKS.md). Code holding
//!   `state` never takes a queue lock.
//! - A delivery tag is assigned and its frames appended to the outbound buffer under `state`, so tags
//!   reach the client strictly increasing.
//! - `unacked[i]` holds tag `base_tag + i`; `None` marks a tag already settled (or a no-ack delivery).
//! - `in_flight` of a consumer and `global_in_flight` count exactly the unacked deliveries they cover.
//! - An unacked delivery names its source (a consumer, or a basic.get's queue) by a slot of
//!   `sources`, whose `refs` counts exactly the deliveries naming it; a slot is freed when that
//!   count reaches 0, and a consumer's `slot` is its slot while it has one. So the source's `Arc`
//!   is cloned once per slot, not once per delivery (and dropped once, not at every ack).
use crate::lent::Lent;
use crate::message::QueuedMsg;
use crate::outbound::Outbound;
use crate::queue::Queue;
use crate::trace::Traced;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use warren_protocol::{fast, FieldTable, ShortStr};

/// A consumer: a subscription of one channel to one queue.
pub struct Consumer {
    /// Consumer tag (client-chosen or `amq.ctag-...`).
    pub tag: ShortStr,
    /// The channel deliveries go to.
    pub channel: Arc<ChannelShared>,
    /// The queue consumed from.
    pub queue: Arc<Queue>,
    /// Deliveries need no ack (settled on send).
    pub no_ack: bool,
    /// Exclusive consumer: no other consumer may share the queue.
    pub exclusive: bool,
    /// Consumer priority (`x-priority` argument); higher goes first while it has credit.
    pub priority: i64,
    /// Per-consumer prefetch (basic.qos global=false at consume time); 0 = unlimited.
    pub prefetch: u32,
    /// Unacked deliveries of this consumer. Changed only under its channel's `state` lock (so by
    /// a plain load and store); read without it.
    pub in_flight: AtomicU32,
    /// Consumer acknowledgement timeout in ms (`x-consumer-timeout` or the broker default); None = off.
    pub timeout_ms: Option<u64>,
    /// basic.consume's arguments, as given (the management API shows them).
    pub arguments: FieldTable,
    /// A stream consumer's position and filter (`None` for other queues).
    pub stream: Option<crate::queue::stream::StreamCursor>,
    /// Its slot in its channel's `Deliveries::sources` while it has unacked deliveries
    /// ([`NO_SLOT`] otherwise). Changed only under its channel's `state` lock.
    pub slot: AtomicU32,
}

/// `Consumer::slot` of a consumer without unacked deliveries.
pub const NO_SLOT: u32 = u32::MAX;

/// One delivered, unacknowledged message.
pub struct Unacked {
    /// The message and its queue position.
    pub msg: QueuedMsg,
    /// The consumer it went to, or the queue of a basic.get.
    pub source: Source,
}

/// Where an unacked delivery came from: one reference, not one to the queue and one to the
/// consumer. A channel holds it once per source ([`Deliveries`]' slots), not once per delivery:
/// cloned at each delivery and dropped at each ack, its count's cache line was written on every
/// message (6 % of a fanout broker's time, the `lock` instruction absorbing the stores before it).
#[derive(Clone)]
pub enum Source {
    /// A consumer's delivery: it holds the consumer's credit, and its queue is the consumer's.
    Consumer(Arc<Consumer>),
    /// basic.get from this queue.
    Get(Arc<Queue>),
}

impl Unacked {
    /// The queue to requeue into (or dead-letter from).
    #[inline]
    pub fn queue(&self) -> &Arc<Queue> {
        self.source.queue()
    }
    /// The consumer whose credit it holds (`None` for basic.get).
    #[inline]
    pub fn consumer(&self) -> Option<&Arc<Consumer>> {
        self.source.consumer()
    }
}

impl Source {
    /// The queue its deliveries came from.
    #[inline]
    pub fn queue(&self) -> &Arc<Queue> {
        match self {
            Source::Consumer(c) => &c.queue,
            Source::Get(q) => q,
        }
    }
    /// The consumer (`None` for basic.get).
    #[inline]
    pub fn consumer(&self) -> Option<&Arc<Consumer>> {
        match self {
            Source::Consumer(c) => Some(c),
            Source::Get(_) => None,
        }
    }
}

/// A delivered, unacknowledged message as its channel holds it (see [`Unacked`], which the
/// channel hands out: this names its source by slot).
struct Held {
    /// The message and its queue position.
    msg: QueuedMsg,
    /// Its source's slot in `Deliveries::sources`.
    slot: u32,
    /// When it was delivered (`now_ms`), recorded only for consumers with an ack timeout.
    delivered_ms: u64,
}

/// A source of unacked deliveries and how many name it.
struct Slot {
    /// The consumer, or a basic.get's queue.
    source: Source,
    /// Unacked deliveries naming this slot.
    refs: u32,
}

/// What a basic.ack settled, for the acking reader to finish after the channel's lock
/// ([`Deliveries::settle_acks`]).
#[derive(Default)]
pub struct Acked {
    /// The messages, in tag order.
    pub msgs: Vec<QueuedMsg>,
    /// Consecutive runs of `msgs` with the same source.
    pub runs: Vec<AckRun>,
    /// Sources whose last unacked delivery this was: dropped after the lock.
    pub freed: Vec<Source>,
}

/// A run of acked messages from one source.
pub struct AckRun {
    /// The queue they came from.
    pub queue: Arc<Queue>,
    /// How many (the next ones of `Acked::msgs`).
    pub n: usize,
    /// Delivered to a consumer (not by basic.get): the consumer's credit was released.
    pub consumer: bool,
    /// The source's slot (runs are split where it changes).
    slot: u32,
}

/// Mutable delivery state of a channel.
pub struct Deliveries {
    /// Tag of `unacked[0]`.
    pub base_tag: u64,
    /// Next tag to assign (tags start at 1).
    pub next_tag: u64,
    /// Delivered messages by tag, see invariants.
    unacked: VecDeque<Option<Held>>,
    /// The sources the unacked deliveries name (a slab: `None` is a free slot).
    sources: Vec<Option<Slot>>,
    /// Free slots of `sources`.
    free_slots: Vec<u32>,
    /// Reused between settles (the deliveries taken, before they are handed out).
    taken: Vec<Held>,
    /// Number of `Some` in `unacked`.
    pub unacked_count: u32,
    /// Bytes of the `unacked` entries still in memory, bodies and heads ([`QueuedMsg::mem_size`];
    /// paged-out ones count 0): part of what the memory alarm counts.
    pub unacked_bytes: u64,
    /// Prefetch applied to consumers created from now on (basic.qos global=false); 0 = unlimited.
    pub consumer_prefetch: u32,
    /// Prefetch shared by all consumers of the channel (basic.qos global=true); 0 = unlimited.
    pub channel_prefetch: u32,
    /// Unacked consumer deliveries of the channel, for `channel_prefetch`.
    pub global_in_flight: u32,
    /// Set when the channel is closing: no more deliveries.
    pub closed: bool,
    /// Consumers by tag.
    pub consumers: HashMap<ShortStr, Arc<Consumer>>,
    /// Deliveries made on this channel (counted under this lock, which delivery holds anyway).
    pub counted: crate::counters::Totals,
}

/// The channel state shared with queues.
pub struct ChannelShared {
    /// Channel number on its connection.
    pub id: u16,
    /// The connection's outbound buffer.
    pub out: Arc<Outbound>,
    /// Whether the client asked for basic.cancel notifications (consumer_cancel_notify capability).
    pub cancel_notify: bool,
    /// Delivery state.
    pub state: Mutex<Deliveries>,
    /// Confirm or transactional mode (`stats::MODE_*`), for the management API.
    pub mode: crate::counters::ChannelMode,
    /// What the channel's reader counts (publishes, confirms, acks, returns): written only by
    /// that reader.
    pub counters: crate::counters::ConnCounters,
    /// Publishes not yet confirmed (confirm mode), as of the end of the reader's last batch:
    /// written by the reader once per batch, read by the management API and wait-until-idle.
    pub unconfirmed: std::sync::atomic::AtomicU64,
    /// Its connection's trace origin: deliveries are copied to the vhost's tracer while it is on.
    pub origin: Arc<crate::trace::Origin>,
}

impl ChannelShared {
    pub fn new(
        id: u16,
        out: Arc<Outbound>,
        cancel_notify: bool,
        origin: Arc<crate::trace::Origin>,
    ) -> Arc<ChannelShared> {
        Arc::new(ChannelShared {
            id,
            origin,
            out,
            cancel_notify,
            state: Mutex::new(Deliveries {
                base_tag: 1,
                next_tag: 1,
                unacked: VecDeque::new(),
                sources: Vec::new(),
                free_slots: Vec::new(),
                taken: Vec::new(),
                unacked_count: 0,
                unacked_bytes: 0,
                consumer_prefetch: 0,
                channel_prefetch: 0,
                global_in_flight: 0,
                closed: false,
                consumers: HashMap::new(),
                counted: Default::default(),
            }),
            mode: Default::default(),
            counters: Default::default(),
            unconfirmed: Default::default(),
        })
    }

    /// Try to deliver `m` to `c` (a run of one). Called by the queue under its lock. Gives `m`
    /// back when the consumer has no credit, the channel is closed, or the connection's buffer is
    /// full (then the queue is registered to be re-driven when it drains).
    #[inline]
    pub fn try_deliver(&self, c: &Arc<Consumer>, m: QueuedMsg, queue: &Arc<Queue>) -> Result<(), QueuedMsg> {
        let mut m = Some(m);
        self.deliver_run::<1>(c, queue, || m.take());
        match m {
            Some(m) => Err(m),
            None => Ok(()),
        }
    }

    /// Deliver to `c` the messages `next` hands out, up to `N`, under one lock of this channel and
    /// one of its connection's buffer, while `c` has credit and the buffer is under its high-water
    /// mark (else the queue is registered to be re-driven when it drains). `next` is called only
    /// once the message it returns can be delivered. Called by the queue under its lock. Returns
    /// how many were delivered.
    ///
    /// A run takes the four lock operations and the pending count's update, each on a cache line
    /// the consumer's writer (on the other core) takes too, once per run instead of once per
    /// message.
    #[inline]
    pub fn deliver_run<const N: usize>(
        &self,
        c: &Arc<Consumer>,
        queue: &Arc<Queue>,
        mut next: impl FnMut() -> Option<QueuedMsg>,
    ) -> usize {
        // Messages to trace or drop after the locks: a no-ack delivery's own (settled now), a
        // second handle of a manual-ack one only for the firehose or the journal (which is on by
        // default, but records only messages with an identity).
        let mut after: [(Option<crate::message::Message>, bool); N] = [const { (None, false) }; N];
        let tracing = self.origin.tracer.on();
        let mut traced = tracing;
        let mut n = 0;
        let mut st = self.state.lock();
        if st.closed {
            return 0;
        }
        let mut run = self.out.run();
        let mut full = false;
        let slot = if c.no_ack { NO_SLOT } else { st.slot_of_consumer(c) };
        while n < N {
            if !c.no_ack {
                let inf = c.in_flight.load(Ordering::Relaxed);
                if c.prefetch != 0 && inf >= c.prefetch {
                    break;
                }
                if st.channel_prefetch != 0 && st.global_in_flight >= st.channel_prefetch {
                    break;
                }
            }
            if run.over_high_water() {
                full = true;
                break;
            }
            let Some(m) = next() else { break };
            let tag = st.next_tag;
            st.next_tag += 1;
            let redelivered = m.redelivered;
            st.counted.redelivered += redelivered as u64;
            // Written before `m` moves into the unacked list, so that no second handle is taken
            // (two atomic operations on a count the consumer's core drops).
            let (channel, ctag) = (self.id, c.tag.as_bytes());
            let (exchange, routing_key) = (m.msg.exchange_bytes(), m.msg.routing_key_bytes());
            run.content(channel, |b| fast::deliver(b, channel, ctag, tag, redelivered, exchange, routing_key), &m.msg);
            after[n].1 = redelivered;
            let keep = tracing || queue.journal.wants(m.msg.properties_bytes());
            traced |= keep;
            if c.no_ack {
                st.counted.delivered_no_ack += 1;
                st.push_settled();
                after[n].0 = Some(m.msg);
            } else {
                if keep {
                    after[n].0 = Some(m.msg.clone());
                }
                st.counted.delivered += 1;
                // Written only under its channel's `state` lock (held here): no locked add needed.
                c.in_flight.store(c.in_flight.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                st.global_in_flight += 1;
                st.unacked_count += 1;
                st.unacked_bytes += m.mem_size() as u64;
                let delivered_ms = if c.timeout_ms.is_some() { queue.clock.now_ms() } else { 0 };
                debug_assert!(Arc::ptr_eq(&c.queue, queue), "a consumer is delivered to from its own queue");
                st.hold(slot, m, delivered_ms);
            }
            n += 1;
        }
        // A consumer's slot taken for a run that delivered nothing is given back (the caller
        // holds the consumer too: not its last reference).
        drop(st.unhold(slot, 0));
        drop(run);
        if full {
            self.out.wait_for_drain(queue);
        }
        drop(st);
        if traced {
            for (msg, redelivered) in after[..n].iter() {
                if let Some(msg) = msg {
                    self.trace_delivery(msg, queue, *redelivered);
                    self.journal_delivery(msg, queue, &c.tag, *redelivered);
                }
            }
        }
        n
    }

    /// Firehose: copy a delivery from `queue` while its vhost traces.
    #[inline]
    fn trace_delivery(&self, msg: &crate::message::Message, queue: &Queue, redelivered: bool) {
        if self.origin.tracer.on() && Traced::traceable(msg.exchange_bytes()) {
            let (properties, body) = (msg.properties(), msg.body_owned());
            let m = Traced {
                exchange: msg.exchange_bytes(),
                routing_key: msg.routing_key_bytes(),
                properties: Lent::all(&properties),
                sent_properties: Lent::all(&properties),
                body: Lent::all(&body),
            };
            self.origin.delivered(&m, &queue.name, redelivered, self.id);
        }
    }

    /// Message trace: a delivery from `queue` (`tag` empty: basic.get).
    #[inline]
    fn journal_delivery(&self, msg: &crate::message::Message, queue: &Queue, tag: &ShortStr, redelivered: bool) {
        queue.journal.record(msg.properties_bytes(), &queue.clock, || crate::journal::Event::Delivered {
            queue: crate::journal::owned(&queue.name),
            connection: self.origin.connection.clone(),
            channel: self.id,
            consumer_tag: crate::journal::owned(tag),
            redelivered,
        });
    }

    /// basic.get: record (unless no-ack) and send get-ok for `m`.
    pub fn deliver_get(&self, m: QueuedMsg, queue: &Arc<Queue>, no_ack: bool, remaining: u32) {
        let mut st = self.state.lock();
        let tag = st.next_tag;
        st.next_tag += 1;
        let msg = m.msg.clone();
        let redelivered = m.redelivered;
        st.counted.redelivered += redelivered as u64;
        if no_ack {
            st.counted.got_no_ack += 1;
            st.push_settled();
        } else {
            st.counted.got += 1;
            st.unacked_count += 1;
            st.unacked_bytes += m.mem_size() as u64;
            let slot = st.slot_of_get(queue);
            st.hold(slot, m, 0);
        }
        self.out.write_content(
            self.id,
            |b| fast::get_ok(b, self.id, tag, redelivered, msg.exchange_bytes(), msg.routing_key_bytes(), remaining),
            &msg,
        );
        drop(st);
        self.trace_delivery(&msg, queue, redelivered);
        self.journal_delivery(&msg, queue, &ShortStr::empty(), redelivered);
    }
}

impl ChannelShared {
    /// The channel's name as RabbitMQ shows it: `<connection name> (<number>)`.
    pub fn name(&self) -> String {
        format!("{} ({})", self.origin.connection, self.id)
    }

    /// `consumer.created` (with the consume's `arguments`) or `consumer.deleted` for `c`; `by`:
    /// the user who asked (`None`: the broker).
    pub fn consumer_event(&self, key: &'static str, c: &Consumer, arguments: Option<&FieldTable>, by: Option<&str>) {
        self.origin.events.emit(key, |f| {
            f.by(by);
            if let Some(a) = arguments {
                f.table("arguments", a)
                    .int("prefetch_count", c.prefetch as i64)
                    .bool("ack_required", !c.no_ack)
                    .bool("exclusive", c.exclusive);
            }
            f.str("queue", c.queue.name.as_bytes())
                .str("vhost", &self.origin.vhost)
                .str("channel", self.name())
                .str("consumer_tag", c.tag.as_bytes());
        });
    }

    /// Direct reply-to: deliver `msg` to this channel's reply consumer (no ack, no queue). False if
    /// the channel is closed, or if its connection already has more than `HIGH_WATER` pending
    /// (a requester that stopped reading): the reply is then unroutable (returned if mandatory).
    /// rabbitmq-compat: RabbitMQ buffers replies for a requester without bound; direct reply-to
    /// is at-most-once either way, and Warren keeps the same 4 MiB cap as for any consumer.
    pub fn deliver_direct(&self, consumer_tag: &ShortStr, msg: &crate::message::Message) -> bool {
        let mut st = self.state.lock();
        if st.closed || self.out.over_high_water() {
            return false;
        }
        let tag = st.next_tag;
        st.next_tag += 1;
        st.push_settled();
        self.out.write_content(
            self.id,
            |b| {
                fast::deliver(
                    b,
                    self.id,
                    consumer_tag.as_bytes(),
                    tag,
                    false,
                    msg.exchange_bytes(),
                    msg.routing_key_bytes(),
                )
            },
            msg,
        );
        true
    }
}

impl Deliveries {
    /// Record a tag that needs no ack.
    fn push_settled(&mut self) {
        if self.unacked.is_empty() {
            // Nothing outstanding: just move the window.
            self.base_tag = self.next_tag;
        } else {
            self.unacked.push_back(None);
        }
    }

    /// `c`'s slot, taken if it has none (under this lock, as every change of `c.slot`).
    fn slot_of_consumer(&mut self, c: &Arc<Consumer>) -> u32 {
        match c.slot.load(Ordering::Relaxed) {
            NO_SLOT => {
                let s = self.new_slot(Source::Consumer(c.clone()));
                c.slot.store(s, Ordering::Relaxed);
                s
            }
            s => s,
        }
    }

    /// The slot of basic.get deliveries from `q` (a scan: basic.get is not the hot path).
    fn slot_of_get(&mut self, q: &Arc<Queue>) -> u32 {
        let found = self
            .sources
            .iter()
            .position(|x| x.as_ref().is_some_and(|x| matches!(&x.source, Source::Get(g) if Arc::ptr_eq(g, q))));
        match found {
            Some(i) => i as u32,
            None => self.new_slot(Source::Get(q.clone())),
        }
    }

    fn new_slot(&mut self, source: Source) -> u32 {
        let slot = Some(Slot { source, refs: 0 });
        match self.free_slots.pop() {
            Some(i) => {
                self.sources[i as usize] = slot;
                i
            }
            None => {
                self.sources.push(slot);
                (self.sources.len() - 1) as u32
            }
        }
    }

    /// The source of slot `slot` (it is in use).
    fn source(&self, slot: u32) -> &Source {
        match self.sources.get(slot as usize) {
            Some(Some(s)) => &s.source,
            _ => unreachable!("an unacked delivery names a slot in use"),
        }
    }

    /// Record an unacked delivery from the source in `slot`.
    fn hold(&mut self, slot: u32, msg: QueuedMsg, delivered_ms: u64) {
        if let Some(Some(s)) = self.sources.get_mut(slot as usize) {
            s.refs += 1;
        }
        self.unacked.push_back(Some(Held { msg, slot, delivered_ms }));
    }

    /// `n` deliveries naming `slot` are gone: the slot's source, if that was its last one (the
    /// slot is free then; a consumer has no slot).
    fn unhold(&mut self, slot: u32, n: u32) -> Option<Source> {
        let s = self.sources.get_mut(slot as usize)?.as_mut()?;
        s.refs -= n;
        if s.refs > 0 {
            return None;
        }
        let s = self.sources[slot as usize].take()?;
        self.free_slots.push(slot);
        if let Source::Consumer(c) = &s.source {
            c.slot.store(NO_SLOT, Ordering::Relaxed);
        }
        Some(s.source)
    }

    /// Hand out a taken delivery with its own reference to its source (the slot's, moved, when it
    /// was the last one).
    fn hand_out(&mut self, h: Held) -> Unacked {
        let source = match self.unhold(h.slot, 1) {
            Some(s) => s,
            None => self.source(h.slot).clone(),
        };
        Unacked { msg: h.msg, source }
    }

    /// Take tag `tag` (and with `multiple` every lower tag; tag 0 with `multiple`: all) into
    /// `self.taken`, credit released. None when `tag` is not an outstanding delivery (spec: a
    /// channel error 406).
    fn take_tags(&mut self, tag: u64, multiple: bool) -> Option<()> {
        // Checked first: nothing is taken from a settle that fails.
        let upto = if multiple && tag == 0 {
            self.base_tag + self.unacked.len() as u64
        } else {
            let idx = tag.checked_sub(self.base_tag)? as usize;
            match self.unacked.get(idx) {
                Some(Some(_)) => {}
                // spec(basic.ack): acking a tag not delivered is an error even with multiple.
                Some(None) if multiple && self.any_before(idx) => {}
                _ => return None,
            }
            tag + 1
        };
        let mut out = std::mem::take(&mut self.taken);
        out.clear();
        if multiple {
            while self.base_tag < upto {
                match self.unacked.pop_front() {
                    Some(e) => {
                        self.base_tag += 1;
                        out.extend(e);
                    }
                    None => break,
                }
            }
        } else {
            out.extend(self.unacked.get_mut((tag - self.base_tag) as usize).and_then(Option::take));
            while let Some(None) = self.unacked.front() {
                self.unacked.pop_front();
                self.base_tag += 1;
            }
        }
        if self.unacked.is_empty() {
            self.base_tag = self.next_tag;
        }
        self.release(&out);
        self.taken = out;
        Some(())
    }

    /// Remove tag `tag` (and with `multiple` every lower tag). Tag 0 with `multiple` means all.
    /// Returns None when `tag` is not an outstanding delivery (spec: a channel error 406).
    pub fn settle(&mut self, tag: u64, multiple: bool, out: &mut Vec<Unacked>) -> Option<()> {
        self.take_tags(tag, multiple)?;
        let mut taken = std::mem::take(&mut self.taken);
        out.extend(taken.drain(..).map(|h| self.hand_out(h)));
        self.taken = taken;
        Some(())
    }

    /// basic.ack: as [`Deliveries::settle`], handing out the messages and, per run of one
    /// source, its queue (one reference per run, not per message).
    pub fn settle_acks(&mut self, tag: u64, multiple: bool, out: &mut Acked) -> Option<()> {
        debug_assert!(out.msgs.is_empty() && out.runs.is_empty() && out.freed.is_empty(), "emptied after the lock");
        self.take_tags(tag, multiple)?;
        let mut taken = std::mem::take(&mut self.taken);
        for h in taken.drain(..) {
            match out.runs.last_mut() {
                Some(r) if r.slot == h.slot => r.n += 1,
                _ => {
                    let source = self.source(h.slot);
                    let run = AckRun {
                        queue: source.queue().clone(),
                        n: 1,
                        consumer: source.consumer().is_some(),
                        slot: h.slot,
                    };
                    out.runs.push(run);
                }
            }
            out.msgs.push(h.msg);
        }
        self.taken = taken;
        for r in &out.runs {
            out.freed.extend(self.unhold(r.slot, r.n as u32));
        }
        Some(())
    }

    /// Would `settle(tag, multiple)` succeed? (Checks without settling, for transactions.)
    pub fn check(&self, tag: u64, multiple: bool) -> bool {
        if multiple && tag == 0 {
            return true;
        }
        let Some(idx) = tag.checked_sub(self.base_tag).map(|i| i as usize) else { return false };
        match self.unacked.get(idx) {
            Some(Some(_)) => true,
            Some(None) => multiple && self.any_before(idx),
            None => false,
        }
    }

    fn any_before(&self, idx: usize) -> bool {
        self.unacked.iter().take(idx).any(|e| e.is_some())
    }

    /// Give back the credit taken entries held: each consumer's once per run of its entries.
    fn release(&mut self, taken: &[Held]) {
        self.unacked_count -= taken.len() as u32;
        self.unacked_bytes -= taken.iter().map(|u| u.msg.mem_size() as u64).sum::<u64>();
        let mut rest = taken;
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|u| u.slot == first.slot).count();
            if let Some(c) = self.source(first.slot).consumer() {
                // Written only under its channel's `state` lock (`&mut self` is behind it).
                let left = c.in_flight.load(Ordering::Relaxed).saturating_sub(n as u32);
                c.in_flight.store(left, Ordering::Relaxed);
                self.global_in_flight -= n as u32;
            }
            rest = &rest[n..];
        }
    }

    /// Every unacked delivery's queue and message (the management API's counts).
    pub fn each_unacked(&self, mut f: impl FnMut(&Arc<Queue>, &QueuedMsg)) {
        for u in self.unacked.iter().flatten() {
            f(self.source(u.slot).queue(), &u.msg);
        }
    }

    /// Drop from memory the bodies of unacked messages whose record can be read back (a requeue
    /// reads them back, as a paged ready message). Returns the bytes freed.
    pub fn page_out(&mut self, store: &crate::store::Store) -> u64 {
        let mut freed = 0;
        for u in self.unacked.iter_mut().flatten() {
            freed += store.page_out(&mut u.msg) as u64;
        }
        self.unacked_bytes -= freed;
        freed
    }

    /// The first consumer with a delivery unacked for longer than its timeout, and that timeout.
    pub fn expired_consumer(&self, now: u64) -> Option<(Arc<Consumer>, u64)> {
        self.unacked.iter().flatten().find_map(|u| {
            let c = self.source(u.slot).consumer()?;
            let t = c.timeout_ms?;
            (now.saturating_sub(u.delivered_ms) > t).then(|| (c.clone(), t))
        })
    }

    /// Take the outstanding deliveries of consumer `c`, in tag order.
    pub fn take_consumer(&mut self, c: &Arc<Consumer>) -> Vec<Unacked> {
        let slot = c.slot.load(Ordering::Relaxed);
        if slot == NO_SLOT {
            return Vec::new();
        }
        let mut taken = Vec::new();
        for e in self.unacked.iter_mut() {
            if e.as_ref().is_some_and(|u| u.slot == slot) {
                taken.extend(e.take());
            }
        }
        while let Some(None) = self.unacked.front() {
            self.unacked.pop_front();
            self.base_tag += 1;
        }
        if self.unacked.is_empty() {
            self.base_tag = self.next_tag;
        }
        self.release(&taken);
        taken.into_iter().map(|h| self.hand_out(h)).collect()
    }

    /// Take every outstanding delivery, in tag order (channel close, basic.recover).
    pub fn take_all(&mut self) -> Vec<Unacked> {
        let all: Vec<Held> = self.unacked.drain(..).flatten().collect();
        self.base_tag = self.next_tag;
        self.release(&all);
        all.into_iter().map(|h| self.hand_out(h)).collect()
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
    ch.consumer_event("consumer.deleted", c, None, None);
    if ch.cancel_notify {
        let m = warren_protocol::Method::BasicCancel(warren_protocol::method::BasicCancel {
            consumer_tag: c.tag.clone(),
            no_wait: true,
        });
        ch.out.write(|b| warren_protocol::frame::encode_method(b, ch.id, &m));
    }
}
