//! Every message of the protocol, as one enum per direction of each kind of connection.
//!
//! Scheduler <-> worker: [`ToWorker`], [`FromWorker`]. Scheduler <-> client: [`ToClient`],
//! [`FromClient`]. Worker <-> worker or client fetching results: [`ToPeer`], [`FromPeer`].

use super::frame::MAX_FRAME_LEN;
use super::ids::{AttemptId, ClientId, RequestId, TaskId, WorkerId};
use super::task::{TaskDesc, TaskSpec};
use serde::{Deserialize, Deserializer, Serialize};
use std::cell::Cell;
use std::fmt;

/// Where an input of a task can be fetched from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepLocation {
    pub id: TaskId,
    /// The input's key, for messages and for `{dep:KEY}` placeholders.
    pub key: String,
    /// Size of the result, so the worker can plan its fetches.
    pub nbytes: u64,
    /// Peer addresses of the workers that hold it.
    pub holders: Vec<String>,
}

/// A task a worker is asked to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeTask {
    pub id: TaskId,
    /// Which assignment of the task this is: the worker's answers name it.
    pub attempt: AttemptId,
    pub key: String,
    pub spec: TaskSpec,
    /// Inputs in the order the task takes them.
    pub deps: Vec<DepLocation>,
    /// Higher starts first among the worker's queued tasks.
    pub priority: i32,
}

/// Scheduler to worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// The answer to `Register`.
    Registered {
        worker: WorkerId,
        heartbeat_ms: u64,
    },
    Compute(Box<ComputeTask>),
    /// Drop these results; nobody needs them any more.
    ReleaseData {
        tasks: Vec<TaskId>,
    },
    /// Stop running or forget these tasks; the scheduler no longer wants them here.
    Cancel {
        tasks: Vec<TaskId>,
    },
    /// Give back these tasks if they have not started; answer with `Stolen`.
    Steal {
        tasks: Vec<TaskId>,
    },
    /// Fetch the result `task` from the peer at `from` and keep a copy; answer `Replicated`.
    Replicate {
        task: TaskId,
        from: String,
    },
    /// Keep these bytes as the result of `task` (scattered by a client); answer `DataStored`.
    PutData {
        task: TaskId,
        key: String,
        data: Vec<u8>,
    },
    /// The scheduler is going away; exit.
    Shutdown {
        reason: String,
    },
}

/// Worker to scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The first message on a worker connection.
    Register(WorkerInfo),
    Started {
        task: TaskId,
        attempt: AttemptId,
    },
    Finished {
        task: TaskId,
        attempt: AttemptId,
        nbytes: u64,
        /// Inputs this worker fetched for the task, and so now also holds.
        fetched: Vec<TaskId>,
        /// How many scheduler messages of this session the worker had read: a `ReleaseData`
        /// sent after those crossed this report, and the copies it drops are not held.
        seen: u64,
    },
    Failed {
        task: TaskId,
        attempt: AttemptId,
        error: TaskError,
    },
    /// An input of `task` could not be had from `holder`, a peer address (empty: from
    /// nobody, or from this worker's own store, which lost it); the worker dropped `task`.
    FetchFailed {
        task: TaskId,
        attempt: AttemptId,
        dep: TaskId,
        holder: String,
        failure: FetchFailure,
    },
    /// The tasks of a `Steal` that were given back (the others had started).
    Stolen {
        tasks: Vec<(TaskId, AttemptId)>,
    },
    DataStored {
        task: TaskId,
        nbytes: u64,
    },
    Heartbeat {
        memory: u64,
    },
    /// The worker is stopping on purpose (asked to, or retiring): its running tasks are not
    /// suspicious. It closes the connection right after.
    Leaving {
        reason: String,
    },
    /// The worker wants to retire (its lifetime is up, or it drains on a signal): it takes
    /// no new task, gives back what it has not started, finishes what runs, and its results
    /// are copied to other workers; then the scheduler tells it to shut down.
    Retire {
        reason: String,
    },
    /// A `Replicate` ended: the copy is stored (`Some(nbytes)`) or could not be fetched.
    Replicated {
        task: TaskId,
        nbytes: Option<u64>,
        /// As in `Finished`: how many scheduler messages the worker had read.
        seen: u64,
    },
}

