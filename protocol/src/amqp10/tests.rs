//! Tests of the AMQP 1.0 codec and of the 0-9-1 conversions.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use super::value::*;
use super::*;
use crate::properties::BasicProperties;
use crate::table::{FieldTable, FieldValue};
use crate::types::{LongStr, ShortStr};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn hex(s: &str) -> Bytes {
    let s: String = s.split_whitespace().collect();
    Bytes::from((0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>())
}

fn enc(v: &Value) -> Bytes {
    let mut out = BytesMut::new();
    v.encode(&mut out);
    out.freeze()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn sym(s: &'static str) -> Value {
    Value::symbol(s)
}

fn st(s: &'static str) -> Value {
    Value::String(b(s))
}

// ---------------------------------------------------------------------------------------------
// Values: every constructor.

#[test]
fn decodes_every_primitive_constructor() {
    let cases: Vec<(&str, Value)> = vec![
        ("40", Value::Null),
        ("41", Value::Bool(true)),
        ("42", Value::Bool(false)),
        ("5601", Value::Bool(true)),
        ("5600", Value::Bool(false)),
        ("43", Value::Uint(0)),
        ("44", Value::Ulong(0)),
        ("45", Value::List(vec![])),
        ("50ff", Value::Ubyte(255)),
        ("51ff", Value::Byte(-1)),
        ("5207", Value::Uint(7)),
        ("53ff", Value::Ulong(255)),
        ("54fe", Value::Int(-2)),
        ("55fd", Value::Long(-3)),
        ("60fffe", Value::Ushort(0xfffe)),
        ("61fffe", Value::Short(-2)),
        ("70deadbeef", Value::Uint(0xdeadbeef)),
        ("71ffffff00", Value::Int(-256)),
        ("723fc00000", Value::Float(1.5)),
        ("730001f600", Value::Char(0x1f600)),
        ("7401020304", Value::Decimal32([1, 2, 3, 4])),
        ("800102030405060708", Value::Ulong(0x0102030405060708)),
        ("81fffffffffffffffe", Value::Long(-2)),
        ("824004000000000000", Value::Double(2.5)),
        ("830000018bcfe56800", Value::Timestamp(1_700_000_000_000)),
        ("840102030405060708", Value::Decimal64([1, 2, 3, 4, 5, 6, 7, 8])),
        ("94000102030405060708090a0b0c0d0e0f", Value::Decimal128(core::array::from_fn(|i| i as u8))),
        ("98000102030405060708090a0b0c0d0e0f", Value::Uuid(core::array::from_fn(|i| i as u8))),
        ("a003010203", Value::Binary(Bytes::from_static(&[1, 2, 3]))),
        ("a1026869", st("hi")),
        ("a3026869", sym("hi")),
        ("b000000003010203", Value::Binary(Bytes::from_static(&[1, 2, 3]))),
        ("b1000000026869", st("hi")),
        ("b3000000026869", sym("hi")),
    ];
    for (h, want) in cases {
        assert_eq!(Value::decode(&hex(h)), Ok(want.clone()), "{h}");
        // And back: decode(encode(v)) == v.
        assert_eq!(Value::decode(&enc(&want)), Ok(want), "{h}");
    }
}

#[test]
fn decodes_compounds_arrays_and_described() {
    let cases: Vec<(&str, Value)> = vec![
        ("c00502 5401 a100", Value::List(vec![Value::Int(1), st("")])),
        ("d0 00000008 00000002 5401 a100", Value::List(vec![Value::Int(1), st("")])),
        ("c1 06 02 a3016b 5401", Value::Map(vec![(sym("k"), Value::Int(1))])),
        ("d1 00000009 00000002 a3016b 5401", Value::Map(vec![(sym("k"), Value::Int(1))])),
        ("c1 01 00", Value::Map(vec![])),
        ("e0 04 02 54 01 02", Value::Array(vec![Value::Int(1), Value::Int(2)])),
        ("f0 0000000a 00000002 a3 016b 026b6b", Value::Array(vec![sym("k"), sym("kk")])),
        ("e0 02 00 40", Value::Array(vec![])),
        ("e0 02 03 40", Value::Array(vec![Value::Null, Value::Null, Value::Null])),
        ("e0 04 02 56 01 00", Value::Array(vec![Value::Bool(true), Value::Bool(false)])),
        // An array of lists: one shared constructor, each element sized.
        ("e0 08 02 c0 030154 01 0100", Value::Array(vec![Value::List(vec![Value::Int(1)]), Value::List(vec![])])),
        ("00 53 70 45", Value::Described(Box::new(Value::Ulong(0x70)), Box::new(Value::List(vec![])))),
        ("00 a3 03 666f6f a1 01 78", Value::Described(Box::new(sym("foo")), Box::new(st("x")))),
        // Array of described values: the descriptor is written once, before the element constructor.
        (
            "e0 07 02 00 53 01 50 0a 0b",
            Value::Array(vec![
                Value::Described(Box::new(Value::Ulong(1)), Box::new(Value::Ubyte(10))),
                Value::Described(Box::new(Value::Ulong(1)), Box::new(Value::Ubyte(11))),
            ]),
        ),
    ];
    for (h, want) in cases {
        assert_eq!(Value::decode(&hex(h)), Ok(want.clone()), "{h}");
        assert_eq!(Value::decode(&enc(&want)), Ok(want), "{h}");
    }
}

#[test]
fn encodes_compactly() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::Bool(true), "41"),
        (Value::Uint(0), "43"),
        (Value::Uint(200), "52c8"),
        (Value::Uint(256), "7000000100"),
        (Value::Ulong(0), "44"),
        (Value::Ulong(42), "532a"),
        (Value::Ulong(256), "800000000000000100"),
        (Value::Int(-128), "5480"),
        (Value::Int(128), "7100000080"),
        (Value::Long(127), "557f"),
        (Value::Long(-129), "81ffffffffffffff7f"),
        (st("hi"), "a1026869"),
        (Value::List(vec![]), "45"),
        (Value::List(vec![Value::Null]), "c0020140"),
        (Value::Map(vec![]), "c10100"),
        (Value::Array(vec![sym("a"), sym("bc")]), "e0 0d 02 b3 00000001 61 00000002 6263"),
        (Value::Array(vec![]), "e0020040"),
        (Value::Array(vec![Value::Long(1), Value::Long(2)]), "e0 12 02 81 0000000000000001 0000000000000002"),
    ];
    for (v, h) in cases {
        assert_eq!(enc(&v), hex(h), "{v:?}");
    }
    // Long values switch to the 32-bit forms.
    let long = Value::String(Bytes::from(vec![b'a'; 300]));
    assert_eq!(&enc(&long)[..5], &hex("b10000012c")[..]);
    let many = Value::List(vec![Value::Null; 300]);
    assert_eq!(&enc(&many)[..9], &hex("d0 00000130 0000012c")[..]);
    assert_eq!(Value::decode(&enc(&many)), Ok(many));
    let wide = Value::List(vec![Value::String(Bytes::from(vec![b'a'; 250])), Value::Null, Value::Null, Value::Null]);
    assert_eq!(enc(&wide)[0], LIST32);
    assert_eq!(Value::decode(&enc(&wide)), Ok(wide));
}

