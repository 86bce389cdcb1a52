//! Server-to-client frames: responses and the server's own commands (Tune, Close, Heartbeat,
//! PublishConfirm/Error, MetadataUpdate, ConsumerUpdate, Deliver).
//!
//! The server encodes with [`Response::encode`] or, on hot paths, with the free functions
//! ([`encode_response`], [`encode_publish_confirm`], [`encode_publish_error`], …) that need no
//! allocation. [`Response::decode`] reads them back (tests and clients).
//!
//! # Invariants
//! - Every encoder writes one whole frame, size prefix included, and never fails.
//! - Layouts follow what RabbitMQ writes where it differs from the spec document: an OpenResponse
//!   without properties has no property count; a SaslAuthenticate response carries a challenge only
//!   when there is one; CreditResponse has no correlation id; Tune (server to client) has no
//!   correlation id and no response bit.
//! - `decode(encode(r)) == r` for every response (for `Generic`, with a key whose response has no
//!   body: see [`GENERIC_RESPONSE_KEYS`]).
use super::chunk::{deliver_entries, Deliver};
use super::constants::{key, VERSION_1};
use super::error::StreamDecodeError;
use super::frame::{begin, finish};
use super::request::CommandVersion;
use super::wire::{put_bytes, put_count, put_map, put_string, put_strings, Properties, Reader};
use bytes::{BufMut, Bytes, BytesMut};

type Result<T> = std::result::Result<T, StreamDecodeError>;

/// Commands whose response is only `correlation_id code` (decoded as [`Response::Generic`]).
pub const GENERIC_RESPONSE_KEYS: [u16; 9] = [
    key::DECLARE_PUBLISHER,
    key::DELETE_PUBLISHER,
    key::SUBSCRIBE,
    key::UNSUBSCRIBE,
    key::CREATE_STREAM,
    key::DELETE_STREAM,
    key::CLOSE,
    key::CREATE_SUPER_STREAM,
    key::DELETE_SUPER_STREAM,
];

/// A broker of a MetadataResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Index the stream entries refer to.
    pub reference: u16,
    /// Host clients should connect to.
    pub host: Bytes,
    /// Port clients should connect to.
    pub port: u32,
}

/// A stream of a MetadataResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMetadata {
    /// Stream name.
    pub name: Bytes,
    /// OK, STREAM_DOES_NOT_EXIST, STREAM_NOT_AVAILABLE or ACCESS_REFUSED.
    pub code: u16,
    /// Broker reference of the leader ([`super::constants::NO_LEADER`] when the code is not OK).
    pub leader: u16,
    /// Broker references of the replicas.
    pub replicas: Vec<u16>,
}

/// One failed publishing id of a PublishError.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishingError {
    /// The publishing id.
    pub publishing_id: u64,
    /// Why (PUBLISHER_DOES_NOT_EXIST, PRECONDITION_FAILED…).
    pub code: u16,
}

