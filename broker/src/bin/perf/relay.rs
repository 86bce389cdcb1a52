//! `--relay`: the machine's ceiling for bodies that go through a broker, with no broker in it.
//!
//! A writer thread sends `--size`-byte chunks, `--batch` per write, over loopback TCP to a relay
//! thread, which reads into one 1 MiB buffer and writes what it read over a second connection to
//! a reader thread. Each byte takes the four kernel copies a broker's body takes (producer's send,
//! broker's receive, broker's send, consumer's receive) and nothing else: no framing, no queue,
//! and a buffer that stays in the relay thread's cache, which a broker holding messages cannot
//! have. Reported: bytes per second through the reader, and the relay thread's CPU time per
//! `--size` bytes (the counterpart of a broker's CPU per message).
//!
//! Runs on plain threads and blocking sockets, for the whole of `--seconds`.
//!
//! # Invariants
//! - Three threads, two connections; the relay never holds more than its one buffer.
//! - Only loopback addresses are used (an ephemeral port on 127.0.0.1).
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the relay reads into per read: as large as a busy Warren connection's reads.
const RELAY_BUF: usize = 1024 * 1024;
/// What the reader reads into per read.
const READER_BUF: usize = 1024 * 1024;

/// The outcome of one run.
pub struct Relayed {
    /// Bytes the reader received per second.
    pub bytes_per_s: f64,
    /// The relay thread's CPU time (user + system) per `size` bytes relayed, microseconds.
    pub relay_cpu_us_per_chunk: f64,
}

/// Relay `size`-byte chunks, `batch` per write, for `seconds`.
pub fn run(size: usize, batch: usize, seconds: u64) -> anyhow::Result<Relayed> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));

    let mut to_relay = TcpStream::connect(addr)?;
    let (mut relay_in, _) = listener.accept()?;
    let mut from_relay = TcpStream::connect(addr)?;
    let (mut relay_out, _) = listener.accept()?;
    for s in [&to_relay, &relay_in, &from_relay, &relay_out] {
        s.set_nodelay(true)?;
    }

    // The relay: read, write what was read, until the writer's side closes.
    let relay = std::thread::spawn(move || -> (u64, f64) {
        let start = crate::stat_cpu_us("/proc/thread-self/stat").unwrap_or(0.0);
        let mut buf = vec![0u8; RELAY_BUF];
        let mut total = 0u64;
        loop {
            let n = match relay_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if relay_out.write_all(&buf[..n]).is_err() {
                break;
            }
            total += n as u64;
        }
        (total, crate::stat_cpu_us("/proc/thread-self/stat").unwrap_or(0.0) - start)
    });

    // The writer: `batch` chunks per write until the run's end.
    let writer_stop = stop.clone();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0x5a_u8; size.max(1) * batch.max(1)];
        while !writer_stop.load(Ordering::Relaxed) {
            if to_relay.write_all(&chunk).is_err() {
                break;
            }
        }
        // Closing the connection ends the relay's loop.
        drop(to_relay);
    });

    // The reader (this thread): count what arrives during the run's window.
    from_relay.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = vec![0u8; READER_BUF];
    let started = Instant::now();
    let window = Duration::from_secs(seconds.max(1));
    let mut received = 0u64;
    while started.elapsed() < window {
        match from_relay.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    // Drain until the relay closes, so the writer's last write completes and every thread ends.
    from_relay.set_read_timeout(None)?;
    let drainer = std::thread::spawn(move || while matches!(from_relay.read(&mut buf), Ok(n) if n > 0) {});
    writer.join().map_err(|_| anyhow::anyhow!("relay writer thread panicked"))?;
    let (relayed, cpu_us) = relay.join().map_err(|_| anyhow::anyhow!("relay thread panicked"))?;
    let _ = drainer.join();
    let chunks = relayed as f64 / size.max(1) as f64;
    Ok(Relayed {
        bytes_per_s: received as f64 / elapsed,
        relay_cpu_us_per_chunk: if chunks > 0.0 { cpu_us / chunks } else { 0.0 },
    })
}
