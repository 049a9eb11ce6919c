//! Running a graph file on a cluster: submit, show progress, deliver outputs, report failures.
//! What `distd run` and `distd local --run` do once they have a client.

use super::api::{AsyncClient, ClientError, KeyStatus};
use super::graph::{Graph, OutputTarget};
use crate::protocol::TaskError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

/// What happened to a graph run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Each task that failed on its own (not because an input failed), with its error, and
    /// how many tasks downstream of it failed with it.
    pub failures: Vec<Failure>,
}

#[derive(Debug)]
pub struct Failure {
    pub key: String,
    pub error: TaskError,
    pub downstream: usize,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Why a run could not be carried out at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot write output of {key:?} to {path}: {source}")]
    Output {
        key: String,
        path: String,
        source: std::io::Error,
    },
}

/// Submits `graph`, writes each output as soon as it is computed, and reports failures.
///
/// Each wanted key is released once it is delivered (or has nothing to deliver): a result
/// the client already has is not kept by the cluster, so losing it later costs nothing,
/// unless a task still to run needs it. That is what makes a run converge while workers
/// keep dying: only the lineage still needed is ever computed again.
pub async fn run_graph(client: &AsyncClient, graph: Graph, progress: bool) -> Result<RunReport, RunError> {
    // Every sink is wanted, so that no task is skipped for lack of a consumer; outputs are
    // the subset whose results are delivered. The run keeps this one copy of the wanted keys
    // (the submission takes another, the client's status a third); every other set and map
    // of keys below borrows from it.
    let wanted: Vec<String> = {
        let used: HashSet<&str> = graph
            .tasks
            .iter()
            .flat_map(|t| t.deps.iter().map(String::as_str))
            .collect();
        let mut wanted: Vec<String> = graph
            .tasks
            .iter()
            .filter(|t| !used.contains(t.key.as_str()))
            .map(|t| t.key.clone())
            .collect();
        // Outputs that are not sinks; usually none, so they get a set of their own.
        let mut added: HashSet<&str> = HashSet::new();
        for o in &graph.outputs {
            if used.contains(o.key.as_str()) && added.insert(&o.key) {
                wanted.push(o.key.clone());
            }
        }
        wanted
    };
    let in_wanted: HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let total = graph.tasks.len();
    let settlements = client.settlements();
    client.submit_wanting(graph.tasks, wanted.clone()).await?;

    let mut outputs = Outputs::new(&graph.outputs);
    // What each wanted key came to, once it settled for good.
    let mut settled: BTreeMap<&str, Option<TaskError>> = BTreeMap::new();
    // The keys the client heard settle since the last look; at first every wanted key is
    // looked at (some may have settled before the loop), so each settlement costs the loop
    // one look, not a scan.
    let mut look: Vec<String> = Vec::new();
    let mut first_look = true;
    let mut last_drawn = std::time::Instant::now();
    while settled.len() < wanted.len() {
        let mut finished = Vec::new();
        let mut erred = Vec::new();
        // A key may be listed twice (settled before the loop, and heard of).
        look.sort_unstable();
        look.dedup();
        let looked: Vec<&str> = if std::mem::take(&mut first_look) {
            wanted.iter().map(String::as_str).collect()
        } else {
            look.iter().filter_map(|k| in_wanted.get(k.as_str()).copied()).collect()
        };
        look.clear();
        for k in looked {
            if settled.contains_key(k) {
                continue;
            }
            match client.status(k) {
                Some(KeyStatus::Finished { .. }) => finished.push(k),
                Some(KeyStatus::Erred(e)) => erred.push((k, e)),
                // Lost and computed again: it settles again.
                _ => {}
            }
        }
        let deliver: Vec<String> = finished
            .iter()
            .filter(|k| outputs.wants(k))
            .map(|k| k.to_string())
            .collect();
        if !deliver.is_empty() {
            match client.gather(&deliver).await {
                Ok(results) => {
                    for (k, bytes) in deliver.iter().zip(results) {
                        outputs.deliver(k, bytes)?;
                    }
                }
                // One of them erred after all (lost, then failed when computed again): look
                // again at these.
                Err(ClientError::Task { .. }) => {
                    look.extend(finished.iter().map(|k| k.to_string()));
                    look.extend(erred.into_iter().map(|(k, _)| k.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        for (k, e) in erred {
            outputs.skip(k)?;
            settled.insert(k, Some(e));
        }
        if !finished.is_empty() {
            let finished: Vec<String> = finished.iter().map(|k| k.to_string()).collect();
            client.release(&finished)?;
        }
        for k in finished {
            settled.insert(k, None);
        }
        let done = settled.len() == wanted.len();
        if progress && (done || last_drawn.elapsed() >= Duration::from_millis(100)) {
            draw_progress(client, &settled, wanted.len(), total).await;
            last_drawn = std::time::Instant::now();
        }
        if done {
            break;
        }
        let next = if progress {
            let tick = async {
                async_io::Timer::after(Duration::from_millis(100)).await;
                Err(async_channel::RecvError)
            };
            futures_lite::future::or(settlements.recv(), tick).await
        } else {
            settlements.recv().await
        };
        match next {
            Ok(k) => {
                look.push(k);
                while let Ok(k) = settlements.try_recv() {
                    look.push(k);
                }
            }
            Err(_) if settlements.is_closed() => {
                // The scheduler is gone: waiting says so.
                let open: Vec<String> = wanted
                    .iter()
                    .filter(|k| !settled.contains_key(k.as_str()))
                    .cloned()
                    .collect();
                client.wait(&open).await?;
                look.extend(open);
            }
            Err(_) => {}
        }
    }
    if progress {
        eprintln!();
    }
    let mut report = RunReport::default();
    let mut roots: BTreeMap<String, (TaskError, usize)> = BTreeMap::new();
    for (k, e) in settled {
        match e {
            Some(TaskError::Dependency { key, error }) => {
                let entry = roots.entry(key).or_insert(((*error).clone(), 0));
                entry.1 += 1;
            }
            Some(e) => {
                roots.entry(k.to_owned()).or_insert((e, 0));
            }
            None => {}
        }
    }
    report.failures = roots
        .into_iter()
        .map(|(key, (error, downstream))| Failure { key, error, downstream })
        .collect();
    drop(in_wanted);
    let erred: Vec<String> = wanted.into_iter().filter(|k| client.status(k).is_some()).collect();
    client.release(&erred)?;
    Ok(report)
}

/// The outputs of a run as they are delivered: files at once, stdout in the graph's order
/// (a result that arrives early waits for those before it).
struct Outputs<'g> {
    targets: &'g [super::graph::Output],
    /// Index of the next stdout output to print.
    next_stdout: usize,
    /// Results for stdout that arrived before their turn, and outputs that will never
    /// come (their task erred: `None`).
    waiting: BTreeMap<usize, Option<Vec<u8>>>,
    /// Each output key's first place in `targets`; the others follow through `next_place`.
    /// One number per output rather than a list per key: a million outputs are common.
    first_place: HashMap<&'g str, usize>,
    /// For each place in `targets`, the next place of the same key, if any.
    next_place: Vec<Option<usize>>,
}

impl<'g> Outputs<'g> {
    fn new(targets: &'g [super::graph::Output]) -> Outputs<'g> {
        let mut first_place: HashMap<&str, usize> = HashMap::with_capacity(targets.len());
        let mut next_place = vec![None; targets.len()];
        // Walked backwards, so that each key's chain runs forwards, in the graph's order.
        for (i, o) in targets.iter().enumerate().rev() {
            next_place[i] = first_place.insert(o.key.as_str(), i);
        }
        Outputs {
            targets,
            next_stdout: 0,
            waiting: BTreeMap::new(),
            first_place,
            next_place,
        }
    }

    fn wants(&self, key: &str) -> bool {
        self.first_place.contains_key(key)
    }

    /// The places of `key` among the outputs, in order.
    fn places(&self, key: &str) -> Vec<usize> {
        std::iter::successors(self.first_place.get(key).copied(), |&i| self.next_place[i]).collect()
    }

    /// `key`'s result: written to each of its files, and queued for stdout.
    fn deliver(&mut self, key: &str, bytes: Vec<u8>) -> Result<(), RunError> {
        for i in self.places(key) {
            let o = &self.targets[i];
            match &o.target {
                OutputTarget::Stdout => {
                    self.waiting.insert(i, Some(bytes.clone()));
                }
                OutputTarget::File(path) => std::fs::write(path, &bytes).map_err(|source| RunError::Output {
                    key: o.key.clone(),
                    path: path.display().to_string(),
                    source,
                })?,
            }
        }
        self.print_ready()
    }

    /// `key` erred: its stdout turns are passed over.
    fn skip(&mut self, key: &str) -> Result<(), RunError> {
        for i in self.places(key) {
            self.waiting.insert(i, None);
        }
        self.print_ready()
    }

    /// Prints the stdout results whose turn has come.
    fn print_ready(&mut self) -> Result<(), RunError> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        while self.next_stdout < self.targets.len() {
            let o = &self.targets[self.next_stdout];
            if !matches!(o.target, OutputTarget::Stdout) {
                self.next_stdout += 1;
                continue;
            }
            let Some(entry) = self.waiting.remove(&self.next_stdout) else {
                break;
            };
            self.next_stdout += 1;
            let Some(bytes) = entry else { continue };
            // A closed stdout loses the results: that is an error, not a success.
            let newline = !bytes.ends_with(b"\n") && !bytes.is_empty();
            out.write_all(&bytes)
                .and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) })
                .and_then(|()| out.flush())
                .map_err(|source| RunError::Output {
                    key: o.key.clone(),
                    path: "stdout".into(),
                    source,
                })?;
        }
        Ok(())
    }
}

async fn draw_progress(client: &AsyncClient, settled: &BTreeMap<&str, Option<TaskError>>, wanted: usize, total: usize) {
    let failed = settled.values().filter(|e| e.is_some()).count();
    let done = settled.len() - failed;
    let running = match client.info().await {
        Ok(info) => info.workers.iter().map(|w| w.processing).sum::<u64>(),
        Err(_) => 0,
    };
    let width = 30;
    let filled = ((done + failed) * width).checked_div(wanted).unwrap_or(width);
    eprint!(
        "\r[{}{}] {done}/{wanted} final tasks done, {failed} failed; {} assigned ({} in graph)",
        "#".repeat(filled),
        " ".repeat(width - filled),
        crate::units::plural(running, "task"),
        crate::units::plural(total as u64, "task"),
    );
    let _ = std::io::stderr().flush();
}
