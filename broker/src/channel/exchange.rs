//! The exchange class: declare, delete, bind, unbind.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - `amq.*` names are reserved: declaring a new one or deleting one is 403 ACCESS_REFUSED.
//! - Every operation is checked against RabbitMQ's access-control table ([`crate::access`]) first.
use super::Channel;
use crate::access;
use crate::connection::ConnCtx;
use crate::error::AmqpResult;
use crate::vhost::ExchangeSpec;
use warren_protocol::method::*;
use warren_protocol::Method;

impl Channel {
    pub(super) fn exchange_declare(&mut self, ctx: &ConnCtx, d: &ExchangeDeclare, m: &Method) -> AmqpResult<()> {
        if !d.passive {
            ctx.allowed(access::exchange_declare(&ctx.grants, &ctx.vhost, &d.exchange, &d.arguments), 40, 10)?;
        }
        let spec = ExchangeSpec {
            name: d.exchange.clone(),
            kind: d.kind.clone(),
            passive: d.passive,
            durable: d.durable,
            auto_delete: d.auto_delete,
            internal: d.internal,
            arguments: d.arguments.clone(),
        };
        ctx.vhost.declare_exchange(&spec).map_err(|e| e.at(m))?;
        ctx.sync_meta();
        if !d.no_wait {
            self.send(&ExchangeDeclareOk.into());
        }
        Ok(())
    }

    pub(super) fn exchange_delete(&mut self, ctx: &ConnCtx, d: &ExchangeDelete, m: &Method) -> AmqpResult<()> {
        ctx.allowed(access::exchange_delete(&ctx.grants, d.exchange.as_bytes()), 40, 20)?;
        ctx.vhost.delete_exchange(&d.exchange, d.if_unused).map_err(|e| e.at(m))?;
        ctx.sync_meta();
        if !d.no_wait {
            self.send(&ExchangeDeleteOk.into());
        }
        Ok(())
    }

    /// exchange.bind / exchange.unbind (RabbitMQ's exchange-to-exchange bindings).
    pub(super) fn exchange_bind(&mut self, ctx: &ConnCtx, m: &Method) -> AmqpResult<()> {
        match m {
            Method::ExchangeBind(b) => {
                let (g, v) = (&ctx.grants, &ctx.vhost);
                ctx.allowed(access::exchange_bind(g, v, b.destination.as_bytes(), &b.source, &b.routing_key), 40, 30)?;
                ctx.vhost
                    .bind_exchange(&b.destination, &b.source, b.routing_key.clone(), b.arguments.clone())
                    .map_err(|e| e.at(m))?;
                ctx.sync_meta();
                if !b.no_wait {
                    self.send(&ExchangeBindOk.into());
                }
            }
            Method::ExchangeUnbind(u) => {
                let (g, v) = (&ctx.grants, &ctx.vhost);
                ctx.allowed(access::exchange_bind(g, v, u.destination.as_bytes(), &u.source, &u.routing_key), 40, 40)?;
                ctx.vhost
                    .unbind_exchange(&u.destination, &u.source, &u.routing_key, &u.arguments)
                    .map_err(|e| e.at(m))?;
                ctx.sync_meta();
                if !u.no_wait {
                    self.send(&ExchangeUnbindOk.into());
                }
            }
            _ => {}
        }
        Ok(())
    }
}
