//! Performance regression guard that does not flake: heap allocations per message on the hot path
//! (publish -> route -> enqueue -> deliver -> ack), counted by dhat through real sockets. Timings
//! vary from run to run; allocation counts do not, so a change that adds an allocation (or a copy
//! into a fresh buffer) per message fails here, whatever the machine's load.
//!
//! Its own test binary (the counting allocator is global) with a single test.
mod common;
use bytes::BytesMut;
use common::{s, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_protocol::method::*;
use warren_protocol::{fast, frame, FrameType, Method};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Messages per measured run.
const N: u64 = 20_000;
/// Allocations per message the broker may make today (measured: see the assertion's message), with
/// room for amortised growth of buffers; one more per message is a regression.
const MAX_ALLOCATIONS_PER_MESSAGE: f64 = 1.5;

/// Publish `n` 16-byte messages to `queue` in large writes, and consume them on `consumer`
/// (prefetch 1000, `multiple` ack every 500), without allocating per message in the client.
async fn run(publisher: &mut common::raw::Raw, consumer: &mut common::raw::Raw, queue: &str, n: u64) {
    let mut one = BytesMut::new();
    frame::encode_method(&mut one, 1, &BasicPublish { routing_key: s(queue), ..Default::default() }.into());
    fast::header(&mut one, 1, 16, &[0, 0]);
    fast::body(&mut one, 1, &[7u8; 16], 131072);
    let mut batch = BytesMut::new();
    for _ in 0..500 {
        batch.extend_from_slice(&one);
    }
    let mut ack = BytesMut::with_capacity(64);
    let (mut sent, mut got, mut unacked, mut last_tag) = (0u64, 0u64, 0u64, 0u64);
    while got < n {
        if sent < n && sent < got + 2000 {
            publisher.sock.write_all(&batch).await.expect("publish");
            sent += 500;
        }
        while let Ok(Some(f)) = frame::decode(&mut consumer.buf, 0) {
            if f.kind == FrameType::Method && f.payload[..4] == [0, 60, 0, 60] {
                let at = 5 + f.payload[4] as usize;
                last_tag = u64::from_be_bytes(f.payload[at..at + 8].try_into().expect("tag"));
                got += 1;
                unacked += 1;
            }
        }
        if unacked >= 500 {
            ack.clear();
            fast::ack(&mut ack, 1, last_tag, true);
            consumer.sock.write_all(&ack).await.expect("ack");
            unacked = 0;
        }
        if got < n && sent >= (got + 2000).min(n) {
            if consumer.buf.capacity() - consumer.buf.len() < 64 * 1024 {
                consumer.buf.reserve(256 * 1024);
            }
            let r = tokio::time::timeout(std::time::Duration::from_secs(10), consumer.sock.read_buf(&mut consumer.buf));
            assert!(r.await.expect("deliveries keep coming").expect("read") > 0, "consumer connection closed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_path_allocations_per_message_stay_bounded() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let b = TestBroker::start().await;
    let mut publisher = b.raw().await;
    publisher.open_channel(1).await;
    let mut consumer = b.raw().await;
    consumer.open_channel(1).await;
    consumer.declare(1, "hot").await;
    assert!(matches!(
        consumer.call(1, BasicQos { prefetch_count: 1000, ..Default::default() }).await,
        Method::BasicQosOk(_)
    ));
    assert!(matches!(
        consumer.call(1, BasicConsume { queue: s("hot"), consumer_tag: s("c"), ..Default::default() }).await,
        Method::BasicConsumeOk(_)
    ));
    // Warm up: buffers, maps and queues reach their working sizes.
    run(&mut publisher, &mut consumer, "hot", N).await;
    let before = dhat::HeapStats::get();
    run(&mut publisher, &mut consumer, "hot", N).await;
    let after = dhat::HeapStats::get();
    let per_message = (after.total_blocks - before.total_blocks) as f64 / N as f64;
    let bytes_per_message = (after.total_bytes - before.total_bytes) as f64 / N as f64;
    eprintln!("hot path: {per_message:.2} allocations, {bytes_per_message:.0} bytes allocated per message");
    assert!(
        per_message <= MAX_ALLOCATIONS_PER_MESSAGE,
        "{per_message:.2} allocations per message (limit {MAX_ALLOCATIONS_PER_MESSAGE}); {bytes_per_message:.0} bytes"
    );
}
