//! Architecture invariants, checked on the source tree (as rust-analyzer's tidy tests do):
//! what ARCHITECTURE.md says is deliberately absent, and where.
//!
//! - A sans-I/O state machine ([`SANS_IO`]) names no async runtime, socket, file, thread,
//!   process or clock: its shell does the I/O and passes `now` in.
//! - Only `src/protocol/` names postcard.
//! - Only the network module (`src/protocol/net.rs`) dials or accepts: TLS and
//!   authentication go there.
//! - No file in `src/` is over [`MAX_LINES`] lines, tests aside (`*_tests.rs`, `tests/`
//!   folders, and a `#[cfg(test)] mod ... { }` at the end of a file).
//!
//! Comments are not code: a `//` comment may name anything. A rule that is known to be
//! broken on this branch, because the fix is another branch's, is listed in [`PENDING`];
//! the check fails once such an exception is no longer needed, so the list stays honest.

use std::path::{Path, PathBuf};

/// The sans-I/O state machines (ARCHITECTURE.md, "State machines"). A path ending in `/`
/// stands for every `.rs` file under it (tests aside). Every path must exist.
const SANS_IO: &[&str] = &[
    "src/scheduler/core/",
    "src/worker/state/",
    "src/worker/lifecycle.rs",
    "src/nanny/core.rs",
    "src/nanny/supervisor.rs",
    "src/memory.rs",
    "src/worker/store/ledger.rs",
];

/// What a state machine must not name: runtimes, sockets, files, threads, processes, clocks,
/// the environment, and the crate's own executor and platform layer.
const FORBIDDEN_IN_SANS_IO: &[&str] = &[
    "smol",
    "async_io",
    "async_channel",
    "futures_lite",
    "blocking::",
    ".await",
    "Timer",
    "TcpStream",
    "std::fs",
    "std::net::Tcp",
    "Instant::now",
    "SystemTime::now",
    ".elapsed(",
    "std::thread",
    "std::process",
    "std::env",
    "libc",
    "crate::rt",
    "crate::sys",
];

/// What a grouped `use std::{...}` may not bring into a state machine.
const FORBIDDEN_STD_GROUP: &[&str] = &["fs", "thread", "process", "env", "net"];

/// The only folder that may name the wire encoding.
const POSTCARD_HOME: &str = "src/protocol/";

/// The only files that may dial or accept: the network edge, and its TLS step (where
/// every connection is authenticated).
const NET_MODULE: &[&str] = &["src/protocol/net.rs", "src/protocol/secure.rs"];

/// What dials or accepts, or runs a handshake (where authentication is).
const DIAL_OR_ACCEPT: &[&str] = &[
    "TcpStream::connect",
    ".accept(",
    ".incoming(",
    "connect_handshake(",
    "accept_handshake(",
];

/// The longest a source file may be, tests aside.
const MAX_LINES: usize = 800;

/// Known violations, each with the issue that fixes it: (rule, path, why). None today. The
/// check fails when an entry no longer matches a violation, so the list stays honest.
const PENDING: &[(Rule, &str, &str)] = &[];

/// Which invariant a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    SansIo,
    Postcard,
    DialOrAccept,
    Size,
}

/// One broken invariant.
#[derive(Debug)]
struct Violation {
    /// Relative to the crate root, with `/`.
    path: String,
    what: String,
}

/// The crate root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `path` relative to the crate root, with `/` separators.
fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
                .path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Whether a file holds only tests: `*_tests.rs`, `tests.rs`, or anything in a `tests/` or
/// `*_tests/` folder.
fn is_test_file(rel: &str) -> bool {
    let mut parts: Vec<&str> = rel.split('/').collect();
    let file = parts.pop().unwrap_or("");
    file.ends_with("_tests.rs")
        || file == "tests.rs"
        || parts.iter().any(|part| *part == "tests" || part.ends_with("_tests"))
}

