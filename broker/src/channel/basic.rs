//! The basic class: publish, consume, cancel, get, qos, ack, nack, reject, recover.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - A publish is routed and enqueued before the next frame of the connection is read, so one
//!   channel's messages reach each queue in publish order.
//! - basic.consume-ok is written before the first delivery to the new consumer (it is appended under
//!   the queue's lock, before the queue starts delivering).
//! - Unroutable + mandatory: basic.return is written before the publish's confirm.
use super::tx::TxOp;
use super::{requeue_grouped, Assembly, Channel};
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::ids::random_suffix;
use crate::lent::Lent;
use crate::message::{Message, QueuedMsg};
use crate::queue::consumer::Consumer;
use crate::vhost::{Outcome, Publish, VHost, REPLY_TO};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use warren_protocol::constants::*;
use warren_protocol::frame::PublishRun;
use warren_protocol::method::*;
use warren_protocol::{fast, BasicProperties, ContentHeader, Method, ShortStr};

/// Prefix of generated direct reply-to names.
const REPLY_PREFIX: &str = "amq.rabbitmq.reply-to.";
/// Bit 9 of the property flags (reply-to present), as seen in the first flags byte.
const REPLY_TO_FLAG_HIGH_BYTE: u8 = 0x02;
impl Channel {
    /// basic.publish method frame: check the exchange now, then wait for the content.
    pub(super) fn start_publish(&mut self, ctx: &ConnCtx, p: BasicPublish) -> AmqpResult<()> {
        refuse_immediate(&p)?;
        // The exchange is checked once the content is complete, as RabbitMQ does.
        let _ = ctx;
        self.assembly = Assembly::Header(p);
        Ok(())
    }

    /// A whole publish at once (the method, its content header and the one body frame, found
    /// together in the read buffer: `frames` starts with them, `run` says where each payload is):
    /// what [`Channel::handle_publish`], [`Channel::on_header`] and [`Channel::on_body`] would do
    /// for the three frames when every check passes, without the assembly states in between.
    /// The method, the header and the body are read in place in `frames` and lent to the core:
    /// the read buffer gains no reference besides `frames`' own unless the core keeps a part
    /// (a large body; properties it decodes), each one an atomic increment and decrement (there
    /// were five, then three). `Err(frames)` when a check would not pass (or a publish is already
    /// being assembled): nothing was done, and the frames go those three ways, which report it.
    pub fn publish_whole(
        &mut self,
        ctx: &ConnCtx,
        frames: bytes::Bytes,
        run: &PublishRun,
    ) -> Result<AmqpResult<()>, bytes::Bytes> {
        if !matches!(self.assembly, Assembly::Idle) {
            return Err(frames);
        }
        let method = frames.get(run.method.clone()).and_then(|m| BasicPublish::decode_ref(m).ok());
        let Some(p) = method.filter(|p| !p.immediate) else {
            return Err(frames);
        };
        let body_len = run.body.len() as u64;
        let header = frames.get(run.header.clone()).and_then(|h| ContentHeader::decode_ref(h).ok());
        let Some(h) = header.filter(|h| h.body_size == body_len && super::check_header(ctx, *h).is_ok()) else {
            return Err(frames);
        };
        let publish = Publish {
            exchange: p.exchange,
            routing_key: p.routing_key,
            // The properties end the header's payload.
            properties: Lent::part(&frames, run.header.end - h.properties.len()..run.header.end),
            body: Lent::part(&frames, run.body.clone()),
            mandatory: p.mandatory,
            channel: self.id(),
        };
        Ok(self.finish_publish(ctx, publish))
    }

    /// A publish assembled frame by frame: [`Channel::finish_publish`] of its parts.
    pub(super) fn finish_assembled(
        &mut self,
        ctx: &ConnCtx,
        p: BasicPublish,
        properties: bytes::Bytes,
        body: bytes::Bytes,
    ) -> AmqpResult<()> {
        let publish = Publish {
            exchange: p.exchange.as_bytes(),
            routing_key: p.routing_key.as_bytes(),
            properties: Lent::all(&properties),
            body: Lent::all(&body),
            mandatory: p.mandatory,
            channel: self.id(),
        };
        self.finish_publish(ctx, publish)
    }

