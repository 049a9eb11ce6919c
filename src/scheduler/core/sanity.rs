//! The invariants that tie the core's tables together, checked after every step of the
//! state-machine tests. Test-only: a release build never pays for it.

use super::task::{Task, TaskState, WIDE_DEPENDENTS};
use super::workers::Load;
use super::Core;
use crate::idmap::IdMap;
use crate::protocol::{ClientId, TaskId, WorkerId};
use std::collections::BTreeSet;

impl Core {
    /// Checks every invariant that ties the tables together. Tests call it after each batch
    /// of events, once the outbox was taken (so the placement pass has run).
    pub(crate) fn sanity_check(&self) {
        self.check_workers();
        let mut wants: IdMap<ClientId, usize> = IdMap::default();
        for (id, task) in self.tasks.iter() {
            self.check_task(id, task);
            for c in &task.wanted_by {
                assert!(self.clients[c].wanted.contains(&id), "client {c} wants {}", task.key);
                *wants.entry(*c).or_insert(0) += 1;
            }
        }
        for (c, cs) in &self.clients {
            assert_eq!(cs.wants, wants.get(c).copied().unwrap_or(0), "tasks client {c} wants");
        }
        self.check_placement_done();
        self.check_unrunnable();
        self.check_steals_and_retirement();
        let queued: u64 = self.idle.queue.iter().map(|(_, n)| n).sum();
        assert_eq!(queued, self.idle.bytes, "bytes of the idle results");
        for (t, under_way) in &self.copying {
            for w in under_way {
                assert!(self.workers.contains_key(w), "a copy of {t} goes to {w}, which is gone");
            }
        }
        for s in &self.scatters {
            assert!(
                self.clients.contains_key(&s.client),
                "a scatter of a gone client is pending"
            );
            for t in &s.remaining {
                let task = &self.tasks[t];
                assert!(
                    task.scattered(),
                    "scatter waits for {}, which is not scattered",
                    task.key
                );
                assert!(
                    matches!(task.state, TaskState::Processing { .. }),
                    "scatter waits for {}, which is {}",
                    task.key,
                    task.state.name()
                );
            }
        }
        self.tasks.sanity_check();
    }

    /// The placement index, each worker's processing set, running count, held bytes and free
    /// resources agree with the tasks.
    fn check_workers(&self) {
        let indexed: BTreeSet<(Load, WorkerId)> = self
            .workers
            .iter()
            .filter(|(_, ws)| !ws.leaving)
            .map(|(id, ws)| (Load(ws.load()), *id))
            .collect();
        assert_eq!(indexed, self.by_load, "the placement index is stale");
        for (id, ws) in &self.workers {
            let mut running = 0;
            let mut free = ws.info.resources.clone();
            for t in &ws.processing {
                let task = &self.tasks[t];
                match &task.state {
                    TaskState::Processing { worker, started, .. } => {
                        assert_eq!(worker, id, "task {t} processing on the wrong worker");
                        running += *started as usize;
                    }
                    s => panic!("task {t} in {id}'s processing set is {s:?}"),
                }
                for (name, amount) in &task.options().resources {
                    if let Some((_, f)) = free.iter_mut().find(|(n, _)| n == name) {
                        *f -= amount;
                    }
                }
            }
            assert_eq!(running, ws.running, "running count of {id}");
            for ((name, expected), (_, actual)) in free.iter().zip(&ws.resources_free) {
                assert!(
                    (expected - actual).abs() < 1e-6,
                    "free {name} of {id}: {actual}, tasks say {expected}"
                );
            }
            let mut bytes = 0;
            for t in &ws.has_data {
                assert!(
                    self.tasks[t].who_has.contains(id),
                    "{id} holds {t} but who_has disagrees"
                );
                bytes += self.tasks[t].nbytes;
            }
            assert_eq!(bytes, ws.stored_bytes, "stored bytes of {id}");
        }
    }

