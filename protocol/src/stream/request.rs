//! Client-to-server frames: [`Request::decode`] for the connection reader, [`Request::encode`] for
//! tests and clients.
//!
//! Besides requests this covers the client's answers to server-initiated commands: its Tune reply,
//! its CloseResponse and its ConsumerUpdate response.
//!
//! # Invariants
//! - Decoding never panics and never copies: strings and message bodies are slices of the frame.
//! - A frame must be read to its last byte (else `TrailingBytes`), except a ConsumerUpdate response,
//!   whose offset value RabbitMQ ignores for types without one (rstream always sends 8 bytes).
//! - `decode(encode(r)) == r` for every request (the round-trip tests hold this).
//! - Optional trailing maps (Subscribe and ResolveOffsetSpec properties) may be left out by a
//!   client; they decode as empty, and encode as a count of 0.
use super::chunk::ChunkEntry;
use super::constants::{key, offset_type, VERSION_1, VERSION_2};
use super::error::StreamDecodeError;
use super::frame::{begin, finish};
use super::wire::{put_bytes, put_count, put_map, put_opt_string, put_string, put_strings, Properties, Reader};
use bytes::{BufMut, Bytes, BytesMut};

type Result<T> = std::result::Result<T, StreamDecodeError>;

/// The client's Tune reply as the Java client sends it (with the response bit).
const TUNE_REPLY: u16 = key::response(key::TUNE);
/// The client's answer to a server-initiated Close.
const CLOSE_RESPONSE: u16 = key::response(key::CLOSE);
/// The client's answer to a ConsumerUpdate.
const CONSUMER_UPDATE_RESPONSE: u16 = key::response(key::CONSUMER_UPDATE);

/// Where a subscription (or a consumer that becomes active) starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset of the stream.
    First,
    /// The first offset of the last chunk.
    Last,
    /// The next offset to be written.
    Next,
    /// An absolute offset.
    Offset(u64),
    /// The first chunk written at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn decode(r: &mut Reader) -> Result<OffsetSpec> {
        let t = r.u16()?;
        OffsetSpec::decode_value(t, r)
    }

    fn decode_value(t: u16, r: &mut Reader) -> Result<OffsetSpec> {
        Ok(match t {
            offset_type::FIRST => OffsetSpec::First,
            offset_type::LAST => OffsetSpec::Last,
            offset_type::NEXT => OffsetSpec::Next,
            offset_type::OFFSET => OffsetSpec::Offset(r.u64()?),
            offset_type::TIMESTAMP => OffsetSpec::Timestamp(r.i64()?),
            other => return Err(StreamDecodeError::BadOffsetType(other)),
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        match *self {
            OffsetSpec::First => out.put_u16(offset_type::FIRST),
            OffsetSpec::Last => out.put_u16(offset_type::LAST),
            OffsetSpec::Next => out.put_u16(offset_type::NEXT),
            OffsetSpec::Offset(o) => {
                out.put_u16(offset_type::OFFSET);
                out.put_u64(o);
            }
            OffsetSpec::Timestamp(t) => {
                out.put_u16(offset_type::TIMESTAMP);
                out.put_i64(t);
            }
        }
    }
}

/// One message (or sub-entry batch) of a Publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMessage {
    /// The publisher's sequence number, echoed in PublishConfirm / PublishError.
    pub publishing_id: u64,
    /// Publish version 2 only: the value consumers can filter on (`None` = null on the wire).
    pub filter_value: Option<Bytes>,
    /// The message body, or a sub-entry batch kept raw (compressed or not); either can go into a
    /// chunk as is (see `chunk::deliver_entries`).
    pub entry: ChunkEntry,
}

/// A command version range (ExchangeCommandVersions, both directions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandVersion {
    /// Command key (without the response bit).
    pub key: u16,
    /// Lowest supported version.
    pub min_version: u16,
    /// Highest supported version.
    pub max_version: u16,
}

