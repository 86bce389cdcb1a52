//! A client connection: the reader loop that parses frames and dispatches them to channels, and the
//! one place where errors become close frames.
//!
//! Runs in: one task per socket (the reader, which owns all channel state) plus the writer task
//! ([`writer`]).
//!
//! # Invariants
//! - Frames are handled in arrival order; a whole read buffer of frames is processed before the next
//!   read, then pending confirms are flushed (one coalesced ack per channel per batch).
//! - Once we sent connection.close, everything but connection.close / close-ok is ignored, and the
//!   socket closes on close-ok or after `CLOSE_OK_TIMEOUT`.
//! - Once the client sent connection.close, we answer close-ok (and close-ok again to any further
//!   connection.close), discard everything else, and keep the socket until the client closes it
//!   (or `CLOSE_OK_TIMEOUT`): closing it with unread input would make the kernel reset the
//!   connection and destroy the close-ok before the client reads it.
//! - When the connection ends (any way), every channel is torn down (consumers cancelled, unacked
//!   requeued) and its exclusive queues are deleted.
//! - The reader stops reading while its outbound buffer is over the high-water mark (TCP then pushes
//!   back on a client that does not read what it is sent).
pub mod handshake;
pub mod peer;
mod reader;
pub mod writer;

use crate::broker::Broker;
use crate::channel::{Channel, Phase};
use crate::config::CLOSE_OK_TIMEOUT;
use crate::error::AmqpError;
use crate::ids::ConnectionId;
use crate::outbound::Outbound;
use crate::queue::consumer::ChannelShared;
use crate::vhost::VHost;
use bytes::BytesMut;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{frame, Frame, FrameType, Method};
use writer::Liveness;

/// Read buffer size of a busy connection: one read takes up to this much. Large, so that the
/// partial frame at the end of a read (copied when the buffer is replaced) is a small share of
/// what was read: 64 KiB bodies went from 1.66 to 1.8-1.9 GB/s when this went from 128 KiB to 1 MiB.
const READ_BUF: usize = 1024 * 1024;
/// A connection's reader after a read, or its writer after a write batch, of at least this many
/// bytes lets the runtime thread run other tasks before its next one (`yield_now`). A task whose
/// socket is always ready otherwise keeps its thread until tokio's cooperative budget (128
/// operations) runs out: 128 reads of up to 1 MiB, tens of milliseconds during which the other
/// connections' tasks queued on that thread wait. Latency at 10 k msgs/s beside a connection
/// streaming 64 KiB bodies: p99 10-27 ms, p99.9 21-44 ms before; 3.7-4.7 ms and 5.6-7.3 ms after
/// (BENCHMARKS.md). Small messages at full speed read and write below it most of the time, and a
/// yield per 64 KiB is well under a nanosecond per message.
const YIELD_AFTER_BYTES: usize = 64 * 1024;
/// Read buffer size of a new or quiet connection (idle connections stay small); it doubles up to
/// [`READ_BUF`] each time a read fills it.
const MIN_READ_BUF: usize = 2 * 1024;

/// What channel handlers need from their connection.
pub struct ConnCtx {
    /// This connection's id.
    pub id: ConnectionId,
    /// The vhost it opened.
    pub vhost: Arc<VHost>,
    /// Outbound buffer.
    pub out: Arc<Outbound>,
    /// Broker-wide consumer acknowledgement timeout (ms), if any.
    pub consumer_timeout_ms: Option<u64>,
    /// The broker's message store, if it has one.
    pub store: Option<Arc<crate::store::Store>>,
    /// The broker's definitions file, if it has one.
    pub meta: Option<Arc<crate::store::meta::MetaStore>>,
    /// The user's permissions in this vhost (refreshed between read batches when they change).
    pub grants: Arc<crate::auth::Grants>,
    /// Largest message body accepted (`Config::max_message_size`).
    pub max_message_size: u64,
    /// This connection as the management API sees it (counters, channels).
    pub info: Arc<crate::stats::ConnInfo>,
    /// The authenticated user's name (publishes must carry it as `user_id`, if any).
    pub user: Box<str>,
    /// The user has the `impersonator` tag: any `user_id` is accepted.
    pub impersonator: bool,
    /// What this connection's firehose trace copies name (shared with its channels).
    pub origin: Arc<crate::trace::Origin>,
    /// Definitions write the held replies wait for (0: none).
    sync_meta: AtomicU64,
    /// Store LSN the held replies wait for (0: none).
    sync_lsn: AtomicU64,
}

