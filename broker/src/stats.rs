//! What the management API and the Prometheus endpoint report: the registry of open connections
//! (with their channels and counters), broker-wide message totals, and message rates.
//!
//! Runs in: connection readers and writers (counting, registering), the rate sampler task, and
//! the HTTP handlers (reading).
//!
//! # Invariants
//! - Counting costs the hot path no contended write: a connection's counters are written only by
//!   its own reader (and byte counts by its own writer); queue counters live under the queue's lock
//!   or, for acks, are added once per run of acks to the same queue.
//! - Totals never go backwards: when a connection or queue goes, its counters are added to the
//!   retired totals first.
use crate::counters::{ConnCounters, Totals};
use crate::ids::ConnectionId;
use crate::queue::consumer::ChannelShared;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use warren_protocol::FieldTable;

/// How often message rates are sampled (RabbitMQ's default `collect_statistics_interval`, 5 s).
pub const RATE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// An open connection, as the management API lists it.
pub struct ConnInfo {
    /// Broker-wide id.
    pub id: ConnectionId,
    /// RabbitMQ's connection name: `peer -> local`, e.g. `127.0.0.1:50124 -> 127.0.0.1:5672`.
    pub name: String,
    /// Client address.
    pub peer: Option<SocketAddr>,
    /// Our address.
    pub local: Option<SocketAddr>,
    /// Authenticated user.
    pub user: String,
    /// Vhost opened.
    pub vhost: String,
    /// What the client sent in connection.start-ok.
    pub client_properties: FieldTable,
    /// Unix time of the handshake, ms.
    pub connected_at: u64,
    /// Over TLS.
    pub tls: bool,
    /// Negotiated frame_max.
    pub frame_max: u32,
    /// Negotiated channel_max.
    pub channel_max: u16,
    /// Negotiated heartbeat, s.
    pub heartbeat: u16,
    /// Counters.
    pub counters: ConnCounters,
    /// Open channels by number.
    pub channels: Mutex<HashMap<u16, Arc<ChannelShared>>>,
    /// The connection's outbound buffer (its pending bytes count against the memory watermark).
    pub out: Arc<crate::outbound::Outbound>,
    /// Body bytes of publishes being assembled (multi-frame bodies not yet complete), over all
    /// channels: written only by this connection's reader (see `channel::HeldBytes`).
    pub assembling: AtomicU64,
    /// Set while the connection is blocked by the memory alarm.
    pub blocked: AtomicBool,
    /// Why the broker was asked to close it (management DELETE, vhost deleted).
    pub kill_reason: Mutex<Option<String>>,
    /// Wakes the reader to close the connection with `kill_reason`.
    pub kill: Notify,
}

impl ConnInfo {
    /// Bytes this connection holds in memory for its client: unacked bodies still in memory,
    /// bodies being assembled, and pending outbound frames (the memory monitor's count; each
    /// channel's lock is taken briefly, alone).
    pub fn held_bytes(&self) -> u64 {
        let channels: Vec<Arc<ChannelShared>> = self.channels.lock().values().cloned().collect();
        let unacked: u64 = channels.iter().map(|c| c.state.lock().unacked_bytes).sum();
        unacked + self.assembling.load(Ordering::Relaxed) + self.out.len() as u64
    }

    /// Page out the bodies of unacked messages whose record is written (memory pressure): they
    /// are read back if requeued. Returns the bytes freed.
    pub fn page_out_unacked(&self, store: &crate::store::Store) -> u64 {
        let channels: Vec<Arc<ChannelShared>> = self.channels.lock().values().cloned().collect();
        channels.iter().map(|c| c.state.lock().page_out(store)).sum()
    }

    /// Ask the connection to close with 320 CONNECTION_FORCED and `reason`.
    pub fn force_close(&self, reason: &str) {
        *self.kill_reason.lock() = Some(reason.to_string());
        self.kill.notify_one();
    }
}

/// Connection registry, retired totals and sampled rates.
#[derive(Default)]
pub struct Stats {
    /// Open connections.
    pub conns: RwLock<HashMap<ConnectionId, Arc<ConnInfo>>>,
    /// Counters of closed connections and deleted queues.
    retired: Mutex<Totals>,
    /// Last two samples of the totals: (unix ms, totals), for rates.
    samples: Mutex<[(u64, Totals); 2]>,
    /// Per-object previous samples for rates (key: "q/<vhost>/<name>" or "c/<id>").
    object_samples: Mutex<HashMap<String, [(u64, Totals); 2]>>,
}

