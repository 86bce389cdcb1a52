//! What the management API and the Prometheus endpoint report: the registry of open connections
//! (with their channels and counters), broker-wide message totals, message rates, and the last
//! hour of samples for charts ([`History`]).
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
//! - History memory is fixed per object: a queue's series costs 7,200 bytes of snapshots (10
//!   values × 4 bytes × (120 five-second + 60 one-minute snapshots)) plus about 200 bytes of key
//!   and bookkeeping, i.e. ~7.4 KB per queue for the whole hour (7.4 MB per 1,000 queues); an
//!   exchange ~1.5 KB; the broker-wide series ~41 KB once. A queue or exchange that has only ever
//!   been empty and idle has no series at all (it costs nothing until its first non-zero value).
//!   Deleted objects are dropped at the
//!   next sample. Every live series gets exactly one snapshot per sample, so the n-th newest
//!   snapshot of every series was taken at the n-th newest sample time.
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
    /// A direct connection (a shovel's, opened by the broker itself).
    pub direct: bool,
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
    /// Body bytes of publishes being assembled (multi-frame bodies not yet complete) and what the
    /// messages buffered in uncommitted transactions count, over all channels: written only by
    /// this connection's reader (see `channel::HeldBytes`).
    pub assembling: AtomicU64,
    /// Set while the connection is blocked by the memory alarm.
    pub blocked: AtomicBool,
    /// Why the broker was asked to close it (management DELETE, vhost deleted, a test fault):
    /// reply code and text.
    pub kill_reason: Mutex<Option<(u16, String)>>,
    /// Test fault: confirms are not sent while set (they are counted as unconfirmed).
    pub hold_confirms: AtomicBool,
    /// Test fault: every write to the client waits this long first (0: none).
    pub delay_writes_ms: AtomicU64,
    /// Test fault: drop the socket once this many more frames were read (0: no such fault).
    pub drop_after_frames: AtomicU64,
    /// Channels the broker was asked to close (a test fault): channel, reply code and text.
    pub channel_kills: Mutex<Vec<(u16, u16, String)>>,
    /// Wakes the reader to act on `kill_reason` and `channel_kills`.
    pub kill: Notify,
}

impl ConnInfo {
    /// Bytes this connection holds in memory for its client: unacked bodies and heads still in
    /// memory plus `QUEUED_MESSAGE_OVERHEAD` per unacked message, bodies being assembled, messages
    /// buffered in uncommitted transactions, and pending outbound
    /// frames (the memory monitor's count; each channel's lock is taken briefly, alone).
    pub fn held_bytes(&self) -> u64 {
        let channels: Vec<Arc<ChannelShared>> = self.channels.lock().values().cloned().collect();
        // An unacked message costs what a ready one does besides its body.
        let overhead = crate::queue::ready::QUEUED_MESSAGE_OVERHEAD as u64;
        let unacked: u64 = channels
            .iter()
            .map(|c| {
                let st = c.state.lock();
                st.unacked_bytes + st.unacked_count as u64 * overhead
            })
            .sum();
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
        self.close_with(warren_protocol::constants::CONNECTION_FORCED, reason);
    }

    /// Ask the connection to close with reply `code` and `text`.
    pub fn close_with(&self, code: u16, text: &str) {
        *self.kill_reason.lock() = Some((code, text.to_string()));
        self.kill.notify_one();
    }

