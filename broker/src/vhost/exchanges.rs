//! Exchange and binding rules of a vhost: declare (types, equivalence, reserved names), delete
//! (if-unused, auto-delete), bind and unbind (queue and exchange destinations, headers
//! arguments), and RabbitMQ's wording of argument differences.
//!
//! Runs in: the task of whichever door asks (a connection reader, an HTTP handler, boot import).
//!
//! # Invariants
//! - An auto-delete exchange goes with its last binding (as source).
//! - A durable change requests a definitions write before the door reports it.
use super::access::{self, Actor};
use super::{ExchangeSpec, VHost};
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Binding, Dest, Exchange, ExchangeKind};
use std::sync::Arc;
use warren_protocol::constants::*;
use warren_protocol::FieldValue;
use warren_protocol::{FieldTable, ShortStr};

impl VHost {
    /// exchange.declare: configure permission first (and, creating one with an alternate
    /// exchange, read on it and write on the alternate), then RabbitMQ's rules.
    pub fn declare_exchange(&self, who: &Actor, d: &ExchangeSpec) -> AmqpResult<()> {
        let name = &d.name;
        if !d.passive {
            who.allowed(|g| access::exchange_declare(g, self, name, &d.arguments))?;
        }
        if name.is_empty() {
            // spec: the default exchange can be declared passively only... RabbitMQ refuses both.
            return Err(AmqpError::channel(ACCESS_REFUSED, "operation not permitted on the default exchange", None));
        }
        if !d.passive {
            let Some(kind) = ExchangeKind::parse(d.kind.as_bytes()) else {
                // As RabbitMQ: an unknown type closes the connection, even on a redeclare.
                return Err(AmqpError::connection(
                    COMMAND_INVALID,
                    format!("unknown exchange type '{}'", d.kind),
                    None,
                ));
            };
            kind.validate_args(&d.arguments).map_err(|why| AmqpError::channel(PRECONDITION_FAILED, why, None))?;
            if let Some(v) = d.arguments.get("alternate-exchange") {
                if v.as_bytes().is_none() {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        format!(
                            "invalid type '{}' for arg 'alternate-exchange' in {}",
                            rabbit_type(v),
                            self.ex_desc(name)
                        ),
                        None,
                    ));
                }
            }
        }
        if let Some(ex) = self.exchange(name) {
            if d.passive {
                return Ok(());
            }
            let ineq = |arg: &str, got: String, cur: String| {
                AmqpError::channel(
                    PRECONDITION_FAILED,
                    format!("inequivalent arg '{arg}' for {}: received {got} but current is {cur}", self.ex_desc(name)),
                    None,
                )
            };
            if ex.kind.name().as_bytes() != d.kind.as_bytes() {
                return Err(ineq("type", format!("'{}'", d.kind), format!("'{}'", ex.kind.name())));
            }
            if ex.durable != d.durable {
                return Err(ineq("durable", format!("'{}'", d.durable), format!("'{}'", ex.durable)));
            }
            if ex.auto_delete != d.auto_delete {
                return Err(ineq("auto_delete", format!("'{}'", d.auto_delete), format!("'{}'", ex.auto_delete)));
            }
            if ex.internal != d.internal {
                return Err(ineq("internal", format!("'{}'", d.internal), format!("'{}'", ex.internal)));
            }
            if let Some((k, got, cur)) = first_arg_difference(&d.arguments, &ex.arguments, EXCHANGE_EQUIV_ARGS) {
                return Err(ineq(&k, got, cur));
            }
            return Ok(());
        }
        if d.passive {
            return Err(AmqpError::channel(NOT_FOUND, format!("no {}", self.ex_desc(name)), None));
        }
        if name.as_bytes().starts_with(b"amq.") {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format!("exchange name '{name}' contains reserved prefix 'amq.*'"),
                None,
            ));
        }
        let kind = ExchangeKind::parse(d.kind.as_bytes()).ok_or_else(|| {
            // rabbitmq-compat: RabbitMQ closes the connection with 503 for an unknown type.
            AmqpError::connection(COMMAND_INVALID, format!("unknown exchange type '{}'", d.kind), None)
        })?;
        let mut exs = self.exchanges_write();
        let mut created = false;
        exs.entry(name.clone()).or_insert_with(|| {
            created = true;
            Exchange::new(
                name.clone(),
                kind,
                d.durable,
                d.auto_delete,
                d.internal,
                d.arguments.clone(),
                self.policy_for(|p| p.matches_exchange(&name.to_str_lossy())),
            )
        });
        drop(exs);
        self.changed(d.durable);
        if created {
            self.events.emit("exchange.created", |f| {
                f.by(who.user)
                    .str("policy", "")
                    .table("arguments", &d.arguments)
                    .bool("internal", d.internal)
                    .bool("auto_delete", d.auto_delete)
                    .bool("durable", d.durable)
                    .str("type", d.kind.as_bytes())
                    .str("name", name.as_bytes())
                    .str("vhost", &self.name);
            });
        }
        Ok(())
    }

    /// exchange.delete.
    pub fn delete_exchange(&self, who: &Actor, name: &ShortStr, if_unused: bool) -> AmqpResult<()> {
        who.allowed(|g| access::exchange_delete(g, name.as_bytes()))?;
        if name.is_empty() {
            return Err(AmqpError::channel(ACCESS_REFUSED, "operation not permitted on the default exchange", None));
        }
        if name.as_bytes().starts_with(b"amq.") {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format!("deletion of system {} not allowed", self.ex_desc(name)),
                None,
            ));
        }
        let Some(ex) = self.exchange(name) else {
            // RabbitMQ 3.x answers delete-ok for a missing exchange.
            return Ok(());
        };
        if if_unused && ex.has_bindings() {
            return Err(AmqpError::channel(PRECONDITION_FAILED, format!("{} in use", self.ex_desc(name)), None));
        }
        self.remove_exchange(&ex, who.user);
        Ok(())
    }

    /// Remove `ex`, its bindings as a source, and every binding to it (cascading auto-deletes);
    /// `by` asked for it (`None`: the broker).
    pub(super) fn remove_exchange(&self, ex: &Arc<Exchange>, by: Option<&str>) {
        {
            let mut exs = self.exchanges_write();
            match exs.get(&ex.name) {
                Some(x) if Arc::ptr_eq(x, ex) => {
                    exs.remove(&ex.name);
                }
                _ => return,
            }
        }
        ex.clear_bindings();
        self.unbind_everywhere(&Dest::Exchange(ex.clone()), by);
        self.changed(ex.durable);
        self.events.emit("exchange.deleted", |f| {
            f.by(by).str("name", ex.name.as_bytes()).str("vhost", &self.name);
        });
    }

    /// Remove every binding leading to `dest`; auto-delete exchanges left without bindings go too.
    pub(super) fn unbind_everywhere(&self, dest: &Dest, by: Option<&str>) {
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for ex in exchanges {
            let (gone, empty) = ex.unbind_dest(dest);
            for b in &gone {
                self.binding_event("binding.deleted", by, &ex, b);
            }
            if empty && ex.auto_delete {
                self.remove_exchange(&ex, None);
            }
        }
    }

    /// exchange.bind: route from `source` to `destination` as well.
    pub fn bind_exchange(
        &self,
        who: &Actor,
        destination: &ShortStr,
        source: &ShortStr,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> AmqpResult<()> {
        who.allowed(|g| access::exchange_bind(g, self, destination.as_bytes(), source, &routing_key))?;
        let dst = self.bindable_exchange(destination)?;
        let src = self.bindable_exchange(source)?;
        check_binding_args(&src, &routing_key, &arguments)?;
        let durable = src.durable && dst.durable;
        let b = Binding { dest: Dest::Exchange(dst), routing_key, arguments };
        if src.bind(b.clone()) {
            self.binding_event("binding.created", who.user, &src, &b);
        }
        self.changed(durable);
        Ok(())
    }

    /// exchange.unbind.
    pub fn unbind_exchange(
        &self,
        who: &Actor,
        destination: &ShortStr,
        source: &ShortStr,
        routing_key: &ShortStr,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        who.allowed(|g| access::exchange_bind(g, self, destination.as_bytes(), source, routing_key))?;
        // As RabbitMQ: unbinding where the source or destination does not exist is not an error.
        let (Some(dst), Some(src)) = (self.unbind_exchange_named(destination)?, self.unbind_exchange_named(source)?)
        else {
            return Ok(());
        };
        let durable = src.durable && dst.durable;
        let dest = Dest::Exchange(dst);
        if src.unbind(&dest, routing_key, arguments) {
            let b = Binding { dest, routing_key: routing_key.clone(), arguments: arguments.clone() };
            self.binding_event("binding.deleted", who.user, &src, &b);
            if src.auto_delete && !src.has_bindings() {
                self.remove_exchange(&src, None);
            }
        }
        self.changed(durable);
        Ok(())
    }

    /// `binding.created` / `binding.deleted` for binding `b` from `src`.
    fn binding_event(&self, key: &'static str, by: Option<&str>, src: &Exchange, b: &Binding) {
        let (kind, dest) = match &b.dest {
            Dest::Queue(q) => ("queue", q.name.clone()),
            Dest::Exchange(x) => ("exchange", x.name.clone()),
        };
        self.events.emit(key, |f| {
            f.by(by)
                .str("vhost", &self.name)
                .table("arguments", &b.arguments)
                .str("routing_key", b.routing_key.as_bytes())
                .str("destination_kind", kind)
                .str("destination_name", dest.as_bytes())
                .str("source_kind", "exchange")
                .str("source_name", src.name.as_bytes());
        });
    }

    /// The exchange named in a bind/unbind: must exist and not be the default exchange.
    fn bindable_exchange(&self, exchange: &ShortStr) -> AmqpResult<Arc<Exchange>> {
        if exchange.is_empty() {
            return Err(AmqpError::channel(ACCESS_REFUSED, "operation not permitted on the default exchange", None));
        }
        self.exchange(exchange)
            .ok_or_else(|| AmqpError::channel(NOT_FOUND, format!("no {}", self.ex_desc(exchange)), None))
    }

    /// The exchange named in an unbind: the default exchange is refused, a missing one is `None`.
    fn unbind_exchange_named(&self, exchange: &ShortStr) -> AmqpResult<Option<Arc<Exchange>>> {
        if exchange.is_empty() {
            return Err(AmqpError::channel(ACCESS_REFUSED, "operation not permitted on the default exchange", None));
        }
        Ok(self.exchange(exchange))
    }

    /// queue.bind: write on the queue, read on the exchange (and topic read on the key), then the
    /// queue (404, 405), the exchange (404, 403 for the default one) and the arguments.
    pub fn bind_queue(
        &self,
        who: &Actor,
        queue: &ShortStr,
        exchange: &ShortStr,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> AmqpResult<()> {
        who.allowed(|g| access::queue_bind(g, self, queue.as_bytes(), exchange, &routing_key))?;
        let q = self.usable_queue(queue, who.conn)?;
        let ex = self.bindable_exchange(exchange)?;
        check_binding_args(&ex, &routing_key, &arguments)?;
        let durable = ex.durable && q.durable && q.exclusive_owner.is_none();
        let b = Binding { dest: Dest::Queue(q), routing_key, arguments };
        if ex.bind(b.clone()) {
            self.binding_event("binding.created", who.user, &ex, &b);
        }
        self.changed(durable);
        Ok(())
    }

    /// queue.unbind: the permissions of queue.bind; unbinding a queue that does not exist is not
    /// an error (as RabbitMQ).
    pub fn unbind_queue(
        &self,
        who: &Actor,
        queue: &ShortStr,
        exchange: &ShortStr,
        routing_key: &ShortStr,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        who.allowed(|g| access::queue_bind(g, self, queue.as_bytes(), exchange, routing_key))?;
        if self.queue(queue).is_none() {
            return Ok(());
        }
        let q = &self.usable_queue(queue, who.conn)?;
        let Some(ex) = self.unbind_exchange_named(exchange)? else { return Ok(()) };
        let dest = Dest::Queue(q.clone());
        if ex.unbind(&dest, routing_key, arguments) {
            let b = Binding { dest, routing_key: routing_key.clone(), arguments: arguments.clone() };
            self.binding_event("binding.deleted", who.user, &ex, &b);
            if ex.auto_delete && !ex.has_bindings() {
                self.remove_exchange(&ex, None);
            }
        }
        self.changed(ex.durable && q.durable && q.exclusive_owner.is_none());
        Ok(())
    }
}

/// A binding's key and arguments, checked for its exchange's type when it is made: a
/// consistent-hash key is a weight; headers exchanges check `x-match` (as RabbitMQ).
fn check_binding_args(ex: &Exchange, key: &ShortStr, args: &FieldTable) -> AmqpResult<()> {
    ex.route_kind.validate_binding_key(key).map_err(|why| AmqpError::channel(PRECONDITION_FAILED, why, None))?;
    if ex.route_kind != ExchangeKind::Headers {
        return Ok(());
    }
    match args.get("x-match") {
        None => Ok(()),
        Some(FieldValue::LongStr(s)) => match s.as_bytes() {
            b"all" | b"any" | b"all-with-x" | b"any-with-x" => Ok(()),
            other => Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!(
                    "Invalid x-match field value <<\"{}\">>; expected all, any, all-with-x, or any-with-x",
                    String::from_utf8_lossy(other)
                ),
                None,
            )),
        },
        Some(v) => Err(AmqpError::channel(
            PRECONDITION_FAILED,
            format!("Invalid x-match field type {} (value {}); expected longstr", rabbit_type(v), fmt_value(Some(v))),
            None,
        )),
    }
}

