//! The random exchanges: `x-random` (RabbitMQ's bundled rabbitmq_random_exchange plugin) and
//! `x-local-random` (built into RabbitMQ 4.x; on a single node every queue is local): a message
//! goes to one bound destination picked at random, binding keys ignored.
//!
//! Runs in: the publishing task, under the exchange's bindings read lock.
//!
//! # Invariants
//! - No index: one uniform pick among the bindings per message.
use super::{Binding, Routed};

/// One destination picked at random; whether there was any.
#[inline]
pub fn route(all: &[Binding], out: &mut Routed) -> bool {
    if all.is_empty() {
        return false;
    }
    let i = (rand::random::<u64>() % all.len() as u64) as usize;
    out.push(&all[i].dest);
    true
}
