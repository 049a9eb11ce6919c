//! A worker that stops answering (SIGSTOP) without dying: fetches from it time out, so the
//! other workers and the client go on, the inputs it held are computed again elsewhere, and
//! the graph finishes exactly while it is still stopped.
//!
//! The cluster is real processes (a scheduler and three bare workers); the client is the
//! library's, in the test, so that results stay held between the steps.

mod harness;

use distd::{AsyncClient, TaskDesc};
use harness::{start_scheduler, ProcId, Sandbox};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// Far beyond what the run needs once the fetches time out (about the scheduler's 10 s
/// heartbeat timeout and a few seconds), and short of forever, which is what it took before.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// A process of the sandbox stopped (SIGSTOP to the group the sandbox made for it) for as
/// long as this lives; dropping it continues the process, whatever happened meanwhile, so
/// that nothing stays stopped.
struct Stopped<'a> {
    sb: &'a mut Sandbox,
    id: ProcId,
}

impl<'a> Stopped<'a> {
    fn new(sb: &'a mut Sandbox, id: ProcId) -> Stopped<'a> {
        sb.pause(id);
        Stopped { sb, id }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.sb.resume(self.id);
    }
}

impl Deref for Stopped<'_> {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        self.sb
    }
}

impl DerefMut for Stopped<'_> {
    fn deref_mut(&mut self) -> &mut Sandbox {
        self.sb
    }
}

fn only_on(mut t: TaskDesc, workers: &[&str]) -> TaskDesc {
    t.options.workers = workers.iter().map(|w| w.to_string()).collect();
    t
}

#[test]
fn a_stopped_worker_stalls_nobody_and_the_graph_finishes_without_it() {
    let mut sb = Sandbox::new();
    let (_scheduler, addr) = start_scheduler(&mut sb, &[]);
    // The inputs are computed while the third worker is alone, so it holds them all.
    let holder = sb.worker(&addr).name("w2").nthreads(2).no_nanny().start();
    let client = smol::block_on(AsyncClient::connect(&addr)).expect("connect");
    let inputs: Vec<TaskDesc> = (0..6)
        .map(|i| TaskDesc::function(format!("in-{i}"), "identity", format!("in-{i};").into_bytes()))
        .collect();
    let input_keys = smol::block_on(client.submit(inputs)).expect("submit the inputs");
    smol::block_on(client.wait(&input_keys)).expect("the inputs finish");
    sb.worker(&addr).name("w0").nthreads(2).no_nanny().start();
    sb.worker(&addr).name("w1").nthreads(2).no_nanny().start();
    sb.wait_for_workers(&addr, 3);

    let mut stopped = Stopped::new(&mut sb, holder);
    // On the two running workers: tasks that need the stopped worker's results, and
    // independent work that needs nothing.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let dep = TaskDesc::function(format!("dep-{i}"), "concat", vec![]).with_deps([format!("in-{i}")]);
        tasks.push(only_on(dep, &["w0", "w1"]));
    }
    for j in 0..40 {
        let free = TaskDesc::function(format!("free-{j}"), "identity", format!("free-{j}").into_bytes());
        tasks.push(only_on(free, &["w0", "w1"]));
    }
    let keys = smol::block_on(client.submit(tasks)).expect("submit the rest");
    // Everything, the stopped worker's results included: the client's own fetches from it
    // must not hang either.
    let all: Vec<String> = input_keys.iter().chain(&keys).cloned().collect();
    let gathered = smol::block_on(futures_lite::FutureExt::or(
        async { Some(client.gather(&all).await) },
        async {
            async_io::Timer::after(RUN_DEADLINE).await;
            None
        },
    ))
    .unwrap_or_else(|| panic!("the graph did not finish within {RUN_DEADLINE:?} with w2 stopped"))
    .expect("the graph finishes");
    assert!(stopped.is_running(holder), "w2 is still there, stopped");
    let want: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("in-{i};").into_bytes())
        .chain((0..6).map(|i| format!("in-{i};").into_bytes()))
        .chain((0..40).map(|j| format!("free-{j}").into_bytes()))
        .collect();
    assert_eq!(gathered, want);
    drop(stopped);
    sb.check_no_crashes();
}
