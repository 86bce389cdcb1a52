//! The direct exchange: a message goes to the destinations bound with exactly its routing key
//! (or a CC / BCC key), through a hash index by key.
//!
//! Runs in: the publishing task (route, under the exchange's bindings read lock); declare / bind
//! handlers (index changes, under its write lock).
//!
//! # Invariants
//! - `by_key[k]` holds each destination bound with key `k` once, whatever the bindings' arguments;
//!   no entry is an empty list.
use super::{Binding, Dest, NameMap, Routed};
use warren_protocol::ShortStr;

/// Routing key -> destinations bound with it.
#[derive(Default)]
pub struct DirectIndex {
    /// Destinations by binding key.
    by_key: NameMap<Vec<Dest>>,
}

impl DirectIndex {
    /// A binding was added.
    pub fn add(&mut self, b: &Binding) {
        let v = self.by_key.entry(b.routing_key.clone()).or_default();
        if !v.iter().any(|d| d.same(&b.dest)) {
            v.push(b.dest.clone());
        }
    }

    /// A binding `dest` / `key` was removed; `rest` are the bindings left.
    pub fn remove(&mut self, rest: &[Binding], dest: &Dest, key: &ShortStr) {
        // Another binding (other arguments) may still lead to the same place with this key.
        if rest.iter().any(|x| x.dest.same(dest) && x.routing_key == *key) {
            return;
        }
        if let Some(v) = self.by_key.get_mut(key) {
            v.retain(|d| !d.same(dest));
            if v.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    /// Every binding to `dest` was removed.
    pub fn remove_dest(&mut self, dest: &Dest) {
        for v in self.by_key.values_mut() {
            v.retain(|d| !d.same(dest));
        }
        self.by_key.retain(|_, v| !v.is_empty());
    }

    /// Destinations of a message with routing `keys`; whether any key matched.
    #[inline]
    pub fn route(&self, keys: &[&[u8]], out: &mut Routed) -> bool {
        let mut any = false;
        for &k in keys {
            if let Some(ds) = self.by_key.get(k) {
                any = true;
                for d in ds {
                    out.push(d);
                }
            }
        }
        any
    }
}
