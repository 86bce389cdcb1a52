//! The shovel's AMQP 0-9-1 client: a connection to another broker (TCP or TLS) or to this one (a
//! direct connection over an in-memory pipe, served by the same connection code as any client),
//! the handshake, and frames in and out. Bodies stay `Bytes` from the frame they arrived in.
//!
//! Runs in: the shovel worker's task (one client per side, owned by it).
//!
//! # Invariants
//! - [`Client::fill`] is the only await on input and is cancel-safe (it only appends to the read
//!   buffer), so the worker can wait on both sides at once; decoding ([`Client::next_event`])
//!   never waits.
//! - Output is buffered and written by [`Client::flush`]: the worker flushes once per batch of
//!   events, not once per message.
use super::uri::AmqpUri;
use crate::broker::Broker;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use warren_protocol::constants::PROTOCOL_HEADER;
use warren_protocol::method::*;
use warren_protocol::{frame, ContentHeader, FieldTable, FieldValue, FrameType, LongStr, Method, ShortStr};

/// The frame size the shovel asks for (RabbitMQ's default).
const FRAME_MAX: u32 = 131_072;
/// Buffer of each direction of a direct connection's in-memory pipe: large enough for a batch of
/// small messages, small enough that a stalled side pushes back at once.
const DIRECT_PIPE: usize = 256 * 1024;
/// How long connecting (TCP, TLS and the AMQP handshake) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

type Rd = Box<dyn AsyncRead + Send + Unpin>;
type Wr = Box<dyn AsyncWrite + Send + Unpin>;

/// What a direct connection needs from the broker.
#[derive(Clone)]
pub struct Local {
    /// This broker.
    pub broker: Arc<Broker>,
    /// The server's shutdown flag (the direct connection closes with the others).
    pub shutdown: watch::Receiver<bool>,
}

/// A message delivered to a consumer of this client.
pub struct Delivery {
    /// Channel it arrived on.
    pub channel: u16,
    /// The basic.deliver.
    pub deliver: BasicDeliver,
    /// Raw property bytes (flags first).
    pub properties: Bytes,
    /// Body.
    pub body: Bytes,
}

/// Something the server sent.
pub enum Event {
    /// A method without content.
    Method(u16, Method),
    /// A delivery, assembled.
    Delivery(Delivery),
}

/// Content being assembled: a basic.deliver (or basic.return, dropped when whole) and its frames.
struct Assembling {
    channel: u16,
    method: Option<BasicDeliver>,
    size: Option<u64>,
    properties: Bytes,
    parts: Vec<Bytes>,
    received: u64,
}

/// One client connection.
pub struct Client {
    /// Read half.
    rd: Rd,
    /// Write half.
    wr: Wr,
    /// Bytes read and not yet decoded.
    inbuf: BytesMut,
    /// Frames encoded and not yet written.
    out: BytesMut,
    /// Negotiated frame size.
    frame_max: u32,
    /// Negotiated heartbeat, seconds (0: none).
    pub heartbeat: u16,
    /// Content in progress.
    assembling: Option<Assembling>,
}

/// A failed call: the channel or connection was closed by the server, or the socket failed.
#[derive(Debug)]
pub enum CallError {
    /// channel.close from the server (answered with close-ok): reply code and text.
    ChannelClosed(u16, String),
    /// Anything else (connection closed, I/O, protocol): why.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::ChannelClosed(code, text) => write!(f, "channel closed: {code} {text}"),
            CallError::Failed(why) => f.write_str(why),
        }
    }
}

impl From<String> for CallError {
    fn from(s: String) -> Self {
        CallError::Failed(s)
    }
}