    /// One task's lists, holders and state agree with the tables around it.
    fn check_task(&self, id: TaskId, task: &Task) {
        let id = &id;
        for list in [&task.deps, &task.dependents] {
            assert!(list.is_canonical(), "id lists of {}", task.key);
        }
        assert!(
            task.who_has.is_canonical() && task.wanted_by.is_canonical(),
            "id lists of {}",
            task.key
        );
        for w in &task.who_has {
            assert!(
                self.workers[w].has_data.contains(id),
                "who_has of {} names {w}",
                task.key
            );
        }
        if task.state != TaskState::Memory {
            assert!(
                task.who_has.is_empty(),
                "{} holds data in state {:?}",
                task.key,
                task.state
            );
        }
        match &task.state {
            TaskState::Memory => {
                assert!(!task.who_has.is_empty(), "{} in memory nowhere", task.key)
            }
            TaskState::Waiting => {
                let missing = task
                    .deps
                    .iter()
                    .filter(|d| self.tasks[d].state != TaskState::Memory)
                    .count();
                assert_eq!(missing, task.waiting_on as usize, "waiting count of {}", task.key);
                assert!(missing > 0, "{} waits on nothing", task.key);
            }
            TaskState::Processing { worker, .. } if task.waiting_on > 0 => {
                // Queued behind inputs that are computing on the same worker.
                let mut missing = 0;
                for d in &task.deps {
                    match self.tasks[d].state {
                        TaskState::Memory => {}
                        TaskState::Processing { worker: w, .. } => {
                            assert_eq!(w, *worker, "{} is queued behind an input elsewhere", task.key);
                            missing += 1;
                        }
                        ref s => panic!("{} is queued behind an input that is {}", task.key, s.name()),
                    }
                }
                assert_eq!(missing, task.waiting_on, "queued count of {}", task.key);
                assert!(self.workers[worker].processing.contains(id));
            }
            TaskState::Ready | TaskState::Processing { .. } => {
                for d in &task.deps {
                    assert_eq!(
                        self.tasks[d].state,
                        TaskState::Memory,
                        "{} is {} but its input {} is not in memory",
                        task.key,
                        task.state.name(),
                        self.tasks[d].key
                    );
                }
                if let TaskState::Processing { worker, .. } = task.state {
                    assert!(self.workers[&worker].processing.contains(id));
                }
            }
            _ => {}
        }
        if task.dependents.len() > WIDE_DEPENDENTS {
            let active = task
                .dependents
                .iter()
                .filter(|d| self.tasks[d].state.is_active())
                .count();
            assert_eq!(
                active,
                task.extras().active_dependents as usize,
                "dependents of {} being computed",
                task.key
            );
        }
        for d in &task.deps {
            assert!(
                self.tasks[d].dependents.contains(id),
                "dependents of {}",
                self.tasks[d].key
            );
        }
    }

    /// The batch's placement pass has run: no pass is still due, every ready task is in the
    /// ready heap, and none of them fits a worker that has room (else the pass left it).
    fn check_placement_done(&self) {
        assert!(
            !self.placement_due.place && !self.placement_due.balance,
            "a placement pass is still due after the outbox was taken"
        );
        let in_heap: BTreeSet<TaskId> = self.ready.iter().map(|e| e.2).collect();
        let q = self.config.queue_per_thread;
        for (id, task) in self.tasks.iter() {
            if task.state != TaskState::Ready {
                continue;
            }
            assert!(in_heap.contains(&id), "ready {} is not in the ready heap", task.key);
            for (w, ws) in &self.workers {
                assert!(
                    ws.leaving || !ws.has_room(q) || !ws.fits(task.options()),
                    "ready {} fits {w}, which has room, yet was not placed",
                    task.key
                );
            }
        }
    }

    /// Steals go between two live workers; retiring workers are leaving, and the copies of
    /// their results go to other live workers.
    fn check_steals_and_retirement(&self) {
        for (t, thief) in &self.stealing {
            match self.tasks.get(t).map(|task| &task.state) {
                Some(TaskState::Processing { worker, .. }) => {
                    assert_ne!(worker, thief, "{t} is stolen by the worker it is on")
                }
                s => panic!("{t} is being stolen while {s:?}"),
            }
            assert!(self.workers.contains_key(thief), "{t} is stolen by a lost worker");
        }
        for (w, copies) in &self.retiring {
            assert!(
                self.workers.get(w).is_some_and(|ws| ws.leaving),
                "retiring {w} is gone or not leaving"
            );
            for (t, target) in copies {
                assert!(self.tasks.contains_key(t), "retiring {w} copies forgotten {t}");
                assert!(
                    target != w && self.workers.contains_key(target),
                    "retiring {w} copies {t} to {target}"
                );
            }
        }
    }
}
