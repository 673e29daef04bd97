//! The `s3:` block of a node: a node that is a bucket (and prefix) on an
//! S3-compatible object store instead of a local folder. Owns its keys,
//! their checks, and where the access key pair comes from (the file, or
//! environment variables named in it so the file need not hold secrets).

use serde::Deserialize;

#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct S3NodeConfig {
    /// Any S3-compatible URL; AWS's own endpoint for the region when absent.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Every object of the node lives under it (e.g. `node-4/`).
    pub prefix: String,
    /// The signing region (default us-east-1).
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Read the access key from this environment variable instead.
    pub access_key_env: Option<String>,
    /// Read the secret key from this environment variable instead.
    pub secret_key_env: Option<String>,
}

/// Shown without the secret key (configs end up in logs and panics).
impl std::fmt::Debug for S3NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3NodeConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<hidden>"))
            .field("access_key_env", &self.access_key_env)
            .field("secret_key_env", &self.secret_key_env)
            .finish()
    }
}

/// The keys of a node's `s3:` block, for the loader's list of known keys.
pub const S3_NODE_KEYS: &[&str] = &[
    "nodes.*.s3",
    "nodes.*.s3.endpoint",
    "nodes.*.s3.bucket",
    "nodes.*.s3.prefix",
    "nodes.*.s3.region",
    "nodes.*.s3.access_key",
    "nodes.*.s3.secret_key",
    "nodes.*.s3.access_key_env",
    "nodes.*.s3.secret_key_env",
];

/// An access key pair, resolved.
pub struct S3Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl S3NodeConfig {
    /// (key under `s3.`, reason) of the first invalid value.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.bucket.is_empty() {
            return Some(("bucket", "must name a bucket".into()));
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Some((
                    "endpoint",
                    format!("must be an http:// or https:// URL, got {endpoint:?}"),
                ));
            }
        }
        if self.prefix.split('/').any(|s| s == "." || s == "..") {
            return Some((
                "prefix",
                format!("must not hold . or .. segments, got {:?}", self.prefix),
            ));
        }
        for (key, value, env) in [
            ("access_key", &self.access_key, &self.access_key_env),
            ("secret_key", &self.secret_key, &self.secret_key_env),
        ] {
            match (value, env) {
                (Some(_), Some(_)) => {
                    return Some((key, format!("is given twice: both {key} and {key}_env")))
                }
                (None, None) => return Some((key, format!("is missing (or {key}_env)"))),
                _ => {}
            }
        }
        None
    }

    /// Whether two nodes would store into the same objects: one bucket at
    /// one endpoint, and prefixes equal or one inside the other (an outer
    /// node would see the inner one's objects as its own).
    pub fn overlaps(&self, other: &S3NodeConfig) -> bool {
        let segments = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (a, b) = (segments(&self.prefix), segments(&other.prefix));
        let shorter = a.len().min(b.len());
        self.endpoint == other.endpoint
            && self.bucket == other.bucket
            && a[..shorter] == b[..shorter]
    }

    /// The key pair, reading the environment variables named; the error
    /// names the variable that is not set.
    pub fn credentials(&self) -> Result<S3Credentials, String> {
        let read = |value: &Option<String>, env: &Option<String>| match (value, env) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(name)) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            (None, None) => Err("no access key pair configured".into()),
        };
        Ok(S3Credentials {
            access_key: read(&self.access_key, &self.access_key_env)?,
            secret_key: read(&self.secret_key, &self.secret_key_env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> S3NodeConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn keys_come_from_the_file_or_the_environment_never_both() {
        let ok = config("bucket: b\naccess_key: a\nsecret_key: s\n");
        assert_eq!(ok.problem(), None);
        assert_eq!(ok.credentials().unwrap().secret_key, "s");
        let both = config("bucket: b\naccess_key: a\naccess_key_env: A\nsecret_key: s\n");
        assert_eq!(both.problem().unwrap().0, "access_key");
        let none = config("bucket: b\naccess_key: a\n");
        assert_eq!(none.problem().unwrap().0, "secret_key");
        let env = config(
            "bucket: b\naccess_key_env: MINIGCS_TEST_UNSET_KEY\nsecret_key_env: MINIGCS_TEST_UNSET_SECRET\n",
        );
        assert_eq!(env.problem(), None);
        let err = env.credentials().err().unwrap();
        assert!(err.contains("MINIGCS_TEST_UNSET_KEY"), "{err}");
    }

    #[test]
    fn nodes_overlap_in_one_bucket_when_a_prefix_holds_the_other() {
        let node = |endpoint: &str, bucket: &str, prefix: &str| {
            config(&format!(
                "endpoint: {endpoint}\nbucket: {bucket}\nprefix: \"{prefix}\"\naccess_key: a\nsecret_key: s\n"
            ))
        };
        let a = node("http://h:1", "b", "n1/");
        assert!(a.overlaps(&node("http://h:1", "b", "n1")));
        assert!(a.overlaps(&node("http://h:1", "b", "")));
        assert!(a.overlaps(&node("http://h:1", "b", "n1/inner/")));
        assert!(!a.overlaps(&node("http://h:1", "b", "n10/")));
        assert!(!a.overlaps(&node("http://h:1", "other", "n1/")));
        assert!(!a.overlaps(&node("http://h:2", "b", "n1/")));
    }

    #[test]
    fn a_bucket_and_a_plain_endpoint_and_prefix_are_required() {
        assert_eq!(
            config("access_key: a\nsecret_key: s\n")
                .problem()
                .unwrap()
                .0,
            "bucket"
        );
        let ftp = config("bucket: b\nendpoint: ftp://x\naccess_key: a\nsecret_key: s\n");
        assert_eq!(ftp.problem().unwrap().0, "endpoint");
        let escape = config("bucket: b\nprefix: a/../b\naccess_key: a\nsecret_key: s\n");
        assert_eq!(escape.problem().unwrap().0, "prefix");
    }
}
