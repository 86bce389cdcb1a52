//! A minimal AMQP client over a real socket, built on `warren_protocol`. Tests use it where they
//! need to see exact frames or send what no well-behaved client would.
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_protocol::constants::PROTOCOL_HEADER;
use warren_protocol::method::*;
use warren_protocol::properties::EMPTY_PROPERTIES;
use warren_protocol::{
    fast, frame, BasicProperties, ContentHeader, FieldTable, Frame, FrameType, LongStr, Method, ShortStr,
};

/// How long a test waits for an expected frame.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Any byte stream a raw client can run over (TCP, TLS).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub struct Raw {
    pub sock: Box<dyn Io>,
    pub buf: BytesMut,
    pub frame_max: u32,
    pub server_properties: FieldTable,
    pub tune: ConnectionTune,
}

/// A delivered message (deliver or get-ok) with its content.
#[derive(Debug)]
pub struct Delivery {
    pub method: Method,
    pub properties: Bytes,
    pub body: Bytes,
}

impl Delivery {
    pub fn tag(&self) -> u64 {
        match &self.method {
            Method::BasicDeliver(d) => d.delivery_tag,
            Method::BasicGetOk(g) => g.delivery_tag,
            _ => 0,
        }
    }
    pub fn redelivered(&self) -> bool {
        match &self.method {
            Method::BasicDeliver(d) => d.redelivered,
            Method::BasicGetOk(g) => g.redelivered,
            _ => false,
        }
    }
}

pub struct Options {
    pub user: &'static str,
    pub pass: &'static str,
    pub vhost: &'static str,
    pub frame_max: u32,
    pub heartbeat: u16,
    pub capabilities: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { user: "guest", pass: "guest", vhost: "/", frame_max: 131072, heartbeat: 0, capabilities: true }
    }
}

impl Raw {
    pub async fn tcp(addr: SocketAddr) -> Raw {
        let sock = TcpStream::connect(addr).await.expect("tcp connect");
        sock.set_nodelay(true).ok();
        Raw::over(sock)
    }

