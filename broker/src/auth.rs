//! Users and permissions as RabbitMQ stores them: salted password hashes in RabbitMQ's format
//! (`base64(salt ++ H(salt ++ password))`, 4-byte salt), tags, and per-vhost permissions.
//!
//! Runs in: the handshake (password checks) and the metadata writer (export).
//!
//! # Invariants
//! - Plain-text passwords are never stored: only the salted hash, as RabbitMQ exports it, so a
//!   definitions file moves between Warren and RabbitMQ unchanged.
//! - Permissions are three regular expressions (configure, write, read) matched, unanchored, against
//!   a resource's name, as RabbitMQ does; an empty expression grants nothing (it means `^$`), and
//!   the default exchange is checked under the name `amq.default`.
//! - An expression that does not compile is refused when the permission is set, never at use.
//! - Topic permissions (per user, vhost and exchange: a write and a read expression on routing
//!   keys) apply to topic exchanges only; a user without one for an exchange may use any key on
//!   it. `{username}` and `{vhost}` are expanded when the permission is compiled (their values are
//!   fixed by the (user, vhost) it belongs to), so nothing is expanded or compiled per message or
//!   per connection; an empty expression matches only the empty key (`^$`), as in RabbitMQ.
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// RabbitMQ's name for its default hashing module.
pub const SHA256: &str = "rabbit_password_hashing_sha256";
/// SHA-512 hashing module.
pub const SHA512: &str = "rabbit_password_hashing_sha512";
/// MD5 hashing module (RabbitMQ's before 3.6; accepted on import, never produced).
pub const MD5: &str = "rabbit_password_hashing_md5";

/// A user.
#[derive(Debug, Clone)]
pub struct User {
    /// User name.
    pub name: String,
    /// `salt ++ digest`, decoded from base64.
    pub password_hash: Vec<u8>,
    /// Hashing module name (RabbitMQ's).
    pub hashing_algorithm: String,
    /// Tags (administrator, management, ...).
    pub tags: Vec<String>,
}

fn digest(algorithm: &str, salt: &[u8], password: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        SHA256 => Some(Sha256::new().chain_update(salt).chain_update(password).finalize().to_vec()),
        SHA512 => Some(Sha512::new().chain_update(salt).chain_update(password).finalize().to_vec()),
        MD5 => Some(md5::Md5::new().chain_update(salt).chain_update(password).finalize().to_vec()),
        _ => None,
    }
}

impl User {
    /// A user with a freshly salted SHA-256 hash of `password`.
    pub fn new(name: &str, password: &str, tags: Vec<String>) -> User {
        let salt: [u8; 4] = rand::random();
        let mut password_hash = salt.to_vec();
        password_hash.extend(digest(SHA256, &salt, password.as_bytes()).unwrap_or_default());
        User { name: name.to_string(), password_hash, hashing_algorithm: SHA256.into(), tags }
    }

    /// Whether `password` matches. A user without a hash (RabbitMQ's passwordless users) never does.
    pub fn check(&self, password: &str) -> bool {
        if self.password_hash.len() <= 4 {
            return false;
        }
        let (salt, want) = self.password_hash.split_at(4);
        // Compared in constant time: the comparison must not tell an attacker how much matched.
        digest(&self.hashing_algorithm, salt, password.as_bytes())
            .is_some_and(|d| d.len() == want.len() && d.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
    }

    /// The hash as RabbitMQ's definitions carry it.
    pub fn hash_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.password_hash)
    }

    /// From a definitions entry; `None` when the hash is not base64 or the algorithm unknown.
    pub fn from_definition(name: &str, hash_b64: &str, algorithm: &str, tags: Vec<String>) -> Option<User> {
        let password_hash = base64::engine::general_purpose::STANDARD.decode(hash_b64).ok()?;
        digest(algorithm, b"", b"")?;
        Some(User { name: name.into(), password_hash, hashing_algorithm: algorithm.into(), tags })
    }
}

/// A user's permissions in one vhost (regular expressions, as RabbitMQ's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Permission {
    /// User name.
    pub user: String,
    /// Vhost name.
    pub vhost: String,
    /// Expression on the names of resources the user may create, delete or change.
    pub configure: String,
    /// Expression on the names of resources the user may write to.
    pub write: String,
    /// Expression on the names of resources the user may read from.
    pub read: String,
}

