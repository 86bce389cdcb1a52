//! Stream protocol codec under arbitrary input: no decoder panics on any bytes, decoding does not
//! depend on how reads are chunked, whatever decodes re-encodes to the same value, and arbitrary
//! requests, responses and chunks round-trip.
use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use warren_protocol::stream::{
    deliver_entries, deliver_messages, key, split_frame, ChunkEntry, ChunkMeta, CommandVersion, Deliver, OffsetSpec,
    PublishedMessage, Request, Response, StreamFrameError, SubBatch,
};

/// Drain frames from `input` fed in two pieces; returns the frames and the error that stopped it.
fn drain(input: &[u8], split: usize, max_frame: u32) -> (Vec<Bytes>, Option<StreamFrameError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in [&input[..split], &input[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match split_frame(&mut buf, max_frame) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// Every decoder on `frame`; whatever decodes must re-encode to something that decodes the same.
fn decode_everything(frame: &Bytes) {
    if let Ok(r) = Request::decode(frame.clone()) {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        let again = split_frame(&mut out, 0).expect("own frame").expect("whole");
        assert_eq!(Request::decode(again), Ok(r));
    }
    // Responses: encode . decode is idempotent (a Deliver's header is normalised: no bloom filter,
    // no trailer, format version 0).
    if let Ok(r) = Response::decode(frame.clone()) {
        let b1 = encode_response(&r);
        let r2 = Response::decode(b1.slice(4..)).expect("own encoding decodes");
        assert_eq!(b1, encode_response(&r2));
    }
    let _ = Deliver::decode(frame.clone());
}

fn encode_response(r: &Response) -> Bytes {
    let mut out = BytesMut::new();
    r.encode(&mut out);
    out.freeze()
}

fn any_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn any_props() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
    vec((any_bytes(12), any_bytes(12)), 0..4)
}

fn any_offset() -> impl Strategy<Value = OffsetSpec> {
    prop_oneof![
        Just(OffsetSpec::First),
        Just(OffsetSpec::Last),
        Just(OffsetSpec::Next),
        any::<u64>().prop_map(OffsetSpec::Offset),
        any::<i64>().prop_map(OffsetSpec::Timestamp),
    ]
}

fn any_entry() -> impl Strategy<Value = ChunkEntry> {
    prop_oneof![
        any_bytes(40).prop_map(ChunkEntry::Simple),
        (0u8..8, any::<u16>(), any::<u32>(), any_bytes(40)).prop_map(|(compression, record_count, u, data)| {
            ChunkEntry::SubBatch(SubBatch { compression, record_count, uncompressed_size: u, data })
        }),
    ]
}

fn any_request() -> impl Strategy<Value = Request> {
    let c = any::<u32>();
    prop_oneof![
        (c, any_props())
            .prop_map(|(correlation_id, properties)| Request::PeerProperties { correlation_id, properties }),
        c.prop_map(|correlation_id| Request::SaslHandshake { correlation_id }),
        (c, any_bytes(10), any_bytes(20)).prop_map(|(correlation_id, mechanism, data)| Request::SaslAuthenticate {
            correlation_id,
            mechanism,
            data
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(frame_max, heartbeat)| Request::Tune { frame_max, heartbeat }),
        (c, any_bytes(10)).prop_map(|(correlation_id, virtual_host)| Request::Open { correlation_id, virtual_host }),
        (c, any::<u16>(), any_bytes(10)).prop_map(|(correlation_id, code, reason)| Request::Close {
            correlation_id,
            code,
            reason
        }),
        (c, any::<u16>()).prop_map(|(correlation_id, code)| Request::CloseResponse { correlation_id, code }),
        Just(Request::Heartbeat),
        (c, any::<u8>(), any_bytes(10), any_bytes(10)).prop_map(|(correlation_id, publisher_id, reference, stream)| {
            Request::DeclarePublisher { correlation_id, publisher_id, reference, stream }
        }),
        (any::<u8>(), vec((any::<u64>(), option::of(any_bytes(6)), any_entry()), 0..5)).prop_map(
            |(publisher_id, ms)| Request::Publish {
                publisher_id,
                messages: ms
                    .into_iter()
                    .map(|(publishing_id, filter_value, entry)| PublishedMessage { publishing_id, filter_value, entry })
                    .collect(),
            }
        ),
        (c, any_bytes(10), any_bytes(10)).prop_map(|(correlation_id, reference, stream)| {
            Request::QueryPublisherSequence { correlation_id, reference, stream }
        }),
        (c, any::<u8>(), any_bytes(10), any_offset(), any::<u16>(), any_props()).prop_map(
            |(correlation_id, subscription_id, stream, offset, credit, properties)| Request::Subscribe {
                correlation_id,
                subscription_id,
                stream,
                offset,
                credit,
                properties
            }
        ),
        (any::<u8>(), any::<u16>()).prop_map(|(subscription_id, credit)| Request::Credit { subscription_id, credit }),
        (any_bytes(10), any_bytes(10), any::<u64>()).prop_map(|(reference, stream, offset)| Request::StoreOffset {
            reference,
            stream,
            offset
        }),
        (c, any_bytes(10), any_props()).prop_map(|(correlation_id, stream, arguments)| Request::Create {
            correlation_id,
            stream,
            arguments
        }),
        (c, vec(any_bytes(10), 0..4))
            .prop_map(|(correlation_id, streams)| Request::Metadata { correlation_id, streams }),
        (c, any::<u16>(), option::of(any_offset())).prop_map(|(correlation_id, code, offset)| {
            Request::ConsumerUpdateResponse { correlation_id, code, offset }
        }),
        (c, vec((any::<u16>(), any::<u16>(), any::<u16>()), 0..4)).prop_map(|(correlation_id, cs)| {
            Request::ExchangeCommandVersions {
                correlation_id,
                commands: cs
                    .into_iter()
                    .map(|(key, min_version, max_version)| CommandVersion { key, min_version, max_version })
                    .collect(),
            }
        }),
        (c, any_bytes(8), vec(any_bytes(8), 0..3), vec(any_bytes(8), 0..3), any_props()).prop_map(
            |(correlation_id, name, partitions, binding_keys, arguments)| Request::CreateSuperStream {
                correlation_id,
                name,
                partitions,
                binding_keys,
                arguments
            }
        ),
        (c, any_bytes(10), any_offset(), any_props()).prop_map(|(correlation_id, stream, offset, properties)| {
            Request::ResolveOffsetSpec { correlation_id, stream, offset, properties }
        }),
    ]
}

/// Keys a client or server can send, with and without the response bit.
fn any_key() -> impl Strategy<Value = u16> {
    (1u16..=0x20, any::<bool>(), 0u8..10).prop_map(|(k, resp, odd)| match odd {
        0 => k.wrapping_mul(0x1234),
        _ if resp => k | key::RESPONSE,
        _ => k,
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..512), split in any::<usize>(), small in any::<bool>()) {
        let max = if small { 64 } else { 0 };
        let split = split % (data.len() + 1);
        let (frames, end) = drain(&data, data.len(), max);
        let (frames2, end2) = drain(&data, split, max);
        prop_assert_eq!(&frames, &frames2);
        prop_assert_eq!(end, end2);
        for f in &frames {
            prop_assert!(max == 0 || f.len() <= max as usize);
            decode_everything(f);
        }
        decode_everything(&Bytes::from(data));
    }

    #[test]
    fn plausible_frames_never_panic(k in any_key(), version in 0u16..4, body in vec(any::<u8>(), 0..200)) {
        let mut f = Vec::with_capacity(body.len() + 4);
        f.extend_from_slice(&k.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&body);
        decode_everything(&Bytes::from(f));
    }

    #[test]
    fn requests_round_trip(reqs in vec(any_request(), 1..6)) {
        let mut wire = BytesMut::new();
        for r in &reqs {
            r.encode(&mut wire);
        }
        for r in reqs {
            let f = split_frame(&mut wire, 0).expect("valid").expect("whole");
            prop_assert_eq!(Request::decode(f), Ok(r));
        }
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn chunks_round_trip(
        entries in vec(any_entry(), 0..20),
        sub in any::<u8>(),
        committed in option::of(any::<u64>()),
        first_offset in any::<u64>(),
        timestamp in any::<i64>(),
    ) {
        let meta = ChunkMeta { chunk_type: 0, timestamp, epoch: 7, first_offset };
        let f = deliver_entries(sub, committed, &meta, &entries).expect("fits");
        let mut buf = BytesMut::from(&f.to_bytes()[..]);
        let frame = split_frame(&mut buf, 0).expect("valid").expect("whole");
        let d = Deliver::decode(frame.clone()).expect("decodes");
        prop_assert_eq!(d.subscription_id, sub);
        prop_assert_eq!(d.committed_chunk_id, committed);
        prop_assert_eq!(d.header.meta(), meta);
        prop_assert_eq!(&d.entries, &entries);
        prop_assert_eq!(Response::decode(frame), Ok(Response::Deliver(d)));

        let bodies: Vec<Bytes> = entries.iter().filter_map(|e| match e {
            ChunkEntry::Simple(b) => Some(b.clone()),
            ChunkEntry::SubBatch(_) => None,
        }).collect();
        let f = deliver_messages(sub, committed, &meta, &bodies).expect("fits");
        let mut buf = BytesMut::from(&f.to_bytes()[..]);
        let d = Deliver::decode(split_frame(&mut buf, 0).expect("valid").expect("whole")).expect("decodes");
        prop_assert_eq!(d.messages().cloned().collect::<Vec<_>>(), bodies);
    }
}
