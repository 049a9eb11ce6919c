//! Tier-1 tests of the worker core: events in, effects out, a pretend clock, no sockets or
//! sleeps, and [`WorkerCore::sanity_check`] after every step (through [`Sim`]).

use super::state::{Effect, FetchError, WorkerCore, WorkerExit, WorkerSettings, FUNCTION_PREFETCH_PER_THREAD};
use crate::memory::MemoryPolicy;
use crate::protocol::{AttemptId, ComputeTask, DepLocation, FromWorker, TaskError, TaskId, TaskSpec};
use std::time::{Duration, Instant};

/// A worker core whose every event is followed by its sanity check.
struct Sim {
    core: WorkerCore,
}

impl Sim {
    /// A registered worker with `nthreads` slots and nothing else configured.
    fn new(nthreads: usize) -> Sim {
        Sim::with(WorkerSettings::new(nthreads), Instant::now())
    }

    /// A worker started and registered at `now`, heartbeat every second; its outbox empty.
    fn with(settings: WorkerSettings, now: Instant) -> Sim {
        let mut sim = Sim {
            core: WorkerCore::new(settings, now),
        };
        sim.core.sanity_check();
        sim.on_registered(HEARTBEAT, now);
        assert_eq!(sim.take_outbox(), vec![]);
        sim
    }

    checked! {
        core;
        on_compute(ct: ComputeTask);
        on_replicate(task: TaskId, from: String);
        on_fetched(dep: TaskId, outcome: Result<u64, FetchError>);
        on_release_data(tasks: Vec<TaskId>);
        on_cancel(tasks: Vec<TaskId>);
        on_put_data(task: TaskId, nbytes: u64);
        report_starts();
        on_timer(now: Instant);
        on_memory(rss: u64, in_memory: u64, now: Instant);
        on_spilled();
        on_registered(heartbeat: Duration, now: Instant);
        on_scheduler_lost(now: Instant);
        on_stop_requested(now: Instant);
        on_shutdown(now: Instant);
    }

    /// The execution of `task`'s assignment as [`ct`] numbers it ended.
    fn on_executed(&mut self, task: TaskId, outcome: Result<u64, TaskError>) {
        self.on_executed_as(task, at(task.0), outcome);
    }

    fn on_executed_as(&mut self, task: TaskId, attempt: AttemptId, outcome: Result<u64, TaskError>) {
        self.core.on_executed(task, attempt, outcome);
        self.core.sanity_check();
    }

    fn on_function_started(&mut self, task: TaskId) {
        self.core.on_function_started(task, at(task.0));
        self.core.sanity_check();
    }

    fn on_steal(&mut self, tasks: Vec<TaskId>, retract: impl FnMut(TaskId) -> bool) {
        self.core.on_steal(tasks, retract);
        self.core.sanity_check();
    }

    fn take_outbox(&mut self) -> Vec<Effect> {
        self.core.take_outbox()
    }

    fn assigned(&self) -> usize {
        self.core.assigned()
    }

    fn held(&self) -> usize {
        self.core.held()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.core.next_deadline()
    }
}

const HEARTBEAT: Duration = Duration::from_secs(1);

/// The assignment number the tests give task `id` (unless a test assigns it again).
fn at(id: u64) -> AttemptId {
    AttemptId(id as u32)
}

fn cmd(id: u64) -> ComputeTask {
    ComputeTask {
        spec: TaskSpec::Command(crate::protocol::CommandSpec {
            argv: vec!["true".into()],
            ..Default::default()
        }),
        ..ct(id, vec![])
    }
}

fn ct(id: u64, deps: Vec<(u64, &str)>) -> ComputeTask {
    ComputeTask {
        id: TaskId(id),
        attempt: at(id),
        key: format!("k{id}"),
        spec: TaskSpec::Function {
            name: "noop".into(),
            args: vec![],
            args_form: crate::protocol::ArgsForm::Bytes,
        },
        deps: deps
            .into_iter()
            .map(|(d, h)| DepLocation {
                id: TaskId(d),
                key: format!("k{d}"),
                nbytes: 1,
                holders: if h.is_empty() { vec![] } else { vec![h.to_string()] },
            })
            .collect(),
        priority: 0,
    }
}

