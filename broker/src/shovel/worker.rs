//! One shovel's life: connect to the source and the destination, declare what the definition
//! names, consume from the source, publish each message to the destination, and acknowledge it
//! at the source as `ack-mode` says; on any failure, report it and start again after the
//! reconnect delay (doubling while failures repeat, up to [`super::MAX_RECONNECT_DELAY`]).
//!
//! Runs in: one task per shovel, spawned and aborted by the [`super::runner`].
//!
//! # Invariants
//! - on-confirm: a source message is acknowledged only after the destination confirmed it, so
//!   a failure anywhere (either broker down, the shovel deleted) leaves it unacknowledged at the
//!   source, which requeues it: nothing is lost, at worst a message is delivered twice. A nack
//!   from the destination is passed to the source as a nack without requeue (RabbitMQ's shovel
//!   does the same: the source dead-letters or drops it rather than loop).
//! - Publish sequence numbers and source delivery tags grow together, so the unconfirmed
//!   messages (`pending`) are in both orders at once and one multiple ack at the source settles
//!   exactly the messages one multiple confirm settled.
//! - With `src-delete-after`, the consumer is cancelled once the count is published; messages
//!   the source still sends are rejected with requeue (they stay at the source); the shovel
//!   deletes itself once every published message is settled.
use super::client::{CallError, Client, Delivery, Event, Local};
use super::uri::AmqpUri;
use super::{AckMode, DeleteAfter, Entry, State, MAX_RECONNECT_DELAY};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use warren_protocol::method::*;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, LongStr, Method, ShortStr};

/// The channel the shovel uses on each connection.
const CH: u16 = 1;

/// Run shovel `entry` until it is done (`src-delete-after`) or, with a reconnect delay of 0,
/// until it fails; the runner aborts it when it is deleted or redefined.
pub async fn run(entry: Arc<Entry>, local: Local) {
    let def = &entry.def;
    let mut delay = def.reconnect_delay;
    let mut attempt = 0usize;
    let mut last_reason = String::new();
    loop {
        entry.set_state(State::Starting, None);
        let src = &def.src_uris[attempt % def.src_uris.len()];
        let dest = &def.dest_uris[attempt % def.dest_uris.len()];
        match session(&entry, &local, src, dest).await {
            Ok(()) => {
                tracing::info!(vhost = %entry.vhost, "shovel '{}' moved what src-delete-after asked: deleting it", entry.name);
                if local.broker.shovels.clear_entry(&entry) {
                    local.broker.definitions_changed();
                }
                return;
            }
            Err(f) => {
                // Logged once per distinct reason: a broker that stays down is not a log flood.
                if f.why != last_reason {
                    tracing::warn!(vhost = %entry.vhost, "shovel '{}' failed: {}", entry.name, f.why);
                }
                entry.set_state(State::Terminated, Some(f.why.clone()));
                last_reason = f.why;
                if def.reconnect_delay.is_zero() {
                    return;
                }
                if f.ran {
                    delay = def.reconnect_delay;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RECONNECT_DELAY.max(def.reconnect_delay));
                attempt += 1;
            }
        }
    }
}

/// Why a session ended, and whether it got to move messages first (then the reconnect delay
/// starts again from its configured value).
struct Failure {
    why: String,
    ran: bool,
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure { why, ran: false }
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        Failure { why: e.to_string(), ran: false }
    }
}

/// Declare queue `q`, unless it exists (a passive declare first, as RabbitMQ's shovels do since
/// 3.13: an existing queue of another type or with other arguments is used as it is). Returns
/// its message count.
async fn declare(c: &mut Client, q: &str, args: &FieldTable) -> Result<u64, CallError> {
    let passive = QueueDeclare { queue: q.to_string().into(), passive: true, ..Default::default() };
    let reply = match c.call(CH, passive.into()).await {
        Err(CallError::ChannelClosed(404, _)) => {
            c.call(CH, ChannelOpen::default().into()).await?;
            let m = QueueDeclare {
                queue: q.to_string().into(),
                durable: true,
                arguments: args.clone(),
                ..Default::default()
            };
            c.call(CH, m.into()).await?
        }
        r => r?,
    };
    match reply {
        Method::QueueDeclareOk(ok) => Ok(ok.message_count as u64),
        other => Err(CallError::Failed(format!("expected queue.declare-ok, got {}", other.name()))),
    }
}

