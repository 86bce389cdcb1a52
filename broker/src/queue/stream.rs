//! Stream queues (`x-queue-type: stream`) over AMQP 0-9-1: the queue's log instead of its ready
//! list, non-destructive consumers that each read from their own offset, acks as credit only.
//!
//! Runs in: the same tasks as the rest of the queue, under the queue lock.
//!
//! # Invariants
//! - A stream consumer's cursor (`StreamCursor::next`) only moves under the queue lock, forward.
//! - Consuming never removes a message; only retention does (whole segments).
//! - Every delivery carries the `x-stream-offset` header with its offset.
use super::consumer::Consumer;
use super::{Queue, QueueState};
use crate::error::{AmqpError, AmqpResult};
use crate::message::{Message, QueuedMsg};
use crate::stream::offset::{self, OffsetSpec};
use crate::stream::record::{Entry, Payload};
use crate::stream::{Log, Retention};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use warren_protocol::constants::{NOT_IMPLEMENTED, PRECONDITION_FAILED};
use warren_protocol::{FieldTable, FieldValue};

/// At most this many entries are read from the log per consumer and turn.
const READ_BATCH: usize = 256;

/// A stream consumer's position and filter.
pub struct StreamCursor {
    /// Where it starts (resolved when it is added).
    pub start: OffsetSpec,
    /// The next offset to deliver.
    pub next: AtomicU64,
    /// `x-stream-filter` values (empty: no filtering).
    pub filter: Vec<Bytes>,
    /// `x-stream-match-unfiltered`: also deliver messages without a filter value.
    pub match_unfiltered: bool,
}

impl StreamCursor {
    fn wants(&self, e: &Entry) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        if e.filter.is_empty() {
            return self.match_unfiltered;
        }
        self.filter.contains(&e.filter)
    }
}

/// Queue arguments a stream refuses (RabbitMQ's list: those of classic and quorum queues).
const UNSUPPORTED_ARGS: &[&str] = &[
    "x-max-priority",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-message-ttl",
    "x-expires",
    "x-overflow",
    "x-max-length",
    "x-queue-mode",
    "x-queue-master-locator",
    "x-delivery-limit",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-quorum-initial-group-size",
    "x-single-active-consumer",
];

/// The first argument of a stream's declare that streams do not support.
pub fn unsupported_argument(args: &FieldTable) -> Option<String> {
    if super::settings::QueueType::of(args) != super::settings::QueueType::Stream {
        return None;
    }
    args.iter().map(|(k, _)| k.to_str_lossy()).find(|k| UNSUPPORTED_ARGS.contains(&k.as_ref())).map(|k| k.into_owned())
}

/// The retention settings of a stream declared with `args`.
pub fn retention(args: &FieldTable) -> Retention {
    let int = |k: &str| args.get(k).and_then(|v| v.as_i64()).and_then(|v| u64::try_from(v).ok());
    Retention {
        max_bytes: int("x-max-length-bytes"),
        max_age_ms: args
            .get("x-max-age")
            .and_then(|v| v.as_bytes())
            .and_then(|b| offset::parse_duration(&String::from_utf8_lossy(b))),
        segment_bytes: int("x-stream-max-segment-size-bytes").unwrap_or(crate::stream::DEFAULT_SEGMENT_BYTES),
    }
}

/// `m` as stored in a stream: with its `x-stream-offset` header, and its filter value.
fn stamp(m: &Message, offset: u64) -> (Message, Bytes) {
    let mut p = warren_protocol::BasicProperties::decode(m.properties()).unwrap_or_default();
    let headers = p.headers.get_or_insert_with(Default::default);
    let filter = headers
        .get("x-stream-filter-value")
        .and_then(|v| v.as_bytes())
        .map(|b| Bytes::copy_from_slice(&b[..b.len().min(255)]))
        .unwrap_or_default();
    headers.insert("x-stream-offset", FieldValue::I64(offset as i64));
    let stamped = m.rebuilt(
        m.exchange_bytes(),
        m.routing_key_bytes(),
        &p.to_bytes(),
        (crate::message::MsgTtl::NONE, 0, m.persistent()),
    );
    (stamped, filter)
}

/// An entry of stream `stream` as an AMQP 0-9-1 message (with its `x-stream-offset` header).
pub fn as_amqp091(e: &Entry, stream: &warren_protocol::ShortStr) -> Message {
    match &e.payload {
        Payload::Amqp091(m) => m.clone(),
        Payload::Amqp10(raw) => crate::stream::convert::to_amqp091(raw, e.offset, stream),
    }
}

impl Queue {
    /// A new stream's log (recovered from disk when it persists).
    pub(super) fn open_log(&self) -> Option<Box<Log>> {
        let store = if self.persist { self.store.clone() } else { None };
        Some(Box::new(Log::open(store, self.key, retention(&self.arguments))))
    }