    /// The message is complete: route, enqueue, return if unroutable, confirm.
    fn finish_publish(&mut self, ctx: &ConnCtx, p: Publish<'_>) -> AmqpResult<()> {
        // Checked with the content complete, as RabbitMQ does (two branches for a user who may
        // write everywhere and has no topic permissions).
        ctx.vhost.authorize_publish(&ctx.actor(), p.exchange, p.routing_key).map_err(|e| e.at_ids(60, 40))?;
        // Direct reply-to: a request names the pseudo-queue; the broker substitutes this channel's
        // reply name. Only decoded when the reply-to property is present at all.
        let replaced = if p.properties.first().is_some_and(|f| f & REPLY_TO_FLAG_HIGH_BYTE != 0) {
            self.substitute_reply_to(p.properties)?
        } else {
            None
        };
        let p = Publish { properties: replaced.as_ref().map_or(p.properties, Lent::all), ..p };
        if p.exchange.is_empty() && p.routing_key.starts_with(REPLY_PREFIX.as_bytes()) {
            return self.publish_reply(ctx, p);
        }
        if self.confirm.is_some() && ctx.vhost.take_fault_nack() {
            // Test fault (`--test-controls`): this publish is nacked and goes nowhere.
            self.confirm_published(true, 0);
            return Ok(());
        }
        let mut routed = std::mem::take(&mut self.route_buf);
        let who = ctx.actor();
        let msg = match ctx.vhost.route_checked(&who, p, &mut routed) {
            Ok(m) => m,
            Err(e) => {
                self.route_buf = routed;
                return Err(e);
            }
        };
        let counters = &ctx.info.counters;
        crate::counters::bump(&counters.published, 1);
        crate::counters::bump(&self.shared.counters.published, 1);
        if routed.queues.is_empty() && routed.delay_ms.is_none() && self.tx.is_none() {
            if p.mandatory {
                crate::counters::bump(&counters.returned, 1);
                crate::counters::bump(&self.shared.counters.returned, 1);
            } else {
                crate::counters::bump(&counters.dropped, 1);
                crate::counters::bump(&self.shared.counters.dropped, 1);
            }
        }
        // A message held by a durable delayed-message exchange is confirmed once its record is
        // on disk.
        let mut outcome = Outcome { durable_lsn: routed.held_lsn, ..Default::default() };
        if let Some(msg) = msg {
            match &mut self.tx {
                // In a transaction the message is routed now (errors now) and enqueued at commit.
                Some(tx) => tx.publish(routed.queues.clone(), msg, p.mandatory),
                // Nobody waits for this one's outcome: it may join the batch's staged run.
                None if self.confirm.is_none() && !p.mandatory => VHost::enqueue_unobserved(&routed.queues, msg),
                None => outcome = self.enqueue(&routed.queues, msg, p.mandatory),
            }
        }
        self.route_buf = routed;
        if self.confirm.is_some() && !outcome.rejected {
            crate::counters::bump(&counters.confirmed, 1);
            crate::counters::bump(&self.shared.counters.confirmed, 1);
        }
        self.confirm_published(outcome.rejected, outcome.durable_lsn);
        Ok(())
    }

    /// Replace `reply_to = amq.rabbitmq.reply-to` by this channel's reply name (406 if it has
    /// none): the properties to publish instead, if any.
    fn substitute_reply_to(&self, properties: Lent<'_>) -> AmqpResult<Option<bytes::Bytes>> {
        let Ok(mut props) = BasicProperties::decode(properties.share()) else { return Ok(None) };
        if props.reply_to.as_ref().is_none_or(|r| r != REPLY_TO) {
            return Ok(None);
        }
        let Some((_, name)) = &self.reply else {
            return Err(AmqpError::channel_ids(PRECONDITION_FAILED, "fast reply consumer does not exist", 60, 40));
        };
        props.reply_to = Some(name.clone());
        Ok(Some(props.to_bytes()))
    }

    /// A reply published to `amq.rabbitmq.reply-to.*`: straight to the requester's channel.
    fn publish_reply(&mut self, ctx: &ConnCtx, p: Publish<'_>) -> AmqpResult<()> {
        let target = ctx.vhost.replies.lock().get(p.routing_key).map(|t| (t.channel.clone(), t.consumer_tag.clone()));
        let msg = Message::lent(p.exchange, p.routing_key, p.properties, p.body)
            .map_err(|why| AmqpError::channel_ids(PRECONDITION_FAILED, why, 60, 40))?;
        let delivered =
            target.and_then(|(ch, tag)| ch.upgrade().map(|ch| ch.deliver_direct(&tag, &msg))).unwrap_or(false);
        if !delivered && p.mandatory {
            self.basic_return(&msg);
        }
        self.confirm_published(false, 0);
        Ok(())
    }

