//! `relbert embed`: pairs from a TSV file (or stdin) to relation vectors.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use relbert::embed::{embed_into, Sink};
use relbert::output::{
    check_replaceable, check_sidecar_replaceable, lock_npy_output, name_max, pairs_sidecar,
    same_file, temp_path, Format, OutputKind,
};
use relbert::pairs::read_pairs;
use relbert::store::files::older_pair_list;

use super::index::screen;
use super::interrupt::Interrupts;
use super::{ModelArgs, Progress};

/// Arguments of `relbert embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Pair file: head<TAB>tail[<TAB>label] per line, or - for standard input.
    #[arg(long)]
    pairs: PathBuf,
    /// Output format; by default from --out's extension: `.npy` is npy, anything else (and
    /// standard output) jsonl. A format the extension contradicts (`--format npy --out
    /// v.jsonl`) is refused.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Output file (default for jsonl, and `-`: standard output).
    #[arg(long, value_parser = super::os(super::output_file_at))]
    out: Option<PathBuf>,
    /// Write the reference's raw sums instead of unit-length vectors (a model with an
    /// offset weight has no raw form: its unit pair vectors are written).
    #[arg(long)]
    raw: bool,
    /// Leave out pairs whose prompt is too long to encode (reported with file and line)
    /// instead of stopping at the first.
    #[arg(long)]
    skip_long: bool,
    /// Overwrite an existing output file (only one relbert wrote: vectors, an array, also
    /// an array an older relbert wrote with its pair list under that build's name).
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on standard output (the file(s) written, the format, the pairs
    /// read, written and left out, the seconds taken, and the encoder as `index info --json`
    /// shows an index's: the files cannot name their model); needs --out FILE, since the
    /// vectors cannot share standard output with it.
    #[arg(long)]
    json: bool,
}

/// The temporary files of output `out` in `format` (an array's pair list's too), which a
/// signal removes once the run holds the output's locks (the locks themselves are released
/// by [`super::interrupt::Interrupts::lock_outputs`]'s handler).
fn own_files(out: &Path, format: Format) -> Vec<PathBuf> {
    let mut files = vec![temp_path(out)];
    if format == Format::Npy {
        files.push(temp_path(&pairs_sidecar(out)));
    }
    files
}

/// Installs the interrupt handler of a run writing `out` in `format` (`embed`, and `index
/// export` to a file) and takes the output's writer locks under its state (an array's and
/// its pair list's), held until the files are renamed into place: one writer per output.
/// The handler is in place first and the locks are taken under its state: a signal in
/// between left the lock files (found by an audit). From then on the output's temporary
/// files ([`own_files`]) are this run's (before, they could be another run's): a signal
/// removes them and the locks, until they are being renamed into place. A lock's error
/// names `--out` when it is about a file beside it ([`about_side_file`]).
pub(super) fn lock_output(out: &Path, format: Format) -> Result<Interrupts> {
    let interrupt = Interrupts::install(Vec::new());
    let side = |e: relbert::Error| about_side_file(e, out, format);
    let take = || -> Result<Vec<relbert_index::OutputLock>> {
        Ok(match format {
            Format::Npy => {
                let (array, pairs) = lock_npy_output(out).map_err(side)?;
                vec![array, pairs]
            }
            Format::Jsonl => {
                vec![relbert_index::OutputLock::acquire(out).map_err(|e| side(e.into()))?]
            }
        })
    };
    interrupt.lock_outputs(take, own_files(out, format))?;
    Ok(interrupt)
}

/// The files relbert writes beside output `out` in `format`, each with what it is: the
/// output's temporary file and lock, and for an array its pair list with the list's own.
fn side_files(out: &Path, format: Format) -> Vec<(PathBuf, &'static str)> {
    let lock = |p: &Path| relbert_index::lock::lock_path(p).ok();
    let mut files = vec![(
        temp_path(out),
        "the temporary file beside it that the output is written to (renamed into place when \
         complete)",
    )];
    files.extend(lock(out).map(|l| {
        (
            l,
            "the lock file beside it (held so that no second run writes the same output)",
        )
    }));
    if format == Format::Npy {
        let list = pairs_sidecar(out);
        files.push((
            temp_path(&list),
            "the temporary file beside it that the array's pair list is written to (renamed \
             into place when complete)",
        ));
        files.extend(lock(&list).map(|l| {
            (
                l,
                "the lock file of the array's pair list beside it (held so that no second run \
                 writes the same list)",
            )
        }));
        files.push((list, "the array's pair list beside it"));
    }
    files
}

