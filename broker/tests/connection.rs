//! Connection-level behaviour through a real socket: handshake, server properties, auth, tune,
//! heartbeats, close in both directions, shutdown, and protocol errors.
mod common;
use common::raw::{Options, Raw};
use common::TestBroker;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::config::Config;
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{FieldValue, Method};

#[tokio::test]
async fn server_properties_and_capabilities_match_rabbitmq() {
    let b = TestBroker::start().await;
    let r = b.raw().await;
    for k in ["product", "version", "platform", "copyright", "information"] {
        assert!(matches!(r.server_properties.get(k), Some(FieldValue::LongStr(_))), "missing {k}");
    }
    let Some(FieldValue::Table(caps)) = r.server_properties.get("capabilities") else { panic!("no capabilities") };
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(caps.get(c), Some(&FieldValue::Bool(true)), "capability {c}");
    }
    assert_eq!(r.tune.frame_max, 131072);
    assert_eq!(r.tune.channel_max, 2047);
    assert_eq!(r.tune.heartbeat, 60);
    r.close().await;
    b.stop().await;
}

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back_and_socket_closed() {
    let b = TestBroker::start().await;
    let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    s.write_all(b"AMQP\x01\x01\x00\x0a").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, PROTOCOL_HEADER);
    // HTTP on the AMQP port is refused the same way.
    let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, PROTOCOL_HEADER);
    b.stop().await;
}

#[tokio::test]
async fn wrong_password_is_refused_with_403() {
    let b = TestBroker::start().await;
    let err = Raw::connect_with(b.addr, Options { pass: "nope", ..Default::default() }).await.err().expect("refused");
    let close = err.expect("connection.close because authentication_failure_close was advertised");
    assert_eq!(close.reply_code, ACCESS_REFUSED);
    assert!(close.reply_text.to_string().starts_with("ACCESS_REFUSED - Login was refused"));
    // Without the capability the socket just closes.
    let err = Raw::connect_with(b.addr, Options { pass: "nope", capabilities: false, ..Default::default() })
        .await
        .err()
        .expect("refused");
    assert!(err.is_none());
    b.stop().await;
}

#[tokio::test]
async fn amqplain_mechanism_is_accepted() {
    let b = TestBroker::start().await;
    let mut r = Raw::tcp(b.addr).await;
    r.send_bytes(PROTOCOL_HEADER).await;
    let (_, m) = r.recv_method().await;
    let Method::ConnectionStart(s) = m else { panic!() };
    assert_eq!(s.mechanisms.as_bytes(), b"PLAIN AMQPLAIN");
    let mut t = warren_protocol::FieldTable::new();
    t.insert("LOGIN", FieldValue::LongStr("guest".into()));
    t.insert("PASSWORD", FieldValue::LongStr("guest".into()));
    let mut enc = bytes::BytesMut::new();
    t.encode(&mut enc);
    let resp = enc.split_off(4).freeze();
    r.send(
        0,
        ConnectionStartOk {
            client_properties: Default::default(),
            mechanism: "AMQPLAIN".into(),
            response: warren_protocol::LongStr(resp),
            locale: "en_US".into(),
        },
    )
    .await;
    assert!(matches!(r.recv_method().await.1, Method::ConnectionTune(_)));
    b.stop().await;
}

#[tokio::test]
async fn unknown_vhost_is_530() {
    let b = TestBroker::start().await;
    let err = Raw::connect_with(b.addr, Options { vhost: "nope", ..Default::default() }).await.err().unwrap().unwrap();
    assert_eq!(err.reply_code, NOT_ALLOWED);
    assert!(err.reply_text.to_string().contains("vhost nope not found"));
    b.stop().await;
}

#[tokio::test]
async fn client_frame_max_4096_is_honoured_both_ways() {
    let b = TestBroker::start().await;
    let mut r = Raw::connect_with(b.addr, Options { frame_max: 4096, ..Default::default() }).await.unwrap();
    r.open_channel(1).await;
    r.declare(1, "fm").await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    r.publish(1, "", "fm", &body).await; // sent as 4088-byte body frames
    let d = match r.call(1, BasicGet { queue: "fm".into(), no_ack: true, ..Default::default() }).await {
        m @ Method::BasicGetOk(_) => r.content_after(m).await, // asserts each frame <= 4096
        other => panic!("{other:?}"),
    };
    assert_eq!(&d.body[..], &body[..]);
    // A frame over the negotiated 4096 is a connection error 501.
    let mut big = bytes::BytesMut::new();
    warren_protocol::frame::encode_raw(&mut big, warren_protocol::FrameType::Body, 1, &[0u8; 5000]);
    r.send_bytes(&big).await;
    let c = r.expect_connection_close().await;
    assert_eq!(c.reply_code, FRAME_ERROR);
    b.stop().await;
}

