//! This broker's node name, as RabbitMQ prints it (`rabbit@<hostname>`): the management API, trace
//! copies and events name it.
//!
//! Runs in: any task; computed once.
//!
//! # Invariants
//! - The name never changes while the broker runs.
use std::sync::OnceLock;

/// `rabbit@<hostname>` (`rabbit@localhost` when the host name cannot be read).
pub fn name() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("rabbit@{host}")
    })
}
