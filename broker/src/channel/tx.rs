//! The tx class: AMQP transactions (tx.select / tx.commit / tx.rollback).
//!
//! Runs in: the connection reader task.
//!
//! # Invariants
//! - After tx.select, publishes are routed when they arrive (so a missing exchange fails at once, as
//!   in RabbitMQ) but enqueued only at tx.commit; acks, nacks and rejects are checked when they arrive
//!   (unknown tag -> 406 at once) and applied only at commit. Rollback discards both; unacked
//!   deliveries stay unacked.
//! - Everything buffered is applied at commit in arrival order, before tx.commit-ok is written.
//! - A channel is either transactional or in confirm mode, never both (406).
//! - Closing the channel discards the buffer; its unacked deliveries are requeued as usual.
//! - Buffered messages count against the memory watermark (`TxState::held`) until commit
//!   enqueues them (queues count them from then on) or rollback or close drops them.
use super::{Channel, HeldBytes};
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::queue::Queue;
use std::sync::Arc;
use warren_protocol::constants::PRECONDITION_FAILED;
use warren_protocol::method::*;
use warren_protocol::Method;

/// One buffered operation.
pub enum TxOp {
    /// A routed publish.
    Publish {
        /// Queues it was routed to.
        queues: Vec<Arc<Queue>>,
        /// The message.
        msg: Message,
        /// basic.return at commit if no queue takes it.
        mandatory: bool,
    },
    /// An ack (`requeue` None) or nack/reject (`Some(requeue)`).
    Settle { tag: u64, multiple: bool, requeue: Option<bool> },
}

/// A transactional channel's buffer.
pub struct TxState {
    /// Operations since the last commit or rollback.
    pub ops: Vec<TxOp>,
    /// The buffered messages' memory, counted in the connection's held bytes: what a queued
    /// message counts (head, body and the fixed overhead). A client publishing in a transaction
    /// it never commits is blocked by the memory alarm like any other.
    held: HeldBytes,
}

impl TxState {
    fn new(info: &Arc<crate::stats::ConnInfo>) -> TxState {
        TxState { ops: Vec::new(), held: HeldBytes::new(info) }
    }

    /// Buffer a routed publish until commit.
    pub fn publish(&mut self, queues: Vec<Arc<Queue>>, msg: Message, mandatory: bool) {
        self.held.add((msg.mem_size() + crate::queue::ready::QUEUED_MESSAGE_OVERHEAD) as u64);
        self.ops.push(TxOp::Publish { queues, msg, mandatory });
    }

    /// Everything buffered, in arrival order, and their count handed over (dropped once the
    /// caller has applied them).
    fn take(&mut self) -> (Vec<TxOp>, HeldBytes) {
        let held = HeldBytes::new(&self.held.info);
        (std::mem::take(&mut self.ops), std::mem::replace(&mut self.held, held))
    }
}

impl Channel {
    pub(super) fn tx(&mut self, ctx: &crate::connection::ConnCtx, m: &Method) -> AmqpResult<()> {
        match m {
            Method::TxSelect(_) => {
                if self.confirm.is_some() {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        "cannot switch from confirm to tx mode",
                        Some(m),
                    ));
                }
                self.tx.get_or_insert_with(|| TxState::new(&ctx.info));
                self.shared.mode.store(crate::counters::MODE_TX, std::sync::atomic::Ordering::Relaxed);
                self.send(&TxSelectOk.into());
            }
            Method::TxCommit(_) => {
                let Some(tx) = &mut self.tx else {
                    return Err(AmqpError::channel(PRECONDITION_FAILED, "channel is not transactional", Some(m)));
                };
                // Counted until they are in their queues (dropped at the end of this arm).
                let (ops, _held) = tx.take();
                let mut lsn = 0;
                for op in ops {
                    match op {
                        TxOp::Publish { queues, msg, mandatory } => {
                            lsn = lsn.max(self.enqueue(&queues, msg, mandatory).durable_lsn);
                        }
                        // Checked on arrival; a tag settled twice within one transaction is ignored
                        // the second time.
                        TxOp::Settle { tag, multiple, requeue: None } => {
                            let _ = self.ack(ctx, tag, multiple, m);
                        }
                        TxOp::Settle { tag, multiple, requeue: Some(r) } => {
                            let _ = self.nack(tag, multiple, r, m);
                        }
                    }
                }
                // Persistent messages of the transaction are on disk before commit-ok.
                ctx.sync_store(lsn);
                self.send(&TxCommitOk.into());
            }
            Method::TxRollback(_) => {
                let Some(tx) = &mut self.tx else {
                    return Err(AmqpError::channel(PRECONDITION_FAILED, "channel is not transactional", Some(m)));
                };
                drop(tx.take());
                self.send(&TxRollbackOk.into());
            }
            _ => {}
        }
        Ok(())
    }
}
