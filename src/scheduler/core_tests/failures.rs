//! What goes wrong: retries and errors, cancellation, fetch failures, late and stale messages.

use super::*;

// ----- retries and errors -----

#[test]
fn failed_task_with_retries_runs_again_then_succeeds() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a").retries(2)], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.fail("w1", "a", boom());
    assert_eq!(cl.computes_sent_to("w1"), ["a"], "first retry");
    assert!(cl.erred_to_client(c).is_empty());
    cl.fail("w1", "a", boom());
    assert_eq!(cl.computes_sent_to("w1"), ["a"], "second retry");
    cl.finish("w1", "a", 3);
    assert_eq!(cl.finished_to_client(c), ["a"]);
    assert!(cl.erred_to_client(c).is_empty());
    assert_eq!(cl.state("a"), TaskState::Memory);
}

#[test]
fn exhausted_retries_err_the_task_and_every_dependent() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1)]);
    cl.submit(
        c,
        vec![
            task("a").retries(1),
            task_on("b", &["a"]),
            task_on("c", &["b"]),
            task_on("d", &["a"]),
            task("other"),
        ],
        &["c", "d", "other"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a", "other"]);
    cl.fail("w1", "a", boom());
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.fail("w1", "a", boom());
    assert!(cl.computes_sent_to("w1").is_empty());

    assert_eq!(cl.state("a"), TaskState::Erred(Box::new(boom())));
    assert_eq!(cl.state("b"), TaskState::Erred(Box::new(dependency("a", boom()))));
    let mut told = cl.erred_to_client(c);
    told.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        told,
        [
            ("c".to_string(), dependency("a", boom())),
            ("d".to_string(), dependency("a", boom())),
        ],
        "dependents name the task that failed first, not their direct input"
    );
    assert_eq!(
        cl.state("other"),
        TaskState::Processing {
            worker: cl.worker("w1"),
            started: false,
            attempt: cl.attempt("other"),
        }
    );

    // Submitting a dependent of an erred key errs it at once.
    cl.submit(c, vec![task_on("e", &["a"])], &["e"]);
    assert_eq!(cl.erred_to_client(c), [("e".to_string(), dependency("a", boom()))]);
    assert!(cl.computes_sent_to("w1").is_empty());

    cl.release(c, &["c", "d", "e"]);
    assert_eq!(cl.core.task_count(), 1, "only `other` is left");
}

#[test]
fn erred_wanted_key_is_reported_to_a_client_that_asks_later() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c1 = cl.add_client();
    let c2 = cl.add_client();
    cl.submit(c1, vec![task("a")], &["a"]);
    cl.fail("w1", "a", boom());
    assert_eq!(cl.erred_to_client(c1), [("a".to_string(), boom())]);
    cl.submit(c2, vec![task("a")], &["a"]);
    assert_eq!(cl.erred_to_client(c2), [("a".to_string(), boom())]);
}

// ----- cancellation -----

#[test]
fn cancelling_a_waiting_task_leaves_wanted_inputs_running() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["a", "b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.cancel(c, &["b"]);
    assert_eq!(cl.erred_to_client(c), [("b".to_string(), TaskError::Cancelled)]);
    assert_eq!(cl.state("b"), TaskState::Erred(Box::new(TaskError::Cancelled)));
    cl.assert_nothing_else_sent();
    assert_eq!(cl.processing_on("a"), "w1");

    cl.finish("w1", "a", 1);
    assert_eq!(cl.finished_to_client(c), ["a"]);
    assert!(cl.computes_sent_to("w1").is_empty(), "the cancelled task never runs");
}

#[test]
fn cancelling_a_waiting_task_stops_inputs_nobody_needs() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.cancel(c, &["b"]);
    assert_eq!(cl.erred_to_client(c), [("b".to_string(), TaskError::Cancelled)]);
    assert_eq!(cl.cancels_sent_to("w1"), ["a"]);
    assert_eq!(cl.state("a"), TaskState::Released);
    cl.assert_nothing_else_sent();

    cl.release(c, &["b"]);
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn cancelling_a_processing_task_tells_its_worker_and_errs_dependents() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1)]);
    cl.submit(
        c,
        vec![task("a"), task_on("b", &["a"]), task_on("c", &["b"])],
        &["a", "c"],
    );
    cl.computes_sent_to("w1");
    cl.start("w1", "a");
    cl.cancel(c, &["a"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["a"]);
    let mut told = cl.erred_to_client(c);
    told.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        told,
        [
            ("a".to_string(), TaskError::Cancelled),
            ("c".to_string(), dependency("a", TaskError::Cancelled)),
        ]
    );
    assert_eq!(
        cl.state("b"),
        TaskState::Erred(Box::new(dependency("a", TaskError::Cancelled)))
    );
    cl.assert_nothing_else_sent();

    // The slot is free again.
    cl.submit(c, vec![task("next")], &["next"]);
    assert_eq!(cl.computes_sent_to("w1"), ["next"]);
}

