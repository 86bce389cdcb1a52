//! queue.* and exchange.* through a real socket: declare rules and errors, bind/unbind, purge,
//! delete, exclusive and auto-delete lifetimes.
mod common;
use common::{eventually, unique, TestBroker};
use std::time::Duration;
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{FieldTable, FieldValue, Method, ShortStr};

fn qd(name: &str) -> QueueDeclare {
    QueueDeclare { queue: ShortStr::from(name.to_string()), ..Default::default() }
}

#[tokio::test]
async fn declare_variants_and_counts() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    // Server-named.
    let Method::QueueDeclareOk(ok) = r.call(1, qd("")).await else { panic!() };
    assert!(ok.queue.to_string().starts_with("amq.gen-"), "{}", ok.queue);
    assert_eq!(ok.queue.len(), "amq.gen-".len() + 22);
    // Counts.
    let q = unique("counts");
    r.declare(1, &q).await;
    for _ in 0..3 {
        r.publish(1, "", &q, b"m").await;
    }
    let ok = r.declare(1, &q).await;
    assert_eq!((ok.message_count, ok.consumer_count), (3, 0));
    r.call(1, BasicConsume { queue: ShortStr::from(q.clone()), no_ack: false, ..Default::default() }).await;
    // The three messages are now unacked: declare-ok counts ready messages only.
    let (reply, _) = r.sync_collect(1, QueueDeclare { passive: true, ..qd(&q) }).await;
    let Method::QueueDeclareOk(ok) = reply else { panic!() };
    assert_eq!((ok.message_count, ok.consumer_count), (0, 1));
    // Durable and passive.
    let d = unique("durable");
    r.call(1, QueueDeclare { durable: true, ..qd(&d) }).await;
    assert!(matches!(r.call(1, QueueDeclare { passive: true, ..qd(&d) }).await, Method::QueueDeclareOk(_)));
    b.stop().await;
}

#[tokio::test]
async fn inequivalent_redeclare_is_406_and_channel_only() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.open_channel(2).await;
    let q = unique("ineq");
    r.call(1, QueueDeclare { durable: true, ..qd(&q) }).await;
    r.send(1, qd(&q)).await;
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, PRECONDITION_FAILED);
    assert!(c.reply_text.to_string().contains("inequivalent arg 'durable'"), "{}", c.reply_text);
    assert_eq!((c.class_id, c.method_id), (50, 10));
    // Arguments too.
    let mut args = FieldTable::new();
    args.insert("x-max-length", FieldValue::I32(10));
    r.send(2, QueueDeclare { durable: true, arguments: args, ..qd(&q) }).await;
    assert_eq!(r.expect_channel_close(2).await.reply_code, PRECONDITION_FAILED);
    // The connection is fine: a new channel works.
    r.open_channel(3).await;
    r.call(3, QueueDeclare { durable: true, ..qd(&q) }).await;
    b.stop().await;
}

#[tokio::test]
async fn passive_declare_of_missing_queue_is_404() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.send(1, QueueDeclare { passive: true, ..qd("no-such-queue") }).await;
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, NOT_FOUND);
    assert_eq!(c.reply_text.to_string(), "NOT_FOUND - no queue 'no-such-queue' in vhost '/'");
    b.stop().await;
}

