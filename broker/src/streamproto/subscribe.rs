//! Stream protocol subscriptions: subscribe / unsubscribe, credit, and the task that reads the
//! stream from the subscription's offset and sends it in chunks (one credit per chunk).
//!
//! Runs in: the connection's task (subscribe, credit, unsubscribe); one delivery task per
//! subscription, woken by appends to its stream (`Queue::tick`) and by credit.
//!
//! # Invariants
//! - A chunk holds consecutive offsets starting at its first offset (clients number its messages
//!   from it); a chunk goes out only with a credit, which it uses up.
//! - Message bodies are not copied for messages written through this protocol: a chunk's pieces
//!   are the stored `Bytes`.
use super::conn::{Conn, Tx};
use super::registry::ConsumerInfo;
use crate::queue::Queue;
use crate::stream::offset::OffsetSpec;
use crate::stream::record::{Entry, Payload};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Semaphore;
use warren_protocol::stream::{code, key, response, ChunkMeta, OffsetSpec as WireOffset};

/// At most this many messages go in one chunk.
const CHUNK_MESSAGES: usize = 1024;
/// Chunks whose messages average less than this (bytes) are copied into one buffer.
const SMALL_MESSAGE: usize = 1024;

/// A subscription.
pub struct Subscription {
    /// Its stream.
    pub queue: Arc<Queue>,
    /// Credits (chunks it may still be sent).
    pub credit: Arc<Semaphore>,
    /// The management view.
    pub info: Arc<ConsumerInfo>,
    /// The delivery task.
    task: tokio::task::JoinHandle<()>,
    /// Its single-active-consumer group, if it is in one.
    pub group: Option<super::registry::GroupKey>,
}

impl Subscription {
    /// End the delivery task (and leave its group: another member may take over).
    pub fn stop(self, conn: &Conn, subscription_id: u8) {
        self.task.abort();
        if let Some(key) = &self.group {
            conn.broker.stream_conns.leave(key, conn.id, subscription_id);
        }
    }
}

/// A single-active-consumer subscription's activation: told by the group, it asks its client
/// where to start (ConsumerUpdate) and is answered through the connection's pending updates.
pub struct Activation {
    /// Signals that it became active.
    pub rx: tokio::sync::mpsc::UnboundedReceiver<()>,
    /// The connection's pending ConsumerUpdate answers, by correlation id.
    pub pending: Updates,
}

/// ConsumerUpdate requests waiting for their answer, by correlation id.
pub type Updates =
    Arc<parking_lot::Mutex<std::collections::HashMap<u32, tokio::sync::oneshot::Sender<Option<WireOffset>>>>>;

/// Correlation ids of the server's ConsumerUpdate requests.
static NEXT_CORRELATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// What a subscription reads: its filter values (`filter.N` properties) and whether messages
/// without a filter value match too (`match-unfiltered`).
struct Filter {
    values: Vec<Bytes>,
    match_unfiltered: bool,
}

impl Filter {
    fn wants(&self, e: &Entry) -> bool {
        if self.values.is_empty() {
            return true;
        }
        if e.filter.is_empty() {
            return self.match_unfiltered;
        }
        self.values.contains(&e.filter)
    }
}

/// The core's offset specification for the wire's.
pub fn spec(o: WireOffset) -> OffsetSpec {
    match o {
        WireOffset::First => OffsetSpec::First,
        WireOffset::Last => OffsetSpec::Last,
        WireOffset::Next => OffsetSpec::Next,
        WireOffset::Offset(n) => OffsetSpec::Offset(n),
        WireOffset::Timestamp(t) => OffsetSpec::Timestamp(t.max(0) as u64),
    }
}

