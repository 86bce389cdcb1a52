//! The ready messages of a queue: one FIFO per priority level (one level for a non-priority queue),
//! with the count and body bytes kept alongside, and the paging of bodies to the message store.
//!
//! # Invariants
//! - Each level is ordered by `seq`; `pop_front` takes from the highest non-empty level.
//! - `len` and `bytes` always equal the sums over the levels (paged-out bodies included);
//!   `mem_bytes` is the part of `bytes` held in memory, `mem_len` the number of messages whose body
//!   is in memory, `mem_size` their bytes in memory with their heads ([`QueuedMsg::mem_size`]).
//! - A message leaves `Ready` with its body in memory: a paged-out head is read back (with the
//!   paged messages after it, in one read) before it is taken.
//! - Paging out keeps the first [`PAGE_KEEP_MESSAGES`] (and at most [`PAGE_KEEP_BYTES`]) of each
//!   level in memory and pages the rest, oldest first, in steps of a bounded number of messages
//!   (the queue's lock is released between steps). Each level's [`Sweep`] holds where the steps
//!   stand, as seqs: every message beyond the window below `paged` is paged out (or, while
//!   transient messages are not paged, a transient one left in memory, the lowest of which is
//!   `skipped`), and every one below `recorded` has its record. So a step resumes where the last
//!   one stopped, found by a binary search, and a sweep costs what arrived since the last one, not
//!   the queue's length.
//! - Requeued messages in memory that land below `paged` are walked again (`again`), and so are
//!   the `skipped` ones once transient messages are paged (memory pressure, a long queue).
//! - Under the memory alarm ([`Pressure::Alarm`]) the window shrinks to
//!   [`PAGE_KEEP_UNDER_ALARM`] messages: the cursors go back to the new window's end, so what the
//!   wider window held is paged too. Windows alone can then never hold the alarm on.
//! - Records are appended in queue order, so they are written in queue order: a step that meets
//!   a record not yet written stops paging there, and nothing older is left unpaged behind it.
use super::chunked::ChunkDeque;
use crate::message::QueuedMsg;
use crate::store::{Store, PAGE_KEEP_BYTES, PAGE_KEEP_MESSAGES, PAGE_KEEP_UNDER_ALARM, PAGE_TRANSIENT_ABOVE_MESSAGES};
use std::sync::Arc;

/// Memory a ready message takes besides its body and head (exchange, routing key and properties,
/// counted by their length: [`QueuedMsg::mem_size`]), as the memory alarm counts it: its queue
/// entry (40 bytes), its `Message` allocation's fixed part (reference count, 24 bytes of metadata,
/// length: 40) and the allocator's size-class rounding and slack. Measured: 135-140 bytes of RSS
/// per queued 16-byte message with a 20-byte head, so about 100 besides body and head; 128 keeps
/// a margin (a large body's box and the read buffer it slices are not counted otherwise). It was
/// 256 while heads were not counted: a message with a large header table then took several times
/// what the alarm counted. An unacked message counts the same (`ConnInfo::held_bytes`).
pub const QUEUED_MESSAGE_OVERHEAD: usize = 128;

/// How hard paging presses, as the resource monitor sees memory at each tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pressure {
    /// Below the paging ratio: persistent bodies beyond the window are paged, transient ones only
    /// in a queue longer than [`PAGE_TRANSIENT_ABOVE_MESSAGES`].
    None,
    /// Past the paging ratio of the watermark: transient bodies beyond the window too.
    Paging,
    /// Past the watermark itself: transient bodies too, and the window shrinks to
    /// [`PAGE_KEEP_UNDER_ALARM`] messages. With [`PAGE_KEEP_MESSAGES`] kept per queue, a few
    /// queues of small messages under a small watermark held the alarm on by their windows alone,
    /// and their publishers stayed blocked until a consumer came.
    Alarm,
}

