//! Durable storage: the message store (an append-only segment log, `log.rs`) and the metadata
//! file (RabbitMQ definitions JSON, `definitions.rs`), both under the data directory.
//!
//! Runs in: any task that enqueues, delivers or settles a stored message (they append to the
//! pending batch under one short mutex), and one dedicated OS thread, the store writer, that writes
//! batches and fsyncs them (group commit: one fsync covers everything that arrived while the
//! previous one ran).
//!
//! Layout of the data directory:
//! ```text
//! <data-dir>/warren.lock              flock'ed while a broker uses the directory
//! <data-dir>/definitions.json         durable topology, users, vhosts, permissions
//! <data-dir>/msgs/00000001.seg        message records (checksummed), appended
//! <data-dir>/msgs/00000001.ack        8-byte entries: record at offset X acked / delivered
//! ```
//!
//! # Invariants
//! - Every record is appended under `inner`'s lock, so appends get increasing positions and LSNs;
//!   one queue appends under its own lock, so its records are in its enqueue order.
//! - A publisher confirm for a stored message is sent only once `durable` (the LSN covered by the
//!   last fsync) has reached the record's LSN.
//! - Each live [`DiskRef`] counts once in its segment's `live` count; dropping it appends an ack
//!   entry to that segment's `.ack` file. A sealed segment whose count reaches 0 is deleted with its
//!   `.ack` file, so acks never outlive the records they refer to, and disk space is freed.
//! - Ack and delivered entries are written with the next batch but not fsynced on their own: after a
//!   power loss a message may come back (at-least-once), a confirmed one is never lost.
//! - Once `close` has begun, dropped `DiskRef`s record nothing (the broker's in-memory state is
//!   being torn down, not consumed).
//! - Lock order: queue state -> store `inner` (a leaf: nothing is locked while holding it, and the
//!   writer thread never holds it during I/O).
pub mod log;
pub mod meta;

use crate::message::{Message, QueuedMsg};
use log::{AckKind, RecordHeader};
use parking_lot::{Condvar, Mutex};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A segment is sealed (a new file started) once it holds this many bytes.
pub const SEGMENT_SIZE: u64 = 8 * 1024 * 1024;
/// Ack and delivered entries wait at most this long for a batch to carry them.
const ACK_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// At most this many `.ack` files (and segment read handles) are kept open.
const MAX_OPEN_FILES: usize = 64;
/// Queue paging: this many ready messages at the head of a queue stay in memory...
pub const PAGE_KEEP_MESSAGES: usize = 8 * 1024;
/// ...and at most this many body bytes of them.
pub const PAGE_KEEP_BYTES: usize = 16 * 1024 * 1024;
/// Under the memory alarm the window shrinks to this many messages, so that queues' windows
/// cannot hold the alarm on by themselves (at 8 Ki messages of ~450 B counted each, two queues
/// held a 6 MiB watermark's alarm on for good). A consumer then reads most messages back from
/// disk, one read per [`PAGE_IN_MESSAGES`].
pub const PAGE_KEEP_UNDER_ALARM: usize = 256;
/// A queue holding more ready messages than this pages its transient ones beyond the window too,
/// without memory pressure (RabbitMQ's lazy mode, from a threshold): a queue that grows to tens of
/// millions of small messages keeps its publish rate and about 80 bytes of memory per message,
/// where holding them all took about 290 bytes each and the publish rate fell from 1.7 M/s to
/// 0.24 M/s by 18 M messages (fresh pages faulted in, and the memory alarm counts bodies only).
/// High enough that a consumer's usual backlog (the benchmarks keep up to 200,000 in flight) is
/// never written out and read back: at 128 Ki, manual-ack throughput fell by a third.
pub const PAGE_TRANSIENT_ABOVE_MESSAGES: usize = 1024 * 1024;
/// One paging sweep of one queue gives records to, pages out or walks past at most this many
/// messages. Sweeps run every `MEMORY_CHECK_INTERVAL` (100 ms), so paging keeps up with
/// 2.6 M msgs/s into one queue.
pub const PAGE_SWEEP_MESSAGES: usize = 256 * 1024;
/// A sweep goes in steps of at most this many messages, each under the queue's lock, which is
/// released between steps (and the monitor task yields): a queue's publishers and other tasks wait
/// at most one step. 256 Ki at once held the lock for about 20 ms, and another queue's p99
/// latency rose to 25-29 ms while a queue crossed the paging threshold.
pub const PAGE_STEP_MESSAGES: usize = 4 * 1024;
/// Reading back paged messages: one read covers up to this many messages...
pub const PAGE_IN_MESSAGES: usize = 4096;
/// ...or this many bytes of segment.
const PAGE_IN_BYTES: u64 = 4 * 1024 * 1024;

