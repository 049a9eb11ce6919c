//! The shared harness of the real-binary tests: runs the `distd` executable the way a user
//! does, in a fresh temporary folder, and makes sure nothing it started outlives the test.
//!
//! Every process gets its own process group (so a kill reaches the commands it started) and
//! writes stdout and stderr to log files in the temporary folder (so nothing blocks on a full
//! pipe, and a failing test can show what each process said). Waits are polls against a
//! deadline, never a bare sleep, so a hang fails the test instead of blocking CI.
//!
//! A [`Sandbox`] owns the processes. When it is dropped it kills every process group still
//! running and reaps it; then the test fails if a process panicked, died of a signal the test
//! did not send (or allow), or a long-running process (scheduler, worker) exited with a
//! non-zero status nobody expected. On any failure the tails of all logs are printed.
//!
//! Workers are started with [`Sandbox::worker`], a builder for the `distd worker` command
//! line, and processes that are not the sandbox's children are found through [`procfs`].
//!
//! Each test file uses part of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod procfs;

use std::fmt::Write as _;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often waits look again.
const POLL: Duration = Duration::from_millis(15);

/// How long processes still running at the end of a test get to stop on SIGTERM.
const CLEANUP_GRACE: Duration = Duration::from_secs(3);

/// How many lines of each log a failure report shows.
const TAIL_LINES: usize = 40;

/// The binary under test.
pub fn distd_exe() -> &'static str {
    env!("CARGO_BIN_EXE_distd")
}

/// A process started by a [`Sandbox`]; an index into its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcId(usize);

/// What a process is expected to do, which decides what counts as a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Runs until stopped (scheduler, worker): exiting non-zero on its own is a crash.
    Daemon,
    /// Runs to completion (run, submit, info): the test checks its exit status itself.
    OneShot,
}

/// One process the sandbox started.
struct Proc {
    /// A label for reports, e.g. "scheduler" or "worker w1".
    name: String,
    /// The command line, for reports.
    args: Vec<String>,
    child: Child,
    kind: Kind,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Its exit status once reaped.
    status: Option<ExitStatus>,
    /// Signals the test sent to it or its group; dying of one of them is not a crash.
    sent: Vec<i32>,
    /// Signals it may die of that come from elsewhere (e.g. a task that kills its worker).
    allowed_signals: Vec<i32>,
    /// A non-zero exit status of a daemon that the test expects.
    allowed_codes: Vec<i32>,
    /// Killed by the sandbox's own cleanup: how it ended says nothing about the product.
    cleaned_up: bool,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reaps the process if it has exited; true when it has.
    fn poll(&mut self) -> bool {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.status = Some(status),
                Ok(None) => {}
                Err(e) => panic!("cannot wait for {}: {e}", self.name),
            }
        }
        self.status.is_some()
    }

    /// Why this process counts as a crash, if it does.
    fn crash(&self) -> Option<String> {
        let stderr = read_lossy(&self.stderr);
        if stderr.contains("panicked") {
            return Some(format!("{} panicked (see its stderr)", self.name));
        }
        let status = self.status?;
        if let Some(sig) = status.signal() {
            if !self.sent.contains(&sig) && !self.allowed_signals.contains(&sig) {
                return Some(format!(
                    "{} died of signal {sig}, which the test did not send",
                    self.name
                ));
            }
        }
        if let Some(code) = status.code() {
            let unexpected =
                self.kind == Kind::Daemon && code != 0 && !self.cleaned_up && !self.allowed_codes.contains(&code);
            if unexpected {
                return Some(format!("{} exited with status {code} on its own", self.name));
            }
        }
        None
    }
}

