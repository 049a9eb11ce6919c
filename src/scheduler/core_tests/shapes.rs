//! Wide shapes cost the core in proportion to what they touch: the work per event is
//! counted (entries of task lists the core's loops visit, `Core::work`), not timed.
//!
//! These drive a `Core` directly rather than through the `Cluster` harness: its sanity check
//! after every event looks at every task, which for 10,000 events over 10,000 tasks is the
//! quadratic cost these tests are about. The check runs at a few points instead.

use super::*;

/// Tasks in each wide shape: large enough that a scan of every input or dependent on
/// every event (the bug these pin) costs thousands of times the bound.
const N: usize = 10_000;

/// Entries visited per task of the shape, at most: a constant, whatever `N`.
const VISITS_PER_TASK: u64 = 20;

/// A core with two workers of four threads and one client, driven by pretend workers that
/// finish every task they are given.
struct Shape {
    core: Core,
    now: Instant,
    client: ClientId,
    /// Messages sent to each worker so far: what it has read when it answers.
    seen: HashMap<WorkerId, u64>,
    /// Computes sent and not answered yet.
    computes: Vec<(WorkerId, ComputeTask)>,
    /// Keys the client was told are finished.
    finished: Vec<String>,
}

impl Shape {
    fn new() -> Shape {
        let now = Instant::now();
        let config = CoreConfig {
            keep_idle_results: false,
            ..CoreConfig::default()
        };
        let mut shape = Shape {
            core: Core::new(config, now),
            now,
            client: ClientId(1),
            seen: HashMap::new(),
            computes: Vec::new(),
            finished: Vec::new(),
        };
        for (id, name) in [(1, "w1"), (2, "w2")] {
            let info = WorkerInfo {
                name: name.to_string(),
                peer_address: address(name),
                nthreads: 4,
                resources: Vec::new(),
                memory_limit: 0,
                pid: 1000 + id as u32,
                host: "host".to_string(),
            };
            shape.core.on_worker_joined(WorkerId(id), info, now);
        }
        shape.core.on_client_joined(shape.client, now);
        shape.collect();
        shape
    }

    /// Ends the batch: keeps the computes and what the client is told.
    fn collect(&mut self) {
        for out in self.core.take_outbox() {
            match out {
                Outgoing::Worker(w, msg) => {
                    *self.seen.entry(w).or_default() += 1;
                    if let ToWorker::Compute(c) = msg {
                        self.computes.push((w, *c));
                    }
                }
                Outgoing::Client(_, ToClient::KeyFinished { key, .. }) => self.finished.push(key),
                Outgoing::Client(_, ToClient::KeyErred { key, error }) => panic!("{key} erred: {error}"),
                _ => {}
            }
        }
    }

    fn submit(&mut self, tasks: Vec<TaskDesc>, wanted: Vec<String>) {
        let msg = FromClient::Submit { tasks, wanted };
        self.core.on_client_message(self.client, msg, self.now);
        self.collect();
    }

    /// The workers finish what they were given, in the order given, one event each and a
    /// batch every `batch` events, until nothing is left to compute.
    fn run(&mut self, batch: usize) {
        let mut events = 0;
        while !self.computes.is_empty() {
            for (w, c) in std::mem::take(&mut self.computes) {
                let own = address(if w == WorkerId(1) { "w1" } else { "w2" });
                let fetched = c
                    .deps
                    .iter()
                    .filter(|d| !d.holders.is_empty() && !d.holders.contains(&own))
                    .map(|d| d.id)
                    .collect();
                let seen = self.seen.get(&w).copied().unwrap_or(0);
                let msg = FromWorker::Finished {
                    task: c.id,
                    attempt: c.attempt,
                    nbytes: 8,
                    fetched,
                    seen,
                };
                self.core.on_worker_message(w, msg, self.now);
                events += 1;
                if events % batch == 0 {
                    self.collect();
                }
            }
            self.collect();
        }
    }

    fn release(&mut self, keys: Vec<String>) {
        self.core
            .on_client_message(self.client, FromClient::Release { keys }, self.now);
        self.collect();
    }

    /// Work since `from`, per task of a shape of `n` tasks, checked against the bound.
    fn assert_linear(&self, what: &str, from: u64, n: usize) {
        let work = self.core.work() - from;
        assert!(
            work < VISITS_PER_TASK * n as u64,
            "{what}: {work} entries visited for {n} tasks, over {VISITS_PER_TASK} per task"
        );
    }
}

fn input_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("in-{i}")).collect()
}

