//! Broker configuration: every default in one place, set from CLI flags and environment (main.rs).
//!
//! # Invariants
//! - `Config::default()` is what `warren` with no flags runs: RabbitMQ's defaults where RabbitMQ has
//!   one (port 5672, guest/guest, vhost `/`, frame_max 131072, channel_max 2047, heartbeat 60 s).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The RabbitMQ release whose behaviour Warren follows: announced to clients as `version` (they
/// branch on product and version) and reported by the management API.
pub const RABBITMQ_VERSION: &str = "3.10.8";

/// How the broker names itself in connection.start's server properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// `product: RabbitMQ`, `version: RABBITMQ_VERSION` (Warren's own name and version go in
    /// `platform` and `information`): clients that branch on the product (kombu's basic.qos
    /// semantics, the Go client's feature checks, amqplib's suite) take the RabbitMQ path.
    RabbitMq,
    /// `product: Warren` with Warren's version.
    Warren,
}

/// RabbitMQ's AMQP port.
pub const DEFAULT_PORT: u16 = 5672;
/// frame_max proposed in connection.tune (RabbitMQ's default, 128 KiB).
pub const DEFAULT_FRAME_MAX: u32 = 131_072;
/// channel_max proposed in connection.tune (RabbitMQ's default).
pub const DEFAULT_CHANNEL_MAX: u16 = 2047;
/// Heartbeat interval proposed in connection.tune, seconds (RabbitMQ's default).
pub const DEFAULT_HEARTBEAT_SECS: u16 = 60;
/// Largest message body accepted (RabbitMQ 3.10's `max_message_size` default, 128 MiB; RabbitMQ
/// itself caps the setting at 512 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 128 * 1024 * 1024;
/// RabbitMQ's management plugin port.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 15672;
/// RabbitMQ's Prometheus plugin port.
pub const DEFAULT_PROMETHEUS_PORT: u16 = 15692;
/// RabbitMQ's stream protocol port (`rabbitmq_stream`).
pub const DEFAULT_STREAM_PORT: u16 = 5552;
/// RabbitMQ's AMQPS port.
pub const DEFAULT_TLS_PORT: u16 = 5671;
/// Time a client has from TCP accept to connection.open (RabbitMQ's handshake_timeout).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time an HTTP client (management, Prometheus) has to send a request's headers, from the first
/// byte (or from accept); the connection is closed when they are not complete by then (a
/// partial-header socket must not be held). RabbitMQ's HTTP listeners (cowboy) close such
/// sockets within about 15 s.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Time an idle HTTP keep-alive connection (no request in progress, no byte either way) is kept
/// open; as RabbitMQ's listeners, about 15 s.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a closing connection waits for the peer's connection.close-ok before dropping the socket.
pub const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);
/// Default memory high watermark: share of the machine's (or cgroup's) memory that queued message
/// bodies may take before publishers are blocked (RabbitMQ's vm_memory_high_watermark default).
pub const DEFAULT_MEMORY_HIGH_WATERMARK: f64 = 0.4;
/// How often the memory and disk alarms are re-evaluated (the disk one with one statvfs).
pub const MEMORY_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// RabbitMQ's default `disk_free_limit`: publishers are blocked while the data directory's
/// filesystem has less than this many bytes free.
pub const DEFAULT_DISK_FREE_LIMIT: u64 = 50_000_000;

/// The disk free limit (RabbitMQ's `disk_free_limit.absolute` / `.relative`): bytes, or a
/// multiple of the machine's memory (`{mem_relative, 1.0}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiskFreeLimit {
    Absolute(u64),
    MemRelative(f64),
}

