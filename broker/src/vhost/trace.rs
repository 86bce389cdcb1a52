//! A vhost's firehose tracer (`crate::trace`): switching it on and off, and its task, which
//! publishes the trace copies to `amq.rabbitmq.trace` through the one publish path, as the broker.
//!
//! Runs in: the door that switches tracing (HTTP handler, boot); the tracer task (a tokio task per
//! tracing vhost, ended when tracing is switched off or the vhost is gone).
//!
//! # Invariants
//! - At most one tracer task runs per vhost; copies are published in the order they were made.
//! - The task holds only a `Weak` to its vhost: a deleted vhost's task ends.
use super::{Publish, VHost};
use crate::trace::{Origin, TraceCopy, Traced, TRACE_EXCHANGE};
use warren_protocol::ShortStr;

impl VHost {
    /// Whether this vhost traces (the management API's `tracing`).
    pub fn tracing(&self) -> bool {
        self.tracer.on()
    }

    /// Switch firehose tracing on or off (`rabbitmqctl trace_on` / `trace_off`, the `tracing` flag
    /// of `PUT /api/vhosts/{vhost}`). Needs a tokio runtime to turn it on (every door has one).
    pub fn set_tracing(&self, on: bool) {
        if !on {
            if self.tracer.on() {
                tracing::info!("tracing stopped for vhost '{}'", self.name);
            }
            self.tracer.set(None);
            return;
        }
        if self.tracer.running() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("tracing for vhost '{}' not started: no runtime", self.name);
            return;
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<TraceCopy>(crate::trace::TRACE_BACKLOG);
        let me = self.me.clone();
        rt.spawn(async move {
            while let Some(c) = rx.recv().await {
                let Some(v) = me.upgrade() else { return };
                v.publish_trace_copy(c);
            }
        });
        self.tracer.set(Some(tx));
        tracing::info!("tracing started for vhost '{}'", self.name);
    }

    fn publish_trace_copy(&self, c: TraceCopy) {
        self.publish_internal(Publish::of(TRACE_EXCHANGE.as_bytes(), c.routing_key.as_bytes(), &c.properties, &c.body));
    }
}

impl VHost {
    /// Copy a publish to the tracer (tracing is on): `who`'s connection names it, or, for a door
    /// without one (HTTP), the user alone.
    /// `properties`: as delivered (without BCC).
    pub(super) fn trace_publish(
        &self,
        who: &super::Actor,
        p: &Publish,
        properties: crate::lent::Lent<'_>,
        queues: &[std::sync::Arc<crate::queue::Queue>],
    ) {
        let m = Traced {
            exchange: p.exchange,
            routing_key: p.routing_key,
            properties,
            sent_properties: p.properties,
            body: p.body,
        };
        let mut routed: Vec<ShortStr> = queues.iter().map(|q| q.name.clone()).collect();
        routed.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        routed.dedup();
        match who.origin {
            Some(o) => o.published(&m, p.channel, who.user, &routed),
            // rabbitmq-compat: RabbitMQ's HTTP publish goes through an internal connection; Warren's
            // copies of it name no connection (an empty `connection` header, channel 0).
            None => Origin {
                tracer: self.tracer.clone(),
                events: self.events.clone(),
                vhost: self.name.clone(),
                connection: std::sync::Arc::from(""),
                user: who.user.unwrap_or("").to_string(),
            }
            .published(&m, p.channel, who.user, &routed),
        }
    }
}
