//! The one publish path: route a message, check what the core checks on every publish, build the
//! shared `Message`, enqueue it into every queue it reaches. AMQP's basic.publish, the HTTP API's
//! publish, dead-lettering (and, later, delayed delivery and shovels) all come through here; each
//! door only turns the [`Outcome`] into its own answer (basic.return and confirms, a JSON body).
//!
//! Runs in: the publishing task (a connection reader, an HTTP handler, a queue's dead-lettering
//! after its lock is released).
//!
//! # Invariants
//! - Nothing is enqueued until every check passed: [`VHost::prepare`] routes and checks, and only
//!   [`VHost::enqueue`] touches queues (a transaction prepares at publish and enqueues at commit).
//! - One `Message` (one shared allocation) is shared by every queue the message reaches (no body copy).
//! - `Outcome::durable_lsn` is the highest store LSN the message's records need: a door that
//!   confirms or answers "routed" waits for that LSN to be fsynced first.
use super::access::{self, Actor};
use super::VHost;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::Routed;
use crate::lent::Lent;
use crate::message::Message;
use crate::queue::deadletter::{self, DeadLetter};
use crate::queue::QueueHost;
use crate::queue::{Enqueued, Queue};
use crate::trace::Traced;
use bytes::Bytes;
use std::sync::Arc;
use warren_protocol::constants::PRECONDITION_FAILED;
use warren_protocol::BasicProperties;

/// Bit 4 of the property flags (user-id present), as seen in the second flags byte.
const USER_ID_FLAG_LOW_BYTE: u8 = 0x10;

/// A message as a door hands it to the core: lent, not given (the AMQP door's lies in its read
/// buffer); the core copies what it keeps, or shares it ([`Lent::share`]) when it is large.
#[derive(Clone, Copy)]
pub struct Publish<'a> {
    /// Exchange name (`""` = the default exchange); at most 255 bytes.
    pub exchange: &'a [u8],
    /// Routing key; at most 255 bytes.
    pub routing_key: &'a [u8],
    /// Raw content-header properties (validated by the door's codec).
    pub properties: Lent<'a>,
    /// Body.
    pub body: Lent<'a>,
    /// Build the message even when no queue takes it (mandatory: the door returns it).
    pub mandatory: bool,
    /// The publishing channel's number (trace copies name it); 0 for doors without channels.
    pub channel: u16,
}

impl<'a> Publish<'a> {
    /// A publish of owned parts from a door without channels (HTTP, dead letters, the broker's
    /// own events and trace copies): not mandatory, channel 0.
    pub fn of(exchange: &'a [u8], routing_key: &'a [u8], properties: &'a Bytes, body: &'a Bytes) -> Publish<'a> {
        Publish {
            exchange,
            routing_key,
            properties: Lent::all(properties),
            body: Lent::all(body),
            mandatory: false,
            channel: 0,
        }
    }
}

/// What enqueueing did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Some queue took the message.
    pub routed: bool,
    /// Some queue refused it (`x-overflow: reject-publish`): a confirm becomes a nack.
    pub rejected: bool,
    /// The store LSN its records need before it may be reported durable (0 = none written).
    pub durable_lsn: u64,
}

impl Outcome {
    /// Mandatory and nowhere to go: the door returns it (basic.return).
    pub fn unroutable(&self) -> bool {
        !self.routed && !self.rejected
    }
}

impl VHost {
    /// basic.publish's permissions: write on the exchange, and topic write on the routing key.
    /// [`VHost::prepare`] applies them; the AMQP door calls this first on its own because
    /// direct reply-to rewriting sits between the check and routing, as in RabbitMQ.
    #[inline]
    pub fn authorize_publish(&self, who: &Actor, exchange: &[u8], routing_key: &[u8]) -> AmqpResult<()> {
        who.allowed(|g| access::publish(g, self, exchange, routing_key))
    }

