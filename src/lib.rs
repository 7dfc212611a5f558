//! relbert: RelBERT relation embeddings in Rust.
//!
//! A word pair such as (Paris, France) is put into a prompt, run through a BERT or RoBERTa
//! encoder, and pooled into a *relation vector*; pairs with the same relation get close
//! vectors. [`relation::RelationEncoder`] is that function; the other modules build on it.

pub mod analogy;
pub mod averaging;
pub mod batching;
pub mod classify;
pub mod config;
pub mod cpu_kernels;
pub mod cpu_train;
pub mod datasets;
pub mod defaults;
pub mod device;
pub mod embed;
pub mod encoder;
pub mod error;
pub mod indexing;
pub mod losses;
pub mod output;
pub mod pairs;
pub mod pooling;
pub mod prompt;
pub mod query;
pub mod relation;
pub mod training;

pub use error::{Error, Result};
pub use relation::{EncoderOptions, RelationEncoder};
