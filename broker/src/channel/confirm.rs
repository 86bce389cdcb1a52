//! The confirm class: publisher confirms (RabbitMQ extension).
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - Publishes are numbered from 1 in the order received after confirm.select.
//! - A confirm is sent once the message has been routed and taken by every target queue (or found
//!   unroutable, after its basic.return), and, when a durable queue wrote it to the message store,
//!   once the fsync covering its record is done. Confirms that become due together (in one read
//!   batch, or by one fsync) are coalesced into one `basic.ack multiple=true`.
//! - Confirms go out in publish order: once one publish waits for the disk, every later one
//!   queues behind it in `pending`.
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
    /// Publishes waiting for the disk, and every publish after the first of them, in order:
    /// (sequence number, store LSN to wait for (0: none), nack instead of ack).
    pub pending: std::collections::VecDeque<(u64, u64, bool)>,
}

impl ConfirmState {
    pub fn published(&mut self) {
        self.published += 1;
    }
}

impl Channel {
    /// Count a publish for confirms; a refused one (queue overflow) is nacked at once, after the
    /// acks owed for earlier publishes, so confirms stay in order.
    pub(super) fn confirm_published(&mut self, rejected: bool, lsn: u64) {
        let id = self.id();
        let Some(c) = &mut self.confirm else { return };
        c.published();
        if lsn > 0 || !c.pending.is_empty() {
            c.pending.push_back((c.published, lsn, rejected));
            return;
        }
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
            self.shared.mode.store(crate::counters::MODE_CONFIRM, std::sync::atomic::Ordering::Relaxed);
        }
        if !no_wait {
            self.send(&ConfirmSelectOk.into());
        }
        Ok(())
    }

    /// Publish the number of unconfirmed publishes (confirms held by a test fault).
    pub fn count_unconfirmed(&self) {
        if let Some(c) = &self.confirm {
            self.shared.unconfirmed.store(c.published - c.confirmed, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether some confirm waits for the store's fsync.
    pub fn awaits_disk(&self) -> bool {
        self.confirm.as_ref().is_some_and(|c| !c.pending.is_empty())
    }

    /// Send the confirms that became due (end of a read batch, or an fsync): `durable` is the
    /// store LSN covered by the last fsync.
    pub fn flush_confirms(&mut self, durable: u64) {
        let id = self.id();
        let Some(c) = &mut self.confirm else { return };
        if c.published == c.confirmed {
            self.shared.unconfirmed.store(0, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        // Publishes before the first pending one need nothing more.
        let first_pending = c.pending.front().map(|p| p.0).unwrap_or(c.published + 1);
        let mut ack_upto = (first_pending - 1 > c.confirmed).then_some(first_pending - 1);
        let confirmed = &mut c.confirmed;
        let pending = &mut c.pending;
        self.shared.out.write(|b| {
            let ack = |b: &mut bytes::BytesMut, upto: u64, confirmed: &mut u64| {
                fast::ack(b, id, upto, upto > *confirmed + 1);
                *confirmed = upto;
            };
            while let Some(&(seq, lsn, nack)) = pending.front() {
                if lsn > durable {
                    break;
                }
                pending.pop_front();
                if nack {
                    if let Some(a) = ack_upto.take() {
                        ack(b, a, confirmed);
                    }
                    fast::nack(b, id, seq, false, false);
                    *confirmed = seq;
                } else {
                    ack_upto = Some(seq);
                }
            }
            if let Some(a) = ack_upto {
                ack(b, a, confirmed);
            }
        });
        self.shared.unconfirmed.store(c.published - c.confirmed, std::sync::atomic::Ordering::Relaxed);
    }
}
