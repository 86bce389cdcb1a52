//! The command dispatcher of an open stream protocol connection, and the commands that are not
//! about publishing or subscribing: create / delete, metadata, offsets, publisher sequences,
//! stream stats, command versions, and super streams (create / delete, route, partitions).
//!
//! Runs in: the connection's task.
//!
//! # Invariants
//! - Every state change goes through the vhost (declare, delete, bind), which applies its rules
//!   and permissions; this file maps results to the protocol's response codes.
//! - A super stream is a direct exchange whose bindings (binding key -> partition stream, ordered
//!   by the `x-stream-partition-order` argument) are its routes, as in RabbitMQ.
use super::conn::{Conn, Stop};
use crate::error::AmqpError;
use crate::queue::settings::QueueType;
use crate::queue::Queue;
use crate::vhost::{ExchangeSpec, QueueSpec};
use bytes::Bytes;
use std::sync::Arc;
use warren_protocol::constants as amqp;
use warren_protocol::stream::response::{Broker as WireBroker, StreamMetadata};
use warren_protocol::stream::{code, key, CommandVersion, Request, Response};
use warren_protocol::{FieldTable, FieldValue, ShortStr};

/// The binding argument that orders a super stream's partitions.
const PARTITION_ORDER: &str = "x-stream-partition-order";