#[test]
fn cancelling_a_finished_or_unknown_key_changes_nothing() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.finish("w1", "a", 1);
    cl.take(|_| true);
    cl.cancel(c, &["a", "nope"]);
    assert_eq!(cl.state("a"), TaskState::Memory);
    cl.assert_nothing_else_sent();
}

// ----- fetch failures -----

/// `a` computed on w1 and fetched by w2 for `b`; `c`, on w3, is to fetch it too.
fn one_input_held_twice() -> Cluster {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1), ("w3", 1)]);
    cl.submit(
        c,
        vec![
            task("a"),
            task_on("b", &["a"]).only_on(&["w2"]),
            task_on("c", &["a"]).only_on(&["w3"]),
        ],
        &["b", "c"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    assert_eq!(cl.computes_sent_to("w3"), ["c"]);
    cl.finish_fetched("w2", "b", 1, &["a"]);
    assert_eq!(cl.core.holders_of("a"), ["w1", "w2"]);
    cl
}

#[test]
fn fetch_failure_drops_the_holder_and_places_the_task_again() {
    let mut cl = one_input_held_twice();

    cl.fetch_failed("w3", "c", "a", "w1");
    assert_eq!(cl.core.holders_of("a"), ["w2"]);
    let sent = cl.compute_msgs_to("w3");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key, "c");
    assert_eq!(sent[0].deps[0].holders, [address("w2")]);
    assert!(cl.computes_sent_to("w1").is_empty(), "a is not recomputed");
}

#[test]
fn fetch_failure_from_the_last_holder_recomputes_the_input() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"]).only_on(&["w2"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);

    cl.fetch_failed("w2", "b", "a", "w1");
    assert!(cl.core.holders_of("a").is_empty());
    assert_eq!(cl.state("b"), TaskState::Waiting);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
}

#[test]
fn fetch_failure_naming_an_unknown_holder_places_the_task_again() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["b"]);
    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b"]);
    cl.fetch_failed("w1", "b", "a", "ghost");
    assert_eq!(cl.core.holders_of("a"), ["w1"]);
    assert_eq!(cl.computes_sent_to("w1"), ["b"]);
}

#[test]
fn a_holder_that_cannot_be_reached_is_told_to_drop_its_copy_and_one_without_it_is_not() {
    let mut cl = one_input_held_twice();
    cl.take(|_| true);
    // The transfer from w1 failed: w1 is listed no more, and whatever it keeps is dropped.
    cl.fetch_failed("w3", "c", "a", "w1");
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.core.holders_of("a"), ["w2"]);
    // w2 answered that it does not hold it: nothing to drop there; a is computed again.
    let attempt = cl.attempt("c");
    cl.fetch_failed_as("w3", "c", attempt, "a", "w2", FetchFailure::NotHeld);
    assert!(cl.releases_sent_to("w2").is_empty());
    assert!(cl.core.holders_of("a").is_empty());
    assert_eq!(
        cl.state("a"),
        TaskState::Processing {
            worker: cl.worker("w1"),
            started: false,
            attempt: cl.attempt("a")
        }
    );
}

