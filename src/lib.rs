//! relbert: RelBERT relation embeddings in Rust.
//!
//! A word pair such as (Paris, France) is put into a prompt, run through a BERT or RoBERTa
//! encoder, and pooled into a *relation vector*; pairs with the same relation get close
//! vectors. [`relation::RelationEncoder`] is that function; the other modules build on it.
//!
//! # Quick start
//!
//! Encode pairs, build an index of a pair list, and ask it an analogy ("rome is to italy as
//! ? is to ?"), as `relbert embed`, `relbert index build` and `relbert query` do:
//!
//! ```
//! use std::path::Path;
//!
//! use relbert::indexing::{build_index, BuildOptions};
//! use relbert::query::{QueryEngine, QueryOptions};
//! use relbert::{EncoderOptions, RelationEncoder};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A model directory: config.json, tokenizer.json, model.safetensors (a RelBERT model, or
//! // a BERT/RoBERTa base); this example runs on a tiny test model instead.
//! let model = Path::new("models/relbert-minilm");
//! # let model = &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
//! let encoder = RelationEncoder::load(model, &EncoderOptions::default())?;
//! let vectors = encoder.embed(&[("paris", "france"), ("rome", "italy")])?;
//! assert_eq!(vectors.len(), 2); // one unit-length relation vector per pair
//!
//! // Pairs in memory, (head, tail, label); a pair file is read by `relbert::pairs::read_pairs`.
//! let records = relbert::pairs::records_of([
//!     ("paris", "france", Some("capital-of")),
//!     ("tokyo", "japan", Some("capital-of")),
//!     ("dog", "puppy", None),
//! ])?;
//! let out = Path::new("my-index");
//! # let dir = tempfile::tempdir()?;
//! # let out = &dir.path().join("my-index");
//! let on_rows = |_encoded: u64| {}; // progress: pairs encoded so far
//! build_index(&encoder, &records, out, &BuildOptions::default(), &on_rows, &mut |_| {})?;
//!
//! // The index records its model, and the engine encodes with it a pair it does not hold.
//! let mut engine = QueryEngine::open(out, None)?;
//! let (hits, _source) = engine.query("rome", "italy", &QueryOptions::default())?;
//! for hit in &hits {
//!     println!("{} : {}  {:.3}", hit.pair[0], hit.pair[1], hit.score);
//! }
//! assert_eq!(hits.len(), 3);
//! # Ok(()) }
//! ```
//!
//! Warnings (a model's number format, a pair left out) go through [`tracing`]: install a
//! subscriber to see them. The `cuda` feature (off by default) adds candle's CUDA backend
//! ([`device::parse_device`] then accepts `cuda:N`).
//!
//! # Features
//!
//! | feature | adds | pulls in |
//! |---|---|---|
//! | `cli` (default) | the `relbert` binary; implies `serve` and `qdrant` | clap, indicatif, tracing-subscriber, anyhow, mimalloc |
//! | `serve` | `serve`: the HTTP service and its page; implies `qdrant` | axum, hyper, prometheus-client |
//! | `qdrant` | `store::qdrant`: vectors in a Qdrant collection or cluster | qdrant-client, tonic, tokio |
//! | `cuda` | candle's CUDA backend | a CUDA toolkit at build time |
//!
//! A program that embeds pairs, builds or queries a local index, mines a corpus or scores a
//! model needs none of them: `relbert = { path = "…/relbert", default-features = false }`
//! (or the `git` form; the crate is not on crates.io).
//!
//! Types of [`candle_core`] and
//! [`relbert_index`] appear in this API, and both crates are re-exported here so that their
//! versions match.

pub mod corpus;
pub mod defaults;
pub mod embed;
pub mod error;
pub mod eval;
pub mod model;
pub mod output;
pub mod pairs;
#[cfg(feature = "serve")]
pub mod serve;
pub mod store;
pub mod train;

// The flat paths these modules had before they were grouped into folders, kept so that code
// written against them (benchmarks, users' programs) goes on compiling.
pub use eval::{analogy, classify, datasets};
pub use model::{
    batching, config, cpu_kernels, device, encoder, pooling, precision, prompt, relation,
};
pub use store::{indexing, query};
pub use train::{averaging, cpu_train, losses, training};

pub use candle_core;
pub use error::{Error, Result};
pub use precision::Dtype;
pub use relation::{EncoderOptions, RelationEncoder};
pub use relbert_index;