/// After a failed write (a full disk), the writer tries again this often, with everything that
/// arrived meanwhile appended behind what failed.
const WRITE_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// At shutdown a write that keeps failing is given up after this many tries (nothing it held was
/// confirmed, so nothing confirmed is lost).
const SHUTDOWN_WRITE_TRIES: u32 = 20;

/// Environment variable (a file path), tests only: every sync of the message store and every
/// completed definitions write is recorded there (segment name and synced length; the
/// definitions file's synced content beside it, as `<path>.defs`), so a test can simulate a power
/// cut by cutting the files back to what was synced.
pub const TEST_SYNC_LOG_ENV: &str = "WARREN_TEST_SYNC_LOG";

/// Environment variable (milliseconds) that delays every batch write: fault injection for tests.
pub const TEST_WRITE_DELAY_ENV: &str = "WARREN_TEST_STORE_WRITE_DELAY_MS";

/// A message's record in the store, held by the `QueuedMsg` it belongs to.
#[derive(Debug)]
pub struct DiskRef {
    /// The store (dropping the ref records an ack there).
    store: Arc<Store>,
    /// Segment number.
    pub seg: u32,
    /// Offset of the record in the segment.
    pub off: u32,
    /// Record length (header included).
    pub len: u32,
    /// Body length, for accounting while the body is paged out.
    pub body_len: u32,
    /// The body is on disk only: the `QueuedMsg`'s `msg` is a placeholder.
    pub paged: bool,
    /// A paged transient message's record ([`log::KIND_PAGED`]): recovery skips it, so its end
    /// is not written to the ack file, only counted (its segment is deleted once nothing in it
    /// lives). Dropping the millions of paged messages of a deleted queue then writes nothing.
    pub transient: bool,
    /// Its end is recorded already ([`DiskRef::release_batch`]): dropping it records nothing.
    settled: bool,
}

impl DiskRef {
    /// Record the end of each of `refs` (as dropping them would) taking each store's lock once
    /// per run of refs into it, not once per ref, then drop them. Freeing a queue of millions of
    /// paged messages took that lock millions of times, against every publisher that appends.
    pub fn release_batch(refs: &mut Vec<Box<DiskRef>>) {
        let mut i = 0;
        while i < refs.len() {
            let store = refs[i].store.clone();
            let run = refs[i..].iter().take_while(|r| Arc::ptr_eq(&r.store, &store)).count();
            if !store.closing.load(Ordering::Relaxed) {
                let mut inner = store.inner.lock();
                for r in &refs[i..i + run] {
                    if r.settled {
                        continue;
                    }
                    if r.transient {
                        count_out(&mut inner, r.seg);
                    } else {
                        inner.lsn += 1;
                        inner.batch.last_lsn = inner.lsn;
                        if !count_out(&mut inner, r.seg) {
                            log::encode_ack(inner.batch.acks.entry(r.seg).or_default(), r.off, AckKind::Acked);
                        }
                    }
                }
            }
            refs[i..i + run].iter_mut().for_each(|r| r.settled = true);
            i += run;
        }
        refs.clear();
    }
}

impl Drop for DiskRef {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.transient {
            self.store.forget(self.seg);
        } else {
            self.store.release(self.seg, self.off);
        }
    }
}

/// Writes waiting for the writer thread.
#[derive(Default)]
struct Batch {
    /// Record bytes per segment, in append order.
    data: Vec<(u32, Vec<u8>)>,
    /// Ack / delivered entries per segment (Fx: two lookups per persistent message, a delivered
    /// mark and an ack; SipHash took ~120 instructions each).
    acks: FxHashMap<u32, Vec<u8>>,
    /// Sealed segments to delete (every record acked).
    deletes: Vec<u32>,
    /// LSN of the last operation in the batch.
    last_lsn: u64,
    /// Bytes for files outside the segment log (stream segments), in append order.
    ext: Vec<(Arc<ExtFile>, Vec<u8>)>,
    /// Files or directories to remove (a stream's dropped segments, a deleted stream's directory).
    removals: Vec<PathBuf>,
}

