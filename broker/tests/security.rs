//! Security through a real socket: permissions on every operation of RabbitMQ's access-control
//! table, vhost access, loopback-only users, runtime permission changes, limits (max message size,
//! connection_max, handshake timeout) and AMQPS (TLS, with and without client certificates).
mod common;
use common::raw::{Options, Raw};
use common::TestBroker;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::auth::{Permission, TopicPermission, User};
use warren::config::{Config, TlsConfig};
use warren_protocol::constants::*;
use warren_protocol::method::*;
use warren_protocol::{FieldTable, FieldValue, Method, ShortStr};

fn s(x: &str) -> ShortStr {
    ShortStr::from(x.to_string())
}

fn broker_of(b: &TestBroker) -> &Arc<warren::broker::Broker> {
    &b.handle.as_ref().expect("running").broker
}

/// Add user `name` (password `pw`) with these permissions on `/`.
fn add_user(b: &TestBroker, name: &str, configure: &str, write: &str, read: &str) {
    let broker = broker_of(b);
    broker.put_user(User::new(name, "pw", vec![]), None);
    broker
        .set_permission(
            Permission {
                user: name.into(),
                vhost: "/".into(),
                configure: configure.into(),
                write: write.into(),
                read: read.into(),
            },
            None,
        )
        .expect("valid permissions");
}

fn as_user(user: &'static str) -> Options {
    Options { user, pass: "pw", ..Options::default() }
}

fn args(k: &'static str, v: &str) -> FieldTable {
    let mut t = FieldTable::new();
    t.insert(k, FieldValue::LongStr(v.as_bytes().to_vec().into()));
    t
}

/// Send `m` on a fresh channel and return `Ok(reply)` or `Err((code, text))` from channel.close.
async fn attempt(r: &mut Raw, ch: u16, m: impl Into<Method>) -> Result<Method, (u16, String)> {
    r.open_channel(ch).await;
    let reply = r.call(ch, m).await;
    match reply {
        Method::ChannelClose(c) => {
            r.send(ch, ChannelCloseOk).await;
            Err((c.reply_code, c.reply_text.to_string()))
        }
        other => Ok(other),
    }
}

fn refused(res: Result<Method, (u16, String)>, what: &str) {
    match res {
        Err((code, text)) => {
            assert_eq!(code, ACCESS_REFUSED, "{text}");
            assert_eq!(text, format!("ACCESS_REFUSED - {what} refused for user 'app'"));
        }
        Ok(m) => panic!("expected 403 for '{what}', got {m:?}"),
    }
}

