//! The connection's reader loop, as a few named steps: re-read changed permissions, handle every
//! complete frame, flush confirms, wait while the client does not read, wait while blocked by an
//! alarm, then read (or react to whatever else woke it).
//!
//! Runs in: the connection's reader task (spawned per socket by the accept loop).
//!
//! # Invariants
//! - Steps run in this order every round, so a whole read buffer of frames is handled before the
//!   next read and confirms go out once per batch.
//! - After a read of at least [`YIELD_AFTER_BYTES`] the task yields its runtime thread once (see
//!   there), so a connection streaming large bodies does not keep other connections' tasks waiting.
//! - A step that ends the connection returns [`Step::Stop`]; [`Reader::finish`] then tears down
//!   (channels, exclusive queues, registry entry, outbound buffer) exactly once.
use super::writer::{self, Liveness};
use super::{discard_until_eof, durable_moved, peer, Connection, State, CLOSE_OK_TIMEOUT, READ_BUF, YIELD_AFTER_BYTES};
use crate::broker::Broker;
use crate::error::AmqpError;
use crate::ids::ConnectionId;
use crate::outbound::Outbound;
use crate::stats::ConnInfo;
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warren_protocol::constants::CONNECTION_FORCED;
use warren_protocol::{frame, Frame, FrameType};

/// How often unacked deliveries are checked against consumer acknowledgement timeouts.
const ACK_TIMEOUT_CHECK: Duration = Duration::from_millis(250);

/// How long a blocked connection waits before checking whether its peer has gone.
const BLOCKED_PEER_CHECK: Duration = Duration::from_secs(1);

/// How long connections get to answer the close a shutdown sends them.
const SHUTDOWN_CLOSE_OK: Duration = Duration::from_secs(1);

/// Whether the loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Next step.
    Go,
    /// The connection ends.
    Stop,
}

/// The reader's state after the handshake.
pub(super) struct Reader<R> {
    /// The socket's read half.
    rd: R,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
    /// How much the next read may take (doubles up to [`READ_BUF`] while reads fill it).
    read_size: usize,
    /// The connection's channels and protocol state.
    conn: Connection,
    /// The registry entry (counters, kill switch, blocked flag).
    info: Arc<ConnInfo>,
    /// The outbound buffer the writer drains.
    out: Arc<Outbound>,
    /// Shared with the writer: last read time, abort on missed heartbeats or a failed write.
    live: Arc<Liveness>,
    /// The broker.
    broker: Arc<Broker>,
    /// The resource alarm (publishers are not read while it is on).
    alarm: watch::Receiver<bool>,
    /// The store's durable LSN (confirms of persistent messages wait for it).
    durable_rx: Option<watch::Receiver<u64>>,
    /// Ticks the consumer acknowledgement timeout check.
    ack_check: tokio::time::Interval,
    /// Set once a close is under way: when to give up waiting for close-ok / the client's EOF.
    close_deadline: Option<tokio::time::Instant>,
    /// Set on a framing error: what the client still sends is discarded, not parsed.
    unparseable: bool,
    /// The server's shutdown flag.
    shutdown: watch::Receiver<bool>,
    /// The peer's address, for logs.
    peer: String,
    /// This connection's id.
    id: ConnectionId,
}

