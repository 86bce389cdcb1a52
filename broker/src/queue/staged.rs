//! Publishes staged within a reader's batch: consecutive publishes that go to the same queues
//! and whose outcome nobody waits for (no confirm, not mandatory, no transaction) are enqueued
//! together, one lock of each queue per run of messages instead of one per message.
//!
//! A fanout to ten queues locked ten queues per message; the lock's acquire and release were
//! most of `publish_locked`'s share of the broker's time.
//!
//! Runs in: a connection's reader task, inside its synchronous handling of one read's frames
//! (`Reader::handle_frames`), like [`super::defer`], whose batch it shares.
//!
//! # Invariants
//! - Staging happens only while deferral is on ([`super::defer::active`]); otherwise a publish
//!   is enqueued at once.
//! - The staged run is enqueued ([`flush`]) before anything else can observe or change the
//!   queues through this thread: before the deferred queues are driven ([`super::defer::flush`],
//!   so before any other frame of the batch, an error's close and the batch's end), before any
//!   enqueue that is not staged (`VHost::enqueue`: a confirmed, mandatory or transactional
//!   publish, a dead letter, a trace copy), and before a run to other queues is staged. So each
//!   queue receives one channel's messages in the order they were published, as without staging.
//! - The run's messages all have the same queues, in the same order: each queue takes the whole
//!   run, in order, under one lock; a run holds at most [`RUN_MAX`] messages.
use super::Queue;
use crate::message::Message;
use std::cell::RefCell;
use std::sync::Arc;

/// A run is enqueued once it holds this many messages: each queue's lock is held for at most
/// this many publishes at once (a few microseconds), so a consumer's ack driving the same queue
/// from another core waits no longer than that, while the lock's cost per message stays a
/// fraction of a per-message lock's (a read buffer can hold thousands of small publishes).
const RUN_MAX: usize = 256;

/// This thread's staged run.
#[derive(Default)]
struct Run {
    /// The queues every message of the run goes to (empty: no run).
    queues: Vec<Arc<Queue>>,
    /// The messages, in publish order.
    msgs: Vec<Message>,
}

thread_local! {
    static STAGED: RefCell<Run> = RefCell::new(Run::default());
}

/// Enqueue `msg` into `queues` now, or with the run it joins before the batch ends.
pub fn stage(queues: &[Arc<Queue>], msg: Message) {
    if queues.is_empty() {
        return;
    }
    if !super::defer::active() {
        flush();
        for q in queues {
            q.publish(msg.clone());
        }
        return;
    }
    let joins = STAGED.with(|s| {
        let s = s.borrow();
        s.queues.len() == queues.len() && s.queues.iter().zip(queues).all(|(a, b)| Arc::ptr_eq(a, b))
    });
    if !joins {
        flush();
    }
    let full = STAGED.with(|s| {
        let mut s = s.borrow_mut();
        if !joins {
            s.queues.extend_from_slice(queues);
        }
        s.msgs.push(msg);
        s.msgs.len() >= RUN_MAX
    });
    if full {
        flush();
    }
}

/// Enqueue the staged run, if any (the buffers are kept for the next run).
pub fn flush() {
    let mut run = STAGED.with(|s| {
        let mut s = s.borrow_mut();
        if s.msgs.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut *s))
    });
    let Some(r) = &mut run else { return };
    // Enqueueing may stage nothing (what it publishes itself, dead letters, goes straight in),
    // but it may flush: the thread's run is empty meanwhile.
    for q in &r.queues {
        q.publish_run(&r.msgs);
    }
    r.queues.clear();
    r.msgs.clear();
    STAGED.with(|s| {
        let mut s = s.borrow_mut();
        if s.msgs.capacity() == 0 && s.queues.capacity() == 0 {
            *s = std::mem::take(r);
        }
    });
}