/// Every row of RabbitMQ's access-control table, refused and granted, for a user whose three
/// expressions only cover names starting `app.`.
#[tokio::test]
async fn every_operation_is_checked_against_the_users_permissions() {
    let b = TestBroker::start().await;
    let mut admin = b.raw().await;
    admin.open_channel(1).await;
    for (x, kind) in [("app.x", "direct"), ("other.x", "direct")] {
        let d = ExchangeDeclare { exchange: s(x), kind: s(kind), ..Default::default() };
        assert!(matches!(admin.call(1, d).await, Method::ExchangeDeclareOk(_)));
    }
    admin.declare(1, "app.q").await;
    admin.declare(1, "other.q").await;
    add_user(&b, "app", "^app\\.", "^app\\.", "^app\\.");
    let mut r = Raw::connect_with(b.addr, as_user("app")).await.expect("app logs in");
    let mut ch = 0u16;
    let mut next = || {
        ch += 1;
        ch
    };
    let v = "in vhost '/'";

    // exchange.declare: configure on the exchange; passive needs nothing.
    let d = ExchangeDeclare { exchange: s("other.new"), kind: s("fanout"), ..Default::default() };
    refused(attempt(&mut r, next(), d).await, &format!("configure access to exchange 'other.new' {v}"));
    let d = ExchangeDeclare { exchange: s("app.new"), kind: s("fanout"), ..Default::default() };
    assert!(matches!(attempt(&mut r, next(), d).await, Ok(Method::ExchangeDeclareOk(_))));
    let d = ExchangeDeclare { exchange: s("other.x"), kind: s("direct"), passive: true, ..Default::default() };
    assert!(matches!(attempt(&mut r, next(), d).await, Ok(Method::ExchangeDeclareOk(_))));
    // ... with an alternate exchange: write on the AE too.
    let d = ExchangeDeclare {
        exchange: s("app.with-ae"),
        kind: s("fanout"),
        arguments: args("alternate-exchange", "other.x"),
        ..Default::default()
    };
    refused(attempt(&mut r, next(), d).await, &format!("write access to exchange 'other.x' {v}"));
    // exchange.delete: configure.
    let d = ExchangeDelete { exchange: s("other.x"), ..Default::default() };
    refused(attempt(&mut r, next(), d).await, &format!("configure access to exchange 'other.x' {v}"));

    // queue.declare: configure on the queue (server-named ones too); passive needs nothing.
    let d = QueueDeclare { queue: s("other.new"), ..Default::default() };
    refused(attempt(&mut r, next(), d).await, &format!("configure access to queue 'other.new' {v}"));
    let c = next();
    match attempt(&mut r, c, QueueDeclare::default()).await {
        Err((ACCESS_REFUSED, text)) => assert!(text.contains("configure access to queue 'amq.gen-"), "{text}"),
        other => panic!("server-named queue: {other:?}"),
    }
    let d = QueueDeclare { queue: s("other.q"), passive: true, ..Default::default() };
    assert!(matches!(attempt(&mut r, next(), d).await, Ok(Method::QueueDeclareOk(_))));
    // ... with a dead-letter exchange: write on the DLX.
    let d = QueueDeclare {
        queue: s("app.dlq"),
        arguments: args("x-dead-letter-exchange", "other.x"),
        ..Default::default()
    };
    refused(attempt(&mut r, next(), d).await, &format!("write access to exchange 'other.x' {v}"));
    let d = QueueDeclare { queue: s("app.mine"), ..Default::default() };
    assert!(matches!(attempt(&mut r, next(), d).await, Ok(Method::QueueDeclareOk(_))));

    // queue.bind / unbind: write on the queue, read on the exchange.
    let bind = |q: &str, x: &str| QueueBind { queue: s(q), exchange: s(x), routing_key: s("k"), ..Default::default() };
    refused(attempt(&mut r, next(), bind("app.q", "other.x")).await, &format!("read access to exchange 'other.x' {v}"));
    refused(attempt(&mut r, next(), bind("other.q", "app.x")).await, &format!("write access to queue 'other.q' {v}"));
    assert!(matches!(attempt(&mut r, next(), bind("app.q", "app.x")).await, Ok(Method::QueueBindOk(_))));
    let u = QueueUnbind { queue: s("other.q"), exchange: s("app.x"), routing_key: s("k"), ..Default::default() };
    refused(attempt(&mut r, next(), u).await, &format!("write access to queue 'other.q' {v}"));

    // exchange.bind / unbind: write on the destination, read on the source.
    let xb = |d: &str, src: &str| ExchangeBind { destination: s(d), source: s(src), ..Default::default() };
    refused(attempt(&mut r, next(), xb("other.x", "app.x")).await, &format!("write access to exchange 'other.x' {v}"));
    refused(attempt(&mut r, next(), xb("app.new", "other.x")).await, &format!("read access to exchange 'other.x' {v}"));
    assert!(matches!(attempt(&mut r, next(), xb("app.new", "app.x")).await, Ok(Method::ExchangeBindOk(_))));

    // basic.get, basic.consume, queue.purge: read on the queue; queue.delete: configure.
    let g = BasicGet { queue: s("other.q"), ..Default::default() };
    refused(attempt(&mut r, next(), g).await, &format!("read access to queue 'other.q' {v}"));
    let c = BasicConsume { queue: s("other.q"), ..Default::default() };
    refused(attempt(&mut r, next(), c).await, &format!("read access to queue 'other.q' {v}"));
    let p = QueuePurge { queue: s("other.q"), ..Default::default() };
    refused(attempt(&mut r, next(), p).await, &format!("read access to queue 'other.q' {v}"));
    let d = QueueDelete { queue: s("other.q"), ..Default::default() };
    refused(attempt(&mut r, next(), d).await, &format!("configure access to queue 'other.q' {v}"));

    // basic.publish: write on the exchange; the default exchange is checked as amq.default.
    let c = next();
    r.open_channel(c).await;
    r.publish(c, "", "app.q", b"via default").await;
    let close = r.expect_channel_close(c).await;
    assert_eq!(close.reply_code, ACCESS_REFUSED);
    assert_eq!(
        close.reply_text.to_string(),
        format!("ACCESS_REFUSED - write access to exchange 'amq.default' {v} refused for user 'app'")
    );
    assert_eq!((close.class_id, close.method_id), (60, 40));
    // Granted operations work end to end: publish to app.x, routed to app.q, read back.
    let c = next();
    r.open_channel(c).await;
    r.publish(c, "app.x", "k", b"allowed").await;
    let ok = r.call(c, BasicGet { queue: s("app.q"), no_ack: true, ..Default::default() }).await;
    let got = r.content_after(ok).await;
    assert_eq!(&got.body[..], b"allowed");
    // Nothing refused reached other.q; the admin's connection was never disturbed.
    assert_eq!(admin.declare(1, "other.q").await.message_count, 0);
    r.close().await;
    admin.close().await;
    b.stop().await;
}

