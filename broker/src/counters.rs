//! The counters the hot path writes and the management views read: a connection's counters
//! (atomics written by its own reader and writer), the totals they add up to, and a channel's mode.
//!
//! Runs in: connection readers and writers (counting), queues (under their lock), the rate sampler
//! and the HTTP handlers (reading).
//!
//! # Invariants
//! - A counter is written by one task only (its connection's reader, or its writer for bytes
//!   out), so counting is a relaxed load and store ([`bump`]), not even a locked add.
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Add `n` to a counter that only one task writes (each [`ConnCounters`] field has one writer:
/// the connection's reader, or for `send_*` its writer): a plain load and store instead of a locked
/// read-modify-write, which costs ~20 cycles even uncontended and ran twice per publish. A task
/// that moves between threads is synchronized by the move, so its own writes never race; readers
/// (the management API) see whole values either way.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Counters of one connection. Each field has one writer task (see [`bump`]).
#[derive(Default)]
#[repr(align(64))]
pub struct ConnCounters {
    /// Bytes read from the socket (written by the reader).
    pub recv_oct: AtomicU64,
    /// Socket reads.
    pub recv_cnt: AtomicU64,
    /// Bytes written to the socket (written by the writer).
    pub send_oct: AtomicU64,
    /// Socket writes.
    pub send_cnt: AtomicU64,
    /// Messages published.
    pub published: AtomicU64,
    /// Publisher confirms sent (basic.ack to the publisher).
    pub confirmed: AtomicU64,
    /// Mandatory messages that reached no queue (basic.return).
    pub returned: AtomicU64,
    /// Messages that reached no queue and were dropped.
    pub dropped: AtomicU64,
    /// Deliveries acknowledged by this connection's consumers.
    pub acked: AtomicU64,
}

/// Broker-wide message totals (RabbitMQ's `rabbitmq_global_messages_*_total`).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Totals {
    pub published: u64,
    pub confirmed: u64,
    pub returned: u64,
    pub dropped: u64,
    pub acked: u64,
    /// Deliveries to consumers that ack.
    pub delivered: u64,
    /// Deliveries to no-ack consumers.
    pub delivered_no_ack: u64,
    /// basic.get deliveries that need an ack.
    pub got: u64,
    /// basic.get deliveries with no-ack.
    pub got_no_ack: u64,
    /// basic.get on an empty queue.
    pub get_empty: u64,
    /// Redeliveries (deliveries of messages delivered before).
    pub redelivered: u64,
    pub recv_oct: u64,
    pub send_oct: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.published += o.published;
        self.confirmed += o.confirmed;
        self.returned += o.returned;
        self.dropped += o.dropped;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.delivered_no_ack += o.delivered_no_ack;
        self.got += o.got;
        self.got_no_ack += o.got_no_ack;
        self.get_empty += o.get_empty;
        self.redelivered += o.redelivered;
        self.recv_oct += o.recv_oct;
        self.send_oct += o.send_oct;
    }
}

impl ConnCounters {
    pub fn totals(&self) -> Totals {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            published: g(&self.published),
            confirmed: g(&self.confirmed),
            returned: g(&self.returned),
            dropped: g(&self.dropped),
            acked: g(&self.acked),
            recv_oct: g(&self.recv_oct),
            send_oct: g(&self.send_oct),
            ..Totals::default()
        }
    }
}

/// Channel mode as an atomic (set by the reader on confirm.select / tx.select).
pub type ChannelMode = AtomicU8;

/// Channel mode bits (`ChannelShared::mode`).
pub const MODE_CONFIRM: u8 = 1;
/// Transactional channel.
pub const MODE_TX: u8 = 2;