#[test]
fn heterogeneous_array_is_written_as_list() {
    let mixed = Value::Array(vec![Value::Int(1), st("x")]);
    assert_eq!(Value::decode(&enc(&mixed)), Ok(Value::List(vec![Value::Int(1), st("x")])));
    // Nested arrays of arrays keep their shape; a nested mixed array makes the outer a list.
    let nested =
        Value::Array(vec![Value::Array(vec![Value::Int(1)]), Value::Array(vec![Value::Int(2), Value::Int(3)])]);
    assert_eq!(Value::decode(&enc(&nested)), Ok(nested));
    let inner_mixed = Value::Array(vec![Value::Array(vec![Value::Int(1), Value::Null])]);
    assert_eq!(Value::decode(&enc(&inner_mixed)), Ok(Value::List(vec![Value::List(vec![Value::Int(1), Value::Null])])));
    // Described elements with different descriptors cannot share a constructor.
    let d = |n| Value::Described(Box::new(Value::Ulong(n)), Box::new(Value::Null));
    let arr = Value::Array(vec![d(1), d(2)]);
    assert_eq!(Value::decode(&enc(&arr)), Ok(Value::List(vec![d(1), d(2)])));
}

#[test]
fn malformed_values_are_errors() {
    let cases: Vec<(&str, Amqp10Error)> = vec![
        ("", Amqp10Error::Truncated),
        ("70 0000", Amqp10Error::Truncated),
        ("a1 05 6869", Amqp10Error::Truncated),
        ("b1 ffffffff 00", Amqp10Error::Truncated),
        ("5602", Amqp10Error::BadBoolean(2)),
        ("ff", Amqp10Error::BadConstructor(0xff)),
        ("01", Amqp10Error::BadConstructor(0x01)),
        ("c0 00", Amqp10Error::BadCompound),
        ("c0 03 05 40 40", Amqp10Error::BadCount),
        ("c1 03 01 40 40", Amqp10Error::BadCount),
        ("c1 02 01 40", Amqp10Error::BadCount),
        // The last element runs past the list's size.
        ("c0 02 01 52 07", Amqp10Error::BadCompound),
        ("e0 03 05 40 40", Amqp10Error::BadCompound),
        ("e0 05 01 00 53 01 00", Amqp10Error::BadConstructor(0)),
        ("40 40", Amqp10Error::TrailingBytes),
        // 2^32-1 nulls of zero width: refused instead of allocated.
        ("f0 00000005 ffffffff 40", Amqp10Error::TooManyValues),
    ];
    for (h, want) in cases {
        assert_eq!(Value::decode(&hex(h)), Err(want), "{h}");
    }
    // Zero-width described elements each carrying a copy of a 200-value descriptor: refused too.
    let mut raw = hex("f0 000000d1 ffffffff 00 c0 c9 c8");
    raw = Bytes::from([raw.to_vec(), vec![NULL; 201]].concat());
    assert_eq!(Value::decode(&raw), Err(Amqp10Error::TooManyValues));
    // Nesting: 65 lists deep is refused, 64 is fine.
    let nest = |n: usize| {
        let mut v = Value::Null;
        for _ in 0..n {
            v = Value::List(vec![v]);
        }
        enc(&v)
    };
    assert!(Value::decode(&nest(MAX_DEPTH)).is_ok());
    assert_eq!(Value::decode(&nest(MAX_DEPTH + 1)), Err(Amqp10Error::TooDeep));
    let descriptors = Bytes::from([vec![0u8; 10_000], vec![NULL]].concat());
    assert_eq!(Value::decode(&descriptors), Err(Amqp10Error::TooDeep));
}

// ---------------------------------------------------------------------------------------------
// Messages.

/// `AMQPMessage(body=b"hello")` as rstream 0.x encodes it.
const RSTREAM_SIMPLE: &str = "005375a00568656c6c6f";
/// rstream with every header and properties field, application properties of several types
/// (a `bytes` key is written as a string) and two message annotations.
const RSTREAM_FULL: &str = "005370c00e0556015005700000ea6056005202005372c11604a305782d666f6fa103626172a305782d6e756d5401005373c0560da1056d73672d31a0056775657374a1092f7175657565732f71a1047375626aa1057265706c79532aa30a746578742f706c61696ea304677a6970830000018bcfe568008300000174876e8000a101675207a1027267005374c14810a1036b6579a10576616c7565a1016e5405a101625601a10166823ff8000000000000a1036e656754fda103626967810000010000000000a1046e6f6e6540a10362696ea0020001005375a00b68656c6c6f20776f726c64";
/// rstream, a uuid message-id: every other properties field is written as null.
const RSTREAM_UUID: &str = "005373c01e0d9812345678123456781234567812345678404040404040404040404040005375a00178";
/// rstream `AMQPMessage(value="a string value")`.
const RSTREAM_VALUE: &str = "005377a10e6120737472696e672076616c7565";
/// rstream `AMQPMessage(value={"k": [1, 2, "three"]})`.
const RSTREAM_VALUE_MAP: &str = "005377c11202a1016bc00c0354015402a1057468726565";
/// rstream `AMQPMessage(sequence=[[1, "two"], [3]])`: two amqp-sequence sections.
const RSTREAM_SEQUENCE: &str = "005376c008025401a10374776f005376c003015403";