/// Connect both sides, declare, consume, then move messages until done or failed.
async fn session(entry: &Arc<Entry>, local: &Local, src_uri: &str, dest_uri: &str) -> Result<(), Failure> {
    let def = &entry.def;
    let conn_name = format!("Shovel {}", entry.name);
    let su = AmqpUri::parse(src_uri, "/")?;
    let du = AmqpUri::parse(dest_uri, "/")?;
    let mut src = Client::connect(&su, local, &conn_name).await.map_err(|e| format!("source: {e}"))?;
    let mut dest = Client::connect(&du, local, &conn_name).await.map_err(|e| format!("destination: {e}"))?;

    src.call(CH, ChannelOpen::default().into()).await?;
    let (queue, length) = match (&def.src_queue, &def.src_exchange) {
        (Some(q), _) => (q.clone(), declare(&mut src, q, &def.src_queue_args).await?),
        (None, Some(x)) => {
            // The shovel's own queue, bound to the source exchange; it goes with the connection.
            let m = QueueDeclare { exclusive: true, arguments: def.src_queue_args.clone(), ..Default::default() };
            let Method::QueueDeclareOk(ok) = src.call(CH, m.into()).await? else {
                return Err("expected queue.declare-ok".to_string().into());
            };
            let name = ok.queue.to_str_lossy().into_owned();
            let bind = QueueBind {
                queue: ok.queue,
                exchange: x.clone().into(),
                routing_key: def.src_exchange_key.clone().into(),
                ..Default::default()
            };
            src.call(CH, bind.into()).await?;
            (name, 0)
        }
        (None, None) => return Err("no source".to_string().into()),
    };
    dest.call(CH, ChannelOpen::default().into()).await?;
    if let Some(q) = &def.dest_queue {
        declare(&mut dest, q, &def.dest_queue_args).await?;
    }
    if def.ack_mode == AckMode::OnConfirm {
        dest.call(CH, ConfirmSelect { no_wait: false }.into()).await?;
    }
    let remaining = match def.delete_after {
        DeleteAfter::Never => None,
        DeleteAfter::QueueLength => Some(length),
        DeleteAfter::Count(n) => Some(n),
    };
    if remaining == Some(0) {
        src.close().await;
        dest.close().await;
        return Ok(());
    }
    if def.ack_mode != AckMode::NoAck {
        src.call(CH, BasicQos { prefetch_count: def.prefetch, ..Default::default() }.into()).await?;
    }
    let consume = BasicConsume {
        queue: queue.clone().into(),
        no_ack: def.ack_mode == AckMode::NoAck,
        arguments: def.src_consumer_args.clone(),
        ..Default::default()
    };
    let Method::BasicConsumeOk(ok) = src.call(CH, consume.into()).await? else {
        return Err("expected basic.consume-ok".to_string().into());
    };
    {
        let mut s = entry.status.lock();
        s.remaining = remaining;
        s.in_flight = 0;
    }
    entry.set_state(State::Running, None);
    tracing::info!(vhost = %entry.vhost, "shovel '{}' running: {} -> {}", entry.name, super::uri::redact(src_uri), super::uri::redact(dest_uri));
    let mut pump = Pump {
        entry: entry.clone(),
        headers: forward_headers(entry, src_uri, dest_uri),
        target: match (&def.dest_queue, &def.dest_exchange) {
            (Some(q), _) => (Some(ShortStr::empty()), Some(q.clone().into())),
            (None, Some(x)) => (Some(x.clone().into()), def.dest_exchange_key.clone().map(ShortStr::from)),
            (None, None) => (None, None),
        },
        consumer_tag: ok.consumer_tag,
        pending: VecDeque::new(),
        next_seq: 1,
        remaining,
        ack_upto: None,
    };
    match pump.run(&mut src, &mut dest).await {
        Ok(()) => {
            src.close().await;
            dest.close().await;
            Ok(())
        }
        Err(why) => Err(Failure { why, ran: true }),
    }
}

