//! The `s3:` section: the S3-compatible endpoint (address, signing region
//! and the one access key pair it accepts). Off unless the config turns it
//! on, so a config without the section never claims port 9000.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct S3Config {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// The region reported by GetBucketLocation and expected in signatures.
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Seconds after which a multipart upload nobody completed or aborted
    /// is removed with its parts.
    pub multipart_max_age_secs: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 9000,
            region: "us-east-1".into(),
            access_key: String::new(),
            secret_key: String::new(),
            multipart_max_age_secs: 7 * 86_400,
        }
    }
}

/// The keys of the section, for the loader's list of known keys.
pub const S3_KEYS: &[&str] = &[
    "s3",
    "s3.enabled",
    "s3.host",
    "s3.port",
    "s3.region",
    "s3.access_key",
    "s3.secret_key",
    "s3.multipart_max_age_secs",
];

impl S3Config {
    /// (key, reason) of the first invalid value.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !self.enabled {
            return None;
        }
        if self.host.is_empty() {
            return Some(("s3.host", "must not be empty".into()));
        }
        if self.region.is_empty() {
            return Some(("s3.region", "must not be empty".into()));
        }
        if self.access_key.is_empty() {
            return Some(("s3.access_key", "must be set when s3.enabled".into()));
        }
        if self.secret_key.len() < 8 {
            return Some((
                "s3.secret_key",
                "must be at least 8 characters when s3.enabled".into(),
            ));
        }
        None
    }
}
