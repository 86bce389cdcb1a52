//! A full disk through real sockets: the data directory sits on a small tmpfs that the test fills.
//! No publisher is ever confirmed for a message that was not written (a failed write is retried in
//! order, never dropped, and leaves no torn record before good ones); publishers are blocked with
//! `connection.blocked` ("low on disk") while the disk alarm is on and their publishes are
//! confirmed once space comes back; the alarm shows in the health check; a broker started on a
//! full disk starts with the alarm set instead of exiting.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere each test says why it did not run.
mod common;
use common::raw::Raw;
use common::{eventually, s, unique, TestBroker};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warren::config::{Config, DiskFreeLimit};
use warren_protocol::method::*;
use warren_protocol::{BasicProperties, Method};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `mib` MiB, or `None` (with the reason printed) where that is not possible.
    fn mount(mib: u32) -> Option<Tmpfs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIP: mounting a tmpfs for the full-disk test needs root");
            return None;
        }
        let path = std::env::temp_dir().join(unique("warren-diskfull"));
        std::fs::create_dir_all(&path).expect("create mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIP: mount -t tmpfs failed (no mount permission in this sandbox)");
            let _ = std::fs::remove_dir(&path);
            return None;
        }
        Some(Tmpfs { path })
    }

    fn free(&self) -> u64 {
        warren::monitor::disk_free(&self.path).expect("statvfs")
    }

    /// Take all but `leave` bytes of the free space with a filler file.
    fn fill_leaving(&self, leave: u64) {
        let n = self.free().saturating_sub(leave);
        std::fs::write(self.filler(), vec![0u8; n as usize]).expect("write filler");
    }

    /// Take every free byte: write until the filesystem refuses.
    fn fill_completely(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.filler()).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn unfill(&self) {
        std::fs::remove_file(self.filler()).expect("remove filler");
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn config(dir: &Path, limit: u64) -> Config {
    Config {
        data_dir: Some(dir.to_path_buf()),
        disk_free_limit: DiskFreeLimit::Absolute(limit),
        management_listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..Config::loopback(0)
    }
}

fn persistent() -> BasicProperties {
    BasicProperties { delivery_mode: Some(2), ..Default::default() }
}

/// A body that carries its publish number: 8 bytes big-endian, padded to `len`.
fn body(n: u64, len: usize) -> Vec<u8> {
    let mut b = n.to_be_bytes().to_vec();
    b.resize(len.max(8), b'x');
    b
}

async fn declare_durable(r: &mut Raw, q: &str) {
    match r.call(1, QueueDeclare { queue: s(q), durable: true, ..Default::default() }).await {
        Method::QueueDeclareOk(_) => {}
        other => panic!("declare {q}: {other:?}"),
    }
}

/// basic.get (no-ack) until empty: the publish numbers of what the queue holds, in order.
async fn drain_numbers(r: &mut Raw, q: &str) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        r.send(1, BasicGet { queue: s(q), no_ack: true, ..Default::default() }).await;
        let (_, m) = r.recv_method().await;
        match m {
            Method::BasicGetEmpty(_) => return out,
            m => {
                let d = r.content_after(m).await;
                out.push(u64::from_be_bytes(d.body[..8].try_into().expect("8-byte prefix")));
            }
        }
    }
}

/// What a confirm-mode publisher saw.
#[derive(Default, Debug)]
struct Seen {
    /// Highest publish number confirmed (acks may be `multiple`).
    confirmed: u64,
    /// Blocked now: the reason of the last connection.blocked not followed by connection.unblocked.
    blocked: Option<String>,
    /// connection.unblocked was received.
    unblocked: bool,
}

