//! `distd ssh` against real OpenSSH: one `sshd` per address 127.0.0.2..5 with keys made in
//! the sandbox and a client config that leaves ~/.ssh alone. Under CI (CI=true) these tests
//! must run; elsewhere they skip, saying why, when there is no sshd.
//!
//! Every process runs in a [`Sandbox`]: sshd, `distd ssh` and the clients are its own, with
//! their logs and deadlines. Remote processes are sshd's, not the sandbox's: they are told
//! apart by their executable, a copy of distd in the sandbox that only this test runs.

mod harness;

use harness::{procfs, ProcId, Sandbox, DEADLINE};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SSHD: &str = "/usr/sbin/sshd";
const HOSTS: [&str; 4] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

/// sshd on every test address in a sandbox, and what a client needs to use them.
struct Sshd {
    sb: Sandbox,
    /// The sshd listening on each test address.
    daemons: Vec<(&'static str, ProcId)>,
    port: u16,
    /// The distd copy remote hosts run; its path marks every remote process of this test.
    remote_distd: PathBuf,
}

fn port_free_everywhere(port: u16) -> bool {
    HOSTS.iter().all(|h| std::net::TcpListener::bind((*h, port)).is_ok())
}

/// A path in the sandbox, as an argument.
fn arg(p: &Path) -> &str {
    p.to_str().expect("the sandbox path is UTF-8")
}

impl Sshd {
    /// None (with a printed reason) when sshd is missing outside CI.
    fn start() -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the ssh tests: {SSHD} is missing (.ci/run installs openssh-server)"
            );
            eprintln!("skipping: {SSHD} is not installed (apt-get install openssh-server)");
            return None;
        }
        let mut sb = Sandbox::new();
        let d = sb.dir().to_path_buf();
        for key in ["hostkey", "clientkey"] {
            let path = d.join(key);
            sb.run_program(
                &format!("ssh-keygen {key}"),
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-f", arg(&path)],
            )
            .assert_success();
        }
        std::fs::copy(d.join("clientkey.pub"), d.join("authorized_keys")).expect("authorized_keys");
        std::fs::create_dir_all("/run/sshd").ok();
        // Tests of this process run in parallel: each takes its own port.
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let base = 20000 + (std::process::id() % 20000) as u16;
        let mut port = base + 16 * NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        while !port_free_everywhere(port) {
            port += 1;
        }
        let mut daemons = Vec::new();
        for h in HOSTS {
            let conf = sb.write(
                &format!("sshd-{h}.conf"),
                &format!(
                    "ListenAddress {h}:{port}\nHostKey {d}/hostkey\nAuthorizedKeysFile {d}/authorized_keys\n\
                     PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     PidFile {d}/sshd-{h}.pid\nMaxSessions 100\nMaxStartups 100\n",
                    d = d.display()
                ),
            );
            let log = d.join(format!("sshd-{h}.log"));
            let id = sb.spawn_program_daemon(&format!("sshd {h}"), SSHD, &["-D", "-f", arg(&conf), "-E", arg(&log)]);
            daemons.push((h, id));
        }
        for h in HOSTS {
            sb.wait_until(&format!("sshd on {h}:{port}"), DEADLINE, |_| {
                std::net::TcpStream::connect((h, port)).ok().map(|_| ())
            });
        }
        sb.write(
            "ssh_config",
            &format!(
                "Host *\n  Port {port}\n  IdentityFile {d}/clientkey\n  UserKnownHostsFile {d}/known_hosts\n  \
                 StrictHostKeyChecking accept-new\n  BatchMode yes\n",
                d = d.display()
            ),
        );
        let remote_distd = d.join("bin").join("distd");
        std::fs::create_dir_all(d.join("bin")).expect("bin dir");
        std::fs::copy(harness::distd_exe(), &remote_distd).expect("copy distd");
        Some(Sshd {
            sb,
            daemons,
            port,
            remote_distd,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.sb.path(name)
    }

    /// Starts `distd ssh ARGS` with this fixture's ssh config and a scratch folder in the
    /// sandbox; `name` labels it in reports.
    fn distd_ssh(&mut self, name: &str, args: &[&str]) -> ProcId {
        let (config, work) = (self.path("ssh_config"), self.path("work"));
        let mut all = vec!["ssh"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--ssh-config", arg(&config)]);
        all.extend_from_slice(&["--scheduler-port", "0", "--nthreads", "1", "--memory-limit", "0"]);
        all.extend_from_slice(&["--local-directory", arg(&work)]);
        self.sb.spawn_daemon(name, &all)
    }

    /// PIDs of processes running this test's remote distd copy (or an uploaded one in its
    /// sandbox).
    fn remote_pids(&self) -> Vec<i32> {
        procfs::running_programs_in(self.sb.dir())
    }

    fn wait_no_remote(&mut self, within: Duration) {
        let dir = self.sb.dir().to_path_buf();
        let gone = self
            .sb
            .poll_until(within, |_| procfs::running_programs_in(&dir).is_empty().then_some(()));
        assert!(
            gone.is_some(),
            "remote processes still alive: {:?}",
            procfs::running_programs_in(&dir)
        );
    }

    /// Sends SIGINT to `distd ssh` as Ctrl-C in its terminal would (to its process group),
    /// and checks it stops cleanly.
    fn interrupt(&mut self, ssh: ProcId) {
        self.sb.signal_group(ssh, libc::SIGINT);
        self.sb.wait_exit(ssh, DEADLINE).assert_success();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Whatever a failed test left behind on the "remote" side, which is sshd's and not
        // the sandbox's: processes of this test's own distd copy. The sandbox then stops
        // sshd and everything it started itself.
        for pid in self.remote_pids() {
            // SAFETY: these run the binary this test copied into its own sandbox.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The scheduler address from the summary line.
fn address_of(summary: &str) -> String {
    summary
        .split("scheduler at ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("address in the summary")
        .to_string()
}

/// Runs a graph of eight `echo`s and their sum on the cluster at `addr`; returns its output.
fn run_graph(sb: &mut Sandbox, addr: &str) -> String {
    let mut text = String::new();
    for i in 0..8 {
        text.push_str(&format!("[[task]]\nkey = \"n{i}\"\ncommand = [\"echo\", \"{i}\"]\n\n"));
    }
    text.push_str("[[task]]\nkey = \"total\"\nfunction = \"sum\"\ndeps = [");
    text.push_str(&(0..8).map(|i| format!("\"n{i}\"")).collect::<Vec<_>>().join(", "));
    text.push_str("]\noutput = true\n");
    let graph = sb.write("graph.toml", &text);
    let out = sb.run_graph("run", &graph, addr);
    out.assert_success();
    out.stdout.trim().to_string()
}

#[test]
fn four_hosts_run_a_graph_and_ctrl_c_leaves_nothing_behind() {
    let Some(mut s) = Sshd::start() else { return };
    let bin = s.remote_distd.display().to_string();
    let ssh = s.distd_ssh("ssh", &["127.0.0.{2,3,4,5}", "--remote-distd", &bin]);
    let summary = s.sb.wait_for_stdout(ssh, "4 workers on 4 hosts", DEADLINE);
    // Every worker runs under a nanny: a nanny and a worker process per host, plus the scheduler.
    assert!(s.remote_pids().len() >= 9, "{:?}", s.remote_pids());
    // The graph runs secured: the credential came to every remote process over ssh, and
    // to the client here through the access file distd ssh published while it runs.
    assert_eq!(run_graph(&mut s.sb, &address_of(&summary)), "28");
    let access = s.path("data/distd/access");
    let file = std::fs::read_dir(&access)
        .unwrap_or_else(|e| panic!("{}: {e}", access.display()))
        .next()
        .expect("distd ssh published its access file")
        .expect("an entry")
        .path();
    let text = std::fs::read_to_string(&file).expect("the access file");
    // A line of each key's base64 body: none may be in any remote process's argv.
    let secrets: Vec<&str> = text
        .lines()
        .filter(|l| l.len() > 40 && !l.starts_with('-') && !l.contains('='))
        .collect();
    assert!(!secrets.is_empty(), "{text}");
    for pid in s.remote_pids() {
        let argv = procfs::cmdline(pid);
        assert!(!argv.contains("PRIVATE KEY"), "{pid}: {argv}");
        for secret in &secrets {
            assert!(!argv.contains(secret), "{pid}'s argv carries the credential: {argv}");
        }
    }
    let out = s.sb.stdout(ssh);
    for h in HOSTS {
        assert!(out.contains(&format!("[{h}] registered with")), "{out}");
    }
    s.interrupt(ssh);
    s.wait_no_remote(Duration::from_secs(10));
}

#[test]
fn upload_brings_the_binary_to_hosts_without_distd() {
    let Some(mut s) = Sshd::start() else { return };
    let remote_dir = s.path("remote-bin");
    let dir = remote_dir.display().to_string();
    let ssh = s.distd_ssh("ssh up", &["127.0.0.{2,3}", "--upload", "--remote-dir", &dir]);
    let summary =
        s.sb.wait_for_stdout(ssh, "2 workers on 2 hosts", Duration::from_secs(60));
    assert_eq!(run_graph(&mut s.sb, &address_of(&summary)), "28");
    let uploaded: Vec<_> = std::fs::read_dir(&remote_dir).expect("upload dir").flatten().collect();
    assert_eq!(uploaded.len(), 1, "one identical copy, reused by both hosts");
    let first_mtime = uploaded[0].metadata().and_then(|m| m.modified()).expect("mtime");
    s.interrupt(ssh);
    // A second run reuses the copy already there.
    let ssh = s.distd_ssh("ssh up2", &["127.0.0.2", "--upload", "--remote-dir", &dir]);
    s.sb.wait_for_stdout(ssh, "1 worker on 1 host", Duration::from_secs(60));
    let again = std::fs::read_dir(&remote_dir)
        .expect("dir")
        .flatten()
        .next()
        .expect("copy");
    assert_eq!(again.metadata().and_then(|m| m.modified()).expect("mtime"), first_mtime);
    s.interrupt(ssh);
}

#[test]
fn hostfile_with_comments_ranges_and_user_at_host_port() {
    let Some(mut s) = Sshd::start() else { return };
    let hostfile = s.sb.write(
        "hosts",
        &format!(
            "# the test cluster\n\n127.0.0.[2-3]   # a range\nroot@127.0.0.4:{}\n127.0.0.2\n",
            s.port
        ),
    );
    let bin = s.remote_distd.display().to_string();
    let ssh = s.distd_ssh("ssh hf", &["--hostfile", arg(&hostfile), "--remote-distd", &bin]);
    s.sb.wait_for_stdout(ssh, "3 workers on 3 hosts", DEADLINE);
    let err = s.sb.stderr(ssh);
    assert!(err.contains("more than once"), "{err}");
    s.sb.signal_group(ssh, libc::SIGTERM);
    s.sb.wait_exit(ssh, DEADLINE).assert_success();
    s.wait_no_remote(Duration::from_secs(10));
}

#[test]
fn bad_host_patterns_are_named_in_one_line() {
    let mut sb = Sandbox::new();
    for (pattern, says) in [
        ("node[1-4", "unclosed '['"),
        ("node[5-1]", "reversed range"),
        ("n[1-100000]x[1-100]", "more than 65536"),
    ] {
        let out = sb.run("distd ssh", &["ssh", pattern]);
        out.assert_failure();
        let err = out.stderr.as_str();
        assert!(err.contains(pattern) && err.contains(says), "{pattern}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn an_unreachable_host_is_reported_and_the_rest_run() {
    let Some(mut s) = Sshd::start() else { return };
    let bin = s.remote_distd.display().to_string();
    let ssh = s.distd_ssh("ssh un", &["127.0.0.{2,3}", "127.0.0.4:1", "--remote-distd", &bin]);
    s.sb.wait_for_stdout(ssh, "2 workers on 2 hosts", DEADLINE);
    let err = s.sb.stderr(ssh);
    assert!(
        err.contains("127.0.0.4") && err.contains("unreachable") && err.contains("Connection refused"),
        "{err}"
    );
    s.interrupt(ssh);
}

#[test]
fn sigkill_of_the_launcher_stops_every_remote_process() {
    let Some(mut s) = Sshd::start() else { return };
    let bin = s.remote_distd.display().to_string();
    let ssh = s.distd_ssh("ssh kill", &["127.0.0.{2,3}", "--remote-distd", &bin]);
    s.sb.wait_for_stdout(ssh, "2 workers on 2 hosts", DEADLINE);
    assert!(!s.remote_pids().is_empty());
    // SIGKILL to the launcher alone, not its group: its ssh clients must notice by themselves.
    s.sb.signal(ssh, libc::SIGKILL);
    s.wait_no_remote(Duration::from_secs(15));
}

#[test]
fn a_remote_of_another_version_is_refused_before_anything_starts() {
    let Some(mut s) = Sshd::start() else { return };
    let fake = s.sb.write("bin/fake-distd", "#!/bin/sh\necho 'distd 9.9.9'\n");
    s.sb.run_program("chmod", "chmod", &["755", arg(&fake)])
        .assert_success();
    let config = s.path("ssh_config");
    let out = s.sb.run(
        "distd ssh",
        &[
            "ssh",
            "127.0.0.2",
            "127.0.0.3",
            "--remote-distd",
            arg(&fake),
            "--ssh-config",
            arg(&config),
        ],
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("9.9.9") && out.stderr.contains(env!("CARGO_PKG_VERSION")),
        "names both versions: {}",
        out.describe()
    );
    assert!(s.remote_pids().is_empty());
    // Nothing was started: no scheduler line was printed.
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

/// A dropped ssh connection: the sshd process serving the launcher's session to one worker
/// host is killed (found as the only child of the sshd this test started for that address).
/// The remote worker stops with its channel, and the launcher reconnects and starts another
/// one there: the cluster is back to two workers and runs a graph.
#[test]
fn a_dropped_connection_is_reconnected_and_its_worker_started_again() {
    let Some(mut s) = Sshd::start() else { return };
    let bin = s.remote_distd.display().to_string();
    let ssh = s.distd_ssh("ssh drop", &["127.0.0.{2,3}", "--remote-distd", &bin]);
    let summary = s.sb.wait_for_stdout(ssh, "2 workers on 2 hosts", DEADLINE);
    let addr = address_of(&summary);
    let listener = s
        .daemons
        .iter()
        .find(|(h, _)| *h == "127.0.0.3")
        .map(|(_, id)| s.sb.pid(*id));
    let listener = listener.expect("an sshd for 127.0.0.3");
    let serving = procfs::children(listener);
    assert_eq!(
        serving.len(),
        1,
        "one connection to 127.0.0.3, the launcher's: {serving:?}"
    );
    let serving = serving[0];
    let remote = s.remote_pids();
    let old: Vec<i32> = procfs::descendants(serving)
        .into_iter()
        .filter(|p| remote.contains(p))
        .collect();
    assert!(!old.is_empty(), "the worker on 127.0.0.3 runs under that connection");

    // SAFETY: kill has no memory-safety preconditions; `serving` is the child of an sshd this
    // test started, and was seen alive just now.
    assert_eq!(unsafe { libc::kill(serving, libc::SIGKILL) }, 0, "kill sshd {serving}");

    let back = s.sb.poll_until(Duration::from_secs(60), |sb| {
        let gone = old.iter().all(|&p| !procfs::alive(p));
        let again = procfs::children(listener)
            .into_iter()
            .any(|c| c != serving && !procfs::descendants(c).is_empty());
        let workers = harness::info(sb, &addr)["workers"].as_array().map_or(0, Vec::len);
        (gone && again && workers == 2).then_some(())
    });
    assert!(
        back.is_some(),
        "no new worker on 127.0.0.3 after the drop; launcher said:\n{}",
        s.sb.stderr(ssh)
    );
    let err = s.sb.stderr(ssh);
    assert!(err.contains("[127.0.0.3] restarting the worker"), "{err}");
    assert_eq!(run_graph(&mut s.sb, &addr), "28");
    s.interrupt(ssh);
    s.wait_no_remote(Duration::from_secs(10));
}
