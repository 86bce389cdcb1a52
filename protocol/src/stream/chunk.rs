//! Deliver frames: a subscription id (and, in version 2, the committed chunk id) followed by one
//! osiris chunk: a 48-byte header, then the entries.
//!
//! The server builds a Deliver with [`deliver_messages`] / [`deliver_entries`]: they write the frame
//! header, the chunk header and every entry's length prefix into one buffer and return the frame as
//! a list of pieces in which message bodies are the caller's own `Bytes` (vectored writes, no copy).
//! [`Deliver::decode`] reads a Deliver back (tests, and a client's view).
//!
//! Chunk header (all big-endian), as osiris writes it and RabbitMQ sends it:
//! `magic:4 version:4 | type:u8 | entries:u16 | records:u32 | timestamp:i64 | epoch:u64 |
//! chunk_id(first offset):u64 | crc:u32 | data_length:u32 | trailer_length:u32 | bloom_size:u8 |
//! reserved:u24`. Entries: simple `0:1 size:31 body`, or sub-entry batch `1:1 compression:3
//! reserved:4 | records:u16 | uncompressed_length:u32 | length:u32 | body`.
//!
//! # Invariants
//! - The CRC is CRC-32 over exactly the data section (every entry's header and body, in order),
//!   `data_length` bytes that directly follow the chunk header: what RabbitMQ's clients check.
//! - Built chunks carry no bloom filter and no trailer (`bloom_size` 0, `trailer_length` 0).
//!   RabbitMQ never sends either to a consumer (it skips them when reading the segment file, while
//!   keeping the stored header): clients read entries right after the header and ignore both fields.
//! - Building never panics: counts that do not fit the header are a [`ChunkError`].
use super::constants::{key, VERSION_1, VERSION_2};
use super::crc32::Crc32;
use super::error::{ChunkError, StreamDecodeError};
use super::frame::{self, SIZE_PREFIX};
use super::wire::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// Magic number 5 and chunk format version 0, in one byte (osiris: `?MAGIC:4, ?VERSION:4`).
pub const CHUNK_MAGIC_VERSION: u8 = 0x50;
/// The magic number, the high nibble of the first header byte.
const CHUNK_MAGIC: u8 = 5;
/// Chunk type of user data (the only type sent to consumers by default).
pub const CHUNK_TYPE_USER: u8 = 0;
/// Chunk type of a writer/offset tracking delta.
pub const CHUNK_TYPE_TRACKING_DELTA: u8 = 1;
/// Chunk type of a tracking snapshot.
pub const CHUNK_TYPE_TRACKING_SNAPSHOT: u8 = 2;
/// Bytes of the osiris chunk header.
pub const CHUNK_HEADER_SIZE: usize = 48;
/// Largest body of a simple entry (31-bit length).
pub const SIMPLE_ENTRY_MAX: usize = 0x7FFF_FFFF;
/// The high bit of an entry's first byte marks a sub-entry batch.
const SUB_BATCH_FLAG: u8 = 0x80;
/// Bytes of a simple entry's length prefix.
const SIMPLE_HEADER_SIZE: usize = 4;
/// Bytes before the chunk in a version 1 / version 2 Deliver (size, key, version, subscription id
/// and the committed chunk id).
const DELIVER_V1_PREFIX: usize = SIZE_PREFIX + 4 + 1;
const DELIVER_V2_PREFIX: usize = DELIVER_V1_PREFIX + 8;

/// Compression types of a sub-entry batch (3 bits).
pub mod compression {
    /// Records stored as is.
    pub const NONE: u8 = 0;
    /// gzip.
    pub const GZIP: u8 = 1;
    /// Snappy.
    pub const SNAPPY: u8 = 2;
    /// LZ4.
    pub const LZ4: u8 = 3;
    /// Zstandard.
    pub const ZSTD: u8 = 4;
}

/// A sub-entry batch, kept as the client sent it (the body may be compressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubBatch {
    /// Compression type, 0..=7 (see [`compression`]).
    pub compression: u8,
    /// Number of records (messages) in the batch.
    pub record_count: u16,
    /// Length of the body once uncompressed.
    pub uncompressed_size: u32,
    /// The (possibly compressed) body: records as `size:u32 bytes` once uncompressed.
    pub data: Bytes,
}

