//! Queue rules of a vhost: declare (names, equivalence, exclusivity, arguments, policies), delete
//! (if-unused / if-empty), and the exclusive-use check every door applies.
//!
//! Runs in: the task of whichever door asks (a connection reader, an HTTP handler, boot import).
//!
//! # Invariants
//! - A queue is created under the queues write lock after a re-check, so two racing declares
//!   create it once.
//! - An exclusive queue is usable only by its owning connection (405 for every other).
use super::access::{self, Actor};
use super::exchanges::first_arg_difference;
use super::{Declared, QueueSpec, VHost};
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::Dest;
use crate::ids::ConnectionId;
use crate::queue::consumer::cancel_by_broker;
use crate::queue::Queue;
use std::sync::Arc;
use warren_protocol::constants::*;
use warren_protocol::ShortStr;

impl VHost {
    /// A queue `who` may read from (basic.get, basic.consume, the HTTP API's get): read
    /// permission, then it must exist (404) and not be another connection's exclusive queue (405).
    pub fn readable_queue(&self, who: &Actor, name: &ShortStr) -> AmqpResult<Arc<Queue>> {
        who.allowed(|g| access::queue_read(g, name.as_bytes()))?;
        self.usable_queue(name, who.conn)
    }

    /// queue.purge: read permission, then the queue (404, 405); returns the messages purged.
    pub fn purge_queue(&self, who: &Actor, name: &ShortStr) -> AmqpResult<u32> {
        self.readable_queue(who, name)?.purge()
    }

    /// queue.delete: configure permission, then the queue (`None` when it does not exist, which
    /// each door answers its own way), exclusivity (405), the if-unused / if-empty conditions
    /// (406). Returns the messages it held and the consumers of channel `deferred` (see
    /// [`VHost::delete_queue_deferring`]).
    pub fn delete_queue_checked(
        &self,
        who: &Actor,
        name: &ShortStr,
        if_unused: bool,
        if_empty: bool,
        deferred: Option<&Arc<crate::queue::consumer::ChannelShared>>,
    ) -> AmqpResult<Option<(u32, Vec<Arc<crate::queue::consumer::Consumer>>)>> {
        who.allowed(|g| access::queue_delete(g, name.as_bytes()))?;
        if self.queue(name).is_none() {
            return Ok(None);
        }
        let q = self.usable_queue(name, who.conn)?;
        VHost::check_delete_conditions(&q, if_unused, if_empty)?;
        Ok(Some(self.delete_queue_deferring(&q, deferred, who.user)))
    }

    /// A queue that exists and that `conn` may use (exclusive queues belong to their connection;
    /// a door without a connection, `None`, is not held off them, as RabbitMQ's management API).
    pub fn usable_queue(&self, name: &ShortStr, conn: Option<ConnectionId>) -> AmqpResult<Arc<Queue>> {
        let q =
            self.queue(name).ok_or_else(|| AmqpError::channel(NOT_FOUND, format!("no {}", self.q_desc(name)), None))?;
        check_exclusive(&q, conn)?;
        Ok(q)
    }

