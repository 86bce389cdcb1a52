//! The stream protocol door: RabbitMQ's `rabbitmq_stream` plugin protocol (port 5552), the one
//! the official stream clients speak. Streams are the core's stream queues (`queue/stream.rs`):
//! creating, deleting, publishing and reading go through the same vhost and queue code as AMQP
//! 0-9-1, so a stream is readable and writable by both protocols.
//!
//! Layout: `conn.rs` (one connection: handshake, the main loop, the writer), `publish.rs`
//! (publishers, deduplication, confirms), `subscribe.rs` (subscriptions: credit, chunks, the
//! delivery task), `admin.rs` (create / delete, metadata, offsets, super streams, stats),
//! `registry.rs` (what the management API lists).
//!
//! Runs in: one accept task per listener, one task per connection (reader and command handler),
//! one writer task per connection, one confirm task per connection, one task per subscription.
//!
//! # Invariants
//! - Nothing a client sends panics the broker: a frame that does not decode is answered with a
//!   close (code 13 unknown frame / 14 frame too large), and the connection ends.
//! - Every rule (names, permissions, arguments, existence) is the core's: this door only maps
//!   the protocol's fields and response codes.
pub mod admin;
pub mod conn;
pub mod publish;
pub mod registry;
pub mod subscribe;

use crate::broker::Broker;
use crate::ids::ConnectionId;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Accept stream protocol connections until shutdown, then wait for them to close.
pub async fn accept_loop(l: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((sock, peer)) => {
                    let id = ConnectionId(broker.next_conn.fetch_add(1, Ordering::Relaxed));
                    conns.spawn(conn::serve(sock, peer, broker.clone(), id, shutdown.clone()));
                }
                Err(e) => {
                    tracing::error!("stream protocol: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(l);
    while conns.join_next().await.is_some() {}
}