/// A user's topic permission on one exchange of one vhost, as RabbitMQ's definitions and HTTP API
/// carry it: expressions on routing keys (publish) and binding keys (bind, unbind).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicPermission {
    /// User name.
    pub user: String,
    /// Vhost name.
    pub vhost: String,
    /// Exchange name (the permission has effect only while that exchange is of type `topic`).
    pub exchange: String,
    /// Expression a published message's routing key must match.
    pub write: String,
    /// Expression a binding key must match (queue.bind / exchange.bind and their unbinds).
    pub read: String,
}

/// One topic permission, compiled with its variables expanded.
#[derive(Debug, Clone)]
pub struct TopicGrant {
    /// The exchange it applies to.
    exchange: Box<[u8]>,
    /// Expression on routing keys of published messages.
    write: Matcher,
    /// Expression on binding keys.
    read: Matcher,
}

impl TopicGrant {
    /// Compile a topic permission: `{username}` and `{vhost}` are replaced by the permission's own
    /// user and vhost (plain text substitution, as RabbitMQ's `expand_topic_permission`), then
    /// each expression is compiled; an invalid one is an error naming it.
    pub fn compile(p: &TopicPermission) -> Result<TopicGrant, String> {
        // rabbitmq-compat: RabbitMQ validates the unexpanded expression when it is set and expands
        // it at every check; the values are the permission's own user and vhost either way, so
        // Warren expands and compiles once, here. An expression that only fails once expanded (a
        // user name with regex syntax in it) is refused now rather than failing each use.
        // `{client_id}` (filled by RabbitMQ's MQTT plugin only) is left as written.
        let expand = |e: &str| e.replace("{username}", &p.user).replace("{vhost}", &p.vhost);
        Ok(TopicGrant {
            exchange: p.exchange.as_bytes().into(),
            write: Matcher::topic(&expand(&p.write))?,
            read: Matcher::topic(&expand(&p.read))?,
        })
    }
}

/// The three kinds of access RabbitMQ distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create, delete or change a resource.
    Configure,
    /// Put messages into it (publish to an exchange, bind a queue or exchange as a destination).
    Write,
    /// Take messages from it (consume, get, purge; be the source of a binding).
    Read,
}

impl Access {
    fn word(self) -> &'static str {
        match self {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// Kind of the resource an operation touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Exchange,
    Queue,
}

/// One compiled permission expression.
#[derive(Debug, Clone)]
enum Matcher {
    /// `.*`: everything (the common case, checked without running a regex on the publish path).
    All,
    /// Empty expression: nothing.
    Nothing,
    /// Any other expression, matched unanchored as Erlang's `re:run` does.
    Re(regex::bytes::Regex),
}

impl Matcher {
    fn new(pattern: &str) -> Result<Matcher, String> {
        Ok(match pattern {
            ".*" => Matcher::All,
            "" => Matcher::Nothing,
            p => {
                Matcher::Re(regex::bytes::Regex::new(p).map_err(|e| format!("invalid regular expression '{p}': {e}"))?)
            }
        })
    }
    /// A topic expression: as [`Matcher::new`], but empty means `^$` (only the empty key), as in
    /// RabbitMQ's topic check.
    fn topic(pattern: &str) -> Result<Matcher, String> {
        if pattern.is_empty() {
            return Matcher::new("^$");
        }
        Matcher::new(pattern)
    }
    #[inline]
    fn allows(&self, name: &[u8]) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Nothing => false,
            Matcher::Re(r) => r.is_match(name),
        }
    }
}

/// A user's compiled permissions in one vhost: what every channel operation is checked against.
#[derive(Debug, Clone)]
pub struct Grants {
    /// The user these are for (error texts).
    pub user: String,
    /// The vhost (error texts).
    pub vhost: String,
    /// Configure expression.
    configure: Matcher,
    /// Write expression.
    write: Matcher,
    /// Read expression.
    read: Matcher,
    /// Topic permissions of this user in this vhost (empty for almost everyone: then a publish
    /// pays one branch for them).
    topics: Box<[TopicGrant]>,
}

