//! Dependents queued behind their inputs on the worker computing them.

use super::*;

// ----- dependents queued behind their inputs on the worker computing them -----

/// `k0` <- `k1` <- ... <- `k{n-1}`, each task taking the previous one as input.
fn chain(n: usize) -> Vec<TaskDesc> {
    let mut tasks = vec![task("k0")];
    for i in 1..n {
        tasks.push(task_on(&format!("k{i}"), &[&format!("k{}", i - 1)]));
    }
    tasks
}

#[test]
fn a_chain_is_queued_on_the_worker_computing_its_head_and_finishes_without_new_placements() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"]), task_on("c", &["b"])], &["c"]);
    let sent = cl.compute_msgs_to("w1");
    assert_eq!(sent.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    // b's input is being computed there: no holder to fetch from.
    assert!(sent[1].deps[0].holders.is_empty());
    assert_eq!(cl.processing_on("b"), "w1");
    cl.finish("w1", "a", 10);
    cl.finish("w1", "b", 20);
    assert!(cl.computes_sent_to("w1").is_empty(), "everything was queued already");
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    cl.finish("w1", "c", 30);
    assert_eq!(cl.finished_to_client(c), ["c"]);
    assert_eq!(cl.releases_sent_to("w1"), ["b"]);
}

#[test]
fn a_dependent_with_inputs_on_two_workers_waits_until_one_is_done() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task("b"), task_on("s", &["a", "b"])], &["s"]);
    assert_eq!(cl.state("s"), TaskState::Waiting);
    let (on_a, on_b) = (cl.processing_on("a"), cl.processing_on("b"));
    assert_ne!(on_a, on_b);
    cl.finish(&on_a, "a", 1);
    // Its other input is computing on the other worker: it is queued there.
    assert_eq!(cl.processing_on("s"), on_b);
    assert_eq!(cl.computes_sent_to(&on_b).last().map(String::as_str), Some("s"));
    cl.finish(&on_b, "b", 1);
    cl.finish_fetched(&on_b, "s", 1, &["a"]);
    assert_eq!(cl.finished_to_client(c), ["s"]);
}

#[test]
fn a_failed_input_with_retries_takes_back_what_was_queued_behind_it() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(
        c,
        vec![task("a").retries(1), task_on("b", &["a"]), task_on("c", &["b"])],
        &["c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b", "c"]);
    cl.fail("w1", "a", TaskError::Other("flaky".into()));
    let mut cancelled = cl.cancels_sent_to("w1");
    cancelled.sort();
    assert_eq!(cancelled, ["b", "c"]);
    // Placed again, and the chain queued behind it again.
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b", "c"]);
    cl.finish("w1", "a", 1);
    cl.finish("w1", "b", 1);
    cl.finish("w1", "c", 1);
    assert_eq!(cl.finished_to_client(c), ["c"]);
}

#[test]
fn a_failed_input_errs_what_was_queued_behind_it() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.fail("w1", "a", TaskError::Other("boom".into()));
    assert_eq!(cl.cancels_sent_to("w1"), ["b"]);
    let erred = cl.erred_to_client(c);
    assert_eq!(erred.len(), 1);
    assert_eq!(erred[0].0, "b");
}

#[test]
fn losing_the_worker_sends_a_queued_chain_back_to_waiting_and_places_it_again() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"]), task_on("c", &["b"])], &["c"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b", "c"]);
    cl.start("w1", "a");
    cl.add_worker("w2", 1);
    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a", "b", "c"]);
    cl.finish("w2", "a", 1);
    cl.finish("w2", "b", 1);
    cl.finish("w2", "c", 1);
    assert_eq!(cl.finished_to_client(c), ["c"]);
}

#[test]
fn an_idle_worker_never_steals_a_task_queued_behind_inputs_or_one_with_tasks_queued_behind_it() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.queue_per_thread = 8)).with_workers(&[("w1", 1)]);
    // A long chain and nothing else: w1 has everything.
    cl.submit(c, chain(6), &["k5"]);
    assert_eq!(cl.computes_sent_to("w1").len(), 6);
    cl.start("w1", "k0");
    cl.add_worker("w2", 1);
    cl.tick();
    assert!(cl.steals_sent_to("w1").is_empty(), "nothing in the chain may move");
}

#[test]
fn a_stolen_task_with_tasks_queued_behind_it_takes_them_back_too() {
    // A retiring worker gives back its unstarted tasks, including queued ones.
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.add_worker("w2", 1);
    cl.worker_says(
        "w1",
        FromWorker::Retire {
            reason: "lifetime".into(),
        },
    );
    let mut asked = cl.steals_sent_to("w1");
    asked.sort();
    assert_eq!(asked, ["a", "b"]);
    cl.stolen("w1", &["a", "b"]);
    assert_eq!(cl.computes_sent_to("w2"), ["a", "b"]);
    cl.finish("w2", "a", 1);
    cl.finish("w2", "b", 1);
    assert_eq!(cl.finished_to_client(c), ["b"]);
}

#[test]
fn a_chain_longer_than_the_queue_follows_as_room_frees() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.queue_per_thread = 2)).with_workers(&[("w1", 1)]);
    cl.submit(c, chain(6), &["k5"]);
    assert_eq!(cl.computes_sent_to("w1"), ["k0", "k1", "k2"]);
    cl.finish("w1", "k0", 1);
    assert_eq!(cl.computes_sent_to("w1"), ["k3"]);
    for i in 1..6 {
        cl.finish("w1", &format!("k{i}"), 1);
    }
    assert_eq!(cl.finished_to_client(c), ["k5"]);
}

#[test]
fn cancelling_a_queued_task_tells_its_worker_and_keeps_the_input_running_for_others() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["a", "b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.cancel(c, &["b"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["b"]);
    assert!(matches!(cl.state("a"), TaskState::Processing { .. }));
    cl.finish("w1", "a", 1);
    assert_eq!(cl.finished_to_client(c), ["a"]);
}

#[test]
fn a_dependent_is_not_queued_behind_a_small_input_when_a_big_one_is_held_elsewhere() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(
        c,
        vec![task("big"), task("small"), task_on("c", &["big", "small"])],
        &["c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["big"]);
    assert_eq!(cl.computes_sent_to("w2"), ["small"]);
    cl.finish("w1", "big", 10 << 20);
    // Moving 10 MiB to w2 to save a round trip is not worth it: c waits, then goes to w1.
    assert_eq!(cl.state("c"), TaskState::Waiting);
    cl.finish("w2", "small", 10);
    assert_eq!(cl.computes_sent_to("w1"), ["c"]);
}

#[test]
fn a_fan_out_is_queued_behind_its_root_only_as_far_as_the_worker_has_room() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.queue_per_thread = 2)).with_workers(&[("w1", 1)]);
    let mut tasks = vec![task("root")];
    let keys: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
    for k in &keys {
        tasks.push(task_on(k, &["root"]));
    }
    let wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
    cl.submit(c, tasks, &wanted);
    assert_eq!(cl.computes_sent_to("w1"), ["root", "d0", "d1"]);
    assert_eq!(cl.state("d2"), TaskState::Waiting);
    cl.finish("w1", "root", 1);
    // The rest are ready now and placed as room frees.
    cl.finish("w1", "d0", 1);
    cl.finish("w1", "d1", 1);
    let mut placed = cl.computes_sent_to("w1");
    while !placed.is_empty() {
        for k in &placed {
            cl.finish("w1", k, 1);
        }
        placed = cl.computes_sent_to("w1");
    }
    let mut done = cl.finished_to_client(c);
    done.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(done, expected);
}
