//! A minimal AMQP client on Warren's codec: handshake, channel 1, synchronous calls. The hot paths
//! (publish, deliver, ack) are written by hand in `main.rs` over the raw socket.
use anyhow::{bail, Context};
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_protocol::constants::PROTOCOL_HEADER;
use warren_protocol::method::*;
use warren_protocol::{frame, FrameType, LongStr, Method};

/// One connection with channel 1 open.
pub struct Client {
    /// The socket.
    pub sock: TcpStream,
    /// Read buffer.
    pub buf: BytesMut,
    /// Negotiated frame_max.
    pub frame_max: u32,
}

impl Client {
    /// Connect, log in, open `vhost` and channel 1.
    pub async fn connect(addr: SocketAddr, user: &str, pass: &str, vhost: &str) -> anyhow::Result<Client> {
        let sock = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        sock.set_nodelay(true)?;
        let mut c = Client { sock, buf: BytesMut::with_capacity(256 * 1024), frame_max: 131072 };
        c.sock.write_all(PROTOCOL_HEADER).await?;
        let Method::ConnectionStart(_) = c.recv().await? else { bail!("expected connection.start") };
        let start_ok = ConnectionStartOk {
            client_properties: Default::default(),
            mechanism: "PLAIN".into(),
            response: LongStr::from(format!("\0{user}\0{pass}")),
            locale: "en_US".into(),
        };
        c.send(0, start_ok.into()).await?;
        let Method::ConnectionTune(t) = c.recv().await? else { bail!("expected connection.tune (bad credentials?)") };
        c.frame_max = t.frame_max;
        c.send(0, ConnectionTuneOk { channel_max: t.channel_max, frame_max: t.frame_max, heartbeat: 0 }.into()).await?;
        c.call(0, ConnectionOpen { virtual_host: vhost.to_string().into(), ..Default::default() }.into()).await?;
        c.call(1, ChannelOpen::default().into()).await?;
        Ok(c)
    }

    pub async fn send(&mut self, ch: u16, m: Method) -> anyhow::Result<()> {
        let mut b = BytesMut::new();
        frame::encode_method(&mut b, ch, &m);
        self.sock.write_all(&b).await?;
        Ok(())
    }

    /// Next method frame (content frames are skipped).
    pub async fn recv(&mut self) -> anyhow::Result<Method> {
        loop {
            if let Some(f) = frame::decode(&mut self.buf, 0)? {
                if f.kind == FrameType::Method {
                    return Ok(Method::decode(f.payload)?);
                }
                continue;
            }
            if self.sock.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        }
    }

    /// Send a method and return its reply (a close is an error).
    pub async fn call(&mut self, ch: u16, m: Method) -> anyhow::Result<Method> {
        self.send(ch, m).await?;
        match self.recv().await? {
            Method::ChannelClose(c) => bail!("channel closed: {}", c.reply_text),
            Method::ConnectionClose(c) => bail!("connection closed: {}", c.reply_text),
            r => Ok(r),
        }
    }

    /// connection.close and wait for close-ok.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.call(0, ConnectionClose { reply_code: 200, reply_text: "bye".into(), ..Default::default() }.into())
            .await?;
        Ok(())
    }
}
