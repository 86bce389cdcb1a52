//! One stream protocol connection: the handshake (peer properties, SASL PLAIN, tune, open), the
//! main loop (read frames, handle each command, heartbeats, shutdown), and the writer task.
//!
//! Runs in: the connection's task (reading and handling); a writer task owns the socket's write
//! half and writes what every other task of the connection queues for it, flushing when its
//! queue is empty.
//!
//! # Invariants
//! - No command other than the handshake's is handled before open; a frame that does not decode
//!   closes the connection with the protocol's code (13 unknown frame, 14 frame too large).
//! - On every exit the connection's publishers, subscriptions and registry entry are removed.
//! - While the broker's resource alarm is on, a connection with publishers is not read.
use super::publish::{self, Publisher};
use super::registry::StreamConn;
use super::subscribe::Subscription;
use crate::broker::Broker;
use crate::ids::ConnectionId;
use crate::vhost::access::Actor;
use crate::vhost::VHost;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use warren_protocol::stream::{code, key, response, Request, Response};

/// Frame max the server proposes in tune (RabbitMQ's default).
pub const FRAME_MAX: u32 = 1_048_576;
/// Heartbeat the server proposes in tune, seconds (RabbitMQ's default).
pub const HEARTBEAT: u32 = 60;
/// Frames larger than this are refused before open (the handshake's are small).
const HANDSHAKE_FRAME_MAX: u32 = 64 * 1024;
/// The handshake must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The writer gathers up to this many bytes before writing.
const WRITE_BUFFER: usize = 128 * 1024;

/// What the writer task writes: whole frames, one buffer or several pieces.
pub enum Out {
    Frame(Bytes),
    Pieces(Vec<Bytes>),
}

/// The sending side of a connection, shared by its tasks.
#[derive(Clone)]
pub struct Tx {
    tx: mpsc::UnboundedSender<Out>,
}

impl Tx {
    /// Queue one frame built by `f`.
    pub fn frame(&self, f: impl FnOnce(&mut BytesMut)) {
        let mut b = BytesMut::with_capacity(64);
        f(&mut b);
        let _ = self.tx.send(Out::Frame(b.freeze()));
    }
    /// Queue one response.
    pub fn response(&self, r: &Response) {
        self.frame(|b| r.encode(b));
    }
    /// Queue a frame made of pieces (a Deliver with message bodies).
    pub fn pieces(&self, p: Vec<Bytes>) {
        let _ = self.tx.send(Out::Pieces(p));
    }
    /// Queue a generic response (key | 0x8000, correlation id, code).
    pub fn code(&self, key: u16, correlation_id: u32, c: u16) {
        self.frame(|b| response::encode_response(b, key, correlation_id, c));
    }
    /// Whether the writer is gone (the socket closed).
    pub fn closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Why a connection ends.
pub enum Stop {
    /// Send close with this code and reason, then end.
    Close(u16, String),
    /// End now (the socket is gone, or the client closed).
    Now,
}

/// An open connection's state.
pub struct Conn {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Its id.
    pub id: ConnectionId,
    /// Where it sends.
    pub tx: Tx,
    /// Its vhost (after open).
    pub vhost: Arc<VHost>,
    /// Its user.
    pub user: String,
    /// Its user's permissions in the vhost.
    pub grants: Arc<crate::auth::Grants>,
    /// The server address the client reached (advertised in metadata unless configured).
    pub local: SocketAddr,
    /// Publishers by id.
    pub publishers: HashMap<u8, Publisher>,
    /// Subscriptions by id.
    pub subs: HashMap<u8, Subscription>,
    /// The management view of this connection.
    pub info: Arc<StreamConn>,
    /// Where publishes wait for their confirms (the confirm task).
    pub confirms: mpsc::UnboundedSender<publish::Pending>,
    /// The client announced Deliver version 2 (ExchangeCommandVersions).
    pub deliver_v2: bool,
    /// ConsumerUpdate requests waiting for the client's answer (single active consumer).
    pub updates: super::subscribe::Updates,
}

impl Conn {
    /// The actor the core checks this connection's operations as.
    pub fn actor(&self) -> Actor<'_> {
        Actor { user: Some(&self.user), grants: Some(&self.grants), impersonator: false, conn: None, origin: None }
    }
}

