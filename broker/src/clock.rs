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

/// `YYYY-MM-DDTHH:MM:SS.mmm+00:00` (UTC), the format RabbitMQ 3.10 uses for `idle_since`.
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+00:00", rem / 3600, (rem % 3600) / 60, rem % 60, ms % 1000)
}

/// A vhost's clock: the real clocks, moved by the test controls (`--test-controls`): advanced by
/// an amount, or frozen and unfrozen. Message TTLs, queue expiry (`x-expires`), delayed
/// messages, consumer timeouts and `x-death` times of a vhost all read its clock, so a test of a
/// 24-hour delay advances the clock instead of waiting.
///
/// # Invariants
/// - It never goes backwards while the vhost lives: advancing adds, freezing stops it, and
///   unfreezing resumes from where it stood (the frozen span is taken off the offset). Only a
///   reset of the vhost (everything in it gone) returns it to the real clocks.
/// - Untouched, it reads the real clocks plus two relaxed loads.
#[derive(Debug, Default)]
pub struct VClock {
    /// Milliseconds added to the real clocks (negative after an unfreeze took off the span the
    /// clock stood still).
    offset_ms: std::sync::atomic::AtomicI64,
    /// While frozen: the real [`now_ms`] at which it was frozen, plus 1 (0: running).
    frozen_at: std::sync::atomic::AtomicU64,
}

impl VClock {
    /// This clock's [`now_ms`].
    pub fn now_ms(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let base = match self.frozen_at.load(Relaxed) {
            0 => now_ms(),
            f => f - 1,
        };
        (base as i64).saturating_add(self.offset_ms.load(Relaxed)).max(0) as u64
    }

    /// This clock's [`unix_ms`] (the real wall clock moved as [`VClock::now_ms`] is). Running,
    /// one read of the real clock.
    pub fn unix_ms(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let moved = match self.frozen_at.load(Relaxed) {
            0 => self.offset_ms.load(Relaxed),
            _ => self.now_ms() as i64 - now_ms() as i64,
        };
        (unix_ms() as i64).saturating_add(moved).max(0) as u64
    }

    /// Move the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.offset_ms.fetch_add(ms.min(i64::MAX as u64) as i64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stop the clock where it stands (`true`) or let it run on from there (`false`).
    pub fn freeze(&self, on: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let real = now_ms();
        if on {
            let _ = self.frozen_at.compare_exchange(0, real + 1, Relaxed, Relaxed);
        } else {
            let f = self.frozen_at.swap(0, Relaxed);
            if f != 0 {
                self.offset_ms.fetch_sub(real.saturating_sub(f - 1) as i64, Relaxed);
            }
        }
    }

    /// Whether the clock is frozen.
    pub fn frozen(&self) -> bool {
        self.frozen_at.load(std::sync::atomic::Ordering::Relaxed) != 0
    }

    /// How far it is from the real clock, in ms (negative: behind, after a freeze).
    pub fn offset_ms(&self) -> i64 {
        self.now_ms() as i64 - now_ms() as i64
    }

    /// Back to the real clocks (a vhost reset).
    pub fn reset(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.frozen_at.store(0, Relaxed);
        self.offset_ms.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_freeze_unfreeze() {
        let c = VClock::default();
        let t0 = c.now_ms();
        c.advance(86_400_000);
        assert!(c.now_ms() >= t0 + 86_400_000);
        assert!(c.unix_ms() >= unix_ms() + 86_399_000);
        c.freeze(true);
        let frozen = c.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.now_ms(), frozen);
        c.advance(5);
        assert_eq!(c.now_ms(), frozen + 5);
        c.freeze(false);
        assert!(c.now_ms() >= frozen + 5 && c.now_ms() < frozen + 1000, "resumes from where it stood");
        c.reset();
        assert!(c.offset_ms().abs() < 50);
    }
}
