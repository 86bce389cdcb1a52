//! Fuzzing a whole connection: valid client sessions (handshake, channels, declares, bindings,
//! publishes with content, consumes, acks, transactions, confirms, closes) mutated at the byte level
//! (bit flips, interesting values, inserted, deleted, duplicated and truncated ranges, huge length
//! fields), plus pure random byte streams, each sent from the first byte of a fresh TCP connection.
//!
//! Checked: the broker never panics, a well-behaved connection keeps round-tripping throughout, and
//! every fuzzed connection ends (the open-connection count returns to the canary alone).
//!
//! CI runs a short fixed-seed pass (`WARREN_FUZZ_CASES`, default 1500). A long run by hand:
//! `WARREN_FUZZ_SECONDS=600 WARREN_FUZZ_SEED=$RANDOM cargo test --release -p warren --test
//! fuzz_connection -- --nocapture`. Coverage-guided fuzzing (cargo-fuzz) needs a nightly compiler,
//! which this project does not require; this harness runs on stable.
mod common;
use bytes::BytesMut;
use common::TestBroker;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_protocol::constants::PROTOCOL_HEADER;
use warren_protocol::method::*;
use warren_protocol::{fast, frame, FieldTable, FieldValue, LongStr, Method, ShortStr};

static PANICKED: AtomicBool = AtomicBool::new(false);

fn s(x: &str) -> ShortStr {
    ShortStr::from(x.to_string())
}

/// One valid session, as the bytes a client would send (it does not wait for replies: the broker
/// reads them in order either way).
fn valid_session(rng: &mut impl Rng) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.extend_from_slice(PROTOCOL_HEADER);
    let mut caps = FieldTable::new();
    caps.insert("authentication_failure_close", FieldValue::Bool(true));
    caps.insert("consumer_cancel_notify", FieldValue::Bool(true));
    let mut props = FieldTable::new();
    props.insert("capabilities", FieldValue::Table(caps));
    let m = |b: &mut BytesMut, ch: u16, m: Method| frame::encode_method(b, ch, &m);
    m(
        &mut b,
        0,
        ConnectionStartOk {
            client_properties: props,
            mechanism: s("PLAIN"),
            response: LongStr::from("\0guest\0guest".to_string()),
            locale: s("en_US"),
        }
        .into(),
    );
    m(&mut b, 0, ConnectionTuneOk { channel_max: 16, frame_max: 4096, heartbeat: 0 }.into());
    m(&mut b, 0, ConnectionOpen { virtual_host: s("/"), ..Default::default() }.into());
    let channels = rng.random_range(1..4u16);
    for ch in 1..=channels {
        m(&mut b, ch, ChannelOpen::default().into());
        let q = format!("fz-{}", rng.random_range(0..8));
        let x = format!("fzx-{}", rng.random_range(0..4));
        for _ in 0..rng.random_range(1..12) {
            match rng.random_range(0..14) {
                0 => m(&mut b, ch, QueueDeclare { queue: s(&q), auto_delete: true, ..Default::default() }.into()),
                1 => m(
                    &mut b,
                    ch,
                    ExchangeDeclare {
                        exchange: s(&x),
                        kind: s(["direct", "topic", "fanout", "headers"][rng.random_range(0..4)]),
                        auto_delete: true,
                        ..Default::default()
                    }
                    .into(),
                ),
                2 => m(
                    &mut b,
                    ch,
                    QueueBind { queue: s(&q), exchange: s(&x), routing_key: s("a.b"), ..Default::default() }.into(),
                ),
                3..=5 => {
                    let body: Vec<u8> = (0..rng.random_range(0..6000)).map(|_| rng.random()).collect();
                    let exchange = if rng.random_bool(0.5) { String::new() } else { x.clone() };
                    m(
                        &mut b,
                        ch,
                        BasicPublish {
                            exchange: s(&exchange),
                            routing_key: s(&q),
                            mandatory: rng.random_bool(0.3),
                            ..Default::default()
                        }
                        .into(),
                    );
                    let props = warren_protocol::BasicProperties {
                        delivery_mode: Some(rng.random_range(1..3)),
                        priority: rng.random_bool(0.2).then(|| rng.random()),
                        expiration: rng.random_bool(0.2).then(|| s(&rng.random_range(0..100u32).to_string())),
                        ..Default::default()
                    };
                    fast::header(&mut b, ch, body.len() as u64, &props.to_bytes());
                    fast::body(&mut b, ch, &body, 4096);
                }
                6 => m(
                    &mut b,
                    ch,
                    BasicConsume { queue: s(&q), no_ack: rng.random_bool(0.5), ..Default::default() }.into(),
                ),
                7 => {
                    m(&mut b, ch, BasicGet { queue: s(&q), no_ack: rng.random_bool(0.5), ..Default::default() }.into())
                }
                8 => m(
                    &mut b,
                    ch,
                    BasicAck { delivery_tag: rng.random_range(0..4), multiple: rng.random_bool(0.5) }.into(),
                ),
                9 => m(&mut b, ch, BasicQos { prefetch_count: rng.random_range(0..10), ..Default::default() }.into()),
                10 => m(&mut b, ch, ConfirmSelect::default().into()),
                11 => m(&mut b, ch, TxSelect.into()),
                12 => {
                    m(&mut b, ch, BasicNack { delivery_tag: 0, multiple: true, requeue: rng.random_bool(0.5) }.into())
                }
                _ => m(&mut b, ch, QueuePurge { queue: s(&q), ..Default::default() }.into()),
            }
        }
        if rng.random_bool(0.5) {
            m(&mut b, ch, ChannelClose { reply_code: 200, reply_text: s("bye"), class_id: 0, method_id: 0 }.into());
        }
    }
    m(&mut b, 0, ConnectionClose { reply_code: 200, reply_text: s("bye"), class_id: 0, method_id: 0 }.into());
    b.to_vec()
}

