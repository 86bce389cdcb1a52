//! Numbers of the stream protocol: command keys, response codes, offset types, versions and limits.
//!
//! Pure data, used by both directions of the codec and by the server.
//!
//! # Invariants
//! - Every value is RabbitMQ's (`rabbit_stream.hrl` of the `rabbitmq_stream_common` plugin).

/// Command keys (`u16` after the size prefix). A response carries its request's key with the
/// [`key::RESPONSE`] bit set.
pub mod key {
    /// spec: the most significant bit of a key marks a response (`0x8006` answers `0x0006`).
    pub const RESPONSE: u16 = 0x8000;

    /// Client declares a publisher on a stream.
    pub const DECLARE_PUBLISHER: u16 = 0x0001;
    /// Client publishes messages (version 1, or 2 with filter values).
    pub const PUBLISH: u16 = 0x0002;
    /// Server confirms publishing ids.
    pub const PUBLISH_CONFIRM: u16 = 0x0003;
    /// Server reports publishing ids it could not store.
    pub const PUBLISH_ERROR: u16 = 0x0004;
    /// Client asks for the last publishing id stored for a publisher reference.
    pub const QUERY_PUBLISHER_SEQUENCE: u16 = 0x0005;
    /// Client deletes a publisher.
    pub const DELETE_PUBLISHER: u16 = 0x0006;
    /// Client subscribes to a stream.
    pub const SUBSCRIBE: u16 = 0x0007;
    /// Server delivers an osiris chunk to a subscription.
    pub const DELIVER: u16 = 0x0008;
    /// Client grants chunk credit to a subscription (answered only on error).
    pub const CREDIT: u16 = 0x0009;
    /// Client stores a consumer offset (no response).
    pub const STORE_OFFSET: u16 = 0x000a;
    /// Client reads a stored consumer offset.
    pub const QUERY_OFFSET: u16 = 0x000b;
    /// Client cancels a subscription.
    pub const UNSUBSCRIBE: u16 = 0x000c;
    /// Client creates a stream.
    pub const CREATE_STREAM: u16 = 0x000d;
    /// Client deletes a stream.
    pub const DELETE_STREAM: u16 = 0x000e;
    /// Client asks for brokers and leaders/replicas of streams.
    pub const METADATA: u16 = 0x000f;
    /// Server tells that a stream's topology changed (e.g. it was deleted).
    pub const METADATA_UPDATE: u16 = 0x0010;
    /// Client and server exchange properties (first frame of a connection).
    pub const PEER_PROPERTIES: u16 = 0x0011;
    /// Client asks for the SASL mechanisms.
    pub const SASL_HANDSHAKE: u16 = 0x0012;
    /// Client sends a SASL response.
    pub const SASL_AUTHENTICATE: u16 = 0x0013;
    /// Server proposes frame_max / heartbeat; the client answers with the same key.
    pub const TUNE: u16 = 0x0014;
    /// Client opens a virtual host.
    pub const OPEN: u16 = 0x0015;
    /// Either side closes the connection.
    pub const CLOSE: u16 = 0x0016;
    /// Either side's heartbeat.
    pub const HEARTBEAT: u16 = 0x0017;
    /// Client asks which partitions of a super stream a routing key goes to.
    pub const ROUTE: u16 = 0x0018;
    /// Client asks for the partitions of a super stream.
    pub const PARTITIONS: u16 = 0x0019;
    /// Server tells a single-active-consumer subscription it became (in)active; client answers.
    pub const CONSUMER_UPDATE: u16 = 0x001a;
    /// Client and server exchange the versions of the commands they support.
    pub const EXCHANGE_COMMAND_VERSIONS: u16 = 0x001b;
    /// Client asks for statistics of a stream.
    pub const STREAM_STATS: u16 = 0x001c;
    /// Client creates a super stream.
    pub const CREATE_SUPER_STREAM: u16 = 0x001d;
    /// Client deletes a super stream.
    pub const DELETE_SUPER_STREAM: u16 = 0x001e;
    /// Client asks to resolve an offset specification to an offset (RabbitMQ 4.2+).
    pub const RESOLVE_OFFSET_SPEC: u16 = 0x001f;

    /// The response key of a request key.
    pub const fn response(key: u16) -> u16 {
        key | RESPONSE
    }
}

