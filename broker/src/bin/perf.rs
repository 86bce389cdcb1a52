//! `warren-perf`: end-to-end throughput of any AMQP 0-9-1 broker (Warren or RabbitMQ).
//!
//! Producers publish fixed-size messages to one queue as fast as the broker takes them; consumers
//! consume with a prefetch window and ack with `multiple`. Published-but-not-consumed messages are
//! capped (`--max-in-flight`) so a broker that accepts faster than it delivers is measured on what it
//! delivers, not on how much it can buffer. Runs for `--seconds`, then prints msgs/s.
//!
//! The client is built on Warren's own codec (no broker code): batched writes, one read buffer,
//! no per-message allocation, so the client is not the bottleneck.
use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_protocol::constants::PROTOCOL_HEADER;
use warren_protocol::method::*;
use warren_protocol::{fast, frame, FrameType, LongStr, Method, ShortStr};

#[derive(Parser, Debug, Clone)]
#[command(about = "Publish/consume throughput against an AMQP 0-9-1 broker")]
struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:5672")]
    addr: SocketAddr,
    #[arg(long, default_value = "guest")]
    user: String,
    #[arg(long, default_value = "guest")]
    pass: String,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consuming connections.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Test duration.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Consumer prefetch (acks go out with multiple=true every prefetch/2 messages).
    #[arg(long, default_value_t = 2000)]
    prefetch: u16,
    /// Cap on published-but-not-yet-consumed messages.
    #[arg(long, default_value_t = 200_000)]
    max_in_flight: u64,
    /// Publishes per write.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Publisher confirms: keep at most this many publishes unconfirmed per producer (0 = no confirms).
    #[arg(long, default_value_t = 0)]
    confirm: u64,
    /// Declare the test queue with this `x-message-ttl` (ms).
    #[arg(long)]
    message_ttl: Option<u32>,
    /// Queue name (default: warren-perf-<pid>).
    #[arg(long)]
    queue: Option<String>,
    /// Leave the test queue in place at the end (default: delete it).
    #[arg(long)]
    keep_queue: bool,
    /// Print the message count of `--queue` (passive declare) and exit.
    #[arg(long)]
    count_only: bool,
    /// Persistent messages (delivery_mode 2) to a durable queue.
    #[arg(long)]
    persistent: bool,
    /// Label printed with the result.
    #[arg(long, default_value = "broker")]
    label: String,
}

/// Counters shared by all tasks.
struct Stats {
    published: AtomicU64,
    consumed: AtomicU64,
    stop: AtomicBool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let queue = args.queue.clone().unwrap_or_else(|| format!("warren-perf-{}", std::process::id()));
    let stats =
        Arc::new(Stats { published: AtomicU64::new(0), consumed: AtomicU64::new(0), stop: AtomicBool::new(false) });
    // Declare the queue.
    let mut setup = Client::connect(&args).await?;
    if args.count_only {
        let q = QueueDeclare { queue: ShortStr::from(queue.clone()), passive: true, ..Default::default() };
        match setup.call(1, q.into()).await? {
            Method::QueueDeclareOk(ok) => println!("{}", ok.message_count),
            other => bail!("unexpected reply {other:?}"),
        }
        return Ok(());
    }
    let mut arguments = warren_protocol::FieldTable::new();
    if let Some(ttl) = args.message_ttl {
        arguments.insert("x-message-ttl", warren_protocol::FieldValue::U32(ttl));
    }
    setup
        .call(
            1,
            QueueDeclare {
                queue: ShortStr::from(queue.clone()),
                arguments,
                durable: args.persistent,
                ..Default::default()
            }
            .into(),
        )
        .await?;
    let mut tasks = Vec::new();
    for _ in 0..args.consumers {
        let (a, s, q) = (args.clone(), stats.clone(), queue.clone());
        tasks.push(tokio::spawn(async move { consumer(a, s, q).await }));
    }
    for _ in 0..args.producers {
        let (a, s, q) = (args.clone(), stats.clone(), queue.clone());
        tasks.push(tokio::spawn(async move { producer(a, s, q).await }));
    }
    let start = Instant::now();
    let mut last = (0u64, 0u64, start);
    while start.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (p, c, now) =
            (stats.published.load(Ordering::Relaxed), stats.consumed.load(Ordering::Relaxed), Instant::now());
        let dt = now.duration_since(last.2).as_secs_f64();
        eprintln!(
            "  {:>5.1}s  published {:>10.0}/s  consumed {:>10.0}/s",
            start.elapsed().as_secs_f64(),
            (p - last.0) as f64 / dt,
            (c - last.1) as f64 / dt
        );
        last = (p, c, now);
    }
    stats.stop.store(true, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let (p, c) = (stats.published.load(Ordering::Relaxed), stats.consumed.load(Ordering::Relaxed));
    println!(
        "{}: {} producer(s), {} consumer(s), {} B bodies, {:.1} s: published {:.0} msgs/s, consumed {:.0} msgs/s",
        args.label,
        args.producers,
        args.consumers,
        args.size,
        secs,
        p as f64 / secs,
        c as f64 / secs
    );
    for t in tasks {
        t.abort();
    }
    if !args.keep_queue {
        setup.call(1, QueueDelete { queue: ShortStr::from(queue), ..Default::default() }.into()).await?;
    }
    Ok(())
}

