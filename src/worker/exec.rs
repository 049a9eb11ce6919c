//! Runs one task: a function from the registry on the function threads, or a command as a child
//! process in its own process group (and its own cgroup where the machine allows), with its
//! inputs handed over as files or stdin, and its output read as it comes (`capture`): stdout
//! in memory or, when large, in a file the store takes over; stderr's tail for the error, or
//! both streams and the ending as a transcript when the task asks for one (`distd submit`).
//!
//! A command's task ends when the command exits: whatever it left running (background jobs,
//! `setsid`, double forks) is killed then, and so is everything when the future of a running
//! command is dropped (the task was cancelled or stolen, or the worker stops), so a task
//! never leaves its processes behind. With a cgroup every process the command started is
//! found; without one, those that stayed in its process group (see ARCHITECTURE.md, "No
//! orphans").

use super::capture::{self, Captured, STDERR_TAIL};
use super::registry::Registry;
use super::store::ResultFile;
use crate::protocol::{
    transcript_tail, ArgsForm, CommandOutput, CommandSpec, Data, Ending, TaskError, TaskId, TaskSpec, TRANSCRIPT_STDERR,
};
use crate::sys::cgroup::{TaskGroup, TaskGroups};
use futures_lite::AsyncWriteExt;
use std::collections::BinaryHeap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What every execution on one worker shares.
#[derive(Clone, Debug)]
pub struct ExecContext {
    pub registry: Arc<Registry>,
    /// Where input files of command tasks are written, one folder per task, and large
    /// stdouts (on the file system of the store's spill folder, so the store takes them over
    /// with a rename).
    pub local_dir: PathBuf,
    /// A command's stdout up to this many bytes is its result in memory; a larger one is
    /// written to a file as it comes ([`capture::stdout_in_memory_at_most`]).
    pub stdout_in_memory_at_most: u64,
    /// The worker's task cgroups, where the machine allows them.
    pub groups: Option<Arc<TaskGroups>>,
}

/// An input of a task: its key and its bytes.
pub type Input = (String, Data);

/// A task's result as its execution made it.
#[derive(Debug)]
pub enum Output {
    Memory(Data),
    /// Too large to hold: already a file, which the store takes over ([`super::store::Store::put_file`]).
    File(ResultFile),
}

/// Runs `spec` to completion and returns its result.
pub async fn execute(
    ctx: &ExecContext,
    task: TaskId,
    key: &str,
    spec: TaskSpec,
    inputs: Vec<Input>,
) -> Result<Output, TaskError> {
    match spec {
        TaskSpec::Function { name, args, args_form } => {
            let registry = ctx.registry.clone();
            blocking::unblock(move || call_function(&registry, &name, &args, args_form, inputs))
                .await
                .map(|bytes| Output::Memory(Arc::new(bytes)))
        }
        TaskSpec::Command(cmd) => {
            let dir = ctx.local_dir.join(format!("task-{}", task.0));
            // A fresh name each time: an abandoned execution's file deletes itself, and must
            // not take a newer execution's with it.
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let stdout = Stdout {
                in_memory_at_most: ctx.stdout_in_memory_at_most,
                spill_path: ctx.local_dir.join(format!(
                    "stdout-{}-{}.part",
                    task.0,
                    NEXT.fetch_add(1, Ordering::Relaxed)
                )),
            };
            let result = run_command(cmd, key, &inputs, &dir, ctx.groups.as_ref(), stdout).await;
            let _ = std::fs::remove_dir_all(&dir);
            result.map(|captured| match captured {
                Captured::Memory(bytes) => Output::Memory(Arc::new(bytes)),
                Captured::File(file) => Output::File(file),
            })
        }
    }
}

/// Where a command's stdout goes: memory up to a size, then the file at `spill_path`.
struct Stdout {
    in_memory_at_most: u64,
    spill_path: PathBuf,
}