impl Seen {
    /// Take one frame from the server into account; `false` for connection.close (the end).
    fn note(&mut self, m: (u16, Method)) -> bool {
        match m {
            (1, Method::BasicAck(a)) => self.confirmed = self.confirmed.max(a.delivery_tag),
            (1, Method::BasicNack(n)) => {
                panic!("publish {} nacked: a full disk must delay, not refuse", n.delivery_tag)
            }
            (0, Method::ConnectionBlocked(b)) => self.blocked = Some(b.reason.to_string()),
            (0, Method::ConnectionUnblocked(_)) => {
                self.blocked = None;
                self.unblocked = true;
            }
            (0, Method::ConnectionClose(_)) => return false,
            other => panic!("unexpected {other:?}"),
        }
        true
    }
}

/// Publish persistent messages `sent + 1 ..= n` (with at most `window` unconfirmed) until all are
/// confirmed, or the connection is blocked with nothing more to send (the disk is full: nothing
/// more is confirmed).
async fn publish_until_stuck(r: &mut Raw, q: &str, n: u64, size: usize, window: u64, sent: &mut u64, seen: &mut Seen) {
    loop {
        while *sent < n && *sent - seen.confirmed < window {
            *sent += 1;
            r.publish_props(1, "", q, &body(*sent, size), persistent()).await;
        }
        let stuck = *sent - seen.confirmed == window || *sent == n;
        if seen.confirmed == n || (seen.blocked.is_some() && stuck) {
            return;
        }
        assert!(seen.note(r.recv_method().await), "connection closed while publishing");
    }
}

/// Whether the broker's health check reports a disk alarm (`GET /api/health/checks/alarms`).
async fn disk_alarm_reported(b: &TestBroker) -> bool {
    let port = b.handle.as_ref().expect("running").management_addrs[0].port();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let auth = format!("Basic {}", base64_guest());
        let mut resp = agent
            .get(&format!("http://127.0.0.1:{port}/api/health/checks/alarms"))
            .header("Authorization", &auth)
            .call()
            .expect("health check answers");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("body");
        status == 503 && text.contains("\"disk\"")
    })
    .await
    .expect("join")
}

fn base64_guest() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode("guest:guest")
}

/// Three rounds on a 16 MiB tmpfs, with only a little space left each time and a disk free limit
/// of 0 (so the writes really fail, rather than the alarm stopping publishers first). Even rounds:
/// space comes back and every stuck publish is then confirmed. Odd rounds: the broker is stopped
/// while writes fail. Either way, after a restart every confirmed message is there, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_confirms_what_was_not_written() {
    let Some(fs) = Tmpfs::mount(16) else { return };
    let dir = fs.path.join("data");
    const N: u64 = 1500;
    const SIZE: usize = 2048;
    const WINDOW: u64 = 64;
    for round in 0..3u64 {
        let b = TestBroker::with_config(config(&dir, 0)).await;
        let q = format!("full-{round}");
        let mut r = b.raw().await;
        r.open_channel(1).await;
        declare_durable(&mut r, &q).await;
        assert!(matches!(r.call(1, ConfirmSelect::default()).await, Method::ConfirmSelectOk(_)));
        // Room for about a third of what is published.
        fs.fill_leaving(1024 * 1024 + round * 256 * 1024);
        let (mut seen, mut sent) = (Seen::default(), 0);
        publish_until_stuck(&mut r, &q, N, SIZE, WINDOW, &mut sent, &mut seen).await;
        assert!(seen.confirmed < N, "round {round}: all {N} confirmed: the disk never filled up");
        assert_eq!(seen.blocked.as_deref(), Some("low on disk"), "round {round}: publisher not blocked");
        assert!(disk_alarm_reported(&b).await, "round {round}: health check shows no disk alarm");
        let confirmed_while_full = seen.confirmed;
        if round % 2 == 0 {
            // Space comes back: the failed write is retried, the alarm clears, and every publish,
            // the stuck ones and the rest, is confirmed.
            fs.unfill();
            while seen.blocked.is_some() {
                assert!(seen.note(r.recv_method().await), "connection closed while blocked");
            }
            publish_until_stuck(&mut r, &q, N, SIZE, WINDOW, &mut sent, &mut seen).await;
            assert_eq!((sent, seen.confirmed), (N, N), "round {round}: not every publish confirmed");
            assert!(!disk_alarm_reported(&b).await, "round {round}: disk alarm still reported");
            r.close().await;
            b.stop().await;
        } else {
            // Stopped while the disk is full: whatever is confirmed before the connection closes
            // must be there after the restart.
            let stop = tokio::spawn(b.stop());
            while seen.note(r.recv_method().await) {}
            stop.await.expect("stop");
            fs.unfill();
        }
        let b = TestBroker::with_config(config(&dir, 0)).await;
        let mut r = b.raw().await;
        r.open_channel(1).await;
        let got = drain_numbers(&mut r, &q).await;
        let c = seen.confirmed as usize;
        assert!(got.windows(2).all(|w| w[0] < w[1]), "round {round}: out of order or duplicated");
        assert!(got.len() >= c, "round {round}: {} recovered < {c} confirmed", got.len());
        assert_eq!(got[..c], (1..=seen.confirmed).collect::<Vec<_>>()[..], "round {round}: a confirmed message lost");
        assert!(got.iter().all(|n| *n <= sent.max(seen.confirmed)));
        eprintln!(
            "round {round}: {confirmed_while_full} confirmed while the disk was full, {c} in all, {} recovered",
            got.len()
        );
        r.call(1, QueueDelete { queue: s(&q), ..Default::default() }).await;
        r.close().await;
        b.stop().await;
    }
}

