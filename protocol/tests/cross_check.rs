//! Cross-check against an independent codec, the `amq-protocol` crate (used by lapin).
//!
//! For every method of `ALL_METHODS` (amq-protocol knows them all) and for content headers:
//! - ours -> bytes -> amq-protocol's `parse_frame` gives the same fields;
//! - amq-protocol's `gen_frame` -> bytes -> ours gives the same fields, and the very same bytes as
//!   our own encoder.
//!
//! What amq-protocol cannot represent is kept out of the inputs or normalised away:
//! - its short strings are Rust `String`s, so short strings here are printable ASCII;
//! - its tables are `BTreeMap`s: keys are unique here and compared in sorted order;
//! - it drops reserved fields (`ticket`, `basic.qos` prefetch-size, `connection.open` capabilities
//!   and insist, `connection.open-ok` known-hosts, `channel.open` out-of-band, `channel.open-ok`
//!   channel-id, `basic.get-empty` cluster-id, `access.request-ok` ticket), writing zero/empty (1 for
//!   the access ticket); they are set the same way here before comparing.
mod common;

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{
    access as ac, basic as ba, channel as chn, confirm as cf, connection as cn, exchange as ex, queue as qu, tx,
    AMQPClass,
};
use amq_protocol::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable as AmqTable, LongString, ShortString,
};
use bytes::{Bytes, BytesMut};
use common::{method_for, properties, sort_table, Flavor};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use warren_protocol::frame::{self, FrameType};
use warren_protocol::method::{self as m, Method, ALL_METHODS};
use warren_protocol::properties::ContentHeader;
use warren_protocol::{fast, BasicProperties, FieldTable, FieldValue, LongStr, ShortStr};

// ---- value conversions ----------------------------------------------------------------------

fn ss(s: &ShortStr) -> ShortString {
    ShortString::from(std::str::from_utf8(s.as_bytes()).expect("ASCII short string"))
}
fn sr(s: &ShortString) -> ShortStr {
    ShortStr::from(s.as_str().to_owned())
}
fn ls(s: &LongStr) -> LongString {
    LongString::from(s.as_bytes().to_vec())
}
fn lr(s: &LongString) -> LongStr {
    LongStr::from(s.as_bytes().to_vec())
}

fn to_amq_value(v: &FieldValue) -> AMQPValue {
    match v {
        FieldValue::Bool(b) => AMQPValue::Boolean(*b),
        FieldValue::I8(x) => AMQPValue::ShortShortInt(*x),
        FieldValue::U8(x) => AMQPValue::ShortShortUInt(*x),
        FieldValue::I16(x) => AMQPValue::ShortInt(*x),
        FieldValue::U16(x) => AMQPValue::ShortUInt(*x),
        FieldValue::I32(x) => AMQPValue::LongInt(*x),
        FieldValue::U32(x) => AMQPValue::LongUInt(*x),
        FieldValue::I64(x) => AMQPValue::LongLongInt(*x),
        FieldValue::F32(x) => AMQPValue::Float(*x),
        FieldValue::F64(x) => AMQPValue::Double(*x),
        FieldValue::Decimal(scale, value) => AMQPValue::DecimalValue(DecimalValue { scale: *scale, value: *value }),
        FieldValue::LongStr(s) => AMQPValue::LongString(ls(s)),
        FieldValue::Bytes(s) => AMQPValue::ByteArray(ByteArray::from(s.as_bytes())),
        FieldValue::Array(a) => AMQPValue::FieldArray(FieldArray::from(a.iter().map(to_amq_value).collect::<Vec<_>>())),
        FieldValue::Timestamp(t) => AMQPValue::Timestamp(*t),
        FieldValue::Table(t) => AMQPValue::FieldTable(to_amq_table(t)),
        FieldValue::Void => AMQPValue::Void,
    }
}

fn from_amq_value(v: &AMQPValue) -> FieldValue {
    match v {
        AMQPValue::Boolean(b) => FieldValue::Bool(*b),
        AMQPValue::ShortShortInt(x) => FieldValue::I8(*x),
        AMQPValue::ShortShortUInt(x) => FieldValue::U8(*x),
        AMQPValue::ShortInt(x) => FieldValue::I16(*x),
        AMQPValue::ShortUInt(x) => FieldValue::U16(*x),
        AMQPValue::LongInt(x) => FieldValue::I32(*x),
        AMQPValue::LongUInt(x) => FieldValue::U32(*x),
        AMQPValue::LongLongInt(x) => FieldValue::I64(*x),
        AMQPValue::Float(x) => FieldValue::F32(*x),
        AMQPValue::Double(x) => FieldValue::F64(*x),
        AMQPValue::DecimalValue(d) => FieldValue::Decimal(d.scale, d.value),
        AMQPValue::LongString(s) => FieldValue::LongStr(lr(s)),
        AMQPValue::ByteArray(b) => FieldValue::Bytes(LongStr::from(b.as_slice().to_vec())),
        AMQPValue::FieldArray(a) => FieldValue::Array(a.as_slice().iter().map(from_amq_value).collect()),
        AMQPValue::Timestamp(t) => FieldValue::Timestamp(*t),
        AMQPValue::FieldTable(t) => FieldValue::Table(from_amq_table(t)),
        AMQPValue::Void => FieldValue::Void,
        // amq-protocol only produces this for values built in code; its parser never does.
        AMQPValue::ShortString(s) => panic!("amq-protocol parsed a short-string value {s:?}"),
    }
}