impl SubBatch {
    /// The records of an uncompressed batch (`size:u32 bytes` each, as the clients write them), as
    /// slices of `data`; `None` if the batch is compressed or malformed.
    pub fn uncompressed_records(&self) -> Option<Vec<Bytes>> {
        if self.compression != compression::NONE {
            return None;
        }
        let mut r = Reader::new(self.data.clone());
        let n = self.record_count as usize;
        let mut out = Vec::with_capacity(n.min(self.data.len() / 4));
        for _ in 0..n {
            let size = r.u32().ok()? as usize;
            out.push(r.take(size).ok()?);
        }
        r.end().ok()?;
        Some(out)
    }
}

/// One entry of a chunk's data section (also the body of a published message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEntry {
    /// One message.
    Simple(Bytes),
    /// A sub-entry batch of several messages.
    SubBatch(SubBatch),
}

impl ChunkEntry {
    /// Records (messages) this entry counts for in the chunk header.
    pub fn records(&self) -> u32 {
        match self {
            ChunkEntry::Simple(_) => 1,
            ChunkEntry::SubBatch(b) => b.record_count as u32,
        }
    }

    /// Decode one entry: a simple entry or a sub-entry batch, told apart by the high bit.
    pub(crate) fn decode(r: &mut Reader) -> Result<ChunkEntry, StreamDecodeError> {
        // spec(osiris.entry): the top bit of the first byte is the entry type (0 simple, 1 batch).
        if r.peek_u8()? & SUB_BATCH_FLAG == 0 {
            let size = r.u32()? as usize;
            return Ok(ChunkEntry::Simple(r.take(size)?));
        }
        let flags = r.u8()?;
        let record_count = r.u16()?;
        let uncompressed_size = r.u32()?;
        let len = r.u32()? as usize;
        let data = r.take(len)?;
        Ok(ChunkEntry::SubBatch(SubBatch { compression: (flags >> 4) & 0x07, record_count, uncompressed_size, data }))
    }

    /// Encode the entry (header and body) into one buffer; lengths are not checked (tests and
    /// small frames; the Deliver builder checks them).
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        match self {
            ChunkEntry::Simple(b) => {
                out.put_u32(b.len() as u32 & SIMPLE_ENTRY_MAX as u32);
                out.put_slice(b);
            }
            ChunkEntry::SubBatch(s) => {
                put_sub_batch_header(out, s, s.data.len() as u32);
                out.put_slice(&s.data);
            }
        }
    }
}

fn put_sub_batch_header(out: &mut BytesMut, s: &SubBatch, len: u32) {
    out.put_u8(SUB_BATCH_FLAG | ((s.compression & 0x07) << 4));
    out.put_u16(s.record_count);
    out.put_u32(s.uncompressed_size);
    out.put_u32(len);
}

/// The chunk header fields the server chooses; the rest is computed from the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkMeta {
    /// Chunk type ([`CHUNK_TYPE_USER`] for messages).
    pub chunk_type: u8,
    /// Milliseconds since the epoch when the chunk was written (clients expose it per message).
    pub timestamp: i64,
    /// Writer epoch (leader term); clients ignore it.
    pub epoch: u64,
    /// Offset of the first record (the chunk id); record i of the chunk has offset first_offset + i.
    pub first_offset: u64,
}

/// A decoded 48-byte chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Magic (high nibble, 5) and format version (low nibble).
    pub magic_version: u8,
    /// Chunk type.
    pub chunk_type: u8,
    /// Number of entries in the data section.
    pub num_entries: u16,
    /// Number of records (a sub-entry batch counts its records).
    pub num_records: u32,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Writer epoch.
    pub epoch: u64,
    /// Offset of the first record.
    pub first_offset: u64,
    /// CRC-32 of the data section.
    pub crc: u32,
    /// Bytes of the data section.
    pub data_length: u32,
    /// Bytes of the trailer (stored tracking data; not sent with user chunks).
    pub trailer_length: u32,
    /// Bytes of the bloom filter stored before the data (never sent to consumers).
    pub bloom_size: u8,
}

