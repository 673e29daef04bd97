//! What can be wrong with one shard, as found by a read or a verification:
//! `ShardFault`. The chunk store classifies a fault where it sees it (node
//! state, file presence, header, block checksums); callers decide from the
//! variant, never from message text, whether a shard is missing (rebuild it
//! somewhere) or corrupt (its bytes are wrong). Its `Display` is the text the
//! scrub report has always carried (`missing: …` / `corrupt: …`; `not
//! checked: …` when the daemon could not look), and it serializes to that
//! text; `FromStr` reads it back.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// One shard's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFault {
    /// No node holds the shard: it was never placed, or its node was lost.
    NotPlaced,
    /// The node that holds the shard is down.
    NodeDown { node: String },
    /// The node is up but the shard file is not there.
    Missing,
    /// The file's header names another chunk or shard index.
    WrongIdentity { found: String, expected: String },
    /// Length, header or a block checksum does not verify.
    Corrupt { reason: String },
    /// The node failed to read the shard (an I/O error and the like).
    Unreadable { error: String },
    /// The daemon could not look at the shard (it is out of file
    /// descriptors): nothing is known about the shard itself.
    NotChecked { reason: String },
}

const MISSING: &str = "missing: ";
const CORRUPT: &str = "corrupt: ";
const NOT_CHECKED: &str = "not checked: ";
/// How `Error::Corrupt` has always displayed; kept inside the corrupt texts.
const CORRUPT_SHARD: &str = "corrupt shard: ";
const NOT_PLACED: &str = "never placed or lost";
const FILE_MISSING: &str = "shard file is missing";
const HEADER_DESCRIBES: &str = "shard header describes ";
const EXPECTED: &str = ", expected ";

impl ShardFault {
    /// The shard is absent (not placed, node down, file gone) rather than
    /// present with wrong bytes.
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            ShardFault::NotPlaced | ShardFault::NodeDown { .. } | ShardFault::Missing
        )
    }

    /// A fault of the shard itself that belongs in the repair queue; a node
    /// that is down is the health checker's business, and a shard the daemon
    /// could not look at is not known to be faulty.
    pub fn needs_repair(&self) -> bool {
        !matches!(
            self,
            ShardFault::NodeDown { .. } | ShardFault::NotChecked { .. }
        )
    }
}

/// Classifies an error from opening, reading or decoding a shard on a node
/// that is up: absent file, bad bytes, a failed read, or the daemon's own
/// descriptor exhaustion (which says nothing about the shard).
impl From<Error> for ShardFault {
    fn from(err: Error) -> ShardFault {
        match err {
            e if e.is_fd_exhaustion() => ShardFault::NotChecked {
                reason: e.to_string(),
            },
            Error::NotFound(_) => ShardFault::Missing,
            Error::Corrupt(reason) => ShardFault::Corrupt { reason },
            other => ShardFault::Unreadable {
                error: other.to_string(),
            },
        }
    }
}

impl fmt::Display for ShardFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardFault::NotPlaced => write!(f, "{MISSING}{NOT_PLACED}"),
            ShardFault::NodeDown { node } => write!(f, "{MISSING}node {node} is down"),
            ShardFault::Missing => write!(f, "{MISSING}{FILE_MISSING}"),
            ShardFault::WrongIdentity { found, expected } => write!(
                f,
                "{CORRUPT}{CORRUPT_SHARD}{HEADER_DESCRIBES}{found}{EXPECTED}{expected}"
            ),
            ShardFault::Corrupt { reason } => write!(f, "{CORRUPT}{CORRUPT_SHARD}{reason}"),
            ShardFault::Unreadable { error } => write!(f, "{CORRUPT}{error}"),
            ShardFault::NotChecked { reason } => write!(f, "{NOT_CHECKED}{reason}"),
        }
    }
}

/// The text was not one `ShardFault` displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFault(pub String);

impl fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a shard fault: {:?}", self.0)
    }
}

impl std::error::Error for UnknownFault {}

impl FromStr for ShardFault {
    type Err = UnknownFault;

