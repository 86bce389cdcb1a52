//! A confirm is sent only after the fsync that covers the message, and a declare-ok only after the
//! definitions file that holds the queue is synced: checked with a simulated power cut, which a
//! kill -9 alone cannot show (the OS page cache survives a killed process).
//!
//! The broker runs with `WARREN_TEST_SYNC_LOG` (tests only): the message store records the length
//! of each segment at every sync, and the metadata writer keeps a copy of each definitions file it
//! has synced. After a kill -9 at a random moment under concurrent confirmed publishers and a
//! declarer, the test cuts every segment back to its last synced length (a segment never synced
//! goes; ack files, never synced, are emptied) and puts back the last synced definitions file,
//! as a power loss would. Then every confirmed message and every declared queue must be there.
//! Removing the store's sync makes this test fail (checked by hand: see the session note).
mod common;
use common::process::Warren;
use common::raw::Raw;
use common::{s, unique};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warren_protocol::method::*;
use warren_protocol::{BasicProperties, Method};

/// Random cut points.
const ROUNDS: u64 = 50;
/// Concurrent confirmed publishers, each to its own durable queue.
const PUBLISHERS: u64 = 3;
/// Unconfirmed publishes each publisher keeps in flight.
const WINDOW: u64 = 200;

/// Cut the data directory back to what was synced, as a power loss would.
fn power_cut(dir: &Path, log: &Path) {
    let mut synced: HashMap<String, u64> = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let mut w = line.split_whitespace();
        if let (Some("seg"), Some(name), Some(len)) = (w.next(), w.next(), w.next()) {
            let len: u64 = len.parse().expect("synced length");
            let e = synced.entry(name.to_string()).or_insert(0);
            *e = (*e).max(len);
        }
    }
    for e in std::fs::read_dir(dir.join("msgs")).expect("msgs dir").filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        if name.ends_with(".seg") {
            match synced.get(&name) {
                Some(len) => {
                    let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open segment");
                    if f.metadata().expect("metadata").len() > *len {
                        f.set_len(*len).expect("cut segment");
                    }
                }
                None => std::fs::remove_file(&path).expect("remove unsynced segment"),
            }
        } else if name.ends_with(".ack") {
            // Ack entries are never fsynced: all of them may be gone.
            std::fs::OpenOptions::new().write(true).open(&path).expect("open ack file").set_len(0).expect("cut acks");
        }
    }
    let defs = log.with_extension("defs");
    std::fs::copy(&defs, dir.join("definitions.json")).expect("the boot definitions were synced");
    let _ = std::fs::remove_file(dir.join("definitions.json.tmp"));
}

fn persistent() -> BasicProperties {
    BasicProperties { delivery_mode: Some(2), ..Default::default() }
}

async fn declare_durable(r: &mut Raw, q: &str) {
    match r.call(1, QueueDeclare { queue: s(q), durable: true, ..Default::default() }).await {
        Method::QueueDeclareOk(_) => {}
        other => panic!("declare {q}: {other:?}"),
    }
}

/// Publish persistent messages 1, 2, ... with confirms until `stop`; the highest confirmed number.
async fn publisher(addr: std::net::SocketAddr, q: String, stop: Arc<AtomicBool>) -> u64 {
    let mut r = Raw::connect(addr).await;
    r.open_channel(1).await;
    assert!(matches!(r.call(1, ConfirmSelect::default()).await, Method::ConfirmSelectOk(_)));
    let (mut sent, mut confirmed) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        while sent < confirmed + WINDOW {
            sent += 1;
            r.publish_props(1, "", &q, &sent.to_be_bytes(), persistent()).await;
        }
        match tokio::time::timeout(Duration::from_millis(2), r.recv_method()).await {
            Ok((1, Method::BasicAck(a))) => confirmed = confirmed.max(a.delivery_tag),
            Ok(other) => panic!("expected basic.ack, got {other:?}"),
            Err(_) => {}
        }
    }
    confirmed
}

/// Declare durable queues `prefix-0`, `prefix-1`, ... until `stop`; how many were declared-ok.
async fn declarer(addr: std::net::SocketAddr, prefix: String, stop: Arc<AtomicBool>) -> u64 {
    let mut r = Raw::connect(addr).await;
    r.open_channel(1).await;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        declare_durable(&mut r, &format!("{prefix}-{n}")).await;
        n += 1;
    }
    n
}

