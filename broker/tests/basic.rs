//! basic.* through a real socket: publish/consume/get, qos, ack/nack/reject, recover, requeue
//! order, returns, confirms, and the errors RabbitMQ gives.
mod common;
use common::raw::Raw;
use common::{s, setup_queue, unique, TestBroker};
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, Method};

async fn get(r: &mut Raw, q: &str) -> common::raw::Delivery {
    let m = r.call(1, BasicGet { queue: s(q), ..Default::default() }).await;
    r.content_after(m).await
}

async fn consume(r: &mut Raw, q: &str, tag: &str, no_ack: bool) -> String {
    match r.call(1, BasicConsume { queue: s(q), consumer_tag: s(tag), no_ack, ..Default::default() }).await {
        Method::BasicConsumeOk(ok) => ok.consumer_tag.to_string(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn publish_consume_ack_with_properties_passed_through() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "pc").await;
    let mut headers = FieldTable::new();
    headers.insert("b", FieldValue::I32(1));
    headers.insert("a", FieldValue::LongStr("x".into()));
    headers.insert("b", FieldValue::Void); // duplicate key, kept as sent
    let props = BasicProperties {
        content_type: Some("text/plain".into()),
        headers: Some(headers),
        delivery_mode: Some(2),
        message_id: Some("m-1".into()),
        ..Default::default()
    };
    let raw_props = props.to_bytes();
    r.publish_props(1, "", &q, b"hello", props).await;
    let tag = consume(&mut r, &q, "", false).await;
    assert!(tag.starts_with("amq.ctag-"));
    let d = r.recv_content().await;
    let Method::BasicDeliver(ref del) = d.method else { panic!() };
    assert_eq!(del.consumer_tag.to_string(), tag);
    assert_eq!((del.delivery_tag, del.redelivered), (1, false));
    assert_eq!(del.routing_key.to_string(), q);
    assert_eq!(&d.body[..], b"hello");
    assert_eq!(d.properties, raw_props, "properties must pass through byte for byte");
    r.send(1, BasicAck { delivery_tag: 1, multiple: false }).await;
    let ok = r.declare(1, &q).await;
    assert_eq!((ok.message_count, ok.consumer_count), (0, 1));
    b.stop().await;
}

#[tokio::test]
async fn empty_body_and_large_body() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "sizes").await;
    r.publish(1, "", &q, b"").await;
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
    r.publish(1, "", &q, &big).await;
    consume(&mut r, &q, "c", true).await;
    assert_eq!(r.recv_content().await.body.len(), 0);
    assert_eq!(&r.recv_content().await.body[..], &big[..]);
    b.stop().await;
}

#[tokio::test]
async fn get_and_get_empty() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "get").await;
    r.publish(1, "", &q, b"one").await;
    r.publish(1, "", &q, b"two").await;
    let m = r.call(1, BasicGet { queue: s(&q), no_ack: false, ..Default::default() }).await;
    let Method::BasicGetOk(ref g) = m else { panic!("{m:?}") };
    assert_eq!(g.message_count, 1);
    let d = r.content_after(m).await;
    assert_eq!(&d.body[..], b"one");
    r.send(1, BasicAck { delivery_tag: d.tag(), multiple: false }).await;
    let m = r.call(1, BasicGet { queue: s(&q), no_ack: true, ..Default::default() }).await;
    assert_eq!(&r.content_after(m).await.body[..], b"two");
    assert!(matches!(r.call(1, BasicGet { queue: s(&q), ..Default::default() }).await, Method::BasicGetEmpty(_)));
    b.stop().await;
}

#[tokio::test]
async fn direct_exchange_routing_and_mandatory_return() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "direct").await;
    r.call(1, QueueBind { queue: s(&q), exchange: "amq.direct".into(), routing_key: "k".into(), ..Default::default() })
        .await;
    r.publish_full(1, "amq.direct", "nowhere", b"lost", &[0, 0], true).await;
    let d = r.recv_content().await;
    let Method::BasicReturn(ret) = &d.method else { panic!("{:?}", d.method) };
    assert_eq!(ret.reply_code, NO_ROUTE);
    assert_eq!(ret.reply_text.to_string(), "NO_ROUTE");
    assert_eq!(ret.routing_key.to_string(), "nowhere");
    assert_eq!(&d.body[..], b"lost");
    // Not mandatory: silently dropped. Routed: enqueued.
    r.publish(1, "amq.direct", "nowhere", b"dropped").await;
    r.publish_full(1, "amq.direct", "k", b"kept", &[0, 0], true).await;
    let got = r.barrier(1, &q).await;
    assert!(got.is_empty());
    assert_eq!(r.declare(1, &q).await.message_count, 1);
    b.stop().await;
}

