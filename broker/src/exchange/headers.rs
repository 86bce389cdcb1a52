//! The headers exchange: a message goes to the bindings whose arguments match its headers table
//! (`x-match` = `all`, `any`, `all-with-x`, `any-with-x`), with RabbitMQ's value comparison.
//!
//! Runs in: the publishing task, under the exchange's bindings read lock.
//!
//! # Invariants
//! - No index: every binding is checked; the headers table is decoded once per message by the
//!   caller, and only when the properties carry one.
use super::{Binding, Routed};
use warren_protocol::{FieldTable, FieldValue, ShortStr};

/// Destinations of a message with `headers` (none: an empty table); whether any matched.
#[inline]
pub fn route(all: &[Binding], headers: Option<&FieldTable>, out: &mut Routed) -> bool {
    let empty = FieldTable::new();
    let h = headers.unwrap_or(&empty);
    let mut any = false;
    for b in all {
        if headers_match(&b.arguments, h) {
            any = true;
            out.push(&b.dest);
        }
    }
    any
}

/// Headers exchange matching, as RabbitMQ: `x-match` = `all` (default), `any`, `all-with-x`,
/// `any-with-x`. Binding keys starting `x-` are ignored except in the `-with-x` modes. A void binding
/// value matches on the header's presence; otherwise values match as in `same_value`.
pub fn headers_match(binding: &FieldTable, headers: &FieldTable) -> bool {
    let mode = binding.get("x-match").and_then(|v| v.as_bytes()).unwrap_or(b"all");
    let (any, with_x) = match mode {
        b"any" => (true, false),
        b"any-with-x" => (true, true),
        b"all-with-x" => (false, true),
        _ => (false, false),
    };
    let mut considered = binding.iter().filter(|(k, _)| k != "x-match" && (with_x || !k.as_bytes().starts_with(b"x-")));
    let check = |(k, v): &(ShortStr, FieldValue)| match headers.iter().find(|(hk, _)| hk == k) {
        Some((_, hv)) => matches!(v, FieldValue::Void) || same_value(v, hv),
        None => false,
    };
    if any {
        considered.any(&check)
    } else {
        considered.all(check)
    }
}

fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    // As RabbitMQ (Erlang `==`): numbers compare by value whatever their width or kind (integers,
    // floats, timestamps); strings and byte arrays compare by their bytes; anything else exactly.
    fn number(v: &FieldValue) -> Option<f64> {
        match v {
            FieldValue::F32(x) => Some(*x as f64),
            FieldValue::F64(x) => Some(*x),
            FieldValue::Timestamp(t) => Some(*t as f64),
            other => other.as_i64().map(|i| i as f64),
        }
    }
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_bytes(), b.as_bytes()) {
        return x == y;
    }
    a == b
}
