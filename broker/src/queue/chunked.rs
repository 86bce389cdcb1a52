//! A FIFO made of fixed-size chunks: the storage of a queue's ready messages.
//!
//! Runs in: whoever holds the queue's lock.
//!
//! A `VecDeque` grows by reallocating and copying everything: for a queue of millions of messages
//! that is hundreds of megabytes moved at once under the queue's lock (a latency spike) and ~10 % of
//! the publish path's time while a queue grows. Here a queue grows and shrinks by whole chunks of
//! [`CHUNK`] entries; nothing already queued is ever moved.
//!
//! # Invariants
//! - No chunk is empty, except a sole chunk kept for reuse; every chunk holds at most [`CHUNK`]
//!   entries; `len` is the sum.
//! - Order is chunk order, then order within a chunk.
//! - A [`Pos`] is valid until the next change: an entry's place `(chunk, offset)`, or the end
//!   `(chunks, 0)`.
use std::collections::VecDeque;

/// Entries per chunk.
pub const CHUNK: usize = 1024;

/// A place in a [`ChunkDeque`]: (chunk index, offset in the chunk). Ordered like the entries.
pub type Pos = (usize, usize);

/// A chunked FIFO.
pub struct ChunkDeque<T> {
    /// The chunks, oldest first.
    chunks: VecDeque<VecDeque<T>>,
    /// Number of entries.
    len: usize,
}

impl<T> Default for ChunkDeque<T> {
    fn default() -> Self {
        ChunkDeque { chunks: VecDeque::new(), len: 0 }
    }
}

impl<T> ChunkDeque<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn front(&self) -> Option<&T> {
        self.chunks.front().and_then(|c| c.front())
    }
    pub fn push_back(&mut self, v: T) {
        match self.chunks.back_mut() {
            Some(c) if c.len() < CHUNK => c.push_back(v),
            _ => {
                // The first chunk grows as needed (a queue of a few messages stays small); later
                // ones are allocated whole.
                let mut c = if self.chunks.is_empty() { VecDeque::new() } else { VecDeque::with_capacity(CHUNK) };
                c.push_back(v);
                self.chunks.push_back(c);
            }
        }
        self.len += 1;
    }
    pub fn push_front(&mut self, v: T) {
        match self.chunks.front_mut() {
            Some(c) if c.len() < CHUNK => c.push_front(v),
            _ => {
                let mut c = VecDeque::new();
                c.push_front(v);
                self.chunks.push_front(c);
            }
        }
        self.len += 1;
    }
    pub fn pop_front(&mut self) -> Option<T> {
        let c = self.chunks.front_mut()?;
        let v = c.pop_front();
        // An emptied sole chunk is kept: a queue that keeps draining to empty allocates nothing.
        if c.is_empty() && self.chunks.len() > 1 {
            self.chunks.pop_front();
        }
        if v.is_some() {
            self.len -= 1;
        }
        v
    }
    pub fn pop_back(&mut self) -> Option<T> {
        let c = self.chunks.back_mut()?;
        let v = c.pop_back();
        if c.is_empty() && self.chunks.len() > 1 {
            self.chunks.pop_back();
        }
        if v.is_some() {
            self.len -= 1;
        }
        v
    }
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut T> {
        self.chunks.iter_mut().flat_map(|c| c.iter_mut())
    }
    /// The place of the first entry for which `before` is false, when the entries are partitioned
    /// by it (every `before` one first, as entries ordered by a key compared with a bound): a
    /// binary search, over the chunks and then within one.
    pub fn partition_point(&self, before: impl Fn(&T) -> bool) -> Pos {
        let c = self.chunks.partition_point(|c| c.back().is_some_and(&before));
        match self.chunks.get(c) {
            Some(chunk) if !chunk.is_empty() => (c, chunk.partition_point(&before)),
            // The sole chunk kept empty: the end.
            _ => (self.chunks.len(), 0),
        }
    }
    /// The place of the entry at index `i` (the end when `i >= len`): walks the chunks from the
    /// front, so meant for small `i`.
    pub fn position(&self, mut i: usize) -> Pos {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if i < chunk.len() {
                return (c, i);
            }
            i -= chunk.len();
        }
        (self.chunks.len(), 0)
    }
    /// The entries from place `p` on, mutably.
    pub fn iter_mut_from(&mut self, p: Pos) -> impl Iterator<Item = &mut T> {
        let (c, o) = p;
        let start = c.min(self.chunks.len());
        self.chunks.range_mut(start..).enumerate().flat_map(move |(k, chunk)| {
            let from = if k == 0 { o.min(chunk.len()) } else { 0 };
            chunk.range_mut(from..)
        })
    }
    /// Keep the entries for which `f` is true (order kept).
    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        for c in self.chunks.iter_mut() {
            c.retain(&mut f);
        }
        self.chunks.retain(|c| !c.is_empty());
        self.len = self.chunks.iter().map(|c| c.len()).sum();
    }
}

impl<T> IntoIterator for ChunkDeque<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::collections::vec_deque::IntoIter<VecDeque<T>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.chunks.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Same behaviour as a `VecDeque` under any sequence of operations.
        #[test]
        fn behaves_like_a_vecdeque(ops in proptest::collection::vec(0u8..6, 0..5000)) {
            let (mut a, mut b) = (ChunkDeque::default(), VecDeque::new());
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    0 | 1 => { a.push_back(i); b.push_back(i); }
                    2 => { a.push_front(i); b.push_front(i); }
                    3 => prop_assert_eq!(a.pop_front(), b.pop_front()),
                    4 => prop_assert_eq!(a.pop_back(), b.pop_back()),
                    _ => { a.retain(|v| v % 7 != 0); b.retain(|v| v % 7 != 0); }
                }
                prop_assert_eq!(a.len(), b.len());
                prop_assert_eq!(a.front(), b.front());
            }
            prop_assert!(a.iter().eq(b.iter()));
            prop_assert!(a.iter().rev().eq(b.iter().rev()));
        }

        /// On entries in increasing order, `partition_point` and `position` find the same place
        /// as an index into a `VecDeque`, and `iter_mut_from` yields what follows it.
        #[test]
        fn places_match_indexes(ops in proptest::collection::vec(0u8..4, 0..5000), bound in 0usize..6000, at in 0usize..6000) {
            let (mut a, mut b) = (ChunkDeque::default(), VecDeque::new());
            let mut front = 0usize;
            for (i, op) in ops.into_iter().enumerate() {
                let v = 1_000_000 + i;
                match op {
                    0 | 1 => { a.push_back(v); b.push_back(v); }
                    // Keep the order increasing: a push at the front takes a smaller value.
                    2 => { front += 1; a.push_front(1_000_000 - front); b.push_front(1_000_000 - front); }
                    _ => prop_assert_eq!(a.pop_front(), b.pop_front()),
                }
            }
            let bound = b.get(bound % (b.len() + 1)).copied().unwrap_or(usize::MAX);
            let i = b.partition_point(|v| *v < bound);
            let p = a.partition_point(|v| *v < bound);
            prop_assert!(a.iter_mut_from(p).map(|v| *v).eq(b.iter().skip(i).copied()));
            prop_assert_eq!(p, a.position(i));
            let p = a.position(at);
            prop_assert!(a.iter_mut_from(p).map(|v| *v).eq(b.iter().skip(at).copied()));
        }
    }
}
