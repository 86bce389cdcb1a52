//! Streams: the append-only log behind a stream queue (`x-queue-type: stream`). Messages get
//! consecutive offsets and are never removed by consumption: every consumer reads from its own
//! position. Retention (`x-max-length-bytes`, `x-max-age`) drops whole segments, oldest first.
//!
//! Runs in: whoever holds the stream's queue lock (the log is part of the queue's state): a
//! publisher's reader appending, a consumer's reader or a writer reading. Records are written to
//! `<data-dir>/streams/<queue key>/<first offset>.seg` by the store's writer thread (its group
//! commit and LSNs, so a publisher confirm waits for the fsync as for a classic queue).
//!
//! # Invariants
//! - Offsets are consecutive: `first..next` are the messages kept; `tail` holds the newest of them
//!   in memory (`tail_first..next`), older ones are read back from their segment.
//! - A tail entry leaves memory only once its record is durable (its LSN is covered by the
//!   store's last fsync), so what is read back from disk is always whole.
//! - Segments cover consecutive offset ranges; the last one is the one appended to, and retention
//!   never drops it.
//! - A stream without a data directory keeps everything it retains in `tail`.
pub mod convert;
pub mod offset;
pub mod record;

use crate::store::{ExtFile, Store};
use bytes::Bytes;
use offset::OffsetSpec;
use record::{Entry, Payload, Record};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// RabbitMQ's default segment size (`x-stream-max-segment-size-bytes`).
pub const DEFAULT_SEGMENT_BYTES: u64 = 500_000_000;
/// Newest message bytes kept in memory per stream (older ones are read back from disk).
const TAIL_KEEP_BYTES: usize = 8 * 1024 * 1024;
/// One sparse index point per this many messages of a segment.
const SPARSE_EVERY: u64 = 64;
/// A read from disk covers at most this many bytes (more only for one larger record).
const READ_WINDOW: usize = 1024 * 1024;

/// A stream's retention settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// `x-max-length-bytes`: drop the oldest segments while the stream holds more.
    pub max_bytes: Option<u64>,
    /// `x-max-age` in ms: drop segments whose newest message is older.
    pub max_age_ms: Option<u64>,
    /// `x-stream-max-segment-size-bytes`.
    pub segment_bytes: u64,
}

/// One segment.
#[derive(Debug)]
struct Segment {
    /// Offset of its first message.
    first: u64,
    /// One past its last message.
    next: u64,
    /// Bytes of its records (written or pending).
    bytes: u64,
    /// Payload bytes of its messages (what `x-max-length-bytes` counts).
    payload: u64,
    /// Timestamp of its newest message (Unix ms).
    last_ts: u64,
    /// `(offset, file position)` of every [`SPARSE_EVERY`]th message.
    sparse: Vec<(u64, u64)>,
    /// Its file (None: a stream without a data directory).
    file: Option<Arc<ExtFile>>,
}

/// The log of one stream.
pub struct Log {
    /// Its directory (None without a data directory).
    dir: Option<PathBuf>,
    /// The store whose writer writes the segments.
    store: Option<Arc<Store>>,
    /// Retention.
    pub retention: Retention,
    /// Offset of the oldest message kept.
    first: u64,
    /// Offset the next message gets.
    next: u64,
    /// Segments, oldest first (never empty).
    segments: VecDeque<Segment>,
    /// Newest entries in memory, with the LSN of their record (0: none to wait for).
    tail: VecDeque<(Entry, u64)>,
    /// Bytes of `tail`'s payloads.
    tail_bytes: usize,
    /// Payload bytes of all kept messages.
    bytes: u64,
    /// Stored consumer offsets (stream protocol store_offset), by reference.
    pub offsets: HashMap<Bytes, u64>,
    /// Named publishers' last publishing ids (deduplication), by reference.
    pub publishers: HashMap<Bytes, u64>,
}

/// A batch read from the log.
pub struct Read {
    /// Entries, in offset order.
    pub entries: Vec<Entry>,
    /// The offset to read next.
    pub next: u64,
}

