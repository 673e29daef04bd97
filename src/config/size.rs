//! Byte sizes as people write them, wherever minigcs takes one: on the
//! command line (`minigcs bench --big-size 1G`) and in config.yaml
//! (`chunk_size: 4MiB`, or a plain integer as before). The suffixes K, M, G
//! and T, with or without `i` and `B`, in any case, are powers of 1024
//! (`1G` = `1GiB` = `1gb` = 1073741824), as `dd`, `fio` and `truncate` read
//! them; fractions round to the nearest byte (`1.5K` = 1536). Parsing is
//! `parse-size`'s; this module fixes the unit system and the messages.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// What a size may look like, for error messages.
pub const SIZE_SYNTAX: &str =
    "a byte count, optionally with a K, M, G or T suffix (powers of 1024), e.g. 4096, 64K, 4MiB, 1G";

/// Parse a size: `4096`, `64K`, `4MiB`, `1G`, `1.5 GiB`.
pub fn parse(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with('-') {
        return Err(format!("invalid size {text:?}: expected {SIZE_SYNTAX}"));
    }
    parse_size::Config::new()
        .with_binary()
        .parse_size(trimmed)
        .map_err(|e| match e {
            parse_size::Error::PosOverflow => format!("size {text:?} is too large"),
            _ => format!("invalid size {text:?}: expected {SIZE_SYNTAX}"),
        })
}

/// A clap `value_parser` for size arguments.
pub fn parse_arg(text: &str) -> Result<u64, String> {
    parse(text)
}

/// A clap `value_parser` for size arguments that are used as a buffer size.
pub fn parse_arg_usize(text: &str) -> Result<usize, String> {
    let n = parse(text)?;
    usize::try_from(n).map_err(|_| format!("size {text:?} is too large"))
}

/// Accepts a YAML integer or a size string for a `u64` field
/// (`#[serde(deserialize_with = "size::u64_field")]`).
pub fn u64_field<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(SizeVisitor)
}

/// Accepts a YAML integer (negative ones too: validation names them) or a
/// size string for an `i64` field.
pub fn i64_field<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(SignedSizeVisitor)
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(SIZE_SYNTAX)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("must be ≥ 0, got {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse(v).map_err(E::custom)
    }
}

struct SignedSizeVisitor;

impl Visitor<'_> for SignedSizeVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(SIZE_SYNTAX)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("size {v} is too large")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        let n = parse(v).map_err(E::custom)?;
        i64::try_from(n).map_err(|_| E::custom(format!("size {v:?} is too large")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_powers_of_1024_in_any_spelling() {
        for (text, bytes) in [
            ("4096", 4096),
            ("0", 0),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("64KiB", 64 << 10),
            ("64kb", 64 << 10),
            ("4M", 4 << 20),
            ("4m", 4 << 20),
            ("4MiB", 4 << 20),
            ("1G", 1 << 30),
            ("1g", 1 << 30),
            ("1GiB", 1 << 30),
            ("1 GiB", 1 << 30),
            ("2T", 2 << 40),
            ("1.5K", 1536),
        ] {
            assert_eq!(parse(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn nonsense_is_refused_saying_what_a_size_looks_like() {
        for text in ["", "G", "4Q", "-1", "-4M", "four"] {
            let e = parse(text).unwrap_err();
            assert!(
                e.contains("invalid size") && e.contains("1G"),
                "{text}: {e}"
            );
        }
        assert!(parse("100000000T").unwrap_err().contains("too large"));
    }

    #[derive(serde::Deserialize, Debug)]
    struct Sizes {
        #[serde(deserialize_with = "u64_field")]
        a: u64,
        #[serde(deserialize_with = "i64_field")]
        b: i64,
    }

    #[test]
    fn yaml_takes_integers_and_size_strings() {
        let s: Sizes = serde_yaml::from_str("a: 4194304\nb: -3\n").unwrap();
        assert_eq!((s.a, s.b), (4 << 20, -3));
        let s: Sizes = serde_yaml::from_str("a: 64MiB\nb: \"4M\"\n").unwrap();
        assert_eq!((s.a, s.b), (64 << 20, 4 << 20));
        let e = serde_yaml::from_str::<Sizes>("a: lots\nb: 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid size \"lots\""), "{e}");
        let e = serde_yaml::from_str::<Sizes>("a: -1\nb: 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be ≥ 0"), "{e}");
    }
}
