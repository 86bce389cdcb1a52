//! Fault injection, a test control behind `--test-controls`: what a client's failure handling
//! needs the broker to do on demand, without a proxy: send `connection.blocked` / `unblocked`,
//! close a connection or a channel with a given reply code, cancel a queue's consumers as when
//! the queue is deleted, and nack the next N publishes of a vhost. Every applied fault is logged
//! and kept in a bounded list (the HTTP door shows it); a vhost's reset clears its faults.
//!
//! Runs in: the HTTP door's request tasks (applying), the connection readers (closing) and the
//! publish path (one relaxed load per confirmed publish: [`crate::vhost::VHost::take_fault_nack`]).
//!
//! # Invariants
//! - Nothing here acts unless the door checked `Config::test_controls` first.
//! - Faults act through the paths the broker's own decisions take (a connection's kill switch,
//!   `cancel_by_broker`, a rejected publish's nack), so a client sees exactly what it would see
//!   from a real failure.
use crate::broker::Broker;
use crate::stats::ConnInfo;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use warren_protocol::method::{ConnectionBlocked, ConnectionUnblocked};
use warren_protocol::{FieldValue, Method};

/// How many applied faults are kept (the oldest go first).
pub const FAULT_LOG_MAX: usize = 1000;

/// Which connections a fault applies to.
#[derive(Debug, Clone)]
pub enum Target {
    /// One connection, by its name in the management API or its client-given name.
    Connection(String),
    /// Every connection of a user.
    User(String),
    /// Every connection to a vhost.
    VHost(String),
}

impl Target {
    fn matches(&self, c: &ConnInfo) -> bool {
        match self {
            Target::Connection(n) => {
                c.name == *n
                    || c.client_properties
                        .get("connection_name")
                        .and_then(|v| v.as_bytes())
                        .is_some_and(|b| b == n.as_bytes())
            }
            Target::User(u) => c.user == *u,
            Target::VHost(v) => c.vhost == *v,
        }
    }

    /// `connection NAME`, `user NAME`, `vhost NAME`.
    pub fn describe(&self) -> String {
        match self {
            Target::Connection(n) => format!("connection '{n}'"),
            Target::User(u) => format!("user '{u}'"),
            Target::VHost(v) => format!("vhost '{v}'"),
        }
    }
}

/// One applied fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// When (unix ms).
    pub at_ms: u64,
    /// What (`block`, `unblock`, `close-connection`, `close-channel`, `cancel-consumers`,
    /// `nack-publishes`).
    pub kind: &'static str,
    /// The vhost it concerns, when it concerns one (cleared with the vhost's reset).
    pub vhost: Option<String>,
    /// What it was applied to.
    pub target: String,
    /// What it did (how many connections, consumers, publishes).
    pub detail: String,
}

/// The applied faults, newest last.
#[derive(Default)]
pub struct FaultLog {
    /// At most [`FAULT_LOG_MAX`].
    entries: Mutex<VecDeque<Fault>>,
}

impl FaultLog {
    /// Log and keep `f`.
    pub fn record(&self, f: Fault) {
        tracing::warn!("test control: fault '{}' on {}: {}", f.kind, f.target, f.detail);
        let mut e = self.entries.lock();
        if e.len() == FAULT_LOG_MAX {
            e.pop_front();
        }
        e.push_back(f);
    }

    /// Every kept fault, oldest first.
    pub fn list(&self) -> Vec<Fault> {
        self.entries.lock().iter().cloned().collect()
    }

    /// Forget the faults of `vhost` (its reset).
    pub fn clear_vhost(&self, vhost: &str) {
        self.entries.lock().retain(|f| f.vhost.as_deref() != Some(vhost));
    }

    /// Forget every fault.
    pub fn clear(&self) {
        self.entries.lock().clear();
    }
}

impl Broker {
    fn fault_targets(&self, t: &Target) -> Vec<Arc<ConnInfo>> {
        self.stats.connections().into_iter().filter(|c| t.matches(c)).collect()
    }

    fn record_fault(&self, kind: &'static str, vhost: Option<String>, target: String, detail: String) {
        let f = Fault { at_ms: crate::clock::unix_ms(), kind, vhost, target, detail };
        self.faults.record(f);
    }

    /// Send `connection.blocked` (with `reason`) or, `on` false, `connection.unblocked` to the
    /// matching connections whose client announced the capability. Returns how many got it.
    pub fn fault_block(&self, t: &Target, on: bool, reason: &str) -> usize {
        let m: Method = if on {
            ConnectionBlocked { reason: reason.to_string().into() }.into()
        } else {
            ConnectionUnblocked.into()
        };
        let mut n = 0;
        for c in self.fault_targets(t) {
            let caps = match c.client_properties.get("capabilities") {
                Some(FieldValue::Table(t)) => t.get("connection.blocked").and_then(|v| v.as_bool()).unwrap_or(false),
                _ => false,
            };
            if caps {
                c.out.write(|b| warren_protocol::frame::encode_method(b, 0, &m));
                n += 1;
            }
        }
        let kind = if on { "block" } else { "unblock" };
        self.record_fault(kind, fault_vhost(t, &self.fault_targets(t)), t.describe(), format!("{n} connection(s)"));
        n
    }