/// Exchange arguments compared on redeclare.
const EXCHANGE_EQUIV_ARGS: &[&str] = &["alternate-exchange"];

/// The first of `keys` whose value differs between a redeclare and the original, as
/// (name, received, current).
pub(super) fn first_arg_difference(
    got: &FieldTable,
    cur: &FieldTable,
    keys: &[&str],
) -> Option<(String, String, String)> {
    for k in keys {
        match (got.get(k), cur.get(k)) {
            (None, None) => {}
            (Some(a), Some(b)) if a == b || same_number(a, b) => {}
            // As RabbitMQ words it: `'x'` when both sides have a value, `none` and `the value
            // 'x' of type 't'` when one side has none.
            (Some(a), Some(b)) => {
                return Some((k.to_string(), format!("'{}'", fmt_value(Some(a))), format!("'{}'", fmt_value(Some(b)))))
            }
            (a, b) => {
                let shown = |v: Option<&FieldValue>| match v {
                    None => "none".to_string(),
                    Some(v) => format!("the value '{}' of type '{}'", fmt_value(Some(v)), rabbit_type(v)),
                };
                return Some((k.to_string(), shown(a), shown(b)));
            }
        }
    }
    None
}

/// RabbitMQ's name for a field value's type, as its error texts use it.
pub fn rabbit_type(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) => "long",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal(..) => "decimal",
        FieldValue::LongStr(_) => "longstr",
        FieldValue::Bytes(_) => "binary",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
    }
}

fn same_number(a: &warren_protocol::FieldValue, b: &warren_protocol::FieldValue) -> bool {
    matches!((a.as_i64(), b.as_i64()), (Some(x), Some(y)) if x == y)
}

fn fmt_value(v: Option<&warren_protocol::FieldValue>) -> String {
    use warren_protocol::FieldValue as F;
    match v {
        None => "none".into(),
        Some(v) => match v.as_i64() {
            Some(n) => n.to_string(),
            None => match v {
                F::LongStr(s) | F::Bytes(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                F::Bool(b) => b.to_string(),
                other => format!("{other:?}"),
            },
        },
    }
}
