//! Peers that do not speak distd properly: another version, garbage, truncated or oversized
//! frames, silence. Each is refused or dropped with a logged reason, and the cluster carries
//! on as if nothing happened.
//!
//! The test speaks the wire format by hand, from the layout documented in
//! `src/protocol/handshake.rs` (fixed across versions, so that it is the one thing a peer of
//! another version can always read): 8 bytes magic, `u32` LE protocol version, `u8` role,
//! `u8` length and the version string, `u8` guard (1: TLS follows), `u8` length and the
//! cluster id; the accepting side answers with its own hello and a verdict, `u8` 0
//! (accepted) or 1 (refused), `u16` LE length and a reason. Then TLS: frames after the
//! handshake (a `u32` LE length and that many bytes, at most 64 MiB) are written inside a
//! real TLS link ([`Secured`], distd's own dial with the cluster's credential).

mod harness;

use distd::protocol::Role;
use distd::protocol::{DISTD_VERSION, PROTOCOL_VERSION};
use harness::{host_port, Cluster, Outcome, Sandbox, Secured, DEADLINE};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MAGIC: &[u8; 8] = b"DISTD\x7fHS";
const ROLE_SCHEDULER: u8 = 1;
const ROLE_WORKER: u8 = 2;
const ROLE_CLIENT: u8 = 3;
const FRAME_CAP: u32 = 64 * 1024 * 1024;

/// A version no real distd has.
const OTHER_VERSION: &str = "9.9.9-test";
const OTHER_PROTOCOL: u32 = 99;

fn hello(protocol: u32, role: u8, version: &str) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&protocol.to_le_bytes());
    out.push(role);
    out.push(version.len() as u8);
    out.extend_from_slice(version.as_bytes());
    // Secured, no cluster id (a dialer's; an answer without one is never trusted anyway).
    out.extend_from_slice(&[1, 0]);
    out
}

fn our_hello(role: u8) -> Vec<u8> {
    hello(PROTOCOL_VERSION, role, DISTD_VERSION)
}

