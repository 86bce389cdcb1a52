//! Delivery guarantees through a real socket: transactions, confirm/tx exclusivity, single active
//! consumer, direct reply-to, flow control.
mod common;
use common::raw::Raw;
use common::{s, setup_queue, unique, TestBroker};
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::properties::EMPTY_PROPERTIES;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, Method};

#[tokio::test]
async fn tx_publishes_and_acks_wait_for_commit() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "tx").await;
    r.publish(1, "", &q, b"pre").await;
    assert!(matches!(r.call(1, TxSelect).await, Method::TxSelectOk(_)));
    r.publish(1, "", &q, b"in-tx").await;
    // Not visible before commit (the pre-tx message is).
    assert_eq!(r.declare(1, &q).await.message_count, 1);
    assert!(matches!(r.call(1, TxCommit).await, Method::TxCommitOk(_)));
    assert_eq!(r.declare(1, &q).await.message_count, 2);
    // Acks inside a transaction: applied at commit, undone by rollback.
    let m = r.call(1, BasicGet { queue: s(&q), ..Default::default() }).await;
    let d = r.content_after(m).await;
    r.send(1, BasicAck { delivery_tag: d.tag(), multiple: false }).await;
    r.publish(1, "", &q, b"rolled-back").await;
    assert!(matches!(r.call(1, TxRollback).await, Method::TxRollbackOk(_)));
    assert_eq!(r.declare(1, &q).await.message_count, 1, "rolled-back publish never enqueued");
    // The ack was rolled back: the message is still unacked and comes back when the channel closes.
    r.call(1, ChannelClose::default()).await;
    r.open_channel(1).await;
    assert_eq!(r.declare(1, &q).await.message_count, 2);
    // Ack + commit settles for good.
    r.call(1, TxSelect).await;
    let m = r.call(1, BasicGet { queue: s(&q), ..Default::default() }).await;
    let d = r.content_after(m).await;
    r.send(1, BasicAck { delivery_tag: d.tag(), multiple: false }).await;
    r.call(1, TxCommit).await;
    r.call(1, ChannelClose::default()).await;
    r.open_channel(1).await;
    assert_eq!(r.declare(1, &q).await.message_count, 1);
    b.stop().await;
}

#[tokio::test]
async fn tx_errors() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "txerr").await;
    r.send(1, TxCommit).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
    r.open_channel(1).await;
    r.call(1, ConfirmSelect::default()).await;
    r.send(1, TxSelect).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
    r.open_channel(1).await;
    r.call(1, TxSelect).await;
    r.send(1, ConfirmSelect::default()).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
    r.open_channel(1).await;
    r.call(1, TxSelect).await;
    r.send(1, BasicAck { delivery_tag: 5, multiple: false }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED, "unknown tag fails at once");
    r.open_channel(1).await;
    r.call(1, TxSelect).await;
    r.publish(1, "missing-exchange", "k", b"x").await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, NOT_FOUND, "routing errors at publish time");
    let _ = q;
    b.stop().await;
}

#[tokio::test]
async fn single_active_consumer_fails_over_in_registration_order() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let q = unique("sac");
    let mut args = FieldTable::new();
    args.insert("x-single-active-consumer", FieldValue::Bool(true));
    r.call(1, QueueDeclare { queue: s(&q), arguments: args, ..Default::default() }).await;
    for tag in ["first", "second", "third"] {
        r.call(1, BasicConsume { queue: s(&q), consumer_tag: s(tag), no_ack: true, ..Default::default() }).await;
    }
    let tags_of = |ds: &[common::raw::Delivery]| -> Vec<String> {
        ds.iter()
            .map(|d| match &d.method {
                Method::BasicDeliver(x) => x.consumer_tag.to_string(),
                _ => String::new(),
            })
            .collect()
    };
    for i in 0..3u8 {
        r.publish(1, "", &q, &[i]).await;
    }
    assert_eq!(tags_of(&r.barrier(1, &q).await), ["first", "first", "first"]);
    r.call(1, BasicCancel { consumer_tag: "first".into(), no_wait: false }).await;
    r.publish(1, "", &q, b"x").await;
    assert_eq!(tags_of(&r.barrier(1, &q).await), ["second"]);
    // A bad value for the argument is a 406.
    let mut bad = FieldTable::new();
    bad.insert("x-single-active-consumer", FieldValue::LongStr("yes".into()));
    r.send(1, QueueDeclare { queue: s(&unique("sacbad")), arguments: bad, ..Default::default() }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
    b.stop().await;
}

