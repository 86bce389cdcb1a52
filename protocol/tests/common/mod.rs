//! Proptest strategies shared by the integration tests: field values and tables, short and long
//! strings, basic properties and every method of `Method`.
//!
//! Two flavours exist:
//! - `Flavor::Raw` exercises everything Warren's codec accepts: short strings are arbitrary bytes
//!   (non-UTF-8 included) and tables may repeat a key.
//! - `Flavor::Utf8` is `Raw` with short strings that are valid UTF-8 (any characters): what the
//!   codec accepts in every method but the publish / return / deliver / get-ok family, which take
//!   raw bytes (`method_for` picks it for those methods).
//! - `Flavor::Amq` stays inside what the `amq-protocol` crate can represent, for the cross-check:
//!   printable ASCII short strings and tables with unique keys.
//!
//! Floats are never NaN here because `FieldValue`'s `PartialEq` would make a NaN unequal to itself;
//! NaN payload preservation is tested separately on bytes.
#![allow(dead_code)]

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use warren_protocol::method::{self, Method, ALL_METHODS};
use warren_protocol::{BasicProperties, FieldTable, FieldValue, LongStr, ShortStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Raw,
    Utf8,
    Amq,
}

/// Methods whose short strings the codec takes as raw bytes (no UTF-8 check).
pub const RAW_SHORTSTR_METHODS: [(u16, u16); 4] = [(60, 40), (60, 50), (60, 60), (60, 71)];

/// Bytes for a short string: mostly short, sometimes up to the 255-byte maximum.
fn short_bytes(f: Flavor) -> BoxedStrategy<Vec<u8>> {
    match f {
        Flavor::Raw => prop_oneof![
            4 => vec(any::<u8>(), 0..12),
            1 => vec(any::<u8>(), 0..=255),
            1 => Just(vec![0xff, 0xfe, 0x00, 0xc3]), // invalid UTF-8 with a NUL
        ]
        .boxed(),
        Flavor::Utf8 => vec(any::<char>(), 0..12)
            .prop_map(|cs| {
                let mut s = String::new();
                for c in cs {
                    if s.len() + c.len_utf8() > 255 {
                        break;
                    }
                    s.push(c);
                }
                s.into_bytes()
            })
            .boxed(),
        Flavor::Amq => prop_oneof![
            4 => vec(0x20u8..0x7f, 0..12),
            1 => vec(0x20u8..0x7f, 0..=255),
        ]
        .boxed(),
    }
}

pub fn short_str(f: Flavor) -> BoxedStrategy<ShortStr> {
    short_bytes(f).prop_map(|v| ShortStr::from_bytes(Bytes::from(v)).expect("at most 255 bytes")).boxed()
}

pub fn long_str() -> BoxedStrategy<LongStr> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..24),
        1 => vec(any::<u8>(), 0..600),
    ]
    .prop_map(|v| LongStr(Bytes::from(v)))
    .boxed()
}

/// Table keys, with a small pool mixed in so duplicate keys are common (the amq flavour then
/// drops the repeats, see `table_of`).
fn key(f: Flavor) -> BoxedStrategy<ShortStr> {
    prop_oneof![
        2 => short_str(f),
        1 => prop::sample::select(vec!["a", "b", "x-match"]).prop_map(ShortStr::from),
    ]
    .boxed()
}

fn f32_not_nan() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(|b| {
        let v = f32::from_bits(b);
        if v.is_nan() {
            -0.0
        } else {
            v
        }
    })
}

fn f64_not_nan() -> impl Strategy<Value = f64> {
    any::<u64>().prop_map(|b| {
        let v = f64::from_bits(b);
        if v.is_nan() {
            f64::INFINITY
        } else {
            v
        }
    })
}

fn leaf_value() -> BoxedStrategy<FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        f32_not_nan().prop_map(FieldValue::F32),
        f64_not_nan().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(s, v)| FieldValue::Decimal(s, v)),
        long_str().prop_map(FieldValue::LongStr),
        long_str().prop_map(FieldValue::Bytes),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ]
    .boxed()
}

