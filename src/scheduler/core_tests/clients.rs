//! Clients leaving, and what they wanted.

use super::*;

// ----- clients leaving -----

#[test]
fn client_disconnect_releases_results_and_cancels_work_nobody_needs() {
    let (mut cl, c) = Cluster::ready_only().with_workers(&[("w1", 1)]);
    cl.submit(
        c,
        vec![task("done"), task("running"), task_on("waiting", &["running"])],
        &["done", "waiting"],
    );
    assert_eq!(cl.computes_sent_to("w1"), ["done", "running"]);
    cl.finish("w1", "done", 1);
    cl.sent_to_client(c);
    cl.disconnect(c);
    assert_eq!(cl.releases_sent_to("w1"), ["done"]);
    assert_eq!(cl.cancels_sent_to("w1"), ["running"]);
    assert_eq!(cl.core.task_count(), 0);
    assert!(cl.core.is_idle());
    cl.assert_nothing_else_sent();
}

#[test]
fn results_shared_by_two_clients_survive_one_leaving() {
    let mut cl = Cluster::ready_only();
    cl.add_worker("w1", 1);
    let c1 = cl.add_client();
    let c2 = cl.add_client();
    cl.submit(c1, vec![task("a"), task_on("b", &["a"])], &["b"]);
    cl.submit(c2, vec![task("a"), task_on("c", &["a"])], &["c"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.disconnect(c1);
    cl.assert_nothing_else_sent();
    cl.finish("w1", "a", 1);
    assert_eq!(cl.computes_sent_to("w1"), ["c"]);
    cl.finish("w1", "c", 1);
    assert_eq!(cl.finished_to_client(c2), ["c"]);
    assert!(cl.sent_to_client(c1).is_empty());
    assert_eq!(cl.core.task_count(), 2, "a is kept as the input of c; b is gone");
}

#[test]
fn messages_from_a_gone_client_are_ignored() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.disconnect(c);
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.core.task_count(), 0);
    cl.assert_nothing_else_sent();
}