/// A file outside the segment log that the store's writer appends to (a stream's segment):
/// appends get LSNs from the store, so they share its group commit and its confirms.
#[derive(Debug)]
pub struct ExtFile {
    /// Its path.
    pub path: PathBuf,
    /// Bytes written and synced (the writer's position; read by readers to know what is on disk).
    pub written: AtomicU64,
    /// Set when the file is dropped (retention, stream deleted): pending bytes are not written.
    pub dropped: AtomicBool,
    /// The writer's handle (used by the writer thread only).
    handle: Mutex<Option<File>>,
}

impl ExtFile {
    /// A file at `path`, `len` bytes of which already exist (recovered).
    pub fn new(path: PathBuf, len: u64) -> Arc<ExtFile> {
        Arc::new(ExtFile {
            path,
            written: AtomicU64::new(len),
            dropped: AtomicBool::new(false),
            handle: Mutex::new(None),
        })
    }
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.acks.is_empty()
            && self.deletes.is_empty()
            && self.ext.is_empty()
            && self.removals.is_empty()
    }

    /// Append `later` (taken after `self`) to this batch, keeping every segment's bytes in order.
    fn merge(&mut self, later: Batch) {
        for (seg, buf) in later.data {
            match self.data.last_mut() {
                Some((s, mine)) if *s == seg => mine.extend_from_slice(&buf),
                _ => self.data.push((seg, buf)),
            }
        }
        for (seg, entries) in later.acks {
            self.acks.entry(seg).or_default().extend_from_slice(&entries);
        }
        self.deletes.extend(later.deletes);
        for (f, buf) in later.ext {
            push_ext(&mut self.ext, &f, &buf);
        }
        self.removals.extend(later.removals);
        self.last_lsn = self.last_lsn.max(later.last_lsn);
    }
}

/// Append `buf` for `f` to `ext`, joining the previous entry when it is for the same file.
fn push_ext(ext: &mut Vec<(Arc<ExtFile>, Vec<u8>)>, f: &Arc<ExtFile>, buf: &[u8]) {
    match ext.last_mut() {
        Some((g, mine)) if Arc::ptr_eq(g, f) => mine.extend_from_slice(buf),
        _ => ext.push((f.clone(), buf.to_vec())),
    }
}

/// A record of segment `seg` left for good: one less lives there. Returns true when that was the
/// last one of a sealed segment, which is then queued for deletion (its pending ack entries are
/// dropped with it).
fn count_out(inner: &mut Inner, seg: u32) -> bool {
    let gone = match inner.live.get_mut(&seg) {
        Some(n) => {
            *n -= 1;
            *n == 0
        }
        None => false,
    };
    if gone && seg != inner.cur_seg {
        inner.live.remove(&seg);
        inner.batch.acks.remove(&seg);
        inner.batch.deletes.push(seg);
        return true;
    }
    false
}

/// State shared by appenders and the writer thread.
struct Inner {
    /// LSN of the last operation appended (every record, ack and delivered entry gets one).
    lsn: u64,
    /// Segment new records go to.
    cur_seg: u32,
    /// Bytes in `cur_seg` (written or pending).
    cur_size: u64,
    /// Live records per segment (tickets held by queues and channels).
    live: FxHashMap<u32, u64>,
    /// What the writer has not taken yet.
    batch: Batch,
    /// Something in `batch` must be fsynced (a record, or a barrier): wake the writer now.
    urgent: bool,
    /// The writer should finish what is pending and stop.
    stop: bool,
}

/// The message store of one broker.
pub struct Store {
    /// `<data-dir>/msgs`.
    dir: PathBuf,
    /// Pending batch and segment accounting.
    inner: Mutex<Inner>,
    /// Wakes the writer thread.
    wake: Condvar,
    /// LSN covered by the last fsync; confirms wait on it.
    durable: watch::Sender<u64>,
    /// Position after the last record written (`seg << 32 | end offset`): records before it can be
    /// read back.
    written_pos: AtomicU64,
    /// Set by `close`: dropped refs record nothing.
    closing: AtomicBool,
    /// The last write failed (a full disk, an I/O error) and is being retried: raises the disk
    /// alarm, so publishers are blocked until it succeeds.
    write_failing: AtomicBool,
    /// Read handles of segments, for paging in.
    readers: Mutex<HashMap<u32, Arc<File>>>,
    /// The writer thread, joined by `close`.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Stand-in `Message` of paged-out entries.
    placeholder: Message,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.dir.display())
    }
}