/// Runs a registry function on this thread, a panic becoming the task's error.
pub fn call_function(
    registry: &Registry,
    name: &str,
    args: &[u8],
    args_form: ArgsForm,
    inputs: Vec<Input>,
) -> Result<Vec<u8>, TaskError> {
    let Some(f) = registry.get(name) else {
        return Err(TaskError::UnknownFunction { name: name.to_string() });
    };
    let datas: Vec<Data> = inputs.into_iter().map(|(_, d)| d).collect();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.call(args, args_form, &datas)))
        .map_err(|p| panic_message(&p))
        .and_then(|r| r)
        .map_err(|message| TaskError::Function {
            name: name.to_string(),
            message,
        })
}

/// A job for the function threads.
pub type Job = Box<dyn FnOnce() + Send>;

/// Who owns a queued function task: still queued, claimed by the thread that runs it, or
/// retracted (stolen, cancelled) before any thread took it. Exactly one of claim and retract
/// wins, so a retracted task never runs and a claimed one is never given away.
#[derive(Debug, Default)]
pub struct Claim(AtomicU8);

const QUEUED: u8 = 0;
const CLAIMED: u8 = 1;
const RETRACTED: u8 = 2;

impl Claim {
    fn claim(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Takes the task back if no thread has claimed it yet.
    pub fn retract(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, RETRACTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// A queued job, ordered by priority, then first come first served.
struct Queued {
    priority: i32,
    seq: u64,
    claim: Arc<Claim>,
    job: Job,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.priority, std::cmp::Reverse(self.seq)).cmp(&(other.priority, std::cmp::Reverse(other.seq)))
    }
}

#[derive(Default)]
struct PoolState {
    queue: BinaryHeap<Queued>,
    next_seq: u64,
    /// Threads waiting for work: a push wakes one only when one waits, so a burst of jobs to
    /// busy threads costs no system call.
    idle: usize,
    /// Set when the pool is dropped: threads end after their current job.
    closed: bool,
    /// The worker paused for memory: queued jobs wait, the running ones go on.
    held: bool,
}

#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

/// The worker's `nthreads` threads for function tasks. Jobs wait in one priority queue that
/// the threads take from, so a thread with queued work runs it without waiting for the
/// worker's loop, and a queued job can be retracted until a thread claims it.
pub struct FunctionThreads {
    pool: Arc<Pool>,
    /// What [`FunctionThreads::hold`] last set, so an unchanged call takes no lock.
    held: std::sync::atomic::AtomicBool,
}

impl FunctionThreads {
    pub fn new(n: usize) -> FunctionThreads {
        let pool = Arc::new(Pool::default());
        for i in 0..n.max(1) {
            let pool = pool.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("distd-fn-{i}"))
                .spawn(move || {
                    while let Some(job) = pool.next_job() {
                        job();
                    }
                });
            if let Err(e) = spawned {
                log::warn!("cannot start function thread {i}: {e}");
            }
        }
        FunctionThreads {
            pool,
            held: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Queues a job at `priority`; its claim lets the caller take it back before it starts.
    pub fn submit(&self, priority: i32, job: Job) -> Arc<Claim> {
        let claim = Arc::new(Claim::default());
        let mut st = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queue.push(Queued {
            priority,
            seq,
            claim: claim.clone(),
            job,
        });
        let wake = st.idle > 0;
        drop(st);
        if wake {
            self.pool.work.notify_one();
        }
        claim
    }
}

impl Pool {
    /// The next job this thread claims, or None once the pool is closed.
    fn next_job(&self) -> Option<Job> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut idle_since: Option<std::time::Instant> = None;
        loop {
            if st.closed {
                return None;
            }
            while let Some(q) = (!st.held).then(|| st.queue.pop()).flatten() {
                if q.claim.claim() {
                    return Some(q.job);
                }
            }
            // Look again for a moment before sleeping: the next task of a chain or a stream
            // usually comes within microseconds, and waking a sleeping thread costs more.
            // Bounded by the spin budget from the last job, so an idle thread sleeps.
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() < crate::rt::spin_budget() {
                drop(st);
                std::thread::yield_now();
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
    }
}

impl FunctionThreads {
    /// Holds (or lets go) the jobs queued ahead of a free slot: while the worker is paused
    /// for memory, no queued function starts, so results queued ahead of the pause do not
    /// run memory past the kill threshold. What runs goes on; a steal still takes them back.
    pub fn hold(&self, held: bool) {
        if self.held.swap(held, std::sync::atomic::Ordering::Relaxed) == held {
            return;
        }
        let mut st = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        st.held = held;
        drop(st);
        if !held {
            self.pool.work.notify_all();
        }
    }
}

impl Drop for FunctionThreads {
    fn drop(&mut self) {
        let mut st = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        st.closed = true;
        st.queue.clear();
        drop(st);
        self.pool.work.notify_all();
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// What a command leaves behind: its process group and, when it has one, its cgroup (which
/// also holds what left the group). Killed when asked or when dropped.
struct Leftovers {
    pgid: Option<i32>,
    group: Option<(TaskGroup, Arc<TaskGroups>)>,
}

impl Leftovers {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: killpg has no memory-safety preconditions. The group's leader is not
            // reaped before this runs, so the id names no newer group.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        if let Some((group, groups)) = self.group.take() {
            groups.put_back(group);
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        self.kill();
    }
}

fn substitute(arg: &str, paths: &[(String, PathBuf)]) -> Vec<String> {
    if arg == "{deps}" {
        return paths.iter().map(|(_, p)| p.display().to_string()).collect();
    }
    let mut out = arg.to_string();
    if out.contains("{dep:") {
        for (key, path) in paths {
            out = out.replace(&format!("{{dep:{key}}}"), &path.display().to_string());
        }
    }
    vec![out]
}

/// A command ready to start: its arguments and environment with its inputs' paths in place,
/// and the inputs that go to its stdin, in order.
struct Prepared {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Vec<Data>,
}

/// Writes the inputs to files in `dir` and puts their paths into the arguments and the
/// environment. An error says why the command cannot start.
fn prepare(cmd: &CommandSpec, key: &str, inputs: &[Input], dir: &Path) -> Result<Prepared, String> {
    let mut paths = Vec::with_capacity(inputs.len());
    if !inputs.is_empty() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (i, (k, data)) in inputs.iter().enumerate() {
            let path = dir.join(format!("input-{i}"));
            std::fs::write(&path, data.as_slice())
                .map_err(|e| format!("cannot write input {k:?} to {}: {e}", path.display()))?;
            paths.push((k.clone(), path));
        }
    }
    let stdin = cmd
        .stdin
        .iter()
        .map(|k| match inputs.iter().find(|(key, _)| key == k) {
            Some((_, d)) => Ok(d.clone()),
            None => Err(format!("stdin names {k:?}, which is not an input of this task")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let argv: Vec<String> = cmd.argv.iter().flat_map(|a| substitute(a, &paths)).collect();
    let mut env = vec![
        ("DISTD_TASK_KEY".to_string(), key.to_string()),
        ("DISTD_NDEPS".to_string(), paths.len().to_string()),
    ];
    for (i, (_, p)) in paths.iter().enumerate() {
        env.push((format!("DISTD_DEP_{i}"), p.display().to_string()));
    }
    env.extend(cmd.env.iter().cloned());
    Ok(Prepared { argv, env, stdin })
}

/// Starts the command in a cgroup of its own when there are task cgroups; what it leaves
/// behind is killed when the returned [`Leftovers`] go. An error says why it did not start.
fn start(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    piped_stdin: bool,
    groups: Option<&Arc<TaskGroups>>,
) -> Result<(super::spawn::Spawned, Leftovers), String> {
    let group = match groups {
        Some(groups) => Some((
            groups
                .take()
                .map_err(|e| format!("cannot make its cgroup in {}: {e}", groups.dir().display()))?,
            groups.clone(),
        )),
        None => None,
    };
    let mut leftovers = Leftovers { pgid: None, group };
    let cgroup = leftovers.group.as_ref().map(|(g, _)| g.procs_fd());
    let child = super::spawn::spawn(argv, env, cwd, piped_stdin, cgroup).map_err(|e| e.to_string())?;
    leftovers.pgid = Some(child.pid);
    Ok((child, leftovers))
}

async fn run_command(
    cmd: CommandSpec,
    key: &str,
    inputs: &[Input],
    dir: &Path,
    groups: Option<&Arc<TaskGroups>>,
    stdout_to: Stdout,
) -> Result<Captured, TaskError> {
    let program = cmd.argv.first().cloned().unwrap_or_default();
    let spawn_error = |reason: String| TaskError::Spawn {
        program: program.clone(),
        reason,
    };
    if program.is_empty() {
        return Err(spawn_error("empty command".into()));
    }
    let Prepared {
        argv,
        env,
        stdin: stdin_data,
    } = prepare(&cmd, key, inputs, dir).map_err(spawn_error)?;
    let (mut child, mut leftovers) = start(
        &argv,
        &env,
        cmd.cwd.as_deref().map(Path::new),
        !stdin_data.is_empty(),
        groups,
    )
    .map_err(spawn_error)?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout is a pipe");
    let mut stderr = child.stderr.take().expect("stderr is a pipe");
    capture::enlarge_pipe(&stdout);
    let feed = async move {
        if let Some(mut pipe) = stdin {
            for data in stdin_data {
                // A command that does not read all of its stdin is not an error.
                if pipe.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = pipe.close().await;
        }
    };
    let stderr_kept = match cmd.output {
        CommandOutput::Stdout => STDERR_TAIL,
        CommandOutput::Transcript => TRANSCRIPT_STDERR,
    };
    let collect = async {
        // Each read owns its pipe and closes it when it ends, even on an error (a full disk):
        // a command still writing then gets EPIPE instead of waiting on a full pipe forever.
        let read_out = async move {
            let Stdout {
                in_memory_at_most,
                spill_path,
            } = stdout_to;
            capture::read_stdout(stdout, in_memory_at_most, || spill_path).await
        };
        let read_err = async move { capture::read_tail(&mut stderr, stderr_kept).await };
        let reads = futures_lite::future::zip(futures_lite::future::zip(read_out, read_err), feed);
        let waited = async {
            let exited = child.exited().await;
            // The task ends with its command: what it left running dies now, and with it the
            // pipes those processes held open, so the reads end too.
            leftovers.kill();
            exited?;
            child.status().await
        };
        let (((out, err), ()), status) = futures_lite::future::zip(reads, waited).await;
        Some((out, err, status))
    };
    let timeout = cmd.timeout_ms.map(Duration::from_millis);
    let outcome = match timeout {
        Some(t) => crate::rt::within(t, collect).await.flatten(),
        None => collect.await,
    };
    let Some((out, err, status)) = outcome else {
        leftovers.kill();
        return Err(TaskError::Timeout {
            after_ms: cmd.timeout_ms.unwrap_or_default(),
            stderr: String::new(),
        });
    };
    let io = |e: std::io::Error| spawn_error(format!("while running: {e}"));
    let (out, err, status) = (out.map_err(io)?, err.map_err(io)?, status.map_err(io)?);
    conclude(cmd.output, out, err, status).await.map_err(io)?
}

/// The task's outcome once its command ended: for [`CommandOutput::Stdout`], stdout or the
/// error with stderr's tail; for a transcript, the transcript whatever the ending (its reader
/// decides). An I/O error is one of appending the transcript to a stdout file.
async fn conclude(
    output: CommandOutput,
    out: Captured,
    err: capture::Tail,
    status: std::process::ExitStatus,
) -> std::io::Result<Result<Captured, TaskError>> {
    let ending = match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(signal)) => Ending::Signalled(signal),
        (None, None) => return Ok(Err(TaskError::Other(format!("command ended with {status}")))),
    };
    Ok(match output {
        CommandOutput::Transcript => Ok(capture::append(out, transcript_tail(&err.bytes, err.dropped, ending)).await?),
        CommandOutput::Stdout => match ending.error_with(capture::tail_text(&err.bytes)) {
            None => Ok(out),
            Some(e) => Err(e),
        },
    })
}
