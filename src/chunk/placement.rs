//! Shard placement: which node holds which shard of a chunk. Pure functions,
//! no I/O. The rule: the k+m shards go to distinct nodes, spread across regions
//! as evenly as the healthy nodes allow (at most ⌈(k+m)/regions⌉ per region
//! when every region has enough nodes), with the starting point rotated per
//! chunk so load spreads over all nodes.

/// One candidate node: its region (as an index) and whether it can take writes.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub region: usize,
    pub usable: bool,
}

/// Choose nodes for `count` shards. Returns, per shard index, the node index or
/// `None` when too few usable nodes exist. `seed` rotates the start.
pub fn place(nodes: &[Candidate], count: usize, seed: u64) -> Vec<Option<usize>> {
    order(nodes, seed, &[])
        .into_iter()
        .map(Some)
        .chain(std::iter::repeat(None))
        .take(count)
        .collect()
}

/// Usable nodes in placement preference order, interleaving regions, skipping
/// `exclude`. Regions that already hold shards in `exclude` come last in each
/// round, so a repair keeps the spread even.
pub fn order(nodes: &[Candidate], seed: u64, exclude: &[usize]) -> Vec<usize> {
    let region_count = nodes.iter().map(|n| n.region + 1).max().unwrap_or(0);
    let mut by_region: Vec<Vec<usize>> = vec![Vec::new(); region_count];
    for (i, n) in nodes.iter().enumerate() {
        if n.usable && !exclude.contains(&i) {
            by_region[n.region].push(i);
        }
    }
    let mut region_load = vec![0usize; region_count];
    for &e in exclude {
        if let Some(n) = nodes.get(e) {
            region_load[n.region] += 1;
        }
    }
    // Rotate nodes within each region and the region order by the seed.
    for list in by_region.iter_mut() {
        if !list.is_empty() {
            let r = (seed as usize / region_count.max(1)) % list.len();
            list.rotate_left(r);
        }
    }
    let mut regions: Vec<usize> = (0..region_count).collect();
    if region_count > 0 {
        regions.rotate_left(seed as usize % region_count);
    }
    let mut out = Vec::new();
    let mut cursor = vec![0usize; region_count];
    loop {
        // Each round: the least-loaded regions first (stable on rotation order).
        let mut round: Vec<usize> = regions
            .iter()
            .copied()
            .filter(|&r| cursor[r] < by_region[r].len())
            .collect();
        if round.is_empty() {
            break;
        }
        round.sort_by_key(|&r| region_load[r]);
        let lowest = region_load[round[0]];
        let chosen: Vec<usize> = round
            .into_iter()
            .filter(|&r| region_load[r] == lowest)
            .collect();
        for r in chosen {
            out.push(by_region[r][cursor[r]]);
            cursor[r] += 1;
            region_load[r] += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn property_distinct_nodes_and_even_regions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..3000 {
            let regions = rng.gen_range(1..=5);
            let per_region = rng.gen_range(1..=4);
            let nodes: Vec<Candidate> = (0..regions * per_region)
                .map(|i| Candidate {
                    region: i % regions,
                    usable: true,
                })
                .collect();
            let total = nodes.len();
            let k = rng.gen_range(1..=total);
            let m = rng.gen_range(0..=total - k);
            let seed: u64 = rng.gen();
            let placed = place(&nodes, k + m, seed);
            let chosen: Vec<usize> = placed.iter().map(|p| p.expect("enough nodes")).collect();
            let mut uniq = chosen.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), k + m, "distinct nodes");
            let cap = (k + m).div_ceil(regions);
            for r in 0..regions {
                let n = chosen.iter().filter(|&&i| nodes[i].region == r).count();
                assert!(n <= cap, "region {r} holds {n} > {cap}");
            }
        }
    }

    #[test]
    fn unusable_nodes_are_skipped_and_shortfall_is_none() {
        let nodes = vec![
            Candidate {
                region: 0,
                usable: true,
            },
            Candidate {
                region: 1,
                usable: false,
            },
            Candidate {
                region: 2,
                usable: true,
            },
        ];
        let placed = place(&nodes, 3, 0);
        assert_eq!(placed.iter().filter(|p| p.is_none()).count(), 1);
        assert!(!placed.contains(&Some(1)));
    }

    #[test]
    fn uneven_regions_still_use_every_region() {
        // Two nodes in region 0, one in 1, one in 2; 3 shards: one per region.
        let nodes = vec![
            Candidate {
                region: 0,
                usable: true,
            },
            Candidate {
                region: 0,
                usable: true,
            },
            Candidate {
                region: 1,
                usable: true,
            },
            Candidate {
                region: 2,
                usable: true,
            },
        ];
        for seed in 0..20 {
            let placed = place(&nodes, 3, seed);
            let mut regions: Vec<usize> = placed.iter().map(|p| nodes[p.unwrap()].region).collect();
            regions.sort();
            assert_eq!(regions, vec![0, 1, 2]);
        }
    }

    #[test]
    fn start_node_rotates_with_seed() {
        let nodes: Vec<Candidate> = (0..6)
            .map(|i| Candidate {
                region: i % 3,
                usable: true,
            })
            .collect();
        let firsts: std::collections::BTreeSet<usize> =
            (0..24).map(|s| place(&nodes, 1, s)[0].unwrap()).collect();
        assert_eq!(firsts.len(), 6, "every node gets to be first");
    }
}