/// Ready messages.
pub struct Ready {
    /// FIFO per priority, index = priority.
    levels: Vec<ChunkDeque<QueuedMsg>>,
    /// Number of messages.
    len: usize,
    /// Body bytes.
    bytes: usize,
    /// Body bytes in memory (not paged out).
    mem_bytes: usize,
    /// Messages whose body is in memory (not paged out).
    mem_len: usize,
    /// Their bodies and heads (exchange, routing key, properties): what the memory alarm counts
    /// of them besides [`QUEUED_MESSAGE_OVERHEAD`] each.
    mem_size: usize,
    /// Persistent messages (`delivery_mode = 2`), and their body bytes (management API).
    persistent: (usize, usize),
    /// The message store, when the broker has one (paging).
    store: Option<Arc<Store>>,
    /// Per level (same index): where the paging sweeps stand.
    sweeps: Vec<Sweep>,
    /// The message bound of the window (messages kept in memory at the head of each level) the
    /// last step used: [`PAGE_KEEP_MESSAGES`], or [`PAGE_KEEP_UNDER_ALARM`] under the alarm. When a
    /// step's is smaller, the cursors go back to its window's end. The byte bound is not compared:
    /// it moves with the average body size, and following it would rewalk paged messages at
    /// every small drift.
    max_keep: usize,
}

