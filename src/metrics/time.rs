//! ISO-8601 UTC timestamps as minigcs prints them: in CSV rows, in exported
//! JSON, and anywhere else a point in time is shown to people or scripts.
//!
//! One format everywhere: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, microseconds
//! truncated (not rounded), `Z` for UTC. Times before 1970 print as the epoch;
//! times past the end of year 9999 print as the last representable instant.
//! The calendar arithmetic belongs to the `jiff` crate; this module only fixes
//! the format and the clamping, and knows nothing about metrics.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;

/// Digits after the decimal point of the seconds.
const FRACTION_DIGITS: usize = 6;

/// Formats `t` as ISO-8601 UTC with microseconds, e.g.
/// `2024-05-01T12:34:56.789012Z`. Times before 1970 print as the epoch.
pub fn format_iso8601_utc(t: SystemTime) -> String {
    let mut s = String::with_capacity(27);
    push_iso8601(&mut s, t);
    s
}

/// Formats a count of nanoseconds since the Unix epoch (as stored for file
/// times) the same way as [`format_iso8601_utc`]; negative counts print as
/// the epoch.
pub fn iso8601_from_nanos(nanos: i64) -> String {
    let at = Timestamp::from_nanosecond(i128::from(nanos.max(0)))
        .expect("every i64 count of nanoseconds is a valid timestamp");
    let mut s = String::with_capacity(27);
    push_timestamp(&mut s, at);
    s
}

/// Appends `t` to `out` in the format of [`format_iso8601_utc`], without
/// allocating a separate string (used for every CSV row).
pub(super) fn push_iso8601(out: &mut String, t: SystemTime) {
    let at = if t <= UNIX_EPOCH {
        Timestamp::UNIX_EPOCH
    } else {
        Timestamp::try_from(t).unwrap_or(Timestamp::MAX)
    };
    push_timestamp(out, at);
}

fn push_timestamp(out: &mut String, at: Timestamp) {
    // jiff prints a timestamp as RFC 3339 in UTC with a `Z`; the precision
    // fixes the number of fraction digits, truncating the rest.
    let _ = write!(out, "{at:.FRACTION_DIGITS$}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at_secs(secs: u64) -> String {
        format_iso8601_utc(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn iso8601_dates() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (951_868_799, "2000-02-29T23:59:59.000000Z"),
            (1_709_251_199, "2024-02-29T23:59:59.000000Z"),
            (4_102_444_800, "2100-01-01T00:00:00.000000Z"),
        ] {
            assert_eq!(at_secs(secs), want, "{secs}");
        }
        assert_eq!(
            format_iso8601_utc(UNIX_EPOCH + Duration::from_micros(1_500_123)),
            "1970-01-01T00:00:01.500123Z"
        );
    }

    #[test]
    fn century_years_and_leap_days() {
        // 2000 is a leap year (divisible by 400), 2100 is not.
        for (secs, want) in [
            (946_684_799, "1999-12-31T23:59:59.000000Z"),
            (946_684_800, "2000-01-01T00:00:00.000000Z"),
            (951_868_800, "2000-03-01T00:00:00.000000Z"),
            (1_709_164_800, "2024-02-29T00:00:00.000000Z"),
            (1_735_689_599, "2024-12-31T23:59:59.000000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000000Z"),
            (4_107_542_400, "2100-03-01T00:00:00.000000Z"),
        ] {
            assert_eq!(at_secs(secs), want, "{secs}");
        }
    }

    #[test]
    fn fraction_is_truncated_to_microseconds() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_999);
        assert_eq!(format_iso8601_utc(t), "2023-11-14T22:13:20.123456Z");
        let t = UNIX_EPOCH + Duration::new(59, 999_999_999);
        assert_eq!(format_iso8601_utc(t), "1970-01-01T00:00:59.999999Z");
        let t = UNIX_EPOCH + Duration::from_nanos(999);
        assert_eq!(format_iso8601_utc(t), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn before_the_epoch_prints_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(format_iso8601_utc(t), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601_from_nanos(-5), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601_from_nanos(i64::MIN), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn nanos_match_system_time() {
        for nanos in [0i64, 1_500_123_000, 951_782_400_000_000_001, i64::MAX] {
            let t = UNIX_EPOCH + Duration::from_nanos(nanos as u64);
            assert_eq!(iso8601_from_nanos(nanos), format_iso8601_utc(t), "{nanos}");
        }
        assert_eq!(iso8601_from_nanos(i64::MAX), "2262-04-11T23:47:16.854775Z");
    }

    #[test]
    fn push_appends() {
        let mut row = String::from("x,");
        push_iso8601(&mut row, UNIX_EPOCH + Duration::from_secs(86_400));
        assert_eq!(row, "x,1970-01-02T00:00:00.000000Z");
    }
}
