//! The core's part for nannies: death reports and the cluster-wide restart.

use super::*;

#[test]
fn a_death_reported_by_the_nanny_closes_the_worker_and_places_its_tasks_elsewhere() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let nanny = cl.add_nanny("n", &["w1"]);
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.start("w1", "a");
    cl.add_worker("w2", 1);
    cl.nanny_reports_death(nanny, "w1", "killed for memory");
    assert_eq!(cl.closed_workers(), ["w1"], "the connection need not time out");
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
    cl.finish("w2", "a", 1);
    assert_eq!(cl.finished_to_client(c), ["a"]);
}

#[test]
fn the_reason_a_nanny_gives_is_carried_into_the_killed_worker_error() {
    let (mut cl, c) = Cluster::with_config(config(|c| c.allowed_failures = 0)).with_workers(&[("w1", 1)]);
    let nanny = cl.add_nanny("n", &["w1"]);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.start("w1", "a");
    cl.nanny_reports_death(nanny, "w1", "killed for memory");
    let erred = cl.erred_to_client(c);
    assert_eq!(erred.len(), 1);
    match &erred[0].1 {
        TaskError::KilledWorker { workers } => assert_eq!(workers, &["w1 (killed for memory)"]),
        other => panic!("expected killed worker, got {other:?}"),
    }
}

#[test]
fn a_death_report_naming_no_connected_worker_changes_nothing() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let nanny = cl.add_nanny("n", &["w1"]);
    cl.submit(c, vec![task("a")], &["a"]);
    assert_eq!(cl.computes_sent_to("w1"), ["a"]);
    cl.nanny_reports_death(nanny, "w9", "crashed");
    assert!(cl.closed_workers().is_empty());
    assert_eq!(cl.processing_on("a"), "w1");
}

#[test]
fn a_restart_without_nannies_is_refused() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let req = cl.restart(c);
    let answers = cl.restarted_to_client(c);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, req);
    let reason = answers[0].1.clone().expect_err("no nanny to restart");
    assert!(reason.contains("no nanny"), "{reason}");
}

#[test]
fn a_restart_drops_every_task_and_is_answered_once_the_same_workers_are_back() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1), ("w2", 1)]);
    let nanny = cl.add_nanny("n", &["w1", "w2"]);
    cl.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    cl.computes_sent_to("w1");
    cl.computes_sent_to("w2");
    cl.finish("w1", "a", 1);
    assert_eq!(cl.finished_to_client(c), ["a"]);
    let req = cl.restart(c);
    assert_eq!(cl.sent_to_nanny(nanny), [ToNanny::Restart]);
    let lost: Vec<String> = cl.erred_to_client(c).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        lost,
        ["b"],
        "what had not finished is lost; finished results need no word"
    );
    assert_eq!(cl.core.task_count(), 0, "every task is dropped");
    cl.lose_worker("w1");
    cl.lose_worker("w2");
    cl.add_worker("w1", 1);
    assert!(cl.restarted_to_client(c).is_empty(), "w2 is not back yet");
    cl.add_worker("w2", 1);
    assert_eq!(cl.restarted_to_client(c), [(req, Ok(2))]);
}

#[test]
fn a_second_restart_while_one_is_under_way_is_refused() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let nanny = cl.add_nanny("n", &["w1"]);
    cl.restart(c);
    assert_eq!(cl.sent_to_nanny(nanny), [ToNanny::Restart]);
    let second = cl.restart(c);
    let answers = cl.restarted_to_client(c);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, second);
    assert!(answers[0].1.clone().unwrap_err().contains("already under way"));
    assert!(cl.sent_to_nanny(nanny).is_empty(), "the nanny is not asked twice");
}

#[test]
fn a_restart_whose_workers_do_not_come_back_is_given_up_after_its_patience() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.add_nanny("n", &["w1"]);
    let req = cl.restart(c);
    cl.lose_worker("w1");
    cl.advance(Duration::from_secs(59));
    cl.timer_now();
    assert!(cl.restarted_to_client(c).is_empty(), "still within its patience");
    cl.advance(Duration::from_secs(1));
    cl.timer_now();
    let answers = cl.restarted_to_client(c);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, req);
    let reason = answers[0].1.clone().unwrap_err();
    assert!(
        reason.contains("1 of 1 worker did not come back within 60 s: w1"),
        "{reason}"
    );
}
