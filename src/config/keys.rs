//! Keys of config.yaml the loader does not know, and what to say about each.
//! A key one or two edits away from a known key at the same level
//! (`erasure_codng`, `chunk_sise`, `API`) is almost certainly a typo, and
//! ignoring it would run the store with defaults the user did not choose
//! (k and m among them): it is an error that names the key it resembles.
//! Any other unknown key only warns, because configs written for the
//! prototype or for a newer minigcs carry keys this one does not use.
//! The list of known keys is `config::KNOWN_KEYS`; nothing here reads files.

use std::collections::BTreeSet;

/// A key the loader does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Where it is, as a user reads it: `api.colour`, `nodes[1].regoin`.
    pub path: String,
    /// The known key at the same level it is a typo of, if any
    /// (`api.port`, `nodes[1].region`).
    pub suggestion: Option<String>,
}

/// Every key of `value` not in `known` (dotted paths; `nodes.*` stands for
/// each node), in document order, with a suggestion when one is close.
pub fn unknown_keys(value: &serde_yaml::Value, known: &[&str]) -> Vec<UnknownKey> {
    let known: BTreeSet<&str> = known.iter().copied().collect();
    let mut out = Vec::new();
    collect(value, "", "", &known, &mut out);
    out
}

/// `pattern` is the path in `known`'s terms (`nodes.*`), `shown` the same
/// path as the user reads it (`nodes[2]`).
fn collect(
    value: &serde_yaml::Value,
    pattern: &str,
    shown: &str,
    known: &BTreeSet<&str>,
    out: &mut Vec<UnknownKey>,
) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                let name = match k {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .map(|s| s.trim_end().to_string())
                        .unwrap_or_else(|_| format!("{other:?}")),
                };
                let (key, key_shown) = (join(pattern, &name), join(shown, &name));
                if known.contains(key.as_str()) {
                    collect(v, &key, &key_shown, known, out);
                } else {
                    let suggestion = closest_sibling(pattern, &name, known).map(|s| join(shown, s));
                    out.push(UnknownKey {
                        path: key_shown,
                        suggestion,
                    });
                }
            }
        }
        serde_yaml::Value::Sequence(items) if pattern == "nodes" => {
            for (i, item) in items.iter().enumerate() {
                collect(item, "nodes.*", &format!("nodes[{i}]"), known, out);
            }
        }
        _ => {}
    }
}

fn join(prefix: &str, name: &str) -> String {
    match prefix {
        "" => name.to_string(),
        p => format!("{p}.{name}"),
    }
}

/// The known key under `prefix` that `name` is a typo of: at most two
/// edits (a transposition counts as one, case is ignored) and fewer edits
/// than the known name has letters, so `x` is not taken for `k`.
fn closest_sibling<'a>(prefix: &str, name: &str, known: &BTreeSet<&'a str>) -> Option<&'a str> {
    let lowered = name.to_lowercase();
    known
        .iter()
        .filter_map(|k| {
            let child = match prefix {
                "" => *k,
                p => k.strip_prefix(p)?.strip_prefix('.')?,
            };
            (!child.contains('.')).then_some(child)
        })
        .map(|child| {
            let distance = strsim::damerau_levenshtein(&lowered, child);
            (distance, child)
        })
        .filter(|&(distance, child)| distance <= 2 && distance < child.chars().count())
        .min()
        .map(|(_, child)| child)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &[
        "nodes",
        "nodes.*.id",
        "nodes.*.region",
        "erasure_coding",
        "erasure_coding.k",
        "erasure_coding.m",
        "erasure_coding.chunk_size",
        "api",
        "api.host",
        "api.port",
    ];

    fn unknown(yaml: &str) -> Vec<UnknownKey> {
        unknown_keys(&serde_yaml::from_str(yaml).unwrap(), KNOWN)
    }

    fn key(path: &str, suggestion: Option<&str>) -> UnknownKey {
        UnknownKey {
            path: path.into(),
            suggestion: suggestion.map(String::from),
        }
    }

    #[test]
    fn typos_of_known_keys_get_a_suggestion_at_their_level() {
        assert_eq!(
            unknown("erasure_codng:\n  k: 4\n"),
            [key("erasure_codng", Some("erasure_coding"))]
        );
        assert_eq!(
            unknown("erasure_coding:\n  chunk_sise: 4\n  kk: 1\n"),
            [
                key(
                    "erasure_coding.chunk_sise",
                    Some("erasure_coding.chunk_size")
                ),
                key("erasure_coding.kk", None),
            ]
        );
        assert_eq!(unknown("API:\n  port: 1\n"), [key("API", Some("api"))]);
        assert_eq!(
            unknown("api:\n  prot: 1\n"),
            [key("api.prot", Some("api.port"))]
        );
        assert_eq!(
            unknown("nodes:\n  - id: a\n  - id: b\n    regoin: x\n"),
            [key("nodes[1].regoin", Some("nodes[1].region"))]
        );
    }

    #[test]
    fn unrelated_keys_get_no_suggestion() {
        assert_eq!(
            unknown("frobnicate: 1\napi:\n  colour: red\nerasure_coding:\n  x: 1\n"),
            [
                key("frobnicate", None),
                key("api.colour", None),
                key("erasure_coding.x", None),
            ]
        );
        assert!(unknown("api:\n  host: h\n  port: 1\n").is_empty());
    }
}
