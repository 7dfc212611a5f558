//! `relbert embed`: pairs from a TSV file (or stdin) to relation vectors.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use relbert::embed::{embed_into, Sink};
use relbert::output::Format;
use relbert::pairs::read_pairs;

use super::{pair_progress, ModelArgs};

/// Arguments of `relbert embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Pair file: head<TAB>tail[<TAB>label] per line, or - for standard input.
    #[arg(long)]
    pairs: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Output file (default for jsonl: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the reference's raw sums instead of unit-length vectors (a model with an
    /// offset weight has no raw form: its unit pair vectors are written).
    #[arg(long)]
    raw: bool,
    /// Overwrite an existing output file.
    #[arg(long)]
    force: bool,
}

pub fn run(a: EmbedArgs) -> Result<()> {
    let records = read_pairs(&a.pairs)?;
    if records.is_empty() {
        anyhow::bail!("{}: no pairs to embed", a.pairs.display());
    }
    // Refuse an existing output before spending time on loading the model.
    if let Some(out) = &a.out {
        if out.exists() && !a.force {
            anyhow::bail!("{} exists; pass --force to overwrite it", out.display());
        }
    }
    let encoder = a.model.load(false)?;
    let mut sink = Sink::open(
        a.format,
        a.out.as_deref(),
        records.len(),
        encoder.dim(),
        a.force,
    )?;
    let pb = pair_progress(records.len() as u64, "embedding");
    let started = std::time::Instant::now();
    embed_into(&encoder, &records, &mut sink, a.raw, &|n| {
        pb.set_position(n as u64)
    })
    .with_context(|| format!("embedding {}", a.pairs.display()))?;
    pb.finish_and_clear();
    sink.commit()?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "embedded {} pairs in {:.2}s ({:.1} pairs/s)",
        records.len(),
        secs,
        records.len() as f64 / secs
    );
    Ok(())
}
