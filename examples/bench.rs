//! `make bench`: distd's benchmark suite. Each workload starts its own real cluster on
//! 127.0.0.1 (`distd scheduler` and `distd worker` processes, or a nanny, or `distd local`),
//! runs several times, and prints ONE JSON line to stdout:
//! `{"name", "params", "unit", "median", "min", "max", "runs", "cores", ...}`.
//! Progress and diagnostics go to stderr. A workload that fails prints
//! `{"name", "error"}` instead, the others still run, and the suite exits 1.
//!
//! Usage: `bench [--quick] [--loaded] [--only NAME[,NAME...]] [--list]`; `BENCH_QUICK=1` is
//! `--quick` (much smaller sizes, a sanity run). `--loaded` (`BENCH_LOADED=1`, `make
//! bench-loaded`) runs every workload beside another process that burns one core the whole
//! time (`sh -c 'while :; do :; done'`), as on a shared machine; each line then says
//! `"loaded": true`. `DISTD_BIN` overrides the distd executable, which is
//! otherwise `distd` next to this example's directory (target/release/distd).
//!
//! Every wait is bounded, and every process is killed with its process group and reaped when
//! its workload ends (or when the bench dies: children get `PR_SET_PDEATHSIG`).

#[path = "bench/bigout.rs"]
mod bigout;
#[path = "bench/cluster.rs"]
mod cluster;
#[path = "bench/procs.rs"]
mod procs;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/shapes.rs"]
mod shapes;
#[path = "bench/standins.rs"]
mod standins;
#[path = "bench/system.rs"]
mod system;
#[path = "bench/tasks.rs"]
mod tasks;
#[path = "bench/transfer.rs"]
mod transfer;

use cluster::Env;
use report::{fail, failure_line, Context, Failure, Outcome, Report};
use std::cell::Cell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How big each workload is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Runs of each workload (startup and restart-time have their own).
    pub runs: usize,
    pub startup_runs: usize,
    pub restart_runs: usize,
    pub map_noop: usize,
    pub chain: usize,
    /// A power of two.
    pub tree_leaves: usize,
    pub latency: usize,
    pub map_cmd: usize,
    /// Spawns of `true` per reference measurement of map-cmd.
    pub spawn_reference: usize,
    pub transfer_bytes: u64,
    /// The stdout of big-stdout's one command.
    pub big_stdout_bytes: u64,
    pub memory_tasks: usize,
    pub standins: usize,
    pub standin_tasks: usize,
    /// Inputs of the one task of fan-in.
    pub fan_in: usize,
    /// Tasks over the one input of fan-out.
    pub fan_out: usize,
    /// Tasks (each an output) of the graph of many-outputs.
    pub many_outputs: usize,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            runs: 3,
            startup_runs: 5,
            restart_runs: 5,
            map_noop: 100_000,
            chain: 10_000,
            tree_leaves: 65_536,
            latency: 1_000,
            map_cmd: 10_000,
            spawn_reference: 2_000,
            transfer_bytes: 1 << 30,
            big_stdout_bytes: 3 << 30,
            memory_tasks: 1_000_000,
            standins: 1_000,
            standin_tasks: 100_000,
            fan_in: 100_000,
            fan_out: 100_000,
            many_outputs: 100_000,
        }
    }

    fn quick() -> Sizes {
        Sizes {
            runs: 3,
            startup_runs: 5,
            restart_runs: 5,
            map_noop: 2_000,
            chain: 200,
            tree_leaves: 1_024,
            latency: 100,
            map_cmd: 100,
            spawn_reference: 100,
            transfer_bytes: 16 << 20,
            big_stdout_bytes: 64 << 20,
            memory_tasks: 20_000,
            standins: 50,
            standin_tasks: 2_000,
            fan_in: 2_000,
            fan_out: 2_000,
            many_outputs: 2_000,
        }
    }
}