/// basic.get one message (no ack) from `queue`: its body.
async fn get_body(r: &mut Raw, ch: u16, queue: &str) -> bytes::Bytes {
    let ok = r.call(ch, BasicGet { queue: s(queue), no_ack: true, ..Default::default() }).await;
    r.content_after(ok).await.body
}

/// Topic permissions, set while the user is connected: routing keys on publish and binding keys
/// on queue.bind / exchange.bind are checked on topic exchanges only, `{username}` expanded;
/// clearing them lets everything through again.
#[tokio::test]
async fn topic_permissions_check_routing_and_binding_keys_of_topic_exchanges() {
    let b = TestBroker::start().await;
    add_user(&b, "app", ".*", ".*", ".*");
    let mut admin = b.raw().await;
    admin.open_channel(1).await;
    let d = ExchangeDeclare { exchange: s("plain.x"), kind: s("direct"), ..Default::default() };
    assert!(matches!(admin.call(1, d).await, Method::ExchangeDeclareOk(_)));
    let mut r = Raw::connect_with(b.addr, as_user("app")).await.expect("app logs in");
    r.open_channel(1).await;
    r.declare(1, "tq").await;
    let tp = |x: &str, w: &str, rd: &str| TopicPermission {
        user: "app".into(),
        vhost: "/".into(),
        exchange: x.into(),
        write: w.into(),
        read: rd.into(),
    };
    let broker = broker_of(&b);
    assert!(broker.set_topic_permission(tp("amq.topic", "^{username}\\.", "^orders\\.")).expect("valid"));
    assert!(broker.set_topic_permission(tp("plain.x", "^$", "^$")).expect("valid"));
    assert!(broker.set_topic_permission(tp("amq.topic", "(", ".*")).is_err());
    let v = "in exchange 'amq.topic' in vhost '/'";
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    // Binding keys: read expression.
    let bind =
        |key: &str| QueueBind { queue: s("tq"), exchange: s("amq.topic"), routing_key: s(key), ..Default::default() };
    assert!(matches!(attempt(&mut r, next(), bind("orders.#")).await, Ok(Method::QueueBindOk(_))));
    refused(attempt(&mut r, next(), bind("payments.#")).await, &format!("read access to topic 'payments.#' {v}"));
    let xb =
        ExchangeBind { destination: s("plain.x"), source: s("amq.topic"), routing_key: s("x"), ..Default::default() };
    refused(attempt(&mut r, next(), xb).await, &format!("read access to topic 'x' {v}"));
    // A non-topic exchange is not checked, whatever its topic permission says.
    let pb = QueueBind { queue: s("tq"), exchange: s("plain.x"), routing_key: s("k"), ..Default::default() };
    assert!(matches!(attempt(&mut r, next(), pb).await, Ok(Method::QueueBindOk(_))));
    let c = next();
    r.open_channel(c).await;
    r.publish(c, "plain.x", "k", b"direct").await;
    // Routing keys: write expression, `{username}` expanded.
    r.publish(c, "amq.topic", "app.orders.new", b"mine").await;
    r.publish(c, "amq.topic", "orders.other", b"not mine").await;
    let close = r.expect_channel_close(c).await;
    assert_eq!((close.reply_code, close.class_id, close.method_id), (ACCESS_REFUSED, 60, 40));
    assert_eq!(
        close.reply_text.to_string(),
        format!("ACCESS_REFUSED - write access to topic 'orders.other' {v} refused for user 'app'")
    );
    let c = next();
    r.open_channel(c).await;
    assert_eq!(&get_body(&mut r, c, "tq").await[..], b"direct");
    // Not bound by app.orders.new (bound keys: orders.#, k): nothing else arrived.
    assert_eq!(admin.declare_passive(1, "tq").await, 0);
    // Cleared: the open connection may use any key at its next read.
    assert!(broker.clear_topic_permissions("app", "/", None));
    assert!(broker.topic_permissions().is_empty());
    r.publish(c, "amq.topic", "orders.other", b"now allowed").await;
    assert_eq!(&get_body(&mut r, c, "tq").await[..], b"now allowed");
    r.close().await;
    admin.close().await;
    b.stop().await;
}

