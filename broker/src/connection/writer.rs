//! The connection writer task: flushes the outbound buffer with vectored writes, sends heartbeats
//! when idle, and detects a silent peer.
//!
//! Runs in: its own task, one per connection.
//!
//! # Invariants
//! - One `write_vectored` loop per batch: everything appended while the previous write ran goes out
//!   together (no per-frame syscall under load).
//! - After a batch of at least `YIELD_AFTER_BYTES` the task yields its runtime thread once, so a
//!   connection streaming large bodies does not keep other connections' tasks waiting.
//! - A heartbeat is sent when nothing was written for half the heartbeat interval; the peer is
//!   declared dead when nothing was read for two intervals (`abort` is notified).
use crate::outbound::Outbound;
use bytes::{Buf, Bytes};
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use warren_protocol::frame;

/// Most slices handed to one `write_vectored` call (Linux IOV_MAX is 1024).
const MAX_IOVECS: usize = 256;

/// Milliseconds since `epoch`, for the last-read stamp shared with the reader.
pub fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// Liveness shared between reader and writer.
pub struct Liveness {
    /// Reference point for `last_read`.
    pub epoch: Instant,
    /// Milliseconds since `epoch` of the last successful socket read.
    pub last_read: AtomicU64,
    /// Notified when the peer missed two heartbeats (or the socket failed); the reader closes.
    pub abort: Notify,
}

pub async fn run<W: AsyncWrite + Unpin>(
    mut sock: W,
    out: Arc<Outbound>,
    heartbeat: Option<Duration>,
    live: Arc<Liveness>,
    info: Arc<crate::stats::ConnInfo>,
) {
    let mut chunks: Vec<Bytes> = Vec::new();
    let tick = heartbeat.map(|h| (h / 2).max(Duration::from_millis(100)));
    let mut last_write = Instant::now();
    loop {
        match tick {
            Some(t) => {
                tokio::select! {
                    _ = out.ready() => {}
                    _ = tokio::time::sleep(t) => {
                        // `heartbeat` is Some whenever `tick` is.
                        let hb = heartbeat.unwrap_or(t);
                        let silent_ms = millis_since(live.epoch).saturating_sub(live.last_read.load(Ordering::Relaxed));
                        if silent_ms > 2 * hb.as_millis() as u64 {
                            tracing::warn!("missed heartbeats from client, timeout: {}s", hb.as_secs());
                            live.abort.notify_one();
                            return;
                        }
                        if last_write.elapsed() >= t {
                            out.write(frame::encode_heartbeat);
                        }
                    }
                }
            }
            None => out.ready().await,
        }
        let delay = info.delay_writes_ms.load(Ordering::Relaxed);
        if delay > 0 {
            // Test fault: what the client is sent arrives late.
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let n = out.take(&mut chunks);
        if n > 0 {
            if write_all(&mut sock, &mut chunks).await.is_err() {
                live.abort.notify_one();
                out.close();
                return;
            }
            last_write = Instant::now();
            crate::counters::bump(&info.counters.send_oct, n as u64);
            crate::counters::bump(&info.counters.send_cnt, 1);
            out.written(n);
            if n >= super::YIELD_AFTER_BYTES {
                tokio::task::yield_now().await;
            }
        }
        if out.is_closed() && out.is_empty() {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

/// Write every chunk, in order, with as few syscalls as the kernel allows.
async fn write_all<W: AsyncWrite + Unpin>(sock: &mut W, chunks: &mut Vec<Bytes>) -> std::io::Result<()> {
    let mut first = 0;
    while first < chunks.len() {
        let end = (first + MAX_IOVECS).min(chunks.len());
        let slices: Vec<IoSlice<'_>> = chunks[first..end].iter().map(|c| IoSlice::new(c)).collect();
        let mut n = sock.write_vectored(&slices).await?;
        drop(slices);
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && first < chunks.len() {
            let len = chunks[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                chunks[first].advance(n);
                n = 0;
            }
        }
    }
    chunks.clear();
    // A no-op on TCP; TLS may hold the last records until flushed.
    sock.flush().await
}
