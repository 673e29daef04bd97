//! Rebuilding one prototype object from the shards that could be read,
//! checked against the SHA-256 its metadata recorded. The prototype kept
//! no checksum per shard, so a damaged shard shows only in the object's
//! SHA-256: when the data shards do not give the recorded digest (or some
//! are missing), sets of the readable shards are tried, fewest left out
//! first, each rebuilding the data shards it lacks from its parity
//! (`prototype_code::Solver`); byte positions the prototype's code cannot
//! tell apart are settled by the digest too. Only bytes whose SHA-256
//! matches are ever returned; after a match every readable shard is
//! compared with what it should hold, which names the damaged ones.

use sha2::{Digest, Sha256};

use super::prototype_code::{parity_of, shard_size, Solver};

/// Sets of shards tried before giving up.
const MAX_SHARD_SETS: usize = 64;

/// Byte positions with more than one candidate kept per attempt; beyond
/// this the combinations cannot be searched anyway.
const MAX_AMBIGUOUS: usize = 30;

/// Bytes hashed at most while settling ambiguous positions, per attempt.
const SEARCH_BUDGET: u128 = 1 << 30;

/// Candidate values tried at most while solving, per attempt.
const SOLVE_BUDGET: u64 = 1 << 32;

/// What rebuilding gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebuilt {
    /// The object's bytes, matching the recorded SHA-256. `rebuilt`: data
    /// shards computed from parity; `damaged`: readable shards whose bytes
    /// were wrong (ignored).
    Verified {
        data: Vec<u8>,
        rebuilt: Vec<usize>,
        damaged: Vec<usize>,
    },
    /// Why no bytes matching the SHA-256 could be made.
    Failed(String),
}

/// Rebuild an object of `size` bytes stored with code (k, m) from
/// `shards` (k + m entries in shard order; None = missing or unreadable).
/// A shard of the wrong length counts as unreadable.
pub fn rebuild(
    k: usize,
    m: usize,
    size: u64,
    checksum: &[u8; 32],
    shards: &[Option<Vec<u8>>],
) -> Rebuilt {
    let matches = |bytes: &[u8]| Sha256::digest(bytes).as_slice() == checksum;
    if size == 0 {
        return match matches(&[]) {
            true => Rebuilt::Verified {
                data: Vec::new(),
                rebuilt: Vec::new(),
                damaged: Vec::new(),
            },
            false => Rebuilt::Failed(
                "the object is empty but its recorded SHA-256 is not that of empty content".into(),
            ),
        };
    }
    let ss = shard_size(size, k) as usize;
    let usable: Vec<usize> = (0..k + m)
        .filter(|&s| {
            shards
                .get(s)
                .and_then(Option::as_ref)
                .is_some_and(|b| b.len() == ss)
        })
        .collect();
    if (0..k).all(|d| usable.contains(&d)) {
        let mut data: Vec<u8> = (0..k)
            .flat_map(|d| shards[d].as_deref().expect("usable"))
            .copied()
            .collect();
        data.truncate(size as usize);
        if matches(&data) {
            return Rebuilt::Verified {
                data,
                rebuilt: Vec::new(),
                damaged: Vec::new(),
            };
        }
    }
    if usable.len() < k {
        return Rebuilt::Failed(format!(
            "only {} of the {} shards are readable and {k} are needed",
            usable.len(),
            k + m
        ));
    }
    let mut tried = 0;
    let mut notes = Vec::new();
    'sets: for left_out in 0..=usable.len() - k {
        for dropped in Subsets::new(&usable, left_out) {
            let trusted: Vec<usize> = usable
                .iter()
                .copied()
                .filter(|s| !dropped.contains(s))
                .collect();
            let missing: Vec<usize> = (0..k).filter(|d| !trusted.contains(d)).collect();
            let parity: Vec<usize> = trusted.iter().filter(|&&s| s >= k).map(|s| s - k).collect();
            if missing.is_empty() || parity.len() < missing.len() {
                continue;
            }
            if tried == MAX_SHARD_SETS {
                notes.push(format!("stopped after {MAX_SHARD_SETS} sets of shards"));
                break 'sets;
            }
            tried += 1;
            match attempt(k, m, size, checksum, shards, &missing, &parity) {
                Attempt::Matched(padded) => {
                    return verified(k, m, size, shards, &usable, missing, padded);
                }
                Attempt::Rejected => {}
                Attempt::TooAmbiguous(note) => notes.push(note),
            }
        }
    }
    let mut reason = match tried {
        0 => format!(
            "the {} readable shards cannot rebuild the missing data shards",
            usable.len()
        ),
        n => format!(
            "no set of the readable shards rebuilds content matching the recorded SHA-256 ({n} tried)"
        ),
    };
    notes.dedup();
    if !notes.is_empty() {
        reason.push_str(&format!(": {}", notes.join("; ")));
    }
    Rebuilt::Failed(reason)
}

