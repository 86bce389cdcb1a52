//! The segment log's on-disk format and its writer.
//!
//! Runs in: record encoding in the appending task (under the store's lock); `Writer` in the store
//! writer thread; `scan` / `read_acks` at recovery.
//!
//! A record (all integers little-endian):
//! ```text
//! u32 length of what follows the 8-byte prefix   u32 CRC-32 of those bytes
//! u8 kind   u64 queue key   u64 expiry (Unix ms, 0 = none)   u8 priority
//! u8 len + exchange   u8 len + routing key   u32 len + raw properties   body (the rest)
//! ```
//! An ack-file entry is 8 bytes: `u32 record offset, u8 kind (1 acked, 2 delivered), 3 bytes of the
//! CRC-32 of the first 5`.
//!
//! # Invariants
//! - A record is valid only if its length fits in the file and its CRC matches: `scan` stops at the
//!   first invalid one, so a torn or corrupt tail is never served.
//! - The writer fsyncs every segment file it wrote in a batch before the batch counts as durable,
//!   and fsyncs the directory when it creates a segment file.
//! - Records are written at the offsets their appenders were given, never past a write that
//!   failed: a failed write is cut back and retried at the same offset, so a torn record can only
//!   be a segment's tail (which recovery cuts), never sit before good records.
use super::{seg_path, Batch, MAX_OPEN_FILES};
use crate::message::Message;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use warren_protocol::ShortStr;

/// A persistent message of a durable queue: recovered at start.
pub const KIND_PERSISTENT: u8 = 1;
/// A message paged out under memory pressure: not recovered.
pub const KIND_PAGED: u8 = 2;
/// Bytes before the exchange name: prefix (8) + kind + queue + expiry + priority.
const FIXED: usize = 8 + 1 + 8 + 8 + 1;
/// Records larger than this are treated as corruption (RabbitMQ's hard limit is 512 MiB).
const MAX_RECORD: usize = 600 * 1024 * 1024;

/// Ack-file entry kinds (bit flags when merged at recovery).
#[derive(Debug, Clone, Copy)]
pub enum AckKind {
    Acked = 1,
    Delivered = 2,
}

/// The fixed fields of a record.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    pub kind: u8,
    pub queue: u64,
    pub expires_unix_ms: u64,
    pub priority: u8,
    pub body_len: u32,
}

/// Bytes a record for `m` takes.
pub fn record_len(m: &Message) -> u32 {
    (FIXED + m.encoded_parts_len()) as u32
}

