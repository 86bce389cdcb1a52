//! Hostile input: every decoder returns (Ok or Err) without panicking on arbitrary bytes, and
//! nesting far beyond `table::MAX_DEPTH` is refused without exhausting the stack.
mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{any_method, field_table, properties, Flavor};
use proptest::collection::vec;
use proptest::prelude::*;
use warren_protocol::frame;
use warren_protocol::method::{Method, ALL_METHODS};
use warren_protocol::table::MAX_DEPTH;
use warren_protocol::{BasicProperties, ContentHeader, FieldTable, MethodError};

/// Run every payload decoder on `b`; only panics matter.
fn decode_everything(b: &Bytes) {
    let _ = Method::decode(b.clone());
    let _ = FieldTable::decode(b.clone());
    let _ = BasicProperties::decode(b.clone());
    let _ = warren_protocol::properties::validate(b);
    if let Ok(h) = ContentHeader::decode(b.clone()) {
        let _ = BasicProperties::decode(h.properties);
    }
}

/// Drain frames from `bytes` like the connection reader does, decoding each payload.
fn drain_frames(bytes: &[u8], frame_max: u32) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(f)) = frame::decode(&mut buf, frame_max) {
        if let Some(limit) = std::num::NonZeroU32::new(frame_max) {
            assert!(f.payload.len() + 8 <= limit.get() as usize, "frame over frame_max accepted");
        }
        decode_everything(&f.payload);
    }
}

/// Bytes that look like a method of `ALL_METHODS` (right class and method id) followed by junk,
/// so every argument decoder is reached, not just the id lookup.
fn method_like() -> impl Strategy<Value = Bytes> {
    (prop::sample::select(ALL_METHODS.to_vec()), vec(any::<u8>(), 0..64)).prop_map(|((c, m, _), rest)| {
        let mut b = BytesMut::new();
        b.put_u16(c);
        b.put_u16(m);
        b.put_slice(&rest);
        b.freeze()
    })
}