/// What `e` is about when the path it names is one of the files relbert writes beside
/// `--out` ([`side_files`]): `--out PATH` and what that file is. Such an error named only the
/// hidden file (`tm/.new.npy.lock: Read-only file system`), which the user never gave. A name
/// too long for the file system (a non-ASCII `--out`, which [`check_room_beside`] leaves to
/// be tried) says so, with the file system's limit when it reports one.
pub(super) fn side_file_note(e: &anyhow::Error, out: &Path, format: Format) -> Option<String> {
    use relbert_index::IndexError;
    let (path, err) = match (
        e.downcast_ref::<relbert::Error>(),
        e.downcast_ref::<IndexError>(),
    ) {
        (Some(relbert::Error::Io { path, err }), _)
        | (Some(relbert::Error::Index(IndexError::Io { path, err })), _)
        | (_, Some(IndexError::Io { path, err })) => (path, Some(err)),
        (Some(relbert::Error::NotOurs { path, .. }), _)
        | (Some(relbert::Error::Index(IndexError::NotOurs { path, .. })), _)
        | (_, Some(IndexError::NotOurs { path, .. })) => (path, None),
        _ => return None,
    };
    let (file, what) = side_files(out, format)
        .into_iter()
        .find(|(p, _)| p == path)?;
    let too_long = err.is_some_and(|e| e.raw_os_error() == Some(libc::ENAMETOOLONG));
    if !too_long {
        return Some(format!("--out {}: {what}", out.display()));
    }
    let bytes = file.file_name().map_or(0, |n| n.len());
    let max = name_max(out);
    // The name fits the limit (in bytes, and it is ASCII, so in any unit): the path as a
    // whole is what is too long (Linux says ENAMETOOLONG past PATH_MAX too).
    let name_fits = file
        .file_name()
        .is_some_and(|n| n.to_str().is_some_and(str::is_ascii))
        && max.is_some_and(|m| bytes <= m);
    if name_fits {
        return Some(format!(
            "--out {}: {what}: its path ({} bytes) is too long for this system; give --out a \
             path in a shallower directory",
            out.display(),
            super::progress::group(file.as_os_str().len() as u64),
        ));
    }
    Some(format!(
        "--out {}: {what}: its name ({} bytes) is too long for this file system{}; give \
         --out a shorter name",
        out.display(),
        super::progress::group(bytes as u64),
        match max {
            Some(max) => format!(
                ", whose limit on a name is {max} (bytes on most file systems, UTF-16 units \
                 on some, such as NTFS)"
            ),
            None => String::new(),
        },
    ))
}

/// `e` with [`side_file_note`]'s context when it has one.
pub(super) fn about_side_file(
    e: impl Into<anyhow::Error>,
    out: &Path,
    format: Format,
) -> anyhow::Error {
    let e = e.into();
    match side_file_note(&e, out, format) {
        Some(note) => e.context(note),
        None => e,
    }
}

/// Refuses (status 2) an `--out` whose name leaves no room for the hidden files relbert
/// writes beside it ([`side_files`]) within the file system's limit on a name: a valid
/// 250-byte name failed only once the work had begun, with `.wwww….lock: File name too
/// long`, a name the user never gave.
///
/// Only an ASCII name is refused here: its bytes, characters and UTF-16 units are one count,
/// so every file system agrees on its length. Others count a name in other units (ntfs3 in
/// UTF-16 units, where a non-ASCII name of more bytes than the limit fits), so a longer
/// non-ASCII name is tried, and a side file's name that is too long fails when it is made
/// ([`side_file_note`] names --out, the file and the limit).
pub(super) fn check_room_beside(out: &Path, format: Format) -> Result<()> {
    let Some(name) = out.file_name() else {
        return Ok(());
    };
    if !name.is_ascii() {
        return Ok(());
    }
    let longest = side_files(out, format)
        .iter()
        .filter_map(|(p, _)| p.file_name().map(|n| n.len()))
        .max()
        .unwrap_or(0)
        .max(name.len());
    // 255 (Linux's `NAME_MAX`) when the file system does not say.
    let max = name_max(out).unwrap_or(255);
    if longest <= max {
        return Ok(());
    }
    let room = max.saturating_sub(longest - name.len());
    Err(super::usage(format!(
        "invalid value for --out {}: its name is {} bytes, and relbert writes hidden files \
         beside it named `.` + its name + `.relbert.tmp`{}; this file system allows {max} \
         bytes a name, so the --out name can be at most {room} bytes",
        out.display(),
        super::progress::group(name.len() as u64),
        if format == Format::Npy {
            " and `.` + its pair list's name (its name without .npy, then .pairs.tsv) + \
             `.relbert.tmp`"
        } else {
            ""
        },
    )))
}

