//! AMQP 1.0 message ↔ AMQP 0-9-1 (basic properties + body), as RabbitMQ converts them when an
//! AMQP 0-9-1 client publishes into a stream or consumes from one. 0-9-1 → 1.0 writes what
//! RabbitMQ 3.10 writes into a stream (checked against RabbitMQ 3.10.8); 1.0 → 0-9-1 follows
//! RabbitMQ 4.x (`mc_amqpl`'s `convert_from(mc_amqp)` plus `mc_amqp:protocol_state`), which also
//! reads what older versions wrote.
//!
//! Runs on the 0-9-1 publish path into a stream (once per message) and on the 0-9-1 delivery path
//! out of a stream (once per delivery). Broker-side annotations that are not part of the message
//! (RabbitMQ's `x-stream-offset` header on deliveries) are the caller's business.
//!
//! Mapping (0-9-1 → 1.0; the reverse undoes it):
//! - delivery-mode 2 → header durable true (anything else → false); priority → header priority;
//!   expiration (a decimal string) → header ttl. The header also gets first-acquirer true and
//!   delivery-count 0, as RabbitMQ writes them. Delivery-mode, priority and expiration are also
//!   written as the message annotations `x-basic-delivery-mode` (ubyte), `x-basic-priority`
//!   (ubyte) and `x-basic-expiration` (string); reading uses them only when the header lacks the
//!   field.
//! - message-id / correlation-id → properties (a `urn:uuid:` string becomes a uuid); user-id →
//!   user-id (binary); reply-to → reply-to as it is (no `/queues/` address form, no
//!   percent-encoding; a `/queues/q` address, as RabbitMQ 4 writes it, is read back as `q`);
//!   content-type / content-encoding → symbols; timestamp (s) → creation-time (ms); app-id →
//!   group-id.
//! - type → application property `x-basic-type`, app-id → application property `x-basic-app-id`
//!   (as well as group-id). Reading takes the type from an `x-basic-type` message annotation
//!   (what older writers used) or else that application property; application properties and
//!   annotations named `x-basic-*` never become headers.
//! - `x-` headers → message annotations; the `CC` array → annotation `x-cc`; other headers →
//!   application properties, except arrays and tables (dropped: application property values must
//!   be simple).
//! - the body → one data section (copied once, into the encoded message). A 0-9-1 message of
//!   type `amqp-1.0` already carries encoded body sections: they are used as they are.
//! - cluster-id is dropped; to, subject, absolute-expiry-time, group-sequence and
//!   reply-to-group-id have no 0-9-1 equivalent and are dropped the other way.
//!
//! # Invariants
//! - Conversion never fails and never panics: a value that cannot be represented on the other
//!   side is left out (RabbitMQ leaves out or crashes on the same values; see `rabbitmq-compat`).
//! - 1.0 → 0-9-1 does not copy the body when it is one data section, or an encoded body without
//!   footer: the returned body is a slice of the decoded message.
use super::value::Value;
use super::{map_get, Body, Header, Map, Message10, MessageId, Properties};
use crate::properties::BasicProperties;
use crate::table::{FieldTable, FieldValue};
use crate::types::{LongStr, ShortStr};
use bytes::{BufMut, Bytes, BytesMut};