/// One task over `N` inputs: each input that finishes costs the core a constant, not a look
/// at all of the task's inputs (one task over 100,000 inputs took 28 s), and so do the
/// task itself and forgetting everything.
#[test]
fn a_task_over_many_inputs_costs_each_input_a_constant() {
    let mut shape = Shape::new();
    let inputs = input_keys(N);
    let mut tasks: Vec<TaskDesc> = inputs.iter().map(|k| task(k)).collect();
    tasks.push(task("sink").with_deps(inputs.iter().map(String::as_str)));
    let start = shape.core.work();
    shape.submit(tasks, vec!["sink".into()]);
    shape.core.sanity_check();
    // A batch per event at first (the shell's batches are small when the worker keeps
    // up), then larger ones.
    shape.run(1);
    shape.core.sanity_check();
    assert_eq!(shape.finished, ["sink"]);
    shape.release(vec!["sink".into()]);
    shape.core.sanity_check();
    assert_eq!(shape.core.task_count(), 0, "everything is forgotten");
    shape.assert_linear("fan-in", start, N + 1);
}

/// `N` tasks over one input: the input is placed once and its dependents are queued behind
/// it without looking at all of them again on every task that finishes; each dependent
/// that finishes asks whether the input is still needed in constant time; releasing them
/// one by one forgets each in constant time.
#[test]
fn many_tasks_over_one_input_cost_each_task_a_constant() {
    let mut shape = Shape::new();
    let sinks: Vec<String> = (0..N).map(|i| format!("out-{i}")).collect();
    let mut tasks = vec![task("source")];
    tasks.extend(sinks.iter().map(|k| task_on(k, &["source"])));
    let start = shape.core.work();
    shape.submit(tasks, sinks.clone());
    shape.core.sanity_check();
    shape.run(1);
    shape.core.sanity_check();
    assert_eq!(shape.finished.len(), N);
    assert_eq!(
        shape.core.state_of("source"),
        Some(&TaskState::Released),
        "dropped once unused"
    );
    for chunk in sinks.chunks(1000) {
        shape.release(chunk.to_vec());
    }
    shape.core.sanity_check();
    assert_eq!(shape.core.task_count(), 0, "everything is forgotten");
    shape.assert_linear("fan-out", start, N + 1);
}

/// `N` tasks over one input, the input still computing while other tasks finish on its
/// worker: each of those resumes queueing the input's dependents where the last one
/// stopped, rather than looking at every dependent again.
#[test]
fn tasks_finishing_beside_a_wide_input_do_not_look_at_its_dependents_again() {
    let mut shape = Shape::new();
    let sinks: Vec<String> = (0..N).map(|i| format!("out-{i}")).collect();
    let others = input_keys(2000);
    let mut tasks = vec![task("source")];
    tasks.extend(sinks.iter().map(|k| task_on(k, &["source"])));
    tasks.extend(others.iter().map(|k| task(k)));
    let wanted = sinks.iter().chain(&others).cloned().collect();
    let start = shape.core.work();
    shape.submit(tasks, wanted);
    // Everything but the source (and what is queued behind it) finishes first.
    let source = shape.core.id_of("source").expect("known");
    let mut held_back = Vec::new();
    while !shape.computes.is_empty() {
        let computes = std::mem::take(&mut shape.computes);
        let (behind, rest): (Vec<_>, Vec<_>) = computes
            .into_iter()
            .partition(|(_, c)| c.id == source || c.deps.iter().any(|d| d.id == source));
        held_back.extend(behind);
        shape.computes = rest;
        shape.run(1);
    }
    shape.computes = held_back;
    shape.run(1);
    shape.core.sanity_check();
    assert_eq!(shape.finished.len(), N + others.len());
    shape.assert_linear("fan-out beside other tasks", start, N + others.len() + 1);
}

/// A client cancelling many keys that share what is downstream of them: that is looked at
/// once for the whole message, not once per key.
#[test]
fn cancelling_many_inputs_of_one_task_costs_each_a_constant() {
    let mut shape = Shape::new();
    let inputs = input_keys(N);
    let mut tasks: Vec<TaskDesc> = inputs.iter().map(|k| task(k)).collect();
    tasks.push(task("sink").with_deps(inputs.iter().map(String::as_str)));
    // Downstream of the sink, a wide fan-out: what every cancelled input has downstream.
    let outs: Vec<String> = (0..N).map(|i| format!("out-{i}")).collect();
    tasks.extend(outs.iter().map(|k| task_on(k, &["sink"])));
    let start = shape.core.work();
    shape.submit(tasks, outs.clone());
    shape.computes.clear();
    shape
        .core
        .on_client_message(shape.client, FromClient::Cancel { keys: inputs }, shape.now);
    for out in shape.core.take_outbox() {
        if let Outgoing::Client(_, ToClient::KeyErred { error, .. }) = out {
            assert!(matches!(error, TaskError::Dependency { .. } | TaskError::Cancelled));
        }
    }
    shape.core.sanity_check();
    shape.release(outs);
    assert_eq!(shape.core.task_count(), 0, "everything is forgotten");
    shape.assert_linear("cancel", start, 2 * N + 1);
}
