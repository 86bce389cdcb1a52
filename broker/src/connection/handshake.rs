//! The connection handshake: protocol header, start/start-ok (PLAIN, AMQPLAIN), tune/tune-ok,
//! open/open-ok.
//!
//! Runs in: the connection's task, before the writer task exists (it writes directly).
//!
//! # Invariants
//! - A wrong protocol header gets `AMQP 0 0 9 1` back and the socket closed (spec).
//! - The whole handshake is bounded by the handshake timeout (caller).
//! - Failed authentication: if the client advertises `authentication_failure_close`, it gets
//!   connection.close 403 ACCESS_REFUSED before the socket closes; otherwise the socket just closes.
use crate::broker::Broker;
use crate::config::Config;
use crate::vhost::VHost;
use bytes::BytesMut;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{frame, FieldTable, FieldValue, FrameType, LongStr, Method, ShortStr};

/// What the handshake settled.
pub struct Negotiated {
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub vhost: Arc<VHost>,
    pub user: String,
    /// The user has the `impersonator` tag (may publish any `user_id`), as of the handshake.
    pub impersonator: bool,
    /// The user's permissions in that vhost, as of the handshake.
    pub grants: Arc<crate::auth::Grants>,
    /// The connection's place under `connection_max`, released when dropped.
    pub slot: crate::broker::ConnSlot,
    /// Client supports basic.cancel from the broker.
    pub cancel_notify: bool,
    /// Client supports connection.blocked / unblocked.
    pub blocked_notify: bool,
    /// Client's `connection_name` property, for logs.
    pub name: Option<String>,
    /// The authentication mechanism used (`PLAIN`, `AMQPLAIN`).
    pub mechanism: String,
    /// Everything the client announced in start-ok (management API).
    pub client_properties: FieldTable,
}

/// Why the handshake ended without a connection.
#[derive(Debug)]
pub enum HandshakeError {
    /// Socket closed or failed.
    Io,
    /// Protocol violation or refusal; already answered (or nothing to answer).
    Refused(String),
}

impl From<std::io::Error> for HandshakeError {
    fn from(_: std::io::Error) -> Self {
        HandshakeError::Io
    }
}