/// Append the record for `m` to `buf`.
pub fn encode(buf: &mut Vec<u8>, kind: u8, queue: u64, m: &Message, expires_unix_ms: u64, priority: u8) {
    let start = buf.len();
    let len = record_len(m) as usize;
    buf.reserve(len);
    buf.extend_from_slice(&((len - 8) as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind);
    buf.extend_from_slice(&queue.to_le_bytes());
    buf.extend_from_slice(&expires_unix_ms.to_le_bytes());
    buf.push(priority);
    m.encode_parts(buf);
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// CRC-32 (IEEE 802.3, reflected: the checksum `crc32fast` computes) one byte at a time, for
/// the 5 checksummed bytes of an ack-file entry: two entries are made per persistent message (its
/// delivered mark and its ack), and `crc32fast::hash` took ~90 instructions each on 5 bytes (its
/// CPU feature check, then its small-input path), this ~25. Records keep `crc32fast` (~90 bytes
/// and more, where its vectorised path pays).
fn crc32_small(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in bytes {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Append an ack-file entry.
pub fn encode_ack(buf: &mut Vec<u8>, off: u32, kind: AckKind) {
    let mut e = [0u8; 8];
    e[..4].copy_from_slice(&off.to_le_bytes());
    e[4] = kind as u8;
    let crc = crc32_small(&e[..5]).to_le_bytes();
    e[5..].copy_from_slice(&crc[..3]);
    buf.extend_from_slice(&e);
}

/// Parse the fixed part of a record whose bytes (prefix included) are `r`; `None` if malformed.
fn parse(r: &[u8]) -> Option<(RecordHeader, usize, usize)> {
    let kind = *r.get(8)?;
    let queue = u64::from_le_bytes(r.get(9..17)?.try_into().ok()?);
    let expires_unix_ms = u64::from_le_bytes(r.get(17..25)?.try_into().ok()?);
    let priority = *r.get(25)?;
    let mut at = FIXED;
    let ex = *r.get(at)? as usize;
    at += 1 + ex;
    let rk = *r.get(at)? as usize;
    at += 1 + rk;
    let pl = u32::from_le_bytes(r.get(at..at + 4)?.try_into().ok()?) as usize;
    at += 4;
    let props_at = at;
    at = at.checked_add(pl)?;
    if at > r.len() {
        return None;
    }
    let body_len = (r.len() - at) as u32;
    Some((RecordHeader { kind, queue, expires_unix_ms, priority, body_len }, props_at, at))
}

/// Rebuild the message from a whole record (read back from disk).
pub fn decode(r: Bytes) -> io::Result<Message> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "corrupt message record");
    if r.len() < 8 {
        return Err(bad());
    }
    let crc = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
    if crc32fast::hash(&r[8..]) != crc {
        return Err(bad());
    }
    let (_, props_at, body_at) = parse(&r).ok_or_else(bad)?;
    let ex = r[FIXED] as usize;
    let exchange = ShortStr::truncating(r.slice(FIXED + 1..FIXED + 1 + ex));
    let rk_at = FIXED + 1 + ex;
    let rk = r[rk_at] as usize;
    let routing_key = ShortStr::truncating(r.slice(rk_at + 1..rk_at + 1 + rk));
    let properties = r.slice(props_at..body_at);
    let body = r.slice(body_at..);
    Message::new(exchange, routing_key, properties, body).map_err(|_| bad())
}

/// Walk a segment's records: `(offset, length, header)` of each valid one, and the length of the
/// valid prefix (anything after it is a torn or corrupt tail).
pub fn scan(data: &[u8]) -> (Vec<(usize, usize, RecordHeader)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let n = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let crc = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
        if n > MAX_RECORD || at + 8 + n > data.len() {
            break;
        }
        let rec = &data[at..at + 8 + n];
        if crc32fast::hash(&rec[8..]) != crc {
            break;
        }
        let Some((h, _, _)) = parse(rec) else { break };
        out.push((at, 8 + n, h));
        at += 8 + n;
    }
    (out, at)
}

/// A segment's ack file: record offset -> merged `AckKind` bits. Invalid entries are skipped.
pub fn read_acks(path: &std::path::Path) -> HashMap<u32, u8> {
    let mut out = HashMap::new();
    let Ok(data) = std::fs::read(path) else { return out };
    for e in data.chunks_exact(8) {
        let crc = crc32_small(&e[..5]).to_le_bytes();
        if e[5..] != crc[..3] {
            continue;
        }
        let off = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        *out.entry(off).or_insert(0) |= e[4];
    }
    out
}

/// Make a segment's first `len` bytes durable (`fdatasync`): the one place the message store
/// syncs records. With [`super::TEST_SYNC_LOG_ENV`] set (tests only), each sync is then recorded
/// as `seg <file> <len>` in that file, so a power-loss test can cut every segment back to what
/// was really synced; a write path that skipped this call would be caught by it.
fn sync_segment(f: &File, seg: u32, len: u64, log: &mut Option<File>) -> io::Result<()> {
    f.sync_data()?;
    if let Some(l) = log {
        l.write_all(format!("seg {seg:08}.seg {len}\n").as_bytes())?;
    }
    Ok(())
}

/// Append `data` to external file `f` at its written position and sync it; a failed write is
/// cut back (the retry writes at the same place). A dropped file is skipped.
fn write_ext(f: &super::ExtFile, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::Ordering;
    if f.dropped.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut h = f.handle.lock();
    if h.is_none() {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&f.path)?;
        if let Some(dir) = f.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        *h = Some(file);
    }
    let Some(file) = h.as_ref() else { return Err(io::Error::other("no file")) };
    let at = f.written.load(Ordering::Acquire);
    if let Err(e) = file.write_all_at(data, at).and_then(|()| file.sync_data()) {
        let _ = file.set_len(at);
        if f.dropped.load(Ordering::Acquire) {
            return Ok(());
        }
        return Err(e);
    }
    f.written.store(at + data.len() as u64, Ordering::Release);
    Ok(())
}

/// The writer thread's files.
pub struct Writer {
    /// The segment directory.
    dir: PathBuf,
    /// The segment being appended to.
    cur: Option<(u32, File)>,
    /// Open ack files.
    acks: HashMap<u32, File>,
    /// Bytes written and synced to `cur` (its end offset): the next record goes exactly here.
    cur_len: u64,
    /// Tests only: where syncs are recorded (see [`sync_segment`]).
    sync_log: Option<File>,
}

impl Writer {
    pub fn new(dir: PathBuf) -> Writer {
        let sync_log = std::env::var_os(super::TEST_SYNC_LOG_ENV)
            .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
        Writer { dir, cur: None, acks: HashMap::new(), cur_len: 0, sync_log }
    }

    fn segment(&mut self, seg: u32) -> io::Result<&mut File> {
        if self.cur.as_ref().is_none_or(|(s, _)| *s != seg) {
            // The sealed segment is written and synced whole: its pages are clean, so the page
            // cache may drop them. A growing queue pages millions of records through here, which
            // otherwise stay cached until their segment is deleted (0.6-2 GB for 20 M messages);
            // reading a paged message back then reads the disk, as fast here as from the cache
            // (draining 20 M paged messages: 1.84 M msgs/s against 1.85-1.94 M). Advice only: a
            // failure changes nothing.
            if let Some((_, old)) = &self.cur {
                let _ = rustix::fs::fadvise(old, 0, None, rustix::fs::Advice::DontNeed);
            }
            // Not O_APPEND: records are written at the offsets the appenders gave them
            // (`write_all_at`), so a retried write lands where the failed one began.
            let f =
                OpenOptions::new().create(true).truncate(false).write(true).open(seg_path(&self.dir, seg, "seg"))?;
            // The new file's directory entry must survive a crash too.
            File::open(&self.dir)?.sync_all()?;
            self.cur_len = f.metadata()?.len();
            self.cur = Some((seg, f));
        }
        match &mut self.cur {
            Some((_, f)) => Ok(f),
            None => Err(io::Error::other("no segment")),
        }
    }