#[tokio::test]
async fn reserved_amq_prefix_is_403() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.send(1, qd("amq.mine")).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, ACCESS_REFUSED);
    b.stop().await;
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection_and_dies_with_it() {
    let b = TestBroker::start().await;
    let mut owner = b.raw().await;
    owner.open_channel(1).await;
    let q = unique("excl");
    owner.call(1, QueueDeclare { exclusive: true, ..qd(&q) }).await;
    let mut other = b.raw().await;
    other.open_channel(1).await;
    for m in [
        Method::from(qd(&q)),
        QueueDeclare { passive: true, ..qd(&q) }.into(),
        BasicConsume { queue: ShortStr::from(q.clone()), ..Default::default() }.into(),
        BasicGet { queue: ShortStr::from(q.clone()), ..Default::default() }.into(),
        QueuePurge { queue: ShortStr::from(q.clone()), ..Default::default() }.into(),
        QueueDelete { queue: ShortStr::from(q.clone()), ..Default::default() }.into(),
    ] {
        other.send(1, m).await;
        assert_eq!(other.expect_channel_close(1).await.reply_code, RESOURCE_LOCKED);
        other.open_channel(1).await;
    }
    owner.close().await;
    // Gone with its connection.
    eventually(Duration::from_secs(5), || async {
        let mut c = b.raw().await;
        c.open_channel(1).await;
        c.send(1, QueueDeclare { passive: true, ..qd(&q) }).await;
        match c.recv_method().await.1 {
            Method::ChannelClose(cl) if cl.reply_code == NOT_FOUND => Some(()),
            _ => None,
        }
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let q = unique("autodel");
    r.call(1, QueueDeclare { auto_delete: true, ..qd(&q) }).await;
    // No consumer yet: it stays.
    assert!(matches!(r.call(1, QueueDeclare { passive: true, ..qd(&q) }).await, Method::QueueDeclareOk(_)));
    for tag in ["c1", "c2"] {
        r.call(1, BasicConsume { queue: ShortStr::from(q.clone()), consumer_tag: tag.into(), ..Default::default() })
            .await;
    }
    r.call(1, BasicCancel { consumer_tag: "c1".into(), no_wait: false }).await;
    assert!(matches!(r.call(1, QueueDeclare { passive: true, ..qd(&q) }).await, Method::QueueDeclareOk(_)));
    r.call(1, BasicCancel { consumer_tag: "c2".into(), no_wait: false }).await;
    r.send(1, QueueDeclare { passive: true, ..qd(&q) }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, NOT_FOUND);
    b.stop().await;
}

#[tokio::test]
async fn bind_unbind_purge_delete() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let q = unique("bound");
    r.declare(1, &q).await;
    let bind = QueueBind {
        queue: ShortStr::from(q.clone()),
        exchange: "amq.direct".into(),
        routing_key: "rk".into(),
        ..Default::default()
    };
    assert!(matches!(r.call(1, bind.clone()).await, Method::QueueBindOk(_)));
    r.publish(1, "amq.direct", "rk", b"1").await;
    r.publish(1, "amq.direct", "other", b"2").await;
    assert_eq!(r.declare(1, &q).await.message_count, 1);
    let unbind = QueueUnbind {
        queue: ShortStr::from(q.clone()),
        exchange: "amq.direct".into(),
        routing_key: "rk".into(),
        ..Default::default()
    };
    assert!(matches!(r.call(1, unbind).await, Method::QueueUnbindOk(_)));
    r.publish(1, "amq.direct", "rk", b"3").await;
    assert_eq!(r.declare(1, &q).await.message_count, 1);
    // Binding to the default exchange is refused.
    r.send(1, QueueBind { exchange: "".into(), ..bind.clone() }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, ACCESS_REFUSED);
    r.open_channel(1).await;
    // Binding to a missing exchange is 404.
    r.send(1, QueueBind { exchange: "nope".into(), ..bind.clone() }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, NOT_FOUND);
    r.open_channel(1).await;
    // Purge.
    r.publish(1, "", &q, b"4").await;
    let Method::QueuePurgeOk(p) =
        r.call(1, QueuePurge { queue: ShortStr::from(q.clone()), ..Default::default() }).await
    else {
        panic!()
    };
    assert_eq!(p.message_count, 2);
    // Delete if-empty on a non-empty queue: 406; if-unused with a consumer: 406.
    r.publish(1, "", &q, b"5").await;
    r.send(1, QueueDelete { queue: ShortStr::from(q.clone()), if_empty: true, ..Default::default() }).await;
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, PRECONDITION_FAILED);
    assert!(c.reply_text.to_string().ends_with("not empty"));
    r.open_channel(1).await;
    r.call(
        1,
        BasicConsume { queue: ShortStr::from(q.clone()), consumer_tag: "c".into(), no_ack: true, ..Default::default() },
    )
    .await;
    r.send(1, QueueDelete { queue: ShortStr::from(q.clone()), if_unused: true, ..Default::default() }).await;
    // The consumer got the message first; then the close.
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, PRECONDITION_FAILED);
    assert!(c.reply_text.to_string().ends_with("in use"));
    r.open_channel(1).await;
    r.publish(1, "", &q, b"6").await;
    let Method::QueueDeleteOk(d) =
        r.call(1, QueueDelete { queue: ShortStr::from(q.clone()), ..Default::default() }).await
    else {
        panic!()
    };
    assert_eq!(d.message_count, 1);
    // Deleting again is fine (RabbitMQ 3.x).
    assert!(matches!(
        r.call(1, QueueDelete { queue: ShortStr::from(q.clone()), ..Default::default() }).await,
        Method::QueueDeleteOk(_)
    ));
    b.stop().await;
}

#[tokio::test]
async fn deleting_a_consumed_queue_cancels_its_consumers() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let q = unique("cancelled");
    r.declare(1, &q).await;
    r.call(1, BasicConsume { queue: ShortStr::from(q.clone()), consumer_tag: "ct".into(), ..Default::default() }).await;
    let mut other = b.raw().await;
    other.open_channel(1).await;
    other.call(1, QueueDelete { queue: ShortStr::from(q.clone()), ..Default::default() }).await;
    match r.recv_method().await {
        (1, Method::BasicCancel(c)) => assert_eq!(c.consumer_tag, "ct"),
        other => panic!("expected basic.cancel, got {other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn exchange_declare_rules() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let x = unique("x");
    let ed = |kind: &'static str| ExchangeDeclare {
        exchange: ShortStr::from(x.clone()),
        kind: kind.into(),
        ..Default::default()
    };
    for kind in ["direct", "fanout", "topic", "headers"] {
        let name = unique(kind);
        let m =
            ExchangeDeclare { exchange: ShortStr::from(name), kind: ShortStr::from_static(kind), ..Default::default() };
        assert!(matches!(r.call(1, m).await, Method::ExchangeDeclareOk(_)));
    }
    r.call(1, ed("direct")).await;
    r.send(1, ed("fanout")).await;
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, PRECONDITION_FAILED);
    assert!(c.reply_text.to_string().contains("inequivalent arg 'type'"));
    r.open_channel(1).await;
    r.send(1, ExchangeDeclare { passive: true, ..ed("") }.clone()).await;
    assert!(matches!(r.recv_method().await.1, Method::ExchangeDeclareOk(_)));
    r.send(1, ExchangeDeclare { exchange: "missing-x".into(), passive: true, ..Default::default() }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, NOT_FOUND);
    r.open_channel(1).await;
    r.send(1, ExchangeDeclare { exchange: "amq.custom".into(), kind: "direct".into(), ..Default::default() }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, ACCESS_REFUSED);
    r.open_channel(1).await;
    assert!(matches!(
        r.call(1, ExchangeDelete { exchange: ShortStr::from(x.clone()), ..Default::default() }).await,
        Method::ExchangeDeleteOk(_)
    ));
    // Unknown type: 503 connection error, as RabbitMQ.
    r.send(1, ExchangeDeclare { exchange: "weird".into(), kind: "nonsense".into(), ..Default::default() }).await;
    assert_eq!(r.expect_connection_close().await.reply_code, COMMAND_INVALID);
    b.stop().await;
}