    /// Ask the connection to close channel `channel` with reply `code` and `text`.
    pub fn close_channel_with(&self, channel: u16, code: u16, text: &str) {
        self.channel_kills.lock().push((channel, code, text.to_string()));
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
    /// The last hour of samples, for charts (see [`History`] for its memory bound).
    pub history: Mutex<History>,
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

// ---- history ---------------------------------------------------------------------------------

/// Snapshots kept at the sampler's own resolution ([`RATE_INTERVAL`], 5 s) for a queue or an
/// exchange: 120 = the last 10 minutes, as RabbitMQ's `basic` retention policy (`{605, 5}`).
pub const FINE_POINTS: usize = 120;
/// Snapshots kept at full resolution for the broker-wide series (one object, so the overview's
/// charts are exact over the whole hour): 720 = 60 minutes.
pub const GLOBAL_FINE_POINTS: usize = 720;
/// Every how many samples a coarse snapshot is taken: 12 × 5 s = one per minute (RabbitMQ's
/// `{3660, 60}`).
pub const COARSE_EVERY: u64 = 12;
/// Coarse snapshots kept: 60 = the last hour at one-minute resolution.
pub const COARSE_POINTS: usize = 60;

/// A fixed-capacity ring, newest last; allocated to its full capacity on first use, so its memory
/// never changes after that.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    /// Entries; `buf.len() < cap` until the ring first fills.
    buf: Vec<T>,
    /// Where the next entry goes once the ring is full.
    head: usize,
    /// Capacity.
    cap: usize,
}

impl<T: Copy> Ring<T> {
    /// An empty ring of `cap` entries (nothing allocated yet).
    pub fn new(cap: usize) -> Self {
        Ring { buf: Vec::new(), head: 0, cap }
    }
    /// Add `v` as the newest entry, dropping the oldest when full.
    pub fn push(&mut self, v: T) {
        if self.cap == 0 {
            return;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.cap);
        }
        if self.buf.len() < self.cap {
            self.buf.push(v);
        } else {
            self.buf[self.head] = v;
            self.head = (self.head + 1) % self.cap;
        }
    }
    /// Entries held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The `i`-th newest entry (0 = newest).
    pub fn back(&self, i: usize) -> Option<T> {
        let n = self.buf.len();
        if i >= n {
            return None;
        }
        let newest = if n < self.cap { n - 1 } else { (self.head + self.cap - 1) % self.cap };
        Some(self.buf[(newest + self.cap - i) % self.cap])
    }
    /// Heap bytes held (the full capacity once used).
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity() * std::mem::size_of::<T>()
    }
}

/// One object's history: `N` values per sample, each stored in 4 bytes. Counters (cumulative,
/// never going back) are stored modulo 2^32 and read back against the newest full value
/// (`last`), exact as long as a counter grows by less than 2^32 within the hour kept; gauges
/// (queue depths) saturate at `u32::MAX`.
#[derive(Debug, Clone)]
pub struct Series<const N: usize> {
    /// One snapshot per sample, newest last; aligned with [`History::fine_times`] from the newest.
    fine: Ring<[u32; N]>,
    /// One snapshot per [`COARSE_EVERY`] samples; aligned with [`History::coarse_times`].
    coarse: Ring<[u32; N]>,
    /// The newest values, in full.
    last: [u64; N],
}

impl<const N: usize> Default for Series<N> {
    /// An empty series with an object's rings ([`FINE_POINTS`], [`COARSE_POINTS`]).
    fn default() -> Self {
        Series::new(FINE_POINTS)
    }
}

impl<const N: usize> Series<N> {
    fn new(fine: usize) -> Self {
        Series { fine: Ring::new(fine), coarse: Ring::new(COARSE_POINTS), last: [0; N] }
    }
    fn push(&mut self, v: [u64; N], coarse: bool) {
        let mut packed = [0u32; N];
        for (p, x) in packed.iter_mut().zip(v.iter()) {
            // Counters wrap (read back against `last`); a gauge beyond 2^32 is out of reach anyway.
            *p = *x as u32;
        }
        self.fine.push(packed);
        if coarse {
            self.coarse.push(packed);
        }
        self.last = v;
    }
    /// Value `k` of a stored snapshot, in full: counters against the newest value (modulo
    /// 2^32), gauges as stored.
    fn widen(&self, k: usize, stored: u32, gauge: bool) -> u64 {
        if gauge {
            stored as u64
        } else {
            self.last[k].saturating_sub((self.last[k] as u32).wrapping_sub(stored) as u64)
        }
    }
    /// Heap bytes held by this series.
    pub fn heap_bytes(&self) -> usize {
        self.fine.heap_bytes() + self.coarse.heap_bytes()
    }
}

