//! The MiniGCS Python prototype's erasure code, byte for byte: how its
//! encoder cut an object into k data shards and computed m parity shards,
//! and a solver that finds the data bytes a lost data shard held from the
//! shards that are left.
//!
//! Written by hand because no crate computes this code. The prototype's
//! parity byte j of parity shard i is XOR over data shards d of
//! `mul(data[d][j], gf_exp[d·(i+1)])` in GF(2^8) (polynomial 0x11d,
//! generator 2), but its `mul(a, b)` is `gf_exp[(log a + log b) mod 256]`
//! with `log 1` stored as 255 and `gf_exp[255] = 1`: every encoding in
//! `prototype-ec-vectors.json` (made by the prototype itself) matches that
//! and none matches a true field multiplication (mod 255). So `mul(x, 1)` is
//! x/2, and for a coefficient 2^e (1 ≤ e ≤ 254) the bytes 2^(255−e) and
//! 2^(256−e) give the same product: the parity is not a linear function of
//! the data, no Reed-Solomon matrix (reed-solomon-erasure's or any other)
//! reproduces it, and inverting a k×k submatrix does not undo it.
//!
//! Decoding is therefore done per byte position: every value of the missing
//! data bytes that satisfies every available parity byte is a candidate.
//! Lookup tables over all values of the last one or two unknowns (under the
//! first one or two parity equations) give the candidates directly; further
//! unknowns are enumerated. Most positions have exactly one candidate; the
//! few the prototype's code cannot tell apart have two or more, and the
//! object's SHA-256 settles them (`super::rebuild`).

/// The prototype's field polynomial, x^8 + x^4 + x^3 + x^2 + 1.
const POLYNOMIAL: u16 = 0x11d;

/// `gf_exp` and `gf_log` as the prototype built them: 2^i for i in 0..=255
/// (so `gf_exp[255] = 1`, overwriting `gf_log[1]` with 255).
const TABLES: ([u8; 256], [u8; 256]) = build_tables();

const fn build_tables() -> ([u8; 256], [u8; 256]) {
    let mut exp = [0u8; 256];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 256 {
        exp[i] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLYNOMIAL;
        }
        i += 1;
    }
    (exp, log)
}

const EXP: [u8; 256] = TABLES.0;
const LOG: [u8; 256] = TABLES.1;

/// The prototype's multiplication (not the field's: see the module header).
pub fn prototype_mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    EXP[(LOG[a as usize] as usize + LOG[b as usize] as usize) % 256]
}

/// The coefficient of data shard `data` in parity shard `parity` (both
/// 0-based): `gf_exp[data·(parity+1)]`, the table repeating every 255.
pub fn coefficient(data: usize, parity: usize) -> u8 {
    EXP[(data * (parity + 1)) % 255]
}

/// `prototype_mul(x, c)` for every byte x.
fn mul_row(c: u8) -> [u8; 256] {
    let mut row = [0u8; 256];
    for (x, out) in row.iter_mut().enumerate() {
        *out = prototype_mul(x as u8, c);
    }
    row
}

/// Bytes per shard for an object of `size` bytes cut into `k` data shards:
/// the object zero-padded to a multiple of k, divided by k.
pub fn shard_size(size: u64, k: usize) -> u64 {
    size.div_ceil(k as u64)
}

/// The prototype's shards of `data`: k data shards (zero-padded), then m
/// parity shards.
pub fn encode(data: &[u8], k: usize, m: usize) -> Vec<Vec<u8>> {
    let size = shard_size(data.len() as u64, k) as usize;
    let mut shards: Vec<Vec<u8>> = (0..k)
        .map(|d| {
            let start = (d * size).min(data.len());
            let end = ((d + 1) * size).min(data.len());
            let mut shard = data[start..end].to_vec();
            shard.resize(size, 0);
            shard
        })
        .collect();
    let parity = parity_of(&shards.iter().map(Vec::as_slice).collect::<Vec<_>>(), m);
    shards.extend(parity);
    shards
}