fn executes(effects: &[Effect]) -> Vec<TaskId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Execute { task, .. } => Some(*task),
            _ => None,
        })
        .collect()
}

#[test]
fn runs_at_most_nthreads_commands_at_once_and_queues_the_rest() {
    let mut w = Sim::new(2);
    for i in 0..5 {
        w.on_compute(cmd(i));
    }
    let e = w.take_outbox();
    assert_eq!(executes(&e), vec![TaskId(0), TaskId(1)]);
    assert!(e.contains(&Effect::Send(FromWorker::Started {
        task: TaskId(0),
        attempt: at(0)
    })));
    w.on_executed(TaskId(0), Ok(3));
    let e = w.take_outbox();
    assert!(e.contains(&Effect::Send(FromWorker::Finished {
        task: TaskId(0),
        attempt: at(0),
        nbytes: 3,
        fetched: vec![],
        seen: 1,
    })));
    assert_eq!(executes(&e), vec![TaskId(2)]);
}

#[test]
fn functions_are_queued_to_their_threads_ahead_and_report_their_real_start() {
    let mut w = Sim::new(1);
    let n = 1 + FUNCTION_PREFETCH_PER_THREAD as u64;
    for i in 0..n + 2 {
        w.on_compute(ct(i, vec![]));
    }
    let e = w.take_outbox();
    // One slot and the prefetch queued ahead; nobody is told "started" before a thread
    // starts it.
    assert_eq!(executes(&e), (0..n).map(TaskId).collect::<Vec<_>>());
    assert!(!e.iter().any(|e| matches!(e, Effect::Send(FromWorker::Started { .. }))));
    w.on_function_started(TaskId(0));
    assert!(
        w.take_outbox().is_empty(),
        "starts are reported once the events are handled"
    );
    w.report_starts();
    assert_eq!(
        w.take_outbox(),
        vec![Effect::Send(FromWorker::Started {
            task: TaskId(0),
            attempt: at(0)
        })]
    );
    w.on_executed(TaskId(0), Ok(1));
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(n)]);
}

#[test]
fn a_task_that_started_and_finished_in_one_batch_sends_only_finished() {
    let mut w = Sim::new(1);
    w.on_compute(ct(1, vec![]));
    w.on_compute(ct(2, vec![]));
    w.take_outbox();
    w.on_function_started(TaskId(1));
    w.on_executed(TaskId(1), Ok(0));
    w.on_function_started(TaskId(2));
    w.report_starts();
    let sent: Vec<Effect> = w
        .take_outbox()
        .into_iter()
        .filter(|e| matches!(e, Effect::Send(_)))
        .collect();
    assert_eq!(
        sent,
        vec![
            Effect::Send(FromWorker::Finished {
                task: TaskId(1),
                attempt: at(1),
                nbytes: 0,
                fetched: vec![],
                seen: 1,
            }),
            Effect::Send(FromWorker::Started {
                task: TaskId(2),
                attempt: at(2)
            }),
        ]
    );
}

#[test]
fn steal_takes_back_queued_functions_unless_a_thread_claimed_them() {
    let mut w = Sim::new(1);
    for i in 1..=3 {
        w.on_compute(ct(i, vec![]));
    }
    w.take_outbox();
    // Task 1 is claimed by a thread (its start event not handled yet), 2 and 3 are queued.
    let mut asked = Vec::new();
    w.on_steal(vec![TaskId(1), TaskId(2), TaskId(3)], |t| {
        asked.push(t);
        t != TaskId(1)
    });
    assert_eq!(asked, vec![TaskId(1), TaskId(2), TaskId(3)]);
    let e = w.take_outbox();
    assert!(e.contains(&Effect::Send(FromWorker::Stolen {
        tasks: vec![(TaskId(2), at(2)), (TaskId(3), at(3))]
    })));
    assert_eq!(w.assigned(), 1);
    // The claimed one runs to the end and is reported.
    w.on_function_started(TaskId(1));
    w.on_executed(TaskId(1), Ok(2));
    assert!(w.take_outbox().contains(&Effect::Send(FromWorker::Finished {
        task: TaskId(1),
        attempt: at(1),
        nbytes: 2,
        fetched: vec![],
        seen: 1,
    })));
}