impl ConnCtx {
    /// This connection as the core's [`crate::vhost::Actor`]: its user, grants and id.
    #[inline]
    pub fn actor(&self) -> crate::vhost::Actor<'_> {
        crate::vhost::Actor {
            user: Some(&self.user),
            grants: Some(&self.grants),
            impersonator: self.impersonator,
            conn: Some(self.id),
            origin: Some(&self.origin),
        }
    }

    /// Call before writing the reply to a topology change: if that change must reach the
    /// definitions file, the reply (and everything after it) is held until it has.
    pub fn sync_meta(&self) {
        if let Some(n) = self.meta.as_ref().and_then(|m| m.pending()) {
            self.out.hold();
            self.sync_meta.fetch_max(n, Ordering::Relaxed);
        }
    }

    /// Call before writing a reply that must follow the fsync of store LSN `lsn` (0: nothing to
    /// wait for).
    pub fn sync_store(&self, lsn: u64) {
        if lsn > 0 && self.store.is_some() {
            self.out.hold();
            self.sync_lsn.fetch_max(lsn, Ordering::Relaxed);
        }
    }
    /// Call before the reply to a purge or delete: the acks it recorded are on disk first.
    pub fn sync_store_all(&self) {
        if let Some(s) = &self.store {
            self.sync_store(s.barrier());
        }
    }
    /// Wait for what held replies need, then let them go.
    async fn settle_holds(&self) {
        let (n, lsn) = (self.sync_meta.swap(0, Ordering::Relaxed), self.sync_lsn.swap(0, Ordering::Relaxed));
        if n == 0 && lsn == 0 {
            return;
        }
        if let (Some(m), true) = (&self.meta, n > 0) {
            m.wait(n).await;
        }
        if let (Some(s), true) = (&self.store, lsn > 0) {
            s.wait_durable(lsn).await;
        }
        self.out.release();
    }
}

/// Connection lifecycle after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We sent connection.close and wait for close-ok.
    Closing,
    /// The client sent connection.close and we answered close-ok: discard input until it closes.
    Draining,
    /// Done: stop reading.
    Closed,
}

/// A connection's reader-side state.
struct Connection {
    /// Shared with channel handlers.
    ctx: ConnCtx,
    /// Open (or closing) channels by number.
    /// (FxHash: three lookups per published message; keys are u16 channel numbers, at most
    /// channel_max of them, so no hash flooding is possible.)
    channels: rustc_hash::FxHashMap<u16, Channel>,
    /// Channels with confirms to flush at the end of the batch.
    confirm_dirty: Vec<u16>,
    /// Negotiated channel_max.
    channel_max: u16,
    /// Negotiated frame_max.
    frame_max: u32,
    /// Client supports broker-initiated basic.cancel.
    cancel_notify: bool,
    /// Client supports connection.blocked / unblocked.
    blocked_notify: bool,
    /// The client has published at least once (only publishers are blocked by the memory alarm).
    published: bool,
    /// We sent connection.blocked and owe an unblocked.
    blocked_sent: bool,
    /// Lifecycle.
    state: State,
    /// The authenticated user.
    user: String,
    /// `Broker::auth_generation` when `ctx.grants` was read.
    auth_generation: u64,
    /// The broker (per-user channel limit).
    broker: Arc<Broker>,
    /// Counted under `connection_max` until dropped.
    _slot: crate::broker::ConnSlot,
}

/// Serve one accepted plain-TCP socket until it closes.
pub async fn serve(sock: TcpStream, broker: Arc<Broker>, id: ConnectionId, shutdown: watch::Receiver<bool>) {
    let peer = sock.peer_addr().ok();
    let local = sock.local_addr().ok();
    let _ = sock.set_nodelay(true);
    let (rd, wr) = sock.into_split();
    serve_stream(rd, wr, Endpoints { peer, local, tls: false, direct: false }, broker, id, shutdown).await
}

/// Where a connection comes from and arrives.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    /// Client address.
    pub peer: Option<std::net::SocketAddr>,
    /// Our address.
    pub local: Option<std::net::SocketAddr>,
    /// Over TLS.
    pub tls: bool,
    /// A direct connection: opened by the broker itself (a shovel) over an in-memory pipe, with no
    /// network peer. Its user is taken as announced, with every permission in its vhost, as
    /// RabbitMQ's direct connections (only the broker can open one).
    pub direct: bool,
}