/// The m parity shards of k equally long data shards.
pub fn parity_of(data: &[&[u8]], m: usize) -> Vec<Vec<u8>> {
    let size = data.first().map_or(0, |d| d.len());
    (0..m)
        .map(|i| {
            let rows: Vec<[u8; 256]> = (0..data.len())
                .map(|d| mul_row(coefficient(d, i)))
                .collect();
            (0..size)
                .map(|j| {
                    data.iter()
                        .zip(&rows)
                        .fold(0u8, |acc, (shard, row)| acc ^ row[shard[j] as usize])
                })
                .collect()
        })
        .collect()
}

/// Why a solver cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SolverError {
    /// Fewer parity shards than missing data shards.
    TooFewEquations { missing: usize, parity: usize },
    /// A shard index outside k (data) or m (parity).
    BadIndex(String),
}

impl std::fmt::Display for SolverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SolverError::TooFewEquations { missing, parity } => write!(
                f,
                "{missing} data shard(s) missing but only {parity} parity shard(s) to rebuild them from"
            ),
            SolverError::BadIndex(what) => write!(f, "{what}"),
        }
    }
}

/// Every value of the last one or two unknowns, grouped by the values the
/// first one or two equations take on them (compressed rows: the values of
/// key `t` are `values[offsets[t]..offsets[t + 1]]`).
struct CandidateTable {
    offsets: Vec<u32>,
    /// One unknown: its value; two: first << 8 | second.
    values: Vec<u16>,
}

impl CandidateTable {
    /// For `width` (0, 1 or 2) unknowns whose multiplication rows in
    /// equation r are `rows[r][u]`.
    fn build(rows: &[Vec<[u8; 256]>], width: usize) -> CandidateTable {
        let count = 1usize << (8 * width);
        let key_of = |tuple: usize| -> usize {
            let mut key = 0;
            for row in rows.iter().take(width) {
                let mut t = 0u8;
                for (u, mul) in row.iter().enumerate() {
                    let x = (tuple >> (8 * (width - 1 - u))) & 0xff;
                    t ^= mul[x];
                }
                key = (key << 8) | t as usize;
            }
            key
        };
        let mut offsets = vec![0u32; count + 1];
        for tuple in 0..count {
            offsets[key_of(tuple) + 1] += 1;
        }
        for i in 0..count {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut values = vec![0u16; count];
        for tuple in 0..count {
            let key = key_of(tuple);
            values[fill[key] as usize] = tuple as u16;
            fill[key] += 1;
        }
        CandidateTable { offsets, values }
    }

    fn candidates(&self, key: usize) -> &[u16] {
        &self.values[self.offsets[key] as usize..self.offsets[key + 1] as usize]
    }
}

/// Finds the bytes of missing data shards from the other data shards and
/// some parity shards, one byte position at a time.
pub struct Solver {
    /// Data shard indices to find, in order (a candidate lists them so).
    missing: Vec<usize>,
    /// Data shard indices given.
    known: Vec<usize>,
    /// `known_rows[r][n]`: multiplication by the coefficient of `known[n]`
    /// in equation r.
    known_rows: Vec<Vec<[u8; 256]>>,
    /// `missing_rows[r][u]`: the same for `missing[u]`.
    missing_rows: Vec<Vec<[u8; 256]>>,
    /// The last `width` unknowns under the first `width` equations.
    table: CandidateTable,
    width: usize,
}

impl Solver {
    /// A solver for code (k, m) finding data shards `missing` from the
    /// other data shards and parity shards `parity` (0-based parity
    /// numbers, i.e. shard index − k), which become equations in that order.
    pub fn new(
        k: usize,
        m: usize,
        missing: &[usize],
        parity: &[usize],
    ) -> Result<Solver, SolverError> {
        if let Some(d) = missing.iter().find(|&&d| d >= k) {
            return Err(SolverError::BadIndex(format!(
                "data shard {d} does not exist with k={k}"
            )));
        }
        if let Some(i) = parity.iter().find(|&&i| i >= m) {
            return Err(SolverError::BadIndex(format!(
                "parity shard {i} does not exist with m={m}"
            )));
        }
        if parity.len() < missing.len() {
            return Err(SolverError::TooFewEquations {
                missing: missing.len(),
                parity: parity.len(),
            });
        }
        let known: Vec<usize> = (0..k).filter(|d| !missing.contains(d)).collect();
        let rows_for = |indices: &[usize]| -> Vec<Vec<[u8; 256]>> {
            parity
                .iter()
                .map(|&i| {
                    indices
                        .iter()
                        .map(|&d| mul_row(coefficient(d, i)))
                        .collect()
                })
                .collect()
        };
        let known_rows = rows_for(&known);
        let missing_rows = rows_for(missing);
        let width = missing.len().min(2);
        let first = missing.len() - width;
        let table_rows: Vec<Vec<[u8; 256]>> = missing_rows
            .iter()
            .take(width)
            .map(|row| row[first..].to_vec())
            .collect();
        Ok(Solver {
            missing: missing.to_vec(),
            known,
            known_rows,
            missing_rows,
            table: CandidateTable::build(&table_rows, width),
            width,
        })
    }