/// Handle one command of an open connection.
pub fn handle(conn: &mut Conn, req: Request) -> Result<(), Stop> {
    match req {
        Request::DeclarePublisher { correlation_id, publisher_id, reference, stream } => {
            super::publish::declare(conn, correlation_id, publisher_id, reference, stream)
        }
        Request::Publish { publisher_id, messages } => super::publish::publish(conn, publisher_id, messages)?,
        Request::DeletePublisher { correlation_id, publisher_id } => {
            super::publish::delete(conn, correlation_id, publisher_id)
        }
        Request::QueryPublisherSequence { correlation_id, reference, stream } => {
            let (c, sequence) = match stream_of(conn, &stream) {
                Ok(q) => (code::OK, q.stream_publisher_sequence(&reference).unwrap_or(0)),
                Err(c) => (c, 0),
            };
            conn.tx.response(&Response::QueryPublisherSequence { correlation_id, code: c, sequence });
        }
        Request::Subscribe { correlation_id, subscription_id, stream, offset, credit, properties } => {
            super::subscribe::subscribe(conn, correlation_id, subscription_id, stream, offset, credit, properties)
        }
        Request::Credit { subscription_id, credit } => super::subscribe::credit(conn, subscription_id, credit),
        Request::Unsubscribe { correlation_id, subscription_id } => {
            super::subscribe::unsubscribe(conn, correlation_id, subscription_id)
        }
        Request::StoreOffset { reference, stream, offset } => {
            // spec(stream.store_offset): no response; an unknown stream is ignored.
            if let Ok(q) = stream_of(conn, &stream) {
                q.stream_store_offset(reference, offset);
            }
        }
        Request::QueryOffset { correlation_id, reference, stream } => {
            let (c, offset) = match stream_of(conn, &stream) {
                Ok(q) => match q.stream_query_offset(&reference) {
                    Some(o) => (code::OK, o),
                    None => (code::NO_OFFSET, 0),
                },
                Err(c) => (c, 0),
            };
            conn.tx.response(&Response::QueryOffset { correlation_id, code: c, offset });
        }
        Request::Create { correlation_id, stream, arguments } => {
            let c = create(conn, &stream, &arguments);
            conn.tx.code(key::CREATE_STREAM, correlation_id, c);
        }
        Request::Delete { correlation_id, stream } => {
            let c = delete(conn, &stream);
            conn.tx.code(key::DELETE_STREAM, correlation_id, c);
        }
        Request::Metadata { correlation_id, streams } => metadata(conn, correlation_id, streams),
        Request::Route { correlation_id, routing_key, super_stream } => {
            let (c, streams) = match partitions(conn, &super_stream) {
                Ok(p) => (code::OK, p.into_iter().filter(|(k, _)| *k == routing_key).map(|(_, s)| s).collect()),
                Err(c) => (c, Vec::new()),
            };
            conn.tx.response(&Response::Route { correlation_id, code: c, streams });
        }
        Request::Partitions { correlation_id, super_stream } => {
            let (c, streams) = match partitions(conn, &super_stream) {
                Ok(p) => {
                    let mut names: Vec<Bytes> = Vec::new();
                    for (_, s) in p {
                        if !names.contains(&s) {
                            names.push(s);
                        }
                    }
                    (code::OK, names)
                }
                Err(c) => (c, Vec::new()),
            };
            conn.tx.response(&Response::Partitions { correlation_id, code: c, streams });
        }
        Request::CreateSuperStream { correlation_id, name, partitions, binding_keys, arguments } => {
            let c = create_super_stream(conn, &name, &partitions, &binding_keys, &arguments);
            conn.tx.code(key::CREATE_SUPER_STREAM, correlation_id, c);
        }
        Request::DeleteSuperStream { correlation_id, name } => {
            let c = delete_super_stream(conn, &name);
            conn.tx.code(key::DELETE_SUPER_STREAM, correlation_id, c);
        }
        Request::StreamStats { correlation_id, stream } => {
            let (c, stats) = match stream_of(conn, &stream).map(|q| q.stream_stats()) {
                Ok(Some((first, next, _, _))) => {
                    let last = next.checked_sub(1).map(|l| l as i64).unwrap_or(-1);
                    let s = |k: &'static str, v: i64| (Bytes::from_static(k.as_bytes()), v);
                    let first = if next > first { first as i64 } else { -1 };
                    (
                        code::OK,
                        vec![
                            s("first_chunk_id", first),
                            s("committed_chunk_id", last),
                            s("last_chunk_id", last),
                            s("committed_offset", last),
                        ],
                    )
                }
                Ok(None) => (code::STREAM_DOES_NOT_EXIST, Vec::new()),
                Err(c) => (c, Vec::new()),
            };
            conn.tx.response(&Response::StreamStats { correlation_id, code: c, stats });
        }
        Request::ExchangeCommandVersions { correlation_id, commands } => {
            conn.deliver_v2 = commands.iter().any(|c| c.key == key::DELIVER && c.max_version >= 2);
            conn.tx.response(&Response::ExchangeCommandVersions {
                correlation_id,
                code: code::OK,
                commands: command_versions(),
            });
        }
        Request::ConsumerUpdateResponse { correlation_id, offset, .. } => {
            if let Some(waiting) = conn.updates.lock().remove(&correlation_id) {
                let _ = waiting.send(offset);
            }
        }
        Request::Heartbeat => {}
        Request::Close { correlation_id, code: c, reason } => {
            tracing::info!("stream protocol: client closed the connection ({c}: {})", String::from_utf8_lossy(&reason));
            conn.tx.code(key::CLOSE, correlation_id, code::OK);
            return Err(Stop::Now);
        }
        Request::CloseResponse { .. } => return Err(Stop::Now),
        Request::ResolveOffsetSpec { correlation_id, stream, offset, .. } => {
            let (c, o) = match stream_of(conn, &stream) {
                Ok(q) => (code::OK, q.stream_resolve(super::subscribe::spec(offset)).unwrap_or(0)),
                Err(c) => (c, 0),
            };
            conn.tx.response(&Response::ResolveOffsetSpec {
                correlation_id,
                code: c,
                offset_type: warren_protocol::stream::offset_type::OFFSET,
                offset: o,
            });
        }
        other => {
            return Err(Stop::Close(
                code::UNKNOWN_FRAME,
                format!("command {:#06x} not expected on an open connection", other.key()),
            ))
        }
    }
    Ok(())
}

/// The stream named `name` (a stream queue), or the response code for why not.
pub fn stream_of(conn: &Conn, name: &Bytes) -> Result<Arc<Queue>, u16> {
    let n = ShortStr::truncating(name.clone());
    match conn.vhost.queue(&n) {
        Some(q) if q.kind == QueueType::Stream => Ok(q),
        _ => Err(code::STREAM_DOES_NOT_EXIST),
    }
}

