//! The per-connection outbound buffer: every task that has frames for a client (the connection's own
//! reader, any queue delivering to one of its consumers) encodes them here; the connection's writer
//! task takes everything accumulated and writes it with one vectored syscall.
//!
//! Runs in: producers' tasks (append), the writer task (take + write).
//!
//! # Invariants
//! - Frames are appended whole under the lock, so frames of concurrent producers never interleave.
//!   A run ([`Outbound::run`]) appends several deliveries under one hold of the lock and raises
//!   `len` once, before it releases the lock.
//! - `len` counts appended bytes before the lock is released, so it is never less than what the
//!   writer (which takes under the same lock) has yet to report written.
//! - The writer is woken only on the empty -> non-empty transition (one wakeup per batch, not per frame).
//! - Large bodies are not copied: they are pushed as their own `Bytes` chunk between the small frames.
//! - Queues that skipped a consumer because this buffer was over [`HIGH_WATER`] are remembered in
//!   `waiting` and re-driven by the writer once the buffer falls under [`LOW_WATER`]. A queue never
//!   waits for a connection.
use crate::message::Message;
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::Notify;
use warren_protocol::constants::FRAME_END;
use warren_protocol::{fast, frame};

/// Above this many pending bytes, queues stop delivering to this connection's consumers and the
/// connection stops reading its own socket (TCP pushes back on the client).
pub const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Below this many pending bytes, the writer re-drives the queues that stopped at [`HIGH_WATER`].
pub const LOW_WATER: usize = 1024 * 1024;
/// Bodies at least this large are queued as their own chunk rather than copied into the buffer.
pub const LARGE_BODY: usize = 16 * 1024;
/// Capacity of the small-frame buffer of a busy connection.
const BUF_CAPACITY: usize = 64 * 1024;
/// Capacity of the small-frame buffer of a new or quiet connection (idle connections stay small).
const MIN_BUF_CAPACITY: usize = 512;

/// What waits for this buffer to drain: a queue that skipped a consumer of this connection
/// (the writer calls `redrive` once the buffer is under [`LOW_WATER`]). A trait, so the outbound
/// buffer (below the queue layer) knows nothing of queues.
pub trait Redrive: Send + Sync {
    /// Deliver again to consumers that have credit.
    fn redrive(&self);
}

/// Room kept for the method and header frames of a delivery besides its body and properties
/// (basic.deliver with a consumer tag, exchange and routing key of up to 255 bytes each).
const DELIVERY_FRAMES_ROOM: usize = 1024;
/// Room kept for the frames of one [`Outbound::write`] (acks, confirms, replies; a larger one
/// still fits, by growing the buffer).
const WRITE_ROOM: usize = 256;

/// Frames waiting for the writer.
struct Pending {
    /// Chunks complete and ordered before `cur`.
    chunks: Vec<Bytes>,
    /// Small frames appended since the last chunk boundary.
    cur: BytesMut,
}

impl Pending {
    /// Make room for `need` more bytes in `cur` without copying what it holds: a buffer that
    /// cannot take them becomes a chunk and a new one twice its size starts (up to
    /// [`BUF_CAPACITY`]), so a quiet connection's buffer stays small and a burst grows it as
    /// doubling did. Growing `cur` in place copied it whole at each doubling while the writer
    /// fell behind (up to [`HIGH_WATER`]): about 5 % of the broker's instructions at 2.6 M msgs/s
    /// end to end.
    #[inline]
    fn room(&mut self, need: usize) {
        let capacity = self.cur.capacity();
        if capacity - self.cur.len() < need && !self.cur.is_empty() {
            let full = self.cur.split().freeze();
            self.chunks.push(full);
            self.cur.reserve(need.max((capacity * 2).min(BUF_CAPACITY)));
        }
    }