#[tokio::test]
async fn server_sends_heartbeats_and_drops_a_silent_peer() {
    let b = TestBroker::start().await;
    let mut r = Raw::connect_with(b.addr, Options { heartbeat: 1, ..Default::default() }).await.unwrap();
    // The server heartbeats an idle connection (every half interval).
    let f = r.try_recv_any().await.expect("a heartbeat");
    assert_eq!(f.kind, warren_protocol::FrameType::Heartbeat);
    // We never send anything: after two missed intervals the server closes the socket.
    r.expect_eof().await;
    b.stop().await;
}

#[tokio::test]
async fn a_client_that_heartbeats_stays_connected() {
    let b = TestBroker::start().await;
    let mut r = Raw::connect_with(b.addr, Options { heartbeat: 1, ..Default::default() }).await.unwrap();
    r.open_channel(1).await;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        // Answer each server heartbeat with ours.
        let f = r.try_recv_any().await.expect("connection alive");
        assert_eq!(f.kind, warren_protocol::FrameType::Heartbeat);
        let mut hb = bytes::BytesMut::new();
        warren_protocol::frame::encode_heartbeat(&mut hb);
        r.send_bytes(&hb).await;
    }
    r.declare(1, "still-alive").await;
    b.stop().await;
}

#[tokio::test]
async fn handshake_timeout_closes_idle_sockets() {
    let cfg = Config { handshake_timeout: Duration::from_millis(300), ..Config::loopback(0) };
    let b = TestBroker::with_config(cfg).await;
    let mut r = Raw::tcp(b.addr).await;
    r.expect_eof().await;
    b.stop().await;
}

#[tokio::test]
async fn client_close_gets_close_ok() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let reply =
        r.call(0, ConnectionClose { reply_code: 200, reply_text: "bye".into(), class_id: 0, method_id: 0 }).await;
    assert!(matches!(reply, Method::ConnectionCloseOk(_)));
    r.expect_eof().await;
    b.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections_with_320() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    let h = b.handle.unwrap();
    let stop = tokio::spawn(h.shutdown());
    let c = r.expect_connection_close().await;
    assert_eq!(c.reply_code, CONNECTION_FORCED);
    stop.await.unwrap();
}

#[tokio::test]
async fn method_on_unopened_channel_is_504() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.send(3, QueueDeclare { queue: "x".into(), ..Default::default() }).await;
    let c = r.expect_connection_close().await;
    assert_eq!(c.reply_code, CHANNEL_ERROR);
    assert_eq!((c.class_id, c.method_id), (50, 10));
    b.stop().await;
}

#[tokio::test]
async fn second_channel_open_is_504() {
    let b = TestBroker::start().await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.send(1, ChannelOpen::default()).await;
    assert_eq!(r.expect_connection_close().await.reply_code, CHANNEL_ERROR);
    b.stop().await;
}

#[tokio::test]
async fn content_out_of_order_is_505() {
    let b = TestBroker::start().await;
    // A content header with no publish before it.
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let mut f = bytes::BytesMut::new();
    warren_protocol::fast::header(&mut f, 1, 3, &[0, 0]);
    r.send_bytes(&f).await;
    assert_eq!(r.expect_connection_close().await.reply_code, UNEXPECTED_FRAME);
    // A method where the content header should be.
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.send(1, BasicPublish { routing_key: "q".into(), ..Default::default() }).await;
    r.send(1, QueueDeclare { queue: "x".into(), ..Default::default() }).await;
    assert_eq!(r.expect_connection_close().await.reply_code, UNEXPECTED_FRAME);
    // A body frame before the header.
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.send(1, BasicPublish { routing_key: "q".into(), ..Default::default() }).await;
    let mut f = bytes::BytesMut::new();
    warren_protocol::frame::encode_raw(&mut f, warren_protocol::FrameType::Body, 1, b"abc");
    r.send_bytes(&f).await;
    assert_eq!(r.expect_connection_close().await.reply_code, UNEXPECTED_FRAME);
    b.stop().await;
}

