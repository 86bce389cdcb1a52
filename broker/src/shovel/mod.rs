//! Dynamic shovels (RabbitMQ's `rabbitmq_shovel`): runtime parameters of component `shovel`, each
//! a JSON definition that moves messages from a source (a queue, or an exchange through a queue
//! of the shovel's own) to a destination (a queue, an exchange, or the message's own exchange and
//! routing key), on this broker or another one reached by an `amqp://` / `amqps://` URI.
//!
//! This module is the core's part: the definition and its validation (RabbitMQ's rules and texts,
//! one place for every door: HTTP, `rabbitmqctl set_parameter`, definitions import) and the
//! registry of shovels with their status. Moving messages is the [`runner`]'s and [`worker`]'s
//! work: they speak AMQP 0-9-1 as a client ([`client`]), over TCP to another broker or over an
//! in-memory pipe to this one ("direct" connections), so a shovel goes through the same doors,
//! rules and counters as any client.
//!
//! Runs in: any task (the registry: short locks, nothing awaits while holding one).
//!
//! # Invariants
//! - Only a definition that passed [`ShovelDef::parse`] is in the registry.
//! - Every change of the set of shovels bumps [`Shovels::changed`], which the runner watches; a
//!   replaced entry (changed definition, restart) is a new `Arc`, so the runner restarts exactly
//!   the shovels whose entry is not the one it started.
//! - A durable change (set, clear) requests a definitions write through the broker (caller).
pub mod client;
pub mod runner;
pub mod uri;
pub mod worker;

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use warren_protocol::FieldTable;

/// RabbitMQ's default `src-prefetch-count`.
pub const DEFAULT_PREFETCH: u16 = 1000;
/// RabbitMQ's default `reconnect-delay`, in seconds.
pub const DEFAULT_RECONNECT_DELAY_S: f64 = 1.0;
/// The longest wait between two reconnection attempts: the delay doubles after each failure in a
/// row, from `reconnect-delay` up to this (a remote broker that is down for long is not hammered).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// The keys a shovel definition may have (RabbitMQ's, AMQP 0-9-1 source and destination).
const KEYS: &[&str] = &[
    "src-uri",
    "src-protocol",
    "src-queue",
    "src-queue-args",
    "src-exchange",
    "src-exchange-key",
    "src-prefetch-count",
    "src-delete-after",
    "src-consumer-args",
    "dest-uri",
    "dest-protocol",
    "dest-queue",
    "dest-queue-args",
    "dest-exchange",
    "dest-exchange-key",
    "dest-add-forward-headers",
    "dest-add-timestamp-header",
    "dest-publish-properties",
    "ack-mode",
    "reconnect-delay",
    // RabbitMQ's older names of the same settings.
    "add-forward-headers",
    "add-timestamp-header",
    "delete-after",
    "prefetch-count",
    "publish-properties",
];

/// When the source's messages are acknowledged (`ack-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// After the destination confirmed the message (the default: nothing lost).
    OnConfirm,
    /// As soon as the message was written to the destination.
    OnPublish,
    /// Consumed without acknowledgements (fastest; messages in flight are lost on a failure).
    NoAck,
}

/// When the shovel deletes itself (`src-delete-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteAfter {
    /// Never: the shovel runs until it is deleted.
    Never,
    /// After moving as many messages as the source queue had when the shovel started.
    QueueLength,
    /// After moving this many messages.
    Count(u64),
}