impl Endpoints {
    /// RabbitMQ's connection name: `peer -> local`, e.g. `127.0.0.1:50124 -> 127.0.0.1:5672`;
    /// a direct connection's is `<node.direct.id>`, as RabbitMQ names them after their process.
    pub fn name(&self, id: ConnectionId) -> String {
        if self.direct {
            return format!("<{}.direct.{}>", crate::node::name(), id.0);
        }
        let addr = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        format!("{} -> {}", addr(self.peer), addr(self.local))
    }
}

/// Serve one connection, given its two halves (a TCP socket's, or a TLS stream's), until it closes.
pub async fn serve_stream<R, W>(
    mut rd: R,
    mut wr: W,
    ends: Endpoints,
    broker: Arc<Broker>,
    id: ConnectionId,
    shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + peer::PeerClosed + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = ends.peer.map(|a| a.to_string()).unwrap_or_default();
    let mut buf = BytesMut::with_capacity(MIN_READ_BUF);
    let Some(neg) = handshake_in_time(&mut rd, &mut wr, &mut buf, &broker, &ends, id).await else { return };
    tracing::info!(%peer, user = %neg.user, vhost = %neg.vhost.name, name = ?neg.name, "connection {id} opened");
    let out = Outbound::new(neg.frame_max);
    let info = register(&broker, &ends, id, &neg, &out);
    let live = Arc::new(Liveness { epoch: Instant::now(), last_read: AtomicU64::new(0), abort: Notify::new() });
    let hb = (neg.heartbeat > 0).then(|| Duration::from_secs(neg.heartbeat as u64));
    let writer = tokio::spawn(writer::run(wr, out.clone(), hb, live.clone(), info.clone()));
    let conn = Connection::open(&broker, id, neg, out.clone(), info.clone());
    let mut reader = reader::Reader::new(rd, buf, conn, info, out, live, broker, shutdown, peer, id);
    reader.run().await;
    reader.finish(writer).await;
}

/// The handshake, bounded by `handshake_timeout`; `None` (logged) when it did not complete.
async fn handshake_in_time<R, W>(
    rd: &mut R,
    wr: &mut W,
    buf: &mut BytesMut,
    broker: &Arc<Broker>,
    ends: &Endpoints,
    id: ConnectionId,
) -> Option<handshake::Negotiated>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let peer = ends.peer.map(|a| a.to_string()).unwrap_or_default();
    let hs = tokio::time::timeout(broker.config.handshake_timeout, handshake::run(rd, wr, buf, broker, ends)).await;
    match hs {
        Ok(Ok(n)) => Some(n),
        Ok(Err(handshake::HandshakeError::Refused(why))) => {
            tracing::warn!(%peer, "closing connection {id} during handshake: {why}");
            None
        }
        Ok(Err(handshake::HandshakeError::Io)) => {
            tracing::debug!(%peer, "connection {id} closed during handshake");
            None
        }
        Err(_) => {
            tracing::warn!(%peer, "closing connection {id}: handshake timeout");
            None
        }
    }
}

