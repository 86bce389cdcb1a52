//! Property tests of the codec against itself: decode(encode(x)) == x for methods, field tables and
//! properties; the streaming frame decoder is insensitive to how its input is chunked; frame_max and
//! frame-end checks; the hand-written `fast` encoders agree byte for byte with the generic path.
mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{any_method, field_table, field_value, method_for, properties, short_str, Flavor};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use warren_protocol::constants::{FRAME_END, FRAME_HEADER_SIZE, FRAME_OVERHEAD};
use warren_protocol::frame::{self, Frame, FrameType};
use warren_protocol::method::{self, Method, ALL_METHODS};
use warren_protocol::properties::ContentHeader;
use warren_protocol::{fast, BasicProperties, FieldTable, FieldValue, FrameError, MethodError, ShortStr};

fn encode_method_payload(m: &Method) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    b.freeze()
}

fn encode_table(t: &FieldTable) -> Bytes {
    let mut b = BytesMut::new();
    t.encode(&mut b);
    b.freeze()
}

/// Decode a table encoded with its u32 length prefix.
fn decode_prefixed_table(b: &Bytes) -> Result<FieldTable, MethodError> {
    assert!(b.len() >= 4);
    let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    assert_eq!(n, b.len() - 4, "table length prefix");
    FieldTable::decode(b.slice(4..))
}

/// Feed `bytes` to the streaming decoder in pieces of the given sizes (cycled), draining every
/// complete frame after each piece. Partial input must never be an error.
fn decode_chunked(bytes: &[u8], sizes: &[usize], frame_max: u32) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let n = sizes[i % sizes.len()].max(1).min(bytes.len() - pos);
        i += 1;
        buf.extend_from_slice(&bytes[pos..pos + n]);
        pos += n;
        loop {
            match frame::decode(&mut buf, frame_max) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => panic!("error at byte {pos} of {}: {e:?}", bytes.len()),
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    out
}

/// One frame of a test stream, with what decoding it must give back.
#[derive(Debug, Clone)]
enum Item {
    Method(u16, Method),
    Header(u16, u64, Bytes),
    Body(u16, Vec<u8>),
    Heartbeat,
}

impl Item {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Item::Method(ch, m) => frame::encode_method(out, *ch, m),
            Item::Header(ch, size, props) => fast::header(out, *ch, *size, props),
            Item::Body(ch, b) => frame::encode_raw(out, FrameType::Body, *ch, b),
            Item::Heartbeat => frame::encode_heartbeat(out),
        }
    }

    fn check(&self, f: &Frame) {
        match self {
            Item::Method(ch, m) => {
                assert_eq!((f.kind, f.channel), (FrameType::Method, *ch));
                assert_eq!(&Method::decode(f.payload.clone()).expect("method"), m);
            }
            Item::Header(ch, size, props) => {
                assert_eq!((f.kind, f.channel), (FrameType::Header, *ch));
                let h = ContentHeader::decode(f.payload.clone()).expect("header");
                assert_eq!((h.class_id, h.body_size, &h.properties), (60, *size, props));
            }
            Item::Body(ch, b) => {
                assert_eq!((f.kind, f.channel), (FrameType::Body, *ch));
                assert_eq!(&f.payload[..], &b[..]);
            }
            Item::Heartbeat => {
                assert_eq!((f.kind, f.channel, f.payload.len()), (FrameType::Heartbeat, 0, 0));
            }
        }
    }
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        3 => (any::<u16>(), any_method(Flavor::Raw)).prop_map(|(c, m)| Item::Method(c, m)),
        2 => (any::<u16>(), any::<u64>(), properties(Flavor::Raw))
            .prop_map(|(c, s, p)| Item::Header(c, s, p.to_bytes())),
        2 => (any::<u16>(), prop_oneof![vec(any::<u8>(), 0..40), vec(any::<u8>(), 0..3000)])
            .prop_map(|(c, b)| Item::Body(c, b)),
        1 => Just(Item::Heartbeat),
    ]
}

