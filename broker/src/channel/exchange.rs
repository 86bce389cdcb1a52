//! The exchange class: declare, delete, bind, unbind.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - `amq.*` names are reserved: declaring a new one or deleting one is 403 ACCESS_REFUSED.
//! - Topic authorisation ([`check_topic`]) runs only for a user with a topic permission on the
//!   exchange named, and only while that exchange is of type `topic`.
use super::Channel;
use crate::auth::{Access, Resource::Exchange};
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::ExchangeKind;
use warren_protocol::constants::ACCESS_REFUSED;
use warren_protocol::method::*;
use warren_protocol::{Method, ShortStr};

/// Topic authorisation (RabbitMQ's `check_write_permitted_on_topic` / `..._read_...`): when the
/// user has a topic permission on `exchange` and it is a topic exchange, `key` (a published
/// routing key for `Write`, a binding key for `Read`) must match its expression; else the 403
/// text. A missing exchange is not checked here: the operation itself reports it (404), as in
/// RabbitMQ; neither is an internal one on publish (the publish is refused for that first).
pub(super) fn check_topic(ctx: &ConnCtx, access: Access, exchange: &ShortStr, key: &ShortStr) -> Result<(), String> {
    if !ctx.grants.has_topic_permission_for(exchange.as_bytes()) {
        return Ok(());
    }
    match ctx.vhost.exchange(exchange) {
        Some(x) if x.kind == ExchangeKind::Topic && !(access == Access::Write && x.internal) => {
            ctx.grants.check_topic(access, exchange.as_bytes(), key.as_bytes())
        }
        _ => Ok(()),
    }
}

/// [`check_topic`] for a bind or unbind: 403 ACCESS_REFUSED on the channel.
pub(super) fn authorize_binding_key(ctx: &ConnCtx, source: &ShortStr, key: &ShortStr, m: &Method) -> AmqpResult<()> {
    if !ctx.grants.has_topic_permissions() {
        return Ok(());
    }
    check_topic(ctx, Access::Read, source, key).map_err(|text| {
        tracing::warn!(connection = %ctx.id, "{text}");
        AmqpError::channel(ACCESS_REFUSED, text, Some(m))
    })
}

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
                // access-control: topic read on the source for the binding key (unbind alike).
                authorize_binding_key(ctx, &b.source, &b.routing_key, m)?;
                ctx.vhost.bind_exchange(&b.destination, &b.source, b.routing_key.clone(), b.arguments.clone(), m)?;
                ctx.sync_meta();
                if !b.no_wait {
                    self.send(&ExchangeBindOk.into());
                }
            }
            Method::ExchangeUnbind(u) => {
                ctx.authorize(Access::Write, Exchange, u.destination.as_bytes(), m)?;
                ctx.authorize(Access::Read, Exchange, u.source.as_bytes(), m)?;
                authorize_binding_key(ctx, &u.source, &u.routing_key, m)?;
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
