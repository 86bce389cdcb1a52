//! The confirm class: publisher confirms (RabbitMQ extension).
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - Publishes are numbered from 1 in the order received after confirm.select.
//! - A confirm is sent once the message has been routed and taken by every target queue (or found
//!   unroutable, after its basic.return). Confirms that become due while one read batch is processed
//!   are coalesced into one `basic.ack multiple=true` at the end of the batch.
use super::Channel;
use crate::error::{AmqpError, AmqpResult};
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{fast, Method};

/// Confirm-mode counters.
#[derive(Debug, Default)]
pub struct ConfirmState {
    /// Sequence number of the last publish received.
    pub published: u64,
    /// Highest sequence number already confirmed to the client.
    pub confirmed: u64,
}

impl ConfirmState {
    pub fn published(&mut self) {
        self.published += 1;
    }
}

impl Channel {
    pub(super) fn confirm_select(&mut self, no_wait: bool, _m: &Method) -> AmqpResult<()> {
        if self.confirm.is_none() {
            self.confirm = Some(ConfirmState::default());
        }
        if !no_wait {
            self.send(&ConfirmSelectOk.into());
        }
        Ok(())
    }

    /// Send the confirms that became due (end of a read batch).
    pub fn flush_confirms(&mut self) {
        let id = self.id();
        let Some(c) = &mut self.confirm else { return };
        if c.published == c.confirmed {
            return;
        }
        let multiple = c.published > c.confirmed + 1;
        let tag = c.published;
        c.confirmed = tag;
        self.shared.out.write(|b| fast::ack(b, id, tag, multiple));
    }

    /// Tx is not part of this build yet.
    pub(super) fn tx_not_implemented(&mut self, m: &Method) -> AmqpResult<()> {
        Err(AmqpError::connection(NOT_IMPLEMENTED, "transactions are not implemented yet", Some(m)))
    }
}
