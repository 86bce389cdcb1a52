//! The HTTP listeners' accept loop (management on 15672, Prometheus on 15692) and the limits that
//! keep HTTP clients from taking the broker down: a header-read timeout, an idle keep-alive
//! timeout, a cap on concurrent HTTP connections, and file descriptors kept in reserve for AMQP.
//!
//! Runs in: one accept task per HTTP listener, and one task per HTTP connection (hyper's HTTP/1
//! connection driven together with its idle timer).
//!
//! # Invariants
//! - No HTTP connection is held without progress: request headers must be complete within the
//!   header timeout, an idle keep-alive connection (no request in progress, no byte either way) is
//!   closed after the idle timeout, and a connection with a request in progress but no byte either
//!   way for [`BUSY_IDLE_TIMEOUT`] is closed too.
//! - At most [`HttpGate::cap`] HTTP connections are open at once, over all HTTP listeners; one
//!   more is answered 503 and closed at once.
//! - HTTP gives way to AMQP for file descriptors: a new HTTP connection is refused (503, closed)
//!   when the open descriptors would leave fewer than [`HttpGate::reserve`] free under the
//!   process's RLIMIT_NOFILE. The AMQP accept loop has no such check: it uses the reserve.
//! - Nothing a client sends can make this code panic; refusals are logged at most once per
//!   [`REFUSAL_LOG_INTERVAL`].
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// A connection with a request in progress (the handler running, or its body being read or its
/// response written) is closed after this long without a byte either way: long enough for a slow
/// handler (a large definitions import), short enough that a trickled body cannot hold a slot
/// for ever. Cowboy's `idle_timeout` default.
pub const BUSY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most concurrent HTTP connections, whatever the descriptor limit (RabbitMQ's management
/// listener has no cap of its own; an operator's dashboards and scrapers need a few dozen).
pub const MAX_HTTP_CONNECTIONS: usize = 1024;
/// Fewest concurrent HTTP connections allowed, however low the descriptor limit.
pub const MIN_HTTP_CONNECTIONS: usize = 8;
/// HTTP may use at most 1/this of the descriptor limit for connections (1024 descriptors: 256
/// HTTP connections).
pub const HTTP_SHARE_DIVISOR: u64 = 4;
/// Descriptors kept free for AMQP: 1/this of the limit (1024 descriptors: 256 kept), within
/// [`MIN_FD_RESERVE`] and [`MAX_FD_RESERVE`].
pub const FD_RESERVE_DIVISOR: u64 = 4;
/// Fewest descriptors kept free for AMQP.
pub const MIN_FD_RESERVE: u64 = 32;
/// Most descriptors kept free for AMQP (a large limit needs no larger reserve).
pub const MAX_FD_RESERVE: u64 = 4096;
/// The open descriptors are counted (a read of `/proc/self/fd`) at most this often; in between,
/// the last count plus the HTTP connections accepted since is the estimate.
pub const FD_RECOUNT_INTERVAL: Duration = Duration::from_millis(100);
/// A refused HTTP connection or a failed accept is logged at most this often.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Pause after a failed accept (EMFILE and friends) before accepting again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// What a refused HTTP connection is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\ncontent-length: 68\r\n\r\n{\"error\":\"service_unavailable\",\"reason\":\"Too many HTTP connections\"}";

use crate::clock::now_ms;

/// The instant `ms` (as [`now_ms`] counts) stands for, on tokio's clock.
fn instant_of(ms: u64) -> Instant {
    Instant::from_std(crate::clock::instant_of(ms))
}

/// The process's descriptor limit (RLIMIT_NOFILE, soft); `None`: unlimited.
fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Descriptors open in this process (`/proc/self/fd`); `None` where that is not available.
fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64)
}

/// Admission of HTTP connections, shared by every HTTP listener.
pub struct HttpGate {
    /// One permit per HTTP connection allowed.
    slots: Arc<Semaphore>,
    /// Most HTTP connections at once.
    pub cap: usize,
    /// The descriptor limit, when there is one.
    pub fd_limit: Option<u64>,
    /// Descriptors kept free for AMQP.
    pub reserve: u64,
    /// Time to send request headers.
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// (last exact count of open descriptors, when it was taken in ms (`u64::MAX`: never), HTTP
    /// connections admitted since).
    fds: Mutex<(u64, u64, u64)>,
    /// When a refusal was last logged (ms), for [`REFUSAL_LOG_INTERVAL`].
    last_log: AtomicU64,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// [`HttpGate::cap`] connections are open.
    Cap,
    /// Too few descriptors left: they are kept for AMQP.
    Descriptors,
}

impl HttpGate {
    /// The gate for this process's descriptor limit.
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> HttpGate {
        HttpGate::with_limit(fd_limit(), header_timeout, idle_timeout)
    }

    /// The gate for a given descriptor limit (`None`: unlimited).
    pub fn with_limit(limit: Option<u64>, header_timeout: Duration, idle_timeout: Duration) -> HttpGate {
        let (cap, reserve) = match limit {
            Some(l) => (
                ((l / HTTP_SHARE_DIVISOR) as usize).clamp(MIN_HTTP_CONNECTIONS, MAX_HTTP_CONNECTIONS),
                (l / FD_RESERVE_DIVISOR).clamp(MIN_FD_RESERVE, MAX_FD_RESERVE),
            ),
            None => (MAX_HTTP_CONNECTIONS, 0),
        };
        HttpGate {
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            fd_limit: limit,
            reserve,
            header_timeout,
            idle_timeout,
            fds: Mutex::new((0, u64::MAX, 0)),
            last_log: AtomicU64::new(0),
        }
    }