#[tokio::test]
async fn a_vhost_without_permissions_is_530_and_a_bad_password_403() {
    let b = TestBroker::start().await;
    broker_of(&b).add_vhost("/team", None);
    add_user(&b, "app", ".*", ".*", ".*");
    let o = Options { vhost: "/team", ..as_user("app") };
    let close = Raw::connect_with(b.addr, o).await.err().flatten().expect("refused with connection.close");
    assert_eq!(close.reply_code, NOT_ALLOWED);
    assert_eq!(close.reply_text.to_string(), "NOT_ALLOWED - access to vhost '/team' refused for user 'app'");
    assert_eq!((close.class_id, close.method_id), (10, 40));
    let o = Options { pass: "wrong", ..as_user("app") };
    let close = Raw::connect_with(b.addr, o).await.err().flatten().expect("refused with connection.close");
    assert_eq!(close.reply_code, ACCESS_REFUSED);
    // A user that does not exist gets exactly the same answer (nothing tells which it was).
    let o = Options { user: "nobody", pass: "pw", ..Options::default() };
    let close2 = Raw::connect_with(b.addr, o).await.err().flatten().expect("refused with connection.close");
    assert_eq!(close.reply_text, close2.reply_text);
    b.stop().await;
}

/// Permissions changed or cleared while a user is connected apply to its next operation.
#[tokio::test]
async fn permission_changes_apply_to_open_connections() {
    let b = TestBroker::start().await;
    add_user(&b, "app", ".*", ".*", ".*");
    let mut r = Raw::connect_with(b.addr, as_user("app")).await.expect("login");
    r.open_channel(1).await;
    r.declare(1, "app.live").await;
    broker_of(&b).clear_permission("app", "/", None);
    let g = BasicGet { queue: s("app.live"), ..Default::default() };
    refused(attempt(&mut r, 2, g).await, "read access to queue 'app.live' in vhost '/'");
    add_user(&b, "app", "", "", "^app\\.");
    let g = BasicGet { queue: s("app.live"), no_ack: true, ..Default::default() };
    assert!(matches!(attempt(&mut r, 3, g).await, Ok(Method::BasicGetEmpty(_))));
    let d = QueueDelete { queue: s("app.live"), ..Default::default() };
    refused(attempt(&mut r, 4, d).await, "configure access to queue 'app.live' in vhost '/'");
    // Invalid expressions are refused when set, and change nothing.
    let bad =
        Permission { user: "app".into(), vhost: "/".into(), configure: "(".into(), write: "".into(), read: "".into() };
    assert!(broker_of(&b).set_permission(bad, None).is_err());
    let g = BasicGet { queue: s("app.live"), no_ack: true, ..Default::default() };
    assert!(matches!(attempt(&mut r, 5, g).await, Ok(Method::BasicGetEmpty(_))));
    r.close().await;
    b.stop().await;
}

/// An address of this machine that is not loopback (connections to it still stay on this host).
fn non_loopback_local_ip() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the source address of the route.
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").or_else(|_| s.connect("10.255.255.1:9")).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A dummy (or veth) network interface with one private address, created for a test and deleted
/// on drop.
/// Addresses on it are local: connections to them never leave this machine.
struct DummyInterface {
    name: String,
    ip: std::net::IpAddr,
}