impl Grants {
    /// Compile a permission entry; an invalid expression is an error naming it.
    pub fn compile(p: &Permission) -> Result<Grants, String> {
        Ok(Grants {
            user: p.user.clone(),
            vhost: p.vhost.clone(),
            configure: Matcher::new(&p.configure)?,
            write: Matcher::new(&p.write)?,
            read: Matcher::new(&p.read)?,
            topics: Box::default(),
        })
    }

    /// The same grants with these topic permissions (replacing any they had).
    pub fn with_topics(&self, topics: Vec<TopicGrant>) -> Grants {
        Grants { topics: topics.into_boxed_slice(), ..self.clone() }
    }

    /// Whether this user has any topic permission in this vhost (the hot-path test: when false,
    /// no routing key is ever checked).
    #[inline]
    pub fn has_topic_permissions(&self) -> bool {
        !self.topics.is_empty()
    }

    /// Whether the user has a topic permission for exchange `exchange` (the caller then checks the
    /// exchange is a topic exchange before [`Grants::check_topic`]).
    pub fn has_topic_permission_for(&self, exchange: &[u8]) -> bool {
        self.topics.iter().any(|t| &*t.exchange == exchange)
    }

    /// Topic authorisation of `key` on topic exchange `exchange` (`Write`: a published routing key;
    /// `Read`: a binding key). `Ok` without a topic permission for the exchange; else RabbitMQ's
    /// 403 text: `write access to topic 'k' in exchange 'x' in vhost '/' refused for user 'u'`.
    pub fn check_topic(&self, access: Access, exchange: &[u8], key: &[u8]) -> Result<(), String> {
        let Some(t) = self.topics.iter().find(|t| &*t.exchange == exchange) else { return Ok(()) };
        let allowed = match access {
            Access::Write => t.write.allows(key),
            Access::Read => t.read.allows(key),
            // Topic permissions have no configure expression.
            Access::Configure => true,
        };
        if allowed {
            return Ok(());
        }
        Err(format!(
            "{} access to topic '{}' in exchange '{}' in vhost '{}' refused for user '{}'",
            access.word(),
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(exchange),
            self.vhost,
            self.user
        ))
    }

    /// Everything, everywhere (in-process uses that have no user).
    pub fn all(user: &str, vhost: &str) -> Grants {
        Grants {
            user: user.into(),
            vhost: vhost.into(),
            configure: Matcher::All,
            write: Matcher::All,
            read: Matcher::All,
            topics: Box::default(),
        }
    }

    /// Nothing, anywhere (a user whose permissions were cleared while connected).
    pub fn none(user: &str, vhost: &str) -> Grants {
        Grants {
            user: user.into(),
            vhost: vhost.into(),
            configure: Matcher::Nothing,
            write: Matcher::Nothing,
            read: Matcher::Nothing,
            topics: Box::default(),
        }
    }

    /// Whether `access` to the resource `name` is granted.
    #[inline]
    pub fn allows(&self, access: Access, name: &[u8]) -> bool {
        // rabbitmq-compat: the default exchange is checked as `amq.default`, as in RabbitMQ.
        let name = if name.is_empty() { b"amq.default".as_slice() } else { name };
        match access {
            Access::Configure => self.configure.allows(name),
            Access::Write => self.write.allows(name),
            Access::Read => self.read.allows(name),
        }
    }

    /// `Ok` if granted, else RabbitMQ's 403 text: `write access to exchange 'x' in vhost '/'
    /// refused for user 'u'`.
    pub fn check(&self, access: Access, kind: Resource, name: &[u8]) -> Result<(), String> {
        if self.allows(access, name) {
            return Ok(());
        }
        let shown = if name.is_empty() { "amq.default".into() } else { String::from_utf8_lossy(name) };
        let kind = match kind {
            Resource::Exchange => "exchange",
            Resource::Queue => "queue",
        };
        Err(format!(
            "{} access to {kind} '{shown}' in vhost '{}' refused for user '{}'",
            access.word(),
            self.vhost,
            self.user
        ))
    }
}

