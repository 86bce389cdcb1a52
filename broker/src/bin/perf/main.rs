//! `warren-perf`: a load generator for any AMQP 0-9-1 broker (Warren or RabbitMQ), in the spirit of
//! RabbitMQ's PerfTest.
//!
//! Modes:
//! - throughput / latency (default): producers publish fixed-size messages (to queues round-robin,
//!   or to a fanout exchange bound to `--fanout` queues), consumers consume with a prefetch window
//!   and ack every `--ack-every` (or `--no-ack`). Every body carries its send time, so consumers
//!   record end-to-end latency in an HDR histogram; `--rate` fixes the publish rate for a latency
//!   run. Published-but-not-consumed messages are capped (`--max-in-flight`).
//! - `--sink`: the same producers against a trivial in-process sink: the tool's own ceiling.
//! - `--relay`: no broker and no AMQP: `--size`-byte chunks through a raw TCP relay thread, the
//!   four kernel copies of a brokered body and nothing else: the machine's ceiling for large bodies.
//! - `--churn connections|queues`: open/close connections, or declare/delete queues, as fast as
//!   possible; ops/s.
//! - `--hold-connections N` / `--hold-queues N`: open N idle connections (one channel each) or
//!   declare N queues, print `ready`, hold them for `--seconds` (memory measurements).
//! - `--count-only`: print the message count of `--queue`.
//!
//! `--json` prints the result as one JSON object. The client is built on Warren's codec with
//! batched writes and no per-message allocation, so it is not the bottleneck (see `--sink`).
mod client;
mod relay;
mod sink;
mod stream;

use anyhow::bail;
use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use client::Client;
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_protocol::method::*;
use warren_protocol::{fast, frame, FieldTable, FieldValue, FrameType, Method, ShortStr};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Churn {
    Connections,
    Queues,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator for AMQP 0-9-1 brokers: throughput, latency, churn, memory")]
struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:5672")]
    addr: SocketAddr,
    #[arg(long, default_value = "guest")]
    user: String,
    #[arg(long, default_value = "guest")]
    pass: String,
    #[arg(long, default_value = "/")]
    vhost: String,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consuming connections (with --fanout: one per queue, this is ignored).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Queues; producers and consumers are spread over them round-robin.
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Publish to a fanout exchange bound to this many queues, one consumer each (0 = off).
    #[arg(long, default_value_t = 0)]
    fanout: usize,
    /// Publish through one direct exchange, each queue bound by its name (many services
    /// publishing to one exchange), instead of the default exchange.
    #[arg(long)]
    direct_exchange: bool,
    /// Body size in bytes (the first 8 carry the send time when the body has room).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Run time.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Consumer prefetch (basic.qos).
    #[arg(long, default_value_t = 2000)]
    prefetch: u16,
    /// Ack with `multiple` every this many deliveries (default: prefetch / 2).
    #[arg(long)]
    ack_every: Option<u64>,
    /// Consume without acks.
    #[arg(long)]
    no_ack: bool,
    /// Cap on published-but-not-consumed messages (0 = no cap).
    #[arg(long, default_value_t = 200_000)]
    max_in_flight: u64,
    /// Messages per socket write.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Publisher confirms: at most this many unconfirmed per producer (0 = no confirms).
    #[arg(long, default_value_t = 0)]
    confirm: u64,
    /// Persistent messages (delivery_mode 2) to durable queues.
    #[arg(long)]
    persistent: bool,
    /// Give every message this `message_id` (what the broker's message trace records).
    #[arg(long)]
    message_id: Option<String>,
    /// Fixed publish rate per producer, msgs/s (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// x-message-ttl of the test queues, ms.
    #[arg(long)]
    message_ttl: Option<u32>,
    /// Queue name (default: warren-perf-<pid>; with several queues, a suffix -<i>).
    #[arg(long)]
    queue: Option<String>,
    /// Leave the test queues in place at the end (default: delete them).
    #[arg(long)]
    keep_queue: bool,
    /// Label printed with the result.
    #[arg(long, default_value = "broker")]
    label: String,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print the message count of `--queue` (passive declare) and exit.
    #[arg(long)]
    count_only: bool,
    /// Publish into a trivial in-process sink instead of a broker (the tool's own ceiling).
    #[arg(long)]
    sink: bool,
    /// Send `--size`-byte chunks (`--batch` per write) through a raw TCP relay thread for
    /// `--seconds`, with no broker: the machine's ceiling for bodies end to end.
    #[arg(long)]
    relay: bool,
    /// Churn test instead of a throughput test.
    #[arg(long, value_enum)]
    churn: Option<Churn>,
    /// Open this many idle connections (one channel each), print `ready`, hold them.
    #[arg(long, default_value_t = 0)]
    hold_connections: usize,
    /// Run this shell command (a broker), time it to the first successful AMQP handshake on
    /// `--addr`, print milliseconds, then SIGTERM it.
    #[arg(long)]
    startup: Option<String>,
    /// Declare this many queues (durable with --persistent), print `ready`, hold them.
    #[arg(long, default_value_t = 0)]
    hold_queues: usize,
    /// Publish with confirms and consume through the stream protocol (`--addr` is the stream
    /// port); `--confirm` is the confirm window (default 10,000).
    #[arg(long)]
    stream_protocol: bool,
    /// With --stream-protocol: publish this many messages first, then time one consumer reading
    /// them all from the first offset.
    #[arg(long, default_value_t = 0)]
    catch_up: u64,
    /// The broker's process id: report the broker's CPU time (user + system, from
    /// /proc/<pid>/stat) per consumed message (per published one when nothing is consumed).
    #[arg(long)]
    server_pid: Option<u32>,
}