/// Subscribe.
pub fn subscribe(
    conn: &mut Conn,
    correlation_id: u32,
    subscription_id: u8,
    stream: Bytes,
    offset: WireOffset,
    credit: u16,
    properties: Vec<(Bytes, Bytes)>,
) {
    let reply = |c| conn.tx.code(key::SUBSCRIBE, correlation_id, c);
    if conn.subs.contains_key(&subscription_id) {
        return reply(code::SUBSCRIPTION_ID_ALREADY_EXISTS);
    }
    let queue = match super::admin::stream(conn, &stream) {
        Ok(q) => q,
        Err(c) => return reply(c),
    };
    let name = warren_protocol::ShortStr::truncating(stream.clone());
    if conn.actor().allowed(|g| crate::vhost::access::queue_read(g, name.as_bytes())).is_err() {
        return reply(code::ACCESS_REFUSED);
    }
    let Some(next) = queue.stream_resolve(spec(offset)) else { return reply(code::STREAM_DOES_NOT_EXIST) };
    let prop = |k: &[u8]| properties.iter().find(|(pk, _)| &pk[..] == k).map(|(_, v)| v.clone());
    let filter = Filter {
        values: properties.iter().filter(|(k, _)| k.starts_with(b"filter.")).map(|(_, v)| v.clone()).collect(),
        match_unfiltered: prop(b"match-unfiltered").is_some_and(|v| &v[..] == b"true"),
    };
    let info = Arc::new(ConsumerInfo {
        subscription_id,
        stream: String::from_utf8_lossy(&stream).into_owned(),
        properties: properties
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect(),
        consumed: Default::default(),
        credits: (credit as u64).into(),
        offset: next.into(),
        active: true.into(),
    });
    // Single active consumer: the subscription joins its group (by consumer name) and reads only
    // while it is the group's active member.
    let sac = prop(b"single-active-consumer").is_some_and(|v| &v[..] == b"true");
    let group_name = prop(b"name").filter(|n| !n.is_empty());
    let mut activation = None;
    let mut member = None;
    let mut group = None;
    if sac {
        let Some(group_name) = group_name else { return reply(code::PRECONDITION_FAILED) };
        let (atx, arx) = tokio::sync::mpsc::unbounded_channel();
        let key = (
            conn.vhost.name.clone(),
            String::from_utf8_lossy(&stream).into_owned(),
            String::from_utf8_lossy(&group_name).into_owned(),
        );
        info.active.store(false, Ordering::Relaxed);
        activation = Some(Activation { rx: arx, pending: conn.updates.clone() });
        member = Some((super::registry::Member { conn: conn.id, subscription_id, activate: atx }, key.clone()));
        group = Some(key);
    }
    reply(code::OK);
    let sem = Arc::new(Semaphore::new(credit as usize));
    let task = tokio::spawn(deliver_loop(
        queue.clone(),
        conn.tx.clone(),
        subscription_id,
        next,
        sem.clone(),
        filter,
        info.clone(),
        conn.deliver_v2,
        stream,
        activation,
    ));
    if let Some((m, key)) = member {
        conn.broker.stream_conns.join(key, m);
    }
    conn.info.consumers.lock().insert(subscription_id, info.clone());
    conn.subs.insert(subscription_id, Subscription { queue, credit: sem, info, task, group });
}

/// Credit: more chunks for a subscription (an unknown one is answered with code 4).
pub fn credit(conn: &mut Conn, subscription_id: u8, credit: u16) {
    match conn.subs.get(&subscription_id) {
        Some(s) => {
            s.info.credits.fetch_add(credit as u64, Ordering::Relaxed);
            s.credit.add_permits(credit as usize);
        }
        None => conn
            .tx
            .frame(|b| response::encode_credit_response(b, code::SUBSCRIPTION_ID_DOES_NOT_EXIST, subscription_id)),
    }
}

/// Unsubscribe.
pub fn unsubscribe(conn: &mut Conn, correlation_id: u32, subscription_id: u8) {
    let c = match conn.subs.remove(&subscription_id) {
        Some(s) => {
            conn.info.consumers.lock().remove(&subscription_id);
            s.stop(conn, subscription_id);
            code::OK
        }
        None => code::SUBSCRIPTION_ID_DOES_NOT_EXIST,
    };
    conn.tx.code(key::UNSUBSCRIBE, correlation_id, c);
}

