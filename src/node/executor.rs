//! Per-node I/O executors: every operation on a node runs on that node's own
//! small pool of threads, so a system call that never returns (a hung NFS or
//! FUSE mount, a dying disk) blocks one of those threads and nothing else.
//! The caller waits for the answer only until the operation's deadline
//! (`recovery.node_timeout_ms` times a per-operation multiple, `NodeOp`).
//!
//! The pool is bounded both ways: at most `THREADS_PER_NODE` threads (started
//! on demand) and `QUEUE_PER_NODE` waiting operations. Once an operation has
//! overstayed its deadline and is still running, the node is "stuck": new
//! operations are refused at once instead of queueing behind it, so a hung
//! node costs one deadline, not one per caller, and never grows threads or
//! memory without bound. The stuck thread stays where the kernel holds it;
//! nobody ever joins these threads, so they cannot delay the daemon's exit.
//!
//! The executor also keeps a cheap estimate of the node's read latency
//! (smoothed mean and deviation, as TCP does for round trips) from which the
//! read path derives when to ask one more shard (a hedged read).
//! Each task sees the node through a counting wrapper, so the bytes stored
//! on every node are counted here once, whatever the backend.
//! It knows nothing of shards or chunks: it runs closures.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::written::{CountingNode, WriteCounters, WrittenBytes};
use super::NodeBackend;

/// Threads one node may use at most.
pub const THREADS_PER_NODE: usize = 8;
/// Operations that may wait for a thread of one node.
pub const QUEUE_PER_NODE: usize = 32;
/// A hedged read never waits less than this for the first answer.
pub const HEDGE_FLOOR: Duration = Duration::from_millis(5);

/// What an operation does, which sets its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOp {
    /// Open a shard and read part of it (one open, two reads).
    Read,
    /// Store a shard: write, fdatasync, rename, fsync of the folder.
    Write,
    Delete,
    /// List every shard file (stats each one): background work only.
    List,
    /// Identity, writability and capacity check.
    Probe,
    /// Capacity of the filesystem under the node (statvfs).
    Capacity,
    /// Create the identity file and the 256 shard folders.
    Initialize,
    /// Store, read, list or remove a metadata snapshot copy (a whole
    /// database file): background work only.
    Snapshot,
    /// Append records to a metadata journal segment (fdatasync): in the
    /// path of durable operations, like a shard write.
    Journal,
}

impl NodeOp {
    /// The deadline in multiples of `recovery.node_timeout_ms`. A read is
    /// one unit. A write waits for two syncs to stable storage, which a busy
    /// but healthy disk may take a while to finish: two units. A listing stats
    /// every shard file and initializing creates 256 folders with syncs; both
    /// run only in the background (start-up sweep, recovery), where waiting
    /// long costs nobody, so they get fifteen: the bound exists only so a
    /// hung node cannot pin a worker for ever.
    pub fn timeout_units(self) -> u32 {
        match self {
            NodeOp::Read | NodeOp::Delete | NodeOp::Probe | NodeOp::Capacity => 1,
            NodeOp::Write | NodeOp::Journal => 2,
            NodeOp::List | NodeOp::Initialize | NodeOp::Snapshot => 15,
        }
    }

    /// For messages: "timed out after 2000 ms reading a shard".
    pub fn doing(self) -> &'static str {
        match self {
            NodeOp::Read => "reading a shard",
            NodeOp::Write => "writing a shard",
            NodeOp::Delete => "deleting a shard",
            NodeOp::List => "listing shards",
            NodeOp::Probe => "probing the node",
            NodeOp::Capacity => "measuring free space",
            NodeOp::Initialize => "initializing the node folder",
            NodeOp::Snapshot => "copying a metadata snapshot",
            NodeOp::Journal => "appending to the metadata journal",
        }
    }
}

/// Why an operation got no answer from its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeLate {
    /// No answer within the deadline.
    TimedOut { op: NodeOp, after: Duration },
    /// Refused at once: earlier operations are still stuck past their deadline.
    Stuck { count: usize, oldest: Duration },
    /// Refused at once: every thread is busy and the queue is full (the
    /// operation fails; the node is not counted failed for it).
    Busy { waiting: usize },
}

