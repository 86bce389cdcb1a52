//! JSON request bodies of the management API: parsed, and every known field checked for its type
//! (and range) before any handler reads it. The one place where body types are decided.
//!
//! Runs in: the management server's connection tasks (called by the `/api` handlers).
//!
//! # Invariants
//! - A body is empty (an empty object) or a JSON object; anything else is 400 `bad_request`.
//! - A known field of the wrong JSON type or out of range is 400 `bad_request` naming the field,
//!   so a handler never turns `"durable": "yes"` into a default; unknown fields are ignored (as
//!   RabbitMQ ignores them).
//! - The forms RabbitMQ itself accepts are normalised here, so handlers see one type: the strings
//!   `"true"` / `"false"` become booleans and numeric strings become numbers (rabbitmqadmin sends
//!   `durable=false` and `count=5` as strings).
use super::ApiError;
use serde_json::{Map, Number, Value};

/// What a field must hold.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A boolean.
    Bool,
    /// A string.
    Str,
    /// An object.
    Object,
    /// A string, or an array of strings (user tags).
    Tags,
    /// A whole number within the bounds (inclusive).
    UInt(u64, u64),
    /// A signed whole number.
    Int,
}

/// The type of a top-level body field, if it is one the API reads.
fn field_kind(key: &str) -> Option<Kind> {
    Some(match key {
        "durable" | "auto_delete" | "internal" | "tracing" => Kind::Bool,
        "arguments" | "properties" | "definition" => Kind::Object,
        "type" | "routing_key" | "payload" | "payload_encoding" | "password" | "password_hash"
        | "hashing_algorithm" | "configure" | "write" | "read" | "ackmode" | "encoding" | "pattern" | "apply-to"
        | "exchange" => Kind::Str,
        "tags" => Kind::Tags,
        "count" => Kind::UInt(0, u32::MAX as u64),
        "truncate" => Kind::UInt(0, u64::MAX),
        "priority" => Kind::Int,
        _ => return None,
    })
}

/// The type of a field of a publish request's `properties`.
fn property_kind(key: &str) -> Option<Kind> {
    Some(match key {
        "content_type" | "content_encoding" | "correlation_id" | "reply_to" | "expiration" | "message_id" | "type"
        | "user_id" | "app_id" => Kind::Str,
        // 1 (transient) or 2 (persistent), as RabbitMQ documents it.
        "delivery_mode" => Kind::UInt(1, 2),
        // An AMQP octet.
        "priority" => Kind::UInt(0, 255),
        "timestamp" => Kind::UInt(0, u64::MAX),
        "headers" => Kind::Object,
        _ => return None,
    })
}

/// A short rendering of a value for an error reason.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        let mut end = 60;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// Check (and normalise) one field.
fn check(field: &str, kind: Kind, v: &mut Value) -> Result<(), ApiError> {
    let bad = |what: &str, v: &Value| ApiError::bad_request(format!("{field}: expected {what}, got {}", shown(v)));
    match kind {
        Kind::Bool => match v {
            Value::Bool(_) => {}
            // rabbitmq-compat: RabbitMQ's parse_bool takes the strings "true" and "false" too.
            Value::String(s) if s == "true" || s == "false" => *v = Value::Bool(s == "true"),
            _ => return Err(bad("a boolean (true or false)", v)),
        },
        Kind::Str => {
            if !v.is_string() {
                return Err(bad("a string", v));
            }
        }
        Kind::Object => {
            if !v.is_object() {
                return Err(bad("a JSON object", v));
            }
        }
        Kind::Tags => {
            let ok = match v {
                Value::String(_) => true,
                Value::Array(a) => a.iter().all(Value::is_string),
                _ => false,
            };
            if !ok {
                return Err(bad("a string or an array of strings", v));
            }
        }
        Kind::UInt(lo, hi) => {
            // rabbitmq-compat: RabbitMQ's parse_int takes numeric strings too.
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if (lo..=hi).contains(&n) => *v = Value::Number(Number::from(n)),
                _ if hi == u64::MAX => return Err(bad(&format!("a whole number of at least {lo}"), v)),
                _ => return Err(bad(&format!("a whole number from {lo} to {hi}"), v)),
            }
        }
        Kind::Int => {
            let n = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n {
                Some(n) => *v = Value::Number(Number::from(n)),
                None => return Err(bad("a whole number", v)),
            }
        }
    }
    Ok(())
}

/// Parse a request body: empty (an empty object) or a JSON object whose known fields all have
/// their types (see the module invariants).
pub fn parse(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    let mut m = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(ApiError::bad_request("JSON object expected")),
        Err(e) => return Err(ApiError::bad_request(format!("failed to decode JSON: {e}"))),
    };
    for (k, v) in m.iter_mut() {
        if let Some(kind) = field_kind(k) {
            check(k, kind, v)?;
        }
    }
    if let Some(Value::Object(p)) = m.get_mut("properties") {
        for (k, v) in p.iter_mut() {
            if let Some(kind) = property_kind(k) {
                check(&format!("properties.{k}"), kind, v)?;
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Map<String, Value> {
        parse(v.to_string().as_bytes()).expect("accepted")
    }

    fn refused(v: Value) -> String {
        let e = parse(v.to_string().as_bytes()).expect_err("refused");
        assert_eq!((e.0.as_u16(), e.1), (400, "bad_request"));
        e.2
    }

    #[test]
    fn wrong_types_are_refused_with_the_field_named() {
        assert!(refused(json!({"durable": "yes"})).starts_with("durable:"));
        assert!(refused(json!({"auto_delete": 1})).starts_with("auto_delete:"));
        assert!(refused(json!({"arguments": "x"})).starts_with("arguments:"));
        assert!(refused(json!({"properties": {"delivery_mode": 300}})).starts_with("properties.delivery_mode:"));
        assert!(refused(json!({"properties": {"priority": -1}})).starts_with("properties.priority:"));
        assert!(refused(json!({"routing_key": 5})).starts_with("routing_key:"));
        assert!(refused(json!({"tags": [1]})).starts_with("tags:"));
        assert!(refused(json!({"count": "many"})).starts_with("count:"));
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{not json").is_err());
        // A long value is cut in the reason.
        assert!(refused(json!({"durable": "y".repeat(1000)})).len() < 200);
    }

    #[test]
    fn rabbitmq_forms_are_normalised() {
        let m = ok(json!({"durable": "false", "auto_delete": true, "count": "5", "priority": "-3",
                          "properties": {"delivery_mode": "2"}, "tags": ["a"], "other": [1, 2]}));
        assert_eq!(m["durable"], json!(false));
        assert_eq!(m["auto_delete"], json!(true));
        assert_eq!(m["count"], json!(5));
        assert_eq!(m["priority"], json!(-3));
        assert_eq!(m["properties"]["delivery_mode"], json!(2));
        assert!(parse(b"  ").expect("empty").is_empty());
    }
}
