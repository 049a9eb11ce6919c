//! Every mistake gets an answer (issue 12), for connections and scratch folders: real `distd`
//! processes on loopback, each test a mistake a user makes and the answer they get.
//!
//! - 3: a client (or a worker) pointed at a worker's peer port is told so at once; a client
//!   pointed at something that accepts and never answers is told that within 5 s.
//! - 4: `--death-timeout` covers the whole connect, handshake included.
//! - 13: a worker pointed at nothing says so once, not once per attempt, and once when it
//!   gives up.
//! - 18: a worker's scratch folder goes however it ends: its nanny SIGKILLed, or the worker
//!   SIGKILLed under a nanny; after a bare worker's SIGKILL the next worker to start there
//!   sweeps it (nothing in the killed process can).
//!
//! The peer that never answers is a listener of the test's own, which accepts connections
//! and holds them without a word.

mod harness;

use harness::procfs::{alive, Recorded};
use harness::{host_port, start_scheduler, worker_entry, Sandbox, DEADLINE};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepts connections on a loopback port and holds them open without ever sending a byte,
/// as a stopped process (whose kernel still accepts) or another service would.
struct SilentPeer {
    address: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl SilentPeer {
    fn start() -> SilentPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let address = listener.local_addr().expect("a local address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            held.len()
        });
        SilentPeer {
            address,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops holding; how many connections it accepted.
    fn accepted(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("the silent peer's thread"))
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A loopback port nothing listens on (bound, then let go).
fn free_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("a local address").to_string()
}

/// The folders in `dir` (none when it does not exist).
fn folders(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("the sandbox path is UTF-8").to_string()
}

/// The pid of worker `name` as its scheduler knows it.
fn worker_pid(sb: &mut Sandbox, address: &str, name: &str) -> i32 {
    let info = sb.wait_for_workers(address, 1);
    worker_entry(&info, name)
        .and_then(|w| w["pid"].as_i64())
        .unwrap_or_else(|| panic!("worker {name} is registered: {info}")) as i32
}

// ---------------------------------------------------------------------------------------------
// 3: the wrong address
// ---------------------------------------------------------------------------------------------

/// Regression test for issue 12, case 3: `distd info` and `distd submit` pointed at the
/// address a worker prints (`worker at tcp://...`, its peer port) waited until killed.
/// Expected: told within 5 s that this is a worker's port, not a scheduler's; a worker
/// pointed there too; and the worker and the cluster carry on untouched.
#[test]
fn a_client_pointed_at_a_workers_port_is_told_so_within_5_s() {
    let mut sb = Sandbox::new();
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    let worker = sb.worker(&address).name("w").no_nanny().start();
    let line = sb.wait_for_stdout(worker, "worker at ", DEADLINE);
    let copied = line
        .trim()
        .strip_prefix("worker at ")
        .expect("the worker's line")
        .to_string();
    let port = host_port(&copied).to_string();
    let answer = format!("tcp://{port} is a distd worker's port, not a scheduler's");
    let client_error = format!("distd: error: cannot connect to the scheduler at {port}: {answer}");
    for args in [
        vec!["info", copied.as_str()],
        vec!["info", port.as_str(), "--json"],
        vec!["submit", copied.as_str(), "--", "true"],
    ] {
        let start = Instant::now();
        let out = sb.run(&args.join(" "), &args);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{args:?} took {took:?}\n{}",
            out.describe()
        );
        out.assert_code(1);
        assert_eq!(out.the_error(), client_error, "{}", out.describe());
        assert_eq!(out.stdout, "", "{args:?}");
    }
    // A second worker given the first one's address is told the same, and does not retry.
    let start = Instant::now();
    let out = sb.worker(&copied).name("lost").no_nanny().death_timeout("20s").run();
    assert!(start.elapsed() < Duration::from_secs(5), "{}", out.describe());
    out.assert_code(78);
    assert_eq!(out.the_error(), format!("distd: error: {answer}"));
    assert!(!out.stderr.contains("retrying"), "{}", out.describe());
    // Nothing else was lost: the worker still serves. Of those connections it says only that
    // it refused the worker (the clients it admitted closed cleanly).
    let ok = sb.run("submit", &["submit", &address, "--", "echo", "still here"]);
    ok.assert_success();
    assert_eq!(ok.stdout, "still here\n");
    assert!(sb.is_running(worker));
    let said = sb.stderr(worker);
    let warnings: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        warnings
            .iter()
            .all(|l| l.contains("handshake refused: a worker may not connect here")),
        "{said}"
    );
    sb.check_no_crashes();
}

