//! The resource monitor: every `MEMORY_CHECK_INTERVAL`, expire and sweep queues, page bodies out
//! under pressure, and raise or clear the memory and disk alarms (`Broker::alarm`).
//!
//! Runs in: one task spawned by `server::start`.
//!
//! # Invariants
//! - `Broker::alarm` is true exactly while `mem_alarm` or `disk_alarm` is.
use crate::broker::Broker;
use crate::config::MEMORY_CHECK_INTERVAL;
use crate::queue::ready::Pressure;
use crate::store::{PAGE_STEP_MESSAGES, PAGE_SWEEP_MESSAGES};
use crate::vhost::VHost;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// Transient messages are paged to disk once queued bytes exceed watermark / this (RabbitMQ's
/// `vm_memory_high_watermark_paging_ratio` of 0.5).
const PAGING_RATIO_DIVISOR: u64 = 2;

/// One paging sweep of every queue of `v`: steps of `PAGE_STEP_MESSAGES` under the queue's lock,
/// yielding between them, up to `PAGE_SWEEP_MESSAGES` per queue.
async fn page_out(v: &VHost, pressure: Pressure) {
    for q in v.queues_snapshot() {
        for _ in 0..PAGE_SWEEP_MESSAGES.div_ceil(PAGE_STEP_MESSAGES) {
            let (_, more) = q.page_out_step(pressure);
            if !more {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Every `MEMORY_CHECK_INTERVAL`: expire messages and queues (TTL, x-expires), page out, and
/// re-evaluate the resource alarms (memory: message bytes held in memory (ready, unacked, being
/// assembled, pending outbound) above the high watermark; disk:
/// free space on the data directory's filesystem below `disk_free_limit`, or store writes
/// failing). While either is on, publishers are blocked.
pub async fn resource_monitor(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let limit = broker.config.memory_high_watermark.bytes();
    tracing::info!("memory high watermark: {limit} bytes of queued messages");
    let disk_limit = broker.config.disk_free_limit.bytes();
    let data_dir = broker.config.data_dir.clone().filter(|_| broker.store.is_some());
    if let Some(d) = &data_dir {
        tracing::info!("disk free limit: {disk_limit} bytes on the filesystem of {}", d.display());
    }
    let mut tick = tokio::time::interval(MEMORY_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let vhosts: Vec<Arc<VHost>> = broker.vhosts.read().values().cloned().collect();
        // Message TTL and queue expiry: expired messages go without waiting for a consumer.
        for v in &vhosts {
            v.sweep(v.clock.now_ms());
        }
        // What the broker holds for clients besides ready messages: unacked bodies still in
        // memory, bodies being assembled, pending outbound frames.
        let conns = broker.stats.connections();
        let mut held: u64 = conns.iter().map(|c| c.held_bytes()).sum();
        // Paging: bodies beyond each queue's window go to disk; transient ones too, and unacked
        // ones whose record is written, once the total passes half the watermark (RabbitMQ's
        // paging ratio); past the watermark, each queue's window shrinks too.
        if let Some(store) = &broker.store {
            let before: u64 = vhosts.iter().map(|v| v.queued_bytes()).sum::<u64>() + held;
            let pressure = if before > limit {
                Pressure::Alarm
            } else if before > limit / PAGING_RATIO_DIVISOR {
                Pressure::Paging
            } else {
                Pressure::None
            };
            for v in &vhosts {
                page_out(v, pressure).await;
            }
            if pressure > Pressure::None {
                held -= conns.iter().map(|c| c.page_out_unacked(store)).sum::<u64>().min(held);
            }
        }
        let used: u64 = vhosts.iter().map(|v| v.queued_bytes()).sum::<u64>() + held;
        let mem_on = used > limit;
        if broker.mem_alarm.swap(mem_on, Ordering::Relaxed) != mem_on {
            if mem_on {
                tracing::warn!(
                    "memory alarm set: {used} bytes held for messages (ready, unacked, in transit) > high watermark {limit}; blocking publishers"
                );
            } else {
                tracing::info!("memory alarm cleared: {used} bytes held for messages <= {limit}");
            }
        }
        if let Some(dir) = &data_dir {
            let free = disk_free(dir);
            let failing = broker.store.as_ref().is_some_and(|s| s.write_failing());
            let disk_on = failing || free.is_some_and(|f| f < disk_limit);
            if broker.disk_alarm.swap(disk_on, Ordering::Relaxed) != disk_on {
                let free = free.map_or("unknown".to_string(), |f| f.to_string());
                if disk_on {
                    tracing::warn!(
                        "disk alarm set: {free} bytes free, limit {disk_limit}{}; blocking publishers",
                        if failing { ", store writes failing" } else { "" }
                    );
                } else {
                    tracing::info!("disk alarm cleared: {free} bytes free, limit {disk_limit}");
                }
            }
        }
        let on = broker.mem_alarm.load(Ordering::Relaxed) || broker.disk_alarm.load(Ordering::Relaxed);
        if *broker.alarm.borrow() != on {
            broker.alarm.send_replace(on);
        }
    }
}

/// Free bytes (for unprivileged users) on the filesystem holding `dir`; `None` when unknown.
pub fn disk_free(dir: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(dir).ok().map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}