/// Alias used by publish and subscribe.
pub fn stream(conn: &Conn, name: &Bytes) -> Result<Arc<Queue>, u16> {
    stream_of(conn, name)
}

/// A core error as a response code.
fn code_of(e: &AmqpError) -> u16 {
    match e {
        AmqpError::Refused { .. } => code::ACCESS_REFUSED,
        AmqpError::Channel { code: c, .. } | AmqpError::Connection { code: c, .. } => match *c {
            amqp::NOT_FOUND => code::STREAM_DOES_NOT_EXIST,
            amqp::ACCESS_REFUSED => code::ACCESS_REFUSED,
            _ => code::PRECONDITION_FAILED,
        },
    }
}

/// Create's arguments as queue arguments (`max-age` -> `x-max-age`, numbers as integers).
fn queue_arguments(arguments: &[(Bytes, Bytes)]) -> Result<FieldTable, u16> {
    let mut t = FieldTable::new();
    t.insert("x-queue-type", FieldValue::LongStr("stream".into()));
    for (k, v) in arguments {
        let k = String::from_utf8_lossy(k);
        let v = String::from_utf8_lossy(v).into_owned();
        let value = match k.as_ref() {
            "max-length-bytes" | "stream-max-segment-size-bytes" | "initial-cluster-size" => {
                FieldValue::I64(v.parse().map_err(|_| code::PRECONDITION_FAILED)?)
            }
            _ => FieldValue::LongStr(v.into()),
        };
        t.insert(format!("x-{k}"), value);
    }
    Ok(t)
}

/// Create a stream (as queue.declare of a durable stream queue).
fn create(conn: &Conn, name: &Bytes, arguments: &[(Bytes, Bytes)]) -> u16 {
    let arguments = match queue_arguments(arguments) {
        Ok(a) => a,
        Err(c) => return c,
    };
    declare_stream(conn, name, arguments)
}

fn declare_stream(conn: &Conn, name: &Bytes, arguments: FieldTable) -> u16 {
    let spec = QueueSpec {
        name: ShortStr::truncating(name.clone()),
        server_named: false,
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: false,
        arguments,
    };
    match conn.vhost.declare_queue(&conn.actor(), &spec) {
        Ok(d) if d.created => code::OK,
        Ok(_) => code::STREAM_ALREADY_EXISTS,
        Err(e) => code_of(&e),
    }
}

/// Delete a stream.
fn delete(conn: &Conn, name: &Bytes) -> u16 {
    if stream_of(conn, name).is_err() {
        return code::STREAM_DOES_NOT_EXIST;
    }
    match conn.vhost.delete_queue_checked(&conn.actor(), &ShortStr::truncating(name.clone()), false, false, None) {
        Ok(Some(_)) => code::OK,
        Ok(None) => code::STREAM_DOES_NOT_EXIST,
        Err(e) => code_of(&e),
    }
}

/// Metadata: this node is the leader of every stream that exists.
fn metadata(conn: &Conn, correlation_id: u32, streams: Vec<Bytes>) {
    let (host, port) = super::conn::advertised(&conn.broker, conn.local);
    let brokers = vec![WireBroker { reference: 0, host: Bytes::from(host), port: port as u32 }];
    let streams = streams
        .into_iter()
        .map(|name| match stream_of(conn, &name) {
            Ok(_) => StreamMetadata { name, code: code::OK, leader: 0, replicas: Vec::new() },
            Err(c) => StreamMetadata {
                name,
                code: c,
                leader: warren_protocol::stream::constants::NO_LEADER,
                replicas: Vec::new(),
            },
        })
        .collect();
    conn.tx.response(&Response::Metadata { correlation_id, brokers, streams });
}