/// An entry as the stream protocol carries it: an AMQP 1.0 message.
fn as_amqp10(e: &Entry) -> Bytes {
    match &e.payload {
        Payload::Amqp10(b) => b.clone(),
        Payload::Amqp091(m) => crate::stream::convert::to_amqp10(m),
    }
}

/// Read the stream from `next` and send chunks while there is credit.
#[allow(clippy::too_many_arguments)]
async fn deliver_loop(
    queue: Arc<Queue>,
    tx: Tx,
    subscription_id: u8,
    mut next: u64,
    credit: Arc<Semaphore>,
    filter: Filter,
    info: Arc<ConsumerInfo>,
    v2: bool,
    stream: Bytes,
    activation: Option<Activation>,
) {
    if let Some(mut a) = activation {
        // Wait to become the group's active member, then ask the client where to start.
        if a.rx.recv().await.is_none() {
            return;
        }
        let correlation_id = NEXT_CORRELATION.fetch_add(1, Ordering::Relaxed);
        let (otx, orx) = tokio::sync::oneshot::channel();
        a.pending.lock().insert(correlation_id, otx);
        tx.response(&warren_protocol::stream::Response::ConsumerUpdate {
            correlation_id,
            subscription_id,
            active: true,
        });
        if let Ok(Some(o)) = orx.await {
            match queue.stream_resolve(spec(o)) {
                Some(n) => next = n,
                None => return,
            }
        }
        info.active.store(true, Ordering::Relaxed);
    }
    loop {
        let Ok(permit) = credit.acquire().await else { return };
        let entries = loop {
            let woken = queue.tick.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match queue.stream_read(next, CHUNK_MESSAGES) {
                None => {
                    // spec(stream.metadata_update): the stream is gone.
                    tx.frame(|b| response::encode_metadata_update(b, code::STREAM_NOT_AVAILABLE, &stream));
                    return;
                }
                Some(r) if r.entries.is_empty() => {
                    next = r.next.max(next);
                    woken.await;
                }
                Some(r) => {
                    next = r.next;
                    break r.entries;
                }
            }
        };
        // Filtering: the chunk is the first run of wanted messages (consecutive offsets); what
        // precedes it is skipped, what follows it is read again for the next chunk.
        let mut entries = entries;
        if !filter.values.is_empty() {
            let Some(start) = entries.iter().position(|e| filter.wants(e)) else { continue };
            let len = entries[start..].iter().take_while(|e| filter.wants(e)).count();
            entries.truncate(start + len);
            entries.drain(..start);
            if let Some(last) = entries.last() {
                next = last.offset + 1;
            }
        }
        let first = entries[0].offset;
        let meta = ChunkMeta {
            chunk_type: warren_protocol::stream::chunk::CHUNK_TYPE_USER,
            timestamp: entries[0].ts as i64,
            epoch: 1,
            first_offset: first,
        };
        let bodies: Vec<Bytes> = entries.iter().map(as_amqp10).collect();
        let committed = v2.then(|| next.saturating_sub(1));
        match warren_protocol::stream::chunk::deliver_messages(subscription_id, committed, &meta, &bodies) {
            Ok(frame) => {
                permit.forget();
                info.credits.fetch_sub(1, Ordering::Relaxed);
                info.consumed.fetch_add(bodies.len() as u64, Ordering::Relaxed);
                info.offset.store(next, Ordering::Relaxed);
                // Small messages: one buffer (one copy beats a write per piece); large ones go
                // as pieces, their bodies uncopied.
                if frame.len / bodies.len().max(1) < SMALL_MESSAGE {
                    tx.pieces(vec![frame.to_bytes()]);
                } else {
                    tx.pieces(frame.pieces);
                }
            }
            Err(e) => tracing::error!("stream protocol: cannot build a chunk at offset {first}: {e}"),
        }
        if tx.closed() {
            return;
        }
    }
}