impl fmt::Display for NodeLate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeLate::TimedOut { op, after } => {
                write!(f, "timed out after {} ms {}", after.as_millis(), op.doing())
            }
            NodeLate::Stuck { count, oldest } => write!(
                f,
                "timed out: {count} operation(s) still stuck, the oldest for {:.1} s",
                oldest.as_secs_f64()
            ),
            NodeLate::Busy { waiting } => write!(
                f,
                "too busy: all {THREADS_PER_NODE} I/O threads busy and {waiting} operations waiting"
            ),
        }
    }
}

/// Counters of one executor, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Operations finished (whatever their result).
    pub completed: u64,
    /// Operations whose caller stopped waiting at the deadline.
    pub timed_out: u64,
    /// Operations refused because the node was stuck or saturated.
    pub refused: u64,
    /// Smoothed read latency, microseconds (0 before the first read).
    pub read_latency_us: u64,
    /// Bytes stored on the node through this executor, by kind.
    pub written: WrittenBytes,
    /// The node's small-shard segments, when it keeps them.
    pub segments: Option<super::SegmentFigures>,
}

type Task = Box<dyn FnOnce(&dyn NodeBackend) + Send>;

struct Job {
    op: NodeOp,
    submitted: Instant,
    due: Instant,
    task: Task,
}

/// What one worker thread is doing: nanoseconds since the executor's epoch
/// when its operation started and when it is due (0: idle).
#[derive(Default)]
struct Slot {
    started: AtomicU64,
    due: AtomicU64,
}

struct Shared {
    node: Arc<dyn NodeBackend>,
    epoch: Instant,
    slots: Vec<Slot>,
    /// Operations submitted and not yet finished or dropped.
    active: AtomicUsize,
    completed: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    /// Smoothed read latency and its mean deviation, microseconds.
    srtt_us: AtomicU64,
    rttvar_us: AtomicU64,
    /// What tasks stored on the node (every task sees it counted).
    written: WriteCounters,
}

