use std::process::ExitCode;

fn main() -> ExitCode {
    // Panic reports first; the cockpit's terminal hook (ratatui::init) chains onto this one.
    let _ = color_eyre::install();
    meshdeck::cli::install_panic_hook();
    meshdeck::cli::main()
}