async fn producer(args: Args, stats: Arc<Stats>, queue: String) -> anyhow::Result<()> {
    let mut c = Client::connect(&args).await?;
    let body = vec![b'x'; args.size];
    let mut buf = BytesMut::with_capacity(args.batch * (args.size + 64));
    let publish: Method = BasicPublish { routing_key: ShortStr::from(queue), ..Default::default() }.into();
    let mut one = BytesMut::new();
    frame::encode_method(&mut one, 1, &publish);
    // Property flags: delivery-mode (bit 12) = 2 when persistent.
    let props: &[u8] = if args.persistent { &[0x10, 0x00, 0x02] } else { &[0, 0] };
    fast::header(&mut one, 1, body.len() as u64, props);
    fast::body(&mut one, 1, &body, c.frame_max);
    // With confirms, a reader task tracks the highest confirmed sequence number.
    let confirmed = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(tokio::sync::Notify::new());
    if args.confirm > 0 {
        c.call(1, ConfirmSelect { no_wait: false }.into()).await?;
    }
    let (mut rd, mut wr) = c.sock.into_split();
    if args.confirm > 0 {
        let (confirmed, acked, mut rbuf) = (confirmed.clone(), acked.clone(), c.buf);
        tokio::spawn(async move {
            loop {
                while let Ok(Some(f)) = frame::decode(&mut rbuf, 0) {
                    if let Ok(Method::BasicAck(a)) = Method::decode(f.payload) {
                        confirmed.fetch_max(a.delivery_tag, Ordering::Relaxed);
                        acked.notify_one();
                    }
                }
                if !matches!(rd.read_buf(&mut rbuf).await, Ok(n) if n > 0) {
                    return;
                }
            }
        });
    }
    let batch = if args.confirm > 0 { args.batch.min(args.confirm as usize) } else { args.batch };
    let mut seq = 0u64;
    while !stats.stop.load(Ordering::Relaxed) {
        let in_flight = stats.published.load(Ordering::Relaxed).saturating_sub(stats.consumed.load(Ordering::Relaxed));
        if in_flight > args.max_in_flight {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        if args.confirm > 0 {
            while seq + batch as u64 - confirmed.load(Ordering::Relaxed) > args.confirm {
                let _ = tokio::time::timeout(Duration::from_millis(100), acked.notified()).await;
                if stats.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
        }
        buf.clear();
        for _ in 0..batch {
            buf.extend_from_slice(&one);
        }
        wr.write_all(&buf).await?;
        seq += batch as u64;
        stats.published.fetch_add(batch as u64, Ordering::Relaxed);
    }
    Ok(())
}

async fn consumer(args: Args, stats: Arc<Stats>, queue: String) -> anyhow::Result<()> {
    let mut c = Client::connect(&args).await?;
    c.call(1, BasicQos { prefetch_count: args.prefetch, ..Default::default() }.into()).await?;
    c.send(1, BasicConsume { queue: ShortStr::from(queue), ..Default::default() }.into()).await?;
    let ack_every = (args.prefetch as u64 / 2).max(1);
    let mut unacked = 0u64;
    let mut last_tag = 0u64;
    let mut out = BytesMut::new();
    loop {
        while let Some(f) = frame::decode(&mut c.buf, 0)? {
            if f.kind == FrameType::Method && f.payload.len() >= 4 && f.payload[..4] == [0, 60, 0, 60] {
                // basic.deliver: count it; tag is after the consumer tag.
                let ctag_len = f.payload[4] as usize;
                let at = 5 + ctag_len;
                let mut t = [0u8; 8];
                t.copy_from_slice(&f.payload[at..at + 8]);
                last_tag = u64::from_be_bytes(t);
                unacked += 1;
                stats.consumed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if unacked >= ack_every {
            out.clear();
            fast::ack(&mut out, 1, last_tag, true);
            c.sock.write_all(&out).await?;
            unacked = 0;
        }
        if c.sock.read_buf(&mut c.buf).await? == 0 {
            bail!("broker closed the connection");
        }
    }
}

/// A minimal client: handshake, one channel.
struct Client {
    sock: TcpStream,
    buf: BytesMut,
    frame_max: u32,
}

impl Client {
    async fn connect(a: &Args) -> anyhow::Result<Client> {
        let sock = TcpStream::connect(a.addr).await.with_context(|| format!("connect {}", a.addr))?;
        sock.set_nodelay(true)?;
        let mut c = Client { sock, buf: BytesMut::with_capacity(256 * 1024), frame_max: 131072 };
        c.sock.write_all(PROTOCOL_HEADER).await?;
        let Method::ConnectionStart(_) = c.recv().await? else { bail!("expected connection.start") };
        c.send(
            0,
            ConnectionStartOk {
                client_properties: Default::default(),
                mechanism: "PLAIN".into(),
                response: LongStr::from(format!("\0{}\0{}", a.user, a.pass)),
                locale: "en_US".into(),
            }
            .into(),
        )
        .await?;
        let Method::ConnectionTune(t) = c.recv().await? else { bail!("expected connection.tune (bad credentials?)") };
        c.frame_max = t.frame_max;
        c.send(0, ConnectionTuneOk { channel_max: t.channel_max, frame_max: t.frame_max, heartbeat: 0 }.into()).await?;
        c.call(0, ConnectionOpen { virtual_host: "/".into(), ..Default::default() }.into()).await?;
        c.call(1, ChannelOpen::default().into()).await?;
        Ok(c)
    }
    async fn send(&mut self, ch: u16, m: Method) -> anyhow::Result<()> {
        let mut b = BytesMut::new();
        frame::encode_method(&mut b, ch, &m);
        self.sock.write_all(&b).await?;
        Ok(())
    }
    async fn recv(&mut self) -> anyhow::Result<Method> {
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
    async fn call(&mut self, ch: u16, m: Method) -> anyhow::Result<Method> {
        self.send(ch, m).await?;
        match self.recv().await? {
            Method::ChannelClose(c) => bail!("channel closed: {}", c.reply_text),
            Method::ConnectionClose(c) => bail!("connection closed: {}", c.reply_text),
            r => Ok(r),
        }
    }
}
