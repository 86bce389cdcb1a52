//! The hot-path workload shared by the regression guards that do not flake (allocations counted
//! by dhat, instructions counted by callgrind): a raw publisher and a raw consumer on one queue,
//! 16-byte messages in large writes, prefetch 1000, `multiple` ack every 500.
use super::raw::Raw;
use super::{s, TestBroker};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_protocol::method::*;
use warren_protocol::{fast, frame, FrameType, Method};

/// A publisher and a consumer (prefetch 1000, consuming from `queue`) on channel 1 of two raw
/// connections to `b`.
pub async fn connect(b: &TestBroker, queue: &str) -> (Raw, Raw) {
    let mut publisher = b.raw().await;
    publisher.open_channel(1).await;
    let mut consumer = b.raw().await;
    consumer.open_channel(1).await;
    consumer.declare(1, queue).await;
    assert!(matches!(
        consumer.call(1, BasicQos { prefetch_count: 1000, ..Default::default() }).await,
        Method::BasicQosOk(_)
    ));
    assert!(matches!(
        consumer.call(1, BasicConsume { queue: s(queue), consumer_tag: s("c"), ..Default::default() }).await,
        Method::BasicConsumeOk(_)
    ));
    (publisher, consumer)
}

/// Publish `n` 16-byte messages to `queue` in large writes, and consume them on `consumer`
/// (prefetch 1000, `multiple` ack every 500), without allocating per message in the client.
pub async fn run(publisher: &mut Raw, consumer: &mut Raw, queue: &str, n: u64) {
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