/// Response codes (`u16`), also used as close codes and publish error codes.
pub mod code {
    /// Success.
    pub const OK: u16 = 0x01;
    /// The stream does not exist.
    pub const STREAM_DOES_NOT_EXIST: u16 = 0x02;
    /// A subscription with this id already exists on the connection.
    pub const SUBSCRIPTION_ID_ALREADY_EXISTS: u16 = 0x03;
    /// No subscription with this id on the connection.
    pub const SUBSCRIPTION_ID_DOES_NOT_EXIST: u16 = 0x04;
    /// The stream already exists (with other arguments).
    pub const STREAM_ALREADY_EXISTS: u16 = 0x05;
    /// The stream exists but has no available leader.
    pub const STREAM_NOT_AVAILABLE: u16 = 0x06;
    /// The SASL mechanism is not offered.
    pub const SASL_MECHANISM_NOT_SUPPORTED: u16 = 0x07;
    /// Bad credentials.
    pub const AUTHENTICATION_FAILURE: u16 = 0x08;
    /// The SASL response could not be parsed.
    pub const SASL_ERROR: u16 = 0x09;
    /// The server sends a SASL challenge (multi-step mechanisms).
    pub const SASL_CHALLENGE: u16 = 0x0a;
    /// The user may only connect from localhost.
    pub const SASL_AUTHENTICATION_FAILURE_LOOPBACK: u16 = 0x0b;
    /// The user may not access the virtual host (or it does not exist).
    pub const VIRTUAL_HOST_ACCESS_FAILURE: u16 = 0x0c;
    /// A frame could not be parsed or has an unknown key / version.
    pub const UNKNOWN_FRAME: u16 = 0x0d;
    /// A frame was larger than the negotiated frame_max.
    pub const FRAME_TOO_LARGE: u16 = 0x0e;
    /// Unexpected server-side failure.
    pub const INTERNAL_ERROR: u16 = 0x0f;
    /// Permission denied on the resource.
    pub const ACCESS_REFUSED: u16 = 0x10;
    /// Invalid arguments or state (e.g. publisher id already in use).
    pub const PRECONDITION_FAILED: u16 = 0x11;
    /// Publish to a publisher id that was not declared.
    pub const PUBLISHER_DOES_NOT_EXIST: u16 = 0x12;
    /// Query offset: nothing stored for this reference.
    pub const NO_OFFSET: u16 = 0x13;
    /// Not in the spec document, but in RabbitMQ's header: a later SASL step changed mechanism.
    pub const SASL_CANNOT_CHANGE_MECHANISM: u16 = 0x14;
    /// Not in the spec document, but in RabbitMQ's header: a re-authentication changed user.
    pub const SASL_CANNOT_CHANGE_USERNAME: u16 = 0x15;
}

/// Offset specification types (`u16`) of Subscribe, ConsumerUpdate and ResolveOffsetSpec.
pub mod offset_type {
    /// ConsumerUpdate response only: no offset (the server keeps its own choice).
    pub const NONE: u16 = 0;
    /// The first offset of the stream.
    pub const FIRST: u16 = 1;
    /// The first offset of the last chunk.
    pub const LAST: u16 = 2;
    /// The next offset to be written.
    pub const NEXT: u16 = 3;
    /// An absolute offset (followed by a `u64`).
    pub const OFFSET: u16 = 4;
    /// A timestamp in milliseconds since the epoch (followed by an `i64`).
    pub const TIMESTAMP: u16 = 5;
}

/// Command version 1 (every command).
pub const VERSION_1: u16 = 1;
/// Command version 2 (Publish with filter values, Deliver with the committed chunk id).
pub const VERSION_2: u16 = 2;

/// RabbitMQ's default frame_max proposed in Tune (1 MiB).
pub const DEFAULT_FRAME_MAX: u32 = 1_048_576;
/// RabbitMQ's frame_max ceiling before Open succeeds (`stream.initial_frame_max`, 8 KiB).
pub const DEFAULT_INITIAL_FRAME_MAX: u32 = 8192;
/// RabbitMQ's default heartbeat proposed in Tune, in seconds.
pub const DEFAULT_HEARTBEAT: u32 = 60;
/// spec(stream.metadata): the leader reference written for a stream without a leader (`-1`).
pub const NO_LEADER: u16 = 0xFFFF;
