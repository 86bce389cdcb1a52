//! AMQP URIs as RabbitMQ's shovels read them (RabbitMQ's URI specification): `amqp://` and
//! `amqps://`, `user:password@host:port/vhost`, percent-encoded parts, and query parameters
//! (`heartbeat`, `connection_timeout`, `cacertfile`, `verify`, `server_name_indication`).
//!
//! Runs in: validation (any task) and the shovel worker.
//!
//! # Invariants
//! - An empty host means a direct connection to this broker (no network, no password).
//! - A missing vhost is `/`, RabbitMQ's default (also for a shovel defined in another vhost).
//! - Credentials never appear in status or logs: [`redact`].

/// A parsed AMQP URI.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpUri {
    /// `amqps`.
    pub tls: bool,
    /// Host; `None` for a direct connection to this broker.
    pub host: Option<String>,
    /// Port (5672, or 5671 with TLS, when absent).
    pub port: u16,
    /// User (`guest` when absent).
    pub user: String,
    /// Password (`guest` when absent).
    pub pass: String,
    /// Virtual host.
    pub vhost: String,
    /// Heartbeat in seconds (0: none).
    pub heartbeat: u16,
    /// TLS: CA certificates (PEM) to verify the server against.
    pub cacertfile: Option<String>,
    /// TLS: `verify=verify_none` turns certificate verification off.
    pub verify: bool,
    /// TLS: the name to verify (the host when absent).
    pub sni: Option<String>,
}

fn pct_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("bad percent-encoding")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent-encoding")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".into())
}

impl AmqpUri {
    /// Parse `s`; `default_vhost` is used when the URI names none.
    pub fn parse(s: &str, default_vhost: &str) -> Result<AmqpUri, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("amqp://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("amqps://") {
            (true, r)
        } else {
            let scheme = s.split(':').next().unwrap_or("");
            return Err(format!("{{{{unexpected_uri_scheme,\"{scheme}\"}},\"{s}\"}}"));
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, pass) = match userinfo {
            Some(ui) => {
                let (u, p) = ui.split_once(':').unwrap_or((ui, ""));
                (pct_decode(u)?, pct_decode(p)?)
            }
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // An IPv6 literal: `[::1]:5672`.
            let (h, after) = h.split_once(']').ok_or("bad IPv6 address")?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            Some(p) if !p.is_empty() => p.parse::<u16>().map_err(|_| format!("bad port '{p}'"))?,
            _ if tls => 5671,
            _ => 5672,
        };
        let vhost = match path {
            // rabbitmq-compat: `amqp://host/` (an empty vhost segment) is the default vhost too:
            // a vhost named "" is never what a user means.
            None | Some("") => default_vhost.to_string(),
            Some(p) if p.contains('/') => return Err(format!("vhost '{p}' has an unencoded '/' (write %2F)")),
            Some(p) => pct_decode(p)?,
        };
        let mut u = AmqpUri {
            tls,
            host: (!host.is_empty()).then(|| pct_decode(&host)).transpose()?,
            port,
            user,
            pass,
            vhost,
            heartbeat: 0,
            cacertfile: None,
            verify: true,
            sni: None,
        };
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = pct_decode(v)?;
            match k {
                "heartbeat" => u.heartbeat = v.parse().map_err(|_| format!("bad heartbeat '{v}'"))?,
                "cacertfile" => u.cacertfile = Some(v),
                "verify" => u.verify = v != "verify_none",
                "server_name_indication" => u.sni = Some(v),
                // Accepted as RabbitMQ's clients accept them; Warren's client has no use for them.
                "connection_timeout"
                | "channel_max"
                | "frame_max"
                | "auth_mechanism"
                | "certfile"
                | "keyfile"
                | "fail_if_no_peer_cert"
                | "depth"
                | "password" => {}
                other => return Err(format!("unknown URI parameter '{other}'")),
            }
        }
        if u.host.is_none() && tls {
            return Err("amqps:// needs a host".into());
        }
        Ok(u)
    }
}

/// `s` without its password (`amqp://user@host/...`), for status and logs.
pub fn redact(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else { return s.to_string() };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{}", &rest[at + 1..])
        }
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let u = AmqpUri::parse("amqp://", "v").expect("direct");
        assert_eq!((u.host, u.vhost.as_str()), (None, "v"));
        let u = AmqpUri::parse("amqp://a%40b:p%3Aw@h.example:5673/%2F?heartbeat=5", "v").expect("uri");
        assert_eq!(
            (u.user.as_str(), u.pass.as_str(), u.host.as_deref(), u.port, u.vhost.as_str(), u.heartbeat),
            ("a@b", "p:w", Some("h.example"), 5673, "/", 5)
        );
        let u = AmqpUri::parse("amqps://[::1]/x?verify=verify_none", "v").expect("uri");
        assert_eq!((u.host.as_deref(), u.port, u.verify, u.tls), (Some("::1"), 5671, false, true));
        assert!(AmqpUri::parse("http://x", "/").is_err());
        assert_eq!(redact("amqp://u:secret@h:1/v"), "amqp://u@h:1/v");
        assert_eq!(redact("amqp:///v"), "amqp:///v");
    }
}