/// A validated shovel definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ShovelDef {
    /// Source URIs (one is used; the next on failure).
    pub src_uris: Vec<String>,
    /// Source queue (declared durable if missing), or
    pub src_queue: Option<String>,
    /// its arguments, when the shovel declares it.
    pub src_queue_args: FieldTable,
    /// source exchange (the shovel binds a server-named exclusive queue to it)
    pub src_exchange: Option<String>,
    /// with this binding key.
    pub src_exchange_key: String,
    /// Prefetch of the source consumer.
    pub prefetch: u16,
    /// Arguments of the source consumer.
    pub src_consumer_args: FieldTable,
    /// When the shovel deletes itself.
    pub delete_after: DeleteAfter,
    /// Destination URIs.
    pub dest_uris: Vec<String>,
    /// Destination queue (declared durable if missing; published to through the default
    /// exchange), or
    pub dest_queue: Option<String>,
    /// its arguments, when the shovel declares it.
    pub dest_queue_args: FieldTable,
    /// destination exchange
    pub dest_exchange: Option<String>,
    /// with this routing key (the message's own when absent). With neither a destination queue
    /// nor exchange, messages keep their own exchange and routing key.
    pub dest_exchange_key: Option<String>,
    /// Add the `x-shovelled` header (where the message has been).
    pub forward_headers: bool,
    /// Add the `x-shovelled-timestamp` header.
    pub timestamp_header: bool,
    /// When to acknowledge at the source.
    pub ack_mode: AckMode,
    /// Wait before reconnecting after a failure; zero: do not restart (as RabbitMQ).
    pub reconnect_delay: Duration,
}

fn failed(msg: impl std::fmt::Display) -> String {
    format!("Validation failed\n\n{msg}\n")
}

/// RabbitMQ's rendering of a JSON value in its validation texts (`<<"x">>` for strings).
fn erl(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}

fn string_list(key: &str, v: &Value) -> Result<Vec<String>, String> {
    let uris = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|u| u.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| failed(format!("{key} should be a URI or a list of URIs, actually was {}", erl(v))))?,
        _ => return Err(failed(format!("{key} should be a URI or a list of URIs, actually was {}", erl(v)))),
    };
    for u in &uris {
        uri::AmqpUri::parse(u, "/").map_err(|e| failed(format!("\"{u}\" not a valid URI: {e}")))?;
    }
    Ok(uris)
}

fn table(key: &str, v: Option<&Value>) -> Result<FieldTable, String> {
    match v {
        None => Ok(FieldTable::new()),
        Some(Value::Object(m)) => Ok(crate::store::meta::json_to_table(m)),
        Some(other) => Err(failed(format!("{key} should be a JSON object, actually was {}", erl(other)))),
    }
}

fn opt_string(key: &str, v: Option<&Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(failed(format!("{key} should be a string, actually was {}", erl(other)))),
    }
}

fn flag(key: &str, v: Option<&Value>) -> Result<bool, String> {
    match v {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(failed(format!("{key} should be a boolean, actually was {}", erl(other)))),
    }
}