fn verdict(accepted: bool, reason: &str) -> Vec<u8> {
    let mut out = vec![if accepted { 0 } else { 1 }];
    out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

/// A hello as read off the wire.
#[derive(Debug, PartialEq)]
struct Hello {
    protocol: u32,
    role: u8,
    version: String,
}

fn read_hello(s: &mut TcpStream) -> Hello {
    let mut head = [0u8; 14];
    s.read_exact(&mut head).expect("a hello");
    assert_eq!(&head[..8], MAGIC, "the hello starts with the magic bytes");
    let mut version = vec![0u8; head[13] as usize];
    s.read_exact(&mut version).expect("the hello's version string");
    let mut guard = [0u8; 2];
    s.read_exact(&mut guard).expect("the hello's guard");
    let mut cluster = vec![0u8; guard[1] as usize];
    s.read_exact(&mut cluster).expect("the hello's cluster id");
    Hello {
        protocol: u32::from_le_bytes([head[8], head[9], head[10], head[11]]),
        role: head[12],
        version: String::from_utf8(version).expect("the version string is UTF-8"),
    }
}

/// The accepting side's answer: its hello, then the verdict.
fn read_answer(s: &mut TcpStream) -> (Hello, bool, String) {
    let theirs = read_hello(s);
    let mut v = [0u8; 3];
    s.read_exact(&mut v).expect("a verdict");
    let mut reason = vec![0u8; u16::from_le_bytes([v[1], v[2]]) as usize];
    s.read_exact(&mut reason).expect("the verdict's reason");
    assert!(v[0] <= 1, "verdict byte {}", v[0]);
    (
        theirs,
        v[0] == 0,
        String::from_utf8(reason).expect("the reason is UTF-8"),
    )
}

fn connect(address: &str) -> TcpStream {
    let s = TcpStream::connect(host_port(address)).expect("connect to the scheduler");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set a read timeout");
    s
}

/// A connection that completed the handshake, TLS included, as `role`.
fn connect_as(address: &str, role: u8) -> Secured {
    let role = match role {
        ROLE_WORKER => Role::Worker,
        ROLE_CLIENT => Role::Client,
        other => panic!("no test connects as role {other}"),
    };
    Secured::connect(address, role, Role::Scheduler)
}

/// A connection of the test, plain or secured.
trait Conn {
    /// Reads until the peer closes.
    fn drain(&mut self) -> std::io::Result<()>;
    fn port(&self) -> u16;
}

impl Conn for TcpStream {
    fn drain(&mut self) -> std::io::Result<()> {
        self.read_to_end(&mut Vec::new()).map(|_| ())
    }
    fn port(&self) -> u16 {
        self.local_addr().expect("a local address").port()
    }
}

impl Conn for Secured {
    fn drain(&mut self) -> std::io::Result<()> {
        self.read_to_end().map(|_| ())
    }
    fn port(&self) -> u16 {
        self.local.port()
    }
}

/// Fails the test unless the peer closes `s` (after whatever it still had to say).
fn assert_closed_by_peer(s: &mut impl Conn, what: &str) {
    match s.drain() {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: the connection was not closed: {e}"),
    }
}

/// The scheduler's log line about the connection from `s`, once it is written.
fn wait_for_close_log(cluster: &mut Cluster, s: &impl Conn) -> String {
    let port = s.port();
    let needle = format!("connection from 127.0.0.1:{port} closed:");
    let scheduler = cluster.scheduler;
    cluster.wait_for_stderr(scheduler, &needle, DEADLINE)
}

/// Shows that the cluster still works: a small graph runs and gives the right answer.
fn assert_graph_runs(cluster: &mut Cluster) {
    let out = cluster.run_graph(
        "still-works.toml",
        r#"
[[task]]
key = "numbers"
command = ["seq", "1", "100"]

[[task]]
key = "total"
function = "sum"
deps = ["numbers"]
"#,
    );
    out.assert_success();
    assert_eq!(out.stdout, "5050\n");
}

fn both_versions(text: &str) -> bool {
    text.contains(&format!("{OTHER_VERSION} (protocol {OTHER_PROTOCOL})"))
        && text.contains(&format!("{DISTD_VERSION} (protocol {PROTOCOL_VERSION})"))
}

/// A worker of another distd version is refused with a reason naming both versions, the
/// scheduler logs the same, and the cluster keeps working.
#[test]
fn a_peer_of_another_version_is_refused_naming_both_versions() {
    let mut cluster = Cluster::start(1);
    let address = cluster.address.clone();

    for (protocol, version, role) in [
        (OTHER_PROTOCOL, OTHER_VERSION, ROLE_WORKER),
        (OTHER_PROTOCOL, OTHER_VERSION, ROLE_CLIENT),
        // Same protocol, other build: refused too, one software environment per cluster.
        (PROTOCOL_VERSION, "0.0.0-other-build", ROLE_WORKER),
    ] {
        let mut s = connect(&address);
        s.write_all(&hello(protocol, role, version)).expect("send a hello");
        let (theirs, accepted, reason) = read_answer(&mut s);
        assert_eq!(
            theirs,
            Hello {
                protocol: PROTOCOL_VERSION,
                role: ROLE_SCHEDULER,
                version: DISTD_VERSION.to_string()
            }
        );
        assert!(!accepted, "a hello of {version} was accepted");
        let theirs = format!("{version} (protocol {protocol})");
        let ours = format!("{DISTD_VERSION} (protocol {PROTOCOL_VERSION})");
        assert!(reason.contains(&theirs) && reason.contains(&ours), "{reason}");
        assert_closed_by_peer(&mut s, "a refused hello");
        let line = wait_for_close_log(&mut cluster, &s);
        assert!(line.contains(&theirs) && line.contains(&ours), "{line}");
    }

    let scheduler = cluster.scheduler;
    assert!(cluster.is_running(scheduler), "the scheduler died");
    let info = cluster.wait_for_workers(1);
    assert_eq!(info["workers"][0]["name"].as_str(), Some("w0"));
    assert_graph_runs(&mut cluster);
    cluster.check_no_crashes();
}

/// What a fake scheduler in this test saw from `distd worker` and what the worker did.
struct FakeSchedulerRun {
    /// The hellos it received, in order (a nanny's, then its worker's).
    hellos: Vec<Hello>,
    /// How `distd worker` ended.
    out: Outcome,
    /// The address the worker was given.
    address: String,
}

impl FakeSchedulerRun {
    /// The hello of the worker itself (role 2).
    fn worker_hello(&self) -> &Hello {
        self.hellos
            .iter()
            .find(|h| h.role == ROLE_WORKER)
            .unwrap_or_else(|| panic!("no worker said hello: {:?}", self.hellos))
    }
}

/// Runs `distd worker` (with `flags`) against a fake scheduler that answers every hello
/// with `answer`, until the worker gives up.
fn worker_against_fake_scheduler(answer: Vec<u8>, flags: &[&str]) -> FakeSchedulerRun {
    let mut sb = Sandbox::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.set_nonblocking(true).expect("a non-blocking listener");
    let port = listener.local_addr().expect("a local address").port();
    let stop = Arc::new(AtomicBool::new(false));
    let fake = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut hellos = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => panic!("accept failed: {e}"),
                };
                s.set_nonblocking(false).expect("a blocking stream");
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("set a read timeout");
                hellos.push(read_hello(&mut s));
                // The peer may already have hung up; that is its business.
                let _ = s.write_all(&answer);
                // Held open until the peer closes it or gives up on it.
                std::thread::spawn(move || {
                    let _ = s.read_to_end(&mut Vec::new());
                });
            }
            hellos
        })
    };
    let address = format!("127.0.0.1:{port}");
    let out = sb.worker(&address).death_timeout("1s").args(flags).run();
    stop.store(true, Ordering::Relaxed);
    let hellos = fake.join().expect("the fake scheduler thread");
    out.assert_failure();
    assert!(!out.stdout.contains("registered"), "{}", out.describe());
    sb.check_no_crashes();
    FakeSchedulerRun { hellos, out, address }
}

