//! The decoders against hostile bytes, on stable Rust: from a fixed seed, random bytes and
//! mutations of real frames, message bodies and hellos (bit flips, truncations, overwritten
//! length fields, splices) go to `distd::protocol::fuzzing`, whose entry points must return
//! without a panic, whatever they are given. Then the cargo-fuzz corpus (`fuzz/corpus/`,
//! see `fuzz/README.md`) is replayed, so that every input the fuzzer kept is checked by
//! `make test` too.
//!
//! The corpus's seeds are the real inputs below, written by the ignored test
//! `write_seed_corpus` (`cargo test --test fuzz_frames -- --ignored write_seed_corpus`).

use distd::protocol::fuzzing;
use distd::protocol::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The fixed seed: every run tries the same inputs, so a failure is one to reproduce.
const SEED: u64 = 0x5eed_d15d_f0cc_ac1a;

/// Inputs tried per entry point beyond the real ones: well under a second in a debug build.
const CASES: usize = 4000;

/// A xorshift64* generator: enough to spread inputs, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One real message of each kind a connection carries, frames of the message enums.
fn real_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name, frame: Result<Vec<u8>, FrameError>| out.push((name, frame.expect("a real message encodes")));
    let command = TaskDesc::command("grep", ["grep", "-c", "x", "{dep:load}"]).with_deps(["load"]);
    let function = TaskDesc::function("load", "blob", vec![1, 2, 3, 4]);
    let error = TaskError::Dependency {
        key: "load".into(),
        error: Box::new(TaskError::Exit {
            status: 2,
            stderr: "no such file\n".into(),
        }),
    };
    add(
        "to-worker-compute",
        frame(&ToWorker::Compute(Box::new(ComputeTask {
            id: TaskId(7),
            attempt: AttemptId(1),
            key: "grep".into(),
            spec: command.spec.clone(),
            deps: vec![DepLocation {
                id: TaskId(6),
                key: "load".into(),
                nbytes: 1 << 20,
                holders: vec!["10.0.0.2:40001".into()],
            }],
            priority: -3,
        }))),
    );
    add(
        "to-worker-various",
        frames(&[
            ToWorker::Registered {
                worker: WorkerId(3),
                heartbeat_ms: 500,
            },
            ToWorker::Steal {
                tasks: vec![TaskId(1), TaskId(u64::MAX)],
            },
            ToWorker::PutData {
                task: TaskId(9),
                key: "scattered".into(),
                data: b"bytes".to_vec(),
            },
            ToWorker::Shutdown { reason: "bye".into() },
        ]),
    );
    add(
        "from-worker-various",
        frames(&[
            FromWorker::Register(WorkerInfo {
                name: "w1".into(),
                peer_address: "127.0.0.1:40001".into(),
                nthreads: 4,
                resources: vec![("GPU".into(), 1.5)],
                memory_limit: 1 << 30,
                pid: 1234,
                host: "node1".into(),
            }),
            FromWorker::Finished {
                task: TaskId(7),
                attempt: AttemptId(1),
                nbytes: 42,
                fetched: vec![TaskId(6)],
                seen: 10,
            },
            FromWorker::Failed {
                task: TaskId(8),
                attempt: AttemptId(2),
                error: error.clone(),
            },
            FromWorker::FetchFailed {
                task: TaskId(8),
                attempt: AttemptId(2),
                dep: TaskId(6),
                holder: "10.0.0.2:40001".into(),
                failure: FetchFailure::Transfer("reset".into()),
            },
            FromWorker::Replicated {
                task: TaskId(6),
                nbytes: Some(3),
                seen: 11,
            },
        ]),
    );
    add(
        "nanny",
        frames(&[
            FromNanny::Register {
                name: "n1".into(),
                host: "node1".into(),
                pid: 99,
                workers: vec!["w1".into()],
            },
            FromNanny::WorkerDied {
                worker: "w1".into(),
                reason: "killed by signal 9".into(),
            },
        ]),
    );
    add("to-nanny", frames(&[ToNanny::Registered, ToNanny::Restart]));
    add(
        "from-client-submit",
        frame(&FromClient::Submit {
            tasks: vec![function, command],
            wanted: vec!["grep".into()],
        }),
    );
    add(
        "from-client-various",
        frames(&[
            FromClient::WhoHas {
                req: RequestId(1),
                keys: vec!["grep".into()],
            },
            FromClient::Scatter {
                req: RequestId(2),
                items: vec![("x".into(), vec![0; 16])],
            },
            FromClient::Replicate {
                keys: vec!["x".into()],
                replicas: 2,
            },
        ]),
    );
    add(
        "to-client-various",
        frames(&[
            ToClient::Welcome { client: ClientId(1) },
            ToClient::KeyErred {
                key: "grep".into(),
                error,
            },
            ToClient::WhoHas {
                req: RequestId(1),
                locations: vec![KeyLocation {
                    key: "grep".into(),
                    id: TaskId(7),
                    nbytes: 42,
                    holders: vec!["127.0.0.1:40001".into()],
                    problem: Some(LocationProblem::NotFinished("processing".into())),
                }],
            },
            ToClient::Restarted {
                req: RequestId(3),
                result: Err("no nanny".into()),
            },
        ]),
    );
    add(
        "to-client-info",
        frame(&ToClient::Info {
            req: RequestId(4),
            info: ClusterInfo {
                scheduler_version: DISTD_VERSION.into(),
                workers: vec![WorkerSummary {
                    id: WorkerId(1),
                    name: "w1".into(),
                    address: "127.0.0.1:40001".into(),
                    host: "node1".into(),
                    pid: 1234,
                    nthreads: 4,
                    resources: vec![],
                    memory: 1 << 20,
                    memory_limit: 1 << 30,
                    processing: 2,
                    stored: 1,
                    stored_bytes: 42,
                }],
                tasks: vec![("memory".into(), 1)],
                clients: 0,
            },
        }),
    );
    add(
        "to-peer",
        frame(&ToPeer::Fetch {
            tasks: vec![TaskId(6), TaskId(7)],
        }),
    );
    // A peer's answer: a `Data` frame, its raw payload, then a `Missing`.
    add(
        "from-peer",
        frame(&FromPeer::Data {
            task: TaskId(6),
            len: 5,
        })
        .and_then(|mut f| {
            f.extend_from_slice(b"hello");
            f.extend(frame(&FromPeer::Missing { task: TaskId(7) })?);
            Ok(f)
        }),
    );
    out
}

