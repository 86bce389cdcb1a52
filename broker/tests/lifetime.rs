//! Message lifetime through a real socket: TTLs, queue expiry, length limits and overflow,
//! dead-lettering with x-death, priority queues, delivery limits.
mod common;
use common::raw::Raw;
use common::{s, setup_channel, unique, TestBroker};
use std::time::Duration;
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, LongStr, Method};

fn args(pairs: &[(&'static str, FieldValue)]) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in pairs {
        t.insert(*k, v.clone());
    }
    t
}

fn string(v: &str) -> FieldValue {
    FieldValue::LongStr(LongStr::from(v.to_string()))
}

async fn declare(r: &mut Raw, q: &str, a: FieldTable) {
    let m = QueueDeclare { queue: s(q), arguments: a, ..Default::default() };
    assert!(matches!(r.call(1, m).await, Method::QueueDeclareOk(_)), "declare {q}");
}

async fn count(r: &mut Raw, q: &str) -> u32 {
    match r.call(1, QueueDeclare { queue: s(q), passive: true, ..Default::default() }).await {
        Method::QueueDeclareOk(ok) => ok.message_count,
        other => panic!("{other:?}"),
    }
}

async fn wait_count(r: &mut Raw, q: &str, want: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let n = count(r, q).await;
        if n == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "queue {q} has {n} messages, expected {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(r: &mut Raw, q: &str) -> Option<common::raw::Delivery> {
    match r.call(1, BasicGet { queue: s(q), no_ack: true, ..Default::default() }).await {
        m @ Method::BasicGetOk(_) => Some(r.content_after(m).await),
        _ => None,
    }
}

#[tokio::test]
async fn queue_and_message_ttl_expire_without_consumers() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let q = unique("ttl");
    // A TTL no stall of a loaded machine outlasts between the publishes and the count below.
    declare(&mut r, &q, args(&[("x-message-ttl", FieldValue::I32(2000))])).await;
    r.publish(1, "", &q, b"a").await;
    r.publish(1, "", &q, b"b").await;
    assert_eq!(count(&mut r, &q).await, 2);
    wait_count(&mut r, &q, 0).await;
    // Per-message TTL (the lower of the two applies).
    let q2 = unique("msg-ttl");
    declare(&mut r, &q2, FieldTable::new()).await;
    r.publish_props(1, "", &q2, b"short", BasicProperties { expiration: Some("100".into()), ..Default::default() })
        .await;
    r.publish(1, "", &q2, b"forever").await;
    // The head expires; the unexpiring message stays.
    wait_count(&mut r, &q2, 1).await;
    assert_eq!(&get(&mut r, &q2).await.unwrap().body[..], b"forever");
    b.stop().await;
}

#[tokio::test]
async fn ttl_zero_delivers_to_a_waiting_consumer_or_expires() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let q = unique("ttl0");
    declare(&mut r, &q, args(&[("x-message-ttl", FieldValue::I32(0))])).await;
    r.publish(1, "", &q, b"nobody").await;
    assert_eq!(count(&mut r, &q).await, 0, "no consumer: gone at once");
    r.call(1, BasicConsume { queue: s(&q), no_ack: true, consumer_tag: "c".into(), ..Default::default() }).await;
    r.publish(1, "", &q, b"someone").await;
    assert_eq!(&r.recv_content().await.body[..], b"someone");
    b.stop().await;
}

