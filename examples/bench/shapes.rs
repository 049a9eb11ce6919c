//! Wide graph shapes on a real 2-worker cluster, each in tasks/s to set beside map-noop:
//! fan-in (one task over many noop inputs), fan-out (many tasks over one input) and
//! many-outputs (`distd run`, the real binary, of a graph file whose every task is an
//! output). A cost per event that grows with the shape's width shows here as a rate that
//! falls with its size.

use crate::cluster::{limit_for, Cluster, Workers};
use crate::procs::{Output, Proc};
use crate::report::{fail, Context, Outcome, Report};
use crate::Bench;
use distd::TaskDesc;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Slowest rate at which these shapes may run before a run counts as stuck.
const MIN_RATE: f64 = 500.0;

/// How long released tasks may take to be forgotten by the scheduler.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// One noop task over `n` noop inputs; only it is wanted. The rate counts every task.
pub fn fan_in(bench: &Bench) -> Outcome<Report> {
    let n = bench.sizes.fan_in;
    let cluster = Cluster::start(&bench.env, &bench.cluster_label("fan-in"), Workers::Plain(2))?;
    cluster.warm_up()?;
    let mut rates = Vec::new();
    for run in 0..bench.sizes.runs {
        let inputs: Vec<String> = (0..n).map(|_| cluster.client.unique_key("in")).collect();
        let sink = cluster.client.unique_key("sink");
        let mut tasks: Vec<TaskDesc> = inputs
            .iter()
            .map(|k| TaskDesc::function(k.clone(), "noop", Vec::new()))
            .collect();
        tasks.push(TaskDesc::function(sink.clone(), "noop", Vec::new()).with_deps(inputs));
        let start = Instant::now();
        cluster
            .client
            .submit_wanting(tasks, vec![sink.clone()])
            .context("submitting the fan-in")?;
        cluster.wait_finished(std::slice::from_ref(&sink), limit_for(n, MIN_RATE))?;
        let secs = start.elapsed().as_secs_f64();
        rates.push((n + 1) as f64 / secs);
        bench.progress("fan-in", run, &format!("{:.0} tasks/s", (n + 1) as f64 / secs));
        cluster.client.release(&[sink]).context("releasing the fan-in")?;
        cluster.wait_idle(IDLE_LIMIT)?;
    }
    Ok(Report::new("fan-in", "tasks/s", &rates)
        .param("inputs", n)
        .param("tasks", n + 1)
        .param("workers", 2))
}

/// `n` noop tasks over one noop input, every one wanted and gathered, as map-noop's are.
pub fn fan_out(bench: &Bench) -> Outcome<Report> {
    let n = bench.sizes.fan_out;
    let cluster = Cluster::start(&bench.env, &bench.cluster_label("fan-out"), Workers::Plain(2))?;
    cluster.warm_up()?;
    let mut rates = Vec::new();
    for run in 0..bench.sizes.runs {
        let source = cluster.client.unique_key("source");
        let mut tasks = vec![TaskDesc::function(source.clone(), "noop", Vec::new())];
        let outs: Vec<String> = (0..n).map(|_| cluster.client.unique_key("out")).collect();
        tasks.extend(
            outs.iter()
                .map(|k| TaskDesc::function(k.clone(), "noop", Vec::new()).with_deps([source.clone()])),
        );
        let start = Instant::now();
        cluster
            .client
            .submit_wanting(tasks, outs.clone())
            .context("submitting the fan-out")?;
        let results = cluster.gather(&outs, limit_for(n, MIN_RATE))?;
        let secs = start.elapsed().as_secs_f64();
        if results.len() != n || results.iter().any(|r| !r.is_empty()) {
            return fail(format!("gathered {} results, expected {n} empty ones", results.len()));
        }
        rates.push((n + 1) as f64 / secs);
        bench.progress("fan-out", run, &format!("{:.0} tasks/s", (n + 1) as f64 / secs));
        cluster.client.release(&outs).context("releasing the fan-out")?;
        cluster.wait_idle(IDLE_LIMIT)?;
    }
    Ok(Report::new("fan-out", "tasks/s", &rates)
        .param("tasks", n + 1)
        .param("workers", 2))
}

/// `distd run GRAPH --scheduler ADDR` of a graph file of `n` independent noop tasks, every
/// one of them an output (printed; their results are empty): the whole command, from its
/// start to its exit, parsing the file and delivering every output included.
pub fn many_outputs(bench: &Bench) -> Outcome<Report> {
    let n = bench.sizes.many_outputs;
    let label = bench.cluster_label("many-outputs");
    let cluster = Cluster::start(&bench.env, &label, Workers::Plain(2))?;
    cluster.warm_up()?;
    let dir = bench.env.dir.join(&label);
    let mut rates = Vec::new();
    for run in 0..bench.sizes.runs {
        let graph = dir.join(format!("graph-{run}.toml"));
        let mut text = String::with_capacity(n * 48);
        for i in 0..n {
            let _ = writeln!(text, "[[task]]\nkey = \"out-{run}-{i}\"\nfunction = \"noop\"\n");
        }
        std::fs::write(&graph, text).context(format!("cannot write {}", graph.display()))?;
        let args = vec![
            "run".to_string(),
            graph.display().to_string(),
            "--scheduler".to_string(),
            cluster.address.clone(),
            "--no-progress".to_string(),
        ];
        let log = dir.join(format!("run-{run}.log"));
        let start = Instant::now();
        let mut proc = Proc::spawn("distd run", &bench.env.distd, &args, &log, Output::Discard)?;
        let status = proc.wait_exit(limit_for(n, MIN_RATE))?;
        let secs = start.elapsed().as_secs_f64();
        if !status.success() {
            return fail(format!("distd run exited with {status}; its log: {}", log.display()));
        }
        rates.push(n as f64 / secs);
        bench.progress("many-outputs", run, &format!("{:.0} tasks/s", n as f64 / secs));
        cluster.wait_idle(IDLE_LIMIT)?;
    }
    Ok(Report::new("many-outputs", "tasks/s", &rates)
        .param("tasks", n)
        .param("outputs", n)
        .param("workers", 2))
}
