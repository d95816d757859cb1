//! The `gpudock` binary: a shim over `gpudock::cli`.

fn main() -> std::process::ExitCode {
    gpudock::cli::main()
}
