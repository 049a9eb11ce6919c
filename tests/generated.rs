//! The committed shell completions and man pages match the clap definitions: regenerate them
//! with `make completions man` when this fails. And they say what they must: a completion
//! file for every shell, none offering the hidden `generate`; an EXIT STATUS, ENVIRONMENT and
//! EXAMPLES section on every command's page, and no page naming one that does not exist.

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

/// The committed files of `dir`, by name.
fn committed(dir: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("read committed")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).expect("text"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn completions_are_fresh() {
    check("completions", "completions");
}

#[test]
fn man_pages_are_fresh() {
    check("man", "man");
}

/// Regression: only bash, zsh and fish had completions, and they offered `generate`.
#[test]
fn completions_cover_every_shell_without_hidden_commands() {
    let files = committed("completions");
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["_distd", "_distd.ps1", "distd.bash", "distd.elv", "distd.fish"]);
    for (name, text) in &files {
        // By its description: `distd access generate` is a visible command of that name.
        assert!(
            !text.contains("Write shell completions or man pages"),
            "{name} offers the hidden `generate`"
        );
        assert!(!text.contains("distd,generate)"), "{name} offers the hidden `generate`");
        for visible in ["scheduler", "worker", "submit", "memory-limit"] {
            assert!(text.contains(visible), "{name} lacks {visible}");
        }
    }
}

/// Regression: `distd.1` named `distd-help(1)`, which does not exist, and no page had an EXIT
/// STATUS, ENVIRONMENT or EXAMPLES section; the graph-file format had no page.
#[test]
fn man_pages_have_their_sections_and_name_only_real_pages() {
    let files = committed("man");
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"distd-graph.5"), "{names:?}");
    for (name, text) in &files {
        // Every page another page names (roff escapes the dash) exists.
        for mention in text.split("distd\\-").skip(1) {
            let Some(end) = mention.find(')') else { continue };
            let Some((page, section)) = mention[..end].split_once('(') else {
                continue;
            };
            if page.chars().all(|c| c.is_ascii_lowercase()) && section.len() == 1 {
                let file = format!("distd-{page}.{section}");
                assert!(
                    names.contains(&file.as_str()),
                    "{name} names {file}, which does not exist"
                );
            }
        }
        if name.ends_with(".1") {
            for section in [
                ".SH \"EXIT STATUS\"",
                ".SH ENVIRONMENT",
                ".SH EXAMPLES",
                "RUST_LOG",
                "DISTD_SPIN_US",
            ] {
                assert!(text.contains(section), "{name} lacks {section}");
            }
            for status in ["\\fB78\\fR", "\\fB2\\fR", "\\fB128+N\\fR"] {
                assert!(text.contains(status), "{name}'s EXIT STATUS lacks {status}");
            }
        }
    }
}