#[test]
fn no_function_is_queued_ahead_while_a_command_holds_a_slot() {
    let mut w = Sim::new(1);
    w.on_compute(cmd(0));
    w.on_compute(ct(1, vec![]));
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(0)]);
    w.on_executed(TaskId(0), Ok(1));
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(1)]);
}

#[test]
fn fetches_inputs_then_reports_them_with_the_result() {
    let mut w = Sim::new(1);
    w.on_compute(ct(5, vec![(1, "peer:1"), (2, "peer:2")]));
    let e = w.take_outbox();
    assert_eq!(e.iter().filter(|e| matches!(e, Effect::Fetch { .. })).count(), 2);
    w.on_fetched(TaskId(1), Ok(10));
    assert!(executes(&w.take_outbox()).is_empty());
    w.on_fetched(TaskId(2), Ok(20));
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(5)]);
    w.on_executed(TaskId(5), Ok(1));
    assert!(w.take_outbox().contains(&Effect::Send(FromWorker::Finished {
        task: TaskId(5),
        attempt: at(5),
        nbytes: 1,
        fetched: vec![TaskId(1), TaskId(2)],
        seen: 1,
    })));
}

#[test]
fn failed_fetch_gives_the_task_back_and_drops_unreported_inputs() {
    let mut w = Sim::new(1);
    w.on_compute(ct(5, vec![(1, "a"), (2, "b")]));
    w.take_outbox();
    w.on_fetched(TaskId(1), Ok(10));
    w.on_fetched(TaskId(2), Err(FetchError::Transfer("connection refused".into())));
    let e = w.take_outbox();
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Send(FromWorker::FetchFailed {
            task: TaskId(5),
            dep: TaskId(2),
            ..
        })
    )));
    assert!(e.contains(&Effect::Drop(vec![TaskId(1)])));
    assert_eq!(w.assigned(), 0);
    assert_eq!(w.held(), 0);
}

#[test]
fn cancel_kills_running_and_frees_the_slot() {
    let mut w = Sim::new(1);
    w.on_compute(cmd(1));
    w.on_compute(cmd(2));
    w.take_outbox();
    w.on_cancel(vec![TaskId(1)]);
    let e = w.take_outbox();
    assert!(e.contains(&Effect::Kill(TaskId(1), at(1))));
    assert_eq!(executes(&e), vec![TaskId(2)]);
    // A late result of the killed run is dropped, not reported.
    w.on_executed(TaskId(1), Ok(5));
    assert_eq!(w.take_outbox(), vec![Effect::Drop(vec![TaskId(1)])]);
}

#[test]
fn steal_gives_back_only_unstarted_tasks() {
    let mut w = Sim::new(1);
    w.on_compute(cmd(1));
    w.on_compute(cmd(2));
    w.take_outbox();
    w.on_steal(vec![TaskId(1), TaskId(2)], |_| {
        unreachable!("commands are never queued to threads")
    });
    assert_eq!(
        w.take_outbox(),
        vec![Effect::Send(FromWorker::Stolen {
            tasks: vec![(TaskId(2), at(2))]
        })]
    );
}

#[test]
fn a_task_queued_behind_an_input_computing_here_starts_when_it_is_done() {
    let mut w = Sim::new(1);
    w.on_compute(cmd(1));
    // Its input is being computed here: no holder to fetch from, no fetch.
    w.on_compute(ComputeTask {
        spec: cmd(2).spec,
        ..ct(2, vec![(1, "")])
    });
    let e = w.take_outbox();
    assert_eq!(executes(&e), vec![TaskId(1)]);
    assert!(!e
        .iter()
        .any(|e| matches!(e, Effect::Fetch { .. } | Effect::Send(FromWorker::FetchFailed { .. }))));
    w.on_executed(TaskId(1), Ok(4));
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(2)]);
    w.on_executed(TaskId(2), Ok(1));
    assert!(w.take_outbox().contains(&Effect::Send(FromWorker::Finished {
        task: TaskId(2),
        attempt: at(2),
        nbytes: 1,
        fetched: vec![],
        seen: 1,
    })));
}

