//! `warren`: the broker binary. Parses flags and environment (clap), sets up logging (tracing),
//! starts the server, prints `Server startup complete`, and shuts down cleanly on SIGTERM / Ctrl-C
//! (connections get 320 CONNECTION_FORCED, exit code 0).
use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::net::{IpAddr, SocketAddr};
use warren::config::{self, Config};

mod allocator;

/// Warren: an AMQP 0-9-1 message broker, a drop-in for RabbitMQ in development and CI.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Management commands: `warren ctl help` (the same binary called rabbitmqctl, \
rabbitmq-diagnostics, rabbitmq-plugins, rabbitmqadmin or rabbitmq-streams acts as those tools)."
)]
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
    /// Log format: `text` (coloured only on a terminal, and never with NO_COLOR set) or `json`
    /// (one object per line, for log shippers).
    #[arg(long, env = "WARREN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
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
    /// Free disk space below which publishers are blocked (RabbitMQ's disk_free_limit): a size
    /// (`50MB`, `1GiB`) or a multiple of memory (`1.5`, `{mem_relative, 1.5}`).
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT", default_value = "50MB")]
    disk_free_limit: config::DiskFreeLimit,
    /// How the broker names itself to clients in connection.start: `rabbitmq` (product RabbitMQ,
    /// the RabbitMQ version Warren follows; clients branch on it) or `warren`.
    #[arg(long, env = "WARREN_ANNOUNCE_AS", default_value = "rabbitmq", value_parser = ["rabbitmq", "warren"])]
    announce_as: String,
    /// Consumer acknowledgement timeout in milliseconds (0 = off, the default).
    #[arg(long, env = "WARREN_CONSUMER_TIMEOUT", default_value_t = 0)]
    consumer_timeout: u64,
    /// Data directory: durable exchanges, queues, bindings, users (definitions.json) and persistent
    /// messages (msgs/). The container image uses /var/lib/rabbitmq (or a volume at /var/lib/warren).
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
    /// Management HTTP API and web UI port (on the same addresses as AMQP; 0 = any free port).
    #[arg(long, env = "WARREN_MANAGEMENT_PORT", default_value_t = config::DEFAULT_MANAGEMENT_PORT)]
    management_port: u16,
    /// Stream protocol port (RabbitMQ's rabbitmq_stream plugin; on the same addresses as AMQP;
    /// 0 = any free port). If it is taken, Warren runs without the stream protocol (logged).
    #[arg(long, env = "WARREN_STREAM_PORT", default_value_t = config::DEFAULT_STREAM_PORT)]
    stream_port: u16,
    /// Run without the stream protocol listener (stream queues still work over AMQP 0-9-1).
    #[arg(long, env = "WARREN_NO_STREAMS")]
    no_streams: bool,
    /// Host name advertised to stream clients (metadata); default: the address they connected to.
    #[arg(long, env = "WARREN_STREAM_ADVERTISED_HOST")]
    stream_advertised_host: Option<String>,
    /// Port advertised to stream clients; default: the port they connected to.
    #[arg(long, env = "WARREN_STREAM_ADVERTISED_PORT")]
    stream_advertised_port: Option<u16>,
    /// Prometheus metrics port (`/metrics`, `/metrics/per-object`).
    #[arg(long, env = "WARREN_PROMETHEUS_PORT", default_value_t = config::DEFAULT_PROMETHEUS_PORT)]
    prometheus_port: u16,
    /// Events kept per vhost by the message trace (what happened to each message with a
    /// message_id, correlation_id or traceparent: GET /api/warren/vhosts/{vhost}/trace); 0 = off.
    #[arg(long, env = "WARREN_MESSAGE_TRACE_SIZE", default_value_t = warren::journal::DEFAULT_SIZE)]
    message_trace_size: usize,
    /// Export the message trace as OpenTelemetry spans to this OTLP/HTTP collector (its base URL,
    /// e.g. http://localhost:4318; spans go to URL/v1/traces as JSON).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Enable the test controls that change how the broker behaves (fault injection under
    /// /api/warren/faults): for a development or CI broker only; without it they answer 404.
    #[arg(long, env = "WARREN_TEST_CONTROLS")]
    test_controls: bool,
    /// Run without the management API, UI and Prometheus listeners.
    #[arg(long, env = "WARREN_NO_MANAGEMENT")]
    no_management: bool,
    /// RabbitMQ-format configuration file (`key = value` lines). Default: /etc/rabbitmq/rabbitmq.conf
    /// when it exists. Flags and environment variables take precedence over it.
    #[arg(long = "config", env = "RABBITMQ_CONFIG_FILE")]
    config: Option<std::path::PathBuf>,
    /// Directory of more configuration files (`*.conf`, read in name order after the main file).
    #[arg(long = "config-dir", env = "RABBITMQ_CONFIG_FILES", default_value = warren::conffile::DEFAULT_DIR)]
    config_dir: std::path::PathBuf,
    /// Testing aid (hidden): the HTTP listeners' header-read and idle timeouts, milliseconds
    /// (default 15 s each), so that tests need not wait 15 s.
    #[arg(long, env = "WARREN_HTTP_TIMEOUT", hide = true)]
    http_timeout: Option<u64>,
    /// AMQPS port (on the same addresses as AMQP).
    #[arg(long, env = "WARREN_TLS_PORT", default_value_t = config::DEFAULT_TLS_PORT)]
    tls_port: u16,
}

