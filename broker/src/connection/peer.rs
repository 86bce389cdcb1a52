//! Noticing that a client has gone while its connection is not being read (blocked by a
//! resource alarm): a blocked publisher that closes its socket must not keep what it held (bodies
//! half assembled, unacked messages) and with it the alarm, for ever.
//!
//! Runs in: the connection reader, about once a second while the connection is blocked.
//!
//! # Invariants
//! - `peer_closed` never reads or consumes input (the client's unread publishes stay in the
//!   socket, which is what blocking means) and never waits.
use std::future::Future;
use std::task::{Context, Poll, Waker};
use tokio::io::Interest;

/// A connection's read half that can tell, without reading, whether the peer has closed.
pub trait PeerClosed {
    /// True once the peer has closed (FIN or reset). Where this cannot be known without reading
    /// (TLS), false: such a connection is noticed by heartbeats instead.
    fn peer_closed(&mut self) -> bool {
        false
    }
}

impl PeerClosed for tokio::net::tcp::OwnedReadHalf {
    fn peer_closed(&mut self) -> bool {
        // One poll of the socket's readiness with a no-op waker: the kernel's hang-up flags
        // (EPOLLRDHUP / EPOLLHUP) show as "read closed" whether or not unread data is pending.
        let fut = self.ready(Interest::READABLE);
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(r)) => r.is_read_closed(),
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        }
    }
}

impl<T> PeerClosed for tokio::io::ReadHalf<T> {}