/// CPU time (user + system) a process has used so far, in microseconds, from /proc/<pid>/stat.
fn process_cpu_us(pid: u32) -> Option<f64> {
    stat_cpu_us(&format!("/proc/{pid}/stat"))
}

/// CPU time (user + system) from a `stat` file of /proc (a process's or a thread's), in
/// microseconds.
fn stat_cpu_us(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: the fields after it start behind the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line (11 and 12 after the name and state).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel reports these in USER_HZ ticks, which is 100 on every Linux ABI Warren runs on.
    const USER_HZ: f64 = 100.0;
    Some(ticks * 1e6 / USER_HZ)
}

/// Counters shared by all tasks.
struct Stats {
    published: AtomicU64,
    consumed: AtomicU64,
    stop: AtomicBool,
    /// End-to-end latency, ns (consumers merge theirs at the end).
    latency: Mutex<Histogram<u64>>,
}

/// Nanoseconds since the process started (the clock of the send time in bodies).
fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn histogram() -> Histogram<u64> {
    // 100 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(100, 100_000_000_000, 3).expect("valid histogram bounds")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    now_ns();
    if args.sink {
        args.addr = sink::start().await?;
        args.consumers = 0;
        args.max_in_flight = 0;
    }
    let base = args.queue.clone().unwrap_or_else(|| format!("warren-perf-{}", std::process::id()));
    if args.count_only {
        let mut c = Client::connect(args.addr, &args.user, &args.pass, &args.vhost).await?;
        let q = QueueDeclare { queue: ShortStr::from(base), passive: true, ..Default::default() };
        match c.call(1, q.into()).await? {
            Method::QueueDeclareOk(ok) => println!("{}", ok.message_count),
            other => bail!("unexpected reply {other:?}"),
        }
        return Ok(());
    }
    if args.relay {
        let (size, batch, seconds) = (args.size, args.batch, args.seconds);
        let r = tokio::task::spawn_blocking(move || relay::run(size, batch, seconds)).await??;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"label": args.label, "consumed_bytes_per_s": r.bytes_per_s,
                    "relay_cpu_us_per_msg": r.relay_cpu_us_per_chunk})
            );
        } else {
            println!(
                "{}: raw TCP relay, {} B chunks: {:.2} GB/s, relay CPU {:.1} us per chunk",
                args.label,
                args.size,
                r.bytes_per_s / 1e9,
                r.relay_cpu_us_per_chunk
            );
        }
        return Ok(());
    }
    if let Some(cmd) = &args.startup {
        return startup(&args, cmd).await;
    }
    if args.stream_protocol {
        let window = if args.confirm == 0 { 10_000 } else { args.confirm };
        // A broker that stops answering (an alarm, a stuck stream) ends the run, not the tool.
        let limit = Duration::from_secs(args.seconds + 120);
        let r = match tokio::time::timeout(
            limit,
            stream::run(
                args.addr,
                &args.user,
                &args.pass,
                &args.vhost,
                &base,
                args.size,
                args.batch,
                window,
                args.seconds,
                args.catch_up,
            ),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => bail!("{}: no result within {limit:?}", args.label),
        };
        if args.json {
            println!(
                "{}",
                serde_json::json!({"label": args.label, "confirmed_per_s": r.confirmed_per_s,
                    "consumed_per_s": r.consumed_per_s, "seconds": r.seconds, "messages": r.messages})
            );
        } else if args.catch_up > 0 {
            println!(
                "{}: catch-up read of {} messages of {} B in {:.2} s: {:.0} msgs/s, {:.0} MB/s",
                args.label,
                r.messages,
                args.size,
                r.seconds,
                r.consumed_per_s,
                r.consumed_per_s * args.size as f64 / 1e6
            );
        } else {
            println!(
                "{}: stream protocol, {} B: confirmed {:.0} msgs/s, consumed {:.0} msgs/s",
                args.label, args.size, r.confirmed_per_s, r.consumed_per_s
            );
        }
        return Ok(());
    }
    if let Some(c) = args.churn {
        return churn(&args, c, &base).await;
    }
    if args.hold_connections > 0 || args.hold_queues > 0 {
        return hold(&args, &base).await;
    }
    throughput(args, base).await
}

