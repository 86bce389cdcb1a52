//! Routing in a vhost: from an exchange name, routing key and properties to the queues a message
//! goes to (exchange-to-exchange bindings, alternate exchanges, CC / BCC).
//!
//! Runs in: the publishing task (a connection reader, an HTTP handler, a queue dead-lettering).
//!
//! # Invariants
//! - Takes topology read locks only and holds none of them when it returns: the caller enqueues
//!   with no vhost lock held. A publish to the queue or exchange its channel looked up last, in
//!   the same names epoch, takes no map lock at all (`Routed::names`).
//! - Each exchange is visited once per message, so exchange cycles neither loop nor duplicate.
use super::{rabbit_type, VHost};
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::memo::RouteMemo;
use crate::exchange::{Exchange, ExchangeKind, Routed};
use crate::lent::Lent;
use bytes::Bytes;
use std::sync::Arc;
use warren_protocol::constants::*;
use warren_protocol::types::SHORTSTR_MAX;
use warren_protocol::FieldTable;
use warren_protocol::{BasicProperties, FieldValue};

/// Bit 13 of the property flags (headers present), as seen in the first flags byte.
const HEADERS_FLAG_HIGH_BYTE: u8 = 0x20;

/// Properties without the BCC header (RabbitMQ removes it before delivery).
fn strip_bcc(properties: Lent<'_>) -> Bytes {
    match BasicProperties::decode(properties.share()) {
        Ok(mut p) => {
            if let Some(h) = &mut p.headers {
                h.0.retain(|(k, _)| k != "BCC");
            }
            p.to_bytes()
        }
        Err(_) => properties.share(),
    }
}

impl VHost {
    /// Route a message published to `exchange`: the queues it goes to end up in `out.queues`.
    /// Follows exchange-to-exchange bindings (each exchange visited once, so cycles neither loop nor
    /// duplicate), alternate exchanges, and the CC / BCC headers (sender-selected distribution).
    /// Returns replacement properties when the BCC header had to be removed before delivery.
    pub fn route(
        &self,
        exchange: &[u8],
        routing_key: &[u8],
        properties: Lent<'_>,
        out: &mut Routed,
    ) -> AmqpResult<Option<Bytes>> {
        self.route_with(exchange, routing_key, properties, out, true)
    }

