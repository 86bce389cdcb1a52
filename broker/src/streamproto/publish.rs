//! Stream protocol publishers: declare / delete, publish (deduplicated by a named publisher's
//! publishing ids), and confirms sent once what was published is on disk.
//!
//! Runs in: the connection's task (declare, publish); the connection's confirm task (waits for
//! the store's fsync and sends PublishConfirm in publish order).
//!
//! # Invariants
//! - A publishing id is confirmed only after its message is durable (or, for a duplicate, at
//!   once: it was stored before).
//! - Confirms of one connection go out in the order the publishes arrived.
use super::conn::{Conn, Stop, Tx};
use super::registry::PublisherInfo;
use crate::broker::Broker;
use crate::queue::Queue;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use warren_protocol::stream::{code, key, response, ChunkEntry, PublishedMessage};

/// A declared publisher.
pub struct Publisher {
    /// Its stream.
    pub queue: Arc<Queue>,
    /// Its reference (deduplication); None: anonymous.
    pub reference: Option<Bytes>,
    /// The management view.
    pub info: Arc<PublisherInfo>,
}

/// Publishes waiting for their confirm.
pub struct Pending {
    /// The publisher.
    pub publisher_id: u8,
    /// Its management view (counts confirms).
    pub info: Arc<PublisherInfo>,
    /// The publishing ids to confirm.
    pub ids: Vec<u64>,
    /// The LSN to wait for (0: none).
    pub lsn: u64,
}

/// DeclarePublisher.
pub fn declare(conn: &mut Conn, correlation_id: u32, publisher_id: u8, reference: Bytes, stream: Bytes) {
    let reply = |c| conn.tx.code(key::DECLARE_PUBLISHER, correlation_id, c);
    if conn.publishers.contains_key(&publisher_id) {
        return reply(code::PRECONDITION_FAILED);
    }
    let queue = match super::admin::stream(conn, &stream) {
        Ok(q) => q,
        Err(c) => return reply(c),
    };
    let name = warren_protocol::ShortStr::truncating(stream.clone());
    if conn.actor().allowed(|g| crate::vhost::access::stream_write(g, name.as_bytes())).is_err() {
        return reply(code::ACCESS_REFUSED);
    }
    let reference = (!reference.is_empty()).then_some(reference);
    // spec(stream.declare_publisher): one publisher per reference and stream at a time.
    if let Some(r) = &reference {
        let taken = conn.broker.stream_conns.list().iter().any(|c| {
            c.vhost == conn.vhost.name
                && c.publishers
                    .lock()
                    .values()
                    .any(|p| p.reference.as_bytes() == &r[..] && p.stream.as_bytes() == &stream[..])
        });
        if taken {
            return reply(code::PRECONDITION_FAILED);
        }
    }
    let info = Arc::new(PublisherInfo {
        publisher_id,
        reference: reference.as_ref().map(|r| String::from_utf8_lossy(r).into_owned()).unwrap_or_default(),
        stream: String::from_utf8_lossy(&stream).into_owned(),
        published: Default::default(),
        confirmed: Default::default(),
        errored: Default::default(),
    });
    conn.info.publishers.lock().insert(publisher_id, info.clone());
    conn.publishers.insert(publisher_id, Publisher { queue, reference, info });
    reply(code::OK);
}

/// DeletePublisher.
pub fn delete(conn: &mut Conn, correlation_id: u32, publisher_id: u8) {
    let c = match conn.publishers.remove(&publisher_id) {
        Some(_) => {
            conn.info.publishers.lock().remove(&publisher_id);
            code::OK
        }
        None => code::PUBLISHER_DOES_NOT_EXIST,
    };
    conn.tx.code(key::DELETE_PUBLISHER, correlation_id, c);
}

/// Publish: append, then hand the ids to the confirm task.
pub fn publish(conn: &mut Conn, publisher_id: u8, messages: Vec<PublishedMessage>) -> Result<(), Stop> {
    let Some(p) = conn.publishers.get(&publisher_id) else {
        let ids: Vec<u64> = messages.iter().map(|m| m.publishing_id).collect();
        conn.tx.frame(|b| response::encode_publish_error(b, publisher_id, code::PUBLISHER_DOES_NOT_EXIST, &ids));
        return Ok(());
    };
    let mut refused = Vec::new();
    let mut items = Vec::with_capacity(messages.len());
    for m in messages {
        let filter = m.filter_value.unwrap_or_default();
        match m.entry {
            ChunkEntry::Simple(body) => items.push((m.publishing_id, filter, body)),
            // rabbitmq-compat: sub-entry batches (several records under one publishing id,
            // possibly compressed by the client) are refused with PRECONDITION_FAILED.
            ChunkEntry::SubBatch(_) => refused.push(m.publishing_id),
        }
    }
    if !refused.is_empty() {
        p.info.errored.fetch_add(refused.len() as u64, Ordering::Relaxed);
        conn.tx.frame(|b| response::encode_publish_error(b, publisher_id, code::PRECONDITION_FAILED, &refused));
    }
    if items.is_empty() {
        return Ok(());
    }
    let mut stored = Vec::with_capacity(items.len());
    let n = items.len() as u64;
    let all_ids: Vec<u64> = items.iter().map(|(id, _, _)| *id).collect();
    match p.queue.stream_append(p.reference.as_ref(), items.into_iter(), &mut stored) {
        Some(lsn) => {
            p.info.published.fetch_add(n, Ordering::Relaxed);
            let mut ids: Vec<u64> = stored.into_iter().map(|(id, _)| id).collect();
            ids.dedup();
            let _ = conn.confirms.send(Pending { publisher_id, info: p.info.clone(), ids, lsn });
        }
        None => {
            p.info.errored.fetch_add(n, Ordering::Relaxed);
            conn.tx.frame(|b| response::encode_publish_error(b, publisher_id, code::STREAM_DOES_NOT_EXIST, &all_ids));
        }
    }
    Ok(())
}

/// Send confirms in order, each once its LSN is durable.
pub async fn confirm_loop(broker: Arc<Broker>, tx: Tx, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.recv().await {
        // Gather what is already waiting: one wait and one confirm frame per publisher covers it.
        let mut batch = vec![first];
        while let Ok(p) = rx.try_recv() {
            batch.push(p);
        }
        let lsn = batch.iter().map(|p| p.lsn).max().unwrap_or(0);
        if let (Some(store), true) = (&broker.store, lsn > 0) {
            store.wait_durable(lsn).await;
        }
        let mut i = 0;
        while i < batch.len() {
            let pid = batch[i].publisher_id;
            let mut ids = Vec::new();
            let info = batch[i].info.clone();
            while i < batch.len() && batch[i].publisher_id == pid {
                ids.extend_from_slice(&batch[i].ids);
                i += 1;
            }
            info.confirmed.fetch_add(ids.len() as u64, Ordering::Relaxed);
            tx.frame(|b| response::encode_publish_confirm(b, pid, &ids));
        }
    }
}
