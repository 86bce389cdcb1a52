//! The server: broker-wide state, listeners, accept loops and shutdown fan-out.
//!
//! Runs in: one accept task per listener; `start` spawns them and returns a [`ServerHandle`].
//!
//! # Invariants
//! - Shutdown is one `watch` flag: every connection sees it, sends connection.close 320
//!   CONNECTION_FORCED, and ends; `ServerHandle::shutdown` waits for all of them (bounded by
//!   `SHUTDOWN_GRACE`).
use crate::auth::{Permission, TopicGrant, TopicPermission, User};
use crate::config::{Config, MEMORY_CHECK_INTERVAL, SHUTDOWN_GRACE};
use crate::connection;
use crate::ids::ConnectionId;
use crate::store::definitions::{self, MetaStore};
use crate::store::Store;
use crate::vhost::VHost;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Permissions per (user, vhost), as set (exported as they are).
    permissions: RwLock<Vec<Permission>>,
    /// The same permissions compiled, by (user, vhost): what connections check against (with the
    /// user's topic permissions in that vhost). Lock order: `topic_permissions`, then `grants`.
    grants: RwLock<HashMap<(String, String), Arc<crate::auth::Grants>>>,
    /// Topic permissions per (user, vhost, exchange), as set, each with its compiled form.
    topic_permissions: RwLock<Vec<(TopicPermission, TopicGrant)>>,
    /// Bumped on every user or permission change: connections re-read their grants when it moves.
    pub auth_generation: AtomicU64,
    /// Next connection id.
    next_conn: AtomicU64,
    /// Open connections, message totals and rates (management API, Prometheus).
    pub stats: crate::stats::Stats,
    /// Connections past connection.open and not yet closed (see [`ConnSlot`]).
    pub open_connections: std::sync::atomic::AtomicUsize,
    /// Publishers are blocked: true while a resource alarm (memory or disk) is in effect.
    pub alarm: watch::Sender<bool>,
    /// Memory alarm: queued message bytes are above the high watermark.
    pub mem_alarm: AtomicBool,
    /// Disk alarm: the data directory's filesystem has less than `disk_free_limit` free, or the
    /// message store's writes are failing (a full disk).
    pub disk_alarm: AtomicBool,
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
            grants: RwLock::new(HashMap::new()),
            topic_permissions: RwLock::new(Vec::new()),
            auth_generation: AtomicU64::new(0),
            next_conn: AtomicU64::new(1),
            open_connections: Default::default(),
            stats: Default::default(),
            alarm: watch::channel(false).0,
            mem_alarm: AtomicBool::new(false),
            disk_alarm: AtomicBool::new(false),
            store,
            meta,
            _lock: lock,
        })
    }

    /// The default vhost, and the default user with full permissions on it (first start). As in
    /// RabbitMQ, not when definitions are loaded at boot: the file says who exists.
    fn add_defaults(&self) {
        let c = &self.config;
        if c.load_definitions.is_some() {
            return;
        }
        self.add_vhost(&c.default_vhost);
        self.put_user(User::new(&c.default_user, &c.default_pass, vec!["administrator".into()]));
        let full = Permission {
            user: c.default_user.clone(),
            vhost: c.default_vhost.clone(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        if let Err(e) = self.set_permission(full) {
            tracing::error!("default permissions: {e}");
        }
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
    /// One user.
    pub fn user(&self, name: &str) -> Option<User> {
        self.users.read().get(name).cloned()
    }
    /// Delete a user and its permissions; its open connections are closed (as RabbitMQ does).
    /// False if there was no such user.
    pub fn delete_user(&self, name: &str) -> bool {
        if self.users.write().remove(name).is_none() {
            return false;
        }
        self.topic_permissions.write().retain(|(p, _)| p.user != name);
        self.grants.write().retain(|(u, _), _| u != name);
        self.permissions.write().retain(|p| p.user != name);
        self.auth_generation.fetch_add(1, Ordering::Release);
        for c in self.stats.connections().into_iter().filter(|c| c.user == name) {
            c.force_close(&format!("user '{name}' is deleted"));
        }
        self.definitions_changed();
        true
    }
    /// Delete a vhost: its connections are closed, its queues and exchanges go, and so do the
    /// permissions in it. False if there was no such vhost.
    pub fn delete_vhost(&self, name: &str) -> bool {
        let Some(v) = self.vhosts.write().remove(name) else { return false };
        for c in self.stats.connections().into_iter().filter(|c| c.vhost == name) {
            c.force_close(&format!("vhost '{name}' is deleted"));
        }
        for q in v.queues_snapshot() {
            v.delete_queue(&q);
        }
        self.topic_permissions.write().retain(|(p, _)| p.vhost != name);
        self.grants.write().retain(|(_, vh), _| vh != name);
        self.permissions.write().retain(|p| p.vhost != name);
        self.auth_generation.fetch_add(1, Ordering::Release);
        self.definitions_changed();
        true
    }
    /// Users, vhosts or permissions changed: rewrite the definitions file (with a data directory).
    pub fn definitions_changed(&self) {
        if let Some(m) = &self.meta {
            m.request();
        }
    }
    /// Every permission entry.
    pub fn permissions(&self) -> Vec<Permission> {
        self.permissions.read().clone()
    }
    /// Set a user's permissions in a vhost. An expression that does not compile is refused (as
    /// `rabbitmqctl set_permissions` refuses it) and nothing changes.
    pub fn set_permission(&self, p: Permission) -> Result<(), String> {
        let topics = self.topic_permissions.read();
        let g = Arc::new(crate::auth::Grants::compile(&p)?.with_topics(topic_grants_of(&topics, &p.user, &p.vhost)));
        self.grants.write().insert((p.user.clone(), p.vhost.clone()), g);
        drop(topics);
        let mut ps = self.permissions.write();
        ps.retain(|x| !(x.user == p.user && x.vhost == p.vhost));
        ps.push(p);
        drop(ps);
        self.auth_generation.fetch_add(1, Ordering::Release);
        Ok(())
    }
    /// Remove a user's permissions in a vhost (open connections lose access at their next
    /// operation).
    pub fn clear_permission(&self, user: &str, vhost: &str) {
        self.grants.write().remove(&(user.to_string(), vhost.to_string()));
        self.permissions.write().retain(|x| !(x.user == user && x.vhost == vhost));
        self.auth_generation.fetch_add(1, Ordering::Release);
    }
    /// Every topic permission entry.
    pub fn topic_permissions(&self) -> Vec<TopicPermission> {
        self.topic_permissions.read().iter().map(|(p, _)| p.clone()).collect()
    }
    /// Set a user's topic permission on an exchange of a vhost (replacing the one it had there).
    /// An expression that does not compile, once `{username}` and `{vhost}` are expanded, is
    /// refused and nothing changes. True if there was none before.
    pub fn set_topic_permission(&self, p: TopicPermission) -> Result<bool, String> {
        let t = TopicGrant::compile(&p)?;
        let mut tps = self.topic_permissions.write();
        let before = tps.len();
        tps.retain(|(x, _)| !(x.user == p.user && x.vhost == p.vhost && x.exchange == p.exchange));
        let created = tps.len() == before;
        let (user, vhost) = (p.user.clone(), p.vhost.clone());
        tps.push((p, t));
        self.refresh_topics(&tps, &user, &vhost);
        drop(tps);
        self.auth_generation.fetch_add(1, Ordering::Release);
        Ok(created)
    }
    /// Remove a user's topic permissions in a vhost: on one exchange, or all of them. True if one
    /// was removed.
    pub fn clear_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) -> bool {
        let mut tps = self.topic_permissions.write();
        let before = tps.len();
        tps.retain(|(x, _)| !(x.user == user && x.vhost == vhost && exchange.is_none_or(|e| x.exchange == e)));
        let removed = tps.len() != before;
        if removed {
            self.refresh_topics(&tps, user, vhost);
        }
        drop(tps);
        self.auth_generation.fetch_add(1, Ordering::Release);
        removed
    }
    /// Rebuild the compiled grants of (user, vhost), if any, with its current topic permissions
    /// (called with `topic_permissions` locked, so no change is lost between the two).
    fn refresh_topics(&self, tps: &[(TopicPermission, TopicGrant)], user: &str, vhost: &str) {
        let mut grants = self.grants.write();
        if let Some(g) = grants.get_mut(&(user.to_string(), vhost.to_string())) {
            *g = Arc::new(g.with_topics(topic_grants_of(tps, user, vhost)));
        }
    }
    /// A user's compiled permissions in a vhost; `None`: the user may not use that vhost.
    pub fn grants(&self, user: &str, vhost: &str) -> Option<Arc<crate::auth::Grants>> {
        self.grants.read().get(&(user.to_string(), vhost.to_string())).cloned()
    }
    pub fn check_password(&self, user: &str, pass: &str) -> bool {
        self.users.read().get(user).is_some_and(|u| u.check(pass))
    }
    /// Whether `user` may log in from `peer`: users listed in `loopback_users` only from a
    /// loopback address (RabbitMQ's default keeps `guest` to localhost).
    pub fn login_allowed_from(&self, user: &str, peer: Option<std::net::IpAddr>) -> bool {
        !self.config.loopback_users.iter().any(|u| u == user) || peer.is_some_and(crate::auth::is_loopback)
    }
}

/// The compiled topic permissions of (user, vhost).
fn topic_grants_of(tps: &[(TopicPermission, TopicGrant)], user: &str, vhost: &str) -> Vec<TopicGrant> {
    tps.iter().filter(|(p, _)| p.user == user && p.vhost == vhost).map(|(_, t)| t.clone()).collect()
}

/// Open the data directory: lock it, restore the definitions (or write the defaults on first
/// start), and put the persistent messages back into their queues.
fn open_data_dir(config: &Config, dir: &std::path::Path) -> anyhow::Result<Arc<Broker>> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let lock_path = dir.join("warren.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("cannot use data directory {}: {}", dir.display(), lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!("data directory {} is in use by another Warren", dir.display());
    }
    let store = Store::open(dir).with_context(|| format!("cannot open the message store in {}", dir.display()))?;
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
    if let Err(e) = meta.write_now(&broker) {
        // A full disk must not keep the broker from starting: the disk alarm blocks publishers,
        // the metadata writer retries, and what was on disk is recovered below.
        tracing::error!("cannot write {}: {e:#}; will retry", meta.path.display());
        meta.request();
    }
    let mut by_key: HashMap<u64, Arc<crate::queue::Queue>> = HashMap::new();
    for v in broker.vhosts() {
        for q in v.queues_snapshot().into_iter().filter(|q| q.persists()) {
            by_key.insert(q.key(), q);
        }
    }
    let (now, now_unix) = (crate::channel::delivery::now_ms(), crate::store::unix_ms());
    let stats = store
        .recover(
            |k| by_key.contains_key(&k),
            |k, m| {
                if let Some(q) = by_key.get(&k) {
                    q.recover(m, now, now_unix);
                }
            },
        )
        .with_context(|| format!("cannot recover messages from {}", dir.join("msgs").display()))?;
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

/// One open connection counted against `connection_max` (and reported as the open connection
/// count); dropping it gives the place back.
pub struct ConnSlot {
    /// The broker whose count this is.
    broker: Arc<Broker>,
}

impl ConnSlot {
    /// Take a place, or `Err(limit)` when `connection_max` connections are open.
    pub fn take(broker: &Arc<Broker>) -> Result<ConnSlot, usize> {
        let n = broker.open_connections.fetch_add(1, Ordering::AcqRel);
        if let Some(max) = broker.config.connection_max {
            if n >= max {
                broker.open_connections.fetch_sub(1, Ordering::AcqRel);
                return Err(max);
            }
        }
        Ok(ConnSlot { broker: broker.clone() })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.broker.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running server.
pub struct ServerHandle {
    /// The bound addresses (with the real port when 0 was asked for).
    pub local_addrs: Vec<SocketAddr>,
    /// The bound AMQPS addresses.
    pub tls_addrs: Vec<SocketAddr>,
    /// The bound management HTTP addresses.
    pub management_addrs: Vec<SocketAddr>,
    /// The bound Prometheus addresses.
    pub prometheus_addrs: Vec<SocketAddr>,
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
    if let Some(path) = &config.load_definitions {
        use anyhow::Context;
        let defs = definitions::read(path).with_context(|| format!("cannot load definitions {}", path.display()))?;
        for p in definitions::import(&broker, &defs) {
            tracing::warn!("definitions {}: {p}", path.display());
        }
        tracing::info!("loaded definitions from {}", path.display());
    }
    let (tx, rx) = watch::channel(false);
    let mut listeners = Vec::new();
    let mut local_addrs = Vec::new();
    for addr in &config.listen {
        let l = bind(*addr, Listener::Amqp)?;
        local_addrs.push(l.local_addr()?);
        listeners.push(l);
    }
    let mut tls_listeners = Vec::new();
    let mut tls_addrs = Vec::new();
    let acceptor = match &config.tls {
        Some(t) => {
            let a = tls_acceptor(t)?;
            for addr in &t.listen {
                let l = bind(*addr, Listener::Amqps)?;
                tls_addrs.push(l.local_addr()?);
                tls_listeners.push(l);
            }
            Some(a)
        }
        None => None,
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(resource_monitor(broker.clone(), rx.clone()));
    if let Some(m) = &broker.meta {
        tokio::spawn(m.clone().run(Arc::downgrade(&broker)));
    }
    for l in listeners {
        tasks.spawn(accept_loop(l, None, broker.clone(), rx.clone()));
    }
    for l in tls_listeners {
        tasks.spawn(accept_loop(l, acceptor.clone(), broker.clone(), rx.clone()));
    }
    let (management_addrs, prometheus_addrs) =
        crate::mgmt::start(broker.clone(), &local_addrs, &tls_addrs, &mut tasks, rx.clone()).await?;
    Ok(ServerHandle { local_addrs, tls_addrs, management_addrs, prometheus_addrs, broker, shutdown: tx, tasks })
}

/// The TLS acceptor for AMQPS listeners: rustls with the ring provider, the certificate chain and
/// key from PEM files, and, with a CA file, client certificates verified against it (required with
/// `fail_if_no_peer_cert`, else optional but checked when presented).
fn tls_acceptor(t: &crate::config::TlsConfig) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read TLS certificate {}", t.cert_file.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", t.cert_file.display());
    let key = PrivateKeyDer::from_pem_file(&t.key_file)
        .with_context(|| format!("cannot read TLS key {}", t.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &t.ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).with_context(|| format!("cannot read CA file {}", ca.display()))?
            {
                roots.add(c.with_context(|| format!("bad certificate in {}", ca.display()))?)?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if t.fail_if_no_peer_cert { v } else { v.allow_unauthenticated() };
            builder.with_client_cert_verifier(v.build()?)
        }
        None => {
            anyhow::ensure!(!t.fail_if_no_peer_cert, "fail_if_no_peer_cert needs a CA file to verify against");
            builder.with_no_client_auth()
        }
    };
    let cfg = builder.with_single_cert(certs, key).context("TLS certificate and key do not match")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// The listeners, for error messages that say which port failed and what moves it.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Amqp,
    Amqps,
    Management,
    Prometheus,
}

impl Listener {
    /// What listens there, and the flag / environment variable / rabbitmq.conf key that moves it.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Listener::Amqp => ("AMQP", "--port / WARREN_PORT / listeners.tcp.default"),
            Listener::Amqps => ("AMQPS", "--tls-port / WARREN_TLS_PORT / listeners.ssl.default"),
            Listener::Management => {
                ("the management API", "--management-port / WARREN_MANAGEMENT_PORT / management.tcp.port")
            }
            Listener::Prometheus => ("Prometheus", "--prometheus-port / WARREN_PROMETHEUS_PORT / prometheus.tcp.port"),
        }
    }
}

