//! The metadata file: durable exchanges, queues and bindings, users, vhosts, permissions and
//! topic permissions, as a RabbitMQ definitions JSON document (its types here), written atomically
//! by the metadata writer task.
//!
//! Runs in: the metadata writer task (atomic replace), boot (read), and the connection readers
//! (they request a write and hold their replies until it is done).
//!
//! # Invariants
//! - The file is replaced atomically: written to a temporary file, fsynced, renamed over the old
//!   one, and the directory fsynced. A crash leaves the old file or the new one, never a mix.
//! - A change is requested (`MetaStore::request`) after the in-memory topology changed; the
//!   declare-ok / delete-ok / bind-ok that reports it is released to the client only once a write
//!   that started after the request has completed, so anything a client was told exists survives a
//!   crash.
//! - The writer knows nothing of the broker: it writes the snapshot it is handed
//!   (`definitions::export`, the door that knows both).
use crate::auth::{Permission, TopicPermission};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use warren_protocol::{FieldTable, FieldValue, LongStr, ShortStr};

/// Name of the definitions file in the data directory.
pub const FILE_NAME: &str = "definitions.json";
/// The RabbitMQ version Warren's exports claim to be compatible with.
pub const RABBIT_VERSION: &str = "3.10.8";

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

    /// Write `snapshot`'s definitions now (boot, shutdown). Requests made before the call are
    /// covered when it returns `Ok`.
    pub fn write_now(&self, snapshot: impl FnOnce() -> Definitions) -> anyhow::Result<()> {
        self.write_snapshot(|| Some(snapshot())).map(|_| ())
    }

    /// As [`MetaStore::write_now`]; `Ok(false)` when `snapshot` has nothing (the broker is gone).
    /// The request number is read before the snapshot is taken, so every request it covers is in it.
    fn write_snapshot(&self, snapshot: impl FnOnce() -> Option<Definitions>) -> anyhow::Result<bool> {
        let n = self.requested.load(Ordering::Acquire);
        let Some(defs) = snapshot() else { return Ok(false) };
        let json = serde_json::to_vec_pretty(&defs)?;
        write_atomic(&self.path, &json)?;
        self.done.send_if_modified(|d| {
            let up = n > *d;
            if up {
                *d = n;
            }
            up
        });
        Ok(true)
    }

    /// The writer task: one write per wake-up, covering every request made before it started.
    /// `snapshot` returns the definitions to write, or `None` once the broker is gone (the task
    /// ends).
    pub async fn run(self: Arc<Self>, snapshot: impl Fn() -> Option<Definitions> + Send + Sync + 'static) {
        let snapshot = Arc::new(snapshot);
        let mut failing = false;
        loop {
            self.wake.notified().await;
            let (me, snap) = (self.clone(), snapshot.clone());
            let r = tokio::task::spawn_blocking(move || me.write_snapshot(|| snap())).await;
            match r {
                Ok(Ok(false)) => return,
                Ok(Ok(true)) => {
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
