//! `Lent`: bytes a door lends the core for the length of one call. The AMQP door's publish is
//! read in place in the connection's read buffer; the core reads the properties and the body
//! there, copies what a small message keeps, and takes a handle on the buffer ([`Lent::share`])
//! only for what it keeps by reference (a large body, properties it decodes). Every handle is an
//! atomic increment and decrement of the read buffer's count: without the two a publish took for
//! its routing key and its properties, the broker's CPU per no-ack message fell from 0.32-0.33 to
//! 0.28 us (BENCHMARKS.md).
//!
//! Runs in: the caller's task (a connection reader, an HTTP handler, a dead-lettering queue).
//!
//! # Invariants
//! - `bytes` lies within `within` (or is empty), so [`Lent::share`] is a slice of the same buffer:
//!   no copy, and it stays valid after the lender's buffer is reused.
use bytes::Bytes;

/// A part of a buffer the caller owns, readable in place and shareable on demand.
#[derive(Clone, Copy)]
pub struct Lent<'a> {
    /// The part itself.
    bytes: &'a [u8],
    /// The buffer it is part of.
    within: &'a Bytes,
}

impl<'a> Lent<'a> {
    /// All of `b`.
    #[inline]
    pub fn all(b: &'a Bytes) -> Lent<'a> {
        Lent { bytes: b, within: b }
    }

    /// `b[range]`; empty when the range is not within `b` (ranges come from a parsed frame).
    #[inline]
    pub fn part(b: &'a Bytes, range: std::ops::Range<usize>) -> Lent<'a> {
        Lent { bytes: b.get(range).unwrap_or_default(), within: b }
    }

    /// The bytes, in place.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// A handle of its own on the same bytes, for the core to keep (no copy).
    #[inline]
    pub fn share(&self) -> Bytes {
        self.within.slice_ref(self.bytes)
    }
}

impl std::ops::Deref for Lent<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::Lent;
    use bytes::Bytes;

    #[test]
    fn a_shared_part_is_a_slice_of_the_lenders_buffer() {
        let b = Bytes::from(b"exchange-key-properties".to_vec());
        let part = Lent::part(&b, 9..12);
        assert_eq!(&*part, b"key");
        let kept = part.share();
        assert_eq!(kept, Bytes::from_static(b"key"));
        assert_eq!(kept.as_ptr(), b[9..].as_ptr(), "shared, not copied");
        assert!(Lent::part(&b, 20..40).is_empty());
        assert!(Lent::part(&b, 20..40).share().is_empty());
        assert_eq!(Lent::all(&b).share(), b);
    }
}