/// [`bind_listener`] with an error that names the port, what listens there, and how to move it
/// (a RabbitMQ still running on the same machine holds all of them).
pub fn bind(addr: SocketAddr, what: Listener) -> anyhow::Result<TcpListener> {
    bind_listener(addr).map_err(|e| {
        let (name, moved_by) = what.describe();
        anyhow::anyhow!(
            "cannot listen for {name} on {addr}: {e} (is another broker running? {moved_by} chooses another port)"
        )
    })
}

/// Bind a listening socket (IPv6 sockets IPv6-only, so `[::]` and `0.0.0.0` can share a port).
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
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

/// Every `MEMORY_CHECK_INTERVAL`: expire messages and queues (TTL, x-expires), page out, and
/// re-evaluate the resource alarms (memory: message bytes held in memory (ready, unacked, being
/// assembled, pending outbound) above the high watermark; disk:
/// free space on the data directory's filesystem below `disk_free_limit`, or store writes
/// failing). While either is on, publishers are blocked.
async fn resource_monitor(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let limit = broker.config.memory_high_watermark.bytes();
    tracing::info!("memory high watermark: {limit} bytes of queued messages");
    let disk_limit = broker.config.disk_free_limit.bytes();
    let data_dir = broker.config.data_dir.clone().filter(|_| broker.store.is_some());
    if let Some(d) = &data_dir {
        tracing::info!("disk free limit: {disk_limit} bytes on the filesystem of {}", d.display());
    }
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
        // What the broker holds for clients besides ready messages: unacked bodies still in
        // memory, bodies being assembled, pending outbound frames.
        let conns = broker.stats.connections();
        let mut held: u64 = conns.iter().map(|c| c.held_bytes()).sum();
        // Paging: bodies beyond each queue's window go to disk; transient ones too, and unacked
        // ones whose record is written, once the total passes half the watermark (RabbitMQ's
        // paging ratio).
        if let Some(store) = &broker.store {
            let before: u64 = vhosts.iter().map(|v| v.queued_bytes()).sum::<u64>() + held;
            let pressure = before > limit / PAGING_RATIO_DIVISOR;
            for v in &vhosts {
                v.page_out(pressure);
            }
            if pressure {
                held -= conns.iter().map(|c| c.page_out_unacked(store)).sum::<u64>().min(held);
            }
        }
        let used: u64 = vhosts.iter().map(|v| v.queued_bytes()).sum::<u64>() + held;
        let mem_on = used > limit;
        if broker.mem_alarm.swap(mem_on, Ordering::Relaxed) != mem_on {
            if mem_on {
                tracing::warn!(
                    "memory alarm set: {used} bytes held for messages (ready, unacked, in transit) > high watermark {limit}; blocking publishers"
                );
            } else {
                tracing::info!("memory alarm cleared: {used} bytes held for messages <= {limit}");
            }
        }
        if let Some(dir) = &data_dir {
            let free = disk_free(dir);
            let failing = broker.store.as_ref().is_some_and(|s| s.write_failing());
            let disk_on = failing || free.is_some_and(|f| f < disk_limit);
            if broker.disk_alarm.swap(disk_on, Ordering::Relaxed) != disk_on {
                let free = free.map_or("unknown".to_string(), |f| f.to_string());
                if disk_on {
                    tracing::warn!(
                        "disk alarm set: {free} bytes free, limit {disk_limit}{}; blocking publishers",
                        if failing { ", store writes failing" } else { "" }
                    );
                } else {
                    tracing::info!("disk alarm cleared: {free} bytes free, limit {disk_limit}");
                }
            }
        }
        let on = broker.mem_alarm.load(Ordering::Relaxed) || broker.disk_alarm.load(Ordering::Relaxed);
        if *broker.alarm.borrow() != on {
            broker.alarm.send_replace(on);
        }
    }
}