proptest! {
    #[test]
    fn method_roundtrip(m in any_method(Flavor::Raw), ch in any::<u16>()) {
        let payload = encode_method_payload(&m);
        prop_assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), m.class_id());
        prop_assert_eq!(u16::from_be_bytes([payload[2], payload[3]]), m.method_id());
        let back = Method::decode(payload.clone()).expect("decode");
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(encode_method_payload(&back), payload.clone());

        // Same through a whole frame.
        let mut wire = BytesMut::new();
        frame::encode_method(&mut wire, ch, &m);
        prop_assert_eq!(wire.len(), payload.len() + FRAME_OVERHEAD);
        let f = frame::decode(&mut wire, 0).expect("frame").expect("complete");
        prop_assert!(wire.is_empty());
        prop_assert_eq!((f.kind, f.channel), (FrameType::Method, ch));
        prop_assert_eq!(f.payload, payload);
    }

    #[test]
    fn method_truncated_is_an_error(m in any_method(Flavor::Raw), cut in any::<prop::sample::Index>()) {
        // Every strict prefix of an encoded method with arguments fails to decode, and never panics.
        let payload = encode_method_payload(&m);
        let n = cut.index(payload.len());
        let r = Method::decode(payload.slice(..n));
        prop_assert!(r.is_err(), "prefix {} of {} decoded as {:?}", n, payload.len(), r);
    }

    #[test]
    fn table_roundtrip(t in field_table(Flavor::Raw)) {
        let bytes = encode_table(&t);
        let back = decode_prefixed_table(&bytes).expect("decode");
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(encode_table(&back), bytes);
    }

    #[test]
    fn array_value_roundtrip(items in vec(field_value(Flavor::Raw), 0..8)) {
        let t = FieldTable(vec![(ShortStr::from("arr"), FieldValue::Array(items))]);
        let bytes = encode_table(&t);
        prop_assert_eq!(decode_prefixed_table(&bytes).expect("decode"), t);
    }

    #[test]
    fn properties_roundtrip(p in properties(Flavor::Raw)) {
        prop_assert!(warren_protocol::properties::validate(&p.to_bytes()).is_ok());
        let bytes = p.to_bytes();
        let back = BasicProperties::decode(bytes.clone()).expect("decode");
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(back.to_bytes(), bytes.clone());

        // And as a content header.
        let mut payload = BytesMut::new();
        ContentHeader::encode_payload(&mut payload, 60, 12345, &bytes);
        let h = ContentHeader::decode(payload.freeze()).expect("header");
        prop_assert_eq!((h.class_id, h.body_size), (60, 12345));
        prop_assert_eq!(BasicProperties::decode(h.properties).expect("props"), p);
    }

    #[test]
    fn short_str_is_raw_bytes(s in short_str(Flavor::Raw)) {
        // basic.publish takes its routing key as raw bytes (RabbitMQ does not check it either)...
        let m = Method::BasicPublish(method::BasicPublish { routing_key: s.clone(), ..Default::default() });
        let back = Method::decode(encode_method_payload(&m)).expect("decode");
        match back {
            Method::BasicPublish(b) => prop_assert_eq!(b.routing_key.as_bytes(), s.as_bytes()),
            other => prop_assert!(false, "decoded as {:?}", other),
        }
        // ...every other method's short strings must be UTF-8 (RabbitMQ: 501 FRAME_ERROR).
        let m = Method::BasicConsumeOk(method::BasicConsumeOk { consumer_tag: s.clone() });
        let back = Method::decode(encode_method_payload(&m));
        if std::str::from_utf8(s.as_bytes()).is_ok() {
            prop_assert!(back.is_ok());
        } else {
            prop_assert_eq!(back, Err(warren_protocol::MethodError::BadUtf8));
        }
    }

    #[test]
    fn frames_chunk_size_invariant(
        items in vec(item(), 1..12),
        sizes in vec(1usize..80, 1..20),
    ) {
        let mut wire = BytesMut::new();
        for it in &items {
            it.encode(&mut wire);
        }
        let wire = wire.freeze();

        // Whole buffer at once, no limit.
        let whole = decode_chunked(&wire, &[wire.len()], 0);
        prop_assert_eq!(whole.len(), items.len());
        for (it, f) in items.iter().zip(&whole) {
            it.check(f);
        }
        // Arbitrary pieces, one byte at a time, and a frame_max exactly equal to the largest frame.
        prop_assert_eq!(&decode_chunked(&wire, &sizes, 0), &whole);
        prop_assert_eq!(&decode_chunked(&wire, &[1], 0), &whole);
        let largest = whole.iter().map(|f| f.payload.len() + FRAME_OVERHEAD).max().expect("non-empty");
        prop_assert_eq!(&decode_chunked(&wire, &sizes, largest as u32), &whole);
    }

    #[test]
    fn incomplete_frame_is_none_and_consumes_nothing(
        it in item(),
        frame_max in prop_oneof![Just(0u32), Just(131072)],
    ) {
        let mut wire = BytesMut::new();
        it.encode(&mut wire);
        // Every prefix of short frames; about 200 evenly spread prefixes of long ones.
        let step = (wire.len() / 200).max(1);
        for n in (0..wire.len()).step_by(step).chain([wire.len() - 1]) {
            let mut buf = BytesMut::from(&wire[..n]);
            prop_assert_eq!(frame::decode(&mut buf, frame_max), Ok(None), "prefix {}", n);
            prop_assert_eq!(&buf[..], &wire[..n]);
        }
    }

    #[test]
    fn oversized_frame_rejected_on_header(
        kind in prop::sample::select(vec![1u8, 2, 3, 8]),
        ch in any::<u16>(),
        frame_max in 4096u32..=1 << 20,
        extra in prop_oneof![1u64..16, 1u64..=u32::MAX as u64],
    ) {
        // size + 8 > frame_max: refused as soon as the 7 header bytes are in, before any payload.
        let total = (frame_max as u64 + extra).min(u32::MAX as u64 + FRAME_OVERHEAD as u64);
        let size = (total - FRAME_OVERHEAD as u64) as u32;
        let mut hdr = vec![kind];
        hdr.extend_from_slice(&ch.to_be_bytes());
        hdr.extend_from_slice(&size.to_be_bytes());
        for n in 0..FRAME_HEADER_SIZE {
            prop_assert_eq!(frame::decode(&mut BytesMut::from(&hdr[..n]), frame_max), Ok(None));
        }
        let expected = FrameError::TooLarge { size: total.min(u32::MAX as u64) as u32, max: frame_max };
        prop_assert_eq!(frame::decode(&mut BytesMut::from(&hdr[..]), frame_max), Err(expected));

        // One byte less is within the limit and just waits for the payload.
        let fits = (frame_max - FRAME_OVERHEAD as u32).to_be_bytes();
        let mut ok = hdr.clone();
        ok[3..7].copy_from_slice(&fits);
        prop_assert_eq!(frame::decode(&mut BytesMut::from(&ok[..]), frame_max), Ok(None));
    }

    #[test]
    fn bad_frame_end_rejected(
        it in item(),
        end in any::<u8>(),
        fm in prop_oneof![Just(0u32), Just(1 << 20)],
    ) {
        prop_assume!(end != FRAME_END);
        let mut wire = BytesMut::new();
        it.encode(&mut wire);
        let last = wire.len() - 1;
        wire[last] = end;
        prop_assert_eq!(frame::decode(&mut wire, fm), Err(FrameError::BadFrameEnd(end)));
    }

    #[test]
    fn unknown_frame_type_rejected(kind in any::<u8>(), rest in vec(any::<u8>(), 6..20)) {
        prop_assume!(!matches!(kind, 1 | 2 | 3 | 8));
        let mut buf = BytesMut::new();
        buf.put_u8(kind);
        buf.put_slice(&rest);
        prop_assert_eq!(frame::decode(&mut buf, 131072), Err(FrameError::UnknownType(kind)));
    }
}