/// Byte-level mutations, a few per case.
fn mutate(rng: &mut impl Rng, data: &mut Vec<u8>) {
    const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xfe, 0xff, 0xce, 0x08];
    for _ in 0..rng.random_range(1..5) {
        if data.is_empty() {
            data.push(rng.random());
        }
        let at = rng.random_range(0..data.len());
        match rng.random_range(0..8) {
            0 => data[at] ^= 1 << rng.random_range(0..8),
            1 => data[at] = INTERESTING[rng.random_range(0..INTERESTING.len())],
            2 => {
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                data.splice(at..at, bytes);
            }
            3 => {
                let end = (at + rng.random_range(1..64)).min(data.len());
                data.drain(at..end);
            }
            4 => {
                let end = (at + rng.random_range(1..256)).min(data.len());
                let copy = data[at..end].to_vec();
                let to = rng.random_range(0..=data.len());
                data.splice(to..to, copy);
            }
            5 => data.truncate(at),
            6 => {
                // A huge 32- or 64-bit length somewhere (frame size, body size, table length).
                let big: [u8; 4] = [0x7f, 0xff, 0xff, rng.random()];
                for (i, v) in big.iter().enumerate() {
                    if let Some(d) = data.get_mut(at + i) {
                        *d = *v;
                    }
                }
            }
            _ => {
                let v = rng.random();
                let end = (at + rng.random_range(1..32)).min(data.len());
                data[at..end].fill(v);
            }
        }
    }
}

/// Send one case on a fresh connection, in random-sized writes, reading whatever comes back until
/// the broker closes or a short time passes.
async fn run_case(addr: std::net::SocketAddr, data: Vec<u8>, seed: u64) {
    let Ok(sock) = tokio::net::TcpStream::connect(addr).await else { return };
    let (mut rd, mut wr) = sock.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut at = 0;
    while at < data.len() {
        let n = rng.random_range(1..=4096).min(data.len() - at);
        if wr.write_all(&data[at..at + n]).await.is_err() {
            break;
        }
        at += n;
    }
    let _ = reader.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_sessions_never_panic_or_leak_connections() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        prev(info);
    }));
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seed = env("WARREN_FUZZ_SEED").unwrap_or(0x00f0_220c);
    let seconds = env("WARREN_FUZZ_SECONDS");
    let cases = env("WARREN_FUZZ_CASES").unwrap_or(1500);
    let b = TestBroker::start().await;
    let broker = b.handle.as_ref().expect("running").broker.clone();
    let mut canary = b.raw().await;
    canary.open_channel(1).await;
    canary.declare(1, "canary").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut done = 0u64;
    let mut set = tokio::task::JoinSet::new();
    loop {
        let more = match seconds {
            Some(s) => started.elapsed() < Duration::from_secs(s),
            None => done < cases,
        };
        if !more {
            break;
        }
        let data = if rng.random_bool(0.1) {
            (0..rng.random_range(0..2048)).map(|_| rng.random()).collect()
        } else {
            let mut d = valid_session(&mut rng);
            // One case in ten stays valid: the harness itself must not break good sessions.
            if !rng.random_bool(0.1) {
                mutate(&mut rng, &mut d);
            }
            d
        };
        set.spawn(run_case(b.addr, data, rng.random()));
        done += 1;
        while set.len() >= 64 {
            let _ = set.join_next().await;
        }
        if done.is_multiple_of(100) {
            canary.publish(1, "", "canary", b"ping").await;
            assert_eq!(canary.declare_passive(1, "canary").await as u64, done / 100, "canary lost a message");
            assert!(!PANICKED.load(Ordering::SeqCst), "the broker panicked on client input");
        }
    }
    while set.join_next().await.is_some() {}
    assert!(!PANICKED.load(Ordering::SeqCst), "the broker panicked on client input");
    // Every fuzzed connection ended: only the canary is still open.
    common::eventually(Duration::from_secs(10), || async {
        (broker.open_connections.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    eprintln!(
        "fuzz: {done} sessions (seed {seed:#x}) in {:.1} s, {:.0} sessions/s, no panic, no leaked connection",
        started.elapsed().as_secs_f64(),
        done as f64 / started.elapsed().as_secs_f64()
    );
    canary.close().await;
    b.stop().await;
}