/// Enter the opened connection in the broker's registry (management API, memory monitor).
fn register(
    broker: &Broker,
    ends: &Endpoints,
    id: ConnectionId,
    neg: &handshake::Negotiated,
    out: &Arc<Outbound>,
) -> Arc<crate::stats::ConnInfo> {
    let peer_addr = ends.peer;
    let info = Arc::new(crate::stats::ConnInfo {
        id,
        name: ends.name(id),
        peer: peer_addr,
        local: ends.local,
        user: neg.user.clone(),
        vhost: neg.vhost.name.clone(),
        client_properties: neg.client_properties.clone(),
        connected_at: crate::clock::unix_ms(),
        tls: ends.tls,
        direct: ends.direct,
        frame_max: neg.frame_max,
        channel_max: neg.channel_max,
        heartbeat: neg.heartbeat,
        counters: Default::default(),
        channels: Default::default(),
        out: out.clone(),
        assembling: Default::default(),
        blocked: Default::default(),
        kill_reason: Default::default(),
        channel_kills: Default::default(),
        hold_confirms: Default::default(),
        drop_after_frames: Default::default(),
        delay_writes_ms: Default::default(),
        kill: Notify::new(),
    });
    broker.stats.register(info.clone());
    broker.events.emit("connection.created", |f| {
        f.by(Some(&neg.user));
        if let Some(n) = &neg.name {
            f.str("user_provided_name", n);
        }
        f.table("client_properties", &neg.client_properties)
            .int("connected_at", info.connected_at as i64)
            .int("channel_max", neg.channel_max as i64)
            .int("frame_max", neg.frame_max as i64)
            .int("timeout", neg.heartbeat as i64)
            .str("vhost", &info.vhost)
            .str("user", &info.user)
            .str("protocol", "{0,9,1}")
            .str("auth_mechanism", &neg.mechanism)
            .bool("ssl", ends.tls)
            .str("peer_host", ends.peer.map(|a| a.ip().to_string()).unwrap_or_default())
            .str("host", ends.local.map(|a| a.ip().to_string()).unwrap_or_default())
            .int("peer_port", ends.peer.map_or(0, |a| a.port()) as i64)
            .int("port", ends.local.map_or(0, |a| a.port()) as i64)
            .str("name", &info.name)
            .str("type", if ends.direct { "direct" } else { "network" })
            .str("node", crate::node::name());
    });
    info
}

impl Connection {
    /// The connection's protocol state right after the handshake.
    fn open(
        broker: &Arc<Broker>,
        id: ConnectionId,
        neg: handshake::Negotiated,
        out: Arc<Outbound>,
        info: Arc<crate::stats::ConnInfo>,
    ) -> Connection {
        Connection {
            ctx: ConnCtx {
                id,
                origin: Arc::new(crate::trace::Origin {
                    tracer: neg.vhost.tracer.clone(),
                    events: broker.events.clone(),
                    vhost: neg.vhost.name.clone(),
                    connection: info.name.as_str().into(),
                    user: neg.user.clone(),
                }),
                vhost: neg.vhost,
                out: out.clone(),
                consumer_timeout_ms: broker.config.consumer_timeout.map(|d| d.as_millis() as u64),
                store: broker.store.clone(),
                meta: broker.meta.clone(),
                grants: neg.grants,
                info: info.clone(),
                user: neg.user.as_str().into(),
                impersonator: neg.impersonator,
                max_message_size: broker.config.max_message_size,
                sync_meta: Default::default(),
                sync_lsn: Default::default(),
            },
            channels: Default::default(),
            confirm_dirty: Vec::new(),
            channel_max: neg.channel_max,
            frame_max: neg.frame_max,
            cancel_notify: neg.cancel_notify,
            blocked_notify: neg.blocked_notify,
            published: false,
            blocked_sent: false,
            state: State::Open,
            user: neg.user,
            auth_generation: broker.auth_generation.load(Ordering::Acquire),
            broker: broker.clone(),
            _slot: neg.slot,
        }
    }
}

/// Resolves with the store's new durable LSN when it moves (never without a store).
async fn durable_moved(rx: &mut Option<watch::Receiver<u64>>) -> u64 {
    match rx {
        Some(r) => {
            let _ = r.changed().await;
            *r.borrow_and_update()
        }
        None => std::future::pending().await,
    }
}