/// The result once the bytes matched: which readable shards were wrong.
fn verified(
    k: usize,
    m: usize,
    size: u64,
    shards: &[Option<Vec<u8>>],
    usable: &[usize],
    rebuilt: Vec<usize>,
    mut padded: Vec<u8>,
) -> Rebuilt {
    let ss = padded.len() / k;
    let data_shards: Vec<&[u8]> = padded.chunks(ss.max(1)).collect();
    let parity = parity_of(&data_shards, m);
    let damaged = usable
        .iter()
        .copied()
        .filter(|&s| {
            let should: &[u8] = if s < k {
                data_shards[s]
            } else {
                &parity[s - k]
            };
            shards[s].as_deref() != Some(should)
        })
        .collect();
    padded.truncate(size as usize);
    Rebuilt::Verified {
        data: padded,
        rebuilt,
        damaged,
    }
}

enum Attempt {
    /// The padded data shards, concatenated, matching the SHA-256.
    Matched(Vec<u8>),
    /// The shards contradict each other, or no candidate matches.
    Rejected,
    /// Too many candidates to search; why.
    TooAmbiguous(String),
}

/// A byte position with several candidates for the missing data bytes.
struct Choice {
    /// Offsets in the object of the missing bytes (those inside it).
    offsets: Vec<usize>,
    /// Candidates, `offsets.len()` bytes each.
    candidates: Vec<u8>,
}

