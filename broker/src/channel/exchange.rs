//! The exchange class: declare, delete, bind, unbind.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - `amq.*` names are reserved: declaring a new one or deleting one is 403 ACCESS_REFUSED.
use super::Channel;
use crate::connection::ConnCtx;
use crate::error::{AmqpError, AmqpResult};
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::Method;

impl Channel {
    pub(super) fn exchange_declare(
        &mut self,
        ctx: &ConnCtx,
        d: &ExchangeDeclare,
        m: &Method,
    ) -> AmqpResult<()> {
        ctx.vhost.declare_exchange(d, m)?;
        if !d.no_wait {
            self.send(&ExchangeDeclareOk.into());
        }
        Ok(())
    }

    pub(super) fn exchange_delete(
        &mut self,
        ctx: &ConnCtx,
        d: &ExchangeDelete,
        m: &Method,
    ) -> AmqpResult<()> {
        ctx.vhost.delete_exchange(&d.exchange, d.if_unused, m)?;
        if !d.no_wait {
            self.send(&ExchangeDeleteOk.into());
        }
        Ok(())
    }

    /// exchange.bind / exchange.unbind (RabbitMQ's exchange-to-exchange bindings).
    pub(super) fn exchange_bind(&mut self, _ctx: &ConnCtx, m: &Method) -> AmqpResult<()> {
        // TODO(routing issue #3): exchange-to-exchange bindings. Until then the connection is closed
        // with 540 NOT_IMPLEMENTED, which clients report clearly.
        Err(AmqpError::connection(
            NOT_IMPLEMENTED,
            "exchange-to-exchange bindings are not implemented yet",
            Some(m),
        ))
    }
}