/// 0-9-1 `type` of a message whose body is AMQP 1.0 encoded body sections (an amqp-value or
/// amqp-sequence body read by a 0-9-1 client).
pub const AMQP10_TYPE: &str = "amqp-1.0";
/// 0-9-1 delivery-mode of a persistent message.
const PERSISTENT: u8 = 2;
/// 0-9-1 delivery-mode of a transient message.
const TRANSIENT: u8 = 1;
/// Application properties carrying the 0-9-1 `type` and `app-id` properties, as RabbitMQ 3.10
/// writes them (`x-basic-type` is also read as a message annotation).
const X_BASIC_TYPE: &[u8] = b"x-basic-type";
const X_BASIC_APP_ID: &[u8] = b"x-basic-app-id";
/// Annotations RabbitMQ 3.13 wrote for 0-9-1 properties, and 3.10 writes besides the header
/// fields (so Warren does too); read when the header lacks the field.
const X_BASIC_DELIVERY_MODE: &[u8] = b"x-basic-delivery-mode";
const X_BASIC_PRIORITY: &[u8] = b"x-basic-priority";
const X_BASIC_EXPIRATION: &[u8] = b"x-basic-expiration";
/// Prefix of all `x-basic-*` annotations (internal: never turned into headers).
const X_BASIC_PREFIX: &[u8] = b"x-basic-";
/// Annotations RabbitMQ writes with the exchange and routing key a message was published to.
const X_EXCHANGE: &[u8] = b"x-exchange";
const X_ROUTING_KEY: &[u8] = b"x-routing-key";
/// The 0-9-1 `CC` header (extra routing keys) and its annotation.
const CC: &[u8] = b"CC";
const X_CC: &[u8] = b"x-cc";
/// Dead-letter history: the 0-9-1 header and RabbitMQ's AMQP 1.0 annotation.
const X_DEATH: &[u8] = b"x-death";
const X_OPT_DEATHS: &[u8] = b"x-opt-deaths";
/// Receive timestamp annotation and the 0-9-1 header RabbitMQ maps it to.
const X_OPT_RECEIVED_TIME: &[u8] = b"x-opt-rabbitmq-received-time";
const TIMESTAMP_IN_MS: &[u8] = b"timestamp_in_ms";
/// Headers carrying a message-id / correlation-id that does not fit a short string.
const X_MESSAGE_ID: &[u8] = b"x-message-id";
const X_CORRELATION_ID: &[u8] = b"x-correlation-id";
/// Prefix of headers (and annotation keys) reserved for the broker and extensions.
const X_PREFIX: &[u8] = b"x-";
/// AMQP 1.0 address prefix of a queue (RabbitMQ 4 address format v2), used for reply-to.
const QUEUES_PREFIX: &[u8] = b"/queues/";
/// Prefix of a UUID written as a string.
const URN_UUID: &[u8] = b"urn:uuid:";
/// Longest 0-9-1 long string checked for UTF-8 to become an AMQP 1.0 string; longer ones
/// become binary (RabbitMQ's `UTF8_SCAN_LIMIT`).
const UTF8_SCAN_LIMIT: usize = 4096;
/// Milliseconds per second: 0-9-1 timestamps are seconds, AMQP 1.0 timestamps milliseconds.
const MS_PER_S: i64 = 1000;

/// A header name from a constant (all of them are short).
fn key(k: &'static [u8]) -> ShortStr {
    ShortStr::truncating(Bytes::from_static(k))
}

fn shortstr(b: &[u8]) -> Option<ShortStr> {
    ShortStr::from_bytes(Bytes::copy_from_slice(b))
}

fn shortstr_of(b: &Bytes) -> Option<ShortStr> {
    ShortStr::from_bytes(b.clone())
}

/// RabbitMQ's `is_valid_shortstr`: at most 255 bytes of UTF-8 without NUL.
fn valid_shortstr(b: &Bytes) -> Option<ShortStr> {
    (std::str::from_utf8(b).is_ok() && !b.contains(&0)).then(|| shortstr_of(b)).flatten()
}

/// A string or symbol annotation value as a short string.
fn text_shortstr(v: &Value) -> Option<ShortStr> {
    v.as_str_bytes().and_then(shortstr_of)
}

// ---------------------------------------------------------------------------------------------
// 1.0 → 0-9-1

