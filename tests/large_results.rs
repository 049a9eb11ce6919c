//! Results large next to a worker's memory limit: each goes to disk as it is stored, so the
//! next task has room to make its own, and the worker is never memory-killed for holding
//! them.

mod harness;

use harness::{start_scheduler, Sandbox};

/// The bytes of the built-in `blob` of `n` bytes.
fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Regression: a worker under a nanny with `--memory-limit 100MiB` holding one 45 MiB result
/// (under the 60% spill line, so it stayed in memory) was killed making the next one (the
/// two together cross the 95% kill line), again and again: a crash loop, and the run failed.
#[test]
fn results_of_half_the_memory_limit_go_to_disk_and_the_worker_survives() {
    let mut sb = Sandbox::new();
    let (_scheduler, addr) = start_scheduler(&mut sb, &[]);
    let worker = sb
        .worker(&addr)
        .name("small")
        .nthreads(1)
        .args(&["--memory-limit", "100MiB"])
        .start();
    let mut graph = String::new();
    for i in 0..4 {
        let out = sb.path(&format!("b{i}.out"));
        graph.push_str(&format!(
            "[[task]]\nkey = \"b{i}\"\nfunction = \"blob\"\nargs = \"{}MiB\"\noutput = \"{}\"\n\n",
            44 + i,
            out.display()
        ));
    }
    let file = sb.write("big.toml", &graph);
    let run = sb.run_graph("run", &file, &addr);
    run.assert_success();
    for i in 0..4 {
        let got = std::fs::read(sb.path(&format!("b{i}.out"))).expect("the output file");
        assert!(got == blob((44 + i) << 20), "b{i}: {} bytes, not the blob", got.len());
    }
    let log = sb.stderr(worker) + &sb.stdout(worker);
    assert!(!log.contains("died"), "the worker was never killed:\n{log}");
    assert!(sb.is_running(worker));
    sb.check_no_crashes();
}

/// One result of most of a bare worker's memory limit is stored (on disk) and gathered whole.
#[test]
fn a_result_of_most_of_the_memory_limit_is_gathered_exactly() {
    let mut sb = Sandbox::new();
    let (_scheduler, addr) = start_scheduler(&mut sb, &[]);
    let worker = sb
        .worker(&addr)
        .name("bare")
        .nthreads(1)
        .no_nanny()
        .args(&["--memory-limit", "100MiB"])
        .start();
    let out = sb.path("most.out");
    let graph = format!(
        "[[task]]\nkey = \"most\"\nfunction = \"blob\"\nargs = \"70MiB\"\noutput = \"{}\"\n",
        out.display()
    );
    let file = sb.write("most.toml", &graph);
    sb.run_graph("run", &file, &addr).assert_success();
    let got = std::fs::read(&out).expect("the output file");
    assert!(got == blob(70 << 20), "{} bytes, not the blob", got.len());
    assert!(sb.is_running(worker));
    sb.check_no_crashes();
}