    /// Candidate unknowns tried per byte position (enumerated beyond the
    /// table), to weigh the work of a solve before running it.
    pub fn enumerated_per_byte(&self) -> u64 {
        1u64.checked_shl(8 * (self.missing.len() - self.width) as u32)
            .unwrap_or(u64::MAX)
    }

    /// Every combination of bytes at position `j` of the missing data shards
    /// that agrees with the given shards there. `data[d]` is data shard d
    /// (None for the missing ones), `parity[r]` the parity shard of equation
    /// r. Candidates are appended to `out`, `missing().len()` bytes each;
    /// returns how many there are (with no missing data shard: 1 when the
    /// shards agree, 0 when they do not).
    pub fn solve(
        &self,
        j: usize,
        data: &[Option<&[u8]>],
        parity: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> usize {
        let mut targets: Vec<u8> = parity
            .iter()
            .zip(&self.known_rows)
            .map(|(shard, rows)| {
                self.known
                    .iter()
                    .zip(rows)
                    .fold(shard[j], |acc, (&d, row)| {
                        acc ^ row[data[d].expect("known data shard given")[j] as usize]
                    })
            })
            .collect();
        let mut prefix = Vec::with_capacity(self.missing.len());
        self.enumerate(&mut targets, &mut prefix, out)
    }

    /// Enumerate the unknowns before the table's, then look the rest up.
    fn enumerate(&self, targets: &mut [u8], prefix: &mut Vec<u8>, out: &mut Vec<u8>) -> usize {
        let first = self.missing.len() - self.width;
        let u = prefix.len();
        let mut found = 0;
        if u < first {
            for x in 0..=255u8 {
                for (t, rows) in targets.iter_mut().zip(&self.missing_rows) {
                    *t ^= rows[u][x as usize];
                }
                prefix.push(x);
                found += self.enumerate(targets, prefix, out);
                prefix.pop();
                for (t, rows) in targets.iter_mut().zip(&self.missing_rows) {
                    *t ^= rows[u][x as usize];
                }
            }
            return found;
        }
        let key = targets[..self.width]
            .iter()
            .fold(0usize, |key, &t| (key << 8) | t as usize);
        for &packed in self.table.candidates(key) {
            let tail: [u8; 2] = match self.width {
                2 => [(packed >> 8) as u8, packed as u8],
                _ => [packed as u8, 0],
            };
            let tail = &tail[..self.width];
            let agrees = targets[self.width..]
                .iter()
                .zip(&self.missing_rows[self.width..])
                .all(|(&t, rows)| {
                    tail.iter()
                        .enumerate()
                        .fold(0u8, |acc, (n, &x)| acc ^ rows[first + n][x as usize])
                        == t
                });
            if agrees {
                out.extend_from_slice(prefix);
                out.extend_from_slice(tail);
                found += 1;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::rebuild::Subsets;

    struct Vector {
        k: usize,
        m: usize,
        data: Vec<u8>,
        sha256: String,
        shards: Vec<Vec<u8>>,
    }

    fn vectors() -> Vec<Vector> {
        let text = include_str!("../../tests/data/prototype-ec-vectors.json");
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        let hex = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
        let vectors: Vec<Vector> = parsed
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Vector {
                k: v["k"].as_u64().unwrap() as usize,
                m: v["m"].as_u64().unwrap() as usize,
                data: hex(&v["data_hex"]),
                sha256: v["sha256"].as_str().unwrap().to_string(),
                shards: v["shards_hex"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(hex)
                    .collect(),
            })
            .collect();
        assert_eq!(vectors.len(), 21, "every vector of the prototype is here");
        vectors
    }

    #[test]
    fn the_tables_are_the_prototypes() {
        assert_eq!(EXP[0], 1);
        assert_eq!(EXP[1], 2);
        assert_eq!(EXP[8], 0x1d, "x^8 reduces by 0x11d");
        assert_eq!(EXP[255], 1);
        assert_eq!(LOG[1], 255, "log of 1 stored as 255");
        assert_eq!(LOG[2], 1);
    }

    #[test]
    fn encoding_matches_every_prototype_vector() {
        for v in vectors() {
            assert_eq!(
                encode(&v.data, v.k, v.m),
                v.shards,
                "k={} m={} {} bytes",
                v.k,
                v.m,
                v.data.len()
            );
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&v.data));
            assert_eq!(digest, v.sha256);
        }
    }

    #[test]
    fn the_prototypes_multiplication_is_not_the_fields() {
        // What the vectors show: multiplying by 1 halves (log 1 = 255,
        // indices wrap at 256), and two bytes share a product.
        assert_eq!(prototype_mul(0xa5, 1), 0xdc);
        assert_eq!(prototype_mul(1, 2), prototype_mul(0x8e, 2));
        // Where the log sum stays below 256 it is the field's product.
        assert_eq!(prototype_mul(2, 2), 4);
    }

    /// Every byte's candidates include the true byte; SHA-256 picks it.
    fn rebuild_from(v: &Vector, lost: &[usize]) -> Vec<u8> {
        let (k, m) = (v.k, v.m);
        let missing: Vec<usize> = lost.iter().copied().filter(|&s| s < k).collect();
        let parity: Vec<usize> = (0..m).filter(|i| !lost.contains(&(k + i))).collect();
        let solver = Solver::new(k, m, &missing, &parity).unwrap();
        let data: Vec<Option<&[u8]>> = (0..k)
            .map(|d| (!missing.contains(&d)).then(|| v.shards[d].as_slice()))
            .collect();
        let parity_shards: Vec<&[u8]> =
            parity.iter().map(|&i| v.shards[k + i].as_slice()).collect();
        let size = v.shards[0].len();
        let mut choices: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut out = Vec::new();
        for j in 0..size {
            out.clear();
            let count = solver.solve(j, &data, &parity_shards, &mut out);
            let candidates: Vec<Vec<u8>> = match missing.len() {
                0 => vec![Vec::new(); count],
                n => out.chunks(n).map(<[u8]>::to_vec).collect(),
            };
            assert_eq!(candidates.len(), count);
            let truth: Vec<u8> = missing.iter().map(|&d| v.shards[d][j]).collect();
            assert!(
                candidates.contains(&truth),
                "k={k} m={m} lost {lost:?} byte {j}: the true bytes are a candidate"
            );
            choices.push(candidates);
        }
        // Try the combinations (few ambiguous positions in these vectors).
        let ambiguous: Vec<usize> = (0..size).filter(|&j| choices[j].len() > 1).collect();
        assert!(ambiguous.len() <= 12, "search stays small");
        let mut pick = vec![0usize; size];
        loop {
            let mut shards: Vec<Vec<u8>> = (0..k)
                .map(|d| data[d].map(<[u8]>::to_vec).unwrap_or_else(|| vec![0; size]))
                .collect();
            for j in 0..size {
                for (u, &d) in missing.iter().enumerate() {
                    shards[d][j] = choices[j][pick[j]][u];
                }
            }
            let mut object: Vec<u8> = shards.concat();
            object.truncate(v.data.len());
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&object));
            if digest == v.sha256 {
                return object;
            }
            // Next combination of the ambiguous positions.
            let mut advanced = false;
            for &j in &ambiguous {
                pick[j] += 1;
                if pick[j] < choices[j].len() {
                    advanced = true;
                    break;
                }
                pick[j] = 0;
            }
            assert!(
                advanced,
                "k={k} m={m} lost {lost:?}: no combination matches the SHA-256"
            );
        }
    }