impl ChunkHeader {
    /// The server-chosen fields.
    pub fn meta(&self) -> ChunkMeta {
        ChunkMeta {
            chunk_type: self.chunk_type,
            timestamp: self.timestamp,
            epoch: self.epoch,
            first_offset: self.first_offset,
        }
    }

    fn write(&self, mut out: &mut [u8]) {
        out.put_u8(self.magic_version);
        out.put_u8(self.chunk_type);
        out.put_u16(self.num_entries);
        out.put_u32(self.num_records);
        out.put_i64(self.timestamp);
        out.put_u64(self.epoch);
        out.put_u64(self.first_offset);
        out.put_u32(self.crc);
        out.put_u32(self.data_length);
        out.put_u32(self.trailer_length);
        out.put_u8(self.bloom_size);
        // Reserved: 24 zero bits.
        out.put_bytes(0, 3);
    }

    fn decode(r: &mut Reader) -> Result<ChunkHeader, StreamDecodeError> {
        let h = ChunkHeader {
            magic_version: r.u8()?,
            chunk_type: r.u8()?,
            num_entries: r.u16()?,
            num_records: r.u32()?,
            timestamp: r.i64()?,
            epoch: r.u64()?,
            first_offset: r.u64()?,
            crc: r.u32()?,
            data_length: r.u32()?,
            trailer_length: r.u32()?,
            bloom_size: r.u8()?,
        };
        r.take(3)?;
        Ok(h)
    }
}

/// A Deliver frame ready to write: the pieces, in order, make the whole frame (size prefix
/// included). Buffer pieces and message bodies alternate; empty pieces are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverFrame {
    /// The frame, in order: header/prefix slices of one buffer and the callers' message bodies.
    pub pieces: Vec<Bytes>,
    /// Total bytes of the pieces (the frame with its size prefix).
    pub len: usize,
}

impl DeliverFrame {
    /// Copy the whole frame into `out` (for small chunks, or where vectored writes do not pay).
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(self.len);
        for p in &self.pieces {
            out.put_slice(p);
        }
    }

    /// The whole frame in one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len);
        self.write_to(&mut out);
        out.freeze()
    }
}

