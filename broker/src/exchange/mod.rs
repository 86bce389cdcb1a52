//! Exchanges and their bindings; routing a message to queues.
//!
//! Runs in: the publishing connection's reader (route), any reader (declare/bind/unbind).
//!
//! # Invariants
//! - Routing takes only a read lock on the bindings and releases it before any queue lock
//!   (it returns `Arc<Queue>`s; the caller enqueues).
//! - A queue appears at most once in a routing result, however many bindings match.
//! - A binding is unique by (queue, routing key, arguments), as in RabbitMQ.
use crate::queue::Queue;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use warren_protocol::{FieldTable, FieldValue, ShortStr};

pub mod topic;

/// Exchange type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &[u8]) -> Option<ExchangeKind> {
        Some(match s {
            b"direct" => ExchangeKind::Direct,
            b"fanout" => ExchangeKind::Fanout,
            b"topic" => ExchangeKind::Topic,
            b"headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// A queue binding.
#[derive(Clone)]
pub struct Binding {
    /// Destination queue.
    pub queue: Arc<Queue>,
    /// Binding key.
    pub routing_key: ShortStr,
    /// Binding arguments (used by the headers exchange).
    pub arguments: FieldTable,
}

/// Bindings of one exchange, indexed for its type.
#[derive(Default)]
pub struct Bindings {
    /// All bindings, in creation order.
    pub all: Vec<Binding>,
    /// Direct exchanges: routing key -> queues bound with it.
    by_key: HashMap<ShortStr, Vec<Arc<Queue>>>,
}

/// An exchange.
pub struct Exchange {
    /// Name (empty for the default exchange).
    pub name: ShortStr,
    /// Type.
    pub kind: ExchangeKind,
    /// Declared durable.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Internal: clients may not publish to it.
    pub internal: bool,
    /// Declare arguments as given.
    pub arguments: FieldTable,
    /// Bindings.
    pub bindings: RwLock<Bindings>,
}

impl Exchange {
    pub fn new(
        name: ShortStr,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Arc<Exchange> {
        Arc::new(Exchange {
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            bindings: RwLock::new(Bindings::default()),
        })
    }

    /// Add a binding; false if an identical one exists.
    pub fn bind(&self, b: Binding) -> bool {
        let mut bs = self.bindings.write();
        if bs.all.iter().any(|x| same_binding(x, &b)) {
            return false;
        }
        if self.kind == ExchangeKind::Direct {
            let v = bs.by_key.entry(b.routing_key.clone()).or_default();
            if !v.iter().any(|q| Arc::ptr_eq(q, &b.queue)) {
                v.push(b.queue.clone());
            }
        }
        bs.all.push(b);
        true
    }

    /// Remove a binding; false if there was none.
    pub fn unbind(
        &self,
        queue: &Arc<Queue>,
        routing_key: &ShortStr,
        arguments: &FieldTable,
    ) -> bool {
        let mut bs = self.bindings.write();
        let before = bs.all.len();
        bs.all.retain(|x| {
            !(Arc::ptr_eq(&x.queue, queue)
                && x.routing_key == *routing_key
                && x.arguments == *arguments)
        });
        let removed = bs.all.len() != before;
        if removed {
            bs.rebuild_key_index(self.kind, routing_key);
        }
        removed
    }

    /// Remove every binding to `queue` (queue deleted). Returns true if the exchange is now unused.
    pub fn unbind_queue(&self, queue: &Arc<Queue>) -> bool {
        let mut bs = self.bindings.write();
        let before = bs.all.len();
        bs.all.retain(|x| !Arc::ptr_eq(&x.queue, queue));
        if bs.all.len() != before {
            for v in bs.by_key.values_mut() {
                v.retain(|q| !Arc::ptr_eq(q, queue));
            }
            bs.by_key.retain(|_, v| !v.is_empty());
            return bs.all.is_empty();
        }
        false
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.read().all.is_empty()
    }

    /// Queues a message with `routing_key` (and `headers`, for the headers exchange) goes to.
    #[inline]
    pub fn route(
        &self,
        routing_key: &ShortStr,
        headers: impl FnOnce() -> Option<FieldTable>,
        out: &mut Vec<Arc<Queue>>,
    ) {
        let bs = self.bindings.read();
        match self.kind {
            ExchangeKind::Direct => {
                if let Some(qs) = bs.by_key.get(routing_key) {
                    out.extend(qs.iter().cloned());
                }
            }
            ExchangeKind::Fanout => {
                for b in &bs.all {
                    push_unique(out, &b.queue);
                }
            }
            ExchangeKind::Topic => {
                for b in &bs.all {
                    if topic::matches(b.routing_key.as_bytes(), routing_key.as_bytes()) {
                        push_unique(out, &b.queue);
                    }
                }
            }
            ExchangeKind::Headers => {
                let h = headers().unwrap_or_default();
                for b in &bs.all {
                    if headers_match(&b.arguments, &h) {
                        push_unique(out, &b.queue);
                    }
                }
            }
        }
    }
}

impl Bindings {
    fn rebuild_key_index(&mut self, kind: ExchangeKind, key: &ShortStr) {
        if kind != ExchangeKind::Direct {
            return;
        }
        let qs: Vec<Arc<Queue>> = self
            .all
            .iter()
            .filter(|b| b.routing_key == *key)
            .map(|b| b.queue.clone())
            .fold(Vec::new(), |mut v, q| {
                push_unique(&mut v, &q);
                v
            });
        if qs.is_empty() {
            self.by_key.remove(key);
        } else {
            self.by_key.insert(key.clone(), qs);
        }
    }
}

fn same_binding(a: &Binding, b: &Binding) -> bool {
    Arc::ptr_eq(&a.queue, &b.queue) && a.routing_key == b.routing_key && a.arguments == b.arguments
}

#[inline]
fn push_unique(out: &mut Vec<Arc<Queue>>, q: &Arc<Queue>) {
    if !out.iter().any(|x| Arc::ptr_eq(x, q)) {
        out.push(q.clone());
    }
}

/// Headers exchange matching: `x-match` = `all` (default) or `any`; keys starting `x-` are ignored
/// (RabbitMQ's `all-with-x` / `any-with-x` also compare them). A `V` (void) binding value matches on
/// the key's presence alone.
pub fn headers_match(binding: &FieldTable, headers: &FieldTable) -> bool {
    let mode = binding
        .get("x-match")
        .and_then(|v| v.as_bytes())
        .unwrap_or(b"all");
    let (any, with_x) = match mode {
        b"any" => (true, false),
        b"any-with-x" => (true, true),
        b"all-with-x" => (false, true),
        _ => (false, false),
    };
    let mut considered = binding
        .iter()
        .filter(|(k, _)| k != "x-match" && (with_x || !k.as_bytes().starts_with(b"x-")));
    let check = |(k, v): &(ShortStr, FieldValue)| match headers.iter().find(|(hk, _)| hk == k) {
        Some((_, hv)) => matches!(v, FieldValue::Void) || hv == v,
        None => false,
    };
    if any {
        considered.any(|p| check(p))
    } else {
        considered.all(|p| check(p))
    }
}
