//! The `relbert` command line: a thin layer of argument parsing over the library.

mod cli;

use clap::Parser;

/// mimalloc instead of glibc's malloc: `relbert serve` allocates per request from many
/// threads (bodies, JSON values, result strings), and glibc's allocator took ~9% of the
/// server's CPU under load (`benchmarks/serve/README.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Parsed while SIGPIPE is still ignored (as Rust starts programs): clap's usage error
    // then ends with status 2 even when standard error is a pipe whose reader has gone; it
    // ignores a failed write itself.
    let args = cli::Cli::parse();
    // Output piped into `head` and the like ends quietly, as Unix tools do, instead of
    // panicking on the first write after the reader has gone. Standard error is written
    // through `relbert::output::Stderr`, which keeps SIGPIPE off: a message lost there
    // does not end the run.
    #[cfg(unix)]
    // SAFETY: called before any thread exists (parsing starts none); SIG_DFL is a valid
    // disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELBERT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,relbert=info,relbert_index=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Never SIGPIPE, and a failed write is not reported with `eprintln!` (which panics
        // when standard error is what failed): see `relbert::output::eprint_line`.
        .with_writer(|| relbert::output::Stderr)
        .log_internal_errors(false)
        // Colour codes only for a terminal: logs piped to a file or a CI log stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    if let Err(e) = cli::run(args) {
        relbert::say!("error: {e:#}");
        std::process::exit(1);
    }
}