fn to_amq_table(t: &FieldTable) -> AmqTable {
    let mut out = AmqTable::default();
    for (k, v) in t.iter() {
        out.insert(ss(k), to_amq_value(v));
    }
    out
}

fn from_amq_table(t: &AmqTable) -> FieldTable {
    FieldTable(t.inner().iter().map(|(k, v)| (sr(k), from_amq_value(v))).collect())
}

fn to_amq_props(p: &BasicProperties) -> ba::AMQPProperties {
    let mut a = ba::AMQPProperties::default();
    macro_rules! set {
        ($($field:ident => $with:ident via $conv:expr),* $(,)?) => {$(
            if let Some(v) = &p.$field {
                a = a.$with($conv(v));
            }
        )*};
    }
    set!(
        content_type => with_content_type via ss,
        content_encoding => with_content_encoding via ss,
        headers => with_headers via to_amq_table,
        delivery_mode => with_delivery_mode via |v: &u8| *v,
        priority => with_priority via |v: &u8| *v,
        correlation_id => with_correlation_id via ss,
        reply_to => with_reply_to via ss,
        expiration => with_expiration via ss,
        message_id => with_message_id via ss,
        timestamp => with_timestamp via |v: &u64| *v,
        kind => with_type via ss,
        user_id => with_user_id via ss,
        app_id => with_app_id via ss,
        cluster_id => with_cluster_id via ss,
    );
    a
}

fn from_amq_props(a: &ba::AMQPProperties) -> BasicProperties {
    BasicProperties {
        content_type: a.content_type().as_ref().map(sr),
        content_encoding: a.content_encoding().as_ref().map(sr),
        headers: a.headers().as_ref().map(from_amq_table),
        delivery_mode: *a.delivery_mode(),
        priority: *a.priority(),
        correlation_id: a.correlation_id().as_ref().map(sr),
        reply_to: a.reply_to().as_ref().map(sr),
        expiration: a.expiration().as_ref().map(sr),
        message_id: a.message_id().as_ref().map(sr),
        timestamp: *a.timestamp(),
        kind: a.kind().as_ref().map(sr),
        user_id: a.user_id().as_ref().map(sr),
        app_id: a.app_id().as_ref().map(sr),
        cluster_id: a.cluster_id().as_ref().map(sr),
    }
}

fn normalize_props(p: &BasicProperties) -> BasicProperties {
    BasicProperties { headers: p.headers.as_ref().map(sort_table), ..p.clone() }
}

// ---- method conversions ---------------------------------------------------------------------

