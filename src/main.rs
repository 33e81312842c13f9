//! The `tunnelwatch` binary: parse arguments, run, map the outcome to an exit code.

fn main() {
    std::process::exit(tunnelwatch::cli::main());
}
