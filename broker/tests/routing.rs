//! Routing through a real socket: every exchange type, exchange-to-exchange bindings (cycles
//! included), alternate exchanges, CC/BCC, internal and auto-delete exchanges.
mod common;
use common::raw::Raw;
use common::{s, setup_channel, unique, TestBroker};
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{BasicProperties, FieldTable, FieldValue, LongStr, Method, ShortStr};

async fn exchange(r: &mut Raw, name: &str, kind: &'static str, args: FieldTable) {
    let m =
        ExchangeDeclare { exchange: s(name), kind: ShortStr::from_static(kind), arguments: args, ..Default::default() };
    assert!(matches!(r.call(1, m).await, Method::ExchangeDeclareOk(_)));
}

async fn queue_bound(r: &mut Raw, x: &str, key: &str) -> String {
    let q = unique("rq");
    r.declare(1, &q).await;
    bind(r, &q, x, key, FieldTable::new()).await;
    q
}

async fn bind(r: &mut Raw, q: &str, x: &str, key: &str, args: FieldTable) {
    let m = QueueBind { queue: s(q), exchange: s(x), routing_key: s(key), arguments: args, ..Default::default() };
    assert!(matches!(r.call(1, m).await, Method::QueueBindOk(_)));
}

async fn xbind(r: &mut Raw, dst: &str, src: &str, key: &str) {
    let m = ExchangeBind { destination: s(dst), source: s(src), routing_key: s(key), ..Default::default() };
    assert!(matches!(r.call(1, m).await, Method::ExchangeBindOk(_)));
}

async fn count(r: &mut Raw, q: &str) -> u32 {
    r.declare(1, q).await.message_count
}

#[tokio::test]
async fn topic_routing_edge_cases() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let x = unique("topic");
    exchange(&mut r, &x, "topic", FieldTable::new()).await;
    let patterns = ["*", "#", "#.#", "a.*", "a.#", "a.#.b", "*.b", "", "a..b", "a.", ".a", "*.*"];
    let mut queues = Vec::new();
    for p in patterns {
        queues.push(queue_bound(&mut r, &x, p).await);
    }
    // (key, patterns that must match), as RabbitMQ routes them.
    let cases: &[(&str, &[&str])] = &[
        ("a", &["*", "#", "#.#", "a.#"]),
        ("", &["#", "#.#", ""]),
        ("a.b", &["#", "#.#", "a.*", "a.#", "a.#.b", "*.b", "*.*"]),
        ("a.x.y.b", &["#", "#.#", "a.#", "a.#.b"]),
        ("a..b", &["#", "#.#", "a.#", "a.#.b", "a..b"]),
        ("a.", &["#", "#.#", "a.*", "a.#", "a.", "*.*"]),
        (".a", &["#", "#.#", ".a", "*.*"]),
    ];
    for (key, want) in cases {
        r.publish(1, &x, key, key.as_bytes()).await;
        for (p, q) in patterns.iter().zip(&queues) {
            let expected = want.contains(p) as u32;
            let n = count(&mut r, q).await;
            assert_eq!(n, expected, "key {key:?} pattern {p:?}");
            r.call(1, QueuePurge { queue: s(q), ..Default::default() }).await;
        }
    }
    // A 255-byte key.
    let long = "w.".repeat(127) + "z";
    assert_eq!(long.len(), 255);
    r.publish(1, &x, &long, b"long").await;
    assert_eq!(count(&mut r, &queues[1]).await, 1, "# matches a 255-byte key");
    b.stop().await;
}

#[tokio::test]
async fn fanout_and_direct_deliver_once_per_queue() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let q = unique("once");
    r.declare(1, &q).await;
    bind(&mut r, &q, "amq.direct", "k1", FieldTable::new()).await;
    bind(&mut r, &q, "amq.direct", "k2", FieldTable::new()).await;
    let mut cc = FieldTable::new();
    cc.insert("CC", FieldValue::Array(vec![FieldValue::LongStr("k2".into())]));
    r.publish_props(1, "amq.direct", "k1", b"x", BasicProperties { headers: Some(cc), ..Default::default() }).await;
    assert_eq!(count(&mut r, &q).await, 1, "one copy though two keys matched");
    // Unbinding a binding that does not exist is fine.
    let m =
        QueueUnbind { queue: s(&q), exchange: "amq.direct".into(), routing_key: "nope".into(), ..Default::default() };
    assert!(matches!(r.call(1, m).await, Method::QueueUnbindOk(_)));
    b.stop().await;
}

