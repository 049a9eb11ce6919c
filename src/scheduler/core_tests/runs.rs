//! Whole graphs run to completion, and what is kept and released on the way.

use super::*;

// ----- graphs run to completion -----

#[test]
fn chain_runs_to_completion_and_releases_intermediates() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"]), task_on("c", &["b"])], &["c"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);

    cl.finish("w1", "a", 10);
    assert_eq!(cl.computes_sent_to("w1"), ["b"]);
    assert!(cl.releases_sent_to("w1").is_empty(), "b still needs a");

    cl.finish("w1", "b", 20);
    assert_eq!(cl.releases_sent_to("w1"), ["a"], "nothing needs a once b is done");
    assert_eq!(cl.computes_sent_to("w1"), ["c"]);

    cl.finish("w1", "c", 30);
    assert_eq!(cl.releases_sent_to("w1"), ["b"]);
    assert_eq!(
        cl.sent_to_client(c),
        [ToClient::KeyFinished {
            key: "c".into(),
            nbytes: 30
        }],
        "the client hears about the wanted key only"
    );
    assert_eq!(cl.state("c"), TaskState::Memory);
    assert_eq!(cl.core.holders_of("c"), ["w1"]);
    cl.assert_nothing_else_sent();

    cl.release(c, &["c"]);
    assert_eq!(cl.releases_sent_to("w1"), ["c"]);
    assert_eq!(cl.core.task_count(), 0, "released tasks are forgotten");
    assert!(!cl.core.is_idle(), "the client is still connected");
    cl.assert_nothing_else_sent();
}

#[test]
fn diamond_runs_to_completion_and_releases_the_root_after_both_branches() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 2), ("w2", 2)]);
    cl.submit(
        c,
        vec![
            task("a"),
            task_on("b", &["a"]),
            task_on("c", &["a"]),
            task_on("d", &["b", "c"]),
        ],
        &["d"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 100);
    // Both branches go where their input is.
    assert_eq!(cl.computes_sent_to("w1"), ["b", "c"]);
    cl.finish("w1", "b", 5);
    assert!(cl.releases_sent_to("w1").is_empty(), "c still needs a");
    assert_eq!(cl.state("d"), TaskState::Waiting);
    cl.finish("w1", "c", 5);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["d"]);
    cl.finish("w1", "d", 7);
    let mut released = cl.releases_sent_to("w1");
    released.sort();
    assert_eq!(released, ["b", "c"]);
    assert_eq!(cl.finished_to_client(c), ["d"]);
    cl.assert_nothing_else_sent();
    assert_eq!(cl.core.task_count(), 4);

    cl.release(c, &["d"]);
    assert_eq!(cl.releases_sent_to("w1"), ["d"]);
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn every_wanted_key_is_reported_once_and_kept_until_released() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &["a", "b"]);
    cl.computes_sent_to("w1");
    cl.finish("w1", "a", 1);
    cl.finish("w1", "b", 2);
    assert_eq!(cl.finished_to_client(c), ["a", "b"]);
    assert!(cl.releases_sent_to("w1").is_empty(), "a is wanted");
    cl.computes_sent_to("w1");
    cl.assert_nothing_else_sent();

    cl.release(c, &["b"]);
    assert_eq!(cl.releases_sent_to("w1"), ["b"]);
    assert_eq!(cl.state("a"), TaskState::Memory);
    assert_eq!(cl.core.task_count(), 1);
    cl.release(c, &["a"]);
    assert_eq!(cl.releases_sent_to("w1"), ["a"]);
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn released_key_can_be_submitted_and_run_again() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.finish("w1", "a", 1);
    cl.release(c, &["a"]);
    assert_eq!(cl.core.task_count(), 0);
    cl.take(|_| true);

    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
}

/// A task may name the same input twice (as a graph file's `deps = ["a", "a"]` does): it
/// runs once the input is done, on both ready and queued-behind paths, and everything is
/// released and forgotten after, with no stale dependent left on the input.
#[test]
fn a_task_naming_an_input_twice_runs_and_is_forgotten_cleanly() {
    for queue_behind in [false, true] {
        let (mut cl, c) =
            Cluster::with_config(config(|c| c.queue_behind_inputs = queue_behind)).with_workers(&[("w1", 1)]);
        cl.submit(
            c,
            vec![task("a"), task_on("b", &["a", "a"]), task_on("c", &["b", "a", "b"])],
            &["c"],
        );
        let first = cl.computes_sent_to("w1");
        assert_eq!(first[0], "a");
        cl.finish("w1", "a", 1);
        cl.computes_sent_to("w1");
        cl.finish("w1", "b", 1);
        cl.computes_sent_to("w1");
        cl.finish("w1", "c", 1);
        assert_eq!(cl.finished_to_client(c), ["c"]);
        cl.release(c, &["c"]);
        assert_eq!(
            cl.core.task_count(),
            0,
            "everything is forgotten (queue behind: {queue_behind})"
        );
    }
}
