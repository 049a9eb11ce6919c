//! Where ready tasks go: input bytes, load, queue depth, resources, restrictions, priorities; and stealing between workers.

use super::*;

// ----- placement -----

#[test]
fn task_goes_to_the_worker_holding_most_of_its_input_bytes() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(
        c,
        vec![task("small"), task("big"), task_on("c", &["small", "big"])],
        &["c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["small"]);
    assert_eq!(cl.computes_sent_to("w2"), ["big"]);
    cl.finish("w1", "small", 10);
    cl.finish("w2", "big", 1000);
    assert!(cl.computes_sent_to("w1").is_empty());
    let sent = cl.compute_msgs_to("w2");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key, "c");
    // The worker is told where to fetch the other input, in the task's input order.
    let inputs: Vec<(&str, u64, &[String])> = sent[0]
        .deps
        .iter()
        .map(|d| (d.key.as_str(), d.nbytes, d.holders.as_slice()))
        .collect();
    assert_eq!(
        inputs,
        [("small", 10, &[address("w1")][..]), ("big", 1000, &[address("w2")][..])]
    );
}

#[test]
fn independent_tasks_spread_by_load() {
    let mut cl = Cluster::new();
    for w in ["w1", "w2", "w3"] {
        cl.add_worker(w, 1);
    }
    let c = cl.add_client();
    let keys = ["t0", "t1", "t2", "t3", "t4", "t5"];
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    assert_eq!(cl.computes_sent_to("w1"), ["t0", "t3"]);
    assert_eq!(cl.computes_sent_to("w2"), ["t1", "t4"]);
    assert_eq!(cl.computes_sent_to("w3"), ["t2", "t5"]);
}

#[test]
fn load_counts_threads_not_tasks() {
    let (mut cl, c) = Cluster::new().with_workers(&[("big", 4), ("small", 1)]);
    let keys = ["t0", "t1", "t2", "t3", "t4"];
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    assert_eq!(cl.computes_sent_to("big"), ["t0", "t2", "t3", "t4"]);
    assert_eq!(cl.computes_sent_to("small"), ["t1"]);
}

#[test]
fn worker_queue_depth_is_respected_and_the_rest_waits_for_a_slot() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.queue_per_thread = 1)).with_workers(&[("w1", 2)]);
    let keys: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    // 2 threads and 1 queued task per thread.
    assert_eq!(cl.computes_sent_to("w1"), ["t0", "t1", "t2", "t3"]);
    for k in &keys[4..] {
        assert_eq!(cl.state(k), TaskState::Ready, "{k} waits on the scheduler");
    }
    cl.finish("w1", "t1", 1);
    assert_eq!(cl.computes_sent_to("w1"), ["t4"], "one slot freed, one task sent");
    cl.fail("w1", "t0", boom());
    assert_eq!(cl.computes_sent_to("w1"), ["t5"], "a failure frees a slot too");
}

#[test]
fn ready_tasks_wait_for_a_worker_to_join() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    assert_eq!(cl.state("a"), TaskState::Ready);
    cl.add_worker("w1", 1);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
}

// ----- resources and restrictions -----

#[test]
fn gpu_worker_gets_one_gpu_task_at_a_time() {
    let mut cl = Cluster::new();
    cl.add_worker_with("gpu", 4, &[("GPU", 1.0)]);
    cl.add_worker("cpu", 4);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("g1").needs("GPU", 1.0),
            task("g2").needs("GPU", 1.0),
            task("g3").needs("GPU", 1.0),
            task("plain"),
        ],
        &["g1", "g2", "g3", "plain"],
    );
    assert_eq!(cl.computes_sent_to("gpu"), ["g1"]);
    assert_eq!(cl.computes_sent_to("cpu"), ["plain"]);
    assert_eq!(cl.state("g2"), TaskState::Ready);
    assert_eq!(cl.state("g3"), TaskState::Ready);

    cl.finish("gpu", "g1", 1);
    assert_eq!(cl.computes_sent_to("gpu"), ["g2"]);
    cl.fail("gpu", "g2", boom());
    assert_eq!(cl.computes_sent_to("gpu"), ["g3"], "a failed task gives back its GPU");
    assert!(cl.computes_sent_to("cpu").is_empty());
}

#[test]
fn task_needing_a_resource_no_worker_has_stays_ready() {
    let mut cl = Cluster::new();
    cl.add_worker_with("w1", 2, &[("GPU", 1.0)]);
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("fpga").needs("FPGA", 1.0),
            task("two-gpus").needs("GPU", 2.0),
            task("x"),
        ],
        &["fpga", "two-gpus", "x"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["x"], "others still run");
    assert_eq!(cl.state("fpga"), TaskState::Ready);
    assert_eq!(cl.state("two-gpus"), TaskState::Ready);

    cl.add_worker_with("w2", 1, &[("FPGA", 1.0), ("GPU", 2.0)]);
    let mut sent = cl.computes_sent_to("w2");
    sent.sort();
    assert_eq!(sent, ["fpga", "two-gpus"]);
}

