//! The exchange class: declare, delete, bind, unbind.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - `amq.*` names are reserved: declaring a new one or deleting one is 403 ACCESS_REFUSED.
//! - Every operation is checked against RabbitMQ's access-control table first, by the core
//!   (`crate::vhost::access`, through `ConnCtx::actor`).
use super::Channel;
use crate::connection::ConnCtx;
use crate::error::AmqpResult;
use crate::vhost::ExchangeSpec;
use warren_protocol::method::*;
use warren_protocol::Method;

impl Channel {
    pub(super) fn exchange_declare(&mut self, ctx: &ConnCtx, d: &ExchangeDeclare, m: &Method) -> AmqpResult<()> {
        let spec = ExchangeSpec {
            name: d.exchange.clone(),
            kind: d.kind.clone(),
            passive: d.passive,
            durable: d.durable,
            auto_delete: d.auto_delete,
            internal: d.internal,
            arguments: d.arguments.clone(),
        };
        ctx.vhost.declare_exchange(&ctx.actor(), &spec).map_err(|e| e.at(m))?;
        ctx.sync_meta();
        if !d.no_wait {
            self.send(&ExchangeDeclareOk.into());
        }
        Ok(())
    }

    pub(super) fn exchange_delete(&mut self, ctx: &ConnCtx, d: &ExchangeDelete, m: &Method) -> AmqpResult<()> {
        ctx.vhost.delete_exchange(&ctx.actor(), &d.exchange, d.if_unused).map_err(|e| e.at(m))?;
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
                ctx.vhost
                    .bind_exchange(&ctx.actor(), &b.destination, &b.source, b.routing_key.clone(), b.arguments.clone())
                    .map_err(|e| e.at(m))?;
                ctx.sync_meta();
                if !b.no_wait {
                    self.send(&ExchangeBindOk.into());
                }
            }
            Method::ExchangeUnbind(u) => {
                ctx.vhost
                    .unbind_exchange(&ctx.actor(), &u.destination, &u.source, &u.routing_key, &u.arguments)
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