    /// basic.return 312 NO_ROUTE with the message's content (mandatory and unroutable).
    fn basic_return(&self, msg: &Message) {
        let id = self.id();
        self.shared.out.write_content(
            id,
            |b| fast::basic_return(b, id, NO_ROUTE, b"NO_ROUTE", msg.exchange_bytes(), msg.routing_key_bytes()),
            msg,
        );
    }

    /// basic.consume on `amq.rabbitmq.reply-to`: register this channel's reply consumer.
    fn consume_replies(&mut self, ctx: &ConnCtx, c: &BasicConsume, m: &Method) -> AmqpResult<()> {
        if !c.no_ack {
            return Err(AmqpError::channel(PRECONDITION_FAILED, "reply consumer cannot acknowledge", Some(m)));
        }
        if self.reply.is_some() {
            return Err(AmqpError::channel(PRECONDITION_FAILED, "reply consumer already set", Some(m)));
        }
        let tag = consumer_tag(c);
        let name = ShortStr::from(format!("{REPLY_PREFIX}{}.{}", random_suffix(), random_suffix()));
        let target = crate::vhost::ReplyTarget { channel: Arc::downgrade(&self.shared), consumer_tag: tag.clone() };
        ctx.vhost.replies.lock().insert(name.clone(), target);
        self.reply = Some((tag.clone(), name));
        if !c.no_wait {
            self.send(&BasicConsumeOk { consumer_tag: tag }.into());
        }
        Ok(())
    }

    /// Hand a prepared message to its queues through the core; basic.return it if mandatory and
    /// no queue took or refused it.
    pub(super) fn enqueue(&mut self, queues: &[Arc<crate::queue::Queue>], msg: Message, mandatory: bool) -> Outcome {
        let outcome = VHost::enqueue(queues, &msg, |_| false);
        if outcome.unroutable() && mandatory {
            self.basic_return(&msg);
        }
        outcome
    }

    /// basic.ack / basic.nack / basic.reject: settle now, or buffer in a transaction.
    pub(super) fn settle(
        &mut self,
        ctx: &ConnCtx,
        tag: u64,
        multiple: bool,
        outcome: Option<bool>,
        m: &Method,
    ) -> AmqpResult<()> {
        if let Some(tx) = &mut self.tx {
            if !self.shared.state.lock().check(tag, multiple) {
                return Err(AmqpError::channel(PRECONDITION_FAILED, format!("unknown delivery tag {tag}"), Some(m)));
            }
            tx.ops.push(TxOp::Settle { tag, multiple, requeue: outcome });
            return Ok(());
        }
        match outcome {
            None => self.ack(ctx, tag, multiple, m),
            Some(requeue) => self.nack(tag, multiple, requeue, m),
        }
    }

    /// basic.ack from the client.
    pub(super) fn ack(&mut self, ctx: &ConnCtx, tag: u64, multiple: bool, m: &Method) -> AmqpResult<()> {
        let mut acked = std::mem::take(&mut self.ack_buf);
        let ok = self.shared.state.lock().settle_acks(tag, multiple, &mut acked);
        if ok.is_none() {
            self.ack_buf = acked;
            return Err(AmqpError::channel(PRECONDITION_FAILED, format!("unknown delivery tag {tag}"), Some(m)));
        }
        if acked.runs.first().is_some_and(|r| r.queue.journal.on()) {
            let mut msgs = acked.msgs.iter();
            for r in &acked.runs {
                for msg in msgs.by_ref().take(r.n) {
                    self.journal_settled_one(&r.queue, msg, "ack", false);
                }
            }
        }
        crate::counters::bump(&ctx.info.counters.acked, acked.msgs.len() as u64);
        crate::counters::bump(&self.shared.counters.acked, acked.msgs.len() as u64);
        // Stored messages: their ack entries are recorded with one lock of the store per frame,
        // not one per message.
        if acked.msgs.iter().any(|u| u.disk.is_some()) {
            let mut refs: Vec<_> = acked.msgs.iter_mut().filter_map(|u| u.disk.take()).collect();
            crate::store::DiskRef::release_batch(&mut refs);
        }
        // Credit was released: queues with waiting messages may deliver again. Acks are counted
        // once per run of the same source (one atomic add for a whole multiple-ack).
        let mut last: Option<*const crate::queue::Queue> = None;
        for r in &acked.runs {
            r.queue.count_acks(r.n as u64);
            let p = Arc::as_ptr(&r.queue);
            if r.consumer && last != Some(p) {
                r.queue.drive();
                last = Some(p);
            }
        }
        acked.msgs.clear();
        acked.runs.clear();
        acked.freed.clear();
        self.ack_buf = acked;
        self.drive_for_channel_credit();
        Ok(())
    }

