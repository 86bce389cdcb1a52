//! Metadata persistence: durable exchanges, queues and bindings, users, vhosts, permissions and
//! topic permissions, saved as a RabbitMQ definitions JSON file and restored at start.
//!
//! Runs in: the metadata writer task (export + atomic replace), the boot sequence (import), and the
//! connection readers (they request a write and hold their replies until it is done).
//!
//! # Invariants
//! - The file is replaced atomically: written to a temporary file, fsynced, renamed over the old
//!   one, and the directory fsynced. A crash leaves the old file or the new one, never a mix.
//! - A change is requested (`MetaStore::request`) after the in-memory topology changed; the
//!   declare-ok / delete-ok / bind-ok that reports it is released to the client only once a write
//!   that started after the request has completed, so anything a client was told exists survives a
//!   crash.
//! - Import goes through the same `VHost` methods as client declares, so the same validation applies.
//! - Only what RabbitMQ would restore is written: durable, non-exclusive queues; durable exchanges
//!   other than the predeclared `amq.*` ones; bindings whose source and destination are both durable.
use crate::auth::{Permission, TopicPermission, User};
use crate::exchange::Dest;
use crate::ids::ConnectionId;
use crate::server::Broker;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::{watch, Notify};
use warren_protocol::method::{ExchangeDeclare, QueueDeclare};
use warren_protocol::{FieldTable, FieldValue, LongStr, ShortStr};

/// Name of the definitions file in the data directory.
pub const FILE_NAME: &str = "definitions.json";
/// The RabbitMQ version Warren's exports claim to be compatible with.
const RABBIT_VERSION: &str = "3.10.8";

/// A whole definitions document (RabbitMQ's export format). Unknown fields are ignored on import.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Definitions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    pub users: Vec<UserDef>,
    pub vhosts: Vec<VHostDef>,
    pub permissions: Vec<Permission>,
    pub topic_permissions: Vec<TopicPermission>,
    pub parameters: Vec<Value>,
    pub global_parameters: Vec<Value>,
    pub policies: Vec<Value>,
    pub queues: Vec<QueueDef>,
    pub exchanges: Vec<ExchangeDef>,
    pub bindings: Vec<BindingDef>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UserDef {
    pub name: String,
    pub password_hash: String,
    /// Plain-text password, accepted on import as RabbitMQ accepts it (never exported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub hashing_algorithm: String,
    /// RabbitMQ 3.10 exports a list; older versions a comma-separated string.
    pub tags: Value,
    pub limits: Map<String, Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct VHostDef {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueDef {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExchangeDef {
    pub name: String,
    pub vhost: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BindingDef {
    pub source: String,
    pub vhost: String,
    pub destination: String,
    pub destination_type: String,
    pub routing_key: String,
    pub arguments: Map<String, Value>,
}

/// A field table as JSON (as RabbitMQ's management API shows arguments).
pub fn table_to_json(t: &FieldTable) -> Map<String, Value> {
    t.iter().map(|(k, v)| (k.to_str_lossy().into_owned(), value_to_json(v))).collect()
}

fn value_to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::F32(f) => serde_json::Number::from_f64(*f as f64).map(Value::Number).unwrap_or(Value::Null),
        FieldValue::F64(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
        FieldValue::Decimal(scale, n) => serde_json::Number::from_f64(*n as f64 / 10f64.powi(*scale as i32))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        FieldValue::LongStr(s) | FieldValue::Bytes(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        FieldValue::Array(a) => Value::Array(a.iter().map(value_to_json).collect()),
        FieldValue::Timestamp(t) => Value::from(*t),
        FieldValue::Table(t) => Value::Object(table_to_json(t)),
        FieldValue::Void => Value::Null,
        other => other.as_i64().map(Value::from).unwrap_or(Value::Null),
    }
}

/// JSON arguments as a field table: integers as `l`, other numbers as `d`, strings as `S`.
pub fn json_to_table(m: &Map<String, Value>) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in m {
        t.insert(ShortStr::from(k.clone()), json_to_value(v));
    }
    t
}

fn json_to_value(v: &Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => FieldValue::LongStr(LongStr::from(s.clone())),
        Value::Array(a) => FieldValue::Array(a.iter().map(json_to_value).collect()),
        Value::Object(o) => FieldValue::Table(json_to_table(o)),
    }
}

fn tags_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(|t| t.as_str().map(String::from)).collect(),
        Value::String(s) => s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect(),
        _ => Vec::new(),
    }
}

