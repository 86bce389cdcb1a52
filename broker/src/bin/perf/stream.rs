//! `warren-perf --stream-protocol`: publish with confirms and consume through RabbitMQ's stream
//! protocol (port 5552), for any broker that speaks it (Warren or RabbitMQ).
//!
//! One producer publishes `--size`-byte messages in frames of `--batch`, keeping at most
//! `--confirm` unconfirmed (default 10,000); one consumer subscribes from the first offset with
//! credit, re-crediting one chunk per chunk received. `--catch-up N` instead publishes N messages
//! first and then times one consumer reading them all from `first` (the catch-up read).
//!
//! Runs in: the tool's own tokio runtime (one task per side).
//!
//! # Invariants
//! - The producer never has more than the confirm window unconfirmed.
//! - Rates count confirmed (producer) and delivered (consumer) messages only.
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use warren_protocol::stream::chunk::Deliver;
use warren_protocol::stream::{self as sp, ChunkEntry, PublishedMessage, Request, Response};

/// Initial credit of the consumer (chunks).
const CREDIT: u16 = 10;

/// An open stream protocol connection.
struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: BytesMut,
    corr: u32,
}

impl Conn {
    async fn open(addr: SocketAddr, user: &str, pass: &str, vhost: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (rd, wr) = s.into_split();
        let mut c = Conn { rd, wr, buf: BytesMut::with_capacity(1 << 20), corr: 0 };
        c.call(|corr| Request::PeerProperties { correlation_id: corr, properties: vec![] }).await?;
        c.call(|corr| Request::SaslHandshake { correlation_id: corr }).await?;
        let mut data = vec![0u8];
        data.extend_from_slice(user.as_bytes());
        data.push(0);
        data.extend_from_slice(pass.as_bytes());
        c.call(|corr| Request::SaslAuthenticate {
            correlation_id: corr,
            mechanism: Bytes::from_static(b"PLAIN"),
            data: Bytes::from(data),
        })
        .await?;
        // The server's tune (unless it came before the authenticate response).
        loop {
            if let Response::Tune { .. } = c.next().await? {
                break;
            }
        }
        c.send(&Request::Tune { frame_max: sp::constants::DEFAULT_FRAME_MAX, heartbeat: 0 }).await?;
        let vhost = Bytes::copy_from_slice(vhost.as_bytes());
        c.call(|corr| Request::Open { correlation_id: corr, virtual_host: vhost.clone() }).await?;
        Ok(c)
    }