#[tokio::test]
async fn publish_to_missing_exchange_is_404_and_immediate_is_540() {
    let b = TestBroker::start().await;
    let (mut r, _q) = setup_queue(&b, "missing").await;
    r.publish(1, "no-such-exchange", "k", b"x").await;
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, NOT_FOUND);
    assert_eq!(c.reply_text.to_string(), "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'");
    assert_eq!((c.class_id, c.method_id), (60, 40));
    r.open_channel(1).await;
    r.send(1, BasicPublish { routing_key: "k".into(), immediate: true, ..Default::default() }).await;
    let c = r.expect_connection_close().await;
    assert_eq!(c.reply_code, NOT_IMPLEMENTED);
    b.stop().await;
}

/// basic.publish, its content header and its body, encoded together as clients write them (the
/// broker finds such a whole publish in its read buffer and handles it in one step).
fn whole_publish(ch: u16, exchange: &str, key: &str, immediate: bool, props: &[u8], body: &[u8]) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    let m: Method = BasicPublish { exchange: s(exchange), routing_key: s(key), immediate, ..Default::default() }.into();
    warren_protocol::frame::encode_method(&mut b, ch, &m);
    warren_protocol::fast::header(&mut b, ch, body.len() as u64, props);
    warren_protocol::fast::body(&mut b, ch, body, 0);
    b.to_vec()
}

/// A whole publish that fails a check is refused exactly as its frames one by one would be: the
/// one-step path declines it and the frames take the general way, which reports the error.
#[tokio::test]
async fn whole_publishes_that_fail_a_check_get_the_frame_by_frame_errors() {
    use tokio::io::AsyncWriteExt;
    let b = TestBroker::start().await;
    let none = warren_protocol::properties::EMPTY_PROPERTIES;

    let (mut r, q) = setup_queue(&b, "whole-immediate").await;
    r.sock.write_all(&whole_publish(1, "", &q, true, none, b"x")).await.expect("write");
    assert_eq!(r.expect_connection_close().await.reply_code, NOT_IMPLEMENTED);

    // The content-type flag set, and no content type after it.
    let (mut r, q) = setup_queue(&b, "whole-properties").await;
    r.sock.write_all(&whole_publish(1, "", &q, false, &[0x80, 0], b"x")).await.expect("write");
    let c = r.expect_connection_close().await;
    assert_eq!(c.reply_code, INTERNAL_ERROR);
    assert!(c.reply_text.to_string().contains("malformed content header properties"), "{c:?}");

    let (mut r, q) = setup_queue(&b, "whole-channel").await;
    r.sock.write_all(&whole_publish(7, "", &q, false, none, b"x")).await.expect("write");
    assert_eq!(r.expect_connection_close().await.reply_code, CHANNEL_ERROR);

    // A publish behind one that closes its channel, in the same write, is discarded with the
    // closing channel; once reopened, a whole publish that passes is queued.
    let (mut r, q) = setup_queue(&b, "whole-closing").await;
    let mut w = whole_publish(1, "no-such-exchange", "k", false, none, b"x");
    w.extend(whole_publish(1, "", &q, false, none, b"discarded"));
    r.sock.write_all(&w).await.expect("write");
    assert_eq!(r.expect_channel_close(1).await.reply_code, NOT_FOUND);
    r.open_channel(1).await;
    assert_eq!(r.declare_passive(1, &q).await, 0);
    r.sock.write_all(&whole_publish(1, "", &q, false, none, b"kept")).await.expect("write");
    assert_eq!(r.declare_passive(1, &q).await, 1);
    assert_eq!(&get(&mut r, &q).await.body[..], b"kept");
    b.stop().await;
}