/// Read and drop input until EOF, an error or `limit` (bounded: at most `DISCARD_MAX` bytes).
async fn discard_until_eof<R: AsyncRead + Unpin>(rd: &mut R, limit: Duration) {
    /// A client still sending after this much is not waiting for our close.
    const DISCARD_MAX: usize = 4 * 1024 * 1024;
    let mut sink = vec![0u8; 16 * 1024];
    let mut total = 0;
    let _ = tokio::time::timeout(limit, async {
        while total < DISCARD_MAX {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

impl Connection {
    fn handle_frame(&mut self, f: Frame) -> Result<(), Failure> {
        if self.state == State::Draining {
            // rabbitmq-compat: after the client's connection.close, RabbitMQ answers every further
            // connection.close with close-ok and ignores everything else.
            if f.kind == FrameType::Method && f.channel == 0 {
                if let Ok(Method::ConnectionClose(_)) = Method::decode(f.payload) {
                    self.send0(&ConnectionCloseOk.into());
                }
            }
            return Ok(());
        }
        if self.state == State::Closing {
            // spec(connection.close): after sending close, only close / close-ok matter.
            if f.kind == FrameType::Method && f.channel == 0 {
                match Method::decode(f.payload) {
                    Ok(Method::ConnectionCloseOk(_)) => self.state = State::Closed,
                    Ok(Method::ConnectionClose(_)) => {
                        self.send0(&ConnectionCloseOk.into());
                        self.state = State::Draining;
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        match f.kind {
            FrameType::Heartbeat => {
                if f.channel != 0 {
                    // rabbitmq-compat: RabbitMQ answers 505 here, not the spec's 501.
                    return Err(AmqpError::connection_ids(
                        UNEXPECTED_FRAME,
                        "heartbeat frame on a non-zero channel",
                        0,
                        0,
                    )
                    .into());
                }
                Ok(())
            }
            FrameType::Method if f.channel != 0 && f.payload.starts_with(&BasicPublish::IDS) => {
                // The hot method: decoded to its own small struct and handed to an open channel
                // directly; anything unusual (no such channel, a closing one) takes the general
                // path with the same method.
                let ch = f.channel;
                let p = BasicPublish::decode(f.payload).map_err(method_decode_error)?;
                match self.channels.get_mut(&ch) {
                    Some(c) if c.phase != Phase::Closing => {
                        c.handle_publish(&self.ctx, p).map_err(|e| on_channel(e, ch))
                    }
                    _ => self.channel_method(ch, Method::BasicPublish(p)),
                }
            }
            FrameType::Method => {
                let m = Method::decode(f.payload).map_err(method_decode_error)?;
                let ch = f.channel;
                if ch == 0 {
                    self.connection_method(m).map_err(Failure::from)
                } else {
                    self.channel_method(ch, m)
                }
            }
            FrameType::Header | FrameType::Body => {
                let Some(ch) = self.channels.get_mut(&f.channel) else {
                    return Err(AmqpError::connection_ids(
                        CHANNEL_ERROR,
                        format!("content frame on channel {} which is not open", f.channel),
                        0,
                        0,
                    )
                    .into());
                };
                if ch.phase == Phase::Closing {
                    return Ok(());
                }
                self.published = true;
                let r = if f.kind == FrameType::Header {
                    ch.on_header(&self.ctx, f.payload)
                } else {
                    ch.on_body(&self.ctx, f.payload)
                };
                if ch.confirm.is_some() && !self.confirm_dirty.contains(&f.channel) {
                    self.confirm_dirty.push(f.channel);
                }
                r.map_err(|e| on_channel(e, f.channel))
            }
        }
    }

    /// The three frames of a whole publish (`frames` starts with them; `run` says where each
    /// payload is), handled in one step by an open channel of an open connection.
    /// `Err(frames)` when this is not the plain case: then nothing was done and the caller hands
    /// the three frames to [`Connection::handle_frame`] one by one, which also reports what is
    /// wrong.
    fn handle_frames_of_publish(
        &mut self,
        frames: bytes::Bytes,
        run: &frame::PublishRun,
    ) -> Result<Result<(), Failure>, bytes::Bytes> {
        if self.state != State::Open {
            return Err(frames);
        }
        let Some(ch) = self.channels.get_mut(&run.channel).filter(|c| c.phase == Phase::Open) else {
            return Err(frames);
        };
        let r = ch.publish_whole(&self.ctx, frames, run)?;
        self.published = true;
        if ch.confirm.is_some() && !self.confirm_dirty.contains(&run.channel) {
            self.confirm_dirty.push(run.channel);
        }
        Ok(r.map_err(|e| on_channel(e, run.channel)))
    }

    fn connection_method(&mut self, m: Method) -> Result<(), AmqpError> {
        match m {
            Method::ConnectionClose(c) => {
                tracing::debug!(code = c.reply_code, text = %c.reply_text, "connection {} closed by client", self.ctx.id);
                self.teardown();
                self.channels.clear();
                self.send0(&ConnectionCloseOk.into());
                // rabbitmq-compat: the socket stays open (input discarded) until the client closes
                // it, so publishes still unread cannot make the kernel reset the connection before
                // the client has read close-ok.
                self.state = State::Draining;
                Ok(())
            }
            Method::ConnectionCloseOk(_) => {
                self.state = State::Closed;
                Ok(())
            }
            Method::ConnectionUpdateSecret(_) => {
                // Secrets (OAuth tokens) are not used by Warren's user store; accept like RabbitMQ
                // accepts a refreshed secret.
                self.send0(&ConnectionUpdateSecretOk.into());
                Ok(())
            }
            Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_) => Ok(()),
            other => Err(AmqpError::connection(
                COMMAND_INVALID,
                format!("unexpected method {} on channel 0", other.name()),
                Some(&other),
            )),
        }
    }

    fn channel_method(&mut self, id: u16, m: Method) -> Result<(), Failure> {
        if m.class_id() == CLASS_CONNECTION {
            return Err(AmqpError::connection(
                COMMAND_INVALID,
                format!("connection method {} on channel {id}", m.name()),
                Some(&m),
            )
            .into());
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            return match m {
                Method::ChannelOpen(_) => {
                    // rabbitmq-compat: channel_max limits how many channels are open, not their
                    // numbers (any of 1..=65535 may be used); RabbitMQ refuses the open that would
                    // exceed it with a connection error 530 naming no method.
                    let limit = if self.channel_max == 0 { u16::MAX } else { self.channel_max };
                    if self.channels.len() >= usize::from(limit) {
                        return Err(AmqpError::connection_ids(
                            NOT_ALLOWED,
                            format!(
                                "number of channels opened ({}) has reached the negotiated channel_max ({limit})",
                                self.channels.len()
                            ),
                            0,
                            0,
                        )
                        .into());
                    }
                    if let Err(text) = self.broker.check_user_channel(&self.user) {
                        return Err(AmqpError::connection_ids(NOT_ALLOWED, text, 0, 0).into());
                    }
                    let shared =
                        ChannelShared::new(id, self.ctx.out.clone(), self.cancel_notify, self.ctx.origin.clone());
                    let ch = Channel::new(shared);
                    ch.send(&ChannelOpenOk { channel_id: Default::default() }.into());
                    self.ctx.origin.events.emit("channel.created", |f| {
                        f.by(Some(&self.ctx.user))
                            .str("vhost", &self.ctx.vhost.name)
                            .str("user", &*self.ctx.user)
                            .int("number", id as i64)
                            .str("connection", &self.ctx.info.name)
                            .str("name", ch.shared.name());
                    });
                    self.ctx.info.channels.lock().insert(id, ch.shared.clone());
                    self.channels.insert(id, ch);
                    Ok(())
                }
                other => Err(AmqpError::connection(CHANNEL_ERROR, "expected 'channel.open'", Some(&other)).into()),
            };
        };
        if ch.phase == Phase::Closing {
            match m {
                Method::ChannelCloseOk(_) => {
                    self.channels.remove(&id);
                    self.ctx.info.channels.lock().remove(&id);
                }
                Method::ChannelClose(_) => {
                    ch.send(&ChannelCloseOk.into());
                }
                _ => {}
            }
            return Ok(());
        }
        match m {
            Method::ChannelOpen(_) => {
                Err(AmqpError::connection(CHANNEL_ERROR, "second 'channel.open' seen", Some(&m)).into())
            }
            Method::ChannelClose(_) => {
                ch.teardown(&self.ctx);
                ch.send(&ChannelCloseOk.into());
                self.channels.remove(&id);
                self.ctx.info.channels.lock().remove(&id);
                Ok(())
            }
            Method::ChannelCloseOk(_) => Ok(()),
            m => ch.handle(&self.ctx, m).map_err(|e| on_channel(e, id)),
        }
    }

    /// The one place errors become close frames (after the deliveries deferred so far: the
    /// client sees them before the close, as it would without deferral).
    fn fail(&mut self, e: impl Into<Failure>) {
        crate::queue::defer::flush();
        let Failure(e, ch_id) = e.into();
        // A refusal that no handler gave ids to becomes the channel error it stands for.
        match Failure(e.at_ids(0, 0), ch_id) {
            Failure(AmqpError::Channel { code, text, class_id, method_id }, ch_id) if ch_id != 0 => {
                tracing::warn!("connection {}: closing channel {ch_id}: {text}", self.ctx.id);
                if let Some(ch) = self.channels.get_mut(&ch_id) {
                    ch.fail(&self.ctx, code, crate::error::reply_text(text), class_id, method_id);
                }
            }
            Failure(AmqpError::Channel { code, text, class_id, method_id }, _)
            | Failure(AmqpError::Connection { code, text, class_id, method_id }, _) => {
                if self.state != State::Open {
                    return;
                }
                tracing::warn!("connection {}: closing connection: {text}", self.ctx.id);
                self.teardown();
                self.send0(
                    &ConnectionClose {
                        reply_code: code,
                        reply_text: crate::error::reply_text(text),
                        class_id,
                        method_id,
                    }
                    .into(),
                );
                self.state = State::Closing;
            }
            // Turned into a channel error by `at_ids` above.
            Failure(AmqpError::Refused { .. }, _) => {}
        }
    }

    /// Enforce consumer acknowledgement timeouts on every open channel.
    fn check_ack_timeouts(&mut self) {
        let now = self.ctx.vhost.clock.now_ms();
        let mut failed = Vec::new();
        for (id, ch) in self.channels.iter_mut() {
            if ch.phase == Phase::Open {
                if let Err(e) = ch.check_ack_timeouts(&self.ctx, now) {
                    failed.push(on_channel(e, *id));
                }
            }
        }
        for f in failed {
            self.fail(f);
        }
    }

    /// Tell a publishing client about resource alarm transitions (if it declared the capability).
    fn notify_alarm(&mut self, on: bool, broker: &Broker) {
        if !self.blocked_notify || !self.published || self.state != State::Open {
            return;
        }
        if on && !self.blocked_sent {
            // RabbitMQ names one resource: memory when both alarms are on.
            let disk_only = !broker.mem_alarm.load(Ordering::Relaxed) && broker.disk_alarm.load(Ordering::Relaxed);
            let reason = if disk_only { "low on disk" } else { "low on memory" };
            self.send0(&ConnectionBlocked { reason: reason.into() }.into());
            self.blocked_sent = true;
        } else if !on && self.blocked_sent {
            self.send0(&ConnectionUnblocked.into());
            self.blocked_sent = false;
        }
    }

    fn send0(&self, m: &Method) {
        self.ctx.out.write(|b| frame::encode_method(b, 0, m));
    }

    fn flush_confirms(&mut self, durable: u64) {
        for id in self.confirm_dirty.drain(..) {
            if let Some(ch) = self.channels.get_mut(&id) {
                if ch.phase == Phase::Open {
                    ch.flush_confirms(durable);
                }
            }
        }
    }

    /// Test fault "hold confirms": publish the count of unconfirmed publishes without sending any.
    fn count_unconfirmed(&mut self) {
        for ch in self.channels.values() {
            ch.count_unconfirmed();
        }
    }

    /// Some channel has confirms waiting for the store's fsync.
    fn awaits_disk(&self) -> bool {
        self.channels.values().any(|c| c.awaits_disk())
    }

    /// The store's fsync reached `durable`: send the confirms that waited for it.
    fn flush_disk_confirms(&mut self, durable: u64) {
        for ch in self.channels.values_mut() {
            if ch.phase == Phase::Open && ch.awaits_disk() {
                ch.flush_confirms(durable);
            }
        }
    }

    /// Tear down every channel and delete this connection's exclusive queues.
    fn teardown(&mut self) {
        for ch in self.channels.values_mut() {
            ch.teardown(&self.ctx);
        }
        self.ctx.info.channels.lock().clear();
        for q in self.ctx.vhost.exclusive_queues_of(self.ctx.id) {
            self.ctx.vhost.delete_queue(&q);
        }
    }
}

/// An error and the channel it happened on (0: the connection itself).
pub struct Failure(AmqpError, u16);

impl From<AmqpError> for Failure {
    fn from(e: AmqpError) -> Self {
        Failure(e, 0)
    }
}

fn on_channel(e: AmqpError, id: u16) -> Failure {
    Failure(e, id)
}

/// A method frame that does not decode: a connection error, with RabbitMQ's exact text for bad
/// UTF-8 (clients and tests match on it).
fn method_decode_error(e: warren_protocol::MethodError) -> AmqpError {
    match e {
        warren_protocol::MethodError::BadUtf8 => AmqpError::connection_ids(e.reply_code(), e.to_string(), 0, 0),
        e => AmqpError::connection_ids(e.reply_code(), format!("cannot decode method frame: {e}"), 0, 0),
    }
}
