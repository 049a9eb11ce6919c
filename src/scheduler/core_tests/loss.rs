//! Workers lost (connection dropped or silent): their tasks and results.

use super::*;

// ----- worker loss -----

#[test]
fn tasks_of_a_lost_worker_are_reassigned() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task("b"), task("c")], &["a", "b", "c"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "c"]);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    cl.start("w1", "a");
    cl.lose_worker("w1");
    let mut sent = cl.computes_sent_to("w2");
    sent.sort();
    assert_eq!(sent, ["a", "c"]);
    assert_eq!(cl.core.worker_count(), 1);
    cl.finish("w2", "a", 1);
    cl.finish("w2", "b", 1);
    cl.finish("w2", "c", 1);
    let mut done = cl.finished_to_client(c);
    done.sort();
    assert_eq!(done, ["a", "b", "c"]);
}

#[test]
fn tasks_of_the_only_worker_wait_for_a_new_one() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.lose_worker("w1");
    assert_eq!(cl.state("a"), TaskState::Ready);
    cl.add_worker("w2", 1);
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
}

#[test]
fn result_only_the_lost_worker_held_is_recomputed_for_a_waiting_dependent() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task("x"), task_on("b", &["a", "x"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    assert_eq!(cl.computes_sent_to("w2"), ["x"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.state("b"), TaskState::Waiting);

    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"], "a is computed again");
    assert_eq!(cl.state("b"), TaskState::Waiting);
    cl.finish("w2", "x", 10);
    assert_eq!(cl.state("b"), TaskState::Waiting, "b still waits for a");
    assert!(cl.computes_sent_to("w2").is_empty());
    cl.finish("w2", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
}

#[test]
fn running_dependent_whose_input_was_lost_is_stopped_until_the_input_is_recomputed() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"]).only_on(&["w2"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);

    cl.lose_worker("w1");
    assert_eq!(cl.cancels_sent_to("w2"), ["b"], "b cannot fetch a any more");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);
    cl.finish("w2", "a", 10);
    let sent = cl.compute_msgs_to("w2");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key, "b");
    assert_eq!(sent[0].deps[0].holders, [address("w2")]);
}

#[test]
fn lost_wanted_result_is_recomputed_with_its_released_inputs() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    cl.finish("w1", "a", 1);
    cl.finish("w1", "b", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.finished_to_client(c), ["b"]);

    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);
    cl.finish("w2", "a", 1);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    cl.finish("w2", "b", 1);
    assert_eq!(cl.core.holders_of("b"), ["w2"]);
}

#[test]
fn consumed_input_is_not_recomputed_when_its_worker_dies() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"]).only_on(&["w2"])], &["b"]);
    cl.finish("w1", "a", 1);
    cl.finish_fetched("w2", "b", 1, &["a"]);
    let mut released = cl.releases_sent_to("w1");
    released.extend(cl.releases_sent_to("w2"));
    assert_eq!(released, ["a", "a"], "both copies of a are dropped");
    cl.take(|_| true);
    cl.lose_worker("w1");
    assert_eq!(cl.state("a"), TaskState::Released);
    cl.assert_nothing_else_sent();
}

#[test]
fn result_held_by_another_worker_too_is_not_recomputed() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(
        c,
        vec![task("a"), task_on("b", &["a"]).only_on(&["w2"]), task_on("c", &["a"])],
        &["a", "b", "c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 5);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["c"]);
    cl.finish_fetched("w2", "b", 1, &["a"]);
    assert_eq!(cl.core.holders_of("a"), ["w1", "w2"]);
    cl.lose_worker("w1");
    assert_eq!(cl.core.holders_of("a"), ["w2"]);
    assert_eq!(cl.state("a"), TaskState::Memory);
    assert_eq!(cl.computes_sent_to("w2"), ["c"], "only the running task moves");
}

#[test]
fn task_started_on_too_many_workers_that_died_errs_as_killed_worker() {
    let mut cl = Cluster::with_config(config(|c| {
        c.allowed_failures = 1;
        c.queue_behind_inputs = false;
    }));
    for w in ["w1", "w2", "w3"] {
        cl.add_worker(w, 1);
    }
    let c = cl.add_client();
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.start("w1", "a");
    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"], "one death is allowed");
    cl.start("w2", "a");
    cl.lose_worker("w2");

    let killed = TaskError::KilledWorker {
        workers: vec!["w1".into(), "w2".into()],
    };
    assert_eq!(cl.state("a"), TaskState::Erred(Box::new(killed.clone())));
    assert_eq!(cl.erred_to_client(c), [("b".to_string(), dependency("a", killed))]);
    assert!(cl.computes_sent_to("w3").is_empty());
}

#[test]
fn killed_worker_is_counted_with_the_default_allowance() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    let names = ["w1", "w2", "w3", "w4"];
    for (i, w) in names.iter().enumerate() {
        cl.add_worker(w, 1);
        assert_eq!(cl.computes_sent_to(w), ["a"]);
        cl.start(w, "a");
        cl.lose_worker(w);
        if i < 3 {
            assert!(matches!(cl.state("a"), TaskState::Ready));
        }
    }
    assert_eq!(
        cl.erred_to_client(c),
        [(
            "a".to_string(),
            TaskError::KilledWorker {
                workers: strings(&names)
            }
        )]
    );
}