#[test]
fn a_cancelled_task_queued_behind_an_input_is_not_started_by_it() {
    let mut w = Sim::new(1);
    w.on_compute(cmd(1));
    w.on_compute(ct(2, vec![(1, "")]));
    w.take_outbox();
    w.on_cancel(vec![TaskId(2)]);
    w.on_executed(TaskId(1), Ok(4));
    assert!(executes(&w.take_outbox()).is_empty());
    assert_eq!(w.assigned(), 0);
}

#[test]
fn an_input_nobody_holds_fails_the_task_before_any_fetch_starts() {
    let mut w = Sim::new(1);
    w.on_compute(ct(5, vec![(1, "peer:1"), (2, "")]));
    let e = w.take_outbox();
    assert!(!e.iter().any(|e| matches!(e, Effect::Fetch { .. })), "{e:?}");
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Send(FromWorker::FetchFailed {
            task: TaskId(5),
            dep: TaskId(2),
            ..
        })
    )));
    assert_eq!(w.assigned(), 0);
}

// Decisions in time: heartbeats, lifetime, stopping, memory.

fn retire(reason: &str) -> Effect {
    Effect::Send(FromWorker::Retire { reason: reason.into() })
}

fn leaving() -> Effect {
    Effect::Send(FromWorker::Leaving {
        reason: "the worker was asked to stop".into(),
    })
}

#[test]
fn an_idle_worker_sleeps_until_its_heartbeat_which_carries_its_memory() {
    let t0 = Instant::now();
    let mut w = Sim::with(WorkerSettings::new(1), t0);
    assert_eq!(
        w.next_deadline(),
        Some(t0 + HEARTBEAT),
        "no other timer without a limit"
    );
    w.on_timer(t0 + HEARTBEAT - Duration::from_millis(1));
    assert_eq!(w.take_outbox(), vec![]);
    w.on_timer(t0 + HEARTBEAT);
    assert_eq!(w.take_outbox(), vec![Effect::SampleMemory]);
    w.on_memory(12345, 0, t0 + HEARTBEAT);
    assert_eq!(
        w.take_outbox(),
        vec![Effect::Send(FromWorker::Heartbeat { memory: 12345 })]
    );
    assert_eq!(w.next_deadline(), Some(t0 + 2 * HEARTBEAT));
    // A loop that wakes late sends one heartbeat, not a burst, and keeps the interval.
    let late = t0 + 5 * HEARTBEAT;
    w.on_timer(late);
    assert_eq!(w.take_outbox(), vec![Effect::SampleMemory]);
    w.on_memory(1, 0, late);
    w.take_outbox();
    assert_eq!(w.next_deadline(), Some(late + HEARTBEAT));
    // A reading with no heartbeat waiting sends nothing.
    w.on_memory(1, 0, late);
    assert_eq!(w.take_outbox(), vec![]);
}

#[test]
fn the_lifetime_retires_the_worker_and_the_shutdown_then_ends_it_as_retired() {
    let t0 = Instant::now();
    let settings = WorkerSettings {
        lifetime: Some(Duration::from_millis(2500)),
        ..WorkerSettings::new(1)
    };
    let mut w = Sim::with(settings, t0);
    let end = t0 + Duration::from_millis(2500);
    w.on_timer(t0 + 2 * HEARTBEAT);
    w.take_outbox();
    w.on_memory(0, 0, t0 + 2 * HEARTBEAT);
    w.take_outbox();
    assert_eq!(
        w.next_deadline(),
        Some(end),
        "the lifetime comes before the next heartbeat"
    );
    w.on_timer(end);
    assert_eq!(w.take_outbox(), vec![retire("its lifetime is up")]);
    assert!(w.core.is_retiring());
    assert_eq!(w.next_deadline(), Some(t0 + 3 * HEARTBEAT), "retired once");
    // A retiring worker still runs what it has.
    w.on_compute(cmd(1));
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(1)]);
    w.on_shutdown(end);
    assert_eq!(w.take_outbox(), vec![Effect::Leave(WorkerExit::Retired)]);
    assert_eq!(w.next_deadline(), None, "a worker that left has no timer");
}