pub async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    buf: &mut BytesMut,
    broker: &Arc<Broker>,
    ends: &super::Endpoints,
) -> Result<Negotiated, HandshakeError> {
    let peer = ends.peer.map(|a| a.ip());
    let cfg: &Config = &broker.config;
    while buf.len() < 8 {
        if rd.read_buf(buf).await? == 0 {
            return Err(HandshakeError::Io);
        }
    }
    if &buf[..8] != PROTOCOL_HEADER {
        // spec: answer with the protocol version we speak, then close.
        wr.write_all(PROTOCOL_HEADER).await?;
        wr.flush().await?;
        let _ = wr.shutdown().await;
        return Err(HandshakeError::Refused(format!("bad protocol header {:?}", &buf[..8.min(buf.len())])));
    }
    let _ = buf.split_to(8);

    send(
        wr,
        &ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(cfg.announce),
            mechanisms: LongStr::from("PLAIN AMQPLAIN"),
            locales: LongStr::from("en_US"),
        }
        .into(),
    )
    .await?;

    let start_ok = match next_method(rd, buf, 0).await? {
        Method::ConnectionStartOk(s) => s,
        other => {
            return Err(refuse(
                wr,
                COMMAND_INVALID,
                &format!("expected connection.start-ok, got {}", other.name()),
                &other,
            )
            .await)
        }
    };
    let caps = match start_ok.client_properties.get("capabilities") {
        Some(FieldValue::Table(t)) => t.clone(),
        _ => FieldTable::new(),
    };
    let cap = |n: &str| caps.get(n).and_then(|v| v.as_bool()).unwrap_or(false);
    let name = start_ok
        .client_properties
        .get("connection_name")
        .and_then(|v| v.as_bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned());

    let mech = start_ok.mechanism.to_str_lossy().into_owned();
    let creds = match mech.as_str() {
        "PLAIN" => parse_plain(start_ok.response.as_bytes()),
        "AMQPLAIN" => parse_amqplain(start_ok.response.as_bytes()),
        _ => None,
    };
    let tried = creds.as_ref().map(|(u, _)| u.clone()).unwrap_or_default();
    let (user, refusal) = match creds {
        // A direct connection is the broker's own (a shovel's): no password to check.
        Some((u, _)) if ends.direct => (u, None),
        Some((u, p)) if broker.check_password(&u, &p) => {
            if broker.login_allowed_from(&u, peer) {
                (u, None)
            } else {
                // rabbitmq-compat: RabbitMQ's text for a `loopback_users` refusal.
                let t = format!("ACCESS_REFUSED - user '{u}' can only connect via localhost");
                (u, Some(t))
            }
        }
        _ => (
            String::new(),
            Some(format!(
                "ACCESS_REFUSED - Login was refused using authentication mechanism {mech}. For details see the broker logfile."
            )),
        ),
    };
    if !ends.direct {
        auth_event(broker, ends, &mech, &tried, refusal.as_deref());
    }
    if let Some(text) = refusal {
        // spec: authentication failures are answered with connection.close only to clients that
        // announce `authentication_failure_close` (every maintained client does); others see the
        // socket close.
        if cap("authentication_failure_close") {
            let _ = send(
                wr,
                &ConnectionClose {
                    reply_code: ACCESS_REFUSED,
                    reply_text: crate::error::reply_text(text.clone()),
                    class_id: 10,
                    method_id: 11,
                }
                .into(),
            )
            .await;
        }
        let _ = wr.shutdown().await;
        return Err(HandshakeError::Refused(text));
    }

    send(
        wr,
        &ConnectionTune { channel_max: cfg.channel_max, frame_max: cfg.frame_max, heartbeat: cfg.heartbeat }.into(),
    )
    .await?;
    let tune_ok = match next_method(rd, buf, 0).await? {
        Method::ConnectionTuneOk(t) => t,
        other => {
            return Err(refuse(
                wr,
                COMMAND_INVALID,
                &format!("expected connection.tune-ok, got {}", other.name()),
                &other,
            )
            .await)
        }
    };
    // spec(connection.tune-ok): the client may only lower what the server proposed. RabbitMQ
    // refuses 0 ("no limit") or more than it offered, and less than the minimum, and closes the
    // socket without connection.close (the client has not opened the connection yet).
    let negotiated = |field: &str, client: u32, min: u32, server: u32| -> Result<u32, String> {
        let detail = if field == "channel_max" && client == 0 { " (no limit)" } else { "" };
        if client != 0 && client < min {
            return Err(format!(
                "negotiated {field} = {client}{detail} is lower than the minimum allowed value ({min})"
            ));
        }
        if server != 0 && (client == 0 || client > server) {
            return Err(format!(
                "negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})"
            ));
        }
        Ok(if client == 0 { server } else { client })
    };
    let checked = negotiated("frame_max", tune_ok.frame_max, FRAME_MIN_SIZE, cfg.frame_max).and_then(|f| {
        negotiated("channel_max", tune_ok.channel_max as u32, 1, cfg.channel_max as u32).map(|c| (f, c as u16))
    });
    let (frame_max, channel_max) = match checked {
        Ok(v) => v,
        Err(why) => {
            let _ = wr.shutdown().await;
            return Err(HandshakeError::Refused(format!("failed to negotiate connection parameters: {why}")));
        }
    };
    // rabbitmq-compat: like RabbitMQ, the client's heartbeat value in tune-ok is used as is.
    let heartbeat = tune_ok.heartbeat;

    let open = match next_method(rd, buf, frame_max).await? {
        Method::ConnectionOpen(o) => o,
        other => {
            return Err(
                refuse(wr, COMMAND_INVALID, &format!("expected connection.open, got {}", other.name()), &other).await
            )
        }
    };
    let vname = open.virtual_host.to_str_lossy().into_owned();
    let Some(vhost) = broker.vhost(&vname) else {
        let m = Method::ConnectionOpen(open);
        return Err(refuse(wr, NOT_ALLOWED, &format!("vhost {vname} not found"), &m).await);
    };
    let grants = match ends.direct {
        true => Some(Arc::new(crate::auth::Grants::all(&user, &vname))),
        false => broker.grants(&user, &vname),
    };
    let Some(grants) = grants else {
        let m = Method::ConnectionOpen(open);
        return Err(refuse(wr, NOT_ALLOWED, &format!("access to vhost '{vname}' refused for user '{user}'"), &m).await);
    };
    if let Some(max) = vhost.limits().max_connections {
        // The connection being opened is registered after this, so it is not counted yet.
        let open_here = broker.stats.connections().iter().filter(|c| c.vhost == vhost.name).count() as u64;
        if open_here >= max {
            let m = Method::ConnectionOpen(open);
            let text =
                format!("access to vhost '{vname}' refused for user '{user}': connection limit ({max}) is reached");
            return Err(refuse(wr, NOT_ALLOWED, &text, &m).await);
        }
    }
    let user_limit = if ends.direct { Ok(()) } else { broker.check_user_connection(&user) };
    if let Err(text) = user_limit {
        let m = Method::ConnectionOpen(open);
        return Err(refuse(wr, NOT_ALLOWED, &text, &m).await);
    }
    let slot = match crate::broker::ConnSlot::take(broker) {
        Ok(s) => s,
        Err(limit) => {
            let m = Method::ConnectionOpen(open);
            let text = format!("connection refused: node connection limit ({limit}) is reached");
            return Err(refuse(wr, NOT_ALLOWED, &text, &m).await);
        }
    };
    send(wr, &ConnectionOpenOk { known_hosts: ShortStr::empty() }.into()).await?;
    let impersonator = broker.user(&user).is_some_and(|u| u.tags.iter().any(|t| t == "impersonator"));
    Ok(Negotiated {
        frame_max,
        channel_max,
        heartbeat,
        vhost,
        impersonator,
        user,
        grants,
        slot,
        cancel_notify: cap("consumer_cancel_notify"),
        blocked_notify: cap("connection.blocked"),
        name,
        mechanism: mech,
        client_properties: start_ok.client_properties.clone(),
    })
}