/// Regression test for issue 12, case 3: a client pointed at something that accepts and
/// never answers waited until killed. Expected: after 5 s, an answer that says so.
#[test]
fn a_client_pointed_at_a_peer_that_never_answers_is_told_so() {
    let mut sb = Sandbox::new();
    let silent = SilentPeer::start();
    let address = silent.address.clone();
    let start = Instant::now();
    let out = sb.run("info", &["info", &address]);
    let took = start.elapsed();
    out.assert_code(1);
    assert_eq!(
        out.the_error(),
        format!(
            "distd: error: cannot connect to the scheduler at {address}: \
             tcp://{address} accepted but never answered within 5.0 s"
        ),
        "{}",
        out.describe()
    );
    assert!(took >= Duration::from_millis(4900), "it waited {took:?}");
    assert!(took < Duration::from_secs(15), "it waited {took:?}");
    assert_eq!(silent.accepted(), 1, "one attempt, not a retry loop");
    sb.check_no_crashes();
}

/// The last wait of a connect: a scheduler that passes the handshake and then never welcomes
/// the client (stuck, or something that only mimics its hello) is named within 5 s.
#[test]
fn a_client_of_a_scheduler_that_never_welcomes_it_is_told_so() {
    use std::io::{Read, Write};
    let mut sb = Sandbox::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let address = listener.local_addr().expect("a local address").to_string();
    let mimic = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("the client connects");
        let mut head = [0u8; 14];
        s.read_exact(&mut head).expect("its hello");
        let mut version = vec![0u8; head[13] as usize];
        s.read_exact(&mut version).expect("its version");
        let mut guard = [0u8; 2];
        s.read_exact(&mut guard).expect("its guard");
        let mut answer =
            distd::protocol::Hello::ours(distd::protocol::Role::Scheduler, distd::protocol::Guard::Insecure, None)
                .encode();
        answer.extend_from_slice(&[0, 0, 0]);
        s.write_all(&answer).expect("answer the handshake");
        // Then silence, until the client gives up.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let start = Instant::now();
    // The mimic speaks in the clear: so does the client, to reach the wait after the handshake.
    let out = sb.run("info", &["info", &address, "--no-security"]);
    out.assert_code(1);
    assert_eq!(
        out.the_error(),
        "distd: error: lost the scheduler: no welcome within 5 s",
        "{}",
        out.describe()
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "it waited {:?}",
        start.elapsed()
    );
    mimic.join().expect("the mimic ends when the client goes");
    sb.check_no_crashes();
}

// ---------------------------------------------------------------------------------------------
// 4: the death timeout covers the handshake
// ---------------------------------------------------------------------------------------------

