//! Secure by default, tried as an outsider would: real `distd` processes on loopback, and a
//! stranger (another user, or a host without a shared home) that has no credential, another
//! cluster's, a client's only, or runs with `--no-security`. Each test checks that nothing
//! happened (no marker file, no result, no worker) and the one line that says why.

mod harness;

use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// `tcp://127.0.0.1:PORT` -> `127.0.0.1:PORT`.
fn bare(address: &str) -> &str {
    address.strip_prefix("tcp://").unwrap_or(address)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// The access file the scheduler of `sb` left, and the folder it is in.
fn access_file(sb: &Sandbox) -> std::path::PathBuf {
    let dir = sb.path("data/distd/access");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().expect("one")
}

#[test]
fn a_client_without_the_credential_runs_nothing_and_is_told_where_it_looked() {
    let mut c = Cluster::start(1);
    let marker = c.sb.path("marker");
    let marker_arg = marker.to_str().expect("UTF-8").to_string();
    let address = c.address.clone();
    let out =
        c.sb.run_as_stranger("stranger submit", &["submit", &address, "--", "touch", &marker_arg]);
    out.assert_failure();
    let looked = c.sb.path("stranger/distd/access");
    assert_eq!(
        out.the_error(),
        format!(
            "distd: error: the scheduler at {} needs a credential; none found in {}; pass --access-file or --scheduler-file",
            bare(&address),
            looked.display()
        ),
        "{}",
        out.describe()
    );
    let graph = c.sb.write(
        "g.toml",
        &format!("[[task]]\nkey = \"t\"\ncommand = [\"touch\", \"{marker_arg}\"]\n"),
    );
    let graph = graph.to_str().expect("UTF-8").to_string();
    let out = c.sb.run_as_stranger(
        "stranger run",
        &["run", &graph, "--scheduler", &address, "--no-progress"],
    );
    out.assert_failure();
    assert!(out.the_error().contains("needs a credential"), "{}", out.describe());
    let out = c.sb.run_as_stranger("stranger info", &["info", &address]);
    out.assert_failure();
    assert!(out.the_error().contains("needs a credential"), "{}", out.describe());
    let out = c.sb.run_as_stranger("stranger restart", &["restart", &address]);
    out.assert_failure();
    // Each was refused in its handshake, before it could send anything, and has exited.
    assert!(!marker.exists(), "a stranger's command ran");
    // The owner, who has the credential, is served as before; by the time the owner's task
    // has run, a stranger's task queued on the same worker would have run too.
    let owners = c.sb.path("owners-marker");
    let out = c.submit(&[], &["touch", owners.to_str().expect("UTF-8")]);
    out.assert_success();
    assert!(owners.exists());
    assert!(!marker.exists(), "a stranger's command ran");
}

#[test]
fn a_would_be_worker_without_the_credential_never_registers_and_gets_no_task() {
    let mut c = Cluster::start(1);
    let address = c.address.clone();
    let out = c.sb.run_as_stranger(
        "stranger worker",
        &[
            "worker",
            &address,
            "--no-nanny",
            "--name",
            "intruder",
            "--death-timeout",
            "2s",
        ],
    );
    out.assert_failure();
    assert!(
        out.the_error().contains("needs a credential; none found in"),
        "{}",
        out.describe()
    );
    // A nanny fares no better.
    let out = c.sb.run_as_stranger(
        "stranger nanny",
        &["nanny", &address, "--name", "intruder", "--death-timeout", "2s"],
    );
    out.assert_failure();
    let info = c.info();
    let names: Vec<&str> = info["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, ["w0"], "{info}");
    let out = c.run_graph(
        "g.toml",
        "[[task]]\nkey = \"a\"\ncommand = [\"echo\", \"hi\"]\noutput = true\n",
    );
    out.assert_success();
}

#[test]
fn another_clusters_credential_is_refused_and_so_is_a_client_credential_as_a_worker() {
    let mut c = Cluster::start(1);
    let address = c.address.clone();
    let other = c.sb.path("other.toml");
    let other_arg = other.to_str().expect("UTF-8").to_string();
    c.sb.run("generate", &["access", "generate", &other_arg])
        .assert_success();
    assert_eq!(mode(&other), 0o600);
    let out = c.sb.run("info other", &["info", &address, "--access-file", &other_arg]);
    out.assert_failure();
    let line = out.the_error().to_string();
    assert!(
        line.starts_with(&format!(
            "distd: error: refused by {address}: our credential belongs to another cluster (ours is cluster "
        )),
        "{}",
        out.describe()
    );
    // A client-only copy of the right credential submits, and cannot join as a worker.
    let own = access_file(&c.sb);
    let client = c.sb.path("client.toml");
    let client_arg = client.to_str().expect("UTF-8").to_string();
    let own_arg = own.to_str().expect("UTF-8").to_string();
    c.sb.run("client-file", &["access", "client-file", &own_arg, &client_arg])
        .assert_success();
    let out = c.sb.run_as_stranger(
        "client info",
        &["info", &address, "--access-file", &client_arg, "--json"],
    );
    out.assert_success();
    let out = c.sb.run_as_stranger(
        "client as worker",
        &[
            "worker",
            &address,
            "--no-nanny",
            "--death-timeout",
            "2s",
            "--access-file",
            &client_arg,
        ],
    );
    out.assert_failure();
    assert!(
        out.the_error()
            .contains("our credential is a client's: it cannot connect as a worker"),
        "{}",
        out.describe()
    );
    c.wait_for_workers(1);
}

#[test]
fn a_peer_without_security_is_refused_naming_the_flag_either_way() {
    let mut c = Cluster::start(1);
    let address = c.address.clone();
    let out = c.sb.run("plain info", &["info", &address, "--no-security"]);
    out.assert_failure();
    assert!(out.the_error().contains("--no-security"), "{}", out.describe());
    // A scheduler that runs without security is refused by a secured client.
    let mut sb = Sandbox::new();
    let (_s, plain) = start_scheduler(&mut sb, &["--no-security"]);
    let out = sb.run("secured info", &["info", &plain]);
    out.assert_failure();
    assert!(
        out.the_error()
            .contains("the scheduler runs with --no-security and this client is secured"),
        "{}",
        out.describe()
    );
    // Both insecure, by name: it works.
    let out = sb.run("plain info", &["info", &plain, "--no-security", "--json"]);
    out.assert_success();
}

#[test]
fn access_files_are_their_owners_alone_and_a_loose_one_is_refused() {
    let mut c = Cluster::builder()
        .workers(1)
        .scheduler_args(&["--scheduler-file", "sched.json"])
        .start();
    let file = access_file(&c.sb);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().expect("folder")), 0o700);
    let sched = c.sb.path("sched.json");
    assert_eq!(mode(&sched), 0o600, "the scheduler file carries the credential");
    // A stranger given the scheduler file (a shared filesystem) joins as a worker.
    let sched_arg = sched.to_str().expect("UTF-8").to_string();
    let joiner = c.sb.spawn_as_stranger(
        "worker of file",
        &["worker", "--scheduler-file", &sched_arg, "--no-nanny", "--name", "w1"],
    );
    c.sb.allow_signal(joiner, libc::SIGTERM);
    c.wait_for_workers(2);
    c.sb.signal(joiner, libc::SIGTERM);
    c.wait_for_workers(1);
    // So does a stranger's every client command, given the file instead of an address.
    let marker = c.sb.path("marker");
    let marker_arg = marker.to_str().expect("UTF-8").to_string();
    let out = c.sb.run_as_stranger(
        "submit of file",
        &["submit", "--scheduler-file", &sched_arg, "--", "touch", &marker_arg],
    );
    out.assert_success();
    assert!(marker.exists(), "{}", out.describe());
    let out =
        c.sb.run_as_stranger("info of file", &["info", "--scheduler-file", &sched_arg, "--json"]);
    out.assert_success();
    assert!(out.stdout.contains("\"workers\""), "{}", out.describe());
    let graph = c.sb.write(
        "g.toml",
        "[[task]]\nkey = \"t\"\ncommand = [\"echo\", \"ran\"]\noutput = true\n",
    );
    let graph = graph.to_str().expect("UTF-8").to_string();
    let out = c.sb.run_as_stranger(
        "run of file",
        &["run", &graph, "--scheduler-file", &sched_arg, "--no-progress"],
    );
    out.assert_success();
    assert!(out.stdout.contains("ran"), "{}", out.describe());
    let out =
        c.sb.run_as_stranger("restart of file", &["restart", "--scheduler-file", &sched_arg]);
    out.assert_success();
    c.wait_for_workers(1);
    // DISTD_ACCESS_FILE serves a stranger as --access-file does, and any flag beats it:
    // with --no-security the scheduler refuses the plain client, naming the flag.
    let file_arg = file.to_str().expect("UTF-8").to_string();
    let by_env = format!("DISTD_ACCESS_FILE={file_arg}");
    let home = format!("XDG_DATA_HOME={}", c.sb.path("stranger").display());
    let address = c.address.clone();
    let out =
        c.sb.run_program("info by env", "env", &[&home, &by_env, distd_exe(), "info", &address]);
    out.assert_success();
    let out = c.sb.run_program(
        "plain info by env",
        "env",
        &[&home, &by_env, distd_exe(), "info", &address, "--no-security"],
    );
    out.assert_failure();
    assert!(
        out.the_error().contains("--no-security") && !out.the_error().contains("cannot be used with"),
        "{}",
        out.describe()
    );
    // Loosened, the access file is refused by name and mode, found or given.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = c.sb.run("loose", &["info", &address]);
    out.assert_failure();
    assert!(
        out.the_error().contains(&format!(
            "access file {} has mode 0644: others may read it; it must be its owner's alone (chmod 600 {})",
            file.display(),
            file.display()
        )),
        "{}",
        out.describe()
    );
    let out = c.sb.run("loose given", &["info", &address, "--access-file", &file_arg]);
    out.assert_code(78);
    assert!(out.the_error().contains("has mode 0644"), "{}", out.describe());
}