/// A frame sent by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A response with no body (DeclarePublisher, Subscribe, Create, Close…).
    Generic {
        /// The request's key (the response bit is added on the wire).
        key: u16,
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
    },
    /// Answer to PeerProperties: the server's properties.
    PeerProperties {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Server properties (product, version, cluster_name…).
        properties: Properties,
    },
    /// Answer to SaslHandshake.
    SaslHandshake {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Offered mechanisms.
        mechanisms: Vec<Bytes>,
    },
    /// Answer to SaslAuthenticate.
    SaslAuthenticate {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code (SASL_CHALLENGE with a challenge for multi-step mechanisms).
        code: u16,
        /// The challenge; empty = none (nothing written).
        challenge: Bytes,
    },
    /// The server's proposal after authentication (key TUNE, no correlation id).
    Tune {
        /// Proposed frame_max (0 = no limit).
        frame_max: u32,
        /// Proposed heartbeat in seconds (0 = none).
        heartbeat: u32,
    },
    /// Answer to Open.
    Open {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Connection properties (`advertised_host`, `advertised_port`).
        properties: Properties,
    },
    /// The server closes the connection; the client answers with a CloseResponse.
    Close {
        /// Correlation id of this request.
        correlation_id: u32,
        /// Close code (UNKNOWN_FRAME, FRAME_TOO_LARGE, …).
        code: u16,
        /// Close reason.
        reason: Bytes,
    },
    /// Heartbeat.
    Heartbeat,
    /// Publishing ids stored.
    PublishConfirm {
        /// Publisher id.
        publisher_id: u8,
        /// Confirmed publishing ids.
        publishing_ids: Vec<u64>,
    },
    /// Publishing ids not stored.
    PublishError {
        /// Publisher id.
        publisher_id: u8,
        /// The failures.
        errors: Vec<PublishingError>,
    },
    /// Answer to Metadata.
    Metadata {
        /// The request's correlation id.
        correlation_id: u32,
        /// Brokers the streams refer to.
        brokers: Vec<Broker>,
        /// One entry per requested stream.
        streams: Vec<StreamMetadata>,
    },
    /// A stream's topology changed (e.g. deleted): publishers and consumers on it are gone.
    MetadataUpdate {
        /// Why (STREAM_NOT_AVAILABLE).
        code: u16,
        /// The stream.
        stream: Bytes,
    },
    /// Answer to QueryOffset.
    QueryOffset {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code (NO_OFFSET when nothing is stored).
        code: u16,
        /// Stored offset.
        offset: u64,
    },
    /// Answer to QueryPublisherSequence.
    QueryPublisherSequence {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Last stored publishing id (0 when none).
        sequence: u64,
    },
    /// Single active consumer: tell a subscription it became active or inactive (a request; the
    /// client answers with a ConsumerUpdate response).
    ConsumerUpdate {
        /// Correlation id of this request.
        correlation_id: u32,
        /// The subscription.
        subscription_id: u8,
        /// Whether it is now the active consumer.
        active: bool,
    },
    /// Answer to Route.
    Route {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Partition streams.
        streams: Vec<Bytes>,
    },
    /// Answer to Partitions.
    Partitions {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Partition streams.
        streams: Vec<Bytes>,
    },
    /// Answer to StreamStats.
    StreamStats {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Statistics (`first_chunk_id`, `committed_chunk_id`).
        stats: Vec<(Bytes, i64)>,
    },
    /// Answer to ExchangeCommandVersions: the server's supported versions.
    ExchangeCommandVersions {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Supported versions.
        commands: Vec<CommandVersion>,
    },
    /// Error answer to Credit (sent only on error; no correlation id).
    Credit {
        /// Response code (SUBSCRIPTION_ID_DOES_NOT_EXIST).
        code: u16,
        /// The subscription.
        subscription_id: u8,
    },
    /// Answer to ResolveOffsetSpec.
    ResolveOffsetSpec {
        /// The request's correlation id.
        correlation_id: u32,
        /// Response code.
        code: u16,
        /// Type of the resolved value (always `offset_type::OFFSET`).
        offset_type: u16,
        /// The resolved offset.
        offset: u64,
    },
    /// A chunk for a subscription (see `chunk::deliver_messages` for the zero-copy builder).
    Deliver(Deliver),
}

