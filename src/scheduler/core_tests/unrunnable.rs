//! Tasks that ask for what no connected worker has: reported to the clients waiting on them,
//! at once, and again when a worker that can run them joins.

use super::*;

/// The one `Unrunnable` report sent to `client`, as (key, why) and how many more.
fn report(cl: &mut Cluster, client: ClientId) -> Option<(Vec<(String, String)>, u64)> {
    let told = cl.sent_to_client(client);
    let reports: Vec<_> = told
        .into_iter()
        .filter_map(|m| match m {
            ToClient::Unrunnable { tasks, more } => Some((tasks, more)),
            _ => None,
        })
        .collect();
    assert!(reports.len() <= 1, "one report per batch: {reports:?}");
    reports.into_iter().next()
}

#[test]
fn a_task_needing_a_resource_no_worker_has_is_reported_at_submission() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 2)]);
    cl.submit(c, vec![task("gpu").needs("GPU", 1.0), task("plain")], &["gpu", "plain"]);
    let (tasks, more) = report(&mut cl, c).expect("reported");
    assert_eq!(
        tasks,
        [(
            "gpu".to_string(),
            "it needs GPU=1, and no connected worker has GPU".to_string()
        )]
    );
    assert_eq!(more, 0);
    assert_eq!(cl.computes_sent_to("w1"), ["plain"], "the rest runs");
    // Told once, however often placement looks at it again.
    cl.finish("w1", "plain", 1);
    cl.tick();
    assert_eq!(report(&mut cl, c), None);
}

#[test]
fn too_little_of_a_resource_and_an_unknown_worker_name_are_reported_with_why() {
    let (mut cl, c) = Cluster::new().with_workers(&[]);
    cl.add_worker_with("w1", 1, &[("GPU", 1.0)]);
    cl.add_worker_with("w2", 1, &[("GPU", 2.0)]);
    cl.submit(
        c,
        vec![task("big").needs("GPU", 4.0), task("named").only_on(&["nobody"])],
        &["big", "named"],
    );
    let (tasks, _) = report(&mut cl, c).expect("reported");
    assert_eq!(
        tasks,
        [
            (
                "big".to_string(),
                "it needs GPU=4, and the most any connected worker has is GPU=2".to_string()
            ),
            (
                "named".to_string(),
                "it may run only on workers [\"nobody\"], and no connected worker has that name, address or host"
                    .to_string()
            ),
        ]
    );
}

#[test]
fn the_clients_of_what_depends_on_it_are_told_and_no_other() {
    let (mut cl, c1) = Cluster::new().with_workers(&[("w1", 1)]);
    let c2 = cl.add_client();
    // c1 wants a sink two steps below the unrunnable task; c2 wants an unrelated task.
    cl.submit(
        c1,
        vec![
            task("gpu").needs("GPU", 1.0),
            task_on("mid", &["gpu"]),
            task_on("sink", &["mid"]),
        ],
        &["sink"],
    );
    cl.submit(c2, vec![task("other")], &["other"]);
    let (tasks, _) = report(&mut cl, c1).expect("c1 is told");
    assert_eq!(tasks[0].0, "gpu");
    assert_eq!(report(&mut cl, c2), None, "c2 waits for nothing that cannot run");
}

#[test]
fn a_worker_that_can_run_it_joining_says_so_and_runs_it() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("gpu").needs("GPU", 1.0)], &["gpu"]);
    assert!(report(&mut cl, c).is_some());
    cl.add_worker_with("g1", 1, &[("GPU", 1.0)]);
    let told = cl.sent_to_client(c);
    assert!(
        matches!(&told[..], [ToClient::Notice { message }] if message == "worker g1 joined; task \"gpu\" can run now"),
        "{told:?}"
    );
    assert_eq!(cl.computes_sent_to("g1"), ["gpu"]);
}

#[test]
fn the_only_worker_that_could_run_it_gone_for_good_makes_it_unrunnable_after_the_grace() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.add_worker_with("g1", 1, &[("GPU", 1.0)]);
    cl.submit(c, vec![task("gpu").needs("GPU", 1.0)], &["gpu"]);
    assert_eq!(report(&mut cl, c), None);
    assert_eq!(cl.computes_sent_to("g1"), ["gpu"]);
    cl.lose_worker("g1");
    // It may be back soon (its nanny restarts it): nothing is said within the grace.
    cl.advance(Duration::from_secs(9));
    cl.timer_now();
    assert_eq!(report(&mut cl, c), None);
    cl.advance(Duration::from_secs(1));
    cl.timer_now();
    let (tasks, _) = report(&mut cl, c).expect("reported once the grace is over");
    assert_eq!(tasks[0].0, "gpu");
}

#[test]
fn a_worker_restarted_within_the_grace_runs_it_unremarked() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.add_worker_with("g1", 1, &[("GPU", 1.0)]);
    cl.submit(c, vec![task("gpu").needs("GPU", 1.0)], &["gpu"]);
    assert_eq!(cl.computes_sent_to("g1"), ["gpu"]);
    cl.lose_worker("g1");
    cl.advance(Duration::from_secs(2));
    cl.add_worker_with("g2", 1, &[("GPU", 1.0)]);
    assert_eq!(cl.computes_sent_to("g2"), ["gpu"]);
    cl.advance(Duration::from_secs(20));
    cl.timer_now();
    let told = cl.sent_to_client(c);
    assert!(
        !told
            .iter()
            .any(|m| matches!(m, ToClient::Unrunnable { .. } | ToClient::Notice { .. })),
        "{told:?}"
    );
}

#[test]
fn with_no_worker_at_all_the_no_worker_notice_speaks_instead() {
    let (mut cl, c) = Cluster::new().with_workers(&[]);
    cl.submit(c, vec![task("gpu").needs("GPU", 1.0)], &["gpu"]);
    assert_eq!(report(&mut cl, c), None);
    // The first worker to join cannot run it: now it is reported.
    cl.add_worker("w1", 1);
    let (tasks, _) = report(&mut cl, c).expect("reported");
    assert_eq!(tasks[0].0, "gpu");
}

#[test]
fn a_report_names_a_few_tasks_and_counts_the_rest() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    let keys: Vec<String> = (0..50).map(|i| format!("g{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    cl.submit(c, keys.iter().map(|k| task(k).needs("GPU", 1.0)).collect(), &keys);
    let (tasks, more) = report(&mut cl, c).expect("reported");
    assert_eq!(tasks.len(), 20);
    assert_eq!(more, 30);
    // Cancelled, they are forgotten (the sanity check holds the reported set to live tasks):
    // a GPU worker joining later has nothing to announce.
    cl.cancel(c, &keys);
    cl.sent_to_client(c);
    cl.add_worker_with("g1", 1, &[("GPU", 1.0)]);
    assert_eq!(cl.sent_to_client(c), []);
}