impl std::str::FromStr for DiskFreeLimit {
    type Err = String;
    /// `50MB`, `1GiB`, `1000000` (bytes), or a multiple of memory: `1.5`, `mem_relative:1.5`,
    /// `{mem_relative, 1.5}` (the forms RabbitMQ's configuration and CLI use).
    fn from_str(s: &str) -> Result<DiskFreeLimit, String> {
        let t = s.trim().trim_start_matches('{').trim_end_matches('}').trim();
        if let Some(rest) = t.strip_prefix("mem_relative") {
            let f = rest.trim_start_matches([',', ':', ' ']).trim();
            return match f.parse::<f64>() {
                Ok(f) if f >= 0.0 && f.is_finite() => Ok(DiskFreeLimit::MemRelative(f)),
                _ => Err(format!("invalid disk free limit '{s}'")),
            };
        }
        if t.contains('.') {
            if let Ok(f) = t.parse::<f64>() {
                if f >= 0.0 && f.is_finite() {
                    return Ok(DiskFreeLimit::MemRelative(f));
                }
            }
        }
        match t.parse::<Watermark>() {
            Ok(Watermark::Absolute(b)) => Ok(DiskFreeLimit::Absolute(b)),
            _ => Err(format!("invalid disk free limit '{s}'")),
        }
    }
}

impl DiskFreeLimit {
    /// The limit in bytes on this machine.
    pub fn bytes(self) -> u64 {
        match self {
            DiskFreeLimit::Absolute(b) => b,
            DiskFreeLimit::MemRelative(f) => (total_memory() as f64 * f) as u64,
        }
    }
}

/// The memory high watermark: a share of total memory or an absolute number of bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watermark {
    Relative(f64),
    Absolute(u64),
}

impl std::str::FromStr for Watermark {
    type Err = String;
    /// `0.4` (a share of total memory) or an absolute size: `1073741824`, `512MiB`, `2GB`, `64KiB`.
    fn from_str(s: &str) -> Result<Watermark, String> {
        let s = s.trim();
        if let Ok(f) = s.parse::<f64>() {
            if s.contains('.') && (0.0..=1.0).contains(&f) {
                return Ok(Watermark::Relative(f));
            }
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("invalid watermark '{s}'"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "KiB" | "K" | "k" => 1024,
            "MB" => 1_000_000,
            "MiB" | "M" => 1024 * 1024,
            "GB" => 1_000_000_000,
            "GiB" | "G" => 1024 * 1024 * 1024,
            other => return Err(format!("unknown unit '{other}' in watermark '{s}'")),
        };
        Ok(Watermark::Absolute(n * mult))
    }
}

impl Watermark {
    /// The watermark in bytes on this machine.
    pub fn bytes(self) -> u64 {
        match self {
            Watermark::Absolute(b) => b,
            Watermark::Relative(f) => (total_memory() as f64 * f) as u64,
        }
    }
}

/// Memory available to this process: the cgroup limit if there is one, else the machine's.
pub fn total_memory() -> u64 {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&b| b < (1 << 60));
    let machine = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (cgroup, machine) {
        (Some(c), Some(m)) => c.min(m),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        // Unknown platform: assume 1 GiB.
        (None, None) => 1 << 30,
    }
}

