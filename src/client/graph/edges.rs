//! A graph file's dependencies as task indices, and the search for a cycle among them.
//!
//! Graphs may hold a million tasks: the edges sit in one flat array and the search is an
//! iterative depth-first search, linear in tasks plus dependencies, never recursion. It knows
//! nothing of keys or files; the caller names what it finds.

/// Every task's dependencies as task indices, in one flat array (a million small `Vec`s would
/// cost more than the tasks).
pub(super) struct Edges {
    /// Where each task's list begins in `targets`, plus one past the last list:
    /// `targets[starts[i]..starts[i + 1]]` are the dependencies of task `i`.
    starts: Vec<usize>,
    /// All lists, one after the other.
    targets: Vec<usize>,
}

impl Edges {
    pub(super) fn with_capacity(tasks: usize) -> Edges {
        let mut starts = Vec::with_capacity(tasks + 1);
        starts.push(0);
        Edges {
            starts,
            targets: Vec::with_capacity(tasks),
        }
    }

    /// Adds a dependency to the task being built.
    pub(super) fn push(&mut self, target: usize) {
        self.targets.push(target);
    }

    /// Closes the task being built; the next `push` starts the next task.
    pub(super) fn finish_task(&mut self) {
        self.starts.push(self.targets.len());
    }

    pub(super) fn task_count(&self) -> usize {
        self.starts.len() - 1
    }

    /// Every dependency of every task.
    pub(super) fn all(&self) -> &[usize] {
        &self.targets
    }

    /// The dependencies of `task`, as indices.
    pub(super) fn of(&self, task: usize) -> &[usize] {
        &self.targets[self.starts[task]..self.starts[task + 1]]
    }
}

/// Finds a dependency cycle, if any: the tasks on it in dependency order (each depends on the
/// next, the last on the first), starting with the one defined first in the file. Iterative
/// depth-first search, linear in tasks plus dependencies.
pub(super) fn find_cycle(edges: &Edges) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Finished,
    }
    let mut marks = vec![Mark::Unvisited; edges.task_count()];
    // The current path from a root: each task with how many of its dependencies are explored.
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..edges.task_count() {
        if marks[root] != Mark::Unvisited {
            continue;
        }
        marks[root] = Mark::OnPath;
        path.push((root, 0));
        while let Some((task, explored)) = path.last_mut() {
            let Some(&dep) = edges.of(*task).get(*explored) else {
                marks[*task] = Mark::Finished;
                path.pop();
                continue;
            };
            *explored += 1;
            match marks[dep] {
                Mark::Unvisited => {
                    marks[dep] = Mark::OnPath;
                    path.push((dep, 0));
                }
                Mark::OnPath => {
                    let from = path
                        .iter()
                        .rposition(|&(t, _)| t == dep)
                        .expect("a task marked OnPath is on the path");
                    let mut cycle: Vec<usize> = path[from..].iter().map(|&(t, _)| t).collect();
                    let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                    cycle.rotate_left(first);
                    return Some(cycle);
                }
                Mark::Finished => {}
            }
        }
    }
    None
}

/// `a -> b -> c -> a`, with the middle left out when a cycle is too long for a readable line.
pub(super) fn abbreviate_path(names: &[&str]) -> String {
    const SHOWN_AT_EACH_END: usize = 5;
    if names.len() <= 2 * SHOWN_AT_EACH_END + 1 {
        return names.join(" -> ");
    }
    let left_out = names.len() - 2 * SHOWN_AT_EACH_END;
    format!(
        "{} -> ... ({left_out} more) ... -> {}",
        names[..SHOWN_AT_EACH_END].join(" -> "),
        names[names.len() - SHOWN_AT_EACH_END..].join(" -> ")
    )
}
