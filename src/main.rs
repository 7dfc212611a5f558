//! The `relbert` command line: a thin layer of argument parsing over the library.

mod cli;

use clap::Parser;
use std::io::Write;

/// mimalloc instead of glibc's malloc: `relbert serve` allocates per request from many
/// threads (bodies, JSON values, result strings), and glibc's allocator took ~9% of the
/// server's CPU under load (`benchmarks/serve/README.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ends the run after the command line was not parsed: a usage error with status 2, as clap
/// ends it; `--help` and `--version` with status 0 once their text is written, and 1 when it
/// could not be (clap's own exit ignores a failed write, so `relbert --help >/dev/full` said
/// nothing and succeeded, found by a review), quietly with SIGPIPE's status when the reader
/// of standard output has gone (`relbert --help | head -1`).
fn exit_on_parse_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let written = e.print().and_then(|()| std::io::stdout().flush());
    match written {
        Ok(()) => std::process::exit(0),
        Err(w) if w.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(128 + libc::SIGPIPE)
        }
        Err(w) => {
            relbert::say!("error: standard output: {w}");
            std::process::exit(1)
        }
    }
}

fn main() {
    // Parsed while SIGPIPE is still ignored (as Rust starts programs): clap's usage error
    // then ends with status 2 even when standard error is a pipe whose reader has gone; it
    // ignores a failed write itself.
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => exit_on_parse_error(e),
    };
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
    let (filter, bad_filter) = log_filter();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Never SIGPIPE, and a failed write is not reported with `eprintln!` (which panics
        // when standard error is what failed): see `relbert::output::eprint_line`.
        .with_writer(|| relbert::output::Stderr)
        .log_internal_errors(false)
        // Colour codes only for a terminal: logs piped to a file or a CI log stay plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && !no_color(std::env::var_os("NO_COLOR")),
        )
        .with_target(false)
        .without_time()
        .init();
    if let Some(why) = bad_filter {
        tracing::warn!("{why}");
    }
    if let Err(e) = cli::run(args) {
        if stdout_reader_gone(&e) {
            // A run holding work files ignores SIGPIPE so that its clean-up runs (see
            // `cli::interrupt::Interrupts`); it then ends as SIGPIPE would have ended it:
            // quietly, with the status a shell gives a process SIGPIPE killed. SIGPIPE is
            // ignored again first: `exit` flushes standard output's buffer, and a partial line
            // left there met the restored default action and killed the process by the signal
            // (found by a review).
            // SAFETY: signal(2) with SIG_IGN, a valid disposition.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            std::process::exit(128 + libc::SIGPIPE);
        }
        relbert::say!("error: {e:#}");
        std::process::exit(cli::exit_status(&e));
    }
}

/// Whether `e` is a write to standard output that failed because its reader has gone (`|
/// head`): an error of kind [`std::io::ErrorKind::BrokenPipe`] in the chain (bare, or in a
/// [`relbert::Error::Io`], which keeps it out of the chain), while standard output is a pipe
/// without a reader. A broken pipe elsewhere (a connection to a server) is an error to report.
fn stdout_reader_gone(e: &anyhow::Error) -> bool {
    let broken_pipe = e.chain().any(|c| {
        let io = match c.downcast_ref::<relbert::Error>() {
            Some(relbert::Error::Io { err, .. }) => Some(err),
            _ => c.downcast_ref::<std::io::Error>(),
        };
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken_pipe && stdout_widowed()
}

/// Whether standard output is a pipe whose reader has gone: poll(2) reports POLLERR for the
/// write end of such a pipe (and never for a file or a terminal).
#[cfg(unix)]
fn stdout_widowed() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd this function owns, without waiting.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & libc::POLLERR != 0
}

#[cfg(not(unix))]
fn stdout_widowed() -> bool {
    false
}

/// Whether `NO_COLOR` (its value `value`) asks for output without colour codes: set and not
/// empty, whatever its value (<https://no-color.org>).
fn no_color(value: Option<std::ffi::OsString>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// The log filter when `RELBERT_LOG` is unset or unusable.
const DEFAULT_LOG: &str = "warn,relbert=info,relbert_index=info";

/// The log filter `RELBERT_LOG` sets, and why it was not used when it was not (warned once the
/// log is set up). A value that is not a filter fell back to the default without a word, an
/// empty one hid every message (warnings included), and a misspelt level (`wran`) was read as
/// the name of a module with no logs, hiding them all too.
fn log_filter() -> (tracing_subscriber::EnvFilter, Option<String>) {
    let default = || tracing_subscriber::EnvFilter::new(DEFAULT_LOG);
    let Some(value) = std::env::var_os("RELBERT_LOG") else {
        return (default(), None);
    };
    let Some(text) = value.to_str() else {
        return (
            default(),
            Some(format!(
                "RELBERT_LOG={value:?} is not UTF-8 text; using the default log filter \
                 ({DEFAULT_LOG})"
            )),
        );
    };
    // Set but empty reads as unset, as a shell's `RELBERT_LOG= relbert ...` means.
    if text.trim().is_empty() {
        return (default(), None);
    }
    let why = match misspelt_level(text) {
        Some(word) => format!(
            "{word:?} looks like a misspelt level (off, error, warn, info, debug, trace), and a \
             bare name selects one module's messages alone (for a module or crate of that name, \
             give it a level: NAME=debug)"
        ),
        None => match tracing_subscriber::EnvFilter::try_new(text) {
            Ok(filter) => return (filter, None),
            Err(e) => format!("it is not a log filter ({e})"),
        },
    };
    (
        default(),
        Some(format!(
            "RELBERT_LOG={text:?}: {why}; using the default log filter ({DEFAULT_LOG})"
        )),
    )
}

/// The first directive of filter `text` that is a bare name (no `=level`, no span) within
/// two letters of a level's name without being one: `wran`, `infoo`, which `tracing` reads
/// as a module whose messages alone are shown, so every message was hidden. Other bare
/// names (`hyper`, `relbert::serve`) are modules asked for, and kept.
fn misspelt_level(text: &str) -> Option<&str> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    text.split(',').map(str::trim).find(|d| {
        !d.is_empty()
            && !d.contains(['=', '[', ':'])
            && d.parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
            && LEVELS
                .iter()
                .any(|l| edit_distance(&d.to_ascii_lowercase(), l) <= 2)
    })
}

/// Levenshtein distance between `a` and `b`, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::misspelt_level;

    #[test]
    fn a_misspelt_level_is_told_from_a_module() {
        assert_eq!(misspelt_level("wran"), Some("wran"));
        assert_eq!(misspelt_level("info, infoo"), Some("infoo"));
        assert_eq!(misspelt_level("Degub"), Some("Degub"));
        // Found by a review: another crate's name alone (all its messages) was refused.
        for ok in [
            "hyper",
            "tower_http",
            "warn",
            "DEBUG",
            "relbert=debug",
            "relbert_index",
            "relbert::serve",
            "warn,hyper=debug",
            "h2[conn]",
            "off",
        ] {
            assert_eq!(misspelt_level(ok), None, "{ok}");
        }
    }
}