/// A scheduler of another version that accepts anyway: the answer a worker checks itself.
fn accepting_other_version() -> Vec<u8> {
    let mut answer = hello(OTHER_PROTOCOL, ROLE_SCHEDULER, OTHER_VERSION);
    answer.extend_from_slice(&verdict(true, ""));
    answer
}

/// A scheduler of another version refusing with the reason a real one gives.
fn refusing_other_version() -> Vec<u8> {
    let reason = format!(
        "version mismatch: this scheduler runs distd {OTHER_VERSION} (protocol {OTHER_PROTOCOL}), \
         the worker runs distd {DISTD_VERSION} (protocol {PROTOCOL_VERSION}); every process of \
         a cluster must run the same distd"
    );
    let mut answer = hello(OTHER_PROTOCOL, ROLE_SCHEDULER, OTHER_VERSION);
    answer.extend_from_slice(&verdict(false, &reason));
    answer
}

/// A worker (without a nanny) meeting a scheduler of another version that accepts it
/// anyway: the worker checks for itself and stops with one line naming both versions.
#[test]
fn a_worker_leaves_a_scheduler_of_another_version() {
    let run = worker_against_fake_scheduler(accepting_other_version(), &["--no-nanny"]);
    assert_eq!(
        run.worker_hello(),
        &Hello {
            protocol: PROTOCOL_VERSION,
            role: ROLE_WORKER,
            version: DISTD_VERSION.to_string()
        }
    );
    let error = run.out.the_error();
    assert!(both_versions(error), "{error}");
    assert!(error.contains(&run.address), "{error}");
}

/// A worker (without a nanny) refused by a scheduler of another version shows why.
#[test]
fn a_worker_refused_by_a_scheduler_of_another_version_says_why() {
    let run = worker_against_fake_scheduler(refusing_other_version(), &["--no-nanny"]);
    let error = run.out.the_error();
    assert!(both_versions(error), "{error}");
    assert!(error.contains(&run.address), "{error}");
}

/// The same under a nanny (the default): it gives up too, and its last word names both
/// versions.
#[test]
fn a_nanny_and_its_worker_leave_a_scheduler_of_another_version() {
    for answer in [accepting_other_version(), refusing_other_version()] {
        let run = worker_against_fake_scheduler(answer, &[]);
        run.worker_hello();
        let errors = run.out.error_lines();
        let last = errors
            .last()
            .unwrap_or_else(|| panic!("no error line:\n{}", run.out.describe()));
        assert!(both_versions(last), "{last}");
    }
}