#[test]
fn the_access_file_of_a_killed_scheduler_is_swept_by_the_next_one() {
    let mut sb = Sandbox::new();
    let first = sb.spawn_daemon("first scheduler", &["scheduler", "--host", "127.0.0.1", "--port", "0"]);
    sb.wait_for_stdout(first, "scheduler at", DEADLINE);
    let left = access_file(&sb);
    sb.allow_signal(first, libc::SIGKILL);
    sb.signal(first, libc::SIGKILL);
    sb.wait_exit(first, DEADLINE);
    assert!(left.exists(), "a killed scheduler cannot remove its own access file");
    let second = sb.spawn_daemon("second scheduler", &["scheduler", "--host", "127.0.0.1", "--port", "0"]);
    sb.wait_for_stdout(second, "scheduler at", DEADLINE);
    assert!(!left.exists(), "the killed scheduler's access file is still there");
    assert_ne!(
        access_file(&sb),
        left,
        "the second scheduler's own file is there, alone"
    );
}

#[test]
fn garbage_and_plain_tcp_on_a_tls_port_are_closed_and_everyone_else_is_served() {
    use std::io::{Read, Write};
    let mut c = Cluster::start(1);
    let address = c.address.clone();
    // Garbage, a plain-TCP hello, and a hello followed by garbage instead of TLS.
    let mut plain_hello =
        distd::protocol::Hello::ours(distd::protocol::Role::Client, distd::protocol::Guard::Secured, None).encode();
    for payload in [b"GET / HTTP/1.0\r\n\r\n".to_vec(), {
        plain_hello.extend_from_slice(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5, 0xff, 0xff]);
        plain_hello.clone()
    }] {
        let mut s = std::net::TcpStream::connect(bare(&address)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        s.write_all(&payload).expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    c.sb.wait_for_stderr(c.scheduler, "handshake refused", DEADLINE);
    let out = c.run_graph(
        "g.toml",
        "[[task]]\nkey = \"a\"\ncommand = [\"echo\", \"hi\"]\noutput = true\n",
    );
    out.assert_success();
}

/// The marker is split so that this test's own argv (and the graph file's name) does not
/// carry it whole.
fn marker() -> String {
    format!("{}{}", "PLAINTEXT", "-MARKER-7f3a9c")
}

/// Runs a graph whose argv, environment and result carry the marker while tcpdump captures
/// loopback; returns whether the capture holds it.
fn marker_on_the_wire(extra: &[&str]) -> Option<bool> {
    let tcpdump = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let mut sb = Sandbox::new();
    let mut sched_args = vec![];
    sched_args.extend_from_slice(extra);
    let (_s, address) = start_scheduler(&mut sb, &sched_args);
    let port = bare(&address).rsplit(':').next().expect("port").to_string();
    let mut w = sb.worker(&address).name("w0").no_nanny();
    for a in extra {
        w = w.arg(a);
    }
    let w = w.spawn();
    sb.wait_for_stdout(w, "registered with ", DEADLINE);
    let capture = sb.path("wire.pcap");
    let capture_arg = capture.to_str().expect("UTF-8").to_string();
    // Every TCP packet on loopback: the scheduler's port and the workers' peer ports.
    let dump = sb.spawn_program_daemon(
        "tcpdump",
        tcpdump,
        // Immediate mode: this sandbox's packet ring otherwise hands tcpdump nothing.
        &[
            "--immediate-mode",
            "-Z",
            "root",
            "-i",
            "lo",
            "-U",
            "-s",
            "0",
            "-w",
            &capture_arg,
            "tcp",
        ],
    );
    sb.allow_signal(dump, libc::SIGTERM);
    sb.wait_for_stderr(dump, "listening on", DEADLINE);
    let m = marker();
    let graph = sb.write(
        "g.toml",
        &format!(
            "[[task]]\nkey = \"a\"\ncommand = [\"sh\", \"-c\", \"echo $SECRET; echo {half}$HALF\"]\nenv = {{ SECRET = \"{m}\", HALF = \"{rest}\" }}\n\n[[task]]\nkey = \"b\"\ncommand = [\"cat\"]\ndeps = [\"a\"]\nstdin = \"a\"\noutput = true\n",
            half = &m[..9],
            rest = &m[9..],
        ),
    );
    let graph = graph.to_str().expect("UTF-8").to_string();
    let mut args = vec!["run", graph.as_str(), "--scheduler", address.as_str(), "--no-progress"];
    args.extend_from_slice(extra);
    let out = sb.run("run", &args);
    out.assert_success();
    assert!(
        out.stdout.contains(&m),
        "the run printed its result: {}",
        out.describe()
    );
    // Let tcpdump write what it saw, then stop it.
    std::thread::sleep(Duration::from_millis(500));
    sb.signal(dump, libc::SIGTERM);
    sb.wait_exit(dump, DEADLINE);
    let bytes = std::fs::read(&capture).expect("the capture");
    assert!(bytes.len() > 1000, "tcpdump captured the run: {} bytes", bytes.len());
    let _ = port;
    Some(bytes.windows(m.len()).any(|w| w == m.as_bytes()))
}

#[test]
fn nothing_on_the_wire_is_plaintext_and_without_security_it_is() {
    let Some(secured) = marker_on_the_wire(&[]) else {
        eprintln!("SKIPPED: no tcpdump here (.ci/run installs it)");
        return;
    };
    assert!(!secured, "the marker crossed loopback in the clear");
    let plain = marker_on_the_wire(&["--no-security"]).expect("tcpdump ran once already");
    assert!(
        plain,
        "with --no-security the marker is on the wire: the check can fail"
    );
}

/// A TCP connection to `to` from `from` (another loopback address standing in for another
/// host), through libc: std cannot bind before it connects.
fn connect_from(from: [u8; 4], to: std::net::SocketAddrV4) -> Option<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns until it hands it over.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return None;
        }
        let local = sockaddr(from, 0);
        let remote = sockaddr(to.ip().octets(), to.port());
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0
            || libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0
        {
            libc::close(fd);
            return None;
        }
        Some(std::net::TcpStream::from_raw_fd(fd))
    }
}