#[tokio::test]
async fn unused_queue_expires() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let q = unique("expires");
    declare(&mut r, &q, args(&[("x-expires", FieldValue::I32(200))])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        r.send(1, QueueDeclare { queue: s(&q), passive: true, ..Default::default() }).await;
        match r.recv_method().await.1 {
            Method::QueueDeclareOk(_) => {}
            Method::ChannelClose(c) => {
                assert_eq!(c.reply_code, NOT_FOUND);
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "queue did not expire");
        // Longer than x-expires: a passive declare renews the lease, as in RabbitMQ.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn max_length_drop_head_and_bytes() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let q = unique("maxlen");
    declare(&mut r, &q, args(&[("x-max-length", FieldValue::I32(2))])).await;
    for m in [b"1", b"2", b"3"] {
        r.publish(1, "", &q, m).await;
    }
    assert_eq!(count(&mut r, &q).await, 2);
    assert_eq!(&get(&mut r, &q).await.unwrap().body[..], b"2", "oldest dropped");
    let qb = unique("maxbytes");
    declare(&mut r, &qb, args(&[("x-max-length-bytes", FieldValue::I32(10))])).await;
    for m in [&b"aaaa"[..], b"bbbb", b"cccc"] {
        r.publish(1, "", &qb, m).await;
    }
    assert_eq!(count(&mut r, &qb).await, 2);
    b.stop().await;
}

#[tokio::test]
async fn reject_publish_nacks_under_confirms() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let q = unique("reject");
    declare(&mut r, &q, args(&[("x-max-length", FieldValue::I32(1)), ("x-overflow", string("reject-publish"))])).await;
    r.call(1, ConfirmSelect::default()).await;
    r.publish(1, "", &q, b"fits").await;
    r.publish(1, "", &q, b"refused").await;
    let mut acks = Vec::new();
    while acks.len() < 2 {
        match r.recv_method().await.1 {
            Method::BasicAck(a) => acks.push(("ack", a.delivery_tag)),
            Method::BasicNack(n) => acks.push(("nack", n.delivery_tag)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(acks, [("ack", 1), ("nack", 2)]);
    assert_eq!(count(&mut r, &q).await, 1);
    b.stop().await;
}

#[tokio::test]
async fn dead_lettering_with_x_death() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let (work, dead) = (unique("work"), unique("dead"));
    declare(&mut r, &dead, FieldTable::new()).await;
    declare(
        &mut r,
        &work,
        args(&[("x-dead-letter-exchange", string("")), ("x-dead-letter-routing-key", string(&dead))]),
    )
    .await;
    r.publish_props(
        1,
        "",
        &work,
        b"poison",
        BasicProperties { expiration: Some("60000".into()), ..Default::default() },
    )
    .await;
    let m = r.call(1, BasicGet { queue: s(&work), ..Default::default() }).await;
    let d = r.content_after(m).await;
    r.send(1, BasicReject { delivery_tag: d.tag(), requeue: false }).await;
    wait_count(&mut r, &dead, 1).await;
    let got = get(&mut r, &dead).await.unwrap();
    let props = BasicProperties::decode(got.properties).unwrap();
    assert!(props.expiration.is_none(), "expiration removed");
    let h = props.headers.unwrap();
    let Some(FieldValue::Array(deaths)) = h.get("x-death") else { panic!("no x-death") };
    let FieldValue::Table(death) = &deaths[0] else { panic!() };
    assert_eq!(death.get("count"), Some(&FieldValue::I64(1)));
    assert_eq!(death.get("reason").and_then(|v| v.as_bytes()), Some(&b"rejected"[..]));
    assert_eq!(death.get("queue").and_then(|v| v.as_bytes()), Some(work.as_bytes()));
    assert_eq!(death.get("exchange").and_then(|v| v.as_bytes()), Some(&b""[..]));
    assert_eq!(death.get("original-expiration").and_then(|v| v.as_bytes()), Some(&b"60000"[..]));
    assert!(matches!(death.get("time"), Some(FieldValue::Timestamp(_))));
    let Some(FieldValue::Array(keys)) = death.get("routing-keys") else { panic!() };
    assert_eq!(keys[0].as_bytes(), Some(work.as_bytes()));
    assert_eq!(h.get("x-first-death-reason").and_then(|v| v.as_bytes()), Some(&b"rejected"[..]));
    assert_eq!(h.get("x-first-death-queue").and_then(|v| v.as_bytes()), Some(work.as_bytes()));
    b.stop().await;
}

#[tokio::test]
async fn retry_loop_through_ttl_counts_deaths_and_pure_expiry_cycles_drop() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let (work, delay) = (unique("work"), unique("delay"));
    declare(
        &mut r,
        &work,
        args(&[("x-dead-letter-exchange", string("")), ("x-dead-letter-routing-key", string(&delay))]),
    )
    .await;
    declare(
        &mut r,
        &delay,
        args(&[
            ("x-message-ttl", FieldValue::I32(50)),
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&work)),
        ]),
    )
    .await;
    r.publish(1, "", &work, b"job").await;
    for round in 1..=3i64 {
        wait_count(&mut r, &work, 1).await;
        let m = r.call(1, BasicGet { queue: s(&work), ..Default::default() }).await;
        let d = r.content_after(m).await;
        if round > 1 {
            let h = BasicProperties::decode(d.properties.clone()).unwrap().headers.unwrap();
            let Some(FieldValue::Array(deaths)) = h.get("x-death") else { panic!() };
            // Two entries (rejected from work, expired from delay), each counted once per round.
            assert_eq!(deaths.len(), 2);
            for dd in deaths {
                let FieldValue::Table(t) = dd else { panic!() };
                assert_eq!(t.get("count"), Some(&FieldValue::I64(round - 1)));
            }
        }
        r.send(1, BasicReject { delivery_tag: d.tag(), requeue: false }).await;
    }
    // q1 -> (expired) -> q1 with no rejection: a cycle, dropped.
    let cyc = unique("cycle");
    declare(
        &mut r,
        &cyc,
        args(&[
            ("x-message-ttl", FieldValue::I32(30)),
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&cyc)),
        ]),
    )
    .await;
    r.publish(1, "", &cyc, b"loop").await;
    wait_count(&mut r, &cyc, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&mut r, &cyc).await, 0, "an automatic cycle does not loop");
    b.stop().await;
}