/// Serve one connection until it closes.
pub async fn serve(
    sock: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    id: ConnectionId,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = sock.set_nodelay(true);
    let local = sock.local_addr().unwrap_or(peer);
    let (mut rd, wr) = sock.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Tx { tx };
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = tokio::spawn(write_loop(wr, rx, sent.clone()));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let opened = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut rd, &mut buf, &tx, &broker, id, peer, local, sent.clone()),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(why)) => {
            if let Some(w) = why {
                tracing::warn!(%peer, "stream protocol: connection refused: {w}");
            }
            drop(tx);
            let _ = writer.await;
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "stream protocol: handshake timeout");
            return;
        }
    };
    let (mut conn, heartbeat, frame_max, mut kill) = opened;
    // From here the connection's own handle is the only one (the writer ends with the last).
    drop(tx);
    tracing::info!(%peer, user = %conn.user, vhost = %conn.vhost.name, "stream protocol connection opened");
    let (ctx, crx) = mpsc::unbounded_channel();
    conn.confirms = ctx;
    let confirmer = tokio::spawn(publish::confirm_loop(broker.clone(), conn.tx.clone(), crx));
    broker.stream_conns.add(conn.info.clone());
    let stop = main_loop(&mut conn, &mut rd, &mut buf, heartbeat, frame_max, &mut shutdown, &mut kill, &sent).await;
    if let Stop::Close(c, reason) = &stop {
        tracing::info!(%peer, "stream protocol: closing connection: {reason} ({c})");
        conn.tx.frame(|b| response::encode_close(b, 1, *c, reason.as_bytes()));
    }
    let subs: Vec<_> = conn.subs.drain().collect();
    for (id, s) in subs {
        s.stop(&conn, id);
    }
    conn.publishers.clear();
    broker.stream_conns.remove(id);
    drop(conn);
    let _ = confirmer.await;
    let _ = writer.await;
    tracing::info!(%peer, "stream protocol connection closed");
}

type Opened = (Conn, u32, u32, watch::Receiver<Option<String>>);