impl CommandVersion {
    pub(crate) fn decode_list(r: &mut Reader) -> Result<Vec<CommandVersion>> {
        let n = r.count(6)?;
        (0..n).map(|_| Ok(CommandVersion { key: r.u16()?, min_version: r.u16()?, max_version: r.u16()? })).collect()
    }

    pub(crate) fn encode_list(out: &mut BytesMut, list: &[CommandVersion]) {
        put_count(out, list.len());
        for c in list {
            out.put_u16(c.key);
            out.put_u16(c.min_version);
            out.put_u16(c.max_version);
        }
    }
}

/// A frame sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// First frame of a connection: the client's properties (product, version, connection_name…).
    PeerProperties {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Client properties.
        properties: Properties,
    },
    /// Ask for the SASL mechanisms.
    SaslHandshake {
        /// Correlation id echoed in the response.
        correlation_id: u32,
    },
    /// A SASL response (PLAIN: `\0user\0password`).
    SaslAuthenticate {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// The chosen mechanism.
        mechanism: Bytes,
        /// The SASL response (null on the wire reads as empty).
        data: Bytes,
    },
    /// The client's answer to the server's Tune (key TUNE, sent with or without the response bit:
    /// the Java client sets it, rstream does not; both decode here).
    Tune {
        /// The frame_max the client agrees on (0 = no limit).
        frame_max: u32,
        /// The heartbeat interval in seconds the client agrees on (0 = none).
        heartbeat: u32,
    },
    /// Open a virtual host.
    Open {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Virtual host name.
        virtual_host: Bytes,
    },
    /// The client closes the connection.
    Close {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Close code (a response code; OK for a normal close).
        code: u16,
        /// Close reason.
        reason: Bytes,
    },
    /// The client's answer to a server-initiated Close.
    CloseResponse {
        /// The correlation id of the server's Close.
        correlation_id: u32,
        /// Response code.
        code: u16,
    },
    /// Heartbeat.
    Heartbeat,
    /// Declare a publisher.
    DeclarePublisher {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Connection-local publisher id.
        publisher_id: u8,
        /// Publisher reference for deduplication (empty = none).
        reference: Bytes,
        /// Target stream.
        stream: Bytes,
    },
    /// Publish messages (no response; PublishConfirm / PublishError follow).
    ///
    /// Encodes as version 2 if any message has a filter value, else as version 1. Sub-entry
    /// batches decode raw in both versions (RabbitMQ parses them in version 1 only).
    Publish {
        /// The declared publisher.
        publisher_id: u8,
        /// The messages, in order.
        messages: Vec<PublishedMessage>,
    },
    /// Ask for the last publishing id stored for a publisher reference.
    QueryPublisherSequence {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Publisher reference.
        reference: Bytes,
        /// Stream.
        stream: Bytes,
    },
    /// Delete a publisher.
    DeletePublisher {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Publisher id.
        publisher_id: u8,
    },
    /// Subscribe to a stream.
    Subscribe {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Connection-local subscription id.
        subscription_id: u8,
        /// Stream.
        stream: Bytes,
        /// Where to start.
        offset: OffsetSpec,
        /// Initial credit, in chunks.
        credit: u16,
        /// Subscription properties (`single-active-consumer`, `name`, `super-stream`, `filter.N`,
        /// `match-unfiltered`…).
        properties: Properties,
    },
    /// Grant chunk credit (answered only on error, with a CreditResponse).
    Credit {
        /// Subscription id.
        subscription_id: u8,
        /// Additional chunks the server may deliver (RabbitMQ reads it as a signed `i16`).
        credit: u16,
    },
    /// Store a consumer offset (no response).
    StoreOffset {
        /// Consumer reference (name).
        reference: Bytes,
        /// Stream.
        stream: Bytes,
        /// Offset to store.
        offset: u64,
    },
    /// Read a stored consumer offset.
    QueryOffset {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Consumer reference (name).
        reference: Bytes,
        /// Stream.
        stream: Bytes,
    },
    /// Cancel a subscription.
    Unsubscribe {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Subscription id.
        subscription_id: u8,
    },
    /// Create a stream.
    Create {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Stream name.
        stream: Bytes,
        /// Arguments (`max-length-bytes`, `max-age`, `stream-max-segment-size-bytes`…).
        arguments: Properties,
    },
    /// Delete a stream.
    Delete {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Stream name.
        stream: Bytes,
    },
    /// Ask for the brokers hosting streams.
    Metadata {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Streams.
        streams: Vec<Bytes>,
    },
    /// Ask which partitions of a super stream a routing key goes to.
    Route {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Routing key.
        routing_key: Bytes,
        /// Super stream (exchange) name.
        super_stream: Bytes,
    },
    /// Ask for the partitions of a super stream.
    Partitions {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Super stream (exchange) name.
        super_stream: Bytes,
    },
    /// The client's answer to a ConsumerUpdate (key CONSUMER_UPDATE with the response bit).
    ConsumerUpdateResponse {
        /// The correlation id of the server's ConsumerUpdate.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Where the now active consumer starts; `None` is offset type NONE (0).
        offset: Option<OffsetSpec>,
    },
    /// Exchange supported command versions.
    ExchangeCommandVersions {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// The client's supported versions.
        commands: Vec<CommandVersion>,
    },
    /// Ask for statistics of a stream.
    StreamStats {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Stream.
        stream: Bytes,
    },
    /// Create a super stream.
    CreateSuperStream {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Super stream name.
        name: Bytes,
        /// Partition stream names.
        partitions: Vec<Bytes>,
        /// Binding keys, one per partition.
        binding_keys: Vec<Bytes>,
        /// Arguments applied to every partition.
        arguments: Properties,
    },
    /// Delete a super stream.
    DeleteSuperStream {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Super stream name.
        name: Bytes,
    },
    /// Resolve an offset specification to an offset (RabbitMQ 4.2+).
    ResolveOffsetSpec {
        /// Correlation id echoed in the response.
        correlation_id: u32,
        /// Stream.
        stream: Bytes,
        /// The specification.
        offset: OffsetSpec,
        /// Properties (`filter.N`, `match-unfiltered`, `chunk_selector`).
        properties: Properties,
    },
}