#[test]
fn a_stop_request_leaves_at_once_without_drain() {
    let t0 = Instant::now();
    let mut w = Sim::with(WorkerSettings::new(1), t0);
    w.on_stop_requested(t0);
    assert_eq!(w.take_outbox(), vec![leaving(), Effect::Leave(WorkerExit::Stopped)]);
    // Nothing happens after the end.
    w.on_stop_requested(t0);
    w.on_timer(t0 + 10 * HEARTBEAT);
    assert_eq!(w.take_outbox(), vec![]);
}

#[test]
fn with_drain_the_first_stop_retires_and_the_second_stops_at_once() {
    let t0 = Instant::now();
    let settings = WorkerSettings {
        drain: true,
        ..WorkerSettings::new(1)
    };
    let mut w = Sim::with(settings.clone(), t0);
    w.on_compute(cmd(1));
    w.take_outbox();
    w.on_stop_requested(t0);
    assert_eq!(w.take_outbox(), vec![retire("draining on a stop request")]);
    // The running task finishes and is reported while draining.
    w.on_executed(TaskId(1), Ok(3));
    assert!(w.take_outbox().contains(&Effect::Send(FromWorker::Finished {
        task: TaskId(1),
        attempt: at(1),
        nbytes: 3,
        fetched: vec![],
        seen: 1,
    })));
    w.on_stop_requested(t0 + HEARTBEAT / 2);
    assert_eq!(w.take_outbox(), vec![leaving(), Effect::Leave(WorkerExit::Stopped)]);

    // Drained to the end, the scheduler's shutdown ends it as retired.
    let mut w = Sim::with(settings, t0);
    w.on_stop_requested(t0);
    w.take_outbox();
    w.on_shutdown(t0);
    assert_eq!(w.take_outbox(), vec![Effect::Leave(WorkerExit::Retired)]);
}

#[test]
fn memory_above_the_thresholds_spills_pauses_and_resumes() {
    let t0 = Instant::now();
    let settings = WorkerSettings {
        memory: MemoryPolicy::new(1000),
        ..WorkerSettings::new(1)
    };
    let mut w = Sim::with(settings, t0);
    let heartbeat = w.next_deadline().expect("a heartbeat is due");
    assert!(
        heartbeat > t0 + MemoryPolicy::CHECK_EVERY,
        "at rest only the heartbeat reads memory"
    );
    w.on_compute(cmd(1));
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(1)]);
    assert_eq!(
        w.next_deadline(),
        Some(t0 + MemoryPolicy::CHECK_EVERY),
        "while a task runs memory is checked between heartbeats"
    );
    let t1 = t0 + MemoryPolicy::CHECK_EVERY;
    w.on_timer(t1);
    assert_eq!(w.take_outbox(), vec![Effect::SampleMemory]);
    // Under the spill threshold: nothing.
    w.on_memory(600, 400, t1);
    assert_eq!(w.take_outbox(), vec![]);
    // Above it (60%): spill half of what is in memory, once until the spill is over.
    w.on_memory(700, 400, t1);
    assert_eq!(w.take_outbox(), vec![Effect::Spill { keep: 200 }]);
    w.on_memory(750, 400, t1);
    assert_eq!(w.take_outbox(), vec![]);
    assert!(!w.core.is_paused());
    // Above the pause threshold (80%): what runs goes on, nothing new starts.
    w.on_memory(850, 400, t1);
    assert!(w.core.is_paused());
    w.on_compute(cmd(2));
    w.on_executed(TaskId(1), Ok(1));
    assert_eq!(executes(&w.take_outbox()), vec![]);
    w.on_spilled();
    // Back under it: the waiting task starts; under 60% no new spill.
    let t2 = t1 + MemoryPolicy::CHECK_EVERY;
    assert_eq!(w.next_deadline(), Some(t2));
    w.on_timer(t2);
    assert_eq!(w.take_outbox(), vec![Effect::SampleMemory]);
    w.on_memory(500, 400, t2);
    assert!(!w.core.is_paused());
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(2)]);
    // A spill that is over can be followed by another.
    w.on_memory(650, 100, t2);
    assert_eq!(w.take_outbox(), vec![Effect::Spill { keep: 50 }]);
    // Nothing running, nothing spilling: at rest again, the heartbeat alone reads memory.
    w.on_executed(TaskId(2), Ok(1));
    w.on_spilled();
    w.take_outbox();
    assert!(w.next_deadline().expect("a heartbeat") > t2 + MemoryPolicy::CHECK_EVERY);
}