/// The format an output file's extension names (`.npy`; `.jsonl` or `.json`), any letter
/// case; `None` for another extension or none.
fn format_of_extension(out: &Path) -> Option<Format> {
    let ext = out.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "npy" => Some(Format::Npy),
        "jsonl" | "json" => Some(Format::Jsonl),
        _ => None,
    }
}

/// The output format: `--format`, else `--out`'s extension (`.npy`: npy), else jsonl. An
/// explicit format that `--out`'s extension contradicts is a bad command line: `--out x.npy`
/// alone wrote JSON lines into x.npy, and `--format npy --out y.jsonl` a binary array into
/// y.jsonl, files every reader of that extension then fails on.
fn output_format(format: Option<Format>, out: Option<&Path>) -> Result<Format> {
    let named = out.and_then(format_of_extension);
    match (format, named, out) {
        (Some(f), _, Some(out)) => {
            check_extension(format_name(f), Some(f), out, |n| {
                format!(
                    " (the format follows --out's extension); give --out a name ending in {}, \
                     or leave --format out to write {}",
                    match f {
                        Format::Npy => ".npy",
                        Format::Jsonl => ".jsonl",
                    },
                    format_name(n),
                )
            })?;
            Ok(f)
        }
        (Some(f), _, None) => Ok(f),
        (None, Some(n), _) => Ok(n),
        (None, None, _) => Ok(Format::Jsonl),
    }
}

/// Refuses (status 2) `--format given`, which writes `writes` (`None`: neither, as word2vec),
/// when `--out`'s extension names another format ([`format_of_extension`]): every reader of
/// that extension then fails on the file. `remedy` says, after the refusal, what to do
/// instead, given the format the extension names. `embed` and `index export` both check so.
pub(super) fn check_extension(
    given: &str,
    writes: Option<Format>,
    out: &Path,
    remedy: impl FnOnce(Format) -> String,
) -> Result<()> {
    match format_of_extension(out) {
        Some(named) if Some(named) != writes => Err(super::usage(format!(
            "--format {given} contradicts --out {}, whose extension says {}{}",
            out.display(),
            format_name(named),
            remedy(named),
        ))),
        _ => Ok(()),
    }
}

/// Refuses (status 2) an `--out` named as relbert names the pair list beside an array
/// (`NAME.pairs.tsv`, any case): vectors written there were taken for that list by every
/// later run, and a later `--out NAME.npy` (or `NAME`) was refused because its list's place
/// held something relbert had not written (found by a review of `index export`).
pub(super) fn check_not_a_pair_list_name(out: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let name = out.as_os_str().as_bytes();
    let suffix = b".pairs.tsv";
    let ends = name.len() >= suffix.len()
        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
    if ends {
        return Err(super::usage(format!(
            "--out {} ends in .pairs.tsv, the name relbert gives the pair list it writes beside \
             an array; give the vectors another name (--out NAME.npy writes NAME.pairs.tsv \
             beside it)",
            out.display()
        )));
    }
    Ok(())
}

/// A format's name on the command line.
fn format_name(f: Format) -> &'static str {
    match f {
        Format::Jsonl => "jsonl",
        Format::Npy => "npy",
    }
}