/// A super stream's routes: (binding key, partition stream), in partition order.
fn partitions(conn: &Conn, super_stream: &Bytes) -> Result<Vec<(Bytes, Bytes)>, u16> {
    let ex = conn.vhost.exchange(&ShortStr::truncating(super_stream.clone())).ok_or(code::STREAM_DOES_NOT_EXIST)?;
    let mut routes: Vec<(i64, Bytes, Bytes)> = ex
        .bindings()
        .all
        .iter()
        .filter_map(|b| match &b.dest {
            crate::exchange::Dest::Queue(q) if q.kind == QueueType::Stream => {
                let order = b.arguments.get(PARTITION_ORDER).and_then(|v| v.as_i64()).unwrap_or(i64::MAX);
                Some((
                    order,
                    Bytes::copy_from_slice(b.routing_key.as_bytes()),
                    Bytes::copy_from_slice(q.name.as_bytes()),
                ))
            }
            _ => None,
        })
        .collect();
    routes.sort_by_key(|r| r.0);
    Ok(routes.into_iter().map(|(_, k, s)| (k, s)).collect())
}

/// CreateSuperStream: the exchange, its partition streams, and their bindings.
fn create_super_stream(
    conn: &Conn,
    name: &Bytes,
    partitions: &[Bytes],
    binding_keys: &[Bytes],
    arguments: &[(Bytes, Bytes)],
) -> u16 {
    if partitions.is_empty() || partitions.len() != binding_keys.len() {
        return code::PRECONDITION_FAILED;
    }
    let ex_name = ShortStr::truncating(name.clone());
    if conn.vhost.exchange(&ex_name).is_some() {
        return code::STREAM_ALREADY_EXISTS;
    }
    if partitions.iter().any(|p| stream_of(conn, p).is_ok()) {
        return code::STREAM_ALREADY_EXISTS;
    }
    let qargs = match queue_arguments(arguments) {
        Ok(a) => a,
        Err(c) => return c,
    };
    let mut xargs = FieldTable::new();
    xargs.insert("x-super-stream", FieldValue::Bool(true));
    let spec = ExchangeSpec {
        name: ex_name.clone(),
        kind: ShortStr::from_static("direct"),
        passive: false,
        durable: true,
        auto_delete: false,
        internal: false,
        arguments: xargs,
    };
    if let Err(e) = conn.vhost.declare_exchange(&conn.actor(), &spec) {
        return code_of(&e);
    }
    for (i, (p, k)) in partitions.iter().zip(binding_keys).enumerate() {
        let c = declare_stream(conn, p, qargs.clone());
        if c != code::OK {
            return c;
        }
        let mut bargs = FieldTable::new();
        bargs.insert(PARTITION_ORDER, FieldValue::I64(i as i64));
        if let Err(e) = conn.vhost.bind_queue(
            &conn.actor(),
            &ShortStr::truncating(p.clone()),
            &ex_name,
            ShortStr::truncating(k.clone()),
            bargs,
        ) {
            return code_of(&e);
        }
    }
    code::OK
}

/// DeleteSuperStream: its partition streams, then the exchange.
fn delete_super_stream(conn: &Conn, name: &Bytes) -> u16 {
    let routes = match partitions(conn, name) {
        Ok(r) => r,
        Err(c) => return c,
    };
    for (_, s) in routes {
        let c = delete(conn, &s);
        if c != code::OK && c != code::STREAM_DOES_NOT_EXIST {
            return c;
        }
    }
    match conn.vhost.delete_exchange(&conn.actor(), &ShortStr::truncating(name.clone()), false) {
        Ok(()) => code::OK,
        Err(e) => code_of(&e),
    }
}

/// The commands and versions this server speaks, in key order from DeclarePublisher (clients
/// read the list by position).
fn command_versions() -> Vec<CommandVersion> {
    (key::DECLARE_PUBLISHER..=key::DELETE_SUPER_STREAM)
        .map(|k| {
            let max = if k == key::PUBLISH || k == key::DELIVER { 2 } else { 1 };
            CommandVersion { key: k, min_version: 1, max_version: max }
        })
        .collect()
}