/// Values of a queue's series, in order: 2 gauges, then counters.
pub const QUEUE_FIELDS: [&str; 10] = [
    "messages_ready",
    "messages_unacknowledged",
    "publish",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "redeliver",
    "ack",
    "get_empty",
];
/// Gauges at the front of [`QUEUE_FIELDS`] and [`GLOBAL_FIELDS`].
pub const GAUGES: usize = 2;
/// Values of the broker-wide series: 2 gauges, then counters.
pub const GLOBAL_FIELDS: [&str; 13] = [
    "messages_ready",
    "messages_unacknowledged",
    "publish",
    "confirm",
    "return_unroutable",
    "drop_unroutable",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "redeliver",
    "ack",
    "get_empty",
];
/// Values of an exchange's series (counters).
pub const EXCHANGE_FIELDS: [&str; 2] = ["publish_in", "publish_out"];

/// A queue's values for [`QUEUE_FIELDS`].
pub fn queue_values(ready: u64, unacked: u64, t: &Totals) -> [u64; 10] {
    [
        ready,
        unacked,
        t.published,
        t.delivered,
        t.delivered_no_ack,
        t.got,
        t.got_no_ack,
        t.redelivered,
        t.acked,
        t.get_empty,
    ]
}

/// The broker's values for [`GLOBAL_FIELDS`].
pub fn global_values(ready: u64, unacked: u64, t: &Totals) -> [u64; 13] {
    [
        ready,
        unacked,
        t.published,
        t.confirmed,
        t.returned,
        t.dropped,
        t.delivered,
        t.delivered_no_ack,
        t.got,
        t.got_no_ack,
        t.redelivered,
        t.acked,
        t.get_empty,
    ]
}

/// The last hour of message counts and queue depths: the broker's, each queue's and each
/// exchange's, fed by the rate sampler and read by `/api` (`mgmt::history`).
///
/// Memory is bounded per object: a queue costs `(FINE_POINTS + COARSE_POINTS) × 10 × 4` =
/// 7,200 bytes of snapshots plus about 200 bytes of key, map entry and `last` values, whatever
/// its traffic and however long it lives (an exchange 1,440 + ~100 bytes; the broker 40,560 once).
#[derive(Debug)]
pub struct History {
    /// Samples taken so far.
    tick: u64,
    /// Unix ms of each sample, newest last (as many as the longest fine ring).
    fine_times: Ring<u64>,
    /// Unix ms of each coarse snapshot.
    coarse_times: Ring<u64>,
    /// Whether the sample being recorded also takes a coarse snapshot.
    coarse_now: bool,
    /// The broker-wide series.
    pub global: Series<13>,
    /// Queues by [`crate::mgmt::views::queue_rate_key`].
    pub queues: HashMap<String, Series<10>>,
    /// Exchanges by [`crate::mgmt::views::exchange_key`].
    pub exchanges: HashMap<String, Series<2>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            tick: 0,
            fine_times: Ring::new(GLOBAL_FINE_POINTS),
            coarse_times: Ring::new(COARSE_POINTS),
            coarse_now: false,
            global: Series::new(GLOBAL_FINE_POINTS),
            queues: HashMap::new(),
            exchanges: HashMap::new(),
        }
    }
}

/// One value of a series at evenly spaced instants, newest first: what RabbitMQ's
/// `*_details.samples` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// (unix ms, value), newest first.
    pub points: Vec<(u64, u64)>,
}

/// Push `v` onto the series of `key`. An object that has only ever been empty and idle costs
/// nothing: its series starts at its first non-zero value (before that, samples read as 0, which
/// they were).
fn record_into<const N: usize>(map: &mut HashMap<String, Series<N>>, key: &str, v: [u64; N], coarse: bool) {
    match map.get_mut(key) {
        Some(s) => s.push(v, coarse),
        None if v.iter().all(|x| *x == 0) => {}
        None => {
            let mut s = Series::new(FINE_POINTS);
            s.push(v, coarse);
            map.insert(key.to_string(), s);
        }
    }
}

