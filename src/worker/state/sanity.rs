//! The worker core's invariants, checked by the tests after every step.

use super::{Assigned, Phase, WorkerCore, FUNCTION_PREFETCH_PER_THREAD};

impl WorkerCore {
    /// Asserts the invariants between the tables: slots, queues, fetches in flight, held
    /// results, the paused state and the lifecycle. The tests call it after every step.
    pub fn sanity_check(&self) {
        let mut refs: crate::idmap::IdMap<crate::protocol::TaskId, u32> = Default::default();
        for t in self.tasks.values() {
            for d in &t.deps {
                *refs.entry(d.id).or_insert(0) += 1;
            }
        }
        assert_eq!(refs, self.input_refs, "input references of the assigned tasks");
        let started: Vec<&Assigned> = self
            .tasks
            .values()
            .filter(|t| matches!(t.phase, Phase::Handed | Phase::Running))
            .collect();
        assert_eq!(self.running, started.len(), "running counts the started tasks");
        let commands = started.iter().filter(|t| !t.function).count();
        assert_eq!(
            self.running_commands, commands,
            "running_commands counts started commands"
        );
        assert!(self.running_commands <= self.nthreads, "at most one command per slot");
        assert!(
            self.running <= self.nthreads * (1 + FUNCTION_PREFETCH_PER_THREAD),
            "at most the slots and the prefetch are started"
        );
        if self.running_commands > 0 {
            assert!(
                self.running <= self.nthreads,
                "no prefetch while a command holds a slot"
            );
        }
        for (id, t) in self.tasks.iter() {
            match t.phase {
                Phase::Fetching { missing } => {
                    assert!(missing > 0, "{id} fetching nothing");
                    // Each missing input is awaited once per listing: from a fetch in flight,
                    // or behind a task computing it here.
                    let awaited: usize = self
                        .fetching
                        .values()
                        .map(|f| f.waiters.iter().filter(|w| *w == id).count())
                        .chain(self.behind.values().map(|b| b.iter().filter(|w| *w == id).count()))
                        .sum();
                    assert_eq!(missing, awaited, "{id} waits for as many inputs as are awaited");
                }
                Phase::Ready => assert!(
                    self.ready.iter().any(|(_, _, r)| r == id),
                    "ready task {id} is in the ready queue"
                ),
                Phase::Handed | Phase::Running => {}
            }
        }
        for (dep, f) in self.fetching.iter() {
            assert!(!self.held.contains_key(dep), "{dep} is fetched and held at once");
            assert!(f.trying < f.holders.len(), "fetch of {dep} asks a listed holder");
            assert!((1..=f.holders.len()).contains(&f.attempts), "fetch of {dep} attempts");
            for w in &f.waiters {
                assert!(
                    matches!(self.tasks.get(w), Some(t) if matches!(t.phase, Phase::Fetching { .. })),
                    "fetch of {dep} waited for by {w}, which is not fetching"
                );
            }
        }
        for r in self.replicating.iter() {
            assert!(self.fetching.contains_key(r), "replication of {r} is a fetch in flight");
        }
        for (dep, h) in self.held.iter() {
            if !h.reported {
                assert!(
                    self.tasks.values().any(|t| t.deps.iter().any(|d| d.id == *dep)),
                    "unreported copy of {dep} is needed by a local task"
                );
            }
        }
        for t in self.unreported_starts.iter() {
            assert!(
                matches!(self.tasks.get(t), Some(a) if a.phase == Phase::Running),
                "unreported start of {t}, which is not running"
            );
        }
        self.life.sanity_check(self.paused);
    }
}