/// `user.authentication.success` or (with the refusal's text) `.failure`, as RabbitMQ's event
/// exchange reports them.
fn auth_event(broker: &Broker, ends: &super::Endpoints, mech: &str, user: &str, refusal: Option<&str>) {
    let key = if refusal.is_some() { "user.authentication.failure" } else { "user.authentication.success" };
    broker.events.emit(key, |f| {
        if let Some(why) = refusal {
            f.str("error", why);
        }
        f.bool("ssl", ends.tls)
            .str("auth_mechanism", mech)
            .str("protocol", "{0,9,1}")
            .int("peer_port", ends.peer.map_or(0, |a| a.port()) as i64)
            .str("peer_host", ends.peer.map(|a| a.ip().to_string()).unwrap_or_default())
            .str("connection_name", ends.name(crate::ids::ConnectionId(0)))
            .str("host", ends.local.map(|a| a.ip().to_string()).unwrap_or_default())
            .str("name", user)
            .str("connection_type", "network");
    });
}

/// Server properties as RabbitMQ sends them, with Warren's identity.
/// connection.start's server properties: RabbitMQ's capabilities, and the product the broker
/// announces itself as (see [`crate::config::Announce`]).
fn server_properties(announce: crate::config::Announce) -> FieldTable {
    let mut caps = FieldTable::new();
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(ShortStr::from_static(c), FieldValue::Bool(true));
    }
    let s = |v: &'static str| FieldValue::LongStr(LongStr::from(v));
    let mut t = FieldTable::new();
    t.insert("capabilities", FieldValue::Table(caps));
    t.insert("cluster_name", s("warren@localhost"));
    t.insert("copyright", s("Copyright (c) the Warren authors"));
    let warren = concat!("Warren ", env!("CARGO_PKG_VERSION"));
    t.insert(
        "information",
        FieldValue::LongStr(LongStr::from(format!(
            "{warren}, an AMQP 0-9-1 broker that follows RabbitMQ {}. Licensed under Apache-2.0.",
            crate::config::RABBITMQ_VERSION
        ))),
    );
    t.insert(
        "platform",
        s(concat!("Warren ", env!("CARGO_PKG_VERSION"), " (Rust ", env!("CARGO_PKG_RUST_VERSION"), ")")),
    );
    // rabbitmq-compat: a drop-in says RabbitMQ here, as clients branch on it (kombu picks
    // basic.qos global semantics by it; `--announce-as warren` says Warren instead).
    match announce {
        crate::config::Announce::RabbitMq => {
            t.insert("product", s("RabbitMQ"));
            t.insert("version", s(crate::config::RABBITMQ_VERSION));
        }
        crate::config::Announce::Warren => {
            t.insert("product", s("Warren"));
            t.insert("version", s(env!("CARGO_PKG_VERSION")));
        }
    }
    t
}