fn within(part: &Bytes, whole: &Bytes) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

#[test]
fn decodes_rstream_simple_without_copying_the_body() {
    let raw = hex(RSTREAM_SIMPLE);
    let m = Message10::decode(raw.clone()).unwrap();
    assert_eq!(m, Message10::data(Properties::default(), b("hello")));
    let Body::Data(parts) = &m.body else { panic!("data body") };
    assert!(within(&parts[0], &raw), "the body is a slice of the input");
    assert_eq!(m.to_bytes(), raw, "byte-exact round trip");
}

#[test]
fn decodes_rstream_full_message() {
    let raw = hex(RSTREAM_FULL);
    let m = Message10::decode(raw.clone()).unwrap();
    assert_eq!(
        m.header,
        Some(Header {
            durable: Some(true),
            priority: Some(5),
            ttl: Some(60000),
            first_acquirer: Some(false),
            delivery_count: Some(2)
        })
    );
    assert_eq!(m.message_annotations, Some(vec![(sym("x-foo"), st("bar")), (sym("x-num"), Value::Int(1))]));
    assert_eq!(
        m.properties,
        Some(Properties {
            message_id: Some(MessageId::String(b("msg-1"))),
            user_id: Some(b("guest")),
            to: Some(b("/queues/q")),
            subject: Some(b("subj")),
            reply_to: Some(b("reply")),
            correlation_id: Some(MessageId::Ulong(42)),
            content_type: Some(b("text/plain")),
            content_encoding: Some(b("gzip")),
            absolute_expiry_time: Some(1_700_000_000_000),
            creation_time: Some(1_600_000_000_000),
            group_id: Some(b("g")),
            group_sequence: Some(7),
            reply_to_group_id: Some(b("rg")),
        })
    );
    assert_eq!(
        m.application_properties,
        Some(vec![
            (st("key"), st("value")),
            (st("n"), Value::Int(5)),
            (st("b"), Value::Bool(true)),
            (st("f"), Value::Double(1.5)),
            (st("neg"), Value::Int(-3)),
            (st("big"), Value::Long(1 << 40)),
            (st("none"), Value::Null),
            (st("bin"), Value::Binary(Bytes::from_static(&[0, 1]))),
        ])
    );
    assert_eq!(m.body, Body::Data(vec![b("hello world")]));
    assert_eq!(map_get(m.message_annotations.as_deref().unwrap(), b"x-num"), Some(&Value::Int(1)));
    // Round trip through Warren's encoder (more compact: no trailing nulls, 0x41 booleans).
    let again = m.to_bytes();
    assert!(again.len() < raw.len());
    assert_eq!(Message10::decode(again).unwrap(), m);
}

#[test]
fn decodes_rstream_uuid_and_encoded_bodies() {
    let m = Message10::decode(hex(RSTREAM_UUID)).unwrap();
    let p = m.properties.clone().unwrap();
    assert_eq!(
        p.message_id,
        Some(MessageId::Uuid(*b"\x12\x34\x56\x78\x12\x34\x56\x78\x12\x34\x56\x78\x12\x34\x56\x78"))
    );
    assert_eq!(Properties { message_id: None, ..p }, Properties::default());
    assert_eq!(Message10::decode(m.to_bytes()).unwrap(), m);

    for (h, want) in [
        (RSTREAM_VALUE, vec![st("a string value")]),
        (
            RSTREAM_VALUE_MAP,
            vec![Value::Map(vec![(st("k"), Value::List(vec![Value::Int(1), Value::Int(2), st("three")]))])],
        ),
    ] {
        let raw = hex(h);
        let m = Message10::decode(raw.clone()).unwrap();
        assert_eq!(m.body, Body::Value(raw.clone()));
        assert_eq!(m.body.values().unwrap(), want);
        assert_eq!(m.to_bytes(), raw);
    }
    let raw = hex(RSTREAM_SEQUENCE);
    let m = Message10::decode(raw.clone()).unwrap();
    assert_eq!(m.body, Body::Sequence(raw.clone()));
    assert_eq!(
        m.body.values().unwrap(),
        vec![Value::List(vec![Value::Int(1), st("two")]), Value::List(vec![Value::Int(3)])]
    );
    assert_eq!(m.to_bytes(), raw);
}

fn full_message() -> Message10 {
    Message10 {
        header: Some(Header {
            durable: Some(true),
            priority: None,
            ttl: Some(1000),
            first_acquirer: None,
            delivery_count: None,
        }),
        delivery_annotations: Some(vec![(sym("x-da"), Value::Uint(1))]),
        message_annotations: Some(vec![(sym("x-opt-a"), Value::Array(vec![st("a"), st("b")]))]),
        properties: Some(Properties {
            message_id: Some(MessageId::Binary(Bytes::from_static(&[0, 1, 2]))),
            reply_to_group_id: Some(b("rg")),
            ..Properties::default()
        }),
        application_properties: Some(vec![(st("k"), Value::Timestamp(-5))]),
        body: Body::Data(vec![b("one"), Bytes::from(vec![7u8; 1000])]),
        footer: Some(vec![(sym("x-f"), Value::Binary(b("sig")))]),
    }
}

#[test]
fn message_round_trips() {
    let m = full_message();
    let raw = m.to_bytes();
    let back = Message10::decode(raw.clone()).unwrap();
    assert_eq!(back, m);
    let Body::Data(parts) = &back.body else { panic!("data body") };
    assert!(parts.iter().all(|p| within(p, &raw)));
    assert_eq!(back.to_bytes(), raw);

    // Empty sections survive as present-but-empty.
    let empty = Message10 {
        header: Some(Header::default()),
        delivery_annotations: None,
        message_annotations: Some(vec![]),
        properties: Some(Properties::default()),
        application_properties: Some(vec![]),
        body: Body::Data(vec![Bytes::new()]),
        footer: None,
    };
    assert_eq!(Message10::decode(empty.to_bytes()).unwrap(), empty);
    // An empty data body is written as one empty data section.
    let none = Message10 { body: Body::Data(vec![]), ..empty.clone() };
    assert_eq!(Message10::decode(none.to_bytes()).unwrap().body, Body::Data(vec![Bytes::new()]));
}