/// A spill the core asked for in the batch that lost the scheduler is dropped with the
/// session's outbox, unstarted: the next high reading asks again rather than waiting for a
/// `Spilled` that will never come.
#[test]
fn a_spill_dropped_with_a_lost_session_is_asked_for_again() {
    let t0 = Instant::now();
    let settings = WorkerSettings {
        memory: MemoryPolicy::new(1000),
        ..WorkerSettings::new(1)
    };
    let mut w = Sim::with(settings, t0);
    w.on_memory(700, 400, t0);
    w.on_scheduler_lost(t0);
    w.on_registered(HEARTBEAT, t0);
    w.take_outbox();
    w.on_memory(700, 400, t0);
    assert_eq!(w.take_outbox(), vec![Effect::Spill { keep: 200 }]);
}

#[test]
fn a_lost_scheduler_drops_the_session_and_a_stop_meanwhile_leaves_at_once() {
    let t0 = Instant::now();
    let mut w = Sim::with(WorkerSettings::new(1), t0);
    w.on_compute(cmd(1));
    w.on_compute(ct(2, vec![(7, "peer:7")]));
    w.take_outbox();
    w.on_scheduler_lost(t0);
    assert_eq!((w.assigned(), w.held()), (0, 0));
    assert_eq!(w.next_deadline(), None, "no heartbeat without a scheduler");
    w.on_stop_requested(t0);
    assert_eq!(w.take_outbox(), vec![Effect::Leave(WorkerExit::Stopped)]);
}

#[test]
fn a_lifetime_that_ends_while_reconnecting_retires_on_the_next_registration_and_stays_told() {
    let t0 = Instant::now();
    let settings = WorkerSettings {
        lifetime: Some(HEARTBEAT / 2),
        ..WorkerSettings::new(1)
    };
    let mut w = Sim::with(settings, t0);
    w.on_scheduler_lost(t0);
    assert_eq!(w.next_deadline(), None, "the lifetime waits for a scheduler");
    let t1 = t0 + HEARTBEAT;
    w.on_registered(HEARTBEAT, t1);
    assert_eq!(w.take_outbox(), vec![retire("its lifetime is up")]);
    // A retiring worker that registers with a new scheduler tells that one too.
    w.on_scheduler_lost(t1);
    w.on_registered(HEARTBEAT, t1);
    assert_eq!(w.take_outbox(), vec![retire("its lifetime is up")]);
    assert_eq!(w.next_deadline(), Some(t1 + HEARTBEAT));
}

#[test]
fn a_replicated_result_is_kept_and_reported_whatever_local_tasks_do() {
    let mut w = Sim::new(1);
    w.on_replicate(TaskId(3), "old:1".into());
    assert_eq!(
        w.take_outbox(),
        vec![Effect::Fetch {
            task: TaskId(3),
            from: "old:1".into(),
            only_holder: true,
        }]
    );
    // A local task waiting for the same result shares the fetch.
    w.on_compute(ct(4, vec![(3, "old:1")]));
    assert_eq!(w.take_outbox(), vec![]);
    w.on_fetched(TaskId(3), Ok(9));
    let e = w.take_outbox();
    assert_eq!(
        e[0],
        Effect::Send(FromWorker::Replicated {
            task: TaskId(3),
            nbytes: Some(9),
            seen: 1,
        })
    );
    assert_eq!(executes(&e), vec![TaskId(4)]);
    w.on_cancel(vec![TaskId(4)]);
    assert_eq!(w.held(), 1, "the replica stays: the scheduler counts on it");
}

