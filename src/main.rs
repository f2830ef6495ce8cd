use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Panic reports first; the cockpit's terminal hook (ratatui::init) chains onto this one.
    let _ = color_eyre::install();
    meshdeck::cli::install_panic_hook();
    meshdeck::cli::main()
}