#[tokio::test]
async fn headers_exchange_modes_and_types() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let x = unique("hdr");
    exchange(&mut r, &x, "headers", FieldTable::new()).await;
    let table = |pairs: &[(&'static str, FieldValue)]| {
        let mut t = FieldTable::new();
        for (k, v) in pairs {
            t.insert(*k, v.clone());
        }
        t
    };
    let any = |m: &'static str| FieldValue::LongStr(LongStr::from(m));
    let q_all = unique("all");
    let q_any = unique("any");
    let q_allx = unique("allx");
    for q in [&q_all, &q_any, &q_allx] {
        r.declare(1, q).await;
    }
    bind(&mut r, &q_all, &x, "", table(&[("a", FieldValue::I32(1)), ("b", any("two")), ("x-ignored", any("z"))])).await;
    bind(&mut r, &q_any, &x, "", table(&[("x-match", any("any")), ("a", FieldValue::I32(1)), ("c", FieldValue::Void)]))
        .await;
    bind(&mut r, &q_allx, &x, "", table(&[("x-match", any("all-with-x")), ("x-k", any("v"))])).await;
    let publish = |h: FieldTable| BasicProperties { headers: Some(h), ..Default::default() };
    // All: both present; the I64 1 matches the I32 1 (same integer class); x- keys ignored.
    r.publish_props(1, &x, "", b"1", publish(table(&[("a", FieldValue::I64(1)), ("b", any("two"))]))).await;
    assert_eq!((count(&mut r, &q_all).await, count(&mut r, &q_any).await), (1, 1));
    // Numbers compare by value across kinds, as in RabbitMQ: a float 1.0 equals the integer 1.
    r.publish_props(1, &x, "", b"2", publish(table(&[("a", FieldValue::F64(1.0)), ("b", any("two"))]))).await;
    assert_eq!((count(&mut r, &q_all).await, count(&mut r, &q_any).await), (2, 2));
    // `c` present (void binding value = presence) satisfies any; a wrong `b` fails all.
    r.publish_props(1, &x, "", b"3", publish(table(&[("a", FieldValue::I32(2)), ("b", any("x")), ("c", any("q"))])))
        .await;
    assert_eq!((count(&mut r, &q_all).await, count(&mut r, &q_any).await), (2, 3));
    // No headers at all: nothing matches.
    r.publish(1, &x, "", b"3b").await;
    assert_eq!((count(&mut r, &q_all).await, count(&mut r, &q_any).await), (2, 3));
    r.publish_props(1, &x, "", b"4", publish(table(&[("x-k", any("v"))]))).await;
    assert_eq!(count(&mut r, &q_allx).await, 1, "all-with-x compares x- keys");
    b.stop().await;
}

#[tokio::test]
async fn exchange_to_exchange_chains_and_cycles() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let (a, bx, c) = (unique("xa"), unique("xb"), unique("xc"));
    exchange(&mut r, &a, "fanout", FieldTable::new()).await;
    exchange(&mut r, &bx, "fanout", FieldTable::new()).await;
    exchange(&mut r, &c, "direct", FieldTable::new()).await;
    let q = queue_bound(&mut r, &c, "k").await;
    xbind(&mut r, &bx, &a, "").await;
    xbind(&mut r, &c, &bx, "").await;
    xbind(&mut r, &a, &bx, "").await; // cycle a <-> b
    xbind(&mut r, &c, &a, "").await; // second path a -> c
    r.publish(1, &a, "k", b"m").await;
    assert_eq!(count(&mut r, &q).await, 1, "one copy through a cycle and two paths");
    // Unbind both paths to c: nothing reaches q.
    for src in [&bx, &a] {
        let m = ExchangeUnbind { destination: s(&c), source: s(src), routing_key: "".into(), ..Default::default() };
        assert!(matches!(r.call(1, m).await, Method::ExchangeUnbindOk(_)));
    }
    r.publish(1, &a, "k", b"m").await;
    assert_eq!(count(&mut r, &q).await, 1);
    // Missing source or destination: 404.
    r.send(1, ExchangeBind { destination: s(&c), source: "nope".into(), ..Default::default() }).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, NOT_FOUND);
    b.stop().await;
}

#[tokio::test]
async fn alternate_exchange_and_mandatory() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let (main, ae) = (unique("main"), unique("ae"));
    exchange(&mut r, &ae, "fanout", FieldTable::new()).await;
    let mut args = FieldTable::new();
    args.insert("alternate-exchange", FieldValue::LongStr(LongStr::from(ae.clone())));
    exchange(&mut r, &main, "direct", args).await;
    let routed = queue_bound(&mut r, &main, "known").await;
    // AE without queues: mandatory unroutable is returned.
    r.publish_full(1, &main, "unknown", b"1", &[0, 0], true).await;
    let d = r.recv_content().await;
    assert!(matches!(d.method, Method::BasicReturn(_)));
    // Give the AE a queue: the message lands there, no return.
    let caught = queue_bound(&mut r, &ae, "").await;
    r.publish_full(1, &main, "unknown", b"2", &[0, 0], true).await;
    r.publish_full(1, &main, "known", b"3", &[0, 0], true).await;
    assert!(r.barrier(1, &caught).await.is_empty(), "no basic.return");
    assert_eq!((count(&mut r, &caught).await, count(&mut r, &routed).await), (1, 1));
    b.stop().await;
}