    /// Write a batch: deletions first (they free space), then records (each segment's bytes
    /// written and fsynced), then ack entries (written, not fsynced). What is done is taken out
    /// of `b`; on an error the rest stays in `b` to be retried in the same order, and no torn
    /// record is left before a later good one (a failed record write is cut back, and the next
    /// attempt writes at the same offset). Returns the new written position (`seg << 32 | end`)
    /// when records were written.
    pub(super) fn write(&mut self, b: &mut Batch) -> io::Result<Option<u64>> {
        use std::os::unix::fs::FileExt;
        if !b.deletes.is_empty() {
            // Every record of a deleted segment is acked: its pending bytes need not be written.
            let deletes = std::mem::take(&mut b.deletes);
            b.data.retain(|(s, _)| !deletes.contains(s));
            for seg in &deletes {
                b.acks.remove(seg);
                self.acks.remove(seg);
                if self.cur.as_ref().is_some_and(|(s, _)| s == seg) {
                    self.cur = None;
                }
                let _ = std::fs::remove_file(seg_path(&self.dir, *seg, "seg"));
                let _ = std::fs::remove_file(seg_path(&self.dir, *seg, "ack"));
            }
        }
        let mut pos = None;
        while let Some((seg, data)) = b.data.first() {
            let seg = *seg;
            let at = match self.segment(seg) {
                Ok(_) => self.cur_len,
                Err(e) => return Err(e),
            };
            let Some((_, f)) = &self.cur else { return Err(io::Error::other("no segment")) };
            let end = at + data.len() as u64;
            if let Err(e) = f.write_all_at(data, at).and_then(|()| sync_segment(f, seg, end, &mut self.sync_log)) {
                // Whatever part of the write landed is cut, so a crash now leaves no torn
                // record; the retry writes at `at` again either way.
                let _ = f.set_len(at);
                return Err(e);
            }
            self.cur_len = end;
            pos = Some((seg as u64) << 32 | self.cur_len);
            b.data.remove(0);
        }
        while let Some((f, data)) = b.ext.first() {
            write_ext(f, data)?;
            b.ext.remove(0);
        }
        for path in std::mem::take(&mut b.removals) {
            let r = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(e) = r {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("message store: cannot remove {}: {e}", path.display());
                }
            }
        }
        let segs: Vec<u32> = b.acks.keys().copied().collect();
        for seg in segs {
            if !self.acks.contains_key(&seg) {
                if self.acks.len() >= MAX_OPEN_FILES {
                    self.acks.clear();
                }
                let f = OpenOptions::new().create(true).append(true).open(seg_path(&self.dir, seg, "ack"))?;
                self.acks.insert(seg, f);
            }
            let (Some(f), Some(entries)) = (self.acks.get_mut(&seg), b.acks.get(&seg)) else { continue };
            if let Err(e) = f.write_all(entries) {
                // A torn 8-byte entry would shift every later one: cut back to whole entries
                // (the retry writes them all again; a repeated entry is harmless).
                if let Ok(m) = f.metadata() {
                    let _ = f.set_len(m.len() - m.len() % 8);
                }
                return Err(e);
            }
            b.acks.remove(&seg);
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_crc_is_crc32fast_s_checksum() {
        // Every ack-entry shape (offsets across the range, both kinds) and other short inputs.
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff; 5], b"123456789".to_vec()];
        for off in [0u32, 1, 0x80, 0xffff, 0x0123_4567, 8 * 1024 * 1024 - 8, u32::MAX] {
            for kind in [AckKind::Acked, AckKind::Delivered] {
                let mut e = off.to_le_bytes().to_vec();
                e.push(kind as u8);
                inputs.push(e);
            }
        }
        for input in &inputs {
            assert_eq!(crc32_small(input), crc32fast::hash(input), "input {input:?}");
        }
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32_small(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn ack_entries_read_back_and_torn_ones_are_skipped() {
        let mut buf = Vec::new();
        encode_ack(&mut buf, 4096, AckKind::Delivered);
        encode_ack(&mut buf, 4096, AckKind::Acked);
        encode_ack(&mut buf, 77, AckKind::Delivered);
        buf[21] ^= 1; // the third entry's checksum no longer matches
        let path = std::env::temp_dir().join(format!("warren-ack-test-{}", std::process::id()));
        std::fs::write(&path, &buf).expect("write");
        let acks = read_acks(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(acks.get(&4096), Some(&(AckKind::Delivered as u8 | AckKind::Acked as u8)));
        assert_eq!(acks.get(&77), None);
    }
}
