//! Retirement (`--lifetime`, `--drain`).

use super::*;

// ----- retirement (--lifetime, --drain) -----

fn replicates_sent_to(cl: &mut Cluster, worker: &str) -> Vec<(String, String)> {
    let id = cl.worker(worker);
    let msgs = cl.take(|o| matches!(o, Outgoing::Worker(w, ToWorker::Replicate { .. }) if *w == id));
    msgs.into_iter()
        .map(|o| match o {
            Outgoing::Worker(_, ToWorker::Replicate { task, from }) => (cl.key(task), from),
            _ => unreachable!(),
        })
        .collect()
}

fn shutdowns_sent_to(cl: &mut Cluster, worker: &str) -> usize {
    let id = cl.worker(worker);
    cl.take(|o| matches!(o, Outgoing::Worker(w, ToWorker::Shutdown { .. }) if *w == id))
        .len()
}

#[test]
fn a_retiring_worker_gives_back_queued_tasks_finishes_running_ones_and_hands_over_results() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("kept"), task("a"), task("b")], &["kept", "a", "b"]);
    let on_w1 = cl.computes_sent_to("w1");
    assert_eq!(on_w1.len(), 3);
    cl.start("w1", "kept");
    cl.finish("w1", "kept", 10);
    cl.start("w1", "a");
    cl.worker_says(
        "w1",
        FromWorker::Retire {
            reason: "its lifetime is up".into(),
        },
    );
    // The unstarted one is asked back; the running one runs on.
    assert_eq!(cl.steals_sent_to("w1"), ["b"]);
    cl.add_worker("w2", 1);
    cl.stolen("w1", &["b"]);
    assert_eq!(cl.computes_sent_to("w2"), ["b"]);
    cl.finish("w1", "a", 5);
    // Nothing runs on w1 any more: its results go to w2, then it may leave.
    let mut copies = replicates_sent_to(&mut cl, "w2");
    copies.sort();
    assert_eq!(
        copies,
        [("a".to_string(), address("w1")), ("kept".to_string(), address("w1"))]
    );
    assert_eq!(shutdowns_sent_to(&mut cl, "w1"), 0);
    for k in ["a", "kept"] {
        let task = cl.id(k);
        cl.worker_says(
            "w2",
            FromWorker::Replicated {
                task,
                nbytes: Some(1),
                seen: u64::MAX,
            },
        );
    }
    assert_eq!(shutdowns_sent_to(&mut cl, "w1"), 1);
    cl.lose_worker("w1");
    // Nothing was lost: no recompute, the results are on w2.
    assert!(cl.computes_sent_to("w2").is_empty());
    assert_eq!(cl.state("kept"), TaskState::Memory);
    assert_eq!(cl.core.holders_of("kept"), ["w2"]);
}

#[test]
fn a_retiring_worker_with_no_one_to_take_its_results_just_leaves() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("x")], &["x"]);
    cl.computes_sent_to("w1");
    cl.start("w1", "x");
    cl.finish("w1", "x", 1);
    cl.worker_says("w1", FromWorker::Retire { reason: "drain".into() });
    assert_eq!(shutdowns_sent_to(&mut cl, "w1"), 1);
}

#[test]
fn a_result_with_replicas_is_copied_when_computed_and_again_when_a_holder_is_lost() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1), ("w3", 1)]);
    let mut a = task("a");
    a.options.replicas = 2;
    cl.submit(c, vec![a, task_on("b", &["a"]).only_on(&["w3"])], &["b"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.finish("w1", "a", 5);
    assert_eq!(cl.computes_sent_to("w3"), ["b"]);
    // One more copy, from w1, on one of the others.
    let to_w2 = replicates_sent_to(&mut cl, "w2");
    let to_w3 = replicates_sent_to(&mut cl, "w3");
    assert_eq!(to_w2.len() + to_w3.len(), 1, "{to_w2:?} {to_w3:?}");
    let (target, other) = if to_w2.is_empty() { ("w3", "w2") } else { ("w2", "w3") };
    let task = cl.id("a");
    cl.worker_says(
        target,
        FromWorker::Replicated {
            task,
            nbytes: Some(5),
            seen: u64::MAX,
        },
    );
    assert_eq!(cl.core.holders_of("a"), ["w1", target]);
    // w1 dies: a is not lost, nothing is computed again, and a new copy is made from the
    // one left.
    cl.lose_worker("w1");
    assert_eq!(cl.state("a"), TaskState::Memory);
    assert!(cl.computes_sent_to("w2").is_empty() && cl.computes_sent_to("w3").is_empty());
    assert_eq!(replicates_sent_to(&mut cl, other), [("a".to_string(), address(target))]);
    cl.worker_says(
        other,
        FromWorker::Replicated {
            task,
            nbytes: Some(5),
            seen: u64::MAX,
        },
    );
    assert_eq!(cl.core.holders_of("a").len(), 2);
    // Once nothing needs it, every copy goes.
    cl.finish("w3", "b", 1);
    assert_eq!(cl.finished_to_client(c), ["b"]);
    let mut released = cl.releases_sent_to("w2");
    released.extend(cl.releases_sent_to("w3"));
    assert_eq!(released, ["a", "a"]);
}