/// TLS listener settings (RabbitMQ's `ssl_options.*`).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Addresses to accept AMQPS on.
    pub listen: Vec<SocketAddr>,
    /// Server certificate chain, PEM (`ssl_options.certfile`).
    pub cert_file: std::path::PathBuf,
    /// Server private key, PEM (`ssl_options.keyfile`).
    pub key_file: std::path::PathBuf,
    /// CA certificates client certificates are checked against, PEM (`ssl_options.cacertfile`).
    /// With it, a client certificate is verified when one is presented (`verify_peer`).
    pub ca_file: Option<std::path::PathBuf>,
    /// Refuse clients without a certificate (`ssl_options.fail_if_no_peer_cert`); needs `ca_file`.
    pub fail_if_no_peer_cert: bool,
}

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
    /// Users who may log in only from a loopback address (RabbitMQ's `loopback_users`; default
    /// `guest`). Empty: no such restriction (what RabbitMQ's Docker image sets).
    pub loopback_users: Vec<String>,
    /// Largest message body accepted (RabbitMQ's `max_message_size`); a bigger content header
    /// closes the channel with 406 PRECONDITION_FAILED.
    pub max_message_size: u64,
    /// Most client connections at once (RabbitMQ's `connection_max`); `None`: no limit. A client
    /// beyond it is refused at connection.open with 530 NOT_ALLOWED.
    pub connection_max: Option<usize>,
    /// AMQPS listeners (RabbitMQ's `listeners.ssl`), with their certificate; `None`: no TLS.
    pub tls: Option<TlsConfig>,
    /// Management HTTP API and UI listeners (RabbitMQ's `management.tcp.port`, 15672); empty: off.
    pub management_listen: Vec<SocketAddr>,
    /// Prometheus listeners (RabbitMQ's `prometheus.tcp.port`, 15692); empty: off.
    pub prometheus_listen: Vec<SocketAddr>,
    /// Stream protocol listeners (RabbitMQ's `stream.listeners.tcp`, 5552); empty: off.
    pub stream_listen: Vec<SocketAddr>,
    /// Host name the stream protocol advertises to clients (metadata, open); None: the address
    /// the client connected to.
    pub stream_advertised_host: Option<String>,
    /// Port the stream protocol advertises; None: the port the client connected to.
    pub stream_advertised_port: Option<u16>,
    /// HTTP listeners: time to send a request's headers (see [`DEFAULT_HTTP_HEADER_TIMEOUT`]).
    pub http_header_timeout: Duration,
    /// HTTP listeners: time an idle keep-alive connection is kept (see
    /// [`DEFAULT_HTTP_IDLE_TIMEOUT`]).
    pub http_idle_timeout: Duration,
    /// Definitions file imported at every start (RabbitMQ's `load_definitions`). When set, the
    /// default user and vhost are not created: the file says who exists, as in RabbitMQ.
    pub load_definitions: Option<std::path::PathBuf>,
    /// Queued message bytes above which publishing connections are blocked.
    pub memory_high_watermark: Watermark,
    /// Free bytes on the data directory's filesystem below which publishing connections are
    /// blocked (RabbitMQ's disk alarm).
    pub disk_free_limit: DiskFreeLimit,
    /// Consumer acknowledgement timeout (RabbitMQ's consumer_timeout). rabbitmq-compat: off by
    /// default, as suits development; RabbitMQ defaults to 30 minutes.
    pub consumer_timeout: Option<Duration>,
    /// How the broker names itself to clients (`--announce-as`).
    pub announce: Announce,
    /// The test controls that change behaviour (fault injection) are on (`--test-controls`).
    pub test_controls: bool,
    /// Events kept per vhost by the message trace (`journal.rs`; 0: off).
    pub message_trace_size: usize,
    /// Where the message trace is exported as OpenTelemetry spans (OTLP/HTTP, `otlp.rs`).
    pub otlp_endpoint: Option<String>,
    /// Data directory (definitions, message store). `None`: nothing is persisted (in-process
    /// tests); the `warren` binary defaults to `./data`.
    pub data_dir: Option<std::path::PathBuf>,
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
            loopback_users: vec!["guest".into()],
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            connection_max: None,
            tls: None,
            management_listen: Vec::new(),
            prometheus_listen: Vec::new(),
            stream_listen: Vec::new(),
            stream_advertised_host: None,
            stream_advertised_port: None,
            http_header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            http_idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
            load_definitions: None,
            memory_high_watermark: Watermark::Relative(DEFAULT_MEMORY_HIGH_WATERMARK),
            disk_free_limit: DiskFreeLimit::Absolute(DEFAULT_DISK_FREE_LIMIT),
            consumer_timeout: None,
            announce: Announce::RabbitMq,
            test_controls: false,
            message_trace_size: crate::journal::DEFAULT_SIZE,
            otlp_endpoint: None,
            data_dir: None,
        }
    }
}

impl Config {
    /// A config listening on one loopback port (0 = any free port), for tests.
    pub fn loopback(port: u16) -> Config {
        Config { listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)], ..Config::default() }
    }
}