impl Request {
    /// The key on the wire (with the response bit for the client's answers).
    pub fn key(&self) -> u16 {
        match self {
            Request::PeerProperties { .. } => key::PEER_PROPERTIES,
            Request::SaslHandshake { .. } => key::SASL_HANDSHAKE,
            Request::SaslAuthenticate { .. } => key::SASL_AUTHENTICATE,
            Request::Tune { .. } => TUNE_REPLY,
            Request::Open { .. } => key::OPEN,
            Request::Close { .. } => key::CLOSE,
            Request::CloseResponse { .. } => CLOSE_RESPONSE,
            Request::Heartbeat => key::HEARTBEAT,
            Request::DeclarePublisher { .. } => key::DECLARE_PUBLISHER,
            Request::Publish { .. } => key::PUBLISH,
            Request::QueryPublisherSequence { .. } => key::QUERY_PUBLISHER_SEQUENCE,
            Request::DeletePublisher { .. } => key::DELETE_PUBLISHER,
            Request::Subscribe { .. } => key::SUBSCRIBE,
            Request::Credit { .. } => key::CREDIT,
            Request::StoreOffset { .. } => key::STORE_OFFSET,
            Request::QueryOffset { .. } => key::QUERY_OFFSET,
            Request::Unsubscribe { .. } => key::UNSUBSCRIBE,
            Request::Create { .. } => key::CREATE_STREAM,
            Request::Delete { .. } => key::DELETE_STREAM,
            Request::Metadata { .. } => key::METADATA,
            Request::Route { .. } => key::ROUTE,
            Request::Partitions { .. } => key::PARTITIONS,
            Request::ConsumerUpdateResponse { .. } => CONSUMER_UPDATE_RESPONSE,
            Request::ExchangeCommandVersions { .. } => key::EXCHANGE_COMMAND_VERSIONS,
            Request::StreamStats { .. } => key::STREAM_STATS,
            Request::CreateSuperStream { .. } => key::CREATE_SUPER_STREAM,
            Request::DeleteSuperStream { .. } => key::DELETE_SUPER_STREAM,
            Request::ResolveOffsetSpec { .. } => key::RESOLVE_OFFSET_SPEC,
        }
    }