    /// The inverse of `Display`.
    fn from_str(text: &str) -> Result<ShardFault, UnknownFault> {
        if let Some(reason) = text.strip_prefix(NOT_CHECKED) {
            return Ok(ShardFault::NotChecked {
                reason: reason.into(),
            });
        }
        if let Some(what) = text.strip_prefix(MISSING) {
            if what == NOT_PLACED {
                return Ok(ShardFault::NotPlaced);
            }
            if what == FILE_MISSING {
                return Ok(ShardFault::Missing);
            }
            if let Some(node) = what
                .strip_prefix("node ")
                .and_then(|n| n.strip_suffix(" is down"))
            {
                return Ok(ShardFault::NodeDown { node: node.into() });
            }
        } else if let Some(what) = text.strip_prefix(CORRUPT) {
            let Some(reason) = what.strip_prefix(CORRUPT_SHARD) else {
                return Ok(ShardFault::Unreadable { error: what.into() });
            };
            let identity = reason
                .strip_prefix(HEADER_DESCRIBES)
                .and_then(|r| r.rsplit_once(EXPECTED));
            return Ok(match identity {
                Some((found, expected)) => ShardFault::WrongIdentity {
                    found: found.into(),
                    expected: expected.into(),
                },
                None => ShardFault::Corrupt {
                    reason: reason.into(),
                },
            });
        }
        Err(UnknownFault(text.into()))
    }
}

impl serde::Serialize for ShardFault {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ShardFault {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_fault() -> Vec<ShardFault> {
        vec![
            ShardFault::NotPlaced,
            ShardFault::NodeDown {
                node: "node-2".into(),
            },
            ShardFault::Missing,
            ShardFault::WrongIdentity {
                found: "chunk 97235bcffe2d042f shard 0 (k=2 m=1 len=1048576)".into(),
                expected: "chunk 36870daa94c1110f shard 2".into(),
            },
            ShardFault::Corrupt {
                reason: "block 7 checksum mismatch".into(),
            },
            ShardFault::Unreadable {
                error: "I/O error: Input/output error (os error 5)".into(),
            },
            ShardFault::NotChecked {
                reason: "I/O error: Too many open files (os error 24)".into(),
            },
        ]
    }

    #[test]
    fn faults_display_as_the_scrub_report_always_said() {
        let texts: Vec<String> = every_fault().iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "missing: never placed or lost",
                "missing: node node-2 is down",
                "missing: shard file is missing",
                "corrupt: corrupt shard: shard header describes chunk 97235bcffe2d042f shard 0 \
                 (k=2 m=1 len=1048576), expected chunk 36870daa94c1110f shard 2",
                "corrupt: corrupt shard: block 7 checksum mismatch",
                "corrupt: I/O error: Input/output error (os error 5)",
                "not checked: I/O error: Too many open files (os error 24)",
            ]
        );
    }

    #[test]
    fn text_and_json_read_back_to_the_same_fault() {
        for fault in every_fault() {
            assert_eq!(fault.to_string().parse::<ShardFault>(), Ok(fault.clone()));
            let json = serde_json::to_value(&fault).unwrap();
            assert_eq!(json, serde_json::Value::String(fault.to_string()));
            assert_eq!(serde_json::from_value::<ShardFault>(json).unwrap(), fault);
        }
        assert!("fine".parse::<ShardFault>().is_err());
        assert!("missing: who knows".parse::<ShardFault>().is_err());
    }

    #[test]
    fn missing_and_corrupt_come_from_the_variant() {
        let missing: Vec<bool> = every_fault().iter().map(ShardFault::is_missing).collect();
        assert_eq!(missing, [true, true, true, false, false, false, false]);
        let repair: Vec<bool> = every_fault().iter().map(ShardFault::needs_repair).collect();
        assert_eq!(repair, [true, false, true, true, true, true, false]);
        let emfile = Error::Io(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(matches!(
            ShardFault::from(emfile),
            ShardFault::NotChecked { .. }
        ));
        assert_eq!(
            ShardFault::from(Error::NotFound("shard".into())),
            ShardFault::Missing
        );
        assert_eq!(
            ShardFault::from(Error::Corrupt("shard magic mismatch".into())),
            ShardFault::Corrupt {
                reason: "shard magic mismatch".into()
            }
        );
        assert!(!ShardFault::from(Error::Other("boom".into())).is_missing());
    }
}