/// Publishes that arrive in one read with other frames: Warren hands a queue's one consumer the
/// messages of a run of publishes at the end of the run, and every reply or close that follows
/// them in the read still comes after their deliveries (a passive declare is a barrier), on the
/// publishing channel and on another one, a channel.close for a later bad publish and a
/// tx.commit-ok included.
#[tokio::test]
async fn replies_and_closes_in_the_same_read_follow_the_deliveries() {
    use bytes::BytesMut;
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.open_channel(2).await;
    let q = unique("runs");
    r.declare(1, &q).await;
    r.call(1, BasicConsume { queue: s(&q), consumer_tag: s("c"), no_ack: true, ..Default::default() }).await;
    let bodies = |ds: &[common::raw::Delivery]| -> Vec<Vec<u8>> { ds.iter().map(|d| d.body.to_vec()).collect() };
    let passive = |q: &str| -> Method { QueueDeclare { queue: s(q), passive: true, ..Default::default() }.into() };
    for ch in [1u16, 2] {
        // Three publishes on `ch`, then a passive declare on the other channel, in one write.
        let other = 3 - ch;
        let mut w = BytesMut::new();
        for i in 0..3u8 {
            w.extend_from_slice(&r.publish_frames(ch, "", &q, &[ch as u8, i], EMPTY_PROPERTIES, false));
        }
        warren_protocol::frame::encode_method(&mut w, other, &passive(&q));
        r.send_bytes(&w).await;
        let (reply, got) = r.collect_until_method().await;
        assert!(matches!(reply, Method::QueueDeclareOk(_)), "got {reply:?}");
        assert_eq!(bodies(&got), [[ch as u8, 0], [ch as u8, 1], [ch as u8, 2]], "deliveries before the reply");
    }
    // Two publishes, then one to a missing exchange (a 404 that closes channel 2): the channel.close
    // comes after the two deliveries.
    let mut w = BytesMut::new();
    for i in 0..2u8 {
        w.extend_from_slice(&r.publish_frames(2, "", &q, &[9, i], EMPTY_PROPERTIES, false));
    }
    w.extend_from_slice(&r.publish_frames(2, "no-such-exchange", &q, b"x", EMPTY_PROPERTIES, false));
    r.send_bytes(&w).await;
    let (close, got) = r.collect_until_method().await;
    assert!(matches!(close, Method::ChannelClose(ref c) if c.reply_code == NOT_FOUND), "got {close:?}");
    assert_eq!(bodies(&got), [[9, 0], [9, 1]], "deliveries before the channel.close");
    r.send(2, ChannelCloseOk).await;
    // A transaction's publishes and its commit in one write: delivered before the commit-ok.
    r.open_channel(2).await;
    r.call(2, TxSelect).await;
    let mut w = BytesMut::new();
    for i in 0..2u8 {
        w.extend_from_slice(&r.publish_frames(2, "", &q, &[7, i], EMPTY_PROPERTIES, false));
    }
    warren_protocol::frame::encode_method(&mut w, 2, &TxCommit.into());
    r.send_bytes(&w).await;
    let (ok, got) = r.collect_until_method().await;
    assert!(matches!(ok, Method::TxCommitOk(_)), "got {ok:?}");
    assert_eq!(bodies(&got), [[7, 0], [7, 1]], "deliveries before the tx.commit-ok");
    b.stop().await;
}