impl Response {
    /// Decode a frame as returned by `split_frame` (starting at the key).
    pub fn decode(frame: Bytes) -> Result<Response> {
        let mut r = Reader::new(frame);
        let k = r.u16()?;
        let version = r.u16()?;
        if k == key::DELIVER {
            return Deliver::decode_body(version, r).map(Response::Deliver);
        }
        let unknown = StreamDecodeError::UnknownCommand { key: k, version };
        if version != VERSION_1 {
            return Err(unknown);
        }
        let is_response = k & key::RESPONSE != 0;
        let base = k & !key::RESPONSE;
        let resp = match (is_response, base) {
            (false, key::TUNE) => Response::Tune { frame_max: r.u32()?, heartbeat: r.u32()? },
            (false, key::CLOSE) => Response::Close { correlation_id: r.u32()?, code: r.u16()?, reason: r.string()? },
            (false, key::HEARTBEAT) => Response::Heartbeat,
            (false, key::PUBLISH_CONFIRM) => {
                let publisher_id = r.u8()?;
                let n = r.count(8)?;
                let publishing_ids = (0..n).map(|_| r.u64()).collect::<Result<_>>()?;
                Response::PublishConfirm { publisher_id, publishing_ids }
            }
            (false, key::PUBLISH_ERROR) => {
                let publisher_id = r.u8()?;
                let n = r.count(10)?;
                let errors = (0..n)
                    .map(|_| Ok(PublishingError { publishing_id: r.u64()?, code: r.u16()? }))
                    .collect::<Result<_>>()?;
                Response::PublishError { publisher_id, errors }
            }
            (false, key::METADATA_UPDATE) => Response::MetadataUpdate { code: r.u16()?, stream: r.string()? },
            (false, key::CONSUMER_UPDATE) => Response::ConsumerUpdate {
                correlation_id: r.u32()?,
                subscription_id: r.u8()?,
                active: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(StreamDecodeError::Invalid("consumer update active flag is not 0 or 1")),
                },
            },
            (true, key::PEER_PROPERTIES) => {
                Response::PeerProperties { correlation_id: r.u32()?, code: r.u16()?, properties: r.map()? }
            }
            (true, key::SASL_HANDSHAKE) => {
                Response::SaslHandshake { correlation_id: r.u32()?, code: r.u16()?, mechanisms: r.strings()? }
            }
            (true, key::SASL_AUTHENTICATE) => {
                let correlation_id = r.u32()?;
                let code = r.u16()?;
                let challenge = if r.is_empty() { Bytes::new() } else { r.bytes()? };
                Response::SaslAuthenticate { correlation_id, code, challenge }
            }
            (true, key::OPEN) => Response::Open { correlation_id: r.u32()?, code: r.u16()?, properties: r.opt_map()? },
            (true, key::METADATA) => {
                let correlation_id = r.u32()?;
                let n = r.count(8)?;
                let brokers = (0..n)
                    .map(|_| Ok(Broker { reference: r.u16()?, host: r.string()?, port: r.u32()? }))
                    .collect::<Result<_>>()?;
                let n = r.count(10)?;
                let streams = (0..n)
                    .map(|_| {
                        let name = r.string()?;
                        let code = r.u16()?;
                        let leader = r.u16()?;
                        let m = r.count(2)?;
                        let replicas = (0..m).map(|_| r.u16()).collect::<Result<_>>()?;
                        Ok(StreamMetadata { name, code, leader, replicas })
                    })
                    .collect::<Result<_>>()?;
                Response::Metadata { correlation_id, brokers, streams }
            }
            (true, key::QUERY_OFFSET) => {
                Response::QueryOffset { correlation_id: r.u32()?, code: r.u16()?, offset: r.u64()? }
            }
            (true, key::QUERY_PUBLISHER_SEQUENCE) => {
                Response::QueryPublisherSequence { correlation_id: r.u32()?, code: r.u16()?, sequence: r.u64()? }
            }
            (true, key::ROUTE) => Response::Route { correlation_id: r.u32()?, code: r.u16()?, streams: r.strings()? },
            (true, key::PARTITIONS) => {
                Response::Partitions { correlation_id: r.u32()?, code: r.u16()?, streams: r.strings()? }
            }
            (true, key::STREAM_STATS) => {
                let correlation_id = r.u32()?;
                let code = r.u16()?;
                let n = r.count(10)?;
                let stats = (0..n).map(|_| Ok((r.string()?, r.i64()?))).collect::<Result<_>>()?;
                Response::StreamStats { correlation_id, code, stats }
            }
            (true, key::EXCHANGE_COMMAND_VERSIONS) => Response::ExchangeCommandVersions {
                correlation_id: r.u32()?,
                code: r.u16()?,
                commands: CommandVersion::decode_list(&mut r)?,
            },
            (true, key::CREDIT) => Response::Credit { code: r.u16()?, subscription_id: r.u8()? },
            (true, key::RESOLVE_OFFSET_SPEC) => Response::ResolveOffsetSpec {
                correlation_id: r.u32()?,
                code: r.u16()?,
                offset_type: r.u16()?,
                offset: r.u64()?,
            },
            (true, k) if GENERIC_RESPONSE_KEYS.contains(&k) => {
                Response::Generic { key: k, correlation_id: r.u32()?, code: r.u16()? }
            }
            _ => return Err(unknown),
        };
        r.end()?;
        Ok(resp)
    }

    /// Encode the whole frame, size prefix included. A `Deliver` whose entries do not fit a chunk
    /// (impossible for a decoded one) writes nothing.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Response::Generic { key, correlation_id, code } => encode_response(out, *key, *correlation_id, *code),
            Response::PeerProperties { correlation_id, code, properties } => {
                let at = begin_response(out, key::PEER_PROPERTIES, *correlation_id, *code);
                put_map(out, properties);
                finish(out, at);
            }
            Response::SaslHandshake { correlation_id, code, mechanisms } => {
                let at = begin_response(out, key::SASL_HANDSHAKE, *correlation_id, *code);
                put_strings(out, mechanisms);
                finish(out, at);
            }
            Response::SaslAuthenticate { correlation_id, code, challenge } => {
                let at = begin_response(out, key::SASL_AUTHENTICATE, *correlation_id, *code);
                // spec(stream.saslauthenticate): the challenge is `bytes` (i32 length), as the
                // clients read it; RabbitMQ leaves it out when empty.
                if !challenge.is_empty() {
                    put_bytes(out, challenge);
                }
                finish(out, at);
            }
            Response::Tune { frame_max, heartbeat } => encode_tune(out, *frame_max, *heartbeat),
            Response::Open { correlation_id, code, properties } => {
                let at = begin_response(out, key::OPEN, *correlation_id, *code);
                // RabbitMQ writes no count at all when there are no properties.
                if !properties.is_empty() {
                    put_map(out, properties);
                }
                finish(out, at);
            }
            Response::Close { correlation_id, code, reason } => encode_close(out, *correlation_id, *code, reason),
            Response::Heartbeat => encode_heartbeat(out),
            Response::PublishConfirm { publisher_id, publishing_ids } => {
                encode_publish_confirm(out, *publisher_id, publishing_ids)
            }
            Response::PublishError { publisher_id, errors } => {
                let at = begin(out, key::PUBLISH_ERROR, VERSION_1);
                out.put_u8(*publisher_id);
                put_count(out, errors.len());
                for e in errors {
                    out.put_u64(e.publishing_id);
                    out.put_u16(e.code);
                }
                finish(out, at);
            }
            Response::Metadata { correlation_id, brokers, streams } => {
                let at = begin(out, key::response(key::METADATA), VERSION_1);
                // spec(stream.metadata): no response code, each stream has its own.
                out.put_u32(*correlation_id);
                put_count(out, brokers.len());
                for b in brokers {
                    out.put_u16(b.reference);
                    put_string(out, &b.host);
                    out.put_u32(b.port);
                }
                put_count(out, streams.len());
                for s in streams {
                    put_string(out, &s.name);
                    out.put_u16(s.code);
                    out.put_u16(s.leader);
                    put_count(out, s.replicas.len());
                    for r in &s.replicas {
                        out.put_u16(*r);
                    }
                }
                finish(out, at);
            }
            Response::MetadataUpdate { code, stream } => encode_metadata_update(out, *code, stream),
            Response::QueryOffset { correlation_id, code, offset } => {
                let at = begin_response(out, key::QUERY_OFFSET, *correlation_id, *code);
                out.put_u64(*offset);
                finish(out, at);
            }
            Response::QueryPublisherSequence { correlation_id, code, sequence } => {
                let at = begin_response(out, key::QUERY_PUBLISHER_SEQUENCE, *correlation_id, *code);
                out.put_u64(*sequence);
                finish(out, at);
            }
            Response::ConsumerUpdate { correlation_id, subscription_id, active } => {
                let at = begin(out, key::CONSUMER_UPDATE, VERSION_1);
                out.put_u32(*correlation_id);
                out.put_u8(*subscription_id);
                out.put_u8(u8::from(*active));
                finish(out, at);
            }
            Response::Route { correlation_id, code, streams } => {
                let at = begin_response(out, key::ROUTE, *correlation_id, *code);
                put_strings(out, streams);
                finish(out, at);
            }
            Response::Partitions { correlation_id, code, streams } => {
                let at = begin_response(out, key::PARTITIONS, *correlation_id, *code);
                put_strings(out, streams);
                finish(out, at);
            }
            Response::StreamStats { correlation_id, code, stats } => {
                let at = begin_response(out, key::STREAM_STATS, *correlation_id, *code);
                put_count(out, stats.len());
                for (k, v) in stats {
                    put_string(out, k);
                    out.put_i64(*v);
                }
                finish(out, at);
            }
            Response::ExchangeCommandVersions { correlation_id, code, commands } => {
                let at = begin_response(out, key::EXCHANGE_COMMAND_VERSIONS, *correlation_id, *code);
                CommandVersion::encode_list(out, commands);
                finish(out, at);
            }
            Response::Credit { code, subscription_id } => encode_credit_response(out, *code, *subscription_id),
            Response::ResolveOffsetSpec { correlation_id, code, offset_type, offset } => {
                let at = begin_response(out, key::RESOLVE_OFFSET_SPEC, *correlation_id, *code);
                out.put_u16(*offset_type);
                out.put_u64(*offset);
                finish(out, at);
            }
            Response::Deliver(d) => {
                if let Ok(f) = deliver_entries(d.subscription_id, d.committed_chunk_id, &d.header.meta(), &d.entries) {
                    f.write_to(out);
                }
            }
        }
    }
}