    /// Check `who` may publish `p` ([`VHost::authorize_publish`]), then [`VHost::route_checked`].
    pub fn prepare(&self, who: &Actor, p: Publish<'_>, routed: &mut Routed) -> AmqpResult<Option<Message>> {
        self.authorize_publish(who, p.exchange, p.routing_key)?;
        self.route_checked(who, p, routed)
    }

    /// Route `p` and check it (missing exchange 404, bad CC / BCC 406, `user_id` 406, bad
    /// `expiration` 406); `routed.queues` ends up holding its queues. Returns the message, or
    /// `None` when no queue takes it and it is not mandatory (nothing is built then). Publish
    /// permissions are [`VHost::prepare`]'s.
    pub fn route_checked(&self, who: &Actor, p: Publish<'_>, routed: &mut Routed) -> AmqpResult<Option<Message>> {
        let replaced = self.route(p.exchange, p.routing_key, p.properties, routed)?;
        // rabbitmq-compat: a `user_id` property must name the authenticated user unless the user
        // is tagged `impersonator` (checked after the exchange lookup, as RabbitMQ does). The
        // properties are decoded only when the flag says user_id is there.
        if let (false, Some(user)) = (who.impersonator, who.user) {
            if p.properties.get(1).is_some_and(|f| f & USER_ID_FLAG_LOW_BYTE != 0) {
                check_user_id(user, p.properties).inspect_err(|_| routed.clear())?;
            }
        }
        // Firehose: a user's publish is copied (dead letters and the tracer's own copies are not).
        if self.tracer.on() && who.user.is_some() && Traced::traceable(p.exchange) {
            let properties = replaced.as_ref().map_or(p.properties, Lent::all);
            self.trace_publish(who, &p, properties, &routed.queues);
        }
        if self.journal.on() {
            self.journal_publish(who, &p, routed);
        }
        if let Some(delay) = routed.delay_ms {
            // Held by a delayed-message exchange: built (and checked) now, routed when due.
            // rabbitmq-compat: a held message is never returned (mandatory); the plugin returns
            // every held mandatory message at once (312 NO_ROUTE) and still routes it when due.
            let msg = Message::lent(p.exchange, p.routing_key, p.properties, p.body)
                .map_err(|why| AmqpError::channel_ids(PRECONDITION_FAILED, why, 60, 40))?;
            routed.held_lsn = self.hold(delay, msg, routed.delay_durable);
            return Ok(None);
        }
        if routed.queues.is_empty() && !p.mandatory {
            return Ok(None);
        }
        let properties = replaced.as_ref().map_or(p.properties, Lent::all);
        match Message::lent(p.exchange, p.routing_key, properties, p.body) {
            Ok(m) => Ok(Some(m)),
            Err(why) => {
                routed.clear();
                Err(AmqpError::channel_ids(PRECONDITION_FAILED, why, 60, 40))
            }
        }
    }

    /// Message trace: the publish of `p` (held, or routed to `routed.queues`).
    fn journal_publish(&self, who: &Actor, p: &Publish, routed: &Routed) {
        let lossy = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
        self.journal.record(&p.properties, &self.clock, || match routed.delay_ms {
            Some(delay_ms) => crate::journal::Event::Delayed { exchange: lossy(p.exchange), delay_ms },
            None => crate::journal::Event::Published {
                exchange: lossy(p.exchange),
                routing_key: lossy(p.routing_key),
                queues: routed.queues.iter().map(|q| crate::journal::owned(&q.name)).collect(),
                via: routed.via.iter().map(|(x, alt)| (crate::journal::owned(x), *alt)).collect(),
                connection: who.origin.map_or_else(|| Arc::from(""), |o| o.connection.clone()),
                channel: p.channel,
                user: who.user.unwrap_or_default().to_string(),
            },
        });
    }

