//! A trivial AMQP sink: answers the handshake and every synchronous method with its `-ok`, and
//! discards everything else. Publishing into it measures the perf tool's own ceiling.
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren_protocol::method::*;
use warren_protocol::{frame, FrameType, Method};

/// Listen on a free loopback port; returns its address.
pub async fn start() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    Ok(addr)
}

async fn serve(mut s: TcpStream) -> anyhow::Result<()> {
    let _ = s.set_nodelay(true);
    let mut header = [0u8; 8];
    s.read_exact(&mut header).await?;
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut out = BytesMut::new();
    let start = ConnectionStart {
        version_major: 0,
        version_minor: 9,
        mechanisms: "PLAIN".into(),
        locales: "en_US".into(),
        ..Default::default()
    };
    frame::encode_method(&mut out, 0, &start.into());
    s.write_all(&out).await?;
    loop {
        out.clear();
        while let Some(f) = frame::decode(&mut buf, 0)? {
            if f.kind != FrameType::Method {
                continue;
            }
            let reply: Option<Method> = match Method::decode(f.payload)? {
                Method::ConnectionStartOk(_) => {
                    Some(ConnectionTune { channel_max: 2047, frame_max: 131072, heartbeat: 0 }.into())
                }
                Method::ConnectionOpen(_) => Some(ConnectionOpenOk::default().into()),
                Method::ConnectionClose(_) => Some(ConnectionCloseOk.into()),
                Method::ChannelOpen(_) => Some(ChannelOpenOk::default().into()),
                Method::QueueDeclare(d) => {
                    Some(QueueDeclareOk { queue: d.queue, message_count: 0, consumer_count: 0 }.into())
                }
                Method::QueueDelete(_) => Some(QueueDeleteOk { message_count: 0 }.into()),
                Method::ConfirmSelect(_) => Some(ConfirmSelectOk.into()),
                Method::BasicQos(_) => Some(BasicQosOk.into()),
                _ => None,
            };
            if let Some(r) = reply {
                frame::encode_method(&mut out, f.channel, &r);
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}