#[test]
fn task_assigned_but_not_started_on_a_dead_worker_is_not_suspicious() {
    let (mut cl, c) =
        Cluster::with_config(config(|c| c.allowed_failures = 0)).with_workers(&[("w1", 1), ("w2", 1), ("w3", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.lose_worker("w1");
    assert_eq!(
        cl.computes_sent_to("w2"),
        ["a"],
        "never started, so not held against it"
    );
    cl.start("w2", "a");
    cl.lose_worker("w2");
    assert_eq!(
        cl.erred_to_client(c),
        [(
            "a".to_string(),
            TaskError::KilledWorker {
                workers: vec!["w2".into()]
            }
        )],
        "only the worker it started on is named"
    );
}

#[test]
fn started_from_another_worker_does_not_make_a_task_suspicious() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.allowed_failures = 0)).with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.start("w2", "a");
    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
}

/// Regression: the dead worker was still named as a holder while the killed task's
/// inputs were released, and releasing them looked the dead worker up.
#[test]
fn killed_task_whose_input_was_on_the_dead_worker_releases_the_input() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.allowed_failures = 0)).with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.start("w1", "b");
    cl.lose_worker("w1");
    let killed = TaskError::KilledWorker {
        workers: vec!["w1".into()],
    };
    assert_eq!(cl.erred_to_client(c), [("b".to_string(), killed)]);
    assert_eq!(cl.state("a"), TaskState::Released);
    assert!(cl.computes_sent_to("w2").is_empty(), "a is not needed any more");
    cl.release(c, &["b"]);
    assert_eq!(cl.core.task_count(), 0);
}

/// Regression: erring one task of the dead worker released a sibling input that was also
/// processing there, which the loop then met in an unexpected state.
#[test]
fn two_killed_inputs_of_one_dependent_on_the_same_dead_worker() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.allowed_failures = 0)).with_workers(&[("w1", 2)]);
    cl.submit(c, vec![task("t"), task("u"), task_on("d", &["t", "u"])], &["d"]);
    cl.start("w1", "t");
    cl.start("w1", "u");
    cl.lose_worker("w1");
    let told = cl.erred_to_client(c);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].0, "d");
    assert!(matches!(
        &told[0].1,
        TaskError::Dependency { error, .. } if matches!(**error, TaskError::KilledWorker { .. })
    ));
}

#[test]
fn messages_from_a_lost_worker_are_ignored() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.lose_worker("w1");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    cl.finish("w1", "a", 1);
    cl.fail("w1", "a", boom());
    cl.lose_worker("w1");
    assert_eq!(cl.processing_on("a"), "w2");
    cl.assert_nothing_else_sent();
}

// ----- heartbeats -----

#[test]
fn silent_worker_is_dropped_on_tick_and_its_tasks_reassigned() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);

    cl.advance(Duration::from_secs(6));
    cl.heartbeat("w2");
    cl.tick();
    assert!(cl.closed_workers().is_empty(), "6 s of silence is within the timeout");

    cl.advance(Duration::from_secs(5));
    cl.tick();
    assert_eq!(cl.closed_workers(), ["w1"]);
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    assert_eq!(cl.core.worker_count(), 1);

    // Any message counts as a sign of life.
    cl.advance(Duration::from_secs(9));
    cl.finish("w2", "b", 1);
    cl.advance(Duration::from_secs(9));
    cl.tick();
    assert!(cl.closed_workers().is_empty());
}

#[test]
fn an_input_kept_idle_spares_its_lineage_when_a_result_made_from_it_is_lost() {
    for keep in [true, false] {
        let (mut cl, c) =
            if keep { Cluster::keeping_idle() } else { Cluster::new() }.with_workers(&[("w1", 1), ("w2", 1)]);
        cl.submit(
            c,
            vec![
                task("a").only_on(&["w1"]),
                task_on("b", &["a"]).only_on(&["w2"]),
                task("x").only_on(&["w1"]),
                task_on("c", &["b", "x"]).only_on(&["w1"]),
            ],
            &["c"],
        );
        assert_eq!(cl.computes_sent_to("w1"), ["a", "x"]);
        cl.finish("w1", "a", 1);
        assert_eq!(cl.computes_sent_to("w2"), ["b"]);
        cl.finish_fetched("w2", "b", 1, &["a"]);
        // Nothing needs a any more; kept, it is not released.
        let released: Vec<String> = cl
            .releases_sent_to("w1")
            .into_iter()
            .chain(cl.releases_sent_to("w2"))
            .collect();
        assert_eq!(released.is_empty(), keep, "{released:?}");
        // b is lost before c could use it: b must be computed again, from a where a was
        // kept (b then waits for a worker it may run on), or after a, computed again first.
        cl.computes_sent_to("w1");
        cl.lose_worker("w2");
        if keep {
            assert_eq!(cl.state("a"), TaskState::Memory);
            assert_eq!(cl.state("b"), TaskState::Ready);
            assert!(cl.computes_sent_to("w1").is_empty());
        } else {
            assert_eq!(cl.computes_sent_to("w1"), ["a"], "a is computed again first");
            assert_eq!(cl.state("b"), TaskState::Waiting);
        }
    }
}
