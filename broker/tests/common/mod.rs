//! Test helpers: an in-process Warren on 127.0.0.1:0, a raw AMQP client built on the protocol
//! crate (for exact frame-level assertions and deliberately bad input), and amqprs helpers.
#![allow(dead_code)]
pub mod hot_path;
pub mod process;
pub mod raw;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use warren::config::Config;
use warren::server::{start, ServerHandle};

/// Flags for a `warren` process started by a test: loopback only, every port chosen by the OS
/// (printed on startup), so tests never collide with each other or a broker on this machine.
pub const PROCESS_ARGS: [&str; 10] =
    ["--bind", "127.0.0.1", "--port", "0", "--management-port", "0", "--prometheus-port", "0", "--stream-port", "0"];

/// A broker running in this process for the duration of a test.
pub struct TestBroker {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        TestBroker::with_config(Config::loopback(0)).await
    }
    pub async fn with_config(cfg: Config) -> TestBroker {
        let handle = start(cfg).await.expect("broker starts");
        let addr = handle.local_addrs[0];
        TestBroker { handle: Some(handle), addr }
    }
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
    /// amqprs connection as guest.
    pub async fn amqprs(&self) -> amqprs::connection::Connection {
        let args = amqprs::connection::OpenConnectionArguments::new("127.0.0.1", self.port(), "guest", "guest");
        amqprs::connection::Connection::open(&args).await.expect("amqprs connects")
    }
    pub async fn raw(&self) -> raw::Raw {
        raw::Raw::connect(self.addr).await
    }
}

/// Poll `f` until it returns Some, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A short string from a test's `&str`.
pub fn s(x: &str) -> warren_protocol::ShortStr {
    warren_protocol::ShortStr::from(x.to_string())
}

/// A raw connection with channel 1 open and a fresh queue named after `prefix`.
pub async fn setup_queue(b: &TestBroker, prefix: &str) -> (raw::Raw, String) {
    let mut r = b.raw().await;
    r.open_channel(1).await;
    let q = unique(prefix);
    r.declare(1, &q).await;
    (r, q)
}

/// A raw connection with channel 1 open.
pub async fn setup_channel(b: &TestBroker) -> raw::Raw {
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r
}

/// A unique name for a test queue.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", warren::ids::random_suffix())
}