#[tokio::test]
async fn cc_and_bcc_sender_selected_distribution() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let (q1, q2, q3) = (unique("to"), unique("cc"), unique("bcc"));
    for q in [&q1, &q2, &q3] {
        r.declare(1, q).await;
    }
    let mut h = FieldTable::new();
    h.insert("CC", FieldValue::Array(vec![FieldValue::LongStr(LongStr::from(q2.clone()))]));
    h.insert("BCC", FieldValue::Array(vec![FieldValue::LongStr(LongStr::from(q3.clone()))]));
    h.insert("other", FieldValue::I32(7));
    r.publish_props(1, "", &q1, b"hi", BasicProperties { headers: Some(h), ..Default::default() }).await;
    for q in [&q1, &q2, &q3] {
        let m = r.call(1, BasicGet { queue: s(q), no_ack: true, ..Default::default() }).await;
        let d = r.content_after(m).await;
        let props = BasicProperties::decode(d.properties).unwrap();
        let h = props.headers.unwrap();
        assert!(h.get("CC").is_some(), "CC is kept");
        assert!(h.get("BCC").is_none(), "BCC is removed before delivery");
        assert_eq!(h.get("other"), Some(&FieldValue::I32(7)));
    }
    b.stop().await;
}

#[tokio::test]
async fn internal_exchange_refuses_publish_but_routes_from_another() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let (front, inner) = (unique("front"), unique("inner"));
    exchange(&mut r, &front, "fanout", FieldTable::new()).await;
    let m = ExchangeDeclare { exchange: s(&inner), kind: "fanout".into(), internal: true, ..Default::default() };
    r.call(1, m).await;
    let q = queue_bound(&mut r, &inner, "").await;
    xbind(&mut r, &inner, &front, "").await;
    r.publish(1, &front, "", b"via front").await;
    assert_eq!(count(&mut r, &q).await, 1);
    r.publish(1, &inner, "", b"direct").await;
    let c = r.expect_channel_close(1).await;
    assert_eq!(c.reply_code, ACCESS_REFUSED);
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let b = TestBroker::start().await;
    let mut r = setup_channel(&b).await;
    let x = unique("autox");
    let m = ExchangeDeclare { exchange: s(&x), kind: "direct".into(), auto_delete: true, ..Default::default() };
    r.call(1, m.clone()).await;
    let passive = ExchangeDeclare { passive: true, ..m.clone() };
    // Never bound: it stays.
    assert!(matches!(r.call(1, passive.clone()).await, Method::ExchangeDeclareOk(_)));
    let q1 = queue_bound(&mut r, &x, "a").await;
    let q2 = queue_bound(&mut r, &x, "b").await;
    r.call(1, QueueUnbind { queue: s(&q1), exchange: s(&x), routing_key: "a".into(), ..Default::default() }).await;
    assert!(matches!(r.call(1, passive.clone()).await, Method::ExchangeDeclareOk(_)));
    // Deleting the last bound queue removes the exchange.
    r.call(1, QueueDelete { queue: s(&q2), ..Default::default() }).await;
    r.send(1, passive).await;
    assert_eq!(r.expect_channel_close(1).await.reply_code, NOT_FOUND);
    b.stop().await;
}