/// Our method as amq-protocol's (reserved fields are dropped, as amq-protocol does).
fn to_amq(m: &Method) -> AMQPClass {
    use AMQPClass as C;
    let t = to_amq_table;
    match m {
        Method::BasicQos(x) => {
            C::Basic(ba::AMQPMethod::Qos(ba::Qos { prefetch_count: x.prefetch_count, global: x.global }))
        }
        Method::BasicQosOk(_) => C::Basic(ba::AMQPMethod::QosOk(ba::QosOk {})),
        Method::BasicConsume(x) => C::Basic(ba::AMQPMethod::Consume(ba::Consume {
            queue: ss(&x.queue),
            consumer_tag: ss(&x.consumer_tag),
            no_local: x.no_local,
            no_ack: x.no_ack,
            exclusive: x.exclusive,
            nowait: x.no_wait,
            arguments: t(&x.arguments),
        })),
        Method::BasicConsumeOk(x) => {
            C::Basic(ba::AMQPMethod::ConsumeOk(ba::ConsumeOk { consumer_tag: ss(&x.consumer_tag) }))
        }
        Method::BasicCancel(x) => {
            C::Basic(ba::AMQPMethod::Cancel(ba::Cancel { consumer_tag: ss(&x.consumer_tag), nowait: x.no_wait }))
        }
        Method::BasicCancelOk(x) => {
            C::Basic(ba::AMQPMethod::CancelOk(ba::CancelOk { consumer_tag: ss(&x.consumer_tag) }))
        }
        Method::BasicPublish(x) => C::Basic(ba::AMQPMethod::Publish(ba::Publish {
            exchange: ss(&x.exchange),
            routing_key: ss(&x.routing_key),
            mandatory: x.mandatory,
            immediate: x.immediate,
        })),
        Method::BasicReturn(x) => C::Basic(ba::AMQPMethod::Return(ba::Return {
            reply_code: x.reply_code,
            reply_text: ss(&x.reply_text),
            exchange: ss(&x.exchange),
            routing_key: ss(&x.routing_key),
        })),
        Method::BasicDeliver(x) => C::Basic(ba::AMQPMethod::Deliver(ba::Deliver {
            consumer_tag: ss(&x.consumer_tag),
            delivery_tag: x.delivery_tag,
            redelivered: x.redelivered,
            exchange: ss(&x.exchange),
            routing_key: ss(&x.routing_key),
        })),
        Method::BasicGet(x) => C::Basic(ba::AMQPMethod::Get(ba::Get { queue: ss(&x.queue), no_ack: x.no_ack })),
        Method::BasicGetOk(x) => C::Basic(ba::AMQPMethod::GetOk(ba::GetOk {
            delivery_tag: x.delivery_tag,
            redelivered: x.redelivered,
            exchange: ss(&x.exchange),
            routing_key: ss(&x.routing_key),
            message_count: x.message_count,
        })),
        Method::BasicGetEmpty(_) => C::Basic(ba::AMQPMethod::GetEmpty(ba::GetEmpty {})),
        Method::BasicAck(x) => {
            C::Basic(ba::AMQPMethod::Ack(ba::Ack { delivery_tag: x.delivery_tag, multiple: x.multiple }))
        }
        Method::BasicReject(x) => {
            C::Basic(ba::AMQPMethod::Reject(ba::Reject { delivery_tag: x.delivery_tag, requeue: x.requeue }))
        }
        Method::BasicRecoverAsync(x) => C::Basic(ba::AMQPMethod::RecoverAsync(ba::RecoverAsync { requeue: x.requeue })),
        Method::BasicRecover(x) => C::Basic(ba::AMQPMethod::Recover(ba::Recover { requeue: x.requeue })),
        Method::BasicRecoverOk(_) => C::Basic(ba::AMQPMethod::RecoverOk(ba::RecoverOk {})),
        Method::BasicNack(x) => C::Basic(ba::AMQPMethod::Nack(ba::Nack {
            delivery_tag: x.delivery_tag,
            multiple: x.multiple,
            requeue: x.requeue,
        })),
        Method::ConnectionStart(x) => C::Connection(cn::AMQPMethod::Start(cn::Start {
            version_major: x.version_major,
            version_minor: x.version_minor,
            server_properties: t(&x.server_properties),
            mechanisms: ls(&x.mechanisms),
            locales: ls(&x.locales),
        })),
        Method::ConnectionStartOk(x) => C::Connection(cn::AMQPMethod::StartOk(cn::StartOk {
            client_properties: t(&x.client_properties),
            mechanism: ss(&x.mechanism),
            response: ls(&x.response),
            locale: ss(&x.locale),
        })),
        Method::ConnectionSecure(x) => {
            C::Connection(cn::AMQPMethod::Secure(cn::Secure { challenge: ls(&x.challenge) }))
        }
        Method::ConnectionSecureOk(x) => {
            C::Connection(cn::AMQPMethod::SecureOk(cn::SecureOk { response: ls(&x.response) }))
        }
        Method::ConnectionTune(x) => C::Connection(cn::AMQPMethod::Tune(cn::Tune {
            channel_max: x.channel_max,
            frame_max: x.frame_max,
            heartbeat: x.heartbeat,
        })),
        Method::ConnectionTuneOk(x) => C::Connection(cn::AMQPMethod::TuneOk(cn::TuneOk {
            channel_max: x.channel_max,
            frame_max: x.frame_max,
            heartbeat: x.heartbeat,
        })),
        Method::ConnectionOpen(x) => {
            C::Connection(cn::AMQPMethod::Open(cn::Open { virtual_host: ss(&x.virtual_host) }))
        }
        Method::ConnectionOpenOk(_) => C::Connection(cn::AMQPMethod::OpenOk(cn::OpenOk {})),
        Method::ConnectionClose(x) => C::Connection(cn::AMQPMethod::Close(cn::Close {
            reply_code: x.reply_code,
            reply_text: ss(&x.reply_text),
            class_id: x.class_id,
            method_id: x.method_id,
        })),
        Method::ConnectionCloseOk(_) => C::Connection(cn::AMQPMethod::CloseOk(cn::CloseOk {})),
        Method::ConnectionBlocked(x) => C::Connection(cn::AMQPMethod::Blocked(cn::Blocked { reason: ss(&x.reason) })),
        Method::ConnectionUnblocked(_) => C::Connection(cn::AMQPMethod::Unblocked(cn::Unblocked {})),
        Method::ConnectionUpdateSecret(x) => C::Connection(cn::AMQPMethod::UpdateSecret(cn::UpdateSecret {
            new_secret: ls(&x.new_secret),
            reason: ss(&x.reason),
        })),
        Method::ConnectionUpdateSecretOk(_) => C::Connection(cn::AMQPMethod::UpdateSecretOk(cn::UpdateSecretOk {})),
        Method::ChannelOpen(_) => C::Channel(chn::AMQPMethod::Open(chn::Open {})),
        Method::ChannelOpenOk(_) => C::Channel(chn::AMQPMethod::OpenOk(chn::OpenOk {})),
        Method::ChannelFlow(x) => C::Channel(chn::AMQPMethod::Flow(chn::Flow { active: x.active })),
        Method::ChannelFlowOk(x) => C::Channel(chn::AMQPMethod::FlowOk(chn::FlowOk { active: x.active })),
        Method::ChannelClose(x) => C::Channel(chn::AMQPMethod::Close(chn::Close {
            reply_code: x.reply_code,
            reply_text: ss(&x.reply_text),
            class_id: x.class_id,
            method_id: x.method_id,
        })),
        Method::ChannelCloseOk(_) => C::Channel(chn::AMQPMethod::CloseOk(chn::CloseOk {})),
        Method::AccessRequest(x) => C::Access(ac::AMQPMethod::Request(ac::Request {
            realm: ss(&x.realm),
            exclusive: x.exclusive,
            passive: x.passive,
            active: x.active,
            write: x.write,
            read: x.read,
        })),
        Method::AccessRequestOk(_) => C::Access(ac::AMQPMethod::RequestOk(ac::RequestOk {})),
        Method::ExchangeDeclare(x) => C::Exchange(ex::AMQPMethod::Declare(ex::Declare {
            exchange: ss(&x.exchange),
            kind: ss(&x.kind),
            passive: x.passive,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            nowait: x.no_wait,
            arguments: t(&x.arguments),
        })),
        Method::ExchangeDeclareOk(_) => C::Exchange(ex::AMQPMethod::DeclareOk(ex::DeclareOk {})),
        Method::ExchangeDelete(x) => C::Exchange(ex::AMQPMethod::Delete(ex::Delete {
            exchange: ss(&x.exchange),
            if_unused: x.if_unused,
            nowait: x.no_wait,
        })),
        Method::ExchangeDeleteOk(_) => C::Exchange(ex::AMQPMethod::DeleteOk(ex::DeleteOk {})),
        Method::ExchangeBind(x) => C::Exchange(ex::AMQPMethod::Bind(ex::Bind {
            destination: ss(&x.destination),
            source: ss(&x.source),
            routing_key: ss(&x.routing_key),
            nowait: x.no_wait,
            arguments: t(&x.arguments),
        })),
        Method::ExchangeBindOk(_) => C::Exchange(ex::AMQPMethod::BindOk(ex::BindOk {})),
        Method::ExchangeUnbind(x) => C::Exchange(ex::AMQPMethod::Unbind(ex::Unbind {
            destination: ss(&x.destination),
            source: ss(&x.source),
            routing_key: ss(&x.routing_key),
            nowait: x.no_wait,
            arguments: t(&x.arguments),
        })),
        Method::ExchangeUnbindOk(_) => C::Exchange(ex::AMQPMethod::UnbindOk(ex::UnbindOk {})),
        Method::QueueDeclare(x) => C::Queue(qu::AMQPMethod::Declare(qu::Declare {
            queue: ss(&x.queue),
            passive: x.passive,
            durable: x.durable,
            exclusive: x.exclusive,
            auto_delete: x.auto_delete,
            nowait: x.no_wait,
            arguments: t(&x.arguments),
        })),
        Method::QueueDeclareOk(x) => C::Queue(qu::AMQPMethod::DeclareOk(qu::DeclareOk {
            queue: ss(&x.queue),
            message_count: x.message_count,
            consumer_count: x.consumer_count,
        })),
        Method::QueueBind(x) => C::Queue(qu::AMQPMethod::Bind(qu::Bind {
            queue: ss(&x.queue),
            exchange: ss(&x.exchange),
            routing_key: ss(&x.routing_key),
            nowait: x.no_wait,
            arguments: t(&x.arguments),
        })),
        Method::QueueBindOk(_) => C::Queue(qu::AMQPMethod::BindOk(qu::BindOk {})),
        Method::QueuePurge(x) => C::Queue(qu::AMQPMethod::Purge(qu::Purge { queue: ss(&x.queue), nowait: x.no_wait })),
        Method::QueuePurgeOk(x) => C::Queue(qu::AMQPMethod::PurgeOk(qu::PurgeOk { message_count: x.message_count })),
        Method::QueueDelete(x) => C::Queue(qu::AMQPMethod::Delete(qu::Delete {
            queue: ss(&x.queue),
            if_unused: x.if_unused,
            if_empty: x.if_empty,
            nowait: x.no_wait,
        })),
        Method::QueueDeleteOk(x) => C::Queue(qu::AMQPMethod::DeleteOk(qu::DeleteOk { message_count: x.message_count })),
        Method::QueueUnbind(x) => C::Queue(qu::AMQPMethod::Unbind(qu::Unbind {
            queue: ss(&x.queue),
            exchange: ss(&x.exchange),
            routing_key: ss(&x.routing_key),
            arguments: t(&x.arguments),
        })),
        Method::QueueUnbindOk(_) => C::Queue(qu::AMQPMethod::UnbindOk(qu::UnbindOk {})),
        Method::TxSelect(_) => C::Tx(tx::AMQPMethod::Select(tx::Select {})),
        Method::TxSelectOk(_) => C::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
        Method::TxCommit(_) => C::Tx(tx::AMQPMethod::Commit(tx::Commit {})),
        Method::TxCommitOk(_) => C::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
        Method::TxRollback(_) => C::Tx(tx::AMQPMethod::Rollback(tx::Rollback {})),
        Method::TxRollbackOk(_) => C::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
        Method::ConfirmSelect(x) => C::Confirm(cf::AMQPMethod::Select(cf::Select { nowait: x.no_wait })),
        Method::ConfirmSelectOk(_) => C::Confirm(cf::AMQPMethod::SelectOk(cf::SelectOk {})),
    }
}