    async fn send(&mut self, r: &Request) -> anyhow::Result<()> {
        let mut b = BytesMut::new();
        r.encode(&mut b);
        self.wr.write_all(&b).await?;
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Response> {
        loop {
            if let Some(f) = sp::split_frame(&mut self.buf, 0)? {
                return Ok(Response::decode(f)?);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                anyhow::bail!("connection closed");
            }
        }
    }

    /// Send a request and wait for its response (other frames are skipped).
    async fn call(&mut self, make: impl FnOnce(u32) -> Request) -> anyhow::Result<Response> {
        self.corr += 1;
        let corr = self.corr;
        self.send(&make(corr)).await?;
        loop {
            let r = self.next().await?;
            if response_corr(&r) == Some(corr) {
                return Ok(r);
            }
        }
    }
}

fn response_corr(r: &Response) -> Option<u32> {
    match r {
        Response::Generic { correlation_id, .. }
        | Response::PeerProperties { correlation_id, .. }
        | Response::SaslHandshake { correlation_id, .. }
        | Response::SaslAuthenticate { correlation_id, .. }
        | Response::Open { correlation_id, .. }
        | Response::Metadata { correlation_id, .. } => Some(*correlation_id),
        _ => None,
    }
}

/// What the run measured.
pub struct Result {
    pub confirmed_per_s: f64,
    pub consumed_per_s: f64,
    pub seconds: f64,
    pub messages: u64,
}

/// Publish with confirms and consume at the same time for `seconds`; or, with `catch_up` > 0,
/// publish that many first and time one consumer reading them from `first`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    addr: SocketAddr,
    user: &str,
    pass: &str,
    vhost: &str,
    stream: &str,
    size: usize,
    batch: usize,
    window: u64,
    seconds: u64,
    catch_up: u64,
) -> anyhow::Result<Result> {
    let mut admin = Conn::open(addr, user, pass, vhost).await?;
    let name = Bytes::copy_from_slice(stream.as_bytes());
    admin.call(|corr| Request::Delete { correlation_id: corr, stream: name.clone() }).await?;
    admin.call(|corr| Request::Create { correlation_id: corr, stream: name.clone(), arguments: vec![] }).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let limit = if catch_up > 0 { catch_up } else { u64::MAX };
    let producer = {
        let (stop, confirmed, name) = (stop.clone(), confirmed.clone(), name.clone());
        let (user, pass, vhost) = (user.to_string(), pass.to_string(), vhost.to_string());
        tokio::spawn(async move {
            produce(addr, &user, &pass, &vhost, name, size, batch, window, limit, stop, confirmed).await
        })
    };
    if catch_up > 0 {
        producer.await??;
        let started = Instant::now();
        let done = Arc::new(AtomicBool::new(false));
        consume(addr, user, pass, vhost, name.clone(), done, consumed.clone(), catch_up).await?;
        let secs = started.elapsed().as_secs_f64();
        admin.call(|corr| Request::Delete { correlation_id: corr, stream: name.clone() }).await?;
        return Ok(Result {
            confirmed_per_s: 0.0,
            consumed_per_s: catch_up as f64 / secs,
            seconds: secs,
            messages: catch_up,
        });
    }
    let consumer = {
        let (stop, consumed, name) = (stop.clone(), consumed.clone(), name.clone());
        let (user, pass, vhost) = (user.to_string(), pass.to_string(), vhost.to_string());
        tokio::spawn(async move { consume(addr, &user, &pass, &vhost, name, stop, consumed, u64::MAX).await })
    };
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let secs = started.elapsed().as_secs_f64();
    let (c, d) = (confirmed.load(Ordering::Relaxed), consumed.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    producer.abort();
    consumer.abort();
    admin.call(|corr| Request::Delete { correlation_id: corr, stream: name.clone() }).await?;
    Ok(Result { confirmed_per_s: c as f64 / secs, consumed_per_s: d as f64 / secs, seconds: secs, messages: c })
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    addr: SocketAddr,
    user: &str,
    pass: &str,
    vhost: &str,
    stream: Bytes,
    size: usize,
    batch: usize,
    window: u64,
    limit: u64,
    stop: Arc<AtomicBool>,
    confirmed: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut c = Conn::open(addr, user, pass, vhost).await?;
    c.call(|corr| Request::DeclarePublisher {
        correlation_id: corr,
        publisher_id: 1,
        reference: Bytes::new(),
        stream: stream.clone(),
    })
    .await?;
    let body = Bytes::from(vec![b'x'; size]);
    let (mut next_id, mut acked) = (1u64, 0u64);
    let mut out = BytesMut::with_capacity(1 << 20);
    while !stop.load(Ordering::Relaxed) && acked < limit {
        // Fill the window.
        while next_id - 1 - acked + (batch as u64) <= window.max(batch as u64) && next_id - 1 < limit {
            let n = (batch as u64).min(limit - (next_id - 1)) as usize;
            let messages = (0..n)
                .map(|i| PublishedMessage {
                    publishing_id: next_id + i as u64,
                    filter_value: None,
                    entry: ChunkEntry::Simple(body.clone()),
                })
                .collect();
            next_id += n as u64;
            Request::Publish { publisher_id: 1, messages }.encode(&mut out);
            if out.len() > 256 * 1024 {
                break;
            }
        }
        if !out.is_empty() {
            c.wr.write_all(&out).await?;
            out.clear();
        }
        // Read confirms.
        match c.next().await? {
            Response::PublishConfirm { publishing_ids, .. } => {
                acked += publishing_ids.len() as u64;
                confirmed.fetch_add(publishing_ids.len() as u64, Ordering::Relaxed);
            }
            Response::PublishError { errors, .. } => anyhow::bail!("publish errors: {errors:?}"),
            _ => {}
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn consume(
    addr: SocketAddr,
    user: &str,
    pass: &str,
    vhost: &str,
    stream: Bytes,
    stop: Arc<AtomicBool>,
    consumed: Arc<AtomicU64>,
    until: u64,
) -> anyhow::Result<()> {
    let mut c = Conn::open(addr, user, pass, vhost).await?;
    c.call(|corr| Request::Subscribe {
        correlation_id: corr,
        subscription_id: 1,
        stream: stream.clone(),
        offset: sp::OffsetSpec::First,
        credit: CREDIT,
        properties: vec![],
    })
    .await?;
    let mut got = 0u64;
    let mut credit = BytesMut::new();
    while !stop.load(Ordering::Relaxed) && got < until {
        let f = loop {
            if let Some(f) = sp::split_frame(&mut c.buf, 0)? {
                break f;
            }
            if c.rd.read_buf(&mut c.buf).await? == 0 {
                anyhow::bail!("connection closed");
            }
        };
        if sp::frame::key_version(&f).map(|(k, _)| k) == Some(sp::key::DELIVER) {
            let d = Deliver::decode(f)?;
            let n = d.header.num_records as u64;
            got += n;
            consumed.fetch_add(n, Ordering::Relaxed);
            Request::Credit { subscription_id: 1, credit: 1 }.encode(&mut credit);
            c.wr.write_all(&credit).await?;
            credit.clear();
        }
    }
    Ok(())
}