    /// The correlation id, for frames that carry one.
    pub fn correlation_id(&self) -> Option<u32> {
        match *self {
            Request::PeerProperties { correlation_id, .. }
            | Request::SaslHandshake { correlation_id }
            | Request::SaslAuthenticate { correlation_id, .. }
            | Request::Open { correlation_id, .. }
            | Request::Close { correlation_id, .. }
            | Request::CloseResponse { correlation_id, .. }
            | Request::DeclarePublisher { correlation_id, .. }
            | Request::QueryPublisherSequence { correlation_id, .. }
            | Request::DeletePublisher { correlation_id, .. }
            | Request::Subscribe { correlation_id, .. }
            | Request::QueryOffset { correlation_id, .. }
            | Request::Unsubscribe { correlation_id, .. }
            | Request::Create { correlation_id, .. }
            | Request::Delete { correlation_id, .. }
            | Request::Metadata { correlation_id, .. }
            | Request::Route { correlation_id, .. }
            | Request::Partitions { correlation_id, .. }
            | Request::ConsumerUpdateResponse { correlation_id, .. }
            | Request::ExchangeCommandVersions { correlation_id, .. }
            | Request::StreamStats { correlation_id, .. }
            | Request::CreateSuperStream { correlation_id, .. }
            | Request::DeleteSuperStream { correlation_id, .. }
            | Request::ResolveOffsetSpec { correlation_id, .. } => Some(correlation_id),
            Request::Tune { .. }
            | Request::Heartbeat
            | Request::Publish { .. }
            | Request::Credit { .. }
            | Request::StoreOffset { .. } => None,
        }
    }