/// Read the next frame (at most `max` bytes) during the handshake.
async fn next_request(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    max: u32,
) -> Result<Request, Option<String>> {
    loop {
        match warren_protocol::stream::split_frame(buf, max) {
            Ok(Some(f)) => return Request::decode(f).map_err(|e| Some(format!("bad frame: {e}"))),
            Ok(None) => {}
            Err(e) => return Err(Some(format!("bad frame: {e}"))),
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

/// Peer properties, SASL, tune, open.
#[allow(clippy::too_many_arguments)]
async fn handshake(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    tx: &Tx,
    broker: &Arc<Broker>,
    id: ConnectionId,
    peer: SocketAddr,
    local: SocketAddr,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> Result<Opened, Option<String>> {
    let mut client_properties = Vec::new();
    let mut user: Option<String> = None;
    loop {
        let req = next_request(rd, buf, HANDSHAKE_FRAME_MAX).await?;
        match req {
            Request::PeerProperties { correlation_id, properties } => {
                client_properties = properties
                    .iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                tx.response(&Response::PeerProperties {
                    correlation_id,
                    code: code::OK,
                    properties: server_properties(),
                });
            }
            Request::SaslHandshake { correlation_id } => tx.response(&Response::SaslHandshake {
                correlation_id,
                code: code::OK,
                mechanisms: vec![Bytes::from_static(b"PLAIN")],
            }),
            Request::SaslAuthenticate { correlation_id, mechanism, data } => {
                if &mechanism[..] != b"PLAIN" {
                    tx.code(key::SASL_AUTHENTICATE, correlation_id, code::SASL_MECHANISM_NOT_SUPPORTED);
                    return Err(Some(format!("unsupported mechanism {}", String::from_utf8_lossy(&mechanism))));
                }
                let mut parts = data.split(|b| *b == 0);
                let _authzid = parts.next();
                let (u, p) = match (parts.next(), parts.next()) {
                    (Some(u), Some(p)) => {
                        (String::from_utf8_lossy(u).into_owned(), String::from_utf8_lossy(p).into_owned())
                    }
                    _ => (String::new(), String::new()),
                };
                if !broker.check_password(&u, &p) {
                    tx.code(key::SASL_AUTHENTICATE, correlation_id, code::AUTHENTICATION_FAILURE);
                    return Err(Some(format!("authentication failed for user '{u}'")));
                }
                if !broker.login_allowed_from(&u, Some(peer.ip())) {
                    tx.code(key::SASL_AUTHENTICATE, correlation_id, code::SASL_AUTHENTICATION_FAILURE_LOOPBACK);
                    return Err(Some(format!("user '{u}' can only connect via localhost")));
                }
                tx.response(&Response::SaslAuthenticate { correlation_id, code: code::OK, challenge: Bytes::new() });
                tx.frame(|b| response::encode_tune(b, FRAME_MAX, HEARTBEAT));
                user = Some(u);
            }
            Request::Tune { frame_max, heartbeat } => {
                let req = next_request(rd, buf, HANDSHAKE_FRAME_MAX).await?;
                let Request::Open { correlation_id, virtual_host } = req else {
                    return Err(Some("expected open after tune".into()));
                };
                let Some(user) = user.clone() else { return Err(Some("open before authentication".into())) };
                let vname = String::from_utf8_lossy(&virtual_host).into_owned();
                let vhost = broker.vhost(&vname);
                let grants = vhost.as_ref().and_then(|_| broker.grants(&user, &vname));
                let (Some(vhost), Some(grants)) = (vhost, grants) else {
                    tx.code(key::OPEN, correlation_id, code::VIRTUAL_HOST_ACCESS_FAILURE);
                    return Err(Some(format!("access to vhost '{vname}' refused for user '{user}'")));
                };
                let (host, port) = advertised(broker, local);
                tx.response(&Response::Open {
                    correlation_id,
                    code: code::OK,
                    properties: vec![
                        (Bytes::from_static(b"advertised_host"), Bytes::from(host)),
                        (Bytes::from_static(b"advertised_port"), Bytes::from(port.to_string())),
                    ],
                });
                let frame_max = match frame_max {
                    0 => FRAME_MAX,
                    f => f.min(FRAME_MAX),
                };
                // spec(stream.tune): the client's heartbeat (0: none) is used as it answers.
                let (kill_tx, kill_rx) = watch::channel(None);
                let info = Arc::new(StreamConn {
                    id,
                    name: format!("{peer} -> {local}"),
                    user: user.clone(),
                    vhost: vname.clone(),
                    peer,
                    local,
                    frame_max,
                    heartbeat,
                    client_properties: client_properties.clone(),
                    connected_at: crate::clock::unix_ms(),
                    recv_oct: Default::default(),
                    send_oct: sent.clone(),
                    publishers: Default::default(),
                    consumers: Default::default(),
                    kill: kill_tx,
                });
                let conn = Conn {
                    broker: broker.clone(),
                    id,
                    tx: tx.clone(),
                    vhost,
                    user,
                    grants,
                    local,
                    publishers: HashMap::new(),
                    subs: HashMap::new(),
                    info,
                    confirms: mpsc::unbounded_channel().0,
                    deliver_v2: false,
                    updates: Default::default(),
                };
                return Ok((conn, heartbeat, frame_max, kill_rx));
            }
            Request::Close { correlation_id, .. } => {
                tx.code(key::CLOSE, correlation_id, code::OK);
                return Err(None);
            }
            Request::Heartbeat => {}
            other => {
                return Err(Some(format!("command {:#06x} before the connection was opened", other.key())));
            }
        }
    }
}

/// The host and port advertised to clients.
pub fn advertised(broker: &Broker, local: SocketAddr) -> (String, u16) {
    let host = broker.config.stream_advertised_host.clone().unwrap_or_else(|| local.ip().to_string());
    (host, broker.config.stream_advertised_port.unwrap_or(local.port()))
}

/// Peer properties the server announces (RabbitMQ's keys, Warren's identity).
fn server_properties() -> Vec<(Bytes, Bytes)> {
    let p = |k: &'static str, v: String| (Bytes::from_static(k.as_bytes()), Bytes::from(v));
    vec![
        p("product", "RabbitMQ".into()),
        p("version", crate::config::RABBITMQ_VERSION.into()),
        p("cluster_name", "warren@localhost".into()),
        p("platform", concat!("Warren ", env!("CARGO_PKG_VERSION")).into()),
        p("copyright", "Copyright (c) the Warren authors".into()),
        p(
            "information",
            format!(
                "Warren {}, a broker that follows RabbitMQ {}. Licensed under Apache-2.0.",
                env!("CARGO_PKG_VERSION"),
                crate::config::RABBITMQ_VERSION
            ),
        ),
    ]
}

/// Read and handle commands until the connection ends.
#[allow(clippy::too_many_arguments)]
async fn main_loop(
    conn: &mut Conn,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    heartbeat: u32,
    frame_max: u32,
    shutdown: &mut watch::Receiver<bool>,
    kill: &mut watch::Receiver<Option<String>>,
    sent: &std::sync::atomic::AtomicU64,
) -> Stop {
    let hb = (heartbeat > 0).then(|| Duration::from_secs(heartbeat as u64));
    let mut tick = tokio::time::interval(hb.unwrap_or(Duration::from_secs(3600)));
    tick.tick().await;
    let mut last_read = Instant::now();
    let mut last_sent = 0u64;
    let mut alarm = conn.broker.alarm.subscribe();
    loop {
        // Handle every whole frame already read.
        loop {
            match warren_protocol::stream::split_frame(buf, frame_max.max(HANDSHAKE_FRAME_MAX)) {
                Ok(Some(f)) => {
                    conn.info.recv_oct.fetch_add(f.len() as u64 + 4, std::sync::atomic::Ordering::Relaxed);
                    let req = match Request::decode(f) {
                        Ok(r) => r,
                        Err(e) => return Stop::Close(e.response_code(), format!("bad frame: {e}")),
                    };
                    if let Err(s) = super::admin::handle(conn, req) {
                        return s;
                    }
                }
                Ok(None) => break,
                Err(e) => return Stop::Close(e.response_code(), format!("bad frame: {e}")),
            }
        }
        // Resource alarm (memory, or a disk that is full): a connection with publishers is not
        // read while it is on, as RabbitMQ blocks it (TCP backpressure; its confirms wait).
        let blocked = *alarm.borrow_and_update() && !conn.publishers.is_empty();
        tokio::select! {
            _ = alarm.changed(), if blocked => {}
            r = rd.read_buf(buf), if !blocked => match r {
                Ok(0) | Err(_) => return Stop::Now,
                Ok(_) => last_read = Instant::now(),
            },
            _ = tick.tick(), if hb.is_some() => {
                let Some(hb) = hb else { continue };
                // (A blocked connection is not read: its heartbeats wait in the socket.)
                if !blocked && last_read.elapsed() > hb * 2 {
                    return Stop::Close(code::OK, "missed heartbeats".into());
                }
                // Send a heartbeat when nothing else went out for a whole interval.
                let now_sent = sent.load(std::sync::atomic::Ordering::Relaxed);
                if now_sent == last_sent {
                    conn.tx.frame(response::encode_heartbeat);
                }
                last_sent = now_sent;
            }
            _ = shutdown.changed() => return Stop::Close(code::OK, "broker shutdown".into()),
            r = kill.changed() => {
                let reason = if r.is_ok() { kill.borrow().clone() } else { None };
                return Stop::Close(code::OK, reason.unwrap_or_else(|| "closed".into()));
            }
        }
        if conn.tx.closed() {
            return Stop::Now;
        }
    }
}

/// Write what the connection's tasks queue, flushing when the queue is empty.
async fn write_loop(
    wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    sent: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, wr);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(o) = next.take() {
            let r = match o {
                Out::Frame(b) => {
                    sent.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    w.write_all(&b).await
                }
                Out::Pieces(ps) => {
                    let mut r = Ok(());
                    for p in ps {
                        sent.fetch_add(p.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        r = w.write_all(&p).await;
                        if r.is_err() {
                            break;
                        }
                    }
                    r
                }
            };
            if r.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}