/// The `x-shovelled` entry this shovel adds (with `dest-add-forward-headers`), as RabbitMQ's.
fn forward_headers(entry: &Entry, src_uri: &str, dest_uri: &str) -> Option<FieldTable> {
    let def = &entry.def;
    if !def.forward_headers {
        return None;
    }
    let s = |v: &str| FieldValue::LongStr(LongStr::from(v.to_string()));
    let mut t = FieldTable::new();
    t.insert("shovelled-by", s(crate::node::name()));
    t.insert("shovel-type", s("dynamic"));
    t.insert("shovel-name", s(&entry.name));
    t.insert("shovel-vhost", s(&entry.vhost));
    t.insert("src-uri", s(&super::uri::redact(src_uri)));
    if let Some(q) = &def.src_queue {
        t.insert("src-queue", s(q));
    }
    if let Some(x) = &def.src_exchange {
        t.insert("src-exchange", s(x));
        t.insert("src-exchange-key", s(&def.src_exchange_key));
    }
    t.insert("dest-uri", s(&super::uri::redact(dest_uri)));
    if let Some(q) = &def.dest_queue {
        t.insert("dest-queue", s(q));
    }
    if let Some(x) = &def.dest_exchange {
        t.insert("dest-exchange", s(x));
    }
    if let Some(k) = &def.dest_exchange_key {
        t.insert("dest-exchange-key", s(k));
    }
    Some(t)
}

/// Moving messages, once both sides are set up.
struct Pump {
    /// The shovel (definition, status).
    entry: Arc<Entry>,
    /// The `x-shovelled` entry to add, if any.
    headers: Option<FieldTable>,
    /// Where messages go: exchange and routing key, each the message's own when `None`.
    target: (Option<ShortStr>, Option<ShortStr>),
    /// The source consumer's tag (to cancel it).
    consumer_tag: ShortStr,
    /// Published and not yet confirmed (on-confirm): (publish sequence number, source delivery
    /// tag), in both orders.
    pending: VecDeque<(u64, u64)>,
    /// The next publish sequence number at the destination.
    next_seq: u64,
    /// Messages left to publish before the shovel is done (`src-delete-after`).
    remaining: Option<u64>,
    /// on-publish: the highest source tag published and not yet acknowledged (one multiple ack
    /// per batch).
    ack_upto: Option<u64>,
}