/// An entry as the builder sees it.
#[derive(Clone, Copy)]
enum EntryRef<'a> {
    Simple(&'a Bytes),
    SubBatch(&'a SubBatch),
}

/// Build a Deliver of simple entries, one per message body. `committed_chunk_id` `Some` makes a
/// version 2 Deliver (only for clients that announced Deliver v2 in ExchangeCommandVersions).
pub fn deliver_messages(
    subscription_id: u8,
    committed_chunk_id: Option<u64>,
    meta: &ChunkMeta,
    messages: &[Bytes],
) -> Result<DeliverFrame, ChunkError> {
    build(subscription_id, committed_chunk_id, meta, messages.iter().map(EntryRef::Simple))
}

/// Build a Deliver of any entries (simple messages and sub-entry batches as published).
pub fn deliver_entries(
    subscription_id: u8,
    committed_chunk_id: Option<u64>,
    meta: &ChunkMeta,
    entries: &[ChunkEntry],
) -> Result<DeliverFrame, ChunkError> {
    let refs = entries.iter().map(|e| match e {
        ChunkEntry::Simple(b) => EntryRef::Simple(b),
        ChunkEntry::SubBatch(s) => EntryRef::SubBatch(s),
    });
    build(subscription_id, committed_chunk_id, meta, refs)
}

fn build<'a>(
    subscription_id: u8,
    committed_chunk_id: Option<u64>,
    meta: &ChunkMeta,
    entries: impl ExactSizeIterator<Item = EntryRef<'a>>,
) -> Result<DeliverFrame, ChunkError> {
    let n = entries.len();
    // spec(osiris.chunk): the number of entries is a u16.
    let num_entries = u16::try_from(n).map_err(|_| ChunkError::TooManyEntries(n))?;
    let (version, prefix) = match committed_chunk_id {
        Some(_) => (VERSION_2, DELIVER_V2_PREFIX),
        None => (VERSION_1, DELIVER_V1_PREFIX),
    };
    let mut head = BytesMut::with_capacity(prefix + CHUNK_HEADER_SIZE + n * SIMPLE_HEADER_SIZE);
    let at = frame::begin(&mut head, key::DELIVER, version);
    head.put_u8(subscription_id);
    if let Some(id) = committed_chunk_id {
        // spec(stream.deliver): version 2 adds the committed chunk id before the chunk.
        head.put_u64(id);
    }
    let chunk_at = head.len();
    head.put_bytes(0, CHUNK_HEADER_SIZE);
    let data_at = head.len();

    // Entry headers go into `head`; bodies stay separate. `cuts` remembers where each body goes.
    let mut cuts: Vec<(usize, &'a Bytes)> = Vec::with_capacity(n);
    let mut records: u64 = 0;
    let mut bodies_len: u64 = 0;
    for e in entries {
        let body = match e {
            EntryRef::Simple(b) => {
                // spec(osiris.entry): a simple entry's size is 31 bits.
                if b.len() > SIMPLE_ENTRY_MAX {
                    return Err(ChunkError::EntryTooLarge(b.len()));
                }
                head.put_u32(b.len() as u32);
                records += 1;
                b
            }
            EntryRef::SubBatch(s) => {
                let len = u32::try_from(s.data.len()).map_err(|_| ChunkError::EntryTooLarge(s.data.len()))?;
                put_sub_batch_header(&mut head, s, len);
                records += s.record_count as u64;
                &s.data
            }
        };
        bodies_len += body.len() as u64;
        if !body.is_empty() {
            cuts.push((head.len(), body));
        }
    }
    let num_records = u32::try_from(records).map_err(|_| ChunkError::TooManyRecords)?;
    let data_len = (head.len() - data_at) as u64 + bodies_len;
    let frame_size = (head.len() - at - SIZE_PREFIX) as u64 + bodies_len;
    let too_large = || ChunkError::TooLarge(frame_size + SIZE_PREFIX as u64);
    let data_length = u32::try_from(data_len).map_err(|_| too_large())?;
    let size = u32::try_from(frame_size).map_err(|_| too_large())?;

    // spec(osiris.chunk): the CRC covers the data section only, in wire order.
    let mut crc = Crc32::new();
    let mut from = data_at;
    for &(cut, body) in &cuts {
        crc.update(&head[from..cut]);
        crc.update(body);
        from = cut;
    }
    crc.update(&head[from..]);

    let header = ChunkHeader {
        magic_version: CHUNK_MAGIC_VERSION,
        chunk_type: meta.chunk_type,
        num_entries,
        num_records,
        timestamp: meta.timestamp,
        epoch: meta.epoch,
        first_offset: meta.first_offset,
        crc: crc.finish(),
        data_length,
        trailer_length: 0,
        bloom_size: 0,
    };
    header.write(&mut head[chunk_at..data_at]);
    head[at..at + SIZE_PREFIX].copy_from_slice(&size.to_be_bytes());

    let head = head.freeze();
    let mut pieces = Vec::with_capacity(2 * cuts.len() + 1);
    let mut from = 0;
    for (cut, body) in cuts {
        pieces.push(head.slice(from..cut));
        pieces.push(body.clone());
        from = cut;
    }
    if from < head.len() {
        pieces.push(head.slice(from..));
    }
    Ok(DeliverFrame { pieces, len: size as usize + SIZE_PREFIX })
}

/// A decoded Deliver frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// The subscription the chunk is for.
    pub subscription_id: u8,
    /// Version 2 only: the id of the last committed chunk of the stream.
    pub committed_chunk_id: Option<u64>,
    /// The chunk header.
    pub header: ChunkHeader,
    /// The entries, slices of the frame.
    pub entries: Vec<ChunkEntry>,
}

