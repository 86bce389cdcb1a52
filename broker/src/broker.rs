//! Broker-wide state, below every door: virtual hosts, users, permissions (as set and compiled),
//! the connection registry and counts, the resource alarms, the message store and the definitions
//! file. AMQP connections, the HTTP API, definitions import and the CLI all change it through the
//! methods here and in `VHost`.
//!
//! Runs in: any task (short `RwLock`s; nothing awaits while holding one).
//!
//! # Invariants
//! - Every user or permission change bumps `auth_generation`, so connections re-read their
//!   grants; lock order `topic_permissions`, then `grants`.
//! - A durable change requests a definitions write (`MetaStore::request`) before it is reported.
//! - `open_connections` counts exactly the live [`ConnSlot`]s.
use crate::auth::{Permission, TopicGrant, TopicPermission, User};
use crate::config::Config;
use crate::store::meta::MetaStore;
use crate::store::Store;
use crate::vhost::VHost;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Broker-wide state.
pub struct Broker {
    /// Configuration it was started with.
    pub config: Config,
    /// Virtual hosts by name.
    pub(crate) vhosts: RwLock<HashMap<String, Arc<VHost>>>,
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
    pub(crate) next_conn: AtomicU64,
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
    /// Per-user limits (`user_limits.rs`), by user name; users without limits are absent.
    pub(crate) user_limits: RwLock<HashMap<String, crate::user_limits::UserLimits>>,
    /// Faults applied through the test controls (`--test-controls`).
    pub faults: crate::faults::FaultLog,
    /// Dynamic shovels (runtime parameters of component `shovel`) and their status.
    pub shovels: crate::shovel::Shovels,
    /// Open stream protocol connections, their publishers and consumers (management API).
    pub stream_conns: crate::streamproto::registry::Registry,
    /// Broker events (`amq.rabbitmq.event`): published once `start_events` ran.
    pub events: Arc<crate::events::Events>,
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