/// A line without its `//` comment (a `//` inside a string or char literal is not one).
fn code_of(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            // A char literal (`'"'`, `'\\''`), not a lifetime (`'a`): skip it whole.
            b'\'' if !in_string => {
                if bytes.get(i + 1) == Some(&b'\\') {
                    if let Some(end) = bytes[i + 2..].iter().position(|&b| b == b'\'') {
                        i += end + 2;
                    }
                } else if bytes.get(i + 2) == Some(&b'\'') {
                    i += 2;
                }
            }
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// The lines of a file before its test module: everything up to a `#[cfg(test)]` whose item
/// (after other attributes) is an inline `mod NAME {` that ends the file. A test module with
/// code after it is no tail: the code after it counts.
fn code_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "#[cfg(test)]" {
            continue;
        }
        let Some(open) = (i + 1..lines.len()).find(|&k| !lines[k].trim().starts_with("#[")) else {
            continue;
        };
        let item = lines[open].trim();
        let item = item
            .strip_prefix("pub(crate) ")
            .or_else(|| item.strip_prefix("pub "))
            .unwrap_or(item);
        if !(item.starts_with("mod ") && item.ends_with('{')) {
            continue;
        }
        // Where the module's braces close: the tail only if nothing but blank lines follows.
        let mut depth = 0i64;
        let mut close = None;
        for (k, l) in lines.iter().enumerate().skip(open) {
            let code = code_of(l);
            depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            if depth <= 0 {
                close = Some(k);
                break;
            }
        }
        if close.is_some_and(|k| lines[k + 1..].iter().all(|l| l.trim().is_empty())) {
            return lines[..i].to_vec();
        }
    }
    lines
}

/// Whether `code` names `needle`, or a name that starts with it (`std::net::Tcp` names
/// `std::net::TcpListener`), but not as the tail of a longer name (`my_smol` is not `smol`).
fn names(code: &str, needle: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(needle).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        !needle.starts_with(ident) || !before.is_some_and(ident)
    })
}

/// What a grouped `use std::{a, b::c}` on this line brings in that `forbidden` names, as
/// `std::a` paths: `use std::{fs, thread};` names `std::fs` and `std::thread`.
fn std_group_names(code: &str, forbidden: &[&str]) -> Vec<String> {
    let Some(start) = code.find("std::{") else {
        return Vec::new();
    };
    let group = &code[start + "std::{".len()..];
    let group = group.split('}').next().unwrap_or(group);
    group
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or(item)
        })
        .filter(|first| forbidden.contains(first))
        .map(|first| format!("std::{first}"))
        .collect()
}

/// The lines of `path` (tests aside) that name one of `forbidden`, one per line; with
/// `std_group`, also the `std` modules of that list brought in by a grouped `use std::{..}`.
fn scan_with(path: &Path, forbidden: &[&str], std_group: &[&str]) -> Vec<Violation> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = Vec::new();
    for (n, line) in code_lines(&text).iter().enumerate() {
        let code = code_of(line);
        let mut hits: Vec<String> = forbidden
            .iter()
            .filter(|f| names(code, f))
            .map(|f| f.to_string())
            .collect();
        hits.extend(std_group_names(code, std_group));
        if !hits.is_empty() {
            out.push(Violation {
                path: relative(path),
                what: format!("line {} names {}: {}", n + 1, hits.join(", "), line.trim()),
            });
        }
    }
    out
}

/// The lines of `path` (tests aside) that name one of `forbidden`, one per line.
fn scan(path: &Path, forbidden: &[&str]) -> Vec<Violation> {
    scan_with(path, forbidden, &[])
}

/// The files of the sans-I/O state machines, checking that every listed one exists.
fn sans_io_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in SANS_IO {
        let path = root().join(entry);
        if entry.ends_with('/') {
            assert!(
                path.is_dir(),
                "{entry} is listed in SANS_IO but does not exist: update the list"
            );
            files.extend(rust_files(&path).into_iter().filter(|f| !is_test_file(&relative(f))));
        } else {
            assert!(
                path.is_file(),
                "{entry} is listed in SANS_IO but does not exist: update the list"
            );
            files.push(path);
        }
    }
    files
}

/// The source files of `src/`, tests aside.
fn source_files() -> Vec<PathBuf> {
    rust_files(&root().join("src"))
        .into_iter()
        .filter(|f| !is_test_file(&relative(f)))
        .collect()
}