fn main() {
    allocator::settings();
    // A user's mistake (a busy port, a bad flag value, an unreadable file) is one line on stderr
    // and exit code 1: never a backtrace, whatever RUST_BACKTRACE says.
    if let Err(e) = start() {
        eprintln!("warren: {e:#}");
        std::process::exit(1);
    }
}

fn start() -> anyhow::Result<()> {
    // One binary, several tools: `warren ctl ...`, and RabbitMQ's CLI names (the container links
    // rabbitmqctl, rabbitmq-diagnostics, rabbitmq-plugins, rabbitmqadmin and rabbitmq-streams to
    // it).
    let mut argv: Vec<String> = std::env::args().collect();
    if let Some(tool) = argv.first().and_then(|p| warren::ctl::Tool::from_program(p)) {
        std::process::exit(warren::ctl::run(tool, argv.split_off(1)));
    }
    if argv.get(1).is_some_and(|a| a == "ctl") {
        std::process::exit(warren::ctl::run(warren::ctl::Tool::Ctl, argv.split_off(2)));
    }
    // `rabbitmq-server` as the command (compose files and CI services written for the rabbitmq
    // image sometimes say so) starts the broker.
    if argv.get(1).is_some_and(|a| a == "rabbitmq-server") {
        argv.remove(1);
    }
    let matches = Cli::command().get_matches_from(argv);
    let mut cli = Cli::from_arg_matches(&matches)?;
    // Configuration files apply only where neither a flag nor the environment set the option.
    let unset = |id: &str| matches!(matches.value_source(id), None | Some(ValueSource::DefaultValue));
    let files = warren::conffile::locate(cli.config.clone(), Some(cli.config_dir.clone()));
    let entries = warren::conffile::read(&files).map_err(anyhow::Error::msg)?;
    if unset("log_level") {
        if let Some(e) = warren::conffile::last(&entries, "log.console.level")
            .or_else(|| warren::conffile::last(&entries, "log.default.level"))
        {
            cli.log_level = match e.value.as_str() {
                "warning" => "warn".into(),
                "critical" | "alert" | "emergency" => "error".into(),
                "none" => "off".into(),
                other => other.into(),
            };
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level).context("invalid --log-level")?;
    if cli.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    } else {
        // Colour only for a person at a terminal: files, pipes and container logs get plain text.
        use std::io::IsTerminal;
        let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        tracing_subscriber::fmt().with_ansi(ansi).with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    for f in &files {
        tracing::info!("reading configuration file {}", f.display());
    }
    if let Some(p) = &cli.config {
        if !p.is_file() && !p.with_extension("conf").is_file() {
            // A file named on the command line must exist; RABBITMQ_CONFIG_FILE (which the
            // rabbitmq image's conventions set whether or not a file is mounted) may be absent.
            if matches!(matches.value_source("config"), Some(ValueSource::CommandLine)) {
                anyhow::bail!("configuration file {} not found (--config)", p.display());
            }
            tracing::info!("configuration file {} not found; using flags, environment and defaults", p.display());
        }
    }
    warren::plugins::check_enabled_file();
    for e in entries.iter().filter(|e| !warren::conffile::is_known(&e.key)) {
        tracing::warn!("{}: `{}` does not apply to Warren; ignored", e.origin, e.key);
    }
    let mut cfg = Config::default();
    let file_listeners = apply_config_file(&mut cli, &entries, &unset).map_err(anyhow::Error::msg)?;
    if !cli.bind.is_empty() {
        cfg.listen = cli.bind.iter().map(|ip| SocketAddr::new(*ip, cli.port)).collect();
    } else {
        for a in cfg.listen.iter_mut() {
            a.set_port(cli.port);
        }
    }
    if let Some(l) = file_listeners.amqp {
        cfg.listen = l;
    }
    cfg.heartbeat = cli.heartbeat;
    cfg.frame_max = cli.frame_max.max(warren_protocol::constants::FRAME_MIN_SIZE);
    cfg.default_user = cli.default_user;
    cfg.default_pass = cli.default_pass;
    cfg.default_vhost = cli.default_vhost;
    cfg.memory_high_watermark = cli.memory_high_watermark;
    cfg.disk_free_limit = cli.disk_free_limit;
    cfg.announce = if cli.announce_as == "warren" { config::Announce::Warren } else { config::Announce::RabbitMq };
    cfg.data_dir = Some(container_data_dir(cli.data_dir));
    cfg.test_controls = cli.test_controls;
    cfg.message_trace_size = cli.message_trace_size;
    cfg.otlp_endpoint = cli.otlp_endpoint.filter(|e| !e.is_empty());
    cfg.loopback_users = cli.loopback_users.into_iter().filter(|u| !u.is_empty() && u != "none").collect();
    cfg.max_message_size = cli.max_message_size;
    cfg.load_definitions = cli.load_definitions;
    cfg.channel_max = cli.channel_max;
    cfg.connection_max = (cli.connection_max > 0).then_some(cli.connection_max);
    cfg.handshake_timeout = std::time::Duration::from_millis(cli.handshake_timeout);
    if !cli.no_management {
        cfg.management_listen = cfg.listen.iter().map(|a| SocketAddr::new(a.ip(), cli.management_port)).collect();
        cfg.prometheus_listen = cfg.listen.iter().map(|a| SocketAddr::new(a.ip(), cli.prometheus_port)).collect();
    }
    if !cli.no_streams {
        cfg.stream_listen = cfg.listen.iter().map(|a| SocketAddr::new(a.ip(), cli.stream_port)).collect();
    }
    cfg.stream_advertised_host = cli.stream_advertised_host.filter(|h| !h.is_empty());
    cfg.stream_advertised_port = cli.stream_advertised_port;
    if let Some(ms) = cli.http_timeout.filter(|&ms| ms > 0) {
        cfg.http_header_timeout = std::time::Duration::from_millis(ms);
        cfg.http_idle_timeout = std::time::Duration::from_millis(ms);
    }
    if let (Some(cert_file), Some(key_file)) = (cli.tls_cert, cli.tls_key) {
        let listen = file_listeners
            .amqps
            .unwrap_or_else(|| cfg.listen.iter().map(|a| SocketAddr::new(a.ip(), cli.tls_port)).collect());
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
    let handle = warren::server::start(cfg.clone()).await?;
    for a in &handle.local_addrs {
        println!("Listening for AMQP on {a}");
    }
    for a in &handle.tls_addrs {
        println!("Listening for AMQPS on {a}");
    }
    for a in &handle.management_addrs {
        println!("Listening for HTTP on {a}");
    }
    for a in &handle.prometheus_addrs {
        println!("Listening for Prometheus on {a}");
    }
    for a in &handle.stream_addrs {
        println!("Listening for streams on {a}");
    }
    tracing::info!("Warren {} started", env!("CARGO_PKG_VERSION"));
    // Tools (CI service health checks, test harnesses) wait for this exact line, after the
    // startup log lines, as RabbitMQ prints it.
    println!("Server startup complete");
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

/// Listener addresses given in configuration files (`listeners.tcp.*`, `listeners.ssl.*`).
#[derive(Default)]
struct FileListeners {
    amqp: Option<Vec<SocketAddr>>,
    amqps: Option<Vec<SocketAddr>>,
}

/// Every address RabbitMQ means by a listener without one: all IPv4 and all IPv6 addresses.
fn all_addresses(port: u16) -> Vec<SocketAddr> {
    vec![SocketAddr::new(IpAddr::from([0u8; 4]), port), SocketAddr::new(IpAddr::from([0u16; 8]), port)]
}

/// Apply configuration-file entries to the options that neither a flag nor the environment set.
fn apply_config_file(
    cli: &mut Cli,
    entries: &[warren::conffile::Entry],
    unset: &dyn Fn(&str) -> bool,
) -> Result<FileListeners, String> {
    use warren::conffile::{parse_bool, parse_listener, parse_num};
    let mut out = FileListeners::default();
    let mut loopback: Option<Vec<String>> = None;
    let mut verify_peer = false;
    for e in entries {
        let v = e.value.clone();
        match e.key.as_str() {
            k if k.starts_with("listeners.tcp.") || k.starts_with("listeners.ssl.") => {
                let ssl = k.starts_with("listeners.ssl.");
                // Flags and environment win over the file.
                let free = if ssl { unset("tls_port") } else { unset("bind") && unset("port") };
                if !free {
                    continue;
                }
                let (ip, port) = parse_listener(e)?;
                let addrs = match ip {
                    Some(ip) => vec![SocketAddr::new(ip, port)],
                    None => all_addresses(port),
                };
                let slot = if ssl { &mut out.amqps } else { &mut out.amqp };
                slot.get_or_insert_with(Vec::new).extend(addrs);
                if ssl {
                    cli.tls_port = port;
                } else {
                    cli.port = port;
                }
            }
            "ssl_options.certfile" if unset("tls_cert") => cli.tls_cert = Some(v.into()),
            "ssl_options.keyfile" if unset("tls_key") => cli.tls_key = Some(v.into()),
            "ssl_options.cacertfile" if unset("tls_ca") => cli.tls_ca = Some(v.into()),
            "ssl_options.verify" => verify_peer = v == "verify_peer",
            "ssl_options.fail_if_no_peer_cert" if unset("tls_fail_if_no_peer_cert") => {
                cli.tls_fail_if_no_peer_cert = parse_bool(e)?
            }
            "default_user" if unset("default_user") => cli.default_user = v,
            "default_pass" if unset("default_pass") => cli.default_pass = v,
            "default_vhost" if unset("default_vhost") => cli.default_vhost = v,
            "loopback_users" if v == "none" => loopback = Some(Vec::new()),
            k if k.starts_with("loopback_users.") => {
                let user = k.trim_start_matches("loopback_users.").to_string();
                let list = loopback.get_or_insert_with(|| vec!["guest".to_string()]);
                list.retain(|u| *u != user);
                if parse_bool(e)? {
                    list.push(user);
                }
            }
            "load_definitions" | "definitions.local.path" if unset("load_definitions") => {
                cli.load_definitions = Some(v.into())
            }
            "vm_memory_high_watermark.relative" | "vm_memory_high_watermark.absolute"
                if unset("memory_high_watermark") =>
            {
                let w = if e.key.ends_with("relative") && !v.contains('.') { format!("{v}.0") } else { v };
                cli.memory_high_watermark = w.parse().map_err(|x| format!("{}: {x}", e.origin))?;
            }
            "disk_free_limit.absolute" | "disk_free_limit.relative" if unset("disk_free_limit") => {
                let l = if e.key.ends_with("relative") { format!("mem_relative:{v}") } else { v };
                cli.disk_free_limit = l.parse().map_err(|x| format!("{}: {x}", e.origin))?;
            }
            "management.tcp.port" | "management.listener.port" if unset("management_port") => {
                cli.management_port = parse_num(e)?
            }
            "prometheus.tcp.port" if unset("prometheus_port") => cli.prometheus_port = parse_num(e)?,
            "stream.listeners.tcp.1" | "stream.listeners.tcp.default" | "stream.tcp_listen_options.port"
                if unset("stream_port") =>
            {
                cli.stream_port = parse_num(e)?
            }
            "stream.advertised_host" if unset("stream_advertised_host") => cli.stream_advertised_host = Some(v),
            "stream.advertised_port" if unset("stream_advertised_port") => {
                cli.stream_advertised_port = Some(parse_num(e)?)
            }
            "heartbeat" if unset("heartbeat") => cli.heartbeat = parse_num(e)?,
            "frame_max" if unset("frame_max") => cli.frame_max = parse_num(e)?,
            "channel_max" if unset("channel_max") => cli.channel_max = parse_num(e)?,
            "max_message_size" if unset("max_message_size") => cli.max_message_size = parse_num(e)?,
            "handshake_timeout" if unset("handshake_timeout") => cli.handshake_timeout = parse_num(e)?,
            "consumer_timeout" if unset("consumer_timeout") => cli.consumer_timeout = parse_num(e)?,
            _ => {}
        }
    }
    if let (Some(l), true) = (loopback, unset("loopback_users")) {
        cli.loopback_users = if l.is_empty() { vec!["none".into()] } else { l };
    }
    // RabbitMQ verifies client certificates only with `verify = verify_peer`.
    if !verify_peer && unset("tls_ca") && entries.iter().any(|e| e.key == "ssl_options.verify") {
        cli.tls_ca = None;
    }
    Ok(out)
}

/// The image's data directory is /var/lib/rabbitmq, as in the rabbitmq image, so compose files
/// and CI setups that mount a volume there keep their data across `down` / `up`. A volume mounted
/// at /var/lib/warren (the path earlier builds of the image used) is used instead when one is
/// mounted there: nothing in the image declares that path, so a mount there is the user's.
fn container_data_dir(dir: std::path::PathBuf) -> std::path::PathBuf {
    const IMAGE_DIR: &str = "/var/lib/rabbitmq";
    const WARREN_DIR: &str = "/var/lib/warren";
    if dir != std::path::Path::new(IMAGE_DIR) {
        return dir;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mounts.lines().any(|l| l.split_whitespace().nth(4) == Some(WARREN_DIR)) {
        eprintln!("data directory: a volume is mounted at {WARREN_DIR}: using it instead of {IMAGE_DIR}");
        return WARREN_DIR.into();
    }
    dir
}