#[test]
fn symbolic_descriptors_and_lenient_field_types() {
    // header by symbol with priority as a uint; properties with a string content-type.
    let mut raw = BytesMut::new();
    Value::Described(Box::new(sym("amqp:header:list")), Box::new(Value::List(vec![Value::Null, Value::Uint(9)])))
        .encode(&mut raw);
    Value::Described(
        Box::new(sym("amqp:properties:list")),
        Box::new(Value::List(vec![
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            st("text/plain"),
        ])),
    )
    .encode(&mut raw);
    Value::Described(Box::new(sym("amqp:data:binary")), Box::new(Value::Binary(b("x")))).encode(&mut raw);
    let m = Message10::decode(raw.freeze()).unwrap();
    assert_eq!(m.header.unwrap().priority, Some(9));
    assert_eq!(m.properties.unwrap().content_type, Some(b("text/plain")));
    // ulong descriptor in its 8-byte form.
    let m = Message10::decode(hex("00 80 0000000000000075 a0 01 78")).unwrap();
    assert_eq!(m.body, Body::Data(vec![b("x")]));
}

#[test]
fn malformed_messages_are_errors() {
    let cases: Vec<(&str, Amqp10Error)> = vec![
        ("", Amqp10Error::MissingBody),
        ("005370 45", Amqp10Error::MissingBody),
        ("005375a001", Amqp10Error::Truncated),
        ("40", Amqp10Error::NotASection),
        ("005379 45", Amqp10Error::NotASection),
        ("00a303666f6f 45", Amqp10Error::NotASection),
        ("005375 a1 0178", Amqp10Error::BadSection),
        ("005376 a1 0178", Amqp10Error::BadSection),
        ("005370 40 005375a00178", Amqp10Error::BadSection),
        ("005372 45 005375a00178", Amqp10Error::BadSection),
        // Out of order, repeated, or mixed body kinds.
        ("005373 45 005370 45 005375a00178", Amqp10Error::SectionOrder),
        ("005370 45 005370 45 005375a00178", Amqp10Error::SectionOrder),
        ("005375a00178 005377 40", Amqp10Error::SectionOrder),
        ("005377 40 005377 40", Amqp10Error::SectionOrder),
        ("005375a00178 005378c10100 005375a00178", Amqp10Error::SectionOrder),
        // Field types and list sizes.
        ("005370 c00201a1 005375a00178", Amqp10Error::BadCompound),
        ("005370 c003015201 005375a00178", Amqp10Error::BadField("header.durable")),
        ("005370 c00302 40 70 005375a00178", Amqp10Error::BadCompound),
        ("005370 c00702 40 7000000100 005375a00178", Amqp10Error::BadField("header.priority")),
        ("005373 c00201 41 005375a00178", Amqp10Error::BadField("properties.message-id")),
        ("005370 c00706 404040404040 005375a00178", Amqp10Error::BadField("header")),
    ];
    for (h, want) in cases {
        assert_eq!(Message10::decode(hex(h)), Err(want), "{h}");
    }
    let many = hex(&"005375a000".repeat(MAX_SECTIONS));
    assert!(
        matches!(Message10::decode(many.clone()), Ok(Message10 { body: Body::Data(parts), .. }) if parts.len() == MAX_SECTIONS)
    );
    let too_many = Bytes::from([many.to_vec(), hex("005375a000").to_vec()].concat());
    assert_eq!(Message10::decode(too_many), Err(Amqp10Error::TooManySections));
}

// ---------------------------------------------------------------------------------------------
// Conversions to and from AMQP 0-9-1.

fn ss(s: &'static str) -> ShortStr {
    ShortStr::from_static(s)
}

fn ls(s: &'static str) -> FieldValue {
    FieldValue::LongStr(LongStr::from(s))
}

#[test]
fn rstream_message_to_amqp091() {
    let raw = hex(RSTREAM_FULL);
    let m = Message10::decode(raw.clone()).unwrap();
    let (p, body) = to_amqp091(&m);
    assert_eq!(body, b("hello world"));
    assert!(within(&body, &raw), "one data section: the body is not copied");
    assert_eq!(
        p,
        BasicProperties {
            content_type: Some(ss("text/plain")),
            content_encoding: Some(ss("gzip")),
            headers: Some(FieldTable(vec![
                (ss("x-foo"), ls("bar")),
                (ss("x-num"), FieldValue::I32(1)),
                (ss("key"), ls("value")),
                (ss("n"), FieldValue::I32(5)),
                (ss("b"), FieldValue::Bool(true)),
                (ss("f"), FieldValue::F64(1.5)),
                (ss("neg"), FieldValue::I32(-3)),
                (ss("big"), FieldValue::I64(1 << 40)),
                (ss("none"), FieldValue::Void),
                // RabbitMQ turns AMQP 1.0 binaries into long strings.
                (ss("bin"), FieldValue::LongStr(LongStr(Bytes::from_static(&[0, 1])))),
            ])),
            delivery_mode: Some(2),
            priority: Some(5),
            correlation_id: Some(ss("42")),
            reply_to: Some(ss("reply")),
            expiration: Some(ss("60000")),
            message_id: Some(ss("msg-1")),
            timestamp: Some(1_600_000_000),
            kind: None,
            user_id: Some(ss("guest")),
            app_id: Some(ss("g")),
            cluster_id: None,
        }
    );
    // The plain rstream message: no header, so no delivery mode.
    let (p, body) = to_amqp091(&Message10::decode(hex(RSTREAM_SIMPLE)).unwrap());
    assert_eq!((p, body), (BasicProperties::default(), b("hello")));
}

