//! The tx class: AMQP transactions.
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - Not implemented yet (delivery-guarantees issue #4): every tx method closes the connection with
//!   540 NOT_IMPLEMENTED, which clients surface as a clear error rather than silently non-atomic
//!   publishes.
use super::Channel;
use crate::error::AmqpResult;
use warren_protocol::Method;

impl Channel {
    pub(super) fn tx(&mut self, m: &Method) -> AmqpResult<()> {
        // TODO(delivery guarantees issue #4): buffer publishes and acks until tx.commit.
        self.tx_not_implemented(m)
    }
}