/// Queue names of the run.
fn queue_names(args: &Args, base: &str) -> Vec<String> {
    let n = if args.fanout > 0 { args.fanout } else { args.queues.max(1) };
    if n == 1 {
        vec![base.to_string()]
    } else {
        (0..n).map(|i| format!("{base}-{i}")).collect()
    }
}

async fn throughput(args: Args, base: String) -> anyhow::Result<()> {
    let stats = Arc::new(Stats {
        published: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        latency: Mutex::new(histogram()),
    });
    let queues = queue_names(&args, &base);
    let exchange = if args.fanout > 0 {
        format!("{base}-fanout")
    } else if args.direct_exchange {
        format!("{base}-direct")
    } else {
        String::new()
    };
    let mut setup = Client::connect(args.addr, &args.user, &args.pass, &args.vhost).await?;
    let mut arguments = FieldTable::new();
    if let Some(ttl) = args.message_ttl {
        arguments.insert("x-message-ttl", FieldValue::U32(ttl));
    }
    for q in &queues {
        let d = QueueDeclare {
            queue: q.clone().into(),
            arguments: arguments.clone(),
            durable: args.persistent,
            ..Default::default()
        };
        setup.call(1, d.into()).await?;
    }
    if !exchange.is_empty() {
        let x = ExchangeDeclare {
            exchange: exchange.clone().into(),
            kind: if args.fanout > 0 { "fanout" } else { "direct" }.into(),
            durable: args.persistent,
            ..Default::default()
        };
        setup.call(1, x.into()).await?;
        for q in &queues {
            let b = QueueBind {
                queue: q.clone().into(),
                exchange: exchange.clone().into(),
                routing_key: if args.fanout > 0 { String::new() } else { q.clone() }.into(),
                ..Default::default()
            };
            setup.call(1, b.into()).await?;
        }
    }
    let consumers = if args.fanout > 0 { queues.len() } else { args.consumers };
    let fan = args.fanout.max(1) as u64;
    let mut tasks = Vec::new();
    for i in 0..consumers {
        let (a, s, q) = (args.clone(), stats.clone(), queues[i % queues.len()].clone());
        tasks.push(tokio::spawn(async move { consumer(a, s, q).await }));
    }
    for i in 0..args.producers {
        let (a, s) = (args.clone(), stats.clone());
        let (x, key) = if args.fanout > 0 {
            (exchange.clone(), String::new())
        } else {
            (exchange.clone(), queues[i % queues.len()].clone())
        };
        tasks.push(tokio::spawn(async move { producer(a, s, x, key, fan).await }));
    }
    let start = Instant::now();
    let cpu_start = args.server_pid.and_then(process_cpu_us);
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
    let server_cpu_us = match (cpu_start, args.server_pid.and_then(process_cpu_us)) {
        (Some(a), Some(b)) => Some((b - a) / (if c > 0 { c } else { p.max(1) }) as f64),
        _ => None,
    };
    let server_core_share = match (cpu_start, args.server_pid.and_then(process_cpu_us)) {
        (Some(a), Some(b)) => Some((b - a) / 1e6 / secs),
        _ => None,
    };
    // Consumers merge their histograms as they stop.
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_millis(500), t).await;
    }
    let h = stats.latency.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram());
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let (pub_s, con_s) = (p as f64 / secs, c as f64 / secs);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "label": args.label, "producers": args.producers, "consumers": consumers, "queues": queues.len(),
                "fanout": args.fanout, "size": args.size, "seconds": secs, "confirm": args.confirm,
                "persistent": args.persistent, "no_ack": args.no_ack, "rate": args.rate,
                "published_per_s": pub_s, "consumed_per_s": con_s,
                "consumed_bytes_per_s": con_s * args.size as f64,
                "server_cpu_us_per_msg": server_cpu_us, "server_cores": server_core_share,
                "latency_us": if h.is_empty() { serde_json::Value::Null } else { serde_json::json!({
                    "p50": us(0.5), "p99": us(0.99), "p999": us(0.999), "max": h.max() as f64 / 1000.0,
                    "samples": h.len() }) },
            })
        );
    } else {
        let lat = if h.is_empty() {
            String::new()
        } else {
            format!(
                ", latency p50 {:.0} us p99 {:.0} us p99.9 {:.0} us max {:.0} us",
                us(0.5),
                us(0.99),
                us(0.999),
                h.max() as f64 / 1000.0
            )
        };
        let cpu = match (server_cpu_us, server_core_share) {
            (Some(us), Some(cores)) => format!(", server CPU {us:.3} us/msg ({cores:.2} cores)"),
            _ => String::new(),
        };
        println!(
            "{}: {} producer(s), {} consumer(s), {} queue(s){}, {} B bodies, {:.1} s: published {:.0} msgs/s, consumed {:.0} msgs/s{}{}",
            args.label,
            args.producers,
            consumers,
            queues.len(),
            if args.fanout > 0 { " (fanout)" } else { "" },
            args.size,
            secs,
            pub_s,
            con_s,
            lat,
            cpu
        );
    }
    if !args.keep_queue && !args.sink {
        for q in &queues {
            setup.call(1, QueueDelete { queue: q.clone().into(), ..Default::default() }.into()).await?;
        }
        if !exchange.is_empty() {
            setup.call(1, ExchangeDelete { exchange: exchange.into(), ..Default::default() }.into()).await?;
        }
    }
    Ok(())
}

