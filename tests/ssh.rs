//! `distd ssh` against real OpenSSH: one `sshd` per address 127.0.0.2..5 with keys made in a
//! temp dir and a client config that leaves ~/.ssh alone. Under CI (CI=true) these tests must
//! run; elsewhere they skip, saying why, when there is no sshd.
//!
//! Remote processes are told apart by their executable: each test copies distd into its own
//! temp dir and runs that copy remotely.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const HOSTS: [&str; 4] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

/// A process in its own group, killed with its group when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        cmd.process_group(0);
        Proc {
            child: cmd.spawn().expect("spawn"),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling a process group we created.
        unsafe {
            libc::killpg(self.pid(), sig);
        }
    }

    fn wait_for_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// sshd on every test address, and what a client needs to use them.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    _servers: Vec<Proc>,
    /// The distd copy remote hosts run; its path marks every remote process of this test.
    remote_distd: PathBuf,
}

fn port_free_everywhere(port: u16) -> bool {
    HOSTS.iter().all(|h| std::net::TcpListener::bind((*h, port)).is_ok())
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
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for key in ["hostkey", "clientkey"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(d.join(key))
                .status()
                .expect("ssh-keygen");
            assert!(st.success());
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
        let mut servers = Vec::new();
        for h in HOSTS {
            let conf = d.join(format!("sshd-{h}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "ListenAddress {h}:{port}\nHostKey {d}/hostkey\nAuthorizedKeysFile {d}/authorized_keys\n\
                     PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     PidFile {d}/sshd-{h}.pid\nMaxSessions 100\nMaxStartups 100\n",
                    d = d.display()
                ),
            )
            .expect("sshd config");
            servers.push(Proc::spawn(
                Command::new(SSHD)
                    .arg("-D")
                    .arg("-f")
                    .arg(&conf)
                    .arg("-E")
                    .arg(d.join(format!("sshd-{h}.log"))),
            ));
        }
        for h in HOSTS {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect((h, port)).is_err() {
                assert!(Instant::now() < deadline, "sshd on {h}:{port} did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host *\n  Port {port}\n  IdentityFile {d}/clientkey\n  UserKnownHostsFile {d}/known_hosts\n  \
                 StrictHostKeyChecking accept-new\n  BatchMode yes\n",
                d = d.display()
            ),
        )
        .expect("ssh config");
        let remote_distd = d.join("bin").join("distd");
        std::fs::create_dir_all(d.join("bin")).expect("bin dir");
        std::fs::copy(env!("CARGO_BIN_EXE_distd"), &remote_distd).expect("copy distd");
        Some(Sshd {
            dir,
            port,
            _servers: servers,
            remote_distd,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `distd ssh` with this fixture's ssh config and logs in the temp dir.
    fn distd_ssh(&self, args: &[&str], log: &str) -> Proc {
        let out = std::fs::File::create(self.path(&format!("{log}.out"))).expect("log");
        let err = std::fs::File::create(self.path(&format!("{log}.err"))).expect("log");
        Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_distd"))
                .arg("ssh")
                .args(args)
                .arg("--ssh-config")
                .arg(self.path("ssh_config"))
                .args(["--scheduler-port", "0", "--nthreads", "1", "--memory-limit", "0"])
                .arg("--local-directory")
                .arg(self.path("work"))
                .env("RUST_LOG", "info")
                .stdout(out)
                .stderr(err),
        )
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Waits for a line containing `text` in a log; returns that line.
    fn wait_line(&self, name: &str, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.read(name).lines().find(|l| l.contains(text)) {
                return l.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in {name} within {within:?}; it has:\n{}\nstderr:\n{}",
                self.read(name),
                self.read(&name.replace(".out", ".err"))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PIDs of processes running this test's remote distd copy (or an uploaded one in dir).
    fn remote_pids(&self) -> Vec<u32> {
        let marker = self.dir.path().to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").expect("proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let mut cmd = Vec::new();
            let _ = f.read_to_end(&mut cmd);
            let first = cmd.split(|b| *b == 0).next().unwrap_or_default();
            if String::from_utf8_lossy(first).starts_with(&marker) {
                pids.push(pid);
            }
        }
        pids
    }

    fn wait_no_remote(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = self.remote_pids();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "remote processes still alive: {left:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Whatever a failed test left behind: processes of this test's own distd copy.
        for pid in self.remote_pids() {
            // SAFETY: these run the binary this test copied into its own temp dir.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
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

fn run_graph(addr: &str, dir: &Path) -> String {
    let graph = dir.join("graph.toml");
    let mut text = String::new();
    for i in 0..8 {
        text.push_str(&format!("[[task]]\nkey = \"n{i}\"\ncommand = [\"echo\", \"{i}\"]\n\n"));
    }
    text.push_str("[[task]]\nkey = \"total\"\nfunction = \"sum\"\ndeps = [");
    text.push_str(&(0..8).map(|i| format!("\"n{i}\"")).collect::<Vec<_>>().join(", "));
    text.push_str("]\noutput = true\n");
    std::fs::write(&graph, text).expect("graph");
    let out = Command::new(env!("CARGO_BIN_EXE_distd"))
        .arg("run")
        .arg(&graph)
        .args(["--scheduler", addr, "--no-progress"])
        .output()
        .expect("distd run");
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn four_hosts_run_a_graph_and_ctrl_c_leaves_nothing_behind() {
    let Some(s) = Sshd::start() else { return };
    let bin = s.remote_distd.display().to_string();
    let hosts = "127.0.0.{2,3,4,5}";
    let mut ssh = s.distd_ssh(&[hosts, "--remote-distd", &bin], "ssh");
    let summary = s.wait_line("ssh.out", "4 workers on 4 hosts", Duration::from_secs(30));
    // Every worker runs under a nanny: a nanny and a worker process per host, plus the scheduler.
    assert!(s.remote_pids().len() >= 9, "{:?}", s.remote_pids());
    assert_eq!(run_graph(&address_of(&summary), s.dir.path()), "28");
    let out = s.read("ssh.out");
    for h in HOSTS {
        assert!(out.contains(&format!("[{h}] registered with")), "{out}");
    }
    ssh.signal(libc::SIGINT);
    let st = ssh.wait_for_exit(Duration::from_secs(30)).expect("distd ssh exits");
    assert!(st.success(), "{st:?}: {}", s.read("ssh.err"));
    s.wait_no_remote(Duration::from_secs(10));
}

#[test]
fn upload_brings_the_binary_to_hosts_without_distd() {
    let Some(s) = Sshd::start() else { return };
    let remote_dir = s.path("remote-bin");
    let dir = remote_dir.display().to_string();
    let mut ssh = s.distd_ssh(&["127.0.0.{2,3}", "--upload", "--remote-dir", &dir], "up");
    let summary = s.wait_line("up.out", "2 workers on 2 hosts", Duration::from_secs(60));
    assert_eq!(run_graph(&address_of(&summary), s.dir.path()), "28");
    let uploaded: Vec<_> = std::fs::read_dir(&remote_dir).expect("upload dir").flatten().collect();
    assert_eq!(uploaded.len(), 1, "one identical copy, reused by both hosts");
    let first_mtime = uploaded[0].metadata().and_then(|m| m.modified()).expect("mtime");
    ssh.signal(libc::SIGINT);
    assert!(ssh.wait_for_exit(Duration::from_secs(30)).expect("exits").success());
    // A second run reuses the copy already there.
    let mut ssh = s.distd_ssh(&["127.0.0.2", "--upload", "--remote-dir", &dir], "up2");
    s.wait_line("up2.out", "1 workers on 1 hosts", Duration::from_secs(60));
    let again = std::fs::read_dir(&remote_dir)
        .expect("dir")
        .flatten()
        .next()
        .expect("copy");
    assert_eq!(again.metadata().and_then(|m| m.modified()).expect("mtime"), first_mtime);
    ssh.signal(libc::SIGINT);
    assert!(ssh.wait_for_exit(Duration::from_secs(30)).expect("exits").success());
}

#[test]
fn hostfile_with_comments_ranges_and_user_at_host_port() {
    let Some(s) = Sshd::start() else { return };
    let hostfile = s.path("hosts");
    std::fs::write(
        &hostfile,
        format!(
            "# the test cluster\n\n127.0.0.[2-3]   # a range\nroot@127.0.0.4:{}\n127.0.0.2\n",
            s.port
        ),
    )
    .expect("hostfile");
    let bin = s.remote_distd.display().to_string();
    let hf = hostfile.display().to_string();
    let mut ssh = s.distd_ssh(&["--hostfile", &hf, "--remote-distd", &bin], "hf");
    s.wait_line("hf.out", "3 workers on 3 hosts", Duration::from_secs(30));
    assert!(s.read("hf.err").contains("more than once"), "{}", s.read("hf.err"));
    ssh.signal(libc::SIGTERM);
    assert!(ssh.wait_for_exit(Duration::from_secs(30)).expect("exits").success());
    s.wait_no_remote(Duration::from_secs(10));
}

#[test]
fn bad_host_patterns_are_named_in_one_line() {
    for (pattern, says) in [
        ("node[1-4", "unclosed '['"),
        ("node[5-1]", "reversed range"),
        ("n[1-100000]x[1-100]", "more than 65536"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_distd"))
            .args(["ssh", pattern])
            .output()
            .expect("distd ssh");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(pattern) && err.contains(says), "{pattern}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn an_unreachable_host_is_reported_and_the_rest_run() {
    let Some(s) = Sshd::start() else { return };
    let bin = s.remote_distd.display().to_string();
    let mut ssh = s.distd_ssh(&["127.0.0.{2,3}", "127.0.0.4:1", "--remote-distd", &bin], "un");
    s.wait_line("un.out", "2 workers on 2 hosts", Duration::from_secs(30));
    let err = s.read("un.err");
    assert!(
        err.contains("127.0.0.4") && err.contains("unreachable") && err.contains("Connection refused"),
        "{err}"
    );
    ssh.signal(libc::SIGINT);
    assert!(ssh.wait_for_exit(Duration::from_secs(30)).expect("exits").success());
}

#[test]
fn sigkill_of_the_launcher_stops_every_remote_process() {
    let Some(s) = Sshd::start() else { return };
    let bin = s.remote_distd.display().to_string();
    let ssh = s.distd_ssh(&["127.0.0.{2,3}", "--remote-distd", &bin], "kill");
    s.wait_line("kill.out", "2 workers on 2 hosts", Duration::from_secs(30));
    assert!(!s.remote_pids().is_empty());
    // SIGKILL to the launcher alone, not its group: its ssh clients must notice by themselves.
    // SAFETY: a process this test started.
    unsafe {
        libc::kill(ssh.pid(), libc::SIGKILL);
    }
    s.wait_no_remote(Duration::from_secs(15));
    drop(ssh);
}

#[test]
fn a_remote_of_another_version_is_refused_before_anything_starts() {
    let Some(s) = Sshd::start() else { return };
    let fake = s.path("bin/fake-distd");
    std::fs::write(&fake, "#!/bin/sh\necho 'distd 9.9.9'\n").expect("fake");
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&fake)
        .status()
        .expect("chmod");
    let out = Command::new(env!("CARGO_BIN_EXE_distd"))
        .args(["ssh", "127.0.0.2", "127.0.0.3", "--remote-distd"])
        .arg(&fake)
        .arg("--ssh-config")
        .arg(s.path("ssh_config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("distd ssh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("9.9.9") && err.contains(env!("CARGO_PKG_VERSION")),
        "names both versions: {err}"
    );
    assert!(s.remote_pids().is_empty());
    // Nothing was started: no scheduler line was printed.
    let mut lines = BufReader::new(&out.stdout[..]).lines();
    assert!(lines.next().is_none());
}