#[tokio::test]
async fn prefetch_per_consumer_and_per_channel() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "qos").await;
    for i in 0..10u8 {
        r.publish(1, "", &q, &[i]).await;
    }
    r.call(1, BasicQos { prefetch_count: 3, ..Default::default() }).await;
    consume(&mut r, &q, "c1", false).await;
    let got = r.barrier(1, &q).await;
    assert_eq!(got.len(), 3, "only the prefetch count is delivered");
    r.send(1, BasicAck { delivery_tag: 2, multiple: true }).await;
    let got2 = r.barrier(1, &q).await;
    assert_eq!(got2.len(), 2, "acking two frees two slots");
    assert_eq!(got2.iter().map(|d| d.body[0]).collect::<Vec<_>>(), vec![3, 4]);
    // global=true: a limit shared by all consumers of the channel (RabbitMQ's meaning).
    let (mut r2, q2) = setup_queue(&b, "qos-global").await;
    for i in 0..10u8 {
        r2.publish(1, "", &q2, &[i]).await;
    }
    r2.call(1, BasicQos { prefetch_count: 4, global: true, ..Default::default() }).await;
    let mut got = Vec::new();
    for tag in ["a", "b"] {
        let (ok, d) =
            r2.sync_collect(1, BasicConsume { queue: s(&q2), consumer_tag: s(tag), ..Default::default() }).await;
        assert!(matches!(ok, Method::BasicConsumeOk(_)));
        got.extend(d);
    }
    got.extend(r2.barrier(1, &q2).await);
    assert_eq!(got.len(), 4, "the channel-wide limit covers both consumers");
    // prefetch_size is not supported, as in RabbitMQ.
    r2.send(1, BasicQos { prefetch_size: 10, ..Default::default() }).await;
    assert_eq!(r2.expect_connection_close().await.reply_code, NOT_IMPLEMENTED);
    b.stop().await;
}

#[tokio::test]
async fn round_robin_between_consumers() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "rr").await;
    consume(&mut r, &q, "a", true).await;
    consume(&mut r, &q, "b", true).await;
    for i in 0..6u8 {
        r.publish(1, "", &q, &[i]).await;
    }
    let got = r.barrier(1, &q).await;
    let tags: Vec<String> = got
        .iter()
        .map(|d| match &d.method {
            Method::BasicDeliver(x) => x.consumer_tag.to_string(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(tags, ["a", "b", "a", "b", "a", "b"]);
    b.stop().await;
}

#[tokio::test]
async fn nack_reject_requeue_and_drop() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "nack").await;
    for i in 0..4u8 {
        r.publish(1, "", &q, &[i]).await;
    }
    let d0 = get(&mut r, &q).await;
    let d1 = get(&mut r, &q).await;
    // nack multiple with requeue: both back, in order, redelivered.
    r.send(1, BasicNack { delivery_tag: d1.tag(), multiple: true, requeue: true }).await;
    let a = get(&mut r, &q).await;
    assert_eq!((a.body[0], a.redelivered()), (0, true));
    let _ = d0;
    // reject without requeue: dropped.
    r.send(1, BasicReject { delivery_tag: a.tag(), requeue: false }).await;
    let bb = get(&mut r, &q).await;
    assert_eq!((bb.body[0], bb.redelivered()), (1, true));
    r.send(1, BasicReject { delivery_tag: bb.tag(), requeue: true }).await;
    let again = get(&mut r, &q).await;
    assert_eq!(again.body[0], 1);
    r.send(1, BasicAck { delivery_tag: again.tag(), multiple: false }).await;
    assert_eq!(r.declare(1, &q).await.message_count, 2);
    b.stop().await;
}

#[tokio::test]
async fn unknown_delivery_tag_is_406() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "tag").await;
    r.publish(1, "", &q, b"x").await;
    let m = r.call(1, BasicGet { queue: s(&q), ..Default::default() }).await;
    let d = r.content_after(m).await;
    r.send(1, BasicAck { delivery_tag: d.tag(), multiple: false }).await;
    r.send(1, BasicAck { delivery_tag: d.tag(), multiple: false }).await; // double ack
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, PRECONDITION_FAILED);
    assert_eq!(c.reply_text.to_string(), format!("PRECONDITION_FAILED - unknown delivery tag {}", d.tag()));
    assert_eq!((c.class_id, c.method_id), (60, 80));
    r.open_channel(1).await;
    r.send(1, BasicAck { delivery_tag: 99, multiple: true }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
    b.stop().await;
}

