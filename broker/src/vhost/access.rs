//! RabbitMQ's access-control table, in one place: for each operation that changes broker state or
//! moves messages, the permissions (configure / write / read, and topic permissions) it needs,
//! and [`Actor`], who asks. The vhost's operations apply it first thing (`Actor::allowed`), for
//! every door alike, so a user refused an operation over AMQP is refused it over HTTP too; each
//! door only words the refusal (`AmqpError` 403) its own way (AMQP: channel.close 403; HTTP:
//! RabbitMQ's 401 / 400 bodies).
//!
//! Runs in: whichever task handles the operation (a connection reader, an HTTP request task).
//!
//! # Invariants
//! - A function returns `Ok` only if every row of RabbitMQ's table for that operation is granted;
//!   the first refused row is returned.
//! - Nothing here allocates unless refusing; the publish check is one branch for a user who may
//!   write everywhere and has no topic permissions.
//! - Alternate and dead-letter exchanges are checked only when the exchange or queue is created
//!   (an equivalent redeclare needs configure only), as in RabbitMQ.
use super::VHost;
use crate::auth::{Access, Grants, Resource};
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::ExchangeKind;
use crate::ids::ConnectionId;
use warren_protocol::{FieldTable, ShortStr};

/// Who asks the core for an operation: a user (its name, its compiled permissions in the vhost,
/// its `impersonator` tag, and its connection, the owner of exclusive queues), or the broker
/// itself (boot import, dead letters), which passes every check.
#[derive(Clone, Copy)]
pub struct Actor<'a> {
    /// The user's name; `None` for the broker itself.
    pub user: Option<&'a str>,
    /// The user's permissions in this vhost; `None` for the broker itself.
    pub grants: Option<&'a Grants>,
    /// Tagged `impersonator`: may publish with any `user_id`.
    pub impersonator: bool,
    /// The connection asking; `None` for a door without one (HTTP, definitions), which owns no
    /// exclusive queue and is not held off others' (as RabbitMQ's management API).
    pub conn: Option<ConnectionId>,
    /// What the connection's trace copies name (its name, user, vhost tracer); `None` for doors
    /// without a connection.
    pub origin: Option<&'a crate::trace::Origin>,
}

impl Actor<'_> {
    /// The broker itself.
    pub const BROKER: Actor<'static> = Actor { user: None, grants: None, impersonator: true, conn: None, origin: None };

    /// Apply one row check of the table (`check(grants)`); the broker passes. A refusal becomes
    /// 403 ACCESS_REFUSED with RabbitMQ's text, logged once: here for doors without a
    /// connection (HTTP), by `Connection::fail` (which closes the channel) for AMQP.
    #[inline]
    pub fn allowed(&self, check: impl FnOnce(&Grants) -> Checked) -> AmqpResult<()> {
        let Some(g) = self.grants else { return Ok(()) };
        check(g).map_err(|r| {
            if self.conn.is_none() {
                tracing::warn!(user = self.user.unwrap_or(""), "{}", r.text);
            }
            AmqpError::Refused { text: format!("ACCESS_REFUSED - {}", r.text) }
        })
    }
}

/// A refused operation: which permission on which resource, and RabbitMQ's AMQP text
/// (`write access to exchange 'x' in vhost '/' refused for user 'u'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The permission missing.
    pub access: Access,
    /// The kind of resource.
    pub resource: Resource,
    /// The resource's name as RabbitMQ shows it (`amq.default` for the default exchange).
    pub name: String,
    /// RabbitMQ's refusal text (without the `ACCESS_REFUSED - ` prefix).
    pub text: String,
}

/// Result of a check.
pub type Checked = Result<(), Refusal>;

/// One row: `access` to the resource `name`.
#[inline]
fn need(g: &Grants, access: Access, resource: Resource, name: &[u8]) -> Checked {
    if g.allows(access, name) {
        return Ok(());
    }
    Err(refusal(g, access, resource, name))
}

#[cold]
fn refusal(g: &Grants, access: Access, resource: Resource, name: &[u8]) -> Refusal {
    let shown = if name.is_empty() { "amq.default".to_string() } else { String::from_utf8_lossy(name).into_owned() };
    Refusal { access, resource, name: shown, text: g.check(access, resource, name).err().unwrap_or_default() }
}