    /// Append a whole delivery (see [`Outbound::write_content`]); returns the bytes added.
    #[inline]
    fn content(&mut self, channel: u16, method: impl FnOnce(&mut BytesMut), msg: &Message, frame_max: u32) -> usize {
        let body = msg.body();
        let copied = if msg.large_body().is_some() && body.len() >= LARGE_BODY { 0 } else { body.len() };
        self.room(DELIVERY_FRAMES_ROOM + msg.properties_bytes().len() + copied);
        let before_cur = self.cur.len();
        let mut moved = 0;
        method(&mut self.cur);
        fast::header(&mut self.cur, channel, body.len() as u64, msg.properties_bytes());
        match msg.large_body() {
            Some(shared) if body.len() >= LARGE_BODY => {
                let chunk = fast::max_body_chunk(frame_max);
                let mut off = 0;
                while off < body.len() {
                    let end = (off + chunk).min(body.len());
                    let at = frame::begin(&mut self.cur, frame::FrameType::Body, channel);
                    let size = (end - off) as u32;
                    self.cur[at + 3..at + 7].copy_from_slice(&size.to_be_bytes());
                    let head = self.cur.split().freeze();
                    moved += head.len();
                    self.chunks.push(head);
                    self.chunks.push(shared.slice(off..end));
                    moved += end - off;
                    self.cur.put_u8(FRAME_END);
                    off = end;
                }
            }
            _ => fast::body(&mut self.cur, channel, body, frame_max),
        }
        self.cur.len() + moved - before_cur
    }
}

/// A run of appends under one lock of the buffer ([`Outbound::run`]): the pending count is raised
/// once, when the run ends (dropped), and the writer woken then if the buffer was empty.
pub struct Run<'a> {
    /// The buffer appended to.
    out: &'a Outbound,
    /// Its lock, held for the run (`None` when the connection is closing, and while dropping).
    p: Option<parking_lot::MutexGuard<'a, Pending>>,
    /// Negotiated frame_max, read once.
    frame_max: u32,
    /// Pending bytes when the run began.
    before: usize,
    /// Bytes appended by the run so far.
    added: usize,
}

impl Run<'_> {
    /// Append a whole delivery, as [`Outbound::write_content`].
    #[inline]
    pub fn content(&mut self, channel: u16, method: impl FnOnce(&mut BytesMut), msg: &Message) {
        if let Some(p) = self.p.as_mut() {
            self.added += p.content(channel, method, msg, self.frame_max);
        }
    }

    /// Whether the buffer, with this run's appends, is over [`HIGH_WATER`] (the writer may have
    /// taken some since the run began: then this errs high, and the queue waits for the drain).
    #[inline]
    pub fn over_high_water(&self) -> bool {
        self.before + self.added > HIGH_WATER
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.p.take() {
            if self.added > 0 {
                self.out.added(p, self.added);
            }
        }
    }
}

/// Shared outbound state of one connection.
pub struct Outbound {
    /// The frames themselves.
    pending: Mutex<Pending>,
    /// Bytes pending (chunks + cur), readable without the lock.
    len: AtomicUsize,
    /// Wakes the writer.
    wake: Notify,
    /// Wakes a reader waiting for the buffer to drain below [`HIGH_WATER`].
    pub drained: Notify,
    /// Negotiated frame_max (set after connection.tune-ok).
    pub frame_max: AtomicU32,
    /// Set when the connection is closing: appends are dropped.
    closed: AtomicBool,
    /// Queues to re-drive when the buffer drains.
    waiting: Mutex<Vec<Weak<dyn Redrive>>>,
    /// Set while a reply waits for the disk (a declare-ok before its definitions write, a
    /// tx.commit-ok before its fsync): the writer sends nothing until it is released.
    held: AtomicBool,
}

impl Outbound {
    pub fn new(frame_max: u32) -> Arc<Outbound> {
        Arc::new(Outbound {
            pending: Mutex::new(Pending { chunks: Vec::new(), cur: BytesMut::with_capacity(MIN_BUF_CAPACITY) }),
            len: AtomicUsize::new(0),
            wake: Notify::new(),
            drained: Notify::new(),
            frame_max: AtomicU32::new(frame_max),
            closed: AtomicBool::new(false),
            waiting: Mutex::new(Vec::new()),
            held: AtomicBool::new(false),
        })
    }