impl History {
    /// Start a sample taken at `now_ms`: every series must then be given its values (objects not
    /// given any are dropped by [`History::retain`]).
    pub fn begin(&mut self, now_ms: u64) {
        self.coarse_now = self.tick.is_multiple_of(COARSE_EVERY);
        self.tick += 1;
        self.fine_times.push(now_ms);
        if self.coarse_now {
            self.coarse_times.push(now_ms);
        }
    }
    /// The broker's values in this sample.
    pub fn record_global(&mut self, v: [u64; 13]) {
        self.global.push(v, self.coarse_now);
    }
    /// A queue's values in this sample.
    pub fn record_queue(&mut self, key: &str, v: [u64; 10]) {
        record_into(&mut self.queues, key, v, self.coarse_now);
    }
    /// An exchange's values in this sample.
    pub fn record_exchange(&mut self, key: &str, v: [u64; 2]) {
        record_into(&mut self.exchanges, key, v, self.coarse_now);
    }
    /// Forget the queues and exchanges not in `live` (deleted since).
    pub fn retain(&mut self, live: &std::collections::HashSet<String>) {
        self.queues.retain(|k, _| live.contains(k));
        self.exchanges.retain(|k, _| live.contains(k));
    }

    /// Value `k` of `s` as it was at `t` (unix ms): the newest snapshot whose
    /// [`RATE_INTERVAL`] bucket starts at or before `t` (a snapshot taken at 12:00:03 stands for
    /// 12:00:00, as RabbitMQ files samples in buckets, so the newest sample of a range that ends
    /// at the current time rounded down is the latest snapshot), from the fine ring while it
    /// reaches back that far, else from the coarse one; 0 before the series began.
    fn value_at<const N: usize>(&self, s: &Series<N>, k: usize, t: u64, gauge: bool) -> u64 {
        let bucket = RATE_INTERVAL.as_millis() as u64;
        let t = t - t % bucket + bucket - 1;
        let oldest_fine = s.fine.len().checked_sub(1).and_then(|i| self.fine_times.back(i));
        let (ring, times) = match oldest_fine {
            Some(o) if t >= o => (&s.fine, &self.fine_times),
            _ => (&s.coarse, &self.coarse_times),
        };
        for i in 0..ring.len() {
            match (ring.back(i), times.back(i)) {
                (Some(v), Some(at)) if at <= t => return s.widen(k, v[k], gauge),
                (Some(_), Some(_)) => continue,
                _ => break,
            }
        }
        0
    }

