//! Round trips of every request and response, and frames as real clients write them.
//!
//! Every frame of `all_responses` was also fed to rstream's `decode_frame` once: all decode except
//! those rstream has no schema for (StreamStats, ResolveOffsetSpec, Deliver v2, a SASL challenge).
use super::*;
use bytes::{Bytes, BytesMut};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn props(pairs: &[(&str, &str)]) -> Properties {
    pairs.iter().map(|(k, v)| (b(k), b(v))).collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Split exactly one frame off `wire`.
fn one_frame(wire: &[u8]) -> Bytes {
    let mut buf = BytesMut::from(wire);
    let f = split_frame(&mut buf, 0).expect("valid frame").expect("complete frame");
    assert!(buf.is_empty(), "one frame exactly");
    f
}

fn all_requests() -> Vec<Request> {
    let batch = SubBatch {
        compression: chunk::compression::GZIP,
        record_count: 3,
        uncompressed_size: 100,
        data: Bytes::from_static(b"compressed"),
    };
    vec![
        Request::PeerProperties { correlation_id: 1, properties: props(&[("product", "x"), ("product", "dup")]) },
        Request::SaslHandshake { correlation_id: 2 },
        Request::SaslAuthenticate { correlation_id: 3, mechanism: b("PLAIN"), data: b("\0guest\0guest") },
        Request::SaslAuthenticate { correlation_id: 3, mechanism: b("ANONYMOUS"), data: Bytes::new() },
        Request::Tune { frame_max: 1_048_576, heartbeat: 60 },
        Request::Open { correlation_id: 4, virtual_host: b("/") },
        Request::Close { correlation_id: 5, code: code::OK, reason: b("bye") },
        Request::CloseResponse { correlation_id: 6, code: code::OK },
        Request::Heartbeat,
        Request::DeclarePublisher { correlation_id: 7, publisher_id: 255, reference: b(""), stream: b("s") },
        Request::Publish {
            publisher_id: 1,
            messages: vec![
                PublishedMessage { publishing_id: 1, filter_value: None, entry: ChunkEntry::Simple(b("m1")) },
                PublishedMessage { publishing_id: 2, filter_value: None, entry: ChunkEntry::Simple(Bytes::new()) },
                PublishedMessage { publishing_id: 9, filter_value: None, entry: ChunkEntry::SubBatch(batch.clone()) },
            ],
        },
        Request::Publish {
            publisher_id: 2,
            messages: vec![
                PublishedMessage { publishing_id: 1, filter_value: Some(b("eu")), entry: ChunkEntry::Simple(b("a")) },
                PublishedMessage { publishing_id: 2, filter_value: None, entry: ChunkEntry::Simple(b("b")) },
                PublishedMessage { publishing_id: 3, filter_value: Some(b("")), entry: ChunkEntry::SubBatch(batch) },
            ],
        },
        Request::Publish { publisher_id: 3, messages: vec![] },
        Request::QueryPublisherSequence { correlation_id: 8, reference: b("ref"), stream: b("s") },
        Request::DeletePublisher { correlation_id: 9, publisher_id: 1 },
        Request::Subscribe {
            correlation_id: 10,
            subscription_id: 0,
            stream: b("s"),
            offset: OffsetSpec::First,
            credit: 10,
            properties: vec![],
        },
        Request::Subscribe {
            correlation_id: 11,
            subscription_id: 1,
            stream: b("s"),
            offset: OffsetSpec::Offset(u64::MAX),
            credit: 1,
            properties: props(&[("single-active-consumer", "true"), ("name", "app")]),
        },
        Request::Subscribe {
            correlation_id: 12,
            subscription_id: 2,
            stream: b("s"),
            offset: OffsetSpec::Timestamp(-1),
            credit: 1,
            properties: vec![],
        },
        Request::Subscribe {
            correlation_id: 13,
            subscription_id: 3,
            stream: b("s"),
            offset: OffsetSpec::Last,
            credit: 0,
            properties: vec![],
        },
        Request::Subscribe {
            correlation_id: 14,
            subscription_id: 4,
            stream: b("s"),
            offset: OffsetSpec::Next,
            credit: 0,
            properties: vec![],
        },
        Request::Credit { subscription_id: 1, credit: 65535 },
        Request::StoreOffset { reference: b("app"), stream: b("s"), offset: 99 },
        Request::QueryOffset { correlation_id: 15, reference: b("app"), stream: b("s") },
        Request::Unsubscribe { correlation_id: 16, subscription_id: 1 },
        Request::Create { correlation_id: 17, stream: b("s"), arguments: props(&[("max-age", "1h")]) },
        Request::Delete { correlation_id: 18, stream: b("s") },
        Request::Metadata { correlation_id: 19, streams: vec![b("a"), b("b")] },
        Request::Metadata { correlation_id: 19, streams: vec![] },
        Request::Route { correlation_id: 20, routing_key: b("k"), super_stream: b("inv") },
        Request::Partitions { correlation_id: 21, super_stream: b("inv") },
        Request::ConsumerUpdateResponse { correlation_id: 22, code: code::OK, offset: Some(OffsetSpec::Offset(5)) },
        Request::ConsumerUpdateResponse { correlation_id: 23, code: code::OK, offset: None },
        Request::ExchangeCommandVersions {
            correlation_id: 24,
            commands: vec![CommandVersion { key: key::DELIVER, min_version: 1, max_version: 2 }],
        },
        Request::StreamStats { correlation_id: 25, stream: b("s") },
        Request::CreateSuperStream {
            correlation_id: 26,
            name: b("inv"),
            partitions: vec![b("inv-0"), b("inv-1")],
            binding_keys: vec![b("0"), b("1")],
            arguments: props(&[("max-length-bytes", "1000")]),
        },
        Request::DeleteSuperStream { correlation_id: 27, name: b("inv") },
        Request::ResolveOffsetSpec {
            correlation_id: 28,
            stream: b("s"),
            offset: OffsetSpec::Timestamp(1_700_000_000_000),
            properties: props(&[("filter.0", "eu")]),
        },
    ]
}

fn all_responses() -> Vec<Response> {
    let deliver = |committed| {
        let meta = ChunkMeta { chunk_type: 0, timestamp: 17, epoch: 1, first_offset: 100 };
        let f = deliver_messages(3, committed, &meta, &[b("one"), b("two")]).expect("builds");
        Deliver::decode(one_frame(&f.to_bytes())).expect("decodes")
    };
    let mut v: Vec<Response> = response::GENERIC_RESPONSE_KEYS
        .iter()
        .map(|&k| Response::Generic { key: k, correlation_id: 40, code: code::ACCESS_REFUSED })
        .collect();
    v.extend([
        Response::PeerProperties { correlation_id: 1, code: code::OK, properties: props(&[("product", "Warren")]) },
        Response::SaslHandshake { correlation_id: 2, code: code::OK, mechanisms: vec![b("PLAIN"), b("AMQPLAIN")] },
        Response::SaslAuthenticate { correlation_id: 3, code: code::OK, challenge: Bytes::new() },
        Response::SaslAuthenticate { correlation_id: 3, code: code::SASL_CHALLENGE, challenge: b("nonce") },
        Response::Tune { frame_max: 1_048_576, heartbeat: 60 },
        Response::Open {
            correlation_id: 4,
            code: code::OK,
            properties: props(&[("advertised_host", "localhost"), ("advertised_port", "5552")]),
        },
        Response::Open { correlation_id: 4, code: code::VIRTUAL_HOST_ACCESS_FAILURE, properties: vec![] },
        Response::Close { correlation_id: 1, code: code::UNKNOWN_FRAME, reason: b("unknown frame") },
        Response::Heartbeat,
        Response::PublishConfirm { publisher_id: 1, publishing_ids: vec![1, 2, u64::MAX] },
        Response::PublishError {
            publisher_id: 1,
            errors: vec![
                PublishingError { publishing_id: 5, code: code::PUBLISHER_DOES_NOT_EXIST },
                PublishingError { publishing_id: 6, code: code::PRECONDITION_FAILED },
            ],
        },
        Response::Metadata {
            correlation_id: 5,
            brokers: vec![Broker { reference: 0, host: b("localhost"), port: 5552 }],
            streams: vec![
                StreamMetadata { name: b("s"), code: code::OK, leader: 0, replicas: vec![0, 1] },
                StreamMetadata {
                    name: b("gone"),
                    code: code::STREAM_DOES_NOT_EXIST,
                    leader: constants::NO_LEADER,
                    replicas: vec![],
                },
            ],
        },
        Response::MetadataUpdate { code: code::STREAM_NOT_AVAILABLE, stream: b("s") },
        Response::QueryOffset { correlation_id: 6, code: code::NO_OFFSET, offset: 0 },
        Response::QueryPublisherSequence { correlation_id: 7, code: code::OK, sequence: 42 },
        Response::ConsumerUpdate { correlation_id: 8, subscription_id: 2, active: true },
        Response::ConsumerUpdate { correlation_id: 9, subscription_id: 2, active: false },
        Response::Route { correlation_id: 10, code: code::OK, streams: vec![b("inv-1")] },
        Response::Partitions { correlation_id: 11, code: code::OK, streams: vec![b("inv-0"), b("inv-1")] },
        Response::StreamStats {
            correlation_id: 12,
            code: code::OK,
            stats: vec![(b("first_chunk_id"), 0), (b("committed_chunk_id"), -1)],
        },
        Response::ExchangeCommandVersions {
            correlation_id: 13,
            code: code::OK,
            commands: vec![
                CommandVersion { key: key::PUBLISH, min_version: 1, max_version: 2 },
                CommandVersion { key: key::DELIVER, min_version: 1, max_version: 2 },
            ],
        },
        Response::Credit { code: code::SUBSCRIPTION_ID_DOES_NOT_EXIST, subscription_id: 7 },
        Response::ResolveOffsetSpec { correlation_id: 14, code: code::OK, offset_type: offset_type::OFFSET, offset: 9 },
        Response::Deliver(deliver(None)),
        Response::Deliver(deliver(Some(99))),
    ]);
    v
}

#[test]
fn every_request_round_trips() {
    for req in all_requests() {
        let mut out = BytesMut::new();
        req.encode(&mut out);
        let frame = one_frame(&out);
        assert_eq!(frame::key_version(&frame).map(|(k, _)| k), Some(req.key()));
        assert_eq!(Request::decode(frame).as_ref(), Ok(&req), "{req:?}");
    }
}

#[test]
fn every_response_round_trips() {
    for resp in all_responses() {
        let mut out = BytesMut::new();
        resp.encode(&mut out);
        let decoded = Response::decode(one_frame(&out));
        assert_eq!(decoded.as_ref(), Ok(&resp), "{resp:?}");
    }
}

#[test]
fn free_encoders_match_the_enum() {
    type Encoder = Box<dyn Fn(&mut BytesMut)>;
    let cases: Vec<(Response, Encoder)> = vec![
        (
            Response::Generic { key: key::SUBSCRIBE, correlation_id: 3, code: code::OK },
            Box::new(|o| encode_response(o, key::SUBSCRIBE, 3, code::OK)),
        ),
        (
            Response::PublishError {
                publisher_id: 4,
                errors: vec![PublishingError { publishing_id: 8, code: code::PRECONDITION_FAILED }],
            },
            Box::new(|o| encode_publish_error(o, 4, code::PRECONDITION_FAILED, &[8])),
        ),
    ];
    for (resp, f) in cases {
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        resp.encode(&mut a);
        f(&mut b);
        assert_eq!(a, b);
    }
}

#[test]
fn decoded_bodies_are_slices_of_the_frame() {
    let req = Request::Publish {
        publisher_id: 0,
        messages: vec![PublishedMessage {
            publishing_id: 1,
            filter_value: None,
            entry: ChunkEntry::Simple(Bytes::from(vec![5u8; 100])),
        }],
    };
    let mut out = BytesMut::new();
    req.encode(&mut out);
    let frame = one_frame(&out);
    let range = frame.as_ptr_range();
    let Ok(Request::Publish { messages, .. }) = Request::decode(frame.clone()) else { panic!("publish") };
    let ChunkEntry::Simple(body) = &messages[0].entry else { panic!("simple") };
    assert!(range.contains(&body.as_ptr()), "body points into the frame");
}

/// Frames written by the Python client rstream (its `encode_frame` / `encode_publish`), decoded.
#[test]
fn decodes_rstream_frames() {
    let cases: Vec<(&str, Request)> = vec![
        (
            "00000033001100010000000100000002000770726f6475637400077273747265616d000f636f6e6e656374696f6e5f6e616d6500026331",
            Request::PeerProperties { correlation_id: 1, properties: props(&[("product", "rstream"), ("connection_name", "c1")]) },
        ),
        ("000000080012000100000002", Request::SaslHandshake { correlation_id: 2 }),
        (
            "0000001f00130001000000030005504c41494e0000000c006775657374006775657374",
            Request::SaslAuthenticate { correlation_id: 3, mechanism: b("PLAIN"), data: b("\0guest\0guest") },
        ),
        ("0000000c00140001001000000000003c", Request::Tune { frame_max: 1_048_576, heartbeat: 60 }),
        ("0000000b001500010000000400012f", Request::Open { correlation_id: 4, virtual_host: b("/") }),
        (
            "00000012000100010000000500000372656600027331",
            Request::DeclarePublisher { correlation_id: 5, publisher_id: 0, reference: b("ref"), stream: b("s1") },
        ),
        (
            "000000230002000100000000020000000000000001000000026d31000000000000000200000000",
            Request::Publish {
                publisher_id: 0,
                messages: vec![
                    PublishedMessage { publishing_id: 1, filter_value: None, entry: ChunkEntry::Simple(b("m1")) },
                    PublishedMessage { publishing_id: 2, filter_value: None, entry: ChunkEntry::Simple(b("")) },
                ],
            },
        ),
        (
            "0000001c00020002030000000100000000000000070002657500000003616263",
            Request::Publish {
                publisher_id: 3,
                messages: vec![PublishedMessage {
                    publishing_id: 7,
                    filter_value: Some(b("eu")),
                    entry: ChunkEntry::Simple(b("abc")),
                }],
            },
        ),
        (
            "00000046000700010000000601000273310004000000000000000a000a00000002001673696e676c652d6163746976652d636f6e73756d657200047472756500046e616d650003617070",
            Request::Subscribe {
                correlation_id: 6,
                subscription_id: 1,
                stream: b("s1"),
                offset: OffsetSpec::Offset(10),
                credit: 10,
                properties: props(&[("single-active-consumer", "true"), ("name", "app")]),
            },
        ),
        (
            "00000015000700010000000702000273310001000100000000",
            Request::Subscribe {
                correlation_id: 7,
                subscription_id: 2,
                stream: b("s1"),
                offset: OffsetSpec::First,
                credit: 1,
                properties: vec![],
            },
        ),
        (
            "0000001d000700010000000803000273310005fffffffffffffffb000100000000",
            Request::Subscribe {
                correlation_id: 8,
                subscription_id: 3,
                stream: b("s1"),
                offset: OffsetSpec::Timestamp(-5),
                credit: 1,
                properties: vec![],
            },
        ),
        ("0000000700090001010005", Request::Credit { subscription_id: 1, credit: 5 }),
        (
            "00000015000a00010003617070000273310000000000000063",
            Request::StoreOffset { reference: b("app"), stream: b("s1"), offset: 99 },
        ),
        (
            "00000011000b000100000009000361707000027331",
            Request::QueryOffset { correlation_id: 9, reference: b("app"), stream: b("s1") },
        ),
        (
            // rstream sends an 8-byte offset even for NEXT; RabbitMQ ignores it.
            "00000014801a00010000000a000100030000000000000000",
            Request::ConsumerUpdateResponse { correlation_id: 10, code: code::OK, offset: Some(OffsetSpec::Next) },
        ),
        (
            "00000014000f00010000000b000000020002733100027332",
            Request::Metadata { correlation_id: 11, streams: vec![b("s1"), b("s2")] },
        ),
        ("0000000e001600010000000c000100024f4b", Request::Close { correlation_id: 12, code: 1, reason: b("OK") }),
        ("0000000400170001", Request::Heartbeat),
        (
            "00000045001d00010000000d0003696e76000000020005696e762d300005696e762d31000000020001300001310000000100106d61782d6c656e6774682d6279746573000431303030",
            Request::CreateSuperStream {
                correlation_id: 13,
                name: b("inv"),
                partitions: vec![b("inv-0"), b("inv-1")],
                binding_keys: vec![b("0"), b("1")],
                arguments: props(&[("max-length-bytes", "1000")]),
            },
        ),
        (
            "00000012001b00010000000e00000001000800010002",
            Request::ExchangeCommandVersions {
                correlation_id: 14,
                commands: vec![CommandVersion { key: key::DELIVER, min_version: 1, max_version: 2 }],
            },
        ),
        (
            "00000010001800010000000f00016b0003696e76",
            Request::Route { correlation_id: 15, routing_key: b("k"), super_stream: b("inv") },
        ),
        (
            "00000026000d0001000000100002733100000001000c782d71756575652d74797065000673747265616d",
            Request::Create { correlation_id: 16, stream: b("s1"), arguments: props(&[("x-queue-type", "stream")]) },
        ),
        (
            "000000110005000100000011000372656600027331",
            Request::QueryPublisherSequence { correlation_id: 17, reference: b("ref"), stream: b("s1") },
        ),
        ("00000009000c00010000001201", Request::Unsubscribe { correlation_id: 18, subscription_id: 1 }),
        ("00000009000600010000001300", Request::DeletePublisher { correlation_id: 19, publisher_id: 0 }),
        ("0000000c000e00010000001400027331", Request::Delete { correlation_id: 20, stream: b("s1") }),
        ("0000000d00190001000000150003696e76", Request::Partitions { correlation_id: 21, super_stream: b("inv") }),
        ("0000000d001e0001000000160003696e76", Request::DeleteSuperStream { correlation_id: 22, name: b("inv") }),
    ];
    for (wire, want) in cases {
        let got = Request::decode(one_frame(&hex(wire)));
        assert_eq!(got.as_ref(), Ok(&want), "{wire}");
    }
}

/// Layouts as RabbitMQ and the Java client write them, where they differ from what we encode.
#[test]
fn decodes_other_client_layouts() {
    // Java client: Tune reply with the response bit; SASL response null as -1.
    let tune = one_frame(&hex("0000000c80140001000100000000001e"));
    assert_eq!(Request::decode(tune), Ok(Request::Tune { frame_max: 65536, heartbeat: 30 }));
    let sasl = one_frame(&hex("0000001700130001000000010009414e4f4e594d4f5553ffffffff"));
    assert!(matches!(Request::decode(sasl), Ok(Request::SaslAuthenticate { data, .. }) if data.is_empty()));
    // Subscribe without any properties count.
    let sub = one_frame(&hex("000000110007000100000007020002733100010001"));
    assert_eq!(
        Request::decode(sub),
        Ok(Request::Subscribe {
            correlation_id: 7,
            subscription_id: 2,
            stream: b("s1"),
            offset: OffsetSpec::First,
            credit: 1,
            properties: vec![]
        })
    );
    // Publish v1 with a sub-entry batch (Java client layout: 0x80 | compression << 4).
    let publish = one_frame(&hex("0000001e00020001000000000100000000000000059000030000000a00000002abcd"));
    assert_eq!(
        Request::decode(publish),
        Ok(Request::Publish {
            publisher_id: 0,
            messages: vec![PublishedMessage {
                publishing_id: 5,
                filter_value: None,
                entry: ChunkEntry::SubBatch(SubBatch {
                    compression: chunk::compression::GZIP,
                    record_count: 3,
                    uncompressed_size: 10,
                    data: Bytes::from_static(&[0xab, 0xcd]),
                }),
            }],
        })
    );
}

/// Server frames as RabbitMQ writes them (`rabbit_stream_core:frame/1`), byte for byte.
#[test]
fn encodes_like_rabbitmq() {
    let enc = |r: Response| {
        let mut o = BytesMut::new();
        r.encode(&mut o);
        o.to_vec()
    };
    // Tune: request key, no correlation id.
    assert_eq!(enc(Response::Tune { frame_max: 1_048_576, heartbeat: 60 }), hex("0000000c00140001001000000000003c"));
    // Open error: no property count.
    assert_eq!(
        enc(Response::Open { correlation_id: 4, code: code::VIRTUAL_HOST_ACCESS_FAILURE, properties: vec![] }),
        hex("0000000a8015000100000004000c")
    );
    // Credit response: no correlation id.
    assert_eq!(
        enc(Response::Credit { code: code::SUBSCRIPTION_ID_DOES_NOT_EXIST, subscription_id: 7 }),
        hex("0000000780090001000407")
    );
    // Close from the server.
    assert_eq!(
        enc(Response::Close { correlation_id: 1, code: code::UNKNOWN_FRAME, reason: b("unknown frame") }),
        hex("000000190016000100000001000d000d756e6b6e6f776e206672616d65")
    );
    // Metadata: no top-level response code; error streams have leader -1 and no replicas.
    assert_eq!(
        enc(Response::Metadata {
            correlation_id: 2,
            brokers: vec![],
            streams: vec![StreamMetadata {
                name: b("x"),
                code: code::STREAM_DOES_NOT_EXIST,
                leader: constants::NO_LEADER,
                replicas: vec![]
            }],
        }),
        hex("0000001b800f00010000000200000000000000010001780002ffff00000000")
    );
}

#[test]
fn unknown_and_bad_frames_are_errors() {
    let dec = |s: &str| Request::decode(Bytes::from(hex(s)));
    assert_eq!(dec("00ff0001"), Err(StreamDecodeError::UnknownCommand { key: 0xff, version: 1 }));
    assert_eq!(dec("00020003"), Err(StreamDecodeError::UnknownCommand { key: 2, version: 3 }));
    assert_eq!(dec("00170002"), Err(StreamDecodeError::UnknownCommand { key: 0x17, version: 2 }));
    assert_eq!(dec("001700"), Err(StreamDecodeError::Truncated));
    assert_eq!(dec("0017000100"), Err(StreamDecodeError::TrailingBytes));
    assert_eq!(dec("0015000100000001ffff"), Err(StreamDecodeError::NullString));
    // Subscribe with offset type 9.
    assert_eq!(dec("00070001000000010100017300090001"), Err(StreamDecodeError::BadOffsetType(9)));
    // Publish claiming 2^31 messages in a few bytes.
    assert_eq!(dec("0002000100800000000000"), Err(StreamDecodeError::Truncated));
    assert_eq!(StreamDecodeError::Truncated.response_code(), code::UNKNOWN_FRAME);
    assert_eq!(StreamFrameError::TooLarge { size: 9, max: 8 }.response_code(), code::FRAME_TOO_LARGE);
}