    /// Append frames encoded by `f`.
    #[inline]
    pub fn write(&self, f: impl FnOnce(&mut BytesMut)) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut p = self.pending.lock();
        p.room(WRITE_ROOM);
        let before = p.cur.len();
        f(&mut p.cur);
        let added = p.cur.len() - before;
        self.added(p, added);
    }

    /// Count `n` appended bytes while the lock that appended them is still held (so the writer,
    /// which takes under that lock, never writes bytes not yet counted: `len` cannot go below 0),
    /// then release it and wake the writer if the buffer was empty.
    #[inline]
    fn added(&self, p: parking_lot::MutexGuard<'_, Pending>, n: usize) {
        let was_empty = self.len.fetch_add(n, Ordering::AcqRel) == 0;
        drop(p);
        if was_empty && n > 0 {
            self.wake.notify_one();
        }
    }

    /// Append a whole message delivery: method frame (by `method`), content header and body frames
    /// (a large body as shared slices, written without a copy; a smaller one copied).
    #[inline]
    pub fn write_content(&self, channel: u16, method: impl FnOnce(&mut BytesMut), msg: &Message) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let frame_max = self.frame_max.load(Ordering::Relaxed);
        let mut p = self.pending.lock();
        let added = p.content(channel, method, msg, frame_max);
        self.added(p, added);
    }

    /// Hold the buffer for a run of appends ([`Run::content`]): one lock, and one update of the
    /// pending count, for all of them. Once the connection is closing, the run appends nothing.
    #[inline]
    pub fn run(&self) -> Run<'_> {
        let frame_max = self.frame_max.load(Ordering::Relaxed);
        let p = (!self.closed.load(Ordering::Relaxed)).then(|| self.pending.lock());
        let before = self.len.load(Ordering::Acquire);
        Run { out: self, p, frame_max, before, added: 0 }
    }

    /// Bytes waiting to be written.
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn over_high_water(&self) -> bool {
        self.len() > HIGH_WATER
    }

    /// Remember a queue to re-drive when the buffer drains.
    pub fn wait_for_drain<R: Redrive + 'static>(&self, q: &Arc<R>) {
        let mut w = self.waiting.lock();
        let addr = Arc::as_ptr(q) as *const ();
        if !w.iter().any(|x| x.as_ptr() as *const () == addr) {
            let weak: Weak<dyn Redrive> = Arc::downgrade(q) as Weak<dyn Redrive>;
            w.push(weak);
        }
    }

    /// Writer side: wait until something is pending (and not held).
    pub async fn ready(&self) {
        if self.is_empty() || self.held.load(Ordering::Acquire) {
            self.wake.notified().await;
        }
    }

    /// Hold everything appended from now on (and before) until [`Outbound::release`].
    pub fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }
    /// Let the writer send again.
    pub fn release(&self) {
        self.held.store(false, Ordering::Release);
        self.wake.notify_one();
    }

    /// Writer side: take every pending chunk, in order (nothing while held).
    pub fn take(&self, into: &mut Vec<Bytes>) -> usize {
        if self.held.load(Ordering::Acquire) && !self.closed.load(Ordering::Relaxed) {
            return 0;
        }
        let mut p = self.pending.lock();
        into.append(&mut p.chunks);
        if !p.cur.is_empty() {
            let b = p.cur.split().freeze();
            into.push(b);
        }
        // Room for about twice what this batch held: busy connections get BUF_CAPACITY, quiet
        // ones stay small.
        let taken: usize = into.iter().map(|b| b.len()).sum();
        let want = (taken * 2).clamp(MIN_BUF_CAPACITY, BUF_CAPACITY);
        if p.cur.capacity() < want / 4 {
            p.cur.reserve(want);
        }
        taken
    }

    /// Writer side: `n` bytes were written.
    pub fn written(&self, n: usize) {
        let before = self.len.fetch_sub(n, Ordering::AcqRel);
        let now = before - n;
        if before > LOW_WATER && now <= LOW_WATER || now == 0 {
            self.drained.notify_waiters();
        }
        if now <= LOW_WATER {
            let waiting = std::mem::take(&mut *self.waiting.lock());
            for q in waiting.iter().filter_map(Weak::upgrade) {
                q.redrive();
            }
        }
    }

    /// Stop accepting frames (the connection is going away).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        self.drained.notify_waiters();
    }
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
    /// Wake the writer even if nothing is pending (e.g. to make it notice `close`).
    pub fn kick(&self) {
        self.wake.notify_one();
    }
}