async fn producer(args: Args, stats: Arc<Stats>, exchange: String, key: String, fan: u64) -> anyhow::Result<()> {
    let c = Client::connect(args.addr, &args.user, &args.pass, &args.vhost).await?;
    let mut c = c;
    let body = vec![b'x'; args.size];
    let publish: Method =
        BasicPublish { exchange: exchange.into(), routing_key: key.into(), ..Default::default() }.into();
    let mut one = BytesMut::new();
    frame::encode_method(&mut one, 1, &publish);
    // Property flags: delivery-mode (bit 12) = 2 when persistent, message-id (bit 7) when given;
    // the values follow in that order.
    let mut props: Vec<u8> =
        vec![if args.persistent { 0x10 } else { 0 }, if args.message_id.is_some() { 0x80 } else { 0 }];
    if args.persistent {
        props.push(2);
    }
    if let Some(id) = &args.message_id {
        props.push(id.len().min(255) as u8);
        props.extend_from_slice(&id.as_bytes()[..id.len().min(255)]);
    }
    fast::header(&mut one, 1, body.len() as u64, &props);
    let body_at = one.len() + 7;
    fast::body(&mut one, 1, &body, c.frame_max);
    let stamp = args.size >= 8;
    // With confirms, a reader task tracks the highest confirmed sequence number.
    let confirmed = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(tokio::sync::Notify::new());
    if args.confirm > 0 {
        c.call(1, ConfirmSelect { no_wait: false }.into()).await?;
    }
    let (mut rd, mut wr) = c.sock.into_split();
    {
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
    let max_batch = if args.confirm > 0 { args.batch.min(args.confirm as usize) } else { args.batch };
    let mut buf = BytesMut::with_capacity(max_batch.min(10_000) * one.len());
    let mut seq = 0u64;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while !stats.stop.load(Ordering::Relaxed) {
        let batch = if args.rate > 0 {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
            // What is due this tick (capped by the confirm window, not by --batch).
            (due.saturating_sub(seq) as usize).min(if args.confirm > 0 { max_batch } else { 100_000 })
        } else {
            max_batch
        };
        if batch == 0 {
            continue;
        }
        if args.max_in_flight > 0 {
            let in_flight =
                (stats.published.load(Ordering::Relaxed) * fan).saturating_sub(stats.consumed.load(Ordering::Relaxed));
            if in_flight > args.max_in_flight * fan {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
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
        let t = now_ns().to_be_bytes();
        for _ in 0..batch {
            let at = buf.len();
            buf.extend_from_slice(&one);
            if stamp {
                buf[at + body_at..at + body_at + 8].copy_from_slice(&t);
            }
        }
        wr.write_all(&buf).await?;
        seq += batch as u64;
        stats.published.fetch_add(batch as u64, Ordering::Relaxed);
    }
    Ok(())
}

async fn consumer(args: Args, stats: Arc<Stats>, queue: String) -> anyhow::Result<()> {
    let mut c = Client::connect(args.addr, &args.user, &args.pass, &args.vhost).await?;
    if !args.no_ack {
        c.call(1, BasicQos { prefetch_count: args.prefetch, ..Default::default() }.into()).await?;
    }
    c.send(1, BasicConsume { queue: queue.into(), no_ack: args.no_ack, ..Default::default() }.into()).await?;
    let ack_every = args.ack_every.unwrap_or(args.prefetch as u64 / 2).max(1);
    let mut h = histogram();
    let (mut unacked, mut last_tag, mut want_body) = (0u64, 0u64, false);
    let mut out = BytesMut::new();
    while !stats.stop.load(Ordering::Relaxed) {
        let mut n = 0;
        while let Some(f) = frame::decode(&mut c.buf, 0)? {
            match f.kind {
                FrameType::Method if f.payload.len() >= 4 && f.payload[..4] == [0, 60, 0, 60] => {
                    // basic.deliver: the tag follows the consumer tag.
                    let at = 5 + f.payload[4] as usize;
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&f.payload[at..at + 8]);
                    last_tag = u64::from_be_bytes(t);
                    unacked += 1;
                    n += 1;
                    want_body = args.size >= 8;
                }
                FrameType::Body if want_body && f.payload.len() >= 8 => {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&f.payload[..8]);
                    let _ = h.record(now_ns().saturating_sub(u64::from_be_bytes(t)).max(100));
                    want_body = false;
                }
                _ => {}
            }
        }
        stats.consumed.fetch_add(n, Ordering::Relaxed);
        if !args.no_ack && unacked >= ack_every {
            out.clear();
            fast::ack(&mut out, 1, last_tag, true);
            c.sock.write_all(&out).await?;
            unacked = 0;
        }
        if c.buf.capacity() - c.buf.len() < 128 * 1024 {
            c.buf.reserve(1024 * 1024);
        }
        match tokio::time::timeout(Duration::from_millis(100), c.sock.read_buf(&mut c.buf)).await {
            Ok(Ok(0)) => bail!("broker closed the connection"),
            Ok(Err(e)) => return Err(e.into()),
            _ => {}
        }
    }
    if let Ok(mut all) = stats.latency.lock() {
        let _ = all.add(&h);
    }
    Ok(())
}

async fn churn(args: &Args, kind: Churn, base: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut ops = 0u64;
    let mut c = Client::connect(args.addr, &args.user, &args.pass, &args.vhost).await?;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        match kind {
            Churn::Connections => {
                Client::connect(args.addr, &args.user, &args.pass, &args.vhost).await?.close().await?;
            }
            Churn::Queues => {
                let q = format!("{base}-churn-{ops}");
                c.call(1, QueueDeclare { queue: q.clone().into(), ..Default::default() }.into()).await?;
                c.call(1, QueueDelete { queue: q.into(), ..Default::default() }.into()).await?;
            }
        }
        ops += 1;
    }
    let per_s = ops as f64 / start.elapsed().as_secs_f64();
    let what = match kind {
        Churn::Connections => "connection open+close",
        Churn::Queues => "queue declare+delete",
    };
    if args.json {
        println!("{}", serde_json::json!({"label": args.label, "churn": what, "ops_per_s": per_s}));
    } else {
        println!("{}: {what}: {per_s:.0} ops/s", args.label);
    }
    Ok(())
}