fn all_properties() -> BasicProperties {
    BasicProperties {
        content_type: Some(ss("application/json")),
        content_encoding: Some(ss("utf-8")),
        headers: Some(FieldTable(vec![
            (ss("x-str"), ls("v")),
            (ss("CC"), FieldValue::Array(vec![ls("rk2"), ls("rk3")])),
            (
                ss("x-table"),
                FieldValue::Table(FieldTable(vec![(ss("a"), FieldValue::I64(1)), (ss("b"), FieldValue::Void)])),
            ),
            (
                ss("x-death"),
                FieldValue::Array(vec![FieldValue::Table(FieldTable(vec![(ss("count"), FieldValue::I64(1))]))]),
            ),
            (ss("plain"), ls("text")),
            (ss("i8"), FieldValue::I8(-1)),
            (ss("u8"), FieldValue::U8(1)),
            (ss("i16"), FieldValue::I16(-2)),
            (ss("u16"), FieldValue::U16(2)),
            (ss("i32"), FieldValue::I32(-3)),
            (ss("u32"), FieldValue::U32(3)),
            (ss("i64"), FieldValue::I64(-4)),
            (ss("f32"), FieldValue::F32(0.5)),
            (ss("f64"), FieldValue::F64(0.25)),
            (ss("bool"), FieldValue::Bool(false)),
            (ss("ts"), FieldValue::Timestamp(1_700_000_000)),
            (ss("void"), FieldValue::Void),
        ])),
        delivery_mode: Some(2),
        priority: Some(7),
        correlation_id: Some(ss("corr")),
        reply_to: Some(ss("amq.rabbitmq.reply-to.abc")),
        expiration: Some(ss("60000")),
        message_id: Some(ss("urn:uuid:12345678-1234-5678-1234-567812345678")),
        timestamp: Some(1_700_000_000),
        kind: Some(ss("order.created")),
        user_id: Some(ss("guest")),
        app_id: Some(ss("billing")),
        cluster_id: Some(ss("dropped")),
    }
}

#[test]
fn amqp091_to_amqp10_as_rabbitmq_writes_it() {
    let props = all_properties();
    let body = b("{\"a\":1}");
    let m = message_from_amqp091(&props, &body, None);
    assert_eq!(
        m.header,
        Some(Header {
            durable: Some(true),
            priority: Some(7),
            ttl: Some(60000),
            first_acquirer: Some(true),
            delivery_count: Some(0)
        })
    );
    assert_eq!(
        m.message_annotations,
        Some(vec![
            // RabbitMQ 3.10 keeps delivery mode, priority and expiration as annotations too.
            (sym("x-basic-delivery-mode"), Value::Ubyte(2)),
            (sym("x-basic-priority"), Value::Ubyte(7)),
            (sym("x-basic-expiration"), st("60000")),
            (sym("x-str"), st("v")),
            (sym("x-cc"), Value::List(vec![st("rk2"), st("rk3")])),
            (sym("x-table"), Value::Map(vec![(sym("a"), Value::Long(1)), (sym("b"), Value::Null)])),
            (sym("x-death"), Value::List(vec![Value::Map(vec![(sym("count"), Value::Long(1))])])),
        ])
    );
    assert_eq!(
        m.properties,
        Some(Properties {
            message_id: Some(MessageId::Uuid(*b"\x12\x34\x56\x78\x12\x34\x56\x78\x12\x34\x56\x78\x12\x34\x56\x78")),
            user_id: Some(b("guest")),
            reply_to: Some(b("amq.rabbitmq.reply-to.abc")),
            correlation_id: Some(MessageId::String(b("corr"))),
            content_type: Some(b("application/json")),
            content_encoding: Some(b("utf-8")),
            creation_time: Some(1_700_000_000_000),
            group_id: Some(b("billing")),
            ..Properties::default()
        })
    );
    assert_eq!(
        m.application_properties,
        Some(vec![
            (st("plain"), st("text")),
            (st("i8"), Value::Byte(-1)),
            (st("u8"), Value::Ubyte(1)),
            (st("i16"), Value::Short(-2)),
            (st("u16"), Value::Ushort(2)),
            (st("i32"), Value::Int(-3)),
            (st("u32"), Value::Uint(3)),
            (st("i64"), Value::Long(-4)),
            (st("f32"), Value::Float(0.5)),
            (st("f64"), Value::Double(0.25)),
            (st("bool"), Value::Bool(false)),
            (st("ts"), Value::Timestamp(1_700_000_000_000)),
            (st("void"), Value::Null),
            // The type and app-id, after the headers (the type is not an annotation).
            (st("x-basic-type"), st("order.created")),
            (st("x-basic-app-id"), st("billing")),
        ])
    );
    assert_eq!(m.body, Body::Data(vec![body.clone()]));
    let Body::Data(parts) = &m.body else { panic!("data body") };
    assert_eq!(parts[0].as_ptr(), body.as_ptr(), "the message refers to the body, the encoding copies it");
    assert_eq!(from_amqp091(&props, &body), m.to_bytes());
}

#[test]
fn amqp091_round_trip_through_a_stream() {
    let props = all_properties();
    let body = b("payload");
    let (back, back_body) = to_amqp091(&Message10::decode(from_amqp091(&props, &body)).unwrap());
    assert_eq!(back_body, body);
    // Everything comes back but cluster-id; headers come back annotations first (`CC` was one),
    // then application properties; the uuid message-id comes back as its urn string.
    let mut want = props.clone();
    want.cluster_id = None;
    assert_eq!(back, want);

    // The type travels only as the `x-basic-type` application property, and comes back from it;
    // the `x-basic-*` application properties do not come back as headers.
    let p = BasicProperties { kind: Some(ss("t")), app_id: Some(ss("a")), ..BasicProperties::default() };
    let m = Message10::decode(from_amqp091(&p, &body)).unwrap();
    assert_eq!(m.message_annotations, None);
    assert_eq!(m.application_properties, Some(vec![(st("x-basic-type"), st("t")), (st("x-basic-app-id"), st("a"))]));
    let (back, _) = to_amqp091(&m);
    assert_eq!(back, BasicProperties { delivery_mode: Some(1), ..p });

    // Delivery modes: 1 and unset both travel as durable=false and come back as 1.
    for (mode, back_mode) in [(Some(1), Some(1)), (None, Some(1)), (Some(2), Some(2))] {
        let p = BasicProperties { delivery_mode: mode, ..BasicProperties::default() };
        let (back, _) = to_amqp091(&Message10::decode(from_amqp091(&p, &body)).unwrap());
        assert_eq!(back, BasicProperties { delivery_mode: back_mode, ..BasicProperties::default() });
    }
}