/// Valid encodings with a few bytes overwritten and maybe truncated.
fn mutated(valid: Bytes, edits: Vec<(prop::sample::Index, u8)>, cut: prop::sample::Index) -> Bytes {
    let mut v = valid.to_vec();
    if v.is_empty() {
        return valid;
    }
    for (i, b) in edits {
        let at = i.index(v.len());
        v[at] = b;
    }
    let keep = cut.index(v.len() + 1);
    v.truncate(keep.max(1));
    Bytes::from(v)
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(b in vec(any::<u8>(), 0..512)) {
        let b = Bytes::from(b);
        decode_everything(&b);
        drain_frames(&b, 131072);
        drain_frames(&b, 4096);
    }

    #[test]
    fn random_frames_never_panic(
        frames in vec(
            (
                prop::sample::select(vec![1u8, 2, 3, 8, 0, 4, 0xCE]),
                any::<u16>(),
                vec(any::<u8>(), 0..300),
                any::<bool>(),
            ),
            1..6,
        ),
    ) {
        // Plausible frame headers around random payloads, sometimes with a wrong end byte.
        let mut wire = BytesMut::new();
        for (kind, ch, payload, good_end) in &frames {
            wire.put_u8(*kind);
            wire.put_u16(*ch);
            wire.put_u32(payload.len() as u32);
            wire.put_slice(payload);
            wire.put_u8(if *good_end { 0xCE } else { 0xCD });
        }
        drain_frames(&wire, 131072);
        drain_frames(&wire, 4096);
    }

    #[test]
    fn method_shaped_junk_never_panics(b in method_like()) {
        decode_everything(&b);
        let mut wire = BytesMut::new();
        frame::encode_raw(&mut wire, frame::FrameType::Method, 1, &b);
        drain_frames(&wire, 4096);
    }

    /// The in-place decoders of the broker's whole-publish path read a payload exactly as the
    /// owned decoders do, for valid and mutated publishes and headers, and never panic on a
    /// payload followed by other bytes.
    #[test]
    fn in_place_decoders_match_the_owned_ones(
        m in any_method(Flavor::Raw),
        props in properties(Flavor::Raw),
        size in any::<u64>(),
        e in edits(),
        cut in any::<prop::sample::Index>(),
        pad in (0usize..8, 0usize..8),
    ) {
        let mut publish = BytesMut::new();
        let m = match m {
            Method::BasicPublish(p) => Method::BasicPublish(p),
            _ => Method::BasicPublish(Default::default()),
        };
        m.encode(&mut publish);
        let mut header = BytesMut::new();
        ContentHeader::encode_payload(&mut header, 60, size, &props.to_bytes());
        for payload in [publish.freeze(), header.freeze()] {
            for payload in [payload.clone(), mutated(payload, e.clone(), cut)] {
                let mut buf = BytesMut::new();
                buf.put_bytes(0xAA, pad.0);
                buf.put_slice(&payload);
                buf.put_bytes(0x55, pad.1);
                let buf = buf.freeze();
                let at = pad.0..pad.0 + payload.len();
                let inner = &buf[at.clone()];
                let owned = warren_protocol::method::BasicPublish::decode(payload.clone());
                let borrowed = warren_protocol::method::BasicPublish::decode_ref(inner);
                prop_assert_eq!(owned.is_ok(), borrowed.is_ok());
                if let (Ok(o), Ok(b)) = (&owned, &borrowed) {
                    prop_assert_eq!(o.exchange.as_bytes(), b.exchange);
                    prop_assert_eq!(o.routing_key.as_bytes(), b.routing_key);
                    prop_assert_eq!((o.mandatory, o.immediate), (b.mandatory, b.immediate));
                }
                let owned = ContentHeader::decode(payload.clone());
                let borrowed = ContentHeader::decode_ref(inner);
                prop_assert_eq!(owned.as_ref().ok().map(|h| h.as_ref()), borrowed.ok());
                // Past the end (what follows in the buffer): never a panic.
                let past = &buf[at.start..];
                let _ = warren_protocol::method::BasicPublish::decode_ref(past);
                let _ = ContentHeader::decode_ref(past);
            }
        }
    }

    #[test]
    fn mutated_methods_never_panic(
        m in any_method(Flavor::Raw),
        e in edits(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        decode_everything(&mutated(b.freeze(), e, cut));
    }

    #[test]
    fn mutated_tables_never_panic(
        t in field_table(Flavor::Raw),
        e in edits(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = BytesMut::new();
        t.encode(&mut b);
        let b = mutated(b.freeze(), e, cut);
        decode_everything(&b);
        decode_everything(&b.slice(4.min(b.len())..));
    }

    #[test]
    fn mutated_properties_never_panic(
        p in properties(Flavor::Raw),
        e in edits(),
        cut in any::<prop::sample::Index>(),
    ) {
        let b = mutated(p.to_bytes(), e, cut);
        decode_everything(&b);
        // What validation accepts, a client can decode: the broker refuses anything else at
        // publish (a stored property list that consumers cannot parse kills every consumer).
        if warren_protocol::properties::validate(&b).is_ok() {
            let d = BasicProperties::decode(b.clone());
            prop_assert!(d.is_ok(), "validated but undecodable: {:?}", d);
            // Nothing is left over: re-encoding gives back the same bytes (continuation flag
            // words and the unused flag bit 1 aside: no client sends them, and the broker passes
            // a publisher's property bytes on unchanged, never re-encoded).
            if b.len() >= 2 && b[1] & 0b11 == 0 {
                prop_assert_eq!(d.expect("decoded").to_bytes(), b.clone());
            }
        }
        let mut h = BytesMut::new();
        ContentHeader::encode_payload(&mut h, 60, 5, &b);
        decode_everything(&h.freeze());
    }
}

/// A table whose single entry is `depth` levels of nested `F` tables (innermost empty), built in
/// linear time. Returned without the outer u32 length, as `FieldTable::decode` takes it.
fn nested_tables(depth: usize) -> Bytes {
    // Each level is: key "k" (2 bytes), 'F', u32 length, then the next level.
    const LEVEL: usize = 2 + 1 + 4;
    let mut b = BytesMut::with_capacity(depth * LEVEL);
    for i in 0..depth {
        b.put_u8(1);
        b.put_u8(b'k');
        b.put_u8(b'F');
        b.put_u32(((depth - 1 - i) * LEVEL) as u32);
    }
    b.freeze()
}

/// A table with one entry holding `depth` levels of nested arrays.
fn nested_arrays(depth: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(depth * 5 + 2);
    b.put_u8(1);
    b.put_u8(b'k');
    for i in 0..depth {
        b.put_u8(b'A');
        b.put_u32(((depth - 1 - i) * 5) as u32);
    }
    b.freeze()
}

/// Alternating tables and arrays (F, A, F, A, ...); an entry inside a table has a key, a value
/// inside an array has none.
fn nested_mixed(depth: usize) -> Bytes {
    let keyed = |i: usize| i == 0 || i % 2 == 1;
    // Encoded size of each level, from the inside out.
    let mut sizes = vec![0usize; depth + 1];
    for i in (0..depth).rev() {
        sizes[i] = if keyed(i) { 2 } else { 0 } + 5 + sizes[i + 1];
    }
    let mut b = BytesMut::with_capacity(sizes[0]);
    for i in 0..depth {
        if keyed(i) {
            b.put_u8(1);
            b.put_u8(b'k');
        }
        b.put_u8(if i % 2 == 0 { b'F' } else { b'A' });
        b.put_u32(sizes[i + 1] as u32);
    }
    b.freeze()
}

#[test]
fn deep_nesting_is_rejected_without_stack_overflow() {
    assert_eq!(FieldTable::decode(nested_tables(MAX_DEPTH + 1)), Err(MethodError::TooDeep));
    for depth in [1000, 10_000, 100_000] {
        assert_eq!(FieldTable::decode(nested_tables(depth)), Err(MethodError::TooDeep), "tables {depth}");
        assert_eq!(FieldTable::decode(nested_arrays(depth)), Err(MethodError::TooDeep), "arrays {depth}");
        assert_eq!(FieldTable::decode(nested_mixed(depth)), Err(MethodError::TooDeep), "mixed {depth}");
    }
    // Shallow mixed nesting is fine.
    FieldTable::decode(nested_mixed(MAX_DEPTH / 2)).expect("mixed nesting within the limit");
}

#[test]
fn nesting_up_to_max_depth_is_accepted() {
    let t = FieldTable::decode(nested_tables(MAX_DEPTH)).expect("MAX_DEPTH nested tables");
    let mut b = BytesMut::new();
    t.encode(&mut b);
    assert_eq!(&b[4..], &nested_tables(MAX_DEPTH)[..]);
}

#[test]
fn deep_nesting_inside_a_method_and_properties() {
    let inner = nested_tables(10_000);

    // queue.declare with the nested table as arguments.
    let mut p = BytesMut::new();
    p.put_u16(50);
    p.put_u16(10);
    p.put_u16(0);
    p.put_u8(1);
    p.put_u8(b'q');
    p.put_u8(0);
    p.put_u32(inner.len() as u32);
    p.put_slice(&inner);
    assert_eq!(Method::decode(p.freeze()), Err(MethodError::TooDeep));

    // Properties with only the headers flag set.
    let mut p = BytesMut::new();
    p.put_u16(1 << 13);
    p.put_u32(inner.len() as u32);
    p.put_slice(&inner);
    assert_eq!(BasicProperties::decode(p.freeze()), Err(MethodError::TooDeep));
}

#[test]
fn huge_lengths_are_truncation_errors() {
    // Length fields claiming far more than is there must not allocate or read out of bounds.
    let cases: &[&[u8]] = &[
        &[1, b'k', b'S', 0xff, 0xff, 0xff, 0xff],
        &[1, b'k', b'x', 0xff, 0xff, 0xff, 0xff, 1, 2],
        &[1, b'k', b'A', 0xff, 0xff, 0xff, 0xff],
        &[1, b'k', b'F', 0x7f, 0xff, 0xff, 0xff],
        &[200, b'k'],
        &[1, b'k', b'D', 1],
        &[1, b'k'],
    ];
    for c in cases {
        assert_eq!(FieldTable::decode(Bytes::from_static(c)), Err(MethodError::Truncated), "{c:?}");
    }
    assert_eq!(FieldTable::decode(Bytes::from_static(&[1, b'k', b'U', 0, 0])), Err(MethodError::BadFieldType(b'U')));
    // Property flag words chained forever (bit 0) run out of input rather than looping.
    assert_eq!(BasicProperties::decode(Bytes::from_static(&[0, 1, 0, 1, 0, 1])), Err(MethodError::Truncated));
    // A content header shorter than its fixed part.
    assert_eq!(
        ContentHeader::decode(Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0])),
        Err(MethodError::Truncated)
    );
}
