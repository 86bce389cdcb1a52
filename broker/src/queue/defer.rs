//! Deliveries deferred to the end of a reader's batch: while a connection's reader handles the
//! frames of one read, a publish to a queue whose one consumer could take it at once leaves it
//! queued and names the queue here; when the batch ends, each named queue is driven once and hands
//! its consumer everything the batch published as runs (`Queue::drain_runs`): one lock of the
//! consumer's channel and of its connection's buffer per run of messages, not per message.
//!
//! Runs in: a connection's reader task, inside its synchronous handling of one read's frames
//! (`Reader::handle_frames`), and in whatever that calls (routing, dead-lettering, the firehose).
//!
//! # Invariants
//! - Deferral is on only between [`begin`] and its guard's drop, which never spans an await: the
//!   state is the thread's, and no other task runs on the thread meanwhile.
//! - A queue is in the list at most once: its `drive_pending` is set (under its lock) when it is
//!   added and cleared (under its lock) when it is driven.
//! - Every queue in the list is driven before the guard's drop returns (also on an early return
//!   or an unwind), including queues added while driving (dead letters, trace copies).
//! - What a deferral changes is only when, within a run of publishes, a message leaves the queue:
//!   every publish still reaches the queue in order, confirms and returns are decided as before,
//!   and the deferred queues are driven ([`flush`]) before any other frame of the batch is handled
//!   (which then defers nothing: [`outside`]) and before an error closes a channel or the
//!   connection, so every reply the client gets after a publish still comes after that publish's
//!   deliveries (a passive queue.declare as a barrier, a tx.commit-ok). Confirms are sent after
//!   the batch, so after the drive too.
use super::Queue;
use std::cell::RefCell;
use std::sync::Arc;

/// This thread's deferral state.
#[derive(Default)]
struct Deferred {
    /// Between [`begin`] and the guard's drop.
    active: bool,
    /// Queues to drive when the batch ends.
    queues: Vec<Arc<Queue>>,
}

thread_local! {
    static DEFERRED: RefCell<Deferred> = RefCell::new(Deferred::default());
}

/// Ends the batch when dropped: drives every deferred queue.
pub struct Batch {
    /// Whether this guard began the batch (a nested `begin` is a no-op).
    owner: bool,
    /// Not `Send`: the guard must be dropped on the thread that made it.
    _thread: std::marker::PhantomData<*const ()>,
}

/// Begin deferring on this thread (a no-op inside a batch).
pub fn begin() -> Batch {
    let owner = DEFERRED.with(|d| !std::mem::replace(&mut d.borrow_mut().active, true));
    Batch { owner, _thread: std::marker::PhantomData }
}

/// Whether a publish on this thread may defer its delivery.
#[inline]
pub(super) fn active() -> bool {
    DEFERRED.with(|d| d.borrow().active)
}

/// Drive `q` when the batch ends (its `drive_pending` was just set under its lock).
#[inline]
pub(super) fn add(q: Arc<Queue>) {
    DEFERRED.with(|d| d.borrow_mut().queues.push(q));
}

/// Drive every queue deferred so far (the batch goes on): before any frame other than a publish
/// is handled, and before an error closes a channel or the connection, so that the client sees
/// the deliveries of earlier publishes before any later reply, as without deferral.
pub fn flush() {
    // The publishes staged so far reach their queues first.
    super::staged::flush();
    // Driving may defer more (a dead letter, a trace copy): until the list stays empty.
    let mut list = Vec::new();
    loop {
        DEFERRED.with(|d| std::mem::swap(&mut d.borrow_mut().queues, &mut list));
        if list.is_empty() {
            return;
        }
        for q in list.drain(..) {
            q.drive_deferred();
        }
    }
}

/// Run `f` (the handling of a frame other than a publish's) after the deliveries deferred so far
/// and without deferring: whatever it enqueues (a tx.commit's messages) is delivered before the
/// reply it writes, as without deferral.
pub fn outside<T>(f: impl FnOnce() -> T) -> T {
    flush();
    let was = DEFERRED.with(|d| std::mem::replace(&mut d.borrow_mut().active, false));
    let r = f();
    DEFERRED.with(|d| d.borrow_mut().active = was);
    r
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.owner {
            flush();
            DEFERRED.with(|d| d.borrow_mut().active = false);
        }
    }
}