#[test]
fn header_value_types_that_change_on_the_way() {
    let props = BasicProperties {
        headers: Some(FieldTable(vec![
            (ss("bin"), FieldValue::Bytes(LongStr::from("raw"))),
            (ss("nonutf8"), FieldValue::LongStr(LongStr::from(vec![0xff, 0x00]))),
            (ss("dec"), FieldValue::Decimal(2, 314)),
            (ss("arr"), FieldValue::Array(vec![ls("a")])),
            (ss("tbl"), FieldValue::Table(FieldTable::new())),
            (ss("BCC"), FieldValue::Array(vec![ls("secret")])),
        ])),
        ..BasicProperties::default()
    };
    let m = message_from_amqp091(&props, &Bytes::new(), None);
    // Binary stays binary, non-UTF-8 text becomes binary, decimals, arrays and tables are dropped.
    assert_eq!(
        m.application_properties,
        Some(vec![
            (st("bin"), Value::Binary(b("raw"))),
            (st("nonutf8"), Value::Binary(Bytes::from_static(&[0xff, 0])))
        ])
    );
    assert_eq!(m.message_annotations, None);
    let (back, _) = to_amqp091(&m);
    // RabbitMQ turns AMQP 1.0 binaries into long strings.
    assert_eq!(
        back.headers,
        Some(FieldTable(vec![
            (ss("bin"), ls("raw")),
            (ss("nonutf8"), FieldValue::LongStr(LongStr::from(vec![0xff, 0x00])))
        ]))
    );
}

#[test]
fn amqp10_values_that_become_headers() {
    let m = Message10 {
        message_annotations: Some(vec![
            (sym("x-uuid"), Value::Uuid([0xab; 16])),
            (sym("x-nan"), Value::Double(f64::NAN)),
            (sym("x-dec"), Value::Decimal64([0; 8])),
            (sym("x-char"), Value::Char(65)),
            (sym("x-ulong"), Value::Ulong(u64::MAX)),
            (sym("x-ts"), Value::Timestamp(1500)),
            (sym("x-sym"), sym("s")),
            (
                sym("x-map"),
                Value::Map(vec![
                    (st("k"), Value::Ubyte(1)),
                    (Value::Int(1), Value::Null),
                    (sym("f"), Value::Float(f32::INFINITY)),
                ]),
            ),
            (sym("x-arr"), Value::Array(vec![Value::Ushort(1), Value::Ushort(2)])),
            (sym("x-opt-rabbitmq-received-time"), Value::Timestamp(1234)),
            (sym("not-x"), st("ignored")),
            (Value::Ulong(5), st("ignored")),
            (sym("x-exchange"), st("internal")),
            (sym("x-routing-key"), st("internal")),
            (sym("x-basic-anything"), st("internal")),
        ]),
        application_properties: Some(vec![(sym("symbol-key"), st("ignored")), (st("k"), Value::Short(-1))]),
        ..Message10::data(Properties::default(), Bytes::new())
    };
    let (p, _) = to_amqp091(&m);
    assert_eq!(
        p.headers,
        Some(FieldTable(vec![
            (ss("x-uuid"), ls("urn:uuid:abababab-abab-abab-abab-abababababab")),
            (ss("x-ulong"), FieldValue::I64(-1)),
            (ss("x-ts"), FieldValue::Timestamp(1)),
            (ss("x-sym"), ls("s")),
            (ss("x-map"), FieldValue::Table(FieldTable(vec![(ss("k"), FieldValue::U8(1))]))),
            (ss("x-arr"), FieldValue::Array(vec![FieldValue::U16(1), FieldValue::U16(2)])),
            (ss("timestamp_in_ms"), FieldValue::I64(1234)),
            (ss("k"), FieldValue::I16(-1)),
        ]))
    );
}

#[test]
fn x_basic_annotations_stand_in_for_a_missing_header() {
    let ma = vec![
        (sym("x-basic-delivery-mode"), Value::Ubyte(2)),
        (sym("x-basic-priority"), Value::Ubyte(3)),
        (sym("x-basic-expiration"), st("500")),
        (sym("x-basic-type"), st("t")),
    ];
    let mut m = Message10 { message_annotations: Some(ma), ..Message10::data(Properties::default(), b("x")) };
    let (p, _) = to_amqp091(&m);
    assert_eq!((p.delivery_mode, p.priority, p.expiration, p.kind), (Some(2), Some(3), Some(ss("500")), Some(ss("t"))));
    assert_eq!(p.headers, None, "x-basic-* annotations are not headers");
    // The header wins when it has the field.
    m.header = Some(Header { durable: Some(false), priority: Some(9), ttl: Some(10), ..Header::default() });
    let (p, _) = to_amqp091(&m);
    assert_eq!((p.delivery_mode, p.priority, p.expiration), (Some(1), Some(9), Some(ss("10"))));

    // The type as RabbitMQ 3.10 writes it: an application property (the annotation wins).
    let ap = vec![(st("x-basic-type"), st("from-ap")), (st("x-basic-app-id"), st("app"))];
    m.application_properties = Some(ap.clone());
    let (p, _) = to_amqp091(&m);
    assert_eq!((p.kind, p.headers), (Some(ss("t")), None));
    let m = Message10 { application_properties: Some(ap), ..Message10::data(Properties::default(), b("x")) };
    let (p, _) = to_amqp091(&m);
    assert_eq!((p.kind, p.headers), (Some(ss("from-ap")), None));
}

