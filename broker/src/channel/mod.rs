//! A channel: its lifecycle, the content assembler, and dispatch to one handler module per AMQP
//! class (`exchange.rs`, `queue.rs`, `basic.rs`, `confirm.rs`, `tx.rs`).
//!
//! Runs in: the connection reader task, which owns every `Channel` of its connection. The part queues
//! need to reach (delivery tags, unacked messages, consumers) is in [`crate::queue::consumer::ChannelShared`].
//!
//! # Invariants
//! - A channel is `Open` until either side sends channel.close; then it is `Closing` and every frame
//!   but channel.close / channel.close-ok is ignored (spec(channel.close)).
//! - Content frames follow their method in order: method -> header -> body*; anything else on that
//!   channel mid-content is 505 UNEXPECTED_FRAME (a connection error, as in RabbitMQ).
//! - On close (either side, or the connection's end) consumers are cancelled first, then unacked
//!   messages are requeued in their original order.
pub mod basic;
pub mod confirm;
pub mod exchange;
pub mod queue;
pub mod tx;

use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::message::QueuedMsg;
use crate::queue::consumer::{ChannelShared, Unacked};
use crate::queue::Queue;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{frame, ContentHeader, ContentHeaderRef, Method, MethodError, ShortStr};

/// Content being assembled for a basic.publish.
pub enum Assembly {
    /// No content expected.
    Idle,
    /// basic.publish seen, waiting for the content header.
    Header(BasicPublish),
    /// Header seen, collecting body frames.
    Body {
        /// The publish method.
        publish: BasicPublish,
        /// Raw properties from the header.
        properties: Bytes,
        /// Declared body size.
        size: u64,
        /// Body frames so far (one, in the common case).
        parts: Vec<Bytes>,
        /// Bytes received so far.
        received: u64,
        /// The bytes of `parts`, counted in the connection's `assembling` total while held.
        held: HeldBytes,
    },
}

/// Bytes a connection holds for publishes still being assembled, or buffered in an uncommitted
/// transaction: added to the connection's `assembling` count (which the memory alarm reads) and
/// taken off again when dropped, whichever way the assembly or transaction ends (complete or
/// committed, rolled back, channel closed, connection gone).
pub struct HeldBytes {
    /// The connection whose count this is.
    info: Arc<crate::stats::ConnInfo>,
    /// Bytes counted.
    n: u64,
}