/// `x` scattered to w1, and `b` reading it placed on w2.
fn scattered_x_read_on_w2() -> (Cluster, ClientId) {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.scatter(c, &[("x", b"hello")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    cl.stored("w1", "x", 5);
    cl.submit(c, vec![task_on("b", &["x"]).only_on(&["w2"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    (cl, c)
}

#[test]
fn the_only_copy_of_scattered_data_is_kept_when_one_transfer_from_its_holder_fails() {
    let (mut cl, c) = scattered_x_read_on_w2();
    cl.sent_to_client(c);
    // A transfer failure is no proof that w1 lost x (it may be busy or restarting its
    // listener): x stays, b is placed again, and only w1's loss would err x.
    cl.fetch_failed("w2", "b", "x", "w1");
    assert_eq!(cl.core.holders_of("x"), ["w1"]);
    assert!(cl.releases_sent_to("w1").is_empty());
    assert!(cl.erred_to_client(c).is_empty());
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
}

#[test]
fn a_fetch_failure_answering_an_earlier_assignment_leaves_the_current_one_alone() {
    // w1 gives x back from a steal while b, queued behind x there, was sent after the
    // steal: w1 cannot have x for b and says so, but only after x and b were placed again.
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("x"), task_on("b", &["x"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["x", "b"]);
    let first = cl.attempt("b");
    cl.stolen("w1", &["x"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["x", "b"]);
    assert_ne!(cl.attempt("b"), first);
    cl.fetch_failed_as("w1", "b", first, "x", "", FetchFailure::NoHolder);
    assert!(cl.cancels_sent_to("w1").is_empty());
    assert!(cl.computes_sent_to("w1").is_empty(), "b is not placed a third time");
    assert_eq!(cl.processing_on("b"), "w1");
    cl.finish("w1", "x", 1);
    cl.finish("w1", "b", 1);
    assert_eq!(cl.finished_to_client(c), ["b"]);
}

// ----- late and stale messages -----

#[test]
fn late_finished_for_a_cancelled_task_drops_the_result() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.computes_sent_to("w1");
    cl.cancel(c, &["a"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["a"]);
    cl.erred_to_client(c);
    cl.finish("w1", "a", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.state("a"), TaskState::Erred(Box::new(TaskError::Cancelled)));
    cl.fail("w1", "a", boom());
    cl.start("w1", "a");
    cl.assert_nothing_else_sent();
}

#[test]
fn late_finished_for_a_forgotten_task_drops_the_result() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.computes_sent_to("w1");
    cl.release(c, &["a"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["a"]);
    assert_eq!(cl.core.task_count(), 0);
    cl.finish("w1", "a", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    cl.stolen("w1", &["a"]);
    cl.stored("w1", "a", 1);
    assert_eq!(cl.releases_sent_to("w1"), ["a"], "bytes nobody asked for are dropped");
    cl.fetch_failed("w1", "a", "a", "w1");
    cl.assert_nothing_else_sent();
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn a_late_finished_from_the_worker_a_task_was_stolen_from_is_its_result() {
    let (mut cl, c) = busy_worker();
    let first = cl.attempt("t4");
    cl.add_worker("w2", 1);
    assert_eq!(cl.steals_sent_to("w1"), ["t4", "t3"]);
    cl.stolen("w1", &["t4", "t3"]);
    assert_eq!(cl.computes_sent_to("w2"), ["t4", "t3"]);
    assert_ne!(cl.attempt("t4"), first, "a new assignment");
    // w1 ran t4 anyway, its answer crossing the steal: a valid result, so kept, and the
    // computation on w2 is stopped.
    cl.finish_as("w1", "t4", first, 1, &[]);
    assert_eq!(cl.cancels_sent_to("w2"), ["t4"]);
    assert!(cl.releases_sent_to("w1").is_empty());
    assert_eq!(cl.finished_to_client(c), ["t4"]);
    assert_eq!(cl.core.holders_of("t4"), ["w1"]);
    // w2 finished before its cancel arrived: a second holder, and clients are told once.
    cl.finish("w2", "t4", 1);
    assert_eq!(cl.core.holders_of("t4"), ["w1", "w2"]);
    assert!(cl.finished_to_client(c).is_empty(), "told once");
}

#[test]
fn stolen_reply_for_tasks_not_asked_for_is_ignored() {
    let (mut cl, _) = busy_worker();
    cl.stolen("w1", &["t1", "t0"]);
    assert_eq!(cl.processing_on("t1"), "w1");
    assert_eq!(cl.processing_on("t0"), "w1");
}

#[test]
fn info_and_who_has_describe_the_cluster() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 2)]);
    cl.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    cl.finish("w1", "a", 42);
    cl.take(|_| true);
    cl.client_says(
        c,
        FromClient::WhoHas {
            req: RequestId(7),
            keys: strings(&["a", "b", "zz"]),
        },
    );
    let told = cl.sent_to_client(c);
    let [ToClient::WhoHas { req, locations }] = &told[..] else {
        panic!("{told:?}")
    };
    assert_eq!(*req, RequestId(7));
    assert_eq!(locations[0].holders, [address("w1")]);
    assert_eq!(locations[0].nbytes, 42);
    assert!(locations[0].problem.is_none());
    assert!(locations[1]
        .problem
        .as_ref()
        .unwrap()
        .to_string()
        .contains("processing"));
    assert!(locations[2].problem.as_ref().unwrap().to_string().contains("unknown"));

    cl.client_says(c, FromClient::Info { req: RequestId(8) });
    let told = cl.sent_to_client(c);
    let [ToClient::Info { info, .. }] = &told[..] else {
        panic!("{told:?}")
    };
    assert_eq!(info.workers.len(), 1);
    assert_eq!(info.workers[0].processing, 1);
    assert_eq!(info.workers[0].stored_bytes, 42);
    assert_eq!(info.tasks, [("memory".to_string(), 1), ("processing".to_string(), 1)]);
    // Regression: `distd info` counted itself. The asker is not among the clients counted...
    assert_eq!(info.clients, 0);
    // ... the others are.
    let other = cl.add_client();
    cl.client_says(c, FromClient::Info { req: RequestId(9) });
    let told = cl.sent_to_client(c);
    let [ToClient::Info { info, .. }] = &told[..] else {
        panic!("{told:?}")
    };
    assert_eq!(info.clients, 1, "{other} is counted");
}

/// Regression: a released scattered input was "recomputed" by sending its placeholder spec
/// to a worker when a result made from it was lost.
#[test]
fn released_scattered_input_is_never_sent_to_a_worker_to_compute() {
    let (mut cl, c) = scattered_x_read_on_w2();
    cl.finish_fetched("w2", "b", 1, &["x"]);
    // The usual pattern: scatter, compute on it, drop the scattered input.
    cl.release(c, &["x"]);
    cl.sent_to_client(c);
    cl.take(|_| true);

    cl.lose_worker("w2");
    assert!(cl.computes_sent_to("w1").is_empty(), "x has no spec to run");
    let told = cl.erred_to_client(c);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, "b");
    assert!(
        matches!(&told[0].1, TaskError::Dependency { key, .. } if key == "x"),
        "{told:?}"
    );
}

#[test]
fn cancelling_a_scatter_before_it_is_stored_answers_the_scatter() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let req = cl.scatter(c, &[("x", b"hello")]);
    cl.puts_sent_to("w1");
    cl.cancel(c, &["x"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["x"]);
    let told = cl.sent_to_client(c);
    assert!(
        told.iter()
            .any(|m| matches!(m, ToClient::Scattered { req: r, result: Err(_) } if *r == req)),
        "{told:?}"
    );
}

/// Regression: bytes stored for a scatter nobody wanted any more stayed on the worker.
#[test]
fn data_stored_after_its_client_left_is_dropped() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.scatter(c, &[("x", b"hello")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    cl.disconnect(c);
    cl.take(|_| true);
    assert_eq!(cl.core.task_count(), 0);
    cl.stored("w1", "x", 5);
    assert_eq!(cl.releases_sent_to("w1"), ["x"]);
    cl.assert_nothing_else_sent();
}

#[test]
fn a_cancel_stops_a_task_only_for_the_client_that_cancels_while_another_waits_for_it() {
    let (mut cl, a) = Cluster::new().with_workers(&[("w1", 1)]);
    let b = cl.add_client();
    cl.submit(a, vec![task("x"), task_on("y", &["x"])], &["x"]);
    cl.submit(b, vec![task("x"), task_on("y", &["x"])], &["y"]);
    assert_eq!(cl.computes_sent_to("w1"), ["x"]);
    // b waits for y, downstream of x: a's cancel of x is a's alone.
    cl.cancel(a, &["x"]);
    assert_eq!(cl.erred_to_client(a), [("x".to_string(), TaskError::Cancelled)]);
    assert!(cl.cancels_sent_to("w1").is_empty(), "x keeps running for b");
    cl.finish("w1", "x", 1);
    assert!(cl.finished_to_client(a).is_empty(), "a let go of x");
    assert_eq!(cl.computes_sent_to("w1"), ["y"]);
    cl.finish("w1", "y", 1);
    assert_eq!(cl.finished_to_client(b), ["y"]);
    // With nobody else waiting, a cancel stops the task.
    cl.submit(a, vec![task("z")], &["z"]);
    assert_eq!(cl.computes_sent_to("w1"), ["z"]);
    cl.cancel(a, &["z"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["z"]);
    assert_eq!(cl.erred_to_client(a), [("z".to_string(), TaskError::Cancelled)]);
}