impl Stats {
    pub fn register(&self, c: Arc<ConnInfo>) {
        self.conns.write().insert(c.id, c);
    }
    /// Remove a closed connection, keeping its counts in the totals.
    pub fn unregister(&self, id: ConnectionId) {
        if let Some(c) = self.conns.write().remove(&id) {
            self.retired.lock().add(&c.counters.totals());
        }
    }
    /// Keep a deleted queue's counts in the totals.
    pub fn retire(&self, t: &Totals) {
        self.retired.lock().add(t);
    }
    /// Every open connection.
    pub fn connections(&self) -> Vec<Arc<ConnInfo>> {
        let mut v: Vec<_> = self.conns.read().values().cloned().collect();
        v.sort_by_key(|c| c.id.0);
        v
    }
    /// Retired totals plus every open connection's (queue-side counts are added by the caller).
    pub fn connection_totals(&self) -> Totals {
        let mut t = *self.retired.lock();
        for c in self.conns.read().values() {
            t.add(&c.counters.totals());
        }
        t
    }
    /// Record a sample of the broker totals (sampler task).
    pub fn sample(&self, now_ms: u64, t: Totals) {
        let mut s = self.samples.lock();
        s[0] = s[1];
        s[1] = (now_ms, t);
    }
    /// Record a sample of one object's counters.
    pub fn sample_object(&self, key: String, now_ms: u64, t: Totals) {
        let mut m = self.object_samples.lock();
        let e = m.entry(key).or_insert([(0, Totals::default()); 2]);
        e[0] = e[1];
        e[1] = (now_ms, t);
    }
    /// Forget samples of objects not in `live`.
    pub fn retain_objects(&self, live: &std::collections::HashSet<String>) {
        self.object_samples.lock().retain(|k, _| live.contains(k));
    }
    /// Per-second rates between the last two broker samples.
    pub fn rates(&self) -> Rates {
        let s = self.samples.lock();
        rate_between(&s[0], &s[1])
    }
    /// Per-second rates of one object.
    pub fn object_rates(&self, key: &str) -> Rates {
        self.object_samples.lock().get(key).map(|s| rate_between(&s[0], &s[1])).unwrap_or_default()
    }
}

/// Per-second rates of the `Totals` fields.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Rates {
    pub published: f64,
    pub confirmed: f64,
    pub returned: f64,
    pub dropped: f64,
    pub acked: f64,
    pub delivered: f64,
    pub delivered_no_ack: f64,
    pub got: f64,
    pub got_no_ack: f64,
    pub get_empty: f64,
    pub redelivered: f64,
    pub recv_oct: f64,
    pub send_oct: f64,
}

/// Rates between two samples; zero before there are two.
fn rate_between(a: &(u64, Totals), b: &(u64, Totals)) -> Rates {
    if a.0 == 0 || b.0 <= a.0 {
        return Rates::default();
    }
    let secs = (b.0 - a.0) as f64 / 1000.0;
    let r = |x: u64, y: u64| ((y.saturating_sub(x)) as f64 / secs * 10.0).round() / 10.0;
    Rates {
        published: r(a.1.published, b.1.published),
        confirmed: r(a.1.confirmed, b.1.confirmed),
        returned: r(a.1.returned, b.1.returned),
        dropped: r(a.1.dropped, b.1.dropped),
        acked: r(a.1.acked, b.1.acked),
        delivered: r(a.1.delivered, b.1.delivered),
        delivered_no_ack: r(a.1.delivered_no_ack, b.1.delivered_no_ack),
        got: r(a.1.got, b.1.got),
        got_no_ack: r(a.1.got_no_ack, b.1.got_no_ack),
        get_empty: r(a.1.get_empty, b.1.get_empty),
        redelivered: r(a.1.redelivered, b.1.redelivered),
        recv_oct: r(a.1.recv_oct, b.1.recv_oct),
        send_oct: r(a.1.send_oct, b.1.send_oct),
    }
}
