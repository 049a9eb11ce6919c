//! Running a graph file on a cluster: submit, show progress, deliver outputs, report failures.
//! What `distd run` and `distd local --run` do once they have a client.

use super::api::{AsyncClient, ClientError, KeyStatus};
use super::graph::{Graph, OutputTarget};
use crate::protocol::TaskError;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::Duration;

/// What happened to a graph run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Keys delivered to their outputs.
    pub delivered: Vec<String>,
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

/// Submits `graph`, waits for it, writes its outputs, and reports failures.
pub async fn run_graph(client: &AsyncClient, graph: Graph, progress: bool) -> Result<RunReport, RunError> {
    // Every sink is wanted, so that no task is skipped for lack of a consumer; outputs are
    // the subset whose results are delivered.
    let mut used: HashSet<&str> = HashSet::new();
    for t in &graph.tasks {
        for d in &t.deps {
            used.insert(d);
        }
    }
    let mut wanted: Vec<String> = graph
        .tasks
        .iter()
        .filter(|t| !used.contains(t.key.as_str()))
        .map(|t| t.key.clone())
        .collect();
    for o in &graph.outputs {
        if !wanted.contains(&o.key) {
            wanted.push(o.key.clone());
        }
    }
    let total = graph.tasks.len();
    client.submit_wanting(graph.tasks, wanted.clone()).await?;
    if progress {
        let bar = async {
            loop {
                draw_progress(client, &wanted, total).await;
                async_io::Timer::after(Duration::from_millis(100)).await;
            }
        };
        futures_lite::future::or(client.wait(&wanted), bar).await?;
        draw_progress(client, &wanted, total).await;
        eprintln!();
    } else {
        client.wait(&wanted).await?;
    }

    // Outputs are gathered before failures are counted: a result lost with its worker is
    // computed again meanwhile, and may still succeed or fail.
    let mut report = RunReport::default();
    let results = loop {
        let ready: Vec<_> = graph
            .outputs
            .iter()
            .filter(|o| !matches!(client.status(&o.key), Some(KeyStatus::Erred(_))))
            .collect();
        let keys: Vec<String> = ready.iter().map(|o| o.key.clone()).collect();
        match client.gather(&keys).await {
            Ok(results) => break ready.into_iter().zip(results).collect::<Vec<_>>(),
            // One of them erred after all: gather the others.
            Err(ClientError::Task { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (o, bytes) in results {
        match &o.target {
            OutputTarget::Stdout => {
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
            OutputTarget::File(path) => std::fs::write(path, &bytes).map_err(|source| RunError::Output {
                key: o.key.clone(),
                path: path.display().to_string(),
                source,
            })?,
        }
        report.delivered.push(o.key.clone());
    }
    let _ = out.flush();

    let mut roots: BTreeMap<String, (TaskError, usize)> = BTreeMap::new();
    for k in &wanted {
        if let Some(KeyStatus::Erred(e)) = client.status(k) {
            match e {
                TaskError::Dependency { key, error } => {
                    let entry = roots.entry(key).or_insert(((*error).clone(), 0));
                    entry.1 += 1;
                }
                e => {
                    roots.entry(k.clone()).or_insert((e, 0));
                }
            }
        }
    }
    report.failures = roots
        .into_iter()
        .map(|(key, (error, downstream))| Failure { key, error, downstream })
        .collect();
    client.release(&wanted)?;
    Ok(report)
}

async fn draw_progress(client: &AsyncClient, wanted: &[String], total: usize) {
    let mut done = 0;
    let mut failed = 0;
    for k in wanted {
        match client.status(k) {
            Some(KeyStatus::Finished { .. }) => done += 1,
            Some(KeyStatus::Erred(_)) => failed += 1,
            _ => {}
        }
    }
    let running = match client.info().await {
        Ok(info) => info.workers.iter().map(|w| w.processing).sum::<u64>(),
        Err(_) => 0,
    };
    let width = 30;
    let filled = if wanted.is_empty() {
        width
    } else {
        (done + failed) * width / wanted.len()
    };
    eprint!(
        "\r[{}{}] {}/{} final tasks done, {} failed; {} tasks assigned ({} in graph)",
        "#".repeat(filled),
        " ".repeat(width - filled),
        done,
        wanted.len(),
        failed,
        running,
        total
    );
    let _ = std::io::stderr().flush();
}