/// Convert a decoded AMQP 1.0 message to 0-9-1 properties and body, as RabbitMQ does for a
/// 0-9-1 consumer of a stream. The body is a slice of `msg` (no copy) unless it has several data
/// sections (concatenated) or an encoded body with a footer (body and footer sections joined).
pub fn to_amqp091(msg: &Message10) -> (BasicProperties, Bytes) {
    let ma: &[(Value, Value)] = msg.message_annotations.as_deref().unwrap_or(&[]);
    let ap: &[(Value, Value)] = msg.application_properties.as_deref().unwrap_or(&[]);
    let default_props = Properties::default();
    let p = msg.properties.as_ref().unwrap_or(&default_props);
    let h = msg.header.as_ref();

    let mut out = BasicProperties {
        delivery_mode: match h.and_then(|h| h.durable) {
            Some(true) => Some(PERSISTENT),
            Some(false) => Some(TRANSIENT),
            None => map_get(ma, X_BASIC_DELIVERY_MODE).and_then(Value::as_i64).and_then(|v| u8::try_from(v).ok()),
        },
        priority: match h.and_then(|h| h.priority) {
            Some(p) => Some(p),
            None => map_get(ma, X_BASIC_PRIORITY).and_then(Value::as_i64).and_then(|v| u8::try_from(v).ok()),
        },
        expiration: match h.and_then(|h| h.ttl) {
            Some(ttl) => shortstr(ttl.to_string().as_bytes()),
            None => map_get(ma, X_BASIC_EXPIRATION).and_then(text_shortstr),
        },
        kind: match msg.body {
            // RabbitMQ 3.10 writes the type as an application property; older writers (and
            // Warren before) as a message annotation, which wins when both are there.
            Body::Data(_) => map_get(ma, X_BASIC_TYPE).or_else(|| map_get(ap, X_BASIC_TYPE)).and_then(text_shortstr),
            Body::Sequence(_) | Body::Value(_) => Some(ShortStr::from_static(AMQP10_TYPE)),
        },
        // rabbitmq-compat: RabbitMQ copies content-type/encoding without a length check (a
        // longer one fails the encoding); Warren leaves a value over 255 bytes out.
        content_type: p.content_type.as_ref().and_then(shortstr_of),
        content_encoding: p.content_encoding.as_ref().and_then(shortstr_of),
        timestamp: p.creation_time.map(|ms| (ms / MS_PER_S) as u64),
        // A user-id that is not a valid short string is dropped (RabbitMQ: "what else can we do?").
        user_id: p.user_id.as_ref().and_then(valid_shortstr),
        reply_to: p.reply_to.as_ref().and_then(shortstr_of).and_then(|r| {
            match r.as_bytes().strip_prefix(QUEUES_PREFIX) {
                Some(queue) => percent_decode(queue).and_then(|q| ShortStr::from_bytes(Bytes::from(q))),
                None => Some(r),
            }
        }),
        app_id: p.group_id.as_ref().and_then(shortstr_of),
        ..BasicProperties::default()
    };

    // Headers, in RabbitMQ's order: annotations, then ids that did not fit, then app properties.
    let mut headers = Vec::new();
    let has_opt_deaths = map_get(ma, X_OPT_DEATHS).is_some();
    for (k, v) in ma {
        let Value::Symbol(k) = k else { continue };
        let entry = match (k.as_ref(), v) {
            (X_CC, _) => to_091(v).map(|v| (key(CC), v)),
            (X_OPT_RECEIVED_TIME, Value::Timestamp(ms)) => Some((key(TIMESTAMP_IN_MS), FieldValue::I64(*ms))),
            (X_OPT_DEATHS, _) => deaths_to_091(v).map(|v| (key(X_DEATH), v)),
            // rabbitmq-compat: RabbitMQ treats an `x-death` annotation as internal and drops it
            // (it keeps dead-letter history in `x-opt-deaths`). Warren writes 0-9-1 `x-death`
            // headers into streams as an `x-death` annotation, so it reads it back as the header
            // unless `x-opt-deaths` is there too.
            (X_DEATH, _) if !has_opt_deaths => to_091(v).map(|v| (key(X_DEATH), v)),
            (X_DEATH | X_EXCHANGE | X_ROUTING_KEY, _) => None,
            (k, _) if k.starts_with(X_BASIC_PREFIX) => None,
            (k, _) if k.starts_with(X_PREFIX) => shortstr(k).zip(to_091(v)),
            _ => None,
        };
        headers.extend(entry);
    }
    out.correlation_id = id_to_091(p.correlation_id.as_ref(), X_CORRELATION_ID, &mut headers);
    out.message_id = id_to_091(p.message_id.as_ref(), X_MESSAGE_ID, &mut headers);
    for (k, v) in ap {
        // Only string keys name application properties (RabbitMQ skips other keys too). The
        // `x-basic-*` ones RabbitMQ 3.10 adds are properties, not headers.
        if let (Value::String(k), Some(v)) = (k, to_091(v)) {
            if k.starts_with(X_BASIC_PREFIX) {
                continue;
            }
            headers.extend(shortstr_of(k).map(|k| (k, v)));
        }
    }
    if !headers.is_empty() {
        out.headers = Some(FieldTable(headers));
    }
    (out, body_to_091(msg))
}