impl DummyInterface {
    /// Needs root (CAP_NET_ADMIN) and `ip`; None otherwise.
    fn create() -> Option<DummyInterface> {
        let pid = std::process::id();
        let name = format!("warren-t{}", pid % 100_000);
        // 198.18.0.0/15 is reserved for benchmarking and never routed.
        let ip = std::net::Ipv4Addr::new(198, 18, (pid >> 8) as u8, (pid as u8).max(1));
        let ip_cmd = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        // A dummy interface, else (kernels without the dummy module) one end of a veth pair.
        let peer = format!("{name}p");
        if !ip_cmd(&["link", "add", &name, "type", "dummy"])
            && !ip_cmd(&["link", "add", &name, "type", "veth", "peer", "name", &peer])
        {
            return None;
        }
        let d = DummyInterface { name, ip: ip.into() };
        (ip_cmd(&["addr", "add", &format!("{ip}/32"), "dev", &d.name]) && ip_cmd(&["link", "set", &d.name, "up"]))
            .then_some(d)
    }
}

impl Drop for DummyInterface {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.name]).status();
    }
}

/// guest may log in only from loopback (RabbitMQ's loopback_users default); other users anywhere;
/// an empty loopback_users lifts it. Needs a local address that is not loopback: the machine's
/// own, else one on a dummy or veth interface made for the test (root); with neither the test fails with
/// the reason rather than passing untested.
#[tokio::test]
async fn guest_is_refused_from_a_non_loopback_address() {
    let mut _dummy = None;
    let ip = match non_loopback_local_ip() {
        Some(ip) => ip,
        None => {
            let d = DummyInterface::create().expect(
                "this machine has no non-loopback address to connect from, and a dummy or veth \
                 interface could not be created (needs root and `ip`): guest's loopback-only rule is untested",
            );
            eprintln!("no non-loopback address: using {} on interface {}", d.ip, d.name);
            let ip = d.ip;
            _dummy = Some(d);
            ip
        }
    };
    let cfg = Config { listen: vec![std::net::SocketAddr::new([0, 0, 0, 0].into(), 0)], ..Config::loopback(0) };
    let b = TestBroker::with_config(cfg).await;
    let addr = std::net::SocketAddr::new(ip, b.port());
    let close = Raw::connect_with(addr, Options::default()).await.err().flatten().expect("guest refused with close");
    assert_eq!(close.reply_code, ACCESS_REFUSED);
    assert_eq!(close.reply_text.to_string(), "ACCESS_REFUSED - user 'guest' can only connect via localhost");
    // From loopback, guest is fine; another user is fine from anywhere.
    let local = std::net::SocketAddr::new([127, 0, 0, 1].into(), b.port());
    Raw::connect_with(local, Options::default()).await.expect("guest via loopback").close().await;
    add_user(&b, "app", ".*", ".*", ".*");
    Raw::connect_with(addr, as_user("app")).await.expect("app from anywhere").close().await;
    b.stop().await;

    let cfg = Config {
        listen: vec![std::net::SocketAddr::new([0, 0, 0, 0].into(), 0)],
        loopback_users: vec![],
        ..Config::loopback(0)
    };
    let b = TestBroker::with_config(cfg).await;
    let addr = std::net::SocketAddr::new(ip, b.port());
    Raw::connect_with(addr, Options::default()).await.expect("guest allowed when lifted").close().await;
    b.stop().await;
}