/// 1,000 connections that never handshake, from 16 other "hosts", opened while a graph
/// runs: the graph finishes, a client from this host is served at once meanwhile, and the
/// scheduler's memory comes back once they are gone.
#[test]
fn a_thousand_silent_connections_lock_nobody_out_and_cost_nothing_after() {
    let mut c = Cluster::start(2);
    let pid = c.sb.pid(c.scheduler);
    let rss = |pid: i32| harness::procfs::status_bytes(pid, "VmRSS").expect("VmRSS");
    let to: std::net::SocketAddrV4 = bare(&c.address).parse().expect("an IPv4 address");
    let address = c.address.clone();
    let mut graph = String::new();
    for i in 0..200 {
        graph.push_str(&format!(
            "[[task]]\nkey = \"t{i}\"\ncommand = [\"sleep\", \"0.02\"]\n\n"
        ));
    }
    // Once before, so that what the graph itself leaves in the allocator is in `before`.
    c.run_graph("warm.toml", &graph).assert_success();
    let before = rss(pid);
    let run = c.spawn_graph("g.toml", &graph);
    // The flood comes once the run is under way (its client connected, its tasks in).
    c.sb.wait_until("the graph's tasks at the scheduler", DEADLINE, |sb| {
        let tasks = &info(sb, &address)["tasks"];
        let any = tasks.as_array().is_some_and(|a| !a.is_empty()) || tasks.as_object().is_some_and(|o| !o.is_empty());
        any.then_some(())
    });
    let mut held = Vec::new();
    for i in 0..1000u32 {
        let host = [127, 0, 1, 2 + (i % 16) as u8];
        if let Some(s) = connect_from(host, to) {
            held.push(s);
        }
    }
    assert!(held.len() >= 900, "only {} connections opened", held.len());
    // Meanwhile a client of this host is served.
    c.sb.run("info meanwhile", &["info", &address, "--json"])
        .assert_success();
    c.sb.wait_exit(run, DEADLINE).assert_success();
    let during = rss(pid);
    drop(held);
    // Back to where it was, give or take the allocator's slack.
    let back =
        c.sb.poll_until(DEADLINE, |_| (rss(pid) < before + (8 << 20)).then_some(()));
    assert!(
        back.is_some(),
        "the scheduler went from {before} to {during} bytes and stayed at {}",
        rss(pid)
    );
    c.sb.run("info after", &["info", &address, "--json"]).assert_success();
}