/// Nanny to scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromNanny {
    /// The first message on a nanny connection: who supervises which workers.
    Register {
        name: String,
        host: String,
        pid: u32,
        workers: Vec<String>,
    },
    /// A supervised worker died (crash, signal, killed for memory): treat it as lost now,
    /// without waiting for its connection to time out.
    WorkerDied { worker: String, reason: String },
}

/// Scheduler to nanny.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToNanny {
    Registered,
    /// Stop every supervised worker gracefully and start it again.
    Restart,
}

/// What a worker says about itself when it registers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    /// Where peers and clients fetch results from this worker.
    pub peer_address: String,
    pub nthreads: u32,
    pub resources: Vec<(String, f64)>,
    pub memory_limit: u64,
    pub pid: u32,
    pub host: String,
}

/// Client to scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromClient {
    /// New tasks (known keys are not run twice). The client is told when each of `wanted`
    /// finishes or errs, and the scheduler keeps those results until released. With the
    /// `SubmitPart`s sent before it, one submission: checked, stored and answered whole.
    Submit {
        tasks: Vec<TaskDesc>,
        wanted: Vec<String>,
    },
    /// Part of a submission too big for one frame ([`FromClient::split_submission`]): held by
    /// the scheduler, unchecked, until the `Submit` that ends it.
    SubmitPart {
        tasks: Vec<TaskDesc>,
        wanted: Vec<String>,
    },
    /// The client no longer needs these results.
    Release {
        keys: Vec<String>,
    },
    /// Stop these tasks; they err as cancelled.
    Cancel {
        keys: Vec<String>,
    },
    WhoHas {
        req: RequestId,
        keys: Vec<String>,
    },
    Info {
        req: RequestId,
    },
    /// Store these bytes on workers as results under these keys.
    Scatter {
        req: RequestId,
        items: Vec<(String, Vec<u8>)>,
    },
    /// Restart every nanny-supervised worker; every task and result is dropped. Answered
    /// with `Restarted` once the same workers are back.
    Restart {
        req: RequestId,
    },
    /// Keep `replicas` copies of these results on different workers while they are needed
    /// (as the `replicas` task option does).
    Replicate {
        keys: Vec<String>,
        replicas: u32,
    },
}

/// Where a result is, for a client that gathers it straight from the workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyLocation {
    pub key: String,
    pub id: TaskId,
    pub nbytes: u64,
    pub holders: Vec<String>,
    /// Set when the key is not in memory: why.
    pub problem: Option<LocationProblem>,
}

/// Why a key's result cannot be fetched now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum LocationProblem {
    #[error("unknown key")]
    Unknown,
    #[error("{0}")]
    Erred(TaskError),
    /// Not finished (yet, or again after its result was lost), in this state.
    #[error("not finished ({0})")]
    NotFinished(String),
}

/// Scheduler to client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToClient {
    Welcome {
        client: ClientId,
    },
    KeyFinished {
        key: String,
        nbytes: u64,
    },
    /// A finished key's result was lost with its worker; it is being computed again and a
    /// new `KeyFinished` (or `KeyErred`) follows.
    KeyLost {
        key: String,
    },
    KeyErred {
        key: String,
        error: TaskError,
    },
    WhoHas {
        req: RequestId,
        locations: Vec<KeyLocation>,
    },
    Info {
        req: RequestId,
        info: ClusterInfo,
    },
    Scattered {
        req: RequestId,
        result: Result<(), String>,
    },
    /// The answer to `Restart`: how many workers are back, or why not.
    Restarted {
        req: RequestId,
        result: Result<u64, String>,
    },
    /// Something the client should know while it waits (no worker is connected, say); the
    /// client shows it to its user.
    Notice {
        message: String,
    },
    /// Tasks this client waits for (or that what it waits for needs) ask for what no
    /// connected worker has: each key with why, at most a few, and how many more there are.
    /// Told once per task; a worker that can run them joining is a `Notice`.
    Unrunnable {
        tasks: Vec<(String, String)>,
        more: u64,
    },
    Shutdown {
        reason: String,
    },
    /// The scheduler closes this connection because of what the client sent (a frame over
    /// the limit, say); the connection ends right after.
    Closing {
        reason: String,
    },
}