/// The record key of the messages held by durable delayed-message exchange `name` (a name no
/// queue can have: queue names never hold a NUL byte).
pub fn delayed_key(vhost: &str, name: &[u8]) -> u64 {
    let mut k = b"\0delayed\0".to_vec();
    k.extend_from_slice(name);
    queue_key(vhost, &k)
}

/// A stable identifier of a durable queue in message records: FNV-1a of vhost and name. 64 bits
/// make a collision between two queues of one broker vanishingly unlikely.
pub fn queue_key(vhost: &str, name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in vhost.as_bytes().iter().chain(&[0xff]).chain(name) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn seg_path(dir: &Path, seg: u32, ext: &str) -> PathBuf {
    dir.join(format!("{seg:08}.{ext}"))
}

/// What recovery found.
#[derive(Debug, Default, Clone)]
pub struct Recovered {
    /// Messages put back into queues.
    pub messages: u64,
    /// Segments read.
    pub segments: u32,
    /// Bytes cut from torn or corrupt segment tails.
    pub truncated_bytes: u64,
}

/// A recovered record waiting to be put into its queue.
pub struct RecoveredMsg {
    /// Its record (paged: read back on delivery).
    pub disk: DiskRef,
    /// Record header fields.
    pub header: RecordHeader,
    /// It had been delivered before the restart.
    pub delivered: bool,
}

impl Store {
    /// Open (creating) `<data_dir>/msgs`. Nothing is read yet: see [`Store::recover`].
    pub fn open(data_dir: &Path) -> io::Result<Arc<Store>> {
        let dir = data_dir.join("msgs");
        std::fs::create_dir_all(&dir)?;
        let placeholder = Message::from_parts(
            b"",
            b"",
            warren_protocol::properties::EMPTY_PROPERTIES,
            crate::lent::Lent::all(&bytes::Bytes::new()),
            (crate::message::MsgTtl::NONE, 0, false),
        );
        Ok(Arc::new(Store {
            dir,
            inner: Mutex::new(Inner {
                lsn: 0,
                cur_seg: 1,
                cur_size: 0,
                live: FxHashMap::default(),
                batch: Batch::default(),
                urgent: false,
                stop: false,
            }),
            wake: Condvar::new(),
            durable: watch::channel(0).0,
            written_pos: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            write_failing: AtomicBool::new(false),
            readers: Mutex::new(HashMap::new()),
            thread: Mutex::new(None),
            placeholder,
        }))
    }

    /// Read every segment: cut torn or corrupt tails, skip acked records, delete segments with
    /// nothing live. `wanted(queue_key)` says whether a record's queue still exists; `put` receives
    /// each live record, in log order (which is each queue's enqueue order). New records go to a
    /// fresh segment after the last one found.
    pub fn recover(
        self: &Arc<Self>,
        wanted: impl Fn(u64) -> bool,
        mut put: impl FnMut(u64, RecoveredMsg),
    ) -> io::Result<Recovered> {
        let mut segs: Vec<u32> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u32>().ok()
            })
            .collect();
        segs.sort_unstable();
        let mut stats = Recovered::default();
        let mut live: FxHashMap<u32, u64> = FxHashMap::default();
        // One read buffer for every segment (they are about the same size).
        let mut data = Vec::new();
        for &seg in &segs {
            stats.segments += 1;
            let path = seg_path(&self.dir, seg, "seg");
            data.clear();
            std::io::Read::read_to_end(&mut File::open(&path)?, &mut data)?;
            let (records, good_len) = log::scan(&data);
            if good_len < data.len() {
                let cut = (data.len() - good_len) as u64;
                tracing::warn!(
                    "message store: segment {} has a torn or corrupt tail: {cut} bytes after offset {good_len} cut",
                    path.display()
                );
                let f = std::fs::OpenOptions::new().write(true).open(&path)?;
                f.set_len(good_len as u64)?;
                f.sync_all()?;
                stats.truncated_bytes += cut;
            }
            let acks = log::read_acks(&seg_path(&self.dir, seg, "ack"));
            let mut n = 0u64;
            for (off, len, h) in records {
                let state = acks.get(&(off as u32)).copied().unwrap_or(0);
                if h.kind != log::KIND_PERSISTENT || state & AckKind::Acked as u8 != 0 || !wanted(h.queue) {
                    continue;
                }
                n += 1;
                let disk = DiskRef {
                    store: self.clone(),
                    seg,
                    off: off as u32,
                    len: len as u32,
                    body_len: h.body_len,
                    paged: true,
                    transient: false,
                    settled: false,
                };
                put(h.queue, RecoveredMsg { disk, header: h, delivered: state & AckKind::Delivered as u8 != 0 });
            }
            stats.messages += n;
            if n > 0 {
                live.insert(seg, n);
            }
        }
        {
            let mut inner = self.inner.lock();
            inner.cur_seg = segs.last().map(|s| s + 1).unwrap_or(1);
            inner.cur_size = 0;
            inner.live = live;
        }
        // Segments with nothing live go now (their .ack files with them).
        for &seg in &segs {
            if !self.inner.lock().live.contains_key(&seg) {
                let _ = std::fs::remove_file(seg_path(&self.dir, seg, "seg"));
                let _ = std::fs::remove_file(seg_path(&self.dir, seg, "ack"));
            }
        }
        let first = self.inner.lock().cur_seg;
        self.written_pos.store((first as u64) << 32, Ordering::Release);
        Ok(stats)
    }

    /// Start the writer thread.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        let me = self.clone();
        let h = std::thread::Builder::new().name("warren-store".into()).spawn(move || me.writer_loop())?;
        *self.thread.lock() = Some(h);
        Ok(())
    }

    /// Append a message record for queue `queue` (see [`queue_key`]). Returns its ref and LSN.
    pub fn append(
        self: &Arc<Self>,
        kind: u8,
        queue: u64,
        msg: &Message,
        expires_unix_ms: u64,
        priority: u8,
    ) -> (DiskRef, u64) {
        let len = log::record_len(msg);
        let mut inner = self.inner.lock();
        if inner.cur_size > 0 && inner.cur_size + len as u64 > SEGMENT_SIZE {
            let old = inner.cur_seg;
            inner.cur_seg += 1;
            inner.cur_size = 0;
            if !inner.live.contains_key(&old) {
                inner.batch.deletes.push(old);
            }
        }
        let seg = inner.cur_seg;
        let off = inner.cur_size as u32;
        inner.cur_size += len as u64;
        *inner.live.entry(seg).or_insert(0) += 1;
        inner.lsn += 1;
        let lsn = inner.lsn;
        let b = &mut inner.batch;
        b.last_lsn = lsn;
        match b.data.last_mut() {
            Some((s, buf)) if *s == seg => log::encode(buf, kind, queue, msg, expires_unix_ms, priority),
            _ => {
                let mut buf = Vec::with_capacity(64 * 1024);
                log::encode(&mut buf, kind, queue, msg, expires_unix_ms, priority);
                b.data.push((seg, buf));
            }
        }
        let wake = !inner.urgent;
        inner.urgent = true;
        drop(inner);
        if wake {
            self.wake.notify_one();
        }
        let disk = DiskRef {
            store: self.clone(),
            seg,
            off,
            len,
            body_len: msg.body().len() as u32,
            paged: false,
            transient: kind == log::KIND_PAGED,
            settled: false,
        };
        (disk, lsn)
    }

    /// Append `bytes` to external file `f` (a stream segment); returns the LSN a confirm waits
    /// for. `fill` writes the bytes into the batch's buffer (no intermediate copy).
    pub fn append_ext(&self, f: &Arc<ExtFile>, fill: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let mut inner = self.inner.lock();
        inner.lsn += 1;
        let lsn = inner.lsn;
        let b = &mut inner.batch;
        b.last_lsn = lsn;
        match b.ext.last_mut() {
            Some((g, buf)) if Arc::ptr_eq(g, f) => fill(buf),
            _ => {
                let mut buf = Vec::with_capacity(64 * 1024);
                fill(&mut buf);
                b.ext.push((f.clone(), buf));
            }
        }
        let wake = !inner.urgent;
        inner.urgent = true;
        drop(inner);
        if wake {
            self.wake.notify_one();
        }
        lsn
    }

    /// Remove a file or directory with the next batch (after everything appended before).
    pub fn remove_path(&self, path: PathBuf) {
        let mut inner = self.inner.lock();
        inner.batch.removals.push(path);
        inner.urgent = true;
        drop(inner);
        self.wake.notify_one();
    }

    /// The data directory's `streams` folder (stream segments live under it).
    pub fn streams_dir(&self) -> PathBuf {
        self.dir.parent().unwrap_or(&self.dir).join("streams")
    }

    /// Record that the message at `seg`/`off` was delivered (so it comes back redelivered).
    pub fn mark_delivered(&self, seg: u32, off: u32) {
        self.ack_entry(seg, off, AckKind::Delivered, false);
    }

    /// A `DiskRef` was dropped: the message left its queue for good.
    fn release(&self, seg: u32, off: u32) {
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        self.ack_entry(seg, off, AckKind::Acked, true);
    }

    /// A record recovery skips is gone: count it out of its segment, which is deleted (sealed) once
    /// nothing in it lives; nothing is written.
    fn forget(&self, seg: u32) {
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        count_out(&mut self.inner.lock(), seg);
    }

    fn ack_entry(&self, seg: u32, off: u32, kind: AckKind, release: bool) {
        let mut inner = self.inner.lock();
        inner.lsn += 1;
        inner.batch.last_lsn = inner.lsn;
        if release && count_out(&mut inner, seg) {
            return;
        }
        log::encode_ack(inner.batch.acks.entry(seg).or_default(), off, kind);
    }

    /// Everything appended so far: the LSN to wait for (and the writer is woken for it).
    pub fn barrier(&self) -> u64 {
        let mut inner = self.inner.lock();
        inner.urgent = true;
        let lsn = inner.lsn;
        drop(inner);
        self.wake.notify_one();
        lsn
    }

    /// LSN covered by the last fsync.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// The LSN covered by the last fsync, now.
    pub fn durable_lsn(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Wait until `lsn` is on disk.
    pub async fn wait_durable(&self, lsn: u64) {
        let mut rx = self.durable.subscribe();
        let _ = rx.wait_for(|d| *d >= lsn).await;
    }

    /// Whether the record at `seg`/`off`+`len` has been written (it can be read back).
    fn is_written(&self, d: &DiskRef) -> bool {
        ((d.seg as u64) << 32 | (d.off as u64 + d.len as u64)) <= self.written_pos.load(Ordering::Acquire)
    }

    /// The stand-in message of paged-out entries.
    pub fn placeholder(&self) -> Message {
        self.placeholder.clone()
    }

    /// Drop `m`'s body from memory if its record can be read back. Returns the bytes freed (body
    /// and head: [`QueuedMsg::mem_size`]).
    pub fn page_out(&self, m: &mut QueuedMsg) -> usize {
        let size = m.mem_size();
        match &mut m.disk {
            Some(d) if !d.paged && self.is_written(d) => {
                d.paged = true;
                m.msg = self.placeholder.clone();
                size
            }
            _ => 0,
        }
    }

    /// Read back the body of one paged message (one that leaves through a path other than its
    /// queue's head: a dead letter of an unacked message paged out under memory pressure).
    pub fn read_back(&self, m: &mut QueuedMsg) -> io::Result<()> {
        let Some(d) = m.disk.as_mut().filter(|d| d.paged) else { return Ok(()) };
        let msg = self.page_in(&[(d.seg, d.off, d.len)]).pop().unwrap_or_else(|| Err(io::Error::other("no record")))?;
        m.msg = msg;
        d.paged = false;
        Ok(())
    }

    /// Read a recovered record's whole message (held delayed messages are kept in memory).
    pub fn read_message(&self, d: &DiskRef) -> io::Result<Message> {
        self.page_in(&[(d.seg, d.off, d.len)]).pop().unwrap_or_else(|| Err(io::Error::other("no record")))
    }

    /// Read back paged messages: `refs` in queue order, at most [`PAGE_IN_MESSAGES`] of them.
    /// Records that are close together in one segment are read with one `pread`.
    pub fn page_in(&self, refs: &[(u32, u32, u32)]) -> Vec<io::Result<Message>> {
        let mut out = Vec::with_capacity(refs.len());
        let mut i = 0;
        while i < refs.len() {
            let (seg, start, _) = refs[i];
            let mut end = refs[i].1 as u64 + refs[i].2 as u64;
            let mut j = i + 1;
            while j < refs.len()
                && refs[j].0 == seg
                && refs[j].1 as u64 >= end
                && (refs[j].1 as u64 + refs[j].2 as u64) - start as u64 <= PAGE_IN_BYTES
            {
                end = refs[j].1 as u64 + refs[j].2 as u64;
                j += 1;
            }
            match self.read_at(seg, start as u64, (end - start as u64) as usize) {
                Ok(buf) => {
                    for r in &refs[i..j] {
                        let from = (r.1 - start) as usize;
                        out.push(log::decode(buf.slice(from..from + r.2 as usize)));
                    }
                }
                Err(e) => {
                    for _ in i..j {
                        out.push(Err(io::Error::new(e.kind(), e.to_string())));
                    }
                }
            }
            i = j;
        }
        out
    }

    fn read_at(&self, seg: u32, off: u64, len: usize) -> io::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        let f = {
            let mut r = self.readers.lock();
            match r.get(&seg) {
                Some(f) => f.clone(),
                None => {
                    if r.len() >= MAX_OPEN_FILES {
                        r.clear();
                    }
                    let f = Arc::new(File::open(seg_path(&self.dir, seg, "seg"))?);
                    r.insert(seg, f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)?;
        Ok(bytes::Bytes::from(buf))
    }

    /// Flush everything pending, stop the writer, and ignore drops from now on.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        {
            let mut inner = self.inner.lock();
            inner.stop = true;
        }
        self.wake.notify_one();
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    /// Whether the store's writes are failing (and being retried) right now.
    pub fn write_failing(&self) -> bool {
        self.write_failing.load(Ordering::Relaxed)
    }

    /// The writer thread: take the pending batch, write it, fsync, publish the durable LSN.
    ///
    /// A batch whose write fails is kept and tried again, with later batches appended behind it,
    /// until it succeeds: the durable LSN never moves past a record that is not on disk, so no
    /// publisher is confirmed for a message that was not written, and records keep their order.
    fn writer_loop(self: Arc<Self>) {
        let mut w = log::Writer::new(self.dir.clone());
        // Fault injection for the crash tests: a slow disk widens the window between a record's
        // arrival and its write, so a confirm sent too early would be caught by a kill -9.
        let delay =
            std::env::var(TEST_WRITE_DELAY_ENV).ok().and_then(|v| v.parse::<u64>().ok()).map(Duration::from_millis);
        // What failed to be written, to try again first.
        let mut carry: Option<Batch> = None;
        let mut failed_tries = 0u32;
        loop {
            let (fresh, stop) = {
                let mut inner = self.inner.lock();
                while !inner.urgent && !inner.stop {
                    let wait = if carry.is_some() { WRITE_RETRY_INTERVAL } else { ACK_FLUSH_INTERVAL };
                    let r = self.wake.wait_for(&mut inner, wait);
                    if r.timed_out() && (carry.is_some() || !inner.batch.is_empty()) {
                        break;
                    }
                }
                inner.urgent = false;
                (std::mem::take(&mut inner.batch), inner.stop)
            };
            let mut batch = match carry.take() {
                Some(mut c) => {
                    c.merge(fresh);
                    c
                }
                None => fresh,
            };
            let last = batch.last_lsn;
            let deletes = batch.deletes.clone();
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
            let result = w.write(&mut batch);
            if !deletes.is_empty() {
                let mut r = self.readers.lock();
                for s in &deletes {
                    r.remove(s);
                }
            }
            match result {
                Ok(pos) => {
                    if let Some(pos) = pos {
                        self.written_pos.store(pos, Ordering::Release);
                    }
                    if self.write_failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("message store: writes succeed again after {failed_tries} failed tries");
                    }
                    failed_tries = 0;
                }
                Err(e) => {
                    if !self.write_failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "message store: write failed: {e}; retrying every {WRITE_RETRY_INTERVAL:?}, nothing in it is confirmed until it succeeds (disk alarm set)"
                        );
                    }
                    failed_tries += 1;
                    if stop && failed_tries >= SHUTDOWN_WRITE_TRIES {
                        tracing::error!("message store: giving up at shutdown: unconfirmed records not written: {e}");
                        return;
                    }
                    carry = Some(batch);
                    std::thread::sleep(WRITE_RETRY_INTERVAL);
                    continue;
                }
            }
            if last > 0 {
                self.durable.send_if_modified(|d| {
                    let up = last > *d;
                    if up {
                        *d = last;
                    }
                    up
                });
            }
            if stop && self.inner.lock().batch.is_empty() {
                return;
            }
        }
    }
}
