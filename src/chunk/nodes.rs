//! Node health as the chunk store sees it: probing nodes (all at once, each
//! with a deadline), marking a node failed when an operation on it timed
//! out or was refused, (re)initializing a node folder, the nodes'
//! capacity, measured with a deadline and remembered so `statfs` and the
//! reports never wait for a hung node, and when each node was set up and
//! last changed (for the statistics, also with a deadline).

use crossbeam_channel::unbounded;
use std::time::{Duration, Instant, SystemTime};

use super::{ChunkStore, NodeState, NodeTask};
use crate::error::{Error, Result};
use crate::node::{ExecutorStats, NodeLate, NodeOp, NodeProbe, NodeTimes};

/// Size and free space of the filesystem under one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeCapacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Nodes on the same filesystem share these bytes.
    pub filesystem: Option<u64>,
}

/// What one probe found: the verdict and, when it could tell, the capacity.
type ProbeAnswer = (NodeProbe, Option<NodeCapacity>);

impl ChunkStore {
    /// Run a metadata-file task (a snapshot copy) on node `index` through
    /// its executor, with the `NodeOp::Snapshot` deadline. A node that does
    /// not answer in time is marked failed, as for shards.
    pub fn meta_file_call<T: Send + 'static>(
        &self,
        index: usize,
        task: impl FnOnce(&dyn crate::node::NodeBackend) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.call(index, NodeOp::Snapshot, task)
            .map_err(|late| self.late_error(index, &late))?
    }

    /// Append `bytes` at `at` (what was appended before) to the journal
    /// segment `name` on each of `nodes` at once, each with the `NodeOp::Journal` deadline; answers in the order
    /// of `nodes`. A node that does not answer in time is marked failed.
    pub fn journal_append_each(
        &self,
        nodes: &[usize],
        area: &'static str,
        name: &str,
        at: u64,
        bytes: std::sync::Arc<Vec<u8>>,
    ) -> Vec<(usize, Result<()>)> {
        let calls: Vec<(usize, NodeTask<Result<()>>)> = nodes
            .iter()
            .map(|&node| {
                let (name, bytes) = (name.to_string(), bytes.clone());
                let task: NodeTask<Result<()>> =
                    Box::new(move |n| n.append_meta_file(area, &name, at, &bytes).map(|_| ()));
                (node, task)
            })
            .collect();
        self.call_each(NodeOp::Journal, calls)
            .into_iter()
            .map(|(node, answer)| {
                let answer = answer.map_err(|late| self.late_error(node, &late));
                (node, answer.and_then(|r| r))
            })
            .collect()
    }

    /// Every node in the order metadata copies (snapshots, journal
    /// segments) are placed: up nodes first, one per region in turn (the
    /// first node of each region, then the second …), so the first m+1
    /// span as many regions as exist.
    pub fn spread_over_regions(&self) -> Vec<usize> {
        let mut rank_in_region = vec![0usize; self.nodes.len()];
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match seen.iter_mut().find(|(r, _)| r == node.region()) {
                Some((_, count)) => {
                    rank_in_region[i] = *count;
                    *count += 1;
                }
                None => seen.push((node.region().to_string(), 1)),
            }
        }
        let region_of = |i: usize| {
            seen.iter()
                .position(|(r, _)| r == self.nodes[i].region())
                .unwrap_or(0)
        };
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_by_key(|&i| (!self.is_up(i), rank_in_region[i], region_of(i)));
        order
    }

    /// Record a node's state; returns whether it changed.
    fn set_state(&self, index: usize, state: NodeState, reason: String) -> bool {
        let mut status = self.status.write();
        let s = &mut status[index];
        let changed = s.state != state;
        if changed {
            let id = self.nodes[index].id();
            if state == NodeState::Up {
                crate::log_limited!(
                    log::Level::Info,
                    format!("node {id} state"),
                    "node {id} is up again"
                );
                s.since = None;
            } else {
                crate::warn_limited!(
                    format!("node {id} state"),
                    "node {id} is {}: {reason}",
                    state.as_str()
                );
                if s.since.is_none() {
                    s.since = Some(SystemTime::now());
                }
            }
        }
        s.state = state;
        s.reason = reason;
        changed
    }

    /// A node did not answer an operation in time, or has one stuck past
    /// its deadline: it counts as failed until a probe finds it answering
    /// again. A node merely saturated (every thread busy, queue full) fails
    /// only the operation refused: load is no reason to route around it.
    pub(super) fn node_late(&self, index: usize, late: &NodeLate) {
        if matches!(late, NodeLate::Busy { .. }) {
            log::debug!("node {}: {late}", self.nodes[index].id());
            return;
        }
        self.set_state(index, NodeState::Failed, late.to_string());
    }

    /// An I/O error from a node may mean the node is gone: check it now.
    pub(super) fn on_io_error(&self, node: usize, err: &Error) {
        if matches!(err, Error::Io(_) | Error::NoSpace(_)) {
            self.probe_node(node);
        }
    }

    fn probe_task(&self) -> NodeTask<ProbeAnswer> {
        let cluster = self.cluster_id.clone();
        Box::new(move |n| {
            let probe = n.probe(&cluster);
            (probe, measure(n))
        })
    }

    /// Record what a probe found; returns the new state and whether it changed.
    fn record_probe(
        &self,
        index: usize,
        answer: Result<ProbeAnswer, NodeLate>,
    ) -> (NodeState, bool) {
        let (state, reason) = match answer {
            Ok((probe, capacity)) => {
                self.capacity.lock()[index] = capacity;
                match probe {
                    NodeProbe::Healthy => (NodeState::Up, String::new()),
                    NodeProbe::Empty(r) => (NodeState::Empty, r),
                    NodeProbe::Failed(r) => (NodeState::Failed, r),
                    // The daemon could not tell (out of descriptors): what
                    // it was stays true.
                    NodeProbe::Inconclusive(r) => {
                        let id = self.nodes[index].id();
                        crate::warn_limited!("health probe inconclusive", "node {id}: {r}");
                        let s = &self.status.read()[index];
                        (s.state, s.reason.clone())
                    }
                }
            }
            // Too busy to be probed now: what it was stays true.
            Err(NodeLate::Busy { .. }) => {
                let s = &self.status.read()[index];
                (s.state, s.reason.clone())
            }
            Err(late) => (NodeState::Failed, late.to_string()),
        };
        let changed = self.set_state(index, state, reason);
        (state, changed)
    }

    /// Probe one node (with a deadline) and record its state. Returns the
    /// new state and whether it changed.
    pub fn probe_node(&self, index: usize) -> (NodeState, bool) {
        let before = self.status.read()[index].state;
        let answer = self.io[index].call(
            NodeOp::Probe,
            self.deadline(NodeOp::Probe),
            self.probe_task(),
        );
        let (state, _) = self.record_probe(index, answer);
        (state, state != before)
    }

    /// Probe every node at once; at most one probe deadline passes however
    /// many nodes hang. Returns the nodes whose state changed.
    pub fn probe_all(&self) -> Vec<(usize, NodeState)> {
        let before: Vec<NodeState> = self.status.read().iter().map(|s| s.state).collect();
        let calls = (0..self.nodes.len())
            .map(|i| (i, self.probe_task()))
            .collect();
        self.call_each(NodeOp::Probe, calls)
            .into_iter()
            .filter_map(|(i, answer)| {
                let (state, _) = self.record_probe(i, answer);
                (state != before[i]).then_some((i, state))
            })
            .collect()
    }

    /// (Re)create a node's folder and identity, then probe it.
    pub fn initialize_node(&self, index: usize) -> Result<()> {
        let cluster = self.cluster_id.clone();
        self.call(index, NodeOp::Initialize, move |n| n.initialize(&cluster))
            .map_err(|late| self.late_error(index, &late))??;
        self.probe_node(index);
        Ok(())
    }

    /// Every node's capacity: measured now on every node at once, waiting
    /// at most `wait` (and never past the capacity deadline) for the answers;
    /// a node that has not answered by then gives its last known capacity
    /// (None: never known, or the node could not tell) and its answer, if it
    /// comes, is remembered for the next call. Only a caller that waited the
    /// whole deadline marks the nodes that did not answer failed.
    pub fn capacities(&self, wait: Duration) -> Vec<Option<NodeCapacity>> {
        let deadline = self.deadline(NodeOp::Capacity);
        let (tx, rx) = unbounded();
        let mut asked = Vec::new();
        for i in 0..self.nodes.len() {
            let (cache, tx) = (self.capacity.clone(), tx.clone());
            let measured = self.io[i].submit(NodeOp::Capacity, deadline, move |n| {
                cache.lock()[i] = measure(n);
                let _ = tx.send(i);
            });
            match measured {
                Ok(_) => asked.push(i),
                Err(late) => self.node_late(i, &late),
            }
        }
        let until = Instant::now() + wait.min(deadline);
        while !asked.is_empty() {
            match rx.recv_deadline(until) {
                Ok(i) => asked.retain(|&a| a != i),
                Err(_) => break,
            }
        }
        if wait >= deadline {
            let late = NodeLate::TimedOut {
                op: NodeOp::Capacity,
                after: deadline,
            };
            for i in asked {
                self.io[i].note_timeout();
                self.node_late(i, &late);
            }
        }
        self.cached_capacities()
    }

    /// When each node was set up and its shards last changed, asked of
    /// every node at once within the probe deadline (a node that does not
    /// answer in time counts as failed, as for a probe). None for a node
    /// that did not answer or could not tell.
    pub fn node_times(&self) -> Vec<Option<NodeTimes>> {
        let calls = (0..self.nodes.len())
            .map(|i| {
                let task: NodeTask<Option<NodeTimes>> = Box::new(|n| n.times().ok());
                (i, task)
            })
            .collect();
        let mut times = vec![None; self.nodes.len()];
        for (i, answer) in self.call_each(NodeOp::Probe, calls) {
            times[i] = answer.ok().flatten();
        }
        times
    }

    /// The capacity each node reported last (probes refresh it).
    pub fn cached_capacities(&self) -> Vec<Option<NodeCapacity>> {
        self.capacity.lock().clone()
    }

    /// Per node: operations completed, timed out and refused, and latency.
    pub fn executor_stats(&self) -> Vec<ExecutorStats> {
        self.io.iter().map(|e| e.stats()).collect()
    }
}

fn measure(n: &dyn crate::node::NodeBackend) -> Option<NodeCapacity> {
    n.capacity()
        .ok()
        .map(|(total_bytes, free_bytes)| NodeCapacity {
            total_bytes,
            free_bytes,
            filesystem: n.filesystem_id(),
        })
}