/// The disk free limit blocks publishers before the disk is full; a broker started on a disk with
/// no space at all starts (with the alarm set), serves what it holds, and takes publishes again
/// once space comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_on_a_full_disk_starts_with_the_alarm_and_recovers() {
    let Some(fs) = Tmpfs::mount(8) else { return };
    let dir = fs.path.join("data");
    const LIMIT: u64 = 2 * 1024 * 1024;
    let b = TestBroker::with_config(config(&dir, LIMIT)).await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    declare_durable(&mut r, "kept").await;
    assert!(matches!(r.call(1, ConfirmSelect::default()).await, Method::ConfirmSelectOk(_)));
    let (mut seen, mut sent) = (Seen::default(), 0);
    publish_until_stuck(&mut r, "kept", 10, 100, 10, &mut sent, &mut seen).await;
    assert_eq!(seen.confirmed, 10);
    // Below the limit (but not full): the alarm blocks the connection, which has published.
    fs.fill_leaving(LIMIT / 2);
    while seen.blocked.is_none() {
        assert!(seen.note(r.recv_method().await));
    }
    assert_eq!(seen.blocked.as_deref(), Some("low on disk"));
    assert!(disk_alarm_reported(&b).await);
    r.close().await;
    b.stop().await;
    fs.unfill();

    // Not one byte free: the broker still starts, with the alarm on.
    fs.fill_completely();
    let b = TestBroker::with_config(config(&dir, LIMIT)).await;
    eventually(Duration::from_secs(10), || async { disk_alarm_reported(&b).await.then_some(()) }).await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    assert_eq!(drain_numbers(&mut r, "kept").await, (1..=10).collect::<Vec<_>>());
    assert!(matches!(r.call(1, ConfirmSelect::default()).await, Method::ConfirmSelectOk(_)));
    let mut seen = Seen::default();
    r.publish_props(1, "", "kept", &body(1, 100), persistent()).await;
    while seen.blocked.is_none() {
        assert!(seen.note(r.recv_method().await));
    }
    assert_eq!(seen.confirmed, 0, "confirmed with no space to write it");
    fs.unfill();
    while !(seen.unblocked && seen.confirmed == 1) {
        assert!(seen.note(r.recv_method().await));
    }
    assert!(!disk_alarm_reported(&b).await);
    r.close().await;
    b.stop().await;
    let b = TestBroker::with_config(config(&dir, LIMIT)).await;
    let mut r = b.raw().await;
    r.open_channel(1).await;
    assert_eq!(drain_numbers(&mut r, "kept").await, vec![1]);
    r.close().await;
    b.stop().await;
}