#[tokio::test]
async fn unacked_requeued_in_order_when_channel_or_connection_closes() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "order").await;
    for i in 0..5u8 {
        r.publish(1, "", &q, &[i]).await;
    }
    consume(&mut r, &q, "c", false).await;
    let got = r.barrier(1, &q).await;
    assert_eq!(got.len(), 5);
    // Ack the middle one; close the channel with the rest unacked.
    r.send(1, BasicAck { delivery_tag: got[2].tag(), multiple: false }).await;
    assert!(matches!(r.call(1, ChannelClose::default()).await, Method::ChannelCloseOk(_)));
    r.open_channel(2).await;
    let m = r.call(2, BasicConsume { queue: s(&q), consumer_tag: "c2".into(), ..Default::default() }).await;
    assert!(matches!(m, Method::BasicConsumeOk(_)));
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(r.recv_content().await);
    }
    assert_eq!(again.iter().map(|d| d.body[0]).collect::<Vec<_>>(), vec![0, 1, 3, 4]);
    assert!(again.iter().all(|d| d.redelivered()));
    // Now drop the whole connection without acking: all four go back.
    drop(r);
    let mut r2 = b.raw().await;
    r2.open_channel(1).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let ok = r2.declare(1, &q).await;
        if ok.message_count == 4 && ok.consumer_count == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "unacked messages not requeued: {ok:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn recover_redelivers_unacked() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "recover").await;
    r.publish(1, "", &q, b"a").await;
    r.publish(1, "", &q, b"b").await;
    consume(&mut r, &q, "c", false).await;
    let first = r.barrier(1, &q).await;
    assert_eq!(first.len(), 2);
    let (reply, again) = r.sync_collect(1, BasicRecover { requeue: true }).await;
    let mut again = again;
    if !matches!(reply, Method::BasicRecoverOk(_)) {
        panic!("{reply:?}");
    }
    again.extend(r.barrier(1, &q).await);
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|d| d.redelivered()));
    assert_eq!((again[0].tag(), again[1].tag()), (3, 4), "redeliveries get new tags");
    b.stop().await;
}

#[tokio::test]
async fn exclusive_consumer_and_reused_tag() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "exclusive-consumer").await;
    r.call(1, BasicConsume { queue: s(&q), consumer_tag: "only".into(), exclusive: true, ..Default::default() }).await;
    r.open_channel(2).await;
    r.send(2, BasicConsume { queue: s(&q), consumer_tag: "second".into(), ..Default::default() }).await;
    let c = r.expect_channel_close(2).await;
    assert_eq!(c.reply_code, ACCESS_REFUSED);
    assert!(c.reply_text.to_string().ends_with("in exclusive use"));
    r.send(1, BasicConsume { queue: s(&q), consumer_tag: "only".into(), ..Default::default() }).await;
    assert_eq!(r.expect_connection_close().await.reply_code, NOT_ALLOWED);
    b.stop().await;
}

#[tokio::test]
async fn cancel_stops_deliveries_and_keeps_unacked() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "cancel").await;
    r.publish(1, "", &q, b"1").await;
    consume(&mut r, &q, "c", false).await;
    let d = r.recv_content().await;
    assert!(matches!(
        r.call(1, BasicCancel { consumer_tag: "c".into(), no_wait: false }).await,
        Method::BasicCancelOk(_)
    ));
    r.publish(1, "", &q, b"2").await;
    assert!(r.barrier(1, &q).await.is_empty());
    // The unacked delivery can still be acked after cancel.
    r.send(1, BasicAck { delivery_tag: d.tag(), multiple: false }).await;
    assert_eq!(r.declare(1, &q).await.message_count, 1);
    b.stop().await;
}

#[tokio::test]
async fn channel_flow_from_the_client_as_rabbitmq() {
    let b = TestBroker::start().await;
    let (mut r, _q) = setup_queue(&b, "flow").await;
    // active=true is acknowledged; active=false is not implemented (RabbitMQ closes with 540).
    assert!(matches!(
        r.call(1, ChannelFlow { active: true }).await,
        Method::ChannelFlowOk(ChannelFlowOk { active: true })
    ));
    r.send(1, ChannelFlow { active: false }).await;
    let c = r.expect_connection_close().await;
    assert_eq!(c.reply_code, NOT_IMPLEMENTED);
    assert_eq!(c.reply_text.to_string(), "NOT_IMPLEMENTED - active=false");
    b.stop().await;
}

