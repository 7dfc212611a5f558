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
    let (filter, bad_filter) = log_filter();
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
    if let Some(why) = bad_filter {
        tracing::warn!("{why}");
    }
    if let Err(e) = cli::run(args) {
        relbert::say!("error: {e:#}");
        std::process::exit(cli::exit_status(&e));
    }
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