/// An organisation's CA and one certificate it signed for this host (127.0.0.1 and
/// localhost), written as PEM files into the sandbox under `stem`; their paths as flags.
fn enterprise(sb: &Sandbox, stem: &str) -> Vec<String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca.distinguished_name.push(DnType::CommonName, format!("{stem} CA"));
    let ca = ca.self_signed(&ca_key).expect("the CA");
    let key = KeyPair::generate().expect("a key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf params")
        .signed_by(&key, &ca, &ca_key)
        .expect("the certificate");
    let ca_path = sb.write(&format!("{stem}-ca.pem"), &ca.pem());
    let cert_path = sb.write(&format!("{stem}-cert.pem"), &leaf.pem());
    let key_path = sb.write(&format!("{stem}-key.pem"), &key.serialize_pem());
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let s = |p: std::path::PathBuf| p.to_str().expect("UTF-8").to_string();
    vec![
        "--tls-ca-file".into(),
        s(ca_path),
        "--tls-cert".into(),
        s(cert_path),
        "--tls-key".into(),
        s(key_path),
    ]
}

#[test]
fn an_organisations_certificates_work_end_to_end_and_a_wrong_ca_is_refused() {
    let mut sb = Sandbox::new();
    let ours = enterprise(&sb, "org");
    let flags: Vec<&str> = ours.iter().map(String::as_str).collect();
    let (_s, address) = start_scheduler(&mut sb, &flags);
    let w = sb.worker(&address).name("w0").no_nanny().args(&flags).spawn();
    sb.wait_for_stdout(w, "registered with ", DEADLINE);
    // Two tasks on one worker, the second gathering the first's result from its peer port.
    let graph = sb.write(
        "g.toml",
        "[[task]]\nkey = \"a\"\ncommand = [\"echo\", \"org\"]\n\n[[task]]\nkey = \"b\"\ncommand = [\"cat\"]\ndeps = [\"a\"]\nstdin = \"a\"\noutput = true\n",
    );
    let graph = graph.to_str().expect("UTF-8").to_string();
    let mut args = vec!["run", graph.as_str(), "--scheduler", address.as_str(), "--no-progress"];
    args.extend_from_slice(&flags);
    let out = sb.run_as_stranger("run", &args);
    out.assert_success();
    assert_eq!(out.stdout, "org\n", "{}", out.describe());
    // Another CA's certificate is refused.
    let theirs = enterprise(&sb, "other");
    let mut args = vec!["info", address.as_str()];
    args.extend(theirs.iter().map(String::as_str));
    let out = sb.run_as_stranger("wrong CA", &args);
    out.assert_failure();
    assert!(
        out.the_error().contains("our credential belongs to another cluster"),
        "{}",
        out.describe()
    );
    // No credential at all: refused as for a generated one.
    let out = sb.run_as_stranger("no credential", &["info", &address]);
    out.assert_failure();
    assert!(out.the_error().contains("needs a credential"), "{}", out.describe());
}