/// queue.declare (not passive): configure on the queue; creating one with a dead-letter exchange
/// also needs read on the queue and write on that exchange.
pub fn queue_declare(g: &Grants, v: &VHost, name: &ShortStr, args: &FieldTable) -> Checked {
    need(g, Access::Configure, Resource::Queue, name.as_bytes())?;
    if let Some(dlx) = args.get("x-dead-letter-exchange").and_then(|a| a.as_bytes()) {
        if v.queue(name).is_none() {
            need(g, Access::Read, Resource::Queue, name.as_bytes())?;
            need(g, Access::Write, Resource::Exchange, dlx)?;
        }
    }
    Ok(())
}

/// queue.delete: configure on the queue.
pub fn queue_delete(g: &Grants, name: &[u8]) -> Checked {
    need(g, Access::Configure, Resource::Queue, name)
}

/// queue.purge, basic.get, basic.consume: read on the queue.
pub fn queue_read(g: &Grants, name: &[u8]) -> Checked {
    need(g, Access::Read, Resource::Queue, name)
}

/// queue.bind / queue.unbind: write on the queue, read on the exchange, and topic read on the
/// binding key.
pub fn queue_bind(g: &Grants, v: &VHost, queue: &[u8], exchange: &ShortStr, key: &ShortStr) -> Checked {
    need(g, Access::Write, Resource::Queue, queue)?;
    need(g, Access::Read, Resource::Exchange, exchange.as_bytes())?;
    topic(g, v, Access::Read, exchange.as_bytes(), key.as_bytes())
}

/// exchange.declare (not passive): configure on the exchange; creating one with an alternate
/// exchange also needs read on it and write on the alternate.
pub fn exchange_declare(g: &Grants, v: &VHost, name: &ShortStr, args: &FieldTable) -> Checked {
    need(g, Access::Configure, Resource::Exchange, name.as_bytes())?;
    if let Some(ae) = args.get("alternate-exchange").and_then(|a| a.as_bytes()) {
        if v.exchange(name).is_none() {
            need(g, Access::Read, Resource::Exchange, name.as_bytes())?;
            need(g, Access::Write, Resource::Exchange, ae)?;
        }
    }
    Ok(())
}

/// exchange.delete: configure on the exchange.
pub fn exchange_delete(g: &Grants, name: &[u8]) -> Checked {
    need(g, Access::Configure, Resource::Exchange, name)
}

/// exchange.bind / exchange.unbind: write on the destination, read on the source, and topic read
/// on the binding key.
pub fn exchange_bind(g: &Grants, v: &VHost, destination: &[u8], source: &ShortStr, key: &ShortStr) -> Checked {
    need(g, Access::Write, Resource::Exchange, destination)?;
    need(g, Access::Read, Resource::Exchange, source.as_bytes())?;
    topic(g, v, Access::Read, source.as_bytes(), key.as_bytes())
}

/// basic.publish: write on the exchange, and topic write on the routing key.
#[inline]
pub fn publish(g: &Grants, v: &VHost, exchange: &[u8], routing_key: &[u8]) -> Checked {
    need(g, Access::Write, Resource::Exchange, exchange)?;
    if g.has_topic_permissions() {
        topic(g, v, Access::Write, exchange, routing_key)?;
    }
    Ok(())
}

/// Topic authorisation (RabbitMQ's `check_write_permitted_on_topic` / `..._read_...`): when the
/// user has a topic permission on `exchange` and it is a topic exchange, `key` (a published
/// routing key for `Write`, a binding key for `Read`) must match its expression. A missing
/// exchange is not checked here: the operation itself reports it (404), as in RabbitMQ; neither
/// is an internal one on publish (the publish is refused for that first).
pub fn topic(g: &Grants, v: &VHost, access: Access, exchange: &[u8], key: &[u8]) -> Checked {
    if !g.has_topic_permission_for(exchange) {
        return Ok(());
    }
    match v.exchange(exchange) {
        Some(x) if x.kind == ExchangeKind::Topic && !(access == Access::Write && x.internal) => {
            g.check_topic(access, exchange, key).map_err(|text| Refusal {
                access,
                resource: Resource::Exchange,
                name: String::from_utf8_lossy(exchange).into_owned(),
                text,
            })
        }
        _ => Ok(()),
    }
}

/// Stream protocol publish: write on the stream (a queue).
pub fn stream_write(g: &Grants, name: &[u8]) -> Checked {
    need(g, Access::Write, Resource::Queue, name)
}