/// A message-id / correlation-id as a 0-9-1 short string, or as header `key` when it is binary
/// or longer than a short string.
fn id_to_091(
    id: Option<&MessageId>,
    key: &'static [u8],
    headers: &mut Vec<(ShortStr, FieldValue)>,
) -> Option<ShortStr> {
    let header = |v| (self::key(key), v);
    match id? {
        MessageId::Uuid(u) => shortstr(&uuid_to_urn(u)),
        MessageId::Ulong(n) => shortstr(n.to_string().as_bytes()),
        MessageId::Binary(b) => {
            headers.push(header(FieldValue::Bytes(LongStr(b.clone()))));
            None
        }
        MessageId::String(s) => shortstr_of(s).or_else(|| {
            headers.push(header(FieldValue::LongStr(LongStr(s.clone()))));
            None
        }),
    }
}

/// An AMQP 1.0 value as a 0-9-1 field value (RabbitMQ's `mc_amqpl:to_091`). `None` for values
/// 0-9-1 cannot carry.
fn to_091(v: &Value) -> Option<FieldValue> {
    Some(match v {
        Value::String(b) | Value::Symbol(b) | Value::Binary(b) => FieldValue::LongStr(LongStr(b.clone())),
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Ubyte(n) => FieldValue::U8(*n),
        Value::Ushort(n) => FieldValue::U16(*n),
        Value::Uint(n) => FieldValue::U32(*n),
        // RabbitMQ writes a ulong as a signed long too: values over i64::MAX wrap.
        Value::Ulong(n) => FieldValue::I64(*n as i64),
        Value::Byte(n) => FieldValue::I8(*n),
        Value::Short(n) => FieldValue::I16(*n),
        Value::Int(n) => FieldValue::I32(*n),
        Value::Long(n) => FieldValue::I64(*n),
        // NaN and infinities: RabbitMQ's parser keeps them opaque and the conversion skips them.
        Value::Float(f) if f.is_finite() => FieldValue::F32(*f),
        Value::Double(f) if f.is_finite() => FieldValue::F64(*f),
        Value::Timestamp(ms) => FieldValue::Timestamp((ms / MS_PER_S) as u64),
        Value::List(items) | Value::Array(items) => FieldValue::Array(items.iter().filter_map(to_091).collect()),
        // Table keys: any string, symbol or binary key up to 255 bytes; other keys are skipped.
        Value::Map(pairs) => FieldValue::Table(FieldTable(
            pairs.iter().filter_map(|(k, v)| Some((table_key(k).and_then(shortstr_of)?, to_091(v)?))).collect(),
        )),
        // rabbitmq-compat: RabbitMQ has no conversion for uuid (the channel crashes); Warren
        // writes the `urn:uuid:` string, as it does for a uuid message-id.
        Value::Uuid(u) => FieldValue::LongStr(LongStr(Bytes::from(uuid_to_urn(u)))),
        // Decimals (kept opaque by RabbitMQ), chars and described values: no 0-9-1 equivalent.
        Value::Float(_) | Value::Double(_) | Value::Decimal32(_) | Value::Decimal64(_) | Value::Decimal128(_) => {
            return None
        }
        Value::Char(_) | Value::Described(..) => return None,
    })
}