fn frame<T: serde::Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    frames(std::slice::from_ref(msg))
}

fn frames<T: serde::Serialize>(msgs: &[T]) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::new();
    for m in msgs {
        encode_frame(&mut buf, m)?;
    }
    Ok(buf)
}

/// Where each frame's length field is in a stream of frames.
fn length_fields(stream: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + 4 <= stream.len() {
        out.push(at);
        let len = u32::from_le_bytes([stream[at], stream[at + 1], stream[at + 2], stream[at + 3]]);
        at += 4 + len as usize;
    }
    out
}

/// The bodies of a stream's frames: what the message decoder is given.
fn bodies(stream: &[u8]) -> Vec<Vec<u8>> {
    length_fields(stream)
        .into_iter()
        .filter_map(|at| {
            let len = u32::from_le_bytes([stream[at], stream[at + 1], stream[at + 2], stream[at + 3]]) as usize;
            stream.get(at + 4..at + 4 + len).map(<[u8]>::to_vec)
        })
        .collect()
}

/// A real opening of a connection: a hello, then the verdict the connecting side reads.
struct Opening {
    name: String,
    bytes: Vec<u8>,
    /// Where the verdict starts: its reason's `u16` length is 1 byte further.
    verdict_at: usize,
}

fn real_openings() -> Vec<Opening> {
    let roles = [Role::Scheduler, Role::Worker, Role::Client, Role::Nanny, Role::Peer];
    let opening = |name: String, hello: Hello, verdict: &[u8]| {
        let mut bytes = hello.encode();
        let verdict_at = bytes.len();
        bytes.extend_from_slice(verdict);
        Opening {
            name,
            bytes,
            verdict_at,
        }
    };
    let mut out: Vec<Opening> = roles
        .into_iter()
        .map(|role| {
            opening(
                format!("accepted-{role:?}").to_lowercase(),
                Hello::ours(role),
                &[0, 0, 0],
            )
        })
        .collect();
    let reason = b"version mismatch: this scheduler runs distd 0.1.0 (protocol 5)";
    let mut verdict = vec![1];
    verdict.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    verdict.extend_from_slice(reason);
    let mut other = Hello::ours(Role::Scheduler);
    other.protocol += 1;
    other.version = "9.9.9".into();
    out.push(opening("refused".into(), other, &verdict));
    out
}

/// Lengths a peer might declare to make trouble.
fn hostile_length(rng: &mut Rng, honest: u32) -> u32 {
    let max = MAX_FRAME_LEN as u32;
    let any = rng.next() as u32;
    *rng.pick(&[
        0,
        1,
        honest.wrapping_sub(1),
        honest.wrapping_add(1),
        honest.wrapping_mul(2),
        max,
        max + 1,
        u32::MAX,
        any,
    ])
}

