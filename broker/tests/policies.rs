//! Policies through a real client: a policy set in a vhost gives queues and exchanges declared
//! after it their TTL, length limit, dead-letter and alternate exchanges, combined with declare
//! arguments by RabbitMQ's rules (limits: the lower; the rest: the argument wins).
mod common;
use common::TestBroker;
use serde_json::json;
use std::time::Duration;
use warren_protocol::method::*;
use warren_protocol::{FieldTable, FieldValue, Method, ShortStr};

fn s(x: &str) -> ShortStr {
    ShortStr::from(x.to_string())
}

fn set_policy(b: &TestBroker, name: &str, pattern: &str, apply_to: &str, priority: i64, def: serde_json::Value) {
    let v = b.handle.as_ref().expect("running").broker.vhost("/").expect("vhost");
    let p = warren::policy::Policy::new(
        "/",
        name,
        pattern,
        apply_to,
        priority,
        def.as_object().cloned().unwrap_or_default(),
    )
    .expect("valid policy");
    v.set_policy(p);
}

#[tokio::test]
async fn a_policy_gives_new_queues_length_limits_ttl_and_dead_lettering() {
    let b = TestBroker::start().await;
    set_policy(
        &b,
        "limits",
        "^pol\\.",
        "queues",
        0,
        json!({"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": "pol-dead"}),
    );
    // A higher-priority policy wins for the names it matches.
    set_policy(&b, "ttl", "^pol\\.ttl", "queues", 10, json!({"message-ttl": 50}));
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.declare(1, "pol-dead").await;
    r.declare(1, "pol.limited").await;
    for i in 0..3u8 {
        r.publish(1, "", "pol.limited", &[i]).await;
    }
    // max-length 2 from the policy: the oldest went to the dead-letter queue named by the policy.
    assert_eq!(r.declare_passive(1, "pol.limited").await, 2);
    assert_eq!(r.declare_passive(1, "pol-dead").await, 1);
    // Only the highest-priority policy applies: TTL, but no length limit here.
    r.declare(1, "pol.ttl.q").await;
    for i in 0..3u8 {
        r.publish(1, "", "pol.ttl.q", &[i]).await;
    }
    common::eventually(Duration::from_secs(5), || async {
        let mut c = b.raw().await;
        c.open_channel(1).await;
        (c.declare_passive(1, "pol.ttl.q").await == 0).then_some(())
    })
    .await;
    // Declare arguments combine: the lower limit applies.
    let mut args = FieldTable::new();
    args.insert("x-max-length", FieldValue::I32(1));
    let d = QueueDeclare { queue: s("pol.args"), arguments: args, ..Default::default() };
    assert!(matches!(r.call(1, d).await, Method::QueueDeclareOk(_)));
    for i in 0..3u8 {
        r.publish(1, "", "pol.args", &[i]).await;
    }
    assert_eq!(r.declare_passive(1, "pol.args").await, 1);
    // Names the pattern does not match are untouched.
    r.declare(1, "other").await;
    for i in 0..3u8 {
        r.publish(1, "", "other", &[i]).await;
    }
    assert_eq!(r.declare_passive(1, "other").await, 3);
    r.close().await;
    b.stop().await;
}

#[tokio::test]
async fn a_policy_gives_new_exchanges_an_alternate_exchange() {
    let b = TestBroker::start().await;
    set_policy(&b, "ae", "^routed$", "exchanges", 0, json!({"alternate-exchange": "unrouted"}));
    let mut r = b.raw().await;
    r.open_channel(1).await;
    for (x, kind) in [("unrouted", "fanout"), ("routed", "direct")] {
        let d = ExchangeDeclare { exchange: s(x), kind: s(kind), ..Default::default() };
        assert!(matches!(r.call(1, d).await, Method::ExchangeDeclareOk(_)));
    }
    r.declare(1, "catch-all").await;
    let bind = QueueBind { queue: s("catch-all"), exchange: s("unrouted"), ..Default::default() };
    assert!(matches!(r.call(1, bind).await, Method::QueueBindOk(_)));
    r.publish(1, "routed", "no-binding", b"lost?").await;
    assert_eq!(r.declare_passive(1, "catch-all").await, 1);
    // Invalid policies are refused when set.
    let bad = warren::policy::Policy::new(
        "/",
        "bad",
        "(",
        "all",
        0,
        json!({"message-ttl": 1}).as_object().cloned().unwrap_or_default(),
    );
    assert!(bad.is_err());
    r.close().await;
    b.stop().await;
}
