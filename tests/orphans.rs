//! No orphans (issue 10): every process a task command starts, in the background (`sleep
//! 302 &`), in a session of its own (`setsid sleep 304`) or through a double fork (`(sleep
//! 306 &)`), dies when the task ends, when it is cancelled, and when its worker or nanny is
//! SIGKILLed. Real `distd` processes on loopback.
//!
//! Where cgroup v2 is writable (ARCHITECTURE.md, "No orphans") every case holds; the tests
//! of the cgroup cases say "skipped" and pass elsewhere. The fallback (`DISTD_NO_CGROUPS`:
//! process groups and the nanny's subreaper sweep) is tested for what it promises.
//!
//! The task processes are found through `/proc` (their working directory is the sandbox),
//! recorded while they run, and SIGKILLed at the end of the test if they survived, so a
//! failing test leaves nothing behind.

mod harness;

use harness::procfs::{processes_in, Recorded};
use harness::{distd_exe, worker_entry, Cluster, ProcId, Sandbox, DEADLINE};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A task that leaves three processes behind, each escaping its own way, and then waits
/// (`sleep 308`). They run once the sandbox shows them.
const WAITING_TASK: &str = "sleep 302 & setsid sleep 304 & (sleep 306 &); sleep 308";

/// The same three, their pids printed, and then the task ends at once.
const FINISHING_TASK: &str = "sleep 302 & echo $!; setsid sleep 304 & echo $!; (sleep 306 & echo $!); echo done";

/// Fails the test unless the processes whose pids `out` lists (one a line before "done") are
/// gone within a few seconds.
fn assert_pids_gone(sb: &mut Sandbox, out: &str, what: &str) {
    let pids: Vec<i32> = out.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(
        !pids.is_empty() && out.ends_with("done\n"),
        "{what}: the task said {out:?}"
    );
    let running = |p: &i32| harness::procfs::alive(*p) && harness::procfs::cmdline(*p).starts_with("sleep 30");
    let gone = sb.poll_until(Duration::from_secs(5), |_| (!pids.iter().any(running)).then_some(()));
    if gone.is_none() {
        let left: Vec<(i32, String)> = pids
            .iter()
            .filter(|p| running(p))
            .map(|p| (*p, harness::procfs::cmdline(*p)))
            .collect();
        for (p, _) in &left {
            // SAFETY: kill has no memory-safety preconditions; the pid is a `sleep` our task
            // started, checked by its command line just above.
            unsafe {
                libc::kill(*p, libc::SIGKILL);
            }
        }
        panic!("{what}: the task's processes survive: {left:?}\n{}", sb.report());
    }
    let dir = sb.dir().to_path_buf();
    let others = sleeps_in(&dir);
    assert!(others.is_empty(), "{what}: task processes left: {others:?}");
}

/// The `sleep 30x` processes of the task, recorded while they run; the survivors are
/// SIGKILLed when this is dropped.
struct Sleeps(Recorded);

impl Sleeps {
    /// Waits until the sandbox holds the `sleep 30x` processes named by `args`, and records
    /// them.
    fn wait_for(sb: &mut Sandbox, args: &[&str]) -> Sleeps {
        let dir = sb.dir().to_path_buf();
        let found = sb.wait_until(&format!("the task's processes {args:?} to run"), DEADLINE, |_| {
            let found = sleeps_in(&dir);
            args.iter()
                .all(|a| found.iter().any(|(_, cmd)| cmd == &format!("sleep {a}")))
                .then_some(found)
        });
        let mut s = Recorded::default();
        for (pid, _) in found {
            s.add(pid);
        }
        Sleeps(s)
    }

    /// Fails the test unless every recorded process is gone within a few seconds, and (when
    /// `only`: no rerun of the task may have started new ones) every other task process.
    fn assert_gone(&self, sb: &mut Sandbox, what: &str, only: bool) {
        let gone = sb.poll_until(Duration::from_secs(5), |_| self.0.survivors().is_empty().then_some(()));
        if gone.is_none() {
            panic!(
                "{what}: the task's processes survive: {:?}\n{}",
                self.0.survivors(),
                sb.report()
            );
        }
        if only {
            let dir = sb.dir().to_path_buf();
            let others = sleeps_in(&dir);
            assert!(others.is_empty(), "{what}: task processes left: {others:?}");
        }
    }
}

/// The `sleep 30x` processes working in `dir`, whoever their parent is now.
fn sleeps_in(dir: &Path) -> Vec<(i32, String)> {
    processes_in(dir)
        .into_iter()
        .filter(|(_, cmd)| cmd.starts_with("sleep 30"))
        .collect()
}

/// Whether this machine lets distd make task cgroups: a writable cgroup2 hierarchy with
/// `cgroup.kill`. Probed as distd does, with a directory made and removed.
fn cgroups_available() -> bool {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Some(mount) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    }) else {
        return false;
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    let probe = mount
        .join(path.trim().trim_start_matches('/'))
        .join(format!("distd-probe-{}", std::process::id()));
    let ok = std::fs::create_dir(&probe).is_ok() && probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    if !ok {
        eprintln!("skipped: this machine has no writable cgroup v2 with cgroup.kill");
    }
    ok
}

/// A scheduler and one worker `w` with two threads, under a nanny unless `bare`.
fn cluster(bare: bool) -> Cluster {
    let mut b = Cluster::builder().workers(1).nthreads(2);
    if bare {
        b = b.no_nanny();
    }
    b.start()
}

