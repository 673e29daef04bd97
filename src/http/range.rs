//! HTTP download header rules, as pure functions: parsing `Range: bytes=…`
//! and resolving it against an object's size, and the conditional-request
//! checks (`If-None-Match`, `If-Modified-Since`, `If-Range`). Nothing here
//! touches the store.

use std::ops::Range;
use std::time::SystemTime;

/// What a `Range` header asks for, before the object's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=a-b` (b inclusive) or `bytes=a-` (b = None).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// Parse a `Range` header. `None` for anything we answer with the whole
/// object: a missing header, another unit, a syntax error (RFC 9110 says to
/// ignore those) and multiple ranges.
pub fn parse_range(value: &str) -> Option<RangeSpec> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if a.is_empty() {
        return Some(RangeSpec::Suffix(num(b)?));
    }
    let start = num(a)?;
    if b.is_empty() {
        return Some(RangeSpec::From { start, end: None });
    }
    let end = num(b)?;
    if end < start {
        return None;
    }
    Some(RangeSpec::From {
        start,
        end: Some(end),
    })
}

/// The byte range to send for an object of `size` bytes, or `Err(())` when
/// the range cannot be satisfied (416).
pub fn resolve(spec: RangeSpec, size: u64) -> Result<Range<u64>, ()> {
    match spec {
        RangeSpec::From { start, end } => {
            if start >= size {
                return Err(());
            }
            let last = end.unwrap_or(u64::MAX).min(size - 1);
            Ok(start..last + 1)
        }
        RangeSpec::Suffix(n) => {
            if n == 0 || size == 0 {
                return Err(());
            }
            Ok(size - n.min(size)..size)
        }
    }
}

fn strip_weak(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, `*` matches).
pub fn etag_matches(header: &str, etag: &str) -> bool {
    let etag = strip_weak(etag);
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || strip_weak(t) == etag)
}

/// Whether an `If-Range` value still names this version (strong ETag or
/// exact date), so the `Range` applies.
pub fn if_range_holds(header: &str, etag: &str, mtime: SystemTime) -> bool {
    let h = header.trim();
    if h.starts_with('"') {
        return h == etag;
    }
    if h.starts_with("W/") {
        return false;
    }
    match httpdate::parse_http_date(h) {
        Ok(t) => seconds(t) == seconds(mtime),
        Err(_) => false,
    }
}

/// Whether `If-Modified-Since` says the client's copy is current.
pub fn not_modified_since(header: &str, mtime: SystemTime) -> bool {
    match httpdate::parse_http_date(header.trim()) {
        Ok(t) => seconds(mtime) <= seconds(t),
        Err(_) => false,
    }
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn range_forms() {
        let f = |s, e| Some(RangeSpec::From { start: s, end: e });
        assert_eq!(parse_range("bytes=0-99"), f(0, Some(99)));
        assert_eq!(parse_range("bytes=100-"), f(100, None));
        assert_eq!(parse_range("bytes=-5"), Some(RangeSpec::Suffix(5)));
        assert_eq!(parse_range(" bytes= 3 - 4 "), f(3, Some(4)));
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn ranges_resolve_against_the_size() {
        let r = |s| resolve(parse_range(s).unwrap(), 1000);
        assert_eq!(r("bytes=100-199"), Ok(100..200));
        assert_eq!(r("bytes=990-5000"), Ok(990..1000));
        assert_eq!(r("bytes=-10"), Ok(990..1000));
        assert_eq!(r("bytes=-5000"), Ok(0..1000));
        assert_eq!(r("bytes=999-"), Ok(999..1000));
        assert_eq!(r("bytes=1000-"), Err(()));
        assert_eq!(r("bytes=-0"), Err(()));
        assert_eq!(
            resolve(
                RangeSpec::From {
                    start: 0,
                    end: None
                },
                0
            ),
            Err(())
        );
        assert_eq!(resolve(RangeSpec::Suffix(3), 0), Err(()));
    }

    #[test]
    fn conditionals() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let date = httpdate::fmt_http_date(t);
        assert!(not_modified_since(&date, t));
        assert!(!not_modified_since(
            &httpdate::fmt_http_date(t - Duration::from_secs(2)),
            t
        ));
        assert!(!not_modified_since("garbage", t));
        assert!(if_range_holds(&date, "\"e\"", t));
        assert!(if_range_holds("\"e\"", "\"e\"", t));
        assert!(!if_range_holds("\"f\"", "\"e\"", t));
        assert!(!if_range_holds("W/\"e\"", "\"e\"", t));
    }
}