/// Start a response frame: `key|0x8000 version correlation_id code`.
fn begin_response(out: &mut BytesMut, request_key: u16, correlation_id: u32, code: u16) -> usize {
    let at = begin(out, key::response(request_key), VERSION_1);
    out.put_u32(correlation_id);
    out.put_u16(code);
    at
}

/// A response with no body: `request_key|0x8000, version 1, correlation_id, code`.
pub fn encode_response(out: &mut BytesMut, request_key: u16, correlation_id: u32, code: u16) {
    let at = begin_response(out, request_key, correlation_id, code);
    finish(out, at);
}

/// PublishConfirm: `publisher_id [publishing_id:u64]`.
pub fn encode_publish_confirm(out: &mut BytesMut, publisher_id: u8, publishing_ids: &[u64]) {
    out.reserve(13 + 8 * publishing_ids.len());
    let at = begin(out, key::PUBLISH_CONFIRM, VERSION_1);
    out.put_u8(publisher_id);
    put_count(out, publishing_ids.len());
    for id in publishing_ids {
        out.put_u64(*id);
    }
    finish(out, at);
}

/// PublishError with one code for all ids (how RabbitMQ reports them).
pub fn encode_publish_error(out: &mut BytesMut, publisher_id: u8, code: u16, publishing_ids: &[u64]) {
    out.reserve(13 + 10 * publishing_ids.len());
    let at = begin(out, key::PUBLISH_ERROR, VERSION_1);
    out.put_u8(publisher_id);
    put_count(out, publishing_ids.len());
    for id in publishing_ids {
        out.put_u64(*id);
        out.put_u16(code);
    }
    finish(out, at);
}