#[test]
fn ids_reply_to_and_user_id() {
    let long = Bytes::from(vec![b'i'; 300]);
    let m = Message10::data(
        Properties {
            message_id: Some(MessageId::Binary(b("bin-id"))),
            correlation_id: Some(MessageId::String(long.clone())),
            reply_to: Some(b("/queues/a%2Fb%20%C3%BC")),
            user_id: Some(Bytes::from_static(b"nul\0")),
            ..Properties::default()
        },
        b("x"),
    );
    let (p, _) = to_amqp091(&m);
    assert_eq!((p.message_id, p.correlation_id, p.user_id), (None, None, None));
    assert_eq!(p.reply_to, Some(ShortStr::truncating("a/b ü".to_string())));
    assert_eq!(
        p.headers,
        Some(FieldTable(vec![
            (ss("x-correlation-id"), FieldValue::LongStr(LongStr(long))),
            (ss("x-message-id"), FieldValue::Bytes(LongStr::from("bin-id"))),
        ]))
    );
    // A malformed escape drops the reply-to; another address passes unchanged.
    for (addr, want) in [("/queues/%zz", None), ("/exchanges/e", Some(ss("/exchanges/e")))] {
        let m = Message10::data(Properties { reply_to: Some(b(addr)), ..Properties::default() }, b("x"));
        assert_eq!(to_amqp091(&m).0.reply_to, want);
    }
    // 0-9-1 → 1.0: the reply-to is written as it is (RabbitMQ 3.10: no `/queues/` address, no
    // percent-encoding); an upper-case urn is a uuid, back lowercase.
    let p = BasicProperties {
        reply_to: Some(ShortStr::truncating("a/b ü".to_string())),
        message_id: Some(ss("urn:uuid:ABCDEF00-1234-5678-1234-567812345678")),
        correlation_id: Some(ss("urn:uuid:not-a-uuid")),
        ..BasicProperties::default()
    };
    let m = message_from_amqp091(&p, &b("x"), None);
    let props = m.properties.clone().unwrap();
    assert_eq!(props.reply_to, Some(b("a/b ü")));
    assert!(matches!(props.message_id, Some(MessageId::Uuid(_))));
    assert_eq!(props.correlation_id, Some(MessageId::String(b("urn:uuid:not-a-uuid"))));
    let (back, _) = to_amqp091(&m);
    assert_eq!(back.message_id, Some(ss("urn:uuid:abcdef00-1234-5678-1234-567812345678")));
    assert_eq!(back.reply_to, p.reply_to);
    assert_eq!(
        to_amqp091(&Message10::data(
            Properties { message_id: Some(MessageId::Ulong(99)), ..Properties::default() },
            b("x")
        ))
        .0
        .message_id,
        Some(ss("99"))
    );
    // A 0-9-1 reply-to that looks like a queue address is written as it is too, but reads back as
    // the queue name.
    let p = BasicProperties { reply_to: Some(ss("/queues/q%20x")), ..BasicProperties::default() };
    let m = message_from_amqp091(&p, &b("x"), None);
    assert_eq!(m.properties.as_ref().and_then(|p| p.reply_to.clone()), Some(b("/queues/q%20x")));
    assert_eq!(to_amqp091(&m).0.reply_to, Some(ss("q x")));
}

#[test]
fn encoded_bodies_travel_as_type_amqp_1_0() {
    let raw = hex(RSTREAM_VALUE_MAP);
    let m = Message10::decode(raw.clone()).unwrap();
    let (p, body) = to_amqp091(&m);
    assert_eq!(p.kind, Some(ss("amqp-1.0")));
    assert_eq!(body, raw);
    assert!(within(&body, &raw));
    // Back into a stream: the encoded sections are the body again, not a data section.
    let again = Message10::decode(from_amqp091(&p, &body)).unwrap();
    assert_eq!(again.body, Body::Value(raw.clone()));
    // (with a header now: durable false, which reads back as delivery-mode 1)
    let (p2, body2) = to_amqp091(&again);
    assert_eq!((p2.kind, p2.delivery_mode, body2), (p.kind.clone(), Some(1), raw.clone()));

    // With a footer, body and footer are joined.
    let with_footer = Message10 { footer: Some(vec![(sym("x-sig"), Value::Ubyte(1))]), ..m };
    let (_, body) = to_amqp091(&with_footer);
    let back = Message10::decode(body.clone()).unwrap();
    assert_eq!((back.body, back.footer), (with_footer.body.clone(), with_footer.footer.clone()));
    let again = message_from_amqp091(&p, &body, None);
    assert_eq!((again.body, again.footer), (with_footer.body, with_footer.footer));

    // "amqp-1.0" with a body that is not encoded sections: kept as data.
    let m = message_from_amqp091(&p, &b("plain"), None);
    assert_eq!(m.body, Body::Data(vec![b("plain")]));
    // Several data sections are concatenated.
    let m =
        Message10 { body: Body::Data(vec![b("ab"), b("cd")]), ..Message10::data(Properties::default(), Bytes::new()) };
    assert_eq!(to_amqp091(&m).1, b("abcd"));
}

#[test]
fn routed_messages_carry_exchange_and_routing_key() {
    let p = BasicProperties {
        headers: Some(FieldTable(vec![(ss("x-exchange"), ls("forged")), (ss("x-other"), ls("kept"))])),
        ..BasicProperties::default()
    };
    let raw = from_amqp091_routed(&p, &b("x"), b"amq.direct", b"rk");
    let m = Message10::decode(raw).unwrap();
    assert_eq!(
        m.message_annotations,
        Some(vec![
            (sym("x-routing-key"), st("rk")),
            (sym("x-exchange"), st("amq.direct")),
            (sym("x-other"), st("kept"))
        ])
    );
    // Both are internal: a 0-9-1 consumer does not see them as headers.
    assert_eq!(to_amqp091(&m).0.headers, Some(FieldTable(vec![(ss("x-other"), ls("kept"))])));
}

#[test]
fn opt_deaths_become_x_death() {
    let death = Value::Map(vec![
        (sym("ttl"), Value::Uint(100)),
        (sym("queue"), st("q")),
        (sym("reason"), sym("expired")),
        (sym("count"), Value::Ulong(2)),
        (sym("first-time"), Value::Timestamp(5_000)),
        (sym("last-time"), Value::Timestamp(6_000)),
        (sym("exchange"), st("")),
        (sym("routing-keys"), Value::Array(vec![st("rk")])),
    ]);
    let m = Message10 {
        message_annotations: Some(vec![
            (sym("x-opt-deaths"), Value::Array(vec![death])),
            // Ignored: x-opt-deaths is the history.
            (sym("x-death"), Value::List(vec![])),
        ]),
        ..Message10::data(Properties::default(), b("x"))
    };
    let (p, _) = to_amqp091(&m);
    assert_eq!(
        p.headers,
        Some(FieldTable(vec![(
            ss("x-death"),
            FieldValue::Array(vec![FieldValue::Table(FieldTable(vec![
                (ss("original-expiration"), ls("100")),
                (ss("count"), FieldValue::I64(2)),
                (ss("reason"), ls("expired")),
                (ss("queue"), ls("q")),
                (ss("time"), FieldValue::Timestamp(5)),
                (ss("exchange"), ls("")),
                (ss("routing-keys"), FieldValue::Array(vec![ls("rk")])),
            ]))])
        )]))
    );
    // Not the expected shape: dropped.
    let m = Message10 {
        message_annotations: Some(vec![(sym("x-opt-deaths"), Value::Array(vec![Value::Map(vec![])]))]),
        ..Message10::data(Properties::default(), b("x"))
    };
    assert_eq!(to_amqp091(&m).0.headers, None);
}