/// Whether `peer` is a loopback address (IPv4-mapped IPv6 loopback included), for
/// `loopback_users`.
pub fn is_loopback(peer: std::net::IpAddr) -> bool {
    match peer {
        std::net::IpAddr::V4(a) => a.is_loopback(),
        std::net::IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(c: &str, w: &str, r: &str) -> Permission {
        Permission { user: "u".into(), vhost: "/".into(), configure: c.into(), write: w.into(), read: r.into() }
    }

    #[test]
    fn expressions_match_like_rabbitmq() {
        let g = Grants::compile(&perm("^app\\.", "", "q$")).expect("compiles");
        assert!(g.allows(Access::Configure, b"app.orders"));
        assert!(!g.allows(Access::Configure, b"other.app.orders"));
        // Empty means nothing, not everything.
        assert!(!g.allows(Access::Write, b""));
        assert!(!g.allows(Access::Write, b"x"));
        // Unanchored search.
        assert!(g.allows(Access::Read, b"my-q"));
        assert!(!g.allows(Access::Read, b"q-mine"));
        // The default exchange is amq.default.
        let d = Grants::compile(&perm("", "^amq\\.default$", "")).expect("compiles");
        assert!(d.allows(Access::Write, b""));
        assert_eq!(
            d.check(Access::Write, Resource::Exchange, b"x").expect_err("refused"),
            "write access to exchange 'x' in vhost '/' refused for user 'u'"
        );
        assert!(Grants::compile(&perm("(", ".*", ".*")).is_err());
    }

    #[test]
    fn topic_permissions_expand_and_match() {
        let tp = |x: &str, w: &str, r: &str| TopicPermission {
            user: "alice".into(),
            vhost: "/".into(),
            exchange: x.into(),
            write: w.into(),
            read: r.into(),
        };
        let base = Grants::compile(&perm(".*", ".*", ".*")).expect("compiles");
        assert!(!base.has_topic_permissions());
        let g = base.with_topics(vec![
            TopicGrant::compile(&tp("amq.topic", "^orders\\.", "^{username}\\.")).expect("compiles"),
            TopicGrant::compile(&tp("t2", "", "{vhost}$")).expect("compiles"),
        ]);
        assert!(g.has_topic_permissions());
        assert!(g.check_topic(Access::Write, b"amq.topic", b"orders.new").is_ok());
        assert_eq!(
            g.check_topic(Access::Write, b"amq.topic", b"payments.x").expect_err("refused"),
            "write access to topic 'payments.x' in exchange 'amq.topic' in vhost '/' refused for user 'u'"
        );
        assert!(g.check_topic(Access::Read, b"amq.topic", b"alice.x").is_ok());
        assert!(g.check_topic(Access::Read, b"amq.topic", b"bob.x").is_err());
        // Empty means only the empty key.
        assert!(g.check_topic(Access::Write, b"t2", b"").is_ok());
        assert!(g.check_topic(Access::Write, b"t2", b"a").is_err());
        assert!(g.check_topic(Access::Read, b"t2", b"x/").is_ok());
        // No topic permission for the exchange: anything.
        assert!(g.check_topic(Access::Write, b"other", b"payments.x").is_ok());
        assert!(TopicGrant::compile(&tp("x", "(", ".*")).is_err());
    }

    #[test]
    fn md5_and_sha512_hashes_from_definitions() {
        let salt = [1u8, 2, 3, 4];
        for (algo, d) in [
            (MD5, md5::Md5::new().chain_update(salt).chain_update(b"pw").finalize().to_vec()),
            (SHA512, Sha512::new().chain_update(salt).chain_update(b"pw").finalize().to_vec()),
        ] {
            let mut h = salt.to_vec();
            h.extend(d);
            let b64 = base64::engine::general_purpose::STANDARD.encode(&h);
            let u = User::from_definition("u", &b64, algo, vec![]).expect("accepted");
            assert!(u.check("pw"));
            assert!(!u.check("pw2"));
        }
    }

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1".parse().expect("ip")));
        assert!(is_loopback("127.9.9.9".parse().expect("ip")));
        assert!(is_loopback("::1".parse().expect("ip")));
        assert!(is_loopback("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!is_loopback("192.0.2.2".parse().expect("ip")));
        assert!(!is_loopback("::ffff:192.0.2.2".parse().expect("ip")));
    }
}