/// Publishes whose outcome nobody waits for are enqueued together at the end of a read's run of
/// publishes (one queue lock per run): within one read, a channel's plain, mandatory and
/// confirmed publishes, routed directly and through an exchange, must still reach the queue in
/// the order they were sent, and a basic.get or queue.delete that follows them in the same read
/// must see all of them.
#[tokio::test]
async fn publishes_in_one_read_keep_their_order_whatever_their_flags() {
    use bytes::BytesMut;
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.open_channel(2).await;
    r.call(2, ConfirmSelect { no_wait: false }).await;
    let q = unique("staged");
    r.declare(1, &q).await;
    let x = unique("staged-x");
    let m = ExchangeDeclare { exchange: s(&x), kind: "fanout".into(), ..Default::default() };
    assert!(matches!(r.call(1, m).await, Method::ExchangeDeclareOk(_)));
    let m = QueueBind { queue: s(&q), exchange: s(&x), ..Default::default() };
    assert!(matches!(r.call(1, m).await, Method::QueueBindOk(_)));
    // (channel, exchange, mandatory) of each publish, its body its index.
    let sends: [(u16, &str, bool); 9] = [
        (1, "", false),
        (1, "", false),
        (1, "", true),
        (1, &x, false),
        (2, "", false),
        (1, "", false),
        (1, &x, false),
        (1, &x, true),
        (1, "", false),
    ];
    let mut w = BytesMut::new();
    for (i, (ch, ex, mandatory)) in sends.iter().enumerate() {
        w.extend_from_slice(&r.publish_frames(*ch, ex, &q, &[i as u8], EMPTY_PROPERTIES, *mandatory));
    }
    warren_protocol::frame::encode_method(
        &mut w,
        1,
        &BasicGet { queue: s(&q), no_ack: true, ..Default::default() }.into(),
    );
    r.send_bytes(&w).await;
    // The get-ok with the first message, and channel 2's confirm (before or after it).
    let (mut got, mut confirmed) = (Vec::new(), false);
    while got.is_empty() || !confirmed {
        match r.recv_method().await {
            (2, Method::BasicAck(_)) => confirmed = true,
            (1, m @ Method::BasicGetOk(_)) => {
                let Method::BasicGetOk(ok) = &m else { unreachable!() };
                assert_eq!(ok.message_count, 8, "the get after nine publishes in the same read saw all of them");
                got.push(r.content_after(m).await.body.to_vec());
            }
            other => panic!("expected basic.get-ok and basic.ack, got {other:?}"),
        }
    }
    for _ in 1..9 {
        let m = r.call(1, BasicGet { queue: s(&q), no_ack: true, ..Default::default() }).await;
        got.push(r.content_after(m).await.body.to_vec());
    }
    let want: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i]).collect();
    assert_eq!(got, want, "the queue holds the publishes in the order they were sent");
    // Publishes then the queue's deletion, in one write: deleted with all of them.
    let mut w = BytesMut::new();
    for i in 0..5u8 {
        w.extend_from_slice(&r.publish_frames(1, &x, "", &[i], EMPTY_PROPERTIES, false));
    }
    warren_protocol::frame::encode_method(&mut w, 1, &QueueDelete { queue: s(&q), ..Default::default() }.into());
    r.send_bytes(&w).await;
    match r.recv_method().await {
        (1, Method::QueueDeleteOk(ok)) => assert_eq!(ok.message_count, 5, "deleted with the publishes before it"),
        other => panic!("expected queue.delete-ok, got {other:?}"),
    }
    b.stop().await;
}

/// A read of more publishes than one staged run holds (256): the runs reach the queue in order,
/// and a passive declare in the same read counts all of them.
#[tokio::test]
async fn a_read_of_many_publishes_reaches_the_queue_in_order() {
    use bytes::BytesMut;
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let q = unique("staged-many");
    r.declare(1, &q).await;
    const N: u16 = 1000;
    let mut w = BytesMut::new();
    for i in 0..N {
        w.extend_from_slice(&r.publish_frames(1, "", &q, &i.to_be_bytes(), EMPTY_PROPERTIES, false));
    }
    let passive = QueueDeclare { queue: s(&q), passive: true, ..Default::default() };
    warren_protocol::frame::encode_method(&mut w, 1, &passive.into());
    r.send_bytes(&w).await;
    match r.recv_method().await {
        (1, Method::QueueDeclareOk(ok)) => assert_eq!(ok.message_count, N as u32, "counted after every publish"),
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    let ok = r.call(1, BasicConsume { queue: s(&q), consumer_tag: s("c"), no_ack: true, ..Default::default() }).await;
    assert!(matches!(ok, Method::BasicConsumeOk(_)), "got {ok:?}");
    let mut got = Vec::new();
    // Each barrier sees what was delivered before it; a bounded number of them (nothing lost
    // means the first few suffice).
    for _ in 0..50 {
        if got.len() >= N as usize {
            break;
        }
        got.extend(r.barrier(1, &q).await.iter().map(|d| u16::from_be_bytes([d.body[0], d.body[1]])));
    }
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "in publish order");
    b.stop().await;
}