    /// Enqueue `msg` into `queues` (drained), skipping those `skip` names.
    pub fn enqueue(queues: &[Arc<Queue>], msg: &Message, skip: impl Fn(&Queue) -> bool) -> Outcome {
        // After the publishes this thread staged (a queue takes one channel's in order).
        crate::queue::staged::flush();
        let mut out = Outcome::default();
        for q in queues {
            if skip(q) {
                continue;
            }
            match q.publish_durably(msg.clone(), &mut out.durable_lsn) {
                Enqueued::Accepted => out.routed = true,
                Enqueued::Rejected => out.rejected = true,
                Enqueued::Gone => {}
            }
        }
        out
    }

    /// As [`VHost::enqueue`], for a door that waits for no outcome (no confirm, not mandatory,
    /// no transaction): inside a reader's batch, consecutive such publishes to the same queues
    /// are enqueued together, one lock of each queue per run ([`crate::queue::staged`]).
    pub fn enqueue_unobserved(queues: &[Arc<Queue>], msg: Message) {
        crate::queue::staged::stage(queues, msg);
    }

    /// Publish a message the broker itself makes (trace copies, events) to one of its internal
    /// exchanges, which clients may not publish to: routed by [`VHost::route_internal`], never
    /// traced. Returns whether a queue took it.
    pub fn publish_internal(&self, p: Publish<'_>) -> bool {
        let mut routed = Routed::default();
        self.route_internal(p.exchange, p.routing_key, p.properties, &mut routed);
        if routed.queues.is_empty() {
            return false;
        }
        match Message::lent(p.exchange, p.routing_key, p.properties, p.body) {
            Ok(m) => VHost::enqueue(&routed.queues, &m, |_| false).routed,
            Err(_) => false,
        }
    }

    /// [`VHost::prepare`] then [`VHost::enqueue`]: the whole publish, for doors that do not
    /// defer (HTTP, dead letters).
    pub fn publish(&self, who: &Actor, p: Publish<'_>) -> AmqpResult<(Option<Message>, Outcome)> {
        let mut routed = Routed::default();
        let msg = self.prepare(who, p, &mut routed)?;
        let out = match &msg {
            Some(m) => VHost::enqueue(&routed.queues, m, |_| false),
            // Held by a delayed-message exchange: durable once its record is (if it has one).
            None => Outcome { durable_lsn: routed.held_lsn, ..Default::default() },
        };
        Ok((msg, out))
    }
}

/// A publish's `user_id` must be the authenticated user's name. 406 with RabbitMQ's text
/// otherwise.
fn check_user_id(user: &str, properties: Lent<'_>) -> AmqpResult<()> {
    // The properties were validated at the header, so this decode does not fail in practice.
    let Ok(props) = BasicProperties::decode(properties.share()) else {
        return Ok(());
    };
    match props.user_id {
        Some(id) if id.as_bytes() != user.as_bytes() => Err(AmqpError::channel_ids(
            PRECONDITION_FAILED,
            format!("user_id property set to '{}' but authenticated user was '{user}'", id.to_str_lossy()),
            60,
            40,
        )),
        _ => Ok(()),
    }
}

/// What a queue asks of its vhost. Dead letters take the one publish path, as the broker (no
/// user check), with RabbitMQ's cycle rule applied per target queue; expiry timers go to the
/// vhost's timer heap.
impl QueueHost for VHost {
    fn schedule_expiry(&self, q: std::sync::Weak<crate::queue::Queue>, at_ms: u64) {
        self.expire_at(q, at_ms);
    }

    fn publish_dead_letter(&self, dl: DeadLetter, from: &str) {
        let DeadLetter { msg, deaths, reason } = dl;
        let (properties, body) = (msg.properties(), msg.body_owned());
        let p = Publish::of(msg.exchange_bytes(), msg.routing_key_bytes(), &properties, &body);
        let mut routed = Routed::default();
        match self.prepare(&Actor::BROKER, p, &mut routed) {
            Ok(Some(m)) => {
                VHost::enqueue(&routed.queues, &m, |q| deadletter::skips(reason, &deaths, q.name.as_bytes()));
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("dead letter of {from} dropped: {}", e.reply_text()),
        }
    }
}
