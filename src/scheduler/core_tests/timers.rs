//! The core's timer: when it is due, what it does, and that an idle core has none.

use super::*;

#[test]
fn a_core_with_no_worker_and_no_idle_timeout_has_no_deadline_but_the_notice() {
    let mut cl = Cluster::new();
    assert_eq!(cl.core.next_deadline(), None, "nothing to wake up for");
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    assert!(
        cl.core.next_deadline().is_some(),
        "a ready task with no worker: its client is to be told"
    );
    cl.tick();
    assert!(matches!(&cl.sent_to_client(c)[..], [ToClient::Notice { .. }]));
    assert_eq!(
        cl.core.next_deadline(),
        None,
        "then a ready task waits for a worker, not a timer"
    );
}

#[test]
fn housekeeping_is_due_only_while_workers_are_connected() {
    let mut cl = Cluster::new();
    cl.add_worker("w1", 1);
    let deadline = cl.core.next_deadline().expect("heartbeats are watched");
    assert!(
        deadline > cl.now + Duration::from_secs(1) && deadline <= cl.now + Duration::from_secs(2),
        "with no task, only heartbeats to watch: every 2 s"
    );
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    let deadline = cl.core.next_deadline().expect("a task to balance");
    assert!(
        deadline <= cl.now + Duration::from_millis(200),
        "with a task known, queues are balanced every 200 ms"
    );
    cl.lose_worker("w1");
    cl.disconnect(c);
    assert_eq!(cl.core.next_deadline(), None);
    assert_eq!(cl.core.next_deadline(), None);
}

#[test]
fn a_timer_before_its_deadline_does_nothing() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.computes_sent_to("w1");
    cl.advance(Duration::from_secs(60));
    let deadline = cl.core.next_deadline();
    // A timer that fires early (before the deadline it was set for) must not act.
    cl.now -= Duration::from_secs(60);
    cl.timer_now();
    assert!(cl.closed_workers().is_empty());
    assert_eq!(cl.core.next_deadline(), deadline, "the deadline stays");
}

#[test]
fn the_idle_timeout_stops_the_scheduler_once_nothing_happened_for_that_long() {
    let mut cl = Cluster::with_config(config(|c| c.idle_timeout = Some(Duration::from_secs(5))));
    let start = cl.now;
    assert_eq!(cl.core.next_deadline(), Some(start + Duration::from_secs(5)));
    cl.advance(Duration::from_secs(3));
    let c = cl.add_client();
    assert_eq!(cl.core.next_deadline(), None, "a connected client keeps it busy");
    cl.advance(Duration::from_secs(10));
    cl.disconnect(c);
    let idle_from = cl.now;
    assert_eq!(cl.core.next_deadline(), Some(idle_from + Duration::from_secs(5)));
    cl.advance(Duration::from_secs(4));
    cl.timer_now();
    assert!(cl.stops().is_empty(), "idle for 4 s of 5");
    cl.tick();
    assert_eq!(cl.now, idle_from + Duration::from_secs(5));
    assert_eq!(cl.stops(), [StopReason::IdleTimeout(Duration::from_secs(5))]);
}

#[test]
fn a_known_task_keeps_the_scheduler_from_going_idle() {
    let mut cl = Cluster::with_config(config(|c| c.idle_timeout = Some(Duration::from_secs(5))));
    let c = cl.add_client();
    cl.submit(c, vec![task("a")], &["a"]);
    cl.advance(Duration::from_secs(60));
    cl.timer_now();
    assert!(cl.stops().is_empty());
    assert_eq!(cl.core.next_deadline(), None);
}

#[test]
fn clients_waiting_with_no_worker_are_told_once_and_again_when_one_joins() {
    let (mut cl, c) = Cluster::new().with_workers(&[("w1", 1)]);
    cl.submit(c, vec![task("a")], &["a"]);
    cl.computes_sent_to("w1");
    cl.lose_worker("w1");
    cl.sent_to_client(c);
    // A restarting worker may be back soon: nothing is said at once.
    cl.advance(Duration::from_secs(5));
    cl.timer_now();
    assert!(cl.sent_to_client(c).is_empty());
    // Past the grace, the waiting client is told, once.
    cl.tick();
    let told = cl.sent_to_client(c);
    assert!(
        matches!(&told[..], [ToClient::Notice { message }] if message.contains("no worker") && message.contains("1 task waits")),
        "{told:?}"
    );
    cl.advance(Duration::from_secs(60));
    cl.timer_now();
    assert!(cl.sent_to_client(c).is_empty(), "told once");
    assert_eq!(cl.core.next_deadline(), None, "and then it sleeps");
    cl.add_worker("w2", 1);
    let told = cl.sent_to_client(c);
    assert!(
        matches!(&told[..], [ToClient::Notice { message }] if message.contains("joined")),
        "{told:?}"
    );
    assert_eq!(cl.computes_sent_to("w2"), ["a"]);
}