/// Keep the first entry of every key (used by the amq flavour, whose tables are maps).
pub fn dedup_keys(items: Vec<(ShortStr, FieldValue)>) -> Vec<(ShortStr, FieldValue)> {
    let mut out: Vec<(ShortStr, FieldValue)> = Vec::with_capacity(items.len());
    for (k, v) in items {
        if !out.iter().any(|(k2, _)| *k2 == k) {
            out.push((k, v));
        }
    }
    out
}

fn table_of(f: Flavor, value: BoxedStrategy<FieldValue>, max: usize) -> BoxedStrategy<FieldTable> {
    vec((key(f), value), 0..max)
        .prop_map(move |items| FieldTable(if f == Flavor::Amq { dedup_keys(items) } else { items }))
        .boxed()
}

/// A field value of any type, nested up to 4 levels of arrays/tables.
pub fn field_value(f: Flavor) -> BoxedStrategy<FieldValue> {
    leaf_value()
        .prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
                table_of(f, inner, 6).prop_map(FieldValue::Table),
            ]
        })
        .boxed()
}

pub fn field_table(f: Flavor) -> BoxedStrategy<FieldTable> {
    table_of(f, field_value(f), 8)
}

/// Property values; `None` about half the time so every flag combination shows up.
pub fn properties(f: Flavor) -> BoxedStrategy<BasicProperties> {
    let s = || proptest::option::of(short_str(f));
    (
        (s(), s(), proptest::option::of(field_table(f)), proptest::option::of(any::<u8>())),
        (proptest::option::of(any::<u8>()), s(), s(), s(), s()),
        (proptest::option::of(any::<u64>()), s(), s(), s(), s()),
    )
        .prop_map(
            |(
                (content_type, content_encoding, headers, delivery_mode),
                (priority, correlation_id, reply_to, expiration, message_id),
                (timestamp, kind, user_id, app_id, cluster_id),
            )| BasicProperties {
                content_type,
                content_encoding,
                headers,
                delivery_mode,
                priority,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                timestamp,
                kind,
                user_id,
                app_id,
                cluster_id,
            },
        )
        .boxed()
}

/// A strategy for each wire type a method argument can have.
pub trait Arb: Sized + std::fmt::Debug + Clone + 'static {
    fn arb(f: Flavor) -> BoxedStrategy<Self>;
}
macro_rules! arb_any {
    ($($t:ty),*) => {$(
        impl Arb for $t {
            fn arb(_: Flavor) -> BoxedStrategy<$t> {
                any::<$t>().boxed()
            }
        }
    )*};
}
arb_any!(bool, u8, u16, u32, u64);
impl Arb for ShortStr {
    fn arb(f: Flavor) -> BoxedStrategy<ShortStr> {
        short_str(f)
    }
}
impl Arb for LongStr {
    fn arb(_: Flavor) -> BoxedStrategy<LongStr> {
        long_str()
    }
}
impl Arb for FieldTable {
    fn arb(f: Flavor) -> BoxedStrategy<FieldTable> {
        field_table(f)
    }
}

/// `m!(flavor; Name { field: Type, ... })` builds a strategy for `Method::Name` with every
/// field arbitrary; `m!(flavor; Name)` is a field-less method.
macro_rules! m {
    ($f:expr; $name:ident) => {
        Just(Method::$name(method::$name)).boxed()
    };
    ($f:expr; $name:ident { $($field:ident : $t:ty),+ $(,)? }) => {
        ( $( <$t as Arb>::arb($f), )+ )
            .prop_map(|( $($field,)+ )| Method::$name(method::$name { $($field),+ }))
            .boxed()
    };
}