/// One mutation of `input`, with `others` to splice from. `length_at` lists where `input`
/// keeps a little-endian length field of `width` bytes (frames: 4 bytes; hellos: the
/// version's 1 byte and the reason's 2).
fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>], length_at: &[(usize, usize)]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(7) {
            // Bit flips.
            0 if !out.is_empty() => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(out.len());
                    out[at] ^= 1 << rng.below(8);
                }
            }
            // A truncation.
            1 => out.truncate(rng.below(out.len() + 1)),
            // A length field overwritten.
            2 if !length_at.is_empty() => {
                let &(at, width) = rng.pick(length_at);
                if at + width <= out.len() {
                    let mut honest = [0u8; 4];
                    honest[..width].copy_from_slice(&out[at..at + width]);
                    let len = hostile_length(rng, u32::from_le_bytes(honest)).to_le_bytes();
                    out[at..at + width].copy_from_slice(&len[..width]);
                }
            }
            // A splice: this input's start, another's end.
            3 => {
                let other = rng.pick(others);
                let cut = rng.below(out.len() + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            // Bytes that postcard reads as long varints or unknown tags.
            4 if !out.is_empty() => {
                let at = rng.below(out.len());
                let n = (1 + rng.below(6)).min(out.len() - at);
                let byte = *rng.pick(&[0x00, 0x7f, 0x80, 0xff]);
                out[at..at + n].fill(byte);
            }
            // Random bytes inserted.
            5 => {
                let at = rng.below(out.len() + 1);
                let n = 1 + rng.below(8);
                let junk = rng.bytes(n);
                out.splice(at..at, junk);
            }
            // A run of bytes deleted.
            _ if !out.is_empty() => {
                let at = rng.below(out.len());
                let n = (1 + rng.below(8)).min(out.len() - at);
                out.drain(at..at + n);
            }
            _ => {}
        }
    }
    out
}

/// Feeds `input` to `entry`; a panic fails the test, naming the input.
fn feed(what: &str, entry: Entry, input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| entry(input))).is_err() {
        panic!("{what}: the decoder panicked on {} bytes: {input:02x?}", input.len());
    }
}

#[test]
fn real_inputs_mutated_and_random_bytes_never_panic_the_decoders() {
    let mut rng = Rng(SEED);
    let streams: Vec<Vec<u8>> = real_frames().into_iter().map(|(_, f)| f).collect();
    let messages: Vec<Vec<u8>> = streams.iter().flat_map(|s| bodies(s)).collect();
    let openings = real_openings();
    let hellos: Vec<Vec<u8>> = openings.iter().map(|o| o.bytes.clone()).collect();
    for s in &streams {
        feed("real frames", fuzzing::frames, s);
    }
    for m in &messages {
        feed("a real message", fuzzing::message, m);
    }
    for h in &hellos {
        feed("a real hello", fuzzing::hello, h);
    }
    for case in 0..CASES {
        // One input in eight is plain random bytes, the rest mutations of real ones.
        let random = case % 8 == 0;
        let len = rng.below(64);
        let stream = rng.pick(&streams).clone();
        let fields: Vec<(usize, usize)> = length_fields(&stream).into_iter().map(|at| (at, 4)).collect();
        let input = if random {
            rng.bytes(len)
        } else {
            mutate(&mut rng, &stream, &streams, &fields)
        };
        feed(&format!("frames case {case}"), fuzzing::frames, &input);

        let message = rng.pick(&messages).clone();
        let input = if random {
            rng.bytes(len)
        } else {
            mutate(&mut rng, &message, &messages, &[])
        };
        feed(&format!("message case {case}"), fuzzing::message, &input);

        let opening = rng.pick(&openings);
        // The version's length is the 14th byte of a hello.
        let (hello, fields) = (&opening.bytes, [(13, 1), (opening.verdict_at + 1, 2)]);
        let input = if random {
            rng.bytes(len)
        } else {
            mutate(&mut rng, hello, &hellos, &fields)
        };
        feed(&format!("hello case {case}"), fuzzing::hello, &input);
    }
}

/// The cargo-fuzz corpus, one folder per target.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus")
}

/// A fuzz target's entry point: bytes in, no panic out.
type Entry = fn(&[u8]);

/// The entry point of each fuzz target, by the target's name.
const TARGETS: [(&str, Entry); 3] = [
    ("frames", fuzzing::frames),
    ("hello", fuzzing::hello),
    ("message", fuzzing::message),
];

#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    let mut replayed = 0;
    for (target, entry) in TARGETS {
        // A checkout without the corpus (a packaged crate) replays nothing.
        let Ok(files) = std::fs::read_dir(corpus_dir().join(target)) else {
            continue;
        };
        for file in files {
            let path = file.expect("a corpus folder lists").path();
            let input = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            feed(&format!("{target} corpus file {}", path.display()), entry, &input);
            replayed += 1;
        }
    }
    eprintln!("{replayed} corpus inputs replayed");
}

/// Writes the real inputs as the fuzz targets' seeds, `seed-*` in each corpus folder.
#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand when the messages change"]
fn write_seed_corpus() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir().join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus folder");
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    };
    for (name, stream) in real_frames() {
        write("frames", name, &stream);
        for (i, body) in bodies(&stream).iter().enumerate() {
            write("message", &format!("{name}-{i}"), body);
        }
    }
    for opening in real_openings() {
        write("hello", &opening.name, &opening.bytes);
    }
}