impl ShovelDef {
    /// Validate the `value` of a shovel parameter named `name`, as RabbitMQ's shovel plugin does
    /// (its texts, as `400 bad_request` reasons).
    pub fn parse(name: &str, value: &Value) -> Result<ShovelDef, String> {
        let Value::Object(m) = value else { return Err(failed("not a JSON object")) };
        let unknown: Vec<String> = m
            .iter()
            .filter(|(k, _)| !KEYS.contains(&k.as_str()))
            .map(|(k, v)| format!("{{<<\"{k}\">>,{v}}}"))
            .collect();
        if !unknown.is_empty() {
            return Err(failed(format!("Unrecognised terms [{}] in {name}", unknown.join(","))));
        }
        let get = |k: &str| m.get(k);
        let alias = |k: &str, old: &str| m.get(k).or_else(|| m.get(old));
        for key in ["src-protocol", "dest-protocol"] {
            match get(key) {
                None => {}
                Some(Value::String(p)) if p == "amqp091" => {}
                // rabbitmq-compat: Warren speaks AMQP 0-9-1 only (no AMQP 1.0 shovels).
                Some(Value::String(p)) if p == "amqp10" => {
                    return Err(failed(format!("{key} amqp10 is not supported by Warren (AMQP 0-9-1 only)")))
                }
                Some(other) => {
                    return Err(failed(format!(
                        "{key} should be one of [<<\"amqp091\">>,<<\"amqp10\">>], actually was {}",
                        erl(other)
                    )))
                }
            }
        }
        // The structural problems are reported together, as RabbitMQ lists them.
        let mut missing = Vec::new();
        let src_queue = opt_string("src-queue", get("src-queue"))?;
        let src_exchange = opt_string("src-exchange", get("src-exchange"))?;
        match (&src_queue, &src_exchange) {
            (None, None) => missing.push("Must specify 'src-exchange' or 'src-queue'".to_string()),
            (Some(_), Some(_)) => missing.push("Cannot specify 'src-exchange' and 'src-queue'".to_string()),
            _ => {}
        }
        let dest_queue = opt_string("dest-queue", get("dest-queue"))?;
        let dest_exchange = opt_string("dest-exchange", get("dest-exchange"))?;
        if dest_queue.is_some() && dest_exchange.is_some() {
            missing.push("Cannot specify 'dest-exchange' and 'dest-queue'".to_string());
        }
        for key in ["src-uri", "dest-uri"] {
            if get(key).is_none() {
                missing.push(format!("Key \"{key}\" not found in {name}"));
            }
        }
        if !missing.is_empty() {
            return Err(failed(missing.join("\n")));
        }
        let src_uris = string_list("src-uri", get("src-uri").unwrap_or(&Value::Null))?;
        let dest_uris = string_list("dest-uri", get("dest-uri").unwrap_or(&Value::Null))?;
        for (key, v) in [
            ("src-queue", &src_queue),
            ("src-exchange", &src_exchange),
            ("dest-queue", &dest_queue),
            ("dest-exchange", &dest_exchange),
        ] {
            if v.as_ref().is_some_and(|s| s.len() > warren_protocol::types::SHORTSTR_MAX) {
                return Err(failed(format!("{key} is longer than 255 bytes")));
            }
        }
        let prefetch = match alias("src-prefetch-count", "prefetch-count") {
            None => DEFAULT_PREFETCH,
            Some(v) => match v.as_u64() {
                Some(n) if n <= u16::MAX as u64 => n as u16,
                Some(_) => return Err(failed(format!("src-prefetch-count should be at most 65535, actually was {v}"))),
                None => return Err(failed(format!("src-prefetch-count should be a number, actually was {}", erl(v)))),
            },
        };
        let delete_after = match alias("src-delete-after", "delete-after") {
            None => DeleteAfter::Never,
            Some(Value::String(s)) if s == "never" => DeleteAfter::Never,
            Some(Value::String(s)) if s == "queue-length" => DeleteAfter::QueueLength,
            Some(v) if v.as_u64().is_some() => DeleteAfter::Count(v.as_u64().unwrap_or(0)),
            Some(v) => {
                return Err(failed(format!(
                    "src-delete-after should be a number greater than or equal to 0, \"never\" or \"queue-length\", actually was {}",
                    erl(v)
                )))
            }
        };
        if delete_after == DeleteAfter::QueueLength && src_queue.is_none() {
            return Err(failed("src-delete-after \"queue-length\" needs a 'src-queue'"));
        }
        let ack_mode = match get("ack-mode") {
            None => AckMode::OnConfirm,
            Some(Value::String(s)) if s == "on-confirm" => AckMode::OnConfirm,
            Some(Value::String(s)) if s == "on-publish" => AckMode::OnPublish,
            Some(Value::String(s)) if s == "no-ack" => AckMode::NoAck,
            Some(v) => {
                return Err(failed(format!(
                    "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was {}",
                    erl(v)
                )))
            }
        };
        let reconnect_delay = match get("reconnect-delay") {
            None => Duration::from_secs_f64(DEFAULT_RECONNECT_DELAY_S),
            Some(v) => match v.as_f64() {
                Some(s) if (0.0..=86_400.0).contains(&s) => Duration::from_secs_f64(s),
                _ => return Err(failed(format!("reconnect-delay should be a number, actually was {}", erl(v)))),
            },
        };
        // rabbitmq-compat: `dest-publish-properties` is accepted (definitions that carry it load)
        // but not applied: messages keep their own properties.
        if !matches!(alias("dest-publish-properties", "publish-properties"), None | Some(Value::Object(_))) {
            return Err(failed("dest-publish-properties should be a JSON object"));
        }
        Ok(ShovelDef {
            src_uris,
            src_queue_args: table("src-queue-args", get("src-queue-args"))?,
            src_exchange_key: opt_string("src-exchange-key", get("src-exchange-key"))?.unwrap_or_else(|| "#".into()),
            src_consumer_args: table("src-consumer-args", get("src-consumer-args"))?,
            src_queue,
            src_exchange,
            prefetch,
            delete_after,
            dest_uris,
            dest_queue_args: table("dest-queue-args", get("dest-queue-args"))?,
            dest_exchange_key: opt_string("dest-exchange-key", get("dest-exchange-key"))?,
            forward_headers: flag(
                "dest-add-forward-headers",
                alias("dest-add-forward-headers", "add-forward-headers"),
            )?,
            timestamp_header: flag(
                "dest-add-timestamp-header",
                alias("dest-add-timestamp-header", "add-timestamp-header"),
            )?,
            dest_queue,
            dest_exchange,
            ack_mode,
            reconnect_delay,
        })
    }
}