impl HeldBytes {
    fn new(info: &Arc<crate::stats::ConnInfo>) -> HeldBytes {
        HeldBytes { info: info.clone(), n: 0 }
    }
    fn add(&mut self, n: u64) {
        self.n += n;
        self.info.assembling.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.info.assembling.fetch_sub(self.n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Channel lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// We sent channel.close and wait for close-ok.
    Closing,
}

/// A channel as its connection's reader owns it.
pub struct Channel {
    /// State shared with queues.
    pub shared: Arc<ChannelShared>,
    /// Lifecycle.
    pub phase: Phase,
    /// Content assembler.
    pub assembly: Assembly,
    /// Publisher confirms: `Some` once confirm.select was received.
    pub confirm: Option<confirm::ConfirmState>,
    /// Transaction buffer: `Some` once tx.select was received.
    pub tx: Option<tx::TxState>,
    /// Direct reply-to consumer: (consumer tag, generated reply queue name).
    pub reply: Option<(ShortStr, ShortStr)>,
    /// Last queue declared on this channel (spec: an empty queue name means it).
    pub last_queue: Option<ShortStr>,
    /// Reused buffer for routing results (avoids an allocation per publish).
    route_buf: crate::exchange::Routed,
    /// Reused buffers for what a basic.ack settles.
    ack_buf: crate::queue::consumer::Acked,
}

impl Channel {
    pub fn new(shared: Arc<ChannelShared>) -> Channel {
        Channel {
            shared,
            phase: Phase::Open,
            assembly: Assembly::Idle,
            confirm: None,
            tx: None,
            reply: None,
            last_queue: None,
            route_buf: Default::default(),
            ack_buf: Default::default(),
        }
    }

    pub fn id(&self) -> u16 {
        self.shared.id
    }

    /// Send a method on this channel.
    pub fn send(&self, m: &Method) {
        let id = self.shared.id;
        self.shared.out.write(|b: &mut BytesMut| frame::encode_method(b, id, m));
    }

    /// basic.publish for an open channel, decoded on the connection's fast path: what
    /// [`Channel::handle`] does with it.
    pub fn handle_publish(&mut self, ctx: &ConnCtx, p: BasicPublish) -> AmqpResult<()> {
        if !matches!(self.assembly, Assembly::Idle) {
            return self.handle(ctx, Method::BasicPublish(p));
        }
        self.start_publish(ctx, p)
    }

    /// Handle a method for an open channel.
    pub fn handle(&mut self, ctx: &ConnCtx, m: Method) -> AmqpResult<()> {
        if !matches!(self.assembly, Assembly::Idle) {
            return Err(AmqpError::connection(
                UNEXPECTED_FRAME,
                "expected content header for class 60, got non content header frame instead",
                Some(&m),
            ));
        }
        // The hot method first, by value (no clone of its fields).
        let m = match m {
            Method::BasicPublish(p) => return self.start_publish(ctx, p),
            other => other,
        };
        match &m {
            Method::BasicAck(a) => self.settle(ctx, a.delivery_tag, a.multiple, None, &m),
            Method::BasicNack(n) => self.settle(ctx, n.delivery_tag, n.multiple, Some(n.requeue), &m),
            Method::BasicReject(r) => self.settle(ctx, r.delivery_tag, false, Some(r.requeue), &m),
            Method::BasicConsume(c) => self.consume(ctx, c, &m),
            Method::BasicCancel(c) => self.cancel(ctx, c, &m),
            Method::BasicGet(g) => self.get(ctx, g, &m),
            Method::BasicQos(q) => self.qos(q, &m),
            Method::BasicRecover(r) => self.recover(r.requeue, true, &m),
            Method::BasicRecoverAsync(r) => self.recover(r.requeue, false, &m),
            Method::QueueDeclare(d) => self.queue_declare(ctx, d, &m),
            Method::QueueBind(b) => self.queue_bind(ctx, b, &m),
            Method::QueueUnbind(u) => self.queue_unbind(ctx, u, &m),
            Method::QueuePurge(p) => self.queue_purge(ctx, p, &m),
            Method::QueueDelete(d) => self.queue_delete(ctx, d, &m),
            Method::ExchangeDeclare(d) => self.exchange_declare(ctx, d, &m),
            Method::ExchangeDelete(d) => self.exchange_delete(ctx, d, &m),
            Method::ExchangeBind(_) | Method::ExchangeUnbind(_) => self.exchange_bind(ctx, &m),
            Method::ConfirmSelect(c) => self.confirm_select(c.no_wait, &m),
            Method::TxSelect(_) | Method::TxCommit(_) | Method::TxRollback(_) => self.tx(ctx, &m),
            Method::ChannelFlow(f) => {
                if !f.active {
                    // rabbitmq-compat: RabbitMQ refuses client flow control the same way.
                    return Err(AmqpError::connection(NOT_IMPLEMENTED, "active=false", Some(&m)));
                }
                // Deliveries are never paused, so there is nothing to resume.
                self.send(&ChannelFlowOk { active: true }.into());
                Ok(())
            }
            Method::ChannelFlowOk(_) => Ok(()),
            Method::AccessRequest(_) => {
                // Deprecated in 0-9-1; RabbitMQ still answers it.
                self.send(&AccessRequestOk { ticket: 1 }.into());
                Ok(())
            }
            _ => Err(AmqpError::connection(
                COMMAND_INVALID,
                format!("unexpected method {} on a channel", m.name()),
                Some(&m),
            )),
        }
    }

    /// A content header frame.
    pub fn on_header(&mut self, ctx: &ConnCtx, payload: Bytes) -> AmqpResult<()> {
        let publish = match std::mem::replace(&mut self.assembly, Assembly::Idle) {
            Assembly::Header(p) => p,
            other => {
                self.assembly = other;
                return Err(AmqpError::connection_ids(UNEXPECTED_FRAME, "unexpected content header frame", 60, 40));
            }
        };
        let h = checked_header(ctx, ContentHeader::decode(payload))?;
        if h.body_size == 0 {
            return self.finish_assembled(ctx, publish, h.properties, Bytes::new());
        }
        self.assembly = Assembly::Body {
            publish,
            properties: h.properties,
            size: h.body_size,
            parts: Vec::new(),
            received: 0,
            held: HeldBytes::new(&ctx.info),
        };
        Ok(())
    }

    /// A content body frame.
    pub fn on_body(&mut self, ctx: &ConnCtx, payload: Bytes) -> AmqpResult<()> {
        let Assembly::Body { size, parts, received, held, .. } = &mut self.assembly else {
            return Err(AmqpError::connection_ids(UNEXPECTED_FRAME, "unexpected content body frame", 60, 40));
        };
        if *received == 0 && payload.len() as u64 == *size {
            // The common case, the whole body in one frame: no parts list at all.
            if let Assembly::Body { publish, properties, .. } = std::mem::replace(&mut self.assembly, Assembly::Idle) {
                return self.finish_assembled(ctx, publish, properties, payload);
            }
            return Ok(());
        }
        *received += payload.len() as u64;
        if *received > *size {
            return Err(AmqpError::connection_ids(
                FRAME_ERROR,
                format!("content body exceeds the {size} bytes announced in its header"),
                60,
                40,
            ));
        }
        if *received < *size {
            // Only a body still incomplete is held across reads: count it.
            held.add(payload.len() as u64);
            parts.push(payload);
            return Ok(());
        }
        parts.push(payload);
        let (publish, properties, mut parts) = match std::mem::replace(&mut self.assembly, Assembly::Idle) {
            Assembly::Body { publish, properties, parts, .. } => (publish, properties, parts),
            // Checked at the top of this function; keep the state if it ever differs.
            other => {
                self.assembly = other;
                return Ok(());
            }
        };
        let body = if parts.len() == 1 {
            parts.pop().unwrap_or_default()
        } else {
            // TODO(perf issue): keep multi-frame bodies as a chain of slices instead of one copy.
            let mut b = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
            for p in parts {
                b.extend_from_slice(&p);
            }
            b.freeze()
        };
        self.finish_assembled(ctx, publish, properties, body)
    }

    /// Close from our side: send channel.close and tear down.
    pub fn fail(&mut self, ctx: &ConnCtx, code: u16, text: ShortStr, class_id: u16, method_id: u16) {
        self.send(&ChannelClose { reply_code: code, reply_text: text, class_id, method_id }.into());
        self.phase = Phase::Closing;
        self.assembly = Assembly::Idle;
        self.teardown(ctx);
    }

    /// Release everything: cancel consumers (auto-deleting queues), requeue unacked in order.
    pub fn teardown(&mut self, ctx: &ConnCtx) {
        let (consumers, unacked) = {
            let mut st = self.shared.state.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            let consumers: Vec<_> = st.consumers.drain().map(|(_, c)| c).collect();
            (consumers, st.take_all())
        };
        if let Some((_, name)) = self.reply.take() {
            ctx.vhost.replies.lock().remove(&name);
        }
        let mut kept = Vec::new();
        for c in consumers {
            self.shared.consumer_event("consumer.deleted", &c, None, Some(&ctx.user));
            if c.queue.remove_consumer(&c) {
                ctx.vhost.delete_queue(&c.queue);
            } else {
                kept.push(c.queue.clone());
            }
        }
        requeue_grouped(unacked);
        // The next consumers in line take what is left (requeued messages first).
        for q in basic::dedup(kept) {
            q.drive();
        }
        self.shared.origin.events.emit("channel.closed", |f| {
            f.by(Some(&ctx.user)).str("name", self.shared.name()).int("number", self.id() as i64);
        });
    }
}

/// Requeue settled-with-requeue deliveries, one call per queue, keeping tag order.
pub fn requeue_grouped(unacked: Vec<Unacked>) {
    for (q, msgs) in group_by_queue(unacked) {
        q.requeue(msgs);
    }
}

/// Settled deliveries grouped by their queue, tag order kept within each group.
pub fn group_by_queue(unacked: Vec<Unacked>) -> Vec<(Arc<Queue>, Vec<QueuedMsg>)> {
    let mut groups: Vec<(Arc<Queue>, Vec<QueuedMsg>)> = Vec::new();
    for u in unacked {
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, u.queue())) {
            Some((_, v)) => v.push(u.msg),
            None => groups.push((u.queue().clone(), vec![u.msg])),
        }
    }
    groups
}