    /// A raw client over an already connected stream (nothing sent yet).
    pub fn over(sock: impl Io + 'static) -> Raw {
        Raw {
            sock: Box::new(sock),
            buf: BytesMut::new(),
            frame_max: 131072,
            server_properties: FieldTable::new(),
            tune: ConnectionTune::default(),
        }
    }

    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_with(addr, Options::default()).await.expect("handshake")
    }

    /// Full handshake; Err(close) if the server refused with connection.close.
    pub async fn connect_with(addr: SocketAddr, o: Options) -> Result<Raw, Option<ConnectionClose>> {
        Raw::handshake(Raw::tcp(addr).await, o).await
    }

    /// Full handshake on a fresh stream; Err(close) if the server refused with connection.close.
    pub async fn handshake(mut r: Raw, o: Options) -> Result<Raw, Option<ConnectionClose>> {
        r.sock.write_all(PROTOCOL_HEADER).await.expect("write header");
        match r.recv_method().await.1 {
            Method::ConnectionStart(s) => r.server_properties = s.server_properties,
            other => panic!("expected start, got {other:?}"),
        }
        let mut client_props = FieldTable::new();
        if o.capabilities {
            let mut caps = FieldTable::new();
            caps.insert("authentication_failure_close", warren_protocol::FieldValue::Bool(true));
            caps.insert("consumer_cancel_notify", warren_protocol::FieldValue::Bool(true));
            caps.insert("connection.blocked", warren_protocol::FieldValue::Bool(true));
            client_props.insert("capabilities", warren_protocol::FieldValue::Table(caps));
        }
        let resp = format!("\0{}\0{}", o.user, o.pass);
        r.send(
            0,
            ConnectionStartOk {
                client_properties: client_props,
                mechanism: "PLAIN".into(),
                response: LongStr::from(resp),
                locale: "en_US".into(),
            },
        )
        .await;
        let tune = match r.try_recv().await {
            Some(f) if f.kind == FrameType::Method => match Method::decode(f.payload).expect("method") {
                Method::ConnectionTune(t) => t,
                Method::ConnectionClose(c) => return Err(Some(c)),
                other => panic!("expected tune, got {other:?}"),
            },
            None => return Err(None),
            Some(f) => panic!("unexpected frame {f:?}"),
        };
        r.tune = tune.clone();
        r.frame_max = o.frame_max;
        r.send(0, ConnectionTuneOk { channel_max: tune.channel_max, frame_max: o.frame_max, heartbeat: o.heartbeat })
            .await;
        r.send(
            0,
            ConnectionOpen {
                virtual_host: ShortStr::from(o.vhost.to_string()),
                capabilities: ShortStr::empty(),
                insist: false,
            },
        )
        .await;
        match r.recv_method().await.1 {
            Method::ConnectionOpenOk(_) => Ok(r),
            Method::ConnectionClose(c) => Err(Some(c)),
            other => panic!("expected open-ok, got {other:?}"),
        }
    }

    pub async fn send(&mut self, ch: u16, m: impl Into<Method>) {
        let mut b = BytesMut::new();
        frame::encode_method(&mut b, ch, &m.into());
        self.sock.write_all(&b).await.expect("write");
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.sock.write_all(b).await.expect("write");
    }

    /// Next frame (heartbeats included), or None on EOF/timeout.
    pub async fn try_recv_any(&mut self) -> Option<Frame> {
        loop {
            match frame::decode(&mut self.buf, 0) {
                Ok(Some(f)) => return Some(f),
                Ok(None) => {}
                Err(e) => panic!("server sent a bad frame: {e}"),
            }
            match tokio::time::timeout(RECV_TIMEOUT, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Next non-heartbeat frame, or None on EOF/timeout.
    pub async fn try_recv(&mut self) -> Option<Frame> {
        loop {
            let f = self.try_recv_any().await?;
            if f.kind != FrameType::Heartbeat {
                return Some(f);
            }
        }
    }

    pub async fn recv(&mut self) -> Frame {
        self.try_recv().await.expect("expected a frame, got EOF or timeout")
    }

    pub async fn recv_method(&mut self) -> (u16, Method) {
        let f = self.recv().await;
        assert_eq!(f.kind, FrameType::Method, "expected a method frame, got {f:?}");
        (f.channel, Method::decode(f.payload).expect("decodable method"))
    }

    /// Read a method that carries content, then its header and body.
    pub async fn recv_content(&mut self) -> Delivery {
        let (_, method) = self.recv_method().await;
        assert!(method.has_content(), "expected a content method, got {method:?}");
        self.content_after(method).await
    }

    pub async fn content_after(&mut self, method: Method) -> Delivery {
        let h = self.recv().await;
        assert_eq!(h.kind, FrameType::Header);
        let h = ContentHeader::decode(h.payload).expect("header");
        let mut body = BytesMut::new();
        while (body.len() as u64) < h.body_size {
            let f = self.recv().await;
            assert_eq!(f.kind, FrameType::Body);
            assert!(f.payload.len() + 8 <= self.frame_max as usize, "body frame larger than frame_max");
            body.extend_from_slice(&f.payload);
        }
        Delivery { method, properties: h.properties, body: body.freeze() }
    }

    pub async fn open_channel(&mut self, ch: u16) {
        self.send(ch, ChannelOpen::default()).await;
        match self.recv_method().await {
            (c, Method::ChannelOpenOk(_)) if c == ch => {}
            other => panic!("expected channel.open-ok on {ch}, got {other:?}"),
        }
    }

    /// Send a method and return the reply on the same channel.
    pub async fn call(&mut self, ch: u16, m: impl Into<Method>) -> Method {
        self.send(ch, m).await;
        let (c, reply) = self.recv_method().await;
        assert_eq!(c, ch, "reply on another channel: {reply:?}");
        reply
    }

    pub async fn declare(&mut self, ch: u16, name: &str) -> QueueDeclareOk {
        let m = QueueDeclare { queue: ShortStr::from(name.to_string()), ..Default::default() };
        match self.call(ch, m).await {
            Method::QueueDeclareOk(ok) => ok,
            other => panic!("expected declare-ok, got {other:?}"),
        }
    }

    /// Passive declare: the queue's ready message count (a barrier for earlier publishes).
    pub async fn declare_passive(&mut self, ch: u16, name: &str) -> u32 {
        let m = QueueDeclare { queue: ShortStr::from(name.to_string()), passive: true, ..Default::default() };
        match self.call(ch, m).await {
            Method::QueueDeclareOk(ok) => ok.message_count,
            other => panic!("expected declare-ok, got {other:?}"),
        }
    }

    pub async fn publish(&mut self, ch: u16, exchange: &str, key: &str, body: &[u8]) {
        self.publish_full(ch, exchange, key, body, EMPTY_PROPERTIES, false).await
    }

    pub async fn publish_full(
        &mut self,
        ch: u16,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: &[u8],
        mandatory: bool,
    ) {
        let b = self.publish_frames(ch, exchange, key, body, props, mandatory);
        self.sock.write_all(&b).await.expect("write");
    }

    /// The frames of a basic.publish (to send several frames in one write).
    pub fn publish_frames(
        &self,
        ch: u16,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: &[u8],
        mandatory: bool,
    ) -> BytesMut {
        let mut b = BytesMut::new();
        let m: Method = BasicPublish {
            ticket: 0,
            exchange: ShortStr::from(exchange.to_string()),
            routing_key: ShortStr::from(key.to_string()),
            mandatory,
            immediate: false,
        }
        .into();
        frame::encode_method(&mut b, ch, &m);
        fast::header(&mut b, ch, body.len() as u64, props);
        fast::body(&mut b, ch, body, self.frame_max);
        b
    }

    pub async fn publish_props(&mut self, ch: u16, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
        let raw = props.to_bytes();
        self.publish_full(ch, exchange, key, body, &raw, false).await
    }

    /// Send `m` and collect the deliveries that arrive before its reply. Warren (like RabbitMQ)
    /// writes deliveries caused by earlier frames before the reply to a later method, so this is a
    /// barrier: after it, every delivery already due has been seen.
    pub async fn sync_collect(&mut self, ch: u16, m: impl Into<Method>) -> (Method, Vec<Delivery>) {
        self.send(ch, m).await;
        self.collect_until_method().await
    }

    /// The deliveries that arrive before the next method without content, and that method.
    pub async fn collect_until_method(&mut self) -> (Method, Vec<Delivery>) {
        let mut got = Vec::new();
        loop {
            let (_, m) = self.recv_method().await;
            if m.has_content() {
                got.push(self.content_after(m).await);
            } else {
                return (m, got);
            }
        }
    }

    /// Barrier on `queue` (passive declare), returning deliveries seen before it.
    pub async fn barrier(&mut self, ch: u16, queue: &str) -> Vec<Delivery> {
        let m = QueueDeclare { queue: ShortStr::from(queue.to_string()), passive: true, ..Default::default() };
        let (reply, got) = self.sync_collect(ch, m).await;
        assert!(matches!(reply, Method::QueueDeclareOk(_)), "barrier got {reply:?}");
        got
    }

    /// Expect channel.close from the server on `ch`; answers close-ok.
    pub async fn expect_channel_close(&mut self, ch: u16) -> ChannelClose {
        loop {
            let f = self.recv().await;
            if f.kind != FrameType::Method {
                continue; // content of an earlier delivery
            }
            if let Ok(Method::ChannelClose(close)) = Method::decode(f.payload) {
                assert_eq!(f.channel, ch, "channel.close on another channel");
                self.send(ch, ChannelCloseOk).await;
                return close;
            }
        }
    }

    /// Expect connection.close from the server; answers close-ok.
    pub async fn expect_connection_close(&mut self) -> ConnectionClose {
        loop {
            let f = self.try_recv().await.expect("expected connection.close, got EOF");
            if f.kind != FrameType::Method {
                continue;
            }
            if let Ok(Method::ConnectionClose(c)) = Method::decode(f.payload) {
                self.send(0, ConnectionCloseOk).await;
                return c;
            }
        }
    }

    /// Expect the server to close the socket.
    pub async fn expect_eof(&mut self) {
        let mut b = [0u8; 1024];
        loop {
            match tokio::time::timeout(RECV_TIMEOUT, self.sock.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => continue,
                Err(_) => panic!("socket still open"),
            }
        }
    }

    pub async fn close(mut self) {
        self.send(0, ConnectionClose { reply_code: 200, reply_text: "bye".into(), class_id: 0, method_id: 0 }).await;
        loop {
            match self.try_recv().await {
                None => return,
                Some(f) if f.kind == FrameType::Method => {
                    if let Ok(Method::ConnectionCloseOk(_)) = Method::decode(f.payload) {
                        return;
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Assert nothing but heartbeats arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let r = tokio::time::timeout(d, async {
            loop {
                if let Ok(Some(f)) = frame::decode(&mut self.buf, 0) {
                    if f.kind != FrameType::Heartbeat {
                        return f;
                    }
                    continue;
                }
                if self.sock.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    futures_pending().await;
                }
            }
        })
        .await;
        if let Ok(f) = r {
            panic!("expected silence, got {f:?}");
        }
    }
}

async fn futures_pending() {
    std::future::pending::<()>().await
}