/// Arbitrary bytes for a `fast` encoder's string argument, sometimes longer than 255 (it truncates).
fn str_arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => vec(any::<u8>(), 0..20), 1 => vec(any::<u8>(), 0..300)]
}

fn ss(b: &[u8]) -> ShortStr {
    ShortStr::truncating(Bytes::copy_from_slice(b))
}

/// The generic encoding of `m`, appended after `prefix` like the fast encoder's output.
fn generic(prefix: &[u8], ch: u16, m: Method) -> BytesMut {
    let mut b = BytesMut::from(prefix);
    frame::encode_method(&mut b, ch, &m);
    b
}

proptest! {
    #[test]
    fn fast_deliver_matches(prefix in vec(any::<u8>(), 0..9), ch in any::<u16>(), ctag in str_arg(),
                            tag in any::<u64>(), red in any::<bool>(), ex in str_arg(), rk in str_arg()) {
        let mut a = BytesMut::from(&prefix[..]);
        fast::deliver(&mut a, ch, &ctag, tag, red, &ex, &rk);
        let m = Method::BasicDeliver(method::BasicDeliver {
            consumer_tag: ss(&ctag),
            delivery_tag: tag,
            redelivered: red,
            exchange: ss(&ex),
            routing_key: ss(&rk),
        });
        prop_assert_eq!(a, generic(&prefix, ch, m));
    }

    #[test]
    fn fast_get_ok_matches(prefix in vec(any::<u8>(), 0..9), ch in any::<u16>(), tag in any::<u64>(),
                           red in any::<bool>(), ex in str_arg(), rk in str_arg(), count in any::<u32>()) {
        let mut a = BytesMut::from(&prefix[..]);
        fast::get_ok(&mut a, ch, tag, red, &ex, &rk, count);
        let m = Method::BasicGetOk(method::BasicGetOk {
            delivery_tag: tag,
            redelivered: red,
            exchange: ss(&ex),
            routing_key: ss(&rk),
            message_count: count,
        });
        prop_assert_eq!(a, generic(&prefix, ch, m));
    }

    #[test]
    fn fast_return_matches(prefix in vec(any::<u8>(), 0..9), ch in any::<u16>(), code in any::<u16>(),
                           text in str_arg(), ex in str_arg(), rk in str_arg()) {
        let mut a = BytesMut::from(&prefix[..]);
        fast::basic_return(&mut a, ch, code, &text, &ex, &rk);
        let m = Method::BasicReturn(method::BasicReturn {
            reply_code: code, reply_text: ss(&text), exchange: ss(&ex), routing_key: ss(&rk),
        });
        prop_assert_eq!(a, generic(&prefix, ch, m));
    }

    #[test]
    fn fast_ack_nack_match(prefix in vec(any::<u8>(), 0..9), ch in any::<u16>(), tag in any::<u64>(),
                           multiple in any::<bool>(), requeue in any::<bool>()) {
        let mut a = BytesMut::from(&prefix[..]);
        fast::ack(&mut a, ch, tag, multiple);
        let m = Method::BasicAck(method::BasicAck { delivery_tag: tag, multiple });
        prop_assert_eq!(a, generic(&prefix, ch, m));

        let mut a = BytesMut::from(&prefix[..]);
        fast::nack(&mut a, ch, tag, multiple, requeue);
        let m = Method::BasicNack(method::BasicNack { delivery_tag: tag, multiple, requeue });
        prop_assert_eq!(a, generic(&prefix, ch, m));
    }

    #[test]
    fn fast_header_matches(prefix in vec(any::<u8>(), 0..9), ch in any::<u16>(), size in any::<u64>(),
                           p in properties(Flavor::Raw)) {
        let props = p.to_bytes();
        let mut a = BytesMut::from(&prefix[..]);
        fast::header(&mut a, ch, size, &props);
        let mut payload = BytesMut::new();
        ContentHeader::encode_payload(&mut payload, 60, size, &props);
        let mut b = BytesMut::from(&prefix[..]);
        frame::encode_raw(&mut b, FrameType::Header, ch, &payload);
        prop_assert_eq!(&a, &b);

        let mut wire = a.split_off(prefix.len());
        let f = frame::decode(&mut wire, 0).expect("frame").expect("complete");
        prop_assert_eq!((f.kind, f.channel), (FrameType::Header, ch));
        let h = ContentHeader::decode(f.payload).expect("header");
        prop_assert_eq!((h.class_id, h.body_size), (60, size));
        prop_assert_eq!(BasicProperties::decode(h.properties).expect("props"), p);
    }

    #[test]
    fn fast_body_splits_at_frame_max(
        ch in any::<u16>(),
        frame_max in prop_oneof![9u32..64, 4096u32..=4200],
        len_frames in 0usize..4,
        len_extra in 0usize..4200,
        seed in any::<u8>(),
    ) {
        let chunk = (frame_max - FRAME_OVERHEAD as u32) as usize;
        prop_assert_eq!(fast::max_body_chunk(frame_max), chunk);
        let len = len_frames * chunk + len_extra % (chunk + 1);
        let body: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();

        let mut wire = BytesMut::new();
        fast::body(&mut wire, ch, &body, frame_max);
        let frames = decode_chunked(&wire, &[wire.len().max(1)], frame_max);
        prop_assert_eq!(frames.len(), len.div_ceil(chunk), "an empty body has no frame");
        let mut joined = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            prop_assert_eq!((f.kind, f.channel), (FrameType::Body, ch));
            prop_assert!(f.payload.len() + FRAME_OVERHEAD <= frame_max as usize);
            if i + 1 < frames.len() {
                prop_assert_eq!(f.payload.len(), chunk, "every frame but the last is full");
            } else {
                prop_assert!(!f.payload.is_empty());
            }
            joined.extend_from_slice(&f.payload);
        }
        prop_assert_eq!(joined, body);
    }
}