/// What a finished process did.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The exit code; `None` when it died of a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Fails the test, showing both outputs, unless the process exited 0.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.code(), Some(0), "expected success:\n{}", self.describe());
        self
    }

    /// Fails the test unless the process failed the way a program should: a non-zero exit
    /// status of its own, not a signal and not 101 (the status of a Rust panic).
    pub fn assert_failure(&self) -> &Self {
        match self.code() {
            Some(code) if code != 0 && code != 101 => self,
            _ => panic!("expected a clean failure:\n{}", self.describe()),
        }
    }

    /// Fails the test unless the process exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit status {code}:\n{}",
            self.describe()
        );
        self
    }

    /// The lines of stderr that are errors printed by distd (not log lines).
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("distd: error:")).collect()
    }

    /// The one error line distd printed; fails the test if there is not exactly one.
    pub fn the_error(&self) -> &str {
        let lines = self.error_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one `distd: error:` line:\n{}",
            self.describe()
        );
        lines[0]
    }

    pub fn describe(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A fresh temporary folder and the processes started in it.
pub struct Sandbox {
    dir: tempfile::TempDir,
    procs: Vec<Proc>,
    /// Processes forgotten after a clean finish (polling helpers), for unique log names.
    transient: usize,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let sb = Sandbox {
            dir: tempfile::Builder::new()
                .prefix("distd-test-")
                .tempdir()
                .expect("cannot create a temporary folder"),
            procs: Vec::new(),
            transient: 0,
        };
        // The test's own clients (the Rust `Client`) find the credentials of the clusters
        // it starts, as their owner's clients would in the owner's access folder.
        distd::protocol::security::keyring::look_also_in(sb.path("data/distd/access"));
        sb
    }

    /// The temporary folder; processes run in it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the temporary folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file in the temporary folder and returns its path.
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("cannot create a folder in the sandbox");
        }
        std::fs::write(&path, contents).expect("cannot write a file in the sandbox");
        path
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            // Default scratch folders (~/.cache/distd) land in the sandbox, not in $HOME.
            .env("XDG_CACHE_HOME", self.path("cache"))
            // So do access files (~/.local/share/distd/access): every process of one test
            // finds its cluster's credential there, and no other test's.
            .env("XDG_DATA_HOME", self.path("data"))
            .env_remove("DISTD_ACCESS_FILE")
            .stdin(Stdio::null())
            .process_group(0);
        cmd
    }

    fn launch(&mut self, name: &str, args: &[&str], kind: Kind) -> ProcId {
        self.launch_with(name, distd_exe(), args, kind, None)
    }

    /// Starts `program ARGS`; its stdout goes to `stdout` if given, else to its log file.
    fn launch_with(
        &mut self,
        name: &str,
        program: &str,
        args: &[&str],
        kind: Kind,
        stdout_to: Option<Stdio>,
    ) -> ProcId {
        let index = self.procs.len();
        let stem: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        let stdout = self.path(&format!("logs/{index:02}-{stem}.stdout"));
        let stderr = self.path(&format!("logs/{index:02}-{stem}.stderr"));
        std::fs::create_dir_all(self.path("logs")).expect("cannot create the log folder");
        let open = |p: &Path| std::fs::File::create(p).expect("cannot create a log file");
        let child = self
            .command(program, args)
            .stdout(stdout_to.unwrap_or_else(|| open(&stdout).into()))
            .stderr(open(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} {args:?}: {e}"));
        self.procs.push(Proc {
            name: name.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child,
            kind,
            stdout,
            stderr,
            status: None,
            sent: Vec::new(),
            allowed_signals: Vec::new(),
            allowed_codes: Vec::new(),
            cleaned_up: false,
        });
        ProcId(index)
    }

    /// Starts a long-running process (scheduler, worker): exiting non-zero on its own is a
    /// crash unless allowed with [`Sandbox::allow_exit_code`].
    pub fn spawn_daemon(&mut self, name: &str, args: &[&str]) -> ProcId {
        self.launch(name, args, Kind::Daemon)
    }

    /// Starts a process that runs to completion in the background; collect it with
    /// [`Sandbox::wait_exit`].
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> ProcId {
        self.launch(name, args, Kind::OneShot)
    }

    /// Starts another program (a test fixture such as `sshd`) as a long-running process of
    /// the sandbox: its own group, its logs, killed at the end like the others.
    pub fn spawn_program_daemon(&mut self, name: &str, program: &str, args: &[&str]) -> ProcId {
        self.launch_with(name, program, args, Kind::Daemon, None)
    }

    /// Runs another program (a fixture's helper such as `ssh-keygen`) to completion, within
    /// [`DEADLINE`].
    pub fn run_program(&mut self, name: &str, program: &str, args: &[&str]) -> Outcome {
        let id = self.launch_with(name, program, args, Kind::OneShot, None);
        self.wait_exit(id, DEADLINE)
    }

    /// A `distd worker ADDRESS` command line to complete and start: see [`WorkerBuilder`].
    pub fn worker(&mut self, address: &str) -> WorkerBuilder<'_> {
        WorkerBuilder::new(self, vec![address.to_string()])
    }

    /// A `distd worker --scheduler-file FILE` command line to complete and start.
    pub fn worker_of_file(&mut self, scheduler_file: &Path) -> WorkerBuilder<'_> {
        let file = scheduler_file.to_str().expect("the sandbox path is UTF-8").to_string();
        WorkerBuilder::new(self, vec!["--scheduler-file".to_string(), file])
    }

    /// Waits until the scheduler at `address` lists exactly `n` workers; returns what
    /// `distd info --json` said then.
    pub fn wait_for_workers(&mut self, address: &str, n: usize) -> serde_json::Value {
        self.wait_until(&format!("{n} workers in `distd info`"), DEADLINE, |sb| {
            let info = info(sb, address);
            let count = info["workers"].as_array().map_or(0, Vec::len);
            (count == n).then_some(info)
        })
    }

    /// Runs `distd ARGS` as another user would (or this user on a host without a shared
    /// home): with an access folder of its own, where no cluster left its credential.
    pub fn run_as_stranger(&mut self, name: &str, args: &[&str]) -> Outcome {
        let id = self.spawn_as_stranger(name, args);
        self.wait_exit(id, DEADLINE)
    }

    /// [`Sandbox::run_as_stranger`], in the background.
    pub fn spawn_as_stranger(&mut self, name: &str, args: &[&str]) -> ProcId {
        let home = format!("XDG_DATA_HOME={}", self.path("stranger").display());
        let mut full = vec![home.as_str(), distd_exe()];
        full.extend_from_slice(args);
        self.launch_with(name, "env", &full, Kind::OneShot, None)
    }

    /// Runs `distd ARGS` to completion (within [`DEADLINE`]).
    pub fn run(&mut self, name: &str, args: &[&str]) -> Outcome {
        let id = self.spawn(name, args);
        self.wait_exit(id, DEADLINE)
    }

    /// `distd run GRAPH --scheduler ADDRESS --no-progress` to completion.
    pub fn run_graph(&mut self, name: &str, graph: &std::path::Path, address: &str) -> Outcome {
        let graph = graph.to_str().expect("UTF-8 path");
        self.run(name, &["run", graph, "--scheduler", address, "--no-progress"])
    }

    /// Runs `distd ARGS` to completion with its stdout a pipe nobody reads: the read end is
    /// closed before the process starts, so its first write fails (as under `| head -0`).
    pub fn run_with_closed_stdout(&mut self, name: &str, args: &[&str]) -> Outcome {
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2 failed: {}", std::io::Error::last_os_error());
        // SAFETY: pipe2 just returned these two descriptors; each is owned exactly once.
        let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read_end);
        let id = self.launch_with(name, distd_exe(), args, Kind::OneShot, Some(Stdio::from(write_end)));
        self.wait_exit(id, DEADLINE)
    }

    /// Runs `distd ARGS` to completion and forgets it if it did not crash: for helpers that
    /// poll, so that the table and the reports do not fill with their runs.
    pub fn run_transient(&mut self, name: &str, args: &[&str]) -> Outcome {
        let id = self.spawn(name, args);
        let outcome = self.wait_exit(id, DEADLINE);
        if id.0 + 1 == self.procs.len() && self.procs[id.0].crash().is_none() {
            let p = self.procs.pop().expect("the process was just pushed");
            let _ = std::fs::remove_file(&p.stdout);
            let _ = std::fs::remove_file(&p.stderr);
            self.transient += 1;
        }
        outcome
    }

    pub fn pid(&self, id: ProcId) -> i32 {
        self.procs[id.0].pid()
    }

    pub fn name(&self, id: ProcId) -> &str {
        &self.procs[id.0].name
    }

    pub fn stdout(&self, id: ProcId) -> String {
        read_lossy(&self.procs[id.0].stdout)
    }

    pub fn stderr(&self, id: ProcId) -> String {
        read_lossy(&self.procs[id.0].stderr)
    }

    /// Whether the process is still running (reaping it if it is not).
    pub fn is_running(&mut self, id: ProcId) -> bool {
        !self.procs[id.0].poll()
    }

    /// Sends `signal` to the process itself (not its group).
    pub fn signal(&mut self, id: ProcId, signal: i32) {
        let p = &mut self.procs[id.0];
        p.sent.push(signal);
        if p.poll() {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        let rc = unsafe { libc::kill(p.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", p.pid());
    }

    /// Stops (SIGSTOP) the process's group, e.g. so that it cannot react to something the
    /// test does next until [`Sandbox::resume`].
    pub fn pause(&mut self, id: ProcId) {
        let p = &mut self.procs[id.0];
        assert!(!p.poll(), "{} is not running", p.name);
        // SAFETY: as in `kill_group`: our own unreaped child's group.
        unsafe {
            libc::killpg(p.pid(), libc::SIGSTOP);
        }
    }

    /// Continues (SIGCONT) a group stopped by [`Sandbox::pause`].
    pub fn resume(&mut self, id: ProcId) {
        let p = &mut self.procs[id.0];
        if !p.poll() {
            // SAFETY: as in `kill_group`: our own unreaped child's group.
            unsafe {
                libc::killpg(p.pid(), libc::SIGCONT);
            }
        }
    }

    /// Sends `signal` to the process's whole group, as a terminal's Ctrl-C does.
    pub fn signal_group(&mut self, id: ProcId, signal: i32) {
        let p = &mut self.procs[id.0];
        p.sent.push(signal);
        if p.poll() {
            return;
        }
        // SAFETY: as in `kill_group`: our own unreaped child's group.
        unsafe {
            libc::killpg(p.pid(), signal);
        }
    }

    /// SIGKILLs the process's whole group and reaps the process.
    pub fn kill_group(&mut self, id: ProcId) -> ExitStatus {
        let p = &mut self.procs[id.0];
        p.sent.push(libc::SIGKILL);
        // SAFETY: killpg has no memory-safety preconditions; the group is the one this
        // sandbox created for its unreaped child (or has no members left: ESRCH, ignored).
        unsafe {
            libc::killpg(p.pid(), libc::SIGKILL);
        }
        let status = p.child.wait().expect("cannot reap a killed process");
        p.status = Some(status);
        status
    }

    /// The process may die of `signal` sent by someone other than the test.
    pub fn allow_signal(&mut self, id: ProcId, signal: i32) {
        self.procs[id.0].allowed_signals.push(signal);
    }

    /// The daemon may exit with `code` on its own.
    pub fn allow_exit_code(&mut self, id: ProcId, code: i32) {
        self.procs[id.0].allowed_codes.push(code);
    }

    /// Waits for the process to exit; fails the test after `within`.
    pub fn wait_exit(&mut self, id: ProcId, within: Duration) -> Outcome {
        let start = Instant::now();
        while !self.procs[id.0].poll() {
            if start.elapsed() > within {
                panic!(
                    "{} did not exit within {:.1} s",
                    self.procs[id.0].name,
                    within.as_secs_f64()
                );
            }
            std::thread::sleep(POLL);
        }
        let p = &self.procs[id.0];
        Outcome {
            status: p.status.expect("poll returned true"),
            stdout: read_lossy(&p.stdout),
            stderr: read_lossy(&p.stderr),
        }
    }

    /// Waits until a line of the process's stdout contains `needle` and returns that line.
    pub fn wait_for_stdout(&mut self, id: ProcId, needle: &str, within: Duration) -> String {
        self.wait_for_line(id, needle, within, false)
    }

    /// Waits until a line of the process's stderr (its log) contains `needle`; returns it.
    pub fn wait_for_stderr(&mut self, id: ProcId, needle: &str, within: Duration) -> String {
        self.wait_for_line(id, needle, within, true)
    }

    fn wait_for_line(&mut self, id: ProcId, needle: &str, within: Duration, err: bool) -> String {
        let start = Instant::now();
        loop {
            let p = &mut self.procs[id.0];
            // Look at the exit first: a line written just before exiting still counts.
            let exited = p.poll();
            let text = read_lossy(if err { &p.stderr } else { &p.stdout });
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            let stream = if err { "stderr" } else { "stdout" };
            if exited {
                panic!(
                    "{} exited ({:?}) without printing {needle:?} on {stream}",
                    p.name, p.status
                );
            }
            if start.elapsed() > within {
                panic!(
                    "{} did not print {needle:?} on {stream} within {:.1} s",
                    p.name,
                    within.as_secs_f64()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `probe` until it returns `Some`; `None` after `within`, for a caller that
    /// reports the failure itself (with what it still sees).
    pub fn poll_until<T>(&mut self, within: Duration, mut probe: impl FnMut(&mut Sandbox) -> Option<T>) -> Option<T> {
        let start = Instant::now();
        loop {
            if let Some(t) = probe(self) {
                return Some(t);
            }
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `probe` until it returns `Some`, failing the test with `what` after `within`.
    pub fn wait_until<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut probe: impl FnMut(&mut Sandbox) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = probe(self) {
                return t;
            }
            if start.elapsed() > within {
                panic!("timed out after {:.1} s waiting for {what}", within.as_secs_f64());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Every crash so far: panics, unexpected signals, daemons exiting non-zero on their own.
    pub fn crashes(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|p| {
                p.poll();
                p.crash()
            })
            .collect()
    }

    /// Fails the test (with the logs) if any process crashed so far.
    pub fn check_no_crashes(&mut self) {
        let crashes = self.crashes();
        if !crashes.is_empty() {
            panic!("{}\n{}", crashes.join("\n"), self.report());
        }
    }

    /// The tails of every process's logs.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "==== processes of {} ====", self.dir.path().display());
        for p in &self.procs {
            let _ = writeln!(
                out,
                "---- {} (pid {}): distd {} -> {}",
                p.name,
                p.pid(),
                p.args.join(" "),
                match p.status {
                    Some(s) => format!("{s}"),
                    None => "running".to_string(),
                }
            );
            for (label, path) in [("stdout", &p.stdout), ("stderr", &p.stderr)] {
                let text = read_lossy(path);
                let lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let from = lines.len().saturating_sub(TAIL_LINES);
                let _ = writeln!(out, "  [{label}, last {} lines]", lines.len() - from);
                for l in &lines[from..] {
                    let _ = writeln!(out, "  | {l}");
                }
            }
        }
        out
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Ask first: SIGTERM stops schedulers and workers cleanly, and a worker that stops
        // kills the commands it runs, which live in process groups of their own, out of
        // reach of a kill of the worker's group. Newest first: clients, workers, scheduler.
        let mut asked = false;
        for p in self.procs.iter_mut().rev() {
            if p.poll() {
                continue;
            }
            p.cleaned_up = true;
            p.sent.push(libc::SIGTERM);
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
            unsafe {
                libc::kill(p.pid(), libc::SIGTERM);
            }
            asked = true;
        }
        let until = Instant::now() + CLEANUP_GRACE;
        while asked && Instant::now() < until && self.procs.iter_mut().any(|p| !p.poll()) {
            std::thread::sleep(POLL);
        }
        // Then kill whatever is left, group and all. Only unreaped children: a reaped one's
        // pid (and so its group id) may already belong to someone else.
        for p in self.procs.iter_mut().rev() {
            if p.poll() {
                continue;
            }
            p.cleaned_up = true;
            p.sent.push(libc::SIGKILL);
            // SAFETY: as in `kill_group`: our own unreaped child's group.
            unsafe {
                libc::killpg(p.pid(), libc::SIGKILL);
            }
        }
        for p in &mut self.procs {
            if p.status.is_none() {
                p.status = p.child.wait().ok();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.report());
            return;
        }
        let crashes: Vec<String> = self.procs.iter().filter_map(Proc::crash).collect();
        if !crashes.is_empty() {
            panic!("{}\n{}", crashes.join("\n"), self.report());
        }
    }
}

fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// The address in a `scheduler at tcp://HOST:PORT` line, as printed.
fn address_of(line: &str, prefix: &str) -> String {
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
        .trim()
        .to_string()
}

/// Starts a scheduler on 127.0.0.1, port 0, in `sb`; returns it and its address.
pub fn start_scheduler(sb: &mut Sandbox, extra: &[&str]) -> (ProcId, String) {
    start_scheduler_on(sb, 0, extra)
}

/// Starts a scheduler on 127.0.0.1:`port` in `sb`; returns it and its address.
pub fn start_scheduler_on(sb: &mut Sandbox, port: u16, extra: &[&str]) -> (ProcId, String) {
    let port = port.to_string();
    let mut args = vec!["scheduler", "--host", "127.0.0.1", "--port", &port];
    args.extend_from_slice(extra);
    let id = sb.spawn_daemon("scheduler", &args);
    let line = sb.wait_for_stdout(id, "scheduler at ", DEADLINE);
    (id, address_of(&line, "scheduler at "))
}

/// A `distd worker` command line, completed step by step and then started in the sandbox.
/// Unless told otherwise the worker gets `--death-timeout 5s` (a test never waits a minute
/// for a scheduler) and a scratch folder of its own in the sandbox (`work-NAME`, or `work`).
/// By default `distd worker` runs under a nanny; [`WorkerBuilder::no_nanny`] makes the
/// started process the worker itself.
pub struct WorkerBuilder<'a> {
    sb: &'a mut Sandbox,
    /// `ADDRESS`, or `--scheduler-file FILE`.
    scheduler: Vec<String>,
    name: Option<String>,
    /// The label in reports; by default "worker NAME".
    label: Option<String>,
    nthreads: Option<usize>,
    death_timeout: String,
    local_directory: Option<String>,
    no_nanny: bool,
    extra: Vec<String>,
}

impl<'a> WorkerBuilder<'a> {
    fn new(sb: &'a mut Sandbox, scheduler: Vec<String>) -> WorkerBuilder<'a> {
        WorkerBuilder {
            sb,
            scheduler,
            name: None,
            label: None,
            nthreads: None,
            death_timeout: "5s".to_string(),
            local_directory: None,
            no_nanny: false,
            extra: Vec::new(),
        }
    }

    /// `--name NAME`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// What reports call the process (by default "worker NAME").
    pub fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_string());
        self
    }

    /// `--nthreads N`.
    pub fn nthreads(mut self, n: usize) -> Self {
        self.nthreads = Some(n);
        self
    }

    /// `--death-timeout DURATION` instead of 5s.
    pub fn death_timeout(mut self, d: &str) -> Self {
        self.death_timeout = d.to_string();
        self
    }

    /// `--local-directory DIR` instead of one of its own.
    pub fn local_directory(mut self, dir: &str) -> Self {
        self.local_directory = Some(dir.to_string());
        self
    }

    /// `--no-nanny`: the started process is the worker, not its nanny.
    pub fn no_nanny(mut self) -> Self {
        self.no_nanny = true;
        self
    }

    /// One more argument, as is.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_string());
        self
    }

    /// More arguments, as they are. A `--death-timeout` among them replaces the default.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The label and the command line.
    fn command_line(&self) -> (String, Vec<String>) {
        let mut args = vec!["worker".to_string()];
        args.extend(self.scheduler.iter().cloned());
        if let Some(n) = &self.name {
            args.extend(["--name".to_string(), n.clone()]);
        }
        if let Some(n) = self.nthreads {
            args.extend(["--nthreads".to_string(), n.to_string()]);
        }
        let dir = self.local_directory.clone().unwrap_or_else(|| {
            let rel = match &self.name {
                Some(n) => format!("work-{n}"),
                None => "work".to_string(),
            };
            self.sb
                .path(&rel)
                .to_str()
                .expect("the sandbox path is UTF-8")
                .to_string()
        });
        args.extend(["--local-directory".to_string(), dir]);
        if !self.extra.iter().any(|a| a == "--death-timeout") {
            args.extend(["--death-timeout".to_string(), self.death_timeout.clone()]);
        }
        if self.no_nanny {
            args.push("--no-nanny".to_string());
        }
        args.extend(self.extra.iter().cloned());
        let label = self.label.clone().unwrap_or_else(|| match &self.name {
            Some(n) => format!("worker {n}"),
            None => "worker".to_string(),
        });
        (label, args)
    }

    /// Starts the worker as a long-running process.
    fn launch_daemon(&mut self) -> ProcId {
        let (label, args) = self.command_line();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sb.spawn_daemon(&label, &args)
    }

    /// Starts the worker as a long-running process and returns at once.
    pub fn spawn(mut self) -> ProcId {
        self.launch_daemon()
    }

    /// Starts the worker and waits until it says it registered.
    pub fn start(mut self) -> ProcId {
        let id = self.launch_daemon();
        self.sb.wait_for_stdout(id, "registered with ", DEADLINE);
        id
    }

    /// Starts a worker that is expected to exit by itself (to fail, say); collect it with
    /// [`Sandbox::wait_exit`].
    pub fn spawn_to_exit(self) -> ProcId {
        let (label, args) = self.command_line();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sb.spawn(&label, &args)
    }

    /// Runs a worker that is expected to exit by itself to completion (within [`DEADLINE`]).
    pub fn run(self) -> Outcome {
        let (label, args) = self.command_line();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sb.run(&label, &args)
    }
}

/// `distd info ADDR --json`, parsed.
pub fn info(sb: &mut Sandbox, address: &str) -> serde_json::Value {
    let out = sb.run_transient("info", &["info", address, "--json"]);
    out.assert_success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("`distd info --json` printed no JSON ({e}):\n{}", out.stdout))
}

/// The entry of worker `name` in `distd info --json` output.
pub fn worker_entry<'a>(info: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    info["workers"]
        .as_array()?
        .iter()
        .find(|w| w["name"].as_str() == Some(name))
}

/// A scheduler and worker processes on loopback, ready to run graphs. Each worker is a
/// `distd worker` process: a nanny with its worker child by default, or the worker itself
/// with [`ClusterBuilder::no_nanny`].
pub struct Cluster {
    pub sb: Sandbox,
    pub scheduler: ProcId,
    /// `tcp://127.0.0.1:PORT`, as the scheduler printed it.
    pub address: String,
    /// The workers, in start order, named `w0`, `w1`, ...
    pub workers: Vec<ProcId>,
    pub worker_names: Vec<String>,
}

/// How to start a [`Cluster`].
pub struct ClusterBuilder {
    workers: usize,
    nthreads: usize,
    scheduler_args: Vec<String>,
    /// Run each worker as the process the test started (`--no-nanny`), not under a nanny.
    no_nanny: bool,
}

impl ClusterBuilder {
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    pub fn nthreads(mut self, n: usize) -> Self {
        self.nthreads = n;
        self
    }

    /// Workers without a nanny: the process the test started is the worker itself, the
    /// parent of the commands it runs, and nothing restarts it when it dies.
    pub fn no_nanny(mut self) -> Self {
        self.no_nanny = true;
        self
    }

    /// Extra flags for `distd scheduler`.
    pub fn scheduler_args(mut self, args: &[&str]) -> Self {
        self.scheduler_args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn start(self) -> Cluster {
        let mut sb = Sandbox::new();
        let extra: Vec<&str> = self.scheduler_args.iter().map(String::as_str).collect();
        let (scheduler, address) = start_scheduler(&mut sb, &extra);
        let worker_names: Vec<String> = (0..self.workers).map(|i| format!("w{i}")).collect();
        // Start all workers, then wait for each: they register concurrently.
        let mut workers = Vec::new();
        for name in &worker_names {
            let mut w = sb.worker(&address).name(name).nthreads(self.nthreads);
            if self.no_nanny {
                w = w.no_nanny();
            }
            workers.push(w.spawn());
        }
        for &w in &workers {
            sb.wait_for_stdout(w, "registered with ", DEADLINE);
        }
        let mut cluster = Cluster {
            sb,
            scheduler,
            address,
            workers,
            worker_names,
        };
        cluster.wait_for_workers(self.workers);
        cluster
    }
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            workers: 2,
            nthreads: 1,
            scheduler_args: Vec::new(),
            no_nanny: false,
        }
    }

    /// A scheduler and `n` single-threaded workers.
    pub fn start(n: usize) -> Cluster {
        Cluster::builder().workers(n).start()
    }

    /// `distd info --json` of this cluster.
    pub fn info(&mut self) -> serde_json::Value {
        let address = self.address.clone();
        info(&mut self.sb, &address)
    }

    /// Waits until the scheduler lists exactly `n` workers.
    pub fn wait_for_workers(&mut self, n: usize) -> serde_json::Value {
        let address = self.address.clone();
        self.sb.wait_for_workers(&address, n)
    }

    /// Writes `toml` as a graph file and runs it with `distd run --scheduler ADDR`.
    pub fn run_graph(&mut self, file: &str, toml: &str) -> Outcome {
        let path = self.sb.write(file, toml);
        let path = path.to_str().expect("the sandbox path is UTF-8").to_string();
        let address = self.address.clone();
        self.sb.run(
            &format!("run {file}"),
            &["run", &path, "--scheduler", &address, "--no-progress"],
        )
    }

    /// Starts `distd run --scheduler ADDR` on `toml` in the background.
    pub fn spawn_graph(&mut self, file: &str, toml: &str) -> ProcId {
        let path = self.sb.write(file, toml);
        let path = path.to_str().expect("the sandbox path is UTF-8").to_string();
        let address = self.address.clone();
        self.sb.spawn(
            &format!("run {file}"),
            &["run", &path, "--scheduler", &address, "--no-progress"],
        )
    }

    /// `distd submit ADDR FLAGS -- COMMAND`.
    pub fn submit(&mut self, flags: &[&str], command: &[&str]) -> Outcome {
        let address = self.address.clone();
        let mut args = vec!["submit", address.as_str()];
        args.extend_from_slice(flags);
        args.push("--");
        args.extend_from_slice(command);
        self.sb.run("submit", &args)
    }
}

impl std::ops::Deref for Cluster {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Sandbox {
        &mut self.sb
    }
}

/// The `host:port` part of a `tcp://host:port` address.
pub fn host_port(address: &str) -> &str {
    address.strip_prefix("tcp://").unwrap_or(address)
}

/// A real distd connection from the test process: the one dial of distd, hello and TLS
/// with the credential of the sandbox's cluster, then raw bytes, as a peer that passed the
/// handshake and then misbehaves would send them.
pub struct Secured {
    reader: distd::protocol::LinkReader,
    writer: distd::protocol::LinkWriter,
    pub local: std::net::SocketAddr,
}

impl Secured {
    /// Connects to `address` as `ours`, expecting a `theirs`.
    pub fn connect(address: &str, ours: distd::protocol::Role, theirs: distd::protocol::Role) -> Secured {
        let address = address.strip_prefix("tcp://").unwrap_or(address).to_string();
        let dialed = smol::block_on(distd::protocol::dial(&address, ours, theirs, Duration::ZERO))
            .unwrap_or_else(|e| panic!("a secured connection to {address}: {e}"));
        let local = dialed.link.local_addr().expect("a local address");
        Secured {
            reader: dialed.link.reader,
            writer: dialed.link.writer,
            local,
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use futures_lite::AsyncWriteExt;
        smol::block_on(async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        })
    }

    /// Says it will send no more (TLS close_notify, then the socket's write side).
    pub fn shutdown_write(&mut self) {
        use futures_lite::AsyncWriteExt;
        let _ = smol::block_on(self.writer.close());
    }

    /// One read of at most `buf.len()` bytes within `within`: `Ok(0)` at the end,
    /// `Err(TimedOut)` when nothing came.
    pub fn read_within(&mut self, buf: &mut [u8], within: Duration) -> std::io::Result<usize> {
        use futures_lite::AsyncReadExt;
        smol::block_on(futures_lite::future::or(self.reader.read(buf), async {
            async_io::Timer::after(within).await;
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "nothing came"))
        }))
    }

    /// Reads until the peer closes (within [`DEADLINE`]); what came.
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.read_within(&mut buf, left)? {
                0 => return Ok(all),
                n => all.extend_from_slice(&buf[..n]),
            }
        }
    }
}