    #[test]
    fn every_pattern_of_up_to_m_lost_shards_is_rebuilt_from_every_vector() {
        let mut patterns = 0;
        for v in vectors() {
            for lost_count in 0..=v.m {
                let shards: Vec<usize> = (0..v.k + v.m).collect();
                for lost in Subsets::new(&shards, lost_count) {
                    assert_eq!(
                        rebuild_from(&v, &lost),
                        v.data,
                        "k={} m={} lost {lost:?}",
                        v.k,
                        v.m
                    );
                    patterns += 1;
                }
            }
        }
        assert_eq!(patterns, 7 * (1 + 3) + 7 * (1 + 5 + 10) + 7 * (1 + 6 + 15));
    }

    #[test]
    fn a_corrupt_parity_byte_leaves_no_candidate_where_it_contradicts() {
        let v = vectors()
            .into_iter()
            .find(|v| v.k == 3 && v.m == 2 && v.data.len() == 1000)
            .unwrap();
        // Data shard 0 lost, both parity shards given, parity 1 damaged at byte 7.
        let mut damaged = v.shards[4].clone();
        damaged[7] ^= 0x5a;
        let solver = Solver::new(3, 2, &[0], &[0, 1]).unwrap();
        let data = [
            None,
            Some(v.shards[1].as_slice()),
            Some(v.shards[2].as_slice()),
        ];
        let mut out = Vec::new();
        let found = solver.solve(7, &data, &[&v.shards[3], &damaged], &mut out);
        assert_eq!(found, 0, "the two parity bytes contradict each other");
        out.clear();
        let found = solver.solve(8, &data, &[&v.shards[3], &damaged], &mut out);
        assert_eq!(found, 1);
        assert_eq!(out, [v.shards[0][8]]);
        // With no data missing, the parity bytes are only checked.
        let check = Solver::new(3, 2, &[], &[0, 1]).unwrap();
        let all = [Some(v.shards[0].as_slice()), data[1], data[2]];
        out.clear();
        assert_eq!(
            check.solve(7, &all, &[&v.shards[3], &v.shards[4]], &mut out),
            1
        );
        assert_eq!(check.solve(7, &all, &[&v.shards[3], &damaged], &mut out), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn three_unknowns_are_solved_by_enumeration() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8).collect();
        let shards = encode(&data, 4, 3);
        let solver = Solver::new(4, 3, &[0, 2, 3], &[0, 1, 2]).unwrap();
        assert_eq!(solver.enumerated_per_byte(), 256);
        let given = [None, Some(shards[1].as_slice()), None, None];
        let parity = [shards[4].as_slice(), &shards[5], &shards[6]];
        let mut out = Vec::new();
        let truths = shards[0].iter().zip(&shards[2]).zip(&shards[3]);
        for (j, ((&a, &b), &c)) in truths.enumerate() {
            out.clear();
            solver.solve(j, &given, &parity, &mut out);
            assert!(out.chunks(3).any(|found| found == [a, b, c]), "byte {j}");
        }
    }

    #[test]
    fn too_few_parity_shards_is_an_error() {
        assert_eq!(
            Solver::new(3, 2, &[0, 1], &[1]).err(),
            Some(SolverError::TooFewEquations {
                missing: 2,
                parity: 1
            })
        );
        assert!(Solver::new(2, 1, &[2], &[0]).is_err());
        assert!(Solver::new(2, 1, &[0], &[1]).is_err());
    }
}