impl Log {
    /// Open (recovering) the log of a stream in `dir`, or a memory-only one.
    pub fn open(store: Option<Arc<Store>>, key: u64, retention: Retention) -> Log {
        let dir = store.as_ref().map(|s| s.streams_dir().join(format!("{key:016x}")));
        let mut log = Log {
            dir: dir.clone(),
            store,
            retention,
            first: 0,
            next: 0,
            segments: VecDeque::new(),
            tail: VecDeque::new(),
            tail_bytes: 0,
            bytes: 0,
            offsets: HashMap::new(),
            publishers: HashMap::new(),
        };
        if let Some(dir) = &dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::error!("stream: cannot create {}: {e}", dir.display());
            }
            log.recover(dir);
        }
        if log.segments.is_empty() {
            let seg = log.new_segment(log.next);
            log.segments.push_back(seg);
        }
        log
    }

    fn seg_path(dir: &std::path::Path, first: u64) -> PathBuf {
        dir.join(format!("{first:020}.seg"))
    }

    fn new_segment(&self, first: u64) -> Segment {
        let file = self.dir.as_ref().map(|d| ExtFile::new(Self::seg_path(d, first), 0));
        Segment { first, next: first, bytes: 0, payload: 0, last_ts: 0, sparse: Vec::new(), file }
    }

    /// Read every segment file: index it, cut a torn tail, restore tracking state.
    fn recover(&mut self, dir: &std::path::Path) {
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        firsts.sort_unstable();
        for first in firsts {
            let path = Self::seg_path(dir, first);
            let data = match std::fs::read(&path) {
                Ok(d) => Bytes::from(d),
                Err(e) => {
                    tracing::error!("stream: cannot read {}: {e}", path.display());
                    continue;
                }
            };
            let mut seg =
                Segment { first, next: first, bytes: 0, payload: 0, last_ts: 0, sparse: Vec::new(), file: None };
            let mut at = 0usize;
            while let Some(n) = record::whole_record(&data[at..]) {
                let Some(r) = record::decode(data.slice(at..at + n)) else { break };
                match r {
                    Record::Message(e) => {
                        if (e.offset - seg.first).is_multiple_of(SPARSE_EVERY) {
                            seg.sparse.push((e.offset, at as u64));
                        }
                        seg.next = e.offset + 1;
                        seg.last_ts = e.ts;
                        seg.payload += e.payload.len() as u64;
                        self.bytes += e.payload.len() as u64;
                    }
                    Record::Tracking(what, reference, value) => self.track(what, reference, value),
                }
                at += n;
            }
            if at < data.len() {
                tracing::warn!(
                    "stream: segment {} has a torn or corrupt tail: {} bytes after {at} cut",
                    path.display(),
                    data.len() - at
                );
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                    let _ = f.set_len(at as u64).and_then(|()| f.sync_all());
                }
            }
            seg.bytes = at as u64;
            seg.file = Some(ExtFile::new(path, at as u64));
            if self.segments.is_empty() {
                self.first = seg.first;
            }
            self.next = seg.next.max(self.next);
            self.segments.push_back(seg);
        }
        self.tail_first_reset();
    }

    fn tail_first_reset(&mut self) {
        self.tail.clear();
        self.tail_bytes = 0;
    }

    fn track(&mut self, what: u8, reference: Bytes, value: u64) {
        match what {
            record::TRACK_OFFSET => self.offsets.insert(reference, value),
            _ => self.publishers.insert(reference, value),
        };
    }

    /// Offset of the oldest message kept.
    pub fn first(&self) -> u64 {
        self.first
    }
    /// Offset the next message gets.
    pub fn next(&self) -> u64 {
        self.next
    }
    /// Messages kept.
    pub fn len(&self) -> u64 {
        self.next - self.first
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Payload bytes kept.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Segments (files) kept.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    /// Offset of the first entry held in memory.
    fn tail_first(&self) -> u64 {
        self.tail.front().map(|(e, _)| e.offset).unwrap_or(self.next)
    }

    /// Append a message; returns its offset and the LSN its confirm waits for (0: none).
    pub fn append(&mut self, payload: Payload, filter: Bytes, ts: u64) -> (u64, u64) {
        let offset = self.next;
        self.roll_if_full(ts);
        let entry = Entry { offset, ts, payload, filter };
        let mut lsn = 0;
        let seg_len = record::message_len(&entry) as u64;
        let Some(seg) = self.segments.back_mut() else { return (offset, 0) };
        if (offset - seg.first).is_multiple_of(SPARSE_EVERY) {
            seg.sparse.push((offset, seg.bytes));
        }
        if let (Some(store), Some(f)) = (&self.store, &seg.file) {
            lsn = store.append_ext(f, |buf| record::encode_message(buf, &entry));
        }
        seg.bytes += seg_len;
        seg.payload += entry.payload.len() as u64;
        seg.next = offset + 1;
        seg.last_ts = ts;
        self.next = offset + 1;
        let n = entry.payload.len();
        self.bytes += n as u64;
        self.tail_bytes += n;
        self.tail.push_back((entry, lsn));
        self.trim_tail();
        (offset, lsn)
    }

    /// Append messages `(payload, filter)` as one batch: one store append (one lock of the
    /// store) for all of them. Returns the LSN their confirms wait for (0: none).
    pub fn append_batch(&mut self, items: impl Iterator<Item = (Payload, Bytes)>, ts: u64) -> u64 {
        self.roll_if_full(ts);
        let Some(seg) = self.segments.back_mut() else { return 0 };
        let start = self.tail.len();
        for (payload, filter) in items {
            let offset = self.next;
            let entry = Entry { offset, ts, payload, filter };
            if (offset - seg.first).is_multiple_of(SPARSE_EVERY) {
                seg.sparse.push((offset, seg.bytes));
            }
            seg.bytes += record::message_len(&entry) as u64;
            let n = entry.payload.len();
            seg.payload += n as u64;
            self.bytes += n as u64;
            self.tail_bytes += n;
            self.next = offset + 1;
            self.tail.push_back((entry, 0));
        }
        if self.tail.len() == start {
            return 0;
        }
        seg.next = self.next;
        seg.last_ts = ts;
        let mut lsn = 0;
        if let (Some(store), Some(f)) = (&self.store, &seg.file) {
            let tail = &self.tail;
            lsn = store.append_ext(f, |buf| {
                for (e, _) in tail.range(start..) {
                    record::encode_message(buf, e);
                }
            });
            for (_, l) in self.tail.range_mut(start..) {
                *l = lsn;
            }
        }
        self.trim_tail();
        lsn
    }

    /// Append a tracking record (stored offset, publisher sequence) and remember it.
    pub fn append_tracking(&mut self, what: u8, reference: Bytes, value: u64, ts: u64) -> u64 {
        let mut lsn = 0;
        if let Some(seg) = self.segments.back_mut() {
            if let (Some(store), Some(f)) = (&self.store, &seg.file) {
                let next = self.next;
                lsn = store.append_ext(f, |buf| record::encode_tracking(buf, next, ts, what, &reference, value));
                seg.bytes += (8 + 8 + 8 + 1 + 1 + 1 + reference.len().min(255) + 8) as u64;
            }
        }
        self.track(what, reference, value);
        lsn
    }

    /// Start a new segment when the current one is full, copying the tracking state into it (so
    /// retention never loses it), then apply retention.
    fn roll_if_full(&mut self, now_unix: u64) {
        let full = self.segments.back().is_some_and(|s| s.bytes >= self.retention.segment_bytes && s.next > s.first);
        if !full {
            return;
        }
        let seg = self.new_segment(self.next);
        self.segments.push_back(seg);
        let tracked: Vec<(u8, Bytes, u64)> = self
            .offsets
            .iter()
            .map(|(r, v)| (record::TRACK_OFFSET, r.clone(), *v))
            .chain(self.publishers.iter().map(|(r, v)| (record::TRACK_PUBLISHER, r.clone(), *v)))
            .collect();
        for (what, r, v) in tracked {
            self.append_tracking(what, r, v, now_unix);
        }
        self.apply_retention(now_unix);
    }

    /// Drop the oldest segments (never the current one) while retention says so. Returns whether
    /// anything was dropped.
    pub fn apply_retention(&mut self, now_unix: u64) -> bool {
        let mut dropped = false;
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.front() else { break };
            let seg_msgs_bytes = oldest.payload;
            let over_bytes = self.retention.max_bytes.is_some_and(|max| self.bytes > max);
            let too_old = self.retention.max_age_ms.is_some_and(|age| oldest.last_ts + age < now_unix);
            if !over_bytes && !too_old {
                break;
            }
            let Some(seg) = self.segments.pop_front() else { break };
            self.bytes = self.bytes.saturating_sub(seg_msgs_bytes);
            self.first = self.segments.front().map(|s| s.first).unwrap_or(self.next);
            while self.tail.front().is_some_and(|(e, _)| e.offset < self.first) {
                if let Some((e, _)) = self.tail.pop_front() {
                    self.tail_bytes -= e.payload.len();
                }
            }
            if let (Some(f), Some(store)) = (&seg.file, &self.store) {
                f.dropped.store(true, Ordering::Release);
                store.remove_path(f.path.clone());
            }
            dropped = true;
        }
        dropped
    }

    /// Let durable entries beyond the in-memory budget go (they are read back from disk).
    fn trim_tail(&mut self) {
        let Some(store) = &self.store else { return };
        if self.tail_bytes <= TAIL_KEEP_BYTES {
            return;
        }
        let durable = store.durable_lsn();
        while self.tail_bytes > TAIL_KEEP_BYTES {
            match self.tail.front() {
                Some((_, lsn)) if *lsn <= durable => {
                    if let Some((e, _)) = self.tail.pop_front() {
                        self.tail_bytes -= e.payload.len();
                    }
                }
                _ => break,
            }
        }
    }

    /// The offset a consumer starting at `spec` reads first.
    pub fn resolve(&self, spec: OffsetSpec) -> u64 {
        match spec {
            OffsetSpec::First => self.first,
            OffsetSpec::Last => self.next.saturating_sub(1).max(self.first),
            OffsetSpec::Next => self.next,
            // Past the end: the consumer waits for that offset.
            OffsetSpec::Offset(n) => n.max(self.first),
            OffsetSpec::Timestamp(t) => self.offset_at(t),
        }
    }

    /// The first offset appended at or after `t` (Unix ms), or `next`.
    fn offset_at(&self, t: u64) -> u64 {
        if let Some((e, _)) = self.tail.front() {
            if e.ts <= t {
                let i = self.tail.partition_point(|(e, _)| e.ts < t);
                return self.tail.get(i).map(|(e, _)| e.offset).unwrap_or(self.next);
            }
        }
        // Older than the tail: the first segment whose newest message is at or after t, then
        // scan it.
        let Some(seg) = self.segments.iter().find(|s| s.next > s.first && s.last_ts >= t) else {
            return self.next;
        };
        let mut at = seg.first.max(self.first);
        loop {
            let r = self.read(at, 4096);
            if r.entries.is_empty() {
                return r.next;
            }
            if let Some(e) = r.entries.iter().find(|e| e.ts >= t) {
                return e.offset;
            }
            at = r.next;
        }
    }

    /// Up to `max` entries from offset `from` (a position before `first` reads from `first`).
    pub fn read(&self, from: u64, max: usize) -> Read {
        let from = from.max(self.first);
        if from >= self.next {
            return Read { entries: Vec::new(), next: from };
        }
        let tail_first = self.tail_first();
        if from >= tail_first {
            let start = (from - tail_first) as usize;
            let entries: Vec<Entry> = self.tail.iter().skip(start).take(max).map(|(e, _)| e.clone()).collect();
            let next = entries.last().map(|e| e.offset + 1).unwrap_or(from);
            return Read { entries, next };
        }
        match self.read_disk(from, max, tail_first) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("stream: cannot read offset {from}: {e}; skipping to what is in memory");
                Read { entries: Vec::new(), next: tail_first }
            }
        }
    }

    /// Read from the segment holding `from`, stopping before `limit` (the tail's first offset).
    fn read_disk(&self, from: u64, max: usize, limit: u64) -> std::io::Result<Read> {
        use std::os::unix::fs::FileExt;
        let i = self.segments.partition_point(|s| s.first <= from).saturating_sub(1);
        let Some(seg) = self.segments.get(i) else { return Ok(Read { entries: Vec::new(), next: limit }) };
        let Some(file) = &seg.file else { return Ok(Read { entries: Vec::new(), next: limit }) };
        let sp = seg.sparse.partition_point(|(o, _)| *o <= from).saturating_sub(1);
        let pos = seg.sparse.get(sp).map(|(_, p)| *p).unwrap_or(0);
        let written = file.written.load(Ordering::Acquire);
        let f = std::fs::File::open(&file.path)?;
        let mut len = (written.saturating_sub(pos) as usize).min(READ_WINDOW);
        let mut entries = Vec::new();
        let mut next = from;
        let mut at_pos = pos;
        loop {
            if len == 0 {
                break;
            }
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, at_pos)?;
            let data = Bytes::from(buf);
            let mut at = 0;
            let mut progressed = false;
            while let Some(n) = record::whole_record(&data[at..]) {
                progressed = true;
                if let Some(Record::Message(e)) = record::decode(data.slice(at..at + n)) {
                    if e.offset >= limit || entries.len() >= max {
                        return Ok(Read { entries, next });
                    }
                    if e.offset >= from {
                        next = e.offset + 1;
                        entries.push(e);
                    }
                }
                at += n;
            }
            at_pos += at as u64;
            if !entries.is_empty() || at_pos >= written {
                break;
            }
            if !progressed {
                // One record larger than the window: read exactly it.
                let mut head = [0u8; 4];
                f.read_exact_at(&mut head, at_pos)?;
                len = record::declared_len(&head).unwrap_or(0).min(written.saturating_sub(at_pos) as usize);
                if len == 0 {
                    break;
                }
            } else {
                len = (written.saturating_sub(at_pos) as usize).min(READ_WINDOW);
            }
        }
        if entries.is_empty() {
            // Nothing more in this segment (tracking records only): go on with the next one.
            next = self.segments.get(i + 1).map(|s| s.first).unwrap_or(limit).max(from + 1).min(limit);
        }
        Ok(Read { entries, next })
    }

    /// The stream was deleted: its files go (the directory is moved aside at once, so a stream
    /// declared again with the same name starts empty, and removed by the writer).
    pub fn destroy(&mut self) {
        for s in &self.segments {
            if let Some(f) = &s.file {
                f.dropped.store(true, Ordering::Release);
            }
        }
        self.segments.clear();
        self.tail.clear();
        if let (Some(dir), Some(store)) = (&self.dir, &self.store) {
            let aside = dir.with_extension(format!("deleted-{}", crate::clock::unix_ms()));
            match std::fs::rename(dir, &aside) {
                Ok(()) => store.remove_path(aside),
                Err(e) => {
                    tracing::warn!("stream: cannot move {} aside: {e}", dir.display());
                    store.remove_path(dir.clone());
                }
            }
        }
    }
}