/// The same refusal with a terse reason: the worker knows both versions (its own, and the
/// one in the scheduler's hello), so its error should name them whatever the reason says.
#[test]
fn a_worker_refused_tersely_still_names_both_versions() {
    let mut answer = hello(OTHER_PROTOCOL, ROLE_SCHEDULER, OTHER_VERSION);
    answer.extend_from_slice(&verdict(false, "refused"));
    let run = worker_against_fake_scheduler(answer, &["--no-nanny"]);
    let error = run.out.the_error();
    assert!(both_versions(error), "{error}");
}

/// Regression test for a bug: a worker whose connection is closed or reset during the
/// handshake (as when it reconnects at the moment its scheduler dies and reaches the dying
/// socket) takes it for a refusal, "scheduler at ADDR refused this worker: Connection reset
/// by peer" (or "unexpected end of file"), and exits 78 at once, the status that tells its
/// nanny never to restart it. A scheduler that is restarted can lose its workers that way.
/// Expected: a transient I/O error is retried until `--death-timeout`, like a refused
/// connection; here the worker then meets the real scheduler and registers.
#[test]
fn a_worker_retries_after_a_connection_reset_during_the_handshake() {
    let mut sb = Sandbox::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("a local address").port();
    let address = format!("127.0.0.1:{port}");
    let worker = sb
        .worker(&address)
        .name("patient")
        .label("worker")
        .death_timeout("20s")
        .no_nanny()
        .spawn();
    // Accept the worker and hang up on it at once.
    let (s, _) = listener.accept().expect("the worker connects");
    drop(s);
    drop(listener);
    let (_scheduler, real) = harness::start_scheduler_on(&mut sb, port, &[]);
    sb.wait_for_stdout(worker, "registered with", DEADLINE);
    let info = harness::info(&mut sb, &real);
    assert!(harness::worker_entry(&info, "patient").is_some(), "{info}");
    sb.check_no_crashes();
}

/// Broken input on fresh connections, each handled on its own: logged with a reason, the
/// connection closed, the scheduler alive, the cluster working.
#[test]
fn bad_frames_are_logged_and_dropped_without_harm() {
    let mut cluster = Cluster::start(1);
    let address = cluster.address.clone();

    // Not distd at all: bad magic before any hello.
    let mut s = connect(&address);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
    assert_closed_by_peer(&mut s, "bad magic");
    let line = wait_for_close_log(&mut cluster, &s);
    assert!(line.contains("bad magic"), "{line}");

    // A role byte no distd knows.
    let mut s = connect(&address);
    s.write_all(&hello(PROTOCOL_VERSION, 9, DISTD_VERSION)).expect("send");
    assert_closed_by_peer(&mut s, "unknown role");
    let line = wait_for_close_log(&mut cluster, &s);
    assert!(line.contains("role"), "{line}");

    // A scheduler may not connect to a scheduler.
    let mut s = connect(&address);
    s.write_all(&our_hello(ROLE_SCHEDULER)).expect("send");
    let (_, accepted, reason) = read_answer(&mut s);
    assert!(!accepted);
    assert!(reason.contains("scheduler"), "{reason}");
    let line = wait_for_close_log(&mut cluster, &s);
    assert!(line.contains("may not connect"), "{line}");

    // Closed in the middle of the hello.
    let mut s = connect(&address);
    s.write_all(&MAGIC[..5]).expect("send");
    s.shutdown(Shutdown::Write).expect("half-close");
    assert_closed_by_peer(&mut s, "half a hello");
    wait_for_close_log(&mut cluster, &s);

    // After a valid hello: a frame whose bytes are no message, as a client and as a worker.
    for role in [ROLE_CLIENT, ROLE_WORKER] {
        let mut s = connect_as(&address, role);
        let mut frame = 8u32.to_le_bytes().to_vec();
        frame.extend_from_slice(&[0xff; 8]);
        s.write_all(&frame).expect("send");
        assert_closed_by_peer(&mut s, "garbage frame");
        let line = wait_for_close_log(&mut cluster, &s);
        assert!(line.contains("malformed"), "role {role}: {line}");
    }

    // Unframed garbage: its first four bytes read as a huge length.
    let mut s = connect_as(&address, ROLE_WORKER);
    s.write_all(b"\x13\x37 this is not a frame at all \x00\xff")
        .expect("send");
    assert_closed_by_peer(&mut s, "unframed garbage");
    let line = wait_for_close_log(&mut cluster, &s);
    assert!(line.contains("larger than the limit"), "{line}");

    // A frame cut short, then the connection closed.
    for role in [ROLE_CLIENT, ROLE_WORKER] {
        let mut s = connect_as(&address, role);
        let mut frame = 100u32.to_le_bytes().to_vec();
        frame.extend_from_slice(&[1; 10]);
        s.write_all(&frame).expect("send");
        s.shutdown_write();
        assert_closed_by_peer(&mut s, "truncated frame");
        let line = wait_for_close_log(&mut cluster, &s);
        assert!(line.contains("in the middle of a frame"), "role {role}: {line}");
    }

    // A length just above the cap is refused before any of it is sent.
    for role in [ROLE_CLIENT, ROLE_WORKER] {
        let mut s = connect_as(&address, role);
        s.write_all(&(FRAME_CAP + 1).to_le_bytes()).expect("send");
        assert_closed_by_peer(&mut s, "oversized frame");
        let line = wait_for_close_log(&mut cluster, &s);
        assert!(line.contains("larger than the limit"), "role {role}: {line}");
        assert!(line.contains(&(FRAME_CAP + 1).to_string()), "{line}");
    }

    let scheduler = cluster.scheduler;
    assert!(cluster.is_running(scheduler), "the scheduler died");
    // None of the fake workers registered; the real one is still there.
    let info = cluster.wait_for_workers(1);
    assert_eq!(info["workers"][0]["name"].as_str(), Some("w0"));
    assert_graph_runs(&mut cluster);
    cluster.check_no_crashes();
}

