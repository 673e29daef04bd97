//! Names in the S3 view: S3's bucket-name rules, and how a bucket and a
//! key become one namespace key (`bucket/key`) that the file service
//! validates with minigcs's key rules. A bad key is an S3 error here,
//! before any service call, so it can never name a path outside its bucket.

use s3s::S3Result;

use crate::service::{parse_key, MAX_KEY_LEN, MAX_NAME_LEN};

/// S3's rules for a bucket name: 3 to 63 characters of lowercase letters,
/// digits, dots and hyphens, starting and ending with a letter or digit,
/// no two adjacent dots, not shaped like an IP address.
pub fn check_bucket(name: &str) -> S3Result<()> {
    let bytes = name.as_bytes();
    let allowed = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-';
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ip_like = name.split('.').count() == 4
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    let ok = (3..=63).contains(&bytes.len())
        && bytes.iter().all(allowed)
        && edge(bytes.first())
        && edge(bytes.last())
        && !name.contains("..")
        && !ip_like;
    if ok {
        Ok(())
    } else {
        Err(s3s::s3_error!(
            InvalidBucketName,
            "The specified bucket is not valid: {name:?} (3-63 lowercase letters, digits, dots and hyphens)"
        ))
    }
}

/// The namespace key of `key` in `bucket`: `bucket/key`, checked.
pub fn object_key(bucket: &str, key: &str) -> S3Result<String> {
    check_bucket(bucket)?;
    if key.is_empty() {
        return Err(s3s::s3_error!(InvalidArgument, "the object key is empty"));
    }
    let full = format!("{bucket}/{key}");
    if full.len() > MAX_KEY_LEN {
        return Err(s3s::s3_error!(
            KeyTooLongError,
            "Your key is too long: {} bytes with its bucket, at most {MAX_KEY_LEN}",
            full.len()
        ));
    }
    if key.split('/').any(|segment| segment.len() > MAX_NAME_LEN) {
        return Err(s3s::s3_error!(
            KeyTooLongError,
            "Your key is too long: each '/'-separated part may have at most {MAX_NAME_LEN} bytes"
        ));
    }
    match parse_key(&full) {
        Ok(_) => Ok(full),
        Err(e) => Err(s3s::s3_error!(
            InvalidArgument,
            "invalid object key {key:?}: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "my-bucket.2026", "a1b", &"a".repeat(63)] {
            assert!(check_bucket(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "192.168.1.2",
            &"a".repeat(64),
            ".ab",
        ] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_never_leave_their_bucket() {
        assert_eq!(
            object_key("photos", "2026/a.jpg").unwrap(),
            "photos/2026/a.jpg"
        );
        for bad in ["", "../x", "a/../../x", "a//b", "./a", "a/", "a\0b"] {
            let e = object_key("photos", bad).unwrap_err();
            assert_eq!(e.code().as_str(), "InvalidArgument", "{bad:?}");
        }
        for long in ["k".repeat(1100), "k".repeat(256)] {
            let e = object_key("photos", &long).unwrap_err();
            assert_eq!(e.code().as_str(), "KeyTooLongError");
        }
    }
}
