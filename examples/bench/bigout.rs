//! big-stdout: one command task writing a large stdout (`head -c N /dev/zero`) on a real
//! worker, timed from submission until the worker holds the result, beside the same bytes
//! through a plain pipe (`head -c N /dev/zero | cat > /dev/null`) in the same run, and through
//! a pipe into a file in the cluster's folder (`... | cat > FILE`): a result too large to hold
//! is written to disk, so on a machine whose disk is slower than its pipes the second is the
//! floor. Also reports the worker's peak resident size during each run (VmHWM, reset before
//! the run through `/proc/PID/clear_refs`), which must stay far under N.
//!
//! `BENCH_BIG_STDOUT=BYTES` overrides the size (e.g. to measure an older distd, which needs
//! minutes for 3 GB).

use crate::cluster::{Cluster, Workers};
use crate::procs::status_bytes;
use crate::report::{fail, num, whole, Context, Outcome, Report, Stats};
use crate::Bench;
use distd::{KeyStatus, TaskDesc};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Slowest rate (bytes per second) before a run counts as stuck.
const MIN_RATE: f64 = 5e6;

pub fn big_stdout(bench: &Bench) -> Outcome<Report> {
    let bytes = match std::env::var("BENCH_BIG_STDOUT") {
        Ok(v) => v
            .parse::<u64>()
            .context(format!("BENCH_BIG_STDOUT={v:?} is not a count of bytes"))?,
        Err(_) => bench.sizes.big_stdout_bytes,
    };
    let cluster = Cluster::start(&bench.env, &bench.cluster_label("big-stdout"), Workers::Plain(1))?;
    cluster.warm_up()?;
    let worker_pid = cluster
        .info()?
        .workers
        .first()
        .map(|w| w.pid)
        .context("the cluster has no worker")?;
    let limit = Duration::from_secs(30) + Duration::from_secs_f64(bytes as f64 / MIN_RATE);
    let file = bench.env.dir.join("big-stdout.reference");
    let (mut rates, mut piped, mut filed, mut ratios, mut peaks) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..bench.sizes.runs {
        let reset = reset_peak_rss(worker_pid);
        let key = cluster.client.unique_key("big-stdout");
        let n = bytes.to_string();
        let task = TaskDesc::command(key.clone(), ["head", "-c", n.as_str(), "/dev/zero"]);
        let start = Instant::now();
        cluster.client.submit(vec![task]).context("submitting the command")?;
        cluster.wait_finished(std::slice::from_ref(&key), limit)?;
        let secs = start.elapsed().as_secs_f64();
        match cluster.client.status(&key) {
            Some(KeyStatus::Finished { nbytes }) if nbytes == bytes => {}
            other => return fail(format!("the command finished as {other:?}, expected {bytes} bytes")),
        }
        let peak = status_bytes(worker_pid, "VmHWM")?;
        cluster.client.release(&[key]).context("releasing the result")?;
        wait_no_stored_bytes(&cluster)?;
        let rate = bytes as f64 / 1e6 / secs;
        let reference = pipe_rate(bytes, "/dev/null", limit)?;
        let to_file = pipe_rate(bytes, &file.display().to_string(), limit);
        let _ = std::fs::remove_file(&file);
        let to_file = to_file?;
        bench.progress(
            "big-stdout",
            run,
            &format!(
                "{rate:.0} MB/s, worker peak RSS {:.0} MB{}; plain pipe {reference:.0} MB/s, \
                 into a file {to_file:.0} MB/s",
                peak as f64 / 1e6,
                if reset { "" } else { " (since it started)" }
            ),
        );
        rates.push(rate);
        piped.push(reference);
        filed.push(to_file);
        ratios.push(rate / reference);
        peaks.push(peak as f64);
    }
    let peak = peaks.iter().cloned().fold(0.0, f64::max);
    Ok(Report::new("big-stdout", "MB/s", &rates)
        .param("bytes", bytes)
        .param("command", "head -c BYTES /dev/zero, its stdout the task's result")
        .field("reference", num(Stats::of(&piped).median))
        .field("reference_what", "head -c BYTES /dev/zero | cat > /dev/null")
        .field("ratio", num(Stats::of(&ratios).median))
        .field("reference_to_file", num(Stats::of(&filed).median))
        .field(
            "reference_to_file_what",
            "head -c BYTES /dev/zero | cat > FILE (next to the worker's folder)",
        )
        .field("worker_peak_rss_bytes", whole(peak)))
}

/// Resets the peak resident size of `pid` (its VmHWM) to its current size; false when the
/// kernel does not allow it, and then VmHWM is the peak since the worker started.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Waits until the worker dropped the released bytes, so the next run starts clean.
fn wait_no_stored_bytes(cluster: &Cluster) -> Outcome<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored: u64 = cluster.info()?.workers.iter().map(|w| w.stored_bytes).sum();
        if stored == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return fail(format!("the worker still holds {stored} bytes 30 s after the release"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `head -c BYTES /dev/zero | cat > TO` through `sh`; MB/s.
fn pipe_rate(bytes: u64, to: &str, limit: Duration) -> Outcome<f64> {
    let start = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c {bytes} /dev/zero | cat > '{to}'"))
        .stdin(Stdio::null())
        .spawn()
        .context("spawning the plain pipe")?;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the plain pipe")? {
            if !status.success() {
                return fail(format!("the plain pipe ended with {status}"));
            }
            return Ok(bytes as f64 / 1e6 / start.elapsed().as_secs_f64());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return fail(format!("the plain pipe took longer than {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
