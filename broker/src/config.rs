//! Broker configuration: every default in one place, set from CLI flags and environment (main.rs).
//!
//! # Invariants
//! - `Config::default()` is what `warren` with no flags runs: RabbitMQ's defaults where RabbitMQ has
//!   one (port 5672, guest/guest, vhost `/`, frame_max 131072, channel_max 2047, heartbeat 60 s).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// RabbitMQ's AMQP port.
pub const DEFAULT_PORT: u16 = 5672;
/// frame_max proposed in connection.tune (RabbitMQ's default, 128 KiB).
pub const DEFAULT_FRAME_MAX: u32 = 131_072;
/// channel_max proposed in connection.tune (RabbitMQ's default).
pub const DEFAULT_CHANNEL_MAX: u16 = 2047;
/// Heartbeat interval proposed in connection.tune, seconds (RabbitMQ's default).
pub const DEFAULT_HEARTBEAT_SECS: u16 = 60;
/// Time a client has from TCP accept to connection.open (RabbitMQ's handshake_timeout).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the peer's connection.close-ok before dropping the socket.
pub const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long shutdown waits for connections to close before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on for AMQP (all of them; one listener each).
    pub listen: Vec<SocketAddr>,
    /// Proposed frame_max.
    pub frame_max: u32,
    /// Proposed channel_max.
    pub channel_max: u16,
    /// Proposed heartbeat, seconds (0 disables).
    pub heartbeat: u16,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// Default user name, created at start with full permissions on the default vhost.
    pub default_user: String,
    /// Default user's password.
    pub default_pass: String,
    /// Default vhost, created at start.
    pub default_vhost: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            // rabbitmq-compat: like RabbitMQ, every IPv4 and IPv6 address, so that `localhost`
            // works whether it resolves to 127.0.0.1 or ::1.
            listen: vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), DEFAULT_PORT),
            ],
            frame_max: DEFAULT_FRAME_MAX,
            channel_max: DEFAULT_CHANNEL_MAX,
            heartbeat: DEFAULT_HEARTBEAT_SECS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
        }
    }
}

impl Config {
    /// A config listening on one loopback port (0 = any free port), for tests.
    pub fn loopback(port: u16) -> Config {
        Config { listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)], ..Config::default() }
    }
}
