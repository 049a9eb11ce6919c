//! The `distd` executable: the built-in function registry handed to the CLI entry point.

fn main() -> std::process::ExitCode {
    distd::cli::main_with_registry(distd::Registry::builtin())
}