/// A snapshot of the cluster, for `distd info` and `Client::info`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub scheduler_version: String,
    pub workers: Vec<WorkerSummary>,
    /// Number of tasks in each state, by state name.
    pub tasks: Vec<(String, u64)>,
    /// Clients connected, other than the one that asked.
    pub clients: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerSummary {
    pub id: WorkerId,
    pub name: String,
    pub address: String,
    pub host: String,
    pub pid: u32,
    pub nthreads: u32,
    pub resources: Vec<(String, f64)>,
    pub memory: u64,
    pub memory_limit: u64,
    /// Tasks assigned (running or queued).
    pub processing: u64,
    /// Results held and their total size.
    pub stored: u64,
    pub stored_bytes: u64,
}

/// A request to a worker's peer port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToPeer {
    /// Send these results, each as a `Data` or `Missing` reply, in this order.
    Fetch { tasks: Vec<TaskId> },
}

/// A reply from a worker's peer port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromPeer {
    /// `len` raw bytes follow this frame.
    Data {
        task: TaskId,
        len: u64,
    },
    Missing {
        task: TaskId,
    },
}

/// Why a worker could not have an input of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FetchFailure {
    /// The scheduler listed no holder and the input is not computing on this worker.
    #[error("no worker holds it")]
    NoHolder,
    /// The holder answered that it does not hold the result.
    #[error("the holder does not hold it")]
    NotHeld,
    /// The transfer failed: the holder is gone, stalled, or unreachable.
    #[error("{0}")]
    Transfer(String),
}

/// Why a task did not produce a result. A value, carried in events and shown to users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum TaskError {
    #[error("command exited with status {status}{}", tail(stderr))]
    Exit { status: i32, stderr: String },
    #[error("command killed by signal {signal}{}", tail(stderr))]
    Signal { signal: i32, stderr: String },
    #[error("command timed out after {after_ms} ms{}", tail(stderr))]
    Timeout { after_ms: u64, stderr: String },
    #[error("cannot start command {program:?}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("function {name:?} failed: {message}")]
    Function { name: String, message: String },
    #[error("no function {name:?} in this worker's registry")]
    UnknownFunction { name: String },
    #[error("input {key:?} failed: {error}")]
    Dependency {
        key: String,
        #[serde(deserialize_with = "nested_error")]
        error: Box<TaskError>,
    },
    #[error("killed worker: the task was running on {} that died ({})", crate::units::plural(workers.len() as u64, "worker"), workers.join(", "))]
    KilledWorker { workers: Vec<String> },
    #[error("cancelled")]
    Cancelled,
    #[error("lost: {0}")]
    Lost(String),
    #[error("scattered data lost with worker {worker}")]
    LostData { worker: String },
    #[error("rejected: {reason}")]
    Rejected { reason: String },
    #[error("{0}")]
    Other(String),
}

/// The deepest [`TaskError::Dependency`] errors may nest in a decoded message. The scheduler
/// nests one level (an input's own error, never another `Dependency`); a frame of thousands
/// would overflow the decoding thread's stack, which aborts the whole process.
const MAX_ERROR_NESTING: u32 = 16;

thread_local! {
    /// How many `Dependency` errors the decoder on this thread is inside of now.
    static ERROR_NESTING: Cell<u32> = const { Cell::new(0) };
}

/// Decodes the error inside a `Dependency`, refusing nesting past [`MAX_ERROR_NESTING`].
fn nested_error<'de, D: Deserializer<'de>>(d: D) -> Result<Box<TaskError>, D::Error> {
    /// Puts the depth back however the decoding below ends.
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            ERROR_NESTING.set(self.0);
        }
    }
    let depth = ERROR_NESTING.get();
    if depth >= MAX_ERROR_NESTING {
        return Err(serde::de::Error::custom(format_args!(
            "task errors nested more than {MAX_ERROR_NESTING} deep"
        )));
    }
    ERROR_NESTING.set(depth + 1);
    let _restore = Restore(depth);
    Box::<TaskError>::deserialize(d)
}

/// The most bytes one part of a split submission takes: well under [`MAX_FRAME_LEN`], so
/// that parts from many clients fit the scheduler's budget for undecoded input at once and
/// each waits little for the core.
pub const SUBMIT_PART_LEN: usize = 4 * 1024 * 1024;

/// What a `Submit` or `SubmitPart` frame takes beyond its tasks and keys: the tag and two
/// lengths, each a varint of at most 5 bytes.
const SUBMIT_OVERHEAD: usize = 16;