#[test]
fn method_strategy_covers_all_methods() {
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::HashSet::new();
    for &(class, id, name) in ALL_METHODS {
        for flavor in [Flavor::Raw, Flavor::Amq] {
            let m = method_for(flavor, class, id).new_tree(&mut runner).expect("tree").current();
            assert_eq!((m.class_id(), m.method_id(), m.name()), (class, id, name));
            assert_eq!(Method::decode(encode_method_payload(&m)).expect("decode"), m);
        }
        assert!(seen.insert((class, id)), "{name} listed twice");
    }
    assert_eq!(ALL_METHODS.len(), 66);
}

#[test]
fn unknown_method_ids() {
    for (class, id) in [(60u16, 12u16), (10, 0), (0, 0), (65535, 65535), (40, 41), (85, 12)] {
        let mut b = BytesMut::new();
        b.put_u16(class);
        b.put_u16(id);
        b.put_slice(&[0; 32]);
        assert_eq!(Method::decode(b.freeze()), Err(MethodError::Unknown { class, method: id }), "{class}.{id}");
    }
    assert_eq!(Method::decode(Bytes::from_static(&[0, 60, 0])), Err(MethodError::Truncated));
}

#[test]
fn known_encodings() {
    // Byte layouts checked by hand against the 0-9-1 spec.
    let mut b = BytesMut::new();
    frame::encode_heartbeat(&mut b);
    assert_eq!(&b[..], &[8, 0, 0, 0, 0, 0, 0, 0xCE]);

    let m = Method::QueueDeclare(method::QueueDeclare {
        ticket: 0,
        queue: "q".into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: true,
        no_wait: true,
        arguments: FieldTable(vec![("x-max-length".into(), FieldValue::I32(10))]),
    });
    let p = encode_method_payload(&m);
    let mut expected = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0b11010];
    expected.extend_from_slice(&[0, 0, 0, 18, 12]);
    expected.extend_from_slice(b"x-max-length");
    expected.extend_from_slice(&[b'I', 0, 0, 0, 10]);
    assert_eq!(&p[..], &expected[..]);

    let m = Method::BasicNack(method::BasicNack { delivery_tag: 7, multiple: false, requeue: true });
    assert_eq!(&encode_method_payload(&m)[..], &[0, 60, 0, 120, 0, 0, 0, 0, 0, 0, 0, 7, 2]);

    let p = BasicProperties { delivery_mode: Some(2), priority: Some(5), ..Default::default() };
    assert_eq!(&p.to_bytes()[..], &[0b0001_1000, 0, 2, 5]);
}