/// A strategy for the method `(class, method)`; panics on ids not in `ALL_METHODS`.
pub fn method_for(f: Flavor, class: u16, id: u16) -> BoxedStrategy<Method> {
    let f = if f == Flavor::Raw && !RAW_SHORTSTR_METHODS.contains(&(class, id)) { Flavor::Utf8 } else { f };
    match (class, id) {
        (60, 10) => m!(f; BasicQos { prefetch_size: u32, prefetch_count: u16, global: bool }),
        (60, 11) => m!(f; BasicQosOk),
        (60, 20) => m!(f; BasicConsume { ticket: u16, queue: ShortStr, consumer_tag: ShortStr,
            no_local: bool, no_ack: bool, exclusive: bool, no_wait: bool, arguments: FieldTable }),
        (60, 21) => m!(f; BasicConsumeOk { consumer_tag: ShortStr }),
        (60, 30) => m!(f; BasicCancel { consumer_tag: ShortStr, no_wait: bool }),
        (60, 31) => m!(f; BasicCancelOk { consumer_tag: ShortStr }),
        (60, 40) => m!(f; BasicPublish { ticket: u16, exchange: ShortStr, routing_key: ShortStr,
            mandatory: bool, immediate: bool }),
        (60, 50) => m!(f; BasicReturn { reply_code: u16, reply_text: ShortStr, exchange: ShortStr,
            routing_key: ShortStr }),
        (60, 60) => {
            m!(f; BasicDeliver { consumer_tag: ShortStr, delivery_tag: u64, redelivered: bool,
            exchange: ShortStr, routing_key: ShortStr })
        }
        (60, 70) => m!(f; BasicGet { ticket: u16, queue: ShortStr, no_ack: bool }),
        (60, 71) => m!(f; BasicGetOk { delivery_tag: u64, redelivered: bool, exchange: ShortStr,
            routing_key: ShortStr, message_count: u32 }),
        (60, 72) => m!(f; BasicGetEmpty { cluster_id: ShortStr }),
        (60, 80) => m!(f; BasicAck { delivery_tag: u64, multiple: bool }),
        (60, 90) => m!(f; BasicReject { delivery_tag: u64, requeue: bool }),
        (60, 100) => m!(f; BasicRecoverAsync { requeue: bool }),
        (60, 110) => m!(f; BasicRecover { requeue: bool }),
        (60, 111) => m!(f; BasicRecoverOk),
        (60, 120) => m!(f; BasicNack { delivery_tag: u64, multiple: bool, requeue: bool }),
        (10, 10) => m!(f; ConnectionStart { version_major: u8, version_minor: u8,
            server_properties: FieldTable, mechanisms: LongStr, locales: LongStr }),
        (10, 11) => m!(f; ConnectionStartOk { client_properties: FieldTable, mechanism: ShortStr,
            response: LongStr, locale: ShortStr }),
        (10, 20) => m!(f; ConnectionSecure { challenge: LongStr }),
        (10, 21) => m!(f; ConnectionSecureOk { response: LongStr }),
        (10, 30) => m!(f; ConnectionTune { channel_max: u16, frame_max: u32, heartbeat: u16 }),
        (10, 31) => m!(f; ConnectionTuneOk { channel_max: u16, frame_max: u32, heartbeat: u16 }),
        (10, 40) => {
            m!(f; ConnectionOpen { virtual_host: ShortStr, capabilities: ShortStr, insist: bool })
        }
        (10, 41) => m!(f; ConnectionOpenOk { known_hosts: ShortStr }),
        (10, 50) => m!(f; ConnectionClose { reply_code: u16, reply_text: ShortStr, class_id: u16,
            method_id: u16 }),
        (10, 51) => m!(f; ConnectionCloseOk),
        (10, 60) => m!(f; ConnectionBlocked { reason: ShortStr }),
        (10, 61) => m!(f; ConnectionUnblocked),
        (10, 70) => m!(f; ConnectionUpdateSecret { new_secret: LongStr, reason: ShortStr }),
        (10, 71) => m!(f; ConnectionUpdateSecretOk),
        (20, 10) => m!(f; ChannelOpen { out_of_band: ShortStr }),
        (20, 11) => m!(f; ChannelOpenOk { channel_id: LongStr }),
        (20, 20) => m!(f; ChannelFlow { active: bool }),
        (20, 21) => m!(f; ChannelFlowOk { active: bool }),
        (20, 40) => m!(f; ChannelClose { reply_code: u16, reply_text: ShortStr, class_id: u16,
            method_id: u16 }),
        (20, 41) => m!(f; ChannelCloseOk),
        (30, 10) => {
            m!(f; AccessRequest { realm: ShortStr, exclusive: bool, passive: bool, active: bool,
            write: bool, read: bool })
        }
        (30, 11) => m!(f; AccessRequestOk { ticket: u16 }),
        (40, 10) => m!(f; ExchangeDeclare { ticket: u16, exchange: ShortStr, kind: ShortStr,
            passive: bool, durable: bool, auto_delete: bool, internal: bool, no_wait: bool,
            arguments: FieldTable }),
        (40, 11) => m!(f; ExchangeDeclareOk),
        (40, 20) => {
            m!(f; ExchangeDelete { ticket: u16, exchange: ShortStr, if_unused: bool, no_wait: bool })
        }
        (40, 21) => m!(f; ExchangeDeleteOk),
        (40, 30) => m!(f; ExchangeBind { ticket: u16, destination: ShortStr, source: ShortStr,
            routing_key: ShortStr, no_wait: bool, arguments: FieldTable }),
        (40, 31) => m!(f; ExchangeBindOk),
        (40, 40) => m!(f; ExchangeUnbind { ticket: u16, destination: ShortStr, source: ShortStr,
            routing_key: ShortStr, no_wait: bool, arguments: FieldTable }),
        (40, 51) => m!(f; ExchangeUnbindOk),
        (50, 10) => {
            m!(f; QueueDeclare { ticket: u16, queue: ShortStr, passive: bool, durable: bool,
            exclusive: bool, auto_delete: bool, no_wait: bool, arguments: FieldTable })
        }
        (50, 11) => {
            m!(f; QueueDeclareOk { queue: ShortStr, message_count: u32, consumer_count: u32 })
        }
        (50, 20) => m!(f; QueueBind { ticket: u16, queue: ShortStr, exchange: ShortStr,
            routing_key: ShortStr, no_wait: bool, arguments: FieldTable }),
        (50, 21) => m!(f; QueueBindOk),
        (50, 30) => m!(f; QueuePurge { ticket: u16, queue: ShortStr, no_wait: bool }),
        (50, 31) => m!(f; QueuePurgeOk { message_count: u32 }),
        (50, 40) => {
            m!(f; QueueDelete { ticket: u16, queue: ShortStr, if_unused: bool, if_empty: bool,
            no_wait: bool })
        }
        (50, 41) => m!(f; QueueDeleteOk { message_count: u32 }),
        (50, 50) => m!(f; QueueUnbind { ticket: u16, queue: ShortStr, exchange: ShortStr,
            routing_key: ShortStr, arguments: FieldTable }),
        (50, 51) => m!(f; QueueUnbindOk),
        (90, 10) => m!(f; TxSelect),
        (90, 11) => m!(f; TxSelectOk),
        (90, 20) => m!(f; TxCommit),
        (90, 21) => m!(f; TxCommitOk),
        (90, 30) => m!(f; TxRollback),
        (90, 31) => m!(f; TxRollbackOk),
        (85, 10) => m!(f; ConfirmSelect { no_wait: bool }),
        (85, 11) => m!(f; ConfirmSelectOk),
        other => panic!("no strategy for method {other:?}: add it to tests/common/mod.rs"),
    }
}

/// Any method of `ALL_METHODS`, each equally likely, with arbitrary fields.
pub fn any_method(f: Flavor) -> BoxedStrategy<Method> {
    let arms: Vec<BoxedStrategy<Method>> = ALL_METHODS.iter().map(|&(c, m, _)| method_for(f, c, m)).collect();
    proptest::strategy::Union::new(arms).boxed()
}

/// Sort the keys of every table (recursively, arrays keep their order): the amq-protocol crate
/// stores tables as ordered maps, so this is the form its tables come back in.
pub fn sort_table(t: &FieldTable) -> FieldTable {
    let mut items: Vec<(ShortStr, FieldValue)> = t.0.iter().map(|(k, v)| (k.clone(), sort_value(v))).collect();
    items.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    FieldTable(items)
}

fn sort_value(v: &FieldValue) -> FieldValue {
    match v {
        FieldValue::Table(t) => FieldValue::Table(sort_table(t)),
        FieldValue::Array(a) => FieldValue::Array(a.iter().map(sort_value).collect()),
        other => other.clone(),
    }
}