/// Every message of `q` (no-ack consume), by publish number.
async fn contents(r: &mut Raw, q: &str) -> Vec<u64> {
    let n = match r.call(1, QueueDeclare { queue: s(q), passive: true, ..Default::default() }).await {
        Method::QueueDeclareOk(ok) => ok.message_count,
        other => panic!("queue {q} is gone after the power cut: {other:?}"),
    };
    let ok = r.call(1, BasicConsume { queue: s(q), consumer_tag: s("check"), no_ack: true, ..Default::default() });
    assert!(matches!(ok.await, Method::BasicConsumeOk(_)));
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let d = r.recv_content().await;
        out.push(u64::from_be_bytes(d.body[..8].try_into().expect("8-byte body")));
    }
    assert!(matches!(
        r.call(1, BasicCancel { consumer_tag: s("check"), no_wait: false }).await,
        Method::BasicCancelOk(_)
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_loses_no_confirmed_message_and_no_declared_queue() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = match std::env::var("WARREN_TEST_SEED") {
        Ok(v) => v.parse().expect("WARREN_TEST_SEED is a u64"),
        Err(_) => rand::random(),
    };
    eprintln!("power_loss: seed {seed} (replay with WARREN_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let root = std::env::temp_dir().join(unique("warren-power-loss"));
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).expect("data dir");
    let (mut total_confirmed, mut total_declared) = (0u64, 0u64);
    for round in 0..ROUNDS {
        let log: PathBuf = root.join(format!("sync-{round}.log"));
        let log_s = log.to_string_lossy().to_string();
        let p = Warren::start(&dir, &[(warren::store::TEST_SYNC_LOG_ENV, &log_s)]);
        let queues: Vec<String> = (0..PUBLISHERS).map(|i| format!("pl-{round}-{i}")).collect();
        {
            let mut r = Raw::connect(p.amqp).await;
            r.open_channel(1).await;
            for q in &queues {
                declare_durable(&mut r, q).await;
            }
            r.close().await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pubs: Vec<_> = queues.iter().map(|q| tokio::spawn(publisher(p.amqp, q.clone(), stop.clone()))).collect();
        let decl = tokio::spawn(declarer(p.amqp, format!("pl-{round}-d"), stop.clone()));
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..150))).await;
        stop.store(true, Ordering::Relaxed);
        let mut confirmed = Vec::new();
        for t in pubs {
            confirmed.push(t.await.expect("publisher"));
        }
        let declared = decl.await.expect("declarer");
        p.kill9();
        power_cut(&dir, &log);

        let p = Warren::start(&dir, &[]);
        let mut r = Raw::connect(p.amqp).await;
        r.open_channel(1).await;
        for (q, c) in queues.iter().zip(&confirmed) {
            let got = contents(&mut r, q).await;
            assert!(got.windows(2).all(|w| w[0] < w[1]), "seed {seed} round {round} {q}: out of order or duplicated");
            assert!(
                got.len() as u64 >= *c && got[..*c as usize] == (1..=*c).collect::<Vec<_>>()[..],
                "seed {seed} round {round} {q}: {c} confirmed, {} after the power cut",
                got.len()
            );
            r.call(1, QueueDelete { queue: s(q), ..Default::default() }).await;
        }
        for k in 0..declared {
            let q = format!("pl-{round}-d-{k}");
            match r.call(1, QueueDeclare { queue: s(&q), passive: true, ..Default::default() }).await {
                Method::QueueDeclareOk(_) => {}
                other => panic!("seed {seed} round {round}: declared queue {q} lost in the power cut: {other:?}"),
            }
            r.call(1, QueueDelete { queue: s(&q), ..Default::default() }).await;
        }
        r.close().await;
        drop(p);
        total_confirmed += confirmed.iter().sum::<u64>();
        total_declared += declared;
    }
    eprintln!(
        "power_loss: {ROUNDS} cuts, {total_confirmed} confirmed messages and {total_declared} declared queues kept"
    );
    assert!(total_confirmed > 0 && total_declared > 0, "nothing was confirmed or declared: the test tested nothing");
    let _ = std::fs::remove_dir_all(&root);
}