/// Rebuild data shards `missing` from the other data shards and parity
/// shards `parity`, then look for the candidates that match the SHA-256.
fn attempt(
    k: usize,
    m: usize,
    size: u64,
    checksum: &[u8; 32],
    shards: &[Option<Vec<u8>>],
    missing: &[usize],
    parity: &[usize],
) -> Attempt {
    let size = size as usize;
    let ss = size.div_ceil(k);
    let Ok(solver) = Solver::new(k, m, missing, parity) else {
        return Attempt::Rejected;
    };
    let work = (ss as u64).saturating_mul(solver.enumerated_per_byte());
    if work > SOLVE_BUDGET {
        return Attempt::TooAmbiguous(format!(
            "rebuilding {} data shards at once would try {work} values",
            missing.len()
        ));
    }
    let data: Vec<Option<&[u8]>> = (0..k)
        .map(|d| match missing.contains(&d) {
            true => None,
            false => shards[d].as_deref(),
        })
        .collect();
    let parity_shards: Vec<&[u8]> = parity
        .iter()
        .map(|&i| {
            shards[k + i]
                .as_deref()
                .expect("trusted parity is readable")
        })
        .collect();
    let mut padded = vec![0u8; k * ss];
    for (d, shard) in data.iter().enumerate() {
        if let Some(bytes) = shard {
            padded[d * ss..(d + 1) * ss].copy_from_slice(bytes);
        }
    }
    let n = missing.len();
    let mut choices = Vec::new();
    let mut ambiguous = 0usize;
    let (mut found, mut kept) = (Vec::new(), Vec::new());
    for j in 0..ss {
        found.clear();
        kept.clear();
        solver.solve(j, &data, &parity_shards, &mut found);
        // Bytes past the object's end are the prototype's zero padding.
        for candidate in found.chunks(n) {
            let fits = candidate
                .iter()
                .zip(missing)
                .all(|(&x, &d)| x == 0 || d * ss + j < size);
            if fits {
                kept.extend_from_slice(candidate);
            }
        }
        if kept.is_empty() {
            return Attempt::Rejected;
        }
        for (&x, &d) in kept[..n].iter().zip(missing) {
            padded[d * ss + j] = x;
        }
        if kept.len() > n {
            ambiguous += 1;
            if ambiguous <= MAX_AMBIGUOUS {
                let inside: Vec<usize> = (0..n).filter(|&u| missing[u] * ss + j < size).collect();
                choices.push(Choice {
                    offsets: inside.iter().map(|&u| missing[u] * ss + j).collect(),
                    candidates: kept
                        .chunks(n)
                        .flat_map(|c| inside.iter().map(move |&u| c[u]))
                        .collect(),
                });
            }
        }
    }
    if ambiguous > MAX_AMBIGUOUS {
        return Attempt::TooAmbiguous(format!(
            "{ambiguous} bytes of the missing data that the prototype's parity cannot tell apart (its arithmetic gives two byte values one product), too many to settle by the SHA-256"
        ));
    }
    choices.sort_by_key(|c| c.offsets.iter().min().copied());
    let cost = search_cost(&choices, size);
    if cost > SEARCH_BUDGET {
        return Attempt::TooAmbiguous(format!(
            "{} bytes of the missing data that the prototype's parity cannot tell apart (its arithmetic gives two byte values one product), too many combinations to settle by the SHA-256",
            choices.len()
        ));
    }
    match settle(&mut padded, size, &choices, 0, 0, Sha256::new(), checksum) {
        true => Attempt::Matched(padded),
        false => Attempt::Rejected,
    }
}

/// Bytes the search hashes at most: the prefix once, then each stretch
/// between choices once per combination of the choices before it.
fn search_cost(choices: &[Choice], size: usize) -> u128 {
    let start = |c: &Choice| c.offsets.iter().min().copied().unwrap_or(size);
    let mut cost = choices.first().map_or(size, start) as u128;
    let mut combinations: u128 = 1;
    for (l, choice) in choices.iter().enumerate() {
        let count = (choice.candidates.len() / choice.offsets.len().max(1)) as u128;
        combinations = combinations.saturating_mul(count);
        let end = choices.get(l + 1).map_or(size, start);
        cost = cost.saturating_add(combinations.saturating_mul((end - start(choice)) as u128));
    }
    cost
}

/// Depth-first over the choices in offset order, hashing each stretch
/// once per combination of the choices before it. On success `padded`
/// holds the matching bytes.
fn settle(
    padded: &mut [u8],
    size: usize,
    choices: &[Choice],
    level: usize,
    hashed_to: usize,
    mut hasher: Sha256,
    checksum: &[u8; 32],
) -> bool {
    let Some(choice) = choices.get(level) else {
        hasher.update(&padded[hashed_to..size]);
        return hasher.finalize().as_slice() == checksum;
    };
    let Some(at) = choice.offsets.iter().min().copied() else {
        // Every byte of this position is padding: nothing to choose.
        return settle(
            padded,
            size,
            choices,
            level + 1,
            hashed_to,
            hasher,
            checksum,
        );
    };
    hasher.update(&padded[hashed_to..at]);
    for candidate in choice.candidates.chunks(choice.offsets.len()) {
        for (&offset, &x) in choice.offsets.iter().zip(candidate) {
            padded[offset] = x;
        }
        if settle(
            padded,
            size,
            choices,
            level + 1,
            at,
            hasher.clone(),
            checksum,
        ) {
            return true;
        }
    }
    false
}

/// The subsets of `items` with `size` elements, in lexicographic order of
/// positions, made one at a time.
pub struct Subsets<'a> {
    items: &'a [usize],
    positions: Vec<usize>,
    done: bool,
}

