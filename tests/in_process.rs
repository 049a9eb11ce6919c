//! In-process tests: a scheduler and workers started as library objects on 127.0.0.1:0,
//! driven by the Rust client over real sockets.

use distd::protocol::TaskError;
use distd::{AsyncClient, Client, ClientError, KeyStatus, LocalCluster, LocalClusterConfig, Registry, TaskDesc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cluster(workers: usize, registry: Registry) -> (LocalCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = LocalCluster::start_blocking(LocalClusterConfig {
        workers,
        threads_per_worker: 1,
        local_dir: dir.path().to_path_buf(),
        registry,
        ..LocalClusterConfig::default()
    })
    .expect("local cluster starts");
    (c, dir)
}

#[test]
fn typed_map_and_reduce_with_own_functions() {
    let registry = Registry::builtin()
        .register_typed("square", |x: i64, _: Vec<i64>| Ok(x * x))
        .register_typed("total", |(): (), xs: Vec<i64>| Ok(xs.iter().sum::<i64>()));
    let (cluster, _dir) = cluster(2, registry);
    let client = Client::connect(&cluster.address()).unwrap();
    let keys = client.map("square", 1..=100i64).unwrap();
    let total = client.submit_fn("total", &(), &keys).unwrap();
    let squares: Vec<i64> = client.gather_typed(&keys).unwrap();
    assert_eq!(squares[9], 100);
    let sum: Vec<i64> = client.gather_typed(&[total]).unwrap();
    assert_eq!(sum[0], (1..=100i64).map(|x| x * x).sum::<i64>());
    let info = client.info().unwrap();
    assert_eq!(info.workers.len(), 2);
    // Both workers took part.
    let holders: std::collections::HashSet<String> = client
        .who_has(&keys)
        .unwrap()
        .into_iter()
        .flat_map(|l| l.holders)
        .collect();
    assert_eq!(holders.len(), 2, "{holders:?}");
    cluster.stop_blocking();
}

#[test]
fn scattered_data_feeds_commands_and_functions() {
    let (cluster, _dir) = cluster(2, Registry::builtin());
    let client = Client::connect(&cluster.address()).unwrap();
    client
        .scatter(vec![
            ("words".into(), b"b\na\nc\n".to_vec()),
            ("n".into(), b"41".to_vec()),
        ])
        .unwrap();
    let mut sort = TaskDesc::command("sorted", ["sort"]).with_deps(["words"]);
    if let distd::TaskSpec::Command(c) = &mut sort.spec {
        c.stdin = vec!["words".into()];
    }
    let plus = TaskDesc::function("plus", "sum", b"1".to_vec()).with_deps(["n"]);
    let cat = TaskDesc::command("cat", ["cat", "{deps}"]).with_deps(["words", "n"]);
    let keys = client.submit(vec![sort, plus, cat]).unwrap();
    let out = client.gather(&keys).unwrap();
    assert_eq!(out[0], b"a\nb\nc\n");
    assert_eq!(out[1], b"42");
    assert_eq!(out[2], b"b\na\nc\n41");
    // A key can be scattered only once.
    let err = client.scatter(vec![("n".into(), b"1".to_vec())]).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    cluster.stop_blocking();
}

#[test]
fn errors_propagate_to_dependents_with_the_first_failure_named() {
    let (cluster, _dir) = cluster(1, Registry::builtin());
    let client = Client::connect(&cluster.address()).unwrap();
    let bad = TaskDesc::function("bad", "fail", b"boom".to_vec());
    let after = TaskDesc::function("after", "identity", vec![]).with_deps(["bad"]);
    let last = TaskDesc::function("last", "identity", vec![]).with_deps(["after"]);
    let keys = client.submit(vec![bad, after, last]).unwrap();
    client.wait(&keys).unwrap();
    match client.status("last") {
        Some(KeyStatus::Erred(TaskError::Dependency { key, error })) => {
            assert_eq!(key, "bad");
            assert!(error.to_string().contains("boom"), "{error}");
        }
        other => panic!("unexpected {other:?}"),
    }
    match client.gather(&["after".to_string()]) {
        Err(ClientError::Task { key, .. }) => assert_eq!(key, "after"),
        other => panic!("unexpected {other:?}"),
    }
    cluster.stop_blocking();
}

#[test]
fn retries_rerun_a_failing_task() {
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let registry = Registry::builtin().register("flaky", move |_, _| {
        if t.fetch_add(1, Ordering::SeqCst) < 2 {
            Err("not yet".into())
        } else {
            Ok(b"ok".to_vec())
        }
    });
    let (cluster, _dir) = cluster(1, registry);
    let client = Client::connect(&cluster.address()).unwrap();
    let mut task = TaskDesc::function("flaky", "flaky", vec![]);
    task.options.retries = 2;
    let out = client.gather(&client.submit(vec![task]).unwrap()).unwrap();
    assert_eq!(out[0], b"ok");
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    cluster.stop_blocking();
}

#[test]
fn cancel_stops_a_running_command_and_its_dependents() {
    let (cluster, dir) = cluster(1, Registry::builtin());
    let client = Client::connect(&cluster.address()).unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
    let slow = TaskDesc::command("slow", ["sh", "-c", script.as_str()]);
    let next = TaskDesc::function("next", "identity", vec![]).with_deps(["slow"]);
    let keys = client.submit(vec![slow, next]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    client.cancel(&keys[..1]).unwrap();
    client.wait(&keys).unwrap();
    assert_eq!(client.status("slow"), Some(KeyStatus::Erred(TaskError::Cancelled)));
    assert!(matches!(
        client.status("next"),
        Some(KeyStatus::Erred(TaskError::Dependency { .. }))
    ));
    // The worker's slot is free again: a new task runs at once.
    let keys = client.map("identity", [1u8]).unwrap();
    client.gather(&keys).unwrap();
    // The command itself is gone (killed and reaped), not just forgotten; the bound is the
    // slow path of the bug, its 30 s sleep.
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while proc_dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!proc_dir.exists(), "the cancelled command (pid {pid}) is still there");
    cluster.stop_blocking();
}

#[test]
fn rejected_submissions_name_the_problem() {
    let (cluster, _dir) = cluster(1, Registry::builtin());
    let client = Client::connect(&cluster.address()).unwrap();
    let a = TaskDesc::function("a", "noop", vec![]).with_deps(["nowhere"]);
    client.submit(vec![a]).unwrap();
    client.wait(&["a".to_string()]).unwrap();
    match client.status("a") {
        Some(KeyStatus::Erred(TaskError::Rejected { reason })) => {
            assert!(reason.contains("nowhere"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    cluster.stop_blocking();
}

#[test]
fn a_stopped_worker_loses_nothing_the_graph_needs() {
    let (mut cluster, _dir) = cluster(2, Registry::builtin());
    let client = Client::connect(&cluster.address()).unwrap();
    // Layer 1 spreads over both workers; layer 2 needs all of it.
    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(TaskDesc::function(
            format!("leaf-{i}"),
            "identity",
            format!("{i}").into_bytes(),
        ));
    }
    let leaves: Vec<String> = (0..8).map(|i| format!("leaf-{i}")).collect();
    client.submit(tasks).unwrap();
    client.wait(&leaves).unwrap();
    let victim = cluster.workers.remove(0);
    smol::block_on(victim.stop()).unwrap();
    let total = TaskDesc::function("total", "sum", vec![]).with_deps(leaves);
    let out = client.gather(&client.submit(vec![total]).unwrap()).unwrap();
    assert_eq!(out[0], b"28");
    let again = client
        .gather(&(0..8).map(|i| format!("leaf-{i}")).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(again[7], b"7");
    cluster.stop_blocking();
}

#[test]
fn async_client_works_from_smol() {
    let (cluster, _dir) = cluster(2, Registry::builtin());
    let addr = cluster.address();
    smol::block_on(async {
        let client = AsyncClient::connect(&addr).await.unwrap();
        let keys = client.map("identity", ["x", "y"]).await.unwrap();
        let out: Vec<String> = client.gather_typed(&keys).await.unwrap();
        assert_eq!(out, vec!["x".to_string(), "y".to_string()]);
    });
    cluster.stop_blocking();
}

/// A chain is queued behind its head on the head's worker; when the head fails and is
/// retried, what was queued behind it is taken back and runs after the retry succeeds.
#[test]
fn a_chain_queued_behind_a_flaky_head_runs_once_the_retry_succeeds() {
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let registry = Registry::builtin().register("flaky", move |_, _| {
        if t.fetch_add(1, Ordering::SeqCst) < 1 {
            Err("not yet".into())
        } else {
            Ok(b"1".to_vec())
        }
    });
    let (cluster, _dir) = cluster(2, registry);
    let client = Client::connect(&cluster.address()).unwrap();
    let mut head = TaskDesc::function("head", "flaky", vec![]);
    head.options.retries = 1;
    let mut tasks = vec![head];
    for i in 0..50 {
        let prev = if i == 0 {
            "head".to_string()
        } else {
            format!("link-{}", i - 1)
        };
        tasks.push(TaskDesc::function(format!("link-{i}"), "sum", vec![]).with_deps([prev]));
    }
    client.submit_wanting(tasks, vec!["link-49".into()]).unwrap();
    // A chain left queued behind the failed attempt would wait for ever: bound the wait by
    // far more than the run takes.
    let last = ["link-49".to_string()];
    let gather = client.as_async().gather(&last);
    let out = smol::block_on(futures_lite::FutureExt::or(async { Some(gather.await) }, async {
        async_io::Timer::after(Duration::from_secs(60)).await;
        None
    }))
    .expect("the chain finished within 60 s")
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out[0]).trim(), "1");
    assert_eq!(tries.load(Ordering::SeqCst), 2);
    cluster.stop_blocking();
}

/// A TCP relay on loopback to `target` that breaks its first connection at once: a holder
/// whose peer port fails one round of fetches and then answers.
fn relay_breaking_the_first_connection(target: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("relay address");
    std::thread::spawn(move || {
        for (n, incoming) in listener.incoming().enumerate() {
            let Ok(client) = incoming else { continue };
            if n == 0 {
                drop(client);
                continue;
            }
            let Ok(server) = std::net::TcpStream::connect(target) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().expect("clone"), server.try_clone().expect("clone")),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    addr
}

/// Regression: gather's budget for failed fetches counted failed keys, not rounds, so a
/// gather of more than 400 keys whose holder failed one round of fetches gave up at once.
#[test]
fn a_gather_of_many_keys_outlasts_a_round_their_holder_failed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = LocalCluster::start_blocking(LocalClusterConfig {
        workers: 0,
        local_dir: dir.path().to_path_buf(),
        ..LocalClusterConfig::default()
    })
    .expect("local cluster starts");
    // The worker's peer port, and the relay its peers and clients are told to use.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let relay = relay_breaking_the_first_connection(port);
    let worker = smol::block_on(distd::Worker::start(
        distd::WorkerConfig {
            scheduler: cluster.address().trim_start_matches("tcp://").to_string(),
            nthreads: 1,
            name: Some("behind-a-relay".into()),
            resources: Vec::new(),
            local_dir: dir.path().to_path_buf(),
            listen: Some(port),
            contact_address: Some(relay.to_string()),
            death_timeout: Duration::from_secs(5),
            memory_limit: 0,
            lifetime: None,
            drain: false,
        },
        Registry::builtin(),
    ))
    .expect("the worker starts");
    cluster.workers.push(worker);
    let client = Client::connect(&cluster.address()).unwrap();
    let keys = client.map("identity", 0..500u32).unwrap();
    client.wait(&keys).unwrap();
    let got: Vec<u32> = client.gather_typed(&keys).expect("the second round fetches them all");
    assert_eq!(got, (0..500).collect::<Vec<u32>>());
    cluster.stop_blocking();
}
