//! RabbitMQ plugins as Warren has them: the ones built in (always on: nothing to enable), and the
//! ones it does not have, each with what is missing, so `rabbitmq-plugins` and the
//! `enabled_plugins` file read at boot tell the truth instead of failing silently.
//!
//! Runs in: `main` (the `enabled_plugins` file, once at start) and the CLI (`ctl.rs`).
//!
//! # Invariants
//! - A built-in plugin is on whatever the file or the CLI says: it cannot be disabled.
//! - A plugin that is neither built in nor known as missing is reported as unknown, by name.

/// Plugins whose features Warren has built in.
pub const BUILT_IN: &[&str] = &[
    "rabbitmq_consistent_hash_exchange",
    "rabbitmq_delayed_message_exchange",
    "rabbitmq_event_exchange",
    "rabbitmq_management",
    "rabbitmq_management_agent",
    "rabbitmq_prometheus",
    "rabbitmq_random_exchange",
    "rabbitmq_shovel",
    "rabbitmq_shovel_management",
    "rabbitmq_stream",
    "rabbitmq_stream_management",
    "rabbitmq_web_dispatch",
];

/// Plugins of RabbitMQ (or well-known third-party ones) that Warren does not have, with what
/// a user would miss.
pub const MISSING: &[(&str, &str)] = &[
    ("rabbitmq_amqp1_0", "AMQP 1.0 clients cannot connect"),
    ("rabbitmq_auth_backend_cache", "no external authentication backends"),
    ("rabbitmq_auth_backend_http", "users are Warren's own (no HTTP authentication backend)"),
    ("rabbitmq_auth_backend_ldap", "users are Warren's own (no LDAP)"),
    ("rabbitmq_auth_backend_oauth2", "users are Warren's own (no OAuth 2 tokens)"),
    ("rabbitmq_auth_mechanism_ssl", "no EXTERNAL (client certificate) login"),
    ("rabbitmq_federation", "no federated exchanges or queues"),
    ("rabbitmq_federation_management", "no federation"),
    ("rabbitmq_jms_topic_exchange", "no x-jms-topic exchange type"),
    ("rabbitmq_message_timestamp", "messages are not stamped on arrival"),
    ("rabbitmq_mqtt", "MQTT clients cannot connect"),
    ("rabbitmq_peer_discovery_aws", "no clustering"),
    ("rabbitmq_peer_discovery_consul", "no clustering"),
    ("rabbitmq_peer_discovery_etcd", "no clustering"),
    ("rabbitmq_peer_discovery_k8s", "no clustering"),
    ("rabbitmq_recent_history_exchange", "no x-recent-history exchange type"),
    ("rabbitmq_sharding", "no x-modulus-hash sharding policies"),
    ("rabbitmq_stomp", "STOMP clients cannot connect"),
    ("rabbitmq_top", "no per-process view"),
    ("rabbitmq_tracing", "no trace log files (the firehose, rabbitmqctl trace_on, is built in)"),
    ("rabbitmq_web_mqtt", "MQTT over WebSocket clients cannot connect"),
    ("rabbitmq_web_stomp", "STOMP over WebSocket clients cannot connect"),
];

/// Where RabbitMQ reads the enabled plugins from (`RABBITMQ_ENABLED_PLUGINS_FILE` overrides it).
pub const ENABLED_PLUGINS_FILE: &str = "/etc/rabbitmq/enabled_plugins";

/// What Warren has of plugin `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Built in, always on.
    BuiltIn,
    /// Known and not in Warren: what is missing.
    Missing(&'static str),
    /// Not a plugin Warren knows of.
    Unknown,
}

/// What Warren has of plugin `name`.
pub fn status(name: &str) -> Status {
    if BUILT_IN.contains(&name) {
        return Status::BuiltIn;
    }
    MISSING.iter().find(|(n, _)| *n == name).map_or(Status::Unknown, |(_, why)| Status::Missing(why))
}

/// The plugin names of an `enabled_plugins` file (an Erlang list: `[rabbitmq_management,x].`).
pub fn parse_enabled(text: &str) -> Vec<String> {
    let body = text.trim().trim_end_matches('.').trim();
    let body = body.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(body);
    body.split(',').map(|s| s.trim().trim_matches('\'').to_string()).filter(|s| !s.is_empty()).collect()
}

/// Read the `enabled_plugins` file (if there is one) and log, once, each plugin it enables that
/// Warren does not have.
pub fn check_enabled_file() {
    let path = std::env::var("RABBITMQ_ENABLED_PLUGINS_FILE").unwrap_or_else(|_| ENABLED_PLUGINS_FILE.into());
    let Ok(text) = std::fs::read_to_string(&path) else { return };
    for name in parse_enabled(&text) {
        match status(&name) {
            Status::BuiltIn => {}
            Status::Missing(why) => {
                tracing::warn!("{path} enables plugin {name}, which Warren does not include: {why}")
            }
            Status::Unknown => tracing::warn!("{path} enables plugin {name}, which Warren does not know"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_plugins_file_is_read_as_rabbitmq_writes_it() {
        assert_eq!(parse_enabled("[rabbitmq_management,rabbitmq_mqtt].\n"), ["rabbitmq_management", "rabbitmq_mqtt"]);
        assert_eq!(
            parse_enabled("[ 'rabbitmq_shovel' ,\n rabbitmq_prometheus ]."),
            ["rabbitmq_shovel", "rabbitmq_prometheus"]
        );
        assert!(parse_enabled("[].").is_empty());
        assert_eq!(status("rabbitmq_mqtt"), Status::Missing("MQTT clients cannot connect"));
        assert_eq!(status("rabbitmq_management"), Status::BuiltIn);
        assert_eq!(status("nope"), Status::Unknown);
    }
}