/// Free bytes (for unprivileged users) on the filesystem holding `dir`; `None` when unknown.
pub fn disk_free(dir: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(dir).ok().map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

async fn accept_loop(
    l: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((sock, peer)) => {
                    let id = ConnectionId(broker.next_conn.fetch_add(1, Ordering::Relaxed));
                    match &tls {
                        None => {
                            conns.spawn(connection::serve(sock, broker.clone(), id, shutdown.clone()));
                        }
                        Some(acceptor) => {
                            let (acceptor, broker, shutdown) = (acceptor.clone(), broker.clone(), shutdown.clone());
                            let local = sock.local_addr().ok();
                            conns.spawn(async move {
                                let _ = sock.set_nodelay(true);
                                // The TLS handshake is bounded by the handshake timeout too.
                                let limit = broker.config.handshake_timeout;
                                match tokio::time::timeout(limit, acceptor.accept(sock)).await {
                                    Ok(Ok(stream)) => {
                                        let (rd, wr) = tokio::io::split(stream);
                                        let ends = connection::Endpoints { peer: Some(peer), local, tls: true };
                                        connection::serve_stream(rd, wr, ends, broker, id, shutdown).await;
                                    }
                                    Ok(Err(e)) => tracing::warn!(%peer, "TLS handshake failed: {e}"),
                                    Err(_) => tracing::warn!(%peer, "TLS handshake timeout"),
                                }
                            });
                        }
                    }
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