/// Snapshot the broker's durable state.
/// What the broker restores: durable exchanges, non-exclusive durable queues, and bindings whose
/// ends are both durable (the definitions file).
pub fn export(broker: &Broker) -> Definitions {
    export_with(broker, false)
}

/// Everything RabbitMQ's `GET /api/definitions` lists: transient exchanges and non-exclusive
/// transient queues too, with their bindings (exclusive queues never).
pub fn export_all(broker: &Broker) -> Definitions {
    export_with(broker, true)
}

fn export_with(broker: &Broker, transient: bool) -> Definitions {
    let mut d = Definitions {
        rabbit_version: Some(RABBIT_VERSION.into()),
        rabbitmq_version: Some(RABBIT_VERSION.into()),
        product_name: Some("Warren".into()),
        product_version: Some(env!("CARGO_PKG_VERSION").into()),
        ..Default::default()
    };
    let mut users = broker.users();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    d.users = users
        .into_iter()
        .map(|u| UserDef {
            password_hash: u.hash_base64(),
            hashing_algorithm: u.hashing_algorithm.clone(),
            password: None,
            tags: Value::Array(u.tags.iter().cloned().map(Value::String).collect()),
            limits: Map::new(),
            name: u.name,
        })
        .collect();
    d.permissions = broker.permissions();
    d.topic_permissions = broker.topic_permissions();
    d.topic_permissions.sort_by(|a, b| (&a.vhost, &a.user, &a.exchange).cmp(&(&b.vhost, &b.user, &b.exchange)));
    for v in broker.vhosts() {
        d.policies.extend(v.policies().iter().map(|p| p.to_json()));
    }
    d.policies
        .sort_by(|a, b| (a["vhost"].as_str(), a["name"].as_str()).cmp(&(b["vhost"].as_str(), b["name"].as_str())));
    let mut vhosts = broker.vhosts();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    for v in &vhosts {
        d.vhosts.push(VHostDef { name: v.name.clone(), ..Default::default() });
        let mut queues: Vec<_> = v
            .queues_snapshot()
            .into_iter()
            .filter(|q| (transient || q.durable) && q.exclusive_owner.is_none())
            .collect();
        queues.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        for q in &queues {
            d.queues.push(QueueDef {
                name: q.name.to_str_lossy().into_owned(),
                vhost: v.name.clone(),
                durable: q.durable,
                auto_delete: q.auto_delete,
                arguments: table_to_json(&q.arguments),
            });
        }
        let mut exchanges = v.exchanges_snapshot();
        exchanges.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        for x in exchanges.iter().filter(|x| transient || x.durable) {
            if !x.name.as_bytes().starts_with(b"amq.") {
                d.exchanges.push(ExchangeDef {
                    name: x.name.to_str_lossy().into_owned(),
                    vhost: v.name.clone(),
                    kind: x.kind.name().to_string(),
                    durable: x.durable,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: table_to_json(&x.arguments),
                });
            }
            for b in x.bindings.read().all.iter() {
                let (destination, destination_type) = match &b.dest {
                    Dest::Queue(q) if (transient || q.durable) && q.exclusive_owner.is_none() => {
                        (q.name.to_str_lossy(), "queue")
                    }
                    Dest::Exchange(e) if transient || e.durable => (e.name.to_str_lossy(), "exchange"),
                    _ => continue,
                };
                d.bindings.push(BindingDef {
                    source: x.name.to_str_lossy().into_owned(),
                    vhost: v.name.clone(),
                    destination: destination.into_owned(),
                    destination_type: destination_type.into(),
                    routing_key: b.routing_key.to_str_lossy().into_owned(),
                    arguments: table_to_json(&b.arguments),
                });
            }
        }
    }
    d
}