/// amq-protocol's method as ours, reserved fields zero/empty.
fn from_amq(c: &AMQPClass) -> Method {
    let t = from_amq_table;
    match c {
        AMQPClass::Basic(b) => match b {
            ba::AMQPMethod::Qos(x) => {
                m::BasicQos { prefetch_size: 0, prefetch_count: x.prefetch_count, global: x.global }.into()
            }
            ba::AMQPMethod::QosOk(_) => m::BasicQosOk.into(),
            ba::AMQPMethod::Consume(x) => m::BasicConsume {
                ticket: 0,
                queue: sr(&x.queue),
                consumer_tag: sr(&x.consumer_tag),
                no_local: x.no_local,
                no_ack: x.no_ack,
                exclusive: x.exclusive,
                no_wait: x.nowait,
                arguments: t(&x.arguments),
            }
            .into(),
            ba::AMQPMethod::ConsumeOk(x) => m::BasicConsumeOk { consumer_tag: sr(&x.consumer_tag) }.into(),
            ba::AMQPMethod::Cancel(x) => m::BasicCancel { consumer_tag: sr(&x.consumer_tag), no_wait: x.nowait }.into(),
            ba::AMQPMethod::CancelOk(x) => m::BasicCancelOk { consumer_tag: sr(&x.consumer_tag) }.into(),
            ba::AMQPMethod::Publish(x) => m::BasicPublish {
                ticket: 0,
                exchange: sr(&x.exchange),
                routing_key: sr(&x.routing_key),
                mandatory: x.mandatory,
                immediate: x.immediate,
            }
            .into(),
            ba::AMQPMethod::Return(x) => m::BasicReturn {
                reply_code: x.reply_code,
                reply_text: sr(&x.reply_text),
                exchange: sr(&x.exchange),
                routing_key: sr(&x.routing_key),
            }
            .into(),
            ba::AMQPMethod::Deliver(x) => m::BasicDeliver {
                consumer_tag: sr(&x.consumer_tag),
                delivery_tag: x.delivery_tag,
                redelivered: x.redelivered,
                exchange: sr(&x.exchange),
                routing_key: sr(&x.routing_key),
            }
            .into(),
            ba::AMQPMethod::Get(x) => m::BasicGet { ticket: 0, queue: sr(&x.queue), no_ack: x.no_ack }.into(),
            ba::AMQPMethod::GetOk(x) => m::BasicGetOk {
                delivery_tag: x.delivery_tag,
                redelivered: x.redelivered,
                exchange: sr(&x.exchange),
                routing_key: sr(&x.routing_key),
                message_count: x.message_count,
            }
            .into(),
            ba::AMQPMethod::GetEmpty(_) => m::BasicGetEmpty { cluster_id: ShortStr::empty() }.into(),
            ba::AMQPMethod::Ack(x) => m::BasicAck { delivery_tag: x.delivery_tag, multiple: x.multiple }.into(),
            ba::AMQPMethod::Reject(x) => m::BasicReject { delivery_tag: x.delivery_tag, requeue: x.requeue }.into(),
            ba::AMQPMethod::RecoverAsync(x) => m::BasicRecoverAsync { requeue: x.requeue }.into(),
            ba::AMQPMethod::Recover(x) => m::BasicRecover { requeue: x.requeue }.into(),
            ba::AMQPMethod::RecoverOk(_) => m::BasicRecoverOk.into(),
            ba::AMQPMethod::Nack(x) => {
                m::BasicNack { delivery_tag: x.delivery_tag, multiple: x.multiple, requeue: x.requeue }.into()
            }
        },
        AMQPClass::Connection(c) => match c {
            cn::AMQPMethod::Start(x) => m::ConnectionStart {
                version_major: x.version_major,
                version_minor: x.version_minor,
                server_properties: t(&x.server_properties),
                mechanisms: lr(&x.mechanisms),
                locales: lr(&x.locales),
            }
            .into(),
            cn::AMQPMethod::StartOk(x) => m::ConnectionStartOk {
                client_properties: t(&x.client_properties),
                mechanism: sr(&x.mechanism),
                response: lr(&x.response),
                locale: sr(&x.locale),
            }
            .into(),
            cn::AMQPMethod::Secure(x) => m::ConnectionSecure { challenge: lr(&x.challenge) }.into(),
            cn::AMQPMethod::SecureOk(x) => m::ConnectionSecureOk { response: lr(&x.response) }.into(),
            cn::AMQPMethod::Tune(x) => {
                m::ConnectionTune { channel_max: x.channel_max, frame_max: x.frame_max, heartbeat: x.heartbeat }.into()
            }
            cn::AMQPMethod::TuneOk(x) => {
                m::ConnectionTuneOk { channel_max: x.channel_max, frame_max: x.frame_max, heartbeat: x.heartbeat }
                    .into()
            }
            cn::AMQPMethod::Open(x) => {
                m::ConnectionOpen { virtual_host: sr(&x.virtual_host), capabilities: ShortStr::empty(), insist: false }
                    .into()
            }
            cn::AMQPMethod::OpenOk(_) => m::ConnectionOpenOk { known_hosts: ShortStr::empty() }.into(),
            cn::AMQPMethod::Close(x) => m::ConnectionClose {
                reply_code: x.reply_code,
                reply_text: sr(&x.reply_text),
                class_id: x.class_id,
                method_id: x.method_id,
            }
            .into(),
            cn::AMQPMethod::CloseOk(_) => m::ConnectionCloseOk.into(),
            cn::AMQPMethod::Blocked(x) => m::ConnectionBlocked { reason: sr(&x.reason) }.into(),
            cn::AMQPMethod::Unblocked(_) => m::ConnectionUnblocked.into(),
            cn::AMQPMethod::UpdateSecret(x) => {
                m::ConnectionUpdateSecret { new_secret: lr(&x.new_secret), reason: sr(&x.reason) }.into()
            }
            cn::AMQPMethod::UpdateSecretOk(_) => m::ConnectionUpdateSecretOk.into(),
        },
        AMQPClass::Channel(c) => match c {
            chn::AMQPMethod::Open(_) => m::ChannelOpen { out_of_band: ShortStr::empty() }.into(),
            chn::AMQPMethod::OpenOk(_) => m::ChannelOpenOk { channel_id: LongStr::default() }.into(),
            chn::AMQPMethod::Flow(x) => m::ChannelFlow { active: x.active }.into(),
            chn::AMQPMethod::FlowOk(x) => m::ChannelFlowOk { active: x.active }.into(),
            chn::AMQPMethod::Close(x) => m::ChannelClose {
                reply_code: x.reply_code,
                reply_text: sr(&x.reply_text),
                class_id: x.class_id,
                method_id: x.method_id,
            }
            .into(),
            chn::AMQPMethod::CloseOk(_) => m::ChannelCloseOk.into(),
        },
        AMQPClass::Access(a) => match a {
            ac::AMQPMethod::Request(x) => m::AccessRequest {
                realm: sr(&x.realm),
                exclusive: x.exclusive,
                passive: x.passive,
                active: x.active,
                write: x.write,
                read: x.read,
            }
            .into(),
            // amq-protocol writes ticket 1 here (the only reserved field it does not zero).
            ac::AMQPMethod::RequestOk(_) => m::AccessRequestOk { ticket: 1 }.into(),
        },
        AMQPClass::Exchange(e) => match e {
            ex::AMQPMethod::Declare(x) => m::ExchangeDeclare {
                ticket: 0,
                exchange: sr(&x.exchange),
                kind: sr(&x.kind),
                passive: x.passive,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                no_wait: x.nowait,
                arguments: t(&x.arguments),
            }
            .into(),
            ex::AMQPMethod::DeclareOk(_) => m::ExchangeDeclareOk.into(),
            ex::AMQPMethod::Delete(x) => {
                m::ExchangeDelete { ticket: 0, exchange: sr(&x.exchange), if_unused: x.if_unused, no_wait: x.nowait }
                    .into()
            }
            ex::AMQPMethod::DeleteOk(_) => m::ExchangeDeleteOk.into(),
            ex::AMQPMethod::Bind(x) => m::ExchangeBind {
                ticket: 0,
                destination: sr(&x.destination),
                source: sr(&x.source),
                routing_key: sr(&x.routing_key),
                no_wait: x.nowait,
                arguments: t(&x.arguments),
            }
            .into(),
            ex::AMQPMethod::BindOk(_) => m::ExchangeBindOk.into(),
            ex::AMQPMethod::Unbind(x) => m::ExchangeUnbind {
                ticket: 0,
                destination: sr(&x.destination),
                source: sr(&x.source),
                routing_key: sr(&x.routing_key),
                no_wait: x.nowait,
                arguments: t(&x.arguments),
            }
            .into(),
            ex::AMQPMethod::UnbindOk(_) => m::ExchangeUnbindOk.into(),
        },
        AMQPClass::Queue(q) => match q {
            qu::AMQPMethod::Declare(x) => m::QueueDeclare {
                ticket: 0,
                queue: sr(&x.queue),
                passive: x.passive,
                durable: x.durable,
                exclusive: x.exclusive,
                auto_delete: x.auto_delete,
                no_wait: x.nowait,
                arguments: t(&x.arguments),
            }
            .into(),
            qu::AMQPMethod::DeclareOk(x) => m::QueueDeclareOk {
                queue: sr(&x.queue),
                message_count: x.message_count,
                consumer_count: x.consumer_count,
            }
            .into(),
            qu::AMQPMethod::Bind(x) => m::QueueBind {
                ticket: 0,
                queue: sr(&x.queue),
                exchange: sr(&x.exchange),
                routing_key: sr(&x.routing_key),
                no_wait: x.nowait,
                arguments: t(&x.arguments),
            }
            .into(),
            qu::AMQPMethod::BindOk(_) => m::QueueBindOk.into(),
            qu::AMQPMethod::Purge(x) => m::QueuePurge { ticket: 0, queue: sr(&x.queue), no_wait: x.nowait }.into(),
            qu::AMQPMethod::PurgeOk(x) => m::QueuePurgeOk { message_count: x.message_count }.into(),
            qu::AMQPMethod::Delete(x) => m::QueueDelete {
                ticket: 0,
                queue: sr(&x.queue),
                if_unused: x.if_unused,
                if_empty: x.if_empty,
                no_wait: x.nowait,
            }
            .into(),
            qu::AMQPMethod::DeleteOk(x) => m::QueueDeleteOk { message_count: x.message_count }.into(),
            qu::AMQPMethod::Unbind(x) => m::QueueUnbind {
                ticket: 0,
                queue: sr(&x.queue),
                exchange: sr(&x.exchange),
                routing_key: sr(&x.routing_key),
                arguments: t(&x.arguments),
            }
            .into(),
            qu::AMQPMethod::UnbindOk(_) => m::QueueUnbindOk.into(),
        },
        AMQPClass::Tx(x) => match x {
            tx::AMQPMethod::Select(_) => m::TxSelect.into(),
            tx::AMQPMethod::SelectOk(_) => m::TxSelectOk.into(),
            tx::AMQPMethod::Commit(_) => m::TxCommit.into(),
            tx::AMQPMethod::CommitOk(_) => m::TxCommitOk.into(),
            tx::AMQPMethod::Rollback(_) => m::TxRollback.into(),
            tx::AMQPMethod::RollbackOk(_) => m::TxRollbackOk.into(),
        },
        AMQPClass::Confirm(x) => match x {
            cf::AMQPMethod::Select(s) => m::ConfirmSelect { no_wait: s.nowait }.into(),
            cf::AMQPMethod::SelectOk(_) => m::ConfirmSelectOk.into(),
        },
    }
}