/// Starts `distd submit` of the orphaning task that waits, and waits until its processes run.
fn submit_waiting(cluster: &mut Cluster) -> (ProcId, Sleeps) {
    let address = cluster.address.clone();
    let submit = cluster.spawn("submit", &["submit", &address, "--", "sh", "-c", WAITING_TASK]);
    let sleeps = Sleeps::wait_for(cluster, &["302", "304", "306", "308"]);
    (submit, sleeps)
}

/// The pid of the cluster's one worker as the scheduler knows it.
fn worker_pid(cluster: &mut Cluster) -> i32 {
    let info = cluster.info();
    let name = cluster.worker_names[0].clone();
    worker_entry(&info, &name)
        .and_then(|w| w["pid"].as_i64())
        .unwrap_or_else(|| panic!("worker {name} is registered: {info}")) as i32
}

/// Regression test for issue 10: what a task left running outlived it, and with a child
/// holding its stdout the task did not even end.
#[test]
fn a_finished_task_leaves_no_process_behind() {
    if !cgroups_available() {
        return;
    }
    let mut cluster = cluster(true);
    let out = cluster.submit(&[], &["sh", "-c", FINISHING_TASK]);
    out.assert_success();
    assert_pids_gone(&mut cluster, &out.stdout, "after the task finished");
    cluster.check_no_crashes();
}

#[test]
fn a_cancelled_task_leaves_no_process_behind() {
    if !cgroups_available() {
        return;
    }
    let mut cluster = cluster(true);
    let (submit, sleeps) = submit_waiting(&mut cluster);
    // The only client wanting the task goes: the scheduler cancels it on the worker.
    cluster.kill_group(submit);
    sleeps.assert_gone(&mut cluster, "after the task was cancelled", true);
    let worker = cluster.workers[0];
    assert!(cluster.is_running(worker), "the worker still runs");
    cluster.check_no_crashes();
}

#[test]
fn a_worker_sigkilled_under_its_nanny_leaves_no_process_behind() {
    if !cgroups_available() {
        return;
    }
    let mut cluster = cluster(false);
    let (_submit, sleeps) = submit_waiting(&mut cluster);
    let worker = worker_pid(&mut cluster);
    // SAFETY: kill has no memory-safety preconditions; `worker` is our nanny's child.
    assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0);
    sleeps.assert_gone(&mut cluster, "after the worker was SIGKILLed", false);
    cluster.check_no_crashes();
}

#[test]
fn a_nanny_sigkilled_leaves_no_process_behind() {
    if !cgroups_available() {
        return;
    }
    let mut cluster = cluster(false);
    let (_submit, sleeps) = submit_waiting(&mut cluster);
    let worker = worker_pid(&mut cluster);
    let nanny = cluster.workers[0];
    cluster.signal(nanny, libc::SIGKILL);
    sleeps.assert_gone(&mut cluster, "after the nanny was SIGKILLed", false);
    let gone = cluster.poll_until(Duration::from_secs(5), |_| {
        (!harness::procfs::alive(worker)).then_some(())
    });
    assert!(gone.is_some(), "the worker (pid {worker}) dies with its nanny");
    cluster.check_no_crashes();
}

#[test]
fn a_bare_worker_sigkilled_leaves_no_process_behind() {
    if !cgroups_available() {
        return;
    }
    let mut cluster = cluster(true);
    let (_submit, sleeps) = submit_waiting(&mut cluster);
    let worker = cluster.workers[0];
    cluster.signal(worker, libc::SIGKILL);
    sleeps.assert_gone(&mut cluster, "after the bare worker was SIGKILLed", false);
    cluster.check_no_crashes();
}

/// Without cgroups: a worker started under a nanny through `env DISTD_NO_CGROUPS=1`.
fn fallback_cluster() -> Cluster {
    let mut sb = Sandbox::new();
    let (scheduler, address) = harness::start_scheduler(&mut sb, &[]);
    let dir = sb.path("work").to_string_lossy().into_owned();
    let args = [
        "DISTD_NO_CGROUPS=1",
        distd_exe(),
        "worker",
        &address,
        "--name",
        "w",
        "--nthreads",
        "2",
        "--death-timeout",
        "5s",
        "--local-directory",
        &dir,
    ];
    let nanny = sb.spawn_program_daemon("nanny without cgroups", "env", &args);
    let mut cluster = Cluster {
        sb,
        scheduler,
        address,
        workers: vec![nanny],
        worker_names: vec!["w".into()],
    };
    cluster.wait_for_workers(1);
    cluster
}

/// Without cgroups, what stayed in the command's process group dies with the task.
#[test]
fn without_cgroups_a_finished_tasks_background_processes_die_with_it() {
    let mut cluster = fallback_cluster();
    let out = cluster.submit(&[], &["sh", "-c", "sleep 302 & echo $!; echo done"]);
    out.assert_success();
    assert_pids_gone(&mut cluster, &out.stdout, "after the task finished");
    cluster.check_no_crashes();
}

/// Without cgroups, the nanny (a subreaper) still finds every process of a worker that was
/// SIGKILLed: they were re-parented to it.
#[test]
fn without_cgroups_a_worker_sigkilled_under_its_nanny_leaves_no_process_behind() {
    let mut cluster = fallback_cluster();
    let (_submit, sleeps) = submit_waiting(&mut cluster);
    let worker = worker_pid(&mut cluster);
    // SAFETY: kill has no memory-safety preconditions; `worker` is our nanny's child.
    assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0);
    sleeps.assert_gone(&mut cluster, "after the worker was SIGKILLed", false);
    cluster.check_no_crashes();
}