/// Fails with every violation of `rule` that [`PENDING`] does not excuse, and with every
/// pending entry of `rule` that excuses nothing.
fn check(rule: Rule, violations: Vec<Violation>) {
    let pending: Vec<&(Rule, &str, &str)> = PENDING.iter().filter(|p| p.0 == rule).collect();
    let mut problems = Vec::new();
    for v in &violations {
        match pending.iter().find(|p| p.1 == v.path) {
            Some(p) => eprintln!("pending ({}): {}: {}", p.2, v.path, v.what),
            None => problems.push(format!("{}: {}", v.path, v.what)),
        }
    }
    for p in pending {
        if !violations.iter().any(|v| v.path == p.1) {
            problems.push(format!(
                "{}: listed in PENDING for {rule:?} ({}) but breaks no rule any more: remove the entry",
                p.1, p.2
            ));
        }
    }
    assert!(problems.is_empty(), "{rule:?}:\n{}", problems.join("\n"));
}

#[test]
fn state_machines_name_no_runtime_socket_file_thread_process_or_clock() {
    let violations = sans_io_files()
        .iter()
        .flat_map(|f| scan_with(f, FORBIDDEN_IN_SANS_IO, FORBIDDEN_STD_GROUP))
        .collect();
    check(Rule::SansIo, violations);
}

#[test]
fn only_protocol_names_postcard() {
    let violations = source_files()
        .iter()
        .filter(|f| !relative(f).starts_with(POSTCARD_HOME))
        .flat_map(|f| scan(f, &["postcard"]))
        .collect();
    check(Rule::Postcard, violations);
}

#[test]
fn only_the_net_module_dials_and_accepts() {
    let violations = source_files()
        .iter()
        .filter(|f| !NET_MODULE.contains(&relative(f).as_str()))
        .flat_map(|f| scan(f, DIAL_OR_ACCEPT))
        .collect();
    check(Rule::DialOrAccept, violations);
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let mut violations = Vec::new();
    for f in source_files() {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        let n = code_lines(&text).len();
        if n > MAX_LINES {
            violations.push(Violation {
                path: relative(&f),
                what: format!("{n} lines before its tests, more than {MAX_LINES}"),
            });
        }
    }
    check(Rule::Size, violations);
}

/// The checks themselves: what counts as naming, as a comment and as the test tail.
#[test]
fn the_checks_see_code_and_skip_comments_and_tests() {
    assert!(names("let t = Instant::now();", "Instant::now"));
    assert!(names("x.await", ".await"));
    assert!(!names("let my_smol = 1;", "smol"), "the tail of a longer name");
    assert!(names("use smol::Task;", "smol"));
    assert!(names("use std::net::TcpListener;", "std::net::Tcp"));
    assert_eq!(code_of("let a = 1; // uses smol"), "let a = 1; ");
    assert_eq!(code_of(r#"let s = "tcp://h"; x"#), r#"let s = "tcp://h"; x"#);
    assert_eq!(
        code_of(r#"let q = '"'; x // c"#),
        r#"let q = '"'; x "#,
        "a char literal is no string"
    );
    assert_eq!(code_of(r#"let q = '\''; "tcp://h""#), r#"let q = '\''; "tcp://h""#);
    assert_eq!(code_of("fn f<'a>(x: &'a str) {} // c"), "fn f<'a>(x: &'a str) {} ");
    let text = "fn a() {}\n#[cfg(test)]\nmod tests;\nfn b() {}\n#[cfg(test)]\n#[allow(x)]\nmod tests {\n}\n";
    assert_eq!(code_lines(text).len(), 4, "a declared test module is not the tail");
    let early = "#[cfg(test)]\nmod tests {\n    fn t() {}\n}\nfn after() { Instant::now(); }\n";
    assert_eq!(
        code_lines(early).len(),
        5,
        "a test module with code after it is no tail"
    );
    assert_eq!(
        std_group_names(
            "use std::{collections::HashMap, fs, thread::spawn, env as e};",
            FORBIDDEN_STD_GROUP
        ),
        ["std::fs", "std::thread", "std::env"]
    );
    assert!(std_group_names("use std::{cmp, time::Duration};", FORBIDDEN_STD_GROUP).is_empty());
    assert!(is_test_file("src/scheduler/core_tests.rs"));
    assert!(is_test_file("src/scheduler/core/tests/placement.rs"));
    assert!(is_test_file("src/scheduler/core_tests/mod.rs"));
    assert!(is_test_file("src/worker/store/tests.rs"));
    assert!(!is_test_file("src/scheduler/core/task.rs"));
    assert!(!is_test_file("src/worker/store/mod.rs"));
}