/// Runs `relbert embed`.
pub fn run(a: EmbedArgs) -> Result<()> {
    // `--out -` is standard output, as for --pairs.
    let out = a.out.clone().filter(|p| p.as_os_str() != "-");
    let format = output_format(a.format, out.as_deref())?;
    if let Some(o) = &out {
        // Before the lock, which makes missing folders (and left them behind).
        super::check_out_folder(o, "--out")?;
        super::not_in_an_index(o, "--out")?;
        check_not_a_pair_list_name(o)?;
        check_room_beside(o, format)?;
    }
    // Standard output holds the vectors then; a summary after them would corrupt them.
    if a.json && out.is_none() {
        return Err(super::usage(
            "--json needs --out FILE: without it the vectors are written to standard output, \
             which the JSON summary would share",
        ));
    }
    // Found only when the output was opened, after the pairs were read and the model loaded.
    if format == Format::Npy && out.is_none() {
        return Err(super::usage(
            "--format npy needs --out FILE: an array and its pair list are two files, and \
             cannot go to standard output (JSON lines can: --format jsonl)",
        ));
    }
    // Every output, and the input it must never overwrite, checked before any work.
    let mut outputs: Vec<(PathBuf, OutputKind)> = Vec::new();
    if let Some(o) = &out {
        match format {
            relbert::output::Format::Jsonl => outputs.push((o.clone(), OutputKind::EmbedJsonl)),
            relbert::output::Format::Npy => {
                outputs.push((o.clone(), OutputKind::Npy));
                outputs.push((pairs_sidecar(o), OutputKind::Sidecar));
            }
        }
    }
    for (o, kind) in &outputs {
        if same_file(o, &a.pairs) {
            anyhow::bail!(
                "{} is the input (--pairs); choose another --out{}",
                o.display(),
                if *kind == OutputKind::Sidecar {
                    " (the pair list of an .npy output is written to <out without .npy>.pairs.tsv)"
                } else {
                    ""
                }
            );
        }
    }
    let interrupt = out.as_ref().map(|o| lock_output(o, format)).transpose()?;
    // An array an older relbert wrote has its pair list where that build named it
    // (`emb.train` -> `emb.pairs.tsv`): recognised by that list, as `index export --force`
    // recognises it, it is relbert's to replace (so, without --force, the refusal says to
    // pass it); anything not provably relbert's stays refused.
    let older_list = match (&out, format) {
        (Some(o), Format::Npy) => older_pair_list(o),
        _ => None,
    };
    for (o, kind) in &outputs {
        if *kind == OutputKind::Npy && older_list.is_some() {
            if !a.force {
                return Err(relbert::Error::Exists { path: o.clone() }.into());
            }
            continue;
        }
        // This output's pair list without its array is what an interrupted run left (the
        // array is removed first when an output is replaced): redone without --force.
        let checked = match (&out, *kind) {
            (Some(array), OutputKind::Sidecar) => check_sidecar_replaceable(array, a.force),
            _ => check_replaceable(o, a.force, *kind),
        };
        checked.map_err(|e| {
            match (&e, a.format) {
                // A script that wrote JSON lines to `v.npy` before the format followed the
                // extension now meets a refusal that speaks only of NumPy arrays.
                (relbert::Error::NotOurs { .. }, None)
                    if *kind == OutputKind::Npy
                        && check_replaceable(o, true, OutputKind::EmbedJsonl).is_ok() =>
                {
                    anyhow::anyhow!(
                        "{e}; an --out ending in .npy is now written as a NumPy array (the \
                         format follows --out's extension; an older relbert wrote JSON lines \
                         there unless --format npy): to keep writing JSON lines, \
                         give --out another name, such as {}",
                        o.with_extension("jsonl").display()
                    )
                }
                _ => anyhow::Error::new(e),
            }
        })?;
    }
    let records = read_pairs(&a.pairs)?;
    // Standard input as the pair reader's errors name it (`<stdin>:3: ...`), not `-`.
    let input = match a.pairs.as_os_str() == "-" {
        true => "<stdin>".to_string(),
        false => a.pairs.display().to_string(),
    };
    if records.is_empty() {
        anyhow::bail!("{input}: no pairs to embed");
    }
    let encoder = a.model.load(false)?;
    // Read before any work, so that a summary that cannot name its model fails the run
    // before it writes, not after.
    let identity = match a.json {
        true => Some(relbert::indexing::encoder_info(&encoder.identity()?)),
        false => None,
    };
    if a.raw {
        if let Some(w) = encoder.offset_weight() {
            // Documented in --help and the README, but a user who asked for raw sums got
            // unit vectors without a word at run time.
            tracing::warn!(
                "--raw does not apply to this model: its pair vectors combine the prompt \
                 vector with the word-vector offset (offset weight {w}), which has no raw \
                 form; its unit-length pair vectors are written, as without --raw (the \
                 reference's raw sums need a model without an offset weight)"
            );
        }
    }
    let read = records.len() as u64;
    let records = screen(&encoder, records, a.skip_long)?;
    let side = |e: relbert::Error| match &out {
        Some(o) => about_side_file(e, o, format),
        None => anyhow::Error::new(e),
    };
    // Created under the handler's state, which a signal takes to remove the temporary
    // files: made outside it, a file created just after the handler's removal was left
    // (found by an audit: an empty `.X.relbert.tmp`).
    let held = interrupt.as_ref().map(Interrupts::with);
    let mut sink = Sink::open(
        format,
        out.as_deref(),
        records.len(),
        encoder.dim(),
        true, // checked above, under the lock
    )
    .map_err(side)?;
    drop(held);
    let pb = Progress::pairs(records.len() as u64, "embedding");
    let started = std::time::Instant::now();
    if let Err(e) = embed_into(&encoder, &records, &mut sink, a.raw, &|n| {
        pb.set_position(n as u64)
    }) {
        sink.discard();
        return Err(anyhow::Error::new(e).context(format!("embedding {input}")));
    }
    pb.finish();
    if let Some(guard) = &interrupt {
        // Renaming into place is not interrupted half-way (an .npy output's old array goes
        // first): a signal from here on waits for it.
        guard.committing();
    }
    sink.commit().map_err(side)?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "embedded {} pairs in {:.2}s ({})",
        super::progress::group(records.len() as u64),
        secs,
        super::progress::rate(records.len() as f64 / secs.max(1e-9), "pairs")
    );
    if let (Some(o), Some(list)) = (&out, older_list) {
        relbert::store::files::warn_older_list_left(o, &list);
    }
    if let (Some(identity), Some(o)) = (&identity, &out) {
        let written = records.len() as u64;
        // Whether raw sums were written: an offset-weight model writes unit vectors (warned).
        let raw = a.raw && encoder.offset_weight().is_none();
        let mut doc = embed_json(o, format, read, written, &encoder, raw, secs);
        doc["encoder"] = relbert::indexing::encoder_json(identity);
        relbert::output::print_line(&doc.to_string())?;
    }
    Ok(())
}

