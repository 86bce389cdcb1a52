//! The broker's two clocks: wall-clock milliseconds since the Unix epoch (message expiry and
//! timestamps that are stored or shown) and a process-wide monotonic millisecond clock (ack
//! timeouts, queue idleness), in one place.
//!
//! Runs in: any task.
//!
//! # Invariants
//! - `now_ms` never goes backwards; `unix_ms` may (it follows the system clock) and is never used
//!   to measure an interval.

/// Milliseconds since the Unix epoch (message expiry is stored as wall-clock time).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The start of [`now_ms`]'s clock (the first time any clock is read).
fn base() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

/// Milliseconds on a process-wide monotonic clock (ack timeouts, idleness, HTTP timeouts).
pub fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64
}

/// The instant `ms` (as [`now_ms`] counts) stands for.
pub fn instant_of(ms: u64) -> std::time::Instant {
    base() + std::time::Duration::from_millis(ms)
}