    /// Admit a just-accepted connection (`fd`: its descriptor number) or say why not.
    pub fn admit(&self, fd: u64) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Some(limit) = self.fd_limit {
            // Descriptors are allocated lowest first: every one below `fd` is open, so `fd + 1`
            // is a lower bound of the open count, exact or not; the estimate is the larger.
            let open = (fd + 1).max(self.estimate_open_fds());
            if open + self.reserve > limit {
                return Err(Refusal::Descriptors);
            }
        }
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| Refusal::Cap)?;
        self.fds.lock().2 += 1;
        Ok(permit)
    }

    /// Open descriptors: an exact count at most every [`FD_RECOUNT_INTERVAL`], plus the HTTP
    /// connections admitted since (an over-estimate: some may have closed).
    fn estimate_open_fds(&self) -> u64 {
        let now = now_ms();
        let mut f = self.fds.lock();
        if f.1 == u64::MAX || now.saturating_sub(f.1) >= FD_RECOUNT_INTERVAL.as_millis() as u64 {
            *f = (open_fds().unwrap_or(0), now, 0);
        }
        f.0 + f.2
    }

    /// Whether a refusal should be logged now (at most once per [`REFUSAL_LOG_INTERVAL`]).
    fn should_log(&self) -> bool {
        let now = now_ms();
        let last = self.last_log.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= REFUSAL_LOG_INTERVAL.as_millis() as u64)
            && self.last_log.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// Accept HTTP connections on `l` for `app` until shutdown, then wait for them to finish.
pub async fn accept_loop(
    l: TcpListener,
    app: Router,
    gate: Arc<HttpGate>,
    what: &'static str,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((sock, peer)) => {
                    use std::os::fd::AsRawFd;
                    let fd = sock.as_raw_fd().max(0) as u64;
                    match gate.admit(fd) {
                        Ok(permit) => {
                            conns.spawn(serve_connection(sock, peer, app.clone(), gate.clone(), permit, shutdown.clone()));
                        }
                        Err(why) => {
                            if gate.should_log() {
                                match why {
                                    Refusal::Cap => tracing::warn!(
                                        %peer, "{what}: {} HTTP connections open (the most allowed); refusing more", gate.cap
                                    ),
                                    Refusal::Descriptors => tracing::warn!(
                                        %peer, "{what}: file descriptors are short ({} kept for AMQP); refusing HTTP connections",
                                        gate.reserve
                                    ),
                                }
                            }
                            // Best effort: a non-blocking write into an empty socket buffer.
                            let _ = sock.try_write(REFUSAL);
                            drop(sock);
                        }
                    }
                }
                Err(e) => {
                    if gate.should_log() {
                        tracing::error!("{what}: accept failed: {e}");
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(l);
    while conns.join_next().await.is_some() {}
}

/// When a connection last moved a byte, and how many requests it has in progress.
#[derive(Default)]
struct Activity {
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Counts a request in progress while alive.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Busy {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that records when bytes move.
struct Tracked {
    sock: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.sock).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.sock).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.sock).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.sock.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }
}

/// Serve one HTTP/1.1 connection: hyper with the header-read timeout, and the idle timers of the
/// module invariants around it. The permit (a slot under the cap) is held until it closes.
async fn serve_connection(
    sock: TcpStream,
    peer: SocketAddr,
    app: Router,
    gate: Arc<HttpGate>,
    _permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = sock.set_nodelay(true);
    let activity = Arc::new(Activity::default());
    activity.touch();
    let io = TokioIo::new(Tracked { sock, activity: activity.clone() });
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        // What axum's connect-info service would add: the authentication middleware reads it.
        req.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::new(&act);
        let app = app.clone();
        async move {
            let r = app.oneshot(req).await;
            drop(busy);
            r
        }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(gate.header_timeout).keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let limit = |a: &Activity| {
            if a.in_flight.load(Ordering::Relaxed) > 0 {
                BUSY_IDLE_TIMEOUT
            } else {
                gate.idle_timeout
            }
        };
        let deadline = instant_of(activity.last_ms.load(Ordering::Relaxed)) + limit(&activity);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "HTTP connection closed: {e}");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let last = instant_of(activity.last_ms.load(Ordering::Relaxed));
                if last + limit(&activity) <= Instant::now() {
                    tracing::debug!(%peer, "closing idle HTTP connection");
                    return;
                }
            }
            r = shutdown.changed(), if !closing => {
                let _ = r;
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_descriptor_limit() {
        let t = Duration::from_secs(1);
        let g = HttpGate::with_limit(Some(1024), t, t);
        assert_eq!((g.cap, g.reserve), (256, 256));
        let g = HttpGate::with_limit(Some(16), t, t);
        assert_eq!((g.cap, g.reserve), (MIN_HTTP_CONNECTIONS, MIN_FD_RESERVE));
        let g = HttpGate::with_limit(Some(1 << 20), t, t);
        assert_eq!((g.cap, g.reserve), (MAX_HTTP_CONNECTIONS, MAX_FD_RESERVE));
        let g = HttpGate::with_limit(None, t, t);
        assert_eq!((g.cap, g.reserve), (MAX_HTTP_CONNECTIONS, 0));
    }

    #[test]
    fn descriptors_near_the_limit_refuse_http() {
        let t = Duration::from_secs(1);
        let g = HttpGate::with_limit(Some(1024), t, t);
        // Descriptor 900 open: at least 901 are, and 901 + 256 > 1024.
        assert_eq!(g.admit(900).err(), Some(Refusal::Descriptors));
        let held: Vec<_> = (0..g.cap).map(|_| g.admit(10).expect("under the cap")).collect();
        assert_eq!(g.admit(10).err(), Some(Refusal::Cap));
        drop(held);
        assert!(g.admit(10).is_ok());
    }
}