/// `m` as it looks after a trip through amq-protocol: reserved fields zeroed, tables sorted.
fn normalize(m: &Method) -> Method {
    let mut m = m.clone();
    match &mut m {
        Method::BasicQos(x) => x.prefetch_size = 0,
        Method::BasicConsume(x) => {
            x.ticket = 0;
            x.arguments = sort_table(&x.arguments);
        }
        Method::BasicPublish(x) => x.ticket = 0,
        Method::BasicGet(x) => x.ticket = 0,
        Method::BasicGetEmpty(x) => x.cluster_id = ShortStr::empty(),
        Method::ConnectionStart(x) => x.server_properties = sort_table(&x.server_properties),
        Method::ConnectionStartOk(x) => x.client_properties = sort_table(&x.client_properties),
        Method::ConnectionOpen(x) => {
            x.capabilities = ShortStr::empty();
            x.insist = false;
        }
        Method::ConnectionOpenOk(x) => x.known_hosts = ShortStr::empty(),
        Method::ChannelOpen(x) => x.out_of_band = ShortStr::empty(),
        Method::ChannelOpenOk(x) => x.channel_id = LongStr::default(),
        Method::AccessRequestOk(x) => x.ticket = 1,
        Method::ExchangeDeclare(x) => {
            x.ticket = 0;
            x.arguments = sort_table(&x.arguments);
        }
        Method::ExchangeDelete(x) => x.ticket = 0,
        Method::ExchangeBind(x) => {
            x.ticket = 0;
            x.arguments = sort_table(&x.arguments);
        }
        Method::ExchangeUnbind(x) => {
            x.ticket = 0;
            x.arguments = sort_table(&x.arguments);
        }
        Method::QueueDeclare(x) => {
            x.ticket = 0;
            x.arguments = sort_table(&x.arguments);
        }
        Method::QueueBind(x) => {
            x.ticket = 0;
            x.arguments = sort_table(&x.arguments);
        }
        Method::QueuePurge(x) => x.ticket = 0,
        Method::QueueDelete(x) => x.ticket = 0,
        Method::QueueUnbind(x) => {
            x.ticket = 0;
            x.arguments = sort_table(&x.arguments);
        }
        _ => {}
    }
    m
}

