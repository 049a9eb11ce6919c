//! Submissions of any size and memory bounded by what arrived (issue 11), against a real
//! `distd scheduler` and `distd worker` processes on loopback.
//!
//! - A peer that declares a frame of the largest size and sends one byte costs the scheduler
//!   what arrived, not what was declared (before: ten of them took it from 6.5 to 662 MB).
//! - A submission bigger than a frame is sent in parts and runs whole, with the right results
//!   (before: "lost the scheduler: connection closed").
//! - A task too big for any frame is refused before anything is sent, naming it and the limit.
//! - A client whose frame the scheduler will not read is told why before the connection ends.

mod harness;

use distd::protocol::{Role, MAX_FRAME_LEN};
use distd::{Client, ClientError, TaskDesc};
use harness::{Cluster, Secured};
use std::io::ErrorKind;
use std::time::{Duration, Instant};

/// A connection that passed the handshake (TLS included) as a client, its welcome frame
/// unread: the frames the test writes go inside real TLS.
fn raw_client(address: &str) -> Secured {
    Secured::connect(address, Role::Client, Role::Scheduler)
}

/// The resident size of `pid` in bytes, from `/proc/PID/status`.
fn rss(pid: i32) -> u64 {
    harness::procfs::status_bytes(pid, "VmRSS").expect("VmRSS in /proc/PID/status")
}

#[test]
fn frames_declared_but_not_sent_cost_the_scheduler_nothing() {
    let mut cluster = Cluster::start(1);
    let pid = cluster.pid(cluster.scheduler);
    let before = rss(pid);
    let peers: Vec<Secured> = (0..16)
        .map(|_| {
            let mut s = raw_client(&cluster.address);
            // A frame of the largest size accepted, and its first byte.
            s.write_all(&(MAX_FRAME_LEN as u32).to_le_bytes())
                .expect("send a length");
            s.write_all(&[0]).expect("send a byte");
            s
        })
        .collect();
    // The scheduler reads each length as it arrives; a buffer sized by it would be resident
    // (zeroed) at once. Watch for a while.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut most = before;
    while Instant::now() < deadline {
        most = most.max(rss(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = most.saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "16 connections that declared {MAX_FRAME_LEN} bytes and sent 1 took the scheduler from {before} to {most} bytes"
    );
    // They are still connected, waiting for the rest, and the cluster works meanwhile.
    let out = cluster.run_graph(
        "still-works.toml",
        "[[task]]\nkey = \"numbers\"\ncommand = [\"seq\", \"1\", \"100\"]\n\n\
         [[task]]\nkey = \"total\"\nfunction = \"sum\"\ndeps = [\"numbers\"]\n",
    );
    out.assert_success();
    assert_eq!(out.stdout, "5050\n");
    drop(peers);
    cluster.check_no_crashes();
}

#[test]
fn a_submission_bigger_than_a_frame_runs_whole() {
    let mut cluster = Cluster::start(2);
    let client = Client::connect(&cluster.address).expect("connect");
    // 70 tasks of 1 MB each: 70 MB in one call, over the 64 MiB frame. Each is a command
    // that prints its index (its padding is ten unused arguments, each under the kernel's
    // limit for one); the last sums all of them, so it depends on tasks of earlier parts.
    let n = 70;
    let padding = "p".repeat(100_000);
    let mut tasks: Vec<TaskDesc> = (0..n)
        .map(|i| {
            let mut argv = vec!["sh".to_string(), "-c".into(), "echo \"$0\"".into(), i.to_string()];
            argv.extend(std::iter::repeat_n(padding.clone(), 10));
            TaskDesc::command(format!("big-{i}"), argv)
        })
        .collect();
    tasks.push(TaskDesc::function("total", "sum", Vec::new()).with_deps((0..n).map(|i| format!("big-{i}"))));
    let size: usize = tasks.iter().map(|t| t.key.len() + 1_000_000).sum();
    assert!(size > MAX_FRAME_LEN, "the submission is bigger than a frame");
    let keys = client.submit(tasks).expect("a big submission is sent");
    let results = client.gather(&keys).expect("every task of it runs");
    for (i, r) in results[..n].iter().enumerate() {
        assert_eq!(String::from_utf8_lossy(r), format!("{i}\n"), "big-{i}");
    }
    assert_eq!(String::from_utf8_lossy(&results[n]), (n * (n - 1) / 2).to_string());
    cluster.check_no_crashes();
}

#[test]
fn a_task_too_big_for_any_frame_is_refused_naming_it_and_the_limit() {
    let mut cluster = Cluster::start(1);
    let client = Client::connect(&cluster.address).expect("connect");
    let huge = TaskDesc::command("huge", ["echo".to_string(), "x".repeat(MAX_FRAME_LEN)]);
    let err = client
        .submit(vec![TaskDesc::function("small", "noop", Vec::new()), huge])
        .expect_err("a task bigger than a frame cannot be sent");
    let text = err.to_string();
    assert!(matches!(err, ClientError::SubmitTooLarge(_)), "{text}");
    assert!(text.contains("task \"huge\""), "{text}");
    assert!(text.contains("limit of"), "{text}");
    assert!(text.contains(&MAX_FRAME_LEN.to_string()), "{text}");
    // Nothing of it was sent, and the connection still works.
    assert!(client.status("small").is_none(), "the refused submission sent nothing");
    let keys = client
        .submit(vec![TaskDesc::function("after", "identity", b"ok".to_vec())])
        .expect("the connection is still up");
    assert_eq!(client.gather(&keys).expect("it runs"), [b"ok".to_vec()]);
    cluster.check_no_crashes();
}

#[test]
fn a_client_sending_a_frame_over_the_limit_is_told_why() {
    let mut cluster = Cluster::start(0);
    let mut s = raw_client(&cluster.address);
    s.write_all(&(MAX_FRAME_LEN as u32 + 1).to_le_bytes())
        .expect("send a length");
    // Everything up to the close: the welcome frame, then the reason.
    let mut told = Vec::new();
    match s.read_to_end() {
        Ok(all) => told = all,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not closed: {e}"),
    }
    let told = String::from_utf8_lossy(&told);
    let limit = format!("larger than the limit of {MAX_FRAME_LEN} bytes");
    assert!(told.contains(&limit), "the client was told {told:?}");
    let scheduler = cluster.scheduler;
    assert!(cluster.is_running(scheduler));
    cluster.check_no_crashes();
}
