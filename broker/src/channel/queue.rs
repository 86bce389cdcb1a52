//! The queue class: declare, bind, unbind, purge, delete.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - Names starting `amq.` are reserved for the broker (403 on a non-passive declare); an empty name
//!   asks for a server-named `amq.gen-...` queue.
//! - A queue exclusive to another connection answers 405 RESOURCE_LOCKED to every queue method.
use super::Channel;
use crate::auth::{Access, Resource};
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::ids::random_suffix;
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{Method, ShortStr};

impl Channel {
    pub(super) fn queue_declare(&mut self, ctx: &ConnCtx, d: &QueueDeclare, m: &Method) -> AmqpResult<()> {
        if d.passive && d.queue == crate::vhost::REPLY_TO {
            // The direct reply-to pseudo-queue always "exists", as in RabbitMQ.
            let consumer_count = self.reply.is_some() as u32;
            self.send(&QueueDeclareOk { queue: d.queue.clone(), message_count: 0, consumer_count }.into());
            return Ok(());
        }
        let name = if d.queue.is_empty() {
            if d.passive {
                self.queue_name(&d.queue, m)?
            } else {
                ShortStr::from(format!("amq.gen-{}", random_suffix()))
            }
        } else {
            if !d.passive && d.queue.as_bytes().starts_with(b"amq.") {
                return Err(AmqpError::channel(
                    ACCESS_REFUSED,
                    format!("queue name '{}' contains reserved prefix 'amq.*'", d.queue),
                    Some(m),
                ));
            }
            d.queue.clone()
        };
        if !d.passive {
            // access-control: queue.declare needs configure on the queue; creating one with a
            // dead-letter exchange also needs read on it and write on the DLX (an equivalent
            // redeclare of an existing queue needs configure only, as in RabbitMQ).
            ctx.authorize(Access::Configure, Resource::Queue, name.as_bytes(), m)?;
            if let Some(dlx) = d.arguments.get("x-dead-letter-exchange").and_then(|v| v.as_bytes()) {
                if ctx.vhost.queue(&name).is_none() {
                    ctx.authorize(Access::Read, Resource::Queue, name.as_bytes(), m)?;
                    ctx.authorize(Access::Write, Resource::Exchange, dlx, m)?;
                }
            }
        }
        let r = ctx.vhost.declare_queue(d, name.clone(), ctx.id, m)?;
        ctx.sync_meta();
        self.last_queue = Some(name.clone());
        if !d.no_wait {
            self.send(
                &QueueDeclareOk { queue: name, message_count: r.message_count, consumer_count: r.consumer_count }
                    .into(),
            );
        }
        Ok(())
    }

    pub(super) fn queue_bind(&mut self, ctx: &ConnCtx, b: &QueueBind, m: &Method) -> AmqpResult<()> {
        let qname = self.queue_name(&b.queue, m)?;
        // access-control: queue.bind needs write on the queue and read on the exchange.
        ctx.authorize(Access::Write, Resource::Queue, qname.as_bytes(), m)?;
        ctx.authorize(Access::Read, Resource::Exchange, b.exchange.as_bytes(), m)?;
        let q = ctx.vhost.usable_queue(&qname, ctx.id, m)?;
        // spec(queue.bind): an empty routing key with an empty queue name means the last queue's name.
        let key = if b.routing_key.is_empty() && b.queue.is_empty() { qname.clone() } else { b.routing_key.clone() };
        // access-control: topic read on the exchange for the binding key.
        super::exchange::authorize_binding_key(ctx, &b.exchange, &key, m)?;
        ctx.vhost.bind_queue(q, &b.exchange, key, b.arguments.clone(), m)?;
        ctx.sync_meta();
        if !b.no_wait {
            self.send(&QueueBindOk.into());
        }
        Ok(())
    }

    pub(super) fn queue_unbind(&mut self, ctx: &ConnCtx, u: &QueueUnbind, m: &Method) -> AmqpResult<()> {
        let qname = self.queue_name(&u.queue, m)?;
        // access-control: as queue.bind.
        ctx.authorize(Access::Write, Resource::Queue, qname.as_bytes(), m)?;
        ctx.authorize(Access::Read, Resource::Exchange, u.exchange.as_bytes(), m)?;
        super::exchange::authorize_binding_key(ctx, &u.exchange, &u.routing_key, m)?;
        // As RabbitMQ: unbinding a queue that does not exist is not an error.
        if ctx.vhost.queue(&qname).is_some() {
            let q = ctx.vhost.usable_queue(&qname, ctx.id, m)?;
            ctx.vhost.unbind_queue(&q, &u.exchange, &u.routing_key, &u.arguments, m)?;
        }
        ctx.sync_meta();
        self.send(&QueueUnbindOk.into());
        Ok(())
    }

    pub(super) fn queue_purge(&mut self, ctx: &ConnCtx, p: &QueuePurge, m: &Method) -> AmqpResult<()> {
        let qname = self.queue_name(&p.queue, m)?;
        // access-control: queue.purge needs read on the queue.
        ctx.authorize(Access::Read, Resource::Queue, qname.as_bytes(), m)?;
        let q = ctx.vhost.usable_queue(&qname, ctx.id, m)?;
        let n = q.purge();
        ctx.sync_store_all();
        if !p.no_wait {
            self.send(&QueuePurgeOk { message_count: n }.into());
        }
        Ok(())
    }

    pub(super) fn queue_delete(&mut self, ctx: &ConnCtx, d: &QueueDelete, m: &Method) -> AmqpResult<()> {
        let qname = self.queue_name(&d.queue, m)?;
        // access-control: queue.delete needs configure on the queue.
        ctx.authorize(Access::Configure, Resource::Queue, qname.as_bytes(), m)?;
        let (n, own_consumers) = match ctx.vhost.queue(&qname) {
            // rabbitmq-compat: RabbitMQ 3.x answers delete-ok (0 messages) for a missing queue.
            None => (0, Vec::new()),
            Some(_) => {
                let q = ctx.vhost.usable_queue(&qname, ctx.id, m)?;
                let (messages, consumers) = q.counts();
                if d.if_unused && consumers > 0 {
                    return Err(AmqpError::channel(PRECONDITION_FAILED, format!("{} in use", q.describe()), Some(m)));
                }
                if d.if_empty && messages > 0 {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        format!("{} not empty", q.describe()),
                        Some(m),
                    ));
                }
                ctx.vhost.delete_queue_deferring(&q, Some(&self.shared))
            }
        };
        ctx.sync_meta();
        ctx.sync_store_all();
        if !d.no_wait {
            self.send(&QueueDeleteOk { message_count: n }.into());
        }
        // rabbitmq-compat: this channel's own consumers of the queue are cancelled after
        // delete-ok (RabbitMQ's channel replies before it handles the queue's consumer-down
        // notices); other channels' cancels may come earlier.
        for c in &own_consumers {
            crate::vhost::cancel_by_broker(c);
        }
        Ok(())
    }
}