impl<'a> Subsets<'a> {
    pub fn new(items: &'a [usize], size: usize) -> Subsets<'a> {
        Subsets {
            items,
            positions: (0..size).collect(),
            done: size > items.len(),
        }
    }
}

impl Iterator for Subsets<'_> {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.done {
            return None;
        }
        let subset = self.positions.iter().map(|&p| self.items[p]).collect();
        // Advance: the rightmost position that can move right does, and
        // the ones after it follow it.
        let (n, r) = (self.items.len(), self.positions.len());
        match (0..r).rev().find(|&i| self.positions[i] < n - r + i) {
            Some(i) => {
                self.positions[i] += 1;
                for next in i + 1..r {
                    self.positions[next] = self.positions[next - 1] + 1;
                }
            }
            None => self.done = true,
        }
        Some(subset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::prototype_code::encode;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    /// Bytes of every value (a xorshift sequence).
    fn binary(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Printable ASCII, as most of the prototype's objects are.
    fn text(len: usize, seed: u64) -> Vec<u8> {
        binary(len, seed)
            .into_iter()
            .map(|b| b' ' + b % 95)
            .collect()
    }

    /// Compare without printing megabytes when they differ.
    fn assert_verified(got: Rebuilt, data: &[u8], rebuilt: &[usize], damaged: &[usize]) {
        match got {
            Rebuilt::Verified {
                data: bytes,
                rebuilt: r,
                damaged: d,
            } => {
                assert!(bytes == data, "rebuilt bytes differ from the original");
                assert_eq!((r.as_slice(), d.as_slice()), (rebuilt, damaged));
            }
            Rebuilt::Failed(reason) => panic!("not rebuilt: {reason}"),
        }
    }

    fn with(
        shards: &[Vec<u8>],
        change: impl Fn(usize, &mut Option<Vec<u8>>),
    ) -> Vec<Option<Vec<u8>>> {
        shards
            .iter()
            .enumerate()
            .map(|(s, b)| {
                let mut shard = Some(b.clone());
                change(s, &mut shard);
                shard
            })
            .collect()
    }

    #[test]
    fn subsets_come_in_order_and_complete() {
        let all: Vec<Vec<usize>> = Subsets::new(&[3, 5, 7, 9], 2).collect();
        assert_eq!(all, [[3, 5], [3, 7], [3, 9], [5, 7], [5, 9], [7, 9]]);
        assert_eq!(
            Subsets::new(&[1, 2], 0).collect::<Vec<_>>(),
            [Vec::<usize>::new()]
        );
        assert_eq!(Subsets::new(&[1, 2], 3).count(), 0);
    }

    #[test]
    fn intact_shards_give_the_object_without_repair() {
        let data = binary(1001, 1);
        let shards = encode(&data, 2, 1);
        let got = rebuild(2, 1, 1001, &sha(&data), &with(&shards, |_, _| {}));
        assert_verified(got, &data, &[], &[]);
    }

    #[test]
    fn trailing_zero_bytes_are_kept_by_size() {
        let mut data = text(300, 2);
        data.extend([0u8; 5]);
        let shards = encode(&data, 3, 2);
        let lost = with(&shards, |s, b| {
            if s == 2 {
                *b = None
            }
        });
        assert_verified(rebuild(3, 2, 305, &sha(&data), &lost), &data, &[2], &[]);
    }

    #[test]
    fn a_missing_data_shard_is_rebuilt_from_parity() {
        // Shard 0's coefficient is 1, which the prototype's code inverts
        // for every byte: any content comes back.
        let data = binary(200_000, 3);
        let shards = encode(&data, 2, 1);
        let lost = with(&shards, |s, b| {
            if s == 0 {
                *b = None
            }
        });
        assert_verified(rebuild(2, 1, 200_000, &sha(&data), &lost), &data, &[0], &[]);
        // Shard 1's coefficient maps 0x01 and 0x8e to one product; text
        // holds neither.
        let data = text(200_000, 4);
        let shards = encode(&data, 2, 1);
        let lost = with(&shards, |s, b| {
            if s == 1 {
                *b = None
            }
        });
        assert_verified(rebuild(2, 1, 200_000, &sha(&data), &lost), &data, &[1], &[]);
    }

    #[test]
    fn binary_content_of_a_later_data_shard_is_beyond_the_prototypes_parity() {
        // About 2 bytes in 256 of random content cannot be told apart: the
        // prototype's parity lost them, and there are too many to try.
        let data = binary(20_000, 5);
        let shards = encode(&data, 2, 1);
        let lost = with(&shards, |s, b| {
            if s == 1 {
                *b = None
            }
        });
        match rebuild(2, 1, 20_000, &sha(&data), &lost) {
            Rebuilt::Failed(reason) => assert!(reason.contains("cannot tell apart"), "{reason}"),
            Rebuilt::Verified { .. } => panic!("random content of shard 1 is not determined"),
        }
    }

    #[test]
    fn a_corrupt_data_shard_is_found_by_the_checksum_and_rebuilt() {
        for bad_shard in 0..2 {
            let data = text(5000, 6);
            let shards = encode(&data, 2, 1);
            let bad = with(&shards, |s, b| {
                if s == bad_shard {
                    b.as_mut().unwrap()[100] ^= 0x40;
                }
            });
            let got = rebuild(2, 1, 5000, &sha(&data), &bad);
            assert_verified(got, &data, &[bad_shard], &[bad_shard]);
        }
    }

    #[test]
    fn a_corrupt_parity_shard_is_left_out_when_data_is_missing() {
        let data = binary(3000, 7);
        let shards = encode(&data, 3, 2);
        let bad = with(&shards, |s, b| match s {
            0 => *b = None,
            3 => b.as_mut().unwrap()[7] ^= 1,
            _ => {}
        });
        assert_verified(rebuild(3, 2, 3000, &sha(&data), &bad), &data, &[0], &[3]);
    }

    #[test]
    fn too_few_shards_or_no_match_fail_with_a_reason() {
        let data = binary(999, 8);
        let shards = encode(&data, 2, 1);
        let two_lost = with(&shards, |s, b| {
            if s != 2 {
                *b = None
            }
        });
        match rebuild(2, 1, 999, &sha(&data), &two_lost) {
            Rebuilt::Failed(reason) => assert!(reason.contains("only 1 of the 3"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Data missing and the parity damaged: nothing matches the digest.
        let bad = with(&shards, |s, b| match s {
            0 => *b = None,
            2 => b.as_mut().unwrap()[0] ^= 1,
            _ => {}
        });
        match rebuild(2, 1, 999, &sha(&data), &bad) {
            Rebuilt::Failed(reason) => assert!(reason.contains("SHA-256"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Wrong length counts as unreadable.
        let short = with(&shards, |s, b| {
            if s == 0 {
                b.as_mut().unwrap().pop();
            }
        });
        assert!(matches!(
            rebuild(2, 1, 999, &sha(&data), &short),
            Rebuilt::Verified { .. }
        ));
    }

    #[test]
    fn the_empty_object_needs_no_shard() {
        assert_eq!(
            rebuild(2, 1, 0, &sha(b""), &[None, None, None]),
            Rebuilt::Verified {
                data: vec![],
                rebuilt: vec![],
                damaged: vec![]
            }
        );
        assert!(matches!(
            rebuild(2, 1, 0, &sha(b"x"), &[None, None, None]),
            Rebuilt::Failed(_)
        ));
    }

    #[test]
    fn bytes_the_code_cannot_tell_apart_are_settled_by_the_checksum() {
        // Data shard 1 of k=2 holds 0x01 and 0x8e, which the prototype's
        // parity maps to the same byte: several ambiguous positions.
        let mut data = text(400, 9);
        for i in [201, 250, 333, 399] {
            data[i] = if i % 2 == 0 { 0x01 } else { 0x8e };
        }
        let shards = encode(&data, 2, 1);
        let lost = with(&shards, |s, b| {
            if s == 1 {
                *b = None
            }
        });
        assert_verified(rebuild(2, 1, 400, &sha(&data), &lost), &data, &[1], &[]);
    }
}