impl Deliver {
    /// Decode a whole Deliver frame (as returned by `split_frame`): checks the key and version,
    /// the magic number, the CRC, and that the entries fill `data_length` and match the counts.
    /// Bytes after the data section (a trailer) are ignored.
    pub fn decode(frame: Bytes) -> Result<Deliver, StreamDecodeError> {
        let mut r = Reader::new(frame);
        let key = r.u16()?;
        let version = r.u16()?;
        if key != key::DELIVER {
            return Err(StreamDecodeError::UnknownCommand { key, version });
        }
        Deliver::decode_body(version, r)
    }

    /// Decode after the key (DELIVER) and `version`.
    pub(crate) fn decode_body(version: u16, mut r: Reader) -> Result<Deliver, StreamDecodeError> {
        let subscription_id = r.u8()?;
        let committed_chunk_id = match version {
            VERSION_1 => None,
            VERSION_2 => Some(r.u64()?),
            _ => return Err(StreamDecodeError::UnknownCommand { key: key::DELIVER, version }),
        };
        let header = ChunkHeader::decode(&mut r)?;
        if header.magic_version >> 4 != CHUNK_MAGIC {
            return Err(StreamDecodeError::Invalid("not an osiris chunk (bad magic)"));
        }
        let data = r.take(header.data_length as usize)?;
        let computed = super::crc32::crc32(&data);
        if computed != header.crc {
            return Err(StreamDecodeError::BadCrc { found: header.crc, computed });
        }
        let n = header.num_entries as usize;
        let mut entries = Vec::with_capacity(n.min(data.len() / SIMPLE_HEADER_SIZE));
        let mut d = Reader::new(data);
        let mut records: u64 = 0;
        for _ in 0..n {
            let e = ChunkEntry::decode(&mut d)?;
            records += e.records() as u64;
            entries.push(e);
        }
        d.end()?;
        if records != header.num_records as u64 {
            return Err(StreamDecodeError::Invalid("chunk record count does not match its entries"));
        }
        Ok(Deliver { subscription_id, committed_chunk_id, header, entries })
    }

