//! What the management API shows of stream protocol connections, publishers and consumers
//! (`/api/stream/connections`, `/api/stream/publishers`, `/api/stream/consumers`), and the handle
//! it closes a connection with.
//!
//! Runs in: connection tasks (register, count) and HTTP handlers (list, close).
//!
//! # Invariants
//! - A connection is listed from its open until it ends; its publishers and consumers are listed
//!   between their declare / subscribe and their delete / unsubscribe or the connection's end.
//! - Counters are relaxed atomics written by their own connection's tasks only.
use crate::ids::ConnectionId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// A stream protocol connection, as listed.
pub struct StreamConn {
    /// The connection's id.
    pub id: ConnectionId,
    /// `peer_host:peer_port -> host:port`.
    pub name: String,
    /// Its user.
    pub user: String,
    /// Its vhost.
    pub vhost: String,
    /// Client and server addresses.
    pub peer: std::net::SocketAddr,
    pub local: std::net::SocketAddr,
    /// Negotiated frame max and heartbeat (seconds).
    pub frame_max: u32,
    pub heartbeat: u32,
    /// The client's peer properties (`connection_name` is its user-provided name).
    pub client_properties: Vec<(String, String)>,
    /// When it opened (Unix ms).
    pub connected_at: u64,
    /// Bytes received and sent.
    pub recv_oct: AtomicU64,
    /// Bytes sent: the writer task's own counter.
    pub send_oct: Arc<AtomicU64>,
    /// Publishers by id.
    pub publishers: Mutex<HashMap<u8, Arc<PublisherInfo>>>,
    /// Consumers (subscriptions) by id.
    pub consumers: Mutex<HashMap<u8, Arc<ConsumerInfo>>>,
    /// Set to close it (management DELETE): the reason the client is told.
    pub kill: tokio::sync::watch::Sender<Option<String>>,
}

/// A publisher, as listed.
pub struct PublisherInfo {
    pub publisher_id: u8,
    /// Its reference (name; empty: none).
    pub reference: String,
    /// The stream.
    pub stream: String,
    /// Messages published, confirmed, errored.
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub errored: AtomicU64,
}

/// A consumer (subscription), as listed.
pub struct ConsumerInfo {
    pub subscription_id: u8,
    /// The stream.
    pub stream: String,
    /// Subscription properties as given.
    pub properties: Vec<(String, String)>,
    /// Messages delivered.
    pub consumed: AtomicU64,
    /// Credits left (chunks).
    pub credits: AtomicU64,
    /// Next offset it reads.
    pub offset: AtomicU64,
    /// Single active consumer: whether it is the active one.
    pub active: std::sync::atomic::AtomicBool,
}

/// A member of a single-active-consumer group: its connection, subscription id, and the channel
/// that tells its delivery task it became active.
pub struct Member {
    pub conn: ConnectionId,
    pub subscription_id: u8,
    pub activate: tokio::sync::mpsc::UnboundedSender<()>,
}

/// A group's key: vhost, stream, consumer name.
pub type GroupKey = (String, String, String);

/// Every open stream protocol connection, and the single-active-consumer groups.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<ConnectionId, Arc<StreamConn>>>,
    /// Single active consumer groups: the first member is the active one.
    groups: Mutex<HashMap<GroupKey, Vec<Member>>>,
}

impl Registry {
    /// Join a single-active-consumer group; the first member is activated at once.
    pub fn join(&self, key: GroupKey, m: Member) {
        let mut g = self.groups.lock();
        let members = g.entry(key).or_default();
        if members.is_empty() {
            let _ = m.activate.send(());
        }
        members.push(m);
    }

    /// Leave a group; when the active member leaves, the next one is activated.
    pub fn leave(&self, key: &GroupKey, conn: ConnectionId, subscription_id: u8) {
        let mut g = self.groups.lock();
        let Some(members) = g.get_mut(key) else { return };
        let Some(i) = members.iter().position(|m| m.conn == conn && m.subscription_id == subscription_id) else {
            return;
        };
        members.remove(i);
        if i == 0 {
            // The next member whose connection is still there takes over.
            while let Some(next) = members.first() {
                if next.activate.send(()).is_ok() {
                    break;
                }
                members.remove(0);
            }
        }
        if members.is_empty() {
            g.remove(key);
        }
    }

    pub fn add(&self, c: Arc<StreamConn>) {
        self.conns.lock().insert(c.id, c);
    }
    pub fn remove(&self, id: ConnectionId) {
        self.conns.lock().remove(&id);
    }
    /// The open connections, oldest first.
    pub fn list(&self) -> Vec<Arc<StreamConn>> {
        let mut v: Vec<_> = self.conns.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id.0);
        v
    }
    /// The connection named `name` in `vhost`.
    pub fn find(&self, vhost: &str, name: &str) -> Option<Arc<StreamConn>> {
        self.conns.lock().values().find(|c| c.vhost == vhost && c.name == name).cloned()
    }
    /// Connections of `vhost` (all: None).
    pub fn count(&self, vhost: Option<&str>) -> usize {
        self.conns.lock().values().filter(|c| vhost.is_none_or(|v| c.vhost == v)).count()
    }
}

impl StreamConn {
    /// Ask the connection to close with `reason`.
    pub fn close(&self, reason: &str) {
        let _ = self.kill.send(Some(reason.to_string()));
    }
}