/// What a shovel is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connecting and declaring.
    Starting,
    /// Moving messages.
    Running,
    /// Failed; restarted after its reconnect delay (unless that is 0).
    Terminated,
}

impl State {
    /// RabbitMQ's name.
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Terminated => "terminated",
        }
    }
}

/// A shovel's status, as its worker reports it.
#[derive(Debug, Clone)]
pub struct Status {
    /// Current state.
    pub state: State,
    /// Why it terminated (with `Terminated`).
    pub reason: Option<String>,
    /// When the state was entered (unix ms).
    pub since_ms: u64,
    /// Messages moved (published to the destination) since the shovel was started.
    pub forwarded: u64,
    /// Messages published to the destination and not yet confirmed (on-confirm), or received and
    /// not yet published: what is "being shovelled".
    pub in_flight: u64,
    /// Messages left before the shovel deletes itself (with `src-delete-after`).
    pub remaining: Option<u64>,
    /// The destination connection is blocked by its broker's resource alarm.
    pub blocked: bool,
}

/// One shovel: its parameter and its live status.
#[derive(Debug)]
pub struct Entry {
    /// Its vhost.
    pub vhost: String,
    /// Its name.
    pub name: String,
    /// The parameter's value as given (exported and listed as is).
    pub value: Value,
    /// The same, validated.
    pub def: ShovelDef,
    /// Live status (worker writes, API reads).
    pub status: Mutex<Status>,
}

impl Entry {
    fn new(vhost: &str, name: &str, value: Value, def: ShovelDef) -> Arc<Entry> {
        Arc::new(Entry {
            vhost: vhost.into(),
            name: name.into(),
            value,
            def,
            status: Mutex::new(Status {
                state: State::Starting,
                reason: None,
                since_ms: crate::clock::unix_ms(),
                forwarded: 0,
                in_flight: 0,
                remaining: None,
                blocked: false,
            }),
        })
    }

    /// Enter `state` (with a reason when terminated).
    pub fn set_state(&self, state: State, reason: Option<String>) {
        let mut s = self.status.lock();
        s.state = state;
        s.reason = reason;
        s.since_ms = crate::clock::unix_ms();
    }

    /// The runtime parameter, as `/api/parameters/shovel` lists it.
    pub fn parameter(&self) -> Value {
        json!({"value": self.value, "vhost": self.vhost, "component": "shovel", "name": self.name})
    }
}

/// The shovels of every vhost.
pub struct Shovels {
    /// By (vhost, name).
    entries: Mutex<BTreeMap<(String, String), Arc<Entry>>>,
    /// Bumped on every change (the runner watches it).
    pub changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Shovels {
    fn default() -> Self {
        Shovels { entries: Default::default(), changed: tokio::sync::watch::channel(0).0 }
    }
}

impl Shovels {
    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    /// Set (create or replace) shovel `name` of `vhost`; true if it is new. A replaced shovel is
    /// restarted with its new definition.
    pub fn set(&self, vhost: &str, name: &str, value: Value) -> Result<bool, String> {
        let def = ShovelDef::parse(name, &value)?;
        let e = Entry::new(vhost, name, value, def);
        let created = self.entries.lock().insert((vhost.into(), name.into()), e).is_none();
        self.bump();
        Ok(created)
    }