impl<R: AsyncRead + peer::PeerClosed + Unpin + Send + 'static> Reader<R> {
    /// The reader of an opened connection, with a small read buffer that grows with the traffic.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rd: R,
        buf: BytesMut,
        conn: Connection,
        info: Arc<ConnInfo>,
        out: Arc<Outbound>,
        live: Arc<Liveness>,
        broker: Arc<Broker>,
        shutdown: watch::Receiver<bool>,
        peer: String,
        id: ConnectionId,
    ) -> Reader<R> {
        let mut ack_check = tokio::time::interval(ACK_TIMEOUT_CHECK);
        ack_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Reader {
            rd,
            read_size: buf.capacity(),
            buf,
            conn,
            info,
            out,
            live,
            alarm: broker.alarm.subscribe(),
            durable_rx: broker.store.as_ref().map(|s| s.durable()),
            broker,
            ack_check,
            close_deadline: None,
            unparseable: false,
            shutdown,
            peer,
            id,
        }
    }

    /// The loop: each round runs the steps in order until one stops the connection.
    pub async fn run(&mut self) {
        loop {
            self.refresh_grants();
            if self.handle_frames() == Step::Stop
                || self.flush_confirms().await == Step::Stop
                || self.wait_for_client_to_read().await == Step::Stop
                || self.wait_while_blocked().await == Step::Stop
                || self.read_or_event().await == Step::Stop
            {
                return;
            }
        }
    }

    /// Permissions changed since the last round: re-read ours (cleared ones refuse everything).
    fn refresh_grants(&mut self) {
        let g = self.broker.auth_generation.load(Ordering::Acquire);
        if g != self.conn.auth_generation {
            let conn = &mut self.conn;
            conn.auth_generation = g;
            conn.ctx.grants = self
                .broker
                .grants(&conn.user, &conn.ctx.vhost.name)
                .unwrap_or_else(|| Arc::new(crate::auth::Grants::none(&conn.user, &conn.ctx.vhost.name)));
        }
    }

    /// Handle every complete frame in the buffer. A whole publish (method, header and one body
    /// frame, the shape nearly every publish has) goes to its channel in one step; when that
    /// channel cannot take it that way, its three frames go one by one like any others.
    ///
    /// Deliveries to a queue's one consumer are deferred to the end of the batch and made in runs
    /// (`queue::defer`): the guard drives those queues when this returns.
    fn handle_frames(&mut self) -> Step {
        let _deliveries = crate::queue::defer::begin();
        loop {
            if self.conn.state == State::Closed {
                return Step::Stop;
            }
            if self.info.drop_after_frames.load(Ordering::Relaxed) == 0 {
                if let Some(run) = frame::publish_run(&self.buf, self.conn.frame_max) {
                    let frames = self.buf.split_to(run.len).freeze();
                    match self.conn.handle_frames_of_publish(frames, &run) {
                        Ok(r) => {
                            if let Err(e) = r {
                                self.conn.fail(e);
                            }
                            self.after_frame();
                        }
                        Err(frames) => {
                            let parts = [
                                (FrameType::Method, run.method),
                                (FrameType::Header, run.header),
                                (FrameType::Body, run.body),
                            ];
                            for (kind, at) in parts {
                                let f = Frame { kind, channel: run.channel, payload: frames.slice(at) };
                                if self.handle_frame(f) == Step::Stop {
                                    return Step::Stop;
                                }
                            }
                        }
                    }
                    continue;
                }
            }
            match frame::decode(&mut self.buf, self.conn.frame_max) {
                Ok(Some(f)) => {
                    if self.handle_frame(f) == Step::Stop {
                        return Step::Stop;
                    }
                }
                Ok(None) => return Step::Go,
                Err(e) => {
                    // A framing error leaves the stream unparseable: close, and only discard what
                    // the client still sends until it closes (or the close-ok timeout): closing a
                    // socket with unread input makes the kernel send RST, which can destroy our
                    // connection.close before the client reads it.
                    self.conn.fail(AmqpError::connection_ids(e.reply_code(), e.to_string(), 0, 0));
                    self.unparseable = true;
                    return Step::Stop;
                }
            }
        }
    }

    /// One frame: handled, then the test fault and the close deadline checked. Any frame but a
    /// publish's is handled after the deliveries deferred so far, deferring none of its own
    /// (`queue::defer::outside`).
    fn handle_frame(&mut self, f: Frame) -> Step {
        let r = if f.is_publish_part() {
            self.conn.handle_frame(f)
        } else {
            crate::queue::defer::outside(|| self.conn.handle_frame(f))
        };
        if let Err(e) = r {
            self.conn.fail(e);
        }
        if self.drop_by_fault() {
            return Step::Stop;
        }
        self.after_frame();
        Step::Go
    }

    /// After a frame: a close under way gets its deadline for the client's close-ok.
    fn after_frame(&mut self) {
        if matches!(self.conn.state, State::Closing | State::Draining) && self.close_deadline.is_none() {
            self.close_deadline = Some(tokio::time::Instant::now() + CLOSE_OK_TIMEOUT);
        }
    }

    /// Test fault "drop after N frames": count this frame; true when the socket is to be dropped
    /// now (no connection.close: the client sees its connection lost).
    fn drop_by_fault(&self) -> bool {
        let left = self.info.drop_after_frames.load(Ordering::Relaxed);
        if left == 0 {
            return false;
        }
        self.info.drop_after_frames.store(left - 1, Ordering::Relaxed);
        if left == 1 {
            tracing::warn!(peer = %self.peer, "test fault: dropping connection {}", self.id);
        }
        left == 1
    }

    /// Confirms due after this batch, then the replies held for the definitions file or the store.
    async fn flush_confirms(&mut self) -> Step {
        if self.info.hold_confirms.load(Ordering::Relaxed) {
            // Test fault: confirms wait (counted) until released.
            self.conn.count_unconfirmed();
            self.conn.ctx.settle_holds().await;
            return Step::Go;
        }
        let durable = self.durable_rx.as_mut().map(|r| *r.borrow_and_update()).unwrap_or(u64::MAX);
        self.conn.flush_confirms(durable);
        // The fsync seen just now may cover confirms of channels that had no frames in this batch
        // (the wake-up came from elsewhere): flush those too, or they would wait for the next one.
        self.conn.flush_disk_confirms(durable);
        self.conn.ctx.settle_holds().await;
        Step::Go
    }

    /// Backpressure: don't read more while the client isn't reading what we send.
    async fn wait_for_client_to_read(&mut self) -> Step {
        while self.out.over_high_water() && !self.out.is_closed() {
            let drained = self.out.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.out.over_high_water() {
                break;
            }
            tokio::select! {
                _ = drained => {}
                _ = self.live.abort.notified() => return Step::Stop,
            }
        }
        Step::Go
    }

    /// Resource alarm: a publishing connection is not read while it is on (RabbitMQ's blocking);
    /// consumers keep being served so the alarm can clear.
    async fn wait_while_blocked(&mut self) -> Step {
        self.conn.notify_alarm(*self.alarm.borrow_and_update(), &self.broker);
        while *self.alarm.borrow() && self.conn.published && self.conn.state == State::Open {
            self.info.blocked.store(true, Ordering::Relaxed);
            // The client's heartbeats are not read while blocked: don't count that as silence.
            self.live.last_read.store(writer::millis_since(self.live.epoch), Ordering::Relaxed);
            tokio::select! {
                _ = self.alarm.changed() => {}
                _ = tokio::time::sleep(BLOCKED_PEER_CHECK) => {}
                // Confirms keep flowing while blocked (only reading stops): what reaches the disk
                // meanwhile is confirmed at once, as RabbitMQ does.
                d = durable_moved(&mut self.durable_rx), if self.durable_rx.is_some() && self.conn.awaits_disk() => {
                    self.conn.flush_disk_confirms(d);
                }
                _ = self.live.abort.notified() => return Step::Stop,
                _ = self.shutdown.changed() => self.close_for_shutdown(),
            }
            self.conn.notify_alarm(*self.alarm.borrow_and_update(), &self.broker);
            if self.rd.peer_closed() {
                // Gone while blocked: tear down now, so what it held is released.
                tracing::info!(peer = %self.peer, "connection {} closed by client while blocked", self.id);
                return Step::Stop;
            }
        }
        self.info.blocked.store(false, Ordering::Relaxed);
        Step::Go
    }

    /// Read from the socket, or react to whatever else comes first: a missed heartbeat, the close
    /// deadline, the alarm, the disk, the ack-timeout tick, a kill from the management API, the
    /// server's shutdown.
    async fn read_or_event(&mut self) -> Step {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let spare = self.buf.capacity() - self.buf.len();
        let deadline =
            self.close_deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400 * 365));
        let id = self.id;
        tokio::select! {
            r = self.rd.read_buf(&mut self.buf) => match r {
                Ok(0) | Err(_) => {
                    if self.conn.state == State::Open {
                        tracing::info!(peer = %self.peer, "connection {id} closed by client without connection.close");
                    }
                    return Step::Stop;
                }
                Ok(n) => {
                    self.live.last_read.store(writer::millis_since(self.live.epoch), Ordering::Relaxed);
                    crate::counters::bump(&self.info.counters.recv_oct, n as u64);
                    crate::counters::bump(&self.info.counters.recv_cnt, 1);
                    if n == spare && self.read_size < READ_BUF {
                        self.read_size *= 2;
                    }
                    if n >= YIELD_AFTER_BYTES {
                        tokio::task::yield_now().await;
                    }
                }
            },
            _ = self.live.abort.notified() => {
                tracing::warn!(peer = %self.peer, "connection {id}: peer unreachable (missed heartbeats or write failure)");
                return Step::Stop;
            }
            _ = tokio::time::sleep_until(deadline), if self.close_deadline.is_some() => {
                if self.conn.state == State::Draining {
                    tracing::debug!("connection {id}: client kept the socket open {:?} after close-ok", CLOSE_OK_TIMEOUT);
                } else {
                    tracing::debug!("connection {id}: no close-ok within {:?}", CLOSE_OK_TIMEOUT);
                }
                return Step::Stop;
            }
            _ = self.alarm.changed() => {}
            d = durable_moved(&mut self.durable_rx), if self.durable_rx.is_some() && self.conn.awaits_disk() => {
                if !self.info.hold_confirms.load(Ordering::Relaxed) {
                    self.conn.flush_disk_confirms(d);
                }
            }
            _ = self.ack_check.tick() => self.conn.check_ack_timeouts(),
            _ = self.info.kill.notified(), if self.conn.state == State::Open => {
                let channels = std::mem::take(&mut *self.info.channel_kills.lock());
                for (ch, code, text) in channels {
                    self.conn.fail(super::Failure(AmqpError::channel_ids(code, text, 0, 0), ch));
                }
                let kill = self.info.kill_reason.lock().clone();
                if let Some((code, reason)) = kill {
                    tracing::warn!(peer = %self.peer, "closing connection {id}: {reason}");
                    self.conn.fail(AmqpError::connection_ids(code, reason, 0, 0));
                    self.close_deadline = Some(tokio::time::Instant::now() + CLOSE_OK_TIMEOUT);
                }
            }
            _ = self.shutdown.changed(), if self.conn.state == State::Open => self.close_for_shutdown(),
        }
        Step::Go
    }

    /// The server is shutting down: connection.close 320, and a short wait for close-ok.
    fn close_for_shutdown(&mut self) {
        self.conn.fail(AmqpError::connection_ids(
            CONNECTION_FORCED,
            "broker forced connection closure with reason 'shutdown'",
            0,
            0,
        ));
        self.close_deadline = Some(tokio::time::Instant::now() + SHUTDOWN_CLOSE_OK);
    }

    /// The connection ended: tear everything down, let the writer send what is left, and log.
    pub async fn finish(mut self, writer: JoinHandle<()>) {
        self.conn.teardown();
        self.broker.stats.unregister(self.id);
        let info = &self.info;
        self.broker.events.emit("connection.closed", |f| {
            if let Some(n) = info.client_properties.get("connection_name").and_then(|v| v.as_bytes()) {
                f.str("user_provided_name", n);
            }
            f.table("client_properties", &info.client_properties)
                .str("name", &info.name)
                .str("node", crate::node::name());
        });
        self.out.close();
        if self.unparseable {
            discard_until_eof(&mut self.rd, CLOSE_OK_TIMEOUT).await;
        }
        let _ = writer.await;
        tracing::info!(peer = %self.peer, "connection {} closed", self.id);
    }
}
