//! Object keys and file names: the rules of CONTRACT.md (a key is a relative
//! path; no empty, `.` or `..` segment, no NUL, ≤ 1024 bytes, segments ≤ 255).

use crate::error::{Error, Result};

pub const MAX_KEY_LEN: usize = 1024;
pub const MAX_NAME_LEN: usize = 255;

/// Split and validate a key into its path segments.
pub fn parse_key(key: &str) -> Result<Vec<&str>> {
    if key.is_empty() {
        return Err(Error::InvalidKey("key is empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey(format!(
            "key is {} bytes, the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(Error::InvalidKey("key contains a NUL byte".into()));
    }
    if key.starts_with('/') {
        return Err(Error::InvalidKey(
            "key must be relative (no leading '/')".into(),
        ));
    }
    let parts: Vec<&str> = key.split('/').collect();
    for p in &parts {
        match *p {
            "" => {
                return Err(Error::InvalidKey(format!(
                    "key {key:?} has an empty segment"
                )))
            }
            "." | ".." => {
                return Err(Error::InvalidKey(format!(
                    "key {key:?} has a {p:?} segment"
                )))
            }
            _ if p.len() > MAX_NAME_LEN => {
                return Err(Error::InvalidKey(format!(
                    "a segment of {key:?} is over {MAX_NAME_LEN} bytes"
                )))
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// Validate one directory entry name from the mount.
pub fn validate_name(name: &[u8]) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(Error::NameTooLong(format!("{} bytes", name.len())));
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::InvalidArgument(format!(
            "invalid name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        assert_eq!(parse_key("a/b/c.txt").unwrap(), vec!["a", "b", "c.txt"]);
        for bad in ["", "/a", "a//b", "a/", "../x", "a/./b", "a/..", "a\0b"] {
            assert!(parse_key(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(parse_key(&"x".repeat(1025)).is_err());
        assert!(parse_key(&"x".repeat(256)).is_err());
        assert!(parse_key(&format!("{}/{}", "x".repeat(255), "y")).is_ok());
    }

    #[test]
    fn names_over_255_bytes_are_too_long() {
        assert!(matches!(
            validate_name(&[b'a'; 256]),
            Err(Error::NameTooLong(_))
        ));
        assert!(validate_name(b"ok").is_ok());
        assert!(validate_name(b"..").is_err());
    }
}