    /// Routing; with `may_delay`, a delayed-message exchange given an `x-delay` holds the message
    /// (`out.delay_ms` is set, no queue is chosen).
    pub(super) fn route_with(
        &self,
        exchange: &[u8],
        routing_key: &[u8],
        properties: Lent<'_>,
        out: &mut Routed,
        may_delay: bool,
    ) -> AmqpResult<Option<Bytes>> {
        // Only a message with a headers table can carry CC/BCC or match a headers exchange.
        let has_headers = properties.first().is_some_and(|f| f & HEADERS_FLAG_HIGH_BYTE != 0);
        if !has_headers {
            // The same route as the channel's last publish: its queues are still in `out`.
            match out.memo.holds(self.names_at(), exchange, routing_key) {
                Some(Some(e)) => {
                    e.counters.count(true);
                    return Ok(None);
                }
                Some(None) => return Ok(None),
                None => {}
            }
        }
        out.clear();
        let headers =
            if has_headers { BasicProperties::decode(properties.share()).ok().and_then(|p| p.headers) } else { None };
        // Routing keys: the message's, plus CC / BCC ones (a list is built only when there are any).
        let mut cc_keys: Vec<&[u8]> = Vec::new();
        let mut has_bcc = false;
        if let Some(h) = &headers {
            for (k, v) in h.iter() {
                let bcc = k == "BCC";
                if k == "CC" || bcc {
                    let FieldValue::Array(items) = v else {
                        return Err(AmqpError::channel_ids(
                            PRECONDITION_FAILED,
                            format!("invalid message: {{unacceptable_type_in_header,\"{k}\",{}}}", rabbit_type(v)),
                            60,
                            40,
                        ));
                    };
                    if cc_keys.is_empty() {
                        cc_keys.push(routing_key);
                    }
                    // Cut at 255 bytes, as a short string is (binding keys are short strings).
                    cc_keys.extend(items.iter().filter_map(|i| i.as_bytes()).map(|b| &b[..b.len().min(SHORTSTR_MAX)]));
                    has_bcc |= bcc;
                }
            }
        }
        let keys: &[&[u8]] = if cc_keys.is_empty() { std::slice::from_ref(&routing_key) } else { &cc_keys };
        if exchange.is_empty() {
            // One routing key: the channel's cached queue when it is still current.
            let at = self.names_at();
            let cached = match keys {
                [k] => out.names.queue(at, k).cloned(),
                _ => None,
            };
            let at = if let Some(q) = cached {
                out.queues.push(q);
                at
            } else {
                let qs = self.queues.read();
                let at = self.names_at();
                for k in keys {
                    if let Some(q) = qs.get(*k) {
                        if keys.len() == 1 {
                            out.names.keep_queue(at, q);
                        }
                        if !out.queues.iter().any(|x| Arc::ptr_eq(x, q)) {
                            out.queues.push(q.clone());
                        }
                    }
                }
                at
            };
            if !has_headers && !out.queues.is_empty() {
                out.memo.remember(at, None, 0, routing_key);
            }
        } else {
            // The channel's cached exchange when it is still current (taken out and put back,
            // so that no reference count shared with other publishers moves per message).
            let at = self.names_at();
            let start = match out.names.take_exchange(at, exchange) {
                Some(e) => Some((e, at)),
                None => {
                    let exs = self.exchanges.read();
                    let at = self.names_at();
                    exs.get(exchange).map(|e| (e.clone(), at))
                }
            };
            let (start, at) = match start {
                None => {
                    return Err(AmqpError::channel_ids(NOT_FOUND, format!("no {}", self.ex_desc(exchange)), 60, 40))
                }
                Some((e, _)) if e.internal => {
                    return Err(AmqpError::channel_ids(
                        ACCESS_REFUSED,
                        format!("cannot publish to internal {}", self.ex_desc(exchange)),
                        60,
                        40,
                    ))
                }
                Some(found) => found,
            };
            if may_delay && start.kind == ExchangeKind::DelayedMessage {
                if let Some(d) = super::timers::delay_of(headers.as_ref()) {
                    start.counters.count(false);
                    out.delay_ms = Some(d);
                    out.delay_durable = start.durable;
                    out.names.keep_exchange(at, start);
                    return Ok(None);
                }
            }
            // Read before routing (see `RouteMemo`): a change after this read moves it again.
            let version = start.bindings_version();
            self.walk(&start, keys, headers.as_ref(), properties, out);
            if !has_headers && out.via.is_empty() && !out.queues.is_empty() && RouteMemo::may_remember(&start) {
                out.memo.remember(at, Some(&start), version, routing_key);
            }
            // Relaxed adds on this thread's stripe of the exchange's counters.
            start.counters.count(!out.queues.is_empty());
            out.names.keep_exchange(at, start);
        }
        Ok(if has_bcc && !out.queues.is_empty() { Some(strip_bcc(properties)) } else { None })
    }

    /// Breadth-first over exchange destinations and alternate exchanges, each exchange once.
    /// Route a message the broker itself makes (trace copies, events) from one of its internal
    /// exchanges: no CC / BCC, no internal-exchange refusal, no delay. Nothing when the exchange
    /// is missing.
    pub(super) fn route_internal(&self, exchange: &[u8], routing_key: &[u8], properties: Lent<'_>, out: &mut Routed) {
        out.clear();
        let Some(start) = self.exchanges.read().get(exchange).cloned() else { return };
        self.walk(&start, &[routing_key], None, properties, out);
    }

    fn walk(
        &self,
        start: &Arc<Exchange>,
        keys: &[&[u8]],
        headers: Option<&FieldTable>,
        properties: Lent<'_>,
        out: &mut Routed,
    ) {
        let matched = start.route_into(keys, headers, properties, out);
        if out.exchanges.is_empty() && matched {
            return; // the common case: one exchange, queues only
        }
        let mut visited: Vec<Arc<Exchange>> = vec![start.clone()];
        // (exchange, reached as an alternate exchange)
        let mut todo: Vec<(Arc<Exchange>, bool)> = out.exchanges.drain(..).map(|x| (x, false)).collect();
        if !matched {
            todo.extend(self.alternate_of(start).map(|x| (x, true)));
        }
        while let Some((x, alternate)) = todo.pop() {
            if visited.iter().any(|v| Arc::ptr_eq(v, &x)) {
                continue;
            }
            visited.push(x.clone());
            out.via.push((x.name.clone(), alternate));
            let matched = x.route_into(keys, headers, properties, out);
            todo.extend(out.exchanges.drain(..).map(|x| (x, false)));
            if !matched {
                todo.extend(self.alternate_of(&x).map(|x| (x, true)));
            }
        }
    }

    /// The alternate exchange of `x`, if it names one that exists.
    fn alternate_of(&self, x: &Exchange) -> Option<Arc<Exchange>> {
        let name = x.applied.read().alternate.clone()?;
        self.exchanges.read().get(&name).cloned()
    }
}