/// Heartbeat (either direction).
pub fn encode_heartbeat(out: &mut BytesMut) {
    let at = begin(out, key::HEARTBEAT, VERSION_1);
    finish(out, at);
}

/// The server's Tune proposal.
pub fn encode_tune(out: &mut BytesMut, frame_max: u32, heartbeat: u32) {
    let at = begin(out, key::TUNE, VERSION_1);
    out.put_u32(frame_max);
    out.put_u32(heartbeat);
    finish(out, at);
}

/// A server-initiated Close.
pub fn encode_close(out: &mut BytesMut, correlation_id: u32, code: u16, reason: &[u8]) {
    let at = begin(out, key::CLOSE, VERSION_1);
    out.put_u32(correlation_id);
    out.put_u16(code);
    put_string(out, reason);
    finish(out, at);
}

/// The error answer to Credit: `code subscription_id`, no correlation id.
pub fn encode_credit_response(out: &mut BytesMut, code: u16, subscription_id: u8) {
    let at = begin(out, key::response(key::CREDIT), VERSION_1);
    out.put_u16(code);
    out.put_u8(subscription_id);
    finish(out, at);
}

/// MetadataUpdate for a stream.
pub fn encode_metadata_update(out: &mut BytesMut, code: u16, stream: &[u8]) {
    let at = begin(out, key::METADATA_UPDATE, VERSION_1);
    out.put_u16(code);
    put_string(out, stream);
    finish(out, at);
}