    /// With a channel-wide prefetch (basic.qos global), a settle anywhere gives credit to every
    /// consumer of the channel: the queues of all of them are driven, not only those whose
    /// deliveries were settled (a queue with a backlog is not driven again by its publishes).
    fn drive_for_channel_credit(&self) {
        let queues = {
            let st = self.shared.state.lock();
            if st.channel_prefetch == 0 || st.consumers.is_empty() {
                return;
            }
            st.consumers.values().map(|c| c.queue.clone()).collect::<Vec<_>>()
        };
        for q in dedup(queues) {
            q.drive();
        }
    }

    /// basic.nack / basic.reject.
    pub(super) fn nack(&mut self, tag: u64, multiple: bool, requeue: bool, m: &Method) -> AmqpResult<()> {
        let mut settled = Vec::new();
        if self.shared.state.lock().settle(tag, multiple, &mut settled).is_none() {
            return Err(AmqpError::channel(PRECONDITION_FAILED, format!("unknown delivery tag {tag}"), Some(m)));
        }
        if let Some(e) = settled.iter().find_map(|u| u.queue().refuses_nack()) {
            return Err(with_method(e, m));
        }
        if settled.first().is_some_and(|u| u.queue().journal.on()) {
            let how = if matches!(m, Method::BasicReject(_)) { "reject" } else { "nack" };
            self.journal_settled(&settled, how, requeue);
        }
        if requeue {
            requeue_grouped(settled);
        } else {
            // Dropped, or dead-lettered when the queue has a dead-letter exchange.
            let queues: Vec<_> = settled.iter().filter(|u| u.consumer().is_some()).map(|u| u.queue().clone()).collect();
            let groups = super::group_by_queue(settled);
            for (q, msgs) in groups {
                q.rejected(msgs);
            }
            for q in dedup(queues) {
                q.drive();
            }
        }
        self.drive_for_channel_credit();
        Ok(())
    }

    /// Message trace: `settled` were acked, nacked or rejected.
    fn journal_settled(&self, settled: &[crate::queue::consumer::Unacked], how: &'static str, requeue: bool) {
        for u in settled {
            self.journal_settled_one(u.queue(), &u.msg, how, requeue);
        }
    }

    /// Message trace: `msg`, delivered from `queue`, was acked, nacked or rejected.
    fn journal_settled_one(&self, queue: &crate::queue::Queue, msg: &QueuedMsg, how: &'static str, requeue: bool) {
        queue.journal.record(msg.msg.properties_bytes(), &queue.clock, || crate::journal::Event::Settled {
            queue: crate::journal::owned(&queue.name),
            connection: self.shared.origin.connection.clone(),
            how,
            requeue,
        });
    }

    /// basic.recover / basic.recover-async.
    pub(super) fn recover(&mut self, requeue: bool, reply: bool, m: &Method) -> AmqpResult<()> {
        if !requeue {
            // rabbitmq-compat: RabbitMQ refuses requeue=false the same way.
            return Err(AmqpError::connection(NOT_IMPLEMENTED, "requeue=false", Some(m)));
        }
        let all = self.shared.state.lock().take_all();
        requeue_grouped(all);
        self.drive_for_channel_credit();
        if reply {
            self.send(&BasicRecoverOk.into());
        }
        Ok(())
    }

