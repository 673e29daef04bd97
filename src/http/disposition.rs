//! The `Content-Disposition` header of a download: `attachment` with the
//! object's file name (the last segment of its key), as the prototype sent
//! it, written the way RFC 6266 asks so that any name arrives intact:
//!
//! - a name made of token characters goes bare, exactly as the prototype
//!   wrote it: `attachment; filename=docs.txt`;
//! - other printable ASCII goes in quotes: `filename="my report.pdf"`;
//! - anything else (non-ASCII, control characters, and `%`, `"` and `\`,
//!   which some clients read as escapes) gets an ASCII stand-in with `_` for
//!   each such character, followed by the exact name in RFC 5987's
//!   `filename*=UTF-8''…` percent-encoding, which clients prefer.
//!
//! It only formats a header; the key was validated by the service.

use axum::http::HeaderValue;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes RFC 5987's `attr-char` leaves unescaped: letters, digits and these.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename=…` for the object `key`.
pub fn attachment(key: &str) -> HeaderValue {
    let name = key.rsplit('/').next().unwrap_or(key);
    let value = if name.is_empty() {
        "attachment".to_string()
    } else if name.chars().all(is_token_char) {
        format!("attachment; filename={name}")
    } else if name.chars().all(is_plain) {
        format!("attachment; filename=\"{name}\"")
    } else {
        let stand_in: String = name
            .chars()
            .map(|c| if is_plain(c) { c } else { '_' })
            .collect();
        format!(
            "attachment; filename=\"{stand_in}\"; filename*=UTF-8''{}",
            utf8_percent_encode(name, ATTR_CHAR_ESCAPES)
        )
    };
    // Only visible ASCII and spaces are left in the value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Printable ASCII that is safe inside a quoted `filename` everywhere.
fn is_plain(c: char) -> bool {
    matches!(c, ' '..='~') && !matches!(c, '"' | '\\' | '%')
}

/// RFC 9110's `tchar`, minus `%` (see [`is_plain`]).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cd(key: &str) -> String {
        attachment(key).to_str().unwrap().to_string()
    }

    #[test]
    fn a_plain_name_is_written_as_the_prototype_did() {
        assert_eq!(cd("docs.txt"), "attachment; filename=docs.txt");
        assert_eq!(
            cd("a/b/report-2026.pdf"),
            "attachment; filename=report-2026.pdf"
        );
    }

    #[test]
    fn spaces_and_separators_are_quoted() {
        assert_eq!(
            cd("dir/my report.pdf"),
            "attachment; filename=\"my report.pdf\""
        );
        assert_eq!(cd("a;b=c.txt"), "attachment; filename=\"a;b=c.txt\"");
    }

    #[test]
    fn other_names_get_a_stand_in_and_the_utf8_name() {
        assert_eq!(
            cd("photos/café.jpg"),
            "attachment; filename=\"caf_.jpg\"; filename*=UTF-8''caf%C3%A9.jpg"
        );
        assert_eq!(
            cd("q\"uote\\s.txt"),
            "attachment; filename=\"q_uote_s.txt\"; filename*=UTF-8''q%22uote%5Cs.txt"
        );
        assert_eq!(
            cd("100%.txt"),
            "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt"
        );
        assert_eq!(
            cd("line\nbreak"),
            "attachment; filename=\"line_break\"; filename*=UTF-8''line%0Abreak"
        );
        assert_eq!(
            cd("日本語.txt"),
            "attachment; filename=\"___.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt"
        );
    }
}
