//! Interrupts (SIGINT, SIGTERM, SIGHUP) for the commands that write outputs under temporary
//! names and rename them into place: `embed`, `index export --format` and `pairs mine`.
//!
//! `std::process::exit` runs no destructors, and a stopped run would otherwise leave its
//! partial temporary files, its outputs' lock files and (`pairs mine`) a work directory of
//! spilled runs until a later run to the same outputs cleared them. One [`Interrupts`] per run
//! says what to remove; the handler removes it and exits with status 130, except once the
//! run is renaming its outputs into place, which a signal lets finish (a run leaves all its
//! outputs or none). The `ctrlc` crate installs the handler (its `termination` feature covers
//! SIGTERM and SIGHUP); what is removed, and when that is safe, is the commands' own rule.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// What an interrupt removes. Filled by the run as it claims things: before, the same
/// names could be another run's.
#[derive(Default)]
pub(super) struct Cleanup {
    /// Temporary and lock files; only regular files are removed (a link or directory at a
    /// temporary name is not relbert's, and [`relbert::output::AtomicFile`] refuses to touch
    /// it too).
    pub files: Vec<PathBuf>,
    /// A work directory, removed whole.
    pub work_dir: Option<PathBuf>,
    /// Output locks held through this state: released (their files removed) on an
    /// interrupt, and when the run returns.
    pub locks: Vec<relbert_index::OutputLock>,
    /// Output has started going to standard output, which an interrupt leaves incomplete.
    pub stdout_started: bool,
    /// The outputs are being renamed into place: a signal lets that finish.
    committing: bool,
}

/// The interrupt handling of one run. Dropped (the run returning; declared after any locks
/// the run holds itself, so that it goes first), it disarms the handler and releases the
/// locks it holds: from then on the same names may be another run's files.
pub(super) struct Interrupts(Arc<Mutex<Cleanup>>);

impl Interrupts {
    /// Installs the handler, removing `files` on an interrupt (more can be added with
    /// [`Interrupts::with`]).
    pub fn install(files: Vec<PathBuf>) -> Interrupts {
        let state = Arc::new(Mutex::new(Cleanup {
            files,
            ..Cleanup::default()
        }));
        let shared = state.clone();
        let installed = ctrlc::set_handler(move || {
            let mut st = shared.lock().unwrap_or_else(|p| p.into_inner());
            if st.committing {
                eprintln!(
                    "interrupted while the output is renamed into place: finishing that first"
                );
                return;
            }
            for f in &st.files {
                if std::fs::symlink_metadata(f).is_ok_and(|m| m.is_file()) {
                    let _ = std::fs::remove_file(f);
                }
            }
            if let Some(dir) = st.work_dir.take() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            // Dropping a lock removes its file (this process holds it, so it is relbert's).
            st.locks.clear();
            if st.stdout_started {
                eprintln!(
                    "interrupted: no output file was written; what went to standard output \
                     is incomplete"
                );
            } else {
                eprintln!("interrupted: nothing was written");
            }
            std::process::exit(130);
        });
        if let Err(e) = installed {
            tracing::warn!(
                "cannot handle interrupts ({e}): a stopped run leaves its temporary files"
            );
        }
        Interrupts(state)
    }

    /// The state, under the lock the handler takes: what is claimed and registered while it
    /// is held is seen by an interrupt either entirely or not at all.
    pub fn with(&self) -> MutexGuard<'_, Cleanup> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The outputs are being renamed into place: a signal from now on lets that finish.
    pub fn committing(&self) {
        self.with().committing = true;
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        let mut st = self.with();
        st.files.clear();
        st.work_dir = None;
        st.locks.clear();
    }
}