/// Why a submission cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum SubmitTooLarge {
    #[error(
        "task {} is {len} bytes encoded, more than the limit of {max} bytes for one message \
         ({MAX_FRAME_LEN}-byte frames)",
        shorten(key)
    )]
    Task { key: String, len: usize, max: usize },
    #[error(
        "wanted key {} is {len} bytes, more than the limit of {max} bytes for one message",
        shorten(key)
    )]
    Key { key: String, len: usize, max: usize },
    #[error("task could not be encoded: {0}")]
    Encode(#[source] postcard::Error),
}

/// A key for a message: quoted, and cut after 80 characters.
fn shorten(key: &str) -> String {
    match key.char_indices().nth(80) {
        None => format!("{key:?}"),
        Some((at, _)) => format!("{:?}... ({} bytes)", &key[..at], key.len()),
    }
}

impl FromClient {
    /// One submission as messages that each fit a frame: a `Submit` alone when it is small,
    /// else `SubmitPart`s of at most [`SUBMIT_PART_LEN`] bytes (more for a task bigger than
    /// that, alone in its part) then a `Submit`, in the order given. The scheduler takes them
    /// together, so the order of tasks across parts does not matter. A task (or wanted key)
    /// that alone cannot fit a frame is refused, naming it and the limit.
    pub fn split_submission(
        mut tasks: Vec<TaskDesc>,
        mut wanted: Vec<String>,
    ) -> Result<Vec<FromClient>, SubmitTooLarge> {
        let max = MAX_FRAME_LEN - SUBMIT_OVERHEAD;
        let room = SUBMIT_PART_LEN - SUBMIT_OVERHEAD;
        // Where each part after the first starts, counting the tasks then the wanted keys as
        // one sequence (a part may hold both).
        let mut starts = Vec::new();
        let mut part = 0;
        let mut add = |at: usize, len: usize| {
            if part > 0 && part + len > room {
                starts.push(at);
                part = 0;
            }
            part += len;
        };
        for (i, t) in tasks.iter().enumerate() {
            let len = postcard::experimental::serialized_size(t).map_err(SubmitTooLarge::Encode)?;
            if len > max {
                let key = t.key.clone();
                return Err(SubmitTooLarge::Task { key, len, max });
            }
            add(i, len);
        }
        for (i, k) in wanted.iter().enumerate() {
            let len = postcard::experimental::serialized_size(k).map_err(SubmitTooLarge::Encode)?;
            if len > max {
                return Err(SubmitTooLarge::Key {
                    key: k.clone(),
                    len,
                    max,
                });
            }
            add(tasks.len() + i, len);
        }
        // Parts are cut off the end, each list shrunk after each cut: a big submission is
        // never held twice over (the allocator takes back the cut-off tail of a large list).
        let n = tasks.len();
        let mut parts = Vec::with_capacity(starts.len() + 1);
        for &start in std::iter::once(&0).chain(&starts).rev() {
            let keys = cut_tail(&mut wanted, start.saturating_sub(n));
            let part_tasks = if start < n {
                cut_tail(&mut tasks, start)
            } else {
                Vec::new()
            };
            parts.push((part_tasks, keys));
        }
        // Pushed last part first: the last, index 0, is the `Submit` that ends the submission.
        Ok(parts
            .into_iter()
            .enumerate()
            .rev()
            .map(|(i, (tasks, wanted))| match i {
                0 => FromClient::Submit { tasks, wanted },
                _ => FromClient::SubmitPart { tasks, wanted },
            })
            .collect())
    }
}

/// `v[at..]`, taken off `v`, whose spare room goes back to the allocator.
fn cut_tail<T>(v: &mut Vec<T>, at: usize) -> Vec<T> {
    if at == 0 {
        return std::mem::take(v);
    }
    let tail = v.split_off(at);
    v.shrink_to_fit();
    tail
}

fn tail(stderr: &str) -> String {
    let s = stderr.trim_end();
    if s.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", s.replace('\n', " | "))
    }
}

