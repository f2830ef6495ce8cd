use std::process::ExitCode;

fn main() -> ExitCode {
    meshdeck::cli::main()
}