    /// Decode a frame as returned by `split_frame` (starting at the key).
    pub fn decode(frame: Bytes) -> Result<Request> {
        let mut r = Reader::new(frame);
        let k = r.u16()?;
        let version = r.u16()?;
        let unknown = StreamDecodeError::UnknownCommand { key: k, version };
        if k == key::PUBLISH {
            return match version {
                VERSION_1 | VERSION_2 => decode_publish(version, r),
                _ => Err(unknown),
            };
        }
        // spec: every other client command exists in version 1 only.
        if version != VERSION_1 {
            return Err(unknown);
        }
        let req = match k {
            key::PEER_PROPERTIES => Request::PeerProperties { correlation_id: r.u32()?, properties: r.map()? },
            key::SASL_HANDSHAKE => Request::SaslHandshake { correlation_id: r.u32()? },
            key::SASL_AUTHENTICATE => {
                Request::SaslAuthenticate { correlation_id: r.u32()?, mechanism: r.string()?, data: r.bytes()? }
            }
            // spec(stream.tune): the client answers with a Tune frame; RabbitMQ accepts either key.
            key::TUNE | TUNE_REPLY => Request::Tune { frame_max: r.u32()?, heartbeat: r.u32()? },
            key::OPEN => Request::Open { correlation_id: r.u32()?, virtual_host: r.string()? },
            key::CLOSE => Request::Close { correlation_id: r.u32()?, code: r.u16()?, reason: r.string()? },
            CLOSE_RESPONSE => Request::CloseResponse { correlation_id: r.u32()?, code: r.u16()? },
            key::HEARTBEAT => Request::Heartbeat,
            key::DECLARE_PUBLISHER => Request::DeclarePublisher {
                correlation_id: r.u32()?,
                publisher_id: r.u8()?,
                reference: r.string()?,
                stream: r.string()?,
            },
            key::QUERY_PUBLISHER_SEQUENCE => Request::QueryPublisherSequence {
                correlation_id: r.u32()?,
                reference: r.string()?,
                stream: r.string()?,
            },
            key::DELETE_PUBLISHER => Request::DeletePublisher { correlation_id: r.u32()?, publisher_id: r.u8()? },
            key::SUBSCRIBE => Request::Subscribe {
                correlation_id: r.u32()?,
                subscription_id: r.u8()?,
                stream: r.string()?,
                offset: OffsetSpec::decode(&mut r)?,
                credit: r.u16()?,
                // spec(stream.subscribe): RabbitMQ clients leave the properties out when empty.
                properties: r.opt_map()?,
            },
            key::CREDIT => Request::Credit { subscription_id: r.u8()?, credit: r.u16()? },
            key::STORE_OFFSET => Request::StoreOffset { reference: r.string()?, stream: r.string()?, offset: r.u64()? },
            key::QUERY_OFFSET => {
                Request::QueryOffset { correlation_id: r.u32()?, reference: r.string()?, stream: r.string()? }
            }
            key::UNSUBSCRIBE => Request::Unsubscribe { correlation_id: r.u32()?, subscription_id: r.u8()? },
            key::CREATE_STREAM => {
                Request::Create { correlation_id: r.u32()?, stream: r.string()?, arguments: r.map()? }
            }
            key::DELETE_STREAM => Request::Delete { correlation_id: r.u32()?, stream: r.string()? },
            key::METADATA => Request::Metadata { correlation_id: r.u32()?, streams: r.strings()? },
            key::ROUTE => {
                Request::Route { correlation_id: r.u32()?, routing_key: r.string()?, super_stream: r.string()? }
            }
            key::PARTITIONS => Request::Partitions { correlation_id: r.u32()?, super_stream: r.string()? },
            CONSUMER_UPDATE_RESPONSE => {
                let correlation_id = r.u32()?;
                let code = r.u16()?;
                let offset = match r.u16()? {
                    offset_type::NONE => None,
                    t => Some(OffsetSpec::decode_value(t, &mut r)?),
                };
                // spec(stream.consumerupdate): RabbitMQ ignores what follows the offset spec;
                // rstream sends a zero offset even for types without one.
                r.rest();
                Request::ConsumerUpdateResponse { correlation_id, code, offset }
            }
            key::EXCHANGE_COMMAND_VERSIONS => Request::ExchangeCommandVersions {
                correlation_id: r.u32()?,
                commands: CommandVersion::decode_list(&mut r)?,
            },
            key::STREAM_STATS => Request::StreamStats { correlation_id: r.u32()?, stream: r.string()? },
            key::CREATE_SUPER_STREAM => Request::CreateSuperStream {
                correlation_id: r.u32()?,
                name: r.string()?,
                partitions: r.strings()?,
                binding_keys: r.strings()?,
                arguments: r.map()?,
            },
            key::DELETE_SUPER_STREAM => Request::DeleteSuperStream { correlation_id: r.u32()?, name: r.string()? },
            key::RESOLVE_OFFSET_SPEC => Request::ResolveOffsetSpec {
                correlation_id: r.u32()?,
                stream: r.string()?,
                offset: OffsetSpec::decode(&mut r)?,
                properties: r.opt_map()?,
            },
            _ => return Err(unknown),
        };
        r.end()?;
        Ok(req)
    }