/// A body over max_message_size is refused at its header with 406, before the body is buffered:
/// even a header announcing 2^62 bytes followed by body frames costs nothing, and the connection
/// and its other channels go on.
#[tokio::test]
async fn max_message_size_is_enforced_at_the_header() {
    let cfg = Config { max_message_size: 1024, ..Config::loopback(0) };
    let b = TestBroker::with_config(cfg).await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.declare(1, "sized").await;
    r.publish(1, "", "sized", &[7u8; 1024]).await;
    r.open_channel(2).await;
    r.publish(2, "", "sized", &[7u8; 1025]).await;
    let close = r.expect_channel_close(2).await;
    assert_eq!(close.reply_code, PRECONDITION_FAILED);
    assert_eq!(
        close.reply_text.to_string(),
        "PRECONDITION_FAILED - message size 1025 is larger than configured max size 1024"
    );
    // A header announcing 2^62 bytes, then 8 MB of body frames the broker must not keep.
    r.open_channel(3).await;
    let mut f = bytes::BytesMut::new();
    let m: Method = BasicPublish { exchange: s(""), routing_key: s("sized"), ..Default::default() }.into();
    warren_protocol::frame::encode_method(&mut f, 3, &m);
    let mut header = vec![0u8, 60, 0, 0];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&[0, 0]);
    warren_protocol::frame::encode_raw(&mut f, warren_protocol::FrameType::Header, 3, &header);
    r.send_bytes(&f).await;
    let chunk = vec![1u8; 100_000];
    for _ in 0..80 {
        let mut f = bytes::BytesMut::new();
        warren_protocol::frame::encode_raw(&mut f, warren_protocol::FrameType::Body, 3, &chunk);
        r.send_bytes(&f).await;
    }
    let close = r.expect_channel_close(3).await;
    assert_eq!(close.reply_code, PRECONDITION_FAILED);
    assert!(close.reply_text.to_string().contains(&format!("message size {}", 1u64 << 62)));
    // Channel 1 was never affected: exactly the one good message is queued.
    assert_eq!(r.declare(1, "sized").await.message_count, 1);
    r.close().await;
    b.stop().await;
}

/// connection_max: the connection beyond it is refused at connection.open with 530; a place freed
/// is usable again.
#[tokio::test]
async fn connection_max_refuses_the_extra_connection() {
    let cfg = Config { connection_max: Some(2), ..Config::loopback(0) };
    let b = TestBroker::with_config(cfg).await;
    let one = b.raw().await;
    let mut two = b.raw().await;
    let close = Raw::connect_with(b.addr, Options::default()).await.err().flatten().expect("third refused");
    assert_eq!(close.reply_code, NOT_ALLOWED);
    assert_eq!(close.reply_text.to_string(), "NOT_ALLOWED - connection refused: node connection limit (2) is reached");
    one.close().await;
    let three = common::eventually(Duration::from_secs(5), || async {
        Raw::connect_with(b.addr, Options::default()).await.ok()
    })
    .await;
    // The connections that got in work normally.
    two.open_channel(1).await;
    two.declare(1, "limited").await;
    three.close().await;
    two.close().await;
    b.stop().await;
}

/// A client dribbling its handshake one byte at a time (slow loris) is cut off at the handshake
/// timeout, while others connect and work.
#[tokio::test]
async fn slow_loris_handshake_is_cut_at_the_timeout() {
    let cfg = Config { handshake_timeout: Duration::from_millis(500), ..Config::loopback(0) };
    let b = TestBroker::with_config(cfg).await;
    let mut slow = tokio::net::TcpStream::connect(b.addr).await.expect("connect");
    let started = std::time::Instant::now();
    let dribble = async {
        for byte in PROTOCOL_HEADER.iter().chain([1u8, 0, 0].iter()).cycle().take(400) {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    dribble.await;
    // Whatever the server sent (connection.start), it then closed the socket.
    let mut sink = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut sink)).await;
    assert!(matches!(r, Ok(Ok(_)) | Ok(Err(_))), "socket still open after the handshake timeout");
    assert!(started.elapsed() < Duration::from_secs(15));
    let mut ok = b.raw().await;
    ok.open_channel(1).await;
    ok.declare(1, "after-loris").await;
    ok.close().await;
    b.stop().await;
}

/// Certificates for the TLS tests: a CA, a server certificate for localhost / 127.0.0.1, and a
/// client certificate, all written as PEM files into a fresh directory.
struct Pki {
    dir: std::path::PathBuf,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("warren-tls-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Warren test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let srv_key = KeyPair::generate().expect("key");
    let srv = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&srv_key, &ca, &ca_key)
        .expect("server cert");
    let cli_key = KeyPair::generate().expect("key");
    let mut cli_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    cli_params.distinguished_name.push(DnType::CommonName, "warren-client");
    let cli = cli_params.signed_by(&cli_key, &ca, &ca_key).expect("client cert");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), srv.pem()).expect("write");
    std::fs::write(dir.join("server.key"), srv_key.serialize_pem()).expect("write");
    Pki { dir, ca_pem: ca.pem(), client_cert_pem: cli.pem(), client_key_pem: cli_key.serialize_pem() }
}