#[tokio::test]
async fn priority_queue_orders_by_priority_then_fifo() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let q = unique("prio");
    declare(&mut r, &q, args(&[("x-max-priority", FieldValue::I32(5))])).await;
    for (body, p) in [("low-1", 1u8), ("high-1", 5), ("none", 0), ("high-2", 9), ("low-2", 1)] {
        let props = BasicProperties { priority: if body == "none" { None } else { Some(p) }, ..Default::default() };
        r.publish_props(1, "", &q, body.as_bytes(), props).await;
    }
    let mut order = Vec::new();
    while let Some(d) = get(&mut r, &q).await {
        order.push(String::from_utf8(d.body.to_vec()).unwrap());
    }
    assert_eq!(order, ["high-1", "high-2", "low-1", "low-2", "none"], "above max counts as max");
    // Invalid argument values are 406.
    for bad in [FieldValue::I32(256), string("x")] {
        r.send(
            1,
            QueueDeclare {
                queue: s(&unique("badprio")),
                arguments: args(&[("x-max-priority", bad)]),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(r.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
        r.open_channel(1).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn quorum_delivery_limit_dead_letters() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let (q, dead) = (unique("quorum"), unique("qdead"));
    declare(&mut r, &dead, FieldTable::new()).await;
    let a = args(&[
        ("x-queue-type", string("quorum")),
        ("x-delivery-limit", FieldValue::I32(2)),
        ("x-dead-letter-exchange", string("")),
        ("x-dead-letter-routing-key", string(&dead)),
    ]);
    r.call(1, QueueDeclare { queue: s(&q), durable: true, arguments: a.clone(), ..Default::default() }).await;
    r.publish(1, "", &q, b"flaky").await;
    for round in 0..3i64 {
        let m = r.call(1, BasicGet { queue: s(&q), ..Default::default() }).await;
        let d = r.content_after(m).await;
        let count = BasicProperties::decode(d.properties.clone())
            .unwrap()
            .headers
            .and_then(|h| h.get("x-delivery-count").cloned());
        assert_eq!(count, Some(FieldValue::I64(round)), "x-delivery-count on every delivery, from 0");
        r.send(1, BasicNack { delivery_tag: d.tag(), multiple: false, requeue: true }).await;
    }
    wait_count(&mut r, &dead, 1).await;
    assert_eq!(count(&mut r, &q).await, 0);
    // Quorum queues must be durable.
    r.send(1, QueueDeclare { queue: s(&unique("q")), arguments: a, ..Default::default() }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, PRECONDITION_FAILED);
    b.stop().await;
}
