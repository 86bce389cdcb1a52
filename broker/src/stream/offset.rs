//! Where a stream consumer starts (`x-stream-offset`, the stream protocol's offset specification)
//! and the durations of `x-max-age` / interval offsets (`7D`, `1h`, `30m`, `10s`).
//!
//! Runs in: the consuming connection's reader (parsing), under the stream's queue lock
//! (resolving to an offset).
//!
//! # Invariants
//! - Parsing never panics; a value RabbitMQ refuses gives `None`.
use warren_protocol::FieldValue;

/// A consumer's starting point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The oldest message kept.
    First,
    /// The last chunk (here: the last message).
    Last,
    /// Only messages appended after subscribing.
    Next,
    /// This offset (clamped to what is kept).
    Offset(u64),
    /// The first message appended at or after this Unix time (ms).
    Timestamp(u64),
}

/// A duration such as `7D`, `12h`, `30m`, `10s` (and `Y`/`M` as RabbitMQ accepts them), in ms.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let unit_at = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(unit_at);
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let ms = match unit {
        "Y" => 365 * 86_400_000,
        "M" => 30 * 86_400_000,
        "D" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => return None,
    };
    n.checked_mul(ms)
}

/// The `x-stream-offset` consumer argument; `now_unix_ms` resolves intervals. None: invalid.
pub fn from_argument(v: &FieldValue, now_unix_ms: u64) -> Option<OffsetSpec> {
    match v {
        // spec(x-stream-offset): an AMQP timestamp is in seconds.
        FieldValue::Timestamp(secs) => Some(OffsetSpec::Timestamp(secs.saturating_mul(1000))),
        FieldValue::LongStr(_) | FieldValue::Bytes(_) => {
            let text = String::from_utf8_lossy(v.as_bytes()?).into_owned();
            match text.as_str() {
                "first" => Some(OffsetSpec::First),
                "last" => Some(OffsetSpec::Last),
                "next" => Some(OffsetSpec::Next),
                other => parse_duration(other).map(|d| OffsetSpec::Timestamp(now_unix_ms.saturating_sub(d))),
            }
        }
        other => match other.as_i64() {
            Some(n) if n >= 0 => Some(OffsetSpec::Offset(n as u64)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_specs() {
        assert_eq!(parse_duration("7D"), Some(7 * 86_400_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000));
        assert_eq!(parse_duration("30m"), Some(1_800_000));
        assert_eq!(parse_duration("10s"), Some(10_000));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5x"), None);
        let s = |t: &str| from_argument(&FieldValue::LongStr(t.as_bytes().to_vec().into()), 100_000);
        assert_eq!(s("first"), Some(OffsetSpec::First));
        assert_eq!(s("next"), Some(OffsetSpec::Next));
        assert_eq!(s("10s"), Some(OffsetSpec::Timestamp(90_000)));
        assert_eq!(s("bogus"), None);
        assert_eq!(from_argument(&FieldValue::I64(5), 0), Some(OffsetSpec::Offset(5)));
        assert_eq!(from_argument(&FieldValue::I64(-1), 0), None);
        assert_eq!(from_argument(&FieldValue::Timestamp(3), 0), Some(OffsetSpec::Timestamp(3000)));
    }
}