#[test]
fn nan_floats_keep_their_bits() {
    let t = FieldTable(vec![
        ("f".into(), FieldValue::F32(f32::from_bits(0x7fc0_1234))),
        ("d".into(), FieldValue::F64(f64::from_bits(0xfff8_0000_dead_beef))),
        ("s".into(), FieldValue::F32(f32::from_bits(0x7f80_0001))), // signalling NaN
    ]);
    let bytes = encode_table(&t);
    let back = decode_prefixed_table(&bytes).expect("decode");
    assert_eq!(encode_table(&back), bytes);
    let bits: Vec<u64> = back
        .iter()
        .map(|(_, v)| match v {
            FieldValue::F32(f) => f.to_bits() as u64,
            FieldValue::F64(f) => f.to_bits(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bits, vec![0x7fc0_1234, 0xfff8_0000_dead_beef, 0x7f80_0001]);
}

#[test]
fn duplicate_keys_and_order_preserved() {
    let t = FieldTable(vec![
        ("b".into(), FieldValue::U8(1)),
        ("a".into(), FieldValue::Void),
        ("b".into(), FieldValue::Bool(true)),
        (ShortStr::from_bytes(Bytes::from_static(&[0xff, 0])).expect("short"), FieldValue::I16(-1)),
    ]);
    assert_eq!(decode_prefixed_table(&encode_table(&t)).expect("decode"), t);
}

#[test]
fn max_depth_table_roundtrips() {
    // MAX_DEPTH levels of nested tables are accepted (and one more is not: see robustness.rs).
    let mut t = FieldTable::new();
    for _ in 0..warren_protocol::table::MAX_DEPTH {
        t = FieldTable(vec![("k".into(), FieldValue::Table(t))]);
    }
    assert_eq!(decode_prefixed_table(&encode_table(&t)).expect("decode"), t);
}