    /// Close the matching connections with reply `code` and `text`. Returns how many.
    pub fn fault_close_connection(&self, t: &Target, code: u16, text: &str) -> usize {
        let conns = self.fault_targets(t);
        for c in &conns {
            c.close_with(code, text);
        }
        let detail = format!("{} connection(s) closed with {code} {text}", conns.len());
        self.record_fault("close-connection", fault_vhost(t, &conns), t.describe(), detail);
        conns.len()
    }

    /// Close channel `channel` of the matching connections with reply `code` and `text`.
    /// Returns on how many connections the channel was open.
    pub fn fault_close_channel(&self, t: &Target, channel: u16, code: u16, text: &str) -> usize {
        let conns: Vec<_> =
            self.fault_targets(t).into_iter().filter(|c| c.channels.lock().contains_key(&channel)).collect();
        for c in &conns {
            c.close_channel_with(channel, code, text);
        }
        let detail = format!("channel {channel} of {} connection(s) closed with {code} {text}", conns.len());
        self.record_fault("close-channel", fault_vhost(t, &conns), t.describe(), detail);
        conns.len()
    }

    /// Hold (`on`) or release the confirms of the matching connections: held, publishes are
    /// counted but not confirmed. Returns how many connections.
    pub fn fault_hold_confirms(&self, t: &Target, on: bool) -> usize {
        let conns = self.fault_targets(t);
        for c in &conns {
            c.hold_confirms.store(on, std::sync::atomic::Ordering::Relaxed);
            if !on {
                // Wake the reader: it sends what it held.
                c.kill.notify_one();
            }
        }
        let kind = if on { "hold-confirms" } else { "release-confirms" };
        self.record_fault(kind, fault_vhost(t, &conns), t.describe(), format!("{} connection(s)", conns.len()));
        conns.len()
    }

    /// Drop the socket of the matching connections after `frames` more frames from each (no
    /// connection.close). Returns how many connections.
    pub fn fault_drop_after(&self, t: &Target, frames: u64) -> usize {
        let conns = self.fault_targets(t);
        for c in &conns {
            c.drop_after_frames.store(frames, std::sync::atomic::Ordering::Relaxed);
        }
        let detail = format!("{} connection(s) dropped after {frames} more frame(s)", conns.len());
        self.record_fault("drop-after-frames", fault_vhost(t, &conns), t.describe(), detail);
        conns.len()
    }

    /// Delay everything sent to the matching connections (deliveries, confirms, replies) by at
    /// least `ms` (0: no more). Returns how many connections.
    pub fn fault_delay(&self, t: &Target, ms: u64) -> usize {
        let conns = self.fault_targets(t);
        for c in &conns {
            c.delay_writes_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
        }
        let detail = format!("{} connection(s): writes delayed by {ms} ms", conns.len());
        self.record_fault("delay-deliveries", fault_vhost(t, &conns), t.describe(), detail);
        conns.len()
    }

    /// Cancel every consumer of queue `queue` in `vhost` as the broker does when the queue is
    /// deleted (basic.cancel to clients that support it); the queue stays. `None` if there is no
    /// such vhost or queue; else how many consumers.
    pub fn fault_cancel_consumers(&self, vhost: &str, queue: &str) -> Option<usize> {
        let v = self.vhost(vhost)?;
        let q = v.queue(&queue.to_string().into())?;
        let consumers = q.take_consumers();
        for c in &consumers {
            crate::queue::consumer::cancel_by_broker(c);
        }
        let detail = format!("{} consumer(s) cancelled", consumers.len());
        self.record_fault(
            "cancel-consumers",
            Some(vhost.into()),
            format!("queue '{queue}' in vhost '{vhost}'"),
            detail,
        );
        Some(consumers.len())
    }

    /// Nack (and drop) the next `count` publishes on confirm-mode channels of `vhost`. False if
    /// there is no such vhost.
    pub fn fault_nack_publishes(&self, vhost: &str, count: u64) -> bool {
        let Some(v) = self.vhost(vhost) else { return false };
        v.set_fault_nacks(count);
        self.record_fault(
            "nack-publishes",
            Some(vhost.into()),
            format!("vhost '{vhost}'"),
            format!("the next {count} publish(es)"),
        );
        true
    }
}

/// The vhost a fault concerns (so that the vhost's reset clears it): the target's, or the
/// vhost of the first connection it reached.
fn fault_vhost(t: &Target, conns: &[Arc<ConnInfo>]) -> Option<String> {
    match t {
        Target::VHost(v) => Some(v.clone()),
        _ => conns.first().map(|c| c.vhost.clone()),
    }
}