async fn tls_broker(pki: &Pki, client_certs: bool) -> (TestBroker, std::net::SocketAddr) {
    let tls = TlsConfig {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        cert_file: pki.dir.join("server.pem"),
        key_file: pki.dir.join("server.key"),
        ca_file: client_certs.then(|| pki.dir.join("ca.pem")),
        fail_if_no_peer_cert: client_certs,
    };
    let cfg = Config { tls: Some(tls), ..Config::loopback(0) };
    let b = TestBroker::with_config(cfg).await;
    let addr = b.handle.as_ref().expect("running").tls_addrs[0];
    (b, addr)
}

async fn tls_connect(
    pki: &Pki,
    addr: std::net::SocketAddr,
    with_cert: bool,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    tls_connect_as(pki, addr, with_cert.then_some(pki)).await
}

/// TLS to `addr` trusting `pki`'s CA, presenting the client certificate of `client` if given
/// (which may come from another CA).
async fn tls_connect_as(
    pki: &Pki,
    addr: std::net::SocketAddr,
    client: Option<&Pki>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("ca pem")).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = if let Some(client) = client {
        let chain = vec![CertificateDer::from_pem_slice(client.client_cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(client.client_key_pem.as_bytes()).expect("key");
        builder.with_client_auth_cert(chain, key).expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await
}

/// AMQPS: a full session (handshake, declare, publish, get) over TLS with a verified server
/// certificate; plain AMQP on the TLS port fails without harming the listener.
#[tokio::test]
async fn amqps_session_with_a_generated_certificate() {
    let pki = make_pki();
    let (b, addr) = tls_broker(&pki, false).await;
    let stream = tls_connect(&pki, addr, false).await.expect("TLS handshake");
    let mut r = Raw::handshake(Raw::over(stream), Options::default()).await.expect("AMQP over TLS");
    r.open_channel(1).await;
    r.declare(1, "over-tls").await;
    let big = vec![42u8; 300_000];
    r.publish(1, "", "over-tls", &big).await;
    let ok = r.call(1, BasicGet { queue: s("over-tls"), no_ack: true, ..Default::default() }).await;
    let got = r.content_after(ok).await;
    assert_eq!(got.body.len(), big.len());
    assert!(got.body.iter().all(|&x| x == 42));
    // Plain AMQP spoken to the TLS port: that connection fails, the listener goes on.
    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
    plain.write_all(PROTOCOL_HEADER).await.expect("write");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut sink)).await.expect("closed");
    assert!(!sink.starts_with(b"\x01\x00\x00"), "no AMQP frame may come back in clear text");
    let stream = tls_connect(&pki, addr, false).await.expect("TLS again");
    Raw::handshake(Raw::over(stream), Options::default()).await.expect("AMQP over TLS again").close().await;
    r.close().await;
    b.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// With a CA and fail_if_no_peer_cert, a client without a certificate gets no AMQP session; one
/// with a certificate signed by the CA does.
#[tokio::test]
async fn amqps_client_certificates_are_verified() {
    let pki = make_pki();
    let (b, addr) = tls_broker(&pki, true).await;
    // TLS 1.3 reports the refusal on the first read, not at connect.
    async fn refused(attempt: std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>) -> bool {
        match attempt {
            Err(_) => true,
            Ok(mut stream) => {
                let _ = stream.write_all(PROTOCOL_HEADER).await;
                let _ = stream.flush().await;
                let mut buf = [0u8; 64];
                !matches!(tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await, Ok(Ok(n)) if n > 0)
            }
        }
    }
    assert!(refused(tls_connect(&pki, addr, false).await).await, "a client without a certificate got an AMQP answer");
    // A well-formed client certificate signed by another CA: refused too (a verifier that
    // accepted any certificate would let it in).
    let other = make_pki();
    assert!(
        refused(tls_connect_as(&pki, addr, Some(&other)).await).await,
        "a client certificate from another CA got an AMQP answer"
    );
    let _ = std::fs::remove_dir_all(&other.dir);
    let stream = tls_connect(&pki, addr, true).await.expect("TLS with a client certificate");
    let mut r = Raw::handshake(Raw::over(stream), Options::default()).await.expect("AMQP over mutual TLS");
    r.open_channel(1).await;
    r.declare(1, "mtls").await;
    r.close().await;
    b.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}
