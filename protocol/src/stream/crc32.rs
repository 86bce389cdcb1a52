//! CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the checksum of an osiris chunk's data,
//! the same function as Erlang's `erlang:crc32/1`, zlib's `crc32` and Java's `CRC32`.
//!
//! Runs wherever a Deliver frame is built or checked. A thin wrapper over [`crc32fast`] (which
//! picks a SIMD implementation at run time), so callers keep one small interface.
//!
//! # Invariants
//! - `Crc32::new()`, then `update` over pieces, then `finish` equals [`crc32`] of the pieces
//!   concatenated: a chunk's checksum can be computed over scattered `Bytes` without joining them.

/// An incremental CRC-32.
#[derive(Debug, Clone, Default)]
pub struct Crc32(crc32fast::Hasher);

impl Crc32 {
    /// A checksum over no bytes yet.
    pub fn new() -> Crc32 {
        Crc32(crc32fast::Hasher::new())
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The checksum of everything fed so far.
    pub fn finish(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// CRC-32 of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference.
    fn slow(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn matches_reference_and_is_incremental() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 999, 1000] {
            assert_eq!(crc32(&data[..len]), slow(&data[..len]), "len {len}");
        }
        for split in [0, 1, 5, 8, 13, 500, 1000] {
            let mut c = Crc32::new();
            c.update(&data[..split]);
            assert_eq!(c.finish(), crc32(&data[..split]), "finish does not consume, split {split}");
            c.update(&data[split..]);
            assert_eq!(c.finish(), crc32(&data), "split {split}");
        }
    }
}
