//! RabbitMQ's configuration file format (`rabbitmq.conf`, sysctl style: `key = value` lines,
//! `#` comments) read from `/etc/rabbitmq/rabbitmq.conf` and `/etc/rabbitmq/conf.d/*.conf`, or
//! the files named by `--config` / `RABBITMQ_CONFIG_FILE` / `RABBITMQ_CONFIG_FILES`.
//!
//! Runs in: `main`, before the broker starts.
//!
//! # Invariants
//! - Precedence, highest first: command-line flags, environment variables, configuration files
//!   (later files and later lines win), built-in defaults. This module only reads the files;
//!   `main` applies an entry only where neither a flag nor the environment set that option.
//! - A key Warren has no use for is reported (logged once) and ignored; a value it cannot parse is
//!   an error naming the file and line, as RabbitMQ refuses to boot on one.
use std::path::{Path, PathBuf};

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// Where it came from, for messages: `file:line`.
    pub origin: String,
}

/// Default main file.
pub const DEFAULT_FILE: &str = "/etc/rabbitmq/rabbitmq.conf";
/// Default drop-in directory.
pub const DEFAULT_DIR: &str = "/etc/rabbitmq/conf.d";

/// Parse the text of one file.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("{}:{}: expected `key = value`, got `{line}`", file.display(), n + 1));
        };
        // A `#` after the value starts a comment too.
        let v = v.split(" #").next().unwrap_or(v).trim();
        out.push(Entry {
            key: k.trim().to_string(),
            value: v.to_string(),
            origin: format!("{}:{}", file.display(), n + 1),
        });
    }
    Ok(out)
}

/// The files to read: `explicit` (a file, `.conf` added when given without it as RabbitMQ
/// allows) or the default one, if it exists, then every `*.conf` of the drop-in directory in name
/// order.
pub fn locate(explicit: Option<PathBuf>, dir: Option<PathBuf>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match explicit {
        Some(p) => {
            // A named file that does not exist is no error, as with RabbitMQ (whose image points
            // RABBITMQ_CONFIG_FILE at a file that is often absent); the caller logs it.
            let with_ext = p.with_extension("conf");
            if p.is_file() {
                files.push(p);
            } else if with_ext.is_file() {
                files.push(with_ext);
            }
        }
        None => {
            let p = PathBuf::from(DEFAULT_FILE);
            if p.exists() {
                files.push(p);
            }
        }
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut more: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
}

/// Read and parse every file, in order.
pub fn read(files: &[PathBuf]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        out.extend(parse(&text, f)?);
    }
    Ok(out)
}

/// The last value of `key`, if any.
pub fn last<'a>(entries: &'a [Entry], key: &str) -> Option<&'a Entry> {
    entries.iter().rev().find(|e| e.key == key)
}

/// A boolean as RabbitMQ writes them.
pub fn parse_bool(e: &Entry) -> Result<bool, String> {
    match e.value.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        v => Err(format!("{}: {} must be true or false, got `{v}`", e.origin, e.key)),
    }
}

/// A number.
pub fn parse_num<T: std::str::FromStr>(e: &Entry) -> Result<T, String> {
    e.value.parse().map_err(|_| format!("{}: {} must be a number, got `{}`", e.origin, e.key, e.value))
}

/// A listener value: `5672`, `0.0.0.0:5672`, `[::]:5672` or `::1:5672` -> (address or None for
/// every address, port).
pub fn parse_listener(e: &Entry) -> Result<(Option<std::net::IpAddr>, u16), String> {
    let bad = || format!("{}: {} must be a port or address:port, got `{}`", e.origin, e.key, e.value);
    let v = e.value.as_str();
    if let Ok(p) = v.parse::<u16>() {
        return Ok((None, p));
    }
    if let Ok(sa) = v.parse::<std::net::SocketAddr>() {
        return Ok((Some(sa.ip()), sa.port()));
    }
    // RabbitMQ also accepts an unbracketed IPv6 address followed by `:port`.
    let (ip, port) = v.rsplit_once(':').ok_or_else(bad)?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
    Ok((Some(ip), port.parse().map_err(|_| bad())?))
}

/// Keys Warren reads (exactly, or as prefixes ending in `.`). Everything else is reported as
/// ignored.
pub const KNOWN: &[&str] = &[
    "listeners.tcp.",
    "listeners.ssl.",
    "ssl_options.certfile",
    "ssl_options.keyfile",
    "ssl_options.cacertfile",
    "ssl_options.verify",
    "ssl_options.fail_if_no_peer_cert",
    "default_user",
    "default_pass",
    "default_vhost",
    "loopback_users",
    "loopback_users.",
    "load_definitions",
    "definitions.local.path",
    "definitions.import_backend",
    "definitions.skip_if_unchanged",
    "vm_memory_high_watermark.relative",
    "vm_memory_high_watermark.absolute",
    "disk_free_limit.absolute",
    "disk_free_limit.relative",
    "management.tcp.port",
    "management.listener.port",
    "prometheus.tcp.port",
    "log.console.level",
    "log.default.level",
    "log.console",
    "log.file",
    "log.file.level",
    "heartbeat",
    "frame_max",
    "channel_max",
    "max_message_size",
    "handshake_timeout",
    "consumer_timeout",
];

/// Whether Warren reads `key`.
pub fn is_known(key: &str) -> bool {
    KNOWN.iter().any(|k| if k.ends_with('.') { key.starts_with(k) } else { key == *k })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_lines_comments_and_listeners() {
        let text = "# comment\n\nlisteners.tcp.default = 5673\nloopback_users.guest = false # inline\nlisteners.tcp.1 = ::1:5674\n";
        let e = parse(text, Path::new("x.conf")).expect("parses");
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].value, "false");
        assert_eq!(parse_listener(&e[0]), Ok((None, 5673)));
        assert_eq!(parse_listener(&e[2]), Ok((Some("::1".parse().expect("ip")), 5674)));
        assert!(parse("no equals sign", Path::new("y.conf")).is_err());
        assert!(
            is_known("listeners.tcp.default")
                && is_known("loopback_users.guest")
                && !is_known("cluster_formation.peer_discovery_backend")
        );
    }
}
