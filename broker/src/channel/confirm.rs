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
use warren_protocol::constants::PRECONDITION_FAILED;
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
    /// Count a publish for confirms; a refused one (queue overflow) is nacked at once, after the
    /// acks owed for earlier publishes, so confirms stay in order.
    pub(super) fn confirm_published(&mut self, rejected: bool) {
        let id = self.id();
        let Some(c) = &mut self.confirm else { return };
        c.published();
        if rejected {
            let (before, tag) = (c.published - 1, c.published);
            let owed = before > c.confirmed;
            let multiple = before > c.confirmed + 1;
            c.confirmed = tag;
            self.shared.out.write(|b| {
                if owed {
                    fast::ack(b, id, before, multiple);
                }
                fast::nack(b, id, tag, false, false);
            });
        }
    }
}

impl Channel {
    pub(super) fn confirm_select(&mut self, no_wait: bool, m: &Method) -> AmqpResult<()> {
        if self.tx.is_some() {
            return Err(AmqpError::channel(PRECONDITION_FAILED, "cannot switch from tx to confirm mode", Some(m)));
        }
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
}