impl Pump {
    async fn run(&mut self, src: &mut Client, dest: &mut Client) -> Result<(), String> {
        let beat = [src.heartbeat, dest.heartbeat].into_iter().filter(|h| *h > 0).min();
        let mut ticker = tokio::time::interval(Duration::from_millis(beat.map_or(3_600_000, |h| h as u64 * 500)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(ev) = src.next_event()? {
                self.on_source(ev, src, dest)?;
            }
            while let Some(ev) = dest.next_event()? {
                self.on_destination(ev, src)?;
            }
            if let Some(tag) = self.ack_upto.take() {
                src.send(CH, &BasicAck { delivery_tag: tag, multiple: true }.into());
            }
            self.report();
            if self.remaining == Some(0) && self.pending.is_empty() {
                src.flush().await?;
                dest.flush().await?;
                return Ok(());
            }
            dest.flush().await?;
            src.flush().await?;
            tokio::select! {
                r = src.fill() => r.map_err(|e| format!("source: {e}"))?,
                r = dest.fill() => r.map_err(|e| format!("destination: {e}"))?,
                _ = ticker.tick(), if beat.is_some() => {
                    if src.heartbeat > 0 { src.heartbeat(); }
                    if dest.heartbeat > 0 { dest.heartbeat(); }
                }
            }
        }
    }

    /// Publish what the source delivered; fail on what ends the source side.
    fn on_source(&mut self, ev: Event, src: &mut Client, dest: &mut Client) -> Result<(), String> {
        let d = match ev {
            Event::Delivery(d) => d,
            Event::Method(_, Method::BasicCancel(_)) => {
                return Err("source: the consumer was cancelled by the broker (queue deleted?)".into())
            }
            Event::Method(ch, Method::ChannelClose(c)) => {
                src.send(ch, &ChannelCloseOk.into());
                return Err(format!("source: channel closed: {} {}", c.reply_code, c.reply_text.to_str_lossy()));
            }
            Event::Method(_, Method::ConnectionClose(c)) => {
                src.send(0, &ConnectionCloseOk.into());
                return Err(format!("source: connection closed: {} {}", c.reply_code, c.reply_text.to_str_lossy()));
            }
            Event::Method(..) => return Ok(()),
        };
        let def = &self.entry.def;
        let tag = d.deliver.delivery_tag;
        if self.remaining == Some(0) && def.ack_mode != AckMode::NoAck {
            // Past the count of src-delete-after: the message stays at the source.
            src.send(CH, &BasicReject { delivery_tag: tag, requeue: true }.into());
            return Ok(());
        }
        self.publish(&d, dest)?;
        match def.ack_mode {
            AckMode::OnConfirm => {
                self.pending.push_back((self.next_seq, tag));
                self.next_seq += 1;
            }
            AckMode::OnPublish => self.ack_upto = Some(tag),
            AckMode::NoAck => {}
        }
        self.entry.status.lock().forwarded += 1;
        if let Some(r) = self.remaining.as_mut() {
            *r = r.saturating_sub(1);
            if *r == 0 {
                src.send(CH, &BasicCancel { consumer_tag: self.consumer_tag.clone(), no_wait: false }.into());
            }
        }
        Ok(())
    }

    /// Buffer the publish of `d` to the destination.
    fn publish(&self, d: &Delivery, dest: &mut Client) -> Result<(), String> {
        let def = &self.entry.def;
        let exchange = self.target.0.clone().unwrap_or_else(|| d.deliver.exchange.clone());
        let key = self.target.1.clone().unwrap_or_else(|| d.deliver.routing_key.clone());
        if self.headers.is_none() && !def.timestamp_header {
            dest.publish(CH, exchange, key, &d.properties, &d.body);
            return Ok(());
        }
        let mut p =
            BasicProperties::decode(d.properties.clone()).map_err(|e| format!("source: bad properties: {e}"))?;
        let headers = p.headers.get_or_insert_with(FieldTable::new);
        if let Some(h) = &self.headers {
            let mut list = match headers.get("x-shovelled") {
                Some(FieldValue::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            list.push(FieldValue::Table(h.clone()));
            headers.insert("x-shovelled", FieldValue::Array(list));
        }
        if def.timestamp_header {
            headers.insert("x-shovelled-timestamp", FieldValue::I64((crate::clock::unix_ms() / 1000) as i64));
        }
        dest.publish(CH, exchange, key, &p.to_bytes(), &d.body);
        Ok(())
    }

    /// Settle at the source what the destination confirmed; fail on what ends the destination.
    fn on_destination(&mut self, ev: Event, src: &mut Client) -> Result<(), String> {
        match ev {
            Event::Method(_, Method::BasicAck(a)) => self.settle(a.delivery_tag, a.multiple, true, src),
            Event::Method(_, Method::BasicNack(n)) => self.settle(n.delivery_tag, n.multiple, false, src),
            Event::Method(_, Method::ConnectionBlocked(_)) => self.entry.status.lock().blocked = true,
            Event::Method(_, Method::ConnectionUnblocked(_)) => self.entry.status.lock().blocked = false,
            Event::Method(_, Method::ChannelClose(c)) => {
                return Err(format!("destination: channel closed: {} {}", c.reply_code, c.reply_text.to_str_lossy()))
            }
            Event::Method(_, Method::ConnectionClose(c)) => {
                return Err(format!("destination: connection closed: {} {}", c.reply_code, c.reply_text.to_str_lossy()))
            }
            _ => {}
        }
        Ok(())
    }

    /// Confirm (or nack) `seq` (and, with `multiple`, everything before it) at the source.
    fn settle(&mut self, seq: u64, multiple: bool, ack: bool, src: &mut Client) {
        let settled = if multiple {
            let mut last = None;
            while self.pending.front().is_some_and(|(s, _)| *s <= seq) {
                last = self.pending.pop_front().map(|(_, t)| t);
            }
            last
        } else {
            self.pending.iter().position(|(s, _)| *s == seq).and_then(|i| self.pending.remove(i)).map(|(_, t)| t)
        };
        let Some(tag) = settled else { return };
        if ack {
            src.send(CH, &BasicAck { delivery_tag: tag, multiple }.into());
        } else {
            tracing::warn!(vhost = %self.entry.vhost, "shovel '{}': the destination refused a message; nacked at the source", self.entry.name);
            src.send(CH, &BasicNack { delivery_tag: tag, multiple, requeue: false }.into());
        }
    }

    fn report(&self) {
        let mut s = self.entry.status.lock();
        s.in_flight = self.pending.len() as u64;
        s.remaining = self.remaining;
    }
}