    pub(crate) fn empty(
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
            events: Default::default(),
            shovels: Default::default(),
            stream_conns: Default::default(),
            faults: Default::default(),
            user_limits: Default::default(),
            _lock: lock,
        })
    }

    /// The default vhost, and the default user with full permissions on it (first start). As in
    /// RabbitMQ, not when definitions are loaded at boot: the file says who exists.
    pub(crate) fn add_defaults(&self) {
        let c = &self.config;
        if c.load_definitions.is_some() {
            return;
        }
        self.add_vhost(&c.default_vhost, None);
        self.put_user(User::new(&c.default_user, &c.default_pass, vec!["administrator".into()]), None);
        let full = Permission {
            user: c.default_user.clone(),
            vhost: c.default_vhost.clone(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        if let Err(e) = self.set_permission(full, None) {
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
    /// `by`: the user asking (`None`: the broker itself), as events name it.
    pub fn add_vhost(&self, name: &str, by: Option<&str>) -> Arc<VHost> {
        let mut created = false;
        let v = self
            .vhosts
            .write()
            .entry(name.to_string())
            .or_insert_with(|| {
                created = true;
                // rabbitmq-compat: the event exchange is in the default vhost (RabbitMQ's plugin
                // uses `/` whatever the default vhost is).
                let events = name == self.config.default_vhost;
                let trace = self.config.message_trace_size;
                VHost::new(name, self.store.clone(), self.meta.clone(), self.events.clone(), events, trace)
            })
            .clone();
        if created {
            self.events.emit("vhost.created", |f| {
                f.by(by).str("name", name).str("description", "").bool("tracing", false);
            });
        }
        v
    }
    /// Every user.
    pub fn users(&self) -> Vec<User> {
        self.users.read().values().cloned().collect()
    }
    /// Create or replace a user (`by`: who asks, as events name it).
    pub fn put_user(&self, u: User, by: Option<&str>) {
        let name = u.name.clone();
        let created = self.users.write().insert(u.name.clone(), u).is_none();
        let key = if created { "user.created" } else { "user.password.changed" };
        self.events.emit(key, |f| {
            f.by(by).str("name", &name);
        });
    }
    /// One user.
    pub fn user(&self, name: &str) -> Option<User> {
        self.users.read().get(name).cloned()
    }
    /// Delete a user and its permissions; its open connections are closed (as RabbitMQ does).
    /// False if there was no such user.
    pub fn delete_user(&self, name: &str, by: Option<&str>) -> bool {
        if self.users.write().remove(name).is_none() {
            return false;
        }
        self.events.emit("user.deleted", |f| {
            f.by(by).str("name", name);
        });
        self.topic_permissions.write().retain(|(p, _)| p.user != name);
        self.user_limits.write().remove(name);
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
    pub fn delete_vhost(&self, name: &str, by: Option<&str>) -> bool {
        let Some(v) = self.vhosts.write().remove(name) else { return false };
        for c in self.stats.connections().into_iter().filter(|c| c.vhost == name) {
            c.force_close(&format!("vhost '{name}' is deleted"));
        }
        for q in v.queues_snapshot() {
            v.delete_queue(&q);
        }
        v.set_tracing(false);
        self.shovels.clear_vhost(name);
        self.topic_permissions.write().retain(|(p, _)| p.vhost != name);
        self.grants.write().retain(|(_, vh), _| vh != name);
        self.permissions.write().retain(|p| p.vhost != name);
        self.auth_generation.fetch_add(1, Ordering::Release);
        self.definitions_changed();
        self.events.emit("vhost.deleted", |f| {
            f.by(by).str("name", name);
        });
        true
    }

    /// Set (create or redefine) shovel `name` of `vhost` from its parameter value; true if it is
    /// new. Errors: no such vhost (`None`), or the definition's validation text.
    pub fn set_shovel(&self, vhost: &str, name: &str, value: serde_json::Value) -> Result<bool, Option<String>> {
        if self.vhost(vhost).is_none() {
            return Err(None);
        }
        let created = self.shovels.set(vhost, name, value).map_err(Some)?;
        self.definitions_changed();
        Ok(created)
    }

    /// Delete shovel `name` of `vhost` (its worker stops; the source requeues what it had not
    /// acknowledged); false if there is none.
    pub fn clear_shovel(&self, vhost: &str, name: &str) -> bool {
        let removed = self.shovels.clear(vhost, name);
        if removed {
            self.definitions_changed();
        }
        removed
    }

    /// Test control "reset" of the whole broker: every vhost reset (`reset_vhost`: its
    /// connections closed, its topology, policies, limits, shovels, delayed messages and faults
    /// gone), every fault forgotten, then, with `keep_definitions`, the definitions file loaded
    /// at boot (`--load-definitions`) imported again. Users, permissions and vhosts stay.
    /// Returns the import's problems.
    pub fn reset_all(&self, keep_definitions: bool, by: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = self.vhosts().iter().map(|v| v.name.clone()).collect();
        names.sort();
        for name in &names {
            self.reset_vhost(name, by);
        }
        self.faults.clear();
        let mut problems = Vec::new();
        if let (true, Some(path)) = (keep_definitions, &self.config.load_definitions) {
            match crate::store::meta::read(path) {
                Ok(defs) => problems = crate::definitions::import(self, &defs),
                Err(e) => problems.push(format!("cannot read {}: {e:#}", path.display())),
            }
        }
        problems
    }

    /// Test control "reset" of a vhost: its connections are closed (320 CONNECTION_FORCED, as
    /// when a vhost is deleted), then `VHost::reset`. Permissions, users and the vhost itself
    /// stay. False if there is no such vhost.
    pub fn reset_vhost(&self, name: &str, by: Option<&str>) -> bool {
        let Some(v) = self.vhost(name) else { return false };
        self.shovels.clear_vhost(name);
        self.faults.clear_vhost(name);
        for c in self.stats.connections().into_iter().filter(|c| c.vhost == name) {
            c.force_close(&format!("vhost '{name}' is being reset"));
        }
        v.reset(by);
        self.definitions_changed();
        true
    }

    /// Start publishing events (`crate::events`) to the default vhost's `amq.rabbitmq.event`.
    pub fn start_events(self: &Arc<Self>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::events::Event>(crate::events::EVENT_BACKLOG);
        self.events.attach(tx);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let Some(b) = me.upgrade() else { return };
                let Some(v) = b.vhost(&b.config.default_vhost) else { continue };
                let (routing_key, no_body) = (e.routing_key(), bytes::Bytes::new());
                let exchange = crate::events::EVENT_EXCHANGE.as_bytes();
                v.publish_internal(crate::vhost::Publish::of(
                    exchange,
                    routing_key.as_bytes(),
                    &e.properties,
                    &no_body,
                ));
            }
        });
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
    pub fn set_permission(&self, p: Permission, by: Option<&str>) -> Result<(), String> {
        let topics = self.topic_permissions.read();
        let g = Arc::new(crate::auth::Grants::compile(&p)?.with_topics(topic_grants_of(&topics, &p.user, &p.vhost)));
        self.grants.write().insert((p.user.clone(), p.vhost.clone()), g);
        drop(topics);
        let mut ps = self.permissions.write();
        ps.retain(|x| !(x.user == p.user && x.vhost == p.vhost));
        ps.push(p.clone());
        drop(ps);
        self.auth_generation.fetch_add(1, Ordering::Release);
        self.events.emit("permission.created", |f| {
            f.by(by)
                .str("user", &p.user)
                .str("vhost", &p.vhost)
                .str("configure", &p.configure)
                .str("write", &p.write)
                .str("read", &p.read);
        });
        Ok(())
    }
    /// Remove a user's permissions in a vhost (open connections lose access at their next
    /// operation).
    pub fn clear_permission(&self, user: &str, vhost: &str, by: Option<&str>) {
        self.grants.write().remove(&(user.to_string(), vhost.to_string()));
        let mut ps = self.permissions.write();
        let before = ps.len();
        ps.retain(|x| !(x.user == user && x.vhost == vhost));
        let removed = ps.len() != before;
        drop(ps);
        if removed {
            self.events.emit("permission.deleted", |f| {
                f.by(by).str("user", user).str("vhost", vhost);
            });
        }
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
