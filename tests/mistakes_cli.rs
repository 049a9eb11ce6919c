//! The command-line mistakes of issue 12 ("Every mistake gets an answer"), each as the user
//! lives it: what they typed, the one answer they get, the exit status (the one table of the
//! README's "Exit status"), and that nothing else happened. The numbers are the cases.

mod harness;

use harness::{info, start_scheduler, Outcome, Sandbox, DEADLINE};
use std::time::{Duration, Instant};

/// An address where nothing listens (port 1 on loopback is never a distd).
const NOTHING: &str = "127.0.0.1:1";

/// Exit statuses, as the README's table lists them.
const USAGE: i32 = 2;
const CONFIG: i32 = 78;

/// A refusal the user sees at once: `status`, stderr exactly the one line `error` (no log
/// line, nothing started), nothing on stdout.
fn assert_refused_with(out: &Outcome, status: i32, error: &str) {
    out.assert_code(status);
    assert_eq!(out.stderr, format!("{error}\n"), "{}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

/// A usage error of clap's: status 2, its `error:` message naming every one of `wanted`, its
/// pointer to --help, and nothing else run (no log line).
fn assert_clap_refused(out: &Outcome, wanted: &[&str]) {
    out.assert_code(USAGE);
    assert!(out.stderr.starts_with("error: "), "{}", out.describe());
    for w in wanted {
        assert!(out.stderr.contains(w), "{} does not name {w:?}", out.describe());
    }
    assert!(
        out.stderr.ends_with("For more information, try '--help'.\n"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains(" INFO ") && out.stdout.is_empty(),
        "{}",
        out.describe()
    );
}

/// A graph file of one task; its path.
fn one_task_graph(sb: &Sandbox) -> String {
    let path = sb.write("one.toml", "[[task]]\nkey = \"a\"\ncommand = [\"echo\", \"ran\"]\n");
    path.to_str().expect("UTF-8 path").to_string()
}

/// The cores the binary sees, as it counts them.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// This machine's memory as distd reads it (Linux: MemTotal).
fn mem_total() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a MemTotal line");
    kb * 1024
}

/// Case 2: `distd run graph.toml -n 0` waited for ever; now it is refused at once, naming
/// --nworkers, before any cluster starts (no log line, the graph not run). The same for
/// `distd local -n 0 --run`; `distd local -n 0` alone still serves (other workers may join).
#[test]
fn a_run_with_no_workers_is_refused_at_once_naming_nworkers() {
    let mut sb = Sandbox::new();
    let graph = one_task_graph(&sb);
    let start = Instant::now();
    let out = sb.run("run -n 0", &["run", &graph, "-n", "0"]);
    assert_refused_with(
        &out,
        USAGE,
        "distd: error: --nworkers 0 starts no worker, so the graph could never run; give -n 1 or more, or \
         --scheduler ADDR to run it on a cluster",
    );
    let out = sb.run("local -n 0 --run", &["local", "-n", "0", "--run", &graph]);
    assert_refused_with(
        &out,
        USAGE,
        "distd: error: --nworkers 0 starts no worker, so the graph could never run; give -n 1 or more",
    );
    // Both at once: not a wait for anything.
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());

    let local = sb.spawn_daemon("local -n 0", &["local", "-n", "0", "--port", "0"]);
    sb.wait_for_stdout(local, "0 workers ready", DEADLINE);
    sb.signal(local, libc::SIGINT);
    sb.wait_exit(local, DEADLINE).assert_success();
    sb.check_no_crashes();
}

/// Case 11: `--memory-limit 1` meant one byte and `2.0` two bytes, and the worker then paused
/// for ever. As in dask, `1` is all of the memory (and `80%` a share of it); `2.0` is still two
/// bytes, but refused at once with the reason, as is a percentage above 100%.
#[test]
fn memory_limits_mean_what_they_mean_in_dask() {
    let mut sb = Sandbox::new();
    let out = sb.run(
        "worker --memory-limit 2.0",
        &["worker", NOTHING, "--memory-limit", "2.0"],
    );
    assert_refused_with(
        &out,
        CONFIG,
        "distd: error: invalid value for --memory-limit: \"2.0\" is 2 B, less than the 32.0 MiB a worker \
         needs to run a task; a number above 1 is bytes (as in dask): for a share of memory write a \
         fraction up to 1 or a percentage such as 80%",
    );
    let out = sb.run(
        "worker --memory-limit 150%",
        &["worker", NOTHING, "--memory-limit", "150%"],
    );
    assert_refused_with(
        &out,
        CONFIG,
        "distd: error: invalid value for --memory-limit: invalid memory limit \"150%\": more than 100% of \
         the memory there is; expected auto, 0 (no limit), a fraction of system memory up to 1 (0.5; 1 \
         is all of it), a percentage (80%) or a size (4GiB, 5GB, 4e9)",
    );
    let out = sb.run("worker --memory-limit -1", &["worker", NOTHING, "--memory-limit=-1"]);
    out.assert_code(CONFIG);
    assert!(out.the_error().contains("it is negative"), "{}", out.describe());

    // What the workers get: all of the memory for 1, 80% of it for 80%.
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    sb.worker(&address)
        .name("all")
        .no_nanny()
        .args(&["--memory-limit", "1"])
        .start();
    sb.worker(&address)
        .name("most")
        .no_nanny()
        .args(&["--memory-limit", "80%"])
        .start();
    let info = sb.wait_for_workers(&address, 2);
    let limit = |name: &str| {
        harness::worker_entry(&info, name).expect("the worker is listed")["memory_limit"]
            .as_u64()
            .expect("a memory limit")
    };
    let total = mem_total();
    assert_eq!(limit("all"), total, "{info}");
    assert_eq!(limit("most"), (total as f64 * 0.8) as u64, "{info}");
    sb.check_no_crashes();
}

/// Case 12: `distd nanny ADDR --no-nanny` was accepted and ignored; it is a usage error now,
/// as are the other flags that cannot apply, before anything is dialled or started.
#[test]
fn options_that_do_not_apply_are_refused() {
    let mut sb = Sandbox::new();
    let out = sb.run("nanny --no-nanny", &["nanny", NOTHING, "--no-nanny"]);
    assert_refused_with(
        &out,
        USAGE,
        "distd: error: --no-nanny does not apply to `distd nanny`, which always runs its workers as its \
         children; `distd worker --no-nanny` runs a worker without a nanny",
    );
    // The nanny's own flags, on a worker without one.
    let out = sb.run(
        "worker --no-nanny --crash-limit",
        &["worker", NOTHING, "--no-nanny", "--crash-limit", "3"],
    );
    assert_clap_refused(&out, &["--no-nanny", "--crash-limit"]);
    let out = sb.run(
        "worker --no-nanny --shutdown-timeout",
        &["worker", NOTHING, "--no-nanny", "--shutdown-timeout", "1s"],
    );
    assert_clap_refused(&out, &["--no-nanny", "--shutdown-timeout"]);
    // The local cluster's flags, with a cluster given.
    let graph = one_task_graph(&sb);
    let out = sb.run(
        "run --scheduler -n",
        &["run", &graph, "--scheduler", NOTHING, "-n", "2"],
    );
    assert_clap_refused(&out, &["--nworkers", "--scheduler"]);
    let out = sb.run(
        "run --scheduler --threads-per-worker",
        &["run", &graph, "--scheduler", NOTHING, "--threads-per-worker", "2"],
    );
    assert_clap_refused(&out, &["--threads-per-worker", "--scheduler"]);
    // --run's flag without --run; --upload's without --upload.
    let out = sb.run("local --no-progress", &["local", "--no-progress"]);
    assert_clap_refused(&out, &["--run"]);
    let out = sb.run("ssh --remote-dir", &["ssh", "127.0.0.1", "--remote-dir", "d"]);
    assert_clap_refused(&out, &["--upload"]);
    // auto chooses the threads too.
    let out = sb.run(
        "worker --nworkers auto --nthreads",
        &["worker", NOTHING, "--nworkers", "auto", "--nthreads", "2"],
    );
    assert_refused_with(
        &out,
        USAGE,
        "distd: error: --nthreads cannot be given with --nworkers auto, which chooses the threads of each \
         worker too",
    );
    sb.check_no_crashes();
}

/// Case 14: a port in use was 78 from `distd scheduler` and 1 from `distd local --port`; it is
/// 78 from every command that listens, with or without a nanny, with one line naming the address.
#[test]
fn a_port_in_use_is_status_78_from_every_command() {
    let mut sb = Sandbox::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = taken.local_addr().expect("a local address").port().to_string();
    let at = format!("127.0.0.1:{port}");
    let in_use = "Address already in use";
    for args in [
        vec!["scheduler", "--host", "127.0.0.1", "--port", &port],
        vec!["local", "-n", "1", "--port", &port],
        vec!["local", "-n", "1", "--port", &port, "--processes"],
    ] {
        let out = sb.run(&format!("{args:?}"), &args);
        out.assert_code(CONFIG);
        let line = out.the_error();
        assert!(line.contains(&at) && line.contains(in_use), "{}", out.describe());
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    for bare in [true, false] {
        let mut worker = sb.worker(&address).args(&["--listen-address", &at]);
        if bare {
            worker = worker.no_nanny();
        }
        let out = worker.run();
        out.assert_code(CONFIG);
        let line = out.the_error();
        assert!(line.contains(&at) && line.contains(in_use), "{}", out.describe());
    }
    // A usage mistake is not a configuration one: clap's 2.
    sb.run("scheduler --bogus", &["scheduler", "--bogus"])
        .assert_code(USAGE);
    sb.check_no_crashes();
}

/// Case 15: `distd.1` named `distd-help(1)`, which does not exist; no page had EXIT STATUS,
/// ENVIRONMENT or EXAMPLES, and the graph-file format was only in the README.
#[test]
fn the_man_pages_have_exit_status_environment_examples_and_the_graph_format() {
    let mut sb = Sandbox::new();
    let dir = sb.path("man");
    let out = sb.run("generate man", &["generate", "man", dir.to_str().expect("UTF-8 path")]);
    out.assert_success();
    let page = |name: &str| std::fs::read_to_string(dir.join(name)).expect("the page was written");
    let root = page("distd.1");
    assert!(!root.contains("help(1)"), "distd.1 names distd-help(1)");
    for name in [
        "distd.1",
        "distd-worker.1",
        "distd-submit.1",
        "distd-run.1",
        "distd-info.1",
    ] {
        let text = page(name);
        for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH EXAMPLES"] {
            assert!(text.contains(section), "{name} lacks {section}");
        }
        assert!(
            text.contains("\\fB78\\fR") && text.contains("DISTD_NO_CGROUPS"),
            "{name}"
        );
    }
    let graph = page("distd-graph.5");
    for topic in ["{dep:KEY}", "args = 10", "[defaults]", "replicas", "DISTD_DEP_0"] {
        let escaped = topic.replace('-', "\\-");
        assert!(graph.contains(&escaped), "distd-graph(5) says nothing of {topic}");
    }
    assert!(
        page("distd-run.1").contains("distd\\-graph(5)"),
        "distd-run(1) points to the format"
    );
    sb.check_no_crashes();
}

/// Case 16: completions were for bash, zsh and fish only, and offered the hidden `generate`.
#[test]
fn completions_for_every_shell_offer_no_hidden_command() {
    let mut sb = Sandbox::new();
    let dir = sb.path("completions");
    let out = sb.run(
        "generate completions",
        &["generate", "completions", dir.to_str().expect("UTF-8 path")],
    );
    out.assert_success();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the folder was written")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["_distd", "_distd.ps1", "distd.bash", "distd.elv", "distd.fish"]);
    for name in &names {
        let text = std::fs::read_to_string(dir.join(name)).expect("readable");
        assert!(text.contains("submit") && text.contains("nworkers"), "{name}");
        // By its description: `distd access generate` is a visible command of that name.
        assert!(
            !text.contains("Write shell completions or man pages"),
            "{name} offers `generate`"
        );
        assert!(!text.contains("distd,generate)"), "{name} offers `generate`");
    }
    sb.check_no_crashes();
}

/// Case 17: `distd help --help` was an error, `distd worker --version` said `distd-worker`,
/// and `--nworkers -1` got clap's "use '-- -1'" tip. Now -1 is one worker per core and auto
/// dask's split of the cores; other negative numbers are refused with what is accepted.
#[test]
fn help_version_and_nworkers_answer_as_a_dask_user_expects() {
    let mut sb = Sandbox::new();
    let out = sb.run("help --help", &["help", "--help"]);
    out.assert_success();
    assert!(out.stdout.contains("Usage: distd help [COMMAND]"), "{}", out.describe());
    let out = sb.run("help worker", &["help", "worker"]);
    out.assert_success();
    assert!(
        out.stdout.contains("Usage: distd worker [OPTIONS] [ADDR]"),
        "{}",
        out.describe()
    );
    let version = format!("distd {}\n", env!("CARGO_PKG_VERSION"));
    for command in ["worker", "scheduler", "help"] {
        let out = sb.run(&format!("{command} --version"), &[command, "--version"]);
        out.assert_success();
        assert_eq!(out.stdout, version, "{command}");
    }

    let out = sb.run("worker --nworkers -2", &["worker", NOTHING, "--nworkers", "-2"]);
    assert_clap_refused(&out, &["-2", "-1 (one worker per core) or auto"]);
    assert!(!out.stderr.contains("tip:"), "{}", out.describe());

    // -1: a worker per core, under one nanny.
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    let nanny = sb.worker(&address).name("pc").args(&["--nworkers", "-1"]).spawn();
    let listed = sb.wait_for_workers(&address, cores());
    for w in listed["workers"].as_array().expect("a list") {
        assert_eq!(w["nthreads"].as_u64(), Some(1), "{listed}");
    }
    sb.signal(nanny, libc::SIGTERM);
    sb.wait_exit(nanny, DEADLINE).assert_success();
    sb.wait_for_workers(&address, 0);

    // auto: dask's nprocesses_nthreads; up to 4 cores, a single-threaded worker each.
    let (workers, threads) = match cores() {
        n if n <= 4 => (n, 1),
        n => {
            let w = (1..=n).find(|d| n % d == 0 && d * d >= n).expect("n divides itself");
            (w, n / w)
        }
    };
    let local = sb.spawn_daemon("local -n auto", &["local", "-n", "auto", "--port", "0"]);
    let line = sb.wait_for_stdout(local, "scheduler at ", DEADLINE);
    let local_address = line.trim().trim_start_matches("scheduler at ").to_string();
    sb.wait_for_stdout(local, " ready", DEADLINE);
    let info = info(&mut sb, &local_address);
    let listed = info["workers"].as_array().expect("a list");
    assert_eq!(listed.len(), workers, "{info}");
    assert!(
        listed.iter().all(|w| w["nthreads"].as_u64() == Some(threads as u64)),
        "{info}"
    );
    sb.signal(local, libc::SIGINT);
    sb.wait_exit(local, DEADLINE).assert_success();

    let graph = one_task_graph(&sb);
    let out = sb.run("run -n -1", &["run", &graph, "-n", "-1", "--no-progress"]);
    out.assert_success();
    assert_eq!(out.stdout, "ran\n");
    sb.check_no_crashes();
}

/// Case 19: "(1 dependent tasks not run)", "with 1 threads", the idle timeout told twice, and
/// `distd info` counting itself among the clients.
#[test]
fn counts_read_right_and_are_told_once() {
    let mut sb = Sandbox::new();
    let graph = sb.write(
        "fails.toml",
        "[[task]]\nkey = \"bad\"\ncommand = [\"false\"]\n\n[[task]]\nkey = \"after\"\ncommand = [\"cat\", \
         \"{dep:bad}\"]\ndeps = [\"bad\"]\n",
    );
    let graph = graph.to_str().expect("UTF-8 path");
    let out = sb.run("run fails", &["run", graph, "-n", "1", "--no-progress"]);
    out.assert_code(1);
    let failed: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("distd: task ")).collect();
    assert_eq!(failed.len(), 1, "{}", out.describe());
    assert!(
        failed[0].starts_with("distd: task \"bad\" failed: ") && failed[0].ends_with(" (1 dependent task not run)"),
        "{}",
        failed[0]
    );
    // The in-process scheduler logs its one single-threaded worker (the sandbox logs at info).
    assert!(out.stderr.contains(" with 1 thread\n"), "{}", out.describe());
    assert!(!out.stderr.contains("1 threads"), "{}", out.describe());

    // The idle timeout: told once.
    let scheduler = sb.spawn_daemon(
        "scheduler idle",
        &[
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--idle-timeout",
            "300ms",
        ],
    );
    let out = sb.wait_exit(scheduler, DEADLINE);
    out.assert_success();
    let told: Vec<&str> = out.stderr.lines().filter(|l| l.contains("idle")).collect();
    assert_eq!(told.len(), 1, "{}", out.describe());

    // `distd info` counts the other clients, not itself.
    let (_scheduler, address) = start_scheduler(&mut sb, &[]);
    assert_eq!(info(&mut sb, &address)["clients"].as_u64(), Some(0));
    let out = sb.run("info table", &["info", &address]);
    out.assert_success();
    assert!(out.stdout.contains("\nother clients: 0\n"), "{}", out.describe());
    // A client that waits (no worker runs its task) is one.
    let waiting = sb.spawn("submit waits", &["submit", &address, "--", "true"]);
    sb.wait_until("the waiting client in `distd info`", DEADLINE, |sb| {
        (info(sb, &address)["clients"].as_u64() == Some(1)).then_some(())
    });
    sb.kill_group(waiting);
    sb.check_no_crashes();
}
