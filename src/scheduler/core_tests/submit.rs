//! Submissions checked whole before anything is stored.

use super::*;

// ----- submission -----

fn assert_rejected(cl: &mut Cluster, c: ClientId, batch: &[&str], naming: &str) {
    let told = cl.erred_to_client(c);
    let keys: Vec<&str> = told.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, batch, "every key of the batch is rejected");
    for (_, e) in &told {
        let reason = rejected_reason(e);
        assert!(reason.contains(naming), "{reason:?} names {naming:?}");
    }
    assert_eq!(cl.core.task_count(), 0, "nothing of a rejected batch is kept");
}

#[test]
fn duplicate_key_in_a_batch_is_rejected() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task("x"), task("x")], &["a", "x"]);
    assert_rejected(&mut cl, c, &["a", "x", "x"], "\"x\"");
    // The wanted list of a rejected batch is not answered separately.
    cl.assert_nothing_else_sent();
}

#[test]
fn unknown_dependency_is_rejected() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["nope"])], &["b"]);
    assert_rejected(&mut cl, c, &["a", "b"], "\"nope\"");
    assert!(cl.computes_sent_to("w1").is_empty());
}

#[test]
fn dependency_cycle_is_rejected() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(
        c,
        vec![
            task("root"),
            task_on("x", &["root", "z"]),
            task_on("y", &["x"]),
            task_on("z", &["y"]),
        ],
        &["z"],
    );
    assert_rejected(&mut cl, c, &["root", "x", "y", "z"], "cycle");
    let told = cl.sent_to_client(c);
    assert!(told.is_empty());
    assert!(cl.computes_sent_to("w1").is_empty());
}

#[test]
fn cycle_reason_names_the_keys_in_it() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task_on("p", &["q"]), task_on("q", &["p"])], &["p"]);
    let told = cl.erred_to_client(c);
    let reason = rejected_reason(&told[0].1);
    assert!(reason.contains('p') && reason.contains('q'), "{reason}");
}

#[test]
fn self_dependency_is_rejected() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task_on("me", &["me"])], &["me"]);
    assert_rejected(&mut cl, c, &["me"], "\"me\"");
}

#[test]
fn empty_key_is_rejected() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    cl.submit(c, vec![task("")], &[""]);
    assert_rejected(&mut cl, c, &[""], "empty");
}

#[test]
fn wanting_an_unknown_key_is_rejected_for_that_key_only() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a")], &["a", "ghost"]);
    let told = cl.erred_to_client(c);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].0, "ghost");
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
}

#[test]
fn resubmitting_a_known_key_does_not_run_it_twice() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let c1 = cl.add_client();
    let c2 = cl.add_client();
    cl.submit(c1, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.submit(c1, vec![task("a")], &["a"]);
    cl.submit(c2, vec![task("a"), task_on("b", &["a"])], &["a", "b"]);
    assert!(cl.computes_sent_to("w1").is_empty(), "a is already processing");

    cl.finish("w1", "a", 4);
    assert_eq!(cl.finished_to_client(c1), ["a"], "told once, though asked twice");
    assert_eq!(cl.finished_to_client(c2), ["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["b"]);

    // Asking for a finished key answers at once.
    let c3 = cl.add_client();
    cl.submit(c3, vec![task("a")], &["a"]);
    assert_eq!(
        cl.sent_to_client(c3),
        [ToClient::KeyFinished {
            key: "a".into(),
            nbytes: 4
        }]
    );
    assert!(cl.computes_sent_to("w1").is_empty());
}

#[test]
fn unwanted_submitted_tasks_are_dropped_at_once() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a"), task_on("b", &["a"])], &[]);
    assert_eq!(cl.core.task_count(), 0);
    cl.assert_nothing_else_sent();
}

// ----- submissions in parts -----

fn part(cl: &mut Cluster, c: ClientId, tasks: Vec<TaskDesc>, wanted: &[&str]) {
    cl.client_says(
        c,
        FromClient::SubmitPart {
            tasks,
            wanted: strings(wanted),
        },
    );
}

#[test]
fn a_submission_in_parts_is_taken_whole_at_its_last_part() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    // `a` is wanted by nobody and only used by a later part: a batch of its own would have
    // dropped it at once.
    part(&mut cl, c, vec![task("a")], &[]);
    part(&mut cl, c, vec![task_on("b", &["a"])], &[]);
    assert_eq!(cl.core.task_count(), 0, "parts are held until the submission ends");
    cl.assert_nothing_else_sent();
    cl.submit(c, vec![task_on("c", &["b", "a"])], &["c"]);
    assert_eq!(cl.core.task_count(), 3);
    // The chain is queued on the worker behind its head.
    assert_eq!(cl.computes_sent_to("w1"), ["a", "b", "c"]);
    for k in ["a", "b", "c"] {
        cl.start("w1", k);
        cl.finish("w1", k, 1);
    }
    assert_eq!(cl.finished_to_client(c), ["c"]);
}

#[test]
fn a_bad_part_rejects_the_whole_submission() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    // The cycle spans the parts; the keys wanted come in the first.
    part(&mut cl, c, vec![task("root"), task_on("x", &["root", "z"])], &["x"]);
    part(&mut cl, c, vec![task_on("y", &["x"])], &[]);
    cl.submit(c, vec![task_on("z", &["y"])], &["z"]);
    assert_rejected(&mut cl, c, &["root", "x", "y", "z"], "cycle");
    assert!(cl.computes_sent_to("w1").is_empty());
    // The next submission starts afresh.
    cl.submit(c, vec![task("next")], &["next"]);
    assert_eq!(cl.computes_sent_to("w1"), ["next"]);
}

#[test]
fn a_client_lost_mid_submission_leaves_nothing() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    part(&mut cl, c, vec![task("a")], &["a"]);
    cl.disconnect(c);
    assert_eq!(cl.core.task_count(), 0);
    assert!(cl.computes_sent_to("w1").is_empty());
    cl.assert_nothing_else_sent();
}
