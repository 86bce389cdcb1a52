//! The exchange class: declare, delete, bind, unbind.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - `amq.*` names are reserved: declaring a new one or deleting one is 403 ACCESS_REFUSED.
use super::Channel;
use crate::auth::{Access, Resource::Exchange};
use crate::connection::ConnCtx;
use crate::error::AmqpResult;
use warren_protocol::method::*;
use warren_protocol::Method;

impl Channel {
    pub(super) fn exchange_declare(&mut self, ctx: &ConnCtx, d: &ExchangeDeclare, m: &Method) -> AmqpResult<()> {
        if !d.passive {
            // access-control: exchange.declare needs configure on the exchange; creating one with
            // an alternate exchange also needs read on it and write on the AE (as in RabbitMQ, an
            // equivalent redeclare of an existing exchange needs configure only).
            ctx.authorize(Access::Configure, Exchange, d.exchange.as_bytes(), m)?;
            if let Some(ae) = d.arguments.get("alternate-exchange").and_then(|v| v.as_bytes()) {
                if ctx.vhost.exchange(&d.exchange).is_none() {
                    ctx.authorize(Access::Read, Exchange, d.exchange.as_bytes(), m)?;
                    ctx.authorize(Access::Write, Exchange, ae, m)?;
                }
            }
        }
        ctx.vhost.declare_exchange(d, m)?;
        ctx.sync_meta();
        if !d.no_wait {
            self.send(&ExchangeDeclareOk.into());
        }
        Ok(())
    }

    pub(super) fn exchange_delete(&mut self, ctx: &ConnCtx, d: &ExchangeDelete, m: &Method) -> AmqpResult<()> {
        // access-control: configure on the exchange.
        ctx.authorize(Access::Configure, Exchange, d.exchange.as_bytes(), m)?;
        ctx.vhost.delete_exchange(&d.exchange, d.if_unused, m)?;
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
                // access-control: write on the destination, read on the source (unbind alike).
                ctx.authorize(Access::Write, Exchange, b.destination.as_bytes(), m)?;
                ctx.authorize(Access::Read, Exchange, b.source.as_bytes(), m)?;
                ctx.vhost.bind_exchange(&b.destination, &b.source, b.routing_key.clone(), b.arguments.clone(), m)?;
                ctx.sync_meta();
                if !b.no_wait {
                    self.send(&ExchangeBindOk.into());
                }
            }
            Method::ExchangeUnbind(u) => {
                ctx.authorize(Access::Write, Exchange, u.destination.as_bytes(), m)?;
                ctx.authorize(Access::Read, Exchange, u.source.as_bytes(), m)?;
                ctx.vhost.unbind_exchange(&u.destination, &u.source, &u.routing_key, &u.arguments, m)?;
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