// ---- helpers --------------------------------------------------------------------------------

fn amq_bytes(f: &AMQPFrame) -> Vec<u8> {
    let (buf, _) = gen_frame(f)(WriteContext::from(Vec::new())).expect("amq-protocol gen_frame").into_inner();
    buf
}

fn amq_parse(bytes: &[u8]) -> AMQPFrame {
    match parse_frame(bytes) {
        Ok((rest, f)) => {
            assert!(rest.is_empty(), "amq-protocol left {} bytes", rest.len());
            f
        }
        Err(e) => panic!("amq-protocol failed to parse {bytes:02x?}: {e:?}"),
    }
}

fn ours_decode_one(bytes: &[u8]) -> warren_protocol::Frame {
    let mut buf = BytesMut::from(bytes);
    let f = frame::decode(&mut buf, 0).expect("frame").expect("complete frame");
    assert!(buf.is_empty());
    f
}

/// Both directions for one method; returns Err with a description on mismatch.
fn check_method(ch: u16, m: &Method) -> Result<(), TestCaseError> {
    let norm = normalize(m);

    // Ours -> amq-protocol.
    let mut ours = BytesMut::new();
    frame::encode_method(&mut ours, ch, m);
    match amq_parse(&ours) {
        AMQPFrame::Method(c, class) => {
            prop_assert_eq!(c, ch);
            prop_assert_eq!(&from_amq(&class), &norm, "amq-protocol read our {}", m.name());
            prop_assert_eq!(&class, &to_amq(m));
        }
        other => prop_assert!(false, "amq-protocol parsed {:?}", other),
    }

    // amq-protocol -> ours, and the same bytes as our encoding of the normalised method.
    let theirs = amq_bytes(&AMQPFrame::Method(ch, to_amq(m)));
    let f = ours_decode_one(&theirs);
    prop_assert_eq!((f.kind, f.channel), (FrameType::Method, ch));
    prop_assert_eq!(&Method::decode(f.payload).expect("decode amq-protocol's method"), &norm);
    let mut ours_norm = BytesMut::new();
    frame::encode_method(&mut ours_norm, ch, &norm);
    prop_assert_eq!(&ours_norm[..], &theirs[..], "bytes of {}", m.name());
    Ok(())
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn every_method_both_directions() {
    // 40 cases per method, each method run separately so a failure names it and is shrunk.
    for &(class, id, name) in ALL_METHODS {
        let mut runner = TestRunner::new(Config { cases: 40, failure_persistence: None, ..Config::default() });
        let strategy = (any::<u16>(), method_for(Flavor::Amq, class, id));
        if let Err(e) = runner.run(&strategy, |(ch, m)| check_method(ch, &m)) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn handshake_methods_by_hand() {
    // A realistic connection.start / start-ok pair with nested capability tables.
    let caps = FieldTable(vec![
        ("publisher_confirms".into(), FieldValue::Bool(true)),
        ("consumer_cancel_notify".into(), FieldValue::Bool(true)),
        ("basic.nack".into(), FieldValue::Bool(true)),
    ]);
    let start = Method::ConnectionStart(m::ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: FieldTable(vec![
            ("product".into(), FieldValue::LongStr("Warren".into())),
            ("capabilities".into(), FieldValue::Table(caps.clone())),
            ("cluster_name".into(), FieldValue::LongStr("warren@localhost".into())),
        ]),
        mechanisms: "PLAIN AMQPLAIN".into(),
        locales: "en_US".into(),
    });
    let start_ok = Method::ConnectionStartOk(m::ConnectionStartOk {
        client_properties: FieldTable(vec![
            ("capabilities".into(), FieldValue::Table(caps)),
            ("x-list".into(), FieldValue::Array(vec![FieldValue::I64(-1), FieldValue::Void])),
        ]),
        mechanism: "PLAIN".into(),
        response: LongStr::from(b"\0guest\0guest".to_vec()),
        locale: "en_US".into(),
    });
    let tune = Method::ConnectionTune(m::ConnectionTune { channel_max: 2047, frame_max: 131072, heartbeat: 60 });
    let open = Method::ConnectionOpen(m::ConnectionOpen { virtual_host: "/".into(), ..Default::default() });
    for (ch, meth) in [(0, start), (0, start_ok), (0, tune), (0, open)] {
        check_method(ch, &meth).expect("cross-check");
    }
}

#[test]
fn duplicate_keys_collapse_in_amq_protocol() {
    // Warren keeps duplicates; amq-protocol reads the same bytes as a map where the last one wins.
    let t = FieldTable(vec![
        ("b".into(), FieldValue::U8(1)),
        ("a".into(), FieldValue::Void),
        ("b".into(), FieldValue::I32(7)),
    ]);
    let meth = Method::QueueDeclare(m::QueueDeclare { queue: "q".into(), arguments: t, ..Default::default() });
    let mut ours = BytesMut::new();
    frame::encode_method(&mut ours, 1, &meth);
    match amq_parse(&ours) {
        AMQPFrame::Method(1, AMQPClass::Queue(qu::AMQPMethod::Declare(d))) => assert_eq!(
            from_amq_table(&d.arguments),
            FieldTable(vec![("a".into(), FieldValue::Void), ("b".into(), FieldValue::I32(7))])
        ),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #[test]
    fn content_header_both_directions(
        ch in any::<u16>(),
        size in any::<u64>(),
        p in properties(Flavor::Amq),
    ) {
        let norm = normalize_props(&p);

        // Ours -> amq-protocol.
        let mut ours = BytesMut::new();
        fast::header(&mut ours, ch, size, &p.to_bytes());
        match amq_parse(&ours) {
            AMQPFrame::Header(c, h) => {
                prop_assert_eq!((c, h.class_id, h.body_size), (ch, 60, size));
                prop_assert_eq!(from_amq_props(&h.properties), norm.clone());
            }
            other => prop_assert!(false, "amq-protocol parsed {:?}", other),
        }

        // amq-protocol -> ours.
        let header = AMQPContentHeader { class_id: 60, body_size: size, properties: to_amq_props(&p) };
        let theirs = amq_bytes(&AMQPFrame::Header(ch, header));
        let f = ours_decode_one(&theirs);
        prop_assert_eq!((f.kind, f.channel), (FrameType::Header, ch));
        let h = ContentHeader::decode(f.payload).expect("header");
        prop_assert_eq!((h.class_id, h.body_size), (60, size));
        prop_assert_eq!(&h.properties, &norm.to_bytes());
        prop_assert_eq!(BasicProperties::decode(h.properties).expect("props"), norm.clone());

        let mut ours_norm = BytesMut::new();
        fast::header(&mut ours_norm, ch, size, &norm.to_bytes());
        prop_assert_eq!(&ours_norm[..], &theirs[..]);
    }

    #[test]
    fn body_frames_both_directions(
        ch in any::<u16>(),
        body in proptest::collection::vec(any::<u8>(), 1..20000),
    ) {
        let frame_max = 4096u32;
        let mut ours = BytesMut::new();
        fast::body(&mut ours, ch, &body, frame_max);
        let mut rest = &ours[..];
        let mut joined = Vec::new();
        while !rest.is_empty() {
            let (r, f) = parse_frame(rest).expect("amq-protocol parse");
            match f {
                AMQPFrame::Body(c, data) => {
                    prop_assert_eq!(c, ch);
                    prop_assert!(data.len() <= frame_max as usize - 8);
                    joined.extend_from_slice(&data);
                }
                other => prop_assert!(false, "{:?}", other),
            }
            rest = r;
        }
        prop_assert_eq!(&joined, &body);

        let piece = &body[..body.len().min(4088)];
        let theirs = amq_bytes(&AMQPFrame::Body(ch, piece.to_vec()));
        let f = ours_decode_one(&theirs);
        prop_assert_eq!((f.kind, f.channel), (FrameType::Body, ch));
        prop_assert_eq!(f.payload, Bytes::copy_from_slice(piece));
    }
}

#[test]
fn heartbeat_both_directions() {
    let mut ours = BytesMut::new();
    frame::encode_heartbeat(&mut ours);
    assert_eq!(amq_parse(&ours), AMQPFrame::Heartbeat);
    let theirs = amq_bytes(&AMQPFrame::Heartbeat);
    assert_eq!(&theirs[..], &ours[..]);
    let f = ours_decode_one(&theirs);
    assert_eq!((f.kind, f.channel, f.payload.len()), (FrameType::Heartbeat, 0, 0));
}
