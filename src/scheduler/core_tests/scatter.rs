//! Scattered data: placed, answered, lost.

use super::*;

// ----- scatter -----

#[test]
fn scatter_puts_data_on_a_worker_and_answers_when_stored() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let req = cl.scatter(c, &[("x", b"hello")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    assert!(cl.sent_to_client(c).is_empty(), "not stored yet");
    cl.stored("w1", "x", 5);
    assert_eq!(
        cl.sent_to_client(c),
        [
            ToClient::KeyFinished {
                key: "x".into(),
                nbytes: 5
            },
            ToClient::Scattered { req, result: Ok(()) }
        ]
    );
    assert_eq!(cl.core.holders_of("x"), ["w1"]);
}

#[test]
fn scatter_spreads_items_and_is_answered_once_all_are_stored() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    let req = cl.scatter(c, &[("x", b"1"), ("y", b"2")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    assert_eq!(cl.puts_sent_to("w2"), ["y"]);
    cl.stored("w2", "y", 1);
    assert_eq!(cl.finished_to_client(c), ["y"]);
    cl.assert_nothing_else_sent();
    cl.stored("w1", "x", 1);
    assert_eq!(cl.finished_to_client(c), ["x"]);
    assert_eq!(cl.sent_to_client(c), [ToClient::Scattered { req, result: Ok(()) }]);
}

#[test]
fn scatter_without_workers_or_over_a_known_key_is_refused() {
    let mut cl = Cluster::new();
    let c = cl.add_client();
    let req = cl.scatter(c, &[("x", b"1")]);
    assert!(matches!(&cl.sent_to_client(c)[..], [ToClient::Scattered { req: r, result: Err(_) }] if *r == req));

    cl.add_worker("w1", 1);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.take(|_| true);
    let req = cl.scatter(c, &[("new", b"1"), ("a", b"2")]);
    assert!(
        matches!(&cl.sent_to_client(c)[..], [ToClient::Scattered { req: r, result: Err(e) }] if *r == req && e.contains("\"a\""))
    );
    assert!(cl.puts_sent_to("w1").is_empty());
    assert_eq!(cl.core.task_count(), 1);
}

/// Regression: the same key twice in one scatter made two tasks under one key.
#[test]
fn scatter_with_a_key_twice_is_refused() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let req = cl.scatter(c, &[("x", b"1"), ("x", b"2")]);
    assert!(
        matches!(&cl.sent_to_client(c)[..], [ToClient::Scattered { req: r, result: Err(e) }] if *r == req && e.contains("\"x\""))
    );
    assert!(cl.puts_sent_to("w1").is_empty());
    assert_eq!(cl.core.task_count(), 0);
}

#[test]
fn dependent_of_scattered_data_runs_where_the_data_is() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.scatter(c, &[("x", b"hello")]);
    assert_eq!(cl.puts_sent_to("w1"), ["x"]);
    cl.stored("w1", "x", 5);
    cl.sent_to_client(c);
    cl.submit(c, vec![task_on("b", &["x"])], &["b"]);
    let sent = cl.compute_msgs_to("w1");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].deps[0].key, "x");
    assert_eq!(sent[0].deps[0].holders, [address("w1")]);
    cl.finish("w1", "b", 1);
    assert_eq!(cl.finished_to_client(c), ["b"]);
    assert!(cl.releases_sent_to("w1").is_empty(), "the client still wants x");
}

/// Regression: a dependent submitted before its scattered input was stored waited forever.
#[test]
fn dependent_submitted_before_the_scatter_is_stored_runs_after_it() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.scatter(c, &[("x", b"hello")]);
    cl.submit(c, vec![task_on("b", &["x"])], &["b"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);
    cl.stored("w1", "x", 5);
    assert_eq!(cl.computes_sent_to("w1"), ["b"]);
}

#[test]
fn losing_the_holder_of_scattered_data_errs_its_dependents_with_lost_data() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1), ("w2", 1)]);
    cl.scatter(c, &[("x", b"hello")]);
    cl.stored("w1", "x", 5);
    cl.submit(c, vec![task("y").only_on(&["w2"]), task_on("b", &["x", "y"])], &["b"]);
    cl.sent_to_client(c);
    assert_eq!(cl.computes_sent_to("w2"), ["y"]);
    assert_eq!(cl.state("b"), TaskState::Waiting);

    cl.lose_worker("w1");
    let lost = TaskError::LostData { worker: "w1".into() };
    let mut told = cl.erred_to_client(c);
    told.sort_by(|p, q| p.0.cmp(&q.0));
    assert_eq!(
        told,
        [
            ("b".to_string(), dependency("x", lost.clone())),
            ("x".to_string(), lost)
        ]
    );
    assert!(
        cl.computes_sent_to("w2").is_empty(),
        "scattered data has no spec to rerun"
    );
    assert_eq!(cl.cancels_sent_to("w2"), ["y"], "y was only needed by b");
}

/// Regression: a scatter whose worker died before storing the data was never answered.
#[test]
fn scatter_is_answered_when_its_worker_dies_before_storing() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let req = cl.scatter(c, &[("x", b"hello")]);
    cl.lose_worker("w1");
    let told = cl.sent_to_client(c);
    assert!(
        told.iter()
            .any(|m| matches!(m, ToClient::Scattered { req: r, result: Err(_) } if *r == req)),
        "{told:?}"
    );
    assert!(told.contains(&ToClient::KeyErred {
        key: "x".into(),
        error: TaskError::LostData { worker: "w1".into() }
    }));
}
