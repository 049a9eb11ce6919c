//! transfer: a large result made on worker A and fetched by a task restricted to worker B,
//! beside a raw loopback TCP copy of the same size in the same run.

use crate::cluster::{Cluster, Workers};
use crate::report::{fail, num, Context, Outcome, Report, Stats};
use crate::Bench;
use distd::{KeyStatus, TaskDesc, TaskOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Slowest transfer (bytes per second) before a run counts as stuck.
const MIN_RATE: f64 = 20e6;

/// Size of each write of the raw copy.
const CHUNK: usize = 1 << 20;

pub fn transfer(bench: &Bench) -> Outcome<Report> {
    let bytes = bench.sizes.transfer_bytes;
    let cluster = Cluster::start(&bench.env, &bench.cluster_label("transfer"), Workers::Plain(2))?;
    cluster.warm_up()?;
    let (a, b) = (cluster.worker_names[0].clone(), cluster.worker_names[1].clone());
    let limit = Duration::from_secs(30) + Duration::from_secs_f64(bytes as f64 / MIN_RATE);
    let (mut rates, mut raw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..bench.sizes.runs {
        let blob = cluster.client.unique_key("blob");
        let make = restricted(
            TaskDesc::function(blob.clone(), "blob", size_arg(bytes).into_bytes()),
            &a,
        );
        cluster.client.submit(vec![make]).context("submitting the blob")?;
        cluster.wait_finished(std::slice::from_ref(&blob), limit)?;
        match cluster.client.status(&blob) {
            Some(KeyStatus::Finished { nbytes }) if nbytes == bytes => {}
            other => return fail(format!("the blob finished as {other:?}, expected {bytes} bytes")),
        }
        // Only the fetch is timed: the consumer is a noop, so it copies nothing itself.
        let consumer = cluster.client.unique_key("fetch");
        let fetch = restricted(
            TaskDesc::function(consumer.clone(), "noop", Vec::new()).with_deps([blob.clone()]),
            &b,
        );
        let start = Instant::now();
        cluster.client.submit(vec![fetch]).context("submitting the consumer")?;
        cluster.wait_finished(std::slice::from_ref(&consumer), limit)?;
        let secs = start.elapsed().as_secs_f64();
        check_both_hold(&cluster, &blob)?;
        cluster
            .client
            .release(&[blob, consumer])
            .context("releasing the blob")?;
        wait_no_stored_bytes(&cluster)?;
        let rate = bytes as f64 / 1e6 / secs;
        let reference = loopback_copy(bytes, limit)?;
        bench.progress(
            "transfer",
            run,
            &format!("{rate:.0} MB/s; raw loopback TCP {reference:.0} MB/s"),
        );
        rates.push(rate);
        raw.push(reference);
        ratios.push(rate / reference);
    }
    Ok(Report::new("transfer", "MB/s", &rates)
        .param("bytes", bytes)
        .param("from", "worker A (blob)")
        .param("to", "worker B (noop depending on it)")
        .field("reference", num(Stats::of(&raw).median))
        .field("reference_what", "raw loopback TCP copy, 1 MiB writes, two threads")
        .field("ratio", num(Stats::of(&ratios).median)))
}

/// `bytes` as the `blob` function's argument: "1GiB", "16MiB" or a count of bytes.
fn size_arg(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match bytes {
        b if b % GIB == 0 => format!("{}GiB", b / GIB),
        b if b % MIB == 0 => format!("{}MiB", b / MIB),
        b => format!("{b}B"),
    }
}

/// `task`, allowed to run only on the worker named `worker`.
fn restricted(mut task: TaskDesc, worker: &str) -> TaskDesc {
    task.options = TaskOptions {
        workers: vec![worker.to_string()],
        ..TaskOptions::default()
    };
    task
}

/// The fetch really happened: both workers hold the blob now.
fn check_both_hold(cluster: &Cluster, blob: &str) -> Outcome<()> {
    let what = "asking where the blob is";
    let locations = crate::cluster::within(
        Duration::from_secs(30),
        what,
        cluster.client.as_async().who_has(&[blob.to_string()]),
    )?;
    let holders = locations.first().map(|l| l.holders.len()).unwrap_or(0);
    if holders != 2 {
        return fail(format!(
            "after the consumer ran, {holders} workers hold the blob, expected 2: {locations:?}"
        ));
    }
    Ok(())
}

/// Waits until the workers dropped the released bytes, so the next run starts clean.
fn wait_no_stored_bytes(cluster: &Cluster) -> Outcome<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = cluster.info()?;
        let stored: u64 = info.workers.iter().map(|w| w.stored_bytes).sum();
        if stored == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return fail(format!("workers still hold {stored} bytes 30 s after the release"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Copies `bytes` over a loopback TCP connection (a sender thread, this thread reading, 1 MiB
/// writes); MB/s from connect to the last byte read.
fn loopback_copy(bytes: u64, limit: Duration) -> Outcome<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let addr = listener.local_addr().context("the loopback listener's address")?;
    listener
        .set_nonblocking(true)
        .context("making the loopback listener non-blocking")?;
    let sender = std::thread::spawn(move || -> Outcome<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => return fail(format!("accepting the loopback connection: {e}")),
            }
        };
        stream
            .set_nonblocking(false)
            .context("making the sender's socket blocking")?;
        stream
            .set_write_timeout(Some(limit))
            .context("setting a write timeout")?;
        let chunk = vec![0x5au8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            stream
                .write_all(&chunk[..n])
                .context("writing to the loopback connection")?;
            left -= n as u64;
        }
        Ok(())
    });
    let start = Instant::now();
    let received = (|| -> Outcome<()> {
        let mut stream = TcpStream::connect(addr).context("connecting over loopback")?;
        stream.set_read_timeout(Some(limit)).context("setting a read timeout")?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < bytes {
            let n = stream.read(&mut buf).context("reading from the loopback connection")?;
            if n == 0 {
                return fail(format!("the loopback connection closed after {got} of {bytes} bytes"));
            }
            got += n as u64;
        }
        Ok(())
    })();
    let secs = start.elapsed().as_secs_f64();
    let sent = sender
        .join()
        .unwrap_or_else(|_| fail("the loopback sender thread panicked"));
    received?;
    sent?;
    Ok(bytes as f64 / 1e6 / secs)
}