#[tokio::test]
async fn garbage_frames_close_only_their_connection() {
    let b = TestBroker::start().await;
    let mut good = b.raw().await;
    good.open_channel(1).await;
    good.declare(1, "survivor").await;
    for junk in [
        &b"\x01\x00\x01\x00\x00\x00\x02\xff\xff\x00"[..],
        b"\x09\x00\x00\x00\x00\x00\x00\xce",
        b"\x01\x00\x01\x00\x00\x00\x04\x00\x3c\x00\x28\x00",
    ] {
        let mut bad = b.raw().await;
        bad.send_bytes(junk).await;
        let c = bad.expect_connection_close().await;
        assert!(c.reply_code >= 500, "junk {junk:?} -> {c:?}");
    }
    // Undecodable method arguments: 502 SYNTAX_ERROR.
    let mut bad = b.raw().await;
    bad.open_channel(1).await;
    let mut f = bytes::BytesMut::new();
    warren_protocol::frame::encode_raw(&mut f, warren_protocol::FrameType::Method, 1, &[0, 50, 0, 10, 0]);
    bad.send_bytes(&f).await;
    assert_eq!(bad.expect_connection_close().await.reply_code, SYNTAX_ERROR);
    // Unknown method: 540.
    let mut bad = b.raw().await;
    let mut f = bytes::BytesMut::new();
    warren_protocol::frame::encode_raw(&mut f, warren_protocol::FrameType::Method, 1, &[0, 99, 0, 99]);
    bad.send_bytes(&f).await;
    assert_eq!(bad.expect_connection_close().await.reply_code, NOT_IMPLEMENTED);
    // The well-behaved connection is untouched.
    good.publish(1, "", "survivor", b"ok").await;
    assert_eq!(good.declare(1, "survivor").await.message_count, 1);
    b.stop().await;
}

/// Random bytes after a good handshake, on many connections: the broker answers each with a close
/// (or drops it), never panics, and a well-behaved connection keeps working throughout.
#[tokio::test]
async fn random_frames_never_panic_the_broker() {
    use rand::{Rng, SeedableRng};
    static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
        prev(info);
    }));
    let b = TestBroker::start().await;
    let mut good = b.raw().await;
    good.open_channel(1).await;
    good.declare(1, "steady").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for round in 0..200u32 {
        let mut r = b.raw().await;
        r.open_channel(1).await;
        let mut junk = Vec::new();
        for _ in 0..rng.random_range(1..6) {
            // Mostly well-framed frames with random payloads, sometimes raw noise.
            if rng.random_bool(0.8) {
                let kind = [1u8, 2, 3, 8][rng.random_range(0..4)];
                let payload: Vec<u8> = if kind == 1 && rng.random_bool(0.7) {
                    // A real class/method id followed by random arguments.
                    let (c, m, _) = warren_protocol::method::ALL_METHODS
                        [rng.random_range(0..warren_protocol::method::ALL_METHODS.len())];
                    let mut p = vec![(c >> 8) as u8, c as u8, (m >> 8) as u8, m as u8];
                    p.extend((0..rng.random_range(0..40)).map(|_| rng.random::<u8>()));
                    p
                } else {
                    (0..rng.random_range(0..64)).map(|_| rng.random::<u8>()).collect()
                };
                let mut f = bytes::BytesMut::new();
                let kind = warren_protocol::FrameType::from_u8(kind).unwrap();
                warren_protocol::frame::encode_raw(&mut f, kind, rng.random_range(0..3), &payload);
                junk.extend_from_slice(&f);
            } else {
                junk.extend((0..rng.random_range(1..32)).map(|_| rng.random::<u8>()));
            }
        }
        r.send_bytes(&junk).await;
        // Whatever happens to this connection, the good one still round-trips.
        if round % 20 == 0 {
            good.publish(1, "", "steady", b"ping").await;
            assert_eq!(good.declare(1, "steady").await.message_count, round / 20 + 1);
        }
        drop(r);
    }
    assert!(!PANICKED.load(std::sync::atomic::Ordering::SeqCst), "the broker panicked on client input");
    b.stop().await;
}
