//! The committed shell completions and man pages match the clap definitions: regenerate them
//! with `make completions man` when this fails.

use std::path::Path;
use std::process::Command;

fn check(what: &str, committed: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new(env!("CARGO_BIN_EXE_distd"))
        .args(["generate", what])
        .arg(dir.path())
        .status()
        .expect("run distd generate");
    assert!(status.success());
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join(committed);
    let mut fresh: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read generated")
        .map(|e| e.expect("entry").file_name())
        .collect();
    fresh.sort();
    let mut old: Vec<_> = std::fs::read_dir(&committed)
        .expect("read committed")
        .map(|e| e.expect("entry").file_name())
        .collect();
    old.sort();
    assert_eq!(fresh, old, "{what}: file set differs; run `make {what}`");
    for name in fresh {
        let a = std::fs::read(dir.path().join(&name)).expect("read fresh");
        let b = std::fs::read(committed.join(&name)).expect("read committed");
        assert!(a == b, "{what}: {name:?} is stale; run `make {what}`");
    }
}

#[test]
fn completions_are_fresh() {
    check("completions", "completions");
}

#[test]
fn man_pages_are_fresh() {
    check("man", "man");
}
