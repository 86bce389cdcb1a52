//! The queue class: declare, bind, unbind, purge, delete.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - Names starting `amq.` are reserved for the broker (403 on a non-passive declare); an empty name
//!   asks for a server-named `amq.gen-...` queue.
//! - A queue exclusive to another connection answers 405 RESOURCE_LOCKED to every queue method.
use super::Channel;
use crate::connection::ConnCtx;
use crate::error::AmqpResult;
use crate::ids::random_suffix;
use crate::vhost::QueueSpec;
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
        let name = match (d.queue.is_empty(), d.passive) {
            (true, true) => self.queue_name(&d.queue, m)?,
            (true, false) => ShortStr::from(format!("amq.gen-{}", random_suffix())),
            (false, _) => d.queue.clone(),
        };
        let spec = QueueSpec {
            name: name.clone(),
            server_named: d.queue.is_empty(),
            passive: d.passive,
            durable: d.durable,
            exclusive: d.exclusive,
            auto_delete: d.auto_delete,
            arguments: d.arguments.clone(),
        };
        let r = ctx.vhost.declare_queue(&ctx.actor(), &spec).map_err(|e| e.at(m))?;
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
        // spec(queue.bind): an empty routing key with an empty queue name means the last queue's name.
        let key = if b.routing_key.is_empty() && b.queue.is_empty() { qname.clone() } else { b.routing_key.clone() };
        ctx.vhost.bind_queue(&ctx.actor(), &qname, &b.exchange, key, b.arguments.clone()).map_err(|e| e.at(m))?;
        ctx.sync_meta();
        if !b.no_wait {
            self.send(&QueueBindOk.into());
        }
        Ok(())
    }

    pub(super) fn queue_unbind(&mut self, ctx: &ConnCtx, u: &QueueUnbind, m: &Method) -> AmqpResult<()> {
        let qname = self.queue_name(&u.queue, m)?;
        ctx.vhost.unbind_queue(&ctx.actor(), &qname, &u.exchange, &u.routing_key, &u.arguments).map_err(|e| e.at(m))?;
        ctx.sync_meta();
        self.send(&QueueUnbindOk.into());
        Ok(())
    }

    pub(super) fn queue_purge(&mut self, ctx: &ConnCtx, p: &QueuePurge, m: &Method) -> AmqpResult<()> {
        let qname = self.queue_name(&p.queue, m)?;
        let n = ctx.vhost.purge_queue(&ctx.actor(), &qname).map_err(|e| e.at(m))?;
        ctx.sync_store_all();
        if !p.no_wait {
            self.send(&QueuePurgeOk { message_count: n }.into());
        }
        Ok(())
    }

    pub(super) fn queue_delete(&mut self, ctx: &ConnCtx, d: &QueueDelete, m: &Method) -> AmqpResult<()> {
        let qname = self.queue_name(&d.queue, m)?;
        let deleted = ctx
            .vhost
            .delete_queue_checked(&ctx.actor(), &qname, d.if_unused, d.if_empty, Some(&self.shared))
            .map_err(|e| e.at(m))?;
        // rabbitmq-compat: RabbitMQ 3.x answers delete-ok (0 messages) for a missing queue.
        let (n, own_consumers) = deleted.unwrap_or_default();
        ctx.sync_meta();
        ctx.sync_store_all();
        if !d.no_wait {
            self.send(&QueueDeleteOk { message_count: n }.into());
        }
        // rabbitmq-compat: this channel's own consumers of the queue are cancelled after
        // delete-ok (RabbitMQ's channel replies before it handles the queue's consumer-down
        // notices); other channels' cancels may come earlier.
        for c in &own_consumers {
            crate::queue::consumer::cancel_by_broker(c);
        }
        Ok(())
    }
}
