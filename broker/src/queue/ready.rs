//! The ready messages of a queue: one FIFO per priority level (one level for a non-priority queue),
//! with the count and body bytes kept alongside.
//!
//! # Invariants
//! - Each level is ordered by `seq`; `pop_front` takes from the highest non-empty level.
//! - `len` and `bytes` always equal the sums over the levels.
use crate::message::QueuedMsg;
use std::collections::VecDeque;

/// Ready messages.
pub struct Ready {
    /// FIFO per priority, index = priority.
    levels: Vec<VecDeque<QueuedMsg>>,
    /// Number of messages.
    len: usize,
    /// Body bytes.
    bytes: usize,
}

impl Ready {
    /// `levels` = max priority + 1 (1 for a plain queue).
    pub fn new(levels: usize) -> Ready {
        Ready { levels: (0..levels.max(1)).map(|_| VecDeque::new()).collect(), len: 0, bytes: 0 }
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
        self.len += 1;
        self.bytes += m.msg.body.len();
        self.levels[l].push_back(m);
    }
    #[inline]
    pub fn push_front(&mut self, m: QueuedMsg) {
        let l = self.level(&m);
        self.len += 1;
        self.bytes += m.msg.body.len();
        self.levels[l].push_front(m);
    }
    #[inline]
    pub fn pop_front(&mut self) -> Option<QueuedMsg> {
        let m = self.levels.iter_mut().rev().find_map(|q| q.pop_front())?;
        self.len -= 1;
        self.bytes -= m.msg.body.len();
        Some(m)
    }
    /// The newest message (the one just published), for reject-publish.
    pub fn pop_newest(&mut self, priority: u8) -> Option<QueuedMsg> {
        let l = (priority as usize).min(self.levels.len() - 1);
        let m = self.levels[l].pop_back()?;
        self.len -= 1;
        self.bytes -= m.msg.body.len();
        Some(m)
    }
    /// Remove expired messages from the head of every level (RabbitMQ expires at the head only).
    pub fn expire_heads(&mut self, now: u64, out: &mut Vec<QueuedMsg>) {
        for q in self.levels.iter_mut() {
            while q.front().is_some_and(|m| m.expires_at != 0 && m.expires_at <= now) {
                if let Some(m) = q.pop_front() {
                    self.len -= 1;
                    self.bytes -= m.msg.body.len();
                    out.push(m);
                }
            }
        }
    }
    /// Put requeued messages back in `seq` order within their levels.
    pub fn requeue(&mut self, mut msgs: Vec<QueuedMsg>) {
        msgs.sort_by_key(|m| m.seq);
        for m in &msgs {
            self.len += 1;
            self.bytes += m.msg.body.len();
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
            let mut merged = VecDeque::with_capacity(old.len() + msgs.len());
            let mut a = old.into_iter().peekable();
            let mut b = msgs.into_iter().peekable();
            loop {
                let take_a = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => x.seq < y.seq,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                merged.extend(if take_a { a.next() } else { b.next() });
            }
            *q = merged;
        }
    }
    /// Drop everything; returns the messages.
    pub fn take_all(&mut self) -> Vec<QueuedMsg> {
        self.len = 0;
        self.bytes = 0;
        self.levels.iter_mut().flat_map(|q| q.drain(..)).collect()
    }
    pub fn clear(&mut self) -> usize {
        let n = self.len;
        for q in self.levels.iter_mut() {
            q.clear();
        }
        self.len = 0;
        self.bytes = 0;
        n
    }
}