/// Apply a definitions document: users, vhosts, permissions, then exchanges, queues and bindings
/// (each through the same checks as a client's declare). Returns the problems found, one line
/// each; what could be applied is applied.
pub fn import(broker: &Broker, d: &Definitions) -> Vec<String> {
    let mut problems = Vec::new();
    for u in &d.users {
        if let (Some(pw), true) = (&u.password, u.password_hash.is_empty()) {
            broker.put_user(User::new(&u.name, pw, tags_of(&u.tags)));
            continue;
        }
        let algo = if u.hashing_algorithm.is_empty() { crate::auth::SHA256 } else { &u.hashing_algorithm };
        match User::from_definition(&u.name, &u.password_hash, algo, tags_of(&u.tags)) {
            Some(user) => broker.put_user(user),
            None => problems.push(format!("user '{}': unsupported password hash ({algo})", u.name)),
        }
    }
    for v in &d.vhosts {
        broker.add_vhost(&v.name);
    }
    for p in &d.permissions {
        if let Err(e) = broker.set_permission(p.clone()) {
            problems.push(format!("permissions of '{}' in vhost '{}': {e}", p.user, p.vhost));
        }
    }
    // Policies before queues and exchanges, so those declared here get them.
    for p in &d.policies {
        let Some(o) = p.as_object() else { continue };
        let vhost = o.get("vhost").and_then(|v| v.as_str()).unwrap_or("/");
        let name = o.get("name").and_then(|v| v.as_str()).unwrap_or("");
        let Some(v) = broker.vhost(vhost) else {
            problems.push(format!("policy '{name}': no vhost '{vhost}'"));
            continue;
        };
        match crate::policy::Policy::from_json(vhost, name, o) {
            Ok(p) => {
                v.set_policy(p);
            }
            Err(e) => problems.push(format!("policy '{name}' in vhost '{vhost}': {e}")),
        }
    }
    for p in &d.topic_permissions {
        if let Err(e) = broker.set_topic_permission(p.clone()) {
            problems.push(format!(
                "topic permissions of '{}' in vhost '{}' on exchange '{}': {e}",
                p.user, p.vhost, p.exchange
            ));
        }
    }
    if !d.parameters.is_empty() || !d.global_parameters.is_empty() {
        // rabbitmq-compat: runtime parameters (federation, shovels) have no effect in Warren; said
        // once per import rather than dropped silently.
        tracing::warn!(
            "definitions: {} parameter(s) and {} global parameter(s) are not applied by Warren",
            d.parameters.len(),
            d.global_parameters.len()
        );
    }
    let conn = ConnectionId(0);
    // A name that does not fit a short string would be cut and stored under other bytes than the
    // file says: refused (and reported), as a client's declare of it would be.
    let too_long = |what: &str, name: &str, vhost: &str| {
        (name.len() > warren_protocol::types::SHORTSTR_MAX)
            .then(|| format!("{what} '{name}' in vhost '{vhost}': name longer than 255 bytes"))
    };
    for x in &d.exchanges {
        if x.name.starts_with("amq.") {
            continue;
        }
        if let Some(p) = too_long("exchange", &x.name, &x.vhost) {
            problems.push(p);
            continue;
        }
        let Some(v) = broker.vhost(&x.vhost) else {
            problems.push(format!("exchange '{}': no vhost '{}'", x.name, x.vhost));
            continue;
        };
        let decl = ExchangeDeclare {
            ticket: 0,
            exchange: ShortStr::from(x.name.clone()),
            kind: ShortStr::from(x.kind.clone()),
            passive: false,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            no_wait: false,
            arguments: json_to_table(&x.arguments),
        };
        if let Err(e) = v.declare_exchange(&decl) {
            problems.push(format!("exchange '{}' in vhost '{}': {}", x.name, x.vhost, e.reply_text()));
        }
    }
    for q in &d.queues {
        if let Some(p) = too_long("queue", &q.name, &q.vhost) {
            problems.push(p);
            continue;
        }
        let Some(v) = broker.vhost(&q.vhost) else {
            problems.push(format!("queue '{}': no vhost '{}'", q.name, q.vhost));
            continue;
        };
        let decl = QueueDeclare {
            ticket: 0,
            queue: ShortStr::from(q.name.clone()),
            passive: false,
            durable: q.durable,
            exclusive: false,
            auto_delete: q.auto_delete,
            no_wait: false,
            arguments: json_to_table(&q.arguments),
        };
        if let Err(e) = v.declare_queue(&decl, decl.queue.clone(), conn) {
            problems.push(format!("queue '{}' in vhost '{}': {}", q.name, q.vhost, e.reply_text()));
        }
    }
    for b in &d.bindings {
        if let Some(p) =
            [(&b.source, "binding source"), (&b.destination, "binding destination"), (&b.routing_key, "binding key")]
                .into_iter()
                .find_map(|(n, what)| too_long(what, n, &b.vhost))
        {
            problems.push(p);
            continue;
        }
        let Some(v) = broker.vhost(&b.vhost) else {
            problems.push(format!("binding from '{}': no vhost '{}'", b.source, b.vhost));
            continue;
        };
        let (src, dst, key) = (
            ShortStr::from(b.source.clone()),
            ShortStr::from(b.destination.clone()),
            ShortStr::from(b.routing_key.clone()),
        );
        let args = json_to_table(&b.arguments);
        let r = if b.destination_type == "exchange" {
            v.bind_exchange(&dst, &src, key, args)
        } else {
            v.usable_queue(&dst, conn).and_then(|q| v.bind_queue(q, &src, key, args))
        };
        if let Err(e) = r {
            problems.push(format!(
                "binding '{}' -> '{}' in vhost '{}': {}",
                b.source,
                b.destination,
                b.vhost,
                e.reply_text()
            ));
        }
    }
    problems
}