impl Ready {
    /// `levels` = max priority + 1 (1 for a plain queue).
    pub fn new(levels: usize, store: Option<Arc<Store>>) -> Ready {
        Ready {
            levels: (0..levels.max(1)).map(|_| ChunkDeque::default()).collect(),
            len: 0,
            bytes: 0,
            mem_bytes: 0,
            mem_len: 0,
            mem_size: 0,
            persistent: (0, 0),
            store,
            sweeps: vec![Sweep::default(); levels.max(1)],
            max_keep: PAGE_KEEP_MESSAGES,
        }
    }
    /// Body bytes held in memory.
    pub fn mem_bytes(&self) -> usize {
        self.mem_bytes
    }
    /// Messages whose body is in memory.
    pub fn mem_len(&self) -> usize {
        self.mem_len
    }
    /// What the memory alarm counts for these messages: the bodies and heads in memory, plus
    /// [`QUEUED_MESSAGE_OVERHEAD`] for each message whose body is in memory.
    pub fn mem_footprint(&self) -> usize {
        self.mem_size + self.mem_len * QUEUED_MESSAGE_OVERHEAD
    }
    #[inline]
    fn count_in(&mut self, m: &QueuedMsg) {
        self.len += 1;
        let n = m.body_len();
        self.bytes += n;
        if m.persistent {
            self.persistent.0 += 1;
            self.persistent.1 += n;
        }
        if !m.is_paged() {
            self.mem_bytes += n;
            self.mem_len += 1;
            self.mem_size += n + m.msg.head_len();
        }
    }
    #[inline]
    fn count_out(&mut self, m: &QueuedMsg) {
        self.len -= 1;
        let n = m.body_len();
        self.bytes -= n;
        if m.persistent {
            self.persistent.0 -= 1;
            self.persistent.1 -= n;
        }
        if !m.is_paged() {
            self.mem_bytes -= n;
            self.mem_len -= 1;
            self.mem_size -= n + m.msg.head_len();
        }
    }
    /// Take the head of level `l`, reading it (and the paged messages after it) back first.
    fn take_front(&mut self, l: usize) -> Option<QueuedMsg> {
        if self.levels[l].front().is_some_and(|m| m.is_paged()) {
            self.page_in(l);
        }
        let m = self.levels[l].pop_front()?;
        self.count_out(&m);
        Some(m)
    }
    /// Read back the paged messages at the head of level `l` (up to one read's worth).
    fn page_in(&mut self, l: usize) {
        let Some(store) = self.store.clone() else { return };
        let q = &mut self.levels[l];
        let refs: Vec<(u32, u32, u32)> = q
            .iter()
            .take(crate::store::PAGE_IN_MESSAGES)
            .map_while(|m| m.disk.as_ref().filter(|d| d.paged).map(|d| (d.seg, d.off, d.len)))
            .collect();
        let mut failed = Vec::new();
        for (m, r) in q.iter_mut().zip(store.page_in(&refs)) {
            match r {
                Ok(msg) => {
                    m.msg = msg;
                    if let Some(d) = &mut m.disk {
                        d.paged = false;
                    }
                    self.mem_bytes += m.msg.body().len();
                    self.mem_len += 1;
                    self.mem_size += m.mem_size();
                }
                Err(e) => {
                    tracing::error!("message store: cannot read back a message: {e}; it is dropped");
                    failed.push(m.seq);
                }
            }
        }
        if !failed.is_empty() {
            let before = q.len();
            let (mut gone, mut gone_persistent) = (0, (0, 0));
            q.retain(|m| {
                let keep = !failed.contains(&m.seq);
                if !keep {
                    gone += m.body_len();
                    if m.persistent {
                        gone_persistent.0 += 1;
                        gone_persistent.1 += m.body_len();
                    }
                }
                keep
            });
            self.len -= before - q.len();
            self.bytes -= gone;
            self.persistent.0 -= gone_persistent.0;
            self.persistent.1 -= gone_persistent.1;
        }
    }
    /// One step of a paging sweep: page bodies out beyond the in-memory window, persistent ones
    /// whose record is written; under memory `pressure`, or once the queue holds more than
    /// [`PAGE_TRANSIENT_ABOVE_MESSAGES`], transient ones too: messages without a record get one
    /// first (and are paged by a later step, once it is written). At most `budget` messages are
    /// walked, oldest first, resuming where the last step stopped. `key` identifies the queue in
    /// records. Returns the bytes freed and whether work is left that the budget cut short.
    pub fn page_out(&mut self, pressure: Pressure, key: u64, budget: usize) -> (usize, bool) {
        let Some(store) = self.store.clone() else { return (0, false) };
        let max_keep = if pressure == Pressure::Alarm { PAGE_KEEP_UNDER_ALARM } else { PAGE_KEEP_MESSAGES };
        if self.len <= max_keep && self.mem_bytes <= PAGE_KEEP_BYTES {
            return (0, false);
        }
        let transient = pressure > Pressure::None || self.len > PAGE_TRANSIENT_ABOVE_MESSAGES;
        let avg = (self.bytes / self.len.max(1)).max(1);
        let keep = max_keep.min(PAGE_KEEP_BYTES / avg).max(1);
        let narrower = max_keep < self.max_keep;
        self.max_keep = max_keep;
        let mut walk = Walk { store: &store, key, transient, budget, freed: 0, freed_bodies: 0, paged: 0 };
        for (q, sweep) in self.levels.iter_mut().zip(self.sweeps.iter_mut()) {
            if narrower {
                // What the wider window held is beyond this one: the cursors go back to its end.
                if let Some(edge) = q.iter().nth(keep).map(|m| m.seq) {
                    sweep.paged = sweep.paged.min(edge);
                    sweep.recorded = sweep.recorded.min(edge);
                }
            }
            if transient {
                // Transient messages left in memory while they were not paged: walked again.
                if let Some(s) = sweep.skipped.take() {
                    sweep.paged = sweep.paged.min(s);
                    sweep.recorded = sweep.recorded.min(s);
                }
            }
            if !transient && self.persistent.0 == 0 && sweep.again.is_none() && sweep.recorded <= sweep.paged {
                // Nothing to page: no message has a record of its own (no persistent one, no
                // transient one given a record beyond `paged`, which only the record pass below
                // gives, up to `recorded`), and transient ones stay in memory. Not walked: a queue
                // with a consumer's usual backlog walked every message once, cold (3.5 % of a
                // fanout's broker time); the cursor stays, so they are walked once transient
                // messages are paged.
                continue;
            }
            let window = q.position(keep);
            // Requeued messages put back among paged ones first (usually a few, near the head),
            // and, when transient messages are paged, the ones in memory they pushed out of the
            // window (otherwise those are left in memory anyway: not walked at every requeue).
            if let Some((lo, hi)) = sweep.again {
                let below = if transient { sweep.paged } else { 0 };
                let (undone, next) = walk.pass(q, window, (lo, hi, below), Pass::Both, &mut sweep.skipped);
                // What is not done yet comes before what was not walked.
                sweep.again = undone.or(next).map(|lo| (lo, hi));
            }
            // Then onwards from where the last step stopped: page what is written, stopping at the
            // first message that cannot be paged yet...
            let (undone, next) = walk.pass(q, window, (sweep.paged, u64::MAX, 0), Pass::Page, &mut sweep.skipped);
            if let Some(s) = undone.or(next) {
                sweep.paged = s;
            } else if let Some(last) = q.iter().next_back() {
                sweep.paged = sweep.paged.max(last.seq + 1);
            }
            // ...and give records to the ones after it that have none yet.
            if transient {
                let from = sweep.recorded.max(sweep.paged);
                let (_, next) = walk.pass(q, window, (from, u64::MAX, 0), Pass::Record, &mut sweep.skipped);
                if let Some(s) = next {
                    sweep.recorded = s;
                } else if let Some(last) = q.iter().next_back() {
                    sweep.recorded = sweep.recorded.max(last.seq + 1);
                }
            }
        }
        self.mem_bytes -= walk.freed_bodies;
        self.mem_size -= walk.freed;
        self.mem_len -= walk.paged;
        (walk.freed, walk.budget == 0)
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    #[inline]
    fn level(&self, m: &QueuedMsg) -> usize {
        (m.priority as usize).min(self.levels.len() - 1)
    }
    #[inline]
    pub fn push_back(&mut self, m: QueuedMsg) {
        let l = self.level(&m);
        self.count_in(&m);
        self.levels[l].push_back(m);
    }
    #[inline]
    pub fn push_front(&mut self, m: QueuedMsg) {
        let l = self.level(&m);
        self.count_in(&m);
        self.levels[l].push_front(m);
    }
    #[inline]
    pub fn pop_front(&mut self) -> Option<QueuedMsg> {
        let l = self.levels.iter().rposition(|q| !q.is_empty())?;
        self.take_front(l)
    }
    /// The ready messages in delivery order (highest priority first, FIFO within a level),
    /// without taking them.
    pub fn iter(&self) -> impl Iterator<Item = &QueuedMsg> {
        self.levels.iter().rev().flat_map(|l| l.iter())
    }
    /// The newest message (the one just published), for reject-publish.
    pub fn pop_newest(&mut self, priority: u8) -> Option<QueuedMsg> {
        let l = (priority as usize).min(self.levels.len() - 1);
        let m = self.levels[l].pop_back()?;
        self.count_out(&m);
        Some(m)
    }
    /// Remove expired messages from the head of every level (RabbitMQ expires at the head only).
    pub fn expire_heads(&mut self, now: u64, out: &mut Vec<QueuedMsg>) {
        for l in 0..self.levels.len() {
            while self.levels[l].front().is_some_and(|m| m.expires_at != 0 && m.expires_at <= now) {
                match self.take_front(l) {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
        }
    }
    /// Put requeued messages back in `seq` order within their levels.
    pub fn requeue(&mut self, mut msgs: Vec<QueuedMsg>) {
        msgs.sort_by_key(|m| m.seq);
        for m in &msgs {
            self.count_in(m);
        }
        let nlevels = self.levels.len();
        let mut per_level: Vec<Vec<QueuedMsg>> = (0..nlevels).map(|_| Vec::new()).collect();
        for m in msgs {
            let l = (m.priority as usize).min(nlevels - 1);
            per_level[l].push(m);
        }
        for ((q, msgs), sweep) in self.levels.iter_mut().zip(per_level).zip(self.sweeps.iter_mut()) {
            if msgs.is_empty() {
                continue;
            }
            // Messages in memory that go back behind the sweep's cursor: walked again.
            let mut in_memory = msgs.iter().filter(|m| !m.is_paged() && m.seq < sweep.paged).map(|m| m.seq);
            if let Some(lo) = in_memory.next() {
                let hi = in_memory.next_back().unwrap_or(lo);
                sweep.again = Some(sweep.again.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
            let all_before = q.front().is_none_or(|f| msgs.last().is_some_and(|l| l.seq < f.seq));
            if all_before {
                for m in msgs.into_iter().rev() {
                    q.push_front(m);
                }
                continue;
            }
            let old = std::mem::take(q);
            let mut merged = ChunkDeque::default();
            let mut a = old.into_iter().peekable();
            let mut b = msgs.into_iter().peekable();
            loop {
                let take_a = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => x.seq < y.seq,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                if let Some(m) = if take_a { a.next() } else { b.next() } {
                    merged.push_back(m);
                }
            }
            *q = merged;
        }
    }
    /// Take every message out (counts reset), to be dropped by the caller outside the queue lock.
    pub fn take_all(&mut self) -> (usize, Vec<ChunkDeque<QueuedMsg>>) {
        let n = self.len;
        let empty: Vec<ChunkDeque<QueuedMsg>> = (0..self.levels.len()).map(|_| ChunkDeque::default()).collect();
        let taken = std::mem::replace(&mut self.levels, empty);
        self.sweeps.iter_mut().for_each(|s| *s = Sweep::default());
        self.len = 0;
        self.bytes = 0;
        self.mem_bytes = 0;
        self.mem_len = 0;
        self.mem_size = 0;
        self.persistent = (0, 0);
        (n, taken)
    }
    /// Persistent messages and their body bytes.
    pub fn persistent(&self) -> (usize, usize) {
        self.persistent
    }
    /// The oldest ready message (any priority level), for `head_message_timestamp`.
    /// The earliest expiry time (`now_ms` clock) among the heads of the levels, if any head
    /// expires: when the queue's expiry timer must next fire.
    pub fn next_head_expiry(&self) -> Option<u64> {
        self.levels.iter().filter_map(|l| l.front()).map(|m| m.expires_at).filter(|t| *t != 0).min()
    }

    pub fn head(&self) -> Option<&QueuedMsg> {
        self.levels.iter().rev().find_map(|l| l.front())
    }
}

/// Where the paging sweeps of one priority level stand (seqs: the level is ordered by them).
#[derive(Clone, Copy, Debug, Default)]
struct Sweep {
    /// Every message beyond the in-memory window with a lower seq is done: paged out, or a
    /// transient one left in memory while transient messages were not paged (see `skipped`);
    /// except those in `again`.
    paged: u64,
    /// Every message with a lower seq that is to get a record has one.
    recorded: u64,
    /// Requeued messages in memory that went back among done ones: seqs `lo..=hi` to walk again,
    /// and the messages in memory after them (pushed out of the window by them).
    again: Option<(u64, u64)>,
    /// The lowest seq of a transient message walked past (left in memory) while transient messages
    /// were not paged: the cursors go back to it once they are.
    skipped: Option<u64>,
}

/// What one pass over a level does to the messages it walks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Page out written records; stop at the first message that cannot be paged yet.
    Page,
    /// Give records to transient messages that have none; walk past the others.
    Record,
    /// Both, without stopping (a short range walked again until everything in it is done).
    Both,
}

/// One step of a paging sweep over a queue's levels: what it may still walk and what it did.
struct Walk<'a> {
    store: &'a Arc<Store>,
    /// The queue, in records.
    key: u64,
    /// Transient messages are paged too.
    transient: bool,
    /// Messages this step may still walk.
    budget: usize,
    /// Bytes paged out (bodies and heads, [`QueuedMsg::mem_size`]).
    freed: usize,
    /// The bodies' part of `freed`.
    freed_bodies: usize,
    /// Messages paged out.
    paged: usize,
}

impl Walk<'_> {
    /// Walk level `q` from seq `from` (never inside the window, which ends at `window`) up to seq
    /// `to`, and on past it while messages are in memory with seqs below `below` (after a requeue,
    /// the messages it pushed out of the window: ones read back at the head, kept in memory
    /// there). Returns the seq of the first message walked that is not done (`Page` stops there;
    /// `Both` goes on), and the seq of the first one not walked for lack of budget (`None`: walked
    /// to `to` or the end).
    fn pass(
        &mut self,
        q: &mut ChunkDeque<QueuedMsg>,
        window: crate::queue::chunked::Pos,
        (from, to, below): (u64, u64, u64),
        pass: Pass,
        skipped: &mut Option<u64>,
    ) -> (Option<u64>, Option<u64>) {
        let start = q.partition_point(|m| m.seq < from).max(window);
        let mut undone = None;
        for m in q.iter_mut_from(start) {
            if m.seq > to && (m.is_paged() || m.seq >= below) {
                break;
            }
            if self.budget == 0 {
                return (undone, Some(m.seq));
            }
            self.budget -= 1;
            if m.is_paged() {
                continue;
            }
            if m.disk.is_none() {
                if !self.transient {
                    // Left in memory: walked again if transient messages come to be paged.
                    *skipped = Some(skipped.map_or(m.seq, |s| s.min(m.seq)));
                    continue;
                }
                if pass == Pass::Page {
                    return (Some(m.seq), None);
                }
                // A paged transient message is not recovered; its expiry stays in memory.
                let (d, _) = self.store.append(crate::store::log::KIND_PAGED, self.key, &m.msg, 0, m.priority);
                m.disk = Some(Box::new(d));
                undone.get_or_insert(m.seq);
                continue;
            }
            if pass == Pass::Record {
                continue;
            }
            let body = m.msg.body().len();
            self.freed += self.store.page_out(m);
            if m.is_paged() {
                self.freed_bodies += body;
                self.paged += 1;
            } else if pass == Pass::Page {
                // Its record is not written yet: records are written in append order, so nothing
                // after it can be paged either.
                return (Some(m.seq), None);
            } else {
                undone.get_or_insert(m.seq);
            }
        }
        (undone, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;
    use std::time::{Duration, Instant};

    /// A level of `n` transient messages (seqs 0..n, each body its seq) over a fresh store.
    fn queue_of(n: u64) -> (Ready, Arc<Store>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("warren-ready-{}-{}", std::process::id(), rand::random::<u32>()));
        let store = Store::open(&dir).expect("open");
        store.recover(|_| true, |_, _| {}).expect("recover");
        store.start().expect("start");
        let mut r = Ready::new(1, Some(store.clone()));
        (0..n).for_each(|s| r.push_back(msg(s)));
        (r, store, dir)
    }

    fn close(r: Ready, store: Arc<Store>, dir: std::path::PathBuf) {
        drop(r);
        store.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// What [`msg`]'s messages hold in memory: an 8-byte body and empty properties.
    const MSG_MEM_SIZE: usize = 8 + warren_protocol::properties::EMPTY_PROPERTIES.len();

    fn msg(seq: u64) -> QueuedMsg {
        let body = Bytes::from(seq.to_be_bytes().to_vec());
        let props = Bytes::from_static(warren_protocol::properties::EMPTY_PROPERTIES);
        let m = Message::new(Default::default(), Default::default(), props, body).expect("message");
        QueuedMsg {
            msg: m,
            seq,
            redelivered: false,
            priority: 0,
            expires_at: 0,
            deliveries: 0,
            persistent: false,
            disk: None,
        }
    }

    /// Steps of `budget` until nothing beyond the window is in memory (records are written by the
    /// store's thread meanwhile). Every step but the last reports more work.
    fn sweep_until_window_only(r: &mut Ready, pressure: Pressure, budget: usize) {
        let keep = if pressure == Pressure::Alarm { PAGE_KEEP_UNDER_ALARM } else { PAGE_KEEP_MESSAGES };
        sweep_until_in_memory(r, pressure, budget, keep);
    }

    /// Steps of `budget` until at most `keep` messages are in memory.
    fn sweep_until_in_memory(r: &mut Ready, pressure: Pressure, budget: usize, keep: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.mem_len() > keep.min(r.len()) {
            assert!(Instant::now() < deadline, "{} of {} still in memory", r.mem_len(), r.len());
            if !r.page_out(pressure, 1, budget).1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn drain_in_order(r: &mut Ready, want: impl Iterator<Item = u64>) {
        for seq in want {
            let m = r.pop_front().expect("a message");
            assert_eq!(m.seq, seq);
            assert_eq!(m.msg.body(), seq.to_be_bytes(), "body of {seq}");
        }
        assert!(r.is_empty());
        // Whatever was paged out and read back on the way, the counts come back to nothing.
        assert_eq!((r.mem_footprint(), r.mem_bytes(), r.mem_len()), (0, 0, 0));
    }

    #[test]
    fn steps_resume_and_page_everything_beyond_the_window() {
        let n = 3 * PAGE_KEEP_MESSAGES as u64;
        let (mut r, store, dir) = queue_of(n);
        // Without pressure, a short queue keeps its transient messages in memory, without
        // walking them (a step that walked them would stop at its budget).
        assert!(!r.page_out(Pressure::None, 1, 1000).1, "a sweep with nothing to page walked the queue");
        assert_eq!(r.mem_len(), n as usize);
        // Under pressure, in steps of at most 1000 (the ones walked past before come back).
        assert!(r.page_out(Pressure::Paging, 1, 1000).1, "a step stops at its budget");
        sweep_until_window_only(&mut r, Pressure::Paging, 1000);
        // More arrive: the next steps start where the last stopped.
        (n..n + 5000).for_each(|s| r.push_back(msg(s)));
        sweep_until_window_only(&mut r, Pressure::Paging, 1000);
        assert_eq!(r.mem_footprint(), PAGE_KEEP_MESSAGES * (MSG_MEM_SIZE + QUEUED_MESSAGE_OVERHEAD));
        drain_in_order(&mut r, 0..n + 5000);
        close(r, store, dir);
    }

    #[test]
    fn the_window_shrinks_under_the_alarm_and_grows_back() {
        let n = 2 * PAGE_KEEP_MESSAGES as u64;
        let (mut r, store, dir) = queue_of(n);
        sweep_until_window_only(&mut r, Pressure::Paging, 4096);
        assert_eq!(r.mem_len(), PAGE_KEEP_MESSAGES);
        // The alarm: what the wide window held beyond the narrow one is paged too.
        sweep_until_window_only(&mut r, Pressure::Alarm, 4096);
        assert_eq!(r.mem_footprint(), PAGE_KEEP_UNDER_ALARM * (MSG_MEM_SIZE + QUEUED_MESSAGE_OVERHEAD));
        // Cleared: the wide window's paged messages are not read back before a consumer takes
        // them, and new ones beyond it are paged as before.
        (n..n + 100).for_each(|s| r.push_back(msg(s)));
        sweep_until_in_memory(&mut r, Pressure::Paging, 4096, PAGE_KEEP_UNDER_ALARM);
        drain_in_order(&mut r, 0..n + 100);
        close(r, store, dir);
    }

    #[test]
    fn a_drifting_average_body_size_does_not_rewalk_paged_messages() {
        // 64 KiB bodies: the window is bounded by bytes (256 messages), not by count.
        let big = |seq: u64, len: usize| {
            let mut m = msg(seq);
            let mut body = vec![0u8; len];
            body[..8].copy_from_slice(&seq.to_be_bytes());
            let props = Bytes::from_static(warren_protocol::properties::EMPTY_PROPERTIES);
            m.msg = Message::new(Default::default(), Default::default(), props, Bytes::from(body)).expect("message");
            m
        };
        let (mut r, store, dir) = queue_of(0);
        (0..600).for_each(|s| r.push_back(big(s, 64 * 1024)));
        sweep_until_in_memory(&mut r, Pressure::Paging, 100, PAGE_KEEP_BYTES / (64 * 1024));
        while r.page_out(Pressure::Paging, 1, 100).1 {}
        // A larger one moves the average up, so the byte bound drops by one message: the step
        // walks the new message only, not the 344 paged ones behind the window (more than its
        // budget of 100).
        r.push_back(big(600, 80 * 1024));
        assert!(!r.page_out(Pressure::Paging, 1, 100).1, "paged messages walked again");
        for seq in 0..601u64 {
            let m = r.pop_front().expect("a message");
            assert_eq!((m.seq, &m.msg.body()[..8]), (seq, &seq.to_be_bytes()[..]));
        }
        close(r, store, dir);
    }

    #[test]
    fn requeued_messages_behind_the_sweep_are_paged_again() {
        let n = 4 * PAGE_KEEP_MESSAGES as u64;
        let (mut r, store, dir) = queue_of(n);
        sweep_until_window_only(&mut r, Pressure::Paging, 4096);
        // A consumer takes more than the window (read back from disk), then they are requeued:
        // the ones beyond the window are in memory below the sweep's cursor.
        let taken: Vec<QueuedMsg> = (0..PAGE_KEEP_MESSAGES + 3000).map(|_| r.pop_front().expect("ready")).collect();
        sweep_until_window_only(&mut r, Pressure::Paging, 4096);
        let (before, back) = (r.mem_len(), taken.len());
        r.requeue(taken);
        assert_eq!(r.mem_len(), before + back);
        sweep_until_window_only(&mut r, Pressure::Paging, 4096);
        drain_in_order(&mut r, 0..n);
        close(r, store, dir);
    }
}