/// Regression test for issue 12, case 4: `distd worker ADDR --death-timeout 3s` against a
/// peer that accepts and never answers ran until killed. Expected: it gives up after about
/// 3 s, naming the address and what was there, under a nanny (the default) and bare.
#[test]
fn a_worker_with_death_timeout_3s_against_a_peer_that_never_answers_gives_up_within_about_3_s_naming_it() {
    let mut sb = Sandbox::new();
    let silent = SilentPeer::start();
    let address = silent.address.clone();
    let local = sb.path("work");
    let local_str = path_str(&local);
    let start = Instant::now();
    let nanny = sb
        .worker(&address)
        .name("w")
        .local_directory(&local_str)
        .death_timeout("3s")
        .spawn_to_exit();
    let bare = sb
        .worker(&address)
        .name("bare")
        .label("bare worker")
        .local_directory(&local_str)
        .death_timeout("3s")
        .no_nanny()
        .spawn_to_exit();
    let what = format!("tcp://{address} accepted but never answered within 3.0 s");
    let unreachable = format!("scheduler at {address} unreachable for ");
    for (id, code, prefix) in [
        (
            nanny,
            78,
            format!("distd: error: worker w: the worker cannot start (exit status 78): {unreachable}"),
        ),
        (bare, 78, format!("distd: error: {unreachable}")),
    ] {
        let out = sb.wait_exit(id, Duration::from_secs(15));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(2900),
            "gave up after {took:?}\n{}",
            out.describe()
        );
        assert!(
            took < Duration::from_secs(8),
            "gave up after {took:?}\n{}",
            out.describe()
        );
        out.assert_code(code);
        let error = out.the_error();
        assert!(
            error.starts_with(&prefix) && error.ends_with(&what),
            "{}",
            out.describe()
        );
    }
    assert!(
        folders(&local).is_empty(),
        "scratch folders left: {:?}",
        folders(&local)
    );
    sb.check_no_crashes();
}

// ---------------------------------------------------------------------------------------------
// 13: retry lines
// ---------------------------------------------------------------------------------------------

/// Regression test for issue 12, case 13: a worker pointed at nothing printed about 14 retry
/// lines in 3 s, its nanny's and its own interleaved. Expected: one line saying it is not
/// reachable yet and for how long it keeps trying, and one when it gives up, with the
/// address and the last reason; no warning in between.
#[test]
fn a_worker_pointed_at_nothing_prints_one_retry_line_and_one_when_it_gives_up() {
    let mut sb = Sandbox::new();
    let address = free_port();
    let nanny = sb.worker(&address).name("w").death_timeout("3s").spawn_to_exit();
    let bare = sb
        .worker(&address)
        .name("bare")
        .label("bare worker")
        .death_timeout("3s")
        .no_nanny()
        .spawn_to_exit();
    let first = format!(
        "scheduler at {address} not reachable yet ({address}: Connection refused (os error 111)); \
         retrying for up to 3.0 s"
    );
    let last = format!("scheduler at {address} unreachable for 3.0 s: {address}: Connection refused (os error 111)");
    for (id, code, error) in [
        (
            nanny,
            78,
            format!("distd: error: worker w: the worker cannot start (exit status 78): {last}"),
        ),
        (bare, 78, format!("distd: error: {last}")),
    ] {
        let out = sb.wait_exit(id, Duration::from_secs(15));
        out.assert_code(code);
        let retries: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("retrying") || l.contains("reachable"))
            .filter(|l| !l.starts_with("distd: error:"))
            .collect();
        assert_eq!(retries.len(), 1, "{}", out.describe());
        assert!(retries[0].ends_with(&first), "{}", out.describe());
        assert_eq!(out.the_error(), error, "{}", out.describe());
        assert!(!out.stderr.contains("WARN"), "{}", out.describe());
    }
    sb.check_no_crashes();
}

// ---------------------------------------------------------------------------------------------
// 18: scratch folders
// ---------------------------------------------------------------------------------------------

