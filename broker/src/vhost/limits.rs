//! Virtual host limits (RabbitMQ's `rabbitmqctl set_vhost_limits`, `PUT /api/vhost-limits/...`):
//! `max-connections` and `max-queues`. A negative value means no limit, as in RabbitMQ.
//!
//! Runs in: HTTP handlers and boot import (set / clear); queue declares and connection.open
//! (checks).
//!
//! # Invariants
//! - A limit only refuses what would go beyond it: existing queues and connections stay when a
//!   limit is lowered below their count.
//! - Limits are part of the definitions (RabbitMQ's `vhost-limits` runtime parameter), so they
//!   survive a restart.
use super::VHost;
use serde_json::{json, Map, Value};

/// The limit names RabbitMQ knows.
pub const NAMES: [&str; 2] = ["max-connections", "max-queues"];

/// A vhost's limits; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most client connections open to the vhost at once.
    pub max_connections: Option<u64>,
    /// Most queues the vhost holds.
    pub max_queues: Option<u64>,
}

impl Limits {
    /// As RabbitMQ shows them: `{"max-queues": 10}` (only the limits that are set).
    pub fn to_json(self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(n) = self.max_connections {
            m.insert("max-connections".into(), json!(n));
        }
        if let Some(n) = self.max_queues {
            m.insert("max-queues".into(), json!(n));
        }
        m
    }

    /// Whether no limit is set.
    pub fn is_empty(self) -> bool {
        self.max_connections.is_none() && self.max_queues.is_none()
    }
}

impl VHost {
    /// Its limits.
    pub fn limits(&self) -> Limits {
        *self.limits.lock()
    }

    /// Set limit `name` to `value` (negative: no limit). Err names an unknown limit.
    pub fn set_limit(&self, name: &str, value: i64) -> Result<(), String> {
        let v = u64::try_from(value).ok();
        {
            let mut l = self.limits.lock();
            match name {
                "max-connections" => l.max_connections = v,
                "max-queues" => l.max_queues = v,
                other => return Err(format!("unknown vhost limit '{other}' (known: {})", NAMES.join(", "))),
            }
        }
        self.changed(true);
        Ok(())
    }

    /// Remove limit `name`; false if it was not set.
    pub fn clear_limit(&self, name: &str) -> bool {
        let was = {
            let mut l = self.limits.lock();
            match name {
                "max-connections" => l.max_connections.take().is_some(),
                "max-queues" => l.max_queues.take().is_some(),
                _ => false,
            }
        };
        self.changed(was);
        was
    }
}