    /// Append a published message to the stream and deliver to consumers that wait for it.
    pub(super) fn stream_publish(&self, st: &mut QueueState, msg: &Message, lsn: &mut u64) {
        let Some(log) = st.log.as_deref_mut() else { return };
        let (stamped, filter) = stamp(msg, log.next());
        let (_, l) = log.append(Payload::Amqp091(stamped), filter, self.clock.unix_ms());
        *lsn = (*lsn).max(l);
        st.counters.published += 1;
        self.stream_drain(st);
        self.tick.notify_waiters();
    }

    /// Stream protocol publish: append AMQP 1.0 messages `(publishing id, filter, message)` of
    /// one publisher (`reference`: a named publisher, deduplicated by publishing id). Returns,
    /// per message, whether it was stored (false: a duplicate, confirmed without storing), and
    /// the LSN to wait for before confirming. None: the stream was deleted.
    pub fn stream_append(
        &self,
        reference: Option<&Bytes>,
        msgs: impl Iterator<Item = (u64, Bytes, Bytes)>,
        stored: &mut Vec<(u64, bool)>,
    ) -> Option<u64> {
        let mut st = self.state.lock();
        if st.deleted {
            return None;
        }
        let now = self.clock.unix_ms();
        let mut lsn = 0;
        let mut last_id = None;
        {
            let QueueState { log, counters, .. } = &mut *st;
            let log = log.as_deref_mut()?;
            let mut high = reference.and_then(|r| log.publishers.get(r).copied());
            let mut fresh = Vec::new();
            for (id, filter, msg) in msgs {
                // spec(stream.publish): a named publisher's publishing ids increase; one not
                // above the last stored is a duplicate (confirmed, not stored).
                if reference.is_some() && high.is_some_and(|h| id <= h) {
                    stored.push((id, false));
                    continue;
                }
                high = Some(id);
                last_id = Some(id);
                stored.push((id, true));
                fresh.push((Payload::Amqp10(msg), filter));
            }
            counters.published += fresh.len() as u64;
            lsn = lsn.max(log.append_batch(fresh.into_iter(), now));
            if let (Some(r), Some(id)) = (reference, last_id) {
                lsn = lsn.max(log.append_tracking(crate::stream::record::TRACK_PUBLISHER, r.clone(), id, now));
            }
        }
        self.stream_drain(&mut st);
        drop(st);
        self.tick.notify_waiters();
        Some(lsn)
    }

    /// Up to `max` entries of the stream from `from` (None: not a stream, or deleted).
    pub fn stream_read(&self, from: u64, max: usize) -> Option<crate::stream::Read> {
        let st = self.state.lock();
        if st.deleted {
            return None;
        }
        st.log.as_deref().map(|l| l.read(from, max))
    }

    /// Where a subscriber starting at `spec` reads first, and the stream's (first, next) offsets.
    pub fn stream_resolve(&self, spec: OffsetSpec) -> Option<u64> {
        self.state.lock().log.as_deref().map(|l| l.resolve(spec))
    }

    /// `(first offset, next offset, bytes, segments)` of a stream.
    pub fn stream_stats(&self) -> Option<(u64, u64, u64, usize)> {
        self.state.lock().log.as_deref().map(|l| (l.first(), l.next(), l.bytes(), l.segment_count()))
    }

    /// Stream protocol store_offset: remember `offset` for consumer `reference` (durably, with the
    /// next batch: returns the LSN).
    pub fn stream_store_offset(&self, reference: Bytes, offset: u64) -> Option<u64> {
        let mut st = self.state.lock();
        let now = self.clock.unix_ms();
        let log = st.log.as_deref_mut()?;
        Some(log.append_tracking(crate::stream::record::TRACK_OFFSET, reference, offset, now))
    }

    /// The offset stored for consumer `reference`.
    pub fn stream_query_offset(&self, reference: &Bytes) -> Option<u64> {
        self.state.lock().log.as_deref().and_then(|l| l.offsets.get(reference).copied())
    }

    /// The last publishing id stored for publisher `reference` (0 when none).
    pub fn stream_publisher_sequence(&self, reference: &Bytes) -> Option<u64> {
        self.state.lock().log.as_deref().map(|l| l.publishers.get(reference).copied().unwrap_or(0))
    }

