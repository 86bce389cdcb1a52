//! The fanout exchange: a message goes to every destination bound, whatever its routing key.
//!
//! Runs in: the publishing task, under the exchange's bindings read lock.
//!
//! # Invariants
//! - No index: the bindings list is the routing table (each destination reached once, by
//!   `Routed::push`).
use super::{Binding, Routed};

/// Destinations of any message; whether there were any.
#[inline]
pub fn route(all: &[Binding], out: &mut Routed) -> bool {
    for b in all {
        out.push(&b.dest);
    }
    !all.is_empty()
}