    /// Remove shovel `name` of `vhost`; false if there is none.
    pub fn clear(&self, vhost: &str, name: &str) -> bool {
        let removed = self.entries.lock().remove(&(vhost.into(), name.into())).is_some();
        if removed {
            self.bump();
        }
        removed
    }

    /// Remove `e` if it is still the entry of its name (a shovel that deleted itself after
    /// `src-delete-after`, unless it was redefined meanwhile).
    pub fn clear_entry(&self, e: &Arc<Entry>) -> bool {
        let mut m = self.entries.lock();
        let key = (e.vhost.clone(), e.name.clone());
        if m.get(&key).is_some_and(|cur| Arc::ptr_eq(cur, e)) {
            m.remove(&key);
            drop(m);
            self.bump();
            return true;
        }
        false
    }

    /// Restart shovel `name` of `vhost` (a fresh entry with the same definition); false if none.
    pub fn restart(&self, vhost: &str, name: &str) -> bool {
        let mut m = self.entries.lock();
        let Some(cur) = m.get(&(vhost.into(), name.into())).cloned() else { return false };
        let e = Entry::new(vhost, name, cur.value.clone(), cur.def.clone());
        m.insert((vhost.into(), name.into()), e);
        drop(m);
        self.bump();
        true
    }

    /// Remove every shovel of `vhost` (the vhost is deleted or reset).
    pub fn clear_vhost(&self, vhost: &str) -> usize {
        let mut m = self.entries.lock();
        let before = m.len();
        m.retain(|(v, _), _| v != vhost);
        let n = before - m.len();
        drop(m);
        if n > 0 {
            self.bump();
        }
        n
    }

    /// Every shovel, ordered by vhost and name.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.entries.lock().values().cloned().collect()
    }

    /// The shovels of `vhost`.
    pub fn of(&self, vhost: &str) -> Vec<Arc<Entry>> {
        self.entries.lock().values().filter(|e| e.vhost == vhost).cloned().collect()
    }

    /// One shovel.
    pub fn get(&self, vhost: &str, name: &str) -> Option<Arc<Entry>> {
        self.entries.lock().get(&(vhost.into(), name.into())).cloned()
    }

    /// Messages being shovelled out of or into `vhost`'s queues right now (received from the
    /// source and not yet confirmed by the destination), for wait-until-idle.
    pub fn in_flight(&self, vhost: &str) -> u64 {
        self.of(vhost).iter().map(|e| e.status.lock().in_flight).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ShovelDef, String> {
        ShovelDef::parse("s", &v)
    }

    #[test]
    fn rabbitmq_rules() {
        let ok = parse(json!({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "dest-queue": "b"}))
            .expect("valid");
        assert_eq!(ok.ack_mode, AckMode::OnConfirm);
        assert_eq!(ok.prefetch, DEFAULT_PREFETCH);
        assert_eq!(ok.delete_after, DeleteAfter::Never);
        let e = parse(json!({"src-uri": "amqp://", "dest-uri": "amqp://"})).expect_err("refused");
        assert!(e.contains("Must specify 'src-exchange' or 'src-queue'"), "{e}");
        let e = parse(json!({"src-queue": "a", "dest-uri": "amqp://"})).expect_err("refused");
        assert!(e.contains("Key \"src-uri\" not found in s"), "{e}");
        let e = parse(json!({"src-uri": "http://x", "src-queue": "a", "dest-uri": "amqp://"})).expect_err("refused");
        assert!(e.contains("not a valid URI"), "{e}");
        let e =
            parse(json!({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "x": 1})).expect_err("refused");
        assert!(e.contains("Unrecognised terms [{<<\"x\">>,1}] in s"), "{e}");
        let d = parse(json!({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "src-delete-after": 5}))
            .expect("valid");
        assert_eq!(d.delete_after, DeleteAfter::Count(5));
        let e = parse(json!({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "src-delete-after": -1}))
            .expect_err("refused");
        assert!(e.contains("src-delete-after should be"), "{e}");
    }
}