fn parse_plain(resp: &[u8]) -> Option<(String, String)> {
    // authzid \0 authcid \0 password
    let mut parts = resp.split(|&b| b == 0);
    let _authz = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    Some((String::from_utf8_lossy(user).into_owned(), String::from_utf8_lossy(pass).into_owned()))
}

fn parse_amqplain(resp: &[u8]) -> Option<(String, String)> {
    // The response is a field table without its length prefix.
    let t = FieldTable::decode(bytes::Bytes::copy_from_slice(resp)).ok()?;
    let get = |k: &str| t.get(k).and_then(|v| v.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
    Some((get("LOGIN")?, get("PASSWORD")?))
}

async fn send<W: AsyncWrite + Unpin>(wr: &mut W, m: &Method) -> std::io::Result<()> {
    let mut b = BytesMut::new();
    frame::encode_method(&mut b, 0, m);
    wr.write_all(&b).await?;
    wr.flush().await
}

/// Send connection.close for a handshake failure and give up.
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: u16, text: &str, m: &Method) -> HandshakeError {
    let text = format!("{} - {text}", reply_name(code));
    let _ = send(
        wr,
        &ConnectionClose {
            reply_code: code,
            reply_text: crate::error::reply_text(text.clone()),
            class_id: m.class_id(),
            method_id: m.method_id(),
        }
        .into(),
    )
    .await;
    let _ = wr.shutdown().await;
    HandshakeError::Refused(text)
}

/// Read the next method frame on channel 0 (heartbeats skipped).
async fn next_method<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    frame_max: u32,
) -> Result<Method, HandshakeError> {
    let limit = if frame_max == 0 { FRAME_MIN_SIZE.max(64 * 1024) } else { frame_max };
    loop {
        match frame::decode(buf, limit) {
            Ok(Some(f)) => match f.kind {
                FrameType::Heartbeat => continue,
                FrameType::Method if f.channel == 0 => {
                    return Method::decode(f.payload)
                        .map_err(|e| HandshakeError::Refused(format!("bad method in handshake: {e}")));
                }
                _ => return Err(HandshakeError::Refused("unexpected frame during handshake".into())),
            },
            Ok(None) => {
                if rd.read_buf(buf).await? == 0 {
                    return Err(HandshakeError::Io);
                }
            }
            Err(e) => return Err(HandshakeError::Refused(format!("frame error in handshake: {e}"))),
        }
    }
}
