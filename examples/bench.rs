//! `make bench`: starts a real cluster (`distd scheduler` and 2 `distd worker --nthreads 1`
//! processes on 127.0.0.1), runs each workload a few times through the Rust client, and
//! prints one JSON line per workload.

use distd::{Client, TaskDesc};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

/// The cluster's processes, killed when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn distd_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/release/examples/bench -> target/release/distd
    exe.parent().and_then(|p| p.parent()).expect("target dir").join("distd")
}

fn start_cluster() -> (Procs, String) {
    let bin = distd_bin();
    let mut sched = Command::new(&bin)
        .args(["scheduler", "--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scheduler");
    let mut line = String::new();
    BufReader::new(sched.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("scheduler address");
    let addr = line
        .trim()
        .strip_prefix("scheduler at ")
        .expect("address line")
        .to_string();
    let mut procs = Procs(vec![sched]);
    let dir = std::env::temp_dir().join("distd-bench");
    for i in 0..2 {
        let w = Command::new(&bin)
            .args(["worker", &addr, "--nthreads", "1", "--name", &format!("bench-{i}")])
            .arg("--local-directory")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start worker");
        procs.0.push(w);
    }
    let client = Client::connect(&addr).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.info().expect("info").workers.len() < 2 {
        assert!(Instant::now() < deadline, "workers did not register");
        std::thread::sleep(Duration::from_millis(10));
    }
    (procs, addr)
}

fn report(name: &str, params: &str, unit: &str, samples: &mut [f64]) {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let median = samples[samples.len() / 2];
    println!(
        "{{\"name\":\"{name}\",\"params\":{params},\"unit\":\"{unit}\",\"median\":{median:.1},\"min\":{:.1},\"max\":{:.1},\"runs\":{},\"cores\":{}}}",
        samples[0],
        samples[samples.len() - 1],
        samples.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
}

fn map_noop(client: &Client, n: usize) -> f64 {
    let tasks: Vec<TaskDesc> = (0..n)
        .map(|_| TaskDesc::function(client.unique_key("noop"), "noop", Vec::new()))
        .collect();
    let start = Instant::now();
    let keys = client.submit(tasks).expect("submit");
    client.gather(&keys).expect("gather");
    let rate = n as f64 / start.elapsed().as_secs_f64();
    client.release(&keys).expect("release");
    rate
}

fn chain(client: &Client, n: usize) -> f64 {
    let mut tasks = Vec::with_capacity(n);
    let mut prev: Option<String> = None;
    for _ in 0..n {
        let key = client.unique_key("chain");
        let mut t = TaskDesc::function(key.clone(), "noop", Vec::new());
        if let Some(p) = prev.take() {
            t = t.with_deps([p]);
        }
        prev = Some(key);
        tasks.push(t);
    }
    let last = prev.expect("n > 0");
    let start = Instant::now();
    client.submit_wanting(tasks, vec![last.clone()]).expect("submit");
    client.wait(std::slice::from_ref(&last)).expect("wait");
    let rate = n as f64 / start.elapsed().as_secs_f64();
    client.release(&[last]).expect("release");
    rate
}

fn latency(client: &Client, n: usize) -> (f64, f64) {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let key = client.unique_key("lat");
        let start = Instant::now();
        client
            .submit(vec![TaskDesc::function(key.clone(), "noop", Vec::new())])
            .expect("submit");
        client.wait(std::slice::from_ref(&key)).expect("wait");
        lat.push(start.elapsed().as_secs_f64() * 1e6);
        client.release(&[key]).expect("release");
    }
    lat.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    (lat[n / 2], lat[n * 99 / 100])
}

fn main() {
    let (_procs, addr) = start_cluster();
    let client = Client::connect(&addr).expect("connect");
    let n = 100_000;
    let mut s: Vec<f64> = (0..RUNS).map(|_| map_noop(&client, n)).collect();
    report("map-noop", &format!("{{\"tasks\":{n}}}"), "tasks/s", &mut s);
    let n = 10_000;
    let mut s: Vec<f64> = (0..RUNS).map(|_| chain(&client, n)).collect();
    report("chain", &format!("{{\"tasks\":{n}}}"), "tasks/s", &mut s);
    let n = 1_000;
    let runs: Vec<(f64, f64)> = (0..RUNS).map(|_| latency(&client, n)).collect();
    let mut p50: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let mut p99: Vec<f64> = runs.iter().map(|r| r.1).collect();
    report("latency-p50", &format!("{{\"tasks\":{n}}}"), "us", &mut p50);
    report("latency-p99", &format!("{{\"tasks\":{n}}}"), "us", &mut p99);
}