fn table_key(k: &Value) -> Option<&Bytes> {
    match k {
        Value::String(b) | Value::Symbol(b) | Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// RabbitMQ's `x-opt-deaths` annotation (an array of maps) as the 0-9-1 `x-death` header. `None`
/// when it does not have that shape (rabbitmq-compat: RabbitMQ fails on it; Warren drops it).
fn deaths_to_091(v: &Value) -> Option<FieldValue> {
    let (Value::Array(items) | Value::List(items)) = v else { return None };
    let mut deaths = Vec::with_capacity(items.len());
    for item in items {
        let Value::Map(m) = item else { return None };
        let text =
            |k: &[u8]| map_get(m, k).and_then(Value::as_str_bytes).map(|b| FieldValue::LongStr(LongStr(b.clone())));
        let Some(Value::Timestamp(first_time)) = map_get(m, b"first-time") else { return None };
        let routing_keys = match map_get(m, b"routing-keys")? {
            Value::Array(keys) | Value::List(keys) => {
                keys.iter().filter_map(Value::as_str_bytes).map(|k| FieldValue::LongStr(LongStr(k.clone()))).collect()
            }
            _ => return None,
        };
        let mut table = Vec::with_capacity(7);
        if let Some(ttl) = map_get(m, b"ttl").and_then(Value::as_i64) {
            table.push((
                ShortStr::from_static("original-expiration"),
                FieldValue::LongStr(LongStr::from(ttl.to_string())),
            ));
        }
        table.push((ShortStr::from_static("count"), FieldValue::I64(map_get(m, b"count")?.as_i64()?)));
        table.push((ShortStr::from_static("reason"), text(b"reason")?));
        table.push((ShortStr::from_static("queue"), text(b"queue")?));
        table.push((ShortStr::from_static("time"), FieldValue::Timestamp((first_time / MS_PER_S) as u64)));
        table.push((ShortStr::from_static("exchange"), text(b"exchange")?));
        table.push((ShortStr::from_static("routing-keys"), FieldValue::Array(routing_keys)));
        deaths.push(FieldValue::Table(FieldTable(table)));
    }
    Some(FieldValue::Array(deaths))
}

/// The 0-9-1 body: the data, or the encoded body sections (and footer) of an `amqp-1.0` message.
fn body_to_091(msg: &Message10) -> Bytes {
    match &msg.body {
        Body::Data(parts) => match parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            // RabbitMQ concatenates several data sections too.
            many => {
                let mut b = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                for p in many {
                    b.put_slice(p);
                }
                b.freeze()
            }
        },
        Body::Sequence(raw) | Body::Value(raw) => match &msg.footer {
            None => raw.clone(),
            Some(footer) => {
                let mut b = BytesMut::from(raw.as_ref());
                super::put_section_prefix(&mut b, super::descriptor::FOOTER);
                super::value::encode_map(footer, &mut b);
                b.freeze()
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// 0-9-1 → 1.0

/// Encode a 0-9-1 message as an AMQP 1.0 message, as RabbitMQ writes it into a stream. The body
/// is copied once, into the returned buffer.
pub fn from_amqp091(props: &BasicProperties, body: &Bytes) -> Bytes {
    message_from_amqp091(props, body, None).to_bytes()
}

/// [`from_amqp091`] for a message published to `exchange` with `routing_key`: RabbitMQ records
/// them as the `x-exchange` and `x-routing-key` annotations of what it writes into a stream.
pub fn from_amqp091_routed(props: &BasicProperties, body: &Bytes, exchange: &[u8], routing_key: &[u8]) -> Bytes {
    message_from_amqp091(props, body, Some((exchange, routing_key))).to_bytes()
}

/// The AMQP 1.0 message for a 0-9-1 message, optionally with the exchange and routing key it was
/// published with. Nothing is copied: the body is `body` itself (or slices of it).
pub fn message_from_amqp091(props: &BasicProperties, body: &Bytes, route: Option<(&[u8], &[u8])>) -> Message10 {
    let headers: &[(ShortStr, FieldValue)] = props.headers.as_ref().map_or(&[], |t| t.0.as_slice());

    let mut ma: Map = Vec::new();
    if let Some((exchange, routing_key)) = route {
        ma.push((Value::Symbol(Bytes::from_static(X_ROUTING_KEY)), Value::String(Bytes::copy_from_slice(routing_key))));
        ma.push((Value::Symbol(Bytes::from_static(X_EXCHANGE)), Value::String(Bytes::copy_from_slice(exchange))));
    }
    // rabbitmq-compat: RabbitMQ 3.10 also keeps delivery mode, priority and expiration as
    // `x-basic-*` annotations (and the type as an application property, below).
    if let Some(m) = props.delivery_mode {
        ma.push((Value::Symbol(Bytes::from_static(X_BASIC_DELIVERY_MODE)), Value::Ubyte(m)));
    }
    if let Some(p) = props.priority {
        ma.push((Value::Symbol(Bytes::from_static(X_BASIC_PRIORITY)), Value::Ubyte(p)));
    }
    if let Some(e) = &props.expiration {
        ma.push((Value::Symbol(Bytes::from_static(X_BASIC_EXPIRATION)), Value::String(e.bytes().clone())));
    }
    let mut ap: Map = Vec::new();
    for (k, v) in headers {
        let key = k.as_bytes();
        let x = key.starts_with(X_PREFIX);
        // The exchange and routing key the broker records replace headers of the same names.
        if route.is_some() && (key == X_EXCHANGE || key == X_ROUTING_KEY) {
            continue;
        }
        // rabbitmq-compat: RabbitMQ has no conversion for decimal header values (the publish
        // fails); Warren leaves such a header out.
        let Some(value) = from_091(v) else { continue };
        if x {
            ma.push((Value::Symbol(k.bytes().clone()), value));
        } else if key == CC && matches!(v, FieldValue::Array(_)) {
            // Application properties may not hold arrays: CC travels as an annotation.
            ma.push((Value::Symbol(Bytes::from_static(X_CC)), value));
        } else if !matches!(v, FieldValue::Array(_) | FieldValue::Table(_)) {
            ap.push((Value::String(k.bytes().clone()), value));
        }
    }
    // rabbitmq-compat: RabbitMQ 3.10 also writes the type and app-id as application properties,
    // so stream clients see them there.
    if let Some(kind) = &props.kind {
        ap.push((Value::String(Bytes::from_static(X_BASIC_TYPE)), Value::String(kind.bytes().clone())));
    }
    if let Some(app) = &props.app_id {
        ap.push((Value::String(Bytes::from_static(X_BASIC_APP_ID)), Value::String(app.bytes().clone())));
    }

    let properties = Properties {
        message_id: props.message_id.as_ref().map(id_from_091),
        user_id: props.user_id.as_ref().map(|u| u.bytes().clone()),
        // rabbitmq-compat: written as it is, as RabbitMQ 3.10 writes it into a stream (4.x writes
        // the `/queues/q` address form, which reading strips).
        reply_to: props.reply_to.as_ref().map(|r| r.bytes().clone()),
        correlation_id: props.correlation_id.as_ref().map(id_from_091),
        content_type: props.content_type.as_ref().map(|c| c.bytes().clone()),
        content_encoding: props.content_encoding.as_ref().map(|c| c.bytes().clone()),
        creation_time: props.timestamp.map(|s| (s as i64).wrapping_mul(MS_PER_S)),
        // RabbitMQ: "semantically not the best idea but you could imagine these having similar
        // behaviour".
        group_id: props.app_id.as_ref().map(|a| a.bytes().clone()),
        ..Properties::default()
    };

    let header = Header {
        durable: Some(props.delivery_mode == Some(PERSISTENT)),
        priority: props.priority,
        // The channel accepted only a non-negative integer; one over u32 cannot be a 1.0 ttl.
        ttl: props.expiration.as_ref().and_then(|e| std::str::from_utf8(e.as_bytes()).ok()?.parse::<u32>().ok()),
        first_acquirer: Some(true),
        delivery_count: Some(0),
    };

    let (body, footer) = match props.kind.as_ref().filter(|k| *k == AMQP10_TYPE).and_then(|_| encoded_body(body)) {
        Some(parts) => parts,
        None => (Body::Data(vec![body.clone()]), None),
    };
    Message10 {
        header: Some(header),
        delivery_annotations: None,
        message_annotations: (!ma.is_empty()).then_some(ma),
        properties: (!properties.is_empty()).then_some(properties),
        application_properties: (!ap.is_empty()).then_some(ap),
        body,
        footer,
    }
}

/// The body (and footer) of an `amqp-1.0` 0-9-1 body: encoded body sections, optionally followed
/// by a footer. `None` (the body is then sent as data) when it is anything else.
///
/// rabbitmq-compat: RabbitMQ decodes such a body as any sections (a body that does not parse
/// fails the publish); Warren only takes body and footer sections, and otherwise keeps the bytes
/// as a data section.
fn encoded_body(body: &Bytes) -> Option<(Body, Option<Map>)> {
    let m = Message10::decode(body.clone()).ok()?;
    let bare = m.header.is_none()
        && m.delivery_annotations.is_none()
        && m.message_annotations.is_none()
        && m.properties.is_none()
        && m.application_properties.is_none();
    bare.then_some((m.body, m.footer))
}

/// A 0-9-1 message-id / correlation-id as AMQP 1.0: a uuid when it is a `urn:uuid:` string.
fn id_from_091(id: &ShortStr) -> MessageId {
    match urn_to_uuid(id.as_bytes()) {
        Some(u) => MessageId::Uuid(u),
        None => MessageId::String(id.bytes().clone()),
    }
}

/// A 0-9-1 field value as AMQP 1.0 (RabbitMQ's `mc_amqpl:from_091`). `None` for decimals.
fn from_091(v: &FieldValue) -> Option<Value> {
    Some(match v {
        FieldValue::LongStr(s) => {
            let b = &s.0;
            if b.len() <= UTF8_SCAN_LIMIT && !b.contains(&0) && std::str::from_utf8(b).is_ok() {
                Value::String(b.clone())
            } else {
                Value::Binary(b.clone())
            }
        }
        FieldValue::Bytes(b) => Value::Binary(b.0.clone()),
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(n) => Value::Byte(*n),
        FieldValue::U8(n) => Value::Ubyte(*n),
        FieldValue::I16(n) => Value::Short(*n),
        FieldValue::U16(n) => Value::Ushort(*n),
        FieldValue::I32(n) => Value::Int(*n),
        FieldValue::U32(n) => Value::Uint(*n),
        FieldValue::I64(n) => Value::Long(*n),
        FieldValue::F32(f) => Value::Float(*f),
        FieldValue::F64(f) => Value::Double(*f),
        FieldValue::Timestamp(s) => Value::Timestamp((*s as i64).wrapping_mul(MS_PER_S)),
        FieldValue::Void => Value::Null,
        FieldValue::Array(items) => Value::List(items.iter().filter_map(from_091).collect()),
        FieldValue::Table(t) => {
            Value::Map(t.iter().filter_map(|(k, v)| Some((Value::Symbol(k.bytes().clone()), from_091(v)?))).collect())
        }
        FieldValue::Decimal(..) => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers: UUID strings and percent-encoding.

/// `urn:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase (RabbitMQ's `uuid_to_urn_string`).
fn uuid_to_urn(u: &[u8; 16]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = URN_UUID.to_vec();
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push(b'-');
        }
        s.push(HEX[(b >> 4) as usize]);
        s.push(HEX[(b & 0xf) as usize]);
    }
    s
}

/// The 16 bytes of a `urn:uuid:` string in the 8-4-4-4-12 form (either hex case).
fn urn_to_uuid(s: &[u8]) -> Option<[u8; 16]> {
    let hex = s.strip_prefix(URN_UUID)?;
    if hex.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = hex.iter().enumerate().filter_map(|(i, c)| (!matches!(i, 8 | 13 | 18 | 23)).then_some(*c));
    if [8, 13, 18, 23].iter().any(|i| hex.get(*i) != Some(&b'-')) {
        return None;
    }
    for byte in out.iter_mut() {
        let hi = hex_value(digits.next()?)?;
        let lo = hex_value(digits.next()?)?;
        *byte = hi << 4 | lo;
    }
    Some(out)
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Decode `%XX` escapes; `None` for a malformed escape (RabbitMQ then drops the reply-to).
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'%' {
            let hi = hex_value(*s.get(i + 1)?)?;
            let lo = hex_value(*s.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}