/// Write `data` to `path` atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // A full disk: the old file stays whole; the partial copy must not take more space.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    if let Some(log) = std::env::var_os(crate::store::TEST_SYNC_LOG_ENV) {
        // Tests only: what is now durable, for a simulated power cut (replaced atomically too).
        let copy = PathBuf::from(log).with_extension("defs");
        std::fs::write(copy.with_extension("defs.tmp"), data)?;
        std::fs::rename(copy.with_extension("defs.tmp"), copy)?;
    }
    Ok(())
}

/// Read a definitions file.
pub fn read(path: &Path) -> anyhow::Result<Definitions> {
    let data = std::fs::read(path)?;
    Ok(serde_json::from_slice(&data)?)
}

/// Coordinates metadata writes: requests are numbered; the writer task writes the latest state
/// and publishes the highest request number it covered.
pub struct MetaStore {
    /// The definitions file.
    pub path: PathBuf,
    /// Number of the last request.
    requested: AtomicU64,
    /// Number of the last request covered by a completed write.
    done: watch::Sender<u64>,
    /// Wakes the writer.
    wake: Notify,
}

impl MetaStore {
    pub fn new(data_dir: &Path) -> Arc<MetaStore> {
        Arc::new(MetaStore {
            path: data_dir.join(FILE_NAME),
            requested: AtomicU64::new(0),
            done: watch::channel(0).0,
            wake: Notify::new(),
        })
    }

    /// The durable state changed: ask for a write. Returns the request's number.
    pub fn request(&self) -> u64 {
        let n = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake.notify_one();
        n
    }

    /// The last request not yet covered by a write, if any.
    pub fn pending(&self) -> Option<u64> {
        let r = self.requested.load(Ordering::Acquire);
        (r > *self.done.borrow()).then_some(r)
    }

    /// Wait until request `n` is on disk.
    pub async fn wait(&self, n: u64) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d >= n).await;
    }

    /// Write the broker's definitions now (boot, shutdown).
    pub fn write_now(&self, broker: &Broker) -> anyhow::Result<()> {
        let n = self.requested.load(Ordering::Acquire);
        let json = serde_json::to_vec_pretty(&export(broker))?;
        write_atomic(&self.path, &json)?;
        self.done.send_if_modified(|d| {
            let up = n > *d;
            if up {
                *d = n;
            }
            up
        });
        Ok(())
    }

    /// The writer task: one write per wake-up, covering every request made before it started.
    pub async fn run(self: Arc<Self>, broker: Weak<Broker>) {
        let mut failing = false;
        loop {
            self.wake.notified().await;
            let Some(b) = broker.upgrade() else { return };
            let me = self.clone();
            let r = tokio::task::spawn_blocking(move || me.write_now(&b)).await;
            match r {
                Ok(Ok(())) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("{} written again", self.path.display());
                    }
                }
                Ok(Err(e)) => {
                    // Replies stay held: nobody is told a change is durable when it is not.
                    // Logged once per run of failures (a full disk retries every 500 ms).
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!("cannot write {}: {e:#}; retrying until it succeeds", self.path.display());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    self.wake.notify_one();
                }
                Err(e) => tracing::error!("metadata writer failed: {e}"),
            }
        }
    }
}