async fn startup(args: &Args, cmd: &str) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", &format!("exec {cmd}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let ms = loop {
        if let Ok(Ok(c)) = tokio::time::timeout(
            Duration::from_secs(2),
            Client::connect(args.addr, &args.user, &args.pass, &args.vhost),
        )
        .await
        {
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let _ = c.close().await;
            break ms;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill().await;
            bail!("no handshake within 120 s");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    if args.json {
        println!("{}", serde_json::json!({"label": args.label, "startup_ms": ms}));
    } else {
        println!("{}: start to first handshake {ms:.1} ms", args.label);
    }
    Ok(())
}

async fn hold(args: &Args, base: &str) -> anyhow::Result<()> {
    let mut conns = Vec::new();
    for _ in 0..args.hold_connections {
        conns.push(Client::connect(args.addr, &args.user, &args.pass, &args.vhost).await?);
    }
    let mut c = Client::connect(args.addr, &args.user, &args.pass, &args.vhost).await?;
    for i in 0..args.hold_queues {
        let d =
            QueueDeclare { queue: format!("{base}-hold-{i}").into(), durable: args.persistent, ..Default::default() };
        c.call(1, d.into()).await?;
    }
    println!("ready");
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    for i in 0..args.hold_queues {
        c.call(1, QueueDelete { queue: format!("{base}-hold-{i}").into(), ..Default::default() }.into()).await?;
    }
    Ok(())
}