#[test]
fn restricted_task_runs_only_on_the_named_worker() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(
        c,
        vec![task("here").only_on(&["w2"]), task("later").only_on(&["w9"])],
        &["here", "later"],
    );
    assert_eq!(cl.computes_sent_to("w2"), ["here"]);
    assert!(cl.computes_sent_to("w1").is_empty());
    assert_eq!(cl.state("later"), TaskState::Ready);

    cl.add_worker("w9", 1);
    assert_eq!(cl.computes_sent_to("w9"), ["later"]);
}

#[test]
fn restriction_by_peer_address_works_too() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a").only_on(&[&address("w2")])], &["a"]);
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
}

// ----- priorities -----

#[test]
fn higher_priority_ready_tasks_are_assigned_first() {
    let mut cl = Cluster::with_config(config(|c| c.queue_per_thread = 0));
    let c = cl.add_client();
    cl.submit(
        c,
        vec![
            task("low").priority(-1),
            task("first-default"),
            task("high").priority(10),
            task("mid").priority(5),
            task("second-default"),
        ],
        &["low", "first-default", "high", "mid", "second-default"],
    );
    cl.add_worker("w1", 1);
    let mut order = Vec::new();
    for _ in 0..5 {
        let sent = cl.computes_sent_to("w1");
        assert_eq!(sent.len(), 1, "one slot, one task at a time");
        cl.finish("w1", &sent[0], 1);
        order.extend(sent);
    }
    assert_eq!(
        order,
        ["high", "mid", "first-default", "second-default", "low"],
        "by priority, then first come first served"
    );
}

#[test]
fn priority_is_passed_to_the_worker() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a").priority(7)], &["a"]);
    assert_eq!(cl.compute_msgs_to("w1")[0].priority, 7);
}

// ----- stealing -----

#[test]
fn idle_worker_steals_queued_unstarted_tasks() {
    let (mut cl, _) = busy_worker();
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"], "half the queue, newest first");
    cl.stolen("w1", &["t4", "t3"]);
    assert_eq!(cl.computes_sent_to("w2"), ["t4", "t3"]);
    assert_eq!(cl.processing_on("t3"), "w2");
    assert_eq!(cl.processing_on("t1"), "w1");
    cl.assert_nothing_else_sent();
}

#[test]
fn tasks_that_started_before_the_steal_stay_put() {
    let (mut cl, _) = busy_worker();
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"]);
    cl.start("w1", "t3");
    cl.stolen("w1", &["t4"]);
    assert_eq!(cl.computes_sent_to("w2"), ["t4"]);
    assert_eq!(cl.processing_on("t3"), "w1");
    assert_eq!(
        cl.state("t3"),
        TaskState::Processing {
            worker: cl.worker("w1"),
            started: true,
            attempt: cl.attempt("t3"),
        }
    );
}

#[test]
fn finishing_worker_steals_queued_tasks() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.queue_per_thread = 5)).with_workers(&[("w1", 1), ("w2", 1)]);
    let keys: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    cl.submit(c, keys.iter().map(|k| task(k)).collect(), &keys);
    let on_w1 = cl.computes_sent_to("w1");
    let on_w2 = cl.computes_sent_to("w2");
    assert_eq!((on_w1.len(), on_w2.len()), (6, 6));
    // w2 races through its queue while w1 is stuck on its first task.
    cl.start("w1", &on_w1[0]);
    for k in &on_w2 {
        cl.finish("w2", k, 1);
    }
    let stolen = cl.steals_sent_to("w1");
    assert!(!stolen.is_empty(), "w2 went idle while w1 has a queue");
    assert!(!stolen.contains(&on_w1[0]), "the started task is not stolen");
    let refs: Vec<&str> = stolen.iter().map(String::as_str).collect();
    cl.stolen("w1", &refs);
    assert_eq!(cl.computes_sent_to("w2"), stolen);
}

#[test]
fn restricted_tasks_are_not_stolen() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let keys = ["t0", "t1", "t2", "t3", "t4"];
    cl.submit(c, keys.iter().map(|k| task(k).only_on(&["w1"])).collect(), &keys);
    assert_eq!(cl.computes_sent_to("w1"), keys);
    cl.add_worker("w2", 1);
    assert!(cl.steals_sent_to("w1").is_empty());
}

#[test]
fn stolen_task_goes_back_to_ready_when_the_thief_is_gone() {
    let (mut cl, _) = busy_worker();
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"]);
    cl.lose_worker("w2");
    cl.stolen("w1", &["t4", "t3"]);
    // Nobody else has room for them but w1 itself.
    let mut back = cl.computes_sent_to("w1");
    back.sort();
    assert_eq!(back, ["t3", "t4"]);
}

/// Regression: a ready task that no worker can run kept the scheduler from ever stealing.
#[test]
fn stealing_is_not_blocked_by_a_ready_task_no_worker_can_run() {
    let (mut cl, c) = busy_worker();
    cl.submit(c, vec![task("fpga").needs("FPGA", 1.0)], &["fpga"]);
    assert_eq!(cl.state("fpga"), TaskState::Ready);
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"]);
}