    /// Value `k` of `s` at `count` instants `incr_ms` apart, the newest at `end_ms`.
    pub fn samples<const N: usize>(
        &self,
        s: &Series<N>,
        k: usize,
        gauge: bool,
        end_ms: u64,
        incr_ms: u64,
        count: usize,
    ) -> Samples {
        let points = (0..count as u64)
            .map_while(|i| end_ms.checked_sub(i * incr_ms))
            .map(|t| (t, self.value_at(s, k, t, gauge)))
            .collect();
        Samples { points }
    }
    /// Unix ms of the newest sample (0 before the first).
    pub fn newest_ms(&self) -> u64 {
        self.fine_times.back(0).unwrap_or(0)
    }
    /// Heap bytes of the whole history (snapshots, time rings and map entries, estimated for
    /// the maps as key bytes plus entry overhead).
    pub fn heap_bytes(&self) -> usize {
        let entry = |k: &String| k.capacity() + std::mem::size_of::<String>() + 16;
        self.fine_times.heap_bytes()
            + self.coarse_times.heap_bytes()
            + self.global.heap_bytes()
            + self
                .queues
                .iter()
                .map(|(k, s)| entry(k) + std::mem::size_of::<Series<10>>() + s.heap_bytes())
                .sum::<usize>()
            + self
                .exchanges
                .iter()
                .map(|(k, s)| entry(k) + std::mem::size_of::<Series<2>>() + s.heap_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest() {
        let mut r = Ring::new(3);
        assert_eq!(r.back(0), None);
        for i in 1..=5 {
            r.push(i);
        }
        assert_eq!((r.back(0), r.back(1), r.back(2), r.back(3)), (Some(5), Some(4), Some(3), None));
        assert_eq!(r.heap_bytes(), 3 * 4);
    }

    #[test]
    fn samples_step_back_through_fine_then_coarse() {
        let mut h = History::default();
        let step = 5_000;
        // 2 hours of samples: a queue published into one message per sample, depth = tick % 7.
        let ticks = 1440u64;
        for i in 0..ticks {
            h.begin(1_000_000 + i * step);
            let t = Totals { published: i + 1, ..Totals::default() };
            h.record_queue("q", queue_values(i % 7, 0, &t));
            h.record_global(global_values(0, 0, &t));
        }
        let q = &h.queues["q"];
        let end = h.newest_ms();
        // Recent: exact, one per sample.
        let s = h.samples(q, 2, false, end, step, 3);
        assert_eq!(s.points, vec![(end, ticks), (end - step, ticks - 1), (end - 2 * step, ticks - 2)]);
        let d = h.samples(q, 0, true, end, step, 2);
        assert_eq!(d.points[0].1, (ticks - 1) % 7);
        // 30 minutes ago: beyond the fine ring, so the minute snapshot at or before it.
        let t = end - 1_800_000;
        let v = h.samples(q, 2, false, t, step, 1).points[0].1;
        let exact = (t - 1_000_000) / step + 1;
        assert!(v <= exact && exact - v < COARSE_EVERY, "{v} vs {exact}");
        // Beyond the hour: 0 (nothing kept).
        assert_eq!(h.samples(q, 2, false, end - 2 * 3_600_000, step, 1).points[0].1, 0);
        // The global series is exact over the hour.
        let g = h.samples(&h.global, 2, false, end - 3_000_000, step, 1).points[0].1;
        assert_eq!(g, ticks - 600);
    }

    #[test]
    fn counters_survive_wrapping() {
        let mut h = History::default();
        let base = u32::MAX as u64 - 1;
        for i in 0..4u64 {
            h.begin(10_000 + i * 5_000);
            let t = Totals { published: base + i * 1000, ..Totals::default() };
            h.record_queue("q", queue_values(0, 0, &t));
        }
        let s = h.samples(&h.queues["q"], 2, false, 25_000, 5_000, 4);
        assert_eq!(s.points.iter().map(|p| p.1).collect::<Vec<_>>(), vec![base + 3000, base + 2000, base + 1000, base]);
    }

    #[test]
    fn memory_per_queue_is_bounded() {
        let mut h = History::default();
        let mut live = std::collections::HashSet::new();
        for q in 0..100 {
            live.insert(format!("q//queue-{q:04}"));
        }
        // Two hours: every ring full.
        for i in 0..1440u64 {
            h.begin(i * 5_000);
            for k in &live {
                h.record_queue(k, queue_values(i, i, &Totals { published: i, ..Totals::default() }));
            }
            h.retain(&live);
        }
        let snapshots = (FINE_POINTS + COARSE_POINTS) * 10 * 4;
        assert_eq!(snapshots, 7_200);
        let per_queue = (h.heap_bytes() - h.fine_times.heap_bytes() - h.coarse_times.heap_bytes()) / 100;
        assert!(per_queue < snapshots + 400, "{per_queue} bytes per queue");
        // Deleted queues are forgotten.
        h.retain(&std::collections::HashSet::new());
        assert!(h.queues.is_empty());
    }

    #[test]
    fn idle_empty_queues_have_no_series() {
        let mut h = History::default();
        for i in 0..10u64 {
            h.begin(i * 5_000);
            h.record_queue("q//idle", queue_values(0, 0, &Totals::default()));
            h.record_exchange("x//idle", [0, 0]);
        }
        assert!(h.queues.is_empty() && h.exchanges.is_empty());
        h.begin(50_000);
        h.record_queue("q//idle", queue_values(1, 0, &Totals::default()));
        assert_eq!(h.queues.len(), 1);
    }
}
