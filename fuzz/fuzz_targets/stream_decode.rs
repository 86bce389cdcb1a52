//! Fuzz the stream protocol codec (`warren_protocol::stream`) the way a stream connection reader
//! uses it: bytes go through `split_frame`, and each frame through `Request::decode`,
//! `Response::decode` and `Deliver::decode`.
//!
//! Besides "no panic", it checks:
//! - splitting the input in two feeds gives the same frames and the same final error as feeding it
//!   whole;
//! - no accepted frame is larger than frame_max;
//! - a decoded request re-encodes to a frame that decodes to the same request;
//! - a decoded response re-encodes to bytes that decode and re-encode identically (a Deliver's
//!   header is normalised, so only idempotence holds);
//! - the messages of a decoded Publish, built into a Deliver chunk, decode back to the same entries.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use warren_protocol::stream::{
    deliver_entries, split_frame, ChunkEntry, ChunkMeta, Deliver, Request, Response, StreamFrameError,
};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let max_frame = match control & 3 {
        0 => 0,
        1 => 8192,
        2 => 64,
        _ => 1_048_576,
    };

    let (frames, end) = drain(input, input.len(), max_frame);
    let split = (control as usize >> 2) * input.len() / 63;
    let (frames2, end2) = drain(input, split.min(input.len()), max_frame);
    assert_eq!(frames, frames2, "frames depend on the split at {split}");
    assert_eq!(end, end2, "final result depends on the split at {split}");

    for f in &frames {
        assert!(max_frame == 0 || f.len() <= max_frame as usize);
        check(f);
    }
    // And the raw input as one frame, in case no size prefix ever matched.
    check(&Bytes::copy_from_slice(input));
});

/// Feed `input` in two pieces (`input[..split]`, then the rest), draining frames after each.
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

fn check(frame: &Bytes) {
    if let Ok(r) = Request::decode(frame.clone()) {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        let again = split_frame(&mut out, 0).expect("own frame splits").expect("own frame is whole");
        assert!(out.is_empty());
        assert_eq!(Request::decode(again).as_ref(), Ok(&r), "request round trip");
        if let Request::Publish { messages, .. } = &r {
            check_chunk(messages.iter().map(|m| m.entry.clone()).collect());
        }
    }
    if let Ok(r) = Response::decode(frame.clone()) {
        let b1 = encode(&r);
        let r2 = Response::decode(b1.slice(4..)).expect("own encoding of a response must decode");
        assert_eq!(b1, encode(&r2), "response encode . decode is idempotent");
    }
    if let Ok(d) = Deliver::decode(frame.clone()) {
        check_chunk(d.entries);
    }
}

fn check_chunk(entries: Vec<ChunkEntry>) {
    let meta = ChunkMeta { chunk_type: 0, timestamp: 1, epoch: 1, first_offset: 10 };
    let Ok(f) = deliver_entries(1, Some(9), &meta, &entries) else {
        return;
    };
    assert_eq!(f.len, f.pieces.iter().map(|p| p.len()).sum::<usize>());
    let mut buf = BytesMut::from(&f.to_bytes()[..]);
    let frame = split_frame(&mut buf, 0).expect("own deliver splits").expect("own deliver is whole");
    let d = Deliver::decode(frame).expect("own deliver decodes");
    assert_eq!(d.entries, entries);
    assert_eq!(d.header.meta(), meta);
}

fn encode(r: &Response) -> Bytes {
    let mut b = BytesMut::new();
    r.encode(&mut b);
    b.freeze()
}