/// Regression test for issue 12, case 18: a nanny killed by SIGKILL took its worker along
/// (by the kernel's SIGKILL), and the worker's `worker-PID-N` folder stayed for ever.
/// Expected: the worker stops at once, its running task with it, and its folder goes; the
/// scheduler sees it leave.
#[test]
fn a_nanny_killed_by_sigkill_leaves_no_scratch_folder() {
    let mut sb = Sandbox::new();
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    let local = sb.path("work");
    let nanny = sb.worker(&address).name("w").local_directory(&path_str(&local)).start();
    let worker = worker_pid(&mut sb, &address, "w");
    let mut recorded = Recorded::default();
    recorded.add(worker);
    assert_eq!(folders(&local), [local.join(format!("worker-{worker}-0"))]);
    // A task running when the nanny dies.
    let pid_file = sb.path("task.pid");
    let task = format!(
        "echo $$ > {}.tmp && mv {0}.tmp {0} && exec sleep 300",
        path_str(&pid_file)
    );
    let _submit = sb.spawn("submit", &["submit", &address, "--", "sh", "-c", &task]);
    let task_pid: i32 = sb.wait_until("the task to start", DEADLINE, |_| {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    recorded.add(task_pid);
    sb.signal(nanny, libc::SIGKILL);
    let gone = sb.poll_until(Duration::from_secs(5), |_| {
        (folders(&local).is_empty() && !alive(worker) && !alive(task_pid)).then_some(())
    });
    assert!(
        gone.is_some(),
        "5 s after the nanny's SIGKILL: folders {:?}, worker alive {}, task alive {}\n{}",
        folders(&local),
        alive(worker),
        alive(task_pid),
        sb.report()
    );
    sb.wait_for_workers(&address, 0);
    assert!(recorded.survivors().is_empty(), "{:?}", recorded.survivors());
    sb.check_no_crashes();
}

/// Regression test for issue 12, case 18: a worker SIGKILLed under its nanny left its folder
/// until another worker started in the same local directory, which a nanny that stops never
/// does. Expected: the nanny removes the folder as soon as it reaps the worker.
#[test]
fn a_worker_sigkilled_while_its_nanny_stops_leaves_no_scratch_folder() {
    let mut sb = Sandbox::new();
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    let local = sb.path("work");
    let nanny = sb.worker(&address).name("w").local_directory(&path_str(&local)).start();
    let worker = worker_pid(&mut sb, &address, "w");
    let folder = local.join(format!("worker-{worker}-0"));
    assert_eq!(folders(&local), std::slice::from_ref(&folder));
    // The nanny learns of the death and of its stop together: no successor is started,
    // so none sweeps the folder.
    sb.pause(nanny);
    // SAFETY: kill has no memory-safety preconditions; `worker` is our nanny's child.
    assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0, "kill the worker");
    sb.signal(nanny, libc::SIGTERM);
    sb.resume(nanny);
    let out = sb.wait_exit(nanny, DEADLINE);
    out.assert_success();
    assert_eq!(out.stderr.matches("started worker").count(), 1, "{}", out.describe());
    assert!(
        folders(&local).is_empty(),
        "left: {:?}\n{}",
        folders(&local),
        out.describe()
    );
    assert!(
        out.stderr.contains(&format!("removing {}", folder.display())),
        "{}",
        out.describe()
    );
    sb.check_no_crashes();
}

/// A bare worker (`--no-nanny`) SIGKILLed cannot clean up after itself, and nothing watches
/// it: its folder stays until the next worker starts in the same local directory, which
/// sweeps it (and only it: a live worker's folder is locked).
#[test]
fn a_bare_workers_folder_is_swept_by_the_next_worker_to_start_there() {
    let mut sb = Sandbox::new();
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    let local = sb.path("work");
    let local_str = path_str(&local);
    let first = sb
        .worker(&address)
        .name("a")
        .local_directory(&local_str)
        .no_nanny()
        .start();
    let live = sb
        .worker(&address)
        .name("b")
        .local_directory(&local_str)
        .no_nanny()
        .start();
    let dead = local.join(format!("worker-{}-0", sb.pid(first)));
    let kept = local.join(format!("worker-{}-0", sb.pid(live)));
    sb.kill_group(first);
    let mut both = vec![dead.clone(), kept.clone()];
    both.sort();
    assert_eq!(folders(&local), both, "a SIGKILLed bare worker leaves its folder");
    let next = sb
        .worker(&address)
        .name("c")
        .local_directory(&local_str)
        .no_nanny()
        .start();
    let mut want = vec![kept, local.join(format!("worker-{}-0", sb.pid(next)))];
    want.sort();
    assert_eq!(folders(&local), want);
    assert!(!dead.exists());
    sb.check_no_crashes();
}
