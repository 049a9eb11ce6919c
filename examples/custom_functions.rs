//! A Rust program with its own task functions, run on a cluster of its own binary.
//!
//! With no arguments it starts a local cluster in-process, maps `fib` over 0..30, sums the
//! results with `add` on the cluster and checks the answer. With arguments it *is* the distd
//! CLI with these functions registered, so the same binary can run as a scheduler and as
//! workers on other machines: `custom_functions scheduler`, `custom_functions worker ADDR`.

use distd::{Client, LocalCluster, LocalClusterConfig, Registry};
use std::process::ExitCode;

fn fib(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}

/// distd's built-ins plus this program's own functions. From a graph file their arguments
/// are TOML values (`function = "fib"`, `args = 10`); `show` turns a typed number into text
/// to print.
fn registry() -> Registry {
    Registry::builtin()
        .register_typed("fib", |n: u64, _inputs: Vec<u64>| Ok(fib(n)))
        .register_typed("add", |(): (), inputs: Vec<u64>| Ok(inputs.iter().sum::<u64>()))
        .register_typed("fib_sum", |range: FibRange, _inputs: Vec<u64>| {
            Ok((range.from..range.to).map(fib).sum::<u64>())
        })
        .register("show", |_, inputs| {
            let numbers = inputs
                .iter()
                .map(|d| distd::protocol::codec::from_bytes::<u64>(d).map(|n| n.to_string()))
                .collect::<Result<Vec<String>, _>>()
                .map_err(|e| format!("show takes typed numbers: {e}"))?;
            Ok(numbers.join(" ").into_bytes())
        })
}

/// The arguments of `fib_sum`: from a graph file, `args = { from = 0, to = 10 }`.
#[derive(serde::Deserialize)]
struct FibRange {
    from: u64,
    to: u64,
}

fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        return distd::cli::main_with_registry(registry());
    }
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_functions: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = LocalCluster::start_blocking(LocalClusterConfig {
        workers: 2,
        registry: registry(),
        ..LocalClusterConfig::default()
    })?;
    let client = Client::connect(&cluster.address())?;
    let keys = client.map("fib", 0..30u64)?;
    let total = client.submit_fn("add", &(), &keys)?;
    let fibs: Vec<u64> = client.gather_typed(&keys)?;
    let sum: Vec<u64> = client.gather_typed(&[total])?;
    let expected: u64 = (0..30).map(fib).sum();
    println!("fib(0..30) = {fibs:?}");
    println!("sum = {} (expected {expected})", sum[0]);
    drop(client);
    cluster.stop_blocking();
    if sum[0] != expected {
        return Err(format!("wrong sum {}", sum[0]).into());
    }
    Ok(())
}
