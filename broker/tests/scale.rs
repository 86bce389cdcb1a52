//! Resource bounds against the real `warren` binary, measured from outside (its RSS in /proc):
//! 10,000 concurrent connections, and a consumer that never reads its socket.
mod common;
use common::raw::{Options, Raw};
use std::io::BufRead;
use std::net::SocketAddr;
use std::time::Duration;
use warren_protocol::method::*;
use warren_protocol::properties::BasicProperties;
use warren_protocol::{Method, ShortStr};

/// Connections the first test holds open at once.
const CONNECTIONS: usize = 10_000;

/// A `warren` process on a free loopback port with its own data directory, killed on drop.
struct Warren {
    child: std::process::Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Warren {
    fn start(extra: &[&str]) -> Warren {
        let dir = std::env::temp_dir().join(format!("warren-scale-{}-{}", std::process::id(), rand::random::<u32>()));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(common::PROCESS_ARGS)
            .args(["--log-level", "error", "--data-dir"])
            .arg(&dir)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn warren");
        let out = child.stdout.take().expect("stdout");
        let mut addr = None;
        for line in std::io::BufReader::new(out).lines() {
            let line = line.expect("stdout line");
            if let Some(a) = line.strip_prefix("Listening for AMQP on ") {
                addr = a.parse().ok();
            }
            if line == "Server startup complete" {
                break;
            }
        }
        Warren { child, addr: addr.expect("listening address printed"), dir }
    }

    /// Resident set size, bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        kb * 1024
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Raise this process's open-file limit (the broker child inherits it) to at least `need`: the
/// soft limit up to the hard one, and the hard one too where the process may (root). Returns the
/// soft limit now in force.
fn raise_file_limit(need: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    if hard < need {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(need), maximum: Some(need) });
    }
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: lim.maximum, maximum: lim.maximum });
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn s(x: &str) -> ShortStr {
    ShortStr::from(x.to_string())
}

/// 10,000 clients connected at once (full handshake and a channel each): the broker's memory grows
/// by a bounded amount per connection, and a client connecting meanwhile works normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_connections() {
    // Each connection is one descriptor here and one in the broker; room for the rest.
    let need = CONNECTIONS as u64 + 200;
    let limit = raise_file_limit(need);
    assert!(
        limit >= need,
        "the open-file limit is {limit} and could not be raised to {need}: this test needs \
         {CONNECTIONS} connections (raise the hard limit, e.g. ulimit -Hn {need}, to run it)"
    );
    let n = CONNECTIONS;
    let w = Warren::start(&[]);
    let before = w.rss();
    let mut conns = Vec::with_capacity(n);
    let mut set = tokio::task::JoinSet::new();
    let addr = w.addr;
    for i in 0..n {
        set.spawn(async move {
            let mut r = Raw::connect_with(addr, Options::default()).await.expect("handshake");
            r.open_channel(1).await;
            r
        });
        // At most 256 handshakes in flight (the listen backlog is 1024).
        if set.len() >= 256 || i + 1 == n {
            while let Some(r) = set.join_next().await {
                conns.push(r.expect("connection task"));
                if set.len() < 128 && i + 1 < n {
                    break;
                }
            }
        }
    }
    assert_eq!(conns.len(), n);
    let after = w.rss();
    let per_conn = after.saturating_sub(before) / n as u64;
    eprintln!("{n} connections: RSS {} -> {} MiB, {per_conn} bytes per connection", before >> 20, after >> 20);
    // Measured at about 8 KB per idle connection with one channel (BENCHMARKS.md); bounded here
    // with room for allocator slack.
    assert!(per_conn < 40 * 1024, "{per_conn} bytes per idle connection");
    // A newcomer is served normally while they are all open.
    let mut r = Raw::connect(addr).await;
    r.open_channel(1).await;
    r.declare(1, "while-crowded").await;
    for i in 0..100u32 {
        r.publish(1, "", "while-crowded", &i.to_be_bytes()).await;
    }
    assert_eq!(r.declare(1, "while-crowded").await.message_count, 100);
    // And some of the crowd are still alive and responsive.
    for c in conns.iter_mut().step_by(n / 10) {
        let q = QueueDeclare { queue: s("while-crowded"), passive: true, ..Default::default() };
        assert!(matches!(c.call(1, q).await, Method::QueueDeclareOk(_)));
    }
    drop(conns);
}

/// A consumer that stops reading its socket: the broker stops delivering to it once its outbound
/// buffer is full, the messages stay in the queue (persistent ones paged to disk), the broker's
/// memory stays bounded, and other consumers are served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_reads_does_not_grow_the_broker() {
    const BODY: usize = 64 * 1024;
    const MESSAGES: usize = 2_500; // 160 MiB
    let w = Warren::start(&[]);
    let mut admin = Raw::connect(w.addr).await;
    admin.open_channel(1).await;
    for q in ["stuck", "flowing"] {
        let d = QueueDeclare { queue: s(q), durable: true, ..Default::default() };
        assert!(matches!(admin.call(1, d).await, Method::QueueDeclareOk(_)));
    }
    // The stuck consumer: no-ack (nothing limits deliveries but the broker), and it never reads.
    let mut stuck = Raw::connect(w.addr).await;
    stuck.open_channel(1).await;
    let c = BasicConsume { queue: s("stuck"), no_ack: true, ..Default::default() };
    assert!(matches!(stuck.call(1, c).await, Method::BasicConsumeOk(_)));
    let before = w.rss();
    let mut publisher = Raw::connect(w.addr).await;
    publisher.open_channel(1).await;
    let persistent = BasicProperties { delivery_mode: Some(2), ..Default::default() };
    let body = vec![7u8; BODY];
    for _ in 0..MESSAGES {
        publisher.publish_props(1, "", "stuck", &body, persistent.clone()).await;
    }
    // A barrier: every publish above has been routed.
    let ready = publisher.declare_passive(1, "stuck").await;
    // All but what fits in the stuck connection's buffers is still in the queue.
    assert!(ready as usize >= MESSAGES - 400, "only {ready} of {MESSAGES} still queued");
    // Another consumer, on another connection, is served normally meanwhile.
    let mut flowing = Raw::connect(w.addr).await;
    flowing.open_channel(1).await;
    let c = BasicConsume { queue: s("flowing"), no_ack: true, ..Default::default() };
    assert!(matches!(flowing.call(1, c).await, Method::BasicConsumeOk(_)));
    for i in 0..200u32 {
        publisher.publish(1, "", "flowing", &i.to_be_bytes()).await;
    }
    for i in 0..200u32 {
        let d = flowing.recv_content().await;
        assert_eq!(&d.body[..], &i.to_be_bytes());
    }
    // Memory: the queue keeps a bounded window in memory and the rest on disk, and the stuck
    // connection holds at most its outbound buffer.
    let grown = common::eventually(Duration::from_secs(10), || async {
        let g = w.rss().saturating_sub(before);
        (g < 96 << 20).then_some(g)
    })
    .await;
    eprintln!(
        "{} MiB published to a consumer that never reads: broker RSS grew {} MiB",
        (MESSAGES * BODY) >> 20,
        grown >> 20
    );
    drop(stuck);
    drop(flowing);
    admin.close().await;
}
