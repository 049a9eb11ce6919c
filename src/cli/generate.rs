//! `distd generate completions|man DIR`, what `make completions` and `make man` commit: shell
//! completions for every shell clap_complete knows, a man page per visible command with the
//! sections clap_mangen does not write (EXIT STATUS, ENVIRONMENT, EXAMPLES, SEE ALSO), and
//! `distd-graph(5)` for the graph-file format. The words of those sections are
//! [`super::manual`]'s; this file only lays them out.
//!
//! It writes files into the folder it is given and nothing else; `tests/generated.rs` checks
//! that the committed files are what it writes.

use super::args::{GenerateArgs, Generated};
use super::commands::CliError;
use super::manual;
use clap::ValueEnum;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;
use std::path::Path;

pub fn generate(args: GenerateArgs) -> Result<u8, CliError> {
    std::fs::create_dir_all(&args.dir).map_err(|e| fail(&args.dir, e))?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    match args.what {
        Generated::Completions => {
            let mut cmd = super::args::visible_command();
            for shell in clap_complete::Shell::value_variants() {
                let mut buf = Vec::new();
                clap_complete::generate(*shell, &mut cmd, "distd", &mut buf);
                files.push((clap_complete::Generator::file_name(shell, "distd"), buf));
            }
        }
        Generated::Man => {
            for (name, page) in man_pages() {
                let mut buf = Vec::new();
                render_page(&name, page, &mut buf).map_err(|e| fail(&args.dir, e))?;
                files.push((format!("{name}.1"), buf));
            }
            files.push(("distd-graph.5".into(), manual::graph_page().into_bytes()));
        }
    }
    for (file, bytes) in files {
        let path = args.dir.join(file);
        std::fs::write(&path, bytes).map_err(|e| fail(&path, e))?;
    }
    Ok(crate::exit::SUCCESS)
}

fn fail(path: &Path, source: std::io::Error) -> CliError {
    CliError::WriteFile {
        path: path.display().to_string(),
        source,
    }
}

/// `distd` and each visible subcommand but `help`, named as their pages are (`distd-worker`).
fn man_pages() -> Vec<(String, clap::Command)> {
    // `help` is in --help and the completions, but has no page of its own to point at.
    let mut cmd = super::args::visible_command().mut_subcommand("help", |h| h.hide(true));
    cmd.build();
    let mut pages = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("distd-{}", sub.get_name());
        // Its long help's table of forms would be filled into one paragraph: the page has
        // the table as a section of its own instead.
        let sub = sub.clone().mut_args(|a| match a.get_id().as_str() {
            "memory_limit" => a
                .long_help(None::<&str>)
                .help("Memory per worker: see MEMORY LIMIT below"),
            _ => a,
        });
        pages.push((name.clone(), sub.name(name.clone()).display_name(name)));
    }
    pages.insert(0, ("distd".to_string(), cmd));
    pages
}

/// One command's page: clap_mangen's, with distd's own sections before VERSION.
fn render_page(name: &str, page: clap::Command, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let has_memory_limit = page.get_arguments().any(|a| a.get_id() == "memory_limit");
    let mut full = Vec::new();
    Man::new(page).render(&mut full)?;
    let full = String::from_utf8(full).expect("clap_mangen writes UTF-8");
    let mut roff = Roff::default();
    if has_memory_limit {
        memory_limit_section(&mut roff);
    }
    exit_status_section(&mut roff);
    environment_section(&mut roff);
    examples_section(&mut roff, manual::examples(name));
    see_also_section(&mut roff, name);
    // Both renderings start with the same preamble; the page keeps one.
    let preamble = Roff::default().render();
    let ours = roff.render();
    let ours = ours.strip_prefix(preamble.as_str()).unwrap_or(&ours);
    let at = full.find("\n.SH VERSION\n").map_or(full.len(), |i| i + 1);
    w.write_all(&full.as_bytes()[..at])?;
    w.write_all(ours.as_bytes())?;
    w.write_all(&full.as_bytes()[at..])
}

/// A `.TP` item: a tag line, then its text.
fn item(roff: &mut Roff, tag: Vec<clap_mangen::roff::Inline>, text: &str) {
    roff.control("TP", []);
    roff.text(tag);
    roff.text([roman(text)]);
}

fn memory_limit_section(roff: &mut Roff) {
    roff.control("SH", ["MEMORY LIMIT"]);
    roff.text([bold("--memory-limit"), roman(" is read as dask reads it:")]);
    for (form, meaning) in crate::units::MEMORY_LIMIT_FORMS {
        item(roff, vec![bold(*form)], meaning);
    }
    roff.control("PP", []);
    roff.text([roman(manual::memory_limit_thresholds())]);
}

fn exit_status_section(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(manual::EXIT_STATUS_INTRO)]);
    for (status, meaning) in crate::exit::TABLE {
        item(roff, vec![bold(status.to_string())], meaning);
    }
}

fn environment_section(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (var, meaning) in manual::ENVIRONMENT {
        item(roff, vec![bold(*var)], meaning);
    }
}

fn examples_section(roff: &mut Roff, examples: &[(&str, &str)]) {
    roff.control("SH", ["EXAMPLES"]);
    for (line, what) in examples {
        item(roff, vec![italic("$ "), bold(*line)], what);
    }
}

fn see_also_section(roff: &mut Roff, name: &str) {
    let pages: Vec<&str> = manual::see_also(name);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(pages.join(", "))]);
}
