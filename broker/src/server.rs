//! The server: broker-wide state, listeners, accept loops and shutdown fan-out.
//!
//! Runs in: one accept task per listener; `start` spawns them and returns a [`ServerHandle`].
//!
//! # Invariants
//! - Shutdown is one `watch` flag: every connection sees it, sends connection.close 320
//!   CONNECTION_FORCED, and ends; `ServerHandle::shutdown` waits for all of them (bounded by
//!   `SHUTDOWN_GRACE`).
use crate::config::{Config, MEMORY_CHECK_INTERVAL, SHUTDOWN_GRACE};
use crate::connection;
use crate::ids::ConnectionId;
use crate::vhost::VHost;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Broker-wide state.
pub struct Broker {
    /// Configuration it was started with.
    pub config: Config,
    /// Virtual hosts by name.
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    /// Users and passwords. TODO(security issue #7): hashed passwords, tags, permissions.
    users: RwLock<HashMap<String, String>>,
    /// Next connection id.
    next_conn: AtomicU64,
    /// Memory alarm: true while queued message bytes are above the high watermark.
    pub alarm: watch::Sender<bool>,
}

impl Broker {
    pub fn new(config: Config) -> Arc<Broker> {
        let mut vhosts = HashMap::new();
        vhosts.insert(config.default_vhost.clone(), VHost::new(&config.default_vhost));
        let mut users = HashMap::new();
        users.insert(config.default_user.clone(), config.default_pass.clone());
        Arc::new(Broker {
            config,
            vhosts: RwLock::new(vhosts),
            users: RwLock::new(users),
            next_conn: AtomicU64::new(1),
            alarm: watch::channel(false).0,
        })
    }
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }
    pub fn check_password(&self, user: &str, pass: &str) -> bool {
        // rabbitmq-compat: RabbitMQ limits guest to loopback by default; its Docker image (what
        // Warren replaces in compose files) lifts that limit, and so does Warren.
        self.users.read().get(user).is_some_and(|p| p == pass)
    }
}

/// A running server.
pub struct ServerHandle {
    /// The bound addresses (with the real port when 0 was asked for).
    pub local_addrs: Vec<SocketAddr>,
    /// Broker state.
    pub broker: Arc<Broker>,
    /// Set to true to shut down.
    shutdown: watch::Sender<bool>,
    /// Accept loops (each waits for its connections on shutdown).
    tasks: JoinSet<()>,
}

impl ServerHandle {
    /// Close every connection with 320 CONNECTION_FORCED and stop listening.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async { while self.tasks.join_next().await.is_some() {} }).await;
    }
}

/// Bind every configured address and start accepting.
pub async fn start(config: Config) -> std::io::Result<ServerHandle> {
    let broker = Broker::new(config.clone());
    let (tx, rx) = watch::channel(false);
    let mut listeners = Vec::new();
    let mut local_addrs = Vec::new();
    for addr in &config.listen {
        let l = bind(*addr)?;
        local_addrs.push(l.local_addr()?);
        listeners.push(l);
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(memory_monitor(broker.clone(), rx.clone()));
    for l in listeners {
        tasks.spawn(accept_loop(l, broker.clone(), rx.clone()));
    }
    Ok(ServerHandle { local_addrs, broker, shutdown: tx, tasks })
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // IPv6 only, so that `[::]` and `0.0.0.0` can both listen on the same port.
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    TcpListener::from_std(sock.into())
}

/// Every `MEMORY_CHECK_INTERVAL`: expire messages and queues (TTL, x-expires), and re-evaluate the
/// memory alarm: on when queued message bytes exceed the high watermark, off below it.
async fn memory_monitor(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let limit = broker.config.memory_high_watermark.bytes();
    tracing::info!("memory high watermark: {limit} bytes of queued messages");
    let mut tick = tokio::time::interval(MEMORY_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let vhosts: Vec<Arc<VHost>> = broker.vhosts.read().values().cloned().collect();
        // Message TTL and queue expiry: expired messages go without waiting for a consumer.
        let now = crate::channel::delivery::now_ms();
        for v in &vhosts {
            v.sweep(now);
        }
        let used: u64 = vhosts.iter().map(|v| v.queued_bytes()).sum();
        let on = used > limit;
        if *broker.alarm.borrow() != on {
            if on {
                tracing::warn!(
                    "memory alarm set: {used} bytes of queued messages > high watermark {limit}; blocking publishers"
                );
            } else {
                tracing::info!("memory alarm cleared: {used} bytes of queued messages <= {limit}");
            }
            broker.alarm.send_replace(on);
        }
    }
}

async fn accept_loop(l: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((sock, _)) => {
                    let id = ConnectionId(broker.next_conn.fetch_add(1, Ordering::Relaxed));
                    conns.spawn(connection::serve(sock, broker.clone(), id, shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: log and keep accepting.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(l);
    while conns.join_next().await.is_some() {}
}