#[test]
fn scattered_data_is_reported_and_released_results_are_dropped() {
    let mut w = Sim::new(1);
    w.on_put_data(TaskId(1), 5);
    assert_eq!(
        w.take_outbox(),
        vec![Effect::Send(FromWorker::DataStored {
            task: TaskId(1),
            nbytes: 5
        })]
    );
    w.on_release_data(vec![TaskId(1), TaskId(2)]);
    assert_eq!(w.take_outbox(), vec![Effect::Drop(vec![TaskId(1)])]);
    assert_eq!(w.held(), 0);
}

/// A failed transfer moves on to the next listed holder, marked as one of several (the
/// shell reports its failures at once); only once every holder failed is the task given
/// back. A sole holder's fetch is marked so the shell gives it a little patience.
#[test]
fn a_failed_transfer_tries_the_next_holder_before_giving_the_task_back() {
    let mut w = Sim::new(1);
    let mut task = ct(6, vec![(1, "a:1")]);
    task.deps[0].holders = vec!["a:1".into(), "b:1".into()];
    w.on_compute(task);
    let first = w.take_outbox();
    let Some(Effect::Fetch {
        from,
        only_holder: false,
        ..
    }) = first.first()
    else {
        panic!("a fetch from one of two holders: {first:?}");
    };
    let other = if from == "a:1" { "b:1" } else { "a:1" };
    w.on_fetched(TaskId(1), Err(FetchError::Transfer("no answer".into())));
    assert_eq!(
        w.take_outbox(),
        vec![Effect::Fetch {
            task: TaskId(1),
            from: other.into(),
            only_holder: false,
        }]
    );
    w.on_fetched(TaskId(1), Err(FetchError::Transfer("no answer".into())));
    let e = w.take_outbox();
    assert!(
        e.iter().any(|e| matches!(
            e,
            Effect::Send(FromWorker::FetchFailed { task: TaskId(6), dep: TaskId(1), holder, .. }) if holder == other
        )),
        "{e:?}"
    );
    assert_eq!(w.assigned(), 0);
    w.on_compute(ct(7, vec![(2, "c:1")]));
    assert_eq!(
        w.take_outbox(),
        vec![Effect::Fetch {
            task: TaskId(2),
            from: "c:1".into(),
            only_holder: true,
        }]
    );
}

/// Regression (found by the cluster simulation): a function taken back by a steal freed
/// its slot, but the command waiting for that slot started only at the next event, and a
/// worker with nothing else going on never had one: its queue stalled for good.
#[test]
fn a_steal_that_frees_a_slot_starts_the_task_waiting_for_it() {
    let mut w = Sim::new(1);
    w.on_compute(ct(1, vec![]));
    assert_eq!(executes(&w.take_outbox()), vec![TaskId(1)]);
    w.on_compute(cmd(2));
    assert_eq!(executes(&w.take_outbox()), Vec::<TaskId>::new(), "the slot is taken");
    w.on_steal(vec![TaskId(1)], |_| true);
    let e = w.take_outbox();
    assert!(e.contains(&Effect::Send(FromWorker::Stolen {
        tasks: vec![(TaskId(1), at(1))]
    })));
    assert_eq!(executes(&e), vec![TaskId(2)]);
}

/// Results that come faster than memory checks: once those held since the last reading reach
/// 2% of the limit, memory is read at once, not at the next check.
#[test]
fn results_of_two_percent_of_the_limit_ask_for_a_memory_reading_at_once() {
    let t0 = Instant::now();
    let settings = WorkerSettings {
        memory: MemoryPolicy::new(1000),
        ..WorkerSettings::new(1)
    };
    let mut w = Sim::with(settings, t0);
    for i in 1..=3 {
        w.on_compute(cmd(i));
    }
    w.take_outbox();
    // 15 bytes: under 2% (20) of the limit, no reading yet.
    w.on_executed(TaskId(1), Ok(15));
    assert!(!w.take_outbox().contains(&Effect::SampleMemory));
    // 15 more: 30 since the last reading, one now.
    w.on_executed(TaskId(2), Ok(15));
    assert!(w.take_outbox().contains(&Effect::SampleMemory));
    // Counted from that reading again.
    w.on_executed(TaskId(3), Ok(15));
    assert!(!w.take_outbox().contains(&Effect::SampleMemory));
}