/// A connection that never says hello does not hold anything up, and is dropped after the
/// handshake timeout (10 s) with a logged reason.
#[test]
fn a_silent_connection_is_dropped_after_the_handshake_timeout() {
    let mut cluster = Cluster::start(1);
    let address = cluster.address.clone();
    let mut silent = connect(&address);
    let mut silent_client = connect_as(&address, ROLE_CLIENT);

    // Meanwhile, everything else works.
    assert_graph_runs(&mut cluster);

    assert_closed_by_peer(&mut silent, "a silent connection");
    let line = wait_for_close_log(&mut cluster, &silent);
    assert!(line.contains("handshake"), "{line}");

    // A client that said hello and then nothing is a legitimate idle client: still open.
    let mut buf = [0u8; 1024];
    loop {
        match silent_client.read_within(&mut buf, Duration::from_millis(200)) {
            // The welcome frame, and nothing after it.
            Ok(n) if n > 0 => continue,
            Ok(_) => panic!("an idle client was disconnected"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("an idle client was disconnected: {e}"),
        }
    }
    assert_graph_runs(&mut cluster);
    cluster.check_no_crashes();
}

/// A worker's peer port (where others fetch results) shrugs off the same kinds of garbage.
#[test]
fn a_workers_peer_port_survives_bad_peers() {
    let mut cluster = Cluster::start(2);
    let info = cluster.info();
    let peer = info["workers"][0]["address"]
        .as_str()
        .expect("a worker has an address")
        .to_string();
    let victim = if info["workers"][0]["name"].as_str() == Some("w0") {
        cluster.workers[0]
    } else {
        cluster.workers[1]
    };

    let mut s = connect(&peer);
    s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").expect("send");
    assert_closed_by_peer(&mut s, "bad magic to a peer port");

    let mut s = connect(&peer);
    s.write_all(&hello(OTHER_PROTOCOL, 5, OTHER_VERSION)).expect("send");
    let (theirs, accepted, reason) = read_answer(&mut s);
    assert_eq!(theirs.role, ROLE_WORKER);
    assert!(!accepted);
    assert!(both_versions(&reason), "{reason}");

    let mut s = Secured::connect(&peer, Role::Peer, Role::Worker);
    s.write_all(&(FRAME_CAP + 1).to_le_bytes()).expect("send");
    assert_closed_by_peer(&mut s, "oversized frame to a peer port");

    let needle = "peer connection from";
    cluster.wait_for_stderr(victim, needle, DEADLINE);
    assert!(cluster.is_running(victim));
    cluster.wait_for_workers(2);
    assert_graph_runs(&mut cluster);
    cluster.check_no_crashes();
}
