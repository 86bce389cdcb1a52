//! Fuzz the decoding side of `warren-protocol` the way the connection reader uses it: bytes go
//! through the streaming frame decoder, and each frame's payload through the method, content
//! header, properties and field-table decoders.
//!
//! Besides "no panic", it checks:
//! - splitting the input in two feeds gives the same frames and the same final error as feeding it
//!   whole (the decoder is insensitive to how reads are chunked);
//! - no accepted frame is larger than frame_max;
//! - whatever a payload decoder accepts re-encodes to bytes that decode and re-encode identically
//!   (encode . decode is idempotent; exact byte identity does not hold for e.g. a bool sent as 2).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use warren_protocol::frame::{self, Frame, FrameType};
use warren_protocol::{BasicProperties, ContentHeader, FieldTable, FrameError, Method};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let frame_max = if control & 1 == 0 { 131072 } else { 4096 };

    let (frames, end) = drain(input, input.len(), frame_max);
    let split = (control as usize >> 1) * input.len() / 127;
    let (frames2, end2) = drain(input, split.min(input.len()), frame_max);
    assert_eq!(frames, frames2, "frames depend on the split at {split}");
    assert_eq!(end, end2, "final result depends on the split at {split}");

    for f in &frames {
        assert!(f.payload.len() + 8 <= frame_max as usize);
        match f.kind {
            FrameType::Method => check_method(&f.payload),
            FrameType::Header => check_header(&f.payload),
            _ => {}
        }
        // Every decoder on every payload, whatever the frame type.
        check_method(&f.payload);
        check_header(&f.payload);
        check_properties(&f.payload);
        check_table(&f.payload);
    }
    // And on the raw input, in case no frame header ever matched.
    let raw = Bytes::copy_from_slice(input);
    check_method(&raw);
    check_properties(&raw);
    check_table(&raw);
});

/// Feed `input` to the decoder in two pieces (`input[..split]`, then the rest), draining frames
/// after each; returns the frames and the error that stopped decoding, if any.
fn drain(input: &[u8], split: usize, frame_max: u32) -> (Vec<Frame>, Option<FrameError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in [&input[..split], &input[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match frame::decode(&mut buf, frame_max) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fn check_method(payload: &Bytes) {
    if let Ok(m) = Method::decode(payload.clone()) {
        assert_eq!(&payload[..2], &m.class_id().to_be_bytes());
        assert_eq!(&payload[2..4], &m.method_id().to_be_bytes());
        let b1 = encode_method(&m);
        let m2 = Method::decode(b1.clone()).expect("own encoding of a method must decode");
        assert_eq!(b1, encode_method(&m2));
    }
}

fn encode_method(m: &Method) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    b.freeze()
}

fn check_header(payload: &Bytes) {
    if let Ok(h) = ContentHeader::decode(payload.clone()) {
        assert_eq!(h.properties.len() + 12, payload.len());
        check_properties(&h.properties);
    }
}

fn check_properties(raw: &Bytes) {
    if let Ok(p) = BasicProperties::decode(raw.clone()) {
        let b1 = p.to_bytes();
        let p2 =
            BasicProperties::decode(b1.clone()).expect("own encoding of properties must decode");
        assert_eq!(b1, p2.to_bytes());
    }
}

fn check_table(raw: &Bytes) {
    if let Ok(t) = FieldTable::decode(raw.clone()) {
        let b1 = encode_table(&t);
        let t2 = FieldTable::decode(b1.slice(4..)).expect("own encoding of a table must decode");
        assert_eq!(b1, encode_table(&t2));
    }
}

fn encode_table(t: &FieldTable) -> Bytes {
    let mut b = BytesMut::new();
    t.encode(&mut b);
    b.freeze()
}