    /// basic.qos.
    pub(super) fn qos(&mut self, q: &BasicQos, m: &Method) -> AmqpResult<()> {
        if q.prefetch_size != 0 {
            // rabbitmq-compat: RabbitMQ does not implement prefetch-size either.
            return Err(AmqpError::connection(
                NOT_IMPLEMENTED,
                format!("prefetch_size!=0 ({})", q.prefetch_size),
                Some(m),
            ));
        }
        let queues = {
            let mut st = self.shared.state.lock();
            if q.global {
                // rabbitmq-compat: global=true is a limit shared by all consumers of the channel.
                st.channel_prefetch = q.prefetch_count as u32;
            } else {
                // rabbitmq-compat: global=false is a per-consumer limit for consumers created after it.
                st.consumer_prefetch = q.prefetch_count as u32;
            }
            st.consumers.values().map(|c| c.queue.clone()).collect::<Vec<_>>()
        };
        self.send(&BasicQosOk.into());
        for q in dedup(queues) {
            q.drive();
        }
        Ok(())
    }

    /// basic.consume.
    pub(super) fn consume(&mut self, ctx: &ConnCtx, c: &BasicConsume, m: &Method) -> AmqpResult<()> {
        if c.queue == REPLY_TO {
            return self.consume_replies(ctx, c, m);
        }
        let qname = self.queue_name(&c.queue, m)?;
        let queue = ctx.vhost.readable_queue(&ctx.actor(), &qname).map_err(|e| e.at(m))?;
        let priority = match c.arguments.get("x-priority") {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("invalid arg 'x-priority' for {}: expected an integer", queue.describe()),
                    Some(m),
                )
            })?,
        };
        let tag = consumer_tag(c);
        // Per-queue `x-consumer-timeout` wins over the broker-wide default.
        let timeout_ms = match queue.arguments.get("x-consumer-timeout").and_then(|v| v.as_i64()) {
            Some(t) if t > 0 => Some(t as u64),
            Some(_) => None,
            None => ctx.consumer_timeout_ms,
        };
        let consumer = {
            let mut st = self.shared.state.lock();
            let prefetch = st.consumer_prefetch;
            let stream = queue
                .stream_cursor(&c.arguments, c.no_ack, prefetch, st.channel_prefetch)
                .map_err(|e| with_method(e, m))?;
            if st.consumers.contains_key(&tag) {
                return Err(AmqpError::connection(
                    NOT_ALLOWED,
                    format!("attempt to reuse consumer tag '{tag}'"),
                    Some(m),
                ));
            }
            let consumer = Arc::new(Consumer {
                tag: tag.clone(),
                channel: self.shared.clone(),
                queue: queue.clone(),
                no_ack: c.no_ack,
                exclusive: c.exclusive,
                priority,
                prefetch: st.consumer_prefetch,
                in_flight: AtomicU32::new(0),
                slot: AtomicU32::new(crate::queue::consumer::NO_SLOT),
                timeout_ms,
                arguments: c.arguments.clone(),
                stream,
            });
            st.consumers.insert(tag.clone(), consumer.clone());
            consumer
        };
        let ok = BasicConsumeOk { consumer_tag: tag.clone() }.into();
        let no_wait = c.no_wait;
        let added = queue.add_consumer(consumer.clone(), || {
            if !no_wait {
                self.send(&ok);
            }
        });
        if let Err(e) = added {
            self.shared.state.lock().consumers.remove(&tag);
            return Err(with_method(e, m));
        }
        self.shared.consumer_event("consumer.created", &consumer, Some(&c.arguments), Some(&ctx.user));
        Ok(())
    }

    /// basic.cancel.
    pub(super) fn cancel(&mut self, ctx: &ConnCtx, c: &BasicCancel, _m: &Method) -> AmqpResult<()> {
        if self.reply.as_ref().is_some_and(|(tag, _)| *tag == c.consumer_tag) {
            if let Some((_, name)) = self.reply.take() {
                ctx.vhost.replies.lock().remove(&name);
            }
        }
        let removed = self.shared.state.lock().consumers.remove(&c.consumer_tag);
        if !c.no_wait {
            self.send(&BasicCancelOk { consumer_tag: c.consumer_tag.clone() }.into());
        }
        if let Some(consumer) = removed {
            self.shared.consumer_event("consumer.deleted", &consumer, None, Some(&ctx.user));
            if consumer.queue.remove_consumer(&consumer) {
                ctx.vhost.delete_queue(&consumer.queue);
            } else if consumer.in_flight.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                // The next consumer in line (single active consumer) takes the backlog. With
                // deliveries of the cancelled one still unacked, that waits for them to be
                // settled (an ack drives the queue) or requeued at channel close, so requeued
                // messages go first. rabbitmq-compat: RabbitMQ 3.10 hands over only at channel
                // close in that case (not after the acks, nor at the next publish).
                consumer.queue.drive();
            }
        }
        Ok(())
    }

    /// basic.get.
    pub(super) fn get(&mut self, ctx: &ConnCtx, g: &BasicGet, m: &Method) -> AmqpResult<()> {
        let qname = self.queue_name(&g.queue, m)?;
        let queue = ctx.vhost.readable_queue(&ctx.actor(), &qname).map_err(|e| e.at(m))?;
        match queue.get(g.no_ack).map_err(|e| with_method(e, m))? {
            Some((msg, remaining)) => self.shared.deliver_get(msg, &queue, g.no_ack, remaining),
            None => self.send(&BasicGetEmpty { cluster_id: ShortStr::empty() }.into()),
        }
        Ok(())
    }

    /// Consumer acknowledgement timeout: cancel the first consumer with an overdue delivery. With
    /// consumer_cancel_notify it gets basic.cancel and its unacked messages are requeued; without, the
    /// channel is closed with 406 (RabbitMQ's behaviour in both cases).
    pub fn check_ack_timeouts(&mut self, ctx: &ConnCtx, now: u64) -> AmqpResult<()> {
        let Some((c, timeout)) = self.shared.state.lock().expired_consumer(now) else { return Ok(()) };
        if !self.shared.cancel_notify {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!(
                    "delivery acknowledgement on channel {} timed out. Timeout value used: {timeout} ms. This timeout value can be configured, see consumers doc guide to learn more",
                    self.id()
                ),
                None,
            ));
        }
        tracing::warn!("consumer '{}' on channel {} did not ack within {timeout} ms: cancelling it", c.tag, self.id());
        let unacked = {
            let mut st = self.shared.state.lock();
            st.consumers.remove(&c.tag);
            st.take_consumer(&c)
        };
        self.send(&BasicCancel { consumer_tag: c.tag.clone(), no_wait: true }.into());
        self.shared.consumer_event("consumer.deleted", &c, None, None);
        let deleted = c.queue.remove_consumer(&c);
        if deleted {
            ctx.vhost.delete_queue(&c.queue);
        }
        requeue_grouped(unacked);
        if !deleted {
            c.queue.drive();
        }
        Ok(())
    }

    /// spec: an empty queue name means the last queue declared on this channel.
    pub(super) fn queue_name(&self, name: &ShortStr, m: &Method) -> AmqpResult<ShortStr> {
        if !name.is_empty() {
            return Ok(name.clone());
        }
        self.last_queue.clone().ok_or_else(|| AmqpError::channel(NOT_FOUND, "no previously declared queue", Some(m)))
    }
}