/// A channel keeps the last queue and exchange it published to between publishes (no vhost lock
/// per message): a queue or exchange deleted and declared again by another connection must be
/// what that channel's very next publish reaches, and a deleted exchange must refuse it.
#[tokio::test]
async fn the_publish_after_a_queue_or_exchange_is_replaced_reaches_the_new_one() {
    let b = TestBroker::start().await;
    let mut p = setup_channel(&b).await;
    let mut o = setup_channel(&b).await;
    let q = unique("replaced");
    o.declare(1, &q).await;
    p.publish(1, "", &q, b"one").await;
    assert_eq!(p.declare_passive(1, &q).await, 1);
    let delete_queue = || QueueDelete { queue: s(&q), ..Default::default() };
    assert!(matches!(o.call(1, delete_queue()).await, Method::QueueDeleteOk(_)));
    o.declare(1, &q).await;
    p.publish(1, "", &q, b"two").await;
    assert_eq!(p.declare_passive(1, &q).await, 1, "the publish after the queue was replaced reached the new one");
    // Deleted again: the next publish is unroutable, and a queue declared after it is empty.
    assert!(matches!(o.call(1, delete_queue()).await, Method::QueueDeleteOk(_)));
    p.publish(1, "", &q, b"three").await;
    assert_eq!(p.declare(1, &q).await.message_count, 0);

    let x = unique("replaced-x");
    exchange(&mut o, &x, "direct", FieldTable::new()).await;
    let qa = queue_bound(&mut o, &x, "k").await;
    p.publish(1, &x, "k", b"a").await;
    assert_eq!(p.declare_passive(1, &qa).await, 1);
    let delete_exchange = || ExchangeDelete { exchange: s(&x), ..Default::default() };
    assert!(matches!(o.call(1, delete_exchange()).await, Method::ExchangeDeleteOk(_)));
    exchange(&mut o, &x, "fanout", FieldTable::new()).await;
    let qb = queue_bound(&mut o, &x, "").await;
    p.publish(1, &x, "k", b"b").await;
    assert_eq!(
        p.declare_passive(1, &qb).await,
        1,
        "the publish after the exchange was replaced went through the new one"
    );
    assert_eq!(p.declare_passive(1, &qa).await, 1, "the old exchange's queue got nothing more");
    assert!(matches!(o.call(1, delete_exchange()).await, Method::ExchangeDeleteOk(_)));
    p.publish(1, &x, "k", b"c").await;
    let close = p.expect_channel_close(1).await;
    assert_eq!(close.reply_code, NOT_FOUND, "a publish to the deleted exchange: {close:?}");
    b.stop().await;
}

/// A channel that publishes with the same exchange and routing key again reuses the route it
/// took last (no routing per message) while nothing changed: bindings added, removed or
/// redirected by another connection, and a bound queue deleted, must each change where that
/// channel's very next publish goes, for every exchange type whose route is remembered.
#[tokio::test]
async fn a_repeated_publish_follows_binding_changes_made_elsewhere() {
    let b = TestBroker::start().await;
    let mut p = setup_channel(&b).await;
    let mut o = setup_channel(&b).await;
    for kind in ["fanout", "direct", "topic"] {
        let x = unique(&format!("memo-{kind}"));
        exchange(&mut o, &x, kind, FieldTable::new()).await;
        let q1 = queue_bound(&mut o, &x, "k").await;
        // Declared before the publishes (a declare moves the vhost's names; a bind must do on its own).
        let q2 = unique("memo-second");
        o.declare(1, &q2).await;
        p.publish(1, &x, "k", b"1").await;
        p.publish(1, &x, "k", b"2").await;
        assert_eq!(p.declare_passive(1, &q1).await, 2, "{kind}: both publishes reached the bound queue");
        // A second queue bound elsewhere: the next publish reaches both.
        bind(&mut o, &q2, &x, "k", FieldTable::new()).await;
        p.publish(1, &x, "k", b"3").await;
        assert_eq!(p.declare_passive(1, &q1).await, 3, "{kind}");
        assert_eq!(p.declare_passive(1, &q2).await, 1, "{kind}: the publish after a bind reached the new queue");
        // The first unbound: only the second.
        let unbind = QueueUnbind {
            queue: s(&q1),
            exchange: s(&x),
            routing_key: s("k"),
            arguments: FieldTable::new(),
            ..Default::default()
        };
        assert!(matches!(o.call(1, unbind).await, Method::QueueUnbindOk(_)));
        p.publish(1, &x, "k", b"4").await;
        assert_eq!(p.declare_passive(1, &q1).await, 3, "{kind}: the publish after an unbind skipped the unbound queue");
        assert_eq!(p.declare_passive(1, &q2).await, 2, "{kind}");
        // An exchange bound to this one: the next publish goes through it too.
        let x2 = unique(&format!("memo-{kind}-dest"));
        exchange(&mut o, &x2, "fanout", FieldTable::new()).await;
        let q3 = queue_bound(&mut o, &x2, "").await;
        xbind(&mut o, &x2, &x, "k").await;
        p.publish(1, &x, "k", b"5").await;
        assert_eq!(p.declare_passive(1, &q3).await, 1, "{kind}: the publish after an exchange binding went through it");
        assert_eq!(p.declare_passive(1, &q2).await, 3, "{kind}");
        // The bound queue deleted: nothing reaches a queue declared again under its name.
        assert!(matches!(
            o.call(1, QueueDelete { queue: s(&q2), ..Default::default() }).await,
            Method::QueueDeleteOk(_)
        ));
        p.publish(1, &x, "k", b"6").await;
        p.publish(1, &x, "k", b"7").await;
        assert_eq!(p.declare(1, &q2).await.message_count, 0, "{kind}: a deleted queue's name is unbound");
        assert_eq!(p.declare_passive(1, &q3).await, 3, "{kind}");
    }
    b.stop().await;
}