    /// queue.declare, all of RabbitMQ's checks, in its order: the `amq.` name rule, configure
    /// permission (and, creating one with a dead-letter exchange, read on it and write on that
    /// exchange), arguments, then existence, exclusivity and equivalence. `who.conn` owns an
    /// exclusive queue (a door without a connection can declare none).
    pub fn declare_queue(&self, who: &Actor, d: &QueueSpec) -> AmqpResult<Declared> {
        let (name, conn) = (d.name.clone(), who.conn);
        VHost::check_queue_name(d)?;
        if !d.passive {
            who.allowed(|g| access::queue_declare(g, self, &name, &d.arguments))?;
        }
        if !d.passive {
            if let Some(arg) = crate::queue::stream::unsupported_argument(&d.arguments) {
                return Err(AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("invalid arg '{arg}' for {} of queue type rabbit_stream_queue", self.q_desc(&name)),
                    None,
                ));
            }
            crate::queue::settings::validate_queue_args(&d.arguments).map_err(|(arg, why)| {
                AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("invalid arg '{arg}' for {}: {why}", self.q_desc(&name)),
                    None,
                )
            })?;
        }
        // rabbitmq-compat: an exclusive queue is never durable, whatever the client asked (so a
        // redeclare with either durable value is equivalent).
        let durable = d.durable && !d.exclusive;
        if let Some(q) = self.queue(&name) {
            check_exclusive(&q, conn)?;
            // rabbitmq-compat: a (non-passive) declare must agree on exclusivity, checked before
            // any other equivalence: 405 with the same text as another connection's queue.
            if !d.passive && q.exclusive_owner.is_some() != d.exclusive {
                return Err(exclusive_locked(&q));
            }
            if !d.passive {
                let ineq = |arg: &str, got: String, cur: String| {
                    AmqpError::channel(
                        PRECONDITION_FAILED,
                        format!(
                            "inequivalent arg '{arg}' for {}: received {got} but current is {cur}",
                            self.q_desc(&name)
                        ),
                        None,
                    )
                };
                if q.durable != durable {
                    return Err(ineq("durable", format!("'{durable}'"), format!("'{}'", q.durable)));
                }
                if q.auto_delete != d.auto_delete {
                    return Err(ineq("auto_delete", format!("'{}'", d.auto_delete), format!("'{}'", q.auto_delete)));
                }
                if let Some((k, got, cur)) =
                    first_arg_difference(&d.arguments, &q.arguments, crate::queue::settings::QUEUE_EQUIV_ARGS)
                {
                    return Err(ineq(&k, got, cur));
                }
            }
            // As RabbitMQ: any declare, passive included, renews an x-expires lease.
            q.touch();
            let (message_count, mut consumer_count) = q.counts();
            if q.kind == crate::queue::settings::QueueType::Stream {
                // rabbitmq-compat: RabbitMQ 3.10 reports no consumers of a stream on declare-ok.
                consumer_count = 0;
            }
            return Ok(Declared { queue: q, message_count, consumer_count, created: false });
        }
        if d.passive {
            return Err(AmqpError::channel(NOT_FOUND, format!("no {}", self.q_desc(&name)), None));
        }
        if crate::queue::settings::QueueType::of(&d.arguments) != crate::queue::settings::QueueType::Classic {
            // As RabbitMQ: replicated queue types must be durable, shared and not auto-deleted.
            let bad = if d.exclusive {
                Some("exclusive-owner")
            } else if !d.durable {
                Some("non-durable")
            } else if d.auto_delete {
                Some("auto-delete")
            } else {
                None
            };
            if let Some(p) = bad {
                return Err(AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("invalid property '{p}' for {}", self.q_desc(&name)),
                    None,
                ));
            }
        }
        let mut qs = self.queues_write();
        // Re-check under the write lock: another connection may have won the race.
        if qs.contains_key(&name) {
            drop(qs);
            return self.declare_queue(who, &QueueSpec { passive: false, ..d.clone() });
        }
        if let Some(max) = self.limits().max_queues {
            if qs.len() as u64 >= max {
                return Err(AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("cannot declare queue '{name}': queue limit in vhost '{}' ({max}) is reached", self.name),
                    None,
                ));
            }
        }
        let owner = match (d.exclusive, conn) {
            (false, _) => None,
            (true, Some(c)) => Some(c),
            (true, None) => {
                return Err(AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("{} cannot be exclusive without a connection", self.q_desc(&name)),
                    None,
                ))
            }
        };
        let quorum = crate::queue::settings::QueueType::of(&d.arguments) == crate::queue::settings::QueueType::Quorum;
        let policy = self.policy_for(|p| p.matches_queue(&name.to_str_lossy(), quorum));
        let operator_policy = self.operator_policy_for(&name.to_str_lossy(), quorum);
        let q = Queue::in_vhost(
            name.clone(),
            &self.name,
            self.me.clone(),
            self.clock.clone(),
            self.journal.clone(),
            self.store.clone(),
            durable,
            owner,
            d.auto_delete,
            d.arguments.clone(),
            policy,
            operator_policy,
        );
        qs.insert(name, q.clone());
        drop(qs);
        self.changed(durable);
        self.events.emit("queue.created", |f| {
            f.by(who.user)
                .bool("exclusive", d.exclusive)
                .table("arguments", &d.arguments)
                .bool("auto_delete", d.auto_delete)
                .bool("durable", durable)
                .str("name", q.name.as_bytes())
                .str("vhost", &self.name);
        });
        Ok(Declared { queue: q, message_count: 0, consumer_count: 0, created: true })
    }

    /// Remove a queue: unbind it everywhere, cancel its consumers. Returns its ready message count.
    pub fn delete_queue(&self, q: &Arc<Queue>) -> u32 {
        self.delete_queue_deferring(q, None, None).0
    }

    /// queue.declare's name rule (checked before permissions, as RabbitMQ does): a client may not
    /// create a queue named `amq.*` (403). Passive declares and server-named queues are not checked.
    fn check_queue_name(d: &QueueSpec) -> AmqpResult<()> {
        if !d.passive && !d.server_named && d.name.as_bytes().starts_with(b"amq.") {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format!("queue name '{}' contains reserved prefix 'amq.*'", d.name),
                None,
            ));
        }
        Ok(())
    }

    /// queue.delete's conditions (every door's): with `if_unused`, 406 while it has consumers;
    /// with `if_empty`, 406 while it holds messages.
    pub fn check_delete_conditions(q: &Queue, if_unused: bool, if_empty: bool) -> AmqpResult<()> {
        let (messages, consumers) = q.counts();
        if if_unused && consumers > 0 {
            return Err(AmqpError::channel(PRECONDITION_FAILED, format!("{} in use", q.describe()), None));
        }
        if if_empty && messages > 0 {
            return Err(AmqpError::channel(PRECONDITION_FAILED, format!("{} not empty", q.describe()), None));
        }
        Ok(())
    }

    /// Delete a queue, cancelling its consumers except those on channel `deferred` (the channel
    /// that asked for the deletion), which are returned for the caller to cancel with
    /// [`cancel_by_broker`] once it has sent queue.delete-ok. `by`: the user who asked (`None`:
    /// the broker, for auto-delete, expiry and exclusive queues).
    pub fn delete_queue_deferring(
        &self,
        q: &Arc<Queue>,
        deferred: Option<&Arc<crate::queue::consumer::ChannelShared>>,
        by: Option<&str>,
    ) -> (u32, Vec<Arc<crate::queue::consumer::Consumer>>) {
        {
            let mut qs = self.queues_write();
            match qs.get(&q.name) {
                Some(x) if Arc::ptr_eq(x, q) => {
                    qs.remove(&q.name);
                }
                _ => return (0, Vec::new()),
            }
        }
        self.unbind_everywhere(&Dest::Queue(q.clone()), by);
        self.changed(q.durable && q.exclusive_owner.is_none());
        let (consumers, n) = q.mark_deleted();
        self.events.emit("queue.deleted", |f| {
            f.by(by).str("name", q.name.as_bytes()).str("vhost", &self.name);
        });
        let mut later = Vec::new();
        for c in consumers {
            if deferred.is_some_and(|ch| Arc::ptr_eq(ch, &c.channel)) {
                later.push(c);
            } else {
                cancel_by_broker(&c);
            }
        }
        self.retired.lock().add(&q.totals());
        (n, later)
    }
}

/// 405 when `q` is exclusive to another connection.
fn check_exclusive(q: &Queue, conn: Option<ConnectionId>) -> AmqpResult<()> {
    match (q.exclusive_owner, conn) {
        (Some(owner), Some(conn)) if owner != conn => Err(exclusive_locked(q)),
        _ => Ok(()),
    }
}

/// RabbitMQ's 405 for a queue this connection may not use exclusively (one text for every case).
fn exclusive_locked(q: &Queue) -> AmqpError {
    AmqpError::channel(
        RESOURCE_LOCKED,
        format!(
            "cannot obtain exclusive access to locked {}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
            q.describe()
        ),
        None,
    )
}
