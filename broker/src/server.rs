//! The server: broker-wide state, listeners, accept loops and shutdown fan-out.
//!
//! Runs in: one accept task per listener; `start` spawns them and returns a [`ServerHandle`].
//!
//! # Invariants
//! - Shutdown is one `watch` flag: every connection sees it, sends connection.close 320
//!   CONNECTION_FORCED, and ends; `ServerHandle::shutdown` waits for all of them (bounded by
//!   `SHUTDOWN_GRACE`).
use crate::auth::{Permission, User};
use crate::config::{Config, MEMORY_CHECK_INTERVAL, SHUTDOWN_GRACE};
use crate::connection;
use crate::ids::ConnectionId;
use crate::store::definitions::{self, MetaStore};
use crate::store::Store;
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
    /// Users by name.
    users: RwLock<HashMap<String, User>>,
    /// Permissions per (user, vhost). TODO(security issue #7): enforce them.
    permissions: RwLock<Vec<Permission>>,
    /// Next connection id.
    next_conn: AtomicU64,
    /// Memory alarm: true while queued message bytes are above the high watermark.
    pub alarm: watch::Sender<bool>,
    /// The message store (with a data directory).
    pub store: Option<Arc<Store>>,
    /// The definitions file (with a data directory).
    pub meta: Option<Arc<MetaStore>>,
    /// The data directory's lock, held while the broker runs.
    _lock: Option<std::fs::File>,
}

impl Broker {
    /// A broker without persistence, with the default vhost and user.
    pub fn new(config: Config) -> Arc<Broker> {
        let b = Broker::empty(config, None, None, None);
        b.add_defaults();
        b
    }

    fn empty(
        config: Config,
        store: Option<Arc<Store>>,
        meta: Option<Arc<MetaStore>>,
        lock: Option<std::fs::File>,
    ) -> Arc<Broker> {
        Arc::new(Broker {
            config,
            vhosts: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            permissions: RwLock::new(Vec::new()),
            next_conn: AtomicU64::new(1),
            alarm: watch::channel(false).0,
            store,
            meta,
            _lock: lock,
        })
    }

    /// The default vhost, and the default user with full permissions on it (first start).
    fn add_defaults(&self) {
        let c = &self.config;
        self.add_vhost(&c.default_vhost);
        self.put_user(User::new(&c.default_user, &c.default_pass, vec!["administrator".into()]));
        self.set_permission(Permission {
            user: c.default_user.clone(),
            vhost: c.default_vhost.clone(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        });
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }
    /// Every vhost.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts.read().values().cloned().collect()
    }
    /// Create a vhost unless it exists.
    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        self.vhosts
            .write()
            .entry(name.to_string())
            .or_insert_with(|| VHost::new(name, self.store.clone(), self.meta.clone()))
            .clone()
    }
    /// Every user.
    pub fn users(&self) -> Vec<User> {
        self.users.read().values().cloned().collect()
    }
    /// Create or replace a user.
    pub fn put_user(&self, u: User) {
        self.users.write().insert(u.name.clone(), u);
    }
    /// Every permission entry.
    pub fn permissions(&self) -> Vec<Permission> {
        self.permissions.read().clone()
    }
    /// Set a user's permissions in a vhost.
    pub fn set_permission(&self, p: Permission) {
        let mut ps = self.permissions.write();
        ps.retain(|x| !(x.user == p.user && x.vhost == p.vhost));
        ps.push(p);
    }
    pub fn check_password(&self, user: &str, pass: &str) -> bool {
        // rabbitmq-compat: RabbitMQ limits guest to loopback by default; its Docker image (what
        // Warren replaces in compose files) lifts that limit, and so does Warren.
        self.users.read().get(user).is_some_and(|u| u.check(pass))
    }
}

/// Open the data directory: lock it, restore the definitions (or write the defaults on first
/// start), and put the persistent messages back into their queues.
fn open_data_dir(config: &Config, dir: &std::path::Path) -> anyhow::Result<Arc<Broker>> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let lock = std::fs::File::create(dir.join("warren.lock"))?;
    if lock.try_lock().is_err() {
        anyhow::bail!("data directory {} is in use by another Warren", dir.display());
    }
    let store = Store::open(dir)?;
    let meta = MetaStore::new(dir);
    let broker = Broker::empty(config.clone(), Some(store.clone()), Some(meta.clone()), Some(lock));
    let started = std::time::Instant::now();
    if meta.path.exists() {
        let defs = definitions::read(&meta.path).with_context(|| format!("cannot read {}", meta.path.display()))?;
        for p in definitions::import(&broker, &defs) {
            tracing::warn!("definitions: {p}");
        }
        if broker.vhosts.read().is_empty() {
            broker.add_defaults();
        }
    } else {
        broker.add_defaults();
    }
    meta.write_now(&broker)?;
    let mut by_key: HashMap<u64, Arc<crate::queue::Queue>> = HashMap::new();
    for v in broker.vhosts() {
        for q in v.queues_snapshot().into_iter().filter(|q| q.persists()) {
            by_key.insert(q.key(), q);
        }
    }
    let (now, now_unix) = (crate::channel::delivery::now_ms(), crate::store::unix_ms());
    let stats = store.recover(
        |k| by_key.contains_key(&k),
        |k, m| {
            if let Some(q) = by_key.get(&k) {
                q.recover(m, now, now_unix);
            }
        },
    )?;
    store.start()?;
    tracing::info!(
        "data directory {}: {} queues, {} messages recovered from {} segments in {:?} ({} bytes of torn or corrupt tail cut)",
        dir.display(),
        by_key.len(),
        stats.messages,
        stats.segments,
        started.elapsed(),
        stats.truncated_bytes
    );
    Ok(broker)
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
        // Everything on disk before exit: the last definitions, every pending record.
        let b = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(m) = &b.meta {
                if let Err(e) = m.write_now(&b) {
                    tracing::error!("cannot write definitions at shutdown: {e:#}");
                }
            }
            if let Some(s) = &b.store {
                s.close();
            }
        })
        .await;
    }
}

/// Bind every configured address and start accepting.
pub async fn start(config: Config) -> anyhow::Result<ServerHandle> {
    let broker = match &config.data_dir {
        Some(dir) => {
            let (c, d) = (config.clone(), dir.clone());
            tokio::task::spawn_blocking(move || open_data_dir(&c, &d)).await??
        }
        None => Broker::new(config.clone()),
    };
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
    if let Some(m) = &broker.meta {
        tokio::spawn(m.clone().run(Arc::downgrade(&broker)));
    }
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

/// Transient messages are paged to disk once queued bytes exceed watermark / this (RabbitMQ's
/// `vm_memory_high_watermark_paging_ratio` of 0.5).
const PAGING_RATIO_DIVISOR: u64 = 2;

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
        // Paging: bodies beyond each queue's window go to disk; transient ones too once queued
        // bytes pass half the watermark (RabbitMQ's paging ratio).
        if broker.store.is_some() {
            let before: u64 = vhosts.iter().map(|v| v.queued_bytes()).sum();
            let pressure = before > limit / PAGING_RATIO_DIVISOR;
            for v in &vhosts {
                v.page_out(pressure);
            }
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