/// A content header frame's payload, decoded and checked ([`check_header`]).
fn checked_header(ctx: &ConnCtx, decoded: Result<ContentHeader, MethodError>) -> AmqpResult<ContentHeader> {
    let h = decoded
        .map_err(|e| AmqpError::connection_ids(e.reply_code(), format!("malformed content header: {e}"), 60, 40))?;
    check_header(ctx, h.as_ref())?;
    Ok(h)
}

/// A content header's checks: class basic, properties that clients can decode, a body within
/// the size limit. Shared by the frame-by-frame path and a whole publish (read in place).
fn check_header(ctx: &ConnCtx, h: ContentHeaderRef<'_>) -> AmqpResult<()> {
    if h.class_id != CLASS_BASIC {
        return Err(AmqpError::connection_ids(
            UNEXPECTED_FRAME,
            format!("expected content header for class 60, got one for class {}", h.class_id),
            60,
            40,
        ));
    }
    // A property list that clients cannot decode would be stored and then kill every
    // consumer it reaches (again after each restart): refused here, with one allocation-free
    // walk. rabbitmq-compat: RabbitMQ closes the connection with 541 and the bare text
    // "INTERNAL_ERROR" (its channel crashes decoding them); Warren says what was wrong.
    if let Err(e) = warren_protocol::properties::validate(h.properties) {
        return Err(AmqpError::connection_ids(
            INTERNAL_ERROR,
            format!("malformed content header properties: {e}"),
            0,
            0,
        ));
    }
    if h.body_size > ctx.max_message_size {
        // Refused at the header, before any of the body is buffered (a client announcing a
        // huge body cannot make the broker hold it); the body frames that follow are
        // discarded with the closing channel.
        return Err(AmqpError::channel_ids(
            PRECONDITION_FAILED,
            format!("message size {} is larger than configured max size {}", h.body_size, ctx.max_message_size),
            60,
            40,
        ));
    }
    Ok(())
}