/// The client's consumer tag, or a server-generated `amq.ctag-...` one.
fn consumer_tag(c: &BasicConsume) -> ShortStr {
    if c.consumer_tag.is_empty() {
        ShortStr::from(format!("amq.ctag-{}", random_suffix()))
    } else {
        c.consumer_tag.clone()
    }
}

/// Attach the method's ids to an error (replacing any it had).
fn with_method(e: AmqpError, m: &Method) -> AmqpError {
    match e {
        AmqpError::Channel { code, text, .. } => {
            AmqpError::Channel { code, text, class_id: m.class_id(), method_id: m.method_id() }
        }
        AmqpError::Connection { code, text, .. } => {
            AmqpError::Connection { code, text, class_id: m.class_id(), method_id: m.method_id() }
        }
        refused @ AmqpError::Refused { .. } => refused.at(m),
    }
}

pub(super) fn dedup(mut v: Vec<Arc<crate::queue::Queue>>) -> Vec<Arc<crate::queue::Queue>> {
    let mut out: Vec<Arc<crate::queue::Queue>> = Vec::with_capacity(v.len());
    for q in v.drain(..) {
        if !out.iter().any(|x| Arc::ptr_eq(x, &q)) {
            out.push(q);
        }
    }
    out
}

/// basic.publish with immediate set is refused (by the frame-by-frame path and a whole publish).
/// rabbitmq-compat: RabbitMQ 3.x does not implement immediate and closes the connection.
fn refuse_immediate(p: &BasicPublish) -> AmqpResult<()> {
    if p.immediate {
        return Err(AmqpError::connection_ids(NOT_IMPLEMENTED, "immediate=true", 60, 40));
    }
    Ok(())
}
