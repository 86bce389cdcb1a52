//! The ready messages of a queue: one FIFO per priority level (one level for a non-priority queue),
//! with the count and body bytes kept alongside, and the paging of bodies to the message store.
//!
//! # Invariants
//! - Each level is ordered by `seq`; `pop_front` takes from the highest non-empty level.
//! - `len` and `bytes` always equal the sums over the levels (paged-out bodies included);
//!   `mem_bytes` is the part of `bytes` held in memory, `mem_len` the number of messages whose body
//!   is in memory.
//! - A message leaves `Ready` with its body in memory: a paged-out head is read back (with the
//!   paged messages after it, in one read) before it is taken.
//! - Paging out keeps the first [`PAGE_KEEP_MESSAGES`] (and at most [`PAGE_KEEP_BYTES`]) of each
//!   level in memory and pages the rest, walking back from the tail to the first one already paged
//!   (or, without memory pressure, to the first transient one), so a sweep costs what arrived since
//!   the last one, not the queue's length. Requeued messages can land in front of paged ones
//!   (`scattered`): then, under memory pressure, the next sweeps walk the whole level, until
//!   nothing beyond the window is left in memory.
use super::chunked::ChunkDeque;
use crate::message::QueuedMsg;
use crate::store::{Store, PAGE_KEEP_BYTES, PAGE_KEEP_MESSAGES, PAGE_SWEEP_MESSAGES, PAGE_TRANSIENT_ABOVE_MESSAGES};
use std::sync::Arc;

/// Memory a ready message takes besides its body, as the memory alarm counts it: its queue entry
/// (40 bytes), its `Arc<Message>` (160) and the frame bytes around the body that stay alive with it
/// in the read buffer (about 60 for a short routing key). Measured: 290 bytes of RSS per queued
/// 16-byte message. Without it, a queue of small messages held 18 times what the alarm counted.
pub const QUEUED_MESSAGE_OVERHEAD: usize = 256;

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
    /// Persistent messages (`delivery_mode = 2`), and their body bytes (management API).
    persistent: (usize, usize),
    /// The message store, when the broker has one (paging).
    store: Option<Arc<Store>>,
    /// Messages in memory may sit in front of paged ones (a requeue put them back there), where a
    /// walk from the tail stops before reaching them.
    scattered: bool,
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
            persistent: (0, 0),
            store,
            scattered: false,
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
    /// What the memory alarm counts for these messages: the bodies in memory, plus
    /// [`QUEUED_MESSAGE_OVERHEAD`] for each message whose body is in memory.
    pub fn mem_footprint(&self) -> usize {
        self.mem_bytes + self.mem_len * QUEUED_MESSAGE_OVERHEAD
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
                    self.mem_bytes += msg.body.len();
                    self.mem_len += 1;
                    m.msg = Arc::new(msg);
                    if let Some(d) = &mut m.disk {
                        d.paged = false;
                    }
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
    /// Page bodies out beyond the in-memory window: persistent ones whose record is written; under
    /// memory `pressure`, or once the queue holds more than [`PAGE_TRANSIENT_ABOVE_MESSAGES`],
    /// transient ones too: messages without a record get one first (and are paged on a later
    /// call). At most [`PAGE_SWEEP_MESSAGES`] per level are handled per call, oldest first. `key`
    /// identifies the queue in records. Returns the bytes freed.
    pub fn page_out(&mut self, pressure: bool, key: u64) -> usize {
        let Some(store) = self.store.clone() else { return 0 };
        if self.len <= PAGE_KEEP_MESSAGES && self.mem_bytes <= PAGE_KEEP_BYTES {
            return 0;
        }
        let transient = pressure || self.len > PAGE_TRANSIENT_ABOVE_MESSAGES;
        let avg = (self.bytes / self.len.max(1)).max(1);
        let keep = PAGE_KEEP_MESSAGES.min(PAGE_KEEP_BYTES / avg).max(1);
        let mut freed = 0;
        // Under pressure, after a requeue: every message beyond the window is looked at.
        let full = self.scattered && pressure;
        let mut left = 0;
        for q in self.levels.iter_mut() {
            let beyond = q.len().saturating_sub(keep);
            // The messages still in memory beyond the window: from the tail back to the first
            // paged one (everything older is paged already), or, without memory pressure, to
            // the first transient one (those stay in memory; not walked every sweep).
            let mut region: Vec<&mut QueuedMsg> = Vec::new();
            for m in q.iter_mut().rev().take(beyond) {
                if m.is_paged() {
                    if full {
                        continue;
                    }
                    break;
                }
                if m.disk.is_none() && !transient {
                    break;
                }
                region.push(m);
            }
            // Oldest first, at most a sweep's worth: what is left is newer than what this sweep
            // handles, so the next walk from the tail reaches it.
            if region.len() > PAGE_SWEEP_MESSAGES {
                let newer = region.len() - PAGE_SWEEP_MESSAGES;
                left += newer;
                region.drain(..newer);
            }
            // What this sweep only gives a record to, or cannot page yet, is still in memory.
            left += region.len();
            // Oldest first: records are appended, and so written, in queue order, so what is
            // still unpaged after this sweep (not yet written) is always newer than what was
            // paged, and the next sweep's walk from the tail reaches it before any paged message.
            // (Walking newest first left older messages whose record was not yet written behind
            // paged ones, where no later sweep looked: bodies stuck in memory, the alarm kept on.)
            for m in region.into_iter().rev() {
                if m.disk.is_none() {
                    let expires = 0; // a paged transient message is not recovered; its expiry stays in memory
                    let (d, _) = store.append(crate::store::log::KIND_PAGED, key, &m.msg, expires, m.priority);
                    m.disk = Some(Box::new(d));
                    continue;
                }
                let n = store.page_out(m);
                let paged = m.is_paged();
                left -= (n > 0 || paged) as usize;
                self.mem_len -= paged as usize;
                freed += n;
            }
        }
        if full && left == 0 {
            self.scattered = false;
        }
        self.mem_bytes -= freed;
        freed
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
        self.scattered |= msgs.iter().any(|m| !m.is_paged());
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
        for (q, msgs) in self.levels.iter_mut().zip(per_level) {
            if msgs.is_empty() {
                continue;
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
        self.len = 0;
        self.bytes = 0;
        self.mem_bytes = 0;
        self.mem_len = 0;
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