/// What every workload gets: where distd is, the sizes, and the process limits.
pub struct Bench {
    pub env: Env,
    pub sizes: Sizes,
    /// RLIMIT_NOFILE (soft, hard) after raising the soft limit.
    pub open_files: (u64, u64),
    next_cluster: Cell<usize>,
}

impl Bench {
    /// A unique label for a cluster (its folder and its worker names).
    pub fn cluster_label(&self, workload: &str) -> String {
        let n = self.next_cluster.get();
        self.next_cluster.set(n + 1);
        format!("{workload}-{n}")
    }

    /// One line of progress on stderr.
    pub fn progress(&self, workload: &str, run: usize, text: &str) {
        eprintln!("bench: {workload} run {}: {text}", run + 1);
    }
}

type Workload = fn(&Bench) -> Outcome<Report>;

/// Every workload, in the order they run.
const WORKLOADS: &[(&str, Workload)] = &[
    ("map-noop", |b| tasks::map_noop(b, false)),
    ("map-noop-nanny", |b| tasks::map_noop(b, true)),
    ("chain", tasks::chain),
    ("tree", tasks::tree),
    ("fan-in", shapes::fan_in),
    ("fan-out", shapes::fan_out),
    ("many-outputs", shapes::many_outputs),
    ("latency", tasks::latency),
    ("map-cmd", tasks::map_cmd),
    ("transfer", transfer::transfer),
    ("big-stdout", bigout::big_stdout),
    ("memory", system::memory),
    ("startup", system::startup),
    ("scale-workers", standins::scale_workers),
    ("restart-time", system::restart_time),
];

/// The command line, parsed.
struct Options {
    quick: bool,
    loaded: bool,
    only: Option<Vec<String>>,
    list: bool,
}

fn parse_options() -> Outcome<Options> {
    let mut opts = Options {
        quick: std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0"),
        loaded: std::env::var("BENCH_LOADED").is_ok_and(|v| !v.is_empty() && v != "0"),
        only: None,
        list: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--loaded" => opts.loaded = true,
            "--list" => opts.list = true,
            "--only" => {
                let names = args
                    .next()
                    .context("--only needs a comma-separated list of workloads")?;
                opts.only = Some(names.split(',').map(str::to_string).collect());
            }
            other => {
                return fail(format!(
                    "unknown argument {other:?} (try --quick, --loaded, --only NAMES, --list)"
                ))
            }
        }
    }
    if let Some(only) = &opts.only {
        for name in only {
            if !WORKLOADS.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = WORKLOADS.iter().map(|(n, _)| *n).collect();
                return fail(format!("unknown workload {name:?}; known: {}", known.join(", ")));
            }
        }
    }
    Ok(opts)
}

/// target/release/examples/bench -> target/release/distd, unless DISTD_BIN says otherwise.
fn find_distd() -> Outcome<PathBuf> {
    if let Some(p) = std::env::var_os("DISTD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("distd"))
        .context(format!("{} has no parent folder", exe.display()))?;
    if !bin.is_file() {
        return fail(format!(
            "no distd executable at {}: build it first (`cargo build --release`; `make bench` does)",
            bin.display()
        ));
    }
    Ok(bin)
}

fn setup(quick: bool) -> Outcome<Bench> {
    procs::become_subreaper()?;
    let open_files = match procs::raise_open_files_limit() {
        Ok(limits) => limits,
        Err(e) => {
            eprintln!("bench: WARNING: cannot raise the open files limit ({e}); scale-workers may fail");
            (0, 0)
        }
    };
    let distd = find_distd()?;
    let dir = std::env::temp_dir().join(format!("distd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
    procs::set_data_home(dir.join("data"));
    Ok(Bench {
        env: Env { distd, dir },
        sizes: if quick { Sizes::quick() } else { Sizes::full() },
        open_files,
        next_cluster: Cell::new(0),
    })
}

/// Runs one workload, turning a panic into a failure so the others still run.
fn run_one(bench: &Bench, workload: Workload) -> Outcome<Report> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| workload(bench))).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        Err(Failure(format!("panicked: {text}")))
    })
}