#[tokio::test]
async fn direct_reply_to_rpc() {
    let b = TestBroker::start().await;
    let (mut server, rpc_q) = setup_queue(&b, "rpc").await;
    let mut client = b.raw().await;
    client.open_channel(1).await;
    // Publishing with reply_to before consuming from the pseudo-queue is refused.
    let req = BasicProperties {
        reply_to: Some("amq.rabbitmq.reply-to".into()),
        correlation_id: Some("c1".into()),
        ..Default::default()
    };
    client.publish_props(1, "", &rpc_q, b"early", req.clone()).await;
    assert_eq!(client.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
    client.open_channel(1).await;
    // Acked consumption of replies is refused.
    client.send(1, BasicConsume { queue: "amq.rabbitmq.reply-to".into(), no_ack: false, ..Default::default() }).await;
    assert_eq!(client.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
    client.open_channel(1).await;
    let passive = QueueDeclare { queue: "amq.rabbitmq.reply-to".into(), passive: true, ..Default::default() };
    assert!(matches!(client.call(1, passive).await, Method::QueueDeclareOk(_)));
    let ok = client
        .call(
            1,
            BasicConsume {
                queue: "amq.rabbitmq.reply-to".into(),
                consumer_tag: "replies".into(),
                no_ack: true,
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(ok, Method::BasicConsumeOk(_)));
    client.publish_props(1, "", &rpc_q, b"ping", req).await;
    // The server sees a generated reply name and answers to it on the default exchange.
    let m = server.call(1, BasicGet { queue: s(&rpc_q), no_ack: true, ..Default::default() }).await;
    let d = server.content_after(m).await;
    let props = BasicProperties::decode(d.properties).unwrap();
    let reply_to = props.reply_to.unwrap().to_string();
    assert!(reply_to.starts_with("amq.rabbitmq.reply-to."), "{reply_to}");
    let answer = BasicProperties { correlation_id: Some("c1".into()), ..Default::default() };
    server.publish_props(1, "", &reply_to, b"pong", answer).await;
    let reply = client.recv_content().await;
    let Method::BasicDeliver(del) = &reply.method else { panic!() };
    assert_eq!(del.consumer_tag.to_string(), "replies");
    assert_eq!(&reply.body[..], b"pong");
    // Once the requester's channel is gone, a mandatory reply is returned.
    client.call(1, ChannelClose::default()).await;
    server.publish_full(1, "", &reply_to, b"late", &[0, 0], true).await;
    assert!(matches!(server.recv_content().await.method, Method::BasicReturn(_)));
    b.stop().await;
}

/// A broker whose memory alarm goes off past 64 KiB held for messages.
async fn broker_with_a_64_kib_watermark() -> TestBroker {
    let cfg = warren::config::Config {
        memory_high_watermark: warren::config::Watermark::Absolute(64 * 1024),
        ..warren::config::Config::loopback(0)
    };
    TestBroker::with_config(cfg).await
}

/// The next method `publisher` gets is the memory alarm's connection.blocked.
async fn expect_blocked_low_on_memory(publisher: &mut Raw) {
    match publisher.recv_method().await {
        (0, Method::ConnectionBlocked(bl)) => assert_eq!(bl.reason.to_string(), "low on memory"),
        other => panic!("expected connection.blocked, got {other:?}"),
    }
}

#[tokio::test]
async fn memory_alarm_blocks_publishers_until_consumers_drain() {
    let b = broker_with_a_64_kib_watermark().await;
    let (mut publisher, q) = setup_queue(&b, "alarm").await;
    let body = vec![7u8; 1024];
    for _ in 0..100 {
        publisher.publish(1, "", &q, &body).await;
    }
    // Over the watermark: the publisher is told, and from then on its frames are not read.
    expect_blocked_low_on_memory(&mut publisher).await;
    for _ in 0..10 {
        publisher.publish(1, "", &q, &body).await;
    }
    let mut consumer = b.raw().await;
    consumer.open_channel(1).await;
    // The alarm fired somewhere past 64 messages; from then on nothing more is read.
    let held = consumer.declare(1, &q).await.message_count;
    assert!((64..=100).contains(&held), "{held}");
    publisher.publish(1, "", &q, &body).await;
    assert_eq!(consumer.declare(1, &q).await.message_count, held, "blocked publisher not read");
    // A consumer drains the queue: the alarm clears, the publisher is unblocked and everything it
    // sent arrives.
    consumer.call(1, BasicConsume { queue: s(&q), no_ack: true, ..Default::default() }).await;
    for _ in 0..held {
        consumer.recv_content().await;
    }
    match publisher.recv_method().await {
        (0, Method::ConnectionUnblocked(_)) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    for _ in held..111 {
        assert_eq!(consumer.recv_content().await.body.len(), 1024);
    }
    b.stop().await;
}

#[tokio::test]
async fn messages_buffered_in_an_uncommitted_transaction_count_against_the_memory_watermark() {
    // 100 KiB published in a transaction never committed, under a 64 KiB watermark: the
    // publisher is blocked (the buffered messages used to count nothing, and a client could hold
    // any amount that way). Once it goes away its buffer is dropped and the alarm clears.
    let b = broker_with_a_64_kib_watermark().await;
    let (mut publisher, q) = setup_queue(&b, "alarm-tx").await;
    assert!(matches!(publisher.call(1, TxSelect).await, Method::TxSelectOk(_)));
    let body = vec![7u8; 1024];
    for _ in 0..100 {
        publisher.publish(1, "", &q, &body).await;
    }
    expect_blocked_low_on_memory(&mut publisher).await;
    let mut consumer = b.raw().await;
    consumer.open_channel(1).await;
    assert_eq!(consumer.declare(1, &q).await.message_count, 0, "nothing committed, nothing queued");
    drop(publisher);
    // A new publisher's message goes through: the alarm cleared with the old one's buffer.
    let mut next = b.raw().await;
    next.open_channel(1).await;
    next.publish(1, "", &q, b"after").await;
    consumer.call(1, BasicConsume { queue: s(&q), no_ack: true, ..Default::default() }).await;
    assert_eq!(&consumer.recv_content().await.body[..], b"after");
    b.stop().await;
}

#[tokio::test]
async fn the_memory_alarm_counts_header_tables_not_only_bodies() {
    // 100 messages of a 1-byte body and a 2 KiB header table under a 64 KiB watermark: about
    // 220 KB held in memory. Counting bodies and a fixed overhead alone (25 KB) the alarm never
    // fired, and a queue of header-heavy messages (Celery's, say) grew past the watermark unseen.
    let b = broker_with_a_64_kib_watermark().await;
    let (mut publisher, q) = setup_queue(&b, "alarm-headers").await;
    let mut headers = FieldTable::default();
    headers.insert("trace", FieldValue::LongStr(vec![b'h'; 2048].into()));
    let props = BasicProperties { headers: Some(headers), ..Default::default() };
    for _ in 0..100 {
        publisher.publish_props(1, "", &q, b"x", props.clone()).await;
    }
    expect_blocked_low_on_memory(&mut publisher).await;
    // Drained, the alarm clears and every message arrives with its headers.
    let mut consumer = b.raw().await;
    consumer.open_channel(1).await;
    consumer.call(1, BasicConsume { queue: s(&q), no_ack: true, ..Default::default() }).await;
    let mut got = 0;
    while got < 100 {
        let d = consumer.recv_content().await;
        let p = BasicProperties::decode(d.properties).expect("properties");
        assert_eq!((&d.body[..], p.headers), (&b"x"[..], props.headers.clone()));
        got += 1;
    }
    match publisher.recv_method().await {
        (0, Method::ConnectionUnblocked(_)) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn consumer_ack_timeout_cancels_and_requeues() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let q = unique("ack-timeout");
    let mut args = FieldTable::new();
    args.insert("x-consumer-timeout", FieldValue::I32(300));
    r.call(1, QueueDeclare { queue: s(&q), arguments: args, ..Default::default() }).await;
    r.publish(1, "", &q, b"slow").await;
    r.call(1, BasicConsume { queue: s(&q), consumer_tag: "lazy".into(), ..Default::default() }).await;
    let d = r.recv_content().await;
    assert_eq!(&d.body[..], b"slow");
    // Never acked: the broker cancels the consumer (we declared consumer_cancel_notify) and requeues.
    match r.recv_method().await {
        (1, Method::BasicCancel(c)) => assert_eq!(c.consumer_tag.to_string(), "lazy"),
        other => panic!("expected basic.cancel, got {other:?}"),
    }
    let Method::QueueDeclareOk(ok) =
        r.call(1, QueueDeclare { queue: s(&q), passive: true, ..Default::default() }).await
    else {
        panic!()
    };
    assert_eq!((ok.message_count, ok.consumer_count), (1, 0));
    b.stop().await;
}

#[tokio::test]
async fn consumer_ack_timeout_without_cancel_notify_closes_the_channel() {
    let cfg = warren::config::Config {
        consumer_timeout: Some(std::time::Duration::from_millis(300)),
        ..warren::config::Config::loopback(0)
    };
    let b = TestBroker::with_config(cfg).await;
    let mut r =
        Raw::connect_with(b.addr, common::raw::Options { capabilities: false, ..Default::default() }).await.unwrap();
    r.open_channel(1).await;
    let q = unique("ack-timeout-global");
    r.declare(1, &q).await;
    r.publish(1, "", &q, b"slow").await;
    r.call(1, BasicConsume { queue: s(&q), ..Default::default() }).await;
    r.recv_content().await;
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, PRECONDITION_FAILED);
    assert!(c.reply_text.to_string().contains("delivery acknowledgement on channel 1 timed out"), "{}", c.reply_text);
    r.open_channel(1).await;
    assert_eq!(r.declare(1, &q).await.message_count, 1, "requeued on channel close");
    b.stop().await;
}