/// The `--json` summary of an embed into `out` in `format`: `read` pairs read, `written`
/// vectors of `encoder`'s (its dimension and number format) written, the others left out by
/// `--skip-long`, in `secs` seconds (`raw`: the reference's raw sums); the caller adds the
/// encoder as `index info --json` shows an index's (the files cannot name their model). Named
/// as `index export --json` names its file (`out`, `format`, `pairs` for an array's pair
/// list, `written`, `encoder`) and `index add --json` its counts and seconds (`pairs_read`,
/// `skipped_long`, `encode_secs`).
fn embed_json(
    out: &Path,
    format: Format,
    read: u64,
    written: u64,
    encoder: &relbert::RelationEncoder,
    raw: bool,
    secs: f64,
) -> serde_json::Value {
    let pairs = (format == Format::Npy).then(|| pairs_sidecar(out).display().to_string());
    serde_json::json!({
        "out": out.display().to_string(),
        "format": format_name(format),
        "pairs": pairs,
        "pairs_read": read,
        "written": written,
        "skipped_long": read - written,
        "dim": encoder.dim(),
        "dtype": encoder.dtype().name(),
        "raw": raw,
        "encode_secs": secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review R12 (s20): Linux says ENAMETOOLONG for a path past PATH_MAX too, and the note
    /// said a 112-byte name was too long for a file system whose limit is 255. A name within
    /// the limit is a path too long.
    #[test]
    fn a_path_too_long_is_not_called_a_name_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("v.jsonl");
        let Some(max) = name_max(&out) else {
            eprintln!("the file system reports no name limit: nothing to compare");
            return;
        };
        let too_long = || std::io::Error::from_raw_os_error(libc::ENAMETOOLONG);
        let (side, _) = side_files(&out, Format::Jsonl).remove(0);
        let e = anyhow::Error::from(relbert::Error::io(&side, too_long()));
        let note = side_file_note(&e, &out, Format::Jsonl).unwrap();
        assert!(
            note.contains("its path") && !note.contains("its name"),
            "{note}"
        );
        // A name past the limit is still called one.
        let long = dir.path().join(format!("{}.jsonl", "n".repeat(max)));
        let (side, _) = side_files(&long, Format::Jsonl).remove(0);
        let e = anyhow::Error::from(relbert::Error::io(&side, too_long()));
        let note = side_file_note(&e, &long, Format::Jsonl).unwrap();
        assert!(
            note.contains("its name") && note.contains(&max.to_string()),
            "{note}"
        );
    }
}