#[test]
fn out_of_range_properties_are_dropped() {
    let long = Bytes::from(vec![b'c'; 256]);
    let m = Message10 {
        header: Some(Header { ttl: Some(u32::MAX), ..Header::default() }),
        ..Message10::data(
            Properties {
                content_type: Some(long.clone()),
                group_id: Some(long.clone()),
                creation_time: Some(1999),
                ..Properties::default()
            },
            b("x"),
        )
    };
    let (p, _) = to_amqp091(&m);
    assert_eq!((p.content_type, p.app_id, p.timestamp), (None, None, Some(1)));
    assert_eq!(p.expiration, Some(ss("4294967295")));
    // An expiration that is not a u32 has no ttl.
    let p = BasicProperties { expiration: Some(ss("99999999999")), ..BasicProperties::default() };
    assert_eq!(message_from_amqp091(&p, &b("x"), None).header.unwrap().ttl, None);
}

// ---------------------------------------------------------------------------------------------
// Property tests.

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        any::<u32>().prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::Short),
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        (-1e6f32..1e6).prop_map(Value::Float),
        (-1e12f64..1e12).prop_map(Value::Double),
        any::<[u8; 4]>().prop_map(Value::Decimal32),
        any::<[u8; 8]>().prop_map(Value::Decimal64),
        any::<[u8; 16]>().prop_map(Value::Decimal128),
        any::<u32>().prop_map(Value::Char),
        any::<i64>().prop_map(Value::Timestamp),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| Value::Binary(Bytes::from(v))),
        "[a-z]{0,300}".prop_map(|s| Value::String(Bytes::from(s))),
        "[a-z:-]{0,20}".prop_map(|s| Value::Symbol(Bytes::from(s))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..6).prop_map(Value::Map),
            (inner.clone(), inner.clone()).prop_map(|(d, v)| Value::Described(Box::new(d), Box::new(v))),
            // Homogeneous arrays: n copies of one element.
            (inner, 0usize..5).prop_map(|(v, n)| Value::Array(vec![v; n])),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let data = Bytes::from(data);
        let _ = Value::decode(&data);
        if let Ok(m) = Message10::decode(data.clone()) {
            // Whatever decodes converts, and re-encodes to something that decodes the same.
            let _ = to_amqp091(&m);
            let once = m.to_bytes();
            let again = Message10::decode(once.clone()).map(|m| m.to_bytes());
            prop_assert_eq!(again, Ok(once));
        }
    }

    #[test]
    fn arbitrary_sections_never_panic(code in 0x70u8..0x79, data in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Bytes after a valid section prefix reach the section decoders more often.
        let mut raw = vec![DESCRIBED, SMALLULONG, code];
        raw.extend(data);
        if let Ok(m) = Message10::decode(Bytes::from(raw)) {
            let _ = to_amqp091(&m);
        }
    }

    #[test]
    fn values_round_trip(v in arb_value()) {
        let bytes = enc(&v);
        let back = Value::decode(&bytes);
        prop_assert!(back.is_ok(), "{:?}", back);
        // Arrays of values that do not share a constructor come back as lists: compare encodings.
        let back = back.unwrap_or(Value::Null);
        prop_assert_eq!(enc(&back), bytes);
    }

    #[test]
    fn messages_round_trip(
        ma in proptest::collection::vec((arb_value(), arb_value()), 0..4),
        ap in proptest::collection::vec(("[a-z]{1,10}", arb_value()), 0..4),
        body in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..3),
        ttl in proptest::option::of(any::<u32>()),
    ) {
        let m = Message10 {
            header: Some(Header { ttl, ..Header::default() }),
            delivery_annotations: None,
            message_annotations: Some(ma),
            properties: Some(Properties { group_sequence: ttl, ..Properties::default() }),
            application_properties: Some(ap.into_iter().map(|(k, v)| (Value::String(Bytes::from(k)), v)).collect()),
            body: Body::Data(body.into_iter().map(Bytes::from).collect()),
            footer: None,
        };
        let bytes = m.to_bytes();
        let back = Message10::decode(bytes.clone());
        prop_assert!(back.is_ok(), "{:?}", back);
        prop_assert_eq!(back.map(|b| b.to_bytes()), Ok(bytes));
    }

    #[test]
    fn amqp091_conversion_keeps_the_properties(
        content_type in proptest::option::of("[a-z/]{0,40}"),
        message_id in proptest::option::of("[ -~]{0,60}"),
        priority in proptest::option::of(0u8..10),
        expiration in proptest::option::of(any::<u32>()),
        timestamp in proptest::option::of(0u64..1 << 40),
        headers in proptest::collection::vec(("[a-z]{1,10}", any::<i64>()), 0..5),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut table = FieldTable::new();
        for (k, v) in headers {
            table.insert(ShortStr::truncating(k), FieldValue::I64(v));
        }
        let props = BasicProperties {
            content_type: content_type.map(ShortStr::truncating),
            message_id: message_id.map(ShortStr::truncating),
            priority,
            expiration: expiration.map(|e| ShortStr::truncating(e.to_string())),
            timestamp,
            headers: (!table.is_empty()).then_some(table),
            delivery_mode: Some(2),
            ..BasicProperties::default()
        };
        let body = Bytes::from(body);
        let (back, back_body) = to_amqp091(&Message10::decode(from_amqp091(&props, &body)).unwrap());
        prop_assert_eq!(back_body, body);
        // A urn:uuid: message-id comes back lowercase; the generated ones are never urns.
        prop_assert_eq!(back, props);
    }
}
