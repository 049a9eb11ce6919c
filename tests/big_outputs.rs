//! Commands with large outputs on a real worker: a 300 MB stdout is the task's result, exact,
//! and a 300 MB stderr ends in the error's tail, while the worker's peak memory stays far
//! under the output's size (stdout past 64 MiB goes to a file as it comes; of stderr only the
//! tail is kept).

mod harness;

use harness::{start_scheduler, Sandbox};
use std::io::Read;

/// The bytes each command writes.
const BIG: u64 = 300_000_000;

/// The worker's peak memory must stay under this: well under `BIG`, above the 64 MiB a
/// command's stdout may take in memory plus the worker's own few MB.
const PEAK_BOUND: u64 = 150 << 20;

/// One line of the stdout pattern (`yes LINE`), 37 bytes with its newline.
const LINE: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

/// The peak resident size of `pid` (VmHWM), in bytes.
fn peak_rss(pid: i32) -> u64 {
    harness::procfs::status_bytes(pid, "VmHWM").expect("VmHWM in /proc/PID/status")
}

/// Regression: a command writing 1 GB to stdout took 62.5 s (3.4 s through a plain pipe) and
/// held it all in memory; 300 MB of stdout took the worker past 500 MB.
#[test]
fn a_300_mb_stdout_is_the_exact_result_and_the_worker_stays_small() {
    let mut sb = Sandbox::new();
    let (_scheduler, addr) = start_scheduler(&mut sb, &[]);
    let worker = sb.worker(&addr).name("w").nthreads(1).no_nanny().start();
    let out = sb.path("big.out");
    let graph = format!(
        "[[task]]\nkey = \"big\"\nshell = \"yes {LINE} | head -c {BIG}\"\noutput = \"{}\"\n",
        out.display()
    );
    let file = sb.write("big.toml", &graph);
    sb.run_graph("run", &file, &addr).assert_success();
    let peak = peak_rss(sb.pid(worker));

    let mut got = std::fs::File::open(&out).expect("the output file");
    assert_eq!(got.metadata().expect("its size").len(), BIG, "the whole stdout");
    let line = format!("{LINE}\n").into_bytes();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = got.read(&mut buf).expect("readable output");
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            let pos = at + i as u64;
            assert_eq!(b, line[(pos % line.len() as u64) as usize], "byte {pos} of the result");
        }
        at += n as u64;
    }
    assert!(
        peak < PEAK_BOUND,
        "the worker peaked at {} MB for a {} MB stdout",
        peak >> 20,
        BIG >> 20
    );
    assert!(sb.is_running(worker));
    sb.check_no_crashes();
}

/// Regression: stderr was buffered whole to keep its last 2000 bytes: 300 MB of stderr took
/// the worker to 534 MB.
#[test]
fn a_300_mb_stderr_ends_in_the_error_and_the_worker_stays_small() {
    let mut sb = Sandbox::new();
    let (_scheduler, addr) = start_scheduler(&mut sb, &[]);
    let worker = sb.worker(&addr).name("w").nthreads(1).no_nanny().start();
    let graph = format!(
        "[[task]]\nkey = \"noisy\"\n\
         shell = \"yes some noise on stderr | head -c {BIG} >&2; echo the very last line >&2; exit 3\"\n"
    );
    let file = sb.write("noisy.toml", &graph);
    let run = sb.run_graph("run", &file, &addr);
    run.assert_failure();
    let peak = peak_rss(sb.pid(worker));
    let error = run
        .stderr
        .lines()
        .find(|l| l.contains("\"noisy\""))
        .unwrap_or_else(|| panic!("no line names the task:\n{}", run.describe()));
    assert!(error.contains("exited with status 3"), "{error}");
    // The tail: the noise (cut wherever `head` cut it) up to the command's last line.
    assert!(error.contains("some noise on stderr | some"), "{error}");
    assert!(error.ends_with("the very last line"), "{error}");
    assert!(error.len() < 4000, "only the tail of stderr: {} bytes", error.len());
    assert!(
        peak < PEAK_BOUND,
        "the worker peaked at {} MB for a {} MB stderr",
        peak >> 20,
        BIG >> 20
    );
    assert!(sb.is_running(worker));
    sb.check_no_crashes();
}
