//! Boot: open the data directory (lock it, restore the definitions through the definitions door,
//! put the persistent messages back into their queues), or start empty.
//!
//! Runs in: a blocking task of `server::start`, once.
//!
//! # Invariants
//! - Two brokers never share a data directory (`warren.lock` is flock'ed for the broker's life).
//! - Definitions are restored before messages, so every recovered message finds its queue (or its
//!   durable delayed-message exchange, which holds it again until its due time).
use crate::broker::Broker;
use crate::config::Config;
use crate::store::meta::{self, MetaStore};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;

/// Open the data directory: lock it, restore the definitions (or write the defaults on first
/// start), and put the persistent messages back into their queues.
pub fn open_data_dir(config: &Config, dir: &std::path::Path) -> anyhow::Result<Arc<Broker>> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let lock_path = dir.join("warren.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("cannot use data directory {}: {}", dir.display(), lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!("data directory {} is in use by another Warren", dir.display());
    }
    let store = Store::open(dir).with_context(|| format!("cannot open the message store in {}", dir.display()))?;
    let meta = MetaStore::new(dir);
    let broker = Broker::empty(config.clone(), Some(store.clone()), Some(meta.clone()), Some(lock));
    let started = std::time::Instant::now();
    if meta.path.exists() {
        let defs = meta::read(&meta.path).with_context(|| format!("cannot read {}", meta.path.display()))?;
        for p in crate::definitions::import(&broker, &defs) {
            tracing::warn!("definitions: {p}");
        }
        if broker.vhosts.read().is_empty() {
            broker.add_defaults();
        }
    } else {
        broker.add_defaults();
    }
    if let Err(e) = meta.write_now(|| crate::definitions::export(&broker)) {
        // A full disk must not keep the broker from starting: the disk alarm blocks publishers,
        // the metadata writer retries, and what was on disk is recovered below.
        tracing::error!("cannot write {}: {e:#}; will retry", meta.path.display());
        meta.request();
    }
    let mut by_key: HashMap<u64, Arc<crate::queue::Queue>> = HashMap::new();
    for v in broker.vhosts() {
        for q in v.queues_snapshot().into_iter().filter(|q| q.persists()) {
            by_key.insert(q.key(), q);
        }
    }
    // Durable delayed-message exchanges keep their held persistent messages in the store too.
    let mut delayed: HashMap<u64, Arc<crate::vhost::VHost>> = HashMap::new();
    for v in broker.vhosts() {
        for x in v.exchanges_snapshot() {
            if x.durable && x.kind == crate::exchange::ExchangeKind::DelayedMessage {
                delayed.insert(crate::store::delayed_key(&v.name, x.name.as_bytes()), v.clone());
            }
        }
    }
    let mut held = 0u64;
    let (now, now_unix) = (crate::clock::now_ms(), crate::clock::unix_ms());
    let stats = store
        .recover(
            |k| by_key.contains_key(&k) || delayed.contains_key(&k),
            |k, m| {
                if let Some(q) = by_key.get(&k) {
                    q.recover(m, now, now_unix);
                } else if let Some(v) = delayed.get(&k) {
                    match store.read_message(&m.disk) {
                        Ok(msg) => {
                            held += 1;
                            v.hold_recovered(m.header.expires_unix_ms, msg, m.disk);
                        }
                        Err(e) => tracing::error!("a delayed message's record cannot be read: {e}"),
                    }
                }
            },
        )
        .with_context(|| format!("cannot recover messages from {}", dir.join("msgs").display()))?;
    // Stream directories of streams that no longer exist (deleted while stopped, or leftovers).
    let streams: std::collections::HashSet<u64> =
        by_key.values().filter(|q| q.kind == crate::queue::settings::QueueType::Stream).map(|q| q.key()).collect();
    crate::stream::remove_orphans(&store, &streams);
    store.start()?;
    tracing::info!(
        "data directory {}: {} queues, {} messages recovered ({} of them held by delayed-message exchanges) from {} segments in {:?} ({} bytes of torn or corrupt tail cut)",
        dir.display(),
        by_key.len(),
        stats.messages,
        held,
        stats.segments,
        started.elapsed(),
        stats.truncated_bytes
    );
    Ok(broker)
}