/// Remove the directories under `<data-dir>/streams` that belong to no stream (`keep`: the keys of
/// the stream queues that exist), and leftovers of deleted streams.
pub fn remove_orphans(store: &Store, keep: &std::collections::HashSet<u64>) {
    let Ok(rd) = std::fs::read_dir(store.streams_dir()) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let wanted = u64::from_str_radix(&name, 16).is_ok_and(|k| keep.contains(&k)) && name.len() == 16;
        if !wanted {
            store.remove_path(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Payload {
        let m = crate::message::Message::new(
            "".into(),
            "k".into(),
            Bytes::from_static(&[0, 0]),
            Bytes::from(vec![b'x'; n]),
        )
        .expect("message");
        Payload::Amqp091(m)
    }

    #[test]
    fn retention_drops_whole_old_segments_only() {
        let r = Retention { max_bytes: Some(5_000), max_age_ms: None, segment_bytes: 1_000 };
        let mut log = Log::open(None, 1, r);
        for i in 0..100u64 {
            let (o, _) = log.append(msg(98), Bytes::new(), 1000 + i);
            assert_eq!(o, i);
        }
        // About 8 messages per 1 kB segment: the oldest segments went, whole.
        assert!(log.first() > 0 && log.bytes() <= 5_000 + 1_000, "first {} bytes {}", log.first(), log.bytes());
        assert_eq!(log.next(), 100);
        let r = log.read(0, 10);
        assert_eq!(r.entries.first().map(|e| e.offset), Some(log.first()));
        assert_eq!(log.resolve(OffsetSpec::First), log.first());
        assert_eq!(log.resolve(OffsetSpec::Last), 99);
        assert_eq!(log.resolve(OffsetSpec::Next), 100);
        assert_eq!(log.resolve(OffsetSpec::Timestamp(1090)), 90);
    }

    #[test]
    fn max_age_drops_segments_older_than_it() {
        let r = Retention { max_bytes: None, max_age_ms: Some(50), segment_bytes: 500 };
        let mut log = Log::open(None, 1, r);
        for i in 0..20u64 {
            log.append(msg(100), Bytes::new(), 1000 + i);
        }
        assert_eq!(log.first(), 0);
        assert!(log.apply_retention(2000));
        // The current segment always stays.
        assert!(log.first() > 0 && log.len() > 0);
    }
}
