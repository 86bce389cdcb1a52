//! Starts and stops shovel workers as the registry changes: one worker per shovel, restarted
//! when its entry is replaced (new definition, restart), aborted when it is deleted or at
//! shutdown.
//!
//! Runs in: one task, spawned by `server::start`.
//!
//! # Invariants
//! - A worker runs exactly for the registry entry it was started with (compared by `Arc`
//!   identity): when that entry is gone, the worker is aborted; its connections drop, and the
//!   source requeues what it had not acknowledged.
use super::client::Local;
use super::{worker, Entry};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::{AbortHandle, JoinSet};

/// Keep one worker per shovel until shutdown.
pub async fn run(local: Local) {
    let mut changed = local.broker.shovels.changed.subscribe();
    let mut shutdown = local.shutdown.clone();
    let mut tasks = JoinSet::new();
    let mut running: HashMap<(String, String), (Arc<Entry>, AbortHandle)> = HashMap::new();
    loop {
        let want = local.broker.shovels.all();
        running.retain(|_, (e, h)| {
            let keep = want.iter().any(|w| Arc::ptr_eq(w, e));
            if !keep {
                h.abort();
            }
            keep
        });
        for e in want {
            let key = (e.vhost.clone(), e.name.clone());
            if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(key) {
                let h = tasks.spawn(worker::run(e.clone(), local.clone()));
                slot.insert((e, h));
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            // A worker that ended stays in `running` (not restarted) until its entry changes.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}