    /// Deliver from the log to every consumer with credit, each from its own offset.
    pub(super) fn stream_drain(&self, st: &mut QueueState) {
        let Some(me) = self.arc() else { return };
        let QueueState { log, consumers, counters, .. } = st;
        let Some(log) = log.as_deref() else { return };
        // Single active consumer: only the first in registration order reads.
        let n = if self.single_active { consumers.len().min(1) } else { consumers.len() };
        for c in consumers[..n].iter() {
            let Some(cur) = &c.stream else { continue };
            'reading: loop {
                let at = cur.next.load(Ordering::Relaxed);
                if at >= log.next() {
                    break;
                }
                let credit = credit_of(c);
                if credit == 0 {
                    break;
                }
                let r = log.read(at, READ_BATCH.min(credit));
                if r.entries.is_empty() {
                    cur.next.store(r.next, Ordering::Relaxed);
                    if r.next <= at {
                        break;
                    }
                    continue;
                }
                for e in r.entries {
                    if !cur.wants(&e) {
                        cur.next.store(e.offset + 1, Ordering::Relaxed);
                        continue;
                    }
                    let qm = QueuedMsg {
                        msg: as_amqp091(&e, &self.name),
                        seq: e.offset,
                        redelivered: false,
                        priority: 0,
                        expires_at: 0,
                        deliveries: 1,
                        persistent: false,
                        disk: None,
                    };
                    match c.channel.try_deliver(c, qm, &me) {
                        Ok(()) => {
                            cur.next.store(e.offset + 1, Ordering::Relaxed);
                            counters.delivered += 1;
                        }
                        Err(_) => break 'reading,
                    }
                }
            }
        }
    }

    /// Check a consume on this stream and make the consumer's cursor (`None` for other queues).
    /// `prefetch`: the consumer's (or the channel's) prefetch count.
    /// `prefetch`: the consumer's prefetch count; `global`: the channel's.
    pub fn stream_cursor(
        &self,
        args: &FieldTable,
        no_ack: bool,
        prefetch: u32,
        global: u32,
    ) -> AmqpResult<Option<StreamCursor>> {
        if self.kind != super::settings::QueueType::Stream {
            return Ok(None);
        }
        if no_ack {
            return Err(AmqpError::connection(
                NOT_IMPLEMENTED,
                format!("automatic acknowledgement not supported by stream queues {}", self.describe()),
                None,
            ));
        }
        if args.get("x-priority").is_some() {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!("invalid arg 'x-priority' for {} of queue type rabbit_stream_queue", self.describe()),
                None,
            ));
        }
        if prefetch != 0 && global != 0 {
            return Err(AmqpError::connection(
                NOT_IMPLEMENTED,
                format!("{} does not support global qos", self.describe()),
                None,
            ));
        }
        if prefetch == 0 {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!("consumer prefetch count is not set for '{}'", self.describe()),
                None,
            ));
        }
        let start = match args.get("x-stream-offset") {
            None => OffsetSpec::Next,
            Some(v) => offset::from_argument(v, self.clock.unix_ms()).ok_or_else(|| {
                let shown = match v.as_bytes() {
                    Some(b) => format!("{{longstr,<<\"{}\">>}}", String::from_utf8_lossy(b)),
                    None => format!("{v:?}"),
                };
                AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!(
                        "invalid arg 'x-stream-offset' for {}: {{invalid_stream_offset_arg,{shown}}}",
                        self.describe()
                    ),
                    None,
                )
            })?,
        };
        let filter = match args.get("x-stream-filter") {
            None => Vec::new(),
            Some(FieldValue::Array(a)) => a.iter().filter_map(|v| v.as_bytes()).map(Bytes::copy_from_slice).collect(),
            Some(v) => v.as_bytes().map(|b| vec![Bytes::copy_from_slice(b)]).unwrap_or_default(),
        };
        let match_unfiltered = args.get("x-stream-match-unfiltered").and_then(|v| v.as_bool()).unwrap_or(false);
        Ok(Some(StreamCursor { start, next: AtomicU64::new(0), filter, match_unfiltered }))
    }

    /// basic.nack / basic.reject of a stream's delivery: refused (RabbitMQ closes the
    /// connection; the message stays in the stream either way).
    pub fn refuses_nack(&self) -> Option<AmqpError> {
        (self.kind == super::settings::QueueType::Stream).then(|| self.stream_refusal("basic.nack and basic.reject"))
    }

    /// RabbitMQ's refusal of an operation streams do not support (`what`: `basic.get`,
    /// `queue.purge`, `basic.nack and basic.reject`): a connection error 540.
    pub fn stream_refusal(&self, what: &str) -> AmqpError {
        AmqpError::connection(
            NOT_IMPLEMENTED,
            format!("{what} not supported by stream queues {}", self.describe()),
            None,
        )
    }
}

/// Deliveries `c` may receive now (its prefetch minus what it has unacked).
/// (Only a channel-wide prefetch: a batch, which the channel's own check then limits.)
fn credit_of(c: &Consumer) -> usize {
    if c.prefetch == 0 {
        return READ_BATCH;
    }
    c.prefetch.saturating_sub(c.in_flight.load(Ordering::Relaxed)) as usize
}
