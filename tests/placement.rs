//! Where tasks run and how their results travel: worker restrictions, resources, and large
//! results fetched by peers and gathered by the client.

mod harness;

use harness::{start_scheduler, Cluster, Sandbox};

/// Tasks restricted to a worker, or needing a resource only one worker has, run there; a
/// command's parent is the worker process that ran it (the pid `distd info` shows).
#[test]
fn restrictions_and_resources_decide_where_tasks_run() {
    let mut sb = Sandbox::new();
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    sb.worker(&address).name("plain").nthreads(2).start();
    sb.worker(&address)
        .name("gpu")
        .nthreads(2)
        .args(&["--resources", "GPU=1"])
        .start();
    let info = sb.wait_for_workers(&address, 2);
    // The worker processes themselves (the children of the nannies the test started).
    let pid_of = |name: &str| {
        harness::worker_entry(&info, name)
            .and_then(|w| w["pid"].as_i64())
            .map(|p| p as i32)
    };
    let (plain_pid, gpu_pid) = (pid_of("plain").expect("plain's pid"), pid_of("gpu").expect("gpu's pid"));
    let mut graph = String::new();
    for i in 0..4 {
        graph.push_str(&format!(
            "[[task]]\nkey = \"pinned-{i}\"\nshell = \"echo $PPID\"\nworkers = [\"plain\"]\noutput = true\n\n\
             [[task]]\nkey = \"needs-gpu-{i}\"\nshell = \"sleep 0.1; echo $PPID\"\nresources = {{ GPU = 1 }}\noutput = true\n\n"
        ));
    }
    let path = sb.write("placed.toml", &graph);
    let out = sb.run_graph("run placed", &path, &address);
    out.assert_success();
    let pids: Vec<i32> = out
        .stdout
        .lines()
        .map(|l| l.trim().parse().expect("a pid per line"))
        .collect();
    assert_eq!(pids.len(), 8, "{}", out.describe());
    for (i, pid) in pids.iter().enumerate() {
        let expected = if i % 2 == 0 { plain_pid } else { gpu_pid };
        assert_eq!(*pid, expected, "task {i} ran on the wrong worker: {}", out.describe());
    }
    sb.check_no_crashes();
}

/// A result larger than the 64 MiB frame cap goes from one worker to another and to the
/// client intact.
#[test]
fn a_result_larger_than_a_frame_travels_between_workers_and_to_the_client() {
    let mut cluster = Cluster::start(2);
    let blob = cluster.path("blob.bin");
    let graph = format!(
        r#"
[[task]]
key = "big"
function = "blob"
args = "70MiB"
workers = ["w0"]
output = "{blob}"

[[task]]
key = "checksum"
shell = "wc -c < {{dep:big}}; cksum < {{dep:big}}"
deps = ["big"]
workers = ["w1"]
output = true
"#,
        blob = blob.display()
    );
    let out = cluster.run_graph("big.toml", &graph);
    out.assert_success();
    let bytes = std::fs::read(&blob).expect("the blob was written");
    assert_eq!(bytes.len(), 70 * 1024 * 1024);
    // The built-in blob repeats 0, 1, ..., 250.
    let pattern: Vec<u8> = (0..251u8).collect();
    assert!(
        bytes.chunks(251).all(|c| c == &pattern[..c.len()]),
        "the blob's bytes changed on the way"
    );
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next().map(str::trim), Some("73400320"), "{}", out.describe());
    // The same checksum as the file the client wrote: w1 got the same bytes from w0.
    let local = std::process::Command::new("cksum")
        .stdin(std::fs::File::open(&blob).expect("open the blob"))
        .output()
        .expect("run cksum");
    assert_eq!(lines.next(), Some(String::from_utf8_lossy(&local.stdout).trim()));
    cluster.check_no_crashes();
}
