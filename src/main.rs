//! The `relbert` command line: a thin layer of argument parsing over the library.

mod cli;

use clap::Parser;

/// mimalloc instead of glibc's malloc: `relbert serve` allocates per request from many
/// threads (bodies, JSON values, result strings), and glibc's allocator took ~9% of the
/// server's CPU under load (`benchmarks/serve/README.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Output piped into `head` and the like ends quietly, as Unix tools do, instead of
    // panicking on the first write after the reader has gone.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELBERT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,relbert=info,relbert_index=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to a file or a CI log stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