impl Shared {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }

    fn record_read(&self, took: Duration) {
        let sample = took.as_micros() as u64;
        let srtt = self.srtt_us.load(Ordering::Relaxed);
        if srtt == 0 {
            self.srtt_us.store(sample.max(1), Ordering::Relaxed);
            self.rttvar_us.store(sample / 2, Ordering::Relaxed);
            return;
        }
        let var = self.rttvar_us.load(Ordering::Relaxed);
        let dev = srtt.abs_diff(sample);
        self.rttvar_us.store((3 * var + dev) / 4, Ordering::Relaxed);
        self.srtt_us
            .store(((7 * srtt + sample) / 8).max(1), Ordering::Relaxed);
    }

    fn work(self: Arc<Self>, index: usize, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            // The caller already gave up on an operation that waited out its
            // deadline in the queue: never start it late.
            if Instant::now() < job.due {
                let slot = &self.slots[index];
                slot.due.store(self.nanos(job.due), Ordering::Relaxed);
                slot.started
                    .store(self.nanos(Instant::now()), Ordering::Relaxed);
                let node = self.node.clone();
                let counted = CountingNode {
                    node: &*node,
                    counters: &self.written,
                };
                let task = job.task;
                if catch_unwind(AssertUnwindSafe(|| task(&counted))).is_err() {
                    log::error!("an I/O operation on node {} panicked", self.node.id());
                }
                slot.started.store(0, Ordering::Relaxed);
                slot.due.store(0, Ordering::Relaxed);
                self.completed.fetch_add(1, Ordering::Relaxed);
                if job.op == NodeOp::Read {
                    self.record_read(job.submitted.elapsed());
                }
            }
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One node's I/O threads and queue.
pub struct NodeExecutor {
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    receiver: Receiver<Job>,
    spawned: AtomicUsize,
}

impl NodeExecutor {
    pub fn new(node: Arc<dyn NodeBackend>) -> NodeExecutor {
        let (jobs, receiver) = bounded(QUEUE_PER_NODE);
        NodeExecutor {
            shared: Arc::new(Shared {
                node,
                epoch: Instant::now(),
                slots: (0..THREADS_PER_NODE).map(|_| Slot::default()).collect(),
                active: AtomicUsize::new(0),
                completed: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                srtt_us: AtomicU64::new(0),
                rttvar_us: AtomicU64::new(0),
                written: WriteCounters::default(),
            }),
            jobs,
            receiver,
            spawned: AtomicUsize::new(0),
        }
    }

    pub fn node(&self) -> &Arc<dyn NodeBackend> {
        &self.shared.node
    }

    /// Operations running past their deadline: how many, and the longest
    /// one has been running.
    pub fn stuck(&self) -> Option<(usize, Duration)> {
        let now = self.shared.nanos(Instant::now());
        let mut count = 0;
        let mut oldest = 0;
        for slot in &self.shared.slots {
            let due = slot.due.load(Ordering::Relaxed);
            let started = slot.started.load(Ordering::Relaxed);
            if due != 0 && started != 0 && now > due {
                count += 1;
                oldest = oldest.max(now - started);
            }
        }
        (count > 0).then(|| (count, Duration::from_nanos(oldest)))
    }

    /// Queue `task` with `deadline`; returns when it is due. Refused at once
    /// when the node is stuck or every thread and queue place is taken.
    pub fn submit(
        &self,
        op: NodeOp,
        deadline: Duration,
        task: impl FnOnce(&dyn NodeBackend) + Send + 'static,
    ) -> Result<Instant, NodeLate> {
        if let Some((count, oldest)) = self.stuck() {
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            return Err(NodeLate::Stuck { count, oldest });
        }
        let submitted = Instant::now();
        let due = submitted + deadline;
        let active = self.shared.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.spawn_if_needed(active);
        let job = Job {
            op,
            submitted,
            due,
            task: Box::new(task),
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(due),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.active.fetch_sub(1, Ordering::SeqCst);
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                Err(NodeLate::Busy {
                    waiting: self.jobs.len(),
                })
            }
        }
    }

    /// Run `task` on the node and wait for its answer until the deadline.
    pub fn call<T: Send + 'static>(
        &self,
        op: NodeOp,
        deadline: Duration,
        task: impl FnOnce(&dyn NodeBackend) -> T + Send + 'static,
    ) -> Result<T, NodeLate> {
        let (tx, rx) = bounded(1);
        let due = self.submit(op, deadline, move |node| {
            let _ = tx.send(task(node));
        })?;
        rx.recv_deadline(due).map_err(|_| {
            self.note_timeout();
            NodeLate::TimedOut {
                op,
                after: deadline,
            }
        })
    }

    /// A caller stopped waiting for an operation at its deadline.
    pub fn note_timeout(&self) {
        self.shared.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    /// How long a read may take before one more shard is asked for: the
    /// smoothed latency plus four deviations, at least `HEDGE_FLOOR`, at
    /// most half of `deadline`.
    pub fn hedge_delay(&self, deadline: Duration) -> Duration {
        let srtt = self.shared.srtt_us.load(Ordering::Relaxed);
        let var = self.shared.rttvar_us.load(Ordering::Relaxed);
        Duration::from_micros(srtt + 4 * var)
            .max(HEDGE_FLOOR)
            .min(deadline / 2)
    }

    pub fn stats(&self) -> ExecutorStats {
        ExecutorStats {
            completed: self.shared.completed.load(Ordering::Relaxed),
            timed_out: self.shared.timed_out.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            read_latency_us: self.shared.srtt_us.load(Ordering::Relaxed),
            written: self.shared.written.snapshot(),
            segments: self.shared.node.segment_figures(),
        }
    }

    /// One more thread while operations outnumber threads, up to the limit.
    fn spawn_if_needed(&self, active: usize) {
        let mut spawned = self.spawned.load(Ordering::SeqCst);
        while active > spawned && spawned < THREADS_PER_NODE {
            match self.spawned.compare_exchange(
                spawned,
                spawned + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    let shared = self.shared.clone();
                    let jobs = self.receiver.clone();
                    let name = format!("node-io-{spawned}");
                    let started = std::thread::Builder::new()
                        .name(name)
                        .spawn(move || shared.work(spawned, jobs));
                    if let Err(e) = started {
                        log::error!("cannot start an I/O thread: {e}");
                        self.spawned.fetch_sub(1, Ordering::SeqCst);
                    }
                    return;
                }
                Err(now) => spawned = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::MemoryNode;

    fn hung_executor() -> (Arc<MemoryNode>, NodeExecutor) {
        let node = Arc::new(MemoryNode::new("node-1", "r1"));
        let exec = NodeExecutor::new(node.clone());
        node.set_hung(true);
        (node, exec)
    }

    #[test]
    fn a_call_answers_within_its_deadline_and_a_hung_call_times_out() {
        let (node, exec) = hung_executor();
        node.set_hung(false);
        let short = Duration::from_millis(100);
        assert_eq!(
            exec.call(NodeOp::List, short, |n| n.list_shards().is_ok()),
            Ok(true)
        );
        node.set_hung(true);
        let started = Instant::now();
        let late = exec.call(NodeOp::List, short, |n| n.list_shards().is_ok());
        assert_eq!(
            late,
            Err(NodeLate::TimedOut {
                op: NodeOp::List,
                after: short
            })
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(late
            .unwrap_err()
            .to_string()
            .starts_with("timed out after 100 ms"));
        node.set_hung(false);
    }

    #[test]
    fn a_stuck_node_refuses_new_operations_at_once() {
        let (node, exec) = hung_executor();
        let short = Duration::from_millis(50);
        // Fill every thread, then the queue, with calls that hang.
        let hang = |n: &dyn NodeBackend| {
            let _ = n.list_shards();
        };
        for _ in 0..THREADS_PER_NODE {
            exec.submit(NodeOp::Read, Duration::from_secs(600), hang)
                .unwrap();
        }
        let running = || {
            let slots = &exec.shared.slots;
            slots
                .iter()
                .filter(|s| s.started.load(Ordering::Relaxed) != 0)
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while running() < THREADS_PER_NODE {
            assert!(Instant::now() < deadline, "threads never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..QUEUE_PER_NODE {
            exec.submit(NodeOp::Read, Duration::from_secs(600), hang)
                .unwrap();
        }
        let started = Instant::now();
        assert!(matches!(
            exec.submit(NodeOp::Read, short, |_| {}),
            Err(NodeLate::Busy { .. })
        ));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "saturated must fail fast"
        );
        node.set_hung(false);
        // Drained: the node answers again.
        let deadline = Instant::now() + Duration::from_secs(30);
        while exec.call(NodeOp::Read, short, |_| 7).is_err() {
            assert!(Instant::now() < deadline, "node never answered again");
            std::thread::sleep(Duration::from_millis(10));
        }

        // One call past its deadline: the next is refused without waiting.
        node.set_hung(true);
        assert!(exec
            .call(NodeOp::Read, short, |n| n.list_shards().is_ok())
            .is_err());
        let started = Instant::now();
        let refused = exec.call(NodeOp::Read, Duration::from_secs(600), |_| 1);
        assert!(
            matches!(refused, Err(NodeLate::Stuck { count: 1, .. })),
            "{refused:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(refused.unwrap_err().to_string().starts_with("timed out"));
        let stats = exec.stats();
        assert!(stats.refused >= 2 && stats.timed_out >= 1, "{stats:?}");
        // Released: once the stuck call returns, the node is used again.
        node.set_hung(false);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match exec.call(NodeOp::Read, Duration::from_secs(30), |_| 2) {
                Ok(answer) => break assert_eq!(answer, 2),
                Err(NodeLate::Stuck { .. }) => {
                    assert!(Instant::now() < deadline, "stuck call never returned");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(exec.stuck().is_none());
    }

    #[test]
    fn threads_are_bounded() {
        let (node, exec) = hung_executor();
        for _ in 0..THREADS_PER_NODE + QUEUE_PER_NODE {
            let _ = exec.submit(NodeOp::Read, Duration::from_secs(600), |n| {
                let _ = n.list_shards();
            });
        }
        assert_eq!(exec.spawned.load(Ordering::SeqCst), THREADS_PER_NODE);
        node.set_hung(false);
    }

    #[test]
    fn hedge_delay_follows_read_latency_between_floor_and_half_the_deadline() {
        let node = Arc::new(MemoryNode::new("node-1", "r1"));
        let exec = NodeExecutor::new(node);
        let deadline = Duration::from_millis(2000);
        assert_eq!(exec.hedge_delay(deadline), HEDGE_FLOOR);
        for _ in 0..20 {
            exec.shared.record_read(Duration::from_millis(40));
        }
        let d = exec.hedge_delay(deadline);
        assert!(
            d >= Duration::from_millis(40) && d < Duration::from_millis(100),
            "{d:?}"
        );
        exec.shared.record_read(Duration::from_secs(100));
        assert_eq!(exec.hedge_delay(deadline), deadline / 2);
    }
}