async fn open_stream(uri: &AmqpUri, local: &Local) -> Result<(Rd, Wr), String> {
    let Some(host) = &uri.host else {
        let (mine, theirs) = tokio::io::duplex(DIRECT_PIPE);
        let (srd, swr) = tokio::io::split(theirs);
        let b = local.broker.clone();
        let id = crate::ids::ConnectionId(b.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let ends = crate::connection::Endpoints { peer: None, local: None, tls: false, direct: true };
        tokio::spawn(crate::connection::serve_stream(srd, swr, ends, b, id, local.shutdown.clone()));
        let (rd, wr) = tokio::io::split(mine);
        return Ok((Box::new(rd), Box::new(wr)));
    };
    let sock = tokio::net::TcpStream::connect((host.as_str(), uri.port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{}: {e}", uri.port))?;
    let _ = sock.set_nodelay(true);
    if !uri.tls {
        let (rd, wr) = sock.into_split();
        return Ok((Box::new(rd), Box::new(wr)));
    }
    let connector = tls_connector(uri)?;
    let name = uri.sni.clone().unwrap_or_else(|| host.clone());
    let server =
        rustls_pki_types::ServerName::try_from(name.clone()).map_err(|e| format!("bad TLS name {name}: {e}"))?;
    let stream = connector.connect(server, sock).await.map_err(|e| format!("TLS handshake with {host} failed: {e}"))?;
    let (rd, wr) = tokio::io::split(stream);
    Ok((Box::new(rd), Box::new(wr)))
}

/// Where Debian and most Linux systems keep the trusted CA bundle: the roots used when the URI
/// names no `cacertfile`.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn tls_connector(uri: &AmqpUri) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if uri.verify {
        let file = uri.cacertfile.as_deref().unwrap_or(SYSTEM_CA_BUNDLE);
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(file).map_err(|e| format!("cannot read CA file {file}: {e}"))? {
            let c = c.map_err(|e| format!("bad certificate in {file}: {e}"))?;
            roots.add(c).map_err(|e| format!("bad certificate in {file}: {e}"))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider))).with_no_client_auth()
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `verify=verify_none`: the server's certificate is not checked (signatures still are).
#[derive(Debug)]
struct NoVerify(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Client {
    /// Connect to `uri` (or, without a host, to this broker), log in and open its vhost.
    /// `name` is announced as the connection's `connection_name` (RabbitMQ's "Shovel <name>").
    pub async fn connect(uri: &AmqpUri, local: &Local, name: &str) -> Result<Client, String> {
        let where_ = uri.host.as_deref().unwrap_or("this broker");
        tokio::time::timeout(CONNECT_TIMEOUT, Client::connect_now(uri, local, name))
            .await
            .unwrap_or_else(|_| Err(format!("connecting to {where_} timed out")))
    }

    async fn connect_now(uri: &AmqpUri, local: &Local, name: &str) -> Result<Client, String> {
        let (rd, wr) = open_stream(uri, local).await?;
        let mut c = Client {
            rd,
            wr,
            inbuf: BytesMut::with_capacity(64 * 1024),
            out: BytesMut::with_capacity(64 * 1024),
            frame_max: FRAME_MAX,
            heartbeat: 0,
            assembling: None,
        };
        c.out.extend_from_slice(PROTOCOL_HEADER);
        c.flush().await?;
        let Method::ConnectionStart(_) = c.handshake_reply().await? else {
            return Err("expected connection.start".into());
        };
        let mut caps = FieldTable::new();
        for cap in
            ["publisher_confirms", "consumer_cancel_notify", "connection.blocked", "authentication_failure_close"]
        {
            caps.insert(cap, FieldValue::Bool(true));
        }
        let mut props = FieldTable::new();
        props.insert("product", FieldValue::LongStr(LongStr::from("Warren shovel")));
        props.insert("connection_name", FieldValue::LongStr(LongStr::from(name.to_string())));
        props.insert("capabilities", FieldValue::Table(caps));
        let start_ok = ConnectionStartOk {
            client_properties: props,
            mechanism: "PLAIN".into(),
            // A direct connection is the broker's own: RabbitMQ shows its user as `none`.
            response: LongStr::from(match uri.host {
                None => "\0none\0".to_string(),
                Some(_) => format!("\0{}\0{}", uri.user, uri.pass),
            }),
            locale: "en_US".into(),
        };
        c.send(0, &start_ok.into());
        c.flush().await?;
        let Method::ConnectionTune(t) = c.handshake_reply().await? else {
            return Err("expected connection.tune".into());
        };
        c.frame_max = if t.frame_max == 0 { FRAME_MAX } else { t.frame_max.min(FRAME_MAX) };
        // Heartbeats only when the URI asks for them (`?heartbeat=N`), at most as often as the
        // server proposes.
        c.heartbeat = match (t.heartbeat, uri.heartbeat) {
            (_, 0) => 0,
            (0, h) => h,
            (s, h) => s.min(h),
        };
        let tune_ok =
            ConnectionTuneOk { channel_max: t.channel_max.min(16), frame_max: c.frame_max, heartbeat: c.heartbeat };
        c.send(0, &tune_ok.into());
        c.send(0, &ConnectionOpen { virtual_host: uri.vhost.clone().into(), ..Default::default() }.into());
        c.flush().await?;
        match c.handshake_reply().await? {
            Method::ConnectionOpenOk(_) => Ok(c),
            other => Err(format!("expected connection.open-ok, got {}", other.name())),
        }
    }

    /// The next method during the handshake; a connection.close (a refused login, an unknown
    /// vhost) is an error with the server's text, a closed socket one saying so.
    async fn handshake_reply(&mut self) -> Result<Method, String> {
        loop {
            match self.next_event()? {
                Some(Event::Method(_, Method::ConnectionClose(c))) => {
                    return Err(format!("{} {}", c.reply_code, c.reply_text.to_str_lossy()))
                }
                Some(Event::Method(_, m)) => return Ok(m),
                Some(Event::Delivery(_)) => {}
                None => self.fill().await.map_err(|e| format!("{e} (wrong credentials?)"))?,
            }
        }
    }

    /// Read more input (cancel-safe); an error when the peer closed or the socket failed.
    pub async fn fill(&mut self) -> Result<(), String> {
        match self.rd.read_buf(&mut self.inbuf).await {
            Ok(0) => Err("connection closed by the peer".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("connection failed: {e}")),
        }
    }

    /// Write everything buffered.
    pub async fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = self.out.split();
        self.wr.write_all(&out).await.map_err(|e| format!("connection failed: {e}"))?;
        self.wr.flush().await.map_err(|e| format!("connection failed: {e}"))
    }

    /// Bytes waiting to be written.
    pub fn pending_out(&self) -> usize {
        self.out.len()
    }

    /// Buffer a method frame.
    pub fn send(&mut self, channel: u16, m: &Method) {
        frame::encode_method(&mut self.out, channel, m);
    }

    /// Buffer a heartbeat frame.
    pub fn heartbeat(&mut self) {
        frame::encode_heartbeat(&mut self.out);
    }

    /// Buffer a basic.publish with its content.
    pub fn publish(
        &mut self,
        channel: u16,
        exchange: ShortStr,
        routing_key: ShortStr,
        properties: &[u8],
        body: &Bytes,
    ) {
        let m = BasicPublish { exchange, routing_key, ..Default::default() };
        self.send(channel, &m.into());
        let at = frame::begin(&mut self.out, FrameType::Header, channel);
        ContentHeader::encode_payload(&mut self.out, 60, body.len() as u64, properties);
        frame::finish(&mut self.out, at);
        let max = (self.frame_max as usize).saturating_sub(warren_protocol::constants::FRAME_OVERHEAD).max(1);
        for chunk in body.chunks(max) {
            frame::encode_raw(&mut self.out, FrameType::Body, channel, chunk);
        }
    }

    /// Send `m` on `channel` and wait for the reply: the next method on that channel (nothing
    /// else is expected while a shovel sets up). A channel.close is answered with close-ok.
    pub async fn call(&mut self, channel: u16, m: Method) -> Result<Method, CallError> {
        self.send(channel, &m);
        self.flush().await?;
        loop {
            match self.next_event()? {
                Some(Event::Method(_, Method::ConnectionClose(c))) => {
                    return Err(CallError::Failed(format!(
                        "connection closed: {} {}",
                        c.reply_code,
                        c.reply_text.to_str_lossy()
                    )))
                }
                Some(Event::Method(ch, Method::ChannelClose(c))) if ch == channel => {
                    self.send(channel, &ChannelCloseOk.into());
                    self.flush().await?;
                    return Err(CallError::ChannelClosed(c.reply_code, c.reply_text.to_str_lossy().into_owned()));
                }
                Some(Event::Method(ch, r)) if ch == channel => return Ok(r),
                Some(_) => {}
                None => self.fill().await?,
            }
        }
    }

    /// Close the connection politely (connection.close, then wait briefly for close-ok).
    pub async fn close(mut self) {
        self.send(
            0,
            &ConnectionClose { reply_code: 200, reply_text: "Shovel stopped".into(), ..Default::default() }.into(),
        );
        let _ = self.flush().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            loop {
                match self.next_event() {
                    Ok(Some(Event::Method(_, Method::ConnectionCloseOk(_)))) | Err(_) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        if self.fill().await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .await;
    }

    /// The next whole event in the read buffer, without waiting; `None` when more input is
    /// needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, String> {
        loop {
            let Some(f) = frame::decode(&mut self.inbuf, 0).map_err(|e| format!("bad frame from the server: {e}"))?
            else {
                return Ok(None);
            };
            match f.kind {
                FrameType::Heartbeat => continue,
                FrameType::Method => {
                    let m = Method::decode(f.payload).map_err(|e| format!("bad method from the server: {e}"))?;
                    match m {
                        Method::BasicDeliver(d) => self.start_content(f.channel, Some(d)),
                        Method::BasicReturn(_) | Method::BasicGetOk(_) => self.start_content(f.channel, None),
                        m => return Ok(Some(Event::Method(f.channel, m))),
                    }
                }
                FrameType::Header => {
                    let h = ContentHeader::decode(f.payload).map_err(|e| format!("bad content header: {e}"))?;
                    let Some(a) = self.assembling.as_mut().filter(|a| a.channel == f.channel && a.size.is_none())
                    else {
                        return Err("unexpected content header".into());
                    };
                    a.size = Some(h.body_size);
                    a.properties = h.properties;
                }
                FrameType::Body => {
                    let Some(a) = self.assembling.as_mut().filter(|a| a.channel == f.channel && a.size.is_some())
                    else {
                        return Err("unexpected content body".into());
                    };
                    a.received += f.payload.len() as u64;
                    a.parts.push(f.payload);
                }
            }
            if let Some(ev) = self.content_done() {
                return Ok(Some(ev));
            }
        }
    }

    fn start_content(&mut self, channel: u16, method: Option<BasicDeliver>) {
        self.assembling =
            Some(Assembling { channel, method, size: None, properties: Bytes::new(), parts: Vec::new(), received: 0 });
    }

    /// The assembled delivery once its last body frame arrived (a return is dropped).
    fn content_done(&mut self) -> Option<Event> {
        let a = self.assembling.as_ref()?;
        if a.size != Some(a.received) {
            return None;
        }
        let a = self.assembling.take()?;
        let body = match a.parts.len() {
            0 => Bytes::new(),
            1 => a.parts.into_iter().next().unwrap_or_default(),
            _ => {
                let mut b = BytesMut::with_capacity(a.received as usize);
                for p in a.parts {
                    b.extend_from_slice(&p);
                }
                b.freeze()
            }
        };
        let deliver = a.method?;
        Some(Event::Delivery(Delivery { channel: a.channel, deliver, properties: a.properties, body }))
    }
}