    /// Encode the whole frame, size prefix included.
    pub fn encode(&self, out: &mut BytesMut) {
        let version = match self {
            Request::Publish { messages, .. } if messages.iter().any(|m| m.filter_value.is_some()) => VERSION_2,
            _ => VERSION_1,
        };
        let at = begin(out, self.key(), version);
        if let Some(c) = self.correlation_id() {
            out.put_u32(c);
        }
        match self {
            Request::PeerProperties { properties, .. } => put_map(out, properties),
            Request::SaslHandshake { .. } | Request::Heartbeat => {}
            Request::SaslAuthenticate { mechanism, data, .. } => {
                put_string(out, mechanism);
                put_bytes(out, data);
            }
            Request::Tune { frame_max, heartbeat } => {
                out.put_u32(*frame_max);
                out.put_u32(*heartbeat);
            }
            Request::Open { virtual_host, .. } => put_string(out, virtual_host),
            Request::Close { code, reason, .. } => {
                out.put_u16(*code);
                put_string(out, reason);
            }
            Request::CloseResponse { code, .. } => out.put_u16(*code),
            Request::DeclarePublisher { publisher_id, reference, stream, .. } => {
                out.put_u8(*publisher_id);
                put_string(out, reference);
                put_string(out, stream);
            }
            Request::Publish { publisher_id, messages } => {
                out.put_u8(*publisher_id);
                put_count(out, messages.len());
                for m in messages {
                    out.put_u64(m.publishing_id);
                    if version == VERSION_2 {
                        put_opt_string(out, m.filter_value.as_deref());
                    }
                    m.entry.encode(out);
                }
            }
            Request::QueryPublisherSequence { reference, stream, .. }
            | Request::QueryOffset { reference, stream, .. } => {
                put_string(out, reference);
                put_string(out, stream);
            }
            Request::DeletePublisher { publisher_id, .. } => out.put_u8(*publisher_id),
            Request::Subscribe { subscription_id, stream, offset, credit, properties, .. } => {
                out.put_u8(*subscription_id);
                put_string(out, stream);
                offset.encode(out);
                out.put_u16(*credit);
                put_map(out, properties);
            }
            Request::Credit { subscription_id, credit } => {
                out.put_u8(*subscription_id);
                out.put_u16(*credit);
            }
            Request::StoreOffset { reference, stream, offset } => {
                put_string(out, reference);
                put_string(out, stream);
                out.put_u64(*offset);
            }
            Request::Unsubscribe { subscription_id, .. } => out.put_u8(*subscription_id),
            Request::Create { stream, arguments, .. } => {
                put_string(out, stream);
                put_map(out, arguments);
            }
            Request::Delete { stream, .. } | Request::StreamStats { stream, .. } => put_string(out, stream),
            Request::Metadata { streams, .. } => put_strings(out, streams),
            Request::Route { routing_key, super_stream, .. } => {
                put_string(out, routing_key);
                put_string(out, super_stream);
            }
            Request::Partitions { super_stream, .. } => put_string(out, super_stream),
            Request::ConsumerUpdateResponse { code, offset, .. } => {
                out.put_u16(*code);
                match offset {
                    Some(o) => o.encode(out),
                    None => out.put_u16(offset_type::NONE),
                }
            }
            Request::ExchangeCommandVersions { commands, .. } => CommandVersion::encode_list(out, commands),
            Request::CreateSuperStream { name, partitions, binding_keys, arguments, .. } => {
                put_string(out, name);
                put_strings(out, partitions);
                put_strings(out, binding_keys);
                put_map(out, arguments);
            }
            Request::DeleteSuperStream { name, .. } => put_string(out, name),
            Request::ResolveOffsetSpec { stream, offset, properties, .. } => {
                put_string(out, stream);
                offset.encode(out);
                put_map(out, properties);
            }
        }
        finish(out, at);
    }
}

/// Publish after the key and version: `publisher_id:u8 count:u32` then per message
/// `publishing_id:u64 [filter_value:string (v2)] entry`.
fn decode_publish(version: u16, mut r: Reader) -> Result<Request> {
    let publisher_id = r.u8()?;
    // Smallest message: publishing id, (v2: filter length,) 4-byte entry size.
    let min = if version == VERSION_2 { 14 } else { 12 };
    let n = r.count(min)?;
    let mut messages = Vec::with_capacity(n);
    for _ in 0..n {
        let publishing_id = r.u64()?;
        // spec(stream.publish): version 2 puts a filter value (null = none) before each message.
        let filter_value = if version == VERSION_2 { r.opt_string()? } else { None };
        let entry = ChunkEntry::decode(&mut r)?;
        messages.push(PublishedMessage { publishing_id, filter_value, entry });
    }
    r.end()?;
    Ok(Request::Publish { publisher_id, messages })
}