#[tokio::test]
async fn publisher_confirms_ack_after_enqueue_and_return_first() {
    let b = TestBroker::start().await;
    let (mut r, q) = setup_queue(&b, "confirms").await;
    assert!(matches!(r.call(1, ConfirmSelect { no_wait: false }).await, Method::ConfirmSelectOk(_)));
    r.publish(1, "", &q, b"1").await;
    match r.recv_method().await.1 {
        Method::BasicAck(a) => assert_eq!(a.delivery_tag, 1),
        other => panic!("{other:?}"),
    }
    r.publish_full(1, "", "no-such-queue", b"2", &[0, 0], true).await;
    let d = r.recv_content().await;
    assert!(matches!(d.method, Method::BasicReturn(_)), "return before the confirm");
    match r.recv_method().await.1 {
        Method::BasicAck(a) => assert_eq!(a.delivery_tag, 2),
        other => panic!("{other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn many_channels_on_one_connection() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    let q = unique("many");
    for ch in 1..=100u16 {
        r.open_channel(ch).await;
    }
    r.declare(7, &q).await;
    for ch in 1..=100u16 {
        r.publish(ch, "", &q, &ch.to_be_bytes()).await;
    }
    assert_eq!(r.declare(100, &q).await.message_count, 100);
    for ch in 1..=100u16 {
        assert!(matches!(r.call(ch, ChannelClose::default()).await, Method::ChannelCloseOk(_)));
    }
    b.stop().await;
}

/// A channel names the source of each unacked delivery (a consumer, or a basic.get's queue) by
/// a slot it holds once per source: deliveries of several consumers and a basic.get interleaved
/// on one channel must each release their own consumer's credit when acked together, a consumer
/// cancelled with deliveries unacked must keep them ackable, a new consumer must get credit of
/// its own, and the channel's close must requeue every unacked delivery to its own queue.
#[tokio::test]
async fn interleaved_sources_on_one_channel_keep_their_credit_and_queues() {
    let b = TestBroker::start().await;
    let (mut r, q1) = setup_queue(&b, "src-a").await;
    let (q2, q3) = (unique("src-b"), unique("src-c"));
    r.declare(1, &q2).await;
    r.declare(1, &q3).await;
    for (q, base) in [(&q1, 10u8), (&q2, 20), (&q3, 30)] {
        for i in 0..6u8 {
            r.publish(1, "", q, &[base + i]).await;
        }
    }
    r.call(1, BasicQos { prefetch_count: 2, ..Default::default() }).await;
    let tag_of = |d: &common::raw::Delivery| -> (String, u64, u8) {
        match &d.method {
            Method::BasicDeliver(x) => (x.consumer_tag.to_string(), x.delivery_tag, d.body[0]),
            m => panic!("expected a delivery, got {m:?}"),
        }
    };
    let mut first = Vec::new();
    for (q, c) in [(&q1, "c1"), (&q2, "c2")] {
        let (ok, d) = r.sync_collect(1, BasicConsume { queue: s(q), consumer_tag: s(c), ..Default::default() }).await;
        assert!(matches!(ok, Method::BasicConsumeOk(_)), "got {ok:?}");
        first.extend(d.iter().map(tag_of));
    }
    first.extend(r.barrier(1, &q1).await.iter().map(tag_of));
    let bodies = |v: &[(String, u64, u8)], c: &str| -> Vec<u8> { v.iter().filter(|d| d.0 == c).map(|d| d.2).collect() };
    assert_eq!((bodies(&first, "c1"), bodies(&first, "c2")), (vec![10, 11], vec![20, 21]));
    let got = get(&mut r, &q3).await;
    assert_eq!(got.body[0], 30);
    // Acked together up to c2's first delivery: c1's two and c2's one, so c1 gets two more and
    // c2 one more.
    let upto = first.iter().find(|d| d.0 == "c2").map(|d| d.1).expect("a delivery to c2");
    r.send(1, BasicAck { delivery_tag: upto, multiple: true }).await;
    let second: Vec<_> = r.barrier(1, &q1).await.iter().map(tag_of).collect();
    assert_eq!((bodies(&second, "c1"), bodies(&second, "c2")), (vec![12, 13], vec![22]));
    // c2 cancelled with 21 and 22 unacked: 22 is still ackable; a new consumer has its own credit.
    let cancel = BasicCancel { consumer_tag: "c2".into(), no_wait: false };
    assert!(matches!(r.call(1, cancel).await, Method::BasicCancelOk(_)));
    let t22 = second.iter().find(|d| d.2 == 22).map(|d| d.1).expect("22");
    r.send(1, BasicAck { delivery_tag: t22, multiple: false }).await;
    let (ok, d) = r.sync_collect(1, BasicConsume { queue: s(&q2), consumer_tag: s("c3"), ..Default::default() }).await;
    assert!(matches!(ok, Method::BasicConsumeOk(_)), "got {ok:?}");
    let mut third: Vec<_> = d.iter().map(tag_of).collect();
    third.extend(r.barrier(1, &q2).await.iter().map(tag_of));
    assert_eq!(bodies(&third, "c3"), vec![23, 24]);
    // Closing the channel requeues 12, 13 (c1), 21 (cancelled c2), 23, 24 (c3) and 30 (basic.get)
    // to their own queues.
    assert!(matches!(r.call(1, ChannelClose::default()).await, Method::ChannelCloseOk(_)));
    r.open_channel(1).await;
    assert_eq!(r.declare_passive(1, &q1).await, 4, "12, 13, 14, 15");
    assert_eq!(r.declare_passive(1, &q2).await, 4, "21, 23, 24, 25");
    assert_eq!(r.declare_passive(1, &q3).await, 6, "30 back with 31-35");
    b.stop().await;
}
