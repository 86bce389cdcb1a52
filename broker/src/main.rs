//! `warren`: the broker binary. Parses flags and environment (clap), sets up logging (tracing),
//! starts the server, prints `Server startup complete`, and shuts down cleanly on SIGTERM / Ctrl-C
//! (connections get 320 CONNECTION_FORCED, exit code 0).
use anyhow::Context;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use warren::config::{self, Config};

/// Warren: an AMQP 0-9-1 message broker, a drop-in for RabbitMQ in development and CI.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address to listen on for AMQP; repeat for several. Default: every IPv4 and IPv6 address.
    #[arg(long = "bind", env = "WARREN_BIND", value_delimiter = ',')]
    bind: Vec<IpAddr>,
    /// AMQP port (0 picks a free port; the chosen one is printed).
    #[arg(long, env = "WARREN_PORT", default_value_t = config::DEFAULT_PORT)]
    port: u16,
    /// Log filter (error, warn, info, debug, trace, or tracing's directive syntax).
    #[arg(long, env = "WARREN_LOG", default_value = "info")]
    log_level: String,
    /// Heartbeat interval proposed to clients, seconds (0 disables).
    #[arg(long, env = "WARREN_HEARTBEAT", default_value_t = config::DEFAULT_HEARTBEAT_SECS)]
    heartbeat: u16,
    /// frame_max proposed to clients, bytes.
    #[arg(long, env = "WARREN_FRAME_MAX", default_value_t = config::DEFAULT_FRAME_MAX)]
    frame_max: u32,
    /// Default user (RABBITMQ_DEFAULT_USER is honoured too).
    #[arg(long, env = "RABBITMQ_DEFAULT_USER", default_value = "guest")]
    default_user: String,
    /// Default user's password (RABBITMQ_DEFAULT_PASS is honoured too).
    #[arg(long, env = "RABBITMQ_DEFAULT_PASS", default_value = "guest", hide_env_values = true)]
    default_pass: String,
    /// Queued message bytes above which publishers are blocked: a share of memory (`0.4`) or a
    /// size (`512MiB`, `1073741824`).
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK", default_value = "0.4")]
    memory_high_watermark: config::Watermark,
    /// Consumer acknowledgement timeout in milliseconds (0 = off, the default).
    #[arg(long, env = "WARREN_CONSUMER_TIMEOUT", default_value_t = 0)]
    consumer_timeout: u64,
    /// Data directory: durable exchanges, queues, bindings, users (definitions.json) and persistent
    /// messages (msgs/). The container uses /var/lib/warren.
    #[arg(long, env = "WARREN_DATA_DIR", default_value = "./data")]
    data_dir: std::path::PathBuf,
    /// Default vhost (RABBITMQ_DEFAULT_VHOST is honoured too).
    #[arg(long, env = "RABBITMQ_DEFAULT_VHOST", default_value = "/")]
    default_vhost: String,
    /// Users who may log in only from a loopback address (RabbitMQ's loopback_users), comma
    /// separated; `none` lifts the restriction (as RabbitMQ's Docker image does for guest).
    #[arg(long, env = "WARREN_LOOPBACK_USERS", default_value = "guest", value_delimiter = ',')]
    loopback_users: Vec<String>,
    /// Largest message body accepted, bytes (RabbitMQ's max_message_size); larger publishes get
    /// channel.close 406.
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE", default_value_t = config::DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: u64,
    /// channel_max proposed to clients (RabbitMQ's default 2047).
    #[arg(long, env = "WARREN_CHANNEL_MAX", default_value_t = config::DEFAULT_CHANNEL_MAX)]
    channel_max: u16,
    /// Most client connections at once (RabbitMQ's connection_max); 0 = no limit. Beyond it,
    /// connection.open gets 530 NOT_ALLOWED.
    #[arg(long, env = "WARREN_CONNECTION_MAX", default_value_t = 0)]
    connection_max: usize,
    /// Time a client has from TCP accept to connection.open, milliseconds (RabbitMQ's
    /// handshake_timeout).
    #[arg(long, env = "WARREN_HANDSHAKE_TIMEOUT", default_value_t = config::DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64)]
    handshake_timeout: u64,
    /// AMQPS: server certificate chain, PEM. With --tls-key, enables the TLS listener.
    #[arg(long, env = "WARREN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// AMQPS: server private key, PEM.
    #[arg(long, env = "WARREN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// AMQPS: CA certificates, PEM; client certificates presented are verified against them.
    #[arg(long, env = "WARREN_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// AMQPS: refuse clients that present no certificate (needs --tls-ca).
    #[arg(long, env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT", requires = "tls_ca")]
    tls_fail_if_no_peer_cert: bool,
    /// Definitions file (RabbitMQ's JSON format) imported at every start, as RabbitMQ's
    /// load_definitions; with it, the default user and vhost are not created.
    #[arg(long, env = "WARREN_LOAD_DEFINITIONS")]
    load_definitions: Option<std::path::PathBuf>,
    /// AMQPS port (on the same addresses as AMQP).
    #[arg(long, env = "WARREN_TLS_PORT", default_value_t = config::DEFAULT_TLS_PORT)]
    tls_port: u16,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log_level).context("invalid --log-level")?)
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = Config::default();
    if !cli.bind.is_empty() {
        cfg.listen = cli.bind.iter().map(|ip| SocketAddr::new(*ip, cli.port)).collect();
    } else {
        for a in cfg.listen.iter_mut() {
            a.set_port(cli.port);
        }
    }
    cfg.heartbeat = cli.heartbeat;
    cfg.frame_max = cli.frame_max.max(warren_protocol::constants::FRAME_MIN_SIZE);
    cfg.default_user = cli.default_user;
    cfg.default_pass = cli.default_pass;
    cfg.default_vhost = cli.default_vhost;
    cfg.memory_high_watermark = cli.memory_high_watermark;
    cfg.data_dir = Some(cli.data_dir);
    cfg.loopback_users = cli.loopback_users.into_iter().filter(|u| !u.is_empty() && u != "none").collect();
    cfg.max_message_size = cli.max_message_size;
    cfg.load_definitions = cli.load_definitions;
    cfg.channel_max = cli.channel_max;
    cfg.connection_max = (cli.connection_max > 0).then_some(cli.connection_max);
    cfg.handshake_timeout = std::time::Duration::from_millis(cli.handshake_timeout);
    if let (Some(cert_file), Some(key_file)) = (cli.tls_cert, cli.tls_key) {
        let listen = cfg.listen.iter().map(|a| SocketAddr::new(a.ip(), cli.tls_port)).collect();
        cfg.tls = Some(config::TlsConfig {
            listen,
            cert_file,
            key_file,
            ca_file: cli.tls_ca,
            fail_if_no_peer_cert: cli.tls_fail_if_no_peer_cert,
        });
    }
    cfg.consumer_timeout = (cli.consumer_timeout > 0).then(|| std::time::Duration::from_millis(cli.consumer_timeout));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let handle =
        warren::server::start(cfg.clone()).await.with_context(|| format!("cannot start on {:?}", cfg.listen))?;
    for a in &handle.local_addrs {
        println!("Listening for AMQP on {a}");
    }
    for a in &handle.tls_addrs {
        println!("Listening for AMQPS on {a}");
    }
    // Tools (CI service health checks, test harnesses) wait for this exact line.
    println!("Server startup complete");
    tracing::info!("Warren {} started", env!("CARGO_PKG_VERSION"));
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// mimalloc returns freed memory to the OS (a queue of expired or consumed messages does not keep
/// its pages), and is at least as fast as the system allocator on the message path. It is built
/// with `no_thp` (no transparent huge pages): idle RSS 5 MiB instead of 13 MiB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
