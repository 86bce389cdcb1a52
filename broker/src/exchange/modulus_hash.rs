//! The modulus-hash exchange (`x-modulus-hash`, built into RabbitMQ 4.x): a message goes to
//! destination number `hash(routing key) mod N` of the N destinations bound, binding keys
//! ignored. Routing is stable while the bindings stay the same, restarts included.
//!
//! Runs in: the publishing task (route, under the exchange's bindings read lock); bind / unbind
//! handlers (the list is rebuilt under its write lock).
//!
//! # Invariants
//! - `dests` holds each bound destination once, sorted by kind and name (not by binding order,
//!   which a restart may change).
use super::{Binding, Dest, Routed};
use std::hash::BuildHasher;

/// Seed of the hash: fixed, so a key picks the same destination in every run.
const SEED: u64 = 0x4d4f_4455_4c55_5321;

/// The destinations of one exchange, in a stable order.
#[derive(Default)]
pub struct ModulusIndex {
    /// Distinct destinations, sorted.
    dests: Vec<Dest>,
}

/// Sort key of a destination: queues before exchanges, then by name.
fn order(d: &Dest) -> (u8, &[u8]) {
    match d {
        Dest::Queue(q) => (0, q.name.as_bytes()),
        Dest::Exchange(x) => (1, x.name.as_bytes()),
    }
}

impl ModulusIndex {
    /// Rebuild from the exchange's bindings.
    pub fn rebuild(&mut self, all: &[Binding]) {
        self.dests.clear();
        for b in all {
            if !self.dests.iter().any(|d| d.same(&b.dest)) {
                self.dests.push(b.dest.clone());
            }
        }
        self.dests.sort_by(|a, b| order(a).cmp(&order(b)));
    }

    /// The destination of a message with routing `keys` (the first is the routing key).
    #[inline]
    pub fn route(&self, keys: &[&[u8]], out: &mut Routed) -> bool {
        if self.dests.is_empty() {
            return false;
        }
        let key = keys.first().copied().unwrap_or_default();
        let h = foldhash::fast::FixedState::with_seed(SEED).hash_one(key);
        out.push(&self.dests[(h % self.dests.len() as u64) as usize]);
        true
    }
}
