//! String types of the wire format: `ShortStr` (u8 length) and `LongStr` (u32 length), both raw bytes.
//!
//! # Invariants
//! - A `ShortStr` is at most 255 bytes: constructors check or truncate, so encoding never fails.
//! - Neither type requires UTF-8 (RabbitMQ treats short strings as bytes).
use bytes::Bytes;
use std::fmt;

/// Longest short string the wire format allows.
pub const SHORTSTR_MAX: usize = 255;

/// A short string: up to 255 raw bytes.
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ShortStr(Bytes);

impl ShortStr {
    /// An empty short string.
    pub const fn empty() -> ShortStr {
        ShortStr(Bytes::new())
    }
    /// A short string from a static literal; literals over 255 bytes are truncated.
    pub const fn from_static(s: &'static str) -> ShortStr {
        let b = s.as_bytes();
        if b.len() > SHORTSTR_MAX {
            let (head, _) = b.split_at(SHORTSTR_MAX);
            return ShortStr(Bytes::from_static(head));
        }
        ShortStr(Bytes::from_static(b))
    }
    /// Wrap bytes already known to be at most 255 long (e.g. decoded from the wire).
    pub fn from_bytes(b: Bytes) -> Option<ShortStr> {
        (b.len() <= SHORTSTR_MAX).then_some(ShortStr(b))
    }
    /// Build from any string, cutting it at 255 bytes (used for reply texts that quote client names).
    pub fn truncating(s: impl Into<Bytes>) -> ShortStr {
        let mut b: Bytes = s.into();
        if b.len() > SHORTSTR_MAX {
            b.truncate(SHORTSTR_MAX);
        }
        ShortStr(b)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Lossy UTF-8 view for logs and error texts.
    pub fn to_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

// A short string hashes and compares as its bytes (`Bytes` does), so maps keyed by `ShortStr`
// can be searched with a borrowed `&[u8]` (a routing key read in place).
impl std::borrow::Borrow<[u8]> for ShortStr {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}
impl AsRef<[u8]> for ShortStr {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<&'static str> for ShortStr {
    fn from(s: &'static str) -> ShortStr {
        ShortStr::from_static(s)
    }
}
impl From<String> for ShortStr {
    fn from(s: String) -> ShortStr {
        ShortStr::truncating(s)
    }
}
impl PartialEq<str> for ShortStr {
    fn eq(&self, o: &str) -> bool {
        self.0 == o.as_bytes()
    }
}
impl PartialEq<&str> for ShortStr {
    fn eq(&self, o: &&str) -> bool {
        self.0 == o.as_bytes()
    }
}
impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_str_lossy())
    }
}
impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str_lossy())
    }
}

/// A long string: up to 2^32-1 raw bytes.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct LongStr(pub Bytes);

impl LongStr {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
impl From<&'static str> for LongStr {
    fn from(s: &'static str) -> LongStr {
        LongStr(Bytes::from_static(s.as_bytes()))
    }
}
impl From<String> for LongStr {
    fn from(s: String) -> LongStr {
        LongStr(Bytes::from(s))
    }
}
impl From<Vec<u8>> for LongStr {
    fn from(s: Vec<u8>) -> LongStr {
        LongStr(Bytes::from(s))
    }
}
impl fmt::Debug for LongStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}