    /// The bodies of the simple entries, in order (sub-entry batches are skipped).
    pub fn messages(&self) -> impl Iterator<Item = &Bytes> {
        self.entries.iter().filter_map(|e| match e {
            ChunkEntry::Simple(b) => Some(b),
            ChunkEntry::SubBatch(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::frame::split_frame;

    fn meta() -> ChunkMeta {
        ChunkMeta { chunk_type: CHUNK_TYPE_USER, timestamp: 1_700_000_000_123, epoch: 3, first_offset: 42 }
    }

    /// Reassemble, split and decode a built frame.
    fn roundtrip(f: &DeliverFrame) -> Deliver {
        assert_eq!(f.len, f.pieces.iter().map(|p| p.len()).sum::<usize>());
        assert!(f.pieces.iter().all(|p| !p.is_empty()));
        let mut buf = BytesMut::from(&f.to_bytes()[..]);
        let frame = split_frame(&mut buf, 0).expect("valid").expect("complete");
        assert!(buf.is_empty());
        Deliver::decode(frame).expect("decodes")
    }

    #[test]
    fn bodies_are_not_copied() {
        let msgs = vec![Bytes::from_static(b"hello"), Bytes::from(vec![7u8; 1000]), Bytes::from_static(b"!")];
        let f = deliver_messages(9, None, &meta(), &msgs).expect("builds");
        // header+prefix0, body0, prefix1, body1, prefix2, body2
        assert_eq!(f.pieces.len(), 6);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(f.pieces[2 * i + 1].as_ptr(), m.as_ptr(), "body {i} is the caller's buffer");
        }
        let d = roundtrip(&f);
        assert_eq!(d.subscription_id, 9);
        assert_eq!(d.committed_chunk_id, None);
        assert_eq!(d.messages().cloned().collect::<Vec<_>>(), msgs);
        assert_eq!(d.header.meta(), meta());
        assert_eq!(d.header.num_entries, 3);
        assert_eq!(d.header.num_records, 3);
        assert_eq!(d.header.magic_version, 0x50);
        assert_eq!(d.header.data_length as usize, 4 * 3 + 5 + 1000 + 1);
        assert_eq!((d.header.bloom_size, d.header.trailer_length), (0, 0));
    }

    #[test]
    fn version_2_and_sub_batches() {
        let batch = SubBatch {
            compression: compression::NONE,
            record_count: 2,
            uncompressed_size: 10,
            data: Bytes::from_static(&[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'b']),
        };
        let entries = vec![
            ChunkEntry::Simple(Bytes::new()),
            ChunkEntry::SubBatch(batch.clone()),
            ChunkEntry::Simple(Bytes::from_static(b"z")),
        ];
        let f = deliver_entries(1, Some(40), &meta(), &entries).expect("builds");
        let d = roundtrip(&f);
        assert_eq!(d.committed_chunk_id, Some(40));
        assert_eq!(d.entries, entries);
        assert_eq!(d.header.num_entries, 3);
        assert_eq!(d.header.num_records, 4);
        assert_eq!(batch.uncompressed_records(), Some(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]));
    }

    #[test]
    fn empty_chunk() {
        let f = deliver_messages(0, None, &meta(), &[]).expect("builds");
        assert_eq!(f.pieces.len(), 1);
        assert_eq!(f.len, DELIVER_V1_PREFIX + CHUNK_HEADER_SIZE);
        let d = roundtrip(&f);
        assert!(d.entries.is_empty());
        assert_eq!(d.header.crc, 0);
    }

    #[test]
    fn limits_are_errors() {
        let many = vec![Bytes::new(); 65536];
        assert_eq!(deliver_messages(0, None, &meta(), &many), Err(ChunkError::TooManyEntries(65536)));
        assert!(deliver_messages(0, None, &meta(), &many[..65535]).is_ok());
    }

    #[test]
    fn corrupted_chunk_is_refused() {
        let f = deliver_messages(0, None, &meta(), &[Bytes::from_static(b"abc")]).expect("builds");
        let mut b = f.to_bytes().to_vec();
        let last = b.len() - 1;
        b[last] ^= 1;
        let frame = Bytes::copy_from_slice(&b[SIZE_PREFIX..]);
        assert!(matches!(Deliver::decode(frame), Err(StreamDecodeError::BadCrc { .. })));
    }

    /// Captured layout: a Deliver v1 as RabbitMQ sends it and rstream/the Java client read it (one
    /// message "hi" at offset 5), with the CRC zlib gives for the data section.
    #[test]
    fn decodes_reference_bytes() {
        #[rustfmt::skip]
        let frame: &[u8] = &[
            0x00, 0x08, 0x00, 0x01, // key DELIVER, version 1
            0x02,                   // subscription id
            0x50, 0x00,             // magic 5 version 0, chunk type user
            0x00, 0x01,             // 1 entry
            0x00, 0x00, 0x00, 0x01, // 1 record
            0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00, // timestamp 1700000000000
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // epoch 1
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // first offset 5
            0x2B, 0x0C, 0x4D, 0x9E, // crc32(00 00 00 02 'h' 'i')
            0x00, 0x00, 0x00, 0x06, // data length
            0x00, 0x00, 0x00, 0x00, // trailer length
            0x00, 0x00, 0x00, 0x00, // bloom size, reserved
            0x00, 0x00, 0x00, 0x02, b'h', b'i',
        ];
        let d = Deliver::decode(Bytes::from_static(frame)).expect("decodes");
        assert_eq!(d.subscription_id, 2);
        assert_eq!(d.header.first_offset, 5);
        assert_eq!(d.header.timestamp, 1_700_000_000_000);
        assert_eq!(d.messages().collect::<Vec<_>>(), vec![&Bytes::from_static(b"hi")]);
        // And the builder produces exactly these bytes.
        let m = ChunkMeta { chunk_type: 0, timestamp: 1_700_000_000_000, epoch: 1, first_offset: 5 };
        let built = deliver_messages(2, None, &m, &[Bytes::from_static(b"hi")]).expect("builds");
        assert_eq!(&built.to_bytes()[SIZE_PREFIX..], frame);
    }
}
