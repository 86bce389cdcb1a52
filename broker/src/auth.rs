//! Users and permissions as RabbitMQ stores them: salted password hashes in RabbitMQ's format
//! (`base64(salt ++ H(salt ++ password))`, 4-byte salt), tags, and per-vhost permissions.
//!
//! Runs in: the handshake (password checks) and the metadata writer (export).
//!
//! # Invariants
//! - Plain-text passwords are never stored: only the salted hash, as RabbitMQ exports it, so a
//!   definitions file moves between Warren and RabbitMQ unchanged.
//! - TODO(security issue #7): permissions are stored and exported but not yet enforced; MD5
//!   hashes (accepted by RabbitMQ on import) are not supported yet.
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// RabbitMQ's name for its default hashing module.
pub const SHA256: &str = "rabbit_password_hashing_sha256";
/// SHA-512 hashing module.
pub const SHA512: &str = "rabbit_password_hashing_sha512";

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
        digest(&self.hashing_algorithm, salt, password.as_bytes()).is_some_and(|d| d == want)
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
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}