impl fmt::Display for DepLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) at {}", self.key, self.id, self.holders.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(i: usize, arg_len: usize) -> TaskDesc {
        TaskDesc::function(format!("t{i}"), "noop", vec![7; arg_len]).with_deps((i > 0).then(|| format!("t{}", i - 1)))
    }

    /// The parts' tasks and keys in order, checking that each part fits its room.
    fn joined(parts: Vec<FromClient>) -> (Vec<TaskDesc>, Vec<String>) {
        let (mut tasks, mut wanted) = (Vec::new(), Vec::new());
        let last = parts.len() - 1;
        for (i, p) in parts.into_iter().enumerate() {
            let len = postcard::experimental::serialized_size(&p).unwrap();
            match p {
                FromClient::SubmitPart { tasks: t, wanted: w } if i < last => {
                    assert!(len <= SUBMIT_PART_LEN, "part {i} is {len} bytes");
                    tasks.extend(t);
                    wanted.extend(w);
                }
                FromClient::Submit { tasks: t, wanted: w } if i == last => {
                    assert!(len <= SUBMIT_PART_LEN, "the last part is {len} bytes");
                    tasks.extend(t);
                    wanted.extend(w);
                }
                other => panic!("part {i} of {} is {other:?}", last + 1),
            }
        }
        (tasks, wanted)
    }

    /// Task errors nested thousands deep in one frame overflowed the decoding thread's stack
    /// and aborted the process (found through the fuzz entry points): past the limit they are
    /// refused, and the depth count is whole again for the next message.
    #[test]
    fn task_errors_nested_too_deep_are_refused_not_a_stack_overflow() {
        let nest = |n: u32| {
            (0..n).fold(TaskError::Cancelled, |error, i| TaskError::Dependency {
                key: format!("k{i}"),
                error: Box::new(error),
            })
        };
        let deepest = postcard::to_stdvec(&nest(MAX_ERROR_NESTING)).unwrap();
        assert_eq!(
            postcard::from_bytes::<TaskError>(&deepest).unwrap(),
            nest(MAX_ERROR_NESTING)
        );
        let over = postcard::to_stdvec(&nest(MAX_ERROR_NESTING + 1)).unwrap();
        assert!(postcard::from_bytes::<TaskError>(&over).is_err());
        // 100,000 levels, written by hand: a value that deep could not even be dropped.
        let level = postcard::to_stdvec(&nest(1)).unwrap();
        let (tag, innermost) = (level[0], postcard::to_stdvec(&TaskError::Cancelled).unwrap());
        let mut attack = [tag, 0].repeat(100_000);
        attack.extend_from_slice(&innermost);
        assert!(postcard::from_bytes::<TaskError>(&attack).is_err());
        assert_eq!(
            postcard::from_bytes::<TaskError>(&deepest).unwrap(),
            nest(MAX_ERROR_NESTING)
        );
    }

    #[test]
    fn a_small_submission_is_one_message() {
        let tasks: Vec<TaskDesc> = (0..3).map(|i| task(i, 10)).collect();
        let parts = FromClient::split_submission(tasks.clone(), vec!["t2".into()]).unwrap();
        assert_eq!(
            parts,
            [FromClient::Submit {
                tasks,
                wanted: vec!["t2".into()]
            }]
        );
    }

    #[test]
    fn a_big_submission_is_cut_into_parts_that_fit_in_order() {
        // 12 MiB of tasks and about 2.5 MiB of wanted keys.
        let tasks: Vec<TaskDesc> = (0..120).map(|i| task(i, 100 * 1024)).collect();
        let wanted: Vec<String> = (0..100_000).map(|i| format!("wanted-key-{i:012}")).collect();
        let parts = FromClient::split_submission(tasks.clone(), wanted.clone()).unwrap();
        assert!(parts.len() >= 4, "{} parts", parts.len());
        assert_eq!(joined(parts), (tasks, wanted));
    }

    #[test]
    fn a_task_bigger_than_a_part_goes_alone() {
        let tasks = vec![task(0, 10), task(1, SUBMIT_PART_LEN + 10), task(2, 10)];
        let parts = FromClient::split_submission(tasks.clone(), vec![]).unwrap();
        assert_eq!(parts.len(), 3);
        let mut got = Vec::new();
        for p in parts {
            match p {
                FromClient::SubmitPart { tasks, .. } | FromClient::Submit { tasks, .. } => got.extend(tasks),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, tasks);
    }

    #[test]
    fn a_task_that_cannot_fit_a_frame_is_named_with_the_limit() {
        let tasks = vec![task(0, 10), task(1, MAX_FRAME_LEN)];
        let err = FromClient::split_submission(tasks, vec![]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("task \"t1\""), "{text}");
        assert!(
            text.contains(&format!("limit of {} bytes", MAX_FRAME_LEN - SUBMIT_OVERHEAD)),
            "{text}"
        );
    }
}
