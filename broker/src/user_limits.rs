//! Per-user limits (RabbitMQ's `rabbitmqctl set_user_limits`, `PUT /api/user-limits/...`):
//! `max-connections` (a user's connections over every vhost) and `max-channels` (a user's channels
//! over all its connections). A negative value means no limit, as in RabbitMQ.
//!
//! Runs in: HTTP handlers and boot import (set / clear); connection.open and channel.open (checks).
//!
//! # Invariants
//! - A limit only refuses what would go beyond it: what is open stays when a limit is lowered.
//! - Limits belong to the user: exported with it (`users[].limits`), dropped when it is deleted.
//! - A user without limits costs a connection.open or channel.open one map lookup.
use crate::broker::Broker;
use serde_json::{json, Map, Value};

/// The limit names RabbitMQ knows.
pub const NAMES: [&str; 2] = ["max-connections", "max-channels"];

/// A user's limits; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// Most connections the user has open at once, over every vhost.
    pub max_connections: Option<u64>,
    /// Most channels the user has open at once, over all its connections.
    pub max_channels: Option<u64>,
}

impl UserLimits {
    /// As RabbitMQ shows them: `{"max-channels": 10}` (only the limits that are set).
    pub fn to_json(self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(n) = self.max_channels {
            m.insert("max-channels".into(), json!(n));
        }
        if let Some(n) = self.max_connections {
            m.insert("max-connections".into(), json!(n));
        }
        m
    }

    /// Whether no limit is set.
    pub fn is_empty(self) -> bool {
        self.max_connections.is_none() && self.max_channels.is_none()
    }
}

impl Broker {
    /// A user's limits (none for a user that has none or does not exist).
    pub fn user_limits(&self, user: &str) -> UserLimits {
        self.user_limits.read().get(user).copied().unwrap_or_default()
    }

    /// Every user that has a limit, with its limits, by name.
    pub fn all_user_limits(&self) -> Vec<(String, UserLimits)> {
        let mut v: Vec<_> = self.user_limits.read().iter().map(|(u, l)| (u.clone(), *l)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Set `user`'s limit `name` to `value` (negative: no limit). Err names an unknown user or
    /// limit (the caller checks the user exists first to word it).
    pub fn set_user_limit(&self, user: &str, name: &str, value: i64) -> Result<(), String> {
        if self.user(user).is_none() {
            return Err(format!("no user '{user}'"));
        }
        let v = u64::try_from(value).ok();
        {
            let mut all = self.user_limits.write();
            let l = all.entry(user.to_string()).or_default();
            match name {
                "max-connections" => l.max_connections = v,
                "max-channels" => l.max_channels = v,
                other => return Err(format!("unknown user limit '{other}' (known: {})", NAMES.join(", "))),
            }
            if l.is_empty() {
                all.remove(user);
            }
        }
        self.definitions_changed();
        Ok(())
    }

    /// Remove `user`'s limit `name`; false if it was not set.
    pub fn clear_user_limit(&self, user: &str, name: &str) -> bool {
        let was = {
            let mut all = self.user_limits.write();
            let Some(l) = all.get_mut(user) else { return false };
            let was = match name {
                "max-connections" => l.max_connections.take().is_some(),
                "max-channels" => l.max_channels.take().is_some(),
                _ => false,
            };
            if l.is_empty() {
                all.remove(user);
            }
            was
        };
        if was {
            self.definitions_changed();
        }
        was
    }

    /// connection.open for `user`: refused (RabbitMQ's text) when its connections are at its
    /// limit. The connection being opened is not registered yet.
    pub fn check_user_connection(&self, user: &str) -> Result<(), String> {
        let Some(max) = self.user_limits(user).max_connections else { return Ok(()) };
        let open = self.stats.connections().iter().filter(|c| c.user == user).count() as u64;
        if open >= max {
            return Err(format!("connection refused for user '{user}': user connection limit ({max}) is reached"));
        }
        Ok(())
    }

    /// channel.open for `user`: refused (RabbitMQ's text) when its channels, over all its
    /// connections, are at its limit.
    pub fn check_user_channel(&self, user: &str) -> Result<(), String> {
        let Some(max) = self.user_limits(user).max_channels else { return Ok(()) };
        let open: usize =
            self.stats.connections().iter().filter(|c| c.user == user).map(|c| c.channels.lock().len()).sum();
        if open as u64 >= max {
            return Err(format!(
                "number of channels opened for user '{user}' has reached the maximum allowed user limit of ({max})"
            ));
        }
        Ok(())
    }
}