/// The workload secured (the default) and, for the column beside it, without security
/// (what security costs), each twice, in the order secured, insecure, insecure, secured: a
/// machine that speeds up or slows down over the minutes a workload takes weighs on both
/// columns alike instead of on whichever ran second. The statistics are of both passes'
/// runs; the extra fields are the first secured pass's. A failed insecure pass is reported
/// beside the secured figure.
fn secured_and_insecure(bench: &Bench, workload: Workload) -> Outcome<Report> {
    let first = run_one(bench, workload)?;
    let insecure = |bench: &Bench| {
        procs::set_insecure(true);
        let plain = run_one(bench, workload);
        procs::set_insecure(false);
        plain
    };
    let plain = insecure(bench).and_then(|one| Ok(one.joined(insecure(bench)?)));
    let secured = first.joined(run_one(bench, workload)?);
    Ok(match plain {
        Ok(p) => {
            let ratio = match p.median() {
                m if m > 0.0 => secured.median() / m,
                _ => f64::NAN,
            };
            secured
                .field("insecure_median", crate::report::num(p.median()))
                .field(
                    "secured_over_insecure",
                    crate::report::num((ratio * 1000.0).round() / 1000.0),
                )
                .field("order", "secured, insecure, insecure, secured")
        }
        Err(e) => secured.field("insecure_error", e.to_string()),
    })
}

fn main() -> ExitCode {
    let opts = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    if opts.list {
        for (name, _) in WORKLOADS {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let bench = match setup(opts.quick) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "bench: distd at {}, {} mode, logs in {}, open files limit {} (hard {})",
        bench.env.distd.display(),
        if opts.quick { "quick" } else { "full" },
        bench.env.dir.display(),
        bench.open_files.0,
        bench.open_files.1
    );
    // The other process of a loaded run: it burns one core until the suite ends.
    let _burner = match opts.loaded {
        false => None,
        true => {
            let burn = ["-c".to_string(), "while :; do :; done".to_string()];
            match procs::Proc::spawn(
                "core burner",
                std::path::Path::new("/bin/sh"),
                &burn,
                &bench.env.dir.join("burner.log"),
                procs::Output::Discard,
            ) {
                Ok(p) => {
                    eprintln!("bench: loaded run: process {} burns one core meanwhile", p.pid());
                    Some(p)
                }
                Err(e) => {
                    eprintln!("bench: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let suite = Instant::now();
    let mut failed = Vec::new();
    for (name, workload) in WORKLOADS {
        if opts.only.as_ref().is_some_and(|only| !only.iter().any(|o| o == name)) {
            continue;
        }
        eprintln!("bench: {name} ...");
        let start = Instant::now();
        match secured_and_insecure(&bench, *workload) {
            Ok(report) => {
                let report = report.field("loaded", opts.loaded);
                println!("{}", report.to_line());
                eprintln!(
                    "bench: {name} done in {:.1} s (median {:.1})",
                    start.elapsed().as_secs_f64(),
                    report.median()
                );
            }
            Err(e) => {
                eprintln!("bench: {name} FAILED after {:.1} s: {e}", start.elapsed().as_secs_f64());
                println!("{}", failure_line(name, &e));
                failed.push(*name);
            }
        }
    }
    let left = procs::reap_orphans(&[], Duration::from_secs(5));
    if !left.is_empty() {
        eprintln!("bench: WARNING: child processes {left:?} were still alive at the end");
    }
    eprintln!("bench: suite took {:.1} s", suite.elapsed().as_secs_f64());
    if failed.is_empty() {
        let _ = std::fs::remove_dir_all(&bench.env.dir);
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench: {} workloads failed ({}); logs kept in {}",
            failed.len(),
            failed.join(", "),
            bench.env.dir.display()
        );
        ExitCode::FAILURE
    }
}
